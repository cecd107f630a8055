"""What the engine may ask of the server it runs in, through the shim's _sqlml_native.

Outside a server (unit tests, the CLI) the module is absent and these are no-ops.
"""

from __future__ import annotations

try:
    import _sqlml_native as _native  # provided by sqlml.so before Python starts
except ImportError:  # pragma: no cover - only outside a server
    _native = None


def inside_server() -> bool:
    return _native is not None


def warn(code: int, message: str) -> bool:
    """Adds a warning to the calling statement; False where the server offers no way to."""
    if _native is None:
        return False
    return bool(_native.warn(code, message[:500]))


def flavor() -> str:
    return _native.server_flavor() if _native else "none"


def version() -> str:
    """The server's version string ("" outside a server or if it exports none)."""
    return _native.server_version() if _native else ""


def abi_problem() -> str | None:
    """None, or the ABI mismatch the library found in this server (native/server_api.h)."""
    return _native.abi_problem() if _native else None


def library_version() -> str:
    return _native.library_version() if _native else "not loaded"


def counters() -> tuple:
    """((status variable name, value), ...) from the library, or () outside a server."""
    return _native.counters() if _native else ()


def count(index: int, n: int = 1) -> None:
    _native.count(index, n)


def counting_function():
    """_sqlml_native.count itself (count above, without the call through this module:
    the engine counts several times per request), or None outside a server."""
    return _native.count if _native is not None else None


def memo_invalidate() -> None:
    """Retires the statement memos (native/memo.h): after the cache is cleared or
    disabled, no statement may still answer from what was fetched before."""
    if _native is not None:
        _native.memo_invalidate()


def release_memory() -> bool:
    """Hands the C heap's free pages back to the system (native: malloc_trim); whether
    anything went. False outside a server."""
    return bool(_native.release_memory()) if _native is not None else False


def count_max_function():
    """_sqlml_native.count_max (raises a total to a value), or None outside a server."""
    return _native.count_max if _native is not None else None


def has_grant(privilege: str) -> tuple[int, str]:
    """(1 granted | 0 not | -1 cannot tell, why) for the calling statement's user."""
    if _native is None:
        return -1, "not running inside a server"
    return _native.has_grant(privilege)


def is_native_function(name: str) -> bool:
    """Whether an unqualified call of `name` means one of the server's native functions
    (MySQL; True when the server does not say, False outside a server)."""
    return _native.is_native_function(name) != 0 if _native is not None else False


# The session's binlog format as the server reports it while binary logging is on.
BINLOG_MIXED, BINLOG_STATEMENT, BINLOG_ROW, BINLOG_OFF = 0, 1, 2, 3


def binlog_format() -> int:
    return _native.binlog_format() if _native else -1


def killed() -> bool:
    """Whether the calling connection's statement was killed (KILL QUERY, KILL CONNECTION,
    max_statement_time): waits and loops over user-sized work inside one call ask this
    between steps and stop. False on an engine worker thread and outside a server."""
    return bool(_native.killed()) if _native else False


def settings_generation() -> int:
    """Changes whenever a sqlml system variable does; 0 while the plugins are not installed."""
    return _native.settings_generation() if _native else 0


def system_variables() -> tuple[int, dict]:
    """(generation, {name: (value, explicitly_set)}) of the installed plugins' variables."""
    if _native is None:
        return 0, {}
    generation, items = _native.settings()
    return generation, {name: (value, is_set) for name, value, is_set in items}


def rewrite_functions_file() -> str | None:
    """Where the rewriter keeps the Aurora-DDL functions (MySQL's datadir), or None."""
    return _native.rewrite_functions_file() if _native else None


def set_rewrite_names(names) -> None:
    if _native is not None:
        _native.set_rewrite_names(tuple(names))
