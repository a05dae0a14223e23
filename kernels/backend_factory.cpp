#include "kernels/backend_factory.h"

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cuda_plugin.h"

#include <dlfcn.h>
#include <unistd.h>

#include <filesystem>
#include <mutex>
#include <thread>
#include <vector>

namespace crucible {

namespace {

namespace fs = std::filesystem;

struct LoadedPlugin {
    const CudaPluginApi* api = nullptr;
    std::string path;
    std::string why_not;
};

fs::path program_folder()
{
    std::error_code ec;
    const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
    return ec ? fs::path() : exe.parent_path();
}

std::vector<fs::path> plugin_candidates()
{
    std::vector<fs::path> out;
    if (const char* env = std::getenv("CRUCIBLE_CUDA_PLUGIN"); env && *env) {
        const fs::path p(env);
        std::error_code ec;
        out.push_back(fs::is_directory(p, ec) ? p / kCudaPluginFile : p);
        return out;   // set on purpose: the only place to look
    }
    const fs::path here = program_folder();
    if (!here.empty()) {
        out.push_back(here / kCudaPluginFile);
        out.push_back((here / ".." / "lib" / "crucible" / kCudaPluginFile).lexically_normal());
    }
    return out;
}

LoadedPlugin load_plugin()
{
    LoadedPlugin p;
    std::string tried;
    for (const fs::path& file : plugin_candidates()) {
        std::error_code ec;
        if (!fs::exists(file, ec)) {
            tried += (tried.empty() ? "" : ", ") + file.string();
            continue;
        }
        void* handle = dlopen(file.c_str(), RTLD_NOW | RTLD_LOCAL);
        if (!handle) {
            // Typically the CUDA runtime the plugin links is not installed.
            const char* err = dlerror();
            p.why_not = "the CUDA backend (" + file.string() + ") could not be loaded: " + (err ? err : "unknown error") +
                        ". Install the NVIDIA driver and the CUDA runtime (libcudart, libcublas) it was built for";
            return p;
        }
        auto entry = reinterpret_cast<CudaPluginEntry>(dlsym(handle, kCudaPluginEntry));
        const CudaPluginApi* api = entry ? entry() : nullptr;
        if (!api || api->interface_revision != kCudaPluginInterface || std::string(api->version) != CRUCIBLE_VERSION) {
            dlclose(handle);
            p.why_not = file.string() + " is not the CUDA backend of this build of Crucible (" CRUCIBLE_VERSION
                        "); reinstall Crucible or point CRUCIBLE_CUDA_PLUGIN at the matching plugin";
            return p;
        }
        p.api = api;   // never unloaded: backends made by it may live to the end
        p.path = file.string();
        return p;
    }
    p.why_not = "this installation of Crucible has no CUDA backend (" + std::string(kCudaPluginFile) +
                " is not in " + (tried.empty() ? std::string("any known folder") : tried) +
                "); the CPU backend is used. Build with the CUDA Toolkit to get it";
    return p;
}

const LoadedPlugin& cuda_plugin()
{
    static const LoadedPlugin plugin = load_plugin();   // thread-safe, once
    return plugin;
}

} // namespace

std::string cuda_plugin_path(std::string* why_not)
{
    const LoadedPlugin& p = cuda_plugin();
    if (why_not) *why_not = p.why_not;
    return p.path;
}

bool built_with_cuda() { return cuda_plugin().api != nullptr; }

int cuda_device_count()
{
    const LoadedPlugin& p = cuda_plugin();
    return p.api ? p.api->device_count(nullptr) : 0;
}

bool cuda_available(std::string* why_not)
{
    const LoadedPlugin& p = cuda_plugin();
    if (!p.api) {
        if (why_not) *why_not = p.why_not;
        return false;
    }
    return p.api->device_count(why_not) > 0;
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

std::vector<std::unique_ptr<Communicator>> make_cuda_communicator_group(const std::vector<Backend*>& backends)
{
    std::string why;
    if (!cuda_available(&why)) throw Error("CUDA is not available: " + why);
    return cuda_plugin().api->make_communicator_group(backends);
}

std::string cuda_nccl_unique_id()
{
    std::string why;
    if (!cuda_available(&why)) throw Error("CUDA is not available: " + why);
    return cuda_plugin().api->nccl_unique_id();
}

std::unique_ptr<Communicator> make_cuda_communicator_rank(Backend& backend, int rank, int world,
                                                          const std::string& unique_id)
{
    std::string why;
    if (!cuda_available(&why)) throw Error("CUDA is not available: " + why);
    return cuda_plugin().api->make_communicator_rank(backend, rank, world, unique_id);
}

std::unique_ptr<Backend> make_backend(const BackendOptions& options)
{
    if (auto p = cpu_threads_problem(options.threads); !p.empty()) throw Error(p);
    if (options.device == DeviceKind::cpu) return std::make_unique<CpuBackend>(options.threads);
    std::string why;
    if (!cuda_available(&why)) throw Error("CUDA is not available: " + why + ". Use --device cpu.");
    return cuda_plugin().api->make_backend(options);
}

} // namespace crucible
