// A byte-level model trained on the embedded text, for the suites that need
// a model that has learnt something (the optimizer race, quantization):
// tokens are bytes (vocabulary 260: the 256 bytes and the specials), so the validation loss in bits is
// bits per byte exactly, and no tokenizer has to be trained first.
#pragma once

#include "core/model/param_store.h"
#include "core/model/transformer.h"
#include "core/optim/optimizer.h"
#include "core/util/rng.h"

#include <memory>
#include <vector>

namespace crucible::bench {

// The embedded Tiny Shakespeare as bytes: the first 90% to train on, the
// rest to validate on.
struct ByteText {
    std::vector<int32_t> train, val;
    static const ByteText& embedded();
};

class ByteModelRun {
public:
    // `config`'s vocabulary becomes 260 and its context `seq`.
    ByteModelRun(Backend& backend, ModelConfig config, const OptimizerConfig& optimizer, int batch, int seq,
                 uint64_t seed);
    // One optimizer step on random windows of the training bytes.
    void step();
    // Bits per byte on the first `batches` × batch windows of the validation bytes.
    double validation_bits_per_byte(int batches);
    ParamStore& params() { return *m_params; }
    Transformer& model() { return *m_model; }

private:
    const ByteText& m_text;
    int m_batch, m_seq;
    Rng m_rng;
    std::unique_ptr<ParamStore> m_params;
    std::unique_ptr<Optimizer> m_optimizer;
    std::unique_ptr<Transformer> m_model;
    std::vector<int32_t> m_tokens, m_targets;
};

} // namespace crucible::bench
