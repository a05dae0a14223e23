// QLoRA and gradient checkpointing on the CPU:
// - a model whose projections are NF4 (Nf4Base, dequantized on the fly)
//   computes the loss and adapter gradients of the same model with those
//   weights dequantized into an ordinary f32 store;
// - gradient checkpointing gives bit-identical gradients (full training, and
//   LoRA with dropout over an NF4 base) with fewer activation bytes, which
//   the memory estimate predicts;
// - a QLoRA fine-tune run learns, resumes bit-exactly and writes PEFT
//   adapters; loading it for inference merges into the NF4-rounded base.
#include "core/bench/finetune_bench.h"
#include "core/io/file_util.h"
#include "core/io/safetensors.h"
#include "core/model/activations.h"
#include "core/model/lora.h"
#include "core/model/nf4_base.h"
#include "core/model/transformer.h"
#include "core/quant/nf4.h"
#include "core/train/finetune.h"
#include "core/train/load_model.h"
#include "core/train/memory_estimate.h"
#include "core/train/run_config.h"
#include "core/train/run_dir.h"
#include "core/train/trainer.h"
#include "kernels/backend_factory.h"
#include "tests/support/test_support.h"
#include "tests/support/tiny_hf_model.h"

#include <QTemporaryDir>
#include <QTest>

using namespace crucible;
namespace fs = std::filesystem;

namespace {

constexpr int64_t kBatch = 2, kSeq = 16;

std::unique_ptr<Backend> cpu_backend()
{
    BackendOptions o;
    o.threads = 2;
    return make_backend(o);
}

// Adapters on every projection with B nonzero, so A gets gradients too.
void randomize_adapters(LoraAdapters& lora, uint64_t seed)
{
    std::vector<std::vector<float>> a, b;
    uint64_t s = seed;
    for (const LoraBlock& blk : lora.blocks()) {
        a.push_back(test::random_vector(size_t(lora.config().rank * blk.in), ++s, 0.1f));
        b.push_back(test::random_vector(size_t(blk.out * lora.config().rank), ++s, 0.1f));
    }
    lora.upload(a, b);
}

LoraConfig all_linear(const ModelConfig& c, float dropout)
{
    LoraConfig l;
    l.rank = 4;
    l.alpha = 8.0f;
    l.dropout = dropout;
    l.targets = parse_lora_targets("all-linear", c);
    return l;
}

struct Batch {
    std::vector<int32_t> tokens, targets;
};

Batch random_batch(const ModelConfig& c, uint64_t seed)
{
    Batch b;
    b.tokens = test::random_ids(size_t(kBatch * kSeq), c.vocab_size, seed);
    b.targets = test::random_ids(size_t(kBatch * kSeq), c.vocab_size, seed + 1);
    return b;
}

} // namespace

class TestQlora : public QObject {
    Q_OBJECT

private slots:
    void initTestCase()
    {
        QVERIFY(m_tmp.isValid());
        m_root = m_tmp.path().toStdString();
    }

    // NF4 projections (codes decoded tile by tile inside the products) equal
    // the dense products over the dequantized weights: loss, logits and the
    // adapters' gradients.
    void nf4ProjectionsMatchDequantizedWeights()
    {
        auto be = cpu_backend();
        const ModelConfig c = test::tiny_model(kSeq);
        ParamStore full(*be, c, false);
        full.initialize(3);
        test::perturb_all(full, 4, 0.02f);
        const std::vector<float> master = full.download_master();

        Nf4Base nf4(*be, full.layout(), master);
        ParamStore rest(*be, nf4_base_layout(c), false);
        upload_nf4_base_rest(rest, full.layout(), master);
        QCOMPARE(nf4.bytes(), nf4_base_bytes(c));
        QVERIFY(rest.layout().total() < full.layout().total());

        std::vector<float> rounded = master;
        nf4_round_trip_projections(full.layout(), rounded);
        ParamStore dense(*be, c, false);
        dense.upload_master(rounded);

        LoraAdapters la(*be, c, all_linear(c, 0.0f), true), lb(*be, c, all_linear(c, 0.0f), true);
        randomize_adapters(la, 9);
        randomize_adapters(lb, 9);
        Transformer q(rest, kBatch, kSeq, true, &la, false, &nf4), d(dense, kBatch, kSeq, true, &lb);
        const Batch batch = random_batch(c, 11);
        const LossSum lq = q.train_micro_batch(batch.tokens.data(), batch.targets.data(), kBatch, kSeq, 1.0f);
        const LossSum ld = d.train_micro_batch(batch.tokens.data(), batch.targets.data(), kBatch, kSeq, 1.0f);
        QVERIFY2(std::abs(lq.loss - ld.loss) <= 1e-5 * std::abs(ld.loss), qPrintable(QString("loss %1 vs %2").arg(lq.loss).arg(ld.loss)));
        const double grad_err = test::relative_error(la.store().download_grads(), lb.store().download_grads());
        QVERIFY2(grad_err < 1e-5, qPrintable(QString("adapter gradients differ by %1").arg(grad_err)));

        // Generation path (a few rows: the fused decode product) too.
        std::vector<float> lq_logits, ld_logits;
        Transformer qi(rest, 1, kSeq, false, &la, false, &nf4), di(dense, 1, kSeq, false, &lb);
        qi.last_logits(batch.tokens.data(), 1, 5, lq_logits);
        di.last_logits(batch.tokens.data(), 1, 5, ld_logits);
        QVERIFY(test::relative_error(lq_logits, ld_logits) < 1e-5);
    }

    // Recomputing each block in the backward gives the very same gradients.
    void gradCheckpointingIsBitExact()
    {
        auto be = cpu_backend();
        const ModelConfig c = test::tiny_model(kSeq);
        ParamStore a(*be, c, true), b(*be, c, true);
        a.initialize(5);
        test::perturb_vectors(a, 6, 0.1f);
        b.upload_master(a.download_master());
        Transformer plain(a, kBatch, kSeq, true), ckpt(b, kBatch, kSeq, true, nullptr, true);
        const Batch batch = random_batch(c, 12);
        for (int micro = 0; micro < 2; ++micro) {   // gradients accumulate over micro-batches
            const LossSum la = plain.train_micro_batch(batch.tokens.data(), batch.targets.data(), kBatch, kSeq, 0.5f);
            const LossSum lb = ckpt.train_micro_batch(batch.tokens.data(), batch.targets.data(), kBatch, kSeq, 0.5f);
            QCOMPARE(lb.loss, la.loss);
        }
        QVERIFY(a.download_grads() == b.download_grads());
        // One layer's activations instead of every layer's.
        QVERIFY(ckpt.activations().bytes() < plain.activations().bytes());
    }

    // With LoRA dropout over an NF4 base: the recomputed blocks draw the
    // same dropout masks, so the adapters' gradients are identical too.
    void gradCheckpointingWithQloraAndDropout()
    {
        auto be = cpu_backend();
        const ModelConfig c = test::tiny_model(kSeq);
        ParamStore full(*be, c, false);
        full.initialize(7);
        const std::vector<float> master = full.download_master();
        Nf4Base nf4(*be, full.layout(), master);
        ParamStore rest(*be, nf4_base_layout(c), false);
        upload_nf4_base_rest(rest, full.layout(), master);
        LoraAdapters la(*be, c, all_linear(c, 0.2f), true), lb(*be, c, all_linear(c, 0.2f), true);
        randomize_adapters(la, 13);
        randomize_adapters(lb, 13);
        la.set_dropout_seed(99);
        lb.set_dropout_seed(99);
        Transformer plain(rest, kBatch, kSeq, true, &la, false, &nf4), ckpt(rest, kBatch, kSeq, true, &lb, true, &nf4);
        const Batch batch = random_batch(c, 14);
        const LossSum x = plain.train_micro_batch(batch.tokens.data(), batch.targets.data(), kBatch, kSeq, 1.0f);
        const LossSum y = ckpt.train_micro_batch(batch.tokens.data(), batch.targets.data(), kBatch, kSeq, 1.0f);
        QCOMPARE(y.loss, x.loss);
        QVERIFY(la.store().download_grads() == lb.store().download_grads());
    }

    // The estimate counts exactly what the arenas allocate, and QLoRA's
    // weights are about a quarter of LoRA's.
    void memoryEstimateAccountsForBoth()
    {
        const ModelConfig c = test::tiny_model(kSeq);
        const size_t full = estimate_training_memory(c, kBatch, kSeq, DType::f32, false).activations;
        const size_t ckpt = estimate_training_memory(c, kBatch, kSeq, DType::f32, true).activations;
        QCOMPARE(full, Activations::plan_bytes(c, ActivationShape{kBatch, kSeq, true, false}, DType::f32));
        QCOMPARE(ckpt, Activations::plan_bytes(c, ActivationShape{kBatch, kSeq, true, true}, DType::f32));
        QVERIFY(ckpt < full);

        ModelConfig big = c;   // `large`'s shape, a few layers
        big.d_model = 2048;
        big.n_heads = 32;
        big.n_kv_heads = 4;
        big.ff_dim = 5632;
        big.n_layers = 2;
        big.vocab_size = 32000;
        const LoraConfig l = all_linear(big, 0.0f);
        const MemoryEstimate lora = estimate_finetune_memory(big, l, 1, kSeq, DType::bf16);
        const MemoryEstimate qlora = estimate_finetune_memory(big, l, 1, kSeq, DType::bf16, true);
        QVERIFY(qlora.nf4_weights > 0);
        QCOMPARE(qlora.nf4_weights, nf4_base_bytes(big));
        const double projections = double(big.n_layers) * double(big.d_model) *
                                   double(big.qkv_dim() + big.q_dim() + 3 * big.ff_dim);
        QVERIFY(std::abs(double(qlora.nf4_weights) * 8.0 / projections - 4.127) < 0.01);
        QVERIFY(qlora.total() < lora.total());
    }

    // bench finetune: six rows side by side, the NF4 base smaller than the
    // bf16 one, checkpointing smaller in activations, the estimate covering
    // what the CPU run allocated.
    void finetuneBenchComparesTheModes()
    {
        FinetuneBenchOptions o;
        o.model = test::tiny_model(kSeq);
        o.batch = 2;
        o.warmup_steps = 0;
        o.timed_steps = 1;
        o.lora = all_linear(o.model, 0.0f);
        o.decode_tokens = 4;
        o.backend.threads = 2;
        const FinetuneBenchResult r = run_finetune_bench(o);
        QCOMPARE(r.rows.size(), size_t(6));
        auto row = [&](FinetuneMode m, bool ck) {
            for (const auto& x : r.rows)
                if (x.mode == m && x.grad_checkpoint == ck) return x;
            return FinetuneBenchRow{};
        };
        QVERIFY(row(FinetuneMode::qlora, false).base_weight_bytes < row(FinetuneMode::lora, false).base_weight_bytes);
        for (FinetuneMode m : {FinetuneMode::full, FinetuneMode::lora, FinetuneMode::qlora}) {
            QVERIFY(row(m, true).activation_bytes < row(m, false).activation_bytes);
            QVERIFY(row(m, true).device_bytes < row(m, false).device_bytes);
            for (bool ck : {false, true}) {
                QVERIFY(row(m, ck).estimate_bytes >= row(m, ck).device_bytes);
                QVERIFY(row(m, ck).tokens_per_s > 0);
            }
        }
        QVERIFY(r.decode_dense_tokens_per_s > 0 && r.decode_nf4_tokens_per_s > 0);
        const BenchTable t = finetune_bench_table(r, "tiny");
        QCOMPARE(t.rows.size(), size_t(6));
        QVERIFY(t.to_text().find("QLoRA, checkpointed") != std::string::npos);
    }

    // The run configuration keeps both switches.
    void configKeepsTheSwitches()
    {
        RunConfig c;
        c.model = test::tiny_model(kSeq);
        c.train.grad_checkpoint = true;
        FinetuneConfig ft;
        ft.base = "/somewhere";
        ft.qlora = true;
        ft.grad_checkpoint = true;
        c.finetune = ft;
        const RunConfig back = run_config_from_json(to_json(c));
        QVERIFY(back.train.grad_checkpoint);
        QVERIFY(back.finetune->qlora);
        QVERIFY(back.finetune->grad_checkpoint);
        QVERIFY(back.grad_checkpoint());
        // Older run files without them read as off.
        nlohmann::json j = to_json(c);
        j["finetune"].erase("qlora");
        j["train"].erase("grad_checkpoint");
        QVERIFY(!run_config_from_json(j).finetune->qlora);
        QVERIFY(!run_config_from_json(j).train.grad_checkpoint);
    }

    // A QLoRA fine-tune through the trainer: loss falls, 2 + 2 steps equal 4,
    // PEFT files, inference over the NF4-rounded base.
    void qloraRunLearnsAndResumesBitExact()
    {
        test::write_tiny_hf_model(m_root / "base", test::TinyHfModel{});
        auto config = [&](int steps) {
            const BaseModel b = open_base_model(m_root / "base");
            RunConfig c;
            c.model = b.config;
            c.train.steps = steps;
            c.train.batch_size = 2;
            c.train.seq_len = 32;
            c.train.eval_every = 0;
            c.train.eval_batches = 1;
            c.train.checkpoint_every = 2;
            c.train.sample_tokens = 0;
            c.train.threads = 2;
            c.train.optimizer.lr = 1e-2f;
            c.train.optimizer.weight_decay = 0.0f;
            c.train.schedule.warmup_steps = 1;
            FinetuneConfig ft;
            ft.base = b.path.string();
            ft.lora = all_linear(b.config, 0.1f);
            ft.qlora = true;
            ft.grad_checkpoint = true;
            c.finetune = ft;
            return c;
        };
        auto train = [](const RunConfig& c, const fs::path& dir, bool resume) {
            TrainerOptions o;
            o.run_dir = dir;
            o.resume = resume;
            Trainer t(c, o, nullptr);
            return t.run();
        };
        const fs::path straight = m_root / "straight", halves = m_root / "halves", longer = m_root / "longer";
        const RunSummary a = train(config(4), straight, false);
        QVERIFY2(a.outcome == RunOutcome::finished, a.error.c_str());
        QVERIFY2(train(config(2), halves, false).outcome == RunOutcome::finished, "first half");
        RunConfig more;
        more.train.steps = 4;
        const RunSummary b = train(more, halves, true);
        QVERIFY2(b.outcome == RunOutcome::finished, b.error.c_str());
        const fs::path ca = RunDirectory(straight).checkpoint_dir(4), cb = RunDirectory(halves).checkpoint_dir(4);
        for (const char* file : {"adapter_model.safetensors", "optimizer.safetensors", "adapter_config.json"})
            QVERIFY2(read_file(ca / file) == read_file(cb / file), file);
        const auto adapter = nlohmann::json::parse(read_file(ca / "adapter_config.json"));
        QCOMPARE(adapter["peft_type"].get<std::string>(), std::string("LORA"));
        QVERIFY(SafetensorsReader(ca / "adapter_model.safetensors")
                    .find("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"));
        QVERIFY(RunDirectory(straight).read_config().finetune->qlora);

        // Learning: a longer run ends well below where it started.
        RunConfig lc = config(30);
        lc.train.checkpoint_every = 0;
        lc.train.eval_every = 0;
        const RunSummary l = train(lc, longer, false);
        QVERIFY2(l.outcome == RunOutcome::finished, l.error.c_str());
        QVERIFY2(l.final_loss < a.final_loss - 0.3, qPrintable(QString("loss %1 after 30 steps, %2 after 4").arg(l.final_loss).arg(a.final_loss)));

        // For inference the adapters merge into the dequantized NF4 base: the
        // merged model computes what the NF4 base with the adapters does.
        const LoadedModel m = load_model(straight, BackendOptions{});
        QVERIFY(m.nf4_base);
        QVERIFY(m.lora.has_value());
        Backend& be = *m.backend;
        const ModelConfig& mc = m.config;
        ParamStore whole(be, mc, false);
        load_base_weights(open_base_model(m_root / "base"), whole);
        const std::vector<float> master = whole.download_master();
        Nf4Base nf4(be, whole.layout(), master);
        ParamStore rest(be, nf4_base_layout(mc), false);
        upload_nf4_base_rest(rest, whole.layout(), master);
        LoraAdapters adapters(be, mc, *m.lora, false);
        load_finetune_checkpoint(ca, adapters, nullptr);
        const int64_t B = 2, T = 24;
        const auto tokens = test::random_ids(size_t(B * T), mc.vocab_size, 21);
        const auto targets = test::random_ids(size_t(B * T), mc.vocab_size, 22);
        Transformer unmerged(rest, B, T, false, &adapters, false, &nf4), merged(*m.params, B, T, false);
        const double lu = unmerged.evaluate(tokens.data(), targets.data(), B, T).loss;
        const double lm = merged.evaluate(tokens.data(), targets.data(), B, T).loss;
        QVERIFY2(std::abs(lu - lm) <= 1e-5 * std::abs(lm), qPrintable(QString("NF4 + adapters %1, merged %2").arg(lu).arg(lm)));
        // Not the plain base: the NF4 rounding is there.
        ParamStore plain(be, mc, false);
        plain.upload_master(master);
        LoraAdapters again(be, mc, *m.lora, false);
        load_finetune_checkpoint(ca, again, nullptr);
        again.merge_into(plain);
        const double lp = Transformer(plain, B, T, false).evaluate(tokens.data(), targets.data(), B, T).loss;
        QVERIFY(lp != lm);
    }

private:
    QTemporaryDir m_tmp;
    fs::path m_root;
};

QTEST_GUILESS_MAIN(TestQlora)
#include "tst_qlora.moc"
