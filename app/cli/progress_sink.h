// The CLI's TrainingSink: a live progress line on a terminal (one line per
// report otherwise), evaluation lines and text samples; or, with --json, one
// JSON object per event on stdout for scripts.
#pragma once

#include "core/train/training_sink.h"

#include <chrono>
#include <cstdio>

namespace crucible::cli {

class ProgressSink : public TrainingSink {
public:
    explicit ProgressSink(bool json, bool quiet = false);

    void on_started(const RunInfo& info) override;
    void on_status(const std::string& what) override;
    void on_step(const StepMetrics& m) override;
    void on_eval(const EvalMetrics& e) override;
    void on_sample(int64_t step, const std::string& prompt, const std::string& text) override;
    void on_checkpoint(int64_t step, const std::string& path) override;
    void on_warning(const std::string& message) override;
    void on_finished(const RunSummary& summary) override;

private:
    void end_line();

    bool m_json, m_quiet, m_tty;
    bool m_line_open = false;
    RunInfo m_info;
    std::chrono::steady_clock::time_point m_last_print{};
};

} // namespace crucible::cli
