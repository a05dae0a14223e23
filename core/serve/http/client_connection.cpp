#include "core/serve/http/client_connection.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <cstdlib>
#include <cstring>

namespace crucible::serve {

namespace {

// The numeric address and port of a socket address (IPv4 or IPv6).
bool address_of(const sockaddr_storage& a, std::string& host, int& port)
{
    char buf[INET6_ADDRSTRLEN] = {};
    if (a.ss_family == AF_INET) {
        const auto* in = reinterpret_cast<const sockaddr_in*>(&a);
        if (!inet_ntop(AF_INET, &in->sin_addr, buf, sizeof buf)) return false;
        port = ntohs(in->sin_port);
    } else if (a.ss_family == AF_INET6) {
        const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&a);
        if (!inet_ntop(AF_INET6, &in6->sin6_addr, buf, sizeof buf)) return false;
        port = ntohs(in6->sin6_port);
    } else {
        return false;
    }
    host = buf;
    return true;
}

} // namespace

ClientConnection::ClientConnection(const std::string& remote_addr, int remote_port, int local_port)
{
    DIR* dir = opendir("/proc/self/fd");
    if (!dir) return;
    while (const dirent* e = readdir(dir)) {
        char* end = nullptr;
        const long fd = std::strtol(e->d_name, &end, 10);
        if (end == e->d_name || *end != '\0' || fd == dirfd(dir)) continue;
        sockaddr_storage peer{}, local{};
        socklen_t peer_len = sizeof peer, local_len = sizeof local;
        if (getpeername(int(fd), reinterpret_cast<sockaddr*>(&peer), &peer_len) != 0) continue;
        if (getsockname(int(fd), reinterpret_cast<sockaddr*>(&local), &local_len) != 0) continue;
        std::string peer_host, local_host;
        int peer_port = -1, port = -1;
        if (!address_of(peer, peer_host, peer_port) || !address_of(local, local_host, port)) continue;
        if (peer_port == remote_port && port == local_port && peer_host == remote_addr) {
            m_fd = int(fd);
            break;
        }
    }
    closedir(dir);
}

bool ClientConnection::gone() const
{
    if (m_fd < 0) return false;
    pollfd p{};
    p.fd = m_fd;
    p.events = POLLRDHUP;
    if (poll(&p, 1, 0) <= 0) return false;
    return (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) != 0;
}

} // namespace crucible::serve
