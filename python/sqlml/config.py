"""Settings: defaults, then the server's SQLML_* environment, then sqlml.cnf beside the library.

`sqlml install` writes sqlml.cnf (INI, section [sqlml]) next to sqlml.so; the C shim
reads only its `python` key, everything else is read here. Every value is validated
where it enters, with a message that says what is allowed. The file is re-read when
it changes (checked at most once a second, at statement start), so a DBA can change
a setting without restarting the server.
"""

from __future__ import annotations

import configparser
import dataclasses
import os
from dataclasses import dataclass
from typing import Mapping

ON_ERROR_POLICIES = ("error", "null")


class SettingError(ValueError):
    pass


@dataclass(frozen=True)
class Settings:
    region: str = "us-east-1"
    comprehend_endpoint_url: str | None = None
    sagemaker_endpoint_url: str | None = None
    # Whole-call budget (all attempts, backoff included) for one row's answer.
    timeout_s: float = 30.0
    connect_timeout_s: float = 5.0
    max_attempts: int = 3
    # 'error': a failing row fails the statement; 'null': it becomes NULL + warning.
    on_error: str = "error"
    # Requests in flight at once per process (worker threads and HTTP connections).
    max_in_flight: int = 16
    sagemaker_accept: str = "text/csv"
    # The result cache (engine/cache.py) and cross-connection coalescing (engine/coalesce.py).
    cache_enabled: bool = True
    cache_max_entries: int = 2_000_000
    cache_max_mb: int = 512
    cache_ttl_s: float = 300.0
    coalesce_linger_ms: float = 0.0
    coalesce: bool = True
    # Training-data export (export.py): an S3 endpoint override, the multipart part size
    # and the size at which an export starts its next file (.part_00001, ...).
    s3_endpoint_url: str | None = None
    export_part_mb: int = 8
    export_file_mb: int = 6144


def _positive_float(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise SettingError(f"{name} must be a number of seconds > 0, got {raw!r}") from None
    if not value > 0 or value > 86400:
        raise SettingError(f"{name} must be > 0 and at most 86400 seconds, got {raw!r}")
    return value


def _int_in(name: str, raw: str, low: int, high: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise SettingError(f"{name} must be an integer from {low} to {high}, got {raw!r}") from None
    if not low <= value <= high:
        raise SettingError(f"{name} must be an integer from {low} to {high}, got {raw!r}")
    return value


def _url(name: str, raw: str) -> str | None:
    raw = raw.strip()
    if not raw:
        return None
    if not raw.startswith(("http://", "https://")):
        raise SettingError(f"{name} must be an http:// or https:// URL (or empty for AWS), got {raw!r}")
    return raw


def _choice(name: str, raw: str, allowed: tuple[str, ...]) -> str:
    value = raw.strip().lower()
    if value not in allowed:
        raise SettingError(f"{name} must be one of {', '.join(allowed)}; got {raw!r}")
    return value


def _region(name: str, raw: str) -> str:
    value = raw.strip()
    if not value or not all(c.isalnum() or c == "-" for c in value):
        raise SettingError(f"{name} must be an AWS region name such as us-east-1, got {raw!r}")
    return value


def _bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "on", "true", "yes"):
        return True
    if value in ("0", "off", "false", "no"):
        return False
    raise SettingError(f"{name} must be ON or OFF (1/0, true/false), got {raw!r}")


def _linger(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 100:
        raise SettingError(f"{name} must be a number of milliseconds from 0 to 100, got {raw!r}")
    return value


_PARSERS = {
    "region": _region,
    "comprehend_endpoint_url": _url,
    "sagemaker_endpoint_url": _url,
    "timeout_s": _positive_float,
    "connect_timeout_s": _positive_float,
    "max_attempts": lambda n, r: _int_in(n, r, 1, 10),
    "on_error": lambda n, r: _choice(n, r, ON_ERROR_POLICIES),
    "max_in_flight": lambda n, r: _int_in(n, r, 1, 256),
    "sagemaker_accept": lambda n, r: r.strip() or "text/csv",
    "cache_enabled": _bool,
    "cache_max_entries": lambda n, r: _int_in(n, r, 0, 100_000_000),
    "cache_max_mb": lambda n, r: _int_in(n, r, 0, 65536),
    "cache_ttl_s": _positive_float,
    "coalesce_linger_ms": _linger,
    "coalesce": _bool,
    "s3_endpoint_url": _url,
    # S3 refuses parts under 5 MiB (but the last) and over 5 GiB.
    "export_part_mb": lambda n, r: _int_in(n, r, 5, 5120),
    # A file of fewer bytes than a part is one PutObject; S3 objects stop at 5 TiB.
    "export_file_mb": lambda n, r: _int_in(n, r, 1, 5 * 1024 * 1024),
}
KEYS = tuple(_PARSERS)


def parse(values: Mapping[str, str], base: Settings | None = None) -> Settings:
    """Returns `base` with `values` applied; raises SettingError on any bad value or key."""
    changes = {}
    for key, raw in values.items():
        if key not in _PARSERS:
            raise SettingError(f"unknown setting {key!r}; known settings: {', '.join(KEYS)}")
        changes[key] = _PARSERS[key](key, raw)
    return dataclasses.replace(base or Settings(), **changes)


def read_cnf(path: str) -> dict[str, str]:
    """The [sqlml] section of an INI file, without the `python` key (the shim's)."""
    parser = configparser.ConfigParser(interpolation=None)
    with open(path, encoding="utf-8") as f:
        parser.read_file(f)
    if not parser.has_section("sqlml"):
        return {}
    return {k: v for k, v in parser.items("sqlml") if k != "python"}


def from_environment(environ: Mapping[str, str]) -> dict[str, str]:
    values = {}
    region = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION")
    if region:
        values["region"] = region
    for key in KEYS:
        raw = environ.get("SQLML_" + key.upper())
        if raw is not None:
            values[key] = raw
    return values


def load(cnf_path: str | None, environ: Mapping[str, str] = os.environ) -> Settings:
    """Defaults < environment < sqlml.cnf (the file wins so that a live edit takes effect)."""
    values = from_environment(environ)
    if cnf_path and os.path.exists(cnf_path):
        values.update(read_cnf(cnf_path))
    return parse(values)
