// GGUF exports run in llama.cpp itself — the build the npm package
// node-llama-cpp ships prebuilt for linux-x64, installed into the build tree
// by tests/npm/install_clients.sh (skipped when npm or the registry is not
// there). llama.cpp's tokens for a prompt equal Crucible's, for Crucible's own
// tokenizers and for LLaMA's (dummy prefix); an f32 export continues a prompt
// greedily with the same 64 tokens as Crucible, as "llama" and as "qwen3";
// q8_0 and f16 exports report how many of the 64 agree. A fine-tune exported
// as a GGUF LoRA adapter and applied by llama.cpp over the base's f32 export
// continues as Crucible's merged model does.
#include "core/generate/generator.h"
#include "core/io/file_util.h"
#include "core/io/gguf_export.h"
#include "core/model/lora.h"
#include "core/train/export_run.h"
#include "core/train/finetune.h"
#include "core/train/load_model.h"
#include "core/model/param_store.h"
#include "kernels/backend_factory.h"
#include "tests/support/test_support.h"
#include "tests/support/tiny_hf_model.h"

#include <QTemporaryDir>
#include <QTest>

#include <nlohmann/json.hpp>

namespace fs = std::filesystem;
using namespace crucible;
using nlohmann::json;

namespace {

constexpr int kSteps = 64;
const std::string kPrompt = "ROMEO:\nBut soft, what light through yonder window breaks?\nJULIET:";

std::vector<int32_t> crucible_greedy(const test::TinyHfModel& spec, const std::vector<float>& weights,
                                     const std::vector<int32_t>& prompt)
{
    auto backend = make_backend(BackendOptions{});
    ParamStore params(*backend, test::tiny_model_config(spec), false);
    params.upload_master(weights);
    Generator generator(params, test::tiny_tokenizer(spec.space_prefix), 1, params.config().seq_len);
    GenerationRequest request;
    request.prompts = {prompt};
    request.max_new_tokens = kSteps;
    request.sampling.temperature = 0.0f;
    request.stop_at_eos = false;
    std::vector<int32_t> out;
    generator.generate(request, [&](const TokenEvent& e) {
        out.push_back(e.token);
        return true;
    });
    return out;
}

// A PEFT adapter on every projection of the model in `base`, with A and B
// random (B non-zero, so the adapter changes what the model says).
void write_adapter(const fs::path& base, const fs::path& out)
{
    const BaseModel b = open_base_model(base);
    LoraConfig lora;
    lora.rank = 4;
    lora.alpha = 8.0f;
    lora.use_rslora = true;   // the exported alpha must carry the √r
    lora.targets = parse_lora_targets("all-linear", b.config);
    auto backend = make_backend(BackendOptions{});
    LoraAdapters adapters(*backend, b.config, lora, false);
    std::vector<std::vector<float>> a, bs;
    uint64_t seed = 40;
    for (const LoraBlock& block : adapters.blocks()) {
        a.push_back(test::random_vector(size_t(lora.rank * block.in), seed++, 0.2f));
        bs.push_back(test::random_vector(size_t(block.out * lora.rank), seed++, 0.2f));
    }
    adapters.upload(a, bs);
    save_finetune_checkpoint(out, adapters, b.path.string(), Tokenizer::load(b.tokenizer_file), nullptr, nullptr);
}

} // namespace

class TestLlamaCpp : public QObject {
    Q_OBJECT

private:
    QTemporaryDir m_tmp;
    struct Case {
        std::string name;
        test::TinyHfModel spec;
        const char* type;
        std::vector<int32_t> prompt, ours;   // Crucible's tokens for the prompt, and its greedy continuation
        json theirs;                          // what llama.cpp said
        bool lora = false;                    // applied with a LoRA adapter (Crucible: merged)
    };
    std::vector<Case> m_cases;
    fs::path path(const std::string& name) const { return fs::path(m_tmp.path().toStdString()) / name; }

    const Case& find(const std::string& name) const
    {
        for (const Case& c : m_cases)
            if (c.name == name) return c;
        qFatal("no case %s", name.c_str());
    }

    // How many of the greedy tokens agree, in a row from the start.
    int agreement(const Case& c) const
    {
        const auto theirs = c.theirs["continuation"].get<std::vector<int32_t>>();
        int agree = 0;
        while (agree < kSteps && size_t(agree) < theirs.size() && c.ours[size_t(agree)] == theirs[size_t(agree)]) ++agree;
        qInfo("%s: llama.cpp and Crucible agree on the first %d of %d greedy tokens", c.name.c_str(), agree, kSteps);
        return agree;
    }

    void checkTokens(const Case& c)
    {
        QCOMPARE(c.theirs["tokens"].get<std::vector<int32_t>>(), c.prompt);
        QCOMPARE(c.theirs["architecture"].is_string() ? c.theirs["architecture"].get<std::string>() : std::string(),
                 std::string(c.spec.qwen3 ? "qwen3" : "llama"));
        QCOMPARE(c.theirs["continuation"].size(), size_t(kSteps));
    }

private slots:
    // Every export is made first, then llama.cpp runs them all in one process.
    void initTestCase()
    {
        const fs::path dest = test::binary_dir() / "npm";
        std::string out;
        if (test::run_command("bash '" + (test::source_dir() / "tests/npm/install_clients.sh").string() + "' '" +
                                  dest.string() + "' llama 2>&1",
                              &out) != 0)
            QSKIP(("node-llama-cpp could not be installed, so llama.cpp is not here to check against:\n" + out).c_str());
        // ES modules resolve packages from the script's own folder.
        const fs::path script = dest / "llama" / "llama_cpp_check.mjs";
        fs::copy_file(test::source_dir() / "tests/npm/llama_cpp_check.mjs", script, fs::copy_options::overwrite_existing);

        const auto spec = [](bool qwen3, bool prefix) {
            test::TinyHfModel s;
            s.qwen3 = qwen3;
            s.space_prefix = prefix;
            s.tied = qwen3;
            return s;
        };
        m_cases = {{"llama-f32", spec(false, false), "f32"},
                   {"llama-prefix-f32", spec(false, true), "f32"},
                   {"qwen3-f32", spec(true, false), "f32"},
                   {"llama-prefix-q8_0", spec(false, true), "q8_0"},
                   {"llama-prefix-f16", spec(false, true), "f16"}};
        m_cases.push_back({"llama-lora-f32", spec(false, false), "f32"});
        m_cases.back().lora = true;
        json jobs = json::array();
        for (Case& c : m_cases) {
            const auto written = test::write_tiny_hf_model(path(c.name), c.spec);
            const Tokenizer& tokenizer = test::tiny_tokenizer(c.spec.space_prefix);
            GgufExportOptions o;
            o.type = parse_gguf_type(c.type);
            export_gguf(test::tiny_model_config(c.spec), tokenizer, written.weights, o, path(c.name + ".gguf"));
            c.prompt = tokenizer.encode(kPrompt);
            json job = {{"model", path(c.name + ".gguf").string()}, {"text", kPrompt}, {"ids", c.prompt}, {"steps", kSteps}};
            std::vector<float> weights = written.weights;
            if (c.lora) {
                write_adapter(path(c.name), path(c.name + "-adapter"));
                QVERIFY(export_run(path(c.name + "-adapter"), ExportRequest{"gguf", "f32", path(c.name + ".lora.gguf")})
                            .adapter);
                weights = load_model(path(c.name + "-adapter"), BackendOptions{}).params->download_master();
                job["lora"] = path(c.name + ".lora.gguf").string();
            }
            c.ours = crucible_greedy(c.spec, weights, c.prompt);
            QCOMPARE(int(c.ours.size()), kSteps);
            jobs.push_back(job);
        }
        write_file_atomic(path("jobs.json"), jobs.dump());
        QCOMPARE(test::run_command("node '" + script.string() + "' '" + path("jobs.json").string() + "' 2>&1", &out), 0);
        // The JSON is the last line; llama.cpp may log before it.
        const size_t start = out.rfind("\n[");
        const json results = json::parse(start == std::string::npos ? out : out.substr(start + 1), nullptr, false);
        QVERIFY2(results.is_array() && results.size() == m_cases.size(), out.c_str());
        for (size_t i = 0; i < m_cases.size(); ++i) m_cases[i].theirs = results[i];
    }

    void f32IsTokenForToken_data()
    {
        QTest::addColumn<QString>("name");
        QTest::newRow("llama, Crucible's tokenizer") << QString("llama-f32");
        QTest::newRow("llama, LLaMA's tokenizer (dummy prefix)") << QString("llama-prefix-f32");
        QTest::newRow("qwen3 (QK-norm, wide heads)") << QString("qwen3-f32");
        QTest::newRow("llama + LoRA adapter (llama.cpp applies it, Crucible merges it)") << QString("llama-lora-f32");
    }

    void f32IsTokenForToken()
    {
        QFETCH(QString, name);
        const Case& c = find(name.toStdString());
        checkTokens(c);
        if (QTest::currentTestFailed()) return;
        QCOMPARE(agreement(c), kSteps);
        // The adapter's case is the llama case's base with the adapter: it must say something else.
        if (c.lora) QVERIFY(c.ours != find("llama-f32").ours);
    }

    void quantizedAgreement()
    {
        // Reported, not required: rounding the weights may flip a close pick.
        for (const char* name : {"llama-prefix-q8_0", "llama-prefix-f16"}) {
            const Case& c = find(name);
            checkTokens(c);
            if (QTest::currentTestFailed()) return;
            QVERIFY(agreement(c) >= 0);
        }
    }
};

QTEST_GUILESS_MAIN(TestLlamaCpp)
#include "tst_llama_cpp.moc"
