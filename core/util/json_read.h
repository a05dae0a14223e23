// Reading config objects from JSON with errors a user can act on: unknown keys
// are refused (a typo must not be silently ignored), wrong types name the key.
#pragma once

#include "kernels/error.h"

#include <nlohmann/json.hpp>

#include <initializer_list>
#include <limits>
#include <string>
#include <type_traits>

namespace crucible {

class JsonReader {
public:
    JsonReader(const nlohmann::json& j, std::string section, std::initializer_list<const char*> known)
        : m_json(j), m_section(std::move(section))
    {
        if (!j.is_object()) throw Error(m_section + " must be a JSON object");
        for (const auto& [key, value] : j.items()) {
            bool ok = false;
            for (const char* k : known) ok = ok || key == k;
            if (!ok) throw Error(m_section + ": unknown key \"" + key + "\"");
        }
    }

    template <class T>
    bool read(const char* key, T& out) const
    {
        auto it = m_json.find(key);
        if (it == m_json.end() || it->is_null()) return false;
        if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
            // nlohmann converts 4.7 to 4 and 1e10 to a wrapped int: refuse both.
            if (!it->is_number_integer())
                throw Error(m_section + ": \"" + key + "\" must be a whole number, got " + it->dump());
            const bool fits = it->is_number_unsigned()
                ? it->template get<uint64_t>() <= uint64_t(std::numeric_limits<T>::max())
                : std::is_signed_v<T> && it->template get<int64_t>() >= int64_t(std::numeric_limits<T>::min()) &&
                      it->template get<int64_t>() <= int64_t(std::numeric_limits<T>::max());
            if (!fits)
                throw Error(m_section + ": \"" + key + "\" is out of range (" + it->dump() + "; at most " +
                            std::to_string(std::numeric_limits<T>::max()) + ")");
        }
        try {
            out = it->get<T>();
        } catch (const nlohmann::json::exception&) {
            throw Error(m_section + ": \"" + key + "\" has the wrong type (" + it->dump() + ")");
        }
        return true;
    }

    const nlohmann::json* child(const char* key) const
    {
        auto it = m_json.find(key);
        return it == m_json.end() ? nullptr : &*it;
    }

private:
    const nlohmann::json& m_json;
    std::string m_section;
};

} // namespace crucible
