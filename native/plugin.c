/*
 * The plugin part of sqlml.so: status variables, system variables, and (on MySQL) the
 * registration of sqlml's dynamic privileges. The same file is a UDF library; the
 * plugins are installed by install.sql with INSTALL PLUGIN sqlml / aws SONAME 'sqlml.so'.
 *
 * Both plugins are AUDIT plugins subscribed to nothing that costs: a MySQL DAEMON plugin
 * loads only on the exact server version it was built for, an AUDIT plugin does not
 * (PLATFORM.md section 3), and MariaDB's audit interface version is just as stable.
 *
 *   plugin "sqlml":     system variables sqlml_*, and on MySQL the dynamic privileges
 *   plugin "aws":       system variables aws_default_{sagemaker,comprehend,s3}_role
 *   plugin "aurora_ml": status variables Aurora_ml_* and Sqlml_*, and the system
 *                       variable aurora_ml_inference_timeout
 * (The server names a plugin's system variables <plugin>_<name>; MariaDB also prefixes
 * status variables with the plugin's name unless the first one already starts with it,
 * hence the aurora_ml plugin.)
 *
 * Counters are plain longs here (SHOW_LONG: FLUSH STATUS zeroes them) that the engine
 * bumps with atomic adds and the server reads without ever waiting for Python.
 * System variables are validated by the engine (sqlml.config) in their check function,
 * stored here, and read by the engine at statement start when their generation moved.
 */
#define _GNU_SOURCE
#include "counters.h"
#include "plugin_abi.h"
#include "filter.h"
#include "native_module.h"
#include "pyhost.h"
#include "rewrite.h"
#include "server_api.h"
#include "sqlml_variables.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SQLML_EXPORT __attribute__((visibility("default")))

/* ---- status variables: the counters (counters.h) ------------------------------------- */

static struct maria_show_var maria_status[SQLML_COUNTER_COUNT + 1] = {
#define X(id, name) [SQLML_COUNTER_##id] = {name, &sqlml_counter_values[SQLML_COUNTER_##id], MARIA_SHOW_ULONG},
    SQLML_COUNTERS(X)
#undef X
};

static struct mysql_show_var mysql_status[SQLML_COUNTER_COUNT + 1] = {
#define X(id, name)                                                                                \
  [SQLML_COUNTER_##id] = {name, (char *)&sqlml_counter_values[SQLML_COUNTER_##id], MYSQL_SHOW_LONG,          \
                          MYSQL_SHOW_SCOPE_GLOBAL},
    SQLML_COUNTERS(X)
#undef X
};

/* ---- system variables -------------------------------------------------------------------- */

static pthread_mutex_t settings_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long settings_generation = 1;
static int plugins_ready; /* bits: 1 sqlml, 2 aws, 4 aurora_ml; guarded by settings_lock */

static int check_setting(void *thd, struct sys_var_header *var, void *save, struct st_mysql_value *value);
static void update_setting(void *thd, struct sys_var_header *var, void *var_ptr, const void *save);
static void tell_below(void);

/* No PLUGIN_VAR_MEMALLOC: the servers disagree on who copies and frees such values
 * (MariaDB in its default update function, MySQL around any update function), so
 * update_setting keeps its own copy of every string it stores. */
#define STR_FLAGS PLUGIN_VAR_STR
#define STR_VAR(plugin, name, def, comment)                                                        \
  static char *plugin##_##name##_value;                                                            \
  static struct sys_var_str plugin##_##name = {STR_FLAGS, #name, comment, check_setting,            \
                                               update_setting, &plugin##_##name##_value, def};
#define BOOL_VAR(plugin, name, def, comment)                                                       \
  static char plugin##_##name##_value = def;                                                       \
  static struct sys_var_bool plugin##_##name = {PLUGIN_VAR_BOOL, #name, comment, check_setting,      \
                                                update_setting, &plugin##_##name##_value, def};
#define LL_VAR(plugin, name, def, min, max, comment)                                               \
  static long long plugin##_##name##_value = def;                                                  \
  static struct sys_var_longlong plugin##_##name = {PLUGIN_VAR_LONGLONG, #name, comment,           \
                                                    check_setting, update_setting,                 \
                                                    &plugin##_##name##_value, def, min, max, 1};

/* Each system variable once, by plugin and kind, in sqlml_variables.h, generated at build
 * time from python/sqlml/config.py's SYSTEM_VARIABLES (the one declaration; defaults come
 * from its Settings) as AWS_VARIABLES, SQLML_VARIABLES and AURORA_ML_VARIABLES, each
 * (STR, BOOL, LL) with STR(plugin, name, default, comment), BOOL(plugin, name, default,
 * comment), LL(plugin, name, default, min, max, comment). The declarations, the plugins'
 * variable arrays and the settings table all come from these lists. */
#define ALL_VARIABLES(STR, BOOL, LL)                                                               \
  AWS_VARIABLES(STR, BOOL, LL) SQLML_VARIABLES(STR, BOOL, LL) AURORA_ML_VARIABLES(STR, BOOL, LL)

ALL_VARIABLES(STR_VAR, BOOL_VAR, LL_VAR)

enum setting_kind { KIND_STR = 0, KIND_BOOL = 1, KIND_LL = 2 };

struct setting {
  const char *full_name; /* as SHOW VARIABLES shows it, and as sqlml.config knows it */
  enum setting_kind kind;
  struct sys_var_header *decl;
  int plugin_bit;
  bool is_set; /* set by SET GLOBAL, my.cnf or the command line; guarded by settings_lock */
  char *owned; /* strings: our copy of the value SET GLOBAL stored last */
};

/* The bit of each plugin in plugins_ready. */
#define PLUGIN_BIT_sqlml 1
#define PLUGIN_BIT_aws 2
#define PLUGIN_BIT_aurora_ml 4

#define S(plugin, name, kind)                                                                      \
  {#plugin "_" #name, kind, (struct sys_var_header *)&plugin##_##name, PLUGIN_BIT_##plugin, false, NULL},
#define S_STR(plugin, name, def, comment) S(plugin, name, KIND_STR)
#define S_BOOL(plugin, name, def, comment) S(plugin, name, KIND_BOOL)
#define S_LL(plugin, name, def, min, max, comment) S(plugin, name, KIND_LL)
static struct setting settings[] = {ALL_VARIABLES(S_STR, S_BOOL, S_LL)};
#undef S
#define SETTING_COUNT ((int)(sizeof settings / sizeof settings[0]))

/* Each plugin's variables, as the server's plugin descriptor wants them (NULL-ended). */
#define HDR(plugin, name) (struct sys_var_header *)&plugin##_##name,
#define HDR_STR(plugin, name, def, comment) HDR(plugin, name)
#define HDR_BOOL(plugin, name, def, comment) HDR(plugin, name)
#define HDR_LL(plugin, name, def, min, max, comment) HDR(plugin, name)
static struct sys_var_header *aws_vars[] = {AWS_VARIABLES(HDR_STR, HDR_BOOL, HDR_LL) NULL};
static struct sys_var_header *sqlml_vars[] = {SQLML_VARIABLES(HDR_STR, HDR_BOOL, HDR_LL) NULL};
static struct sys_var_header *aurora_ml_vars[] = {AURORA_ML_VARIABLES(HDR_STR, HDR_BOOL, HDR_LL) NULL};
#undef HDR

static struct setting *setting_of(const struct sys_var_header *decl)
{
  for (int i = 0; i < SETTING_COUNT; i++)
    if (settings[i].decl == decl)
      return &settings[i];
  return NULL;
}

static bool differs_from_default(const struct setting *s)
{
  switch (s->kind) {
  case KIND_STR: {
    const struct sys_var_str *v = (const struct sys_var_str *)s->decl;
    return strcmp(*v->value ? *v->value : "", v->def_val ? v->def_val : "") != 0;
  }
  case KIND_BOOL: {
    const struct sys_var_bool *v = (const struct sys_var_bool *)s->decl;
    return (*v->value != 0) != (v->def_val != 0);
  }
  default: {
    const struct sys_var_longlong *v = (const struct sys_var_longlong *)s->decl;
    return *v->value != v->def_val;
  }
  }
}

/* Whether str (len bytes) is word, in any case. */
static bool bool_word(const char *str, int len, const char *word)
{
  return len >= 0 && (size_t)len == strlen(word) && strncasecmp(str, word, (size_t)len) == 0;
}

/* A value from SET GLOBAL: read it, let the engine validate it (the message says what is
 * allowed), and leave it in `save` for update_setting. Strings are copied into the
 * statement's memory, as the server's own check does. */
static int check_setting(void *thd, struct sys_var_header *var, void *save, struct st_mysql_value *value)
{
  struct setting *s = setting_of(var);
  char err[SQLML_ERRMSG_SIZE];
  char buf[256];
  if (!s)
    return 1;
  switch (s->kind) {
  case KIND_STR: {
    int len = (int)sizeof buf;
    const char *str = value->val_str(value, buf, &len);
    if (str) {
      str = server_thd_strmake(thd, str, (size_t)len);
      if (!str)
        return 1;
    }
    if (pyhost_check_setting(s->full_name, str, str ? (long long)len : 0, 0, err, sizeof err) != 0)
      goto refused;
    *(const char **)save = str;
    return 0;
  }
  case KIND_BOOL: {
    long long n = -1;
    if (value->value_type(value) == MYSQL_VALUE_TYPE_STRING) {
      int len = (int)sizeof buf;
      const char *str = value->val_str(value, buf, &len);
      /* Whole words only, as the server's own boolean variables take them: no prefixes. */
      if (str && bool_word(str, len, "ON"))
        n = 1;
      else if (str && bool_word(str, len, "OFF"))
        n = 0;
    } else if (value->value_type(value) != MYSQL_VALUE_TYPE_INT || value->val_int(value, &n) != 0) {
      n = -1; /* 1.0 or 1e0: the server refuses those for its own booleans too */
    }
    if (n != 0 && n != 1) {
      snprintf(err, sizeof err, "%s must be ON or OFF (1 or 0)", s->full_name);
      goto refused;
    }
    *(char *)save = (char)n;
    return 0;
  }
  default: {
    long long n = 0;
    if (value->value_type(value) != MYSQL_VALUE_TYPE_INT || value->val_int(value, &n) != 0) {
      snprintf(err, sizeof err, "%s must be an integer", s->full_name);
      goto refused;
    }
    if (value->is_unsigned(value) && n < 0)
      n = -1; /* beyond BIGINT: let the range check refuse it */
    if (pyhost_check_setting(s->full_name, NULL, n, 1, err, sizeof err) != 0)
      goto refused;
    *(long long *)save = n;
    return 0;
  }
  }
refused:
  server_error(1231 /* ER_WRONG_VALUE_FOR_VAR */, err);
  return 1;
}

static void update_setting(void *thd, struct sys_var_header *var, void *var_ptr, const void *save)
{
  (void)thd;
  struct setting *s = setting_of(var);
  char *old = NULL;
  char *copy = NULL;
  if (s && s->kind == KIND_STR) {
    /* save holds a string in the statement's memory (or the default): keep a copy. */
    const char *value = *(const char *const *)save;
    copy = strdup(value ? value : "");
    if (!copy)
      return; /* out of memory: keep the old value */
  }
  pthread_mutex_lock(&settings_lock);
  switch (s ? s->kind : KIND_LL) {
  case KIND_STR:
    /* Swapped under settings_lock: no reader is copying the old string when it is freed. */
    *(char **)var_ptr = copy;
    old = s->owned;
    s->owned = copy;
    break;
  case KIND_BOOL:
    *(char *)var_ptr = *(const char *)save;
    break;
  default:
    *(long long *)var_ptr = *(const long long *)save;
  }
  /* One rule for every source (SET GLOBAL, my.cnf, command line, SET ... = DEFAULT):
   * a variable at its default leaves the setting to sqlml.cnf and the environment. */
  if (s)
    s->is_set = differs_from_default(s);
  settings_generation++;
  tell_below();
  pthread_mutex_unlock(&settings_lock);
  free(old);
}

static unsigned long settings_generation_now(void)
{
  pthread_mutex_lock(&settings_lock);
  unsigned long g = plugins_ready ? settings_generation : 0;
  pthread_mutex_unlock(&settings_lock);
  return g;
}

static int settings_snapshot(struct native_setting *out, int max, unsigned long *generation)
{
  int n = 0;
  pthread_mutex_lock(&settings_lock);
  *generation = plugins_ready ? settings_generation : 0;
  for (int i = 0; i < SETTING_COUNT && n < max; i++) {
    const struct setting *s = &settings[i];
    if (!(plugins_ready & s->plugin_bit))
      continue;
    struct native_setting *o = &out[n++];
    o->name = s->full_name;
    o->is_set = s->is_set;
    o->kind = (int)s->kind;
    o->str[0] = '\0';
    o->num = 0;
    if (s->kind == KIND_STR) {
      const char *v = *((const struct sys_var_str *)s->decl)->value;
      snprintf(o->str, sizeof o->str, "%s", v ? v : "");
    } else if (s->kind == KIND_BOOL) {
      o->num = *((const struct sys_var_bool *)s->decl)->value != 0;
    } else {
      o->num = *((const struct sys_var_longlong *)s->decl)->value;
    }
  }
  pthread_mutex_unlock(&settings_lock);
  return n;
}

/* Tells the layers below what they act on (called with settings_lock held): the
 * rewriter whether sqlml_rewrite is ON with the sqlml plugin installed, server_api
 * whether the SQLML_* privileges exist. */
static void tell_below(void)
{
  bool sqlml_ready = plugins_ready & PLUGIN_BIT_sqlml;
  rewrite_set_enabled(sqlml_ready && sqlml_rewrite_value);
  server_set_privileges_ready(sqlml_ready);
}

/* ---- init and deinit ------------------------------------------------------------------------ */

static const struct native_settings_source settings_source = {settings_generation_now, settings_snapshot};

static void mark_ready(int bit, bool ready)
{
  native_set_settings_source(&settings_source); /* the engine reads our variables from now on */
  pthread_mutex_lock(&settings_lock);
  if (ready) {
    plugins_ready |= bit;
    /* Values from my.cnf or the command line count as set when they differ from the
     * default (the server does not tell us where a value came from; see update_setting). */
    for (int i = 0; i < SETTING_COUNT; i++)
      if (settings[i].plugin_bit == bit)
        settings[i].is_set = differs_from_default(&settings[i]);
  } else {
    plugins_ready &= ~bit;
  }
  tell_below();
  settings_generation++;
  pthread_mutex_unlock(&settings_lock);
}

/* Fails a plugin's init, with the reason in the error log, when this server's ABI is not
 * the one sqlml.so was built for (server_api.h): the server then unloads the plugin
 * instead of running code that would misread its structures. */
static bool abi_refused(const char *plugin)
{
  server_api_init();
  const char *problem = server_abi_problem();
  if (problem)
    fprintf(stderr, "sqlml: refusing to initialise the %s plugin: %s (sqlml_version() says which "
                    "servers sqlml supports)\n", plugin, problem);
  return problem != NULL;
}

static int sqlml_plugin_init(void *p)
{
  (void)p;
  if (abi_refused("sqlml"))
    return 1;
  if (!server_is_mariadb()) {
    if (server_register_privileges() != 0)
      fprintf(stderr, "sqlml: could not register the SQLML_* dynamic privileges: the ML functions will "
                      "refuse to run\n");
    filter_load_names();
  }
  mark_ready(PLUGIN_BIT_sqlml, true);
  return 0;
}

static int sqlml_plugin_deinit(void *p)
{
  (void)p;
  mark_ready(PLUGIN_BIT_sqlml, false);
  return 0;
}

/* Plugins whose only work is to say that their variables are there (bit: see plugins_ready). */
#define READY_ONLY_PLUGIN(name, bit)                                                               \
  static int name##_plugin_init(void *p)                                                           \
  {                                                                                                \
    (void)p;                                                                                       \
    if (abi_refused(#name))                                                                        \
      return 1;                                                                                    \
    mark_ready(bit, true);                                                                         \
    return 0;                                                                                      \
  }                                                                                                \
  static int name##_plugin_deinit(void *p)                                                         \
  {                                                                                                \
    (void)p;                                                                                       \
    mark_ready(bit, false);                                                                        \
    return 0;                                                                                      \
  }

READY_ONLY_PLUGIN(aws, PLUGIN_BIT_aws)
READY_ONLY_PLUGIN(aurora_ml, PLUGIN_BIT_aurora_ml)

static void maria_notify(void *thd, unsigned int event_class, const void *event)
{
  (void)thd;
  (void)event_class;
  (void)event;
}

static int mysql_notify(void *thd, int event_class, const void *event)
{
  if (event_class == MYSQL_AUDIT_PARSE_CLASS)
    return rewrite_preparse(thd, event);
  if (event_class == MYSQL_AUDIT_QUERY_CLASS)
    return rewrite_query_end(thd, event);
  return 0;
}

/* Neither server accepts an audit plugin subscribed to nothing. MariaDB: take the
 * connection class (one empty call per connect and disconnect); MySQL: server shutdown. */
static struct maria_audit maria_audit = {MARIA_AUDIT_INTERFACE_VERSION, NULL, maria_notify,
                                         {MARIA_AUDIT_CONNECTION_CLASSMASK}};
static struct mysql_audit mysql_audit = {
    MYSQL_AUDIT_INTERFACE_VERSION, NULL, mysql_notify,
    {[MYSQL_AUDIT_SERVER_SHUTDOWN_CLASS] = MYSQL_AUDIT_SERVER_SHUTDOWN_SHUTDOWN}};
/* The sqlml plugin also sees each statement before it is parsed, and its end status
 * (rewrite.c: registry changes wait for the statement's success). */
static struct mysql_audit mysql_audit_rewrite = {
    MYSQL_AUDIT_INTERFACE_VERSION, NULL, mysql_notify,
    {[MYSQL_AUDIT_PARSE_CLASS] = MYSQL_AUDIT_PARSE_PREPARSE_MASK,
     [MYSQL_AUDIT_QUERY_CLASS] = MYSQL_AUDIT_QUERY_STATUS_END_MASK,
     [MYSQL_AUDIT_SERVER_SHUTDOWN_CLASS] = MYSQL_AUDIT_SERVER_SHUTDOWN_SHUTDOWN}};

#define AUTHOR "sqlml"
#define DESCR_SQLML "sqlml: sqlml_* settings and the ML access privileges"
#define DESCR_AURORA_ML "sqlml: Aurora_ml_* and Sqlml_* status variables, aurora_ml_inference_timeout"
#define DESCR_AWS "sqlml: aws_default_*_role settings (IAM roles assumed with STS)"
#define PLUGIN_VERSION 0x0100

SQLML_EXPORT int _maria_plugin_interface_version_ = MARIA_PLUGIN_INTERFACE_VERSION;
SQLML_EXPORT int _maria_sizeof_struct_st_plugin_ = sizeof(struct maria_plugin);
SQLML_EXPORT struct maria_plugin _maria_plugin_declarations_[] = {
    {PLUGIN_TYPE_AUDIT, &maria_audit, "sqlml", AUTHOR, DESCR_SQLML, PLUGIN_LICENSE_GPL,
     sqlml_plugin_init, sqlml_plugin_deinit, PLUGIN_VERSION, NULL, sqlml_vars, SQLML_VERSION,
     MARIA_PLUGIN_MATURITY_STABLE},
    {PLUGIN_TYPE_AUDIT, &maria_audit, "aurora_ml", AUTHOR, DESCR_AURORA_ML, PLUGIN_LICENSE_GPL,
     aurora_ml_plugin_init, aurora_ml_plugin_deinit, PLUGIN_VERSION, maria_status, aurora_ml_vars,
     SQLML_VERSION, MARIA_PLUGIN_MATURITY_STABLE},
    {PLUGIN_TYPE_AUDIT, &maria_audit, "aws", AUTHOR, DESCR_AWS, PLUGIN_LICENSE_GPL, aws_plugin_init,
     aws_plugin_deinit, PLUGIN_VERSION, NULL, aws_vars, SQLML_VERSION, MARIA_PLUGIN_MATURITY_STABLE},
    {0, NULL, NULL, NULL, NULL, 0, NULL, NULL, 0, NULL, NULL, NULL, 0}};

SQLML_EXPORT int _mysql_plugin_interface_version_ = MYSQL_PLUGIN_INTERFACE_VERSION;
SQLML_EXPORT int _mysql_sizeof_struct_st_plugin_ = sizeof(struct mysql_plugin);
SQLML_EXPORT struct mysql_plugin _mysql_plugin_declarations_[] = {
    {PLUGIN_TYPE_AUDIT, &mysql_audit_rewrite, "sqlml", AUTHOR, DESCR_SQLML, PLUGIN_LICENSE_GPL,
     sqlml_plugin_init, NULL, sqlml_plugin_deinit, PLUGIN_VERSION, NULL, sqlml_vars, NULL, 0},
    {PLUGIN_TYPE_AUDIT, &mysql_audit, "aurora_ml", AUTHOR, DESCR_AURORA_ML, PLUGIN_LICENSE_GPL,
     aurora_ml_plugin_init, NULL, aurora_ml_plugin_deinit, PLUGIN_VERSION, mysql_status, aurora_ml_vars,
     NULL, 0},
    {PLUGIN_TYPE_AUDIT, &mysql_audit, "aws", AUTHOR, DESCR_AWS, PLUGIN_LICENSE_GPL, aws_plugin_init,
     NULL, aws_plugin_deinit, PLUGIN_VERSION, NULL, aws_vars, NULL, 0},
    {0, NULL, NULL, NULL, NULL, 0, NULL, NULL, NULL, 0, NULL, NULL, NULL, 0}};
