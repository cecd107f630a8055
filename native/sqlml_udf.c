/*
 * The SQL functions sqlml.so exports. Each entry point is the same fixed sequence:
 * make sure Python is up, take this thread's state, call one prepared Python
 * callable, map its value or its error, release. What a function means (argument
 * rules, batching, types, policy) is decided in python/sqlml; this file only knows
 * how to move SQL values across and how to report errors.
 *
 *   xxx_init   -> sqlml.bridge.prepare(name, kind, arg_types, constant_args, arg_names)
 *                 returns (call, max_length, decimals, arg_types); `call` is kept on
 *                 initid->ptr and arg_types (coercions the server should apply to
 *                 each argument, e.g. text as STRING) are written back
 *   xxx        -> call(*row_args) returns None (SQL NULL), float, int or bytes
 *   xxx_deinit -> drops `call` (aggregates first call its optional `close()`: the
 *                 statement may end without a result, e.g. killed or failed)
 *
 * The batch path's fast lane (memo.h): prepare may return a fifth element, a memo
 * spec. A reading function then first looks its row up in the statement memo by its
 * own argument bytes and answers from there without entering Python; a warm-up
 * aggregate hands its distinct rows to Python in chunks (call.add_rows) instead of one
 * call per row, and leaves the answers (call.answers()) in the memo.
 */
#include "lines.h"
#include "counters.h"
#include "memo.h"
#include "pyhost.h"
#include "server_api.h"
#include "sqlml_constants.h"
#include "udf_abi.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SQLML_EXPORT __attribute__((visibility("default")))

/* RESULT_* (the result kinds, Item_result numbering) come from sqlml_constants.h. */

/* A warm-up reserves a row's key this many rows later, so that fetching the memo slot
 * it probes overlaps the server's work on the rows between. Only keys the memo keeps
 * inline (a number's is 9 bytes) are held: nothing but memory can then refuse them;
 * longer ones are reserved at once. */
#define WARM_AHEAD 8
#define WARM_AHEAD_KEY MEMO_KEY_INLINE

/* Per-statement state on initid->ptr. Owns `call` (a strong reference) and `buf`
 * (malloc'ed storage for results longer than the server's 255-byte buffer). */
typedef struct sqlml_call {
  PyObject *call;
  PyObject *add;   /* aggregates only: call.add and call.clear, strong references */
  PyObject *clear;
  char *buf;
  size_t buf_cap;
  /* The memo lane; has_spec false: every row goes to Python. */
  bool has_spec;
  struct memo_spec spec;
  memo *memo;
  unsigned long memo_seen;
  char *key;
  size_t key_cap;
  /* Warm-ups: call.add_rows and call.answers; the memo entries of this group's rows,
   * in the order handed to Python, n_flushed of them handed over so far, the first
   * n_recorded of those with their answers recorded. */
  PyObject *add_rows;
  PyObject *answers;
  uint32_t *rows; /* memo entry numbers: a memo holds fewer than 2**32 entries */
  size_t n_rows, rows_cap, n_flushed, n_recorded;
  bool memo_full;
  /* Warm-ups: the last few rows' keys, reserved WARM_AHEAD rows later (warm_add), their
   * slots fetched meanwhile; a ring of ahead_n from ahead_head. Its own, not the memo's:
   * two warm-ups of one target in a statement share the memo. */
  struct ahead {
    uint64_t hash;
    size_t len;
    char key[WARM_AHEAD_KEY];
  } ahead[WARM_AHEAD];
  unsigned ahead_head, ahead_n;
  /* Warm-ups: this group's result was given (window use if anything but clear follows),
   * and the window refusal was raised already (raised once per statement). */
  bool resulted;
  bool refused;
  /* The export's lane (lines.h): call.add_lines, the lines written since the last
   * hand-over, and `room`, the bytes they may reach before the next one (0: rows go to
   * call.add). Lines are of rows whose URI argument is `uri`, the one of the row
   * call.add last took in this group. */
  PyObject *add_lines;
  struct lines lines;
  size_t room;
  char *uri;
  size_t uri_len;
} sqlml_call;

/* Rows a warm-up hands to Python per call. */
#define WARM_CHUNK 2048

/* New reference to the Python value of a non-NULL SQL value of the given type (len is
 * a string's length), or NULL with an exception set. Strings and decimals cross as
 * bytes: their charset and meaning are Python's call. */
static PyObject *value_to_py(int type, const char *v, size_t len)
{
  if (type == UDF_INT_RESULT) {
    long long n;
    memcpy(&n, v, 8);
    return PyLong_FromLongLong(n);
  }
  if (type == UDF_REAL_RESULT) {
    double d;
    memcpy(&d, v, 8);
    return PyFloat_FromDouble(d);
  }
  return PyBytes_FromStringAndSize(v, (Py_ssize_t)len);
}

/* New reference to the Python value of argument i (None for NULL). */
static PyObject *arg_to_py(const UDF_ARGS *args, unsigned i)
{
  if (args->args[i] == NULL)
    Py_RETURN_NONE;
  return value_to_py(args->arg_type[i], args->args[i], args->lengths[i]);
}

/* Raises the pending Python exception as the statement's SQL error. */
static void raise_python_error(char *error)
{
  char msg[SQLML_ERRMSG_SIZE];
  unsigned code = pyhost_take_error(msg, sizeof msg);
  server_error(code, msg);
  *error = 1;
}

static PyObject *arg_names(const UDF_ARGS *args);

/* The memo spec prepare returned: (target, first key argument, key argument count,
 * mode, low, high, ttl_s, max_entries, max_bytes[, csv_lines]). False with an exception
 * set. */
static bool parse_spec(PyObject *spec, bool aggregate, sqlml_call *state)
{
  struct memo_spec *m = &state->spec;
  const char *target;
  Py_ssize_t target_len;
  int csv_lines = 0;
  if (!PyArg_ParseTuple(spec, "y#IIiLLdLL|p", &target, &target_len, &m->first, &m->count, &m->mode, &m->low,
                        &m->high, &m->ttl_s, &m->max_entries, &m->max_bytes, &csv_lines))
    return false;
  m->csv_lines = csv_lines;
  if ((size_t)target_len > sizeof m->target || m->count == 0 || (!aggregate && m->mode > MEMO_CONFIDENCE)) {
    PyErr_SetString(PyExc_ValueError, "sqlml: prepare returned a malformed memo spec");
    return false;
  }
  memcpy(m->target, target, (size_t)target_len);
  m->target_len = (size_t)target_len;
  state->has_spec = true;
  return true;
}

/* A reading function's row answered from the memo: the answer, or false (Python then). */
static bool memo_hit(sqlml_call *state, UDF_ARGS *args, struct memo_answer *answer)
{
  if (!state->has_spec || (!state->memo && !(state->memo = memo_find(&state->spec, &state->memo_seen))))
    return false;
  size_t len = memo_key(args, state->spec.first, state->spec.count, &state->key, &state->key_cap);
  return len && memo_get(state->memo, state->key, len, answer);
}

/* A row answered from the memo counts as Aurora counts a cache hit, and as a memo hit. */
static void count_hit(void)
{
  counter_add(SQLML_COUNTER_LOGICAL_REQUEST, 1);
  counter_add(SQLML_COUNTER_CACHE_HIT, 1);
  counter_add(SQLML_COUNTER_LOGICAL_RESPONSE, 1);
  counter_add(SQLML_COUNTER_MEMO_HIT, 1);
}

static bool lines_init(sqlml_call *state);

/* Drops every Python object the call state holds (with the GIL held). */
static void drop_python(sqlml_call *state)
{
  Py_CLEAR(state->call);
  Py_CLEAR(state->add);
  Py_CLEAR(state->clear);
  Py_CLEAR(state->add_rows);
  Py_CLEAR(state->answers);
  Py_CLEAR(state->add_lines);
}

static bool call_init(const char *name, int kind, bool aggregate, UDF_INIT *initid,
                      UDF_ARGS *args, char *message)
{
  if (pyhost_boot(message, SQLML_ERRMSG_SIZE) != 0)
    return true;

  sqlml_call *state = calloc(1, sizeof *state);
  if (!state) {
    snprintf(message, SQLML_ERRMSG_SIZE, "%s: out of memory", name);
    return true;
  }
  pyhost_enter();
  PyObject *types = PyTuple_New(args->arg_count);
  PyObject *consts = PyTuple_New(args->arg_count);
  PyObject *names = arg_names(args);
  PyObject *prepared = NULL;
  if (types && consts && names) {
    unsigned i;
    for (i = 0; i < args->arg_count; i++) {
      PyObject *t = PyLong_FromLong(args->arg_type[i]);
      /* A non-NULL pointer at init time means the argument is a constant. */
      PyObject *c = arg_to_py(args, i);
      if (!t || !c) {
        Py_XDECREF(t);
        Py_XDECREF(c);
        break;
      }
      PyTuple_SET_ITEM(types, i, t);
      PyTuple_SET_ITEM(consts, i, c);
    }
    if (i == args->arg_count)
      prepared = PyObject_CallFunction(pyhost_prepare_fn(), "siOOO", name, (int)kind, types, consts, names);
  }
  Py_XDECREF(names);
  Py_XDECREF(types);
  Py_XDECREF(consts);

  long long max_length = 0, decimals = 0;
  PyObject *coerce = NULL, *spec = Py_None;
  if (prepared && !PyArg_ParseTuple(prepared, "OLLO!|O", &state->call, &max_length, &decimals,
                                    &PyTuple_Type, &coerce, &spec))
    Py_CLEAR(prepared);
  if (prepared && spec != Py_None && !parse_spec(spec, aggregate, state))
    Py_CLEAR(prepared);
  if (prepared && PyTuple_GET_SIZE(coerce) != (Py_ssize_t)args->arg_count) {
    PyErr_Format(PyExc_ValueError, "prepare returned %zd argument types for %u arguments",
                 PyTuple_GET_SIZE(coerce), args->arg_count);
    Py_CLEAR(prepared);
  }
  if (prepared) {
    for (unsigned i = 0; i < args->arg_count; i++) {
      args->arg_type[i] = (enum udf_item_result)PyLong_AsLong(PyTuple_GET_ITEM(coerce, i));
      if (args->arg_type[i] == UDF_STRING_RESULT)
        server_utf8mb4_argument(args, i); /* MySQL converts text to utf8mb4 for us */
    }
  }
  if (!prepared) {
    pyhost_take_error(message, SQLML_ERRMSG_SIZE);
    pyhost_leave();
    free(state);
    return true;
  }
  Py_INCREF(state->call);
  Py_DECREF(prepared);
  if (aggregate) {
    state->add = PyObject_GetAttrString(state->call, "add");
    state->clear = PyObject_GetAttrString(state->call, "clear");
    if (state->has_spec) {
      state->add_rows = PyObject_GetAttrString(state->call, "add_rows");
      state->answers = PyObject_GetAttrString(state->call, "answers");
    }
    if (!state->add || !state->clear || (state->has_spec && (!state->add_rows || !state->answers)) ||
        !lines_init(state)) {
      pyhost_take_error(message, SQLML_ERRMSG_SIZE);
      drop_python(state);
      pyhost_leave();
      free(state);
      return true;
    }
  }
  pyhost_leave();

  /* maybe_null: a NULL argument, or the NULL-on-error policy, gives NULL. */
  initid->maybe_null = true;
  /* const_item stays false: ML answers are not deterministic, the server must call
   * us for every row. */
  initid->const_item = false;
  if (kind == RESULT_STRING || kind == RESULT_DECIMAL)
    initid->max_length = (unsigned long)max_length;
  if (kind == RESULT_STRING || kind == RESULT_DECIMAL)
    server_utf8mb4_result(initid); /* MySQL: a utf8mb4 result, not binary */
  initid->decimals = (unsigned int)decimals;
  initid->ptr = (char *)state;
  return false;
}

static void call_deinit(UDF_INIT *initid)
{
  sqlml_call *state = (sqlml_call *)initid->ptr;
  if (!state)
    return;
  pyhost_enter();
  drop_python(state);
  pyhost_leave();
  lines_free(&state->lines);
  free(state->uri);
  memo_close(state->memo);
  free(state->key);
  free(state->rows);
  free(state->buf);
  free(state);
  initid->ptr = NULL;
}

/* Calls fn with this row's arguments (none when args is NULL). Returns a new reference,
 * or NULL with the SQL error already raised and *error set. Must be called inside Python. */
static PyObject *call_with(PyObject *fn, UDF_ARGS *args, char *error)
{
  UDF_ARGS none = {0};
  if (!args)
    args = &none;
  PyObject *small[8] = {NULL};
  PyObject **argv = args->arg_count <= 8 ? small : malloc(args->arg_count * sizeof *argv);
  PyObject *result = NULL;
  unsigned n = 0;

  if (argv) {
    for (; n < args->arg_count; n++)
      if (!(argv[n] = arg_to_py(args, n)))
        break;
    if (n == args->arg_count)
      result = PyObject_Vectorcall(fn, argv, n, NULL);
    while (n > 0)
      Py_DECREF(argv[--n]);
    if (argv != small)
      free(argv);
  } else {
    PyErr_NoMemory();
  }
  if (!result)
    raise_python_error(error);
  return result;
}

/* Reports a result of the wrong Python type: a bug in the engine, not in the query. */
static void wrong_type(PyObject *result, const char *expected, char *error)
{
  char msg[SQLML_ERRMSG_SIZE];
  snprintf(msg, sizeof msg, "sqlml: internal error: engine returned %s where %s was expected",
           Py_TYPE(result)->tp_name, expected);
  server_error(1105, msg);
  *error = 1;
}

/* Every result path starts with *is_null = 0: the server keeps the flag between rows
 * (for DECIMAL at least), so a NULL row would otherwise make every later row NULL. */
static double call_real(UDF_INIT *initid, UDF_ARGS *args, char *is_null, char *error)
{
  double value = 0.0;
  *is_null = 0;
  struct memo_answer a;
  if (memo_hit((sqlml_call *)initid->ptr, args, &a)) {
    bool confidence = ((sqlml_call *)initid->ptr)->spec.mode == MEMO_CONFIDENCE;
    if (a.has_num && isfinite(a.num)) {
      count_hit();
      return a.num;
    }
    if (!confidence && a.text && memo_parse_real(a.text, a.text_len, &value)) {
      count_hit();
      return value;
    }
  }
  pyhost_enter();
  PyObject *r = call_with(((sqlml_call *)initid->ptr)->call, args, error);
  if (r == Py_None)
    *is_null = 1;
  else if (r && PyFloat_Check(r))
    value = PyFloat_AS_DOUBLE(r);
  else if (r)
    wrong_type(r, "float", error);
  Py_XDECREF(r);
  pyhost_leave();
  return value;
}

/* The BIGINT an engine result maps to (None: SQL NULL; r NULL: the error is raised). */
static long long int_result(PyObject *r, char *is_null, char *error)
{
  long long value = 0;
  *is_null = 0;
  if (r == Py_None) {
    *is_null = 1;
  } else if (r && PyLong_Check(r)) {
    value = PyLong_AsLongLong(r);
    if (value == -1 && PyErr_Occurred()) {
      PyErr_Clear();
      wrong_type(r, "an integer within BIGINT range", error);
    }
  } else if (r) {
    wrong_type(r, "int", error);
  }
  return value;
}

/* An aggregate's result takes no row: args is NULL then. */
static long long call_int(UDF_INIT *initid, UDF_ARGS *args, char *is_null, char *error)
{
  long long value = 0;
  struct memo_answer a;
  sqlml_call *state = (sqlml_call *)initid->ptr;
  *is_null = 0;
  if (args && memo_hit(state, args, &a) && a.text &&
      memo_parse_int(a.text, a.text_len, state->spec.low, state->spec.high, &value)) {
    count_hit();
    return value;
  }
  pyhost_enter();
  PyObject *r = call_with(((sqlml_call *)initid->ptr)->call, args, error);
  value = int_result(r, is_null, error);
  Py_XDECREF(r);
  pyhost_leave();
  return value;
}

static char *call_string(UDF_INIT *initid, UDF_ARGS *args, char *result, unsigned long *length,
                         char *is_null, char *error)
{
  sqlml_call *state = (sqlml_call *)initid->ptr;
  char *out = NULL;
  struct memo_answer a;
  *is_null = 0;
  if (args && state->spec.mode == MEMO_LABEL && memo_hit(state, args, &a) && a.text &&
      a.text_len <= SQLML_RESULT_BUF) {
    memcpy(result, a.text, a.text_len);
    *length = a.text_len;
    count_hit();
    return result;
  }
  pyhost_enter();
  PyObject *r = call_with(state->call, args, error);
  if (r == Py_None) {
    *is_null = 1;
  } else if (r && PyBytes_Check(r)) {
    size_t n = (size_t)PyBytes_GET_SIZE(r);
    out = result;
    if (n > SQLML_RESULT_BUF) {
      if (n > state->buf_cap) {
        char *grown = realloc(state->buf, n);
        if (!grown) {
          server_error(1105, "sqlml: out of memory for a result");
          *error = 1;
          n = 0;
        } else {
          state->buf = grown;
          state->buf_cap = n;
        }
      }
      out = state->buf;
    }
    if (out && n)
      memcpy(out, PyBytes_AS_STRING(r), n);
    *length = n;
  } else if (r) {
    wrong_type(r, "bytes", error);
  }
  Py_XDECREF(r);
  pyhost_leave();
  return *error || *is_null ? NULL : out;
}

/* Aggregates: clear() at each group's start, add(*row) per row; no value to map. */
static void call_step(PyObject *fn, UDF_ARGS *args, char *error)
{
  pyhost_enter();
  PyObject *r = call_with(fn, args, error);
  Py_XDECREF(r);
  pyhost_leave();
}

/* ---- warm-ups on the memo lane ------------------------------------------------------ */

struct key_tuple {
  PyObject *tuple;
  Py_ssize_t i;
};

/* memo_key_args callback: one key argument as the Python value arg_to_py would give. */
static void key_arg_to_py(int type, const char *v, size_t len, void *ctx)
{
  struct key_tuple *k = ctx;
  PyObject *o = value_to_py(type, v, len);
  if (o && k->tuple)
    PyTuple_SET_ITEM(k->tuple, k->i++, o);
  else
    Py_XDECREF(o);
}

/* A row's CSV line when every key argument is a number C writes exactly as the engine
 * would (functions/sagemaker.py _encode_int/_encode_real): integers (and whole numbers, which
 * memo.c hands back as integers) as %lld; other doubles as memo_format_real() writes
 * them, or by "%.15g" when that text reads back as the same double. For a normal
 * double, a 15-digit text that reads back is the shortest one, so it is Python's repr()
 * digit for digit, and below 1e15 both write the same fixed or exponent form. Anything
 * else (16-17 digits, subnormals, 1e15 and up, inf, nan) is left to Python: false. */
struct csv_line {
  char buf[512];
  size_t len;
  bool ok;
};

static void key_arg_to_csv(int type, const char *v, size_t len, void *ctx)
{
  (void)len;
  struct csv_line *line = ctx;
  if (!line->ok)
    return;
  char field[40];
  int n = -1;
  if (type == UDF_INT_RESULT) {
    long long whole;
    memcpy(&whole, v, 8);
    n = snprintf(field, sizeof field, "%lld", whole);
  } else if (type == UDF_REAL_RESULT) {
    double real;
    memcpy(&real, v, 8);
    double magnitude = fabs(real);
    n = memo_format_real(real, field, sizeof field);
    if (n < 0 && magnitude >= 1e-300 && magnitude < 1e15) {
      n = snprintf(field, sizeof field, "%.15g", real);
      if (strtod(field, NULL) != real)
        n = -1;
    }
  }
  if (n <= 0 || line->len + (size_t)n + 1 >= sizeof line->buf) {
    line->ok = false;
    return;
  }
  if (line->len)
    line->buf[line->len++] = ',';
  memcpy(line->buf + line->len, field, (size_t)n);
  line->len += (size_t)n;
}

/* One row for call.add_rows: its CSV line (str) if the spec asks for lines and C can
 * write it exactly, else the tuple of its key arguments. New reference or NULL. */
static PyObject *warm_row(sqlml_call *state, long entry)
{
  if (state->spec.csv_lines) {
    struct csv_line line = {.len = 0, .ok = true};
    memo_key_args(state->memo, entry, key_arg_to_csv, &line);
    if (line.ok)
      return PyUnicode_FromStringAndSize(line.buf, (Py_ssize_t)line.len);
  }
  struct key_tuple k = {PyTuple_New(state->spec.count), 0};
  if (k.tuple)
    memo_key_args(state->memo, entry, key_arg_to_py, &k);
  if (k.tuple && k.i != (Py_ssize_t)state->spec.count)
    Py_CLEAR(k.tuple);
  return k.tuple;
}

static bool record_answers(sqlml_call *state, PyObject *answers, bool all);

/* Hands the rows not yet handed over to call.add_rows (warm_row each). Inside Python;
 * false with the SQL error raised. */
static bool warm_flush(sqlml_call *state, char *error)
{
  Py_ssize_t n = (Py_ssize_t)(state->n_rows - state->n_flushed);
  if (n == 0)
    return true;
  PyObject *rows = PyList_New(n);
  for (Py_ssize_t i = 0; rows && i < n; i++) {
    PyObject *row = warm_row(state, state->rows[state->n_flushed + (size_t)i]);
    if (!row) {
      Py_CLEAR(rows);
      break;
    }
    PyList_SET_ITEM(rows, i, row);
  }
  PyObject *r = rows ? PyObject_CallOneArg(state->add_rows, rows) : NULL;
  Py_XDECREF(rows);
  if (r)
    state->n_flushed = state->n_rows;
  /* add_rows may give back the answers that came meanwhile for the first rows without
   * one: recorded now, they need not wait in Python until the result. */
  bool ok = r && (r == Py_None || record_answers(state, r, false));
  Py_XDECREF(r);
  if (!ok)
    raise_python_error(error);
  return ok;
}

/* A reserved row's outcome (memo_reserve's entry): a new entry joins the rows handed to
 * Python WARM_CHUNK at a time; a key seen before costs nothing more. Returns false when
 * the memo is full (bounds or memory), which it then stays for the statement. */
static bool warm_take(sqlml_call *state, long entry, char *error)
{
  if (entry == -1)
    return true;
  if (entry >= 0 && state->n_rows == state->rows_cap) {
    size_t cap = state->rows_cap ? state->rows_cap * 2 : WARM_CHUNK;
    uint32_t *grown = realloc(state->rows, cap * sizeof *grown);
    if (grown) {
      state->rows = grown;
      state->rows_cap = cap;
    } else {
      entry = -2; /* reserved, never answered: its reader asks Python */
    }
  }
  if (entry < 0) {
    state->memo_full = true;
    return false;
  }
  state->rows[state->n_rows++] = (uint32_t)entry;
  if (state->n_rows - state->n_flushed >= WARM_CHUNK) {
    pyhost_enter();
    warm_flush(state, error);
    pyhost_leave();
  }
  return true;
}

/* Reserves the oldest key held ahead. A key the memo has no room for (only when memory
 * is short: warm_add holds none past the spec's bounds) is not warmed: its row's reader
 * asks Python, as for any row the memo lacks. */
static void warm_reserve_oldest(sqlml_call *state, char *error)
{
  struct ahead *a = &state->ahead[state->ahead_head];
  state->ahead_head = (state->ahead_head + 1) % WARM_AHEAD;
  state->ahead_n--;
  if (!state->memo_full)
    warm_take(state, memo_reserve_hashed(state->memo, a->hash, a->key, a->len), error);
}

/* Reserves every key held ahead, in their rows' order. */
static void warm_drain(sqlml_call *state, char *error)
{
  while (state->ahead_n && !*error)
    warm_reserve_oldest(state, error);
  state->ahead_n = 0;
}

/* A warm-up's row: its key held WARM_AHEAD rows (its memo slot fetched meanwhile), then
 * reserved if new (warm_take). Without a memo lane, or once the memo is full, the row
 * goes to call.add, one Python call per row. */
static void warm_add(sqlml_call *state, UDF_ARGS *args, char *error)
{
  if (state->has_spec && !state->memo_full) {
    for (unsigned i = state->spec.first; i < state->spec.first + state->spec.count && i < args->arg_count; i++)
      if (!args->args[i])
        return; /* NULL: call.add would skip the row too */
    if (!state->memo)
      state->memo = memo_open(&state->spec);
    size_t len = state->memo ? memo_key(args, state->spec.first, state->spec.count, &state->key, &state->key_cap) : 0;
    if (len && len <= WARM_AHEAD_KEY && memo_room(state->memo) > (long long)state->ahead_n) {
      if (state->ahead_n == WARM_AHEAD)
        warm_reserve_oldest(state, error);
      if (!state->memo_full && !*error) {
        struct ahead *a = &state->ahead[(state->ahead_head + state->ahead_n++) % WARM_AHEAD];
        a->hash = memo_hash(state->key, len);
        a->len = len;
        memcpy(a->key, state->key, len);
        memo_prefetch(state->memo, a->hash);
        return;
      }
    }
    /* Held keys first, so that rows keep their order. */
    warm_drain(state, error);
    if (*error)
      return;
    if (!state->memo_full && warm_take(state, len ? memo_reserve(state->memo, state->key, len) : -2, error))
      return;
  }
  call_step(state->add, args, error);
}

/* One answer of the list form (None, str, float, or (label bytes, confidence float))
 * into entry's memo slot; anything else is left to Python. */
static void record_item(sqlml_call *state, uint32_t entry, PyObject *item)
{
  if (PyUnicode_Check(item)) {
    Py_ssize_t len = 0;
    const char *text = PyUnicode_AsUTF8AndSize(item, &len);
    if (!text)
      PyErr_Clear(); /* not encodable: the row's reader asks Python */
    else
      memo_set(state->memo, entry, text, (size_t)len, false, 0.0);
  } else if (PyFloat_Check(item)) {
    memo_set(state->memo, entry, NULL, 0, true, PyFloat_AS_DOUBLE(item));
  } else if (PyTuple_Check(item) && PyTuple_GET_SIZE(item) == 2 && PyBytes_Check(PyTuple_GET_ITEM(item, 0)) &&
             PyFloat_Check(PyTuple_GET_ITEM(item, 1))) {
    PyObject *label = PyTuple_GET_ITEM(item, 0);
    memo_set(state->memo, entry, PyBytes_AS_STRING(label), (size_t)PyBytes_GET_SIZE(label), true,
             PyFloat_AS_DOUBLE(PyTuple_GET_ITEM(item, 1)));
  }
}

/* The number of answers in one of the forms record_answers takes, or -1 with the
 * exception set. *text and *ends (the (text, ends) form) or *ends alone (an array of
 * doubles) are filled and must be released by the caller when it returns >= 0. */
static Py_ssize_t answers_view(PyObject *answers, Py_buffer *text, Py_buffer *ends, int *form)
{
  if (PyList_Check(answers)) {
    *form = 0;
    return PyList_GET_SIZE(answers);
  }
  if (PyTuple_Check(answers) && PyTuple_GET_SIZE(answers) == 2) {
    if (PyObject_GetBuffer(PyTuple_GET_ITEM(answers, 0), text, PyBUF_SIMPLE) < 0)
      return -1;
    if (PyObject_GetBuffer(PyTuple_GET_ITEM(answers, 1), ends, PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0) {
      PyBuffer_Release(text);
      return -1;
    }
    const unsigned int *end = ends->buf;
    Py_ssize_t n = ends->len / (Py_ssize_t)sizeof *end;
    if (ends->itemsize != sizeof *end || !ends->format || strcmp(ends->format, "I") != 0 ||
        (n && (Py_ssize_t)end[n - 1] > text->len)) {
      PyErr_Format(PyExc_ValueError, "sqlml: answers: end offsets of format %s, the last past %zd bytes of text",
                   ends->format ? ends->format : "?", text->len);
      PyBuffer_Release(ends);
      PyBuffer_Release(text);
      return -1;
    }
    *form = 2;
    return n;
  }
  if (PyObject_CheckBuffer(answers)) {
    if (PyObject_GetBuffer(answers, ends, PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0)
      return -1;
    if (ends->itemsize != sizeof(double) || !ends->format || strcmp(ends->format, "d") != 0) {
      PyErr_Format(PyExc_ValueError, "sqlml: answers: a buffer of format %s, not of doubles",
                   ends->format ? ends->format : "?");
      PyBuffer_Release(ends);
      return -1;
    }
    *form = 1;
    return ends->len / (Py_ssize_t)sizeof(double);
  }
  PyErr_Format(PyExc_TypeError, "sqlml: answers: none of a list, an array of doubles, (text, end offsets)");
  return -1;
}

/* Records answers for the rows handed over from n_recorded on, in order, and moves
 * n_recorded past them. answers: a list (record_item's forms), an array of doubles,
 * or (text, ends): the rows' UTF-8 answers end to end and an array('I') of their end
 * offsets. At most the rows handed over and not yet recorded; exactly those when
 * `all`. Inside Python; false with the exception set. */
static bool record_answers(sqlml_call *state, PyObject *answers, bool all)
{
  Py_buffer text, ends;
  int form = 0;
  size_t room = state->n_flushed - state->n_recorded;
  Py_ssize_t n = answers_view(answers, &text, &ends, &form);
  if (n < 0)
    return false;
  if ((size_t)n > room || (all && (size_t)n != room)) {
    PyErr_Format(PyExc_ValueError, "sqlml: answers for %zd rows, %zu handed over without one", n, room);
  } else {
    const uint32_t *rows = state->rows + state->n_recorded;
    if (form == 0) {
      for (Py_ssize_t i = 0; i < n; i++)
        record_item(state, rows[i], PyList_GET_ITEM(answers, i));
    } else if (form == 1) {
      const double *values = ends.buf;
      for (Py_ssize_t i = 0; i < n; i++)
        memo_set(state->memo, rows[i], NULL, 0, true, values[i]);
    } else {
      const unsigned int *end = ends.buf;
      unsigned int start = 0;
      for (Py_ssize_t i = 0; i < n; i++) {
        if (end[i] >= start) /* offsets only grow: anything else is left to Python */
          memo_set(state->memo, rows[i], (const char *)text.buf + start, (size_t)(end[i] - start), false, 0.0);
        start = end[i];
      }
    }
    state->n_recorded += (size_t)n;
  }
  if (form == 2)
    PyBuffer_Release(&text);
  if (form != 0)
    PyBuffer_Release(&ends);
  return !PyErr_Occurred();
}

/* Records call.answers(): the answers of the rows handed over and not recorded yet
 * (record_answers), in the memo. Inside Python. */
static bool warm_record(sqlml_call *state, char *error)
{
  PyObject *answers = PyObject_CallNoArgs(state->answers);
  bool ok = answers && record_answers(state, answers, true);
  Py_XDECREF(answers);
  if (!ok)
    raise_python_error(error);
  return ok;
}

/* A warm-up group's result: hands the last rows over, waits for every batch (call()),
 * then records the answers in the memo. */
static long long warm_result(UDF_INIT *initid, char *is_null, char *error)
{
  sqlml_call *state = (sqlml_call *)initid->ptr;
  if (!state->has_spec || !state->memo)
    return call_int(initid, NULL, is_null, error);
  long long value = 0;
  warm_drain(state, error);
  if (*error)
    return 0;
  pyhost_enter();
  if (warm_flush(state, error)) {
    PyObject *r = call_with(state->call, NULL, error);
    value = int_result(r, is_null, error);
    if (r && !*error)
      warm_record(state, error);
    Py_XDECREF(r);
  }
  pyhost_leave();
  state->n_rows = state->n_flushed = state->n_recorded = 0;
  return value;
}

static void aggregate_clear(sqlml_call *state, char *error)
{
  /* Handed over and recorded at the last result; the lines likewise, or the group ended
   * without a result. */
  state->n_rows = state->n_flushed = state->n_recorded = 0;
  state->ahead_n = 0; /* never reserved: their readers ask Python */
  lines_reset(&state->lines);
  state->room = 0;
  state->resulted = false;
  call_step(state->clear, NULL, error);
}

/* MariaDB lets an aggregate UDF be a window function, f(...) OVER (...), and then asks
 * for a result per row: add after a result without clear (a growing frame), a second
 * result for the same group (a whole-partition frame), or remove (a sliding frame;
 * warm-ups export xxx_remove so that MariaDB never rescans a frame per row, which would
 * send the inputs again per row in quadratic time). A warm-up's result is a statement's
 * one-time batch, not a per-row value, so window use is refused. MySQL refuses the
 * syntax itself. A HAVING on the result also reads it twice: refused the same way (no
 * way to tell it from a window over two rows). */
static void refuse_window(sqlml_call *state, const char *name, char *error)
{
  *error = 1;
  if (state->refused)
    return;
  state->refused = true;
  char msg[SQLML_ERRMSG_SIZE];
  snprintf(msg, sizeof msg,
           "%s: a warm-up's result is read once per group, but as a window function (OVER ...) or in "
           "HAVING the server reads it per row: call it once in a scalar subquery, e.g. "
           "WHERE (SELECT %s(...) FROM <the same FROM and WHERE>) >= 0",
           name, name);
  server_error(1210, msg);
}

static void warm_step(sqlml_call *state, const char *name, UDF_ARGS *args, char *error)
{
  if (state->resulted || state->refused)
    refuse_window(state, name, error);
  else
    warm_add(state, args, error);
}

static long long warm_group_result(UDF_INIT *initid, const char *name, char *is_null, char *error)
{
  sqlml_call *state = (sqlml_call *)initid->ptr;
  if (state->resulted || state->refused) {
    refuse_window(state, name, error);
    return 0;
  }
  state->resulted = true;
  return warm_result(initid, is_null, error);
}

static void aggregate_deinit(UDF_INIT *initid);

/* One SQL function = three exported symbols that forward to the shared code. */
#define SQLML_INIT_DEINIT_AS(name, kind, aggregate)                                                \
  SQLML_EXPORT bool name##_init(UDF_INIT *initid, UDF_ARGS *args, char *message)                   \
  {                                                                                                \
    return call_init(#name, kind, aggregate, initid, args, message);                               \
  }                                                                                                \
  SQLML_EXPORT void name##_deinit(UDF_INIT *initid) { call_deinit(initid); }

#define SQLML_INIT_DEINIT(name, kind) SQLML_INIT_DEINIT_AS(name, kind, false)

/* An aggregate's clear (at each group's start) and add (per row: add_step), shared by
 * the warm-ups and the export. */
#define SQLML_AGGREGATE_STEPS_WITH(name, add_step)                                                 \
  SQLML_EXPORT void name##_clear(UDF_INIT *initid, char *is_null, char *error)                     \
  {                                                                                                \
    (void)is_null;                                                                                 \
    aggregate_clear((sqlml_call *)initid->ptr, error);                                             \
  }                                                                                                \
  SQLML_EXPORT void name##_add(UDF_INIT *initid, UDF_ARGS *args, char *is_null, char *error)       \
  {                                                                                                \
    (void)is_null;                                                                                 \
    add_step;                                                                                      \
  }

/* The export's: rows as lines in C while it can (export_add), else to call.add. */
#define SQLML_AGGREGATE_STEPS(name)                                                                \
  SQLML_AGGREGATE_STEPS_WITH(name, export_add((sqlml_call *)initid->ptr, args, error))

/* An INTEGER aggregate: the warm-ups of the batch path. Window use is refused
 * (refuse_window); deinit lets the warm-up drop what it kept for its statement. */
#define SQLML_INT_AGGREGATE(name)                                                                  \
  SQLML_EXPORT bool name##_init(UDF_INIT *initid, UDF_ARGS *args, char *message)                   \
  {                                                                                                \
    return call_init(#name, RESULT_INT, true, initid, args, message);                              \
  }                                                                                                \
  SQLML_EXPORT void name##_deinit(UDF_INIT *initid) { aggregate_deinit(initid); }                  \
  SQLML_AGGREGATE_STEPS_WITH(name, warm_step((sqlml_call *)initid->ptr, #name, args, error))       \
  SQLML_EXPORT void name##_remove(UDF_INIT *initid, UDF_ARGS *args, char *is_null, char *error)    \
  {                                                                                                \
    (void)args;                                                                                    \
    (void)is_null;                                                                                 \
    refuse_window((sqlml_call *)initid->ptr, #name, error);                                        \
  }                                                                                                \
  SQLML_EXPORT long long name(UDF_INIT *initid, UDF_ARGS *args, char *is_null, char *error)        \
  {                                                                                                \
    (void)args;                                                                                    \
    return warm_group_result(initid, #name, is_null, error);                                       \
  }

#define SQLML_REAL_FUNCTION(name)                                                                  \
  SQLML_INIT_DEINIT(name, RESULT_REAL)                                                             \
  SQLML_EXPORT double name(UDF_INIT *initid, UDF_ARGS *args, char *is_null, char *error)           \
  {                                                                                                \
    return call_real(initid, args, is_null, error);                                                \
  }

#define SQLML_INT_FUNCTION(name)                                                                   \
  SQLML_INIT_DEINIT(name, RESULT_INT)                                                              \
  SQLML_EXPORT long long name(UDF_INIT *initid, UDF_ARGS *args, char *is_null, char *error)        \
  {                                                                                                \
    return call_int(initid, args, is_null, error);                                                 \
  }

#define SQLML_STRING_FUNCTION(name, kind)                                                          \
  SQLML_INIT_DEINIT(name, kind)                                                                    \
  SQLML_EXPORT char *name(UDF_INIT *initid, UDF_ARGS *args, char *result, unsigned long *length,   \
                          char *is_null, char *error)                                              \
  {                                                                                                \
    return call_string(initid, args, result, length, is_null, error);                              \
  }

/* Aurora MySQL's Comprehend functions. */
SQLML_STRING_FUNCTION(aws_comprehend_detect_sentiment, RESULT_STRING)
SQLML_REAL_FUNCTION(aws_comprehend_detect_sentiment_confidence)

/* SageMaker InvokeEndpoint, one per SQL return type:
 *   aws_sagemaker_invoke_endpoint_<type>(endpoint, declared_type, max_batch_size, arg, ...)
 * User-named functions are stored-function wrappers over these (sqlml translate). */
SQLML_REAL_FUNCTION(aws_sagemaker_invoke_endpoint_real)
SQLML_INT_FUNCTION(aws_sagemaker_invoke_endpoint_int)
SQLML_STRING_FUNCTION(aws_sagemaker_invoke_endpoint_decimal, RESULT_DECIMAL)
SQLML_STRING_FUNCTION(aws_sagemaker_invoke_endpoint_string, RESULT_STRING)

/* The SQL-only batch path: warm-up aggregates that fill the result cache. */
SQLML_INT_AGGREGATE(sqlml_warm_comprehend)
SQLML_INT_AGGREGATE(sqlml_warm_sagemaker)
SQLML_INT_FUNCTION(sqlml_cache_clear)

/* Introspection. */
SQLML_STRING_FUNCTION(sqlml_version, RESULT_STRING)
SQLML_STRING_FUNCTION(sqlml_status, RESULT_STRING)

/* Diagnostics for the benchmarks: sqlml_echo_int crosses into Python and back;
 * sqlml_noop_int is the same signature in pure C, the baseline it is compared to. */
SQLML_INT_FUNCTION(sqlml_echo_int)

SQLML_EXPORT bool sqlml_noop_int_init(UDF_INIT *initid, UDF_ARGS *args, char *message)
{
  (void)message;
  if (args->arg_count == 1)
    args->arg_type[0] = UDF_INT_RESULT; /* ask the server to pass an integer */
  initid->maybe_null = true;
  return false;
}

SQLML_EXPORT void sqlml_noop_int_deinit(UDF_INIT *initid) { (void)initid; }

SQLML_EXPORT long long sqlml_noop_int(UDF_INIT *initid, UDF_ARGS *args, char *is_null, char *error)
{
  (void)initid;
  (void)error;
  if (args->arg_count != 1 || !args->args[0]) {
    *is_null = 1;
    return 0;
  }
  return *(long long *)args->args[0];
}

/* ---- argument names, aggregates with a result string and a close hook ---------------- */

/* New reference to a tuple of each argument's name as written in the query (the column
 * name or alias, or the expression's text: both servers pass it in attributes), as
 * bytes; None where the server gave none. NULL with an exception set on failure. */
static PyObject *arg_names(const UDF_ARGS *args)
{
  PyObject *names = PyTuple_New(args->arg_count);
  for (unsigned i = 0; names && i < args->arg_count; i++) {
    PyObject *n;
    if (args->attributes && args->attributes[i])
      n = PyBytes_FromStringAndSize(args->attributes[i], (Py_ssize_t)args->attribute_lengths[i]);
    else
      n = Py_NewRef(Py_None);
    if (!n)
      Py_CLEAR(names);
    else
      PyTuple_SET_ITEM(names, i, n);
  }
  return names;
}

/* Aggregate deinit: a statement can end without a result (killed, failed, an error in
 * another expression), so the prepared object gets to release what it holds (e.g. abort
 * an upload) through its optional close() before it is dropped. Errors there cannot
 * reach the client any more; they are logged by the one error formatter. */
static void aggregate_deinit(UDF_INIT *initid)
{
  sqlml_call *state = (sqlml_call *)initid->ptr;
  if (state && state->call) {
    pyhost_enter();
    if (PyObject_HasAttrString(state->call, "close")) {
      PyObject *r = PyObject_CallMethod(state->call, "close", NULL);
      if (!r) {
        char msg[SQLML_ERRMSG_SIZE];
        pyhost_take_error(msg, sizeof msg);
        fprintf(stderr, "sqlml: %s\n", msg);
      }
      Py_XDECREF(r);
    }
    pyhost_leave();
  }
  call_deinit(initid);
}

/* A STRING aggregate: clear() at each group's start, add(*row) per row (or add_lines:
 * export_add), call() for the group's result (bytes), close() at the end of the statement. */
#define SQLML_STRING_AGGREGATE(name)                                                               \
  SQLML_EXPORT bool name##_init(UDF_INIT *initid, UDF_ARGS *args, char *message)                   \
  {                                                                                                \
    return call_init(#name, RESULT_STRING, true, initid, args, message);                           \
  }                                                                                                \
  SQLML_EXPORT void name##_deinit(UDF_INIT *initid) { aggregate_deinit(initid); }                  \
  SQLML_AGGREGATE_STEPS(name)                                                                      \
  SQLML_EXPORT char *name(UDF_INIT *initid, UDF_ARGS *args, char *result, unsigned long *length,   \
                          char *is_null, char *error)                                              \
  {                                                                                                \
    (void)args;                                                                                    \
    return export_result(initid, result, length, is_null, error);                                  \
  }

/* ---- the export's lane: rows written as lines in C (lines.h) ------------------------- */

/* An aggregate whose call has add_lines (the export) takes its rows as lines in the
 * format call.line_format names. False with an exception set. Inside Python. */
static bool lines_init(sqlml_call *state)
{
  if (!state->call || !PyObject_HasAttrString(state->call, "add_lines"))
    return true;
  PyObject *format = PyObject_GetAttrString(state->call, "line_format");
  long f = format ? PyLong_AsLong(format) : -1;
  Py_XDECREF(format);
  if (f != LINES_CSV && f != LINES_TEXT) {
    if (!PyErr_Occurred())
      PyErr_Format(PyExc_ValueError, "sqlml: unknown line format %ld", f);
    return false;
  }
  state->lines.format = (int)f;
  state->add_lines = PyObject_GetAttrString(state->call, "add_lines");
  return state->add_lines != NULL;
}

/* The room call.add or call.add_lines gave: bytes of lines to gather before the next
 * hand-over; anything but a positive int (None: the export failed) keeps rows on call.add. */
static size_t lines_room(PyObject *r)
{
  Py_ssize_t room = PyLong_Check(r) ? PyLong_AsSsize_t(r) : 0;
  if (room < 0) {
    PyErr_Clear();
    room = 0;
  }
  return (size_t)room;
}

/* Hands the lines gathered to call.add_lines(uri, lines, rows). Inside Python; false
 * with the SQL error raised (the lines are dropped either way). */
static bool lines_hand_over(sqlml_call *state, char *error)
{
  struct lines *l = &state->lines;
  if (l->rows == 0)
    return true;
  PyObject *r = NULL;
  PyObject *uri = state->uri ? PyBytes_FromStringAndSize(state->uri, (Py_ssize_t)state->uri_len) : Py_NewRef(Py_None);
  PyObject *body = PyBytes_FromStringAndSize(l->buf, (Py_ssize_t)l->len);
  PyObject *rows = PyLong_FromUnsignedLong(l->rows);
  lines_reset(l);
  if (uri && body && rows)
    r = PyObject_CallFunctionObjArgs(state->add_lines, uri, body, rows, NULL);
  Py_XDECREF(uri);
  Py_XDECREF(body);
  Py_XDECREF(rows);
  if (!r) {
    state->room = 0;
    raise_python_error(error);
    return false;
  }
  state->room = lines_room(r);
  Py_DECREF(r);
  return true;
}

/* The row's URI argument is the one the lines gathered are for. */
static bool lines_same_uri(const sqlml_call *state, const UDF_ARGS *args)
{
  return args->args[0] && state->uri && args->lengths[0] == state->uri_len &&
         memcmp(args->args[0], state->uri, state->uri_len) == 0;
}

/* Keeps the URI argument of a row call.add took: the lane's rows must have the same.
 * False (the lane stays closed) when it is NULL or memory is short. */
static bool lines_keep_uri(sqlml_call *state, const UDF_ARGS *args)
{
  free(state->uri);
  state->uri = NULL;
  if (!args->args[0] || !(state->uri = malloc(args->lengths[0] ? args->lengths[0] : 1)))
    return false;
  memcpy(state->uri, args->args[0], args->lengths[0]);
  state->uri_len = args->lengths[0];
  return true;
}

/* An export's row: written as a line here while the lane is open (call.add gave a room
 * and the URI is the same), handed over with the others once they fill the room.
 * Otherwise (a group's first row, a new URI, a value C does not write) the lines so far
 * go first, then the row to call.add, whose answer opens the lane again. */
static void export_add(sqlml_call *state, UDF_ARGS *args, char *error)
{
  if (!state->add_lines) {
    call_step(state->add, args, error);
    return;
  }
  if (state->room && lines_same_uri(state, args) && lines_append(&state->lines, args, 2)) {
    if (state->lines.len >= state->room) {
      pyhost_enter();
      lines_hand_over(state, error);
      pyhost_leave();
    }
    return;
  }
  pyhost_enter();
  if (lines_hand_over(state, error)) {
    PyObject *r = call_with(state->add, args, error);
    state->room = r && lines_keep_uri(state, args) ? lines_room(r) : 0;
    Py_XDECREF(r);
  }
  pyhost_leave();
}

/* The group's result: its last lines first. The lane closes: a row after the result
 * (MariaDB's window use) goes to call.add, which refuses it. */
static char *export_result(UDF_INIT *initid, char *result, unsigned long *length, char *is_null, char *error)
{
  sqlml_call *state = (sqlml_call *)initid->ptr;
  if (state->add_lines) {
    pyhost_enter();
    bool handed = lines_hand_over(state, error);
    pyhost_leave();
    state->room = 0;
    if (!handed) {
      *is_null = 1;
      return NULL;
    }
  }
  return call_string(initid, NULL, result, length, is_null, error);
}

/* Training-data export: sqlml_export_s3(uri, options, col1, col2, ...) over a query
 * writes its rows to S3 (python/sqlml/export.py) and returns what it wrote, as JSON. */
SQLML_STRING_AGGREGATE(sqlml_export_s3)
