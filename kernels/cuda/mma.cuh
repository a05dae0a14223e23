// The tensor-core product every mma kernel uses: mma.sync m16n8k16, bf16
// inputs, f32 accumulators, and the packing of two floats into its operands.
//
// Fragment layouts (lane = 4·g + t, g = lane / 4, t = lane % 4):
//   A 16×16 row-major, 4 regs:  (g, 2t..2t+1) (g+8, 2t..) (g, 2t+8..) (g+8, 2t+8..)
//   B 16×8  "col",      2 regs:  (k = 2t..2t+1, n = g) (k = 2t+8..2t+9, n = g)
//   C 16×8  f32,        4 vals:  (g, 2t) (g, 2t+1) (g+8, 2t) (g+8, 2t+1)
// Each register holds two bf16, the lower index in the low half.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

namespace crucible::cuda {

// c += a · b
__device__ __forceinline__ void mma_bf16(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
                 "{%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi)
{
    const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&v);
}

} // namespace crucible::cuda
