/*
 * The statement memo (memo.h): a registry of memos under one lock, and per memo an
 * append-only array of entries, an arena for key and answer bytes, and an
 * open-addressing table of entry numbers. Offsets, not pointers, so growing never
 * moves what an entry refers to.
 */
#include "memo.h"

#include "server_api.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Keys up to KEY_INLINE bytes and answers up to TEXT_INLINE live in the entry itself (a
 * number's key is 9 bytes, a sentiment label at most 8): a lookup then touches one slot
 * and one entry, not the arena too. Longer ones are arena offsets, where a 4-byte length
 * precedes the bytes, so that the entry keeps one byte for a length. The sizes and the
 * order of the fields keep an entry at 32 bytes: every 8 bytes more is 8 MB more per
 * million rows of a statement. */
#define KEY_INLINE MEMO_KEY_INLINE
#define TEXT_INLINE 8
#define IN_ARENA 255 /* key_len / text_len: the bytes are in the arena */

enum { ANSWERED = 1, HAS_TEXT = 2, HAS_NUM = 4 };

struct entry {
  double num;
  union {
    char bytes[KEY_INLINE];
    uint32_t at;
  } key;
  union {
    char bytes[TEXT_INLINE];
    uint32_t at;
  } text;
  uint8_t key_len, text_len; /* 0..KEY_INLINE (TEXT_INLINE) or IN_ARENA */
  uint8_t flags;             /* ANSWERED | HAS_TEXT | HAS_NUM */
};
_Static_assert(sizeof(struct entry) == 32, "memo entry: keep it at 32 bytes");

/* A slot: the entry's number + 1 in the low 32 bits (0: empty), the high half of its
 * key's hash in the high 32, so a probe rarely reads an entry that is not the one. A
 * key's home slot is the top bits of that half: growing the table then reads only the
 * old slots, never an entry or a key, and writes the new table nearly in order (a
 * million-row warm-up grows it eleven times). */
typedef uint64_t slot;
#define SLOT_BITS_MAX 32 /* the home slot comes from the 32-bit half */

struct memo {
  /* registry part, under registry_lock */
  struct memo *next;
  void *owner;
  char target[80];
  size_t target_len;
  unsigned long epoch;
  double created;
  int refs;
  /* the table, touched only by the owner's thread */
  struct entry *entries;
  size_t n_entries, entries_cap;
  slot *slots;
  size_t n_slots; /* a power of two */
  /* memo_get: the entry after the newest one found (rows read in the order the warm-up
   * reserved them, as a rescan of the same table reads them, are found without a probe) */
  size_t cursor;
  char *arena;
  size_t arena_len, arena_cap;
  long long max_entries, max_bytes;
};

/* The bytes an entry's key or text field names, and their length. */
static const char *field_bytes(const memo *m, uint8_t len, const char *inline_bytes, uint32_t at, size_t *n)
{
  if (len != IN_ARENA) {
    *n = len;
    return inline_bytes;
  }
  uint32_t stored;
  memcpy(&stored, m->arena + at, 4);
  *n = stored;
  return m->arena + at + 4;
}

static const char *key_bytes(const memo *m, const struct entry *e, size_t *n)
{
  return field_bytes(m, e->key_len, e->key.bytes, e->key.at, n);
}

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static memo *registry;
static unsigned long epoch = 1;      /* sqlml_cache_clear() moves it: older memos are retired */
static unsigned long generation = 1; /* moves whenever a memo is created or retired */

static double now_s(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *owner(void)
{
  void *thd = server_current_thd();
  return thd ? thd : (void *)pthread_self();
}

static memo *lookup(void *who, const struct memo_spec *spec)
{
  for (memo *m = registry; m; m = m->next)
    if (m->owner == who && m->epoch == epoch && m->target_len == spec->target_len &&
        memcmp(m->target, spec->target, spec->target_len) == 0)
      return m;
  return NULL;
}

memo *memo_open(const struct memo_spec *spec)
{
  void *who = owner();
  pthread_mutex_lock(&registry_lock);
  memo *m = lookup(who, spec);
  if (!m && (m = calloc(1, sizeof *m)) != NULL) {
    m->owner = who;
    memcpy(m->target, spec->target, spec->target_len);
    m->target_len = spec->target_len;
    m->epoch = epoch;
    m->created = now_s();
    m->max_entries = spec->max_entries;
    m->max_bytes = spec->max_bytes;
    m->next = registry;
    registry = m;
    __atomic_add_fetch(&generation, 1, __ATOMIC_RELEASE);
  }
  if (m)
    m->refs++;
  pthread_mutex_unlock(&registry_lock);
  return m;
}

memo *memo_find(const struct memo_spec *spec, unsigned long *seen)
{
  unsigned long g = __atomic_load_n(&generation, __ATOMIC_ACQUIRE);
  if (g == *seen)
    return NULL;
  *seen = g;
  void *who = owner();
  pthread_mutex_lock(&registry_lock);
  memo *m = lookup(who, spec);
  if (m && now_s() - m->created > spec->ttl_s)
    m = NULL; /* older than the cache's TTL: its answers may not be served any more */
  if (m)
    m->refs++;
  pthread_mutex_unlock(&registry_lock);
  return m;
}

void memo_close(memo *m)
{
  if (!m)
    return;
  pthread_mutex_lock(&registry_lock);
  bool last = --m->refs == 0;
  if (last) {
    for (memo **p = &registry; *p; p = &(*p)->next)
      if (*p == m) {
        *p = m->next;
        break;
      }
  }
  pthread_mutex_unlock(&registry_lock);
  if (last) {
    free(m->entries);
    free(m->slots);
    free(m->arena);
    free(m);
  }
}

void memo_invalidate_all(void)
{
  pthread_mutex_lock(&registry_lock);
  __atomic_add_fetch(&epoch, 1, __ATOMIC_RELEASE);
  __atomic_add_fetch(&generation, 1, __ATOMIC_RELEASE);
  pthread_mutex_unlock(&registry_lock);
}

/* ---- keys ---------------------------------------------------------------------------- */

/* Per key argument: its type (one byte), then 8 bytes for INT and REAL, or a 4-byte
 * length and the bytes for STRING and DECIMAL. A whole number below 1e15 in magnitude,
 * INT or REAL, is written as KEY_WHOLE and its value as a long long: the engine sends
 * such a number as the same digits either way ("76" for 76 and 76.0, "0" for -0.0), so
 * an INT column read by a REAL parameter (the seed's anomaly_score(value)) finds the
 * warm-up's answer. */
#define KEY_WHOLE 5
#define WHOLE_LIMIT 1e15

static bool fixed_size(enum udf_item_result type) { return type == UDF_INT_RESULT || type == UDF_REAL_RESULT; }

size_t memo_key(const UDF_ARGS *args, unsigned first, unsigned count, char **buf, size_t *cap)
{
  size_t need = 0;
  for (unsigned i = first; i < first + count; i++) {
    if (i >= args->arg_count || !args->args[i])
      return 0;
    if (!fixed_size(args->arg_type[i]) && args->lengths[i] > UINT32_MAX)
      return 0;
    need += fixed_size(args->arg_type[i]) ? 9 : 5 + args->lengths[i];
  }
  if (need > *cap) {
    char *grown = realloc(*buf, need);
    if (!grown)
      return 0; /* the row goes to Python */
    *buf = grown;
    *cap = need;
  }
  char *p = *buf;
  for (unsigned i = first; i < first + count; i++) {
    enum udf_item_result type = args->arg_type[i];
    if (fixed_size(type)) {
      long long whole;
      double real = 0;
      if (type == UDF_INT_RESULT)
        memcpy(&whole, args->args[i], 8);
      else
        memcpy(&real, args->args[i], 8);
      bool is_whole = type == UDF_INT_RESULT ? (whole > -WHOLE_LIMIT && whole < WHOLE_LIMIT)
                                             : (real > -WHOLE_LIMIT && real < WHOLE_LIMIT && real == (double)(long long)real);
      if (is_whole && type == UDF_REAL_RESULT)
        whole = (long long)real;
      *p++ = (char)(is_whole ? KEY_WHOLE : type);
      memcpy(p, is_whole ? (const void *)&whole : (const void *)args->args[i], 8);
      p += 8;
    } else {
      uint32_t n = (uint32_t)args->lengths[i];
      *p++ = (char)type;
      memcpy(p, &n, 4);
      memcpy(p + 4, args->args[i], n);
      p += 4 + n;
    }
  }
  return need;
}

void memo_key_args(memo *m, long entry, void (*fn)(int type, const char *v, size_t len, void *ctx), void *ctx)
{
  const struct entry *e = &m->entries[entry];
  size_t n_key;
  const char *p = key_bytes(m, e, &n_key), *end = p + n_key;
  while (p < end) {
    int type = *p++;
    if (type == UDF_INT_RESULT || type == UDF_REAL_RESULT || type == KEY_WHOLE) {
      fn(type == KEY_WHOLE ? UDF_INT_RESULT : type, p, 8, ctx);
      p += 8;
    } else {
      uint32_t n;
      memcpy(&n, p, 4);
      fn(type, p + 4, n, ctx);
      p += 4 + n;
    }
  }
}

static uint64_t mix(uint64_t x)
{
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x;
}

static uint64_t hash_bytes(const char *p, size_t n)
{
  uint64_t h = 0x9e3779b97f4a7c15ULL ^ (n * 0xff51afd7ed558ccdULL);
  for (; n >= 8; p += 8, n -= 8) {
    uint64_t w;
    memcpy(&w, p, 8);
    h = (h ^ mix(w)) * 0x9e3779b97f4a7c15ULL;
  }
  uint64_t w = 0;
  memcpy(&w, p, n);
  return mix(h ^ w ^ ((uint64_t)n << 59));
}

/* ---- the table ----------------------------------------------------------------------- */

static size_t home(const memo *m, slot tag_or_slot)
{
  return (size_t)((tag_or_slot >> 32) >> (SLOT_BITS_MAX - __builtin_ctzll(m->n_slots)));
}

static bool has_key(const memo *m, const struct entry *e, const char *key, size_t len)
{
  size_t n;
  const char *bytes = key_bytes(m, e, &n);
  return n == len && memcmp(bytes, key, len) == 0;
}

/* The slot holding key, or the empty slot where it would go. */
static slot *slot_of(memo *m, uint64_t hash, const char *key, size_t len)
{
  size_t mask = m->n_slots - 1;
  uint64_t tag = hash & 0xffffffff00000000ULL;
  for (size_t i = home(m, tag);; i = (i + 1) & mask) {
    slot *s = &m->slots[i];
    if (*s == 0)
      return s;
    if ((*s & 0xffffffff00000000ULL) != tag)
      continue;
    if (has_key(m, &m->entries[(uint32_t)*s - 1], key, len))
      return s;
  }
}

static bool grow_slots(memo *m)
{
  size_t n = m->n_slots ? m->n_slots * 2 : 1024, mask = n - 1;
  if (n > (size_t)1 << SLOT_BITS_MAX)
    return false;
  slot *slots = calloc(n, sizeof *slots);
  if (!slots)
    return false;
  slot *old = m->slots;
  size_t n_old = m->n_slots;
  m->slots = slots;
  m->n_slots = n;
  for (size_t i = 0; i < n_old; i++) {
    if (!old[i])
      continue;
    size_t j = home(m, old[i]);
    while (slots[j])
      j = (j + 1) & mask;
    slots[j] = old[i];
  }
  free(old);
  return true;
}

/* Appends n bytes to the arena after their length (4 bytes); its offset, or -1 when the
 * bounds or memory say no. */
static long long arena_put(memo *m, const char *p, size_t len)
{
  size_t n = len + 4;
  if (len > UINT32_MAX || (long long)(m->arena_len + n) > m->max_bytes || m->arena_len + n > UINT32_MAX)
    return -1;
  if (m->arena_len + n > m->arena_cap) {
    size_t cap = m->arena_cap ? m->arena_cap : 65536;
    while (cap < m->arena_len + n)
      cap *= 2;
    char *grown = realloc(m->arena, cap);
    if (!grown)
      return -1;
    m->arena = grown;
    m->arena_cap = cap;
  }
  uint32_t stored = (uint32_t)len;
  memcpy(m->arena + m->arena_len, &stored, 4);
  memcpy(m->arena + m->arena_len + 4, p, len);
  m->arena_len += n;
  return (long long)(m->arena_len - n);
}

uint64_t memo_hash(const char *key, size_t len) { return hash_bytes(key, len); }

void memo_prefetch(const memo *m, uint64_t hash)
{
  if (m->n_slots)
    __builtin_prefetch(&m->slots[home(m, hash)]);
}

long long memo_room(const memo *m) { return m->max_entries - (long long)m->n_entries; }

long memo_reserve(memo *m, const char *key, size_t len) { return memo_reserve_hashed(m, hash_bytes(key, len), key, len); }

long memo_reserve_hashed(memo *m, uint64_t hash, const char *key, size_t len)
{
  if (m->n_slots && *slot_of(m, hash, key, len))
    return -1;
  if ((long long)m->n_entries >= m->max_entries || m->n_entries >= UINT32_MAX - 1)
    return -2;
  if ((m->n_entries + 1) * 2 > m->n_slots && !grow_slots(m))
    return -2;
  if (m->n_entries == m->entries_cap) {
    size_t cap = m->entries_cap ? m->entries_cap * 2 : 1024;
    struct entry *grown = realloc(m->entries, cap * sizeof *grown);
    if (!grown)
      return -2;
    m->entries = grown;
    m->entries_cap = cap;
  }
  struct entry *e = &m->entries[m->n_entries];
  memset(e, 0, sizeof *e);
  if (len <= KEY_INLINE) {
    memcpy(e->key.bytes, key, len);
    e->key_len = (uint8_t)len;
  } else {
    long long at = arena_put(m, key, len);
    if (at < 0)
      return -2;
    e->key.at = (uint32_t)at;
    e->key_len = IN_ARENA;
  }
  *slot_of(m, hash, key, len) = (hash & 0xffffffff00000000ULL) | (uint32_t)(m->n_entries + 1);
  return (long)m->n_entries++;
}

bool memo_set(memo *m, long entry, const char *text, size_t text_len, bool has_num, double num)
{
  struct entry *e = &m->entries[entry];
  if (text) {
    if (text_len <= TEXT_INLINE) {
      memcpy(e->text.bytes, text, text_len);
      e->text_len = (uint8_t)text_len;
    } else {
      long long at = arena_put(m, text, text_len);
      if (at < 0)
        return false;
      e->text.at = (uint32_t)at;
      e->text_len = IN_ARENA;
    }
    e->flags |= HAS_TEXT;
  }
  e->flags = (uint8_t)((e->flags & ~HAS_NUM) | (has_num ? HAS_NUM : 0));
  e->num = num;
  e->flags |= ANSWERED;
  return true;
}

bool memo_get(memo *m, const char *key, size_t len, struct memo_answer *out)
{
  /* Retired by sqlml_cache_clear() while its statement runs: answer nothing more. */
  if (!m->n_slots || m->epoch != __atomic_load_n(&epoch, __ATOMIC_ACQUIRE))
    return false;
  const struct entry *e = NULL;
  if (m->cursor < m->n_entries && has_key(m, &m->entries[m->cursor], key, len))
    e = &m->entries[m->cursor++];
  if (!e) {
    slot s = *slot_of(m, hash_bytes(key, len), key, len);
    if (!s)
      return false;
    e = &m->entries[(uint32_t)s - 1];
    if ((uint32_t)s > m->cursor) /* a key seen again (it was reserved once) leaves it */
      m->cursor = (uint32_t)s;
  }
  if (!(e->flags & ANSWERED))
    return false;
  out->text = NULL;
  out->text_len = 0;
  if (e->flags & HAS_TEXT)
    out->text = field_bytes(m, e->text_len, e->text.bytes, e->text.at, &out->text_len);
  out->has_num = (e->flags & HAS_NUM) != 0;
  out->num = e->num;
  return true;
}

/* ---- strict numerals ----------------------------------------------------------------- */

static size_t digits(const char *s, size_t i, size_t n)
{
  size_t j = i;
  while (j < n && s[j] >= '0' && s[j] <= '9')
    j++;
  return j - i;
}

static const double POW10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* m / 10^k with m < 10^15 and k <= 22: both exact doubles, and IEEE division rounds
 * correctly, so this is the double strtod() reads from the text "m e-k". */

int memo_format_real(double v, char *out, size_t cap)
{
  double a = fabs(v);
  if (!(a >= 1e-4 && a < 1e15) || cap < 40)
    return -1; /* outside fixed notation, or nan/inf/0 */
  for (int k = 0; k <= 22; k++) {
    double scaled = a * POW10[k];
    if (scaled >= 1e15)
      return -1; /* needs more than 15 significant digits */
    double m = nearbyint(scaled);
    if (m / POW10[k] != a)
      continue;
    char digits[24];
    int len = snprintf(digits, sizeof digits, "%llu", (unsigned long long)m);
    char *p = out;
    if (v < 0)
      *p++ = '-';
    if (k == 0) {
      memcpy(p, digits, (size_t)len);
      p += len;
    } else if (len > k) {
      memcpy(p, digits, (size_t)(len - k));
      p += len - k;
      *p++ = '.';
      memcpy(p, digits + len - k, (size_t)k);
      p += k;
    } else {
      *p++ = '0';
      *p++ = '.';
      memset(p, '0', (size_t)(k - len));
      p += k - len;
      memcpy(p, digits, (size_t)len);
      p += len;
    }
    return (int)(p - out);
  }
  return -1;
}

bool memo_parse_real(const char *s, size_t n, double *out)
{
  /* [+-] digits [. digits] [e [+-] digits], or [+-] . digits [...]: what float() and
   * strtod() read alike (no spaces, underscores, hex, inf or nan). */
  size_t i = 0;
  if (i < n && (s[i] == '+' || s[i] == '-'))
    i++;
  size_t whole = digits(s, i, n), frac = 0;
  i += whole;
  if (i < n && s[i] == '.') {
    frac = digits(s, i + 1, n);
    i += 1 + frac;
  }
  if (whole + frac == 0)
    return false;
  if (i < n && (s[i] == 'e' || s[i] == 'E')) {
    i++;
    if (i < n && (s[i] == '+' || s[i] == '-'))
      i++;
    size_t exp = digits(s, i, n);
    if (exp == 0)
      return false;
    i += exp;
  }
  if (i != n || n > 400)
    return false;
  if (whole + frac <= 15 && i == whole + frac + (frac > 0 || s[n - 1] == '.') + (s[0] == '+' || s[0] == '-')) {
    /* No exponent, at most 15 digits: m / 10^frac, as strtod would read it. */
    unsigned long long m = 0;
    for (size_t j = 0; j < n; j++)
      if (s[j] >= '0' && s[j] <= '9')
        m = m * 10 + (unsigned long long)(s[j] - '0');
    double v = (double)m / POW10[frac];
    *out = s[0] == '-' ? -v : v;
    return true;
  }
  char buf[401];
  memcpy(buf, s, n);
  buf[n] = '\0';
  double v = strtod(buf, NULL);
  if (!isfinite(v))
    return false; /* Python explains the overflow */
  *out = v;
  return true;
}

bool memo_parse_int(const char *s, size_t n, long long low, long long high, long long *out)
{
  size_t i = (n > 0 && (s[0] == '+' || s[0] == '-')) ? 1 : 0;
  if (n - i == 0 || n - i > 18 || digits(s, i, n) != n - i)
    return false; /* up to 18 digits cannot overflow a long long */
  long long v = 0;
  for (size_t j = i; j < n; j++)
    v = v * 10 + (s[j] - '0');
  if (s[0] == '-')
    v = -v;
  if (v < low || v > high)
    return false; /* Python explains the range */
  *out = v;
  return true;
}
