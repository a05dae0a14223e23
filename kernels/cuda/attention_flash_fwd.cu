// Flash attention forward: causal, GQA, bf16 tensor cores, online softmax.
//
// A block owns BR = 16·MT·WARPS query rows of one (batch, head); each warp
// owns MT slabs of 16 rows and keeps the output accumulators, the running
// (max, sum) and (QREG) the Q fragments in registers; at D = 128 the Q
// fragments are re-read from shared memory instead, which frees the registers
// for two slabs per warp (each K/V fragment then feeds two products). Tile
// shapes per head dim were chosen by measurement (flash_forward).
// The block walks the key/value tiles of BC keys up to the diagonal,
// double-buffered in shared memory by cp.async (the next tile loads while
// this one is used):
//   S = Q·Kᵀ (mma.sync, K fragments by ldmatrix), causal/length mask,
//   m' = max(m, rowmax S), P = 2^(S·scale·log2e − m'), l = l·2^(m−m') + ΣP,
//   O = O·2^(m−m') + P·V (P re-packed from the S accumulators, V by
//   ldmatrix.trans),
// and finally writes O/l through shared memory with 16-byte stores and the
// log-sum-exp per row. K and V are read straight from the packed qkv rows of
// their kv head (h / (H / KV)): GQA shares them without copies. Rows and keys
// past T are zero-filled and masked, so any T works. Query tiles are issued
// heaviest (latest) first to shorten the causal tail.
#include "kernels/cuda/attention_common.cuh"

namespace crucible::cuda::attn {

namespace {

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

template <int D, int WARPS, int MT, int BC, bool QREG>
struct FwdConfig {
    static constexpr int kThreads = WARPS * 32;
    static constexpr int kRows = 16 * MT * WARPS;   // BR
    static constexpr int kLd = D + 8;                // padded shared row (conflict-free ldmatrix)
    static constexpr size_t kSmem = sizeof(bf16) * size_t(kRows + 4 * BC) * kLd;
};

template <int D, int WARPS, int MT, int BC, bool QREG>
__global__ void __launch_bounds__(WARPS * 32, WARPS == 4 ? 2 : 1) flash_forward_kernel(AttnArgs a)
{
    using Cfg = FwdConfig<D, WARPS, MT, BC, QREG>;
    constexpr int BR = Cfg::kRows, LD = Cfg::kLd, THREADS = Cfg::kThreads;
    constexpr int KS = D / 16, NT = BC / 8, DT = D / 8;
    extern __shared__ __align__(16) unsigned char smem[];
    bf16* sQ = reinterpret_cast<bf16*>(smem);   // [BR][LD], later the output staging
    bf16* sK = sQ + BR * LD;                     // [2][BC][LD]
    bf16* sV = sK + 2 * BC * LD;                 // [2][BC][LD]

    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, t = lane % 4;
    const int T = a.T;
    const int q0 = (gridDim.x - 1 - blockIdx.x) * BR;
    const int h = blockIdx.y, b = blockIdx.z, kvh = h / a.group();
    const int64_t ld = a.ld_qkv();
    const bf16* rows = static_cast<const bf16*>(a.qkv) + int64_t(b) * T * ld;
    const bf16* qg = rows + int64_t(h) * D;
    const bf16* kg = rows + int64_t(a.H + kvh) * D;
    const bf16* vg = rows + int64_t(a.H + a.KV + kvh) * D;
    const float scale_log2 = a.scale * kLog2e;
    const int n_tiles = (min(q0 + BR, T) + BC - 1) / BC;

    load_rows_async<BR, D, THREADS>(sQ, qg, ld, q0, T, tid);
    load_rows_async<BC, D, THREADS>(sK, kg, ld, 0, T, tid);
    load_rows_async<BC, D, THREADS>(sV, vg, ld, 0, T, tid);
    cp_async_commit();

    uint32_t qf[QREG ? MT : 1][QREG ? KS : 1][4];   // Q fragments kept in registers (QREG)
    float o[MT][DT][4];
    float m[MT][2], l[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
        for (int dt = 0; dt < DT; ++dt) o[mt][dt][0] = o[mt][dt][1] = o[mt][dt][2] = o[mt][dt][3] = 0.0f;
        m[mt][0] = m[mt][1] = -INFINITY;
        l[mt][0] = l[mt][1] = 0.0f;
    }
    const int warp_row0 = q0 + warp * 16 * MT;

    for (int j = 0; j < n_tiles; ++j) {
        const int stage = j & 1;
        if (j + 1 < n_tiles) {
            load_rows_async<BC, D, THREADS>(sK + (stage ^ 1) * BC * LD, kg, ld, (j + 1) * BC, T, tid);
            load_rows_async<BC, D, THREADS>(sV + (stage ^ 1) * BC * LD, vg, ld, (j + 1) * BC, T, tid);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        if constexpr (QREG) {
            if (j == 0) {
#pragma unroll
                for (int mt = 0; mt < MT; ++mt)
#pragma unroll
                    for (int ks = 0; ks < KS; ++ks)
                        ldmatrix_x4(qf[mt][ks], sQ + (warp * 16 * MT + mt * 16 + (lane % 16)) * LD + ks * 16 + (lane / 16) * 8);
            }
        }
        const bf16* Ks = sK + stage * BC * LD;
        const bf16* Vs = sV + stage * BC * LD;

        // S = Q·Kᵀ
        float s[MT][NT][4];
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
#pragma unroll
            for (int nt = 0; nt < NT; ++nt) s[mt][nt][0] = s[mt][nt][1] = s[mt][nt][2] = s[mt][nt][3] = 0.0f;
#pragma unroll
        for (int ks = 0; ks < KS; ++ks) {
            uint32_t qa[MT][4];
#pragma unroll
            for (int mt = 0; mt < MT; ++mt) {
                if constexpr (QREG) {
#pragma unroll
                    for (int r = 0; r < 4; ++r) qa[mt][r] = qf[QREG ? mt : 0][QREG ? ks : 0][r];
                } else {
                    ldmatrix_x4(qa[mt], sQ + (warp * 16 * MT + mt * 16 + (lane % 16)) * LD + ks * 16 + (lane / 16) * 8);
                }
            }
#pragma unroll
            for (int np = 0; np < NT / 2; ++np) {
                uint32_t kb[4];
                ldmatrix_x4(kb, Ks + (np * 16 + (lane % 8) + (lane / 16) * 8) * LD + ks * 16 + ((lane / 8) % 2) * 8);
#pragma unroll
                for (int mt = 0; mt < MT; ++mt) {
                    mma_bf16(s[mt][2 * np], qa[mt], kb[0], kb[1]);
                    mma_bf16(s[mt][2 * np + 1], qa[mt], kb[2], kb[3]);
                }
            }
        }

        // Mask keys past the diagonal or past T (only tiles that reach them).
        const int key0 = j * BC;
        if (key0 + BC - 1 > warp_row0 || key0 + BC > T) {
#pragma unroll
            for (int mt = 0; mt < MT; ++mt)
#pragma unroll
                for (int nt = 0; nt < NT; ++nt)
#pragma unroll
                    for (int c = 0; c < 4; ++c) {
                        const int key = key0 + nt * 8 + 2 * t + (c & 1);
                        const int row = warp_row0 + mt * 16 + g + 8 * (c >> 1);
                        if (key > row || key >= T) s[mt][nt][c] = -INFINITY;
                    }
        }

        // Online softmax; P overwrites S. Maxima and sums reduce through four
        // independent partials so the dependency chains stay short.
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
            for (int hf = 0; hf < 2; ++hf) {
                float part[4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
#pragma unroll
                for (int nt = 0; nt < NT; ++nt)
#pragma unroll
                    for (int c = 0; c < 2; ++c) part[(nt % 2) * 2 + c] = fmaxf(part[(nt % 2) * 2 + c], s[mt][nt][2 * hf + c]);
                float mx = fmaxf(fmaxf(part[0], part[1]), fmaxf(part[2], part[3]));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
                const float m_new = fmaxf(m[mt][hf], mx * scale_log2);
                const float m_use = m_new == -INFINITY ? 0.0f : m_new;
                const float alpha = fast_exp2(m[mt][hf] - m_use);
                m[mt][hf] = m_new;
#pragma unroll
                for (int k = 0; k < 4; ++k) part[k] = 0.0f;
#pragma unroll
                for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
                    for (int c = 0; c < 2; ++c) {
                        const float p = fast_exp2(fmaf(s[mt][nt][2 * hf + c], scale_log2, -m_use));
                        s[mt][nt][2 * hf + c] = p;
                        part[(nt % 2) * 2 + c] += p;
                    }
                }
                l[mt][hf] = l[mt][hf] * alpha + ((part[0] + part[1]) + (part[2] + part[3]));
#pragma unroll
                for (int dt = 0; dt < DT; ++dt) {
                    o[mt][dt][2 * hf] *= alpha;
                    o[mt][dt][2 * hf + 1] *= alpha;
                }
            }
        }

        // O += P·V
#pragma unroll
        for (int kk = 0; kk < BC / 16; ++kk) {
            uint32_t pa[MT][4];
#pragma unroll
            for (int mt = 0; mt < MT; ++mt) {
                pa[mt][0] = pack_bf16(s[mt][2 * kk][0], s[mt][2 * kk][1]);
                pa[mt][1] = pack_bf16(s[mt][2 * kk][2], s[mt][2 * kk][3]);
                pa[mt][2] = pack_bf16(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
                pa[mt][3] = pack_bf16(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
            }
#pragma unroll
            for (int dp = 0; dp < DT / 2; ++dp) {
                uint32_t vb[4];
                ldmatrix_x4_trans(vb, Vs + (kk * 16 + (lane % 8) + ((lane / 8) % 2) * 8) * LD + dp * 16 + (lane / 16) * 8);
#pragma unroll
                for (int mt = 0; mt < MT; ++mt) {
                    mma_bf16(o[mt][2 * dp], pa[mt], vb[0], vb[1]);
                    mma_bf16(o[mt][2 * dp + 1], pa[mt], vb[2], vb[3]);
                }
            }
        }
        __syncthreads();   // this stage is refilled by the next iteration's prefetch
    }

    // Epilogue: O / l into shared (rows of this warp only), lse, then 16-byte stores.
    float* lse = a.lse + (int64_t(b) * a.H + h) * T;
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
        for (int hf = 0; hf < 2; ++hf) {
            float sum = l[mt][hf];
            sum += __shfl_xor_sync(0xffffffffu, sum, 1);
            sum += __shfl_xor_sync(0xffffffffu, sum, 2);
            const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
            const int r = warp * 16 * MT + mt * 16 + g + 8 * hf;
#pragma unroll
            for (int dt = 0; dt < DT; ++dt)
                *reinterpret_cast<uint32_t*>(sQ + r * LD + dt * 8 + 2 * t) =
                    pack_bf16(o[mt][dt][2 * hf] * inv, o[mt][dt][2 * hf + 1] * inv);
            if (t == 0 && q0 + r < T) lse[q0 + r] = (m[mt][hf] + __log2f(sum)) * kLn2;
        }
    }
    __syncthreads();
    bf16* og = static_cast<bf16*>(a.out) + int64_t(b) * T * a.ld_out() + int64_t(h) * D;
    store_rows<BR, D, THREADS>(og, a.ld_out(), sQ, q0, T, tid);
}

template <int D, int WARPS, int MT, int BC, bool QREG = true>
void launch_forward(const AttnArgs& a, cudaStream_t stream)
{
    using Cfg = FwdConfig<D, WARPS, MT, BC, QREG>;
    auto kernel = flash_forward_kernel<D, WARPS, MT, BC, QREG>;
    // Set on every launch (a host-side call): the attribute belongs to the current device.
    CRUCIBLE_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(Cfg::kSmem)));
    const dim3 grid((a.T + Cfg::kRows - 1) / Cfg::kRows, a.H, a.B);
    kernel<<<grid, Cfg::kThreads, Cfg::kSmem, stream>>>(a);
    CRUCIBLE_CUDA_LAUNCH_CHECK();
}

} // namespace

bool flash_supported(int head_dim)
{
    return head_dim == 32 || head_dim == 48 || head_dim == 64 || head_dim == 96 || head_dim == 128;
}

void flash_forward(const AttnArgs& a, cudaStream_t stream)
{
    switch (a.D) {
    case 32: launch_forward<32, 4, 2, 64>(a, stream); return;
    case 48: launch_forward<48, 4, 2, 64>(a, stream); return;
    case 64: launch_forward<64, 4, 2, 64>(a, stream); return;
    case 96: launch_forward<96, 8, 1, 64>(a, stream); return;
    case 128: launch_forward<128, 4, 2, 32, false>(a, stream); return;
    default: break;
    }
    throw_error(__FILE__, __LINE__, "flash attention is not built for head_dim " + std::to_string(a.D));
}

} // namespace crucible::cuda::attn
