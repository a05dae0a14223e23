// What every suite's measurement code shares: the request's options parsed,
// the sink, progress, cancellation and cancel-aware timing. Internal to
// core/bench (the public face is suite.h).
#pragma once

#include "core/bench/bench_table.h"
#include "core/bench/suite.h"
#include "core/model/model_config.h"
#include "kernels/backend_factory.h"

#include <functional>
#include <memory>
#include <stdexcept>

namespace crucible::bench {

// Thrown inside a suite when the cancel token is set; run_suite() catches it.
struct Cancelled : std::exception {
    const char* what() const noexcept override { return "cancelled"; }
};

class SuiteContext {
public:
    SuiteContext(const SuiteInfo& info, const SuiteRequest& request, RowSink& sink, const CancelToken& cancel);

    const SuiteInfo& info() const { return m_info; }
    const SuiteRequest& request() const { return m_request; }
    DeviceKind device() const { return m_request.device; }
    bool cuda() const { return m_request.device == DeviceKind::cuda; }
    bool tiny() const { return m_request.size == SizeClass::tiny; }
    BackendOptions backend_options() const;
    // The suite's backend, made on first use.
    Backend& backend();

    // Options, checked: a clear Error names the option and what it takes.
    std::string text(const std::string& key) const;
    int integer(const std::string& key) const;
    double number(const std::string& key) const;
    std::vector<int> integers(const std::string& key) const;
    std::vector<std::string> words(const std::string& key) const;

    // Throws Cancelled when the token is set.
    void check_cancel() const;
    bool cancel_requested() const { return m_cancel.requested(); }
    void emit(Row row);
    void note(const std::string& text) { m_sink.note(text); }
    // Progress over `total` measurements: call before measurement `index`.
    void step(size_t index, size_t total, const std::string& what);

    // Warm up, then time `repeats` samples of fn, checking cancel before each;
    // a sample runs fn enough times to last ~2 ms (short ops on a GPU).
    Timing time(const std::function<void()>& fn, int warmup, int repeats);

private:
    const SuiteInfo& m_info;
    const SuiteRequest& m_request;
    RowSink& m_sink;
    const CancelToken& m_cancel;
    std::unique_ptr<Backend> m_backend;
};

// A row of this suite with one measure; more are added with add().
Row make_row(const SuiteContext& c, std::string series, std::string x_name, double x, std::string x_unit = {});
void add(Row& r, std::string key, double value, std::string unit);

// A preset's model, or "tiny": a model small enough for a test to train and
// decode in well under a second (byte vocabulary, 2 layers, width 64).
ModelConfig bench_model_config(const std::string& name);
// Device bytes of a KV cache of this model for batch × seq: the device's own
// count of memory taken on CUDA, the allocation on the CPU.
size_t measured_kv_cache_bytes(Backend& backend, const ModelConfig& config, int64_t batch, int64_t seq);

// The suites, one file each under core/bench/suites/.
void run_attention_suite(SuiteContext& c);
void run_norms_suite(SuiteContext& c);
void run_gqa_suite(SuiteContext& c);
void run_kv_cache_suite(SuiteContext& c);
void run_decode_suite(SuiteContext& c);
void run_train_suite(SuiteContext& c);
void run_optimizers_suite(SuiteContext& c);
void run_quant_suite(SuiteContext& c);
void run_finetune_suite(SuiteContext& c);

} // namespace crucible::bench
