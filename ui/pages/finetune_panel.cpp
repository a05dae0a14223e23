#include "ui/pages/finetune_panel.h"

#include "core/model/lora.h"
#include "core/train/finetune.h"
#include "ui/app_context.h"
#include "ui/format.h"
#include "ui/models/run_config_model.h"
#include "ui/theme.h"
#include "ui/widgets/form_helpers.h"
#include "ui/widgets/number_box.h"

#include <QCheckBox>
#include <QComboBox>
#include <QDir>
#include <QFileDialog>
#include <QFormLayout>
#include <QGridLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QPushButton>
#include <QSpinBox>
#include <QVBoxLayout>

#include <cmath>

namespace crucible::ui {

namespace {

const char* kModeNew = "new";
const char* kModeFinetune = "finetune";

QString moduleLabel(const std::string& module)
{
    return qs(module.substr(0, module.find("_proj")));
}

} // namespace

BaseCheck checkBase(const QString& path)
{
    BaseCheck c;
    if (path.trimmed().isEmpty()) {
        c.text = QObject::tr("Choose a base model: a run from the list, or a folder (a Crucible run or a Hugging Face "
                             "Llama/Qwen3 model).");
        return c;
    }
    try {
        const BaseModel base = open_base_model(path.toStdString());
        c.ok = true;
        c.config = base.config;
        c.text = QObject::tr("%1 · %2 parameters · %3 layers × %4 · context %5")
                     .arg(base.hf_folder ? QObject::tr("Hugging Face model") : QObject::tr("Crucible run"))
                     .arg(formatCount(double(count_params(base.config).total())))
                     .arg(base.config.n_layers)
                     .arg(base.config.d_model)
                     .arg(base.config.seq_len);
    } catch (const std::exception& e) {
        c.text = QString::fromUtf8(e.what());
    }
    return c;
}

const BaseCheck& FinetunePanel::check(const QString& path) const
{
    if (path != m_checkedPath || m_checkedPath.isEmpty()) {
        m_checked = checkBase(path);
        m_checkedPath = path;
    }
    return m_checked;
}

QString FinetunePanel::baseProblem() const
{
    const auto& ft = m_context.config()->config().finetune;
    if (!ft) return {};
    const BaseCheck& c = check(qs(ft->base));
    return c.ok ? QString() : c.text;
}

FinetunePanel::FinetunePanel(AppContext& context, QWidget* parent) : QWidget(parent), m_context(context)
{
    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(0, 0, 0, 0);
    auto* modeBox = new QGroupBox(tr("Mode"), this);
    auto* modeLayout = new QVBoxLayout(modeBox);
    m_mode = new QComboBox(modeBox);
    m_mode->setObjectName(QStringLiteral("modeCombo"));
    m_mode->addItem(tr("Train a new model"), QLatin1String(kModeNew));
    m_mode->addItem(tr("Fine-tune a model with LoRA"), QLatin1String(kModeFinetune));
    modeLayout->addWidget(m_mode);
    layout->addWidget(modeBox);

    m_details = new QWidget(this);
    auto* details = new QVBoxLayout(m_details);
    details->setContentsMargins(0, 0, 0, 0);
    details->addWidget(buildBase());
    details->addWidget(buildAdapters());
    layout->addWidget(m_details);

    connect(m_mode, &QComboBox::activated, this,
            [this] { setFinetuneMode(m_mode->currentData().toString() == QLatin1String(kModeFinetune)); });
    connect(context.config(), &RunConfigModel::configChanged, this, [this] {
        if (!m_loading) loadFromConfig();
    });
    connect(&m_scanner, &RunScanner::finished, this, &FinetunePanel::showRuns);
    connect(&context, &AppContext::runsChanged, this, [this] { m_scanner.scan({m_context.runsDir()}); });
    connect(&context, &AppContext::runsDirChanged, this, [this] { m_scanner.scan({m_context.runsDir()}); });
    m_scanner.scan({m_context.runsDir()});
    loadFromConfig();
}

QWidget* FinetunePanel::buildBase()
{
    auto* box = new QGroupBox(tr("Base model"), this);
    auto* v = new QVBoxLayout(box);
    auto* row = new QHBoxLayout;
    m_base = new QComboBox(box);
    m_base->setObjectName(QStringLiteral("baseCombo"));
    m_base->setToolTip(tr("A run trained here, or a model folder chosen with Folder…"));
    m_base->setSizeAdjustPolicy(QComboBox::AdjustToMinimumContentsLengthWithIcon);
    m_base->setMinimumContentsLength(16);
    m_folder = new QPushButton(tr("Folder…"), box);
    m_folder->setObjectName(QStringLiteral("baseFolderButton"));
    m_folder->setToolTip(tr("A Crucible run or checkpoint, or a Hugging Face folder (config.json naming "
                            "LlamaForCausalLM or Qwen3ForCausalLM, safetensors, tokenizer.model)"));
    row->addWidget(m_base, 1);
    row->addWidget(m_folder);
    v->addLayout(row);
    m_baseNote = makeNote(QString(), box);
    m_baseNote->setObjectName(QStringLiteral("baseNote"));
    m_baseNote->setTextInteractionFlags(Qt::TextSelectableByMouse);
    v->addWidget(m_baseNote);
    connect(m_base, &QComboBox::activated, this, [this] {
        const QString path = m_base->currentData().toString();
        if (!path.isEmpty()) chooseBase(path);
    });
    connect(m_folder, &QPushButton::clicked, this, &FinetunePanel::pickFolder);
    return box;
}

QWidget* FinetunePanel::buildAdapters()
{
    auto* box = new QGroupBox(tr("Adapters"), this);
    auto* f = new QFormLayout(box);
    f->setLabelAlignment(Qt::AlignRight);

    auto* targets = new QWidget(box);
    auto* grid = new QGridLayout(targets);
    grid->setContentsMargins(0, 0, 0, 0);
    grid->setHorizontalSpacing(10);
    int i = 0;
    for (const std::string& module : lora_module_names()) {
        auto* check = new QCheckBox(moduleLabel(module), targets);
        check->setObjectName(QStringLiteral("target_%1").arg(qs(module)));
        check->setToolTip(tr("Adapt %1 in every layer").arg(qs(module)));
        // Attention's four on the first row, the MLP's three on the second.
        grid->addWidget(check, i < 4 ? 0 : 1, i < 4 ? i : i - 4);
        m_targets.insert(qs(module), check);
        connect(check, &QCheckBox::toggled, this, [this] {
            editFinetune([&](FinetuneConfig& ft) {
                ft.lora.targets.clear();
                for (const std::string& m : lora_module_names())
                    if (m_targets.value(qs(m))->isChecked()) ft.lora.targets.push_back(m);
            });
        });
        ++i;
    }
    auto* shortcuts = new QHBoxLayout;
    auto* attention = new QPushButton(tr("Attention"), targets);
    attention->setObjectName(QStringLiteral("targetsAttention"));
    attention->setToolTip(tr("q, k, v and o: PEFT's \"attention\""));
    auto* all = new QPushButton(tr("All linear"), targets);
    all->setObjectName(QStringLiteral("targetsAllLinear"));
    all->setToolTip(tr("Every projection of the base: PEFT's \"all-linear\""));
    shortcuts->addWidget(attention);
    shortcuts->addWidget(all);
    shortcuts->addStretch(1);
    grid->addLayout(shortcuts, 2, 0, 1, 4);
    auto setTargets = [this](const std::string& spec) {
        editFinetune([&](FinetuneConfig& ft) { ft.lora.targets = parse_lora_targets(spec, m_context.config()->config().model); });
    };
    connect(attention, &QPushButton::clicked, this, [setTargets] { setTargets("attention"); });
    connect(all, &QPushButton::clicked, this, [setTargets] { setTargets("all-linear"); });
    f->addRow(tr("Targets"), targets);

    // Wide ranges on purpose: a rank larger than a projection is explained
    // by LoraConfig::problems, not clamped.
    m_rank = makeSpin(box, "loraRankSpin", 0, 65536, tr("Rank r of each adapter: A is [r, in], B is [out, r]"));
    m_alpha = makeNumber(box, "loraAlphaBox", 0.0, 1e6, tr("Scale numerator: the update is (alpha / r)·B·A"));
    m_dropout = makeNumber(box, "loraDropoutBox", 0.0, 0.99, tr("Dropout on the adapters' input while training"));
    m_dropout->setDecimals(2);
    m_dropout->setSingleStep(0.05);
    m_rslora = new QCheckBox(tr("rsLoRA: scale alpha / √r"), box);
    m_rslora->setObjectName(QStringLiteral("rsloraCheck"));
    m_init = new QComboBox(box);
    m_init->setObjectName(QStringLiteral("loraInitCombo"));
    m_init->addItem(tr("Kaiming-uniform (PEFT's default)"), QStringLiteral("kaiming"));
    m_init->addItem(tr("Gaussian N(0, 1/r)"), QStringLiteral("gaussian"));
    m_scaleNote = makeNote(QString(), box);
    m_scaleNote->setObjectName(QStringLiteral("loraScaleNote"));
    m_qlora = new QCheckBox(tr("QLoRA: NF4 base weights"), box);
    m_qlora->setObjectName(QStringLiteral("qloraCheck"));
    m_qlora->setToolTip(tr("Store the frozen projections in 4-bit NormalFloat, as bitsandbytes does"));
    m_checkpointing = new QCheckBox(tr("Gradient checkpointing"), box);
    m_checkpointing->setObjectName(QStringLiteral("gradCheckpointCheck"));
    m_checkpointing->setToolTip(tr("Recompute each block's activations in backward: less memory, more compute"));
    m_lr = makeNumber(box, "adapterLrBox", 0.0, 10.0, tr("AdamW learning rate of the adapters (arrows halve and double it)"),
                      true);
    f->addRow(tr("Rank r"), m_rank);
    f->addRow(tr("Alpha"), m_alpha);
    f->addRow(QString(), m_scaleNote);
    f->addRow(tr("Dropout"), m_dropout);
    f->addRow(QString(), m_rslora);
    f->addRow(tr("Init"), m_init);
    f->addRow(tr("Base"), m_qlora);
    f->addRow(tr("Memory"), m_checkpointing);
    f->addRow(tr("Learning rate"), m_lr);

    connect(m_rank, &QSpinBox::valueChanged, this, [this](int v) { editFinetune([&](FinetuneConfig& ft) { ft.lora.rank = v; }); });
    connect(m_alpha, &NumberBox::valueChanged, this,
            [this](double v) { editFinetune([&](FinetuneConfig& ft) { ft.lora.alpha = float(v); }); });
    connect(m_dropout, &NumberBox::valueChanged, this,
            [this](double v) { editFinetune([&](FinetuneConfig& ft) { ft.lora.dropout = float(v); }); });
    connect(m_rslora, &QCheckBox::toggled, this,
            [this](bool on) { editFinetune([&](FinetuneConfig& ft) { ft.lora.use_rslora = on; }); });
    connect(m_init, &QComboBox::currentIndexChanged, this, [this] {
        editFinetune([&](FinetuneConfig& ft) {
            ft.lora.init = m_init->currentData().toString() == QLatin1String("gaussian") ? LoraInit::gaussian
                                                                                       : LoraInit::kaiming_uniform;
        });
    });
    connect(m_qlora, &QCheckBox::toggled, this, [this](bool on) { editFinetune([&](FinetuneConfig& ft) { ft.qlora = on; }); });
    connect(m_checkpointing, &QCheckBox::toggled, this,
            [this](bool on) { editFinetune([&](FinetuneConfig& ft) { ft.grad_checkpoint = on; }); });
    connect(m_lr, &NumberBox::valueChanged, this, [this](double v) {
        if (m_loading) return;
        TrainConfig t = m_context.config()->config().train;
        t.optimizer.lr = float(v);
        m_loading = true;
        m_context.config()->setTrain(t);
        m_loading = false;
    });
    return box;
}

void FinetunePanel::setFinetuneMode(bool on)
{
    RunConfigModel* model = m_context.config();
    if (on == model->config().finetune.has_value()) return;
    if (!on) {
        m_last = *model->config().finetune;
        model->setFinetune(std::nullopt);
        return;
    }
    // Adapters train with AdamW at a rate of their own and without weight
    // decay: crucible-cli finetune's defaults.
    TrainConfig t = model->config().train;
    t.optimizer.type = OptimizerType::adamw;
    if (m_last.base.empty()) {
        t.optimizer.lr = 1e-3f;
        t.optimizer.weight_decay = 0.0f;
    }
    model->setTrain(t);
    model->setFinetune(m_last);
    if (!m_last.base.empty()) chooseBase(qs(m_last.base));
    else if (m_base->count() > 0 && !m_base->itemData(0).toString().isEmpty()) chooseBase(m_base->itemData(0).toString());
    else loadFromConfig();
}

bool FinetunePanel::chooseBase(const QString& path)
{
    RunConfigModel* model = m_context.config();
    FinetuneConfig ft = model->config().finetune.value_or(m_last);
    ft.base = QDir(path).absolutePath().toStdString();
    m_checkedPath.clear();   // read the folder again: it may have changed
    const BaseCheck check = this->check(qs(ft.base));
    m_loading = true;
    if (check.ok) {
        // The fine-tune has the base's architecture; targets the base lacks
        // (gate_proj of a GELU MLP) are dropped.
        ModelConfig base = check.config;
        std::vector<std::string> kept;
        for (const std::string& m : ft.lora.targets)
            if (m != "gate_proj" || base.mlp == MlpType::swiglu) kept.push_back(m);
        ft.lora.targets = kept;
        model->setModel(base);
    }
    model->setFinetune(ft);
    m_loading = false;
    loadFromConfig();
    return check.ok;
}

void FinetunePanel::pickFolder()
{
    const QString dir = QFileDialog::getExistingDirectory(this, tr("Choose the base model's folder"), m_context.runsDir());
    if (!dir.isEmpty()) chooseBase(dir);
}

void FinetunePanel::editFinetune(const std::function<void(FinetuneConfig&)>& change)
{
    if (m_loading || !m_context.config()->config().finetune) return;
    FinetuneConfig ft = *m_context.config()->config().finetune;
    change(ft);
    m_loading = true;
    m_context.config()->setFinetune(ft);
    m_loading = false;
    loadFromConfig();   // the shortcuts tick boxes; the scale follows r and alpha
}

void FinetunePanel::showRuns()
{
    const QString chosen = m_base->currentData().toString();
    const QSignalBlocker block(m_base);
    m_base->clear();
    for (const RunRecord& r : m_scanner.runs()) {
        // A base is a model with weights: a finished or stopped run with a
        // checkpoint, and no fine-tune (merge it first).
        if (!r.config || r.checkpoints.empty() || r.config->finetune) continue;
        m_base->addItem(QStringLiteral("%1 — %2, step %3")
                            .arg(qs(r.name), qs(r.config->model.name))
                            .arg(r.checkpoints.back()),
                        QString::fromStdString(r.root.string()));
    }
    const auto& ft = m_context.config()->config().finetune;
    const QString current = ft ? qs(ft->base) : chosen;
    if (!current.isEmpty()) {
        int index = m_base->findData(current);
        if (index < 0 && ft && !ft->base.empty()) {
            m_base->addItem(QDir::toNativeSeparators(current), current);
            index = m_base->count() - 1;
        }
        m_base->setCurrentIndex(index);
    }
    if (m_base->count() == 0) m_base->setPlaceholderText(tr("No trained run yet: choose a folder"));
}

void FinetunePanel::loadFromConfig()
{
    m_loading = true;
    const RunConfig& rc = m_context.config()->config();
    const bool on = rc.finetune.has_value();
    selectData(m_mode, QLatin1String(on ? kModeFinetune : kModeNew));
    m_details->setVisible(on);
    if (on) {
        const FinetuneConfig& ft = *rc.finetune;
        const QString base = qs(ft.base);
        int index = m_base->findData(base);
        if (index < 0 && !base.isEmpty()) {
            m_base->addItem(QDir::toNativeSeparators(base), base);
            index = m_base->count() - 1;
        }
        m_base->setCurrentIndex(index);
        const BaseCheck& c = check(base);
        m_baseNote->setStyleSheet(c.ok ? QString() : QStringLiteral("color: %1").arg(theme::danger().name()));
        m_baseNote->setText(c.text);
        for (auto it = m_targets.begin(); it != m_targets.end(); ++it) {
            it.value()->setChecked(ft.lora.targets_module(it.key().toStdString()));
            it.value()->setEnabled(it.key() != QLatin1String("gate_proj") || rc.model.mlp == MlpType::swiglu);
        }
        m_rank->setValue(ft.lora.rank);
        m_alpha->setValue(ft.lora.alpha);
        m_dropout->setValue(ft.lora.dropout);
        m_rslora->setChecked(ft.lora.use_rslora);
        selectData(m_init, ft.lora.init == LoraInit::gaussian ? QStringLiteral("gaussian") : QStringLiteral("kaiming"));
        m_qlora->setChecked(ft.qlora);
        m_checkpointing->setChecked(ft.grad_checkpoint);
        m_lr->setValue(rc.train.optimizer.lr);
        m_scaleNote->setText(ft.lora.rank >= 1 ? tr("The update is scaled by %1 (%2)")
                                                      .arg(double(ft.lora.scale()), 0, 'g', 4)
                                                      .arg(ft.lora.use_rslora ? tr("alpha / √r") : tr("alpha / r"))
                                               : QString());
    }
    m_loading = false;
}

} // namespace crucible::ui
