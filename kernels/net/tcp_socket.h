// TcpSocket: the few blocking-with-deadline TCP operations the rendezvous
// store and the socket communicator are built from.
//
// Every wait has a deadline and every failure throws Error with what went
// wrong and with whom, so that a peer that never comes or dies mid-run ends
// the process with a message instead of a hang. Sends never raise SIGPIPE.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

namespace crucible {

using Deadline = std::chrono::steady_clock::time_point;
Deadline deadline_in(double seconds);

class TcpSocket {
public:
    TcpSocket() = default;
    explicit TcpSocket(int fd) : m_fd(fd) {}
    ~TcpSocket() { close(); }
    TcpSocket(TcpSocket&& o) noexcept : m_fd(o.m_fd) { o.m_fd = -1; }
    TcpSocket& operator=(TcpSocket&& o) noexcept;
    TcpSocket(const TcpSocket&) = delete;
    TcpSocket& operator=(const TcpSocket&) = delete;

    int fd() const { return m_fd; }
    bool valid() const { return m_fd >= 0; }
    void close();
    // Wakes any thread blocked on this socket (it then sees an error).
    void shut_down();

    // Connects to host:port, retrying while nobody listens yet, until `deadline`.
    static TcpSocket connect(const std::string& host, int port, Deadline deadline);
    // A listening socket on `port` (0: any free port) of every interface.
    static TcpSocket listen(int port);
    TcpSocket accept(Deadline deadline) const;

    int local_port() const;
    // The address this end of a connected socket has (the interface its peer reaches).
    std::string local_address() const;

    // Whole buffers; `peer` names the other end in messages.
    void send_all(const void* data, size_t bytes, Deadline deadline, const std::string& peer) const;
    void recv_all(void* data, size_t bytes, Deadline deadline, const std::string& peer) const;
    void send_u64(uint64_t v, Deadline d, const std::string& peer) const { send_all(&v, sizeof v, d, peer); }
    uint64_t recv_u64(Deadline d, const std::string& peer) const
    {
        uint64_t v = 0;
        recv_all(&v, sizeof v, d, peer);
        return v;
    }
    void send_string(const std::string& s, Deadline d, const std::string& peer) const;
    std::string recv_string(Deadline d, const std::string& peer, uint64_t max_bytes = uint64_t(1) << 40) const;

    void set_nonblocking(bool on) const;

private:
    int m_fd = -1;
};

// Milliseconds left until `deadline` for poll(), at least 0.
int poll_timeout_ms(Deadline deadline);

} // namespace crucible
