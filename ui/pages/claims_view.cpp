#include "ui/pages/claims_view.h"

#include "ui/format.h"
#include "ui/theme.h"

#include <QHeaderView>
#include <QLabel>
#include <QTableWidget>
#include <QVBoxLayout>

namespace crucible::ui {

QString verdictText(bench::Verdict v)
{
    switch (v) {
    case bench::Verdict::holds: return QObject::tr("holds");
    case bench::Verdict::does_not_hold: return QObject::tr("does not hold");
    case bench::Verdict::depends_on_size: return QObject::tr("depends on size");
    case bench::Verdict::not_measured: break;
    }
    return QObject::tr("not measured");
}

namespace {

QColor verdictColour(bench::Verdict v)
{
    switch (v) {
    case bench::Verdict::holds: return theme::success();
    case bench::Verdict::does_not_hold: return theme::danger();
    case bench::Verdict::depends_on_size: return theme::warning();
    case bench::Verdict::not_measured: break;
    }
    return theme::mutedText();
}

} // namespace

ClaimsView::ClaimsView(QWidget* parent) : QWidget(parent)
{
    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(0, 0, 0, 0);
    auto* intro = new QLabel(tr("Each claim of the original text, checked against what this machine measured. "
                                "Run the suite beside a claim to measure it; click a row for the chart that "
                                "decides it."),
                             this);
    intro->setWordWrap(true);
    intro->setProperty("role", "caption");
    layout->addWidget(intro);
    m_table = new QTableWidget(0, ColCount, this);
    m_table->setObjectName(QStringLiteral("claimsTable"));
    m_table->setHorizontalHeaderLabels({tr("Claim"), tr("Suite"), tr("Measured here"), tr("Verdict")});
    m_table->verticalHeader()->hide();
    // The measured value is a sentence (value, size, where it turns): rows
    // grow to show it whole rather than elide it.
    m_table->verticalHeader()->setSectionResizeMode(QHeaderView::ResizeToContents);
    m_table->setEditTriggers(QAbstractItemView::NoEditTriggers);
    m_table->setSelectionBehavior(QAbstractItemView::SelectRows);
    m_table->setSelectionMode(QAbstractItemView::SingleSelection);
    m_table->setWordWrap(true);
    m_table->horizontalHeader()->setSectionResizeMode(ColClaim, QHeaderView::Stretch);
    m_table->horizontalHeader()->setSectionResizeMode(ColSuite, QHeaderView::ResizeToContents);
    m_table->horizontalHeader()->setSectionResizeMode(ColMeasured, QHeaderView::Stretch);
    m_table->horizontalHeader()->setSectionResizeMode(ColVerdict, QHeaderView::ResizeToContents);
    layout->addWidget(m_table, 1);
    connect(m_table, &QTableWidget::cellActivated, this, [this](int row, int) {
        if (row < 0 || row >= int(m_results.size())) return;
        const bench::ClaimResult& r = m_results[size_t(row)];
        emit chartRequested(r.claim.suite, r.claim.metric, r.tags);
    });
    connect(m_table, &QTableWidget::cellClicked, m_table, &QTableWidget::cellActivated);
    setRows({});
}

void ClaimsView::setRows(std::span<const bench::Row> rows)
{
    m_results = bench::evaluate_claims(rows);
    m_table->setRowCount(int(m_results.size()));
    for (int i = 0; i < int(m_results.size()); ++i) {
        const bench::ClaimResult& r = m_results[size_t(i)];
        auto* claim = new QTableWidgetItem(qs(r.claim.text));
        claim->setToolTip(tr("Measured by the %1 suite").arg(qs(r.claim.suite)));
        QString measured = qs(r.measured);
        if (!r.turns_at.empty()) measured += QStringLiteral(" (%1)").arg(qs(r.turns_at));
        auto* value = new QTableWidgetItem(r.verdict == bench::Verdict::not_measured ? QStringLiteral("–") : measured);
        value->setToolTip(measured);
        auto* verdict = new QTableWidgetItem(verdictText(r.verdict));
        verdict->setForeground(verdictColour(r.verdict));
        QFont bold = verdict->font();
        bold.setBold(true);
        verdict->setFont(bold);
        m_table->setItem(i, ColClaim, claim);
        m_table->setItem(i, ColSuite, new QTableWidgetItem(qs(r.claim.suite)));
        m_table->setItem(i, ColMeasured, value);
        m_table->setItem(i, ColVerdict, verdict);
    }
}

} // namespace crucible::ui
