// Communicator: the collectives data-parallel training needs between the
// replicas of one model, one communicator per replica (its "rank").
//
// Every call is collective: all ranks of the group make it, in the same order,
// with tensors of the same shape and dtype on their own device. A sum adds
// the ranks' values in rank order, so a group gives the same result on every
// rank and from run to run.
//
// The CPU group runs its ranks as threads of this process (tests, and data
// parallelism over CPU sockets); CUDA groups go through NCCL, one rank per
// GPU, the way PyTorch DDP and llm.c do it. With one process per device
// (mpirun, torchrun) each process holds one rank: NCCL across GPUs, TCP
// between CPU processes (kernels/net/).
#pragma once

#include "kernels/backend.h"

#include <memory>
#include <vector>

namespace crucible {

class Communicator {
public:
    virtual ~Communicator() = default;
    Communicator(const Communicator&) = delete;
    Communicator& operator=(const Communicator&) = delete;

    int rank() const { return m_rank; }
    int world() const { return m_world; }

    // data ← Σ over ranks of data (on this rank's device): f32, or bf16
    // added up in f32 and rounded once (NCCL: in its own precision).
    void all_reduce_sum(Tensor data);
    // data ← root's data.
    void broadcast(Tensor data, int root);
    // The sum over ranks of a host value (losses, token counts, flags).
    double all_reduce_sum(double value);
    // Waits until every rank arrived.
    void barrier() { all_reduce_sum(0.0); }
    // Called from any thread when a rank failed: collectives waiting on it, or
    // called later, throw Error instead of waiting forever.
    void abort() { do_abort(); }

protected:
    Communicator(int rank, int world) : m_rank(rank), m_world(world) {}

private:
    virtual void do_all_reduce_sum(Tensor data) = 0;
    virtual void do_broadcast(Tensor data, int root) = 0;
    virtual double do_all_reduce_sum_host(double value) = 0;
    virtual void do_abort() = 0;

    int m_rank, m_world;
};

// One communicator per backend, rank i for backends[i]. All backends are of
// one device kind; CUDA backends must be on distinct GPUs. Throws Error when
// the group cannot be formed (NCCL missing, a GPU listed twice...).
std::vector<std::unique_ptr<Communicator>> make_communicator_group(const std::vector<Backend*>& backends);

// The CPU group: ranks are threads of this process.
std::vector<std::unique_ptr<Communicator>> make_thread_communicator_group(int world);

} // namespace crucible
