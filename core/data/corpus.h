// Corpus: the text a model is trained on, as a list of documents.
//
// The default is the embedded Tiny Shakespeare; users add text files and
// folders (read recursively, hidden entries skipped, files sorted by path so
// the order is reproducible). Files that are not text (NUL bytes, or mostly
// invalid UTF-8) are refused with a message naming the file; text with a few
// invalid bytes is accepted: the tokenizer carries those bytes through byte
// pieces, so nothing is silently altered.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace crucible {

struct Document {
    std::string name;   // file path relative to the source it came from, or "tinyshakespeare.txt"
    std::string text;   // raw bytes
};

class Corpus {
public:
    static Corpus embedded_default();
    // Throws Error for a missing path, a file that is not text, or an empty result.
    static Corpus from_paths(const std::vector<std::filesystem::path>& paths);
    static Corpus from_documents(std::vector<Document> docs);   // throws Error when empty

    const std::vector<Document>& documents() const { return m_docs; }
    int64_t bytes() const;
    // Stable 64-bit content hash (names and bytes), hex; keys the caches.
    const std::string& fingerprint() const { return m_fingerprint; }
    // Human description: "Tiny Shakespeare (embedded)" or "3 files, 4.2 MB".
    std::string description() const;

private:
    Corpus(std::vector<Document> docs, std::string description);

    std::vector<Document> m_docs;
    std::string m_description;
    std::string m_fingerprint;   // computed once: the caches ask for it often
};

// The text a tokenizer may learn from: the first (1 − val_fraction) of every
// document's bytes (cut on a UTF-8 character boundary), so the held-out tail
// that validation reads stays unseen by the tokenizer too.
Corpus tokenizer_training_text(const Corpus& corpus, double val_fraction);

// True when the bytes look like text we can train on; otherwise *why says why.
bool looks_like_text(std::string_view bytes, std::string* why);

} // namespace crucible
