// The fine-tune memory breakdown the Model page shows: NF4's size at 4.13
// bits per weight (double quantization), the trainable count as the engine's,
// QLoRA shrinking only the frozen base, gradient checkpointing only the
// activations, and the parts adding up to the engine's own LoRA estimate
// when neither is on.
#include "core/model/lora.h"
#include "core/model/nf4_base.h"
#include "core/train/finetune_estimate.h"
#include "core/train/memory_estimate.h"

#include <QTest>

using namespace crucible;

class TestFinetuneEstimate : public QObject {
    Q_OBJECT

    static FinetuneConfig lora(const ModelConfig& m)
    {
        FinetuneConfig ft;
        ft.lora.rank = 16;
        ft.lora.alpha = 32.0f;
        ft.lora.targets = parse_lora_targets("all-linear", m);
        return ft;
    }

private slots:
    void nf4TakesFourPointOneThreeBitsPerWeight()
    {
        // 4 bits, one byte per block of 64, four per 256 blocks, and the mean.
        QCOMPARE(nf4_bytes(64 * 256), size_t(64 * 256 / 2 + 256 + 4 + 4));
        const int64_t n = int64_t(1) << 30;
        const double bits = 8.0 * double(nf4_bytes(n)) / double(n);
        QVERIFY(bits > 4.12 && bits < 4.13);
        QCOMPARE(nf4_bytes(1), size_t(1 + 1 + 4 + 4));   // a partial block still has its absmax and scale
    }

    void plainLoraMatchesTheEngineEstimate()
    {
        const ModelConfig m = preset("micro");
        const FinetuneConfig ft = lora(m);
        const FinetuneEstimate e = estimate_finetune(m, ft, 4, 128, DType::bf16);
        QCOMPARE(e.trainable, lora_parameter_count(m, ft.lora));
        QCOMPARE(e.base_parameters, count_params(m).total());
        QCOMPARE(e.total(), estimate_finetune_memory(m, ft.lora, 4, 128, DType::bf16).total());
        // bf16 on a GPU: the frozen base is its bf16 copy alone, no f32 master.
        QCOMPARE(e.frozen_base, estimate_training_memory(m, 4, 128, DType::bf16).compute_copy);
        QVERIFY(e.adapters > 0 && e.adapter_optimizer > e.adapters);
    }

    void qloraShrinksTheBaseAndCheckpointingTheActivations()
    {
        const ModelConfig m = preset("large");
        FinetuneConfig ft = lora(m);
        const FinetuneEstimate plain = estimate_finetune(m, ft, 8, 1024, DType::bf16);
        ft.qlora = true;
        const FinetuneEstimate q = estimate_finetune(m, ft, 8, 1024, DType::bf16);
        ft.grad_checkpoint = true;
        const FinetuneEstimate qc = estimate_finetune(m, ft, 8, 1024, DType::bf16);
        // NF4 projections (~4.13 bits) beside the bf16 embedding and head:
        // about 0.35 of the bf16 base on `large`.
        QVERIFY(q.frozen_base < plain.frozen_base * 2 / 5);
        // The projections in NF4 (the engine's arena: ~4.13 bits a weight and
        // alignment), the rest (embedding, head, norms) in bf16.
        const ParamCounts n = count_params(m);
        QCOMPARE(q.frozen_base, nf4_base_bytes(m) + dtype_bytes(DType::bf16, nf4_base_layout(m).total()));
        QVERIFY(nf4_base_bytes(m) >= nf4_bytes(n.attention + n.mlp));
        QCOMPARE(q.total(), estimate_finetune_memory(m, ft.lora, 8, 1024, DType::bf16, true, false).total());
        QCOMPARE(q.adapters, plain.adapters);
        QCOMPARE(q.adapter_optimizer, plain.adapter_optimizer);
        QCOMPARE(q.activations, plain.activations);
        QVERIFY(qc.activations < q.activations / 2);
        QCOMPARE(qc.frozen_base, q.frozen_base);
        qInfo("large, 8 x 1024, r 16 all-linear: LoRA %s; QLoRA %s (base %s); QLoRA + checkpointing %s",
              format_bytes(double(plain.total())).c_str(), format_bytes(double(q.total())).c_str(),
              format_bytes(double(q.frozen_base)).c_str(), format_bytes(double(qc.total())).c_str());
    }
};

QTEST_GUILESS_MAIN(TestFinetuneEstimate)
#include "tst_finetune_estimate.moc"
