#include "core/generate/chat_template.h"

#include "kernels/error.h"

#include <algorithm>

namespace crucible {

namespace {

// "  text \n" -> "text", as Python's str.strip() (the Llama-2 template strips messages).
std::string strip(const std::string& s)
{
    const char* blanks = " \t\n\r\v\f";
    const size_t first = s.find_first_not_of(blanks);
    if (first == std::string::npos) return {};
    return s.substr(first, s.find_last_not_of(blanks) - first + 1);
}

// A special token in tokenizer_config.json: a string, or {"content": "..."}.
std::optional<std::string> token_text(const nlohmann::json& config, const char* key)
{
    const auto it = config.find(key);
    if (it == config.end()) return std::nullopt;
    if (it->is_string()) return it->get<std::string>();
    if (it->is_object() && it->contains("content") && (*it)["content"].is_string())
        return (*it)["content"].get<std::string>();
    return std::nullopt;
}

} // namespace

std::optional<ChatTemplate> ChatTemplate::from_tokenizer_config(const nlohmann::json& config,
                                                                const Tokenizer& tokenizer, std::string* note)
{
    const auto it = config.find("chat_template");
    if (it == config.end() || !it->is_string()) return std::nullopt;
    const std::string& source = it->get_ref<const std::string&>();
    std::optional<ChatStyle> style;
    if (source.find("<|im_start|>") != std::string::npos) style = ChatStyle::chatml;
    else if (source.find("[INST]") != std::string::npos) style = ChatStyle::llama2;
    else if (source.find("<|user|>") != std::string::npos && source.find("<|assistant|>") != std::string::npos)
        style = ChatStyle::zephyr;
    if (!style) {
        if (note)
            *note = "the model's chat template is in a format Crucible does not recognise (it knows Zephyr, "
                    "Llama-2 [INST] and ChatML); the conversation uses a plain transcript instead";
        return std::nullopt;
    }
    // LlamaTokenizer's default (no key, or null) is the legacy behaviour.
    const auto legacy = config.find("legacy");
    ChatTemplate t(*style, tokenizer, legacy == config.end() || !legacy->is_boolean() || legacy->get<bool>());
    if (auto bos = token_text(config, "bos_token")) t.m_bos = *bos;
    if (auto eos = token_text(config, "eos_token")) t.m_eos = *eos;
    return t;
}

ChatTemplate::ChatTemplate(ChatStyle style, const Tokenizer& tokenizer, bool legacy)
    : m_style(style), m_tokenizer(&tokenizer), m_legacy(legacy), m_bos(tokenizer.piece(tokenizer.bos_id())),
      m_eos(tokenizer.piece(tokenizer.eos_id()))
{
    for (int id = 0; id < tokenizer.vocab_size(); ++id)
        if (tokenizer.kind(id) == TokenKind::control) m_specials.emplace_back(tokenizer.piece(id), id);
    std::sort(m_specials.begin(), m_specials.end(),
              [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
    const auto special = [&](const std::string& text) -> std::optional<int32_t> {
        for (const auto& [piece, id] : m_specials)
            if (piece == text) return id;
        return std::nullopt;
    };
    switch (style) {
    case ChatStyle::zephyr: m_stop_strings = {"<|user|>", "<|system|>"}; break;
    case ChatStyle::llama2: m_stop_strings = {"[INST]"}; break;
    case ChatStyle::chatml:
        if (auto id = special("<|im_end|>")) m_stop_tokens.push_back(*id);
        m_stop_strings = {"<|im_end|>", "<|im_start|>"};
        break;
    }
}

const char* ChatTemplate::name() const
{
    switch (m_style) {
    case ChatStyle::zephyr: return "Zephyr";
    case ChatStyle::llama2: return "Llama-2 [INST]";
    case ChatStyle::chatml: return "ChatML";
    }
    return "?";
}

std::string ChatTemplate::render(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const
{
    for (const auto& m : messages)
        if (m.role != "system" && m.role != "user" && m.role != "assistant")
            throw Error("a chat message has the role \"" + m.role + "\"; use system, user or assistant");
    std::string out;
    switch (m_style) {
    case ChatStyle::zephyr:
        for (const auto& m : messages) out += "<|" + m.role + "|>\n" + m.content + m_eos + "\n";
        if (add_generation_prompt) out += "<|assistant|>\n";
        break;
    case ChatStyle::chatml:
        for (const auto& m : messages) out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
        if (add_generation_prompt) out += "<|im_start|>assistant\n";
        break;
    case ChatStyle::llama2: {
        // The system message joins the first user message; turns alternate.
        size_t first = 0;
        std::string system;
        if (!messages.empty() && messages[0].role == "system") {
            system = messages[0].content;
            first = 1;
        }
        for (size_t i = first; i < messages.size(); ++i) {
            const ChatMessage& m = messages[i];
            const bool user_turn = (i - first) % 2 == 0;
            if ((m.role == "user") != user_turn)
                throw Error("this model's chat format (Llama-2 [INST]) needs user and assistant messages to "
                            "alternate, starting with the user's (an optional system message first)");
            if (m.role == "user") {
                std::string content = m.content;
                if (i == first && first == 1) content = "<<SYS>>\n" + system + "\n<</SYS>>\n\n" + content;
                out += m_bos + "[INST] " + strip(content) + " [/INST]";
            } else {
                out += " " + strip(m.content) + " " + m_eos;
            }
        }
        break;
    }
    }
    return out;
}

std::vector<int32_t> ChatTemplate::encode(const std::string& text) const
{
    std::vector<int32_t> ids;
    size_t begin = 0;
    const auto flush = [&](size_t end) {
        if (end > begin) {
            const std::string_view piece(text.data() + begin, end - begin);
            const auto part = (begin == 0 || m_legacy) ? m_tokenizer->encode(piece)
                                                       : m_tokenizer->encode_continuation(piece);
            ids.insert(ids.end(), part.begin(), part.end());
        }
    };
    for (size_t pos = 0; pos < text.size();) {
        bool matched = false;
        for (const auto& [special, id] : m_specials)
            if (text.compare(pos, special.size(), special) == 0) {
                flush(pos);
                ids.push_back(id);
                pos += special.size();
                begin = pos;
                matched = true;
                break;
            }
        if (!matched) ++pos;
    }
    flush(text.size());
    return ids;
}

} // namespace crucible
