#include "core/train/evaluate.h"

#include "kernels/error.h"

#include <algorithm>
#include <cmath>

namespace crucible {

namespace {

struct Accumulator {
    LossSum sum;
    double bytes = 0.0;

    void add(const LossSum& s, const int32_t* targets, size_t n, const std::vector<int32_t>& token_bytes)
    {
        sum.loss += s.loss;
        sum.tokens += s.tokens;
        sum.correct += s.correct;
        for (size_t i = 0; i < n; ++i)
            if (targets[i] >= 0) bytes += token_bytes[size_t(targets[i])];
    }

    EvalMetrics metrics() const
    {
        EvalMetrics m;
        m.tokens = sum.tokens;
        m.loss = sum.mean();
        m.perplexity = std::exp(m.loss);
        m.accuracy = sum.tokens ? double(sum.correct) / double(sum.tokens) : 0.0;
        m.bits_per_byte = bytes > 0 ? sum.loss / (std::log(2.0) * bytes) : 0.0;
        return m;
    }
};

} // namespace

EvalMetrics evaluate_windows(Transformer& model, const Dataset& data, const std::vector<Window>& windows, int batch,
                             int seq_len, int64_t max_windows, const std::function<bool()>& cancelled)
{
    const int64_t total = max_windows > 0 ? std::min<int64_t>(max_windows, int64_t(windows.size()))
                                          : int64_t(windows.size());
    std::vector<int32_t> tokens(size_t(batch) * size_t(seq_len)), targets(tokens.size());
    Accumulator acc;
    for (int64_t begin = 0; begin < total; begin += batch) {
        if (cancelled && cancelled()) break;
        const int64_t b = std::min<int64_t>(batch, total - begin);
        for (int64_t i = 0; i < b; ++i)
            data.fill(windows[size_t(begin + i)], seq_len, tokens.data() + i * seq_len, targets.data() + i * seq_len);
        const LossSum s = model.evaluate(tokens.data(), targets.data(), b, seq_len);
        acc.add(s, targets.data(), size_t(b * seq_len), data.token_byte_lengths());
    }
    return acc.metrics();
}

EvalMetrics evaluate_token_stream(Transformer& model, const std::vector<int32_t>& stream,
                                  const std::vector<int32_t>& token_bytes, int batch, int seq_len)
{
    if (stream.size() < 2) throw Error("the text is too short to evaluate: it needs at least two tokens");
    // Full windows of seq_len targets go in batches; a shorter tail window last.
    const int64_t predictions = int64_t(stream.size()) - 1;
    const int64_t full = predictions / seq_len;
    Accumulator acc;
    std::vector<int32_t> tokens(size_t(batch) * size_t(seq_len)), targets(tokens.size());
    for (int64_t begin = 0; begin < full; begin += batch) {
        const int64_t b = std::min<int64_t>(batch, full - begin);
        for (int64_t i = 0; i < b; ++i) {
            const int32_t* src = stream.data() + (begin + i) * seq_len;
            std::copy(src, src + seq_len, tokens.data() + i * seq_len);
            std::copy(src + 1, src + seq_len + 1, targets.data() + i * seq_len);
        }
        acc.add(model.evaluate(tokens.data(), targets.data(), b, seq_len), targets.data(), size_t(b * seq_len),
                token_bytes);
    }
    if (const int64_t tail = predictions - full * seq_len; tail > 0) {
        const int32_t* src = stream.data() + full * seq_len;
        std::copy(src, src + tail, tokens.data());
        std::copy(src + 1, src + tail + 1, targets.data());
        acc.add(model.evaluate(tokens.data(), targets.data(), 1, tail), targets.data(), size_t(tail), token_bytes);
    }
    return acc.metrics();
}

} // namespace crucible
