#include "core/bench/hardware_limits.h"

#include "core/bench/bench_table.h"
#include "core/tensor/buffer.h"
#include "kernels/backend.h"
#include "kernels/backend_factory.h"

#include <algorithm>
#include <cctype>
#include <map>
#include <mutex>

namespace crucible::bench {

const std::vector<KnownGpu>& known_gpus()
{
    // Datasheet peaks: dense bf16 tensor-core TFLOP/s (no sparsity) and
    // memory bandwidth. Longer matches first, so "H100 PCIe" wins over "H100".
    static const std::vector<KnownGpu> table = {
        {"H100 PCIe", "NVIDIA H100 PCIe", 756, 2000},
        {"H100 NVL", "NVIDIA H100 NVL", 835, 3900},
        {"H100", "NVIDIA H100 SXM", 989, 3350},
        {"H200", "NVIDIA H200", 989, 4800},
        {"GH200", "NVIDIA GH200", 989, 4000},
        {"B200", "NVIDIA B200", 2250, 8000},
        {"A100-PCIE-40GB", "NVIDIA A100 PCIe 40GB", 312, 1555},
        {"A100-SXM4-40GB", "NVIDIA A100 SXM 40GB", 312, 1555},
        {"A100 80GB PCIe", "NVIDIA A100 PCIe 80GB", 312, 1935},
        {"A100", "NVIDIA A100 SXM", 312, 2039},
        {"A10G", "NVIDIA A10G", 70, 600},
        {"A10", "NVIDIA A10", 125, 600},
        {"L40S", "NVIDIA L40S", 362, 864},
        {"L40", "NVIDIA L40", 181, 864},
        {"L4", "NVIDIA L4", 121, 300},
        {"RTX 6000 Ada", "NVIDIA RTX 6000 Ada", 364, 960},
        {"RTX 5090", "NVIDIA GeForce RTX 5090", 210, 1792},
        {"RTX 4090", "NVIDIA GeForce RTX 4090", 165, 1008},
        {"RTX 4080", "NVIDIA GeForce RTX 4080", 97, 717},
        {"RTX 3090", "NVIDIA GeForce RTX 3090", 71, 936},
        {"V100", "NVIDIA V100", 125, 900},
        {"T4", "NVIDIA T4", 65, 320},
    };
    return table;
}

std::optional<KnownGpu> find_known_gpu(std::string_view device_name)
{
    auto lower = [](std::string_view s) {
        std::string out(s);
        for (char& ch : out) ch = char(std::tolower(static_cast<unsigned char>(ch)));
        return out;
    };
    const std::string name = lower(device_name);
    for (const KnownGpu& g : known_gpus())
        if (name.find(lower(g.match)) != std::string::npos) return g;
    return std::nullopt;
}

namespace {

// Dense GEMM throughput of the backend's matmul at a size that fills caches
// and cores but takes well under a second on a laptop CPU.
double measure_tflops(Backend& be)
{
    const int64_t n = be.device() == DeviceKind::cuda ? 4096 : 512;
    const DType dt = be.compute_dtype();
    DeviceBuffer a(be, dtype_bytes(dt, n * n)), w(be, dtype_bytes(dt, n * n)), out(be, dtype_bytes(dt, n * n));
    const Tensor ta = a.tensor(dt, Shape{n, n}), tw = w.tensor(dt, Shape{n, n}), to = out.tensor(dt, Shape{n, n});
    be.fill(ta, 0.5f);
    be.fill(tw, 0.25f);
    const Timing t = time_repeated(be, [&] { be.linear_forward(to, ta, tw); }, 2, 5);
    return 2.0 * double(n) * double(n) * double(n) / (t.min_ms * 1e-3) / 1e12;
}

// Copy bandwidth: bytes read plus bytes written per second, over a buffer
// far larger than the caches.
double measure_bandwidth_gbs(Backend& be)
{
    const int64_t n = (be.device() == DeviceKind::cuda ? int64_t(1) << 28 : int64_t(1) << 24);   // f32 elements
    DeviceBuffer src(be, dtype_bytes(DType::f32, n)), dst(be, dtype_bytes(DType::f32, n));
    const Tensor ts = src.tensor(DType::f32, Shape{n}), td = dst.tensor(DType::f32, Shape{n});
    be.fill(ts, 1.0f);
    const Timing t = time_repeated(be, [&] { be.convert(td, ts); }, 1, 5);
    return 2.0 * double(dtype_bytes(DType::f32, n)) / (t.min_ms * 1e-3) / 1e9;
}

} // namespace

HardwareLimits hardware_limits(Backend& be)
{
    static std::mutex mutex;
    static std::map<std::string, HardwareLimits> measured;
    HardwareLimits h;
    h.device = be.name();
    const DeviceFacts facts = be.facts();
    if (be.device() == DeviceKind::cuda) {
        if (const auto g = find_known_gpu(facts.name)) {
            h.peak_tflops = g->bf16_tflops;
            h.bandwidth_gbs = g->bandwidth_gbs;
            h.source = "datasheet: " + std::string(g->name);
            return h;
        }
    }
    std::lock_guard lock(mutex);
    if (const auto it = measured.find(h.device); it != measured.end()) return it->second;
    h.peak_tflops = measure_tflops(be);
    h.bandwidth_gbs = measure_bandwidth_gbs(be);
    h.source = be.device() == DeviceKind::cuda ? "measured: 4096² GEMM, 1 GB copy" : "measured: 512² GEMM, 64 MB copy";
    measured[h.device] = h;
    return h;
}

HardwareLimits hardware_limits(DeviceKind device, int threads)
{
    BackendOptions o;
    o.device = device;
    o.threads = threads;
    auto backend = make_backend(o);
    return hardware_limits(*backend);
}

} // namespace crucible::bench
