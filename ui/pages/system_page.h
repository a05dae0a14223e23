// System page: what this machine and this build can do. The CPU and every
// CUDA device with the engine's facts about them (driver, CUDA and cuBLAS
// versions, peak throughput used for MFU), or the reason there is no GPU;
// memory; threads; the features compiled in; and where runs, caches and
// settings live.
#pragma once

#include <QWidget>

class QLabel;
class QVBoxLayout;

namespace crucible::ui {

class AppContext;

class SystemPage : public QWidget {
    Q_OBJECT
public:
    explicit SystemPage(AppContext& context, QWidget* parent = nullptr);

public slots:
    void refresh();

private:
    AppContext& m_context;
    QWidget* m_content = nullptr;
    QVBoxLayout* m_layout;
};

} // namespace crucible::ui
