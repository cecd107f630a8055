/*
 * server_api: see server_api.h. Symbols are looked up with dlsym in the server
 * process, by their C name (MariaDB) or their Itanium-mangled C++ name (MySQL).
 */
#define _GNU_SOURCE
#include "server_api.h"
#include "plugin_abi.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ME_WARNING_MARIADB 2048
#define SL_WARNING_MYSQL 1 /* Sql_condition::SL_WARNING */

typedef void (*printf_error_fn)(unsigned, const char *, unsigned long, ...);
typedef void *(*current_thd_fn)(void);
typedef void (*push_warning_printf_fn)(void *thd, int level, unsigned code, const char *fmt, ...);

/* MySQL component services, declared as the server's headers lay them out. */
struct mysql_udf_metadata {
  int (*argument_get)(UDF_ARGS *, const char *, unsigned, void **);
  int (*result_get)(UDF_INIT *, const char *, void **);
  int (*argument_set)(UDF_ARGS *, const char *, unsigned, void *);
  int (*result_set)(UDF_INIT *, const char *, void *);
};

static pthread_once_t once = PTHREAD_ONCE_INIT;
static bool is_mariadb;
static printf_error_fn printf_error;
static current_thd_fn current_thd;
static push_warning_printf_fn push_warning_printf;
static struct mysql_udf_metadata *udf_metadata;
/* Both servers export C thd_killed(); MariaDB's thd_kill_level() also sees KILL SOFT. */
static int (*thd_killed_fn)(const void *thd);
static int (*thd_kill_level_fn)(const void *thd);

static char *(*thd_strmake)(void *thd, const char *str, size_t size);
static int (*binlog_format)(const void *thd);
/* MySQL: privileges and who holds them (component services). */
static struct mysql_registry_service *registry;
static struct mysql_global_grants_check *grants_check;
static struct mysql_thd_security_context *security_context;
static struct mysql_security_context_options *context_options;
/* MySQL: the session's current database (thd attribute "schema", a String handle that
 * the string services copy out and free). */
struct mysql_thd_attributes {
  int (*get)(void *thd, const char *name, void *inout_pvalue);
  int (*set)(void *thd, const char *name, void *inout_pvalue);
};
struct mysql_string_factory {
  int (*create)(void **out_string);
  void (*destroy)(void *string);
};
struct mysql_string_converter {
  int (*convert_from_buffer)(void **out_string, const char *in_buffer, unsigned long long length,
                             const char *charset_name);
  int (*convert_to_buffer)(void *in_string, char *out_buffer, unsigned long long length, const char *charset_name);
};
static struct mysql_thd_attributes *thd_attributes;
static struct mysql_string_factory *string_factory;
static struct mysql_string_converter *string_converter;
/* MySQL: whether a name is one of the server's native functions (as MySQL asks when it
 * warns that a stored function shares a native function's name). */
struct lex_string_arg {
  const char *str;
  size_t length;
};
static void *(*find_native_function_builder)(const struct lex_string_arg *name);
static bool (*is_lex_native_function)(const struct lex_string_arg *name);
/* MariaDB: the server's own routine privilege check and its current THD.
 * True when the caller holds NO routine-level privilege on db.name, through its own grant
 * or its active role's (global and database-level privileges do not count here). */
static bool (*check_routine_level_acl_10)(void *thd, const char *db, const char *name, const void *sp_handler);
static bool (*check_routine_level_acl_11)(void *thd, unsigned long long want, const char *db, const char *name,
                                          const void *sp_handler);
#define MARIA_EXECUTE_ACL (1ULL << 18)
static const void *sp_handler_procedure;
/* False when the caller holds every privilege in want globally (no_errors: no SQL error). */
static bool (*check_global_access)(void *thd, unsigned long long want, bool no_errors);
#define MARIA_SUPER_ACL (1ULL << 15)
static void *(*maria_current_thd)(void);

static const char *version_string = "";
/* The first ABI mismatch lookup() found ("" if none): sqlml then fails closed. */
static char abi_problem[256];

/* SQLML_TEST_HIDE_SYMBOLS=a,b makes find() treat those names as absent: the tests'
 * only way to show what sqlml does on a server build that lacks one. */
static bool hidden(const char *name)
{
  const char *list = getenv("SQLML_TEST_HIDE_SYMBOLS");
  size_t n = strlen(name);
  for (const char *p = list ? strstr(list, name) : NULL; p; p = strstr(p + 1, name))
    if ((p == list || p[-1] == ',') && (p[n] == ',' || p[n] == '\0'))
      return true;
  return false;
}

static void *find(const char *c_name, const char *mangled)
{
  void *p = c_name && !hidden(c_name) ? dlsym(RTLD_DEFAULT, c_name) : NULL;
  return p ? p : (mangled && !hidden(mangled) ? dlsym(RTLD_DEFAULT, mangled) : NULL);
}

/* Records the first symbol sqlml needs that this server does not export. */
static void *require(void *p, const char *name)
{
  if (!p && !abi_problem[0])
    snprintf(abi_problem, sizeof abi_problem, "no symbol %s", name);
  return p;
}

/* Both servers export their built-in binlog plugin's descriptor size and interface
 * version: a size other than the struct sqlml declares (plugin_abi.h), or another
 * major interface version, means its plugin declarations would be misread. */
static void check_plugin_struct(const char *size_symbol, const char *version_symbol, size_t ours,
                                int our_version, const char *what)
{
  const int *size = require(find(size_symbol, NULL), size_symbol);
  const int *version = require(find(version_symbol, NULL), version_symbol);
  if (!size || !version || abi_problem[0])
    return;
  if ((size_t)*size != ours)
    snprintf(abi_problem, sizeof abi_problem, "the server's %s is %d bytes, sqlml.so declares %zu", what,
             *size, ours);
  else if ((*version >> 8) != (our_version >> 8))
    snprintf(abi_problem, sizeof abi_problem,
             "the server's plugin interface version is 0x%04x, sqlml.so declares 0x%04x", *version,
             our_version);
}

static void lookup(void)
{
  const char *version = hidden("server_version") ? NULL : dlsym(RTLD_DEFAULT, "server_version");
  version_string = version ? version : "";
  is_mariadb = version && strstr(version, "MariaDB") != NULL;
  require((void *)version, "server_version");
  printf_error = (printf_error_fn)require(find("my_printf_error", "_Z15my_printf_errorjPKciz"), "my_printf_error");
  thd_strmake = (char *(*)(void *, const char *, size_t))require(
      find("thd_strmake", "_Z11thd_strmakeP3THDPKcm"), "thd_strmake");
  binlog_format = (int (*)(const void *))require(find("thd_binlog_format", "_Z17thd_binlog_formatPK3THD"),
                                                 "thd_binlog_format");
  thd_killed_fn = (int (*)(const void *))require(find("thd_killed", "_Z10thd_killedPK3THD"), "thd_killed");
  if (is_mariadb) {
    thd_kill_level_fn = (int (*)(const void *))require(find("thd_kill_level", NULL), "thd_kill_level");
    maria_current_thd = (void *(*)(void))require(find("_current_thd", NULL), "_current_thd");
    /* 10.x: (thd, db, name, sp_handler), any routine privilege; 11.x adds the wanted ones. */
    check_routine_level_acl_10 = (bool (*)(void *, const char *, const char *, const void *))find(
        NULL, "_Z23check_routine_level_aclP3THDPKcS2_PK10Sp_handler");
    check_routine_level_acl_11 = (bool (*)(void *, unsigned long long, const char *, const char *, const void *))find(
        NULL, "_Z23check_routine_level_aclP3THD11privilege_tPKcS3_PK10Sp_handler");
    require(check_routine_level_acl_10 ? (void *)check_routine_level_acl_10 : (void *)check_routine_level_acl_11,
            "check_routine_level_acl");
    sp_handler_procedure = require(find("sp_handler_procedure", NULL), "sp_handler_procedure");
    check_global_access = (bool (*)(void *, unsigned long long, bool))require(
        find(NULL, "_Z19check_global_accessP3THD11privilege_tb"), "check_global_access");
    check_plugin_struct("builtin_maria_binlog_sizeof_struct_st_plugin",
                        "builtin_maria_binlog_plugin_interface_version", sizeof(struct maria_plugin),
                        MARIA_PLUGIN_INTERFACE_VERSION, "st_maria_plugin");
    return;
  }
  current_thd = (current_thd_fn)require(find(NULL, "_Z19thd_get_current_thdv"), "thd_get_current_thd");
  find_native_function_builder = (void *(*)(const struct lex_string_arg *))find(
      NULL, "_Z28find_native_function_builderRK16MYSQL_LEX_STRING");
  is_lex_native_function = (bool (*)(const struct lex_string_arg *))find(
      NULL, "_Z22is_lex_native_functionPK16MYSQL_LEX_STRING");
  push_warning_printf = (push_warning_printf_fn)require(
      find(NULL, "_Z19push_warning_printfP3THDN13Sql_condition19enum_severity_levelEjPKcz"),
      "push_warning_printf");
  void *(*registry_acquire)(void) = (void *(*)(void))require(
      find("mysql_plugin_registry_acquire", "_Z29mysql_plugin_registry_acquirev"), "mysql_plugin_registry_acquire");
  check_plugin_struct("builtin_binlog_sizeof_struct_st_plugin", "builtin_binlog_plugin_interface_version",
                      sizeof(struct mysql_plugin), MYSQL_PLUGIN_INTERFACE_VERSION, "st_mysql_plugin");
  registry = registry_acquire ? (struct mysql_registry_service *)registry_acquire() : NULL;
  void *service = NULL;
  /* Kept for the process's life: the registry outlives every UDF call. */
  if (registry && registry->acquire("mysql_udf_metadata", &service) == 0)
    udf_metadata = service;
  if (registry && registry->acquire("global_grants_check", &service) == 0)
    grants_check = service;
  if (registry && registry->acquire("mysql_thd_security_context", &service) == 0)
    security_context = service;
  if (registry && registry->acquire("mysql_security_context_options", &service) == 0)
    context_options = service;
  if (registry && registry->acquire("mysql_thd_attributes", &service) == 0)
    thd_attributes = service;
  if (registry && registry->acquire("mysql_string_factory", &service) == 0)
    string_factory = service;
  if (registry && registry->acquire("mysql_string_converter", &service) == 0)
    string_converter = service;
}

void server_api_init(void) { pthread_once(&once, lookup); }

bool server_is_mariadb(void) { return is_mariadb; }

const char *server_version_string(void) { return version_string; }

const char *server_abi_problem(void) { return abi_problem[0] ? abi_problem : NULL; }

void server_error(unsigned code, const char *msg)
{
  if (printf_error)
    printf_error(code, "%s", 0UL, msg);
  else
    fprintf(stderr, "sqlml: %s\n", msg); /* no way to reach the client: keep a trace */
}

bool server_warning(unsigned code, const char *msg)
{
  if (is_mariadb && printf_error) {
    printf_error(code, "%s", ME_WARNING_MARIADB, msg);
    return true;
  }
  if (current_thd && push_warning_printf) {
    void *thd = current_thd();
    if (thd) {
      push_warning_printf(thd, SL_WARNING_MYSQL, code, "%s", msg);
      return true;
    }
  }
  return false;
}

bool server_utf8mb4_argument(UDF_ARGS *args, unsigned i)
{
  return udf_metadata && udf_metadata->argument_set(args, "charset", i, (void *)"utf8mb4") == 0;
}

bool server_utf8mb4_result(UDF_INIT *initid)
{
  return udf_metadata && udf_metadata->result_set(initid, "charset", (void *)"utf8mb4") == 0;
}

char *server_thd_strmake(void *thd, const char *str, size_t length)
{
  return thd_strmake && thd ? thd_strmake(thd, str, length) : NULL;
}

void *server_current_thd(void)
{
  return is_mariadb ? (maria_current_thd ? maria_current_thd() : NULL) : (current_thd ? current_thd() : NULL);
}

int server_current_db(void *thd, char *buf, size_t len)
{
  void *handle = NULL;
  buf[0] = '\0';
  if (!thd || !thd_attributes || !string_factory || !string_converter || len < 2 ||
      thd_attributes->get(thd, "schema", &handle) != 0 || !handle)
    return -1;
  int ok = string_converter->convert_to_buffer(handle, buf, len, "utf8mb4") == 0;
  string_factory->destroy(handle);
  if (!ok) {
    buf[0] = '\0';
    return -1;
  }
  buf[len - 1] = '\0';
  return (int)strlen(buf);
}

int server_is_native_function(const char *name, size_t len)
{
  if (!find_native_function_builder || !is_lex_native_function)
    return -1;
  char lower[256];
  if (len >= sizeof lower)
    return 0; /* no native function has so long a name */
  for (size_t i = 0; i < len; i++)
    lower[i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] + 32 : name[i]);
  lower[len] = '\0';
  struct lex_string_arg lex = {lower, len};
  return find_native_function_builder(&lex) != NULL || is_lex_native_function(&lex);
}

bool server_killed(void *thd)
{
  if (!thd)
    return false;
  if (is_mariadb && thd_kill_level_fn)
    return thd_kill_level_fn(thd) != 0;
  return thd_killed_fn ? thd_killed_fn(thd) != 0 : false;
}

int server_binlog_format(void)
{
  void *thd = server_current_thd();
  return thd && binlog_format ? binlog_format(thd) : -1;
}

static bool privileges_ready; /* the sqlml plugin is installed (plugin.c says) */

void server_set_privileges_ready(bool ready) { __atomic_store_n(&privileges_ready, ready, __ATOMIC_RELAXED); }

static const char *const privileges[] = {SQLML_PRIVILEGES, NULL};

int server_register_privileges(void)
{
  void *service = NULL;
  if (!registry || registry->acquire("dynamic_privilege_register", &service) != 0)
    return -1;
  struct mysql_dynamic_privilege_register *reg = service;
  int failed = 0;
  for (const char *const *p = privileges; *p; p++)
    failed |= reg->register_privilege(*p, strlen(*p)) != 0;
  registry->release(service);
  return failed ? -1 : 0;
}

int server_has_grant(const char *privilege, char *why, size_t why_len)
{
  if (is_mariadb && strcmp(privilege, "SUPER") == 0) {
    void *thd = maria_current_thd ? maria_current_thd() : NULL;
    if (!thd || !check_global_access) {
      snprintf(why, why_len, "this MariaDB build does not export check_global_access");
      return -1;
    }
    return check_global_access(thd, MARIA_SUPER_ACL, true) ? 0 : 1;
  }
  if (is_mariadb) {
    void *thd = maria_current_thd ? maria_current_thd() : NULL;
    if (!thd || !(check_routine_level_acl_10 || check_routine_level_acl_11) || !sp_handler_procedure) {
      snprintf(why, why_len,
               "this MariaDB build does not export check_routine_level_acl, so sqlml cannot check the "
               "caller's roles; it refuses to run ML functions");
      return -1;
    }
    /* EXECUTE on the marker procedure sqlml.<privilege in lower case, without SQLML_>,
     * granted on that procedure itself (install.sql grants it to the matching role): the
     * server's own routine-level check, with the current security context (a SQL SECURITY
     * DEFINER routine's definer) and its active role. A global or database-level EXECUTE
     * does not count: it is no AWS_* role. */
    char routine[64];
    const char *bare = strncmp(privilege, "SQLML_", 6) == 0 ? privilege + 6 : privilege;
    size_t n = 0;
    for (; bare[n] && n < sizeof routine - 1; n++)
      routine[n] = (char)(bare[n] >= 'A' && bare[n] <= 'Z' ? bare[n] - 'A' + 'a' : bare[n]);
    routine[n] = '\0';
    bool none = check_routine_level_acl_11
                    ? check_routine_level_acl_11(thd, MARIA_EXECUTE_ACL, "sqlml", routine, sp_handler_procedure)
                    : check_routine_level_acl_10(thd, "sqlml", routine, sp_handler_procedure);
    return none ? 0 : 1;
  }
  if (!__atomic_load_n(&privileges_ready, __ATOMIC_RELAXED)) {
    snprintf(why, why_len,
             "the sqlml plugin is not installed, so the %s privilege does not exist; run install.sql "
             "(INSTALL PLUGIN sqlml SONAME 'sqlml.so')",
             privilege);
    return -1;
  }
  void *thd = current_thd ? current_thd() : NULL;
  void *ctx = NULL;
  if (!thd || !grants_check || !security_context || security_context->get(thd, &ctx) != 0 || !ctx) {
    snprintf(why, why_len,
             "this MySQL build does not offer the global_grants_check service, so sqlml cannot check "
             "the caller's privileges; it refuses to run ML functions");
    return -1;
  }
  if (strcmp(privilege, "SUPER") == 0) { /* static, not a global grant: ask the context */
    bool super = false;
    if (!context_options || context_options->get(ctx, "privilege_super", &super) != 0) {
      snprintf(why, why_len, "this MySQL build does not offer mysql_security_context_options");
      return -1;
    }
    return super ? 1 : 0;
  }
  return grants_check->has_global_grant(ctx, privilege, strlen(privilege)) ? 1 : 0;
}
