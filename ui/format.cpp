#include "ui/format.h"

#include "core/train/memory_estimate.h"

#include <QLocale>

#include <cmath>

namespace crucible::ui {

namespace {

QString scaled(double n, const char* const* units, int count, double base)
{
    if (!std::isfinite(n)) return QStringLiteral("–");
    int u = 0;
    double v = n;
    while (std::fabs(v) >= base && u < count - 1) {
        v /= base;
        ++u;
    }
    const int decimals = u == 0 ? 0 : (std::fabs(v) < 10 ? 2 : (std::fabs(v) < 100 ? 1 : 0));
    QString s = QString::number(v, 'f', decimals);
    if (units[u][0]) s += QLatin1Char(' ') + QLatin1String(units[u]);
    return s;
}

} // namespace

QString formatCount(double n)
{
    static const char* const units[] = {"", "K", "M", "B", "T"};
    return scaled(n, units, 5, 1000.0);
}

QString formatBytes(double bytes) { return qs(format_bytes(bytes)); }

QString formatFlops(double flops)
{
    static const char* const units[] = {"FLOP", "KFLOP", "MFLOP", "GFLOP", "TFLOP", "PFLOP"};
    return scaled(flops, units, 6, 1000.0);
}

QString formatRate(double perSecond)
{
    static const char* const units[] = {"", "K", "M", "G"};
    return scaled(perSecond, units, 4, 1000.0);
}

QString formatDuration(double seconds)
{
    if (!std::isfinite(seconds) || seconds < 0) return QStringLiteral("–");
    if (seconds < 10) return QString::number(seconds, 'f', 1) + QStringLiteral(" s");
    const qint64 s = qint64(std::llround(seconds));
    if (s < 60) return QString::number(s) + QStringLiteral(" s");
    if (s < 3600) return QStringLiteral("%1 m %2 s").arg(s / 60).arg(s % 60, 2, 10, QLatin1Char('0'));
    return QStringLiteral("%1 h %2 m").arg(s / 3600).arg(s % 3600 / 60, 2, 10, QLatin1Char('0'));
}

QString formatNumber(double v, int significant)
{
    if (!std::isfinite(v)) return QStringLiteral("–");
    if (v != 0 && (std::fabs(v) < 1e-3 || std::fabs(v) >= 1e6)) return QString::number(v, 'e', significant - 1);
    return QString::number(v, 'g', significant);
}

} // namespace crucible::ui
