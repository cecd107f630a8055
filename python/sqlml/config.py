"""Settings: defaults < the server's SQLML_* environment < sqlml.cnf < system variables.

`sqlml install` writes sqlml.cnf (INI, section [sqlml]) next to sqlml.so; the C shim
reads only its `python` key, everything else is read here. The file is re-read when
it changes (checked at most once a second, at statement start), so a DBA can change
a setting without restarting the server.

The plugins (INSTALL PLUGIN sqlml / aws) add system variables (SYSTEM_VARIABLES below):
one set with SET GLOBAL, in my.cnf or on the command line (to a value other than its
default) wins over the file and the environment, and reaches the engine at the next
statement. Every value is validated where it enters, with a message that says what is
allowed: SET GLOBAL refuses a bad value before it is stored (check_system_variable).

SYSTEM_VARIABLES is also the C side's declaration: the build loads this file by path
(native/gen_constants.py) and generates the plugins' variable lists from it, so keep its
module-level imports to the standard library (like crossing.py's).
"""

from __future__ import annotations

import configparser
import dataclasses
import os
import re
import urllib.parse
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
    # IAM roles assumed with STS per service (Aurora's aws_default_*_role); None: the
    # default credential chain. sts_endpoint_url overrides STS (tests, private links).
    sagemaker_role_arn: str | None = None
    comprehend_role_arn: str | None = None
    s3_role_arn: str | None = None
    sts_endpoint_url: str | None = None
    # MySQL: rewrite statements with ML calls into the batched form before parsing.
    rewrite: bool = True
    # Training-data export (engine/functions/export.py): an S3 endpoint override, the multipart part size
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
    if not raw.startswith(("http://", "https://")) or not raw.isprintable() or " " in raw:
        raise SettingError(f"{name} must be an http:// or https:// URL (or empty for AWS), got {raw[:200]!r}")
    parts = urllib.parse.urlsplit(raw)
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        # user:password@host would put a secret into SHOW VARIABLES and error messages.
        raise SettingError(f"{name} must not carry credentials (user@host); use an IAM role or the default chain")
    if parts.query or parts.fragment or "?" in raw or "#" in raw:
        # A query string is where a token would go: secrets do not belong in a setting
        # that sqlml_status() and error messages may show.
        raise SettingError(f"{name} must not have a query string or fragment (?... or #...); "
                           f"got a URL for host {parts.hostname!r}")
    try:
        parts.port  # noqa: B018 - raises ValueError on a port out of range
    except ValueError:
        raise SettingError(f"{name} has an invalid port: {raw[:200]!r}") from None
    if not parts.hostname:
        raise SettingError(f"{name} must name a host, got {raw[:200]!r}")
    return raw


_ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}", re.ASCII)


def _role_arn(name: str, raw: str) -> str | None:
    value = raw.strip()
    if not value:
        return None
    if not _ROLE_ARN.fullmatch(value):
        raise SettingError(f"{name} must be an IAM role ARN such as arn:aws:iam::123456789012:role/ml "
                           f"(or empty for the default credentials), got {raw[:120]!r}")
    return value


def _choice(name: str, raw: str, allowed: tuple[str, ...]) -> str:
    value = raw.strip().lower()
    if value not in allowed:
        raise SettingError(f"{name} must be one of {', '.join(allowed)}; got {raw!r}")
    return value


def _region(name: str, raw: str) -> str:
    value = raw.strip()
    if not 0 < len(value) <= 64 or not all(c.isascii() and (c.isalnum() or c == "-") for c in value):
        raise SettingError(f"{name} must be an AWS region name such as us-east-1, got {raw[:100]!r}")
    return value


# Media types as an HTTP Accept header carries them: type/subtype[;param=value], comma
# separated, RFC 9110 tokens with spaces or tabs only around ; and , (no CR, LF or
# non-ASCII: the value becomes a request header).
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_MEDIA = rf"{_TOKEN}/{_TOKEN}(?:[ \t]*;[ \t]*{_TOKEN}=(?:{_TOKEN}|\"[^\"\\\x00-\x1f\x7f]*\"))*"
_MEDIA_TYPE = re.compile(rf"{_MEDIA}(?:[ \t]*,[ \t]*{_MEDIA})*", re.ASCII)


def _media_type(name: str, raw: str) -> str:
    value = raw.strip()
    if not value:
        return "text/csv"
    if len(value) > 255 or not _MEDIA_TYPE.fullmatch(value):
        raise SettingError(f"{name} must be a media type such as text/csv or application/json "
                           f"(type/subtype[;param=value], no line breaks), got {raw[:100]!r}")
    return value


def _bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "on", "true", "yes"):
        return True
    if value in ("0", "off", "false", "no"):
        return False
    raise SettingError(f"{name} must be ON or OFF (1/0, true/false, yes/no), got {raw!r}")


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
    "sagemaker_accept": _media_type,
    "cache_enabled": _bool,
    "cache_max_entries": lambda n, r: _int_in(n, r, 0, 100_000_000),
    "cache_max_mb": lambda n, r: _int_in(n, r, 0, 65536),
    "cache_ttl_s": _positive_float,
    "coalesce_linger_ms": _linger,
    "coalesce": _bool,
    "sagemaker_role_arn": _role_arn,
    "comprehend_role_arn": _role_arn,
    "s3_role_arn": _role_arn,
    "sts_endpoint_url": _url,
    "rewrite": _bool,
    "s3_endpoint_url": _url,
    # S3 refuses parts under 5 MiB (but the last) and over 5 GiB.
    "export_part_mb": lambda n, r: _int_in(n, r, 5, 5120),
    # A file of fewer bytes than a part is one PutObject; S3 objects stop at 5 TiB.
    "export_file_mb": lambda n, r: _int_in(n, r, 1, 5 * 1024 * 1024),
}
KEYS = tuple(_PARSERS)


# The kinds of system variable the plugins declare (native/plugin.c's STR, BOOL and LL).
STR, BOOL, LL = "STR", "BOOL", "LL"
PLUGINS = ("aws", "sqlml", "aurora_ml")  # the plugins native/plugin.c declares, in its order
_DEFAULTS = Settings()
_DEFAULT_TYPES = {STR: (str, type(None)), BOOL: (bool,), LL: (int, float)}  # Settings' types per kind


@dataclass(frozen=True)
class SystemVariable:
    """A server system variable and the setting it drives: one row of SYSTEM_VARIABLES.

    The server's default is Settings' default for `key` (divided by `scale` for LL), so a
    default is written once, in Settings. `unit` only words messages ("from 1 to 10 ms")."""

    plugin: str  # aws, sqlml or aurora_ml: the server shows the variable as <plugin>_<name>
    name: str
    kind: str  # STR (text), BOOL (ON/OFF) or LL (an integer from low to high)
    comment: str  # the server's description of it (information_schema, mysqld --help)
    low: int = 0
    high: int = 0
    unit: str = ""
    scale: float = 1.0  # LL: setting = value * scale (0.001: the variable is in ms, the setting in s)
    key: str = ""  # the Settings field it sets; empty: the one named as the variable

    def __post_init__(self) -> None:
        if not self.key:
            object.__setattr__(self, "key", self.name)
        # Fails the build (native/gen_constants.py loads this table) rather than a server.
        if self.plugin not in PLUGINS or self.kind not in (STR, BOOL, LL) or self.key not in _PARSERS:
            raise ValueError(f"{self.full_name}: plugin must be one of {PLUGINS}, kind STR/BOOL/LL and key a "
                             f"setting; got {self.plugin!r}, {self.kind!r}, {self.key!r}")
        value = getattr(_DEFAULTS, self.key)
        if not isinstance(value, _DEFAULT_TYPES[self.kind]) or (self.kind != BOOL and isinstance(value, bool)):
            raise ValueError(f"{self.full_name}: a {self.kind} variable cannot carry {self.key}'s default {value!r}")
        if self.kind == LL:
            if abs(self.default * self.scale - value) > 1e-9 * max(1.0, abs(value)):
                raise ValueError(f"{self.full_name}: default {self.key}={value!r} is not a whole number of the "
                                 f"variable's unit (setting = value * {self.scale!r})")
            if not self.low <= self.default <= self.high:
                raise ValueError(f"{self.full_name}: default {self.default} is outside {self.low}..{self.high}")

    @property
    def full_name(self) -> str:
        return f"{self.plugin}_{self.name}"

    @property
    def unit_text(self) -> str:
        return f" {self.unit}" if self.unit else ""

    @property
    def default(self) -> str | int:
        """The server's default: text for STR, 1/0 for BOOL, an integer for LL."""
        value = getattr(_DEFAULTS, self.key)
        if self.kind == STR:
            return "" if value is None else str(value)
        if self.kind == BOOL:
            return 1 if value else 0
        return round(value / self.scale)


# Every system variable, once: native/plugin.c's declarations are generated from this table
# at build time (native/gen_constants.py writes sqlml_variables.h), SET GLOBAL is checked
# against it (check_system_variable) and the engine reads the values through it.
# Columns: plugin, name, kind, comment, then for LL: low, high, unit, scale; and the setting
# it drives (key=) where it is not named as the variable.
_SYSTEM_VARIABLE_TABLE = (
    SystemVariable("aws", "default_sagemaker_role", STR,
                   "IAM role ARN assumed (STS) for SageMaker calls; empty: default credentials",
                   key="sagemaker_role_arn"),
    SystemVariable("aws", "default_comprehend_role", STR,
                   "IAM role ARN assumed (STS) for Comprehend calls; empty: default credentials",
                   key="comprehend_role_arn"),
    SystemVariable("aws", "default_s3_role", STR,
                   "IAM role ARN assumed (STS) for S3 exports; empty: default credentials", key="s3_role_arn"),
    SystemVariable("sqlml", "region", STR, "AWS region of the services"),
    SystemVariable("sqlml", "comprehend_endpoint_url", STR,
                   "Comprehend endpoint URL override (e.g. sqlml serve); empty: AWS"),
    SystemVariable("sqlml", "sagemaker_endpoint_url", STR, "SageMaker Runtime endpoint URL override; empty: AWS"),
    SystemVariable("sqlml", "sts_endpoint_url", STR, "STS endpoint URL override (role assumption); empty: AWS"),
    SystemVariable("sqlml", "s3_endpoint_url", STR, "S3 endpoint URL override (exports); empty: AWS"),
    SystemVariable("sqlml", "export_part_mb", LL, "Export multipart part size (MiB)", 5, 5120, "MiB"),
    SystemVariable("sqlml", "export_file_mb", LL, "Export file size before the next .part_NNNNN (MiB)",
                   1, 5 * 1024 * 1024, "MiB"),
    SystemVariable("sqlml", "connect_timeout_ms", LL, "Connect timeout to a service (ms)", 1, 86_400_000, "ms",
                   0.001, key="connect_timeout_s"),
    SystemVariable("sqlml", "max_attempts", LL, "Attempts per request (throttling, 5xx, timeouts)", 1, 10),
    SystemVariable("sqlml", "on_error", STR,
                   "A failing row: 'error' fails the statement, 'null' gives NULL and a warning"),
    SystemVariable("sqlml", "max_in_flight", LL, "Requests in flight at once per server", 1, 256),
    SystemVariable("sqlml", "sagemaker_accept", STR, "Accept header of SageMaker requests"),
    SystemVariable("sqlml", "cache_enabled", BOOL, "Result cache on or off"),
    SystemVariable("sqlml", "cache_max_entries", LL, "Result cache size (entries)", 0, 100_000_000),
    SystemVariable("sqlml", "cache_max_mb", LL, "Result cache size (MB)", 0, 65536, "MB"),
    SystemVariable("sqlml", "cache_ttl_s", LL, "Result cache time to live (s)", 1, 86400, "s"),
    SystemVariable("sqlml", "coalesce", BOOL, "Merge concurrent calls from several connections into one request"),
    SystemVariable("sqlml", "coalesce_linger_ms", LL, "How long a request waits for company (ms)", 0, 100, "ms"),
    SystemVariable("sqlml", "rewrite", BOOL,
                   "MySQL: rewrite statements with ML calls into batched form before they are parsed"),
    SystemVariable("aurora_ml", "inference_timeout", LL, "Budget for one row's answer, retries included (ms)",
                   1, 86_400_000, "ms", 0.001, key="timeout_s"),
)
SYSTEM_VARIABLES = {var.full_name: var for var in _SYSTEM_VARIABLE_TABLE}
if len(SYSTEM_VARIABLES) != len(_SYSTEM_VARIABLE_TABLE):
    raise ValueError(f"SYSTEM_VARIABLES: {len(_SYSTEM_VARIABLE_TABLE)} rows but only {len(SYSTEM_VARIABLES)} "
                     "distinct names; each variable must be declared once")


def system_variable_raw(name: str, value) -> tuple[str, str]:
    """(setting key, raw text) for a system variable's value; SettingError if not allowed."""
    var = SYSTEM_VARIABLES.get(name)
    if var is None:
        raise SettingError(f"{name} is not a sqlml system variable")
    if var.kind == LL:
        if isinstance(value, bool) or not isinstance(value, int) or not var.low <= value <= var.high:
            raise SettingError(f"{name} must be an integer from {var.low} to {var.high}{var.unit_text}, "
                               f"got {value!r}")
        return var.key, repr(value * var.scale) if var.scale != 1.0 else str(value)
    if isinstance(value, bool):
        return var.key, "1" if value else "0"
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise SettingError(f"{name} must be UTF-8 text, got {value[:100]!r}") from None
    raw = "" if value is None else str(value)
    if "\0" in raw:
        raise SettingError(f"{name} must not contain NUL bytes")
    _PARSERS[var.key](name, raw)  # validates, naming the variable as the DBA typed it
    return var.key, raw


def check_system_variable(name: str, value) -> None:
    """Called by the plugin for SET GLOBAL before a value is stored: refuse it with what is allowed."""
    from .errors import SettingRefused

    try:
        system_variable_raw(name, value)
    except SettingError as exc:
        raise SettingRefused(str(exc)) from None


def from_system_variables(variables: Mapping[str, tuple]) -> dict[str, str]:
    """Raw setting values of the variables the DBA set (SET GLOBAL, my.cnf, command line)."""
    values = {}
    for name, (value, is_set) in variables.items():
        if is_set and name in SYSTEM_VARIABLES:
            key, raw = system_variable_raw(name, value)
            values[key] = raw
    return values


def parse(values: Mapping[str, str], base: Settings | None = None) -> Settings:
    """Returns `base` with `values` applied; raises SettingError on any bad value or key."""
    changes = {}
    for key, raw in values.items():
        if key not in _PARSERS:
            raise SettingError(f"unknown setting {key!r}; known settings: {', '.join(KEYS)}")
        changes[key] = _PARSERS[key](key, raw)
    return dataclasses.replace(base or Settings(), **changes)


def read_cnf(path: str) -> dict[str, str]:
    """The [sqlml] section of an INI file, without the `python` key (the shim's).
    SettingError names the file and what is wrong with it."""
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with open(path, encoding="utf-8") as f:
            parser.read_file(f)
    except configparser.Error as exc:
        raise SettingError(f"{path}: {' '.join(str(exc).split())[:300]}") from None
    except UnicodeDecodeError:
        raise SettingError(f"{path}: not UTF-8 text") from None
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


def load(cnf_path: str | None, environ: Mapping[str, str] = os.environ,
         variables: Mapping[str, tuple] | None = None) -> Settings:
    """Defaults < environment < sqlml.cnf < system variables set by the DBA."""
    values = from_environment(environ)
    if cnf_path and os.path.exists(cnf_path):
        values.update(read_cnf(cnf_path))
    if variables:
        values.update(from_system_variables(variables))
    return parse(values)
