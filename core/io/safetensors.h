// safetensors: the Hugging Face tensor file format.
//
//   [u64 little-endian N][N bytes of JSON header][tensor data]
//   header: {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]},
//            "__metadata__": {"key": "value", ...}}
//
// The reader validates everything before trusting it (header size, JSON,
// dtypes, shapes against offsets, offsets inside the file, no overlaps), so a
// truncated or corrupt file is an Error naming the file and the problem.
//
// The writer stores each tensor's CRC-32 in the metadata as
// "crc32.<tensor name>": "<8 hex digits>"; the reader checks those it finds
// when it reads the data (files written elsewhere, without them, still load).
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace crucible {

inline const std::string kCrc32Prefix = "crc32.";

struct SafetensorsEntry {
    std::string name;
    std::string dtype;              // "F32", "BF16", "F16", "I32", "U8", ...
    std::vector<int64_t> shape;
    uint64_t begin = 0, end = 0;    // byte range inside the data section
    int64_t numel() const;
};

class SafetensorsReader {
public:
    // header_only: validate the header (names, dtypes, shapes, byte ranges
    // against the file's size) without reading tensor data, so a directory of
    // multi-gigabyte shards can be checked before any of it is loaded; raw()
    // and read_f32() then throw.
    enum class Contents { everything, header_only };
    explicit SafetensorsReader(const std::filesystem::path& path,
                               Contents contents = Contents::everything);   // reads and validates

    const std::filesystem::path& path() const { return m_path; }
    const std::vector<SafetensorsEntry>& entries() const { return m_entries; }
    // The metadata without the checksums, which are checked on reading.
    const std::map<std::string, std::string>& metadata() const { return m_metadata; }
    bool has_checksums() const { return !m_checksums.empty(); }
    const SafetensorsEntry* find(const std::string& name) const;

    // Copies the named tensor into dst as f32 (converting BF16/F16/F32); throws
    // Error when the tensor is missing or its shape differs from `expected_shape`.
    void read_f32(const std::string& name, const std::vector<int64_t>& expected_shape, float* dst) const;
    // Raw bytes of a tensor.
    const uint8_t* raw(const SafetensorsEntry& e) const;

private:
    std::filesystem::path m_path;
    std::string m_bytes;
    size_t m_data_start = 0;
    bool m_has_data = false;
    std::vector<SafetensorsEntry> m_entries;
    std::map<std::string, std::string> m_metadata;
    std::map<std::string, std::string> m_checksums;   // tensor name → CRC-32 hex
};

class SafetensorsWriter {
public:
    // Data is copied; tensors are written in the order added.
    void add(const std::string& name, const std::string& dtype, const std::vector<int64_t>& shape,
             const void* data, size_t bytes);
    void add_f32(const std::string& name, const std::vector<int64_t>& shape, const float* data);
    void set_metadata(const std::string& key, const std::string& value) { m_metadata[key] = value; }
    std::string serialize() const;
    void write(const std::filesystem::path& path) const;   // atomic

private:
    struct Item { std::string name, dtype; std::vector<int64_t> shape; std::string data; };
    std::vector<Item> m_items;
    std::map<std::string, std::string> m_metadata;
};

} // namespace crucible
