// RunConfigModel: the one RunConfig the Model, Data and Train pages edit.
//
// Each page writes its part (model, data or training settings) and listens to
// configChanged() to show what the others wrote, so the pages never talk to
// each other and a whole configuration (a run's config.json, a preset) can be
// loaded into all of them at once.
#pragma once

#include "core/train/run_config.h"

#include <QObject>
#include <QStringList>

namespace crucible::ui {

class RunConfigModel : public QObject {
    Q_OBJECT
public:
    explicit RunConfigModel(QObject* parent = nullptr);

    const RunConfig& config() const { return m_config; }
    void setConfig(const RunConfig& config);
    void setModel(const ModelConfig& model);
    void setTrain(const TrainConfig& train);
    void setData(const DataConfig& data);
    // Fine-tune mode: adapters on a frozen base (nullopt: train a new model).
    void setFinetune(const std::optional<FinetuneConfig>& finetune);

    // The built-in preset's architecture; training and data settings stay.
    void applyPreset(const QString& name);

    QByteArray toJson() const;
    // Loads a run configuration (config.json's format). On failure the
    // configuration is unchanged and *error says what is wrong.
    bool loadJson(const QByteArray& json, QString* error);

    // The built-in preset with exactly this architecture, or "".
    static std::string matchingPreset(const ModelConfig& model);

    // RunConfig::problems(): every reason this configuration cannot start.
    QStringList problems() const;

signals:
    void configChanged();

private:
    RunConfig m_config;
};

} // namespace crucible::ui
