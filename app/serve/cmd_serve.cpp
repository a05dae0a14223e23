// crucible-cli serve: an OpenAI-compatible HTTP server for one run.
//
// Any OpenAI client talks to it with base URL http://HOST:PORT/v1 and the
// model name it prints (GET /v1/models). Concurrent requests share the
// model's decode steps (continuous batching over --parallel KV-cache slots);
// requests beyond that wait for a slot. Ctrl-C or SIGTERM ends the running
// generations and stops.
#include "app/cli/commands.h"
#include "core/serve/http/openai_server.h"

#include "core/train/load_model.h"
#include "kernels/error.h"

#include <fmt/core.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <memory>
#include <thread>

namespace crucible::cli {

namespace {

struct ServeCommand {
    std::string run, name, host = "127.0.0.1", device = "cpu";
    int port = 8080, parallel = 8, context = 0, threads = 0, http_threads = 128;
};

// The model's id in the API: the run directory's name.
std::string default_name(const LoadedModel& m, const std::string& run)
{
    std::filesystem::path root = m.run_root.empty() ? std::filesystem::path(run) : m.run_root;
    if (root.filename().empty()) root = root.parent_path();
    const std::string name = root.filename().string();
    return name.empty() ? "crucible" : name;
}

int run_serve(const ServeCommand& c)
{
    BackendOptions bo;
    if (c.device == "cuda") bo.device = DeviceKind::cuda;
    else if (c.device != "cpu") throw Error("--device must be cpu or cuda");
    bo.threads = c.threads;
    if (c.parallel < 1) throw Error("--parallel must be at least 1");

    // SIGINT and SIGTERM go to one thread that stops the server; every thread
    // started from here on inherits the blocked mask.
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);

    LoadedModel m = load_model(c.run, bo);
    const int context = c.context > 0 ? c.context : m.config.seq_len;
    if (context > m.config.seq_len)
        throw Error(fmt::format("--context {} is longer than the model's {} tokens", context, m.config.seq_len));
    serve::ServedModel model(c.name.empty() ? default_name(m, c.run) : c.name, m.tokenizer, context, m.tokenizer_config);
    if (!model.template_note().empty()) fmt::print(stderr, "note: {}\n", model.template_note());
    serve::ServeMetrics metrics;
    serve::BatchEngine engine(*m.params, m.tokenizer, c.parallel, context, &metrics);
    serve::ServerOptions so;
    so.host = c.host;
    so.port = c.port;
    so.http_threads = c.http_threads;
    serve::OpenAiServer server(model, engine, metrics, so);
    const int port = server.bind();

    std::atomic<bool> finished{false};
    std::thread watcher([&] {
        const timespec tick{0, 200'000'000};
        while (!finished.load()) {
            if (sigtimedwait(&signals, nullptr, &tick) > 0) {
                fmt::print(stderr, "stopping: the running generations end now\n");
                engine.stop();   // waiting handlers see their jobs end and return
                server.stop();
                return;
            }
        }
    });

    const auto load = engine.load();
    fmt::print("Serving {} at http://{}:{}/v1 (OpenAI API; also /health and /metrics)\n", model.name(),
               c.host.find(':') != std::string::npos ? "[" + c.host + "]" : c.host, port);
    fmt::print("  {} slots of {} tokens ({:.1f} MiB of KV cache), chat format: {}, device: {}\n", load.slot_count, context,
               double(load.cache_bytes) / (1 << 20), model.chat_format(), m.backend->name());
    std::fflush(stdout);
    const bool ok = server.listen();
    finished = true;
    watcher.join();
    engine.stop();
    if (!ok) throw Error("the server stopped listening unexpectedly");
    return 0;
}

} // namespace

void add_serve_command(CLI::App& app, int& exit_code)
{
    auto c = std::make_shared<ServeCommand>();
    auto* cmd = app.add_subcommand("serve", "Serve a run over the OpenAI API (chat and text completions, streaming)");
    cmd->add_option("--run", c->run, "Run directory or checkpoint folder")->required();
    cmd->add_option("--port", c->port, "TCP port (0: any free port, printed at start)")->capture_default_str();
    cmd->add_option("--host", c->host, "Address to listen on (0.0.0.0: every interface)")->capture_default_str();
    cmd->add_option("--name", c->name, "The model's id in the API (default: the run directory's name)");
    cmd->add_option("--parallel", c->parallel, "Requests generated together in one batch (KV-cache slots)")
        ->capture_default_str();
    cmd->add_option("--context", c->context, "Tokens per request, prompt and reply (default: the model's context)");
    cmd->add_option("--device", c->device, "cpu or cuda")->capture_default_str();
    cmd->add_option("--threads", c->threads, "CPU threads for the model (0 = all cores)");
    cmd->add_option("--http-threads", c->http_threads, "Connections handled at once")->capture_default_str();
    cmd->footer("Example:\n  crucible-cli serve --run runs/nano --port 8080\n"
                "  curl http://127.0.0.1:8080/v1/completions -H 'Content-Type: application/json' \\\n"
                "       -d '{\"model\": \"nano\", \"prompt\": \"ROMEO:\", \"max_tokens\": 40}'");
    cmd->callback([c, &exit_code] {
        try {
            exit_code = run_serve(*c);
        } catch (const std::exception& e) {
            exit_code = report_error(e);
        }
    });
}

} // namespace crucible::cli
