#include "tests/support/http_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

namespace crucible::test {

namespace {

int connect_local(int port)
{
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(uint16_t(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        close(fd);
        return -1;
    }
    const int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

bool send_all(int fd, const std::string& data)
{
    size_t sent = 0;
    while (sent < data.size()) {
        const ssize_t n = send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
        if (n <= 0) return false;
        sent += size_t(n);
    }
    return true;
}

// Reads what is there (waiting up to timeout_ms); 0 at the peer's end, < 0 on
// a timeout or an error.
ssize_t read_some(int fd, std::string& into, int timeout_ms)
{
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) <= 0) return -1;
    char buf[16384];
    const ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n > 0) into.append(buf, size_t(n));
    return n;
}

// Decodes as much of a chunked body as `raw` holds, appending to `out`;
// returns true at the last chunk.
bool dechunk(std::string& raw, std::string& out)
{
    for (;;) {
        const size_t eol = raw.find("\r\n");
        if (eol == std::string::npos) return false;
        const size_t size = std::stoul(raw.substr(0, eol), nullptr, 16);
        if (size == 0) return true;
        if (raw.size() < eol + 2 + size + 2) return false;
        out.append(raw, eol + 2, size);
        raw.erase(0, eol + 2 + size + 2);
    }
}

} // namespace

HttpResponse http_request(int port, const std::string& method, const std::string& path, const std::string& body,
                          const std::function<bool(const std::string&)>& on_body, int timeout_ms)
{
    HttpResponse r;
    const int fd = connect_local(port);
    if (fd < 0) {
        r.error = "cannot connect";
        return r;
    }
    std::string request = method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n";
    if (!body.empty() || method == "POST")
        request += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
    request += "\r\n" + body;
    if (!send_all(fd, request)) {
        close(fd);
        r.error = "cannot send";
        return r;
    }
    std::string raw;
    size_t header_end = std::string::npos;
    while ((header_end = raw.find("\r\n\r\n")) == std::string::npos)
        if (read_some(fd, raw, timeout_ms) <= 0) {
            close(fd);
            r.error = "no response headers";
            return r;
        }
    r.headers = raw.substr(0, header_end);
    raw.erase(0, header_end + 4);
    if (r.headers.size() > 12) r.status = std::atoi(r.headers.c_str() + 9);
    std::string lower = r.headers;
    for (char& c : lower) c = char(std::tolower(static_cast<unsigned char>(c)));
    const bool chunked = lower.find("transfer-encoding: chunked") != std::string::npos;
    size_t length = std::string::npos;
    if (const size_t at = lower.find("content-length:"); at != std::string::npos)
        length = std::stoul(lower.substr(at + 15));

    for (;;) {
        std::string fresh;
        bool complete = false;
        if (chunked) complete = dechunk(raw, fresh);
        else {
            fresh = std::move(raw);
            raw.clear();
        }
        r.body += fresh;
        if (!fresh.empty() && on_body && !on_body(fresh)) break;   // the client walks away
        if (complete || (!chunked && length != std::string::npos && r.body.size() >= length)) break;
        const ssize_t n = read_some(fd, raw, timeout_ms);
        if (n == 0) break;   // the server closed: the body ends here
        if (n < 0) {
            r.error = "read timed out";
            break;
        }
    }
    close(fd);
    return r;
}

std::string http_raw(int port, const std::string& bytes, int timeout_ms)
{
    const int fd = connect_local(port);
    if (fd < 0) return {};
    send_all(fd, bytes);
    std::string out;
    while (read_some(fd, out, timeout_ms) > 0) {
    }
    close(fd);
    return out;
}

} // namespace crucible::test
