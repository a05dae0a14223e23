// Tokenizer: SentencePiece BPE with byte fallback, trained on the user's corpus.
//
// Trained with identity normalisation, no dummy prefix and no whitespace
// collapsing, so encode→decode reproduces any text byte for byte. SentencePiece
// itself would replace invalid UTF-8 with U+FFFD (and would read a literal
// U+2581 '▁' as a space); this wrapper encodes only valid UTF-8 runs through
// SentencePiece and maps every other byte, and the bytes of a literal U+2581,
// straight to <0xNN> byte pieces, and decodes by concatenating each token's
// bytes. So every byte string round-trips exactly, and streaming can emit a
// token's bytes as soon as it is sampled.
//
// Models trained elsewhere (LLaMA's tokenizer.model) ask SentencePiece for a
// "dummy prefix": a space added in front of the text, so "Hello" encodes as
// "▁Hello" as it would mid-sentence. Such a model is loaded with the prefix
// switched off inside SentencePiece and the space added here, once, in front of
// the whole text — the same ids SentencePiece (and transformers, and llama.cpp
// with add_space_prefix) produce, while the line-at-a-time encoding stays.
#pragma once

#include "core/data/corpus.h"

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace sentencepiece { class SentencePieceProcessor; }

namespace crucible {

// What a vocabulary entry is, as SentencePiece (and GGUF's token types) say.
enum class TokenKind { normal, unknown, control, unused, byte };

// Ids every vocabulary reserves: <unk>, <s>, </s> and the 256 byte pieces.
constexpr int kTokenizerReservedIds = 3 + 256;

struct TokenizerOptions {
    int vocab_size = 2048;                // > kTokenizerReservedIds
    int threads = 0;                      // 0 = all cores
    int64_t max_training_bytes = 64 << 20; // sample at most this much text for training
};

class Tokenizer {
public:
    Tokenizer();
    ~Tokenizer();
    Tokenizer(Tokenizer&&) noexcept;
    Tokenizer& operator=(Tokenizer&&) noexcept;

    // Trains on the corpus. Throws Error when the corpus is too small for the
    // vocabulary (with the largest vocabulary it supports) or training fails.
    static Tokenizer train(const Corpus& corpus, const TokenizerOptions& options);
    // Like train(), but reuses a model cached under cache_dir for the same
    // corpus fingerprint and options (written atomically after training).
    static Tokenizer train_cached(const Corpus& corpus, const TokenizerOptions& options,
                                  const std::filesystem::path& cache_dir);
    static Tokenizer load(const std::filesystem::path& model_file);   // throws Error
    static Tokenizer from_serialized(const std::string& model_proto);  // throws Error

    void save(const std::filesystem::path& model_file) const;         // atomic
    const std::string& serialized() const { return m_proto; }
    // Hash of what encoding depends on (pieces, scores, kinds), not of the
    // proto bytes: the proto also records training settings such as the
    // thread count, which must not invalidate token caches.
    std::string fingerprint() const { return m_fingerprint; }

    int vocab_size() const;
    int bos_id() const;
    int eos_id() const;
    int unk_id() const;
    // True for models that encode text as if it began with a space (see above).
    bool adds_space_prefix() const { return m_space_prefix; }

    std::vector<int32_t> encode(std::string_view text) const;
    // Text that continues one already begun (after a special token in a chat
    // template): never a space prefix. The same as encode() for our own models.
    std::vector<int32_t> encode_continuation(std::string_view text) const;
    std::string decode(const std::vector<int32_t>& ids) const;
    // The exact bytes token `id` stands for (a byte piece is one byte).
    const std::string& token_bytes(int32_t id) const;
    // The piece as SentencePiece writes it (for display: "▁the", "<0x0A>").
    std::string piece(int32_t id) const;
    bool is_byte_piece(int32_t id) const;
    TokenKind kind(int32_t id) const;
    float score(int32_t id) const;   // SentencePiece's score (merge priority)

private:
    void index_pieces();
    const sentencepiece::SentencePieceProcessor& processor() const;   // throws when empty
    void encode_text_run(std::string_view run, std::vector<int32_t>& ids, std::vector<int>& scratch) const;
    void encode_bytes(std::string_view bytes, std::vector<int32_t>& ids) const;

    std::unique_ptr<sentencepiece::SentencePieceProcessor> m_sp;
    std::string m_proto;
    std::string m_fingerprint;
    int m_unk_id = 0;
    bool m_space_prefix = false;
    std::vector<std::string> m_bytes;      // token id -> bytes
    std::vector<int32_t> m_byte_to_id;     // byte value -> byte piece id
};

} // namespace crucible
