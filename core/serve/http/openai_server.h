// OpenAiServer: the HTTP face of a BatchEngine, on cpp-httplib (linked into
// crucible_serve_http, not crucible_core).
//
//   POST /v1/chat/completions, /v1/completions   OpenAI API, streamed (server-sent events) or not
//   GET  /v1/models, /v1/models/{id}             the one model served
//   GET  /health                                 200 {"status": "ok"} while it serves
//   GET  /metrics                                Prometheus text (core/serve/serve_metrics.h)
//
// Every request runs on its own thread of a pool, waiting on its job's
// stream while the engine's thread steps all jobs together. A bad request is
// answered with the OpenAI API's JSON error object, never an exception past
// the handler. A client that closes its connection, streaming or not, has
// its job cancelled within one token, which frees the slot.
#pragma once

#include "core/serve/batch_engine.h"
#include "core/serve/serve_metrics.h"
#include "core/serve/served_model.h"

#include <memory>
#include <string>

namespace crucible::serve {

struct ServerOptions {
    std::string host = "127.0.0.1";
    int port = 8080;          // 0: any free port (bind() says which)
    int http_threads = 128;   // connections served at once; more wait for a thread
};

class OpenAiServer {
public:
    OpenAiServer(const ServedModel& model, BatchEngine& engine, ServeMetrics& metrics, ServerOptions options);
    ~OpenAiServer();

    // Binds the listening socket; returns the port. Throws Error when the
    // address is taken or invalid.
    int bind();
    // Serves until stop() (from any thread; one that came first makes it
    // return at once). Returns false when the listening failed.
    bool listen();
    void stop();
    bool running() const;

private:
    struct Impl;
    std::unique_ptr<Impl> m_impl;
};

} // namespace crucible::serve
