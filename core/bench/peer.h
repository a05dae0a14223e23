// Running a PyTorch peer script in the same command as a benchmark, so every
// speed claim comes with a ratio against a peer measured on the same machine.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace crucible {

// Finds a peer script by name: an explicit path, else next to the executable
// (peers/NAME, ../share/crucible/peers/NAME), else tests/peers/NAME under the
// current directory. Empty when not found.
std::string find_peer_script(const std::string& explicit_path, const std::string& name);
// The Python with torch: $CRUCIBLE_PYTHON, else the first of python3 (PATH)
// and /usr/bin/python3 that imports torch.
std::string peer_python();
// Runs the script with arguments; returns every JSON object it printed, one per
// line. Throws Error with its output when it fails.
std::vector<nlohmann::json> run_peer(const std::string& script, const std::string& args);

} // namespace crucible
