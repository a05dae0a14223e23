// Sampler: each stage of the documented order checked against its
// definition on random logits (top-k, top-p, min-p, penalties, temperature),
// greedy = argmax, seeds reproduce, and draws follow the distribution.
//
// Statistical checks use Pearson's chi-square with fixed seeds, so they are
// deterministic; the critical values are those of significance 0.001 (a
// correct sampler would fail one seed in a thousand), while a sampler off by
// a few percent in any cell exceeds them many times over at these counts.
#include "core/generate/sampler.h"
#include "tests/support/test_support.h"

#include "kernels/error.h"

#include <QTest>

#include <algorithm>
#include <functional>
#include <cmath>
#include <numeric>
#include <set>

using namespace crucible;

namespace {

std::vector<double> softmax(const std::vector<float>& logits, double temperature = 1.0)
{
    const double top = *std::max_element(logits.begin(), logits.end());
    std::vector<double> p(logits.size());
    double sum = 0;
    for (size_t i = 0; i < p.size(); ++i) sum += p[i] = std::exp((logits[i] - top) / temperature);
    for (auto& x : p) x /= sum;
    return p;
}

// Token ids by decreasing probability.
std::vector<int32_t> ranked(const std::vector<double>& p)
{
    std::vector<int32_t> order(p.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return p[size_t(a)] > p[size_t(b)]; });
    return order;
}

std::set<int32_t> support(const std::vector<float>& probs)
{
    std::set<int32_t> s;
    for (size_t i = 0; i < probs.size(); ++i)
        if (probs[i] > 0.0f) s.insert(int32_t(i));
    return s;
}

std::vector<float> distribution(const SamplingConfig& c, std::vector<float> logits, const std::vector<int32_t>& history = {})
{
    std::vector<float> probs;
    Sampler(c).distribution(logits, history, probs);
    return probs;
}

double chi_square(const std::vector<int>& counts, const std::vector<double>& expected_p, int n)
{
    double chi = 0;
    for (size_t i = 0; i < counts.size(); ++i) {
        const double e = expected_p[i] * n;
        chi += (counts[i] - e) * (counts[i] - e) / e;
    }
    return chi;
}

// Upper 0.001 quantiles of chi-square by degrees of freedom.
double chi_square_critical_0001(int dof)
{
    switch (dof) {
    case 4: return 18.467;
    case 5: return 20.515;
    case 6: return 22.458;
    case 7: return 24.322;
    case 8: return 26.124;
    case 9: return 27.877;
    default: return NAN;
    }
}

} // namespace

class TestSampler : public QObject {
    Q_OBJECT

private slots:
    void temperatureZeroIsArgmax();
    void temperatureScalesLogits();
    void topKNeverLeavesTheKBest();
    void topPKeepsTheSmallestSetWithEnoughMass();
    void topPAppliesAfterTopK();
    void minPKeepsTokensNearTheTop();
    void largeVocabularyCutsMatchTheDefinition();
    void repetitionAndPresencePenalties();
    void seedReproducesAnotherSeedDiffers();
    void drawsFollowTheDistribution();
    void drawsFollowTruncatedDistribution();
    void drawNeverPicksZeroMass();
    void invalidSettingsThrow();
};

void TestSampler::temperatureZeroIsArgmax()
{
    SamplingConfig c;
    c.temperature = 0.0f;
    for (uint64_t seed = 0; seed < 20; ++seed) {
        auto logits = test::random_vector(97, seed);
        const int32_t best = int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
        Sampler s(c);
        auto work = logits;
        QCOMPARE(s.sample(work, {}), best);
        const auto probs = distribution(c, logits);
        QCOMPARE(probs[size_t(best)], 1.0f);
        QCOMPARE(support(probs).size(), size_t(1));
    }
}

void TestSampler::temperatureScalesLogits()
{
    const auto logits = test::random_vector(40, 3, 2.0f);
    for (float t : {0.3f, 1.0f, 1.7f}) {
        SamplingConfig c;
        c.temperature = t;
        const auto probs = distribution(c, logits);
        const auto want = softmax(logits, t);
        for (size_t i = 0; i < probs.size(); ++i) QVERIFY(std::abs(probs[i] - want[i]) < 1e-6);
    }
}

void TestSampler::topKNeverLeavesTheKBest()
{
    for (int k : {1, 3, 10}) {
        SamplingConfig c;
        c.temperature = 1.5f;   // a flat distribution, so the cut matters
        c.top_k = k;
        c.seed = uint64_t(k);
        const auto logits = test::random_vector(64, uint64_t(k) + 100);
        const auto order = ranked(softmax(logits));
        const std::set<int32_t> best(order.begin(), order.begin() + k);
        QCOMPARE(support(distribution(c, logits)), best);
        Sampler s(c);
        for (int i = 0; i < 2000; ++i) {
            auto work = logits;
            QVERIFY(best.count(s.sample(work, {})));
        }
    }
}

void TestSampler::topPKeepsTheSmallestSetWithEnoughMass()
{
    for (float top_p : {0.1f, 0.5f, 0.9f, 0.99f}) {
        SamplingConfig c;
        c.temperature = 1.0f;
        c.top_p = top_p;
        const auto logits = test::random_vector(50, 7, 1.5f);
        const auto p = softmax(logits);
        const auto order = ranked(p);
        // The smallest prefix of the ranking with mass ≥ p: removing its last
        // token leaves less than p.
        double mass = 0;
        size_t n = 0;
        while (mass < top_p) mass += p[size_t(order[n++])];
        const auto probs = distribution(c, logits);
        QCOMPARE(support(probs), std::set<int32_t>(order.begin(), order.begin() + std::ptrdiff_t(n)));
        for (int32_t t : support(probs)) QVERIFY(std::abs(probs[size_t(t)] - p[size_t(t)] / mass) < 1e-6);
    }
}

void TestSampler::topPAppliesAfterTopK()
{
    // Top-p measures mass in the distribution top-k left, renormalised.
    SamplingConfig c;
    c.temperature = 1.0f;
    c.top_k = 4;
    c.top_p = 0.6f;
    const std::vector<float> logits = {2.0f, 1.9f, 1.8f, 1.7f, 1.6f, 1.5f, 1.4f, 1.3f};
    const auto p = softmax(logits);
    const double left = p[0] + p[1] + p[2] + p[3];
    size_t n = 0;
    double mass = 0;
    while (mass < 0.6 * left) mass += p[n++];
    QCOMPARE(support(distribution(c, logits)).size(), n);
    QVERIFY(n < 4);
}

void TestSampler::minPKeepsTokensNearTheTop()
{
    for (float min_p : {0.05f, 0.3f, 0.8f}) {
        SamplingConfig c;
        c.temperature = 1.0f;
        c.min_p = min_p;
        const auto logits = test::random_vector(60, 9, 1.5f);
        const auto p = softmax(logits);
        const double top = *std::max_element(p.begin(), p.end());
        std::set<int32_t> want;
        for (size_t i = 0; i < p.size(); ++i)
            if (p[i] >= min_p * top) want.insert(int32_t(i));
        QCOMPARE(support(distribution(c, logits)), want);
    }
}

void TestSampler::largeVocabularyCutsMatchTheDefinition()
{
    // A 32K vocabulary, where the sampler ranks only what can survive the
    // cuts (top-k ranks k; top-p or min-p alone rank a growing prefix):
    // the kept set and its probabilities are the definition's, computed
    // here by ranking everything, and sample() draws what
    // draw(distribution()) draws from the same seed.
    struct Cut {
        float temperature;
        int top_k;
        float top_p, min_p;
    };
    const int64_t vocab = 32768;
    for (float scale : {1.0f, 4.0f})   // flat (top-p keeps thousands) and peaked
        for (const Cut& cut : {Cut{0.8f, 40, 0.95f, 0.0f}, Cut{1.0f, 0, 0.9f, 0.0f}, Cut{1.0f, 0, 1.0f, 0.05f},
                               Cut{0.7f, 0, 0.5f, 0.2f}, Cut{1.3f, 1000, 1.0f, 0.01f}, Cut{1.0f, 0, 1.0f, 0.0f}}) {
            SamplingConfig c;
            c.temperature = cut.temperature;
            c.top_k = cut.top_k;
            c.top_p = cut.top_p;
            c.min_p = cut.min_p;
            c.seed = 9;
            const auto logits = test::random_vector(size_t(vocab), 31, scale);
            const auto p = softmax(logits, cut.temperature);
            const auto order = ranked(p);
            size_t keep = cut.top_k > 0 ? size_t(cut.top_k) : size_t(vocab);
            double left = 0;
            for (size_t i = 0; i < keep; ++i) left += p[size_t(order[i])];
            if (cut.top_p < 1.0f) {
                double mass = 0;
                size_t i = 0;
                while (i < keep && mass < double(cut.top_p) * left) mass += p[size_t(order[i++])];
                keep = i;
            }
            if (cut.min_p > 0.0f) {
                size_t i = 1;
                while (i < keep && p[size_t(order[i])] >= double(cut.min_p) * p[size_t(order[0])]) ++i;
                keep = i;
            }
            double kept = 0;
            for (size_t i = 0; i < keep; ++i) kept += p[size_t(order[i])];

            const auto probs = distribution(c, logits);
            const QString what = QString("scale %1, T %2, top-k %3, top-p %4, min-p %5 (keeps %6)")
                                     .arg(scale).arg(cut.temperature).arg(cut.top_k).arg(cut.top_p).arg(cut.min_p).arg(keep);
            QVERIFY2(support(probs) == std::set<int32_t>(order.begin(), order.begin() + std::ptrdiff_t(keep)),
                     qPrintable(what));
            for (size_t i = 0; i < keep; ++i) {
                const double want = p[size_t(order[i])] / kept;
                QVERIFY2(std::abs(probs[size_t(order[i])] - want) <= 1e-5 * want + 1e-12, qPrintable(what));
            }
            // An event's probability from the top token's (a device's normaliser) equals the full pass.
            const auto raw = softmax(logits);
            const int32_t best = order[0], other = order[std::min<size_t>(keep, 100)];
            for (int32_t t : {best, other})
                QVERIFY(std::abs(token_probability(logits, t, float(raw[size_t(best)])) - raw[size_t(t)]) <=
                        1e-5 * raw[size_t(t)]);
            QVERIFY(std::abs(token_probability(logits, other) - raw[size_t(other)]) <= 1e-5 * raw[size_t(other)]);
            Sampler sampled(c), drawn(c);
            for (int i = 0; i < 200; ++i) {
                auto work = logits;
                QCOMPARE(sampled.sample(work, {}), drawn.draw(probs));
            }
        }
}

void TestSampler::repetitionAndPresencePenalties()
{
    const std::vector<float> logits = {2.0f, -1.0f, 0.5f, 1.0f, -0.5f};
    const std::vector<int32_t> history = {0, 1, 1, 4};   // repeats count once
    SamplingConfig c;
    c.temperature = 0.8f;
    c.repetition_penalty = 1.5f;
    c.presence_penalty = 0.25f;
    std::vector<float> penalised = logits;
    for (int32_t t : {0, 1, 4}) {
        float& l = penalised[size_t(t)];
        l = (l > 0 ? l / 1.5f : l * 1.5f) - 0.25f;
    }
    const auto probs = distribution(c, logits, history);
    const auto want = softmax(penalised, 0.8);
    for (size_t i = 0; i < probs.size(); ++i) QVERIFY(std::abs(probs[i] - want[i]) < 1e-6);

    // Greedy sees the penalties too: token 0 leads until it has been seen.
    SamplingConfig greedy;
    greedy.temperature = 0.0f;
    greedy.repetition_penalty = 2.5f;
    Sampler g(greedy);
    auto work = logits;
    QCOMPARE(g.sample(work, {}), 0);
    work = logits;
    QCOMPARE(g.sample(work, std::vector<int32_t>{0}), 3);
}

void TestSampler::seedReproducesAnotherSeedDiffers()
{
    SamplingConfig c;
    c.temperature = 1.0f;
    const auto logits = test::random_vector(200, 1);
    auto run = [&](uint64_t seed) {
        c.seed = seed;
        Sampler s(c);
        std::vector<int32_t> out;
        for (int i = 0; i < 100; ++i) {
            auto work = logits;
            out.push_back(s.sample(work, {}));
        }
        return out;
    };
    QCOMPARE(run(42), run(42));
    QVERIFY(run(42) != run(43));
}

void TestSampler::drawsFollowTheDistribution()
{
    SamplingConfig c;
    c.temperature = 0.7f;
    c.seed = 2024;
    const auto logits = test::random_vector(10, 77);
    const auto p = softmax(logits, 0.7);
    const int n = 40000;
    std::vector<int> counts(10, 0);
    Sampler s(c);
    for (int i = 0; i < n; ++i) {
        auto work = logits;
        ++counts[size_t(s.sample(work, {}))];
    }
    const double chi = chi_square(counts, p, n);
    QVERIFY2(chi < chi_square_critical_0001(9), qPrintable(QString("chi-square %1 with 9 dof").arg(chi)));
}

void TestSampler::drawsFollowTruncatedDistribution()
{
    SamplingConfig c;
    c.temperature = 1.2f;
    c.top_k = 8;
    c.top_p = 0.9f;
    c.seed = 5;
    const auto logits = test::random_vector(100, 78, 1.5f);
    const auto probs = distribution(c, logits);
    const std::set<int32_t> kept_set = support(probs);
    const std::vector<int32_t> kept(kept_set.begin(), kept_set.end());
    QVERIFY(kept.size() >= 5 && kept.size() <= 8);
    const int n = 30000;
    std::vector<int> counts(kept.size(), 0);
    std::vector<double> expected;
    for (int32_t t : kept) expected.push_back(probs[size_t(t)]);
    Sampler s(c);
    for (int i = 0; i < n; ++i) {
        auto work = logits;
        const int32_t t = s.sample(work, {});
        const auto it = std::find(kept.begin(), kept.end(), t);
        QVERIFY(it != kept.end());
        ++counts[size_t(it - kept.begin())];
    }
    const int dof = int(kept.size()) - 1;
    const double chi = chi_square(counts, expected, n);
    QVERIFY2(chi < chi_square_critical_0001(dof), qPrintable(QString("chi-square %1 with %2 dof").arg(chi).arg(dof)));
}

void TestSampler::drawNeverPicksZeroMass()
{
    SamplingConfig c;
    c.seed = 1;
    Sampler s(c);
    const std::vector<float> probs = {0.0f, 0.3f, 0.0f, 0.0f, 0.2f, 0.0f};   // unnormalised is fine
    std::vector<int> counts(probs.size(), 0);
    for (int i = 0; i < 10000; ++i) ++counts[size_t(s.draw(probs))];
    QCOMPARE(counts[0] + counts[2] + counts[3] + counts[5], 0);
    QVERIFY(std::abs(counts[1] / 10000.0 - 0.6) < 0.03);
    QVERIFY_THROWS_EXCEPTION(Error, s.draw(std::vector<float>(4, 0.0f)));
}

void TestSampler::invalidSettingsThrow()
{
    for (auto change : std::vector<std::function<void(SamplingConfig&)>>{
             [](SamplingConfig& c) { c.temperature = -1.0f; }, [](SamplingConfig& c) { c.top_k = -2; },
             [](SamplingConfig& c) { c.top_p = 0.0f; }, [](SamplingConfig& c) { c.min_p = 1.0f; },
             [](SamplingConfig& c) { c.repetition_penalty = 0.0f; }}) {
        SamplingConfig c;
        change(c);
        QVERIFY_THROWS_EXCEPTION(Error, Sampler{c});
    }
}

QTEST_APPLESS_MAIN(TestSampler)
#include "tst_sampler.moc"
