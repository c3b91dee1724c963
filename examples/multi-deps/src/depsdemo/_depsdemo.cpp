// One extension, five static libraries: each is called for real at import and in tests.
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <bzlib.h>
#include <lz4.h>
#include <snappy.h>
#include <zlib.h>
#include <zstd.h>

#include <string>
#include <vector>

static PyObject *versions(PyObject *, PyObject *) {
    return Py_BuildValue("{s:s,s:s,s:s,s:s,s:s}", "zlib", zlibVersion(), "zstd",
                         ZSTD_versionString(), "bzip2", BZ2_bzlibVersion(), "lz4",
                         LZ4_versionString(), "snappy", "linked");
}

// Compress and decompress with every library; returns the compressed sizes.
static PyObject *roundtrip(PyObject *, PyObject *args) {
    Py_buffer in;
    if (!PyArg_ParseTuple(args, "y*", &in)) return nullptr;
    const char *src = static_cast<const char *>(in.buf);
    const size_t n = static_cast<size_t>(in.len);
    std::string original(src, n);
    PyBuffer_Release(&in);

    uLongf zlen = compressBound(n);
    std::vector<Bytef> z(zlen);
    compress2(z.data(), &zlen, reinterpret_cast<const Bytef *>(original.data()), n, 6);
    std::vector<Bytef> zback(n ? n : 1);
    uLongf zbacklen = n;
    bool ok = uncompress(zback.data(), &zbacklen, z.data(), zlen) == Z_OK && zbacklen == n;

    std::vector<char> zs(ZSTD_compressBound(n));
    size_t zslen = ZSTD_compress(zs.data(), zs.size(), original.data(), n, 3);
    std::vector<char> zsback(n ? n : 1);
    ok = ok && ZSTD_decompress(zsback.data(), n, zs.data(), zslen) == n;

    std::vector<char> lz(LZ4_compressBound(static_cast<int>(n)));
    int lzlen = LZ4_compress_default(original.data(), lz.data(), static_cast<int>(n),
                                     static_cast<int>(lz.size()));
    std::vector<char> lzback(n ? n : 1);
    ok = ok && LZ4_decompress_safe(lz.data(), lzback.data(), lzlen, static_cast<int>(n)) ==
                   static_cast<int>(n);

    unsigned int bzlen = static_cast<unsigned int>(n + n / 100 + 600);
    std::vector<char> bz(bzlen);
    BZ2_bzBuffToBuffCompress(bz.data(), &bzlen, const_cast<char *>(original.data()),
                             static_cast<unsigned int>(n), 9, 0, 0);
    unsigned int bzback_len = static_cast<unsigned int>(n);
    std::vector<char> bzback(n ? n : 1);
    ok = ok && BZ2_bzBuffToBuffDecompress(bzback.data(), &bzback_len, bz.data(), bzlen, 0, 0) ==
                   BZ_OK;

    std::string sn, snback;
    snappy::Compress(original.data(), n, &sn);
    ok = ok && snappy::Uncompress(sn.data(), sn.size(), &snback) && snback == original;

    if (!ok) {
        PyErr_SetString(PyExc_RuntimeError, "a library failed its round trip");
        return nullptr;
    }
    return Py_BuildValue("{s:n,s:n,s:n,s:n,s:n}", "zlib", (Py_ssize_t)zlen, "zstd",
                         (Py_ssize_t)zslen, "lz4", (Py_ssize_t)lzlen, "bzip2",
                         (Py_ssize_t)bzlen, "snappy", (Py_ssize_t)sn.size());
}

static PyMethodDef methods[] = {
    {"versions", versions, METH_NOARGS, "The linked libraries' versions."},
    {"roundtrip", roundtrip, METH_VARARGS, "roundtrip(data) -> compressed sizes per library"},
    {nullptr, nullptr, 0, nullptr},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_depsdemo", nullptr, -1, methods};

PyMODINIT_FUNC PyInit__depsdemo(void) { return PyModule_Create(&module); }
