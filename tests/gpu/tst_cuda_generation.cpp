// Generation on CUDA against the CPU reference: the three generation ops
// (rope_forward_at, kv_cache_write, attention_decode) on random inputs with
// ragged positions and padding rows, GQA groups 1 to 8, caches long enough
// for the split-K path and short enough for one split; the fused decode ops
// (bf16) against the separate ops they replace, alone and as whole decode
// steps; then whole greedy generations (batched, speculative) token for
// token in f32 mode.
//
// Tolerances (relative error of each output, as in tst_op_parity): the cache
// write is a copy (exact); RoPE one rounding (f32 1e-5, bf16 5e-3);
// attention rounds P to nothing but its output once, with exp and the order
// of the f32 sums differing (f32 1e-5, bf16 1e-2).
#include "core/generate/cached_forward.h"
#include "core/generate/generator.h"
#include "core/util/rng.h"
#include "tests/gpu/gpu_compare.h"

#include <QtTest>

#include <set>

using namespace crucible;
using namespace crucible::test;

namespace {

struct Case {
    AttentionShape s;
    int64_t capacity;
};

const std::vector<Case>& cases()
{
    static const std::vector<Case> all = {
        {{1, 1, 8, 8, 64}, 32},     {{1, 1, 8, 2, 128}, 1000}, {{4, 1, 16, 2, 64}, 300}, {{8, 1, 12, 4, 64}, 2048},
        {{2, 5, 8, 1, 128}, 100},   {{3, 7, 4, 2, 80}, 61},    {{1, 33, 32, 4, 64}, 500}, {{2, 1, 6, 3, 6}, 40},
    };
    return all;
}

std::vector<int32_t> random_positions(const AttentionShape& s, int64_t capacity, uint64_t seed)
{
    Rng rng(seed);
    std::vector<int32_t> pos(size_t(s.tokens()), -1);
    for (int64_t b = 0; b < s.batch; ++b) {
        if (s.batch > 2 && b == 1) continue;   // a sequence sitting out
        const int64_t count = s.seq == 1 ? 1 : 1 + int64_t(rng.below(uint64_t(s.seq)));
        const int64_t start = b == 0 ? capacity - count : int64_t(rng.below(uint64_t(capacity - count + 1)));
        for (int64_t t = 0; t < count; ++t) pos[size_t(b * s.seq + t)] = int32_t(start + t);
    }
    return pos;
}

QString name(const Case& c)
{
    const AttentionShape& s = c.s;
    return QString("B%1 T%2 H%3 KV%4 D%5 P%6").arg(s.batch).arg(s.seq).arg(s.n_heads).arg(s.n_kv_heads).arg(s.head_dim)
        .arg(c.capacity);
}

ModelConfig tiny(int kv_heads, int layers, int d_model)
{
    ModelConfig c;
    c.vocab_size = 300;
    c.d_model = d_model;
    c.n_layers = layers;
    c.n_heads = 4;
    c.n_kv_heads = kv_heads;
    c.ff_dim = 2 * d_model;
    c.seq_len = 256;
    c.init_std = 0.1f;
    return c;
}

// Greedy decoding of `prompts`, `new_tokens` each, past any EOS.
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

class TestCudaGeneration : public QObject {
    Q_OBJECT

private:
    std::unique_ptr<Backend> m_cpu, m_f32, m_bf16;
    std::vector<Backend*> modes() const { return {m_f32.get(), m_bf16.get()}; }

    void expect(const CaseResult& r, const QString& what, const Backend& gpu, double f32_tol, double bf16_tol)
    {
        const double tol = gpu.compute_dtype() == DType::bf16 ? bf16_tol : f32_tol;
        for (const auto& [buffer, err] : r.error) {
            qInfo("%s %s [%s]: %.2e", qPrintable(what), buffer.c_str(), dtype_name(gpu.compute_dtype()), err);
            QVERIFY2(err <= tol, qPrintable(QString("%1 %2: relative error %3 > %4").arg(what).arg(buffer.c_str())
                                                .arg(err).arg(tol)));
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
    }

    void ropeAt()
    {
        for (const Case& c : cases())
            for (Backend* gpu : modes()) {
                const AttentionShape s = c.s;
                const auto r = run_case(*m_cpu, *gpu,
                                        {Buf("qkv", Role::act, Shape{s.tokens(), s.qkv_dim()},
                                             random_vector(size_t(s.tokens() * s.qkv_dim()), 1), {}, true),
                                         Buf("positions", Role::i32, Shape{s.tokens()}, {}, random_positions(s, c.capacity, 2))},
                                        [s](Backend& be, std::vector<Tensor>& t) { be.rope_forward_at(t[0], s, t[1], 10000.0f); });
                expect(r, "rope_forward_at " + name(c), *gpu, 1e-5, 5e-3);
            }
    }

    void kvCacheWrite()
    {
        for (const Case& c : cases())
            for (Backend* gpu : modes()) {
                const AttentionShape s = c.s;
                const Shape cache{s.batch, s.n_kv_heads, c.capacity, s.head_dim};
                const auto r = run_case(
                    *m_cpu, *gpu,
                    {Buf("k_cache", Role::act, cache, random_vector(size_t(cache.numel()), 3), {}, true),
                     Buf("v_cache", Role::act, cache, random_vector(size_t(cache.numel()), 4), {}, true),
                     Buf("qkv", Role::act, Shape{s.tokens(), s.qkv_dim()}, random_vector(size_t(s.tokens() * s.qkv_dim()), 5)),
                     Buf("positions", Role::i32, Shape{s.tokens()}, {}, random_positions(s, c.capacity, 6))},
                    [s](Backend& be, std::vector<Tensor>& t) { be.kv_cache_write(t[0], t[1], t[2], t[3], s); });
                expect(r, "kv_cache_write " + name(c), *gpu, 0.0, 0.0);
            }
    }

    void attentionDecode()
    {
        for (const Case& c : cases())
            for (Backend* gpu : modes()) {
                const AttentionShape s = c.s;
                const Shape cache{s.batch, s.n_kv_heads, c.capacity, s.head_dim};
                const auto r = run_case(
                    *m_cpu, *gpu,
                    {Buf("out", Role::act, Shape{s.tokens(), s.q_dim()}, {}, {}, true),
                     Buf("qkv", Role::act, Shape{s.tokens(), s.qkv_dim()}, random_vector(size_t(s.tokens() * s.qkv_dim()), 7)),
                     Buf("k_cache", Role::act, cache, random_vector(size_t(cache.numel()), 8)),
                     Buf("v_cache", Role::act, cache, random_vector(size_t(cache.numel()), 9)),
                     Buf("positions", Role::i32, Shape{s.tokens()}, {}, random_positions(s, c.capacity, 10))},
                    [s](Backend& be, std::vector<Tensor>& t) { be.attention_decode(t[0], t[1], t[2], t[3], t[4], s); });
                expect(r, "attention_decode " + name(c), *gpu, 1e-5, 1e-2);
            }
    }

    void fusedDecodeOps()
    {
        // Each lambda takes the fused op where the backend has one (the bf16
        // GPU must; f32 and the CPU reference run the separate ops).
        struct Fused {
            AttentionShape s;
            int64_t C, F, V, capacity;
        };
        const float eps = 1e-5f, theta = 10000.0f;
        // The last shape is a verification chunk: 2 sequences × 3 tokens,
        // with padding rows.
        for (const Fused& f : {Fused{{1, 1, 12, 4, 64}, 768, 2048, 4096, 600}, Fused{{3, 1, 8, 2, 128}, 256, 672, 1008, 100},
                               Fused{{8, 1, 4, 4, 32}, 128, 352, 320, 50}, Fused{{2, 3, 8, 2, 64}, 256, 672, 1008, 90}})
            for (Backend* gpu : modes()) {
                const AttentionShape s = f.s;
                const int64_t B = s.tokens();   // rows
                const QString tag = QString(" B%1 T%2 C%3 D%4").arg(s.batch).arg(s.seq).arg(f.C).arg(s.head_dim);
                const bool want_fused = gpu->compute_dtype() == DType::bf16;
                std::vector<float> norm_weight = random_vector(size_t(f.C), 20, 0.2f);
                for (float& w : norm_weight) w += 1.0f;
                auto common = [&](std::vector<Buf> bufs) {
                    bufs.push_back(Buf("x", Role::act, Shape{B, f.C}, random_vector(size_t(B * f.C), 21)));
                    bufs.push_back(Buf("norm_weight", Role::act, Shape{f.C}, norm_weight));
                    bufs.push_back(Buf("norm_out", Role::act, Shape{B, f.C}));
                    bufs.push_back(Buf("rstd", Role::f32, Shape{B}));
                    return bufs;
                };
                bool took = false;
                auto note = [&](Backend& be, bool fused) {
                    if (&be == gpu) took = fused;
                };

                // decode_norm_qkv from a given x, and in the first layer's form,
                // where x is looked up in the embedding table (and written).
                const Shape cache{s.batch, s.n_kv_heads, f.capacity, s.head_dim};
                const int64_t vocab = 40;
                for (bool look_up : {false, true}) {
                    std::vector<Buf> bufs = common(
                        {Buf("qkv", Role::act, Shape{B, s.qkv_dim()}, {}, {}, true),
                         Buf("k_cache", Role::act, cache, random_vector(size_t(cache.numel()), 22), {}, true),
                         Buf("v_cache", Role::act, cache, random_vector(size_t(cache.numel()), 23), {}, true),
                         Buf("w", Role::act, Shape{s.qkv_dim(), f.C}, random_vector(size_t(s.qkv_dim() * f.C), 24, 0.05f)),
                         Buf("positions", Role::i32, Shape{B}, {}, random_positions(s, f.capacity, 25))});
                    bufs.push_back(Buf("table", Role::act, Shape{vocab, f.C}, random_vector(size_t(vocab * f.C), 27)));
                    bufs.push_back(Buf("tokens", Role::i32, Shape{B}, {}, random_ids(size_t(B), int32_t(vocab), 28)));
                    if (look_up) bufs[5].compare = true;   // x, which the lookup writes
                    const auto qkv = run_case(*m_cpu, *gpu, bufs, [&](Backend& be, std::vector<Tensor>& t) {
                        const Backend::EmbeddingLookup lookup = look_up ? Backend::EmbeddingLookup{t[10], t[9]}
                                                                        : Backend::EmbeddingLookup{};
                        const bool fused = be.decode_norm_qkv(t[0], t[1], t[2], t[5], t[6], eps, t[3], t[4], s, theta, lookup);
                        note(be, fused);
                        if (fused) return;
                        if (look_up) be.embedding_forward(t[5], t[10], t[9]);
                        be.rmsnorm_forward(t[7], t[8], t[5], t[6], eps);
                        be.linear_forward(t[0], t[7], t[3]);
                        be.rope_forward_at(t[0], s, t[4], theta);
                        be.kv_cache_write(t[1], t[2], t[0], t[4], s);
                    });
                    QCOMPARE(took, want_fused);
                    expect(qkv, QString(look_up ? "decode_norm_qkv with lookup" : "decode_norm_qkv") + tag, *gpu, 1e-5,
                           1e-2);
                }

                for (bool swiglu : {true, false}) {
                    const int64_t N = swiglu ? 2 * f.F : f.V, out_cols = swiglu ? f.F : f.V;
                    const auto r = run_case(
                        *m_cpu, *gpu,
                        common({Buf("out", Role::act, Shape{B, out_cols}, {}, {}, true),
                                Buf("w", Role::act, Shape{N, f.C}, random_vector(size_t(N * f.C), 26, 0.05f)),
                                Buf("product", Role::act, Shape{B, N})}),
                        [&](Backend& be, std::vector<Tensor>& t) {
                            const bool fused = be.decode_norm_linear(t[0], t[3], t[4], eps, t[1], swiglu);
                            note(be, fused);
                            if (fused) return;
                            be.rmsnorm_forward(t[5], t[6], t[3], t[4], eps);
                            be.linear_forward(swiglu ? t[2] : t[0], t[5], t[1]);
                            if (swiglu) be.swiglu_forward(t[0], t[2]);
                        });
                    QCOMPARE(took, want_fused);
                    expect(r, QString(swiglu ? "decode_norm_linear swiglu" : "decode_norm_linear") + tag, *gpu, 1e-5,
                           1e-2);
                }
            }
    }

    void fusedDecodeStepsMatchSeparateOps()
    {
        // Whole bf16 decode steps with and without the fused kernels: the same
        // logits within bf16 rounding, step after step. D = 16, K and the
        // vocabulary fit the fused kernels' tiles; the norm weights are not
        // all ones, so a misplaced one would show.
        ModelConfig c = tiny(2, 2, 64);
        c.vocab_size = 320;
        ParamStore params(*m_bf16, c, false);
        params.initialize(13);
        perturb_vectors(params, 14, 0.3f);
        KvCache fused_cache(*m_bf16, c, 2, 128), plain_cache(*m_bf16, c, 2, 128);
        CachedForward fused(params, fused_cache, 2 * 16, 6), plain(params, plain_cache, 2 * 16, 6);
        plain.set_speedups({true, false});
        const std::vector<int32_t> prompt = random_ids(2 * 16, 320, 7);
        const std::vector<int64_t> counts{16, 11}, last{15, 16 + 10}, both{0, 1}, ones{1, 1};
        std::vector<float> want, got;
        plain.append(prompt, counts, 16, last, want);
        fused.append(prompt, counts, 16, last, got);
        double worst = 0.0;
        for (int step = 0; step < 40; ++step) {
            std::vector<int32_t> next(2);
            for (size_t b = 0; b < 2; ++b) {
                const float* row = want.data() + b * 320;
                next[b] = int32_t(std::max_element(row, row + 320) - row);
            }
            plain.append(next, ones, 1, both, want);
            fused.append(next, ones, 1, both, got);
            worst = std::max(worst, relative_error(got, want));
        }
        // A verification chunk: three tokens of sequence 0, two of sequence 1
        // (and a padding row), logits after each.
        const std::vector<int32_t> chunk = random_ids(2 * 3, 320, 8);
        const std::vector<int64_t> three_two{3, 2}, rows{0, 1, 2, 3, 4};
        plain.append(chunk, three_two, 3, rows, want);
        fused.append(chunk, three_two, 3, rows, got);
        worst = std::max(worst, relative_error(got, want));
        qInfo("fused vs separate decode steps: worst logits relative error %.2e", worst);
        QVERIFY2(worst < 2e-2, "fused decode steps drift from the separate ops");
    }

    void greedyGenerationMatchesCpu()
    {
        // f32 mode: the same weights give the same greedy tokens, batched with
        // ragged prompts and with a draft model.
        for (int kv : {4, 2, 1}) {
            ParamStore cpu_target(*m_cpu, tiny(kv, 2, 64), false), gpu_target(*m_f32, tiny(kv, 2, 64), false);
            ParamStore cpu_draft(*m_cpu, tiny(1, 1, 32), false), gpu_draft(*m_f32, tiny(1, 1, 32), false);
            for (ParamStore* p : {&cpu_target, &gpu_target}) p->initialize(5);
            for (ParamStore* p : {&cpu_draft, &gpu_draft}) p->initialize(6);
            const GenerationRequest r =
                greedy_request({random_ids(9, 300, 1), random_ids(40, 300, 2), random_ids(1, 300, 3)}, 80);
            Generator on_cpu(cpu_target, 3, 256), on_gpu(gpu_target, 3, 256);
            const GenerationStats want = on_cpu.generate(r, {});
            QCOMPARE(on_gpu.generate(r, {}).tokens, want.tokens);
            on_gpu.set_draft(&gpu_draft, 4);
            const GenerationStats speculative = on_gpu.generate(r, {});
            QCOMPARE(speculative.tokens, want.tokens);
            qInfo("kv heads %d: speculative acceptance %.2f", kv, speculative.acceptance_rate());
        }
    }

    void decodeBurstsMatchSingleSteps()
    {
        // A GPU decodes greedily in bursts (8 steps per graph launch, each
        // step's picks written into the next step's inputs on the device).
        // The tokens must be those of one step per launch, in f32 and bf16,
        // for a ragged batch and a token limit that is no multiple of the
        // burst; the second run replays the captured burst graphs. Perturbed
        // weights make the greedy text vary, so a step fed the wrong token
        // shows.
        for (Backend* gpu : modes()) {
            ParamStore params(*gpu, tiny(2, 2, 64), false);
            params.initialize(31);
            perturb_all(params, 100, 0.3f);
            const GenerationRequest r =
                greedy_request({random_ids(9, 300, 4), random_ids(1, 300, 5), random_ids(30, 300, 6)}, 61);
            Generator bursts(params, 3, 256), single(params, 3, 256);
            CachedForward::Speedups one_step;
            one_step.decode_burst = 1;
            single.set_speedups(one_step);
            const GenerationStats want = single.generate(r, {});
            const std::set<int32_t> distinct(want.tokens[0].begin(), want.tokens[0].end());
            QVERIFY2(distinct.size() > 10, "the greedy text repeats itself");
            for (int run = 0; run < 2; ++run) QCOMPARE(bursts.generate(r, {}).tokens, want.tokens);
        }
    }

    void bf16SpeculativeMatchesPlainGreedy()
    {
        // bf16, where verification chunks take the fused kernels, replayed as
        // graphs, and the device picks every token: one sequence and up to
        // 8 rows per chunk, so a verification row runs the very arithmetic of
        // a decode step and the tokens must be the plain decoder's. A draft
        // equal to the target must have every proposal accepted.
        ModelConfig c = tiny(2, 2, 64);
        c.vocab_size = 320;
        ModelConfig small = tiny(1, 1, 32);
        small.vocab_size = 320;
        ParamStore target(*m_bf16, c, false), draft(*m_bf16, small, false);
        target.initialize(21);
        draft.initialize(22);
        const GenerationRequest r = greedy_request({random_ids(17, 320, 9)}, 120);
        Generator gen(target, 1, 256);
        const GenerationStats want = gen.generate(r, {});
        for (ParamStore* d : {&draft, &target})
            for (int lookahead : {3, 7}) {
                gen.set_draft(d, lookahead);
                const GenerationStats got = gen.generate(r, {});
                QCOMPARE(got.tokens, want.tokens);
                qInfo("%s draft, lookahead %d: acceptance %.3f", d == &target ? "self" : "small", lookahead,
                      got.acceptance_rate());
                if (d == &target) QVERIFY2(got.acceptance_rate() > 0.99, "a self-draft's proposals were rejected");
            }
    }

    void argmaxRows()
    {
        // Against a reference over the values the GPU holds (bf16-rounded in
        // bf16 mode, which makes ties: the lowest id must win them).
        for (Backend* gpu : modes())
            for (int64_t vocab : {int64_t(300), int64_t(8192), int64_t(32768), int64_t(32771)}) {   // 16-byte loads, and not
                const int64_t rows = 5;
                std::vector<float> host = random_vector(size_t(rows * vocab), uint64_t(vocab), 4.0f);
                host[size_t(vocab + 7)] = host[size_t(vocab + 200)] = 50.0f;
                // Equals in different chunks of a long row (a block reads 8192).
                host[size_t(2 * vocab + vocab / 2)] = host[size_t(2 * vocab + 9)] = 60.0f;
                OwnedTensor logits(*gpu, gpu->compute_dtype(), Shape{rows, vocab}, host);
                OwnedTensor ids(*gpu, Shape{rows}, std::vector<int32_t>(size_t(rows), -1));
                OwnedTensor probs(*gpu, DType::f32, Shape{rows});
                OwnedTensor next(*gpu, Shape{rows}, std::vector<int32_t>(size_t(rows), -1));
                gpu->argmax_rows(ids, probs, logits, next);
                const std::vector<float> held = logits.to_host(), got_probs = probs.to_host();
                std::vector<int32_t> got_ids(static_cast<size_t>(rows)), got_next(static_cast<size_t>(rows));
                gpu->download(got_ids.data(), DType::i32, ids);
                gpu->download(got_next.data(), DType::i32, next);
                QCOMPARE(got_next, got_ids);   // a burst's next input
                for (int64_t r = 0; r < rows; ++r) {
                    const float* row = held.data() + r * vocab;
                    const int64_t best = std::max_element(row, row + vocab) - row;   // the first of equals
                    double sum = 0;
                    for (int64_t i = 0; i < vocab; ++i) sum += std::exp(double(row[i]) - double(row[best]));
                    QCOMPARE(got_ids[size_t(r)], int32_t(best));
                    QVERIFY2(std::abs(got_probs[size_t(r)] * sum - 1.0) < 1e-4, "probability of the pick");
                }
                QCOMPARE(got_ids[1], 7);
            }
    }

    void devicePicksEqualTheHostPath()
    {
        // Greedy decoding picks tokens on the device; asking for alternatives
        // takes the host path over the full logits. Same tokens, same
        // probabilities (the device's exp is the fast one: 1e-4).
        for (Backend* gpu : modes()) {
            ParamStore params(*gpu, tiny(2, 2, 64), false);
            params.initialize(11);
            Generator gen(params, 2, 256);
            GenerationRequest fast = greedy_request({random_ids(12, 300, 4), random_ids(5, 300, 5)}, 60);
            GenerationRequest host = fast;
            host.top_alternatives = 1;
            std::vector<TokenEvent> a, b;
            gen.generate(fast, [&](const TokenEvent& e) { a.push_back(e); return true; });
            gen.generate(host, [&](const TokenEvent& e) { b.push_back(e); return true; });
            QCOMPARE(a.size(), b.size());
            for (size_t i = 0; i < a.size(); ++i) {
                QCOMPARE(a[i].token, b[i].token);
                QVERIFY2(std::abs(a[i].probability - b[i].probability) <= 1e-4f * b[i].probability, "probability");
            }
        }
    }

    void sampledProbabilitiesMatchTheCpu()
    {
        // Sampled decoding on a GPU reports each token's probability from the
        // normaliser the device computes with the step (no pass over the
        // vocabulary on the host). In f32 the same weights and seed give the
        // CPU's tokens, whose probabilities the host computes in full.
        ParamStore on_cpu(*m_cpu, tiny(2, 2, 64), false), on_gpu(*m_f32, tiny(2, 2, 64), false);
        on_cpu.initialize(17);
        perturb_all(on_cpu, 18, 0.3f);
        on_gpu.upload_master(on_cpu.download_master());
        GenerationRequest r;
        r.prompts = {random_ids(7, 300, 8), random_ids(3, 300, 9)};
        r.max_new_tokens = 40;
        r.sampling.temperature = 0.9f;
        r.sampling.top_k = 50;
        r.sampling.seed = 3;
        r.stop_at_eos = false;
        std::vector<TokenEvent> want, got;
        Generator(on_cpu, 2, 128).generate(r, [&](const TokenEvent& e) { want.push_back(e); return true; });
        Generator(on_gpu, 2, 128).generate(r, [&](const TokenEvent& e) { got.push_back(e); return true; });
        QCOMPARE(got.size(), want.size());
        size_t same = 0;
        while (same < got.size() && got[same].token == want[same].token) ++same;
        QVERIFY2(same >= 40, qPrintable(QString("the GPU's sampled tokens left the CPU's after %1").arg(same)));
        for (size_t i = 0; i < same; ++i)
            QVERIFY2(std::abs(got[i].probability - want[i].probability) <= 1e-4f * want[i].probability + 1e-7f,
                     qPrintable(QString("event %1: %2 against %3").arg(i).arg(got[i].probability).arg(want[i].probability)));
    }

    void graphsSurviveMovedScratch()
    {
        // A decode graph bakes in the scratch address (the greedy pick's
        // per-chunk results, with a vocabulary of several chunks); growing
        // the scratch for something else moves it. The next generation must
        // recapture, not replay into freed memory.
        ModelConfig c = tiny(2, 2, 64);
        c.vocab_size = 9000;   // two chunks
        ParamStore params(*m_bf16, c, false);
        params.initialize(12);
        Generator gen(params, 1, 256);
        const GenerationRequest r = greedy_request({random_ids(30, 9000, 6)}, 120);
        const GenerationStats first = gen.generate(r, {});
        {
            // A large bf16 → f32 download stages through the scratch and grows it.
            OwnedTensor big(*m_bf16, DType::bf16, Shape{int64_t(48) << 20});
            std::vector<float> sink(size_t(big.t.numel()));
            m_bf16->download(sink.data(), DType::f32, big);
        }
        QCOMPARE(gen.generate(r, {}).tokens, first.tokens);
    }

    void bf16GenerationRuns()
    {
        ParamStore params(*m_bf16, tiny(2, 2, 64), false);
        params.initialize(5);
        Generator gen(params, 2, 256);
        const GenerationRequest r = greedy_request({random_ids(20, 300, 1), random_ids(3, 300, 2)}, 200);
        const GenerationStats st = gen.generate(r, {});
        QCOMPARE(st.tokens[0].size(), size_t(200));
        qInfo("bf16: prefill %.0f tok/s, decode %.0f tok/s", st.prefill_tokens_per_s(), st.decode_tokens_per_s());
    }
};

QTEST_APPLESS_MAIN(TestCudaGeneration)
#include "tst_cuda_generation.moc"
