// NF4 quantization as bitsandbytes stores it: the level table and the
// dynamic 8-bit code, nibble order, block absmax, double quantization, on
// crafted tensors (zeros, constant blocks, exact levels, ties, a partial last
// block, an odd length) and against tests/python/nf4_reference.py, an
// independent implementation of the same definition; non-finite weights
// refused.
#include "core/io/safetensors.h"
#include "core/quant/nf4.h"
#include "kernels/error.h"
#include "tests/support/test_support.h"

#include <QTemporaryDir>
#include <QTest>

#include <cmath>
#include <cstring>
#include <limits>

using namespace crucible;
namespace fs = std::filesystem;

namespace {

std::vector<double> f64(const SafetensorsReader& r, const std::string& name)
{
    const SafetensorsEntry* e = r.find(name);
    if (!e || e->dtype != "F64") throw Error("reference output has no F64 tensor " + name);
    std::vector<double> v(size_t(e->numel()));
    std::memcpy(v.data(), r.raw(*e), v.size() * sizeof(double));
    return v;
}

uint8_t nibble(const Nf4Tensor& t, int64_t i)
{
    const uint8_t b = t.packed[size_t(i / 2)];
    return i % 2 == 0 ? b >> 4 : b & 0xF;
}

} // namespace

class TestNf4 : public QObject {
    Q_OBJECT

private slots:
    void tables()
    {
        QCOMPARE(kNf4Levels[0], -1.0f);
        QCOMPARE(kNf4Levels[7], 0.0f);
        QCOMPARE(kNf4Levels[15], 1.0f);
        for (size_t i = 0; i + 1 < 16; ++i) QVERIFY(kNf4Levels[i] < kNf4Levels[i + 1]);
        const auto& code = dynamic_code_signed();
        for (size_t i = 0; i + 1 < 256; ++i) QVERIFY(code[i] <= code[i + 1]);
        QCOMPARE(code[255], 1.0f);
        QVERIFY(std::count(code.begin(), code.end(), 0.0f) == 1);
        QVERIFY(std::fabs(code[0] + 0.9928f) < 1e-3f);   // the largest negative midpoint, (0.9857 + 1) / 2
        // Each level quantizes to itself; midpoints go to the lower level.
        for (uint8_t i = 0; i < 16; ++i) QCOMPARE(nf4_index(kNf4Levels[i]), i);
        const float mid = float((double(kNf4Levels[9]) + double(kNf4Levels[10])) / 2.0);
        QCOMPARE(nf4_index(mid), uint8_t(9));
        QCOMPARE(nf4_index(std::nextafter(mid, 1.0f)), uint8_t(10));
    }

    void craftedTensors()
    {
        // Block 0: zeros. Block 1: a constant. Block 2: the levels times 3,
        // in order, so the nibbles read 0..15 four times. Block 3: 37
        // weights (partial), an odd count overall.
        std::vector<float> w(64 * 3 + 37, 0.0f);
        for (int i = 64; i < 128; ++i) w[size_t(i)] = -0.75f;
        for (int i = 0; i < 64; ++i) w[size_t(128 + i)] = 3.0f * kNf4Levels[size_t(i % 16)];
        for (int i = 0; i < 37; ++i) w[size_t(192 + i)] = 0.01f * float(i - 18);
        for (bool dq : {false, true}) {
            const Nf4Tensor t = nf4_quantize(w.data(), int64_t(w.size()), dq);
            QCOMPARE(t.blocks(), int64_t(4));
            QCOMPARE(t.packed.size(), size_t((w.size() + 1) / 2));
            std::vector<float> back(w.size());
            nf4_dequantize(t, back.data());
            for (int i = 0; i < 64; ++i) QCOMPARE(nibble(t, i), uint8_t(7));
            for (int i = 64; i < 128; ++i) QCOMPARE(nibble(t, i), uint8_t(0));
            for (int i = 0; i < 64; ++i) QCOMPARE(nibble(t, 128 + i), uint8_t(i % 16));
            // Element 2j in the high nibble: levels 0 and 1 make the byte 0x01.
            QCOMPARE(t.packed[64], uint8_t(0x01));
            QCOMPARE(t.packed[71], uint8_t(0xEF));
            if (!dq) {
                QCOMPARE(t.absmax[0], 0.0f);
                QCOMPARE(t.absmax[1], 0.75f);
                QCOMPARE(t.absmax[2], 3.0f);
                for (int i = 0; i < 64; ++i) QCOMPARE(back[size_t(i)], 0.0f);
                for (int i = 64; i < 128; ++i) QCOMPARE(back[size_t(i)], -0.75f);
                for (int i = 128; i < 192; ++i) QCOMPARE(back[size_t(i)], w[size_t(i)]);
                QCOMPARE(t.bits_per_weight(), (double(t.packed.size()) * 8 + 4 * 32) / double(w.size()));
            } else {
                // The scales went through 8 bits: within the code's resolution.
                for (int64_t b = 0; b < 4; ++b) {
                    const float exact = b == 0 ? 0.0f : b == 1 ? 0.75f : b == 2 ? 3.0f : 0.18f;
                    QVERIFY2(std::fabs(t.block_absmax(b) - exact) <= 0.02f * 3.0f, qPrintable(QString::number(b)));
                }
            }
        }
        // Non-finite weights are refused.
        for (float bad : {std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                          std::numeric_limits<float>::quiet_NaN()}) {
            std::vector<float> v(100, 0.5f);
            v[70] = bad;
            QVERIFY_THROWS_EXCEPTION(Error, nf4_quantize(v.data(), int64_t(v.size()), false));
        }
    }

    // Gaussian weights: ~4.127 bits per weight with double quantization and
    // the error NF4 is known for (a relative MSE around 1%).
    void gaussianWeights()
    {
        const int64_t n = 64 * 256 * 4;
        const auto w = test::random_vector(size_t(n), 5, 0.02f);
        for (bool dq : {false, true}) {
            const Nf4Tensor t = nf4_quantize(w.data(), n, dq);
            std::vector<float> back(static_cast<size_t>(n));
            nf4_dequantize(t, back.data());
            double err = 0, energy = 0;
            for (int64_t i = 0; i < n; ++i) {
                err += double(back[size_t(i)] - w[size_t(i)]) * (back[size_t(i)] - w[size_t(i)]);
                energy += double(w[size_t(i)]) * w[size_t(i)];
            }
            qInfo("%s: %.4f bits/weight, relative MSE %.4f", dq ? "double quant" : "plain", t.bits_per_weight(),
                  err / energy);
            QVERIFY(err / energy < 0.02);
            QVERIFY(std::fabs(t.bits_per_weight() - (dq ? 4.127 : 4.5)) < 1e-3);
        }
    }

    void matchesReference()
    {
        if (!test::python_has_torch()) QSKIP("no PyTorch for /usr/bin/python3 (install python3-torch)");
        QTemporaryDir tmp;
        struct Case {
            std::string name;
            std::vector<float> w;
            bool dq;
        };
        std::vector<Case> cases;
        auto gaussian = test::random_vector(size_t(64 * 300 + 7), 11, 0.05f);   // 2 absmax groups, a partial block
        gaussian[100] = 0.0f;
        cases.push_back({"plain", gaussian, false});
        cases.push_back({"double-quant", gaussian, true});
        std::vector<float> mixed(64 * 20, 0.0f);
        for (size_t i = 64; i < mixed.size(); ++i) mixed[i] = float(int(i % 64) - 32) * 1e-3f * float(i / 64);
        cases.push_back({"ramps-and-zeros", mixed, true});
        std::string folders;
        for (const Case& c : cases) {
            const fs::path dir = fs::path(tmp.path().toStdString()) / c.name;
            fs::create_directories(dir);
            SafetensorsWriter in;
            in.add_f32("weights", {int64_t(c.w.size())}, c.w.data());
            const float flag = c.dq ? 1.0f : 0.0f;
            in.add_f32("double_quant", {1}, &flag);
            in.write(dir / "input.safetensors");
            folders += " '" + dir.string() + "'";
        }
        std::string out;
        const fs::path script = test::source_dir() / "tests" / "python" / "nf4_reference.py";
        QVERIFY2(test::run_command(test::python3().string() + " '" + script.string() + "'" + folders, &out) == 0,
                 out.c_str());
        for (const Case& c : cases) {
            const SafetensorsReader ref(fs::path(tmp.path().toStdString()) / c.name / "reference.safetensors");
            const auto code = f64(ref, "code");
            // The code as torch.linspace computes it, within its last bits
            // (bitsandbytes saves the code it used beside the quantized scales).
            for (size_t i = 0; i < 256; ++i)
                QVERIFY2(std::fabs(double(dynamic_code_signed()[i]) - code[i]) <= 2e-7 * std::fabs(code[i]),
                         qPrintable(QString("code[%1]: %2 vs %3").arg(i).arg(dynamic_code_signed()[i], 0, 'g', 9).arg(code[i], 0, 'g', 9)));
            const Nf4Tensor t = nf4_quantize(c.w.data(), int64_t(c.w.size()), c.dq);
            const auto packed = f64(ref, "packed");
            QCOMPARE(packed.size(), t.packed.size());
            for (size_t i = 0; i < packed.size(); ++i)
                QVERIFY2(double(t.packed[i]) == packed[i], qPrintable(QString("%1 byte %2").arg(c.name.c_str()).arg(i)));
            if (c.dq) {
                const auto codes = f64(ref, "absmax_codes"), scales = f64(ref, "absmax_scales");
                for (size_t i = 0; i < codes.size(); ++i) QCOMPARE(double(t.absmax_codes[i]), codes[i]);
                for (size_t i = 0; i < scales.size(); ++i) QCOMPARE(double(t.absmax_scales[i]), scales[i]);
                QCOMPARE(double(t.absmax_mean), f64(ref, "absmax_mean")[0]);
            } else {
                const auto absmax = f64(ref, "absmax");
                for (size_t i = 0; i < absmax.size(); ++i) QCOMPARE(double(t.absmax[i]), absmax[i]);
            }
            std::vector<float> back(c.w.size());
            nf4_dequantize(t, back.data());
            QVERIFY(test::relative_error(back, f64(ref, "dequantized")) < 1e-6);
        }
    }
};

QTEST_GUILESS_MAIN(TestNf4)
#include "tst_nf4.moc"
