// Nf4Weight: an NF4 weight matrix [rows, cols] in a backend's memory, laid
// out as bitsandbytes stores it with double quantization (core/quant/nf4.h
// quantizes it on the host):
//
//   packed         u8 [⌈rows·cols / 2⌉]   element 2j in the high nibble, 2j+1 in the low
//   absmax_codes   u8 [blocks]            one per 64 consecutive elements (row-major)
//   absmax_scales  f32 [⌈blocks / 256⌉]   one per 256 absmax codes
//   code           f32 [256]              the signed dynamic 8-bit code
//   absmax_mean    the mean subtracted from the absmaxes before quantizing
//
//   w[i] = kNf4Level[nibble(i)] · (code[absmax_codes[i / 64]] · absmax_scales[i / (64·256)] + absmax_mean)
#pragma once

#include "kernels/tensor.h"

#include <cstdint>

namespace crucible {

// bitsandbytes' NF4 levels (index 7 is exactly 0): the one table, read by
// the kernels and by the quantizer (core/quant/nf4.h).
inline constexpr float kNf4LevelTable[16] = {
    -1.0f,
    -0.6961928009986877f,
    -0.5250730514526367f,
    -0.39491748809814453f,
    -0.28444138169288635f,
    -0.18477343022823334f,
    -0.09105003625154495f,
    0.0f,
    0.07958029955625534f,
    0.16093020141124725f,
    0.24611230194568634f,
    0.33791524171829224f,
    0.44070982933044434f,
    0.5626170039176941f,
    0.7229568362236023f,
    1.0f,
};

inline constexpr int64_t kNf4WeightBlock = 64;        // elements per absmax
inline constexpr int64_t kNf4WeightAbsmaxBlock = 256;  // absmaxes per f32 scale

struct Nf4Weight {
    Tensor packed, absmax_codes, absmax_scales, code;
    float absmax_mean = 0.0f;
    int64_t rows = 0, cols = 0;

    int64_t numel() const { return rows * cols; }
    int64_t blocks() const { return (numel() + kNf4WeightBlock - 1) / kNf4WeightBlock; }
};

} // namespace crucible
