// The CUDA replica group: NCCL, one rank per GPU, each rank's collectives on
// its backend's stream so that they order with the kernels around them.
//
// NCCL is opened at run time (dlopen) rather than linked: a machine without
// it still runs everything on one GPU, and the message says what to install
// only when a multi-GPU run asks for it.
#include "kernels/communicator.h"
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_check.h"

#include <nccl.h>

#include <dlfcn.h>

#include <atomic>
#include <cstring>
#include <set>
#include <string>

namespace crucible {

namespace {

struct NcclLibrary {
    decltype(&ncclCommInitAll) comm_init_all = nullptr;
    decltype(&ncclCommInitRank) comm_init_rank = nullptr;
    decltype(&ncclGetUniqueId) get_unique_id = nullptr;
    decltype(&ncclCommDestroy) comm_destroy = nullptr;
    decltype(&ncclCommAbort) comm_abort = nullptr;
    decltype(&ncclAllReduce) all_reduce = nullptr;
    decltype(&ncclBroadcast) broadcast = nullptr;
    decltype(&ncclGetErrorString) error_string = nullptr;

    static const NcclLibrary& get()
    {
        static const NcclLibrary lib = open();
        return lib;
    }

private:
    static NcclLibrary open()
    {
        void* handle = dlopen("libnccl.so.2", RTLD_NOW | RTLD_LOCAL);
        if (!handle)
            throw Error("training on several GPUs needs NCCL (libnccl.so.2), which was not found: install NVIDIA's "
                        "libnccl2 package or train on one GPU");
        NcclLibrary lib;
        auto load = [&](auto& fn, const char* name) {
            fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(handle, name));
            if (!fn) throw Error(std::string("the installed NCCL lacks ") + name + "; update libnccl2");
        };
        load(lib.comm_init_all, "ncclCommInitAll");
        load(lib.comm_init_rank, "ncclCommInitRank");
        load(lib.get_unique_id, "ncclGetUniqueId");
        load(lib.comm_destroy, "ncclCommDestroy");
        load(lib.comm_abort, "ncclCommAbort");
        load(lib.all_reduce, "ncclAllReduce");
        load(lib.broadcast, "ncclBroadcast");
        load(lib.error_string, "ncclGetErrorString");
        return lib;
    }
};

// Makes `device` current for a scope: the group is created on one thread for
// all GPUs, and CUDA's current device is per thread.
class CudaDeviceGuard {
public:
    explicit CudaDeviceGuard(int device)
    {
        cudaGetDevice(&m_previous);
        CRUCIBLE_CUDA_CHECK(cudaSetDevice(device));
    }
    ~CudaDeviceGuard() { cudaSetDevice(m_previous); }
    CudaDeviceGuard(const CudaDeviceGuard&) = delete;
    CudaDeviceGuard& operator=(const CudaDeviceGuard&) = delete;

private:
    int m_previous = 0;
};

void nccl_check(ncclResult_t r, const char* what)
{
    if (r != ncclSuccess)
        throw Error(std::string("NCCL ") + what + " failed: " + NcclLibrary::get().error_string(r));
}

class NcclCommunicator final : public Communicator {
public:
    NcclCommunicator(int rank, int world, ncclComm_t comm, CudaBackend& backend)
        : Communicator(rank, world), m_comm(comm), m_backend(&backend)
    {
        CudaDeviceGuard guard(m_backend->device_ordinal());
        CRUCIBLE_CUDA_CHECK(cudaMalloc(&m_host_scalar_device, sizeof(double)));
    }

    ~NcclCommunicator() override
    {
        CudaDeviceGuard guard(m_backend->device_ordinal());
        cudaFree(m_host_scalar_device);
        if (m_aborted) return;   // ncclCommAbort already freed it
        NcclLibrary::get().comm_destroy(m_comm);
    }

private:
    void do_all_reduce_sum(Tensor data) override
    {
        CRUCIBLE_CHECK(data.device == DeviceKind::cuda, "an NCCL group reduces device memory only");
        CudaDeviceGuard guard(m_backend->device_ordinal());
        const ncclDataType_t type = data.dtype == DType::bf16 ? ncclBfloat16 : ncclFloat32;
        nccl_check(NcclLibrary::get().all_reduce(data.data, data.data, size_t(data.numel()), type, ncclSum,
                                                 m_comm, m_backend->stream()),
                   "all-reduce");
    }

    void do_broadcast(Tensor data, int root) override
    {
        CudaDeviceGuard guard(m_backend->device_ordinal());
        nccl_check(NcclLibrary::get().broadcast(data.data, data.data, data.bytes(), ncclUint8, root, m_comm,
                                                m_backend->stream()),
                   "broadcast");
    }

    double do_all_reduce_sum_host(double value) override
    {
        CudaDeviceGuard guard(m_backend->device_ordinal());
        double* d = static_cast<double*>(m_host_scalar_device);
        CRUCIBLE_CUDA_CHECK(cudaMemcpyAsync(d, &value, sizeof(double), cudaMemcpyHostToDevice, m_backend->stream()));
        nccl_check(NcclLibrary::get().all_reduce(d, d, 1, ncclFloat64, ncclSum, m_comm, m_backend->stream()),
                   "all-reduce");
        double sum = 0.0;
        CRUCIBLE_CUDA_CHECK(cudaMemcpyAsync(&sum, d, sizeof(double), cudaMemcpyDeviceToHost, m_backend->stream()));
        CRUCIBLE_CUDA_CHECK(cudaStreamSynchronize(m_backend->stream()));
        return sum;
    }

    void do_abort() override
    {
        if (m_aborted.exchange(true)) return;
        NcclLibrary::get().comm_abort(m_comm);
    }

    ncclComm_t m_comm;
    CudaBackend* m_backend;
    void* m_host_scalar_device = nullptr;
    std::atomic<bool> m_aborted{false};
};

} // namespace

// The plugin's make_communicator_group (kernels/cuda_plugin.h).
std::vector<std::unique_ptr<Communicator>> make_nccl_communicator_group(const std::vector<Backend*>& backends)
{
    std::vector<CudaBackend*> cuda;
    std::vector<int> ordinals;
    std::set<int> seen;
    for (Backend* b : backends) {
        auto* c = dynamic_cast<CudaBackend*>(b);
        CRUCIBLE_REQUIRE(c, "an NCCL group needs CUDA backends");
        CRUCIBLE_REQUIRE(seen.insert(c->device_ordinal()).second,
                         "GPU " + std::to_string(c->device_ordinal()) +
                             " is listed twice; each replica needs a GPU of its own");
        cuda.push_back(c);
        ordinals.push_back(c->device_ordinal());
    }
    const int world = int(cuda.size());
    std::vector<ncclComm_t> comms(static_cast<size_t>(world));
    nccl_check(NcclLibrary::get().comm_init_all(comms.data(), world, ordinals.data()), "initialisation");
    std::vector<std::unique_ptr<Communicator>> group;
    for (int r = 0; r < world; ++r)
        group.push_back(std::make_unique<NcclCommunicator>(r, world, comms[size_t(r)], *cuda[size_t(r)]));
    return group;
}

// The plugin's nccl_unique_id: drawn by rank 0 of a job of several processes.
std::string nccl_unique_id()
{
    ncclUniqueId id;
    nccl_check(NcclLibrary::get().get_unique_id(&id), "unique id");
    return std::string(reinterpret_cast<const char*>(&id), sizeof id);
}

// The plugin's make_communicator_rank: this process's GPU as rank `rank`.
std::unique_ptr<Communicator> make_nccl_communicator_rank(Backend& backend, int rank, int world,
                                                          const std::string& unique_id)
{
    auto* cuda = dynamic_cast<CudaBackend*>(&backend);
    CRUCIBLE_REQUIRE(cuda, "an NCCL group needs a CUDA backend");
    ncclUniqueId id;
    CRUCIBLE_REQUIRE(unique_id.size() == sizeof id, "the NCCL unique id from the rendezvous has the wrong size (" +
                                                        std::to_string(unique_id.size()) +
                                                        " bytes): are all ranks from the same build?");
    std::memcpy(&id, unique_id.data(), sizeof id);
    CudaDeviceGuard guard(cuda->device_ordinal());
    ncclComm_t comm = nullptr;
    nccl_check(NcclLibrary::get().comm_init_rank(&comm, world, id, rank), "initialisation");
    return std::make_unique<NcclCommunicator>(rank, world, comm, *cuda);
}

} // namespace crucible
