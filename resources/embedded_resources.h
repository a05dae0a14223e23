// Files compiled into the binary (see resources/CMakeLists.txt).
#pragma once

#include <optional>
#include <string_view>

namespace crucible {

// "tinyshakespeare.txt", "presets/nano.json", ...; nullopt when unknown.
std::optional<std::string_view> embedded_resource(std::string_view name);

} // namespace crucible
