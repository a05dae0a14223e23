#include "app/cli/usage_errors.h"

#include <fmt/core.h>

#include <algorithm>
#include <cstdio>

namespace crucible::cli {

namespace {

// Optimal string alignment distance: insertions, deletions, substitutions
// and transpositions of neighbours ("stpes" → "steps" is one edit).
size_t edit_distance(const std::string& a, const std::string& b)
{
    std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
    for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
    for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
    for (size_t i = 1; i <= a.size(); ++i)
        for (size_t j = 1; j <= b.size(); ++j) {
            const size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
        }
    return d[a.size()][b.size()];
}

std::string command_path(const CLI::App* app)
{
    std::string path;
    for (const CLI::App* a = app; a && a->get_parent(); a = a->get_parent())
        path = a->get_name() + (path.empty() ? "" : " " + path);
    return path;
}

std::string help_hint(const CLI::App* app)
{
    const std::string path = command_path(app);
    return "Run `crucible-cli " + (path.empty() ? std::string() : path + " ") + "--help` to see what it takes.";
}

std::vector<std::string> subcommand_names(const CLI::App* app)
{
    std::vector<std::string> names;
    for (const CLI::App* sub : app->get_subcommands([](const CLI::App*) { return true; })) names.push_back(sub->get_name());
    return names;
}

// The options a command (and the commands above it) accept, as typed: "--steps", "-h".
std::vector<std::string> option_names(const CLI::App* app)
{
    std::vector<std::string> names;
    for (const CLI::App* a = app; a; a = a->get_parent())
        for (const CLI::Option* opt : a->get_options()) {
            for (const std::string& l : opt->get_lnames()) names.push_back("--" + l);
            for (const std::string& s : opt->get_snames()) names.push_back("-" + s);
        }
    std::sort(names.begin(), names.end());
    names.erase(std::unique(names.begin(), names.end()), names.end());
    return names;
}

// The command a user was typing: the deepest one the parser entered.
const CLI::App* deepest_command(const CLI::App* app)
{
    for (;;) {
        const auto parsed = app->get_subcommands();
        if (parsed.empty()) return app;
        app = parsed.back();
    }
}

// A word where a command was expected that names none: "crucible-cli trian".
const CLI::App* unknown_command(const CLI::App& app, int argc, const char* const* argv, std::string& word)
{
    const CLI::App* at = &app;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg.empty() || arg[0] == '-') return nullptr;   // options from here on
        const auto subs = at->get_subcommands([&](const CLI::App* s) { return s->check_name(arg); });
        if (!subs.empty()) {
            at = subs.front();
            continue;
        }
        const bool takes_words = !at->get_options([](const CLI::Option* o) { return o->get_positional(); }).empty();
        if (subcommand_names(at).empty() || takes_words) return nullptr;
        word = arg;
        return at;
    }
    return nullptr;
}

} // namespace

std::string nearest_name(const std::string& typed, const std::vector<std::string>& candidates)
{
    std::string best;
    size_t best_distance = SIZE_MAX;
    for (const std::string& c : candidates) {
        const size_t d = edit_distance(typed, c);
        if (d < best_distance) {
            best_distance = d;
            best = c;
        }
    }
    // Close enough to be a typo: about a third of the word may be wrong.
    const size_t bare = typed.size() - std::min(typed.find_first_not_of('-'), typed.size());
    const size_t allowed = std::max<size_t>(1, (bare + 2) / 3);
    if (best_distance <= allowed) return best;
    // A prefix of exactly one candidate ("--temp" for "--temperature").
    std::string prefixed;
    for (const std::string& c : candidates)
        if (typed.size() >= 3 && c.rfind(typed, 0) == 0) {
            if (!prefixed.empty()) return "";
            prefixed = c;
        }
    return prefixed;
}

int explain_parse_error(CLI::App& app, const CLI::ParseError& error, int argc, const char* const* argv)
{
    std::string word;
    if (const CLI::App* at = unknown_command(app, argc, argv, word)) {
        const auto names = subcommand_names(at);
        const std::string near = nearest_name(word, names);
        std::string list;
        for (const std::string& n : names) list += (list.empty() ? "" : ", ") + n;
        const std::string where = command_path(at);
        fmt::print(stderr, "error: '{}' is not a {}command.{}\n", word, where.empty() ? "" : where + " ",
                   near.empty() ? "" : " Did you mean '" + near + "'?");
        fmt::print(stderr, "The commands are: {}.\n{}\n", list, help_hint(at));
        return static_cast<int>(CLI::ExitCodes::ExtrasError);
    }
    // --help and --version arrive as "errors" with exit code 0.
    if (error.get_exit_code() == 0) return app.exit(error);
    // An unknown option is the mistake to name first: a missing --run or an
    // "argument not expected" is usually its consequence.
    const CLI::App* at = deepest_command(&app);
    const auto known = option_names(at);
    const std::string where = command_path(at);
    bool named = false;
    for (const std::string& extra : app.remaining(true)) {
        if (extra.size() < 2 || extra[0] != '-' || extra == "--") continue;   // the value of an unknown option
        const std::string typed = extra.substr(0, extra.find('='));
        const std::string near = nearest_name(typed, known);
        fmt::print(stderr, "error: {} has no option {}.{}\n", where.empty() ? "crucible-cli" : "'" + where + "'", typed,
                   near.empty() ? "" : " Did you mean " + near + "?");
        named = true;
    }
    if (!named) return app.exit(error);
    fmt::print(stderr, "{}\n", help_hint(at));
    return error.get_exit_code();
}

} // namespace crucible::cli
