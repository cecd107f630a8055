/*
 * The loadable-function (UDF) ABI shared by MariaDB (mysql_com.h) and MySQL 8/9
 * (udf_registration_types.h), declared here so the shim builds without either
 * server's headers. Both servers lay these structs out identically: their bool and
 * my_bool are one byte each. MySQL's INVALID_RESULT (-1) is never passed to a UDF.
 */
#ifndef SQLML_UDF_ABI_H
#define SQLML_UDF_ABI_H

#include <stdbool.h>

#define SQLML_ERRMSG_SIZE 512 /* MYSQL_ERRMSG_SIZE: the init message buffer */
#define SQLML_RESULT_BUF 255  /* the result buffer every server hands a STRING UDF */

enum udf_item_result {
  UDF_STRING_RESULT = 0,
  UDF_REAL_RESULT = 1,
  UDF_INT_RESULT = 2,
  UDF_ROW_RESULT = 3,
  UDF_DECIMAL_RESULT = 4
};

typedef struct udf_args {
  unsigned int arg_count;
  enum udf_item_result *arg_type;
  char **args;
  unsigned long *lengths;
  char *maybe_null;
  const char **attributes;
  unsigned long *attribute_lengths;
  void *extension;
} UDF_ARGS;

typedef struct udf_init {
  bool maybe_null;
  unsigned int decimals;
  unsigned long max_length;
  char *ptr;
  bool const_item;
  void *extension;
} UDF_INIT;

#endif
