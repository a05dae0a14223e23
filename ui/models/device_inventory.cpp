#include "ui/models/device_inventory.h"

#include "kernels/backend_factory.h"
#include "kernels/error.h"

#include <QThread>

namespace crucible::ui {

DeviceInventory::DeviceInventory(QObject* parent) : QObject(parent)
{
    m_cpuBackend = make_backend(BackendOptions{});
    m_cpu.id = QStringLiteral("cpu");
    m_cpu.facts = m_cpuBackend->facts();
    m_cpu.name = QString::fromStdString(m_cpu.facts.name);
    m_cpu.memory = m_cpuBackend->memory_info();
    m_cpu.compute = m_cpuBackend->compute_dtype();
    probeCuda();
}

DeviceInventory::~DeviceInventory()
{
    if (m_probe) {
        m_probe->wait();
        delete m_probe;
    }
}

void DeviceInventory::refresh()
{
    m_cpu.memory = m_cpuBackend->memory_info();
    emit changed();
    probeCuda();
}

void DeviceInventory::probeCuda()
{
    if (m_probe) return;   // one probe at a time; its answer is fresh enough
    m_probe = QThread::create([this] {
        QList<DeviceDescription> found;
        std::string why;
        if (cuda_available(&why)) {
            for (int i = 0; i < cuda_device_count(); ++i) {
                try {
                    BackendOptions o;
                    o.device = DeviceKind::cuda;
                    o.cuda_device = i;
                    auto gpu = make_backend(o);
                    DeviceDescription d;
                    d.id = QStringLiteral("cuda:%1").arg(i);
                    d.facts = gpu->facts();
                    d.name = QString::fromStdString(d.facts.name);
                    d.memory = gpu->memory_info();
                    d.compute = gpu->compute_dtype();
                    found.push_back(d);
                } catch (const Error& e) {
                    why = e.what();
                }
            }
        }
        const QString whyNot = QString::fromStdString(why);
        QMetaObject::invokeMethod(this, [this, found, whyNot] {
            m_cuda = found;
            m_cudaWhyNot = found.isEmpty() ? whyNot : QString();
            m_cudaProbed = true;
            m_probe->wait();
            m_probe->deleteLater();
            m_probe = nullptr;
            emit changed();
        }, Qt::QueuedConnection);
    });
    m_probe->setObjectName(QStringLiteral("device probe"));
    m_probe->start();
}

QString DeviceInventory::nameFor(const std::string& device) const
{
    if (device == "cuda") return m_cuda.isEmpty() ? QStringLiteral("CUDA (unavailable)") : m_cuda.front().name;
    return m_cpu.name;
}

DType DeviceInventory::computeFor(const std::string& device) const
{
    if (device == "cuda") return m_cuda.isEmpty() ? DType::bf16 : m_cuda.front().compute;
    return m_cpu.compute;
}

MemoryInfo DeviceInventory::memoryFor(const std::string& device) const
{
    if (device == "cuda") return m_cuda.isEmpty() ? MemoryInfo{} : m_cuda.front().memory;
    return m_cpuBackend->memory_info();
}

QString DeviceInventory::preferredDevice(bool cudaAvailable, const QString& remembered)
{
    if (remembered == QLatin1String("cpu")) return remembered;
    return cudaAvailable ? QStringLiteral("cuda") : QStringLiteral("cpu");
}

} // namespace crucible::ui
