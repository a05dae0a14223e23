#include "core/io/crc32.h"

#include <array>
#include <cstdio>
#include <cstring>

namespace crucible {

namespace {

// Slicing by 8: table[k][b] is the CRC of byte b followed by k zero bytes, so
// eight bytes are folded per step with eight lookups (about 1-2 GB/s, enough
// to check a checkpoint as it is loaded).
using Tables = std::array<std::array<uint32_t, 256>, 8>;

Tables make_tables()
{
    Tables t{};
    for (uint32_t b = 0; b < 256; ++b) {
        uint32_t c = b;
        for (int i = 0; i < 8; ++i) c = (c & 1) ? (c >> 1) ^ 0xEDB88320u : c >> 1;
        t[0][b] = c;
    }
    for (uint32_t b = 0; b < 256; ++b)
        for (int k = 1; k < 8; ++k) t[size_t(k)][b] = (t[size_t(k - 1)][b] >> 8) ^ t[0][t[size_t(k - 1)][b] & 0xff];
    return t;
}

const Tables& tables()
{
    static const Tables t = make_tables();
    return t;
}

} // namespace

uint32_t crc32(const void* data, size_t size, uint32_t crc)
{
    const Tables& t = tables();
    const auto* p = static_cast<const unsigned char*>(data);
    crc = ~crc;
    while (size >= 8) {
        uint32_t lo, hi;
        std::memcpy(&lo, p, 4);
        std::memcpy(&hi, p + 4, 4);
        lo ^= crc;   // little-endian hosts only, as the tensor formats themselves
        crc = t[7][lo & 0xff] ^ t[6][(lo >> 8) & 0xff] ^ t[5][(lo >> 16) & 0xff] ^ t[4][lo >> 24] ^
              t[3][hi & 0xff] ^ t[2][(hi >> 8) & 0xff] ^ t[1][(hi >> 16) & 0xff] ^ t[0][hi >> 24];
        p += 8;
        size -= 8;
    }
    while (size-- > 0) crc = (crc >> 8) ^ t[0][(crc ^ *p++) & 0xff];
    return ~crc;
}

std::string crc32_hex(uint32_t crc)
{
    char buf[9];
    std::snprintf(buf, sizeof buf, "%08x", crc);
    return buf;
}

} // namespace crucible
