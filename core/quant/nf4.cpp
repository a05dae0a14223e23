#include "core/quant/nf4.h"

#include "kernels/error.h"
#include "kernels/nf4_weight.h"

#include <algorithm>
#include <cmath>
#include <string>

namespace crucible {

// One table for the quantizer and the kernels that decode its codes.
const std::array<float, 16> kNf4Levels = std::to_array(kNf4LevelTable);

namespace {

// Decision thresholds: the midpoints between neighbouring levels.
std::array<float, 15> nf4_midpoints()
{
    std::array<float, 15> m{};
    for (size_t i = 0; i < 15; ++i) m[i] = float((double(kNf4Levels[i]) + double(kNf4Levels[i + 1])) / 2.0);
    return m;
}

// Index of the code value nearest to x in an ascending code; equally near
// two, the lower.
uint8_t nearest_code(const std::array<float, 256>& code, float x)
{
    const auto it = std::lower_bound(code.begin(), code.end(), x);
    if (it == code.begin()) return 0;
    if (it == code.end()) return 255;
    const size_t hi = size_t(it - code.begin()), lo = hi - 1;
    return uint8_t(code[hi] - x < x - code[lo] ? hi : lo);
}

} // namespace

const std::array<float, 256>& dynamic_code_signed()
{
    // create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8):
    // for exponent i in 0..6, 2^i + 1 linearly spaced boundaries in
    // [0.1, 1]; their midpoints scaled by 10^(i - 6), with both signs; then
    // 0 and 1, sorted. Computed in f32 as the reference computes it.
    static const std::array<float, 256> code = [] {
        std::vector<float> data;
        for (int i = 0; i < 7; ++i) {
            const int items = (1 << i) + 1;
            // torch.linspace(0.1, 1, items) in f32: from the start for the
            // first half, from the end for the second.
            std::vector<float> bounds(static_cast<size_t>(items));
            const float step = (1.0f - 0.1f) / float(items - 1);
            for (int k = 0; k < items; ++k)
                bounds[size_t(k)] = k < items / 2 ? 0.1f + step * float(k) : 1.0f - step * float(items - 1 - k);
            const float scale = float(std::pow(10.0, double(i - 6)));
            for (int k = 0; k + 1 < items; ++k) {
                const float mean = (bounds[size_t(k)] + bounds[size_t(k + 1)]) / 2.0f;
                data.push_back(scale * mean);
                data.push_back(-(scale * mean));
            }
        }
        data.push_back(0.0f);
        data.push_back(1.0f);
        std::sort(data.begin(), data.end());
        std::array<float, 256> out{};
        std::copy(data.begin(), data.end(), out.begin());
        return out;
    }();
    return code;
}

uint8_t nf4_index(float x)
{
    static const std::array<float, 15> mid = nf4_midpoints();
    uint8_t i = 0;
    while (i < 15 && x > mid[i]) ++i;
    return i;
}

float Nf4Tensor::block_absmax(int64_t b) const
{
    if (!double_quant) return absmax[size_t(b)];
    return dynamic_code_signed()[absmax_codes[size_t(b)]] * absmax_scales[size_t(b / kNf4AbsmaxBlockSize)] +
           absmax_mean;
}

double Nf4Tensor::bits_per_weight() const
{
    if (numel == 0) return 0.0;
    const double bits = double(packed.size()) * 8 +
                        (double_quant ? double(absmax_codes.size()) * 8 + double(absmax_scales.size()) * 32 + 32
                                      : double(absmax.size()) * 32);
    return bits / double(numel);
}

Nf4Tensor nf4_quantize(const float* w, int64_t n, bool double_quant)
{
    Nf4Tensor t;
    t.numel = n;
    t.double_quant = double_quant;
    t.packed.assign(size_t((n + 1) / 2), 0);
    const int64_t blocks = t.blocks();
    std::vector<float> absmax(size_t(blocks), 0.0f);
    for (int64_t i = 0; i < n; ++i) {
        if (!std::isfinite(w[i]))
            throw Error("NF4: weight " + std::to_string(i) + " is " + std::to_string(w[i]) +
                        "; only finite weights can be quantized");
        float& a = absmax[size_t(i / kNf4BlockSize)];
        a = std::max(a, std::fabs(w[i]));
    }
    for (int64_t b = 0; b < blocks; ++b) {
        const float a = absmax[size_t(b)];
        const float inv = a > 0.0f ? 1.0f / a : 0.0f;   // a zero block stores exact zeros
        const int64_t end = std::min(n, (b + 1) * kNf4BlockSize);
        for (int64_t i = b * kNf4BlockSize; i < end; ++i) {
            const uint8_t q = nf4_index(w[i] * inv);
            t.packed[size_t(i / 2)] |= uint8_t(i % 2 == 0 ? q << 4 : q);
        }
    }
    if (!double_quant) {
        t.absmax = std::move(absmax);
        return t;
    }
    double sum = 0.0;
    for (float a : absmax) sum += a;
    t.absmax_mean = float(sum / double(std::max<int64_t>(blocks, 1)));
    const auto& code = dynamic_code_signed();
    const int64_t groups = (blocks + kNf4AbsmaxBlockSize - 1) / kNf4AbsmaxBlockSize;
    t.absmax_codes.assign(size_t(blocks), 0);
    t.absmax_scales.assign(size_t(groups), 0.0f);
    for (int64_t g = 0; g < groups; ++g) {
        const int64_t begin = g * kNf4AbsmaxBlockSize, end = std::min(blocks, begin + kNf4AbsmaxBlockSize);
        float scale = 0.0f;
        for (int64_t b = begin; b < end; ++b) scale = std::max(scale, std::fabs(absmax[size_t(b)] - t.absmax_mean));
        t.absmax_scales[size_t(g)] = scale;
        const float inv = scale > 0.0f ? 1.0f / scale : 0.0f;
        for (int64_t b = begin; b < end; ++b)
            t.absmax_codes[size_t(b)] = nearest_code(code, (absmax[size_t(b)] - t.absmax_mean) * inv);
    }
    return t;
}

void nf4_dequantize(const Nf4Tensor& t, float* out)
{
    for (int64_t b = 0; b < t.blocks(); ++b) {
        const float a = t.block_absmax(b);
        const int64_t end = std::min(t.numel, (b + 1) * kNf4BlockSize);
        for (int64_t i = b * kNf4BlockSize; i < end; ++i) {
            const uint8_t byte = t.packed[size_t(i / 2)];
            out[i] = kNf4Levels[i % 2 == 0 ? byte >> 4 : byte & 0xF] * a;
        }
    }
}

} // namespace crucible
