/*
 * The pre-parse statement rewrite on MySQL (the audit API's parse class, as MySQL's own
 * query-rewrite plugins use it). For each statement a client sends, before it is parsed:
 *
 *   1. if sqlml_rewrite is OFF, or the text names nothing that can matter (the fixed
 *      words aws_*, sqlml_*, alias, invoke, outfile, or a call of a function registered
 *      with Aurora's DDL, as a whole identifier and in its own schema: see struct
 *      words), leave it alone: this scan is all a statement without ML calls pays;
 *   2. otherwise ask sqlml.rewrite.rewrite(text, prepared, current database, connection)
 *      (Python) for a new text, and hand that to the server (allocated with the
 *      server's my_malloc, as it frees it);
 *   3. a change to the registry of Aurora-DDL functions (CREATE/DROP FUNCTION, DROP
 *      DATABASE) waits for the statement's end (the query class's STATUS_END event) and
 *      is applied only if the server ran the statement without error for that user.
 *
 * What to rewrite, and how, is decided in python/sqlml/rewrite; any failure there
 * leaves the statement exactly as written. MariaDB has no such hook.
 */
#define _GNU_SOURCE
#include "rewrite.h"
#include "counters.h"
#include "filter.h"
#include "pyhost.h"
#include "server_api.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MYSQL_AUDIT_PARSE_PREPARSE 1
#define MYSQL_AUDIT_QUERY_STATUS_END (1 << 2)
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

/* ---- registry changes wait for the statement's end ---------------------------------------
 * Python records a change (CREATE/DROP FUNCTION, DROP DATABASE) when it sees the statement
 * and applies it only when the server reports that statement ended without error. Here:
 * the connections (THD) that have such a change waiting, so that a statement's end costs
 * one load of `waiting` unless it is one of them. */
#define WAITING_MAX 64
static pthread_mutex_t waiting_lock = PTHREAD_MUTEX_INITIALIZER;
static void *waiting_thd[WAITING_MAX];
static int waiting;

/* Forgets thd's waiting change, if any; true if there was one. */
static bool unwait(void *thd)
{
  if (!__atomic_load_n(&waiting, __ATOMIC_ACQUIRE))
    return false;
  bool found = false;
  pthread_mutex_lock(&waiting_lock);
  for (int i = 0; i < WAITING_MAX; i++)
    if (waiting_thd[i] == thd) {
      waiting_thd[i] = NULL;
      __atomic_fetch_sub(&waiting, 1, __ATOMIC_RELEASE);
      found = true;
    }
  pthread_mutex_unlock(&waiting_lock);
  return found;
}

static bool await_end(void *thd)
{
  bool ok = false;
  pthread_mutex_lock(&waiting_lock);
  for (int i = 0; i < WAITING_MAX && !ok; i++)
    if (!waiting_thd[i]) {
      waiting_thd[i] = thd;
      __atomic_fetch_add(&waiting, 1, __ATOMIC_RELEASE);
      ok = true;
    }
  pthread_mutex_unlock(&waiting_lock);
  return ok;
}

static bool enabled; /* sqlml_rewrite ON and the sqlml plugin installed (plugin.c says) */

void rewrite_set_enabled(bool on) { __atomic_store_n(&enabled, on, __ATOMIC_RELAXED); }

int rewrite_preparse(void *thd, const void *event)
{
  const struct mysql_event_parse *e = event;
  if (e->event_subclass != MYSQL_AUDIT_PARSE_PREPARSE)
    return 0;
  /* A change waits for the end of the statement that asked for it; a new statement on
   * the same connection means it never ended (a parse error): Python drops it too. */
  unwait(thd);
  if (!__atomic_load_n(&enabled, __ATOMIC_RELAXED))
    return 0;
  struct filter_scan sc = {(const unsigned char *)e->query.str, e->query.length, thd, 0, ""};
  if (!filter_qualifies(&sc))
    return 0;
  static void *(*server_malloc)(unsigned int, size_t, int);
  if (!server_malloc)
    server_malloc = (void *(*)(unsigned int, size_t, int))dlsym(RTLD_DEFAULT, "_Z9my_mallocjmi");
  if (!server_malloc)
    return 0;
  int prepared = e->flags && (*e->flags & REWRITE_FLAG_IS_PREPARED_STATEMENT);
  const char *db = filter_current_db(&sc);
  struct pyhost_rewritten out = {NULL, 0, false};
  counter_add(SQLML_COUNTER_REWRITE_ANALYSED, 1);
  if (pyhost_rewrite(e->query.str, e->query.length, prepared, db, (unsigned long long)(uintptr_t)thd,
                     server_malloc, &out) != 0)
    return 0;
  if (out.awaits_end && !await_end(thd))
    fprintf(stderr, "sqlml: more than %d registry changes waiting; one is dropped\n", WAITING_MAX);
  if (out.text) {
    e->rewritten_query->str = out.text;
    e->rewritten_query->length = out.len;
    *e->flags |= REWRITE_FLAG_QUERY_REWRITTEN;
    counter_add(SQLML_COUNTER_REWRITTEN, 1);
  }
  return 0;
}

struct mysql_event_query { /* plugin_audit.h */
  int event_subclass;
  int status;
  unsigned long connection_id;
  int sql_command_id;
  struct lex_string query;
  const void *query_charset;
};

int rewrite_query_end(void *thd, const void *event)
{
  const struct mysql_event_query *e = event;
  if (e->event_subclass != MYSQL_AUDIT_QUERY_STATUS_END || !unwait(thd))
    return 0;
  pyhost_statement_ended((unsigned long long)(uintptr_t)thd, e->status, e->query.str, e->query.length);
  return 0;
}

