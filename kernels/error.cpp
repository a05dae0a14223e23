#include "kernels/error.h"

#include <cstring>

namespace crucible {

void throw_error(const char* file, int line, const std::string& message)
{
    const char* base = std::strrchr(file, '/');
    base = base ? base + 1 : file;
    throw Error(message, std::string(base) + ":" + std::to_string(line));
}

} // namespace crucible
