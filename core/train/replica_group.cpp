#include "core/train/replica_group.h"

#include "kernels/error.h"

#include <chrono>
#include <cmath>
#include <optional>

namespace crucible {

using Clock = std::chrono::steady_clock;

struct ReplicaGroup::Replica {
    int rank = 0;
    // What a follower owns (rank 0's belong to the trainer). The device is
    // declared first so that it outlives the model allocated on it.
    TrainingDevice own_device;
    TrainableModel own_model;
    std::optional<Batcher> own_batcher;

    Backend* backend = nullptr;
    TrainableModel* model = nullptr;
    Batcher* batcher = nullptr;
    Communicator* comm = nullptr;
    std::optional<TrainStep> step;
    std::unique_ptr<GradientOverlap> overlap;   // the communication thread, when overlapping
    std::thread thread;
    StepResult result;

    void release()
    {
        overlap.reset();
        own_batcher.reset();
        own_model.model.reset();
        own_model.optimizer.reset();
        own_model.params.reset();
        own_device.backend.reset();
    }
};

ReplicaGroup::ReplicaGroup(const RunConfig& cfg, int seq_len, const Dataset& dataset, TrainableModel& leader,
                           Backend& leader_device, Batcher& leader_batcher, const ProcessLaunch* launch)
{
    const TrainConfig& tc = cfg.train;
    m_world = tc.replicas();
    m_overlap = tc.overlap_comm;
    if (tc.overlap_bucket_elements > 0) m_bucket_elements = tc.overlap_bucket_elements;
    m_first_rank = launch ? launch->rank : 0;
    m_ranges = shard_ranges(leader.params->layout(), m_world);
    CRUCIBLE_CHECK(leader.optimizer->owned() == m_ranges[size_t(m_first_rank)],
                   "this process's optimizer must hold its rank's share of the state");
    if (launch) {
        CRUCIBLE_CHECK(launch->world == m_world, "the launch and the configuration disagree on the world size");
        auto r = std::make_unique<Replica>();
        r->rank = launch->rank;
        r->step.emplace(tc.batch_size, seq_len, tc.grad_accum, ReplicaShare{launch->rank, m_world});
        r->backend = &leader_device;
        r->model = &leader;
        r->batcher = &leader_batcher;
        m_communicators.push_back(make_process_communicator(*launch, leader_device));
        r->comm = m_communicators.front().get();
        m_replicas.push_back(std::move(r));
        return;
    }
    const int world = m_world;
    for (int rank = 0; rank < world; ++rank) {
        auto r = std::make_unique<Replica>();
        r->rank = rank;
        r->step.emplace(tc.batch_size, seq_len, tc.grad_accum, ReplicaShare{rank, world});
        m_replicas.push_back(std::move(r));
    }
    Replica& lead = *m_replicas.front();
    lead.backend = &leader_device;
    lead.model = &leader;
    lead.batcher = &leader_batcher;

    try {
        for (int rank = 1; rank < world; ++rank) {
            Replica* r = m_replicas[size_t(rank)].get();
            r->thread = std::thread([this, r] { follower_loop(*r); });
        }
        // Each follower opens its device and allocates its model on its own thread.
        on_every_replica([&](Replica& r) {
            if (r.rank == 0) return;
            r.own_device = open_training_device(backend_options(tc, r.rank), cfg.model, tc.batch_size, seq_len,
                                                nullptr, false, tc.grad_checkpoint);
            r.own_model = allocate_model(*r.own_device.backend, cfg.model, tc, seq_len, m_ranges[size_t(r.rank)]);
            r.own_batcher.emplace(dataset, seq_len, tc.seed);
            r.backend = r.own_device.backend.get();
            r.model = &r.own_model;
            r.batcher = &*r.own_batcher;
        });
        std::vector<Backend*> backends;
        for (auto& r : m_replicas) backends.push_back(r->backend);
        m_communicators = make_communicator_group(backends);
        for (size_t i = 0; i < m_replicas.size(); ++i) m_replicas[i]->comm = m_communicators[i].get();
    } catch (...) {
        shut_down();
        throw;
    }
}

ReplicaGroup::~ReplicaGroup()
{
    shut_down();
}

void ReplicaGroup::shut_down()
{
    // Communication threads and communicators go first (they refer to the
    // backends); the followers then release their devices on their own threads.
    for (auto& r : m_replicas) r->overlap.reset();
    m_communicators.clear();
    {
        std::lock_guard lock(m_mutex);
        m_quit = true;
    }
    m_wake.notify_all();
    for (auto& r : m_replicas)
        if (r->thread.joinable()) r->thread.join();
}

void ReplicaGroup::record_failure(int rank, const std::string& message)
{
    {
        std::lock_guard lock(m_mutex);
        if (!m_error.empty()) return;   // the first failure is the cause; the rest follow from the abort
        m_error = rank == 0 ? message : "replica " + std::to_string(rank) + ": " + message;
    }
    for (auto& c : m_communicators) c->abort();
}

void ReplicaGroup::run_guarded(Replica& r, const std::function<void(Replica&)>& work)
{
    try {
        work(r);
    } catch (const std::bad_alloc&) {
        record_failure(r.rank, "out of host memory: lower the batch size or sequence length, or use fewer replicas");
    } catch (const std::exception& e) {
        record_failure(r.rank, e.what());
    }
}

void ReplicaGroup::follower_loop(Replica& r)
{
    uint64_t seen = 0;
    for (;;) {
        std::function<void(Replica&)> task;
        {
            std::unique_lock lock(m_mutex);
            m_wake.wait(lock, [&] { return m_quit || m_generation != seen; });
            if (m_quit) break;
            seen = m_generation;
            task = m_task;
        }
        run_guarded(r, task);
        std::lock_guard lock(m_mutex);
        if (--m_pending == 0) m_done.notify_all();
    }
    r.release();
}

void ReplicaGroup::on_every_replica(const std::function<void(Replica&)>& work)
{
    {
        std::lock_guard lock(m_mutex);
        if (!m_error.empty()) throw Error(m_error);   // the group is broken for good
        m_task = work;
        m_pending = int(m_replicas.size()) - 1;
        ++m_generation;
    }
    m_wake.notify_all();
    run_guarded(*m_replicas.front(), work);
    std::unique_lock lock(m_mutex);
    m_done.wait(lock, [&] { return m_pending == 0; });
    if (!m_error.empty()) throw Error(m_error);
}

void ReplicaGroup::align_with_leader(const std::optional<std::filesystem::path>& checkpoint)
{
    const Replica& lead = *m_replicas.front();
    const int64_t steps_taken = lead.model->optimizer->steps_taken();
    const Batcher::State position = lead.batcher->state();
    // Rank 0 already holds its share; the others take theirs from the same file.
    std::optional<OptimizerSnapshot> resumed;
    if (checkpoint && std::filesystem::exists(*checkpoint / "optimizer.safetensors"))
        resumed = read_optimizer_state(*checkpoint, lead.model->params->layout(), lead.model->optimizer->config());
    on_every_replica([&](Replica& r) {
        ParamStore& params = *r.model->params;
        r.comm->broadcast(params.master(), 0);
        if (r.rank != 0) {
            params.sync_compute();
            if (resumed) r.model->optimizer->restore(*resumed);
            r.model->optimizer->set_steps_taken(steps_taken);
            r.batcher->set_state(position);
        }
        r.backend->synchronize();
    });
}

bool ReplicaGroup::agree(bool mine)
{
    if (!across_processes()) return mine;
    bool any = mine;
    on_every_replica([&](Replica& r) { any = r.comm->all_reduce_sum(mine ? 1.0 : 0.0) > 0.0; });
    return any;
}

OptimizerSnapshot ReplicaGroup::gather_across_processes()
{
    Replica& r = *m_replicas.front();
    const Optimizer& opt = *r.model->optimizer;
    OptimizerSnapshot s;
    s.config = opt.config();
    s.steps = opt.steps_taken();
    const bool collector = r.rank == 0;
    if (collector) {
        s.m.assign(size_t(r.model->params->layout().total()), 0.0f);
        s.v.assign(s.m.size(), 0.0f);
        opt.download_state(s.m.data(), s.v.data());
    }
    // Each owner's moments go to rank 0 through a device buffer the size of
    // the largest share, so that no rank ever holds more than its share twice.
    int64_t largest = 0;
    for (const ParamRange& range : m_ranges) largest = std::max(largest, range.size());
    Backend& backend = *r.backend;
    void* buffer = backend.allocate(size_t(largest) * sizeof(float));
    try {
        const Tensor staging(buffer, DType::f32, Shape{largest}, backend.device());
        on_every_replica([&](Replica& me) {
            for (int owner = 1; owner < world(); ++owner) {
                const ParamRange& range = m_ranges[size_t(owner)];
                if (range.size() == 0) continue;
                for (int moment = 0; moment < 2; ++moment) {
                    const Tensor own = moment == 0 ? opt.first_moment() : opt.second_moment();
                    const Tensor data = me.rank == owner ? own : staging.sub(0, Shape{range.size()});
                    me.comm->broadcast(data, owner);
                    if (collector)
                        backend.download((moment == 0 ? s.m.data() : s.v.data()) + range.begin, DType::f32, data);
                }
            }
        });
    } catch (...) {
        backend.deallocate(buffer);
        throw;
    }
    backend.deallocate(buffer);
    return s;
}

OptimizerSnapshot ReplicaGroup::gather_optimizer_state()
{
    if (across_processes()) return gather_across_processes();
    const Optimizer& lead = *m_replicas.front()->model->optimizer;
    OptimizerSnapshot s;
    s.config = lead.config();
    s.steps = lead.steps_taken();
    s.m.assign(size_t(m_replicas.front()->model->params->layout().total()), 0.0f);
    s.v.assign(s.m.size(), 0.0f);
    // Disjoint ranges of the same arrays: each replica writes its own.
    on_every_replica([&](Replica& r) { r.model->optimizer->download_state(s.m.data(), s.v.data()); });
    return s;
}

StepResult ReplicaGroup::step_share(Replica& r, double lr_multiplier)
{
    StepResult res;
    res.lr_multiplier = lr_multiplier;
    ParamStore& params = *r.model->params;
    auto comm_start = Clock::now();
    if (m_overlap) {
        // The buckets go out during the last backward; what is left is the
        // wait for the last of them: the communication the step still sees.
        if (!r.overlap) r.overlap = std::make_unique<GradientOverlap>(*r.comm, params.grads(), m_bucket_elements);
        res.loss = r.step->accumulate(params, *r.model->model, *r.batcher,
                                      [&](int64_t begin, int64_t end) { r.overlap->ready(begin, end); });
        comm_start = Clock::now();
        r.overlap->finish();
        r.backend->synchronize();
    } else {
        res.loss = r.step->accumulate(params, *r.model->model, *r.batcher);
        r.backend->synchronize();
        comm_start = Clock::now();
        r.comm->all_reduce_sum(params.grads());
    }
    res.loss.loss = r.comm->all_reduce_sum(res.loss.loss);
    res.loss.tokens = std::llround(r.comm->all_reduce_sum(double(res.loss.tokens)));
    res.comm_seconds = std::chrono::duration<double>(Clock::now() - comm_start).count();

    res.update = r.model->optimizer->step(lr_multiplier);
    if (!res.update.skipped) {
        // Every range's owner sends its updated weights (and their compute
        // copy) to the others: the all-gather of ZeRO stage 1.
        r.backend->synchronize();
        comm_start = Clock::now();
        const bool mirror = params.compute().data != params.master().data;
        for (int owner = 0; owner < world(); ++owner) {
            const ParamRange& range = m_ranges[size_t(owner)];
            if (range.size() == 0) continue;
            r.comm->broadcast(params.master().sub(range.begin, Shape{range.size()}), owner);
            if (mirror) r.comm->broadcast(params.compute().sub(range.begin, Shape{range.size()}), owner);
        }
    }
    r.backend->synchronize();   // the update, and the exchange when there was one
    if (!res.update.skipped) res.comm_seconds += std::chrono::duration<double>(Clock::now() - comm_start).count();
    return res;
}

StepResult ReplicaGroup::step(double lr_multiplier)
{
    const auto t0 = Clock::now();
    on_every_replica([&](Replica& r) { r.result = step_share(r, lr_multiplier); });
    StepResult res = m_replicas.front()->result;
    res.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    return res;
}

} // namespace crucible
