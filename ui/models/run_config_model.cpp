#include "ui/models/run_config_model.h"

#include "kernels/error.h"

#include <algorithm>

namespace crucible::ui {

RunConfigModel::RunConfigModel(QObject* parent) : QObject(parent)
{
    m_config.model = preset("nano");
}

void RunConfigModel::setConfig(const RunConfig& config)
{
    m_config = config;
    emit configChanged();
}

std::string RunConfigModel::matchingPreset(const ModelConfig& m)
{
    auto shape = [](const ModelConfig& c) {
        auto j = to_json(c);
        j.erase("name");
        return j;
    };
    const auto mine = shape(m);
    for (const auto& name : preset_names())
        if (shape(preset(name)) == mine) return name;
    return {};
}

void RunConfigModel::setModel(const ModelConfig& model)
{
    m_config.model = model;
    // A preset's name follows its architecture: edited, it becomes "custom";
    // edited back, it is the preset again. A name of the user's own stays.
    const auto presets = preset_names();
    const bool presetOrCustom =
        model.name == "custom" || std::find(presets.begin(), presets.end(), model.name) != presets.end();
    if (presetOrCustom) {
        const std::string match = matchingPreset(model);
        m_config.model.name = match.empty() ? "custom" : match;
    }
    emit configChanged();
}

void RunConfigModel::setTrain(const TrainConfig& train)
{
    m_config.train = train;
    emit configChanged();
}

void RunConfigModel::setData(const DataConfig& data)
{
    m_config.data = data;
    emit configChanged();
}

void RunConfigModel::setFinetune(const std::optional<FinetuneConfig>& finetune)
{
    m_config.finetune = finetune;
    emit configChanged();
}

void RunConfigModel::applyPreset(const QString& name)
{
    setModel(preset(name.toStdString()));
}

QByteArray RunConfigModel::toJson() const
{
    return QByteArray::fromStdString(to_json(m_config).dump(2));
}

bool RunConfigModel::loadJson(const QByteArray& json, QString* error)
{
    try {
        const auto j = nlohmann::json::parse(json.toStdString());
        setConfig(run_config_from_json(j));
        return true;
    } catch (const nlohmann::json::exception& e) {
        if (error) *error = QStringLiteral("The configuration is not valid JSON (%1).").arg(QString::fromUtf8(e.what()));
    } catch (const Error& e) {
        if (error) *error = QString::fromUtf8(e.what());
    }
    return false;
}

QStringList RunConfigModel::problems() const
{
    QStringList list;
    for (const auto& p : m_config.problems()) list << QString::fromStdString(p);
    return list;
}

} // namespace crucible::ui
