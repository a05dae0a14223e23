// CpuBackend forward ops against the fp64 references of reference_ops.h on
// random shapes with odd sizes, plus memory, transfers, dtype conversion,
// determinism and bad input. Forwards must agree to a relative error
// ‖a − b‖/‖b‖ of 1e-5: every op is a short chain of fp32 operations (eps ≈
// 6e-8) with sums of at most a few thousand terms.
#include "kernels/cpu/cpu_backend.h"
#include "tests/kernels/reference_ops.h"
#include "tests/support/test_support.h"

#include <QtTest>

#include <bit>
#include <cstring>

using namespace crucible;
using namespace crucible::test;

namespace {

constexpr double kForwardTolerance = 1e-5;

#define CHECK_REL(got, want, tol, what)                                                                     \
    do {                                                                                                    \
        const double err_ = ref::rel_error(ref::widen(got), (want));                                        \
        QVERIFY2(err_ <= (tol), qPrintable(QString("%1: relative error %2 > %3").arg(what).arg(err_).arg(tol))); \
    } while (0)

QString shape_name(const AttentionShape& s)
{
    return QString("B%1 T%2 H%3 KV%4 D%5").arg(s.batch).arg(s.seq).arg(s.n_heads).arg(s.n_kv_heads).arg(s.head_dim);
}

// Odd sizes on purpose: GQA ratios 1, 2, 4 and MQA, head_dim 6..128, T from 1
// past two key blocks.
const std::vector<AttentionShape>& attention_shapes()
{
    static const std::vector<AttentionShape> shapes = {
        {1, 1, 1, 1, 8},    {2, 7, 4, 2, 6},   {1, 33, 4, 1, 32},  {2, 33, 2, 2, 8},
        {1, 130, 8, 2, 64}, {2, 130, 4, 4, 32}, {1, 64, 4, 2, 128}, {1, 300, 2, 1, 16},
    };
    return shapes;
}

uint16_t bf16_bits_of(CpuBackend& be, float value)
{
    OwnedTensor t(be, DType::bf16, Shape{1});
    be.upload(t, &value, DType::f32);
    uint16_t bits = 0;
    be.download(&bits, DType::bf16, t);
    return bits;
}

uint16_t f16_bits_of(CpuBackend& be, float value)
{
    OwnedTensor t(be, DType::f16, Shape{1});
    be.upload(t, &value, DType::f32);
    uint16_t bits = 0;
    be.download(&bits, DType::f16, t);
    return bits;
}

} // namespace

class TestCpuOps : public QObject {
    Q_OBJECT

private slots:
    void allocateAlignsAndThrows();
    void identityAndFacts();
    void uploadDownloadRoundTrip();
    void bf16RoundsToNearestEven();
    void f16RoundsToNearestEven();
    void convertBetweenDtypes();
    void unsupportedConversionThrows();
    void fillEveryDtype();
    void add();
    void embeddingForward();
    void linearForward();
    void rmsnormForward();
    void layernormForward();
    void qkNormForward();
    void ropeForward();
    void ropeForwardThenBackwardIsIdentity();
    void attentionForward();
    void attentionIsCausal();
    void swigluForward();
    void geluForward();
    void softmaxCrossEntropy();
    void softmaxCrossEntropyIsStable();
    void classifierComposite();
    void sumSquares();
    void resultsRepeatBitForBit();
    void badInputThrows();

private:
    CpuBackend m_be;
};

// ---- memory and identity ---------------------------------------------------------------------

void TestCpuOps::allocateAlignsAndThrows()
{
    for (size_t bytes : {size_t(0), size_t(1), size_t(63), size_t(100), size_t(1) << 20}) {
        void* p = m_be.allocate(bytes);
        QVERIFY(p != nullptr);
        QCOMPARE(reinterpret_cast<uintptr_t>(p) % 64, uintptr_t(0));
        m_be.deallocate(p);
    }
    try {
        m_be.allocate(size_t(1) << 60);
        QFAIL("allocating an exabyte did not throw");
    } catch (const Error& e) {
        QVERIFY2(QString(e.what()).contains("memory"), e.what());
    }
}

void TestCpuOps::identityAndFacts()
{
    QCOMPARE(m_be.device(), DeviceKind::cpu);
    QCOMPARE(m_be.compute_dtype(), DType::f32);
    QVERIFY(m_be.threads() >= 1);
    QCOMPARE(CpuBackend(3).threads(), 3);
    const MemoryInfo mem = m_be.memory_info();
    QVERIFY(mem.total_bytes > 0);
    QVERIFY(mem.free_bytes > 0 && mem.free_bytes <= mem.total_bytes);
    // The process's resident set, measured: 64 MB written in a fresh
    // allocation shows (at least half of it: pages may be shared or reused).
    QVERIFY(mem.used_bytes > 0 && mem.peak_bytes >= mem.used_bytes);
    {
        constexpr size_t kBytes = size_t(64) << 20;
        void* block = m_be.allocate(kBytes);
        std::memset(block, 1, kBytes);
        const MemoryInfo grown = m_be.memory_info();
        m_be.deallocate(block);
        QVERIFY2(grown.used_bytes >= mem.used_bytes + kBytes / 2,
                 qPrintable(QStringLiteral("%1 -> %2").arg(mem.used_bytes).arg(grown.used_bytes)));
        QVERIFY(grown.peak_bytes >= grown.used_bytes);
    }
    const DeviceFacts f = m_be.facts();
    QVERIFY(!f.name.empty());
    QVERIFY(f.peak_tflops > 0.0);
    bool has_openblas = false, has_simd = false;
    for (const auto& [key, value] : f.details) {
        has_openblas |= key == "OpenBLAS" && value.find("OpenBLAS") != std::string::npos;
        has_simd |= key == "SIMD" && !value.empty();
    }
    QVERIFY(has_openblas);
    QVERIFY(has_simd);
}

// ---- transfers and conversion -------------------------------------------------------------------

void TestCpuOps::uploadDownloadRoundTrip()
{
    const auto host = random_vector(1001, 1);
    OwnedTensor t(m_be, DType::f32, Shape{7, 143}, host);
    QCOMPARE(t.to_host(), host);

    std::vector<int32_t> ids = {0, -5, 7, 2147483647, -2147483647 - 1};
    OwnedTensor it(m_be, Shape{5}, ids);
    std::vector<int32_t> back(5);
    m_be.download(back.data(), DType::i32, it);
    QCOMPARE(back, ids);

    // f32 -> bf16 on upload, bf16 -> f32 on download: equals host-side rounding.
    OwnedTensor b(m_be, DType::bf16, Shape{1001}, host);
    const auto rounded = b.to_host();
    for (size_t i = 0; i < host.size(); ++i) {
        QVERIFY(std::fabs(rounded[i] - host[i]) <= std::fabs(host[i]) * 0x1p-8f);
        QCOMPARE(std::bit_cast<uint32_t>(rounded[i]) & 0xffffu, 0u);
    }
}

void TestCpuOps::bf16RoundsToNearestEven()
{
    // bf16 keeps the top 16 bits of an f32; the dropped half decides.
    QCOMPARE(bf16_bits_of(m_be, 1.0f), uint16_t(0x3f80));
    QCOMPARE(bf16_bits_of(m_be, std::bit_cast<float>(0x3f808000u)), uint16_t(0x3f80));   // tie, even stays
    QCOMPARE(bf16_bits_of(m_be, std::bit_cast<float>(0x3f818000u)), uint16_t(0x3f82));   // tie, odd goes up
    QCOMPARE(bf16_bits_of(m_be, std::bit_cast<float>(0x3f808001u)), uint16_t(0x3f81));   // above the tie
    QCOMPARE(bf16_bits_of(m_be, std::bit_cast<float>(0x3f807fffu)), uint16_t(0x3f80));   // below the tie
    QCOMPARE(bf16_bits_of(m_be, -2.0f), uint16_t(0xc000));
    QCOMPARE(bf16_bits_of(m_be, -0.0f), uint16_t(0x8000));
    QCOMPARE(bf16_bits_of(m_be, INFINITY), uint16_t(0x7f80));
    QCOMPARE(bf16_bits_of(m_be, std::bit_cast<float>(0x7f7fffffu)), uint16_t(0x7f80));   // max float overflows
    const uint16_t nan = bf16_bits_of(m_be, std::bit_cast<float>(0x7f800001u));        // signalling NaN
    QVERIFY((nan & 0x7f80) == 0x7f80 && (nan & 0x007f) != 0);                          // still a NaN
}

void TestCpuOps::f16RoundsToNearestEven()
{
    QCOMPARE(f16_bits_of(m_be, 1.0f), uint16_t(0x3c00));
    QCOMPARE(f16_bits_of(m_be, 1.0f + 0x1p-11f), uint16_t(0x3c00));          // tie, even stays
    QCOMPARE(f16_bits_of(m_be, 1.0f + 3 * 0x1p-11f), uint16_t(0x3c02));      // tie, odd goes up
    QCOMPARE(f16_bits_of(m_be, -65504.0f), uint16_t(0xfbff));                // largest finite
    QCOMPARE(f16_bits_of(m_be, 65520.0f), uint16_t(0x7c00));                 // rounds to infinity
    QCOMPARE(f16_bits_of(m_be, 0x1p-24f), uint16_t(0x0001));                 // smallest subnormal
    OwnedTensor h(m_be, DType::f16, Shape{3}, std::vector<float>{0.5f, -3.25f, 1024.0f});
    QCOMPARE(h.to_host(), (std::vector<float>{0.5f, -3.25f, 1024.0f}));
}

void TestCpuOps::convertBetweenDtypes()
{
    const auto host = random_vector(333, 2, 3.0f);
    OwnedTensor f(m_be, DType::f32, Shape{333}, host);
    OwnedTensor b(m_be, DType::bf16, Shape{3, 111});
    OwnedTensor h(m_be, DType::f16, Shape{333});
    OwnedTensor f2(m_be, DType::f32, Shape{333});
    m_be.convert(b, f);
    OwnedTensor b_ref(m_be, DType::bf16, Shape{333}, host);   // the upload path rounds the same way
    QCOMPARE(b.to_host(), b_ref.to_host());
    m_be.convert(h, b);                    // every bf16 value here is exact in f16 (|x| < 2^15, 8-bit mantissa)
    m_be.convert(f2, h);
    QCOMPARE(f2.to_host(), b_ref.to_host());
    m_be.convert(f2, f);                   // same dtype: a copy
    QCOMPARE(f2.to_host(), host);
}

void TestCpuOps::unsupportedConversionThrows()
{
    OwnedTensor f(m_be, DType::f32, Shape{4});
    OwnedTensor i(m_be, DType::i32, Shape{4});
    QVERIFY_THROWS_EXCEPTION(Error, m_be.convert(i, f));
    QVERIFY_THROWS_EXCEPTION(Error, m_be.convert(f, i));
    const int32_t ids[4] = {1, 2, 3, 4};
    QVERIFY_THROWS_EXCEPTION(Error, m_be.upload(f, ids, DType::i32));
    OwnedTensor small(m_be, DType::f32, Shape{3});
    QVERIFY_THROWS_EXCEPTION(Error, m_be.convert(small, f));
}

void TestCpuOps::fillEveryDtype()
{
    OwnedTensor f(m_be, DType::f32, Shape{100003});
    m_be.fill(f, -1.5f);
    for (float v : f.to_host()) QCOMPARE(v, -1.5f);
    OwnedTensor b(m_be, DType::bf16, Shape{37});
    m_be.fill(b, 1.00390625f);   // 1 + 2^-8: a tie that rounds to 1
    for (float v : b.to_host()) QCOMPARE(v, 1.0f);
    OwnedTensor h(m_be, DType::f16, Shape{37});
    m_be.fill(h, 0.1f);
    for (float v : h.to_host()) QCOMPARE(v, float(_Float16(0.1f)));
    OwnedTensor i(m_be, DType::i32, Shape{45});
    m_be.fill(i, -7.0f);
    for (float v : i.to_host()) QCOMPARE(v, -7.0f);
}

void TestCpuOps::add()
{
    for (int64_t n : {int64_t(1), int64_t(45), int64_t(200003)}) {
        const auto a = random_vector(size_t(n), 3), b = random_vector(size_t(n), 4);
        OwnedTensor ta(m_be, DType::f32, Shape{n}, a), tb(m_be, DType::f32, Shape{n}, b), out(m_be, DType::f32, Shape{n});
        m_be.add(out, ta, tb);
        ref::Vec want(static_cast<size_t>(n));
        for (size_t i = 0; i < want.size(); ++i) want[i] = double(a[i]) + double(b[i]);
        CHECK_REL(out.to_host(), want, kForwardTolerance, "add");
        m_be.add(ta, ta, tb);   // out aliases a
        CHECK_REL(ta.to_host(), want, kForwardTolerance, "add in place");
    }
}

// ---- layers ---------------------------------------------------------------------------------------

void TestCpuOps::embeddingForward()
{
    const int64_t vocab = 259, dim = 45, n = 37;
    auto ids = random_ids(size_t(n), int32_t(vocab), 5);
    ids[3] = ids[4] = ids[20];   // repeats
    ids[0] = 0;
    ids[1] = int32_t(vocab - 1);
    const auto table = random_vector(size_t(vocab * dim), 6);
    OwnedTensor tt(m_be, DType::f32, Shape{vocab, dim}, table), tok(m_be, Shape{n}, ids),
        out(m_be, DType::f32, Shape{n, dim});
    m_be.embedding_forward(out, tok, tt);
    // A lookup is a copy: exact.
    const auto want = ref::embedding(ids, ref::widen(table), dim);
    QCOMPARE(ref::widen(out.to_host()), want);
}

void TestCpuOps::linearForward()
{
    struct Case {
        int64_t m, k, n;
    };
    // m ≤ 4 takes the GEMV path (the larger ones split across threads).
    for (const Case c : {Case{1, 1, 1}, Case{37, 45, 259}, Case{130, 64, 7}, Case{2, 384, 128}, Case{3, 256, 1024},
                         Case{4, 130, 2049}, Case{5, 130, 2049}}) {
        const auto x = random_vector(size_t(c.m * c.k), 7), w = random_vector(size_t(c.n * c.k), 8),
                   prior = random_vector(size_t(c.m * c.n), 9);
        OwnedTensor tx(m_be, DType::f32, Shape{c.m, c.k}, x), tw(m_be, DType::f32, Shape{c.n, c.k}, w),
            out(m_be, DType::f32, Shape{c.m, c.n}, prior);
        const auto want = ref::linear(ref::widen(x), ref::widen(w), c.m, c.k, c.n);
        const QString name = QString("linear %1x%2x%3").arg(c.m).arg(c.k).arg(c.n);
        m_be.linear_forward(out, tx, tw, false);
        CHECK_REL(out.to_host(), want, kForwardTolerance, name);

        m_be.upload(out, prior.data(), DType::f32);
        m_be.linear_forward(out, tx, tw, true);
        ref::Vec accumulated = want;
        for (size_t i = 0; i < accumulated.size(); ++i) accumulated[i] += prior[i];
        CHECK_REL(out.to_host(), accumulated, kForwardTolerance, name + " accumulate");
    }
}

void TestCpuOps::rmsnormForward()
{
    for (auto [rows, cols] : {std::pair<int64_t, int64_t>{1, 1}, {37, 45}, {130, 128}, {3, 1000}}) {
        const auto x = random_vector(size_t(rows * cols), 10, 2.0f), w = random_vector(size_t(cols), 11);
        OwnedTensor tx(m_be, DType::f32, Shape{rows, cols}, x), tw(m_be, DType::f32, Shape{cols}, w),
            out(m_be, DType::f32, Shape{rows, cols}), rstd(m_be, DType::f32, Shape{rows});
        m_be.rmsnorm_forward(out, rstd, tx, tw, 1e-5f);
        const auto want = ref::rmsnorm(ref::widen(x), ref::widen(w), rows, cols, double(1e-5f));
        const QString name = QString("rmsnorm %1x%2").arg(rows).arg(cols);
        CHECK_REL(out.to_host(), want.out, kForwardTolerance, name);
        CHECK_REL(rstd.to_host(), want.rstd, kForwardTolerance, name + " rstd");
    }
}

void TestCpuOps::layernormForward()
{
    for (auto [rows, cols] : {std::pair<int64_t, int64_t>{1, 2}, {37, 45}, {130, 128}, {3, 1000}}) {
        // An offset mean checks that the variance does not cancel.
        auto x = random_vector(size_t(rows * cols), 12, 2.0f);
        for (auto& v : x) v += 3.0f;
        const auto w = random_vector(size_t(cols), 13), b = random_vector(size_t(cols), 14);
        OwnedTensor tx(m_be, DType::f32, Shape{rows, cols}, x), tw(m_be, DType::f32, Shape{cols}, w),
            tb(m_be, DType::f32, Shape{cols}, b), out(m_be, DType::f32, Shape{rows, cols}),
            mean(m_be, DType::f32, Shape{rows}), rstd(m_be, DType::f32, Shape{rows});
        m_be.layernorm_forward(out, mean, rstd, tx, tw, tb, 1e-5f);
        const auto want = ref::layernorm(ref::widen(x), ref::widen(w), ref::widen(b), rows, cols, double(1e-5f));
        const QString name = QString("layernorm %1x%2").arg(rows).arg(cols);
        CHECK_REL(out.to_host(), want.out, kForwardTolerance, name);
        CHECK_REL(mean.to_host(), want.mean, kForwardTolerance, name + " mean");
        CHECK_REL(rstd.to_host(), want.rstd, kForwardTolerance, name + " rstd");
    }
}

void TestCpuOps::qkNormForward()
{
    for (const AttentionShape s : {AttentionShape{2, 7, 4, 2, 6}, AttentionShape{1, 33, 4, 1, 32},
                                   AttentionShape{1, 5, 2, 2, 64}}) {
        const int64_t n = s.tokens(), heads = s.n_heads + s.n_kv_heads;
        const auto qkv = random_vector(size_t(n * s.qkv_dim()), 15, 1.5f);
        const auto qw = random_vector(size_t(s.head_dim), 16), kw = random_vector(size_t(s.head_dim), 17);
        OwnedTensor in(m_be, DType::f32, Shape{n, s.qkv_dim()}, qkv), out(m_be, DType::f32, Shape{n, s.qkv_dim()}),
            rstd(m_be, DType::f32, Shape{n, heads}), tq(m_be, DType::f32, Shape{s.head_dim}, qw),
            tk(m_be, DType::f32, Shape{s.head_dim}, kw);
        m_be.qk_norm_forward(out, rstd, in, tq, tk, s, 1e-6f);
        ref::Vec want_rstd;
        const auto want = ref::qk_norm(ref::widen(qkv), ref::widen(qw), ref::widen(kw), s, double(1e-6f), &want_rstd);
        CHECK_REL(out.to_host(), want, kForwardTolerance, "qk_norm " + shape_name(s));
        CHECK_REL(rstd.to_host(), want_rstd, kForwardTolerance, "qk_norm rstd " + shape_name(s));
        m_be.qk_norm_forward(in, rstd, in, tq, tk, s, 1e-6f);   // in place
        CHECK_REL(in.to_host(), want, kForwardTolerance, "qk_norm in place " + shape_name(s));
    }
}

void TestCpuOps::ropeForward()
{
    struct Case {
        AttentionShape s;
        int64_t offset;
        float theta;
    };
    for (const Case c : {Case{{2, 7, 4, 2, 6}, 0, 10000.0f}, Case{{1, 33, 4, 1, 8}, 5, 10000.0f},
                         Case{{2, 13, 2, 2, 64}, 1000, 500000.0f}, Case{{1, 3, 4, 2, 128}, 131000, 1000000.0f},
                         Case{{1, 1, 1, 1, 32}, 77, 10000.0f}}) {
        const auto host = random_vector(size_t(c.s.tokens() * c.s.qkv_dim()), 18);
        OwnedTensor qkv(m_be, DType::f32, Shape{c.s.tokens(), c.s.qkv_dim()}, host);
        m_be.rope_forward(qkv, c.s, c.offset, c.theta);
        const auto want = ref::rope(ref::widen(host), c.s, c.offset, double(c.theta));
        CHECK_REL(qkv.to_host(), want, kForwardTolerance,
                  QString("rope %1 offset %2").arg(shape_name(c.s)).arg(c.offset));
        // Value heads are untouched.
        const auto got = qkv.to_host();
        for (int64_t row = 0; row < c.s.tokens(); ++row)
            for (int64_t i = c.s.q_dim() + c.s.kv_dim(); i < c.s.qkv_dim(); ++i)
                QCOMPARE(got[size_t(row * c.s.qkv_dim() + i)], host[size_t(row * c.s.qkv_dim() + i)]);
    }
}

void TestCpuOps::ropeForwardThenBackwardIsIdentity()
{
    const AttentionShape s{2, 33, 4, 2, 32};
    const auto host = random_vector(size_t(s.tokens() * s.qkv_dim()), 19);
    OwnedTensor qkv(m_be, DType::f32, Shape{s.tokens(), s.qkv_dim()}, host);
    for (int64_t offset : {int64_t(0), int64_t(4096)}) {
        m_be.rope_forward(qkv, s, offset, 10000.0f);
        QVERIFY(relative_error(qkv.to_host(), host) > 0.1);   // it did rotate
        m_be.rope_backward(qkv, s, offset, 10000.0f);
        // Two fp32 rotations: a few ulps per element.
        const double err = relative_error(qkv.to_host(), host);
        QVERIFY2(err < 1e-6, qPrintable(QString("rope round trip error %1").arg(err)));
    }
}

void TestCpuOps::attentionForward()
{
    for (const AttentionShape& s : attention_shapes()) {
        const auto host = random_vector(size_t(s.tokens() * s.qkv_dim()), 20, 1.5f);
        OwnedTensor qkv(m_be, DType::f32, Shape{s.tokens(), s.qkv_dim()}, host),
            out(m_be, DType::f32, Shape{s.tokens(), s.q_dim()}), lse(m_be, DType::f32, Shape{s.batch, s.n_heads, s.seq});
        const auto want = ref::attention(ref::widen(host), s);
        for (AttentionKind kind : {AttentionKind::flash, AttentionKind::naive}) {
            m_be.set_attention_kind(kind);
            m_be.fill(out, 0.0f);
            m_be.attention_forward(out, lse, qkv, s);
            CHECK_REL(out.to_host(), want.out, kForwardTolerance, "attention " + shape_name(s));
            CHECK_REL(lse.to_host(), want.lse, kForwardTolerance, "attention lse " + shape_name(s));
        }
        m_be.set_attention_kind(AttentionKind::flash);
    }
}

void TestCpuOps::attentionIsCausal()
{
    const AttentionShape s{2, 130, 4, 2, 16};
    const int64_t changed = 70;   // a token in the second query block
    auto host = random_vector(size_t(s.tokens() * s.qkv_dim()), 21);
    OwnedTensor qkv(m_be, DType::f32, Shape{s.tokens(), s.qkv_dim()}, host),
        out(m_be, DType::f32, Shape{s.tokens(), s.q_dim()}), lse(m_be, DType::f32, Shape{s.batch, s.n_heads, s.seq});
    m_be.attention_forward(out, lse, qkv, s);
    const auto before = out.to_host();
    const auto lse_before = lse.to_host();
    for (int64_t i = 0; i < s.qkv_dim(); ++i) host[size_t(changed * s.qkv_dim() + i)] += 1.0f;   // batch 0
    m_be.upload(qkv, host.data(), DType::f32);
    m_be.attention_forward(out, lse, qkv, s);
    const auto after = out.to_host();
    const auto lse_after = lse.to_host();
    for (int64_t row = 0; row < s.tokens(); ++row) {
        const bool may_change = row >= changed && row < s.seq;   // later tokens of batch 0 only
        bool same = true;
        for (int64_t i = 0; i < s.q_dim(); ++i)
            same &= before[size_t(row * s.q_dim() + i)] == after[size_t(row * s.q_dim() + i)];
        QVERIFY2(same != may_change, qPrintable(QString("row %1 %2").arg(row).arg(same ? "unchanged" : "changed")));
    }
    for (int64_t h = 0; h < s.n_heads; ++h)
        for (int64_t t = 0; t < changed; ++t) QCOMPARE(lse_after[size_t(h * s.seq + t)], lse_before[size_t(h * s.seq + t)]);
}

void TestCpuOps::swigluForward()
{
    for (auto [rows, f] : {std::pair<int64_t, int64_t>{1, 1}, {37, 45}, {128, 384}}) {
        const auto x = random_vector(size_t(rows * 2 * f), 22, 3.0f);
        OwnedTensor in(m_be, DType::f32, Shape{rows, 2 * f}, x), out(m_be, DType::f32, Shape{rows, f});
        m_be.swiglu_forward(out, in);
        CHECK_REL(out.to_host(), ref::swiglu(ref::widen(x), rows, f), kForwardTolerance,
                  QString("swiglu %1x%2").arg(rows).arg(f));
    }
}

void TestCpuOps::geluForward()
{
    for (int64_t n : {int64_t(1), int64_t(45 * 37), int64_t(100003)}) {
        const auto x = random_vector(size_t(n), 23, 3.0f);
        OwnedTensor in(m_be, DType::f32, Shape{n}, x), out(m_be, DType::f32, Shape{n});
        m_be.gelu_forward(out, in);
        CHECK_REL(out.to_host(), ref::gelu(ref::widen(x)), kForwardTolerance, QString("gelu %1").arg(n));
    }
}

// ---- classifier ----------------------------------------------------------------------------------

void TestCpuOps::softmaxCrossEntropy()
{
    const int64_t rows = 37, vocab = 259;
    const float grad_scale = 0.25f;
    const auto logits = random_vector(size_t(rows * vocab), 24, 4.0f);
    auto targets = random_ids(size_t(rows), int32_t(vocab), 25);
    targets[2] = -1;     // ignored
    targets[11] = -100;  // ignored (the PyTorch convention)
    targets[5] = 0;
    targets[6] = int32_t(vocab - 1);
    // Make some predictions right so `correct` is not all zero.
    auto boosted = logits;
    for (int64_t r = 20; r < 30; ++r) boosted[size_t(r * vocab + targets[size_t(r)])] += 20.0f;
    const auto want = ref::cross_entropy(ref::widen(boosted), targets, rows, vocab, grad_scale);

    for (DType correct_dtype : {DType::i32, DType::f32}) {
        for (bool grad : {false, true}) {
            OwnedTensor tl(m_be, DType::f32, Shape{rows, vocab}, boosted), tt(m_be, Shape{rows}, targets),
                losses(m_be, DType::f32, Shape{rows}), correct(m_be, correct_dtype, Shape{rows});
            m_be.fill(losses, 99.0f);
            m_be.softmax_cross_entropy(losses, correct, tl, tt, grad_scale, grad);
            CHECK_REL(losses.to_host(), want.losses, kForwardTolerance, "cross-entropy losses");
            const auto hits = correct.to_host();
            int total = 0;
            for (int64_t r = 0; r < rows; ++r) {
                QCOMPARE(int(hits[size_t(r)]), want.correct[size_t(r)]);
                total += want.correct[size_t(r)];
            }
            QVERIFY(total >= 10);
            const auto after = tl.to_host();
            if (grad) {
                CHECK_REL(after, want.grad, kForwardTolerance, "cross-entropy gradient");
                for (int64_t v = 0; v < vocab; ++v) QCOMPARE(after[size_t(2 * vocab + v)], 0.0f);
            } else {
                QCOMPARE(after, boosted);   // logits untouched without a gradient
            }
            QCOMPARE(losses.to_host()[2], 0.0f);
            QCOMPARE(losses.to_host()[11], 0.0f);
        }
    }
    // Without `correct`.
    OwnedTensor tl(m_be, DType::f32, Shape{rows, vocab}, boosted), tt(m_be, Shape{rows}, targets),
        losses(m_be, DType::f32, Shape{rows});
    m_be.softmax_cross_entropy(losses, Tensor(), tl, tt, grad_scale, true);
    CHECK_REL(losses.to_host(), want.losses, kForwardTolerance, "cross-entropy without correct");
}

void TestCpuOps::softmaxCrossEntropyIsStable()
{
    // Logits far beyond exp's range must not overflow.
    const int64_t rows = 3, vocab = 45;
    auto logits = random_vector(size_t(rows * vocab), 26);
    for (int64_t v = 0; v < vocab; ++v) {
        logits[size_t(v)] = 1e4f + logits[size_t(v)];
        logits[size_t(vocab + v)] = -1e4f + logits[size_t(vocab + v)];
        logits[size_t(2 * vocab + v)] *= 200.0f;
    }
    const std::vector<int32_t> targets = {3, 44, 0};
    const auto want = ref::cross_entropy(ref::widen(logits), targets, rows, vocab, 1.0);
    OwnedTensor tl(m_be, DType::f32, Shape{rows, vocab}, logits), tt(m_be, Shape{rows}, targets),
        losses(m_be, DType::f32, Shape{rows});
    m_be.softmax_cross_entropy(losses, Tensor(), tl, tt, 1.0f, true);
    // Rows shifted by ±1e4 carry fp32 input rounding of ~1e-3 absolute; compare per row loosely.
    const auto got = losses.to_host();
    for (int64_t r = 0; r < rows; ++r) {
        QVERIFY(std::isfinite(got[size_t(r)]));
        QVERIFY2(std::fabs(got[size_t(r)] - want.losses[size_t(r)]) <= 1e-3 * std::max(1.0, want.losses[size_t(r)]),
                 qPrintable(QString("row %1: %2 vs %3").arg(r).arg(got[size_t(r)]).arg(want.losses[size_t(r)])));
    }
    for (float g : tl.to_host()) QVERIFY(std::isfinite(g));
}

void TestCpuOps::classifierComposite()
{
    // More rows than one chunk, so the composite walks two chunks of logits.
    const int64_t n = kClassifierChunkRows + 77, dim = 24, vocab = 259;
    const float grad_scale = 1.0f / float(n);
    const auto x = random_vector(size_t(n * dim), 27), w = random_vector(size_t(vocab * dim), 28, 0.5f);
    auto targets = random_ids(size_t(n), int32_t(vocab), 29);
    targets[5] = -1;
    targets[size_t(n - 1)] = -1;
    const auto prior_dw = random_vector(size_t(vocab * dim), 30);

    const auto logits = ref::linear(ref::widen(x), ref::widen(w), n, dim, vocab);
    const auto ce = ref::cross_entropy(logits, targets, n, vocab, grad_scale);
    const auto grads = ref::linear_backward(ce.grad, ref::widen(x), ref::widen(w), n, dim, vocab);
    ref::Vec want_dw = grads.dweight;
    for (size_t i = 0; i < want_dw.size(); ++i) want_dw[i] += prior_dw[i];

    OwnedTensor tx(m_be, DType::f32, Shape{n, dim}, x), tw(m_be, DType::f32, Shape{vocab, dim}, w),
        tt(m_be, Shape{n}, targets), losses(m_be, DType::f32, Shape{n}), correct(m_be, DType::i32, Shape{n}),
        dx(m_be, DType::f32, Shape{n, dim}), dw(m_be, DType::f32, Shape{vocab, dim}, prior_dw);
    // Evaluation: losses and correct, no gradient.
    m_be.classifier(losses, correct, Tensor(), Tensor(), tx, tw, tt, 1.0f);
    CHECK_REL(losses.to_host(), ce.losses, kForwardTolerance, "classifier losses");
    const auto hits = correct.to_host();
    for (int64_t r = 0; r < n; ++r) QCOMPARE(int(hits[size_t(r)]), ce.correct[size_t(r)]);
    // Training: dx overwritten, dweight accumulated.
    m_be.fill(dx, 123.0f);
    m_be.classifier(losses, Tensor(), dx, dw, tx, tw, tt, grad_scale);
    CHECK_REL(losses.to_host(), ce.losses, kForwardTolerance, "classifier losses (training)");
    // The gradients are GEMMs over the probabilities: forward-level accuracy.
    CHECK_REL(dx.to_host(), grads.din, kForwardTolerance, "classifier dx");
    CHECK_REL(dw.to_host(), want_dw, kForwardTolerance, "classifier dweight");
}

// ---- reductions and determinism ---------------------------------------------------------------------

void TestCpuOps::sumSquares()
{
    for (int64_t n : {int64_t(1), int64_t(45), int64_t(16384), int64_t(1000003)}) {
        const auto x = random_vector(size_t(n), 31);
        double want = 0;
        for (float v : x) want += double(v) * double(v);
        OwnedTensor t(m_be, DType::f32, Shape{n}, x);
        const double got = m_be.sum_squares(t);
        QVERIFY2(std::fabs(got - want) <= 1e-12 * want, qPrintable(QString("%1 vs %2").arg(got).arg(want)));
        // Fixed chunks combined in order: the same bits for any thread count.
        for (int threads : {1, 2, 3, 7}) {
            CpuBackend other(threads);
            QCOMPARE(other.sum_squares(t), got);
        }
    }
}

void TestCpuOps::resultsRepeatBitForBit()
{
    const AttentionShape s{3, 130, 4, 2, 32};
    const auto host = random_vector(size_t(s.tokens() * s.qkv_dim()), 32);
    const auto dy = random_vector(size_t(s.tokens() * s.q_dim()), 33);
    const auto run = [&](CpuBackend& be) {
        OwnedTensor qkv(be, DType::f32, Shape{s.tokens(), s.qkv_dim()}, host),
            out(be, DType::f32, Shape{s.tokens(), s.q_dim()}), lse(be, DType::f32, Shape{s.batch, s.n_heads, s.seq}),
            dout(be, DType::f32, Shape{s.tokens(), s.q_dim()}, dy), dqkv(be, DType::f32, Shape{s.tokens(), s.qkv_dim()}),
            dw(be, DType::f32, Shape{s.qkv_dim()}), norm(be, DType::f32, Shape{s.tokens(), s.qkv_dim()}),
            rstd(be, DType::f32, Shape{s.tokens()}), w(be, DType::f32, Shape{s.qkv_dim()}, random_vector(size_t(s.qkv_dim()), 34));
        be.attention_forward(out, lse, qkv, s);
        be.attention_backward(dqkv, dout, qkv, out, lse, s);
        be.fill(dw, 0.0f);
        be.rmsnorm_forward(norm, rstd, qkv, w, 1e-5f);
        be.rmsnorm_backward(norm, dw, dqkv, qkv, w, rstd, true);
        auto result = out.to_host();
        for (const auto& part : {dqkv.to_host(), norm.to_host(), dw.to_host()}) result.insert(result.end(), part.begin(), part.end());
        return result;
    };
    CpuBackend a(2), b(2);
    const auto first = run(a);
    QCOMPARE(run(a), first);
    QCOMPARE(run(b), first);
}

void TestCpuOps::badInputThrows()
{
    OwnedTensor table(m_be, DType::f32, Shape{10, 4}), out(m_be, DType::f32, Shape{2, 4});
    OwnedTensor ids(m_be, Shape{2}, std::vector<int32_t>{3, 10});
    QVERIFY_THROWS_EXCEPTION(Error, m_be.embedding_forward(out, ids, table));
    OwnedTensor negative(m_be, Shape{2}, std::vector<int32_t>{-1, 0});
    QVERIFY_THROWS_EXCEPTION(Error, m_be.embedding_backward(table, negative, out));

    OwnedTensor x(m_be, DType::f32, Shape{2, 5}), w(m_be, DType::f32, Shape{3, 4}), y(m_be, DType::f32, Shape{2, 3});
    QVERIFY_THROWS_EXCEPTION(Error, m_be.linear_forward(y, x, w, false));

    OwnedTensor logits(m_be, DType::f32, Shape{2, 4}), losses(m_be, DType::f32, Shape{2});
    OwnedTensor targets(m_be, Shape{2}, std::vector<int32_t>{1, 4});
    QVERIFY_THROWS_EXCEPTION(Error, m_be.softmax_cross_entropy(losses, Tensor(), logits, targets, 1.0f, true));

    const AttentionShape bad{1, 4, 3, 2, 8};   // 3 heads cannot share 2 kv heads
    OwnedTensor qkv(m_be, DType::f32, Shape{4, bad.qkv_dim()}), att(m_be, DType::f32, Shape{4, bad.q_dim()}),
        lse(m_be, DType::f32, Shape{1, 3, 4});
    QVERIFY_THROWS_EXCEPTION(Error, m_be.attention_forward(att, lse, qkv, bad));
    const AttentionShape odd{1, 4, 2, 1, 5};   // RoPE needs an even head_dim
    OwnedTensor qkv_odd(m_be, DType::f32, Shape{4, odd.qkv_dim()});
    QVERIFY_THROWS_EXCEPTION(Error, m_be.rope_forward(qkv_odd, odd, 0, 10000.0f));
    OwnedTensor bf(m_be, DType::bf16, Shape{2, 5});
    QVERIFY_THROWS_EXCEPTION(Error, m_be.add(bf, bf, bf));
}

QTEST_APPLESS_MAIN(TestCpuOps)
#include "tst_cpu_ops.moc"
