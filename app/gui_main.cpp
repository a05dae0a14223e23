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

#include <cstdio>

namespace {

// The options of the modes that drive the window without a person.
struct Options {
    QCommandLineOption benchmark{QStringLiteral("benchmark-gui"),
                                 QStringLiteral("Train a preset, print GUI event-loop lag and tokens/s as JSON, quit.")};
    QCommandLineOption preset{QStringLiteral("preset"), QStringLiteral("Preset for --benchmark-gui/--screenshot."),
                              QStringLiteral("name"), QStringLiteral("nano")};
    QCommandLineOption steps{QStringLiteral("steps"), QStringLiteral("Steps to train in those modes."),
                             QStringLiteral("n"), QStringLiteral("0")};
    QCommandLineOption batch{QStringLiteral("batch"), QStringLiteral("Batch size in those modes."), QStringLiteral("n"),
                             QStringLiteral("0")};
    QCommandLineOption device{QStringLiteral("device"),
                              QStringLiteral("Device to train on in those modes: cpu or cuda (default: the Train "
                                             "page's choice, the GPU where one works)."),
                              QStringLiteral("name")};
    QCommandLineOption screenshot{QStringLiteral("screenshot"),
                                  QStringLiteral("Train, save the main pages as PNGs into this folder, quit."),
                                  QStringLiteral("dir")};
    QCommandLineOption afterSteps{QStringLiteral("after-steps"), QStringLiteral("Steps before the screenshots."),
                                  QStringLiteral("n"), QStringLiteral("30")};
    QCommandLineOption runsDir{QStringLiteral("runs-dir"), QStringLiteral("Keep runs in this folder."),
                               QStringLiteral("dir")};
    QCommandLineOption page{QStringLiteral("page"),
                            QStringLiteral("With --screenshot: only this page (Chat: talks to the newest run)."),
                            QStringLiteral("name")};
    QCommandLineOption size{QStringLiteral("size"), QStringLiteral("With --screenshot: the window size, WxH."),
                            QStringLiteral("WxH"), QStringLiteral("1600x1000")};

    void addTo(QCommandLineParser& cli) const
    {
        cli.setApplicationDescription(
            QStringLiteral("A desktop playground for training and understanding language models."));
        cli.addHelpOption();
        cli.addVersionOption();
        cli.addOptions({benchmark, preset, steps, batch, device, screenshot, afterSteps, runsDir, page, size});
    }
};

void nameApplication()
{
    QCoreApplication::setOrganizationName(QStringLiteral("Crucible"));
    QCoreApplication::setApplicationName(QStringLiteral("crucible"));
    QCoreApplication::setApplicationVersion(QStringLiteral(CRUCIBLE_VERSION));
}

// --help and --version need no window system: they are answered before one is
// opened, so they work over ssh and in scripts without a display.
bool answersWithoutDisplay(int argc, char** argv)
{
    for (int i = 1; i < argc; ++i) {
        const QByteArray arg(argv[i]);
        if (arg == "--") break;
        if (arg == "-h" || arg == "--help" || arg == "-?" || arg == "--help-all" || arg == "-v" || arg == "--version")
            return true;
    }
    return false;
}

} // namespace

int main(int argc, char** argv)
{
    const Options o;
    if (answersWithoutDisplay(argc, argv)) {
        QCoreApplication app(argc, argv);
        nameApplication();
        QCommandLineParser cli;
        o.addTo(cli);
        cli.process(app);   // prints and exits
        return 0;
    }

    QApplication app(argc, argv);
    nameApplication();
    QApplication::setApplicationDisplayName(QStringLiteral("Crucible"));
    QApplication::setDesktopFileName(QStringLiteral(CRUCIBLE_APP_ID));
    QApplication::setWindowIcon(crucible::ui::icons::app());

    QCommandLineParser cli;
    o.addTo(cli);
    cli.process(app);

    const QString device = cli.value(o.device);
    if (!device.isEmpty() && device != QLatin1String("cpu") && device != QLatin1String("cuda")) {
        std::fprintf(stderr, "crucible: --device must be cpu or cuda, not \"%s\"\n", qPrintable(device));
        return 2;
    }
    const QStringList size = cli.value(o.size).split(QLatin1Char('x'));
    const int width = size.value(0).toInt(), height = size.value(1).toInt();
    if (size.size() != 2 || width < 640 || height < 480) {
        std::fprintf(stderr, "crucible: --size takes WxH of at least 640x480, such as 1280x720\n");
        return 2;
    }

    crucible::ui::theme::apply(app);
    crucible::ui::AppContext context;
    if (cli.isSet(o.runsDir)) context.setRunsDir(cli.value(o.runsDir));
    crucible::ui::MainWindow window(context);

    crucible::ui::GuiDriverOptions options;
    options.benchmark = cli.isSet(o.benchmark);
    options.screenshotDir = cli.value(o.screenshot);
    options.preset = cli.value(o.preset);
    options.steps = cli.value(o.steps).toInt();
    options.batch = cli.value(o.batch).toInt();
    options.device = device;
    options.afterSteps = cli.value(o.afterSteps).toInt();
    options.page = cli.value(o.page);
    if (!options.screenshotDir.isEmpty()) window.resize(width, height);
    window.show();

    crucible::ui::GuiDriver driver(window, context, options);
    if (options.benchmark || !options.screenshotDir.isEmpty()) driver.begin();
    return app.exec();
}
