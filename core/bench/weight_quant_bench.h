// What quantizing a model's projection weights costs, scheme by scheme
// (core/quant/weight_quant.h): the weights' mean squared error, the bits per
// weight stored, and the model's bits/byte with those weights, measured by
// the caller's evaluation. Embeddings, norms and the head stay f32, as in
// QLoRA. The weights are restored afterwards.
#pragma once

#include "core/model/param_store.h"
#include "core/quant/weight_quant.h"

#include <functional>
#include <vector>

namespace crucible {

struct WeightQuantResult {
    WeightQuant scheme;
    double bits_per_weight = 0.0;
    double weight_mse = 0.0;
    double bits_per_byte = 0.0;
};

// `bits_per_byte` evaluates the model as its weights stand; `each` (may be
// empty) hears every scheme's result as soon as it is measured and may throw
// to stop (the weights are restored first).
std::vector<WeightQuantResult> measure_weight_quant(ParamStore& params, const std::function<double()>& bits_per_byte,
                                                    const std::function<void(const WeightQuantResult&)>& each = {});

} // namespace crucible
