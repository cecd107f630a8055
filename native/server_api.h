/*
 * server_api: the few server services sqlml uses, found at run time so that one
 * sqlml.so works in MariaDB and in Oracle MySQL without either server's headers.
 *
 *  - errors and warnings on the calling statement: MariaDB exports the C function
 *    my_printf_error (MyFlags ME_WARNING makes it a warning); MySQL exports C++
 *    my_printf_error and push_warning_printf with thd_get_current_thd;
 *  - utf8mb4 arguments and results: MySQL's mysql_udf_metadata component service,
 *    reached through mysql_plugin_registry_acquire(). MariaDB has no such service:
 *    there, wrappers declare CHARSET utf8mb4 (see sqlml translate).
 */
#ifndef SQLML_SERVER_API_H
#define SQLML_SERVER_API_H

#include <stdbool.h>
#include <stddef.h>

#include "udf_abi.h"

/* Looks the services up once; cheap and idempotent. */
void server_api_init(void);

bool server_is_mariadb(void);

/* The server's version string (its exported server_version), "" if it has none. */
const char *server_version_string(void);

/* NULL, or what of the ABI sqlml.so was built for this server lacks (a symbol it does
 * not export, a plugin struct of another size): sqlml then refuses to run anything
 * but sqlml_version(), which says why. */
const char *server_abi_problem(void);

/* Raises a SQL error in the calling statement. */
void server_error(unsigned code, const char *msg);

/* Adds a warning to the calling statement; false where the server offers no way to. */
bool server_warning(unsigned code, const char *msg);

/* Asks the server to hand argument i over as utf8mb4 / to treat the result as
 * utf8mb4. Call from xxx_init. No-ops (returning false) where unsupported. */
bool server_utf8mb4_argument(UDF_ARGS *args, unsigned i);
bool server_utf8mb4_result(UDF_INIT *initid);

/* The calling connection's THD, or NULL where the server does not say. */
void *server_current_thd(void);

/* Copies a string into the statement's memory (sysvar checks); NULL on failure. */
char *server_thd_strmake(void *thd, const char *str, size_t length);

/* MySQL: thd's current database (USE db), as utf8mb4 in buf: its length, 0 when there
 * is none, -1 when the server does not say (MariaDB, or the services are missing). */
int server_current_db(void *thd, char *buf, size_t len);

/* MySQL: 1 if name (any letter case) is a native function of the server, which an
 * unqualified call always means whatever stored functions share the name; 0 if not; -1
 * when the server does not say (MariaDB, or the symbols are missing). */
int server_is_native_function(const char *name, size_t len);

/* Whether thd's statement has been killed (KILL QUERY, KILL CONNECTION,
 * max_statement_time): long waits and loops over user-sized work poll this and stop.
 * False for a NULL thd (an engine worker) or where the server does not say. */
bool server_killed(void *thd);

/* The calling session's binlog format if binary logging is on for it (0 MIXED,
 * 1 STATEMENT, 2 ROW), 3 if it is off, -1 if the server does not say. */
int server_binlog_format(void);

/* sqlml's privileges. MySQL: dynamic privileges registered by the plugin. MariaDB has
 * none: each maps to EXECUTE on the procedure sqlml.<name in lower case, no SQLML_>. */
#define SQLML_PRIVILEGES "SQLML_COMPREHEND_INVOKE", "SQLML_SAGEMAKER_INVOKE", "SQLML_S3_EXPORT"
int server_register_privileges(void);
/* Whether the sqlml plugin, which registers them (MySQL), is installed: plugin.c says. */
void server_set_privileges_ready(bool ready);

/* Whether the caller (the current security context, roles as active) holds privilege:
 * 1 yes, 0 no, -1 cannot tell on this server (why says so). On MySQL a dynamic privilege
 * (global_grants_check) or "SUPER"; on MariaDB "SUPER" is the global SUPER privilege, any other name
 * a routine-level EXECUTE on its marker procedure. */
int server_has_grant(const char *privilege, char *why, size_t why_len);

#endif
