#include "kernels/tensor.h"

namespace crucible {

const char* dtype_name(DType dtype)
{
    switch (dtype) {
    case DType::f32: return "f32";
    case DType::bf16: return "bf16";
    case DType::f16: return "f16";
    case DType::i32: return "i32";
    case DType::u8: return "u8";
    case DType::nf4: return "nf4";
    }
    return "?";
}

const char* device_name(DeviceKind device)
{
    return device == DeviceKind::cuda ? "cuda" : "cpu";
}

size_t dtype_bytes(DType dtype, int64_t count)
{
    const auto n = static_cast<size_t>(count);
    switch (dtype) {
    case DType::f32:
    case DType::i32: return 4 * n;
    case DType::bf16:
    case DType::f16: return 2 * n;
    case DType::u8: return n;
    case DType::nf4: return (n + 1) / 2;
    }
    return 0;
}

Shape::Shape(std::initializer_list<int64_t> d)
{
    CRUCIBLE_CHECK(d.size() <= 4, "a tensor has at most four dimensions");
    for (int64_t v : d) dims[static_cast<size_t>(rank++)] = v;
}

int64_t Shape::numel() const
{
    int64_t n = 1;
    for (int i = 0; i < rank; ++i) n *= dims[static_cast<size_t>(i)];
    return n;
}

bool Shape::operator==(const Shape& other) const
{
    if (rank != other.rank) return false;
    for (int i = 0; i < rank; ++i)
        if (dims[static_cast<size_t>(i)] != other.dims[static_cast<size_t>(i)]) return false;
    return true;
}

std::string Shape::str() const
{
    std::string s = "[";
    for (int i = 0; i < rank; ++i) {
        if (i) s += ", ";
        s += std::to_string(dims[static_cast<size_t>(i)]);
    }
    return s + "]";
}

Tensor Tensor::view(Shape new_shape) const
{
    CRUCIBLE_CHECK(new_shape.numel() == numel(),
                   "cannot view " + shape.str() + " as " + new_shape.str());
    return Tensor(data, dtype, new_shape, device);
}

Tensor Tensor::slice_rows(int64_t begin, int64_t end) const
{
    // A vector's "rows" are its elements; otherwise leading dims collapse into rows.
    const int64_t n_rows = shape.rank <= 1 ? numel() : rows();
    const int64_t row_size = shape.rank <= 1 ? 1 : cols();
    CRUCIBLE_CHECK(begin >= 0 && begin <= end && end <= n_rows, "row slice out of range");
    const Shape s = shape.rank <= 1 ? Shape{end - begin} : Shape{end - begin, row_size};
    auto* base = static_cast<char*>(data) + dtype_bytes(dtype, begin * row_size);
    return Tensor(base, dtype, s, device);
}

Tensor Tensor::sub(int64_t element_offset, Shape new_shape) const
{
    CRUCIBLE_CHECK(element_offset >= 0 && element_offset + new_shape.numel() <= numel(),
                   "sub-tensor out of range");
    CRUCIBLE_CHECK(dtype != DType::nf4 || element_offset % 2 == 0, "nf4 views start on a byte");
    auto* base = static_cast<char*>(data) + dtype_bytes(dtype, element_offset);
    return Tensor(base, dtype, new_shape, device);
}

std::string Tensor::str() const
{
    return std::string(dtype_name(dtype)) + shape.str() + "@" + device_name(device);
}

} // namespace crucible
