// One real use of every static library the prefix holds: a compression round trip per
// codec, an RE2 match, a protobuf message serialised and parsed, a Thrift TMemoryBuffer
// round trip, utf8proc normalisation, Abseil containers and strings, gflags and c-ares.
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <brotli/decode.h>
#include <brotli/encode.h>
#include <bzlib.h>
#include <gflags/gflags.h>
#include <lz4.h>
#include <lzma.h>
#include <snappy.h>
#include <utf8proc.h>
#include <zlib.h>
#include <zstd.h>

#include <ares.h>
#include <re2/re2.h>
#include <thrift/protocol/TBinaryProtocol.h>
#include <thrift/transport/TBufferTransports.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "record.pb.h"

DEFINE_int32(arrowshaped_level, 1, "a flag set and read back by selftest()");

namespace {

using Bytes = std::string;

Bytes zlib_rt(const Bytes& in) {
  uLongf clen = compressBound(in.size());
  Bytes c(clen, '\0');
  if (compress2(reinterpret_cast<Bytef*>(&c[0]), &clen,
                reinterpret_cast<const Bytef*>(in.data()), in.size(), 6) != Z_OK)
    return "";
  uLongf dlen = in.size();
  Bytes d(dlen, '\0');
  if (uncompress(reinterpret_cast<Bytef*>(&d[0]), &dlen,
                 reinterpret_cast<const Bytef*>(c.data()), clen) != Z_OK)
    return "";
  d.resize(dlen);
  return d;
}

Bytes bz2_rt(const Bytes& in) {
  unsigned int clen = in.size() + in.size() / 100 + 600;
  Bytes c(clen, '\0');
  if (BZ2_bzBuffToBuffCompress(&c[0], &clen, const_cast<char*>(in.data()), in.size(), 9, 0,
                               0) != BZ_OK)
    return "";
  unsigned int dlen = in.size();
  Bytes d(dlen, '\0');
  if (BZ2_bzBuffToBuffDecompress(&d[0], &dlen, &c[0], clen, 0, 0) != BZ_OK) return "";
  d.resize(dlen);
  return d;
}

Bytes xz_rt(const Bytes& in) {
  Bytes c(lzma_stream_buffer_bound(in.size()), '\0');
  size_t cpos = 0;
  if (lzma_easy_buffer_encode(6, LZMA_CHECK_CRC64, nullptr,
                              reinterpret_cast<const uint8_t*>(in.data()), in.size(),
                              reinterpret_cast<uint8_t*>(&c[0]), &cpos, c.size()) != LZMA_OK)
    return "";
  Bytes d(in.size(), '\0');
  uint64_t memlimit = UINT64_MAX;
  size_t ipos = 0, dpos = 0;
  if (lzma_stream_buffer_decode(&memlimit, 0, nullptr, reinterpret_cast<uint8_t*>(&c[0]),
                                &ipos, cpos, reinterpret_cast<uint8_t*>(&d[0]), &dpos,
                                d.size()) != LZMA_OK)
    return "";
  d.resize(dpos);
  return d;
}

Bytes zstd_rt(const Bytes& in) {
  Bytes c(ZSTD_compressBound(in.size()), '\0');
  size_t clen = ZSTD_compress(&c[0], c.size(), in.data(), in.size(), 3);
  if (ZSTD_isError(clen)) return "";
  Bytes d(in.size(), '\0');
  size_t dlen = ZSTD_decompress(&d[0], d.size(), c.data(), clen);
  if (ZSTD_isError(dlen)) return "";
  d.resize(dlen);
  return d;
}

Bytes lz4_rt(const Bytes& in) {
  Bytes c(LZ4_compressBound(in.size()), '\0');
  int clen = LZ4_compress_default(in.data(), &c[0], in.size(), c.size());
  if (clen <= 0) return "";
  Bytes d(in.size(), '\0');
  int dlen = LZ4_decompress_safe(c.data(), &d[0], clen, d.size());
  if (dlen < 0) return "";
  d.resize(dlen);
  return d;
}

Bytes snappy_rt(const Bytes& in) {
  Bytes c, d;
  snappy::Compress(in.data(), in.size(), &c);
  if (!snappy::Uncompress(c.data(), c.size(), &d)) return "";
  return d;
}

Bytes brotli_rt(const Bytes& in) {
  size_t clen = BrotliEncoderMaxCompressedSize(in.size());
  Bytes c(clen, '\0');
  if (!BrotliEncoderCompress(5, BROTLI_DEFAULT_WINDOW, BROTLI_MODE_GENERIC, in.size(),
                             reinterpret_cast<const uint8_t*>(in.data()), &clen,
                             reinterpret_cast<uint8_t*>(&c[0])))
    return "";
  size_t dlen = in.size();
  Bytes d(dlen, '\0');
  if (BrotliDecoderDecompress(clen, reinterpret_cast<const uint8_t*>(c.data()), &dlen,
                              reinterpret_cast<uint8_t*>(&d[0])) != BROTLI_DECODER_RESULT_SUCCESS)
    return "";
  d.resize(dlen);
  return d;
}

// Thrift: write a string and an i64 through TBinaryProtocol into a memory buffer, read
// them back.
bool thrift_rt(const Bytes& in) {
  using apache::thrift::protocol::TBinaryProtocol;
  using apache::thrift::transport::TMemoryBuffer;
  auto buffer = std::make_shared<TMemoryBuffer>();
  TBinaryProtocol proto(buffer);
  proto.writeString(in);
  proto.writeI64(static_cast<int64_t>(in.size()));
  std::string out;
  int64_t n = 0;
  proto.readString(out);
  proto.readI64(n);
  return out == in && n == static_cast<int64_t>(in.size());
}

bool protobuf_rt() {
  arrowshaped::Record rec;
  rec.set_name("orch");
  rec.set_id(15);
  rec.add_values(1.5);
  rec.add_values(-2.25);
  std::string wire;
  if (!rec.SerializeToString(&wire)) return false;
  arrowshaped::Record back;
  return back.ParseFromString(wire) && back.name() == "orch" && back.id() == 15 &&
         back.values_size() == 2 && back.values(1) == -2.25;
}

std::string re2_match() {
  std::string key;
  int year = 0;
  if (!RE2::FullMatch("ARROW-5130:2019", R"((\w+-\d+):(\d{4}))", &key, &year)) return "";
  return absl::StrCat(key, "@", year);
}

std::string absl_use() {
  absl::flat_hash_map<std::string, int> counts;
  for (absl::string_view w : absl::StrSplit("a,b,a,c,a", ',')) ++counts[std::string(w)];
  return absl::StrCat("a=", counts["a"], ",b=", counts["b"], ",c=", counts["c"]);
}

// "e" + U+0301 (combining acute) composes to U+00E9 under NFC.
std::string utf8proc_nfc() {
  const char decomposed[] = "e\xcc\x81";
  utf8proc_uint8_t* out = utf8proc_NFC(reinterpret_cast<const utf8proc_uint8_t*>(decomposed));
  if (out == nullptr) return "";
  std::string s(reinterpret_cast<char*>(out));
  std::free(out);
  return s;
}

bool gflags_use() {
  gflags::SetCommandLineOption("arrowshaped_level", "7");
  return FLAGS_arrowshaped_level == 7;
}

std::string cares_use() {
  if (ares_library_init(ARES_LIB_INIT_ALL) != ARES_SUCCESS) return "";
  unsigned char addr[16];
  char text[64] = {0};
  std::string out;
  if (ares_inet_pton(AF_INET6, "2001:db8::15", addr) == 1 &&
      ares_inet_ntop(AF_INET6, addr, text, sizeof text) != nullptr)
    out = text;
  ares_library_cleanup();
  return out;
}

PyObject* roundtrips(PyObject*, PyObject* arg) {
  char* buf;
  Py_ssize_t len;
  if (PyBytes_AsStringAndSize(arg, &buf, &len) < 0) return nullptr;
  const Bytes in(buf, len);
  struct Codec {
    const char* name;
    Bytes (*rt)(const Bytes&);
  };
  const Codec codecs[] = {{"zlib", zlib_rt},     {"bzip2", bz2_rt},   {"xz", xz_rt},
                          {"zstd", zstd_rt},     {"lz4", lz4_rt},     {"snappy", snappy_rt},
                          {"brotli", brotli_rt}};
  PyObject* result = PyDict_New();
  if (result == nullptr) return nullptr;
  for (const Codec& c : codecs) {
    PyDict_SetItemString(result, c.name, c.rt(in) == in ? Py_True : Py_False);
  }
  PyDict_SetItemString(result, "thrift", thrift_rt(in) ? Py_True : Py_False);
  return result;
}

PyObject* selftest(PyObject*, PyObject*) {
  return Py_BuildValue("{s:O,s:s,s:s,s:s,s:O,s:s}", "protobuf",
                       protobuf_rt() ? Py_True : Py_False, "re2", re2_match().c_str(), "absl",
                       absl_use().c_str(), "utf8proc", utf8proc_nfc().c_str(), "gflags",
                       gflags_use() ? Py_True : Py_False, "c-ares", cares_use().c_str());
}

PyObject* versions(PyObject*, PyObject*) {
  return Py_BuildValue("{s:s,s:s,s:s,s:i,s:s,s:s,s:i,s:s}", "zlib", zlibVersion(), "bzip2",
                       BZ2_bzlibVersion(), "xz", lzma_version_string(), "lz4",
                       LZ4_versionNumber(), "zstd", ZSTD_versionString(), "utf8proc",
                       utf8proc_version(), "protobuf", GOOGLE_PROTOBUF_VERSION, "c-ares",
                       ares_version(nullptr));
}

PyMethodDef methods[] = {
    {"roundtrips", roundtrips, METH_O, "Round-trip bytes through every codec and Thrift."},
    {"selftest", selftest, METH_NOARGS, "protobuf, RE2, Abseil, utf8proc, gflags, c-ares."},
    {"versions", versions, METH_NOARGS, "The linked libraries' versions."},
    {nullptr, nullptr, 0, nullptr}};

PyModuleDef module = {PyModuleDef_HEAD_INIT, "_core", nullptr, -1, methods};

}  // namespace

PyMODINIT_FUNC PyInit__core(void) { return PyModule_Create(&module); }
