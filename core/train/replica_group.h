// ReplicaGroup: data-parallel training on several devices of this host.
//
// Each replica holds the whole model (its own backend, weights, optimizer and
// activations) and its own position in the data. A step is, on every replica
// at once:
//
//   forward + backward of its share of the step's micro-batches
//   all-reduce of the gradients (one buffer, summed in rank order)
//   the optimizer update of its own range of the parameters (ZeRO stage 1:
//       each replica holds the optimizer state of its range only)
//   each range's new weights sent from its owner to every other replica
//
// so the replicas' weights never drift apart, and N replicas of batch B take
// the step one device takes with batch B and N times the accumulation. The
// gradient norm and clipping see all the reduced gradients, on every replica.
//
// Rank 0 is the trainer's own model, run on the calling thread; it alone
// evaluates, samples and writes checkpoints. The other ranks live on threads
// of their own, each opening its device there (CUDA's current device is per
// thread) and idling between the steps the trainer asks for. A failure on any
// rank aborts the group's collectives, so nobody waits forever, and the step
// throws that rank's message.
#pragma once

#include "core/train/run_config.h"
#include "core/train/train_step.h"
#include "core/train/training_setup.h"
#include "kernels/communicator.h"

#include <condition_variable>
#include <filesystem>
#include <optional>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace crucible {

class ReplicaGroup {
public:
    // Opens replicas 1 … cfg.train.replicas()-1 beside `leader` (rank 0, on
    // `leader_device`). Throws Error when a device is missing or too small.
    ReplicaGroup(const RunConfig& cfg, int seq_len, const Dataset& dataset, TrainableModel& leader,
                 Backend& leader_device, Batcher& leader_batcher);
    ~ReplicaGroup();
    ReplicaGroup(const ReplicaGroup&) = delete;
    ReplicaGroup& operator=(const ReplicaGroup&) = delete;

    int world() const { return int(m_replicas.size()); }

    // Gives every replica rank 0's weights, step count and data position, and
    // its share of the optimizer state from `checkpoint` when resuming: after
    // a fresh initialisation or a resume of rank 0.
    void align_with_leader(const std::optional<std::filesystem::path>& checkpoint);

    // The whole optimizer state, each replica's share downloaded: for a checkpoint.
    OptimizerSnapshot gather_optimizer_state();

    // The range of the parameters replica `rank` owns the optimizer state of.
    const ParamRange& owned_range(int rank) const { return m_ranges[size_t(rank)]; }

    // One optimizer step of the whole group: loss and tokens summed over the
    // replicas; `seconds` is the group's wall time, `comm_seconds` rank 0's
    // time in the exchanges (waiting for the slowest replica included).
    StepResult step(double lr_multiplier);

private:
    struct Replica;
    // Runs `work(rank)` on every replica at once (rank 0 here) and waits for
    // all; rethrows the first failure after aborting the collectives.
    void on_every_replica(const std::function<void(Replica&)>& work);
    void run_guarded(Replica& r, const std::function<void(Replica&)>& work);
    void record_failure(int rank, const std::string& message);
    void follower_loop(Replica& r);
    void shut_down();
    StepResult step_share(Replica& r, double lr_multiplier);

    std::vector<ParamRange> m_ranges;
    std::vector<std::unique_ptr<Replica>> m_replicas;
    std::vector<std::unique_ptr<Communicator>> m_communicators;

    std::mutex m_mutex;
    std::condition_variable m_wake, m_done;
    uint64_t m_generation = 0;          // bumped for each task
    std::function<void(Replica&)> m_task;
    int m_pending = 0;                  // followers still working on the task
    bool m_quit = false;
    std::string m_error;                // the first failure of the task
};

} // namespace crucible
