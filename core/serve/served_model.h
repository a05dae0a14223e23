// ServedModel: turns a parsed API request into the tokens and stop rules of a
// generation job for the one model a server runs.
//
// Chat requests go through the model's chat template when it has one (a
// chat model from Hugging Face: Zephyr, Llama-2 [INST], ChatML), whose end
// token and markers then stop the reply; a model trained here talks in the
// plain transcript of `crucible-cli chat` ("User: …\nAssistant: …"), which
// stops where the model begins the user's next turn. Completion prompts are
// encoded as they are, after BOS where the model expects one.
#pragma once

#include "core/data/tokenizer.h"
#include "core/generate/chat_template.h"
#include "core/serve/batch_engine.h"
#include "core/serve/openai_protocol.h"

#include <nlohmann/json.hpp>

#include <optional>
#include <string>

namespace crucible::serve {

class ServedModel {
public:
    // `context`: the tokens one sequence may hold (prompt + reply).
    // tokenizer_config: a Hugging Face model's tokenizer_config.json, if any.
    ServedModel(std::string name, const Tokenizer& tokenizer, int context,
                const std::optional<nlohmann::json>& tokenizer_config);

    const std::string& name() const { return m_name; }
    int context() const { return m_context; }
    const Tokenizer& tokenizer() const { return m_tokenizer; }
    // "Zephyr", "ChatML", ... or "plain transcript".
    std::string chat_format() const;
    const std::string& template_note() const { return m_note; }

    // Throws ApiException: 404 for another model's name, 400 for a prompt
    // that leaves no room to generate in the context, or token ids that are
    // not in the vocabulary.
    ServeJob prepare(const CompletionRequest& request) const;

    // The chat prompt as text (what the tokens spell), for tests and logs.
    std::string render_chat(const std::vector<ChatMessage>& messages) const;

private:
    std::vector<int32_t> chat_tokens(const std::vector<ChatMessage>& messages) const;

    std::string m_name;
    const Tokenizer& m_tokenizer;
    int m_context;
    bool m_add_bos = false;
    std::optional<ChatTemplate> m_template;
    std::string m_note;
};

} // namespace crucible::serve
