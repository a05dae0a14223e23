#include "kernels/net/process_launch.h"

#include "kernels/cuda_plugin.h"
#include "kernels/error.h"
#include "kernels/net/rendezvous_store.h"
#include "kernels/net/socket_communicator.h"

#include <cstdlib>
#include <string>

namespace crucible {

std::string ProcessLaunch::describe() const
{
    return "rank " + std::to_string(rank) + " of " + std::to_string(world) + " (" + launcher + ", rendezvous at " +
           master_addr + ":" + std::to_string(master_port) + ")";
}

namespace {

int parse_int(const char* text, const std::string& name, int low, int high)
{
    char* end = nullptr;
    const long v = std::strtol(text, &end, 10);
    if (!*text || *end || v < low || v > high)
        throw Error(name + "=" + text + " is not a number from " + std::to_string(low) + " to " + std::to_string(high) +
                    "; check how the job was launched");
    return int(v);
}

double parse_seconds(const char* text, const std::string& name, double fallback)
{
    if (!text || !*text) return fallback;
    char* end = nullptr;
    const double v = std::strtod(text, &end);
    if (*end || !(v > 0)) throw Error(name + "=" + text + " is not a number of seconds above 0");
    return v;
}

} // namespace

std::optional<ProcessLaunch> process_launch_from_environment(const std::function<const char*(const char*)>& getenv_fn)
{
    auto env = [&](const char* name) -> const char* {
        const char* v = getenv_fn ? getenv_fn(name) : std::getenv(name);
        return v && *v ? v : nullptr;
    };
    ProcessLaunch l;
    const char* rank = env("RANK");
    const char* world = env("WORLD_SIZE");
    if (rank || world) {
        if (!rank || !world)
            throw Error(std::string("only ") + (rank ? "RANK" : "WORLD_SIZE") +
                        " is set; a torchrun-style launch sets RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT");
        l.launcher = "torchrun";
        l.world = parse_int(world, "WORLD_SIZE", 1, 1 << 20);
        l.rank = parse_int(rank, "RANK", 0, l.world - 1);
        l.local_rank = env("LOCAL_RANK") ? parse_int(env("LOCAL_RANK"), "LOCAL_RANK", 0, 1 << 20) : 0;
    } else if (const char* ompi_rank = env("OMPI_COMM_WORLD_RANK")) {
        l.launcher = "mpirun";
        const char* size = env("OMPI_COMM_WORLD_SIZE");
        if (!size) throw Error("OMPI_COMM_WORLD_RANK is set without OMPI_COMM_WORLD_SIZE; launch with Open MPI's mpirun");
        l.world = parse_int(size, "OMPI_COMM_WORLD_SIZE", 1, 1 << 20);
        l.rank = parse_int(ompi_rank, "OMPI_COMM_WORLD_RANK", 0, l.world - 1);
        const char* local = env("OMPI_COMM_WORLD_LOCAL_RANK");
        l.local_rank = local ? parse_int(local, "OMPI_COMM_WORLD_LOCAL_RANK", 0, 1 << 20) : 0;
    } else {
        return std::nullopt;
    }
    if (l.world == 1) return std::nullopt;   // a world of one is an ordinary run

    const char* addr = env("MASTER_ADDR");
    const char* port = env("MASTER_PORT");
    if (l.launcher == "torchrun" && (!addr || !port))
        throw Error(std::string(addr ? "MASTER_PORT" : "MASTER_ADDR") +
                    " is not set: every rank needs the rendezvous address of rank 0 (MASTER_ADDR and MASTER_PORT)");
    if (l.launcher == "mpirun" && !addr) {
        // Every rank on this host: rank 0 is here too.
        const char* local_size = env("OMPI_COMM_WORLD_LOCAL_SIZE");
        if (!local_size || std::string(local_size) != std::to_string(l.world))
            throw Error("the ranks run on several hosts: pass rank 0's host to all of them, e.g. mpirun -x "
                        "MASTER_ADDR=<host of rank 0> -x MASTER_PORT=29500 …");
    }
    l.master_addr = addr ? addr : "127.0.0.1";
    l.master_port = port ? parse_int(port, "MASTER_PORT", 1, 65535) : 29500;
    l.rendezvous_timeout_s = parse_seconds(env("CRUCIBLE_RENDEZVOUS_TIMEOUT"), "CRUCIBLE_RENDEZVOUS_TIMEOUT", 300);
    l.collective_timeout_s = parse_seconds(env("CRUCIBLE_COLLECTIVE_TIMEOUT"), "CRUCIBLE_COLLECTIVE_TIMEOUT", 3600);
    return l;
}

std::unique_ptr<Communicator> make_process_communicator(const ProcessLaunch& launch, Backend& backend)
{
    RendezvousStore store(launch.master_addr, launch.master_port, launch.rank, launch.rendezvous_timeout_s);
    std::unique_ptr<Communicator> comm;
    if (backend.device() == DeviceKind::cpu) {
        comm = make_socket_communicator(store, launch.rank, launch.world, launch.collective_timeout_s);
    } else {
        // NCCL's own bootstrap starts from a unique id that rank 0 draws.
        if (launch.rank == 0) store.set("nccl/id", cuda_nccl_unique_id());
        const std::string id =
            store.get("nccl/id", "rank 0 did not publish NCCL's unique id (it failed before; see its output)");
        comm = make_cuda_communicator_rank(backend, launch.rank, launch.world, id);
    }
    // Nobody needs the rendezvous after this: rank 0 closes it only once every
    // rank has read what it needed.
    comm->barrier();
    return comm;
}

} // namespace crucible
