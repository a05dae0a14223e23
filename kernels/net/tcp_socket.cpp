#include "kernels/net/tcp_socket.h"

#include "kernels/error.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>

namespace crucible {

using Clock = std::chrono::steady_clock;

Deadline deadline_in(double seconds)
{
    return Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

int poll_timeout_ms(Deadline deadline)
{
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    return int(std::clamp<int64_t>(left, 0, 1 << 30));
}

TcpSocket& TcpSocket::operator=(TcpSocket&& o) noexcept
{
    if (this != &o) {
        close();
        m_fd = o.m_fd;
        o.m_fd = -1;
    }
    return *this;
}

void TcpSocket::close()
{
    if (m_fd >= 0) ::close(m_fd);
    m_fd = -1;
}

void TcpSocket::shut_down()
{
    if (m_fd >= 0) ::shutdown(m_fd, SHUT_RDWR);
}

namespace {

void tune(int fd)
{
    const int one = 1;
    // Collectives send many small messages (host scalars) that must not wait
    // for Nagle's coalescing.
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

std::string errno_text() { return std::strerror(errno); }

} // namespace

TcpSocket TcpSocket::connect(const std::string& host, int port, Deadline deadline)
{
    addrinfo hints{};
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    const int gai = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found);
    if (gai != 0)
        throw Error("cannot resolve the address " + host + ": " + ::gai_strerror(gai) +
                    " (check MASTER_ADDR, or the host name of the rank-0 machine)");
    const sockaddr_in target = *reinterpret_cast<const sockaddr_in*>(found->ai_addr);
    ::freeaddrinfo(found);

    std::string last_error;
    for (;;) {
        const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) throw Error("cannot open a socket: " + errno_text());
        if (::connect(fd, reinterpret_cast<const sockaddr*>(&target), sizeof target) == 0) {
            // Dialling a free local port over and over, the kernel may pick
            // that very port as the source and connect the socket to itself
            // (TCP's simultaneous open): that is nobody listening, too.
            sockaddr_in self{};
            socklen_t len = sizeof self;
            ::getsockname(fd, reinterpret_cast<sockaddr*>(&self), &len);
            if (self.sin_port != target.sin_port || self.sin_addr.s_addr != target.sin_addr.s_addr) {
                tune(fd);
                return TcpSocket(fd);
            }
            errno = ECONNREFUSED;
        }
        last_error = errno_text();
        ::close(fd);
        if (Clock::now() >= deadline)
            throw Error("could not connect to " + host + ":" + std::to_string(port) + " (" + last_error + ")");
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
}

TcpSocket TcpSocket::listen(int port)
{
    TcpSocket s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!s.valid()) throw Error("cannot open a socket: " + errno_text());
    const int one = 1;
    ::setsockopt(s.fd(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_ANY);
    addr.sin_port = htons(uint16_t(port));
    if (::bind(s.fd(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0)
        throw Error("cannot listen on port " + std::to_string(port) + ": " + errno_text() +
                    (errno == EADDRINUSE ? " (another job uses it: choose another MASTER_PORT)" : ""));
    if (::listen(s.fd(), 128) != 0) throw Error("cannot listen on port " + std::to_string(port) + ": " + errno_text());
    return s;
}

TcpSocket TcpSocket::accept(Deadline deadline) const
{
    for (;;) {
        pollfd p{m_fd, POLLIN, 0};
        const int ready = ::poll(&p, 1, poll_timeout_ms(deadline));
        if (ready < 0 && errno == EINTR) continue;
        if (ready < 0) throw Error("waiting for a connection failed: " + errno_text());
        if (ready == 0) throw Error("timed out");
        const int fd = ::accept4(m_fd, nullptr, nullptr, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == ECONNABORTED) continue;
            throw Error("accepting a connection failed: " + errno_text());
        }
        tune(fd);
        return TcpSocket(fd);
    }
}

int TcpSocket::local_port() const
{
    sockaddr_in addr{};
    socklen_t len = sizeof addr;
    ::getsockname(m_fd, reinterpret_cast<sockaddr*>(&addr), &len);
    return ntohs(addr.sin_port);
}

std::string TcpSocket::local_address() const
{
    sockaddr_in addr{};
    socklen_t len = sizeof addr;
    ::getsockname(m_fd, reinterpret_cast<sockaddr*>(&addr), &len);
    char text[INET_ADDRSTRLEN] = {};
    ::inet_ntop(AF_INET, &addr.sin_addr, text, sizeof text);
    return text;
}

void TcpSocket::set_nonblocking(bool on) const
{
    const int flags = ::fcntl(m_fd, F_GETFL, 0);
    ::fcntl(m_fd, F_SETFL, on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK);
}

void TcpSocket::send_all(const void* data, size_t bytes, Deadline deadline, const std::string& peer) const
{
    const char* p = static_cast<const char*>(data);
    while (bytes > 0) {
        pollfd pf{m_fd, POLLOUT, 0};
        const int ready = ::poll(&pf, 1, poll_timeout_ms(deadline));
        if (ready < 0 && errno == EINTR) continue;
        if (ready == 0) throw Error("timed out sending to " + peer);
        const ssize_t n = ::send(m_fd, p, bytes, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
            throw Error("lost the connection to " + peer + " (" + errno_text() + ")");
        }
        p += n;
        bytes -= size_t(n);
    }
}

void TcpSocket::recv_all(void* data, size_t bytes, Deadline deadline, const std::string& peer) const
{
    char* p = static_cast<char*>(data);
    while (bytes > 0) {
        pollfd pf{m_fd, POLLIN, 0};
        const int ready = ::poll(&pf, 1, poll_timeout_ms(deadline));
        if (ready < 0 && errno == EINTR) continue;
        if (ready == 0) throw Error("timed out waiting for " + peer);
        const ssize_t n = ::recv(m_fd, p, bytes, MSG_DONTWAIT);
        if (n == 0) throw Error(peer + " closed the connection");
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
            throw Error("lost the connection to " + peer + " (" + errno_text() + ")");
        }
        p += n;
        bytes -= size_t(n);
    }
}

void TcpSocket::send_string(const std::string& s, Deadline d, const std::string& peer) const
{
    send_u64(s.size(), d, peer);
    send_all(s.data(), s.size(), d, peer);
}

std::string TcpSocket::recv_string(Deadline d, const std::string& peer, uint64_t max_bytes) const
{
    const uint64_t n = recv_u64(d, peer);
    if (n > max_bytes) throw Error(peer + " sent a malformed message (a " + std::to_string(n) + "-byte string)");
    std::string s(size_t(n), '\0');
    recv_all(s.data(), s.size(), d, peer);
    return s;
}

} // namespace crucible
