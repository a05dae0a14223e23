// Faults a user can cause, each ending in a clear message and a non-zero exit
// with no work lost: absurd flags, edited or damaged checkpoints, NaN weights,
// signals, pipes given as data, configurations that do not fit, litter and
// races left by killed runs, and malformed configuration files. Every failure
// message is checked to carry no internal source location.
#include "core/io/file_util.h"
#include "core/io/safetensors.h"
#include "core/model/param_store.h"
#include "core/train/checkpoint.h"
#include "kernels/backend_factory.h"
#include "kernels/error.h"
#include "core/train/run_dir.h"
#include "core/train/run_lock.h"
#include "tests/support/cli_process.h"
#include "tests/support/test_support.h"

#include <QtTest>

#include <nlohmann/json.hpp>

#include <csignal>
#include <fcntl.h>
#include <filesystem>
#include <limits>
#include <map>
#include <regex>
#include <sys/file.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

namespace fs = std::filesystem;
using namespace crucible;

namespace {

struct Result {
    int code = 0;
    std::string output;
};

Result cli(const std::string& args)
{
    Result r;
    // `timeout`: a regression that hangs (a FIFO read) fails instead of stalling the suite.
    r.code = test::run_command("timeout 120 " + test::cli_path().string() + " " + args, &r.output);
    return r;
}

std::map<fs::path, std::string> snapshot(const fs::path& dir)
{
    std::map<fs::path, std::string> files;
    for (const auto& e : fs::recursive_directory_iterator(dir))
        if (e.is_regular_file() && e.path().filename() != ".lock") files[fs::relative(e.path(), dir)] = read_file(e.path());
    return files;
}

// Rewrites a safetensors file through `edit` (tensors as f32, metadata), so
// that its checksums stay valid and only the edited content is wrong.
void rewrite_safetensors(const fs::path& file, const std::function<void(std::map<std::string, std::string>&,
                                                                         std::map<std::string, std::vector<float>>&)>& edit)
{
    SafetensorsReader r(file);
    std::map<std::string, std::string> meta = r.metadata();
    std::map<std::string, std::vector<float>> tensors;
    std::map<std::string, std::vector<int64_t>> shapes;
    for (const auto& e : r.entries()) {
        tensors[e.name].resize(size_t(e.numel()));
        r.read_f32(e.name, e.shape, tensors[e.name].data());
        shapes[e.name] = e.shape;
    }
    edit(meta, tensors);
    SafetensorsWriter w;
    for (const auto& [k, v] : meta) w.set_metadata(k, v);
    for (const auto& [name, values] : tensors) w.add_f32(name, shapes[name], values.data());
    w.write(file);
}

#define TINY_MODEL "--vocab 320 --d-model 32 --layers 1 --heads 2 --kv-heads 1 --ff 64 --context 64 --seq 32 --batch 2 " \
                   "--eval-batches 1 --sample-tokens 0"
const char* kModel = TINY_MODEL;
const char* kTiny = TINY_MODEL " --threads 1";
// Weight decay of lr × wd = 98 per step multiplies the weights by -97: they
// overflow to infinity within a few steps.
const char* kBlowUp = "--lr 9.9 --weight-decay 9.9 --clip 0 --warmup 0";

} // namespace

class FaultHandlingTest : public QObject {
    Q_OBJECT

private:
    QTemporaryDir m_tmp;
    fs::path path(const std::string& name) const { return fs::path(m_tmp.path().toStdString()) / name; }
    std::string q(const std::string& name) const { return "'" + path(name).string() + "'"; }
    RunDirectory run(const std::string& name) const { return RunDirectory(path(name)); }

    void copyRun(const std::string& from, const std::string& to)
    {
        fs::remove_all(path(to));
        fs::copy(path(from), path(to), fs::copy_options::recursive);
        fs::remove(path(to) / RunLock::kFileName);
    }

    void expectFailure(const std::string& args, const char* message_part)
    {
        const Result r = cli(args);
        QVERIFY2(r.code != 0 && r.code != 124, ("expected a failure for: " + args + "\n" + r.output).c_str());
        QVERIFY2(r.output.find(message_part) != std::string::npos,
                 ("missing \"" + std::string(message_part) + "\" in:\n" + r.output).c_str());
        // Internal checks keep their source location to themselves.
        static const std::regex location(R"(\[[A-Za-z_0-9]+\.(cpp|h|cu):[0-9]+\])");
        QVERIFY2(!std::regex_search(r.output, location), r.output.c_str());
        QVERIFY2(r.output.find("unexpected error") == std::string::npos, r.output.c_str());
    }

    void train(const std::string& args)
    {
        const Result r = cli("train " + std::string(kTiny) + " " + args);
        QVERIFY2(r.code == 0, r.output.c_str());
    }

private slots:
    void initTestCase()
    {
        // Checkpoints at 2, 4 and 6.
        train("--steps 6 --checkpoint-every 2 --eval-every 6 --out " + q("run"));
        QCOMPARE(run("run").checkpoint_steps(), (std::vector<int64_t>{2, 4, 6}));
    }

    void threadCountsAreBounded()
    {
        expectFailure("train " + std::string(kModel) + " --steps 1 --threads 100000 --out " + q("t1"), "threads must be");
        QVERIFY(!fs::exists(path("t1")));
        expectFailure("eval --run " + q("run") + " --threads 100000", "threads must be");
        expectFailure("sample --run " + q("run") + " --threads 1024 --max-tokens 2", "threads must be");
        expectFailure("train " + std::string(kModel) + " --steps 1 --threads -3 --out " + q("t2"), "threads must be");
    }

    void generationFlagsAreValidated()
    {
        expectFailure("sample --run " + q("run") + " --max-tokens -5", "--max-tokens");
        expectFailure("sample --run " + q("run") + " --seed -1", "--seed");
        expectFailure("generate --run " + q("run") + " --prompt hi --max-tokens -5", "--max-tokens");
        expectFailure("eval --run " + q("run") + " --batch 0", "--batch");
        expectFailure("train " + std::string(kTiny) + " --steps 1 --seed -1 --out " + q("s1"), "--seed");
    }

    void editedTrainerStateIsRefused()
    {
        // A lowered step would make the resumed run overwrite step_4 and step_6.
        for (const int64_t step : {int64_t(3), int64_t(-4)}) {
            copyRun("run", "edited");
            const fs::path state = run("edited").checkpoint_dir(6) / "trainer_state.json";
            auto j = nlohmann::json::parse(read_file(state));
            j["step"] = step;
            write_file_atomic(state, j.dump());
            const auto before = snapshot(path("edited"));
            expectFailure("train --resume " + q("edited") + " --steps 10", step < 0 ? "negative" : "says step 3");
            QVERIFY(snapshot(path("edited")) == before);
        }
    }

    void newestCheckpointWithoutStateIsRefused()
    {
        copyRun("run", "stateless");
        fs::remove(run("stateless").checkpoint_dir(6) / "trainer_state.json");
        const auto before = snapshot(path("stateless"));
        expectFailure("train --resume " + q("stateless") + " --steps 10", "has no trainer_state.json");
        QVERIFY(snapshot(path("stateless")) == before);
    }

    void nanWeightsAreReported()
    {
        copyRun("run", "nan");
        rewrite_safetensors(run("nan").checkpoint_dir(6) / "model.safetensors", [](auto&, auto& tensors) {
            tensors.begin()->second[3] = std::numeric_limits<float>::quiet_NaN();
        });
        expectFailure("eval --run " + q("nan"), "not finite");
        expectFailure("sample --run " + q("nan") + " --max-tokens 4", "not finite");
        expectFailure("train --resume " + q("nan") + " --steps 8", "not finite");
    }

    void nanOptimizerStateIsRefused()
    {
        copyRun("run", "nanopt");
        rewrite_safetensors(run("nanopt").checkpoint_dir(6) / "optimizer.safetensors", [](auto&, auto& tensors) {
            tensors.begin()->second[0] = std::numeric_limits<float>::infinity();
        });
        expectFailure("train --resume " + q("nanopt") + " --steps 8", "optimizer moments");
        QCOMPARE(run("nanopt").checkpoint_steps(), (std::vector<int64_t>{2, 4, 6}));
    }

    void damagedOptimizerFieldNamesTheFile()
    {
        copyRun("run", "badopt");
        rewrite_safetensors(run("badopt").checkpoint_dir(6) / "optimizer.safetensors",
                            [](auto& meta, auto&) { meta["steps"] = "six"; });
        expectFailure("train --resume " + q("badopt") + " --steps 8", "optimizer.safetensors");
    }

    void flippedByteFailsItsChecksum()
    {
        copyRun("run", "flipped");
        const fs::path model = run("flipped").checkpoint_dir(6) / "model.safetensors";
        std::string bytes = read_file(model);
        bytes[bytes.size() - 5] ^= 0x10;   // inside the last tensor's data
        write_file_atomic(model, bytes);
        expectFailure("eval --run " + q("flipped"), "checksum");
    }

    void divergenceNeverSavesNonFiniteWeights()
    {
        // Settings that blow the weights up within a few steps; every
        // checkpoint the run leaves must hold finite weights.
        const Result r = cli("train " + std::string(kTiny) + " --steps 30 --checkpoint-every 1 " + kBlowUp +
                             " --out " + q("diverged"));
        QVERIFY2(r.code != 0, r.output.c_str());
        QVERIFY2(r.output.find("diverged") != std::string::npos, r.output.c_str());
        for (const int64_t step : run("diverged").checkpoint_steps()) {
            const Result e = cli("eval --run " + run("diverged").checkpoint_dir(step).string() + " --text " +
                                 (test::source_dir() / "README.md").string() + " --max-batches 1");
            QVERIFY2(e.output.find("not finite") == std::string::npos, e.output.c_str());
        }
        if (const auto latest = run("diverged").latest_checkpoint())
            QVERIFY2(r.output.find(latest->string()) != std::string::npos, r.output.c_str());
    }

    void nonFiniteLossPolicy()
    {
        // "stop": the run ends at the first non-finite step, counted once.
        const Result r = cli("train " + std::string(kTiny) + " --steps 30 --checkpoint-every 1 " + kBlowUp +
                             " --on-nonfinite stop --out " + q("stopped_nan"));
        QVERIFY2(r.code != 0, r.output.c_str());
        QVERIFY2(r.output.find("not a finite number") != std::string::npos, r.output.c_str());
        int warnings = 0;
        for (const auto& rec : run("stopped_nan").read_metrics())
            if (rec.value("type", "") == "warning") {
                ++warnings;
                QCOMPARE(rec["skipped_steps"].get<int>(), warnings);
            }
        QCOMPARE(warnings, 1);
        // "skip" (the default) went on after the first, counting each.
        int skipped = 0;
        for (const auto& rec : run("diverged").read_metrics())
            if (rec.value("type", "") == "warning") skipped = rec["skipped_steps"].get<int>();
        QVERIFY(skipped >= 3);
        expectFailure("train " + std::string(kTiny) + " --steps 1 --on-nonfinite ignore --out " + q("p1"),
                      "--on-nonfinite");
    }

    void checkpointWriterRefusesNonFiniteWeights()
    {
        // What a run whose weights went NaN without a NaN loss would write.
        const RunConfig rc = run("run").read_config();
        auto backend = make_backend(BackendOptions{});
        ParamStore params(*backend, rc.model, false);
        std::vector<float> weights(size_t(params.layout().total()), 0.01f);
        weights[7] = std::numeric_limits<float>::quiet_NaN();
        params.upload_master(weights);
        const Tokenizer tokenizer = Tokenizer::load(run("run").tokenizer_file());
        TrainerState state;
        state.step = 9;
        try {
            save_checkpoint(path("nan_checkpoint"), params, tokenizer, nullptr, &state);
            QFAIL("a checkpoint with a NaN weight was written");
        } catch (const Error& e) {
            QVERIFY2(std::string(e.what()).find("not finite") != std::string::npos, e.what());
        }
        QVERIFY(!fs::exists(path("nan_checkpoint")));
    }

    void stopSignalsWriteACheckpoint_data()
    {
        QTest::addColumn<int>("sig");
        QTest::newRow("SIGINT") << SIGINT;
        QTest::newRow("SIGTERM") << SIGTERM;
        QTest::newRow("SIGHUP") << SIGHUP;
    }

    void stopSignalsWriteACheckpoint()
    {
        QFETCH(int, sig);
        const std::string name = "signal" + std::to_string(sig);
        test::CliProcess p(test::split_args("train " + std::string(kTiny) + " --steps 100000 --eval-every 0 --out " +
                                            path(name).string()),
                           path(name + ".log"));
        // Wait for the first step, then signal.
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(2);
        while (p.running() && std::chrono::steady_clock::now() < deadline) {
            if (fs::exists(run(name).metrics_file()) &&
                read_file(run(name).metrics_file()).find("\"type\":\"step\"") != std::string::npos)
                break;
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
        p.signal(sig);
        const int code = p.wait(std::chrono::minutes(2));
        QVERIFY2(code == 3, (std::to_string(code) + "\n" + read_file(path(name + ".log"))).c_str());
        QCOMPARE(run(name).checkpoint_steps().size(), size_t(1));
        QVERIFY(run(name).checkpoint_steps()[0] >= 1);
    }

    void pipesAreRefusedAsData()
    {
        QVERIFY(::mkfifo(path("fifo").c_str(), 0644) == 0);
        expectFailure("train " + std::string(kTiny) + " --steps 1 --data " + q("fifo") + " --out " + q("f1"),
                      "not a regular file");
        expectFailure("eval --run " + q("run") + " --text " + q("fifo"), "not a regular file");
    }

    void evalChecksMemoryFirst()
    {
        copyRun("run", "wide");
        auto j = nlohmann::json::parse(read_file(run("wide").config_file()));
        j["model"]["seq_len"] = 131072;
        write_file_atomic(run("wide").config_file(), j.dump());
        expectFailure("eval --run " + q("wide") + " --batch 4096", "Lower the batch size");
    }

    void staleStagingIsCleanedOnResume()
    {
        copyRun("run", "litter");
        const fs::path tmp_dir = run("litter").checkpoints_dir() / "step_8.tmp-12345-0badf00d";
        fs::create_directories(tmp_dir);
        write_file_atomic(tmp_dir / "model.safetensors", std::string(4096, 'x'));
        write_file_atomic(path("litter") / "config.json.tmp-12345-00c0ffee", "{");
        train("--resume " + q("litter") + " --steps 7");
        QVERIFY(!fs::exists(tmp_dir));
        QVERIFY(!fs::exists(path("litter") / "config.json.tmp-12345-00c0ffee"));
        QCOMPARE(run("litter").checkpoint_steps().back(), int64_t(7));
    }

    void metricsAreCutBackToTheResumedStep()
    {
        // step_6 lost: the run resumes from step_4 and trains 5 and 6 again.
        copyRun("run", "relog");
        fs::remove_all(run("relog").checkpoint_dir(6));
        train("--resume " + q("relog"));
        std::map<int64_t, int> steps;
        for (const auto& rec : run("relog").read_metrics())
            if (rec.value("type", "") == "step") ++steps[rec["step"].get<int64_t>()];
        QCOMPARE(steps.size(), size_t(6));
        for (const auto& [step, count] : steps) QVERIFY2(count == 1, std::to_string(step).c_str());
    }

    void runStoppedBeforeItsFirstCheckpointStartsOver()
    {
        copyRun("run", "early");
        fs::remove_all(run("early").checkpoints_dir());
        expectFailure("train " + std::string(kTiny) + " --steps 2 --out " + q("early"), "--resume");
        train("--resume " + q("early"));
        QCOMPARE(run("early").checkpoint_steps().back(), int64_t(6));
    }

    void secondTrainerOfOneRunIsRefused()
    {
        copyRun("run", "locked");
        const int fd = ::open((path("locked") / RunLock::kFileName).c_str(), O_RDWR | O_CREAT, 0644);
        QVERIFY(fd >= 0 && ::flock(fd, LOCK_EX | LOCK_NB) == 0);
        const auto before = snapshot(path("locked"));
        expectFailure("train --resume " + q("locked") + " --steps 8", "another process is training");
        QVERIFY(snapshot(path("locked")) == before);
        ::close(fd);
        train("--resume " + q("locked") + " --steps 7");
    }

    void configMessagesNameTheProblem()
    {
        write_file_atomic(path("layers.json"), R"({"n_layers": 1e10})");
        expectFailure("train --config " + q("layers.json") + " --out " + q("c1"), "n_layers");
        write_file_atomic(path("layers2.json"), R"({"n_layers": 10000000000})");
        expectFailure("train --config " + q("layers2.json") + " --out " + q("c2"), "out of range");
        write_file_atomic(path("frac.json"), R"({"n_layers": 4.7})");
        expectFailure("train --config " + q("frac.json") + " --out " + q("c3"), "whole number");
        const Result frac = cli("train --config " + q("frac.json") + " --out " + q("c3"));
        QVERIFY2(frac.output.find("frac.json") != std::string::npos, frac.output.c_str());

        copyRun("run", "nomodel");
        auto j = nlohmann::json::parse(read_file(run("nomodel").config_file()));
        j.erase("model");
        write_file_atomic(run("nomodel").config_file(), j.dump());
        expectFailure("eval --run " + q("nomodel"), "\"model\"");
        expectFailure("train --resume " + q("nomodel") + " --steps 8", "config.json");
    }

    void unwritableOutputIsReported()
    {
        // A file where a folder is needed fails the same way for root and users.
        write_file_atomic(path("plain_file"), "x");
        expectFailure("train " + std::string(kTiny) + " --steps 1 --out " + q("plain_file"), "plain_file");
        expectFailure("train " + std::string(kTiny) + " --steps 1 --out " + path("plain_file").string() + "/run",
                      "plain_file");
    }
};

QTEST_APPLESS_MAIN(FaultHandlingTest)
#include "tst_fault_handling.moc"
