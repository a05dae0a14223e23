// The collectives of data-parallel training: the CPU thread group sums in rank
// order (the same bits on every rank, run after run), broadcasts, and a
// failed rank's abort releases the others instead of leaving them waiting.
// With two or more GPUs, the NCCL group is checked the same way.
#include "kernels/backend_factory.h"
#include "kernels/communicator.h"
#include "kernels/half.h"
#include "kernels/net/process_launch.h"
#include "kernels/net/rendezvous_store.h"
#include "kernels/net/socket_communicator.h"
#include "tests/support/test_support.h"

#include <QtTest>

#include <atomic>
#include <map>
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

// A socket group of `world` ranks on this host, each rank on its own thread
// with its own rendezvous client, as separate processes would have.
std::vector<std::unique_ptr<Communicator>> make_socket_group(int world, double timeout_s = 30)
{
    const int port = TcpSocket::listen(0).local_port();
    std::vector<std::unique_ptr<RendezvousStore>> stores(static_cast<size_t>(world));
    std::vector<std::unique_ptr<Communicator>> group(static_cast<size_t>(world));
    on_threads(world, [&](int r) {
        stores[size_t(r)] = std::make_unique<RendezvousStore>("127.0.0.1", port, r, timeout_s);
        group[size_t(r)] = make_socket_communicator(*stores[size_t(r)], r, world, timeout_s);
        group[size_t(r)]->barrier();   // everyone connected before rank 0's store goes
    });
    return group;
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

    void socketGroupMatchesTheThreadGroupBitForBit()
    {
        // Sizes below, at and above the world, uneven slices, and empty.
        for (int world : {2, 3}) {
            auto sockets = make_socket_group(world);
            auto threads = make_thread_communicator_group(world);
            for (size_t n : {size_t(0), size_t(1), size_t(2), size_t(1001), size_t(70000)}) {
                std::vector<std::vector<float>> a, b;
                for (int r = 0; r < world; ++r) a.push_back(test::random_vector(n, 7 + uint64_t(r)));
                b = a;
                on_threads(world, [&](int r) {
                    sockets[size_t(r)]->all_reduce_sum(Tensor(a[size_t(r)].data(), DType::f32, {int64_t(n)}));
                    threads[size_t(r)]->all_reduce_sum(Tensor(b[size_t(r)].data(), DType::f32, {int64_t(n)}));
                });
                for (int r = 0; r < world; ++r) QVERIFY(a[size_t(r)] == b[0]);
            }
            // Broadcast from every root, and a host sum.
            for (int root = 0; root < world; ++root) {
                std::vector<std::vector<float>> v;
                for (int r = 0; r < world; ++r) v.push_back(std::vector<float>(333, float(r)));
                on_threads(world, [&](int r) {
                    sockets[size_t(r)]->broadcast(Tensor(v[size_t(r)].data(), DType::f32, {333}), root);
                });
                for (int r = 0; r < world; ++r) QVERIFY(v[size_t(r)] == std::vector<float>(333, float(root)));
            }
            std::vector<double> sums(static_cast<size_t>(world));
            on_threads(world, [&](int r) { sums[size_t(r)] = sockets[size_t(r)]->all_reduce_sum(double(r) + 0.5); });
            for (double s : sums) QCOMPARE(s, world * (world - 1) / 2.0 + 0.5 * world);
        }
    }

    void bf16SumsInF32AndRoundsOnce()
    {
        const int world = 3;
        const size_t n = 777;
        auto sockets = make_socket_group(world);
        auto threads = make_thread_communicator_group(world);
        std::vector<std::vector<uint16_t>> a(static_cast<size_t>(world));
        std::vector<float> expected(n, 0.0f);
        for (int r = 0; r < world; ++r)
            for (float x : test::random_vector(n, 40 + uint64_t(r))) a[size_t(r)].push_back(bf16_from_f32(x));
        for (size_t i = 0; i < n; ++i)
            for (int r = 0; r < world; ++r) expected[i] += f32_from_bf16(a[size_t(r)][i]);
        auto b = a;
        on_threads(world, [&](int r) {
            sockets[size_t(r)]->all_reduce_sum(Tensor(a[size_t(r)].data(), DType::bf16, {int64_t(n)}));
            threads[size_t(r)]->all_reduce_sum(Tensor(b[size_t(r)].data(), DType::bf16, {int64_t(n)}));
        });
        for (int r = 0; r < world; ++r) {
            QVERIFY(a[size_t(r)] == b[0]);
            for (size_t i = 0; i < n; ++i) QCOMPARE(a[size_t(r)][i], bf16_from_f32(expected[i]));
        }
    }

    void socketGroupReportsALostRank()
    {
        auto group = make_socket_group(3);
        group[2].reset();   // rank 2's process is gone: its sockets closed
        std::vector<std::string> errors(2);
        on_threads(2, [&](int r) {
            std::vector<float> v(100, 1.0f);
            try {
                group[size_t(r)]->all_reduce_sum(Tensor(v.data(), DType::f32, {100}));
            } catch (const Error& e) {
                errors[size_t(r)] = e.what();
                group[size_t(r)]->abort();   // as the trainer does: the others stop too
            }
        });
        for (const std::string& e : errors) QVERIFY2(!e.empty(), "a collective with a lost rank returned");
        QVERIFY2(errors[0].find("lost rank 2") != std::string::npos || errors[1].find("lost rank 2") != std::string::npos,
                 (errors[0] + " / " + errors[1]).c_str());
    }

    void missingRankTimesOutWithItsNumber()
    {
        const int port = TcpSocket::listen(0).local_port();
        RendezvousStore store("127.0.0.1", port, 0, 0.5);
        try {
            make_socket_communicator(store, 0, 2, 0.5);
            QFAIL("a group with a missing rank formed");
        } catch (const Error& e) {
            QVERIFY2(std::string(e.what()).find("rank 1 of 2 did not join") != std::string::npos, e.what());
        }
        try {
            const int unserved = TcpSocket::listen(0).local_port();   // closed again: nobody listens
            RendezvousStore lonely("127.0.0.1", unserved, 1, 0.5);
            QFAIL("reached a rendezvous nobody serves");
        } catch (const Error& e) {
            QVERIFY2(std::string(e.what()).find("could not reach the rendezvous") != std::string::npos, e.what());
        }
    }

    void launchIsReadFromTheEnvironment()
    {
        auto from = [](std::map<std::string, std::string> env) {
            return process_launch_from_environment([env](const char* name) -> const char* {
                auto it = env.find(name);
                return it == env.end() ? nullptr : it->second.c_str();
            });
        };
        QVERIFY(!from({}));
        QVERIFY(!from({{"RANK", "0"}, {"WORLD_SIZE", "1"}}));   // a world of one is an ordinary run
        auto t = from({{"RANK", "2"}, {"WORLD_SIZE", "4"}, {"LOCAL_RANK", "0"}, {"MASTER_ADDR", "node7"},
                       {"MASTER_PORT", "29400"}});
        QVERIFY(t);
        QCOMPARE(t->rank, 2);
        QCOMPARE(t->world, 4);
        QCOMPARE(t->local_rank, 0);
        QCOMPARE(t->master_addr, std::string("node7"));
        QCOMPARE(t->master_port, 29400);
        QCOMPARE(t->launcher, std::string("torchrun"));
        auto m = from({{"OMPI_COMM_WORLD_RANK", "1"}, {"OMPI_COMM_WORLD_SIZE", "2"}, {"OMPI_COMM_WORLD_LOCAL_RANK", "1"},
                       {"OMPI_COMM_WORLD_LOCAL_SIZE", "2"}});
        QVERIFY(m);
        QCOMPARE(m->launcher, std::string("mpirun"));
        QCOMPARE(m->local_rank, 1);
        QCOMPARE(m->master_addr, std::string("127.0.0.1"));   // all on one host
        QCOMPARE(m->master_port, 29500);
        auto refused = [&](std::map<std::string, std::string> env, const char* expected) {
            try {
                from(env);
                QFAIL("an incomplete launch was accepted");
            } catch (const Error& e) {
                QVERIFY2(std::string(e.what()).find(expected) != std::string::npos, e.what());
            }
        };
        refused({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_PORT", "1"}}, "MASTER_ADDR is not set");
        refused({{"RANK", "2"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "1"}}, "RANK=2");
        refused({{"OMPI_COMM_WORLD_RANK", "0"}, {"OMPI_COMM_WORLD_SIZE", "4"}, {"OMPI_COMM_WORLD_LOCAL_SIZE", "2"}},
                "-x MASTER_ADDR");
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
