// The 16-bit floating-point formats, one value at a time: bf16 (the top half
// of an f32) and IEEE f16. The CPU backend converts tensors with these, and
// file readers and writers (safetensors, GGUF) store and load with them.
#pragma once

#include <bit>
#include <cmath>
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

#if defined(__FLT16_MAX__)
// The compiler's _Float16 rounds to nearest even (F16C in hardware where built for it).
inline uint16_t f16_from_f32(float f) { return std::bit_cast<uint16_t>(static_cast<_Float16>(f)); }
inline float f32_from_f16(uint16_t h) { return static_cast<float>(std::bit_cast<_Float16>(h)); }
#else
// Compilers without _Float16 on this target (clang before 15 on x86): the
// same conversions in integer arithmetic, rounding to nearest even.
inline uint16_t f16_from_f32(float f)
{
    const uint32_t x = std::bit_cast<uint32_t>(f);
    const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
    uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));   // NaN, quiet
    if (ax >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);   // 65520 and up round to infinity
    if (ax < 0x38800000u) {
        // Below 2^-14: a subnormal half, |f| / 2^-24 rounded (the FPU rounds to nearest even).
        const float scaled = std::bit_cast<float>(ax) * 16777216.0f;
        return static_cast<uint16_t>(sign | static_cast<uint16_t>(std::nearbyint(scaled)));
    }
    ax += 0xfffu + ((ax >> 13) & 1u);   // round the 13 dropped bits to nearest even
    return static_cast<uint16_t>(sign | ((ax - 0x38000000u) >> 13));   // exponent bias 127 → 15
}

inline float f32_from_f16(uint16_t h)
{
    const uint32_t sign = uint32_t(h & 0x8000u) << 16;
    const uint32_t exponent = (h >> 10) & 0x1fu, mantissa = h & 0x3ffu;
    if (exponent == 0) {   // zero or subnormal: mantissa × 2^-24, exact in f32
        const float v = float(mantissa) * 5.9604644775390625e-8f;
        return sign ? -v : v;
    }
    if (exponent == 31) return std::bit_cast<float>(sign | 0x7f800000u | (mantissa << 13));
    return std::bit_cast<float>(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}
#endif

} // namespace crucible
