// Data-parallel training on CPU replicas (threads): N replicas of batch B
// take the step one device takes with batch B and N times the accumulation,
// their weights never drift apart, a run resumes on another number of
// replicas.
#include "core/io/file_util.h"
#include "core/train/load_model.h"
#include "core/train/run_dir.h"
#include "core/train/trainer.h"
#include "tests/support/test_support.h"

#include <QtTest>

#include <filesystem>

namespace fs = std::filesystem;
using namespace crucible;

namespace {

RunConfig tiny_run(int steps)
{
    RunConfig c;
    c.model.name = "tiny";
    c.model.vocab_size = 320;
    c.model.d_model = 64;
    c.model.n_layers = 2;
    c.model.n_heads = 4;
    c.model.n_kv_heads = 2;
    c.model.ff_dim = 128;
    c.model.seq_len = 64;
    c.train.batch_size = 2;
    c.train.grad_accum = 2;
    c.train.steps = steps;
    c.train.eval_every = 0;
    c.train.eval_batches = 2;
    c.train.sample_tokens = 0;
    c.train.schedule.warmup_steps = 1;
    c.train.optimizer.lr = 3e-3f;
    c.train.threads = 2;
    return c;
}

struct StepRecorder : TrainingSink {
    std::vector<StepMetrics> steps;
    std::function<void(const StepMetrics&)> hook;
    void on_step(const StepMetrics& m) override
    {
        steps.push_back(m);
        if (hook) hook(m);
    }
};

RunSummary train(const RunConfig& c, const fs::path& dir, StepRecorder* sink, bool resume = false,
                 std::optional<TrainConfig> placement = std::nullopt)
{
    TrainerOptions o;
    o.run_dir = dir;
    o.resume = resume;
    o.placement = placement;
    Trainer t(c, o, sink);
    return t.run();
}

std::vector<float> final_weights(const fs::path& run)
{
    LoadedModel m = load_model(run, BackendOptions{});
    return m.params->download_master();
}

} // namespace

class DataParallelTest : public QObject {
    Q_OBJECT

private:
    QTemporaryDir m_tmp;
    fs::path dir(const char* name) const { return fs::path(m_tmp.path().toStdString()) / name; }

private slots:
    void replicasTakeTheAccumulatedStep()
    {
        // One device: batch 2 × accumulation 4. Two replicas: batch 2 ×
        // accumulation 2 each. Four replicas: accumulation 1 each.
        RunConfig one = tiny_run(4);
        one.train.grad_accum = 4;
        RunConfig two = tiny_run(4);
        two.train.cpu_replicas = 2;
        RunConfig four = tiny_run(4);
        four.train.grad_accum = 1;
        four.train.cpu_replicas = 4;
        StepRecorder s1, s2, s4;
        QCOMPARE(int(train(one, dir("one"), &s1).outcome), int(RunOutcome::finished));
        QCOMPARE(int(train(two, dir("two"), &s2).outcome), int(RunOutcome::finished));
        QCOMPARE(int(train(four, dir("four"), &s4).outcome), int(RunOutcome::finished));
        QCOMPARE(s2.steps.size(), size_t(4));
        for (size_t i = 0; i < 4; ++i) {
            // Same tokens, same loss: only the order of the float sums differs.
            QCOMPARE(s2.steps[i].tokens_seen, s1.steps[i].tokens_seen);
            QCOMPARE(s4.steps[i].tokens_seen, s1.steps[i].tokens_seen);
            QVERIFY2(std::abs(s2.steps[i].loss - s1.steps[i].loss) < 1e-5 * s1.steps[i].loss,
                     qPrintable(QString("step %1: %2 vs %3").arg(i).arg(s2.steps[i].loss).arg(s1.steps[i].loss)));
            QVERIFY(std::abs(s4.steps[i].loss - s1.steps[i].loss) < 1e-5 * s1.steps[i].loss);
            QVERIFY(std::abs(s2.steps[i].grad_norm - s1.steps[i].grad_norm) < 1e-4 * s1.steps[i].grad_norm);
        }
        const auto w1 = final_weights(dir("one"));
        QVERIFY(test::relative_error(final_weights(dir("two")), w1) < 1e-5);
        QVERIFY(test::relative_error(final_weights(dir("four")), w1) < 1e-5);
    }

    void replicasAreDeterministic()
    {
        // The sums are in rank order: the same run twice gives the same bits.
        RunConfig two = tiny_run(3);
        two.train.cpu_replicas = 2;
        two.train.optimizer.type = OptimizerType::muon;
        StepRecorder a, b;
        train(two, dir("det-a"), &a);
        train(two, dir("det-b"), &b);
        for (size_t i = 0; i < 3; ++i) QCOMPARE(a.steps[i].loss, b.steps[i].loss);
        const auto ck = [&](const char* d) { return RunDirectory(dir(d)).checkpoint_dir(3) / "model.safetensors"; };
        QVERIFY(read_file(ck("det-a")) == read_file(ck("det-b")));
    }

    void resumesOnAnotherNumberOfReplicas()
    {
        // Two replicas of accumulation 1 == one device of accumulation 2: stop
        // the two-replica run halfway, resume it on one replica.
        RunConfig straight = tiny_run(6);
        straight.train.grad_accum = 2;
        StepRecorder s_straight;
        train(straight, dir("straight"), &s_straight);

        RunConfig two = tiny_run(6);
        two.train.grad_accum = 1;
        two.train.cpu_replicas = 2;
        StepRecorder first;
        TrainerOptions o;
        o.run_dir = dir("moved");
        Trainer t(two, o, &first);
        first.hook = [&](const StepMetrics& m) { if (m.step == 3) t.request_stop(); };
        QCOMPARE(int(t.run().outcome), int(RunOutcome::stopped));

        TrainConfig one_replica;
        one_replica.device = "";
        one_replica.cpu_replicas = 1;
        // The global batch halves on one replica unless the accumulation
        // doubles: here it does not, so compare only that training goes on.
        StepRecorder second;
        const RunSummary s = train(two, dir("moved"), &second, true, one_replica);
        QCOMPARE(int(s.outcome), int(RunOutcome::finished));
        QCOMPARE(second.steps.front().step, int64_t(4));
        QCOMPARE(second.steps.front().tokens_seen - first.steps.back().tokens_seen,
                 int64_t(two.train.batch_size) * two.model.seq_len);
        for (size_t i = 0; i < 3; ++i)
            QVERIFY(std::abs(first.steps[i].loss - s_straight.steps[i].loss) < 1e-5 * s_straight.steps[i].loss);
    }

    void badPlacementIsRefused()
    {
        RunConfig c = tiny_run(2);
        c.train.cpu_replicas = 0;
        QVERIFY(train(c, dir("bad"), nullptr).error.find("replicas") != std::string::npos);
        c = tiny_run(2);
        c.train.gpus = {0, 1};   // GPUs on a CPU run
        QVERIFY(train(c, dir("bad"), nullptr).error.find("GPUs") != std::string::npos);
        c.train.device = "cuda";
        c.train.gpus = {1, 1};
        QVERIFY(train(c, dir("bad"), nullptr).error.find("twice") != std::string::npos);
        QVERIFY(!fs::exists(dir("bad")));
    }
};

QTEST_GUILESS_MAIN(DataParallelTest)
#include "tst_data_parallel.moc"
