// Per-tensor CRC-32 in safetensors files: the checksum itself against known
// values, written on save, verified on load, a flipped bit anywhere in tensor
// data refused with a message naming the tensor, and files without checksums
// (from other tools) still loading.
#include "core/io/crc32.h"
#include "core/io/file_util.h"
#include "core/io/safetensors.h"
#include "kernels/error.h"

#include <QtTest>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <random>

namespace fs = std::filesystem;
using namespace crucible;

class ChecksumTest : public QObject {
    Q_OBJECT

private:
    QTemporaryDir m_tmp;
    fs::path path(const char* name) const { return fs::path(m_tmp.path().toStdString()) / name; }

    fs::path writeTwoTensors(const char* name)
    {
        std::vector<float> a(1000), b(37);
        for (size_t i = 0; i < a.size(); ++i) a[i] = float(i) * 0.5f;
        for (size_t i = 0; i < b.size(); ++i) b[i] = -float(i);
        SafetensorsWriter w;
        w.set_metadata("format", "pt");
        w.add_f32("a", {10, 100}, a.data());
        w.add_f32("b", {37}, b.data());
        w.write(path(name));
        return path(name);
    }

private slots:
    void knownValues()
    {
        QCOMPARE(crc32("", 0), 0u);
        QCOMPARE(crc32("123456789", 9), 0xCBF43926u);   // the standard check value
        const std::string fox = "The quick brown fox jumps over the lazy dog";
        QCOMPARE(crc32(fox.data(), fox.size()), 0x414FA339u);
        // Split anywhere, continued: the same as in one piece (the 8-byte path
        // and the byte tail agree).
        std::string bytes(1031, '\0');
        std::mt19937 gen(7);
        for (char& c : bytes) c = char(gen());
        const uint32_t whole = crc32(bytes.data(), bytes.size());
        for (size_t cut : {size_t(0), size_t(1), size_t(7), size_t(8), size_t(500), size_t(1030)})
            QCOMPARE(crc32(bytes.data() + cut, bytes.size() - cut, crc32(bytes.data(), cut)), whole);
        QCOMPARE(crc32_hex(0xCBF43926u), std::string("cbf43926"));
    }

    void writtenAndVerified()
    {
        const fs::path file = writeTwoTensors("good.safetensors");
        SafetensorsReader r(file);
        QVERIFY(r.has_checksums());
        QCOMPARE(r.metadata().size(), size_t(1));   // the checksums are not user metadata
        const std::string text = read_file(file);
        const uint64_t n = uint64_t(uint8_t(text[0])) | uint64_t(uint8_t(text[1])) << 8;
        const auto header = nlohmann::json::parse(text.substr(8, size_t(n)));
        QCOMPARE(header["__metadata__"]["crc32.b"].get<std::string>().size(), size_t(8));
    }

    void everyFlippedBitIsRefused()
    {
        const fs::path file = writeTwoTensors("flip.safetensors");
        const std::string good = read_file(file);
        const uint64_t data_start = 8 + (uint64_t(uint8_t(good[0])) | uint64_t(uint8_t(good[1])) << 8);
        std::mt19937 gen(3);
        for (int trial = 0; trial < 50; ++trial) {
            std::string bad = good;
            const size_t at = size_t(data_start + gen() % (good.size() - data_start));
            bad[at] = char(bad[at] ^ (1 << (gen() % 8)));
            write_file_atomic(path("bad.safetensors"), bad);
            const bool in_b = at >= good.size() - 37 * 4;
            try {
                SafetensorsReader r(path("bad.safetensors"));
                QFAIL("a flipped bit was not detected");
            } catch (const Error& e) {
                const std::string msg = e.what();
                QVERIFY2(msg.find("checksum") != std::string::npos, msg.c_str());
                QVERIFY2(msg.find(in_b ? "\"b\"" : "\"a\"") != std::string::npos, msg.c_str());
                QVERIFY2(msg.find("bad.safetensors") != std::string::npos, msg.c_str());
            }
        }
    }

    void filesWithoutChecksumsLoad()
    {
        // A file as other tools write it: no checksums in the metadata.
        const std::string header = R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
        std::string bytes;
        for (int i = 0; i < 8; ++i) bytes.push_back(char((header.size() >> (8 * i)) & 0xff));
        bytes += header;
        const float values[2] = {1.5f, -2.0f};
        bytes.append(reinterpret_cast<const char*>(values), sizeof values);
        write_file_atomic(path("plain.safetensors"), bytes);
        SafetensorsReader r(path("plain.safetensors"));
        QVERIFY(!r.has_checksums());
        float out[2];
        r.read_f32("x", {2}, out);
        QCOMPARE(out[1], -2.0f);
    }

    void headerOnlyReadsSkipTheCheck()
    {
        const fs::path file = writeTwoTensors("header.safetensors");
        std::string bad = read_file(file);
        bad.back() = char(bad.back() ^ 1);
        write_file_atomic(path("header_bad.safetensors"), bad);
        SafetensorsReader r(path("header_bad.safetensors"), SafetensorsReader::Contents::header_only);
        QCOMPARE(r.entries().size(), size_t(2));
    }
};

QTEST_APPLESS_MAIN(ChecksumTest)
#include "tst_checksums.moc"
