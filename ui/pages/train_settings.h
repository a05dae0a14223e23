// TrainSettings: the Train page's form. Optimizer (AdamW or Muon with their
// hyper-parameters), learning-rate schedule with a live preview of the rate
// over the run, batch and steps, evaluation/sample/checkpoint cadence, device
// and threads. It edits the training part of the shared RunConfig.
#pragma once

#include "core/train/run_config.h"

#include <QWidget>

#include <functional>

class QCheckBox;
class QComboBox;
class QGroupBox;
class QLabel;
class QLineEdit;
class QSpinBox;

namespace crucible::ui {

class AppContext;
class LiveChart;
class NumberBox;

class TrainSettings : public QWidget {
    Q_OBJECT
public:
    explicit TrainSettings(AppContext& context, QWidget* parent = nullptr);

    LiveChart* schedulePreview() const { return m_preview; }

private:
    QWidget* buildOptimizer();
    QWidget* buildSchedule();
    QWidget* buildBatch();
    QWidget* buildCadence();
    QWidget* buildDevice();
    void loadFromConfig();
    void edit(const std::function<void(TrainConfig&)>& change);
    void updateDerived();
    void updateDevices();
    void rebuildGpuBoxes();
    void applyGpuTicks();

    AppContext& m_context;
    bool m_loading = false;
    bool m_deviceDefaulted = false;   // the best device was chosen once the GPU probe answered

    QComboBox* m_optimizer;
    NumberBox* m_lr;
    NumberBox* m_beta1;
    NumberBox* m_beta2;
    NumberBox* m_eps;
    NumberBox* m_weightDecay;
    NumberBox* m_gradClip;
    QGroupBox* m_muonBox;
    NumberBox* m_muonLr;
    NumberBox* m_muonMomentum;
    QCheckBox* m_muonNesterov;
    QSpinBox* m_muonNs;
    NumberBox* m_muonWd;
    QCheckBox* m_muonMatch;

    QComboBox* m_schedule;
    QSpinBox* m_warmup;
    NumberBox* m_minLr;
    NumberBox* m_decayFraction;
    QLabel* m_decayLabel;
    LiveChart* m_preview;

    QSpinBox* m_steps;
    QSpinBox* m_batch;
    QSpinBox* m_accum;
    QSpinBox* m_seqLen;
    QLabel* m_tokensPerStep;

    QSpinBox* m_evalEvery;
    QSpinBox* m_evalBatches;
    QSpinBox* m_checkpointEvery;
    QSpinBox* m_sampleEvery;
    QSpinBox* m_sampleTokens;
    QLineEdit* m_samplePrompt;
    NumberBox* m_temperature;

    QComboBox* m_device;
    QLabel* m_deviceNote;
    // Data parallelism: one box per GPU (shown with two or more), or the
    // number of CPU replicas.
    QWidget* m_gpuList;
    QLabel* m_gpuLabel;
    QList<QCheckBox*> m_gpuBoxes;
    QSpinBox* m_cpuReplicas;
    QCheckBox* m_overlapComm;
    QSpinBox* m_threads;
    QLineEdit* m_seed;
};

// "\n" in a config is shown as the two characters \n in a one-line field.
QString escapeControl(const QString& text);
QString unescapeControl(const QString& text);

} // namespace crucible::ui
