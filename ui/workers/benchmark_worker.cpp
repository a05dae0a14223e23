#include "ui/workers/benchmark_worker.h"

#include "kernels/backend_factory.h"
#include "kernels/error.h"
#include "ui/format.h"

namespace crucible::ui {

BenchmarkWorker::BenchmarkWorker(QObject* parent)
    : QObject(parent), m_rows([this](const QVector<bench::Row>& rows) { emit rowsReady(rows); })
{
}

void BenchmarkWorker::run(const BenchmarkRequest& request)
{
    m_rows.reset();
    // The machine's facts (and with them the limits the charts draw) come
    // from a backend of the device the suites run on.
    try {
        BackendOptions options;
        options.device = request.request.device;
        options.threads = request.request.threads;
        std::unique_ptr<Backend> backend = make_backend(options);
        emit machineReady(bench::collect_machine_facts(backend.get()));
    } catch (const std::exception& e) {
        emit noted(QString(), tr("could not read the device's facts: %1").arg(QString::fromUtf8(e.what())));
        emit machineReady(bench::collect_machine_facts(nullptr));
    }
    for (const QString& id : request.suites) {
        if (m_cancel.requested()) break;
        m_suite = id;
        bench::run_suite(id.toStdString(), request.request, *this, m_cancel);
    }
    m_rows.flush();
    emit allFinished(m_cancel.requested());
}

void BenchmarkWorker::started(const bench::SuiteInfo& suite, const std::string& device)
{
    m_rows.flush();
    m_lastProgress.reset();
    emit suiteStarted(qs(suite.id), qs(device));
}

void BenchmarkWorker::row(const bench::Row& row) { m_rows.add(row); }

void BenchmarkWorker::progress(double fraction, const std::string& what)
{
    // Tiny sizes measure hundreds of points a second: a progress bar needs
    // no more than the rows' rate.
    const auto now = std::chrono::steady_clock::now();
    if (fraction < 1.0 && m_lastProgress && now - *m_lastProgress < std::chrono::milliseconds(33)) return;
    m_lastProgress = now;
    emit progressed(m_suite, fraction, qs(what));
}

void BenchmarkWorker::note(const std::string& text)
{
    m_rows.flush();
    emit noted(m_suite, qs(text));
}

void BenchmarkWorker::finished(const std::string& suite_id, bench::Outcome outcome, const std::string& message)
{
    m_rows.flush();
    emit suiteFinished(qs(suite_id), outcome, qs(message));
}

void registerBenchmarkMetaTypes()
{
    qRegisterMetaType<BenchmarkRequest>();
    qRegisterMetaType<bench::Row>();
    qRegisterMetaType<QVector<bench::Row>>();
    qRegisterMetaType<bench::MachineFacts>();
    qRegisterMetaType<bench::Outcome>();
}

} // namespace crucible::ui
