#include "ui/theme.h"

#include <QApplication>
#include <QPalette>
#include <QStyleFactory>

namespace crucible::ui::theme {

QColor accent() { return QColor(0x25, 0x63, 0xeb); }
QColor text() { return QColor(0x1f, 0x29, 0x37); }
QColor mutedText() { return QColor(0x6b, 0x72, 0x80); }
QColor border() { return QColor(0xdd, 0xe1, 0xe7); }
QColor danger() { return QColor(0xc6, 0x28, 0x28); }
QColor warning() { return QColor(0xb4, 0x53, 0x09); }
QColor success() { return QColor(0x15, 0x80, 0x3d); }
QColor sidebar() { return QColor(0x1e, 0x22, 0x2b); }

QColor series(int index)
{
    static const QColor palette[] = {
        QColor(0xf9, 0x73, 0x16), QColor(0x25, 0x63, 0xeb), QColor(0x10, 0xb9, 0x81), QColor(0x8b, 0x5c, 0xf6),
        QColor(0xe1, 0x1d, 0x48), QColor(0x08, 0x91, 0xb2), QColor(0xca, 0x8a, 0x04), QColor(0x47, 0x55, 0x69),
    };
    return palette[(index % 8 + 8) % 8];
}

void apply(QApplication& app)
{
    app.setStyle(QStyleFactory::create(QStringLiteral("Fusion")));
    QPalette p;
    p.setColor(QPalette::Window, QColor(0xf4, 0xf5, 0xf7));
    p.setColor(QPalette::WindowText, text());
    p.setColor(QPalette::Base, Qt::white);
    p.setColor(QPalette::AlternateBase, QColor(0xf7, 0xf8, 0xfa));
    p.setColor(QPalette::Text, text());
    p.setColor(QPalette::Button, QColor(0xfb, 0xfb, 0xfc));
    p.setColor(QPalette::ButtonText, text());
    p.setColor(QPalette::Highlight, accent());
    p.setColor(QPalette::HighlightedText, Qt::white);
    p.setColor(QPalette::ToolTipBase, QColor(0x1f, 0x29, 0x37));
    p.setColor(QPalette::ToolTipText, Qt::white);
    p.setColor(QPalette::PlaceholderText, QColor(0x9c, 0xa3, 0xaf));
    p.setColor(QPalette::Link, accent());
    p.setColor(QPalette::Mid, border());
    p.setColor(QPalette::Disabled, QPalette::Text, QColor(0xa0, 0xa6, 0xb0));
    p.setColor(QPalette::Disabled, QPalette::ButtonText, QColor(0xa0, 0xa6, 0xb0));
    p.setColor(QPalette::Disabled, QPalette::WindowText, QColor(0xa0, 0xa6, 0xb0));
    app.setPalette(p);

    // Kept short: a style sheet on every widget slows painting, so only the
    // page list, cards and the primary button are styled.
    app.setStyleSheet(QStringLiteral(R"(
QListWidget#pageList {
    background: #1e222b; border: none; outline: 0; color: #c8ced8; padding-top: 8px;
}
QListWidget#pageList::item { padding: 10px 4px; margin: 2px 6px; border-radius: 8px; }
QListWidget#pageList::item:hover { background: #2b313d; }
QListWidget#pageList::item:selected { background: #2563eb; color: white; }
QGroupBox {
    background: white; border: 1px solid #dde1e7; border-radius: 8px;
    margin-top: 14px; padding: 10px 8px 8px 8px; font-weight: 600;
}
QGroupBox::title { subcontrol-origin: margin; left: 10px; padding: 0 4px; color: #374151; }
QGroupBox QLabel, QGroupBox QCheckBox, QGroupBox QRadioButton { font-weight: normal; }
QPushButton[primary="true"] {
    background: #2563eb; color: white; border: none; border-radius: 6px; padding: 6px 18px; font-weight: 600;
}
QPushButton[primary="true"]:hover { background: #1d4ed8; }
QPushButton[primary="true"]:disabled { background: #b8c4dc; color: #eef2f8; }
QLabel[role="heading"] { font-size: 16pt; font-weight: 600; color: #111827; }
QLabel[role="subtitle"] { color: #6b7280; }
QLabel[role="metric"] { font-size: 15pt; font-weight: 600; color: #111827; }
QLabel[role="caption"] { color: #6b7280; font-size: 8.5pt; }
QTabWidget::pane { border: 1px solid #dde1e7; border-radius: 6px; background: white; top: -1px; }
QTabBar::tab { padding: 6px 14px; border: 1px solid transparent; color: #4b5563; }
QTabBar::tab:selected { color: #111827; border: 1px solid #dde1e7; border-bottom-color: white;
    background: white; border-top-left-radius: 6px; border-top-right-radius: 6px; }
QScrollArea#formScroll, QScrollArea#formScroll > QWidget > QWidget { background: transparent; border: none; }
QToolTip { color: white; background: #1f2937; border: none; padding: 4px; }
)"));
}

} // namespace crucible::ui::theme
