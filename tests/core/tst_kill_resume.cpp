// Crash safety by brute force: a small CPU training run is killed with
// SIGKILL at random moments (in set-up, between steps, inside checkpoint and
// tokenizer writes), then resumed until it finishes. After every kill the run
// directory must hold a loadable checkpoint no older than one checkpoint
// interval before the last logged step, and the finished run must match an
// uninterrupted one bit for bit: same weights, same optimizer state, the same
// loss at every step, each step logged once.
//
// CRUCIBLE_KILL_TRIALS sets the number of kills (6 by default, for CI);
// CRUCIBLE_KILL_SEED the seed of their moments.
#include "core/io/file_util.h"
#include "core/io/safetensors.h"
#include "core/train/checkpoint.h"
#include "core/train/run_dir.h"
#include "tests/support/cli_process.h"
#include "tests/support/test_support.h"

#include <QtTest>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <random>
#include <thread>

namespace fs = std::filesystem;
using namespace crucible;

namespace {

constexpr int kSteps = 12;
constexpr int kInterval = 2;
const std::string kArgs = "--vocab 320 --d-model 32 --layers 2 --heads 2 --kv-heads 1 --ff 64 --context 64 --seq 32 "
                          "--batch 2 --threads 2 --eval-every 6 --eval-batches 1 --sample-tokens 0 --steps " +
                          std::to_string(kSteps) + " --checkpoint-every " + std::to_string(kInterval);

int env_int(const char* name, int fallback)
{
    const char* v = std::getenv(name);
    return v && *v ? std::atoi(v) : fallback;
}

// step → loss of every step record; fails the test when a step is logged twice.
std::map<int64_t, double> step_losses(const RunDirectory& run, bool* duplicates)
{
    std::map<int64_t, double> out;
    for (const auto& rec : run.read_metrics()) {
        if (rec.value("type", "") != "step") continue;
        const auto step = rec["step"].get<int64_t>();
        if (out.count(step)) *duplicates = true;
        out[step] = rec["loss"].get<double>();
    }
    return out;
}

int64_t last_logged_step(const RunDirectory& run)
{
    int64_t last = 0;
    for (const auto& rec : run.read_metrics())
        if (rec.value("type", "") == "step") last = std::max(last, rec["step"].get<int64_t>());
    return last;
}

} // namespace

class KillResumeTest : public QObject {
    Q_OBJECT

private:
    QTemporaryDir m_tmp;
    double m_reference_seconds = 0.0;
    fs::path path(const std::string& name) const { return fs::path(m_tmp.path().toStdString()) / name; }

    int runToEnd(const std::vector<std::string>& args, const std::string& log)
    {
        test::CliProcess p(args, path(log));
        return p.wait(std::chrono::minutes(5));
    }

private slots:
    void initTestCase()
    {
        const auto t0 = std::chrono::steady_clock::now();
        const int code = runToEnd(test::split_args("train " + kArgs + " --out " + path("reference").string()), "reference.log");
        m_reference_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        QVERIFY2(code == 0, read_file(path("reference.log")).c_str());
        qInfo("uninterrupted run: %.2f s", m_reference_seconds);
    }

    void killedRunsResumeBitExactly()
    {
        const int trials = env_int("CRUCIBLE_KILL_TRIALS", 6);
        std::mt19937_64 gen(uint64_t(env_int("CRUCIBLE_KILL_SEED", 17)));
        const RunDirectory reference(path("reference"));
        bool dup = false;
        const std::map<int64_t, double> reference_losses = step_losses(reference, &dup);
        QCOMPARE(reference_losses.size(), size_t(kSteps));
        const std::string reference_model = read_file(reference.checkpoint_dir(kSteps) / "model.safetensors");
        const std::string reference_optimizer = read_file(reference.checkpoint_dir(kSteps) / "optimizer.safetensors");

        // Each trial kills a run up to kKillsPerRun times (the fresh start,
        // then its resumes), then lets it finish.
        constexpr int kKillsPerRun = 3;
        int kills = 0, runs = 0;
        for (int trial = 0; kills < trials; ++trial) {
            const std::string name = "kill" + std::to_string(trial);
            const RunDirectory run(path(name));
            const auto next_command = [&] {
                const auto steps = run.checkpoint_steps();
                if (!steps.empty() && steps.back() == kSteps) return std::vector<std::string>{};   // done
                return run.exists() ? test::split_args("train --resume " + run.root().string())
                                    : test::split_args("train " + kArgs + " --out " + run.root().string());
            };
            std::string history;
            for (int k = 0; k < kKillsPerRun && kills < trials; ++k) {
                const auto command = next_command();
                if (command.empty()) break;
                // The moment: anywhere in a whole run, set-up included.
                const double at = std::uniform_real_distribution<double>(0.0, m_reference_seconds)(gen);
                history += " kill at " + std::to_string(at) + " s;";
                {
                    test::CliProcess p(command, path(name + ".log"));
                    std::this_thread::sleep_for(std::chrono::duration<double>(at));
                    p.signal(SIGKILL);
                    p.wait();
                }
                ++kills;

                // What the kill left: the newest checkpoint loads and is recent.
                const auto steps = run.checkpoint_steps();
                if (steps.empty()) continue;
                const fs::path latest = run.checkpoint_dir(steps.back());
                SafetensorsReader model(latest / "model.safetensors");   // throws on a torn or damaged file
                SafetensorsReader optimizer(latest / "optimizer.safetensors");
                QCOMPARE(load_trainer_state(latest).step, steps.back());
                QVERIFY2(steps.back() >= last_logged_step(run) - kInterval,
                         (name + ": checkpoint " + std::to_string(steps.back()) + " but step " +
                          std::to_string(last_logged_step(run)) + " was logged").c_str());
            }
            if (const auto command = next_command(); !command.empty()) {
                const int code = runToEnd(command, name + "-final.log");
                QVERIFY2(code == 0, (name + ":" + history + "\n" + read_file(path(name + "-final.log"))).c_str());
            }
            ++runs;

            bool duplicates = false;
            QVERIFY2(step_losses(run, &duplicates) == reference_losses, (name + ":" + history).c_str());
            QVERIFY2(!duplicates, (name + ":" + history).c_str());
            QVERIFY2(read_file(run.checkpoint_dir(kSteps) / "model.safetensors") == reference_model,
                     (name + ":" + history).c_str());
            QVERIFY2(read_file(run.checkpoint_dir(kSteps) / "optimizer.safetensors") == reference_optimizer,
                     (name + ":" + history).c_str());
            for (const auto& e : fs::directory_iterator(run.checkpoints_dir()))
                QVERIFY2(e.path().filename().string().find(".tmp-") == std::string::npos, e.path().c_str());
            fs::remove_all(run.root());
        }
        qInfo("%d SIGKILLs in %d runs: every run finished bit-exact with the uninterrupted one", kills, runs);
    }
};

QTEST_APPLESS_MAIN(KillResumeTest)
#include "tst_kill_resume.moc"
