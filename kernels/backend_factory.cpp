#include "kernels/backend_factory.h"

#include "kernels/cpu/cpu_backend.h"

#include <thread>

namespace crucible {

bool built_with_cuda()
{
#ifdef CRUCIBLE_HAS_CUDA
    return true;
#else
    return false;
#endif
}

int cuda_device_count()
{
#ifdef CRUCIBLE_HAS_CUDA
    return cuda_device_count_impl(nullptr);
#else
    return 0;
#endif
}

bool cuda_available(std::string* why_not)
{
#ifdef CRUCIBLE_HAS_CUDA
    return cuda_device_count_impl(why_not) > 0;
#else
    if (why_not) *why_not = "this build of Crucible has no CUDA backend (CUDA Toolkit was not found at build time)";
    return false;
#endif
}

int default_cpu_threads()
{
    const unsigned n = std::thread::hardware_concurrency();
    return n == 0 ? 1 : static_cast<int>(n);
}

std::string cpu_threads_problem(int threads)
{
    const int cores = default_cpu_threads();
    if (threads >= 0 && threads <= cores) return {};
    return "threads must be between 0 (all cores) and " + std::to_string(cores) + ", the CPU cores of this machine; got " +
           std::to_string(threads);
}

std::unique_ptr<Backend> make_backend(const BackendOptions& options)
{
    if (auto p = cpu_threads_problem(options.threads); !p.empty()) throw Error(p);
    if (options.device == DeviceKind::cpu) return std::make_unique<CpuBackend>(options.threads);
    std::string why;
    if (!cuda_available(&why)) throw Error("CUDA is not available: " + why + ". Use --device cpu.");
#ifdef CRUCIBLE_HAS_CUDA
    return make_cuda_backend(options);
#else
    throw Error("CUDA is not available in this build. Use --device cpu.");
#endif
}

} // namespace crucible
