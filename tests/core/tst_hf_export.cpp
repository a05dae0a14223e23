// Hugging Face export: the folder holds what transformers and LlamaTokenizer
// read (config.json, model.safetensors in the chosen dtype, tokenizer.model,
// tokenizer_config.json, generation_config.json), opens again as a model
// folder with the same weights, keeps an imported model's own tokenizer
// settings, and never overwrites a folder that holds something. The CLI's
// export (both formats) and tokenize commands run end to end. (transformers
// itself reads it on the GPU machine: tests/peers/transformers_check.py.)
#include "core/io/file_util.h"
#include "core/io/gguf.h"
#include "core/io/hf_export.h"
#include "core/io/hf_model_dir.h"
#include "core/io/safetensors.h"
#include "core/model/param_layout.h"
#include "core/train/load_model.h"
#include "kernels/error.h"
#include "kernels/half.h"
#include "tests/support/test_support.h"
#include "tests/support/tiny_hf_model.h"

#include <QTemporaryDir>
#include <QTest>

namespace fs = std::filesystem;
using namespace crucible;
using nlohmann::json;

class TestHfExport : public QObject {
    Q_OBJECT

private:
    QTemporaryDir m_tmp;
    fs::path path(const std::string& name) const { return fs::path(m_tmp.path().toStdString()) / name; }

private slots:
    void roundTrip_data()
    {
        QTest::addColumn<QString>("dtype");
        QTest::addColumn<bool>("qwen3");
        QTest::newRow("f32 llama") << QString("f32") << false;
        QTest::newRow("bf16 qwen3") << QString("bf16") << true;
        QTest::newRow("f16 llama") << QString("F16") << false;
    }

    void roundTrip()
    {
        QFETCH(QString, dtype);
        QFETCH(bool, qwen3);
        test::TinyHfModel spec;
        spec.qwen3 = qwen3;
        spec.space_prefix = false;
        const auto written = test::write_tiny_hf_model(path("src-" + dtype.toStdString()), spec);
        const ModelConfig config = test::tiny_model_config(spec);
        HfExportOptions o;
        o.dtype = dtype.toStdString();
        const fs::path out = path("out-" + dtype.toStdString());
        export_hf(config, test::tiny_tokenizer(false), written.weights, o, out);

        for (const char* file : {"config.json", "model.safetensors", "tokenizer.model", "tokenizer_config.json",
                                 "generation_config.json"})
            QVERIFY2(fs::exists(out / file), file);
        const HfModelDir back = open_hf_model_dir(out);
        QCOMPARE(back.architecture, std::string(qwen3 ? "Qwen3ForCausalLM" : "LlamaForCausalLM"));
        QCOMPARE(back.weight_dtype, parse_hf_dtype(o.dtype));
        const json config_json = json::parse(read_file(out / "config.json"));
        const char* torch_dtype = dtype == "f32" ? "float32" : dtype == "bf16" ? "bfloat16" : "float16";
        QVERIFY(config_json["torch_dtype"] == torch_dtype);
        const json tc = json::parse(read_file(out / "tokenizer_config.json"));
        QVERIFY(tc["tokenizer_class"] == json("LlamaTokenizer"));
        QVERIFY(tc["legacy"] == json(true));
        QVERIFY(tc["add_bos_token"] == json(false));
        QCOMPARE(read_file(out / "tokenizer.model"), test::tiny_tokenizer(false).serialized());

        const LoadedModel m = load_model(out, BackendOptions{});
        const std::vector<float> loaded = m.params->download_master();
        for (size_t i = 0; i < loaded.size(); ++i) {
            const float w = written.weights[i];
            const float expected = o.dtype == "f32" ? w : o.dtype == "bf16" ? f32_from_bf16(bf16_from_f32(w))
                                                                            : f32_from_f16(f16_from_f32(w));
            if (loaded[i] != expected) QFAIL(("weight " + std::to_string(i) + " differs").c_str());
        }
    }

    void keepsAnImportedTokenizerConfig()
    {
        test::TinyHfModel spec;
        const auto written = test::write_tiny_hf_model(path("chat"), spec);
        HfExportOptions o;
        o.tokenizer_config = json{{"chat_template", "{{ x }}"}, {"legacy", false}};
        export_hf(test::tiny_model_config(spec), test::tiny_tokenizer(true), written.weights, o, path("chat-out"));
        QVERIFY(json::parse(read_file(path("chat-out") / "tokenizer_config.json")) == *o.tokenizer_config);
    }

    void refusesAnOccupiedFolder()
    {
        test::TinyHfModel spec;
        const auto written = test::write_tiny_hf_model(path("occupied-src"), spec);
        fs::create_directories(path("occupied"));
        write_file_atomic(path("occupied") / "notes.txt", "mine");
        bool refused = false;
        try {
            export_hf(test::tiny_model_config(spec), test::tiny_tokenizer(true), written.weights, HfExportOptions{},
                      path("occupied"));
        } catch (const Error& e) {
            refused = std::string(e.what()).find("not empty") != std::string::npos;
        }
        QVERIFY(refused);
        QCOMPARE(read_file(path("occupied") / "notes.txt"), std::string("mine"));
        QVERIFY_EXCEPTION_THROWN(parse_hf_dtype("int8"), Error);
    }

    void commandLine()
    {
        const std::string cli = (test::binary_dir() / "bin" / "crucible-cli").string();
        test::TinyHfModel spec;
        test::write_tiny_hf_model(path("cli-model"), spec);
        const fs::path run = path("cli-run");
        std::string out;
        QCOMPARE(test::run_command(cli + " import '" + path("cli-model").string() + "' --out '" + run.string() + "'",
                                   &out), 0);
        QCOMPARE(test::run_command(cli + " export --run '" + run.string() + "' --format gguf --type q8_0 --out '" +
                                       path("cli.gguf").string() + "'", &out), 0);
        const gguf::File f = gguf::File::read(path("cli.gguf"));
        QCOMPARE(f.get_string("general.architecture"), std::string("llama"));
        QVERIFY(f.get_bool("tokenizer.ggml.add_space_prefix"));
        QCOMPARE(test::run_command(cli + " export --run '" + run.string() + "' --format hf --type bf16 --out '" +
                                       path("cli-hf").string() + "'", &out), 0);
        QCOMPARE(open_hf_model_dir(path("cli-hf")).weight_dtype, std::string("BF16"));
        QCOMPARE(test::run_command(cli + " export --run '" + run.string() + "' --format onnx --out x", &out), 1);
        QVERIFY2(out.find("must be gguf (llama.cpp)") != std::string::npos, out.c_str());

        QCOMPARE(test::run_command(cli + " tokenize --run '" + run.string() + "' --text 'ROMEO: hi' --logits '" +
                                       path("logits.f32").string() + "'", &out), 0);
        const json j = json::parse(out);
        const auto ids = j["ids"].get<std::vector<int32_t>>();
        QCOMPARE(ids, test::tiny_tokenizer(true).encode("ROMEO: hi"));
        QCOMPARE(fs::file_size(path("logits.f32")), ids.size() * size_t(test::tiny_tokenizer(true).vocab_size()) * 4);
    }
};

QTEST_GUILESS_MAIN(TestHfExport)
#include "tst_hf_export.moc"
