// ProcessLaunch: this process's place in a training job launched as one
// process per device, by torchrun-style environment variables or by Open MPI.
//
//   torchrun (and anything that sets its variables):
//       RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT
//   mpirun (Open MPI):
//       OMPI_COMM_WORLD_RANK, OMPI_COMM_WORLD_SIZE, OMPI_COMM_WORLD_LOCAL_RANK,
//       with MASTER_ADDR / MASTER_PORT passed through (mpirun -x); on one host
//       they default to 127.0.0.1:29500
//
// Rank 0 serves the rendezvous on MASTER_PORT; the ranks meet there, then
// talk directly (sockets on CPUs, NCCL on GPUs, whose unique id goes through
// the rendezvous).
#pragma once

#include "kernels/communicator.h"

#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace crucible {

struct ProcessLaunch {
    int rank = 0;
    int world = 1;
    int local_rank = 0;   // among the processes of this host: picks its GPU
    std::string master_addr;
    int master_port = 0;
    std::string launcher;   // "torchrun" or "mpirun", for messages
    double rendezvous_timeout_s = 300;   // CRUCIBLE_RENDEZVOUS_TIMEOUT
    double collective_timeout_s = 3600;  // CRUCIBLE_COLLECTIVE_TIMEOUT

    std::string describe() const;   // "rank 1 of 4 (torchrun, rendezvous at host:port)"
};

// The launch this process is part of, or nothing when it was started alone
// (or as a world of one). `getenv` is the environment (a parameter for tests).
// Throws Error when the variables are incomplete or inconsistent.
std::optional<ProcessLaunch> process_launch_from_environment(
    const std::function<const char*(const char*)>& getenv = nullptr);

// This process's communicator in the job: meets the other ranks at the
// rendezvous, then connects to them (CPU backend: sockets; CUDA: NCCL).
std::unique_ptr<Communicator> make_process_communicator(const ProcessLaunch& launch, Backend& backend);

} // namespace crucible
