// Batcher: epoch after epoch, a Fisher–Yates shuffle of the training windows
// drawn from crucible::Rng seeded by (seed, epoch). The order of an epoch
// depends on nothing else, so the (epoch, position) pair in a checkpoint is
// all it takes to resume the exact sequence of batches.
#include "core/data/dataset.h"

#include "core/util/rng.h"
#include "kernels/error.h"

#include <numeric>

namespace crucible {

namespace {

// MurmurHash3's finalizer: spreads every input bit over the output.
uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

uint64_t epoch_seed(uint64_t seed, int64_t epoch)
{
    return mix64(seed ^ mix64(uint64_t(epoch) + 0x632be59bd9b4e019ULL));
}

} // namespace

Batcher::Batcher(const Dataset& dataset, int seq_len, uint64_t seed)
    : m_dataset(&dataset), m_seq_len(seq_len), m_seed(seed), m_windows(dataset.train_windows(seq_len))
{
}

void Batcher::shuffle_epoch(int64_t epoch)
{
    m_order.resize(m_windows.size());
    std::iota(m_order.begin(), m_order.end(), int64_t(0));
    Rng rng(epoch_seed(m_seed, epoch));
    for (size_t i = m_order.size(); i > 1; --i) std::swap(m_order[i - 1], m_order[size_t(rng.below(i))]);
    m_order_epoch = epoch;
}

void Batcher::next(int batch, int32_t* tokens, int32_t* targets)
{
    if (batch < 1) throw Error("the batch size must be at least 1, not " + std::to_string(batch));
    const int64_t per_epoch = windows_per_epoch();
    for (int b = 0; b < batch; ++b) {
        if (m_state.position >= per_epoch) {
            ++m_state.epoch;
            m_state.position = 0;
        }
        if (m_order_epoch != m_state.epoch) shuffle_epoch(m_state.epoch);
        const Window& w = m_windows[size_t(m_order[size_t(m_state.position)])];
        m_dataset->fill(w, m_seq_len, tokens + size_t(b) * size_t(m_seq_len), targets + size_t(b) * size_t(m_seq_len));
        ++m_state.position;
    }
}

void Batcher::skip(int64_t windows)
{
    if (windows < 0) throw Error("cannot skip back " + std::to_string(-windows) + " windows");
    const int64_t per_epoch = windows_per_epoch();
    if (per_epoch == 0) return;
    // Finish this epoch, jump whole epochs, then land inside the last one.
    int64_t left = windows;
    const int64_t in_this_epoch = per_epoch - m_state.position;
    if (left <= in_this_epoch) {
        m_state.position += left;
        return;
    }
    left -= in_this_epoch;
    m_state.epoch += 1 + (left - 1) / per_epoch;
    m_state.position = left - (left - 1) / per_epoch * per_epoch;
}

void Batcher::set_state(const State& s)
{
    if (s.epoch < 0 || s.position < 0 || s.position > windows_per_epoch())
        throw Error("the saved data position (epoch " + std::to_string(s.epoch) + ", window " +
                    std::to_string(s.position) + ") does not fit this dataset of " +
                    std::to_string(windows_per_epoch()) + " windows per epoch: the corpus, tokenizer or "
                    "sequence length changed since the checkpoint was written");
    m_state = s;
}

} // namespace crucible
