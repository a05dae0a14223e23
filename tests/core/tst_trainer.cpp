// The training loop end to end on the CPU: checkpoints round-trip, a resumed
// run is bit-identical to an uninterrupted one, bad input is refused without
// touching existing files, stop and divergence keep what was trained.
#include "core/io/file_util.h"
#include "core/io/safetensors.h"
#include "core/train/checkpoint.h"
#include "core/train/load_model.h"
#include "core/train/run_dir.h"
#include "core/train/train_step.h"
#include "core/train/trainer.h"
#include "tests/support/test_support.h"

#include <QtTest>

#include <cmath>
#include <filesystem>

namespace fs = std::filesystem;
using namespace crucible;

namespace {

// A model small enough that a step takes milliseconds.
RunConfig tiny_run(int steps)
{
    RunConfig c;
    c.model = test::tiny_model(64);
    c.train.batch_size = 4;
    c.train.grad_accum = 2;
    c.train.steps = steps;
    c.train.eval_every = 0;
    c.train.eval_batches = 2;
    c.train.sample_tokens = 8;
    c.train.schedule.warmup_steps = 2;
    c.train.optimizer.lr = 3e-3f;
    return c;
}

struct RecordingSink : TrainingSink {
    std::vector<StepMetrics> steps;
    std::vector<EvalMetrics> evals;
    std::vector<std::string> warnings;
    std::function<void(const StepMetrics&)> on_step_hook;
    void on_step(const StepMetrics& m) override
    {
        steps.push_back(m);
        if (on_step_hook) on_step_hook(m);
    }
    void on_eval(const EvalMetrics& e) override { evals.push_back(e); }
    void on_warning(const std::string& w) override { warnings.push_back(w); }
};

RunSummary train(const RunConfig& c, const fs::path& dir, bool resume = false, RecordingSink* sink = nullptr)
{
    TrainerOptions o;
    o.run_dir = dir;
    o.resume = resume;
    Trainer t(c, o, sink);
    return t.run();
}

std::map<fs::path, std::string> snapshot(const fs::path& dir)
{
    std::map<fs::path, std::string> files;
    for (const auto& e : fs::recursive_directory_iterator(dir))
        if (e.is_regular_file()) files[fs::relative(e.path(), dir)] = read_file(e.path());
    return files;
}

} // namespace

class TrainerTest : public QObject {
    Q_OBJECT

private:
    QTemporaryDir m_tmp;
    fs::path dir(const char* name) const { return fs::path(m_tmp.path().toStdString()) / name; }

private slots:
    void runWritesTheRunDirectory()
    {
        RecordingSink sink;
        RunConfig c = tiny_run(4);
        c.train.eval_every = 2;
        const RunSummary s = train(c, dir("basic"), false, &sink);
        QCOMPARE(int(s.outcome), int(RunOutcome::finished));
        QCOMPARE(sink.steps.size(), size_t(4));
        QCOMPARE(sink.evals.size(), size_t(2));
        for (const auto& m : sink.steps) {
            QVERIFY(std::isfinite(m.loss) && m.loss > 0);
            QVERIFY(m.tokens_per_s > 0);
            QVERIFY(m.grad_norm > 0);
        }
        const EvalMetrics& e = sink.evals.back();
        QVERIFY(e.bits_per_byte > 0 && e.perplexity > 1 && e.accuracy >= 0 && e.accuracy <= 1);
        QVERIFY(std::abs(e.perplexity - std::exp(e.loss)) < 1e-6 * e.perplexity);
        RunDirectory run(dir("basic"));
        QVERIFY(run.exists());
        QCOMPARE(run.checkpoint_steps(), std::vector<int64_t>{4});
        for (const char* f : {"model.safetensors", "config.json", "optimizer.safetensors", "trainer_state.json",
                              "tokenizer.model"})
            QVERIFY2(fs::exists(run.checkpoint_dir(4) / f), f);
        const auto metrics = run.read_metrics();
        int step_lines = 0;
        for (const auto& m : metrics) step_lines += m["type"] == "step";
        QCOMPARE(step_lines, 4);
        // The saved config reads back as the one we ran.
        QCOMPARE(to_json(run.read_config()), to_json(c));
    }

    void checkpointRoundTrip()
    {
        const fs::path ck = RunDirectory(dir("basic")).checkpoint_dir(4);
        LoadedModel m = load_model(dir("basic"), BackendOptions{});
        QCOMPARE(m.step, int64_t(4));
        QCOMPARE(m.checkpoint, ck);
        // Save what was loaded elsewhere: the weights file is byte-identical.
        const fs::path copy = dir("roundtrip");
        save_checkpoint(copy, *m.params, m.tokenizer, nullptr, nullptr);
        QCOMPARE(read_file(copy / "model.safetensors"), read_file(ck / "model.safetensors"));
        QCOMPARE(read_file(copy / "tokenizer.model"), read_file(ck / "tokenizer.model"));
    }

    void resumeIsBitExact()
    {
        // 6 steps straight == 3 steps, a checkpoint, then 3 more after resuming.
        RecordingSink straight_sink, second_half;
        RunConfig c6 = tiny_run(6);
        c6.train.optimizer.type = OptimizerType::muon;
        QCOMPARE(int(train(c6, dir("straight"), false, &straight_sink).outcome), int(RunOutcome::finished));
        RunConfig c3 = c6;
        c3.train.steps = 3;
        // The schedule must be the 6-step one in both halves: train 3 of 6 by stopping.
        RecordingSink first_half;
        TrainerOptions o;
        o.run_dir = dir("halves");
        Trainer t(c6, o, &first_half);
        first_half.on_step_hook = [&](const StepMetrics& m) { if (m.step == 3) t.request_stop(); };
        QCOMPARE(int(t.run().outcome), int(RunOutcome::stopped));
        QCOMPARE(RunDirectory(dir("halves")).checkpoint_steps(), std::vector<int64_t>{3});
        QCOMPARE(int(train(c6, dir("halves"), true, &second_half).outcome), int(RunOutcome::finished));

        QCOMPARE(second_half.steps.size(), size_t(3));
        for (size_t i = 0; i < 3; ++i) {
            QCOMPARE(first_half.steps[i].loss, straight_sink.steps[i].loss);
            QCOMPARE(second_half.steps[i].loss, straight_sink.steps[i + 3].loss);
            QCOMPARE(second_half.steps[i].grad_norm, straight_sink.steps[i + 3].grad_norm);
        }
        const fs::path a = RunDirectory(dir("straight")).checkpoint_dir(6);
        const fs::path b = RunDirectory(dir("halves")).checkpoint_dir(6);
        QVERIFY(read_file(a / "model.safetensors") == read_file(b / "model.safetensors"));
        QVERIFY(read_file(a / "optimizer.safetensors") == read_file(b / "optimizer.safetensors"));
    }

    void resumeCanExtendSteps()
    {
        RunConfig more = tiny_run(6);
        RecordingSink sink;
        const RunSummary s = train(more, dir("basic"), true, &sink);
        QCOMPARE(int(s.outcome), int(RunOutcome::finished));
        QCOMPARE(sink.steps.front().step, int64_t(5));
        QCOMPARE(RunDirectory(dir("basic")).read_config().train.steps, 4);   // config.json untouched
        // Resuming a finished run without more steps is refused with advice.
        const RunSummary again = train(tiny_run(6), dir("basic"), true);
        QCOMPARE(int(again.outcome), int(RunOutcome::failed));
        QVERIFY(again.error.find("--steps") != std::string::npos);
    }

    void existingRunIsNeverOverwritten()
    {
        const auto before = snapshot(dir("straight"));
        const RunSummary s = train(tiny_run(2), dir("straight"));
        QCOMPARE(int(s.outcome), int(RunOutcome::failed));
        QVERIFY(s.error.find("already exists") != std::string::npos);
        QVERIFY(snapshot(dir("straight")) == before);
    }

    void invalidConfigIsRefused()
    {
        RunConfig c = tiny_run(2);
        c.model.n_kv_heads = 3;   // 4 heads cannot be split into 3 groups
        const RunSummary s = train(c, dir("invalid"));
        QCOMPARE(int(s.outcome), int(RunOutcome::failed));
        QVERIFY(s.error.find("divisible") != std::string::npos);
        QVERIFY(!fs::exists(dir("invalid")));
        c = tiny_run(2);
        c.train.batch_size = 0;
        QVERIFY(train(c, dir("invalid")).error.find("batch size") != std::string::npos);
        c = tiny_run(2);
        c.train.device = "tpu";
        QVERIFY(train(c, dir("invalid")).error.find("device") != std::string::npos);
    }

    void badDataIsRefused()
    {
        const fs::path empty = dir("empty.txt"), binary = dir("blob.bin");
        write_file_atomic(empty, "");
        write_file_atomic(binary, std::string("\x7f" "ELF\0\0\0\x01\x02", 9) + std::string(2000, '\0'));
        RunConfig c = tiny_run(2);
        c.data.paths = {empty.string()};
        RunSummary s = train(c, dir("empty_run"));
        QCOMPARE(int(s.outcome), int(RunOutcome::failed));
        QVERIFY2(s.error.find("empty") != std::string::npos, s.error.c_str());
        c.data.paths = {binary.string()};
        s = train(c, dir("binary_run"));
        QCOMPARE(int(s.outcome), int(RunOutcome::failed));
        QVERIFY2(s.error.find("blob.bin") != std::string::npos, s.error.c_str());
        c.data.paths = {dir("missing.txt").string()};
        s = train(c, dir("missing_run"));
        QVERIFY2(s.error.find("not found") != std::string::npos, s.error.c_str());
    }

    void corruptCheckpointIsRefusedOnResume()
    {
        const fs::path run = dir("corrupt");
        QCOMPARE(int(train(tiny_run(2), run).outcome), int(RunOutcome::finished));
        const fs::path model = RunDirectory(run).checkpoint_dir(2) / "model.safetensors";
        std::string bytes = read_file(model);
        write_file_atomic(model, bytes.substr(0, bytes.size() / 2));   // truncated
        const auto before = snapshot(run);
        const RunSummary s = train(tiny_run(4), run, true);
        QCOMPARE(int(s.outcome), int(RunOutcome::failed));
        QVERIFY2(s.error.find("model.safetensors") != std::string::npos, s.error.c_str());
        QVERIFY(snapshot(run) == before);
    }

    void nonFiniteWeightsAreRefusedOnResume()
    {
        // Poison one weight of a checkpoint with NaN: resuming would make
        // every loss NaN, so the checkpoint is refused as it loads, with a
        // message naming it, and the files stay as they were.
        const fs::path run = dir("nan");
        QCOMPARE(int(train(tiny_run(2), run).outcome), int(RunOutcome::finished));
        const fs::path model = RunDirectory(run).checkpoint_dir(2) / "model.safetensors";
        {
            SafetensorsReader reader(model);
            SafetensorsWriter writer;
            for (const auto& e : reader.entries()) {
                std::vector<float> values(size_t(e.numel()));
                reader.read_f32(e.name, e.shape, values.data());
                if (e.name == "model.layers.0.self_attn.q_proj.weight") values[7] = NAN;
                writer.add_f32(e.name, e.shape, values.data());
            }
            writer.write(model);
        }
        const auto before = snapshot(run);
        RecordingSink sink;
        const RunSummary s = train(tiny_run(10), run, true, &sink);
        QCOMPARE(int(s.outcome), int(RunOutcome::failed));
        QVERIFY2(s.error.find("not finite") != std::string::npos, s.error.c_str());
        QVERIFY2(s.error.find(model.string()) != std::string::npos, s.error.c_str());
        QVERIFY(sink.steps.empty());
        QVERIFY(snapshot(run) == before);
    }

    void nonFiniteLossEndsTheRunWithAdvice()
    {
        // Weight decay of lr × wd = 98 multiplies the weights by -97 a step:
        // they overflow, every loss after that is NaN, each update is
        // skipped, and after a few in a row the run ends with a message that
        // says what to change and names a checkpoint with finite weights.
        RunConfig c = tiny_run(40);
        c.train.optimizer.lr = 9.9f;
        c.train.optimizer.weight_decay = 9.9f;
        c.train.optimizer.grad_clip = 0.0f;
        c.train.schedule.warmup_steps = 0;
        c.train.checkpoint_every = 1;
        RecordingSink sink;
        const RunSummary s = train(c, dir("blown_up"), false, &sink);
        QCOMPARE(int(s.outcome), int(RunOutcome::failed));
        QVERIFY2(s.error.find("diverged") != std::string::npos, s.error.c_str());
        QVERIFY2(s.error.find("learning rate") != std::string::npos, s.error.c_str());
        QVERIFY(!sink.steps.empty());
        QCOMPARE(sink.warnings.size(), size_t(DivergenceGuard::kMaxSkippedInARow));
        QCOMPARE(s.skipped_steps, int64_t(DivergenceGuard::kMaxSkippedInARow));
        QVERIFY2(s.error.find(s.checkpoint) != std::string::npos, s.error.c_str());
        QVERIFY(!s.checkpoint.empty());
        {
            SafetensorsReader reader(fs::path(s.checkpoint) / "model.safetensors");
            for (const auto& e : reader.entries()) {
                std::vector<float> v(size_t(e.numel()));
                reader.read_f32(e.name, e.shape, v.data());
                for (float x : v) QVERIFY(std::isfinite(x));
            }
        }
    }

    void pauseBlocksUntilResumed()
    {
        RecordingSink sink;
        TrainerOptions o;
        o.run_dir = dir("paused");
        Trainer t(tiny_run(4), o, &sink);
        std::atomic<bool> resumed{false};
        std::thread resumer;
        sink.on_step_hook = [&](const StepMetrics& m) {
            if (m.step != 2) return;
            t.request_pause(true);
            resumer = std::thread([&] {
                std::this_thread::sleep_for(std::chrono::milliseconds(200));
                resumed = true;
                t.request_pause(false);
            });
        };
        const RunSummary s = t.run();
        resumer.join();
        QCOMPARE(int(s.outcome), int(RunOutcome::finished));
        QVERIFY(resumed.load());
        QCOMPARE(sink.steps.size(), size_t(4));
    }
};

QTEST_APPLESS_MAIN(TrainerTest)
#include "tst_trainer.moc"
