#include "core/generate/recompute_generate.h"

#include "kernels/error.h"

#include <algorithm>

namespace crucible {

void generate_recompute(Transformer& model, std::vector<int32_t>& tokens, int max_new_tokens, Sampler& sampler,
                        const std::function<bool(int32_t)>& on_token)
{
    CRUCIBLE_CHECK(!tokens.empty(), "generation needs at least one prompt token");
    // The model may have been allocated for less than its context (training
    // on shorter windows): the window is what it can take.
    const int64_t window = model.max_seq();
    std::vector<float> logits;
    for (int i = 0; i < max_new_tokens; ++i) {
        const int64_t len = std::min<int64_t>(int64_t(tokens.size()), window);
        model.last_logits(tokens.data() + tokens.size() - size_t(len), 1, len, logits);
        const int32_t next = sampler.sample(logits, tokens);
        tokens.push_back(next);
        if (on_token && !on_token(next)) break;
    }
}

} // namespace crucible
