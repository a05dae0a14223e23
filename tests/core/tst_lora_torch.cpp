// A LoRA step against PyTorch: for tiny models the CPU engine's loss, last
// logits, adapter gradients and the adapters after one AdamW step match
// tests/python/lora_reference.py, which reads the base and the PEFT adapter
// files this engine writes and applies W + scale·B·A itself (float64).
#include "core/io/file_util.h"
#include "core/io/hf_config.h"
#include "core/io/peft_adapter.h"
#include "core/io/safetensors.h"
#include "core/model/lora.h"
#include "core/model/transformer.h"
#include "core/optim/optimizer.h"
#include "kernels/backend_factory.h"
#include "tests/support/test_support.h"

#include <nlohmann/json.hpp>

#include <QTemporaryDir>
#include <QTest>

#include <cmath>
#include <cstring>
#include <map>

using namespace crucible;
namespace fs = std::filesystem;

namespace {

// fp32 against float64, as tst_torch_parity.
constexpr double kTolerance = 1e-4;

struct LoraCase {
    std::string name;
    ModelConfig model;
    LoraConfig lora;
};

std::vector<LoraCase> cases()
{
    ModelConfig c;
    c.vocab_size = 300;
    c.d_model = 32;
    c.n_layers = 2;
    c.n_heads = 4;
    c.n_kv_heads = 2;
    c.ff_dim = 48;
    c.seq_len = 32;
    c.rope_theta = 500.0f;
    c.init_std = 0.1f;
    LoraConfig all;
    all.rank = 4;
    all.alpha = 8.0f;
    all.targets = parse_lora_targets("all-linear", c);

    ModelConfig alt = c;
    alt.norm = NormType::layernorm;
    alt.mlp = MlpType::gelu;
    alt.qk_norm = true;
    alt.tied_embeddings = false;
    alt.head_dim = 12;   // q_dim 48 ≠ d_model
    LoraConfig attention;
    attention.rank = 3;
    attention.alpha = 5.0f;
    attention.use_rslora = true;
    attention.targets = parse_lora_targets("q,v,o,down", alt);
    return {{"swiglu-all-linear", c, all}, {"layernorm-gelu-qknorm-rslora", alt, attention}};
}

std::vector<double> f64(const SafetensorsReader& r, const std::string& name)
{
    const SafetensorsEntry* e = r.find(name);
    if (!e || e->dtype != "F64") throw Error("reference output has no F64 tensor " + name);
    std::vector<double> v(size_t(e->numel()));
    std::memcpy(v.data(), r.raw(*e), v.size() * sizeof(double));
    return v;
}

struct CppResult {
    double loss = 0;
    std::vector<float> logits;
    std::map<std::string, std::vector<float>> grads, stepped;
};

// A and B of every block in PEFT's shapes, from a host copy of the store.
std::map<std::string, std::vector<float>> peft_tensors(const LoraAdapters& lora, const std::vector<float>& store)
{
    std::map<std::string, std::vector<float>> out;
    const int64_t r = lora.config().rank;
    for (const LoraBlock& b : lora.blocks()) {
        const float* a = store.data() + b.a->offset;
        const float* bb = store.data() + b.b->offset + b.row_begin * r;
        out[b.a->name] = std::vector<float>(a, a + r * b.in);
        out[b.b->name] = std::vector<float>(bb, bb + r * b.out);
    }
    return out;
}

} // namespace

class TestLoraTorch : public QObject {
    Q_OBJECT

private slots:
    void initTestCase()
    {
        if (!test::python_has_torch()) QSKIP("no PyTorch for /usr/bin/python3 (install python3-torch)");
        QVERIFY(m_dir.isValid());
        m_be = make_backend(BackendOptions{});
        std::string folders;
        for (const auto& lc : cases()) {
            const fs::path folder = fs::path(m_dir.path().toStdString()) / lc.name;
            fs::create_directories(folder);
            m_results[lc.name] = run_cpp(lc, folder);
            folders += " '" + folder.string() + "'";
        }
        const fs::path script = test::source_dir() / "tests" / "python" / "lora_reference.py";
        std::string output;
        const int rc = test::run_command(test::python3().string() + " '" + script.string() + "'" + folders, &output);
        QVERIFY2(rc == 0, output.c_str());
    }

    void stepMatchesPyTorch_data()
    {
        QTest::addColumn<QString>("name");
        for (const auto& lc : cases()) QTest::newRow(lc.name.c_str()) << QString::fromStdString(lc.name);
    }

    void stepMatchesPyTorch()
    {
        QFETCH(QString, name);
        const std::string n = name.toStdString();
        const CppResult& cpp = m_results.at(n);
        const SafetensorsReader ref(fs::path(m_dir.path().toStdString()) / n / "reference.safetensors");
        const double loss = f64(ref, "loss").at(0);
        QVERIFY2(std::fabs(cpp.loss - loss) <= kTolerance * std::fabs(loss),
                 qPrintable(QString("loss %1 vs PyTorch %2").arg(cpp.loss, 0, 'g', 10).arg(loss, 0, 'g', 10)));
        const double logit_err = test::relative_error(cpp.logits, f64(ref, "logits"));
        QVERIFY2(logit_err <= kTolerance, qPrintable(QString("logits: relative error %1").arg(logit_err)));
        double worst_grad = 0, worst_step = 0;
        for (const auto& [tensor, grad] : cpp.grads) {
            const double g = test::relative_error(grad, f64(ref, "grad." + tensor));
            QVERIFY2(g <= kTolerance, qPrintable(QString("%1: gradient relative error %2").arg(tensor.c_str()).arg(g)));
            const double s = test::relative_error(cpp.stepped.at(tensor), f64(ref, "step." + tensor));
            QVERIFY2(s <= kTolerance, qPrintable(QString("%1: after AdamW, relative error %2").arg(tensor.c_str()).arg(s)));
            worst_grad = std::max(worst_grad, g);
            worst_step = std::max(worst_step, s);
        }
        QCOMPARE(ref.entries().size(), 2 + 2 * cpp.grads.size());
        qInfo("%s: loss %.8f, logits %.1e, worst gradient %.1e, worst tensor after AdamW %.1e", n.c_str(), loss,
              logit_err, worst_grad, worst_step);
    }

private:
    CppResult run_cpp(const LoraCase& lc, const fs::path& folder)
    {
        const ModelConfig& c = lc.model;
        ParamStore base(*m_be, c, false);
        base.initialize(1234);
        test::perturb_vectors(base, 99, 0.2f);
        const std::vector<float> host = base.download_master();
        SafetensorsWriter weights;
        for (const auto& e : base.layout().entries()) weights.add_f32(e.name, e.dims(), host.data() + e.offset);
        weights.write(folder / "model.safetensors");
        write_file_atomic(folder / "config.json", to_hf_config(c, 1, 2).dump(2));

        // PEFT's initialisation for A; B nonzero, or A's gradient would be zero.
        LoraAdapters lora(*m_be, c, lc.lora, true);
        lora.initialize(5);
        std::vector<std::vector<float>> a, b;
        uint64_t seed = 300;
        for (const LoraBlock& blk : lora.blocks()) {
            a.push_back(lora.download_a(blk));
            b.push_back(test::random_vector(size_t(lc.lora.rank * blk.out), seed++, 0.05f));
        }
        lora.upload(a, b);
        write_peft_adapter(folder, lora, folder.string());

        const int64_t B = 2, T = 11, n = B * T;
        const auto tokens = test::random_ids(size_t(n), c.vocab_size, 7);
        const auto targets = test::random_ids(size_t(n), c.vocab_size, 8);
        SafetensorsWriter batch;
        batch.add("tokens", "I32", {B, T}, tokens.data(), size_t(n) * 4);
        batch.add("targets", "I32", {B, T}, targets.data(), size_t(n) * 4);
        batch.write(folder / "batch.safetensors");

        OptimizerConfig oc;
        oc.lr = 1e-2f;
        oc.beta1 = 0.9f;
        oc.beta2 = 0.99f;
        oc.eps = 1e-8f;
        oc.weight_decay = 0.1f;
        oc.grad_clip = 0.0f;
        write_file_atomic(folder / "optimizer.json",
                          nlohmann::json{{"lr", oc.lr}, {"beta1", oc.beta1}, {"beta2", oc.beta2}, {"eps", oc.eps},
                                         {"weight_decay", oc.weight_decay}}
                              .dump());

        CppResult result;
        Transformer model(base, B, T, true, &lora);
        model.last_logits(tokens.data(), B, T, result.logits);
        lora.store().zero_grads();
        result.loss = model.train_micro_batch(tokens.data(), targets.data(), B, T, 1.0f / float(n)).mean();
        result.grads = peft_tensors(lora, lora.store().download_grads());
        Optimizer opt(lora.store(), oc);
        opt.step(1.0);
        result.stepped = peft_tensors(lora, lora.store().download_master());
        return result;
    }

    QTemporaryDir m_dir;
    std::unique_ptr<Backend> m_be;
    std::map<std::string, CppResult> m_results;
};

QTEST_APPLESS_MAIN(TestLoraTorch)
#include "tst_lora_torch.moc"
