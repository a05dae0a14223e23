// GGUF reading and writing (see gguf.h for the layout).
#include "core/io/gguf.h"

#include "core/io/file_util.h"
#include "kernels/error.h"
#include "kernels/half.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

namespace fs = std::filesystem;

namespace crucible::gguf {

namespace {

constexpr uint32_t kMagic = 0x46554747;   // "GGUF" read as a little-endian u32
constexpr int64_t kQ8Block = 32;
constexpr uint64_t kQ8BlockBytes = 2 + kQ8Block;
// More dimensions than ggml has, or a string longer than this, means a corrupt file.
constexpr uint32_t kMaxDims = 4;

template <typename T> void put(std::string& out, T v)
{
    static_assert(std::endian::native == std::endian::little, "GGUF is little-endian");
    char bytes[sizeof(T)];
    std::memcpy(bytes, &v, sizeof(T));
    out.append(bytes, sizeof(T));
}

void put_string(std::string& out, std::string_view s)
{
    put<uint64_t>(out, s.size());
    out.append(s);
}

uint64_t align_up(uint64_t n, uint64_t alignment) { return (n + alignment - 1) / alignment * alignment; }

bool known_type(uint32_t t)
{
    return t == uint32_t(TensorType::f32) || t == uint32_t(TensorType::f16) || t == uint32_t(TensorType::q8_0) ||
           t == uint32_t(TensorType::bf16);
}

size_t scalar_size(ValueType t)
{
    switch (t) {
    case ValueType::u8: case ValueType::i8: case ValueType::boolean: return 1;
    case ValueType::u16: case ValueType::i16: return 2;
    case ValueType::u32: case ValueType::i32: case ValueType::f32: return 4;
    case ValueType::u64: case ValueType::i64: case ValueType::f64: return 8;
    default: return 0;
    }
}

// A cursor over the file that refuses to read past its end.
class Cursor {
public:
    Cursor(std::string_view bytes, const std::string& source) : m_bytes(bytes), m_source(source) {}

    [[noreturn]] void fail(const std::string& problem) const
    {
        throw Error(m_source + " is not a valid GGUF file: " + problem + " (at byte " + std::to_string(m_pos) +
                    "); the file is corrupt or not a GGUF model — export it again");
    }
    size_t pos() const { return m_pos; }
    size_t remaining() const { return m_bytes.size() - m_pos; }

    template <typename T> T get()
    {
        if (remaining() < sizeof(T)) fail("the file ends in the middle of a value");
        T v;
        std::memcpy(&v, m_bytes.data() + m_pos, sizeof(T));
        m_pos += sizeof(T);
        return v;
    }

    std::string string()
    {
        const uint64_t length = get<uint64_t>();
        if (length > remaining()) fail("a string claims " + std::to_string(length) + " bytes, more than the file holds");
        std::string s(m_bytes.substr(m_pos, size_t(length)));
        m_pos += size_t(length);
        return s;
    }

    ValueType value_type()
    {
        const uint32_t t = get<uint32_t>();
        if (t > uint32_t(ValueType::f64)) fail("unknown metadata value type " + std::to_string(t));
        return ValueType(t);
    }

    // One scalar into number/integer (numbers, bools) or text (strings).
    void scalar(ValueType t, double& number, int64_t& integer, std::string& text)
    {
        switch (t) {
        case ValueType::u8: integer = get<uint8_t>(); break;
        case ValueType::i8: integer = get<int8_t>(); break;
        case ValueType::u16: integer = get<uint16_t>(); break;
        case ValueType::i16: integer = get<int16_t>(); break;
        case ValueType::u32: integer = get<uint32_t>(); break;
        case ValueType::i32: integer = get<int32_t>(); break;
        case ValueType::u64: {
            const uint64_t u = get<uint64_t>();
            if (u > uint64_t(std::numeric_limits<int64_t>::max())) fail("a u64 value is too large");
            integer = int64_t(u);
            break;
        }
        case ValueType::i64: integer = get<int64_t>(); break;
        case ValueType::boolean: {
            const uint8_t b = get<uint8_t>();
            if (b > 1) fail("a bool value is " + std::to_string(b));
            integer = b;
            break;
        }
        case ValueType::f32: number = get<float>(); return;
        case ValueType::f64: number = get<double>(); return;
        case ValueType::string: text = string(); return;
        default: fail("arrays of arrays are not supported");
        }
        number = double(integer);
    }

    Value value(ValueType t)
    {
        Value v;
        v.type = t;
        if (t != ValueType::array) {
            scalar(t, v.number, v.integer, v.text);
            return v;
        }
        v.element_type = value_type();
        const uint64_t count = get<uint64_t>();
        // Every element takes at least one byte (a string at least eight).
        const size_t least = v.element_type == ValueType::string ? 8 : std::max<size_t>(scalar_size(v.element_type), 1);
        if (v.element_type == ValueType::array) fail("arrays of arrays are not supported");
        if (count > remaining() / least)
            fail("an array claims " + std::to_string(count) + " elements, more than the file holds");
        double number = 0;
        int64_t integer = 0;
        std::string text;
        if (v.element_type == ValueType::string) v.texts.reserve(size_t(count));
        else v.numbers.reserve(size_t(count));
        for (uint64_t i = 0; i < count; ++i) {
            scalar(v.element_type, number, integer, text);
            if (v.element_type == ValueType::string) v.texts.push_back(std::move(text));
            else v.numbers.push_back(number);
        }
        return v;
    }

private:
    std::string_view m_bytes;
    const std::string& m_source;
    size_t m_pos = 0;
};

} // namespace

const char* to_string(TensorType t)
{
    switch (t) {
    case TensorType::f32: return "f32";
    case TensorType::f16: return "f16";
    case TensorType::q8_0: return "q8_0";
    case TensorType::bf16: return "bf16";
    }
    return "?";
}

int64_t block_size(TensorType t) { return t == TensorType::q8_0 ? kQ8Block : 1; }

uint64_t row_bytes(TensorType t, int64_t n)
{
    switch (t) {
    case TensorType::f32: return uint64_t(n) * 4;
    case TensorType::f16: case TensorType::bf16: return uint64_t(n) * 2;
    case TensorType::q8_0: return uint64_t(n / kQ8Block) * kQ8BlockBytes;
    }
    return 0;
}

// ---- Q8_0 ------------------------------------------------------------------------

std::string quantize_q8_0(const float* x, int64_t n)
{
    CRUCIBLE_CHECK(n % kQ8Block == 0, "q8_0 quantizes whole blocks of 32 values");
    std::string out;
    out.reserve(size_t(n / kQ8Block * int64_t(kQ8BlockBytes)));
    for (int64_t b = 0; b < n; b += kQ8Block) {
        float amax = 0.0f;
        for (int64_t i = 0; i < kQ8Block; ++i) amax = std::max(amax, std::fabs(x[b + i]));
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        put<uint16_t>(out, f16_from_f32(d));
        for (int64_t i = 0; i < kQ8Block; ++i) out.push_back(char(int8_t(std::lround(x[b + i] * id))));
    }
    return out;
}

void dequantize_q8_0(const uint8_t* blocks, int64_t n, float* out)
{
    for (int64_t b = 0; b < n / kQ8Block; ++b) {
        const uint8_t* block = blocks + uint64_t(b) * kQ8BlockBytes;
        const float d = f32_from_f16(uint16_t(block[0] | (block[1] << 8)));
        for (int64_t i = 0; i < kQ8Block; ++i) out[b * kQ8Block + i] = d * float(int8_t(block[2 + i]));
    }
}

// ---- writing ------------------------------------------------------------------

void Writer::add_key(const std::string& key, ValueType type)
{
    CRUCIBLE_CHECK(std::find(m_keys.begin(), m_keys.end(), key) == m_keys.end(), "GGUF key written twice: " + key);
    m_keys.push_back(key);
    put_string(m_metadata, key);
    put<uint32_t>(m_metadata, uint32_t(type));
    ++m_metadata_count;
}

void Writer::add_u32(const std::string& key, uint32_t v)
{
    add_key(key, ValueType::u32);
    put(m_metadata, v);
    if (key == "general.alignment") {
        CRUCIBLE_CHECK(v > 0 && (v & (v - 1)) == 0, "general.alignment must be a power of two");
        m_alignment = v;
    }
}
void Writer::add_i32(const std::string& key, int32_t v) { add_key(key, ValueType::i32); put(m_metadata, v); }
void Writer::add_f32(const std::string& key, float v) { add_key(key, ValueType::f32); put(m_metadata, v); }
void Writer::add_bool(const std::string& key, bool v) { add_key(key, ValueType::boolean); put<uint8_t>(m_metadata, v); }
void Writer::add_string(const std::string& key, const std::string& v)
{
    add_key(key, ValueType::string);
    put_string(m_metadata, v);
}

void Writer::add_strings(const std::string& key, const std::vector<std::string>& v)
{
    add_key(key, ValueType::array);
    put<uint32_t>(m_metadata, uint32_t(ValueType::string));
    put<uint64_t>(m_metadata, v.size());
    for (const auto& s : v) put_string(m_metadata, s);
}

void Writer::add_f32s(const std::string& key, const std::vector<float>& v)
{
    add_key(key, ValueType::array);
    put<uint32_t>(m_metadata, uint32_t(ValueType::f32));
    put<uint64_t>(m_metadata, v.size());
    for (float x : v) put(m_metadata, x);
}

void Writer::add_i32s(const std::string& key, const std::vector<int32_t>& v)
{
    add_key(key, ValueType::array);
    put<uint32_t>(m_metadata, uint32_t(ValueType::i32));
    put<uint64_t>(m_metadata, v.size());
    for (int32_t x : v) put(m_metadata, x);
}

void Writer::add_tensor(const std::string& name, const std::vector<int64_t>& shape, TensorType type,
                        std::function<std::string()> produce)
{
    CRUCIBLE_CHECK(!shape.empty() && shape.size() <= kMaxDims, "GGUF tensors have 1 to 4 dimensions: " + name);
    for (const auto& t : m_tensors) CRUCIBLE_CHECK(t.name != name, "GGUF tensor written twice: " + name);
    int64_t rows = 1;
    for (size_t i = 0; i + 1 < shape.size(); ++i) rows *= shape[i];
    CRUCIBLE_CHECK(shape.back() % block_size(type) == 0,
                   name + ": rows of " + std::to_string(shape.back()) + " values do not divide into " +
                       to_string(type) + " blocks");
    m_tensors.push_back(Tensor{name, shape, type, uint64_t(rows) * row_bytes(type, shape.back()), std::move(produce)});
}

uint64_t Writer::tensor_bytes() const
{
    uint64_t total = 0;
    for (const auto& t : m_tensors) total += t.bytes;
    return total;
}

void Writer::write(const fs::path& path) const
{
    std::string head;
    put<uint32_t>(head, kMagic);
    put<uint32_t>(head, kVersion);
    put<uint64_t>(head, m_tensors.size());
    put<uint64_t>(head, m_metadata_count);
    head += m_metadata;
    uint64_t offset = 0;
    for (const auto& t : m_tensors) {
        put_string(head, t.name);
        put<uint32_t>(head, uint32_t(t.shape.size()));
        for (auto it = t.shape.rbegin(); it != t.shape.rend(); ++it) put<uint64_t>(head, uint64_t(*it));
        put<uint32_t>(head, uint32_t(t.type));
        put<uint64_t>(head, offset);
        offset = align_up(offset + t.bytes, m_alignment);
    }
    head.append(align_up(head.size(), m_alignment) - head.size(), '\0');

    AtomicFile file(path);
    file.append(head);
    for (const auto& t : m_tensors) {
        const std::string data = t.produce();
        CRUCIBLE_CHECK(data.size() == t.bytes, "GGUF tensor " + t.name + " produced " + std::to_string(data.size()) +
                                                   " bytes instead of " + std::to_string(t.bytes));
        file.append(data);
        file.append(std::string(align_up(t.bytes, m_alignment) - t.bytes, '\0'));
    }
    file.commit();
}

// ---- reading ------------------------------------------------------------------

int64_t TensorInfo::numel() const
{
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
}

File File::read(const fs::path& path)
{
    return parse(read_file(path), path.string());
}

File File::parse(std::string bytes, const std::string& source)
{
    File f;
    f.m_source = source;
    f.m_bytes = std::move(bytes);
    Cursor in(f.m_bytes, f.m_source);
    if (in.remaining() < 24) in.fail("it is too short for a GGUF header (" + std::to_string(in.remaining()) + " bytes)");
    if (in.get<uint32_t>() != kMagic) in.fail("it does not start with \"GGUF\"");
    f.m_version = in.get<uint32_t>();
    if (f.m_version != kVersion)
        in.fail("it is GGUF version " + std::to_string(f.m_version) + "; this reader handles version 3");
    const uint64_t tensor_count = in.get<uint64_t>();
    const uint64_t kv_count = in.get<uint64_t>();
    // A key/value pair takes at least 13 bytes, a tensor info at least 28.
    if (kv_count > in.remaining() / 13) in.fail("it claims " + std::to_string(kv_count) + " metadata entries");
    if (tensor_count > in.remaining() / 28) in.fail("it claims " + std::to_string(tensor_count) + " tensors");

    for (uint64_t i = 0; i < kv_count; ++i) {
        std::string key = in.string();
        const ValueType type = in.value_type();
        Value v = in.value(type);
        if (!f.m_metadata.emplace(key, std::move(v)).second) in.fail("the key \"" + key + "\" appears twice");
    }
    if (const Value* a = f.find("general.alignment")) {
        if (a->type != ValueType::u32 || a->integer <= 0 || (a->integer & (a->integer - 1)) != 0)
            in.fail("general.alignment must be a u32 power of two");
        f.m_alignment = uint32_t(a->integer);
    }

    for (uint64_t i = 0; i < tensor_count; ++i) {
        TensorInfo t;
        t.name = in.string();
        const uint32_t n_dims = in.get<uint32_t>();
        if (n_dims == 0 || n_dims > kMaxDims)
            in.fail("tensor \"" + t.name + "\" has " + std::to_string(n_dims) + " dimensions (1 to 4 are allowed)");
        std::vector<int64_t> ne(n_dims);
        uint64_t numel = 1;
        for (auto& d : ne) {
            const uint64_t v = in.get<uint64_t>();
            if (v == 0 || v > uint64_t(std::numeric_limits<int64_t>::max()) / numel)
                in.fail("tensor \"" + t.name + "\" has an empty or overflowing dimension");
            d = int64_t(v);
            numel *= v;
        }
        t.shape.assign(ne.rbegin(), ne.rend());
        const uint32_t type = in.get<uint32_t>();
        if (!known_type(type))
            in.fail("tensor \"" + t.name + "\" has ggml type " + std::to_string(type) +
                    "; this reader handles f32, f16, bf16 and q8_0");
        t.type = TensorType(type);
        if (ne[0] % block_size(t.type) != 0)
            in.fail("tensor \"" + t.name + "\" has rows of " + std::to_string(ne[0]) + " values, not whole " +
                    to_string(t.type) + " blocks");
        t.offset = in.get<uint64_t>();
        if (t.offset % f.m_alignment != 0) in.fail("tensor \"" + t.name + "\" is not aligned");
        const uint64_t rows = numel / uint64_t(ne[0]);
        const uint64_t per_row = row_bytes(t.type, ne[0]);
        if (per_row != 0 && rows > std::numeric_limits<uint64_t>::max() / per_row)
            in.fail("tensor \"" + t.name + "\" is too large to address");
        t.bytes = rows * per_row;
        for (const auto& other : f.m_tensors)
            if (other.name == t.name) in.fail("the tensor \"" + t.name + "\" appears twice");
        f.m_tensors.push_back(std::move(t));
    }

    f.m_data_start = align_up(in.pos(), f.m_alignment);
    const uint64_t data_size = f.m_bytes.size() >= f.m_data_start ? f.m_bytes.size() - f.m_data_start : 0;
    std::vector<const TensorInfo*> by_offset;
    for (const auto& t : f.m_tensors) {
        if (t.offset > data_size || t.bytes > data_size - t.offset)
            in.fail("tensor \"" + t.name + "\" lies beyond the end of the file (truncated?)");
        by_offset.push_back(&t);
    }
    std::sort(by_offset.begin(), by_offset.end(), [](auto* a, auto* b) { return a->offset < b->offset; });
    for (size_t i = 1; i < by_offset.size(); ++i)
        if (by_offset[i]->offset < by_offset[i - 1]->offset + by_offset[i - 1]->bytes)
            in.fail("tensors \"" + by_offset[i - 1]->name + "\" and \"" + by_offset[i]->name + "\" overlap");
    return f;
}

const Value* File::find(const std::string& key) const
{
    const auto it = m_metadata.find(key);
    return it == m_metadata.end() ? nullptr : &it->second;
}

const Value& File::at(const std::string& key) const
{
    const Value* v = find(key);
    if (!v) throw Error(m_source + " has no metadata key \"" + key + "\"");
    return *v;
}

std::string File::get_string(const std::string& key) const
{
    const Value& v = at(key);
    if (v.type != ValueType::string) throw Error(m_source + ": \"" + key + "\" is not a string");
    return v.text;
}

int64_t File::get_int(const std::string& key) const
{
    const Value& v = at(key);
    if (v.is_array() || v.type == ValueType::string || v.type == ValueType::f32 || v.type == ValueType::f64 ||
        v.type == ValueType::boolean)
        throw Error(m_source + ": \"" + key + "\" is not an integer");
    return v.integer;
}

double File::get_number(const std::string& key) const
{
    const Value& v = at(key);
    if (v.is_array() || v.type == ValueType::string || v.type == ValueType::boolean)
        throw Error(m_source + ": \"" + key + "\" is not a number");
    return v.number;
}

bool File::get_bool(const std::string& key) const
{
    const Value& v = at(key);
    if (v.type != ValueType::boolean) throw Error(m_source + ": \"" + key + "\" is not a bool");
    return v.integer != 0;
}

const TensorInfo* File::find_tensor(const std::string& name) const
{
    for (const auto& t : m_tensors)
        if (t.name == name) return &t;
    return nullptr;
}

const uint8_t* File::data(const TensorInfo& t) const
{
    return reinterpret_cast<const uint8_t*>(m_bytes.data()) + m_data_start + t.offset;
}

std::vector<float> File::to_f32(const TensorInfo& t) const
{
    const int64_t n = t.numel();
    std::vector<float> out(static_cast<size_t>(n));
    const uint8_t* src = data(t);
    auto u16 = [&](int64_t i) { return uint16_t(src[2 * i] | (src[2 * i + 1] << 8)); };
    switch (t.type) {
    case TensorType::f32: std::memcpy(out.data(), src, size_t(n) * 4); break;
    case TensorType::f16: for (int64_t i = 0; i < n; ++i) out[size_t(i)] = f32_from_f16(u16(i)); break;
    case TensorType::bf16: for (int64_t i = 0; i < n; ++i) out[size_t(i)] = f32_from_bf16(u16(i)); break;
    case TensorType::q8_0: dequantize_q8_0(src, n, out.data()); break;
    }
    return out;
}

} // namespace crucible::gguf
