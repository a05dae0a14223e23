// The .deb as a user installs it: cpack builds it from this build tree, its
// contents are unpacked into a scratch root (dpkg-deb -x), and the programs
// there start with every CUDA library hidden. crucible-cli info runs and says
// the CPU is used; neither program links a CUDA library (the CUDA backend is a
// plugin loaded at run time); the package carries its copyright file, the
// desktop entry and the metadata; and `crucible --help` answers without a
// display. Skipped where cpack or dpkg-deb is missing.
//
// Hiding CUDA: an unprivileged user and mount namespace (unshare -rm) mounts
// an empty tmpfs over every folder the dynamic linker's cache lists a CUDA
// library in, so the libraries are gone for the programs and nowhere else.
#include "tests/support/test_support.h"

#include <QStandardPaths>
#include <QTemporaryDir>
#include <QtTest>

#include <filesystem>
#include <set>
#include <sstream>

namespace fs = std::filesystem;
using namespace crucible;

namespace {

std::string shell_quoted(const fs::path& p) { return "'" + p.string() + "'"; }

// Folders holding libcuda, libcudart or libcublas, as ldconfig knows them.
std::set<std::string> cuda_library_folders()
{
    std::string out;
    test::run_command("ldconfig -p", &out);
    std::set<std::string> folders;
    std::istringstream lines(out);
    for (std::string line; std::getline(lines, line);) {
        if (line.find("libcuda") == std::string::npos && line.find("libcublas") == std::string::npos) continue;
        const size_t arrow = line.find("=> ");
        if (arrow == std::string::npos) continue;
        std::error_code ec;
        // The real folder: a mount over a symlinked path would not hide it.
        const fs::path lib = fs::canonical(line.substr(arrow + 3), ec);
        if (!ec) folders.insert(lib.parent_path().string());
    }
    return folders;
}

} // namespace

class TestDebWithoutCuda : public QObject {
    Q_OBJECT
    QTemporaryDir m_tmp;
    fs::path m_root;

    fs::path tmp(const char* name) const { return fs::path(m_tmp.path().toStdString()) / name; }

    // Runs `command` inside a namespace where the CUDA libraries are hidden;
    // returns false (and says why) when such a namespace cannot be made here.
    bool runHidden(const std::string& command, int& code, std::string& output)
    {
        std::string mounts;
        for (const std::string& folder : cuda_library_folders()) mounts += "mount -t tmpfs none " + shell_quoted(folder) + " && ";
        const std::string script = mounts + "exec env -u LD_LIBRARY_PATH -u CRUCIBLE_CUDA_PLUGIN " + command;
        std::string probe;
        if (test::run_command("unshare -rm true", &probe) != 0) return false;
        code = test::run_command("unshare -rm sh -c " + shell_quoted(script), &output);
        return true;
    }

private slots:
    void initTestCase()
    {
        if (QStandardPaths::findExecutable(QStringLiteral("cpack")).isEmpty() ||
            QStandardPaths::findExecutable(QStringLiteral("dpkg-deb")).isEmpty())
            QSKIP("cpack or dpkg-deb is not installed");
        const fs::path config = test::binary_dir() / "CPackConfig.cmake";
        QVERIFY(fs::exists(config));
        std::string out;
        const int code = test::run_command("cpack -G DEB --config " + shell_quoted(config) + " -B " + shell_quoted(tmp("pkg")), &out);
        QVERIFY2(code == 0, out.c_str());
        fs::path deb;
        for (const auto& e : fs::directory_iterator(tmp("pkg")))
            if (e.path().extension() == ".deb") deb = e.path();
        QVERIFY2(!deb.empty(), out.c_str());
        m_root = tmp("root");
        QVERIFY2(test::run_command("dpkg-deb -x " + shell_quoted(deb) + " " + shell_quoted(m_root), &out) == 0, out.c_str());
        // Its control data: a maintainer with an address.
        QVERIFY2(test::run_command("dpkg-deb -f " + shell_quoted(deb) + " Maintainer", &out) == 0, out.c_str());
        QVERIFY2(out.find('@') != std::string::npos && out.find('<') != std::string::npos, out.c_str());
    }

    void packageHoldsItsFiles()
    {
        for (const char* file : {"usr/bin/crucible-cli", "usr/share/doc/crucible/copyright"})
            QVERIFY2(fs::exists(m_root / file), file);
        if (fs::exists(test::binary_dir() / "bin" / "crucible")) {
            for (const char* file : {"usr/bin/crucible", "usr/share/applications/io.github.crucible.Crucible.desktop",
                                     "usr/share/metainfo/io.github.crucible.Crucible.metainfo.xml"})
                QVERIFY2(fs::exists(m_root / file), file);
        }
        // A build with CUDA ships the backend as a plugin, beside the programs' lib folder.
        if (fs::exists(test::binary_dir() / "lib" / "crucible" / "libcrucible_cuda.so"))
            QVERIFY(fs::exists(m_root / "usr/lib/crucible/libcrucible_cuda.so"));
    }

    void programsLinkNoCudaLibrary()
    {
        for (const char* program : {"usr/bin/crucible-cli", "usr/bin/crucible"}) {
            if (!fs::exists(m_root / program)) continue;
            std::string out;
            QVERIFY2(test::run_command("readelf -d " + shell_quoted(m_root / program), &out) == 0, out.c_str());
            for (const char* lib : {"libcuda", "libcublas", "libnvrtc"})
                QVERIFY2(out.find(lib) == std::string::npos, (std::string(program) + " needs " + lib + ":\n" + out).c_str());
        }
    }

    void cliStartsWithCudaHidden()
    {
        int code = 0;
        std::string out;
        if (!runHidden(shell_quoted(m_root / "usr/bin/crucible-cli") + " info", code, out))
            QSKIP("no unprivileged mount namespace here to hide the CUDA libraries in");
        QVERIFY2(code == 0, out.c_str());
        QVERIFY2(out.find("CUDA backend") != std::string::npos, out.c_str());
        QVERIFY2(out.find("not loaded (CPU only)") != std::string::npos, out.c_str());
        QVERIFY2(out.find("nano") != std::string::npos, out.c_str());
        QVERIFY2(out.find("error while loading shared libraries") == std::string::npos, out.c_str());
    }

    void installedPluginIsFoundWhereCudaIs()
    {
        if (!fs::exists(m_root / "usr/lib/crucible/libcrucible_cuda.so")) QSKIP("built without the CUDA backend");
        if (cuda_library_folders().empty()) QSKIP("no CUDA runtime on this machine");
        std::string out;
        const int code = test::run_command("env -u CRUCIBLE_CUDA_PLUGIN " + shell_quoted(m_root / "usr/bin/crucible-cli") + " info", &out);
        QVERIFY2(code == 0, out.c_str());
        QVERIFY2(out.find("loaded from " + (m_root / "usr/lib/crucible/libcrucible_cuda.so").string()) != std::string::npos,
                 out.c_str());
    }

    void guiHelpNeedsNoDisplay()
    {
        if (!fs::exists(m_root / "usr/bin/crucible")) QSKIP("built without the desktop app");
        int code = 0;
        std::string out;
        const std::string help = "env -u DISPLAY -u WAYLAND_DISPLAY QT_QPA_PLATFORM=xcb " +
                                 shell_quoted(m_root / "usr/bin/crucible") + " --help";
        if (!runHidden(help, code, out)) code = test::run_command(help, &out);
        QVERIFY2(code == 0, out.c_str());
        QVERIFY2(out.find("--benchmark-gui") != std::string::npos, out.c_str());
        QVERIFY2(out.find("--device") != std::string::npos, out.c_str());
    }
};

QTEST_APPLESS_MAIN(TestDebWithoutCuda)
#include "tst_deb_without_cuda.moc"
