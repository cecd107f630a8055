/*
 * counters: sqlml's status variables (SHOW GLOBAL STATUS), kept in sqlml.so's memory so
 * the server reads them without Python. Aurora's seven keep Aurora's names and
 * meanings; sqlml's own totals carry the Sqlml_ prefix. The engine finds a counter by
 * its name without the prefix (python/sqlml/engine/counters.py). They are declared once,
 * in python/sqlml/crossing.py (STATUS_COUNTERS): the index (SQLML_COUNTER_<id>), the
 * name and SHOW STATUS order all come from that line.
 */
#ifndef SQLML_COUNTERS_H
#define SQLML_COUNTERS_H

#include "sqlml_constants.h" /* SQLML_COUNTERS(X), from python/sqlml/crossing.py */

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
