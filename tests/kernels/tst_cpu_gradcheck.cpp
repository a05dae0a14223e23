// Gradient checks, in two links:
//  1. every fp64 reference backward (reference_ops.h) against central finite
//     differences of the fp64 reference forward, on small shapes, so the
//     formulas are right;
//  2. every CpuBackend backward against the fp64 reference backward on random
//     shapes with odd sizes, so the implementation is right.
//
// Tolerances. Finite differences in fp64 with h = 1e-6 carry a truncation
// error ~h² and a rounding error ~1e-16/h, about 1e-9 relative: 1e-6 leaves a
// wide margin while any wrong term in a formula shows up at 1e-2 or worse. The
// fp32 backwards chain more operations than the forwards (recomputed
// probabilities, dS = P∘(dP − D) where dP and D nearly cancel, weight
// gradients summed over thousands of rows); measured, their relative error
// stays near 1e-7..1e-6, and 1e-5 is the bound, far below any real mistake.
// Shapes whose exact gradient vanishes (a norm over one or two elements,
// where only eps keeps it off zero) measure cancellation, not correctness,
// and are left out.
#include "kernels/cpu/cpu_backend.h"
#include "tests/kernels/reference_ops.h"
#include "tests/support/test_support.h"

#include <QtTest>

using namespace crucible;
using namespace crucible::test;

namespace {

constexpr double kFiniteDifferenceTolerance = 1e-6;
constexpr double kBackwardTolerance = 1e-5;

double report(double err, const QString& what)
{
    if (qEnvironmentVariableIsSet("CRUCIBLE_TEST_VERBOSE")) qInfo().noquote() << what << err;
    return err;
}

#define CHECK_BACKEND(got, want, what)                                                                       \
    do {                                                                                                     \
        const double err_ = report(ref::rel_error(ref::widen(got), (want)), (what));                         \
        QVERIFY2(err_ <= kBackwardTolerance,                                                                 \
                 qPrintable(QString("%1: relative error %2 > %3").arg(what).arg(err_).arg(kBackwardTolerance))); \
    } while (0)

#define CHECK_FINITE_DIFFERENCE(analytic, f, x, weights, what)                                               \
    do {                                                                                                     \
        const ref::Vec numeric_ = ref::numeric_gradient((f), (x), (weights));                                \
        const double err_ = report(ref::rel_error((analytic), numeric_), (what));                            \
        QVERIFY2(err_ <= kFiniteDifferenceTolerance,                                                         \
                 qPrintable(QString("%1: reference backward vs finite differences %2").arg(what).arg(err_))); \
    } while (0)

ref::Vec random_ref(size_t n, uint64_t seed, float scale = 1.0f) { return ref::widen(random_vector(n, seed, scale)); }

ref::Vec plus(ref::Vec a, const std::vector<float>& b)
{
    for (size_t i = 0; i < a.size(); ++i) a[i] += b[i];
    return a;
}

QString shape_name(const AttentionShape& s)
{
    return QString("B%1 T%2 H%3 KV%4 D%5").arg(s.batch).arg(s.seq).arg(s.n_heads).arg(s.n_kv_heads).arg(s.head_dim);
}

} // namespace

class TestCpuGradcheck : public QObject {
    Q_OBJECT

private slots:
    void embedding();
    void linear();
    void rmsnorm();
    void layernorm();
    void qkNorm();
    void rope();
    void attention();
    void swiglu();
    void gelu();
    void crossEntropyAndClassifier();

private:
    CpuBackend m_be;
};

void TestCpuGradcheck::embedding()
{
    // Reference: the backward of a lookup is a scatter-add.
    {
        const int64_t vocab = 5, dim = 3;
        const std::vector<int32_t> ids = {1, 4, 1, 1, 0};   // repeated ids accumulate
        const auto w = random_ref(ids.size() * dim, 1);
        const auto f = [&](const ref::Vec& table) { return ref::embedding(ids, table, dim); };
        CHECK_FINITE_DIFFERENCE(ref::embedding_backward(ids, w, vocab, dim), f, random_ref(size_t(vocab * dim), 2), w,
                                "embedding dtable");
    }
    // Backend: many repeats of few ids, accumulated onto a prior gradient.
    const int64_t vocab = 259, dim = 45, n = 111;
    auto ids = random_ids(size_t(n), 7, 3);   // ids 0..6 only: heavy repetition
    ids[10] = int32_t(vocab - 1);
    const auto dout = random_vector(size_t(n * dim), 4), prior = random_vector(size_t(vocab * dim), 5);
    for (int threads : {1, 2, 3}) {
        CpuBackend be(threads);
        OwnedTensor dtable(be, DType::f32, Shape{vocab, dim}, prior), tok(be, Shape{n}, ids),
            dy(be, DType::f32, Shape{n, dim}, dout);
        be.embedding_backward(dtable, tok, dy);
        CHECK_BACKEND(dtable.to_host(), plus(ref::embedding_backward(ids, ref::widen(dout), vocab, dim), prior),
                      QString("embedding backward, %1 threads").arg(threads));
    }
}

void TestCpuGradcheck::linear()
{
    {
        const int64_t M = 3, K = 4, N = 5;
        const auto x = random_ref(size_t(M * K), 6), w = random_ref(size_t(N * K), 7), dy = random_ref(size_t(M * N), 8);
        const auto g = ref::linear_backward(dy, x, w, M, K, N);
        CHECK_FINITE_DIFFERENCE(g.din, [&](const ref::Vec& v) { return ref::linear(v, w, M, K, N); }, x, dy, "linear din");
        CHECK_FINITE_DIFFERENCE(g.dweight, [&](const ref::Vec& v) { return ref::linear(x, v, M, K, N); }, w, dy,
                                "linear dweight");
    }
    struct Case {
        int64_t m, k, n;
    };
    for (const Case c : {Case{1, 1, 1}, Case{37, 45, 259}, Case{130, 64, 7}, Case{2048, 128, 256}}) {
        const auto x = random_vector(size_t(c.m * c.k), 9), w = random_vector(size_t(c.n * c.k), 10),
                   dy = random_vector(size_t(c.m * c.n), 11), prior_din = random_vector(size_t(c.m * c.k), 12),
                   prior_dw = random_vector(size_t(c.n * c.k), 13);
        const auto want = ref::linear_backward(ref::widen(dy), ref::widen(x), ref::widen(w), c.m, c.k, c.n);
        OwnedTensor tx(m_be, DType::f32, Shape{c.m, c.k}, x), tw(m_be, DType::f32, Shape{c.n, c.k}, w),
            tdy(m_be, DType::f32, Shape{c.m, c.n}, dy), din(m_be, DType::f32, Shape{c.m, c.k}, prior_din),
            dw(m_be, DType::f32, Shape{c.n, c.k}, prior_dw);
        const QString name = QString("linear %1x%2x%3").arg(c.m).arg(c.k).arg(c.n);

        m_be.linear_backward(din, Tensor(), tdy, tx, tw, false);   // din only, overwritten
        CHECK_BACKEND(din.to_host(), want.din, name + " din");
        QCOMPARE(dw.to_host(), prior_dw);                          // skipped

        m_be.upload(din, prior_din.data(), DType::f32);
        m_be.linear_backward(Tensor(), dw, tdy, tx, tw, false);   // dweight only, accumulated
        CHECK_BACKEND(dw.to_host(), plus(want.dweight, prior_dw), name + " dweight");
        QCOMPARE(din.to_host(), prior_din);                        // skipped

        m_be.upload(dw, prior_dw.data(), DType::f32);
        m_be.linear_backward(din, dw, tdy, tx, tw, true);          // both, din accumulated too
        CHECK_BACKEND(din.to_host(), plus(want.din, prior_din), name + " din accumulated");
        CHECK_BACKEND(dw.to_host(), plus(want.dweight, prior_dw), name + " dweight with din");
    }
}

void TestCpuGradcheck::rmsnorm()
{
    const double eps = double(1e-5f);
    {
        const int64_t rows = 3, cols = 5;
        const auto x = random_ref(size_t(rows * cols), 14), w = random_ref(size_t(cols), 15), dy = random_ref(size_t(rows * cols), 16);
        const auto g = ref::rmsnorm_backward(dy, x, w, rows, cols, eps);
        CHECK_FINITE_DIFFERENCE(g.dx, [&](const ref::Vec& v) { return ref::rmsnorm(v, w, rows, cols, eps).out; }, x, dy,
                                "rmsnorm dx");
        CHECK_FINITE_DIFFERENCE(g.dweight, [&](const ref::Vec& v) { return ref::rmsnorm(x, v, rows, cols, eps).out; }, w,
                                dy, "rmsnorm dweight");
    }
    for (auto [rows, cols] : {std::pair<int64_t, int64_t>{1, 7}, {37, 45}, {2048, 128}}) {
        const auto x = random_vector(size_t(rows * cols), 17, 2.0f), w = random_vector(size_t(cols), 18),
                   dy = random_vector(size_t(rows * cols), 19), prior_dx = random_vector(size_t(rows * cols), 20),
                   prior_dw = random_vector(size_t(cols), 21);
        const auto want = ref::rmsnorm_backward(ref::widen(dy), ref::widen(x), ref::widen(w), rows, cols, eps);
        OwnedTensor tx(m_be, DType::f32, Shape{rows, cols}, x), tw(m_be, DType::f32, Shape{cols}, w),
            tdy(m_be, DType::f32, Shape{rows, cols}, dy), out(m_be, DType::f32, Shape{rows, cols}),
            rstd(m_be, DType::f32, Shape{rows}), dx(m_be, DType::f32, Shape{rows, cols}, prior_dx),
            dw(m_be, DType::f32, Shape{cols}, prior_dw);
        m_be.rmsnorm_forward(out, rstd, tx, tw, float(eps));
        const QString name = QString("rmsnorm %1x%2").arg(rows).arg(cols);
        m_be.rmsnorm_backward(dx, dw, tdy, tx, tw, rstd, false);
        CHECK_BACKEND(dx.to_host(), want.dx, name + " dx");
        CHECK_BACKEND(dw.to_host(), plus(want.dweight, prior_dw), name + " dweight");
        m_be.upload(dx, prior_dx.data(), DType::f32);
        m_be.rmsnorm_backward(dx, Tensor(), tdy, tx, tw, rstd, true);   // accumulate, no dweight
        CHECK_BACKEND(dx.to_host(), plus(want.dx, prior_dx), name + " dx accumulated");
    }
}

void TestCpuGradcheck::layernorm()
{
    const double eps = double(1e-5f);
    {
        const int64_t rows = 3, cols = 5;
        const auto x = random_ref(size_t(rows * cols), 22), w = random_ref(size_t(cols), 23), b = random_ref(size_t(cols), 24),
                   dy = random_ref(size_t(rows * cols), 25);
        const auto g = ref::layernorm_backward(dy, x, w, rows, cols, eps);
        CHECK_FINITE_DIFFERENCE(g.dx, [&](const ref::Vec& v) { return ref::layernorm(v, w, b, rows, cols, eps).out; }, x,
                                dy, "layernorm dx");
        CHECK_FINITE_DIFFERENCE(g.dweight, [&](const ref::Vec& v) { return ref::layernorm(x, v, b, rows, cols, eps).out; },
                                w, dy, "layernorm dweight");
        CHECK_FINITE_DIFFERENCE(g.dbias, [&](const ref::Vec& v) { return ref::layernorm(x, w, v, rows, cols, eps).out; },
                                b, dy, "layernorm dbias");
    }
    for (auto [rows, cols] : {std::pair<int64_t, int64_t>{1, 7}, {37, 45}, {2048, 128}}) {
        auto x = random_vector(size_t(rows * cols), 26, 2.0f);
        for (auto& v : x) v -= 1.0f;
        const auto w = random_vector(size_t(cols), 27), b = random_vector(size_t(cols), 28),
                   dy = random_vector(size_t(rows * cols), 29), prior_dx = random_vector(size_t(rows * cols), 30),
                   prior_dw = random_vector(size_t(cols), 31), prior_db = random_vector(size_t(cols), 32);
        const auto want = ref::layernorm_backward(ref::widen(dy), ref::widen(x), ref::widen(w), rows, cols, eps);
        OwnedTensor tx(m_be, DType::f32, Shape{rows, cols}, x), tw(m_be, DType::f32, Shape{cols}, w),
            tb(m_be, DType::f32, Shape{cols}, b), tdy(m_be, DType::f32, Shape{rows, cols}, dy),
            out(m_be, DType::f32, Shape{rows, cols}), mean(m_be, DType::f32, Shape{rows}),
            rstd(m_be, DType::f32, Shape{rows}), dx(m_be, DType::f32, Shape{rows, cols}, prior_dx),
            dw(m_be, DType::f32, Shape{cols}, prior_dw), db(m_be, DType::f32, Shape{cols}, prior_db);
        m_be.layernorm_forward(out, mean, rstd, tx, tw, tb, float(eps));
        const QString name = QString("layernorm %1x%2").arg(rows).arg(cols);
        m_be.layernorm_backward(dx, dw, db, tdy, tx, tw, mean, rstd, true);
        CHECK_BACKEND(dx.to_host(), plus(want.dx, prior_dx), name + " dx accumulated");
        CHECK_BACKEND(dw.to_host(), plus(want.dweight, prior_dw), name + " dweight");
        CHECK_BACKEND(db.to_host(), plus(want.dbias, prior_db), name + " dbias");
        m_be.layernorm_backward(dx, Tensor(), Tensor(), tdy, tx, tw, mean, rstd, false);
        CHECK_BACKEND(dx.to_host(), want.dx, name + " dx");
    }
}

void TestCpuGradcheck::qkNorm()
{
    const double eps = double(1e-6f);
    {
        const AttentionShape s{1, 2, 2, 1, 4};
        const auto qkv = random_ref(size_t(s.tokens() * s.qkv_dim()), 33), qw = random_ref(size_t(s.head_dim), 34),
                   kw = random_ref(size_t(s.head_dim), 35), dy = random_ref(size_t(s.tokens() * s.qkv_dim()), 36);
        const auto g = ref::qk_norm_backward(dy, qkv, qw, kw, s, eps);
        CHECK_FINITE_DIFFERENCE(g.dqkv, [&](const ref::Vec& v) { return ref::qk_norm(v, qw, kw, s, eps); }, qkv, dy,
                                "qk_norm dqkv");
        CHECK_FINITE_DIFFERENCE(g.dq_weight, [&](const ref::Vec& v) { return ref::qk_norm(qkv, v, kw, s, eps); }, qw, dy,
                                "qk_norm dq_weight");
        CHECK_FINITE_DIFFERENCE(g.dk_weight, [&](const ref::Vec& v) { return ref::qk_norm(qkv, qw, v, s, eps); }, kw, dy,
                                "qk_norm dk_weight");
    }
    for (const AttentionShape s : {AttentionShape{2, 7, 4, 2, 6}, AttentionShape{1, 33, 4, 1, 32},
                                   AttentionShape{16, 128, 4, 2, 32}}) {
        const int64_t n = s.tokens(), heads = s.n_heads + s.n_kv_heads, D = s.head_dim;
        const auto qkv = random_vector(size_t(n * s.qkv_dim()), 37), qw = random_vector(size_t(D), 38),
                   kw = random_vector(size_t(D), 39), dy = random_vector(size_t(n * s.qkv_dim()), 40),
                   prior_q = random_vector(size_t(D), 41), prior_k = random_vector(size_t(D), 42);
        const auto want = ref::qk_norm_backward(ref::widen(dy), ref::widen(qkv), ref::widen(qw), ref::widen(kw), s, eps);
        OwnedTensor in(m_be, DType::f32, Shape{n, s.qkv_dim()}, qkv), out(m_be, DType::f32, Shape{n, s.qkv_dim()}),
            rstd(m_be, DType::f32, Shape{n, heads}), tq(m_be, DType::f32, Shape{D}, qw), tk(m_be, DType::f32, Shape{D}, kw),
            tdy(m_be, DType::f32, Shape{n, s.qkv_dim()}, dy), dx(m_be, DType::f32, Shape{n, s.qkv_dim()}),
            dq(m_be, DType::f32, Shape{D}, prior_q), dk(m_be, DType::f32, Shape{D}, prior_k);
        m_be.qk_norm_forward(out, rstd, in, tq, tk, s, float(eps));
        m_be.qk_norm_backward(dx, dq, dk, tdy, in, tq, tk, rstd, s);
        CHECK_BACKEND(dx.to_host(), want.dqkv, "qk_norm dqkv " + shape_name(s));
        CHECK_BACKEND(dq.to_host(), plus(want.dq_weight, prior_q), "qk_norm dq_weight " + shape_name(s));
        CHECK_BACKEND(dk.to_host(), plus(want.dk_weight, prior_k), "qk_norm dk_weight " + shape_name(s));
    }
}

void TestCpuGradcheck::rope()
{
    {
        const AttentionShape s{2, 3, 2, 1, 4};
        const auto qkv = random_ref(size_t(s.tokens() * s.qkv_dim()), 43), dy = random_ref(size_t(s.tokens() * s.qkv_dim()), 44);
        CHECK_FINITE_DIFFERENCE(ref::rope(dy, s, 7, 10000.0, true),
                                [&](const ref::Vec& v) { return ref::rope(v, s, 7, 10000.0); }, qkv, dy, "rope dqkv");
    }
    for (const AttentionShape s : {AttentionShape{2, 7, 4, 2, 6}, AttentionShape{1, 33, 4, 1, 64}}) {
        for (int64_t offset : {int64_t(0), int64_t(999)}) {
            const auto dy = random_vector(size_t(s.tokens() * s.qkv_dim()), 45);
            OwnedTensor d(m_be, DType::f32, Shape{s.tokens(), s.qkv_dim()}, dy);
            m_be.rope_backward(d, s, offset, 10000.0f);
            CHECK_BACKEND(d.to_host(), ref::rope(ref::widen(dy), s, offset, 10000.0, true),
                          QString("rope backward %1 offset %2").arg(shape_name(s)).arg(offset));
        }
    }
}

void TestCpuGradcheck::attention()
{
    for (const AttentionShape s : {AttentionShape{2, 5, 4, 2, 4}, AttentionShape{1, 4, 3, 1, 6}}) {
        const auto qkv = random_ref(size_t(s.tokens() * s.qkv_dim()), 46), dy = random_ref(size_t(s.tokens() * s.q_dim()), 47);
        CHECK_FINITE_DIFFERENCE(ref::attention_backward(dy, qkv, s),
                                [&](const ref::Vec& v) { return ref::attention(v, s).out; }, qkv, dy,
                                "attention dqkv " + shape_name(s));
    }
    for (const AttentionShape s : {AttentionShape{1, 1, 1, 1, 8}, AttentionShape{2, 7, 4, 2, 6},
                                   AttentionShape{1, 33, 4, 1, 32}, AttentionShape{2, 33, 2, 2, 8},
                                   AttentionShape{1, 130, 8, 2, 64}, AttentionShape{2, 130, 4, 4, 32},
                                   AttentionShape{1, 64, 4, 2, 128}, AttentionShape{1, 300, 2, 1, 16}}) {
        const auto qkv = random_vector(size_t(s.tokens() * s.qkv_dim()), 48, 1.5f),
                   dy = random_vector(size_t(s.tokens() * s.q_dim()), 49);
        OwnedTensor tq(m_be, DType::f32, Shape{s.tokens(), s.qkv_dim()}, qkv),
            out(m_be, DType::f32, Shape{s.tokens(), s.q_dim()}), lse(m_be, DType::f32, Shape{s.batch, s.n_heads, s.seq}),
            tdy(m_be, DType::f32, Shape{s.tokens(), s.q_dim()}, dy), dqkv(m_be, DType::f32, Shape{s.tokens(), s.qkv_dim()});
        m_be.fill(dqkv, 7.0f);   // overwritten, not accumulated
        m_be.attention_forward(out, lse, tq, s);
        m_be.attention_backward(dqkv, tdy, tq, out, lse, s);
        CHECK_BACKEND(dqkv.to_host(), ref::attention_backward(ref::widen(dy), ref::widen(qkv), s),
                      "attention backward " + shape_name(s));
    }
}

void TestCpuGradcheck::swiglu()
{
    {
        const int64_t rows = 2, f = 3;
        const auto x = random_ref(size_t(rows * 2 * f), 50, 2.0f), dy = random_ref(size_t(rows * f), 51);
        CHECK_FINITE_DIFFERENCE(ref::swiglu_backward(dy, x, rows, f),
                                [&](const ref::Vec& v) { return ref::swiglu(v, rows, f); }, x, dy, "swiglu");
    }
    for (auto [rows, f] : {std::pair<int64_t, int64_t>{1, 1}, {37, 45}, {2048, 384}}) {
        const auto x = random_vector(size_t(rows * 2 * f), 52, 3.0f), dy = random_vector(size_t(rows * f), 53);
        OwnedTensor in(m_be, DType::f32, Shape{rows, 2 * f}, x), tdy(m_be, DType::f32, Shape{rows, f}, dy),
            dx(m_be, DType::f32, Shape{rows, 2 * f});
        m_be.swiglu_backward(dx, tdy, in);
        CHECK_BACKEND(dx.to_host(), ref::swiglu_backward(ref::widen(dy), ref::widen(x), rows, f),
                      QString("swiglu backward %1x%2").arg(rows).arg(f));
    }
}

void TestCpuGradcheck::gelu()
{
    {
        const auto x = random_ref(7, 54, 2.0f), dy = random_ref(7, 55);
        CHECK_FINITE_DIFFERENCE(ref::gelu_backward(dy, x), [&](const ref::Vec& v) { return ref::gelu(v); }, x, dy, "gelu");
    }
    for (int64_t n : {int64_t(1), int64_t(37 * 45), int64_t(100003)}) {
        const auto x = random_vector(size_t(n), 56, 3.0f), dy = random_vector(size_t(n), 57);
        OwnedTensor in(m_be, DType::f32, Shape{n}, x), tdy(m_be, DType::f32, Shape{n}, dy), dx(m_be, DType::f32, Shape{n});
        m_be.gelu_backward(dx, tdy, in);
        CHECK_BACKEND(dx.to_host(), ref::gelu_backward(ref::widen(dy), ref::widen(x)), QString("gelu backward %1").arg(n));
    }
}

void TestCpuGradcheck::crossEntropyAndClassifier()
{
    // The backend side of both is checked in tst_cpu_ops (the gradient is an
    // output of the op there); here the reference gradient itself is checked.
    const int64_t rows = 4, vocab = 7, dim = 3;
    const std::vector<int32_t> targets = {2, -1, 6, 0};
    const double grad_scale = 0.5;
    const auto logits = random_ref(size_t(rows * vocab), 58, 2.0f);
    const ref::Vec ones(size_t(rows), 1.0);
    const auto scaled_losses = [&](const ref::Vec& z) {
        auto l = ref::cross_entropy(z, targets, rows, vocab, grad_scale).losses;
        for (auto& v : l) v *= grad_scale;
        return l;
    };
    CHECK_FINITE_DIFFERENCE(ref::cross_entropy(logits, targets, rows, vocab, grad_scale).grad, scaled_losses, logits, ones,
                            "cross-entropy logits");

    // The classifier head: losses(x·Wᵀ), backward through the linear layer.
    const auto x = random_ref(size_t(rows * dim), 59), w = random_ref(size_t(vocab * dim), 60);
    const auto dlogits = ref::cross_entropy(ref::linear(x, w, rows, dim, vocab), targets, rows, vocab, grad_scale).grad;
    const auto g = ref::linear_backward(dlogits, x, w, rows, dim, vocab);
    CHECK_FINITE_DIFFERENCE(g.din, [&](const ref::Vec& v) { return scaled_losses(ref::linear(v, w, rows, dim, vocab)); },
                            x, ones, "classifier dx");
    CHECK_FINITE_DIFFERENCE(g.dweight,
                            [&](const ref::Vec& v) { return scaled_losses(ref::linear(x, v, rows, dim, vocab)); }, w,
                            ones, "classifier dweight");
}

QTEST_APPLESS_MAIN(TestCpuGradcheck)
#include "tst_cpu_gradcheck.moc"
