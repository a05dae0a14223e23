// Weight quantization schemes compared by `crucible-cli bench quant`: each
// quantizes a [rows, cols] matrix and writes back what dequantization gives,
// so the error and the model's quality can be measured on real weights.
//
//   bf16           round to bfloat16 (the reference the others are held to)
//   nf4            NF4, blocks of 64 with an f32 absmax (core/quant/nf4.h)
//   nf4-dq         NF4 with double quantization (≈ 4.127 bits per weight)
//   int4-tensor    symmetric int4 in [-7, 7] with one scale for the tensor
//   int4-block64   symmetric int4 with an f32 absmax scale per block of 64
//   int8-row       symmetric int8 in [-127, 127] with an f32 scale per row
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace crucible {

enum class WeightQuant { bf16, nf4, nf4_dq, int4_tensor, int4_block64, int8_row };

const std::vector<WeightQuant>& weight_quant_schemes();
const char* to_string(WeightQuant q);

// Quantizes w [rows × cols] and writes its dequantized values to out (may be
// w); returns the bits per weight the scheme stores. Throws Error on a
// non-finite weight.
double quantize_roundtrip(WeightQuant q, const float* w, int64_t rows, int64_t cols, float* out);

} // namespace crucible
