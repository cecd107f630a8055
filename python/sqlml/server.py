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


def library_version() -> str:
    return _native.library_version() if _native else "not loaded"
