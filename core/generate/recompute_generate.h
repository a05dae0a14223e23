// Generation by full recomputation: every new token runs the whole context
// through the model again. Quadratic, but needs nothing beyond the training
// forward pass; it is the baseline the KV-cached generator is measured against
// and the reference it is tested against.
#pragma once

#include "core/generate/sampler.h"
#include "core/model/transformer.h"

#include <functional>
#include <vector>

namespace crucible {

// Appends up to max_new_tokens to `tokens` (which starts as the prompt). The
// context is the last seq_len tokens. on_token returns false to stop early.
void generate_recompute(Transformer& model, std::vector<int32_t>& tokens, int max_new_tokens, Sampler& sampler,
                        const std::function<bool(int32_t)>& on_token = {});

} // namespace crucible
