// DeviceBuffer: one allocation on a backend's device, freed when it goes out of
// scope. Arenas are DeviceBuffers carved into Tensor views up front, so nothing
// is allocated inside a training step.
#pragma once

#include "kernels/backend.h"

#include <utility>

namespace crucible {

class DeviceBuffer {
public:
    DeviceBuffer() = default;
    DeviceBuffer(Backend& backend, size_t bytes) : m_backend(&backend), m_bytes(bytes)
    {
        if (bytes > 0) m_data = backend.allocate(bytes);
    }
    ~DeviceBuffer() { reset(); }
    DeviceBuffer(DeviceBuffer&& o) noexcept { *this = std::move(o); }
    DeviceBuffer& operator=(DeviceBuffer&& o) noexcept
    {
        if (this != &o) {
            reset();
            std::swap(m_backend, o.m_backend);
            std::swap(m_data, o.m_data);
            std::swap(m_bytes, o.m_bytes);
        }
        return *this;
    }
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;

    void reset()
    {
        if (m_data && m_backend) m_backend->deallocate(m_data);
        m_data = nullptr;
        m_bytes = 0;
    }
    void* data() const { return m_data; }
    size_t bytes() const { return m_bytes; }
    Tensor tensor(DType dtype, Shape shape) const
    {
        CRUCIBLE_CHECK(dtype_bytes(dtype, shape.numel()) <= m_bytes, "tensor larger than its buffer");
        return Tensor(m_data, dtype, shape, m_backend->device());
    }

private:
    Backend* m_backend = nullptr;
    void* m_data = nullptr;
    size_t m_bytes = 0;
};

// HostBuffer: page-locked host memory from a backend (Backend::allocate_host),
// for transfers that are queued instead of waited for.
class HostBuffer {
public:
    HostBuffer() = default;
    HostBuffer(Backend& backend, size_t bytes) : m_backend(&backend), m_bytes(bytes)
    {
        if (bytes > 0) m_data = backend.allocate_host(bytes);
    }
    ~HostBuffer() { reset(); }
    HostBuffer(HostBuffer&& o) noexcept { *this = std::move(o); }
    HostBuffer& operator=(HostBuffer&& o) noexcept
    {
        if (this != &o) {
            reset();
            std::swap(m_backend, o.m_backend);
            std::swap(m_data, o.m_data);
            std::swap(m_bytes, o.m_bytes);
        }
        return *this;
    }
    HostBuffer(const HostBuffer&) = delete;
    HostBuffer& operator=(const HostBuffer&) = delete;

    void reset()
    {
        if (m_data && m_backend) m_backend->deallocate_host(m_data);
        m_data = nullptr;
        m_bytes = 0;
    }
    template <class T> T* as() const { return static_cast<T*>(m_data); }
    size_t bytes() const { return m_bytes; }

private:
    Backend* m_backend = nullptr;
    void* m_data = nullptr;
    size_t m_bytes = 0;
};

// Hands out aligned Tensor views from one DeviceBuffer. Plan with a counting
// pass (no buffer) to learn the size, then carve for real with the same calls.
class Arena {
public:
    Arena() = default;
    explicit Arena(DeviceBuffer& buffer, DeviceKind device) : m_buffer(&buffer), m_device(device) {}

    Tensor take(DType dtype, Shape shape)
    {
        const size_t bytes = dtype_bytes(dtype, shape.numel());
        const size_t begin = (m_used + 255) / 256 * 256;
        m_used = begin + bytes;
        if (!m_buffer) return Tensor(nullptr, dtype, shape);
        CRUCIBLE_CHECK(m_used <= m_buffer->bytes(), "arena overflow");
        return Tensor(static_cast<char*>(m_buffer->data()) + begin, dtype, shape, m_device);
    }
    size_t used() const { return m_used; }

private:
    DeviceBuffer* m_buffer = nullptr;
    DeviceKind m_device = DeviceKind::cpu;
    size_t m_used = 0;
};

} // namespace crucible
