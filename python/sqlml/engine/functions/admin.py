"""Introspection and administration: sqlml_version, sqlml_status, sqlml_cache_clear, and
the crossing benchmark's sqlml_echo_int."""

from __future__ import annotations

import json
import platform

from ... import __version__, access, host, support
from ...crossing import NOT_FIXED_DEC, Prepared
from ...errors import ArgumentError
from ..tally import flush_all
from .common import INT

STATUS_MAX_LENGTH = 65535  # the JSON grows with the endpoints used; a TEXT column's size


def prepare_cache_clear(engine, name, kind, types, consts):
    if types:
        raise ArgumentError(f"{name}: takes no arguments")
    return Prepared(engine.cache.clear, 0, 0)


def version_text() -> str:
    import boto3

    return (f"sqlml {__version__} (library {host.library_version()}, engine {__version__}, "
            f"Python {platform.python_version()}, boto3 {boto3.__version__}, "
            f"{support.server_note(host.flavor(), host.version(), host.abi_problem())})")


def prepare_version(engine, name, kind, types, consts):
    if types:
        raise ArgumentError(f"{name}: takes no arguments")
    text = version_text().encode()
    return Prepared(lambda: text, len(text), NOT_FIXED_DEC)


def prepare_status(engine, name, kind, types, consts):
    if types:
        raise ArgumentError(f"{name}: takes no arguments")

    # The counters are public (SHOW GLOBAL STATUS shows them to anyone); the settings
    # (role ARNs, endpoint URLs) and which endpoints were called how often only to whom
    # the server lets change global variables (access.ADMIN_PRIVILEGES).
    admin = access.is_admin()

    def row():
        flush_all()
        snap = engine.counters.snapshot()
        snap["cache"] = engine.cache.stats()
        if admin:
            snap["settings"] = {k: v for k, v in engine.settings.__dict__.items()}
            snap["settings_error"] = engine.reload_error
        else:
            del snap["targets"]
            snap["details"] = (f"settings and per-endpoint figures need "
                               f"{access.admin_privileges_text()}")
        return json.dumps(snap, sort_keys=True).encode()

    return Prepared(row, STATUS_MAX_LENGTH, NOT_FIXED_DEC)


def _echo(value):
    return value


def prepare_echo(engine, name, kind, types, consts):
    if len(types) != 1:
        raise ArgumentError(f"{name}: takes exactly 1 argument")
    return Prepared(_echo, 0, 0, (INT,))
