// crucible-cli's face of the benchmark suites (core/bench/suite.h): a sink
// that says on stderr what is being measured and keeps the rows for the
// table printed at the end, and the run of one or more suites with the
// options every `bench` command shares (--out, --json, --peer, ...).
#pragma once

#include "core/bench/bench_table.h"
#include "core/bench/suite.h"

#include <string>
#include <vector>

namespace crucible::cli {

class TerminalSink : public bench::RowSink {
public:
    void started(const bench::SuiteInfo& suite, const std::string& device) override;
    void row(const bench::Row& r) override { rows.push_back(r); }
    void progress(double fraction, const std::string& what) override;
    void note(const std::string& text) override { notes.push_back(text); }
    void finished(const std::string& suite, bench::Outcome outcome, const std::string& message) override;

    std::vector<bench::Row> rows;
    std::vector<std::string> notes;
    std::string device;
    bench::Outcome outcome = bench::Outcome::completed;
    std::string error;
};

// Rows as a table: one line per row (series, tags, x), one column per metric.
BenchTable rows_table(const std::string& name, const std::string& device, const std::vector<bench::Row>& rows);

struct SuiteRunOptions {
    bench::SuiteRequest request;
    std::string out;    // results file (JSON lines); empty = none
    bool json = false;  // print the rows as JSON lines instead of tables
};

// Runs the suites in order (the first failure stops the rest), prints a table
// per suite or JSON lines, writes --out. Returns the exit code.
int run_suites(const std::vector<std::string>& ids, const SuiteRunOptions& o,
               const std::function<void(const std::string&, const TerminalSink&)>& print_table = {});

} // namespace crucible::cli
