// The trainer's stages on their own, as a fine-tune or a data-parallel
// replica uses them: the step's two halves compose to the whole step, work
// falls due on the configured steps, skipped steps end a run only when they
// come in a row, a checkpoint is written once per step, and the reporter puts
// every record in metrics.jsonl before the sink hears of it.
#include "core/train/periodic_work.h"
#include "core/train/run_reporter.h"
#include "core/train/train_step.h"
#include "core/train/training_setup.h"
#include "core/util/paths.h"
#include "tests/support/test_support.h"

#include <QtTest>

#include <cmath>
#include <filesystem>

namespace fs = std::filesystem;
using namespace crucible;

namespace {

RunConfig tiny_run()
{
    RunConfig c;
    c.model = test::tiny_model(32);
    c.train.batch_size = 2;
    c.train.grad_accum = 2;
    c.train.steps = 10;
    c.train.optimizer.lr = 3e-3f;
    return c;
}

// Everything one device trains with, built by the set-up stage.
struct Replica {
    TrainingDevice device;
    TrainableModel model;
    std::unique_ptr<Batcher> batcher;

    Replica(const RunConfig& c, const TrainingData& data)
    {
        const int seq = c.train.resolved_seq_len(c.model);
        device = open_training_device(backend_options(c.train), c.model, c.train.batch_size, seq);
        model = allocate_model(*device.backend, c.model, c.train, seq);
        model.params->initialize(c.train.seed);
        batcher = std::make_unique<Batcher>(data.dataset, seq, c.train.seed);
    }
};

StepResult step_result(double loss, int64_t tokens, bool skipped)
{
    StepResult r;
    r.loss.loss = loss;
    r.loss.tokens = tokens;
    r.update.skipped = skipped;
    return r;
}

// Records every sink call with the number of metrics.jsonl lines at that moment.
struct OrderSink : TrainingSink {
    fs::path log;
    std::vector<std::pair<std::string, size_t>> calls;
    size_t lines() const
    {
        std::ifstream in(log);
        size_t n = 0;
        for (std::string l; std::getline(in, l);) n += !l.empty();
        return n;
    }
    void on_started(const RunInfo&) override { calls.push_back({"started", lines()}); }
    void on_status(const std::string&) override { calls.push_back({"status", lines()}); }
    void on_step(const StepMetrics&) override { calls.push_back({"step", lines()}); }
    void on_eval(const EvalMetrics&) override { calls.push_back({"eval", lines()}); }
    void on_checkpoint(int64_t, const std::string&) override { calls.push_back({"checkpoint", lines()}); }
    void on_warning(const std::string&) override { calls.push_back({"warning", lines()}); }
    void on_finished(const RunSummary&) override { calls.push_back({"finished", lines()}); }
};

} // namespace

class TrainStagesTest : public QObject {
    Q_OBJECT

    QTemporaryDir m_tmp;
    std::optional<TrainingData> m_data;

    fs::path dir(const char* name) const { return fs::path(m_tmp.path().toStdString()) / name; }

private slots:
    void initTestCase()
    {
        TrainingSink quiet;
        RunReporter reporter(quiet);
        const RunConfig c = tiny_run();
        m_data.emplace(load_training_data(c, c.model.seq_len, std::nullopt, default_cache_dir(), reporter));
    }

    void stepHalvesComposeToTheStep()
    {
        // What a data-parallel replica does (accumulate, then its own work on
        // the gradients, then update) is, with nothing in between, the step.
        const RunConfig c = tiny_run();
        Replica whole(c, *m_data), halves(c, *m_data);
        TrainStep step(c.train.batch_size, c.model.seq_len, c.train.grad_accum);
        for (int i = 0; i < 3; ++i) {
            const double lr = 0.5 + 0.25 * i;
            const StepResult r = step.run(*whole.model.params, *whole.model.model, *whole.batcher,
                                          *whole.model.optimizer, lr);
            const LossSum loss = step.accumulate(*halves.model.params, *halves.model.model, *halves.batcher);
            const std::vector<float> grads = halves.model.params->download_grads();
            const OptimizerStepInfo update = TrainStep::update(*halves.model.optimizer, lr);
            QVERIFY(r.applied());
            QCOMPARE(r.lr_multiplier, lr);
            QVERIFY(r.seconds > 0);
            QCOMPARE(loss.loss, r.loss.loss);
            QCOMPARE(loss.tokens, int64_t(c.train.batch_size) * c.model.seq_len * c.train.grad_accum);
            QCOMPARE(update.grad_norm, r.update.grad_norm);
            QVERIFY(grads == whole.model.params->download_grads());
        }
        QVERIFY(whole.model.params->download_master() == halves.model.params->download_master());
    }

    void accumulateStartsFromZeroGradients()
    {
        // Gradients left over from elsewhere (an evaluation, a previous step)
        // never leak into the next step.
        const RunConfig c = tiny_run();
        Replica a(c, *m_data), b(c, *m_data);
        TrainStep step(c.train.batch_size, c.model.seq_len, c.train.grad_accum);
        step.accumulate(*a.model.params, *a.model.model, *a.batcher);   // leaves gradients behind
        Batcher fresh(m_data->dataset, c.model.seq_len, c.train.seed);
        step.accumulate(*a.model.params, *a.model.model, fresh);
        step.accumulate(*b.model.params, *b.model.model, *b.batcher);
        QVERIFY(a.model.params->download_grads() == b.model.params->download_grads());
    }

    void workFallsDueOnItsSteps()
    {
        TrainConfig tc;
        tc.steps = 12;
        tc.eval_every = 4;
        tc.sample_every = 0;      // with evaluations
        tc.checkpoint_every = 5;
        tc.sample_tokens = 8;
        std::vector<int64_t> evals, samples, checkpoints;
        for (int64_t s = 1; s <= tc.steps; ++s) {
            const DueWork due = work_due_after(tc, s);
            if (due.eval) evals.push_back(s);
            if (due.sample) samples.push_back(s);
            if (due.checkpoint) checkpoints.push_back(s);
        }
        QCOMPARE(evals, (std::vector<int64_t>{4, 8, 12}));
        QCOMPARE(samples, evals);
        QCOMPARE(checkpoints, (std::vector<int64_t>{5, 10, 12}));   // and always the last step
        tc.sample_every = 3;
        QVERIFY(work_due_after(tc, 3).sample && !work_due_after(tc, 4).sample);
        tc.sample_tokens = 0;
        QVERIFY(!work_due_after(tc, 12).sample);
        tc.eval_every = 0;
        tc.checkpoint_every = 0;
        QVERIFY(!work_due_after(tc, 4).eval && !work_due_after(tc, 5).checkpoint);
        QVERIFY(work_due_after(tc, 12).eval && work_due_after(tc, 12).checkpoint);

        TrainerState state;
        QVERIFY(!target_reached(tc, state));
        tc.target_bits_per_byte = 2.0f;
        QVERIFY(!target_reached(tc, state));
        state.last_eval = EvalMetrics{};
        state.last_eval->bits_per_byte = 2.1;
        QVERIFY(!target_reached(tc, state));
        state.last_eval->bits_per_byte = 1.9;
        QVERIFY(target_reached(tc, state));
    }

    void skippedStepsDivergeOnlyInARow()
    {
        using V = DivergenceGuard::Verdict;
        DivergenceGuard guard;
        QCOMPARE(guard.judge(step_result(10, 5, false)), V::applied);
        QCOMPARE(guard.judge(step_result(NAN, 5, false)), V::skipped);
        QCOMPARE(guard.judge(step_result(10, 5, true)), V::skipped);   // a non-finite gradient
        QCOMPARE(guard.judge(step_result(10, 5, false)), V::applied);  // the count starts again
        for (int i = 1; i < DivergenceGuard::kMaxSkippedInARow; ++i)
            QCOMPARE(guard.judge(step_result(INFINITY, 5, false)), V::skipped);
        QCOMPARE(guard.judge(step_result(INFINITY, 5, false)), V::diverged);
        const std::string message = divergence_message(7, 0.5f, "runs/x/checkpoints/step_6");
        QVERIFY(message.find("step 7") != std::string::npos);
        QVERIFY(message.find("learning rate") != std::string::npos);
        QVERIFY(message.find("runs/x/checkpoints/step_6") != std::string::npos);
    }

    void recordStepMeasuresTheStep()
    {
        TrainerState state;
        state.step = 4;
        state.tokens_seen = 1000;
        state.elapsed_s = 2.0;
        StepResult r = step_result(50.0, 100, false);
        r.seconds = 0.5;
        r.lr_multiplier = 0.5;
        r.update.grad_norm = 1.5;
        RunInfo info;
        info.flops_per_token = 1e9;
        info.peak_tflops = 1.0;
        const StepMetrics m = record_step(state, r, 0.01f, info, 12345);
        QCOMPARE(state.step, int64_t(5));
        QCOMPARE(state.tokens_seen, int64_t(1100));
        QCOMPARE(state.elapsed_s, 2.5);
        QCOMPARE(m.step, int64_t(5));
        QCOMPARE(m.loss, 0.5);
        QCOMPARE(m.lr, double(0.01f) * 0.5);
        QCOMPARE(m.grad_norm, 1.5);
        QCOMPARE(m.tokens_per_s, 200.0);
        QCOMPARE(m.mfu, 200.0 * 1e9 / 1e12);
        QCOMPARE(m.memory_bytes, int64_t(12345));
        QCOMPARE(m.elapsed_s, 2.5);
        QCOMPARE(m.tokens_seen, int64_t(1100));
    }

    void checkpointsOncePerStep()
    {
        const RunConfig c = tiny_run();
        Replica r(c, *m_data);
        const RunDirectory run(dir("checkpoints"));
        CheckpointWriter writer;
        TrainerState state;
        state.step = 3;
        const auto first = writer.write(run, state, *r.model.params, m_data->tokenizer, r.model.optimizer.get());
        QVERIFY(first.has_value());
        QCOMPARE(*first, run.checkpoint_dir(3));
        QVERIFY(!writer.write(run, state, *r.model.params, m_data->tokenizer, r.model.optimizer.get()));
        QCOMPARE(writer.latest(), run.checkpoint_dir(3).string());
        QCOMPARE(run.checkpoint_steps(), std::vector<int64_t>{3});
        // Resumed from step 3: that checkpoint is not written again.
        CheckpointWriter resumed;
        resumed.resumed_from(run.checkpoint_dir(3), 3);
        QVERIFY(!resumed.write(run, state, *r.model.params, m_data->tokenizer, r.model.optimizer.get()));
        state.step = 4;
        QVERIFY(resumed.write(run, state, *r.model.params, m_data->tokenizer, r.model.optimizer.get()));
        QCOMPARE(run.checkpoint_steps(), (std::vector<int64_t>{3, 4}));
    }

    void reporterLogsBeforeTheSinkHears()
    {
        // The Runs page reads metrics.jsonl when the GUI hears that a run ended:
        // every record must be on disk by then.
        const fs::path root = dir("reporter");
        fs::create_directories(root);
        OrderSink sink;
        sink.log = RunDirectory(root).metrics_file();
        RunReporter reporter(sink);
        reporter.status("reading the corpus");       // before the log exists: the sink only
        QVERIFY(!reporter.has_log());
        reporter.open_log(sink.log);
        RunInfo info;
        reporter.started(info, false);
        StepMetrics m;
        m.step = 1;
        reporter.step(m);
        EvalMetrics e;
        e.step = 1;
        reporter.eval(e);
        reporter.skipped_update(2, 1);
        reporter.checkpoint(1, "step_1");
        RunSummary summary;
        summary.outcome = RunOutcome::stopped;
        reporter.finished(summary);
        const std::vector<std::pair<std::string, size_t>> expected = {
            {"status", 0}, {"started", 0},   // the start record follows on_started
            {"step", 2},   {"eval", 3},      {"warning", 3},   // the warning record follows on_warning
            {"checkpoint", 5}, {"finished", 6}};
        QCOMPARE(sink.calls, expected);
        const auto records = RunDirectory(root).read_metrics();
        QCOMPARE(records.size(), size_t(6));
        QCOMPARE(records.back()["type"], "finished");
        QCOMPARE(records.back()["outcome"], "stopped");
    }
};

QTEST_APPLESS_MAIN(TrainStagesTest)
#include "tst_train_stages.moc"
