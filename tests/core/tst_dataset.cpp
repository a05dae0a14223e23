// Dataset and Batcher: the split keeps validation text out of training
// (checked on token index ranges, document by document), windows carry the
// right targets, an epoch uses every training window once in a seeded order,
// a saved Batcher state resumes the exact batches, the token cache is used and
// a damaged one rebuilt, and too little text fails with the numbers the user
// needs. One small tokenizer (vocab 512) is trained once for the suite.
#include "core/data/dataset.h"

#include "core/io/file_util.h"
#include "kernels/error.h"
#include "resources/embedded_resources.h"

#include <QTemporaryDir>
#include <QTest>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <set>

using namespace crucible;
namespace fs = std::filesystem;

namespace {

std::string_view shakespeare() { return *embedded_resource("tinyshakespeare.txt"); }

std::string error_of(const std::function<void()>& f)
{
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    return {};
}

bool contains(const std::string& haystack, const std::string& needle)
{
    return haystack.find(needle) != std::string::npos;
}

// Documents of very different sizes, one too small to hold two windows.
Corpus mixed_corpus()
{
    const std::string_view text = shakespeare();
    return Corpus::from_documents({
        Document{"long.txt", std::string(text.substr(0, 60'000))},
        Document{"medium.txt", std::string(text.substr(60'000, 25'000))},
        Document{"tiny.txt", std::string(text.substr(85'000, 150))},
        Document{"short.txt", std::string(text.substr(90'000, 8'000))},
    });
}

// A window as the tokens it holds: inputs then the final target.
std::vector<int32_t> window_tokens(const Dataset& ds, const Window& w, int seq_len)
{
    std::vector<int32_t> tokens(static_cast<size_t>(seq_len)), targets(static_cast<size_t>(seq_len));
    ds.fill(w, seq_len, tokens.data(), targets.data());
    tokens.push_back(targets.back());
    return tokens;
}

std::vector<std::vector<int32_t>> take_batches(Batcher& b, int batches, int batch, int seq_len)
{
    std::vector<std::vector<int32_t>> out;
    std::vector<int32_t> tokens(size_t(batch * seq_len)), targets(size_t(batch * seq_len));
    for (int i = 0; i < batches; ++i) {
        b.next(batch, tokens.data(), targets.data());
        out.push_back(tokens);
        out.push_back(targets);
    }
    return out;
}

std::vector<fs::path> files_in(const fs::path& dir)
{
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(dir)) files.push_back(e.path());
    return files;
}

} // namespace

class DatasetTest : public QObject {
    Q_OBJECT

private:
    std::optional<Tokenizer> m_tok;
    std::optional<Corpus> m_corpus;

private slots:
    void initTestCase()
    {
        TokenizerOptions options;
        options.vocab_size = 512;
        options.threads = 2;
        m_corpus = mixed_corpus();
        m_tok = Tokenizer::train(*m_corpus, options);
    }

    void tokensAreTheCorpus()
    {
        const Dataset ds = Dataset::build(*m_corpus, *m_tok, 0.1);
        QCOMPARE(ds.documents(), 4);
        int64_t decoded_bytes = 0;
        for (int d = 0; d < ds.documents(); ++d) {
            QVERIFY(m_tok->decode(ds.tokens(d)) == m_corpus->documents()[size_t(d)].text);
            for (const int32_t id : ds.tokens(d)) decoded_bytes += ds.token_byte_lengths()[size_t(id)];
        }
        QCOMPARE(int64_t(ds.token_byte_lengths().size()), int64_t(m_tok->vocab_size()));
        QCOMPARE(decoded_bytes, ds.total_bytes());   // bits per byte counts every byte exactly once
        QCOMPARE(ds.total_bytes(), m_corpus->bytes());
        QVERIFY(ds.bytes_per_token() > 1.0 && ds.bytes_per_token() < 8.0);
        QCOMPARE(ds.train_tokens() + ds.val_tokens(), int64_t(ds.tokens(0).size() + ds.tokens(1).size() +
                                                              ds.tokens(2).size() + ds.tokens(3).size()));
    }

    void largeDocumentTokenizedInParallel()
    {
        // The whole embedded corpus is cut into stretches encoded on several
        // threads; the tokens must equal encoding it in one go.
        const Corpus corpus = Corpus::embedded_default();
        const Dataset ds = Dataset::build(corpus, *m_tok, 0.1);
        QVERIFY(ds.tokens(0) == m_tok->encode(corpus.documents()[0].text));
    }

    void validationNeverOverlapsTraining_data()
    {
        QTest::addColumn<int>("seq_len");
        QTest::addColumn<double>("val_fraction");
        QTest::newRow("seq 16, 10%") << 16 << 0.1;
        QTest::newRow("seq 64, 10%") << 64 << 0.1;
        QTest::newRow("seq 200, 5%") << 200 << 0.05;
        QTest::newRow("seq 33, 30%") << 33 << 0.3;
    }

    void validationNeverOverlapsTraining()
    {
        QFETCH(int, seq_len);
        QFETCH(double, val_fraction);
        const Dataset ds = Dataset::build(*m_corpus, *m_tok, val_fraction, {}, seq_len);
        const std::vector<Window> train = ds.train_windows(seq_len);
        const std::vector<Window> val = ds.val_windows(seq_len);
        QVERIFY(!train.empty() && !val.empty());

        const int64_t span = seq_len + 1;
        for (int d = 0; d < ds.documents(); ++d) {
            const int64_t n = int64_t(ds.tokens(d).size());
            const SplitRange tr = ds.train_range(d), va = ds.val_range(d);
            QCOMPARE(tr.begin, int64_t(0));
            QCOMPARE(tr.end, va.begin);
            QCOMPARE(va.end, n);
            if (n >= 2 * span) {
                // Big enough: at least one window each, and about the fraction asked for.
                QVERIFY(va.end - va.begin >= span);
                QVERIFY(tr.end - tr.begin >= span);
                QVERIFY(va.end - va.begin <= std::max<int64_t>(span, int64_t(val_fraction * double(n)) + 1));
            } else {
                QCOMPARE(va.end - va.begin, int64_t(0));   // too small to validate on: all training
            }

            // Every token a window touches (inputs and targets) lies in its split.
            int64_t last_train_token = -1, first_val_token = n;
            for (const Window& w : train) {
                if (w.document != d) continue;
                QVERIFY(w.start >= tr.begin && w.start + span <= tr.end);
                last_train_token = std::max(last_train_token, w.start + span - 1);
            }
            for (const Window& w : val) {
                if (w.document != d) continue;
                QVERIFY(w.start >= va.begin && w.start + span <= va.end);
                first_val_token = std::min(first_val_token, w.start);
            }
            QVERIFY(last_train_token < first_val_token);
        }

        // Windows of a split start every seq_len tokens and never share a prediction.
        std::map<int32_t, std::vector<int64_t>> starts;
        for (const Window& w : train) starts[w.document].push_back(w.start);
        for (const auto& [doc, s] : starts)
            for (size_t i = 1; i < s.size(); ++i) QCOMPARE(s[i] - s[i - 1], int64_t(seq_len));
    }

    void skipLandsWhereReadingWould()
    {
        // A data-parallel replica skips the others' windows: it must land
        // where reading them would have, across epoch ends too.
        const int seq_len = 16;
        const Dataset ds = Dataset::build(*m_corpus, *m_tok, 0.1, {}, seq_len);
        Batcher probe(ds, seq_len, 9);
        const int64_t per_epoch = probe.windows_per_epoch();
        std::vector<int32_t> tokens(size_t(seq_len) * size_t(3 * per_epoch + 10)), targets(tokens.size());
        for (int64_t n : {int64_t(0), int64_t(1), int64_t(5), per_epoch - 3, per_epoch, per_epoch + 1,
                          3 * per_epoch}) {
            Batcher read(ds, seq_len, 9), skipped(ds, seq_len, 9);
            read.next(3, tokens.data(), targets.data());
            skipped.next(3, tokens.data(), targets.data());
            if (n > 0) read.next(int(n), tokens.data(), targets.data());
            skipped.skip(n);
            QCOMPARE(skipped.state().epoch, read.state().epoch);
            QCOMPARE(skipped.state().position, read.state().position);
            std::vector<int32_t> a(static_cast<size_t>(seq_len)), b(a.size()), ta(a.size()), tb(a.size());
            read.next(1, a.data(), ta.data());
            skipped.next(1, b.data(), tb.data());
            QVERIFY(a == b);
        }
    }

    void windowsHaveShiftedTargets()
    {
        const int seq_len = 24;
        const Dataset ds = Dataset::build(*m_corpus, *m_tok, 0.1, {}, seq_len);
        std::vector<int32_t> tokens(seq_len), targets(seq_len);
        for (const std::vector<Window>& windows : {ds.train_windows(seq_len), ds.val_windows(seq_len)}) {
            for (const Window& w : windows) {
                ds.fill(w, seq_len, tokens.data(), targets.data());
                const auto& doc = ds.tokens(w.document);
                for (int i = 0; i < seq_len; ++i) {
                    QCOMPARE(tokens[size_t(i)], doc[size_t(w.start + i)]);
                    QCOMPARE(targets[size_t(i)], doc[size_t(w.start + i + 1)]);
                }
            }
        }
    }

    void withoutSeqLenSplitIsTheFraction()
    {
        const Dataset ds = Dataset::build(*m_corpus, *m_tok, 0.25);
        for (int d = 0; d < ds.documents(); ++d) {
            const int64_t n = int64_t(ds.tokens(d).size());
            QCOMPARE(ds.val_range(d).end - ds.val_range(d).begin, int64_t(std::llround(0.25 * double(n))));
        }
        const Dataset none = Dataset::build(*m_corpus, *m_tok, 0.0, {}, 16);
        QCOMPARE(none.val_tokens(), int64_t(0));
        const std::string message = error_of([&] { none.val_windows(16); });
        QVERIFY2(contains(message, "0 validation tokens") && contains(message, "needs 17"), message.c_str());
        QVERIFY(contains(error_of([&] { Dataset::build(*m_corpus, *m_tok, 1.0); }), "validation fraction"));
        QVERIFY(contains(error_of([&] { Dataset::build(*m_corpus, *m_tok, -0.1); }), "validation fraction"));
    }

    void everyTrainingWindowOncePerEpoch()
    {
        const int seq_len = 32, batch = 5;
        const Dataset ds = Dataset::build(*m_corpus, *m_tok, 0.1, {}, seq_len);
        const std::vector<Window> windows = ds.train_windows(seq_len);
        Batcher batcher(ds, seq_len, 1234);
        const int64_t n = batcher.windows_per_epoch();
        QCOMPARE(n, int64_t(windows.size()));

        std::multiset<std::vector<int32_t>> expected;
        for (const Window& w : windows) expected.insert(window_tokens(ds, w, seq_len));

        // Draw two epochs and a bit, in batches that straddle the epoch ends.
        const int64_t batches = (2 * n + 3 + batch - 1) / batch;
        std::vector<std::vector<int32_t>> drawn;
        std::vector<int32_t> tokens(size_t(batch * seq_len)), targets(size_t(batch * seq_len));
        for (int64_t i = 0; i < batches; ++i) {
            batcher.next(batch, tokens.data(), targets.data());
            for (int b = 0; b < batch; ++b) {
                std::vector<int32_t> w(tokens.begin() + b * seq_len, tokens.begin() + (b + 1) * seq_len);
                QVERIFY(std::equal(w.begin() + 1, w.end(), targets.begin() + b * seq_len));
                w.push_back(targets[size_t((b + 1) * seq_len - 1)]);
                drawn.push_back(std::move(w));
            }
        }
        for (int epoch = 0; epoch < 2; ++epoch) {
            const std::multiset<std::vector<int32_t>> seen(drawn.begin() + epoch * n, drawn.begin() + (epoch + 1) * n);
            QVERIFY(seen == expected);
        }
        QVERIFY(!std::equal(drawn.begin(), drawn.begin() + n, drawn.begin() + n));   // epochs are reshuffled
        QCOMPARE(batcher.state().epoch, int64_t(2));
        QCOMPARE(batcher.state().position, batches * batch - 2 * n);
    }

    void shuffleFollowsTheSeed()
    {
        const int seq_len = 32;
        const Dataset ds = Dataset::build(*m_corpus, *m_tok, 0.1, {}, seq_len);
        Batcher a(ds, seq_len, 42), b(ds, seq_len, 42), c(ds, seq_len, 43);
        const auto batches_a = take_batches(a, 20, 4, seq_len);
        QVERIFY(take_batches(b, 20, 4, seq_len) == batches_a);
        QVERIFY(take_batches(c, 20, 4, seq_len) != batches_a);

        // Not the corpus order either.
        std::vector<int32_t> in_order;
        for (const Window& w : ds.train_windows(seq_len)) {
            if (in_order.size() >= size_t(4 * seq_len)) break;
            const auto t = window_tokens(ds, w, seq_len);
            in_order.insert(in_order.end(), t.begin(), t.end() - 1);
        }
        QVERIFY(batches_a[0] != in_order);
    }

    void batcherStateResumesExactly()
    {
        const int seq_len = 32, batch = 7;
        const Dataset ds = Dataset::build(*m_corpus, *m_tok, 0.1, {}, seq_len);
        Batcher original(ds, seq_len, 9);
        const int64_t n = original.windows_per_epoch();
        // Stop at several places, including just before and just after an epoch ends.
        for (const int64_t stop : {int64_t(0), int64_t(3), n / batch, n / batch + 1, 2 * n / batch + 2}) {
            Batcher run(ds, seq_len, 9);
            take_batches(run, int(stop), batch, seq_len);
            const Batcher::State saved = run.state();
            const auto continued = take_batches(run, 12, batch, seq_len);

            Batcher resumed(ds, seq_len, 9);
            resumed.set_state(saved);
            QCOMPARE(resumed.state().epoch, saved.epoch);
            QCOMPARE(resumed.state().position, saved.position);
            QVERIFY(take_batches(resumed, 12, batch, seq_len) == continued);
        }
        // A state from an epoch end resumes too (position == windows per epoch).
        Batcher resumed(ds, seq_len, 9);
        resumed.set_state({0, n});
        Batcher reference(ds, seq_len, 9);
        take_batches(reference, 1, int(n), seq_len);
        QVERIFY(take_batches(resumed, 3, batch, seq_len) == take_batches(reference, 3, batch, seq_len));

        const std::string message = error_of([&] { resumed.set_state({0, n + 1}); });
        QVERIFY2(contains(message, "does not fit"), message.c_str());
        QVERIFY(!error_of([&] { resumed.set_state({-1, 0}); }).empty());
    }

    void tokenCacheIsUsedAndRepaired()
    {
        QTemporaryDir dir;
        const fs::path cache(dir.path().toStdString());
        const Dataset first = Dataset::build(*m_corpus, *m_tok, 0.1, cache);
        QVERIFY(!first.from_cache());
        const std::vector<fs::path> files = files_in(cache);
        QCOMPARE(files.size(), size_t(1));

        const Dataset second = Dataset::build(*m_corpus, *m_tok, 0.1, cache);
        QVERIFY(second.from_cache());
        for (int d = 0; d < first.documents(); ++d) QVERIFY(second.tokens(d) == first.tokens(d));
        QCOMPARE(second.train_tokens(), first.train_tokens());

        // A flipped byte in the middle: detected, tokenized again, rewritten.
        std::string bytes = read_file(files[0]);
        bytes[bytes.size() / 2] = char(bytes[bytes.size() / 2] ^ 0x5A);
        write_file_atomic(files[0], bytes);
        const Dataset repaired = Dataset::build(*m_corpus, *m_tok, 0.1, cache);
        QVERIFY(!repaired.from_cache());
        for (int d = 0; d < first.documents(); ++d) QVERIFY(repaired.tokens(d) == first.tokens(d));
        QVERIFY(Dataset::build(*m_corpus, *m_tok, 0.1, cache).from_cache());

        // A truncated file, and an empty one.
        const std::string good = read_file(files[0]);
        for (const size_t keep : {good.size() - 1, good.size() / 3, size_t(10), size_t(0)}) {
            write_file_atomic(files[0], std::string_view(good).substr(0, keep));
            QVERIFY(!Dataset::build(*m_corpus, *m_tok, 0.1, cache).from_cache());
            QVERIFY(read_file(files[0]) == good);
        }

        // Another corpus is another cache entry.
        const Corpus other = Corpus::from_documents({Document{"other.txt", std::string(shakespeare().substr(0, 5000))}});
        QVERIFY(!Dataset::build(other, *m_tok, 0.1, cache).from_cache());
        QCOMPARE(files_in(cache).size(), size_t(2));
    }

    void tooLittleText()
    {
        const Corpus tiny = Corpus::from_documents({Document{"tiny.txt", "To be, or not to be: that is the question."}});
        const Dataset ds = Dataset::build(tiny, *m_tok, 0.1, {}, 512);
        const int64_t n = ds.train_tokens();
        const std::string train = error_of([&] { ds.train_windows(512); });
        QVERIFY2(contains(train, "the corpus has " + std::to_string(n) +
                                     " training tokens but one window of seq_len 512 needs 513: add text or lower seq_len"),
                 train.c_str());
        const std::string val = error_of([&] { ds.val_windows(512); });
        QVERIFY2(contains(val, "validation tokens") && contains(val, "needs 513"), val.c_str());

        // Enough tokens in all, but no document long enough for one window.
        std::vector<Document> docs;
        for (int i = 0; i < 40; ++i)
            docs.push_back(Document{"part" + std::to_string(i), std::string(shakespeare().substr(size_t(i) * 300, 300))});
        const Dataset pieces = Dataset::build(Corpus::from_documents(std::move(docs)), *m_tok, 0.0);
        const std::string split = error_of([&] { pieces.train_windows(512); });
        QVERIFY2(contains(split, "longest document"), split.c_str());
        QVERIFY(contains(error_of([&] { pieces.train_windows(0); }), "seq_len"));
    }
};

QTEST_APPLESS_MAIN(DatasetTest)
#include "tst_dataset.moc"
