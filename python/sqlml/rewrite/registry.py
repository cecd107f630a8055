"""The SageMaker functions made with Aurora's DDL, as the rewriter knows them.

The rewriter translates `CREATE FUNCTION [s.]f(...) RETURNS t ALIAS AWS_SAGEMAKER_INVOKE_ENDPOINT
ENDPOINT NAME 'ep' [MAX_BATCH_SIZE n]` into a stored function and remembers s.f here, so
that later statements calling s.f(...) can be batched: a file in the server's datadir
(which only the server's OS user can write, and which survives restarts), one line per
function: its schema, its name (the C filter reads only these two fields), and its
definition as JSON, separated by tabs.

What the registry trusts, and what it refuses:
- a change is only *planned* when a statement is seen (`expect`), keyed by the
  connection, and applied by `statement_ended` only when the server reports that this
  very statement ended without error (the audit API's STATUS_END): a CREATE or DROP the
  server refused for that user changes nothing;
- names are schema-qualified, resolved as the server resolves them (the current
  database when unqualified; none: the statement fails anyway, nothing is planned);
- schema and function names are plain ASCII identifiers ([A-Za-z0-9_$], 1 to 64
  bytes) and endpoints carry no control characters, or nothing is recorded (the
  function still works, unbatched): no name can add a line or a field to the file;
- an entry is never trusted to say where a row goes: each warm-up the rewriter adds
  checks, when the statement runs and as its caller, that the function's current
  definition is still exactly the body recorded here (batch_sql.py `definition_guard`). A
  stale entry (a function dropped and recreated some way the registry did not see)
  costs batching, never a request to another endpoint.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import threading
from dataclasses import dataclass

from .. import host

_IDENTIFIER = re.compile(r"[A-Za-z0-9_$]{1,64}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
HEADER = "# sqlml: SageMaker functions made with Aurora's DDL: schema, name, definition (written by the rewriter)\n"


@dataclass(frozen=True)
class MlFunction:
    schema: str
    name: str  # lower case: MySQL's routine names are case-insensitive
    endpoint: str
    max_batch_size: int
    returns: str
    param_types: tuple[str, ...]
    body: str  # the routine body the server must still hold (information_schema.ROUTINES.ROUTINE_DEFINITION)

    @property
    def key(self) -> tuple[str, str]:
        return self.schema, self.name


def valid_identifier(name: str | None) -> bool:
    return bool(name) and _IDENTIFIER.fullmatch(name) is not None


def recordable(fn: MlFunction) -> bool:
    """Only plain identifiers and printable endpoints go into the file (see the module doc)."""
    return (valid_identifier(fn.schema) and valid_identifier(fn.name) and bool(fn.endpoint)
            and not _CONTROL.search(fn.endpoint) and not _CONTROL.search(fn.body.replace("\n", " ")))


_lock = threading.Lock()
_cache: tuple[tuple | None, dict[tuple[str, str], MlFunction]] = (None, {})


def path() -> str | None:
    return host.rewrite_functions_file()


def load() -> dict[tuple[str, str], MlFunction]:
    """(schema, name in lower case) -> MlFunction; re-read when the file changes."""
    global _cache
    p = path()
    if not p:
        return {}
    try:
        st = os.stat(p)
    except OSError:
        return {}
    stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
    if _cache[0] == stamp:
        return _cache[1]
    functions = {}
    with open(p, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith("#"):
                continue
            fields = line.rstrip("\n").split("\t")
            if len(fields) != 3:
                continue  # a damaged line, or one from an older sqlml: that function is not batched
            schema, name, definition = fields
            try:
                d = json.loads(definition)
                fn = MlFunction(schema, name, d["endpoint"], int(d["max_batch_size"]), d["returns"],
                                tuple(d["param_types"]), d["body"])
            except (ValueError, KeyError, TypeError):
                continue
            if recordable(fn) and fn.name == name.lower():
                functions[fn.key] = fn
    _cache = (stamp, functions)
    return functions


def _save(functions: dict[tuple[str, str], MlFunction]) -> None:
    p = path()
    if not p:
        return
    lines = [HEADER]
    for fn in sorted(functions.values(), key=lambda f: f.key):
        definition = json.dumps({"endpoint": fn.endpoint, "max_batch_size": fn.max_batch_size, "returns": fn.returns,
                                 "param_types": list(fn.param_types), "body": fn.body})  # ASCII: no tab, no newline
        lines.append(f"{fn.schema}\t{fn.name}\t{definition}\n")
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(p), prefix=".sqlml-functions-")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.writelines(lines)
    os.replace(tmp, p)
    host.set_rewrite_names(sorted(functions))


# ---- changes wait for the statement's end ----------------------------------------------------


@dataclass(frozen=True)
class Change:
    """What a statement will do to the registry if the server runs it successfully."""

    texts: tuple[str, ...]  # the statement as sent and as rewritten: its end event carries one of them
    add: MlFunction | None = None
    drop: tuple[str, str] | None = None  # (schema, name)
    drop_schema: str | None = None


_waiting: dict[int, Change] = {}


def forget(connection: int) -> None:
    """A new statement on the connection: the previous one's change never saw its end."""
    _waiting.pop(connection, None)


def expect(connection: int, change: Change) -> None:
    _waiting[connection] = change


def statement_ended(connection: int, status: int, text: str | None) -> None:
    """Applies the connection's waiting change if this is its statement and it succeeded."""
    change = _waiting.pop(connection, None)
    if change is None or status != 0 or text not in change.texts:
        return
    with _lock:
        functions = dict(load())
        if change.drop is not None:
            functions.pop(change.drop, None)
        if change.drop_schema is not None:
            functions = {k: v for k, v in functions.items() if k[0] != change.drop_schema}
        if change.add is not None and recordable(change.add):
            functions[change.add.key] = change.add
        _save(functions)
