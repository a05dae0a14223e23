// ClientConnection: notices that the client of a request has gone.
//
// cpp-httplib hands a handler the request but not its socket, and only a
// failed write would tell that the peer closed it. A handler that waits for
// a long generation (or between streamed tokens) must notice sooner, so the
// job is cancelled and its slot freed: the socket is found among the
// process's descriptors by its two endpoints, which identify a live TCP
// connection, and polled for the peer's hang-up. The socket stays open for
// as long as the handler (or its content provider) runs, so the descriptor
// cannot change owner while it is watched.
#pragma once

#include <string>

namespace crucible::serve {

class ClientConnection {
public:
    // The connection from remote_addr:remote_port to our local_port.
    ClientConnection(const std::string& remote_addr, int remote_port, int local_port);

    // True once the peer has closed or reset the connection. False when the
    // socket could not be identified (nothing is cancelled then; a failed
    // write still ends a stream).
    bool gone() const;
    bool found() const { return m_fd >= 0; }

private:
    int m_fd = -1;
};

} // namespace crucible::serve
