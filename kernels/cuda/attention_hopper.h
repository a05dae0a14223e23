// The Hopper (compute capability 9.0) flash attention forward: wgmma, bulk
// tensor copies and producer/consumer warpgroups (attention_hopper_fwd_sm90a.cu,
// built for sm_90a only). Present when CRUCIBLE_HOPPER_ATTENTION is 1.
//
// Which flash forward runs is chosen per call (attention.cu): AttentionKind
// flash_hopper or flash_portable name one; flash takes the Hopper kernel on a
// 9.0 device for the head dims it has, unless CRUCIBLE_FLASH_ATTENTION=portable
// (kept for side-by-side timing) says otherwise. The backward is the portable
// kernel either way: both forwards write the same output and lse layout.
#pragma once

#include "kernels/cuda/attention_common.cuh"

namespace crucible::cuda::attn {

bool hopper_forward_supported(int head_dim);
void hopper_forward(const AttnArgs& a, cudaStream_t stream);

} // namespace crucible::cuda::attn
