// CRC-32 (the IEEE 802.3 polynomial, reflected, as zlib and PNG compute it):
// catches a flipped bit or a torn sector in stored tensor data. Not a
// defence against deliberate tampering.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace crucible {

// `crc` continues an earlier call over the preceding bytes (0 to start).
uint32_t crc32(const void* data, size_t size, uint32_t crc = 0);
std::string crc32_hex(uint32_t crc);   // 8 lower-case hex digits

} // namespace crucible
