// The 16-bit floating-point formats, one value at a time: bf16 (the top half
// of an f32) and IEEE f16. The CPU backend converts tensors with these, and
// file readers and writers (safetensors, GGUF) store and load with them.
#pragma once

#include <bit>
#include <cstdint>

namespace crucible {

// Round to nearest even; NaN stays a (quiet) NaN instead of rounding to Inf.
inline uint16_t bf16_from_f32(float f)
{
    const uint32_t u = std::bit_cast<uint32_t>(f);
    const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    const bool is_nan = (u & 0x7fffffffu) > 0x7f800000u;
    return static_cast<uint16_t>(is_nan ? ((u >> 16) | 0x0040u) : rounded);
}

inline float f32_from_bf16(uint16_t h) { return std::bit_cast<float>(static_cast<uint32_t>(h) << 16); }

// The compiler's _Float16 rounds to nearest even (F16C in hardware where built for it).
inline uint16_t f16_from_f32(float f) { return std::bit_cast<uint16_t>(static_cast<_Float16>(f)); }
inline float f32_from_f16(uint16_t h) { return static_cast<float>(std::bit_cast<_Float16>(h)); }

} // namespace crucible
