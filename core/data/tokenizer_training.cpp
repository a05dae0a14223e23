// Tokenizer training: SentencePiece BPE fed from memory.
//
// The corpus is cut into lines (so no piece ever contains a newline: a
// newline is always the byte piece <0x0A>, which also lets encoding work a
// line at a time) and each line into its well-formed UTF-8 stretches
// (the bytes in between become byte pieces when encoding, so they need no
// vocabulary). A corpus larger than max_training_bytes is sampled line by
// line with a fixed seed, so the same corpus always gives the same model.
//
// Training runs with hard_vocab_limit off: when the text is too small for
// the requested vocabulary SentencePiece then returns the largest vocabulary
// it can learn, which is exactly the number the error message needs.
#include "core/data/tokenizer.h"

#include "core/data/utf8.h"
#include "core/io/file_util.h"
#include "core/util/rng.h"
#include "kernels/error.h"

#include <sentencepiece_trainer.h>

#include <algorithm>
#include <array>
#include <thread>
#include <unordered_map>
#include <unordered_set>

namespace crucible {

namespace {

// SentencePiece drops sentences longer than max_sentence_length; lines are
// cut below it instead.
constexpr size_t kMaxSentenceBytes = 4096;
constexpr uint64_t kSampleSeed = 0x5eed7e47ULL;
// Part of the cache key: change it whenever the training settings change.
constexpr const char* kTrainingRecipe = "bpe-bytefallback-identity-v1";

void append_sentences(std::string_view line, std::vector<std::string_view>& out)
{
    const auto emit = [&](std::string_view text) {
        while (text.size() > kMaxSentenceBytes) {
            // Cut on a character boundary, preferably before a space.
            size_t cut = kMaxSentenceBytes;
            while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
            const size_t space = text.rfind(' ', cut);
            if (space != std::string_view::npos && space > kMaxSentenceBytes / 2) cut = space;
            out.push_back(text.substr(0, cut));
            text.remove_prefix(cut);
        }
        if (!text.empty()) out.push_back(text);
    };
    size_t begin = 0;
    for (size_t pos = 0; pos < line.size();) {
        if (static_cast<unsigned char>(line[pos]) < 0x80) { ++pos; continue; }
        const int length = utf8::sequence_length(line, pos);
        const bool meta_space = line.substr(pos, 3) == "\xE2\x96\x81";
        if (length != 0 && !meta_space) { pos += size_t(length); continue; }
        emit(line.substr(begin, pos - begin));
        pos += length == 0 ? 1 : size_t(length);
        begin = pos;
    }
    emit(line.substr(begin));
}

// The text SentencePiece learns from: views into the corpus.
std::vector<std::string_view> training_sentences(const Corpus& corpus, int64_t max_bytes)
{
    std::vector<std::string_view> lines;
    int64_t total = 0;
    for (const Document& doc : corpus.documents()) {
        std::string_view text = doc.text;
        while (!text.empty()) {
            const size_t end = std::min(text.find('\n'), text.size());
            std::string_view line = text.substr(0, end);
            text.remove_prefix(std::min(end + 1, text.size()));
            if (!line.empty() && line.back() == '\r') line.remove_suffix(1);   // CRLF files train like LF files
            if (line.empty()) continue;
            lines.push_back(line);
            total += int64_t(line.size());
        }
    }
    std::vector<std::string_view> sentences;
    if (total > max_bytes) {
        const double keep = double(max_bytes) / double(total);
        Rng rng(kSampleSeed);
        int64_t kept = 0;
        for (const std::string_view line : lines) {
            if (rng.uniform() >= keep) continue;
            append_sentences(line, sentences);
            kept += int64_t(line.size());
            if (kept >= max_bytes) break;
        }
    } else {
        for (const std::string_view line : lines) append_sentences(line, sentences);
    }
    return sentences;
}

// Every character gets a piece of its own when they all fit in the
// vocabulary. Text with more distinct characters than that (Chinese,
// Japanese) keeps its most frequent ones, in half of the free vocabulary so
// merges have room; SentencePiece never sees the rest (sentences are cut
// around them), and encoding spells them with byte pieces. Cutting here
// rather than lowering character_coverage: SentencePiece accepts coverage
// only down to 0.98, which for such text still keeps too many characters.
void drop_rare_characters(std::vector<std::string_view>& sentences, int vocab_size)
{
    std::array<int64_t, 128> ascii{};
    std::unordered_map<char32_t, int64_t> other;
    for (const std::string_view s : sentences) {
        for (size_t pos = 0; pos < s.size();) {
            const int length = utf8::sequence_length(s, pos);   // never 0: sentences are well formed
            if (length == 1) ++ascii[static_cast<unsigned char>(s[pos])];
            else ++other[utf8::decode_at(s, pos, length)];
            pos += size_t(std::max(length, 1));
        }
    }
    std::vector<std::pair<int64_t, char32_t>> counts;   // (count, character)
    for (size_t c = 0; c < ascii.size(); ++c)
        if (ascii[c] > 0) counts.emplace_back(ascii[c], char32_t(c));
    for (const auto& [ch, n] : other) counts.emplace_back(n, ch);

    const int free_ids = vocab_size - kTokenizerReservedIds;
    if (int64_t(counts.size()) <= free_ids) return;
    // Most frequent first; ties by code point, so the choice is reproducible.
    std::sort(counts.begin(), counts.end(), [](const auto& a, const auto& b) {
        return a.first != b.first ? a.first > b.first : a.second < b.second;
    });
    counts.resize(size_t(std::max(1, free_ids / 2)));
    std::array<bool, 128> keep_ascii{};
    std::unordered_set<char32_t> keep_other;
    for (const auto& [n, ch] : counts) {
        if (ch < 128) keep_ascii[ch] = true;
        else keep_other.insert(ch);
    }

    std::vector<std::string_view> kept;
    for (const std::string_view s : sentences) {
        size_t begin = 0;
        for (size_t pos = 0; pos < s.size();) {
            const int length = std::max(utf8::sequence_length(s, pos), 1);
            const char32_t ch = utf8::decode_at(s, pos, length);
            const bool keep = ch < 128 ? keep_ascii[ch] : keep_other.count(ch) > 0;
            pos += size_t(length);
            if (keep) continue;
            if (pos - size_t(length) > begin) kept.push_back(s.substr(begin, pos - size_t(length) - begin));
            begin = pos;
        }
        if (s.size() > begin) kept.push_back(s.substr(begin));
    }
    sentences = std::move(kept);
}

class SentenceFeed : public sentencepiece::SentenceIterator {
public:
    explicit SentenceFeed(const std::vector<std::string_view>& sentences) : m_sentences(sentences) { load(); }
    bool done() const override { return m_index >= m_sentences.size(); }
    void Next() override { ++m_index; load(); }
    const std::string& value() const override { return m_current; }
    sentencepiece::util::Status status() const override { return {}; }

private:
    void load()
    {
        if (!done()) m_current.assign(m_sentences[m_index]);
    }

    const std::vector<std::string_view>& m_sentences;
    size_t m_index = 0;
    std::string m_current;
};

} // namespace

Tokenizer Tokenizer::train(const Corpus& corpus, const TokenizerOptions& options)
{
    if (options.vocab_size <= kTokenizerReservedIds)
        throw Error("vocab_size " + std::to_string(options.vocab_size) + " is too small: the 256 byte pieces and "
                    "<unk>, <s>, </s> take " + std::to_string(kTokenizerReservedIds) + " ids, so use at least " +
                    std::to_string(kTokenizerReservedIds + 1) + " (a few thousand is typical)");
    if (options.max_training_bytes <= 0) throw Error("max_training_bytes must be positive");

    std::vector<std::string_view> sentences = training_sentences(corpus, options.max_training_bytes);
    drop_rare_characters(sentences, options.vocab_size);
    if (sentences.empty())
        throw Error("the corpus has no text to train a tokenizer on (only line breaks or bytes that are not UTF-8)");

    const int threads = options.threads > 0 ? options.threads : int(std::max(1u, std::thread::hardware_concurrency()));
    const std::unordered_map<std::string, std::string> args = {
        {"model_type", "bpe"},
        {"vocab_size", std::to_string(options.vocab_size)},
        {"hard_vocab_limit", "false"},   // see the top of this file
        {"byte_fallback", "true"},
        {"character_coverage", "1.0"},   // the vocabulary's characters are chosen above
        {"normalization_rule_name", "identity"},
        {"add_dummy_prefix", "false"},
        {"remove_extra_whitespaces", "false"},
        {"allow_whitespace_only_pieces", "true"},   // runs of spaces (indentation) become pieces
        {"split_digits", "true"},                   // numbers as digits, as Llama does
        {"unk_id", "0"}, {"bos_id", "1"}, {"eos_id", "2"}, {"pad_id", "-1"},
        {"max_sentence_length", std::to_string(2 * kMaxSentenceBytes)},
        {"input_sentence_size", "0"},   // sampling is ours, done above
        {"num_threads", std::to_string(threads)},
        {"minloglevel", "3"},           // silence: the outcome comes back as a status
    };
    SentenceFeed feed(sentences);
    std::string proto;
    const auto status = sentencepiece::SentencePieceTrainer::Train(args, &feed, &proto);
    if (!status.ok()) {
        const std::string why = status.ToString();
        if (why.find("required_chars") != std::string::npos)
            throw Error("vocab_size " + std::to_string(options.vocab_size) + " is too small for the characters "
                        "in this corpus: choose a larger vocabulary");
        throw Error("training the tokenizer failed: " + why);
    }

    Tokenizer tokenizer = from_serialized(proto);
    if (tokenizer.vocab_size() < options.vocab_size) {
        const std::string largest = std::to_string(tokenizer.vocab_size());
        throw Error("the vocabulary is too large for this much text: " + corpus.description() + " supports at most " +
                    largest + " tokens, not " + std::to_string(options.vocab_size) + ". Set vocab_size to " +
                    largest + " or less (well below works better), or add text.");
    }
    return tokenizer;
}

Tokenizer Tokenizer::train_cached(const Corpus& corpus, const TokenizerOptions& options,
                                  const std::filesystem::path& cache_dir)
{
    if (cache_dir.empty()) return train(corpus, options);
    const std::string key = hash_hex(corpus.fingerprint() + "|vocab=" + std::to_string(options.vocab_size) +
                                     "|max_bytes=" + std::to_string(options.max_training_bytes) + "|" +
                                     kTrainingRecipe);
    const std::filesystem::path file = cache_dir / ("tokenizer-" + key + ".model");
    std::error_code ec;
    if (std::filesystem::exists(file, ec)) {
        try {
            Tokenizer cached = load(file);
            if (cached.vocab_size() == options.vocab_size) return cached;
        } catch (const Error&) {
            // A damaged cache entry is retrained and replaced below.
        }
    }
    Tokenizer tokenizer = train(corpus, options);
    try {
        tokenizer.save(file);
    } catch (const Error&) {
        // An unwritable cache costs time on the next run, never correctness.
    }
    return tokenizer;
}

} // namespace crucible
