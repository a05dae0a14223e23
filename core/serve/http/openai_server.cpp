#include "core/serve/http/openai_server.h"

#include "core/serve/http/client_connection.h"
#include "kernels/error.h"

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <ctime>
#include <mutex>
#include <random>
#include <thread>

namespace crucible::serve {

using nlohmann::json;

namespace {

// How often a waiting handler looks at its client's connection.
constexpr std::chrono::milliseconds kPoll{50};
// Request bodies beyond this are refused (413): a prompt longer than any
// context is far smaller.
constexpr size_t kMaxBody = 64u << 20;

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

void send_error(httplib::Response& res, const ApiError& e)
{
    res.status = e.status;
    res.set_content(dump(e.to_json()), "application/json");
}

std::string random_id(const char* prefix)
{
    static std::atomic<uint64_t> counter{0};
    thread_local std::mt19937_64 rng{std::random_device{}()};
    static const char digits[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    std::string id = prefix;
    uint64_t x = rng() ^ (counter.fetch_add(1) * 0x9E3779B97F4A7C15ull);
    for (int i = 0; i < 24; ++i) {
        id += digits[x % 62];
        x /= 62;
        if (x == 0) x = rng();
    }
    return id;
}

int64_t unix_now() { return int64_t(std::time(nullptr)); }

// The label /metrics counts a request under.
std::string endpoint_label(const std::string& path)
{
    if (path == "/v1/chat/completions") return "chat";
    if (path == "/v1/completions") return "completion";
    if (path.rfind("/v1/models", 0) == 0) return "models";
    if (path == "/health") return "health";
    if (path == "/metrics") return "metrics";
    return "other";
}

// What a streamed response needs across calls of its content provider.
struct StreamState {
    std::shared_ptr<JobStream> job;
    ResponseIds ids;
    bool include_usage = false;
    bool first = true;
    ClientConnection client;
};

} // namespace

struct OpenAiServer::Impl {
    const ServedModel& model;
    BatchEngine& engine;
    ServeMetrics& metrics;
    ServerOptions options;
    httplib::Server http;
    int64_t started = unix_now();
    std::mutex listening_mutex;   // orders listen() and stop()
    bool listening = false, stopped = false;

    Impl(const ServedModel& m, BatchEngine& e, ServeMetrics& mt, ServerOptions o)
        : model(m), engine(e), metrics(mt), options(std::move(o))
    {
    }
    void routes();
    void completion(const httplib::Request& req, httplib::Response& res, Endpoint endpoint);
};

void OpenAiServer::Impl::routes()
{
    const size_t threads = size_t(std::max(1, options.http_threads));
    http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
    http.set_payload_max_length(kMaxBody);
    http.set_tcp_nodelay(true);   // every streamed token leaves at once

    http.Post("/v1/chat/completions",
              [this](const httplib::Request& req, httplib::Response& res) { completion(req, res, Endpoint::chat); });
    http.Post("/v1/completions",
              [this](const httplib::Request& req, httplib::Response& res) { completion(req, res, Endpoint::completion); });
    http.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
        res.set_content(dump(model_list(model.name(), started)), "application/json");
    });
    http.Get("/v1/models/(.+)", [this](const httplib::Request& req, httplib::Response& res) {
        const std::string id = req.matches[1];
        if (id != model.name()) {
            ApiError e;
            e.status = 404;
            e.message = "The model '" + id + "' does not exist on this server; it serves '" + model.name() + "'";
            e.param = "model";
            e.code = "model_not_found";
            return send_error(res, e);
        }
        res.set_content(dump(model_object(model.name(), started)), "application/json");
    });
    http.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
        const auto load = engine.load();
        res.set_content(dump({{"status", "ok"},
                              {"model", model.name()},
                              {"slots", load.slot_count},
                              {"running", load.running},
                              {"waiting", load.waiting}}),
                        "application/json");
    });
    http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
        res.set_content(metrics.render(engine.load()), "text/plain; version=0.0.4; charset=utf-8");
    });

    // Unknown paths and methods, oversized bodies: the API's error object,
    // unless a handler already wrote one.
    http.set_error_handler(httplib::Server::HandlerWithResponse([](const httplib::Request& req, httplib::Response& res) {
        if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
        ApiError e;
        e.status = res.status;
        if (res.status == 404) {
            e.message = "Unknown request URL: " + req.method + " " + req.path +
                        ". This server answers POST /v1/chat/completions, POST /v1/completions, GET /v1/models, "
                        "GET /health and GET /metrics.";
            e.code = "unknown_url";
        } else if (res.status == 413) {
            e.message = "The request body is larger than " + std::to_string(kMaxBody >> 20) + " MiB.";
        } else {
            e.message = "The request could not be handled (HTTP " + std::to_string(res.status) + ").";
        }
        send_error(res, e);
        return httplib::Server::HandlerResponse::Handled;
    }));
    http.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
        ApiError e;
        e.status = 500;
        e.type = "server_error";
        try {
            std::rethrow_exception(ep);
        } catch (const std::exception& ex) {
            e.message = std::string("The server failed on this request: ") + ex.what();
        } catch (...) {
            e.message = "The server failed on this request.";
        }
        send_error(res, e);
    });
    http.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
        metrics.request(endpoint_label(req.path), res.status);
    });
}

void OpenAiServer::Impl::completion(const httplib::Request& req, httplib::Response& res, Endpoint endpoint)
{
    CompletionRequest request;
    std::shared_ptr<JobStream> job;
    try {
        request = parse_completion_request(req.body, endpoint);
        job = engine.submit(model.prepare(request));
    } catch (const ApiException& e) {
        return send_error(res, e.error());
    } catch (const Error& e) {
        // What prepare() lets through and the engine still refuses.
        return send_error(res, bad_request(e.what()));
    }

    ResponseIds ids;
    ids.endpoint = endpoint;
    ids.id = random_id(endpoint == Endpoint::chat ? "chatcmpl-" : "cmpl-");
    ids.created = unix_now();
    ids.model = model.name();

    if (!request.stream) {
        ClientConnection client(req.remote_addr, req.remote_port, req.local_port);
        std::string text;
        JobStream::Update u;
        for (;;) {
            u = job->next(kPoll);
            text += u.text;
            if (u.finished) break;
            if (client.gone()) {
                job->cancel();
                res.status = 499;   // client closed the request; nobody reads this
                return;
            }
        }
        if (u.stop_reason == "error" || u.stop_reason == "cancelled") {
            // Cancelled with the client still there: the server is stopping.
            ApiError e;
            e.status = u.stop_reason == "error" ? 500 : 503;
            e.type = "server_error";
            e.message = u.stop_reason == "error" ? "Generation failed: " + u.error
                                                 : std::string("The server is shutting down; try again later.");
            return send_error(res, e);
        }
        const Usage usage{job->prompt_tokens(), job->completion_tokens()};
        res.set_content(dump(completion_response(ids, text, finish_reason(u.stop_reason), usage)), "application/json");
        return;
    }

    auto state = std::make_shared<StreamState>(
        StreamState{job, ids, request.include_usage, true, ClientConnection(req.remote_addr, req.remote_port, req.local_port)});
    res.set_header("Cache-Control", "no-cache");
    res.set_header("X-Accel-Buffering", "no");
    res.set_chunked_content_provider(
        "text/event-stream",
        [state](size_t, httplib::DataSink& sink) {
            StreamState& s = *state;
            // A write that fails means the client is gone: its job ends.
            const auto send = [&](const json& data) {
                const std::string event = sse_event(data);
                if (sink.write(event.data(), event.size())) return true;
                s.job->cancel();
                return false;
            };
            if (s.first && s.ids.endpoint == Endpoint::chat) {
                // The role arrives first, as the OpenAI API sends it.
                if (!send(stream_chunk(s.ids, "", true, std::nullopt))) return false;
                s.first = false;
            }
            const JobStream::Update u = s.job->next(kPoll);
            if (!u.text.empty()) {
                if (!send(stream_chunk(s.ids, u.text, s.first, std::nullopt))) return false;
                s.first = false;
            } else if (!u.finished && s.client.gone()) {
                s.job->cancel();
                return false;
            }
            if (!u.finished) return true;
            if (u.stop_reason == "error") {
                ApiError e;
                e.status = 500;
                e.type = "server_error";
                e.message = "Generation failed: " + u.error;
                send(e.to_json());
            } else if (u.stop_reason != "cancelled") {
                send(stream_chunk(s.ids, "", s.first, finish_reason(u.stop_reason)));
                if (s.include_usage) send(usage_chunk(s.ids, Usage{s.job->prompt_tokens(), s.job->completion_tokens()}));
            }
            const std::string done = sse_done();
            sink.write(done.data(), done.size());
            sink.done();
            return true;
        },
        [state](bool success) {
            // The connection failed or the server is stopping: the job ends too.
            if (!success) state->job->cancel();
        });
}

OpenAiServer::OpenAiServer(const ServedModel& model, BatchEngine& engine, ServeMetrics& metrics, ServerOptions options)
    : m_impl(std::make_unique<Impl>(model, engine, metrics, std::move(options)))
{
    m_impl->routes();
}

OpenAiServer::~OpenAiServer() { stop(); }

int OpenAiServer::bind()
{
    const ServerOptions& o = m_impl->options;
    if (o.port < 0 || o.port > 65535) throw Error("--port must be between 0 and 65535, got " + std::to_string(o.port));
    if (o.port == 0) {
        const int port = m_impl->http.bind_to_any_port(o.host);
        if (port < 0) throw Error("cannot listen on " + o.host + ": is the address one of this machine's?");
        return port;
    }
    if (!m_impl->http.bind_to_port(o.host, o.port))
        throw Error("cannot listen on " + o.host + ":" + std::to_string(o.port) +
                    ": the port is taken (pick another with --port, or 0 for any free one) or the address is not "
                    "this machine's");
    return o.port;
}

bool OpenAiServer::listen()
{
    {
        std::lock_guard lock(m_impl->listening_mutex);
        if (m_impl->stopped) return true;
        m_impl->listening = true;
    }
    return m_impl->http.listen_after_bind();
}

void OpenAiServer::stop()
{
    std::lock_guard lock(m_impl->listening_mutex);
    if (m_impl->stopped) return;
    m_impl->stopped = true;
    if (!m_impl->listening) return;
    // listen() may not have entered cpp-httplib's loop yet, and stop() only
    // ends a running one: give it a moment to start.
    for (int i = 0; i < 2000 && !m_impl->http.is_running(); ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    if (m_impl->http.is_running()) m_impl->http.stop();
}

bool OpenAiServer::running() const { return m_impl->http.is_running(); }

} // namespace crucible::serve
