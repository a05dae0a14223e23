// CpuBackend generation ops (rope_forward_at, kv_cache_write,
// attention_decode) against fp64 references written from their definitions
// in kernels/backend.h: per-row positions with padding, GQA ratios 1, 2, 4
// and MQA, odd head sizes, caches longer than the rows use. Forwards agree to
// ‖a − b‖/‖b‖ ≤ 1e-5 (short fp32 chains, as in tst_cpu_ops). Also: RoPE at
// positions equals rope_forward bit for bit, and attention over a cache
// filled by a whole sequence equals the training path's causal attention.
#include "kernels/cpu/cpu_backend.h"
#include "tests/kernels/reference_ops.h"
#include "tests/support/test_support.h"

#include "core/util/rng.h"

#include <QtTest>

using namespace crucible;
using namespace crucible::test;

namespace {

constexpr double kTolerance = 1e-5;

#define CHECK_REL(got, want, tol, what)                                                                          \
    do {                                                                                                         \
        const double err_ = ref::rel_error(ref::widen(got), (want));                                             \
        QVERIFY2(err_ <= (tol), qPrintable(QString("%1: relative error %2 > %3").arg(what).arg(err_).arg(tol))); \
    } while (0)

QString shape_name(const AttentionShape& s)
{
    return QString("B%1 T%2 H%3 KV%4 D%5").arg(s.batch).arg(s.seq).arg(s.n_heads).arg(s.n_kv_heads).arg(s.head_dim);
}

struct Case {
    AttentionShape s;
    int64_t capacity;   // cache positions
};

// GQA ratios 1, 2, 4 and MQA; decode steps (T = 1) and chunks.
const std::vector<Case>& cases()
{
    static const std::vector<Case> all = {
        {{1, 1, 4, 2, 8}, 16},    {{3, 1, 4, 4, 6}, 40},   {{2, 1, 8, 2, 32}, 300}, {{4, 1, 4, 1, 16}, 70},
        {{2, 5, 4, 2, 8}, 33},    {{1, 17, 2, 1, 64}, 200}, {{3, 4, 6, 3, 10}, 12},
    };
    return all;
}

// Positions per row: each sequence continues from a random cache length; some
// rows are padding (the tail of a short sequence, or a whole sequence).
std::vector<int32_t> random_positions(const AttentionShape& s, int64_t capacity, uint64_t seed)
{
    Rng rng(seed);
    std::vector<int32_t> pos(size_t(s.tokens()), -1);
    for (int64_t b = 0; b < s.batch; ++b) {
        if (s.batch > 1 && b == s.batch - 1 && rng.below(2)) continue;   // sits out
        const int64_t count = s.seq == 1 ? 1 : 1 + int64_t(rng.below(uint64_t(s.seq)));
        const int64_t start = int64_t(rng.below(uint64_t(capacity - count + 1)));
        for (int64_t t = 0; t < count; ++t) pos[size_t(b * s.seq + t)] = int32_t(start + t);
    }
    return pos;
}

size_t cache_at(const AttentionShape& s, int64_t capacity, int64_t b, int64_t kv, int64_t p, int64_t d)
{
    return size_t(((b * s.n_kv_heads + kv) * capacity + p) * s.head_dim + d);
}

// RoPE of each row at its own position, from the fixed-offset reference.
ref::Vec rope_at(const ref::Vec& qkv, const AttentionShape& s, const std::vector<int32_t>& pos, double theta)
{
    ref::Vec out = qkv;
    const AttentionShape one{1, 1, s.n_heads, s.n_kv_heads, s.head_dim};
    const size_t ld = size_t(s.qkv_dim());
    for (size_t r = 0; r < pos.size(); ++r) {
        if (pos[r] < 0) continue;
        const ref::Vec row(qkv.begin() + std::ptrdiff_t(r * ld), qkv.begin() + std::ptrdiff_t((r + 1) * ld));
        const ref::Vec rotated = ref::rope(row, one, pos[r], theta);
        std::copy(rotated.begin(), rotated.end(), out.begin() + std::ptrdiff_t(r * ld));
    }
    return out;
}

// softmax(q·kᵀ/√D)·v over positions [0, pos] of the row's slot, per query head.
ref::Vec attention_over_cache(const ref::Vec& qkv, const ref::Vec& keys, const ref::Vec& values,
                              const std::vector<int32_t>& pos, const AttentionShape& s, int64_t capacity)
{
    const int64_t D = s.head_dim;
    ref::Vec out(size_t(s.tokens() * s.q_dim()), 0.0);
    const double scale = 1.0 / std::sqrt(double(D));
    for (int64_t r = 0; r < s.tokens(); ++r) {
        if (pos[size_t(r)] < 0) continue;
        const int64_t b = r / s.seq;
        for (int64_t h = 0; h < s.n_heads; ++h) {
            const int64_t kv = h / s.group();
            std::vector<double> w(size_t(pos[size_t(r)] + 1));
            double top = -INFINITY;
            for (size_t j = 0; j < w.size(); ++j) {
                double dot = 0;
                for (int64_t d = 0; d < D; ++d)
                    dot += qkv[ref::packed(s, r, h, d)] * keys[cache_at(s, capacity, b, kv, int64_t(j), d)];
                w[j] = dot * scale;
                top = std::max(top, w[j]);
            }
            double sum = 0;
            for (auto& x : w) sum += x = std::exp(x - top);
            for (int64_t d = 0; d < D; ++d) {
                double acc = 0;
                for (size_t j = 0; j < w.size(); ++j) acc += w[j] * values[cache_at(s, capacity, b, kv, int64_t(j), d)];
                out[size_t(r * s.q_dim() + h * D + d)] = acc / sum;
            }
        }
    }
    return out;
}

} // namespace

class TestCpuDecodeOps : public QObject {
    Q_OBJECT

private slots:
    void ropeAtPositions();
    void ropeAtEqualsRopeForwardBitForBit();
    void kvCacheWriteCopiesRowsToTheirSlots();
    void attentionDecode();
    void attentionOverFilledCacheEqualsCausalAttention();
    void argmaxRowsPicksTheLargestAndItsProbability();
    void badInputThrows();

private:
    CpuBackend m_be{2};
};

void TestCpuDecodeOps::ropeAtPositions()
{
    for (const Case& c : cases()) {
        for (float theta : {10000.0f, 500000.0f}) {
            const AttentionShape& s = c.s;
            auto pos = random_positions(s, c.capacity, 7);
            if (s.tokens() > 2) pos[1] = 131000;   // far positions need the double-precision angle
            const auto host = random_vector(size_t(s.tokens() * s.qkv_dim()), 11);
            OwnedTensor qkv(m_be, DType::f32, Shape{s.tokens(), s.qkv_dim()}, host);
            OwnedTensor positions(m_be, Shape{s.tokens()}, pos);
            m_be.rope_forward_at(qkv, s, positions, theta);
            CHECK_REL(qkv.to_host(), rope_at(ref::widen(host), s, pos, double(theta)), kTolerance,
                      QString("rope_forward_at %1 theta %2").arg(shape_name(s)).arg(theta));
            // Padding rows and value heads are untouched.
            const auto got = qkv.to_host();
            for (int64_t r = 0; r < s.tokens(); ++r)
                for (int64_t i = 0; i < s.qkv_dim(); ++i) {
                    const size_t at = size_t(r * s.qkv_dim() + i);
                    if (pos[size_t(r)] < 0 || i >= s.q_dim() + s.kv_dim()) QCOMPARE(got[at], host[at]);
                }
        }
    }
}

void TestCpuDecodeOps::ropeAtEqualsRopeForwardBitForBit()
{
    // The cached path must rotate a token exactly as the training path does,
    // or cached logits drift from recomputed ones.
    const AttentionShape s{2, 9, 4, 2, 16};
    for (int64_t offset : {int64_t(0), int64_t(37), int64_t(1000)}) {
        const auto host = random_vector(size_t(s.tokens() * s.qkv_dim()), 5);
        OwnedTensor a(m_be, DType::f32, Shape{s.tokens(), s.qkv_dim()}, host);
        OwnedTensor b(m_be, DType::f32, Shape{s.tokens(), s.qkv_dim()}, host);
        std::vector<int32_t> pos(size_t(s.tokens()));
        for (int64_t r = 0; r < s.tokens(); ++r) pos[size_t(r)] = int32_t(offset + r % s.seq);
        OwnedTensor positions(m_be, Shape{s.tokens()}, pos);
        m_be.rope_forward(a, s, offset, 10000.0f);
        m_be.rope_forward_at(b, s, positions, 10000.0f);
        QCOMPARE(max_abs_diff(a.to_host(), b.to_host()), 0.0);
    }
}

void TestCpuDecodeOps::kvCacheWriteCopiesRowsToTheirSlots()
{
    for (const Case& c : cases()) {
        const AttentionShape& s = c.s;
        const int64_t slot_count = s.batch + 1;   // a cache larger than the batch
        const Shape cache_shape{slot_count, s.n_kv_heads, c.capacity, s.head_dim};
        const auto pos = random_positions(s, c.capacity, 3);
        const auto host = random_vector(size_t(s.tokens() * s.qkv_dim()), 12);
        const auto k0 = random_vector(size_t(cache_shape.numel()), 13);
        const auto v0 = random_vector(size_t(cache_shape.numel()), 14);
        OwnedTensor qkv(m_be, DType::f32, Shape{s.tokens(), s.qkv_dim()}, host);
        OwnedTensor keys(m_be, DType::f32, cache_shape, k0), values(m_be, DType::f32, cache_shape, v0);
        OwnedTensor positions(m_be, Shape{s.tokens()}, pos);
        m_be.kv_cache_write(keys, values, qkv, positions, s);

        auto want_k = k0, want_v = v0;
        for (int64_t r = 0; r < s.tokens(); ++r) {
            if (pos[size_t(r)] < 0) continue;
            for (int64_t kv = 0; kv < s.n_kv_heads; ++kv)
                for (int64_t d = 0; d < s.head_dim; ++d) {
                    const size_t at = cache_at(s, c.capacity, r / s.seq, kv, pos[size_t(r)], d);
                    want_k[at] = host[ref::packed(s, r, s.n_heads + kv, d)];
                    want_v[at] = host[ref::packed(s, r, s.n_heads + s.n_kv_heads + kv, d)];
                }
        }
        QVERIFY2(keys.to_host() == want_k, qPrintable("keys " + shape_name(s)));
        QVERIFY2(values.to_host() == want_v, qPrintable("values " + shape_name(s)));
    }
}

void TestCpuDecodeOps::attentionDecode()
{
    for (const Case& c : cases()) {
        const AttentionShape& s = c.s;
        const Shape cache_shape{s.batch, s.n_kv_heads, c.capacity, s.head_dim};
        const auto pos = random_positions(s, c.capacity, 21);
        const auto host = random_vector(size_t(s.tokens() * s.qkv_dim()), 22);
        const auto k0 = random_vector(size_t(cache_shape.numel()), 23);
        const auto v0 = random_vector(size_t(cache_shape.numel()), 24);
        OwnedTensor qkv(m_be, DType::f32, Shape{s.tokens(), s.qkv_dim()}, host);
        OwnedTensor keys(m_be, DType::f32, cache_shape, k0), values(m_be, DType::f32, cache_shape, v0);
        OwnedTensor positions(m_be, Shape{s.tokens()}, pos);
        OwnedTensor out(m_be, DType::f32, Shape{s.tokens(), s.q_dim()}, std::vector<float>(size_t(s.tokens() * s.q_dim()), 7.0f));
        // The chunk's own keys join the cache first, as the model does.
        m_be.kv_cache_write(keys, values, qkv, positions, s);
        m_be.attention_decode(out, qkv, keys, values, positions, s);
        const auto want = attention_over_cache(ref::widen(host), ref::widen(keys.to_host()), ref::widen(values.to_host()),
                                               pos, s, c.capacity);
        CHECK_REL(out.to_host(), want, kTolerance, "attention_decode " + shape_name(s));
        const auto got = out.to_host();
        for (int64_t r = 0; r < s.tokens(); ++r)
            if (pos[size_t(r)] < 0)
                for (int64_t i = 0; i < s.q_dim(); ++i) QCOMPARE(got[size_t(r * s.q_dim() + i)], 0.0f);
    }
}

void TestCpuDecodeOps::attentionOverFilledCacheEqualsCausalAttention()
{
    for (const AttentionShape s : {AttentionShape{2, 37, 4, 2, 16}, AttentionShape{1, 130, 8, 1, 32}}) {
        const auto host = random_vector(size_t(s.tokens() * s.qkv_dim()), 31);
        OwnedTensor qkv(m_be, DType::f32, Shape{s.tokens(), s.qkv_dim()}, host);
        const Shape cache_shape{s.batch, s.n_kv_heads, s.seq + 3, s.head_dim};
        OwnedTensor keys(m_be, DType::f32, cache_shape), values(m_be, DType::f32, cache_shape);
        std::vector<int32_t> pos(size_t(s.tokens()));
        for (int64_t r = 0; r < s.tokens(); ++r) pos[size_t(r)] = int32_t(r % s.seq);
        OwnedTensor positions(m_be, Shape{s.tokens()}, pos);
        OwnedTensor cached(m_be, DType::f32, Shape{s.tokens(), s.q_dim()});
        OwnedTensor flash(m_be, DType::f32, Shape{s.tokens(), s.q_dim()});
        OwnedTensor lse(m_be, DType::f32, Shape{s.batch, s.n_heads, s.seq});
        m_be.kv_cache_write(keys, values, qkv, positions, s);
        m_be.attention_decode(cached, qkv, keys, values, positions, s);
        m_be.attention_forward(flash, lse, qkv, s);
        QVERIFY2(relative_error(cached.to_host(), flash.to_host()) <= kTolerance, qPrintable(shape_name(s)));
    }
}

void TestCpuDecodeOps::argmaxRowsPicksTheLargestAndItsProbability()
{
    for (int64_t vocab : {int64_t(1), int64_t(7), int64_t(2048), int64_t(32771)}) {
        const int64_t rows = 3;
        std::vector<float> logits = random_vector(size_t(rows * vocab), uint64_t(vocab));
        for (auto& l : logits) l *= 4.0f;
        if (vocab > 9) logits[size_t(vocab + 5)] = logits[size_t(vocab + 9)] = 100.0f;   // a tie: the lower id wins
        OwnedTensor in(m_be, DType::f32, Shape{rows, vocab}, logits);
        OwnedTensor ids(m_be, Shape{rows}, std::vector<int32_t>(size_t(rows), -1));
        OwnedTensor probs(m_be, DType::f32, Shape{rows});
        OwnedTensor next(m_be, Shape{rows}, std::vector<int32_t>(size_t(rows), -1));
        m_be.argmax_rows(ids, probs, in, next);
        const std::vector<float> got_probs = probs.to_host();
        for (int64_t r = 0; r < rows; ++r) {
            const float* row = logits.data() + r * vocab;
            int64_t best = 0;
            for (int64_t i = 1; i < vocab; ++i)
                if (row[i] > row[best]) best = i;
            double sum = 0;
            for (int64_t i = 0; i < vocab; ++i) sum += std::exp(double(row[i]) - double(row[best]));
            QCOMPARE(ids.t.as<int32_t>()[r], int32_t(best));
            QCOMPARE(next.t.as<int32_t>()[r], int32_t(best));   // a burst's next input
            QVERIFY(std::abs(got_probs[size_t(r)] - 1.0 / sum) <= 1e-6 * (1.0 / sum));
        }
        if (vocab > 9) QCOMPARE(ids.t.as<int32_t>()[1], 5);
    }
}

void TestCpuDecodeOps::badInputThrows()
{
    const AttentionShape s{2, 1, 4, 2, 8};
    OwnedTensor qkv(m_be, DType::f32, Shape{s.tokens(), s.qkv_dim()}, random_vector(size_t(s.tokens() * s.qkv_dim()), 1));
    OwnedTensor out(m_be, DType::f32, Shape{s.tokens(), s.q_dim()});
    OwnedTensor keys(m_be, DType::f32, Shape{2, 2, 10, 8}), values(m_be, DType::f32, Shape{2, 2, 10, 8});
    OwnedTensor past_end(m_be, Shape{2}, std::vector<int32_t>{3, 10});
    QVERIFY_THROWS_EXCEPTION(Error, m_be.kv_cache_write(keys, values, qkv, past_end, s));
    QVERIFY_THROWS_EXCEPTION(Error, m_be.attention_decode(out, qkv, keys, values, past_end, s));
    OwnedTensor fine(m_be, Shape{2}, std::vector<int32_t>{3, 9});
    OwnedTensor narrow(m_be, DType::f32, Shape{2, 1, 10, 8});   // one KV head where the shape has two
    QVERIFY_THROWS_EXCEPTION(Error, m_be.kv_cache_write(narrow, narrow, qkv, fine, s));
    QVERIFY_THROWS_EXCEPTION(Error, m_be.attention_decode(out, qkv, narrow, narrow, fine, s));
    OwnedTensor float_positions(m_be, DType::f32, Shape{2});
    QVERIFY_THROWS_EXCEPTION(Error, m_be.rope_forward_at(qkv, s, float_positions, 10000.0f));
    const AttentionShape odd_dim{2, 1, 4, 2, 7};
    OwnedTensor odd_qkv(m_be, DType::f32, Shape{odd_dim.tokens(), odd_dim.qkv_dim()});
    QVERIFY_THROWS_EXCEPTION(Error, m_be.rope_forward_at(odd_qkv, odd_dim, fine, 10000.0f));
    OwnedTensor logits(m_be, DType::f32, Shape{2, 16}), probs(m_be, DType::f32, Shape{2});
    QVERIFY_THROWS_EXCEPTION(Error, m_be.argmax_rows(float_positions, probs, logits, Tensor()));   // ids must be i32
    OwnedTensor three_rows(m_be, DType::f32, Shape{3, 16});
    QVERIFY_THROWS_EXCEPTION(Error, m_be.argmax_rows(fine, probs, three_rows, Tensor()));   // rows differ
    OwnedTensor three_ids(m_be, Shape{3}, std::vector<int32_t>{0, 0, 0});
    QVERIFY_THROWS_EXCEPTION(Error, m_be.argmax_rows(fine, probs, logits, three_ids));   // next tokens: rows differ
}

QTEST_APPLESS_MAIN(TestCpuDecodeOps)
#include "tst_cpu_decode_ops.moc"
