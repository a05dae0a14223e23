// A full disk: a run trains on a size-limited tmpfs until a checkpoint no
// longer fits. The run must fail with a message that says the disk is full,
// leave the previous checkpoint intact and loadable, and resume once there is
// room; an export onto the full disk fails the same way and leaves nothing
// half-written. Mounting needs root: skipped otherwise.
#include "core/io/file_util.h"
#include "core/train/run_dir.h"
#include "tests/support/cli_process.h"
#include "tests/support/test_support.h"

#include <QtTest>

#include <filesystem>
#include <unistd.h>

namespace fs = std::filesystem;
using namespace crucible;

namespace {

struct Result {
    int code = 0;
    std::string output;
};

Result sh(const std::string& command)
{
    Result r;
    r.code = test::run_command(command, &r.output);
    return r;
}

Result cli(const std::string& args) { return sh("timeout 300 " + test::cli_path().string() + " " + args); }

const char* kTiny = "--vocab 320 --d-model 32 --layers 1 --heads 2 --kv-heads 1 --ff 64 --context 64 --seq 32 --batch 2 "
                    "--threads 1 --eval-every 0 --eval-batches 1 --sample-tokens 0";

} // namespace

class FullDiskTest : public QObject {
    Q_OBJECT

private:
    QTemporaryDir m_tmp;
    fs::path m_mount;
    bool m_mounted = false;

private slots:
    void initTestCase()
    {
        if (::geteuid() != 0) QSKIP("mounting a size-limited tmpfs needs root");
        m_mount = fs::path(m_tmp.path().toStdString()) / "small_disk";
        fs::create_directories(m_mount);
        // One checkpoint of the tiny model takes about 230 KB: room for the
        // first, not for a second beside it.
        const Result r = sh("mount -t tmpfs -o size=400k tmpfs '" + m_mount.string() + "'");
        if (r.code != 0) QSKIP(("cannot mount a tmpfs here: " + r.output).c_str());
        m_mounted = true;
    }

    void cleanupTestCase()
    {
        if (m_mounted) sh("umount '" + m_mount.string() + "'");
    }

    void checkpointOntoAFullDisk()
    {
        const fs::path run_dir = m_mount / "run";
        const Result r = cli(std::string("train ") + kTiny + " --steps 40 --checkpoint-every 2 --out " + run_dir.string());
        QVERIFY2(r.code != 0, r.output.c_str());
        QVERIFY2(r.output.find("No space left on device") != std::string::npos, r.output.c_str());
        QVERIFY2(r.output.find("free") != std::string::npos, r.output.c_str());   // says what to do

        const RunDirectory run(run_dir);
        const auto steps = run.checkpoint_steps();
        QVERIFY2(!steps.empty(), r.output.c_str());
        for (const auto& e : fs::directory_iterator(run.checkpoints_dir()))
            QVERIFY2(e.path().filename().string().find(".tmp-") == std::string::npos, e.path().c_str());
        const Result eval = cli("eval --run " + run_dir.string() + " --max-batches 1");
        QVERIFY2(eval.code == 0, eval.output.c_str());

        // With room again, the run resumes from that checkpoint and finishes.
        QCOMPARE(sh("mount -o remount,size=8m '" + m_mount.string() + "'").code, 0);
        const Result resumed = cli("train --resume " + run_dir.string());
        QVERIFY2(resumed.code == 0, resumed.output.c_str());
        QCOMPARE(run.checkpoint_steps().back(), int64_t(40));
    }

    void exportOntoAFullDisk()
    {
        // Fill the disk (the run stays), then export there.
        sh("dd if=/dev/zero of='" + (m_mount / "filler").string() + "' bs=4k 2>/dev/null");
        const Result r = cli("export --run " + (m_mount / "run").string() + " --format hf --out " +
                             (m_mount / "exported").string());
        QVERIFY2(r.code != 0, r.output.c_str());
        QVERIFY2(r.output.find("No space left on device") != std::string::npos, r.output.c_str());
        std::error_code ec;
        for (const auto& e : fs::recursive_directory_iterator(m_mount, ec))
            QVERIFY2(e.path().filename().string().find(".tmp-") == std::string::npos, e.path().c_str());
        fs::remove(m_mount / "filler");
    }
};

QTEST_APPLESS_MAIN(FullDiskTest)
#include "tst_full_disk.moc"
