// The server's engine and protocol, without sockets.
//
// BatchEngine: jobs that join and leave a running batch (more jobs than
// slots, submitted while others decode, prompts longer than one prefill
// chunk) produce exactly the text the Generator produces for each alone,
// greedy and sampled with a seed; a cancelled job frees its slot within a
// step; a prompt that starts with what a free slot holds reuses its cache.
// Protocol: the OpenAI request fields, every malformed request as a 400 with
// the field named, unknown models as 404, prompts that fill the context as
// context_length_exceeded; chat prompts through the model's template or the
// plain transcript; response and stream chunk shapes; Prometheus text.
#include "core/generate/generator.h"
#include "core/serve/batch_engine.h"
#include "core/serve/openai_protocol.h"
#include "core/serve/serve_metrics.h"
#include "core/serve/served_model.h"
#include "kernels/backend_factory.h"
#include "tests/support/test_support.h"
#include "tests/support/tiny_hf_model.h"

#include <QTest>

#include <thread>

using namespace crucible;
using namespace crucible::serve;
using nlohmann::json;

namespace {

// Reads a job to its end.
struct Outcome {
    std::string text, reason;
    int64_t tokens = 0;
};

Outcome drain(JobStream& s)
{
    Outcome o;
    for (;;) {
        const auto u = s.next(std::chrono::milliseconds(1000));
        o.text += u.text;
        if (u.finished) {
            o.reason = u.stop_reason;
            o.tokens = s.completion_tokens();
            return o;
        }
    }
}

ApiError error_of(const std::function<void()>& f)
{
    try {
        f();
    } catch (const ApiException& e) {
        return e.error();
    }
    return ApiError{0, "", "no error", "", ""};
}

const char* kZephyr =
    "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + "
    "eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n{% "
    "elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif "
    "%}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}";

} // namespace

class TestServeEngine : public QObject {
    Q_OBJECT

private:
    std::unique_ptr<Backend> m_be;
    std::unique_ptr<ParamStore> m_params;
    const Tokenizer* m_tok = nullptr;

    std::vector<int32_t> prompt(size_t n, uint64_t seed) const
    {
        // Ids the tokenizer decodes (not control tokens), so text is compared.
        auto ids = test::random_ids(n, m_tok->vocab_size() - 8, seed);
        for (auto& id : ids) id += 8;
        return ids;
    }

    GenerationStats alone(const ServeJob& job)
    {
        Generator gen(*m_params, *m_tok, 1, m_params->config().seq_len);
        GenerationRequest r;
        r.prompts = {job.prompt};
        r.max_new_tokens = job.max_new_tokens;
        r.sampling = job.sampling;
        r.stop_strings = job.stop_strings;
        r.stop_at_eos = job.stop_at_eos;
        return gen.generate(r, {});
    }

private slots:
    void initTestCase()
    {
        m_be = make_backend(BackendOptions{DeviceKind::cpu, 2});
        test::TinyHfModel spec;
        spec.context = 320;   // room for a prompt longer than one prefill chunk
        m_tok = &test::tiny_tokenizer(false);
        m_params = std::make_unique<ParamStore>(*m_be, test::tiny_model_config(spec), false);
        m_params->initialize(5);
        test::perturb_all(*m_params, 6, 0.3f);   // greedy text that varies
    }

    // Seven jobs through three slots: four wait at first, joining as others
    // end; two arrive while the batch decodes; one prompt spans two prefill
    // chunks. Each one's text is what it gets alone.
    void continuousBatchingEqualsGeneratingAlone()
    {
        ServeMetrics metrics;
        BatchEngine engine(*m_params, *m_tok, 3, m_params->config().seq_len, &metrics);
        std::vector<ServeJob> jobs;
        for (int i = 0; i < 7; ++i) {
            ServeJob j;
            j.prompt = prompt(i == 2 ? 280 : size_t(3 + 5 * i), 100 + uint64_t(i));
            j.max_new_tokens = 6 + 4 * i;
            j.stop_at_eos = false;
            j.sampling.temperature = i % 2 ? 0.9f : 0.0f;   // greedy and sampled share the batch
            j.sampling.top_k = i % 2 ? 40 : 0;
            j.sampling.seed = 1000 + uint64_t(i);
            jobs.push_back(j);
        }
        std::vector<std::shared_ptr<JobStream>> streams;
        for (int i = 0; i < 5; ++i) streams.push_back(engine.submit(jobs[size_t(i)]));
        // The rest arrive once the batch is running.
        const std::string head = streams[0]->next(std::chrono::milliseconds(5000)).text;
        for (int i = 5; i < 7; ++i) streams.push_back(engine.submit(jobs[size_t(i)]));

        std::vector<Outcome> got;
        for (auto& s : streams) got.push_back(drain(*s));
        got[0].text = head + got[0].text;
        for (size_t i = 0; i < jobs.size(); ++i) {
            const GenerationStats want = alone(jobs[i]);
            QCOMPARE(got[i].text, want.texts[0]);
            QCOMPARE(got[i].tokens, int64_t(want.tokens[0].size()));
            QCOMPARE(got[i].reason, std::string("length"));
        }
        const std::string text = metrics.render(engine.load());
        QVERIFY(text.find("crucible_generations_total{reason=\"length\"} 7") != std::string::npos);
        // Steps ran several sequences at once.
        QVERIFY(metrics.render(engine.load()).find("crucible_model_step_rows_total") != std::string::npos);
        QCOMPARE(engine.load().running, 0);
        QCOMPARE(engine.load().waiting, 0);
    }

    // Greedy decode bursts (several steps per submission; forced on here,
    // where the CPU would run one): jobs ending inside a burst, by length or
    // stop string, and jobs queued behind them still get their own text.
    void greedyBurstsChangeNothing()
    {
        ServeMetrics metrics;
        CachedForward::Speedups speedups;
        speedups.decode_burst = 4;
        BatchEngine engine(*m_params, *m_tok, 3, 128, &metrics, speedups);
        std::vector<ServeJob> jobs;
        for (int i = 0; i < 5; ++i) {
            ServeJob j;
            j.prompt = prompt(size_t(4 + 3 * i), 300 + uint64_t(i));
            j.max_new_tokens = 5 + 6 * i;
            j.sampling.temperature = 0.0f;
            j.stop_at_eos = false;
            jobs.push_back(j);
        }
        const std::string free_text = alone(jobs[2]).texts[0];
        QVERIFY(free_text.size() > 10);
        jobs[2].stop_strings = {free_text.substr(7, 2)};
        std::vector<std::shared_ptr<JobStream>> streams;
        for (const auto& j : jobs) streams.push_back(engine.submit(j));
        // All finish before the references run: one backend serves one thread at a time.
        std::vector<Outcome> got;
        for (auto& st : streams) got.push_back(drain(*st));
        QTRY_COMPARE(engine.load().running, 0);
        for (size_t i = 0; i < jobs.size(); ++i) {
            const Outcome& o = got[i];
            const GenerationStats want = alone(jobs[i]);
            QCOMPARE(o.text, want.texts[0]);
            QCOMPARE(o.tokens, int64_t(want.tokens[0].size()));
        }
        const std::string text = metrics.render(engine.load());
        const auto value = [&](const std::string& name) {
            const size_t at = text.find("\n" + name + " ");
            return std::stod(text.substr(at + name.size() + 2));
        };
        // Three rows at most: one step per token would give at most 3 tokens a step.
        const double per_step = value("crucible_generated_tokens_total") / value("crucible_model_steps_total");
        qInfo("%.2f tokens per submission", per_step);
        QVERIFY(per_step > 3.0);
    }

    void stopStringsAndEosEndAJobAsAlone()
    {
        BatchEngine engine(*m_params, *m_tok, 2, 128);
        ServeJob j;
        j.prompt = prompt(5, 7);
        j.max_new_tokens = 40;
        j.sampling.temperature = 0.0f;
        j.stop_at_eos = false;
        // A stop string taken from the middle of the greedy text.
        const std::string free_text = alone(j).texts[0];
        QVERIFY(free_text.size() > 12);
        j.stop_strings = {free_text.substr(8, 3)};
        const Outcome o = drain(*engine.submit(j));
        QCOMPARE(o.reason, std::string("stop string"));
        QCOMPARE(o.text, alone(j).texts[0]);
        QVERIFY(o.text.size() <= 8);
    }

    void cancelFreesTheSlot()
    {
        ServeMetrics metrics;
        BatchEngine engine(*m_params, *m_tok, 1, 256, &metrics);
        ServeJob j;
        j.prompt = prompt(4, 9);
        j.max_new_tokens = 250;
        j.stop_at_eos = false;
        auto first = engine.submit(j);
        auto queued = engine.submit(j);   // waits: one slot
        first->next(std::chrono::milliseconds(5000));
        QCOMPARE(engine.load().waiting, 1);
        first->cancel();
        const Outcome o = drain(*first);
        QCOMPARE(o.reason, std::string("cancelled"));
        QVERIFY(o.tokens < 250);
        // The waiting job takes the slot.
        QVERIFY(!queued->next(std::chrono::milliseconds(5000)).text.empty() || queued->completion_tokens() > 0);
        queued->cancel();
        QCOMPARE(drain(*queued).reason, std::string("cancelled"));
        QTRY_COMPARE(engine.load().running, 0);
        // A job cancelled while it waits never starts.
        auto a = engine.submit(j), b = engine.submit(j);
        b->cancel();
        QCOMPARE(drain(*b).reason, std::string("cancelled"));
        QCOMPARE(b->completion_tokens(), int64_t(0));
        a->cancel();
        drain(*a);
    }

    void aSharedPrefixReusesTheCache()
    {
        ServeMetrics metrics;
        BatchEngine engine(*m_params, *m_tok, 4, 256, &metrics);
        ServeJob j;
        j.prompt = prompt(60, 11);
        j.max_new_tokens = 5;
        j.sampling.temperature = 0.0f;
        j.stop_at_eos = false;
        const Outcome first = drain(*engine.submit(j));
        // The next turn: the conversation so far and more.
        ServeJob next = j;
        const auto more = prompt(6, 12);
        next.prompt.insert(next.prompt.end(), more.begin(), more.end());
        const Outcome second = drain(*engine.submit(next));
        QCOMPARE(second.text, alone(next).texts[0]);
        const std::string text = metrics.render(engine.load());
        QVERIFY2(text.find("crucible_prompt_tokens_reused_total 60") != std::string::npos, text.c_str());
        QCOMPARE(first.tokens, int64_t(5));
    }

    void badJobsThrow()
    {
        BatchEngine engine(*m_params, *m_tok, 1, 64);
        ServeJob j;
        QVERIFY_THROWS_EXCEPTION(Error, engine.submit(j));   // empty prompt
        j.prompt = prompt(64, 1);
        QVERIFY_THROWS_EXCEPTION(Error, engine.submit(j));   // fills the context
        j.prompt = {int32_t(m_params->config().vocab_size)};
        QVERIFY_THROWS_EXCEPTION(Error, engine.submit(j));
        j.prompt = {9};
        j.sampling.top_p = 0.0f;
        QVERIFY_THROWS_EXCEPTION(Error, engine.submit(j));
    }

    // ---- protocol -------------------------------------------------------------------------

    void parsesTheOpenAiFields()
    {
        const auto r = parse_completion_request(
            R"({"model": "m", "messages": [{"role": "developer", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]}],
                "stream": true, "stream_options": {"include_usage": true}, "max_completion_tokens": 12,
                "temperature": 0.5, "top_p": 0.9, "stop": "\n\n", "seed": 42, "n": 1, "frequency_penalty": 0,
                "top_k": 20, "min_p": 0.05, "repetition_penalty": 1.1, "user": "someone"})",
            Endpoint::chat);
        QCOMPARE(r.model, std::string("m"));
        QCOMPARE(r.messages.size(), size_t(2));
        QCOMPARE(r.messages[0].role, std::string("system"));
        QCOMPARE(r.messages[1].content, std::string("Hi there"));
        QVERIFY(r.stream && r.include_usage && r.seed_given);
        QCOMPARE(*r.max_tokens, 12);
        QCOMPARE(r.sampling.temperature, 0.5f);
        QCOMPARE(r.sampling.top_p, 0.9f);
        QCOMPARE(r.sampling.top_k, 20);
        QCOMPARE(r.sampling.seed, uint64_t(42));
        QCOMPARE(r.stop, std::vector<std::string>{"\n\n"});

        const auto c = parse_completion_request(R"({"model": "m", "prompt": [5, 6, 7]})", Endpoint::completion);
        QCOMPARE(*c.prompt_ids, (std::vector<int32_t>{5, 6, 7}));
        QCOMPARE(c.sampling.temperature, 1.0f);   // the API's default
        QVERIFY(!c.max_tokens);
        const auto s = parse_completion_request(R"({"model": "m", "prompt": ["ROMEO:"], "stop": ["a", "b"]})",
                                                Endpoint::completion);
        QCOMPARE(s.prompt, std::string("ROMEO:"));
        QCOMPARE(s.stop.size(), size_t(2));
    }

    void malformedRequestsName_data()
    {
        QTest::addColumn<QString>("body");
        QTest::addColumn<int>("endpoint");
        QTest::addColumn<QString>("param");
        const int chat = int(Endpoint::chat), text = int(Endpoint::completion);
        QTest::newRow("not json") << "{\"model\": " << chat << "";
        QTest::newRow("not an object") << "[1, 2]" << chat << "";
        QTest::newRow("no model") << R"({"messages": [{"role": "user", "content": "x"}]})" << chat << "model";
        QTest::newRow("no messages") << R"({"model": "m"})" << chat << "messages";
        QTest::newRow("empty messages") << R"({"model": "m", "messages": []})" << chat << "messages";
        QTest::newRow("bad role") << R"({"model": "m", "messages": [{"role": "tool", "content": "x"}]})" << chat
                                  << "messages[0].role";
        QTest::newRow("image part") << R"({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]})"
                                    << chat << "messages[0].content";
        QTest::newRow("no prompt") << R"({"model": "m"})" << text << "prompt";
        QTest::newRow("two prompts") << R"({"model": "m", "prompt": ["a", "b"]})" << text << "prompt";
        QTest::newRow("negative id") << R"({"model": "m", "prompt": [1, -2]})" << text << "prompt";
        QTest::newRow("n") << R"({"model": "m", "prompt": "a", "n": 2})" << text << "n";
        QTest::newRow("temperature") << R"({"model": "m", "prompt": "a", "temperature": 2.5})" << text << "temperature";
        QTest::newRow("temperature type") << R"({"model": "m", "prompt": "a", "temperature": "hot"})" << text
                                          << "temperature";
        QTest::newRow("top_p") << R"({"model": "m", "prompt": "a", "top_p": 0})" << text << "top_p";
        QTest::newRow("max_tokens") << R"({"model": "m", "prompt": "a", "max_tokens": 0})" << text << "max_tokens";
        QTest::newRow("max_tokens type") << R"({"model": "m", "prompt": "a", "max_tokens": 1.5})" << text
                                         << "max_tokens";
        QTest::newRow("stream") << R"({"model": "m", "prompt": "a", "stream": "yes"})" << text << "stream";
        QTest::newRow("stop count") << R"({"model": "m", "prompt": "a", "stop": ["a","b","c","d","e"]})" << text
                                    << "stop";
        QTest::newRow("stop type") << R"({"model": "m", "prompt": "a", "stop": 3})" << text << "stop";
        QTest::newRow("logprobs") << R"({"model": "m", "prompt": "a", "logprobs": 2})" << text << "logprobs";
        QTest::newRow("frequency") << R"({"model": "m", "prompt": "a", "frequency_penalty": 0.5})" << text
                                   << "frequency_penalty";
    }

    void malformedRequestsName()
    {
        QFETCH(QString, body);
        QFETCH(int, endpoint);
        QFETCH(QString, param);
        const ApiError e = error_of([&] { parse_completion_request(body.toStdString(), Endpoint(endpoint)); });
        QCOMPARE(e.status, 400);
        QCOMPARE(e.type, std::string("invalid_request_error"));
        QCOMPARE(QString::fromStdString(e.param), param);
        QVERIFY(!e.message.empty());
        const json j = e.to_json();
        QVERIFY(j["error"]["message"].is_string());
        QCOMPARE(j["error"]["param"].is_null(), param.isEmpty());
    }

    void servedModelChecksModelAndContext()
    {
        ServedModel model("tiny", *m_tok, 64, std::nullopt);
        CompletionRequest r = parse_completion_request(R"({"model": "other", "prompt": "a"})", Endpoint::completion);
        ApiError e = error_of([&] { model.prepare(r); });
        QCOMPARE(e.status, 404);
        QCOMPARE(e.code, std::string("model_not_found"));

        r.model = "tiny";
        r.prompt = std::string(2000, 'x');
        e = error_of([&] { model.prepare(r); });
        QCOMPARE(e.status, 400);
        QCOMPARE(e.code, std::string("context_length_exceeded"));
        QCOMPARE(e.param, std::string("prompt"));

        r.prompt = "To be";
        ServeJob job = model.prepare(r);
        QCOMPARE(job.prompt, m_tok->encode("To be"));   // trained here: no BOS
        QCOMPARE(job.max_new_tokens, 16);                // the completions default
        r.max_tokens = 1000;
        QCOMPARE(model.prepare(r).max_new_tokens, 64 - int(job.prompt.size()));   // what the context leaves
        r.prompt_ids = std::vector<int32_t>{5, 999999};
        QCOMPARE(error_of([&] { model.prepare(r); }).param, std::string("prompt"));
    }

    void chatPromptsUseTheModelsFormat()
    {
        const std::vector<ChatMessage> messages = {{"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello!"},
                                                   {"user", "Bye"}};
        CompletionRequest r;
        r.endpoint = Endpoint::chat;
        r.model = "tiny";
        r.messages = messages;

        // Trained here: the plain transcript of `crucible-cli chat`.
        ServedModel plain("tiny", *m_tok, 128, std::nullopt);
        QCOMPARE(plain.render_chat(messages), std::string("Be brief.\nUser: Hi\nAssistant: Hello!\nUser: Bye\nAssistant: "));
        ServeJob job = plain.prepare(r);
        QCOMPARE(job.prompt, m_tok->encode(plain.render_chat(messages)));
        QCOMPARE(job.stop_strings, std::vector<std::string>{"\nUser:"});
        QCOMPARE(job.max_new_tokens, 128 - int(job.prompt.size()));   // chat: until the context ends

        // From Hugging Face with a template: its format, BOS and end token.
        const Tokenizer& llama = test::tiny_tokenizer(true);
        const json config = {{"chat_template", kZephyr}, {"bos_token", "<s>"}, {"eos_token", "</s>"}};
        ServedModel zephyr("tiny", llama, 128, config);
        QCOMPARE(zephyr.chat_format(), std::string("Zephyr"));
        QCOMPARE(zephyr.render_chat(messages),
                 std::string("<|system|>\nBe brief.</s>\n<|user|>\nHi</s>\n<|assistant|>\nHello!</s>\n<|user|>\nBye</s>\n"
                             "<|assistant|>\n"));
        job = zephyr.prepare(r);
        const auto t = ChatTemplate::from_tokenizer_config(config, llama);
        QCOMPARE(job.prompt, t->encode(zephyr.render_chat(messages)));
        QCOMPARE(job.stop_tokens, t->stop_tokens());
        // Its completions start with BOS, as LlamaTokenizer's do.
        CompletionRequest c;
        c.model = "tiny";
        c.prompt = "Hi";
        QCOMPARE(zephyr.prepare(c).prompt.front(), int32_t(llama.bos_id()));
    }

    void responsesHaveTheApiShape()
    {
        ResponseIds chat{Endpoint::chat, "chatcmpl-1", 1700000000, "tiny"};
        const json full = completion_response(chat, "Hello", "stop", Usage{5, 2});
        QCOMPARE(full["object"].get<std::string>(), std::string("chat.completion"));
        QCOMPARE(full["choices"][0]["message"]["content"].get<std::string>(), std::string("Hello"));
        QCOMPARE(full["choices"][0]["message"]["role"].get<std::string>(), std::string("assistant"));
        QCOMPARE(full["usage"]["total_tokens"].get<int>(), 7);
        const json first = stream_chunk(chat, "He", true, std::nullopt);
        QCOMPARE(first["object"].get<std::string>(), std::string("chat.completion.chunk"));
        QCOMPARE(first["choices"][0]["delta"]["role"].get<std::string>(), std::string("assistant"));
        QVERIFY(first["choices"][0]["finish_reason"].is_null());
        const json last = stream_chunk(chat, "", false, std::string("length"));
        QVERIFY(last["choices"][0]["delta"].empty());
        QCOMPARE(last["choices"][0]["finish_reason"].get<std::string>(), std::string("length"));
        QVERIFY(usage_chunk(chat, Usage{1, 1})["choices"].empty());

        ResponseIds text{Endpoint::completion, "cmpl-1", 1700000000, "tiny"};
        QCOMPARE(completion_response(text, "x", "length", {})["choices"][0]["text"].get<std::string>(), std::string("x"));
        QCOMPARE(stream_chunk(text, "y", true, std::nullopt)["object"].get<std::string>(), std::string("text_completion"));
        // One event per line pair, newlines inside the text escaped.
        const std::string event = sse_event(stream_chunk(text, "a\nb", false, std::nullopt));
        QVERIFY(event.rfind("data: {", 0) == 0);
        QCOMPARE(event.find('\n'), event.size() - 2);
        QCOMPARE(sse_done(), std::string("data: [DONE]\n\n"));
        QCOMPARE(finish_reason("eos"), std::string("stop"));
        QCOMPARE(finish_reason("stop string"), std::string("stop"));
        QCOMPARE(finish_reason("context full"), std::string("length"));
        QCOMPARE(model_list("tiny", 1)["data"][0]["id"].get<std::string>(), std::string("tiny"));
    }

    void metricsInPrometheusText()
    {
        ServeMetrics m;
        m.request("chat", 200);
        m.request("chat", 200);
        m.request("completion", 400);
        m.job_started(10, 4);
        m.first_token(0.02);
        m.step(3, 3, 0.01);
        m.job_finished("stop string", 0.3);
        BatchEngine::Load load;
        load.slot_count = 4;
        load.running = 1;
        load.cache_tokens = 32;
        load.cache_capacity = 128;
        const std::string t = m.render(load);
        for (const char* line : {"crucible_requests_total{endpoint=\"chat\",status=\"200\"} 2",
                                 "crucible_requests_total{endpoint=\"completion\",status=\"400\"} 1",
                                 "crucible_generations_total{reason=\"stop_string\"} 1",
                                 "crucible_prompt_tokens_total 10", "crucible_prompt_tokens_reused_total 4",
                                 "crucible_generated_tokens_total 3",
                                 "crucible_time_to_first_token_seconds_bucket{le=\"0.01\"} 0",
                                 "crucible_time_to_first_token_seconds_bucket{le=\"0.025\"} 1",
                                 "crucible_time_to_first_token_seconds_bucket{le=\"+Inf\"} 1",
                                 "crucible_time_to_first_token_seconds_count 1", "crucible_kv_cache_usage_ratio 0.25",
                                 "crucible_requests_running 1", "# TYPE crucible_generated_tokens_per_second gauge"})
            QVERIFY2(t.find(line) != std::string::npos, line);
        QCOMPARE(m.tokens_per_second(), 3.0 / ServeMetrics::kRateWindowSeconds);
    }
};

QTEST_GUILESS_MAIN(TestServeEngine)
#include "tst_serve_engine.moc"
