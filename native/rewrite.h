/* rewrite: MySQL's pre-parse hook (see rewrite.c). */
#ifndef SQLML_REWRITE_H
#define SQLML_REWRITE_H

#include <stddef.h>

/* In the server's datadir: one line per SageMaker function made with Aurora's DDL, its
 * name first (tab-separated fields follow; python/sqlml/rewrite/registry.py owns it). */
#define REWRITE_FUNCTIONS_FILE "sqlml_functions.tsv"

/* The parse-class audit event: may set a rewritten text. Always returns 0. */
int rewrite_preparse(void *thd, const void *event);

/* The function names that make a statement worth looking at (beside the fixed words). */
void rewrite_set_names(const char *const *names, int n);
/* Reads them from REWRITE_FUNCTIONS_FILE. */
void rewrite_load_names(void);
/* The path of REWRITE_FUNCTIONS_FILE in buf, or NULL when the datadir is unknown. */
const char *rewrite_functions_file(char *buf, size_t len);

#endif
