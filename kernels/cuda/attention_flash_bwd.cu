// Flash attention backward: causal, GQA, bf16 tensor cores, deterministic.
//
// With P = exp(S·scale − lse) recomputed from the saved log-sum-exp and
// delta = rowsum(dO ∘ O) precomputed per query row:
//   dV = Pᵀ·dO,  dP = dO·Vᵀ,  dS = P ∘ (dP − delta),  dQ = scale·dS·K,  dK = scale·dSᵀ·Q.
// The usual single-kernel scheme adds each key tile's share of dQ with float
// atomics, whose order changes from run to run. Here every output has one
// owner instead, so no atomics are needed and two runs are bit-identical:
//   - the dK/dV kernel: a block owns BKV keys of one kv head and walks every
//     query tile at or after them, for every query head of the GQA group,
//     accumulating dK and dV in registers (keys as the M dimension:
//     Sᵀ = K·Qᵀ, dPᵀ = V·dOᵀ, then dV += Pᵀ·dO and dK += dSᵀ·Q with Pᵀ and dSᵀ
//     re-packed from the accumulators);
//   - the dQ kernel: a block owns BR query rows of one head and walks the key
//     tiles up to the diagonal (S = Q·Kᵀ, dP = dO·Vᵀ, dQ += dS·K).
// The price is recomputing QKᵀ and dO·Vᵀ in the dQ kernel (7 products instead
// of 5). Tiles stream through shared memory double-buffered by cp.async; the
// tile shapes per head dim were chosen by measurement (flash_backward).
#include "kernels/cuda/attention_common.cuh"

namespace crucible::cuda::attn {

namespace {

constexpr float kLog2e = 1.4426950408889634f;

// ---- dK, dV -------------------------------------------------------------------------------------------

template <int D, int WARPS, int BQ>
struct DkdvConfig {
    static constexpr int kThreads = WARPS * 32;
    static constexpr int kKeys = 16 * WARPS;   // BKV
    static constexpr int kLd = D + 8;
    static constexpr size_t kSmem =
        sizeof(bf16) * size_t(2 * kKeys + 4 * BQ) * kLd + sizeof(float) * size_t(4 * BQ);
};

template <int D, int WARPS, int BQ, bool KVREG, int MINB>
__global__ void __launch_bounds__(WARPS * 32, MINB) flash_backward_dkdv_kernel(AttnArgs a)
{
    using Cfg = DkdvConfig<D, WARPS, BQ>;
    constexpr int BKV = Cfg::kKeys, LD = Cfg::kLd, THREADS = Cfg::kThreads;
    constexpr int KS = D / 16, NQ = BQ / 8, DT = D / 8;
    extern __shared__ __align__(16) unsigned char smem[];
    bf16* sK = reinterpret_cast<bf16*>(smem);   // [BKV][LD], later dK staging
    bf16* sV = sK + BKV * LD;                    // [BKV][LD], later dV staging
    bf16* sQ = sV + BKV * LD;                    // [2][BQ][LD]
    bf16* sO = sQ + 2 * BQ * LD;                 // [2][BQ][LD]  (dO)
    float* sL = reinterpret_cast<float*>(sO + 2 * BQ * LD);   // [2][BQ] lse
    float* sD = sL + 2 * BQ;                                  // [2][BQ] delta

    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, t = lane % 4;
    const int T = a.T, G = a.group();
    const int k0 = blockIdx.x * BKV;
    const int kvh = blockIdx.y, b = blockIdx.z;
    const int64_t ld = a.ld_qkv(), ldo = a.ld_out();
    const bf16* rows = static_cast<const bf16*>(a.qkv) + int64_t(b) * T * ld;
    const bf16* kg = rows + int64_t(a.H + kvh) * D;
    const bf16* vg = rows + int64_t(a.H + a.KV + kvh) * D;
    const bf16* dorows = static_cast<const bf16*>(a.dout) + int64_t(b) * T * ldo;
    const float scale_log2 = a.scale * kLog2e;

    const int first_tile = k0 / BQ;
    const int q_tiles = (T + BQ - 1) / BQ - first_tile;
    const int iters = G * q_tiles;

    auto load_iter = [&](int it, int stage) {
        const int h = kvh * G + it / q_tiles;
        const int q0 = (first_tile + it % q_tiles) * BQ;
        load_rows_async<BQ, D, THREADS>(sQ + stage * BQ * LD, rows + int64_t(h) * D, ld, q0, T, tid);
        load_rows_async<BQ, D, THREADS>(sO + stage * BQ * LD, dorows + int64_t(h) * D, ldo, q0, T, tid);
        const int64_t stat = (int64_t(b) * a.H + h) * T;
        for (int i = tid; i < BQ; i += THREADS) {
            const bool valid = q0 + i < T;
            cp_async4(sL + stage * BQ + i, a.lse + stat + (valid ? q0 + i : 0), valid);
            cp_async4(sD + stage * BQ + i, a.delta + stat + (valid ? q0 + i : 0), valid);
        }
    };

    load_rows_async<BKV, D, THREADS>(sK, kg, ld, k0, T, tid);
    load_rows_async<BKV, D, THREADS>(sV, vg, ld, k0, T, tid);
    load_iter(0, 0);
    cp_async_commit();

    float dk[DT][4], dv[DT][4];
#pragma unroll
    for (int dt = 0; dt < DT; ++dt)
#pragma unroll
        for (int c = 0; c < 4; ++c) dk[dt][c] = dv[dt][c] = 0.0f;
    const int key_row0 = k0 + warp * 16;   // this warp's 16 keys
    // KVREG: the warp's K and V fragments stay in registers for the whole walk.
    uint32_t kreg[KVREG ? KS : 1][4], vreg[KVREG ? KS : 1][4];

    for (int it = 0; it < iters; ++it) {
        const int stage = it & 1;
        if (it + 1 < iters) {
            load_iter(it + 1, stage ^ 1);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        const int q0 = (first_tile + it % q_tiles) * BQ;
        const bf16* Qs = sQ + stage * BQ * LD;
        const bf16* Os = sO + stage * BQ * LD;
        const float* Ls = sL + stage * BQ;
        const float* Ds = sD + stage * BQ;
        if constexpr (KVREG) {
            if (it == 0) {
#pragma unroll
                for (int ks = 0; ks < KS; ++ks) {
                    ldmatrix_x4(kreg[KVREG ? ks : 0], sK + (warp * 16 + (lane % 16)) * LD + ks * 16 + (lane / 16) * 8);
                    ldmatrix_x4(vreg[KVREG ? ks : 0], sV + (warp * 16 + (lane % 16)) * LD + ks * 16 + (lane / 16) * 8);
                }
            }
        }

        // Sᵀ = K·Qᵀ and dPᵀ = V·dOᵀ (keys × queries).
        float st[NQ][4], dpt[NQ][4];
#pragma unroll
        for (int nt = 0; nt < NQ; ++nt)
#pragma unroll
            for (int c = 0; c < 4; ++c) st[nt][c] = dpt[nt][c] = 0.0f;
#pragma unroll
        for (int ks = 0; ks < KS; ++ks) {
            uint32_t ka[4], va[4];
            if constexpr (KVREG) {
#pragma unroll
                for (int r = 0; r < 4; ++r) {
                    ka[r] = kreg[KVREG ? ks : 0][r];
                    va[r] = vreg[KVREG ? ks : 0][r];
                }
            } else {
                ldmatrix_x4(ka, sK + (warp * 16 + (lane % 16)) * LD + ks * 16 + (lane / 16) * 8);
                ldmatrix_x4(va, sV + (warp * 16 + (lane % 16)) * LD + ks * 16 + (lane / 16) * 8);
            }
#pragma unroll
            for (int np = 0; np < NQ / 2; ++np) {
                uint32_t qb[4], ob[4];
                const int off = (np * 16 + (lane % 8) + (lane / 16) * 8) * LD + ks * 16 + ((lane / 8) % 2) * 8;
                ldmatrix_x4(qb, Qs + off);
                ldmatrix_x4(ob, Os + off);
                mma_bf16(st[2 * np], ka, qb[0], qb[1]);
                mma_bf16(st[2 * np + 1], ka, qb[2], qb[3]);
                mma_bf16(dpt[2 * np], va, ob[0], ob[1]);
                mma_bf16(dpt[2 * np + 1], va, ob[2], ob[3]);
            }
        }

        // Pᵀ (masked: query before key, or past T) and dSᵀ = Pᵀ ∘ (dPᵀ − delta).
        const bool edge = q0 < key_row0 + 15 || q0 + BQ > T;
#pragma unroll
        for (int nt = 0; nt < NQ; ++nt)
#pragma unroll
            for (int c = 0; c < 4; ++c) {
                const int qi = nt * 8 + 2 * t + (c & 1);
                const int key = key_row0 + g + 8 * (c >> 1);
                float p = fast_exp2(fmaf(st[nt][c], scale_log2, -Ls[qi] * kLog2e));
                if (edge && (q0 + qi < key || q0 + qi >= T)) p = 0.0f;
                st[nt][c] = p;
                dpt[nt][c] = p * (dpt[nt][c] - Ds[qi]);
            }

        // dV += Pᵀ·dO and dK += dSᵀ·Q (queries as the reduction dimension).
#pragma unroll
        for (int kk = 0; kk < BQ / 16; ++kk) {
            uint32_t pa[4], sa[4];
            pa[0] = pack_bf16(st[2 * kk][0], st[2 * kk][1]);
            pa[1] = pack_bf16(st[2 * kk][2], st[2 * kk][3]);
            pa[2] = pack_bf16(st[2 * kk + 1][0], st[2 * kk + 1][1]);
            pa[3] = pack_bf16(st[2 * kk + 1][2], st[2 * kk + 1][3]);
            sa[0] = pack_bf16(dpt[2 * kk][0], dpt[2 * kk][1]);
            sa[1] = pack_bf16(dpt[2 * kk][2], dpt[2 * kk][3]);
            sa[2] = pack_bf16(dpt[2 * kk + 1][0], dpt[2 * kk + 1][1]);
            sa[3] = pack_bf16(dpt[2 * kk + 1][2], dpt[2 * kk + 1][3]);
#pragma unroll
            for (int dp = 0; dp < DT / 2; ++dp) {
                uint32_t ob[4], qb[4];
                const int off = (kk * 16 + (lane % 8) + ((lane / 8) % 2) * 8) * LD + dp * 16 + (lane / 16) * 8;
                ldmatrix_x4_trans(ob, Os + off);
                ldmatrix_x4_trans(qb, Qs + off);
                mma_bf16(dv[2 * dp], pa, ob[0], ob[1]);
                mma_bf16(dv[2 * dp + 1], pa, ob[2], ob[3]);
                mma_bf16(dk[2 * dp], sa, qb[0], qb[1]);
                mma_bf16(dk[2 * dp + 1], sa, qb[2], qb[3]);
            }
        }
        __syncthreads();
    }

    // Epilogue: stage dK·scale and dV in the K/V buffers, then 16-byte stores.
#pragma unroll
    for (int hf = 0; hf < 2; ++hf) {
        const int r = warp * 16 + g + 8 * hf;
#pragma unroll
        for (int dt = 0; dt < DT; ++dt) {
            *reinterpret_cast<uint32_t*>(sK + r * LD + dt * 8 + 2 * t) =
                pack_bf16(dk[dt][2 * hf] * a.scale, dk[dt][2 * hf + 1] * a.scale);
            *reinterpret_cast<uint32_t*>(sV + r * LD + dt * 8 + 2 * t) = pack_bf16(dv[dt][2 * hf], dv[dt][2 * hf + 1]);
        }
    }
    __syncthreads();
    bf16* drows = static_cast<bf16*>(a.dqkv) + int64_t(b) * T * ld;
    store_rows<BKV, D, THREADS>(drows + int64_t(a.H + kvh) * D, ld, sK, k0, T, tid);
    store_rows<BKV, D, THREADS>(drows + int64_t(a.H + a.KV + kvh) * D, ld, sV, k0, T, tid);
}

// ---- dQ ----------------------------------------------------------------------------------------------------

template <int D, int WARPS, int BC>
struct DqConfig {
    static constexpr int kThreads = WARPS * 32;
    static constexpr int kRows = 16 * WARPS;   // BR
    static constexpr int kLd = D + 8;
    static constexpr size_t kSmem = sizeof(bf16) * size_t(2 * kRows + 4 * BC) * kLd;
};

template <int D, int WARPS, int BC, int MINB>
__global__ void __launch_bounds__(WARPS * 32, MINB) flash_backward_dq_kernel(AttnArgs a)
{
    using Cfg = DqConfig<D, WARPS, BC>;
    constexpr int BR = Cfg::kRows, LD = Cfg::kLd, THREADS = Cfg::kThreads;
    constexpr int KS = D / 16, NT = BC / 8, DT = D / 8;
    extern __shared__ __align__(16) unsigned char smem[];
    bf16* sQ = reinterpret_cast<bf16*>(smem);   // [BR][LD], later dQ staging
    bf16* sO = sQ + BR * LD;                     // [BR][LD]  (dO)
    bf16* sK = sO + BR * LD;                     // [2][BC][LD]
    bf16* sV = sK + 2 * BC * LD;                 // [2][BC][LD]

    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, t = lane % 4;
    const int T = a.T;
    const int q0 = (gridDim.x - 1 - blockIdx.x) * BR;
    const int h = blockIdx.y, b = blockIdx.z, kvh = h / a.group();
    const int64_t ld = a.ld_qkv(), ldo = a.ld_out();
    const bf16* rows = static_cast<const bf16*>(a.qkv) + int64_t(b) * T * ld;
    const bf16* kg = rows + int64_t(a.H + kvh) * D;
    const bf16* vg = rows + int64_t(a.H + a.KV + kvh) * D;
    const float scale_log2 = a.scale * kLog2e;
    const int n_tiles = (min(q0 + BR, T) + BC - 1) / BC;

    load_rows_async<BR, D, THREADS>(sQ, rows + int64_t(h) * D, ld, q0, T, tid);
    load_rows_async<BR, D, THREADS>(sO, static_cast<const bf16*>(a.dout) + int64_t(b) * T * ldo + int64_t(h) * D, ldo,
                                    q0, T, tid);
    load_rows_async<BC, D, THREADS>(sK, kg, ld, 0, T, tid);
    load_rows_async<BC, D, THREADS>(sV, vg, ld, 0, T, tid);
    cp_async_commit();

    const int row0 = q0 + warp * 16;
    float lse2[2], delta[2];
#pragma unroll
    for (int hf = 0; hf < 2; ++hf) {
        const int row = row0 + g + 8 * hf;
        const int64_t i = (int64_t(b) * a.H + h) * T + (row < T ? row : 0);
        lse2[hf] = row < T ? a.lse[i] * kLog2e : 0.0f;
        delta[hf] = row < T ? a.delta[i] : 0.0f;
    }
    uint32_t qf[KS][4], of[KS][4];
    float dq[DT][4];
#pragma unroll
    for (int dt = 0; dt < DT; ++dt) dq[dt][0] = dq[dt][1] = dq[dt][2] = dq[dt][3] = 0.0f;

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
        if (j == 0) {
#pragma unroll
            for (int ks = 0; ks < KS; ++ks) {
                ldmatrix_x4(qf[ks], sQ + (warp * 16 + (lane % 16)) * LD + ks * 16 + (lane / 16) * 8);
                ldmatrix_x4(of[ks], sO + (warp * 16 + (lane % 16)) * LD + ks * 16 + (lane / 16) * 8);
            }
        }
        const bf16* Ks = sK + stage * BC * LD;
        const bf16* Vs = sV + stage * BC * LD;

        // S = Q·Kᵀ and dP = dO·Vᵀ.
        float s[NT][4], dp[NT][4];
#pragma unroll
        for (int nt = 0; nt < NT; ++nt)
#pragma unroll
            for (int c = 0; c < 4; ++c) s[nt][c] = dp[nt][c] = 0.0f;
#pragma unroll
        for (int ks = 0; ks < KS; ++ks) {
#pragma unroll
            for (int np = 0; np < NT / 2; ++np) {
                uint32_t kb[4], vb[4];
                const int off = (np * 16 + (lane % 8) + (lane / 16) * 8) * LD + ks * 16 + ((lane / 8) % 2) * 8;
                ldmatrix_x4(kb, Ks + off);
                ldmatrix_x4(vb, Vs + off);
                mma_bf16(s[2 * np], qf[ks], kb[0], kb[1]);
                mma_bf16(s[2 * np + 1], qf[ks], kb[2], kb[3]);
                mma_bf16(dp[2 * np], of[ks], vb[0], vb[1]);
                mma_bf16(dp[2 * np + 1], of[ks], vb[2], vb[3]);
            }
        }

        // dS = P ∘ (dP − delta), P masked past the diagonal and past T.
        const int key0 = j * BC;
        const bool edge = key0 + BC - 1 > row0 || key0 + BC > T;
#pragma unroll
        for (int nt = 0; nt < NT; ++nt)
#pragma unroll
            for (int c = 0; c < 4; ++c) {
                const int hf = c >> 1;
                const int key = key0 + nt * 8 + 2 * t + (c & 1);
                const int row = row0 + g + 8 * hf;
                float p = fast_exp2(fmaf(s[nt][c], scale_log2, -lse2[hf]));
                if (edge && (key > row || key >= T)) p = 0.0f;
                s[nt][c] = p * (dp[nt][c] - delta[hf]);
            }

        // dQ += dS·K
#pragma unroll
        for (int kk = 0; kk < BC / 16; ++kk) {
            uint32_t sa[4];
            sa[0] = pack_bf16(s[2 * kk][0], s[2 * kk][1]);
            sa[1] = pack_bf16(s[2 * kk][2], s[2 * kk][3]);
            sa[2] = pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]);
            sa[3] = pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
            for (int dpair = 0; dpair < DT / 2; ++dpair) {
                uint32_t kb[4];
                ldmatrix_x4_trans(kb, Ks + (kk * 16 + (lane % 8) + ((lane / 8) % 2) * 8) * LD + dpair * 16 + (lane / 16) * 8);
                mma_bf16(dq[2 * dpair], sa, kb[0], kb[1]);
                mma_bf16(dq[2 * dpair + 1], sa, kb[2], kb[3]);
            }
        }
        __syncthreads();
    }

#pragma unroll
    for (int hf = 0; hf < 2; ++hf) {
        const int r = warp * 16 + g + 8 * hf;
#pragma unroll
        for (int dt = 0; dt < DT; ++dt)
            *reinterpret_cast<uint32_t*>(sQ + r * LD + dt * 8 + 2 * t) =
                pack_bf16(dq[dt][2 * hf] * a.scale, dq[dt][2 * hf + 1] * a.scale);
    }
    __syncthreads();
    bf16* dq_rows = static_cast<bf16*>(a.dqkv) + int64_t(b) * T * ld + int64_t(h) * D;
    store_rows<BR, D, THREADS>(dq_rows, ld, sQ, q0, T, tid);
}

template <class Kernel> void allow_smem(Kernel kernel, size_t bytes)
{
    CRUCIBLE_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
}

template <int D, int WARPS_KV, int BQ, int WARPS_Q, int BC, bool KVREG = false, int MINB_KV = 2, int MINB_Q = 2>
void launch_backward(const AttnArgs& a, cudaStream_t stream)
{
    using Kv = DkdvConfig<D, WARPS_KV, BQ>;
    using Q = DqConfig<D, WARPS_Q, BC>;
    auto kv_kernel = flash_backward_dkdv_kernel<D, WARPS_KV, BQ, KVREG, MINB_KV>;
    auto q_kernel = flash_backward_dq_kernel<D, WARPS_Q, BC, MINB_Q>;
    // Set on every launch (a host-side call): the attribute belongs to the current device.
    allow_smem(kv_kernel, Kv::kSmem);
    allow_smem(q_kernel, Q::kSmem);
    kv_kernel<<<dim3((a.T + Kv::kKeys - 1) / Kv::kKeys, a.KV, a.B), Kv::kThreads, Kv::kSmem, stream>>>(a);
    CRUCIBLE_CUDA_LAUNCH_CHECK();
    q_kernel<<<dim3((a.T + Q::kRows - 1) / Q::kRows, a.H, a.B), Q::kThreads, Q::kSmem, stream>>>(a);
    CRUCIBLE_CUDA_LAUNCH_CHECK();
}

} // namespace

void flash_backward(const AttnArgs& a, cudaStream_t stream)
{
    switch (a.D) {
    // D ≤ 64: K/V fragments held in registers by the dK/dV kernel; the dQ
    // kernel capped to 168 registers so three blocks share an SM (measured
    // ~3% faster than two, despite a few spilled bytes at D = 64).
    case 32: launch_backward<32, 4, 64, 4, 64, true, 2, 3>(a, stream); return;
    case 48: launch_backward<48, 4, 64, 4, 64, true, 2, 3>(a, stream); return;
    case 64: launch_backward<64, 4, 64, 4, 64, true, 2, 3>(a, stream); return;
    case 96: launch_backward<96, 4, 32, 4, 32>(a, stream); return;
    case 128: launch_backward<128, 4, 64, 4, 64>(a, stream); return;
    default: break;
    }
    throw_error(__FILE__, __LINE__, "flash attention is not built for head_dim " + std::to_string(a.D));
}

} // namespace crucible::cuda::attn
