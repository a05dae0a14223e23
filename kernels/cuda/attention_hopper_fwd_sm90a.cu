// Flash attention forward on Hopper's own instructions (built for sm_90a
// only): causal, GQA, bf16 in, fp32 accumulate, head dims 64 and 128.
//
// A block owns 128 query rows of one (batch, head) and has three warpgroups:
//   warpgroup 0, the producer, gives most of its registers away (setmaxnreg)
//     and has one thread issue bulk tensor copies (TMA): the block's Q tile
//     once, then the K and V tiles of 128 keys into three shared-memory
//     stages, each stage's copies completing on its "full" mbarrier; it
//     refills a stage once every consumer warp has arrived on its "empty" one.
//   warpgroups 1 and 2, the consumers, own 64 query rows each and take the
//     registers the producer gave up. Per key tile j:
//       S = Q·Kᵀ      wgmma m64n128k16, Q and K straight from the swizzled tiles;
//       causal/length mask (only tiles that reach the diagonal or T);
//       online softmax as in the portable kernel (m, l per row, P = 2^(..));
//       O += P·V      wgmma m64n64k16 per 64 columns of V, P from registers
//                     (the S accumulators packed to bf16), V read N-major.
//
// Schedule (the FlashAttention-3 recipe): the products of P(j-1)·V(j-1) and
// Q·K(j)ᵀ are issued together, and the softmax of tile j runs while
// P(j-1)·V(j-1) is still on the tensor cores; the two consumers take turns
// issuing (two named barriers), so one's softmax overlaps the other's
// products. CRUCIBLE_HOPPER_SCHEDULE=serial runs the plain order instead
// (S, softmax, P·V, no turns), kept to tell a schedule fault from a layout one.
//
// Key tiles past the block's last row are never loaded (causal skipping). K
// and V come from the packed qkv rows of kv head h / (H / KV): GQA without
// copies. The tensor map views qkv as [B][T][(H + 2·KV)·D], so rows past T
// of a sequence arrive as zeros and are masked. O / l is written from the
// accumulators, and lse per row in the layout the backward reads.
#include "kernels/cuda/attention_common.cuh"
#include "kernels/cuda/attention_hopper.h"
#include "kernels/cuda/hopper_ptx.cuh"

#include <cuda.h>
#include <cudaTypedefs.h>

#include <cstdlib>
#include <cstring>

namespace crucible::cuda::attn {

namespace {

using namespace hopper;

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

constexpr int kConsumers = 2;                  // warpgroups of 64 query rows
constexpr int kRows = 64 * kConsumers;         // query rows per block
constexpr int kKeys = 128;                     // keys per tile
constexpr int kStages = 3;
constexpr int kThreads = 128 * (1 + kConsumers);
constexpr int kHalfCols = 64;                  // one 128-byte swizzled tile is 64 bf16 wide
constexpr int kTurnBarrier = 1;                // named barriers 1, 2: the consumers' turns

template <int D>
struct HopperFwd {
    static constexpr int kHalves = D / kHalfCols;
    static constexpr int kQBytes = kRows * D * 2;
    static constexpr int kTileBytes = kKeys * D * 2;   // K or V, one stage
    static constexpr int kBarrierBytes = 64;
    static constexpr size_t kSmem = 1024 + kQBytes + 2 * kStages * kTileBytes + kBarrierBytes;
    static_assert(kSmem <= 232448, "over the 227 KB a block may have");
};

// Per consumer thread: the S accumulators of one 64×128 tile (sc), P packed
// for the A operand (pa), O (o, per 64-column half), row maxima m (log2
// domain, scaled) and row sums l for its two rows g and g + 8 of the warp.
// Accumulator layout: chunk c of 8 columns holds sc[4c + 2r + e] =
// S[row g + 8r][col 8c + 2t + e].
template <int H2>
struct ConsumerState {
    float sc[64];
    uint32_t pa[kKeys / 16][4];
    float o[H2][32];
    float m[2], l[2];
};

template <int H2>
__device__ __forceinline__ void issue_qk(ConsumerState<H2>& st, const bf16* sQ_rows, const bf16* Ks)
{
#pragma unroll
    for (int hf = 0; hf < H2; ++hf)
#pragma unroll
        for (int k = 0; k < 4; ++k) {
            const uint64_t da = smem_desc_sw128(sQ_rows + hf * kRows * kHalfCols + k * 16, 16);
            const uint64_t db = smem_desc_sw128(Ks + hf * kKeys * kHalfCols + k * 16, 16);
            wgmma_m64n128k16_ss(st.sc, da, db, (hf | k) != 0);
        }
}

template <int H2>
__device__ __forceinline__ void issue_pv(ConsumerState<H2>& st, const bf16* Vs)
{
#pragma unroll
    for (int kk = 0; kk < kKeys / 16; ++kk)
#pragma unroll
        for (int hf = 0; hf < H2; ++hf) {
            const uint64_t db = smem_desc_sw128(Vs + hf * kKeys * kHalfCols + kk * 16 * kHalfCols, 1024);
            wgmma_m64n64k16_rs_tn(st.o[hf], st.pa[kk], db, 1);
        }
}

// Masks keys past the diagonal or T, then turns S into P in place and
// returns the factor alpha[r] by which O's rows must shrink.
template <int H2>
__device__ __forceinline__ void softmax_tile(ConsumerState<H2>& st, float alpha[2], int key0, int warp_row0, int T,
                                             int g, int t, float scale_log2)
{
    if (key0 + kKeys - 1 > warp_row0 || key0 + kKeys > T) {
#pragma unroll
        for (int c = 0; c < 16; ++c)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int key = key0 + c * 8 + 2 * t + (e & 1);
                const int row = warp_row0 + g + 8 * (e >> 1);
                if (key > row || key >= T) st.sc[4 * c + e] = -INFINITY;
            }
    }
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        float part[4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
#pragma unroll
        for (int c = 0; c < 16; ++c)
#pragma unroll
            for (int e = 0; e < 2; ++e) part[(c % 2) * 2 + e] = fmaxf(part[(c % 2) * 2 + e], st.sc[4 * c + 2 * r + e]);
        float mx = fmaxf(fmaxf(part[0], part[1]), fmaxf(part[2], part[3]));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        const float m_new = fmaxf(st.m[r], mx * scale_log2);
        const float m_use = m_new == -INFINITY ? 0.0f : m_new;
        alpha[r] = fast_exp2(st.m[r] - m_use);
        st.m[r] = m_new;
#pragma unroll
        for (int k = 0; k < 4; ++k) part[k] = 0.0f;
#pragma unroll
        for (int c = 0; c < 16; ++c)
#pragma unroll
            for (int e = 0; e < 2; ++e) {
                const float p = fast_exp2(fmaf(st.sc[4 * c + 2 * r + e], scale_log2, -m_use));
                st.sc[4 * c + 2 * r + e] = p;
                part[(c % 2) * 2 + e] += p;
            }
        st.l[r] = st.l[r] * alpha[r] + ((part[0] + part[1]) + (part[2] + part[3]));
    }
}

// O *= alpha per row, then P packed to bf16: the A fragment of keys
// 16kk..16kk+15 is accumulator chunks 2kk and 2kk+1.
template <int H2>
__device__ __forceinline__ void rescale_and_pack(ConsumerState<H2>& st, const float alpha[2])
{
#pragma unroll
    for (int hf = 0; hf < H2; ++hf)
#pragma unroll
        for (int c = 0; c < 8; ++c)
#pragma unroll
            for (int r = 0; r < 2; ++r) {
                st.o[hf][4 * c + 2 * r] *= alpha[r];
                st.o[hf][4 * c + 2 * r + 1] *= alpha[r];
            }
#pragma unroll
    for (int kk = 0; kk < kKeys / 16; ++kk) {
        st.pa[kk][0] = pack_bf16(st.sc[8 * kk + 0], st.sc[8 * kk + 1]);
        st.pa[kk][1] = pack_bf16(st.sc[8 * kk + 2], st.sc[8 * kk + 3]);
        st.pa[kk][2] = pack_bf16(st.sc[8 * kk + 4], st.sc[8 * kk + 5]);
        st.pa[kk][3] = pack_bf16(st.sc[8 * kk + 6], st.sc[8 * kk + 7]);
    }
}

template <int H2>
__device__ __forceinline__ void fence_state(ConsumerState<H2>& st)
{
    fence_registers(st.sc);
#pragma unroll
    for (int hf = 0; hf < H2; ++hf) fence_registers(st.o[hf]);
}

// The consumers' turns at the tensor cores: consumer c waits on barrier
// kTurnBarrier + c, which the other consumer arrives on after its products.
__device__ __forceinline__ void take_turn(int cw) { named_sync(kTurnBarrier + cw, 256); }
__device__ __forceinline__ void pass_turn(int cw) { named_arrive(kTurnBarrier + (cw ^ 1), 256); }

template <int D>
__global__ void __launch_bounds__(kThreads, 1)
    hopper_forward_kernel(const __grid_constant__ CUtensorMap qkv_map, AttnArgs a, int pipelined)
{
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    using Cfg = HopperFwd<D>;
    constexpr int H2 = Cfg::kHalves;
    extern __shared__ unsigned char smem_raw[];
    // Swizzled tiles need 1024-byte alignment; the dynamic base only promises 16.
    unsigned char* smem = reinterpret_cast<unsigned char*>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t(1023));
    bf16* sQ = reinterpret_cast<bf16*>(smem);                              // [half][kRows][64]
    bf16* sK = reinterpret_cast<bf16*>(smem + Cfg::kQBytes);               // [stage][half][kKeys][64]
    bf16* sV = reinterpret_cast<bf16*>(smem + Cfg::kQBytes + kStages * Cfg::kTileBytes);
    uint64_t* bars = reinterpret_cast<uint64_t*>(smem + Cfg::kQBytes + 2 * kStages * Cfg::kTileBytes);
    uint64_t* q_full = bars;
    uint64_t* kv_full = bars + 1;             // [kStages]
    uint64_t* kv_empty = bars + 1 + kStages;  // [kStages]

    const int warpgroup = threadIdx.x / 128, tid_wg = threadIdx.x % 128;
    const int T = a.T;
    const int q0 = (gridDim.x - 1 - blockIdx.x) * kRows;   // heaviest (latest) tiles first
    const int h = blockIdx.y, b = blockIdx.z, kvh = h / a.group();
    const int n_tiles = (min(q0 + kRows, T) + kKeys - 1) / kKeys;

    if (threadIdx.x == 0) {
        mbar_init(q_full, 1);
        for (int s = 0; s < kStages; ++s) {
            mbar_init(&kv_full[s], 1);
            mbar_init(&kv_empty[s], kConsumers * 4);   // one arrival per consumer warp
        }
        mbar_init_fence();
    }
    __syncthreads();

    if (warpgroup == 0) {
        regs_decrease<24>();
        if (tid_wg == 0) {
            tma_prefetch_descriptor(&qkv_map);
            const int q_col = h * D, k_col = (a.H + kvh) * D, v_col = (a.H + a.KV + kvh) * D;
            mbar_expect_tx(q_full, Cfg::kQBytes);
#pragma unroll
            for (int hf = 0; hf < H2; ++hf)
                tma_load_3d(sQ + hf * kRows * kHalfCols, &qkv_map, q_full, q_col + hf * kHalfCols, q0, b);
            for (int j = 0; j < n_tiles; ++j) {
                const int s = j % kStages;
                if (j >= kStages) mbar_wait(&kv_empty[s], ((j / kStages) - 1) & 1);
                mbar_expect_tx(&kv_full[s], 2 * Cfg::kTileBytes);
                bf16* k_dst = sK + s * kKeys * D;
                bf16* v_dst = sV + s * kKeys * D;
#pragma unroll
                for (int hf = 0; hf < H2; ++hf) {
                    tma_load_3d(k_dst + hf * kKeys * kHalfCols, &qkv_map, &kv_full[s], k_col + hf * kHalfCols, j * kKeys, b);
                    tma_load_3d(v_dst + hf * kKeys * kHalfCols, &qkv_map, &kv_full[s], v_col + hf * kHalfCols, j * kKeys, b);
                }
            }
        }
    } else {
        regs_increase<240>();
        const int cw = warpgroup - 1, warp = tid_wg / 32, lane = tid_wg % 32, g = lane / 4, t = lane % 4;
        const int warp_row0 = q0 + cw * 64 + warp * 16;
        const float scale_log2 = a.scale * kLog2e;
        const bf16* sQ_rows = sQ + cw * 64 * kHalfCols;
        auto K_at = [&](int j) { return sK + (j % kStages) * kKeys * D; };
        auto V_at = [&](int j) { return sV + (j % kStages) * kKeys * D; };
        auto release = [&](int j) {   // this warp is done reading tile j's stage
            __syncwarp();
            if (lane == 0) mbar_arrive(&kv_empty[j % kStages]);
            __syncwarp();   // the warp reconverges before its next warpgroup-wide instruction
        };

        ConsumerState<H2> st;
#pragma unroll
        for (int hf = 0; hf < H2; ++hf)
#pragma unroll
            for (int i = 0; i < 32; ++i) st.o[hf][i] = 0.0f;
#pragma unroll
        for (int i = 0; i < 64; ++i) st.sc[i] = 0.0f;
        st.m[0] = st.m[1] = -INFINITY;
        st.l[0] = st.l[1] = 0.0f;
        float alpha[2];

        mbar_wait(q_full, 0);
        if (!pipelined) {
            for (int j = 0; j < n_tiles; ++j) {
                mbar_wait(&kv_full[j % kStages], (j / kStages) & 1);
                fence_state(st);
                wgmma_fence();
                issue_qk(st, sQ_rows, K_at(j));
                wgmma_commit();
                wgmma_wait<0>();
                fence_state(st);
                softmax_tile(st, alpha, j * kKeys, warp_row0, T, g, t, scale_log2);
                rescale_and_pack(st, alpha);
                fence_state(st);
                wgmma_fence();
                issue_pv(st, V_at(j));
                wgmma_commit();
                wgmma_wait<0>();
                fence_state(st);
                release(j);
            }
        } else {
            // Consumer 0 goes first: consumer 1 hands it the first turn.
            if (cw == 1) pass_turn(cw);
            mbar_wait(&kv_full[0], 0);
            take_turn(cw);
            fence_state(st);
            wgmma_fence();
            issue_qk(st, sQ_rows, K_at(0));
            wgmma_commit();
            pass_turn(cw);
            wgmma_wait<0>();
            fence_state(st);
            softmax_tile(st, alpha, 0, warp_row0, T, g, t, scale_log2);
            rescale_and_pack(st, alpha);
            for (int j = 1; j < n_tiles; ++j) {
                mbar_wait(&kv_full[j % kStages], (j / kStages) & 1);
                take_turn(cw);
                fence_state(st);
                wgmma_fence();
                issue_qk(st, sQ_rows, K_at(j));       // group 1: S(j)
                wgmma_commit();
                issue_pv(st, V_at(j - 1));            // group 2: O += P(j-1)·V(j-1)
                wgmma_commit();
                pass_turn(cw);
                wgmma_wait<1>();                      // S(j) is in; P·V may still run
                fence_registers(st.sc);
                softmax_tile(st, alpha, j * kKeys, warp_row0, T, g, t, scale_log2);
                wgmma_wait<0>();
                fence_state(st);
                release(j - 1);
                rescale_and_pack(st, alpha);
            }
            // The last tile's P·V. Consumer 1's last turn hands nothing on,
            // so both turn barriers end with every arrival consumed.
            take_turn(cw);
            fence_state(st);
            wgmma_fence();
            issue_pv(st, V_at(n_tiles - 1));
            wgmma_commit();
            if (cw == 0) pass_turn(cw);
            wgmma_wait<0>();
            fence_state(st);
            release(n_tiles - 1);
        }

        // O / l straight from the accumulators, and the log-sum-exp per row.
        float* lse = a.lse + (int64_t(b) * a.H + h) * T;
        bf16* og = static_cast<bf16*>(a.out) + int64_t(b) * T * a.ld_out() + int64_t(h) * D;
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            float sum = st.l[r];
            sum += __shfl_xor_sync(0xffffffffu, sum, 1);
            sum += __shfl_xor_sync(0xffffffffu, sum, 2);
            const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
            const int row = warp_row0 + g + 8 * r;
            if (row < T) {
                bf16* orow = og + int64_t(row) * a.ld_out();
#pragma unroll
                for (int hf = 0; hf < H2; ++hf)
#pragma unroll
                    for (int c = 0; c < 8; ++c)
                        *reinterpret_cast<uint32_t*>(orow + hf * kHalfCols + c * 8 + 2 * t) =
                            pack_bf16(st.o[hf][4 * c + 2 * r] * inv, st.o[hf][4 * c + 2 * r + 1] * inv);
                if (t == 0) lse[row] = (st.m[r] + __log2f(sum)) * kLn2;
            }
        }
    }
#else
    __trap();   // built for sm_90a only; the host never launches it elsewhere
#endif
}

PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder()
{
    static PFN_cuTensorMapEncodeTiled_v12000 fn = [] {
        void* p = nullptr;
        cudaDriverEntryPointQueryResult found{};
        if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault, &found) !=
                cudaSuccess ||
            found != cudaDriverEntryPointSuccess)
            p = nullptr;
        return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(p);
    }();
    return fn;
}

// qkv as a 3-D tensor [B][T][(H + 2·KV)·D] whose boxes are 64 columns × 128
// rows of one sequence, 128-byte swizzled (kRows == kKeys: one map serves Q, K, V).
CUtensorMap make_qkv_map(const AttnArgs& a)
{
    static_assert(kRows == kKeys, "one box shape for Q, K and V tiles");
    auto encode = tensor_map_encoder();
    if (!encode) throw_error(__FILE__, __LINE__, "the CUDA driver has no cuTensorMapEncodeTiled");
    CUtensorMap map;
    const cuuint64_t dims[3] = {cuuint64_t(a.ld_qkv()), cuuint64_t(a.T), cuuint64_t(a.B)};
    const cuuint64_t strides[2] = {cuuint64_t(a.ld_qkv()) * 2, cuuint64_t(a.ld_qkv()) * 2 * cuuint64_t(a.T)};
    const cuuint32_t box[3] = {kHalfCols, kRows, 1};
    const cuuint32_t element_strides[3] = {1, 1, 1};
    const CUresult r = encode(&map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 3, const_cast<void*>(a.qkv), dims, strides, box,
                              element_strides, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                              CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    if (r != CUDA_SUCCESS)
        throw_error(__FILE__, __LINE__, "cuTensorMapEncodeTiled failed (" + std::to_string(int(r)) + ")");
    return map;
}

template <int D>
void launch(const AttnArgs& a, cudaStream_t stream)
{
    using Cfg = HopperFwd<D>;
    const CUtensorMap map = make_qkv_map(a);
    auto kernel = hopper_forward_kernel<D>;
    CRUCIBLE_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(Cfg::kSmem)));
    const dim3 grid((a.T + kRows - 1) / kRows, a.H, a.B);
    const char* schedule = std::getenv("CRUCIBLE_HOPPER_SCHEDULE");
    const int pipelined = !(schedule && std::strcmp(schedule, "serial") == 0);
    kernel<<<grid, kThreads, Cfg::kSmem, stream>>>(map, a, pipelined);
    CRUCIBLE_CUDA_LAUNCH_CHECK();
}

} // namespace

bool hopper_forward_supported(int head_dim)
{
    return (head_dim == 64 || head_dim == 128) && tensor_map_encoder() != nullptr;
}

void hopper_forward(const AttnArgs& a, cudaStream_t stream)
{
    switch (a.D) {
    case 64: launch<64>(a, stream); return;
    case 128: launch<128>(a, stream); return;
    default: break;
    }
    throw_error(__FILE__, __LINE__, "the Hopper attention kernel is not built for head_dim " + std::to_string(a.D));
}

} // namespace crucible::cuda::attn
