// `crucible-cli serve` over real sockets: an imported chat model (Zephyr
// template) served on a free port, driven with plain HTTP and with the
// official `openai` npm client.
//
// Plain HTTP: /health, /v1/models, /metrics; bad JSON, an unknown model, a
// prompt longer than the context, unknown paths, bytes that are not HTTP and
// a few hundred mangled requests all get a 4xx JSON error (or an answer) and
// the server keeps serving; a streamed reply
// (server-sent events, ending in [DONE]) spells what the same request
// returns whole; 100 requests at once all succeed, with the answers the
// same requests get one at a time, and the model stepped over several of
// them together; a client that drops its connection, streaming or not, has
// its generation cancelled and its slot freed. SIGTERM ends the server
// cleanly. The openai client (installed by tests/npm/install_clients.sh;
// skipped when it cannot be) lists the model, chats and completes streamed
// and not, and reads our errors as API errors with their status.
#include "core/io/file_util.h"
#include "core/train/hf_import.h"
#include "tests/support/http_client.h"
#include "tests/support/test_support.h"
#include "tests/support/tiny_hf_model.h"

#include <QProcess>
#include <QRegularExpression>
#include <QTemporaryDir>
#include <QTest>

#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <random>
#include <thread>

namespace fs = std::filesystem;
using namespace crucible;
using nlohmann::json;

// QCOMPARE for JSON values, which QTest cannot print.
#define QCOMPARE_JSON(a, b) QVERIFY2((a) == (b), ((a).dump() + " != " + (b).dump()).c_str())

namespace {

const char* kZephyr =
    "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + "
    "eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n{% "
    "elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif "
    "%}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}";
// Long enough that a reply filling it takes far longer than the server needs
// to notice a client that left (disconnectFreesTheSlot).
constexpr int kContext = 4096;

// The JSON objects of a server-sent event stream, and whether it ended in [DONE].
struct Events {
    std::vector<json> data;
    bool done = false;
};

Events parse_events(const std::string& body)
{
    Events e;
    size_t at = 0;
    for (size_t end; (end = body.find("\n\n", at)) != std::string::npos; at = end + 2) {
        const std::string event = body.substr(at, end - at);
        if (event.rfind("data: ", 0) != 0) continue;
        if (event == "data: [DONE]") e.done = true;
        else e.data.push_back(json::parse(event.substr(6)));
    }
    return e;
}

// A metric's value in Prometheus text; NaN when absent.
double metric(const std::string& text, const std::string& name)
{
    const size_t at = text.find("\n" + name + " ");
    if (at == std::string::npos) return NAN;
    return std::stod(text.substr(at + name.size() + 2));
}

} // namespace

class TestServeHttp : public QObject {
    Q_OBJECT

private:
    QTemporaryDir m_tmp;
    QProcess m_server;
    int m_port = 0;
    const std::string m_model = "tiny-chat";

    json post(const std::string& path, const json& body, int* status = nullptr)
    {
        const auto r = test::http_request(m_port, "POST", path, body.dump());
        if (status) *status = r.status;
        return json::parse(r.body, nullptr, false);
    }
    std::string metrics() { return test::http_request(m_port, "GET", "/metrics").body; }
    // Waits until no generation runs; returns the metrics then.
    std::string idle_metrics()
    {
        std::string m;
        for (int i = 0; i < 200; ++i) {
            m = metrics();
            if (metric(m, "crucible_requests_running") == 0 && metric(m, "crucible_requests_waiting") == 0) break;
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        return m;
    }
    void checkError(const test::HttpResponse& r, int status, const std::string& code = {})
    {
        QCOMPARE(r.status, status);
        QVERIFY2(r.headers.find("application/json") != std::string::npos, r.headers.c_str());
        const json j = json::parse(r.body, nullptr, false);
        QVERIFY2(j.contains("error") && j["error"]["message"].is_string(), r.body.c_str());
        if (!code.empty()) QCOMPARE(j["error"]["code"].get<std::string>(), code);
    }

private slots:
    void initTestCase()
    {
#ifndef CRUCIBLE_HAS_SERVER
        QSKIP("built without cpp-httplib: crucible-cli has no serve command");
#endif
        const fs::path root = m_tmp.path().toStdString();
        test::TinyHfModel spec;
        spec.context = kContext;
        test::write_tiny_hf_model(root / "hf", spec);
        write_file_atomic(root / "hf" / "tokenizer_config.json",
                          json{{"chat_template", kZephyr}, {"bos_token", "<s>"}, {"eos_token", "</s>"}}.dump());
        import_hf_model(root / "hf", root / m_model, RunConfig{});

        m_server.setProcessChannelMode(QProcess::SeparateChannels);
        m_server.start(QString::fromStdString((test::binary_dir() / "bin" / "crucible-cli").string()),
                       {"serve", "--run", QString::fromStdString((root / m_model).string()), "--port", "0",
                        "--parallel", "8", "--threads", "2"});
        QVERIFY(m_server.waitForStarted());
        const QRegularExpression url("http://127\\.0\\.0\\.1:(\\d+)/v1");
        QString out;
        while (!m_port && m_server.waitForReadyRead(60000)) {
            out += QString::fromUtf8(m_server.readAllStandardOutput());
            const auto m = url.match(out);
            if (m.hasMatch()) m_port = m.captured(1).toInt();
        }
        QVERIFY2(m_port > 0, qPrintable(out + m_server.readAllStandardError()));
        QVERIFY(out.contains("Zephyr"));
    }

    void healthAndModels()
    {
        auto r = test::http_request(m_port, "GET", "/health");
        QCOMPARE(r.status, 200);
        QCOMPARE(json::parse(r.body)["status"].get<std::string>(), std::string("ok"));
        r = test::http_request(m_port, "GET", "/v1/models");
        QCOMPARE(r.status, 200);
        QCOMPARE(json::parse(r.body)["data"][0]["id"].get<std::string>(), m_model);
        QCOMPARE(test::http_request(m_port, "GET", "/v1/models/" + m_model).status, 200);
        checkError(test::http_request(m_port, "GET", "/v1/models/other"), 404, "model_not_found");
    }

    void badRequestsGetJsonErrors()
    {
        checkError(test::http_request(m_port, "POST", "/v1/chat/completions", "{\"model\": \"tiny-chat\", "), 400);
        checkError(test::http_request(m_port, "POST", "/v1/completions", ""), 400);
        checkError(test::http_request(m_port, "POST", "/v1/chat/completions",
                                      R"({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})"),
                   404, "model_not_found");
        // More words than the context has tokens.
        std::string long_text;
        for (int i = 0; i < kContext + 100; ++i) long_text += "word ";
        checkError(test::http_request(m_port, "POST", "/v1/completions",
                                      json{{"model", m_model}, {"prompt", long_text}}.dump()),
                   400, "context_length_exceeded");
        checkError(test::http_request(m_port, "POST", "/v1/chat/completions",
                                      json{{"model", m_model},
                                           {"messages", {{{"role", "user"}, {"content", long_text}}}}}
                                          .dump()),
                   400, "context_length_exceeded");
        checkError(test::http_request(m_port, "POST", "/v1/completions",
                                      json{{"model", m_model}, {"prompt", "x"}, {"temperature", -1}}.dump()),
                   400);
        checkError(test::http_request(m_port, "GET", "/v1/unknown"), 404, "unknown_url");
        checkError(test::http_request(m_port, "DELETE", "/v1/models"), 404, "unknown_url");
        // Bytes that are not HTTP: refused, and the server stays up.
        test::http_raw(m_port, std::string("\x16\x03\x01\x02\x00garbage\r\n\r\n", 20));
        test::http_raw(m_port, "POST /v1/completions HTTP/1.1\r\nContent-Length: 99999\r\n\r\n{", 3000);
        QCOMPARE(test::http_request(m_port, "GET", "/health").status, 200);
        const std::string m = metrics();
        QVERIFY(m.find("crucible_requests_total{endpoint=\"completion\",status=\"400\"}") != std::string::npos);
    }

    // Mangled requests (cut short, bytes flipped, fields of the wrong type,
    // absurd nesting) are answered with a 4xx JSON error or served; never a
    // 5xx, and the server stays up.
    void mangledRequestsNeverBreakTheServer()
    {
        const std::vector<std::pair<std::string, json>> valid = {
            {"/v1/chat/completions",
             {{"model", m_model},
              {"messages", {{{"role", "system"}, {"content", "Be brief."}}, {{"role", "user"}, {"content", "Hi"}}}},
              {"max_tokens", 4},
              {"stream", false},
              {"stop", {"\n"}},
              {"temperature", 0.5},
              {"seed", 1}}},
            {"/v1/completions", {{"model", m_model}, {"prompt", "The sea"}, {"max_tokens", 4}, {"top_p", 0.9}}}};
        const std::vector<json> odd = {json(), json::array(), json::object(), "x", -1, 1e300, true, 0, 4.5,
                                       json::array({json::object()}), std::string(3000, 'z')};
        std::mt19937 rng(7);
        int served = 0, refused = 0;
        for (int i = 0; i < 240; ++i) {
            const auto& [path, body] = valid[size_t(i) % valid.size()];
            std::string text;
            if (i % 3 == 0) {
                // A field replaced by a value of another kind (the token
                // limit stays: without one a chat reply may fill the context).
                json j = body;
                auto field = std::next(j.begin(), std::ptrdiff_t(rng() % j.size()));
                if (field.key() == "max_tokens") field = j.find("model");
                *field = odd[rng() % odd.size()];
                text = j.dump();
            } else if (i % 3 == 1) {
                text = body.dump();
                text.resize(rng() % text.size());   // cut short
            } else {
                text = body.dump();
                for (int k = 0; k < 3; ++k) text[rng() % text.size()] = char(rng() % 256);
            }
            const auto r = test::http_request(m_port, "POST", path, text);
            QVERIFY2(r.status >= 200 && r.status < 500, (text + " -> " + std::to_string(r.status) + " " + r.body).c_str());
            QVERIFY2(json::parse(r.body, nullptr, false).is_object(), r.body.c_str());
            (r.status == 200 ? served : refused)++;
        }
        qInfo("%d mangled requests served, %d refused with a 4xx", served, refused);
        // Nesting far deeper than any request needs.
        const std::string deep = std::string(100000, '[') + std::string(100000, ']');
        const auto r = test::http_request(m_port, "POST", "/v1/completions", deep);
        QCOMPARE(r.status, 400);
        QCOMPARE(test::http_request(m_port, "GET", "/health").status, 200);
    }

    void streamingSpellsTheWholeReply()
    {
        const json request = {{"model", m_model},
                              {"messages", {{{"role", "user"}, {"content", "Tell me about the sea."}}}},
                              {"max_tokens", 30},
                              {"temperature", 0}};
        int status = 0;
        const json whole = post("/v1/chat/completions", request, &status);
        QCOMPARE(status, 200);
        QCOMPARE(whole["object"].get<std::string>(), std::string("chat.completion"));
        const std::string text = whole["choices"][0]["message"]["content"];
        QVERIFY(!text.empty());

        json streamed_request = request;
        streamed_request["stream"] = true;
        streamed_request["stream_options"] = {{"include_usage", true}};
        const auto r = test::http_request(m_port, "POST", "/v1/chat/completions", streamed_request.dump());
        QCOMPARE(r.status, 200);
        QVERIFY(r.headers.find("text/event-stream") != std::string::npos);
        const Events e = parse_events(r.body);
        QVERIFY(e.done);
        QVERIFY(e.data.size() >= 3);
        QCOMPARE(e.data.front()["choices"][0]["delta"]["role"].get<std::string>(), std::string("assistant"));
        std::string joined;
        std::string finish;
        for (const json& chunk : e.data) {
            QCOMPARE_JSON(chunk["id"], e.data.front()["id"]);
            if (chunk["choices"].empty()) continue;
            joined += chunk["choices"][0]["delta"].value("content", "");
            if (!chunk["choices"][0]["finish_reason"].is_null()) finish = chunk["choices"][0]["finish_reason"];
        }
        QCOMPARE(joined, text);
        QCOMPARE(finish, whole["choices"][0]["finish_reason"].get<std::string>());
        QCOMPARE_JSON(e.data.back()["usage"], whole["usage"]);

        // Text completions stream the same way.
        const json completion = {{"model", m_model}, {"prompt", "The sea"}, {"max_tokens", 10}, {"seed", 3}};
        const std::string once = post("/v1/completions", completion)["choices"][0]["text"];
        json streamed = completion;
        streamed["stream"] = true;
        const Events c = parse_events(test::http_request(m_port, "POST", "/v1/completions", streamed.dump()).body);
        std::string again;
        for (const json& chunk : c.data) again += chunk["choices"][0]["text"].get<std::string>();
        QVERIFY(c.done);
        QCOMPARE(again, once);
    }

    // 100 requests at once over 8 slots: every one answered, each as it is
    // answered alone, with the model stepping over several at a time.
    void hundredConcurrentRequests()
    {
        const auto request = [&](int i) {
            return json{{"model", m_model},
                        {"prompt", "Line " + std::to_string(i % 5) + " of the sea"},
                        {"max_tokens", 12},
                        {"temperature", 0}};
        };
        std::vector<std::string> alone(5);
        for (int i = 0; i < 5; ++i) alone[size_t(i)] = post("/v1/completions", request(i))["choices"][0]["text"];
        const std::string before = idle_metrics();

        std::vector<test::HttpResponse> got(100);
        std::vector<std::thread> clients;
        for (int i = 0; i < 100; ++i)
            clients.emplace_back([&, i] {
                got[size_t(i)] = test::http_request(m_port, "POST", "/v1/completions", request(i).dump());
            });
        for (auto& t : clients) t.join();
        for (int i = 0; i < 100; ++i) {
            const auto& r = got[size_t(i)];
            QVERIFY2(r.status == 200, (r.error + r.body).c_str());
            QCOMPARE(json::parse(r.body)["choices"][0]["text"].get<std::string>(), alone[size_t(i % 5)]);
        }
        const std::string after = idle_metrics();
        const double steps = metric(after, "crucible_model_steps_total") - metric(before, "crucible_model_steps_total");
        const double rows =
            metric(after, "crucible_model_step_rows_total") - metric(before, "crucible_model_step_rows_total");
        qInfo("100 requests: %.0f model steps, %.2f sequences per step", steps, rows / steps);
        QVERIFY2(rows / steps > 2.0, "the requests were not batched");
        QVERIFY(steps < 100 * 12);
    }

    void disconnectFreesTheSlot_data()
    {
        QTest::addColumn<bool>("stream");
        QTest::newRow("streaming") << true;
        QTest::newRow("not streaming") << false;
    }

    void disconnectFreesTheSlot()
    {
        QFETCH(bool, stream);
        const std::string before = idle_metrics();
        const double cancelled = metric(before, "crucible_generations_total{reason=\"cancelled\"}");
        const json request = {{"model", m_model},  {"prompt", "The sea"}, {"max_tokens", kContext},
                              {"ignore_eos", true}, {"stream", stream}};
        // The client reads the first event, or nothing, and hangs up.
        std::atomic<bool> left{false};
        std::thread client([&] {
            test::http_request(
                m_port, "POST", "/v1/completions", request.dump(),
                [&](const std::string&) {
                    left = true;
                    return false;
                },
                stream ? 60000 : 20);
            left = true;
        });
        client.join();
        QVERIFY(left);
        const std::string after = idle_metrics();
        QCOMPARE(metric(after, "crucible_requests_running"), 0.0);
        const double now_cancelled = metric(after, "crucible_generations_total{reason=\"cancelled\"}");
        QCOMPARE((std::isnan(now_cancelled) ? 0 : now_cancelled) - (std::isnan(cancelled) ? 0 : cancelled), 1.0);
        const double generated =
            metric(after, "crucible_generated_tokens_total") - metric(before, "crucible_generated_tokens_total");
        qInfo("generated %.0f of up to %d tokens before the server noticed", generated, kContext);
        QVERIFY(generated < kContext - 10);
    }

    void officialOpenAiClient()
    {
        const fs::path dest = test::binary_dir() / "npm";
        std::string out;
        if (test::run_command("bash '" + (test::source_dir() / "tests/npm/install_clients.sh").string() + "' '" +
                                  dest.string() + "' openai 2>&1",
                              &out) != 0)
            QSKIP(("the openai npm client could not be installed:\n" + out).c_str());
        // ES modules resolve packages from the script's own folder.
        const fs::path script = dest / "openai" / "openai_check.mjs";
        fs::copy_file(test::source_dir() / "tests/npm/openai_check.mjs", script, fs::copy_options::overwrite_existing);
        QCOMPARE(test::run_command("node '" + script.string() + "' 'http://127.0.0.1:" + std::to_string(m_port) +
                                       "/v1' '" + m_model + "'",
                                   &out),
                 0);
        const size_t start = out.rfind("\n{");
        const json r = json::parse(start == std::string::npos ? out : out.substr(start + 1), nullptr, false);
        QVERIFY2(r.is_object() && !r.contains("failed"), out.c_str());
        QCOMPARE_JSON(r["models"], json::array({m_model}));
        QCOMPARE(r["chat"]["role"].get<std::string>(), std::string("assistant"));
        QCOMPARE(r["chat"]["object"].get<std::string>(), std::string("chat.completion"));
        QVERIFY(!r["chat"]["text"].get<std::string>().empty());
        QCOMPARE_JSON(r["chat_stream"]["text"], r["chat"]["text"]);
        QCOMPARE_JSON(r["chat_stream"]["finish"], r["chat"]["finish"]);
        QCOMPARE(r["chat_stream"]["role"].get<std::string>(), std::string("assistant"));
        QCOMPARE_JSON(r["chat_stream"]["usage"], r["chat"]["usage"]);
        QVERIFY(r["chat_stream"]["chunks"].get<int>() > 2);
        QCOMPARE(r["completion"]["usage"]["completion_tokens"].get<int>(), 12);
        QCOMPARE_JSON(r["completion_stream"]["text"], r["completion"]["text"]);   // same seed, same draw
        QCOMPARE(r["unknown_model"]["status"].get<int>(), 404);
        QCOMPARE(r["unknown_model"]["code"].get<std::string>(), std::string("model_not_found"));
        QCOMPARE(r["bad_temperature"]["status"].get<int>(), 400);
        QCOMPARE(r["bad_temperature"]["param"].get<std::string>(), std::string("temperature"));
    }

    void helpAndBench()
    {
        const std::string cli = fmt::format("'{}' ", (test::binary_dir() / "bin" / "crucible-cli").string());
        std::string out;
        for (const char* cmd : {"serve --help", "bench serve --help"}) {
            QCOMPARE(test::run_command(cli + cmd, &out), 0);
            QVERIFY2(out.find("--run") != std::string::npos, out.c_str());
        }
        // bench serve: its own server, clients and bench generate, on a few tokens.
        const fs::path run = fs::path(m_tmp.path().toStdString()) / m_model;
        QCOMPARE(test::run_command(cli + "bench serve --run '" + run.string() +
                                       "' --clients 1 --clients 3 --requests 2 --prompt-tokens 8 --new-tokens 6 "
                                       "--repeats 1 --threads 2 --json",
                                   &out),
                 0);
        const size_t start = out.find("[");
        const json rows = json::parse(start == std::string::npos ? out : out.substr(start), nullptr, false);
        QVERIFY2(rows.is_array() && rows.size() == 2, out.c_str());
        QCOMPARE(rows[1]["clients"].get<int>(), 3);
        QCOMPARE(rows[1]["requests"].get<int>(), 6);
        for (const json& r : rows)
            for (const char* key : {"aggregate_tokens_per_s", "ttft_p50_ms", "ttft_p99_ms", "generate_tokens_per_s"})
                QVERIFY2(r[key].is_number() && r[key].get<double>() > 0, key);
    }

    void cleanupTestCase()
    {
        if (m_server.state() == QProcess::NotRunning) return;
        m_server.terminate();   // SIGTERM
        QVERIFY(m_server.waitForFinished(20000));
        QCOMPARE(m_server.exitStatus(), QProcess::NormalExit);
        QCOMPARE(m_server.exitCode(), 0);
    }
};

QTEST_GUILESS_MAIN(TestServeHttp)
#include "tst_serve_http.moc"
