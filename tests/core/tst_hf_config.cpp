// config.json: every ModelConfig survives to_hf_config → from_hf_config, the
// keys other tools read are there with HF's spelling, plain Hugging Face Llama
// and Qwen3 configs load, and missing or invalid values are refused clearly.
#include "core/io/hf_config.h"

#include "kernels/error.h"

#include <QTest>

using namespace crucible;
using nlohmann::json;

namespace {

// Every field compared, including the raw head_dim (0 = derived).
bool same(const ModelConfig& a, const ModelConfig& b)
{
    return to_json(a) == to_json(b) && a.head_dim == b.head_dim;
}

std::string error_of(const json& j)
{
    try {
        from_hf_config(j);
    } catch (const Error& e) {
        return e.what();
    }
    return {};
}

// A plain Hugging Face LlamaForCausalLM config, as transformers writes it.
json tiny_llama()
{
    return json::parse(R"({
        "architectures": ["LlamaForCausalLM"],
        "attention_bias": false,
        "attention_dropout": 0.0,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "hidden_act": "silu",
        "hidden_size": 2048,
        "initializer_range": 0.02,
        "intermediate_size": 5632,
        "max_position_embeddings": 2048,
        "model_type": "llama",
        "num_attention_heads": 32,
        "num_hidden_layers": 22,
        "num_key_value_heads": 4,
        "pretraining_tp": 1,
        "rms_norm_eps": 1e-05,
        "rope_scaling": null,
        "rope_theta": 10000.0,
        "tie_word_embeddings": false,
        "torch_dtype": "bfloat16",
        "transformers_version": "4.35.0",
        "use_cache": true,
        "vocab_size": 32000
    })");
}

} // namespace

class TestHfConfig : public QObject {
    Q_OBJECT

private slots:
    void presetsRoundTrip()
    {
        for (const auto& name : preset_names()) {
            const ModelConfig c = preset(name);
            const ModelConfig back = from_hf_config(to_hf_config(c, 1, 2));
            QVERIFY2(same(c, back), name.c_str());
        }
    }

    void oddConfigsRoundTrip_data()
    {
        QTest::addColumn<QByteArray>("config");
        auto row = [](const char* name, ModelConfig c) {
            QTest::newRow(name) << QByteArray::fromStdString(to_json(c).dump());
        };
        ModelConfig c;
        c.name = "layernorm-gelu";
        c.norm = NormType::layernorm;
        c.mlp = MlpType::gelu;
        row("layernorm gelu", c);

        c = ModelConfig{};
        c.name = "qwen-ish";
        c.qk_norm = true;
        c.tied_embeddings = false;
        c.rope_theta = 1'000'000.0f;
        c.norm_eps = 1e-6f;
        row("qk-norm untied", c);

        c = ModelConfig{};
        c.name = "odd sizes ✓";
        c.vocab_size = 300;
        c.d_model = 48;
        c.n_heads = 6;
        c.n_kv_heads = 3;
        c.head_dim = 12;   // explicit, not d_model / n_heads
        c.ff_dim = 100;
        c.seq_len = 17;
        c.init_std = 0.0137f;
        c.norm_eps = 3.3e-7f;
        c.rope_theta = 12345.678f;
        row("explicit head_dim", c);

        c = ModelConfig{};
        c.name = "mqa";
        c.n_heads = 8;
        c.n_kv_heads = 1;
        c.norm = NormType::layernorm;
        c.qk_norm = true;
        row("mqa layernorm qk-norm", c);
    }

    void oddConfigsRoundTrip()
    {
        QFETCH(QByteArray, config);
        const ModelConfig c = model_config_from_json(json::parse(config.toStdString()));
        const json hf = to_hf_config(c, 1, 2);
        // Through text, as it goes through a file.
        const ModelConfig back = from_hf_config(json::parse(hf.dump(2)));
        QVERIFY2(same(c, back), (to_json(c).dump() + "\n" + to_json(back).dump()).c_str());
    }

    void writesHuggingFaceKeys()
    {
        ModelConfig c = preset("nano");
        json j = to_hf_config(c, 1, 2);
        QVERIFY(j["architectures"] == json::array({"LlamaForCausalLM"}));
        QCOMPARE(j["model_type"].get<std::string>(), std::string("llama"));
        QCOMPARE(j["vocab_size"].get<int>(), c.vocab_size);
        QCOMPARE(j["hidden_size"].get<int>(), c.d_model);
        QCOMPARE(j["intermediate_size"].get<int>(), c.ff_dim);
        QCOMPARE(j["num_hidden_layers"].get<int>(), c.n_layers);
        QCOMPARE(j["num_attention_heads"].get<int>(), c.n_heads);
        QCOMPARE(j["num_key_value_heads"].get<int>(), c.n_kv_heads);
        QCOMPARE(j["head_dim"].get<int>(), c.resolved_head_dim());
        QCOMPARE(j["max_position_embeddings"].get<int>(), c.seq_len);
        QCOMPARE(j["tie_word_embeddings"].get<bool>(), c.tied_embeddings);
        QCOMPARE(j["hidden_act"].get<std::string>(), std::string("silu"));
        QCOMPARE(j["attention_bias"].get<bool>(), false);
        QCOMPARE(j["mlp_bias"].get<bool>(), false);
        QCOMPARE(j["bos_token_id"].get<int>(), 1);
        QCOMPARE(j["eos_token_id"].get<int>(), 2);
        QCOMPARE(j["torch_dtype"].get<std::string>(), std::string("float32"));
        QVERIFY(j.contains("initializer_range"));
        QVERIFY(j.contains("rope_theta"));
        // Floats are written as the short decimals people expect to read.
        c.norm_eps = 1e-5f;
        c.init_std = 0.02f;
        j = to_hf_config(c, 1, 2);
        QVERIFY2(j.dump().find("\"rms_norm_eps\":1e-05") != std::string::npos, j.dump().c_str());
        QVERIFY2(j.dump().find("\"initializer_range\":0.02") != std::string::npos, j.dump().c_str());

        c.qk_norm = true;
        j = to_hf_config(c, 1, 2);
        QVERIFY(j["architectures"] == json::array({"Qwen3ForCausalLM"}));
        QCOMPARE(j["model_type"].get<std::string>(), std::string("qwen3"));

        c.mlp = MlpType::gelu;
        c.norm = NormType::layernorm;
        j = to_hf_config(c, 1, 2);
        QCOMPARE(j["hidden_act"].get<std::string>(), std::string("gelu"));
        QCOMPARE(j["crucible"]["norm"].get<std::string>(), std::string("layernorm"));
        QCOMPARE(j["crucible"]["mlp"].get<std::string>(), std::string("gelu"));
    }

    void readsPlainLlamaConfig()
    {
        const ModelConfig c = from_hf_config(tiny_llama());
        QCOMPARE(c.vocab_size, 32000);
        QCOMPARE(c.d_model, 2048);
        QCOMPARE(c.ff_dim, 5632);
        QCOMPARE(c.n_layers, 22);
        QCOMPARE(c.n_heads, 32);
        QCOMPARE(c.n_kv_heads, 4);
        QCOMPARE(c.resolved_head_dim(), 64);
        QCOMPARE(c.seq_len, 2048);
        QCOMPARE(c.rope_theta, 10000.0f);
        QCOMPARE(c.norm_eps, 1e-5f);
        QCOMPARE(c.init_std, 0.02f);
        QVERIFY(!c.tied_embeddings);
        QVERIFY(!c.qk_norm);
        QVERIFY(c.norm == NormType::rmsnorm);
        QVERIFY(c.mlp == MlpType::swiglu);
    }

    void plainConfigUsesHuggingFaceDefaults()
    {
        // Only what transformers requires; the rest takes LlamaConfig's defaults.
        const json j = {{"model_type", "llama"}, {"vocab_size", 512}, {"hidden_size", 64},
                        {"intermediate_size", 172}, {"num_hidden_layers", 2}, {"num_attention_heads", 4}};
        const ModelConfig c = from_hf_config(j);
        QCOMPARE(c.n_kv_heads, 4);
        QCOMPARE(c.head_dim, 0);
        QCOMPARE(c.resolved_head_dim(), 16);
        QCOMPARE(c.seq_len, 2048);
        QCOMPARE(c.rope_theta, 10000.0f);
        QCOMPARE(c.norm_eps, 1e-6f);
        QVERIFY(!c.tied_embeddings);
        // architectures alone also identifies the family.
        json k = j;
        k.erase("model_type");
        k["architectures"] = {"LlamaForCausalLM"};
        QVERIFY(same(from_hf_config(k), c));
    }

    void readsPlainQwen3Config()
    {
        const json j = json::parse(R"({
            "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "attention_bias": false,
            "head_dim": 128, "hidden_act": "silu", "hidden_size": 1024, "intermediate_size": 3072,
            "max_position_embeddings": 40960, "num_attention_heads": 16, "num_hidden_layers": 28,
            "num_key_value_heads": 8, "rms_norm_eps": 1e-06, "rope_scaling": null, "rope_theta": 1000000,
            "tie_word_embeddings": true, "torch_dtype": "bfloat16", "vocab_size": 151936,
            "use_sliding_window": false, "sliding_window": null, "max_window_layers": 28
        })");
        const ModelConfig c = from_hf_config(j);
        QVERIFY(c.qk_norm);
        QCOMPARE(c.head_dim, 128);   // explicit: 16 × 128 ≠ 1024
        QCOMPARE(c.q_dim(), 2048);
        QCOMPARE(c.n_kv_heads, 8);
        QCOMPARE(c.rope_theta, 1e6f);
        QCOMPARE(c.seq_len, 40960);
        QVERIFY(c.tied_embeddings);
    }

    void missingKeysAreRefused_data()
    {
        QTest::addColumn<QString>("key");
        for (const char* key : {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                                "num_attention_heads"})
            QTest::newRow(key) << QString(key);
    }

    void missingKeysAreRefused()
    {
        QFETCH(QString, key);
        json j = tiny_llama();
        j.erase(key.toStdString());
        const std::string msg = error_of(j);
        std::string expected = "\"";   // appended piecewise: GCC 12 warns falsely on "x" + std::string&&
        expected += key.toStdString();
        expected += "\" is missing";
        QVERIFY2(msg.find(expected) != std::string::npos, msg.c_str());
        // null counts as missing too.
        j[key.toStdString()] = nullptr;
        QVERIFY(!error_of(j).empty());
    }

    void invalidValuesAreRefused_data()
    {
        QTest::addColumn<QByteArray>("patch");
        QTest::addColumn<QString>("problem");
        auto row = [](const char* name, const json& patch, const char* problem) {
            QTest::newRow(name) << QByteArray::fromStdString(patch.dump()) << QString(problem);
        };
        // Types.
        row("hidden_size as string", {{"hidden_size", "2048"}}, "\"hidden_size\" must be an integer");
        row("layers fractional", {{"num_hidden_layers", 2.5}}, "\"num_hidden_layers\" must be an integer");
        row("huge integer", {{"vocab_size", 1LL << 40}}, "\"vocab_size\" must be an integer");
        row("eps as string", {{"rms_norm_eps", "1e-5"}}, "\"rms_norm_eps\" must be a number");
        row("tie as int", {{"tie_word_embeddings", 1}}, "must be true or false");
        row("not llama", {{"model_type", "gpt2"}}, "model_type \"gpt2\" is not supported");
        row("unknown architecture", {{"model_type", nullptr}, {"architectures", {"MistralForCausalLM"}}},
            "is not supported");
        row("no family", {{"model_type", nullptr}, {"architectures", nullptr}}, "which model");
        // What Crucible's model cannot represent.
        row("attention bias", {{"attention_bias", true}}, "no biases");
        row("mlp bias", {{"mlp_bias", true}}, "no biases");
        row("rope scaling", {{"rope_scaling", {{"rope_type", "llama3"}, {"factor", 8.0}}}}, "rope_scaling");
        row("gated gelu", {{"hidden_act", "gelu"}}, "hidden_act \"gelu\"");
        row("bad crucible norm", {{"crucible", {{"norm", "batchnorm"}}}}, "crucible.norm");
        row("bad crucible mlp", {{"crucible", {{"mlp", "relu"}}}}, "crucible.mlp");
        row("unknown crucible key", {{"crucible", {{"dropout", 0.1}}}}, "crucible.dropout");
        row("act contradicts mlp", {{"crucible", {{"mlp", "gelu"}}}}, "contradicts");
        row("negative head_dim", {{"head_dim", -8}}, "\"head_dim\" must be positive");
        // Values ModelConfig::validate refuses.
        row("heads not divisible by kv heads", {{"num_attention_heads", 32}, {"num_key_value_heads", 5}},
            "must be divisible by n_kv_heads");
        row("width not divisible by heads", {{"hidden_size", 2050}}, "must be divisible by n_heads");
        row("odd head_dim", {{"head_dim", 63}}, "head_dim must be even");
        row("tiny vocabulary", {{"vocab_size", 100}}, "vocab_size must be between");
        row("zero layers", {{"num_hidden_layers", 0}}, "n_layers must be between");
        row("zero kv heads", {{"num_key_value_heads", 0}}, "n_kv_heads must be at least 1");
        row("negative eps", {{"rms_norm_eps", -1.0}}, "norm_eps");
        row("rope theta too small", {{"rope_theta", 0.5}}, "rope_theta");
    }

    void invalidValuesAreRefused()
    {
        QFETCH(QByteArray, patch);
        QFETCH(QString, problem);
        json j = tiny_llama();
        j.merge_patch(json::parse(patch.toStdString()));   // a null in the patch removes the key
        const std::string msg = error_of(j);
        QVERIFY2(!msg.empty(), "the invalid config was accepted");
        QVERIFY2(msg.find("config.json") != std::string::npos, msg.c_str());
        QVERIFY2(msg.find(problem.toStdString()) != std::string::npos, msg.c_str());
    }

    void notAnObjectIsRefused()
    {
        QVERIFY(error_of(json::array({1, 2})).find("JSON object") != std::string::npos);
        QVERIFY(error_of(json("llama")).find("JSON object") != std::string::npos);
    }
};

QTEST_APPLESS_MAIN(TestHfConfig)
#include "tst_hf_config.moc"
