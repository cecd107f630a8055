/*
 * pyhost: the embedded CPython that every sqlml UDF crosses into.
 *
 * It boots Python once per server process (isolated config, the venv named in
 * sqlml.cnf beside the library), keeps one Python thread state per server thread
 * for the thread's whole life, and is the single place where a Python exception
 * becomes a SQL error. Nothing here knows what a SQL function means: that is
 * python/sqlml/bridge.py's job.
 */
#ifndef SQLML_PYHOST_H
#define SQLML_PYHOST_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdbool.h>
#include <stddef.h>

/* Boots Python and imports sqlml.bridge once per process. Returns 0 when Python is
 * ready; otherwise writes why into err (NUL-terminated, at most errlen bytes) and
 * returns -1. Safe to call from any thread, any number of times. */
int pyhost_boot(char *err, size_t errlen);

/* Takes this server thread's Python thread state and the GIL. The thread state is
 * created on the thread's first call and destroyed when the thread exits. */
void pyhost_enter(void);

/* Releases the GIL taken by pyhost_enter(). */
void pyhost_leave(void);

/* sqlml.bridge.prepare, a borrowed reference valid after a successful boot. */
PyObject *pyhost_prepare_fn(void);

/* Consumes the pending Python exception and writes its SQL-facing message into buf
 * (cut on a UTF-8 character boundary to fit). Returns the SQL error number to raise.
 * Exceptions that are not sqlml errors are also printed to the server's error log. */
unsigned pyhost_take_error(char *buf, size_t buflen);

/* Asks sqlml.config.check_system_variable whether a SET GLOBAL value is allowed (a
 * string, NULL, or an integer when is_num). Returns 0 if so; otherwise -1 with the
 * reason (what is allowed) in err. Boots Python if needed. */
int pyhost_check_setting(const char *name, const char *str, long long num, int is_num, char *err,
                         size_t errlen);

/* What sqlml.rewrite.rewrite said about a statement: a new text (NUL-terminated, made
 * with the server's my_malloc, which the server frees) or NULL to leave it as written,
 * and whether a registry change now waits for this statement's end. */
struct pyhost_rewritten {
  char *text;
  size_t len;
  bool awaits_end;
};

/* Asks sqlml.rewrite.rewrite(query, prepared, db, connection). 0 on success; -1 on any
 * failure (the statement runs as written). db: the current database or NULL. */
int pyhost_rewrite(const char *query, size_t len, int prepared, const char *db, unsigned long long connection,
                   void *(*alloc)(unsigned int, size_t, int), struct pyhost_rewritten *out);

/* Tells sqlml.rewrite.statement_ended(connection, status, query) that the connection's
 * statement ended with status (0: success, else the error number). */
void pyhost_statement_ended(unsigned long long connection, int status, const char *query, size_t len);

#endif
