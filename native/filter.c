/*
 * filter: which statements MySQL's pre-parse hook (rewrite.c) hands to Python. The
 * names of the functions registered with Aurora's DDL (filter_set_names, from
 * python/sqlml/rewrite/registry.py through the _sqlml_native module, or read from the
 * datadir's FILTER_FUNCTIONS_FILE when the plugin starts) and one pass over a
 * statement's bytes that says whether it names anything that can matter.
 */
#define _GNU_SOURCE
#include "filter.h"
#include "server_api.h"
#include "udf_abi.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* What makes a statement worth handing to Python: an immutable snapshot swapped
 * atomically when the registry changes (Aurora DDL). A scan holds a snapshot for one
 * pass over one statement (well under a millisecond); a replaced snapshot is freed
 * RETIRE_AFTER_S seconds later, so repeated DDL cannot grow memory without bound.
 *
 * A statement qualifies when it contains, as a whole identifier (ASCII case-insensitive):
 *   - a fixed word: an identifier starting with aws_ or sqlml_ (the native functions),
 *     or alias, invoke, outfile (Aurora's DDL, GRANT INVOKE, INTO OUTFILE S3);
 *   - a call of a registered function: its name followed by '(' and qualified by its
 *     schema (`s`.`f`(, s.f() or, unqualified, with the session's current database
 *     being that schema and the name not a native function's (CONCAT( is always the
 *     server's own, whatever stored function shares its name);
 *   - in a statement starting with DROP: a registered function's name or schema (DROP
 *     FUNCTION, DROP DATABASE, which the registry must follow).
 * Names are never matched inside longer identifiers: `f` does not match `ref` or `f1`. */
struct entry {
  unsigned char name_len, schema_len;
  bool native; /* a native function's name: an unqualified call means the native one */
  char name[SQLML_IDENT_MAX + 1];   /* lower case */
  char schema[SQLML_IDENT_MAX + 1]; /* as the server stores it */
};

struct words {
  int count;
  unsigned char name_len[SQLML_IDENT_MAX + 1]; /* some entry's name has this length */
  unsigned char first[256];                    /* some entry's name starts with this byte */
  struct entry entry[];
};

static struct words *words;

#define RETIRE_AFTER_S 10
struct retired {
  struct words *w;
  time_t at;
  struct retired *next;
};
static pthread_mutex_t retired_lock = PTHREAD_MUTEX_INITIALIZER;
static struct retired *retired;

/* Keeps `old` for RETIRE_AFTER_S seconds (a scan may still read it) and frees the
 * snapshots retired longer ago than that. */
static void retire(struct words *old)
{
  time_t now = time(NULL);
  struct retired *r = old ? malloc(sizeof *r) : NULL;
  pthread_mutex_lock(&retired_lock);
  for (struct retired **p = &retired; *p;) {
    if (now - (*p)->at > RETIRE_AFTER_S) {
      struct retired *gone = *p;
      *p = gone->next;
      free(gone->w);
      free(gone);
    } else {
      p = &(*p)->next;
    }
  }
  if (r) {
    *r = (struct retired){old, now, retired};
    retired = r;
  }
  pthread_mutex_unlock(&retired_lock);
}

static unsigned char lower(unsigned char c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

/* Bytes of an unquoted identifier (MySQL also allows any byte of a multi-byte character):
 * a table, since the scan asks this of every byte of every statement. */
static const unsigned char ident_table[256] = {
    ['0' ... '9'] = 1, ['A' ... 'Z'] = 1, ['a' ... 'z'] = 1, ['_'] = 1, ['$'] = 1, [0x80 ... 0xff] = 1};

static inline bool ident_byte(unsigned char c) { return ident_table[c]; }

bool filter_valid_identifier(const char *s)
{
  size_t n = 0;
  for (; s[n]; n++)
    if (n >= SQLML_IDENT_MAX || !(ident_byte((unsigned char)s[n]) && (unsigned char)s[n] < 0x80))
      return false;
  return n > 0;
}

void filter_set_names(const char *const *schemas, const char *const *names, int n)
{
  struct words *w = calloc(1, sizeof(struct words) + (size_t)(n > 0 ? n : 0) * sizeof(struct entry));
  if (!w)
    return;
  for (int i = 0; i < n; i++) {
    /* The registry writes only plain identifiers; anything else is not looked for. */
    if (!filter_valid_identifier(names[i]) || !filter_valid_identifier(schemas[i]))
      continue;
    struct entry *e = &w->entry[w->count++];
    e->name_len = (unsigned char)strlen(names[i]);
    e->schema_len = (unsigned char)strlen(schemas[i]);
    for (int k = 0; k < e->name_len; k++)
      e->name[k] = (char)lower((unsigned char)names[i][k]);
    memcpy(e->schema, schemas[i], e->schema_len);
    e->native = server_is_native_function(e->name, e->name_len) != 0; /* unknown: as native */
    w->name_len[e->name_len] = 1;
    w->first[(unsigned char)e->name[0]] = 1;
  }
  retire(__atomic_exchange_n(&words, w, __ATOMIC_ACQ_REL));
}

static bool same_word(const unsigned char *s, size_t n, const char *word)
{
  size_t k = 0;
  for (; k < n && word[k]; k++)
    if (lower(s[k]) != (unsigned char)word[k])
      return false;
  return k == n && !word[k];
}

static bool starts_with(const unsigned char *s, size_t n, const char *prefix)
{
  size_t k = 0;
  for (; prefix[k]; k++)
    if (k >= n || lower(s[k]) != (unsigned char)prefix[k])
      return false;
  return true;
}

static bool fixed_word(const unsigned char *s, size_t n)
{
  switch (lower(s[0])) {
  case 'a':
    return starts_with(s, n, "aws_") || same_word(s, n, "alias");
  case 's':
    return starts_with(s, n, "sqlml_");
  case 'i':
    return same_word(s, n, "invoke");
  case 'o':
    return same_word(s, n, "outfile");
  default:
    return false;
  }
}

static bool is_space(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

/* The schema written before the identifier that starts at `at` (s.f, `s`.`f`, s . f):
 * sets *schema and *len and returns true, or false when unqualified. */
static bool qualifier(const unsigned char *text, size_t at, const unsigned char **schema, size_t *len)
{
  size_t i = at;
  if (i > 0 && text[i - 1] == '`')
    i--;
  while (i > 0 && is_space(text[i - 1]))
    i--;
  if (i == 0 || text[i - 1] != '.')
    return false;
  i--;
  while (i > 0 && is_space(text[i - 1]))
    i--;
  size_t end = i;
  if (i > 0 && text[i - 1] == '`') {
    end = --i;
    while (i > 0 && text[i - 1] != '`')
      i--;
  } else {
    while (i > 0 && ident_byte(text[i - 1]))
      i--;
  }
  *schema = text + i;
  *len = end - i;
  return true;
}

/* Is the identifier at `at` (n bytes) followed by '(' (after an optional closing
 * backquote and spaces)? */
static bool called(const unsigned char *text, size_t len, size_t at, size_t n)
{
  size_t i = at + n;
  if (i < len && text[i] == '`')
    i++;
  while (i < len && is_space(text[i]))
    i++;
  return i < len && text[i] == '(';
}

static bool same_schema(const char *schema, size_t schema_len, const unsigned char *s, size_t n)
{
  /* Case-insensitive: with lower_case_table_names=1 the server folds schema names; a
   * false match here only costs a look from Python, which resolves names exactly. */
  if (schema_len != n)
    return false;
  for (size_t k = 0; k < n; k++)
    if (lower((unsigned char)schema[k]) != lower(s[k]))
      return false;
  return true;
}

const char *filter_current_db(struct filter_scan *sc)
{
  if (sc->db_state == 0)
    sc->db_state = server_current_db(sc->thd, sc->db, sizeof sc->db) > 0 ? 1 : -1;
  return sc->db_state > 0 ? sc->db : NULL;
}

/* Does the identifier at `at` (n bytes) name a registered function, called (or, in a
 * DROP statement, dropped) as that function? */
static bool registered(struct filter_scan *sc, const struct words *w, size_t at, size_t n, bool drop)
{
  const unsigned char *s = sc->text + at;
  if (n > SQLML_IDENT_MAX)
    return false;
  if (drop) {
    for (int k = 0; k < w->count; k++)
      if (same_word(s, n, w->entry[k].name) || same_schema(w->entry[k].schema, w->entry[k].schema_len, s, n))
        return true;
    return false;
  }
  if (!w->name_len[n] || !w->first[lower(s[0])] || !called(sc->text, sc->len, at, n))
    return false;
  const unsigned char *schema = NULL;
  size_t schema_len = 0;
  bool qualified = qualifier(sc->text, at, &schema, &schema_len);
  for (int k = 0; k < w->count; k++) {
    const struct entry *e = &w->entry[k];
    if (e->name_len != n || !same_word(s, n, e->name))
      continue;
    if (qualified) {
      if (same_schema(e->schema, e->schema_len, schema, schema_len))
        return true;
    } else if (!e->native) {
      const char *db = filter_current_db(sc);
      if (db && same_schema(e->schema, e->schema_len, (const unsigned char *)db, strlen(db)))
        return true;
    }
  }
  return false;
}

/* Where the statement's first word starts: after spaces and comments (C-style, "-- ", "#"). */
static size_t skip_leading_comments(const unsigned char *s, size_t len)
{
  size_t i = 0;
  for (;;) {
    while (i < len && is_space(s[i]))
      i++;
    if (i + 1 < len && s[i] == '/' && s[i + 1] == '*' && !(i + 2 < len && s[i + 2] == '!')) {
      const unsigned char *end = memmem(s + i + 2, len - i - 2, "*/", 2);
      if (!end)
        return len;
      i = (size_t)(end - s) + 2;
    } else if ((i + 2 < len && s[i] == '-' && s[i + 1] == '-' && is_space(s[i + 2])) || (i < len && s[i] == '#')) {
      while (i < len && s[i] != '\n')
        i++;
    } else {
      return i;
    }
  }
}

/* Does the statement qualify (see struct words)? One table test per byte; identifiers
 * are compared only where one starts. */
static bool mentions(struct filter_scan *sc, const struct words *w)
{
  const unsigned char *s = sc->text;
  size_t len = sc->len, i = skip_leading_comments(s, len);
  bool drop = w->count && len - i >= 5 && starts_with(s + i, 4, "drop") && !ident_byte(s[i + 4]);
  while (i < len) {
    if (!ident_byte(s[i])) {
      i++;
      continue;
    }
    size_t start = i;
    while (i < len && ident_byte(s[i]))
      i++;
    size_t n = i - start;
    if (fixed_word(s + start, n) || (w->count && registered(sc, w, start, n, drop)))
      return true;
  }
  return false;
}

bool filter_qualifies(struct filter_scan *sc)
{
  const struct words *w = __atomic_load_n(&words, __ATOMIC_ACQUIRE);
  return w && sc->text && mentions(sc, w);
}

static const char *datadir(void)
{
  const char *home = dlsym(RTLD_DEFAULT, "mysql_real_data_home");
  return home && *home ? home : NULL;
}

const char *filter_functions_file(char *buf, size_t len)
{
  const char *dir = datadir();
  if (!dir)
    return NULL;
  snprintf(buf, len, "%s%s%s", dir, dir[strlen(dir) - 1] == '/' ? "" : "/", FILTER_FUNCTIONS_FILE);
  return buf;
}

void filter_load_names(void)
{
  char path[1024], line[4096];
  /* Zeroed although only the first n are read: gcc's -Wmaybe-uninitialized cannot see that. */
  char *schemas[FILTER_MAX_FUNCTIONS] = {0}, *names[FILTER_MAX_FUNCTIONS] = {0};
  int n = 0;
  FILE *f = filter_functions_file(path, sizeof path) ? fopen(path, "r") : NULL;
  if (f) {
    /* Lines are "schema TAB name TAB definition"; anything else is skipped. */
    while (n < FILTER_MAX_FUNCTIONS && fgets(line, sizeof line, f)) {
      if (line[0] == '#')
        continue;
      char *name = strchr(line, '\t');
      char *rest = name ? strchr(name + 1, '\t') : NULL;
      if (!rest)
        continue;
      *name++ = '\0';
      *rest = '\0';
      if (!filter_valid_identifier(line) || !filter_valid_identifier(name))
        continue;
      schemas[n] = strdup(line);
      names[n] = strdup(name);
      if (schemas[n] && names[n])
        n++;
      else {
        free(schemas[n]);
        free(names[n]);
      }
    }
    fclose(f);
  }
  filter_set_names((const char *const *)schemas, (const char *const *)names, n);
  for (int i = 0; i < n; i++) {
    free(schemas[i]);
    free(names[i]);
  }
}

/* ---- diagnostics: the filter's cost, for bench/bench_rewrite.py ---------------------------- */

#define SQLML_EXPORT __attribute__((visibility("default")))
/* Bounds on the benchmark helper, which the benchmark creates and drops itself (it is not
 * in install.sql): at most FILTER_NS_MAX_ITERATIONS passes over at most FILTER_NS_MAX_BYTES,
 * and KILL QUERY is seen between passes (one pass is well under a millisecond). */
#define FILTER_NS_MAX_ITERATIONS 1000000LL
#define FILTER_NS_MAX_BYTES (1024 * 1024)

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
  const struct words *w = __atomic_load_n(&words, __ATOMIC_ACQUIRE);
  if (!w || !args->args[0] || !args->args[1] || *(long long *)args->args[1] <= 0) {
    *is_null = 1;
    return 0;
  }
  long long n = *(long long *)args->args[1];
  if (n > FILTER_NS_MAX_ITERATIONS || args->lengths[0] > FILTER_NS_MAX_BYTES) {
    server_error(1105, "sqlml_rewrite_filter_ns: at most 1,000,000 iterations over at most 1 MiB of text; "
                       "use smaller arguments");
    *error = 1;
    return 0;
  }
  void *thd = server_current_thd();
  struct filter_scan sc = {(const unsigned char *)args->args[0], args->lengths[0], thd, 0, ""};
  volatile int hits = 0;
  struct timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  for (long long i = 0; i < n; i++) {
    if ((i & 63) == 0 && server_killed(thd)) {
      server_error(1317 /* ER_QUERY_INTERRUPTED */, "Query execution was interrupted");
      *error = 1;
      return 0;
    }
    sc.db_state = 0;
    /* One snapshot per pass, as the hook does (snapshots are freed seconds after). */
    hits += mentions(&sc, __atomic_load_n(&words, __ATOMIC_ACQUIRE));
  }
  clock_gettime(CLOCK_MONOTONIC, &b);
  return ((double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec)) / (double)n;
}
