// FinetunePanel: the Model page's choice between training a new model and
// fine-tuning one that exists. In fine-tune mode it picks the base (a run
// from the list or a folder: a Crucible run or a Hugging Face Llama/Qwen3
// directory), the adapted projections, LoRA's hyper-parameters, QLoRA,
// gradient checkpointing and the adapters' learning rate, all written into
// the shared RunConfig's "finetune" section. A base that cannot serve is
// explained inline; nothing here throws.
#pragma once

#include "core/train/run_config.h"
#include "ui/workers/run_scanner.h"

#include <QMap>
#include <QWidget>

#include <functional>

class QCheckBox;
class QComboBox;
class QGroupBox;
class QLabel;
class QPushButton;
class QSpinBox;

namespace crucible::ui {

class AppContext;
class NumberBox;

// The base's description for a person ("nano run, 1.2M parameters") or the
// reason it cannot be a base, from open_base_model.
struct BaseCheck {
    bool ok = false;
    ModelConfig config;
    QString text;
};
BaseCheck checkBase(const QString& path);

class FinetunePanel : public QWidget {
    Q_OBJECT
public:
    explicit FinetunePanel(AppContext& context, QWidget* parent = nullptr);

    // Fine-tunes `path` (a run or a model folder): what the Folder… button
    // and the run list do. Returns false and shows why when it is no base.
    bool chooseBase(const QString& path);
    // Why the chosen base cannot be fine-tuned; empty when it can.
    QString baseProblem() const;

private:
    QWidget* buildBase();
    QWidget* buildAdapters();
    void setFinetuneMode(bool on);
    void editFinetune(const std::function<void(FinetuneConfig&)>& change);
    void loadFromConfig();
    void showRuns();
    void pickFolder();

    // The last base checked: its folder is read once, not on every edit.
    const BaseCheck& check(const QString& path) const;

    AppContext& m_context;
    RunScanner m_scanner;
    bool m_loading = false;
    mutable QString m_checkedPath;
    mutable BaseCheck m_checked;
    FinetuneConfig m_last;   // remembered while training a new model

    QComboBox* m_mode;
    QWidget* m_details;
    QComboBox* m_base;
    QPushButton* m_folder;
    QLabel* m_baseNote;
    QMap<QString, QCheckBox*> m_targets;   // PEFT module name → box
    QSpinBox* m_rank;
    NumberBox* m_alpha;
    NumberBox* m_dropout;
    QCheckBox* m_rslora;
    QComboBox* m_init;
    QCheckBox* m_qlora;
    QCheckBox* m_checkpointing;
    NumberBox* m_lr;
    QLabel* m_scaleNote;
};


} // namespace crucible::ui
