// Dataset: a tokenized corpus split into training and validation text, and the
// fixed-length windows cut from each.
//
// Validation is the held-out tail of every document (val_fraction of its
// tokens), so no validation window overlaps training text. Windows are
// non-overlapping stretches of seq_len + 1 tokens (inputs and shifted targets)
// inside one split of one document; training windows start every seq_len
// tokens.
#pragma once

#include "core/data/corpus.h"
#include "core/data/tokenizer.h"

#include <cstdint>
#include <filesystem>
#include <vector>

namespace crucible {

struct Window {
    int32_t document = 0;
    int64_t start = 0;      // token index inside the document
};

struct SplitRange {
    int64_t begin = 0, end = 0;   // token indices [begin, end) inside a document
};

class Dataset {
public:
    // Tokenizes the corpus, reusing a token cache under cache_dir (keyed by the
    // corpus and tokenizer fingerprints) when one exists; empty cache_dir = no cache.
    // val_fraction in [0, 1). With seq_len > 0 the split knows the window:
    // a document long enough for two windows keeps at least one window of
    // validation and one of training, and a document too short for that goes
    // to training whole (its tail could hold no validation window anyway).
    static Dataset build(const Corpus& corpus, const Tokenizer& tokenizer, double val_fraction,
                         const std::filesystem::path& cache_dir = {}, int seq_len = 0);

    // True when the tokens came from the cache rather than the tokenizer.
    bool from_cache() const { return m_from_cache; }

    int32_t documents() const { return int32_t(m_tokens.size()); }
    const std::vector<int32_t>& tokens(int32_t doc) const { return m_tokens[size_t(doc)]; }
    SplitRange train_range(int32_t doc) const { return m_train[size_t(doc)]; }
    SplitRange val_range(int32_t doc) const { return m_val[size_t(doc)]; }
    int64_t train_tokens() const;
    int64_t val_tokens() const;
    int64_t total_bytes() const { return m_total_bytes; }
    double bytes_per_token() const;   // over the whole corpus

    // Throws Error when a split is too short for even one window, saying how
    // much text is needed for this seq_len.
    std::vector<Window> train_windows(int seq_len) const;
    std::vector<Window> val_windows(int seq_len) const;
    // tokens[i] = doc[start + i], targets[i] = doc[start + i + 1], i < seq_len
    void fill(const Window& w, int seq_len, int32_t* tokens, int32_t* targets) const;

    // Bytes each token id decodes to, for bits per byte.
    const std::vector<int32_t>& token_byte_lengths() const { return m_token_bytes; }

private:
    std::vector<std::vector<int32_t>> m_tokens;
    std::vector<SplitRange> m_train, m_val;
    std::vector<int32_t> m_token_bytes;
    int64_t m_total_bytes = 0;
    bool m_from_cache = false;
};

// Samples training batches: every epoch is a seeded shuffle of all training
// windows; the position is part of the checkpoint, so resuming continues the
// exact sequence.
class Batcher {
public:
    Batcher(const Dataset& dataset, int seq_len, uint64_t seed);

    // Fills batch × seq_len tokens and targets with the next windows.
    void next(int batch, int32_t* tokens, int32_t* targets);
    // Moves past `windows` windows as next() would, without reading them: a
    // data-parallel replica skips the other replicas' share of a step.
    void skip(int64_t windows);

    struct State { int64_t epoch = 0; int64_t position = 0; };
    State state() const { return m_state; }
    void set_state(const State& s);
    int64_t windows_per_epoch() const { return int64_t(m_windows.size()); }

private:
    void shuffle_epoch(int64_t epoch);

    const Dataset* m_dataset;
    int m_seq_len;
    uint64_t m_seed;
    std::vector<Window> m_windows;
    std::vector<int64_t> m_order;      // m_windows indices in this epoch's order
    int64_t m_order_epoch = -1;        // the epoch m_order was shuffled for
    State m_state;
};

} // namespace crucible
