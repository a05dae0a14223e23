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
//
// Launched as one process per device (mpirun, torchrun: see
// kernels/net/process_launch.h), the group has a single replica here, rank
// `launch.rank` of the job, and its communicator reaches the other processes.
// Every process then runs the trainer's loop in step with the others; rank 0
// alone writes, and agree() makes the decisions that only it can take (stop,
// target reached) the whole job's.
#pragma once

#include "core/train/gradient_overlap.h"
#include "core/train/run_config.h"
#include "core/train/train_step.h"
#include "core/train/training_setup.h"
#include "kernels/communicator.h"
#include "kernels/net/process_launch.h"

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
    // With `launch`, the group is this process's replica of a multi-process job.
    ReplicaGroup(const RunConfig& cfg, int seq_len, const Dataset& dataset, TrainableModel& leader,
                 Backend& leader_device, Batcher& leader_batcher, const ProcessLaunch* launch = nullptr);
    ~ReplicaGroup();
    ReplicaGroup(const ReplicaGroup&) = delete;
    ReplicaGroup& operator=(const ReplicaGroup&) = delete;

    int world() const { return m_world; }
    // This process's first rank: 0, or its rank in a multi-process job.
    int first_rank() const { return m_first_rank; }
    bool across_processes() const { return m_world != int(m_replicas.size()); }

    // True on every process when any process passes true (a stop request,
    // a target rank 0 saw reached). Within one process: `mine`.
    bool agree(bool mine);

    // Gives every replica rank 0's weights, step count and data position, and
    // its share of the optimizer state from `checkpoint` when resuming: after
    // a fresh initialisation or a resume of rank 0.
    void align_with_leader(const std::optional<std::filesystem::path>& checkpoint);

    // The whole optimizer state, each replica's share downloaded: for a
    // checkpoint. Across processes every rank takes part and rank 0 gets it.
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

    OptimizerSnapshot gather_across_processes();

    bool m_overlap = true;   // TrainConfig::overlap_comm
    int64_t m_bucket_elements = GradientOverlap::kDefaultBucketElements;
    int m_world = 1;
    int m_first_rank = 0;
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
