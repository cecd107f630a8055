"""The fake's shared state: its settings, fault rules and statistics, the error codes and
messages of both services, and the control API's routes."""

import collections
import copy
import fnmatch
import threading

from .endpoints import KINDS

COMPREHEND_TARGET_PREFIX = "Comprehend_20171127."
LANGUAGES = frozenset("en es fr de it pt ar hi ja ko zh zh-TW".split())
MAX_BATCH = 25
MAX_TEXT_BYTES = 5000
MAX_BODY_BYTES = 6291456  # SageMaker InvokeEndpoint payload limit
HARD_BODY_CAP = 64 << 20  # bigger requests are refused without being read

COMPREHEND_JSON = "application/x-amz-json-1.1"

# Default HTTP status for an error code (used by injected faults).
ERROR_STATUS = {
    # Comprehend (JSON 1.1)
    "ThrottlingException": 400,
    "TooManyRequestsException": 429,
    "InternalServerException": 500,
    "InvalidRequestException": 400,
    "TextSizeLimitExceededException": 400,
    "UnsupportedLanguageException": 400,
    "BatchSizeLimitExceededException": 400,
    "ValidationException": 400,
    "ServiceUnavailableException": 503,
    "ResourceUnavailableException": 404,
    "AccessDeniedException": 400,
    "UnrecognizedClientException": 400,
    # SageMaker Runtime (REST-JSON)
    "ValidationError": 400,
    "ModelError": 424,
    "ModelNotReadyException": 429,
    "InternalFailure": 500,
    "ServiceUnavailable": 503,
    "InternalDependencyException": 530,
}

DEFAULT_MESSAGES = {
    "ThrottlingException": "Rate exceeded",
    "TooManyRequestsException": "Too many requests",
    "InternalServerException": "Internal server error",
    "InternalFailure": "An internal failure occurred.",
    "ServiceUnavailable": "Service Unavailable",
    "ServiceUnavailableException": "Service Unavailable",
    "ModelNotReadyException": "Model is not ready yet. Please try again later.",
    "InternalDependencyException": "Your request caused an exception with an internal dependency.",
}

# Comprehend per-item error code -> exception raised by single DetectSentiment
ITEM_CODE_EXCEPTION = {
    "INTERNAL_SERVER_ERROR": ("InternalServerException", 500),
    "TEXT_SIZE_LIMIT_EXCEEDED": ("TextSizeLimitExceededException", 400),
    "UNSUPPORTED_LANGUAGE": ("UnsupportedLanguageException", 400),
}

FAULT_KINDS = ("error", "disconnect", "hang", "malformed", "short", "extra")

DEFAULT_CONFIG = {
    "latency_ms": 0,  # added to every data-plane request
    "latency_ms_by_service": {},  # {"comprehend": ms, "sagemaker": ms}
    "latency_ms_by_endpoint": {},  # {"fnmatch pattern": ms}; most specific wins
    # texts/rows containing the marker fail: Comprehend batch -> ErrorList item
    # with that ErrorCode; DetectSentiment -> exception; SageMaker -> ModelError
    "item_errors": {"#fail#": "INTERNAL_SERVER_ERROR"},
    "batch_oversize": "item",  # "item": ErrorList TEXT_SIZE_LIMIT_EXCEEDED; "request": whole call fails
    "endpoint_aliases": {},  # {"name or fnmatch pattern": kind}
    "require_auth": True,  # data-plane requests need a SigV4 Authorization header
    "account_id": "123456789012",
    "region": "us-east-1",
    "log_limit": 10000,
}

SERVICES = ("comprehend", "sagemaker")


class ApiError(Exception):
    def __init__(self, status, code, message, extra=None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra  # extra body fields (ModelError)


def _validation(field, constraint, value="null"):
    return ApiError(
        400,
        "ValidationException",
        "1 validation error detected: Value %s at '%s' failed to satisfy constraint: %s"
        % (value, field, constraint),
    )


def _norm_service(service):
    if service is None:
        return None
    s = str(service).lower()
    if s.startswith("sagemaker"):
        return "sagemaker"
    if s.startswith("comprehend"):
        return "comprehend"
    raise ValueError("service must be 'comprehend' or 'sagemaker', not %r" % (service,))


# ---------------------------------------------------------------------------
# shared state: config, fault rules, stats
# ---------------------------------------------------------------------------


class _State:
    def __init__(self, settings=None):
        self.lock = threading.Lock()
        base = copy.deepcopy(DEFAULT_CONFIG)
        self._check_config(settings or {})
        base.update(copy.deepcopy(settings or {}))
        self.initial_config = base
        self.config = copy.deepcopy(base)
        self.rules = []
        self.next_rule_id = 1
        self.cancel = threading.Event()  # set to wake hanging/latency waits
        self._clear_stats()

    # -- config ---------------------------------------------------------
    @staticmethod
    def _check_config(settings):
        unknown = set(settings) - set(DEFAULT_CONFIG)
        if unknown:
            raise ValueError("unknown setting(s): %s" % ", ".join(sorted(unknown)))
        if "batch_oversize" in settings and settings["batch_oversize"] not in ("item", "request"):
            raise ValueError("batch_oversize must be 'item' or 'request'")
        for key in ("latency_ms_by_service", "latency_ms_by_endpoint", "item_errors", "endpoint_aliases"):
            if key in settings and not isinstance(settings[key], dict):
                raise ValueError("%s must be an object" % key)
        for name, kind in settings.get("endpoint_aliases", {}).items():
            if kind not in KINDS:
                raise ValueError("unknown endpoint kind %r for %r" % (kind, name))

    def configure(self, settings):
        self._check_config(settings)
        with self.lock:
            self.config.update(copy.deepcopy(settings))
            return copy.deepcopy(self.config)

    # -- stats ----------------------------------------------------------
    def _clear_stats(self):
        self.s_requests = 0
        self.s_by_service = {}
        self.s_by_operation = {}
        self.s_by_endpoint = {}
        self.s_items = {}
        self.s_items_by_operation = {}
        self.s_items_by_endpoint = {}
        self.s_status = {}
        self.s_errors = {}
        self.s_faults = {}
        self.s_bytes_in = 0
        self.s_log = collections.deque()
        self.s_seq = 0
        self.s_connections = 0
        self.in_flight = 0
        self.max_in_flight = 0

    def clear_stats(self):
        with self.lock:
            in_flight = self.in_flight
            self._clear_stats()
            self.in_flight = in_flight

    def snapshot(self, log=True):
        with self.lock:
            out = {
                "requests": self.s_requests,
                "by_service": dict(self.s_by_service),
                "by_operation": dict(self.s_by_operation),
                "by_endpoint": dict(self.s_by_endpoint),
                "items": {k: list(v) for k, v in self.s_items.items()},
                "items_by_operation": {k: list(v) for k, v in self.s_items_by_operation.items()},
                "items_by_endpoint": {k: list(v) for k, v in self.s_items_by_endpoint.items()},
                "status": dict(self.s_status),
                "errors": dict(self.s_errors),
                "faults_fired": dict(self.s_faults),
                "bytes_in": self.s_bytes_in,
                "connections": self.s_connections,
                "in_flight": self.in_flight,
                "max_in_flight": self.max_in_flight,
            }
            if log:
                out["log"] = [dict(e) for e in self.s_log]
            return out

    def enter(self):
        with self.lock:
            self.in_flight += 1
            if self.in_flight > self.max_in_flight:
                self.max_in_flight = self.in_flight

    def leave(self):
        with self.lock:
            self.in_flight -= 1

    def connection_opened(self):
        with self.lock:
            self.s_connections += 1

    def record(self, entry):
        service, op, ep, items = entry["service"], entry["operation"], entry["endpoint"], entry["items"]
        with self.lock:
            self.s_seq += 1
            entry["seq"] = self.s_seq
            self.s_requests += 1
            self.s_by_service[service] = self.s_by_service.get(service, 0) + 1
            if op:
                self.s_by_operation[op] = self.s_by_operation.get(op, 0) + 1
            if ep is not None:
                self.s_by_endpoint[ep] = self.s_by_endpoint.get(ep, 0) + 1
            if items is not None:
                self.s_items.setdefault(service, []).append(items)
                if op:
                    self.s_items_by_operation.setdefault(op, []).append(items)
                if ep is not None:
                    self.s_items_by_endpoint.setdefault(ep, []).append(items)
            st = str(entry["status"])
            self.s_status[st] = self.s_status.get(st, 0) + 1
            if entry["code"]:
                self.s_errors[entry["code"]] = self.s_errors.get(entry["code"], 0) + 1
            self.s_bytes_in += entry["bytes"]
            limit = self.config.get("log_limit", 10000)
            if limit and limit > 0:
                # a deque drops the oldest entry in O(1); trimming a full list moved it all
                if self.s_log.maxlen != limit:
                    self.s_log = collections.deque(self.s_log, maxlen=limit)
                self.s_log.append(entry)

    # -- faults ---------------------------------------------------------
    def inject(self, spec):
        spec = dict(spec)
        kind = spec.pop("kind", None)
        if kind not in FAULT_KINDS:
            raise ValueError("fault kind must be one of %s, not %r" % (", ".join(FAULT_KINDS), kind))
        rule = {
            "kind": kind,
            "count": spec.pop("count", 1),
            "skip": int(spec.pop("skip", 0) or 0),
            "service": _norm_service(spec.pop("service", None)),
            "operation": spec.pop("operation", None),
            "endpoint": spec.pop("endpoint", None),
            "status": spec.pop("status", None),
            "code": spec.pop("code", None),
            "message": spec.pop("message", None),
            "seconds": spec.pop("seconds", None),
            "body": spec.pop("body", None),
            "original_status": spec.pop("original_status", None),
            "fired": 0,
        }
        if spec:
            raise ValueError("unknown fault field(s): %s" % ", ".join(sorted(spec)))
        if rule["count"] is not None:
            rule["count"] = int(rule["count"])
        if kind == "hang" and rule["seconds"] is None:
            rule["seconds"] = 30.0
        if isinstance(rule["body"], str):
            rule["body"] = rule["body"].encode("utf-8")
        with self.lock:
            rule["id"] = self.next_rule_id
            self.next_rule_id += 1
            self.rules.append(rule)
        return rule["id"]

    def faults(self):
        with self.lock:
            out = []
            for r in self.rules:
                r = dict(r)
                if isinstance(r["body"], bytes):
                    r["body"] = r["body"].decode("utf-8", "replace")
                out.append(r)
            return out

    def clear_faults(self):
        with self.lock:
            self.rules = []
        self._wake()

    def _wake(self):
        old, self.cancel = self.cancel, threading.Event()
        old.set()

    def take(self, kinds, service, operation, endpoint):
        """Consume and return the first armed rule of *kinds* matching the request."""
        if not self.rules:  # the usual case, read without the lock: a rule armed meanwhile
            return None  # finds this request already past its check, as it would a moment later
        with self.lock:
            for rule in self.rules:
                if rule["kind"] not in kinds:
                    continue
                if rule["service"] is not None and rule["service"] != service:
                    continue
                if rule["operation"] is not None and rule["operation"] != operation:
                    continue
                if rule["endpoint"] is not None and (
                    endpoint is None or not fnmatch.fnmatchcase(endpoint, rule["endpoint"])
                ):
                    continue
                if rule["skip"] > 0:
                    rule["skip"] -= 1
                    continue
                rule["fired"] += 1
                self.s_faults[rule["kind"]] = self.s_faults.get(rule["kind"], 0) + 1
                if rule["count"] is not None:
                    rule["count"] -= 1
                    if rule["count"] <= 0:
                        self.rules.remove(rule)
                return dict(rule)
        return None

    def reset(self):
        with self.lock:
            self.rules = []
            self.config = copy.deepcopy(self.initial_config)
        self.clear_stats()
        self._wake()

    def latency_for(self, service, endpoint):
        cfg = self.config
        if endpoint is not None:
            by_ep = cfg.get("latency_ms_by_endpoint") or {}
            if by_ep:
                if endpoint in by_ep:
                    return by_ep[endpoint]
                for pattern, ms in by_ep.items():
                    if fnmatch.fnmatchcase(endpoint, pattern):
                        return ms
        by_svc = cfg.get("latency_ms_by_service") or {}
        if service in by_svc:
            return by_svc[service]
        return cfg.get("latency_ms") or 0

    # -- control dispatch (shared by HTTP and in-process callers) -------
    def dispatch(self, action, payload):
        payload = payload or {}
        if action == "health":
            return {"ok": True}
        if action == "stats":
            return self.snapshot(log=bool(payload.get("log", True)))
        if action == "clear_stats":
            self.clear_stats()
            return {"ok": True}
        if action == "reset":
            self.reset()
            return {"ok": True}
        if action == "config":
            if payload:
                return self.configure(payload)
            with self.lock:
                return copy.deepcopy(self.config)
        if action == "inject":
            if isinstance(payload, list):
                return {"ids": [self.inject(p) for p in payload]}
            return {"id": self.inject(payload)}
        if action == "faults":
            return {"faults": self.faults()}
        if action == "clear_faults":
            self.clear_faults()
            return {"ok": True}
        raise KeyError(action)


CONTROL_ROUTES = {
    ("GET", "/_fake/health"): "health",
    ("GET", "/_fake/stats"): "stats",
    ("POST", "/_fake/stats/clear"): "clear_stats",
    ("POST", "/_fake/reset"): "reset",
    ("GET", "/_fake/config"): "config",
    ("POST", "/_fake/config"): "config",
    ("POST", "/_fake/inject"): "inject",
    ("GET", "/_fake/faults"): "faults",
    ("POST", "/_fake/faults/clear"): "clear_faults",
    ("DELETE", "/_fake/faults"): "clear_faults",
}
