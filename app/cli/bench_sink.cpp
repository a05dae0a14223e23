#include "app/cli/bench_sink.h"

#include "core/bench/results_file.h"
#include "kernels/backend_factory.h"
#include "kernels/error.h"

#include <fmt/core.h>

#include <cmath>
#include <memory>

namespace crucible::cli {

using namespace crucible::bench;

void TerminalSink::started(const SuiteInfo& suite, const std::string& d)
{
    device = d;
    fmt::print(stderr, "{} on {}\n", suite.title, d);
}

void TerminalSink::progress(double fraction, const std::string& what)
{
    if (fraction < 1.0) fmt::print(stderr, "  measuring {}\n", what);
}

void TerminalSink::finished(const std::string&, Outcome o, const std::string& message)
{
    outcome = o;
    error = message;
}

BenchTable rows_table(const std::string& name, const std::string& device, const std::vector<Row>& rows)
{
    BenchTable t;
    t.name = name;
    t.device = device;
    std::vector<std::string> keys;
    for (const Row& r : rows)
        for (const Measure& m : r.y)
            if (std::find(keys.begin(), keys.end(), m.key) == keys.end()) {
                keys.push_back(m.key);
                const bool big = m.unit == "bytes" || m.unit == "tok/s" || m.unit.empty();
                const std::string title = m.unit == "bytes" ? m.key + " MB"
                                          : m.unit.empty() || m.unit == m.key ? m.key
                                                                              : m.key + " " + m.unit;
                t.columns.push_back({m.key, title, m.key == "mse" ? 6 : m.key == "ms" ? 4 : m.key == "lr" ? 4 : big ? 1 : 3});
            }
    for (const Row& r : rows) {
        BenchRow line{r.label(), std::vector<double>(keys.size(), NAN)};
        for (const Measure& m : r.y) {
            const size_t i = size_t(std::find(keys.begin(), keys.end(), m.key) - keys.begin());
            line.values[i] = m.unit == "bytes" ? m.value / 1e6 : m.value;
        }
        t.rows.push_back(std::move(line));
    }
    return t;
}

int run_suites(const std::vector<std::string>& ids, const SuiteRunOptions& o,
               const std::function<void(const std::string&, const TerminalSink&)>& print_table)
{
    for (const std::string& id : ids)
        if (!find_suite(id)) {
            std::string known;
            for (const auto& s : suites()) known += (known.empty() ? "" : ", ") + s.id;
            throw Error("no benchmark suite \"" + id + "\"; the suites are: " + known);
        }
    std::unique_ptr<ResultsRecorder> recorder;
    if (!o.out.empty()) {
        BackendOptions bo;
        bo.device = o.request.device;
        bo.threads = o.request.threads;
        auto backend = make_backend(bo);
        recorder = std::make_unique<ResultsRecorder>(o.out, collect_machine_facts(backend.get()));
    }
    CancelToken never;
    for (const std::string& id : ids) {
        TerminalSink terminal;
        struct Tee : RowSink {
            RowSink* a;
            ResultsRecorder* b;
            void started(const SuiteInfo& s, const std::string& d) override { a->started(s, d); if (b) b->started(s, d); }
            void row(const Row& r) override { a->row(r); if (b) b->row(r); }
            void progress(double f, const std::string& w) override { a->progress(f, w); }
            void note(const std::string& t) override { a->note(t); if (b) b->note(t); }
            void finished(const std::string& s, Outcome oc, const std::string& m) override
            {
                a->finished(s, oc, m);
                if (b) b->finished(s, oc, m);
            }
        } tee;
        tee.a = &terminal;
        tee.b = recorder.get();
        const Outcome outcome = run_suite(id, o.request, tee, never);
        if (terminal.rows.empty() && outcome != Outcome::completed) {
            // nothing measured: only the error below
        } else if (o.json) {
            for (const Row& r : terminal.rows) fmt::print("{}\n", row_to_json(r).dump());
        } else if (print_table) {
            print_table(id, terminal);
        } else {
            BenchTable t = rows_table("bench " + id, terminal.device, terminal.rows);
            t.notes = terminal.notes;
            fmt::print("{}\n", t.to_text());
        }
        if (outcome != Outcome::completed) throw Error("the " + id + " suite " + std::string(to_string(outcome)) + ": " + terminal.error);
    }
    if (recorder) fmt::print(stderr, "results written to {}\n", o.out);
    return 0;
}

} // namespace crucible::cli
