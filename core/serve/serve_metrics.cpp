#include "core/serve/serve_metrics.h"

#include <fmt/format.h>

#include <algorithm>

namespace crucible::serve {

namespace {

std::string number(double v) { return fmt::format("{:.9g}", v); }

void header(std::string& out, const char* name, const char* type, const char* help)
{
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
}

void sample(std::string& out, const std::string& name, double value) { out += name + " " + number(value) + "\n"; }

} // namespace

Histogram::Histogram(std::vector<double> upper_bounds) : m_bounds(std::move(upper_bounds)), m_counts(m_bounds.size(), 0)
{
}

void Histogram::observe(double value)
{
    const auto it = std::lower_bound(m_bounds.begin(), m_bounds.end(), value);
    if (it != m_bounds.end()) ++m_counts[size_t(it - m_bounds.begin())];
    ++m_count;
    m_sum += value;
}

std::string Histogram::render(const std::string& name) const
{
    std::string out;
    uint64_t cumulative = 0;
    for (size_t i = 0; i < m_bounds.size(); ++i) {
        cumulative += m_counts[i];
        out += fmt::format("{}_bucket{{le=\"{}\"}} {}\n", name, number(m_bounds[i]), cumulative);
    }
    out += fmt::format("{}_bucket{{le=\"+Inf\"}} {}\n", name, m_count);
    out += fmt::format("{}_sum {}\n{}_count {}\n", name, number(m_sum), name, m_count);
    return out;
}

ServeMetrics::ServeMetrics()
    // Seconds: a first token takes milliseconds on a GPU and up to seconds
    // behind a long prompt on a CPU; a whole request up to minutes.
    : m_ttft({0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}),
      m_duration({0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300})
{
}

void ServeMetrics::request(const std::string& endpoint, int status)
{
    std::lock_guard lock(m_mutex);
    ++m_requests[{endpoint, status}];
}

void ServeMetrics::job_started(int64_t prompt_tokens, int64_t reused)
{
    std::lock_guard lock(m_mutex);
    m_prompt_tokens += uint64_t(prompt_tokens);
    m_reused_tokens += uint64_t(reused);
}

void ServeMetrics::first_token(double seconds)
{
    std::lock_guard lock(m_mutex);
    m_ttft.observe(seconds);
}

void ServeMetrics::step(int rows, int64_t tokens, double seconds)
{
    std::lock_guard lock(m_mutex);
    ++m_steps;
    m_step_rows += uint64_t(rows);
    m_step_seconds += seconds;
    m_generated_tokens += uint64_t(tokens);
    const auto now = Clock::now();
    if (tokens > 0) m_recent.emplace_back(now, tokens);
    rate_locked(now);   // drops what fell out of the window
}

void ServeMetrics::job_finished(const std::string& stop_reason, double seconds)
{
    std::lock_guard lock(m_mutex);
    ++m_finished[stop_reason];
    m_duration.observe(seconds);
}

double ServeMetrics::rate_locked(Clock::time_point now) const
{
    const auto window = std::chrono::duration<double>(kRateWindowSeconds);
    while (!m_recent.empty() && now - m_recent.front().first > window) m_recent.pop_front();
    int64_t tokens = 0;
    for (const auto& [t, n] : m_recent) tokens += n;
    return double(tokens) / kRateWindowSeconds;
}

double ServeMetrics::tokens_per_second() const
{
    std::lock_guard lock(m_mutex);
    return rate_locked(Clock::now());
}

std::string ServeMetrics::render(const BatchEngine::Load& load) const
{
    std::lock_guard lock(m_mutex);
    std::string out;
    header(out, "crucible_requests_total", "counter", "HTTP requests answered, by endpoint and status code.");
    for (const auto& [key, n] : m_requests)
        out += fmt::format("crucible_requests_total{{endpoint=\"{}\",status=\"{}\"}} {}\n", key.first, key.second, n);
    header(out, "crucible_generations_total", "counter", "Generations ended, by why they stopped.");
    for (const auto& [reason, n] : m_finished) {
        std::string label = reason;
        std::replace(label.begin(), label.end(), ' ', '_');
        out += fmt::format("crucible_generations_total{{reason=\"{}\"}} {}\n", label, n);
    }
    header(out, "crucible_prompt_tokens_total", "counter", "Prompt tokens of the generations started.");
    sample(out, "crucible_prompt_tokens_total", double(m_prompt_tokens));
    header(out, "crucible_prompt_tokens_reused_total", "counter",
           "Prompt tokens whose keys and values were already in their slot's cache.");
    sample(out, "crucible_prompt_tokens_reused_total", double(m_reused_tokens));
    header(out, "crucible_generated_tokens_total", "counter", "Tokens generated.");
    sample(out, "crucible_generated_tokens_total", double(m_generated_tokens));
    header(out, "crucible_generated_tokens_per_second", "gauge",
           "Tokens generated per second over the last 10 seconds, all requests together.");
    sample(out, "crucible_generated_tokens_per_second", rate_locked(Clock::now()));
    header(out, "crucible_time_to_first_token_seconds", "histogram",
           "From a request's arrival to its first generated token.");
    out += m_ttft.render("crucible_time_to_first_token_seconds");
    header(out, "crucible_request_duration_seconds", "histogram", "From a request's arrival to its last token.");
    out += m_duration.render("crucible_request_duration_seconds");
    header(out, "crucible_model_steps_total", "counter", "Forward passes of the batch.");
    sample(out, "crucible_model_steps_total", double(m_steps));
    header(out, "crucible_model_step_rows_total", "counter",
           "Sequences summed over the forward passes (divided by the steps: the mean batch).");
    sample(out, "crucible_model_step_rows_total", double(m_step_rows));
    header(out, "crucible_model_step_seconds_total", "counter", "Time spent in forward passes and sampling.");
    sample(out, "crucible_model_step_seconds_total", m_step_seconds);
    header(out, "crucible_requests_running", "gauge", "Generations in the batch.");
    sample(out, "crucible_requests_running", load.running);
    header(out, "crucible_requests_waiting", "gauge", "Generations waiting for a free slot.");
    sample(out, "crucible_requests_waiting", load.waiting);
    header(out, "crucible_batch_slots", "gauge", "Sequences the KV cache holds at once.");
    sample(out, "crucible_batch_slots", load.slot_count);
    header(out, "crucible_kv_cache_tokens", "gauge", "Positions of the KV cache the running generations hold.");
    sample(out, "crucible_kv_cache_tokens", double(load.cache_tokens));
    header(out, "crucible_kv_cache_capacity_tokens", "gauge", "Positions of the KV cache: slots times context.");
    sample(out, "crucible_kv_cache_capacity_tokens", double(load.cache_capacity));
    header(out, "crucible_kv_cache_usage_ratio", "gauge", "Share of the KV cache the running generations hold.");
    sample(out, "crucible_kv_cache_usage_ratio",
           load.cache_capacity ? double(load.cache_tokens) / double(load.cache_capacity) : 0.0);
    header(out, "crucible_kv_cache_bytes", "gauge", "Device memory of the KV cache and the generation buffers.");
    sample(out, "crucible_kv_cache_bytes", double(load.cache_bytes));
    return out;
}

} // namespace crucible::serve
