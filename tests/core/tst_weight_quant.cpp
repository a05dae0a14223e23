// The quantization schemes of bench quant: exact where a scheme can be
// (values on its grid), their stated bits per weight, the ordering of their
// errors on Gaussian weights, and non-finite weights refused.
#include "core/quant/weight_quant.h"
#include "kernels/error.h"
#include "tests/support/test_support.h"

#include <QTest>

#include <cmath>
#include <limits>
#include <map>

using namespace crucible;

namespace {

double mse(const std::vector<float>& a, const std::vector<float>& b)
{
    double s = 0;
    for (size_t i = 0; i < a.size(); ++i) s += double(a[i] - b[i]) * (a[i] - b[i]);
    return s / double(a.size());
}

} // namespace

class TestWeightQuant : public QObject {
    Q_OBJECT

private slots:
    void valuesOnTheGridAreExact()
    {
        // Row r holds multiples of (r + 1)/127 up to its absmax: int8-row keeps them.
        const int64_t rows = 4, cols = 255;
        std::vector<float> w(size_t(rows * cols)), out(w.size());
        for (int64_t r = 0; r < rows; ++r)
            for (int64_t c = 0; c < cols; ++c) w[size_t(r * cols + c)] = float(c - 127) * float(r + 1) / 127.0f;
        QCOMPARE(quantize_roundtrip(WeightQuant::int8_row, w.data(), rows, cols, out.data()), 8.0 + 32.0 / 255.0);
        QVERIFY(test::max_abs_diff(w, out) < 1e-6f);
        // Multiples of 1/7 of the absmax: int4 keeps them, per tensor and per block.
        std::vector<float> v(128);
        for (size_t i = 0; i < v.size(); ++i) v[i] = float(int(i % 15) - 7) * 0.5f;
        for (WeightQuant q : {WeightQuant::int4_tensor, WeightQuant::int4_block64}) {
            quantize_roundtrip(q, v.data(), 2, 64, out.data());
            QVERIFY(test::max_abs_diff(v, std::vector<float>(out.begin(), out.begin() + 128)) < 1e-6f);
        }
        // bf16 keeps values with 8 significant bits.
        std::vector<float> b = {1.0f, -0.5f, 3.0f, 0.0078125f}, bo(4);
        QCOMPARE(quantize_roundtrip(WeightQuant::bf16, b.data(), 1, 4, bo.data()), 16.0);
        QVERIFY(b == bo);
    }

    void errorsOrderAsExpected()
    {
        const int64_t rows = 256, cols = 256;
        auto w = test::random_vector(size_t(rows * cols), 3, 0.02f);
        w[12345] = 0.3f;   // one outlier: a single tensor-wide scale suffers most
        std::vector<float> out(w.size());
        std::map<WeightQuant, double> err;
        for (WeightQuant q : weight_quant_schemes()) {
            const double bits = quantize_roundtrip(q, w.data(), rows, cols, out.data());
            err[q] = mse(w, out);
            qInfo("%-13s %.3f bits/weight, MSE %.3e", to_string(q), bits, err[q]);
        }
        QVERIFY(err[WeightQuant::bf16] < err[WeightQuant::int8_row]);
        QVERIFY(err[WeightQuant::int8_row] < err[WeightQuant::nf4]);
        QVERIFY(err[WeightQuant::nf4] < err[WeightQuant::int4_block64]);
        QVERIFY(err[WeightQuant::nf4_dq] < 1.05 * err[WeightQuant::nf4]);
        QVERIFY(err[WeightQuant::int4_block64] < err[WeightQuant::int4_tensor]);
    }

    void nonFiniteRefused()
    {
        std::vector<float> w(64, 1.0f), out(64);
        w[3] = std::numeric_limits<float>::quiet_NaN();
        for (WeightQuant q : weight_quant_schemes())
            QVERIFY_THROWS_EXCEPTION(Error, quantize_roundtrip(q, w.data(), 1, 64, out.data()));
    }
};

QTEST_GUILESS_MAIN(TestWeightQuant)
#include "tst_weight_quant.moc"
