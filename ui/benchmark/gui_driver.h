// GuiDriver: drives the real window without a person, for two jobs.
//
//  --benchmark-gui  starts training on a preset, measures how late the GUI's
//                   event loop runs (EventLoopProbe) and the tokens/s the GUI
//                   receives, prints both as JSON when the run ends, and quits.
//  --screenshot DIR starts training and, after N steps, saves the main pages
//                   as PNGs (train, model, data, runs, system), then stops the
//                   run cleanly and quits.
//  --screenshot DIR --page Chat
//                   trains nothing: talks to the newest run in --runs-dir (a
//                   run named *draft* drafts for it) and saves chat.png while
//                   the third reply streams in.
#pragma once

#include "core/train/training_sink.h"
#include "ui/benchmark/event_loop_probe.h"

#include <QElapsedTimer>
#include <QObject>
#include <QString>

#include <vector>

namespace crucible::ui {

class AppContext;
class MainWindow;

struct GuiDriverOptions {
    bool benchmark = false;
    QString screenshotDir;      // non-empty: screenshot mode
    QString preset = QStringLiteral("nano");
    int steps = 0;              // 0 = keep the configuration's
    int batch = 0;              // 0 = keep the configuration's
    QString device;             // "cpu" or "cuda"; empty = the Train page's choice
    int afterSteps = 30;        // screenshot mode: steps before the pictures
    QString page;               // screenshot mode: only this page ("Chat")
};

class GuiDriver : public QObject {
    Q_OBJECT
public:
    GuiDriver(MainWindow& window, AppContext& context, GuiDriverOptions options, QObject* parent = nullptr);

    void begin();   // call once the window is shown

private:
    void onSteps(const QVector<StepMetrics>& steps);
    void onFinished(const RunSummary& summary);
    void takeScreenshots();
    void takeChatScreenshot();
    void grab(const QString& page, const QString& file);

    MainWindow& m_window;
    AppContext& m_context;
    GuiDriverOptions m_options;
    EventLoopProbe m_probe;
    std::vector<double> m_tokensPerS;
    int m_updates = 0;
    int64_t m_lastStep = 0;
    bool m_screenshotsTaken = false;
    double m_cpuAtStart = 0.0;
    QElapsedTimer m_wall;
};

} // namespace crucible::ui
