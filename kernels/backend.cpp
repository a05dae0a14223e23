// Backend: the checks every op makes once for all backends, then the call of
// the backend's own implementation. The defaults of the optional hooks are
// at the end.
//
// A check failure throws an Error that names the op and the argument and
// says what was expected, in the op's own terms (no source locations: the
// message may reach a user). Messages are built only when a check fails, so
// a decode step's few hundred checks cost a few hundred compares.
#include "kernels/backend.h"

#include "kernels/error.h"

#include <algorithm>
#include <cmath>
#include <new>

namespace crucible {

namespace {

std::string describe(const Tensor& t) { return std::string(dtype_name(t.dtype)) + " " + t.shape.str(); }

bool same_shape(const Tensor& t, const Shape& shape)
{
    return t.numel() == shape.numel() && t.cols() == shape.cols();
}

bool is_float(DType dtype) { return dtype == DType::f32 || dtype == DType::bf16 || dtype == DType::f16; }

// The arguments of one op call.
class Args {
    static constexpr const char* kComputeDtype = "this backend's compute dtype";

public:
    Args(const Backend& backend, const char* op) : m_backend(backend), m_op(op) {}

    [[noreturn]] void fail(const std::string& what) const { throw Error(std::string(m_op) + ": " + what); }

    // Given (an empty tensor is allowed only with no elements) and on this
    // backend's device.
    void given(const Tensor& t, const char* name) const
    {
        if (t.empty()) {
            if (t.numel() != 0) fail(std::string(name) + " is missing");
            return;
        }
        if (t.device != m_backend.device())
            fail(std::string(name) + " is in " + device_name(t.device) + " memory, but this backend computes on " +
                 device_name(m_backend.device()));
    }

    // Given, and of this dtype; `why` explains the dtype in the message.
    void dtype(const Tensor& t, const char* name, DType dtype, const char* why = nullptr) const
    {
        given(t, name);
        if (t.dtype != dtype)
            fail(std::string(name) + " is " + dtype_name(t.dtype) + ", expected " + dtype_name(dtype) +
                 (why ? std::string(" (") + why + ")" : std::string()));
    }

    // dtype, and the shape by element count and last dimension.
    void tensor(const Tensor& t, const char* name, DType dtype, const Shape& shape, const char* why = nullptr) const
    {
        this->dtype(t, name, dtype, why);
        if (!same_shape(t, shape)) fail(std::string(name) + " is " + t.shape.str() + ", expected " + shape.str());
    }

    // An activation or compute-dtype weight.
    void act(const Tensor& t, const char* name) const { dtype(t, name, m_backend.compute_dtype(), kComputeDtype); }
    void act(const Tensor& t, const char* name, const Shape& shape) const
    {
        tensor(t, name, m_backend.compute_dtype(), shape, kComputeDtype);
    }
    void f32(const Tensor& t, const char* name, const Shape& shape) const { tensor(t, name, DType::f32, shape); }
    void i32(const Tensor& t, const char* name, const Shape& shape) const { tensor(t, name, DType::i32, shape); }

    // Optional tensors: checked when given.
    void optional_act(const Tensor& t, const char* name, const Shape& shape) const
    {
        if (!t.empty()) act(t, name, shape);
    }
    void optional_f32(const Tensor& t, const char* name, const Shape& shape) const
    {
        if (!t.empty()) f32(t, name, shape);
    }

    // `correct` of the cross-entropy: i32 or f32 flags.
    void optional_flags(const Tensor& t, const char* name, int64_t rows) const
    {
        if (t.empty()) return;
        given(t, name);
        if (t.dtype != DType::i32 && t.dtype != DType::f32)
            fail(std::string(name) + " is " + dtype_name(t.dtype) + ", expected i32 or f32");
        if (!same_shape(t, Shape{rows})) fail(std::string(name) + " is " + t.shape.str() + ", expected [" +
                                              std::to_string(rows) + "]: one per row of the logits");
    }

    // A compute copy of f32 weights: f32, bf16 or f16, as many elements.
    void optional_compute_copy(const Tensor& t, int64_t elements) const
    {
        if (t.empty()) return;
        given(t, "param_compute");
        if (!is_float(t.dtype))
            fail(std::string("param_compute is ") + dtype_name(t.dtype) + ", expected f32, bf16 or f16");
        if (t.numel() != elements)
            fail("param_compute holds " + std::to_string(t.numel()) + " elements, the parameters " +
                 std::to_string(elements));
    }

    // Equal dtypes copy; f32, bf16 and f16 convert into one another.
    void convertible(DType from, DType to) const
    {
        if (from == to || (is_float(from) && is_float(to))) return;
        fail(std::string("cannot convert ") + dtype_name(from) + " to " + dtype_name(to) +
             ": only f32, bf16 and f16 convert into one another; other dtypes copy as they are");
    }

    // Counts of the attention shape: heads that group evenly, no negative sizes.
    void attention_shape(const AttentionShape& s) const
    {
        if (s.batch < 0 || s.seq < 0) fail("the batch and sequence length must not be negative");
        if (s.n_heads < 1 || s.n_kv_heads < 1 || s.head_dim < 1)
            fail("the attention shape needs at least one query head, one key/value head and head_dim ≥ 1");
        if (s.n_heads % s.n_kv_heads != 0)
            fail("n_heads (" + std::to_string(s.n_heads) + ") must be a multiple of n_kv_heads (" +
                 std::to_string(s.n_kv_heads) + ")");
    }

    void even_head_dim(const AttentionShape& s) const
    {
        if (s.head_dim % 2 != 0) fail("RoPE needs an even head_dim, got " + std::to_string(s.head_dim));
    }

    // Packed qkv of the attention shape: [B·T, (H + 2·KV)·D].
    void qkv(const Tensor& t, const char* name, const AttentionShape& s) const
    {
        act(t, name, Shape{s.tokens(), s.qkv_dim()});
    }

    // A layer's key and value caches [S ≥ B, KV, P, D] for the attention shape.
    void kv_cache(const Tensor& keys, const Tensor& values, const AttentionShape& s) const
    {
        act(keys, "k_cache");
        act(values, "v_cache");
        const Shape& c = keys.shape;
        if (c.rank != 4 || c[0] < s.batch || c[1] != s.n_kv_heads || c[3] != s.head_dim)
            fail("the cache " + c.str() + " does not hold " + std::to_string(s.batch) + " sequences of " +
                 std::to_string(s.n_kv_heads) + " key/value heads of size " + std::to_string(s.head_dim) +
                 " ([slots, heads, positions, head_dim])");
        if (values.shape != c) fail("the value cache " + values.shape.str() + " differs from the key cache " + c.str());
    }

    void positions(const Tensor& t, const AttentionShape& s) const
    {
        dtype(t, "positions", DType::i32);
        if (t.numel() != s.tokens())
            fail("positions " + t.shape.str() + " should hold one per token row (" + std::to_string(s.tokens()) + ")");
    }

private:
    const Backend& m_backend;
    const char* m_op;
};

} // namespace

// ==== transfers =====================================================================

void Backend::upload(Tensor dst, const void* host_src, DType host_dtype)
{
    const Args check(*this, "upload");
    check.given(dst, "the destination");
    check.convertible(host_dtype, dst.dtype);
    if (!host_src && dst.numel() != 0) check.fail("the host source is a null pointer");
    do_upload(dst, host_src, host_dtype);
}

void Backend::download(void* host_dst, DType host_dtype, Tensor src)
{
    const Args check(*this, "download");
    check.given(src, "the source");
    check.convertible(src.dtype, host_dtype);
    if (!host_dst && src.numel() != 0) check.fail("the host destination is a null pointer");
    do_download(host_dst, host_dtype, src);
}

void Backend::convert(Tensor dst, Tensor src)
{
    const Args check(*this, "convert");
    check.given(dst, "the destination");
    check.given(src, "the source");
    check.convertible(src.dtype, dst.dtype);
    if (dst.numel() != src.numel()) check.fail(describe(src) + " does not fit " + describe(dst));
    do_convert(dst, src);
}

void Backend::fill(Tensor dst, float value)
{
    const Args check(*this, "fill");
    check.given(dst, "the destination");
    if (dst.dtype == DType::i32) {
        if (!(value == std::nearbyint(value) && std::fabs(value) < 2147483648.0f))
            check.fail("an i32 tensor takes an integer value, got " + std::to_string(value));
    } else if (!is_float(dst.dtype)) {
        check.fail(std::string("fills f32, bf16, f16 and i32 tensors, not ") + dtype_name(dst.dtype));
    }
    do_fill(dst, value);
}

// ==== elementwise ===================================================================

void Backend::add(Tensor out, Tensor a, Tensor b)
{
    const Args check(*this, "add");
    check.act(out, "out");
    check.act(a, "a");
    check.act(b, "b");
    if (a.numel() != out.numel() || b.numel() != out.numel())
        check.fail("a " + a.shape.str() + " + b " + b.shape.str() + " does not match out " + out.shape.str());
    do_add(out, a, b);
}

void Backend::dropout_scale(Tensor out, Tensor in, float scale, float drop_p, uint64_t seed)
{
    const Args check(*this, "dropout_scale");
    check.act(out, "out");
    check.act(in, "in");
    if (in.numel() != out.numel()) check.fail("in " + in.shape.str() + " does not match out " + out.shape.str());
    if (!(drop_p >= 0.0f && drop_p < 1.0f)) check.fail("the drop probability must be in [0, 1), got " + std::to_string(drop_p));
    if (!std::isfinite(scale)) check.fail("the scale must be finite");
    do_dropout_scale(out, in, scale, drop_p, seed);
}

// ==== training ops ==================================================================

void Backend::embedding_forward(Tensor out, Tensor tokens, Tensor table)
{
    const Args check(*this, "embedding_forward");
    check.dtype(tokens, "tokens", DType::i32);
    check.act(table, "table");
    check.act(out, "out", Shape{tokens.numel(), table.cols()});
    do_embedding_forward(out, tokens, table);
}

void Backend::embedding_backward(Tensor dtable, Tensor tokens, Tensor dout)
{
    const Args check(*this, "embedding_backward");
    check.dtype(dtable, "dtable", DType::f32);
    check.dtype(tokens, "tokens", DType::i32);
    check.act(dout, "dout", Shape{tokens.numel(), dtable.cols()});
    do_embedding_backward(dtable, tokens, dout);
}

void Backend::linear_forward(Tensor out, Tensor in, Tensor weight, bool accumulate)
{
    const Args check(*this, "linear_forward");
    check.act(in, "in");
    check.act(weight, "weight");
    if (weight.cols() != in.cols())
        check.fail("the weight " + weight.shape.str() + " takes rows of " + std::to_string(weight.cols()) +
               " features, the input " + in.shape.str() + " has " + std::to_string(in.cols()));
    check.act(out, "out", Shape{in.rows(), weight.rows()});
    do_linear_forward(out, in, weight, accumulate);
}

void Backend::linear_backward(Tensor din, Tensor dweight, Tensor dout, Tensor in, Tensor weight,
                              bool accumulate_din)
{
    const Args check(*this, "linear_backward");
    check.act(dout, "dout");
    const int64_t m = dout.rows(), n = dout.cols();
    if (!din.empty()) {
        check.act(weight, "weight");
        if (weight.rows() != n)
            check.fail("the weight " + weight.shape.str() + " gives rows of " + std::to_string(weight.rows()) +
                   " features, dout " + dout.shape.str() + " has " + std::to_string(n));
        check.act(din, "din", Shape{m, weight.cols()});
    }
    if (!dweight.empty()) {
        check.act(in, "in");
        if (in.rows() != m)
            check.fail("the input " + in.shape.str() + " has " + std::to_string(in.rows()) + " rows, dout " +
                   dout.shape.str() + " " + std::to_string(m));
        check.f32(dweight, "dweight", Shape{n, in.cols()});
        if (!din.empty() && in.cols() != weight.cols())
            check.fail("the input " + in.shape.str() + " does not match the weight " + weight.shape.str());
    }
    do_linear_backward(din, dweight, dout, in, weight, accumulate_din);
}

namespace {

void check_nf4(const Args& check, const Nf4Weight& w)
{
    if (w.rows < 1 || w.cols < 1) check.fail("the NF4 weight has no elements");
    check.tensor(w.packed, "the NF4 codes", DType::u8, Shape{(w.numel() + 1) / 2});
    check.tensor(w.absmax_codes, "the NF4 absmax codes", DType::u8, Shape{w.blocks()});
    check.tensor(w.absmax_scales, "the NF4 absmax scales", DType::f32,
                 Shape{(w.blocks() + kNf4WeightAbsmaxBlock - 1) / kNf4WeightAbsmaxBlock});
    check.tensor(w.code, "the NF4 absmax code", DType::f32, Shape{256});
    if (!std::isfinite(w.absmax_mean)) check.fail("the NF4 absmax mean is not finite");
}

} // namespace

void Backend::nf4_dequantize(Tensor out, const Nf4Weight& w)
{
    const Args check(*this, "nf4_dequantize");
    check_nf4(check, w);
    check.act(out, "out", Shape{w.rows, w.cols});
    do_nf4_dequantize(out, w);
}

void Backend::nf4_linear_forward(Tensor out, Tensor in, const Nf4Weight& w, int64_t out_col, bool accumulate)
{
    const Args check(*this, "nf4_linear_forward");
    check_nf4(check, w);
    check.act(in, "in");
    if (in.cols() != w.cols)
        check.fail("the weight [" + std::to_string(w.rows) + ", " + std::to_string(w.cols) + "] takes rows of " +
                   std::to_string(w.cols) + " features, the input " + in.shape.str() + " has " +
                   std::to_string(in.cols()));
    check.act(out, "out");
    if (out.rows() != in.rows() || out_col < 0 || out_col + w.rows > out.cols())
        check.fail("out " + out.shape.str() + " has no columns [" + std::to_string(out_col) + ", " +
                   std::to_string(out_col + w.rows) + ") for " + std::to_string(in.rows()) + " rows");
    do_nf4_linear_forward(out, in, w, out_col, accumulate);
}

void Backend::nf4_linear_backward(Tensor din, Tensor dout, const Nf4Weight& w, int64_t dout_col, bool accumulate_din)
{
    const Args check(*this, "nf4_linear_backward");
    check_nf4(check, w);
    check.act(dout, "dout");
    if (dout_col < 0 || dout_col + w.rows > dout.cols())
        check.fail("dout " + dout.shape.str() + " has no columns [" + std::to_string(dout_col) + ", " +
                   std::to_string(dout_col + w.rows) + ")");
    check.act(din, "din", Shape{dout.rows(), w.cols});
    do_nf4_linear_backward(din, dout, w, dout_col, accumulate_din);
}

void Backend::rmsnorm_forward(Tensor out, Tensor rstd, Tensor x, Tensor weight, float eps)
{
    const Args check(*this, "rmsnorm_forward");
    check.act(x, "x");
    check.act(out, "out", x.shape);
    check.f32(rstd, "rstd", Shape{x.rows()});
    check.act(weight, "weight", Shape{x.cols()});
    do_rmsnorm_forward(out, rstd, x, weight, eps);
}

void Backend::rmsnorm_backward(Tensor dx, Tensor dweight, Tensor dout, Tensor x, Tensor weight, Tensor rstd,
                               bool accumulate_dx)
{
    const Args check(*this, "rmsnorm_backward");
    check.act(x, "x");
    check.act(dx, "dx", x.shape);
    check.act(dout, "dout", x.shape);
    check.act(weight, "weight", Shape{x.cols()});
    check.f32(rstd, "rstd", Shape{x.rows()});
    check.optional_f32(dweight, "dweight", Shape{x.cols()});
    do_rmsnorm_backward(dx, dweight, dout, x, weight, rstd, accumulate_dx);
}

void Backend::layernorm_forward(Tensor out, Tensor mean, Tensor rstd, Tensor x, Tensor weight, Tensor bias,
                                float eps)
{
    const Args check(*this, "layernorm_forward");
    check.act(x, "x");
    check.act(out, "out", x.shape);
    check.f32(mean, "mean", Shape{x.rows()});
    check.f32(rstd, "rstd", Shape{x.rows()});
    check.act(weight, "weight", Shape{x.cols()});
    check.act(bias, "bias", Shape{x.cols()});
    do_layernorm_forward(out, mean, rstd, x, weight, bias, eps);
}

void Backend::layernorm_backward(Tensor dx, Tensor dweight, Tensor dbias, Tensor dout, Tensor x, Tensor weight,
                                 Tensor mean, Tensor rstd, bool accumulate_dx)
{
    const Args check(*this, "layernorm_backward");
    check.act(x, "x");
    check.act(dx, "dx", x.shape);
    check.act(dout, "dout", x.shape);
    check.act(weight, "weight", Shape{x.cols()});
    check.f32(mean, "mean", Shape{x.rows()});
    check.f32(rstd, "rstd", Shape{x.rows()});
    check.optional_f32(dweight, "dweight", Shape{x.cols()});
    check.optional_f32(dbias, "dbias", Shape{x.cols()});
    do_layernorm_backward(dx, dweight, dbias, dout, x, weight, mean, rstd, accumulate_dx);
}

void Backend::qk_norm_forward(Tensor qkv_out, Tensor rstd, Tensor qkv_in, Tensor q_weight, Tensor k_weight,
                              const AttentionShape& s, float eps)
{
    const Args check(*this, "qk_norm_forward");
    check.attention_shape(s);
    check.qkv(qkv_in, "qkv_in", s);
    check.qkv(qkv_out, "qkv_out", s);
    check.f32(rstd, "rstd", Shape{s.tokens(), s.n_heads + s.n_kv_heads});
    check.act(q_weight, "q_weight", Shape{s.head_dim});
    check.act(k_weight, "k_weight", Shape{s.head_dim});
    do_qk_norm_forward(qkv_out, rstd, qkv_in, q_weight, k_weight, s, eps);
}

void Backend::qk_norm_backward(Tensor dqkv_in, Tensor dq_weight, Tensor dk_weight, Tensor dqkv_out, Tensor qkv_in,
                               Tensor q_weight, Tensor k_weight, Tensor rstd, const AttentionShape& s)
{
    const Args check(*this, "qk_norm_backward");
    check.attention_shape(s);
    check.qkv(dqkv_in, "dqkv_in", s);
    check.qkv(dqkv_out, "dqkv_out", s);
    check.qkv(qkv_in, "qkv_in", s);
    check.act(q_weight, "q_weight", Shape{s.head_dim});
    check.act(k_weight, "k_weight", Shape{s.head_dim});
    check.f32(rstd, "rstd", Shape{s.tokens(), s.n_heads + s.n_kv_heads});
    check.optional_f32(dq_weight, "dq_weight", Shape{s.head_dim});
    check.optional_f32(dk_weight, "dk_weight", Shape{s.head_dim});
    do_qk_norm_backward(dqkv_in, dq_weight, dk_weight, dqkv_out, qkv_in, q_weight, k_weight, rstd, s);
}

namespace {

void check_rope(const Args& check, const Tensor& qkv, const AttentionShape& s, int64_t pos_offset)
{
    check.attention_shape(s);
    check.even_head_dim(s);
    if (pos_offset < 0) check.fail("the position offset must not be negative, got " + std::to_string(pos_offset));
    check.qkv(qkv, "qkv", s);
}

} // namespace

void Backend::rope_forward(Tensor qkv, const AttentionShape& s, int64_t pos_offset, float theta)
{
    check_rope(Args(*this, "rope_forward"), qkv, s, pos_offset);
    do_rope_forward(qkv, s, pos_offset, theta);
}

void Backend::rope_backward(Tensor dqkv, const AttentionShape& s, int64_t pos_offset, float theta)
{
    check_rope(Args(*this, "rope_backward"), dqkv, s, pos_offset);
    do_rope_backward(dqkv, s, pos_offset, theta);
}

void Backend::attention_forward(Tensor out, Tensor lse, Tensor qkv, const AttentionShape& s)
{
    const Args check(*this, "attention_forward");
    check.attention_shape(s);
    check.qkv(qkv, "qkv", s);
    check.act(out, "out", Shape{s.tokens(), s.q_dim()});
    check.f32(lse, "lse", Shape{s.batch, s.n_heads, s.seq});
    do_attention_forward(out, lse, qkv, s);
}

void Backend::attention_backward(Tensor dqkv, Tensor dout, Tensor qkv, Tensor out, Tensor lse,
                                 const AttentionShape& s)
{
    const Args check(*this, "attention_backward");
    check.attention_shape(s);
    check.qkv(dqkv, "dqkv", s);
    check.qkv(qkv, "qkv", s);
    check.act(dout, "dout", Shape{s.tokens(), s.q_dim()});
    check.act(out, "out", Shape{s.tokens(), s.q_dim()});
    check.f32(lse, "lse", Shape{s.batch, s.n_heads, s.seq});
    do_attention_backward(dqkv, dout, qkv, out, lse, s);
}

namespace {

// gate_up [rows, 2F] holds the gate and up halves of each row.
void check_gate_up(const Args& check, const Tensor& gate_up)
{
    check.act(gate_up, "gate_up");
    if (gate_up.cols() % 2 != 0)
        check.fail("gate_up " + gate_up.shape.str() + " should hold gate and up halves: an even number of columns");
}

} // namespace

void Backend::swiglu_forward(Tensor out, Tensor gate_up)
{
    const Args check(*this, "swiglu_forward");
    check_gate_up(check, gate_up);
    check.act(out, "out", Shape{gate_up.rows(), gate_up.cols() / 2});
    do_swiglu_forward(out, gate_up);
}

void Backend::swiglu_backward(Tensor dgate_up, Tensor dout, Tensor gate_up)
{
    const Args check(*this, "swiglu_backward");
    check_gate_up(check, gate_up);
    check.act(dgate_up, "dgate_up", gate_up.shape);
    check.act(dout, "dout", Shape{gate_up.rows(), gate_up.cols() / 2});
    do_swiglu_backward(dgate_up, dout, gate_up);
}

void Backend::gelu_forward(Tensor out, Tensor in)
{
    const Args check(*this, "gelu_forward");
    check.act(in, "in");
    check.act(out, "out", in.shape);
    do_gelu_forward(out, in);
}

void Backend::gelu_backward(Tensor din, Tensor dout, Tensor in)
{
    const Args check(*this, "gelu_backward");
    check.act(in, "in");
    check.act(din, "din", in.shape);
    check.act(dout, "dout", in.shape);
    do_gelu_backward(din, dout, in);
}

void Backend::softmax_cross_entropy(Tensor losses, Tensor correct, Tensor logits, Tensor targets, float grad_scale,
                                    bool compute_grad)
{
    const Args check(*this, "softmax_cross_entropy");
    check.act(logits, "logits");
    if (logits.cols() < 1) check.fail("the logits " + logits.shape.str() + " have an empty vocabulary");
    const int64_t rows = logits.rows();
    check.f32(losses, "losses", Shape{rows});
    check.i32(targets, "targets", Shape{rows});
    check.optional_flags(correct, "correct", rows);
    do_softmax_cross_entropy(losses, correct, logits, targets, grad_scale, compute_grad);
}

void Backend::classifier(Tensor losses, Tensor correct, Tensor dx, Tensor dweight, Tensor x, Tensor weight,
                         Tensor targets, float grad_scale)
{
    const Args check(*this, "classifier");
    check.act(x, "x");
    check.act(weight, "weight");
    if (weight.cols() != x.cols())
        check.fail("the weight " + weight.shape.str() + " takes rows of " + std::to_string(weight.cols()) +
               " features, x " + x.shape.str() + " has " + std::to_string(x.cols()));
    if (weight.rows() < 1) check.fail("the weight " + weight.shape.str() + " has an empty vocabulary");
    const int64_t n = x.rows();
    check.f32(losses, "losses", Shape{n});
    check.i32(targets, "targets", Shape{n});
    check.optional_flags(correct, "correct", n);
    check.optional_act(dx, "dx", x.shape);
    check.optional_f32(dweight, "dweight", weight.shape);
    do_classifier(losses, correct, dx, dweight, x, weight, targets, grad_scale);
}

// ==== reductions and optimizers =====================================================

double Backend::sum_squares(Tensor x)
{
    Args(*this, "sum_squares").dtype(x, "x", DType::f32);
    return do_sum_squares(x);
}

void Backend::adamw_step(Tensor param, Tensor param_compute, Tensor grad, Tensor m, Tensor v, const AdamWHyper& h)
{
    const Args check(*this, "adamw_step");
    const int64_t n = param.numel();
    check.dtype(param, "param", DType::f32);
    check.dtype(grad, "grad", DType::f32);
    check.dtype(m, "m", DType::f32);
    check.dtype(v, "v", DType::f32);
    if (grad.numel() != n || m.numel() != n || v.numel() != n)
        check.fail("param, grad and the moments m and v must have the same size, got " + param.shape.str() + ", " +
               grad.shape.str() + ", " + m.shape.str() + ", " + v.shape.str());
    check.optional_compute_copy(param_compute, n);
    if (h.step < 1) check.fail("the step counts from 1, got " + std::to_string(h.step));
    do_adamw_step(param, param_compute, grad, m, v, h);
}

void Backend::muon_step(Tensor param, Tensor param_compute, Tensor grad, Tensor momentum, int64_t count,
                        int64_t stride, const MuonHyper& h)
{
    const Args check(*this, "muon_step");
    check.dtype(param, "param", DType::f32);
    if (param.shape.rank != 2) check.fail("param should be a [rows, cols] view of the first matrix, got " + param.shape.str());
    check.f32(grad, "grad", param.shape);
    check.f32(momentum, "momentum", param.shape);
    const int64_t n = param.numel();
    check.optional_compute_copy(param_compute, n);
    if (count < 1) check.fail("count must be at least 1, got " + std::to_string(count));
    if (count > 1 && stride < n)
        check.fail("matrices " + std::to_string(stride) + " elements apart overlap their " + std::to_string(n) +
               " elements");
    if (h.ns_steps < 0) check.fail("ns_steps must not be negative, got " + std::to_string(h.ns_steps));
    do_muon_step(param, param_compute, grad, momentum, count, stride, h);
}

void Backend::newton_schulz(Tensor out, Tensor in, int steps)
{
    const Args check(*this, "newton_schulz");
    check.dtype(in, "in", DType::f32);
    if (in.shape.rank < 2) check.fail("in should be [count, rows, cols] or [rows, cols], got " + in.shape.str());
    check.f32(out, "out", in.shape);
    if (steps < 0) check.fail("steps must not be negative, got " + std::to_string(steps));
    do_newton_schulz(out, in, steps);
}

// ==== KV cache and decode ===========================================================

void Backend::rope_forward_at(Tensor qkv, const AttentionShape& s, Tensor positions, float theta)
{
    const Args check(*this, "rope_forward_at");
    check.attention_shape(s);
    check.even_head_dim(s);
    check.qkv(qkv, "qkv", s);
    check.positions(positions, s);
    do_rope_forward_at(qkv, s, positions, theta);
}

void Backend::kv_cache_write(Tensor k_cache, Tensor v_cache, Tensor qkv, Tensor positions, const AttentionShape& s)
{
    const Args check(*this, "kv_cache_write");
    check.attention_shape(s);
    check.qkv(qkv, "qkv", s);
    check.kv_cache(k_cache, v_cache, s);
    check.positions(positions, s);
    do_kv_cache_write(k_cache, v_cache, qkv, positions, s);
}

void Backend::attention_decode(Tensor out, Tensor qkv, Tensor k_cache, Tensor v_cache, Tensor positions,
                               const AttentionShape& s)
{
    const Args check(*this, "attention_decode");
    check.attention_shape(s);
    check.qkv(qkv, "qkv", s);
    check.act(out, "out", Shape{s.tokens(), s.q_dim()});
    check.kv_cache(k_cache, v_cache, s);
    check.positions(positions, s);
    do_attention_decode(out, qkv, k_cache, v_cache, positions, s);
}

void Backend::argmax_rows(Tensor ids, Tensor probs, Tensor logits, Tensor next_tokens)
{
    const Args check(*this, "argmax_rows");
    check.act(logits, "logits");
    if (logits.shape.rank != 2) check.fail("the logits should be [rows, vocab], got " + logits.shape.str());
    const int64_t rows = logits.shape[0];
    if (logits.shape[1] < 1) check.fail("an empty vocabulary has no choice");
    check.i32(ids, "ids", Shape{rows});
    check.f32(probs, "probs", Shape{rows});
    if (!next_tokens.empty()) check.i32(next_tokens, "next_tokens", Shape{rows});
    do_argmax_rows(ids, probs, logits, next_tokens);
}

// ==== fused decode ==================================================================

bool Backend::decode_norm_qkv(Tensor qkv, Tensor k_cache, Tensor v_cache, Tensor x, Tensor norm_weight, float eps,
                              Tensor weight, Tensor positions, const AttentionShape& s, float theta,
                              const EmbeddingLookup& lookup)
{
    const Args check(*this, "decode_norm_qkv");
    check.attention_shape(s);
    check.even_head_dim(s);
    check.act(x, "x");
    const int64_t model_dim = x.cols();
    if (x.rows() != s.tokens())
        check.fail("x " + x.shape.str() + " should hold one row per token (" + std::to_string(s.tokens()) + ")");
    check.act(norm_weight, "norm_weight", Shape{model_dim});
    check.act(weight, "weight", Shape{s.qkv_dim(), model_dim});
    check.qkv(qkv, "qkv", s);
    check.kv_cache(k_cache, v_cache, s);
    check.positions(positions, s);
    if (!lookup.tokens.empty()) {
        check.i32(lookup.tokens, "the lookup's tokens", Shape{s.tokens()});
        check.act(lookup.table, "the embedding table");
        if (lookup.table.cols() != model_dim)
            check.fail("the embedding table " + lookup.table.shape.str() + " does not give rows of x " + x.shape.str());
    }
    return do_decode_norm_qkv(qkv, k_cache, v_cache, x, norm_weight, eps, weight, positions, s, theta, lookup);
}

bool Backend::decode_norm_linear(Tensor out, Tensor x, Tensor norm_weight, float eps, Tensor weight, bool swiglu)
{
    const Args check(*this, "decode_norm_linear");
    check.act(x, "x");
    check.act(norm_weight, "norm_weight", Shape{x.cols()});
    check.act(weight, "weight");
    if (weight.cols() != x.cols())
        check.fail("the weight " + weight.shape.str() + " takes rows of " + std::to_string(weight.cols()) +
               " features, x " + x.shape.str() + " has " + std::to_string(x.cols()));
    if (swiglu && weight.rows() % 2 != 0)
        check.fail("the weight " + weight.shape.str() + " should stack gate and up: an even number of rows");
    check.act(out, "out", Shape{x.rows(), swiglu ? weight.rows() / 2 : weight.rows()});
    return do_decode_norm_linear(out, x, norm_weight, eps, weight, swiglu);
}

// ==== graphs ========================================================================

int64_t Backend::capture_graph(const std::function<void()>& ops)
{
    if (!ops) Args(*this, "capture_graph").fail("there are no ops to capture");
    return do_capture_graph(ops);
}

void Backend::replay_graph(int64_t graph)
{
    if (graph == 0)
        Args(*this, "replay_graph")
            .fail("0 is no graph: capture_graph() returns 0 when it captured nothing, and the ops then run directly");
    do_replay_graph(graph);
}

// ==== workspace and the defaults of the optional hooks ===============================

void* Backend::workspace(size_t bytes)
{
    if (bytes > m_workspace_bytes) {
        release_workspace();
        m_workspace = allocate(bytes);
        m_workspace_bytes = bytes;
    }
    return m_workspace;
}

void Backend::release_workspace()
{
    if (m_workspace) deallocate(m_workspace);
    m_workspace = nullptr;
    m_workspace_bytes = 0;
}

void* Backend::do_allocate_host(size_t bytes)
{
    if (bytes == 0) return nullptr;
    void* p = ::operator new(bytes, std::nothrow);
    if (!p) throw Error("out of host memory: " + std::to_string(bytes) + " bytes requested");
    return p;
}

void Backend::do_deallocate_host(void* ptr) { ::operator delete(ptr); }

void Backend::do_classifier(Tensor losses, Tensor correct, Tensor dx, Tensor dweight, Tensor x, Tensor weight,
                            Tensor targets, float grad_scale)
{
    const int64_t n = x.rows();
    const int64_t vocab = weight.rows();
    const bool backward = !dx.empty() || !dweight.empty();
    const int64_t chunk = std::min<int64_t>(n, kClassifierChunkRows);
    const DType dt = compute_dtype();
    void* scratch = workspace(dtype_bytes(dt, chunk * vocab));
    for (int64_t begin = 0; begin < n; begin += chunk) {
        const int64_t end = std::min(n, begin + chunk);
        const int64_t rows = end - begin;
        Tensor logits(scratch, dt, Shape{rows, vocab}, device());
        Tensor xs = x.slice_rows(begin, end);
        linear_forward(logits, xs, weight);
        softmax_cross_entropy(losses.slice_rows(begin, end),
                              correct.empty() ? Tensor() : correct.slice_rows(begin, end), logits,
                              targets.slice_rows(begin, end), grad_scale, backward);
        if (backward) {
            linear_backward(dx.empty() ? Tensor() : dx.slice_rows(begin, end), dweight, logits, xs,
                            weight, false);
        }
    }
}

bool Backend::do_decode_norm_qkv(Tensor, Tensor, Tensor, Tensor, Tensor, float, Tensor, Tensor,
                                 const AttentionShape&, float, const EmbeddingLookup&)
{
    return false;
}

bool Backend::do_decode_norm_linear(Tensor, Tensor, Tensor, float, Tensor, bool) { return false; }

int64_t Backend::do_capture_graph(const std::function<void()>&) { return 0; }
uint64_t Backend::do_graph_epoch() const { return 0; }
void Backend::do_replay_graph(int64_t) {}
void Backend::do_release_graph(int64_t) {}

} // namespace crucible
