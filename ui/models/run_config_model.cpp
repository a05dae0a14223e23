#include "ui/models/run_config_model.h"

#include "kernels/error.h"

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

void RunConfigModel::setModel(const ModelConfig& model)
{
    m_config.model = model;
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
