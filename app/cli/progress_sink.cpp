#include "app/cli/progress_sink.h"

#include "core/train/memory_estimate.h"
#include "core/train/metrics.h"

#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <unistd.h>

namespace crucible::cli {

namespace {

std::string format_duration(double s)
{
    if (!(s >= 0) || s > 1e7) return "--";
    const int total = int(s + 0.5);
    if (total >= 3600) return fmt::format("{}h{:02}m", total / 3600, total % 3600 / 60);
    if (total >= 60) return fmt::format("{}m{:02}s", total / 60, total % 60);
    return fmt::format("{}s", total);
}

std::string format_rate(double v)
{
    if (v >= 1e6) return fmt::format("{:.2f}M", v / 1e6);
    if (v >= 1e3) return fmt::format("{:.1f}K", v / 1e3);
    return fmt::format("{:.0f}", v);
}

void emit(const nlohmann::json& j)
{
    fmt::print("{}\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    std::fflush(stdout);
}

} // namespace

ProgressSink::ProgressSink(bool json, bool quiet) : m_json(json), m_quiet(quiet), m_tty(isatty(fileno(stdout)) != 0) {}

void ProgressSink::end_line()
{
    if (m_line_open) fmt::print("\n");
    m_line_open = false;
}

void ProgressSink::on_started(const RunInfo& info)
{
    m_info = info;
    if (m_json) {
        emit({{"event", "started"}, {"run_dir", info.run_dir}, {"device", info.device}, {"parameters", info.parameters},
              {"train_tokens", info.train_tokens}, {"val_tokens", info.val_tokens},
              {"tokens_per_step", info.tokens_per_step}, {"start_step", info.start_step},
              {"total_steps", info.total_steps}, {"estimated_memory_bytes", info.estimated_memory_bytes}});
        return;
    }
    fmt::print("run      {}\n", info.run_dir);
    fmt::print("device   {}\n", info.device);
    fmt::print("model    {:.2f}M parameters, {:.1f} MFLOP/token, ~{} memory\n", double(info.parameters) / 1e6,
               info.flops_per_token / 1e6, format_bytes(double(info.estimated_memory_bytes)));
    fmt::print("data     {} training tokens, {} validation tokens, {} tokens/step\n", info.train_tokens,
               info.val_tokens, info.tokens_per_step);
    if (info.start_step > 0) fmt::print("resuming at step {}\n", info.start_step);
    std::fflush(stdout);
}

void ProgressSink::on_status(const std::string& what)
{
    if (m_json) { emit({{"event", "status"}, {"status", what}}); return; }
    if (m_quiet) return;
    end_line();
    fmt::print("{}...\n", what);
    std::fflush(stdout);
}

void ProgressSink::on_step(const StepMetrics& m)
{
    if (m_json) {
        nlohmann::json j = metric_fields(m);
        j.update({{"event", "step"}, {"step", m.step}, {"elapsed_s", m.elapsed_s}});
        emit(j);
        return;
    }
    if (m_quiet) return;
    const auto now = std::chrono::steady_clock::now();
    const bool last = m.step == m_info.total_steps;
    // Redraw at most 10 times a second on a terminal; a line every 2 s in a log.
    const double gap = m_tty ? 0.1 : 2.0;
    if (!last && std::chrono::duration<double>(now - m_last_print).count() < gap) return;
    m_last_print = now;
    const int64_t done = m.step - m_info.start_step;
    const double per_step = done > 0 ? m.elapsed_s / double(m.step) : 0.0;
    const double eta = per_step * double(m_info.total_steps - m.step);
    std::string line = fmt::format("step {:>{}}/{} | loss {:.4f} | {} tok/s | lr {:.2e} | grad {:.2f}", m.step,
                                   std::to_string(m_info.total_steps).size(), m_info.total_steps, m.loss,
                                   format_rate(m.tokens_per_s), m.lr, m.grad_norm);
    const MetricInfo& mfu = metric_info(Metric::mfu);
    if (m.mfu > 0) line += fmt::format(" | MFU {:.{}f}{}", mfu.shown(m.mfu), mfu.precision, mfu.unit);
    const MetricInfo& comm = metric_info(Metric::comm_share);
    if (m.comm_share > 0)
        line += fmt::format(" | {} {:.{}f}{}", comm.short_label, comm.shown(m.comm_share), comm.precision, comm.unit);
    line += " | ETA " + format_duration(eta);
    if (m_tty) {
        fmt::print("\r\033[K{}", line);
        m_line_open = true;
    } else {
        fmt::print("{}\n", line);
    }
    std::fflush(stdout);
}

void ProgressSink::on_eval(const EvalMetrics& e)
{
    if (m_json) {
        nlohmann::json j = metric_fields(e);
        j.update({{"event", "eval"}, {"step", e.step}, {"tokens", e.tokens}});
        emit(j);
        return;
    }
    end_line();
    const MetricInfo& acc = metric_info(Metric::val_accuracy);
    fmt::print("eval {:>6} | val loss {:.4f} | ppl {:.2f} | acc {:.{}f}{} | {:.3f} bits/byte\n", e.step, e.loss,
               e.perplexity, acc.shown(e.accuracy), acc.precision, acc.unit, e.bits_per_byte);
    std::fflush(stdout);
}

void ProgressSink::on_sample(int64_t step, const std::string& prompt, const std::string& text)
{
    if (m_json) { emit({{"event", "sample"}, {"step", step}, {"prompt", prompt}, {"text", text}}); return; }
    if (m_quiet) return;
    end_line();
    fmt::print("---- sample at step {} ----\n{}{}\n--------------------------\n", step, prompt, text);
    std::fflush(stdout);
}

void ProgressSink::on_checkpoint(int64_t step, const std::string& path)
{
    if (m_json) { emit({{"event", "checkpoint"}, {"step", step}, {"path", path}}); return; }
    end_line();
    fmt::print("checkpoint {}\n", path);
    std::fflush(stdout);
}

void ProgressSink::on_warning(const std::string& message)
{
    if (m_json) { emit({{"event", "warning"}, {"message", message}}); return; }
    end_line();
    fmt::print(stderr, "warning: {}\n", message);
}

void ProgressSink::on_finished(const RunSummary& s)
{
    if (m_json) {
        nlohmann::json j = {{"event", "finished"}, {"steps", s.steps}, {"elapsed_s", s.elapsed_s},
                            {"checkpoint", s.checkpoint}, {"reached_target", s.reached_target},
                            {"skipped_steps", s.skipped_steps}};
        j["outcome"] = s.outcome == RunOutcome::finished ? "finished" : s.outcome == RunOutcome::stopped ? "stopped" : "failed";
        if (!s.error.empty()) j["error"] = s.error;
        emit(j);
        return;
    }
    end_line();
    if (s.outcome == RunOutcome::failed) return;   // the caller prints the error
    fmt::print("{} after {} steps in {}", s.outcome == RunOutcome::stopped ? "stopped" : "finished", s.steps,
               format_duration(s.elapsed_s));
    if (s.has_eval) fmt::print(" — val loss {:.4f}, {:.3f} bits/byte", s.last_eval.loss, s.last_eval.bits_per_byte);
    if (s.reached_target) fmt::print(" (target reached after {:.2f} s of training)", s.elapsed_s);
    if (s.skipped_steps > 0) fmt::print("; {} updates skipped for a non-finite loss or gradient", s.skipped_steps);
    fmt::print("\n");
}

} // namespace crucible::cli
