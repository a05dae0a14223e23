// Layout (native byte order: the cache never leaves the machine that wrote
// it, and the byte-order mark below makes a foreign file a miss):
//   "CRUCTOKS"  u32 format version  u32 0x01020304
//   u64 documents, u64 token count per document
//   i32 tokens, document after document
//   16 hex digits: FNV-1a of everything before
#include "core/data/token_cache.h"

#include "core/io/file_util.h"
#include "kernels/error.h"

#include <cstring>

namespace crucible::token_cache {

namespace {

constexpr char kMagic[8] = {'C', 'R', 'U', 'C', 'T', 'O', 'K', 'S'};
constexpr uint32_t kFormatVersion = 1;
constexpr uint32_t kByteOrderMark = 0x01020304;
constexpr size_t kChecksumChars = 16;

template <typename T>
void put(std::string& out, T value)
{
    out.append(reinterpret_cast<const char*>(&value), sizeof value);
}

// Bounds-checked reading from the file image.
class Reader {
public:
    explicit Reader(std::string_view bytes) : m_bytes(bytes) {}
    template <typename T>
    bool get(T& value)
    {
        if (m_bytes.size() - m_pos < sizeof value) return false;
        std::memcpy(&value, m_bytes.data() + m_pos, sizeof value);
        m_pos += sizeof value;
        return true;
    }
    size_t left() const { return m_bytes.size() - m_pos; }
    const char* here() const { return m_bytes.data() + m_pos; }
    void skip(size_t n) { m_pos += n; }

private:
    std::string_view m_bytes;
    size_t m_pos = 0;
};

} // namespace

std::filesystem::path file_for(const std::filesystem::path& cache_dir, const std::string& corpus_fingerprint,
                               const std::string& tokenizer_fingerprint)
{
    const std::string key = hash_hex(corpus_fingerprint + "|" + tokenizer_fingerprint + "|tokens-v" +
                                     std::to_string(kFormatVersion));
    return cache_dir / ("tokens-" + key + ".bin");
}

std::optional<DocumentTokens> read(const std::filesystem::path& file, size_t documents, int vocab_size)
{
    std::error_code ec;
    if (!std::filesystem::exists(file, ec)) return std::nullopt;
    std::string bytes;
    try {
        bytes = read_file(file);
    } catch (const Error&) {
        return std::nullopt;
    }
    if (bytes.size() < kChecksumChars) return std::nullopt;
    const std::string_view body(bytes.data(), bytes.size() - kChecksumChars);
    if (hash_hex(body) != std::string_view(bytes).substr(body.size())) return std::nullopt;

    Reader in(body);
    char magic[8];
    uint32_t version = 0, mark = 0;
    uint64_t count = 0;
    if (!in.get(magic) || std::memcmp(magic, kMagic, sizeof magic) != 0) return std::nullopt;
    if (!in.get(version) || version != kFormatVersion) return std::nullopt;
    if (!in.get(mark) || mark != kByteOrderMark) return std::nullopt;
    if (!in.get(count) || count != documents) return std::nullopt;
    std::vector<uint64_t> lengths(documents);
    uint64_t total = 0;
    for (uint64_t& n : lengths) {
        if (!in.get(n) || n > in.left() / sizeof(int32_t)) return std::nullopt;
        total += n;
    }
    if (total * sizeof(int32_t) != in.left()) return std::nullopt;

    DocumentTokens tokens(documents);
    for (size_t d = 0; d < documents; ++d) {
        if (lengths[d] == 0) continue;   // an empty document: no data, and data() may be null
        tokens[d].resize(size_t(lengths[d]));
        std::memcpy(tokens[d].data(), in.here(), size_t(lengths[d]) * sizeof(int32_t));
        in.skip(size_t(lengths[d]) * sizeof(int32_t));
        for (const int32_t id : tokens[d])
            if (id < 0 || id >= vocab_size) return std::nullopt;
    }
    return tokens;
}

void write(const std::filesystem::path& file, const DocumentTokens& tokens)
{
    std::string out;
    size_t total = 0;
    for (const auto& doc : tokens) total += doc.size();
    out.reserve(32 + 8 * tokens.size() + 4 * total + kChecksumChars);
    out.append(kMagic, sizeof kMagic);
    put(out, kFormatVersion);
    put(out, kByteOrderMark);
    put(out, uint64_t(tokens.size()));
    for (const auto& doc : tokens) put(out, uint64_t(doc.size()));
    for (const auto& doc : tokens) out.append(reinterpret_cast<const char*>(doc.data()), doc.size() * sizeof(int32_t));
    out += hash_hex(out);
    write_file_atomic(file, out);
}

} // namespace crucible::token_cache
