"""Fake Amazon Comprehend + SageMaker Runtime server (stdlib only).

One HTTP/1.1 keep-alive server on 127.0.0.1 answers both services' real wire
protocols plus a control API under ``/_fake/``. See ``tests/fakeaws/__init__.py``
for the overview.
"""

import copy
import csv
import email.utils
import fnmatch
import http
import http.server
import json
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

from .endpoints import KINDS, ModelFailure, kind_for, parse_csv
from .sentiment import fake_sentiment

# csv's default 131072-character field limit would reject big single fields
if csv.field_size_limit() < (1 << 26):
    csv.field_size_limit(1 << 26)

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
        self.s_log = []
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
            if limit:
                self.s_log.append(entry)
                if len(self.s_log) > limit:
                    del self.s_log[: len(self.s_log) - limit]

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


# ---------------------------------------------------------------------------
# Comprehend
# ---------------------------------------------------------------------------


def _text_size_error(size):
    return ApiError(
        400,
        "TextSizeLimitExceededException",
        "Input text size exceeds limit. Max length of request text allowed is %d bytes "
        "while in this request the text size is %d bytes" % (MAX_TEXT_BYTES, size),
    )


def _utf8_len(text):
    if len(text) * 4 <= MAX_TEXT_BYTES:
        return len(text)  # cannot be over the limit; exact size not needed
    return len(text.encode("utf-8"))


def _check_language(req):
    lang = req.get("LanguageCode")
    if lang is None:
        raise _validation("languageCode", "Member must not be null")
    if lang not in LANGUAGES:
        raise ApiError(
            400,
            "UnsupportedLanguageException",
            "Amazon Comprehend can not process the language in the input text: %r. "
            "Supported languages for sentiment: %s" % (lang, ", ".join(sorted(LANGUAGES))),
        )


def _marker_code(text, item_errors):
    for marker, code in item_errors.items():
        if marker and marker in text:
            return marker, code
    return None, None


def comprehend_call(op, req, config):
    """Return the response dict for Comprehend *op*, or raise ApiError."""
    if not isinstance(req, dict):
        raise ApiError(400, "SerializationException", "Start of structure or map found where not expected.")
    item_errors = config.get("item_errors") or {}
    if op == "DetectSentiment":
        text = req.get("Text")
        if text is None:
            raise _validation("text", "Member must not be null")
        if not isinstance(text, str):
            raise ApiError(400, "SerializationException", "STRING_VALUE can not be converted to a String")
        if text == "":
            raise _validation("text", "Member must have length greater than or equal to 1", "''")
        _check_language(req)
        size = _utf8_len(text)
        if size > MAX_TEXT_BYTES:
            raise _text_size_error(size)
        marker, code = _marker_code(text, item_errors)
        if marker:
            exc, status = ITEM_CODE_EXCEPTION.get(code, ("InvalidRequestException", 400))
            raise ApiError(status, exc, "Text contains failure marker %r (%s)" % (marker, code))
        label, scores = fake_sentiment(text)
        return {"Sentiment": label, "SentimentScore": scores}
    if op == "BatchDetectSentiment":
        texts = req.get("TextList")
        if texts is None:
            raise _validation("textList", "Member must not be null")
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise ApiError(400, "SerializationException", "TextList must be a list of strings")
        if not texts:
            raise _validation("textList", "Member must have length greater than or equal to 1", "[]")
        if any(t == "" for t in texts):
            raise _validation(
                "textList",
                "Member must satisfy constraint: [Member must have length greater than or equal to 1]",
                "'[...]'",
            )
        _check_language(req)
        if len(texts) > MAX_BATCH:
            raise ApiError(
                400,
                "BatchSizeLimitExceededException",
                "The number of documents in the request exceeds the limit of %d. Received %d."
                % (MAX_BATCH, len(texts)),
            )
        per_item = config.get("batch_oversize", "item") == "item"
        results, errors = [], []
        for i, text in enumerate(texts):
            size = _utf8_len(text)
            if size > MAX_TEXT_BYTES:
                if not per_item:
                    raise _text_size_error(size)
                errors.append(
                    {
                        "Index": i,
                        "ErrorCode": "TEXT_SIZE_LIMIT_EXCEEDED",
                        "ErrorMessage": "Input text size exceeds limit. Max length of request text "
                        "allowed is %d bytes while in this request the text size is %d bytes"
                        % (MAX_TEXT_BYTES, size),
                    }
                )
                continue
            marker, code = _marker_code(text, item_errors) if item_errors else (None, None)
            if marker:
                errors.append(
                    {
                        "Index": i,
                        "ErrorCode": code,
                        "ErrorMessage": "Document contains failure marker %r" % (marker,),
                    }
                )
                continue
            label, scores = fake_sentiment(text)
            results.append({"Index": i, "Sentiment": label, "SentimentScore": scores})
        return {"ResultList": results, "ErrorList": errors}
    raise ApiError(400, "UnknownOperationException", "Operation %s is not supported by the fake" % op)


def comprehend_mutate(kind, op, resp, n_texts):
    """Apply a short/extra fault to a successful Comprehend response."""
    if op == "DetectSentiment":
        if kind == "short":
            return {}
        return dict(resp, Extra={"Index": 1})  # an unexpected extra member
    results = resp["ResultList"]
    if kind == "short":
        if results:
            results.pop()
        elif resp["ErrorList"]:
            resp["ErrorList"].pop()
    else:
        label, scores = fake_sentiment("")
        template = dict(results[-1]) if results else {"Sentiment": label, "SentimentScore": scores}
        template["Index"] = n_texts
        results.append(template)
    return resp


# ---------------------------------------------------------------------------
# HTTP handler
# ---------------------------------------------------------------------------

_REASONS = {s.value: s.phrase for s in http.HTTPStatus}
_REASONS.setdefault(530, "Internal Dependency Error")

_date_cache = [0, ""]


def _http_date():
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[1] = email.utils.formatdate(now, usegmt=True)
        _date_cache[0] = now
    return _date_cache[1]


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fakeaws/1.0"
    disable_nagle_algorithm = True

    # -- plumbing -------------------------------------------------------
    def setup(self):
        self.timeout = self.server.idle_timeout
        super().setup()
        self.server.track(self.connection, True)
        self.server.state.connection_opened()

    def finish(self):
        try:
            super().finish()
        finally:
            self.server.track(self.connection, False)

    def log_message(self, format, *args):  # noqa: A002 - stdlib signature
        if self.server.verbose:
            super().log_message(format, *args)

    def _send(self, status, headers, body):
        parts = ["HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, "Unknown"))]
        for k, v in headers:
            parts.append("%s: %s\r\n" % (k, v))
        parts.append("Content-Length: %d\r\n" % len(body))
        parts.append("Date: %s\r\nServer: fakeaws\r\n" % _http_date())
        if self.close_connection:
            parts.append("Connection: close\r\n")
        parts.append("\r\n")
        try:
            self.wfile.write("".join(parts).encode("latin-1") + body)
        except OSError:  # client went away (e.g. its read timeout fired)
            self.close_connection = True

    def _send_json(self, status, obj, extra_headers=()):
        self._send(
            status,
            [("Content-Type", "application/json")] + list(extra_headers),
            json.dumps(obj).encode("utf-8"),
        )

    def _read_body(self):
        """Read the request body; returns bytes, or None if it was refused."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks, total = [], 0
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                total += size
                if total > HARD_BODY_CAP:
                    self.close_connection = True
                    return None
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        if length > HARD_BODY_CAP:
            self.close_connection = True
            return None
        return self.rfile.read(length) if length > 0 else b""

    # -- routing --------------------------------------------------------
    def do_GET(self):
        self._route("GET")

    def do_POST(self):
        self._route("POST")

    def do_DELETE(self):
        self._route("DELETE")

    def do_PUT(self):
        self._route("PUT")

    def _route(self, method):
        try:
            body = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True
            return
        path, _, query = self.path.partition("?")
        if path.startswith("/_fake/"):
            return self._control(method, path, query, body)
        if body is None:
            return self._send_json(
                413, {"message": "Request body too large"}, [("x-amzn-ErrorType", "ValidationError")]
            )
        if method == "POST" and path == "/" and self.headers.get("X-Amz-Target"):
            return self._data_plane("comprehend", body)
        if method == "POST" and path.startswith("/endpoints/") and path.endswith("/invocations"):
            return self._data_plane("sagemaker", body)
        self._send_json(
            404,
            {"__type": "UnknownOperationException", "message": "No fake route for %s %s" % (method, path)},
            [("x-amzn-ErrorType", "UnknownOperationException")],
        )

    def _control(self, method, path, query, body):
        action = CONTROL_ROUTES.get((method, path.rstrip("/") or path))
        if action is None:
            return self._send_json(404, {"error": "unknown control route %s %s" % (method, path)})
        try:
            if method == "GET":
                q = urllib.parse.parse_qs(query)
                payload = {}
                if "log" in q:
                    payload["log"] = q["log"][-1].lower() not in ("0", "false", "no", "")
            else:
                payload = json.loads(body) if body else {}
            result = self.server.state.dispatch(action, payload)
        except (ValueError, TypeError, KeyError) as e:
            return self._send_json(400, {"error": str(e)})
        self._send_json(200, result)

    # -- data plane -----------------------------------------------------
    def _data_plane(self, service, body):
        state = self.server.state
        state.enter()
        t0 = time.monotonic()
        try:
            self._data_plane_inner(service, body, state, t0)
        except Exception as e:  # a bug in the fake: answer 500 rather than drop the connection
            import traceback

            self.close_connection = True
            self._send_json(
                500,
                {"__type": "FakeAWSBug", "message": "%r\n%s" % (e, traceback.format_exc())},
                [("x-amzn-ErrorType", "FakeAWSBug")],
            )
        finally:
            state.leave()

    def _data_plane_inner(self, service, body, state, t0):
        headers = self.headers
        config = state.config
        rid = str(uuid.uuid4())
        entry = {
            "t": time.time(),
            "service": service,
            "operation": None,
            "endpoint": None,
            "items": None,
            "bytes": len(body),
            "status": None,
            "code": None,
            "fault": None,
            "content_type": headers.get("Content-Type"),
            "accept": headers.get("Accept"),
            "access_key": None,
            "region": None,
            "ms": None,
        }
        auth = headers.get("Authorization") or ""
        if "Credential=" in auth:
            cred = auth.split("Credential=", 1)[1].split(",", 1)[0].split("/")
            entry["access_key"] = cred[0]
            if len(cred) > 2:
                entry["region"] = cred[2]

        # parse the request enough to know operation / endpoint / item count
        req = rows = kind = None
        parse_error = None
        if service == "comprehend":
            target = headers.get("X-Amz-Target", "")
            op = target[len(COMPREHEND_TARGET_PREFIX):] if target.startswith(COMPREHEND_TARGET_PREFIX) else target
            entry["operation"] = op
            try:
                req = json.loads(body) if body else {}
            except ValueError:
                parse_error = ApiError(400, "SerializationException", "Request body is not valid JSON")
            if isinstance(req, dict):
                if op == "BatchDetectSentiment" and isinstance(req.get("TextList"), list):
                    entry["items"] = len(req["TextList"])
                elif op == "DetectSentiment":
                    entry["items"] = 1
        else:
            op = "InvokeEndpoint"
            entry["operation"] = op
            name = urllib.parse.unquote(self.path.partition("?")[0][len("/endpoints/"):-len("/invocations")])
            entry["endpoint"] = name
            kind = kind_for(name, config.get("endpoint_aliases"))
            ctype = (headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
            if len(body) <= MAX_BODY_BYTES:
                if ctype == "text/csv":
                    try:
                        rows = parse_csv(body.decode("utf-8"))
                        entry["items"] = len(rows)
                    except (UnicodeDecodeError, csv.Error) as e:
                        parse_error = ModelFailure(400, "Unable to parse CSV payload: %s" % e)
                else:
                    parse_error = ModelFailure(
                        415, "Content type %r is not supported by this model; use text/csv" % (ctype or None)
                    )

        endpoint = entry["endpoint"]

        # latency
        ms = state.latency_for(service, endpoint)
        if ms:
            state.cancel.wait(ms / 1000.0)

        status, resp_headers, resp_body, code = self._process(
            service, op, endpoint, body, req, rows, kind, parse_error, auth, entry, state, config, rid
        )
        # record before answering, so a client that has its answer sees it in stats
        entry["status"] = status if status is not None else 0
        entry["code"] = code
        entry["ms"] = round((time.monotonic() - t0) * 1000.0, 3)
        state.record(entry)
        if status is None:  # disconnect fault
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        else:
            self._send(status, resp_headers, resp_body)

    def _error(self, service, err, rid, config):
        """(status, headers, body) for an ApiError, shaped per service protocol."""
        if service == "comprehend":
            return (
                err.status,
                [("Content-Type", COMPREHEND_JSON), ("x-amzn-RequestId", rid)],
                json.dumps({"__type": err.code, "message": err.message}).encode("utf-8"),
            )
        if err.extra is not None:
            payload = dict(err.extra)
            payload["Message"] = err.message
        else:
            payload = {"message": err.message}
        ns = (
            "http://internal.amazon.com/coral/com.amazon.coral.validate/"
            if err.code == "ValidationError"
            else "http://internal.amazon.com/coral/com.amazon.sagemaker/"
        )
        return (
            err.status,
            [
                ("Content-Type", "application/json"),
                ("x-amzn-RequestId", rid),
                ("x-amzn-ErrorType", "%s:%s" % (err.code, ns)),
            ],
            json.dumps(payload).encode("utf-8"),
        )

    def _model_error(self, endpoint, original_status, original_message, config):
        account = config.get("account_id")
        region = config.get("region")
        kind = "client" if original_status < 500 else "server"
        log_group = "/aws/sagemaker/Endpoints/%s" % endpoint
        message = (
            'Received %s error (%d) from primary with message "%s". See '
            "https://%s.console.aws.amazon.com/cloudwatch/home?region=%s#logEventViewer:group=%s "
            "in account %s for more information."
            % (kind, original_status, original_message, region, region, log_group, account)
        )
        return ApiError(
            424,
            "ModelError",
            message,
            extra={
                "ErrorCode": "%s_ERROR_FROM_MODEL" % kind.upper(),
                "LogStreamArn": "arn:aws:logs:%s:%s:log-group:%s" % (region, account, log_group),
                "OriginalMessage": original_message,
                "OriginalStatusCode": original_status,
            },
        )

    def _process(self, service, op, endpoint, body, req, rows, kind, parse_error, auth, entry, state, config, rid):
        def fail(err):
            s, h, b = self._error(service, err, rid, config)
            return s, h, b, err.code

        if config.get("require_auth") and not auth.startswith("AWS4-HMAC-SHA256"):
            return fail(ApiError(403, "MissingAuthenticationTokenException", "Missing Authentication Token"))

        # pre-processing faults
        rule = state.take(("hang",), service, op, endpoint)
        if rule:
            entry["fault"] = "hang"
            state.cancel.wait(float(rule["seconds"]))
        rule = state.take(("error", "disconnect"), service, op, endpoint)
        if rule:
            entry["fault"] = rule["kind"]
            if rule["kind"] == "disconnect":
                return None, None, None, None
            code = rule["code"] or ("InternalServerException" if service == "comprehend" else "InternalFailure")
            status = int(rule["status"] or ERROR_STATUS.get(code, 400))
            if service == "sagemaker" and code == "ModelError":
                err = self._model_error(
                    endpoint, int(rule["original_status"] or 500), rule["message"] or "injected model failure", config
                )
                err.status = status
            else:
                err = ApiError(status, code, rule["message"] or DEFAULT_MESSAGES.get(code, "Injected %s" % code))
            return fail(err)

        # real processing
        try:
            if service == "comprehend":
                if parse_error:
                    raise parse_error
                resp = comprehend_call(op, req, config)
                ctype, mutate_ctx = COMPREHEND_JSON, resp
            else:
                if kind is None:
                    raise ApiError(
                        400,
                        "ValidationError",
                        "Endpoint %s of account %s not found." % (endpoint, config.get("account_id")),
                    )
                if len(body) > MAX_BODY_BYTES:
                    raise ApiError(
                        413,
                        "ValidationError",
                        "Received payload size %d bytes exceeds the maximum of %d bytes."
                        % (len(body), MAX_BODY_BYTES),
                    )
                if parse_error:
                    raise parse_error
                item_errors = config.get("item_errors") or {}
                for marker in item_errors:
                    if marker and marker.encode("utf-8") in body:
                        raise ModelFailure(400, "Input contains failure marker %r" % marker)
                compute, serialise, ctype, malformed = KINDS[kind]
                items = compute(rows)
        except ModelFailure as mf:
            return fail(self._model_error(endpoint, mf.original_status, mf.message, config))
        except ApiError as e:
            return fail(e)

        # post-processing faults
        rule = state.take(("malformed", "short", "extra"), service, op, endpoint)
        if rule:
            entry["fault"] = rule["kind"]
        if service == "comprehend":
            if rule and rule["kind"] == "malformed":
                out = rule["body"] or b'{"ResultList": [{"Index": 0, "Sentiment": "POSI'
            else:
                if rule:
                    resp = comprehend_mutate(rule["kind"], op, resp, entry["items"] or 0)
                out = json.dumps(resp).encode("utf-8")
            return 200, [("Content-Type", ctype), ("x-amzn-RequestId", rid)], out, None

        if rule and rule["kind"] == "malformed":
            out = rule["body"] or malformed
        else:
            if rule and rule["kind"] == "short":
                if items:
                    items.pop()
            elif rule and rule["kind"] == "extra":
                items.append(items[-1] if items else _EXTRA_DEFAULT[kind])
            out = serialise(items)
        return (
            200,
            [
                ("Content-Type", ctype),
                ("x-amzn-RequestId", rid),
                ("x-Amzn-Invoked-Production-Variant", "AllTraffic"),
            ],
            out,
            None,
        )


_EXTRA_DEFAULT = {
    "echo": "extra",
    "sum": "0.0",
    "xgb": "0.0",
    "rcf": {"score": 0.0},
    "linear": {"score": 0.0, "predicted_label": 0},
    "jsonl": 0.0,
    "len": "0",
}


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 1024
    allow_reuse_address = True

    def __init__(self, addr, state, idle_timeout, verbose):
        self.state = state
        self.idle_timeout = idle_timeout
        self.verbose = verbose
        self._conns = set()
        self._conns_lock = threading.Lock()
        super().__init__(addr, _Handler)

    def track(self, sock, opened):
        with self._conns_lock:
            if opened:
                self._conns.add(sock)
            else:
                self._conns.discard(sock)

    def close_all_connections(self):
        with self._conns_lock:
            conns = list(self._conns)
            self._conns.clear()
        for sock in conns:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request, client_address):
        if self.verbose:
            super().handle_error(request, client_address)


# ---------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------


class _ControlMixin:
    """Control methods shared by FakeAWS (in-process) and FakeAWSControl (HTTP)."""

    def _control(self, action, payload=None):  # pragma: no cover - abstract
        raise NotImplementedError

    # configuration ----------------------------------------------------
    def configure(self, **settings):
        """Change settings (see DEFAULT_CONFIG); returns the whole config."""
        return self._control("config", settings) if settings else self.get_config()

    def get_config(self):
        return self._control("config", {})

    # faults -----------------------------------------------------------
    def inject(self, kind, count=1, **spec):
        """Arm a fault rule; returns its id. count=None means 'forever'.

        kind: error | disconnect | hang | malformed | short | extra
        match: service ('comprehend'|'sagemaker'), operation, endpoint (fnmatch
        pattern), skip (let that many matching requests pass first).
        error: code, status, message, original_status (ModelError only).
        hang: seconds. malformed: body (str/bytes; default garbage).
        """
        spec["kind"] = kind
        spec["count"] = count
        if isinstance(spec.get("body"), bytes):
            spec["body"] = spec["body"].decode("utf-8")
        return self._control("inject", spec)["id"]

    def fail_next(self, n=1, code=None, status=None, message=None, **match):
        return self.inject("error", n, code=code, status=status, message=message, **match)

    def malformed_next(self, n=1, body=None, **match):
        return self.inject("malformed", n, body=body, **match)

    def short_next(self, n=1, **match):
        return self.inject("short", n, **match)

    def extra_next(self, n=1, **match):
        return self.inject("extra", n, **match)

    def hang_next(self, n=1, seconds=30.0, **match):
        return self.inject("hang", n, seconds=seconds, **match)

    def disconnect_next(self, n=1, **match):
        return self.inject("disconnect", n, **match)

    def faults(self):
        return self._control("faults")["faults"]

    def clear_faults(self):
        self._control("clear_faults")

    # stats ------------------------------------------------------------
    def stats(self, log=True):
        return self._control("stats", {"log": log})

    def clear_stats(self):
        self._control("clear_stats")

    def reset(self):
        """Clear stats and faults and restore the initial configuration."""
        self._control("reset")

    def health(self):
        return self._control("health")

    # convenience ------------------------------------------------------
    def client(self, service_name, region_name="us-east-1", **config_kwargs):
        """A boto3 client for 'comprehend' or 'sagemaker-runtime' aimed at the fake."""
        import boto3
        from botocore.config import Config

        # NB: botocore's retries max_attempts counts RETRIES; total_max_attempts=1 means no retry
        config_kwargs.setdefault("retries", {"mode": "standard", "total_max_attempts": 1})
        return boto3.client(
            service_name,
            endpoint_url=self.url,
            region_name=region_name,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            aws_session_token="testing",
            config=Config(**config_kwargs),
        )


class FakeAWS(_ControlMixin):
    """In-process fake: ``with FakeAWS() as fake: ... fake.url ...``."""

    def __init__(self, port=0, host="127.0.0.1", idle_timeout=120.0, verbose=False, **settings):
        self.host = host
        self.port = port
        self.idle_timeout = idle_timeout
        self.verbose = verbose
        self._state = _State(settings)
        self._server = None
        self._thread = None

    @property
    def url(self):
        return "http://%s:%d" % (self.host, self.port)

    def start(self):
        if self._server is not None:
            return self
        self._server = _Server((self.host, self.port), self._state, self.idle_timeout, self.verbose)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fakeaws", daemon=True
        )
        self._thread.start()
        return self

    def stop(self):
        server, self._server = self._server, None
        if server is None:
            return
        self._state._wake()
        server.shutdown()
        server.server_close()
        server.close_all_connections()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _control(self, action, payload=None):
        return copy.deepcopy(self._state.dispatch(action, payload))


class FakeAWSControl(_ControlMixin):
    """Control a fake running elsewhere (e.g. ``python -m tests.fakeaws``) over HTTP."""

    _ROUTES = {
        "health": ("GET", "/_fake/health"),
        "stats": ("GET", "/_fake/stats"),
        "clear_stats": ("POST", "/_fake/stats/clear"),
        "reset": ("POST", "/_fake/reset"),
        "inject": ("POST", "/_fake/inject"),
        "faults": ("GET", "/_fake/faults"),
        "clear_faults": ("POST", "/_fake/faults/clear"),
    }

    def __init__(self, url, timeout=10.0):
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _control(self, action, payload=None):
        if action == "config":
            method, path = ("POST" if payload else "GET"), "/_fake/config"
        else:
            method, path = self._ROUTES[action]
        data = None
        if method == "GET":
            if action == "stats" and payload and not payload.get("log", True):
                path += "?log=0"
        else:
            data = json.dumps(payload or {}).encode("utf-8")
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            detail = e.read().decode("utf-8", "replace")
            raise ValueError("fakeaws control %s failed: %s %s" % (action, e.code, detail)) from None
