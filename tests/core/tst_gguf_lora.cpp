// Fine-tunes as llama.cpp LoRA adapters: a PEFT adapter exported to GGUF has
// llama.cpp's metadata (general.type "adapter", adapter.type "lora",
// adapter.lora.alpha) and tensor names and shapes, and applying it the way
// llama.cpp does — W + (alpha / r)·B·A on the base's GGUF tensors — gives the
// GGUF of the merged model, tensor by tensor, which checks the rsLoRA scale
// and the RoPE row order of B for q and k. Llama and Qwen3 layouts.
#include "core/io/gguf.h"
#include "core/io/gguf_lora_export.h"
#include "core/model/lora.h"
#include "core/train/export_run.h"
#include "core/train/finetune.h"
#include "kernels/backend_factory.h"
#include "tests/support/test_support.h"
#include "tests/support/tiny_hf_model.h"

#include <QTemporaryDir>
#include <QTest>

#include <cmath>

using namespace crucible;
namespace fs = std::filesystem;

namespace {

// A PEFT adapter folder with random A and B (B non-zero, unlike a fresh init)
// on the model in `base`.
LoraConfig write_adapter(const fs::path& base, const fs::path& out, bool rslora)
{
    const BaseModel b = open_base_model(base);
    LoraConfig lora;
    lora.rank = 4;
    lora.alpha = 8.0f;
    lora.use_rslora = rslora;
    lora.targets = parse_lora_targets("all-linear", b.config);
    const auto backend = make_backend(BackendOptions{});
    LoraAdapters adapters(*backend, b.config, lora, false);
    std::vector<std::vector<float>> a, bs;
    uint64_t seed = 100;
    for (const LoraBlock& block : adapters.blocks()) {
        a.push_back(test::random_vector(size_t(lora.rank * block.in), seed++, 0.3f));
        bs.push_back(test::random_vector(size_t(block.out * lora.rank), seed++, 0.3f));
    }
    adapters.upload(a, bs);
    save_finetune_checkpoint(out, adapters, b.path.string(), Tokenizer::load(b.tokenizer_file), nullptr, nullptr);
    return lora;
}

} // namespace

class TestGgufLora : public QObject {
    Q_OBJECT
    QTemporaryDir m_dir;

    fs::path path(const std::string& name) const { return fs::path(m_dir.path().toStdString()) / name; }

private slots:
    void adapterAppliedAsLlamaCppDoesEqualsTheMergedExport_data()
    {
        QTest::addColumn<bool>("qwen3");
        QTest::addColumn<bool>("rslora");
        QTest::newRow("llama") << false << false;
        QTest::newRow("llama rsLoRA") << false << true;
        QTest::newRow("qwen3 rsLoRA") << true << true;
    }

    void adapterAppliedAsLlamaCppDoesEqualsTheMergedExport()
    {
        QFETCH(bool, qwen3);
        QFETCH(bool, rslora);
        const std::string tag = std::string(qwen3 ? "qwen3" : "llama") + (rslora ? "-rs" : "");
        test::TinyHfModel spec;
        spec.qwen3 = qwen3;
        test::write_tiny_hf_model(path(tag + "-base"), spec);
        const LoraConfig lora = write_adapter(path(tag + "-base"), path(tag + "-adapter"), rslora);

        const ExportResult r = export_run(path(tag + "-adapter"), ExportRequest{"gguf", "f32", path(tag + ".lora.gguf")});
        QVERIFY2(r.adapter, r.description.c_str());
        export_run(path(tag + "-base"), ExportRequest{"gguf", "f32", path(tag + ".base.gguf")});
        export_run(path(tag + "-adapter"), ExportRequest{"gguf", "f32", path(tag + ".merged.gguf"), true});

        const gguf::File adapter = gguf::File::read(path(tag + ".lora.gguf"));
        const gguf::File base = gguf::File::read(path(tag + ".base.gguf"));
        const gguf::File merged = gguf::File::read(path(tag + ".merged.gguf"));
        QCOMPARE(adapter.get_string("general.type"), std::string("adapter"));
        QCOMPARE(adapter.get_string("adapter.type"), std::string("lora"));
        QCOMPARE(adapter.get_string("general.architecture"), base.get_string("general.architecture"));
        // llama.cpp scales by alpha / r: alpha is written so that it gives our scale.
        const double alpha = adapter.get_number("adapter.lora.alpha");
        QCOMPARE(float(alpha / lora.rank), lora.scale());
        if (rslora) QCOMPARE(float(alpha), float(8.0 * std::sqrt(4.0)));

        const ModelConfig config = open_base_model(path(tag + "-base")).config;
        QCOMPARE(int(adapter.tensors().size()), 2 * 7 * config.n_layers);
        for (int layer = 0; layer < config.n_layers; ++layer) {
            for (const std::string& module : lora_module_names()) {
                const std::string name = gguf_base_tensor_name(module, layer);
                const gguf::TensorInfo* a = adapter.find_tensor(name + ".lora_a");
                const gguf::TensorInfo* b = adapter.find_tensor(name + ".lora_b");
                const gguf::TensorInfo* w = base.find_tensor(name);
                const gguf::TensorInfo* m = merged.find_tensor(name);
                QVERIFY2(a && b && w && m, name.c_str());
                // llama.cpp's checks: A [r, in] and B [out, r] against the base's [out, in].
                const int64_t out = w->shape[0], in = w->shape[1];
                QCOMPARE(a->shape, (std::vector<int64_t>{lora.rank, in}));
                QCOMPARE(b->shape, (std::vector<int64_t>{out, lora.rank}));
                const std::vector<float> av = adapter.to_f32(*a), bv = adapter.to_f32(*b);
                const std::vector<float> wv = base.to_f32(*w), mv = merged.to_f32(*m);
                double worst = 0.0;
                for (int64_t i = 0; i < out; ++i)
                    for (int64_t j = 0; j < in; ++j) {
                        double ba = 0.0;
                        for (int k = 0; k < lora.rank; ++k) ba += double(bv[size_t(i * lora.rank + k)]) * av[size_t(k * in + j)];
                        const double applied = wv[size_t(i * in + j)] + alpha / lora.rank * ba;
                        worst = std::max(worst, std::fabs(applied - mv[size_t(i * in + j)]));
                    }
                QVERIFY2(worst < 1e-5, (name + ": " + std::to_string(worst)).c_str());
            }
        }
    }

    void typeFollowsTheRequestAndHalfWhereBlocksDoNotFit()
    {
        test::write_tiny_hf_model(path("q8-base"), test::TinyHfModel{});
        write_adapter(path("q8-base"), path("q8-adapter"), false);
        export_run(path("q8-adapter"), ExportRequest{"gguf", "q8_0", path("q8.lora.gguf")});
        const gguf::File f = gguf::File::read(path("q8.lora.gguf"));
        for (const gguf::TensorInfo& t : f.tensors()) {
            // Rows of r = 4 values cannot hold a 32-value block.
            const bool fits = t.shape.back() % 32 == 0;
            QCOMPARE(int(t.type), int(fits ? gguf::TensorType::q8_0 : gguf::TensorType::f16));
        }
    }
};

QTEST_GUILESS_MAIN(TestGgufLora)
#include "tst_gguf_lora.moc"
