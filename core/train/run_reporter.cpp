#include "core/train/run_reporter.h"

#include "core/train/metrics.h"

namespace crucible {

namespace {

// The metric fields come from the registry; the axes (step, time, tokens)
// are the record's own.
nlohmann::json step_record(const StepMetrics& m)
{
    nlohmann::json j = metric_fields(m);
    j.update({{"type", "step"}, {"step", m.step}, {"elapsed_s", m.elapsed_s}, {"tokens_seen", m.tokens_seen}});
    return j;
}

nlohmann::json eval_record(const EvalMetrics& e)
{
    nlohmann::json j = metric_fields(e);
    j.update({{"type", "eval"}, {"step", e.step}, {"tokens", e.tokens}, {"elapsed_s", e.elapsed_s}});
    return j;
}

} // namespace

void RunReporter::open_log(const std::filesystem::path& metrics_file)
{
    m_log = std::make_unique<MetricsLog>(metrics_file);
}

void RunReporter::status(const std::string& what) { m_sink->on_status(what); }

void RunReporter::phase(TrainerPhase phase)
{
    m_sink->on_status(to_string(phase));
    m_sink->on_phase(phase);
}

void RunReporter::paused(bool paused) { m_sink->on_paused(paused); }

void RunReporter::started(const RunInfo& info, bool resumed)
{
    m_sink->on_started(info);
    if (m_log) m_log->append({{"type", "start"},
                   {"step", info.start_step},
                   {"device", info.device},
                   {"parameters", info.parameters},
                   {"tokens_per_step", info.tokens_per_step},
                   {"resumed", resumed}});
}

void RunReporter::step(const StepMetrics& m)
{
    if (m_log) m_log->append(step_record(m));
    m_sink->on_step(m);
}

void RunReporter::eval(const EvalMetrics& e)
{
    if (m_log) m_log->append(eval_record(e));
    m_sink->on_eval(e);
}

void RunReporter::sample(int64_t step, const std::string& prompt, const std::string& text)
{
    if (m_log) m_log->append({{"type", "sample"}, {"step", step}, {"prompt", prompt}, {"text", text}});
    m_sink->on_sample(step, prompt, text);
}

void RunReporter::checkpoint(int64_t step, const std::string& path)
{
    if (m_log) m_log->append({{"type", "checkpoint"}, {"step", step}, {"path", path}});
    m_sink->on_checkpoint(step, path);
}

void RunReporter::skipped_update(int64_t step, int64_t skipped)
{
    m_sink->on_warning("non-finite loss or gradient at step " + std::to_string(step) + "; the update was skipped (" +
                       std::to_string(skipped) + (skipped == 1 ? " step" : " steps") + " skipped in this run)");
    if (m_log) m_log->append({{"type", "warning"},
                   {"step", step},
                   {"message", "non-finite loss; update skipped"},
                   {"skipped_steps", skipped}});
}

void RunReporter::target_reached(int64_t step, double elapsed_s, double bits_per_byte)
{
    if (m_log) m_log->append({{"type", "target"}, {"step", step}, {"elapsed_s", elapsed_s}, {"bits_per_byte", bits_per_byte}});
}

void RunReporter::finished(const RunSummary& summary)
{
    if (m_log) {
        nlohmann::json rec = {{"type", "finished"},
                              {"outcome", to_string(summary.outcome)},
                              {"step", summary.steps},
                              {"elapsed_s", summary.elapsed_s}};
        if (!summary.error.empty()) rec["error"] = summary.error;
        try { m_log->append(rec); } catch (...) {}
    }
    m_sink->on_finished(summary);
}

} // namespace crucible
