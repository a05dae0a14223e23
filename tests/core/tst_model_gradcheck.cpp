// Whole-model gradient check: the explicit backward of Transformer against
// central finite differences of the loss, for a sample of elements of every
// parameter tensor, in each architectural variant. Also checks that evaluate
// and train_micro_batch agree on the loss and that gradients of micro-batches
// add up to the gradient of the whole batch.
#include "core/model/transformer.h"
#include "core/util/rng.h"
#include "kernels/backend_factory.h"
#include "tests/support/test_support.h"

#include <QTest>

#include <algorithm>
#include <cmath>

using namespace crucible;

namespace {

ModelConfig tiny(bool alternative)
{
    ModelConfig c;
    c.name = alternative ? "layernorm-gelu-qknorm-untied" : "rmsnorm-swiglu";
    c.vocab_size = 260;
    c.d_model = 16;
    c.n_layers = 2;
    c.n_heads = 4;
    c.n_kv_heads = 2;
    c.head_dim = 6;   // q_dim 24 ≠ d_model: o_proj is not square
    c.ff_dim = 20;
    c.seq_len = 8;
    c.rope_theta = 100.0f;
    // Weights well away from zero so that every nonlinearity is exercised
    // and the gradients are large against fp32 rounding of the loss.
    c.init_std = 0.3f;
    if (alternative) {
        c.norm = NormType::layernorm;
        c.mlp = MlpType::gelu;
        c.qk_norm = true;
        c.tied_embeddings = false;
    }
    return c;
}

struct Batch {
    int64_t batch = 0, seq = 0;
    std::vector<int32_t> tokens, targets;
};

Batch random_batch(const ModelConfig& c, int64_t batch, int64_t seq, uint64_t seed)
{
    Batch b{batch, seq, test::random_ids(size_t(batch * seq), c.vocab_size, seed),
            test::random_ids(size_t(batch * seq), c.vocab_size, seed + 1)};
    return b;
}

} // namespace

class TestModelGradcheck : public QObject {
    Q_OBJECT

private slots:
    void initTestCase() { m_backend = make_backend(BackendOptions{}); }

    void gradientsMatchFiniteDifferences_data()
    {
        QTest::addColumn<bool>("alternative");
        QTest::newRow("rmsnorm swiglu tied") << false;
        QTest::newRow("layernorm gelu qk-norm untied") << true;
    }

    void gradientsMatchFiniteDifferences()
    {
        QFETCH(bool, alternative);
        const ModelConfig c = tiny(alternative);
        ParamStore params(*m_backend, c, true);
        params.initialize(21);
        test::perturb_vectors(params, 500, 0.3f);
        const Batch b = random_batch(c, 2, 7, 31);
        Transformer model(params, b.batch, b.seq, true);

        // Gradient of the summed loss (grad_scale 1), the quantity evaluate returns.
        params.zero_grads();
        model.train_micro_batch(b.tokens.data(), b.targets.data(), b.batch, b.seq, 1.0f);
        const std::vector<float> grads = params.download_grads();
        const std::vector<float> theta = params.download_master();

        // Central differences of the fp32 summed loss (14 tokens of ~5.5
        // nats). Its forward-pass rounding is a few 1e-6 absolute, so the
        // quotient carries noise of about 5e-6 / (2·eps), while the truncation
        // error eps²·f'''/6 grows the other way; measured on these models the
        // largest |difference| is 4e-3 at eps 1e-2 (truncation), 2.7e-3 at
        // 1e-3 (noise) and 8e-4 at the balance point eps 3e-3. Weights of size
        // ~0.3 keep the gradients large (up to ~5 per element) against that.
        // Tolerances: 2e-3 absolute plus 1% of the gradient per element, and
        // 2% relative error over each tensor's sample; the worst seen over
        // five seeds was 1.2e-3 and 8e-3. A wrong backward (a missing term, a
        // transposed index, a wrong scale) is off by tens of percent.
        const float eps = 3e-3f;
        const double atol = 2e-3, rtol = 1e-2;
        auto loss_at = [&](size_t index, float value) {
            std::vector<float> p = theta;
            p[index] = value;
            params.upload_master(p);
            return model.evaluate(b.tokens.data(), b.targets.data(), b.batch, b.seq).loss;
        };

        Rng rng(77);
        int checked = 0;
        double worst_abs = 0, largest = 0, worst_sample = 0;
        for (const auto& e : params.layout().entries()) {
            // Embedding rows of tokens absent from the batch only get gradient
            // through a tied head, so sample rows that the batch uses.
            std::vector<int64_t> sample;
            for (int k = 0; k < 6; ++k) {
                int64_t i = int64_t(rng.below(uint64_t(e.numel())));
                if (e.role == ParamRole::embedding) {
                    const int64_t row = b.tokens[rng.below(b.tokens.size())];
                    i = row * c.d_model + int64_t(rng.below(uint64_t(c.d_model)));
                }
                sample.push_back(i);
            }
            std::vector<float> analytic, numeric;
            for (int64_t i : sample) {
                const size_t index = size_t(e.offset + i);
                const double up = loss_at(index, theta[index] + eps);
                const double down = loss_at(index, theta[index] - eps);
                const double fd = (up - down) / (2.0 * double(eps));
                const double g = grads[index];
                worst_abs = std::max(worst_abs, std::fabs(fd - g));
                largest = std::max(largest, std::fabs(g));
                analytic.push_back(float(g));
                numeric.push_back(float(fd));
                QVERIFY2(std::fabs(fd - g) <= atol + rtol * std::max(std::fabs(fd), std::fabs(g)),
                         qPrintable(QString("%1[%2]: backward %3, finite difference %4")
                                        .arg(e.name.c_str()).arg(i).arg(g, 0, 'g', 6).arg(fd, 0, 'g', 6)));
                ++checked;
            }
            // Over the sample, the two agree as vectors too.
            const double err = test::relative_error(analytic, numeric);
            worst_sample = std::max(worst_sample, err);
            QVERIFY2(err <= 2e-2, qPrintable(QString("%1: relative error %2 over the sample")
                                                 .arg(e.name.c_str()).arg(err, 0, 'g', 3)));
        }
        params.upload_master(theta);
        QVERIFY(checked > 0);
        qInfo("%d elements: largest |difference| %.2e (largest gradient %.2e), worst relative error of a tensor's sample %.2e",
              checked, worst_abs, largest, worst_sample);
    }

    void evaluateAndTrainAgreeOnLoss()
    {
        const ModelConfig c = tiny(true);
        ParamStore params(*m_backend, c, true);
        params.initialize(3);
        test::perturb_vectors(params, 40, 0.3f);
        const Batch b = random_batch(c, 3, 8, 5);
        Transformer model(params, b.batch, b.seq, true);

        const LossSum eval = model.evaluate(b.tokens.data(), b.targets.data(), b.batch, b.seq);
        // evaluate computes no gradient.
        const std::vector<float> before = params.download_grads();
        QVERIFY(std::all_of(before.begin(), before.end(), [](float g) { return g == 0.0f; }));
        const LossSum train = model.train_micro_batch(b.tokens.data(), b.targets.data(), b.batch, b.seq, 0.5f);
        QCOMPARE(eval.tokens, int64_t(b.tokens.size()));
        QCOMPARE(train.tokens, eval.tokens);
        QVERIFY2(std::fabs(eval.loss - train.loss) <= 1e-6 * std::fabs(eval.loss),
                 qPrintable(QString("evaluate %1, train %2").arg(eval.loss, 0, 'g', 10).arg(train.loss, 0, 'g', 10)));
        QVERIFY(eval.correct >= 0 && eval.correct <= eval.tokens);

        // Ignored targets (< 0) count neither in the loss nor in the tokens.
        Batch masked = b;
        masked.targets[0] = -1;
        masked.targets[5] = -1;
        const LossSum m = model.evaluate(masked.tokens.data(), masked.targets.data(), b.batch, b.seq);
        QCOMPARE(m.tokens, eval.tokens - 2);
        QVERIFY(m.loss < eval.loss);
    }

    void gradientsAccumulateAcrossMicroBatches()
    {
        for (bool alternative : {false, true}) {
            const ModelConfig c = tiny(alternative);
            ParamStore params(*m_backend, c, true);
            params.initialize(8);
            test::perturb_vectors(params, 80, 0.3f);
            const Batch whole = random_batch(c, 4, 6, 11);
            Transformer model(params, whole.batch, whole.seq, true);
            const float scale = 1.0f / float(whole.tokens.size());

            params.zero_grads();
            const LossSum full =
                model.train_micro_batch(whole.tokens.data(), whole.targets.data(), whole.batch, whole.seq, scale);
            const std::vector<float> expected = params.download_grads();

            // The same four sequences as two micro-batches of two.
            const size_t half = whole.tokens.size() / 2;
            params.zero_grads();
            const LossSum first = model.train_micro_batch(whole.tokens.data(), whole.targets.data(), 2, whole.seq, scale);
            const LossSum second = model.train_micro_batch(whole.tokens.data() + half, whole.targets.data() + half, 2,
                                                           whole.seq, scale);
            const std::vector<float> accumulated = params.download_grads();

            QVERIFY(std::fabs(first.loss + second.loss - full.loss) <= 1e-6 * full.loss);
            // Only the order of fp32 sums differs.
            const double err = test::relative_error(accumulated, expected);
            QVERIFY2(err <= 1e-5, qPrintable(QString("%1: relative error %2").arg(c.name.c_str()).arg(err)));
        }
    }

private:
    std::unique_ptr<Backend> m_backend;
};

QTEST_APPLESS_MAIN(TestModelGradcheck)
#include "tst_model_gradcheck.moc"
