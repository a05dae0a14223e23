#include "core/model/transformer.h"

#include "kernels/error.h"

namespace crucible {

namespace {

const ParamEntry* find_role(const ParamLayout& layout, ParamRole role, int layer)
{
    for (const auto& e : layout.entries())
        if (e.role == role && e.layer == layer) return &e;
    return nullptr;
}

} // namespace

Transformer::Transformer(ParamStore& params, int64_t max_batch, int64_t max_seq, bool training, LoraAdapters* lora,
                         bool grad_checkpoint, const Nf4Base* nf4)
    : m_params(&params), m_lora(lora), m_max_batch(max_batch), m_max_seq(max_seq)
{
    const ModelConfig& c = params.config();
    if (max_batch < 1) throw Error("batch size must be at least 1");
    if (max_seq < 1 || max_seq > c.seq_len)
        throw Error("sequence length must be between 1 and the model's seq_len (" + std::to_string(c.seq_len) + ")");
    if (training && params.grads().empty() && !(lora && !lora->store().grads().empty()))
        throw Error("training needs a ParamStore with gradients, or adapters with gradients");
    if (lora) lora->reserve(max_batch * max_seq);
    m_acts = std::make_unique<Activations>(params.backend(), c, ActivationShape{max_batch, max_seq, training, training && grad_checkpoint});

    const ParamLayout& layout = params.layout();
    for (int l = 0; l < c.n_layers; ++l) {
        m_layer_params.push_back(LayerParams{
            find_role(layout, ParamRole::attn_norm, l), find_role(layout, ParamRole::attn_norm_bias, l),
            find_role(layout, ParamRole::q_norm, l), find_role(layout, ParamRole::k_norm, l),
            find_role(layout, ParamRole::mlp_norm, l), find_role(layout, ParamRole::mlp_norm_bias, l),
            layer_projections(params, lora, l, nf4)});
    }
    m_embedding = &layout.at(ParamRole::embedding);
    m_final_norm = &layout.at(ParamRole::final_norm);
    m_final_norm_bias = find_role(layout, ParamRole::final_norm_bias, -1);
    m_head = &layout.head();
}

void Transformer::check_shape(int64_t batch, int64_t seq) const
{
    CRUCIBLE_CHECK(batch >= 1 && batch <= m_max_batch && seq >= 1 && seq <= m_max_seq,
                   "batch " + std::to_string(batch) + "×" + std::to_string(seq) +
                       " exceeds the allocated " + std::to_string(m_max_batch) + "×" + std::to_string(m_max_seq));
}

void Transformer::upload_tokens(const int32_t* tokens, const int32_t* targets, int64_t n)
{
    const int32_t vocab = config().vocab_size;
    for (int64_t i = 0; i < n; ++i) {
        CRUCIBLE_CHECK(tokens[i] >= 0 && tokens[i] < vocab, "token id out of the vocabulary");
        CRUCIBLE_CHECK(!targets || targets[i] < vocab, "target id out of the vocabulary");
    }
    Backend& be = backend();
    be.upload(rows(m_acts->tokens, n), tokens, DType::i32);
    if (targets) be.upload(rows(m_acts->targets, n), targets, DType::i32);
}

void Transformer::norm_forward(Tensor out, Tensor rstd, Tensor mean, Tensor x, const ParamEntry& w,
                               const ParamEntry* b)
{
    const ModelConfig& c = config();
    Backend& be = backend();
    if (c.norm == NormType::rmsnorm)
        be.rmsnorm_forward(out, rstd, x, m_params->compute(w), c.norm_eps);
    else
        be.layernorm_forward(out, mean, rstd, x, m_params->compute(w), m_params->compute(*b), c.norm_eps);
}

void Transformer::norm_backward(Tensor dx, const ParamEntry& w, const ParamEntry* b, Tensor dout, Tensor x,
                                Tensor rstd, Tensor mean)
{
    Backend& be = backend();
    if (config().norm == NormType::rmsnorm)
        be.rmsnorm_backward(dx, grad(w), dout, x, m_params->compute(w), rstd, true);
    else
        be.layernorm_backward(dx, grad(w), grad(*b), dout, x, m_params->compute(w), mean, rstd, true);
}

void Transformer::forward_layers(int64_t batch, int64_t seq, bool training)
{
    const ModelConfig& c = config();
    Backend& be = backend();
    Activations& A = *m_acts;
    if (training && m_lora) m_lora->begin_training_forward();
    const int64_t n = batch * seq;

    be.embedding_forward(rows(A.residual(0), n), rows(A.tokens, n), m_params->compute(*m_embedding));
    for (int l = 0; l < c.n_layers; ++l) forward_block(l, batch, seq, training, true);
    norm_forward(rows(A.final_norm_out, n), rows(A.final_norm_rstd, n),
                 A.final_norm_mean.empty() ? Tensor() : rows(A.final_norm_mean, n), rows(A.residual(c.n_layers), n),
                 *m_final_norm, m_final_norm_bias);
}

void Transformer::forward_block(int l, int64_t batch, int64_t seq, bool training, bool write_output)
{
    const ModelConfig& c = config();
    Backend& be = backend();
    Activations& A = *m_acts;
    const int64_t n = batch * seq;
    const AttentionShape s{batch, seq, c.n_heads, c.n_kv_heads, c.resolved_head_dim()};
    LayerActivations& L = A.layer(l);
    const LayerParams& P = m_layer_params[size_t(l)];
    const Tensor x = rows(A.residual(l), n);
    const Tensor mid = rows(A.mid(l), n);
    const Tensor qkv = rows(L.qkv, n);

    // Attention block.
    norm_forward(rows(L.norm1_out, n), rows(L.norm1_rstd, n), L.norm1_mean.empty() ? Tensor() : rows(L.norm1_mean, n),
                 x, *P.attn_norm, P.attn_norm_bias);
    if (c.qk_norm) {
        P.proj.qkv.forward(be, rows(L.qkv_raw, n), rows(L.norm1_out, n), false, training);
        be.qk_norm_forward(qkv, rows(L.qk_rstd, n), rows(L.qkv_raw, n), m_params->compute(*P.q_norm),
                           m_params->compute(*P.k_norm), s, c.norm_eps);
    } else {
        P.proj.qkv.forward(be, qkv, rows(L.norm1_out, n), false, training);
    }
    be.rope_forward(qkv, s, 0, c.rope_theta);
    const Tensor lse = L.lse.sub(0, Shape{batch, c.n_heads, seq});
    be.attention_forward(rows(L.attn_out, n), lse, qkv, s);
    be.convert(mid, x);
    P.proj.o.forward(be, mid, rows(L.attn_out, n), true, training);

    // MLP block.
    norm_forward(rows(L.norm2_out, n), rows(L.norm2_rstd, n), L.norm2_mean.empty() ? Tensor() : rows(L.norm2_mean, n),
                 mid, *P.mlp_norm, P.mlp_norm_bias);
    P.proj.mlp_in.forward(be, rows(L.mlp_in, n), rows(L.norm2_out, n), false, training);
    if (c.mlp == MlpType::swiglu) be.swiglu_forward(rows(L.mlp_act, n), rows(L.mlp_in, n));
    else be.gelu_forward(rows(L.mlp_act, n), rows(L.mlp_in, n));
    // A recomputation stops here: the block's output is already kept, and
    // the backward reads only what comes before it.
    if (!write_output) return;
    const Tensor out = rows(A.residual(l + 1), n);
    be.convert(out, mid);
    P.proj.down.forward(be, out, rows(L.mlp_act, n), true, training);
}

int64_t Transformer::layer_begin(int layer) const
{
    const ParamLayout& layout = m_params->layout();
    return layer < config().n_layers ? layout.at(ParamRole::attn_norm, layer).offset
                                     : layout.at(ParamRole::final_norm).offset;
}

void Transformer::backward_layers(int64_t batch, int64_t seq)
{
    const ModelConfig& c = config();
    Backend& be = backend();
    Activations& A = *m_acts;
    const int64_t n = batch * seq;
    const AttentionShape s{batch, seq, c.n_heads, c.n_kv_heads, c.resolved_head_dim()};
    const Tensor dres = rows(A.d_residual, n);
    const Tensor dnorm = rows(A.d_norm, n);

    // The classifier left d(final_norm_out) in d_norm.
    be.fill(dres, 0.0f);
    norm_backward(dres, *m_final_norm, m_final_norm_bias, dnorm, rows(A.residual(c.n_layers), n),
                  rows(A.final_norm_rstd, n), A.final_norm_mean.empty() ? Tensor() : rows(A.final_norm_mean, n));
    if (m_gradients_ready) m_gradients_ready(layer_begin(c.n_layers), m_params->layout().total());

    for (int l = c.n_layers - 1; l >= 0; --l) {
        // Checkpointed: rebuild this layer's activations from its kept input,
        // with the same dropout masks (the forward count has not moved).
        if (A.shape().checkpoint) forward_block(l, batch, seq, true, false);
        LayerActivations& L = A.layer(l);
        const LayerParams& P = m_layer_params[size_t(l)];

        // MLP block: dres holds d(residual(l + 1)).
        P.proj.down.backward(be, rows(A.d_mlp_act, n), dres, rows(L.mlp_act, n), false, true);
        if (c.mlp == MlpType::swiglu) be.swiglu_backward(rows(A.d_mlp_in, n), rows(A.d_mlp_act, n), rows(L.mlp_in, n));
        else be.gelu_backward(rows(A.d_mlp_in, n), rows(A.d_mlp_act, n), rows(L.mlp_in, n));
        P.proj.mlp_in.backward(be, dnorm, rows(A.d_mlp_in, n), rows(L.norm2_out, n), false, true);
        norm_backward(dres, *P.mlp_norm, P.mlp_norm_bias, dnorm, rows(A.mid(l), n), rows(L.norm2_rstd, n),
                      L.norm2_mean.empty() ? Tensor() : rows(L.norm2_mean, n));

        // Attention block: dres holds d(mid(l)).
        P.proj.o.backward(be, rows(A.d_attn, n), dres, rows(L.attn_out, n), false, true);
        const Tensor lse = L.lse.sub(0, Shape{batch, c.n_heads, seq});
        be.attention_backward(rows(A.d_qkv, n), rows(A.d_attn, n), rows(L.qkv, n), rows(L.attn_out, n), lse, s);
        be.rope_backward(rows(A.d_qkv, n), s, 0, c.rope_theta);
        Tensor dqkv_in = rows(A.d_qkv, n);
        if (c.qk_norm) {
            be.qk_norm_backward(rows(A.d_qkv_raw, n), grad(*P.q_norm), grad(*P.k_norm),
                                rows(A.d_qkv, n), rows(L.qkv_raw, n), m_params->compute(*P.q_norm),
                                m_params->compute(*P.k_norm), rows(L.qk_rstd, n), s);
            dqkv_in = rows(A.d_qkv_raw, n);
        }
        P.proj.qkv.backward(be, dnorm, dqkv_in, rows(L.norm1_out, n), false, true);
        norm_backward(dres, *P.attn_norm, P.attn_norm_bias, dnorm, rows(A.residual(l), n), rows(L.norm1_rstd, n),
                      L.norm1_mean.empty() ? Tensor() : rows(L.norm1_mean, n));
        if (m_gradients_ready) m_gradients_ready(layer_begin(l), layer_begin(l + 1));
    }
    if (!m_params->grads().empty()) be.embedding_backward(m_params->grad(*m_embedding), rows(A.tokens, n), dres);
    if (m_gradients_ready) m_gradients_ready(0, layer_begin(0));
}

namespace {

LossSum sum_losses(Backend& be, Tensor losses, Tensor correct, const int32_t* targets, int64_t n)
{
    std::vector<float> host(static_cast<size_t>(n));
    be.download(host.data(), DType::f32, losses);
    LossSum sum;
    for (int64_t i = 0; i < n; ++i) {
        if (targets[i] < 0) continue;
        sum.loss += host[size_t(i)];
        sum.tokens += 1;
    }
    if (!correct.empty()) {
        std::vector<int32_t> hits(static_cast<size_t>(n));
        be.download(hits.data(), DType::i32, correct);
        for (int64_t i = 0; i < n; ++i)
            if (targets[i] >= 0) sum.correct += hits[size_t(i)];
    }
    return sum;
}

} // namespace

LossSum Transformer::train_micro_batch(const int32_t* tokens, const int32_t* targets, int64_t batch, int64_t seq,
                                       float grad_scale)
{
    CRUCIBLE_CHECK(m_acts->shape().training, "this Transformer was built for inference");
    check_shape(batch, seq);
    const int64_t n = batch * seq;
    upload_tokens(tokens, targets, n);
    forward_layers(batch, seq, true);
    Activations& A = *m_acts;
    backend().classifier(rows(A.losses, n), Tensor(), rows(A.d_norm, n), grad(*m_head),
                         rows(A.final_norm_out, n), m_params->compute(*m_head), rows(A.targets, n), grad_scale);
    backward_layers(batch, seq);
    return sum_losses(backend(), rows(A.losses, n), Tensor(), targets, n);
}

LossSum Transformer::evaluate(const int32_t* tokens, const int32_t* targets, int64_t batch, int64_t seq)
{
    check_shape(batch, seq);
    const int64_t n = batch * seq;
    upload_tokens(tokens, targets, n);
    forward_layers(batch, seq, false);
    Activations& A = *m_acts;
    backend().classifier(rows(A.losses, n), rows(A.correct, n), Tensor(), Tensor(), rows(A.final_norm_out, n),
                         m_params->compute(*m_head), rows(A.targets, n), 1.0f);
    return sum_losses(backend(), rows(A.losses, n), rows(A.correct, n), targets, n);
}

void Transformer::last_logits(const int32_t* tokens, int64_t batch, int64_t seq, std::vector<float>& logits)
{
    check_shape(batch, seq);
    const int64_t n = batch * seq, vocab = config().vocab_size;
    upload_tokens(tokens, nullptr, n);
    forward_layers(batch, seq, false);
    Backend& be = backend();
    const DType dt = be.compute_dtype();
    Tensor out(be.workspace(dtype_bytes(dt, batch * vocab)), dt, Shape{batch, vocab}, be.device());
    for (int64_t b = 0; b < batch; ++b) {
        const int64_t last = b * seq + seq - 1;
        be.linear_forward(out.slice_rows(b, b + 1), m_acts->final_norm_out.slice_rows(last, last + 1),
                          m_params->compute(*m_head));
    }
    logits.resize(static_cast<size_t>(batch * vocab));
    be.download(logits.data(), DType::f32, out);
}

} // namespace crucible
