"""The only Python API the C shim calls. Keep it small and stable.

    boot(library_path)                         once per server process
    prepare(name, kind, arg_types, constants, arg_names)
                                               once per statement (xxx_init)
        -> crossing.Prepared(call, max_length, decimals, coerce, memo)
    call(*row_args)                            once per row (xxx), returns None,
                                               float, int or bytes, or raises SqlmlError
    check_system_variable(name, value)         SET GLOBAL sqlml_* (raises SettingError)
    rewrite(query, prepared, db, connection)   MySQL pre-parse: -> (text | None, awaits_end)
    statement_ended(connection, status, query) MySQL audit: a statement's end status

Everything behind this module may change freely.
"""

from __future__ import annotations

import gc
import os
import sys

from . import config
from .engine import Engine
from .engine import functions
from .errors import SqlmlError

check_system_variable = config.check_system_variable

_engine: Engine | None = None


def cnf_path_for(library_path: str) -> str:
    return os.path.join(os.path.dirname(library_path), "sqlml.cnf")


def boot(library_path: str) -> None:
    """Builds the engine and does every import and client build now, not on a row."""
    global _engine
    if _engine is not None:
        return
    # Server threads have small stacks: fail with RecursionError long before overflow.
    sys.setrecursionlimit(400)
    engine = Engine(cnf_path_for(library_path))
    engine.clients.get("comprehend")
    engine.clients.get("sagemaker-runtime")
    functions.version_text()
    # boto3's service models are a few hundred thousand long-lived objects that every
    # full collection would walk again; nothing of theirs is garbage: out of the
    # collector's sight with them.
    gc.collect()
    gc.freeze()
    _engine = engine


def prepare(name: str, kind: int, arg_types: tuple, constants: tuple, arg_names: tuple = ()):
    if _engine is None:
        raise RuntimeError("sqlml.bridge.prepare called before boot")
    try:
        prepared = functions.prepare(_engine, name, kind, arg_types, constants, arg_names)
    except SqlmlError as exc:
        # The server prints "Can't initialize function 'name'; <at most 80 chars>":
        # drop our own "name: " prefix so the fix fits in those 80 characters.
        if exc.sql_message.startswith(name + ": "):
            exc.sql_message = exc.sql_message[len(name) + 2:]
        raise
    if isinstance(prepared.call, functions.WarmAggregate):
        prepared.call.closed_at_statement_end = True  # the shim's deinit calls its close()
    return prepared


def engine() -> Engine:
    if _engine is None:
        raise RuntimeError("sqlml engine is not booted")
    return _engine


# The rewriter (and sqlglot behind it) is imported where a statement first needs it: the
# MySQL pre-parse hook, never on MariaDB.
def rewrite(query: str, prepared: int, db: str | None, connection: int):
    from . import rewrite as rewriter

    return rewriter.rewrite(query, prepared, db, connection, engine())


def statement_ended(connection: int, status: int, query: str | None) -> None:
    from . import rewrite as rewriter

    rewriter.statement_ended(connection, status, query)
