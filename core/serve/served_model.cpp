#include "core/serve/served_model.h"

#include "core/generate/chat_transcript.h"
#include "kernels/error.h"

#include <random>

namespace crucible::serve {

namespace {

std::string trim_newlines(std::string s)
{
    while (!s.empty() && s.back() == '\n') s.pop_back();
    return s;
}

} // namespace

ServedModel::ServedModel(std::string name, const Tokenizer& tokenizer, int context,
                         const std::optional<nlohmann::json>& tokenizer_config)
    : m_name(std::move(name)), m_tokenizer(tokenizer), m_context(context)
{
    if (tokenizer_config) {
        // Models from Hugging Face start every prompt with BOS unless their
        // tokenizer says otherwise (LlamaTokenizer's add_bos_token).
        const auto bos = tokenizer_config->find("add_bos_token");
        m_add_bos = bos == tokenizer_config->end() || !bos->is_boolean() || bos->get<bool>();
        m_template = ChatTemplate::from_tokenizer_config(*tokenizer_config, tokenizer, &m_note);
    }
}

std::string ServedModel::chat_format() const { return m_template ? m_template->name() : "plain transcript"; }

std::string ServedModel::render_chat(const std::vector<ChatMessage>& messages) const
{
    if (m_template) return m_template->render(messages, true);
    // The transcript `crucible-cli chat` and the Chat page show a model trained
    // here: system text, then "User: …" and "Assistant: …" lines.
    const ChatFormat format;
    std::string system, turns;
    for (const ChatMessage& m : messages) {
        if (m.role == "system") system += m.content.empty() || m.content.back() == '\n' ? m.content : m.content + "\n";
        else if (m.role == "user") turns += format.user_prefix + m.content + "\n";
        else turns += format.assistant_prefix + trim_newlines(m.content) + "\n";
    }
    return system + turns + format.assistant_prefix;
}

std::vector<int32_t> ServedModel::chat_tokens(const std::vector<ChatMessage>& messages) const
{
    try {
        const std::string text = render_chat(messages);
        if (m_template) return m_template->encode(text);
        return m_tokenizer.encode(text);
    } catch (const Error& e) {
        // The template has no place for a role or an order of messages.
        throw ApiException(bad_request(std::string("the messages do not fit the model's ") + chat_format() +
                                           " chat format: " + e.what(),
                                       "messages"));
    }
}

ServeJob ServedModel::prepare(const CompletionRequest& r) const
{
    if (r.model != m_name) {
        ApiError e;
        e.status = 404;
        e.message = "The model '" + r.model + "' does not exist on this server; it serves '" + m_name + "'";
        e.param = "model";
        e.code = "model_not_found";
        throw ApiException(e);
    }
    ServeJob job;
    job.sampling = r.sampling;
    // Without a seed every request draws afresh, as the OpenAI API does.
    if (!r.seed_given) job.sampling.seed = std::random_device{}() ^ (uint64_t(std::random_device{}()) << 32);
    job.stop_strings = r.stop;
    job.stop_at_eos = !r.ignore_eos;
    if (r.endpoint == Endpoint::chat) {
        job.prompt = chat_tokens(r.messages);
        if (m_template) {
            for (const auto& s : m_template->stop_strings()) job.stop_strings.push_back(s);
            job.stop_tokens = m_template->stop_tokens();
        } else {
            for (const auto& s : ChatFormat{}.stop_strings()) job.stop_strings.push_back(s);
        }
    } else if (r.prompt_ids) {
        job.prompt = *r.prompt_ids;
        for (const int32_t id : job.prompt)
            if (id >= m_tokenizer.vocab_size())
                throw ApiException(bad_request("'prompt' holds the token id " + std::to_string(id) +
                                                   ", outside the model's vocabulary of " +
                                                   std::to_string(m_tokenizer.vocab_size()),
                                               "prompt"));
    } else {
        job.prompt = m_tokenizer.encode(r.prompt);
        if (m_add_bos || job.prompt.empty()) job.prompt.insert(job.prompt.begin(), int32_t(m_tokenizer.bos_id()));
    }

    const int64_t n = int64_t(job.prompt.size());
    if (n >= m_context) {
        ApiError e = bad_request("This model's maximum context length is " + std::to_string(m_context) +
                                     " tokens. However, your " +
                                     (r.endpoint == Endpoint::chat ? "messages" : "prompt") + " resulted in " +
                                     std::to_string(n) + " tokens, which leaves no room for a reply. Please "
                                     "shorten it.",
                                 r.endpoint == Endpoint::chat ? "messages" : "prompt", "context_length_exceeded");
        throw ApiException(e);
    }
    // Without a limit, a chat reply may fill the context; a completion takes
    // the OpenAI API's default of 16 tokens. A limit past the context ends
    // the reply there ("length"), as a full context would.
    const int room = int(m_context - n);
    const int wanted = r.max_tokens ? *r.max_tokens : (r.endpoint == Endpoint::chat ? room : 16);
    job.max_new_tokens = std::min(wanted, room);
    return job;
}

} // namespace crucible::serve
