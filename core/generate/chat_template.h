// Chat templates of models from Hugging Face, recognised and rendered natively.
//
// A chat model ships its prompt format as a Jinja template in
// tokenizer_config.json ("chat_template"). Nearly every SentencePiece chat
// model uses one of three formats, which are recognised from the template's
// markers and rendered here exactly as transformers renders them:
//
//   Zephyr (TinyLlama-Chat)  <|system|>\nS</s>\n<|user|>\nU</s>\n<|assistant|>\nA</s>\n ... <|assistant|>\n
//   Llama-2 [INST]           <s>[INST] <<SYS>>\nS\n<</SYS>>\n\nU [/INST] A </s><s>[INST] U2 [/INST]
//   ChatML                   <|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n
//
// The rendered text is tokenized as transformers' LlamaTokenizer does: the
// model's special tokens (<s>, </s>, and any other control piece such as
// <|im_end|>) become their ids, the text between them is encoded with the
// model's SentencePiece model, the space prefix applied to every piece of
// text ("legacy" tokenizers, the default) or only to the first.
#pragma once

#include "core/data/tokenizer.h"

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <vector>

namespace crucible {

struct ChatMessage {
    std::string role;      // "system", "user" or "assistant"
    std::string content;
};

enum class ChatStyle { zephyr, llama2, chatml };

class ChatTemplate {
public:
    // The template of a tokenizer_config.json. nullopt when it has none, or
    // one in a format not recognised (then `note`, when given, says so).
    static std::optional<ChatTemplate> from_tokenizer_config(const nlohmann::json& config, const Tokenizer& tokenizer,
                                                             std::string* note = nullptr);
    ChatTemplate(ChatStyle style, const Tokenizer& tokenizer, bool legacy = true);

    ChatStyle style() const { return m_style; }
    const char* name() const;

    // The conversation as the model was trained to see it; with
    // add_generation_prompt, ending where the assistant's reply begins.
    // Throws Error for roles the format has no place for.
    std::string render(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const;
    // The rendered text as tokens (special tokens as their ids).
    std::vector<int32_t> encode(const std::string& text) const;

    // Where a reply ends besides EOS: tokens (a control token such as
    // <|im_end|>) and strings (a marker the model might write as text).
    const std::vector<int32_t>& stop_tokens() const { return m_stop_tokens; }
    const std::vector<std::string>& stop_strings() const { return m_stop_strings; }

private:
    ChatStyle m_style;
    const Tokenizer* m_tokenizer;
    bool m_legacy;
    std::string m_bos, m_eos;
    std::vector<std::pair<std::string, int32_t>> m_specials;   // longest first
    std::vector<int32_t> m_stop_tokens;
    std::vector<std::string> m_stop_strings;
};

} // namespace crucible
