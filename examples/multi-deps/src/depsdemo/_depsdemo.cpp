// One extension, five static libraries: each is called for real at import and in tests.
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <brotli/decode.h>
#include <brotli/encode.h>
#include <bzlib.h>
#include <lz4.h>
#include <lzma.h>
#include <snappy.h>

#include <string>
#include <vector>

static std::string brotli_version() {
    uint32_t v = BrotliEncoderVersion();
    return std::to_string(v >> 24) + "." + std::to_string((v >> 12) & 0xFFF) + "." +
           std::to_string(v & 0xFFF);
}

static PyObject *versions(PyObject *, PyObject *) {
    return Py_BuildValue("{s:s,s:s,s:s,s:s,s:s}", "bzip2", BZ2_bzlibVersion(), "lz4",
                         LZ4_versionString(), "xz", lzma_version_string(), "brotli",
                         brotli_version().c_str(), "snappy", "linked");
}

// Compress and decompress with every library; returns the compressed sizes.
static PyObject *roundtrip(PyObject *, PyObject *args) {
    Py_buffer in;
    if (!PyArg_ParseTuple(args, "y*", &in)) return nullptr;
    std::string original(static_cast<const char *>(in.buf), static_cast<size_t>(in.len));
    PyBuffer_Release(&in);
    const size_t n = original.size();
    const uint8_t *bytes = reinterpret_cast<const uint8_t *>(original.data());
    bool ok = true;

    std::vector<char> lz(LZ4_compressBound(static_cast<int>(n)));
    int lzlen = LZ4_compress_default(original.data(), lz.data(), static_cast<int>(n),
                                     static_cast<int>(lz.size()));
    std::vector<char> lzback(n + 1);
    ok = ok && LZ4_decompress_safe(lz.data(), lzback.data(), lzlen, static_cast<int>(n)) ==
                   static_cast<int>(n);

    unsigned int bzlen = static_cast<unsigned int>(n + n / 100 + 600);
    std::vector<char> bz(bzlen);
    BZ2_bzBuffToBuffCompress(bz.data(), &bzlen, &original[0], static_cast<unsigned int>(n), 9, 0,
                             0);
    unsigned int bzback_len = static_cast<unsigned int>(n);
    std::vector<char> bzback(n + 1);
    ok = ok && BZ2_bzBuffToBuffDecompress(bzback.data(), &bzback_len, bz.data(), bzlen, 0, 0) ==
                   BZ_OK;

    std::vector<uint8_t> xz(lzma_stream_buffer_bound(n));
    size_t xzlen = 0;
    ok = ok && lzma_easy_buffer_encode(6, LZMA_CHECK_CRC64, nullptr, bytes, n, xz.data(), &xzlen,
                                       xz.size()) == LZMA_OK;
    std::vector<uint8_t> xzback(n + 1);
    uint64_t memlimit = UINT64_MAX;
    size_t in_pos = 0, out_pos = 0;
    ok = ok && lzma_stream_buffer_decode(&memlimit, 0, nullptr, xz.data(), &in_pos, xzlen,
                                         xzback.data(), &out_pos, n) == LZMA_OK &&
         out_pos == n;

    size_t brlen = BrotliEncoderMaxCompressedSize(n);
    std::vector<uint8_t> br(brlen);
    ok = ok && BrotliEncoderCompress(BROTLI_DEFAULT_QUALITY, BROTLI_DEFAULT_WINDOW,
                                     BROTLI_DEFAULT_MODE, n, bytes, &brlen, br.data());
    size_t brback_len = n;
    std::vector<uint8_t> brback(n + 1);
    ok = ok && BrotliDecoderDecompress(brlen, br.data(), &brback_len, brback.data()) ==
                   BROTLI_DECODER_RESULT_SUCCESS;

    std::string sn, snback;
    snappy::Compress(original.data(), n, &sn);
    ok = ok && snappy::Uncompress(sn.data(), sn.size(), &snback) && snback == original;

    if (!ok) {
        PyErr_SetString(PyExc_RuntimeError, "a library failed its round trip");
        return nullptr;
    }
    return Py_BuildValue("{s:n,s:n,s:n,s:n,s:n}", "lz4", (Py_ssize_t)lzlen, "bzip2",
                         (Py_ssize_t)bzlen, "xz", (Py_ssize_t)xzlen, "brotli", (Py_ssize_t)brlen,
                         "snappy", (Py_ssize_t)sn.size());
}

static PyMethodDef methods[] = {
    {"versions", versions, METH_NOARGS, "The linked libraries' versions."},
    {"roundtrip", roundtrip, METH_VARARGS, "roundtrip(data) -> compressed sizes per library"},
    {nullptr, nullptr, 0, nullptr},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_depsdemo", nullptr, -1, methods};

PyMODINIT_FUNC PyInit__depsdemo(void) { return PyModule_Create(&module); }
