// RendezvousStore: how the processes of one training job find each other.
//
// Rank 0 listens on the launcher's rendezvous address (MASTER_ADDR and
// MASTER_PORT) and keeps a small key → bytes table; every rank, rank 0
// included, connects to it as a client. A rank publishes what the others
// need (its own listening address, NCCL's unique id) with set() and reads
// theirs with get(), which waits until the key is there.
//
// Each wait has a deadline: a rank that cannot reach rank 0, or a key that a
// peer never publishes (it was not started, or started with another world
// size or port), ends with a message that names the address and the rank
// instead of a hang.
#pragma once

#include "kernels/net/tcp_socket.h"

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace crucible {

class RendezvousServer;

class RendezvousStore {
public:
    // Rank 0 serves the table on `port` (of every interface) and connects to
    // it; the others connect to host:port, retrying until `timeout_s`.
    RendezvousStore(const std::string& host, int port, int rank, double timeout_s);
    ~RendezvousStore();
    RendezvousStore(const RendezvousStore&) = delete;
    RendezvousStore& operator=(const RendezvousStore&) = delete;

    void set(const std::string& key, const std::string& value);
    // Waits for `key` until the store's timeout; on timeout throws Error
    // with `missing` (what the absence means and what to check).
    std::string get(const std::string& key, const std::string& missing);

    // The address of this host on the interface that reaches rank 0: what
    // peers connect to.
    std::string own_address() const { return m_client.local_address(); }
    double timeout_s() const { return m_timeout_s; }

private:
    std::unique_ptr<RendezvousServer> m_server;   // rank 0 only; outlives the client
    TcpSocket m_client;
    std::string m_where;
    double m_timeout_s;
    std::mutex m_mutex;   // one request at a time on the connection
};

} // namespace crucible
