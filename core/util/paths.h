// Where the engine keeps things on disk by default.
#pragma once

#include <filesystem>

namespace crucible {

// $CRUCIBLE_CACHE_DIR, else $XDG_CACHE_HOME/crucible, else ~/.cache/crucible.
std::filesystem::path default_cache_dir();
// $XDG_DATA_HOME/crucible/runs, else ~/.local/share/crucible/runs.
std::filesystem::path default_runs_dir();

} // namespace crucible
