"""The SageMaker functions made with Aurora's DDL, as the rewriter knows them.

The rewriter translates `CREATE FUNCTION f(...) RETURNS t ALIAS AWS_SAGEMAKER_INVOKE_ENDPOINT
ENDPOINT NAME 'ep' [MAX_BATCH_SIZE n]` and remembers f here, so that later statements
calling f(...) can be batched: a file in the server's datadir (which the server can
write and which survives restarts), one line per function, its name first (the C
filter reads only that field) and its definition as JSON after a tab.

A name in this file is only ever used to *send more inputs at once*: a statement's
answers still come from the function itself, so a stale entry costs requests, never
a wrong answer.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from dataclasses import dataclass

from .. import server


@dataclass(frozen=True)
class MlFunction:
    name: str
    endpoint: str
    max_batch_size: int
    returns: str
    param_types: tuple[str, ...]


_lock = threading.Lock()
_cache: tuple[float | None, dict[str, MlFunction]] = (None, {})


def path() -> str | None:
    return server.rewrite_functions_file()


def load() -> dict[str, MlFunction]:
    """name (lower case) -> MlFunction; re-read when the file changes."""
    global _cache
    p = path()
    if not p:
        return {}
    try:
        mtime = os.stat(p).st_mtime
    except OSError:
        return {}
    if _cache[0] == mtime:
        return _cache[1]
    functions = {}
    with open(p, encoding="utf-8") as f:
        for line in f:
            name, _, definition = line.rstrip("\n").partition("\t")
            if not name or name.startswith("#"):
                continue
            try:
                d = json.loads(definition)
                functions[name] = MlFunction(name, d["endpoint"], int(d["max_batch_size"]), d["returns"],
                                             tuple(d["param_types"]))
            except (ValueError, KeyError, TypeError):
                continue  # a damaged line only loses batching for that name
    _cache = (mtime, functions)
    return functions


def _save(functions: dict[str, MlFunction]) -> None:
    p = path()
    if not p:
        return
    lines = ["# sqlml: SageMaker functions made with Aurora's DDL (written by the statement rewriter)\n"]
    for fn in sorted(functions.values(), key=lambda f: f.name):
        lines.append(fn.name + "\t" + json.dumps({"endpoint": fn.endpoint, "max_batch_size": fn.max_batch_size,
                                                  "returns": fn.returns, "param_types": list(fn.param_types)}) + "\n")
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(p), prefix=".sqlml-functions-")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.writelines(lines)
    os.replace(tmp, p)
    server.set_rewrite_names(sorted(functions))


def add(fn: MlFunction) -> None:
    with _lock:
        functions = dict(load())
        functions[fn.name] = fn
        _save(functions)


def remove(name: str) -> None:
    with _lock:
        functions = dict(load())
        if functions.pop(name, None) is not None:
            _save(functions)
