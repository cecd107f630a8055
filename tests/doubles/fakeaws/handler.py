"""The fake's HTTP/1.1 keep-alive server: both services' wire protocols and the control
API under /_fake/ on one port."""

import csv
import dataclasses
import email.utils
import http
import http.client
import http.server
import itertools
import json
import queue
import socket
import threading
import time
import urllib.parse
import uuid

from .comprehend import comprehend_call, comprehend_mutate
from .endpoints import KINDS, ModelFailure, kind_for, parse_csv
from .state import (COMPREHEND_JSON, COMPREHEND_TARGET_PREFIX, CONTROL_ROUTES, DEFAULT_MESSAGES, ERROR_STATUS,
                    HARD_BODY_CAP, MAX_BODY_BYTES, ApiError)

# ---------------------------------------------------------------------------
# HTTP handler
# ---------------------------------------------------------------------------

_REASONS = {s.value: s.phrase for s in http.HTTPStatus}
_REASONS.setdefault(530, "Internal Dependency Error")

_date_cache = [0, ""]

# Request ids: one random UUID per process with a counter in its last 12 hex digits, unique
# like uuid4() per request but without its os.urandom call and UUID object (~3 us a request).
_RID_PREFIX = str(uuid.uuid4())[:24]
_rid_counter = itertools.count(int(uuid.uuid4().hex[-12:], 16))


def _request_id():
    return "%s%012x" % (_RID_PREFIX, next(_rid_counter) & 0xFFFFFFFFFFFF)


def _http_date():
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[1] = email.utils.formatdate(now, usegmt=True)
        _date_cache[0] = now
    return _date_cache[1]


# http.client's limits on a header block, so an oversized one gets the same 431 answer
_MAX_LINE = 65536
_MAX_HEADER_LINES = 100


class _Headers:
    """A request's header fields. get() matches names case-insensitively and returns the first
    of repeated fields, as the email.message.Message that http.server builds does."""

    __slots__ = ("_first", "_fields")

    def __init__(self, fields):
        self._fields = fields  # (name, value) in arrival order
        self._first = {}  # lower-cased name -> first value
        for name, value in fields:
            self._first.setdefault(name.lower(), value)

    def get(self, name, default=None):
        return self._first.get(name.lower(), default)

    def get_all(self, name, failobj=None):
        name = name.lower()
        values = [v for k, v in self._fields if k.lower() == name]
        return values or failobj

    def __contains__(self, name):
        return name.lower() in self._first

    def items(self):
        return list(self._fields)


def _read_headers(rfile):
    """The header block up to its blank line. It replaces http.client.parse_headers, whose
    email.parser pass cost about a third of the fake's CPU per request in bench/bench_scalar.py.
    Raises http.client's LineTooLong / HTTPException past its limits, as parse_headers does."""
    fields = []
    for _ in range(_MAX_HEADER_LINES):
        line = rfile.readline(_MAX_LINE + 1)
        if len(line) > _MAX_LINE:
            raise http.client.LineTooLong("header line")
        if line in (b"\r\n", b"\n", b""):
            return _Headers(fields)
        text = line.decode("iso-8859-1").rstrip("\r\n")
        if text[:1] in (" ", "\t"):  # obs-fold (RFC 7230 3.2.4): continues the previous value
            if fields:
                name, value = fields[-1]
                fields[-1] = (name, value + " " + text.strip(" \t"))
            continue
        name, sep, value = text.partition(":")
        if sep:  # a line without a colon is not a field: skipped (email.parser ended the block there)
            fields.append((name, value.lstrip(" \t")))
    raise http.client.HTTPException("got more than %d headers" % _MAX_HEADER_LINES)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fakeaws/1.0"
    disable_nagle_algorithm = True

    def parse_request(self):
        """http.server's parse_request, with the header block read by _read_headers. A request
        line other than "METHOD TARGET HTTP/1.0|1.1" goes to the stdlib method, for its checks
        and error answers (HTTP/0.9, bad or unsupported versions)."""
        requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        words = requestline.split()
        if len(words) != 3 or words[2] not in ("HTTP/1.1", "HTTP/1.0"):
            return super().parse_request()
        self.requestline = requestline
        self.command, path, self.request_version = words
        self.close_connection = self.request_version == "HTTP/1.0"
        # as the stdlib does (gh-87389): a leading // would read as a network-path reference
        self.path = "/" + path.lstrip("/") if path.startswith("//") else path
        try:
            self.headers = _read_headers(self.rfile)
        except http.client.LineTooLong as err:
            self.send_error(http.HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Line too long", str(err))
            return False
        except http.client.HTTPException as err:
            self.send_error(http.HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Too many headers", str(err))
            return False
        conntype = self.headers.get("Connection", "").lower()
        if conntype == "close":
            self.close_connection = True
        elif conntype == "keep-alive":
            self.close_connection = False
        if (self.headers.get("Expect", "").lower() == "100-continue"
                and self.request_version == "HTTP/1.1" and not self.handle_expect_100()):
            return False
        return True

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
        rid = _request_id()
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

        call = _Call(service, op, endpoint, body, req, rows, kind, parse_error, auth, entry, rid)
        status, resp_headers, resp_body, code = self._process(call, state, config)
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

    def _process(self, call, state, config):
        """(status, headers, body, error code) for one parsed request; status None: drop
        the connection (an injected disconnect)."""
        if config.get("require_auth") and not call.auth.startswith("AWS4-HMAC-SHA256"):
            return self._fail(call, ApiError(403, "MissingAuthenticationTokenException",
                                             "Missing Authentication Token"), config)
        early = self._injected_failure(call, state, config)
        if early is not None:
            return early
        try:
            answer = self._compute(call, config)
        except ModelFailure as mf:
            return self._fail(call, self._model_error(call.endpoint, mf.original_status, mf.message, config), config)
        except ApiError as e:
            return self._fail(call, e, config)
        return self._respond(call, answer, state.take(("malformed", "short", "extra"), call.service, call.op,
                                                      call.endpoint))

    def _fail(self, call, err, config):
        status, headers, body = self._error(call.service, err, call.rid, config)
        return status, headers, body, err.code

    def _injected_failure(self, call, state, config):
        """A hang (then carry on), an error or a disconnect injected before processing."""
        rule = state.take(("hang",), call.service, call.op, call.endpoint)
        if rule:
            call.entry["fault"] = "hang"
            state.cancel.wait(float(rule["seconds"]))
        rule = state.take(("error", "disconnect"), call.service, call.op, call.endpoint)
        if not rule:
            return None
        call.entry["fault"] = rule["kind"]
        if rule["kind"] == "disconnect":
            return None, None, None, None
        code = rule["code"] or ("InternalServerException" if call.service == "comprehend" else "InternalFailure")
        status = int(rule["status"] or ERROR_STATUS.get(code, 400))
        if call.service == "sagemaker" and code == "ModelError":
            err = self._model_error(call.endpoint, int(rule["original_status"] or 500),
                                    rule["message"] or "injected model failure", config)
            err.status = status
        else:
            err = ApiError(status, code, rule["message"] or DEFAULT_MESSAGES.get(code, "Injected %s" % code))
        return self._fail(call, err, config)

    def _compute(self, call, config):
        """Comprehend's response document, or the SageMaker model's per-row items."""
        if call.parse_error and call.service == "comprehend":
            raise call.parse_error
        if call.service == "comprehend":
            return comprehend_call(call.op, call.req, config)
        if call.kind is None:
            raise ApiError(400, "ValidationError",
                           "Endpoint %s of account %s not found." % (call.endpoint, config.get("account_id")))
        if len(call.body) > MAX_BODY_BYTES:
            raise ApiError(413, "ValidationError", "Received payload size %d bytes exceeds the maximum of %d bytes."
                           % (len(call.body), MAX_BODY_BYTES))
        if call.parse_error:
            raise call.parse_error
        for marker in config.get("item_errors") or {}:
            if marker and marker.encode("utf-8") in call.body:
                raise ModelFailure(400, "Input contains failure marker %r" % marker)
        compute = KINDS[call.kind][0]
        return compute(call.rows)

    def _respond(self, call, answer, rule):
        """The 200 answer, changed by an injected malformed, short or extra fault (rule)."""
        if rule:
            call.entry["fault"] = rule["kind"]
        if call.service == "comprehend":
            if rule and rule["kind"] == "malformed":
                out = rule["body"] or b'{"ResultList": [{"Index": 0, "Sentiment": "POSI'
            else:
                if rule:
                    answer = comprehend_mutate(rule["kind"], call.op, answer, call.entry["items"] or 0)
                out = json.dumps(answer).encode("utf-8")
            return 200, [("Content-Type", COMPREHEND_JSON), ("x-amzn-RequestId", call.rid)], out, None
        _, serialise, ctype, malformed = KINDS[call.kind]
        items = answer
        if rule and rule["kind"] == "malformed":
            out = rule["body"] or malformed
        else:
            if rule and rule["kind"] == "short":
                if items:
                    items.pop()
            elif rule and rule["kind"] == "extra":
                items.append(items[-1] if items else _EXTRA_DEFAULT[call.kind])
            out = serialise(items)
        headers = [("Content-Type", ctype), ("x-amzn-RequestId", call.rid),
                   ("x-Amzn-Invoked-Production-Variant", "AllTraffic")]
        return 200, headers, out, None


@dataclasses.dataclass
class _Call:
    """One data-plane request as _data_plane_inner parsed it."""

    service: str
    op: str
    endpoint: str | None
    body: bytes
    req: object  # Comprehend's JSON document
    rows: list | None  # SageMaker's CSV rows
    kind: str | None  # the fake model behind the endpoint
    parse_error: Exception | None
    auth: str
    entry: dict  # the stats record being written
    rid: str


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
        # connection threads are kept for the next connection (see process_request)
        self._jobs = queue.SimpleQueue()  # (request, client_address) for an idle worker
        self._idle_workers = 0  # workers waiting on _jobs, minus the jobs queued for them
        self._pool_closed = False
        self._pool_lock = threading.Lock()
        super().__init__(addr, _Handler)

    def process_request(self, request, client_address):
        """Serve the connection on an idle worker thread, starting one only when none is idle:
        a thread started and ended per connection cost ~50 us of CPU, a quarter of what a
        one-request connection costs (bench/bench_scalar.py's statement-per-row shapes)."""
        with self._pool_lock:
            if self._idle_workers > 0:
                self._idle_workers -= 1
                self._jobs.put((request, client_address))
                return
        threading.Thread(target=self._work, args=(request, client_address), daemon=True).start()

    def _work(self, request, client_address):
        while request is not None:
            self.process_request_thread(request, client_address)  # ThreadingMixIn's: serve, close
            with self._pool_lock:
                if self._pool_closed:
                    return
                self._idle_workers += 1
            request, client_address = self._jobs.get()

    def server_close(self):
        super().server_close()
        with self._pool_lock:  # let idle workers end
            self._pool_closed = True
            for _ in range(self._idle_workers):
                self._jobs.put((None, None))
            self._idle_workers = 0

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
