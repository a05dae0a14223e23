// A whole training micro-batch (Transformer::train_micro_batch: forward,
// classifier, backward) on CUDA against the CPU reference, from the same
// initial weights and tokens: the loss and the gradient of every parameter.
//
// f32 mode: the same arithmetic in another order, 1e-5 on the loss and 1e-4
// per parameter gradient (the backward chains ~10 ops per layer).
// bf16 mode: activations are rounded to bf16 after every op (≈2^-9 relative
// each), and errors accumulate along the residual stream and through the
// backward, so the loss must agree within 1e-2 relative and each gradient
// tensor within 1e-1 relative (typically a few 1e-2; the printed numbers are
// the measured ones). Determinism: two runs in bf16 give bit-identical loss
// and gradients. The backend's memory accounting is checked here too.
#include "tests/gpu/gpu_compare.h"

#include "core/model/param_store.h"
#include "core/model/transformer.h"

#include <QtTest>

#include <cstring>

using namespace crucible;
using namespace crucible::test;

namespace {

ModelConfig tiny(bool variant)
{
    ModelConfig c;
    c.name = variant ? "tiny-variant" : "tiny";
    c.vocab_size = 384;
    c.n_layers = 2;
    c.seq_len = 64;
    if (!variant) {
        c.d_model = 128;   // head_dim 32: the flash kernels
        c.n_heads = 4;
        c.n_kv_heads = 2;
        c.ff_dim = 256;
    } else {
        c.d_model = 192;   // head_dim 48, MQA, every optional block
        c.n_heads = 4;
        c.n_kv_heads = 1;
        c.ff_dim = 320;
        c.norm = NormType::layernorm;
        c.mlp = MlpType::gelu;
        c.qk_norm = true;
        c.tied_embeddings = false;
    }
    return c;
}

struct StepResult {
    double loss = 0;
    std::vector<float> grads;
};

StepResult train_step(Backend& be, const ModelConfig& c, int64_t batch, int64_t seq, const std::vector<int32_t>& tokens,
                      const std::vector<int32_t>& targets)
{
    ParamStore params(be, c, true);
    params.initialize(1234);
    Transformer model(params, batch, seq, true);
    const LossSum l = model.train_micro_batch(tokens.data(), targets.data(), batch, seq, 1.0f / float(batch * seq));
    be.synchronize();
    return StepResult{l.mean(), params.download_grads()};
}

} // namespace

class TestCudaTraining : public QObject {
    Q_OBJECT

private:
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

    void matches_cpu()
    {
        // tiny and tiny-variant cover every block; the presets cover the real
        // sizes (a vocabulary over several classifier chunks, wide MLPs).
        ModelConfig small = preset("small"), nano_wide_vocab = preset("nano");
        nano_wide_vocab.vocab_size = 8192;
        nano_wide_vocab.name = "nano-v8192";
        for (const ModelConfig& c : {tiny(false), tiny(true), preset("nano"), nano_wide_vocab, small}) {
            const int64_t batch = c.vocab_size > 384 ? 2 : 3, seq = std::min<int64_t>(c.seq_len, 200) - 3;
            const auto tokens = random_ids(size_t(batch * seq), c.vocab_size, 7);
            auto targets = random_ids(size_t(batch * seq), c.vocab_size, 8);
            targets[5] = -1;   // ignored positions take part too
            const StepResult ref = train_step(*m_cpu, c, batch, seq, tokens, targets);
            const ParamLayout layout(c);
            for (Backend* gpu : {m_f32.get(), m_bf16.get()}) {
                const bool bf16 = gpu->compute_dtype() == DType::bf16;
                const double loss_tol = bf16 ? 1e-2 : 1e-5, grad_tol = bf16 ? 1e-1 : 1e-4;
                const StepResult got = train_step(*gpu, c, batch, seq, tokens, targets);
                const double loss_err = std::fabs(got.loss - ref.loss) / std::fabs(ref.loss);
                qInfo("%s %s: loss cpu %.6f gpu %.6f rel.err %.2e (limit %.0e)", c.name.c_str(), bf16 ? "bf16" : "f32",
                      ref.loss, got.loss, loss_err, loss_tol);
                QVERIFY2(loss_err <= loss_tol, "loss differs from the CPU");
                double worst = 0;
                std::string worst_name;
                for (const ParamEntry& e : layout.entries()) {
                    const auto begin = size_t(e.offset), end = size_t(e.offset + e.numel());
                    const std::vector<float> a(got.grads.begin() + begin, got.grads.begin() + end);
                    const std::vector<float> b(ref.grads.begin() + begin, ref.grads.begin() + end);
                    const double err = relative_error(a, b);
                    if (err > worst) {
                        worst = err;
                        worst_name = e.name;
                    }
                    QVERIFY2(err <= grad_tol, (e.name + ": gradient relative error " + std::to_string(err)).c_str());
                }
                qInfo("%s %s: worst gradient %s rel.err %.2e (limit %.0e)", c.name.c_str(), bf16 ? "bf16" : "f32",
                      worst_name.c_str(), worst, grad_tol);
            }
        }
    }

    // memory_info() counts this backend's live allocations (what the Train
    // page's memory chart shows each step) and their high-water mark.
    void memory_in_use_is_counted()
    {
        const MemoryInfo before = m_bf16->memory_info();
        QVERIFY(before.total_bytes > 0 && before.free_bytes <= before.total_bytes);
        QVERIFY(before.peak_bytes >= before.used_bytes);
        constexpr size_t kBytes = size_t(96) << 20;
        void* block = m_bf16->allocate(kBytes);
        const MemoryInfo during = m_bf16->memory_info();
        QCOMPARE(during.used_bytes, before.used_bytes + kBytes);
        QVERIFY(during.peak_bytes >= during.used_bytes);
        m_bf16->deallocate(block);
        const MemoryInfo after = m_bf16->memory_info();
        QCOMPARE(after.used_bytes, before.used_bytes);
        QCOMPARE(after.peak_bytes, during.peak_bytes);
        {
            ParamStore params(*m_bf16, tiny(false), true);   // weights, gradients, optimizer state
            QVERIFY(m_bf16->memory_info().used_bytes > before.used_bytes);
        }
        QCOMPARE(m_bf16->memory_info().used_bytes, before.used_bytes);
    }

    void deterministic()
    {
        const ModelConfig c = tiny(false);
        const int64_t batch = 4, seq = 64;
        const auto tokens = random_ids(size_t(batch * seq), c.vocab_size, 9);
        const auto targets = random_ids(size_t(batch * seq), c.vocab_size, 10);
        const StepResult a = train_step(*m_bf16, c, batch, seq, tokens, targets);
        const StepResult b = train_step(*m_bf16, c, batch, seq, tokens, targets);
        QCOMPARE(a.loss, b.loss);
        QVERIFY(a.grads.size() == b.grads.size());
        QVERIFY(std::memcmp(a.grads.data(), b.grads.data(), a.grads.size() * sizeof(float)) == 0);
    }
};

QTEST_APPLESS_MAIN(TestCudaTraining)
#include "tst_cuda_training.moc"
