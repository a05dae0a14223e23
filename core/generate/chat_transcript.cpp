#include "core/generate/chat_transcript.h"

#include <algorithm>

namespace crucible {

namespace {

std::string trim_blanks(std::string s)
{
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.pop_back();
    return s;
}

std::string trim_newlines(std::string s)
{
    while (!s.empty() && s.back() == '\n') s.pop_back();
    return s;
}

std::string system_text(const std::string& system)
{
    return system.empty() || system.back() == '\n' ? system : system + "\n";
}

} // namespace

std::vector<std::string> ChatFormat::stop_strings() const
{
    const std::string prefix = trim_blanks(user_prefix);
    if (prefix.empty()) return {};
    return {"\n" + prefix};
}

std::string ChatFormat::render(const std::vector<std::pair<std::string, std::string>>& turns) const
{
    std::string out = system_text(system);
    for (const auto& [message, reply] : turns)
        out += user_prefix + message + "\n" + assistant_prefix + trim_newlines(reply) + "\n";
    return out;
}

ChatTranscript::ChatTranscript(const Tokenizer& tokenizer, ChatFormat format)
    : m_tokenizer(tokenizer), m_format(std::move(format)), m_system(tokenizer.encode(system_text(m_format.system)))
{
}

void ChatTranscript::clear()
{
    m_turns.clear();
    m_first = 0;
}

void ChatTranscript::truncate(size_t turns)
{
    if (turns < m_turns.size()) m_turns.resize(turns);
    m_first = std::min(m_first, m_turns.size());
}

std::vector<std::string> ChatTranscript::stop_strings() const
{
    return m_template ? m_template->stop_strings() : m_format.stop_strings();
}

std::vector<int32_t> ChatTranscript::stop_tokens() const
{
    return m_template ? m_template->stop_tokens() : std::vector<int32_t>{};
}

// The conversation the model still sees, ending with `message`, through the template.
std::vector<int32_t> ChatTranscript::rendered(const std::string& message) const
{
    std::vector<ChatMessage> messages;
    if (!m_format.system.empty()) messages.push_back({"system", m_format.system});
    for (size_t i = m_first; i < m_turns.size(); ++i) {
        messages.push_back({"user", m_turns[i].message});
        messages.push_back({"assistant", m_turns[i].reply});
    }
    messages.push_back({"user", message});
    return m_template->encode(m_template->render(messages, true));
}

std::vector<int32_t> ChatTranscript::opening(const std::string& message) const
{
    return m_tokenizer.encode(m_format.user_prefix + message + "\n" + m_format.assistant_prefix);
}

void ChatTranscript::add_turn(const std::string& message, const std::string& reply)
{
    if (m_template) {
        m_turns.push_back(Turn{message, reply, {}});
        return;
    }
    Turn t{message, reply, opening(message)};
    const auto tail = m_tokenizer.encode(trim_newlines(reply) + "\n");
    t.tokens.insert(t.tokens.end(), tail.begin(), tail.end());
    m_turns.push_back(std::move(t));
}

int ChatTranscript::prompt(const std::string& message, size_t budget, std::vector<int32_t>& ids)
{
    m_pending = Turn{message, {}, m_template ? std::vector<int32_t>{} : opening(message)};
    int forgotten = 0;
    for (;;) {
        if (m_template) {
            ids = rendered(message);
            if (ids.size() <= budget || m_first == m_turns.size()) break;
            ++m_first;
            ++forgotten;
            continue;
        }
        ids = m_system;
        for (size_t i = m_first; i < m_turns.size(); ++i)
            ids.insert(ids.end(), m_turns[i].tokens.begin(), m_turns[i].tokens.end());
        ids.insert(ids.end(), m_pending.tokens.begin(), m_pending.tokens.end());
        if (ids.size() <= budget || m_first == m_turns.size()) break;
        ++m_first;
        ++forgotten;
    }
    if (ids.empty()) ids.push_back(m_tokenizer.bos_id());
    if (budget > 0 && ids.size() > budget) ids.erase(ids.begin(), ids.end() - std::ptrdiff_t(budget));
    return forgotten;
}

void ChatTranscript::reply(const std::vector<int32_t>& tokens, const std::string& text)
{
    Turn turn = std::move(m_pending);
    m_pending = Turn{};
    turn.reply = text;
    if (m_template) {
        m_turns.push_back(std::move(turn));
        return;
    }
    size_t covered = 0;
    for (int32_t t : tokens) {
        const size_t n = m_tokenizer.token_bytes(t).size();
        if (covered + n > text.size()) break;
        turn.tokens.push_back(t);
        covered += n;
    }
    const auto tail = m_tokenizer.encode(trim_newlines(text.substr(covered)) + "\n");
    turn.tokens.insert(turn.tokens.end(), tail.begin(), tail.end());
    m_turns.push_back(std::move(turn));
}

size_t ChatTranscript::prompt_budget(int context, int max_new_tokens)
{
    const int room = std::max(1, std::min(max_new_tokens, context / 4));
    return size_t(std::max(1, context - room));
}

} // namespace crucible
