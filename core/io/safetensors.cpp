// safetensors reading and writing. The reader trusts nothing in the file: the
// header length, the JSON, every dtype, shape and byte range are checked
// before a single tensor byte is read, so a corrupt file costs no more than its
// header and always ends in an Error that names the file and what to do.
#include "core/io/safetensors.h"

#include "core/io/crc32.h"
#include "core/io/file_util.h"
#include "kernels/error.h"
#include "kernels/half.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fcntl.h>
#include <limits>
#include <sys/stat.h>
#include <unistd.h>

namespace fs = std::filesystem;

namespace crucible {

namespace {

// The reference implementation refuses headers above 100 MB; a larger length
// field means a corrupt or foreign file, and trusting it would allocate that much.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

// Bytes per element of every dtype the format defines; 0 for unknown names.
size_t dtype_size(const std::string& dtype)
{
    static const std::pair<const char*, size_t> sizes[] = {
        {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8}, {"I32", 4}, {"I16", 2}, {"I8", 1},
        {"U64", 8}, {"U32", 4}, {"U16", 2}, {"U8", 1},  {"BOOL", 1}, {"F8_E4M3", 1}, {"F8_E5M2", 1},
    };
    for (const auto& [name, size] : sizes)
        if (dtype == name) return size;
    return 0;
}

std::string shape_string(const std::vector<int64_t>& shape)
{
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
}

constexpr const char* kCorruptAdvice = "the file is corrupt or not a safetensors file — restore it or train again";

[[noreturn]] void corrupt(const fs::path& path, const std::string& problem)
{
    throw Error(path.string() + " is not a valid safetensors file: " + problem + "; " + kCorruptAdvice);
}

// Loads little-endian u16 values without assuming alignment.
uint16_t load_u16(const uint8_t* p) { return uint16_t(p[0] | (uint16_t(p[1]) << 8)); }

// Reads exactly `size` bytes at `offset`; false on a short file.
bool read_exact(int fd, char* dst, size_t size, uint64_t offset, std::string& why)
{
    while (size > 0) {
        const ssize_t n = ::pread(fd, dst, size, off_t(offset));
        if (n < 0) {
            if (errno == EINTR) continue;
            why = std::strerror(errno);
            return false;
        }
        if (n == 0) {
            why = "unexpected end of file";
            return false;
        }
        dst += n;
        size -= size_t(n);
        offset += uint64_t(n);
    }
    return true;
}

struct FileHandle {
    int fd = -1;
    ~FileHandle() { if (fd >= 0) ::close(fd); }
};

// One unsigned integer of the header, refused when negative, fractional or huge.
uint64_t header_uint(const fs::path& path, const std::string& name, const char* what, const nlohmann::json& v)
{
    if (v.is_number_unsigned()) return v.get<uint64_t>();
    if (v.is_number_integer()) corrupt(path, "tensor \"" + name + "\" has a negative " + what + " (" + v.dump() + ")");
    corrupt(path, "tensor \"" + name + "\" has a " + what + " that is not an integer (" + v.dump() + ")");
}

SafetensorsEntry parse_entry(const fs::path& path, const std::string& name, const nlohmann::json& j)
{
    if (!j.is_object()) corrupt(path, "the header entry for \"" + name + "\" is not an object");
    for (const char* key : {"dtype", "shape", "data_offsets"})
        if (!j.contains(key)) corrupt(path, "tensor \"" + name + "\" has no \"" + key + "\"");

    SafetensorsEntry e;
    e.name = name;
    const auto& dtype = j.at("dtype");
    if (!dtype.is_string()) corrupt(path, "tensor \"" + name + "\" has a dtype that is not a string");
    e.dtype = dtype.get<std::string>();
    const size_t element_size = dtype_size(e.dtype);
    if (element_size == 0) corrupt(path, "tensor \"" + name + "\" has the unknown dtype \"" + e.dtype + "\"");

    const auto& shape = j.at("shape");
    if (!shape.is_array()) corrupt(path, "tensor \"" + name + "\" has a shape that is not a list");
    uint64_t numel = 1;
    for (const auto& dim : shape) {
        const uint64_t d = header_uint(path, name, "dimension", dim);
        if (d > uint64_t(std::numeric_limits<int64_t>::max()) ||
            (d != 0 && numel > uint64_t(std::numeric_limits<int64_t>::max()) / d))
            corrupt(path, "tensor \"" + name + "\" has a shape whose element count overflows (" + shape.dump() + ")");
        numel *= d;
        e.shape.push_back(int64_t(d));
    }
    if (numel > std::numeric_limits<uint64_t>::max() / element_size)
        corrupt(path, "tensor \"" + name + "\" is too large to address (" + shape.dump() + ")");

    const auto& offsets = j.at("data_offsets");
    if (!offsets.is_array() || offsets.size() != 2)
        corrupt(path, "tensor \"" + name + "\" needs data_offsets [begin, end], got " + offsets.dump());
    e.begin = header_uint(path, name, "data offset", offsets[0]);
    e.end = header_uint(path, name, "data offset", offsets[1]);
    if (e.end < e.begin)
        corrupt(path, "tensor \"" + name + "\" ends (" + std::to_string(e.end) + ") before it begins (" +
                          std::to_string(e.begin) + ")");
    const uint64_t expected = numel * element_size;
    if (e.end - e.begin != expected)
        corrupt(path, "tensor \"" + name + "\" of dtype " + e.dtype + " and shape " + shape_string(e.shape) +
                          " needs " + std::to_string(expected) + " bytes but its data_offsets span " +
                          std::to_string(e.end - e.begin));
    return e;
}

} // namespace

int64_t SafetensorsEntry::numel() const
{
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
}

SafetensorsReader::SafetensorsReader(const fs::path& path, Contents contents) : m_path(path)
{
    std::error_code ec;
    if (!fs::exists(path, ec)) throw Error("file not found: " + path.string());
    if (fs::is_directory(path, ec)) throw Error("expected a safetensors file but found a folder: " + path.string());
    FileHandle file;
    file.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (file.fd < 0) throw Error("cannot open " + path.string() + ": " + std::strerror(errno));
    struct stat st {};
    if (::fstat(file.fd, &st) != 0) throw Error("cannot read " + path.string() + ": " + std::strerror(errno));
    const uint64_t file_size = uint64_t(st.st_size);

    // Header length.
    if (file_size < 8)
        throw Error(path.string() + " is too short to be a safetensors file (" + std::to_string(file_size) +
                    " bytes; the header length alone takes 8): " + kCorruptAdvice);
    uint8_t length_bytes[8];
    std::string why;
    if (!read_exact(file.fd, reinterpret_cast<char*>(length_bytes), 8, 0, why))
        throw Error("cannot read " + path.string() + ": " + why);
    uint64_t header_size = 0;
    for (int i = 7; i >= 0; --i) header_size = (header_size << 8) | length_bytes[i];
    if (header_size > kMaxHeaderBytes)
        corrupt(path, "its header claims " + std::to_string(header_size) + " bytes (the limit is " +
                          std::to_string(kMaxHeaderBytes) + ")");
    if (header_size > file_size - 8)
        throw Error(path.string() + " is truncated: its header needs " + std::to_string(header_size) +
                    " bytes but only " + std::to_string(file_size - 8) +
                    " follow the length field; the file is incomplete or corrupt — restore it or train again");
    m_data_start = size_t(8 + header_size);
    const uint64_t data_size = file_size - m_data_start;

    // Header JSON. Read it alone first: a corrupt file is refused before its
    // (possibly huge) data is touched.
    m_bytes.resize(m_data_start);
    if (!read_exact(file.fd, m_bytes.data() + 8, size_t(header_size), 8, why))
        throw Error("cannot read " + path.string() + ": " + why);
    std::memcpy(m_bytes.data(), length_bytes, 8);
    nlohmann::json header;
    try {
        header = nlohmann::json::parse(m_bytes.begin() + 8, m_bytes.end());
    } catch (const nlohmann::json::parse_error& e) {
        corrupt(path, "its header is not valid JSON (error at byte " + std::to_string(e.byte) + ")");
    } catch (const nlohmann::json::exception&) {
        corrupt(path, "its header holds a number too large to read");   // out_of_range while parsing
    }
    if (!header.is_object()) corrupt(path, "its header is not a JSON object");

    for (const auto& [key, value] : header.items()) {
        if (key == "__metadata__") {
            if (!value.is_object()) corrupt(path, "\"__metadata__\" is not an object");
            for (const auto& [mkey, mvalue] : value.items()) {
                if (!mvalue.is_string())
                    corrupt(path, "metadata \"" + mkey + "\" is not a string (" + mvalue.dump() + ")");
                if (mkey.rfind(kCrc32Prefix, 0) == 0) m_checksums[mkey.substr(kCrc32Prefix.size())] = mvalue.get<std::string>();
                else m_metadata[mkey] = mvalue.get<std::string>();
            }
            continue;
        }
        m_entries.push_back(parse_entry(path, key, value));
    }

    // Byte ranges: in file order, inside the data section, never overlapping.
    std::sort(m_entries.begin(), m_entries.end(), [](const SafetensorsEntry& a, const SafetensorsEntry& b) {
        return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
    });
    uint64_t needed = 0;
    for (size_t i = 0; i < m_entries.size(); ++i) {
        const auto& e = m_entries[i];
        if (i > 0 && e.begin < m_entries[i - 1].end)
            corrupt(path, "tensors \"" + m_entries[i - 1].name + "\" and \"" + e.name + "\" overlap");
        needed = std::max(needed, e.end);
    }
    if (needed > data_size)
        throw Error(path.string() + " is truncated: expected " + std::to_string(needed) +
                    " bytes of tensor data, found " + std::to_string(data_size) +
                    "; the file is incomplete or corrupt — restore it or train again");

    if (contents == Contents::header_only) return;
    // Tensor data, read once straight into place.
    m_has_data = true;
    m_bytes.resize(size_t(file_size));
    if (!read_exact(file.fd, m_bytes.data() + m_data_start, size_t(data_size), m_data_start, why))
        throw Error("cannot read " + path.string() + ": " + why +
                    " (was the file changed while it was being read?)");

    // Checksums, where the writer left them (files from elsewhere have none).
    for (const SafetensorsEntry& e : m_entries) {
        const auto it = m_checksums.find(e.name);
        if (it == m_checksums.end()) continue;
        const std::string actual = crc32_hex(crc32(raw(e), size_t(e.end - e.begin)));
        if (actual != it->second)
            throw Error(path.string() + ": the data of tensor \"" + e.name + "\" does not match its checksum (" +
                        it->second + " stored, " + actual +
                        " read); the file was damaged on disk or in a copy — restore it or use an earlier checkpoint");
    }
}

const SafetensorsEntry* SafetensorsReader::find(const std::string& name) const
{
    for (const auto& e : m_entries)
        if (e.name == name) return &e;
    return nullptr;
}

const uint8_t* SafetensorsReader::raw(const SafetensorsEntry& e) const
{
    CRUCIBLE_CHECK(m_has_data, "tensor data requested from a safetensors file opened for its header only");
    return reinterpret_cast<const uint8_t*>(m_bytes.data()) + m_data_start + e.begin;
}

void SafetensorsReader::read_f32(const std::string& name, const std::vector<int64_t>& expected_shape,
                                 float* dst) const
{
    const SafetensorsEntry* e = find(name);
    if (!e)
        throw Error(m_path.string() + " has no tensor \"" + name +
                    "\": the checkpoint was written for a different model");
    if (e->shape != expected_shape)
        throw Error("tensor " + name + " in " + m_path.string() + " has shape " + shape_string(e->shape) +
                    " but this model needs " + shape_string(expected_shape) +
                    ": the checkpoint was written for a different configuration");
    const uint8_t* src = raw(*e);
    const size_t n = size_t(e->numel());
    if (n == 0) return;   // an empty tensor: nothing to copy (and dst may be null)
    if (e->dtype == "F32") {
        std::memcpy(dst, src, n * sizeof(float));
    } else if (e->dtype == "BF16") {
        for (size_t i = 0; i < n; ++i) dst[i] = f32_from_bf16(load_u16(src + 2 * i));
    } else if (e->dtype == "F16") {
        for (size_t i = 0; i < n; ++i) dst[i] = f32_from_f16(load_u16(src + 2 * i));
    } else {
        throw Error("tensor " + name + " in " + m_path.string() + " has dtype " + e->dtype +
                    "; model weights must be F32, BF16 or F16");
    }
}

// ---- writer -------------------------------------------------------------------

void SafetensorsWriter::add(const std::string& name, const std::string& dtype, const std::vector<int64_t>& shape,
                            const void* data, size_t bytes)
{
    if (name.empty() || name == "__metadata__")
        throw Error("safetensors: \"" + name + "\" cannot be used as a tensor name");
    for (const auto& item : m_items)
        if (item.name == name) throw Error("safetensors: tensor \"" + name + "\" was added twice");
    const size_t element_size = dtype_size(dtype);
    if (element_size == 0) throw Error("safetensors: unknown dtype \"" + dtype + "\" for tensor \"" + name + "\"");
    size_t numel = 1;
    for (int64_t d : shape) {
        if (d < 0) throw Error("safetensors: tensor \"" + name + "\" has a negative dimension");
        numel *= size_t(d);
    }
    if (numel * element_size != bytes)
        throw Error("safetensors: tensor \"" + name + "\" of shape " + shape_string(shape) + " and dtype " + dtype +
                    " needs " + std::to_string(numel * element_size) + " bytes, got " + std::to_string(bytes));
    m_items.push_back(Item{name, dtype, shape, std::string(static_cast<const char*>(data), bytes)});
}

void SafetensorsWriter::add_f32(const std::string& name, const std::vector<int64_t>& shape, const float* data)
{
    size_t numel = 1;
    for (int64_t d : shape) numel *= size_t(std::max<int64_t>(d, 0));
    add(name, "F32", shape, data, numel * sizeof(float));
}

std::string SafetensorsWriter::serialize() const
{
    // ordered_json keeps the tensors in the order they were added.
    nlohmann::ordered_json header = nlohmann::ordered_json::object();
    // Each tensor's CRC-32 goes into the metadata, which every reader of the
    // format carries along or ignores, so that a reader here can tell a
    // damaged file from a good one.
    std::map<std::string, std::string> metadata = m_metadata;
    for (const auto& item : m_items) metadata[kCrc32Prefix + item.name] = crc32_hex(crc32(item.data.data(), item.data.size()));
    if (!metadata.empty()) header["__metadata__"] = metadata;
    uint64_t offset = 0;
    for (const auto& item : m_items) {
        const uint64_t end = offset + item.data.size();
        header[item.name] = {{"dtype", item.dtype}, {"shape", item.shape}, {"data_offsets", {offset, end}}};
        offset = end;
    }
    std::string json;
    try {
        json = header.dump();
    } catch (const nlohmann::json::type_error&) {
        throw Error("safetensors: a tensor name or metadata value is not valid UTF-8");
    }
    // Spaces pad the header to a multiple of 8 bytes, as the reference
    // implementation does, so the data section starts aligned.
    json.append((8 - json.size() % 8) % 8, ' ');

    std::string out;
    out.reserve(8 + json.size() + offset);
    const uint64_t header_size = json.size();
    for (int i = 0; i < 8; ++i) out.push_back(char((header_size >> (8 * i)) & 0xff));
    out += json;
    for (const auto& item : m_items) out += item.data;
    return out;
}

void SafetensorsWriter::write(const fs::path& path) const
{
    write_file_atomic(path, serialize());
}

} // namespace crucible
