/* A tiny extension around libbz2: enough to prove the library is really linked. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <bzlib.h>
#include <stdlib.h>

static PyObject *library_version(PyObject *self, PyObject *args) {
    return PyUnicode_FromString(BZ2_bzlibVersion());
}

static PyObject *compress(PyObject *self, PyObject *args) {
    Py_buffer in;
    if (!PyArg_ParseTuple(args, "y*", &in)) return NULL;
    /* bzip2's documented worst case: 1% larger plus 600 bytes. */
    unsigned int cap = (unsigned int)(in.len + in.len / 100 + 600);
    char *out = malloc(cap);
    if (!out) { PyBuffer_Release(&in); return PyErr_NoMemory(); }
    int rc = BZ2_bzBuffToBuffCompress(out, &cap, in.buf, (unsigned int)in.len, 9, 0, 0);
    PyBuffer_Release(&in);
    if (rc != BZ_OK) { free(out); return PyErr_Format(PyExc_RuntimeError, "bzip2 error %d", rc); }
    PyObject *result = PyBytes_FromStringAndSize(out, cap);
    free(out);
    return result;
}

static PyObject *decompress(PyObject *self, PyObject *args) {
    Py_buffer in;
    unsigned int size;
    if (!PyArg_ParseTuple(args, "y*I", &in, &size)) return NULL;
    char *out = malloc(size ? size : 1);
    if (!out) { PyBuffer_Release(&in); return PyErr_NoMemory(); }
    int rc = BZ2_bzBuffToBuffDecompress(out, &size, in.buf, (unsigned int)in.len, 0, 0);
    PyBuffer_Release(&in);
    if (rc != BZ_OK) { free(out); return PyErr_Format(PyExc_RuntimeError, "bzip2 error %d", rc); }
    PyObject *result = PyBytes_FromStringAndSize(out, size);
    free(out);
    return result;
}

static PyMethodDef methods[] = {
    {"library_version", library_version, METH_NOARGS, "libbz2's version string."},
    {"compress", compress, METH_VARARGS, "compress(data) -> bytes"},
    {"decompress", decompress, METH_VARARGS, "decompress(data, size) -> bytes"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_bzdemo", NULL, -1, methods};

PyMODINIT_FUNC PyInit__bzdemo(void) { return PyModule_Create(&module); }
