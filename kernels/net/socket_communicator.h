// SocketCommunicator: a Communicator between processes over TCP, one rank
// per process, for data parallel training on CPUs across processes and hosts
// (GPUs use NCCL instead).
//
// The ranks connect to each other once, every pair directly, through the
// addresses they publish in the rendezvous store. An all-reduce is a
// reduce-scatter, where rank r receives every rank's copy of the r-th slice
// and adds them up in rank order, then an all-gather of the summed slices:
// each rank sends and receives (N−1)/N of the buffer twice, as in a ring, and
// every element is the sum the thread group computes, bit for bit and
// whatever the buffer's size or bucketing.
//
// A peer that dies closes its sockets: the collective waiting on it throws at
// once with its rank. A peer that hangs is given up on after the collective
// timeout (CRUCIBLE_COLLECTIVE_TIMEOUT, seconds).
#pragma once

#include "kernels/communicator.h"
#include "kernels/net/rendezvous_store.h"

#include <memory>

namespace crucible {

// Rank `rank` of `world` processes, connected through `store` (every rank
// calls this at once). `timeout_s`: how long one collective may wait.
std::unique_ptr<Communicator> make_socket_communicator(RendezvousStore& store, int rank, int world, double timeout_s);

} // namespace crucible
