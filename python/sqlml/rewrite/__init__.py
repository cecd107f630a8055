"""Aurora's SQL verbatim on MySQL: what the pre-parse hook (native/rewrite.c) asks.

`rewrite(text, prepared, db, connection)` returns an Outcome: the statement to run
instead of `text` (or None: as written), and whether a registry change now waits for
the statement's end, which the hook reports through `statement_ended`. It handles:

- Aurora's DDL `CREATE FUNCTION [s.]f(...) RETURNS t ALIAS AWS_SAGEMAKER_INVOKE_ENDPOINT
  ENDPOINT NAME 'ep' [MAX_BATCH_SIZE n]` -> the stored function `sqlml translate`
  makes; s.f is remembered (registry.py) once the server has created it for this user;
  a successful `DROP FUNCTION s.f` or `DROP DATABASE s` forgets it;
- Aurora v2's `GRANT|REVOKE INVOKE SAGEMAKER|COMPREHEND ON *.* TO|FROM u` -> the role;
- `SELECT ... INTO OUTFILE S3 'uri' [FORMAT CSV|TEXT [HEADER]]` -> the export aggregate
  over the query (outfile.py);
- statements calling sqlml functions (SELECT, INSERT/REPLACE ... SELECT, single-table
  UPDATE) -> the same statement with a warm-up that sends the distinct inputs in
  batches first (batch_sql.py), so every row then reads its own answer from the cache.

Anything it does not fully understand is left exactly as written: a rewrite may cost
speed, never a wrong answer or an error the original would not have raised. Errors
in Aurora's DDL become a clear error naming what is not supported.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from .. import access, translate
from . import batch_sql, outfile, registry

_DDL = re.compile(r"^\s*CREATE\b.*\bALIAS\s+AWS_SAGEMAKER_INVOKE_ENDPOINT\b", re.IGNORECASE | re.DOTALL)
_GRANT = re.compile(r"^\s*(GRANT|REVOKE)\s+INVOKE\s+(SAGEMAKER|COMPREHEND)\s+ON\s+\*\s*\.\s*\*\s+(TO|FROM)\s+(.+?)"
                    r"\s*;?\s*$", re.IGNORECASE | re.DOTALL)
_IDENT = r"(?:`(?:[^`]|``)+`|[\w$]+)"
# Spaces and comments before the first word (not /*! ... */, which the server executes).
_LEAD = r"^(?:\s+|/\*(?!!).*?\*/|--\s[^\n]*|#[^\n]*)*"
_DROP = re.compile(rf"{_LEAD}DROP\s+FUNCTION\s+(?:IF\s+EXISTS\s+)?({_IDENT}(?:\s*\.\s*{_IDENT})?)\s*;?\s*$",
                   re.IGNORECASE | re.DOTALL)
_DROP_SCHEMA = re.compile(rf"{_LEAD}DROP\s+(?:DATABASE|SCHEMA)\s+(?:IF\s+EXISTS\s+)?({_IDENT})\s*;?\s*$",
                         re.IGNORECASE | re.DOTALL)
_ROLE = {"SAGEMAKER": "AWS_SAGEMAKER_ACCESS", "COMPREHEND": "AWS_COMPREHEND_ACCESS"}


class Outcome(NamedTuple):
    """What the pre-parse hook does with a statement (native/pyhost.h struct pyhost_rewritten)."""

    text: str | None  # the statement to run instead, or None: as written
    awaits_end: bool = False  # a registry change waits for this statement's end (statement_ended)


def _unquote(identifier: str) -> str:
    identifier = identifier.strip()
    if identifier.startswith("`") and identifier.endswith("`") and len(identifier) >= 2:
        return identifier[1:-1].replace("``", "`")
    return identifier


def resolve(qualified: str, db: str | None) -> tuple[str, str] | None:
    """(schema, name in lower case) as the server resolves a routine name: its own schema,
    else the current database; None when there is none (the statement fails anyway)."""
    parts = re.findall(r"`(?:[^`]|``)+`|[^.`\s]+", qualified)
    if len(parts) == 2:
        return _unquote(parts[0]), _unquote(parts[1]).lower()
    if len(parts) == 1 and db:
        return db, _unquote(parts[0]).lower()
    return None


def _error(message: str) -> str:
    """A statement that fails with `message` (SQLSTATE 42000, error 1644; at most 128 characters)."""
    text = message[:128].replace("\\", "\\\\").replace("'", "''")
    return f"SIGNAL SQLSTATE '42000' SET MESSAGE_TEXT = '{text}'"


def _ddl(text: str, db: str | None, connection: int) -> Outcome:
    try:
        fn = translate.parse(text)
        sql = translate.to_sql(fn)
    except translate.TranslateError as exc:
        return Outcome(_error(f"sqlml: not supported: {exc.sql_message}"))
    where = resolve(fn.name, db)
    if where is None:
        return Outcome(sql)
    body = sql.splitlines()[-1].strip()  # "RETURN aws_sagemaker_invoke_endpoint_...(...)": ROUTINE_DEFINITION
    entry = registry.MlFunction(where[0], where[1], fn.endpoint, fn.max_batch_size, fn.returns,
                                tuple(p.sql_type for p in fn.params), body)
    if not registry.recordable(entry):
        return Outcome(sql)  # created, never batched: see registry's module doc
    registry.expect(connection, registry.Change(texts=(text, sql), add=entry))
    return Outcome(sql, True)


def rewrite(text: str, prepared: bool = False, db: str | None = None, connection: int = 0, engine=None) -> Outcome:
    """The statement to run instead of text (None: as written), and whether its end
    status must be reported (registry changes). engine: the server's, for the warm-ups
    the rewriter sends itself (INSERT ... VALUES)."""
    registry.forget(connection)
    if _DDL.match(text):
        return _ddl(text, db, connection)
    m = _GRANT.match(text)
    if m:
        verb, service, direction, users = m.groups()
        return Outcome(f"{verb.upper()} {_ROLE[service.upper()]} {direction.upper()} {users}")
    if "outfile" in text.lower():
        try:
            exported = outfile.rewrite(text)
        except outfile.Unsupported as exc:
            return Outcome(_error(f"sqlml: not supported: {exc}"))
        if exported is not None:
            return Outcome(exported)
    m = _DROP.match(text)
    if m:
        where = resolve(m.group(1), db)
        if where is None:
            return Outcome(None)
        registry.expect(connection, registry.Change(texts=(text,), drop=where))
        return Outcome(None, True)
    m = _DROP_SCHEMA.match(text)
    if m:
        registry.expect(connection, registry.Change(texts=(text,), drop_schema=_unquote(m.group(1))))
        return Outcome(None, True)
    return Outcome(batch_sql.rewrite(text, prepared, registry.load(), db, _may_warm, engine))


def _may_warm(service: str) -> bool:
    """Whether the caller holds the role a warm-up of `service` needs: a warm-up the caller
    may not run is left out (its rows' own calls apply their own checks, as written)."""
    return access.refusal(f"sqlml_warm_{service}", service) is None


def statement_ended(connection: int, status: int, text: str | None) -> None:
    """The audit API's end of a statement on `connection` (status 0: success)."""
    registry.statement_ended(connection, status, text)
