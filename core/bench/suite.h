// Benchmark suites: one measurement each (attention, norms, GQA, ...), run
// the same from crucible-cli and from the app, streaming rows to a sink as
// they are measured, the way the trainer streams steps.
//
// How to use it (CLI, Benchmarks page, tests):
//
//   for (const SuiteInfo& s : bench::suites()) ...        // what can run: id, title, options
//   bench::SuiteRequest r;                                // device, size class, overrides
//   r.device = DeviceKind::cpu;  r.size = bench::SizeClass::tiny;
//   r.options["seqs"] = "64,128";                         // keys from SuiteInfo::options
//   bench::CancelToken cancel;                            // cancel.request() from any thread
//   MySink sink;                                          // a RowSink
//   bench::Outcome o = bench::run_suite("attention", r, sink, cancel);
//
// - run_suite() blocks and runs on the calling thread; the sink's callbacks
//   come on that thread, in order: started, then rows / progress / notes,
//   then exactly one finished. A GUI runs it on a worker thread and queues
//   the callbacks to its own thread. It never throws for a measurement
//   that fails: the sink hears finished(failed, message) and the outcome
//   says so too. An unknown suite id or a bad option is a failure with a
//   message a user can act on.
// - Cancellation is checked before every timed sample (and between training
//   steps), so run_suite() returns within one measurement of request().
// - A Row is one measured point: suite id, a series ("flash", "naive",
//   "peer"...), an x (name, unit, value) and y metrics with units. Rows of
//   one chart share suite, x_name, the tags (e.g. {"D": "64", "pass": "fwd"})
//   and the metric key; the series name tells the lines apart. (A suite may
//   plot one metric against two x's: the optimizer race gives bits/byte
//   against "step" and against "seconds", and its sweep against "lr".) SuiteInfo::charts
//   lists the charts a suite feeds, their axes and which hardware limit
//   (hardware_limits.h) applies to a metric, so the page can draw them before
//   the first row arrives.
// - Results files (results_file.h) hold the rows of a run with the machine's
//   facts; claims.h turns measured rows into the claims table.
#pragma once

#include "kernels/tensor.h"

#include <atomic>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace crucible::bench {

// How big the default sizes are. `standard` is chosen for the device and its
// memory (small on a CPU, large on a GPU); `tiny` finishes in seconds on a
// CPU (tests, a quick look).
enum class SizeClass { tiny, standard };
std::string_view to_string(SizeClass s);
std::optional<SizeClass> size_class_from_string(std::string_view s);

// One option a suite takes, with its default per device and size class.
// Values are text: integer lists are comma-separated ("64,128").
struct SuiteOption {
    std::string key;           // "seqs"
    std::string description;   // "Sequence lengths T"
    std::string cpu_default;   // standard size on a CPU
    std::string cuda_default;  // standard size on a GPU
    std::string tiny;          // tiny size (either device)

    const std::string& default_for(DeviceKind device, SizeClass size) const;
};

// Which hardware limit a metric is bounded by (hardware_limits.h): the page
// draws it as a line.
enum class LimitKind { none, compute_tflops, memory_bandwidth_gbs };

// One chart a suite feeds: the rows whose metric is `metric`, plotted
// against x, one line per series (and one chart per distinct set of tags).
struct ChartInfo {
    std::string metric;        // y metric key, e.g. "tflops"
    std::string title;         // "Attention TFLOP/s"
    std::string y_unit;        // "TFLOP/s"
    bool log_x = false;        // x doubles (sizes)
    bool log_y = false;
    LimitKind limit = LimitKind::none;
};

struct SuiteInfo {
    std::string id;            // "attention"
    std::string title;         // "Attention: naive vs flash vs PyTorch"
    std::string measures;      // one sentence: what and over what
    bool cpu = true;           // runs on the CPU backend
    bool cuda = true;          // runs on the CUDA backend
    bool has_peer = false;     // a PyTorch peer can run beside it (SuiteRequest::peer)
    std::string x_name;        // "T"
    std::vector<std::string> series;   // series names it emits, in legend order
    std::vector<ChartInfo> charts;
    std::vector<SuiteOption> options;

    const SuiteOption* option(std::string_view key) const;
};

// A y value of a row.
struct Measure {
    std::string key;           // "ms", "tflops", "peak_bytes", "tok_s", "gbs", "bpb"
    double value = 0.0;
    std::string unit;          // "ms", "TFLOP/s", "bytes", "tok/s", "GB/s", "bits/byte"
};

struct Row {
    std::string suite;         // suite id
    std::string series;        // "flash", "naive", "peer", "rmsnorm", "adamw" ...
    std::string x_name;        // "T", "kv_heads", "batch", "step", "seconds"...
    double x = 0.0;
    std::string x_unit;        // "tokens", "", "s"
    // What else fixes this point (one chart per distinct set): {"D", "64"},
    // {"pass", "fwd+bwd"}, {"preset", "nano"}, {"seed", "2"}.
    std::map<std::string, std::string> tags;
    std::vector<Measure> y;

    // The value of metric `key`, or nullopt when the row has none.
    std::optional<double> get(std::string_view key) const;
    std::string tag(const std::string& key) const;   // "" when absent
    // "flash D64 fwd T=1024": for tables and messages.
    std::string label() const;
};

// Set from any thread; measurements poll it.
class CancelToken {
public:
    void request() { m_cancelled.store(true, std::memory_order_relaxed); }
    bool requested() const { return m_cancelled.load(std::memory_order_relaxed); }
    void reset() { m_cancelled.store(false, std::memory_order_relaxed); }

private:
    std::atomic<bool> m_cancelled{false};
};

enum class Outcome { completed, cancelled, failed };
std::string_view to_string(Outcome o);

// Receives a suite's results as they are measured.
class RowSink {
public:
    virtual ~RowSink() = default;
    virtual void started(const SuiteInfo& /*suite*/, const std::string& /*device*/) {}
    virtual void row(const Row& row) = 0;
    // fraction in [0, 1] of the suite done; `what` says what is measured now
    // ("flash D64 T1024 (3 of 8)").
    virtual void progress(double /*fraction*/, const std::string& /*what*/) {}
    // A sentence about the run (a size skipped for memory, the FLOP formula).
    virtual void note(const std::string& /*text*/) {}
    // Exactly once per run_suite(); message is empty when completed.
    virtual void finished(const std::string& /*suite_id*/, Outcome /*outcome*/, const std::string& /*message*/) {}
};

struct SuiteRequest {
    DeviceKind device = DeviceKind::cpu;
    int threads = 0;                  // CPU threads, 0 = all cores
    SizeClass size = SizeClass::standard;
    std::map<std::string, std::string> options;   // overrides of SuiteInfo::options defaults
    bool peer = false;                // also run the PyTorch peer where the suite has one
    std::string peer_script_dir;      // where the peer scripts are; empty = found (peer.h)

    // The option's value: the override, else the default for device and size.
    std::string option(const SuiteInfo& suite, const std::string& key) const;
};

// Every suite, in the order a "run all" goes.
const std::vector<SuiteInfo>& suites();
const SuiteInfo* find_suite(std::string_view id);

// Runs one suite; see the comment at the top.
Outcome run_suite(std::string_view id, const SuiteRequest& request, RowSink& sink, const CancelToken& cancel);

// A sink that keeps every row (tests, the claims table, results files).
class CollectingSink : public RowSink {
public:
    void row(const Row& r) override { rows.push_back(r); }
    void note(const std::string& text) override { notes.push_back(text); }
    void finished(const std::string&, Outcome o, const std::string& message) override
    {
        outcome = o;
        error = message;
    }
    std::vector<Row> rows;
    std::vector<std::string> notes;
    Outcome outcome = Outcome::failed;
    std::string error;
};

} // namespace crucible::bench
