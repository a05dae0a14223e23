#include "core/util/paths.h"

#include <cstdlib>

namespace fs = std::filesystem;

namespace crucible {

namespace {

fs::path home()
{
    const char* h = std::getenv("HOME");
    return h && *h ? fs::path(h) : fs::temp_directory_path();
}

fs::path env_path(const char* name)
{
    const char* v = std::getenv(name);
    return v && *v ? fs::path(v) : fs::path();
}

} // namespace

fs::path default_cache_dir()
{
    if (auto p = env_path("CRUCIBLE_CACHE_DIR"); !p.empty()) return p;
    if (auto p = env_path("XDG_CACHE_HOME"); !p.empty()) return p / "crucible";
    return home() / ".cache" / "crucible";
}

fs::path default_runs_dir()
{
    if (auto p = env_path("XDG_DATA_HOME"); !p.empty()) return p / "crucible" / "runs";
    return home() / ".local" / "share" / "crucible" / "runs";
}

} // namespace crucible
