// NF4 weights on the GPU (kernels/nf4_weight.h): QLoRA's frozen base.
//
//   nf4_dequantize        one thread per byte of codes (two weights), the
//                         block's absmax rebuilt from its 8-bit code
//   nf4_linear_forward    ≤ 8 input rows (decode): a fused GEMV, one warp per
//                         weight row, reading each 4-bit code once and never
//                         writing the dequantized weight; more rows (prefill,
//                         training): the layer is dequantized just in time
//                         into a reusable bf16 scratch buffer, then one
//                         cuBLASLt GEMM (the scratch is the size of the
//                         largest projection, reused by every layer)
//   nf4_linear_backward   dequantize into the scratch, then din = dout·W
//
// Not here: dequantizing inside the GEMM's shared-memory tiles (no layer
// buffer, one pass over the codes); the just-in-time layer costs one extra
// write and read of the bf16 weight per GEMM, small beside the GEMM at
// training's row counts.
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/nf4_weight.h"

namespace crucible {

using namespace cuda;

namespace {

// The levels of kernels/nf4_weight.h, in constant memory (a warp reading one
// level per lane is served from its cache).
#define CRUCIBLE_NF4_LEVEL(i) kNf4LevelTable[i]
__constant__ float kLevels[16] = {
    CRUCIBLE_NF4_LEVEL(0),  CRUCIBLE_NF4_LEVEL(1),  CRUCIBLE_NF4_LEVEL(2),  CRUCIBLE_NF4_LEVEL(3),
    CRUCIBLE_NF4_LEVEL(4),  CRUCIBLE_NF4_LEVEL(5),  CRUCIBLE_NF4_LEVEL(6),  CRUCIBLE_NF4_LEVEL(7),
    CRUCIBLE_NF4_LEVEL(8),  CRUCIBLE_NF4_LEVEL(9),  CRUCIBLE_NF4_LEVEL(10), CRUCIBLE_NF4_LEVEL(11),
    CRUCIBLE_NF4_LEVEL(12), CRUCIBLE_NF4_LEVEL(13), CRUCIBLE_NF4_LEVEL(14), CRUCIBLE_NF4_LEVEL(15),
};
#undef CRUCIBLE_NF4_LEVEL

constexpr int kGemvMaxRows = 8;
constexpr int kGemvWarps = 8;   // weight rows per thread block

struct Nf4Args {
    const uint8_t* packed;
    const uint8_t* codes;
    const float* scales;
    const float* code;
    float mean;
    int64_t rows, cols;
};

Nf4Args args_of(const Nf4Weight& w)
{
    return Nf4Args{w.packed.as<uint8_t>(), w.absmax_codes.as<uint8_t>(), w.absmax_scales.as<float>(),
                   w.code.as<float>(), w.absmax_mean, w.rows, w.cols};
}

__device__ __forceinline__ float block_absmax(const Nf4Args& w, int64_t element)
{
    const int64_t block = element / kNf4WeightBlock;
    return w.code[w.codes[block]] * w.scales[block / kNf4WeightAbsmaxBlock] + w.mean;
}

// Byte b holds elements 2b (high nibble) and 2b + 1 (low nibble); both are in
// one block of 64.
template <class T>
__global__ void nf4_dequantize_kernel(T* __restrict__ out, Nf4Args w)
{
    const int64_t numel = w.rows * w.cols;
    const int64_t bytes = (numel + 1) / 2;
    for (int64_t b = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; b < bytes;
         b += int64_t(gridDim.x) * blockDim.x) {
        const int64_t i = 2 * b;
        const uint8_t byte = w.packed[b];
        const float absmax = block_absmax(w, i);
        out[i] = from_f<T>(kLevels[byte >> 4] * absmax);
        if (i + 1 < numel) out[i + 1] = from_f<T>(kLevels[byte & 0x0F] * absmax);
    }
}

// out[r, out_col + j] (+)= Σ_c in[r, c] · w[j, c] for r < m ≤ 8: warp `j` of
// the grid walks weight row j. When a row's codes start on a 4-byte boundary
// (cols a multiple of 8) each lane takes 4 bytes (8 weights, one absmax) per
// step; otherwise one byte.
template <class T>
__global__ void nf4_gemv_kernel(T* __restrict__ out, int64_t ldo, int64_t out_col, const T* __restrict__ in,
                                int m, Nf4Args w, bool accumulate)
{
    const int lane = threadIdx.x & 31;
    const int64_t j = int64_t(blockIdx.x) * kGemvWarps + (threadIdx.x >> 5);
    if (j >= w.rows) return;
    const int64_t cols = w.cols, row0 = j * cols;
    float acc[kGemvMaxRows];
#pragma unroll
    for (int r = 0; r < kGemvMaxRows; ++r) acc[r] = 0.0f;

    if (cols % 8 == 0) {
        const uint32_t* words = reinterpret_cast<const uint32_t*>(w.packed + row0 / 2);
        const int64_t nwords = cols / 8;
        for (int64_t q = lane; q < nwords; q += 32) {
            const uint32_t word = words[q];
            const int64_t c0 = q * 8;
            const float absmax = block_absmax(w, row0 + c0);
            float wv[8];
#pragma unroll
            for (int k = 0; k < 4; ++k) {
                const uint32_t byte = (word >> (8 * k)) & 0xFFu;   // little-endian: byte k of the word
                wv[2 * k] = kLevels[byte >> 4] * absmax;
                wv[2 * k + 1] = kLevels[byte & 0x0F] * absmax;
            }
#pragma unroll
            for (int r = 0; r < kGemvMaxRows; ++r) {
                if (r < m) {
                    const T* x = in + int64_t(r) * cols + c0;
                    float s = 0.0f;
#pragma unroll
                    for (int k = 0; k < 8; ++k) s += wv[k] * to_f(x[k]);
                    acc[r] += s;
                }
            }
        }
    } else {
        for (int64_t c = 2 * lane - (row0 & 1); c < cols; c += 64) {
            // Pairs of elements by byte: element e = row0 + c (c may start at -1
            // when the row begins on a low nibble).
            const int64_t e = row0 + c;
            const uint8_t byte = w.packed[e >> 1];
            const float absmax_hi = c >= 0 ? block_absmax(w, e) : 0.0f;
            const float absmax_lo = c + 1 < cols ? block_absmax(w, e + 1) : 0.0f;
#pragma unroll
            for (int r = 0; r < kGemvMaxRows; ++r) {
                if (r < m) {
                    const T* x = in + int64_t(r) * cols;
                    if (c >= 0) acc[r] += kLevels[byte >> 4] * absmax_hi * to_f(x[c]);
                    if (c + 1 < cols) acc[r] += kLevels[byte & 0x0F] * absmax_lo * to_f(x[c + 1]);
                }
            }
        }
    }
#pragma unroll
    for (int r = 0; r < kGemvMaxRows; ++r) {
        if (r >= m) break;
        const float s = warp_sum(acc[r]);
        if (lane == 0) {
            T* y = out + int64_t(r) * ldo + out_col + j;
            *y = from_f<T>(accumulate ? to_f(*y) + s : s);
        }
    }
}

} // namespace

void CudaBackend::do_nf4_dequantize(Tensor out, const Nf4Weight& w)
{
    const int64_t bytes = (w.numel() + 1) / 2;
    dispatch_act(out.dtype, "nf4_dequantize", [&](auto tag) {
        using T = decltype(tag);
        const unsigned grid = std::min<unsigned>(blocks_for(bytes, 256), unsigned(sm_count()) * 16);
        nf4_dequantize_kernel<T><<<grid, 256, 0, m_stream>>>(out.as<T>(), args_of(w));
        CRUCIBLE_CUDA_LAUNCH_CHECK();
    });
}

void CudaBackend::do_nf4_linear_forward(Tensor out, Tensor in, const Nf4Weight& w, int64_t out_col, bool accumulate)
{
    const int64_t m = in.rows(), n = out.cols();
    if (m <= kGemvMaxRows) {
        dispatch_act(out.dtype, "nf4_linear_forward", [&](auto tag) {
            using T = decltype(tag);
            nf4_gemv_kernel<T><<<blocks_for(w.rows, kGemvWarps), 32 * kGemvWarps, 0, m_stream>>>(
                out.as<T>(), n, out_col, in.as<T>(), int(m), args_of(w), accumulate);
            CRUCIBLE_CUDA_LAUNCH_CHECK();
        });
        return;
    }
    // Just in time: the layer in the compute dtype, then a GEMM into the band.
    const DType dt = compute_dtype();
    Tensor weight(scratch(dtype_bytes(dt, w.numel())), dt, Shape{w.rows, w.cols}, DeviceKind::cuda);
    do_nf4_dequantize(weight, w);
    GemmArgs g;
    g.out = static_cast<char*>(out.data) + dtype_bytes(out.dtype, out_col);
    g.out_dtype = out.dtype;
    g.ldo = n;
    g.a = GemmOperand{in.data, in.dtype, w.cols, false, 0};
    g.b = GemmOperand{weight.data, weight.dtype, w.cols, true, 0};
    g.m = m;
    g.n = w.rows;
    g.k = w.cols;
    g.beta = accumulate ? 1.0f : 0.0f;
    gemm(g);
}

void CudaBackend::do_nf4_linear_backward(Tensor din, Tensor dout, const Nf4Weight& w, int64_t dout_col,
                                         bool accumulate_din)
{
    const DType dt = compute_dtype();
    Tensor weight(scratch(dtype_bytes(dt, w.numel())), dt, Shape{w.rows, w.cols}, DeviceKind::cuda);
    do_nf4_dequantize(weight, w);
    GemmArgs g;
    g.out = din.data;
    g.out_dtype = din.dtype;
    g.ldo = w.cols;
    g.a = GemmOperand{static_cast<const char*>(dout.data) + dtype_bytes(dout.dtype, dout_col), dout.dtype,
                      dout.cols(), false, 0};
    g.b = GemmOperand{weight.data, weight.dtype, w.cols, false, 0};
    g.m = dout.rows();
    g.n = w.cols;
    g.k = w.rows;
    g.beta = accumulate_din ? 1.0f : 0.0f;
    gemm(g);
}

} // namespace crucible
