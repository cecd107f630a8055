/*
 * plugin: the server-plugin half of sqlml.so (see plugin.c). The engine reaches it
 * through the _sqlml_native module (pyhost.c).
 */
#ifndef SQLML_PLUGIN_H
#define SQLML_PLUGIN_H

#include <stdbool.h>

/* The status variables, in SHOW STATUS order. Aurora's seven keep Aurora's names and
 * meanings; sqlml's own totals carry the Sqlml_ prefix. The engine finds a counter by
 * its name without the prefix (sqlml/engine/counters.py). */
#define SQLML_COUNTERS(X)                                                                          \
  X(0, "Aurora_ml_logical_request_cnt")                                                            \
  X(1, "Aurora_ml_logical_response_cnt")                                                           \
  X(2, "Aurora_ml_actual_request_cnt")                                                             \
  X(3, "Aurora_ml_actual_response_cnt")                                                            \
  X(4, "Aurora_ml_cache_hit_cnt")                                                                  \
  X(5, "Aurora_ml_retry_request_cnt")                                                              \
  X(6, "Aurora_ml_single_request_cnt")                                                             \
  X(7, "Sqlml_batched_row_cnt")                                                                    \
  X(8, "Sqlml_warmup_cnt")                                                                         \
  X(9, "Sqlml_error_cnt")                                                                          \
  X(10, "Sqlml_throttle_cnt")                                                                      \
  X(11, "Sqlml_timeout_cnt")                                                                       \
  X(12, "Sqlml_batch_max_rows")                                                                    \
  X(13, "Sqlml_service_time_us")                                                                   \
  X(14, "Sqlml_access_denied_cnt")                                                                 \
  X(15, "Sqlml_rewritten_cnt")                                                                     \
  X(16, "Sqlml_memo_hit_cnt")                                                                     \
  X(17, "Sqlml_rewrite_analysed_cnt")
#define SQLML_COUNTER_COUNT 18
#define SQLML_COUNTER_LOGICAL_REQUEST 0
#define SQLML_COUNTER_LOGICAL_RESPONSE 1
#define SQLML_COUNTER_CACHE_HIT 4
#define SQLML_COUNTER_REWRITTEN 15
#define SQLML_COUNTER_MEMO_HIT 16
/* MySQL: statements the pre-parse filter handed to Python (rewritten or not). */
#define SQLML_COUNTER_REWRITE_ANALYSED 17

void plugin_count(int i, long n);
void plugin_count_max(int i, long v); /* raises counter i to v if lower */
long plugin_counter(int i);
const char *plugin_counter_name(int i); /* NULL past the last */

/* System variables, as the engine reads them. kind: 0 string, 1 bool, 2 integer. */
struct plugin_setting {
  const char *name;
  int kind;
  bool is_set;
  long long num;
  char str[2100]; /* an IAM role ARN is at most 2048 characters */
};

/* 0 while neither plugin is installed; otherwise changes whenever a value changes. */
unsigned long plugin_settings_generation(void);
/* Copies the installed plugins' variables into out; returns how many. */
int plugin_settings_snapshot(struct plugin_setting *out, int max, unsigned long *generation);
bool plugin_sqlml_ready(void);
/* sqlml_rewrite is ON and the sqlml plugin installed. */
bool plugin_rewrite_enabled(void);

#endif
