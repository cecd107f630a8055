/*
 * counters: sqlml's status variables (SHOW GLOBAL STATUS), kept in sqlml.so's memory so
 * the server reads them without Python. Aurora's seven keep Aurora's names and
 * meanings; sqlml's own totals carry the Sqlml_ prefix. The engine finds a counter by
 * its name without the prefix (python/sqlml/engine/counters.py). One line per counter:
 * the index (SQLML_COUNTER_<id>), the name, and SHOW STATUS order all come from it.
 */
#ifndef SQLML_COUNTERS_H
#define SQLML_COUNTERS_H

#define SQLML_COUNTERS(X)                                                                          \
  X(LOGICAL_REQUEST, "Aurora_ml_logical_request_cnt")                                              \
  X(LOGICAL_RESPONSE, "Aurora_ml_logical_response_cnt")                                            \
  X(ACTUAL_REQUEST, "Aurora_ml_actual_request_cnt")                                                \
  X(ACTUAL_RESPONSE, "Aurora_ml_actual_response_cnt")                                              \
  X(CACHE_HIT, "Aurora_ml_cache_hit_cnt")                                                          \
  X(RETRY_REQUEST, "Aurora_ml_retry_request_cnt")                                                  \
  X(SINGLE_REQUEST, "Aurora_ml_single_request_cnt")                                                \
  X(BATCHED_ROW, "Sqlml_batched_row_cnt")                                                          \
  X(WARMUP, "Sqlml_warmup_cnt")                                                                    \
  X(ERROR, "Sqlml_error_cnt")                                                                      \
  X(THROTTLE, "Sqlml_throttle_cnt")                                                                \
  X(TIMEOUT, "Sqlml_timeout_cnt")                                                                  \
  X(BATCH_MAX_ROWS, "Sqlml_batch_max_rows")                                                        \
  X(SERVICE_TIME_US, "Sqlml_service_time_us")                                                      \
  X(ACCESS_DENIED, "Sqlml_access_denied_cnt")                                                      \
  X(REWRITTEN, "Sqlml_rewritten_cnt")                                                              \
  X(MEMO_HIT, "Sqlml_memo_hit_cnt")                                                                \
  X(REWRITE_ANALYSED, "Sqlml_rewrite_analysed_cnt") /* MySQL: statements the filter gave Python */

enum sqlml_counter {
#define X(id, name) SQLML_COUNTER_##id,
  SQLML_COUNTERS(X)
#undef X
  SQLML_COUNTER_COUNT
};

/* The values, which the plugins' status variables point at. */
extern long sqlml_counter_values[SQLML_COUNTER_COUNT];

void counter_add(int i, long n);
void counter_max(int i, long v); /* raises counter i to v if lower */
long counter_value(int i);
const char *counter_name(int i); /* NULL past the last */

#endif
