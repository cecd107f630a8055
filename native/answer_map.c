/*
 * answer_map: the sqlml._answer_map extension module, the storage of the result cache
 * (python/sqlml/engine/cache.py keeps the policy: generations, TTL, bounds, locking).
 *
 * AnswerMap is an insertion-ordered map from str to answer, compact where a dict of
 * str keys to answer objects costs some 150 bytes an entry (the key str, the answer
 * object, the dict's slot). Per entry, 32 bytes in an append-only array of chunks (insertion
 * order; a removed or moved entry is left dead and the array is compacted in place once
 * the dead reach half the live), plus a 4-byte slot in an open-addressing table of
 * entry numbers (linear probing, at most half full, deletion by backward shift: no
 * tombstones in the table). An entry has AREA bytes for its key's characters (their
 * PEP 393 code units: exact, any str) followed by its answer: a float as a double, a
 * str as its code units, anything else as a strong reference; a key or a str that does
 * not fit goes to a block of its own and the area holds a pointer to it. A read makes
 * the answer's object again. (A 12-byte key and a 9-character answer, the usual
 * SageMaker row, fit together.) Chunks, not one array grown by realloc: growing never
 * holds two copies of the entries.
 *
 * The chunks, and a table of 64 KB or more, are mapped pages of their own, not malloc's:
 * the cache is filled from the dispatcher's threads, and what they malloc lands in
 * their own malloc arenas, each of which may keep megabytes of freed memory resident
 * after sqlml_cache_clear() (native/pyhost.c, malloc thresholds). Unmapped, they go
 * back to the system when freed, and a page is resident only once written.
 *
 * Lookups hash with the key's own str hash (keyed SipHash: a user cannot craft keys
 * that collide) and compare the whole key on a hash match: a key never finds another
 * key's answer.
 *
 * Locking: the caller serializes (the cache's lock, and the GIL throughout: nothing
 * here releases it). A call made while another is running on the same map (from a
 * finalizer run by a release inside it, or a thread when the caller did not lock)
 * raises RuntimeError instead of touching a half-changed table.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#define AREA 22
#define CHUNK_SHIFT 11 /* 2048 entries, 64 KB a chunk */
#define CHUNK_ENTRIES ((size_t)1 << CHUNK_SHIFT)
#define MIN_SLOTS 8
#define MAX_ENTRIES ((size_t)UINT32_MAX - 1) /* a slot holds an entry's number + 1 */

enum answer_kind { DEAD = 0, A_FLOAT, A_TEXT_INLINE, A_TEXT_HEAP, A_OBJECT };
#define KEY_HEAP 0x80u /* flags: the area starts with a pointer to the key's block */

/* A str's code units, kept outside the entry. */
struct text {
  size_t len; /* bytes */
  char bytes[];
};

struct entry {
  uint32_t hash;    /* the low half of the key's str hash */
  uint32_t key_len; /* bytes of the key's code units */
  uint8_t flags;    /* bits 0-2: answer_kind; 3-4: key's width code; 5-6: a text answer's; KEY_HEAP */
  uint8_t text_len; /* A_TEXT_INLINE: bytes */
  char area[AREA];  /* the key (or a pointer to it), then the answer; pointers and doubles memcpy'd */
};
_Static_assert(sizeof(struct entry) == 32, "answer map entry: keep it at 32 bytes");

typedef struct {
  PyObject_HEAD
  struct entry **chunks;
  size_t n_chunks, chunks_cap; /* chunks allocated; room in the pointer array */
  size_t head;                 /* every entry before it is dead */
  size_t end;                  /* entries [0, end) used */
  size_t live;
  uint32_t *slots; /* an entry's number + 1; 0: empty */
  size_t n_slots;  /* a power of two, or 0 before the first entry */
  size_t heap_bytes;
  int busy;
} AnswerMap;

/* A key as looked up: borrowed from its str. */
struct keyref {
  const char *data;
  size_t len;
  unsigned width;
  uint32_t hash;
};

static inline struct entry *entry_at(const AnswerMap *m, size_t i)
{
  return &m->chunks[i >> CHUNK_SHIFT][i & (CHUNK_ENTRIES - 1)];
}

static inline unsigned kind_of(const struct entry *e) { return e->flags & 7u; }
static inline unsigned key_width(const struct entry *e) { return (e->flags >> 3) & 3u; }
static inline unsigned text_width(const struct entry *e) { return (e->flags >> 5) & 3u; }

static inline const char *key_bytes(const struct entry *e)
{
  if (!(e->flags & KEY_HEAP))
    return e->area;
  const char *p;
  memcpy(&p, e->area, sizeof p);
  return p;
}

/* Where the answer starts in the area, and the room it has there. */
static inline size_t key_room(const struct entry *e) { return (e->flags & KEY_HEAP) ? sizeof(char *) : e->key_len; }
static inline char *answer_at(struct entry *e) { return e->area + key_room(e); }
static inline const char *answer_at_c(const struct entry *e) { return e->area + key_room(e); }

static inline void *answer_ptr(const struct entry *e)
{
  void *p;
  memcpy(&p, answer_at_c(e), sizeof p);
  return p;
}

/* PEP 393 kinds 1, 2, 4 as 0, 1, 2. */
static inline unsigned width_code(int kind) { return (unsigned)kind >> 1; }

static int str_ready(PyObject *s)
{
#if PY_VERSION_HEX < 0x030C0000
  return PyUnicode_READY(s);
#else
  (void)s;
  return 0;
#endif
}

/* Fills k from key (borrowed: valid while key lives); -1 with an exception set. */
static int key_of(PyObject *key, struct keyref *k)
{
  if (!PyUnicode_CheckExact(key)) {
    PyErr_Format(PyExc_TypeError, "AnswerMap: keys are str, not %.100s", Py_TYPE(key)->tp_name);
    return -1;
  }
  if (str_ready(key) < 0)
    return -1;
  Py_hash_t h = PyObject_Hash(key);
  if (h == -1)
    return -1;
  int kind = PyUnicode_KIND(key);
  k->data = PyUnicode_DATA(key);
  k->len = (size_t)PyUnicode_GET_LENGTH(key) * (size_t)kind;
  k->width = width_code(kind);
  k->hash = (uint32_t)(Py_uhash_t)h;
  if (k->len > UINT32_MAX) {
    PyErr_SetString(PyExc_OverflowError, "AnswerMap: a key of 4 GiB or more cannot be stored");
    return -1;
  }
  return 0;
}

static inline bool same_key(const struct entry *e, const struct keyref *k)
{
  return e->hash == k->hash && e->key_len == k->len && key_width(e) == k->width &&
         memcmp(key_bytes(e), k->data, k->len) == 0;
}

/* ---- memory -------------------------------------------------------------------------- */

#define MAPPED_MIN ((size_t)65536)

/* n zeroed bytes: mapped pages from MAPPED_MIN bytes on, else malloc's. NULL when out of
 * memory. The caller owns them; pages_free(p, n) with the same n gives them back. */
static void *pages_alloc(size_t n)
{
  if (n < MAPPED_MIN)
    return PyMem_RawCalloc(1, n);
  void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? NULL : p;
}

static void pages_free(void *p, size_t n)
{
  if (!p)
    return;
  if (n < MAPPED_MIN)
    PyMem_RawFree(p);
  else
    munmap(p, n);
}

#define CHUNK_BYTES (CHUNK_ENTRIES * sizeof(struct entry))
_Static_assert(CHUNK_ENTRIES * 32 >= 65536, "answer map: a chunk is mapped pages of its own");

/* ---- the slot table ------------------------------------------------------------------ */

/* The position of k's slot, or of the empty slot where it would go (n_slots > 0). */
static size_t probe(const AnswerMap *m, const struct keyref *k, bool *found)
{
  size_t mask = m->n_slots - 1;
  for (size_t i = k->hash & mask;; i = (i + 1) & mask) {
    uint32_t s = m->slots[i];
    if (!s) {
      *found = false;
      return i;
    }
    if (same_key(entry_at(m, s - 1), k)) {
      *found = true;
      return i;
    }
  }
}

/* A hint, nothing more: for the next keys of a bulk call, the slot each would start
 * its probe at and the entry that slot names are asked into the CPU's cache, all at
 * once, so that the probes that follow find them there instead of waiting on memory one
 * key after another (a table of a million entries is far larger than the caches). The
 * keys' str hashes are computed here, and kept by each str for the probe; anything that
 * is not a str is left for the probe to refuse. Changes nothing. */
#define PREFETCH_GROUP 16

static void prefetch_keys(const AnswerMap *m, PyObject *const *keys, Py_ssize_t n)
{
  if (!m->n_slots || n <= 0)
    return;
  size_t mask = m->n_slots - 1, home[PREFETCH_GROUP];
  if (n > PREFETCH_GROUP)
    n = PREFETCH_GROUP;
  for (Py_ssize_t j = 0; j < n; j++) {
    home[j] = SIZE_MAX;
    if (!PyUnicode_CheckExact(keys[j]))
      continue;
    Py_hash_t h = PyObject_Hash(keys[j]);
    if (h == -1) {
      PyErr_Clear(); /* the probe hashes it again and reports it */
      continue;
    }
    home[j] = (uint32_t)(Py_uhash_t)h & mask;
    __builtin_prefetch(&m->slots[home[j]]);
  }
  for (Py_ssize_t j = 0; j < n; j++) {
    if (home[j] == SIZE_MAX)
      continue;
    uint32_t s = m->slots[home[j]];
    if (s)
      __builtin_prefetch(entry_at(m, s - 1));
  }
}

/* The position of the slot holding entry number i (it must be live). */
static size_t slot_of_entry(const AnswerMap *m, size_t i)
{
  size_t mask = m->n_slots - 1;
  size_t pos = entry_at(m, i)->hash & mask;
  while (m->slots[pos] != i + 1)
    pos = (pos + 1) & mask;
  return pos;
}

/* Empties slot pos, moving back the entries after it that may use it (no tombstones). */
static void slot_remove(AnswerMap *m, size_t pos)
{
  size_t mask = m->n_slots - 1;
  for (size_t j = (pos + 1) & mask;; j = (j + 1) & mask) {
    uint32_t s = m->slots[j];
    if (!s)
      break;
    size_t home = entry_at(m, s - 1)->hash & mask;
    if (((j - home) & mask) >= ((j - pos) & mask)) { /* pos lies on its probe path */
      m->slots[pos] = s;
      pos = j;
    }
  }
  m->slots[pos] = 0;
}

/* A table of n slots (a power of two) for the live entries, in place of the old one:
 * both exist only while it is filled. -1 with MemoryError. */
static int rebuild_slots(AnswerMap *m, size_t n)
{
  uint32_t *slots = pages_alloc(n * sizeof *slots);
  if (!slots) {
    PyErr_NoMemory();
    return -1;
  }
  size_t mask = n - 1;
  for (size_t i = m->head; i < m->end; i++) {
    const struct entry *e = entry_at(m, i);
    if (kind_of(e) == DEAD)
      continue;
    size_t pos = e->hash & mask;
    while (slots[pos])
      pos = (pos + 1) & mask;
    slots[pos] = (uint32_t)(i + 1);
  }
  pages_free(m->slots, m->n_slots * sizeof *m->slots);
  m->slots = slots;
  m->n_slots = n;
  return 0;
}

/* The smallest table at most half full with `live` entries. */
static size_t slots_for(size_t live)
{
  size_t n = MIN_SLOTS;
  while (n < 2 * live)
    n *= 2;
  return n;
}

/* ---- entries ------------------------------------------------------------------------- */

/* Releases what e owns besides its key (the answer's block or reference). */
static void release_answer(AnswerMap *m, struct entry *e)
{
  unsigned kind = kind_of(e);
  if (kind == A_TEXT_HEAP) {
    struct text *t = answer_ptr(e);
    m->heap_bytes -= sizeof *t + t->len;
    PyMem_RawFree(t);
  } else if (kind == A_OBJECT) {
    Py_DECREF((PyObject *)answer_ptr(e));
  }
}

static void release_key(AnswerMap *m, struct entry *e)
{
  if (e->flags & KEY_HEAP) {
    m->heap_bytes -= e->key_len;
    PyMem_RawFree((void *)key_bytes(e));
  }
}

/* Gives *e (its key in place, its answer's bits free) value as its answer, taking a
 * reference for an object; moves the key out to a block of its own when the answer
 * needs the room. -1 with an exception set, *e unchanged (then the caller frees
 * nothing new). */
static int put_answer(AnswerMap *m, struct entry *e, PyObject *value)
{
  struct entry out = *e;
  out.flags &= (uint8_t) ~(7u | (3u << 5));
  size_t text_len = 0;
  int kind = 0;
  if (PyUnicode_CheckExact(value)) {
    if (str_ready(value) < 0)
      return -1;
    kind = PyUnicode_KIND(value);
    text_len = (size_t)PyUnicode_GET_LENGTH(value) * (size_t)kind;
  }
  bool inline_text = kind && text_len <= AREA - key_room(&out);
  size_t need = kind && inline_text ? text_len : sizeof(double); /* a double and a pointer: 8 bytes */
  char *moved_key = NULL;
  if (need > AREA - key_room(&out)) { /* only when the key is in the area: a pointer leaves 14 bytes */
    if (!(moved_key = PyMem_RawMalloc(out.key_len ? out.key_len : 1))) {
      PyErr_NoMemory();
      return -1;
    }
    memcpy(moved_key, out.area, out.key_len);
    memcpy(out.area, &moved_key, sizeof moved_key);
    out.flags |= KEY_HEAP;
    inline_text = kind && text_len <= AREA - key_room(&out);
  }
  char *at = answer_at(&out);
  if (PyFloat_CheckExact(value)) {
    double num = PyFloat_AS_DOUBLE(value);
    memcpy(at, &num, sizeof num);
    out.flags |= A_FLOAT;
  } else if (kind && inline_text) {
    memcpy(at, PyUnicode_DATA(value), text_len);
    out.text_len = (uint8_t)text_len;
    out.flags |= (uint8_t)(A_TEXT_INLINE | width_code(kind) << 5);
  } else if (kind) {
    struct text *t = PyMem_RawMalloc(sizeof *t + text_len);
    if (!t) {
      PyMem_RawFree(moved_key);
      PyErr_NoMemory();
      return -1;
    }
    t->len = text_len;
    memcpy(t->bytes, PyUnicode_DATA(value), text_len);
    m->heap_bytes += sizeof *t + text_len;
    memcpy(at, &t, sizeof t);
    out.flags |= (uint8_t)(A_TEXT_HEAP | width_code(kind) << 5);
  } else {
    Py_INCREF(value);
    memcpy(at, &value, sizeof value);
    out.flags |= A_OBJECT;
  }
  if (moved_key)
    m->heap_bytes += out.key_len;
  *e = out;
  return 0;
}

/* A new reference to e's answer, made again from what is kept. */
static PyObject *answer_of(const struct entry *e)
{
  switch (kind_of(e)) {
  case A_FLOAT: {
    double num;
    memcpy(&num, answer_at_c(e), sizeof num);
    return PyFloat_FromDouble(num);
  }
  case A_TEXT_INLINE: {
    int kind = 1 << text_width(e);
    return PyUnicode_FromKindAndData(kind, answer_at_c(e), e->text_len / kind);
  }
  case A_TEXT_HEAP: {
    const struct text *t = answer_ptr(e);
    int kind = 1 << text_width(e);
    return PyUnicode_FromKindAndData(kind, t->bytes, (Py_ssize_t)(t->len / (size_t)kind));
  }
  default:
    return Py_NewRef((PyObject *)answer_ptr(e));
  }
}

static size_t key_chars(const struct entry *e) { return e->key_len >> key_width(e); }

/* Marks entry i dead (its slot already gone or moved) and moves head past the dead. */
static void bury(AnswerMap *m, size_t i)
{
  entry_at(m, i)->flags &= ~7u;
  while (m->head < m->end && kind_of(entry_at(m, m->head)) == DEAD)
    m->head++;
}

static void free_storage(AnswerMap *m)
{
  for (size_t c = 0; c < m->n_chunks; c++)
    pages_free(m->chunks[c], CHUNK_BYTES);
  PyMem_RawFree(m->chunks);
  pages_free(m->slots, m->n_slots * sizeof *m->slots);
  m->chunks = NULL;
  m->slots = NULL;
  m->n_chunks = m->chunks_cap = m->n_slots = 0;
  m->head = m->end = m->live = 0;
}

/* Moves the live entries to the front, in order, frees the chunks left empty and makes
 * the table again (its size fitted to the live). -1 with MemoryError (nothing lost: the
 * old table still matches, the entries are only moved after it is made). */
static int compact(AnswerMap *m)
{
  if (m->live == 0) {
    free_storage(m);
    return 0;
  }
  size_t j = 0;
  for (size_t i = m->head; i < m->end; i++) {
    struct entry *e = entry_at(m, i);
    if (kind_of(e) == DEAD)
      continue;
    if (i != j)
      *entry_at(m, j) = *e;
    j++;
  }
  m->head = 0;
  m->end = j;
  size_t keep = (j + CHUNK_ENTRIES - 1) >> CHUNK_SHIFT;
  for (size_t c = keep; c < m->n_chunks; c++)
    pages_free(m->chunks[c], CHUNK_BYTES);
  m->n_chunks = keep;
  /* The table: entry numbers changed, so it is made again; when the new one cannot be
   * allocated the old array is refilled in place. */
  size_t n = slots_for(m->live);
  if (n != m->n_slots && rebuild_slots(m, n) == 0)
    return 0;
  PyErr_Clear();
  memset(m->slots, 0, m->n_slots * sizeof *m->slots);
  size_t mask = m->n_slots - 1;
  for (size_t i = 0; i < m->end; i++) {
    size_t pos = entry_at(m, i)->hash & mask;
    while (m->slots[pos])
      pos = (pos + 1) & mask;
    m->slots[pos] = (uint32_t)(i + 1);
  }
  return 0;
}

/* Compacts when the dead entries reach half the live (and a chunk's worth). */
static int maybe_compact(AnswerMap *m)
{
  size_t dead = m->end - m->live;
  if (m->live == 0 && m->end > 0)
    return compact(m);
  if (dead >= CHUNK_ENTRIES && dead * 2 >= m->live)
    return compact(m);
  return 0;
}

/* Room for one more entry at `end` and one more slot. -1 with an exception set. */
static int make_room(AnswerMap *m, bool new_key)
{
  if (m->end >= MAX_ENTRIES && (compact(m) < 0 || m->end >= MAX_ENTRIES)) {
    PyErr_SetString(PyExc_MemoryError, "AnswerMap: more than 2**32 - 2 entries");
    return -1;
  }
  if (new_key && (m->live + 1) * 2 > m->n_slots && rebuild_slots(m, slots_for(m->live + 1)) < 0)
    return -1;
  if ((m->end >> CHUNK_SHIFT) >= m->n_chunks) {
    if (m->n_chunks == m->chunks_cap) {
      size_t cap = m->chunks_cap ? m->chunks_cap * 2 : 4;
      struct entry **grown = PyMem_RawRealloc(m->chunks, cap * sizeof *grown);
      if (!grown) {
        PyErr_NoMemory();
        return -1;
      }
      m->chunks = grown;
      m->chunks_cap = cap;
    }
    struct entry *chunk = pages_alloc(CHUNK_BYTES);
    if (!chunk) {
      PyErr_NoMemory();
      return -1;
    }
    m->chunks[m->n_chunks++] = chunk;
  }
  return 0;
}

/* Appends a new entry for k with value's answer into slot pos (from probe, after
 * make_room). -1 with an exception set (nothing changed). */
static int append(AnswerMap *m, const struct keyref *k, PyObject *value, size_t pos)
{
  struct entry e;
  memset(&e, 0, sizeof e);
  e.hash = k->hash;
  e.key_len = (uint32_t)k->len;
  e.flags = (uint8_t)(k->width << 3);
  char *copy = NULL;
  if (k->len <= AREA) {
    memcpy(e.area, k->data, k->len);
  } else {
    if (!(copy = PyMem_RawMalloc(k->len))) {
      PyErr_NoMemory();
      return -1;
    }
    memcpy(copy, k->data, k->len);
    memcpy(e.area, &copy, sizeof copy);
    e.flags |= KEY_HEAP;
  }
  if (put_answer(m, &e, value) < 0) {
    PyMem_RawFree(copy);
    return -1;
  }
  if (copy)
    m->heap_bytes += k->len;
  *entry_at(m, m->end) = e;
  m->slots[pos] = (uint32_t)(m->end + 1);
  m->end++;
  m->live++;
  return 0;
}

/* ---- the Python type ----------------------------------------------------------------- */

static int enter(AnswerMap *m)
{
  if (m->busy) {
    PyErr_SetString(PyExc_RuntimeError,
                    "AnswerMap: called while another call on it runs; serialize access (the cache's lock)");
    return -1;
  }
  m->busy = 1;
  return 0;
}

static inline void leave(AnswerMap *m) { m->busy = 0; }

/* The answer for k, or NULL (not found, no exception). Borrowed entry. */
static struct entry *find(const AnswerMap *m, const struct keyref *k, size_t *pos)
{
  if (!m->n_slots)
    return NULL;
  bool found;
  size_t p = probe(m, k, &found);
  if (!found)
    return NULL;
  if (pos)
    *pos = p;
  return entry_at(m, m->slots[p] - 1);
}

PyDoc_STRVAR(get_doc, "get(key, default=None): key's answer, or default.");

static PyObject *map_get(AnswerMap *m, PyObject *const *args, Py_ssize_t nargs)
{
  if (nargs < 1 || nargs > 2) {
    PyErr_SetString(PyExc_TypeError, "AnswerMap.get: takes (key[, default])");
    return NULL;
  }
  struct keyref k;
  if (key_of(args[0], &k) < 0 || enter(m) < 0)
    return NULL;
  struct entry *e = find(m, &k, NULL);
  PyObject *out = e ? answer_of(e) : Py_NewRef(nargs == 2 ? args[1] : Py_None);
  leave(m);
  return out;
}

PyDoc_STRVAR(get_many_doc, "get_many(keys, default): per key its answer, or default (also for None).");

static PyObject *map_get_many(AnswerMap *m, PyObject *const *args, Py_ssize_t nargs)
{
  if (nargs != 2) {
    PyErr_SetString(PyExc_TypeError, "AnswerMap.get_many: takes (keys, default)");
    return NULL;
  }
  PyObject *seq = PySequence_Fast(args[0], "AnswerMap.get_many: keys must be a sequence");
  if (!seq)
    return NULL;
  Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
  PyObject *out = PyList_New(n);
  if (!out || enter(m) < 0) {
    Py_XDECREF(out);
    Py_DECREF(seq);
    return NULL;
  }
  PyObject *const *items = PySequence_Fast_ITEMS(seq);
  for (Py_ssize_t i = 0; i < n; i++) {
    if (i % PREFETCH_GROUP == 0)
      prefetch_keys(m, items + i, n - i);
    PyObject *key = items[i], *value;
    struct keyref k;
    if (key == Py_None) {
      value = Py_NewRef(args[1]);
    } else if (key_of(key, &k) < 0) {
      value = NULL;
    } else {
      struct entry *e = find(m, &k, NULL);
      value = e ? answer_of(e) : Py_NewRef(args[1]);
    }
    if (!value) {
      leave(m);
      Py_DECREF(out);
      Py_DECREF(seq);
      return NULL;
    }
    PyList_SET_ITEM(out, i, value);
  }
  leave(m);
  Py_DECREF(seq);
  return out;
}

PyDoc_STRVAR(move_to_end_doc, "move_to_end(key) -> bool: key's entry becomes the last; False if absent.");

static PyObject *map_move_to_end(AnswerMap *m, PyObject *key)
{
  struct keyref k;
  if (key_of(key, &k) < 0 || enter(m) < 0)
    return NULL;
  if (maybe_compact(m) < 0 || make_room(m, false) < 0) {
    leave(m);
    return NULL;
  }
  size_t pos;
  struct entry *e = find(m, &k, &pos);
  if (!e) {
    leave(m);
    Py_RETURN_FALSE;
  }
  size_t i = m->slots[pos] - 1;
  if (i + 1 != m->end) {
    *entry_at(m, m->end) = *e; /* the key's block and the answer go with it */
    m->slots[pos] = (uint32_t)(m->end + 1);
    m->end++;
    bury(m, i);
  }
  leave(m);
  Py_RETURN_TRUE;
}

PyDoc_STRVAR(update_many_doc,
             "update_many(keys, values) -> (added, added_chars): stores values[i] under keys[i]; a key present\n"
             "keeps its place. Returns how many keys were new and their total length in characters.");

static PyObject *map_update_many(AnswerMap *m, PyObject *const *args, Py_ssize_t nargs)
{
  if (nargs != 2) {
    PyErr_SetString(PyExc_TypeError, "AnswerMap.update_many: takes (keys, values)");
    return NULL;
  }
  PyObject *keys = PySequence_Fast(args[0], "AnswerMap.update_many: keys must be a sequence");
  if (!keys)
    return NULL;
  PyObject *values = PySequence_Fast(args[1], "AnswerMap.update_many: values must be a sequence");
  if (!values) {
    Py_DECREF(keys);
    return NULL;
  }
  Py_ssize_t n = PySequence_Fast_GET_SIZE(keys);
  if (PySequence_Fast_GET_SIZE(values) != n) {
    PyErr_Format(PyExc_ValueError, "AnswerMap.update_many: %zd keys but %zd values", n,
                 PySequence_Fast_GET_SIZE(values));
    Py_DECREF(keys);
    Py_DECREF(values);
    return NULL;
  }
  if (enter(m) < 0) {
    Py_DECREF(keys);
    Py_DECREF(values);
    return NULL;
  }
  size_t added = 0, added_chars = 0;
  int rc = maybe_compact(m);
  for (Py_ssize_t i = 0; rc == 0 && i < n; i++) {
    if (i % PREFETCH_GROUP == 0)
      prefetch_keys(m, PySequence_Fast_ITEMS(keys) + i, n - i);
    struct keyref k;
    PyObject *value = PySequence_Fast_GET_ITEM(values, i);
    if ((rc = key_of(PySequence_Fast_GET_ITEM(keys, i), &k)) < 0)
      break;
    size_t pos;
    struct entry *e = find(m, &k, &pos);
    if (e) { /* the new answer first: on failure the old one stays */
      struct entry fresh = *e;
      if ((rc = put_answer(m, &fresh, value)) < 0)
        break;
      release_answer(m, e);
      *e = fresh;
      continue;
    }
    bool found;
    if ((rc = make_room(m, true)) < 0)
      break;
    pos = probe(m, &k, &found);
    if ((rc = append(m, &k, value, pos)) < 0)
      break;
    added++;
    added_chars += k.len >> k.width;
  }
  leave(m);
  Py_DECREF(keys);
  Py_DECREF(values);
  if (rc < 0)
    return NULL;
  return Py_BuildValue("(nn)", (Py_ssize_t)added, (Py_ssize_t)added_chars);
}

/* Removes the live entry in slot pos. Its key and answer are released last, from a
 * copy: a finalizer the release runs finds the map consistent (and busy). */
static void remove_at(AnswerMap *m, size_t pos)
{
  size_t i = m->slots[pos] - 1;
  struct entry gone = *entry_at(m, i);
  slot_remove(m, pos);
  m->live--;
  bury(m, i);
  release_key(m, &gone);
  release_answer(m, &gone);
}

PyDoc_STRVAR(discard_many_doc,
             "discard_many(keys) -> (removed, removed_chars): removes those present (None is skipped).");

static PyObject *map_discard_many(AnswerMap *m, PyObject *keys_arg)
{
  PyObject *keys = PySequence_Fast(keys_arg, "AnswerMap.discard_many: keys must be a sequence");
  if (!keys)
    return NULL;
  if (enter(m) < 0) {
    Py_DECREF(keys);
    return NULL;
  }
  size_t removed = 0, removed_chars = 0;
  int rc = 0;
  Py_ssize_t n = PySequence_Fast_GET_SIZE(keys);
  for (Py_ssize_t i = 0; i < n && m->live; i++) {
    PyObject *key = PySequence_Fast_GET_ITEM(keys, i);
    struct keyref k;
    if (key == Py_None)
      continue;
    if ((rc = key_of(key, &k)) < 0)
      break;
    size_t pos;
    struct entry *e = find(m, &k, &pos);
    if (!e)
      continue;
    removed++;
    removed_chars += key_chars(e);
    remove_at(m, pos);
  }
  if (rc == 0)
    rc = maybe_compact(m);
  leave(m);
  Py_DECREF(keys);
  if (rc < 0)
    return NULL;
  return Py_BuildValue("(nn)", (Py_ssize_t)removed, (Py_ssize_t)removed_chars);
}

PyDoc_STRVAR(pop_front_doc,
             "pop_front(count, weight, overhead) -> (popped, popped_weight): removes entries from the front\n"
             "(the first stored or moved to the end) until at least count are gone and their weight, each\n"
             "entry's key length in characters plus overhead, is at least weight.");

static PyObject *map_pop_front(AnswerMap *m, PyObject *const *args, Py_ssize_t nargs)
{
  long long count, weight, overhead;
  if (nargs != 3) {
    PyErr_SetString(PyExc_TypeError, "AnswerMap.pop_front: takes (count, weight, overhead)");
    return NULL;
  }
  if ((count = PyLong_AsLongLong(args[0])) == -1 && PyErr_Occurred())
    return NULL;
  if ((weight = PyLong_AsLongLong(args[1])) == -1 && PyErr_Occurred())
    return NULL;
  if ((overhead = PyLong_AsLongLong(args[2])) == -1 && PyErr_Occurred())
    return NULL;
  if (enter(m) < 0)
    return NULL;
  long long popped = 0, popped_weight = 0;
  while (m->live && (popped < count || popped_weight < weight)) {
    size_t i = m->head; /* live: bury() keeps head on a live entry */
    struct entry *e = entry_at(m, i);
    popped++;
    popped_weight += (long long)key_chars(e) + overhead;
    remove_at(m, slot_of_entry(m, i));
  }
  int rc = maybe_compact(m);
  leave(m);
  if (rc < 0)
    return NULL;
  return Py_BuildValue("(LL)", popped, popped_weight);
}

PyDoc_STRVAR(front_doc, "front(n) -> list: the first n keys, oldest first.");

static PyObject *map_front(AnswerMap *m, PyObject *arg)
{
  Py_ssize_t n = PyLong_AsSsize_t(arg);
  if (n == -1 && PyErr_Occurred())
    return NULL;
  if (n < 0)
    n = 0;
  if ((size_t)n > m->live)
    n = (Py_ssize_t)m->live;
  PyObject *out = PyList_New(n);
  if (!out || enter(m) < 0) {
    Py_XDECREF(out);
    return NULL;
  }
  Py_ssize_t j = 0;
  for (size_t i = m->head; i < m->end && j < n; i++) {
    const struct entry *e = entry_at(m, i);
    if (kind_of(e) == DEAD)
      continue;
    int kind = 1 << key_width(e);
    PyObject *key = PyUnicode_FromKindAndData(kind, key_bytes(e), (Py_ssize_t)(e->key_len / (size_t)kind));
    if (!key) {
      leave(m);
      Py_DECREF(out);
      return NULL;
    }
    PyList_SET_ITEM(out, j++, key);
  }
  leave(m);
  return out;
}

/* Drops every entry; the references are released after the map is empty. */
static void drop_all(AnswerMap *m)
{
  struct entry **chunks = m->chunks;
  size_t head = m->head, end = m->end, n_chunks = m->n_chunks;
  pages_free(m->slots, m->n_slots * sizeof *m->slots);
  m->chunks = NULL;
  m->slots = NULL;
  m->n_chunks = m->chunks_cap = m->n_slots = 0;
  m->head = m->end = m->live = 0;
  for (size_t i = head; i < end; i++) {
    struct entry *e = &chunks[i >> CHUNK_SHIFT][i & (CHUNK_ENTRIES - 1)];
    if (kind_of(e) == DEAD)
      continue;
    release_key(m, e);
    release_answer(m, e);
  }
  for (size_t c = 0; c < n_chunks; c++)
    pages_free(chunks[c], CHUNK_BYTES);
  PyMem_RawFree(chunks);
}

PyDoc_STRVAR(clear_doc, "clear(): removes every entry.");

static PyObject *map_clear(AnswerMap *m, PyObject *unused)
{
  (void)unused;
  if (enter(m) < 0)
    return NULL;
  drop_all(m);
  leave(m);
  Py_RETURN_NONE;
}

PyDoc_STRVAR(nbytes_doc, "nbytes() -> int: the bytes the map holds in C (entries, table, blocks).");

static PyObject *map_nbytes(AnswerMap *m, PyObject *unused)
{
  (void)unused;
  size_t n = sizeof *m + m->chunks_cap * sizeof *m->chunks + m->n_chunks * CHUNK_ENTRIES * sizeof(struct entry) +
             m->n_slots * sizeof *m->slots + m->heap_bytes;
  return PyLong_FromSize_t(n);
}

static Py_ssize_t map_len(AnswerMap *m) { return (Py_ssize_t)m->live; }

static int map_contains(AnswerMap *m, PyObject *key)
{
  struct keyref k;
  if (key_of(key, &k) < 0 || enter(m) < 0)
    return -1;
  int found = find(m, &k, NULL) != NULL;
  leave(m);
  return found;
}

static void map_dealloc(AnswerMap *m)
{
  m->busy = 1; /* a finalizer run by a release must not use the map */
  drop_all(m);
  Py_TYPE(m)->tp_free((PyObject *)m);
}

static PyMethodDef map_methods[] = {
    {"get", (PyCFunction)(void (*)(void))map_get, METH_FASTCALL, get_doc},
    {"get_many", (PyCFunction)(void (*)(void))map_get_many, METH_FASTCALL, get_many_doc},
    {"move_to_end", (PyCFunction)map_move_to_end, METH_O, move_to_end_doc},
    {"update_many", (PyCFunction)(void (*)(void))map_update_many, METH_FASTCALL, update_many_doc},
    {"discard_many", (PyCFunction)map_discard_many, METH_O, discard_many_doc},
    {"pop_front", (PyCFunction)(void (*)(void))map_pop_front, METH_FASTCALL, pop_front_doc},
    {"front", (PyCFunction)map_front, METH_O, front_doc},
    {"clear", (PyCFunction)map_clear, METH_NOARGS, clear_doc},
    {"nbytes", (PyCFunction)map_nbytes, METH_NOARGS, nbytes_doc},
    {NULL, NULL, 0, NULL}};

static PySequenceMethods map_as_sequence = {
    .sq_length = (lenfunc)map_len,
    .sq_contains = (objobjproc)map_contains,
};

static PyTypeObject AnswerMapType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "sqlml._answer_map.AnswerMap",
    .tp_basicsize = sizeof(AnswerMap),
    .tp_dealloc = (destructor)map_dealloc,
    .tp_as_sequence = &map_as_sequence,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = PyDoc_STR("AnswerMap(): an insertion-ordered map str -> answer, kept compact in C."),
    .tp_methods = map_methods,
    .tp_new = PyType_GenericNew,
};

static struct PyModuleDef answer_map_module = {
    PyModuleDef_HEAD_INIT, "sqlml._answer_map", "The result cache's compact storage (native/answer_map.c).", -1,
    NULL, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__answer_map(void)
{
  if (PyType_Ready(&AnswerMapType) < 0)
    return NULL;
  PyObject *module = PyModule_Create(&answer_map_module);
  if (!module)
    return NULL;
  if (PyModule_AddObjectRef(module, "AnswerMap", (PyObject *)&AnswerMapType) < 0) {
    Py_DECREF(module);
    return NULL;
  }
  return module;
}
