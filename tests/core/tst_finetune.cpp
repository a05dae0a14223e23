// Fine-tune runs end to end: LoRA on a Hugging Face base through the trainer
// stages (checkpoints in PEFT's format, bit-exact resume with dropout on),
// a fine-tune loaded for inference and merged equal to base + adapter, and
// crucible-cli finetune / merge / info refusing bad input with nothing
// written.
#include "core/io/hf_model_dir.h"
#include "core/io/peft_adapter.h"
#include "core/io/file_util.h"
#include "core/io/safetensors.h"
#include "core/model/lora.h"
#include "core/model/transformer.h"
#include "core/train/finetune.h"
#include "core/train/load_model.h"
#include "core/train/run_dir.h"
#include "core/train/trainer.h"
#include "tests/support/test_support.h"
#include "tests/support/tiny_hf_model.h"

#include <QTemporaryDir>
#include <QTest>

#include <cmath>

using namespace crucible;
namespace fs = std::filesystem;

namespace {

struct Cli {
    int code = 0;
    std::string output;
};

Cli cli(const std::string& args)
{
    Cli r;
    r.code = test::run_command((test::binary_dir() / "bin" / "crucible-cli").string() + " " + args, &r.output);
    return r;
}

RunConfig finetune_config(const fs::path& base, int steps)
{
    const BaseModel b = open_base_model(base);
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
    c.train.optimizer.lr = 5e-3f;
    c.train.optimizer.weight_decay = 0.0f;
    c.train.schedule.warmup_steps = 1;
    FinetuneConfig ft;
    ft.base = b.path.string();
    ft.lora.rank = 4;
    ft.lora.alpha = 8.0f;
    ft.lora.dropout = 0.1f;   // the dropout stream must resume too
    ft.lora.targets = parse_lora_targets("all-linear", b.config);
    c.finetune = ft;
    return c;
}

RunSummary train(const RunConfig& c, const fs::path& dir, bool resume)
{
    TrainerOptions o;
    o.run_dir = dir;
    o.resume = resume;
    Trainer t(c, o, nullptr);
    return t.run();
}

} // namespace

class TestFinetune : public QObject {
    Q_OBJECT

private slots:
    void initTestCase()
    {
        QVERIFY(m_tmp.isValid());
        m_root = m_tmp.path().toStdString();
        test::TinyHfModel spec;
        spec.dtype = "BF16";   // a frozen base as the Hub ships it
        test::write_tiny_hf_model(m_root / "base", spec);
    }

    // 4 steps at once, and 2 steps then a resume to 4, write the same bytes.
    void resumeIsBitExact()
    {
        const fs::path straight = m_root / "straight", halves = m_root / "halves";
        const RunSummary a = train(finetune_config(m_root / "base", 4), straight, false);
        QVERIFY2(a.outcome == RunOutcome::finished, a.error.c_str());
        const RunSummary first = train(finetune_config(m_root / "base", 2), halves, false);
        QVERIFY2(first.outcome == RunOutcome::finished, first.error.c_str());
        RunConfig more;
        more.train.steps = 4;
        const RunSummary second = train(more, halves, true);
        QVERIFY2(second.outcome == RunOutcome::finished, second.error.c_str());

        const fs::path ca = RunDirectory(straight).checkpoint_dir(4), cb = RunDirectory(halves).checkpoint_dir(4);
        for (const char* file : {"adapter_model.safetensors", "optimizer.safetensors", "adapter_config.json"})
            QVERIFY2(read_file(ca / file) == read_file(cb / file), file);
        QVERIFY(!fs::exists(ca / "model.safetensors"));   // the base is not copied
        // The adapters moved away from B = 0.
        const SafetensorsReader st(ca / "adapter_model.safetensors");
        std::vector<float> b(size_t(st.find("base_model.model.model.layers.0.mlp.down_proj.lora_B.weight")->numel()));
        const auto* e = st.find("base_model.model.model.layers.0.mlp.down_proj.lora_B.weight");
        st.read_f32(e->name, e->shape, b.data());
        QVERIFY(std::any_of(b.begin(), b.end(), [](float v) { return v != 0.0f; }));
    }

    // Loading a fine-tune merges W + scale·B·A; the adapted model unmerged
    // computes the same logits; `merge` writes those weights for transformers.
    void mergedEqualsBasePlusAdapter()
    {
        const fs::path run = m_root / "straight";
        QVERIFY(fs::exists(run / "config.json"));
        const LoadedModel merged = load_model(run, BackendOptions{});
        QVERIFY(merged.lora.has_value());
        QCOMPARE(merged.step, int64_t(4));
        const fs::path ckpt = RunDirectory(run).checkpoint_dir(4);

        // By hand, in double, from the files alone.
        const HfModelDir base_dir = open_hf_model_dir(m_root / "base");
        ParamLayout layout(base_dir.config);
        std::vector<float> expected = read_hf_weights(base_dir, layout);
        const auto cfg = nlohmann::json::parse(read_file(ckpt / "adapter_config.json"));
        const int r = cfg["r"];
        const double scale = cfg["lora_alpha"].get<double>() / r;
        const SafetensorsReader st(ckpt / "adapter_model.safetensors");
        int adapted_modules = 0;
        for (const ParamEntry& p : layout.entries()) {
            const std::string stem = "base_model.model." + p.name.substr(0, p.name.size() - std::string(".weight").size());
            const auto* ea = st.find(stem + ".lora_A.weight");
            if (!ea) continue;
            const auto* eb = st.find(stem + ".lora_B.weight");
            std::vector<float> A(size_t(ea->numel())), B(size_t(eb->numel()));
            st.read_f32(ea->name, ea->shape, A.data());
            st.read_f32(eb->name, eb->shape, B.data());
            const int64_t out = p.shape[0], in = p.shape[1];
            for (int64_t i = 0; i < out; ++i)
                for (int64_t j = 0; j < in; ++j) {
                    double acc = 0;
                    for (int k = 0; k < r; ++k) acc += double(B[size_t(i * r + k)]) * A[size_t(k * in + j)];
                    expected[size_t(p.offset + i * in + j)] = float(expected[size_t(p.offset + i * in + j)] + scale * acc);
                }
            ++adapted_modules;
        }
        QCOMPARE(adapted_modules, base_dir.config.n_layers * 7);
        const std::vector<float> got = merged.params->download_master();
        QVERIFY2(test::max_abs_diff(got, expected) < 1e-6f, qPrintable(QString::number(test::max_abs_diff(got, expected))));

        // Unmerged: the base with the adapters applied on the fly.
        auto be = make_backend(BackendOptions{});
        ParamStore base(*be, base_dir.config, false);
        load_hf_weights(base_dir, base);
        LoraAdapters lora(*be, base_dir.config, read_peft_config(ckpt, base_dir.config).config, false);
        load_peft_weights(ckpt, lora);
        const auto tokens = test::random_ids(24, base_dir.config.vocab_size, 3);
        Transformer adapted(base, 2, 12, false, &lora), plain(*merged.params, 2, 12, false);
        std::vector<float> la, lp;
        adapted.last_logits(tokens.data(), 2, 12, la);
        plain.last_logits(tokens.data(), 2, 12, lp);
        QVERIFY2(test::max_abs_diff(la, lp) < 1e-4f, qPrintable(QString::number(test::max_abs_diff(la, lp))));

        // crucible-cli merge: a Hugging Face folder with exactly these weights.
        const fs::path out = m_root / "merged";
        const Cli m = cli("merge --run '" + run.string() + "' --out '" + out.string() + "'");
        QVERIFY2(m.code == 0, m.output.c_str());
        const HfModelDir written = open_hf_model_dir(out);
        QVERIFY(read_hf_weights(written, layout) == got);
        // The inference commands take the fine-tune run as it is.
        const Cli eval = cli("eval --run '" + run.string() + "' --max-batches 1 --threads 2");
        QVERIFY2(eval.code == 0 && eval.output.find("bits/byte") != std::string::npos, eval.output.c_str());
        const Cli sample = cli("sample --run '" + run.string() + "' --prompt 'a' --max-tokens 8 --temperature 0 --threads 2");
        QVERIFY2(sample.code == 0, sample.output.c_str());
        // bench quant on the fine-tune: a row per scheme.
        write_file_atomic(m_root / "text.txt", "the quick brown fox jumps over the lazy dog. " + std::string(400, 'a'));
        const Cli quant = cli("bench quant --run '" + run.string() + "' --text '" + (m_root / "text.txt").string() +
                              "' --max-tokens 256 --json --threads 2");
        QVERIFY2(quant.code == 0, quant.output.c_str());
        const auto table = nlohmann::json::parse(quant.output);
        QCOMPARE(table["schemes"].size(), size_t(6));
        QCOMPARE(table["schemes"][0]["scheme"].get<std::string>(), std::string("bf16"));
        QCOMPARE(table["schemes"][0]["bits_per_weight"].get<double>(), 16.0);
        for (const auto& row : table["schemes"]) QVERIFY(std::isfinite(row["bits_per_byte"].get<double>()));
        // And info describes the fine-tune.
        const Cli info = cli("info '" + run.string() + "'");
        QVERIFY2(info.code == 0 && info.output.find("LoRA adapter") != std::string::npos &&
                     info.output.find("rank          4") != std::string::npos,
                 info.output.c_str());
    }

    // Every refusal says what is wrong and leaves no run folder behind.
    void badInputsRefusedWithNothingWritten()
    {
        const std::string base = "'" + (m_root / "base").string() + "'";
        const fs::path out = m_root / "refused";
        const std::string common = " --steps 1 --batch 1 --seq 16 --out '" + out.string() + "'";
        const std::vector<std::pair<std::string, std::string>> bad = {
            {"finetune --base '" + (m_root / "missing").string() + "'" + common, "does not exist"},
            {"finetune --base " + base + " --lora-targets q,bogus" + common, "bogus"},
            {"finetune --base " + base + " --lora-r 0" + common, "rank"},
            {"finetune --base " + base + " --lora-dropout 1" + common, "dropout"},
            {"finetune --base " + base + " --d-model 64" + common, "architecture"},
            {"finetune --base " + base + " --optimizer muon" + common, "AdamW"},
            {"finetune --base '" + (m_root / "straight").string() + "'" + common, "merge it first"},
            {"finetune" + common, "--base"},
            {"finetune --resume " + base + " --steps 2", "not a fine-tune"},
            {"merge --run " + base + " --out '" + out.string() + "'", "not a fine-tune"},
        };
        for (const auto& [args, expected] : bad) {
            const Cli r = cli(args);
            QVERIFY2(r.code == 1, qPrintable(QString::fromStdString(args + "\n" + r.output)));
            QVERIFY2(r.output.find(expected) != std::string::npos,
                     qPrintable(QString::fromStdString(args + "\nexpected \"" + expected + "\" in:\n" + r.output)));
            QVERIFY2(!fs::exists(out), args.c_str());
        }
    }

    // --qlora and --grad-checkpoint: kept in the run's config, shown by
    // info, and merging says it dequantized the NF4 base.
    void qloraFromTheCommandLine()
    {
        const fs::path out = m_root / "qlora-cli";
        const Cli r = cli("finetune --base '" + (m_root / "base").string() +
                          "' --qlora --grad-checkpoint --lora-r 4 --steps 2 --batch 2 --seq 16 --threads 2 "
                          "--eval-every 0 --out '" + out.string() + "'");
        QVERIFY2(r.code == 0, r.output.c_str());
        QVERIFY2(r.output.find("QLoRA (NF4 base)") != std::string::npos, r.output.c_str());
        const RunConfig c = RunDirectory(out).read_config();
        QVERIFY(c.finetune->qlora);
        QVERIFY(c.finetune->grad_checkpoint);
        QVERIFY(!c.train.grad_checkpoint);
        const Cli info = cli("info '" + out.string() + "'");
        QVERIFY2(info.output.find("NF4 with double quant") != std::string::npos, info.output.c_str());
        const Cli merge = cli("merge --run '" + out.string() + "' --out '" + (m_root / "qlora-merged").string() + "'");
        QVERIFY2(merge.code == 0, merge.output.c_str());
        QVERIFY2(merge.output.find("dequantized") != std::string::npos, merge.output.c_str());
    }

private:
    QTemporaryDir m_tmp;
    fs::path m_root;
};

QTEST_GUILESS_MAIN(TestFinetune)
#include "tst_finetune.moc"
