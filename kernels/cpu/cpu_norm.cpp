// RMSNorm, LayerNorm and the per-head QK-RMSNorm, forward and backward.
//
// Rows are independent, so the forward and the input gradient run one row
// per iteration of a static OpenMP loop. The weight (and bias) gradients sum
// over rows: the rows are split into m_threads fixed ranges, each range sums
// into its own partial vector in scratch, and the partials are added to the
// gradient in range order, so the result depends on the thread count only.
#include "kernels/cpu/cpu_backend.h"

#include "kernels/cpu/cpu_kernels.h"

#include <cstring>

namespace crucible {

namespace {

using cpu::kLanes;

// dst[c] += Σ_p partials[p·stride + c], p in order.
void add_partials(float* dst, const float* partials, int parts, int64_t stride, int64_t cols)
{
    for (int p = 0; p < parts; ++p) {
        const float* src = partials + p * stride;
        for (int64_t c = 0; c < cols; ++c) dst[c] += src[c];
    }
}

float rms_rstd(const float* x, int64_t n, float eps)
{
    return 1.0f / std::sqrt(cpu::dot(x, x, n) / float(n) + eps);
}

void rms_row_forward(float* out, const float* x, const float* w, float rstd, int64_t n)
{
    for (int64_t i = 0; i < n; ++i) out[i] = x[i] * rstd * w[i];
}

// One row of the RMSNorm backward: y = x·r·w with r = (mean(x²) + eps)^-1/2
// gives dx = r·(dy∘w) − x·r³·Σ(dy∘w∘x)/n. dw_partial (may be null) gets dy∘x·r.
// dx may alias dy: each element is read before it is written.
void rms_row_backward(float* dx, float* dw_partial, const float* dy, const float* x, const float* w,
                      float rstd, int64_t n, bool accumulate)
{
    const float c = cpu::dot3(dy, w, x, n) * rstd * rstd * rstd / float(n);
    if (dw_partial)
        for (int64_t i = 0; i < n; ++i) dw_partial[i] += dy[i] * x[i] * rstd;
    if (accumulate)
        for (int64_t i = 0; i < n; ++i) dx[i] += dy[i] * w[i] * rstd - c * x[i];
    else
        for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * w[i] * rstd - c * x[i];
}

} // namespace

// ---- RMSNorm ---------------------------------------------------------------------------------

void CpuBackend::do_rmsnorm_forward(Tensor out, Tensor rstd, Tensor x, Tensor weight, float eps)
{
    const int64_t rows = x.rows(), cols = x.cols();
    float* o = out.as<float>();
    float* rs = rstd.as<float>();
    const float* xs = x.as<float>();
    const float* w = weight.as<float>();
#pragma omp parallel for num_threads(m_threads) schedule(static) if (rows * cols > cpu::kParallelMinWork)
    for (int64_t r = 0; r < rows; ++r) {
        const float* xr = xs + r * cols;
        rs[r] = rms_rstd(xr, cols, eps);
        rms_row_forward(o + r * cols, xr, w, rs[r], cols);
    }
}

void CpuBackend::do_rmsnorm_backward(Tensor dx, Tensor dweight, Tensor dout, Tensor x, Tensor weight, Tensor rstd,
                                     bool accumulate_dx)
{
    const int64_t rows = x.rows(), cols = x.cols();
    const bool want_dw = !dweight.empty();
    const int parts = m_threads;
    float* partials = want_dw ? scratch(size_t(parts * cols)) : nullptr;
    float* d = dx.as<float>();
    const float* dy = dout.as<float>();
    const float* xs = x.as<float>();
    const float* w = weight.as<float>();
    const float* rs = rstd.as<float>();
#pragma omp parallel for num_threads(m_threads) schedule(static, 1) if (rows * cols > cpu::kParallelMinWork)
    for (int part = 0; part < parts; ++part) {
        float* dw = partials ? partials + part * cols : nullptr;
        if (dw) std::memset(dw, 0, size_t(cols) * sizeof(float));
        const cpu::Range range = cpu::split_range(rows, parts, part);
        for (int64_t r = range.begin; r < range.end; ++r)
            rms_row_backward(d + r * cols, dw, dy + r * cols, xs + r * cols, w, rs[r], cols, accumulate_dx);
    }
    if (want_dw) add_partials(dweight.as<float>(), partials, parts, cols, cols);
}

// ---- LayerNorm ---------------------------------------------------------------------------------

void CpuBackend::do_layernorm_forward(Tensor out, Tensor mean, Tensor rstd, Tensor x, Tensor weight, Tensor bias,
                                      float eps)
{
    const int64_t rows = x.rows(), cols = x.cols();
    float* o = out.as<float>();
    float* mu = mean.as<float>();
    float* rs = rstd.as<float>();
    const float* xs = x.as<float>();
    const float* w = weight.as<float>();
    const float* b = bias.as<float>();
#pragma omp parallel for num_threads(m_threads) schedule(static) if (rows * cols > cpu::kParallelMinWork)
    for (int64_t r = 0; r < rows; ++r) {
        const float* xr = xs + r * cols;
        float* orow = o + r * cols;
        const float m = cpu::sum(xr, cols) / float(cols);
        // Two passes: the variance from centred values does not cancel.
        float acc[kLanes] = {};
        int64_t i = 0;
        for (; i + kLanes <= cols; i += kLanes)
            for (int l = 0; l < kLanes; ++l) acc[l] += (xr[i + l] - m) * (xr[i + l] - m);
        float tail = 0.0f;
        for (; i < cols; ++i) tail += (xr[i] - m) * (xr[i] - m);
        const float var = (cpu::sum_lanes(acc) + tail) / float(cols);
        const float s = 1.0f / std::sqrt(var + eps);
        mu[r] = m;
        rs[r] = s;
        for (int64_t c = 0; c < cols; ++c) orow[c] = (xr[c] - m) * s * w[c] + b[c];
    }
}

void CpuBackend::do_layernorm_backward(Tensor dx, Tensor dweight, Tensor dbias, Tensor dout, Tensor x, Tensor weight,
                                       Tensor mean, Tensor rstd, bool accumulate_dx)
{
    const int64_t rows = x.rows(), cols = x.cols();
    const bool want_dw = !dweight.empty(), want_db = !dbias.empty();
    const int parts = m_threads;
    // Each part's partials: dweight then dbias.
    float* partials = (want_dw || want_db) ? scratch(size_t(parts * 2 * cols)) : nullptr;
    float* d = dx.as<float>();
    const float* dy = dout.as<float>();
    const float* xs = x.as<float>();
    const float* w = weight.as<float>();
    const float* mu = mean.as<float>();
    const float* rs = rstd.as<float>();
#pragma omp parallel for num_threads(m_threads) schedule(static, 1) if (rows * cols > cpu::kParallelMinWork)
    for (int part = 0; part < parts; ++part) {
        float* dw = partials ? partials + part * 2 * cols : nullptr;
        float* db = dw ? dw + cols : nullptr;
        if (dw) std::memset(dw, 0, size_t(2 * cols) * sizeof(float));
        const cpu::Range range = cpu::split_range(rows, parts, part);
        for (int64_t r = range.begin; r < range.end; ++r) {
            const float* dyr = dy + r * cols;
            const float* xr = xs + r * cols;
            float* dr = d + r * cols;
            const float m = mu[r], s = rs[r];
            // With x̂ = (x − mean)·rstd and g = dy∘w:
            // dx = rstd·(g − mean(g) − x̂·mean(g∘x̂)).
            float acc_g[kLanes] = {}, acc_gx[kLanes] = {};
            int64_t i = 0;
            for (; i + kLanes <= cols; i += kLanes)
                for (int l = 0; l < kLanes; ++l) {
                    const float gi = dyr[i + l] * w[i + l];
                    acc_g[l] += gi;
                    acc_gx[l] += gi * (xr[i + l] - m) * s;
                }
            float tail_g = 0.0f, tail_gx = 0.0f;
            for (; i < cols; ++i) {
                const float gi = dyr[i] * w[i];
                tail_g += gi;
                tail_gx += gi * (xr[i] - m) * s;
            }
            const float mean_g = (cpu::sum_lanes(acc_g) + tail_g) / float(cols);
            const float mean_gx = (cpu::sum_lanes(acc_gx) + tail_gx) / float(cols);
            if (dw)
                for (int64_t c = 0; c < cols; ++c) {
                    dw[c] += dyr[c] * (xr[c] - m) * s;
                    db[c] += dyr[c];
                }
            if (accumulate_dx)
                for (int64_t c = 0; c < cols; ++c)
                    dr[c] += s * (dyr[c] * w[c] - mean_g - (xr[c] - m) * s * mean_gx);
            else
                for (int64_t c = 0; c < cols; ++c)
                    dr[c] = s * (dyr[c] * w[c] - mean_g - (xr[c] - m) * s * mean_gx);
        }
    }
    if (want_dw) add_partials(dweight.as<float>(), partials, parts, 2 * cols, cols);
    if (want_db) add_partials(dbias.as<float>(), partials + cols, parts, 2 * cols, cols);
}

// ---- QK-norm -------------------------------------------------------------------------------------

void CpuBackend::do_qk_norm_forward(Tensor qkv_out, Tensor rstd, Tensor qkv_in, Tensor q_weight, Tensor k_weight,
                                    const AttentionShape& s, float eps)
{
    const int64_t n = s.tokens(), d = s.head_dim, ld = s.qkv_dim(), heads = s.n_heads + s.n_kv_heads;
    float* out = qkv_out.as<float>();
    float* rs = rstd.as<float>();
    const float* in = qkv_in.as<float>();
    const float* qw = q_weight.as<float>();
    const float* kw = k_weight.as<float>();
    const bool in_place = out == in;
#pragma omp parallel for num_threads(m_threads) schedule(static) if (n * ld > cpu::kParallelMinWork)
    for (int64_t t = 0; t < n; ++t) {
        for (int64_t h = 0; h < heads; ++h) {
            const float* x = in + t * ld + h * d;
            const float r = rms_rstd(x, d, eps);
            rs[t * heads + h] = r;
            rms_row_forward(out + t * ld + h * d, x, h < s.n_heads ? qw : kw, r, d);
        }
        if (!in_place)
            std::memcpy(out + t * ld + heads * d, in + t * ld + heads * d, size_t(s.kv_dim()) * sizeof(float));
    }
}

void CpuBackend::do_qk_norm_backward(Tensor dqkv_in, Tensor dq_weight, Tensor dk_weight, Tensor dqkv_out,
                                     Tensor qkv_in, Tensor q_weight, Tensor k_weight, Tensor rstd,
                                     const AttentionShape& s)
{
    const int64_t n = s.tokens(), d = s.head_dim, ld = s.qkv_dim(), heads = s.n_heads + s.n_kv_heads;
    const bool want_dw = !dq_weight.empty() || !dk_weight.empty();
    const int parts = m_threads;
    // Each part's partials: dq_weight then dk_weight.
    float* partials = want_dw ? scratch(size_t(parts * 2 * d)) : nullptr;
    float* dx = dqkv_in.as<float>();
    const float* dy = dqkv_out.as<float>();
    const float* x = qkv_in.as<float>();
    const float* qw = q_weight.as<float>();
    const float* kw = k_weight.as<float>();
    const float* rs = rstd.as<float>();
    const bool in_place = dx == dy;
#pragma omp parallel for num_threads(m_threads) schedule(static, 1) if (n * ld > cpu::kParallelMinWork)
    for (int part = 0; part < parts; ++part) {
        float* dqw = partials ? partials + part * 2 * d : nullptr;
        float* dkw = dqw ? dqw + d : nullptr;
        if (dqw) std::memset(dqw, 0, size_t(2 * d) * sizeof(float));
        const cpu::Range range = cpu::split_range(n, parts, part);
        for (int64_t t = range.begin; t < range.end; ++t) {
            for (int64_t h = 0; h < heads; ++h) {
                const bool is_q = h < s.n_heads;
                const int64_t at = t * ld + h * d;
                rms_row_backward(dx + at, is_q ? dqw : dkw, dy + at, x + at, is_q ? qw : kw, rs[t * heads + h], d,
                                 false);
            }
            if (!in_place)
                std::memcpy(dx + t * ld + heads * d, dy + t * ld + heads * d, size_t(s.kv_dim()) * sizeof(float));
        }
    }
    if (!dq_weight.empty()) add_partials(dq_weight.as<float>(), partials, parts, 2 * d, d);
    if (!dk_weight.empty()) add_partials(dk_weight.as<float>(), partials + d, parts, 2 * d, d);
}

} // namespace crucible
