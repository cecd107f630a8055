/*
 * memo: the statement memo, the batch path's answers kept in C.
 *
 * On the batch path a warm-up aggregate sees a statement's inputs before the reading
 * function's rows run, and every answer it fetches is cached by the engine under its
 * own input. Finding it there from Python costs a crossing and an interpreter run per
 * row, most of the batch path's time. So the warm-up also leaves each answer here,
 * keyed by the exact bytes of the row's key arguments (their types and values as the
 * server passed them), and a reading function over the same target looks its row up
 * by its own argument bytes without entering Python. A row whose answer is not here
 * (NULLs, a failed item, an answer C does not convert) goes to Python, which answers
 * it as it would without a memo.
 *
 * Scope: a memo belongs to one connection's statement (keyed by the server's THD)
 * and one target ("sagemaker\0<endpoint>" or "comprehend"); it lives while some
 * function of that statement holds it, and every UDF is released at statement end.
 * sqlml_cache_clear() retires every memo, and one is never used past the cache's TTL.
 * Only the owning connection's thread touches a memo's table; finding, creating and
 * freeing go through one lock.
 */
#ifndef SQLML_MEMO_H
#define SQLML_MEMO_H

#include "udf_abi.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sqlml_constants.h" /* MEMO_*: what a reading function takes from an answer */

struct memo_spec {
  char target[80];
  size_t target_len;
  unsigned first, count;  /* the key arguments: args[first .. first+count) */
  int mode;               /* readers: MEMO_* */
  long long low, high;    /* MEMO_INT: the declared type's range */
  double ttl_s;           /* the cache's TTL when the function was prepared */
  long long max_entries;  /* warm-ups: the cache's bounds also bound the memo */
  long long max_bytes;
  bool csv_lines;         /* warm-ups: hand numeric rows to Python as CSV lines */
};

struct memo_answer {
  const char *text; /* NULL if the answer has no text form */
  size_t text_len;
  bool has_num;
  double num;
};

typedef struct memo memo;

/* Warm-ups: this statement's memo for spec's target, created if needed. A reference;
 * NULL when out of memory. */
memo *memo_open(const struct memo_spec *spec);
/* Readers: the memo a warm-up of this statement opened, or NULL. A reference. Cheap
 * when nothing changed since *seen (a generation number the caller keeps). */
memo *memo_find(const struct memo_spec *spec, unsigned long *seen);
void memo_close(memo *m);
/* Retires every memo (sqlml_cache_clear). */
void memo_invalidate_all(void);

/* The key of a row's key arguments, written into *buf (grown as needed). Returns its
 * length, or 0 when a key argument is NULL or memory is short: such rows are never
 * memoized, their function handles them in Python. */
size_t memo_key(const UDF_ARGS *args, unsigned first, unsigned count, char **buf, size_t *cap);

/* Reserves an entry for key. >= 0: a new entry's index (its answer comes later);
 * -1: the key is already there; -2: the memo is full (spec's bounds) or out of memory. */
long memo_reserve(memo *m, const char *key, size_t len);
/* Keys up to this many bytes are kept in their entry (memo.c), never in the arena: the
 * spec's byte bound cannot refuse them. */
#define MEMO_KEY_INLINE 12

/* For a caller that holds keys a few rows before reserving them (a warm-up): a key's
 * hash, a hint to fetch the slot it would probe first (a cache miss, in a table of a
 * million keys, otherwise paid when it is reserved), memo_reserve with the hash given,
 * and how many more entries the spec's bounds let it reserve. */
uint64_t memo_hash(const char *key, size_t len);
void memo_prefetch(const memo *m, uint64_t hash);
long memo_reserve_hashed(memo *m, uint64_t hash, const char *key, size_t len);
long long memo_room(const memo *m);
/* Records entry's answer (text may be NULL). Returns false when out of memory. */
bool memo_set(memo *m, long entry, const char *text, size_t text_len, bool has_num, double num);
/* The answer recorded for key, or false if there is none (yet) or sqlml_cache_clear()
 * has retired m since (its statement may still hold it). */
bool memo_get(memo *m, const char *key, size_t len, struct memo_answer *out);
/* Decodes entry's key back into arguments: calls fn(type, bytes, length, ctx) per
 * key argument (a whole number comes back as an INT). */
void memo_key_args(memo *m, long entry, void (*fn)(int type, const char *v, size_t len, void *ctx), void *ctx);

/* Strict numerals, as a reading function converts a text answer without Python:
 * returns false for anything else (Python converts those, or explains the error). */
bool memo_parse_real(const char *s, size_t n, double *out);
/* The text Python's repr() gives v, in fixed notation (1e-4 <= |v| < 1e15) with at most
 * 15 significant digits and without a trailing ".0": its length, or -1 for any other
 * value (cap must be at least 40). */
int memo_format_real(double v, char *out, size_t cap);
bool memo_parse_int(const char *s, size_t n, long long low, long long high, long long *out);

#endif
