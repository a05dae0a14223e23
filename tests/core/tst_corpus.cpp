// Corpus: the embedded default, files and folders (recursive, sorted, hidden
// entries and empty files skipped), and the refusals a user must understand:
// a binary file (named, with the reason), a missing path, an empty corpus, a
// folder without text. Plus the text check itself and the fingerprint that
// keys the caches.
#include "core/data/corpus.h"

#include "core/io/file_util.h"
#include "kernels/error.h"

#include <QTemporaryDir>
#include <QTest>

#include <filesystem>
#include <functional>

using namespace crucible;
namespace fs = std::filesystem;

namespace {

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

std::vector<std::string> names(const Corpus& c)
{
    std::vector<std::string> out;
    for (const Document& d : c.documents()) out.push_back(d.name);
    return out;
}

} // namespace

class CorpusTest : public QObject {
    Q_OBJECT

private:
    QTemporaryDir m_dir;
    fs::path root() const { return fs::path(m_dir.path().toStdString()); }

    fs::path write(const fs::path& relative, std::string_view bytes)
    {
        const fs::path p = root() / relative;
        write_file_atomic(p, bytes);
        return p;
    }

private slots:
    void embeddedDefault()
    {
        const Corpus c = Corpus::embedded_default();
        QCOMPARE(c.documents().size(), size_t(1));
        QCOMPARE(c.documents()[0].name, std::string("tinyshakespeare.txt"));
        QVERIFY(c.bytes() > 1'000'000);
        QVERIFY(c.documents()[0].text.starts_with("First Citizen:"));
        QCOMPARE(c.description(), std::string("Tiny Shakespeare (embedded)"));
        QCOMPARE(c.fingerprint().size(), size_t(16));
        QCOMPARE(Corpus::embedded_default().fingerprint(), c.fingerprint());
    }

    void filesAndFolders()
    {
        write("books/b.txt", "second\n");
        write("books/a.txt", "first\n");
        write("books/sub/c.md", "nested\n");
        write("books/sub/deeper/d.txt", "deepest\n");
        write("books/empty.txt", "");
        write("books/.hidden.txt", "secret\n");
        write("books/.git/config", "[core]\n");
        write("books/sub/.cache/x.txt", "cached\n");
        const fs::path single = write("single.txt", "alone\n");

        const Corpus c = Corpus::from_paths({root() / "books", single});
        const std::vector<std::string> expected = {"books/a.txt", "books/b.txt", "books/sub/c.md",
                                                   "books/sub/deeper/d.txt", "single.txt"};
        QCOMPARE(names(c), expected);
        QCOMPARE(c.documents()[0].text, std::string("first\n"));
        QCOMPARE(c.bytes(), int64_t(6 + 7 + 7 + 8 + 6));
        QCOMPARE(c.description(), std::string("5 files, 34 B"));

        // Reproducible, and a file named twice (directly and through its
        // folder) is read once.
        const Corpus again = Corpus::from_paths({root() / "books", single, root() / "books" / "a.txt"});
        QCOMPARE(names(again), expected);
        QCOMPARE(again.fingerprint(), c.fingerprint());

        const Corpus one = Corpus::from_paths({single});
        QCOMPARE(one.description(), std::string("single.txt (6 B)"));
    }

    void binaryFileRefused()
    {
        const fs::path nul = write("bin/x.bin", std::string("PK\3\4\0\0\0data", 11));
        const std::string message = error_of([&] { Corpus::from_paths({nul}); });
        QVERIFY2(contains(message, "x.bin looks like a binary file (contains NUL bytes)"), message.c_str());
        QVERIFY2(contains(message, "UTF-8 text"), message.c_str());

        std::string noise;
        for (int i = 0; i < 400; ++i) noise += char(0x80 + (i * 37) % 0x80);
        const fs::path garbled = write("bin/noise.dat", noise);
        const std::string why = error_of([&] { Corpus::from_paths({garbled}); });
        QVERIFY2(contains(why, "noise.dat looks like a binary file"), why.c_str());
        QVERIFY2(contains(why, "not valid UTF-8"), why.c_str());

        // Inside a folder too, named by its place in the folder.
        write("mixed/notes.txt", "words\n");
        write("mixed/img/photo.png", std::string("\x89PNG\r\n\x1A\n\0\0\0\rIHDR", 16));
        const std::string in_folder = error_of([&] { Corpus::from_paths({root() / "mixed"}); });
        QVERIFY2(contains(in_folder, "mixed/img/photo.png looks like a binary file"), in_folder.c_str());
    }

    void fewInvalidBytesAccepted()
    {
        // Latin-1 text: a few stray bytes, carried later by byte pieces.
        const fs::path latin1 = write("latin1.txt", "Le caf\xE9 est tr\xE8s bon, na\xEFvement dit.\n");
        const Corpus c = Corpus::from_paths({latin1});
        QCOMPARE(c.documents()[0].text, std::string("Le caf\xE9 est tr\xE8s bon, na\xEFvement dit.\n"));
    }

    void looksLikeText()
    {
        std::string why;
        QVERIFY(looks_like_text("plain text\n\twith tabs\r\n", &why));
        QVERIFY(looks_like_text("日本語 👍 e\xCC\x81", &why));
        QVERIFY(looks_like_text("", &why));
        QVERIFY(looks_like_text("\x1B[1mbold\x1B[0m\f", &why));   // terminal escapes and form feeds occur in text
        QVERIFY(!looks_like_text(std::string_view("a\0b", 3), &why));
        QCOMPARE(why, std::string("contains NUL bytes"));
        QVERIFY(!looks_like_text("\xFF\xFE\xFD\xFC", &why));
        QVERIFY(contains(why, "100%"));
        QVERIFY(!looks_like_text("\x01\x02\x03\x04\x05 text", &why));   // control characters are binary
        QVERIFY(!looks_like_text("\x01", nullptr));
    }

    void missingPath()
    {
        const std::string message = error_of([&] { Corpus::from_paths({root() / "no_such_file.txt"}); });
        QVERIFY2(contains(message, "no_such_file.txt not found"), message.c_str());
    }

    void emptyCorpus()
    {
        const fs::path empty = write("empty_only.txt", "");
        const std::string from_file = error_of([&] { Corpus::from_paths({empty}); });
        QVERIFY2(contains(from_file, "the corpus is empty: add at least one non-empty text file"), from_file.c_str());
        QVERIFY(contains(error_of([] { Corpus::from_paths({}); }), "the corpus is empty"));
        QVERIFY(contains(error_of([] { Corpus::from_documents({}); }), "the corpus is empty"));
        QVERIFY(contains(error_of([] { Corpus::from_documents({Document{"a", ""}}); }), "the corpus is empty"));
    }

    void emptyFolder()
    {
        fs::create_directories(root() / "nothing");
        const std::string bare = error_of([&] { Corpus::from_paths({root() / "nothing"}); });
        QVERIFY2(contains(bare, "contains no non-empty text files"), bare.c_str());

        write("only_hidden/.notes.txt", "hidden\n");
        write("only_hidden/blank.txt", "");
        const std::string hidden = error_of([&] { Corpus::from_paths({root() / "only_hidden"}); });
        QVERIFY2(contains(hidden, "only_hidden") && contains(hidden, "no non-empty text files"), hidden.c_str());
    }

    void fromDocuments()
    {
        const Corpus c = Corpus::from_documents({Document{"a", "alpha"}, Document{"skipped", ""}, Document{"b", "beta"}});
        QCOMPARE(c.documents().size(), size_t(2));
        QCOMPARE(c.bytes(), int64_t(9));
        QCOMPARE(c.description(), std::string("2 documents, 9 B"));
    }

    void fingerprintFollowsContent()
    {
        const auto fp = [](std::vector<Document> docs) { return Corpus::from_documents(std::move(docs)).fingerprint(); };
        const std::string base = fp({{"a", "one"}, {"b", "two"}});
        QCOMPARE(fp({{"a", "one"}, {"b", "two"}}), base);
        QVERIFY(fp({{"a", "one"}, {"b", "twO"}}) != base);       // bytes
        QVERIFY(fp({{"a", "one"}, {"c", "two"}}) != base);       // names
        QVERIFY(fp({{"b", "two"}, {"a", "one"}}) != base);       // order
        QVERIFY(fp({{"a", "onet"}, {"b", "wo"}}) != base);       // where one document ends
    }
};

QTEST_APPLESS_MAIN(CorpusTest)
#include "tst_corpus.moc"
