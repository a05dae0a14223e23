// crucible-cli bench serve: N concurrent streaming clients against the
// OpenAI-compatible server, in one process over loopback HTTP, beside
// `bench generate` at batch N on the same model.
//
// Each client sends --requests completions one after another (greedy, a
// prompt of --prompt-tokens ids from the held-out tail of the embedded
// corpus, --new-tokens generated with EOS ignored so every request runs to
// its length) and reads the server-sent events as they come. Reported:
//   aggregate tok/s   all generated tokens over the wall time of the round
//   TTFT p50 / p99    from sending a request to its first streamed token
//   generate tok/s    the same work without the server: `bench generate` at
//                     batch N, end to end (batch × new tokens over its
//                     prefill and decode time)
//   overhead          1 − aggregate / generate tok/s: HTTP, streaming,
//                     scheduling, and requests not perfectly aligned
// (A per-request decode rate seen by a client would flatter the server: the
// first chunk it reads may already carry several tokens.)
#include "app/cli/commands.h"
#include "core/serve/http/openai_server.h"

#include "core/bench/bench_table.h"
#include "core/bench/generate_bench.h"
#include "core/data/corpus.h"
#include "core/train/load_model.h"
#include "kernels/error.h"

#include <fmt/core.h>
#include <httplib.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <mutex>
#include <thread>

namespace crucible::cli {

namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

struct ServeBenchCommand {
    std::string run, device = "cpu";
    std::vector<int> clients{1, 8};
    int prompt_tokens = 32, new_tokens = 128, requests = 2, threads = 0, repeats = 3;
    bool no_generate = false, json = false;
};

struct RequestTiming {
    double ttft = NAN, seconds = NAN;
    int64_t tokens = 0;
    std::string error;
};

double seconds_between(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

double percentile(std::vector<double> v, double p)
{
    if (v.empty()) return NAN;
    std::sort(v.begin(), v.end());
    const double rank = p * double(v.size() - 1);
    const size_t lo = size_t(std::floor(rank)), hi = size_t(std::ceil(rank));
    return v[lo] + (v[hi] - v[lo]) * (rank - double(lo));
}

// One streamed completion; the tokens come from the usage chunk.
RequestTiming stream_completion(int port, const std::string& model, const std::vector<int32_t>& prompt, int new_tokens)
{
    RequestTiming t;
    httplib::Client client("127.0.0.1", port);
    client.set_read_timeout(600, 0);
    const json body = {{"model", model},
                       {"prompt", prompt},
                       {"max_tokens", new_tokens},
                       {"temperature", 0},
                       {"ignore_eos", true},
                       {"stream", true},
                       {"stream_options", {{"include_usage", true}}}};
    httplib::Request req;
    req.method = "POST";
    req.path = "/v1/completions";
    req.body = body.dump();
    req.set_header("Content-Type", "application/json");
    std::string buffer;
    Clock::time_point first{};
    bool seen_first = false;
    req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
        buffer.append(data, n);
        for (size_t end; (end = buffer.find("\n\n")) != std::string::npos; buffer.erase(0, end + 2)) {
            const std::string event = buffer.substr(0, end);
            if (event.rfind("data: ", 0) != 0 || event == "data: [DONE]") continue;
            const json j = json::parse(event.substr(6), nullptr, false);
            if (j.is_discarded()) continue;
            if (j.contains("error")) t.error = j["error"].value("message", "error");
            if (!seen_first && j.contains("choices") && !j["choices"].empty() &&
                !j["choices"][0].value("text", "").empty()) {
                seen_first = true;
                first = Clock::now();
            }
            if (j.contains("usage") && j["usage"].is_object()) t.tokens = j["usage"].value("completion_tokens", 0);
        }
        return true;
    };
    const auto t0 = Clock::now();
    const auto result = client.send(req);
    const auto t1 = Clock::now();
    if (!result) t.error = "the request failed: " + httplib::to_string(result.error());
    else if (result->status != 200) t.error = "HTTP " + std::to_string(result->status) + ": " + result->body;
    t.seconds = seconds_between(t0, t1);
    if (seen_first) t.ttft = seconds_between(t0, first);
    return t;
}

int run_serve_bench(const ServeBenchCommand& c)
{
    BackendOptions bo;
    if (c.device == "cuda") bo.device = DeviceKind::cuda;
    else if (c.device != "cpu") throw Error("--device must be cpu or cuda");
    bo.threads = c.threads;
    if (c.clients.empty()) throw Error("give at least one --clients count");
    for (int n : c.clients)
        if (n < 1) throw Error("--clients must be at least 1");
    if (c.requests < 1 || c.prompt_tokens < 1 || c.new_tokens < 2)
        throw Error("--requests and --prompt-tokens must be at least 1, --new-tokens at least 2");

    LoadedModel m = load_model(c.run, bo);
    const int context = m.config.seq_len;
    if (c.prompt_tokens + c.new_tokens > context)
        throw Error(fmt::format("a prompt of {} and {} new tokens do not fit the model's context of {}", c.prompt_tokens,
                                c.new_tokens, context));
    const int slots = *std::max_element(c.clients.begin(), c.clients.end());

    // Prompts: windows of the held-out tail of the embedded corpus.
    const Corpus corpus = Corpus::embedded_default();
    const std::string& text = corpus.documents().front().text;
    const std::vector<int32_t> tail = m.tokenizer.encode(text.substr(text.size() - text.size() / 10));
    if (tail.size() < size_t(c.prompt_tokens) * 2) throw Error("the embedded corpus is too short for these prompts");
    auto prompt_for = [&](size_t i) {
        const size_t start = (i * 97) % (tail.size() - size_t(c.prompt_tokens));
        return std::vector<int32_t>(tail.begin() + std::ptrdiff_t(start),
                                    tail.begin() + std::ptrdiff_t(start + size_t(c.prompt_tokens)));
    };

    BenchTable table;
    table.name = "bench serve";
    table.device = m.backend->name();
    table.columns = {{"aggregate_tokens_per_s", "aggregate tok/s", 1}, {"ttft_p50_ms", "TTFT p50 ms", 1},
                     {"ttft_p99_ms", "TTFT p99 ms", 1},                  {"generate_tokens_per_s", "generate tok/s", 1},
                     {"overhead_percent", "overhead %", 1}};
    json all = json::array();
    {
        serve::ServedModel model("bench", m.tokenizer, context, m.tokenizer_config);
        serve::ServeMetrics metrics;
        serve::BatchEngine engine(*m.params, m.tokenizer, slots, context, &metrics);
        serve::ServerOptions so;
        so.port = 0;
        so.http_threads = std::max(16, 2 * slots);
        serve::OpenAiServer server(model, engine, metrics, so);
        const int port = server.bind();
        std::thread listener([&] { server.listen(); });

        // Warm-up: the first steps of each shape allocate and, on a GPU, capture graphs.
        for (int n : c.clients) {
            std::vector<std::thread> warm;
            for (int i = 0; i < n; ++i)
                warm.emplace_back([&, i] { stream_completion(port, "bench", prompt_for(size_t(i)), 8); });
            for (auto& t : warm) t.join();
        }

        for (int n : c.clients) {
            std::vector<RequestTiming> timings(size_t(n) * size_t(c.requests));
            const auto t0 = Clock::now();
            std::vector<std::thread> clients;
            for (int i = 0; i < n; ++i)
                clients.emplace_back([&, i] {
                    for (int r = 0; r < c.requests; ++r) {
                        const size_t k = size_t(i) * size_t(c.requests) + size_t(r);
                        timings[k] = stream_completion(port, "bench", prompt_for(k + 1000), c.new_tokens);
                    }
                });
            for (auto& t : clients) t.join();
            const double wall = seconds_between(t0, Clock::now());
            int64_t tokens = 0;
            std::vector<double> ttft;
            for (const auto& t : timings) {
                if (!t.error.empty()) throw Error("bench serve: a request failed: " + t.error);
                tokens += t.tokens;
                ttft.push_back(t.ttft * 1e3);
            }
            table.rows.push_back({fmt::format("{} client{}", n, n > 1 ? "s" : ""),
                                  {double(tokens) / wall, percentile(ttft, 0.5), percentile(ttft, 0.99), NAN, NAN}});
            all.push_back({{"clients", n},
                           {"requests", timings.size()},
                           {"aggregate_tokens_per_s", double(tokens) / wall},
                           {"ttft_p50_ms", percentile(ttft, 0.5)},
                           {"ttft_p99_ms", percentile(ttft, 0.99)}});
        }
        engine.stop();
        server.stop();
        listener.join();
    }

    // The same model without the server, at each batch, in the same process.
    if (!c.no_generate) {
        for (size_t i = 0; i < c.clients.size(); ++i) {
            GenerateBenchOptions o;
            o.prompt_tokens = c.prompt_tokens;
            o.lengths = {c.new_tokens};
            o.batch = c.clients[i];
            o.repeats = c.repeats;
            o.recompute = false;
            o.prompt_text = tail;
            const GenerateBenchResult r = run_generate_bench(*m.params, nullptr, o);
            // End to end: the prompts' prefill, then (L − 1)·batch tokens at the decode rate.
            const double batch = double(o.batch);
            const double seconds = batch * double(o.prompt_tokens) / r.prefill_tokens_per_s +
                                   batch * double(c.new_tokens - 1) / r.points.back().kv_tokens_per_s;
            const double generate = batch * double(c.new_tokens) / seconds;
            auto& row = table.rows[i].values;
            row[3] = generate;
            row[4] = 100.0 * (1.0 - row[0] / generate);
            all[i]["generate_tokens_per_s"] = generate;
            all[i]["overhead_percent"] = row[4];
        }
    }
    table.notes = {fmt::format("greedy, prompt {} tokens, {} new tokens per request (EOS ignored), {} request{} per "
                               "client in a row, streamed over loopback HTTP",
                               c.prompt_tokens, c.new_tokens, c.requests, c.requests > 1 ? "s" : ""),
                   "generate tok/s: bench generate at batch = clients without the server, end to end (prefill "
                   "and decode, medians of " +
                       std::to_string(c.repeats) + " runs); overhead = 1 - aggregate / generate"};
    if (c.json) fmt::print("{}\n", all.dump(2));
    else fmt::print("{}", table.to_text());
    return 0;
}

} // namespace

void add_bench_serve_command(CLI::App& bench, int& exit_code)
{
    auto c = std::make_shared<ServeBenchCommand>();
    auto* cmd = bench.add_subcommand("serve", "Concurrent streaming clients against the OpenAI-compatible server");
    cmd->add_option("--run", c->run, "Run directory or checkpoint folder")->required();
    cmd->add_option("--clients", c->clients, "Concurrent clients (repeatable)")->capture_default_str();
    cmd->add_option("--requests", c->requests, "Requests each client sends, one after another")->capture_default_str();
    cmd->add_option("--prompt-tokens", c->prompt_tokens, "Prompt length")->capture_default_str();
    cmd->add_option("--new-tokens", c->new_tokens, "Tokens generated per request")->capture_default_str();
    cmd->add_option("--repeats", c->repeats, "bench generate runs per batch (median)")->capture_default_str();
    cmd->add_flag("--no-generate", c->no_generate, "Skip the bench generate comparison");
    cmd->add_option("--device", c->device, "cpu or cuda")->capture_default_str();
    cmd->add_option("--threads", c->threads, "CPU threads (0 = all cores)");
    cmd->add_flag("--json", c->json, "Print JSON instead of a table");
    cmd->callback([c, &exit_code] {
        try {
            exit_code = run_serve_bench(*c);
        } catch (const std::exception& e) {
            exit_code = report_error(e);
        }
    });
}

} // namespace crucible::cli
