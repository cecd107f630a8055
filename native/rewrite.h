/* rewrite: MySQL's pre-parse hook (see rewrite.c). */
#ifndef SQLML_REWRITE_H
#define SQLML_REWRITE_H

#include <stdbool.h>

/* Whether statements are looked at: sqlml_rewrite is ON and the sqlml plugin installed. */
void rewrite_set_enabled(bool on);

/* The parse-class audit event: may set a rewritten text. Always returns 0. */
int rewrite_preparse(void *thd, const void *event);

/* The query class's STATUS_END event: applies or drops a registry change that waits for
 * this statement's end. Always returns 0. */
int rewrite_query_end(void *thd, const void *event);

#endif
