// Speculative decoding: one draft-and-verify round.
//
// Every running sequence starts the round with one drawn token the target has
// not run yet (the pending token). The draft catches up on the tokens it has
// not seen (the pending one, sometimes the previous round's last), then
// proposes d1..dk one decode step at a time (greedy: d2..dk in one decode
// burst where it can), drawing each from its own distribution q_i. The target
// runs [pending, d1..dk] as one chunk, which gives its distributions
// p_1..p_{k+1}. Then, in order, d_i is accepted with
// probability min(1, p_i(d_i) / q_i(d_i)); the first rejection draws a
// replacement from norm(max(0, p_i − q_i)) and ends the round; when all k are
// accepted a bonus token is drawn from p_{k+1}. The tokens kept are then
// distributed exactly as the target's own draws (Leviathan et al., 2023).
//
// p and q are the Sampler's distributions (penalties, temperature, top-k/p,
// min-p applied), so the rule reproduces the target under any sampling
// setting; at temperature 0 both are one-hot and it reduces to "keep the
// draft's tokens while they equal the target's argmax, then the target's",
// which greedy_speculative_round does with the argmaxes picked on the device.
//
// Both caches are rolled back to what was kept: the target holds the pending
// token and the accepted drafts, the draft at most that (it never ran d_k).
#include "core/generate/generation_run.h"

#include <algorithm>

namespace crucible {

namespace {

// What the draft has not run yet of each sequence that proposes (k[b] > 0):
// the pending token, and the previous round's last token when the draft
// never ran it.
std::vector<std::vector<int32_t>> draft_catch_up(const std::vector<SequenceState>& seqs, const CachedModel& draft,
                                                 const std::vector<int>& k)
{
    std::vector<std::vector<int32_t>> feed(seqs.size());
    for (size_t b = 0; b < seqs.size(); ++b) {
        if (k[b] == 0) continue;
        const auto& tokens = seqs[b].tokens;
        feed[b].assign(tokens.begin() + std::ptrdiff_t(draft.cached[b].size()), tokens.end());
    }
    return feed;
}

// The target's chunk: each running sequence's pending token, then its proposals.
std::vector<std::vector<int32_t>> verification_chunk(const std::vector<SequenceState>& seqs,
                                                     const std::vector<std::vector<int32_t>>& proposals)
{
    std::vector<std::vector<int32_t>> verify(seqs.size());
    for (size_t b = 0; b < seqs.size(); ++b) {
        if (seqs[b].done) continue;
        verify[b].push_back(seqs[b].tokens.back());
        verify[b].insert(verify[b].end(), proposals[b].begin(), proposals[b].end());
    }
    return verify;
}

} // namespace

void GenerationRun::end_round(size_t b, CachedModel& target, CachedModel& draft, size_t pending_at, int proposed,
                              int accepted)
{
    m_stats.draft_proposed += proposed;
    m_stats.draft_accepted += accepted;
    // The target keeps the pending token and the accepted proposals; the
    // draft never holds more than that.
    target.truncate(b, pending_at + 1 + size_t(accepted));
    draft.truncate(b, std::min(draft.cached[b].size(), pending_at + 1 + size_t(accepted)));
}

void GenerationRun::speculative_round(CachedModel& target, CachedModel& draft, int lookahead)
{
    const size_t batch = m_seqs.size();
    const size_t vocab = size_t(target.params->config().vocab_size);

    // Proposals per sequence: within the lookahead, the context (the last
    // proposal must have a position) and the token limit (the round adds
    // one token beyond the accepted proposals).
    std::vector<int> k(batch, 0);
    int most = 0;
    for (size_t b = 0; b < batch; ++b) {
        const SequenceState& s = m_seqs[b];
        if (s.done) continue;
        const int room = m_max_seq - int(s.tokens.size());
        const int budget = m_request.max_new_tokens - int(s.generated.size()) - 1;
        k[b] = std::max(0, std::min({lookahead, room, budget}));
        most = std::max(most, k[b]);
    }
    if (picks_on_device()) return greedy_speculative_round(target, draft, k);

    // Draft: catch up, then propose.
    std::vector<std::vector<int32_t>> proposals(batch), feed = draft_catch_up(m_seqs, draft, k);
    std::vector<std::vector<std::vector<float>>> q(batch);
    std::vector<std::vector<float>> draft_logits, target_logits;
    std::vector<float> work;
    for (int i = 0; i < most; ++i) {
        draft.append(feed, CachedModel::Logits::last, draft_logits);
        for (size_t b = 0; b < batch; ++b) {
            feed[b].clear();
            if (k[b] <= i) continue;
            SequenceState& s = m_seqs[b];
            std::vector<int32_t> history = s.tokens;
            history.insert(history.end(), proposals[b].begin(), proposals[b].end());
            std::vector<float> dist;
            work = draft_logits[b];
            s.sampler.distribution(work, history, dist);
            const int32_t d = s.sampler.draw(dist);
            proposals[b].push_back(d);
            q[b].push_back(std::move(dist));
            if (k[b] > i + 1) feed[b].push_back(d);   // d_k itself never runs through the draft
        }
    }

    // Target: score the pending token and every proposal in one chunk.
    target.append(verification_chunk(m_seqs, proposals), CachedModel::Logits::every, target_logits);

    // Accept or reject, sequence by sequence.
    std::vector<float> p, residual;
    for (size_t b = 0; b < batch; ++b) {
        SequenceState& s = m_seqs[b];
        if (s.done) continue;
        const size_t pending_at = s.tokens.size() - 1;
        auto row = [&](int i) { return std::span<const float>(target_logits[b]).subspan(size_t(i) * vocab, vocab); };
        int accepted = 0;
        bool open = true;   // the sequence still takes tokens this round
        for (int i = 0; i < k[b] && open; ++i) {
            if (check_cancel()) return;
            work.assign(row(i).begin(), row(i).end());
            s.sampler.distribution(work, s.tokens, p);
            const int32_t d = proposals[b][size_t(i)];
            const std::vector<float>& qi = q[b][size_t(i)];
            if (s.sampler.rng().uniform() * double(qi[size_t(d)]) < double(p[size_t(d)])) {
                ++accepted;
                open = take_token(b, d, row(i));
                continue;
            }
            residual.resize(vocab);
            double mass = 0.0;
            for (size_t v = 0; v < vocab; ++v) mass += residual[v] = std::max(0.0f, p[v] - qi[v]);
            const int32_t y = s.sampler.draw(mass > 0.0 ? std::span<const float>(residual) : std::span<const float>(p));
            take_token(b, y, row(i));
            open = false;
        }
        if (open) {
            if (check_cancel()) return;
            work.assign(row(k[b]).begin(), row(k[b]).end());
            s.sampler.distribution(work, s.tokens, p);
            take_token(b, s.sampler.draw(p), row(k[b]));
        }
        end_round(b, target, draft, pending_at, k[b], accepted);
    }
}

void GenerationRun::greedy_speculative_round(CachedModel& target, CachedModel& draft, const std::vector<int>& k)
{
    const size_t batch = m_seqs.size();
    const int most = *std::max_element(k.begin(), k.end());

    // Draft: catch up, then propose its argmax one step at a time, or, when
    // every sequence proposes as many, the rest in one decode burst.
    std::vector<std::vector<int32_t>> proposals(batch), feed = draft_catch_up(m_seqs, draft, k), ids;
    std::vector<std::vector<float>> probs;
    const bool uniform = std::all_of(k.begin(), k.end(), [most](int kb) { return kb == most; });
    const bool burst = uniform && most >= 3 && burst_length(draft, most - 1) == most - 1;
    for (int i = 0; i < (burst ? 1 : most); ++i) {
        draft.append_greedy(feed, CachedModel::Logits::last, ids, probs);
        for (size_t b = 0; b < batch; ++b) {
            feed[b].clear();
            if (k[b] <= i) continue;
            proposals[b].push_back(ids[b][0]);
            if (k[b] > i + 1) feed[b].push_back(ids[b][0]);   // d_k itself never runs through the draft
        }
    }
    if (burst) {   // d1 runs first and d_k never: most − 1 steps
        std::vector<int32_t> last(batch), picks;
        std::vector<float> pick_probs;
        for (size_t b = 0; b < batch; ++b) last[b] = proposals[b].back();
        draft.decode_greedy(last, most - 1, picks, pick_probs);
        for (size_t s = 0; s + 1 < size_t(most); ++s)
            for (size_t b = 0; b < batch; ++b) proposals[b].push_back(picks[s * batch + b]);
    }

    // Target: its pick after the pending token and after every proposal.
    target.append_greedy(verification_chunk(m_seqs, proposals), CachedModel::Logits::every, ids, probs);

    // Keep proposals while they are the target's picks; the first that is
    // not is replaced by the pick, and when all are kept the pick after the
    // last one comes as a bonus.
    for (size_t b = 0; b < batch; ++b) {
        SequenceState& s = m_seqs[b];
        if (s.done) continue;
        const size_t pending_at = s.tokens.size() - 1;
        int accepted = 0;
        bool open = true;
        for (int i = 0; i <= k[b] && open; ++i) {
            if (check_cancel()) return;
            const int32_t pick = ids[b][size_t(i)];
            const bool agrees = i < k[b] && proposals[b][size_t(i)] == pick;
            accepted += agrees ? 1 : 0;
            open = take_token(b, pick, probs[b][size_t(i)], {}) && agrees;
        }
        end_round(b, target, draft, pending_at, k[b], accepted);
    }
}

} // namespace crucible
