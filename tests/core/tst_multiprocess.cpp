// Data parallel across processes, as mpirun or torchrun launch it: 2 and 3
// crucible-cli processes on this host, torchrun-style environment, train
// together over sockets and write one run (rank 0's) that is bit for bit the
// one-process run with as many thread replicas. A stop asked of one rank
// stops them all at one step; a rank that never comes ends the others with a
// message after the rendezvous timeout; a rank killed mid-run ends the others
// with a message, not a hang.
#include "core/io/file_util.h"
#include "core/train/load_model.h"
#include "core/train/run_dir.h"
#include "kernels/net/tcp_socket.h"
#include "tests/support/cli_process.h"
#include "tests/support/test_support.h"

#include <QtTest>

#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <thread>

namespace fs = std::filesystem;
using namespace crucible;
using namespace std::chrono_literals;

namespace {

const char* kTinyRun = "train --device cpu --vocab 320 --d-model 64 --layers 2 --heads 4 --kv-heads 2 --ff 128 "
                       "--context 96 --seq 64 --batch 2 --accum 2 --eval-every 0 --eval-batches 1 --sample-tokens 0";

int free_port()
{
    return TcpSocket::listen(0).local_port();
}

std::string read_text(const fs::path& p)
{
    std::ifstream in(p);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// The torchrun variables of one rank, set while its process starts.
void set_rank_environment(int rank, int world, int port)
{
    ::setenv("RANK", std::to_string(rank).c_str(), 1);
    ::setenv("LOCAL_RANK", std::to_string(rank).c_str(), 1);
    ::setenv("WORLD_SIZE", std::to_string(world).c_str(), 1);
    ::setenv("MASTER_ADDR", "127.0.0.1", 1);
    ::setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
}

void clear_rank_environment()
{
    for (const char* v : {"RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                          "CRUCIBLE_RENDEZVOUS_TIMEOUT"})
        ::unsetenv(v);
}

struct Job {
    std::vector<std::unique_ptr<test::CliProcess>> ranks;
    std::vector<fs::path> logs;
};

// Starts ranks `which` of a world of `world` processes running `args`.
Job launch(const std::string& args, int world, const std::vector<int>& which, const fs::path& log_dir)
{
    const int port = free_port();
    Job job;
    for (int rank : which) {
        set_rank_environment(rank, world, port);
        job.logs.push_back(log_dir / ("rank" + std::to_string(rank) + ".log"));
        job.ranks.push_back(std::make_unique<test::CliProcess>(test::split_args(args), job.logs.back()));
    }
    clear_rank_environment();
    return job;
}

std::vector<float> final_weights(const fs::path& run)
{
    LoadedModel m = load_model(run, BackendOptions{});
    return m.params->download_master();
}

std::vector<std::string> step_records(const fs::path& run)
{
    std::vector<std::string> lines;
    std::istringstream in(read_text(RunDirectory(run).metrics_file()));
    for (std::string line; std::getline(in, line);)
        if (line.find("\"type\":\"step\"") != std::string::npos) {
            // Each step's loss and gradient norm, without its timings.
            const auto loss = line.find("\"loss\"");
            const auto norm = line.find("\"grad_norm\"");
            lines.push_back(line.substr(loss, line.find(',', loss) - loss) + " " +
                            line.substr(norm, line.find(',', norm) - norm));
        }
    return lines;
}

} // namespace

class MultiProcessTest : public QObject {
    Q_OBJECT

    QTemporaryDir m_tmp;
    fs::path path(const std::string& name) const { return fs::path(m_tmp.path().toStdString()) / name; }

private slots:
    void initTestCase() { clear_rank_environment(); }

    void processesTrainLikeThreadReplicas_data()
    {
        QTest::addColumn<int>("world");
        QTest::newRow("2 processes") << 2;
        QTest::newRow("3 processes") << 3;
    }

    void processesTrainLikeThreadReplicas()
    {
        QFETCH(int, world);
        const std::string tag = std::to_string(world);
        const std::string common = std::string(kTinyRun) + " --steps 4 --checkpoint-every 2";

        // One process, `world` thread replicas of one thread each ...
        // (--threads 1 is split into at least one thread per replica.)
        test::CliProcess reference(test::split_args(common + " --threads 1 --cpu-replicas " + tag + " --out " +
                                                    path("threads" + tag).string()),
                                   path("threads" + tag + ".log"));
        QVERIFY2(reference.wait() == 0, read_text(path("threads" + tag + ".log")).c_str());

        // ... and `world` processes of one thread each.
        std::vector<int> all;
        for (int r = 0; r < world; ++r) all.push_back(r);
        Job job = launch(common + " --threads 1 --out " + path("procs" + tag).string(), world, all, m_tmp.path().toStdString());
        for (size_t r = 0; r < job.ranks.size(); ++r)
            QVERIFY2(job.ranks[r]->wait() == 0, read_text(job.logs[r]).c_str());
        for (int r = 0; r < world; ++r)
            QVERIFY(read_text(job.logs[size_t(r)]).find("rank " + std::to_string(r) + " of " + tag) != std::string::npos);

        // Rank 0 alone wrote the run: one start record, each step once.
        const fs::path run = path("procs" + tag);
        const std::string metrics = read_text(RunDirectory(run).metrics_file());
        size_t starts = 0;
        for (size_t at = metrics.find("\"type\":\"start\""); at != std::string::npos;
             at = metrics.find("\"type\":\"start\"", at + 1))
            ++starts;
        QCOMPARE(starts, size_t(1));
        QCOMPARE(step_records(run).size(), size_t(4));
        QCOMPARE(RunDirectory(run).checkpoint_steps(), (std::vector<int64_t>{2, 4}));

        // The same losses, norms, weights and (gathered) optimizer state, bit for bit.
        QCOMPARE(step_records(run), step_records(path("threads" + tag)));
        QVERIFY(final_weights(run) == final_weights(path("threads" + tag)));
        const fs::path opt = fs::path("checkpoints") / "step_4" / "optimizer.safetensors";
        QVERIFY(fs::exists(run / opt));
        QVERIFY(read_text(run / opt) == read_text(path("threads" + tag) / opt));

        // It resumes in one process, on another world size.
        test::CliProcess resumed({"train", "--resume", run.string(), "--steps", "5", "--threads", "1"},
                                 path("resume" + tag + ".log"));
        QVERIFY2(resumed.wait() == 0, read_text(path("resume" + tag + ".log")).c_str());
        QCOMPARE(RunDirectory(run).checkpoint_steps().back(), int64_t(5));
    }

    void resumesAcrossProcesses()
    {
        // A one-process run continues as a job of two processes.
        const fs::path run = path("grow");
        test::CliProcess first(test::split_args(std::string(kTinyRun) + " --steps 2 --threads 1 --out " + run.string()),
                               path("grow.log"));
        QCOMPARE(first.wait(), 0);
        Job job = launch("train --resume " + run.string() + " --steps 4 --threads 1", 2, {0, 1},
                         m_tmp.path().toStdString());
        for (size_t r = 0; r < job.ranks.size(); ++r)
            QVERIFY2(job.ranks[r]->wait() == 0, read_text(job.logs[r]).c_str());
        QCOMPARE(RunDirectory(run).checkpoint_steps().back(), int64_t(4));
        QCOMPARE(step_records(run).size(), size_t(4));
    }

    void missingPeerTimesOut()
    {
        ::setenv("CRUCIBLE_RENDEZVOUS_TIMEOUT", "2", 1);
        // Rank 1 never comes.
        Job job = launch(std::string(kTinyRun) + " --steps 2 --threads 1 --out " + path("lonely").string(), 2, {0},
                         m_tmp.path().toStdString());
        QVERIFY(job.ranks[0]->wait(120s) != 0);
        std::string out = read_text(job.logs[0]);
        QVERIFY2(out.find("rank 1 of 2 did not join") != std::string::npos, out.c_str());
        QVERIFY(!fs::exists(RunDirectory(path("lonely")).root() / "checkpoints"));

        // Rank 0 never comes.
        fs::create_directories(path("orphan-logs"));
        ::setenv("CRUCIBLE_RENDEZVOUS_TIMEOUT", "2", 1);
        Job orphan = launch(std::string(kTinyRun) + " --steps 2 --threads 1 --out " + path("orphan").string(), 2, {1},
                            path("orphan-logs"));
        QVERIFY(orphan.ranks[0]->wait(120s) != 0);
        out = read_text(orphan.logs[0]);
        QVERIFY2(out.find("could not reach the rendezvous of rank 0") != std::string::npos, out.c_str());
    }

    void stopOnOneRankStopsAll()
    {
        // Ctrl-C (SIGINT) reaches rank 1 only: the job stops at one step on
        // every rank, and rank 0 writes the checkpoint to resume from.
        const fs::path run = path("stopped");
        Job job = launch(std::string(kTinyRun) + " --steps 100000 --threads 1 --out " + run.string(), 2, {0, 1},
                         m_tmp.path().toStdString());
        for (int i = 0; i < 1200 && step_records(run).empty(); ++i) std::this_thread::sleep_for(100ms);
        QVERIFY2(!step_records(run).empty(), read_text(job.logs[0]).c_str());
        job.ranks[1]->signal(SIGINT);
        const int stopped = 3;   // crucible-cli's exit code for a stopped run
        QCOMPARE(job.ranks[1]->wait(120s), stopped);
        QVERIFY2(job.ranks[0]->wait(120s) == stopped, read_text(job.logs[0]).c_str());
        const std::vector<int64_t> saved = RunDirectory(run).checkpoint_steps();
        QCOMPARE(saved.size(), size_t(1));
        QCOMPARE(saved.back(), int64_t(step_records(run).size()));
    }

    void killedRankStopsTheOthers()
    {
        const fs::path run = path("killed");
        Job job = launch(std::string(kTinyRun) + " --steps 100000 --threads 1 --out " + run.string(), 2, {0, 1},
                         m_tmp.path().toStdString());
        // Wait until the job trains, then kill rank 1 outright.
        for (int i = 0; i < 1200 && step_records(run).empty(); ++i) std::this_thread::sleep_for(100ms);
        QVERIFY2(!step_records(run).empty(), read_text(job.logs[0]).c_str());
        job.ranks[1]->signal(SIGKILL);
        const int code = job.ranks[0]->wait(120s);
        const std::string out = read_text(job.logs[0]);
        QVERIFY2(code != -1, "rank 0 hung after rank 1 was killed");
        QVERIFY2(code != 0, out.c_str());
        QVERIFY2(out.find("lost rank 1") != std::string::npos, out.c_str());
    }
};

QTEST_GUILESS_MAIN(MultiProcessTest)
#include "tst_multiprocess.moc"
