// Shared set-up for the GUI suites: every suite runs against its own
// temporary settings and runs folder (never the user's), and drives widgets
// the way a person would, with the keyboard and the mouse.
#pragma once

#include "core/model/model_config.h"
#include "core/train/run_config.h"
#include "core/train/run_dir.h"
#include "ui/app_context.h"
#include "ui/main_window.h"
#include "ui/models/run_config_model.h"

#include <QAbstractSpinBox>
#include <QApplication>
#include <QComboBox>
#include <QDir>
#include <QLineEdit>
#include <QSettings>
#include <QStandardPaths>
#include <QTemporaryDir>
#include <QTest>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <memory>

namespace crucible::test {

// A finished nano run in parent/name with `steps` step records in its
// metrics.jsonl and no checkpoint: what the run lists read, without training.
inline QString makeRun(const QString& parent, const QString& name, int steps)
{
    namespace fs = std::filesystem;
    const fs::path root = fs::path(parent.toStdString()) / name.toStdString();
    fs::create_directories(root);
    RunConfig c;
    c.model = preset("nano");
    c.train.steps = steps;
    RunDirectory(root).write_config(c);
    std::ofstream out(root / "metrics.jsonl");
    out << R"({"type":"start","step":0,"device":"CPU","parameters":1049728})" "\n";
    for (int s = 1; s <= steps; ++s)
        out << nlohmann::json{{"type", "step"}, {"step", s}, {"loss", 8.0 - 0.1 * s}, {"lr", 0.001}, {"grad_norm", 1.0},
                              {"tokens_per_s", 1000.0}, {"mfu", 0.1}, {"memory_bytes", 1000}, {"elapsed_s", 0.1 * s},
                              {"tokens_seen", 100 * s}}.dump()
            << "\n";
    out << nlohmann::json{{"type", "finished"}, {"outcome", "finished"}, {"step", steps}}.dump() << "\n";
    return QString::fromStdString(root.string());
}

class IsolatedEnvironment {
public:
    IsolatedEnvironment()
    {
        QStandardPaths::setTestModeEnabled(true);
        QSettings::setDefaultFormat(QSettings::IniFormat);
        QSettings::setPath(QSettings::IniFormat, QSettings::UserScope, m_dir.filePath(QStringLiteral("settings")));
        QCoreApplication::setOrganizationName(QStringLiteral("CrucibleTests"));
        QCoreApplication::setApplicationName(QStringLiteral("crucible-tests"));
        // CTest points every suite at one shared cache so a tokenizer is trained
        // once per corpus and vocabulary; run by hand, a suite uses its own.
        if (qEnvironmentVariableIsEmpty("CRUCIBLE_CACHE_DIR"))
            qputenv("CRUCIBLE_CACHE_DIR", m_dir.filePath(QStringLiteral("cache")).toUtf8());
        qputenv("XDG_DATA_HOME", m_dir.filePath(QStringLiteral("data")).toUtf8());
        QDir().mkpath(runsDir());
    }
    QString runsDir() const { return m_dir.filePath(QStringLiteral("runs")); }
    QString path(const QString& name) const { return m_dir.filePath(name); }

private:
    QTemporaryDir m_dir;
};

// The whole app, as a suite drives it: an isolated environment, a context
// whose runs live in it, and the main window, shown. Members go in reverse:
// the window before the context it uses.
class AppUnderTest {
public:
    AppUnderTest() : context(std::make_unique<ui::AppContext>())
    {
        context->setRunsDir(env.runsDir());
        window = std::make_unique<ui::MainWindow>(*context);
        window->show();
    }
    bool exposed() { return QTest::qWaitForWindowExposed(window.get()); }
    // The widget with this object name; a missing one ends the suite.
    template <class T>
    T* find(const char* name) const
    {
        T* w = window->findChild<T*>(QString::fromLatin1(name));
        if (!w) qFatal("no widget named %s", name);
        return w;
    }

    IsolatedEnvironment env;
    std::unique_ptr<ui::AppContext> context;
    std::unique_ptr<ui::MainWindow> window;
};

// A run that takes about a second on two cores: nano, short sequences, tiny
// batches, a one-batch evaluation.
inline void makeQuick(ui::RunConfigModel& model, int steps)
{
    RunConfig c = model.config();
    c.model = preset("nano");
    c.train.steps = steps;
    c.train.batch_size = 2;
    c.train.seq_len = 32;
    c.train.eval_every = 3;
    c.train.eval_batches = 1;
    c.train.sample_tokens = 8;
    c.train.schedule.warmup_steps = 1;
    model.setConfig(c);
}

// Replaces a spin box's text as a person would: select all, type, Enter.
inline void typeInto(QAbstractSpinBox* box, const QString& text)
{
    box->setFocus();
    QTest::keyClick(box, Qt::Key_A, Qt::ControlModifier);
    QTest::keyClicks(box, text);
    QTest::keyClick(box, Qt::Key_Return);
}

inline void typeInto(QLineEdit* edit, const QString& text)
{
    edit->setFocus();
    edit->selectAll();
    QTest::keyClicks(edit, text);
    QTest::keyClick(edit, Qt::Key_Return);
}

// Moves a closed combo box to the entry whose data is `value` with the arrow
// keys, which emits activated() as a user's choice does.
inline bool chooseInCombo(QComboBox* combo, const QString& value)
{
    const int target = combo->findData(value);
    if (target < 0) return false;
    combo->setFocus();
    for (int guard = 0; combo->currentIndex() != target && guard < 64; ++guard)
        QTest::keyClick(combo, combo->currentIndex() < target ? Qt::Key_Down : Qt::Key_Up);
    return combo->currentIndex() == target;
}

} // namespace crucible::test
