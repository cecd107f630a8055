"""Configuration of the local inference service: which endpoints exist and how they are served.

Read from TOML (``tomllib``) or JSON, or given as a dict, and validated here, where it
enters: an unknown key, a wrong type or an impossible value fails with a message that
says what is allowed. Relative paths are resolved against the config file's folder (the
current directory for a dict), so the result can be handed to another process as JSON
(``to_json``) without changing meaning. ``models.py`` builds an endpoint from an
:class:`EndpointConfig`; ``supervisor.py`` reads :class:`ServerConfig`.

Format (TOML)::

    [server]                      # optional; command-line flags win
    host = "127.0.0.1"
    port = 8080
    workers = 2                   # worker processes; default: CPU count
    account_id = "123456789012"   # only used in AWS-shaped error messages
    region = "us-east-1"

    [endpoints.random-cut-forest-model-demo]
    model = "rcf"
    train = "demo-taxi"           # or train_csv = "file.csv" with column = "value" (or columns = [...])
    shingle_size = 1 ; num_trees = 100 ; sample_size = 256 ; seed = 42

    [endpoints.churn]
    model = "sklearn"             # or "xgboost"
    path = "churn.joblib"         # joblib/pickle (sklearn) or XGBoost JSON/UBJSON (xgboost)
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from .data import DEMO_TAXI_POINTS

DEFAULT_PORT = 8080  # the port SageMaker's own inference containers listen on
MODEL_KINDS = ("rcf", "sklearn", "xgboost")
TRAIN_SOURCES = ("demo-taxi",)
CSV_LAYOUTS = ("lines", "one-line")
# Same rule as SageMaker's EndpointName: 1-63 letters, digits and hyphens, no leading hyphen.
_ENDPOINT_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
_LOOPBACK_HOSTS = ("localhost", "::1")

_SERVER_KEYS = {"host", "port", "workers", "account_id", "region", "idle_timeout_s"}
_COMMON_KEYS = {"model", "csv_output"}
_MODEL_KEYS = {
    "rcf": {"train", "train_csv", "column", "columns", "demo_points", "shingle_size", "num_trees",
            "sample_size", "seed", "time_decay"},
    "sklearn": {"path"},
    "xgboost": {"path"},
}


class ConfigError(ValueError):
    """The configuration is invalid; the message says where and what is allowed."""


@dataclass(frozen=True)
class EndpointConfig:
    """One endpoint: its model kind and that model's settings (paths already absolute)."""

    name: str
    model: str
    csv_output: str = "lines"  # text/csv answers: one prediction per line, or all on one line
    # rcf
    train: str | None = None
    train_csv: str | None = None
    columns: tuple[str, ...] = ()
    demo_points: int = DEMO_TAXI_POINTS
    shingle_size: int = 1
    num_trees: int = 100
    sample_size: int = 256
    seed: int = 42
    time_decay: float = 0.0  # 0: every training point equally likely in the sample, like batch training
    # sklearn / xgboost
    path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The endpoint as a config table again (only the keys its model kind accepts)."""
        allowed = _COMMON_KEYS | _MODEL_KEYS[self.model]
        item = {k: v for k, v in asdict(self).items() if k in allowed and v is not None}
        if self.model == "rcf":
            if self.train_csv:
                item["columns"] = list(self.columns)
                item.pop("demo_points", None)
            else:
                item.pop("columns", None)
        return item


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    workers: int | None = None  # None: one per CPU
    account_id: str = "123456789012"
    region: str = "us-east-1"
    idle_timeout_s: float = 120.0  # an idle keep-alive connection is closed after this long
    endpoints: dict[str, EndpointConfig] = field(default_factory=dict)

    def to_json(self) -> str:
        """The validated config as JSON (absolute paths), loadable again with :func:`load_config`."""
        doc: dict[str, Any] = {"server": {k: v for k, v in asdict(self).items() if k != "endpoints"}}
        if doc["server"]["workers"] is None:
            del doc["server"]["workers"]
        doc["endpoints"] = {name: ep.to_dict() for name, ep in self.endpoints.items()}
        return json.dumps(doc, sort_keys=True)


def default_config_path() -> Path:
    """The config shipped in the package: the demo RCF endpoint trained on demo-taxi."""
    return Path(str(resources.files(__package__).joinpath("default.toml")))


def load_config(source: str | os.PathLike | dict | ServerConfig | None = None) -> ServerConfig:
    """Read and validate a config from a TOML/JSON file, a dict, or the shipped default (None)."""
    if isinstance(source, ServerConfig):
        return source
    if source is None:
        source = default_config_path()
    if isinstance(source, dict):
        return _parse(source, Path.cwd(), "config")
    path = Path(source)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    try:
        if path.suffix.lower() == ".json":
            doc = json.loads(raw)
        else:
            doc = tomllib.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:  # TOMLDecodeError and JSONDecodeError are ValueErrors
        raise ConfigError(f"{path}: not valid {'JSON' if path.suffix.lower() == '.json' else 'TOML'}: {exc}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: the top level must be a table/object")
    return _parse(doc, path.resolve().parent, str(path))


def _parse(doc: dict, base: Path, where: str) -> ServerConfig:
    unknown = set(doc) - {"server", "endpoints"}
    if unknown:
        raise ConfigError(f"{where}: unknown top-level key(s) {', '.join(sorted(unknown))}; "
                          "allowed: [server], [endpoints.NAME]")
    server = _table(doc.get("server", {}), f"{where}: [server]")
    _no_unknown(server, _SERVER_KEYS, f"{where}: [server]")
    kw: dict[str, Any] = {}
    if "host" in server:
        kw["host"] = _str(server["host"], f"{where}: server.host")
    if "port" in server:
        kw["port"] = _int(server["port"], f"{where}: server.port", 0, 65535)
    if "workers" in server:
        kw["workers"] = _int(server["workers"], f"{where}: server.workers", 0, 256)
    if "account_id" in server:
        kw["account_id"] = _str(server["account_id"], f"{where}: server.account_id")
    if "region" in server:
        kw["region"] = _str(server["region"], f"{where}: server.region")
    if "idle_timeout_s" in server:
        kw["idle_timeout_s"] = _float(server["idle_timeout_s"], f"{where}: server.idle_timeout_s", 1.0, 86400.0)

    endpoints_doc = _table(doc.get("endpoints", {}), f"{where}: [endpoints]")
    endpoints = {}
    for name, spec in endpoints_doc.items():
        endpoints[name] = _endpoint(name, _table(spec, f"{where}: [endpoints.{name}]"), base,
                                    f"{where}: [endpoints.{name}]")
    return ServerConfig(endpoints=endpoints, **kw)


def _endpoint(name: str, spec: dict, base: Path, where: str) -> EndpointConfig:
    if not _ENDPOINT_NAME.match(name):
        raise ConfigError(f"{where}: invalid endpoint name; use 1-63 letters, digits and hyphens "
                          "(SageMaker's EndpointName rule)")
    model = spec.get("model")
    if model not in MODEL_KINDS:
        raise ConfigError(f"{where}: model must be one of {', '.join(MODEL_KINDS)}, got {model!r}")
    _no_unknown(spec, _COMMON_KEYS | _MODEL_KEYS[model], where)
    kw: dict[str, Any] = {"name": name, "model": model}
    if "csv_output" in spec:
        if spec["csv_output"] not in CSV_LAYOUTS:
            raise ConfigError(f"{where}: csv_output must be one of {', '.join(CSV_LAYOUTS)}, "
                              f"got {spec['csv_output']!r}")
        kw["csv_output"] = spec["csv_output"]

    if model == "rcf":
        has_csv, has_train = "train_csv" in spec, "train" in spec
        if has_csv == has_train:
            raise ConfigError(f"{where}: an rcf endpoint needs training data: either train = \"demo-taxi\" "
                              "or train_csv = \"file.csv\" with column = \"name\"")
        if has_train:
            if spec["train"] not in TRAIN_SOURCES:
                raise ConfigError(f"{where}: train must be one of {', '.join(TRAIN_SOURCES)}, got {spec['train']!r}")
            if "column" in spec or "columns" in spec:
                raise ConfigError(f"{where}: column/columns only apply with train_csv")
            kw["train"] = spec["train"]
            if "demo_points" in spec:
                kw["demo_points"] = _int(spec["demo_points"], f"{where}: demo_points", 1, 10_000_000)
        else:
            kw["train_csv"] = str(_path(spec["train_csv"], base, f"{where}: train_csv"))
            if ("column" in spec) == ("columns" in spec):
                raise ConfigError(f"{where}: train_csv needs column = \"name\" or columns = [\"a\", \"b\"]")
            if "column" in spec:
                kw["columns"] = (_str(spec["column"], f"{where}: column"),)
            else:
                cols = spec["columns"]
                if not isinstance(cols, list) or not cols:
                    raise ConfigError(f"{where}: columns must be a non-empty list of column names")
                kw["columns"] = tuple(_str(c, f"{where}: columns[]") for c in cols)
            if "demo_points" in spec:
                raise ConfigError(f"{where}: demo_points only applies with train = \"demo-taxi\"")
        if "shingle_size" in spec:
            kw["shingle_size"] = _int(spec["shingle_size"], f"{where}: shingle_size", 1, 1024)
        if "num_trees" in spec:
            kw["num_trees"] = _int(spec["num_trees"], f"{where}: num_trees", 1, 1000)
        if "sample_size" in spec:
            kw["sample_size"] = _int(spec["sample_size"], f"{where}: sample_size", 2, 100_000)
        if "seed" in spec:
            kw["seed"] = _int(spec["seed"], f"{where}: seed", 0, 2**63 - 1)
        if "time_decay" in spec:
            kw["time_decay"] = _float(spec["time_decay"], f"{where}: time_decay", 0.0, 1.0)
    else:
        if "path" not in spec:
            raise ConfigError(f"{where}: a {model} endpoint needs path = \"model file\"")
        kw["path"] = str(_path(spec["path"], base, f"{where}: path"))
    return EndpointConfig(**kw)


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (the service checks no credentials)."""
    return host in _LOOPBACK_HOSTS or host.startswith("127.")


def _table(value: object, where: str) -> dict:
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a table/object, got {type(value).__name__}")
    return value


def _no_unknown(spec: dict, allowed: set[str], where: str) -> None:
    unknown = set(spec) - allowed
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; "
                          f"allowed: {', '.join(sorted(allowed))}")


def _str(value: object, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where} must be a non-empty string, got {value!r}")
    return value


def _int(value: object, where: str, lo: int, hi: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ConfigError(f"{where} must be an integer from {lo} to {hi}, got {value!r}")
    return value


def _float(value: object, where: str, lo: float, hi: float) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not lo <= value <= hi:
        raise ConfigError(f"{where} must be a number from {lo} to {hi}, got {value!r}")
    return float(value)


def _path(value: object, base: Path, where: str) -> Path:
    text = _str(value, where)
    path = Path(text).expanduser()
    return path if path.is_absolute() else (base / path)
