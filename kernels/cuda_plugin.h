// The CUDA backend as a plugin: libcrucible_cuda.so, loaded with dlopen the
// first time a CUDA device is asked for.
//
// The programs link no CUDA library, so they start on machines without the
// CUDA runtime (a desktop package must); where the runtime and a driver are
// present, the plugin loads and the GPU is there. The plugin takes the
// Backend base class, Tensor and Error from the program that loads it (the
// programs export their symbols), so it must come from the same build: the
// entry point reports the version and the interface revision it was built
// with, and a plugin from another build is refused.
//
// Where it is looked for, first match wins:
//   $CRUCIBLE_CUDA_PLUGIN               the file itself, or a folder holding it
//   <program's folder>/                 next to the program
//   <program's folder>/../lib/crucible/ the installed layout (and the build tree's)
#pragma once

#include "kernels/backend.h"
#include "kernels/backend_factory.h"
#include "kernels/communicator.h"

#include <memory>
#include <string>
#include <vector>

namespace crucible {

// Bumped whenever Backend, Tensor, BackendOptions or this table change shape.
inline constexpr int kCudaPluginInterface = 3;
inline constexpr const char* kCudaPluginFile = "libcrucible_cuda.so";
inline constexpr const char* kCudaPluginEntry = "crucible_cuda_plugin";

struct CudaPluginApi {
    int interface_revision;
    const char* version;   // CRUCIBLE_VERSION of the build
    std::unique_ptr<Backend> (*make_backend)(const BackendOptions& options);
    // Usable devices; 0 with the reason in *why_not when there are none.
    int (*device_count)(std::string* why_not);
    // An NCCL group over the backends' GPUs, one communicator per backend.
    std::vector<std::unique_ptr<Communicator>> (*make_communicator_group)(const std::vector<Backend*>& backends);
    // One process's rank of an NCCL group that spans processes (and hosts):
    // rank 0 draws the unique id, the launcher's rendezvous hands it to all.
    std::string (*nccl_unique_id)();
    std::unique_ptr<Communicator> (*make_communicator_rank)(Backend& backend, int rank, int world,
                                                            const std::string& unique_id);
};

using CudaPluginEntry = const CudaPluginApi* (*)();

// Where the plugin was loaded from, or "" with the reason in *why_not.
std::string cuda_plugin_path(std::string* why_not = nullptr);

// The plugin's NCCL group (make_communicator_group for CUDA backends).
std::vector<std::unique_ptr<Communicator>> make_cuda_communicator_group(const std::vector<Backend*>& backends);
// The plugin's NCCL unique id (opaque bytes) and one process's rank of a group.
std::string cuda_nccl_unique_id();
std::unique_ptr<Communicator> make_cuda_communicator_rank(Backend& backend, int rank, int world,
                                                          const std::string& unique_id);

} // namespace crucible
