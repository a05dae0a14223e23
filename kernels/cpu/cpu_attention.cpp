// Causal grouped-query attention, flash style: the T×T scores never exist.
//
// Work is cut into tiles of queries. A tile stacks the query heads that share
// one key/value head (GQA group g) for kQueryBlock consecutive tokens, so one
// GEMM serves the whole group: S = scale·Q·Kᵀ is [g·rows, keys]. Tiles walk
// the keys in blocks of kKeyBlock up to the causal limit.
//
// Forward: online softmax per query row (running max and sum, rescaling the
// output accumulator when the max grows), then out = acc / sum and
// lse = max + log(sum) are stored.
//
// Backward: one task per (batch, kv head) owns everything it writes, the
// query-head gradients of its group and the key/value gradients of its head,
// so there are no races and every sum runs in a fixed order whatever the
// thread count. Probabilities are recomputed from lse, D = rowsum(dO∘O), and
// dS = P∘(dP − D); dK and dV of the shared head sum over the group inside
// the GEMMs (the group is stacked along their inner dimension).
//
// GEMMs go through OpenBLAS, which runs single-threaded inside the OpenMP
// region; tiles live in per-thread slices of the backend's scratch.
#include "kernels/cpu/cpu_backend.h"

#include "kernels/cpu/cpu_kernels.h"

#include <omp.h>

#include <cstring>
#include <limits>

namespace crucible {

namespace {

constexpr int64_t kQueryBlock = 32;
constexpr int64_t kKeyBlock = 128;

struct Geometry {
    int64_t batch, seq, heads, kv_heads, dim, group;
    int64_t ld;      // row stride of packed qkv (and dqkv)
    int64_t ld_out;  // row stride of out / dout
    float scale;

    explicit Geometry(const AttentionShape& s)
        : batch(s.batch), seq(s.seq), heads(s.n_heads), kv_heads(s.n_kv_heads), dim(s.head_dim),
          group(s.group()), ld(s.qkv_dim()), ld_out(s.q_dim()),
          scale(float(1.0 / std::sqrt(double(s.head_dim))))
    {
    }
    int64_t query_blocks() const { return (seq + kQueryBlock - 1) / kQueryBlock; }
    int64_t tile_rows() const { return group * std::min(seq, kQueryBlock); }
    int64_t key_block() const { return std::min(seq, kKeyBlock); }
    // Offsets into packed qkv of token row `row`.
    int64_t q_at(int64_t row, int64_t head) const { return row * ld + head * dim; }
    int64_t k_at(int64_t row, int64_t kv) const { return row * ld + (heads + kv) * dim; }
    int64_t v_at(int64_t row, int64_t kv) const { return row * ld + (heads + kv_heads + kv) * dim; }
};

// Every GEMM dimension below is at most one of these; checked here because
// nothing may throw inside the parallel region.
void check_blas_limits(const AttentionShape& s)
{
    CRUCIBLE_REQUIRE(s.qkv_dim() <= INT_MAX && s.seq * s.group() <= INT_MAX,
                     "attention on the CPU: the shape is too large for BLAS");
}

// Per-thread tiles start on their own cache line.
size_t round_to_line(size_t floats) { return (floats + 15) / 16 * 16; }

// Gathers rows [t0, t0 + rows) of the group's heads (strided in `src`) into a
// dense [group·rows, dim] tile, head-major.
void gather_group(float* tile, const float* src, int64_t src_ld, int64_t first_row, int64_t rows,
                  int64_t first_head, const Geometry& g)
{
    for (int64_t hh = 0; hh < g.group; ++hh)
        for (int64_t i = 0; i < rows; ++i)
            std::memcpy(tile + (hh * rows + i) * g.dim, src + (first_row + i) * src_ld + (first_head + hh) * g.dim,
                        size_t(g.dim) * sizeof(float));
}

// ---- forward ----------------------------------------------------------------------------------

struct ForwardTile {
    float* q;        // [M, D]
    float* scores;   // [M, key_block]
    float* acc;      // [M, D]
    float* row_max;  // [M]
    float* row_sum;  // [M]

    static size_t floats(const Geometry& g)
    {
        const int64_t m = g.tile_rows();
        return round_to_line(size_t(m * (2 * g.dim + g.key_block() + 2)));
    }
    ForwardTile(float* base, const Geometry& g)
    {
        const int64_t m = g.tile_rows();
        q = base;
        scores = q + m * g.dim;
        acc = scores + m * g.key_block();
        row_max = acc + m * g.dim;
        row_sum = row_max + m;
    }
};

void forward_tile(float* out, float* lse, const float* qkv, const Geometry& g, int64_t b, int64_t kv,
                  int64_t block, ForwardTile& tile)
{
    const int64_t q0 = block * kQueryBlock;
    const int64_t rows = std::min(kQueryBlock, g.seq - q0);
    const int64_t m = g.group * rows;
    const int64_t key_ld = g.key_block();
    const int64_t first_head = kv * g.group;
    const int64_t base_row = b * g.seq;
    gather_group(tile.q, qkv, g.ld, base_row + q0, rows, first_head, g);
    for (int64_t r = 0; r < m; ++r) {
        tile.row_max[r] = -std::numeric_limits<float>::infinity();
        tile.row_sum[r] = 0.0f;
    }

    const int64_t key_end = q0 + rows;   // the last query of the tile sees keys [0, key_end)
    for (int64_t k0 = 0; k0 < key_end; k0 += key_ld) {
        const int64_t keys = std::min(key_ld, key_end - k0);
        cpu::sgemm(false, true, m, keys, g.dim, g.scale, tile.q, g.dim, qkv + g.k_at(base_row + k0, kv), g.ld, 0.0f,
                   tile.scores, key_ld);
        for (int64_t r = 0; r < m; ++r) {
            float* s = tile.scores + r * key_ld;
            const int64_t t = q0 + r % rows;
            const int64_t visible = std::min(keys, t - k0 + 1);
            if (visible <= 0) {
                std::memset(s, 0, size_t(keys) * sizeof(float));
                continue;
            }
            const float old_max = tile.row_max[r];
            const float new_max = std::max(old_max, cpu::max_of(s, visible));
            const float sum = cpu::exp_shifted_sum(s, s, new_max, visible);
            for (int64_t k = visible; k < keys; ++k) s[k] = 0.0f;
            if (k0 == 0) {
                tile.row_sum[r] = sum;
            } else {
                const float correction = std::exp(old_max - new_max);
                tile.row_sum[r] = tile.row_sum[r] * correction + sum;
                float* a = tile.acc + r * g.dim;
                for (int64_t d = 0; d < g.dim; ++d) a[d] *= correction;
            }
            tile.row_max[r] = new_max;
        }
        cpu::sgemm(false, false, m, g.dim, keys, 1.0f, tile.scores, key_ld, qkv + g.v_at(base_row + k0, kv), g.ld,
                   k0 == 0 ? 0.0f : 1.0f, tile.acc, g.dim);
    }

    for (int64_t hh = 0; hh < g.group; ++hh) {
        const int64_t h = first_head + hh;
        for (int64_t i = 0; i < rows; ++i) {
            const int64_t r = hh * rows + i, t = q0 + i;
            const float inv = 1.0f / tile.row_sum[r];
            const float* a = tile.acc + r * g.dim;
            float* o = out + (base_row + t) * g.ld_out + h * g.dim;
            for (int64_t d = 0; d < g.dim; ++d) o[d] = a[d] * inv;
            lse[(b * g.heads + h) * g.seq + t] = tile.row_max[r] + std::log(tile.row_sum[r]);
        }
    }
}

// ---- backward ---------------------------------------------------------------------------------

struct BackwardTile {
    float* q;       // [M, D]
    float* dout;    // [M, D]
    float* dq;      // [M, D]
    float* probs;   // [M, key_block]
    float* dprobs;  // [M, key_block], becomes dS
    float* delta;   // [M]  rowsum(dO∘O)
    float* lse;     // [M]

    static size_t floats(const Geometry& g)
    {
        const int64_t m = g.tile_rows();
        return round_to_line(size_t(m * (3 * g.dim + 2 * g.key_block() + 2)));
    }
    BackwardTile(float* base, const Geometry& g)
    {
        const int64_t m = g.tile_rows();
        q = base;
        dout = q + m * g.dim;
        dq = dout + m * g.dim;
        probs = dq + m * g.dim;
        dprobs = probs + m * g.key_block();
        delta = dprobs + m * g.key_block();
        lse = delta + m;
    }
};

void backward_head(float* dqkv, const float* dout, const float* qkv, const float* out, const float* lse,
                   const Geometry& g, int64_t b, int64_t kv, BackwardTile& tile)
{
    const int64_t base_row = b * g.seq;
    const int64_t first_head = kv * g.group;
    const int64_t key_ld = g.key_block();
    for (int64_t t = 0; t < g.seq; ++t) {
        std::memset(dqkv + g.k_at(base_row + t, kv), 0, size_t(g.dim) * sizeof(float));
        std::memset(dqkv + g.v_at(base_row + t, kv), 0, size_t(g.dim) * sizeof(float));
    }

    for (int64_t block = 0; block < g.query_blocks(); ++block) {
        const int64_t q0 = block * kQueryBlock;
        const int64_t rows = std::min(kQueryBlock, g.seq - q0);
        const int64_t m = g.group * rows;
        gather_group(tile.q, qkv, g.ld, base_row + q0, rows, first_head, g);
        gather_group(tile.dout, dout, g.ld_out, base_row + q0, rows, first_head, g);
        for (int64_t hh = 0; hh < g.group; ++hh) {
            const int64_t h = first_head + hh;
            for (int64_t i = 0; i < rows; ++i) {
                const int64_t r = hh * rows + i, t = q0 + i;
                tile.delta[r] = cpu::dot(tile.dout + r * g.dim, out + (base_row + t) * g.ld_out + h * g.dim, g.dim);
                tile.lse[r] = lse[(b * g.heads + h) * g.seq + t];
            }
        }

        const int64_t key_end = q0 + rows;
        for (int64_t k0 = 0; k0 < key_end; k0 += key_ld) {
            const int64_t keys = std::min(key_ld, key_end - k0);
            const float* k_block = qkv + g.k_at(base_row + k0, kv);
            const float* v_block = qkv + g.v_at(base_row + k0, kv);
            // P = exp(scale·Q·Kᵀ − lse), zero above the diagonal.
            cpu::sgemm(false, true, m, keys, g.dim, g.scale, tile.q, g.dim, k_block, g.ld, 0.0f, tile.probs, key_ld);
            for (int64_t r = 0; r < m; ++r) {
                float* p = tile.probs + r * key_ld;
                const int64_t t = q0 + r % rows;
                const int64_t visible = std::max<int64_t>(0, std::min(keys, t - k0 + 1));
                const float shift = tile.lse[r];
                for (int64_t k = 0; k < visible; ++k) p[k] = cpu::exp_approx(p[k] - shift);
                for (int64_t k = visible; k < keys; ++k) p[k] = 0.0f;
            }
            // dV += Pᵀ·dO, summed over the group's query heads.
            cpu::sgemm(true, false, keys, g.dim, m, 1.0f, tile.probs, key_ld, tile.dout, g.dim, 1.0f,
                       dqkv + g.v_at(base_row + k0, kv), g.ld);
            // dP = dO·Vᵀ, then dS = P∘(dP − D) in place.
            cpu::sgemm(false, true, m, keys, g.dim, 1.0f, tile.dout, g.dim, v_block, g.ld, 0.0f, tile.dprobs, key_ld);
            for (int64_t r = 0; r < m; ++r) {
                const float* p = tile.probs + r * key_ld;
                float* ds = tile.dprobs + r * key_ld;
                const float delta = tile.delta[r];
                for (int64_t k = 0; k < keys; ++k) ds[k] = p[k] * (ds[k] - delta);
            }
            // dQ = scale·dS·K, dK += scale·dSᵀ·Q.
            cpu::sgemm(false, false, m, g.dim, keys, g.scale, tile.dprobs, key_ld, k_block, g.ld,
                       k0 == 0 ? 0.0f : 1.0f, tile.dq, g.dim);
            cpu::sgemm(true, false, keys, g.dim, m, g.scale, tile.dprobs, key_ld, tile.q, g.dim, 1.0f,
                       dqkv + g.k_at(base_row + k0, kv), g.ld);
        }

        for (int64_t hh = 0; hh < g.group; ++hh)
            for (int64_t i = 0; i < rows; ++i)
                std::memcpy(dqkv + g.q_at(base_row + q0 + i, first_head + hh), tile.dq + (hh * rows + i) * g.dim,
                            size_t(g.dim) * sizeof(float));
    }
}

} // namespace

void CpuBackend::do_attention_forward(Tensor out, Tensor lse, Tensor qkv, const AttentionShape& s)
{
    if (s.tokens() == 0) return;
    check_blas_limits(s);

    const Geometry g(s);
    const size_t per_thread = ForwardTile::floats(g);
    float* tiles = scratch(per_thread * size_t(m_threads));
    const int64_t blocks = g.query_blocks();
    const int64_t tasks = g.batch * g.kv_heads * blocks;
    float* o = out.as<float>();
    float* l = lse.as<float>();
    const float* x = qkv.as<float>();
    // A tile's cost grows with its query block (causal), so tiles go out
    // heaviest first to whichever thread is free. Each tile owns its outputs,
    // so the assignment cannot change a result.
    const int64_t heads = g.batch * g.kv_heads;
#pragma omp parallel num_threads(m_threads)
    {
        ForwardTile tile(tiles + per_thread * size_t(omp_get_thread_num()), g);
#pragma omp for schedule(dynamic, 1)
        for (int64_t task = 0; task < tasks; ++task) {
            const int64_t block = blocks - 1 - task / heads;
            const int64_t b = (task % heads) / g.kv_heads, kv = task % g.kv_heads;
            forward_tile(o, l, x, g, b, kv, block, tile);
        }
    }
}

void CpuBackend::do_attention_backward(Tensor dqkv, Tensor dout, Tensor qkv, Tensor out, Tensor lse,
                                       const AttentionShape& s)
{
    if (s.tokens() == 0) return;
    check_blas_limits(s);

    const Geometry g(s);
    const size_t per_thread = BackwardTile::floats(g);
    float* tiles = scratch(per_thread * size_t(m_threads));
    const int64_t tasks = g.batch * g.kv_heads;
    float* dx = dqkv.as<float>();
    const float* dy = dout.as<float>();
    const float* x = qkv.as<float>();
    const float* y = out.as<float>();
    const float* l = lse.as<float>();
#pragma omp parallel num_threads(m_threads)
    {
        BackwardTile tile(tiles + per_thread * size_t(omp_get_thread_num()), g);
#pragma omp for schedule(static, 1)
        for (int64_t task = 0; task < tasks; ++task)
            backward_head(dx, dy, x, y, l, g, task / g.kv_heads, task % g.kv_heads, tile);
    }
}

} // namespace crucible
