// Benchmark results on disk: one JSON object per line. The first line is a
// header with the format tag, the machine's facts and when the run started;
// every further line is one Row (suite.h) or a note. A file written on a GPU
// server opens on a laptop; two files can be compared row by row.
//
//   {"format":"crucible-bench","version":1,"machine":{...},"started":"2026-..."}
//   {"row":{"suite":"attention","series":"flash","x_name":"T","x":1024,...}}
//   {"note":{"suite":"attention","text":"..."}}
#pragma once

#include "core/bench/suite.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>
#include <vector>

namespace crucible {
class Backend;
}

namespace crucible::bench {

inline constexpr const char* kResultsFormat = "crucible-bench";
inline constexpr int kResultsVersion = 1;

// What was measured on: enough to tell two results files apart.
struct MachineFacts {
    std::string cpu_model;         // "AMD EPYC 7B13"
    int cpu_cores = 0;             // hardware threads
    std::string device;            // the backend's name ("NVIDIA H200", "CPU (2 threads)")
    std::string gpu_name;          // empty without a GPU
    std::string driver;            // GPU driver version, empty when unknown
    std::string cuda;              // CUDA runtime version, empty when unknown
    std::string clocks;            // "1980 MHz SM, 3201 MHz memory" where the device says
    std::string build_type;        // "Release", "RelWithDebInfo", ...
    std::string git_revision;      // at configure time, "unknown" outside a checkout
    std::string version;           // crucible's version
    double peak_tflops = 0.0;      // hardware_limits() of the device
    double bandwidth_gbs = 0.0;
    std::string limits_source;

    nlohmann::json to_json() const;
    static MachineFacts from_json(const nlohmann::json& j);
};

// The facts of this machine and (when given) the backend's device, limits included.
MachineFacts collect_machine_facts(Backend* backend);

nlohmann::json row_to_json(const Row& r);
Row row_from_json(const nlohmann::json& j);   // throws Error on a malformed row

struct ResultsFile {
    MachineFacts machine;
    std::string started;                   // ISO 8601 UTC
    std::vector<Row> rows;
    std::vector<std::string> notes;

    std::string to_jsonl() const;
};

// Writes the whole file atomically (temporary name, then rename): a reader
// never sees half a file. Call it again as rows arrive to keep it current.
void write_results(const std::filesystem::path& path, const ResultsFile& file);
// Throws Error saying what is wrong (not a results file, cut short, a newer
// version) and what to do.
ResultsFile read_results(const std::filesystem::path& path);
ResultsFile parse_results(const std::string& text, const std::string& name_for_messages);

// A sink that records what passes through it into a results file, rewritten
// (atomically) after every row, so a run stopped halfway keeps what it
// measured; it forwards everything to `next`. Notes are kept with the suite's
// id in front.
class ResultsRecorder : public RowSink {
public:
    ResultsRecorder(std::filesystem::path path, MachineFacts machine, RowSink* next = nullptr);
    void started(const SuiteInfo& suite, const std::string& device) override;
    void row(const Row& r) override;
    void progress(double fraction, const std::string& what) override;
    void note(const std::string& text) override;
    void finished(const std::string& suite_id, Outcome outcome, const std::string& message) override;
    const ResultsFile& file() const { return m_file; }
    const std::filesystem::path& path() const { return m_path; }

private:
    void save();
    std::filesystem::path m_path;
    ResultsFile m_file;
    RowSink* m_next;
    std::string m_suite;
};

// Where the app keeps a run's results: <app data>/benchmarks/<stamp>-<suites>.jsonl
// ($XDG_DATA_HOME/crucible/benchmarks, else ~/.local/share/crucible/benchmarks).
std::filesystem::path default_results_dir();
std::filesystem::path new_results_path(const std::string& what);   // a fresh name in that folder
std::string utc_now_iso();

// Rows of two files paired by suite, series, tags, x and metric.
struct ComparedValue {
    std::string suite, series, x_name, metric, unit;
    double x = 0.0;
    std::map<std::string, std::string> tags;
    double a = 0.0, b = 0.0;
    double ratio = 0.0;                    // b / a
};
std::vector<ComparedValue> compare_results(const ResultsFile& a, const ResultsFile& b);

} // namespace crucible::bench
