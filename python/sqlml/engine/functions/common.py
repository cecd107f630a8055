"""What every function family shares: argument checks, the on_error policy, the kinds of
values crossing to C, and the memo lane's spec (native/memo.h)."""

from __future__ import annotations

from ... import host
from ...crossing import MEMO_REAL, MemoSpec
from ... import types as sqltypes
from ...errors import ArgumentError, SqlmlError
from .. import Engine
from ..dispatch import QueryKilled
from ..tally import FLUSH_EVERY

FLUSH_MASK = FLUSH_EVERY - 1  # FLUSH_EVERY is a power of two

STRING, REAL, INT, DECIMAL = sqltypes.KIND_STRING, sqltypes.KIND_REAL, sqltypes.KIND_INT, sqltypes.KIND_DECIMAL
KIND_NAMES = {STRING: "STRING", REAL: "REAL", INT: "INTEGER", DECIMAL: "DECIMAL"}
ORDINALS = ("1st", "2nd", "3rd") + tuple(f"{i}th" for i in range(4, 300))
DEFAULT_COMPREHEND_BATCH = 25



def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def as_text(value: object, function: str, what: str) -> str:
    if not isinstance(value, bytes):
        # A number where text is expected (a constant, seen before the server converts it
        # to the string the row then carries): the same text, so the same verdict.
        return str(value)
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise ArgumentError(
            f"{function}: {what} is not valid UTF-8; pass CONVERT(expr USING utf8mb4)"
        ) from None


def const_int(value: object, function: str, position: int, name: str) -> int:
    try:
        number = int(value.decode("ascii").strip()) if isinstance(value, bytes) else value
        if isinstance(number, float) and number.is_integer():
            number = int(number)
    except (UnicodeDecodeError, ValueError):
        number = None
    if not isinstance(number, int) or number <= 0:
        raise ArgumentError(f"{function}: {ORDINALS[position]} argument ({name}) must be an integer > 0, got {value!r}")
    return number


def apply_on_error(engine: Engine, exc: SqlmlError):
    """Applies the per-row policy to a failed row: raise, or NULL plus a warning. A
    killed statement is never a NULL."""
    if engine.settings.on_error == "null" and not isinstance(exc, QueryKilled):
        host.warn(exc.sql_errno, exc.sql_message)
        return None
    raise exc


# ---- the memo lane (native/memo.h) ---------------------------------------------------
#
# Prepared.memo: the reading functions and warm-ups of the batch path name their target
# and key arguments, so that C can keep a statement's answers by the rows' own argument
# bytes and answer reads without a crossing. None where the cache is off (the memo is
# the cache's answers, seen from C).

COMPREHEND_TARGET = b"comprehend"


def sagemaker_target(endpoint: str) -> bytes:
    return b"sagemaker\0" + endpoint.encode()


def memo_spec(engine: Engine, target: bytes, first: int, count: int, mode: int = MEMO_REAL,
               bounds: tuple[int, int] = (0, 0), csv_lines: bool = False) -> MemoSpec | None:
    s = engine.settings
    if not s.cache_enabled:
        return None
    return MemoSpec(target, first, count, mode, bounds[0], bounds[1], float(s.cache_ttl_s), s.cache_max_entries,
                    s.cache_max_mb * 1024 * 1024, csv_lines)
