// Protocol-buffer wire format, just enough to find one flag: every field is a
// varint key (field number << 3 | wire type) followed by a varint (type 0),
// 8 bytes (1), a varint length and that many bytes (2), or 4 bytes (5).
#include "core/data/sentencepiece_proto.h"

#include "kernels/error.h"

#include <cstdint>
#include <optional>

namespace crucible::sentencepiece_proto {

namespace {

constexpr uint32_t kNormalizerSpecField = 3;    // ModelProto.normalizer_spec
constexpr uint32_t kAddDummyPrefixField = 3;    // NormalizerSpec.add_dummy_prefix

[[noreturn]] void malformed()
{
    throw Error("the tokenizer model is not a well-formed SentencePiece model (its protocol buffer is cut short)");
}

uint64_t read_varint(std::string_view bytes, size_t& pos)
{
    uint64_t value = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (pos >= bytes.size()) malformed();
        const auto byte = static_cast<unsigned char>(bytes[pos++]);
        value |= uint64_t(byte & 0x7f) << shift;
        if (!(byte & 0x80)) return value;
    }
    malformed();
}

struct Field {
    uint32_t number = 0;
    uint32_t wire_type = 0;
    uint64_t varint = 0;            // wire type 0
    std::string_view payload;       // wire type 2
};

// The next field at `pos`, advancing past it.
Field read_field(std::string_view bytes, size_t& pos)
{
    const uint64_t key = read_varint(bytes, pos);
    Field f;
    f.number = uint32_t(key >> 3);
    f.wire_type = uint32_t(key & 7);
    size_t skip = 0;
    switch (f.wire_type) {
    case 0: f.varint = read_varint(bytes, pos); break;
    case 1: skip = 8; break;
    case 2: {
        const uint64_t length = read_varint(bytes, pos);
        if (length > bytes.size() - pos) malformed();
        f.payload = bytes.substr(pos, size_t(length));
        skip = size_t(length);
        break;
    }
    case 5: skip = 4; break;
    default: malformed();   // groups (3, 4) are not used by SentencePiece
    }
    if (skip > bytes.size() - pos) malformed();
    pos += skip;
    return f;
}

void append_varint(std::string& out, uint64_t value)
{
    while (value >= 0x80) {
        out.push_back(char((value & 0x7f) | 0x80));
        value >>= 7;
    }
    out.push_back(char(value));
}

} // namespace

bool adds_dummy_prefix(std::string_view model_proto)
{
    std::optional<bool> flag;
    for (size_t pos = 0; pos < model_proto.size();) {
        const Field f = read_field(model_proto, pos);
        if (f.number != kNormalizerSpecField || f.wire_type != 2) continue;
        for (size_t inner = 0; inner < f.payload.size();) {
            const Field g = read_field(f.payload, inner);
            if (g.number == kAddDummyPrefixField && g.wire_type == 0) flag = g.varint != 0;
        }
    }
    return flag.value_or(true);
}

std::string with_dummy_prefix(std::string_view model_proto, bool on)
{
    std::string out(model_proto);
    const std::string spec = {char(kAddDummyPrefixField << 3 | 0), char(on ? 1 : 0)};
    append_varint(out, kNormalizerSpecField << 3 | 2);
    append_varint(out, spec.size());
    out += spec;
    return out;
}

} // namespace crucible::sentencepiece_proto
