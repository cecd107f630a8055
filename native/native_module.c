/*
 * native_module: the _sqlml_native module, what the engine may ask of the server it
 * runs in (python/sqlml/host.py wraps it): warnings, privileges, the kill flag, the
 * binlog format, the status counters, the settings the plugins hold, the statement
 * memo, the rewrite filter's names, and giving freed memory back.
 */
#define _GNU_SOURCE
#include "native_module.h"
#include "counters.h"
#include "filter.h"
#include "memo.h"
#include "server_api.h"

#include <dlfcn.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <stdio.h>
#include <string.h>

/* ---- the _sqlml_native module: what Python may ask of the server ------------ */

/* _sqlml_native.warn(code, message): a warning on the calling statement; returns
 * whether the server took it. Must run on the server thread of that statement. */
static PyObject *native_warn(PyObject *self, PyObject *args)
{
  unsigned int code;
  const char *msg;
  (void)self;
  if (!PyArg_ParseTuple(args, "Is", &code, &msg))
    return NULL;
  return PyBool_FromLong(server_warning(code, msg));
}

static PyObject *native_server_flavor(PyObject *self, PyObject *unused)
{
  (void)self;
  (void)unused;
  return PyUnicode_FromString(server_is_mariadb() ? "mariadb" : "mysql");
}

static PyObject *native_server_version(PyObject *self, PyObject *unused)
{
  (void)self;
  (void)unused;
  return PyUnicode_DecodeUTF8(server_version_string(), (Py_ssize_t)strlen(server_version_string()), "replace");
}

static PyObject *native_abi_problem(PyObject *self, PyObject *unused)
{
  (void)self;
  (void)unused;
  const char *problem = server_abi_problem();
  if (!problem)
    Py_RETURN_NONE;
  return PyUnicode_FromString(problem);
}

static PyObject *native_library_version(PyObject *self, PyObject *unused)
{
  (void)self;
  (void)unused;
  return PyUnicode_FromString(SQLML_VERSION);
}

/* _sqlml_native.count(i, n): adds n to status counter i (atomic; no lock, no GIL needed). */
static PyObject *native_count(PyObject *self, PyObject *args)
{
  int i;
  long n = 1;
  (void)self;
  if (!PyArg_ParseTuple(args, "i|l", &i, &n))
    return NULL;
  counter_add(i, n);
  Py_RETURN_NONE;
}

static PyObject *native_memo_invalidate(PyObject *self, PyObject *unused)
{
  (void)self;
  (void)unused;
  memo_invalidate_all();
  Py_RETURN_NONE;
}

/* gperftools' tcmalloc, when it is the process's malloc (Debian's MySQL links it):
 * its "give free pages back" call, else NULL. */
typedef void (*release_fn)(void);

static release_fn tcmalloc_release(void)
{
  return (release_fn)dlsym(RTLD_DEFAULT, "MallocExtension_ReleaseFreeMemory");
}

bool native_tcmalloc(void) { return tcmalloc_release() != NULL; }

/* _sqlml_native.release_memory(): hands the C heap's free pages back to the system, the
 * GIL released meanwhile. A big batch statement frees hundreds of MB of small blocks in
 * the arenas of the threads that made them, and an allocator keeps most of them
 * resident by itself: without this the server's RSS stays high after
 * sqlml_cache_clear() and drifts up from cycle to cycle. glibc: malloc_trim(0), the
 * pages of free chunks in every arena (not a thread arena's free top: see
 * pyhost.c's fix_malloc_thresholds); tcmalloc: its page heap's free spans. Returns whether glibc
 * reported returning anything. */
static PyObject *native_release_memory(PyObject *self, PyObject *unused)
{
  (void)self;
  (void)unused;
  int released = 0;
  release_fn release = tcmalloc_release();
  Py_BEGIN_ALLOW_THREADS
  if (release)
    release();
#ifdef __GLIBC__
  released = malloc_trim(0);
#endif
  Py_END_ALLOW_THREADS
  return PyBool_FromLong(released);
}

static PyObject *native_count_max(PyObject *self, PyObject *args)
{
  int i;
  long v;
  (void)self;
  if (!PyArg_ParseTuple(args, "il", &i, &v))
    return NULL;
  counter_max(i, v);
  Py_RETURN_NONE;
}

/* _sqlml_native.counters() -> ((name, value), ...) in SHOW STATUS order. */
static PyObject *native_counters(PyObject *self, PyObject *unused)
{
  (void)self;
  (void)unused;
  PyObject *out = PyTuple_New(SQLML_COUNTER_COUNT);
  for (int i = 0; out && i < SQLML_COUNTER_COUNT; i++) {
    PyObject *item = Py_BuildValue("(sl)", counter_name(i), counter_value(i));
    if (!item) {
      Py_CLEAR(out);
      break;
    }
    PyTuple_SET_ITEM(out, i, item);
  }
  return out;
}

/* _sqlml_native.killed() -> bool: has the calling connection's statement been killed
 * (KILL QUERY, KILL)? Waits and loops over user-sized work inside one call poll it. */
static PyObject *native_killed(PyObject *self, PyObject *unused)
{
  (void)self;
  (void)unused;
  return PyBool_FromLong(server_killed(server_current_thd()));
}

/* _sqlml_native.is_native_function(name): 1, 0, or -1 (the server does not say). */
static PyObject *native_is_native_function(PyObject *self, PyObject *arg)
{
  (void)self;
  Py_ssize_t len = 0;
  const char *name = PyUnicode_AsUTF8AndSize(arg, &len);
  if (!name)
    return NULL;
  return PyLong_FromLong(server_is_native_function(name, (size_t)len));
}

/* _sqlml_native.has_grant(privilege) -> (1 | 0 | -1, why): does the calling statement's
 * security context hold it (roles as active)? -1: this server cannot tell. */
static PyObject *native_has_grant(PyObject *self, PyObject *args)
{
  const char *privilege;
  char why[400] = "";
  int rc;
  (void)self;
  if (!PyArg_ParseTuple(args, "s", &privilege))
    return NULL;
  Py_BEGIN_ALLOW_THREADS
  rc = server_has_grant(privilege, why, sizeof why);
  Py_END_ALLOW_THREADS
  return Py_BuildValue("(is)", rc, why);
}

static PyObject *native_binlog_format(PyObject *self, PyObject *unused)
{
  (void)self;
  (void)unused;
  return PyLong_FromLong(server_binlog_format());
}

static const struct native_settings_source *settings_source;

void native_set_settings_source(const struct native_settings_source *source)
{
  __atomic_store_n(&settings_source, source, __ATOMIC_RELEASE);
}

static PyObject *native_settings_generation(PyObject *self, PyObject *unused)
{
  (void)self;
  (void)unused;
  const struct native_settings_source *source = __atomic_load_n(&settings_source, __ATOMIC_ACQUIRE);
  return PyLong_FromUnsignedLong(source ? source->generation() : 0);
}

/* _sqlml_native.settings() -> (generation, ((name, value, is_set), ...)); generation 0
 * and no values while the plugins are not installed. */
static PyObject *native_settings(PyObject *self, PyObject *unused)
{
  enum { MAX_SETTINGS = 64 };
  (void)self;
  (void)unused;
  struct native_setting *values = PyMem_RawCalloc(MAX_SETTINGS, sizeof *values);
  if (!values)
    return PyErr_NoMemory();
  unsigned long generation = 0;
  const struct native_settings_source *source = __atomic_load_n(&settings_source, __ATOMIC_ACQUIRE);
  int n = source ? source->snapshot(values, MAX_SETTINGS, &generation) : 0;
  PyObject *items = PyTuple_New(n);
  for (int i = 0; items && i < n; i++) {
    const struct native_setting *v = &values[i];
    PyObject *item = v->kind == 0   ? Py_BuildValue("(syO)", v->name, v->str, v->is_set ? Py_True : Py_False)
                     : v->kind == 1 ? Py_BuildValue("(sOO)", v->name, v->num ? Py_True : Py_False,
                                                    v->is_set ? Py_True : Py_False)
                                    : Py_BuildValue("(sLO)", v->name, v->num, v->is_set ? Py_True : Py_False);
    if (!item) {
      Py_CLEAR(items);
      break;
    }
    PyTuple_SET_ITEM(items, i, item);
  }
  PyMem_RawFree(values);
  if (!items)
    return NULL;
  PyObject *out = Py_BuildValue("(kN)", generation, items);
  return out;
}

/* _sqlml_native.set_rewrite_names(((schema, name), ...)): the registered functions the
 * pre-parse filter looks for. */
static PyObject *native_set_rewrite_names(PyObject *self, PyObject *arg)
{
  (void)self;
  PyObject *seq = PySequence_Fast(arg, "names must be a sequence of (schema, name) pairs");
  if (!seq)
    return NULL;
  Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
  const char **schemas = PyMem_Calloc(n ? (size_t)n : 1, sizeof *schemas);
  const char **names = PyMem_Calloc(n ? (size_t)n : 1, sizeof *names);
  if (!schemas || !names) {
    PyMem_Free(schemas);
    PyMem_Free(names);
    Py_DECREF(seq);
    return PyErr_NoMemory();
  }
  for (Py_ssize_t i = 0; i < n; i++) {
    /* Borrowed UTF-8 buffers: the pairs stay alive in seq until filter_set_names copied them. */
    if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "ss", &schemas[i], &names[i])) {
      PyMem_Free(schemas);
      PyMem_Free(names);
      Py_DECREF(seq);
      return NULL;
    }
  }
  filter_set_names(schemas, names, (int)n);
  PyMem_Free(schemas);
  PyMem_Free(names);
  Py_DECREF(seq);
  Py_RETURN_NONE;
}

static PyObject *native_rewrite_functions_file(PyObject *self, PyObject *unused)
{
  char buf[1024];
  (void)self;
  (void)unused;
  const char *path = filter_functions_file(buf, sizeof buf);
  if (!path)
    Py_RETURN_NONE;
  return PyUnicode_DecodeFSDefault(path);
}

static PyMethodDef native_methods[] = {
    {"set_rewrite_names", native_set_rewrite_names, METH_O, "Names the pre-parse filter looks for."},
    {"rewrite_functions_file", native_rewrite_functions_file, METH_NOARGS, "Path of the functions file."},
    {"library_version", native_library_version, METH_NOARGS, "Version of sqlml.so."},
    {"count", native_count, METH_VARARGS, "Add n (default 1) to status counter i."},
    {"count_max", native_count_max, METH_VARARGS, "Raise status counter i to v."},
    {"memo_invalidate", native_memo_invalidate, METH_NOARGS, "Retire every statement memo (cache cleared)."},
    {"release_memory", native_release_memory, METH_NOARGS, "Give the C heap's free pages back to the system."},
    {"counters", native_counters, METH_NOARGS, "The status counters: ((name, value), ...)."},
    {"has_grant", native_has_grant, METH_VARARGS, "(1|0|-1, why): caller holds the privilege?"},
    {"killed", native_killed, METH_NOARGS, "Has the calling statement been killed?"},
    {"is_native_function", native_is_native_function, METH_O, "1|0|-1: is name a native function?"},
    {"binlog_format", native_binlog_format, METH_NOARGS, "The session's binlog format, -1 unknown."},
    {"settings_generation", native_settings_generation, METH_NOARGS, "Changes when a variable does."},
    {"settings", native_settings, METH_NOARGS, "(generation, ((name, value, is_set), ...))."},
    {"warn", native_warn, METH_VARARGS, "Push a warning onto the calling statement."},
    {"server_flavor", native_server_flavor, METH_NOARGS, "'mariadb' or 'mysql'."},
    {"server_version", native_server_version, METH_NOARGS, "The server's version string."},
    {"abi_problem", native_abi_problem, METH_NOARGS, "None, or the ABI mismatch sqlml found."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef native_module = {PyModuleDef_HEAD_INIT, "_sqlml_native",
                                           "Server services for the sqlml engine.", -1,
                                           native_methods, NULL, NULL, NULL, NULL};

PyObject *native_module_init(void) { return PyModule_Create(&native_module); }
