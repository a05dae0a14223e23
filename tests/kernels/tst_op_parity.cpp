// One table of Backend ops, run on every backend this machine has.
//
// A row is one op (or a short chain the op needs, such as the cache write
// before attention_decode) on one set of shapes and flags: its buffers with
// seeded inputs, the calls, and an fp64 reference of every output written
// straight from the op's definition (reference_ops.h). Each row runs
//   - on CpuBackend against the fp64 reference,
//   - on CUDA in f32 and in bf16 (skipped without a device) against
//     CpuBackend fed the same inputs,
// with the tolerances below. Separately, every reference backward is checked
// against central finite differences of its reference forward, so the
// references themselves are right. The test fails when an op of Backend (the
// hook lists of kernels/backend.h, so a new op is seen at once) has no row,
// or a gradient op no finite-difference check.
//
// Perf mode: CRUCIBLE_OP_PERF=1 prints the median time of every row on
// every backend (the perf slot skips otherwise).
//
// Tolerances, relative error ‖a − b‖/‖b‖ of each output:
// - CPU against fp64: 1e-5. Every op is a short chain of fp32 operations
//   (eps ≈ 6e-8) with sums of at most a few thousand terms; the backwards,
//   with recomputed probabilities and weight gradients summed over thousands
//   of rows, measure 1e-7..1e-6. Finite differences in fp64 (h = 1e-6) carry
//   ~1e-9: 1e-6, while a wrong term in a formula shows at 1e-2 or worse.
//   Shapes whose exact gradient vanishes (a norm over one or two elements)
//   measure cancellation, not correctness, and are left out.
// - CUDA f32 against CPU: 1e-5. The GEMMs use CUBLAS_COMPUTE_32F, never
//   TF32, so only the order of f32 additions differs (≈1e-7 · √K).
// - CUDA bf16 against CPU: the inputs are bf16 values already, so what
//   remains is the op's own rounding, 2^-9 per element at most:
//   * one rounding of the output (elementwise, GEMM, norms, RoPE): 5e-3;
//   * f32 outputs of the same inputs (weight gradients, rstd, losses,
//     moments, the embedding gradient): summation order and exp, 1e-4;
//   * Muon's parameters move by lr·O with O from the bf16 iteration (1e-2
//     relative), a few 1e-4 of the parameters: 5e-4; its update 3e-2;
//   * attention rounds P before P·V (and dS before dS·K): 1e-2 forward,
//     2e-2 backward; decode attention and the fused decode ops likewise 1e-2;
//   * the classifier's logits are bf16: 5e-3 on the loss, 1e-2 on dx, dW;
//   * Newton–Schulz iterates five times in bf16: 3e-2 (it contracts).
// Integer outputs (ids, token counts, cache copies) must match exactly.
#include "core/bench/bench_table.h"
#include "core/quant/nf4.h"
#include "core/util/rng.h"
#include "kernels/dropout_mask.h"
#include "kernels/half.h"
#include "tests/gpu/gpu_compare.h"
#include "tests/kernels/reference_ops.h"

#include <QtTest>

#include <cmath>
#include <cstring>
#include <set>

using namespace crucible;
using namespace crucible::test;
using ref::Vec;

namespace {

// ---- the table ------------------------------------------------------------------------------------

struct Tol {
    double cpu = 1e-5;    // CpuBackend against the fp64 reference
    double f32 = 1e-5;    // CUDA in f32 against CpuBackend
    double bf16 = 5e-3;   // CUDA in bf16 against CpuBackend
};
constexpr Tol kExact{0.0, 0.0, 0.0};

using Scalars = std::vector<double>;
using Outputs = std::map<std::string, Vec>;
using RunFn = std::function<void(Backend&, std::vector<Tensor>&, Scalars&)>;

struct Row {
    std::vector<std::string> ops;    // the Backend ops it calls; ops[0] is the one it is about
    std::string variant;             // shapes and flags
    std::vector<Buf> bufs;
    RunFn run;
    std::function<Outputs()> reference;   // fp64 value of every compared buffer (and "scalars")
    std::map<std::string, Tol> tol = {};  // per output; Tol{} otherwise
    // Outputs computed from the results, the same way on every side (Muon's update).
    std::function<void(Outputs&)> derive = {};

    std::string name() const { return ops.front() + " " + variant; }
};

// A gradient op's reference backward against finite differences.
struct GradCheck {
    std::string op;
    std::string what;
    std::function<std::pair<Vec, Vec>()> analytic_and_numeric;
};

// Activation inputs are bf16 values from the start, so every backend (and
// every host-side statistic derived from them) sees the same numbers.
std::vector<float> act(int64_t n, uint64_t seed, float scale = 1.0f)
{
    auto v = random_vector(size_t(n), seed, scale);
    for (auto& x : v) x = round_bf16(x);
    return v;
}
std::vector<float> f32v(int64_t n, uint64_t seed, float scale = 1.0f) { return random_vector(size_t(n), seed, scale); }
Vec wide(const std::vector<float>& v) { return ref::widen(v); }
Vec wide(const std::vector<int32_t>& v) { return Vec(v.begin(), v.end()); }
std::vector<float> narrow(const Vec& v) { return std::vector<float>(v.begin(), v.end()); }
Vec plus(Vec a, const std::vector<float>& b)
{
    for (size_t i = 0; i < a.size(); ++i) a[i] += b[i];
    return a;
}

Buf in(std::string name, Shape shape, std::vector<float> host, Role role = Role::act)
{
    return Buf(std::move(name), role, shape, std::move(host));
}
Buf ids_in(std::string name, Shape shape, std::vector<int32_t> ids) { return Buf(std::move(name), Role::i32, shape, {}, std::move(ids)); }
Buf out(std::string name, Shape shape, Role role = Role::act, std::vector<float> initial = {})
{
    return Buf(std::move(name), role, shape, std::move(initial), {}, true);
}
Buf ids_out(std::string name, Shape shape, std::vector<int32_t> initial = {})
{
    return Buf(std::move(name), Role::i32, shape, {}, std::move(initial), true);
}

std::string dims(std::initializer_list<int64_t> d)
{
    std::string s;
    for (int64_t x : d) s += (s.empty() ? "" : "x") + std::to_string(x);
    return s;
}
std::string shape_name(const AttentionShape& s)
{
    return "B" + std::to_string(s.batch) + " T" + std::to_string(s.seq) + " H" + std::to_string(s.n_heads) + " KV" +
           std::to_string(s.n_kv_heads) + " D" + std::to_string(s.head_dim);
}

// ---- rows: transfers and elementwise ----------------------------------------------------------------

void transfer_rows(std::vector<Row>& rows)
{
    const int64_t n = 1037;
    const auto values = act(n, 1, 3.0f);
    rows.push_back({{"upload"}, "f32 host to activations", {out("dst", Shape{n})},
                    [values](Backend& be, std::vector<Tensor>& t, Scalars&) { be.upload(t[0], values.data(), DType::f32); },
                    [values] { return Outputs{{"dst", wide(values)}}; }, {{"dst", kExact}}});
    std::vector<uint16_t> bits(values.size());
    for (size_t i = 0; i < bits.size(); ++i) bits[i] = bf16_from_f32(values[i]);
    rows.push_back({{"upload"}, "bf16 host to f32", {out("dst", Shape{n}, Role::f32)},
                    [bits](Backend& be, std::vector<Tensor>& t, Scalars&) { be.upload(t[0], bits.data(), DType::bf16); },
                    [values] { return Outputs{{"dst", wide(values)}}; }, {{"dst", kExact}}});
    const auto ids = random_ids(size_t(n), 1 << 24, 2);   // exact as floats, which the comparison reads
    rows.push_back({{"upload"}, "i32", {ids_out("dst", Shape{n})},
                    [ids](Backend& be, std::vector<Tensor>& t, Scalars&) { be.upload(t[0], ids.data(), DType::i32); },
                    [ids] { return Outputs{{"dst", wide(ids)}}; }, {{"dst", kExact}}});

    // Downloads land in host memory: uploaded back as f32 to be compared.
    rows.push_back({{"download", "upload"}, "activations to f32 host", {out("copy", Shape{n}, Role::f32), in("src", Shape{n}, values)},
                    [n](Backend& be, std::vector<Tensor>& t, Scalars&) {
                        std::vector<float> host(static_cast<size_t>(n));
                        be.download(host.data(), DType::f32, t[1]);
                        be.upload(t[0], host.data(), DType::f32);
                    },
                    [values] { return Outputs{{"copy", wide(values)}}; }, {{"copy", kExact}}});
    std::vector<float> halves(static_cast<size_t>(n));   // exact in f16: k/64 for |k| < 2^11
    for (int64_t i = 0; i < n; ++i) halves[size_t(i)] = float((i * 37) % 2001 - 1000) / 64.0f;
    rows.push_back({{"download", "upload"}, "f32 to f16 host", {out("copy", Shape{n}, Role::f32), in("src", Shape{n}, halves, Role::f32)},
                    [n](Backend& be, std::vector<Tensor>& t, Scalars&) {
                        std::vector<uint16_t> host(static_cast<size_t>(n));
                        be.download(host.data(), DType::f16, t[1]);
                        std::vector<float> back(static_cast<size_t>(n));
                        for (size_t i = 0; i < back.size(); ++i) back[i] = f32_from_f16(host[i]);
                        be.upload(t[0], back.data(), DType::f32);
                    },
                    [halves] { return Outputs{{"copy", wide(halves)}}; }, {{"copy", kExact}}});

    rows.push_back({{"convert"}, "activations to f32", {out("dst", Shape{n}, Role::f32), in("src", Shape{n}, values)},
                    [](Backend& be, std::vector<Tensor>& t, Scalars&) { be.convert(t[0], t[1]); },
                    [values] { return Outputs{{"dst", wide(values)}}; }, {{"dst", kExact}}});
    rows.push_back({{"convert"}, "f32 to activations", {out("dst", Shape{n}), in("src", Shape{n}, values, Role::f32)},
                    [](Backend& be, std::vector<Tensor>& t, Scalars&) { be.convert(t[0], t[1]); },
                    [values] { return Outputs{{"dst", wide(values)}}; }, {{"dst", kExact}}});

    rows.push_back({{"fill"}, "activations", {out("dst", Shape{n})},
                    [](Backend& be, std::vector<Tensor>& t, Scalars&) { be.fill(t[0], -1.5f); },
                    [n] { return Outputs{{"dst", Vec(size_t(n), -1.5)}}; }, {{"dst", kExact}}});
    rows.push_back({{"fill"}, "f32 100003", {out("dst", Shape{100003}, Role::f32)},
                    [](Backend& be, std::vector<Tensor>& t, Scalars&) { be.fill(t[0], 0.25f); },
                    [] { return Outputs{{"dst", Vec(100003, 0.25)}}; }, {{"dst", kExact}}});
    rows.push_back({{"fill"}, "i32", {ids_out("dst", Shape{45})},
                    [](Backend& be, std::vector<Tensor>& t, Scalars&) { be.fill(t[0], -7.0f); },
                    [] { return Outputs{{"dst", Vec(45, -7.0)}}; }, {{"dst", kExact}}});

    for (int64_t m : {int64_t(1), int64_t(1037), int64_t(4096), int64_t(200003)}) {
        const auto a = act(m, 3), b = act(m, 4);
        auto sum = [a, b] {
            Vec s = wide(a);
            for (size_t i = 0; i < s.size(); ++i) s[i] += b[i];
            return s;
        };
        rows.push_back({{"add"}, std::to_string(m), {out("out", Shape{m}), in("a", Shape{m}, a), in("b", Shape{m}, b)},
                        [](Backend& be, std::vector<Tensor>& t, Scalars&) { be.add(t[0], t[1], t[2]); },
                        [sum] { return Outputs{{"out", sum()}}; }});
        Buf aliased = in("a", Shape{m}, a);
        aliased.compare = true;
        rows.push_back({{"add"}, std::to_string(m) + " in place", {aliased, in("b", Shape{m}, b)},
                        [](Backend& be, std::vector<Tensor>& t, Scalars&) { be.add(t[0], t[0], t[1]); },
                        [sum] { return Outputs{{"a", sum()}}; }});
    }
    // Inverted dropout with a mask that depends only on (seed, index): the
    // reference draws the same mask from kernels/dropout_mask.h.
    for (const auto& [m, p] : {std::pair<int64_t, float>{1037, 0.0f}, {4096, 0.1f}, {200003, 0.5f}}) {
        const auto x = act(m, 5);
        const float scale = 0.75f;
        const uint64_t seed = 1234;
        auto dropped = [x, p, scale, seed] {
            Vec y(x.size());
            const uint32_t threshold = dropout_threshold(p);
            for (size_t i = 0; i < x.size(); ++i)
                y[i] = p == 0.0f || dropout_keeps(seed, i, threshold) ? double(x[i]) * scale / (1.0 - p) : 0.0;
            return y;
        };
        const std::string variant = std::to_string(m) + " p " + std::to_string(p).substr(0, 3);
        rows.push_back({{"dropout_scale"}, variant, {out("out", Shape{m}), in("in", Shape{m}, x)},
                        [p, scale, seed](Backend& be, std::vector<Tensor>& t, Scalars&) {
                            be.dropout_scale(t[0], t[1], scale, p, seed);
                        },
                        [dropped] { return Outputs{{"out", dropped()}}; }});
        Buf aliased = in("in", Shape{m}, x);
        aliased.compare = true;
        rows.push_back({{"dropout_scale"}, variant + " in place", {aliased},
                        [p, scale, seed](Backend& be, std::vector<Tensor>& t, Scalars&) {
                            be.dropout_scale(t[0], t[0], scale, p, seed);
                        },
                        [dropped] { return Outputs{{"in", dropped()}}; }});
    }
}

// ---- rows: training ops ---------------------------------------------------------------------------------

void embedding_rows(std::vector<Row>& rows)
{
    struct Case {
        int64_t n, vocab, dim;
        int32_t id_limit;   // few distinct ids: heavy repetition in the scatter-add
    };
    for (const Case c : {Case{301, 17, 53, 17}, Case{512, 100, 256, 100}, Case{111, 259, 45, 7}}) {
        auto ids = random_ids(size_t(c.n), c.id_limit, 4);
        ids[10] = int32_t(c.vocab - 1);
        const auto table = act(c.vocab * c.dim, 5);
        const std::string v = dims({c.n, c.vocab, c.dim});
        rows.push_back({{"embedding_forward"}, v,
                        {out("out", Shape{c.n, c.dim}), ids_in("tokens", Shape{c.n}, ids), in("table", Shape{c.vocab, c.dim}, table)},
                        [](Backend& be, std::vector<Tensor>& t, Scalars&) { be.embedding_forward(t[0], t[1], t[2]); },
                        [=] { return Outputs{{"out", ref::embedding(ids, wide(table), c.dim)}}; }, {{"out", kExact}}});
        const auto prior = f32v(c.vocab * c.dim, 6), dout = act(c.n * c.dim, 7);
        rows.push_back({{"embedding_backward"}, v,
                        {out("dtable", Shape{c.vocab, c.dim}, Role::f32, prior), ids_in("tokens", Shape{c.n}, ids),
                         in("dout", Shape{c.n, c.dim}, dout)},
                        [](Backend& be, std::vector<Tensor>& t, Scalars&) { be.embedding_backward(t[0], t[1], t[2]); },
                        [=] { return Outputs{{"dtable", plus(ref::embedding_backward(ids, wide(dout), c.vocab, c.dim), prior)}}; },
                        {{"dtable", {1e-5, 1e-6, 1e-6}}}});
    }
}

void linear_rows(std::vector<Row>& rows)
{
    // In bf16 on CUDA, up to 8 rows with K a multiple of 32 and N of 16 take
    // the decode GEMV; the rest, and f32, the GEMM. 1×1×1 and odd sizes take
    // the scalar tails.
    const std::vector<std::array<int64_t, 3>> shapes = {
        {1, 1, 1},      {37, 45, 259},  {130, 64, 7},  {2048, 128, 256}, {37, 53, 29}, {256, 384, 512},
        {1, 768, 1280}, {8, 2048, 768}, {5, 96, 336},  {9, 768, 1280},   {1, 2048, 770}, {3, 64, 300},
    };
    for (const auto& shape : shapes) {
        const int64_t M = shape[0], K = shape[1], N = shape[2];
        const auto x = act(M * K, 9), w = act(N * K, 10, 0.1f), prior = act(M * N, 8);
        for (bool acc : {false, true}) {
            rows.push_back({{"linear_forward"}, dims({M, K, N}) + (acc ? " +=" : ""),
                            {out("out", Shape{M, N}, Role::act, prior), in("in", Shape{M, K}, x), in("w", Shape{N, K}, w)},
                            [acc](Backend& be, std::vector<Tensor>& t, Scalars&) { be.linear_forward(t[0], t[1], t[2], acc); },
                            [=] {
                                Vec y = ref::linear(wide(x), wide(w), M, K, N);
                                return Outputs{{"out", acc ? plus(y, prior) : y}};
                            }});
        }
        const auto dout = act(M * N, 13), prior_din = act(M * K, 11), prior_dw = f32v(N * K, 12);
        // Both outputs (din overwritten or accumulated), then each alone: the other keeps its prior.
        enum class Which { both, both_acc, din_only, dweight_only };
        for (Which which : {Which::both, Which::both_acc, Which::din_only, Which::dweight_only}) {
            const bool acc = which == Which::both_acc;
            const bool din = which != Which::dweight_only, dw = which != Which::din_only;
            const char* tag = which == Which::both ? "" : which == Which::both_acc ? " din +=" : din ? " din only" : " dweight only";
            rows.push_back({{"linear_backward"}, dims({M, K, N}) + tag,
                            {out("din", Shape{M, K}, Role::act, prior_din), out("dw", Shape{N, K}, Role::f32, prior_dw),
                             in("dout", Shape{M, N}, dout), in("in", Shape{M, K}, x), in("w", Shape{N, K}, w)},
                            [=](Backend& be, std::vector<Tensor>& t, Scalars&) {
                                be.linear_backward(din ? t[0] : Tensor(), dw ? t[1] : Tensor(), t[2], t[3], t[4], acc);
                            },
                            [=] {
                                const auto g = ref::linear_backward(wide(dout), wide(x), wide(w), M, K, N);
                                return Outputs{{"din", !din ? wide(prior_din) : acc ? plus(g.din, prior_din) : g.din},
                                               {"dw", dw ? plus(g.dweight, prior_dw) : wide(prior_dw)}};
                            },
                            {{"dw", {1e-5, 1e-5, 1e-4}}}});
        }
    }
}

void norm_rows(std::vector<Row>& rows)
{
    const double eps = double(1e-5f);
    for (const auto& shape : std::vector<std::array<int64_t, 2>>{{1, 7}, {37, 45}, {37, 53}, {64, 768}, {2048, 128}}) {
        const int64_t R = shape[0], C = shape[1];
        const std::string v = dims({R, C});
        auto x = act(R * C, 17, 2.0f);
        const auto w = act(C, 18, 0.5f), bias = act(C, 22, 0.5f), dout = act(R * C, 19);
        const auto prior_dx = act(R * C, 20), prior_dw = f32v(C, 21), prior_db = f32v(C, 28);
        const auto rms = ref::rmsnorm(wide(x), wide(w), R, C, eps);
        rows.push_back({{"rmsnorm_forward"}, v,
                        {out("out", Shape{R, C}), out("rstd", Shape{R}, Role::f32), in("x", Shape{R, C}, x), in("w", Shape{C}, w)},
                        [eps](Backend& be, std::vector<Tensor>& t, Scalars&) { be.rmsnorm_forward(t[0], t[1], t[2], t[3], float(eps)); },
                        [rms] { return Outputs{{"out", rms.out}, {"rstd", rms.rstd}}; }, {{"rstd", {1e-5, 1e-5, 1e-5}}}});
        for (int mode = 0; mode < 3; ++mode) {   // dx overwritten; accumulated; accumulated without dweight
            const bool acc = mode > 0, dw = mode < 2;
            rows.push_back({{"rmsnorm_backward"}, v + (mode == 0 ? "" : mode == 1 ? " dx +=" : " dx += no dweight"),
                            {out("dx", Shape{R, C}, Role::act, prior_dx), out("dw", Shape{C}, Role::f32, prior_dw),
                             in("dout", Shape{R, C}, dout), in("x", Shape{R, C}, x), in("w", Shape{C}, w),
                             in("rstd", Shape{R}, narrow(rms.rstd), Role::f32)},
                            [=](Backend& be, std::vector<Tensor>& t, Scalars&) {
                                be.rmsnorm_backward(t[0], dw ? t[1] : Tensor(), t[2], t[3], t[4], t[5], acc);
                            },
                            [=] {
                                const auto g = ref::rmsnorm_backward(wide(dout), wide(x), wide(w), R, C, eps);
                                return Outputs{{"dx", acc ? plus(g.dx, prior_dx) : g.dx},
                                               {"dw", dw ? plus(g.dweight, prior_dw) : wide(prior_dw)}};
                            },
                            {{"dw", {1e-5, 1e-5, 1e-4}}}});
        }

        for (auto& e : x) e = round_bf16(e - 1.0f);   // off-centre rows for LayerNorm
        const auto ln = ref::layernorm(wide(x), wide(w), wide(bias), R, C, eps);
        rows.push_back({{"layernorm_forward"}, v,
                        {out("out", Shape{R, C}), out("mean", Shape{R}, Role::f32), out("rstd", Shape{R}, Role::f32),
                         in("x", Shape{R, C}, x), in("w", Shape{C}, w), in("b", Shape{C}, bias)},
                        [eps](Backend& be, std::vector<Tensor>& t, Scalars&) {
                            be.layernorm_forward(t[0], t[1], t[2], t[3], t[4], t[5], float(eps));
                        },
                        [ln] { return Outputs{{"out", ln.out}, {"mean", ln.mean}, {"rstd", ln.rstd}}; },
                        {{"mean", {1e-5, 1e-5, 1e-5}}, {"rstd", {1e-5, 1e-5, 1e-5}}}});
        for (int mode = 0; mode < 2; ++mode) {   // accumulated with both weight gradients; overwritten without
            const bool acc = mode == 0;
            rows.push_back({{"layernorm_backward"}, v + (acc ? " dx +=" : " no weight gradients"),
                            {out("dx", Shape{R, C}, Role::act, prior_dx), out("dw", Shape{C}, Role::f32, prior_dw),
                             out("db", Shape{C}, Role::f32, prior_db), in("dout", Shape{R, C}, dout), in("x", Shape{R, C}, x),
                             in("w", Shape{C}, w), in("mean", Shape{R}, narrow(ln.mean), Role::f32),
                             in("rstd", Shape{R}, narrow(ln.rstd), Role::f32)},
                            [=](Backend& be, std::vector<Tensor>& t, Scalars&) {
                                be.layernorm_backward(t[0], acc ? t[1] : Tensor(), acc ? t[2] : Tensor(), t[3], t[4], t[5],
                                                      t[6], t[7], acc);
                            },
                            [=] {
                                const auto g = ref::layernorm_backward(wide(dout), wide(x), wide(w), R, C, eps);
                                return Outputs{{"dx", acc ? plus(g.dx, prior_dx) : g.dx},
                                               {"dw", acc ? plus(g.dweight, prior_dw) : wide(prior_dw)},
                                               {"db", acc ? plus(g.dbias, prior_db) : wide(prior_db)}};
                            },
                            {{"dw", {1e-5, 1e-5, 1e-4}}, {"db", {1e-5, 1e-5, 1e-4}}}});
        }
    }
}

void attention_block_rows(std::vector<Row>& rows)
{
    const double qk_eps = double(1e-6f);
    for (const AttentionShape s : {AttentionShape{2, 5, 4, 2, 6}, AttentionShape{2, 5, 4, 2, 64}, AttentionShape{2, 7, 4, 2, 6},
                                   AttentionShape{1, 33, 4, 1, 32}, AttentionShape{16, 128, 4, 2, 32}}) {
        const int64_t N = s.tokens(), W = s.qkv_dim(), D = s.head_dim, heads = s.n_heads + s.n_kv_heads;
        const auto qkv = act(N * W, 37, 1.5f), qw = act(D, 38, 0.5f), kw = act(D, 39, 0.5f), dy = act(N * W, 40);
        const auto prior_q = f32v(D, 41), prior_k = f32v(D, 42);
        Vec rstd;
        const Vec normed = ref::qk_norm(wide(qkv), wide(qw), wide(kw), s, qk_eps, &rstd);
        rows.push_back({{"qk_norm_forward"}, shape_name(s),
                        {out("qkv_out", Shape{N, W}), out("rstd", Shape{N, heads}, Role::f32), in("qkv_in", Shape{N, W}, qkv),
                         in("q_w", Shape{D}, qw), in("k_w", Shape{D}, kw)},
                        [=](Backend& be, std::vector<Tensor>& t, Scalars&) {
                            be.qk_norm_forward(t[0], t[1], t[2], t[3], t[4], s, float(qk_eps));
                        },
                        [=] { return Outputs{{"qkv_out", normed}, {"rstd", rstd}}; }, {{"rstd", {1e-5, 1e-5, 1e-5}}}});
        rows.push_back({{"qk_norm_backward"}, shape_name(s),
                        {out("dqkv_in", Shape{N, W}, Role::act, act(N * W, 43)), out("dq_w", Shape{D}, Role::f32, prior_q),
                         out("dk_w", Shape{D}, Role::f32, prior_k), in("dqkv_out", Shape{N, W}, dy), in("qkv_in", Shape{N, W}, qkv),
                         in("q_w", Shape{D}, qw), in("k_w", Shape{D}, kw), in("rstd", Shape{N, heads}, narrow(rstd), Role::f32)},
                        [=](Backend& be, std::vector<Tensor>& t, Scalars&) {
                            be.qk_norm_backward(t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7], s);
                        },
                        [=] {
                            const auto g = ref::qk_norm_backward(wide(dy), wide(qkv), wide(qw), wide(kw), s, qk_eps);
                            return Outputs{{"dqkv_in", g.dqkv}, {"dq_w", plus(g.dq_weight, prior_q)}, {"dk_w", plus(g.dk_weight, prior_k)}};
                        },
                        {{"dq_w", {1e-5, 1e-5, 1e-4}}, {"dk_w", {1e-5, 1e-5, 1e-4}}}});
    }

    for (const AttentionShape s : {AttentionShape{2, 7, 4, 2, 6}, AttentionShape{1, 33, 4, 1, 64}, AttentionShape{2, 33, 4, 2, 48},
                                   AttentionShape{2, 33, 4, 2, 64}})
        for (int64_t offset : {int64_t(0), int64_t(7), int64_t(999)})
            for (bool back : {false, true}) {
                const int64_t N = s.tokens(), W = s.qkv_dim();
                const auto x = act(N * W, 45);
                Buf qkv = in("qkv", Shape{N, W}, x);
                qkv.compare = true;
                rows.push_back({{back ? "rope_backward" : "rope_forward"}, shape_name(s) + " offset " + std::to_string(offset), {qkv},
                                [=](Backend& be, std::vector<Tensor>& t, Scalars&) {
                                    if (back) be.rope_backward(t[0], s, offset, 10000.0f);
                                    else be.rope_forward(t[0], s, offset, 10000.0f);
                                },
                                [=] { return Outputs{{"qkv", ref::rope(wide(x), s, offset, 10000.0, back)}}; }});
            }

    // Odd sizes: GQA ratios 1, 2, 4 and MQA, head_dim 6..128, T from 1 past two key blocks.
    for (const AttentionShape s : {AttentionShape{1, 1, 1, 1, 8}, AttentionShape{2, 7, 4, 2, 6}, AttentionShape{1, 33, 4, 1, 32},
                                   AttentionShape{2, 33, 2, 2, 8}, AttentionShape{1, 130, 8, 2, 64}, AttentionShape{2, 130, 4, 4, 32},
                                   AttentionShape{1, 64, 4, 2, 128}, AttentionShape{1, 300, 2, 1, 16}, AttentionShape{2, 37, 4, 2, 40},
                                   AttentionShape{2, 37, 4, 2, 64}}) {
        const int64_t N = s.tokens(), W = s.qkv_dim();
        const auto qkv = act(N * W, 48, 1.5f), dy = act(N * s.q_dim(), 49);
        const auto fwd = ref::attention(wide(qkv), s);
        rows.push_back({{"attention_forward"}, shape_name(s),
                        {out("out", Shape{N, s.q_dim()}), out("lse", Shape{s.batch, s.n_heads, s.seq}, Role::f32), in("qkv", Shape{N, W}, qkv)},
                        [s](Backend& be, std::vector<Tensor>& t, Scalars&) { be.attention_forward(t[0], t[1], t[2], s); },
                        [fwd] { return Outputs{{"out", fwd.out}, {"lse", fwd.lse}}; },
                        {{"out", {1e-5, 1e-5, 1e-2}}, {"lse", {1e-5, 1e-5, 1e-4}}}});
        const std::vector<float> o = narrow(fwd.out);   // rounded to bf16 only against a bf16 backend
        rows.push_back({{"attention_backward"}, shape_name(s),
                        {out("dqkv", Shape{N, W}, Role::act, std::vector<float>(size_t(N * W), 7.0f)),   // overwritten
                         in("dout", Shape{N, s.q_dim()}, dy), in("qkv", Shape{N, W}, qkv), in("out", Shape{N, s.q_dim()}, o),
                         in("lse", Shape{s.batch, s.n_heads, s.seq}, narrow(fwd.lse), Role::f32)},
                        [s](Backend& be, std::vector<Tensor>& t, Scalars&) { be.attention_backward(t[0], t[1], t[2], t[3], t[4], s); },
                        [=] { return Outputs{{"dqkv", ref::attention_backward(wide(dy), wide(qkv), s)}}; },
                        {{"dqkv", {1e-5, 1e-5, 2e-2}}}});
    }
}

void mlp_rows(std::vector<Row>& rows)
{
    for (const auto& shape : std::vector<std::array<int64_t, 2>>{{1, 1}, {37, 45}, {37, 53}, {64, 256}, {2048, 384}}) {
        const int64_t R = shape[0], F = shape[1];
        const auto gu = act(R * 2 * F, 52, 3.0f), dy = act(R * F, 53);
        rows.push_back({{"swiglu_forward"}, dims({R, F}), {out("out", Shape{R, F}), in("gate_up", Shape{R, 2 * F}, gu)},
                        [](Backend& be, std::vector<Tensor>& t, Scalars&) { be.swiglu_forward(t[0], t[1]); },
                        [=] { return Outputs{{"out", ref::swiglu(wide(gu), R, F)}}; }});
        rows.push_back({{"swiglu_backward"}, dims({R, F}),
                        {out("dgate_up", Shape{R, 2 * F}), in("dout", Shape{R, F}, dy), in("gate_up", Shape{R, 2 * F}, gu)},
                        [](Backend& be, std::vector<Tensor>& t, Scalars&) { be.swiglu_backward(t[0], t[1], t[2]); },
                        [=] { return Outputs{{"dgate_up", ref::swiglu_backward(wide(dy), wide(gu), R, F)}}; }});
    }
    for (int64_t n : {int64_t(1), int64_t(37 * 45), int64_t(37 * 53), int64_t(64 * 256), int64_t(100003)}) {
        const auto x = act(n, 56, 3.0f), dy = act(n, 57);
        rows.push_back({{"gelu_forward"}, std::to_string(n), {out("out", Shape{n}), in("in", Shape{n}, x)},
                        [](Backend& be, std::vector<Tensor>& t, Scalars&) { be.gelu_forward(t[0], t[1]); },
                        [=] { return Outputs{{"out", ref::gelu(wide(x))}}; }});
        rows.push_back({{"gelu_backward"}, std::to_string(n), {out("din", Shape{n}), in("dout", Shape{n}, dy), in("in", Shape{n}, x)},
                        [](Backend& be, std::vector<Tensor>& t, Scalars&) { be.gelu_backward(t[0], t[1], t[2]); },
                        [=] { return Outputs{{"din", ref::gelu_backward(wide(dy), wide(x))}}; }});
    }
}

void classifier_rows(std::vector<Row>& rows)
{
    for (const auto& shape : std::vector<std::array<int64_t, 2>>{{37, 333}, {64, 4096}})
        for (int mode = 0; mode < 3; ++mode) {   // losses only; with the gradient; correct counted in f32
            const int64_t R = shape[0], V = shape[1];
            const bool grad = mode == 1, f32_correct = mode == 2;
            auto targets = random_ids(size_t(R), int32_t(V), 70);
            targets[3] = -1;
            targets[10] = -100;
            const auto logits = act(R * V, 71, 3.0f);
            Buf lg = in("logits", Shape{R, V}, logits);
            lg.compare = grad;
            rows.push_back({{"softmax_cross_entropy"},
                            dims({R, V}) + (grad ? " grad" : "") + (f32_correct ? " f32 correct" : ""),
                            {out("losses", Shape{R}, Role::f32), f32_correct ? out("correct", Shape{R}, Role::f32) : ids_out("correct", Shape{R}),
                             lg, ids_in("targets", Shape{R}, targets)},
                            [grad](Backend& be, std::vector<Tensor>& t, Scalars&) {
                                be.softmax_cross_entropy(t[0], t[1], t[2], t[3], 0.5f, grad);
                            },
                            [=] {
                                const auto ce = ref::cross_entropy(wide(logits), targets, R, V, 0.5);
                                Outputs o{{"losses", ce.losses}, {"correct", wide(ce.correct)}};
                                if (grad) o["logits"] = ce.grad;
                                return o;
                            },
                            {{"losses", {1e-5, 1e-5, 1e-4}}, {"correct", kExact}}});
        }

    for (const auto& shape : std::vector<std::array<int64_t, 3>>{{300, 64, 1000}, {77, 40, 333}})
        for (bool train : {true, false}) {   // loss and gradients; loss and correct only (evaluation)
            const int64_t N = shape[0], C = shape[1], V = shape[2];
            auto targets = random_ids(size_t(N), int32_t(V), 80);
            targets[5] = -1;
            const auto x = act(N * C, 83), w = act(V * C, 84, 0.2f), prior_dw = f32v(V * C, 82);
            // A third of the rows predicted right, so that `correct` says something.
            const auto best = ref::argmax_rows(ref::linear(wide(x), wide(w), N, C, V), N, V).ids;
            for (int64_t r = 0; r < N; r += 3) targets[size_t(r)] = best[size_t(r)];
            const float scale = 1.0f / float(N);
            rows.push_back({{"classifier"}, dims({N, C, V}) + (train ? " backward" : " evaluation"),
                            {out("losses", Shape{N}, Role::f32), ids_out("correct", Shape{N}),
                             out("dx", Shape{N, C}, Role::act, act(N * C, 81)), out("dw", Shape{V, C}, Role::f32, prior_dw),
                             in("x", Shape{N, C}, x), in("w", Shape{V, C}, w), ids_in("targets", Shape{N}, targets)},
                            [=](Backend& be, std::vector<Tensor>& t, Scalars&) {
                                if (train) be.classifier(t[0], Tensor(), t[2], t[3], t[4], t[5], t[6], scale);
                                else be.classifier(t[0], t[1], Tensor(), Tensor(), t[4], t[5], t[6], scale);
                            },
                            [=] {
                                const auto ce = ref::cross_entropy(ref::linear(wide(x), wide(w), N, C, V), targets, N, V, scale);
                                Outputs o{{"losses", ce.losses}};
                                o["correct"] = train ? Vec(size_t(N), 0.0) : wide(ce.correct);
                                if (train) {
                                    const auto g = ref::linear_backward(ce.grad, wide(x), wide(w), N, C, V);
                                    o["dx"] = g.din;
                                    o["dw"] = plus(g.dweight, prior_dw);
                                } else {
                                    o["dx"] = wide(act(N * C, 81));
                                    o["dw"] = wide(prior_dw);
                                }
                                return o;
                            },
                            // bf16 logits may flip a near-tie of the argmax: a few rows in a hundred.
                            {{"losses", {1e-5, 1e-5, 5e-3}}, {"correct", {0.0, 0.0, 0.2}}, {"dx", {1e-5, 1e-5, 1e-2}}, {"dw", {1e-5, 1e-5, 1e-2}}}});
        }
}

// ---- rows: reductions and optimizers --------------------------------------------------------------------

void optimizer_rows(std::vector<Row>& rows)
{
    for (int64_t n : {int64_t(1), int64_t(1000003)}) {
        const auto x = f32v(n, 90);
        rows.push_back({{"sum_squares"}, std::to_string(n), {in("x", Shape{n}, x, Role::f32)},
                        [](Backend& be, std::vector<Tensor>& t, Scalars& s) { s.push_back(be.sum_squares(t[0])); },
                        [=] {
                            double sum = 0;
                            for (float v : x) sum += double(v) * double(v);
                            return Outputs{{"scalars", {sum}}};
                        },
                        {{"scalars", {1e-12, 1e-12, 1e-12}}}});
    }

    for (int64_t n : {int64_t(1037), int64_t(4096), int64_t(100003)})
        for (bool mirror : {true, false}) {
            AdamWHyper h;
            h.lr = 1e-2f;
            h.weight_decay = 0.1f;
            h.step = 3;
            h.grad_scale = 0.5f;
            const auto p = f32v(n, 92), g = f32v(n, 93), m = f32v(n, 94, 0.1f);
            auto v = f32v(n, 91, 0.01f);
            for (auto& e : v) e *= e;
            rows.push_back({{"adamw_step"}, std::to_string(n) + (mirror ? " with compute copy" : ""),
                            {out("param", Shape{n}, Role::f32, p), out("param_compute", Shape{n}), in("grad", Shape{n}, g, Role::f32),
                             out("m", Shape{n}, Role::f32, m), out("v", Shape{n}, Role::f32, v)},
                            [=](Backend& be, std::vector<Tensor>& t, Scalars&) {
                                be.adamw_step(t[0], mirror ? t[1] : Tensor(), t[2], t[3], t[4], h);
                            },
                            [=] {
                                const auto r = ref::adamw(wide(p), wide(m), wide(v), wide(g), h);
                                return Outputs{{"param", r.param}, {"param_compute", mirror ? r.param : Vec(size_t(n), 0.0)},
                                               {"m", r.m}, {"v", r.v}};
                            },
                            {{"param", {1e-6, 1e-6, 1e-6}}, {"m", {1e-6, 1e-6, 1e-6}}, {"v", {1e-6, 1e-6, 1e-6}},
                             {"param_compute", {1e-6, 1e-6, 5e-3}}}});
        }

    struct MuonCase {
        int64_t rows, cols, gap;
        float momentum;
        bool nesterov;
    };
    for (const MuonCase c : {MuonCase{48, 80, 64, 0.95f, true}, MuonCase{96, 40, 64, 0.95f, true}, MuonCase{5, 7, 9, 0.9f, false}}) {
        const int64_t count = 3, n = c.rows * c.cols, stride = n + c.gap, total = count * stride;
        MuonHyper h;
        h.lr = 0.05f;
        h.momentum = c.momentum;
        h.nesterov = c.nesterov;
        h.weight_decay = 0.1f;
        h.grad_scale = 0.7f;
        h.update_scale = std::sqrt(std::max(1.0f, float(c.rows) / float(c.cols)));
        const auto p = f32v(total, 100), g = f32v(total, 101), mom = f32v(total, 102, 0.3f);
        // The parameters' update, which the large p·(1 − lr·wd) term would hide.
        auto update = [p](Outputs& o) {
            Vec u = o["param"];
            for (size_t i = 0; i < u.size(); ++i) u[i] -= p[i];
            o["update"] = u;
        };
        rows.push_back({{"muon_step"}, dims({count, c.rows, c.cols}) + " stride " + std::to_string(stride) + (c.nesterov ? "" : " no nesterov"),
                        {out("param", Shape{total}, Role::f32, p), out("param_compute", Shape{total}), in("grad", Shape{total}, g, Role::f32),
                         out("momentum", Shape{total}, Role::f32, mom)},
                        [=](Backend& be, std::vector<Tensor>& t, Scalars&) {
                            auto first = [&](const Tensor& x) { return x.sub(0, Shape{c.rows, c.cols}); };
                            be.muon_step(first(t[0]), first(t[1]), first(t[2]), first(t[3]), count, stride, h);
                        },
                        [=] {
                            const auto r = ref::muon(wide(p), wide(mom), wide(g), c.rows, c.cols, count, stride, h);
                            Vec mirror(size_t(total), 0.0);   // written inside the matrices only
                            for (int64_t i = 0; i < total; ++i)
                                if (i % stride < n) mirror[size_t(i)] = r.param[size_t(i)];
                            Outputs o{{"param", r.param}, {"param_compute", mirror}, {"momentum", r.momentum}};
                            update(o);
                            return o;
                        },
                        {{"param", {1e-6, 1e-6, 5e-4}}, {"param_compute", {1e-6, 1e-6, 5e-3}}, {"momentum", {1e-6, 1e-6, 1e-6}},
                         {"update", {1e-4, 2e-5, 3e-2}}},
                        update});
    }

    for (const auto& shape : std::vector<std::array<int64_t, 3>>{{3, 48, 80}, {3, 96, 40}, {1, 37, 45}, {1, 45, 37}, {1, 128, 384}})
        for (int steps : {0, 1, 5}) {
            const int64_t count = shape[0], R = shape[1], C = shape[2];
            const auto x = f32v(count * R * C, 103);
            rows.push_back({{"newton_schulz"}, dims({count, R, C}) + " steps " + std::to_string(steps),
                            {out("out", Shape{count, R, C}, Role::f32), in("in", Shape{count, R, C}, x, Role::f32)},
                            [steps](Backend& be, std::vector<Tensor>& t, Scalars&) { be.newton_schulz(t[0], t[1], steps); },
                            [=] {
                                Vec o;
                                for (int64_t m = 0; m < count; ++m) {
                                    const Vec one(x.begin() + m * R * C, x.begin() + (m + 1) * R * C);
                                    const Vec r = ref::newton_schulz(one, R, C, steps);
                                    o.insert(o.end(), r.begin(), r.end());
                                }
                                return Outputs{{"out", o}};
                            },
                            {{"out", {1e-5, 1e-5, 3e-2}}}});
        }
}

// ---- rows: KV cache and decode ------------------------------------------------------------------------

struct DecodeCase {
    AttentionShape s;
    int64_t capacity;   // cache positions
};

// GQA ratios 1, 2, 4 and MQA; decode steps (T = 1) and chunks.
const std::vector<DecodeCase>& decode_cases()
{
    static const std::vector<DecodeCase> all = {
        {{1, 1, 4, 2, 8}, 16},  {{3, 1, 4, 4, 6}, 40},   {{2, 1, 8, 2, 32}, 300}, {{4, 1, 4, 1, 16}, 70},
        {{2, 5, 4, 2, 8}, 33},  {{1, 17, 2, 1, 64}, 200}, {{3, 4, 6, 3, 10}, 12},
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

void decode_rows(std::vector<Row>& rows)
{
    for (const DecodeCase& c : decode_cases()) {
        const AttentionShape& s = c.s;
        const int64_t N = s.tokens(), W = s.qkv_dim();
        for (float theta : {10000.0f, 500000.0f}) {
            auto pos = random_positions(s, c.capacity, 7);
            if (s.tokens() > 2) pos[1] = 131000;   // far positions need the double-precision angle
            const auto x = act(N * W, 11);
            Buf qkv = in("qkv", Shape{N, W}, x);
            qkv.compare = true;
            rows.push_back({{"rope_forward_at"}, shape_name(s) + " theta " + std::to_string(int(theta)),
                            {qkv, ids_in("positions", Shape{N}, pos)},
                            [=](Backend& be, std::vector<Tensor>& t, Scalars&) { be.rope_forward_at(t[0], s, t[1], theta); },
                            [=] { return Outputs{{"qkv", ref::rope_at(wide(x), s, pos, double(theta))}}; }});
        }

        const int64_t slot_count = s.batch + 1;   // a cache larger than the batch
        const Shape cache{slot_count, s.n_kv_heads, c.capacity, s.head_dim};
        const auto pos = random_positions(s, c.capacity, 3);
        const auto x = act(N * W, 12), k0 = act(cache.numel(), 13), v0 = act(cache.numel(), 14);
        rows.push_back({{"kv_cache_write"}, shape_name(s) + " capacity " + std::to_string(c.capacity),
                        {out("keys", cache, Role::act, k0), out("values", cache, Role::act, v0), in("qkv", Shape{N, W}, x),
                         ids_in("positions", Shape{N}, pos)},
                        [s](Backend& be, std::vector<Tensor>& t, Scalars&) { be.kv_cache_write(t[0], t[1], t[2], t[3], s); },
                        [=] {
                            auto kv = ref::kv_cache_write(wide(k0), wide(v0), wide(x), pos, s, c.capacity);
                            return Outputs{{"keys", kv.keys}, {"values", kv.values}};
                        },
                        {{"keys", kExact}, {"values", kExact}}});

        // The chunk's own keys join the cache first, as the model does.
        const auto dpos = random_positions(s, c.capacity, 21);
        const auto q = act(N * W, 22);
        rows.push_back({{"attention_decode", "kv_cache_write"}, shape_name(s) + " capacity " + std::to_string(c.capacity),
                        {out("out", Shape{N, s.q_dim()}, Role::act, std::vector<float>(size_t(N * s.q_dim()), 7.0f)),
                         in("keys", cache, k0), in("values", cache, v0), in("qkv", Shape{N, W}, q), ids_in("positions", Shape{N}, dpos)},
                        [s](Backend& be, std::vector<Tensor>& t, Scalars&) {
                            be.kv_cache_write(t[1], t[2], t[3], t[4], s);
                            be.attention_decode(t[0], t[3], t[1], t[2], t[4], s);
                        },
                        [=] {
                            const auto kv = ref::kv_cache_write(wide(k0), wide(v0), wide(q), dpos, s, c.capacity);
                            return Outputs{{"out", ref::attention_over_cache(wide(q), kv.keys, kv.values, dpos, s, c.capacity)}};
                        },
                        {{"out", {1e-5, 1e-5, 1e-2}}}});
    }

    for (int64_t vocab : {int64_t(1), int64_t(7), int64_t(2048), int64_t(32771)})
        for (bool next : {true, false}) {
            const int64_t R = 3;
            auto logits = act(R * vocab, uint64_t(vocab), 4.0f);
            if (vocab > 9) logits[size_t(vocab + 5)] = logits[size_t(vocab + 9)] = 100.0f;   // a tie: the lower id wins
            rows.push_back({{"argmax_rows"}, dims({R, vocab}) + (next ? " with next tokens" : ""),
                            {ids_out("ids", Shape{R}, std::vector<int32_t>(size_t(R), -1)), out("probs", Shape{R}, Role::f32),
                             ids_out("next", Shape{R}, std::vector<int32_t>(size_t(R), -1)), in("logits", Shape{R, vocab}, logits)},
                            [next](Backend& be, std::vector<Tensor>& t, Scalars&) { be.argmax_rows(t[0], t[1], t[3], next ? t[2] : Tensor()); },
                            [=] {
                                const auto a = ref::argmax_rows(wide(logits), R, vocab);
                                return Outputs{{"ids", wide(a.ids)}, {"probs", a.probs},
                                               {"next", next ? wide(a.ids) : Vec(size_t(R), -1.0)}};
                            },
                            {{"ids", kExact}, {"next", kExact}, {"probs", {1e-6, 1e-6, 1e-4}}}});
        }
}

// The fused decode ops, or, where a backend declines them, the separate ops
// they stand for: either way the result is the definition's.
void fused_decode_rows(std::vector<Row>& rows)
{
    const float eps = 1e-5f, theta = 10000.0f;
    for (const AttentionShape s : {AttentionShape{1, 1, 4, 2, 32}, AttentionShape{4, 1, 8, 2, 64}, AttentionShape{2, 3, 4, 1, 32}})
        for (bool lookup : {false, true}) {
            const int64_t N = s.tokens(), W = s.qkv_dim(), C = 256, V = 50, capacity = 40;
            const Shape cache{s.batch, s.n_kv_heads, capacity, s.head_dim};
            std::vector<int32_t> pos(static_cast<size_t>(N));
            for (int64_t r = 0; r < N; ++r) pos[size_t(r)] = int32_t(5 + 3 * (r / s.seq) + r % s.seq);
            const auto tokens = random_ids(size_t(N), int32_t(V), 120);
            const auto table = act(V * C, 121), x0 = act(N * C, 122), nw = act(C, 123, 0.5f), w = act(W * C, 124, 0.1f);
            const auto k0 = act(cache.numel(), 125), v0 = act(cache.numel(), 126);
            Buf x = in("x", Shape{N, C}, x0);
            x.compare = lookup;
            rows.push_back({{"decode_norm_qkv", "rmsnorm_forward", "linear_forward", "rope_forward_at", "kv_cache_write", "embedding_forward"},
                            shape_name(s) + (lookup ? " with lookup" : ""),
                            {out("qkv", Shape{N, W}), out("keys", cache, Role::act, k0), out("values", cache, Role::act, v0), x,
                             in("norm_w", Shape{C}, nw), in("w", Shape{W, C}, w), ids_in("positions", Shape{N}, pos),
                             ids_in("tokens", Shape{N}, tokens), in("table", Shape{V, C}, table), Buf("normed", Role::act, Shape{N, C}),
                             Buf("rstd", Role::f32, Shape{N})},
                            [=](Backend& be, std::vector<Tensor>& t, Scalars&) {
                                const Backend::EmbeddingLookup l{lookup ? t[7] : Tensor(), lookup ? t[8] : Tensor()};
                                if (be.decode_norm_qkv(t[0], t[1], t[2], t[3], t[4], eps, t[5], t[6], s, theta, l)) return;
                                if (lookup) be.embedding_forward(t[3], t[7], t[8]);
                                be.rmsnorm_forward(t[9], t[10], t[3], t[4], eps);
                                be.linear_forward(t[0], t[9], t[5]);
                                be.rope_forward_at(t[0], s, t[6], theta);
                                be.kv_cache_write(t[1], t[2], t[0], t[6], s);
                            },
                            [=] {
                                const Vec xs = lookup ? ref::embedding(tokens, wide(table), C) : wide(x0);
                                const Vec normed = ref::rmsnorm(xs, wide(nw), N, C, double(eps)).out;
                                const Vec qkv = ref::rope_at(ref::linear(normed, wide(w), N, C, W), s, pos, double(theta));
                                auto kv = ref::kv_cache_write(wide(k0), wide(v0), qkv, pos, s, capacity);
                                Outputs o{{"qkv", qkv}, {"keys", kv.keys}, {"values", kv.values}};
                                if (lookup) o["x"] = xs;
                                return o;
                            },
                            {{"qkv", {1e-5, 1e-5, 1e-2}}, {"keys", {1e-5, 1e-5, 1e-2}}, {"values", {1e-5, 1e-5, 1e-2}}, {"x", kExact}}});
        }

    for (const auto& shape : std::vector<std::array<int64_t, 3>>{{1, 256, 128}, {5, 512, 384}, {8, 128, 96}})
        for (bool swiglu : {false, true}) {
            const int64_t B = shape[0], C = shape[1], F = shape[2];
            const int64_t N = swiglu ? 2 * F : F;
            const auto x = act(B * C, 130), nw = act(C, 131, 0.5f), w = act(N * C, 132, 0.1f);
            rows.push_back({{"decode_norm_linear", "rmsnorm_forward", "linear_forward", "swiglu_forward"}, dims({B, C, F}) + (swiglu ? " swiglu" : ""),
                            {out("out", Shape{B, F}), in("x", Shape{B, C}, x), in("norm_w", Shape{C}, nw), in("w", Shape{N, C}, w),
                             Buf("normed", Role::act, Shape{B, C}), Buf("rstd", Role::f32, Shape{B}), Buf("gate_up", Role::act, Shape{B, N})},
                            [=](Backend& be, std::vector<Tensor>& t, Scalars&) {
                                if (be.decode_norm_linear(t[0], t[1], t[2], eps, t[3], swiglu)) return;
                                be.rmsnorm_forward(t[4], t[5], t[1], t[2], eps);
                                be.linear_forward(swiglu ? t[6] : t[0], t[4], t[3]);
                                if (swiglu) be.swiglu_forward(t[0], t[6]);
                            },
                            [=] {
                                const Vec y = ref::linear(ref::rmsnorm(wide(x), wide(nw), B, C, double(eps)).out, wide(w), B, C, N);
                                return Outputs{{"out", swiglu ? ref::swiglu(y, B, F) : y}};
                            },
                            {{"out", {1e-5, 1e-5, 1e-2}}}});
        }
}

// A graph replays what was captured on the data the device holds at replay
// time; a backend without graphs returns 0 and the caller runs the ops.
void graph_rows(std::vector<Row>& rows)
{
    const int64_t n = 4099;
    const auto a = act(n, 140), a2 = act(n, 141), b = act(n, 142);
    rows.push_back({{"capture_graph", "replay_graph", "release_graph", "graph_epoch", "add", "upload"}, std::to_string(n),
                    {out("out", Shape{n}), in("a", Shape{n}, a), in("b", Shape{n}, b)},
                    [=](Backend& be, std::vector<Tensor>& t, Scalars& s) {
                        const uint64_t epoch = be.graph_epoch();
                        const int64_t graph = be.capture_graph([&] { be.add(t[0], t[1], t[2]); });
                        be.upload(t[1], a2.data(), DType::f32);   // after capture: the replay must read it
                        if (graph != 0) {
                            be.replay_graph(graph);
                            be.release_graph(graph);
                        } else {
                            be.add(t[0], t[1], t[2]);
                        }
                        s.push_back(be.graph_epoch() == epoch ? 1.0 : 0.0);
                    },
                    [=] {
                        Vec sum = wide(a2);
                        for (size_t i = 0; i < sum.size(); ++i) sum[i] += b[i];
                        return Outputs{{"out", sum}, {"scalars", {1.0}}};
                    },
                    {{"scalars", kExact}}});
}


// ---- rows: NF4 weights ----------------------------------------------------------------------------------

// An NF4 weight (double quant) of a seeded random matrix, its four tensors as
// table buffers: the byte arrays ride in i32 buffers and are viewed as u8.
struct Nf4Case {
    int64_t rows, cols;
    Nf4Tensor q;
    Vec dequantized;   // what every backend must decode, in fp64
};

Nf4Case nf4_case(int64_t rows, int64_t cols, uint64_t seed)
{
    Nf4Case c{rows, cols, {}, {}};
    const auto w = random_vector(size_t(rows * cols), seed, 0.05f);
    c.q = nf4_quantize(w.data(), rows * cols, true);
    std::vector<float> d(w.size());
    nf4_dequantize(c.q, d.data());
    c.dequantized = wide(d);
    return c;
}

std::vector<int32_t> bytes_as_ids(const std::vector<uint8_t>& bytes)
{
    std::vector<int32_t> ids((bytes.size() + 3) / 4, 0);
    std::memcpy(ids.data(), bytes.data(), bytes.size());
    return ids;
}

// Buffers packed, absmax codes, absmax scales, code (appended to `bufs`).
void add_nf4_bufs(std::vector<Buf>& bufs, const Nf4Case& c)
{
    bufs.push_back(ids_in("nf4 codes", Shape{int64_t(c.q.packed.size() + 3) / 4}, bytes_as_ids(c.q.packed)));
    bufs.push_back(ids_in("nf4 absmax codes", Shape{int64_t(c.q.absmax_codes.size() + 3) / 4},
                          bytes_as_ids(c.q.absmax_codes)));
    bufs.push_back(in("nf4 absmax scales", Shape{int64_t(c.q.absmax_scales.size())}, c.q.absmax_scales, Role::f32));
    const auto& code = dynamic_code_signed();
    bufs.push_back(in("nf4 code", Shape{256}, std::vector<float>(code.begin(), code.end()), Role::f32));
}

// The Nf4Weight over buffers t[first .. first + 3].
Nf4Weight nf4_view(const std::vector<Tensor>& t, size_t first, const Nf4Case& c)
{
    Nf4Weight w;
    w.rows = c.rows;
    w.cols = c.cols;
    w.absmax_mean = c.q.absmax_mean;
    w.packed = Tensor(t[first].data, DType::u8, Shape{int64_t(c.q.packed.size())}, t[first].device);
    w.absmax_codes = Tensor(t[first + 1].data, DType::u8, Shape{int64_t(c.q.absmax_codes.size())}, t[first + 1].device);
    w.absmax_scales = t[first + 2];
    w.code = t[first + 3];
    return w;
}

void nf4_rows(std::vector<Row>& rows)
{
    // Dequantizing: whole blocks, a partial last block, and more than 256
    // blocks (several absmax scales).
    for (const auto& [R, C] : {std::pair<int64_t, int64_t>{7, 64}, {33, 45}, {300, 512}}) {
        const auto c = std::make_shared<Nf4Case>(nf4_case(R, C, 41));
        std::vector<Buf> bufs = {out("out", Shape{R, C})};
        add_nf4_bufs(bufs, *c);
        rows.push_back({{"nf4_dequantize"}, dims({R, C}), bufs,
                        [c](Backend& be, std::vector<Tensor>& t, Scalars&) { be.nf4_dequantize(t[0], nf4_view(t, 1, *c)); },
                        [c] { return Outputs{{"out", c->dequantized}}; }, {{"out", {1e-6, 1e-6, 5e-3}}}});
    }
    // Products into a band of a wider output (one part of a stacked
    // projection): decode rows take the fused GEMV (cols a multiple of 8 or
    // not), more rows the dequantize-then-GEMM path.
    struct Case {
        int64_t M, K, N, total, col;
    };
    for (const Case k : {Case{1, 64, 48, 80, 16}, Case{5, 45, 33, 33, 0}, Case{8, 256, 96, 128, 32},
                         Case{37, 200, 70, 100, 30}, Case{130, 512, 300, 300, 0}}) {
        const auto c = std::make_shared<Nf4Case>(nf4_case(k.N, k.K, 42));
        const auto x = act(k.M * k.K, 43), prior = act(k.M * k.total, 44);
        const std::string v = dims({k.M, k.K, k.N}) + " in " + std::to_string(k.total) + " at " + std::to_string(k.col);
        // The GEMM path rounds the dequantized weight to bf16 once.
        const Tol tol{1e-5, 1e-5, 1e-2};
        for (bool acc : {false, true}) {
            std::vector<Buf> bufs = {out("out", Shape{k.M, k.total}, Role::act, prior), in("in", Shape{k.M, k.K}, x)};
            add_nf4_bufs(bufs, *c);
            rows.push_back({{"nf4_linear_forward"}, v + (acc ? " +=" : ""), bufs,
                            [c, k, acc](Backend& be, std::vector<Tensor>& t, Scalars&) {
                                be.nf4_linear_forward(t[0], t[1], nf4_view(t, 2, *c), k.col, acc);
                            },
                            [c, k, x, prior, acc] {
                                const Vec y = ref::linear(wide(x), c->dequantized, k.M, k.K, k.N);
                                Vec o = wide(prior);
                                for (int64_t m = 0; m < k.M; ++m)
                                    for (int64_t n = 0; n < k.N; ++n) {
                                        double& e = o[size_t(m * k.total + k.col + n)];
                                        e = (acc ? e : 0.0) + y[size_t(m * k.N + n)];
                                    }
                                return Outputs{{"out", o}};
                            },
                            {{"out", tol}}});
        }
        const auto dout = act(k.M * k.total, 45), prior_din = act(k.M * k.K, 46);
        for (bool acc : {false, true}) {
            std::vector<Buf> bufs = {out("din", Shape{k.M, k.K}, Role::act, prior_din),
                                     in("dout", Shape{k.M, k.total}, dout)};
            add_nf4_bufs(bufs, *c);
            rows.push_back({{"nf4_linear_backward"}, v + (acc ? " din +=" : ""), bufs,
                            [c, k, acc](Backend& be, std::vector<Tensor>& t, Scalars&) {
                                be.nf4_linear_backward(t[0], t[1], nf4_view(t, 2, *c), k.col, acc);
                            },
                            [c, k, dout, prior_din, acc] {
                                Vec band(size_t(k.M * k.N));
                                for (int64_t m = 0; m < k.M; ++m)
                                    for (int64_t n = 0; n < k.N; ++n)
                                        band[size_t(m * k.N + n)] = dout[size_t(m * k.total + k.col + n)];
                                Vec din = ref::linear_backward(band, Vec(size_t(k.M * k.K), 0.0), c->dequantized,
                                                               k.M, k.K, k.N).din;
                                return Outputs{{"din", acc ? plus(din, prior_din) : din}};
                            },
                            {{"din", tol}}});
        }
    }
}

const std::vector<Row>& table()
{
    static const std::vector<Row> rows = [] {
        std::vector<Row> r;
        transfer_rows(r);
        embedding_rows(r);
        linear_rows(r);
        nf4_rows(r);
        norm_rows(r);
        attention_block_rows(r);
        mlp_rows(r);
        classifier_rows(r);
        optimizer_rows(r);
        decode_rows(r);
        fused_decode_rows(r);
        graph_rows(r);
        return r;
    }();
    return rows;
}

// ---- finite differences of the references --------------------------------------------------------------

Vec random_ref(int64_t n, uint64_t seed, float scale = 1.0f) { return wide(random_vector(size_t(n), seed, scale)); }

template <class F>
std::pair<Vec, Vec> fd(Vec analytic, F f, const Vec& x, const Vec& weights)
{
    return {std::move(analytic), ref::numeric_gradient(f, x, weights)};
}

const std::vector<GradCheck>& grad_checks()
{
    static const std::vector<GradCheck> checks = [] {
        std::vector<GradCheck> c;
        c.push_back({"embedding_backward", "dtable", [] {
                         const int64_t vocab = 5, dim = 3;
                         const std::vector<int32_t> ids = {1, 4, 1, 1, 0};   // repeated ids accumulate
                         const auto w = random_ref(int64_t(ids.size()) * dim, 1);
                         return fd(ref::embedding_backward(ids, w, vocab, dim),
                                   [&](const Vec& table) { return ref::embedding(ids, table, dim); }, random_ref(vocab * dim, 2), w);
                     }});
        {
            const int64_t M = 3, K = 4, N = 5;
            const auto x = random_ref(M * K, 6), w = random_ref(N * K, 7), dy = random_ref(M * N, 8);
            c.push_back({"linear_backward", "din", [=] {
                             return fd(ref::linear_backward(dy, x, w, M, K, N).din, [&](const Vec& v) { return ref::linear(v, w, M, K, N); }, x, dy);
                         }});
            c.push_back({"linear_backward", "dweight", [=] {
                             return fd(ref::linear_backward(dy, x, w, M, K, N).dweight, [&](const Vec& v) { return ref::linear(x, v, M, K, N); }, w, dy);
                         }});
        }
        {
            // The NF4 product's input gradient is the dense one over the
            // dequantized weight (the base is frozen: no weight gradient).
            const int64_t M = 3, K = 4, N = 5;
            const auto x = random_ref(M * K, 61), dy = random_ref(M * N, 62);
            const Nf4Case nc = nf4_case(N, K, 63);
            const Vec w = nc.dequantized;
            c.push_back({"nf4_linear_backward", "din", [=] {
                             return fd(ref::linear_backward(dy, x, w, M, K, N).din, [&](const Vec& v) { return ref::linear(v, w, M, K, N); }, x, dy);
                         }});
        }
        {
            const double eps = double(1e-5f);
            const int64_t R = 3, C = 5;
            const auto x = random_ref(R * C, 14), w = random_ref(C, 15), b = random_ref(C, 24), dy = random_ref(R * C, 16);
            c.push_back({"rmsnorm_backward", "dx", [=] {
                             return fd(ref::rmsnorm_backward(dy, x, w, R, C, eps).dx, [&](const Vec& v) { return ref::rmsnorm(v, w, R, C, eps).out; }, x, dy);
                         }});
            c.push_back({"rmsnorm_backward", "dweight", [=] {
                             return fd(ref::rmsnorm_backward(dy, x, w, R, C, eps).dweight, [&](const Vec& v) { return ref::rmsnorm(x, v, R, C, eps).out; }, w, dy);
                         }});
            c.push_back({"layernorm_backward", "dx", [=] {
                             return fd(ref::layernorm_backward(dy, x, w, R, C, eps).dx, [&](const Vec& v) { return ref::layernorm(v, w, b, R, C, eps).out; }, x, dy);
                         }});
            c.push_back({"layernorm_backward", "dweight", [=] {
                             return fd(ref::layernorm_backward(dy, x, w, R, C, eps).dweight, [&](const Vec& v) { return ref::layernorm(x, v, b, R, C, eps).out; }, w, dy);
                         }});
            c.push_back({"layernorm_backward", "dbias", [=] {
                             return fd(ref::layernorm_backward(dy, x, w, R, C, eps).dbias, [&](const Vec& v) { return ref::layernorm(x, w, v, R, C, eps).out; }, b, dy);
                         }});
        }
        {
            const double eps = double(1e-6f);
            const AttentionShape s{1, 2, 2, 1, 4};
            const auto qkv = random_ref(s.tokens() * s.qkv_dim(), 33), qw = random_ref(s.head_dim, 34), kw = random_ref(s.head_dim, 35),
                       dy = random_ref(s.tokens() * s.qkv_dim(), 36);
            c.push_back({"qk_norm_backward", "dqkv", [=] {
                             return fd(ref::qk_norm_backward(dy, qkv, qw, kw, s, eps).dqkv, [&](const Vec& v) { return ref::qk_norm(v, qw, kw, s, eps); }, qkv, dy);
                         }});
            c.push_back({"qk_norm_backward", "dq_weight", [=] {
                             return fd(ref::qk_norm_backward(dy, qkv, qw, kw, s, eps).dq_weight, [&](const Vec& v) { return ref::qk_norm(qkv, v, kw, s, eps); }, qw, dy);
                         }});
            c.push_back({"qk_norm_backward", "dk_weight", [=] {
                             return fd(ref::qk_norm_backward(dy, qkv, qw, kw, s, eps).dk_weight, [&](const Vec& v) { return ref::qk_norm(qkv, qw, v, s, eps); }, kw, dy);
                         }});
        }
        {
            const AttentionShape s{2, 3, 2, 1, 4};
            const auto qkv = random_ref(s.tokens() * s.qkv_dim(), 43), dy = random_ref(s.tokens() * s.qkv_dim(), 44);
            c.push_back({"rope_backward", "dqkv", [=] {
                             return fd(ref::rope(dy, s, 7, 10000.0, true), [&](const Vec& v) { return ref::rope(v, s, 7, 10000.0); }, qkv, dy);
                         }});
        }
        for (const AttentionShape s : {AttentionShape{2, 5, 4, 2, 4}, AttentionShape{1, 4, 3, 1, 6}}) {
            const auto qkv = random_ref(s.tokens() * s.qkv_dim(), 46), dy = random_ref(s.tokens() * s.q_dim(), 47);
            c.push_back({"attention_backward", "dqkv " + shape_name(s), [=] {
                             return fd(ref::attention_backward(dy, qkv, s), [&](const Vec& v) { return ref::attention(v, s).out; }, qkv, dy);
                         }});
        }
        {
            const int64_t R = 2, F = 3;
            const auto x = random_ref(R * 2 * F, 50, 2.0f), dy = random_ref(R * F, 51);
            c.push_back({"swiglu_backward", "dgate_up", [=] {
                             return fd(ref::swiglu_backward(dy, x, R, F), [&](const Vec& v) { return ref::swiglu(v, R, F); }, x, dy);
                         }});
            const auto g = random_ref(7, 54, 2.0f), gy = random_ref(7, 55);
            c.push_back({"gelu_backward", "din", [=] {
                             return fd(ref::gelu_backward(gy, g), [&](const Vec& v) { return ref::gelu(v); }, g, gy);
                         }});
        }
        {
            // Cross-entropy and the classifier head: the gradient of grad_scale·Σ losses.
            const int64_t R = 4, V = 7, C = 3;
            const std::vector<int32_t> targets = {2, -1, 6, 0};
            const double scale = 0.5;
            const auto logits = random_ref(R * V, 58, 2.0f), x = random_ref(R * C, 59), w = random_ref(V * C, 60);
            const Vec ones(size_t(R), 1.0);
            const auto scaled = [=](const Vec& z) {
                auto l = ref::cross_entropy(z, targets, R, V, scale).losses;
                for (auto& v : l) v *= scale;
                return l;
            };
            c.push_back({"softmax_cross_entropy", "logits", [=] {
                             return fd(ref::cross_entropy(logits, targets, R, V, scale).grad, scaled, logits, ones);
                         }});
            const auto head = [=](const Vec& xv, const Vec& wv) {
                const auto dlogits = ref::cross_entropy(ref::linear(xv, wv, R, C, V), targets, R, V, scale).grad;
                return ref::linear_backward(dlogits, xv, wv, R, C, V);
            };
            c.push_back({"classifier", "dx", [=] {
                             return fd(head(x, w).din, [&](const Vec& v) { return scaled(ref::linear(v, w, R, C, V)); }, x, ones);
                         }});
            c.push_back({"classifier", "dweight", [=] {
                             return fd(head(x, w).dweight, [&](const Vec& v) { return scaled(ref::linear(x, v, R, C, V)); }, w, ones);
                         }});
        }
        return c;
    }();
    return checks;
}

// ---- running a row ----------------------------------------------------------------------------------

// Runs the row on `be` with its activation inputs rounded as `rounding`
// rounds them (bf16 when comparing against a bf16 backend) and returns the
// compared buffers and scalars.
Outputs run_row(const Row& row, Backend& be, const Backend& rounding)
{
    std::vector<OwnedTensor> owned;
    std::vector<Tensor> t;
    owned.reserve(row.bufs.size());
    for (const Buf& b : row.bufs) {
        if (b.role == Role::i32) {
            owned.emplace_back(be, b.shape, b.ids.empty() ? std::vector<int32_t>(size_t(b.shape.numel()), 0) : b.ids);
        } else {
            std::vector<float> host = b.host.empty() ? std::vector<float>(size_t(b.shape.numel()), 0.0f) : b.host;
            if (b.role == Role::act) host = rounded_for(rounding, host);
            owned.emplace_back(be, b.role == Role::act ? be.compute_dtype() : DType::f32, b.shape, host);
        }
        t.push_back(owned.back().t);
    }
    Scalars scalars;
    row.run(be, t, scalars);
    be.synchronize();
    Outputs o;
    for (size_t i = 0; i < row.bufs.size(); ++i)
        if (row.bufs[i].compare) o[row.bufs[i].name] = wide(owned[i].to_host());
    if (!scalars.empty()) o["scalars"] = scalars;
    if (row.derive) row.derive(o);
    return o;
}

enum class Side { cpu, cuda_f32, cuda_bf16 };

double limit_of(const Row& row, const std::string& output, Side side)
{
    const auto it = row.tol.find(output);
    const Tol t = it == row.tol.end() ? Tol{} : it->second;
    return side == Side::cpu ? t.cpu : side == Side::cuda_f32 ? t.f32 : t.bf16;
}

// Every output of `got` against `want`, within the row's limits.
void expect_close(const Row& row, const Outputs& got, const Outputs& want, Side side, const char* label)
{
    QCOMPARE(got.size(), want.size());
    for (const auto& [name, w] : want) {
        const auto g = got.find(name);
        QVERIFY2(g != got.end(), qPrintable(QString("%1: no output %2").arg(row.name().c_str(), name.c_str())));
        const double limit = limit_of(row, name, side);
        const double err = ref::rel_error(g->second, w);
        if (qEnvironmentVariableIsSet("CRUCIBLE_TEST_VERBOSE"))
            qInfo("%-48s %-10s %-14s rel.err %.3e (limit %.0e)", row.name().c_str(), label, name.c_str(), err, limit);
        QVERIFY2(err <= limit, qPrintable(QString("%1 on %2, %3: relative error %4 above %5")
                                              .arg(row.name().c_str(), label, name.c_str())
                                              .arg(err)
                                              .arg(limit)));
    }
}

// The Backend ops the table must cover: every hook of kernels/backend.h but
// the device's identity and memory, which every row uses.
std::set<std::string> backend_ops()
{
#define CRUCIBLE_OP_NAME(type, op, params) #op,
    std::set<std::string> ops = {CRUCIBLE_BACKEND_REQUIRED_HOOKS(CRUCIBLE_OP_NAME) CRUCIBLE_BACKEND_OPTIONAL_HOOKS(CRUCIBLE_OP_NAME)};
    const std::set<std::string> memory = {CRUCIBLE_BACKEND_DEVICE_HOOKS(CRUCIBLE_OP_NAME) CRUCIBLE_BACKEND_HOST_MEMORY_HOOKS(CRUCIBLE_OP_NAME)};
#undef CRUCIBLE_OP_NAME
    for (const auto& m : memory) ops.erase(m);
    return ops;
}

// Ops whose result is a gradient: their reference needs a finite-difference check.
bool is_gradient_op(const std::string& op)
{
    return op.ends_with("_backward") || op == "softmax_cross_entropy" || op == "classifier";
}

} // namespace

class TestOpParity : public QObject {
    Q_OBJECT

private:
    std::unique_ptr<Backend> m_cpu, m_f32, m_bf16;

    void add_rows()
    {
        QTest::addColumn<int>("row");
        const auto& rows = table();
        for (size_t i = 0; i < rows.size(); ++i) QTest::newRow(rows[i].name().c_str()) << int(i);
    }

private slots:
    void initTestCase()
    {
        m_cpu = make_cpu();
        if (cuda_available()) {
            m_f32 = make_cuda(true);
            m_bf16 = make_cuda(false);
        }
    }

    void everyOpHasARow()
    {
        std::set<std::string> covered, gradient_checked;
        for (const Row& r : table()) covered.insert(r.ops.begin(), r.ops.end());
        for (const GradCheck& g : grad_checks()) gradient_checked.insert(g.op);
        QStringList missing, unchecked, unknown;
        for (const std::string& op : backend_ops()) {
            if (!covered.count(op)) missing << QString::fromStdString(op);
            if (is_gradient_op(op) && !gradient_checked.count(op)) unchecked << QString::fromStdString(op);
        }
        for (const std::string& op : covered)
            if (!backend_ops().count(op)) unknown << QString::fromStdString(op);
        QVERIFY2(missing.isEmpty(), qPrintable("Backend ops without a row in the parity table: " + missing.join(", ")));
        QVERIFY2(unchecked.isEmpty(), qPrintable("gradient ops without a finite-difference check: " + unchecked.join(", ")));
        QVERIFY2(unknown.isEmpty(), qPrintable("rows name ops Backend does not have: " + unknown.join(", ")));
    }

    void referenceGradientsMatchFiniteDifferences_data()
    {
        QTest::addColumn<int>("check");
        const auto& checks = grad_checks();
        for (size_t i = 0; i < checks.size(); ++i)
            QTest::newRow((checks[i].op + " " + checks[i].what).c_str()) << int(i);
    }
    void referenceGradientsMatchFiniteDifferences()
    {
        QFETCH(int, check);
        const auto [analytic, numeric] = grad_checks()[size_t(check)].analytic_and_numeric();
        const double err = ref::rel_error(analytic, numeric);
        QVERIFY2(err <= 1e-6, qPrintable(QString("reference backward against finite differences: %1").arg(err)));
    }

    void cpuMatchesReference_data() { add_rows(); }
    void cpuMatchesReference()
    {
        QFETCH(int, row);
        const Row& r = table()[size_t(row)];
        expect_close(r, run_row(r, *m_cpu, *m_cpu), r.reference(), Side::cpu, "cpu");
    }

    void cudaMatchesCpu_data() { add_rows(); }
    void cudaMatchesCpu()
    {
        if (!m_bf16) {
            std::string why;
            cuda_available(&why);
            QSKIP(("no CUDA device: " + why).c_str());
        }
        QFETCH(int, row);
        const Row& r = table()[size_t(row)];
        for (Backend* gpu : {m_f32.get(), m_bf16.get()}) {
            const bool bf16 = gpu->compute_dtype() == DType::bf16;
            const Outputs want = run_row(r, *m_cpu, *gpu);
            expect_close(r, run_row(r, *gpu, *gpu), want, bf16 ? Side::cuda_bf16 : Side::cuda_f32, bf16 ? "cuda bf16" : "cuda f32");
        }
    }

    // CRUCIBLE_OP_PERF=1: the median time of every row on every backend.
    void perf()
    {
        if (!qEnvironmentVariableIsSet("CRUCIBLE_OP_PERF")) QSKIP("set CRUCIBLE_OP_PERF=1 to time every row");
        std::vector<std::pair<const char*, Backend*>> backends = {{"cpu", m_cpu.get()}};
        if (m_f32) backends.insert(backends.end(), {{"cuda f32", m_f32.get()}, {"cuda bf16", m_bf16.get()}});
        for (const Row& r : table())
            for (const auto& [label, be] : backends) {
                std::vector<OwnedTensor> owned;
                std::vector<Tensor> t;
                owned.reserve(r.bufs.size());
                for (const Buf& b : r.bufs) {
                    if (b.role == Role::i32)
                        owned.emplace_back(*be, b.shape, b.ids.empty() ? std::vector<int32_t>(size_t(b.shape.numel()), 0) : b.ids);
                    else
                        owned.emplace_back(*be, b.role == Role::act ? be->compute_dtype() : DType::f32, b.shape,
                                           b.host.empty() ? std::vector<float>(size_t(b.shape.numel()), 0.0f) : b.host);
                    t.push_back(owned.back().t);
                }
                Scalars scalars;
                const Timing time = time_repeated(*be, [&] { r.run(*be, t, scalars); }, 2, 10);
                qInfo("%-56s %-10s %10.1f us (min %.1f)", r.name().c_str(), label, 1e3 * time.median_ms, 1e3 * time.min_ms);
            }
    }

    // ---- what the table cannot say -------------------------------------------------------------------

    void embeddingBackwardDoesNotDependOnThreads()
    {
        const int64_t vocab = 259, dim = 45, n = 111;
        auto ids = random_ids(size_t(n), 7, 3);
        ids[10] = int32_t(vocab - 1);
        const auto dout = random_vector(size_t(n * dim), 4), prior = random_vector(size_t(vocab * dim), 5);
        std::vector<float> first;
        // Up to 3 threads (an odd split), as many as this machine's cores allow.
        for (int threads : {1, 2, 3}) {
            if (threads > default_cpu_threads()) break;
            BackendOptions o;
            o.threads = threads;
            auto be = make_backend(o);
            OwnedTensor dtable(*be, DType::f32, Shape{vocab, dim}, prior), tok(*be, Shape{n}, ids), dy(*be, DType::f32, Shape{n, dim}, dout);
            be->embedding_backward(dtable, tok, dy);
            const double err = ref::rel_error(wide(dtable.to_host()), plus(ref::embedding_backward(ids, wide(dout), vocab, dim), prior));
            QVERIFY2(err <= 1e-5, qPrintable(QString("%1 threads: relative error %2").arg(threads).arg(err)));
        }
    }

    void ropeAtLeavesPaddingAndValueHeadsAlone()
    {
        for (const DecodeCase& c : decode_cases()) {
            const AttentionShape& s = c.s;
            const auto pos = random_positions(s, c.capacity, 7);
            const auto host = random_vector(size_t(s.tokens() * s.qkv_dim()), 11);
            OwnedTensor qkv(*m_cpu, DType::f32, Shape{s.tokens(), s.qkv_dim()}, host), positions(*m_cpu, Shape{s.tokens()}, pos);
            m_cpu->rope_forward_at(qkv, s, positions, 10000.0f);
            const auto got = qkv.to_host();
            for (int64_t r = 0; r < s.tokens(); ++r)
                for (int64_t i = 0; i < s.qkv_dim(); ++i) {
                    const size_t at = size_t(r * s.qkv_dim() + i);
                    if (pos[size_t(r)] < 0 || i >= s.q_dim() + s.kv_dim()) QCOMPARE(got[at], host[at]);
                }
        }
    }

    void ropeAtEqualsRopeForwardBitForBit()
    {
        // The cached path must rotate a token exactly as the training path does,
        // or cached logits drift from recomputed ones.
        const AttentionShape s{2, 9, 4, 2, 16};
        for (int64_t offset : {int64_t(0), int64_t(37), int64_t(1000)}) {
            const auto host = random_vector(size_t(s.tokens() * s.qkv_dim()), 5);
            OwnedTensor a(*m_cpu, DType::f32, Shape{s.tokens(), s.qkv_dim()}, host), b(*m_cpu, DType::f32, Shape{s.tokens(), s.qkv_dim()}, host);
            std::vector<int32_t> pos(size_t(s.tokens()));
            for (int64_t r = 0; r < s.tokens(); ++r) pos[size_t(r)] = int32_t(offset + r % s.seq);
            OwnedTensor positions(*m_cpu, Shape{s.tokens()}, pos);
            m_cpu->rope_forward(a, s, offset, 10000.0f);
            m_cpu->rope_forward_at(b, s, positions, 10000.0f);
            QCOMPARE(max_abs_diff(a.to_host(), b.to_host()), 0.0);
        }
    }

    void attentionOverFilledCacheEqualsCausalAttention()
    {
        for (const AttentionShape s : {AttentionShape{2, 37, 4, 2, 16}, AttentionShape{1, 130, 8, 1, 32}}) {
            const auto host = random_vector(size_t(s.tokens() * s.qkv_dim()), 31);
            OwnedTensor qkv(*m_cpu, DType::f32, Shape{s.tokens(), s.qkv_dim()}, host);
            const Shape cache_shape{s.batch, s.n_kv_heads, s.seq + 3, s.head_dim};
            OwnedTensor keys(*m_cpu, DType::f32, cache_shape), values(*m_cpu, DType::f32, cache_shape);
            std::vector<int32_t> pos(size_t(s.tokens()));
            for (int64_t r = 0; r < s.tokens(); ++r) pos[size_t(r)] = int32_t(r % s.seq);
            OwnedTensor positions(*m_cpu, Shape{s.tokens()}, pos);
            OwnedTensor cached(*m_cpu, DType::f32, Shape{s.tokens(), s.q_dim()}), full(*m_cpu, DType::f32, Shape{s.tokens(), s.q_dim()});
            OwnedTensor lse(*m_cpu, DType::f32, Shape{s.batch, s.n_heads, s.seq});
            m_cpu->kv_cache_write(keys, values, qkv, positions, s);
            m_cpu->attention_decode(cached, qkv, keys, values, positions, s);
            m_cpu->attention_forward(full, lse, qkv, s);
            QVERIFY2(relative_error(cached.to_host(), full.to_host()) <= 1e-5, qPrintable(QString::fromStdString(shape_name(s))));
        }
    }

    void decodeOpsRefuseBadInput()
    {
        Backend& be = *m_cpu;
        const AttentionShape s{2, 1, 4, 2, 8};
        OwnedTensor qkv(be, DType::f32, Shape{s.tokens(), s.qkv_dim()}, random_vector(size_t(s.tokens() * s.qkv_dim()), 1));
        OwnedTensor out(be, DType::f32, Shape{s.tokens(), s.q_dim()});
        OwnedTensor keys(be, DType::f32, Shape{2, 2, 10, 8}), values(be, DType::f32, Shape{2, 2, 10, 8});
        OwnedTensor past_end(be, Shape{2}, std::vector<int32_t>{3, 10});
        QVERIFY_THROWS_EXCEPTION(Error, be.kv_cache_write(keys, values, qkv, past_end, s));
        QVERIFY_THROWS_EXCEPTION(Error, be.attention_decode(out, qkv, keys, values, past_end, s));
        OwnedTensor fine(be, Shape{2}, std::vector<int32_t>{3, 9});
        OwnedTensor narrow_cache(be, DType::f32, Shape{2, 1, 10, 8});   // one KV head where the shape has two
        QVERIFY_THROWS_EXCEPTION(Error, be.kv_cache_write(narrow_cache, narrow_cache, qkv, fine, s));
        QVERIFY_THROWS_EXCEPTION(Error, be.attention_decode(out, qkv, narrow_cache, narrow_cache, fine, s));
        OwnedTensor float_positions(be, DType::f32, Shape{2});
        QVERIFY_THROWS_EXCEPTION(Error, be.rope_forward_at(qkv, s, float_positions, 10000.0f));
        const AttentionShape odd_dim{2, 1, 4, 2, 7};
        OwnedTensor odd_qkv(be, DType::f32, Shape{odd_dim.tokens(), odd_dim.qkv_dim()});
        QVERIFY_THROWS_EXCEPTION(Error, be.rope_forward_at(odd_qkv, odd_dim, fine, 10000.0f));
        OwnedTensor logits(be, DType::f32, Shape{2, 16}), probs(be, DType::f32, Shape{2});
        QVERIFY_THROWS_EXCEPTION(Error, be.argmax_rows(float_positions, probs, logits, Tensor()));   // ids must be i32
        OwnedTensor three_rows(be, DType::f32, Shape{3, 16});
        QVERIFY_THROWS_EXCEPTION(Error, be.argmax_rows(fine, probs, three_rows, Tensor()));   // rows differ
        OwnedTensor three_ids(be, Shape{3}, std::vector<int32_t>{0, 0, 0});
        QVERIFY_THROWS_EXCEPTION(Error, be.argmax_rows(fine, probs, logits, three_ids));   // next tokens: rows differ
    }

    void cudaReductionsAreDeterministic()
    {
        if (!m_bf16) {
            std::string why;
            cuda_available(&why);
            QSKIP(("no CUDA device: " + why).c_str());
        }
        // Scatter-adds and reductions must not depend on scheduling.
        Backend& gpu = *m_bf16;
        const int64_t n = 4096, V = 50, C = 256;
        const auto ids = random_ids(size_t(n), int32_t(V), 110);
        OwnedTensor tokens(gpu, Shape{n}, ids), dout(gpu, gpu.compute_dtype(), Shape{n, C}, random_vector(size_t(n * C), 111));
        std::vector<float> first;
        for (int run = 0; run < 2; ++run) {
            OwnedTensor dtable(gpu, DType::f32, Shape{V, C}, std::vector<float>(size_t(V * C), 0.0f));
            gpu.embedding_backward(dtable.t, tokens.t, dout.t);
            const auto got = dtable.to_host();
            if (run == 0) first = got;
            else QVERIFY(std::memcmp(first.data(), got.data(), first.size() * sizeof(float)) == 0);
        }
        OwnedTensor x(gpu, DType::f32, Shape{1000003}, random_vector(1000003, 90));
        QCOMPARE(gpu.sum_squares(x.t), gpu.sum_squares(x.t));
    }
};

QTEST_APPLESS_MAIN(TestOpParity)
#include "tst_op_parity.moc"
