// KV-cached generation against full recomputation, and the Generator's
// contract.
//
// Logits: CachedForward (prefill in chunks, ragged batches, decode steps with
// sequences sitting out) must give the logits Transformer::last_logits
// recomputes from scratch, at every position, to ‖a − b‖/‖b‖ ≤ 1e-5 on the
// CPU, for MHA, GQA, MQA, QK-norm and LayerNorm/GELU/untied models. The two
// paths run the same fp32 ops; only GEMM shapes and the attention kernel's
// summation order differ (measured: at most 5e-7).
//
// Generator: greedy output equals generate_recompute's token for token (alone
// and batched with prompts of different lengths, with and without cache
// reuse); stop strings (matched across token boundaries, never shown), EOS,
// the token limit and a full context end a sequence with the right reason,
// also when greedy steps run in bursts (several per submission);
// cancellation from another thread or from the callback ends generation
// within one token.
#include "core/generate/cached_forward.h"
#include "core/generate/generator.h"
#include "core/generate/recompute_generate.h"
#include "core/model/transformer.h"
#include "kernels/backend_factory.h"
#include "resources/embedded_resources.h"
#include "tests/support/test_support.h"

#include <QTest>

#include <atomic>
#include <memory>
#include <optional>
#include <thread>

using namespace crucible;

namespace {

constexpr int kVocab = 300;
constexpr double kLogitTolerance = 1e-5;

ModelConfig tiny(const QString& variant)
{
    ModelConfig c;
    c.name = variant.toStdString();
    c.vocab_size = kVocab;
    c.d_model = 32;
    c.n_layers = 2;
    c.n_heads = 4;
    c.n_kv_heads = 2;
    c.head_dim = 8;
    c.ff_dim = 48;
    c.seq_len = 64;
    // Wide enough logits that greedy choices are never near-ties at fp32.
    c.init_std = 0.1f;
    if (variant == "mha") c.n_kv_heads = 4;
    if (variant == "mqa") c.n_kv_heads = 1;
    if (variant == "qk-norm") c.qk_norm = true;
    if (variant == "layernorm-gelu-untied") {
        c.norm = NormType::layernorm;
        c.mlp = MlpType::gelu;
        c.tied_embeddings = false;
    }
    return c;
}

std::vector<int32_t> slice(const std::vector<int32_t>& v, size_t n) { return {v.begin(), v.begin() + std::ptrdiff_t(n)}; }

std::vector<int32_t> recompute_greedy(ParamStore& params, std::vector<int32_t> prompt, int new_tokens)
{
    Transformer model(params, 1, params.config().seq_len, false);
    SamplingConfig greedy;
    greedy.temperature = 0.0f;
    Sampler sampler(greedy);
    const size_t prompt_size = prompt.size();
    generate_recompute(model, prompt, new_tokens, sampler);
    return {prompt.begin() + std::ptrdiff_t(prompt_size), prompt.end()};
}

GenerationRequest greedy_request(std::vector<std::vector<int32_t>> prompts, int new_tokens)
{
    GenerationRequest r;
    r.prompts = std::move(prompts);
    r.max_new_tokens = new_tokens;
    r.sampling.temperature = 0.0f;
    r.stop_at_eos = false;
    return r;
}

} // namespace

class TestGeneration : public QObject {
    Q_OBJECT

private slots:
    void initTestCase();

    void cachedLogitsEqualRecompute_data();
    void cachedLogitsEqualRecompute();
    void cacheOverflowThrows();

    void greedyEqualsRecompute();
    void batchedGreedyEqualsRecompute();
    void reusedCacheGivesTheSameTokens();
    void eventsCarryProbabilitiesAndAlternatives();
    void greedyPicksOnTheDeviceEqualTheHostPath();
    void decodeBurstsChangeNothingVisible();
    void samplingIsReproducible();
    void nanLogitsThrowFromParallelDraws();

    void stopStringAcrossTokenBoundaries();
    void stopsAtEos();
    void stopsAtTokenLimit();
    void stopsWhenContextIsFull();
    void callbackFalseStopsAtOnce();
    void cancelFromAnotherThreadWithinOneToken();
    void cancelWhileRunning();
    void badRequestsThrow();

private:
    std::unique_ptr<Backend> m_be;
    std::optional<Tokenizer> m_tok;
    std::unique_ptr<ParamStore> m_params;   // the "gqa" model, for the Generator tests
};

void TestGeneration::initTestCase()
{
    m_be = make_backend(BackendOptions{DeviceKind::cpu, 2});
    const std::string_view all = *embedded_resource("tinyshakespeare.txt");
    TokenizerOptions o;
    o.vocab_size = kVocab;
    o.threads = 2;
    m_tok = Tokenizer::train(Corpus::from_documents({Document{"part.txt", std::string(all.substr(0, 60'000))}}), o);
    QCOMPARE(m_tok->vocab_size(), kVocab);
    m_params = std::make_unique<ParamStore>(*m_be, tiny("gqa"), false);
    m_params->initialize(11);
    test::perturb_all(*m_params, 100, 0.3f);   // greedy text that varies
}

// ---- logits ------------------------------------------------------------------------------------

void TestGeneration::cachedLogitsEqualRecompute_data()
{
    QTest::addColumn<QString>("variant");
    for (const char* v : {"mha", "gqa", "mqa", "qk-norm", "layernorm-gelu-untied"}) QTest::newRow(v) << QString(v);
}

void TestGeneration::cachedLogitsEqualRecompute()
{
    QFETCH(QString, variant);
    const ModelConfig c = tiny(variant);
    ParamStore params(*m_be, c, false);
    params.initialize(3);
    test::perturb_vectors(params, 40, 0.2f);
    Transformer reference(params, 1, c.seq_len, false);

    // Three sequences with prompts of 5, 11 and 2 tokens, prefilled 4 rows per
    // chunk (the first chunk starts every cache empty, later ones attend over
    // it), then 6 decode steps in which sequence 1 sits out every other step.
    const std::vector<size_t> prompt = {5, 11, 2};
    const int decode_steps = 6;
    const int64_t chunk = 4;
    std::vector<std::vector<int32_t>> seqs;
    for (size_t b = 0; b < prompt.size(); ++b)
        seqs.push_back(test::random_ids(prompt[b] + decode_steps, kVocab, 70 + b));
    KvCache cache(*m_be, c, 4, 40);   // a slot more than the batch uses
    CachedForward model(params, cache, 3 * chunk, 3 * chunk);

    std::vector<float> logits, want;
    double worst = 0.0;
    auto check_row = [&](size_t b, size_t length, const std::vector<float>& all, size_t r) {
        const std::vector<float> got(all.begin() + std::ptrdiff_t(r * kVocab), all.begin() + std::ptrdiff_t((r + 1) * kVocab));
        reference.last_logits(seqs[b].data(), 1, int64_t(length), want);
        const double err = test::relative_error(got, want);
        worst = std::max(worst, err);
        QVERIFY2(err <= kLogitTolerance, qPrintable(QString("sequence %1 at length %2: relative error %3")
                                                        .arg(b).arg(length).arg(err)));
    };

    const size_t longest = *std::max_element(prompt.begin(), prompt.end());
    for (size_t start = 0; start < longest; start += size_t(chunk)) {
        std::vector<int32_t> tokens(size_t(3 * chunk), 0);
        std::vector<int64_t> counts(3), rows;
        for (size_t b = 0; b < 3; ++b) {
            counts[b] = start < prompt[b] ? std::min<int64_t>(chunk, int64_t(prompt[b] - start)) : 0;
            for (int64_t t = 0; t < counts[b]; ++t) {
                tokens[b * size_t(chunk) + size_t(t)] = seqs[b][start + size_t(t)];
                rows.push_back(int64_t(b) * chunk + t);
            }
        }
        model.append(tokens, counts, chunk, rows, logits);
        size_t r = 0;
        for (size_t b = 0; b < 3; ++b)
            for (int64_t t = 0; t < counts[b]; ++t) check_row(b, start + size_t(t) + 1, logits, r++);
    }
    for (size_t b = 0; b < 3; ++b) QCOMPARE(cache.length(int64_t(b)), int64_t(prompt[b]));

    std::vector<size_t> length = prompt;
    for (int step = 0; step < decode_steps; ++step) {
        std::vector<int32_t> tokens(3);
        std::vector<int64_t> counts(3, 1), rows;
        if (step % 2) counts[1] = 0;
        for (size_t b = 0; b < 3; ++b) {
            if (counts[b]) rows.push_back(int64_t(b));
            tokens[b] = counts[b] ? seqs[b][length[b]] : 0;
        }
        model.append(tokens, counts, 1, rows, logits);
        size_t r = 0;
        for (size_t b = 0; b < 3; ++b) {
            if (!counts[b]) continue;
            ++length[b];
            check_row(b, length[b], logits, r++);
        }
    }

    // Rolling back and running other tokens gives the logits of the new text.
    cache.set_length(0, 3);
    std::vector<int32_t> tokens = {seqs[2][0], 0, 0};
    seqs[0] = {seqs[0][0], seqs[0][1], seqs[0][2], seqs[2][0]};
    model.append(tokens, std::vector<int64_t>{1, 0, 0}, 1, std::vector<int64_t>{0}, logits);
    check_row(0, 4, logits, 0);
    qInfo("%s: largest relative error of cached logits %.2g", qPrintable(variant), worst);
}

void TestGeneration::cacheOverflowThrows()
{
    KvCache cache(*m_be, m_params->config(), 1, 8);
    CachedForward model(*m_params, cache, 16, 4);
    std::vector<float> logits;
    model.append(test::random_ids(6, kVocab, 1), std::vector<int64_t>{6}, 6, {}, logits);
    QVERIFY_THROWS_EXCEPTION(Error, model.append(test::random_ids(3, kVocab, 2), std::vector<int64_t>{3}, 3, {}, logits));
    QCOMPARE(cache.length(0), int64_t(6));
    QVERIFY_THROWS_EXCEPTION(Error, model.append(std::vector<int32_t>{kVocab}, std::vector<int64_t>{1}, 1, {}, logits));
    QVERIFY_THROWS_EXCEPTION(Error, KvCache(*m_be, m_params->config(), 1, 65));   // past the model's seq_len
}

// ---- greedy equality -------------------------------------------------------------------------------

void TestGeneration::greedyEqualsRecompute()
{
    Generator gen(*m_params, *m_tok, 1, 64);
    for (uint64_t seed : {1, 2, 3}) {
        const auto prompt = test::random_ids(3 + seed * 4, kVocab, seed);
        const auto want = recompute_greedy(*m_params, prompt, 30);
        std::vector<int32_t> streamed;
        const GenerationStats st = gen.generate(greedy_request({prompt}, 30), [&](const TokenEvent& e) {
            streamed.push_back(e.token);
            return true;
        });
        QCOMPARE(st.tokens[0], want);
        QCOMPARE(streamed, want);
        QCOMPARE(st.stop_reason, std::string("length"));
        QCOMPARE(st.generated_tokens, int64_t(30));
        QCOMPARE(st.prompt_tokens, int64_t(prompt.size()));
        QVERIFY(st.prefill_tokens_per_s() > 0 && st.decode_tokens_per_s() > 0);
    }
}

void TestGeneration::batchedGreedyEqualsRecompute()
{
    Generator gen(*m_params, *m_tok, 4, 64);
    std::vector<std::vector<int32_t>> prompts;
    for (size_t len : {7, 1, 19}) prompts.push_back(test::random_ids(len, kVocab, 50 + len));
    std::vector<std::vector<int32_t>> streamed(3);
    const GenerationStats st = gen.generate(greedy_request(prompts, 25), [&](const TokenEvent& e) {
        streamed[size_t(e.sequence)].push_back(e.token);
        return true;
    });
    for (size_t b = 0; b < 3; ++b) {
        const auto want = recompute_greedy(*m_params, prompts[b], 25);
        QCOMPARE(st.tokens[b], want);
        QCOMPARE(streamed[b], want);
        QCOMPARE(st.stop_reasons[b], std::string("length"));
    }
}

void TestGeneration::reusedCacheGivesTheSameTokens()
{
    // A chat: each request extends the previous text; with reuse only the new
    // part runs, and the result is what a fresh generator gives.
    Generator reused(*m_params, *m_tok, 1, 64), fresh(*m_params, *m_tok, 1, 64);
    std::vector<int32_t> conversation = test::random_ids(6, kVocab, 9);
    for (int turn = 0; turn < 3; ++turn) {
        GenerationRequest r = greedy_request({conversation}, 8);
        r.reuse_cache = true;
        const GenerationStats a = reused.generate(r, {});
        const GenerationStats b = fresh.generate(greedy_request({conversation}, 8), {});
        QCOMPARE(a.tokens[0], b.tokens[0]);
        if (turn > 0) QVERIFY2(a.prompt_tokens < int64_t(conversation.size()), "the shared prefix ran again");
        conversation.insert(conversation.end(), a.tokens[0].begin(), a.tokens[0].end());
        const auto user = test::random_ids(4, kVocab, 20 + uint64_t(turn));
        conversation.insert(conversation.end(), user.begin(), user.end());
    }
}

void TestGeneration::eventsCarryProbabilitiesAndAlternatives()
{
    Generator gen(*m_params, *m_tok, 1, 64);
    GenerationRequest r = greedy_request({test::random_ids(5, kVocab, 4)}, 10);
    r.top_alternatives = 5;
    int events = 0;
    gen.generate(r, [&](const TokenEvent& e) {
        ++events;
        if (e.alternatives.size() != 5) return false;
        // Greedy picks the most likely token; alternatives come most likely first.
        if (e.alternatives[0].first != e.token || std::abs(e.alternatives[0].second - e.probability) > 1e-6f) return false;
        float total = 0.0f;
        for (size_t i = 0; i < e.alternatives.size(); ++i) {
            total += e.alternatives[i].second;
            if (i > 0 && e.alternatives[i].second > e.alternatives[i - 1].second) return false;
        }
        return total <= 1.0f + 1e-5f && e.bytes == m_tok->token_bytes(e.token);
    });
    QCOMPARE(events, 10);
}

void TestGeneration::greedyPicksOnTheDeviceEqualTheHostPath()
{
    // Plain greedy decoding picks tokens with Backend::argmax_rows; asking for
    // alternatives (or a penalty) takes the host path over the full logits.
    Generator gen(*m_params, *m_tok, 2, 64);
    GenerationRequest fast = greedy_request({test::random_ids(6, kVocab, 31), test::random_ids(2, kVocab, 32)}, 20);
    GenerationRequest host = fast;
    host.top_alternatives = 1;
    std::vector<TokenEvent> a, b;
    const GenerationStats st = gen.generate(fast, [&](const TokenEvent& e) { a.push_back(e); return true; });
    gen.generate(host, [&](const TokenEvent& e) { b.push_back(e); return true; });
    QCOMPARE(a.size(), size_t(40));
    QCOMPARE(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) {
        QCOMPARE(a[i].token, b[i].token);
        QVERIFY(std::abs(a[i].probability - b[i].probability) <= 1e-6f);
    }
    QVERIFY(st.decode_model_seconds > 0 && st.decode_model_seconds <= st.decode_seconds);
}

void TestGeneration::decodeBurstsChangeNothingVisible()
{
    // On a GPU greedy decoding runs several steps per submission, each
    // step's picks feeding the next on the device (CPU: one step at a time
    // unless asked, as here). Bursts must change nothing a user sees: tokens,
    // events, stop reasons, the cache a later request reuses. The batch mixes
    // a sequence that meets a stop string early (it rides along in later
    // bursts), one that fills its context of 40, and a token limit that is
    // no multiple of the burst.
    CachedForward::Speedups one_step;
    one_step.decode_burst = 1;
    Generator single(*m_params, *m_tok, 3, 40);
    single.set_speedups(one_step);
    const std::vector<std::vector<int32_t>> prompts = {test::random_ids(7, kVocab, 61), test::random_ids(1, kVocab, 62),
                                                       test::random_ids(19, kVocab, 63)};
    const GenerationStats free_run = single.generate(greedy_request(prompts, 25), {});
    // A stop string the first sequence meets at its tenth token or later,
    // and the others never.
    std::string stop;
    size_t offset = 0;
    for (size_t i = 0; i + 1 < free_run.tokens[0].size() && stop.empty(); ++i) {
        const std::string here = m_tok->token_bytes(free_run.tokens[0][i]);
        const std::string candidate = here + m_tok->token_bytes(free_run.tokens[0][i + 1]);
        if (i >= 9 && free_run.texts[0].find(candidate) == offset &&
            free_run.texts[1].find(candidate) == std::string::npos && free_run.texts[2].find(candidate) == std::string::npos)
            stop = candidate;
        offset += here.size();
    }
    QVERIFY2(!stop.empty(), "no stop string fits this test's greedy text");
    GenerationRequest r = greedy_request(prompts, 25);
    r.stop_strings = {stop};
    auto record = [](std::vector<std::string>& log) {
        return [&log](const TokenEvent& e) {
            log.push_back(std::to_string(e.sequence) + ":" + std::to_string(e.token) + ":" + e.text);
            return true;
        };
    };
    std::vector<std::string> want_events;
    const GenerationStats want = single.generate(r, record(want_events));
    QCOMPARE(want.stop_reasons[0], std::string("stop string"));
    QVERIFY(want.tokens[0].size() < want.tokens[1].size());
    QCOMPARE(want.stop_reasons[2], std::string("context full"));

    for (int burst : {3, 16}) {
        CachedForward::Speedups bursts;
        bursts.decode_burst = burst;
        Generator gen(*m_params, *m_tok, 3, 40);
        gen.set_speedups(bursts);
        std::vector<std::string> events;
        const GenerationStats got = gen.generate(r, record(events));
        QCOMPARE(got.tokens, want.tokens);
        QCOMPARE(got.stop_reasons, want.stop_reasons);
        QCOMPARE(events, want_events);

        // After the stop the first sequence rode along, so its cache holds
        // tokens past the stop. A request that continues it reuses what
        // matches: all but the new token, and perhaps the last generated one
        // (when the stop came at the end of the last burst, it never ran).
        std::vector<int32_t> next = prompts[0];
        next.insert(next.end(), got.tokens[0].begin(), got.tokens[0].end());
        next.push_back(5);
        GenerationRequest more = greedy_request({next}, 12);
        more.reuse_cache = true;
        const GenerationStats reused = gen.generate(more, {});
        QVERIFY2(reused.prompt_tokens <= 2, qPrintable(QString("%1 tokens ran again").arg(reused.prompt_tokens)));
        QCOMPARE(reused.tokens[0], single.generate(greedy_request({next}, 12), {}).tokens[0]);

        // A cancel still ends the stream within one token.
        int seen = 0;
        const GenerationStats cancelled = gen.generate(greedy_request({prompts[0]}, 30), [&](const TokenEvent&) {
            if (++seen == 2) gen.request_cancel();
            return true;
        });
        QCOMPARE(seen, 2);
        QCOMPARE(cancelled.stop_reason, std::string("cancelled"));
    }
}

void TestGeneration::samplingIsReproducible()
{
    Generator gen(*m_params, *m_tok, 2, 64);
    GenerationRequest r;
    r.prompts = {test::random_ids(5, kVocab, 4)};
    r.max_new_tokens = 20;
    r.sampling.temperature = 1.0f;
    r.sampling.seed = 77;
    r.stop_at_eos = false;
    const auto a = gen.generate(r, {}).tokens[0];
    const auto b = gen.generate(r, {}).tokens[0];
    QCOMPARE(a, b);
    // Sequence 0 of a batch draws as if alone; sequence 1 draws with its own seed.
    r.prompts.push_back(r.prompts[0]);
    const GenerationStats batched = gen.generate(r, {});
    QCOMPARE(batched.tokens[0], a);
    QVERIFY(batched.tokens[1] != a);
    r.prompts.pop_back();
    r.sampling.seed = 78;
    QVERIFY(gen.generate(r, {}).tokens[0] != a);
}

void TestGeneration::nanLogitsThrowFromParallelDraws()
{
    // A batch draws in parallel; a sequence whose logits are NaN (a diverged
    // model) must come back as an Error from generate(), not end the process.
    ParamStore broken(*m_be, m_params->config(), false);
    std::vector<float> w = m_params->download_master();
    const ParamEntry& norm = broken.layout().at(ParamRole::final_norm);
    std::fill(w.begin() + std::ptrdiff_t(norm.offset), w.begin() + std::ptrdiff_t(norm.offset + norm.numel()), NAN);
    broken.upload_master(w);
    Generator gen(broken, *m_tok, 3, 64);
    GenerationRequest r;
    r.prompts = {test::random_ids(4, kVocab, 1), test::random_ids(6, kVocab, 2), test::random_ids(2, kVocab, 3)};
    r.max_new_tokens = 5;
    r.sampling.temperature = 0.9f;
    r.sampling.top_k = 20;
    r.stop_at_eos = false;
    QVERIFY_THROWS_EXCEPTION(Error, gen.generate(r, {}));
}

// ---- stopping ------------------------------------------------------------------------------------------

void TestGeneration::stopStringAcrossTokenBoundaries()
{
    Generator gen(*m_params, *m_tok, 1, 64);
    const auto prompt = test::random_ids(4, kVocab, 12);
    const GenerationStats free_run = gen.generate(greedy_request({prompt}, 24), {});
    const std::string full = free_run.texts[0];
    // A stop string that starts inside one token and ends inside a later one.
    size_t start = 0;
    for (int i = 0; i < 3; ++i) start += m_tok->token_bytes(free_run.tokens[0][size_t(i)]).size();
    const size_t first = m_tok->token_bytes(free_run.tokens[0][3]).size();
    const size_t second = m_tok->token_bytes(free_run.tokens[0][4]).size();
    QVERIFY2(first + second >= 2, "the greedy text is too short for this test");
    start += first > 1 ? 1 : 0;
    const std::string stop = full.substr(start, std::max<size_t>(2, first + second - 1));
    const size_t at = full.find(stop);

    GenerationRequest r = greedy_request({prompt}, 24);
    r.stop_strings = {"never appears \x01", stop};
    std::string shown;
    int events = 0;
    const GenerationStats st = gen.generate(r, [&](const TokenEvent& e) {
        shown += e.text;
        ++events;
        return true;
    });
    QCOMPARE(st.stop_reason, std::string("stop string"));
    QCOMPARE(st.texts[0], full.substr(0, at));
    QCOMPARE(shown, full.substr(0, at));   // everything before it is shown, the stop string never
    QVERIFY(events <= 5 && events >= 1);
}

void TestGeneration::stopsAtEos()
{
    // Swapping two tokens' rows of the (tied) embedding relabels the model:
    // it then says EOS exactly where it said the other token.
    ParamStore params(*m_be, m_params->config(), false);
    params.upload_master(m_params->download_master());
    const auto prompt = test::random_ids(5, kVocab, 31);
    const auto free_run = recompute_greedy(params, prompt, 12);
    const int32_t eos = m_tok->eos_id();
    const int32_t other = free_run[4];
    const size_t first = size_t(std::find(free_run.begin(), free_run.end(), other) - free_run.begin());
    std::vector<float> w = params.download_master();
    const ParamEntry& emb = params.layout().at(ParamRole::embedding);
    for (int64_t i = 0; i < emb.shape[1]; ++i)
        std::swap(w[size_t(emb.offset + other * emb.shape[1] + i)], w[size_t(emb.offset + eos * emb.shape[1] + i)]);
    params.upload_master(w);
    auto relabel = [&](int32_t t) { return t == other ? eos : t == eos ? other : t; };
    std::vector<int32_t> relabeled;
    for (int32_t t : prompt) relabeled.push_back(relabel(t));

    Generator gen(params, *m_tok, 1, 64);
    GenerationRequest r = greedy_request({relabeled}, 12);
    r.stop_at_eos = true;
    int events = 0;
    const GenerationStats st = gen.generate(r, [&](const TokenEvent&) { return ++events > 0; });
    QCOMPARE(st.stop_reason, std::string("eos"));
    QCOMPARE(st.tokens[0].size(), first);
    QCOMPARE(events, int(first));
    for (size_t i = 0; i < first; ++i) QCOMPARE(st.tokens[0][i], relabel(free_run[i]));
}

void TestGeneration::stopsAtTokenLimit()
{
    Generator gen(*m_params, *m_tok, 1, 64);
    const GenerationStats st = gen.generate(greedy_request({test::random_ids(3, kVocab, 5)}, 5), {});
    QCOMPARE(st.stop_reason, std::string("length"));
    QCOMPARE(st.tokens[0].size(), size_t(5));
    const GenerationStats none = gen.generate(greedy_request({test::random_ids(3, kVocab, 5)}, 0), {});
    QCOMPARE(none.tokens[0].size(), size_t(0));
    QCOMPARE(none.stop_reason, std::string("length"));
}

void TestGeneration::stopsWhenContextIsFull()
{
    // A context of 12: a prompt of 8 leaves positions for 4 more tokens, and a
    // fifth can still be drawn from the last position's logits.
    Generator gen(*m_params, *m_tok, 2, 12);
    const auto prompt = test::random_ids(8, kVocab, 6);
    const GenerationStats st = gen.generate(greedy_request({prompt, slice(prompt, 4)}, 100), {});
    QCOMPARE(st.stop_reasons[0], std::string("context full"));
    QCOMPARE(st.tokens[0], recompute_greedy(*m_params, prompt, 5));
    QCOMPARE(st.stop_reasons[1], std::string("context full"));
    QCOMPARE(st.tokens[1].size(), size_t(12 - 4 + 1));
    // A prompt that fills the context still gets its one token.
    const GenerationStats full = gen.generate(greedy_request({test::random_ids(12, kVocab, 7)}, 100), {});
    QCOMPARE(full.tokens[0].size(), size_t(1));
    QCOMPARE(full.stop_reason, std::string("context full"));
}

void TestGeneration::callbackFalseStopsAtOnce()
{
    Generator gen(*m_params, *m_tok, 3, 64);
    std::vector<std::vector<int32_t>> prompts = {test::random_ids(3, kVocab, 1), test::random_ids(9, kVocab, 2)};
    int events = 0;
    const GenerationStats st = gen.generate(greedy_request(prompts, 50), [&](const TokenEvent&) { return ++events < 3; });
    QCOMPARE(events, 3);
    QCOMPARE(st.stop_reason, std::string("cancelled"));
    QCOMPARE(st.stop_reasons[0], std::string("cancelled"));
    QCOMPARE(st.stop_reasons[1], std::string("cancelled"));
}

void TestGeneration::cancelFromAnotherThreadWithinOneToken()
{
    Generator gen(*m_params, *m_tok, 1, 64);
    gen.request_cancel();   // before generate(): discarded
    int events = 0;
    const GenerationStats st = gen.generate(greedy_request({test::random_ids(3, kVocab, 1)}, 50), [&](const TokenEvent&) {
        if (++events == 3) std::thread([&] { gen.request_cancel(); }).join();
        return true;
    });
    QVERIFY2(events >= 3 && events <= 4, qPrintable(QString("%1 tokens after a cancel at the third").arg(events)));
    QCOMPARE(st.stop_reason, std::string("cancelled"));
}

void TestGeneration::cancelWhileRunning()
{
    // Generation runs on a worker thread; the cancel lands at an arbitrary
    // moment, and at most one more token may follow it.
    Generator gen(*m_params, *m_tok, 1, 64);
    std::atomic<int> events{0};
    GenerationStats st;
    std::thread worker([&] {
        st = gen.generate(greedy_request({test::random_ids(3, kVocab, 1)}, 60), [&](const TokenEvent&) {
            events.fetch_add(1);
            std::this_thread::sleep_for(std::chrono::milliseconds(2));
            return true;
        });
    });
    while (events.load() < 5) std::this_thread::yield();
    gen.request_cancel();
    const int at_cancel = events.load();
    worker.join();
    QVERIFY2(events.load() <= at_cancel + 1, qPrintable(QString("%1 tokens after the cancel").arg(events.load() - at_cancel)));
    QCOMPARE(st.stop_reason, std::string("cancelled"));
}

void TestGeneration::badRequestsThrow()
{
    Generator gen(*m_params, *m_tok, 2, 16);
    QVERIFY_THROWS_EXCEPTION(Error, gen.generate(greedy_request({}, 5), {}));
    QVERIFY_THROWS_EXCEPTION(Error, gen.generate(greedy_request({{}}, 5), {}));
    QVERIFY_THROWS_EXCEPTION(Error, gen.generate(greedy_request({{1}, {2}, {3}}, 5), {}));
    QVERIFY_THROWS_EXCEPTION(Error, gen.generate(greedy_request({test::random_ids(17, kVocab, 1)}, 5), {}));
    QVERIFY_THROWS_EXCEPTION(Error, gen.generate(greedy_request({{kVocab}}, 5), {}));
    GenerationRequest bad = greedy_request({{1}}, 5);
    bad.sampling.top_p = 0.0f;
    QVERIFY_THROWS_EXCEPTION(Error, gen.generate(bad, {}));
    Generator without_tokenizer(*m_params, 1, 16);
    GenerationRequest stop = greedy_request({{1}}, 5);
    stop.stop_strings = {"x"};
    QVERIFY_THROWS_EXCEPTION(Error, without_tokenizer.generate(stop, {}));
    QVERIFY_THROWS_EXCEPTION(Error, Generator(*m_params, *m_tok, 1, 65));
}

QTEST_APPLESS_MAIN(TestGeneration)
#include "tst_generation.moc"
