"""Aurora's SQL verbatim on MySQL: what the pre-parse hook (native/rewrite.c) asks.

`rewrite(text, prepared)` returns the statement to run instead of `text`, or None to
run it as written. It handles:

- Aurora's DDL `CREATE FUNCTION f(...) RETURNS t ALIAS AWS_SAGEMAKER_INVOKE_ENDPOINT
  ENDPOINT NAME 'ep' [MAX_BATCH_SIZE n]` -> the stored function `sqlml translate`
  makes (and f is remembered, registry.py); `DROP FUNCTION f` forgets it;
- Aurora v2's `GRANT|REVOKE INVOKE SAGEMAKER|COMPREHEND ON *.* TO|FROM u` -> the role;
- `SELECT ... INTO OUTFILE S3 'uri' [FORMAT CSV|TEXT [HEADER]]` -> the export aggregate
  over the query (outfile.py);
- statements calling sqlml functions (SELECT, INSERT/REPLACE ... SELECT, single-table
  UPDATE) -> the same statement with a warm-up that sends the distinct inputs in
  batches first (batch.py), so every row then reads its own answer from the cache.

Anything it does not fully understand is left exactly as written: a rewrite may cost
speed, never a wrong answer or an error the original would not have raised. Errors
in Aurora's DDL become a clear error naming what is not supported.
"""

from __future__ import annotations

import re

from .. import translate
from . import batch, outfile, registry

_DDL = re.compile(r"^\s*CREATE\b.*\bALIAS\s+AWS_SAGEMAKER_INVOKE_ENDPOINT\b", re.IGNORECASE | re.DOTALL)
_GRANT = re.compile(r"^\s*(GRANT|REVOKE)\s+INVOKE\s+(SAGEMAKER|COMPREHEND)\s+ON\s+\*\s*\.\s*\*\s+(TO|FROM)\s+(.+?)"
                    r"\s*;?\s*$", re.IGNORECASE | re.DOTALL)
_DROP = re.compile(r"^\s*DROP\s+FUNCTION\s+(?:IF\s+EXISTS\s+)?((?:`[^`]+`|\w+)(?:\s*\.\s*(?:`[^`]+`|\w+))?)\s*;?\s*$",
                   re.IGNORECASE)
_ROLE = {"SAGEMAKER": "AWS_SAGEMAKER_ACCESS", "COMPREHEND": "AWS_COMPREHEND_ACCESS"}


def bare_name(qualified: str) -> str:
    return qualified.split(".")[-1].strip().strip("`").lower()


def _error(message: str) -> str:
    """A statement that fails with `message` (SQLSTATE 42000, error 1644; at most 128 characters)."""
    text = message[:128].replace("\\", "\\\\").replace("'", "''")
    return f"SIGNAL SQLSTATE '42000' SET MESSAGE_TEXT = '{text}'"


def _ddl(text: str) -> str:
    try:
        fn = translate.parse(text)
        sql = translate.to_sql(fn)
    except translate.TranslateError as exc:
        return _error(f"sqlml: not supported: {exc.sql_message}")
    registry.add(registry.MlFunction(bare_name(fn.name), fn.endpoint, fn.max_batch_size, fn.returns,
                                     tuple(p.sql_type for p in fn.params)))
    return sql


def rewrite(text: str, prepared: bool = False) -> str | None:
    if _DDL.match(text):
        return _ddl(text)
    m = _GRANT.match(text)
    if m:
        verb, service, direction, users = m.groups()
        return f"{verb.upper()} {_ROLE[service.upper()]} {direction.upper()} {users}"
    if "outfile" in text.lower():
        try:
            exported = outfile.rewrite(text)
        except outfile.Unsupported as exc:
            return _error(f"sqlml: not supported: {exc}")
        if exported is not None:
            return exported
    m = _DROP.match(text)
    if m:
        registry.remove(bare_name(m.group(1)))
        return None
    return batch.rewrite(text, prepared, registry.load())
