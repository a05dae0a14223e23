// The live chart: 100K points decimated to the pixel width without losing
// extremes, batched redraws, EMA smoothing (and its slider), log-Y, time on
// X, zoom, the hover readout, PNG and CSV export, and the ring buffer.
#include "ui/charts/live_chart.h"
#include "ui/charts/chart_view.h"
#include "ui/charts/sample_ring.h"

#include <QChart>
#include <QElapsedTimer>
#include <QFile>
#include <QImage>
#include <QLegend>
#include <QLegendMarker>
#include <QLogValueAxis>
#include <QSignalSpy>
#include <QSlider>
#include <QTemporaryDir>
#include <QTest>
#include <QToolButton>
#include <QValueAxis>

#include <cmath>

using namespace crucible::ui;

class TestLiveChart : public QObject {
    Q_OBJECT

private:
    std::unique_ptr<LiveChart> shownChart()
    {
        auto chart = std::make_unique<LiveChart>(QStringLiteral("Loss"));
        chart->resize(800, 400);
        chart->show();
        if (!QTest::qWaitForWindowExposed(chart.get())) qWarning("chart window not exposed");
        return chart;
    }

private slots:
    void hundredThousandPointsAreDecimatedToThePixelWidth()
    {
        auto chart = shownChart();
        const int s = chart->addSeries(QStringLiteral("train"));
        std::vector<ChartSample> samples(100'000);
        double lo = INFINITY, hi = -INFINITY;
        for (size_t i = 0; i < samples.size(); ++i) {
            const double v = 3.0 + std::sin(double(i) * 0.001) + 0.1 * std::sin(double(i) * 1.7);
            samples[i] = {double(i + 1), double(i) * 0.01, v};
            lo = std::min(lo, v);
            hi = std::max(hi, v);
        }
        // A spike that must survive decimation.
        samples[54321].value = 42.0;
        hi = 42.0;
        chart->append(s, samples);
        QElapsedTimer clock;
        clock.start();
        chart->redrawNow();
        const qint64 ms = clock.elapsed();
        qInfo("redraw of 100000 points: %lld ms", ms);

        QCOMPARE(chart->pointCount(s), size_t(100'000));
        const QList<QPointF> drawn = chart->drawnPoints(s);
        const int width = int(chart->chart()->plotArea().width());
        QVERIFY2(drawn.size() <= 4 * width + 8, qPrintable(QStringLiteral("%1 points for %2 px").arg(drawn.size()).arg(width)));
        QVERIFY(drawn.size() > width);
        double dlo = INFINITY, dhi = -INFINITY;
        for (const QPointF& p : drawn) {
            dlo = std::min(dlo, p.y());
            dhi = std::max(dhi, p.y());
        }
        QCOMPARE(dlo, lo);
        QCOMPARE(dhi, hi);
        // x stays ordered, so the line never folds back on itself.
        for (int i = 1; i < drawn.size(); ++i) QVERIFY(drawn[i].x() >= drawn[i - 1].x());
    }

    void appendsAreRedrawnInBatches()
    {
        auto chart = shownChart();
        const int s = chart->addSeries(QStringLiteral("train"));
        chart->redrawNow();
        for (int i = 1; i <= 500; ++i) chart->append(s, i, i * 0.1, 1.0 / i);
        // Nothing is handed to Qt Charts until the redraw timer fires.
        QCOMPARE(chart->drawnPoints(s).size(), 0);
        QTRY_COMPARE(chart->drawnPoints(s).size(), 500);
    }

    void emaSmoothingMatchesTheDebiasedFormula()
    {
        auto chart = shownChart();
        const int s = chart->addSeries(QStringLiteral("train"));
        for (int i = 0; i < 50; ++i) chart->append(s, i + 1, i, i % 2 ? 1.0 : 0.0);
        QSignalSpy changed(chart.get(), &LiveChart::smoothingChanged);
        chart->setSmoothing(0.9);
        chart->redrawNow();
        QCOMPARE(changed.count(), 1);
        const QList<QPointF> smooth = chart->drawnPoints(s, true);
        QCOMPARE(smooth.size(), 50);
        double last = 0.0;
        for (int i = 0; i < 50; ++i) {
            last = 0.9 * last + 0.1 * (i % 2 ? 1.0 : 0.0);
            const double expected = last / (1.0 - std::pow(0.9, i + 1));
            QVERIFY(std::fabs(smooth[i].y() - expected) < 1e-12);
        }
        // The raw line is still drawn, behind.
        QCOMPARE(chart->drawnPoints(s, false).size(), 50);

        // The chart's own slider drives the same setting.
        chart->setSmoothingControlVisible(true);
        auto* slider = chart->findChild<QSlider*>(QStringLiteral("smoothingSlider"));
        QVERIFY(slider);
        slider->setFocus();
        QTest::keyClick(slider, Qt::Key_Home);
        QCOMPARE(chart->smoothing(), 0.0);
        chart->redrawNow();
        QCOMPARE(chart->drawnPoints(s, true).size(), 0);
        for (int i = 0; i < 6; ++i) QTest::keyClick(slider, Qt::Key_PageUp);
        QVERIFY(chart->smoothing() > 0.5);
    }

    void logScaleDropsNonPositiveValues()
    {
        auto chart = shownChart();
        const int s = chart->addSeries(QStringLiteral("lr"));
        const double values[] = {1e-4, 0.0, 1e-3, -1.0, 1e-2, NAN, 1e-1};
        for (int i = 0; i < 7; ++i) chart->append(s, i + 1, i, values[i]);
        chart->redrawNow();
        QCOMPARE(chart->drawnPoints(s).size(), 6);   // NaN is never drawn
        auto* button = chart->findChild<QToolButton*>(QStringLiteral("logButton"));
        QVERIFY(button);
        QSignalSpy spy(chart.get(), &LiveChart::logYChanged);
        QTest::mouseClick(button, Qt::LeftButton);
        QCOMPARE(spy.count(), 1);
        QVERIFY(chart->logY());
        bool hasLogAxis = false;
        for (QAbstractAxis* axis : chart->chart()->axes(Qt::Vertical)) hasLogAxis |= qobject_cast<QLogValueAxis*>(axis) != nullptr;
        QVERIFY(hasLogAxis);
        QCOMPARE(chart->drawnPoints(s).size(), 4);
        QTest::mouseClick(button, Qt::LeftButton);
        QVERIFY(!chart->logY());
        QCOMPARE(chart->drawnPoints(s).size(), 6);
    }

    void xAxisCanBeTrainingTimeAndZoomed()
    {
        auto chart = shownChart();
        const int s = chart->addSeries(QStringLiteral("train"));
        for (int i = 1; i <= 1000; ++i) chart->append(s, i, i * 0.5, std::sqrt(double(i)));
        chart->setXAxis(LiveChart::XAxis::Time);
        QCOMPARE(chart->drawnPoints(s).front().x(), 0.5);
        QCOMPARE(chart->drawnPoints(s).back().x(), 500.0);
        chart->setXAxis(LiveChart::XAxis::Step);
        chart->setZoomRange(100, 200);
        const QList<QPointF> zoomed = chart->drawnPoints(s);
        QVERIFY(zoomed.size() >= 100 && zoomed.size() <= 103);
        QVERIFY(zoomed.front().x() >= 99 && zoomed.back().x() <= 201);
        chart->resetZoom();
        QCOMPARE(chart->drawnPoints(s).size(), 1000);
    }

    void hoverShowsEverySeriesAtTheStep()
    {
        auto chart = shownChart();
        const int train = chart->addSeries(QStringLiteral("train"));
        const int val = chart->addSeries(QStringLiteral("validation"), QColor(), true);
        for (int i = 1; i <= 100; ++i) chart->append(train, i, i, 10.0 - i * 0.05);
        for (int i = 10; i <= 100; i += 10) chart->append(val, i, i, 9.0 - i * 0.04);
        chart->showHoverAt(50);
        const QString text = chart->hoverText();
        QVERIFY2(text.startsWith(QStringLiteral("step 50")), qPrintable(text));
        QVERIFY(text.contains(QStringLiteral("train 7.5")));
        QVERIFY(text.contains(QStringLiteral("validation 7")));
        chart->hideHover();
        QVERIFY(chart->hoverText().isEmpty());

        // The real mouse: moving over the plot shows the readout.
        chart->redrawNow();
        const QPoint inside = chart->chart()->plotArea().center().toPoint();
        QTest::mouseMove(chart->view()->viewport(), inside);
        QTRY_VERIFY(!chart->hoverText().isEmpty());
    }

    void exportsPngAndCsv()
    {
        QTemporaryDir dir;
        auto chart = shownChart();
        const int s = chart->addSeries(QStringLiteral("muon, run 2"));
        for (int i = 1; i <= 20; ++i) chart->append(s, i, i * 0.25, 1.0 / i);
        chart->setSmoothing(0.5);
        QVERIFY(chart->exportCsv(dir.filePath(QStringLiteral("loss.csv"))));
        QFile csv(dir.filePath(QStringLiteral("loss.csv")));
        QVERIFY(csv.open(QIODevice::ReadOnly));
        const QStringList lines = QString::fromUtf8(csv.readAll()).split(QLatin1Char('\n'), Qt::SkipEmptyParts);
        QCOMPARE(lines.size(), 21);
        QCOMPARE(lines[0], QStringLiteral("series,step,time_s,value,smoothed"));
        QVERIFY(lines[1].startsWith(QStringLiteral("\"muon, run 2\",1,0.25,1,")));
        QVERIFY(chart->exportPng(dir.filePath(QStringLiteral("loss.png"))));
        const QImage image(dir.filePath(QStringLiteral("loss.png")));
        QVERIFY(!image.isNull());
        QVERIFY(image.width() > 100 && image.height() > 100);
    }

    // A chart of sizes (the Benchmarks page): a named X, a base-2 log axis,
    // data replaced per series, and a dashed reference line.
    void sizesOnALogAxisWithAReferenceLine()
    {
        QTemporaryDir dir;
        auto chart = shownChart();
        const int flash = chart->addSeries(QStringLiteral("flash"), QColor(), true);
        const int limit = chart->addSeries(QStringLiteral("hardware limit"));
        chart->setSeriesDashed(limit, true);
        QVERIFY(chart->seriesDashed(limit) && !chart->seriesDashed(flash));
        chart->setXLabel(QStringLiteral("T"));
        chart->setLogX(true);
        QVERIFY(chart->logX());
        // Out of order, as rows may come: the page sorts and replaces.
        chart->setSeriesData(flash, {{128, 0, 2.0}, {256, 0, 3.0}, {512, 0, 3.5}, {1024, 0, 3.75}});
        chart->setSeriesData(limit, {{128, 0, 5.0}, {1024, 0, 5.0}});
        chart->redrawNow();
        QCOMPARE(chart->drawnPoints(flash).size(), 4);
        QCOMPARE(chart->drawnPoints(limit).size(), 2);
        auto* logX = qobject_cast<QLogValueAxis*>(chart->chart()->axes(Qt::Horizontal).value(0));
        QVERIFY(logX);
        QCOMPARE(logX->base(), 2.0);
        QVERIFY(logX->min() < 128 && logX->max() > 1024);
        // Sizes that double sit evenly apart.
        const QPointF a = chart->chart()->mapToPosition(QPointF(128, 2.0), chart->chart()->series().value(0));
        const QPointF b = chart->chart()->mapToPosition(QPointF(256, 2.0), chart->chart()->series().value(0));
        const QPointF c = chart->chart()->mapToPosition(QPointF(512, 2.0), chart->chart()->series().value(0));
        QVERIFY(std::fabs((b.x() - a.x()) - (c.x() - b.x())) < 1.0);
        // The readout names the axis and snaps by ratio: 370 is nearer 512
        // than 256 on this axis (though not in plain difference).
        chart->showHoverAt(370);
        QVERIFY2(chart->hoverText().startsWith(QStringLiteral("T 512")), qPrintable(chart->hoverText()));
        QVERIFY2(chart->hoverText().contains(QStringLiteral("flash 3.5")), qPrintable(chart->hoverText()));
        chart->setSeriesData(flash, {{64, 0, 1.0}});
        QCOMPARE(chart->pointCount(flash), size_t(1));
        QVERIFY(chart->exportCsv(dir.filePath(QStringLiteral("t.csv"))));
        QFile csv(dir.filePath(QStringLiteral("t.csv")));
        QVERIFY(csv.open(QIODevice::ReadOnly));
        QVERIFY(csv.readLine().startsWith("series,T,time_s,value"));
        chart->setLogX(false);
        QVERIFY(qobject_cast<QValueAxis*>(chart->chart()->axes(Qt::Horizontal).value(0)));
    }

    void ringBufferKeepsTheNewestSamples()
    {
        SampleRing ring(100);
        for (int i = 1; i <= 250; ++i) ring.push({double(i), 0.0, double(i)});
        QCOMPARE(ring.size(), size_t(100));
        QCOMPARE(ring.dropped(), size_t(150));
        QCOMPARE(ring[0].step, 151.0);
        QCOMPARE(ring.back().step, 250.0);

        auto chart = shownChart();
        const int s = chart->addSeries(QStringLiteral("train"), QColor(), false, 100);
        for (int i = 1; i <= 250; ++i) chart->append(s, i, i, i);
        chart->redrawNow();
        QCOMPARE(chart->drawnPoints(s).front().x(), 151.0);
    }

    void emptyChartHasOneLegendEntryPerSeriesAndNoScale()
    {
        auto chart = shownChart();
        chart->addSeries(QStringLiteral("train"));
        chart->addSeries(QStringLiteral("validation"), QColor(), true);
        chart->redrawNow();
        QTest::qWait(50);   // the legend lays its markers out
        auto visibleMarkers = [&] {
            QStringList names;
            for (QLegendMarker* m : chart->chart()->legend()->markers())
                if (m->isVisible()) names << m->label();
            return names;
        };
        QCOMPARE(visibleMarkers(), (QStringList{QStringLiteral("train"), QStringLiteral("validation")}));
        for (QAbstractAxis* axis : chart->chart()->axes()) QVERIFY(!axis->labelsVisible());
        chart->append(0, 1, 1, 2.5);
        chart->redrawNow();
        for (QAbstractAxis* axis : chart->chart()->axes()) QVERIFY(axis->labelsVisible());
        chart->setSmoothing(0.5);
        chart->redrawNow();
        QTest::qWait(50);
        QCOMPARE(visibleMarkers(), (QStringList{QStringLiteral("train"), QStringLiteral("validation")}));
    }

    void aSinglePointSitsInsideThePlot()
    {
        auto chart = shownChart();
        const int s = chart->addSeries(QStringLiteral("validation"), QColor(), true);
        chart->append(s, 100, 5, 3.5);
        chart->redrawNow();
        auto* x = qobject_cast<QValueAxis*>(chart->chart()->axes(Qt::Horizontal).front());
        QVERIFY(x->min() < 100 && x->max() > 100);
        QCOMPARE(x->min() + x->max(), 200.0);   // centred
    }

    void valuesOneUlpApartKeepAxesTickable()
    {
        // 100919296 bytes as megabytes, computed two ways: one ulp apart. Qt
        // Charts steps through dynamic ticks by adding the interval, so an
        // interval below the values' resolution never ends its label loop.
        const double a = 100919296.0 / 1e6, b = 100919296.0 * 1e-6;
        QVERIFY(a != b);
        for (const double x0 : {0.0, 1e9}) {   // also an x range narrower than its values' digits
            auto chart = shownChart();
            const int s = chart->addSeries(QStringLiteral("memory"));
            chart->append(s, x0 + 1, x0 + 1, b);
            chart->append(s, x0 + 1 + 1e-7, x0 + 1 + 1e-7, a);
            chart->setXAxis(LiveChart::XAxis::Time);
            chart->redrawNow();
            for (QAbstractAxis* axis : chart->chart()->axes()) {
                auto* v = qobject_cast<QValueAxis*>(axis);
                QVERIFY(v);
                QVERIFY2(v->max() - v->min() > 1e-10 * std::fabs(v->max()), qPrintable(QString::number(v->max() - v->min())));
                if (v->tickType() == QValueAxis::TicksDynamic) {
                    QVERIFY(v->min() + v->tickInterval() > v->min());
                    QVERIFY((v->max() - v->min()) / v->tickInterval() <= 50);
                }
            }
            QTest::qWait(50);   // a layout pass, where the labels are made
            QCOMPARE(chart->drawnPoints(s).size(), 2);
        }
    }
};

QTEST_MAIN(TestLiveChart)
#include "tst_live_chart.moc"
