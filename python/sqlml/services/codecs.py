"""Request and response bodies for SageMaker InvokeEndpoint, as Aurora uses them.

Requests are text/csv: one line per row, the function's arguments in order, quoted
per RFC 4180 where needed. Responses may be CSV (one line per row, or every row's
prediction comma-joined on one line as XGBoost answers), JSON lines, or the built-in
algorithms' JSON ({"scores":[{"score":..}]}, {"predictions":[{"score":..}]}); the
first output of each row is that row's result. A response whose count of results is
not the count of rows sent is refused whole: a result is never attached to the wrong row.
"""

from __future__ import annotations

import csv
import io
import json
import re

from ..errors import ServiceError

_NEEDS_QUOTES = (",", '"', "\n", "\r")


def csv_field(value: str) -> str:
    # An empty string is quoted: an empty line would be no record at all, and a request of
    # N rows would then carry N-1 (the endpoint answers N-1, and the statement fails).
    if not value or any(c in value for c in _NEEDS_QUOTES) or value != value.strip():
        return '"' + value.replace('"', '""') + '"'
    return value


def csv_body(lines: list[str]) -> bytes:
    return ("\n".join(lines) + "\n").encode("utf-8")


def _first(item: object) -> object:
    """The first output of one row's answer."""
    if isinstance(item, dict):
        for key in ("score", "predicted_label", "prediction", "label"):
            if key in item:
                return _first(item[key])
        return _first(next(iter(item.values()))) if item else None
    if isinstance(item, list):
        return _first(item[0]) if item else None
    return item


def _json_rows(doc: object) -> list[object] | None:
    if isinstance(doc, dict):
        for key in ("scores", "predictions", "outputs", "results"):
            if isinstance(doc.get(key), list):
                return doc[key]
        return None
    if isinstance(doc, list):
        return doc
    return None


# One CSV field alone, and how parse_response reads it as a one-row answer: not JSON (no
# leading "{", "[" or space), no quote, comma or line break (what the scalar path's
# endpoints answer, e.g. "0.75").
_ONE_PLAIN_FIELD = re.compile(r'[^"{\[\s,][^",\r\n]*')


def parse_response(body: bytes, content_type: str, rows: int, where: str) -> list[object]:
    """The first output per row, in row order; raises ServiceError on a count mismatch."""
    if rows == 1 and content_type == "text/csv":  # the scalar path's answer: a field and a newline
        field = body[:-1] if body.endswith(b"\n") else body
        if field.isascii() and _ONE_PLAIN_FIELD.fullmatch(text := field.decode("ascii")):
            return [text]
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ServiceError(f"{where}: response is not valid UTF-8") from None
    stripped = text.strip()
    ctype = (content_type or "").split(";")[0].strip().lower()
    results: list[object] | None = None
    # stripped[:1] is "" for a blank answer (one row's " "), and "" is in every string.
    if ctype in ("application/json", "application/jsonlines", "application/x-jsonlines") or (
            stripped[:1] and stripped[:1] in "{["):
        results = _parse_json(stripped, rows, where)
    if results is None:
        results = _parse_csv(text, rows, where)  # unstripped: a field may begin or end with spaces
    if len(results) != rows:
        raise ServiceError(
            f"{where}: sent {rows} row{'s' if rows != 1 else ''}, endpoint returned {len(results)} "
            f"result{'s' if len(results) != 1 else ''}; refusing to guess which row each belongs to"
        )
    return results


def _parse_json(text: str, rows: int, where: str) -> list[object] | None:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        lines = [line for line in text.splitlines() if line.strip()]
        try:
            docs = [json.loads(line) for line in lines]
        except json.JSONDecodeError:
            if text[:1] in "{[":
                raise ServiceError(f"{where}: response is neither JSON, JSON lines nor CSV") from None
            return None
        return [_first(d) for d in docs]
    items = _json_rows(doc)
    if items is None:
        return [_first(doc)] if rows == 1 else [doc]
    if rows == 1 and len(items) != 1 and not isinstance(doc, dict):
        return [_first(items)]  # one row answered with a plain list of outputs
    return [_first(item) for item in items]


def _parse_csv(text: str, rows: int, where: str) -> list[object]:
    if '"' not in text and "\r" not in text:
        return _parse_plain_csv(text, rows)
    # csv refuses a field over its limit (128 KiB by default); no field can be longer than
    # the body, which the service bounds, so the limit follows the body.
    if len(text) > csv.field_size_limit():
        csv.field_size_limit(len(text))
    try:
        records = [r for r in csv.reader(io.StringIO(text)) if r]
    except csv.Error as exc:  # e.g. a NUL byte: not CSV an endpoint may answer
        raise ServiceError(f"{where}: response is not valid CSV: {exc}") from None
    if len(records) == rows:
        return [r[0] for r in records]
    if len(records) == 1 and len(records[0]) == rows:
        return list(records[0])  # XGBoost real-time: predictions comma-joined on one line
    return [r[0] for r in records]


def _parse_plain_csv(text: str, rows: int) -> list[object]:
    """_parse_csv for a body without quotes or CRs, where RFC 4180 is plain splitting:
    the same records as csv.reader (blank lines are no records), in one pass of C."""
    lines = text.split("\n")
    if "" in lines:
        lines = [line for line in lines if line]
    if "," not in text:
        return lines  # one field per record
    if len(lines) == 1 and rows != 1:
        fields = lines[0].split(",")
        if len(fields) == rows:
            return fields  # XGBoost real-time: predictions comma-joined on one line
    return [line.split(",", 1)[0] for line in lines]
