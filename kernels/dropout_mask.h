// The element mask of Backend::dropout_scale, one definition for every backend.
//
// Counter-based: whether element i is kept depends only on (seed, i), so the
// backward pass regenerates the forward's mask from the seed instead of
// storing it, and the CPU and CUDA backends drop exactly the same elements.
#pragma once

#include <algorithm>
#include <cstdint>

#if defined(__CUDACC__)
#define CRUCIBLE_HOST_DEVICE __host__ __device__
#else
#define CRUCIBLE_HOST_DEVICE
#endif

namespace crucible {

// P(dropped) = threshold / 2^32.
inline uint32_t dropout_threshold(float p)
{
    return uint32_t(std::min(double(p) * 4294967296.0, 4294967295.0));
}

// The splitmix64 finaliser of the element's counter: 32 well-mixed bits,
// compared with the threshold.
CRUCIBLE_HOST_DEVICE inline bool dropout_keeps(uint64_t seed, uint64_t index, uint32_t threshold)
{
    uint64_t z = seed + (index + 1) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return uint32_t(z >> 32) >= threshold;
}

} // namespace crucible
