// Model page: the architecture. A preset to start from and every knob of the
// LLaMA-style decoder, with what they imply computed live: parameters by
// component, FLOPs per token, the KV cache, and the peak training memory
// against what the chosen device has free. A combination the engine cannot
// build is refused inline with the engine's own reasons.
#pragma once

#include "core/model/model_config.h"

#include <QWidget>

#include <functional>

class QCheckBox;
class QComboBox;
class QLabel;
class QSpinBox;
class QTableWidget;

namespace crucible::ui {

class AppContext;
class FinetunePanel;
class MessageBanner;
class NumberBox;
class StackedBar;

class ModelPage : public QWidget {
    Q_OBJECT
public:
    explicit ModelPage(AppContext& context, QWidget* parent = nullptr);

    FinetunePanel* finetunePanel() const { return m_finetune; }

private:
    QWidget* buildForm();
    QWidget* buildFacts();
    void loadFromConfig();
    void edit(const std::function<void(ModelConfig&)>& change);
    void updateFacts();
    void updatePresetTable();
    void updateMemory();
    void noteMeasuredPeak(qint64 step, qint64 bytes);

    AppContext& m_context;
    bool m_loading = false;

    FinetunePanel* m_finetune;
    QWidget* m_presetBox;
    QWidget* m_archBox;
    QWidget* m_numericsBox;
    QLabel* m_archNote;
    QComboBox* m_preset;
    QLabel* m_presetNote;
    QSpinBox* m_vocab;
    QSpinBox* m_dModel;
    QSpinBox* m_layers;
    QSpinBox* m_heads;
    QSpinBox* m_kvHeads;
    QSpinBox* m_headDim;
    QSpinBox* m_ff;
    QSpinBox* m_seq;
    NumberBox* m_ropeTheta;
    QComboBox* m_norm;
    QComboBox* m_mlp;
    QCheckBox* m_qkNorm;
    QCheckBox* m_tied;
    NumberBox* m_normEps;
    NumberBox* m_initStd;

    MessageBanner* m_problems;
    QLabel* m_totalParams;
    StackedBar* m_paramBar;
    QLabel* m_shapeFacts;
    QLabel* m_computeFacts;
    QLabel* m_memoryDevice;
    StackedBar* m_memoryBar;
    QLabel* m_memoryVerdict;
    QLabel* m_memoryTitle;
    QLabel* m_measured;           // a fine-tune run's measured peak beside the estimate
    qint64 m_measuredPeak = 0, m_measuredSteps = 0;
    QTableWidget* m_presetTable;
};

} // namespace crucible::ui
