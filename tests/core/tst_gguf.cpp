// GGUF: the writer's bytes follow the format (header, typed metadata,
// ne[] innermost first, 32-byte aligned offsets), the reader reads them back
// and refuses damaged files with a message, Q8_0 is ggml's block format, and
// an exported model carries what llama.cpp needs: hyper-parameters, the
// vocabulary with scores and token types, add_space_prefix as the tokenizer
// has it, llama.cpp's tensor names and Q/K rows in interleaved RoPE order.
// (tst_llama_cpp runs the exported files with llama.cpp itself.)
#include "core/io/file_util.h"
#include "core/io/gguf.h"
#include "core/io/gguf_export.h"
#include "core/model/param_layout.h"
#include "kernels/error.h"
#include "kernels/half.h"
#include "tests/support/test_support.h"
#include "tests/support/tiny_hf_model.h"

#include <QTemporaryDir>
#include <QTest>

#include <cmath>
#include <cstring>
#include <functional>

namespace fs = std::filesystem;
using namespace crucible;

namespace {

std::string error_of(const std::function<void()>& f)
{
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    return {};
}

template <typename T> T read_at(const std::string& bytes, size_t pos)
{
    T v;
    std::memcpy(&v, bytes.data() + pos, sizeof(T));
    return v;
}

std::string bytes_of(const std::vector<float>& v)
{
    return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
}

} // namespace

class TestGguf : public QObject {
    Q_OBJECT

private:
    QTemporaryDir m_tmp;
    fs::path path(const std::string& name) const { return fs::path(m_tmp.path().toStdString()) / name; }

    // A small file with one tensor of every type and metadata of every kind.
    std::string sample_file()
    {
        gguf::Writer w;
        w.add_string("general.architecture", "llama");
        w.add_u32("general.alignment", 32);
        w.add_i32("test.negative", -5);
        w.add_f32("test.float", 0.25f);
        w.add_bool("test.flag", true);
        w.add_strings("test.words", {"a", "", "\xE2\x96\x81the"});
        w.add_f32s("test.scores", {-1.5f, 0.0f, 2.0f});
        w.add_i32s("test.types", {1, 3, 6});
        const std::vector<float> matrix = test::random_vector(3 * 64, 1);
        const std::vector<float> vector = test::random_vector(5, 2);
        w.add_tensor("m.f32", {3, 64}, gguf::TensorType::f32, [=] { return bytes_of(matrix); });
        w.add_tensor("v.f32", {5}, gguf::TensorType::f32, [=] { return bytes_of(vector); });
        w.add_tensor("m.q8", {3, 64}, gguf::TensorType::q8_0, [=] { return gguf::quantize_q8_0(matrix.data(), 192); });
        w.add_tensor("m.f16", {3, 64}, gguf::TensorType::f16, [=] {
            std::string s;
            for (float x : matrix) { const uint16_t h = f16_from_f32(x); s.append(reinterpret_cast<const char*>(&h), 2); }
            return s;
        });
        w.write(path("sample.gguf"));
        return read_file(path("sample.gguf"));
    }

private slots:
    void writerFollowsTheFormat()
    {
        const std::string bytes = sample_file();
        QCOMPARE(bytes.substr(0, 4), std::string("GGUF"));
        QCOMPARE(read_at<uint32_t>(bytes, 4), 3u);
        QCOMPARE(read_at<uint64_t>(bytes, 8), uint64_t(4));    // tensors
        QCOMPARE(read_at<uint64_t>(bytes, 16), uint64_t(8));   // metadata pairs
        // First key: u64 length, the bytes, u32 type 8 (string), the value.
        QCOMPARE(read_at<uint64_t>(bytes, 24), uint64_t(20));
        QCOMPARE(bytes.substr(32, 20), std::string("general.architecture"));
        QCOMPARE(read_at<uint32_t>(bytes, 52), 8u);

        const gguf::File f = gguf::File::parse(bytes);
        QCOMPARE(f.get_string("general.architecture"), std::string("llama"));
        QCOMPARE(f.get_int("test.negative"), int64_t(-5));
        QCOMPARE(f.get_number("test.float"), 0.25);
        QVERIFY(f.get_bool("test.flag"));
        QCOMPARE(f.at("test.words").texts, (std::vector<std::string>{"a", "", "\xE2\x96\x81the"}));
        QCOMPARE(f.at("test.scores").numbers, (std::vector<double>{-1.5, 0.0, 2.0}));
        QCOMPARE(f.at("test.types").element_type, gguf::ValueType::i32);
        QCOMPARE(f.at("test.types").numbers, (std::vector<double>{1, 3, 6}));
        for (const auto& t : f.tensors()) QCOMPARE(t.offset % 32, uint64_t(0));

        const std::vector<float> matrix = test::random_vector(3 * 64, 1);
        const auto* m = f.find_tensor("m.f32");
        QCOMPARE(m->shape, (std::vector<int64_t>{3, 64}));
        QCOMPARE(f.to_f32(*m), matrix);
        QCOMPARE(f.to_f32(*f.find_tensor("v.f32")), test::random_vector(5, 2));
        // Shapes are stored innermost first: ne = {64, 3}.
        const size_t info = bytes.find("m.f32") + 5;
        QCOMPARE(read_at<uint32_t>(bytes, info), 2u);
        QCOMPARE(read_at<uint64_t>(bytes, info + 4), uint64_t(64));
        QCOMPARE(read_at<uint64_t>(bytes, info + 12), uint64_t(3));
        // f16 and q8_0 within their precision.
        const auto half = f.to_f32(*f.find_tensor("m.f16"));
        const auto q8 = f.to_f32(*f.find_tensor("m.q8"));
        float amax = 0.0f;
        for (float x : matrix) amax = std::max(amax, std::fabs(x));
        for (size_t i = 0; i < matrix.size(); ++i) {
            QVERIFY(std::fabs(half[i] - matrix[i]) <= 1e-3f * std::fabs(matrix[i]) + 1e-6f);
            QVERIFY(std::fabs(q8[i] - matrix[i]) <= 0.51f * amax / 127.0f);   // half a step, the scale in f16
        }
        QCOMPARE(f.find_tensor("m.q8")->bytes, uint64_t(3 * 2 * 34));
    }

    void q8BlocksAreGgmls()
    {
        // One block: the scale is max|x| / 127 as f16, values round(x / d).
        std::vector<float> x(32);
        for (int i = 0; i < 32; ++i) x[size_t(i)] = float(i - 16) * 0.5f;   // max |x| = 8
        const std::string q = gguf::quantize_q8_0(x.data(), 32);
        QCOMPARE(q.size(), size_t(34));
        const float d = 8.0f / 127.0f;
        QCOMPARE(read_at<uint16_t>(q, 0), f16_from_f32(d));
        for (int i = 0; i < 32; ++i)
            QCOMPARE(int(int8_t(q[size_t(2 + i)])), int(std::lround(x[size_t(i)] / d)));
        // An all-zero block has scale 0 and zeros, not NaN.
        const std::vector<float> zeros(32, 0.0f);
        std::vector<float> back(32, 1.0f);
        const std::string qz = gguf::quantize_q8_0(zeros.data(), 32);
        gguf::dequantize_q8_0(reinterpret_cast<const uint8_t*>(qz.data()), 32, back.data());
        QCOMPARE(back, zeros);
    }

    void readerRefusesDamage_data()
    {
        QTest::addColumn<int>("kind");
        QTest::addColumn<QString>("message");
        QTest::newRow("empty") << 0 << QString("too short");
        QTest::newRow("bad magic") << 1 << QString("does not start with \"GGUF\"");
        QTest::newRow("version 2") << 2 << QString("version 2");
        QTest::newRow("huge metadata count") << 3 << QString("metadata entries");
        QTest::newRow("truncated data") << 4 << QString("beyond the end");
        QTest::newRow("truncated metadata") << 5 << QString("ends in the middle");
        QTest::newRow("huge string") << 6 << QString("more than the file holds");
        QTest::newRow("unknown tensor type") << 7 << QString("ggml type 2");
        QTest::newRow("unknown value type") << 8 << QString("unknown metadata value type");
    }

    void readerRefusesDamage()
    {
        QFETCH(int, kind);
        QFETCH(QString, message);
        std::string bytes = sample_file();
        const size_t first_value = 24 + 8 + 20 + 4;   // the architecture's string value
        const size_t info = bytes.find("m.q8") + 4 + 4 + 16;   // its ggml type
        switch (kind) {
        case 0: bytes.clear(); break;
        case 1: bytes[0] = 'X'; break;
        case 2: bytes[4] = 2; break;
        case 3: std::memset(bytes.data() + 16, 0x7f, 8); break;
        case 4: bytes.resize(bytes.size() - 40); break;
        case 5: bytes.resize(bytes.find("m.q8") + 6); break;
        case 6: std::memset(bytes.data() + first_value, 0x7f, 8); break;
        case 7: bytes[info] = 2; break;   // q4_0
        case 8: bytes[52] = 99; break;
        }
        const std::string e = error_of([&] { gguf::File::parse(bytes, "sample.gguf"); });
        QVERIFY2(e.find(message.toStdString()) != std::string::npos, e.c_str());
        QVERIFY2(e.find("sample.gguf") != std::string::npos, e.c_str());
    }

    void ropeRowsInterleave()
    {
        // Head dim 4, two heads, one input column: HF rows (a0 a1 | b0 b1)
        // per head become llama.cpp's (a0 b0 a1 b1).
        const std::vector<float> rows = {0, 1, 2, 3, 10, 11, 12, 13};
        QCOMPARE(interleave_rope_rows(rows.data(), 2, 4, 1), (std::vector<float>{0, 2, 1, 3, 10, 12, 11, 13}));
    }

    void exportCarriesWhatLlamaCppReads_data()
    {
        QTest::addColumn<bool>("qwen3");
        QTest::addColumn<bool>("prefix");
        QTest::addColumn<QString>("type");
        QTest::newRow("llama f32, Crucible's tokenizer") << false << false << QString("f32");
        QTest::newRow("llama q8_0, LLaMA's tokenizer") << false << true << QString("q8_0");
        QTest::newRow("qwen3 bf16") << true << false << QString("bf16");
        QTest::newRow("llama f16") << false << false << QString("f16");
    }

    void exportCarriesWhatLlamaCppReads()
    {
        QFETCH(bool, qwen3);
        QFETCH(bool, prefix);
        QFETCH(QString, type);
        test::TinyHfModel spec;
        spec.qwen3 = qwen3;
        spec.space_prefix = prefix;
        spec.tied = qwen3;
        const fs::path dir = path("model-" + type.toStdString() + (qwen3 ? "-qwen3" : ""));
        const auto written = test::write_tiny_hf_model(dir, spec);
        const ModelConfig config = test::tiny_model_config(spec);
        const Tokenizer& tokenizer = test::tiny_tokenizer(prefix);
        GgufExportOptions o;
        o.type = parse_gguf_type(type.toStdString());
        o.chat_template = "{{ bos_token }}";
        const fs::path out = path("model-" + type.toStdString() + (qwen3 ? "-qwen3" : "") + ".gguf");
        const GgufExportSummary s = export_gguf(config, tokenizer, written.weights, o, out);

        const gguf::File f = gguf::File::read(out);
        const std::string arch = qwen3 ? "qwen3" : "llama";
        QCOMPARE(s.architecture, arch);
        QCOMPARE(f.get_string("general.architecture"), arch);
        QCOMPARE(f.get_int(arch + ".context_length"), int64_t(config.seq_len));
        QCOMPARE(f.get_int(arch + ".embedding_length"), int64_t(config.d_model));
        QCOMPARE(f.get_int(arch + ".block_count"), int64_t(config.n_layers));
        QCOMPARE(f.get_int(arch + ".feed_forward_length"), int64_t(config.ff_dim));
        QCOMPARE(f.get_int(arch + ".attention.head_count"), int64_t(config.n_heads));
        QCOMPARE(f.get_int(arch + ".attention.head_count_kv"), int64_t(config.n_kv_heads));
        QCOMPARE(f.get_int(arch + ".rope.dimension_count"), int64_t(config.resolved_head_dim()));
        QCOMPARE(f.get_int(arch + ".attention.key_length"), int64_t(config.resolved_head_dim()));
        QCOMPARE(float(f.get_number(arch + ".rope.freq_base")), config.rope_theta);
        QCOMPARE(float(f.get_number(arch + ".attention.layer_norm_rms_epsilon")), config.norm_eps);
        QCOMPARE(f.get_string("tokenizer.chat_template"), std::string("{{ bos_token }}"));

        // The vocabulary with its scores and types.
        QCOMPARE(f.get_string("tokenizer.ggml.model"), std::string("llama"));
        QCOMPARE(f.get_bool("tokenizer.ggml.add_space_prefix"), prefix);
        QVERIFY(!f.get_bool("tokenizer.ggml.add_bos_token"));
        const auto& tokens = f.at("tokenizer.ggml.tokens").texts;
        const auto& scores = f.at("tokenizer.ggml.scores").numbers;
        const auto& types = f.at("tokenizer.ggml.token_type").numbers;
        QCOMPARE(int(tokens.size()), tokenizer.vocab_size());
        QCOMPARE(f.get_int("tokenizer.ggml.bos_token_id"), int64_t(tokenizer.bos_id()));
        QCOMPARE(f.get_int("tokenizer.ggml.eos_token_id"), int64_t(tokenizer.eos_id()));
        QCOMPARE(types[size_t(tokenizer.unk_id())], 2.0);
        QCOMPARE(types[size_t(tokenizer.bos_id())], 3.0);
        QCOMPARE(types[size_t(tokenizer.eos_id())], 3.0);
        int bytes = 0;
        for (int id = 0; id < tokenizer.vocab_size(); ++id) {
            QCOMPARE(tokens[size_t(id)], tokenizer.piece(id));
            QCOMPARE(float(scores[size_t(id)]), tokenizer.score(id));
            if (types[size_t(id)] == 6.0) {
                ++bytes;
                QVERIFY(tokenizer.is_byte_piece(id));
            }
        }
        QCOMPARE(bytes, 256);

        // Tensors: llama.cpp's names and shapes, norms in f32, matrices in the
        // chosen type, Q/K interleaved for llama only.
        const ParamLayout layout(config);
        QCOMPARE(int(f.tensors().size()), int(layout.entries().size()));
        QVERIFY(f.find_tensor("token_embd.weight"));
        QVERIFY(f.find_tensor("output_norm.weight"));
        QCOMPARE(f.find_tensor("output.weight") != nullptr, !spec.tied);
        QCOMPARE(f.find_tensor("blk.1.attn_q_norm.weight") != nullptr, qwen3);
        const auto* norm = f.find_tensor("blk.0.attn_norm.weight");
        QCOMPARE(norm->type, gguf::TensorType::f32);
        const auto& q_entry = layout.at(ParamRole::q_proj, 1);
        const auto* q = f.find_tensor("blk.1.attn_q.weight");
        QCOMPARE(q->shape, q_entry.dims());
        QCOMPARE(q->type, o.type);
        const std::vector<float> stored = f.to_f32(*q);
        const float* hf = written.weights.data() + q_entry.offset;
        const std::vector<float> expected = qwen3 ? std::vector<float>(hf, hf + q_entry.numel())
                                                  : interleave_rope_rows(hf, config.n_heads, config.resolved_head_dim(),
                                                                         config.d_model);
        const float tolerance = o.type == gguf::TensorType::f32 ? 0.0f : o.type == gguf::TensorType::q8_0 ? 0.01f : 0.004f;
        for (size_t i = 0; i < stored.size(); ++i) QVERIFY(std::fabs(stored[i] - expected[i]) <= tolerance);
    }

    void exportRefusesWhatLlamaCppCannotRun()
    {
        ModelConfig c = test::tiny_model_config(test::TinyHfModel{});
        c.norm = NormType::layernorm;
        const std::vector<float> weights(size_t(ParamLayout(c).total()), 0.0f);
        const std::string e = error_of([&] {
            export_gguf(c, test::tiny_tokenizer(false), weights, GgufExportOptions{}, path("refused.gguf"));
        });
        QVERIFY2(e.find("--norm rmsnorm") != std::string::npos, e.c_str());
        QVERIFY(!fs::exists(path("refused.gguf")));
        QVERIFY(error_of([] { parse_gguf_type("q4_k"); }).find("f32, f16, bf16 or q8_0") != std::string::npos);
    }
};

QTEST_GUILESS_MAIN(TestGguf)
#include "tst_gguf.moc"
