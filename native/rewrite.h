/* rewrite: MySQL's pre-parse hook (see rewrite.c). */
#ifndef SQLML_REWRITE_H
#define SQLML_REWRITE_H

#include <stddef.h>

#include <stdbool.h>

/* In the server's datadir: one line per SageMaker function made with Aurora's DDL:
 * schema TAB name TAB definition (python/sqlml/rewrite/registry.py owns it). */
#define REWRITE_FUNCTIONS_FILE "sqlml_functions.tsv"
#define REWRITE_MAX_FUNCTIONS 4096
/* The longest schema or function name MySQL allows (NAME_CHAR_LEN). */
#define SQLML_IDENT_MAX 64

/* The parse-class audit event: may set a rewritten text. Always returns 0. */
int rewrite_preparse(void *thd, const void *event);

/* The query class's STATUS_END event: applies or drops a registry change that waits for
 * this statement's end. Always returns 0. */
int rewrite_query_end(void *thd, const void *event);

/* The registered functions (schema, name) whose calls make a statement worth looking at. */
void rewrite_set_names(const char *const *schemas, const char *const *names, int n);
/* A plain ASCII identifier ([A-Za-z0-9_$], 1 to 64 bytes): the only names registered. */
bool rewrite_valid_identifier(const char *s);
/* Reads them from REWRITE_FUNCTIONS_FILE. */
void rewrite_load_names(void);
/* The path of REWRITE_FUNCTIONS_FILE in buf, or NULL when the datadir is unknown. */
const char *rewrite_functions_file(char *buf, size_t len);

#endif
