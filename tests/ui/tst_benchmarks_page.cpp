// The Benchmarks page, offscreen: a tiny suite runs from the Run button and
// its chart gets points as rows arrive (with the hardware limit where one
// applies); Stop ends a run within a measurement; a chart exports as a PNG
// and a CSV holding the measured numbers; the run is saved and opens again,
// and compares with itself at a ratio of one; a cut-short or foreign file is
// refused with a message; the claims table's verdicts come from the rows.
#include "core/bench/claims.h"
#include "core/bench/results_file.h"
#include "ui/benchmark/event_loop_probe.h"
#include "ui/charts/live_chart.h"
#include "ui/pages/benchmark_charts.h"
#include "ui/pages/benchmarks_page.h"
#include "ui/pages/claims_view.h"
#include "ui/widgets/message_banner.h"
#include "ui/workers/benchmark_controller.h"
#include "tests/ui/ui_test_support.h"

#include <QFile>
#include <QImage>
#include <QProgressBar>
#include <QPushButton>
#include <QSignalSpy>
#include <QTabWidget>
#include <QTableWidget>
#include <QTest>

#include <cmath>

using namespace crucible;
using namespace crucible::ui;

namespace {

constexpr int kSuiteTimeoutMs = 180'000;

bool sameNumber(double a, double b) { return std::fabs(a - b) <= 1e-8 * std::max(std::fabs(a), std::fabs(b)); }

} // namespace

class TestBenchmarksPage : public QObject {
    Q_OBJECT
    std::unique_ptr<test::AppUnderTest> m_app;
    QString m_saved;   // the results file of the tiny run

    BenchmarksPage* page() { return m_app->window->page<BenchmarksPage>(); }

    void checkOnly(const QStringList& suites)
    {
        for (const bench::SuiteInfo& s : bench::suites())
            page()->setSuiteChecked(QString::fromStdString(s.id), suites.contains(QString::fromStdString(s.id)));
    }

private slots:
    void initTestCase()
    {
        m_app = std::make_unique<test::AppUnderTest>();
        QVERIFY(m_app->exposed());
        m_app->window->showPage(QStringLiteral("Benchmarks"));
        QCOMPARE(m_app->window->currentPage(), QStringLiteral("Benchmarks"));
    }

    void cleanupTestCase() { m_app.reset(); }

    void tinySuitePlotsLive()
    {
        BenchmarksPage* p = page();
        checkOnly({QStringLiteral("norms")});
        p->setSize(bench::SizeClass::tiny);
        QSignalSpy rows(p->controller(), &BenchmarkController::rowsReceived);
        QSignalSpy finished(p->controller(), &BenchmarkController::finished);
        EventLoopProbe probe;
        probe.start();
        QTest::mouseClick(p->runButton(), Qt::LeftButton);
        QVERIFY(p->controller()->isRunning());
        QVERIFY(!p->runButton()->isEnabled() && p->stopButton()->isEnabled());
        QTRY_COMPARE_WITH_TIMEOUT(finished.count(), 1, kSuiteTimeoutMs);
        probe.stop();
        const EventLoopProbe::Stats lag = probe.stats();
        qInfo("GUI event loop while the suite ran: p50 %.2f ms, p99 %.2f ms, max %.2f ms over %d ticks", lag.p50_ms,
              lag.p99_ms, lag.max_ms, lag.ticks);
        QCOMPARE(finished.first().at(0).toBool(), false);
        QVERIFY(p->banner()->isHidden());   // no suite failed

        QVERIFY(rows.count() >= 1);
        QVERIFY(!p->results().rows.empty());
        for (const bench::Row& r : p->results().rows) {
            QCOMPARE(r.suite, std::string("norms"));
            for (const bench::Measure& m : r.y) QVERIFY2(std::isfinite(m.value) && m.value > 0, m.key.c_str());
        }
        QVERIFY(p->charts()->chartCount() >= 1);
        LiveChart* chart = p->charts()->currentChart();
        QVERIFY(chart);
        QVERIFY(chart->pointCount(0) >= 1);
        QTRY_VERIFY(!chart->drawnPoints(0).isEmpty());
        QVERIFY(chart->logX());   // widths double
        // Memory throughput is bounded by the bandwidth, which the CPU measures: a dashed line.
        const int limit = p->charts()->limitSeries();
        QVERIFY(limit >= 0);
        QVERIFY(chart->seriesDashed(limit));
        QVERIFY(chart->pointCount(limit) >= 1);
        QVERIFY(p->results().machine.bandwidth_gbs > 0);

        QProgressBar* bar = p->progressFor(QStringLiteral("norms"));
        QCOMPARE(bar->value(), bar->maximum());
        QVERIFY(p->runButton()->isEnabled() && !p->stopButton()->isEnabled());

        // Hovering reads out every line at that width.
        const double x = chart->drawnPoints(0).front().x();
        chart->showHoverAt(x);
        QVERIFY2(chart->hoverText().startsWith(QStringLiteral("C ")), qPrintable(chart->hoverText()));

        m_saved = p->resultsPath();
        QVERIFY(QFile::exists(m_saved));
        const bench::ResultsFile saved = bench::read_results(m_saved.toStdString());
        QCOMPARE(saved.rows.size(), p->results().rows.size());
    }

    void exportHoldsTheMeasuredNumbers()
    {
        BenchmarksPage* p = page();
        const QString png = m_app->env.path(QStringLiteral("chart.png"));
        const QString csv = m_app->env.path(QStringLiteral("chart.csv"));
        QVERIFY(p->exportChart(png, csv));
        QImage image(png);
        QVERIFY(!image.isNull() && image.width() > 100);

        QFile file(csv);
        QVERIFY(file.open(QIODevice::ReadOnly | QIODevice::Text));
        const QStringList lines = QString::fromUtf8(file.readAll()).split(QLatin1Char('\n'), Qt::SkipEmptyParts);
        QVERIFY(lines.size() > 1);
        QCOMPARE(lines.front(), QStringLiteral("series,C,time_s,value"));
        int measured = 0;
        for (const QString& line : lines.mid(1)) {
            const QStringList f = line.split(QLatin1Char(','));
            QCOMPARE(f.size(), 4);
            if (f[0] == QLatin1String("hardware limit")) continue;
            const double x = f[1].toDouble(), value = f[3].toDouble();
            bool found = false;
            for (const bench::Row& r : p->results().rows)
                if (QString::fromStdString(r.series) == f[0] && r.x == x)
                    for (const bench::Measure& m : r.y) found |= sameNumber(m.value, value);
            QVERIFY2(found, qPrintable(line));
            ++measured;
        }
        QVERIFY(measured >= 1);
    }

    void claimsComeFromTheRows()
    {
        BenchmarksPage* p = page();
        ClaimsView* claims = p->claims();
        const std::vector<bench::ClaimResult> expected = bench::evaluate_claims(p->results().rows);
        QCOMPARE(claims->table()->rowCount(), int(expected.size()));
        bool anyMeasured = false;
        for (int i = 0; i < int(expected.size()); ++i) {
            QCOMPARE(claims->table()->item(i, ClaimsView::ColVerdict)->text(), verdictText(expected[size_t(i)].verdict));
            anyMeasured |= expected[size_t(i)].verdict != bench::Verdict::not_measured &&
                           expected[size_t(i)].claim.suite == "norms";
        }
        QVERIFY(anyMeasured);

        // Without rows nothing is measured: no verdict is a constant.
        ClaimsView empty;
        empty.setRows({});
        for (int i = 0; i < empty.table()->rowCount(); ++i)
            QCOMPARE(empty.table()->item(i, ClaimsView::ColVerdict)->text(), verdictText(bench::Verdict::not_measured));

        // A measured claim's row leads to its chart.
        auto* tabs = m_app->window->findChild<QTabWidget*>(QStringLiteral("benchTabs"));
        tabs->setCurrentWidget(claims);
        for (int i = 0; i < int(expected.size()); ++i) {
            if (expected[size_t(i)].claim.suite != "norms" || expected[size_t(i)].verdict == bench::Verdict::not_measured)
                continue;
            p->charts()->selectChart(-1);
            QTableWidget* table = claims->table();
            const QRect rect = table->visualItemRect(table->item(i, ClaimsView::ColClaim));
            QTest::mouseClick(table->viewport(), Qt::LeftButton, {}, rect.center());
            QCOMPARE(tabs->currentWidget(), static_cast<QWidget*>(p->charts()));
            QVERIFY(p->charts()->currentChart() != nullptr);
            break;
        }
    }

    void savedResultsOpenAndCompare()
    {
        BenchmarksPage* p = page();
        const size_t rows = p->results().rows.size();
        QVERIFY(p->openResults(m_saved));
        QCOMPARE(p->results().rows.size(), rows);
        QVERIFY(p->charts()->chartCount() >= 1);
        QVERIFY(p->compareWith(m_saved));
        QTableWidget* table = p->resultsTable();
        QCOMPARE(table->columnCount(), 8);
        QVERIFY(table->rowCount() >= 1);
        for (int i = 0; i < table->rowCount(); ++i)
            QVERIFY(sameNumber(table->item(i, 7)->data(Qt::UserRole).toDouble(), 1.0));
        // The compared file's lines join the charts.
        QVERIFY(p->charts()->currentChart()->seriesCount() > 1);
    }

    void brokenFilesAreRefusedWithAMessage()
    {
        BenchmarksPage* p = page();
        QFile whole(m_saved);
        QVERIFY(whole.open(QIODevice::ReadOnly));
        const QByteArray bytes = whole.readAll();
        const QString cut = m_app->env.path(QStringLiteral("cut.jsonl"));
        QFile out(cut);
        QVERIFY(out.open(QIODevice::WriteOnly));
        out.write(bytes.left(bytes.size() * 2 / 3));
        out.close();
        const size_t before = p->results().rows.size();
        QVERIFY(!p->openResults(cut));
        QVERIFY(p->banner()->isVisible());
        QCOMPARE(p->banner()->kind(), MessageBanner::Kind::Error);
        QCOMPARE(p->results().rows.size(), before);   // what was shown stays

        const QString foreign = m_app->env.path(QStringLiteral("foreign.jsonl"));
        QFile f(foreign);
        QVERIFY(f.open(QIODevice::WriteOnly));
        f.write("{\"type\":\"step\",\"step\":1}\n");
        f.close();
        QVERIFY(!p->openResults(foreign));
        QCOMPARE(p->banner()->kind(), MessageBanner::Kind::Error);
    }

    void stopEndsTheRunWithinAMeasurement()
    {
        BenchmarksPage* p = page();
        // Standard CPU sizes of two suites: far longer than the first measurement.
        checkOnly({QStringLiteral("attention"), QStringLiteral("norms")});
        p->setSize(bench::SizeClass::standard);
        QSignalSpy rows(p->controller(), &BenchmarkController::rowsReceived);
        QSignalSpy finished(p->controller(), &BenchmarkController::finished);
        EventLoopProbe probe;
        probe.start();
        QTest::mouseClick(p->runButton(), Qt::LeftButton);
        // Stop as soon as the first rows are on screen: the attention suite has
        // many more sizes to go, however fast the machine.
        QTRY_VERIFY_WITH_TIMEOUT(rows.count() >= 1, kSuiteTimeoutMs);
        probe.stop();
        const EventLoopProbe::Stats lag = probe.stats();
        qInfo("GUI event loop while standard suites ran: p50 %.2f ms, p99 %.2f ms, max %.2f ms over %d ticks",
              lag.p50_ms, lag.p99_ms, lag.max_ms, lag.ticks);
        QTest::mouseClick(p->stopButton(), Qt::LeftButton);
        QVERIFY(!p->stopButton()->isEnabled());
        QTRY_COMPARE_WITH_TIMEOUT(finished.count(), 1, kSuiteTimeoutMs);
        // The suite running at the Stop says so; a later one never starts.
        const QString first = p->progressFor(QStringLiteral("attention"))->format();
        const QString second = p->progressFor(QStringLiteral("norms"))->format();
        QVERIFY2(finished.first().at(0).toBool(), qPrintable(QStringLiteral("not cancelled: ") + first + QLatin1Char('/') + second));
        QVERIFY2((first == QLatin1String("stopped") && second == QLatin1String("waiting")) ||
                     (first == QLatin1String("done") && second == QLatin1String("stopped")),
                 qPrintable(first + QLatin1Char('/') + second));
        QVERIFY(!p->results().rows.empty());
        QVERIFY(QFile::exists(p->resultsPath()));   // what was measured is kept
        QVERIFY(p->runButton()->isEnabled());
    }
};

QTEST_MAIN(TestBenchmarksPage)
#include "tst_benchmarks_page.moc"
