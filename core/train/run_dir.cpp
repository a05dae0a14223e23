#include "core/train/run_dir.h"

#include "core/io/file_util.h"
#include "core/io/hf_model_dir.h"
#include "kernels/error.h"

#include <algorithm>
#include <sstream>

namespace fs = std::filesystem;

namespace crucible {

fs::path RunDirectory::checkpoint_dir(int64_t step) const
{
    return checkpoints_dir() / ("step_" + std::to_string(step));
}

bool RunDirectory::exists() const
{
    std::error_code ec;
    return fs::is_regular_file(config_file(), ec);
}

RunConfig RunDirectory::read_config() const
{
    const std::string text = read_file(config_file());
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
        throw Error(config_file().string() + " is not valid JSON (" + e.what() + "); fix or restore the file");
    }
    try {
        return run_config_from_json(j);
    } catch (const Error& e) {
        throw Error(config_file().string() + ": " + e.what());
    }
}

void RunDirectory::write_config(const RunConfig& c) const
{
    write_file_atomic(config_file(), to_json(c).dump(2) + "\n");
}

std::vector<int64_t> RunDirectory::checkpoint_steps() const
{
    std::vector<int64_t> steps;
    std::error_code ec;
    if (!fs::is_directory(checkpoints_dir(), ec)) return steps;
    for (const auto& entry : fs::directory_iterator(checkpoints_dir(), ec)) {
        const std::string name = entry.path().filename().string();
        if (name.rfind("step_", 0) != 0 || !entry.is_directory()) continue;
        const std::string digits = name.substr(5);
        // At most 18 digits: any step count fits, and a stray long name cannot overflow.
        if (digits.empty() || digits.size() > 18 || !std::all_of(digits.begin(), digits.end(), ::isdigit)) continue;
        // Only complete checkpoints: the trainer state is written last.
        if (!fs::exists(entry.path() / "trainer_state.json", ec)) continue;
        steps.push_back(std::stoll(digits));
    }
    std::sort(steps.begin(), steps.end());
    return steps;
}

std::optional<fs::path> RunDirectory::latest_checkpoint() const
{
    const auto steps = checkpoint_steps();
    if (steps.empty()) return std::nullopt;
    return checkpoint_dir(steps.back());
}

std::vector<nlohmann::json> RunDirectory::read_metrics() const
{
    std::vector<nlohmann::json> out;
    std::ifstream in(metrics_file());
    std::string line;
    while (std::getline(in, line)) {
        if (line.empty()) continue;
        auto j = nlohmann::json::parse(line, nullptr, false);
        if (!j.is_discarded() && j.is_object()) out.push_back(std::move(j));
    }
    return out;
}

MetricsLog::MetricsLog(const fs::path& file) : m_out(file, std::ios::app)
{
    if (!m_out) throw Error("cannot write " + file.string());
}

void MetricsLog::append(const nlohmann::json& record)
{
    std::lock_guard lock(m_mutex);
    // Text samples may end inside a UTF-8 sequence: replace, never throw.
    m_out << record.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
    m_out.flush();
}

ResolvedCheckpoint resolve_checkpoint(const fs::path& path)
{
    std::error_code ec;
    if (!fs::exists(path, ec)) throw Error("not found: " + path.string());
    if (is_hf_model_dir(path)) {
        // A checkpoint directory (run/checkpoints/step_N), or any Hugging Face model folder
        const fs::path root = path.parent_path().parent_path();
        return {RunDirectory(root).exists() ? root : fs::path(), path};
    }
    RunDirectory run(path);
    if (!run.exists())
        throw Error(path.string() + " is not a Crucible run directory (no config.json); pass the folder given to --out");
    auto latest = run.latest_checkpoint();
    if (!latest)
        throw Error("the run " + path.string() + " has no checkpoint yet; train it first (checkpoints are written at "
                    "the end of a run, on stop, and every --checkpoint-every steps)");
    return {path, *latest};
}

} // namespace crucible
