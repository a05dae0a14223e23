// Building blocks shared by the CpuBackend op files (internal to kernels/cpu).
//
// The library is built with -O3 -march=x86-64-v3 but without -ffast-math, so
// GCC will not reorder a floating-point reduction by itself. Reductions here
// therefore keep kLanes independent partial sums that the compiler maps onto
// SIMD registers; the summation order is fixed by the code, not by the thread
// count, which keeps every result reproducible bit for bit.
//
// exp_approx is a branch-free exp that vectorises (the libm call does not):
// softmax, SiLU and the attention tiles spend most of their time in it.
#pragma once

#include "kernels/error.h"
#include "kernels/half.h"
#include "kernels/tensor.h"

#include <cblas.h>

#include <algorithm>
#include <bit>
#include <climits>
#include <cmath>
#include <cstdint>
#include <string>

namespace crucible::cpu {

inline constexpr int kLanes = 16;   // two AVX2 registers of partial sums

// exp(x) to about 2 ulp for x in [-87, 88]; smaller inputs give ~1e-38 rather
// than 0 (callers mask what must be exactly zero), larger ones saturate near
// 1.7e38, NaN propagates. Range reduction x = n·ln2 + r with |r| ≤ ln2/2 (ln2
// split in two constants so n·ln2 is exact), a degree-6 polynomial for e^r and
// 2^n assembled in the exponent bits.
//
// Without -fno-trapping-math GCC refuses to if-convert a floating-point
// select feeding arithmetic, so the clamp works on the bit pattern with
// integer compares, and n is read from the bits of the rounded value rather
// than converted: the loop then vectorises.
inline float exp_approx(float x)
{
    const uint32_t bits = std::bit_cast<uint32_t>(x);
    const uint32_t sign = bits & 0x80000000u;
    const uint32_t magnitude = bits & 0x7fffffffu;
    const uint32_t limit = sign ? 0x42ae0000u /* 87 */ : 0x42b00000u /* 88 */;
    const uint32_t clamped = magnitude > 0x7f800000u ? magnitude : (magnitude < limit ? magnitude : limit);
    x = std::bit_cast<float>(sign | clamped);

    constexpr float kRoundMagic = 12582912.0f;   // 1.5·2^23: adding it rounds to an integer
    const float shifted = x * 1.44269504088896341f + kRoundMagic;
    const float n = shifted - kRoundMagic;
    const int32_t n_int = std::bit_cast<int32_t>(shifted) - std::bit_cast<int32_t>(kRoundMagic);
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    return p * std::bit_cast<float>(static_cast<uint32_t>(n_int + 127) << 23);
}

inline float sum_lanes(const float (&acc)[kLanes])
{
    // Pairwise, in a fixed order.
    float s8[8];
    for (int l = 0; l < 8; ++l) s8[l] = acc[l] + acc[l + 8];
    float s4[4];
    for (int l = 0; l < 4; ++l) s4[l] = s8[l] + s8[l + 4];
    return (s4[0] + s4[2]) + (s4[1] + s4[3]);
}

inline float max_lanes(const float (&acc)[kLanes])
{
    float m = acc[0];
    for (int l = 1; l < kLanes; ++l) m = acc[l] > m ? acc[l] : m;
    return m;
}

// Σ a[i]·b[i]
inline float dot(const float* a, const float* b, int64_t n)
{
    float acc[kLanes] = {};
    int64_t i = 0;
    for (; i + kLanes <= n; i += kLanes)
        for (int l = 0; l < kLanes; ++l) acc[l] += a[i + l] * b[i + l];
    float tail = 0.0f;
    for (; i < n; ++i) tail += a[i] * b[i];
    return sum_lanes(acc) + tail;
}

// Σ a[i]·b[i]·c[i]
inline float dot3(const float* a, const float* b, const float* c, int64_t n)
{
    float acc[kLanes] = {};
    int64_t i = 0;
    for (; i + kLanes <= n; i += kLanes)
        for (int l = 0; l < kLanes; ++l) acc[l] += a[i + l] * b[i + l] * c[i + l];
    float tail = 0.0f;
    for (; i < n; ++i) tail += a[i] * b[i] * c[i];
    return sum_lanes(acc) + tail;
}

inline float sum(const float* a, int64_t n)
{
    float acc[kLanes] = {};
    int64_t i = 0;
    for (; i + kLanes <= n; i += kLanes)
        for (int l = 0; l < kLanes; ++l) acc[l] += a[i + l];
    float tail = 0.0f;
    for (; i < n; ++i) tail += a[i];
    return sum_lanes(acc) + tail;
}

// max over a[0, n), n ≥ 1
inline float max_of(const float* a, int64_t n)
{
    float acc[kLanes];
    for (int l = 0; l < kLanes; ++l) acc[l] = a[0];
    int64_t i = 0;
    for (; i + kLanes <= n; i += kLanes)
        for (int l = 0; l < kLanes; ++l) acc[l] = a[i + l] > acc[l] ? a[i + l] : acc[l];
    float m = max_lanes(acc);
    for (; i < n; ++i) m = a[i] > m ? a[i] : m;
    return m;
}

// out[i] = exp(in[i] - shift); returns Σ out[i]. out may alias in.
inline float exp_shifted_sum(float* out, const float* in, float shift, int64_t n)
{
    float acc[kLanes] = {};
    int64_t i = 0;
    for (; i + kLanes <= n; i += kLanes)
        for (int l = 0; l < kLanes; ++l) {
            const float e = exp_approx(in[i + l] - shift);
            out[i + l] = e;
            acc[l] += e;
        }
    float tail = 0.0f;
    for (; i < n; ++i) {
        const float e = exp_approx(in[i] - shift);
        out[i] = e;
        tail += e;
    }
    return sum_lanes(acc) + tail;
}

// ---- bf16 / f16 ----------------------------------------------------------------

using crucible::bf16_from_f32;
using crucible::f16_from_f32;
using crucible::f32_from_bf16;
using crucible::f32_from_f16;

// Stores an updated weight into a compute copy of dtype f32, bf16 or f16.
inline void store_compute(void* dst, DType dtype, int64_t i, float value)
{
    switch (dtype) {
    case DType::f32: static_cast<float*>(dst)[i] = value; break;
    case DType::bf16: static_cast<uint16_t*>(dst)[i] = bf16_from_f32(value); break;
    default: static_cast<uint16_t*>(dst)[i] = f16_from_f32(value); break;
    }
}

// ---- work splitting ------------------------------------------------------------------

// Contiguous range `part` of `parts` over [0, n): the static split used for
// partial sums, fixed by the backend's thread count alone.
struct Range {
    int64_t begin;
    int64_t end;
};
inline Range split_range(int64_t n, int64_t parts, int64_t part)
{
    return Range{n * part / parts, n * (part + 1) / parts};
}

// Below this many elements an op runs on one thread: waking the team costs more.
inline constexpr int64_t kParallelMinWork = 1 << 14;

inline int blas_int(int64_t v, const char* what)
{
    CRUCIBLE_CHECK(v >= 0 && v <= INT_MAX, std::string(what) + " is too large for BLAS");
    return static_cast<int>(v);
}

// Row-major C[M, N] = alpha · op(A) · op(B) + beta · C, through OpenBLAS.
inline void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                  int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc)
{
    if (m == 0 || n == 0) return;
    if (k == 0) {   // an empty product: C = beta·C (BLAS rejects the zero leading dimensions)
        for (int64_t i = 0; i < m; ++i)
            for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
        return;
    }
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
                blas_int(m, "a matrix dimension"), blas_int(n, "a matrix dimension"),
                blas_int(k, "a matrix dimension"), alpha, a, blas_int(lda, "a leading dimension"), b,
                blas_int(ldb, "a leading dimension"), beta, c, blas_int(ldc, "a leading dimension"));
}

// sgemm over `threads` threads by splitting C into row (or, when C is wider
// than tall, column) slices, one single-threaded OpenBLAS call per slice.
// Training GEMMs are skinny (K = d_model = 128 for nano), where OpenBLAS's own
// threading spends its time synchronising the threads that share packed
// panels; independent slices need no synchronisation, and each element of C
// still sums over K in one fixed order. Small products run as one call.
void parallel_sgemm(int threads, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                    const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

// OpenBLAS (OpenMP build) threads its GEMMs by the calling thread's OpenMP
// thread count and keeps a process-wide count of its own; each backend
// asserts both before its GEMMs run outside a parallel region.
void use_blas_threads(int threads);

} // namespace crucible::cpu
