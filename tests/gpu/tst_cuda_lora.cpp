// LoRA on CUDA against the CPU reference: dropout_scale draws the same mask
// on both; a fine-tune micro-batch (frozen base, adapters with dropout)
// gives the same loss and adapter gradients (tolerances as
// tst_cuda_training: f32 1e-5 / 1e-4, bf16 1e-2 / 1e-1); and the adapted
// model decodes with the cache as the merged one does.
#include "tests/gpu/gpu_compare.h"

#include "core/generate/cached_forward.h"
#include "core/generate/kv_cache.h"
#include "core/model/lora.h"
#include "core/model/transformer.h"

#include <QtTest>

using namespace crucible;
using namespace crucible::test;

namespace {

ModelConfig tiny()
{
    ModelConfig c;
    c.vocab_size = 384;
    c.n_layers = 2;
    c.seq_len = 64;
    c.d_model = 128;
    c.n_heads = 4;
    c.n_kv_heads = 2;
    c.ff_dim = 256;
    return c;
}

LoraConfig lora_config(const ModelConfig& c)
{
    LoraConfig l;
    l.rank = 8;
    l.alpha = 16.0f;
    l.dropout = 0.1f;
    l.targets = parse_lora_targets("all-linear", c);
    return l;
}

struct Result {
    double loss = 0;
    std::vector<float> grads;
};

Result finetune_step(Backend& be, const ModelConfig& c, const std::vector<int32_t>& tokens,
                     const std::vector<int32_t>& targets, int64_t batch, int64_t seq)
{
    ParamStore base(be, c, false);
    base.initialize(5);
    LoraAdapters lora(be, c, lora_config(c), true);
    lora.initialize(6);
    std::vector<std::vector<float>> a, b;
    uint64_t seed = 50;
    for (const LoraBlock& blk : lora.blocks()) {
        a.push_back(lora.download_a(blk));
        b.push_back(random_vector(size_t(8 * blk.out), seed++, 0.05f));
    }
    lora.upload(a, b);
    lora.set_dropout_seed(3);
    Transformer model(base, batch, seq, true, &lora);
    Result r;
    r.loss = model.train_micro_batch(tokens.data(), targets.data(), batch, seq, 1.0f / float(batch * seq)).mean();
    r.grads = lora.store().download_grads();
    return r;
}

} // namespace

class TestCudaLora : public QObject {
    Q_OBJECT

    std::unique_ptr<Backend> m_cpu, m_f32, m_bf16;

private slots:
    void initTestCase()
    {
        std::string why;
        if (!cuda_available(&why)) QSKIP(("no CUDA device: " + why).c_str());
        m_cpu = make_cpu();
        m_f32 = make_cuda(true);
        m_bf16 = make_cuda(false);
    }

    void dropoutMaskMatchesCpu()
    {
        const int64_t n = 1 << 16;
        const auto x = random_vector(size_t(n), 1, 1.0f);
        OwnedTensor ci(*m_cpu, DType::f32, Shape{n}, x), co(*m_cpu, DType::f32, Shape{n});
        OwnedTensor gi(*m_f32, DType::f32, Shape{n}, x), go(*m_f32, DType::f32, Shape{n});
        m_cpu->dropout_scale(co, ci, 1.5f, 0.3f, 1234);
        m_f32->dropout_scale(go, gi, 1.5f, 0.3f, 1234);
        QVERIFY(co.to_host() == go.to_host());
    }

    void finetuneStepMatchesCpu()
    {
        const ModelConfig c = tiny();
        const int64_t batch = 2, seq = 48;
        const auto tokens = random_ids(size_t(batch * seq), c.vocab_size, 7);
        const auto targets = random_ids(size_t(batch * seq), c.vocab_size, 8);
        const Result ref = finetune_step(*m_cpu, c, tokens, targets, batch, seq);
        for (Backend* gpu : {m_f32.get(), m_bf16.get()}) {
            const bool bf16 = gpu->compute_dtype() == DType::bf16;
            const Result r = finetune_step(*gpu, c, tokens, targets, batch, seq);
            const double loss_err = std::fabs(r.loss - ref.loss) / std::fabs(ref.loss);
            const double grad_err = relative_error(r.grads, ref.grads);
            qInfo("%s: loss rel.err %.2e, adapter gradients rel.err %.2e", bf16 ? "bf16" : "f32", loss_err, grad_err);
            QVERIFY(loss_err <= (bf16 ? 1e-2 : 1e-5));
            QVERIFY(grad_err <= (bf16 ? 1e-1 : 1e-4));
        }
    }

    void cachedDecodeEqualsMerged()
    {
        const ModelConfig c = tiny();
        Backend& be = *m_f32;
        ParamStore base(be, c, false), merged(be, c, false);
        base.initialize(9);
        LoraConfig lc = lora_config(c);
        lc.dropout = 0.0f;
        LoraAdapters lora(be, c, lc, false);
        std::vector<std::vector<float>> a, b;
        uint64_t seed = 90;
        for (const LoraBlock& blk : lora.blocks()) {
            a.push_back(random_vector(size_t(8 * blk.in), seed++, 0.1f));
            b.push_back(random_vector(size_t(8 * blk.out), seed++, 0.1f));
        }
        lora.upload(a, b);
        merged.upload_master(base.download_master());
        lora.merge_into(merged);
        const auto prompt = random_ids(12, c.vocab_size, 4);
        std::vector<float> la, lm;
        for (auto [params, adapters, out] : {std::tuple{&base, &lora, &la}, std::tuple{&merged, (LoraAdapters*)nullptr, &lm}}) {
            KvCache cache(be, c, 1, 32);
            CachedForward gen(*params, cache, 32, 32, adapters);
            std::vector<float> logits;
            gen.append(std::span(prompt).first(8), std::vector<int64_t>{8}, 8, std::vector<int64_t>{7}, logits);
            for (size_t t = 8; t < prompt.size(); ++t)   // decode steps: graphs and fused ops where allowed
                gen.append(std::span(prompt).subspan(t, 1), std::vector<int64_t>{1}, 1, std::vector<int64_t>{0}, logits);
            *out = logits;
        }
        const double err = max_abs_diff(la, lm);
        qInfo("adapters unmerged vs merged: largest logit difference %.2e", err);
        QVERIFY(err < 1e-3);
    }
};

QTEST_APPLESS_MAIN(TestCudaLora)
#include "tst_cuda_lora.moc"
