/*
 * server_api: see server_api.h. Symbols are looked up with dlsym in the server
 * process, by their C name (MariaDB) or their Itanium-mangled C++ name (MySQL).
 */
#define _GNU_SOURCE
#include "server_api.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#define ME_WARNING_MARIADB 2048
#define SL_WARNING_MYSQL 1 /* Sql_condition::SL_WARNING */

typedef void (*printf_error_fn)(unsigned, const char *, unsigned long, ...);
typedef void *(*current_thd_fn)(void);
typedef void (*push_warning_printf_fn)(void *thd, int level, unsigned code, const char *fmt, ...);

/* MySQL component services, declared as the server's headers lay them out. */
typedef int (*registry_acquire_fn)(const char *name, void **out);
struct mysql_registry {
  registry_acquire_fn acquire;
  void *acquire_related;
  int (*release)(void *service);
};
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

static void *find(const char *c_name, const char *mangled)
{
  void *p = c_name ? dlsym(RTLD_DEFAULT, c_name) : NULL;
  return p ? p : (mangled ? dlsym(RTLD_DEFAULT, mangled) : NULL);
}

static void lookup(void)
{
  const char *version = dlsym(RTLD_DEFAULT, "server_version");
  is_mariadb = version && strstr(version, "MariaDB") != NULL;
  printf_error = (printf_error_fn)find("my_printf_error", "_Z15my_printf_errorjPKciz");
  if (is_mariadb)
    return;
  current_thd = (current_thd_fn)find(NULL, "_Z19thd_get_current_thdv");
  push_warning_printf = (push_warning_printf_fn)find(
      NULL, "_Z19push_warning_printfP3THDN13Sql_condition19enum_severity_levelEjPKcz");
  struct mysql_registry *(*registry_acquire)(void) =
      (struct mysql_registry * (*)(void)) find("mysql_plugin_registry_acquire",
                                               "_Z29mysql_plugin_registry_acquirev");
  struct mysql_registry *registry = registry_acquire ? registry_acquire() : NULL;
  void *service = NULL;
  /* Kept for the process's life: the registry outlives every UDF call. */
  if (registry && registry->acquire("mysql_udf_metadata", &service) == 0)
    udf_metadata = service;
}

void server_api_init(void) { pthread_once(&once, lookup); }

bool server_is_mariadb(void) { return is_mariadb; }

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
