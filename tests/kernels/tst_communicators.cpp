// The collectives of data-parallel training: the CPU thread group sums in rank
// order (the same bits on every rank, run after run), broadcasts, and a
// failed rank's abort releases the others instead of leaving them waiting.
// With two or more GPUs, the NCCL group is checked the same way.
#include "kernels/backend_factory.h"
#include "kernels/communicator.h"
#include "tests/support/test_support.h"

#include <QtTest>

#include <atomic>
#include <thread>

using namespace crucible;

namespace {

// Runs body(rank) on `world` threads at once and waits for them.
void on_threads(int world, const std::function<void(int)>& body)
{
    std::vector<std::thread> threads;
    for (int r = 0; r < world; ++r) threads.emplace_back([&, r] { body(r); });
    for (auto& t : threads) t.join();
}

} // namespace

class CommunicatorTest : public QObject {
    Q_OBJECT

private slots:
    void allReduceSumsInRankOrder()
    {
        const int world = 3;
        const size_t n = 1001;   // not a multiple of the world: uneven slices
        auto group = make_thread_communicator_group(world);
        std::vector<std::vector<float>> data;
        for (int r = 0; r < world; ++r) data.push_back(test::random_vector(n, 100 + uint64_t(r)));
        const auto inputs = data;
        on_threads(world, [&](int r) {
            group[size_t(r)]->all_reduce_sum(Tensor(data[size_t(r)].data(), DType::f32, {int64_t(n)}));
        });
        for (size_t i = 0; i < n; ++i) {
            const float expected = (inputs[0][i] + inputs[1][i]) + inputs[2][i];
            for (int r = 0; r < world; ++r) QCOMPARE(data[size_t(r)][i], expected);
        }
    }

    void repeatedCollectivesDoNotMix()
    {
        // Back-to-back collectives of different sizes: a rank that races ahead
        // must not see the previous call's buffers.
        const int world = 4;
        auto group = make_thread_communicator_group(world);
        std::atomic<int> wrong{0};
        on_threads(world, [&](int r) {
            for (int round = 1; round <= 50; ++round) {
                std::vector<float> v(size_t(round), float(r + 1));
                group[size_t(r)]->all_reduce_sum(Tensor(v.data(), DType::f32, {int64_t(round)}));
                for (float x : v) wrong += x != 10.0f;   // 1+2+3+4
                const double s = group[size_t(r)]->all_reduce_sum(double(round * (r + 1)));
                wrong += s != 10.0 * round;
            }
        });
        QCOMPARE(wrong.load(), 0);
    }

    void broadcastCopiesTheRoot()
    {
        const int world = 3;
        auto group = make_thread_communicator_group(world);
        std::vector<std::vector<float>> data;
        for (int r = 0; r < world; ++r) data.push_back(test::random_vector(77, 7 + uint64_t(r)));
        const std::vector<float> root = data[1];
        on_threads(world, [&](int r) {
            group[size_t(r)]->broadcast(Tensor(data[size_t(r)].data(), DType::f32, {77}), 1);
        });
        for (int r = 0; r < world; ++r) QVERIFY(data[size_t(r)] == root);
    }

    void abortReleasesWaitingRanks()
    {
        auto group = make_thread_communicator_group(2);
        std::atomic<bool> threw{false};
        std::thread waiter([&] {
            try {
                group[0]->barrier();   // rank 1 never comes
            } catch (const Error& e) {
                threw = std::string(e.what()).find("another replica") != std::string::npos;
            }
        });
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        group[1]->abort();
        waiter.join();
        QVERIFY(threw.load());
        // Later collectives fail at once instead of waiting.
        QVERIFY_THROWS_EXCEPTION(Error, group[1]->all_reduce_sum(1.0));
    }

    void oneRankIsANoOp()
    {
        auto group = make_thread_communicator_group(1);
        std::vector<float> v{1.0f, 2.0f};
        group[0]->all_reduce_sum(Tensor(v.data(), DType::f32, {2}));
        QCOMPARE(v[1], 2.0f);
        QCOMPARE(group[0]->all_reduce_sum(3.5), 3.5);
    }

    void mixedDevicesAreRefused()
    {
        auto cpu = make_backend(BackendOptions{});
        QVERIFY_THROWS_EXCEPTION(Error, make_communicator_group({}));
        auto group = make_communicator_group({cpu.get(), cpu.get()});
        QCOMPARE(int(group.size()), 2);
        QCOMPARE(group[1]->rank(), 1);
        QCOMPARE(group[1]->world(), 2);
    }

    void ncclOpensOnOneGpu()
    {
        // NCCL is found and a group forms on the one GPU a machine may have.
        if (cuda_device_count() < 1) QSKIP("needs a CUDA device");
        BackendOptions o;
        o.device = DeviceKind::cuda;
        auto gpu = make_backend(o);
        auto group = make_communicator_group({gpu.get()});
        QCOMPARE(int(group.size()), 1);
        QCOMPARE(group[0]->all_reduce_sum(2.5), 2.5);
        // The same GPU twice is refused: NCCL needs a GPU per rank.
        QVERIFY_THROWS_EXCEPTION(Error, make_communicator_group({gpu.get(), gpu.get()}));
    }

    void ncclGroupSumsAcrossGpus()
    {
        if (cuda_device_count() < 2) QSKIP("needs two CUDA devices");
        const int world = cuda_device_count();
        std::vector<std::unique_ptr<Backend>> backends;
        std::vector<Backend*> raw;
        for (int d = 0; d < world; ++d) {
            BackendOptions o;
            o.device = DeviceKind::cuda;
            o.cuda_device = d;
            backends.push_back(make_backend(o));
            raw.push_back(backends.back().get());
        }
        auto group = make_communicator_group(raw);
        const size_t n = 4097;
        std::vector<std::vector<float>> host;
        std::vector<test::OwnedTensor> dev;
        for (int r = 0; r < world; ++r) host.push_back(test::random_vector(n, 300 + uint64_t(r)));
        for (int r = 0; r < world; ++r) dev.emplace_back(*raw[size_t(r)], DType::f32, Shape{int64_t(n)}, host[size_t(r)]);
        on_threads(world, [&](int r) {
            group[size_t(r)]->all_reduce_sum(dev[size_t(r)]);
            const double s = group[size_t(r)]->all_reduce_sum(double(r));
            QCOMPARE(s, double(world * (world - 1) / 2));
            raw[size_t(r)]->synchronize();
        });
        std::vector<double> expected(n, 0.0);
        for (int r = 0; r < world; ++r)
            for (size_t i = 0; i < n; ++i) expected[i] += host[size_t(r)][i];
        for (int r = 0; r < world; ++r) QVERIFY(test::relative_error(dev[size_t(r)].to_host(), expected) < 1e-6);
    }
};

QTEST_GUILESS_MAIN(CommunicatorTest)
#include "tst_communicators.moc"
