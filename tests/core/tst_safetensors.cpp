// safetensors: round trips (F32, BF16 and F16 read back as f32, metadata), the
// byte layout other tools rely on, and one refusal per kind of corrupt file,
// each an Error that names the file.
#include "core/io/safetensors.h"

#include "core/io/file_util.h"
#include "kernels/error.h"
#include "tests/support/test_support.h"

#include <nlohmann/json.hpp>

#include <QTest>

#include <bit>
#include <cmath>
#include <cstring>
#include <fstream>

using namespace crucible;
namespace fs = std::filesystem;

namespace {

// A file from a header string and raw data bytes, exactly as given (no padding).
std::string raw_file(const std::string& header, const std::string& data = {})
{
    std::string out;
    const uint64_t n = header.size();
    for (int i = 0; i < 8; ++i) out.push_back(char((n >> (8 * i)) & 0xff));
    return out + header + data;
}

std::string error_of(const fs::path& path)
{
    try {
        SafetensorsReader reader(path);
    } catch (const Error& e) {
        return e.what();
    }
    return {};
}

std::vector<uint16_t> u16_of(const SafetensorsReader& r, const std::string& name)
{
    const SafetensorsEntry* e = r.find(name);
    std::vector<uint16_t> v(size_t(e->numel()));
    std::memcpy(v.data(), r.raw(*e), v.size() * 2);
    return v;
}

} // namespace

class TestSafetensors : public QObject {
    Q_OBJECT

private slots:
    void roundTripF32AndMetadata()
    {
        QTemporaryDir dir;
        const fs::path path = fs::path(dir.path().toStdString()) / "model.safetensors";
        const auto a = test::random_vector(6 * 5, 1);
        const auto b = test::random_vector(7, 2);
        const std::vector<int32_t> ids = {3, -1, 7, 2147483647};

        SafetensorsWriter w;
        w.add_f32("model.layers.0.self_attn.q_proj.weight", {6, 5}, a.data());
        w.add_f32("model.norm.weight", {7}, b.data());
        w.add("ids", "I32", {2, 2}, ids.data(), ids.size() * 4);
        w.set_metadata("format", "pt");
        w.set_metadata("step", "42");
        w.write(path);

        SafetensorsReader r(path);
        QCOMPARE(r.entries().size(), size_t(3));
        QCOMPARE(r.metadata().size(), size_t(2));
        QCOMPARE(r.metadata().at("format"), std::string("pt"));
        QCOMPARE(r.metadata().at("step"), std::string("42"));
        // Entries come back in file order, which is the order they were added.
        QCOMPARE(r.entries()[0].name, std::string("model.layers.0.self_attn.q_proj.weight"));
        QCOMPARE(r.entries()[1].name, std::string("model.norm.weight"));
        QCOMPARE(r.entries()[2].name, std::string("ids"));

        std::vector<float> a2(a.size()), b2(b.size());
        r.read_f32("model.layers.0.self_attn.q_proj.weight", {6, 5}, a2.data());
        r.read_f32("model.norm.weight", {7}, b2.data());
        QVERIFY(a2 == a);
        QVERIFY(b2 == b);
        const SafetensorsEntry* e = r.find("ids");
        QVERIFY(e);
        QCOMPARE(e->dtype, std::string("I32"));
        QCOMPARE(e->numel(), int64_t(4));
        std::vector<int32_t> ids2(4);
        std::memcpy(ids2.data(), r.raw(*e), 16);
        QVERIFY(ids2 == ids);
        QVERIFY(r.find("missing") == nullptr);
    }

    void emptyAndScalarTensors()
    {
        QTemporaryDir dir;
        const fs::path path = fs::path(dir.path().toStdString()) / "odd.safetensors";
        const float scalar = 2.5f;
        SafetensorsWriter w;
        w.add_f32("empty", {0, 4}, nullptr);
        w.add_f32("scalar", {}, &scalar);
        w.write(path);
        SafetensorsReader r(path);
        QCOMPARE(r.find("empty")->numel(), int64_t(0));
        float back = 0;
        r.read_f32("scalar", {}, &back);
        QCOMPARE(back, 2.5f);
    }

    void headerLayoutMatchesReference()
    {
        SafetensorsWriter w;
        const std::vector<float> x(3, 1.0f);
        const uint16_t h[1] = {0x3c00};
        // Added out of alphabetical order: the header must keep this order.
        w.add_f32("zeta", {3}, x.data());
        w.add("alpha", "F16", {1}, h, 2);
        w.add_f32("mid", {1, 3}, x.data());
        w.set_metadata("format", "pt");
        const std::string bytes = w.serialize();

        uint64_t n = 0;
        for (int i = 7; i >= 0; --i) n = (n << 8) | uint8_t(bytes[size_t(i)]);
        QCOMPARE(n % 8, uint64_t(0));
        const std::string header = bytes.substr(8, n);
        // Padding is spaces after the JSON, and the data follows exactly.
        const size_t close = header.find_last_of('}');
        QVERIFY(header.find_first_not_of(' ', close + 1) == std::string::npos);
        QCOMPARE(bytes.size(), size_t(8 + n + 12 + 2 + 12));

        const auto j = nlohmann::ordered_json::parse(header);
        std::vector<std::string> keys;
        for (const auto& [k, v] : j.items()) keys.push_back(k);
        QVERIFY((keys == std::vector<std::string>{"__metadata__", "zeta", "alpha", "mid"}));
        QVERIFY(j["zeta"]["data_offsets"] == nlohmann::json::array({0, 12}));
        QVERIFY(j["alpha"]["data_offsets"] == nlohmann::json::array({12, 14}));
        QVERIFY(j["mid"]["data_offsets"] == nlohmann::json::array({14, 26}));
        QVERIFY(j["mid"]["shape"] == nlohmann::json::array({1, 3}));
        QCOMPARE(j["alpha"]["dtype"].get<std::string>(), std::string("F16"));
    }

    void bf16ConvertsToF32()
    {
        QTemporaryDir dir;
        const fs::path path = fs::path(dir.path().toStdString()) / "bf16.safetensors";
        // Values exactly representable in bf16 (8 significant bits).
        const std::vector<float> values = {1.0f, -2.0f, 0.15625f, 0x1p100f, -0.0f, 1.0f / 1024, 255.0f,
                                           INFINITY};
        std::vector<uint16_t> bits;
        for (float v : values) {
            const uint32_t u = std::bit_cast<uint32_t>(v);
            bits.push_back(uint16_t(u >> 16));
        }
        SafetensorsWriter w;
        w.add("w", "BF16", {2, 4}, bits.data(), bits.size() * 2);
        w.write(path);

        SafetensorsReader r(path);
        QVERIFY(u16_of(r, "w") == bits);
        std::vector<float> out(8);
        r.read_f32("w", {2, 4}, out.data());
        for (size_t i = 0; i < values.size(); ++i) {
            const float expected = std::bit_cast<float>(uint32_t(bits[i]) << 16);
            QCOMPARE(std::bit_cast<uint32_t>(out[i]), std::bit_cast<uint32_t>(expected));
        }
        QCOMPARE(out[0], 1.0f);
        QCOMPARE(out[2], 0.15625f);
        QVERIFY(std::signbit(out[4]));
        QVERIFY(std::isinf(out[7]));
    }

    void f16ConvertsToF32()
    {
        QTemporaryDir dir;
        const fs::path path = fs::path(dir.path().toStdString()) / "f16.safetensors";
        struct Case { uint16_t bits; float value; };
        const std::vector<Case> cases = {
            {0x3c00, 1.0f},
            {0xc000, -2.0f},
            {0x3555, 0.333251953125f},
            {0x7bff, 65504.0f},              // largest finite half
            {0x0400, 6.103515625e-05f},      // smallest normal
            {0x0001, 5.9604644775390625e-08f},   // smallest subnormal, 2^-24
            {0x83ff, -6.097555160522461e-05f},   // largest negative subnormal
            {0x0000, 0.0f},
            {0x7c00, INFINITY},
            {0xfc00, -INFINITY},
        };
        std::vector<uint16_t> bits;
        for (const auto& c : cases) bits.push_back(c.bits);
        bits.push_back(0x7e00);   // NaN
        bits.push_back(0x8000);   // -0
        SafetensorsWriter w;
        w.add("h", "F16", {int64_t(bits.size())}, bits.data(), bits.size() * 2);
        w.write(path);

        SafetensorsReader r(path);
        std::vector<float> out(bits.size());
        r.read_f32("h", {int64_t(bits.size())}, out.data());
        for (size_t i = 0; i < cases.size(); ++i) QCOMPARE(out[i], cases[i].value);
        QVERIFY(std::isnan(out[cases.size()]));
        QVERIFY(out[cases.size() + 1] == 0.0f && std::signbit(out[cases.size() + 1]));
    }

    void readF32ChecksNameShapeAndDtype()
    {
        QTemporaryDir dir;
        const fs::path path = fs::path(dir.path().toStdString()) / "model.safetensors";
        const auto q = test::random_vector(64 * 128, 3);
        const std::vector<int32_t> ids(4, 1);
        SafetensorsWriter w;
        w.add_f32("model.layers.0.self_attn.q_proj.weight", {64, 128}, q.data());
        w.add("ids", "I32", {4}, ids.data(), 16);
        w.write(path);
        SafetensorsReader r(path);
        std::vector<float> out(128 * 128);

        try {
            r.read_f32("model.layers.0.self_attn.q_proj.weight", {128, 128}, out.data());
            QFAIL("a shape mismatch must be refused");
        } catch (const Error& e) {
            const std::string msg = e.what();
            QVERIFY2(msg.find("has shape [64, 128] but this model needs [128, 128]") != std::string::npos, e.what());
            QVERIFY2(msg.find(path.string()) != std::string::npos, e.what());
        }
        try {
            r.read_f32("model.norm.weight", {128}, out.data());
            QFAIL("a missing tensor must be refused");
        } catch (const Error& e) {
            QVERIFY2(std::string(e.what()).find("model.norm.weight") != std::string::npos, e.what());
            QVERIFY2(std::string(e.what()).find(path.string()) != std::string::npos, e.what());
        }
        QVERIFY_THROWS_EXCEPTION(Error, r.read_f32("ids", {4}, out.data()));
    }

    void writerRefusesInconsistentTensors()
    {
        SafetensorsWriter w;
        const std::vector<float> x(4, 0.0f);
        QVERIFY_THROWS_EXCEPTION(Error, w.add("a", "F32", {2, 2}, x.data(), 12));
        QVERIFY_THROWS_EXCEPTION(Error, w.add("a", "F9", {2, 2}, x.data(), 16));
        QVERIFY_THROWS_EXCEPTION(Error, w.add("a", "F32", {-2, -2}, x.data(), 16));
        QVERIFY_THROWS_EXCEPTION(Error, w.add("__metadata__", "F32", {4}, x.data(), 16));
        w.add_f32("a", {4}, x.data());
        QVERIFY_THROWS_EXCEPTION(Error, w.add_f32("a", {4}, x.data()));
    }

    // Each row is a file broken in one way; each must be refused with an Error
    // that names the file and says what is wrong.
    void corruptFileIsRefused_data()
    {
        QTest::addColumn<QByteArray>("bytes");
        QTest::addColumn<QString>("problem");
        auto row = [](const char* name, const std::string& bytes, const char* problem) {
            QTest::newRow(name) << QByteArray(bytes.data(), qsizetype(bytes.size())) << QString(problem);
        };
        const std::string ok_entry = R"("w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]})";
        const std::string data16(16, '\0');

        row("shorter than 8 bytes", std::string("\x10\x00\x00", 3), "too short");
        row("empty file", "", "too short");
        {
            std::string b = raw_file("{}");
            b[0] = char(0xe8);   // claims 1000 header bytes in a 10-byte file
            b[1] = char(0x03);
            row("header longer than file", b, "truncated");
        }
        {
            std::string b = raw_file("{}");
            b[5] = char(0x01);   // 2^40 bytes
            row("absurd header length", b, "limit is 100000000");
        }
        row("header not json", raw_file("{\"w\": {\"dtype\": ", data16), "not valid JSON");
        row("header not an object", raw_file("[1, 2, 3]"), "not a JSON object");
        row("entry not an object", raw_file(R"({"w": [0, 16]})", data16), "not an object");
        row("missing dtype", raw_file(R"({"w": {"shape": [2, 2], "data_offsets": [0, 16]}})", data16),
            "no \"dtype\"");
        row("missing shape", raw_file(R"({"w": {"dtype": "F32", "data_offsets": [0, 16]}})", data16),
            "no \"shape\"");
        row("missing data_offsets", raw_file(R"({"w": {"dtype": "F32", "shape": [2, 2]}})", data16),
            "no \"data_offsets\"");
        row("unknown dtype", raw_file(R"({"w": {"dtype": "F31", "shape": [2, 2], "data_offsets": [0, 16]}})", data16),
            "unknown dtype \"F31\"");
        row("negative shape", raw_file(R"({"w": {"dtype": "F32", "shape": [-2, -2], "data_offsets": [0, 16]}})", data16),
            "negative dimension");
        row("fractional shape", raw_file(R"({"w": {"dtype": "F32", "shape": [2.5, 2], "data_offsets": [0, 16]}})", data16),
            "not an integer");
        row("overflowing shape",
            raw_file(R"({"w": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 16]}})", data16),
            "overflows");
        row("byte count overflows",
            raw_file(R"({"w": {"dtype": "F64", "shape": [4611686018427387904], "data_offsets": [0, 16]}})", data16),
            "too large");
        row("offsets size differs from shape",
            raw_file(R"({"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 12]}})", data16),
            "needs 16 bytes but its data_offsets span 12");
        row("offsets reversed", raw_file(R"({"w": {"dtype": "F32", "shape": [0], "data_offsets": [16, 0]}})", data16),
            "before it begins");
        row("offsets not a pair", raw_file(R"({"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0]}})", data16),
            "data_offsets [begin, end]");
        row("offsets outside data",
            raw_file(R"({"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [16, 32]}})", data16),
            "expected 32 bytes of tensor data, found 16");
        row("truncated data", raw_file("{" + ok_entry + "}", std::string(10, '\0')),
            "expected 16 bytes of tensor data, found 10");
        row("overlapping tensors",
            raw_file(R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},)"
                     R"( "b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}})",
                     data16),
            "overlap");
        row("metadata not an object", raw_file(R"({"__metadata__": "pt", )" + ok_entry + "}", data16),
            "\"__metadata__\" is not an object");
        row("metadata value not a string",
            raw_file(R"({"__metadata__": {"format": "pt", "step": 3}, )" + ok_entry + "}", data16),
            "metadata \"step\" is not a string");
    }

    void corruptFileIsRefused()
    {
        QFETCH(QByteArray, bytes);
        QFETCH(QString, problem);
        QTemporaryDir dir;
        const fs::path path = fs::path(dir.path().toStdString()) / "model.safetensors";
        write_file_atomic(path, std::string_view(bytes.constData(), size_t(bytes.size())));
        const std::string msg = error_of(path);
        QVERIFY2(!msg.empty(), "the corrupt file was accepted");
        QVERIFY2(msg.find(path.string()) != std::string::npos, msg.c_str());
        QVERIFY2(msg.find(problem.toStdString()) != std::string::npos, msg.c_str());
        // Every message ends with what the user can do about it.
        QVERIFY2(msg.find("restore it or train again") != std::string::npos, msg.c_str());
    }

    void missingFileIsAnError()
    {
        QTemporaryDir dir;
        const fs::path path = fs::path(dir.path().toStdString()) / "absent.safetensors";
        const std::string msg = error_of(path);
        QVERIFY2(msg.find(path.string()) != std::string::npos, msg.c_str());
        QVERIFY2(msg.find("not found") != std::string::npos, msg.c_str());
        QVERIFY(!error_of(dir.path().toStdString()).empty());
    }

    void failedWriteLeavesExistingFileUntouched()
    {
        QTemporaryDir dir;
        const fs::path folder = dir.path().toStdString();
        const auto x = test::random_vector(16, 4);
        SafetensorsWriter good;
        good.add_f32("x", {16}, x.data());
        // A name so long that the temporary file beside it cannot be created
        // (names are limited to 255 bytes), so the write fails before the
        // rename; the existing file is therefore written directly.
        const fs::path path = folder / (std::string(240, 'm') + ".safetensors");
        {
            const std::string bytes = good.serialize();
            std::ofstream(path, std::ios::binary).write(bytes.data(), std::streamsize(bytes.size()));
        }
        const std::string before = read_file(path);
        QCOMPARE(SafetensorsReader(path).entries().size(), size_t(1));

        SafetensorsWriter other;
        const auto y = test::random_vector(32, 5);
        other.add_f32("y", {32}, y.data());
        QVERIFY_THROWS_EXCEPTION(Error, other.write(path));
        QCOMPARE(read_file(path), before);

        // A writer that fails while serialising (a name that is not UTF-8)
        // must not touch the file either.
        const fs::path short_path = folder / "model.safetensors";
        good.write(short_path);
        SafetensorsWriter bad;
        bad.add_f32("bad\xff\xfe", {32}, y.data());
        QVERIFY_THROWS_EXCEPTION(Error, bad.write(short_path));
        QCOMPARE(read_file(short_path), before);

        // No temporary files are left behind.
        int files = 0;
        for ([[maybe_unused]] const auto& entry : fs::directory_iterator(folder)) ++files;
        QCOMPARE(files, 2);
    }

    void largeFileRoundTrip()
    {
        // 16 MB: large enough to notice an accidental quadratic or per-byte path.
        QTemporaryDir dir;
        const fs::path path = fs::path(dir.path().toStdString()) / "big.safetensors";
        const size_t n = size_t(4) << 20;
        std::vector<float> big(n);
        for (size_t i = 0; i < n; ++i) big[i] = float(i % 1000) * 0.5f;
        SafetensorsWriter w;
        w.add_f32("big", {int64_t(n / 1024), 1024}, big.data());
        w.write(path);
        SafetensorsReader r(path);
        std::vector<float> back(n);
        r.read_f32("big", {int64_t(n / 1024), 1024}, back.data());
        QVERIFY(back == big);
    }
};

QTEST_APPLESS_MAIN(TestSafetensors)
#include "tst_safetensors.moc"
