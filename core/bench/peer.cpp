#include "core/bench/peer.h"

#include "kernels/error.h"

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <unistd.h>

namespace fs = std::filesystem;

namespace crucible {

namespace {

fs::path executable_dir()
{
    std::error_code ec;
    const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
    return ec ? fs::current_path() : exe.parent_path();
}

} // namespace

std::string find_peer_script(const std::string& explicit_path, const std::string& name)
{
    if (!explicit_path.empty()) return fs::exists(explicit_path) ? explicit_path : std::string();
    const fs::path dir = executable_dir();
    for (const fs::path& p : {dir / "peers" / name, dir / ".." / "share" / "crucible" / "peers" / name,
                              fs::current_path() / "tests" / "peers" / name})
        if (fs::exists(p)) return p.string();
    return {};
}

std::string peer_python()
{
    if (const char* p = std::getenv("CRUCIBLE_PYTHON"); p && *p) return p;
    // The first Python on PATH that has torch (a virtual environment, a
    // system with PyTorch installed by hand), else the distribution's.
    static const std::string found = [] {
        for (const char* candidate : {"python3", "/usr/bin/python3"}) {
            const std::string probe = std::string(candidate) + " -c 'import torch' > /dev/null 2>&1";
            if (std::system(probe.c_str()) == 0) return std::string(candidate);
        }
        return std::string(fs::exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3");
    }();
    return found;
}

std::vector<nlohmann::json> run_peer(const std::string& script, const std::string& args)
{
    const std::string cmd = peer_python() + " '" + script + "' " + args + " 2>&1";
    FILE* pipe = popen(cmd.c_str(), "r");
    if (!pipe) throw Error("cannot start the peer: " + cmd);
    std::string out;
    std::array<char, 4096> buf{};
    while (size_t n = fread(buf.data(), 1, buf.size(), pipe)) out.append(buf.data(), n);
    const int status = pclose(pipe);
    std::vector<nlohmann::json> rows;
    std::istringstream lines(out);
    std::string line;
    while (std::getline(lines, line)) {
        if (line.empty() || line[0] != '{') continue;
        auto j = nlohmann::json::parse(line, nullptr, false);
        if (!j.is_discarded()) rows.push_back(std::move(j));
    }
    if (status != 0 && rows.empty())
        throw Error("the PyTorch peer failed (" + cmd + "):\n" + out);
    return rows;
}

} // namespace crucible
