#include "kernels/communicator.h"

#include "kernels/cuda_plugin.h"
#include "kernels/error.h"
#include "kernels/half.h"

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <set>
#include <string>

namespace crucible {

void Communicator::all_reduce_sum(Tensor data)
{
    CRUCIBLE_CHECK(data.dtype == DType::f32 || data.dtype == DType::bf16,
                   "all_reduce_sum takes f32 or bf16 tensors, not " + std::string(dtype_name(data.dtype)));
    if (m_world == 1 || data.numel() == 0) return;
    do_all_reduce_sum(data);
}

void Communicator::broadcast(Tensor data, int root)
{
    CRUCIBLE_CHECK(root >= 0 && root < m_world, "broadcast from rank " + std::to_string(root) + " of a group of " +
                                                    std::to_string(m_world));
    if (m_world == 1 || data.numel() == 0) return;
    do_broadcast(data, root);
}

double Communicator::all_reduce_sum(double value)
{
    return m_world == 1 ? value : do_all_reduce_sum_host(value);
}

namespace {

// What the threads of one group share. Each collective is three phases
// separated by barriers: every rank posts its buffer; each rank reduces its
// slice of the elements over all posted buffers (in rank order) into the
// shared result; every rank copies the result back.
struct ThreadGroupState {
    explicit ThreadGroupState(int world) : world(world), posted(size_t(world)), host(size_t(world)) {}

    const int world;
    std::mutex mutex;
    std::condition_variable arrived;
    int waiting = 0;
    uint64_t generation = 0;
    bool aborted = false;

    std::vector<Tensor> posted;
    std::vector<double> host;
    std::vector<float> result;

    void wait_for_all()
    {
        std::unique_lock lock(mutex);
        if (aborted) throw Error("another replica of this training run failed; see its message");
        const uint64_t gen = generation;
        if (++waiting == world) {
            waiting = 0;
            ++generation;
            arrived.notify_all();
            return;
        }
        arrived.wait(lock, [&] { return generation != gen || aborted; });
        if (aborted) throw Error("another replica of this training run failed; see its message");
    }

    void abort()
    {
        std::lock_guard lock(mutex);
        aborted = true;
        arrived.notify_all();
    }
};

// The slice of n elements that rank r reduces.
std::pair<int64_t, int64_t> slice_of(int64_t n, int rank, int world)
{
    const int64_t per = (n + world - 1) / world;
    const int64_t begin = std::min(n, per * rank);
    return {begin, std::min(n, begin + per)};
}

class ThreadCommunicator final : public Communicator {
public:
    ThreadCommunicator(int rank, std::shared_ptr<ThreadGroupState> group)
        : Communicator(rank, group->world), m_group(std::move(group))
    {
    }

private:
    void post(Tensor data)
    {
        CRUCIBLE_CHECK(data.device == DeviceKind::cpu, "the thread group reduces host memory only");
        m_group->posted[size_t(rank())] = data;
        m_group->wait_for_all();
        for (const Tensor& t : m_group->posted)
            CRUCIBLE_CHECK(t.numel() == data.numel() && t.dtype == data.dtype,
                           "replicas disagree on a collective: " + t.str() + " vs " + data.str());
    }

    void do_all_reduce_sum(Tensor data) override
    {
        ThreadGroupState& g = *m_group;
        const int64_t n = data.numel();
        if (rank() == 0) g.result.resize(size_t(n));
        post(data);   // after this barrier, result is sized
        const auto [begin, end] = slice_of(n, rank(), world());
        const bool bf16 = data.dtype == DType::bf16;
        for (int64_t i = begin; i < end; ++i) {
            float sum = 0.0f;
            for (const Tensor& t : g.posted) sum += bf16 ? f32_from_bf16(t.as<const uint16_t>()[i]) : t.as<const float>()[i];
            g.result[size_t(i)] = sum;
        }
        g.wait_for_all();
        if (bf16)
            for (int64_t i = 0; i < n; ++i) data.as<uint16_t>()[i] = bf16_from_f32(g.result[size_t(i)]);
        else
            std::copy(g.result.begin(), g.result.begin() + n, data.as<float>());
        g.wait_for_all();   // nobody reuses posted/result before all copied
    }

    void do_broadcast(Tensor data, int root) override
    {
        post(data);
        if (rank() != root) std::memcpy(data.data, m_group->posted[size_t(root)].data, data.bytes());
        m_group->wait_for_all();
    }

    double do_all_reduce_sum_host(double value) override
    {
        ThreadGroupState& g = *m_group;
        g.host[size_t(rank())] = value;
        g.wait_for_all();
        double sum = 0.0;
        for (double v : g.host) sum += v;
        g.wait_for_all();
        return sum;
    }

    void do_abort() override { m_group->abort(); }

    std::shared_ptr<ThreadGroupState> m_group;
};

} // namespace

std::vector<std::unique_ptr<Communicator>> make_thread_communicator_group(int world)
{
    CRUCIBLE_REQUIRE(world >= 1, "a replica group needs at least one rank, not " + std::to_string(world));
    auto state = std::make_shared<ThreadGroupState>(world);
    std::vector<std::unique_ptr<Communicator>> group;
    for (int r = 0; r < world; ++r) group.push_back(std::make_unique<ThreadCommunicator>(r, state));
    return group;
}

std::vector<std::unique_ptr<Communicator>> make_communicator_group(const std::vector<Backend*>& backends)
{
    CRUCIBLE_REQUIRE(!backends.empty(), "a replica group needs at least one device");
    const DeviceKind kind = backends.front()->device();
    for (const Backend* b : backends)
        CRUCIBLE_REQUIRE(b->device() == kind, "all replicas of a run must be on one kind of device");
    if (kind == DeviceKind::cpu) return make_thread_communicator_group(int(backends.size()));
    return make_cuda_communicator_group(backends);   // NCCL, in the CUDA plugin
}

} // namespace crucible
