// Tokenizer: SentencePiece BPE with byte fallback, trained on the user's corpus.
//
// Trained with identity normalisation, no dummy prefix and no whitespace
// collapsing, so encode→decode reproduces any text byte for byte. SentencePiece
// itself would replace invalid UTF-8 with U+FFFD; this wrapper encodes only
// valid UTF-8 runs through SentencePiece and maps every other byte straight to
// its <0xNN> byte piece, and decodes by concatenating each token's bytes. So
// every byte string round-trips exactly, and streaming can emit a token's
// bytes as soon as it is sampled.
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

struct TokenizerOptions {
    int vocab_size = 2048;
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
    std::string fingerprint() const;                                   // hash of the model proto

    int vocab_size() const;
    int bos_id() const;
    int eos_id() const;

    std::vector<int32_t> encode(std::string_view text) const;
    std::string decode(const std::vector<int32_t>& ids) const;
    // The exact bytes token `id` stands for (a byte piece is one byte).
    const std::string& token_bytes(int32_t id) const;
    // The piece as SentencePiece writes it (for display: "▁the", "<0x0A>").
    std::string piece(int32_t id) const;
    bool is_byte_piece(int32_t id) const;

private:
    void index_pieces();

    std::unique_ptr<sentencepiece::SentencePieceProcessor> m_sp;
    std::string m_proto;
    std::vector<std::string> m_bytes;      // token id -> bytes
    std::vector<int32_t> m_byte_to_id;     // byte value -> byte piece id
};

} // namespace crucible
