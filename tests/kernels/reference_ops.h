// Naive fp64 references for the backend ops, forward and backward, written to
// be read rather than to be fast: plain loops straight from the definitions in
// kernels/backend.h. tst_op_parity compares every backend against these and
// checks every backward here against central finite differences of the
// matching forward.
#pragma once

#include "kernels/backend.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <vector>

namespace crucible::test::ref {

using Vec = std::vector<double>;

inline Vec widen(const std::vector<float>& v) { return Vec(v.begin(), v.end()); }

// ‖a − b‖ / ‖b‖ (b the reference)
inline double rel_error(const Vec& a, const Vec& b)
{
    if (a.size() != b.size()) return INFINITY;
    double num = 0, den = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        num += (a[i] - b[i]) * (a[i] - b[i]);
        den += b[i] * b[i];
    }
    return std::sqrt(num) / std::max(std::sqrt(den), 1e-300);
}

// Central differences of L(x) = Σ_i weights[i]·f(x)[i] for every element of x.
inline Vec numeric_gradient(const std::function<Vec(const Vec&)>& f, Vec x, const Vec& weights, double h = 1e-6)
{
    Vec grad(x.size());
    for (size_t j = 0; j < x.size(); ++j) {
        const double keep = x[j];
        x[j] = keep + h;
        const Vec up = f(x);
        x[j] = keep - h;
        const Vec down = f(x);
        x[j] = keep;
        double diff = 0;
        for (size_t i = 0; i < up.size(); ++i) diff += weights[i] * (up[i] - down[i]);
        grad[j] = diff / (2 * h);
    }
    return grad;
}

// ---- embedding ------------------------------------------------------------------------

inline Vec embedding(const std::vector<int32_t>& tokens, const Vec& table, int64_t dim)
{
    Vec out(tokens.size() * size_t(dim));
    for (size_t n = 0; n < tokens.size(); ++n)
        for (int64_t c = 0; c < dim; ++c) out[n * dim + c] = table[size_t(tokens[n]) * dim + c];
    return out;
}

inline Vec embedding_backward(const std::vector<int32_t>& tokens, const Vec& dout, int64_t vocab, int64_t dim)
{
    Vec dtable(size_t(vocab * dim), 0.0);
    for (size_t n = 0; n < tokens.size(); ++n)
        for (int64_t c = 0; c < dim; ++c) dtable[size_t(tokens[n]) * dim + c] += dout[n * dim + c];
    return dtable;
}

// ---- linear: out[m, n] = Σ_k in[m, k]·w[n, k] ---------------------------------------------

inline Vec linear(const Vec& in, const Vec& w, int64_t M, int64_t K, int64_t N)
{
    Vec out(size_t(M * N), 0.0);
    for (int64_t m = 0; m < M; ++m)
        for (int64_t n = 0; n < N; ++n) {
            double acc = 0;
            for (int64_t k = 0; k < K; ++k) acc += in[m * K + k] * w[n * K + k];
            out[m * N + n] = acc;
        }
    return out;
}

struct LinearGrads {
    Vec din, dweight;
};

inline LinearGrads linear_backward(const Vec& dout, const Vec& in, const Vec& w, int64_t M, int64_t K, int64_t N)
{
    LinearGrads g{Vec(size_t(M * K), 0.0), Vec(size_t(N * K), 0.0)};
    for (int64_t m = 0; m < M; ++m)
        for (int64_t n = 0; n < N; ++n)
            for (int64_t k = 0; k < K; ++k) {
                g.din[m * K + k] += dout[m * N + n] * w[n * K + k];
                g.dweight[n * K + k] += dout[m * N + n] * in[m * K + k];
            }
    return g;
}

// ---- normalisation ----------------------------------------------------------------------

struct NormOut {
    Vec out, mean, rstd;
};
struct NormGrads {
    Vec dx, dweight, dbias;
};

// y = x·r·w with r = (mean(x²) + eps)^(-1/2)
inline NormOut rmsnorm(const Vec& x, const Vec& w, int64_t rows, int64_t cols, double eps)
{
    NormOut o{Vec(x.size()), Vec(size_t(rows), 0.0), Vec(size_t(rows))};
    for (int64_t r = 0; r < rows; ++r) {
        double ss = 0;
        for (int64_t c = 0; c < cols; ++c) ss += x[r * cols + c] * x[r * cols + c];
        const double rs = 1.0 / std::sqrt(ss / double(cols) + eps);
        o.rstd[r] = rs;
        for (int64_t c = 0; c < cols; ++c) o.out[r * cols + c] = x[r * cols + c] * rs * w[c];
    }
    return o;
}

// dL/dx_j = r·w_j·g_j + (Σ_i g_i·w_i·x_i)·dr/dx_j with dr/dx_j = −r³·x_j / n;
// dL/dw_j = Σ_rows g_j·x_j·r.
inline NormGrads rmsnorm_backward(const Vec& dout, const Vec& x, const Vec& w, int64_t rows, int64_t cols,
                                  double eps)
{
    const NormOut f = rmsnorm(x, w, rows, cols, eps);
    NormGrads g{Vec(x.size()), Vec(size_t(cols), 0.0), {}};
    for (int64_t r = 0; r < rows; ++r) {
        const double rs = f.rstd[r];
        double gwx = 0;
        for (int64_t c = 0; c < cols; ++c) gwx += dout[r * cols + c] * w[c] * x[r * cols + c];
        for (int64_t c = 0; c < cols; ++c) {
            const double xc = x[r * cols + c];
            g.dx[r * cols + c] = rs * w[c] * dout[r * cols + c] - gwx * rs * rs * rs * xc / double(cols);
            g.dweight[c] += dout[r * cols + c] * xc * rs;
        }
    }
    return g;
}

// y = (x − μ)·r·w + b with r = (var + eps)^(-1/2), var the biased variance
inline NormOut layernorm(const Vec& x, const Vec& w, const Vec& b, int64_t rows, int64_t cols, double eps)
{
    NormOut o{Vec(x.size()), Vec(size_t(rows)), Vec(size_t(rows))};
    for (int64_t r = 0; r < rows; ++r) {
        double mu = 0;
        for (int64_t c = 0; c < cols; ++c) mu += x[r * cols + c];
        mu /= double(cols);
        double var = 0;
        for (int64_t c = 0; c < cols; ++c) var += (x[r * cols + c] - mu) * (x[r * cols + c] - mu);
        var /= double(cols);
        const double rs = 1.0 / std::sqrt(var + eps);
        o.mean[r] = mu;
        o.rstd[r] = rs;
        for (int64_t c = 0; c < cols; ++c) o.out[r * cols + c] = (x[r * cols + c] - mu) * rs * w[c] + b[c];
    }
    return o;
}

// With x̂ = (x − μ)·r and h = g∘w: dx = r·(h − mean(h) − x̂·mean(h∘x̂));
// dw = Σ_rows g∘x̂, db = Σ_rows g.
inline NormGrads layernorm_backward(const Vec& dout, const Vec& x, const Vec& w, int64_t rows, int64_t cols,
                                    double eps)
{
    const NormOut f = layernorm(x, w, Vec(size_t(cols), 0.0), rows, cols, eps);
    NormGrads g{Vec(x.size()), Vec(size_t(cols), 0.0), Vec(size_t(cols), 0.0)};
    for (int64_t r = 0; r < rows; ++r) {
        const double mu = f.mean[r], rs = f.rstd[r];
        double mean_h = 0, mean_hx = 0;
        for (int64_t c = 0; c < cols; ++c) {
            const double h = dout[r * cols + c] * w[c];
            const double xhat = (x[r * cols + c] - mu) * rs;
            mean_h += h / double(cols);
            mean_hx += h * xhat / double(cols);
        }
        for (int64_t c = 0; c < cols; ++c) {
            const double h = dout[r * cols + c] * w[c];
            const double xhat = (x[r * cols + c] - mu) * rs;
            g.dx[r * cols + c] = rs * (h - mean_h - xhat * mean_hx);
            g.dweight[c] += dout[r * cols + c] * xhat;
            g.dbias[c] += dout[r * cols + c];
        }
    }
    return g;
}

// ---- packed qkv helpers --------------------------------------------------------------------

// Element d of head `head` (0..H+2KV-1 in packed order) of token row `row`.
inline size_t packed(const AttentionShape& s, int64_t row, int64_t head, int64_t d)
{
    return size_t(row * s.qkv_dim() + head * s.head_dim + d);
}

// Per-head RMSNorm of the query and key heads; value heads copied.
inline Vec qk_norm(const Vec& qkv, const Vec& qw, const Vec& kw, const AttentionShape& s, double eps,
                   Vec* rstd = nullptr)
{
    Vec out = qkv;
    const int64_t heads = s.n_heads + s.n_kv_heads, D = s.head_dim;
    if (rstd) rstd->assign(size_t(s.tokens() * heads), 0.0);
    for (int64_t t = 0; t < s.tokens(); ++t)
        for (int64_t h = 0; h < heads; ++h) {
            const Vec x(qkv.begin() + long(packed(s, t, h, 0)), qkv.begin() + long(packed(s, t, h, 0) + D));
            const NormOut y = rmsnorm(x, h < s.n_heads ? qw : kw, 1, D, eps);
            for (int64_t d = 0; d < D; ++d) out[packed(s, t, h, d)] = y.out[d];
            if (rstd) (*rstd)[size_t(t * heads + h)] = y.rstd[0];
        }
    return out;
}

struct QkNormGrads {
    Vec dqkv, dq_weight, dk_weight;
};

inline QkNormGrads qk_norm_backward(const Vec& dout, const Vec& qkv, const Vec& qw, const Vec& kw,
                                    const AttentionShape& s, double eps)
{
    const int64_t heads = s.n_heads + s.n_kv_heads, D = s.head_dim;
    QkNormGrads g{dout, Vec(size_t(D), 0.0), Vec(size_t(D), 0.0)};   // value heads pass through
    for (int64_t t = 0; t < s.tokens(); ++t)
        for (int64_t h = 0; h < heads; ++h) {
            const size_t at = packed(s, t, h, 0);
            const Vec x(qkv.begin() + long(at), qkv.begin() + long(at) + D);
            const Vec dy(dout.begin() + long(at), dout.begin() + long(at) + D);
            const NormGrads r = rmsnorm_backward(dy, x, h < s.n_heads ? qw : kw, 1, D, eps);
            for (int64_t d = 0; d < D; ++d) g.dqkv[at + d] = r.dx[d];
            Vec& dw = h < s.n_heads ? g.dq_weight : g.dk_weight;
            for (int64_t d = 0; d < D; ++d) dw[d] += r.dweight[d];
        }
    return g;
}

// ---- RoPE ---------------------------------------------------------------------------------

// Rotates pairs (i, i + D/2) of every query and key head by
// angle = (pos_offset + t)·theta^(−2i/D); `inverse` rotates by −angle, which is
// also the backward (the Jacobian of a rotation is the rotation, its transpose
// the inverse).
inline Vec rope(const Vec& qkv, const AttentionShape& s, int64_t pos_offset, double theta, bool inverse = false)
{
    Vec out = qkv;
    const int64_t D = s.head_dim, half = D / 2;
    for (int64_t row = 0; row < s.tokens(); ++row) {
        const int64_t pos = pos_offset + row % s.seq;
        for (int64_t h = 0; h < s.n_heads + s.n_kv_heads; ++h)
            for (int64_t i = 0; i < half; ++i) {
                const double angle = double(pos) * std::pow(theta, -2.0 * double(i) / double(D));
                const double c = std::cos(angle), sn = inverse ? -std::sin(angle) : std::sin(angle);
                const double a = qkv[packed(s, row, h, i)], b = qkv[packed(s, row, h, i + half)];
                out[packed(s, row, h, i)] = a * c - b * sn;
                out[packed(s, row, h, i + half)] = b * c + a * sn;
            }
    }
    return out;
}

// ---- causal attention ------------------------------------------------------------------------

struct AttentionOut {
    Vec out, lse;
};

// out[b, t, h] = Σ_{j ≤ t} softmax_j(q·k_j / √D)·v_j; query head h reads kv head h / (H/KV).
inline AttentionOut attention(const Vec& qkv, const AttentionShape& s)
{
    const int64_t T = s.seq, H = s.n_heads, KV = s.n_kv_heads, D = s.head_dim;
    const double scale = 1.0 / std::sqrt(double(D));
    AttentionOut o{Vec(size_t(s.tokens() * H * D), 0.0), Vec(size_t(s.batch * H * T))};
    for (int64_t b = 0; b < s.batch; ++b)
        for (int64_t h = 0; h < H; ++h) {
            const int64_t kv = h / (H / KV);
            for (int64_t t = 0; t < T; ++t) {
                Vec score(size_t(t + 1));
                double max = -INFINITY;
                for (int64_t j = 0; j <= t; ++j) {
                    double dot = 0;
                    for (int64_t d = 0; d < D; ++d)
                        dot += qkv[packed(s, b * T + t, h, d)] * qkv[packed(s, b * T + j, H + kv, d)];
                    score[j] = dot * scale;
                    max = std::max(max, score[j]);
                }
                double sum = 0;
                for (int64_t j = 0; j <= t; ++j) sum += std::exp(score[j] - max);
                for (int64_t j = 0; j <= t; ++j) {
                    const double p = std::exp(score[j] - max) / sum;
                    for (int64_t d = 0; d < D; ++d)
                        o.out[size_t((b * T + t) * H * D + h * D + d)] += p * qkv[packed(s, b * T + j, H + KV + kv, d)];
                }
                o.lse[size_t((b * H + h) * T + t)] = max + std::log(sum);
            }
        }
    return o;
}

// With p_j the probabilities of a query row: dv_j += p_j·dout; dp_j = dout·v_j;
// ds_j = p_j·(dp_j − Σ_i p_i·dp_i); dq = scale·Σ_j ds_j·k_j; dk_j += scale·ds_j·q.
inline Vec attention_backward(const Vec& dout, const Vec& qkv, const AttentionShape& s)
{
    const int64_t T = s.seq, H = s.n_heads, KV = s.n_kv_heads, D = s.head_dim;
    const double scale = 1.0 / std::sqrt(double(D));
    Vec dqkv(qkv.size(), 0.0);
    for (int64_t b = 0; b < s.batch; ++b)
        for (int64_t h = 0; h < H; ++h) {
            const int64_t kv = h / (H / KV);
            for (int64_t t = 0; t < T; ++t) {
                const int64_t row = b * T + t;
                Vec p(size_t(t + 1)), dp(size_t(t + 1));
                double max = -INFINITY;
                for (int64_t j = 0; j <= t; ++j) {
                    double dot = 0;
                    for (int64_t d = 0; d < D; ++d) dot += qkv[packed(s, row, h, d)] * qkv[packed(s, b * T + j, H + kv, d)];
                    p[j] = dot * scale;
                    max = std::max(max, p[j]);
                }
                double sum = 0;
                for (int64_t j = 0; j <= t; ++j) sum += (p[j] = std::exp(p[j] - max));
                double pdp = 0;
                for (int64_t j = 0; j <= t; ++j) {
                    p[j] /= sum;
                    double dot = 0;
                    for (int64_t d = 0; d < D; ++d)
                        dot += dout[size_t(row * H * D + h * D + d)] * qkv[packed(s, b * T + j, H + KV + kv, d)];
                    dp[j] = dot;
                    pdp += p[j] * dot;
                }
                for (int64_t j = 0; j <= t; ++j) {
                    const double ds = p[j] * (dp[j] - pdp);
                    for (int64_t d = 0; d < D; ++d) {
                        dqkv[packed(s, row, h, d)] += scale * ds * qkv[packed(s, b * T + j, H + kv, d)];
                        dqkv[packed(s, b * T + j, H + kv, d)] += scale * ds * qkv[packed(s, row, h, d)];
                        dqkv[packed(s, b * T + j, H + KV + kv, d)] += p[j] * dout[size_t(row * H * D + h * D + d)];
                    }
                }
            }
        }
    return dqkv;
}

// ---- MLP activations -----------------------------------------------------------------------------

inline double sigmoid(double z) { return 1.0 / (1.0 + std::exp(-z)); }

// out[r, i] = silu(gate[r, i])·up[r, i], gate_up rows = [gate | up]
inline Vec swiglu(const Vec& gate_up, int64_t rows, int64_t f)
{
    Vec out(size_t(rows * f));
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t i = 0; i < f; ++i) {
            const double z = gate_up[r * 2 * f + i], u = gate_up[r * 2 * f + f + i];
            out[r * f + i] = z * sigmoid(z) * u;
        }
    return out;
}

// d gate = dout·up·σ(z)·(1 + z·(1 − σ(z))), d up = dout·z·σ(z)
inline Vec swiglu_backward(const Vec& dout, const Vec& gate_up, int64_t rows, int64_t f)
{
    Vec d(gate_up.size());
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t i = 0; i < f; ++i) {
            const double z = gate_up[r * 2 * f + i], u = gate_up[r * 2 * f + f + i], g = dout[r * f + i];
            const double sig = sigmoid(z);
            d[r * 2 * f + i] = g * u * sig * (1 + z * (1 - sig));
            d[r * 2 * f + f + i] = g * z * sig;
        }
    return d;
}

inline Vec gelu(const Vec& x)
{
    Vec y(x.size());
    for (size_t i = 0; i < x.size(); ++i) y[i] = 0.5 * x[i] * (1 + std::erf(x[i] / std::sqrt(2.0)));
    return y;
}

// d/dx x·Φ(x) = Φ(x) + x·φ(x)
inline Vec gelu_backward(const Vec& dout, const Vec& x)
{
    Vec d(x.size());
    for (size_t i = 0; i < x.size(); ++i) {
        const double cdf = 0.5 * (1 + std::erf(x[i] / std::sqrt(2.0)));
        const double pdf = std::exp(-0.5 * x[i] * x[i]) / std::sqrt(2 * M_PI);
        d[i] = dout[i] * (cdf + x[i] * pdf);
    }
    return d;
}

// ---- cross-entropy ------------------------------------------------------------------------------

// The largest of a row's values, the lowest index among equals.
inline int64_t row_argmax(const double* x, int64_t n)
{
    int64_t best = 0;
    for (int64_t v = 1; v < n; ++v)
        if (x[v] > x[best]) best = v;
    return best;
}

struct CrossEntropyOut {
    Vec losses;
    std::vector<int32_t> correct;
    Vec grad;   // d(grad_scale·Σ losses)/d logits = (softmax − onehot)·grad_scale
};

inline CrossEntropyOut cross_entropy(const Vec& logits, const std::vector<int32_t>& targets, int64_t rows,
                                     int64_t vocab, double grad_scale)
{
    CrossEntropyOut o{Vec(size_t(rows), 0.0), std::vector<int32_t>(size_t(rows), 0), Vec(logits.size(), 0.0)};
    for (int64_t r = 0; r < rows; ++r) {
        const int32_t target = targets[size_t(r)];
        if (target < 0) continue;
        const double* x = logits.data() + r * vocab;
        const int64_t argmax = row_argmax(x, vocab);
        double sum = 0;
        for (int64_t v = 0; v < vocab; ++v) sum += std::exp(x[v] - x[argmax]);
        const double lse = x[argmax] + std::log(sum);
        o.losses[r] = lse - x[target];
        o.correct[r] = argmax == target ? 1 : 0;
        for (int64_t v = 0; v < vocab; ++v)
            o.grad[r * vocab + v] = (std::exp(x[v] - lse) - (v == target ? 1.0 : 0.0)) * grad_scale;
    }
    return o;
}

// ---- KV cache and decode ---------------------------------------------------------------------------

// Index of cache[b, kv, p, d] in a [slots, KV, capacity, D] cache.
inline size_t cache_at(const AttentionShape& s, int64_t capacity, int64_t b, int64_t kv, int64_t p, int64_t d)
{
    return size_t(((b * s.n_kv_heads + kv) * capacity + p) * s.head_dim + d);
}

// RoPE of each row at its own position (padding rows, position < 0, untouched).
inline Vec rope_at(const Vec& qkv, const AttentionShape& s, const std::vector<int32_t>& pos, double theta)
{
    Vec out = qkv;
    const AttentionShape one{1, 1, s.n_heads, s.n_kv_heads, s.head_dim};
    const size_t ld = size_t(s.qkv_dim());
    for (size_t r = 0; r < pos.size(); ++r) {
        if (pos[r] < 0) continue;
        const Vec row(qkv.begin() + std::ptrdiff_t(r * ld), qkv.begin() + std::ptrdiff_t((r + 1) * ld));
        const Vec rotated = rope(row, one, pos[r], theta);
        std::copy(rotated.begin(), rotated.end(), out.begin() + std::ptrdiff_t(r * ld));
    }
    return out;
}

struct KvCacheOut {
    Vec keys, values;
};

// The key and value heads of every non-padding row r copied to slot r / T at positions[r].
inline KvCacheOut kv_cache_write(Vec keys, Vec values, const Vec& qkv, const std::vector<int32_t>& pos,
                                 const AttentionShape& s, int64_t capacity)
{
    for (int64_t r = 0; r < s.tokens(); ++r) {
        if (pos[size_t(r)] < 0) continue;
        for (int64_t kv = 0; kv < s.n_kv_heads; ++kv)
            for (int64_t d = 0; d < s.head_dim; ++d) {
                const size_t at = cache_at(s, capacity, r / s.seq, kv, pos[size_t(r)], d);
                keys[at] = qkv[packed(s, r, s.n_heads + kv, d)];
                values[at] = qkv[packed(s, r, s.n_heads + s.n_kv_heads + kv, d)];
            }
    }
    return {std::move(keys), std::move(values)};
}

// softmax(q·kᵀ/√D)·v over positions [0, pos] of the row's slot, per query head;
// padding rows give zeros.
inline Vec attention_over_cache(const Vec& qkv, const Vec& keys, const Vec& values, const std::vector<int32_t>& pos,
                                const AttentionShape& s, int64_t capacity)
{
    const int64_t D = s.head_dim;
    Vec out(size_t(s.tokens() * s.q_dim()), 0.0);
    const double scale = 1.0 / std::sqrt(double(D));
    for (int64_t r = 0; r < s.tokens(); ++r) {
        if (pos[size_t(r)] < 0) continue;
        const int64_t b = r / s.seq;
        for (int64_t h = 0; h < s.n_heads; ++h) {
            const int64_t kv = h / s.group();
            std::vector<double> w(size_t(pos[size_t(r)] + 1));
            double top = -INFINITY;
            for (size_t j = 0; j < w.size(); ++j) {
                double dot = 0;
                for (int64_t d = 0; d < D; ++d) dot += qkv[packed(s, r, h, d)] * keys[cache_at(s, capacity, b, kv, int64_t(j), d)];
                w[j] = dot * scale;
                top = std::max(top, w[j]);
            }
            double sum = 0;
            for (auto& x : w) sum += x = std::exp(x - top);
            for (int64_t d = 0; d < D; ++d) {
                double acc = 0;
                for (size_t j = 0; j < w.size(); ++j) acc += w[j] * values[cache_at(s, capacity, b, kv, int64_t(j), d)];
                out[size_t(r * s.q_dim() + h * D + d)] = acc / sum;
            }
        }
    }
    return out;
}

struct ArgmaxOut {
    std::vector<int32_t> ids;
    Vec probs;
};

// Each row's largest logit (the lowest id among equals) and its softmax probability.
inline ArgmaxOut argmax_rows(const Vec& logits, int64_t rows, int64_t vocab)
{
    ArgmaxOut o{std::vector<int32_t>(size_t(rows)), Vec(size_t(rows))};
    for (int64_t r = 0; r < rows; ++r) {
        const double* x = logits.data() + r * vocab;
        const int64_t best = row_argmax(x, vocab);
        double sum = 0;
        for (int64_t v = 0; v < vocab; ++v) sum += std::exp(x[v] - x[best]);
        o.ids[size_t(r)] = int32_t(best);
        o.probs[size_t(r)] = 1.0 / sum;
    }
    return o;
}

// ---- optimizers ------------------------------------------------------------------------------------

struct AdamWOut {
    Vec param, m, v;
};

// One AdamW step with decoupled weight decay and bias correction.
inline AdamWOut adamw(Vec p, Vec m, Vec v, const Vec& grad, const AdamWHyper& h)
{
    const double b1 = h.beta1, b2 = h.beta2, lr = h.lr;
    const double bc1 = 1 - std::pow(b1, double(h.step)), bc2 = 1 - std::pow(b2, double(h.step));
    for (size_t i = 0; i < p.size(); ++i) {
        const double g = grad[i] * double(h.grad_scale);
        m[i] = b1 * m[i] + (1 - b1) * g;
        v[i] = b2 * v[i] + (1 - b2) * g * g;
        p[i] = p[i] * (1 - lr * double(h.weight_decay)) - lr / bc1 * m[i] / (std::sqrt(v[i] / bc2) + double(h.eps));
    }
    return {std::move(p), std::move(m), std::move(v)};
}

// The quintic of kernels/backend.h in double on a [rows, cols] matrix,
// transposing tall matrices so the iteration runs on the wide orientation.
inline Vec newton_schulz(const Vec& in, int64_t rows, int64_t cols, int steps)
{
    const bool tall = rows > cols;
    const int64_t r = tall ? cols : rows, c = tall ? rows : cols;   // the wide shape
    Vec x(size_t(r * c));
    double norm = 0;
    for (double v : in) norm += v * v;
    norm = std::sqrt(norm) + 1e-7;
    for (int64_t i = 0; i < rows; ++i)
        for (int64_t j = 0; j < cols; ++j) {
            const double v = in[size_t(i * cols + j)] / norm;
            if (tall) x[size_t(j * c + i)] = v;
            else x[size_t(i * c + j)] = v;
        }
    const double a = kMuonA, b = kMuonB, cc = kMuonC;
    for (int s = 0; s < steps; ++s) {
        Vec gram(size_t(r * r), 0.0), poly(size_t(r * r), 0.0), next(size_t(r * c), 0.0);
        for (int64_t i = 0; i < r; ++i)
            for (int64_t j = 0; j < r; ++j)
                for (int64_t k = 0; k < c; ++k) gram[size_t(i * r + j)] += x[size_t(i * c + k)] * x[size_t(j * c + k)];
        for (int64_t i = 0; i < r; ++i)
            for (int64_t j = 0; j < r; ++j) {
                double aa = 0;
                for (int64_t k = 0; k < r; ++k) aa += gram[size_t(i * r + k)] * gram[size_t(k * r + j)];
                poly[size_t(i * r + j)] = b * gram[size_t(i * r + j)] + cc * aa;
            }
        for (int64_t i = 0; i < r; ++i)
            for (int64_t j = 0; j < c; ++j) {
                double acc = a * x[size_t(i * c + j)];
                for (int64_t k = 0; k < r; ++k) acc += poly[size_t(i * r + k)] * x[size_t(k * c + j)];
                next[size_t(i * c + j)] = acc;
            }
        x = next;
    }
    Vec out(size_t(rows * cols));
    for (int64_t i = 0; i < rows; ++i)
        for (int64_t j = 0; j < cols; ++j) out[size_t(i * cols + j)] = tall ? x[size_t(j * c + i)] : x[size_t(i * c + j)];
    return out;
}

struct MuonOut {
    Vec param, momentum;
};

// One Muon step over `count` [rows, cols] matrices `stride` elements apart;
// elements outside them are left alone.
inline MuonOut muon(Vec p, Vec mom, const Vec& grad, int64_t rows, int64_t cols, int64_t count, int64_t stride,
                    const MuonHyper& h)
{
    const int64_t n = rows * cols;
    for (int64_t c = 0; c < count; ++c) {
        Vec u(static_cast<size_t>(n));
        for (int64_t i = 0; i < n; ++i) {
            const size_t at = size_t(c * stride + i);
            const double g = grad[at] * double(h.grad_scale);
            mom[at] = double(h.momentum) * mom[at] + g;
            u[size_t(i)] = h.nesterov ? g + double(h.momentum) * mom[at] : mom[at];
        }
        const Vec o = newton_schulz(u, rows, cols, h.ns_steps);
        for (int64_t i = 0; i < n; ++i) {
            const size_t at = size_t(c * stride + i);
            p[at] = p[at] * (1 - double(h.lr) * double(h.weight_decay)) - double(h.lr) * double(h.update_scale) * o[size_t(i)];
        }
    }
    return {std::move(p), std::move(mom)};
}

} // namespace crucible::test::ref
