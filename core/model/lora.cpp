#include "core/model/lora.h"

#include "core/util/rng.h"
#include "kernels/error.h"

#include <algorithm>
#include <cmath>

namespace crucible {

namespace {

struct ModuleShape {
    LayerProjection projection;
    ParamRole role;           // the base weight it adapts
    int64_t row_begin, out, in, stack_rows;
};

ModuleShape module_shape(const std::string& m, const ModelConfig& c)
{
    const int64_t d = c.d_model, q = c.q_dim(), kv = c.kv_dim(), qkv = c.qkv_dim(), f = c.ff_dim;
    const int64_t mlp_in = c.mlp_in_dim();
    const bool swiglu = c.mlp == MlpType::swiglu;
    if (m == "q_proj") return {LayerProjection::qkv, ParamRole::q_proj, 0, q, d, qkv};
    if (m == "k_proj") return {LayerProjection::qkv, ParamRole::k_proj, q, kv, d, qkv};
    if (m == "v_proj") return {LayerProjection::qkv, ParamRole::v_proj, q + kv, kv, d, qkv};
    if (m == "o_proj") return {LayerProjection::o, ParamRole::o_proj, 0, d, q, d};
    if (m == "gate_proj") return {LayerProjection::mlp_in, ParamRole::gate_proj, 0, f, d, mlp_in};
    if (m == "up_proj") return {LayerProjection::mlp_in, ParamRole::up_proj, swiglu ? f : 0, f, d, mlp_in};
    if (m == "down_proj") return {LayerProjection::down, ParamRole::down_proj, 0, d, f, d};
    throw Error("unknown LoRA target module \"" + m + "\"");
}

std::string peft_prefix(int layer, const std::string& module)
{
    const bool attention = module == "q_proj" || module == "k_proj" || module == "v_proj" || module == "o_proj";
    return "base_model.model.model.layers." + std::to_string(layer) + (attention ? ".self_attn." : ".mlp.") + module;
}

// splitmix64 of a few words: independent streams from (seed, call, block).
uint64_t mix(uint64_t a, uint64_t b)
{
    uint64_t z = a ^ (b + 0x9E3779B97F4A7C15ull + (a << 6) + (a >> 2));
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

} // namespace

int64_t lora_parameter_count(const ModelConfig& base, const LoraConfig& config)
{
    int64_t n = 0;
    for (const std::string& m : lora_module_names()) {
        if (!config.targets_module(m)) continue;
        const ModuleShape s = module_shape(m, base);
        n += int64_t(config.rank) * (s.in + s.out);
    }
    return n * base.n_layers;
}

LoraAdapters::LoraAdapters(Backend& backend, const ModelConfig& base, const LoraConfig& config, bool with_grads)
    : m_config(config)
{
    config.validate(base);
    const int64_t r = config.rank;
    std::vector<ParamEntry> entries;
    std::vector<ModuleShape> shapes;
    std::vector<std::string> modules;
    for (int l = 0; l < base.n_layers; ++l) {
        for (const std::string& m : lora_module_names()) {
            if (!config.targets_module(m)) continue;
            const ModuleShape s = module_shape(m, base);
            const std::string p = peft_prefix(l, m);
            entries.push_back(ParamEntry{p + ".lora_A.weight", ParamRole::lora_a, l, Shape{r, s.in}, 0});
            entries.push_back(ParamEntry{p + ".lora_B.weight", ParamRole::lora_b, l, Shape{s.stack_rows, r}, 0});
            shapes.push_back(s);
            modules.push_back(m);
        }
    }
    m_store = std::make_unique<ParamStore>(backend, ParamLayout(base, std::move(entries)), with_grads);
    const auto& e = m_store->layout().entries();
    for (size_t i = 0; i < shapes.size(); ++i) {
        const ModuleShape& s = shapes[i];
        m_blocks.push_back(LoraBlock{modules[i], e[2 * i].layer, s.projection, &e[2 * i], &e[2 * i + 1], s.row_begin,
                                     s.out, s.in});
    }
}

std::vector<const LoraBlock*> LoraAdapters::blocks_of(int layer, LayerProjection projection) const
{
    std::vector<const LoraBlock*> out;
    for (const LoraBlock& b : m_blocks)
        if (b.layer == layer && b.projection == projection) out.push_back(&b);
    return out;
}

void LoraAdapters::initialize(uint64_t seed)
{
    std::vector<float> host(size_t(m_store->layout().total()), 0.0f);
    Rng rng(seed);
    const int64_t r = m_config.rank;
    for (const LoraBlock& b : m_blocks) {
        float* a = host.data() + b.a->offset;
        if (m_config.init == LoraInit::gaussian) {
            const double std = 1.0 / double(r);
            for (int64_t i = 0; i < r * b.in; ++i) a[i] = float(rng.normal() * std);
        } else {
            // kaiming_uniform_(a=√5): gain √(2/(1+5)), bound gain·√(3/fan_in) = 1/√in.
            const double bound = 1.0 / std::sqrt(double(b.in));
            for (int64_t i = 0; i < r * b.in; ++i) a[i] = float((2.0 * rng.uniform() - 1.0) * bound);
        }
        // B stays zero.
    }
    m_store->upload_master(host);
}

int64_t LoraAdapters::trainable_parameters() const
{
    int64_t n = 0;
    for (const LoraBlock& b : m_blocks) n += int64_t(m_config.rank) * (b.in + b.out);
    return n;
}

std::vector<float> LoraAdapters::download_a(const LoraBlock& b) const
{
    std::vector<float> host(size_t(b.a->numel()));
    backend().download(host.data(), DType::f32, m_store->master(*b.a));
    return host;
}

std::vector<float> LoraAdapters::download_b(const LoraBlock& b) const
{
    const int64_t r = m_config.rank;
    std::vector<float> host(size_t(b.out * r));
    backend().download(host.data(), DType::f32, m_store->master(*b.b).slice_rows(b.row_begin, b.row_begin + b.out));
    return host;
}

void LoraAdapters::upload(const std::vector<std::vector<float>>& a, const std::vector<std::vector<float>>& b)
{
    CRUCIBLE_CHECK(a.size() == m_blocks.size() && b.size() == m_blocks.size(), "one A and one B per adapter block");
    std::vector<float> host(size_t(m_store->layout().total()), 0.0f);
    const int64_t r = m_config.rank;
    for (size_t i = 0; i < m_blocks.size(); ++i) {
        const LoraBlock& blk = m_blocks[i];
        CRUCIBLE_CHECK(int64_t(a[i].size()) == r * blk.in && int64_t(b[i].size()) == r * blk.out,
                       "adapter tensor sizes do not match the blocks");
        std::copy(a[i].begin(), a[i].end(), host.begin() + blk.a->offset);
        std::copy(b[i].begin(), b[i].end(), host.begin() + blk.b->offset + blk.row_begin * r);
    }
    m_store->upload_master(host);
}

void LoraAdapters::reserve(int64_t tokens)
{
    if (tokens <= m_scratch_tokens) return;
    const DType dt = backend().compute_dtype();
    const int64_t r = m_config.rank;
    int64_t max_in = 0;
    for (const LoraBlock& b : m_blocks) max_in = std::max(max_in, b.in);
    const bool dropout = !m_store->grads().empty() && m_config.dropout > 0.0f;
    auto carve = [&](Arena& a) {
        m_u = a.take(dt, Shape{tokens, r});
        m_du = a.take(dt, Shape{tokens, r});
        m_x = dropout ? a.take(dt, Shape{tokens, max_in}) : Tensor();
        m_dx = dropout ? a.take(dt, Shape{tokens, max_in}) : Tensor();
    };
    Arena counter;
    carve(counter);
    m_scratch = DeviceBuffer(backend(), counter.used());
    Arena arena(m_scratch, backend().device());
    carve(arena);
    m_scratch_tokens = tokens;
}

uint64_t LoraAdapters::block_seed(const LoraBlock& b) const
{
    return mix(mix(m_dropout_seed, m_dropout_calls), uint64_t(&b - m_blocks.data()));
}

void LoraAdapters::forward(const LoraBlock& b, Tensor out, Tensor in, bool training)
{
    Backend& be = backend();
    const int64_t n = in.rows();
    CRUCIBLE_CHECK(n <= m_scratch_tokens, "LoRA scratch is smaller than the chunk: reserve() it first");
    const Tensor a = m_store->compute(*b.a), bt = m_store->compute(*b.b);
    const Tensor u = m_u.slice_rows(0, n);
    if (drops(training)) {
        const Tensor x = m_x.sub(0, Shape{n, b.in});
        be.dropout_scale(x, in, m_config.scale(), m_config.dropout, block_seed(b));
        be.linear_forward(u, x, a);
    } else {
        be.linear_forward(u, in, a);
        be.dropout_scale(u, u, m_config.scale(), 0.0f, 0);
    }
    be.linear_forward(out, u, bt, true);
}

void LoraAdapters::backward(const LoraBlock& b, Tensor din, Tensor dout, Tensor in, bool training)
{
    Backend& be = backend();
    CRUCIBLE_CHECK(!m_store->grads().empty(), "these adapters were made without gradients");
    const int64_t n = in.rows();
    const Tensor a = m_store->compute(*b.a), bt = m_store->compute(*b.b);
    const Tensor ga = m_store->grad(*b.a), gb = m_store->grad(*b.b);
    const Tensor u = m_u.slice_rows(0, n), du = m_du.slice_rows(0, n);
    const bool dropout = drops(training);
    const Tensor x = dropout ? m_x.sub(0, Shape{n, b.in}) : in;
    // Recompute u = scale·dropout(x)·Aᵀ (cheaper than keeping it per layer).
    if (dropout) {
        be.dropout_scale(x, in, m_config.scale(), m_config.dropout, block_seed(b));
        be.linear_forward(u, x, a);
    } else {
        be.linear_forward(u, in, a);
        be.dropout_scale(u, u, m_config.scale(), 0.0f, 0);
    }
    // dB̃ += doutᵀ·u, then the padding rows are cleared.
    be.linear_backward(Tensor(), gb, dout, u, bt);
    const int64_t stack_rows = b.b->shape[0];
    if (b.row_begin > 0) be.fill(gb.slice_rows(0, b.row_begin), 0.0f);
    if (b.row_begin + b.out < stack_rows) be.fill(gb.slice_rows(b.row_begin + b.out, stack_rows), 0.0f);
    // du = dout·B̃.
    be.linear_backward(du, Tensor(), dout, Tensor(), bt);
    if (dropout) {
        // dA += duᵀ·x̃, dx̃ = du·A, din += scale·mask·dx̃.
        const Tensor dx = m_dx.sub(0, Shape{n, b.in});
        be.linear_backward(dx, ga, du, x, a);
        be.dropout_scale(dx, dx, m_config.scale(), m_config.dropout, block_seed(b));
        be.add(din, din, dx);
    } else {
        // u = scale·x·Aᵀ: dA += scale·duᵀ·x, din += scale·du·A.
        be.dropout_scale(du, du, m_config.scale(), 0.0f, 0);
        be.linear_backward(din, ga, du, in, a, true);
    }
}

void LoraAdapters::merge_into(ParamStore& base) const
{
    std::vector<float> w = base.download_master();
    const int64_t r = m_config.rank;
    const double s = m_config.scale();
    for (const LoraBlock& blk : m_blocks) {
        const std::vector<float> a = download_a(blk), b = download_b(blk);
        const ModuleShape shape = module_shape(blk.module, base.config());
        float* W = w.data() + base.layout().at(shape.role, blk.layer).offset;
        for (int64_t i = 0; i < blk.out; ++i) {
            for (int64_t j = 0; j < blk.in; ++j) {
                double acc = 0.0;
                for (int64_t k = 0; k < r; ++k) acc += double(b[size_t(i * r + k)]) * a[size_t(k * blk.in + j)];
                W[i * blk.in + j] = float(double(W[i * blk.in + j]) + s * acc);
            }
        }
    }
    base.upload_master(w);
}

} // namespace crucible
