// Tokenizer: loading, saving, encoding and decoding around a SentencePiece
// model (training lives in tokenizer_training.cpp).
//
// Encoding walks the bytes once: well-formed UTF-8 accumulates into a run that
// SentencePiece encodes; a byte that is not well-formed UTF-8, or a literal
// U+2581 (SentencePiece's own symbol for a space, which its decoder would turn
// into ' '), ends the run and becomes byte pieces. Runs are handed over a line
// at a time, cut after the newline: SentencePiece's BPE gets slower per byte
// on long inputs (measured: whole 1 MB texts encode 4x slower than their
// lines), and no piece of a model trained here contains a newline (training
// text is split into lines), so the cut changes nothing.
#include "core/data/tokenizer.h"

#include "core/data/sentencepiece_proto.h"
#include "core/data/utf8.h"
#include "core/io/file_util.h"
#include "kernels/error.h"

#include <sentencepiece_processor.h>

#include <cstdio>

namespace crucible {

namespace {

// A line longer than this is handed to SentencePiece in parts, cut before a
// word (free: pieces only start with spaces), or anywhere after 8 times this.
constexpr size_t kRunMaxBytes = 1024;
constexpr std::string_view kMetaSpace = "\xE2\x96\x81";   // U+2581, SentencePiece's space

bool is_meta_space(std::string_view text, size_t pos) { return text.substr(pos, 3) == kMetaSpace; }

// "<0x41>" -> 0x41; -1 when the piece is not in that form.
int parse_byte_piece(const std::string& piece)
{
    unsigned value = 0;
    char tail = 0;
    if (piece.size() != 6 || std::sscanf(piece.c_str(), "<0x%2X%c", &value, &tail) != 2 || tail != '>') return -1;
    return int(value);
}

} // namespace

Tokenizer::Tokenizer() = default;
Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

Tokenizer Tokenizer::from_serialized(const std::string& model_proto)
{
    Tokenizer t;
    t.m_sp = std::make_unique<sentencepiece::SentencePieceProcessor>();
    auto status = t.m_sp->LoadFromSerializedProto(model_proto);
    if (!status.ok()) throw Error("not a valid SentencePiece tokenizer model: " + status.ToString());
    // A dummy prefix is added by encode() instead, once per text (see the header).
    t.m_space_prefix = sentencepiece_proto::adds_dummy_prefix(model_proto);
    if (t.m_space_prefix) {
        status = t.m_sp->LoadFromSerializedProto(sentencepiece_proto::with_dummy_prefix(model_proto, false));
        if (!status.ok()) throw Error("not a valid SentencePiece tokenizer model: " + status.ToString());
    }
    t.m_proto = model_proto;
    t.index_pieces();
    return t;
}

Tokenizer Tokenizer::load(const std::filesystem::path& model_file)
{
    const std::string bytes = read_file(model_file);
    try {
        return from_serialized(bytes);
    } catch (const Error& e) {
        throw Error(model_file.string() + " cannot be used as a tokenizer: " + e.what());
    }
}

void Tokenizer::save(const std::filesystem::path& model_file) const
{
    processor();   // refuse to write an empty model
    write_file_atomic(model_file, m_proto);
}

void Tokenizer::index_pieces()
{
    const auto& sp = *m_sp;
    const int n = sp.GetPieceSize();
    m_bytes.assign(size_t(n), std::string());
    m_byte_to_id.assign(256, -1);
    std::string summary;
    for (int id = 0; id < n; ++id) {
        const std::string& piece = sp.IdToPiece(id);
        char kind = 'n';
        if (sp.IsByte(id)) {
            kind = 'b';
            const int byte = parse_byte_piece(piece);
            if (byte < 0) throw Error("the tokenizer model has a malformed byte piece \"" + piece + "\"");
            m_bytes[size_t(id)] = std::string(1, char(byte));
            m_byte_to_id[size_t(byte)] = id;
        } else if (sp.IsControl(id) || sp.IsUnknown(id) || sp.IsUnused(id)) {
            kind = 'c';   // stands for no text
        } else {
            std::string& bytes = m_bytes[size_t(id)];
            bytes = piece;
            for (size_t at = bytes.find(kMetaSpace); at != std::string::npos; at = bytes.find(kMetaSpace, at + 1))
                bytes.replace(at, kMetaSpace.size(), " ");
        }
        char score[32];
        std::snprintf(score, sizeof score, "%a", double(sp.GetScore(id)));
        summary += kind;
        summary += piece + '\0' + score + '\n';
    }
    for (int byte = 0; byte < 256; ++byte)
        if (m_byte_to_id[size_t(byte)] < 0)
            throw Error("the tokenizer model has no byte pieces (byte fallback), so it cannot represent every text; "
                        "train a new tokenizer in Crucible");
    m_unk_id = sp.unk_id();
    if (m_space_prefix) summary += "space prefix\n";
    m_fingerprint = hash_hex(summary);
}

const sentencepiece::SentencePieceProcessor& Tokenizer::processor() const
{
    if (!m_sp) throw Error("no tokenizer is loaded: train one or load tokenizer.model first");
    return *m_sp;
}

int Tokenizer::vocab_size() const { return m_sp ? int(m_bytes.size()) : 0; }
int Tokenizer::bos_id() const { return processor().bos_id(); }
int Tokenizer::eos_id() const { return processor().eos_id(); }
int Tokenizer::unk_id() const { return processor().unk_id(); }

void Tokenizer::encode_bytes(std::string_view bytes, std::vector<int32_t>& ids) const
{
    for (const char c : bytes) ids.push_back(m_byte_to_id[static_cast<unsigned char>(c)]);
}

void Tokenizer::encode_text_run(std::string_view run, std::vector<int32_t>& ids, std::vector<int>& scratch) const
{
    if (run.empty()) return;
    const auto& sp = *m_sp;
    const auto status = sp.Encode(run, &scratch);
    if (!status.ok()) throw Error("the tokenizer failed to encode text: " + status.ToString());
    bool has_unknown = false;
    for (const int id : scratch) has_unknown |= id == m_unk_id;
    if (!has_unknown) {
        ids.insert(ids.end(), scratch.begin(), scratch.end());
        return;
    }
    // Byte fallback should make <unk> impossible; should a model still emit it,
    // keep the text it covers as byte pieces rather than lose it.
    const auto spt = sp.EncodeAsImmutableProto(run);
    for (size_t i = 0; i < spt.pieces_size(); ++i) {
        const auto piece = spt.pieces(int(i));
        if (int(piece.id()) == m_unk_id) encode_bytes(run.substr(piece.begin(), piece.end() - piece.begin()), ids);
        else ids.push_back(int32_t(piece.id()));
    }
}

std::vector<int32_t> Tokenizer::encode(std::string_view text) const
{
    if (!m_space_prefix || text.empty()) return encode_continuation(text);
    std::string prefixed;
    prefixed.reserve(text.size() + 1);
    prefixed.append(1, ' ').append(text);
    return encode_continuation(prefixed);
}

std::vector<int32_t> Tokenizer::encode_continuation(std::string_view text) const
{
    processor();
    std::vector<int32_t> ids;
    ids.reserve(text.size() / 3 + 16);
    std::vector<int> scratch;
    size_t run_begin = 0;
    const auto flush = [&](size_t end) {
        encode_text_run(text.substr(run_begin, end - run_begin), ids, scratch);
        run_begin = end;
    };
    for (size_t pos = 0; pos < text.size();) {
        const auto c = static_cast<unsigned char>(text[pos]);
        // A very long line is cut before a word, or between any two
        // characters when it has no spaces (some scripts, encoded blobs).
        const size_t run = pos - run_begin;
        if (run >= kRunMaxBytes && ((c == ' ' && text[pos - 1] != ' ') || run >= 8 * kRunMaxBytes)) flush(pos);
        if (c < 0x80) {
            ++pos;
            if (c == '\n') flush(pos);
            continue;
        }
        const int length = utf8::sequence_length(text, pos);
        if (length == 0 || is_meta_space(text, pos)) {
            flush(pos);
            const size_t raw = length == 0 ? 1 : size_t(length);
            encode_bytes(text.substr(pos, raw), ids);
            pos += raw;
            run_begin = pos;
            continue;
        }
        pos += size_t(length);
    }
    flush(text.size());
    return ids;
}

const std::string& Tokenizer::token_bytes(int32_t id) const
{
    if (id < 0 || size_t(id) >= m_bytes.size())
        throw Error("token id " + std::to_string(id) + " is outside the vocabulary of " +
                    std::to_string(m_bytes.size()) + " tokens");
    return m_bytes[size_t(id)];
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const
{
    std::string text;
    text.reserve(ids.size() * 4);
    for (const int32_t id : ids) text += token_bytes(id);
    return text;
}

std::string Tokenizer::piece(int32_t id) const
{
    token_bytes(id);   // range check with the same message
    return processor().IdToPiece(id);
}

bool Tokenizer::is_byte_piece(int32_t id) const
{
    token_bytes(id);
    return processor().IsByte(id);
}

TokenKind Tokenizer::kind(int32_t id) const
{
    token_bytes(id);
    const auto& sp = processor();
    if (sp.IsByte(id)) return TokenKind::byte;
    if (sp.IsUnknown(id)) return TokenKind::unknown;
    if (sp.IsControl(id)) return TokenKind::control;
    if (sp.IsUnused(id)) return TokenKind::unused;
    return TokenKind::normal;
}

float Tokenizer::score(int32_t id) const
{
    token_bytes(id);
    return processor().GetScore(id);
}

} // namespace crucible
