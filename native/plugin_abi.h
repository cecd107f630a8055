/*
 * The server-plugin ABI of MariaDB 10.x/11.x (mysql/plugin.h, plugin_audit.h) and of
 * Oracle MySQL 8.0/8.4/9.x (mysql/plugin.h, plugin_audit.h, components/services/ headers),
 * declared here so that one sqlml.so builds without either server's headers and loads
 * in both. Only what sqlml uses is declared; field order follows the servers' headers.
 *
 * Both servers read a different set of exported symbols: MariaDB reads _maria_*
 * (and ignores _mysql_* when _maria_* exist), MySQL reads _mysql_* only.
 */
#ifndef SQLML_PLUGIN_ABI_H
#define SQLML_PLUGIN_ABI_H

#include <stddef.h>

/* ---- both servers ---------------------------------------------------------------- */

#define PLUGIN_TYPE_AUDIT 5
#define PLUGIN_LICENSE_GPL 1

/* st_mysql_sys_var flags (identical values on both servers for these). */
#define PLUGIN_VAR_BOOL 0x0001
#define PLUGIN_VAR_LONGLONG 0x0004
#define PLUGIN_VAR_STR 0x0005
#define PLUGIN_VAR_TYPEMASK 0x007f
#define PLUGIN_VAR_MEMALLOC 0x8000 /* the server copies and frees string values */

/* st_mysql_value::value_type */
#define MYSQL_VALUE_TYPE_STRING 0
#define MYSQL_VALUE_TYPE_REAL 1
#define MYSQL_VALUE_TYPE_INT 2

struct st_mysql_value {
  int (*value_type)(struct st_mysql_value *);
  const char *(*val_str)(struct st_mysql_value *, char *buffer, int *length);
  int (*val_real)(struct st_mysql_value *, double *realbuf);
  int (*val_int)(struct st_mysql_value *, long long *intbuf);
  int (*is_unsigned)(struct st_mysql_value *);
};

struct sys_var_header;
typedef int (*sysvar_check_fn)(void *thd, struct sys_var_header *var, void *save,
                               struct st_mysql_value *value);
typedef void (*sysvar_update_fn)(void *thd, struct sys_var_header *var, void *var_ptr,
                                 const void *save);

#define SYSVAR_HEADER                                                                              \
  int flags;                                                                                       \
  const char *name;                                                                                \
  const char *comment;                                                                             \
  sysvar_check_fn check;                                                                           \
  sysvar_update_fn update

struct sys_var_header {
  SYSVAR_HEADER;
};
struct sys_var_str { /* MYSQL_SYSVAR_STR */
  SYSVAR_HEADER;
  char **value;
  const char *def_val;
};
struct sys_var_bool { /* MYSQL_SYSVAR_BOOL: my_bool (MariaDB) and bool (MySQL) are one byte */
  SYSVAR_HEADER;
  char *value;
  char def_val;
};
struct sys_var_longlong { /* MYSQL_SYSVAR_LONGLONG */
  SYSVAR_HEADER;
  long long *value;
  long long def_val;
  long long min_val;
  long long max_val;
  long long blk_sz;
};

/* ---- MariaDB ------------------------------------------------------------------------ */

#define MARIA_PLUGIN_INTERFACE_VERSION 0x010f
#define MARIA_AUDIT_INTERFACE_VERSION 0x0302
#define MARIA_AUDIT_CONNECTION_CLASSMASK (1UL << 1)
#define MARIA_SHOW_ULONG 3 /* SHOW_ULONG (SHOW_LONG): reset by FLUSH STATUS */
#define MARIA_PLUGIN_MATURITY_STABLE 5

struct maria_show_var {
  const char *name;
  void *value;
  int type;
};

struct maria_audit {
  int interface_version;
  void (*release_thd)(void *thd);
  void (*event_notify)(void *thd, unsigned int event_class, const void *event);
  unsigned long class_mask[1];
};

struct maria_plugin {
  int type;
  void *info;
  const char *name;
  const char *author;
  const char *descr;
  int license;
  int (*init)(void *);
  int (*deinit)(void *);
  unsigned int version;
  struct maria_show_var *status_vars;
  struct sys_var_header **system_vars;
  const char *version_info;
  unsigned int maturity;
};

/* ---- Oracle MySQL --------------------------------------------------------------------- */

#define MYSQL_PLUGIN_INTERFACE_VERSION 0x010B
#define MYSQL_AUDIT_INTERFACE_VERSION 0x0401
#define MYSQL_SHOW_LONG 3 /* SHOW_LONG: reset by FLUSH STATUS */
#define MYSQL_SHOW_SCOPE_GLOBAL 1
#define MYSQL_AUDIT_PARSE_CLASS 2
#define MYSQL_AUDIT_PARSE_PREPARSE_MASK 1
#define MYSQL_AUDIT_SERVER_SHUTDOWN_CLASS 7
#define MYSQL_AUDIT_QUERY_CLASS 9
#define MYSQL_AUDIT_QUERY_STATUS_END_MASK (1 << 2)
#define MYSQL_AUDIT_SERVER_SHUTDOWN_SHUTDOWN 1
/* MYSQL_AUDIT_CLASS_MASK_SIZE is 11 in 8.0 and grew since: the server reads only as
 * many entries as it knows, so a longer, zero-filled array is safe on every version. */
#define MYSQL_AUDIT_CLASS_MASK_ROOM 32

struct mysql_show_var {
  const char *name;
  char *value;
  int type;
  int scope;
};

struct mysql_audit {
  int interface_version;
  void (*release_thd)(void *thd);
  int (*event_notify)(void *thd, int event_class, const void *event);
  unsigned long class_mask[MYSQL_AUDIT_CLASS_MASK_ROOM];
};

struct mysql_plugin {
  int type;
  void *info;
  const char *name;
  const char *author;
  const char *descr;
  int license;
  int (*init)(void *);
  int (*check_uninstall)(void *);
  int (*deinit)(void *);
  unsigned int version;
  struct mysql_show_var *status_vars;
  struct sys_var_header **system_vars;
  void *reserved1;
  unsigned long flags;
};

/* Component services (components/services/ headers), function pointers in header order.
 * DEFINE_BOOL_METHOD returns 0 for success (has_global_grant: nonzero = granted). */
struct mysql_registry_service {
  int (*acquire)(const char *name, void **out);
  int (*acquire_related)(const char *name, void *related, void **out);
  int (*release)(void *service);
};
struct mysql_dynamic_privilege_register {
  int (*register_privilege)(const char *name, size_t length);
  int (*unregister_privilege)(const char *name, size_t length);
};
struct mysql_global_grants_check {
  int (*has_global_grant)(void *security_context, const char *name, size_t length);
};
struct mysql_thd_security_context {
  int (*get)(void *thd, void **out_ctx);
  int (*set)(void *thd, void *in_ctx);
};
/* get(ctx, "privilege_super", &bool): whether the context holds the static SUPER privilege. */
struct mysql_security_context_options {
  int (*get)(void *security_context, const char *name, void *inout_value);
  int (*set)(void *security_context, const char *name, void *value);
};

#endif
