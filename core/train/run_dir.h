// The run directory: everything one training run leaves on disk.
//
//   config.json                 RunConfig (model, training, data)
//   tokenizer.model             SentencePiece model
//   metrics.jsonl               one JSON object per line: step, eval, sample, ...
//   chat.json                   the Chat page's conversation with this run (optional)
//   checkpoints/step_N/         model.safetensors, config.json (Hugging Face),
//                               optimizer.safetensors, trainer_state.json,
//                               tokenizer.model
#pragma once

#include "core/train/run_config.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <vector>

namespace crucible {

class RunDirectory {
public:
    explicit RunDirectory(std::filesystem::path root) : m_root(std::move(root)) {}

    const std::filesystem::path& root() const { return m_root; }
    std::filesystem::path config_file() const { return m_root / "config.json"; }
    std::filesystem::path tokenizer_file() const { return m_root / "tokenizer.model"; }
    std::filesystem::path metrics_file() const { return m_root / "metrics.jsonl"; }
    std::filesystem::path checkpoints_dir() const { return m_root / "checkpoints"; }
    std::filesystem::path chat_file() const { return m_root / "chat.json"; }
    std::filesystem::path checkpoint_dir(int64_t step) const;

    bool exists() const;   // holds a config.json
    RunConfig read_config() const;                 // throws Error
    void write_config(const RunConfig& c) const;   // atomic

    std::vector<int64_t> checkpoint_steps() const; // ascending, complete checkpoints only
    std::optional<std::filesystem::path> latest_checkpoint() const;

    // Every parseable line of metrics.jsonl (a torn last line is skipped).
    std::vector<nlohmann::json> read_metrics() const;

private:
    std::filesystem::path m_root;
};

// Appends JSON lines to metrics.jsonl, flushed per line.
class MetricsLog {
public:
    explicit MetricsLog(const std::filesystem::path& file);
    void append(const nlohmann::json& record);

private:
    std::mutex m_mutex;
    std::ofstream m_out;
};

// The run directory that holds a checkpoint directory, or the run itself.
// Accepts either a run root or checkpoints/step_N; throws Error otherwise.
struct ResolvedCheckpoint {
    std::filesystem::path run_root;
    std::filesystem::path checkpoint;   // the step_N directory
};
ResolvedCheckpoint resolve_checkpoint(const std::filesystem::path& run_or_checkpoint);

} // namespace crucible
