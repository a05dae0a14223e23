// GGUF, the file format of llama.cpp (and Ollama, LM Studio, ...), version 3.
//
//   u32 magic "GGUF" · u32 version 3 · u64 tensor count · u64 metadata count
//   metadata: { string key, u32 value type, value }...
//   tensor infos: { string name, u32 n_dims, u64 ne[n_dims], u32 ggml type, u64 offset }...
//   padding to `general.alignment` (32 unless the metadata says otherwise)
//   tensor data, each tensor at its offset (a multiple of the alignment)
//
// Little-endian throughout; a string is a u64 length and that many bytes (no
// terminator). ne[] lists dimensions innermost first: a PyTorch [out, in]
// matrix is ne = {in, out}. The writer takes shapes in PyTorch's order and
// reverses them; the reader reports them in PyTorch's order too.
//
// The reader trusts nothing: counts, lengths, types, dimensions and byte
// ranges are checked against the file before use, so a corrupt or hostile
// file ends in an Error naming the problem, never in a crash or a huge
// allocation.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace crucible::gguf {

enum class ValueType : uint32_t {
    u8 = 0, i8 = 1, u16 = 2, i16 = 3, u32 = 4, i32 = 5, f32 = 6, boolean = 7,
    string = 8, array = 9, u64 = 10, i64 = 11, f64 = 12,
};

// The ggml tensor types Crucible writes and reads.
enum class TensorType : uint32_t { f32 = 0, f16 = 1, q8_0 = 8, bf16 = 30 };

const char* to_string(TensorType t);
// Bytes of a row of n elements; n must be a multiple of the type's block (32 for q8_0).
uint64_t row_bytes(TensorType t, int64_t n);
int64_t block_size(TensorType t);

constexpr uint32_t kVersion = 3;
constexpr uint32_t kDefaultAlignment = 32;

// A metadata value: a scalar, a string, or an array of one of those.
struct Value {
    ValueType type = ValueType::u32;
    ValueType element_type = ValueType::u32;   // arrays
    double number = 0.0;                       // every numeric scalar and bool
    int64_t integer = 0;                       // integer scalars, exactly
    std::string text;                          // strings
    std::vector<double> numbers;               // numeric (and bool) arrays
    std::vector<std::string> texts;            // string arrays

    bool is_array() const { return type == ValueType::array; }
};

// ---- writing ------------------------------------------------------------------

class Writer {
public:
    void add_u32(const std::string& key, uint32_t v);
    void add_i32(const std::string& key, int32_t v);
    void add_f32(const std::string& key, float v);
    void add_bool(const std::string& key, bool v);
    void add_string(const std::string& key, const std::string& v);
    void add_strings(const std::string& key, const std::vector<std::string>& v);
    void add_f32s(const std::string& key, const std::vector<float>& v);
    void add_i32s(const std::string& key, const std::vector<int32_t>& v);

    // `produce` returns the tensor's bytes in `type` when the file is written,
    // so only one tensor is held in memory at a time. shape in PyTorch order.
    void add_tensor(const std::string& name, const std::vector<int64_t>& shape, TensorType type,
                    std::function<std::string()> produce);

    // Writes atomically; the alignment is general.alignment when set, else 32.
    void write(const std::filesystem::path& path) const;
    uint64_t tensor_bytes() const;   // the data section without padding

private:
    struct Tensor {
        std::string name;
        std::vector<int64_t> shape;
        TensorType type;
        uint64_t bytes;
        std::function<std::string()> produce;
    };
    void add_key(const std::string& key, ValueType type);
    std::string m_metadata;          // serialized key/value pairs
    uint64_t m_metadata_count = 0;
    std::vector<std::string> m_keys;
    std::vector<Tensor> m_tensors;
    uint32_t m_alignment = kDefaultAlignment;
};

// ---- reading ------------------------------------------------------------------

struct TensorInfo {
    std::string name;
    std::vector<int64_t> shape;      // PyTorch order (outermost first)
    TensorType type;
    uint64_t offset = 0;             // from the start of the data section
    uint64_t bytes = 0;
    int64_t numel() const;
};

class File {
public:
    // Parses and validates; throws Error naming `source` and the problem.
    static File parse(std::string bytes, const std::string& source = "GGUF data");
    static File read(const std::filesystem::path& path);

    uint32_t version() const { return m_version; }
    uint32_t alignment() const { return m_alignment; }
    const std::map<std::string, Value>& metadata() const { return m_metadata; }
    const std::vector<TensorInfo>& tensors() const { return m_tensors; }

    const Value* find(const std::string& key) const;
    // Typed look-ups; throw Error when the key is missing or of another type.
    const Value& at(const std::string& key) const;
    std::string get_string(const std::string& key) const;
    int64_t get_int(const std::string& key) const;
    double get_number(const std::string& key) const;
    bool get_bool(const std::string& key) const;

    const TensorInfo* find_tensor(const std::string& name) const;
    const uint8_t* data(const TensorInfo& t) const;
    // The tensor's values as f32 (f16, bf16 and q8_0 converted).
    std::vector<float> to_f32(const TensorInfo& t) const;

private:
    std::string m_source;
    std::string m_bytes;
    uint32_t m_version = 0;
    uint32_t m_alignment = kDefaultAlignment;
    uint64_t m_data_start = 0;
    std::map<std::string, Value> m_metadata;
    std::vector<TensorInfo> m_tensors;
};

// ---- Q8_0 ------------------------------------------------------------------------

// Blocks of 32 values: an f16 scale d = max|x| / 127 and 32 int8 round(x / d),
// as ggml defines them (34 bytes a block). n must be a multiple of 32.
std::string quantize_q8_0(const float* x, int64_t n);
void dequantize_q8_0(const uint8_t* blocks, int64_t n, float* out);

} // namespace crucible::gguf
