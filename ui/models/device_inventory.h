// DeviceInventory: what this machine can train on, for the Model page's memory
// check, the Train page's device choice and the System page.
//
// The CPU is described at once. CUDA devices are probed on a helper thread
// (creating a CUDA context can take a second), and changed() tells the pages
// when the answer is in.
#pragma once

#include "kernels/backend.h"

#include <QList>
#include <QObject>
#include <QString>

#include <memory>
#include <mutex>

class QThread;

namespace crucible::ui {

struct DeviceDescription {
    QString id;               // "cpu", "cuda:0"
    QString name;
    DeviceFacts facts;
    MemoryInfo memory;
    DType compute = DType::f32;
};

class DeviceInventory : public QObject {
    Q_OBJECT
public:
    explicit DeviceInventory(QObject* parent = nullptr);
    ~DeviceInventory() override;

    const DeviceDescription& cpu() const { return m_cpu; }
    QList<DeviceDescription> cudaDevices() const { return m_cuda; }
    bool cudaProbed() const { return m_cudaProbed; }
    bool cudaAvailable() const { return !m_cuda.isEmpty(); }
    QString cudaUnavailableReason() const { return m_cudaWhyNot; }

    // For a run's device ("cpu" or "cuda"): the name, the compute type (which
    // sets the memory estimate) and the memory free now (re-read for the CPU,
    // as of the last probe for CUDA).
    QString nameFor(const std::string& device) const;

    // The device a new run trains on: the one the user chose last time
    // (`remembered`, empty if never), else the best there is, a working GPU
    // before the CPU. A remembered GPU that is gone falls back to the CPU.
    static QString preferredDevice(bool cudaAvailable, const QString& remembered);
    DType computeFor(const std::string& device) const;
    MemoryInfo memoryFor(const std::string& device) const;

public slots:
    void refresh();

signals:
    void changed();

private:
    void probeCuda();

    std::unique_ptr<Backend> m_cpuBackend;   // kept for memory_info(): creating one sets BLAS threads
    DeviceDescription m_cpu;
    QList<DeviceDescription> m_cuda;
    QString m_cudaWhyNot;
    bool m_cudaProbed = false;
    QThread* m_probe = nullptr;
};

} // namespace crucible::ui
