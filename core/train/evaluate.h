// Validation metrics: loss (nats/token), perplexity, next-token accuracy and
// bits per byte (Σ loss / (ln 2 · Σ bytes of the predicted tokens)), which
// does not depend on the tokenizer, so runs with different vocabularies compare.
#pragma once

#include "core/data/dataset.h"
#include "core/model/transformer.h"
#include "core/train/training_sink.h"

#include <functional>
#include <vector>

namespace crucible {

// Evaluates `windows` of the dataset in batches of up to `batch` sequences;
// max_windows = 0 evaluates all of them. `cancelled` (optional) is polled
// between batches.
EvalMetrics evaluate_windows(Transformer& model, const Dataset& data, const std::vector<Window>& windows, int batch,
                             int seq_len, int64_t max_windows, const std::function<bool()>& cancelled = {});

// Evaluates a plain token stream cut into consecutive windows (crucible-cli eval --text).
EvalMetrics evaluate_token_stream(Transformer& model, const std::vector<int32_t>& tokens,
                                  const std::vector<int32_t>& token_bytes, int batch, int seq_len);

} // namespace crucible
