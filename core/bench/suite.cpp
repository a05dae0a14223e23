#include "core/bench/suite.h"

#include "core/bench/suite_context.h"
#include "core/generate/kv_cache.h"
#include "kernels/error.h"

#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <set>
#include <sstream>

namespace crucible::bench {

std::string_view to_string(SizeClass s) { return s == SizeClass::tiny ? "tiny" : "standard"; }

std::optional<SizeClass> size_class_from_string(std::string_view s)
{
    if (s == "tiny") return SizeClass::tiny;
    if (s == "standard" || s == "default") return SizeClass::standard;
    return std::nullopt;
}

std::string_view to_string(Outcome o)
{
    switch (o) {
    case Outcome::completed: return "completed";
    case Outcome::cancelled: return "cancelled";
    case Outcome::failed: break;
    }
    return "failed";
}

const std::string& SuiteOption::default_for(DeviceKind device, SizeClass size) const
{
    if (size == SizeClass::tiny) return tiny;
    return device == DeviceKind::cuda ? cuda_default : cpu_default;
}

const SuiteOption* SuiteInfo::option(std::string_view key) const
{
    for (const auto& o : options)
        if (o.key == key) return &o;
    return nullptr;
}

std::optional<double> Row::get(std::string_view key) const
{
    for (const auto& m : y)
        if (m.key == key) return m.value;
    return std::nullopt;
}

std::string Row::tag(const std::string& key) const
{
    const auto it = tags.find(key);
    return it == tags.end() ? std::string() : it->second;
}

std::string Row::label() const
{
    std::string s = series;
    // Tags whose value says what it is by itself show alone ("fwd", "nano");
    // the rest as key and value ("D64", "seed1").
    static const std::set<std::string> self_explained = {"pass", "preset", "op", "model", "phase", "axis"};
    for (const auto& [k, v] : tags) s += " " + (self_explained.count(k) ? v : k + v);
    return s + fmt::format(" {}={:g}", x_name, x);
}

std::string SuiteRequest::option(const SuiteInfo& suite, const std::string& key) const
{
    if (const auto it = options.find(key); it != options.end()) return it->second;
    const SuiteOption* o = suite.option(key);
    CRUCIBLE_CHECK(o, "the " + suite.id + " suite has no option " + key);
    return o->default_for(device, size);
}

const SuiteInfo* find_suite(std::string_view id)
{
    for (const auto& s : suites())
        if (s.id == id) return &s;
    return nullptr;
}

// ---- SuiteContext ----------------------------------------------------------------

SuiteContext::SuiteContext(const SuiteInfo& info, const SuiteRequest& request, RowSink& sink, const CancelToken& cancel)
    : m_info(info), m_request(request), m_sink(sink), m_cancel(cancel)
{
}

BackendOptions SuiteContext::backend_options() const
{
    BackendOptions o;
    o.device = m_request.device;
    o.threads = m_request.threads;
    return o;
}

Backend& SuiteContext::backend()
{
    if (!m_backend) m_backend = make_backend(backend_options());
    return *m_backend;
}

std::string SuiteContext::text(const std::string& key) const { return m_request.option(m_info, key); }

int SuiteContext::integer(const std::string& key) const
{
    const std::string s = text(key);
    try {
        size_t used = 0;
        const int v = std::stoi(s, &used);
        if (used == s.size()) return v;
    } catch (...) {
    }
    throw Error(fmt::format("{} option {} must be an integer, got \"{}\"", m_info.id, key, s));
}

double SuiteContext::number(const std::string& key) const
{
    const std::string s = text(key);
    try {
        size_t used = 0;
        const double v = std::stod(s, &used);
        if (used == s.size() && std::isfinite(v)) return v;
    } catch (...) {
    }
    throw Error(fmt::format("{} option {} must be a number, got \"{}\"", m_info.id, key, s));
}

std::vector<std::string> SuiteContext::words(const std::string& key) const
{
    std::vector<std::string> out;
    std::stringstream in(text(key));
    std::string item;
    while (std::getline(in, item, ','))
        if (!item.empty()) out.push_back(item);
    if (out.empty()) throw Error(fmt::format("{} option {} is empty: give a comma-separated list", m_info.id, key));
    return out;
}

std::vector<int> SuiteContext::integers(const std::string& key) const
{
    std::vector<int> out;
    for (const std::string& w : words(key)) {
        try {
            size_t used = 0;
            const int v = std::stoi(w, &used);
            if (used == w.size() && v > 0) {
                out.push_back(v);
                continue;
            }
        } catch (...) {
        }
        throw Error(fmt::format("{} option {} must be a comma-separated list of positive integers, got \"{}\"",
                                m_info.id, key, text(key)));
    }
    return out;
}

void SuiteContext::check_cancel() const
{
    if (m_cancel.requested()) throw Cancelled();
}

void SuiteContext::emit(Row row)
{
    for (const Measure& m : row.y)
        CRUCIBLE_CHECK(std::isfinite(m.value), m_info.id + ": a measurement came out " + std::to_string(m.value) +
                                                   " for " + m.key + " of " + row.label());
    m_sink.row(row);
}

void SuiteContext::step(size_t index, size_t total, const std::string& what)
{
    check_cancel();
    const double fraction = total ? double(index) / double(total) : 0.0;
    m_sink.progress(fraction, fmt::format("{} ({} of {})", what, index + 1, total));
}

Timing SuiteContext::time(const std::function<void()>& fn, int warmup, int repeats)
{
    Backend& be = backend();
    check_cancel();
    const Timing probe = time_repeated(be, fn, warmup, 1);
    constexpr double kTargetSampleMs = 2.0;
    const int inner = int(std::clamp(std::ceil(kTargetSampleMs / std::max(probe.median_ms, 1e-3)), 1.0, 50.0));
    std::vector<double> samples;
    for (int r = 0; r < std::max(repeats, 1); ++r) {
        check_cancel();
        const auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < inner; ++i) fn();
        be.synchronize();
        samples.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() /
                          inner);
    }
    return summarize(std::move(samples));
}

Row make_row(const SuiteContext& c, std::string series, std::string x_name, double x, std::string x_unit)
{
    Row r;
    r.suite = c.info().id;
    r.series = std::move(series);
    r.x_name = std::move(x_name);
    r.x = x;
    r.x_unit = std::move(x_unit);
    return r;
}

void add(Row& r, std::string key, double value, std::string unit)
{
    r.y.push_back(Measure{std::move(key), value, std::move(unit)});
}

ModelConfig bench_model_config(const std::string& name)
{
    if (name != "tiny") return preset(name);
    ModelConfig c;
    c.name = "tiny";
    c.vocab_size = 260;   // the smallest vocabulary a model takes (256 bytes + specials)
    c.d_model = 64;
    c.n_layers = 2;
    c.n_heads = 4;
    c.n_kv_heads = 4;
    c.ff_dim = 128;
    c.seq_len = 64;
    return c;
}

size_t measured_kv_cache_bytes(Backend& backend, const ModelConfig& config, int64_t batch, int64_t seq)
{
    const MemoryInfo before = backend.memory_info();
    KvCache cache(backend, config, batch, seq);
    const MemoryInfo after = backend.memory_info();
    if (backend.device() == DeviceKind::cuda && before.free_bytes > after.free_bytes)
        return before.free_bytes - after.free_bytes;
    return cache.bytes();
}

// ---- running ----------------------------------------------------------------------

namespace {

using SuiteFn = void (*)(SuiteContext&);

SuiteFn suite_function(std::string_view id)
{
    static const std::pair<std::string_view, SuiteFn> table[] = {
        {"attention", run_attention_suite}, {"norms", run_norms_suite},       {"gqa", run_gqa_suite},
        {"kv_cache", run_kv_cache_suite},   {"decode", run_decode_suite},     {"train", run_train_suite},
        {"optimizers", run_optimizers_suite}, {"quant", run_quant_suite},     {"finetune", run_finetune_suite},
    };
    for (const auto& [name, fn] : table)
        if (name == id) return fn;
    return nullptr;
}

std::string suite_ids()
{
    std::string s;
    for (const auto& info : suites()) s += (s.empty() ? "" : ", ") + info.id;
    return s;
}

} // namespace

Outcome run_suite(std::string_view id, const SuiteRequest& request, RowSink& sink, const CancelToken& cancel)
{
    const SuiteInfo* info = find_suite(id);
    const SuiteFn fn = suite_function(id);
    if (!info || !fn) {
        const std::string message = fmt::format("no benchmark suite \"{}\"; the suites are: {}", id, suite_ids());
        sink.finished(std::string(id), Outcome::failed, message);
        return Outcome::failed;
    }
    const bool cuda = request.device == DeviceKind::cuda;
    if ((cuda && !info->cuda) || (!cuda && !info->cpu)) {
        const std::string message =
            fmt::format("the {} suite does not run on the {}", info->id, cuda ? "GPU" : "CPU");
        sink.finished(info->id, Outcome::failed, message);
        return Outcome::failed;
    }
    for (const auto& [key, value] : request.options)
        if (!info->option(key)) {
            std::string known;
            for (const auto& o : info->options) known += (known.empty() ? "" : ", ") + o.key;
            const std::string message =
                fmt::format("the {} suite has no option \"{}\"; its options are: {}", info->id, key, known);
            sink.finished(info->id, Outcome::failed, message);
            return Outcome::failed;
        }
    SuiteContext context(*info, request, sink, cancel);
    Outcome outcome = Outcome::completed;
    std::string message;
    try {
        sink.started(*info, context.backend().name());
        fn(context);
        sink.progress(1.0, "done");
    } catch (const Cancelled&) {
        outcome = Outcome::cancelled;
        message = "stopped before it finished";
    } catch (const std::exception& e) {
        outcome = Outcome::failed;
        message = e.what();
    }
    sink.finished(info->id, outcome, message);
    return outcome;
}

} // namespace crucible::bench
