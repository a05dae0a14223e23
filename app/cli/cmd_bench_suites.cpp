// crucible-cli bench <suite>: the suites of core/bench, one subcommand each,
// whose flags come from the suite's own options (--widths for norms' widths);
// `bench all` runs every suite, `bench suites` lists them, `bench compare A B`
// pairs the rows of two results files, `bench claims FILE...` judges the
// deep dive's claims from their rows.
#include "app/cli/bench_sink.h"
#include "app/cli/commands.h"

#include "core/bench/claims.h"
#include "core/bench/results_file.h"
#include "kernels/error.h"

#include <fmt/core.h>

#include <cmath>
#include <map>
#include <memory>

namespace crucible::cli {

using namespace crucible::bench;

namespace {

std::string flag_name(const std::string& key)
{
    std::string s = key;
    for (char& ch : s)
        if (ch == '_') ch = '-';
    return s;
}

// What every suite command takes besides the suite's own options.
struct CommonFlags {
    std::string device = "cpu", size = "standard", out;
    int threads = 0;
    bool peer = false, json = false;
};

void add_common_flags(CLI::App* cmd, CommonFlags& f)
{
    cmd->add_option("--device", f.device, "cpu or cuda")->capture_default_str();
    cmd->add_option("--size", f.size, "standard (sized for the device) or tiny (seconds, for a quick look)")
        ->capture_default_str();
    cmd->add_option("--threads", f.threads, "CPU threads (0 = all cores)");
    cmd->add_option("--out", f.out, "Also write the results to this file (JSON lines, with the machine's facts)");
    cmd->add_flag("--json", f.json, "Print each row as a JSON line instead of tables");
}

SuiteRunOptions run_options(const CommonFlags& f)
{
    SuiteRunOptions o;
    if (f.device == "cuda") o.request.device = DeviceKind::cuda;
    else if (f.device != "cpu") throw Error("--device must be cpu or cuda");
    const auto size = size_class_from_string(f.size);
    if (!size) throw Error("--size must be standard or tiny, got \"" + f.size + "\"");
    o.request.size = *size;
    o.request.threads = f.threads;
    o.request.peer = f.peer;
    o.out = f.out;
    o.json = f.json;
    return o;
}

void add_suite_command(CLI::App& bench, const SuiteInfo& suite, int& exit_code)
{
    struct State {
        CommonFlags common;
        std::map<std::string, std::string> values;
    };
    auto st = std::make_shared<State>();
    auto* cmd = bench.add_subcommand(flag_name(suite.id), suite.title);
    cmd->footer(suite.measures);
    add_common_flags(cmd, st->common);
    if (suite.has_peer)
        cmd->add_flag("--peer", st->common.peer, "Also run the PyTorch peer on the same shapes");
    for (const SuiteOption& o : suite.options)
        cmd->add_option("--" + flag_name(o.key), st->values[o.key],
                        fmt::format("{} (CPU: {}, GPU: {}, tiny: {})", o.description,
                                    o.cpu_default.empty() ? "-" : o.cpu_default,
                                    o.cuda_default.empty() ? "-" : o.cuda_default, o.tiny.empty() ? "-" : o.tiny));
    const std::string id = suite.id;
    cmd->callback([st, id, cmd, &exit_code] {
        try {
            SuiteRunOptions o = run_options(st->common);
            for (const auto& [key, value] : st->values)
                if (cmd->count("--" + flag_name(key)) > 0) o.request.options[key] = value;
            exit_code = run_suites({id}, o);
        } catch (const std::exception& e) {
            exit_code = report_error(e);
        }
    });
}

std::string tags_text(const std::map<std::string, std::string>& tags)
{
    std::string s;
    for (const auto& [k, v] : tags) s += (s.empty() ? "" : " ") + k + "=" + v;
    return s;
}

int compare(const std::string& a_path, const std::string& b_path, bool json)
{
    const ResultsFile a = read_results(a_path), b = read_results(b_path);
    const auto values = compare_results(a, b);
    if (values.empty())
        throw Error("the two files share no measurement (same suite, series, sizes and metric): nothing to compare");
    if (json) {
        for (const auto& v : values)
            fmt::print("{}\n", nlohmann::json{{"suite", v.suite}, {"series", v.series}, {"tags", v.tags},
                                              {"x_name", v.x_name}, {"x", v.x}, {"metric", v.metric},
                                              {"unit", v.unit}, {"a", v.a}, {"b", v.b}, {"ratio", v.ratio}}
                                   .dump());
        return 0;
    }
    fmt::print("A: {} — {} ({}, {}, revision {})\nB: {} — {} ({}, {}, revision {})\n", a_path, a.machine.device,
               a.machine.cpu_model, a.started, a.machine.git_revision, b_path, b.machine.device, b.machine.cpu_model,
               b.started, b.machine.git_revision);
    BenchTable t;
    t.name = "bench compare";
    t.columns = {{"a", "A", 4}, {"b", "B", 4}, {"ratio", "B/A", 3}};
    for (const auto& v : values) {
        std::string label = v.suite + " " + v.series;
        if (!v.tags.empty()) label += " " + tags_text(v.tags);
        label += fmt::format(" {}={:g} {}{}", v.x_name, v.x, v.metric, v.unit.empty() ? "" : " (" + v.unit + ")");
        t.rows.push_back({label, {v.a, v.b, v.ratio}});
    }
    fmt::print("{}", t.to_text());
    return 0;
}

int print_claims(const std::vector<std::string>& paths)
{
    std::vector<Row> rows;
    for (const std::string& p : paths) {
        const ResultsFile f = read_results(p);
        rows.insert(rows.end(), f.rows.begin(), f.rows.end());
    }
    for (const ClaimResult& c : evaluate_claims(rows)) {
        fmt::print("{:<48} {:<16} {}{}\n", c.claim.text, to_string(c.verdict),
                   c.measured.empty() ? "(run the " + c.claim.suite + " suite)" : c.measured,
                   c.turns_at.empty() ? "" : "; " + c.turns_at);
    }
    return 0;
}

} // namespace

void add_bench_suite_commands(CLI::App& bench, int& exit_code)
{
    // attention and train keep their own commands (their tables and flags
    // predate the suites); the rest get one generated from the registry.
    for (const SuiteInfo& s : suites())
        if (s.id != "attention" && s.id != "train" && s.id != "quant") add_suite_command(bench, s, exit_code);

    auto all = std::make_shared<CommonFlags>();
    auto* all_cmd = bench.add_subcommand("all", "Every suite in turn, at the sizes chosen for the device");
    add_common_flags(all_cmd, *all);
    all_cmd->add_flag("--peer", all->peer, "Also run the PyTorch peers where a suite has one");
    all_cmd->callback([all, &exit_code] {
        try {
            std::vector<std::string> ids;
            const bool cuda = all->device == "cuda";
            for (const SuiteInfo& s : suites())
                if (cuda ? s.cuda : s.cpu) ids.push_back(s.id);
            exit_code = run_suites(ids, run_options(*all));
        } catch (const std::exception& e) {
            exit_code = report_error(e);
        }
    });

    auto* list = bench.add_subcommand("suites", "List the benchmark suites and their options");
    list->callback([&exit_code] {
        for (const SuiteInfo& s : suites()) {
            fmt::print("{:<11} {}\n            {}\n", s.id, s.title, s.measures);
            for (const SuiteOption& o : s.options)
                fmt::print("            --{:<13} {} (CPU: {}, GPU: {}, tiny: {})\n", flag_name(o.key), o.description,
                           o.cpu_default.empty() ? "-" : o.cpu_default, o.cuda_default.empty() ? "-" : o.cuda_default,
                           o.tiny.empty() ? "-" : o.tiny);
        }
        exit_code = 0;
    });

    auto claim_files = std::make_shared<std::vector<std::string>>();
    auto* claims_cmd = bench.add_subcommand("claims", "The deep dive's claims beside what results files measured");
    claims_cmd->add_option("FILES", *claim_files, "Results files (--out)")->required();
    claims_cmd->callback([claim_files, &exit_code] {
        try {
            exit_code = print_claims(*claim_files);
        } catch (const std::exception& e) {
            exit_code = report_error(e);
        }
    });

    auto files = std::make_shared<std::pair<std::string, std::string>>();
    auto json = std::make_shared<bool>(false);
    auto* cmp = bench.add_subcommand("compare", "Pair the rows of two results files (--out) and print B/A ratios");
    cmp->add_option("A", files->first, "First results file")->required();
    cmp->add_option("B", files->second, "Second results file")->required();
    cmp->add_flag("--json", *json, "Print JSON lines instead of a table");
    cmp->callback([files, json, &exit_code] {
        try {
            exit_code = compare(files->first, files->second, *json);
        } catch (const std::exception& e) {
            exit_code = report_error(e);
        }
    });
}

} // namespace crucible::cli
