// Corpus loading. Folders are walked recursively in sorted order so the same
// folder always gives the same documents in the same order (the tokenizer and
// the data order depend on it). A file that is not text stops the load with
// its name: training on a stray image or archive would silently produce a
// useless model, and the user can remove the file in a second.
#include "core/data/corpus.h"

#include "core/data/utf8.h"
#include "core/io/file_util.h"
#include "kernels/error.h"
#include "resources/embedded_resources.h"

#include <algorithm>
#include <cstdio>
#include <set>

namespace fs = std::filesystem;

namespace crucible {

namespace {

constexpr const char* kEmbeddedName = "tinyshakespeare.txt";
// Above this share of stray bytes a file is taken for binary. Text in a legacy
// 8-bit encoding (Latin-1 accents: a few percent) stays below and trains fine.
constexpr double kMaxInvalidShare = 0.10;

std::string format_bytes(int64_t bytes)
{
    char buf[32];
    if (bytes < 1000) std::snprintf(buf, sizeof buf, "%lld B", (long long)bytes);
    else if (bytes < 1000 * 1000) std::snprintf(buf, sizeof buf, "%.1f KB", double(bytes) / 1e3);
    else if (bytes < 1000LL * 1000 * 1000) std::snprintf(buf, sizeof buf, "%.1f MB", double(bytes) / 1e6);
    else std::snprintf(buf, sizeof buf, "%.1f GB", double(bytes) / 1e9);
    return buf;
}

bool is_hidden(const fs::path& p)
{
    const std::string name = p.filename().string();
    return !name.empty() && name[0] == '.';
}

// The name a folder contributes to its documents' names ("notes" for
// "/home/me/notes/", "." resolved to the real folder name).
std::string folder_label(const fs::path& folder)
{
    std::error_code ec;
    fs::path p = fs::weakly_canonical(folder, ec);
    if (ec) p = folder.lexically_normal();
    if (p.filename().empty()) p = p.parent_path();
    return p.filename().string();
}

std::string read_text_file(const fs::path& file, const std::string& shown_name)
{
    std::string bytes = read_file(file);
    std::string why;
    if (!looks_like_text(bytes, &why))
        throw Error(shown_name + " looks like a binary file (" + why + "); Crucible trains on UTF-8 text. "
                    "Remove it from the corpus or convert it to text.");
    return bytes;
}

std::vector<fs::path> text_files_under(const fs::path& folder)
{
    std::vector<fs::path> files;
    std::error_code ec;
    fs::recursive_directory_iterator it(folder, fs::directory_options::skip_permission_denied, ec);
    if (ec) throw Error("cannot read the folder " + folder.string() + ": " + ec.message());
    for (const fs::recursive_directory_iterator end; it != end; it.increment(ec)) {
        if (ec) throw Error("cannot read the folder " + folder.string() + ": " + ec.message());
        const fs::directory_entry& entry = *it;
        if (is_hidden(entry.path())) {
            if (entry.is_directory(ec)) it.disable_recursion_pending();
            continue;
        }
        if (entry.is_regular_file(ec)) files.push_back(entry.path());
    }
    std::sort(files.begin(), files.end());
    return files;
}

} // namespace

bool looks_like_text(std::string_view bytes, std::string* why)
{
    const auto say = [&](std::string reason) {
        if (why) *why = std::move(reason);
        return false;
    };
    if (bytes.find('\0') != std::string_view::npos) return say("contains NUL bytes");
    size_t suspicious = utf8::count_invalid_bytes(bytes);
    // Control characters other than tab, newlines, form feed and escape do not
    // occur in text but are everywhere in binary formats.
    for (const char ch : bytes) {
        const auto c = static_cast<unsigned char>(ch);
        if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r' && c != '\f' && c != '\v' && c != 0x1B) || c == 0x7F)
            ++suspicious;
    }
    if (!bytes.empty() && double(suspicious) > kMaxInvalidShare * double(bytes.size())) {
        const int percent = int(100.0 * double(suspicious) / double(bytes.size()) + 0.5);
        return say(std::to_string(percent) + "% of its bytes are not valid UTF-8 text");
    }
    return true;
}

Corpus::Corpus(std::vector<Document> docs, std::string description)
    : m_docs(std::move(docs)), m_description(std::move(description))
{
    std::erase_if(m_docs, [](const Document& d) { return d.text.empty(); });
    if (m_docs.empty()) throw Error("the corpus is empty: add at least one non-empty text file");
    // Each document contributes its name, its length and the hash of its
    // bytes, so moving text between documents changes the fingerprint.
    std::string summary;
    for (const Document& d : m_docs)
        summary += d.name + '\0' + std::to_string(d.text.size()) + ':' + hash_hex(d.text) + '\n';
    m_fingerprint = hash_hex(summary);
}

Corpus Corpus::embedded_default()
{
    const auto text = embedded_resource(kEmbeddedName);
    if (!text) throw Error("the embedded corpus is missing from this build of Crucible; add a text file instead");
    return Corpus({Document{kEmbeddedName, std::string(*text)}}, "Tiny Shakespeare (embedded)");
}

Corpus Corpus::from_paths(const std::vector<fs::path>& paths)
{
    std::vector<Document> docs;
    std::set<fs::path> seen;   // the same file given twice (directly and via its folder) counts once
    const auto add = [&](const fs::path& file, std::string name) {
        std::error_code ec;
        const fs::path key = fs::weakly_canonical(file, ec);
        if (!seen.insert(ec ? file : key).second) return;
        std::string text = read_text_file(file, name);
        if (!text.empty()) docs.push_back(Document{std::move(name), std::move(text)});
    };

    for (const fs::path& path : paths) {
        std::error_code ec;
        const fs::file_status status = fs::status(path, ec);
        if (!fs::exists(status)) {
            if (ec && ec != std::errc::no_such_file_or_directory)
                throw Error("cannot open " + path.string() + ": " + ec.message());
            throw Error(path.string() + " not found");
        }
        if (fs::is_directory(status)) {
            const size_t before = docs.size();
            const std::string label = folder_label(path);
            for (const fs::path& file : text_files_under(path))
                add(file, (fs::path(label) / file.lexically_relative(path)).generic_string());
            if (docs.size() == before)
                throw Error("the folder " + path.string() + " contains no non-empty text files "
                            "(hidden files and folders are skipped)");
        } else if (fs::is_regular_file(status)) {
            add(path, path.filename().string());
        } else {
            // A FIFO, socket or device would block the read or never end.
            throw Error(path.string() + " is not a regular file (a pipe, socket or device); "
                        "save the text to a file and pass that");
        }
    }
    if (docs.empty()) throw Error("the corpus is empty: add at least one non-empty text file");

    int64_t total = 0;
    for (const Document& d : docs) total += int64_t(d.text.size());
    std::string description = docs.size() == 1
        ? docs[0].name + " (" + format_bytes(total) + ")"
        : std::to_string(docs.size()) + " files, " + format_bytes(total);
    return Corpus(std::move(docs), std::move(description));
}

Corpus Corpus::from_documents(std::vector<Document> docs)
{
    int64_t total = 0;
    size_t count = 0;
    for (const Document& d : docs) {
        total += int64_t(d.text.size());
        count += d.text.empty() ? 0 : 1;
    }
    std::string description = std::to_string(count) + (count == 1 ? " document, " : " documents, ") + format_bytes(total);
    return Corpus(std::move(docs), std::move(description));
}

Corpus tokenizer_training_text(const Corpus& corpus, double val_fraction)
{
    std::vector<Document> heads;
    for (const Document& d : corpus.documents()) {
        size_t cut = size_t(double(d.text.size()) * (1.0 - val_fraction));
        // Back up over UTF-8 continuation bytes (10xxxxxx) to a character start.
        while (cut > 0 && cut < d.text.size() && (static_cast<unsigned char>(d.text[cut]) & 0xC0) == 0x80) --cut;
        if (cut > 0) heads.push_back(Document{d.name, d.text.substr(0, cut)});
    }
    if (heads.empty()) return corpus;
    return Corpus::from_documents(std::move(heads));
}

int64_t Corpus::bytes() const
{
    int64_t total = 0;
    for (const Document& d : m_docs) total += int64_t(d.text.size());
    return total;
}

std::string Corpus::description() const { return m_description; }

} // namespace crucible
