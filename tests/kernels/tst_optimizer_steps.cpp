// Optimizer ops of CpuBackend: AdamW and Muon steps against small worked
// examples whose numbers are derived in the comments, against fp64
// references on random data, and Newton–Schulz checked by what it promises:
// the singular values of its output land in the band the quintic
// coefficients are designed for.
#include "kernels/cpu/cpu_backend.h"
#include "tests/kernels/reference_ops.h"
#include "tests/support/test_support.h"

#include <QtTest>

#include <cmath>

using namespace crucible;
using namespace crucible::test;

namespace {

using Vec = std::vector<double>;

// ---- fp64 references ----------------------------------------------------------------------

// The fp64 Newton–Schulz (reference_ops.h).
Vec newton_schulz_reference(const Vec& in, int64_t rows, int64_t cols, int steps)
{
    return ref::newton_schulz(in, rows, cols, steps);
}

// Eigenvalues of a symmetric n×n matrix by cyclic Jacobi rotations: each
// rotation in the (p, q) plane zeroes a[p][q]; sweeps repeat until the
// off-diagonal mass is gone. Plain and slow, fine for n ≤ 64.
Vec symmetric_eigenvalues(Vec a, int64_t n)
{
    const auto at = [&](int64_t i, int64_t j) -> double& { return a[size_t(i * n + j)]; };
    for (int sweep = 0; sweep < 100; ++sweep) {
        double off = 0, diag = 0;
        for (int64_t i = 0; i < n; ++i)
            for (int64_t j = 0; j < n; ++j) (i == j ? diag : off) += at(i, j) * at(i, j);
        if (off <= 1e-30 * diag) break;
        for (int64_t p = 0; p < n; ++p)
            for (int64_t q = p + 1; q < n; ++q) {
                if (at(p, q) == 0.0) continue;
                const double theta = (at(q, q) - at(p, p)) / (2 * at(p, q));
                const double t = (theta >= 0 ? 1.0 : -1.0) / (std::fabs(theta) + std::sqrt(theta * theta + 1));
                const double c = 1 / std::sqrt(t * t + 1), s = t * c;
                for (int64_t k = 0; k < n; ++k) {   // A ← A·J
                    const double kp = at(k, p), kq = at(k, q);
                    at(k, p) = c * kp - s * kq;
                    at(k, q) = s * kp + c * kq;
                }
                for (int64_t k = 0; k < n; ++k) {   // A ← Jᵀ·A
                    const double pk = at(p, k), qk = at(q, k);
                    at(p, k) = c * pk - s * qk;
                    at(q, k) = s * pk + c * qk;
                }
            }
    }
    Vec eig(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) eig[size_t(i)] = at(i, i);
    std::sort(eig.begin(), eig.end());
    return eig;
}

// Singular values of a [rows, cols] matrix: square roots of the eigenvalues of
// its Gram matrix on the smaller side (OᵀO for tall, OOᵀ for wide), whose
// spectrum holds exactly the min(rows, cols) squared singular values.
Vec singular_values(const std::vector<float>& m, int64_t rows, int64_t cols)
{
    const bool tall = rows >= cols;
    const int64_t k = tall ? cols : rows;
    Vec gram(size_t(k * k), 0.0);
    for (int64_t i = 0; i < k; ++i)
        for (int64_t j = 0; j < k; ++j) {
            double acc = 0;
            if (tall)
                for (int64_t r = 0; r < rows; ++r) acc += double(m[size_t(r * cols + i)]) * m[size_t(r * cols + j)];
            else
                for (int64_t c = 0; c < cols; ++c) acc += double(m[size_t(i * cols + c)]) * m[size_t(j * cols + c)];
            gram[size_t(i * k + j)] = acc;
        }
    Vec sv = symmetric_eigenvalues(gram, k);
    for (auto& v : sv) v = std::sqrt(std::max(v, 0.0));
    return sv;
}

std::vector<float> identity_plus_noise(int64_t n, float diagonal, float noise, uint64_t seed)
{
    auto m = random_vector(size_t(n * n), seed, noise);
    for (int64_t i = 0; i < n; ++i) m[size_t(i * n + i)] += diagonal;
    return m;
}

double max_abs_diff(const std::vector<float>& a, const Vec& b)
{
    double m = 0;
    for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(double(a[i]) - b[i]));
    return m;
}

} // namespace

class TestOptimizerSteps : public QObject {
    Q_OBJECT

private slots:
    void jacobiSolverSanity();
    void adamwWorkedExample();
    void adamwMatchesReference();
    void muonWorkedExampleDiagonal();
    void muonWorkedExampleMomentumWithoutNesterov();
    void muonWorkedExampleVectors();
    void muonStridedBatch();
    void newtonSchulzSingularValues();
    void newtonSchulzMatchesReference();

private:
    CpuBackend m_be;
};

void TestOptimizerSteps::jacobiSolverSanity()
{
    // [[2, 1], [1, 2]] has eigenvalues 1 and 3; diag(3, 4)ᵀ·diag(3, 4) gives σ = 3, 4.
    const Vec eig = symmetric_eigenvalues({2, 1, 1, 2}, 2);
    QVERIFY(std::fabs(eig[0] - 1) < 1e-12 && std::fabs(eig[1] - 3) < 1e-12);
    const Vec sv = singular_values({3, 0, 0, 4, 0, 0}, 3, 2);   // [[3, 0], [0, 4], [0, 0]]
    QVERIFY(std::fabs(sv[0] - 3) < 1e-12 && std::fabs(sv[1] - 4) < 1e-12);
}

// ---- AdamW ------------------------------------------------------------------------------------

void TestOptimizerSteps::adamwWorkedExample()
{
    // lr 0.1, β1 0.9, β2 0.99, ε 1e-8, weight decay 0.1, grad_scale 0.5.
    // Step 1, p = (1, −2, 0.5), raw g = (0.2, −0.4, 0) so g = (0.1, −0.2, 0):
    //   m = 0.1·g = (0.01, −0.02, 0), v = 0.01·g² = (1e-4, 4e-4, 0)
    //   m̂ = m/0.1 = g, v̂ = v/0.01 = g², so the step is lr·sign(g) (zero where g = 0)
    //   p = p·(1 − 0.01) − 0.1·sign(g) = (0.89, −1.88, 0.495)
    // Step 2, raw g = (0.2, 0.2, 0.2) so g = (0.1, 0.1, 0.1):
    //   m = 0.9·m + 0.1·g = (0.019, −0.008, 0.01)
    //   v = 0.99·v + 0.01·g² = (1.99e-4, 4.96e-4, 1e-4)
    //   m̂ = m/0.19 = (0.1, −0.0421053, 0.0526316), v̂ = v/0.0199 = (0.01, 0.0249246, 0.00502513)
    //   m̂/√v̂ = (1, −0.266699, 0.742460)
    //   p = p·0.99 − 0.1·m̂/√v̂ = (0.7811, −1.834530, 0.415804)
    OwnedTensor p(m_be, DType::f32, Shape{3}, {1.0f, -2.0f, 0.5f}), m(m_be, DType::f32, Shape{3}, {0, 0, 0}),
        v(m_be, DType::f32, Shape{3}, {0, 0, 0}), g(m_be, DType::f32, Shape{3}, {0.2f, -0.4f, 0.0f}),
        compute(m_be, DType::bf16, Shape{3});
    AdamWHyper h;
    h.lr = 0.1f;
    h.beta1 = 0.9f;
    h.beta2 = 0.99f;
    h.eps = 1e-8f;
    h.weight_decay = 0.1f;
    h.grad_scale = 0.5f;
    h.step = 1;
    m_be.adamw_step(p, compute, g, m, v, h);
    const auto close = [](const std::vector<float>& got, std::initializer_list<double> want, double tol) {
        size_t i = 0;
        for (double w : want)
            if (std::fabs(got[i++] - w) > tol) return false;
        return true;
    };
    QVERIFY(close(p.to_host(), {0.89, -1.88, 0.495}, 1e-6));
    QVERIFY(close(m.to_host(), {0.01, -0.02, 0.0}, 1e-7));   // fp32 (1 − β): ~1e-6 relative
    QVERIFY(close(v.to_host(), {1e-4, 4e-4, 0.0}, 1e-9));
    // The bf16 compute copy holds the new weights rounded to nearest even.
    OwnedTensor rounded(m_be, DType::bf16, Shape{3}, p.to_host());
    QCOMPARE(compute.to_host(), rounded.to_host());

    m_be.upload(g, std::vector<float>{0.2f, 0.2f, 0.2f}.data(), DType::f32);
    h.step = 2;
    m_be.adamw_step(p, Tensor(), g, m, v, h);   // no compute copy
    QVERIFY(close(p.to_host(), {0.7811, -1.834530058782, 0.415804031633}, 2e-6));
    QVERIFY(close(m.to_host(), {0.019, -0.008, 0.01}, 1e-7));
    QVERIFY(close(v.to_host(), {1.99e-4, 4.96e-4, 1e-4}, 1e-9));
}

void TestOptimizerSteps::adamwMatchesReference()
{
    const int64_t n = 100003;   // several chunks and threads, odd tail
    auto p = random_vector(size_t(n), 1);
    std::vector<float> m(size_t(n), 0.0f), v(size_t(n), 0.0f);
    Vec rp(p.begin(), p.end()), rm(size_t(n), 0.0), rv(size_t(n), 0.0);
    OwnedTensor tp(m_be, DType::f32, Shape{n}, p), tm(m_be, DType::f32, Shape{n}, m), tv(m_be, DType::f32, Shape{n}, v),
        tg(m_be, DType::f32, Shape{n}), compute(m_be, DType::f32, Shape{n});
    AdamWHyper h;
    h.lr = 3e-3f;
    h.weight_decay = 0.1f;
    h.grad_scale = 0.7f;
    for (int step = 1; step <= 4; ++step) {
        const auto g = random_vector(size_t(n), 10 + uint64_t(step), 0.1f);
        m_be.upload(tg, g.data(), DType::f32);
        h.step = step;
        m_be.adamw_step(tp, compute, tg, tm, tv, h);
        const double b1 = h.beta1, b2 = h.beta2;
        const double bc1 = 1 - std::pow(b1, step), bc2 = 1 - std::pow(b2, step);
        for (int64_t i = 0; i < n; ++i) {
            const double gi = double(g[size_t(i)]) * double(h.grad_scale);
            rm[size_t(i)] = b1 * rm[size_t(i)] + (1 - b1) * gi;
            rv[size_t(i)] = b2 * rv[size_t(i)] + (1 - b2) * gi * gi;
            rp[size_t(i)] = rp[size_t(i)] * (1 - double(h.lr) * double(h.weight_decay)) -
                            double(h.lr) / bc1 * rm[size_t(i)] / (std::sqrt(rv[size_t(i)] / bc2) + double(h.eps));
        }
    }
    // Each step moves a weight by ≤ lr = 3e-3 with fp32 rounding of ~1e-7 relative.
    QVERIFY2(max_abs_diff(tp.to_host(), rp) < 1e-6, "AdamW parameters");
    QVERIFY2(relative_error(tm.to_host(), rm) < 1e-6, "AdamW first moment");
    QVERIFY2(relative_error(tv.to_host(), rv) < 1e-6, "AdamW second moment");
    QCOMPARE(compute.to_host(), tp.to_host());   // an f32 compute copy is a plain copy
}

// ---- Muon -------------------------------------------------------------------------------------

void TestOptimizerSteps::muonWorkedExampleDiagonal()
{
    // p = [[1, 2], [3, 4]], raw grad diag(6, 8) with grad_scale 0.5, so g = diag(3, 4);
    // momentum starts at 0, μ = 0.95, Nesterov:
    //   momentum = μ·0 + g = diag(3, 4); u = g + μ·momentum = 1.95·g = diag(5.85, 7.8)
    //   ‖u‖_F = 1.95·5 = 9.75, X₀ = u/‖u‖_F = diag(0.6, 0.8)
    // On a diagonal matrix every product stays diagonal and each singular value
    // follows σ ← aσ + bσ³ + cσ⁵ on its own. Five steps from 0.6 give
    // 0.722876168617, from 0.8 give 1.119203929916, so O = diag(0.722876, 1.119204).
    // lr 0.02, weight decay 0.1, update_scale 1:
    //   p = p·(1 − 0.002) − 0.02·O = [[0.998 − 0.014458, 1.996], [2.994, 3.992 − 0.022384]]
    //     = [[0.983542476628, 1.996], [2.994, 3.969615921402]]
    OwnedTensor p(m_be, DType::f32, Shape{2, 2}, {1, 2, 3, 4}), g(m_be, DType::f32, Shape{2, 2}, {6, 0, 0, 8}),
        mom(m_be, DType::f32, Shape{2, 2}, {0, 0, 0, 0});
    MuonHyper h;
    h.lr = 0.02f;
    h.momentum = 0.95f;
    h.weight_decay = 0.1f;
    h.grad_scale = 0.5f;
    m_be.muon_step(p, Tensor(), g, mom, 1, 4, h);
    const auto got = p.to_host();
    const double want[4] = {0.983542476628, 1.996, 2.994, 3.969615921402};
    for (int i = 0; i < 4; ++i)
        QVERIFY2(std::fabs(got[size_t(i)] - want[i]) < 1e-6, qPrintable(QString("p[%1] = %2").arg(i).arg(got[size_t(i)])));
    QCOMPARE(mom.to_host(), (std::vector<float>{3, 0, 0, 4}));
}

void TestOptimizerSteps::muonWorkedExampleMomentumWithoutNesterov()
{
    // As above with momentum starting at diag(1, 0), grad_scale 1, g = diag(3, 4), no Nesterov:
    //   momentum = 0.95·diag(1, 0) + g = diag(3.95, 4) and u = momentum
    //   ‖u‖_F = √(3.95² + 4²) = 5.621610, X₀ = diag(0.702646, 0.711540)
    //   five quintic steps: σ = 1.116080737239, 1.099482889983
    //   p = p·0.998 − 0.02·O = [[0.975678385255, 1.996], [2.994, 3.970010342200]]
    OwnedTensor p(m_be, DType::f32, Shape{2, 2}, {1, 2, 3, 4}), g(m_be, DType::f32, Shape{2, 2}, {3, 0, 0, 4}),
        mom(m_be, DType::f32, Shape{2, 2}, {1, 0, 0, 0});
    MuonHyper h;
    h.lr = 0.02f;
    h.momentum = 0.95f;
    h.weight_decay = 0.1f;
    h.nesterov = false;
    m_be.muon_step(p, Tensor(), g, mom, 1, 4, h);
    const auto got = p.to_host();
    const double want[4] = {0.975678385255, 1.996, 2.994, 3.970010342200};
    for (int i = 0; i < 4; ++i)
        QVERIFY2(std::fabs(got[size_t(i)] - want[i]) < 1e-6, qPrintable(QString("p[%1] = %2").arg(i).arg(got[size_t(i)])));
    QCOMPARE(mom.to_host(), (std::vector<float>{3.95f, 0, 0, 4}));
}

void TestOptimizerSteps::muonWorkedExampleVectors()
{
    // A row vector has one singular value, its norm: g = (1, 2, 2), ‖g‖ = 3.
    // With zero momentum and Nesterov u = 1.95·g, X₀ = g/3 has σ = 1 (less
    // 1e-7/5.85 from the ε in the norm), and five steps take σ = 1 to
    // 0.696436409470, so O = 0.696436·(1, 2, 2)/3 = (0.232145469823, 0.464290939647, 0.464290939647).
    // p = 0, no weight decay, lr 0.02, update_scale 2: p = −0.04·O.
    // The column vector [3, 1] is the tall case (the iteration runs on its
    // transpose) and must give the same numbers.
    const double o[3] = {0.232145469823, 0.464290939647, 0.464290939647};
    for (const Shape shape : {Shape{1, 3}, Shape{3, 1}}) {
        OwnedTensor p(m_be, DType::f32, shape, {0, 0, 0}), g(m_be, DType::f32, shape, {1, 2, 2}),
            mom(m_be, DType::f32, shape, {0, 0, 0}), compute(m_be, DType::bf16, shape);
        MuonHyper h;
        h.lr = 0.02f;
        h.update_scale = 2.0f;
        m_be.muon_step(p, compute, g, mom, 1, 3, h);
        const auto got = p.to_host();
        for (int i = 0; i < 3; ++i)
            QVERIFY2(std::fabs(got[size_t(i)] + 0.04 * o[i]) < 1e-7,
                     qPrintable(QString("%1: p[%2] = %3").arg(QString::fromStdString(shape.str())).arg(i).arg(got[size_t(i)])));
        OwnedTensor rounded(m_be, DType::bf16, shape, got);
        QCOMPARE(compute.to_host(), rounded.to_host());
    }
}

void TestOptimizerSteps::muonStridedBatch()
{
    // Three 5×7 matrices 44 elements apart: the 9-element gaps (and the tail)
    // belong to other parameters and must stay as they are.
    const int64_t rows = 5, cols = 7, count = 3, stride = rows * cols + 9, total = stride * count + 4;
    constexpr float kSentinel = 12345.0f;
    std::vector<float> p(size_t(total), kSentinel), g(size_t(total), kSentinel), mom(size_t(total), kSentinel);
    const auto rp = random_vector(size_t(total), 20), rg = random_vector(size_t(total), 21), rm = random_vector(size_t(total), 22, 0.1f);
    const auto inside = [&](int64_t i) { return i < stride * count && i % stride < rows * cols; };
    for (int64_t i = 0; i < total; ++i)
        if (inside(i)) {
            p[size_t(i)] = rp[size_t(i)];
            g[size_t(i)] = rg[size_t(i)];
            mom[size_t(i)] = rm[size_t(i)];
        }
    OwnedTensor tp(m_be, DType::f32, Shape{total}, p), tg(m_be, DType::f32, Shape{total}, g),
        tm(m_be, DType::f32, Shape{total}, mom), compute(m_be, DType::f32, Shape{total}, std::vector<float>(size_t(total), kSentinel));
    MuonHyper h;
    h.lr = 0.05f;
    h.momentum = 0.9f;
    h.weight_decay = 0.2f;
    h.grad_scale = 0.8f;
    h.update_scale = 1.5f;
    const Shape first{rows, cols};
    m_be.muon_step(tp.t.sub(0, first), compute.t.sub(0, first), tg.t.sub(0, first), tm.t.sub(0, first), count, stride, h);

    const auto gp = tp.to_host(), gm = tm.to_host(), gc = compute.to_host(), gg = tg.to_host();
    for (int64_t i = 0; i < total; ++i) {
        QCOMPARE(gg[size_t(i)], g[size_t(i)]);   // the gradient is read only
        if (!inside(i)) {
            QCOMPARE(gp[size_t(i)], kSentinel);
            QCOMPARE(gm[size_t(i)], kSentinel);
            QCOMPARE(gc[size_t(i)], kSentinel);
        }
    }
    for (int64_t c = 0; c < count; ++c) {
        Vec u(size_t(rows * cols)), want_m(size_t(rows * cols));
        for (int64_t i = 0; i < rows * cols; ++i) {
            const size_t at = size_t(c * stride + i);
            const double gi = double(g[at]) * double(h.grad_scale);
            want_m[size_t(i)] = double(h.momentum) * mom[at] + gi;
            u[size_t(i)] = gi + double(h.momentum) * want_m[size_t(i)];
        }
        const Vec o = newton_schulz_reference(u, rows, cols, h.ns_steps);
        std::vector<float> got_update(size_t(rows * cols)), got_m(size_t(rows * cols));
        for (int64_t i = 0; i < rows * cols; ++i) {
            const size_t at = size_t(c * stride + i);
            // Recover the orthogonalised update from the step, which removes the large p·decay term.
            got_update[size_t(i)] = float((double(p[at]) * (1 - double(h.lr) * double(h.weight_decay)) - gp[at]) /
                                          (double(h.lr) * double(h.update_scale)));
            got_m[size_t(i)] = gm[at];
            QCOMPARE(gc[at], gp[at]);
        }
        QVERIFY2(relative_error(got_m, want_m) < 1e-6, qPrintable(QString("momentum of matrix %1").arg(c)));
        // The update is recovered through a difference of O(1) weights: ~1e-7/lr.
        const double err = relative_error(got_update, o);
        QVERIFY2(err < 1e-4, qPrintable(QString("update of matrix %1: relative error %2").arg(c).arg(err)));
    }
}

// ---- Newton–Schulz ------------------------------------------------------------------------------

void TestOptimizerSteps::newtonSchulzSingularValues()
{
    // Five quintic steps map any σ₀ in [0.02, 1] (σ₀ = σ/‖X‖_F) into about
    // [0.68, 1.13]; the inputs keep σ_min/‖X‖_F above 0.02: Gaussian matrices
    // with aspect ratio ≥ 2, and a square matrix with a strong diagonal.
    struct Case {
        const char* name;
        int64_t count, rows, cols;
        std::vector<float> data;
    };
    std::vector<Case> cases;
    cases.push_back({"tall 48x20", 1, 48, 20, random_vector(48 * 20, 30)});
    cases.push_back({"wide 20x48", 1, 20, 48, random_vector(20 * 48, 31)});
    cases.push_back({"square 24x24", 1, 24, 24, identity_plus_noise(24, 5.0f, 0.2f, 32)});
    cases.push_back({"batch 3x20x48", 3, 20, 48, random_vector(3 * 20 * 48, 33)});
    cases.push_back({"batch 2x64x16", 2, 64, 16, random_vector(2 * 64 * 16, 34)});
    for (const Case& c : cases) {
        const Shape shape = c.count == 1 ? Shape{c.rows, c.cols} : Shape{c.count, c.rows, c.cols};
        OwnedTensor in(m_be, DType::f32, shape, c.data), out(m_be, DType::f32, shape);
        m_be.newton_schulz(out, in, 5);
        const auto o = out.to_host();
        const int64_t n = c.rows * c.cols;
        for (int64_t m = 0; m < c.count; ++m) {
            const std::vector<float> mat(o.begin() + m * n, o.begin() + (m + 1) * n);
            const std::vector<float> input(c.data.begin() + m * n, c.data.begin() + (m + 1) * n);
            const Vec before = singular_values(input, c.rows, c.cols);
            const Vec after = singular_values(mat, c.rows, c.cols);
            QVERIFY2(before.back() / before.front() > 1.5, "the input spectrum should be spread");
            QVERIFY2(after.front() >= 0.675 && after.back() <= 1.14,
                     qPrintable(QString("%1 [%2]: singular values in [%3, %4]").arg(c.name).arg(m).arg(after.front()).arg(after.back())));
        }
        QCOMPARE(in.to_host(), c.data);   // the input is left alone
    }
    // In place works too.
    const auto data = random_vector(20 * 48, 35);
    OwnedTensor x(m_be, DType::f32, Shape{20, 48}, data), y(m_be, DType::f32, Shape{20, 48});
    m_be.newton_schulz(y, x, 5);
    m_be.newton_schulz(x, x, 5);
    QCOMPARE(x.to_host(), y.to_host());
}

void TestOptimizerSteps::newtonSchulzMatchesReference()
{
    for (auto [rows, cols] : {std::pair<int64_t, int64_t>{37, 45}, {45, 37}, {16, 16}, {128, 384}}) {
        const auto in = rows == cols ? identity_plus_noise(rows, 4.0f, 0.2f, 40) : random_vector(size_t(rows * cols), 41);
        for (int steps : {0, 1, 5}) {
            OwnedTensor tin(m_be, DType::f32, Shape{rows, cols}, in), tout(m_be, DType::f32, Shape{rows, cols});
            m_be.newton_schulz(tout, tin, steps);
            const Vec want = newton_schulz_reference(Vec(in.begin(), in.end()), rows, cols, steps);
            // Each step is two GEMM levels in fp32 on a unit-norm matrix, and
            // the first steps grow small singular values by up to a = 3.44:
            // rounding grows accordingly, to ~1e-6 after five steps.
            const double err = relative_error(tout.to_host(), want);
            QVERIFY2(err < 1e-5, qPrintable(QString("%1x%2, %3 steps: relative error %4").arg(rows).arg(cols).arg(steps).arg(err)));
        }
    }
}

QTEST_APPLESS_MAIN(TestOptimizerSteps)
#include "tst_optimizer_steps.moc"
