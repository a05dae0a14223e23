#include "core/bench/results_file.h"

#include "core/bench/hardware_limits.h"
#include "core/io/file_util.h"
#include "core/util/paths.h"
#include "kernels/backend.h"
#include "kernels/backend_factory.h"
#include "kernels/error.h"

#include <fmt/core.h>

#include <chrono>
#include <cmath>
#include <ctime>
#include <fstream>
#include <sstream>

#ifndef CRUCIBLE_GIT_REVISION
#define CRUCIBLE_GIT_REVISION "unknown"
#endif
#ifndef CRUCIBLE_BUILD_TYPE
#define CRUCIBLE_BUILD_TYPE "unknown"
#endif

namespace fs = std::filesystem;

namespace crucible::bench {

namespace {

std::string cpu_model()
{
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind("model name", 0) == 0)
            if (const auto colon = line.find(':'); colon != std::string::npos) {
                std::string v = line.substr(colon + 1);
                v.erase(0, v.find_first_not_of(' '));
                return v;
            }
    return "unknown";
}

std::string detail(const DeviceFacts& f, const std::string& key)
{
    for (const auto& [k, v] : f.details)
        if (k == key) return v;
    return {};
}

} // namespace

nlohmann::json MachineFacts::to_json() const
{
    return {{"cpu_model", cpu_model},   {"cpu_cores", cpu_cores}, {"device", device},
            {"gpu_name", gpu_name},     {"driver", driver},       {"cuda", cuda},
            {"clocks", clocks},         {"build_type", build_type}, {"git_revision", git_revision},
            {"version", version},       {"peak_tflops", peak_tflops}, {"bandwidth_gbs", bandwidth_gbs},
            {"limits_source", limits_source}};
}

MachineFacts MachineFacts::from_json(const nlohmann::json& j)
{
    if (!j.is_object()) throw Error("the machine facts are not an object");
    MachineFacts m;
    m.cpu_model = j.value("cpu_model", "");
    m.cpu_cores = j.value("cpu_cores", 0);
    m.device = j.value("device", "");
    m.gpu_name = j.value("gpu_name", "");
    m.driver = j.value("driver", "");
    m.cuda = j.value("cuda", "");
    m.clocks = j.value("clocks", "");
    m.build_type = j.value("build_type", "");
    m.git_revision = j.value("git_revision", "");
    m.version = j.value("version", "");
    m.peak_tflops = j.value("peak_tflops", 0.0);
    m.bandwidth_gbs = j.value("bandwidth_gbs", 0.0);
    m.limits_source = j.value("limits_source", "");
    return m;
}

MachineFacts collect_machine_facts(Backend* backend)
{
    MachineFacts m;
    m.cpu_model = cpu_model();
    m.cpu_cores = default_cpu_threads();
    m.build_type = CRUCIBLE_BUILD_TYPE;
    m.git_revision = CRUCIBLE_GIT_REVISION;
    m.version = CRUCIBLE_VERSION;
    if (!backend) return m;
    m.device = backend->name();
    const DeviceFacts f = backend->facts();
    if (backend->device() == DeviceKind::cuda) {
        m.gpu_name = f.name;
        m.driver = detail(f, "driver CUDA version");
        m.cuda = detail(f, "runtime CUDA version");
        m.clocks = detail(f, "clocks");
    } else {
        m.clocks = detail(f, "Clock");
    }
    const HardwareLimits h = hardware_limits(*backend);
    m.peak_tflops = h.peak_tflops;
    m.bandwidth_gbs = h.bandwidth_gbs;
    m.limits_source = h.source;
    return m;
}

nlohmann::json row_to_json(const Row& r)
{
    nlohmann::json y = nlohmann::json::array();
    for (const Measure& m : r.y) y.push_back({{"key", m.key}, {"value", m.value}, {"unit", m.unit}});
    return {{"suite", r.suite}, {"series", r.series}, {"x_name", r.x_name}, {"x", r.x},
            {"x_unit", r.x_unit}, {"tags", r.tags},     {"y", y}};
}

Row row_from_json(const nlohmann::json& j)
{
    try {
        Row r;
        r.suite = j.at("suite").get<std::string>();
        r.series = j.at("series").get<std::string>();
        r.x_name = j.at("x_name").get<std::string>();
        r.x = j.at("x").get<double>();
        r.x_unit = j.value("x_unit", "");
        r.tags = j.value("tags", std::map<std::string, std::string>{});
        for (const auto& m : j.at("y"))
            r.y.push_back(Measure{m.at("key").get<std::string>(), m.at("value").get<double>(), m.value("unit", "")});
        return r;
    } catch (const nlohmann::json::exception& e) {
        throw Error(std::string("a row is malformed: ") + e.what());
    }
}

std::string ResultsFile::to_jsonl() const
{
    std::string out = nlohmann::json{{"format", kResultsFormat},
                                     {"version", kResultsVersion},
                                     {"machine", machine.to_json()},
                                     {"started", started}}
                          .dump() +
                      "\n";
    for (const Row& r : rows) out += nlohmann::json{{"row", row_to_json(r)}}.dump() + "\n";
    for (const std::string& n : notes) out += nlohmann::json{{"note", n}}.dump() + "\n";
    return out;
}

void write_results(const fs::path& path, const ResultsFile& file)
{
    std::error_code ec;
    if (path.has_parent_path()) fs::create_directories(path.parent_path(), ec);
    if (ec)
        throw Error("cannot create the folder " + path.parent_path().string() + " for the results (" + ec.message() +
                    "): choose another place with --out");
    write_file_atomic(path, file.to_jsonl());
}

ResultsFile parse_results(const std::string& text, const std::string& name)
{
    const std::string not_results =
        name + " is not a Crucible benchmark results file (written by `crucible-cli bench ... --out FILE` or the "
               "Benchmarks page); open one of those";
    std::istringstream in(text);
    std::string line;
    if (!std::getline(in, line)) throw Error(name + " is empty: " + not_results.substr(name.size() + 1));
    const auto header = nlohmann::json::parse(line, nullptr, false);
    if (header.is_discarded() || !header.is_object() || header.value("format", "") != kResultsFormat)
        throw Error(not_results);
    const int version = header.value("version", 0);
    if (version > kResultsVersion)
        throw Error(fmt::format("{} was written by a newer Crucible (results version {}, this one reads {}): "
                                "update Crucible to open it",
                                name, version, kResultsVersion));
    ResultsFile f;
    f.machine = MachineFacts::from_json(header.value("machine", nlohmann::json::object()));
    f.started = header.value("started", "");
    int number = 1;
    while (std::getline(in, line)) {
        ++number;
        if (line.empty()) continue;
        const auto j = nlohmann::json::parse(line, nullptr, false);
        if (j.is_discarded() || !j.is_object())
            throw Error(fmt::format("{} is cut short or damaged at line {}: it holds no complete record there. "
                                    "Run the benchmark again to get a whole file",
                                    name, number));
        try {
            if (j.contains("row")) f.rows.push_back(row_from_json(j["row"]));
            else if (j.contains("note")) f.notes.push_back(j["note"].get<std::string>());
            else throw Error("it is neither a row nor a note");
        } catch (const std::exception& e) {
            throw Error(fmt::format("{} line {}: {}", name, number, e.what()));
        }
    }
    if (!text.empty() && text.back() != '\n')
        throw Error(fmt::format("{} is cut short: its last line (line {}) does not end. Run the benchmark again to "
                                "get a whole file",
                                name, number));
    return f;
}

ResultsFile read_results(const fs::path& path) { return parse_results(read_file(path), path.string()); }

ResultsRecorder::ResultsRecorder(fs::path path, MachineFacts machine, RowSink* next)
    : m_path(std::move(path)), m_next(next)
{
    m_file.machine = std::move(machine);
    m_file.started = utc_now_iso();
    save();   // a bad path fails now, before anything is measured
}

void ResultsRecorder::save() { write_results(m_path, m_file); }

void ResultsRecorder::started(const SuiteInfo& suite, const std::string& device)
{
    m_suite = suite.id;
    if (m_next) m_next->started(suite, device);
}

void ResultsRecorder::row(const Row& r)
{
    m_file.rows.push_back(r);
    save();
    if (m_next) m_next->row(r);
}

void ResultsRecorder::progress(double fraction, const std::string& what)
{
    if (m_next) m_next->progress(fraction, what);
}

void ResultsRecorder::note(const std::string& text)
{
    m_file.notes.push_back(m_suite.empty() ? text : m_suite + ": " + text);
    if (m_next) m_next->note(text);
}

void ResultsRecorder::finished(const std::string& suite_id, Outcome outcome, const std::string& message)
{
    if (outcome != Outcome::completed)
        m_file.notes.push_back(suite_id + ": " + std::string(to_string(outcome)) + (message.empty() ? "" : ": " + message));
    save();
    if (m_next) m_next->finished(suite_id, outcome, message);
}

fs::path default_results_dir() { return default_runs_dir().parent_path() / "benchmarks"; }

std::string utc_now_iso()
{
    const std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

fs::path new_results_path(const std::string& what)
{
    const std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
    std::tm tm{};
    gmtime_r(&t, &tm);
    char stamp[32];
    std::strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tm);
    std::string safe;
    for (char ch : what) safe += std::isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '_' ? ch : '_';
    const fs::path dir = default_results_dir();
    fs::path p = dir / (std::string(stamp) + "-" + safe + ".jsonl");
    for (int i = 2; fs::exists(p); ++i) p = dir / fmt::format("{}-{}-{}.jsonl", stamp, safe, i);
    return p;
}

std::vector<ComparedValue> compare_results(const ResultsFile& a, const ResultsFile& b)
{
    std::vector<ComparedValue> out;
    for (const Row& ra : a.rows)
        for (const Row& rb : b.rows) {
            if (ra.suite != rb.suite || ra.series != rb.series || ra.x_name != rb.x_name || ra.x != rb.x ||
                ra.tags != rb.tags)
                continue;
            for (const Measure& ma : ra.y)
                if (const auto vb = rb.get(ma.key)) {
                    ComparedValue c{ra.suite, ra.series, ra.x_name, ma.key, ma.unit, ra.x, ra.tags, ma.value, *vb,
                                    ma.value != 0.0 ? *vb / ma.value : NAN};
                    out.push_back(std::move(c));
                }
        }
    return out;
}

} // namespace crucible::bench
