// Speculative decoding: with greedy sampling it must give the target's greedy
// tokens exactly, whatever the draft proposes; with sampling, the tokens it
// keeps must follow the target's distribution.
//
// The statistical test runs many seeds on a tiny target and an unrelated tiny
// draft (so proposals are often rejected and the residual draw matters), with
// top-k 4 on both so that the distribution has few cells, and compares the
// empirical joint distribution of the first three generated tokens (the
// first comes from the prefill's logits, the next two from speculation) with the
// exact one, enumerated from the target's recomputed logits: Pearson's
// chi-square over the 4 × 4 × 4 cells of the first three tokens, at
// significance 0.001. The test also checks that it would notice a sampler
// that kept the draft's tokens: their distribution lies far beyond the
// critical value at this sample size.
#include "core/generate/generator.h"
#include "core/generate/recompute_generate.h"
#include "core/model/transformer.h"
#include "kernels/backend_factory.h"
#include "tests/support/test_support.h"

#include <QTest>

#include <array>
#include <cmath>
#include <map>
#include <memory>

using namespace crucible;

namespace {

constexpr int kVocab = 300;

// Upper 0.001 quantile of chi-square with `dof` degrees of freedom
// (Wilson–Hilferty; within 0.1% for dof ≥ 30).
double chi_square_critical_0001(int dof)
{
    const double k = dof, z = 3.090232;
    const double c = 1.0 - 2.0 / (9.0 * k) + z * std::sqrt(2.0 / (9.0 * k));
    return k * c * c * c;
}

ModelConfig target_config()
{
    ModelConfig c;
    c.name = "target";
    c.vocab_size = kVocab;
    c.d_model = 32;
    c.n_layers = 2;
    c.n_heads = 4;
    c.n_kv_heads = 2;
    c.head_dim = 8;
    c.ff_dim = 48;
    c.seq_len = 64;
    c.init_std = 0.1f;
    return c;
}

ModelConfig draft_config()
{
    ModelConfig c = target_config();
    c.name = "draft";
    c.d_model = 16;
    c.n_layers = 1;
    c.n_heads = 2;
    c.n_kv_heads = 1;
    c.ff_dim = 24;
    return c;
}

GenerationRequest request(std::vector<std::vector<int32_t>> prompts, int new_tokens, float temperature, uint64_t seed)
{
    GenerationRequest r;
    r.prompts = std::move(prompts);
    r.max_new_tokens = new_tokens;
    r.sampling.temperature = temperature;
    r.sampling.seed = seed;
    r.stop_at_eos = false;
    return r;
}

} // namespace

class TestSpeculative : public QObject {
    Q_OBJECT

private slots:
    void initTestCase();
    void greedyEqualsGreedyTarget_data();
    void greedyEqualsGreedyTarget();
    void greedyStopsLikeTheTarget();
    void selfDraftAcceptsEverything();
    void sampledTokensFollowTheTarget_data();
    void sampledTokensFollowTheTarget();
    void badDraftThrows();

private:
    std::unique_ptr<Backend> m_be;
    std::unique_ptr<ParamStore> m_target, m_draft;
    std::unique_ptr<ParamStore> m_varied;   // the target, perturbed
};

void TestSpeculative::initTestCase()
{
    // One thread: the statistical test runs thousands of tiny generations,
    // where waking a second thread costs more than it saves (and a busy
    // machine makes every wake-up wait for a time slice).
    m_be = make_backend(BackendOptions{DeviceKind::cpu, 1});
    m_target = std::make_unique<ParamStore>(*m_be, target_config(), false);
    m_target->initialize(1);
    m_draft = std::make_unique<ParamStore>(*m_be, draft_config(), false);
    m_draft->initialize(2);
    // Greedy decoding of a freshly initialised model repeats one token;
    // perturbed, its text varies, so greedy comparisons (and a draft fed the
    // wrong token) show.
    m_varied = std::make_unique<ParamStore>(*m_be, target_config(), false);
    m_varied->upload_master(m_target->download_master());
    test::perturb_all(*m_varied, 100, 0.1f);
}

void TestSpeculative::greedyEqualsGreedyTarget_data()
{
    // Plain greedy decoding has the device pick the argmax; a repetition
    // penalty sends the logits to the host sampler instead. Speculative
    // rounds take the same two routes.
    // Device picks may also run in decode bursts (the draft's proposals
    // after the first, and plain decoding), as on a GPU.
    QTest::addColumn<int>("lookahead");
    QTest::addColumn<float>("penalty");
    QTest::addColumn<int>("burst");
    for (int k : {1, 2, 4, 7}) {
        QTest::addRow("lookahead %d, device picks", k) << k << 1.0f << 1;
        QTest::addRow("lookahead %d, device picks in bursts", k) << k << 1.0f << 8;
        QTest::addRow("lookahead %d, penalised, host picks", k) << k << 1.3f << 1;
    }
}

void TestSpeculative::greedyEqualsGreedyTarget()
{
    QFETCH(int, lookahead);
    QFETCH(float, penalty);
    QFETCH(int, burst);
    std::vector<std::vector<int32_t>> prompts;
    for (size_t len : {5, 1, 12}) prompts.push_back(test::random_ids(len, kVocab, 30 + len));
    Generator plain(*m_varied, 3, 64), speculative(*m_varied, 3, 64);
    CachedForward::Speedups speedups;
    speedups.decode_burst = burst;
    plain.set_speedups(speedups);
    speculative.set_speedups(speedups);
    speculative.set_draft(m_draft.get(), lookahead);
    GenerationRequest r = request(prompts, 40, 0.0f, 0);
    r.sampling.repetition_penalty = penalty;
    const GenerationStats want = plain.generate(r, {});
    std::vector<std::vector<int32_t>> streamed(3);
    const GenerationStats got = speculative.generate(r, [&](const TokenEvent& e) {
        streamed[size_t(e.sequence)].push_back(e.token);
        return true;
    });
    for (size_t b = 0; b < 3; ++b) {
        QCOMPARE(got.tokens[b], want.tokens[b]);
        QCOMPARE(streamed[b], want.tokens[b]);
    }
    // And the plain generator is the recomputing reference's equal.
    Transformer model(*m_varied, 1, 64, false);
    SamplingConfig greedy;
    greedy.temperature = 0.0f;
    greedy.repetition_penalty = penalty;
    Sampler sampler(greedy);
    std::vector<int32_t> tokens = prompts[0];
    generate_recompute(model, tokens, 40, sampler);
    QCOMPARE(std::vector<int32_t>(tokens.begin() + 5, tokens.end()), want.tokens[0]);
    QVERIFY(got.draft_proposed > 0);
    qInfo("lookahead %d: %lld of %lld proposals accepted", lookahead, (long long)got.draft_accepted,
          (long long)got.draft_proposed);
}

void TestSpeculative::greedyStopsLikeTheTarget()
{
    // The token limit and a full context end speculative runs where they end
    // plain ones, even in the middle of a round.
    Generator plain(*m_varied, 2, 20), speculative(*m_varied, 2, 20);
    speculative.set_draft(m_draft.get(), 6);
    const std::vector<std::vector<int32_t>> prompts = {test::random_ids(4, kVocab, 1), test::random_ids(9, kVocab, 2)};
    for (int burst : {1, 8}) {   // and with the draft proposing in decode bursts
        CachedForward::Speedups speedups;
        speedups.decode_burst = burst;
        speculative.set_speedups(speedups);
        for (int limit : {1, 2, 9, 100}) {
            const GenerationStats want = plain.generate(request(prompts, limit, 0.0f, 0), {});
            const GenerationStats got = speculative.generate(request(prompts, limit, 0.0f, 0), {});
            QCOMPARE(got.tokens, want.tokens);
            QCOMPARE(got.stop_reasons, want.stop_reasons);
        }
    }
}

void TestSpeculative::selfDraftAcceptsEverything()
{
    // A draft identical to the target proposes what the target would draw:
    // p = q (up to rounding), so every proposal is accepted.
    // Greedy, the draft proposes d2..d4 in a decode burst when asked.
    for (int burst : {1, 8}) {
        Generator gen(*m_varied, 1, 64);
        CachedForward::Speedups speedups;
        speedups.decode_burst = burst;
        gen.set_speedups(speedups);
        gen.set_draft(m_varied.get(), 4);
        for (float temperature : {0.0f, 1.0f}) {
            const GenerationStats st = gen.generate(request({test::random_ids(6, kVocab, 3)}, 41, temperature, 5), {});
            QCOMPARE(st.tokens[0].size(), size_t(41));
            QVERIFY2(st.acceptance_rate() > 0.99, qPrintable(QString::number(st.acceptance_rate())));
            QCOMPARE(st.draft_proposed, int64_t(32));   // 8 rounds of 4 proposals after the first token
        }
    }
}

void TestSpeculative::sampledTokensFollowTheTarget_data()
{
    QTest::addColumn<int>("lookahead");
    QTest::addRow("lookahead 1") << 1;   // the third token comes from a bonus draw or a second round
    QTest::addRow("lookahead 2") << 2;   // both from one round's accept/reject chain
}

void TestSpeculative::sampledTokensFollowTheTarget()
{
    QFETCH(int, lookahead);
    SamplingConfig sampling;
    sampling.temperature = 1.0f;
    sampling.top_k = 4;
    const std::vector<int32_t> prompt = test::random_ids(5, kVocab, 8);

    // Exact distributions from recomputed logits: p(t1), p(t2 | t1), p(t3 | t1, t2).
    auto next = [&](ParamStore& params, const std::vector<int32_t>& context) {
        Transformer model(params, 1, int64_t(context.size()), false);
        std::vector<float> logits, probs;
        model.last_logits(context.data(), 1, int64_t(context.size()), logits);
        Sampler(sampling).distribution(logits, context, probs);
        std::map<int32_t, double> out;
        for (size_t i = 0; i < probs.size(); ++i)
            if (probs[i] > 0) out[int32_t(i)] = probs[i];
        return out;
    };
    // The joint of the first three tokens under the target, and with the
    // second and third from the draft (what a broken rule would produce).
    using Triple = std::array<int32_t, 3>;
    auto joint = [&](ParamStore& params) {
        std::map<Triple, double> cells;
        for (const auto& [t1, p1] : next(*m_target, prompt)) {
            std::vector<int32_t> c1 = prompt;
            c1.push_back(t1);
            for (const auto& [t2, p2] : next(params, c1)) {
                std::vector<int32_t> c2 = c1;
                c2.push_back(t2);
                for (const auto& [t3, p3] : next(params, c2)) cells[{t1, t2, t3}] = p1 * p2 * p3;
            }
        }
        return cells;
    };
    const auto exact = joint(*m_target);
    const auto draft_only = joint(*m_draft);

    const int runs = 12000;
    Generator gen(*m_target, 1, 16);
    gen.set_draft(m_draft.get(), lookahead);
    std::map<Triple, int> counts;
    int64_t proposed = 0, accepted = 0;
    GenerationRequest r = request({prompt}, 2 + lookahead, 1.0f, 0);   // room for a full round after the first token
    r.sampling = sampling;
    for (int i = 0; i < runs; ++i) {
        r.sampling.seed = uint64_t(i) * 7919 + 13;
        const GenerationStats st = gen.generate(r, {});
        QVERIFY(st.tokens[0].size() >= 3);
        ++counts[{st.tokens[0][0], st.tokens[0][1], st.tokens[0][2]}];
        proposed += st.draft_proposed;
        accepted += st.draft_accepted;
    }

    // Every observed triple must be possible; then Pearson's statistic over
    // the cells of the exact distribution.
    for (const auto& [cell, n] : counts) QVERIFY2(exact.count(cell), "tokens the target cannot produce");
    double chi = 0, power = 0;
    for (const auto& [cell, p] : exact) {
        const double expected = p * runs;
        const double seen = counts.count(cell) ? counts[cell] : 0;
        chi += (seen - expected) * (seen - expected) / expected;
        const double q = draft_only.count(cell) ? draft_only.at(cell) : 0.0;
        power += runs * (q - p) * (q - p) / p;
    }
    const double critical = chi_square_critical_0001(int(exact.size()) - 1);
    const double acceptance = double(accepted) / double(proposed);
    qInfo("chi-square %.1f over %zu cells (critical %.1f); a draft-only sampler would score about %.0f; "
          "acceptance %.2f",
          chi, exact.size(), critical, power, acceptance);
    QCOMPARE(exact.size(), size_t(64));
    QVERIFY2(power > 10 * critical, "the test could not tell the draft from the target");
    QVERIFY2(acceptance > 0.05 && acceptance < 0.95, "both the accept and the reject path must be exercised");
    QVERIFY2(chi < critical, qPrintable(QString("chi-square %1 > %2").arg(chi).arg(critical)));
}

void TestSpeculative::badDraftThrows()
{
    Generator gen(*m_target, 1, 64);
    ModelConfig other = draft_config();
    other.vocab_size = kVocab + 1;
    ParamStore wrong_vocab(*m_be, other, false);
    QVERIFY_THROWS_EXCEPTION(Error, gen.set_draft(&wrong_vocab, 4));
    QVERIFY_THROWS_EXCEPTION(Error, gen.set_draft(m_draft.get(), 0));
    QVERIFY_THROWS_EXCEPTION(Error, gen.set_draft(m_draft.get(), Generator::kMaxLookahead + 1));
    ModelConfig short_context = draft_config();
    short_context.seq_len = 32;
    ParamStore short_draft(*m_be, short_context, false);
    QVERIFY_THROWS_EXCEPTION(Error, gen.set_draft(&short_draft, 4));
    gen.set_draft(nullptr);
    QCOMPARE(gen.generate(request({{1, 2}}, 3, 0.0f, 0), {}).draft_proposed, int64_t(0));
}

QTEST_APPLESS_MAIN(TestSpeculative)
#include "tst_speculative.moc"
