// The one symbol libcrucible_cuda.so exports for the program that loads it
// (kernels/cuda_plugin.h).
#include "kernels/cuda_plugin.h"

namespace crucible {

std::unique_ptr<Backend> make_cuda_backend(const BackendOptions& options);
int cuda_device_count_impl(std::string* why_not);
std::vector<std::unique_ptr<Communicator>> make_nccl_communicator_group(const std::vector<Backend*>& backends);
std::string nccl_unique_id();
std::unique_ptr<Communicator> make_nccl_communicator_rank(Backend& backend, int rank, int world,
                                                          const std::string& unique_id);

} // namespace crucible

extern "C" __attribute__((visibility("default"))) const crucible::CudaPluginApi* crucible_cuda_plugin()
{
    static const crucible::CudaPluginApi api{crucible::kCudaPluginInterface, CRUCIBLE_VERSION,
                                             &crucible::make_cuda_backend, &crucible::cuda_device_count_impl,
                                             &crucible::make_nccl_communicator_group,
                                             &crucible::nccl_unique_id,
                                             &crucible::make_nccl_communicator_rank};
    return &api;
}
