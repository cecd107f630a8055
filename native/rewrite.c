/*
 * The pre-parse statement rewrite on MySQL (the audit API's parse class, as MySQL's own
 * query-rewrite plugins use it). For each statement a client sends, before it is parsed:
 *
 *   1. if sqlml_rewrite is OFF, or the text mentions none of the words that can matter
 *      (aws_, sqlml_, alias, invoke, outfile, and the names of the SageMaker functions
 *      made with Aurora's DDL), leave it alone: this scan is all a statement without ML
 *      calls ever pays;
 *   2. otherwise ask sqlml.rewrite.rewrite(text, prepared) (Python) for a new text, and
 *      hand that to the server (allocated with the server's my_malloc, as it frees it).
 *
 * What to rewrite, and how, is decided in python/sqlml/rewrite; any failure there
 * leaves the statement exactly as written. MariaDB has no such hook.
 */
#define _GNU_SOURCE
#include "rewrite.h"
#include "plugin.h"
#include "pyhost.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MYSQL_AUDIT_PARSE_PREPARSE 1
#define REWRITE_FLAG_QUERY_REWRITTEN 1
#define REWRITE_FLAG_IS_PREPARED_STATEMENT 2

struct lex_string {
  const char *str;
  size_t length;
};

struct mysql_event_parse { /* plugin_audit.h */
  int event_subclass;
  int *flags;
  struct lex_string query;
  struct lex_string *rewritten_query;
};

/* The trigger words, lower case: an immutable list swapped atomically when the set of
 * function names changes (rarely: Aurora DDL); old lists are kept, never freed. */
struct words {
  int count;
  int short_words;          /* words under 4 bytes: checked byte by byte (rare) */
  unsigned char first[256]; /* first[c]: some short word starts with byte c */
  unsigned char seen[4096]; /* seen[hash of the 3 bytes at offset 0 or 1 of a word] */
  const char *word[];
};

/* The 3 bytes at s, with bit 5 set in each (A-Z become a-z; the rest changes
 * consistently, and a match is always verified), hashed to 12 bits. */
static unsigned tri_hash(const unsigned char *s)
{
  unsigned v = ((unsigned)s[0] | (unsigned)s[1] << 8 | (unsigned)s[2] << 16) | 0x202020u;
  return (v * 0x9E3779B1u) >> 20;
}

static const char *const fixed_words[] = {"aws_", "sqlml_", "alias", "invoke", "outfile"};
#define FIXED_WORDS ((int)(sizeof fixed_words / sizeof fixed_words[0]))
static struct words *words;

static unsigned char lower(unsigned char c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

void rewrite_set_names(const char *const *names, int n)
{
  size_t size = sizeof(struct words) + (size_t)(FIXED_WORDS + n) * sizeof(char *);
  struct words *w = calloc(1, size);
  if (!w)
    return;
  for (int i = 0; i < FIXED_WORDS + n; i++) {
    const char *src = i < FIXED_WORDS ? fixed_words[i] : names[i - FIXED_WORDS];
    char *copy = strdup(src);
    if (!copy || !*copy) {
      free(copy);
      continue;
    }
    for (char *p = copy; *p; p++)
      *p = (char)lower((unsigned char)*p);
    w->word[w->count++] = copy;
    if (strlen(copy) < 4) {
      w->short_words++;
      w->first[(unsigned char)copy[0]] = 1;
    } else {
      /* A word of 4 bytes or more always has its offset-0 or offset-1 trigram at an
       * even position of the text: the scan looks at every other position only. */
      w->seen[tri_hash((const unsigned char *)copy)] = 1;
      w->seen[tri_hash((const unsigned char *)copy + 1)] = 1;
    }
  }
  __atomic_store_n(&words, w, __ATOMIC_RELEASE);
}

static bool word_at(const unsigned char *s, size_t left, const struct words *w)
{
  for (int k = 0; k < w->count; k++) {
    const char *word = w->word[k];
    size_t j = 0;
    while (word[j] && j < left && lower(s[j]) == (unsigned char)word[j])
      j++;
    if (!word[j])
      return true;
  }
  return false;
}

/* Does text contain any trigger word (ASCII case-insensitive)? One multiply and one
 * table load per two bytes; words are compared only where one may start. */
static bool mentions(const char *text, size_t len, const struct words *w)
{
  const unsigned char *s = (const unsigned char *)text;
  for (size_t i = 0; i + 3 <= len; i += 2)
    if (w->seen[tri_hash(s + i)] && (word_at(s + i, len - i, w) || (i > 0 && word_at(s + i - 1, len - i + 1, w))))
      return true;
  if (!w->short_words)
    return false;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = lower(s[i]);
    if (!w->first[c])
      continue;
    for (int k = 0; k < w->count; k++) {
      const char *word = w->word[k];
      if ((unsigned char)word[0] != c)
        continue;
      size_t j = 1;
      while (word[j] && i + j < len && lower(s[i + j]) == (unsigned char)word[j])
        j++;
      if (!word[j])
        return true;
    }
  }
  return false;
}

static const char *datadir(void)
{
  const char *home = dlsym(RTLD_DEFAULT, "mysql_real_data_home");
  return home && *home ? home : NULL;
}

const char *rewrite_functions_file(char *buf, size_t len)
{
  const char *dir = datadir();
  if (!dir)
    return NULL;
  snprintf(buf, len, "%s%s%s", dir, dir[strlen(dir) - 1] == '/' ? "" : "/", REWRITE_FUNCTIONS_FILE);
  return buf;
}

void rewrite_load_names(void)
{
  char path[1024], line[4096];
  const char *names[1024];
  int n = 0;
  FILE *f = rewrite_functions_file(path, sizeof path) ? fopen(path, "r") : NULL;
  if (f) {
    while (n < 1024 && fgets(line, sizeof line, f)) {
      if (line[0] == '#' || line[0] == '\n')
        continue;
      line[strcspn(line, "\t\r\n")] = '\0';
      if (line[0] && (names[n] = strdup(line)))
        n++;
    }
    fclose(f);
  }
  rewrite_set_names(names, n);
  for (int i = 0; i < n; i++)
    free((void *)names[i]);
}

int rewrite_preparse(void *thd, const void *event)
{
  (void)thd;
  const struct mysql_event_parse *e = event;
  if (e->event_subclass != MYSQL_AUDIT_PARSE_PREPARSE || !plugin_rewrite_enabled())
    return 0;
  const struct words *w = __atomic_load_n(&words, __ATOMIC_ACQUIRE);
  if (!w || !e->query.str || !mentions(e->query.str, e->query.length, w))
    return 0;
  static void *(*server_malloc)(unsigned int, size_t, int);
  if (!server_malloc)
    server_malloc = (void *(*)(unsigned int, size_t, int))dlsym(RTLD_DEFAULT, "_Z9my_mallocjmi");
  if (!server_malloc)
    return 0;
  int prepared = e->flags && (*e->flags & REWRITE_FLAG_IS_PREPARED_STATEMENT);
  char *text = NULL;
  size_t text_len = 0;
  if (pyhost_rewrite(e->query.str, e->query.length, prepared, server_malloc, &text, &text_len) == 0 && text) {
    e->rewritten_query->str = text;
    e->rewritten_query->length = text_len;
    *e->flags |= REWRITE_FLAG_QUERY_REWRITTEN;
    plugin_count(SQLML_COUNTER_REWRITTEN, 1);
  }
  return 0;
}

/* ---- diagnostics: the filter's cost, for bench/bench_rewrite.py ---------------------------- */

#include "udf_abi.h"
#include <time.h>

#define SQLML_EXPORT __attribute__((visibility("default")))

/* sqlml_rewrite_filter_ns(statement_text, iterations): nanoseconds one pre-parse filter
 * pass over the text costs, averaged over the iterations (the statement is not run). */
SQLML_EXPORT bool sqlml_rewrite_filter_ns_init(UDF_INIT *initid, UDF_ARGS *args, char *message)
{
  if (args->arg_count != 2) {
    snprintf(message, SQLML_ERRMSG_SIZE, "sqlml_rewrite_filter_ns(text, iterations)");
    return true;
  }
  args->arg_type[0] = UDF_STRING_RESULT;
  args->arg_type[1] = UDF_INT_RESULT;
  initid->maybe_null = true;
  initid->decimals = 3;
  return false;
}

SQLML_EXPORT void sqlml_rewrite_filter_ns_deinit(UDF_INIT *initid) { (void)initid; }

SQLML_EXPORT double sqlml_rewrite_filter_ns(UDF_INIT *initid, UDF_ARGS *args, char *is_null, char *error)
{
  (void)initid;
  (void)error;
  const struct words *w = __atomic_load_n(&words, __ATOMIC_ACQUIRE);
  if (!w || !args->args[0] || !args->args[1] || *(long long *)args->args[1] <= 0) {
    *is_null = 1;
    return 0;
  }
  long long n = *(long long *)args->args[1];
  volatile int hits = 0;
  struct timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  for (long long i = 0; i < n; i++)
    hits += mentions(args->args[0], args->lengths[0], w);
  clock_gettime(CLOCK_MONOTONIC, &b);
  return ((double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec)) / (double)n;
}
