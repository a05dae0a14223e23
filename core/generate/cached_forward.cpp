#include "core/generate/cached_forward.h"

#include "kernels/error.h"

#include <algorithm>
#include <string>

namespace crucible {

CachedForward::CachedForward(ParamStore& params, KvCache& cache, int64_t max_tokens, int64_t max_logit_rows)
    : m_params(&params), m_cache(&cache), m_max_tokens(max_tokens),
      m_max_logit_rows(std::min(max_logit_rows, max_tokens))
{
    const ModelConfig& c = params.config();
    if (max_tokens < 1 || max_logit_rows < 1) throw Error("generation needs room for at least one token");
    CRUCIBLE_CHECK(cache.keys(0).shape[1] == c.n_kv_heads && cache.keys(0).shape[3] == c.resolved_head_dim(),
                   "the KV cache was made for another model");

    const ParamLayout& layout = params.layout();
    const bool layernorm = c.norm == NormType::layernorm;
    for (int l = 0; l < c.n_layers; ++l) {
        m_layer_params.push_back(LayerParams{
            &layout.at(ParamRole::attn_norm, l), layernorm ? &layout.at(ParamRole::attn_norm_bias, l) : nullptr,
            c.qk_norm ? &layout.at(ParamRole::q_norm, l) : nullptr,
            c.qk_norm ? &layout.at(ParamRole::k_norm, l) : nullptr, &layout.at(ParamRole::o_proj, l),
            &layout.at(ParamRole::mlp_norm, l), layernorm ? &layout.at(ParamRole::mlp_norm_bias, l) : nullptr,
            &layout.at(ParamRole::down_proj, l)});
    }
    m_embedding = &layout.at(ParamRole::embedding);
    m_final_norm = &layout.at(ParamRole::final_norm);
    m_final_norm_bias = layernorm ? &layout.at(ParamRole::final_norm_bias) : nullptr;
    m_head = &layout.head();

    // Plan with a counting arena, then carve the real one with the same calls.
    const DType dt = params.backend().compute_dtype();
    const int64_t n = m_max_tokens, r = m_max_logit_rows;
    auto carve = [&](Arena& a) {
        m_x = a.take(dt, Shape{n, c.d_model});
        m_norm_out = a.take(dt, Shape{n, c.d_model});
        m_rstd = a.take(DType::f32, Shape{n});
        m_mean = layernorm ? a.take(DType::f32, Shape{n}) : Tensor();
        if (c.qk_norm) {
            m_qkv_raw = a.take(dt, Shape{n, c.qkv_dim()});
            m_qk_rstd = a.take(DType::f32, Shape{n, c.n_heads + c.n_kv_heads});
        }
        m_qkv = a.take(dt, Shape{n, c.qkv_dim()});
        m_attn_out = a.take(dt, Shape{n, c.q_dim()});
        m_lse = a.take(DType::f32, Shape{n * c.n_heads});
        m_mlp_in = a.take(dt, Shape{n, c.mlp_in_dim()});
        m_mlp_act = a.take(dt, Shape{n, c.ff_dim});
        m_tokens = a.take(DType::i32, Shape{n});
        m_positions = a.take(DType::i32, Shape{n});
        m_logit_index = a.take(DType::i32, Shape{r});
        m_logit_x = a.take(dt, Shape{r, c.d_model});
        m_logit_norm = a.take(dt, Shape{r, c.d_model});
        m_logits = a.take(dt, Shape{r, c.vocab_size});
        m_pick_ids = a.take(DType::i32, Shape{r});
        m_pick_probs = a.take(DType::f32, Shape{r});
    };
    Arena counter;
    carve(counter);
    m_buffer = DeviceBuffer(params.backend(), counter.used());
    Arena arena(m_buffer, params.backend().device());
    carve(arena);
}

void CachedForward::norm_forward(Tensor out, Tensor x, const ParamEntry& weight, const ParamEntry* bias, int64_t n)
{
    const ModelConfig& c = config();
    const Tensor rstd = m_rstd.slice_rows(0, n);
    if (c.norm == NormType::rmsnorm)
        backend().rmsnorm_forward(out, rstd, x, m_params->compute(weight), c.norm_eps);
    else
        backend().layernorm_forward(out, m_mean.slice_rows(0, n), rstd, x, m_params->compute(weight),
                                    m_params->compute(*bias), c.norm_eps);
}

bool CachedForward::may_fuse(int64_t seq, bool from_empty_cache) const
{
    const ModelConfig& c = config();
    return m_speedups.fused_kernels && seq == 1 && !from_empty_cache && c.norm == NormType::rmsnorm && !c.qk_norm;
}

void CachedForward::run_layers(int64_t batch, int64_t seq, bool from_empty_cache)
{
    const ModelConfig& c = config();
    Backend& be = backend();
    const ParamLayout& layout = m_params->layout();
    const Tensor W = m_params->compute();
    const int64_t n = batch * seq;
    const AttentionShape s{batch, seq, c.n_heads, c.n_kv_heads, c.resolved_head_dim()};
    auto rows = [n](Tensor t) { return t.slice_rows(0, n); };
    const Tensor x = rows(m_x), norm_out = rows(m_norm_out), qkv = rows(m_qkv), attn_out = rows(m_attn_out);
    const Tensor positions = rows(m_positions);

    const bool fuse = may_fuse(seq, from_empty_cache);

    be.embedding_forward(x, rows(m_tokens), m_params->compute(*m_embedding));
    for (int l = 0; l < c.n_layers; ++l) {
        const LayerParams& P = m_layer_params[size_t(l)];

        // Attention block: the new tokens' keys and values join the cache
        // before attention reads it, so each row sees itself and the rows
        // before it in the chunk.
        if (!(fuse && be.decode_norm_qkv(qkv, m_cache->keys(l), m_cache->values(l), x, m_params->compute(*P.attn_norm),
                                         c.norm_eps, qkv_weight_view(W, layout, l), positions, s, c.rope_theta))) {
            norm_forward(norm_out, x, *P.attn_norm, P.attn_norm_bias, n);
            if (c.qk_norm) {
                be.linear_forward(rows(m_qkv_raw), norm_out, qkv_weight_view(W, layout, l));
                be.qk_norm_forward(qkv, rows(m_qk_rstd), rows(m_qkv_raw), m_params->compute(*P.q_norm),
                                   m_params->compute(*P.k_norm), s, c.norm_eps);
            } else {
                be.linear_forward(qkv, norm_out, qkv_weight_view(W, layout, l));
            }
            be.rope_forward_at(qkv, s, positions, c.rope_theta);
            be.kv_cache_write(m_cache->keys(l), m_cache->values(l), qkv, positions, s);
        }
        if (from_empty_cache)
            be.attention_forward(attn_out, m_lse.sub(0, Shape{batch, c.n_heads, seq}), qkv, s);
        else
            be.attention_decode(attn_out, qkv, m_cache->keys(l), m_cache->values(l), positions, s);
        be.linear_forward(x, attn_out, m_params->compute(*P.o_proj), true);

        // MLP block.
        const bool swiglu = c.mlp == MlpType::swiglu;
        if (!(fuse && swiglu && be.decode_norm_linear(rows(m_mlp_act), x, m_params->compute(*P.mlp_norm), c.norm_eps,
                                                      mlp_in_weight_view(W, layout, l), true))) {
            norm_forward(norm_out, x, *P.mlp_norm, P.mlp_norm_bias, n);
            be.linear_forward(rows(m_mlp_in), norm_out, mlp_in_weight_view(W, layout, l));
            if (swiglu) be.swiglu_forward(rows(m_mlp_act), rows(m_mlp_in));
            else be.gelu_forward(rows(m_mlp_act), rows(m_mlp_in));
        }
        be.linear_forward(x, rows(m_mlp_act), m_params->compute(*P.down_proj), true);
    }
}

void CachedForward::compute_logits(int64_t r, int64_t n, bool every_row, bool fused)
{
    Backend& be = backend();
    if (fused && every_row &&
        be.decode_norm_linear(m_logits.slice_rows(0, r), m_x.slice_rows(0, n), m_params->compute(*m_final_norm),
                              config().norm_eps, m_params->compute(*m_head), false))
        return;
    Tensor x = m_x.slice_rows(0, n);
    if (!every_row) {
        // Gathering rows is an embedding lookup with the residual rows as the table.
        x = m_logit_x.slice_rows(0, r);
        be.embedding_forward(x, m_logit_index.slice_rows(0, r), m_x.slice_rows(0, n));
    }
    const Tensor normed = m_logit_norm.slice_rows(0, r);
    norm_forward(normed, x, *m_final_norm, m_final_norm_bias, r);
    be.linear_forward(m_logits.slice_rows(0, r), normed, m_params->compute(*m_head));
}

CachedForward::~CachedForward() { drop_graphs(); }

void CachedForward::drop_graphs()
{
    for (const auto& [key, graph] : m_graphs) backend().release_graph(graph);
    m_graphs.clear();
    m_warmed.clear();
}

void CachedForward::set_speedups(const Speedups& s)
{
    drop_graphs();   // they hold the kernels of the old settings
    m_speedups = s;
}

void CachedForward::run_device_work(const Chunk& chunk)
{
    auto work = [&] {
        run_layers(chunk.batch, chunk.seq, chunk.from_empty_cache);
        if (chunk.logit_rows == 0) return;
        compute_logits(chunk.logit_rows, chunk.batch * chunk.seq, chunk.every_row,
                       may_fuse(chunk.seq, chunk.from_empty_cache));
        if (chunk.pick)
            backend().argmax_rows(m_pick_ids.slice_rows(0, chunk.logit_rows), m_pick_probs.slice_rows(0, chunk.logit_rows),
                                  m_logits.slice_rows(0, chunk.logit_rows));
    };
    // Decode steps repeat one shape hundreds of times: replay them as a graph.
    // The first step of a shape runs directly (it sizes scratch buffers and
    // builds GEMM plans, which a capture must not do); the second captures.
    // When the backend moves memory a graph baked in, every graph is dropped
    // and relearned the same way.
    const bool decode = chunk.seq == 1 && !chunk.from_empty_cache;
    if (!decode || !m_speedups.graphs) return work();
    if (backend().graph_epoch() != m_graph_epoch) {
        drop_graphs();
        m_graph_epoch = backend().graph_epoch();
    }
    const GraphKey key{chunk.batch, chunk.logit_rows, chunk.every_row ? 1 : 0, chunk.pick ? 1 : 0};
    if (auto it = m_graphs.find(key); it != m_graphs.end()) return backend().replay_graph(it->second);
    if (m_warmed.insert(key).second) return work();
    const int64_t graph = backend().capture_graph(work);
    if (graph == 0) {
        m_speedups.graphs = false;   // this backend has no graphs (or capture failed): stop trying
        return work();
    }
    m_graphs[key] = graph;
    backend().replay_graph(graph);
}

CachedForward::Chunk CachedForward::upload_chunk(std::span<const int32_t> tokens, std::span<const int64_t> counts,
                                                 int64_t seq, std::span<const int64_t> logit_rows)
{
    const int64_t batch = int64_t(counts.size()), n = batch * seq, r = int64_t(logit_rows.size());
    const int32_t vocab = config().vocab_size;
    CRUCIBLE_CHECK(batch >= 1 && batch <= m_cache->max_batch(),
                   "a chunk of " + std::to_string(batch) + " sequences does not fit a KV cache for " +
                       std::to_string(m_cache->max_batch()));
    CRUCIBLE_CHECK(seq >= 1 && n <= m_max_tokens, "a chunk of " + std::to_string(batch) + "×" + std::to_string(seq) +
                                                      " tokens exceeds the " + std::to_string(m_max_tokens) +
                                                      " the generation buffers hold");
    CRUCIBLE_CHECK(int64_t(tokens.size()) == n, "chunk tokens do not match its shape");
    CRUCIBLE_CHECK(r <= m_max_logit_rows, "too many rows of logits asked for in one chunk");

    m_host_tokens.resize(size_t(n));
    m_host_positions.resize(size_t(n));
    bool from_empty_cache = true;
    for (int64_t b = 0; b < batch; ++b) {
        const int64_t count = counts[size_t(b)], length = m_cache->length(b);
        CRUCIBLE_CHECK(count >= 0 && count <= seq, "a sequence's token count must be between 0 and the chunk length");
        if (length + count > m_cache->max_seq())
            throw Error("sequence " + std::to_string(b) + " would grow past the context of " +
                        std::to_string(m_cache->max_seq()) + " tokens");
        if (count > 0 && length > 0) from_empty_cache = false;
        for (int64_t t = 0; t < seq; ++t) {
            const size_t row = size_t(b * seq + t);
            const bool real = t < count;
            if (real && (tokens[row] < 0 || tokens[row] >= vocab))
                throw Error("token id " + std::to_string(tokens[row]) + " is outside the model's vocabulary of " +
                            std::to_string(vocab));
            m_host_tokens[row] = real ? tokens[row] : 0;
            m_host_positions[row] = real ? int32_t(length + t) : -1;
        }
    }
    for (int64_t i = 0; i < r; ++i) {
        const int64_t row = logit_rows[size_t(i)];
        CRUCIBLE_CHECK(row >= 0 && row < n && m_host_positions[size_t(row)] >= 0,
                       "logits asked for a padding row or a row outside the chunk");
    }

    Chunk chunk;
    chunk.batch = batch;
    chunk.seq = seq;
    chunk.logit_rows = r;
    chunk.from_empty_cache = from_empty_cache;
    chunk.every_row = r == n;
    for (int64_t i = 0; i < r && chunk.every_row; ++i) chunk.every_row = logit_rows[size_t(i)] == i;

    // Host data goes up first; the device work reads it from device memory.
    Backend& be = backend();
    be.upload(m_tokens.slice_rows(0, n), m_host_tokens.data(), DType::i32);
    be.upload(m_positions.slice_rows(0, n), m_host_positions.data(), DType::i32);
    if (r > 0 && !chunk.every_row) {
        m_host_index.assign(logit_rows.begin(), logit_rows.end());
        be.upload(m_logit_index.slice_rows(0, r), m_host_index.data(), DType::i32);
    }
    return chunk;
}

void CachedForward::append(std::span<const int32_t> tokens, std::span<const int64_t> counts, int64_t seq,
                           std::span<const int64_t> logit_rows, std::vector<float>& logits)
{
    const Chunk chunk = upload_chunk(tokens, counts, seq, logit_rows);
    run_device_work(chunk);
    for (int64_t b = 0; b < chunk.batch; ++b) m_cache->set_length(b, m_cache->length(b) + counts[size_t(b)]);
    const int64_t r = chunk.logit_rows;
    logits.resize(size_t(r * config().vocab_size));
    if (r > 0) backend().download(logits.data(), DType::f32, m_logits.slice_rows(0, r));
}

void CachedForward::append_greedy(std::span<const int32_t> tokens, std::span<const int64_t> counts, int64_t seq,
                                  std::span<const int64_t> logit_rows, std::vector<int32_t>& ids,
                                  std::vector<float>& probs)
{
    Chunk chunk = upload_chunk(tokens, counts, seq, logit_rows);
    chunk.pick = true;
    run_device_work(chunk);
    for (int64_t b = 0; b < chunk.batch; ++b) m_cache->set_length(b, m_cache->length(b) + counts[size_t(b)]);
    const int64_t r = chunk.logit_rows;
    ids.resize(size_t(r));
    probs.resize(size_t(r));
    if (r == 0) return;
    backend().download(ids.data(), DType::i32, m_pick_ids.slice_rows(0, r));
    backend().download(probs.data(), DType::f32, m_pick_probs.slice_rows(0, r));
}

} // namespace crucible
