#include "kernels/net/socket_communicator.h"

#include "kernels/error.h"
#include "kernels/half.h"

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>

namespace crucible {

namespace {

// The slice of n elements that rank r sums (as the thread group slices).
std::pair<int64_t, int64_t> slice_of(int64_t n, int rank, int world)
{
    const int64_t per = (n + world - 1) / world;
    const int64_t begin = std::min(n, per * rank);
    return {begin, std::min(n, begin + per)};
}

// What one rank sends to and receives from one peer in a collective step.
struct Transfer {
    int peer = 0;
    const char* send = nullptr;
    size_t send_bytes = 0;
    char* recv = nullptr;
    size_t recv_bytes = 0;
};

class SocketCommunicator final : public Communicator {
public:
    SocketCommunicator(int rank, int world, std::vector<TcpSocket> peers, double timeout_s)
        : Communicator(rank, world), m_peers(std::move(peers)), m_timeout_s(timeout_s)
    {
        for (auto& p : m_peers)
            if (p.valid()) p.set_nonblocking(true);
    }

private:
    std::string peer_name(int peer) const { return "rank " + std::to_string(peer); }

    // Moves every transfer's bytes at once, so that no pair of ranks waits on
    // each other's full socket buffers.
    void exchange(std::vector<Transfer>& transfers)
    {
        const Deadline deadline = deadline_in(m_timeout_s);
        std::vector<pollfd> fds;
        std::vector<Transfer*> of_fd;
        for (;;) {
            if (m_aborted.load()) throw Error("another rank of this training run failed; see its message");
            fds.clear();
            of_fd.clear();
            for (Transfer& t : transfers) {
                short events = 0;
                if (t.send_bytes > 0) events |= POLLOUT;
                if (t.recv_bytes > 0) events |= POLLIN;
                if (events == 0) continue;
                fds.push_back({m_peers[size_t(t.peer)].fd(), events, 0});
                of_fd.push_back(&t);
            }
            if (fds.empty()) return;
            const int ready = ::poll(fds.data(), fds.size(), poll_timeout_ms(deadline));
            if (ready < 0 && errno == EINTR) continue;
            if (ready == 0)
                throw Error("timed out after " + std::to_string(int(m_timeout_s)) + " s waiting for " +
                            peer_name(of_fd.front()->peer) +
                            " (it hangs, or its host is unreachable); raise CRUCIBLE_COLLECTIVE_TIMEOUT if it is "
                            "only slow");
            for (size_t i = 0; i < fds.size(); ++i) {
                Transfer& t = *of_fd[i];
                const int fd = fds[i].fd;
                if (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) {
                    if (t.recv_bytes > 0) {
                        const ssize_t n = ::recv(fd, t.recv, t.recv_bytes, MSG_DONTWAIT);
                        if (n == 0) lost(t.peer, "it closed the connection");
                        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) lost(t.peer, std::strerror(errno));
                        if (n > 0) {
                            t.recv += n;
                            t.recv_bytes -= size_t(n);
                        }
                    } else if (fds[i].revents & (POLLHUP | POLLERR)) {
                        lost(t.peer, "it closed the connection");
                    }
                }
                if ((fds[i].revents & POLLOUT) && t.send_bytes > 0) {
                    const ssize_t n = ::send(fd, t.send, t.send_bytes, MSG_NOSIGNAL | MSG_DONTWAIT);
                    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) lost(t.peer, std::strerror(errno));
                    if (n > 0) {
                        t.send += n;
                        t.send_bytes -= size_t(n);
                    }
                }
            }
        }
    }

    [[noreturn]] void lost(int peer, const std::string& why)
    {
        if (m_aborted.load()) throw Error("another rank of this training run failed; see its message");
        throw Error("lost " + peer_name(peer) + " of the training run (" + why +
                    "): it stopped or failed; see its output");
    }

    void do_all_reduce_sum(Tensor data) override
    {
        CRUCIBLE_CHECK(data.device == DeviceKind::cpu, "the socket communicator reduces host memory only");
        const int64_t n = data.numel();
        const bool bf16 = data.dtype == DType::bf16;
        const size_t width = bf16 ? 2 : 4;   // bytes per element on the wire
        char* bytes = static_cast<char*>(data.data);
        const auto [begin, end] = slice_of(n, rank(), world());
        const size_t mine = size_t(end - begin);
        m_scratch.resize(mine * size_t(world()) * width);
        auto value = [&](const char* at, size_t i) {
            return bf16 ? f32_from_bf16(reinterpret_cast<const uint16_t*>(at)[i]) : reinterpret_cast<const float*>(at)[i];
        };

        // Reduce-scatter: every rank's copy of my slice, into scratch by rank.
        std::vector<Transfer> transfers;
        for (int p = 0; p < world(); ++p) {
            if (p == rank()) continue;
            const auto [pb, pe] = slice_of(n, p, world());
            transfers.push_back({p, bytes + size_t(pb) * width, size_t(pe - pb) * width,
                                 m_scratch.data() + size_t(p) * mine * width, mine * width});
        }
        exchange(transfers);
        char* own = bytes + size_t(begin) * width;
        for (size_t i = 0; i < mine; ++i) {
            float sum = 0.0f;
            for (int p = 0; p < world(); ++p)
                sum += p == rank() ? value(own, i) : value(m_scratch.data() + size_t(p) * mine * width, i);
            if (bf16) reinterpret_cast<uint16_t*>(own)[i] = bf16_from_f32(sum);
            else reinterpret_cast<float*>(own)[i] = sum;
        }

        // All-gather: my summed slice to everyone, theirs into place.
        transfers.clear();
        for (int p = 0; p < world(); ++p) {
            if (p == rank()) continue;
            const auto [pb, pe] = slice_of(n, p, world());
            transfers.push_back({p, own, mine * width, bytes + size_t(pb) * width, size_t(pe - pb) * width});
        }
        exchange(transfers);
    }

    void do_broadcast(Tensor data, int root) override
    {
        CRUCIBLE_CHECK(data.device == DeviceKind::cpu, "the socket communicator broadcasts host memory only");
        std::vector<Transfer> transfers;
        if (rank() == root) {
            for (int p = 0; p < world(); ++p)
                if (p != root) transfers.push_back({p, static_cast<const char*>(data.data), data.bytes(), nullptr, 0});
        } else {
            transfers.push_back({root, nullptr, 0, static_cast<char*>(data.data), data.bytes()});
        }
        exchange(transfers);
    }

    double do_all_reduce_sum_host(double value) override
    {
        std::vector<double> values(static_cast<size_t>(world()));
        values[size_t(rank())] = value;
        std::vector<Transfer> transfers;
        for (int p = 0; p < world(); ++p)
            if (p != rank())
                transfers.push_back({p, reinterpret_cast<const char*>(&value), sizeof value,
                                     reinterpret_cast<char*>(&values[size_t(p)]), sizeof(double)});
        exchange(transfers);
        double sum = 0.0;
        for (double v : values) sum += v;
        return sum;
    }

    void do_abort() override
    {
        if (m_aborted.exchange(true)) return;
        for (auto& p : m_peers) p.shut_down();
    }

    std::vector<TcpSocket> m_peers;   // by rank; this rank's own is empty
    double m_timeout_s;
    std::vector<char> m_scratch;
    std::atomic<bool> m_aborted{false};
};

} // namespace

std::unique_ptr<Communicator> make_socket_communicator(RendezvousStore& store, int rank, int world, double timeout_s)
{
    CRUCIBLE_REQUIRE(world >= 1 && rank >= 0 && rank < world,
                     "rank " + std::to_string(rank) + " is not one of a world of " + std::to_string(world));
    const TcpSocket listener = TcpSocket::listen(0);
    store.set("mesh/" + std::to_string(rank), store.own_address() + ":" + std::to_string(listener.local_port()));
    // Every rank's address first: a rank that never started is named here.
    std::vector<std::string> addresses(static_cast<size_t>(world));
    for (int p = 0; p < world; ++p)
        if (p != rank)
            addresses[size_t(p)] = store.get("mesh/" + std::to_string(p),
                                             "rank " + std::to_string(p) + " of " + std::to_string(world) +
                                                 " did not join the training run (was it started, with the same "
                                                 "MASTER_ADDR, MASTER_PORT and world size?)");

    // Each pair connects once: the higher rank dials the lower one.
    std::vector<TcpSocket> peers(static_cast<size_t>(world));
    const Deadline deadline = deadline_in(store.timeout_s());
    for (int p = 0; p < rank; ++p) {
        const std::string& a = addresses[size_t(p)];
        const size_t colon = a.rfind(':');
        peers[size_t(p)] = TcpSocket::connect(a.substr(0, colon), std::stoi(a.substr(colon + 1)), deadline);
        peers[size_t(p)].send_u64(uint64_t(rank), deadline, "rank " + std::to_string(p));
    }
    for (int accepted = 0; accepted < world - 1 - rank; ++accepted) {
        TcpSocket s;
        try {
            s = listener.accept(deadline);
        } catch (const Error& e) {
            throw Error("the higher ranks did not connect to rank " + std::to_string(rank) + " (" + e.what() +
                        "): a firewall may block the ports the ranks listen on");
        }
        const uint64_t peer = s.recv_u64(deadline, "a joining rank");
        if (peer <= uint64_t(rank) || peer >= uint64_t(world) || peers[size_t(peer)].valid())
            throw Error("a process that is not one of this run's ranks connected (it says rank " +
                        std::to_string(peer) + "): is another job using the same MASTER_PORT?");
        peers[size_t(peer)] = std::move(s);
    }
    return std::make_unique<SocketCommunicator>(rank, world, std::move(peers), timeout_s);
}

} // namespace crucible
