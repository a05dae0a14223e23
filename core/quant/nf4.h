// NF4: 4-bit NormalFloat weights laid out as bitsandbytes stores them
// (QLoRA's base weights).
//
//   levels     16 values, quantiles of N(0, 1) scaled to [-1, 1] with an
//              exact zero (kNf4Levels)
//   blocks     64 consecutive weights share one scale, their absmax; a weight
//              is stored as the index of the level nearest to w / absmax
//   packing    two indices per byte: element 2j in the high nibble, 2j+1 in
//              the low one
//   double quantization (optional): the absmaxes minus their mean are
//              themselves quantized to 8 bits in blocks of 256, with
//              bitsandbytes' signed dynamic 8-bit code and one f32 absmax per
//              block; the mean is kept in f32. 4 + 8/64 + 32/(64·256) ≈ 4.127
//              bits per weight (4.5 without).
//
// Dequantizing: w = level[index] · absmax, absmax = code[q]·absmax2 + mean.
// Non-finite weights are refused: no scale represents them.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

namespace crucible {

inline constexpr int64_t kNf4BlockSize = 64;
inline constexpr int64_t kNf4AbsmaxBlockSize = 256;

// The 16 NF4 levels, ascending; index 7 is exactly 0.
extern const std::array<float, 16> kNf4Levels;

// bitsandbytes' signed dynamic 8-bit code (create_dynamic_map(signed=True)):
// 256 ascending values in [-1, 1], 0 and 1 included; equal to torch's f32
// computation of it within an ulp or two (torch.linspace rounds its own way).
const std::array<float, 256>& dynamic_code_signed();

struct Nf4Tensor {
    int64_t numel = 0;
    std::vector<uint8_t> packed;        // ceil(numel / 2) bytes
    bool double_quant = false;
    std::vector<float> absmax;          // per block of 64 (empty under double quantization)
    std::vector<uint8_t> absmax_codes;  // double quantization: per block of 64, an index into the code
    std::vector<float> absmax_scales;   // double quantization: per block of 256 absmaxes
    float absmax_mean = 0.0f;           // double quantization: subtracted before quantizing

    int64_t blocks() const { return (numel + kNf4BlockSize - 1) / kNf4BlockSize; }
    // The absmax of block b as dequantization uses it.
    float block_absmax(int64_t b) const;
    // Storage in bits per weight.
    double bits_per_weight() const;
};

// The index of the level nearest to x (x in [-1, 1]); exactly between two
// levels, the lower, as bitsandbytes' strict comparisons decide.
uint8_t nf4_index(float x);

// Throws Error on a non-finite weight.
Nf4Tensor nf4_quantize(const float* weights, int64_t n, bool double_quant);
void nf4_dequantize(const Nf4Tensor& t, float* out);

} // namespace crucible
