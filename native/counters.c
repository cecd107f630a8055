/* counters: see counters.h. Atomic, so any thread may add without a lock. */
#include "counters.h"

#include <stdbool.h>
#include <stddef.h>

long sqlml_counter_values[SQLML_COUNTER_COUNT];

static const char *const names[SQLML_COUNTER_COUNT] = {
#define X(id, name) [SQLML_COUNTER_##id] = name,
    SQLML_COUNTERS(X)
#undef X
};

void counter_add(int i, long n)
{
  if (i >= 0 && i < SQLML_COUNTER_COUNT)
    __atomic_fetch_add(&sqlml_counter_values[i], n, __ATOMIC_RELAXED);
}

void counter_max(int i, long v)
{
  if (i < 0 || i >= SQLML_COUNTER_COUNT)
    return;
  long seen = __atomic_load_n(&sqlml_counter_values[i], __ATOMIC_RELAXED);
  while (v > seen && !__atomic_compare_exchange_n(&sqlml_counter_values[i], &seen, v, true, __ATOMIC_RELAXED,
                                                  __ATOMIC_RELAXED))
    ;
}

long counter_value(int i)
{
  return i >= 0 && i < SQLML_COUNTER_COUNT ? __atomic_load_n(&sqlml_counter_values[i], __ATOMIC_RELAXED) : 0;
}

const char *counter_name(int i) { return i >= 0 && i < SQLML_COUNTER_COUNT ? names[i] : NULL; }
