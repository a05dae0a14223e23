// Every Backend op on CUDA against the CPU reference, on random inputs, at an
// odd size (scalar paths, ragged tails) and an aligned one (16-byte paths),
// in both CUDA modes.
//
// Tolerances (relative error ‖gpu − cpu‖ / ‖cpu‖ of each output):
// - f32 mode: 1e-5 everywhere. The GEMMs use CUBLAS_COMPUTE_32F, never TF32,
//   so only the order of f32 additions differs (≈1e-7 · √K).
// - bf16 mode: the inputs are rounded to bf16 before both backends see them
//   (gpu_compare.h), so what remains is the op's own rounding. bf16 keeps 8
//   significant bits: one rounding of a result is at most 2^-9 ≈ 2e-3
//   relative per element and about 1.1e-3 in the norm over many elements.
//   * one rounding of the output (elementwise, GEMM, norms, RoPE): 5e-3;
//   * f32 outputs computed from the same rounded inputs (weight gradients,
//     rstd, losses, moments, embedding gradient): only the summation order
//     and exp differ, 1e-4;
//   * compute-dtype mirrors of f32 results (AdamW's param_compute): one
//     rounding, 5e-3; Muon's parameters move by lr·O with O from the bf16
//     iteration below (1e-2 relative), a few 1e-4 of the parameters: 5e-4;
//   * attention: P is rounded to bf16 before P·V (and dS before dS·K),
//     a second rounding inside the op: 1e-2 forward, 2e-2 backward;
//   * the classifier's logits are bf16 on the GPU and f32 on the CPU, so the
//     loss moves by |logit|·2^-9 and the gradients by two roundings: 5e-3 on
//     the loss, 1e-2 on dx and dW;
//   * Newton–Schulz iterates five times in bf16 with rounded products: 3e-2
//     (the iteration contracts, so errors do not grow; measured values are
//     printed by every check).
#include "tests/gpu/gpu_compare.h"

#include <QtTest>

#include <cmath>

using namespace crucible;
using namespace crucible::test;

namespace {

struct Tol {
    double f32;
    double bf16;
};

std::vector<float> randn(int64_t n, uint64_t seed, float scale = 1.0f)
{
    return random_vector(size_t(n), seed, scale);
}

// Host rstd (and mean) of rows, from the values the backends will see.
void row_stats(const std::vector<float>& x, int64_t rows, int64_t C, float eps, bool center, std::vector<float>& mean,
               std::vector<float>& rstd)
{
    mean.assign(size_t(rows), 0.0f);
    rstd.assign(size_t(rows), 0.0f);
    for (int64_t r = 0; r < rows; ++r) {
        double mu = 0.0, ss = 0.0;
        if (center) {
            for (int64_t c = 0; c < C; ++c) mu += x[size_t(r * C + c)];
            mu /= double(C);
        }
        for (int64_t c = 0; c < C; ++c) {
            const double d = x[size_t(r * C + c)] - mu;
            ss += d * d;
        }
        mean[size_t(r)] = float(mu);
        rstd[size_t(r)] = float(1.0 / std::sqrt(ss / double(C) + eps));
    }
}

} // namespace

class TestCudaOps : public QObject {
    Q_OBJECT

private:
    std::unique_ptr<Backend> m_cpu, m_f32, m_bf16;
    std::vector<Backend*> modes() const { return {m_f32.get(), m_bf16.get()}; }

    void expect(const CaseResult& r, const std::string& op, const Backend& gpu, const std::map<std::string, Tol>& tol)
    {
        const bool bf16 = gpu.compute_dtype() == DType::bf16;
        for (const auto& [name, err] : r.error) {
            const auto it = tol.find(name);
            const double limit = it == tol.end() ? (bf16 ? 5e-3 : 1e-5) : (bf16 ? it->second.bf16 : it->second.f32);
            qInfo("%-28s %-5s %-12s rel.err %.3e (limit %.0e)", op.c_str(), bf16 ? "bf16" : "f32", name.c_str(), err,
                  limit);
            const std::string what = op + " " + (bf16 ? "bf16 " : "f32 ") + name + ": relative error " +
                                     std::to_string(err) + " above " + std::to_string(limit);
            QVERIFY2(err <= limit, what.c_str());
        }
    }

private slots:
    void initTestCase()
    {
        std::string why;
        if (!cuda_available(&why)) QSKIP(("no CUDA device: " + why).c_str());
        m_cpu = make_cpu();
        m_f32 = make_cuda(true);
        m_bf16 = make_cuda(false);
        const DeviceFacts f = m_bf16->facts();
        qInfo("device: %s, peak %.0f TFLOP/s", f.name.c_str(), f.peak_tflops);
        for (const auto& [k, v] : f.details) qInfo("  %s: %s", k.c_str(), v.c_str());
    }

    void transfers()
    {
        for (Backend* gpu : modes()) {
            const auto host = randn(1003, 1);
            OwnedTensor t(*gpu, gpu->compute_dtype(), Shape{1003}, host);
            const auto back = t.to_host();
            QCOMPARE(back, rounded_for(*gpu, host));
            OwnedTensor f(*gpu, DType::f32, Shape{1003});
            gpu->convert(f.t, t.t);
            QCOMPARE(f.to_host(), rounded_for(*gpu, host));
            gpu->fill(f.t, 0.25f);
            QCOMPARE(f.to_host(), std::vector<float>(1003, 0.25f));
            gpu->fill(t.t, -1.5f);
            QCOMPARE(t.to_host(), std::vector<float>(1003, -1.5f));
        }
    }

    void add()
    {
        for (Backend* gpu : modes())
            for (int64_t n : {int64_t(1037), int64_t(4096)}) {
                auto r = run_case(*m_cpu, *gpu,
                                  {{"out", Role::act, Shape{n}, {}, {}, true},
                                   {"a", Role::act, Shape{n}, randn(n, 2)},
                                   {"b", Role::act, Shape{n}, randn(n, 3)}},
                                  [](Backend& be, std::vector<Tensor>& t) { be.add(t[0], t[1], t[2]); });
                expect(r, "add n=" + std::to_string(n), *gpu, {});
            }
    }

    void embedding()
    {
        for (Backend* gpu : modes())
            for (auto [n, V, C] : {std::array<int64_t, 3>{301, 17, 53}, std::array<int64_t, 3>{512, 100, 256}}) {
                const auto ids = random_ids(size_t(n), int32_t(V), 4);
                auto f = run_case(*m_cpu, *gpu,
                                  {{"out", Role::act, Shape{n, C}, {}, {}, true},
                                   {"tokens", Role::i32, Shape{n}, {}, ids},
                                   {"table", Role::act, Shape{V, C}, randn(V * C, 5)}},
                                  [](Backend& be, std::vector<Tensor>& t) { be.embedding_forward(t[0], t[1], t[2]); });
                expect(f, "embedding_forward C=" + std::to_string(C), *gpu, {{"out", {0.0, 0.0}}});
                auto b = run_case(*m_cpu, *gpu,
                                  {{"dtable", Role::f32, Shape{V, C}, randn(V * C, 6), {}, true},
                                   {"tokens", Role::i32, Shape{n}, {}, ids},
                                   {"dout", Role::act, Shape{n, C}, randn(n * C, 7)}},
                                  [](Backend& be, std::vector<Tensor>& t) { be.embedding_backward(t[0], t[1], t[2]); });
                expect(b, "embedding_backward C=" + std::to_string(C), *gpu, {{"dtable", {1e-6, 1e-6}}});
            }
    }

    void linear()
    {
        for (Backend* gpu : modes())
            // In bf16, up to 8 rows with K a multiple of 32 and N of 16 take the
            // decode kernel (decode_linear.cu); the rest, and f32, the GEMM.
            for (auto [M, K, N] : {std::array<int64_t, 3>{37, 53, 29}, std::array<int64_t, 3>{256, 384, 512},
                                   std::array<int64_t, 3>{1, 768, 1280}, std::array<int64_t, 3>{8, 2048, 768},
                                   std::array<int64_t, 3>{5, 96, 336}, std::array<int64_t, 3>{9, 768, 1280},
                                   std::array<int64_t, 3>{1, 2048, 770}, std::array<int64_t, 3>{3, 64, 300},
                                   std::array<int64_t, 3>{1, 53, 29}})
                for (bool acc : {false, true}) {
                    const std::string tag = " " + std::to_string(M) + "x" + std::to_string(K) + "x" +
                                            std::to_string(N) + (acc ? " +=" : "");
                    auto f = run_case(*m_cpu, *gpu,
                                      {{"out", Role::act, Shape{M, N}, randn(M * N, 8), {}, true},
                                       {"in", Role::act, Shape{M, K}, randn(M * K, 9)},
                                       {"w", Role::act, Shape{N, K}, randn(N * K, 10, 0.1f)}},
                                      [acc](Backend& be, std::vector<Tensor>& t) { be.linear_forward(t[0], t[1], t[2], acc); });
                    expect(f, "linear_forward" + tag, *gpu, {});
                    auto b = run_case(*m_cpu, *gpu,
                                      {{"din", Role::act, Shape{M, K}, randn(M * K, 11), {}, true},
                                       {"dw", Role::f32, Shape{N, K}, randn(N * K, 12), {}, true},
                                       {"dout", Role::act, Shape{M, N}, randn(M * N, 13)},
                                       {"in", Role::act, Shape{M, K}, randn(M * K, 14)},
                                       {"w", Role::act, Shape{N, K}, randn(N * K, 15, 0.1f)}},
                                      [acc](Backend& be, std::vector<Tensor>& t) {
                                          be.linear_backward(t[0], t[1], t[2], t[3], t[4], acc);
                                      });
                    expect(b, "linear_backward" + tag, *gpu, {{"dw", {1e-5, 1e-4}}});
                }
    }

    void norms()
    {
        const float eps = 1e-5f;
        for (Backend* gpu : modes())
            for (auto [rows, C] : {std::array<int64_t, 2>{37, 53}, std::array<int64_t, 2>{64, 768}}) {
                const std::string tag = " C=" + std::to_string(C);
                const auto x = rounded_for(*gpu, randn(rows * C, 20, 2.0f));
                const auto w = randn(C, 21, 0.5f);
                const auto bias = randn(C, 22, 0.5f);
                auto rf = run_case(*m_cpu, *gpu,
                                   {{"out", Role::act, Shape{rows, C}, {}, {}, true},
                                    {"rstd", Role::f32, Shape{rows}, {}, {}, true},
                                    {"x", Role::act, Shape{rows, C}, x},
                                    {"w", Role::act, Shape{C}, w}},
                                   [eps](Backend& be, std::vector<Tensor>& t) { be.rmsnorm_forward(t[0], t[1], t[2], t[3], eps); });
                expect(rf, "rmsnorm_forward" + tag, *gpu, {{"rstd", {1e-5, 1e-5}}});

                std::vector<float> mean, rstd;
                row_stats(x, rows, C, eps, false, mean, rstd);
                for (bool acc : {false, true}) {
                    auto rb = run_case(*m_cpu, *gpu,
                                       {{"dx", Role::act, Shape{rows, C}, randn(rows * C, 23), {}, true},
                                        {"dw", Role::f32, Shape{C}, randn(C, 24), {}, true},
                                        {"dout", Role::act, Shape{rows, C}, randn(rows * C, 25)},
                                        {"x", Role::act, Shape{rows, C}, x},
                                        {"w", Role::act, Shape{C}, w},
                                        {"rstd", Role::f32, Shape{rows}, rstd}},
                                       [acc](Backend& be, std::vector<Tensor>& t) {
                                           be.rmsnorm_backward(t[0], t[1], t[2], t[3], t[4], t[5], acc);
                                       });
                    expect(rb, std::string("rmsnorm_backward") + (acc ? " +=" : "") + tag, *gpu, {{"dw", {1e-5, 1e-4}}});
                }

                auto lf = run_case(*m_cpu, *gpu,
                                   {{"out", Role::act, Shape{rows, C}, {}, {}, true},
                                    {"mean", Role::f32, Shape{rows}, {}, {}, true},
                                    {"rstd", Role::f32, Shape{rows}, {}, {}, true},
                                    {"x", Role::act, Shape{rows, C}, x},
                                    {"w", Role::act, Shape{C}, w},
                                    {"b", Role::act, Shape{C}, bias}},
                                   [eps](Backend& be, std::vector<Tensor>& t) {
                                       be.layernorm_forward(t[0], t[1], t[2], t[3], t[4], t[5], eps);
                                   });
                expect(lf, "layernorm_forward" + tag, *gpu, {{"mean", {1e-5, 1e-5}}, {"rstd", {1e-5, 1e-5}}});
                row_stats(x, rows, C, eps, true, mean, rstd);
                auto lb = run_case(*m_cpu, *gpu,
                                   {{"dx", Role::act, Shape{rows, C}, randn(rows * C, 26), {}, true},
                                    {"dw", Role::f32, Shape{C}, randn(C, 27), {}, true},
                                    {"db", Role::f32, Shape{C}, randn(C, 28), {}, true},
                                    {"dout", Role::act, Shape{rows, C}, randn(rows * C, 29)},
                                    {"x", Role::act, Shape{rows, C}, x},
                                    {"w", Role::act, Shape{C}, w},
                                    {"mean", Role::f32, Shape{rows}, mean},
                                    {"rstd", Role::f32, Shape{rows}, rstd}},
                                   [](Backend& be, std::vector<Tensor>& t) {
                                       be.layernorm_backward(t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7], true);
                                   });
                expect(lb, "layernorm_backward" + tag, *gpu, {{"dw", {1e-5, 1e-4}}, {"db", {1e-5, 1e-4}}});
            }
    }

    void qk_norm()
    {
        const float eps = 1e-6f;
        for (Backend* gpu : modes())
            for (int64_t D : {int64_t(6), int64_t(64)}) {
                const AttentionShape s{2, 5, 4, 2, D};
                const int64_t N = s.tokens(), W = s.qkv_dim(), heads = s.n_heads + s.n_kv_heads;
                const std::string tag = " D=" + std::to_string(D);
                const auto qkv = rounded_for(*gpu, randn(N * W, 30, 1.5f));
                const auto qw = randn(D, 31, 0.5f), kw = randn(D, 32, 0.5f);
                auto f = run_case(*m_cpu, *gpu,
                                  {{"qkv_out", Role::act, Shape{N, W}, {}, {}, true},
                                   {"rstd", Role::f32, Shape{N, heads}, {}, {}, true},
                                   {"qkv_in", Role::act, Shape{N, W}, qkv},
                                   {"q_w", Role::act, Shape{D}, qw},
                                   {"k_w", Role::act, Shape{D}, kw}},
                                  [s, eps](Backend& be, std::vector<Tensor>& t) {
                                      be.qk_norm_forward(t[0], t[1], t[2], t[3], t[4], s, eps);
                                  });
                expect(f, "qk_norm_forward" + tag, *gpu, {{"rstd", {1e-5, 1e-5}}});
                // rstd per head row, from the rounded inputs.
                std::vector<float> rstd(static_cast<size_t>(N * heads));
                for (int64_t n = 0; n < N; ++n)
                    for (int64_t h = 0; h < heads; ++h) {
                        double ss = 0;
                        for (int64_t d = 0; d < D; ++d) ss += double(qkv[size_t(n * W + h * D + d)]) * qkv[size_t(n * W + h * D + d)];
                        rstd[size_t(n * heads + h)] = float(1.0 / std::sqrt(ss / double(D) + eps));
                    }
                auto b = run_case(*m_cpu, *gpu,
                                  {{"dqkv_in", Role::act, Shape{N, W}, {}, {}, true},
                                   {"dq_w", Role::f32, Shape{D}, randn(D, 33), {}, true},
                                   {"dk_w", Role::f32, Shape{D}, randn(D, 34), {}, true},
                                   {"dqkv_out", Role::act, Shape{N, W}, randn(N * W, 35)},
                                   {"qkv_in", Role::act, Shape{N, W}, qkv},
                                   {"q_w", Role::act, Shape{D}, qw},
                                   {"k_w", Role::act, Shape{D}, kw},
                                   {"rstd", Role::f32, Shape{N, heads}, rstd}},
                                  [s](Backend& be, std::vector<Tensor>& t) {
                                      be.qk_norm_backward(t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7], s);
                                  });
                expect(b, "qk_norm_backward" + tag, *gpu, {{"dq_w", {1e-5, 1e-4}}, {"dk_w", {1e-5, 1e-4}}});
            }
    }

    void rope()
    {
        for (Backend* gpu : modes())
            for (int64_t D : {int64_t(6), int64_t(48), int64_t(64)}) {
                const AttentionShape s{2, 33, 4, 2, D};
                const int64_t N = s.tokens(), W = s.qkv_dim();
                for (bool back : {false, true}) {
                    auto r = run_case(*m_cpu, *gpu, {{"qkv", Role::act, Shape{N, W}, randn(N * W, 40), {}, true}},
                                      [s, back](Backend& be, std::vector<Tensor>& t) {
                                          if (back) be.rope_backward(t[0], s, 7, 10000.0f);
                                          else be.rope_forward(t[0], s, 7, 10000.0f);
                                      });
                    expect(r, std::string(back ? "rope_backward" : "rope_forward") + " D=" + std::to_string(D), *gpu, {});
                }
            }
    }

    void attention()
    {
        // Small shapes here; tst_flash_attention covers lengths, groups and head dims.
        for (Backend* gpu : modes())
            for (int64_t D : {int64_t(40), int64_t(64)}) {
                const AttentionShape s{2, 37, 4, 2, D};
                const int64_t N = s.tokens(), W = s.qkv_dim();
                const std::string tag = " D=" + std::to_string(D);
                const auto qkv = rounded_for(*gpu, randn(N * W, 50));
                auto f = run_case(*m_cpu, *gpu,
                                  {{"out", Role::act, Shape{N, s.q_dim()}, {}, {}, true},
                                   {"lse", Role::f32, Shape{s.batch, s.n_heads, s.seq}, {}, {}, true},
                                   {"qkv", Role::act, Shape{N, W}, qkv}},
                                  [s](Backend& be, std::vector<Tensor>& t) { be.attention_forward(t[0], t[1], t[2], s); });
                expect(f, "attention_forward" + tag, *gpu, {{"out", {1e-5, 1e-2}}, {"lse", {1e-5, 1e-4}}});
                auto b = run_case(*m_cpu, *gpu,
                                  {{"dqkv", Role::act, Shape{N, W}, {}, {}, true},
                                   {"dout", Role::act, Shape{N, s.q_dim()}, randn(N * s.q_dim(), 51)},
                                   {"qkv", Role::act, Shape{N, W}, qkv},
                                   {"out", Role::act, Shape{N, s.q_dim()}, f.cpu["out"]},
                                   {"lse", Role::f32, Shape{s.batch, s.n_heads, s.seq}, f.cpu["lse"]}},
                                  [s](Backend& be, std::vector<Tensor>& t) {
                                      be.attention_backward(t[0], t[1], t[2], t[3], t[4], s);
                                  });
                expect(b, "attention_backward" + tag, *gpu, {{"dqkv", {1e-5, 2e-2}}});
            }
    }

    void mlp()
    {
        for (Backend* gpu : modes())
            for (auto [rows, F] : {std::array<int64_t, 2>{37, 53}, std::array<int64_t, 2>{64, 256}}) {
                const std::string tag = " F=" + std::to_string(F);
                const auto gu = randn(rows * 2 * F, 60, 2.0f);
                auto sf = run_case(*m_cpu, *gpu,
                                   {{"out", Role::act, Shape{rows, F}, {}, {}, true},
                                    {"gate_up", Role::act, Shape{rows, 2 * F}, gu}},
                                   [](Backend& be, std::vector<Tensor>& t) { be.swiglu_forward(t[0], t[1]); });
                expect(sf, "swiglu_forward" + tag, *gpu, {});
                auto sb = run_case(*m_cpu, *gpu,
                                   {{"dgate_up", Role::act, Shape{rows, 2 * F}, {}, {}, true},
                                    {"dout", Role::act, Shape{rows, F}, randn(rows * F, 61)},
                                    {"gate_up", Role::act, Shape{rows, 2 * F}, gu}},
                                   [](Backend& be, std::vector<Tensor>& t) { be.swiglu_backward(t[0], t[1], t[2]); });
                expect(sb, "swiglu_backward" + tag, *gpu, {});
                const auto x = randn(rows * F, 62, 2.0f);
                auto gf = run_case(*m_cpu, *gpu,
                                   {{"out", Role::act, Shape{rows, F}, {}, {}, true}, {"in", Role::act, Shape{rows, F}, x}},
                                   [](Backend& be, std::vector<Tensor>& t) { be.gelu_forward(t[0], t[1]); });
                expect(gf, "gelu_forward" + tag, *gpu, {});
                auto gb = run_case(*m_cpu, *gpu,
                                   {{"din", Role::act, Shape{rows, F}, {}, {}, true},
                                    {"dout", Role::act, Shape{rows, F}, randn(rows * F, 63)},
                                    {"in", Role::act, Shape{rows, F}, x}},
                                   [](Backend& be, std::vector<Tensor>& t) { be.gelu_backward(t[0], t[1], t[2]); });
                expect(gb, "gelu_backward" + tag, *gpu, {});
            }
    }

    void cross_entropy()
    {
        for (Backend* gpu : modes())
            for (auto [rows, V] : {std::array<int64_t, 2>{37, 333}, std::array<int64_t, 2>{64, 4096}}) {
                auto targets = random_ids(size_t(rows), int32_t(V), 70);
                targets[3] = -1;
                targets[10] = -100;
                for (bool grad : {false, true}) {
                    auto r = run_case(*m_cpu, *gpu,
                                      {{"losses", Role::f32, Shape{rows}, {}, {}, true},
                                       {"correct", Role::i32, Shape{rows}, {}, {}, true},
                                       {"logits", Role::act, Shape{rows, V}, randn(rows * V, 71, 3.0f), {}, grad},
                                       {"targets", Role::i32, Shape{rows}, {}, targets}},
                                      [grad](Backend& be, std::vector<Tensor>& t) {
                                          be.softmax_cross_entropy(t[0], t[1], t[2], t[3], 0.5f, grad);
                                      });
                    expect(r, std::string("softmax_cross_entropy") + (grad ? " grad" : "") + " V=" + std::to_string(V),
                           *gpu, {{"losses", {1e-5, 1e-4}}, {"correct", {0.0, 0.0}}});
                }
            }
    }

    void classifier()
    {
        for (Backend* gpu : modes())
            for (auto [N, C, V] : {std::array<int64_t, 3>{300, 64, 1000}, std::array<int64_t, 3>{77, 40, 333}}) {
                auto targets = random_ids(size_t(N), int32_t(V), 80);
                targets[5] = -1;
                auto r = run_case(*m_cpu, *gpu,
                                  {{"losses", Role::f32, Shape{N}, {}, {}, true},
                                   {"dx", Role::act, Shape{N, C}, randn(N * C, 81), {}, true},
                                   {"dw", Role::f32, Shape{V, C}, randn(V * C, 82), {}, true},
                                   {"x", Role::act, Shape{N, C}, randn(N * C, 83)},
                                   {"w", Role::act, Shape{V, C}, randn(V * C, 84, 0.2f)},
                                   {"targets", Role::i32, Shape{N}, {}, targets}},
                                  [](Backend& be, std::vector<Tensor>& t) {
                                      be.classifier(t[0], Tensor(), t[1], t[2], t[3], t[4], t[5], 1.0f / 300.0f);
                                  });
                expect(r, "classifier V=" + std::to_string(V), *gpu,
                       {{"losses", {1e-5, 5e-3}}, {"dx", {1e-5, 1e-2}}, {"dw", {1e-5, 1e-2}}});
            }
    }

    void sum_squares()
    {
        for (Backend* gpu : modes())
            for (int64_t n : {int64_t(1), int64_t(1000003)}) {
                const auto x = randn(n, 90);
                OwnedTensor tc(*m_cpu, DType::f32, Shape{n}, x), tg(*gpu, DType::f32, Shape{n}, x);
                const double a = m_cpu->sum_squares(tc.t), b = gpu->sum_squares(tg.t), c = gpu->sum_squares(tg.t);
                qInfo("sum_squares n=%lld rel.err %.3e", (long long)n, std::fabs(a - b) / a);
                QVERIFY(std::fabs(a - b) <= 1e-12 * a);
                QCOMPARE(b, c);   // deterministic
            }
    }

    void adamw()
    {
        for (Backend* gpu : modes())
            for (int64_t n : {int64_t(1037), int64_t(4096)}) {
                AdamWHyper h;
                h.lr = 1e-2f;
                h.weight_decay = 0.1f;
                h.step = 3;
                h.grad_scale = 0.5f;
                const auto v = randn(n, 91, 0.01f);
                std::vector<float> vpos(v.size());
                for (size_t i = 0; i < v.size(); ++i) vpos[i] = v[i] * v[i];
                auto r = run_case(*m_cpu, *gpu,
                                  {{"param", Role::f32, Shape{n}, randn(n, 92), {}, true},
                                   {"param_compute", Role::act, Shape{n}, {}, {}, true},
                                   {"grad", Role::f32, Shape{n}, randn(n, 93)},
                                   {"m", Role::f32, Shape{n}, randn(n, 94, 0.1f), {}, true},
                                   {"v", Role::f32, Shape{n}, vpos, {}, true}},
                                  [h](Backend& be, std::vector<Tensor>& t) { be.adamw_step(t[0], t[1], t[2], t[3], t[4], h); });
                expect(r, "adamw n=" + std::to_string(n), *gpu,
                       {{"param", {1e-6, 1e-6}}, {"m", {1e-6, 1e-6}}, {"v", {1e-6, 1e-6}}, {"param_compute", {1e-6, 5e-3}}});
            }
    }

    void muon()
    {
        for (Backend* gpu : modes())
            for (auto [rows, cols] : {std::array<int64_t, 2>{48, 80}, std::array<int64_t, 2>{96, 40}}) {
                const int64_t count = 3, n = rows * cols, stride = n + 64, total = count * stride;
                MuonHyper h;
                h.lr = 0.05f;
                h.weight_decay = 0.1f;
                h.grad_scale = 0.7f;
                h.update_scale = std::sqrt(std::max(1.0f, float(rows) / float(cols)));
                const std::string tag = " " + std::to_string(rows) + "x" + std::to_string(cols);
                auto r = run_case(*m_cpu, *gpu,
                                  {{"param", Role::f32, Shape{total}, randn(total, 100), {}, true},
                                   {"param_compute", Role::act, Shape{total}, {}, {}, false},
                                   {"grad", Role::f32, Shape{total}, randn(total, 101)},
                                   {"momentum", Role::f32, Shape{total}, randn(total, 102, 0.3f), {}, true}},
                                  [&](Backend& be, std::vector<Tensor>& t) {
                                      auto first = [&](const Tensor& x) { return x.sub(0, Shape{rows, cols}); };
                                      be.muon_step(first(t[0]), first(t[1]), first(t[2]), first(t[3]), count, stride, h);
                                  });
                // Compare the updates (param_after − param_before), not the parameters.
                const auto before = randn(total, 100);
                std::vector<float> dg(static_cast<size_t>(total)), dc(static_cast<size_t>(total));
                for (size_t i = 0; i < dg.size(); ++i) {
                    dg[i] = r.gpu["param"][i] - before[i];
                    dc[i] = r.cpu["param"][i] - before[i];
                }
                r.error["update"] = relative_error(dg, dc);
                expect(r, "muon_step" + tag, *gpu,
                       {{"param", {1e-6, 5e-4}}, {"momentum", {1e-6, 1e-6}}, {"update", {2e-5, 3e-2}}});

                auto ns = run_case(*m_cpu, *gpu,
                                   {{"out", Role::f32, Shape{count, rows, cols}, {}, {}, true},
                                    {"in", Role::f32, Shape{count, rows, cols}, randn(count * n, 103)}},
                                   [](Backend& be, std::vector<Tensor>& t) { be.newton_schulz(t[0], t[1], 5); });
                expect(ns, "newton_schulz" + tag, *gpu, {{"out", {1e-5, 3e-2}}});
            }
    }

    void determinism()
    {
        // Scatter-adds and reductions must not depend on scheduling.
        Backend& gpu = *m_bf16;
        const int64_t n = 4096, V = 50, C = 256;
        const auto ids = random_ids(size_t(n), int32_t(V), 110);
        OwnedTensor tokens(gpu, Shape{n}, ids);
        OwnedTensor dout(gpu, gpu.compute_dtype(), Shape{n, C}, randn(n * C, 111));
        std::vector<float> first;
        for (int run = 0; run < 2; ++run) {
            OwnedTensor dtable(gpu, DType::f32, Shape{V, C}, std::vector<float>(size_t(V * C), 0.0f));
            gpu.embedding_backward(dtable.t, tokens.t, dout.t);
            const auto got = dtable.to_host();
            if (run == 0) first = got;
            else QVERIFY(std::memcmp(first.data(), got.data(), first.size() * sizeof(float)) == 0);
        }
    }
};

QTEST_APPLESS_MAIN(TestCudaOps)
#include "tst_cuda_ops.moc"
