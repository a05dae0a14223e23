// BenchmarkWorker: runs benchmark suites (core/bench/suite.h) on its own
// QThread, one after another, and turns the suites' sink callbacks into Qt
// signals.
//
// run() arrives through a queued signal and blocks this worker's thread until
// the last suite is done, so Stop cannot be a queued slot: requestStop() sets
// the suites' CancelToken directly (thread-safe), and the running suite
// returns within one measurement. Rows are emitted in batches through a
// BatchThrottle (≤ 30 a second); every other event first flushes the pending
// rows, so receivers see events in the suites' order.
#pragma once

#include "core/bench/results_file.h"
#include "core/bench/suite.h"
#include "ui/workers/batch_throttle.h"

#include <QMetaType>
#include <QObject>
#include <QStringList>
#include <QVector>

#include <chrono>
#include <optional>

namespace crucible::ui {

struct BenchmarkRequest {
    QStringList suites;              // ids, run in this order
    bench::SuiteRequest request;     // device, size, peer, options
};

class BenchmarkWorker : public QObject, private bench::RowSink {
    Q_OBJECT
public:
    explicit BenchmarkWorker(QObject* parent = nullptr);

    // Thread-safe, called from the GUI thread.
    void prepare() { m_cancel.reset(); }   // before run(): forget a previous Stop
    void requestStop() { m_cancel.request(); }

public slots:
    void run(const crucible::ui::BenchmarkRequest& request);

signals:
    // The machine measured on, its hardware limits included (once per run).
    void machineReady(const crucible::bench::MachineFacts& machine);
    void suiteStarted(const QString& suite, const QString& device);
    void rowsReady(const QVector<crucible::bench::Row>& rows);
    void progressed(const QString& suite, double fraction, const QString& what);
    void noted(const QString& suite, const QString& text);
    void suiteFinished(const QString& suite, crucible::bench::Outcome outcome, const QString& message);
    void allFinished(bool cancelled);

private:
    void started(const bench::SuiteInfo& suite, const std::string& device) override;
    void row(const bench::Row& row) override;
    void progress(double fraction, const std::string& what) override;
    void note(const std::string& text) override;
    void finished(const std::string& suite_id, bench::Outcome outcome, const std::string& message) override;

    bench::CancelToken m_cancel;
    BatchThrottle<bench::Row> m_rows;
    QString m_suite;   // the one running now
    std::optional<std::chrono::steady_clock::time_point> m_lastProgress;
};

void registerBenchmarkMetaTypes();

} // namespace crucible::ui

Q_DECLARE_METATYPE(crucible::ui::BenchmarkRequest)
Q_DECLARE_METATYPE(crucible::bench::Row)
Q_DECLARE_METATYPE(crucible::bench::MachineFacts)
Q_DECLARE_METATYPE(crucible::bench::Outcome)
