// ClaimsView: the claims table. Each claim of the text this project grew
// from ("RMSNorm 20% faster", "GQA 75% less KV cache", ...) beside what this
// machine measured and a verdict, all computed by bench::evaluate_claims from
// the rows measured (or opened), never from constants. Activating a row asks
// for the chart that decides it.
#pragma once

#include "core/bench/claims.h"

#include <QWidget>

#include <span>

class QTableWidget;

namespace crucible::ui {

class ClaimsView : public QWidget {
    Q_OBJECT
public:
    explicit ClaimsView(QWidget* parent = nullptr);

    void setRows(std::span<const bench::Row> rows);
    QTableWidget* table() const { return m_table; }
    const std::vector<bench::ClaimResult>& results() const { return m_results; }

    enum Column { ColClaim, ColSuite, ColMeasured, ColVerdict, ColCount };

signals:
    void chartRequested(const std::string& suite, const std::string& metric,
                        const std::map<std::string, std::string>& tags);

private:
    QTableWidget* m_table;
    std::vector<bench::ClaimResult> m_results;
};

QString verdictText(bench::Verdict v);

} // namespace crucible::ui
