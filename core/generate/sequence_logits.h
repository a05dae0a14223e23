// The model's next-token logits after every position of one sequence: what
// parity checks against other implementations (transformers, llama.cpp)
// compare.
#pragma once

#include "core/model/param_store.h"

#include <cstdint>
#include <vector>

namespace crucible {

// [ids.size(), vocab] row-major; ids must fit the model's context.
std::vector<float> sequence_logits(ParamStore& params, const std::vector<int32_t>& ids);

} // namespace crucible
