// Hugging Face model folders in: LLaMA and Qwen3 layouts (tied and untied
// heads, QK-norm), one file or shards with an index, F32/BF16/F16 weights, a
// SentencePiece tokenizer with LLaMA's dummy prefix (ids checked against
// SentencePiece itself). They load for inference as they are, import as runs
// that evaluate, generate and train further, and everything a model folder can
// get wrong is refused with a message that names it, writing nothing.
#include "core/data/sentencepiece_proto.h"
#include "core/io/file_util.h"
#include "core/io/hf_model_dir.h"
#include "core/io/safetensors.h"
#include "core/train/hf_import.h"
#include "core/train/load_model.h"
#include "core/train/run_dir.h"
#include "core/train/trainer.h"
#include "kernels/error.h"
#include "tests/support/test_support.h"
#include "tests/support/tiny_hf_model.h"

#include <QTemporaryDir>
#include <QTest>

#include <sentencepiece_processor.h>

#include <functional>

namespace fs = std::filesystem;
using namespace crucible;
using nlohmann::json;

namespace {

std::string error_of(const std::function<void()>& f)
{
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    return {};
}

std::vector<float> loaded_weights(const fs::path& path)
{
    const LoadedModel m = load_model(path, BackendOptions{});
    return m.params->download_master();
}

// Rewrites one safetensors file through `edit` (which may add, drop or change tensors).
void rewrite_safetensors(const fs::path& file, const std::function<void(const SafetensorsReader&, SafetensorsWriter&)>& edit)
{
    SafetensorsWriter out;
    {
        const SafetensorsReader in(file);
        edit(in, out);
    }
    out.write(file);
}

void copy_all_but(const SafetensorsReader& in, SafetensorsWriter& out, const std::string& skip)
{
    for (const auto& e : in.entries())
        if (e.name != skip) out.add(e.name, e.dtype, e.shape, in.raw(e), size_t(e.end - e.begin));
}

void edit_config(const fs::path& dir, const std::function<void(json&)>& edit)
{
    json j = json::parse(read_file(dir / "config.json"));
    edit(j);
    write_file_atomic(dir / "config.json", j.dump(2));
}

} // namespace

class TestHfModelDir : public QObject {
    Q_OBJECT

private:
    QTemporaryDir m_tmp;
    int m_count = 0;
    fs::path fresh(const char* name) { return fs::path(m_tmp.path().toStdString()) / (name + std::to_string(++m_count)); }

private slots:
    void spacePrefixMatchesSentencePiece()
    {
        const Tokenizer& ours = test::tiny_tokenizer(true);
        QVERIFY(ours.adds_space_prefix());
        QVERIFY(!test::tiny_tokenizer(false).adds_space_prefix());
        QVERIFY(ours.fingerprint() != test::tiny_tokenizer(false).fingerprint());
        QVERIFY(sentencepiece_proto::adds_dummy_prefix(ours.serialized()));
        QVERIFY(!sentencepiece_proto::adds_dummy_prefix(test::tiny_tokenizer(false).serialized()));

        // SentencePiece itself, on the unmodified model, is the reference.
        sentencepiece::SentencePieceProcessor sp;
        QVERIFY(sp.LoadFromSerializedProto(ours.serialized()).ok());
        for (const std::string text : {"Hello world", "ROMEO:\nBut soft, what light\n", "  two  spaces ",
                                       "caf\xC3\xA9 \xE2\x99\xA5 na\xC3\xAFve", "x", "\n\nKING:"}) {
            std::vector<int> expected;
            QVERIFY(sp.Encode(text, &expected).ok());
            const std::vector<int32_t> got = ours.encode(text);
            QCOMPARE(std::vector<int>(got.begin(), got.end()), expected);
        }
        QVERIFY(ours.encode("").empty());
        // Decoding keeps the bytes of every token, the prefix's space included.
        QCOMPARE(ours.decode(ours.encode("Hello world")), std::string(" Hello world"));
    }

    void opensEveryLayout_data()
    {
        QTest::addColumn<bool>("qwen3");
        QTest::addColumn<bool>("tied");
        QTest::addColumn<QString>("dtype");
        QTest::addColumn<int>("shards");
        QTest::newRow("llama f32 one file") << false << false << QString("F32") << 1;
        QTest::newRow("llama bf16 3 shards") << false << false << QString("BF16") << 3;
        QTest::newRow("llama f16 tied 2 shards") << false << true << QString("F16") << 2;
        QTest::newRow("qwen3 bf16 tied") << true << true << QString("BF16") << 1;
        QTest::newRow("qwen3 f32 untied 4 shards") << true << false << QString("F32") << 4;
    }

    void opensEveryLayout()
    {
        QFETCH(bool, qwen3);
        QFETCH(bool, tied);
        QFETCH(QString, dtype);
        QFETCH(int, shards);
        test::TinyHfModel spec;
        spec.qwen3 = qwen3;
        spec.tied = tied;
        spec.dtype = dtype.toStdString();
        spec.shards = shards;
        const fs::path dir = fresh("model");
        const auto written = test::write_tiny_hf_model(dir, spec);

        QVERIFY(is_hf_model_dir(dir));
        const HfModelDir m = open_hf_model_dir(dir);
        QCOMPARE(m.architecture, std::string(qwen3 ? "Qwen3ForCausalLM" : "LlamaForCausalLM"));
        ModelConfig expected = test::tiny_model_config(spec);
        expected.name = m.config.name;
        QVERIFY(to_json(m.config) == to_json(expected));
        QCOMPARE(m.config.qk_norm, qwen3);
        QCOMPARE(m.weight_dtype, spec.dtype);
        QCOMPARE(int(m.weight_files.size()), shards);
        QVERIFY(m.load_tokenizer().adds_space_prefix());

        // Loaded for inference as it is: every weight exactly as stored.
        QCOMPARE(loaded_weights(dir), written.weights);
    }

    void tiedCopyAndRopeBuffersAreIgnored()
    {
        test::TinyHfModel spec;
        spec.tied = true;
        const fs::path dir = fresh("extras");
        const auto written = test::write_tiny_hf_model(dir, spec);
        rewrite_safetensors(dir / "model.safetensors", [](const SafetensorsReader& in, SafetensorsWriter& out) {
            copy_all_but(in, out, "");
            const auto& embed = *in.find("model.embed_tokens.weight");
            out.add("lm_head.weight", embed.dtype, embed.shape, in.raw(embed), size_t(embed.end - embed.begin));
            const std::vector<float> inv_freq(8, 0.5f);
            out.add_f32("model.layers.0.self_attn.rotary_emb.inv_freq", {8}, inv_freq.data());
        });
        QCOMPARE(loaded_weights(dir), written.weights);
    }

    void importMakesARunThatTrainsFurther()
    {
        test::TinyHfModel spec;
        spec.dtype = "BF16";
        spec.shards = 2;
        const fs::path dir = fresh("chat-model");
        const auto written = test::write_tiny_hf_model(dir, spec);
        const json chat_config = {{"chat_template", "{{ messages }}"}, {"eos_token", "</s>"}};
        write_file_atomic(dir / "tokenizer_config.json", chat_config.dump());
        const fs::path text = fresh("notes.txt");
        std::string notes;
        for (int i = 0; i < 40; ++i) notes += "The quick brown fox jumps over the lazy dog, line " + std::to_string(i) + ".\n";
        write_file_atomic(text, notes);

        RunConfig settings;
        settings.data.paths = {text.string()};
        settings.train.steps = 2;
        settings.train.schedule.warmup_steps = 1;
        settings.train.batch_size = 2;
        settings.train.seq_len = 32;
        settings.train.eval_every = 0;
        settings.train.threads = 2;
        const fs::path run = fresh("run");
        const ImportedRun imported = import_hf_model(dir, run, settings);
        QCOMPARE(imported.checkpoint, RunDirectory(run).checkpoint_dir(0));

        const RunDirectory rd(run);
        QVERIFY(rd.exists());
        QCOMPARE(rd.read_config().model.d_model, 64);
        QVERIFY(json::parse(read_file(run / "tokenizer_config.json")) == chat_config);
        QCOMPARE(read_file(rd.tokenizer_file()), test::tiny_tokenizer(true).serialized());
        // The weights keep their dtype and values.
        const SafetensorsReader stored(imported.checkpoint / "model.safetensors", SafetensorsReader::Contents::header_only);
        QCOMPARE(stored.find("model.embed_tokens.weight")->dtype, std::string("BF16"));
        QCOMPARE(loaded_weights(run), written.weights);
        QCOMPARE(rd.read_metrics().front().value("type", ""), std::string("import"));

        // Trained further: resumes from step 0 with a fresh optimizer.
        Trainer trainer(settings, TrainerOptions{run, true, fs::path()}, nullptr);
        const RunSummary summary = trainer.run();
        QVERIFY2(summary.outcome == RunOutcome::finished, summary.error.c_str());
        QCOMPARE(rd.checkpoint_steps(), (std::vector<int64_t>{0, 2}));
        QVERIFY(loaded_weights(run) != written.weights);
    }

    void refusals_data()
    {
        using Edit = std::function<void(const fs::path&)>;
        QTest::addColumn<bool>("qwen3");
        QTest::addColumn<int>("shards");
        QTest::addColumn<void*>("edit");
        QTest::addColumn<QString>("message");
        static std::vector<std::unique_ptr<Edit>> edits;
        auto row = [&](const char* name, bool qwen3, int shards, Edit edit, const char* message) {
            edits.push_back(std::make_unique<Edit>(std::move(edit)));
            QTest::newRow(name) << qwen3 << shards << static_cast<void*>(edits.back().get()) << QString(message);
        };
        row("another architecture", false, 1, [](const fs::path& d) {
            edit_config(d, [](json& j) { j["architectures"] = {"MistralForCausalLM"}; j["model_type"] = "mistral"; });
        }, "MistralForCausalLM");
        row("tokenizer.json only", false, 1, [](const fs::path& d) {
            fs::remove(d / "tokenizer.model");
            write_file_atomic(d / "tokenizer.json", "{}");
        }, "only tokenizer.json");
        row("no tokenizer", false, 1, [](const fs::path& d) { fs::remove(d / "tokenizer.model"); },
            "no tokenizer.model");
        row("missing tensor", false, 1, [](const fs::path& d) {
            rewrite_safetensors(d / "model.safetensors", [](const SafetensorsReader& in, SafetensorsWriter& out) {
                copy_all_but(in, out, "model.layers.1.mlp.down_proj.weight");
            });
        }, "no tensor model.layers.1.mlp.down_proj.weight");
        row("untied head missing", false, 1, [](const fs::path& d) {
            rewrite_safetensors(d / "model.safetensors", [](const SafetensorsReader& in, SafetensorsWriter& out) {
                copy_all_but(in, out, "lm_head.weight");
            });
        }, "not tied");
        row("mis-shaped tensor", false, 1, [](const fs::path& d) {
            rewrite_safetensors(d / "model.safetensors", [](const SafetensorsReader& in, SafetensorsWriter& out) {
                copy_all_but(in, out, "model.layers.0.self_attn.k_proj.weight");
                const std::vector<float> wrong(size_t(48 * 64), 0.0f);
                out.add_f32("model.layers.0.self_attn.k_proj.weight", {48, 64}, wrong.data());
            });
        }, "has shape [48, 64] but config.json describes [32, 64]");
        row("config disagrees with weights", false, 2, [](const fs::path& d) {
            edit_config(d, [](json& j) { j["intermediate_size"] = 80; });
        }, "do not belong together");
        row("quantized weights", false, 1, [](const fs::path& d) {
            rewrite_safetensors(d / "model.safetensors", [](const SafetensorsReader& in, SafetensorsWriter& out) {
                copy_all_but(in, out, "model.layers.0.mlp.up_proj.weight");
                const std::vector<int8_t> q(size_t(96 * 64), 1);
                out.add("model.layers.0.mlp.up_proj.weight", "I8", {96, 64}, q.data(), q.size());
            });
        }, "stored as I8");
        row("extra bias", false, 1, [](const fs::path& d) {
            rewrite_safetensors(d / "model.safetensors", [](const SafetensorsReader& in, SafetensorsWriter& out) {
                copy_all_but(in, out, "");
                const std::vector<float> bias(64, 0.0f);
                out.add_f32("model.layers.0.self_attn.q_proj.bias", {64}, bias.data());
            });
        }, "q_proj.bias");
        row("missing shard", false, 3, [](const fs::path& d) {
            fs::remove(d / "model-00002-of-00003.safetensors");
        }, "model-00002-of-00003.safetensors named by model.safetensors.index.json is missing");
        row("index outside the folder", false, 2, [](const fs::path& d) {
            json index = json::parse(read_file(d / "model.safetensors.index.json"));
            index["weight_map"]["model.norm.weight"] = "../elsewhere.safetensors";
            write_file_atomic(d / "model.safetensors.index.json", index.dump());
        }, "plain file names");
        row("index and shards disagree", false, 2, [](const fs::path& d) {
            json index = json::parse(read_file(d / "model.safetensors.index.json"));
            index["weight_map"]["model.norm.weight"] = "model-00001-of-00002.safetensors";
            write_file_atomic(d / "model.safetensors.index.json", index.dump());
        }, "do not belong together");
        row("pytorch pickle", false, 1, [](const fs::path& d) {
            fs::rename(d / "model.safetensors", d / "pytorch_model.bin");
        }, "pytorch_model.bin");
        row("no weights", false, 1, [](const fs::path& d) { fs::remove(d / "model.safetensors"); },
            "has neither model.safetensors nor model.safetensors.index.json");
        row("vocabulary mismatch", false, 1, [](const fs::path& d) {
            edit_config(d, [](json& j) { j["vocab_size"] = 32000; });
        }, "tokenizer.model has 320 tokens but config.json's vocab_size is 32000");
        row("sliding window", true, 1, [](const fs::path& d) {
            edit_config(d, [](json& j) { j["use_sliding_window"] = true; });
        }, "sliding-window");
        row("rope scaling", false, 1, [](const fs::path& d) {
            edit_config(d, [](json& j) { j["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}}; });
        }, "rope_scaling");
        row("corrupt shard", false, 2, [](const fs::path& d) {
            const std::string bytes = read_file(d / "model-00002-of-00002.safetensors");
            write_file_atomic(d / "model-00002-of-00002.safetensors", bytes.substr(0, bytes.size() / 2));
        }, "truncated");
        row("not JSON", false, 1, [](const fs::path& d) { write_file_atomic(d / "config.json", "{oops"); },
            "config.json is not valid JSON");
    }

    void refusals()
    {
        QFETCH(bool, qwen3);
        QFETCH(int, shards);
        QFETCH(void*, edit);
        QFETCH(QString, message);
        test::TinyHfModel spec;
        spec.qwen3 = qwen3;
        spec.shards = shards;
        const fs::path dir = fresh("bad");
        test::write_tiny_hf_model(dir, spec);
        (*static_cast<std::function<void(const fs::path&)>*>(edit))(dir);

        const std::string opened = error_of([&] { open_hf_model_dir(dir); });
        QVERIFY2(opened.find(message.toStdString()) != std::string::npos, opened.c_str());
        const fs::path run = fresh("refused-run");
        const std::string imported = error_of([&] { import_hf_model(dir, run, RunConfig{}); });
        QCOMPARE(imported, opened);
        QVERIFY(!fs::exists(run));
        // Nothing beside the target either: no staging folder left behind.
        for (const auto& e : fs::directory_iterator(run.parent_path()))
            QVERIFY2(e.path().filename().string().find("refused-run") == std::string::npos, e.path().c_str());
    }

    void importRefusesAnOccupiedFolder()
    {
        const fs::path dir = fresh("model");
        test::write_tiny_hf_model(dir, test::TinyHfModel{});
        const fs::path run = fresh("occupied");
        fs::create_directories(run);
        write_file_atomic(run / "keep.txt", "mine");
        const std::string e = error_of([&] { import_hf_model(dir, run, RunConfig{}); });
        QVERIFY2(e.find("already exists and is not empty") != std::string::npos, e.c_str());
        QCOMPARE(read_file(run / "keep.txt"), std::string("mine"));
    }

    void commandLine()
    {
        const fs::path dir = fresh("cli-model");
        test::write_tiny_hf_model(dir, test::TinyHfModel{});
        const std::string cli = (test::binary_dir() / "bin" / "crucible-cli").string();
        const fs::path run = fresh("cli-run");
        std::string out;
        QCOMPARE(test::run_command(cli + " import '" + dir.string() + "' --out '" + run.string() + "'", &out), 0);
        QVERIFY2(out.find("LlamaForCausalLM") != std::string::npos, out.c_str());
        QCOMPARE(test::run_command(cli + " sample --run '" + run.string() + "' --prompt ROMEO: --max-tokens 4 --seed 1",
                                   &out), 0);
        const fs::path text = fresh("eval.txt");
        write_file_atomic(text, "ROMEO:\nBut soft, what light through yonder window breaks?\n");
        QCOMPARE(test::run_command(cli + " eval --run '" + run.string() + "' --text '" + text.string() + "'", &out), 0);
        QVERIFY2(out.find("bits/byte") != std::string::npos, out.c_str());
        // A model folder works without importing it too.
        QCOMPARE(test::run_command(cli + " sample --run '" + dir.string() + "' --prompt ROMEO: --max-tokens 4", &out), 0);

        fs::remove(dir / "tokenizer.model");
        const fs::path refused = fresh("cli-refused");
        QCOMPARE(test::run_command(cli + " import '" + dir.string() + "' --out '" + refused.string() + "'", &out), 1);
        QVERIFY2(out.find("no tokenizer.model") != std::string::npos, out.c_str());
        QVERIFY(!fs::exists(refused));
    }
};

QTEST_GUILESS_MAIN(TestHfModelDir)
#include "tst_hf_model_dir.moc"
