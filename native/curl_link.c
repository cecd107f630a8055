/*
 * curl_link: the sqlml._curl_link extension module, the HTTP transport of
 * python/sqlml/services/lean.py (which decides what is sent, signs it and maps failures
 * to botocore's exceptions; this file only moves the bytes).
 *
 * A Link is one kept-alive connection: a libcurl easy handle driven by a multi handle of
 * its own, whose connection cache (one connection at most) keeps the connection between
 * requests. Link.post() is one request and its whole answer in one C call, the GIL
 * released throughout: libcurl's socket and timer callbacks record what it waits for,
 * poll() waits for that (never select(): a server process holds descriptors past 1024),
 * curl_multi_socket_action() acts on it, and the answer's header lines and body are
 * collected into C buffers. Driving the same loop from Python (pycurl, before this file)
 * cost about 20 us of server CPU per request on the scalar path.
 *
 * Timeouts, as http.client's path times them: a new connection has the connect timeout
 * (TCP and TLS), then the read timeout from the moment it is up; a kept-alive one has the
 * read timeout for the whole exchange. A post given a `wait` (a request sent from a
 * server thread, whose statement can be killed) re-takes the GIL only to ask the caller:
 *   - wait(fd) -> seconds left or None, called once the request is written (the caller
 *     waits for the answer itself, and its answer bounds the rest);
 *   - an object with `deadline` (time.monotonic() seconds: CLOCK_MONOTONIC) and
 *     `check(expired)`: this loop waits for the answer in slices of `slice_s` (default
 *     0.1 s) and calls check() after each slice that ended without it; check raises to
 *     stop. An answer that starts within the first slice costs no Python at all.
 * Whatever ends a post early (libcurl's failure, our deadline, an exception from wait)
 * closes the Link: its connection may still carry a late answer.
 *
 * Locking: a Link is used by one thread at a time (lean.py's pool hands it out); a post
 * runs without the GIL, so a second thread using the same Link meanwhile gets
 * RuntimeError (the busy flag, read and written under the GIL) instead of a corrupted
 * handle.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <curl/curl.h>
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define MAX_SOCKETS 8 /* a connect racing IPv4 and IPv6 (2), libcurl 8's own wakeup socket (1) */
#define KEEP_BYTES 65536     /* answer buffer room kept between requests; more is freed */
#define DEFAULT_SLICE_S 0.1  /* wait.slice_s when the object has none */

static PyObject *LinkError;   /* Error(code, message): libcurl's failure */
static PyObject *LinkTimeout; /* Timeout(connected): our own deadline passed */
static PyObject *str_deadline, *str_check, *str_slice_s;

/* A growing byte buffer, PyMem_Raw memory (filled without the GIL). */
struct buf {
  char *data;
  size_t len, cap;
};

struct sockopt {
  int level, name, value;
};

/* A socket libcurl wants watched, and for what (poll events). */
struct watch {
  curl_socket_t fd;
  short events;
};

typedef struct {
  PyObject_HEAD
  CURL *easy;             /* NULL once closed */
  CURLM *multi;
  curl_socket_t sock;     /* the kept-alive connection's descriptor after a request; -1: none */
  bool busy;              /* a post is running (its GIL released) */
  bool https;             /* connected when TLS is up (APPCONNECT_TIME), not TCP (CONNECT_TIME) */
  bool signing;           /* the last request set AWS_SIGV4/USERPWD: cleared for the next without */
  bool out_of_memory;     /* a buffer could not grow during the request */
  struct sockopt *opts;   /* botocore's socket options, applied to each new socket */
  size_t n_opts;
  struct watch watches[MAX_SOCKETS];
  int n_watches;
  double timer_at;        /* when libcurl wants socket_action(TIMEOUT) (monotonic s); < 0: never */
  struct buf head, body;  /* the answer's header lines, its body */
  char errbuf[CURL_ERROR_SIZE];
} Link;

static double now_s(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts); /* time.monotonic()'s clock on Linux */
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- buffers ------------------------------------------------------------------------- */

static bool buf_append(struct buf *b, const char *data, size_t n)
{
  if (n > b->cap - b->len) {
    size_t cap = b->cap ? b->cap : 1024;
    while (cap - b->len < n) {
      if (cap > ((size_t)-1) / 2)
        return false;
      cap *= 2;
    }
    char *grown = PyMem_RawRealloc(b->data, cap);
    if (!grown)
      return false;
    b->data = grown;
    b->cap = cap;
  }
  memcpy(b->data + b->len, data, n);
  b->len += n;
  return true;
}

/* Empties b; a large answer's room is given back (nothing of a batch stays while idle). */
static void buf_reset(struct buf *b)
{
  b->len = 0;
  if (b->cap > KEEP_BYTES) {
    PyMem_RawFree(b->data);
    b->data = NULL;
    b->cap = 0;
  }
}

static void buf_free(struct buf *b)
{
  PyMem_RawFree(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

/* ---- libcurl's callbacks (no GIL: C only) ---------------------------------------------- */

static size_t on_body(char *data, size_t size, size_t n, void *userdata)
{
  Link *l = userdata;
  if (!buf_append(&l->body, data, size * n)) {
    l->out_of_memory = true;
    return 0; /* libcurl stops with CURLE_WRITE_ERROR; post raises MemoryError */
  }
  return size * n;
}

static size_t on_header(char *data, size_t size, size_t n, void *userdata)
{
  Link *l = userdata;
  if (!buf_append(&l->head, data, size * n)) {
    l->out_of_memory = true;
    return 0;
  }
  return size * n;
}

/* botocore's socket options (TCP_NODELAY, SO_KEEPALIVE...) on each new socket, as its
 * HTTP session sets them; a refused one fails the connect rather than going unnoticed. */
static int on_sockopt(void *clientp, curl_socket_t fd, curlsocktype purpose)
{
  Link *l = clientp;
  (void)purpose;
  for (size_t i = 0; i < l->n_opts; i++) {
    const struct sockopt *o = &l->opts[i];
    if (setsockopt(fd, o->level, o->name, &o->value, sizeof o->value) < 0)
      return CURL_SOCKOPT_ERROR;
  }
  return CURL_SOCKOPT_OK;
}

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *clientp, void *socketp)
{
  Link *l = clientp;
  (void)easy;
  (void)socketp;
  int i = 0;
  while (i < l->n_watches && l->watches[i].fd != fd)
    i++;
  if (what == CURL_POLL_REMOVE) {
    if (i < l->n_watches)
      l->watches[i] = l->watches[--l->n_watches];
    return 0;
  }
  if (i == l->n_watches) {
    if (i == MAX_SOCKETS)
      return -1; /* cannot happen with one connection; libcurl fails the transfer */
    l->n_watches++;
  }
  l->watches[i].fd = fd;
  l->watches[i].events =
      (short)(((what & CURL_POLL_IN) ? POLLIN | POLLPRI : 0) | ((what & CURL_POLL_OUT) ? POLLOUT : 0));
  return 0;
}

static int on_timer(CURLM *multi, long timeout_ms, void *clientp)
{
  Link *l = clientp;
  (void)multi;
  l->timer_at = timeout_ms < 0 ? -1.0 : now_s() + (double)timeout_ms / 1000.0;
  return 0;
}

/* ---- one exchange ------------------------------------------------------------------------ */

enum outcome { GOING, DONE, EXPIRED, MULTI_FAILED, WAIT_RAISED };
enum wait_kind { NO_WAIT, WAIT_CALL, WAIT_OBJECT };

/* A post's state while it runs. The GIL is released (ts) except inside ask_*(). */
struct exchange {
  double started, until, read_s;
  bool connecting;
  int running;
  CURLMcode mcode;
  enum wait_kind wait_kind;
  PyObject *wait, *check; /* borrowed / owned (check) */
  double deadline, slice_s;
  PyThreadState *ts;
};

/* Waits (until `until`, monotonic) for what libcurl asked for and lets it act. GOING
 * (libcurl acted; x->running says whether the transfer goes on), EXPIRED (nothing
 * happened by `until`) or MULTI_FAILED. */
static enum outcome step(Link *l, struct exchange *x, double until)
{
  double now = now_s();
  double end = (l->timer_at >= 0 && l->timer_at < until) ? l->timer_at : until;
  int wait_ms = end > now ? (int)ceil((end - now) * 1000.0) : 0;
  struct pollfd fds[MAX_SOCKETS];
  int n = l->n_watches;
  for (int i = 0; i < n; i++)
    fds[i] = (struct pollfd){.fd = l->watches[i].fd, .events = l->watches[i].events};
  int ready = poll(fds, (nfds_t)n, wait_ms); /* n == 0: a timer, or a name lookup on libcurl's thread */
  if (ready < 0 && errno != EINTR)
    ready = 0;
  if (ready > 0) {
    for (int i = 0; i < n; i++) {
      short r = fds[i].revents;
      if (!r)
        continue;
      int mask = ((r & (POLLIN | POLLPRI | POLLHUP)) ? CURL_CSELECT_IN : 0) | ((r & POLLOUT) ? CURL_CSELECT_OUT : 0) |
                 ((r & (POLLERR | POLLNVAL)) ? CURL_CSELECT_ERR : 0);
      if ((x->mcode = curl_multi_socket_action(l->multi, fds[i].fd, mask, &x->running)) != CURLM_OK)
        return MULTI_FAILED;
    }
    return GOING;
  }
  if (now_s() >= until)
    return EXPIRED;
  l->timer_at = -1.0;
  if ((x->mcode = curl_multi_socket_action(l->multi, CURL_SOCKET_TIMEOUT, 0, &x->running)) != CURLM_OK)
    return MULTI_FAILED;
  return GOING;
}

static bool writing(const Link *l)
{
  for (int i = 0; i < l->n_watches; i++)
    if (l->watches[i].events & POLLOUT)
      return true;
  return false;
}

static bool answer_started(const Link *l) { return l->head.len > 0 || l->body.len > 0; }

/* A new connection is up: the read timeout runs from that moment. */
static void note_connected(Link *l, struct exchange *x)
{
  double up_s = 0;
  curl_easy_getinfo(l->easy, l->https ? CURLINFO_APPCONNECT_TIME : CURLINFO_CONNECT_TIME, &up_s);
  if (up_s > 0) {
    x->connecting = false;
    x->until = x->started + up_s + x->read_s;
  }
}

/* wait(fd) under the GIL, once the request is written: its budget narrows the deadline.
 * fd is the connection's socket: ACTIVESOCKET where libcurl knows it mid-transfer (8.x,
 * which also watches the multi's own wakeup socket, one no answer makes readable), else
 * the one socket 7.88 watches then. */
static enum outcome ask_wait(Link *l, struct exchange *x)
{
  curl_socket_t fd = CURL_SOCKET_BAD;
  if (curl_easy_getinfo(l->easy, CURLINFO_ACTIVESOCKET, &fd) != CURLE_OK || fd == CURL_SOCKET_BAD)
    fd = l->n_watches ? l->watches[0].fd : CURL_SOCKET_BAD;
  PyEval_RestoreThread(x->ts);
  enum outcome out = GOING;
  PyObject *fd_obj = PyLong_FromLong((long)fd);
  PyObject *budget = fd_obj ? PyObject_CallOneArg(x->wait, fd_obj) : NULL;
  Py_XDECREF(fd_obj);
  if (!budget) {
    out = WAIT_RAISED;
  } else if (budget != Py_None) {
    double budget_s = PyFloat_AsDouble(budget);
    if (budget_s == -1.0 && PyErr_Occurred()) {
      out = WAIT_RAISED;
    } else if (!isnan(budget_s)) {
      double now = now_s();
      if (now + budget_s < x->until)
        x->until = now + (budget_s > 0.001 ? budget_s : 0.001);
    }
  }
  Py_XDECREF(budget);
  x->ts = PyEval_SaveThread();
  return out;
}

/* wait.check(expired) under the GIL after a slice without the answer. */
static enum outcome ask_check(struct exchange *x)
{
  PyEval_RestoreThread(x->ts);
  PyObject *result = PyObject_CallOneArg(x->check, now_s() >= x->deadline ? Py_True : Py_False);
  Py_XDECREF(result);
  x->ts = PyEval_SaveThread();
  if (!result)
    return WAIT_RAISED;
  return now_s() >= x->until ? EXPIRED : GOING; /* check let it go on, but our deadline passed */
}

/* The object form of wait: the answer awaited in slices, check() between them. */
static enum outcome wait_in_slices(Link *l, struct exchange *x)
{
  while (x->running && !answer_started(l)) {
    double slice_end = now_s() + x->slice_s;
    if (slice_end > x->until)
      slice_end = x->until;
    enum outcome out;
    do
      out = step(l, x, slice_end);
    while (out == GOING && x->running && !answer_started(l));
    if (out == EXPIRED)
      out = ask_check(x);
    if (out != GOING)
      return out;
  }
  return GOING;
}

/* The exchange from the first socket_action to the end of the answer (GIL released). */
static enum outcome drive(Link *l, struct exchange *x)
{
  enum outcome out = GOING;
  if ((x->mcode = curl_multi_add_handle(l->multi, l->easy)) != CURLM_OK)
    return MULTI_FAILED;
  if ((x->mcode = curl_multi_socket_action(l->multi, CURL_SOCKET_TIMEOUT, 0, &x->running)) != CURLM_OK)
    return MULTI_FAILED;
  if (x->wait_kind == WAIT_CALL) {
    while (out == GOING && x->running && writing(l))
      out = step(l, x, x->until);
    if (out == GOING && x->running)
      out = ask_wait(l, x);
  } else if (x->wait_kind == WAIT_OBJECT) {
    out = wait_in_slices(l, x);
  }
  while (out == GOING && x->running) {
    if (x->connecting)
      note_connected(l, x);
    out = step(l, x, x->until);
  }
  return out == GOING ? DONE : out;
}

/* ---- the Link type ------------------------------------------------------------------------ */

/* Closes the connection (the multi's cache) and frees both handles; safe to repeat. */
static void close_handles(Link *l)
{
  if (l->multi) {
    if (l->easy)
      curl_multi_remove_handle(l->multi, l->easy);
    curl_multi_cleanup(l->multi);
  }
  if (l->easy)
    curl_easy_cleanup(l->easy);
  l->easy = NULL;
  l->multi = NULL;
  l->sock = -1;
  l->n_watches = 0;
}

static void raise_curl(CURLcode code, const char *errbuf);

/* Error(code, message) for an option libcurl refused; -1. */
static int raise_setopt(CURLcode rc)
{
  raise_curl(rc, "");
  return -1;
}

/* botocore's socket options from a list of (level, optname, int value); -1 with
 * TypeError/ValueError set. The caller owns l->opts. */
static int parse_sockopts(Link *l, PyObject *options)
{
  PyObject *seq = PySequence_Fast(options, "Link: socket_options must be a list of (level, optname, value)");
  if (!seq)
    return -1;
  Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
  l->opts = PyMem_RawCalloc(n ? (size_t)n : 1, sizeof *l->opts);
  if (!l->opts) {
    Py_DECREF(seq);
    PyErr_NoMemory();
    return -1;
  }
  for (Py_ssize_t i = 0; i < n; i++) {
    PyObject *item = PySequence_Fast_GET_ITEM(seq, i);
    struct sockopt *o = &l->opts[i];
    if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 3 || !PyLong_Check(PyTuple_GET_ITEM(item, 0)) ||
        !PyLong_Check(PyTuple_GET_ITEM(item, 1)) || !PyLong_Check(PyTuple_GET_ITEM(item, 2))) {
      PyErr_Format(PyExc_TypeError, "Link: socket option %zd must be a tuple (level, optname, int value)", i);
      Py_DECREF(seq);
      return -1;
    }
    if (!PyArg_ParseTuple(item, "iii", &o->level, &o->name, &o->value)) { /* out of an int's range */
      Py_DECREF(seq);
      return -1;
    }
  }
  l->n_opts = (size_t)n;
  Py_DECREF(seq);
  return 0;
}

/* The TLS settings lean.py's _curl_tls reads from botocore's session, as libcurl options. */
static int set_tls(Link *l, PyObject *tls)
{
  const char *cafile = NULL, *cert = NULL, *key = NULL;
  int verify;
  if (!PyTuple_Check(tls) ||
      !PyArg_ParseTuple(tls, "zpzz;Link: tls is (cafile or None, verify, cert or None, key or None)", &cafile, &verify,
                        &cert, &key)) {
    if (!PyErr_Occurred())
      PyErr_SetString(PyExc_TypeError,
                      "Link: tls is None or a tuple (cafile or None, verify, cert or None, key or None)");
    return -1;
  }
  CURL *e = l->easy;
  CURLcode rc = curl_easy_setopt(e, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2); /* urllib3's minimum */
  if (rc == CURLE_OK && verify) {
    if (cafile)
      rc = curl_easy_setopt(e, CURLOPT_CAINFO, cafile);
    if (rc == CURLE_OK) /* that bundle only, as botocore's context (no system directory) */
      rc = curl_easy_setopt(e, CURLOPT_CAPATH, (char *)NULL);
    if (rc == CURLE_OK)
      rc = curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    if (rc == CURLE_OK)
      rc = curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
  } else if (rc == CURLE_OK) {
    rc = curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
    if (rc == CURLE_OK)
      rc = curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  if (rc == CURLE_OK && cert && *cert) {
    rc = curl_easy_setopt(e, CURLOPT_SSLCERT, cert);
    if (rc == CURLE_OK && key && *key)
      rc = curl_easy_setopt(e, CURLOPT_SSLKEY, key);
  }
  l->https = true;
  return rc == CURLE_OK ? 0 : raise_setopt(rc);
}

/* The options every request of this Link shares. */
static CURLcode set_common(Link *l, long connect_ms)
{
  CURL *e = l->easy;
  CURLcode rc = CURLE_OK;
#define SET(option, value)                          \
  if (rc == CURLE_OK)                               \
  rc = curl_easy_setopt(e, option, value)
  SET(CURLOPT_NOSIGNAL, 1L);    /* server threads: no SIGALRM around name lookups */
  SET(CURLOPT_PROXY, "");       /* never a proxy from the environment: proxied endpoints go through botocore */
  SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
  SET(CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
  SET(CURLOPT_TCP_NODELAY, 0L); /* botocore's socket options decide (on_sockopt) */
  SET(CURLOPT_SOCKOPTFUNCTION, on_sockopt);
  SET(CURLOPT_SOCKOPTDATA, l);
  SET(CURLOPT_WRITEFUNCTION, on_body);
  SET(CURLOPT_WRITEDATA, l);
  SET(CURLOPT_HEADERFUNCTION, on_header);
  SET(CURLOPT_HEADERDATA, l);
  SET(CURLOPT_ERRORBUFFER, l->errbuf);
  SET(CURLOPT_POST, 1L);
#undef SET
  if (rc != CURLE_OK)
    return rc;
  CURLMcode mrc = curl_multi_setopt(l->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
  if (mrc == CURLM_OK)
    mrc = curl_multi_setopt(l->multi, CURLMOPT_SOCKETDATA, l);
  if (mrc == CURLM_OK)
    mrc = curl_multi_setopt(l->multi, CURLMOPT_TIMERFUNCTION, on_timer);
  if (mrc == CURLM_OK)
    mrc = curl_multi_setopt(l->multi, CURLMOPT_TIMERDATA, l);
  if (mrc == CURLM_OK)
    mrc = curl_multi_setopt(l->multi, CURLMOPT_MAXCONNECTS, 1L);
  return mrc == CURLM_OK ? CURLE_OK : CURLE_FAILED_INIT;
}

static void link_dealloc(Link *l)
{
  close_handles(l);
  PyMem_RawFree(l->opts);
  buf_free(&l->head);
  buf_free(&l->body);
  Py_TYPE(l)->tp_free((PyObject *)l);
}

static PyObject *link_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
  static char *kwlist[] = {"connect_timeout_ms", "socket_options", "tls", "user_agent", NULL};
  long connect_ms;
  PyObject *options, *tls = Py_None;
  const char *user_agent = NULL;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "lO|Oz:Link", kwlist, &connect_ms, &options, &tls, &user_agent))
    return NULL;
  if (connect_ms < 1) {
    PyErr_Format(PyExc_ValueError, "Link: connect_timeout_ms must be 1 or more, not %ld", connect_ms);
    return NULL;
  }
  Link *l = (Link *)type->tp_alloc(type, 0);
  if (!l)
    return NULL;
  l->sock = -1;
  l->timer_at = -1.0;
  if (parse_sockopts(l, options) < 0) {
    Py_DECREF(l);
    return NULL;
  }
  l->easy = curl_easy_init();
  l->multi = curl_multi_init();
  if (!l->easy || !l->multi) {
    Py_DECREF(l);
    PyErr_SetString(PyExc_MemoryError, "Link: libcurl could not make its handles");
    return NULL;
  }
  CURLcode rc = set_common(l, connect_ms);
  /* Sent unless a header line names one; libcurl's signing (sigv4) leaves it unsigned,
   * as botocore does, where a header line would be signed. */
  if (rc == CURLE_OK && user_agent)
    rc = curl_easy_setopt(l->easy, CURLOPT_USERAGENT, user_agent);
  if (rc != CURLE_OK) {
    raise_setopt(rc);
    Py_DECREF(l);
    return NULL;
  }
  if (tls != Py_None && set_tls(l, tls) < 0) {
    Py_DECREF(l);
    return NULL;
  }
  return (PyObject *)l;
}

/* ---- post ----------------------------------------------------------------------------------- */

/* A str's bytes for libcurl (borrowed from s, NUL-terminated): ASCII only, no NUL, CR
 * or LF (a header line cannot smuggle another). NULL with ValueError/TypeError set. */
static const char *ascii_of(PyObject *s, const char *what)
{
  if (!PyUnicode_Check(s)) {
    PyErr_Format(PyExc_TypeError, "Link.post: %s must be str, not %.100s", what, Py_TYPE(s)->tp_name);
    return NULL;
  }
  if (!PyUnicode_IS_ASCII(s)) {
    PyErr_Format(PyExc_ValueError, "Link.post: %s must be ASCII (percent-encode or drop other characters)", what);
    return NULL;
  }
  Py_ssize_t n;
  const char *text = PyUnicode_AsUTF8AndSize(s, &n);
  if (text && (strcspn(text, "\r\n") != (size_t)n)) {
    PyErr_Format(PyExc_ValueError, "Link.post: %s must not contain NUL, CR or LF", what);
    return NULL;
  }
  return text;
}

/* The header lines as libcurl's list (the caller frees it); NULL with an error set. An
 * empty list is a valid NULL: *failed says which. */
static struct curl_slist *header_list(PyObject *lines, bool *failed)
{
  *failed = true;
  PyObject *seq = PySequence_Fast(lines, "Link.post: header_lines must be a list of str");
  if (!seq)
    return NULL;
  struct curl_slist *list = NULL;
  Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
  for (Py_ssize_t i = 0; i < n; i++) {
    const char *line = ascii_of(PySequence_Fast_GET_ITEM(seq, i), "a header line");
    struct curl_slist *grown = line ? curl_slist_append(list, line) : NULL;
    if (!grown) {
      if (line)
        PyErr_NoMemory();
      curl_slist_free_all(list);
      Py_DECREF(seq);
      return NULL;
    }
    list = grown;
  }
  Py_DECREF(seq);
  *failed = false;
  return list;
}

static int seconds_of(PyObject *o, const char *what, double *out)
{
  *out = PyFloat_AsDouble(o);
  if (*out == -1.0 && PyErr_Occurred())
    return -1;
  if (isnan(*out) || *out < 0) {
    PyErr_Format(PyExc_ValueError, "Link.post: %s must be seconds >= 0", what);
    return -1;
  }
  return 0;
}

/* obj.name as a new reference in *out, NULL if it has none; -1 on another error. */
static int optional_attr(PyObject *obj, PyObject *name, PyObject **out)
{
  *out = PyObject_GetAttr(obj, name);
  if (*out)
    return 0;
  if (!PyErr_ExceptionMatches(PyExc_AttributeError))
    return -1;
  PyErr_Clear();
  return 0;
}

/* Reads wait's form into x (x->check: a new reference); -1 with TypeError set. */
static int wait_form(PyObject *wait, struct exchange *x)
{
  x->wait = wait;
  x->wait_kind = NO_WAIT;
  if (wait == Py_None)
    return 0;
  PyObject *deadline = NULL;
  if (!PyFunction_Check(wait) && !PyMethod_Check(wait) && optional_attr(wait, str_deadline, &deadline) < 0)
    return -1;
  if (!deadline) {
    if (!PyCallable_Check(wait)) {
      PyErr_SetString(PyExc_TypeError, "Link.post: wait must be None, a callable wait(fd) or an object with "
                                       "deadline and check(expired)");
      return -1;
    }
    x->wait_kind = WAIT_CALL;
    return 0;
  }
  x->deadline = PyFloat_AsDouble(deadline);
  Py_DECREF(deadline);
  if (x->deadline == -1.0 && PyErr_Occurred())
    return -1;
  if (isnan(x->deadline)) {
    PyErr_SetString(PyExc_ValueError, "Link.post: wait.deadline must be a number (time.monotonic() seconds)");
    return -1;
  }
  x->slice_s = DEFAULT_SLICE_S;
  PyObject *slice;
  if (optional_attr(wait, str_slice_s, &slice) < 0)
    return -1;
  if (slice) {
    x->slice_s = PyFloat_AsDouble(slice);
    Py_DECREF(slice);
    if (x->slice_s == -1.0 && PyErr_Occurred())
      return -1;
    if (!(x->slice_s >= 0.001)) {
      PyErr_SetString(PyExc_ValueError, "Link.post: wait.slice_s must be at least 0.001 seconds");
      return -1;
    }
  }
  x->check = PyObject_GetAttr(wait, str_check);
  if (!x->check)
    return -1;
  if (!PyCallable_Check(x->check)) {
    Py_CLEAR(x->check);
    PyErr_SetString(PyExc_TypeError, "Link.post: wait.check must be callable: check(expired)");
    return -1;
  }
  x->wait_kind = WAIT_OBJECT;
  return 0;
}

/* The object form's deadline bounds the whole exchange, the read timeout too. */
static void apply_deadline(struct exchange *x)
{
  if (x->wait_kind == WAIT_OBJECT && x->deadline < x->until)
    x->until = x->deadline;
}

/* AWS_SIGV4 and USERPWD for this request, or cleared after a signed one. */
static CURLcode set_signing(Link *l, const char *sigv4, const char *userpwd)
{
  CURLcode rc = CURLE_OK;
  if (sigv4) {
    rc = curl_easy_setopt(l->easy, CURLOPT_AWS_SIGV4, sigv4);
    if (rc == CURLE_OK)
      rc = curl_easy_setopt(l->easy, CURLOPT_USERPWD, userpwd);
    l->signing = true;
  } else if (l->signing) {
    rc = curl_easy_setopt(l->easy, CURLOPT_AWS_SIGV4, (char *)NULL);
    if (rc == CURLE_OK)
      rc = curl_easy_setopt(l->easy, CURLOPT_USERPWD, (char *)NULL);
    if (rc == CURLE_OK) /* AWS_SIGV4 chose the auth method: back to none asked for */
      rc = curl_easy_setopt(l->easy, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
    l->signing = false;
  }
  return rc;
}

/* The finished transfer's result code (CURLE_OK when it succeeded). */
static CURLcode transfer_result(Link *l)
{
  int left;
  CURLMsg *msg;
  CURLcode result = CURLE_OK;
  while ((msg = curl_multi_info_read(l->multi, &left)))
    if (msg->msg == CURLMSG_DONE && msg->easy_handle == l->easy)
      result = msg->data.result;
  return result;
}

/* (status, raw header bytes, content_type or None, body bytes): a new reference. */
static PyObject *answer_of(Link *l)
{
  long status = 0;
  char *ctype = NULL;
  curl_easy_getinfo(l->easy, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_getinfo(l->easy, CURLINFO_CONTENT_TYPE, &ctype);
  PyObject *ctype_obj = ctype ? PyUnicode_DecodeLatin1(ctype, (Py_ssize_t)strlen(ctype), NULL) : Py_NewRef(Py_None);
  if (!ctype_obj)
    return NULL;
  return Py_BuildValue("(ly#Ny#)", status, l->head.data ? l->head.data : "", (Py_ssize_t)l->head.len, ctype_obj,
                       l->body.data ? l->body.data : "", (Py_ssize_t)l->body.len);
}

static void raise_curl(CURLcode code, const char *errbuf)
{
  PyObject *args = Py_BuildValue("(is)", (int)code, *errbuf ? errbuf : curl_easy_strerror(code));
  if (args) {
    PyErr_SetObject(LinkError, args);
    Py_DECREF(args);
  }
}

/* Raises what ended the exchange, or returns the answer. Called with the GIL. */
static PyObject *finish(Link *l, struct exchange *x, enum outcome out)
{
  if (out == WAIT_RAISED)
    return NULL; /* wait's own exception */
  if (l->out_of_memory)
    return PyErr_NoMemory();
  if (out == EXPIRED) {
    PyObject *args = Py_BuildValue("(O)", x->connecting ? Py_False : Py_True);
    if (args) {
      PyErr_SetObject(LinkTimeout, args);
      Py_DECREF(args);
    }
    return NULL;
  }
  if (out == MULTI_FAILED) {
    PyObject *args = Py_BuildValue("(is)", -(int)x->mcode, curl_multi_strerror(x->mcode));
    if (args) {
      PyErr_SetObject(LinkError, args);
      Py_DECREF(args);
    }
    return NULL;
  }
  CURLcode result = transfer_result(l);
  if (result != CURLE_OK) {
    raise_curl(result, l->errbuf);
    return NULL;
  }
  PyObject *answer = answer_of(l);
  if (answer) {
    curl_socket_t fd = CURL_SOCKET_BAD; /* libcurl closed it (Connection: close): -1 */
    curl_easy_getinfo(l->easy, CURLINFO_ACTIVESOCKET, &fd);
    l->sock = fd;
  }
  return answer;
}

PyDoc_STRVAR(post_doc,
             "post(url, body, header_lines, connect_s, read_s, wait=None, sigv4=None, userpwd=None)\n"
             "-> (status, raw header bytes, content_type or None, body bytes)\n\n"
             "POSTs body with the given header lines ('Name: value'; 'Name;' an empty value, 'Name:' none)\n"
             "and reads the whole answer, the GIL released. Raises Error(code, message) for libcurl's\n"
             "failures, Timeout(connected) for the deadline, or what wait raised; each closes the Link.\n"
             "sigv4, userpwd: libcurl signs the request (CURLOPT_AWS_SIGV4, CURLOPT_USERPWD).");

static PyObject *link_post(Link *l, PyObject *args, PyObject *kwargs)
{
  static char *kwlist[] = {"url", "body", "header_lines", "connect_s", "read_s", "wait", "sigv4", "userpwd", NULL};
  PyObject *url_obj, *lines, *connect_obj, *read_obj, *wait = Py_None, *sigv4_obj = Py_None, *userpwd_obj = Py_None;
  Py_buffer body;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "Oy*OOO|OOO:post", kwlist, &url_obj, &body, &lines, &connect_obj,
                                   &read_obj, &wait, &sigv4_obj, &userpwd_obj))
    return NULL;
  struct exchange x = {.wait_kind = NO_WAIT};
  const char *url, *sigv4 = NULL, *userpwd = NULL;
  double connect_s;
  bool bad_lines = false;
  struct curl_slist *headers = NULL;
  if (l->busy) {
    PyErr_SetString(PyExc_RuntimeError, "Link.post: this Link is in use by another thread (take one per thread "
                                        "from the pool)");
    goto refused;
  }
  if (!l->easy) {
    PyErr_SetString(PyExc_ValueError, "Link.post: the Link is closed (make a new one)");
    goto refused;
  }
  if (!(url = ascii_of(url_obj, "url")) || seconds_of(connect_obj, "connect_s", &connect_s) < 0 ||
      seconds_of(read_obj, "read_s", &x.read_s) < 0)
    goto refused;
  if ((sigv4_obj != Py_None && !(sigv4 = ascii_of(sigv4_obj, "sigv4"))) ||
      (userpwd_obj != Py_None && !(userpwd = ascii_of(userpwd_obj, "userpwd"))))
    goto refused;
  if (!sigv4 != !userpwd) {
    PyErr_SetString(PyExc_ValueError, "Link.post: sigv4 and userpwd go together (both or neither)");
    goto refused;
  }
  headers = header_list(lines, &bad_lines);
  if (bad_lines || wait_form(wait, &x) < 0)
    goto refused;

  CURLcode rc = curl_easy_setopt(l->easy, CURLOPT_URL, url);
  if (rc == CURLE_OK)
    rc = curl_easy_setopt(l->easy, CURLOPT_HTTPHEADER, headers);
  if (rc == CURLE_OK)
    rc = curl_easy_setopt(l->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body.len);
  if (rc == CURLE_OK) /* not copied: the buffer is held until the answer is read */
    rc = curl_easy_setopt(l->easy, CURLOPT_POSTFIELDS, body.buf);
  if (rc == CURLE_OK)
    rc = set_signing(l, sigv4, userpwd);
  if (rc != CURLE_OK) {
    raise_curl(rc, "");
    goto refused;
  }
  l->busy = true;
  l->errbuf[0] = '\0';
  l->out_of_memory = false;
  /* watches and timer_at carry over: they are libcurl's view of this multi, which it
   * reports only when it changes (libcurl 8 keeps sockets watched between transfers). */
  x.connecting = l->sock < 0;
  x.started = now_s();
  x.until = x.started + x.read_s + (x.connecting ? connect_s : 0);
  apply_deadline(&x);

  x.ts = PyEval_SaveThread();
  enum outcome out = drive(l, &x);
  PyEval_RestoreThread(x.ts);

  PyObject *answer = finish(l, &x, out);
  curl_multi_remove_handle(l->multi, l->easy); /* the connection goes back to the multi's cache */
  curl_easy_setopt(l->easy, CURLOPT_HTTPHEADER, (struct curl_slist *)NULL);
  curl_easy_setopt(l->easy, CURLOPT_POSTFIELDS, ""); /* no pointer into a released body */
  curl_easy_setopt(l->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
  if (!answer)
    close_handles(l); /* a late answer may still come on that connection */
  buf_reset(&l->head);
  buf_reset(&l->body);
  l->busy = false;
  curl_slist_free_all(headers);
  Py_XDECREF(x.check);
  PyBuffer_Release(&body);
  return answer;

refused:
  curl_slist_free_all(headers);
  Py_XDECREF(x.check);
  PyBuffer_Release(&body);
  return NULL;
}

static PyObject *link_is_open(Link *l, PyObject *unused)
{
  (void)unused;
  return PyBool_FromLong(l->easy && l->sock >= 0);
}

PyDoc_STRVAR(dropped_doc, "dropped() -> bool: the idle kept-alive socket has something to read: the server closed "
                          "it (or sent junk), so it must not carry the next request.");

static PyObject *link_dropped(Link *l, PyObject *unused)
{
  (void)unused;
  if (!l->easy || l->sock < 0 || l->busy)
    Py_RETURN_FALSE;
  struct pollfd fd = {.fd = l->sock, .events = POLLIN};
  return PyBool_FromLong(poll(&fd, 1, 0) > 0);
}

PyDoc_STRVAR(close_doc, "close(): closes the connection and frees the handles (again: nothing).");

static PyObject *link_close(Link *l, PyObject *unused)
{
  (void)unused;
  if (l->busy) {
    PyErr_SetString(PyExc_RuntimeError, "Link.close: a post is running on this Link in another thread");
    return NULL;
  }
  close_handles(l);
  Py_RETURN_NONE;
}

static PyObject *link_sock(Link *l, void *closure)
{
  (void)closure;
  return PyLong_FromLong(l->easy ? (long)l->sock : -1L);
}

static PyObject *link_buffered(Link *l, void *closure)
{
  (void)closure;
  return PyLong_FromSize_t(l->head.cap + l->body.cap);
}

static PyMethodDef link_methods[] = {
    {"post", (PyCFunction)(void (*)(void))link_post, METH_VARARGS | METH_KEYWORDS, post_doc},
    {"is_open", (PyCFunction)link_is_open, METH_NOARGS, "is_open() -> bool: a kept-alive connection is there."},
    {"dropped", (PyCFunction)link_dropped, METH_NOARGS, dropped_doc},
    {"close", (PyCFunction)link_close, METH_NOARGS, close_doc},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef link_getset[] = {
    {"sock", (getter)link_sock, NULL, "the kept-alive connection's descriptor, -1 if none", NULL},
    {"buffered", (getter)link_buffered, NULL, "bytes of answer buffers kept while idle", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyTypeObject LinkType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "sqlml._curl_link.Link",
    .tp_basicsize = sizeof(Link),
    .tp_dealloc = (destructor)link_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = PyDoc_STR("Link(connect_timeout_ms, socket_options, tls=None, user_agent=None): one kept-alive\n"
                        "HTTP/1.1 connection (libcurl). socket_options: [(level, optname, int value)]; tls: None\n"
                        "(http) or (cafile or None, verify, client cert or None, key or None)."),
    .tp_methods = link_methods,
    .tp_getset = link_getset,
    .tp_new = link_new,
};

static struct PyModuleDef curl_link_module = {
    PyModuleDef_HEAD_INIT, "sqlml._curl_link", "One kept-alive libcurl connection per Link (native/curl_link.c).", -1,
    NULL, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__curl_link(void)
{
  /* Once, under the GIL, before any handle: libcurl's global init is not thread-safe. */
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    PyErr_SetString(PyExc_ImportError, "sqlml._curl_link: curl_global_init failed");
    return NULL;
  }
  if (PyType_Ready(&LinkType) < 0)
    return NULL;
  str_deadline = PyUnicode_InternFromString("deadline");
  str_check = PyUnicode_InternFromString("check");
  str_slice_s = PyUnicode_InternFromString("slice_s");
  if (!str_deadline || !str_check || !str_slice_s)
    return NULL;
  PyObject *module = PyModule_Create(&curl_link_module);
  if (!module)
    return NULL;
  LinkError = PyErr_NewExceptionWithDoc("sqlml._curl_link.Error", "libcurl's failure: args (code, message).", NULL,
                                        NULL);
  LinkTimeout = PyErr_NewExceptionWithDoc(
      "sqlml._curl_link.Timeout", "The exchange's deadline passed: args (connected,), whether the connection was up.",
      NULL, NULL);
  if (!LinkError || !LinkTimeout || PyModule_AddObjectRef(module, "Error", LinkError) < 0 ||
      PyModule_AddObjectRef(module, "Timeout", LinkTimeout) < 0 ||
      PyModule_AddObjectRef(module, "Link", (PyObject *)&LinkType) < 0 ||
      PyModule_AddStringConstant(module, "libcurl_version", curl_version_info(CURLVERSION_NOW)->version) < 0) {
    Py_DECREF(module);
    return NULL;
  }
  return module;
}
