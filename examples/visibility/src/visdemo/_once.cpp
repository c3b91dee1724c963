// A tiny extension that uses std::call_once and std::string, the combination whose exported
// weak instantiations crashed pyarrow + tensorflow (ARROW-5130).
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <mutex>
#include <string>

namespace {

std::once_flag greeting_once;
std::string greeting;

void build_greeting() { greeting = std::string("initialised once by std::call_once"); }

PyObject* greet(PyObject*, PyObject*) {
    std::call_once(greeting_once, build_greeting);
    return PyUnicode_FromStringAndSize(greeting.data(), static_cast<Py_ssize_t>(greeting.size()));
}

PyMethodDef methods[] = {
    {"greet", greet, METH_NOARGS, "Return a string built once with std::call_once."},
    {nullptr, nullptr, 0, nullptr},
};

PyModuleDef module = {PyModuleDef_HEAD_INIT, "_once", nullptr, -1, methods,
                      nullptr, nullptr, nullptr, nullptr};

}  // namespace

PyMODINIT_FUNC PyInit__once(void) { return PyModule_Create(&module); }
