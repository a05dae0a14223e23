// Shared pieces of the attention kernels: tensor-core and async-copy PTX
// wrappers (ldmatrix, cp.async; the mma in mma.cuh), the parameter block
// and the host launchers of every attention variant (flash, exact, naive).
//
// With the fragment layouts of kernels/cuda/mma.cuh, two adjacent C tiles
// (n 0..15) are exactly the A fragment of the next product along that
// dimension once packed to bf16: P = softmax(S) feeds P·V from registers.
#pragma once

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/mma.cuh"

namespace crucible::cuda::attn {

// ---- PTX wrappers ---------------------------------------------------------------------

__device__ __forceinline__ uint32_t smem_addr(const void* p)
{
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t r[4], const void* p)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p)));
}

__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t r[4], const void* p)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p)));
}

// 16 bytes global -> shared, zero-filled when !valid (src is then not read).
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid)
{
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src),
                 "r"(valid ? 16 : 0));
}

__device__ __forceinline__ void cp_async4(void* dst, const void* src, bool valid)
{
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(smem_addr(dst)), "l"(src),
                 "r"(valid ? 4 : 0));
}

__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }

template <int N> __device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

__device__ __forceinline__ float fast_exp2(float x)
{
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

// Async copy of rows [row0, row0 + ROWS) of one head (D contiguous elements,
// rows `ld` apart in global memory) into shared [ROWS][D + 8]; rows at or past
// `rows` are zero-filled.
template <int ROWS, int D, int THREADS>
__device__ __forceinline__ void load_rows_async(bf16* s, const bf16* g, int64_t ld, int row0, int rows, int tid)
{
    constexpr int kChunks = D / 8;
#pragma unroll 4
    for (int i = tid; i < ROWS * kChunks; i += THREADS) {
        const int r = i / kChunks, c = i % kChunks;
        const int row = row0 + r;
        const bool valid = row < rows;
        cp_async16(s + r * (D + 8) + c * 8, g + int64_t(valid ? row : 0) * ld + c * 8, valid);
    }
}

// Shared rows -> global, 16 bytes per thread, rows at or past `rows` skipped.
template <int ROWS, int D, int THREADS>
__device__ __forceinline__ void store_rows(bf16* g, int64_t ld, const bf16* s, int row0, int rows, int tid)
{
    constexpr int kChunks = D / 8;
    for (int i = tid; i < ROWS * kChunks; i += THREADS) {
        const int r = i / kChunks, c = i % kChunks;
        if (row0 + r < rows)
            *reinterpret_cast<int4*>(g + int64_t(row0 + r) * ld + c * 8) =
                *reinterpret_cast<const int4*>(s + r * (D + 8) + c * 8);
    }
}

// ---- parameters ---------------------------------------------------------------------------

// Packed qkv [B·T, (H + 2·KV)·D]; out/dout [B·T, H·D]; lse/delta [B, H, T].
struct AttnArgs {
    const void* qkv = nullptr;
    void* out = nullptr;          // forward output
    float* lse = nullptr;
    const void* dout = nullptr;   // backward
    const void* fwd_out = nullptr;
    void* dqkv = nullptr;
    float* delta = nullptr;       // scratch [B, H, T]
    int B = 1, T = 1, H = 1, KV = 1, D = 1;
    float scale = 1.0f;           // 1/sqrt(D)

    __host__ __device__ int group() const { return H / KV; }
    __host__ __device__ int64_t ld_qkv() const { return int64_t(H + 2 * KV) * D; }
    __host__ __device__ int64_t ld_out() const { return int64_t(H) * D; }
};

} // namespace crucible::cuda::attn

namespace crucible {
class CudaBackend;
}

namespace crucible::cuda::attn {

// Flash attention (bf16, tensor cores) for the head dims it is built for.
bool flash_supported(int head_dim);
void flash_forward(const AttnArgs& a, cudaStream_t stream);
void flash_backward(const AttnArgs& a, cudaStream_t stream);   // needs a.delta computed

// Exact attention, one warp per query (or key) row, any head dim up to 512,
// f32 or bf16: the parity mode and the head dims flash is not built for.
void exact_forward(const AttnArgs& a, DType dtype, cudaStream_t stream);
void exact_backward(const AttnArgs& a, DType dtype, cudaStream_t stream);

// delta[b, h, t] = Σ_d dout·out over the head: the softmax backward's row term.
void attention_delta(const AttnArgs& a, DType dtype, cudaStream_t stream);

// Naive attention: the T×T scores materialised through cuBLASLt.
void naive_forward(CudaBackend& be, const AttnArgs& a, DType dtype);
void naive_backward(CudaBackend& be, const AttnArgs& a, DType dtype);

} // namespace crucible::cuda::attn
