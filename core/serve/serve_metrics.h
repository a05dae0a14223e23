// ServeMetrics: what a running server has done, in Prometheus' text format
// (GET /metrics): requests by endpoint and status, prompt and generated
// tokens, time to first token and request duration as histograms, the recent
// generation rate, the batch the model steps over, and the KV cache's use.
// Thread-safe: the HTTP threads and the model thread record into one object.
#pragma once

#include "core/serve/batch_engine.h"

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace crucible::serve {

class Histogram {
public:
    explicit Histogram(std::vector<double> upper_bounds);
    void observe(double value);
    // name_bucket{le="…"}, name_sum and name_count lines.
    std::string render(const std::string& name) const;
    uint64_t count() const { return m_count; }
    double sum() const { return m_sum; }

private:
    std::vector<double> m_bounds;
    std::vector<uint64_t> m_counts;   // per bound, not cumulative
    uint64_t m_count = 0;
    double m_sum = 0.0;
};

class ServeMetrics {
public:
    using Clock = std::chrono::steady_clock;
    // Generation rate over this much of the recent past.
    static constexpr double kRateWindowSeconds = 10.0;

    ServeMetrics();

    // The HTTP layer: one answered request ("chat", "completion", "models", ...).
    void request(const std::string& endpoint, int status);
    // The engine: a job joined the batch, with `reused` of its prompt's
    // tokens already in its slot's cache.
    void job_started(int64_t prompt_tokens, int64_t reused);
    void first_token(double seconds_since_submit);
    // One model step over `rows` sequences that produced `tokens` tokens.
    void step(int rows, int64_t tokens, double seconds);
    void job_finished(const std::string& stop_reason, double seconds_since_submit);

    // Generated tokens per second over the last kRateWindowSeconds.
    double tokens_per_second() const;
    std::string render(const BatchEngine::Load& load) const;

private:
    double rate_locked(Clock::time_point now) const;

    mutable std::mutex m_mutex;
    std::map<std::pair<std::string, int>, uint64_t> m_requests;
    std::map<std::string, uint64_t> m_finished;   // by stop reason
    uint64_t m_prompt_tokens = 0, m_reused_tokens = 0, m_generated_tokens = 0;
    uint64_t m_steps = 0, m_step_rows = 0;
    double m_step_seconds = 0.0;
    Histogram m_ttft, m_duration;
    mutable std::deque<std::pair<Clock::time_point, int64_t>> m_recent;   // (step end, tokens)
};

} // namespace crucible::serve
