#include "core/quant/weight_quant.h"

#include "core/quant/nf4.h"
#include "kernels/error.h"
#include "kernels/half.h"

#include <algorithm>
#include <cmath>

namespace crucible {

const std::vector<WeightQuant>& weight_quant_schemes()
{
    static const std::vector<WeightQuant> all = {WeightQuant::bf16,        WeightQuant::nf4,
                                                 WeightQuant::nf4_dq,      WeightQuant::int4_tensor,
                                                 WeightQuant::int4_block64, WeightQuant::int8_row};
    return all;
}

const char* to_string(WeightQuant q)
{
    switch (q) {
    case WeightQuant::bf16: return "bf16";
    case WeightQuant::nf4: return "nf4";
    case WeightQuant::nf4_dq: return "nf4-dq";
    case WeightQuant::int4_tensor: return "int4-tensor";
    case WeightQuant::int4_block64: return "int4-block64";
    case WeightQuant::int8_row: return "int8-row";
    }
    return "?";
}

namespace {

// Symmetric integer quantization of w[begin, end) with levels [-limit, limit].
void symmetric(const float* w, float* out, int64_t begin, int64_t end, int limit)
{
    float absmax = 0.0f;
    for (int64_t i = begin; i < end; ++i) absmax = std::max(absmax, std::fabs(w[i]));
    const float scale = absmax / float(limit);
    for (int64_t i = begin; i < end; ++i) {
        const float q = scale > 0.0f ? std::clamp(std::nearbyint(w[i] / scale), float(-limit), float(limit)) : 0.0f;
        out[i] = q * scale;
    }
}

} // namespace

double quantize_roundtrip(WeightQuant q, const float* w, int64_t rows, int64_t cols, float* out)
{
    const int64_t n = rows * cols;
    for (int64_t i = 0; i < n; ++i)
        if (!std::isfinite(w[i])) throw Error(std::string(to_string(q)) + ": the weights hold a non-finite value");
    switch (q) {
    case WeightQuant::bf16:
        for (int64_t i = 0; i < n; ++i) out[i] = f32_from_bf16(bf16_from_f32(w[i]));
        return 16.0;
    case WeightQuant::nf4:
    case WeightQuant::nf4_dq: {
        const Nf4Tensor t = nf4_quantize(w, n, q == WeightQuant::nf4_dq);
        nf4_dequantize(t, out);
        return t.bits_per_weight();
    }
    case WeightQuant::int4_tensor:
        symmetric(w, out, 0, n, 7);
        return 4.0 + 32.0 / double(n);
    case WeightQuant::int4_block64:
        for (int64_t b = 0; b < n; b += 64) symmetric(w, out, b, std::min(n, b + 64), 7);
        return 4.0 + 32.0 / 64.0;
    case WeightQuant::int8_row:
        for (int64_t r = 0; r < rows; ++r) symmetric(w, out, r * cols, (r + 1) * cols, 127);
        return 8.0 + 32.0 / double(cols);
    }
    return 0.0;
}

} // namespace crucible
