// Launchers of the generation ops on CUDA (see the "generation" section of
// kernels/backend.h): RoPE at per-row positions and the KV-cache write
// (cuda_kv_cache.cu), attention of new tokens over the cache
// (cuda_decode_attention.cu). Free functions over a stream, so CudaBackend
// wires each op in a line and the decode step can later be captured as a
// CUDA graph: every launch configuration depends only on shapes (the cache
// capacity, never the positions, which stay on the device).
//
// Positions past the cache capacity are skipped on the device (the CPU
// backend throws for them); negative positions are padding rows.
#pragma once

#include "kernels/backend.h"

#include <cuda_runtime.h>

#include <cstddef>

namespace crucible::cuda {

// qkv [B·T, (H + 2·KV)·D] in place; positions i32 [B·T].
void launch_rope_at(Tensor qkv, const AttentionShape& s, Tensor positions, float theta, cudaStream_t stream);

// k_cache, v_cache [S ≥ B, KV, P, D] (dtype of qkv); qkv [B·T, (H + 2·KV)·D]; positions i32 [B·T].
void launch_kv_cache_write(Tensor k_cache, Tensor v_cache, Tensor qkv, Tensor positions, const AttentionShape& s,
                           cudaStream_t stream);

// out [B·T, H·D]; the rest as above. clusters: the device runs thread-block
// clusters (compute capability 9.0 or later), which the split-K path needs.
void launch_decode_attention(Tensor out, Tensor qkv, Tensor k_cache, Tensor v_cache, Tensor positions,
                             const AttentionShape& s, int sm_count, bool clusters, cudaStream_t stream);

} // namespace crucible::cuda
