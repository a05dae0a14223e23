#include "ui/workers/run_scanner.h"

#include <QDir>
#include <QFileInfo>
#include <QSet>

namespace crucible::ui {

namespace {

QString canonical(const QString& path)
{
    const QString c = QFileInfo(path).canonicalFilePath();
    return c.isEmpty() ? QDir::cleanPath(path) : c;
}

} // namespace

void RunScanWorker::scan(quint64 id, const QStringList& folders)
{
    auto runs = std::make_shared<std::vector<RunRecord>>();
    QSet<QString> seen;
    for (const QString& folder : folders) {
        std::vector<RunRecord> found;
        try {
            found = list_runs(folder.toStdString());
        } catch (const std::exception&) {
            continue;   // a folder that vanished or cannot be read lists no runs
        }
        for (RunRecord& r : found) {
            const QString key = canonical(QString::fromStdString(r.root.string()));
            if (seen.contains(key)) continue;
            seen.insert(key);
            runs->push_back(std::move(r));
        }
    }
    emit scanned(id, runs);
}

RunScanner::RunScanner(QObject* parent)
    : QObject(parent), m_worker(new RunScanWorker), m_thread(m_worker, QStringLiteral("run scan")),
      m_runs(std::make_shared<const std::vector<RunRecord>>())
{
    qRegisterMetaType<crucible::ui::RunRecords>();
    connect(this, &RunScanner::scanRequested, m_worker, &RunScanWorker::scan, Qt::QueuedConnection);
    connect(m_worker, &RunScanWorker::scanned, this, [this](quint64 id, const RunRecords& runs) {
        if (id != m_latest) return;   // a newer scan is on its way
        m_done = id;
        m_runs = runs;
        emit finished();
    }, Qt::QueuedConnection);
}

void RunScanner::scan(const QStringList& folders) { emit scanRequested(++m_latest, folders); }

} // namespace crucible::ui
