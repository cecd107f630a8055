/* native_module: the _sqlml_native module (see native_module.c). */
#ifndef SQLML_NATIVE_MODULE_H
#define SQLML_NATIVE_MODULE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdbool.h>

/* The module's init, registered with PyImport_AppendInittab before Python starts. */
PyObject *native_module_init(void);

/* Whether gperftools' tcmalloc is the process's malloc (Debian's MySQL links it). */
bool native_tcmalloc(void);

/* System variables, as the engine reads them. kind: 0 string, 1 bool, 2 integer. */
struct native_setting {
  const char *name;
  int kind;
  bool is_set;
  long long num;
  char str[2100]; /* an IAM role ARN is at most 2048 characters */
};

/* Where they come from: the plugins that declare them (plugin.c gives this once one of
 * them starts; until then there are none, at generation 0). */
struct native_settings_source {
  unsigned long (*generation)(void); /* changes whenever a value changes */
  int (*snapshot)(struct native_setting *out, int max, unsigned long *generation); /* how many */
};
void native_set_settings_source(const struct native_settings_source *source);

#endif
