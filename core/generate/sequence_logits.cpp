#include "core/generate/sequence_logits.h"

#include "core/generate/generation_run.h"
#include "kernels/error.h"

namespace crucible {

std::vector<float> sequence_logits(ParamStore& params, const std::vector<int32_t>& ids)
{
    const int context = params.config().seq_len;
    if (ids.empty()) throw Error("no tokens to compute logits for");
    if (int64_t(ids.size()) > context)
        throw Error(std::to_string(ids.size()) + " tokens do not fit the model's context of " + std::to_string(context));
    CachedModel model(params, 1, context);
    std::vector<std::vector<float>> logits;
    model.append({ids}, CachedModel::Logits::every, logits);
    return std::move(logits[0]);
}

} // namespace crucible
