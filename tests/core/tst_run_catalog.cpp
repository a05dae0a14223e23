// The run catalog: listing runs with their summaries, metric series (with a
// resumed run's replayed steps), and the safety checks of rename and delete.
#include "core/train/run_catalog.h"

#include "core/train/run_dir.h"
#include "core/train/run_lock.h"
#include "core/train/trainer.h"
#include "kernels/error.h"
#include "tests/support/test_support.h"

#include <QTemporaryDir>
#include <QTest>

#include <csignal>
#include <fstream>
#include <sys/wait.h>
#include <unistd.h>

namespace fs = std::filesystem;
using namespace crucible;

namespace {

void write_text(const fs::path& file, const std::string& text)
{
    fs::create_directories(file.parent_path());
    std::ofstream(file, std::ios::binary) << text;
}

// A run directory as the trainer leaves it, written by hand so each case
// controls exactly what is on disk.
fs::path make_run(const fs::path& parent, const std::string& name, const std::string& metrics, int steps = 10)
{
    const fs::path root = parent / name;
    RunConfig c;
    c.model = preset("nano");
    c.train.steps = steps;
    fs::create_directories(root);
    RunDirectory(root).write_config(c);
    write_text(root / "metrics.jsonl", metrics);
    return root;
}

std::string step_line(int step, double loss, double elapsed)
{
    return nlohmann::json{{"type", "step"}, {"step", step}, {"loss", loss}, {"lr", 0.001}, {"grad_norm", 1.0},
                          {"tokens_per_s", 1000.0}, {"mfu", 0.1}, {"memory_bytes", 1000},
                          {"elapsed_s", elapsed}, {"tokens_seen", step * 100}}.dump() + "\n";
}

std::string eval_line(int step, double loss)
{
    return nlohmann::json{{"type", "eval"}, {"step", step}, {"loss", loss}, {"perplexity", 2.0}, {"accuracy", 0.5},
                          {"bits_per_byte", 1.5}, {"tokens", 100}, {"elapsed_s", 0.1}}.dump() + "\n";
}

std::string start_line(int step) { return nlohmann::json{{"type", "start"}, {"step", step}, {"device", "CPU"}, {"parameters", 42}}.dump() + "\n"; }
std::string finished_line(const char* outcome, int step)
{
    return nlohmann::json{{"type", "finished"}, {"outcome", outcome}, {"step", step}, {"elapsed_s", 1.0}}.dump() + "\n";
}

void make_checkpoint(const fs::path& root, int step)
{
    write_text(RunDirectory(root).checkpoint_dir(step) / "trainer_state.json", "{}");
}

} // namespace

class TestRunCatalog : public QObject {
    Q_OBJECT

private slots:
    void listsRunsNewestFirstWithSummaries()
    {
        QTemporaryDir tmp;
        const fs::path dir = tmp.path().toStdString();
        const fs::path a = make_run(dir, "a", start_line(0) + step_line(1, 5.0, 0.5) + step_line(2, 4.0, 1.0) +
                                                  eval_line(2, 4.5) + finished_line("finished", 2), 2);
        make_checkpoint(a, 2);
        const fs::path b = make_run(dir, "b", start_line(0) + step_line(1, 6.0, 0.5) + finished_line("stopped", 1));
        make_checkpoint(b, 1);
        fs::create_directories(dir / "not-a-run");
        fs::create_directories(dir / ".hidden");
        RunDirectory(dir / ".hidden").write_config(RunConfig{});
        // b is newer
        fs::last_write_time(a / "metrics.jsonl", fs::file_time_type::clock::now() - std::chrono::hours(1));
        fs::last_write_time(a / "config.json", fs::file_time_type::clock::now() - std::chrono::hours(1));

        const auto runs = list_runs(dir);
        QCOMPARE(runs.size(), size_t(2));
        QCOMPARE(runs[0].name, std::string("b"));
        QCOMPARE(runs[1].name, std::string("a"));

        const RunRecord& ra = runs[1];
        QVERIFY(ra.config.has_value());
        QCOMPARE(ra.status, RunStatus::finished);
        QCOMPARE(ra.steps_done, int64_t(2));
        QCOMPARE(ra.total_steps, int64_t(2));
        QCOMPARE(*ra.final_loss, 4.0);
        QVERIFY(ra.last_eval.has_value());
        QCOMPARE(ra.last_eval->loss, 4.5);
        QCOMPARE(ra.device, std::string("CPU"));
        QCOMPARE(ra.parameters, int64_t(42));
        QCOMPARE(ra.tokens_seen, int64_t(200));
        QCOMPARE(ra.tokens_per_s, 200.0);
        QCOMPARE(ra.checkpoints, std::vector<int64_t>{2});
        QVERIFY(ra.resumable());

        QCOMPARE(runs[0].status, RunStatus::stopped);
        QVERIFY(!runs[0].last_eval.has_value());

        // A folder that is itself a run lists just that run.
        QCOMPARE(list_runs(a).size(), size_t(1));
        QVERIFY(list_runs(dir / "missing").empty());
    }

    void statusFollowsTheLastSession()
    {
        QTemporaryDir tmp;
        const fs::path dir = tmp.path().toStdString();
        // Stopped, then resumed, with no end record since: training while a
        // trainer holds the run's lock, interrupted once none does.
        const fs::path r = make_run(dir, "r", start_line(0) + step_line(1, 5, 1) + finished_line("stopped", 1) +
                                                  start_line(1) + step_line(2, 4, 2));
        QCOMPARE(read_run(r).status, RunStatus::interrupted);
        {
            const RunLock trainer(r);
            QCOMPARE(read_run(r).status, RunStatus::training);
        }
        QCOMPARE(read_run(r).status, RunStatus::interrupted);
        QCOMPARE(read_run(r).steps_done, int64_t(2));
        // Failed runs carry their message.
        const fs::path f = make_run(dir, "f", start_line(0) + nlohmann::json{{"type", "finished"}, {"outcome", "failed"},
                                              {"step", 0}, {"error", "out of memory"}}.dump() + "\n");
        QCOMPARE(read_run(f).status, RunStatus::failed);
        QCOMPARE(read_run(f).error, std::string("out of memory"));
    }

    // A trainer killed with SIGKILL leaves no end record and no lock: the
    // kernel drops an flock with its holder, so the run reads as interrupted
    // (and resumable), never as still training.
    void killedTrainerReadsAsInterrupted()
    {
        QTemporaryDir tmp;
        const fs::path r = make_run(fs::path(tmp.path().toStdString()), "k", start_line(0) + step_line(1, 5, 1));
        int ready[2];
        QVERIFY(::pipe(ready) == 0);
        const pid_t child = ::fork();
        QVERIFY(child >= 0);
        if (child == 0) {
            const RunLock trainer(r);
            const char byte = 1;
            (void)!::write(ready[1], &byte, 1);
            for (;;) ::pause();
        }
        char byte = 0;
        QCOMPARE(::read(ready[0], &byte, 1), ssize_t(1));
        QCOMPARE(read_run(r).status, RunStatus::training);
        // Resuming now is refused: another process trains it.
        QVERIFY_THROWS_EXCEPTION(Error, RunLock{r});
        ::kill(child, SIGKILL);
        int status = 0;
        ::waitpid(child, &status, 0);
        ::close(ready[0]);
        ::close(ready[1]);
        QCOMPARE(read_run(r).status, RunStatus::interrupted);
        QVERIFY(RunLock(r).held());
    }

    void unreadableConfigIsListedWithTheProblem()
    {
        QTemporaryDir tmp;
        const fs::path dir = tmp.path().toStdString();
        write_text(dir / "broken" / "config.json", "{ not json");
        const auto runs = list_runs(dir);
        QCOMPARE(runs.size(), size_t(1));
        QVERIFY(!runs[0].config.has_value());
        QVERIFY(runs[0].problem.find("not valid JSON") != std::string::npos);
        QVERIFY(!runs[0].resumable());
    }

    void metricSeriesReplaceReplayedSteps()
    {
        QTemporaryDir tmp;
        const fs::path dir = tmp.path().toStdString();
        // Logged to step 3, checkpointed at 2, resumed: steps 3 and 4 logged again.
        const fs::path r = make_run(dir, "r",
            start_line(0) + step_line(1, 5, 1) + step_line(2, 4, 2) + eval_line(2, 4.4) + step_line(3, 3.9, 3) +
            eval_line(3, 9.9) + "{\"type\":\"step\",\"ste" /* torn line */ + "\n" + start_line(2) +
            step_line(3, 3.5, 3.1) + step_line(4, 3.0, 4.1) + eval_line(4, 3.3));
        const RunMetrics m = read_run_metrics(r);
        QCOMPARE(m.loss.step, (std::vector<double>{1, 2, 3, 4}));
        QCOMPARE(m.loss.value, (std::vector<double>{5, 4, 3.5, 3.0}));
        QCOMPARE(m.loss.time_s, (std::vector<double>{1, 2, 3.1, 4.1}));
        QCOMPARE(m.val_loss.step, (std::vector<double>{2, 4}));
        QCOMPARE(m.val_loss.value, (std::vector<double>{4.4, 3.3}));
        // Evaluations sit at the training time of their step.
        QCOMPARE(m.val_loss.time_s, (std::vector<double>{2, 4.1}));
        QCOMPARE(m.lr.size(), size_t(4));
        QVERIFY(m.find("val_loss") == &m.val_loss);
        QVERIFY(m.find("nope") == nullptr);
        for (const MetricKey& k : run_metric_keys()) QVERIFY2(m.find(k.key) != nullptr, k.key);
    }

    void renameChecksTheNameAndTarget()
    {
        QTemporaryDir tmp;
        const fs::path dir = tmp.path().toStdString();
        const fs::path a = make_run(dir, "a", start_line(0));
        make_run(dir, "b", start_line(0));
        for (const char* bad : {"", ".", "..", "x/y", ".hidden"}) {
            QVERIFY_THROWS_EXCEPTION(Error, rename_run(a, bad));
        }
        try {
            rename_run(a, "b");
            QFAIL("renamed onto an existing run");
        } catch (const Error& e) {
            QVERIFY(std::string(e.what()).find("already exists") != std::string::npos);
        }
        fs::create_directories(dir / "plain");
        QVERIFY_THROWS_EXCEPTION(Error, rename_run(dir / "plain", "z"));
        const fs::path renamed = rename_run(a, "muon-vs-adamw");
        QCOMPARE(renamed, dir / "muon-vs-adamw");
        QVERIFY(!fs::exists(a));
        QVERIFY(is_run_directory(renamed));
    }

    void deleteRefusesWhatIsNotARun()
    {
        QTemporaryDir tmp;
        const fs::path dir = tmp.path().toStdString();
        // Not a run: a folder of the user's.
        write_text(dir / "mine" / "notes.txt", "precious");
        QVERIFY_THROWS_EXCEPTION(Error, delete_run(dir / "mine"));
        QVERIFY(fs::exists(dir / "mine" / "notes.txt"));

        // A run that also holds the user's files: refused, nothing removed.
        const fs::path r = make_run(dir, "r", start_line(0));
        write_text(r / "notes.txt", "precious");
        try {
            delete_run(r);
            QFAIL("deleted a run holding foreign files");
        } catch (const Error& e) {
            QVERIFY(std::string(e.what()).find("notes.txt") != std::string::npos);
        }
        QVERIFY(fs::exists(r / "config.json"));

        // A symbolic link to a run is refused.
        const fs::path clean = make_run(dir, "clean", start_line(0));
        make_checkpoint(clean, 1);
        write_text(clean / "config.json.tmp-1-abcd", "");   // a torn atomic write
        fs::create_directory_symlink(clean, dir / "link");
        QVERIFY_THROWS_EXCEPTION(Error, delete_run(dir / "link"));
        QVERIFY(fs::exists(clean));

        delete_run(clean);
        QVERIFY(!fs::exists(clean));
        QVERIFY(fs::exists(dir / "mine" / "notes.txt"));
    }

    void readsARealRun()
    {
        // The format written by the trainer itself, so the catalog and the
        // trainer cannot drift apart.
        QTemporaryDir tmp;
        const fs::path root = fs::path(tmp.path().toStdString()) / "real";
        RunConfig c;
        c.model = preset("nano");
        c.model.n_layers = 1;
        c.train.steps = 3;
        c.train.batch_size = 2;
        c.train.seq_len = 32;
        c.train.eval_every = 2;
        c.train.eval_batches = 1;
        c.train.sample_tokens = 4;
        c.train.schedule.warmup_steps = 1;
        Trainer trainer(c, TrainerOptions{root, false, {}}, nullptr);
        const RunSummary s = trainer.run();
        QVERIFY2(s.outcome == RunOutcome::finished, s.error.c_str());

        const RunRecord r = read_run(root);
        QCOMPARE(r.status, RunStatus::finished);
        QCOMPARE(r.steps_done, int64_t(3));
        QCOMPARE(r.checkpoints, std::vector<int64_t>{3});
        QVERIFY(r.last_eval.has_value());
        QCOMPARE(r.last_eval->step, int64_t(3));
        QVERIFY(r.tokens_per_s > 0);
        const RunMetrics m = read_run_metrics(root);
        QCOMPARE(m.loss.size(), size_t(3));
        QCOMPARE(m.val_loss.step, (std::vector<double>{2, 3}));
        QCOMPARE(m.samples.size(), size_t(2));
    }
};

QTEST_GUILESS_MAIN(TestRunCatalog)
#include "tst_run_catalog.moc"
