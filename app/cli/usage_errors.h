// Usage mistakes on the command line, explained: an unknown command or
// option is named with the nearest known one ("did you mean --steps?", as
// git does) and the --help to read; other parse errors print as CLI11 words
// them. Returns the exit code.
#pragma once

#include <CLI/CLI.hpp>

#include <string>
#include <vector>

namespace crucible::cli {

int explain_parse_error(CLI::App& app, const CLI::ParseError& error, int argc, const char* const* argv);

// The candidate closest to `typed` by edit distance (a swap of two
// neighbouring letters counts as one edit), or "" when none is close enough
// to be what was meant.
std::string nearest_name(const std::string& typed, const std::vector<std::string>& candidates);

} // namespace crucible::cli
