// What the hardware could do at best, for the line the Benchmarks page draws
// under a measured series and for MFU: peak dense bf16 TFLOP/s and memory
// bandwidth. GPUs come from a table of datasheet numbers keyed by the device
// name; a CPU (or a GPU not in the table) is measured: a quick GEMM for the
// compute peak, a large copy for the bandwidth.
#pragma once

#include "kernels/tensor.h"

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace crucible {
class Backend;
}

namespace crucible::bench {

struct KnownGpu {
    std::string_view match;     // substring of the device name, e.g. "H100 PCIe"
    std::string_view name;      // "NVIDIA H100 PCIe"
    double bf16_tflops;         // dense, no sparsity
    double bandwidth_gbs;       // memory bandwidth, GB/s
};

// The datasheet table, most specific names first.
const std::vector<KnownGpu>& known_gpus();
// The table's entry whose match the device name contains (case-insensitive).
std::optional<KnownGpu> find_known_gpu(std::string_view device_name);

struct HardwareLimits {
    std::string device;              // backend name
    double peak_tflops = 0.0;        // compute dtype, dense
    double bandwidth_gbs = 0.0;
    std::string source;              // "datasheet: NVIDIA H100 SXM" or "measured: 512² GEMM, 64 MB copy"
};

// The limits of the backend's device: from the table when its name is known,
// otherwise measured on it (well under a second on a CPU). Measured values
// are cached per device name for the life of the process.
HardwareLimits hardware_limits(Backend& backend);
// The same for a device the caller holds no backend of (the Benchmarks page
// before a run): opens one for the call. Throws Error when the device is
// unavailable.
HardwareLimits hardware_limits(DeviceKind device, int threads = 0);

} // namespace crucible::bench
