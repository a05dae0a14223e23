#include "core/bench/byte_model.h"

#include "core/data/corpus.h"
#include "kernels/error.h"

#include <cmath>

namespace crucible::bench {

const ByteText& ByteText::embedded()
{
    static const ByteText text = [] {
        const Corpus corpus = Corpus::embedded_default();
        const std::string& s = corpus.documents().front().text;
        ByteText t;
        const size_t split = s.size() / 10 * 9;
        for (size_t i = 0; i < s.size(); ++i)
            (i < split ? t.train : t.val).push_back(int32_t(static_cast<unsigned char>(s[i])));
        return t;
    }();
    return text;
}

ByteModelRun::ByteModelRun(Backend& backend, ModelConfig config, const OptimizerConfig& optimizer, int batch, int seq,
                           uint64_t seed)
    : m_text(ByteText::embedded()), m_batch(batch), m_seq(seq), m_rng(seed * 7919 + 1)
{
    config.vocab_size = 260;   // bytes, plus the specials every vocabulary has room for (never targets)
    config.seq_len = seq;
    config.validate();
    CRUCIBLE_REQUIRE(int64_t(m_text.val.size()) > int64_t(seq) + 1, "the validation text is shorter than one window");
    m_params = std::make_unique<ParamStore>(backend, config, true);
    m_params->initialize(seed);
    m_optimizer = std::make_unique<Optimizer>(*m_params, optimizer);
    m_model = std::make_unique<Transformer>(*m_params, batch, seq, true);
    m_tokens.resize(size_t(batch) * size_t(seq));
    m_targets.resize(m_tokens.size());
}

void ByteModelRun::step()
{
    const auto& t = m_text.train;
    for (int b = 0; b < m_batch; ++b) {
        const size_t start = size_t(m_rng.below(uint64_t(t.size() - size_t(m_seq) - 1)));
        for (int i = 0; i < m_seq; ++i) {
            m_tokens[size_t(b * m_seq + i)] = t[start + size_t(i)];
            m_targets[size_t(b * m_seq + i)] = t[start + size_t(i) + 1];
        }
    }
    m_params->zero_grads();
    m_model->train_micro_batch(m_tokens.data(), m_targets.data(), m_batch, m_seq, 1.0f / float(m_tokens.size()));
    m_optimizer->step(1.0);
}

double ByteModelRun::validation_bits_per_byte(int batches)
{
    const auto& v = m_text.val;
    const size_t windows = (v.size() - 1) / size_t(m_seq);
    double loss = 0.0, count = 0.0;
    size_t w = 0;
    for (int k = 0; k < batches && w < windows; ++k) {
        int rows = 0;
        for (; rows < m_batch && w < windows; ++rows, ++w)
            for (int i = 0; i < m_seq; ++i) {
                m_tokens[size_t(rows * m_seq + i)] = v[w * size_t(m_seq) + size_t(i)];
                m_targets[size_t(rows * m_seq + i)] = v[w * size_t(m_seq) + size_t(i) + 1];
            }
        const LossSum s = m_model->evaluate(m_tokens.data(), m_targets.data(), rows, m_seq);
        loss += s.loss;
        count += double(s.tokens);
    }
    return count > 0 ? loss / count / std::log(2.0) : 0.0;
}

} // namespace crucible::bench
