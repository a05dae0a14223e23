#include "core/bench/bench_table.h"

#include "kernels/backend.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>

namespace crucible {

Timing summarize(std::vector<double> samples)
{
    Timing t;
    if (samples.empty()) return t;
    std::sort(samples.begin(), samples.end());
    const size_t n = samples.size();
    t.median_ms = n % 2 ? samples[n / 2] : 0.5 * (samples[n / 2 - 1] + samples[n / 2]);
    t.min_ms = samples.front();
    t.max_ms = samples.back();
    t.repeats = int(n);
    return t;
}

Timing time_repeated(Backend& backend, const std::function<void()>& fn, int warmup, int repeats)
{
    for (int i = 0; i < warmup; ++i) fn();
    backend.synchronize();
    std::vector<double> samples;
    samples.reserve(size_t(std::max(repeats, 1)));
    for (int i = 0; i < std::max(repeats, 1); ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        fn();
        backend.synchronize();
        const auto t1 = std::chrono::steady_clock::now();
        samples.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    }
    return summarize(std::move(samples));
}

std::string BenchTable::to_text() const
{
    std::vector<std::vector<std::string>> cells;
    std::vector<std::string> header{""};
    for (const auto& c : columns) header.push_back(c.title);
    cells.push_back(header);
    for (const auto& r : rows) {
        std::vector<std::string> line{r.label};
        for (size_t i = 0; i < columns.size(); ++i) {
            const double v = i < r.values.size() ? r.values[i] : NAN;
            char buf[64];
            if (std::isnan(v)) std::snprintf(buf, sizeof buf, "-");
            else std::snprintf(buf, sizeof buf, "%.*f", columns[i].precision, v);
            line.push_back(buf);
        }
        cells.push_back(line);
    }
    std::vector<size_t> width(header.size(), 0);
    for (const auto& line : cells)
        for (size_t i = 0; i < line.size(); ++i) width[i] = std::max(width[i], line[i].size());
    std::string out = name + (device.empty() ? "" : " on " + device) + "\n";
    for (size_t li = 0; li < cells.size(); ++li) {
        for (size_t i = 0; i < cells[li].size(); ++i) {
            const std::string& s = cells[li][i];
            const std::string pad(width[i] - s.size(), ' ');
            out += i == 0 ? s + pad : "  " + pad + s;
        }
        out += "\n";
        if (li == 0) {
            size_t total = 0;
            for (size_t w : width) total += w + 2;
            out += std::string(total > 2 ? total - 2 : 0, '-') + "\n";
        }
    }
    for (const auto& n : notes) out += n + "\n";
    return out;
}

BenchColumn metric_column(const MetricInfo& m) { return {std::string(m.key), m.header(), m.precision}; }

nlohmann::json BenchTable::to_json() const
{
    nlohmann::json j;
    j["benchmark"] = name;
    j["device"] = device;
    j["rows"] = nlohmann::json::array();
    for (const auto& r : rows) {
        nlohmann::json row;
        row["label"] = r.label;
        for (size_t i = 0; i < columns.size() && i < r.values.size(); ++i)
            row[columns[i].key] = std::isnan(r.values[i]) ? nlohmann::json() : nlohmann::json(r.values[i]);
        j["rows"].push_back(row);
    }
    j["notes"] = notes;
    return j;
}

} // namespace crucible
