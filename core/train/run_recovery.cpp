#include "core/train/run_recovery.h"

#include "core/io/file_util.h"
#include "core/train/checkpoint.h"
#include "kernels/error.h"

#include <algorithm>
#include <regex>

namespace fs = std::filesystem;

namespace crucible {

namespace {

// The suffixes AtomicFile and AtomicDirectory give their staging: the name,
// ".tmp-<pid>-<8 hex digits>", and ".old" for a replaced folder moved aside.
const std::regex& staging_name()
{
    static const std::regex re(R"(^(.+)\.tmp-[0-9]+-[0-9a-f]{8}(\.old)?$)");
    return re;
}

uint64_t size_of(const fs::path& p)
{
    std::error_code ec;
    if (!fs::is_directory(p, ec)) return fs::file_size(p, ec) == uintmax_t(-1) ? 0 : fs::file_size(p, ec);
    uint64_t total = 0;
    for (const auto& e : fs::recursive_directory_iterator(p, ec))
        if (e.is_regular_file(ec)) total += e.file_size(ec);
    return total;
}

uint64_t clean_folder(const fs::path& dir)
{
    uint64_t freed = 0;
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) return 0;
    std::vector<fs::path> entries;
    for (const auto& e : fs::directory_iterator(dir, ec)) entries.push_back(e.path());
    for (const fs::path& p : entries) {
        std::smatch m;
        const std::string name = p.filename().string();
        if (!std::regex_match(name, m, staging_name())) continue;
        // A folder moved aside to be replaced whose replacement never landed
        // is the only copy of that checkpoint: put it back.
        const fs::path target = dir / m[1].str();
        if (m[2].matched && !fs::exists(target, ec)) {
            fs::rename(p, target, ec);
            if (!ec) continue;
        }
        freed += size_of(p);
        fs::remove_all(p, ec);
    }
    return freed;
}

} // namespace

uint64_t remove_stale_staging(const RunDirectory& run)
{
    return clean_folder(run.checkpoints_dir()) + clean_folder(run.root());
}

std::vector<int64_t> checkpoint_folders(const RunDirectory& run)
{
    std::vector<int64_t> steps;
    std::error_code ec;
    if (!fs::is_directory(run.checkpoints_dir(), ec)) return steps;
    static const std::regex step_name(R"(^step_([0-9]{1,18})$)");
    for (const auto& e : fs::directory_iterator(run.checkpoints_dir(), ec)) {
        std::smatch m;
        const std::string name = e.path().filename().string();
        if (e.is_directory(ec) && std::regex_match(name, m, step_name)) steps.push_back(std::stoll(m[1].str()));
    }
    std::sort(steps.begin(), steps.end());
    return steps;
}

std::optional<CheckpointToResume> find_checkpoint_to_resume(const RunDirectory& run)
{
    const std::vector<int64_t> folders = checkpoint_folders(run);
    if (folders.empty()) return std::nullopt;
    const int64_t newest = folders.back();
    const fs::path dir = run.checkpoint_dir(newest);
    std::error_code ec;
    if (!fs::is_regular_file(dir / "trainer_state.json", ec)) {
        std::string older;
        if (folders.size() > 1) older = " to resume from step_" + std::to_string(folders[folders.size() - 2]);
        throw Error("the newest checkpoint " + dir.string() +
                    " has no trainer_state.json, so it cannot be resumed, and resuming from an older one would "
                    "overwrite it; restore the file, or move the folder out of the run" + older);
    }
    const TrainerState state = load_trainer_state(dir);
    check_state_matches_folder(dir, newest, state.step);
    return CheckpointToResume{dir, newest};
}

void check_state_matches_folder(const fs::path& checkpoint, int64_t folder_step, int64_t state_step)
{
    if (state_step == folder_step) return;
    throw Error((checkpoint / "trainer_state.json").string() + " says step " + std::to_string(state_step) +
                " but the checkpoint is " + checkpoint.filename().string() +
                "; the file was edited or damaged and resuming would overwrite newer checkpoints. "
                "Restore it or move the folder out of the run");
}

void truncate_metrics(const RunDirectory& run, int64_t step)
{
    std::error_code ec;
    if (!fs::exists(run.metrics_file(), ec)) return;
    const std::string text = read_file(run.metrics_file());
    std::string kept;
    size_t begin = 0;
    bool changed = false;
    while (begin < text.size()) {
        size_t end = text.find('\n', begin);
        const bool torn = end == std::string::npos;   // a killed writer's last line
        if (torn) end = text.size();
        const std::string_view line(text.data() + begin, end - begin);
        begin = end + 1;
        const auto j = nlohmann::json::parse(line, nullptr, false);
        const bool keep = !torn && !j.is_discarded() && j.is_object() &&
                          !(j.contains("step") && j["step"].is_number() && j["step"].get<double>() > double(step));
        if (keep) {
            kept.append(line);
            kept.push_back('\n');
        } else if (!line.empty()) {
            changed = true;
        }
    }
    if (changed) write_file_atomic(run.metrics_file(), kept);
}

} // namespace crucible
