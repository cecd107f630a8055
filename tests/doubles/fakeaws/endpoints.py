"""Built-in fake SageMaker endpoints.

The endpoint kind is picked from the endpoint name's prefix (or from an alias
configured with ``FakeAWS.configure(endpoint_aliases={...})``):

=========  ==========================================  =========================
prefix     answer (one entry per input row)            Content-Type
=========  ==========================================  =========================
echo       first field unchanged, CSV re-quoted,       text/csv; charset=utf-8
           one per line
sum        sum of the fields, one per line             text/csv; charset=utf-8
xgb        sums comma-joined on ONE line (XGBoost      text/csv; charset=utf-8
           real-time style), no trailing newline
rcf        {"scores":[{"score":abs(f0-100)/10},...]}   application/json
linear     {"predictions":[{"score":sum,               application/json
           "predicted_label":1 if sum>=0.5 else 0}]}
jsonl      one JSON number (the sum) per line          application/jsonlines
len        number of fields in the row, one per line   text/csv; charset=utf-8
=========  ==========================================  =========================

Input must be ``text/csv`` (parameters such as ``; charset=utf-8`` allowed):
RFC 4180, quoted fields may hold commas, doubled quotes and newlines; lines
may end in LF or CRLF. Completely blank lines are not rows (skipped). A row's
"sum" is ``float`` of each non-empty field added left to right (empty fields
count as missing); numbers are written with Python ``repr(float)``, e.g.
``6.0``. A field that is not a number makes the model fail (ModelError 424
with OriginalStatusCode 400), as does any row holding the configured failure
marker (default ``#fail#``).
"""

import csv
import io
import json

CSV_TYPE = "text/csv; charset=utf-8"
JSON_TYPE = "application/json"
JSONL_TYPE = "application/jsonlines"

# csv's default 131072-character field limit would reject big single fields
if csv.field_size_limit() < (1 << 26):
    csv.field_size_limit(1 << 26)


class ModelFailure(Exception):
    """The 'model container' failed: becomes a ModelError (424)."""

    def __init__(self, original_status, message):
        super().__init__(message)
        self.original_status = original_status
        self.message = message


def parse_csv(text):
    """RFC 4180 rows of *text* (a str); blank lines are skipped."""
    if '"' not in text and "\r" not in text:
        # fast path, same result as csv.reader when nothing is quoted
        return [line.split(",") for line in text.split("\n") if line]
    return [row for row in csv.reader(io.StringIO(text, newline="")) if row]


def _sums(rows):
    try:
        return [sum(map(float, filter(None, row))) for row in rows]
    except ValueError:
        for i, row in enumerate(rows):
            for field in row:
                if field:
                    try:
                        float(field)
                    except ValueError:
                        raise ModelFailure(
                            400, "could not convert string to float: %r (row %d)" % (field, i)
                        ) from None
        raise


def _first_numbers(rows):
    out = []
    for i, row in enumerate(rows):
        try:
            out.append(float(row[0]))
        except (ValueError, IndexError):
            raise ModelFailure(
                400, "could not convert string to float: %r (row %d)" % (row[0] if row else "", i)
            ) from None
    return out


# --- compute: rows -> list of per-row answers --------------------------------

def _echo(rows):
    return [row[0] for row in rows]


def _sum_strings(rows):
    return [repr(s) for s in _sums(rows)]


def _rcf(rows):
    return [{"score": abs(v - 100.0) / 10.0} for v in _first_numbers(rows)]


def _linear(rows):
    return [{"score": s, "predicted_label": 1 if s >= 0.5 else 0} for s in _sums(rows)]


def _len(rows):
    return [str(len(row)) for row in rows]


# --- serialise: answers -> bytes ---------------------------------------------

def _quote(field):
    if field == "" or '"' in field or "," in field or "\n" in field or "\r" in field:
        return '"' + field.replace('"', '""') + '"'
    return field


def _ser_csv(items):
    """One field per line, RFC 4180 quoting (fields with , " CR LF, and empty ones)."""
    if not items:
        return b""
    joined = "\n".join(items)
    if ('"' in joined or "," in joined or "\r" in joined or "" in items
            or joined.count("\n") != len(items) - 1):
        joined = "\n".join(map(_quote, items))
    return (joined + "\n").encode("utf-8")


def _ser_lines(items):
    if not items:
        return b""
    return ("\n".join(items) + "\n").encode("utf-8")


def _ser_one_line(items):
    return ",".join(items).encode("utf-8")


def _ser_scores(items):
    return json.dumps({"scores": items}).encode("utf-8")


def _ser_predictions(items):
    return json.dumps({"predictions": items}).encode("utf-8")


def _ser_jsonl(items):
    if not items:
        return b""
    # items are floats: one JSON array, brackets removed, one value per line
    return (json.dumps(items, separators=(",", ":"))[1:-1].replace(",", "\n") + "\n").encode("utf-8")


def _jsonl(rows):
    return _sums(rows)


MALFORMED_CSV = b'\xff\xfe"unterminated,garbage\nnot a number,,,\n'
MALFORMED_JSON = b'{"predictions": [{"score": 0.5, "predicted_la'

# kind -> (compute, serialise, content type, malformed body)
KINDS = {
    "echo": (_echo, _ser_csv, CSV_TYPE, MALFORMED_CSV),
    "sum": (_sum_strings, _ser_lines, CSV_TYPE, MALFORMED_CSV),
    "xgb": (_sum_strings, _ser_one_line, CSV_TYPE, MALFORMED_CSV),
    "rcf": (_rcf, _ser_scores, JSON_TYPE, MALFORMED_JSON),
    "linear": (_linear, _ser_predictions, JSON_TYPE, MALFORMED_JSON),
    "jsonl": (_jsonl, _ser_jsonl, JSONL_TYPE, MALFORMED_JSON),
    "len": (_len, _ser_lines, CSV_TYPE, MALFORMED_CSV),
}
# longest prefix first so that no prefix shadows a longer one
_PREFIXES = sorted(KINDS, key=len, reverse=True)


def kind_for(name, aliases=None):
    """Endpoint kind for *name*, or None when the endpoint does not exist."""
    if aliases:
        kind = aliases.get(name)
        if kind is not None:
            return kind
        import fnmatch

        for pattern, kind in aliases.items():
            if fnmatch.fnmatchcase(name, pattern):
                return kind
    for prefix in _PREFIXES:
        if name.startswith(prefix):
            return prefix
    return None
