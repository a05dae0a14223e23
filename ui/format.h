// Numbers as people read them: parameter counts, bytes, rates, durations.
// One place, so every page writes "1.05 M" and "3 m 12 s" the same way.
#pragma once

#include <QString>

#include <cstdint>
#include <string>

namespace crucible::ui {

inline QString qs(const std::string& s) { return QString::fromStdString(s); }

QString formatCount(double n);          // 1049728 -> "1.05 M"
QString formatBytes(double bytes);      // decimal units, as the engine's messages
QString formatFlops(double flops);      // 6.3e6 -> "6.30 MFLOP"
QString formatRate(double perSecond);   // 5123 -> "5.12 K"
QString formatDuration(double seconds); // 75 -> "1 m 15 s"
QString formatNumber(double v, int significant = 4);   // compact, no trailing zeros

} // namespace crucible::ui
