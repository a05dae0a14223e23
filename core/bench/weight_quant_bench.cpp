#include "core/bench/weight_quant_bench.h"

namespace crucible {

std::vector<WeightQuantResult> measure_weight_quant(ParamStore& params, const std::function<double()>& bits_per_byte,
                                                    const std::function<void(const WeightQuantResult&)>& each)
{
    const std::vector<float> original = params.download_master();
    std::vector<WeightQuantResult> out;
    try {
        for (WeightQuant q : weight_quant_schemes()) {
            std::vector<float> w = original;
            double err = 0, bits = 0;
            int64_t count = 0;
            for (const ParamEntry& e : params.layout().entries()) {
                if (!e.is_hidden_matrix()) continue;
                float* p = w.data() + e.offset;
                const std::vector<float> before(p, p + e.numel());
                bits += quantize_roundtrip(q, before.data(), e.shape[0], e.shape[1], p) * double(e.numel());
                for (int64_t i = 0; i < e.numel(); ++i)
                    err += double(p[i] - before[size_t(i)]) * double(p[i] - before[size_t(i)]);
                count += e.numel();
            }
            params.upload_master(w);
            const WeightQuantResult r{q, bits / double(count), err / double(count), bits_per_byte()};
            out.push_back(r);
            params.upload_master(original);
            if (each) each(r);
        }
    } catch (...) {
        params.upload_master(original);
        throw;
    }
    return out;
}

} // namespace crucible
