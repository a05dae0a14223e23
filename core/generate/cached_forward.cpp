#include "core/generate/cached_forward.h"

#include "kernels/error.h"

#include <algorithm>
#include <cstring>
#include <string>

namespace crucible {

CachedForward::CachedForward(ParamStore& params, KvCache& cache, int64_t max_tokens, int64_t max_logit_rows,
                             LoraAdapters* lora, const Nf4Base* nf4)
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
            c.qk_norm ? &layout.at(ParamRole::k_norm, l) : nullptr, &layout.at(ParamRole::mlp_norm, l),
            layernorm ? &layout.at(ParamRole::mlp_norm_bias, l) : nullptr, layer_projections(params, lora, l, nf4)});
    }
    if (lora) lora->reserve(m_max_tokens);
    m_embedding = &layout.at(ParamRole::embedding);
    m_final_norm = &layout.at(ParamRole::final_norm);
    m_final_norm_bias = layernorm ? &layout.at(ParamRole::final_norm_bias) : nullptr;
    m_head = &layout.head();

    // Plan with a counting arena, then carve the real one with the same calls.
    const DType dt = params.backend().compute_dtype();
    const int64_t n = m_max_tokens, r = m_max_logit_rows;
    // Picks and inputs of the longest decode burst at the full batch.
    const int64_t burst_rows = kMaxDecodeBurst * cache.max_batch();
    const int64_t pick_rows = std::max(r, burst_rows);
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
        m_logit_x = a.take(dt, Shape{r, c.d_model});
        m_logit_norm = a.take(dt, Shape{r, c.d_model});
        m_logits = a.take(dt, Shape{r, c.vocab_size});
        m_inputs = a.take(DType::i32, Shape{std::max(2 * n + r, 2 * burst_rows)});
    };
    Arena counter;
    carve(counter);
    m_buffer = DeviceBuffer(params.backend(), counter.used());
    Arena arena(m_buffer, params.backend().device());
    carve(arena);
    m_host_inputs = HostBuffer(params.backend(), m_inputs.bytes());
    m_host_picks = HostBuffer(params.backend(), size_t(pick_rows) * (sizeof(int32_t) + sizeof(float)));
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

bool CachedForward::may_fuse(bool from_empty_cache) const
{
    // The backend's fused ops decline shapes they have no kernel for (too
    // many rows, other dtypes), so decode steps and verification chunks
    // both qualify here.
    const ModelConfig& c = config();
    return m_speedups.fused_kernels && !from_empty_cache && c.norm == NormType::rmsnorm && !c.qk_norm;
}

void CachedForward::run_layers(const Chunk& chunk)
{
    const ModelConfig& c = config();
    Backend& be = backend();
    const int64_t batch = chunk.batch, seq = chunk.seq, n = batch * seq;
    const bool from_empty_cache = chunk.from_empty_cache;
    const AttentionShape s{batch, seq, c.n_heads, c.n_kv_heads, c.resolved_head_dim()};
    auto rows = [n](Tensor t) { return t.slice_rows(0, n); };
    const Tensor x = rows(m_x), norm_out = rows(m_norm_out), qkv = rows(m_qkv), attn_out = rows(m_attn_out);
    const Tensor positions = chunk.positions;

    const bool fuse = may_fuse(from_empty_cache);

    const Tensor embedding = m_params->compute(*m_embedding);
    for (int l = 0; l < c.n_layers; ++l) {
        const LayerParams& P = m_layer_params[size_t(l)];

        // Attention block: the new tokens' keys and values join the cache
        // before attention reads it, so each row sees itself and the rows
        // before it in the chunk. The first layer's fused projection also
        // looks the tokens up.
        const Backend::EmbeddingLookup lookup = l == 0 ? Backend::EmbeddingLookup{chunk.tokens, embedding}
                                                       : Backend::EmbeddingLookup{};
        if (!(fuse && !P.proj.qkv.has_adapters() && !P.proj.qkv.is_nf4() &&
              be.decode_norm_qkv(qkv, m_cache->keys(l), m_cache->values(l), x, m_params->compute(*P.attn_norm),
                                 c.norm_eps, P.proj.qkv.weight(), positions, s, c.rope_theta, lookup))) {
            if (l == 0) be.embedding_forward(x, chunk.tokens, embedding);
            norm_forward(norm_out, x, *P.attn_norm, P.attn_norm_bias, n);
            if (c.qk_norm) {
                P.proj.qkv.forward(be, rows(m_qkv_raw), norm_out, false, false);
                be.qk_norm_forward(qkv, rows(m_qk_rstd), rows(m_qkv_raw), m_params->compute(*P.q_norm),
                                   m_params->compute(*P.k_norm), s, c.norm_eps);
            } else {
                P.proj.qkv.forward(be, qkv, norm_out, false, false);
            }
            be.rope_forward_at(qkv, s, positions, c.rope_theta);
            be.kv_cache_write(m_cache->keys(l), m_cache->values(l), qkv, positions, s);
        }
        if (from_empty_cache)
            be.attention_forward(attn_out, m_lse.sub(0, Shape{batch, c.n_heads, seq}), qkv, s);
        else
            be.attention_decode(attn_out, qkv, m_cache->keys(l), m_cache->values(l), positions, s);
        P.proj.o.forward(be, x, attn_out, true, false);

        // MLP block.
        const bool swiglu = c.mlp == MlpType::swiglu;
        if (!(fuse && swiglu && !P.proj.mlp_in.has_adapters() && !P.proj.mlp_in.is_nf4() &&
              be.decode_norm_linear(rows(m_mlp_act), x, m_params->compute(*P.mlp_norm), c.norm_eps,
                                    P.proj.mlp_in.weight(), true))) {
            norm_forward(norm_out, x, *P.mlp_norm, P.mlp_norm_bias, n);
            P.proj.mlp_in.forward(be, rows(m_mlp_in), norm_out, false, false);
            if (swiglu) be.swiglu_forward(rows(m_mlp_act), rows(m_mlp_in));
            else be.gelu_forward(rows(m_mlp_act), rows(m_mlp_in));
        }
        P.proj.down.forward(be, x, rows(m_mlp_act), true, false);
    }
}

void CachedForward::compute_logits(const Chunk& chunk, bool fused)
{
    Backend& be = backend();
    const int64_t r = chunk.logit_rows, n = chunk.batch * chunk.seq;
    const bool every_row = chunk.every_row;
    if (fused && every_row &&
        be.decode_norm_linear(m_logits.slice_rows(0, r), m_x.slice_rows(0, n), m_params->compute(*m_final_norm),
                              config().norm_eps, m_params->compute(*m_head), false))
        return;
    Tensor x = m_x.slice_rows(0, n);
    if (!every_row) {
        // Gathering rows is an embedding lookup with the residual rows as the table.
        x = m_logit_x.slice_rows(0, r);
        be.embedding_forward(x, chunk.logit_index, m_x.slice_rows(0, n));
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

int64_t CachedForward::decode_burst() const
{
    if (m_speedups.decode_burst > 0) return std::min<int64_t>(m_speedups.decode_burst, kMaxDecodeBurst);
    return backend().device() == DeviceKind::cpu ? 1 : 8;
}

void CachedForward::run_chunk(const Chunk& chunk)
{
    run_layers(chunk);
    if (chunk.logit_rows == 0) return;
    compute_logits(chunk, may_fuse(chunk.from_empty_cache));
    if (!chunk.pick) return;
    backend().argmax_rows(chunk.pick_ids, chunk.pick_probs, m_logits.slice_rows(0, chunk.logit_rows), chunk.next_tokens);
}

void CachedForward::run_device_work(std::span<const Chunk> steps)
{
    const Chunk& first = steps.front();
    auto work = [&] {
        backend().upload(first.inputs, m_host_inputs.as<int32_t>(), DType::i32);   // queued: pinned
        for (const Chunk& chunk : steps) run_chunk(chunk);
    };
    m_inputs_in_flight = true;
    // Decode steps repeat one shape hundreds of times (and speculative
    // rounds a few shapes): replay them as graphs.
    // The first step of a shape runs directly (it sizes scratch buffers and
    // builds GEMM plans, which a capture must not do); the second captures.
    // When the backend moves memory a graph baked in, every graph is dropped
    // and relearned the same way.
    const bool repeats = first.seq <= kGraphSeq && !first.from_empty_cache;
    if (!repeats || !m_speedups.graphs) return work();
    if (backend().graph_epoch() != m_graph_epoch) {
        drop_graphs();
        m_graph_epoch = backend().graph_epoch();
    }
    const GraphKey key{first.batch,          first.seq,          first.logit_rows,
                       first.every_row ? 1 : 0, first.pick ? 1 : 0, int64_t(steps.size())};
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

void CachedForward::check_room(int64_t b, int64_t count) const
{
    if (m_cache->length(b) + count > m_cache->max_seq())
        throw Error("sequence " + std::to_string(b) + " would grow past the context of " +
                    std::to_string(m_cache->max_seq()) + " tokens");
}

void CachedForward::check_token(int32_t id) const
{
    if (id < 0 || id >= config().vocab_size)
        throw Error("token id " + std::to_string(id) + " is outside the model's vocabulary of " +
                    std::to_string(config().vocab_size));
}

void CachedForward::release_inputs()
{
    if (m_inputs_in_flight) backend().synchronize();
    m_inputs_in_flight = false;
}

CachedForward::Chunk CachedForward::prepare_chunk(std::span<const int32_t> tokens, std::span<const int64_t> counts,
                                                  int64_t seq, std::span<const int64_t> logit_rows)
{
    const int64_t batch = int64_t(counts.size()), n = batch * seq, r = int64_t(logit_rows.size());
    CRUCIBLE_CHECK(batch >= 1 && batch <= m_cache->max_batch(),
                   "a chunk of " + std::to_string(batch) + " sequences does not fit a KV cache for " +
                       std::to_string(m_cache->max_batch()));
    CRUCIBLE_CHECK(seq >= 1 && n <= m_max_tokens, "a chunk of " + std::to_string(batch) + "×" + std::to_string(seq) +
                                                      " tokens exceeds the " + std::to_string(m_max_tokens) +
                                                      " the generation buffers hold");
    CRUCIBLE_CHECK(int64_t(tokens.size()) == n, "chunk tokens do not match its shape");
    CRUCIBLE_CHECK(r <= m_max_logit_rows, "too many rows of logits asked for in one chunk");

    release_inputs();
    int32_t* host_tokens = m_host_inputs.as<int32_t>();
    int32_t* host_positions = host_tokens + n;
    int32_t* host_index = host_positions + n;

    bool from_empty_cache = true;
    for (int64_t b = 0; b < batch; ++b) {
        const int64_t count = counts[size_t(b)], length = m_cache->length(b);
        CRUCIBLE_CHECK(count >= 0 && count <= seq, "a sequence's token count must be between 0 and the chunk length");
        check_room(b, count);
        if (count > 0 && length > 0) from_empty_cache = false;
        for (int64_t t = 0; t < seq; ++t) {
            const size_t row = size_t(b * seq + t);
            const bool real = t < count;
            if (real) check_token(tokens[row]);
            host_tokens[row] = real ? tokens[row] : 0;
            host_positions[row] = real ? int32_t(length + t) : -1;
        }
    }
    for (int64_t i = 0; i < r; ++i) {
        const int64_t row = logit_rows[size_t(i)];
        CRUCIBLE_CHECK(row >= 0 && row < n && host_positions[row] >= 0,
                       "logits asked for a padding row or a row outside the chunk");
    }

    Chunk chunk;
    chunk.batch = batch;
    chunk.seq = seq;
    chunk.logit_rows = r;
    chunk.from_empty_cache = from_empty_cache;
    chunk.every_row = r == n;
    for (int64_t i = 0; i < r && chunk.every_row; ++i) chunk.every_row = logit_rows[size_t(i)] == i;

    int64_t inputs = 2 * n;
    if (r > 0 && !chunk.every_row) {
        for (int64_t i = 0; i < r; ++i) host_index[i] = int32_t(logit_rows[size_t(i)]);
        chunk.logit_index = m_inputs.sub(inputs, Shape{r});
        inputs += r;
    }
    chunk.inputs = m_inputs.sub(0, Shape{inputs});
    chunk.tokens = m_inputs.sub(0, Shape{n});
    chunk.positions = m_inputs.sub(n, Shape{n});
    const DeviceKind device = backend().device();
    chunk.pick_ids = Tensor(m_host_picks.as<int32_t>(), DType::i32, Shape{r}, device);
    chunk.pick_probs = Tensor(m_host_picks.as<int32_t>() + r, DType::f32, Shape{r}, device);
    return chunk;
}

void CachedForward::append(std::span<const int32_t> tokens, std::span<const int64_t> counts, int64_t seq,
                           std::span<const int64_t> logit_rows, std::vector<float>& logits)
{
    run_append(tokens, counts, seq, logit_rows, &logits, nullptr, nullptr);
}

void CachedForward::append(std::span<const int32_t> tokens, std::span<const int64_t> counts, int64_t seq,
                           std::span<const int64_t> logit_rows, std::vector<float>& logits,
                           std::vector<float>& top_probs)
{
    run_append(tokens, counts, seq, logit_rows, &logits, nullptr, &top_probs);
}

void CachedForward::append_greedy(std::span<const int32_t> tokens, std::span<const int64_t> counts, int64_t seq,
                                  std::span<const int64_t> logit_rows, std::vector<int32_t>& ids,
                                  std::vector<float>& probs)
{
    run_append(tokens, counts, seq, logit_rows, nullptr, &ids, &probs);
}

void CachedForward::run_append(std::span<const int32_t> tokens, std::span<const int64_t> counts, int64_t seq,
                               std::span<const int64_t> logit_rows, std::vector<float>* logits,
                               std::vector<int32_t>* pick_ids, std::vector<float>* pick_probs)
{
    Chunk chunk = prepare_chunk(tokens, counts, seq, logit_rows);
    chunk.pick = pick_ids || pick_probs;
    run_device_work({&chunk, 1});
    for (int64_t b = 0; b < chunk.batch; ++b) m_cache->set_length(b, m_cache->length(b) + counts[size_t(b)]);
    const size_t r = size_t(chunk.logit_rows);
    if (logits) logits->resize(r * size_t(config().vocab_size));
    if (pick_ids) pick_ids->resize(r);
    if (pick_probs) pick_probs->resize(r);
    if (r == 0) return;
    if (logits) backend().download(logits->data(), DType::f32, m_logits.slice_rows(0, int64_t(r)));   // waits
    else release_inputs();
    m_inputs_in_flight = false;   // the device is done: the pinned inputs are free and the picks are in
    if (pick_ids) std::memcpy(pick_ids->data(), chunk.pick_ids.data, r * sizeof(int32_t));
    if (pick_probs) std::memcpy(pick_probs->data(), chunk.pick_probs.data, r * sizeof(float));
}

void CachedForward::decode_greedy(std::span<const int32_t> tokens, int64_t steps, std::vector<int32_t>& ids,
                                  std::vector<float>& probs)
{
    const int64_t batch = int64_t(tokens.size());
    CRUCIBLE_CHECK(batch >= 1 && batch <= m_cache->max_batch(),
                   "a decode burst of " + std::to_string(batch) + " sequences does not fit a KV cache for " +
                       std::to_string(m_cache->max_batch()));
    CRUCIBLE_CHECK(steps >= 1 && steps <= kMaxDecodeBurst,
                   "a decode burst runs 1 to " + std::to_string(kMaxDecodeBurst) + " steps");
    release_inputs();

    // Per step: the batch's tokens (the first step's from the host, later
    // ones written by the previous step's picks), then its positions.
    int32_t* host = m_host_inputs.as<int32_t>();
    for (int64_t b = 0; b < batch; ++b) {
        const int64_t length = m_cache->length(b);
        CRUCIBLE_CHECK(length > 0, "a decode burst continues a cache: run the prompt first");
        check_room(b, steps);
        check_token(tokens[size_t(b)]);
        for (int64_t s = 0; s < steps; ++s) {
            host[s * 2 * batch + b] = s == 0 ? tokens[size_t(b)] : 0;
            host[s * 2 * batch + batch + b] = int32_t(length + s);
        }
    }

    int32_t* pick_ids = m_host_picks.as<int32_t>();
    float* pick_probs = reinterpret_cast<float*>(pick_ids + steps * batch);
    const DeviceKind device = backend().device();
    std::vector<Chunk> chunks(static_cast<size_t>(steps));
    for (int64_t s = 0; s < steps; ++s) {
        Chunk& c = chunks[size_t(s)];
        c.batch = batch;
        c.seq = 1;
        c.logit_rows = batch;
        c.from_empty_cache = false;
        c.every_row = c.pick = true;
        c.tokens = m_inputs.sub(s * 2 * batch, Shape{batch});
        c.positions = m_inputs.sub(s * 2 * batch + batch, Shape{batch});
        c.pick_ids = Tensor(pick_ids + s * batch, DType::i32, Shape{batch}, device);
        c.pick_probs = Tensor(pick_probs + s * batch, DType::f32, Shape{batch}, device);
        if (s + 1 < steps) c.next_tokens = m_inputs.sub((s + 1) * 2 * batch, Shape{batch});
    }
    chunks[0].inputs = m_inputs.sub(0, Shape{steps * 2 * batch});
    run_device_work(chunks);
    for (int64_t b = 0; b < batch; ++b) m_cache->set_length(b, m_cache->length(b) + steps);
    release_inputs();   // and the picks are in
    ids.assign(pick_ids, pick_ids + steps * batch);
    probs.assign(pick_probs, pick_probs + steps * batch);
}

} // namespace crucible
