// LoRA adapters on the engine: their gradients against finite differences
// (with and without dropout, SwiGLU and GELU/QK-norm models), the frozen
// base, the zero padding of B̃, the adapted model against the same model with
// the adapters merged into its weights (training path and cached generation,
// which share the projections), PEFT's initialisations, dropout_scale, and
// adapter folders written, read back, and refused when they do not fit.
#include "core/generate/cached_forward.h"
#include "core/generate/kv_cache.h"
#include "core/io/file_util.h"
#include "core/io/peft_adapter.h"
#include "core/io/safetensors.h"
#include "core/model/lora.h"
#include "core/model/transformer.h"
#include "core/optim/optimizer.h"
#include "core/util/rng.h"
#include "kernels/backend_factory.h"
#include "tests/support/test_support.h"

#include <nlohmann/json.hpp>

#include <QTemporaryDir>
#include <QTest>

#include <algorithm>
#include <cmath>

using namespace crucible;
namespace fs = std::filesystem;

namespace {

ModelConfig tiny(bool alternative)
{
    ModelConfig c;
    c.vocab_size = 260;
    c.d_model = 16;
    c.n_layers = 2;
    c.n_heads = 4;
    c.n_kv_heads = 2;
    c.head_dim = 6;   // q_dim 24 ≠ d_model: o_proj's adapter is not square
    c.ff_dim = 20;
    c.seq_len = 16;
    c.rope_theta = 100.0f;
    c.init_std = 0.3f;
    if (alternative) {
        c.norm = NormType::layernorm;
        c.mlp = MlpType::gelu;
        c.qk_norm = true;
        c.tied_embeddings = false;
    }
    return c;
}

LoraConfig all_linear(const ModelConfig& c, int rank, float alpha)
{
    LoraConfig l;
    l.rank = rank;
    l.alpha = alpha;
    l.targets = parse_lora_targets("all-linear", c);
    return l;
}

// Random A and B (B nonzero, so that every gradient is), from PEFT-shaped host tensors.
void randomize(LoraAdapters& lora, uint64_t seed, float scale)
{
    std::vector<std::vector<float>> a, b;
    for (const LoraBlock& blk : lora.blocks()) {
        a.push_back(test::random_vector(size_t(lora.config().rank * blk.in), seed++, scale));
        b.push_back(test::random_vector(size_t(lora.config().rank * blk.out), seed++, scale));
    }
    lora.upload(a, b);
}

} // namespace

class TestLora : public QObject {
    Q_OBJECT

private slots:
    void initTestCase() { m_be = make_backend(BackendOptions{}); }

    void gradientsMatchFiniteDifferences_data()
    {
        QTest::addColumn<bool>("alternative");
        QTest::addColumn<float>("dropout");
        QTest::addColumn<bool>("rslora");
        QTest::newRow("rmsnorm swiglu") << false << 0.0f << false;
        QTest::newRow("layernorm gelu qk-norm rslora") << true << 0.0f << true;
        QTest::newRow("rmsnorm swiglu dropout 0.3") << false << 0.3f << false;
    }

    // The adapters' backward against central differences of the summed
    // loss, a sample of elements of every A and B. The tolerances are the
    // whole-model gradient check's (tst_model_gradcheck), whose reasoning
    // holds here: the same model sizes and weight scale.
    void gradientsMatchFiniteDifferences()
    {
        QFETCH(bool, alternative);
        QFETCH(float, dropout);
        QFETCH(bool, rslora);
        const ModelConfig c = tiny(alternative);
        ParamStore base(*m_be, c, false);
        base.initialize(21);
        test::perturb_vectors(base, 500, 0.3f);
        LoraConfig lc = all_linear(c, 3, 3.0f);
        lc.dropout = dropout;
        lc.use_rslora = rslora;
        LoraAdapters lora(*m_be, c, lc, true);
        lora.set_dropout_seed(9);
        randomize(lora, 40, 0.2f);
        const int64_t B = 2, T = 7;
        const auto tokens = test::random_ids(size_t(B * T), c.vocab_size, 31);
        const auto targets = test::random_ids(size_t(B * T), c.vocab_size, 32);
        Transformer model(base, B, T, true, &lora);

        // With dropout the loss is that of one mask: every evaluation reruns
        // the training forward with the same dropout position.
        auto loss = [&] {
            if (dropout == 0.0f) return model.evaluate(tokens.data(), targets.data(), B, T).loss;
            lora.set_dropout_calls(0);
            const double l = model.train_micro_batch(tokens.data(), targets.data(), B, T, 1.0f).loss;
            return l;
        };
        lora.store().zero_grads();
        lora.set_dropout_calls(0);
        model.train_micro_batch(tokens.data(), targets.data(), B, T, 1.0f);
        const std::vector<float> grads = lora.store().download_grads();
        const std::vector<float> theta = lora.store().download_master();

        const float eps = 3e-3f;
        const double atol = 2e-3, rtol = 1e-2;
        Rng rng(77);
        int checked = 0;
        for (const LoraBlock& blk : lora.blocks()) {
            for (const ParamEntry* e : {blk.a, blk.b}) {
                std::vector<float> analytic, numeric;
                for (int k = 0; k < 4; ++k) {
                    // B's elements inside its band (the padding is not a parameter).
                    int64_t i = int64_t(rng.below(uint64_t(e->numel())));
                    if (e == blk.b) i = blk.row_begin * lc.rank + int64_t(rng.below(uint64_t(blk.out * lc.rank)));
                    const size_t index = size_t(e->offset + i);
                    std::vector<float> p = theta;
                    p[index] = theta[index] + eps;
                    lora.store().upload_master(p);
                    const double up = loss();
                    p[index] = theta[index] - eps;
                    lora.store().upload_master(p);
                    const double down = loss();
                    const double fd = (up - down) / (2.0 * double(eps));
                    const double g = grads[index];
                    analytic.push_back(float(g));
                    numeric.push_back(float(fd));
                    QVERIFY2(std::fabs(fd - g) <= atol + rtol * std::max(std::fabs(fd), std::fabs(g)),
                             qPrintable(QString("%1[%2]: backward %3, finite difference %4")
                                            .arg(e->name.c_str()).arg(i).arg(g, 0, 'g', 6).arg(fd, 0, 'g', 6)));
                    ++checked;
                }
                const double err = test::relative_error(analytic, numeric);
                QVERIFY2(err <= 2e-2, qPrintable(QString("%1: relative error %2").arg(e->name.c_str()).arg(err)));
            }
        }
        lora.store().upload_master(theta);
        // The padding rows of every B̃ got no gradient.
        for (const LoraBlock& blk : lora.blocks())
            for (int64_t i = 0; i < blk.b->numel(); ++i) {
                const int64_t row = i / lc.rank;
                if (row < blk.row_begin || row >= blk.row_begin + blk.out)
                    QCOMPARE(grads[size_t(blk.b->offset + i)], 0.0f);
            }
        QVERIFY(checked > 0);
    }

    // The base trains not at all: no gradient buffer, no optimizer state; the
    // optimizer steps the adapters, keeps the padding exactly zero and leaves
    // the base's weights as they were.
    void frozenBaseAndZeroPadding()
    {
        const ModelConfig c = tiny(false);
        ParamStore base(*m_be, c, false);
        base.initialize(3);
        LoraAdapters lora(*m_be, c, all_linear(c, 4, 8.0f), true);
        lora.initialize(5);
        OptimizerConfig oc;
        oc.lr = 1e-2f;
        oc.weight_decay = 0.1f;
        Optimizer opt(lora.store(), oc);
        QCOMPARE(opt.bytes(), optimizer_state_bytes(lora.store().layout().total()));
        Transformer model(base, 2, 8, true, &lora);
        const auto before = base.download_master();
        const auto tokens = test::random_ids(16, c.vocab_size, 1), targets = test::random_ids(16, c.vocab_size, 2);
        for (int step = 0; step < 3; ++step) {
            lora.store().zero_grads();
            model.train_micro_batch(tokens.data(), targets.data(), 2, 8, 1.0f / 16);
            QVERIFY(!opt.step(1.0).skipped);
        }
        QVERIFY(base.grads().empty());
        QVERIFY(base.download_master() == before);
        const auto w = lora.store().download_master();
        bool b_moved = false;
        for (const LoraBlock& blk : lora.blocks()) {
            for (int64_t i = 0; i < blk.b->numel(); ++i) {
                const int64_t row = i / 4;
                const float v = w[size_t(blk.b->offset + i)];
                if (row < blk.row_begin || row >= blk.row_begin + blk.out) QCOMPARE(v, 0.0f);
                else b_moved = b_moved || v != 0.0f;
            }
        }
        QVERIFY2(b_moved, "B started at zero and must have moved");
        QCOMPARE(lora.trainable_parameters(), lora_parameter_count(c, lora.config()));
        // 2 layers × r 4 × Σ(in + out): q 16+24, k 16+12, v 16+12, o 24+16, gate/up 16+20, down 20+16.
        QCOMPARE(lora.trainable_parameters(), int64_t(2 * 4 * (40 + 28 + 28 + 40 + 36 + 36 + 36)));
    }

    // Base + adapters computes what the base with W + scale·B·A does, in the
    // training path and in cached generation (prefill and decode steps).
    void adaptersEqualMergedWeights_data()
    {
        QTest::addColumn<bool>("alternative");
        QTest::newRow("rmsnorm swiglu") << false;
        QTest::newRow("layernorm gelu qk-norm untied") << true;
    }

    void adaptersEqualMergedWeights()
    {
        QFETCH(bool, alternative);
        const ModelConfig c = tiny(alternative);
        ParamStore base(*m_be, c, false), merged(*m_be, c, false);
        base.initialize(11);
        LoraConfig lc = all_linear(c, 2, 3.0f);
        lc.targets = {"q_proj", "v_proj", "o_proj", "up_proj", "down_proj"};
        LoraAdapters lora(*m_be, c, lc, false);
        randomize(lora, 70, 0.2f);
        merged.upload_master(base.download_master());
        lora.merge_into(merged);

        const int64_t B = 2, T = 9;
        const auto tokens = test::random_ids(size_t(B * T), c.vocab_size, 4);
        Transformer adapted(base, B, T, false, &lora), plain(merged, B, T, false);
        std::vector<float> a, m;
        adapted.last_logits(tokens.data(), B, T, a);
        plain.last_logits(tokens.data(), B, T, m);
        QVERIFY2(test::max_abs_diff(a, m) < 2e-5f, qPrintable(QString("training path: %1").arg(test::max_abs_diff(a, m))));

        // Cached generation over the unmerged adapters: prefill 6 tokens, then decode 3.
        KvCache cache(*m_be, c, 1, 16);
        CachedForward gen(base, cache, 16, 16, &lora);
        std::vector<float> logits;
        const std::vector<int32_t> seq(tokens.begin(), tokens.begin() + T);
        gen.append(std::span(seq).first(6), std::vector<int64_t>{6}, 6, std::vector<int64_t>{5}, logits);
        for (int64_t t = 6; t < T; ++t)
            gen.append(std::span(seq).subspan(size_t(t), 1), std::vector<int64_t>{1}, 1, std::vector<int64_t>{0}, logits);
        const std::vector<float> first(m.begin(), m.begin() + c.vocab_size);
        QVERIFY2(test::max_abs_diff(logits, first) < 2e-5f,
                 qPrintable(QString("cached generation: %1").arg(test::max_abs_diff(logits, first))));
    }

    // B starts at zero: the adapted model starts exactly as the base.
    void freshAdaptersChangeNothing()
    {
        const ModelConfig c = tiny(false);
        ParamStore base(*m_be, c, false);
        base.initialize(12);
        LoraAdapters lora(*m_be, c, all_linear(c, 4, 16.0f), false);
        lora.initialize(1);
        const auto tokens = test::random_ids(8, c.vocab_size, 5);
        Transformer adapted(base, 1, 8, false, &lora), plain(base, 1, 8, false);
        std::vector<float> a, p;
        adapted.last_logits(tokens.data(), 1, 8, a);
        plain.last_logits(tokens.data(), 1, 8, p);
        QVERIFY(a == p);
    }

    // PEFT's initialisations: A ~ U(-1/√in, 1/√in) (kaiming_uniform_ with
    // a = √5) or N(0, 1/r); B zero.
    void initialisations()
    {
        ModelConfig c = tiny(false);
        c.d_model = 64;
        c.n_heads = 4;
        c.head_dim = 16;
        c.ff_dim = 96;
        for (LoraInit init : {LoraInit::kaiming_uniform, LoraInit::gaussian}) {
            LoraConfig lc = all_linear(c, 8, 16.0f);
            lc.init = init;
            LoraAdapters lora(*m_be, c, lc, false);
            lora.initialize(2);
            for (const LoraBlock& blk : lora.blocks()) {
                const auto a = lora.download_a(blk), b = lora.download_b(blk);
                QVERIFY(std::all_of(b.begin(), b.end(), [](float v) { return v == 0.0f; }));
                double sum2 = 0, largest = 0;
                for (float v : a) {
                    sum2 += double(v) * v;
                    largest = std::max(largest, double(std::fabs(v)));
                }
                const double rms = std::sqrt(sum2 / double(a.size()));
                if (init == LoraInit::kaiming_uniform) {
                    const double bound = 1.0 / std::sqrt(double(blk.in));
                    QVERIFY(largest <= bound);
                    QVERIFY2(std::fabs(rms - bound / std::sqrt(3.0)) < 0.1 * bound, qPrintable(blk.a->name.c_str()));
                } else {
                    QVERIFY2(std::fabs(rms - 1.0 / 8) < 0.1 / 8, qPrintable(blk.a->name.c_str()));
                }
            }
        }
    }

    // out = in·scale·mask/(1 - p): the share dropped, the kept values, the
    // same mask for the same seed (so the backward regenerates it).
    void dropoutScale()
    {
        const int64_t n = 100000;
        const auto x = test::random_vector(size_t(n), 3, 1.0f);
        test::OwnedTensor in(*m_be, DType::f32, Shape{n}, x), out(*m_be, DType::f32, Shape{n}),
            again(*m_be, DType::f32, Shape{n});
        m_be->dropout_scale(out, in, 2.0f, 0.25f, 77);
        m_be->dropout_scale(again, in, 2.0f, 0.25f, 77);
        const auto o = out.to_host(), o2 = again.to_host();
        QVERIFY(o == o2);
        int64_t dropped = 0;
        for (int64_t i = 0; i < n; ++i) {
            if (o[size_t(i)] == 0.0f && x[size_t(i)] != 0.0f) ++dropped;
            else QCOMPARE(o[size_t(i)], x[size_t(i)] * (2.0f / 0.75f));
        }
        QVERIFY2(std::fabs(double(dropped) / double(n) - 0.25) < 0.01, qPrintable(QString::number(dropped)));
        m_be->dropout_scale(again, in, 2.0f, 0.25f, 78);
        QVERIFY(again.to_host() != o);
        m_be->dropout_scale(out, in, -0.5f, 0.0f, 1);
        const auto s = out.to_host();
        for (int64_t i = 0; i < n; ++i) QCOMPARE(s[size_t(i)], x[size_t(i)] * -0.5f);
        QVERIFY_THROWS_EXCEPTION(Error, m_be->dropout_scale(out, in, 1.0f, 1.0f, 1));
    }

    // Written as PEFT names and shapes them, read back unchanged.
    void peftFilesRoundTrip()
    {
        QTemporaryDir tmp;
        const fs::path dir = tmp.path().toStdString();
        const ModelConfig c = tiny(false);
        LoraConfig lc = all_linear(c, 3, 7.0f);
        lc.use_rslora = true;
        lc.dropout = 0.05f;
        lc.init = LoraInit::gaussian;
        LoraAdapters lora(*m_be, c, lc, false);
        randomize(lora, 5, 0.5f);
        write_peft_adapter(dir, lora, "/models/base");

        const SafetensorsReader st(dir / "adapter_model.safetensors");
        QCOMPARE(st.entries().size(), lora.blocks().size() * 2);
        const SafetensorsEntry* k = st.find("base_model.model.model.layers.1.self_attn.k_proj.lora_B.weight");
        QVERIFY(k);
        QCOMPARE(k->shape, (std::vector<int64_t>{c.kv_dim(), 3}));
        const SafetensorsEntry* d = st.find("base_model.model.model.layers.0.mlp.down_proj.lora_A.weight");
        QVERIFY(d);
        QCOMPARE(d->shape, (std::vector<int64_t>{3, c.ff_dim}));
        const auto j = nlohmann::json::parse(read_file(dir / "adapter_config.json"));
        QCOMPARE(j["peft_type"].get<std::string>(), std::string("LORA"));
        QCOMPARE(j["task_type"].get<std::string>(), std::string("CAUSAL_LM"));
        QCOMPARE(j["r"].get<int>(), 3);
        QCOMPARE(j["lora_alpha"].get<double>(), 7.0);
        QCOMPARE(j["lora_dropout"].get<double>(), 0.05);
        QCOMPARE(j["bias"].get<std::string>(), std::string("none"));
        QCOMPARE(j["use_rslora"].get<bool>(), true);
        QCOMPARE(j["init_lora_weights"].get<std::string>(), std::string("gaussian"));
        QCOMPARE(j["base_model_name_or_path"].get<std::string>(), std::string("/models/base"));

        const PeftAdapterInfo info = read_peft_config(dir, c);
        QCOMPARE(info.config.rank, 3);
        QCOMPARE(info.config.targets, lc.targets);
        QVERIFY(info.config.use_rslora);
        QCOMPARE(info.config.scale(), 7.0f / std::sqrt(3.0f));
        LoraAdapters back(*m_be, c, info.config, false);
        load_peft_weights(dir, back);
        QVERIFY(back.store().download_master() == lora.store().download_master());
    }

    // Adapter folders that do not fit are refused with a message naming the problem.
    void badAdapterFoldersRefused()
    {
        QTemporaryDir tmp;
        const fs::path dir = tmp.path().toStdString();
        const ModelConfig c = tiny(false);
        LoraAdapters lora(*m_be, c, all_linear(c, 2, 4.0f), false);
        lora.initialize(1);
        write_peft_adapter(dir, lora, "base");
        const std::string good_config = read_file(dir / "adapter_config.json");
        const std::string good_weights = read_file(dir / "adapter_model.safetensors");

        auto refused_config = [&](const std::function<void(nlohmann::json&)>& edit, const char* expected) {
            auto j = nlohmann::json::parse(good_config);
            edit(j);
            write_file_atomic(dir / "adapter_config.json", j.dump());
            try {
                read_peft_config(dir, c);
            } catch (const Error& e) {
                return std::string(e.what()).find(expected) != std::string::npos;
            }
            return false;
        };
        QVERIFY(refused_config([](auto& j) { j["use_dora"] = true; }, "DoRA"));
        QVERIFY(refused_config([](auto& j) { j["rank_pattern"] = {{"q_proj", 4}}; }, "rank_pattern"));
        QVERIFY(refused_config([](auto& j) { j["task_type"] = "SEQ_CLS"; }, "CAUSAL_LM"));
        QVERIFY(refused_config([](auto& j) { j["target_modules"] = ".*proj"; }, "pattern"));
        QVERIFY(refused_config([](auto& j) { j["target_modules"] = {"q_proj", "c_attn"}; }, "c_attn"));
        QVERIFY(refused_config([](auto& j) { j["r"] = 64; }, "rank"));
        QVERIFY(refused_config([](auto& j) { j["bias"] = "all"; }, "bias"));
        QVERIFY(refused_config([](auto& j) { j["peft_type"] = "IA3"; }, "LORA"));
        QVERIFY(refused_config([](auto& j) { j["lora_bias"] = true; }, "lora_bias"));
        // What PEFT itself writes: more keys, unset, and the modules as a set in any order.
        {
            auto j = nlohmann::json::parse(good_config);
            j["target_modules"] = {"down_proj", "v_proj", "q_proj", "gate_proj", "o_proj", "up_proj", "k_proj"};
            for (const char* key : {"megatron_config", "layers_pattern", "exclude_modules", "eva_config",
                                    "corda_config", "trainable_token_indices", "layer_replication", "auto_mapping"})
                j[key] = nullptr;
            j["loftq_config"] = nlohmann::json::object();
            j["lora_bias"] = false;
            j["use_dora"] = false;
            write_file_atomic(dir / "adapter_config.json", j.dump());
            const PeftAdapterInfo info = read_peft_config(dir, c);
            QCOMPARE(info.config.targets, lora.config().targets);
        }
        write_file_atomic(dir / "adapter_config.json", good_config);

        // A base of another shape: the tensors do not fit.
        ModelConfig wider = c;
        wider.d_model = 24;
        LoraAdapters other(*m_be, wider, read_peft_config(dir, wider).config, false);
        QVERIFY_THROWS_EXCEPTION(Error, load_peft_weights(dir, other));
        // Fewer layers in the file than the base has.
        ModelConfig deeper = c;
        deeper.n_layers = 3;
        LoraAdapters deep(*m_be, deeper, read_peft_config(dir, deeper).config, false);
        QVERIFY_THROWS_EXCEPTION(Error, load_peft_weights(dir, deep));
        // An extra tensor.
        SafetensorsWriter w;
        const SafetensorsReader r(dir / "adapter_model.safetensors");
        for (const auto& e : r.entries()) w.add(e.name, e.dtype, e.shape, r.raw(e), e.end - e.begin);
        const float one = 1.0f;
        w.add_f32("base_model.model.lm_head.weight", {1}, &one);
        w.write(dir / "adapter_model.safetensors");
        LoraAdapters same(*m_be, c, read_peft_config(dir, c).config, false);
        QVERIFY_THROWS_EXCEPTION(Error, load_peft_weights(dir, same));
        write_file_atomic(dir / "adapter_model.safetensors", good_weights);
        load_peft_weights(dir, same);
    }

private:
    std::unique_ptr<Backend> m_be;
};

QTEST_GUILESS_MAIN(TestLora)
#include "tst_lora.moc"
