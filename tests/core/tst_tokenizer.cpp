// Tokenizer: decode(encode(x)) == x for every byte string (valid UTF-8 of
// every kind, and bytes that are not UTF-8 at all, which must travel as byte
// pieces), token_bytes agrees with decode, save/load keeps the model, training
// is deterministic and cached, and impossible vocabularies fail with advice.
// One small tokenizer (vocab 512 on the first ~200 KB of the embedded corpus)
// serves most cases, so the suite stays quick on a two-core machine.
#include "core/data/tokenizer.h"

#include "core/io/file_util.h"
#include "core/util/rng.h"
#include "kernels/error.h"
#include "resources/embedded_resources.h"

#include <QElapsedTimer>
#include <QTemporaryDir>
#include <QTest>

#include <filesystem>
#include <functional>
#include <optional>

using namespace crucible;

namespace {

constexpr int kVocab = 512;

std::string shakespeare_prefix(size_t bytes)
{
    const std::string_view all = *embedded_resource("tinyshakespeare.txt");
    const size_t cut = all.find('\n', bytes);
    return std::string(all.substr(0, cut == std::string_view::npos ? all.size() : cut + 1));
}

Corpus small_corpus(size_t bytes)
{
    return Corpus::from_documents({Document{"part.txt", shakespeare_prefix(bytes)}});
}

TokenizerOptions options(int vocab)
{
    TokenizerOptions o;
    o.vocab_size = vocab;
    o.threads = 2;
    return o;
}

void append_utf8(std::string& out, char32_t cp)
{
    if (cp < 0x80) {
        out += char(cp);
    } else if (cp < 0x800) {
        out += char(0xC0 | (cp >> 6));
        out += char(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out += char(0xE0 | (cp >> 12));
        out += char(0x80 | ((cp >> 6) & 0x3F));
        out += char(0x80 | (cp & 0x3F));
    } else {
        out += char(0xF0 | (cp >> 18));
        out += char(0x80 | ((cp >> 12) & 0x3F));
        out += char(0x80 | ((cp >> 6) & 0x3F));
        out += char(0x80 | (cp & 0x3F));
    }
}

// Random well-formed UTF-8 mixing ASCII, whitespace, Latin, CJK, emoji,
// combining marks and the odd code point from anywhere in Unicode.
std::string random_valid_utf8(Rng& rng, int code_points)
{
    std::string s;
    for (int i = 0; i < code_points; ++i) {
        char32_t cp = 0;
        switch (rng.below(8)) {
        case 0: cp = U" \t\n\r"[rng.below(4)]; break;
        case 1: case 2: cp = char32_t(0x20 + rng.below(0x5F)); break;
        case 3: cp = char32_t(0xC0 + rng.below(0x180)); break;
        case 4: cp = char32_t(0x4E00 + rng.below(0x5000)); break;
        case 5: cp = char32_t(0x1F300 + rng.below(0x300)); break;
        case 6: cp = char32_t(0x300 + rng.below(0x70)); break;
        default:
            do cp = char32_t(rng.below(0x110000)); while (cp >= 0xD800 && cp <= 0xDFFF);
        }
        append_utf8(s, cp);
    }
    return s;
}

std::string error_of(const std::function<void()>& f)
{
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    return {};
}

} // namespace

class TokenizerTest : public QObject {
    Q_OBJECT

private:
    std::optional<Tokenizer> m_tok;

    void check_round_trip(const std::string& text)
    {
        const std::vector<int32_t> ids = m_tok->encode(text);
        const std::string back = m_tok->decode(ids);
        if (back != text)
            QFAIL(qPrintable(QStringLiteral("round trip changed %1 bytes into %2 bytes: %3")
                                 .arg(text.size()).arg(back.size())
                                 .arg(QByteArray::fromStdString(text).toHex(' '))));
        for (const int32_t id : ids) QVERIFY(id >= 0 && id < m_tok->vocab_size());
    }

private slots:
    void initTestCase()
    {
        m_tok = Tokenizer::train(small_corpus(200'000), options(kVocab));
        QCOMPARE(m_tok->vocab_size(), kVocab);
    }

    void specialIds()
    {
        QCOMPARE(m_tok->unk_id(), 0);
        QCOMPARE(m_tok->bos_id(), 1);
        QCOMPARE(m_tok->eos_id(), 2);
        QCOMPARE(m_tok->piece(1), std::string("<s>"));
        int byte_pieces = 0;
        for (int id = 0; id < m_tok->vocab_size(); ++id) byte_pieces += m_tok->is_byte_piece(id);
        QCOMPARE(byte_pieces, 256);
    }

    void roundTripValidText_data()
    {
        QTest::addColumn<QByteArray>("text");
        const auto add = [](const char* name, std::string_view s) {
            QTest::newRow(name) << QByteArray(s.data(), qsizetype(s.size()));
        };
        add("empty", "");
        add("plain", "To be, or not to be, that is the question:");
        add("runs of spaces", "a  b   c    d          e");
        add("leading and trailing spaces", "   indented line   ");
        add("only spaces", "        ");
        add("newlines", "\n\nfirst\n\n\nsecond\n");
        add("tabs", "\tkey:\t\tvalue\t");
        add("crlf", "line one\r\nline two\r\n\r\n");
        add("lone cr", "a\rb\r");
        add("emoji", "ok 👍🏽 family 👨‍👩‍👧 flag 🇫🇷");
        add("cjk", "日本語の文章です。中文句子。한국어 문장");
        add("combining marks", "e\xCC\x81 a\xCC\x88 n\xCC\x83 Z\xCC\xB7\xCC\x9B");
        add("precomposed", "café naïve Ångström");
        add("nul and controls", std::string_view("a\0b\x01\x1F\x7F", 6));
        add("sentencepiece space symbol", "▁ ▁▁x▁");
        add("control piece spellings", "<unk><s></s><0x41><pad>");
        add("replacement char and bom", "\xEF\xBB\xBFstart \xEF\xBF\xBD end");
        add("max code point", "\xF4\x8F\xBF\xBF");
        add("digits", "1234567890 3.14159 1,000,000");
    }

    void roundTripValidText()
    {
        QFETCH(QByteArray, text);
        check_round_trip(text.toStdString());
    }

    void roundTripRandomValidText()
    {
        Rng rng(7);
        for (int i = 0; i < 300; ++i) {
            check_round_trip(random_valid_utf8(rng, int(rng.below(200))));
            if (QTest::currentTestFailed()) return;
        }
    }

    void roundTripInvalidUtf8_data()
    {
        QTest::addColumn<QByteArray>("text");
        const auto add = [](const char* name, std::string_view s) {
            QTest::newRow(name) << QByteArray(s.data(), qsizetype(s.size()));
        };
        add("lone continuation", "\x80");
        add("continuations in text", "ab\x80\xBF" "cd");
        add("truncated 2-byte", "x\xC3");
        add("truncated 3-byte", "\xE6\x97 then text");
        add("truncated 4-byte", "\xF0\x9F\x98");
        add("0xff and 0xfe", "\xFF\xFE text \xFF");
        add("overlong slash", "\xC0\xAF");
        add("overlong 3-byte", "\xE0\x80\xAF");
        add("overlong 4-byte", "\xF0\x80\x80\xAF");
        add("surrogate", "\xED\xA0\x80");
        add("above max code point", "\xF4\x90\x80\x80");
        add("5-byte form", "\xF8\x88\x80\x80\x80");
        add("latin-1 text", "caf\xE9 na\xEFve");
        add("broken inside cjk", "日本\xE8\xAA語");
        add("broken next to space symbol", "\xE2\x96\xE2\x96\x81\x81");
    }

    void roundTripInvalidUtf8()
    {
        QFETCH(QByteArray, text);
        check_round_trip(text.toStdString());
    }

    void roundTripLongLines()
    {
        // Lines far longer than one SentencePiece call takes are cut inside.
        std::string words, blob, cjk;
        Rng rng(9);
        while (words.size() < 100'000) words += "word" + std::to_string(rng.below(1000)) + (rng.below(5) ? " " : "  ");
        while (blob.size() < 100'000) blob += char('A' + rng.below(26));
        while (cjk.size() < 100'000) append_utf8(cjk, char32_t(0x4E00 + rng.below(200)));
        check_round_trip(words);
        check_round_trip(blob);
        check_round_trip(cjk + "\xFF" + blob + "\n" + words);
    }

    void invalidBytesBecomeBytePieces()
    {
        const std::vector<int32_t> ids = m_tok->encode("\xFF");
        QCOMPARE(ids.size(), size_t(1));
        QVERIFY(m_tok->is_byte_piece(ids[0]));
        QCOMPARE(m_tok->piece(ids[0]), std::string("<0xFF>"));

        // A lone byte between words splits the text there and nowhere else.
        const std::vector<int32_t> mixed = m_tok->encode("the\x80the");
        const std::vector<int32_t> word = m_tok->encode("the");
        std::vector<int32_t> expected = word;
        expected.push_back(ids[0] - 0x7F);   // byte pieces are in byte order: <0x80> is 0x7F below <0xFF>
        expected.insert(expected.end(), word.begin(), word.end());
        QCOMPARE(m_tok->piece(expected[word.size()]), std::string("<0x80>"));
        QCOMPARE(mixed, expected);

        // A literal U+2581 is not a space: it travels as its three bytes.
        const std::vector<int32_t> symbol = m_tok->encode("▁");
        QCOMPARE(symbol.size(), size_t(3));
        for (const int32_t id : symbol) QVERIFY(m_tok->is_byte_piece(id));
    }

    void roundTripRandomBytes()
    {
        Rng rng(11);
        for (int i = 0; i < 300; ++i) {
            std::string s(rng.below(120), '\0');
            for (char& c : s) c = char(rng.below(256));
            check_round_trip(s);
            if (QTest::currentTestFailed()) return;
        }
    }

    void roundTripWholeCorpus()
    {
        const std::string text(*embedded_resource("tinyshakespeare.txt"));
        QElapsedTimer timer;
        timer.start();
        const std::vector<int32_t> ids = m_tok->encode(text);
        qInfo("encoded %zu bytes into %zu tokens in %lld ms", text.size(), ids.size(), (long long)timer.elapsed());
        QVERIFY(m_tok->decode(ids) == text);
        QVERIFY(ids.size() < text.size() * 2 / 3);   // merges happen: far fewer tokens than bytes

        // Cutting after a newline changes nothing (the dataset relies on it).
        const size_t cut = text.find('\n', text.size() / 2) + 1;
        std::vector<int32_t> halves = m_tok->encode(std::string_view(text).substr(0, cut));
        const std::vector<int32_t> second = m_tok->encode(std::string_view(text).substr(cut));
        halves.insert(halves.end(), second.begin(), second.end());
        QVERIFY(halves == ids);
    }

    void tokenBytesAgreeWithDecode()
    {
        Rng rng(3);
        std::vector<int32_t> random_ids;
        std::string expected;
        for (int id = 0; id < m_tok->vocab_size(); ++id) {
            const std::string& bytes = m_tok->token_bytes(id);
            QCOMPARE(m_tok->decode({id}), bytes);
            if (id < 3) QVERIFY(bytes.empty());   // <unk>, <s>, </s> stand for no text
            if (m_tok->is_byte_piece(id)) QCOMPARE(bytes.size(), size_t(1));
            if (id >= 3 && !m_tok->is_byte_piece(id)) {
                // The piece as SentencePiece spells it, with its space symbol read as a space.
                const QString shown = QString::fromStdString(m_tok->piece(id)).replace(QChar(0x2581), QChar(' '));
                QCOMPARE(QByteArray::fromStdString(bytes), shown.toUtf8());
            }
        }
        for (int i = 0; i < 2000; ++i) {
            const auto id = int32_t(rng.below(uint64_t(m_tok->vocab_size())));
            random_ids.push_back(id);
            expected += m_tok->token_bytes(id);
        }
        QVERIFY(m_tok->decode(random_ids) == expected);
        QVERIFY(!error_of([&] { m_tok->decode({m_tok->vocab_size()}); }).empty());
        QVERIFY(!error_of([&] { m_tok->token_bytes(-1); }).empty());
    }

    void saveAndLoad()
    {
        QTemporaryDir dir;
        const std::filesystem::path file = std::filesystem::path(dir.path().toStdString()) / "tokenizer.model";
        m_tok->save(file);
        const Tokenizer loaded = Tokenizer::load(file);
        QVERIFY(loaded.serialized() == m_tok->serialized());
        QCOMPARE(loaded.fingerprint(), m_tok->fingerprint());
        QCOMPARE(loaded.vocab_size(), m_tok->vocab_size());
        const std::string text = shakespeare_prefix(5000) + "\xFF 日本 👍";
        QVERIFY(loaded.encode(text) == m_tok->encode(text));

        const Tokenizer moved = Tokenizer::from_serialized(m_tok->serialized());
        QCOMPARE(moved.fingerprint(), m_tok->fingerprint());
    }

    void loadRefusesBadFiles()
    {
        QTemporaryDir dir;
        const std::filesystem::path root(dir.path().toStdString());
        const std::string missing = error_of([&] { Tokenizer::load(root / "nothing.model"); });
        QVERIFY2(missing.find("nothing.model") != std::string::npos, missing.c_str());
        write_file_atomic(root / "garbage.model", "this is not a model");
        const std::string garbage = error_of([&] { Tokenizer::load(root / "garbage.model"); });
        QVERIFY2(garbage.find("garbage.model") != std::string::npos, garbage.c_str());
        QVERIFY(!error_of([] { Tokenizer().encode("x"); }).empty());
    }

    void vocabularyTooLargeForText()
    {
        const Corpus tiny = small_corpus(3000);
        const std::string message = error_of([&] { Tokenizer::train(tiny, options(4096)); });
        QVERIFY2(message.find("too large") != std::string::npos, message.c_str());
        QVERIFY2(message.find("vocab_size") != std::string::npos, message.c_str());
        // The message names the largest vocabulary that works; it does.
        const size_t at = message.find("at most ");
        QVERIFY2(at != std::string::npos, message.c_str());
        const int largest = std::stoi(message.substr(at + 8));
        QVERIFY(largest > kTokenizerReservedIds && largest < 4096);
        QCOMPARE(Tokenizer::train(tiny, options(largest)).vocab_size(), largest);
    }

    void vocabularyTooSmall()
    {
        const std::string message = error_of([] { Tokenizer::train(small_corpus(2000), options(100)); });
        QVERIFY2(message.find("260") != std::string::npos, message.c_str());
    }

    void manyDistinctCharacters()
    {
        // More distinct characters than the vocabulary holds: the rare ones
        // go through byte fallback instead of failing the training.
        Rng rng(5);
        std::string text;
        for (int line = 0; line < 800; ++line) {
            for (int i = 0; i < 40; ++i) {
                const double u = rng.uniform();
                append_utf8(text, char32_t(0x4E00 + int(3000 * u * u * u)));   // skewed: a few frequent characters
                if (rng.below(6) == 0) text += ' ';
            }
            text += '\n';
        }
        const Tokenizer tok = Tokenizer::train(Corpus::from_documents({Document{"cjk.txt", text}}), options(600));
        QCOMPARE(tok.vocab_size(), 600);
        QVERIFY(tok.decode(tok.encode(text)) == text);
    }

    void trainingIsDeterministic()
    {
        const Corpus corpus = small_corpus(40'000);
        TokenizerOptions one = options(400);
        one.threads = 1;
        const Tokenizer a = Tokenizer::train(corpus, one);
        const Tokenizer b = Tokenizer::train(corpus, options(400));
        QCOMPARE(a.fingerprint(), b.fingerprint());

        // Sampling a large corpus down is deterministic too.
        TokenizerOptions sampled = options(400);
        sampled.max_training_bytes = 20'000;
        const Tokenizer c = Tokenizer::train(corpus, sampled);
        const Tokenizer d = Tokenizer::train(corpus, sampled);
        QCOMPARE(c.fingerprint(), d.fingerprint());
        QVERIFY(c.fingerprint() != a.fingerprint());
    }

    void trainCachedReusesModel()
    {
        QTemporaryDir dir;
        const std::filesystem::path cache(dir.path().toStdString());
        const Corpus corpus = small_corpus(30'000);
        const Tokenizer first = Tokenizer::train_cached(corpus, options(350), cache);
        std::vector<std::filesystem::path> files;
        for (const auto& e : std::filesystem::directory_iterator(cache)) files.push_back(e.path());
        QCOMPARE(files.size(), size_t(1));
        QVERIFY(read_file(files[0]) == first.serialized());

        // A hit: the cached file is what comes back (checked by planting a
        // different valid model of the same vocabulary size there).
        const Tokenizer other = Tokenizer::train(small_corpus(20'000), options(350));
        write_file_atomic(files[0], other.serialized());
        QCOMPARE(Tokenizer::train_cached(corpus, options(350), cache).fingerprint(), other.fingerprint());

        // A damaged entry is retrained and replaced.
        write_file_atomic(files[0], "damaged");
        QCOMPARE(Tokenizer::train_cached(corpus, options(350), cache).fingerprint(), first.fingerprint());
        QVERIFY(read_file(files[0]) == first.serialized());

        // Other options are another entry.
        Tokenizer::train_cached(corpus, options(360), cache);
        files.clear();
        for (const auto& e : std::filesystem::directory_iterator(cache)) files.push_back(e.path());
        QCOMPARE(files.size(), size_t(2));
    }
};

QTEST_APPLESS_MAIN(TokenizerTest)
#include "tst_tokenizer.moc"
