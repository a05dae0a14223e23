// A plain HTTP/1.1 client on POSIX sockets for the server tests: each
// request on its own connection (Connection: close), chunked bodies decoded,
// streamed bodies handed over as they arrive, and a way to drop the
// connection mid-response as a client that goes away does.
#pragma once

#include <functional>
#include <string>

namespace crucible::test {

struct HttpResponse {
    int status = 0;              // 0: no response (connection failed or dropped)
    std::string headers;         // the raw header block
    std::string body;            // de-chunked
    std::string error;
};

// on_body (optional) receives the body's bytes as they arrive (de-chunked);
// returning false closes the connection at once. timeout_ms bounds every read.
HttpResponse http_request(int port, const std::string& method, const std::string& path, const std::string& body = {},
                          const std::function<bool(const std::string&)>& on_body = {}, int timeout_ms = 60000);

// Sends raw bytes and returns whatever comes back before the peer closes.
std::string http_raw(int port, const std::string& bytes, int timeout_ms = 10000);

} // namespace crucible::test
