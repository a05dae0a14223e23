#include "kernels/net/rendezvous_store.h"

#include "kernels/error.h"

namespace crucible {

// Rank 0's side: a thread accepts connections, a thread per connection
// answers its requests. Requests are 'S' key value (set) and 'G' key (get,
// answered once the key is there).
class RendezvousServer {
public:
    explicit RendezvousServer(int port) : m_listener(TcpSocket::listen(port))
    {
        m_acceptor = std::thread([this] { accept_loop(); });
    }

    ~RendezvousServer()
    {
        {
            std::lock_guard lock(m_mutex);
            m_quit = true;
            for (auto& c : m_clients) c->shut_down();
        }
        m_changed.notify_all();
        m_listener.shut_down();
        m_acceptor.join();
        for (auto& t : m_threads) t.join();
    }

private:
    void accept_loop()
    {
        for (;;) {
            TcpSocket client;
            try {
                client = m_listener.accept(deadline_in(0.2));
            } catch (const Error&) {
                std::lock_guard lock(m_mutex);
                if (m_quit) return;
                continue;   // the poll's timeout: look at m_quit again
            }
            std::lock_guard lock(m_mutex);
            if (m_quit) return;
            m_clients.push_back(std::make_unique<TcpSocket>(std::move(client)));
            TcpSocket* c = m_clients.back().get();
            m_threads.emplace_back([this, c] { serve(*c); });
        }
    }

    void serve(const TcpSocket& c)
    {
        const std::string peer = "a rendezvous client";
        try {
            for (;;) {
                const Deadline forever = deadline_in(1e9);
                char op = 0;
                c.recv_all(&op, 1, forever, peer);
                const std::string key = c.recv_string(forever, peer, 4096);
                if (op == 'S') {
                    std::string value = c.recv_string(forever, peer);
                    std::lock_guard lock(m_mutex);
                    m_table[key] = std::move(value);
                    m_changed.notify_all();
                } else if (op == 'G') {
                    std::string value;
                    {
                        std::unique_lock lock(m_mutex);
                        m_changed.wait(lock, [&] { return m_quit || m_table.count(key) > 0; });
                        if (m_quit) return;
                        value = m_table[key];
                    }
                    c.send_string(value, forever, peer);
                } else {
                    return;   // not one of ours: drop it
                }
            }
        } catch (const Error&) {
            // The client left (its job is done, or it failed); nothing to answer.
        }
    }

    TcpSocket m_listener;
    std::thread m_acceptor;
    std::mutex m_mutex;
    std::condition_variable m_changed;
    bool m_quit = false;
    std::map<std::string, std::string> m_table;
    std::vector<std::unique_ptr<TcpSocket>> m_clients;
    std::vector<std::thread> m_threads;
};

RendezvousStore::RendezvousStore(const std::string& host, int port, int rank, double timeout_s)
    : m_where(host + ":" + std::to_string(port)), m_timeout_s(timeout_s)
{
    if (rank == 0) m_server = std::make_unique<RendezvousServer>(port);
    try {
        m_client = TcpSocket::connect(rank == 0 ? "127.0.0.1" : host, port, deadline_in(timeout_s));
    } catch (const Error& e) {
        throw Error("rank " + std::to_string(rank) + " could not reach the rendezvous of rank 0 at " + m_where +
                    " within " + std::to_string(int(timeout_s)) + " s (" + e.what() +
                    "): start rank 0 too, with the same MASTER_ADDR and MASTER_PORT, and check that this host can "
                    "reach it");
    }
}

RendezvousStore::~RendezvousStore()
{
    m_client.close();
    m_server.reset();
}

void RendezvousStore::set(const std::string& key, const std::string& value)
{
    std::lock_guard lock(m_mutex);
    const Deadline d = deadline_in(m_timeout_s);
    const std::string peer = "the rendezvous at " + m_where;
    const char op = 'S';
    m_client.send_all(&op, 1, d, peer);
    m_client.send_string(key, d, peer);
    m_client.send_string(value, d, peer);
}

std::string RendezvousStore::get(const std::string& key, const std::string& missing)
{
    std::lock_guard lock(m_mutex);
    const Deadline d = deadline_in(m_timeout_s);
    const std::string peer = "the rendezvous at " + m_where;
    const char op = 'G';
    m_client.send_all(&op, 1, d, peer);
    m_client.send_string(key, d, peer);
    try {
        return m_client.recv_string(d, peer);
    } catch (const Error& e) {
        const std::string why = e.what();
        if (why.rfind("timed out", 0) == 0)
            throw Error(missing + " within " + std::to_string(int(m_timeout_s)) + " s");
        throw Error("lost the rendezvous at " + m_where + " (" + why + "): rank 0 stopped or failed; see its output");
    }
}

} // namespace crucible
