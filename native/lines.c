/*
 * CSV and TEXT lines (lines.h), as python/sqlml/export.py writes them:
 *   CSV   fields separated by ',', records ended by CRLF; a field holding ',', '"', CR
 *         or LF is enclosed in '"' with '"' doubled; '' is written `""`, NULL as nothing.
 *   TEXT  fields separated by TAB, lines ended by LF; '\' TAB LF are preceded by '\',
 *         NUL is written `\0`, NULL `\N` (SELECT ... INTO OUTFILE's defaults).
 * Text must be valid UTF-8 by Python's strict decoder (no overlongs, no surrogates,
 * nothing past U+10FFFF): a row with anything else is Python's to refuse.
 */
#include "lines.h"

#include <stdlib.h>
#include <string.h>

enum { CSV_QUOTE = 1, TEXT_ESCAPE = 2, NOT_ASCII = 4 };

/* What each byte needs, in each format (GNU range designators). */
static const unsigned char BYTE_CLASS[256] = {
    [0] = TEXT_ESCAPE,     ['\t'] = TEXT_ESCAPE, ['\n'] = CSV_QUOTE | TEXT_ESCAPE, ['\r'] = CSV_QUOTE,
    ['"'] = CSV_QUOTE,     [','] = CSV_QUOTE,    ['\\'] = TEXT_ESCAPE,              [0x80 ... 0xFF] = NOT_ASCII,
};

/* Strict UTF-8 (Unicode's table 3-7), as Python's bytes.decode("utf-8") accepts it. */
static bool utf8_valid(const unsigned char *s, size_t n)
{
  size_t i = 0;
  while (i < n) {
    unsigned char c = s[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    size_t more;
    unsigned char lo = 0x80, hi = 0xBF; /* the range of the byte after c */
    if (c >= 0xC2 && c <= 0xDF)
      more = 1;
    else if (c == 0xE0)
      more = 2, lo = 0xA0; /* no overlongs */
    else if (c == 0xED)
      more = 2, hi = 0x9F; /* no surrogates */
    else if (c >= 0xE1 && c <= 0xEF)
      more = 2;
    else if (c == 0xF0)
      more = 3, lo = 0x90;
    else if (c == 0xF4)
      more = 3, hi = 0x8F; /* nothing past U+10FFFF */
    else if (c >= 0xF1 && c <= 0xF3)
      more = 3;
    else
      return false;
    if (n - i <= more || s[i + 1] < lo || s[i + 1] > hi)
      return false;
    for (size_t k = 2; k <= more; k++)
      if ((s[i + k] & 0xC0) != 0x80)
        return false;
    i += more + 1;
  }
  return true;
}

/* Room for `more` bytes past len. False when out of memory. */
static bool reserve(struct lines *l, size_t more)
{
  if (l->cap - l->len >= more)
    return true;
  size_t cap = l->cap ? l->cap : 64 * 1024;
  while (cap - l->len < more)
    cap *= 2;
  char *grown = realloc(l->buf, cap);
  if (!grown)
    return false;
  l->buf = grown;
  l->cap = cap;
  return true;
}

static char *csv_field(char *out, const unsigned char *v, size_t n, unsigned class)
{
  if (n == 0) { /* '' is "" so that NULL (nothing) stays apart */
    *out++ = '"';
    *out++ = '"';
    return out;
  }
  if (!(class & CSV_QUOTE)) {
    memcpy(out, v, n);
    return out + n;
  }
  *out++ = '"';
  for (size_t k = 0; k < n; k++) {
    if (v[k] == '"')
      *out++ = '"';
    *out++ = (char)v[k];
  }
  *out++ = '"';
  return out;
}

static char *text_field(char *out, const unsigned char *v, size_t n, unsigned class)
{
  if (!(class & TEXT_ESCAPE)) {
    memcpy(out, v, n);
    return out + n;
  }
  for (size_t k = 0; k < n; k++) {
    unsigned char c = v[k];
    if (BYTE_CLASS[c] & TEXT_ESCAPE) {
      *out++ = '\\';
      c = c ? c : '0';
    }
    *out++ = (char)c;
  }
  return out;
}

bool lines_append(struct lines *l, const UDF_ARGS *args, unsigned first)
{
  /* The longest this line can be: every byte doubled, quotes, separators, CRLF. */
  size_t need = 2;
  for (unsigned i = first; i < args->arg_count; i++) {
    if (args->args[i] && args->arg_type[i] != UDF_STRING_RESULT && args->arg_type[i] != UDF_DECIMAL_RESULT)
      return false; /* values cross as text (prepare asks for it); anything else is Python's */
    need += 3 + (args->args[i] ? 2 * (size_t)args->lengths[i] : 0);
  }
  if (!reserve(l, need))
    return false;
  bool csv = l->format == LINES_CSV;
  char *out = l->buf + l->len;
  for (unsigned i = first; i < args->arg_count; i++) {
    if (i > first)
      *out++ = csv ? ',' : '\t';
    const unsigned char *v = (const unsigned char *)args->args[i];
    if (!v) {
      if (!csv) {
        *out++ = '\\';
        *out++ = 'N';
      }
      continue;
    }
    size_t n = args->lengths[i];
    unsigned class = 0;
    for (size_t k = 0; k < n; k++)
      class |= BYTE_CLASS[v[k]];
    if ((class & NOT_ASCII) && !utf8_valid(v, n))
      return false; /* l->len unchanged: the partial line is dropped */
    out = csv ? csv_field(out, v, n, class) : text_field(out, v, n, class);
  }
  if (csv)
    *out++ = '\r';
  *out++ = '\n';
  l->len = (size_t)(out - l->buf);
  l->rows++;
  return true;
}

void lines_reset(struct lines *l)
{
  l->len = 0;
  l->rows = 0;
}

void lines_free(struct lines *l)
{
  free(l->buf);
  l->buf = NULL;
  l->len = l->cap = 0;
  l->rows = 0;
}
