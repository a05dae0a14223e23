// DeviceBuffer: one allocation on a backend's device, freed when it goes out of
// scope; HostBuffer the same in page-locked host memory. Arenas are
// DeviceBuffers carved into Tensor views up front, so nothing is allocated
// inside a training step.
#pragma once

#include "kernels/backend.h"

#include <utility>

namespace crucible {

// Where a BackendBuffer lives: the backend's device (Backend::allocate) or
// page-locked host memory the device reaches too (Backend::allocate_host),
// for transfers that are queued instead of waited for.
enum class BufferMemory { device, host };

template <BufferMemory Memory>
class BackendBuffer {
public:
    BackendBuffer() = default;
    BackendBuffer(Backend& backend, size_t bytes) : m_backend(&backend), m_bytes(bytes)
    {
        if (bytes > 0) m_data = Memory == BufferMemory::device ? backend.allocate(bytes) : backend.allocate_host(bytes);
    }
    ~BackendBuffer() { reset(); }
    BackendBuffer(BackendBuffer&& o) noexcept { *this = std::move(o); }
    BackendBuffer& operator=(BackendBuffer&& o) noexcept
    {
        if (this != &o) {
            reset();
            std::swap(m_backend, o.m_backend);
            std::swap(m_data, o.m_data);
            std::swap(m_bytes, o.m_bytes);
        }
        return *this;
    }
    BackendBuffer(const BackendBuffer&) = delete;
    BackendBuffer& operator=(const BackendBuffer&) = delete;

    void reset()
    {
        if (m_data && m_backend) {
            if constexpr (Memory == BufferMemory::device) m_backend->deallocate(m_data);
            else m_backend->deallocate_host(m_data);
        }
        m_data = nullptr;
        m_bytes = 0;
    }
    void* data() const { return m_data; }
    template <class T> T* as() const { return static_cast<T*>(m_data); }
    size_t bytes() const { return m_bytes; }
    // A view for the backend's ops (host memory included: they reach it).
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

using DeviceBuffer = BackendBuffer<BufferMemory::device>;
using HostBuffer = BackendBuffer<BufferMemory::host>;

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
