// What a resumed run repairs and checks before it trains again: what a killed
// process left behind, and a checkpoint it can trust.
//
//   - staging folders and files (step_N.tmp-PID-…, config.json.tmp-…) of
//     writes that never committed are removed;
//   - the newest checkpoint is the one to resume: when its trainer_state.json
//     is missing, or names another step than its folder, resuming from an
//     older one would overwrite newer work, so the run is refused instead;
//   - metrics.jsonl is cut back to the resumed step, so that steps trained
//     after the checkpoint and trained again are not listed twice.
//
// Call these only while holding the run's RunLock.
#pragma once

#include "core/train/run_dir.h"

#include <cstdint>
#include <filesystem>
#include <optional>

namespace crucible {

// Removes uncommitted staging left by a killed writer; returns bytes freed.
uint64_t remove_stale_staging(const RunDirectory& run);

// Every step_N folder, complete or not, ascending.
std::vector<int64_t> checkpoint_folders(const RunDirectory& run);

// The newest checkpoint and its step, checked as above; nullopt when the run
// has no checkpoint folder at all (it was stopped before its first one).
// Throws Error naming the folder and what to do otherwise.
struct CheckpointToResume {
    std::filesystem::path dir;
    int64_t step = 0;
};
std::optional<CheckpointToResume> find_checkpoint_to_resume(const RunDirectory& run);

// Throws Error when `state_step` (from trainer_state.json) differs from the
// step of the folder it was read from.
void check_state_matches_folder(const std::filesystem::path& checkpoint, int64_t folder_step, int64_t state_step);

// Rewrites metrics.jsonl atomically without the records after `step` and
// without torn lines; records without a step are kept.
void truncate_metrics(const RunDirectory& run, int64_t step);

} // namespace crucible
