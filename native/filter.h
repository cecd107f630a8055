/* filter: which statements the pre-parse hook hands to Python (see filter.c). */
#ifndef SQLML_FILTER_H
#define SQLML_FILTER_H

#include <stdbool.h>
#include <stddef.h>

/* In the server's datadir: one line per SageMaker function made with Aurora's DDL:
 * schema TAB name TAB definition (python/sqlml/rewrite/registry.py owns it). */
#define FILTER_FUNCTIONS_FILE "sqlml_functions.tsv"
#define FILTER_MAX_FUNCTIONS 4096
/* The longest schema or function name MySQL allows (NAME_CHAR_LEN). */
#define SQLML_IDENT_MAX 64

/* One statement's pass: its bytes, its connection, and the current database once read. */
struct filter_scan {
  const unsigned char *text;
  size_t len;
  void *thd;
  int db_state; /* 0 not read yet, 1 read, -1 none */
  char db[SQLML_IDENT_MAX * 4 + 1];
};

/* Whether the statement names anything that can matter (see struct words in filter.c). */
bool filter_qualifies(struct filter_scan *sc);
/* The session's current database (read from the server once per scan), or NULL. */
const char *filter_current_db(struct filter_scan *sc);

/* The registered functions (schema, name) whose calls make a statement worth looking at. */
void filter_set_names(const char *const *schemas, const char *const *names, int n);
/* A plain ASCII identifier ([A-Za-z0-9_$], 1 to 64 bytes): the only names registered. */
bool filter_valid_identifier(const char *s);
/* Reads them from FILTER_FUNCTIONS_FILE. */
void filter_load_names(void);
/* The path of FILTER_FUNCTIONS_FILE in buf, or NULL when the datadir is unknown. */
const char *filter_functions_file(char *buf, size_t len);

#endif
