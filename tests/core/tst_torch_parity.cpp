// Parity with PyTorch: for several tiny configurations the CPU model's loss and
// every weight gradient match tests/python/torch_reference.py, an independent
// float64 implementation that reads the same model.safetensors and config.json
// this engine writes. A disagreement means one of the two misreads the model
// of core/model/transformer.h (RoPE pairing, GQA grouping, QK-norm order, norm placement, tied head...).
#include "core/io/file_util.h"
#include "core/io/hf_config.h"
#include "core/io/safetensors.h"
#include "core/model/transformer.h"
#include "kernels/backend_factory.h"
#include "tests/support/test_support.h"

#include <QTest>

#include <cmath>
#include <cstring>
#include <map>

using namespace crucible;
namespace fs = std::filesystem;

namespace {

// fp32 against float64: the differences are rounding in sums of a few hundred
// terms, around 1e-6; a convention error is orders of magnitude larger.
constexpr double kTolerance = 1e-4;

struct ParityCase {
    std::string name;
    ModelConfig config;
    int64_t batch = 2, seq = 8;
};

ModelConfig tiny(const std::string& name)
{
    ModelConfig c;
    c.name = name;
    c.vocab_size = 300;
    c.d_model = 32;
    c.n_layers = 2;
    c.n_heads = 4;
    c.n_kv_heads = 2;
    c.ff_dim = 48;
    c.seq_len = 32;
    c.rope_theta = 500.0f;   // small theta: positions 0..16 turn every pair through a visible angle
    // Larger than the training default so that attention is far from uniform
    // and the nonlinearities work away from their linear regime.
    c.init_std = 0.1f;
    return c;
}

std::vector<ParityCase> parity_cases()
{
    std::vector<ParityCase> cases;
    cases.push_back({"gqa-4-2", tiny("gqa-4-2")});

    ParityCase mha{"mha", tiny("mha")};
    mha.config.n_kv_heads = 4;
    cases.push_back(mha);

    ParityCase mqa{"mqa", tiny("mqa")};
    mqa.config.n_kv_heads = 1;
    cases.push_back(mqa);

    ParityCase qk{"qk-norm", tiny("qk-norm")};
    qk.config.qk_norm = true;
    cases.push_back(qk);

    ParityCase ln{"layernorm-gelu", tiny("layernorm-gelu")};
    ln.config.norm = NormType::layernorm;
    ln.config.mlp = MlpType::gelu;
    cases.push_back(ln);

    ParityCase untied{"untied", tiny("untied")};
    untied.config.tied_embeddings = false;
    cases.push_back(untied);

    // Odd sizes: nothing a multiple of a SIMD width or a tile.
    ParityCase odd{"odd-sizes", tiny("odd-sizes")};
    odd.config.d_model = 48;
    odd.config.n_heads = 4;
    odd.config.n_kv_heads = 2;
    odd.config.head_dim = 12;
    odd.config.ff_dim = 100;
    odd.config.n_layers = 3;
    odd.seq = 17;
    odd.batch = 3;
    cases.push_back(odd);

    // Everything at once, with q_dim (6 × 12 = 72) wider than d_model (48).
    ParityCase all{"wide-heads-all-options", tiny("wide-heads-all-options")};
    all.config.d_model = 48;
    all.config.n_heads = 6;
    all.config.n_kv_heads = 3;
    all.config.head_dim = 12;
    all.config.ff_dim = 36;
    all.config.qk_norm = true;
    all.config.norm = NormType::layernorm;
    all.config.mlp = MlpType::gelu;
    all.config.tied_embeddings = false;
    all.seq = 13;
    cases.push_back(all);
    return cases;
}

std::vector<int64_t> dims(const Shape& s)
{
    return std::vector<int64_t>(s.dims.begin(), s.dims.begin() + s.rank);
}

std::vector<double> f64_tensor(const SafetensorsReader& r, const std::string& name)
{
    const SafetensorsEntry* e = r.find(name);
    if (!e || e->dtype != "F64") throw Error("reference output has no F64 tensor " + name);
    std::vector<double> v(size_t(e->numel()));
    std::memcpy(v.data(), r.raw(*e), v.size() * sizeof(double));
    return v;
}

// What the C++ side computed for one case, kept for the comparison.
struct CppResult {
    double mean_loss = 0;
    std::map<std::string, std::vector<float>> grads;
};

} // namespace

class TestTorchParity : public QObject {
    Q_OBJECT

private slots:
    void initTestCase()
    {
        if (!test::python_has_torch()) QSKIP("no PyTorch for /usr/bin/python3 (install python3-torch)");
        QVERIFY(m_dir.isValid());
        m_backend = make_backend(BackendOptions{});

        // The C++ side of every case first, then one interpreter start for all.
        std::string folders;
        for (const auto& pc : parity_cases()) {
            const fs::path folder = fs::path(m_dir.path().toStdString()) / pc.name;
            fs::create_directories(folder);
            m_results[pc.name] = run_cpp(pc, folder);
            folders += " '" + folder.string() + "'";
        }
        const fs::path script = test::source_dir() / "tests" / "python" / "torch_reference.py";
        std::string output;
        const int rc = test::run_command(test::python3().string() + " '" + script.string() + "'" + folders, &output);
        QVERIFY2(rc == 0, output.c_str());
    }

    void lossAndGradientsMatch_data()
    {
        QTest::addColumn<QString>("name");
        for (const auto& pc : parity_cases()) QTest::newRow(pc.name.c_str()) << QString::fromStdString(pc.name);
    }

    void lossAndGradientsMatch()
    {
        QFETCH(QString, name);
        const std::string case_name = name.toStdString();
        const CppResult& cpp = m_results.at(case_name);
        const SafetensorsReader ref(fs::path(m_dir.path().toStdString()) / case_name / "reference.safetensors");

        const double ref_loss = f64_tensor(ref, "loss").at(0);
        const double loss_error = std::fabs(cpp.mean_loss - ref_loss) / std::fabs(ref_loss);
        QVERIFY2(loss_error <= kTolerance,
                 qPrintable(QString("loss %1 vs PyTorch %2").arg(cpp.mean_loss, 0, 'g', 10).arg(ref_loss, 0, 'g', 10)));

        // The reference names exactly the tensors the layout has, plus "loss".
        QCOMPARE(ref.entries().size(), cpp.grads.size() + 1);
        double worst = 0;
        std::string worst_name;
        for (const auto& [tensor, grad] : cpp.grads) {
            const std::vector<double> expected = f64_tensor(ref, tensor);
            double norm = 0;
            for (double g : expected) norm += g * g;
            QVERIFY2(norm > 0, ("the reference gradient of " + tensor + " is zero: the test would prove nothing").c_str());
            const double err = test::relative_error(grad, expected);
            if (!(err <= worst)) { worst = err; worst_name = tensor; }
            QVERIFY2(err <= kTolerance,
                     qPrintable(QString("%1: relative error %2").arg(tensor.c_str()).arg(err, 0, 'g', 3)));
        }
        qInfo("%s: loss %.8f (relative error %.2e), worst gradient %s at %.2e", case_name.c_str(), ref_loss,
              loss_error, worst_name.c_str(), worst);
    }

private:
    CppResult run_cpp(const ParityCase& pc, const fs::path& folder)
    {
        const ModelConfig& c = pc.config;
        ParamStore params(*m_backend, c, true);
        params.initialize(1234);
        // Norm weights start at 1 and biases at 0; move them away so that a
        // norm reading the wrong weight, or none, cannot go unnoticed.
        std::vector<float> host = params.download_master();
        uint64_t seed = 99;
        for (const auto& e : params.layout().entries()) {
            if (e.is_matrix()) continue;
            const auto noise = test::random_vector(size_t(e.numel()), seed++, 0.2f);
            for (int64_t i = 0; i < e.numel(); ++i) host[size_t(e.offset + i)] += noise[size_t(i)];
        }
        params.upload_master(host);

        SafetensorsWriter weights;
        for (const auto& e : params.layout().entries())
            weights.add_f32(e.name, dims(e.shape), host.data() + e.offset);
        weights.write(folder / "model.safetensors");
        write_file_atomic(folder / "config.json", to_hf_config(c, 1, 2).dump(2));

        const size_t n = size_t(pc.batch * pc.seq);
        const auto tokens = test::random_ids(n, c.vocab_size, 7);
        const auto targets = test::random_ids(n, c.vocab_size, 8);
        SafetensorsWriter batch;
        batch.add("tokens", "I32", {pc.batch, pc.seq}, tokens.data(), n * 4);
        batch.add("targets", "I32", {pc.batch, pc.seq}, targets.data(), n * 4);
        batch.write(folder / "batch.safetensors");

        Transformer model(params, pc.batch, pc.seq, true);
        params.zero_grads();
        const LossSum sum =
            model.train_micro_batch(tokens.data(), targets.data(), pc.batch, pc.seq, 1.0f / float(n));

        CppResult result;
        result.mean_loss = sum.mean();
        const std::vector<float> grads = params.download_grads();
        for (const auto& e : params.layout().entries())
            result.grads[e.name] = std::vector<float>(grads.begin() + e.offset, grads.begin() + e.offset + e.numel());
        return result;
    }

    QTemporaryDir m_dir;
    std::unique_ptr<Backend> m_backend;
    std::map<std::string, CppResult> m_results;
};

QTEST_APPLESS_MAIN(TestTorchParity)
#include "tst_torch_parity.moc"
