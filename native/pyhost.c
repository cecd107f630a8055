/*
 * pyhost: boots CPython inside mysqld/mariadbd and moves server threads in and out
 * of it. The rules below were each learnt from a crash or a hang (PLATFORM.md §2):
 *  - libpython is promoted to RTLD_GLOBAL: the server dlopens us RTLD_LOCAL, and C
 *    extension modules (_socket, _ssl, _json) need libpython's symbols globally;
 *  - Python is initialised once, with an isolated PyConfig whose executable is the
 *    venv's python (so pyvenv.cfg selects the venv), without signal handlers, and
 *    with its status checked (Py_InitializeEx would exit() the server on failure);
 *  - the booting thread releases the GIL at once, or every other connection hangs;
 *  - a server thread keeps one thread state for its whole life (read back through
 *    PyGILState_GetThisThreadState, never cached), destroyed by a thread-exit
 *    destructor. Creating one per row costs far more than keeping it.
 */
#define _GNU_SOURCE
#include "pyhost.h"
#include "native_module.h"
#include "server_api.h"

#include <dlfcn.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SQLML_ER_UNKNOWN_ERROR 1105

static pthread_mutex_t boot_lock = PTHREAD_MUTEX_INITIALIZER;
static int booted;            /* 1 once bridge is imported; read without the lock after */
static int python_broken;     /* Python failed to initialise: never try again */
static char python_broken_why[400];
static pthread_key_t thread_state_key;
/* sqlml.bridge, the one Python module C calls, and its prepare: owned, never released
 * (they live as long as the process). */
static PyObject *bridge;
static PyObject *bridge_prepare;

/* ---- boot ---------------------------------------------------------------- */

static void thread_exit(void *ts)
{
  /* Runs on a server thread as it exits, with the library still mapped (-z nodelete). */
  if (ts == NULL || !Py_IsInitialized() || _Py_IsFinalizing())
    return;
  if (PyGILState_GetThisThreadState() != (PyThreadState *)ts)
    return; /* not ours any more: leave it alone rather than free a stranger */
  PyEval_RestoreThread((PyThreadState *)ts);
  /* The counter is 1 (from our only PyGILState_Ensure): this clears and deletes the
   * thread state and releases the GIL. */
  PyGILState_Release(PyGILState_UNLOCKED);
}

/* Writes the path of this library into out; returns 0 on success. */
static int library_path(char *out, size_t len)
{
  Dl_info info;
  if (!dladdr((void *)&pyhost_boot, &info) || !info.dli_fname)
    return -1;
  snprintf(out, len, "%s", info.dli_fname);
  return 0;
}

/* Reads "python = <path>" from sqlml.cnf beside the library (written by
 * `sqlml install`); $SQLML_PYTHON wins. Returns 0 and fills out, or -1. */
static int find_python(const char *libpath, char *out, size_t len, char *err, size_t errlen)
{
  const char *env = getenv("SQLML_PYTHON");
  if (env && *env) {
    snprintf(out, len, "%s", env);
    return 0;
  }
  char cnf[4096];
  const char *slash = strrchr(libpath, '/');
  int dirlen = slash ? (int)(slash - libpath) : 1;
  snprintf(cnf, sizeof cnf, "%.*s/sqlml.cnf", dirlen, slash ? libpath : ".");
  FILE *f = fopen(cnf, "r");
  if (!f) {
    snprintf(err, errlen,
             "sqlml: cannot read %s: run `sqlml install` to say which Python environment "
             "the server should use",
             cnf);
    return -1;
  }
  char line[4096];
  int found = -1;
  while (found < 0 && fgets(line, sizeof line, f)) {
    char *p = line;
    while (*p == ' ' || *p == '\t')
      p++;
    if (strncmp(p, "python", 6) != 0)
      continue;
    p += 6;
    while (*p == ' ' || *p == '\t')
      p++;
    if (*p != '=')
      continue;
    p++;
    while (*p == ' ' || *p == '\t')
      p++;
    p[strcspn(p, "\r\n")] = '\0';
    for (char *end = p + strlen(p); end > p && (end[-1] == ' ' || end[-1] == '\t');)
      *--end = '\0';
    if (*p) {
      snprintf(out, len, "%s", p);
      found = 0;
    }
  }
  fclose(f);
  if (found < 0)
    snprintf(err, errlen, "sqlml: %s has no 'python = <venv>/bin/python' line: rerun `sqlml install`",
             cnf);
  return found;
}

/* Promotes libpython to RTLD_GLOBAL (see the file comment). */
static void promote_libpython(void)
{
  Dl_info info;
  if (dladdr((void *)&Py_InitializeFromConfig, &info) && info.dli_fname)
    dlopen(info.dli_fname, RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD);
}

/* glibc's thresholds, fixed once (docs/performance.md, memory across cycles). By default they move: each free of
 * a large mapped block raises the mmap threshold to its size (up to 32 MB) and the trim
 * threshold to twice that, and a thread arena's free top is given back only above the
 * trim threshold; malloc_trim() does not shrink those tops either. After a batch
 * statement over a million rows (blocks of 8-60 MB freed by the memo and the cache),
 * every thread arena could then keep up to 64 MB of free top resident, and which
 * arenas do moves from statement to statement: the server's RSS after
 * sqlml_cache_clear() drifted up by tens of MB per cycle and its peak with it.
 * Fixed values keep blocks of 4 MB and more out of the arenas (mapped, unmapped when
 * freed) and free tops above 4 MB trimmed, in every arena. Left alone when whoever
 * started the server chose them (MALLOC_*_THRESHOLD_ or GLIBC_TUNABLES), and when
 * glibc's malloc is not the process's (tcmalloc in Debian's MySQL). */
#define SQLML_MMAP_THRESHOLD (4 * 1024 * 1024)
#define SQLML_TRIM_THRESHOLD (4 * 1024 * 1024)

static void fix_malloc_thresholds(void)
{
#ifdef __GLIBC__
  const char *tunables = getenv("GLIBC_TUNABLES");
  if (getenv("MALLOC_MMAP_THRESHOLD_") || getenv("MALLOC_TRIM_THRESHOLD_") ||
      (tunables && (strstr(tunables, "malloc.mmap_threshold") || strstr(tunables, "malloc.trim_threshold"))) ||
      native_tcmalloc())
    return;
  mallopt(M_MMAP_THRESHOLD, SQLML_MMAP_THRESHOLD);
  mallopt(M_TRIM_THRESHOLD, SQLML_TRIM_THRESHOLD);
#endif
}

static int start_python(const char *python, char *err, size_t errlen)
{
  PyStatus status;
  PyConfig config;

  if (PyImport_AppendInittab("_sqlml_native", native_module_init) != 0) {
    snprintf(err, errlen, "sqlml: cannot register the _sqlml_native module");
    return -1;
  }
  fix_malloc_thresholds(); /* before Python's own allocations */
  PyConfig_InitIsolatedConfig(&config);
  config.install_signal_handlers = 0; /* signals belong to the server */
  config.parse_argv = 0;
  config.site_import = 1;             /* site adds the venv's site-packages */
  status = PyConfig_SetBytesString(&config, &config.executable, python);
  if (!PyStatus_Exception(status))
    status = PyConfig_SetBytesString(&config, &config.program_name, python);
  if (!PyStatus_Exception(status))
    status = Py_InitializeFromConfig(&config);
  PyConfig_Clear(&config);
  if (PyStatus_Exception(status)) {
    snprintf(err, errlen, "sqlml: Python (%s) failed to start: %s%s%s", python,
             status.func ? status.func : "", status.func ? ": " : "",
             status.err_msg ? status.err_msg : "unknown error");
    return -1;
  }
  return 0;
}

/* Imports sqlml.bridge and calls bridge.boot(library_path). Needs the GIL. */
static int import_bridge(const char *libpath, char *err, size_t errlen)
{
  PyObject *module = PyImport_ImportModule("sqlml.bridge");
  if (module) {
    PyObject *r = PyObject_CallMethod(module, "boot", "s", libpath);
    if (r) {
      Py_DECREF(r);
      bridge_prepare = PyObject_GetAttrString(module, "prepare");
    }
    if (bridge_prepare)
      bridge = module;
    else
      Py_DECREF(module);
  }
  if (!bridge_prepare) {
    char why[400];
    pyhost_take_error(why, sizeof why);
    snprintf(err, errlen, "sqlml: cannot load the Python engine: %s", why);
    return -1;
  }
  return 0;
}

int pyhost_boot(char *err, size_t errlen)
{
  if (__atomic_load_n(&booted, __ATOMIC_ACQUIRE))
    return 0;
  pthread_mutex_lock(&boot_lock);
  int rc = 0;
  if (booted)
    goto out;
  if (python_broken) {
    snprintf(err, errlen, "%s", python_broken_why);
    rc = -1;
    goto out;
  }
  server_api_init();

  char libpath[4096], python[4096];
  if (library_path(libpath, sizeof libpath) != 0) {
    snprintf(err, errlen, "sqlml: cannot find the path of sqlml.so");
    rc = -1;
    goto out;
  }
  promote_libpython();
  if (!Py_IsInitialized()) {
    if (find_python(libpath, python, sizeof python, err, errlen) != 0) {
      rc = -1; /* fixable by `sqlml install`: try again next time */
      goto out;
    }
    if (pthread_key_create(&thread_state_key, thread_exit) != 0) {
      snprintf(err, errlen, "sqlml: no thread-specific key left in this process");
      rc = -1;
      goto out;
    }
    if (start_python(python, err, errlen) != 0) {
      snprintf(python_broken_why, sizeof python_broken_why, "%s", err);
      python_broken = 1;
      rc = -1;
      goto out;
    }
    /* This thread now holds the GIL with the interpreter's main thread state, which
     * stays alive for the process's life (it is not registered for thread_exit). */
  } else {
    /* Someone else (another plugin) started Python: join it like any thread. */
    if (pthread_key_create(&thread_state_key, thread_exit) != 0) {
      snprintf(err, errlen, "sqlml: no thread-specific key left in this process");
      rc = -1;
      goto out;
    }
    pyhost_enter();
  }
  rc = import_bridge(libpath, err, errlen);
  PyEval_SaveThread();
  if (rc == 0)
    __atomic_store_n(&booted, 1, __ATOMIC_RELEASE);
out:
  pthread_mutex_unlock(&boot_lock);
  return rc;
}

void pyhost_enter(void)
{
  PyThreadState *ts = PyGILState_GetThisThreadState();
  if (ts) {
    PyEval_RestoreThread(ts);
    return;
  }
  /* First call on this thread: PyGILState_Ensure creates a thread state (counter 1)
   * that we never release until the thread exits. */
  PyGILState_Ensure();
  pthread_setspecific(thread_state_key, PyGILState_GetThisThreadState());
}

void pyhost_leave(void) { PyEval_SaveThread(); }

PyObject *pyhost_prepare_fn(void) { return bridge_prepare; }

/* Copies at most buflen-1 bytes of the UTF-8 string s into buf without splitting a
 * character, always NUL-terminating. */
static void copy_utf8(char *buf, size_t buflen, const char *s)
{
  size_t n = strlen(s);
  if (n >= buflen) {
    n = buflen - 1;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
      n--; /* s[n] is a continuation byte: back up to the character's first byte */
  }
  memcpy(buf, s, n);
  buf[n] = '\0';
}

unsigned pyhost_take_error(char *buf, size_t buflen)
{
  PyObject *type, *value, *tb;
  unsigned code = SQLML_ER_UNKNOWN_ERROR;

  PyErr_Fetch(&type, &value, &tb);
  if (!type) {
    copy_utf8(buf, buflen, "sqlml: unknown error (no exception was set)");
    return code;
  }
  PyErr_NormalizeException(&type, &value, &tb);
  PyObject *msg = value ? PyObject_GetAttrString(value, "sql_message") : NULL;
  if (msg && PyUnicode_Check(msg)) {
    PyObject *errno_obj = PyObject_GetAttrString(value, "sql_errno");
    if (errno_obj && PyLong_Check(errno_obj))
      code = (unsigned)PyLong_AsUnsignedLong(errno_obj);
    Py_XDECREF(errno_obj);
    const char *utf8 = PyUnicode_AsUTF8(msg);
    copy_utf8(buf, buflen, utf8 ? utf8 : "sqlml: error message is not valid text");
  } else {
    /* Not one of ours: a bug. Say so in SQL, and put the traceback in the error log. */
    PyErr_Clear();
    PyObject *text = value ? PyObject_Str(value) : NULL;
    const char *what = text ? PyUnicode_AsUTF8(text) : NULL;
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "sqlml: internal error: %s: %s",
             ((PyTypeObject *)type)->tp_name, what ? what : "?");
    copy_utf8(buf, buflen, tmp);
    Py_XDECREF(text);
    PyErr_Clear();
    PyErr_Display(type, value, tb);
  }
  Py_XDECREF(msg);
  Py_XDECREF(type);
  Py_XDECREF(value);
  Py_XDECREF(tb);
  PyErr_Clear();
  return code;
}

int pyhost_check_setting(const char *name, const char *str, long long num, int is_num, char *err,
                         size_t errlen)
{
  if (pyhost_boot(err, errlen) != 0)
    return -1;
  int rc = -1;
  pyhost_enter();
  PyObject *r;
  if (is_num)
    r = PyObject_CallMethod(bridge, "check_system_variable", "sL", name, num);
  else if (str) /* bytes: the engine says what is wrong with text that is not UTF-8 */
    r = PyObject_CallMethod(bridge, "check_system_variable", "sy#", name, str, (Py_ssize_t)num);
  else
    r = PyObject_CallMethod(bridge, "check_system_variable", "sO", name, Py_None);
  if (r) {
    rc = 0;
    Py_DECREF(r);
  } else {
    pyhost_take_error(err, errlen);
  }
  pyhost_leave();
  return rc;
}

int pyhost_rewrite(const char *query, size_t len, int prepared, const char *db, unsigned long long connection,
                   void *(*alloc)(unsigned int, size_t, int), struct pyhost_rewritten *out)
{
  char err[SQLML_ERRMSG_SIZE];
  out->text = NULL;
  out->len = 0;
  out->awaits_end = false;
  if (pyhost_boot(err, sizeof err) != 0)
    return -1;
  int rc = -1;
  pyhost_enter();
  PyObject *text = PyUnicode_DecodeUTF8(query, (Py_ssize_t)len, "surrogateescape");
  /* sqlml.rewrite.Outcome(text: str | None, awaits_end: bool) */
  PyObject *r = text ? PyObject_CallMethod(bridge, "rewrite", "OizK", text, prepared, db, connection) : NULL;
  PyObject *new_text = NULL;
  int awaits_end = 0;
  if (r && PyArg_ParseTuple(r, "Op", &new_text, &awaits_end)) {
    out->awaits_end = awaits_end != 0;
    rc = 0;
    if (PyUnicode_Check(new_text)) {
      rc = -1;
      PyObject *bytes = PyUnicode_AsEncodedString(new_text, "utf-8", "surrogateescape");
      if (bytes) {
        size_t n = (size_t)PyBytes_GET_SIZE(bytes);
        char *copy = alloc(0, n + 1, 0);
        if (copy) {
          memcpy(copy, PyBytes_AS_STRING(bytes), n);
          copy[n] = '\0';
          out->text = copy;
          out->len = n;
          rc = 0;
        }
        Py_DECREF(bytes);
      }
    }
  }
  if (PyErr_Occurred()) {
    /* A bug in the rewriter: the statement runs as written; the traceback goes to the log. */
    fprintf(stderr, "sqlml: the statement rewriter failed; running the statement as written:\n");
    PyErr_Print();
    rc = -1;
  }
  Py_XDECREF(r);
  Py_XDECREF(text);
  pyhost_leave();
  return rc;
}

void pyhost_statement_ended(unsigned long long connection, int status, const char *query, size_t len)
{
  char err[SQLML_ERRMSG_SIZE];
  if (pyhost_boot(err, sizeof err) != 0)
    return;
  pyhost_enter();
  PyObject *text = query ? PyUnicode_DecodeUTF8(query, (Py_ssize_t)len, "surrogateescape") : Py_NewRef(Py_None);
  PyObject *r = text ? PyObject_CallMethod(bridge, "statement_ended", "KiO", connection, status, text) : NULL;
  if (!r) {
    /* The change is dropped (the registry stays as it was); the traceback goes to the log. */
    fprintf(stderr, "sqlml: could not apply a function registry change:\n");
    PyErr_Print();
  }
  Py_XDECREF(r);
  Py_XDECREF(text);
  pyhost_leave();
}
