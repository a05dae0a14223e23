// crucible: the desktop app. With no arguments it opens on the nano preset and
// the embedded corpus. --benchmark-gui and --screenshot drive the real window
// without a person (see ui/benchmark/gui_driver.h).
#include "ui/app_context.h"
#include "ui/benchmark/gui_driver.h"
#include "ui/icons.h"
#include "ui/main_window.h"
#include "ui/theme.h"

#include <QApplication>
#include <QCommandLineParser>

int main(int argc, char** argv)
{
    QApplication app(argc, argv);
    QApplication::setOrganizationName(QStringLiteral("Crucible"));
    QApplication::setApplicationName(QStringLiteral("crucible"));
    QApplication::setApplicationDisplayName(QStringLiteral("Crucible"));
    QApplication::setApplicationVersion(QStringLiteral(CRUCIBLE_VERSION));
    QApplication::setDesktopFileName(QStringLiteral(CRUCIBLE_APP_ID));
    QApplication::setWindowIcon(crucible::ui::icons::app());

    QCommandLineParser cli;
    cli.setApplicationDescription(QStringLiteral("A desktop playground for training and understanding language models."));
    cli.addHelpOption();
    cli.addVersionOption();
    const QCommandLineOption benchmark(QStringLiteral("benchmark-gui"),
                                       QStringLiteral("Train a preset, print GUI event-loop lag and tokens/s as JSON, quit."));
    const QCommandLineOption presetOpt(QStringLiteral("preset"), QStringLiteral("Preset for --benchmark-gui/--screenshot."),
                                       QStringLiteral("name"), QStringLiteral("nano"));
    const QCommandLineOption stepsOpt(QStringLiteral("steps"), QStringLiteral("Steps to train in those modes."),
                                      QStringLiteral("n"), QStringLiteral("0"));
    const QCommandLineOption batchOpt(QStringLiteral("batch"), QStringLiteral("Batch size in those modes."),
                                      QStringLiteral("n"), QStringLiteral("0"));
    const QCommandLineOption screenshot(QStringLiteral("screenshot"),
                                        QStringLiteral("Train, save the main pages as PNGs into this folder, quit."),
                                        QStringLiteral("dir"));
    const QCommandLineOption afterSteps(QStringLiteral("after-steps"), QStringLiteral("Steps before the screenshots."),
                                        QStringLiteral("n"), QStringLiteral("30"));
    const QCommandLineOption runsDir(QStringLiteral("runs-dir"), QStringLiteral("Keep runs in this folder."),
                                     QStringLiteral("dir"));
    const QCommandLineOption pageOpt(QStringLiteral("page"),
                                     QStringLiteral("With --screenshot: only this page (Chat: talks to the newest run)."),
                                     QStringLiteral("name"));
    cli.addOptions({benchmark, presetOpt, stepsOpt, batchOpt, screenshot, afterSteps, runsDir, pageOpt});
    cli.process(app);

    crucible::ui::theme::apply(app);
    crucible::ui::AppContext context;
    if (cli.isSet(runsDir)) context.setRunsDir(cli.value(runsDir));
    crucible::ui::MainWindow window(context);

    crucible::ui::GuiDriverOptions options;
    options.benchmark = cli.isSet(benchmark);
    options.screenshotDir = cli.value(screenshot);
    options.preset = cli.value(presetOpt);
    options.steps = cli.value(stepsOpt).toInt();
    options.batch = cli.value(batchOpt).toInt();
    options.afterSteps = cli.value(afterSteps).toInt();
    options.page = cli.value(pageOpt);
    if (!options.screenshotDir.isEmpty()) window.resize(1600, 1000);
    window.show();

    crucible::ui::GuiDriver driver(window, context, options);
    if (options.benchmark || !options.screenshotDir.isEmpty()) driver.begin();
    return app.exec();
}
