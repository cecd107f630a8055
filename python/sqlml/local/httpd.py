"""HTTP/1.1 front end of the local service: framing, routing, keep-alive, error safety net.

:class:`App` owns the loaded endpoints and the sentiment model and routes a framed
request (method, path, headers, body) to ``comprehend.py`` or ``sagemaker.py``;
:class:`HTTPServer` is a stdlib ``ThreadingHTTPServer`` (one thread per keep-alive
connection) that serves an already-listening socket, so ``supervisor.py`` can bind once
and fork worker processes that all accept from it. Whatever a client sends, the answer
is an AWS-shaped error rather than a crash or a hang: request bodies are size-capped
(larger ones are drained up to a hard cap, then the connection is closed), an idle or
stalled connection is closed after ``idle_timeout_s``, and an unexpected exception
becomes a 500 in the service's own error shape.

Routes: ``POST /`` with ``X-Amz-Target: Comprehend_20171127.*`` (Comprehend JSON 1.1),
``POST /endpoints/{name}/invocations`` (SageMaker Runtime), ``GET /ping`` (status of
every endpoint, JSON).
"""

from __future__ import annotations

import email.utils
import http
import http.server
import json
import os
import socket
import sys
import threading
import time
import traceback
import urllib.parse
import uuid
from dataclasses import dataclass

from .comprehend import Comprehend
from .config import ServerConfig
from .models import ModelLoadError, load_model
from .sagemaker import MAX_BODY_BYTES, Endpoint, SageMakerRuntime
from .wire import ApiError, Response, comprehend_error, sagemaker_error

COMPREHEND_MAX_BODY_BYTES = 1 << 20  # 25 texts of 5,000 bytes even fully \u-escaped fit easily
DRAIN_LIMIT_BYTES = 64 << 20  # an oversized body up to this is read and discarded so the client sees our 413
_SERVER_NAME = "sqlml-local"


@dataclass
class Request:
    method: str
    path: str  # without the query string
    headers: dict[str, str]  # lower-case names
    body: bytes


class App:
    """Everything a worker needs to answer requests; built once, before workers fork."""

    def __init__(self, config: ServerConfig, endpoints: dict[str, Endpoint], comprehend: Comprehend) -> None:
        self.config = config
        self.endpoints = endpoints
        self.comprehend = comprehend
        self.sagemaker = SageMakerRuntime(endpoints, config.account_id, config.region)

    @classmethod
    def load(cls, config: ServerConfig, log=None) -> "App":
        """Train/load every endpoint; a failing one is kept as Failed with its reason, never fatal."""
        log = log or (lambda message: print(message, file=sys.stderr, flush=True))
        endpoints = {}
        for name, ep in config.endpoints.items():
            try:
                model = load_model(ep)
            except ModelLoadError as exc:
                endpoints[name] = Endpoint(ep, None, str(exc))
                log(f"sqlml serve: endpoint {name} FAILED to load: {exc}")
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:  # noqa: BLE001 - incl. a Rust panic; one bad model must not stop the rest
                endpoints[name] = Endpoint(ep, None, f"{type(exc).__name__}: {exc}")
                log(f"sqlml serve: endpoint {name} FAILED to load: {type(exc).__name__}: {exc}")
            else:
                endpoints[name] = Endpoint(ep, model)
                log(f"sqlml serve: endpoint {name}: {model.description}")
        return cls(config, endpoints, Comprehend.load(log))

    # -- routing ----------------------------------------------------------
    @staticmethod
    def service_of(method: str, path: str, headers: dict[str, str]) -> str | None:
        if path.startswith("/endpoints/") and path.endswith("/invocations"):
            return "sagemaker"
        if path == "/" and "x-amz-target" in headers:
            return "comprehend"
        return None

    def body_limit(self, service: str | None) -> int:
        return MAX_BODY_BYTES if service == "sagemaker" else COMPREHEND_MAX_BODY_BYTES

    def too_large(self, service: str | None, size: int | None) -> Response:
        request_id = str(uuid.uuid4())
        if service == "sagemaker":
            return sagemaker_error(self.sagemaker.oversized(size), request_id)
        # no error type, like SageMaker's own 413: boto3 then reports the status as the code
        err = ApiError(413, None, f"HTTP content length exceeded {COMPREHEND_MAX_BODY_BYTES} bytes.")
        return comprehend_error(err, request_id)

    def handle(self, request: Request) -> Response:
        request_id = str(uuid.uuid4())
        service = self.service_of(request.method, request.path, request.headers)
        render = sagemaker_error if service == "sagemaker" else comprehend_error
        try:
            if service == "sagemaker" and request.method == "POST":
                encoded = request.path[len("/endpoints/"):-len("/invocations")]
                response = self.sagemaker.invoke(urllib.parse.unquote(encoded),
                                                 request.headers.get("content-type", ""),
                                                 request.headers.get("accept", ""), request.body)
            elif service == "comprehend" and request.method == "POST":
                response = self.comprehend.handle(request.headers.get("x-amz-target", ""),
                                                  request.headers.get("content-type", ""), request.body)
            elif request.path == "/ping" and request.method in ("GET", "HEAD"):
                response = Response(200, json.dumps(self.status()).encode("utf-8"),
                                    [("Content-Type", "application/json")])
            else:
                raise ApiError(404, "UnknownOperationException",
                               f"No route for {request.method} {request.path}: the local service answers "
                               "POST / (Comprehend), POST /endpoints/NAME/invocations (SageMaker) and GET /ping")
        except ApiError as err:
            response = render(err, request_id)
            if service is None:  # neither protocol: say the code in a header too, as the REST services do
                response.headers.append(("x-amzn-ErrorType", err.code or str(err.status)))
            return response
        except Exception as exc:  # noqa: BLE001 - a bug here must answer 500, not kill the connection
            traceback.print_exc(file=sys.stderr)
            code = "InternalFailure" if service == "sagemaker" else "InternalServerException"
            return render(ApiError(500, code, f"local service error: {type(exc).__name__}: {exc}"), request_id)
        response.headers.append(("x-amzn-RequestId", request_id))
        return response

    def status(self) -> dict:
        return {
            "status": "ok",
            "pid": os.getpid(),
            "comprehend": self.comprehend.status,
            "endpoints": {
                name: {"status": ep.status, "model": ep.config.model,
                       **({"description": ep.model.description, "features": ep.model.n_features}
                          if ep.model is not None else {"error": ep.error})}
                for name, ep in self.endpoints.items()
            },
        }


# ---------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------

_REASONS = {s.value: s.phrase for s in http.HTTPStatus}
_REASONS[530] = "Internal Dependency Error"
_date = [0, ""]


def _http_date() -> str:
    now = int(time.time())
    if _date[0] != now:  # formatting a date costs more than the rest of the headers
        _date[1] = email.utils.formatdate(now, usegmt=True)
        _date[0] = now
    return _date[1]


class _BodyTooLarge(Exception):
    def __init__(self, size: int | None, drained: bool) -> None:
        super().__init__(size)
        self.size = size
        self.drained = drained  # the body was read, so the connection can stay open


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    server_version = _SERVER_NAME
    disable_nagle_algorithm = True  # small answers must not wait for the next segment
    server: "HTTPServer"

    def setup(self) -> None:
        self.timeout = self.server.idle_timeout_s  # also bounds a stalled request line or body
        super().setup()
        self.server.track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.server.track(self.connection, False)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - stdlib signature
        if self.server.verbose:
            sys.stderr.write(f"[{os.getpid()}] {self.address_string()} {format % args}\n")

    def log_request(self, code="-", size="-") -> None:
        pass  # our own compact line is written in _serve

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Malformed HTTP (request line, headers, method): a JSON error, then close."""
        self.close_connection = True
        body = json.dumps({"message": message or _REASONS.get(code, "error")}).encode("utf-8")
        headers = [("Content-Type", "application/json"), ("x-amzn-ErrorType", str(code))]
        if self.command == "HEAD" or code < 200 or code in (204, 304):
            body = b""
        self._write(Response(code, body, headers, close=True))

    # stdlib dispatches on do_<METHOD>; every method goes through the same router
    def do_POST(self) -> None:
        self._serve()

    do_GET = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = do_POST

    def _serve(self) -> None:
        t0 = time.perf_counter()
        headers = {k.lower(): v for k, v in self.headers.items()}
        path = self.path.split("?", 1)[0]
        app = self.server.app
        service = app.service_of(self.command, path, headers)
        try:
            body = self._read_body(headers, app.body_limit(service))
        except _BodyTooLarge as exc:
            response = app.too_large(service, exc.size)
            response.close = not exc.drained
        except (ValueError, OSError) as exc:  # unparsable framing or the client went away
            self.close_connection = True
            if isinstance(exc, ValueError):
                self.send_error(400, f"Bad request framing: {exc}")
            return
        else:
            self.server.enter(1)
            try:
                response = app.handle(Request(self.command, path, headers, body))
            finally:
                self.server.enter(-1)
        if self.command == "HEAD":
            response.body = b""
        self._write(response)
        if self.server.verbose:
            ms = (time.perf_counter() - t0) * 1000.0
            sys.stderr.write(f"[{os.getpid()}] {self.command} {path} {response.status} "
                             f"{len(response.body)}B {ms:.1f}ms\n")

    def _read_body(self, headers: dict[str, str], limit: int) -> bytes:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return self._read_chunked(limit)
        raw = headers.get("content-length")
        if raw is None:
            return b""
        if not raw.strip().isdigit():
            raise ValueError(f"Content-Length {raw[:40]!r} is not a number")
        length = int(raw)
        if length > limit:
            drained = length <= DRAIN_LIMIT_BYTES and self._discard(length)
            raise _BodyTooLarge(length, drained)
        body = self.rfile.read(length)
        if len(body) != length:
            raise OSError("client closed the connection mid-body")
        return body

    def _discard(self, length: int) -> bool:
        left = length
        while left > 0:
            chunk = self.rfile.read(min(left, 1 << 16))
            if not chunk:
                return False
            left -= len(chunk)
        return True

    def _read_chunked(self, limit: int) -> bytes:
        chunks, total = [], 0
        while True:
            line = self.rfile.readline(1026)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise ValueError("bad chunk size line") from None
            if size == 0:
                while self.rfile.readline(1026) not in (b"\r\n", b"\n", b""):
                    pass  # trailers: ignored
                return b"".join(chunks)
            total += size
            if total > limit:
                raise _BodyTooLarge(None, False)  # no size known in advance: stop reading, close
            data = self.rfile.read(size)
            if len(data) != size:
                raise OSError("client closed the connection mid-chunk")
            chunks.append(data)
            self.rfile.readline(1026)

    def _write(self, response: Response) -> None:
        if response.close:
            self.close_connection = True
        lines = [f"HTTP/1.1 {response.status} {_REASONS.get(response.status, 'Unknown')}\r\n"]
        lines.extend(f"{k}: {v}\r\n" for k, v in response.headers)
        lines.append(f"Content-Length: {len(response.body)}\r\nDate: {_http_date()}\r\nServer: {_SERVER_NAME}\r\n")
        if self.close_connection:
            lines.append("Connection: close\r\n")
        lines.append("\r\n")
        try:
            self.wfile.write("".join(lines).encode("latin-1") + response.body)
        except OSError:  # the client went away (e.g. its read timeout fired)
            self.close_connection = True


class HTTPServer(http.server.ThreadingHTTPServer):
    """A threading HTTP server on a socket that is already bound and listening.

    Several processes may serve the same socket: the socket is non-blocking, so a
    process that loses the race for a connection gets EAGAIN instead of blocking in
    accept(), and the idlest process tends to win because it wakes first.
    """

    daemon_threads = True  # a stuck connection must not keep a stopping worker alive
    block_on_close = False

    def __init__(self, sock: socket.socket, app: App, idle_timeout_s: float, verbose: bool = False) -> None:
        self.app = app
        self.idle_timeout_s = idle_timeout_s
        self.verbose = verbose
        self._connections: set[socket.socket] = set()
        self._in_flight = 0
        self._lock = threading.Lock()
        super().__init__(sock.getsockname()[:2], _Handler, bind_and_activate=False)
        self.socket.close()  # the placeholder socket the base class made; serve the shared one
        self.socket = sock
        self.server_address = sock.getsockname()
        sock.setblocking(False)

    def get_request(self):
        conn, addr = self.socket.accept()
        conn.setblocking(True)  # per-connection timeouts are set by the handler
        return conn, addr

    def handle_error(self, request, client_address) -> None:
        # reached only for errors outside our handler's own safety net (e.g. a reset socket)
        if self.verbose:
            super().handle_error(request, client_address)

    def track(self, sock: socket.socket, opened: bool) -> None:
        with self._lock:
            (self._connections.add if opened else self._connections.discard)(sock)

    def enter(self, delta: int) -> None:
        with self._lock:
            self._in_flight += delta

    def busy(self) -> bool:
        """True while a request is being computed (used to let a stopping worker finish it)."""
        return self._in_flight > 0

    def close_connections(self) -> None:
        with self._lock:
            connections, self._connections = list(self._connections), set()
        for sock in connections:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def server_close(self) -> None:
        pass  # the listening socket belongs to whoever created it (it may be shared)


def listen(host: str, port: int, backlog: int = 1024) -> socket.socket:
    """A listening TCP socket on host:port (0: any free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if host == "localhost":
        host, family = "127.0.0.1", socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # restart right after a stop
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock
