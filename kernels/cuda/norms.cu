// RMSNorm, LayerNorm and the per-head QK-norm, forward and backward.
//
// One warp per row: the row's statistics are warp reductions, the row is read
// with 16-byte loads (8 bf16 per lane) when the width allows and re-read from
// cache for the second pass. Weight gradients (dweight, dbias) are sums over
// all rows; to keep them deterministic they are not accumulated with atomics
// but by a column reduction in two passes: fixed blocks of rows write partial
// sums, then one kernel adds the partials in a fixed order into the f32
// gradient (+=).
//
// Rows may be strided views: QK-norm treats each (token, head) of the packed
// qkv as a row of head_dim elements, so the same column reduction serves it.
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_common.cuh"

namespace crucible {

using namespace cuda;

namespace {

constexpr int kRowWarps = 8;   // rows (warps) per block in the row kernels

// Where row r lives: token = r / heads, head = r % heads; element c of the row
// is at base + token·stride + head·C + c. Plain norms use heads = 1.
struct RowMap {
    int64_t stride = 0;        // elements between tokens
    int heads = 1;
    int64_t stat_stride = 1;   // rstd/mean index = token·stat_stride + stat_offset + head
    int64_t stat_offset = 0;
    __device__ __forceinline__ int64_t offset(int64_t r, int C) const
    {
        return (r / heads) * stride + (r % heads) * int64_t(C);
    }
    __device__ __forceinline__ int64_t stat(int64_t r) const
    {
        return (r / heads) * stat_stride + stat_offset + (r % heads);
    }
};

// ---- row kernels ---------------------------------------------------------------------------------

// Iterate the C columns of a row: VEC lanes take 8 consecutive elements per
// step (stride 256), scalar lanes one (stride 32).
template <bool VEC, class F8, class F1>
__device__ __forceinline__ void row_loop(int C, int lane, F8&& f8, F1&& f1)
{
    if constexpr (VEC) {
        for (int c0 = lane * 8; c0 < C; c0 += 256) f8(c0);
    } else {
        for (int c = lane; c < C; c += 32) f1(c);
    }
}

template <class T, bool VEC>
__global__ void rmsnorm_forward_kernel(T* __restrict__ out, float* __restrict__ rstd, const T* __restrict__ x,
                                       const T* __restrict__ w, int64_t rows, int C, float eps, RowMap xm,
                                       RowMap om)
{
    const int lane = threadIdx.x % 32;
    const int64_t r = int64_t(blockIdx.x) * kRowWarps + threadIdx.x / 32;
    if (r >= rows) return;
    const T* xr = x + xm.offset(r, C);
    T* orow = out + om.offset(r, C);
    float ss = 0.0f;
    row_loop<VEC>(C, lane,
        [&](int c0) { float v[8]; load8(v, xr + c0);
#pragma unroll
          for (int i = 0; i < 8; ++i) ss += v[i] * v[i]; },
        [&](int c) { const float v = to_f(xr[c]); ss += v * v; });
    ss = warp_sum(ss);
    const float rs = rsqrtf(ss / float(C) + eps);
    if (lane == 0) rstd[xm.stat(r)] = rs;
    row_loop<VEC>(C, lane,
        [&](int c0) { float v[8], g[8]; load8(v, xr + c0); load8(g, w + c0);
#pragma unroll
          for (int i = 0; i < 8; ++i) v[i] = v[i] * rs * g[i];
          store8(orow + c0, v); },
        [&](int c) { orow[c] = from_f<T>(to_f(xr[c]) * rs * to_f(w[c])); });
}

// dx = rstd·(g − x̂·mean(g·x̂)), g = dout·w, x̂ = x·rstd; dx += when accumulating.
template <class T, bool VEC>
__global__ void rmsnorm_backward_kernel(T* dx, const T* __restrict__ dout, const T* __restrict__ x,
                                        const T* __restrict__ w, const float* __restrict__ rstd, int64_t rows,
                                        int C, bool accumulate, RowMap xm, RowMap dm, RowMap dxm)
{
    const int lane = threadIdx.x % 32;
    const int64_t r = int64_t(blockIdx.x) * kRowWarps + threadIdx.x / 32;
    if (r >= rows) return;
    const T* xr = x + xm.offset(r, C);
    const T* dr = dout + dm.offset(r, C);
    T* dxr = dx + dxm.offset(r, C);
    const float rs = rstd[xm.stat(r)];
    float dot = 0.0f;
    row_loop<VEC>(C, lane,
        [&](int c0) { float v[8], d[8], g[8]; load8(v, xr + c0); load8(d, dr + c0); load8(g, w + c0);
#pragma unroll
          for (int i = 0; i < 8; ++i) dot += d[i] * g[i] * v[i]; },
        [&](int c) { dot += to_f(dr[c]) * to_f(w[c]) * to_f(xr[c]); });
    dot = warp_sum(dot) * rs / float(C);   // mean(g·x̂)
    row_loop<VEC>(C, lane,
        [&](int c0) { float v[8], d[8], g[8], o[8]; load8(v, xr + c0); load8(d, dr + c0); load8(g, w + c0);
          if (accumulate) load8(o, dxr + c0);
#pragma unroll
          for (int i = 0; i < 8; ++i) {
              const float val = rs * (d[i] * g[i] - v[i] * rs * dot);
              o[i] = accumulate ? o[i] + val : val;
          }
          store8(dxr + c0, o); },
        [&](int c) { const float val = rs * (to_f(dr[c]) * to_f(w[c]) - to_f(xr[c]) * rs * dot);
          dxr[c] = from_f<T>(accumulate ? to_f(dxr[c]) + val : val); });
}

template <class T, bool VEC>
__global__ void layernorm_forward_kernel(T* __restrict__ out, float* __restrict__ mean, float* __restrict__ rstd,
                                         const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ b,
                                         int64_t rows, int C, float eps)
{
    const int lane = threadIdx.x % 32;
    const int64_t r = int64_t(blockIdx.x) * kRowWarps + threadIdx.x / 32;
    if (r >= rows) return;
    const T* xr = x + r * C;
    T* orow = out + r * C;
    float s = 0.0f;
    row_loop<VEC>(C, lane,
        [&](int c0) { float v[8]; load8(v, xr + c0);
#pragma unroll
          for (int i = 0; i < 8; ++i) s += v[i]; },
        [&](int c) { s += to_f(xr[c]); });
    const float mu = warp_sum(s) / float(C);
    float ss = 0.0f;
    row_loop<VEC>(C, lane,
        [&](int c0) { float v[8]; load8(v, xr + c0);
#pragma unroll
          for (int i = 0; i < 8; ++i) ss += (v[i] - mu) * (v[i] - mu); },
        [&](int c) { const float d = to_f(xr[c]) - mu; ss += d * d; });
    const float rs = rsqrtf(warp_sum(ss) / float(C) + eps);
    if (lane == 0) {
        mean[r] = mu;
        rstd[r] = rs;
    }
    row_loop<VEC>(C, lane,
        [&](int c0) { float v[8], g[8], bb[8]; load8(v, xr + c0); load8(g, w + c0); load8(bb, b + c0);
#pragma unroll
          for (int i = 0; i < 8; ++i) v[i] = (v[i] - mu) * rs * g[i] + bb[i];
          store8(orow + c0, v); },
        [&](int c) { orow[c] = from_f<T>((to_f(xr[c]) - mu) * rs * to_f(w[c]) + to_f(b[c])); });
}

// dx = rstd·(g − mean(g) − x̂·mean(g·x̂)), g = dout·w, x̂ = (x − mean)·rstd.
template <class T, bool VEC>
__global__ void layernorm_backward_kernel(T* dx, const T* __restrict__ dout, const T* __restrict__ x,
                                          const T* __restrict__ w, const float* __restrict__ mean,
                                          const float* __restrict__ rstd, int64_t rows, int C, bool accumulate)
{
    const int lane = threadIdx.x % 32;
    const int64_t r = int64_t(blockIdx.x) * kRowWarps + threadIdx.x / 32;
    if (r >= rows) return;
    const T* xr = x + r * C;
    const T* dr = dout + r * C;
    T* dxr = dx + r * C;
    const float mu = mean[r], rs = rstd[r];
    float sg = 0.0f, sgx = 0.0f;
    row_loop<VEC>(C, lane,
        [&](int c0) { float v[8], d[8], g[8]; load8(v, xr + c0); load8(d, dr + c0); load8(g, w + c0);
#pragma unroll
          for (int i = 0; i < 8; ++i) { const float gi = d[i] * g[i]; sg += gi; sgx += gi * (v[i] - mu) * rs; } },
        [&](int c) { const float gi = to_f(dr[c]) * to_f(w[c]); sg += gi; sgx += gi * (to_f(xr[c]) - mu) * rs; });
    sg = warp_sum(sg) / float(C);
    sgx = warp_sum(sgx) / float(C);
    row_loop<VEC>(C, lane,
        [&](int c0) { float v[8], d[8], g[8], o[8]; load8(v, xr + c0); load8(d, dr + c0); load8(g, w + c0);
          if (accumulate) load8(o, dxr + c0);
#pragma unroll
          for (int i = 0; i < 8; ++i) {
              const float val = rs * (d[i] * g[i] - sg - (v[i] - mu) * rs * sgx);
              o[i] = accumulate ? o[i] + val : val;
          }
          store8(dxr + c0, o); },
        [&](int c) { const float val = rs * (to_f(dr[c]) * to_f(w[c]) - sg - (to_f(xr[c]) - mu) * rs * sgx);
          dxr[c] = from_f<T>(accumulate ? to_f(dxr[c]) + val : val); });
}

// Copies the value heads of packed qkv (QK-norm leaves them unchanged).
template <class T>
__global__ void copy_heads_kernel(T* __restrict__ dst, const T* __restrict__ src, int64_t tokens, int64_t stride,
                                  int64_t offset, int64_t width)
{
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= tokens * width) return;
    const int64_t t = i / width, c = i % width;
    dst[t * stride + offset + c] = src[t * stride + offset + c];
}

// ---- weight gradients: deterministic column reduction ----------------------------------------------

constexpr int kColRows = 8;       // row lanes per block
constexpr int kRowsPerSlab = 64;  // rows per partial sum (at least)
constexpr int kMaxSlabs = 512;

enum class ColMode { rms, layernorm };

// partial[slab, c] (and partial_b for LayerNorm's bias) = Σ over the slab's
// rows. Block (32, kColRows): VEC lanes own 8 adjacent columns (16-byte
// loads, 256 columns per block), scalar lanes 2 columns 32 apart (64 per
// block). The row lanes are combined through shared memory in a fixed order.
template <class T, ColMode MODE, bool VEC>
__global__ void norm_weight_partials_kernel(float* __restrict__ partial_w, float* __restrict__ partial_b,
                                            const T* __restrict__ dout, const T* __restrict__ x,
                                            const float* __restrict__ mean, const float* __restrict__ rstd,
                                            int64_t rows, int C, int64_t rows_per_slab, RowMap xm, RowMap dm)
{
    constexpr int kPer = VEC ? 8 : 2;
    constexpr int kTile = 32 * kPer;
    __shared__ float sw[kColRows][kTile];
    __shared__ float sb[MODE == ColMode::layernorm ? kColRows : 1][MODE == ColMode::layernorm ? kTile : 1];
    const int lane = threadIdx.x, ry = threadIdx.y;
    const int64_t slab = blockIdx.y;
    const int64_t r0 = slab * rows_per_slab, r1 = min(rows, r0 + rows_per_slab);
    const int tile0 = blockIdx.x * kTile;
    auto column = [&](int k) { return VEC ? tile0 + lane * 8 + k : tile0 + k * 32 + lane; };
    float aw[kPer], ab[kPer];
#pragma unroll
    for (int k = 0; k < kPer; ++k) aw[k] = ab[k] = 0.0f;
    const bool active = VEC ? column(0) < C : true;
    for (int64_t r = r0 + ry; active && r < r1; r += kColRows) {
        const T* xr = x + xm.offset(r, C);
        const T* dr = dout + dm.offset(r, C);
        const float rs = rstd[xm.stat(r)];
        const float mu = MODE == ColMode::layernorm ? mean[xm.stat(r)] : 0.0f;
        if constexpr (VEC) {
            float d[8], v[8];
            load8(d, dr + column(0));
            load8(v, xr + column(0));
#pragma unroll
            for (int k = 0; k < 8; ++k) {
                aw[k] += d[k] * (v[k] - mu) * rs;
                ab[k] += d[k];
            }
        } else {
#pragma unroll
            for (int k = 0; k < kPer; ++k) {
                const int c = column(k);
                if (c < C) {
                    const float d = to_f(dr[c]);
                    aw[k] += d * (to_f(xr[c]) - mu) * rs;
                    ab[k] += d;
                }
            }
        }
    }
#pragma unroll
    for (int k = 0; k < kPer; ++k) {
        const int slot = VEC ? lane * 8 + k : k * 32 + lane;
        sw[ry][slot] = aw[k];
        if constexpr (MODE == ColMode::layernorm) sb[ry][slot] = ab[k];
    }
    __syncthreads();
    for (int slot = ry * 32 + lane; slot < kTile; slot += 32 * kColRows) {
        float tw = 0.0f, tb = 0.0f;
        for (int k = 0; k < kColRows; ++k) {
            tw += sw[k][slot];
            if constexpr (MODE == ColMode::layernorm) tb += sb[k][slot];
        }
        const int c = tile0 + slot;
        if (c < C) {
            partial_w[slab * C + c] = tw;
            if constexpr (MODE == ColMode::layernorm) partial_b[slab * C + c] = tb;
        }
    }
}

// dst[c] += Σ_slab partial[slab, c]: block (32, 8), each row lane a fixed
// stride of slabs, then the 8 lanes in order.
__global__ void sum_partials_kernel(float* __restrict__ dst, const float* __restrict__ partial, int64_t slabs, int C)
{
    __shared__ float s[kColRows][32];
    const int c = blockIdx.x * 32 + threadIdx.x;
    float acc = 0.0f;
    if (c < C)
        for (int64_t k = threadIdx.y; k < slabs; k += kColRows) acc += partial[k * C + c];
    s[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && c < C) {
        float total = 0.0f;
        for (int k = 0; k < kColRows; ++k) total += s[k][threadIdx.x];
        dst[c] += total;
    }
}

// dweight += Σ_rows dout·x̂ and (LayerNorm, when dbias is given) dbias += Σ_rows dout.
template <class T>
void norm_weight_grads(CudaBackend& be, float* dweight, float* dbias, bool layernorm, const T* dout, const T* x,
                       const float* mean, const float* rstd, int64_t rows, int C, RowMap xm, RowMap dm)
{
    if (rows == 0 || C == 0 || (!dweight && !dbias)) return;
    const int64_t slabs = std::min<int64_t>((rows + kRowsPerSlab - 1) / kRowsPerSlab, kMaxSlabs);
    const int64_t per_slab = (rows + slabs - 1) / slabs;
    ScratchPlan plan;
    const size_t ow = plan.add(sizeof(float) * size_t(slabs) * size_t(C));
    const size_t ob = plan.add(layernorm ? sizeof(float) * size_t(slabs) * size_t(C) : 0);
    char* base = static_cast<char*>(be.scratch(plan.total()));
    float* pw = reinterpret_cast<float*>(base + ow);
    float* pb = reinterpret_cast<float*>(base + ob);
    // 16-byte loads need whole groups of 8 columns at 16-byte aligned row starts.
    const bool vec = C % 8 == 0 && xm.stride % 8 == 0 && dm.stride % 8 == 0 && aligned16(x) && aligned16(dout);
    const dim3 block(32, kColRows);
    const dim3 grid(blocks_for(C, vec ? 256 : 64), unsigned(slabs));
    auto launch = [&](auto kernel) {
        kernel<<<grid, block, 0, be.stream()>>>(pw, pb, dout, x, mean, rstd, rows, C, per_slab, xm, dm);
        CRUCIBLE_CUDA_LAUNCH_CHECK();
    };
    if (layernorm) {
        if (vec) launch(norm_weight_partials_kernel<T, ColMode::layernorm, true>);
        else launch(norm_weight_partials_kernel<T, ColMode::layernorm, false>);
    } else {
        if (vec) launch(norm_weight_partials_kernel<T, ColMode::rms, true>);
        else launch(norm_weight_partials_kernel<T, ColMode::rms, false>);
    }
    for (auto [dst, part] : {std::pair{dweight, pw}, std::pair{dbias, pb}}) {
        if (!dst) continue;
        sum_partials_kernel<<<blocks_for(C, 32), block, 0, be.stream()>>>(dst, part, slabs, C);
        CRUCIBLE_CUDA_LAUNCH_CHECK();
    }
}

RowMap plain_rows(int64_t C) { return RowMap{C, 1, 1, 0}; }

bool vec_ok(int64_t C, std::initializer_list<const void*> ptrs)
{
    if (C % 8 != 0) return false;
    for (const void* p : ptrs)
        if (p && !aligned16(p)) return false;
    return true;
}

} // namespace

// ---- RMSNorm --------------------------------------------------------------------------------------

void CudaBackend::do_rmsnorm_forward(Tensor out, Tensor rstd, Tensor x, Tensor weight, float eps)
{
    const int64_t rows = x.rows(), C = x.cols();
    if (rows == 0) return;
    const bool vec = vec_ok(C, {out.data, x.data, weight.data});
    dispatch_act(x.dtype, "rmsnorm_forward", [&](auto tag) {
        using T = decltype(tag);
        const RowMap m = plain_rows(C);
        auto k = vec ? rmsnorm_forward_kernel<T, true> : rmsnorm_forward_kernel<T, false>;
        k<<<blocks_for(rows, kRowWarps), 32 * kRowWarps, 0, m_stream>>>(out.as<T>(), rstd.as<float>(), x.as<T>(),
                                                                         weight.as<T>(), rows, int(C), eps, m, m);
        CRUCIBLE_CUDA_LAUNCH_CHECK();
    });
}

void CudaBackend::do_rmsnorm_backward(Tensor dx, Tensor dweight, Tensor dout, Tensor x, Tensor weight, Tensor rstd,
                                      bool accumulate_dx)
{
    const int64_t rows = x.rows(), C = x.cols();
    if (rows == 0) return;
    dispatch_act(x.dtype, "rmsnorm_backward", [&](auto tag) {
        using T = decltype(tag);
        const RowMap m = plain_rows(C);
        const bool vec = vec_ok(C, {dx.data, dout.data, x.data, weight.data});
        auto k = vec ? rmsnorm_backward_kernel<T, true> : rmsnorm_backward_kernel<T, false>;
        k<<<blocks_for(rows, kRowWarps), 32 * kRowWarps, 0, m_stream>>>(dx.as<T>(), dout.as<T>(), x.as<T>(),
                                                                         weight.as<T>(), rstd.as<float>(), rows,
                                                                         int(C), accumulate_dx, m, m, m);
        CRUCIBLE_CUDA_LAUNCH_CHECK();
        if (!dweight.empty())
            norm_weight_grads<T>(*this, dweight.as<float>(), nullptr, false, dout.as<T>(), x.as<T>(), nullptr,
                                 rstd.as<float>(), rows, int(C), m, m);
    });
}

// ---- LayerNorm ------------------------------------------------------------------------------------

void CudaBackend::do_layernorm_forward(Tensor out, Tensor mean, Tensor rstd, Tensor x, Tensor weight, Tensor bias,
                                       float eps)
{
    const int64_t rows = x.rows(), C = x.cols();
    if (rows == 0) return;
    const bool vec = vec_ok(C, {out.data, x.data, weight.data, bias.data});
    dispatch_act(x.dtype, "layernorm_forward", [&](auto tag) {
        using T = decltype(tag);
        auto k = vec ? layernorm_forward_kernel<T, true> : layernorm_forward_kernel<T, false>;
        k<<<blocks_for(rows, kRowWarps), 32 * kRowWarps, 0, m_stream>>>(out.as<T>(), mean.as<float>(),
                                                                         rstd.as<float>(), x.as<T>(), weight.as<T>(),
                                                                         bias.as<T>(), rows, int(C), eps);
        CRUCIBLE_CUDA_LAUNCH_CHECK();
    });
}

void CudaBackend::do_layernorm_backward(Tensor dx, Tensor dweight, Tensor dbias, Tensor dout, Tensor x, Tensor weight,
                                        Tensor mean, Tensor rstd, bool accumulate_dx)
{
    const int64_t rows = x.rows(), C = x.cols();
    if (rows == 0) return;
    dispatch_act(x.dtype, "layernorm_backward", [&](auto tag) {
        using T = decltype(tag);
        const bool vec = vec_ok(C, {dx.data, dout.data, x.data, weight.data});
        auto k = vec ? layernorm_backward_kernel<T, true> : layernorm_backward_kernel<T, false>;
        k<<<blocks_for(rows, kRowWarps), 32 * kRowWarps, 0, m_stream>>>(dx.as<T>(), dout.as<T>(), x.as<T>(),
                                                                         weight.as<T>(), mean.as<float>(),
                                                                         rstd.as<float>(), rows, int(C), accumulate_dx);
        CRUCIBLE_CUDA_LAUNCH_CHECK();
        const RowMap m = plain_rows(C);
        norm_weight_grads<T>(*this, dweight.empty() ? nullptr : dweight.as<float>(),
                             dbias.empty() ? nullptr : dbias.as<float>(), true, dout.as<T>(), x.as<T>(),
                             mean.as<float>(), rstd.as<float>(), rows, int(C), m, m);
    });
}

// ---- QK-norm ----------------------------------------------------------------------------------------

void CudaBackend::do_qk_norm_forward(Tensor qkv_out, Tensor rstd, Tensor qkv_in, Tensor q_weight, Tensor k_weight,
                                     const AttentionShape& s, float eps)
{
    const int64_t N = s.tokens(), D = s.head_dim, H = s.n_heads, KV = s.n_kv_heads, QKV = s.qkv_dim();
    if (N == 0) return;
    dispatch_act(qkv_in.dtype, "qk_norm_forward", [&](auto tag) {
        using T = decltype(tag);
        const T* in = qkv_in.as<T>();
        T* out = qkv_out.as<T>();
        const RowMap qm{QKV, int(H), H + KV, 0}, km{QKV, int(KV), H + KV, H};
        const bool vec = vec_ok(D, {in, out}) && (QKV % 8 == 0);
        auto k = vec ? rmsnorm_forward_kernel<T, true> : rmsnorm_forward_kernel<T, false>;
        k<<<blocks_for(N * H, kRowWarps), 32 * kRowWarps, 0, m_stream>>>(out, rstd.as<float>(), in, q_weight.as<T>(),
                                                                          N * H, int(D), eps, qm, qm);
        CRUCIBLE_CUDA_LAUNCH_CHECK();
        k<<<blocks_for(N * KV, kRowWarps), 32 * kRowWarps, 0, m_stream>>>(
            out + H * D, rstd.as<float>(), in + H * D, k_weight.as<T>(), N * KV, int(D), eps, km, km);
        CRUCIBLE_CUDA_LAUNCH_CHECK();
        if (out != in) {
            copy_heads_kernel<T><<<blocks_for(N * KV * D, 256), 256, 0, m_stream>>>(out, in, N, QKV, (H + KV) * D,
                                                                                     KV * D);
            CRUCIBLE_CUDA_LAUNCH_CHECK();
        }
    });
}

void CudaBackend::do_qk_norm_backward(Tensor dqkv_in, Tensor dq_weight, Tensor dk_weight, Tensor dqkv_out,
                                      Tensor qkv_in, Tensor q_weight, Tensor k_weight, Tensor rstd,
                                      const AttentionShape& s)
{
    const int64_t N = s.tokens(), D = s.head_dim, H = s.n_heads, KV = s.n_kv_heads, QKV = s.qkv_dim();
    if (N == 0) return;
    dispatch_act(qkv_in.dtype, "qk_norm_backward", [&](auto tag) {
        using T = decltype(tag);
        const T* x = qkv_in.as<T>();
        const T* dout = dqkv_out.as<T>();
        T* dx = dqkv_in.as<T>();
        const float* rs = rstd.as<float>();
        // Stats of the key heads sit after the H query heads of each token: the
        // key-head map carries that offset, and the key pointers start at H·D.
        const RowMap qm{QKV, int(H), H + KV, 0}, km{QKV, int(KV), H + KV, H};
        const bool vec = vec_ok(D, {x, dout, dx}) && (QKV % 8 == 0);
        auto k = vec ? rmsnorm_backward_kernel<T, true> : rmsnorm_backward_kernel<T, false>;
        k<<<blocks_for(N * H, kRowWarps), 32 * kRowWarps, 0, m_stream>>>(dx, dout, x, q_weight.as<T>(), rs, N * H,
                                                                          int(D), false, qm, qm, qm);
        CRUCIBLE_CUDA_LAUNCH_CHECK();
        k<<<blocks_for(N * KV, kRowWarps), 32 * kRowWarps, 0, m_stream>>>(dx + H * D, dout + H * D, x + H * D,
                                                                           k_weight.as<T>(), rs, N * KV, int(D),
                                                                           false, km, km, km);
        CRUCIBLE_CUDA_LAUNCH_CHECK();
        if (dx != dout) {
            copy_heads_kernel<T><<<blocks_for(N * KV * D, 256), 256, 0, m_stream>>>(dx, dout, N, QKV, (H + KV) * D,
                                                                                     KV * D);
            CRUCIBLE_CUDA_LAUNCH_CHECK();
        }
        if (!dq_weight.empty())
            norm_weight_grads<T>(*this, dq_weight.as<float>(), nullptr, false, dout, x, nullptr, rs, N * H, int(D), qm, qm);
        if (!dk_weight.empty())
            norm_weight_grads<T>(*this, dk_weight.as<float>(), nullptr, false, dout + H * D, x + H * D, nullptr, rs, N * KV,
                                 int(D), km, km);
    });
}

} // namespace crucible
