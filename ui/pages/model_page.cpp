#include "ui/pages/model_page.h"

#include "core/model/lora.h"
#include "core/train/finetune_estimate.h"
#include "core/train/memory_estimate.h"
#include "ui/app_context.h"
#include "ui/pages/finetune_panel.h"
#include "ui/workers/training_controller.h"
#include "ui/format.h"
#include "ui/models/device_inventory.h"
#include "ui/models/run_config_model.h"
#include "ui/theme.h"
#include "ui/widgets/form_helpers.h"
#include "ui/widgets/message_banner.h"
#include "ui/widgets/number_box.h"
#include "ui/widgets/stacked_bar.h"

#include <QCheckBox>
#include <QComboBox>
#include <QFormLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QScrollArea>
#include <QScrollBar>
#include <QSettings>
#include <QHeaderView>
#include <QSpinBox>
#include <QTableWidget>
#include <QVBoxLayout>

#include <nlohmann/json.hpp>

namespace crucible::ui {

namespace {

const char* presetHint(const std::string& name)
{
    if (name == "nano") return "A first experiment: trains in minutes on a CPU.";
    if (name == "micro") return "Learns real structure; a CPU manages it, a GPU makes it quick.";
    if (name == "small") return "Meant for a GPU.";
    if (name == "base") return "GPT-2 small scale: needs a GPU.";
    if (name == "large") return "TinyLlama's shape (1.1B): for fine-tuning on a GPU.";
    return "Your own architecture.";
}

} // namespace

ModelPage::ModelPage(AppContext& context, QWidget* parent) : QWidget(parent), m_context(context)
{
    auto* outer = new QVBoxLayout(this);
    outer->setContentsMargins(20, 16, 20, 16);
    addPageHeader(outer, tr("Model"),
                  tr("Choose a preset or shape your own decoder; its size, cost and memory follow every change."));
    m_problems = new MessageBanner(this);
    m_problems->setObjectName(QStringLiteral("modelProblems"));
    outer->addWidget(m_problems);

    auto* columns = new QHBoxLayout;
    columns->setSpacing(16);
    auto* scroll = new QScrollArea(this);
    scroll->setObjectName(QStringLiteral("formScroll"));
    scroll->setWidgetResizable(true);
    scroll->setFrameShape(QFrame::NoFrame);
    scroll->setWidget(buildForm());
    // Room for the form beside its vertical scroll bar, which a fine-tune's
    // longer form needs: no horizontal bar for a few pixels.
    scroll->setMinimumWidth(std::max(380, scroll->widget()->minimumSizeHint().width() +
                                              scroll->verticalScrollBar()->sizeHint().width() + 2 * scroll->frameWidth()));
    scroll->setMaximumWidth(460);
    columns->addWidget(scroll, 0);
    columns->addWidget(buildFacts(), 1);
    outer->addLayout(columns, 1);

    connect(context.config(), &RunConfigModel::configChanged, this, [this] {
        if (!m_loading) loadFromConfig();
        updateFacts();
    });
    connect(context.devices(), &DeviceInventory::changed, this, &ModelPage::updateFacts);
    // A fine-tune's measured peak goes beside its estimate once steps arrive.
    connect(context.training(), &TrainingController::runStarting, this, [this] {
        m_measuredPeak = m_measuredSteps = 0;
        updateFacts();
    });
    connect(context.training(), &TrainingController::stepsReceived, this, [this](const QVector<StepMetrics>& steps) {
        if (!m_context.training()->runConfig().finetune) return;
        for (const StepMetrics& s : steps) noteMeasuredPeak(s.step, s.memory_bytes);
    });
    loadFromConfig();
    updateFacts();
}

QWidget* ModelPage::buildForm()
{
    auto* form = new QWidget;
    auto* layout = new QVBoxLayout(form);
    layout->setContentsMargins(0, 0, 6, 0);

    m_finetune = new FinetunePanel(m_context, form);
    layout->addWidget(m_finetune);

    auto* presetBox = new QGroupBox(tr("Start from"), form);
    m_presetBox = presetBox;
    auto* presetLayout = new QVBoxLayout(presetBox);
    m_preset = new QComboBox(presetBox);
    m_preset->setObjectName(QStringLiteral("presetCombo"));
    for (const auto& name : preset_names()) {
        const ModelConfig c = preset(name);
        m_preset->addItem(QStringLiteral("%1 — %2 parameters").arg(qs(name), formatCount(double(count_params(c).total()))),
                          qs(name));
    }
    m_preset->addItem(tr("custom"), QStringLiteral("custom"));
    m_presetNote = makeNote(QString(), presetBox);
    presetLayout->addWidget(m_preset);
    presetLayout->addWidget(m_presetNote);
    connect(m_preset, &QComboBox::activated, this, [this](int index) {
        const QString name = m_preset->itemData(index).toString();
        if (name == QLatin1String("custom")) return;
        QSettings().setValue(QStringLiteral("model/lastPreset"), name);
        m_context.config()->applyPreset(name);
    });
    layout->addWidget(presetBox);

    auto* arch = new QGroupBox(tr("Architecture"), form);
    m_archBox = arch;
    auto* f = new QFormLayout(arch);
    f->setLabelAlignment(Qt::AlignRight);
    m_archNote = makeNote(tr("A fine-tune keeps its base's architecture."), arch);
    f->addRow(m_archNote);
    // Wide ranges on purpose: a value the engine refuses is explained by the
    // engine (ModelConfig::problems), not silently clamped by the widget.
    m_vocab = makeSpin(arch, "vocabSpin", 0, 1 << 20, tr("Tokens in the vocabulary; the tokenizer is trained to this size"));
    m_dModel = makeSpin(arch, "dModelSpin", 0, 65536, tr("Width of the residual stream"));
    m_layers = makeSpin(arch, "layersSpin", 0, 512, tr("Transformer blocks"));
    m_heads = makeSpin(arch, "headsSpin", 0, 1024, tr("Query heads per attention layer"));
    m_kvHeads = makeSpin(arch, "kvHeadsSpin", 0, 1024,
                         tr("Key/value heads (GQA): equal to the query heads is MHA, 1 is MQA"));
    m_headDim = makeSpin(arch, "headDimSpin", 0, 512, tr("Width of each head; auto = d_model / heads"), tr("auto"));
    m_ff = makeSpin(arch, "ffSpin", 0, 1 << 20, tr("Hidden width of the MLP"));
    m_seq = makeSpin(arch, "seqSpin", 0, 131072, tr("Context length: the most positions the model sees"));
    m_ropeTheta = makeNumber(arch, "ropeThetaBox", 0.0, 1e8, tr("RoPE base frequency; larger suits longer contexts"), true);
    m_norm = new QComboBox(arch);
    m_norm->setObjectName(QStringLiteral("normCombo"));
    m_norm->addItem(QStringLiteral("RMSNorm"), QStringLiteral("rmsnorm"));
    m_norm->addItem(QStringLiteral("LayerNorm"), QStringLiteral("layernorm"));
    m_mlp = new QComboBox(arch);
    m_mlp->setObjectName(QStringLiteral("mlpCombo"));
    m_mlp->addItem(QStringLiteral("SwiGLU"), QStringLiteral("swiglu"));
    m_mlp->addItem(QStringLiteral("GELU"), QStringLiteral("gelu"));
    m_qkNorm = new QCheckBox(tr("RMSNorm on queries and keys (Qwen3)"), arch);
    m_qkNorm->setObjectName(QStringLiteral("qkNormCheck"));
    m_tied = new QCheckBox(tr("Output head shares the embedding"), arch);
    m_tied->setObjectName(QStringLiteral("tiedCheck"));
    f->addRow(tr("Vocabulary"), m_vocab);
    f->addRow(tr("d_model"), m_dModel);
    f->addRow(tr("Layers"), m_layers);
    f->addRow(tr("Heads"), m_heads);
    f->addRow(tr("KV heads"), m_kvHeads);
    f->addRow(tr("Head dim"), m_headDim);
    f->addRow(tr("MLP width"), m_ff);
    f->addRow(tr("Context"), m_seq);
    f->addRow(tr("RoPE θ"), m_ropeTheta);
    f->addRow(tr("Norm"), m_norm);
    f->addRow(tr("MLP"), m_mlp);
    f->addRow(tr("QK-norm"), m_qkNorm);
    f->addRow(tr("Tied head"), m_tied);
    layout->addWidget(arch);

    auto* advanced = new QGroupBox(tr("Initialisation and numerics"), form);
    m_numericsBox = advanced;
    auto* a = new QFormLayout(advanced);
    a->setLabelAlignment(Qt::AlignRight);
    m_normEps = makeNumber(advanced, "normEpsBox", 0.0, 1.0, tr("Epsilon inside the norms"), true);
    m_initStd = makeNumber(advanced, "initStdBox", 0.0, 1.0, tr("Standard deviation of the initial weights"), true);
    a->addRow(tr("Norm ε"), m_normEps);
    a->addRow(tr("Init std"), m_initStd);
    layout->addWidget(advanced);
    layout->addStretch(1);

    auto bindSpin = [this](QSpinBox* s, int ModelConfig::*field) {
        connect(s, &QSpinBox::valueChanged, this, [this, field](int v) { edit([&](ModelConfig& m) { m.*field = v; }); });
    };
    bindSpin(m_vocab, &ModelConfig::vocab_size);
    bindSpin(m_dModel, &ModelConfig::d_model);
    bindSpin(m_layers, &ModelConfig::n_layers);
    bindSpin(m_heads, &ModelConfig::n_heads);
    bindSpin(m_kvHeads, &ModelConfig::n_kv_heads);
    bindSpin(m_headDim, &ModelConfig::head_dim);
    bindSpin(m_ff, &ModelConfig::ff_dim);
    bindSpin(m_seq, &ModelConfig::seq_len);
    auto bindNumber = [this](NumberBox* n, float ModelConfig::*field) {
        connect(n, &NumberBox::valueChanged, this,
                [this, field](double v) { edit([&](ModelConfig& m) { m.*field = float(v); }); });
    };
    bindNumber(m_ropeTheta, &ModelConfig::rope_theta);
    bindNumber(m_normEps, &ModelConfig::norm_eps);
    bindNumber(m_initStd, &ModelConfig::init_std);
    connect(m_norm, &QComboBox::currentIndexChanged, this, [this] {
        edit([&](ModelConfig& m) {
            m.norm = m_norm->currentData().toString() == QLatin1String("layernorm") ? NormType::layernorm : NormType::rmsnorm;
        });
    });
    connect(m_mlp, &QComboBox::currentIndexChanged, this, [this] {
        edit([&](ModelConfig& m) {
            m.mlp = m_mlp->currentData().toString() == QLatin1String("gelu") ? MlpType::gelu : MlpType::swiglu;
        });
    });
    connect(m_qkNorm, &QCheckBox::toggled, this, [this](bool on) { edit([&](ModelConfig& m) { m.qk_norm = on; }); });
    connect(m_tied, &QCheckBox::toggled, this, [this](bool on) { edit([&](ModelConfig& m) { m.tied_embeddings = on; }); });
    return form;
}

QWidget* ModelPage::buildFacts()
{
    auto* facts = new QWidget;
    auto* layout = new QVBoxLayout(facts);
    layout->setContentsMargins(0, 0, 0, 0);

    auto* params = new QGroupBox(tr("Parameters"), facts);
    auto* p = new QVBoxLayout(params);
    m_totalParams = new QLabel(params);
    m_totalParams->setObjectName(QStringLiteral("totalParams"));
    m_totalParams->setProperty("role", "metric");
    m_paramBar = new StackedBar(params);
    m_paramBar->setObjectName(QStringLiteral("paramBar"));
    m_shapeFacts = new QLabel(params);
    m_shapeFacts->setWordWrap(true);
    m_shapeFacts->setTextInteractionFlags(Qt::TextSelectableByMouse);
    p->addWidget(m_totalParams);
    p->addWidget(m_paramBar);
    p->addWidget(m_shapeFacts);
    layout->addWidget(params);

    auto* compute = new QGroupBox(tr("Compute"), facts);
    auto* c = new QVBoxLayout(compute);
    m_computeFacts = new QLabel(compute);
    m_computeFacts->setObjectName(QStringLiteral("computeFacts"));
    m_computeFacts->setWordWrap(true);
    m_computeFacts->setTextInteractionFlags(Qt::TextSelectableByMouse);
    c->addWidget(m_computeFacts);
    layout->addWidget(compute);

    auto* memory = new QGroupBox(tr("Peak training memory"), facts);
    auto* m = new QVBoxLayout(memory);
    m_memoryDevice = makeNote(QString(), memory);
    m_memoryBar = new StackedBar(memory);
    m_memoryBar->setObjectName(QStringLiteral("memoryBar"));
    m_memoryVerdict = new QLabel(memory);
    m_memoryVerdict->setObjectName(QStringLiteral("memoryVerdict"));
    m_memoryVerdict->setWordWrap(true);
    m_measured = new QLabel(memory);
    m_measured->setObjectName(QStringLiteral("measuredPeak"));
    m_measured->setWordWrap(true);
    m_measured->hide();
    m->addWidget(m_memoryDevice);
    m->addWidget(m_memoryBar);
    m->addWidget(m_memoryVerdict);
    m->addWidget(m_measured);
    // Three memory figures meet a user; each says what it counts.
    m->addWidget(makeNote(tr("Estimated from the shapes: weights, gradients, optimizer state and the activations "
                             "of one step. The Train page charts what the run actually allocates; the whole "
                             "process (libraries, the corpus, the app) takes more, as crucible-cli bench train's "
                             "peak RSS shows."),
                          memory));
    layout->addWidget(memory);

    auto* presets = new QGroupBox(tr("The presets side by side"), facts);
    auto* p2 = new QVBoxLayout(presets);
    m_presetTable = new QTableWidget(presets);
    m_presetTable->setObjectName(QStringLiteral("presetTable"));
    m_presetTable->setColumnCount(7);
    m_presetTable->setHorizontalHeaderLabels({tr("Preset"), tr("Parameters"), tr("Layers × width"), tr("Heads (KV)"),
                                              tr("Context"), tr("Train FLOP/token"), tr("Training memory")});
    m_presetTable->verticalHeader()->hide();
    m_presetTable->setEditTriggers(QAbstractItemView::NoEditTriggers);
    m_presetTable->setSelectionMode(QAbstractItemView::NoSelection);
    m_presetTable->setFocusPolicy(Qt::NoFocus);
    m_presetTable->setShowGrid(false);
    m_presetTable->setAlternatingRowColors(true);
    m_presetTable->horizontalHeader()->setSectionResizeMode(QHeaderView::Stretch);
    m_presetTable->horizontalHeader()->setDefaultAlignment(Qt::AlignLeft | Qt::AlignVCenter);
    m_presetTable->setToolTip(tr("Memory is for the batch and device set on the Train page"));
    p2->addWidget(m_presetTable);
    layout->addWidget(presets);
    layout->addStretch(1);
    return facts;
}

void ModelPage::edit(const std::function<void(ModelConfig&)>& change)
{
    if (m_loading) return;
    ModelConfig m = m_context.config()->config().model;
    change(m);
    m_loading = true;   // our own widgets already show the change
    m_context.config()->setModel(m);
    m_loading = false;
    const std::string match = RunConfigModel::matchingPreset(m);
    const QSignalBlocker block(m_preset);
    selectData(m_preset, match.empty() ? QStringLiteral("custom") : qs(match));
    m_presetNote->setText(tr(presetHint(match.empty() ? "custom" : match)));
}

void ModelPage::loadFromConfig()
{
    m_loading = true;
    const ModelConfig& m = m_context.config()->config().model;
    const std::string match = RunConfigModel::matchingPreset(m);
    selectData(m_preset, match.empty() ? QStringLiteral("custom") : qs(match));
    m_presetNote->setText(tr(presetHint(match.empty() ? "custom" : match)));
    m_vocab->setValue(m.vocab_size);
    m_dModel->setValue(m.d_model);
    m_layers->setValue(m.n_layers);
    m_heads->setValue(m.n_heads);
    m_kvHeads->setValue(m.n_kv_heads);
    m_headDim->setValue(m.head_dim);
    m_ff->setValue(m.ff_dim);
    m_seq->setValue(m.seq_len);
    m_ropeTheta->setValue(m.rope_theta);
    selectData(m_norm, QLatin1String(to_string(m.norm)));
    selectData(m_mlp, QLatin1String(to_string(m.mlp)));
    m_qkNorm->setChecked(m.qk_norm);
    m_tied->setChecked(m.tied_embeddings);
    m_normEps->setValue(m.norm_eps);
    m_initStd->setValue(m.init_std);
    m_loading = false;
}

void ModelPage::updatePresetTable()
{
    const RunConfig& rc = m_context.config()->config();
    const TrainConfig& t = rc.train;
    const DeviceInventory* devices = m_context.devices();
    std::vector<std::pair<QString, ModelConfig>> rows;
    for (const auto& name : preset_names()) rows.emplace_back(qs(name), preset(name));
    const std::string match = RunConfigModel::matchingPreset(rc.model);
    // The row to highlight: the matching preset, or the user's own valid
    // architecture; an invalid one has no row, and nothing is highlighted.
    const bool yours = match.empty() && rc.model.problems().empty();
    if (yours) rows.emplace_back(tr("yours"), rc.model);
    m_presetTable->setRowCount(int(rows.size()));
    for (int r = 0; r < int(rows.size()); ++r) {
        const ModelConfig& m = rows[size_t(r)].second;
        const int seq = t.seq_len > 0 ? std::min(t.seq_len, m.seq_len) : m.seq_len;
        QString memory = QStringLiteral("–");
        if (t.batch_size >= 1)
            memory = formatBytes(double(estimate_training_memory(m, t.batch_size, seq, devices->computeFor(t.device)).total()));
        const QStringList cells = {rows[size_t(r)].first,
                                   formatCount(double(count_params(m).total())),
                                   QStringLiteral("%1 × %2").arg(m.n_layers).arg(m.d_model),
                                   QStringLiteral("%1 (%2)").arg(m.n_heads).arg(m.n_kv_heads),
                                   QString::number(m.seq_len),
                                   formatFlops(training_flops_per_token(m, seq)),
                                   memory};
        const bool current = match.empty() ? yours && r == int(rows.size()) - 1 : rows[size_t(r)].first == qs(match);
        for (int c = 0; c < cells.size(); ++c) {
            auto* item = new QTableWidgetItem(cells[c]);
            if (current) {
                QFont f = item->font();
                f.setBold(true);
                item->setFont(f);
                item->setForeground(theme::accent());
            }
            m_presetTable->setItem(r, c, item);
        }
    }
    m_presetTable->resizeRowsToContents();
    int height = m_presetTable->horizontalHeader()->height() + 2 * m_presetTable->frameWidth();
    for (int r = 0; r < m_presetTable->rowCount(); ++r) height += m_presetTable->rowHeight(r);
    m_presetTable->setFixedHeight(height);
}

void ModelPage::updateFacts()
{
    updatePresetTable();
    const RunConfig& rc = m_context.config()->config();
    const ModelConfig& m = rc.model;
    const bool finetune = rc.finetune.has_value();
    m_presetBox->setVisible(!finetune);
    m_archNote->setVisible(finetune);
    for (QWidget* box : {m_archBox, m_numericsBox})
        for (QWidget* w : box->findChildren<QWidget*>(Qt::FindDirectChildrenOnly))
            if (w != m_archNote) w->setEnabled(!finetune);
    const auto problems = m.problems();
    if (problems.empty() && finetune) {
        QString list;
        if (const QString base = m_finetune->baseProblem(); !base.isEmpty()) list += QStringLiteral("• ") + base + QLatin1Char('\n');
        // Everything the engine would refuse this fine-tune for, LoRA's settings
        // and the switches included: Start stays disabled until they are fixed.
        for (const auto& p : rc.problems()) list += QStringLiteral("• ") + qs(p) + QLatin1Char('\n');
        if (!list.isEmpty())
            m_problems->showMessage(MessageBanner::Kind::Error, tr("This fine-tune cannot start"), list.trimmed());
        else
            m_problems->clear();
    }
    if (!problems.empty()) {
        QString list;
        for (const auto& p : problems) list += QStringLiteral("• ") + qs(p) + QLatin1Char('\n');
        m_problems->showMessage(MessageBanner::Kind::Error, tr("This architecture cannot be built"), list.trimmed());
        m_totalParams->setText(QStringLiteral("–"));
        m_paramBar->setParts({});
        m_shapeFacts->clear();
        m_computeFacts->setText(tr("Fix the architecture to see its cost."));
        m_memoryBar->setParts({});
        m_memoryBar->clearLimit();
        m_memoryVerdict->clear();
        m_memoryDevice->clear();
        return;
    }
    if (!finetune) m_problems->clear();

    const ParamCounts n = count_params(m);
    const double total = double(n.total());
    m_totalParams->setText(tr("%1 parameters").arg(formatCount(total)));
    if (finetune && rc.finetune->lora.problems(m).empty()) {
        const int64_t trainable = lora_parameter_count(m, rc.finetune->lora);
        m_totalParams->setText(tr("%1 trainable of %2 parameters (%3%)")
                                   .arg(formatCount(double(trainable)), formatCount(total))
                                   .arg(100.0 * double(trainable) / total, 0, 'f', trainable < total / 100 ? 2 : 1));
    }
    auto part = [&](const QString& label, int64_t v, int color) {
        return StackedBar::Part{label, double(v), theme::series(color),
                                QStringLiteral("%1 (%2%)").arg(formatCount(double(v))).arg(total > 0 ? 100.0 * v / total : 0, 0, 'f', 1)};
    };
    QVector<StackedBar::Part> parts = {part(tr("Embedding"), n.embedding, 0), part(tr("Attention"), n.attention, 1),
                                       part(tr("MLP"), n.mlp, 2), part(tr("Norms"), n.norms, 7)};
    parts.push_back(n.lm_head > 0 ? part(tr("Head"), n.lm_head, 3)
                                  : StackedBar::Part{tr("Head"), 0, theme::series(3), tr("tied to the embedding")});
    m_paramBar->setParts(parts);

    const int hd = m.resolved_head_dim();
    const int group = m.n_heads / std::max(1, m.n_kv_heads);
    const QString attention = m.n_kv_heads == m.n_heads ? tr("multi-head attention")
                              : m.n_kv_heads == 1       ? tr("multi-query attention")
                                                        : tr("grouped-query attention, %1 query heads per KV head").arg(group);
    // K and V per token per layer, in the compute dtype of the device set on
    // the Train page: generation keeps the cache in it (bf16 on CUDA, f32 on
    // the CPU).
    const DType kvDtype = m_context.devices()->computeFor(rc.train.device);
    const double kvBytesPerToken = 2.0 * m.n_layers * double(dtype_bytes(kvDtype, m.kv_dim()));
    m_shapeFacts->setText(tr("%1 heads × %2 dims, %3.<br>KV cache: %4 per token, %5 for the full %6-token context.")
                              .arg(m.n_heads)
                              .arg(hd)
                              .arg(attention)
                              .arg(formatBytes(kvBytesPerToken))
                              .arg(formatBytes(kvBytesPerToken * m.seq_len))
                              .arg(m.seq_len));

    const TrainConfig& t = rc.train;
    const int seq = t.resolved_seq_len(m);
    const double flops = training_flops_per_token(m, seq);
    const int64_t tokensPerStep = t.tokens_per_step(m);
    const QString perStep = t.replicas() > 1
        ? tr("%1 per optimizer step of %2 tokens (%3 replicas × batch %4 × accumulation %5 × %6)")
              .arg(formatFlops(flops * double(tokensPerStep)))
              .arg(QLocale().toString(qlonglong(tokensPerStep)))
              .arg(t.replicas())
              .arg(t.batch_size)
              .arg(t.grad_accum)
              .arg(seq)
        : tr("%1 per optimizer step of %2 tokens (batch %3 × accumulation %4 × %5)")
              .arg(formatFlops(flops * double(tokensPerStep)))
              .arg(QLocale().toString(qlonglong(tokensPerStep)))
              .arg(t.batch_size)
              .arg(t.grad_accum)
              .arg(seq);
    m_computeFacts->setText(tr("<b>%1</b> per token to train (forward and backward, at %2 positions)<br>%3")
                                .arg(formatFlops(flops))
                                .arg(seq)
                                .arg(perStep));

    updateMemory();
}

void ModelPage::noteMeasuredPeak(qint64 step, qint64 bytes)
{
    m_measuredPeak = std::max(m_measuredPeak, bytes);
    m_measuredSteps = std::max(m_measuredSteps, step);
    updateMemory();
}

void ModelPage::updateMemory()
{
    const RunConfig& rc = m_context.config()->config();
    const ModelConfig& m = rc.model;
    const TrainConfig& t = rc.train;
    const int seq = t.resolved_seq_len(m);
    const auto* devices = m_context.devices();
    m_memoryDevice->setText(tr("On %1, for a micro-batch of %2 × %3 tokens (set on the Train page)")
                                .arg(devices->nameFor(t.device))
                                .arg(t.batch_size)
                                .arg(seq));
    if (t.batch_size < 1 || seq < 2) {
        m_memoryBar->setParts({});
        m_memoryVerdict->setText(tr("Set a batch size of at least 1 on the Train page to estimate memory."));
        return;
    }
    auto mem = [&](const QString& label, size_t v, int color) {
        return StackedBar::Part{label, double(v), theme::series(color), formatBytes(double(v))};
    };
    const DType compute = devices->computeFor(t.device);
    double need = 0;
    const bool finetune = rc.finetune && rc.finetune->lora.problems(m).empty();
    if (finetune) {
        const FinetuneEstimate e = estimate_finetune(m, *rc.finetune, t.batch_size, seq, compute);
        m_memoryBar->setParts({mem(rc.finetune->qlora ? tr("Frozen base (NF4)") : tr("Frozen base"), e.frozen_base, 1),
                               mem(tr("Adapters"), e.adapters, 4), mem(tr("Adapter optimizer"), e.adapter_optimizer, 3),
                               mem(tr("Activations"), e.activations, 2),
                               mem(tr("Workspace"), e.workspace, 7)});
        need = double(e.total());
    } else {
        const MemoryEstimate e = estimate_training_memory(m, t.batch_size, seq, compute);
        m_memoryBar->setParts({mem(tr("Weights"), e.parameters + e.compute_copy, 1), mem(tr("Gradients"), e.gradients, 0),
                               mem(tr("Optimizer"), e.optimizer, 3), mem(tr("Activations"), e.activations, 2),
                               mem(tr("Workspace"), e.workspace, 7)});
        need = double(e.total());
    }
    // What the running fine-tune allocates, beside what was estimated.
    const bool measuring = finetune && m_measuredSteps > 0 && m_context.training()->runConfig().finetune;
    m_measured->setVisible(measuring);
    if (measuring)
        m_measured->setText(tr("Measured peak after %1 steps: <b>%2</b> (estimated %3)")
                                .arg(m_measuredSteps)
                                .arg(formatBytes(double(m_measuredPeak)), formatBytes(need)));
    const MemoryInfo info = devices->memoryFor(t.device);
    if (info.free_bytes > 0) {
        // The free-memory marker only where it tells something: next to a
        // need of a few megabytes, 25 GB free would squash the breakdown.
        if (need > 0.25 * double(info.free_bytes))
            m_memoryBar->setLimit(double(info.free_bytes), tr("%1 free").arg(formatBytes(double(info.free_bytes))));
        else
            m_memoryBar->clearLimit();
        const double share = need / double(info.free_bytes);
        const QColor color = share > 1.0 ? theme::danger() : share > 0.8 ? theme::warning() : theme::success();
        const QString free = formatBytes(double(info.free_bytes));
        const QString verdict =
            share > 1.0 ? tr("Does not fit: needs %1 but only %2 is free. Lower the batch size or context, use "
                             "gradient accumulation, or choose a smaller model.")
                              .arg(formatBytes(need), free)
                        : tr("Fits: needs %1 of the %2 free (%3%).")
                              .arg(formatBytes(need), free)
                              .arg(100.0 * share, 0, 'f', share < 0.1 ? 1 : 0);
        m_memoryVerdict->setText(
            QStringLiteral("<span style='color:%1'><b>%2</b></span>").arg(color.name(), verdict.toHtmlEscaped()));
    } else {
        m_memoryBar->clearLimit();
        m_memoryVerdict->setText(tr("Needs about %1.").arg(formatBytes(need)));
    }
}

} // namespace crucible::ui
