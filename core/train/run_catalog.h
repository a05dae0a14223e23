// Run catalog: the runs on disk, as the Runs page and scripts see them.
//
// Lists the run directories in a folder with a summary of each (its
// configuration, how far it got, how it ended, its final metrics), reads a
// run's metric series for charts, and renames or deletes a run. Rename and
// delete check first that the folder really is a run and holds nothing the
// engine did not write, so a slip of the mouse can never remove a user's
// own files.
#pragma once

#include "core/train/metrics.h"
#include "core/train/run_config.h"
#include "core/train/training_sink.h"

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace crucible {

enum class RunStatus {
    finished,     // reached its last step
    stopped,      // stopped by the user; resumable from its checkpoint
    failed,       // ended with an error (see RunRecord::error)
    training,     // no end record and a trainer holds the run's lock
    interrupted,  // no end record and no trainer: killed, crashed or the power went; resumable
};
const char* to_string(RunStatus s);

struct RunRecord {
    std::filesystem::path root;
    std::string name;                      // the folder name
    std::optional<RunConfig> config;       // nullopt when config.json cannot be read
    std::string problem;                   // why config.json could not be read
    RunStatus status = RunStatus::interrupted;
    std::string error;                     // a failed run's message
    std::string device;                    // as reported when the run started
    int64_t parameters = 0;
    int64_t steps_done = 0;                // last step logged
    int64_t total_steps = 0;               // from the configuration
    std::optional<double> final_loss;      // train loss of the last step
    std::optional<EvalMetrics> last_eval;
    double elapsed_s = 0.0;                // training time
    int64_t tokens_seen = 0;
    double tokens_per_s = 0.0;             // mean over the run: tokens_seen / elapsed_s
    std::vector<int64_t> checkpoints;      // complete checkpoint steps, ascending
    int64_t modified_unix = 0;             // newest of config.json and metrics.jsonl, seconds since 1970

    bool resumable() const { return config.has_value() && !checkpoints.empty(); }
};

// True when the folder holds a run (a config.json).
bool is_run_directory(const std::filesystem::path& path);

// The runs directly inside `folder` (or `folder` itself when it is a run),
// newest first. A missing folder gives an empty list; unreadable runs are
// listed with `problem` set rather than skipped.
std::vector<RunRecord> list_runs(const std::filesystem::path& folder);

// Throws Error when `root` is not a run directory.
RunRecord read_run(const std::filesystem::path& root);

// One metric over a run: x as the optimizer step and as training time.
struct MetricSeries {
    std::vector<double> step, time_s, value;
    size_t size() const { return value.size(); }
    bool empty() const { return value.empty(); }
};

struct RunSample {
    int64_t step = 0;
    std::string prompt, text;
};

// One series per metric of the registry (core/train/metrics.h).
struct RunMetrics {
    MetricSeries loss, lr, grad_norm, tokens_per_s, mfu, memory_bytes, comm_share;   // every step
    MetricSeries val_loss, val_perplexity, val_accuracy, val_bits_per_byte;   // every evaluation
    std::vector<RunSample> samples;
    const MetricSeries& operator[](Metric m) const;
    MetricSeries& operator[](Metric m);
    // Looks a series up by its registry key: "loss", "val_loss", "lr", ...
    const MetricSeries* find(const std::string& key) const;
};

// Reads metrics.jsonl. A resumed run may have logged steps past its last
// checkpoint before it stopped; the steps logged again after resuming replace
// them, so every series is ordered by step.
RunMetrics read_run_metrics(const std::filesystem::path& root);

// The registry's keys and labels, in its order (metrics() has the rest).
struct MetricKey {
    const char* key;
    const char* label;
};
const std::vector<MetricKey>& run_metric_keys();

// Renames the run folder inside its parent and returns the new path. Throws
// Error when `root` is not a run, the name is not a plain folder name, or a
// file or folder of that name already exists.
std::filesystem::path rename_run(const std::filesystem::path& root, const std::string& new_name);

// Deletes a run folder. Throws Error, deleting nothing, when the path is a
// symbolic link, is not a run, or holds anything the engine does not write
// (the message names those entries).
void delete_run(const std::filesystem::path& root);

} // namespace crucible
