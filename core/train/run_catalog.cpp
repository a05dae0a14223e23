#include "core/train/run_catalog.h"

#include "core/train/metrics.h"
#include "core/train/run_dir.h"
#include "core/train/run_lock.h"
#include "kernels/error.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>
#include <type_traits>

namespace fs = std::filesystem;

namespace crucible {

const char* to_string(RunStatus s)
{
    switch (s) {
    case RunStatus::finished: return "finished";
    case RunStatus::stopped: return "stopped";
    case RunStatus::failed: return "failed";
    case RunStatus::training: return "training";
    case RunStatus::interrupted: return "interrupted";
    }
    return "interrupted";
}

namespace {

int64_t modified_unix(const fs::path& p)
{
    std::error_code ec;
    const auto t = fs::last_write_time(p, ec);
    if (ec) return 0;
    const auto sys = std::chrono::file_clock::to_sys(t);
    return std::chrono::duration_cast<std::chrono::seconds>(sys.time_since_epoch()).count();
}

// The "type" of a metrics.jsonl line without parsing it: the engine writes
// compact JSON, so the key appears as "type":"step". Most lines are steps and
// only the last one matters for a summary, so only that one is parsed.
std::string_view record_type(std::string_view line)
{
    static constexpr std::string_view key = "\"type\":\"";
    const size_t at = line.find(key);
    if (at == std::string_view::npos) return {};
    const size_t begin = at + key.size();
    const size_t end = line.find('"', begin);
    if (end == std::string_view::npos) return {};
    return line.substr(begin, end - begin);
}

template <class T>
T value_or(const nlohmann::json& j, const char* key, T fallback)
{
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return fallback;
    if constexpr (std::is_integral_v<T>) {
        // A float out of T's range would convert with undefined behaviour.
        if (it->is_number_float()) {
            const double d = it->template get<double>();
            const bool fits = d >= double(std::numeric_limits<T>::min()) && d <= double(std::numeric_limits<T>::max());
            return fits ? T(d) : fallback;
        }
    }
    try {
        return it->get<T>();
    } catch (const nlohmann::json::exception&) {
        return fallback;
    }
}

EvalMetrics eval_from_json(const nlohmann::json& j)
{
    EvalMetrics e;
    e.step = value_or<int64_t>(j, "step", 0);
    e.loss = value_or<double>(j, "loss", 0.0);
    e.perplexity = value_or<double>(j, "perplexity", 0.0);
    e.accuracy = value_or<double>(j, "accuracy", 0.0);
    e.bits_per_byte = value_or<double>(j, "bits_per_byte", 0.0);
    e.tokens = value_or<int64_t>(j, "tokens", 0);
    e.elapsed_s = value_or<double>(j, "elapsed_s", 0.0);
    return e;
}

std::string read_text(const fs::path& file)
{
    std::ifstream in(file, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

// Calls f(line) for every non-empty line.
template <class F>
void for_each_line(const std::string& text, F&& f)
{
    std::string_view rest = text;
    while (!rest.empty()) {
        const size_t end = std::min(rest.find('\n'), rest.size());
        const std::string_view line = rest.substr(0, end);
        rest.remove_prefix(std::min(end + 1, rest.size()));
        if (!line.empty()) f(line);
    }
}

void check_is_run(const fs::path& root, const char* action)
{
    std::error_code ec;
    if (fs::is_symlink(root, ec))
        throw Error("cannot " + std::string(action) + " " + root.string() +
                    ": it is a symbolic link; act on the folder it points to instead");
    if (!fs::is_directory(root, ec)) throw Error("cannot " + std::string(action) + " " + root.string() + ": no such folder");
    if (!is_run_directory(root))
        throw Error("cannot " + std::string(action) + " " + root.string() +
                    ": it is not a Crucible run (it has no config.json)");
}

} // namespace

bool is_run_directory(const fs::path& path)
{
    return RunDirectory(path).exists();
}

RunRecord read_run(const fs::path& root)
{
    const RunDirectory run(root);
    if (!run.exists()) throw Error(root.string() + " is not a Crucible run (it has no config.json)");
    RunRecord r;
    r.root = root;
    r.name = root.filename().string();
    if (r.name.empty()) r.name = root.parent_path().filename().string();
    try {
        r.config = run.read_config();
        r.total_steps = r.config->train.steps;
    } catch (const Error& e) {
        r.problem = e.what();
    }
    r.checkpoints = run.checkpoint_steps();
    r.modified_unix = std::max(modified_unix(run.config_file()), modified_unix(run.metrics_file()));

    const std::string text = read_text(run.metrics_file());
    std::string_view last_step;
    bool ended = false;   // the last start record has its end record
    for_each_line(text, [&](std::string_view line) {
        const std::string_view type = record_type(line);
        if (type == "step") {
            last_step = line;
            return;
        }
        if (type != "eval" && type != "start" && type != "finished") return;
        const auto j = nlohmann::json::parse(line, nullptr, false);
        if (j.is_discarded() || !j.is_object()) return;
        if (type == "eval") {
            r.last_eval = eval_from_json(j);
        } else if (type == "start") {
            // A resumed run starts again: its outcome is the one after this.
            ended = false;
            r.error.clear();
            r.device = value_or<std::string>(j, "device", r.device);
            r.parameters = value_or<int64_t>(j, "parameters", r.parameters);
        } else {
            const std::string outcome = value_or<std::string>(j, "outcome", "");
            ended = outcome == "finished" || outcome == "stopped" || outcome == "failed";
            if (ended)
                r.status = outcome == "finished" ? RunStatus::finished
                           : outcome == "stopped" ? RunStatus::stopped
                                                  : RunStatus::failed;
            r.error = value_or<std::string>(j, "error", "");
        }
    });
    if (!ended) r.status = RunLock::held_by_anyone(run.root()) ? RunStatus::training : RunStatus::interrupted;
    if (!last_step.empty()) {
        const auto j = nlohmann::json::parse(last_step, nullptr, false);
        if (!j.is_discarded() && j.is_object()) {
            r.steps_done = value_or<int64_t>(j, "step", 0);
            r.final_loss = value_or<double>(j, "loss", 0.0);
            r.elapsed_s = value_or<double>(j, "elapsed_s", 0.0);
            r.tokens_seen = value_or<int64_t>(j, "tokens_seen", 0);
            r.tokens_per_s = r.elapsed_s > 0 ? double(r.tokens_seen) / r.elapsed_s : 0.0;
        }
    }
    // An evaluation from steps that a resume has since replaced is stale.
    if (r.last_eval && r.last_eval->step > r.steps_done) r.last_eval.reset();
    return r;
}

std::vector<RunRecord> list_runs(const fs::path& folder)
{
    std::vector<RunRecord> runs;
    std::error_code ec;
    if (!fs::is_directory(folder, ec)) return runs;
    if (is_run_directory(folder)) {
        runs.push_back(read_run(folder));
        return runs;
    }
    for (const auto& entry : fs::directory_iterator(folder, ec)) {
        const std::string name = entry.path().filename().string();
        if (name.empty() || name[0] == '.') continue;   // hidden, and the engine's temporary folders
        if (!entry.is_directory(ec) || !is_run_directory(entry.path())) continue;
        try {
            runs.push_back(read_run(entry.path()));
        } catch (const Error&) {
            // Removed between listing and reading: not a run any more.
        }
    }
    std::sort(runs.begin(), runs.end(), [](const RunRecord& a, const RunRecord& b) {
        return a.modified_unix != b.modified_unix ? a.modified_unix > b.modified_unix : a.name < b.name;
    });
    return runs;
}

namespace {

// RunMetrics' member of each metric, in the order of enum Metric.
using SeriesMember = MetricSeries RunMetrics::*;
constexpr std::array<SeriesMember, kMetricCount> kSeriesOf = {
    &RunMetrics::loss,          &RunMetrics::val_loss, &RunMetrics::val_perplexity, &RunMetrics::val_accuracy,
    &RunMetrics::val_bits_per_byte, &RunMetrics::lr,   &RunMetrics::grad_norm,      &RunMetrics::tokens_per_s,
    &RunMetrics::mfu,           &RunMetrics::memory_bytes, &RunMetrics::comm_share,
};

} // namespace

const MetricSeries& RunMetrics::operator[](Metric m) const { return this->*kSeriesOf[size_t(m)]; }
MetricSeries& RunMetrics::operator[](Metric m) { return this->*kSeriesOf[size_t(m)]; }

const MetricSeries* RunMetrics::find(const std::string& key) const
{
    const MetricInfo* m = find_metric(key);
    return m ? &(*this)[m->id] : nullptr;
}

const std::vector<MetricKey>& run_metric_keys()
{
    static const std::vector<MetricKey> keys = [] {
        std::vector<MetricKey> k;
        for (const MetricInfo& m : metrics()) k.push_back({m.key.data(), m.label.data()});
        return k;
    }();
    return keys;
}

namespace {

// Drops the points at or after `step`: they are being logged again.
void truncate_from(MetricSeries& s, double step)
{
    size_t n = s.step.size();
    while (n > 0 && s.step[n - 1] >= step) --n;
    s.step.resize(n);
    s.time_s.resize(n);
    s.value.resize(n);
}

void push(MetricSeries& s, double step, double time, double value)
{
    s.step.push_back(step);
    s.time_s.push_back(time);
    s.value.push_back(value);
}

} // namespace

RunMetrics read_run_metrics(const fs::path& root)
{
    RunMetrics m;
    const RunDirectory run(root);
    const std::string text = read_text(run.metrics_file());
    std::vector<std::pair<MetricSeries*, std::string>> per_step, per_eval;   // series and its record's field
    for (const MetricInfo& info : metrics())
        (info.record == MetricRecord::step ? per_step : per_eval).emplace_back(&m[info.id], std::string(info.field));

    // Evaluations are placed on the time axis at the training time of their step.
    auto time_at_step = [&](double step) {
        const auto& steps = m.loss.step;
        auto it = std::upper_bound(steps.begin(), steps.end(), step);
        if (it == steps.begin()) return 0.0;
        return m.loss.time_s[size_t(it - steps.begin()) - 1];
    };

    for_each_line(text, [&](std::string_view line) {
        const std::string_view type = record_type(line);
        if (type != "step" && type != "eval" && type != "sample") return;
        const auto j = nlohmann::json::parse(line, nullptr, false);
        if (j.is_discarded() || !j.is_object()) return;
        const double step = double(value_or<int64_t>(j, "step", 0));
        if (type == "step") {
            if (!m.loss.step.empty() && step <= m.loss.step.back()) {
                for (auto& [s, field] : per_step) truncate_from(*s, step);
                for (auto& [s, field] : per_eval) truncate_from(*s, step);
                std::erase_if(m.samples, [&](const RunSample& s) { return double(s.step) >= step; });
            }
            const double t = value_or<double>(j, "elapsed_s", 0.0);
            for (auto& [s, field] : per_step) push(*s, step, t, value_or<double>(j, field.c_str(), 0.0));
        } else if (type == "eval") {
            for (auto& [s, field] : per_eval)
                if (!s->step.empty() && step <= s->step.back()) truncate_from(*s, step);
            const double t = time_at_step(step);
            for (auto& [s, field] : per_eval) push(*s, step, t, value_or<double>(j, field.c_str(), 0.0));
        } else {
            m.samples.push_back({int64_t(step), value_or<std::string>(j, "prompt", ""),
                                 value_or<std::string>(j, "text", "")});
        }
    });
    return m;
}

fs::path rename_run(const fs::path& root, const std::string& new_name)
{
    check_is_run(root, "rename");
    if (new_name.empty()) throw Error("the new run name is empty; type a name");
    if (new_name == "." || new_name == ".." || new_name.find('/') != std::string::npos ||
        new_name.find('\0') != std::string::npos)
        throw Error("\"" + new_name + "\" is not a folder name: use letters, digits, '-', '_' or '.', without '/'");
    if (new_name[0] == '.') throw Error("a run name may not start with '.': such folders are hidden from the run list");
    if (new_name.size() > 200) throw Error("the run name is too long; keep it under 200 characters");
    const fs::path target = root.parent_path() / new_name;
    if (target == root) return root;
    std::error_code ec;
    if (fs::exists(fs::symlink_status(target, ec)))
        throw Error("cannot rename to \"" + new_name + "\": " + target.string() + " already exists; choose another name");
    fs::rename(root, target, ec);
    if (ec) throw Error("cannot rename " + root.string() + " to " + new_name + ": " + ec.message());
    return target;
}

void delete_run(const fs::path& root)
{
    check_is_run(root, "delete");
    // What the engine writes at the top of a run directory; anything else is
    // the user's, and deleting it is not our call.
    static const std::set<std::string> known = {"config.json", "metrics.jsonl", "tokenizer.model", "checkpoints",
                                                "chat.json"};
    auto engine_written = [&](const std::string& name) {
        if (known.count(name)) return true;
        // Temporary files and folders of atomic writes: "<name>.tmp-<pid>-<hex>".
        const size_t tmp = name.find(".tmp-");
        return tmp != std::string::npos && known.count(name.substr(0, tmp));
    };
    std::vector<std::string> foreign;
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(root, ec)) {
        const std::string name = entry.path().filename().string();
        if (!engine_written(name)) foreign.push_back(name);
    }
    if (ec) throw Error("cannot read " + root.string() + ": " + ec.message());
    if (fs::is_symlink(root / "checkpoints", ec)) foreign.push_back("checkpoints (a symbolic link)");
    if (!foreign.empty()) {
        std::string list;
        for (size_t i = 0; i < foreign.size() && i < 5; ++i) list += (i ? ", " : "") + foreign[i];
        if (foreign.size() > 5) list += ", and " + std::to_string(foreign.size() - 5) + " more";
        throw Error("not deleting " + root.string() + ": it also holds files Crucible did not write (" + list +
                    "). Move them elsewhere first, or delete the folder yourself");
    }
    fs::remove_all(root, ec);
    if (ec) throw Error("could not delete all of " + root.string() + ": " + ec.message());
}

} // namespace crucible
