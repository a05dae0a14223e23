// Creating backends, and what this build and machine can run.
#pragma once

#include "kernels/backend.h"

#include <memory>
#include <string>

namespace crucible {

struct BackendOptions {
    DeviceKind device = DeviceKind::cpu;
    int threads = 0;          // CPU threads; 0 = one per core
    int cuda_device = 0;      // CUDA device ordinal
    bool cuda_fp32 = false;   // CUDA in f32 compute (parity tests), instead of bf16
};

// Throws Error with a message a user can act on when the device is unavailable.
std::unique_ptr<Backend> make_backend(const BackendOptions& options);

// True when the CUDA backend plugin is installed and loads (the CUDA runtime
// is present); see kernels/cuda_plugin.h.
bool built_with_cuda();
// True when the CUDA backend loads and a device is present; otherwise
// `why_not` explains (no plugin, no CUDA runtime, no driver, no device...).
bool cuda_available(std::string* why_not = nullptr);
int cuda_device_count();

// Number of hardware threads the CPU backend would use by default.
int default_cpu_threads();
// Empty when `threads` is 0 (all cores) or at most the machine's cores;
// otherwise the sentence that says so. More threads than cores never helps,
// and OpenMP and OpenBLAS fail on very large counts.
std::string cpu_threads_problem(int threads);

} // namespace crucible
