// Training curves on CUDA track the CPU reference: same initial weights,
// same batches, same optimizer.
//  - nano, 300 steps: CPU, CUDA f32 and CUDA bf16 side by side.
//  - small, its first 24 steps: CPU, CUDA f32 and bf16 step by step.
//  - small, 300 steps: bf16 (flash and naive attention) against f32, whose
//    every op matches the CPU within 1e-5 (tst_op_parity, tst_cuda_training);
//    300 steps of small on the CPU would take this test past its budget.
//
// Tolerance: bf16 rounds every activation to 8 mantissa bits, so single
// steps differ by ~1e-3 in loss and the trajectories drift apart slowly; what
// must hold is that they learn alike. The 20-step moving averages of the
// curves must stay within 0.05 nats of each other past warm-up, and the final
// averages within 1%; f32 must stay within 1e-3 of the CPU. A wrong kernel (a
// missing scale, a bad gradient) changes the curve by far more than that.
#include "core/data/corpus.h"
#include "core/data/dataset.h"
#include "core/data/tokenizer.h"
#include "core/model/transformer.h"
#include "core/optim/lr_schedule.h"
#include "core/optim/optimizer.h"
#include "core/util/paths.h"
#include "kernels/backend_factory.h"

#include <QtTest>

#include <cmath>
#include <memory>

using namespace crucible;

namespace {

struct CurveSetup {
    ModelConfig model;
    int batch = 16;
    int seq = 256;
    int steps = 300;
    int warmup = 20;
    float lr = 2e-3f;
    uint64_t init_seed = 42;
};

struct Backends {
    DeviceKind device = DeviceKind::cuda;
    bool fp32 = false;
    AttentionKind attention = AttentionKind::flash;
};

std::vector<double> train_curve(const Backends& which, const CurveSetup& setup, const Dataset& data)
{
    BackendOptions o;
    o.device = which.device;
    o.cuda_fp32 = which.fp32;
    auto backend = make_backend(o);
    backend->set_attention_kind(which.attention);
    ParamStore params(*backend, setup.model, true);
    params.initialize(setup.init_seed);
    OptimizerConfig oc;
    oc.lr = setup.lr;
    Optimizer optimizer(params, oc);
    Transformer net(params, setup.batch, setup.seq, true);
    Batcher batcher(data, setup.seq, 7);
    ScheduleConfig sc;
    sc.warmup_steps = setup.warmup;
    std::vector<int32_t> tokens(size_t(setup.batch * setup.seq)), targets(tokens.size());
    std::vector<double> losses;
    for (int step = 0; step < setup.steps; ++step) {
        params.zero_grads();
        batcher.next(setup.batch, tokens.data(), targets.data());
        const LossSum l = net.train_micro_batch(tokens.data(), targets.data(), setup.batch, setup.seq,
                                                1.0f / float(tokens.size()));
        optimizer.step(lr_multiplier(sc, step, setup.steps));
        losses.push_back(l.mean());
    }
    return losses;
}

std::vector<double> moving_average(const std::vector<double>& v, size_t window)
{
    std::vector<double> out(v.size());
    double sum = 0;
    for (size_t i = 0; i < v.size(); ++i) {
        sum += v[i];
        if (i >= window) sum -= v[i - window];
        out[i] = sum / double(std::min(i + 1, window));
    }
    return out;
}

double worst_gap(const std::vector<double>& a, const std::vector<double>& b)
{
    double worst = 0;
    for (size_t i = 20; i < a.size(); ++i) worst = std::max(worst, std::abs(a[i] - b[i]));
    return worst;
}

void report(const char* name, const std::vector<double>& c, const std::vector<double>& reference)
{
    qInfo("%-12s loss (20-step mean) at 20/100/200/300: %.4f %.4f %.4f %.4f; worst gap to the reference %.4f", name,
          c[19], c[99], c[199], c.back(), worst_gap(c, reference));
}

Dataset dataset_for(const ModelConfig& model, int seq)
{
    const Corpus corpus = Corpus::embedded_default();
    TokenizerOptions to;
    to.vocab_size = model.vocab_size;
    const Tokenizer tok = Tokenizer::train_cached(tokenizer_training_text(corpus, 0.1), to, default_cache_dir() / "tokenizers");
    return Dataset::build(corpus, tok, 0.1, default_cache_dir() / "tokens", seq);
}

} // namespace

class CudaCurveTest : public QObject {
    Q_OBJECT

private slots:
    void init()
    {
        std::string why;
        if (!cuda_available(&why)) QSKIP(("no CUDA device: " + why).c_str());
    }

    // nano is small enough to train 300 steps on the CPU too: the CUDA f32
    // curve must be the CPU's, the bf16 curve must track it.
    void nanoTracksTheCpu()
    {
        CurveSetup setup{preset("nano"), 16, 128};
        const Dataset data = dataset_for(setup.model, setup.seq);
        const auto cpu = moving_average(train_curve({DeviceKind::cpu}, setup, data), 20);
        const auto f32 = moving_average(train_curve({DeviceKind::cuda, true}, setup, data), 20);
        const auto bf16 = moving_average(train_curve({DeviceKind::cuda, false}, setup, data), 20);
        report("cpu", cpu, cpu);
        report("cuda f32", f32, cpu);
        report("cuda bf16", bf16, cpu);
        QVERIFY(cpu.back() < cpu[19] - 1.0);   // it learned
        QVERIFY2(worst_gap(f32, cpu) < 1e-3, "CUDA f32 leaves the CPU curve");
        QVERIFY2(worst_gap(bf16, cpu) < 0.05, "CUDA bf16 leaves the CPU curve");
    }

    // The first steps of `small` itself, on all three, step by step.
    void smallStartsLikeTheCpu()
    {
        CurveSetup setup{preset("small"), 4, 128, 24, 4};
        const Dataset data = dataset_for(setup.model, setup.seq);
        const auto cpu = train_curve({DeviceKind::cpu}, setup, data);
        const auto f32 = train_curve({DeviceKind::cuda, true}, setup, data);
        const auto bf16 = train_curve({DeviceKind::cuda, false}, setup, data);
        double worst_f32 = 0, worst_bf16 = 0;
        for (size_t i = 0; i < cpu.size(); ++i) {
            qInfo("step %2zu loss cpu %.5f cuda f32 %.5f bf16 %.5f", i, cpu[i], f32[i], bf16[i]);
            worst_f32 = std::max(worst_f32, std::abs(f32[i] - cpu[i]));
            worst_bf16 = std::max(worst_bf16, std::abs(bf16[i] - cpu[i]));
        }
        QVERIFY2(worst_f32 < 1e-3, "CUDA f32 leaves the CPU curve");
        QVERIFY2(worst_bf16 < 0.05, "CUDA bf16 leaves the CPU curve");
    }

    void smallBf16TracksF32()
    {
        // At lr 2e-3 `small` is at the edge of stability: a loss spike near
        // step 10 sends any two runs (two seeds of f32 alike) down different
        // paths, 0.1-0.4 nats apart for a hundred steps. At 1e-3 it trains
        // smoothly (and ends lower), so the curves compare precision alone.
        CurveSetup setup{preset("small"), 16, 256, 300, 20, 1e-3f};
        const Dataset data = dataset_for(setup.model, setup.seq);
        const auto f32 = moving_average(train_curve({DeviceKind::cuda, true}, setup, data), 20);
        const auto bf16 = moving_average(train_curve({DeviceKind::cuda, false}, setup, data), 20);
        const auto naive = moving_average(train_curve({DeviceKind::cuda, false, AttentionKind::naive}, setup, data), 20);
        report("f32", f32, f32);
        report("bf16", bf16, f32);
        report("bf16 naive", naive, f32);
        QVERIFY(bf16.back() < bf16[19] - 1.0);   // it learned
        QVERIFY2(worst_gap(bf16, f32) < 0.05, qPrintable(QString("curves drift apart by %1 nats").arg(worst_gap(bf16, f32))));
        // Naive attention keeps the T×T scores, probabilities and their
        // gradients in bf16, so it trains a little behind (measured on an
        // H100: at worst 0.055 nats, near step 100); a broken one leaves by
        // far more.
        QVERIFY2(worst_gap(naive, f32) < 0.08, "naive attention's curve leaves f32");
        QVERIFY(std::abs(bf16.back() - f32.back()) < 0.01 * f32.back());
    }
};

QTEST_APPLESS_MAIN(CudaCurveTest)
#include "tst_cuda_curve.moc"
