// Dataset construction: tokenize (or read the token cache), then split every
// document into a training head and a validation tail.
//
// Tokenizing is spread over all cores in stretches of a few hundred KB cut
// after a newline; since no piece of a Crucible tokenizer spans a newline,
// the tokens are the same as encoding each document whole.
#include "core/data/dataset.h"

#include "core/data/token_cache.h"
#include "kernels/error.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <exception>
#include <mutex>
#include <thread>

namespace crucible {

namespace {

constexpr size_t kStretchBytes = 256 * 1024;

token_cache::DocumentTokens tokenize(const Corpus& corpus, const Tokenizer& tokenizer)
{
    struct Stretch { size_t doc; std::string_view text; };
    std::vector<Stretch> stretches;
    const auto& docs = corpus.documents();
    for (size_t d = 0; d < docs.size(); ++d) {
        std::string_view text = docs[d].text;
        while (!text.empty()) {
            size_t end = text.size();
            if (end > kStretchBytes) {
                const size_t newline = text.find('\n', kStretchBytes);
                end = newline == std::string_view::npos ? text.size() : newline + 1;
            }
            stretches.push_back({d, text.substr(0, end)});
            text.remove_prefix(end);
        }
    }

    std::vector<std::vector<int32_t>> encoded(stretches.size());
    std::atomic<size_t> next{0};
    std::exception_ptr failure;
    std::mutex failure_mutex;
    const auto work = [&] {
        for (size_t i; (i = next++) < stretches.size();) {
            try {
                encoded[i] = tokenizer.encode(stretches[i].text);
            } catch (...) {
                std::lock_guard lock(failure_mutex);
                if (!failure) failure = std::current_exception();
                next = stretches.size();
            }
        }
    };
    const size_t threads = std::min<size_t>(std::max(1u, std::thread::hardware_concurrency()), stretches.size());
    std::vector<std::thread> pool;
    for (size_t t = 1; t < threads; ++t) pool.emplace_back(work);
    work();
    for (auto& th : pool) th.join();
    if (failure) std::rethrow_exception(failure);

    token_cache::DocumentTokens tokens(docs.size());
    for (size_t i = 0; i < stretches.size(); ++i) {
        auto& doc = tokens[stretches[i].doc];
        doc.insert(doc.end(), encoded[i].begin(), encoded[i].end());
    }
    return tokens;
}

const char* split_name(bool training) { return training ? "training" : "validation"; }

std::vector<Window> cut_windows(const std::vector<SplitRange>& ranges, int seq_len, bool training)
{
    if (seq_len < 1) throw Error("seq_len must be at least 1, not " + std::to_string(seq_len));
    const int64_t span = int64_t(seq_len) + 1;   // inputs plus the one-token-shifted targets
    std::vector<Window> windows;
    int64_t total = 0, longest = 0;
    for (size_t d = 0; d < ranges.size(); ++d) {
        const SplitRange r = ranges[d];
        total += r.end - r.begin;
        longest = std::max(longest, r.end - r.begin);
        for (int64_t start = r.begin; start + span <= r.end; start += seq_len)
            windows.push_back(Window{int32_t(d), start});
    }
    if (windows.empty()) {
        const std::string split = split_name(training);
        if (total < span)
            throw Error("the corpus has " + std::to_string(total) + " " + split + " tokens but one window of seq_len " +
                        std::to_string(seq_len) + " needs " + std::to_string(span) + ": add text or lower seq_len" +
                        (training ? "" : " (or raise the validation fraction)"));
        throw Error("the corpus has " + std::to_string(total) + " " + split + " tokens, but a window must lie inside "
                    "one document and the longest document has only " + std::to_string(longest) + " of them, while "
                    "seq_len " + std::to_string(seq_len) + " needs " + std::to_string(span) +
                    ": add longer documents or lower seq_len");
    }
    return windows;
}

int64_t range_tokens(const std::vector<SplitRange>& ranges)
{
    int64_t total = 0;
    for (const SplitRange& r : ranges) total += r.end - r.begin;
    return total;
}

} // namespace

Dataset Dataset::build(const Corpus& corpus, const Tokenizer& tokenizer, double val_fraction,
                       const std::filesystem::path& cache_dir, int seq_len)
{
    if (!(val_fraction >= 0.0 && val_fraction < 1.0))
        throw Error("the validation fraction must be at least 0 and below 1 (0.1 is typical), not " +
                    std::to_string(val_fraction));
    if (seq_len < 0) throw Error("seq_len must not be negative");
    if (tokenizer.vocab_size() == 0) throw Error("no tokenizer is loaded: train one or load tokenizer.model first");

    Dataset ds;
    const size_t documents = corpus.documents().size();
    std::filesystem::path cache_file;
    if (!cache_dir.empty()) {
        cache_file = token_cache::file_for(cache_dir, corpus.fingerprint(), tokenizer.fingerprint());
        if (auto cached = token_cache::read(cache_file, documents, tokenizer.vocab_size())) {
            ds.m_tokens = std::move(*cached);
            ds.m_from_cache = true;
        }
    }
    if (!ds.m_from_cache) {
        ds.m_tokens = tokenize(corpus, tokenizer);
        if (!cache_file.empty()) {
            try {
                token_cache::write(cache_file, ds.m_tokens);
            } catch (const Error&) {
                // An unwritable cache costs time on the next run, never correctness.
            }
        }
    }

    const int64_t window = int64_t(seq_len) + 1;
    for (const auto& doc : ds.m_tokens) {
        const int64_t n = int64_t(doc.size());
        int64_t val = std::llround(val_fraction * double(n));
        if (seq_len > 0 && val_fraction > 0.0) val = n >= 2 * window ? std::clamp(val, window, n - window) : 0;
        ds.m_train.push_back(SplitRange{0, n - val});
        ds.m_val.push_back(SplitRange{n - val, n});
    }

    const int vocab = tokenizer.vocab_size();
    ds.m_token_bytes.resize(size_t(vocab));
    for (int id = 0; id < vocab; ++id) ds.m_token_bytes[size_t(id)] = int32_t(tokenizer.token_bytes(id).size());
    ds.m_total_bytes = corpus.bytes();
    return ds;
}

int64_t Dataset::train_tokens() const { return range_tokens(m_train); }
int64_t Dataset::val_tokens() const { return range_tokens(m_val); }

double Dataset::bytes_per_token() const
{
    int64_t tokens = 0;
    for (const auto& doc : m_tokens) tokens += int64_t(doc.size());
    return tokens > 0 ? double(m_total_bytes) / double(tokens) : 0.0;
}

std::vector<Window> Dataset::train_windows(int seq_len) const { return cut_windows(m_train, seq_len, true); }
std::vector<Window> Dataset::val_windows(int seq_len) const { return cut_windows(m_val, seq_len, false); }

void Dataset::fill(const Window& w, int seq_len, int32_t* tokens, int32_t* targets) const
{
    CRUCIBLE_CHECK(w.document >= 0 && w.document < documents(), "window refers to a document outside the dataset");
    const auto& doc = m_tokens[size_t(w.document)];
    CRUCIBLE_CHECK(w.start >= 0 && w.start + seq_len + 1 <= int64_t(doc.size()), "window runs past its document");
    const int32_t* src = doc.data() + w.start;
    std::copy(src, src + seq_len, tokens);
    std::copy(src + 1, src + seq_len + 1, targets);
}

} // namespace crucible
