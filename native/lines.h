/*
 * lines: the export's rows written as CSV or TEXT lines in C, handed to Python by the chunk.
 *
 * sqlml_export_s3 used to cross into Python once per row and format the row there;
 * that crossing and formatting bounded the export at 150-200k rows/s. Every value
 * arrives as the server's text for it, and the two formats are byte loops, so the
 * shim writes each row's line here and hands Python a bytes object of many lines
 * (call.add_lines) when the buffer holds `room` bytes, a threshold Python sets from
 * its part and file sizes. Python keeps every policy: files, parts, uploads, errors.
 * A row this file cannot write (a value that is not UTF-8, an argument that is not a
 * string) is left to Python's own formatting, which names the column and row.
 *
 * The formats are python/sqlml/export.py's (csv_row, text_row), byte for byte; the
 * format numbers mirror export.LineFormat. Pure C: nothing here enters Python.
 */
#ifndef SQLML_LINES_H
#define SQLML_LINES_H

#include "udf_abi.h"

#include <stdbool.h>
#include <stddef.h>

/* export.LineFormat */
enum lines_format { LINES_CSV = 0, LINES_TEXT = 1 };

struct lines {
  int format;
  char *buf; /* malloc'ed, owned; freed by lines_free */
  size_t len, cap;
  unsigned long rows; /* rows in buf */
};

/* Appends args[first ..] as one line. False when C does not write this row (a value
 * that is not valid UTF-8, an argument that is not a string, out of memory): then
 * nothing was appended and the row is Python's. */
bool lines_append(struct lines *l, const UDF_ARGS *args, unsigned first);

/* Forgets the lines (after they were handed over, or dropped); keeps the buffer. */
void lines_reset(struct lines *l);

/* Frees the buffer. */
void lines_free(struct lines *l);

#endif
