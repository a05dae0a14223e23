// Tensor: a non-owning, row-major view of device or host memory.
//
// Memory is owned elsewhere (arenas sized before training starts, see
// core/tensor/buffer.h); a Tensor is just a pointer with a dtype, a shape of up
// to four dimensions and the device the pointer lives on. Views are cheap to
// copy and pass by value, as in llm.c's raw pointers, but carry enough to
// check shapes at the boundary of every backend op.
#pragma once

#include "kernels/error.h"

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>

namespace crucible {

enum class DType : uint8_t { f32, bf16, f16, i32, u8, nf4 };
enum class DeviceKind : uint8_t { cpu, cuda };

const char* dtype_name(DType dtype);
const char* device_name(DeviceKind device);

// Bytes needed for `count` elements (nf4 packs two elements per byte).
size_t dtype_bytes(DType dtype, int64_t count);

struct Shape {
    std::array<int64_t, 4> dims{0, 0, 0, 0};
    int rank = 0;

    Shape() = default;
    Shape(std::initializer_list<int64_t> d);

    int64_t operator[](int i) const { return dims[static_cast<size_t>(i)]; }
    int64_t numel() const;
    // Size of the last dimension and of everything before it: the (rows, cols)
    // of the row-major matrix this shape is viewed as by most ops.
    int64_t cols() const { return rank == 0 ? 1 : dims[static_cast<size_t>(rank - 1)]; }
    int64_t rows() const
    {
        if (rank <= 1) return 1;
        int64_t r = 1;
        for (int i = 0; i + 1 < rank; ++i) r *= dims[static_cast<size_t>(i)];
        return r;   // no division: a zero-sized last dimension is legal
    }
    bool operator==(const Shape& other) const;
    bool operator!=(const Shape& other) const { return !(*this == other); }
    std::string str() const;
};

struct Tensor {
    void* data = nullptr;
    DType dtype = DType::f32;
    Shape shape;
    DeviceKind device = DeviceKind::cpu;

    Tensor() = default;
    Tensor(void* data_, DType dtype_, Shape shape_, DeviceKind device_ = DeviceKind::cpu)
        : data(data_), dtype(dtype_), shape(shape_), device(device_) {}

    bool empty() const { return data == nullptr; }
    int64_t numel() const { return shape.numel(); }
    int64_t rows() const { return shape.rows(); }
    int64_t cols() const { return shape.cols(); }
    size_t bytes() const { return dtype_bytes(dtype, numel()); }

    template <class T> T* as() const { return static_cast<T*>(data); }

    // Same memory, another shape with the same number of elements.
    Tensor view(Shape new_shape) const;
    // Rows [begin, end) of the tensor viewed as a (rows, cols) matrix.
    Tensor slice_rows(int64_t begin, int64_t end) const;
    // A flat range of elements, shaped as given (numel must fit).
    Tensor sub(int64_t element_offset, Shape new_shape) const;
    std::string str() const;
};

} // namespace crucible
