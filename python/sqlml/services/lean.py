"""SigV4-signed POSTs to one AWS service, without botocore's per-call machinery.

A request through a boto3 client spends most of its client CPU around the request
rather than in it: endpoint ruleset resolution, a dozen event hooks, serialization by
shape, user-agent assembly, then botocore's HTTP session (urllib3 around http.client).
Comprehend (JSON 1.1) and SageMaker Runtime (REST-JSON, raw body) requests are a path, a
few headers and a body we already hold, so this client sends them itself, at a fraction
of that CPU (bench/bench_local_service.py and tests/test_lean_client.py compare the two
paths). Everything that
decides *what* is sent, and how it may fail, is still botocore's, taken once from the
boto3 client built for the service:

- the endpoint from botocore's own ruleset resolution (an endpoint_url override
  included), resolved once per operation when the client is built: neither operation
  has parameters the ruleset reads, so the answer cannot change per call;
- the credentials object botocore would sign with (for a role, its
  RefreshableCredentials): frozen once per call, so botocore still refreshes them;
- signing: SigV4 as botocore.auth.SigV4Auth signs a botocore.awsrequest.AWSRequest,
  computed by awscrt's signer (AWS's common runtime, in C) where awscrt can be imported;
  tests/test_lean_client.py checks that both give the same headers (_crt_sign);
- botocore's HTTP settings: connect and read timeouts, pool size, socket options
  (TCP keep-alive), CA bundle, client certificate. Requests to an endpoint that goes
  through a proxy are sent by botocore's own HTTP session instead;
- failures raised as the exceptions botocore's HTTP session raises (ReadTimeoutError,
  EndpointConnectionError, ...) and error responses parsed by botocore's own parser
  into a ClientError, so comprehend.client_error maps both exactly as it maps a boto3 call's failures.

What is ours: the pool of kept-alive connections (LIFO, at most max_pool_connections
idle, a dropped one is noticed before reuse), cheaper per request than botocore's HTTP
session. The HTTP itself is libcurl's, through sqlml._curl_link (native/curl_link.c:
one easy handle per connection, driven by a multi handle of its own, a request and its
whole answer in one C call with the GIL released): about half the CPU of http.client
for the same kept-alive exchange, most of which went to parsing the answer's headers
with the email package. The module is linked against the system libcurl (the server's
own OpenSSL); where it was not built (no libcurl development files), http.client
connections do the same job (one line in the server's error log says why). With
libcurl, botocore's read timeout bounds the whole answer rather than each read: a
service answers a request of this size in one piece, and the caller's deadline
(timeout_s) covers all attempts anyway.
"""

from __future__ import annotations

import collections
import datetime
import hashlib
import http.client
import platform
import re
import select
import ssl
import sys
import time
from urllib.parse import urlsplit

import botocore
import botocore.credentials
import botocore.exceptions
import botocore.httpsession
import botocore.parsers
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

from .. import __version__

USER_AGENT = f"sqlml/{__version__} Botocore/{botocore.__version__} Python/{platform.python_version()}"
_DEFAULT_PORTS = {"http": 80, "https": 443}


class NoIdleConnection(Exception):
    """send(wait=...) found no kept-alive connection: nothing was sent. A new connection
    would be opened under the connect timeout, which no wait function can cut short,
    so the caller sends from a worker thread instead."""


class Reply:
    """A 2xx answer: the body as sent, and headers (.get() by name in any letter case)."""

    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers, body: bytes):
        self.status = status
        self.headers = headers
        self.body = body


MAX_SHAPES = 1024  # Shapes a LeanClient keeps (one per endpoint and Accept in use)


class Shape:
    """What a request's operation, path and headers give, worked out once for all the
    requests of that shape (LeanClient.shape): the scalar path sends one per row."""

    __slots__ = ("operation", "path", "url", "headers", "curl_lines")

    def __init__(self, operation: str, path: str, url: str, headers: dict[str, str], curl_lines: list[str] | None):
        self.operation = operation
        self.path = path
        self.url = url
        self.headers = headers  # the operation's own (endpoint ruleset) and the caller's
        self.curl_lines = curl_lines  # the header lines libcurl signs, or None if it does not


class LeanClient:
    """Sends signed requests for the given operations of the service `client` speaks to,
    in `protocol` (the wire format the caller builds: "json" or "rest-json")."""

    def __init__(self, client, credentials, protocol: str, operations: tuple[str, ...]):
        meta = client.meta
        self.service_model = meta.service_model
        self.boto3_client = client  # its settings made this client; proxied requests use its HTTP session
        self._credentials = credentials
        # Keys that never change (botocore's plain Credentials: refreshable ones are a
        # subclass) are frozen once, not per request.
        self._static_keys = (credentials.get_frozen_credentials()
                             if type(credentials) is botocore.credentials.Credentials else None)
        # Named by the caller, not botocore's choice among the service's protocols
        # (Comprehend also speaks CBOR, which a later botocore may prefer): error answers
        # must be parsed in the format the request was sent in.
        if protocol not in (self.service_model.metadata.get("protocols") or [self.service_model.protocol]):
            raise RuntimeError(f"{self.service_model.service_name} does not speak {protocol}")
        self._parser = botocore.parsers.create_parser(protocol)
        self._extra_headers: dict[str, dict[str, str]] = {}
        resolved = set()
        for operation in operations:
            url, headers, region, signing_name = self._resolve(client, operation)
            self._extra_headers[operation] = headers
            resolved.add((url, region, signing_name))
        if len(resolved) != 1:
            raise RuntimeError(f"{self.service_model.service_name}: operations {operations} resolve to different "
                               f"endpoints or signing scopes: {sorted(resolved)}")
        self.endpoint_url, self._region, self._signing_name = resolved.pop()
        parts = urlsplit(self.endpoint_url)
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._base_path = parts.path
        host = parts.hostname
        self._host_header = f"[{host}]" if ":" in host else host
        if parts.port is not None and parts.port != _DEFAULT_PORTS.get(parts.scheme):
            self._host_header += f":{parts.port}"

        # botocore's HTTP session for this client: the CA bundle, proxies and socket
        # options botocore resolved (config, environment, ~/.aws/config). These are
        # private attributes: tests/test_lean_client.py pins them.
        session = client._endpoint.http_session
        self._http_session = session
        self._proxied = session._proxy_config.proxy_url_for(self.endpoint_url) is not None
        config = meta.config
        self.transport = _transport()
        self._crt_signing = SIGNER == "crt" and crt_auth is not None
        # libcurl signs (CURLOPT_AWS_SIGV4) instead, if asked (CURL_SIGNS) and it sends:
        # requests whose whole path it signs as botocore would (Shape.curl_lines).
        self._curl_signing = CURL_SIGNS and self.transport == "curl" and not self._proxied
        self._userpwd: tuple = (None, None, None)  # (access key, secret key, "key:secret") last signed with
        self._shapes: dict[tuple, Shape] = {}
        self._sigv4 = f"aws:amz:{self._region}:{self._signing_name}"
        if self.transport == "curl":
            self._connections = _CurlConnections(
                self._origin, connect_timeout_s=config.connect_timeout, read_timeout_s=config.read_timeout,
                socket_options=list(session._socket_options), max_idle=config.max_pool_connections,
                tls=_curl_tls(session) if parts.scheme == "https" else None)
        else:
            self._connections = _Connections(
                host, parts.port or _DEFAULT_PORTS[parts.scheme],
                connect_timeout_s=config.connect_timeout, read_timeout_s=config.read_timeout,
                socket_options=list(session._socket_options), max_idle=config.max_pool_connections,
                ssl_context=_ssl_context(session) if parts.scheme == "https" else None)

    def _resolve(self, client, operation: str) -> tuple[str, dict[str, str], str, str]:
        """(url, headers, signing region, signing name) from botocore's own endpoint
        resolution for one operation, as its _make_api_call does it."""
        model = self.service_model.operation_model(operation)
        if model.context_parameters or model.static_context_parameters:
            # The ruleset would read this call's parameters: resolving once would be wrong.
            raise RuntimeError(f"{operation}: its endpoint depends on the call's parameters")
        context = {"client_region": client.meta.region_name, "client_config": client.meta.config,
                   "auth_type": model.resolved_auth_type}
        url, headers, _ = client._resolve_endpoint_ruleset(model, {}, context)
        signing = context.get("signing", {})
        if context.get("auth_type") not in (None, "v4") or set(signing) - {"region", "signing_name"}:
            raise RuntimeError(f"{operation}: the endpoint wants signing {context.get('auth_type')} {signing}; "
                               "only SigV4 is supported here")
        return (url, dict(headers), signing.get("region", client.meta.region_name),
                signing.get("signing_name", self.service_model.signing_name))

    def path(self, path: str) -> str:
        """The request path for an operation's path, under the endpoint's own path
        (botocore's rule: '/' alone keeps the endpoint's path as it is)."""
        base = self._base_path
        if path == "/":
            return base or "/"
        return (base[:-1] if base.endswith("/") else base) + path

    def close(self) -> None:
        """Closes idle connections; requests still in flight close theirs when done."""
        self._connections.close()

    def can_send_inline(self) -> bool:
        """Whether send(wait=...) would find a kept-alive connection now (it may still
        raise NoIdleConnection if the server closes that connection meanwhile)."""
        return not self._proxied and bool(self._connections.idle)

    def shape(self, operation: str, path: str, headers: dict[str, str]) -> Shape:
        """The Shape of requests to self.path(path) with these headers (send_shape), kept
        per client: a statement of one row asks for it once."""
        key = (operation, path, *headers.items())
        shape = self._shapes.get(key)
        if shape is None:
            if len(self._shapes) >= MAX_SHAPES:  # endpoints by the thousand: never a growing map
                self._shapes.clear()
            shape = self._shapes[key] = self._make_shape(operation, path, headers)
        return shape

    def _make_shape(self, operation: str, path: str, headers: dict[str, str]) -> Shape:
        path = self.path(path)
        headers = {**self._extra_headers[operation], **headers}
        curl_lines = None
        if self._curl_signing and _CURL_SIGNABLE_PATH.fullmatch(path):
            curl_lines = [f"{name}: {value}" if value else f"{name};" for name, value in headers.items()]
        return Shape(operation, path, self._origin + path, headers, curl_lines)

    def send(self, operation: str, path: str, body: bytes, headers: dict[str, str], wait=None) -> Reply:
        """POSTs `body` to self.path(path), signed; a 2xx Reply, else raises what botocore
        would: ClientError (error answers), its HTTP exceptions, NoCredentialsError.

        wait, if given, lets the calling thread stop waiting on its own terms (a KILL),
        in one of two forms:
        - a callable wait(sock) (sock: the connection's socket, or with libcurl its
          descriptor), called once the request is written, that returns when the answer
          starts to arrive, or raises (the connection is then closed). It returns the
          seconds left for reading the rest of the answer (None: the read timeout), so a
          slow answer cannot outlast the caller's deadline;
        - an object with `deadline` (time.monotonic() seconds), `check(expired)` and
          optionally `slice_s` (default 0.1): the answer is awaited in slices of slice_s
          (with libcurl, in C without the GIL), check(now >= deadline) is called after each
          slice that ended without it and raises to stop (the connection is then closed);
          the rest of the answer is read within the deadline. An answer that starts within
          the first slice runs no Python at all.
        With wait, only a kept-alive connection is used (NoIdleConnection otherwise,
        before anything is sent)."""
        return self.send_shape(self.shape(operation, path, headers), body, wait)

    def send_shape(self, shape: Shape, body: bytes, wait=None) -> Reply:
        """send() of a request of this Shape."""
        if wait is not None and self._proxied:  # botocore's session would send it: no wait there
            raise NoIdleConnection()
        credentials = self._static_keys
        if credentials is None:
            if self._credentials is None:
                raise botocore.exceptions.NoCredentialsError()
            # Frozen per call: a RefreshableCredentials refreshes itself here when due.
            credentials = self._credentials.get_frozen_credentials()
        path, url = shape.path, shape.url
        if shape.curl_lines is not None and len(body) <= CURL_SIGN_MAX_BODY_BYTES:
            # Signed by libcurl (CURLOPT_AWS_SIGV4 with the frozen keys): it adds X-Amz-Date
            # and Authorization; a session token goes as a header of its own, which libcurl
            # signs with the others. The User-Agent is the Link's own (CURLOPT_USERAGENT):
            # as a header line libcurl would sign it, botocore never does.
            access_key, secret_key, userpwd = self._userpwd
            if credentials.access_key != access_key or credentials.secret_key != secret_key:
                userpwd = f"{credentials.access_key}:{credentials.secret_key}"
                self._userpwd = (credentials.access_key, credentials.secret_key, userpwd)
            lines = shape.curl_lines
            if credentials.token:
                lines = [*lines, f"X-Amz-Security-Token: {credentials.token}"]
            status, reply_headers, data = self._connections.post_lines(url, body, lines, wait, self._sigv4, userpwd)
        elif self._crt_signing and not self._proxied:
            signed = _crt_sign(path, {**shape.headers, "Host": self._host_header}, body, credentials,
                               self._signing_name, self._region)
            signed.append(("User-Agent", USER_AGENT))  # never signed (botocore's SIGNED_HEADERS_BLACKLIST)
            status, reply_headers, data = self._connections.post(path, body, signed, url, wait)
        else:
            headers = {**shape.headers, "Host": self._host_header, "User-Agent": USER_AGENT}
            request = AWSRequest(method="POST", url=url, data=body, headers=headers)
            _SigV4Auth(credentials, self._signing_name, self._region).add_auth(request)
            if self._proxied:
                answer = self._http_session.send(request.prepare())
                status, reply_headers, data = answer.status_code, answer.headers, answer.content
            else:
                status, reply_headers, data = self._connections.post(path, body, request.headers.items(), url, wait)
        if status >= 300:
            raise self._client_error(shape.operation, status, reply_headers, data)
        return Reply(status, reply_headers, data)

    def _client_error(self, operation: str, status: int, headers, body: bytes) -> botocore.exceptions.ClientError:
        """The ClientError botocore would raise for this answer, parsed by its own parser."""
        response = {"status_code": status, "headers": {k.lower(): v for k, v in headers.items()}, "body": body,
                    "context": {"operation_name": operation}}
        parsed = self._parser.parse(response, self.service_model.operation_model(operation).output_shape)
        return botocore.exceptions.ClientError(parsed, operation)


def _load_awscrt():
    """awscrt's auth and http modules, or (None, None) without awscrt."""
    try:
        from awscrt import auth, http
    except ImportError:
        return None, None
    return auth, http


crt_auth, crt_http = _load_awscrt()
# Who signs requests sent by our own transport: "crt" (awscrt's SigV4, in C) when awscrt
# can be imported, else "botocore" (botocore.auth.SigV4Auth). Both give the same
# Authorization for the same request and time (tests/test_lean_client.py checks it, with
# and without a session token); proxied requests are always signed by botocore.
SIGNER = "crt" if crt_auth is not None else "botocore"


def _crt_sign(path: str, headers: dict[str, str], body: bytes, credentials, service: str, region: str,
              now: datetime.datetime | None = None) -> list[tuple[str, str]]:
    """The request's headers with X-Amz-Date, X-Amz-Security-Token (temporary
    credentials) and Authorization added, signed as botocore's SigV4Auth signs them:
    every header given (none of botocore's unsigned ones may be among them), the
    path URI-encoded twice and normalized, the payload's SHA-256, no signed-body header.
    awscrt (AWS's common runtime; its libcrypto linked in, its symbols hidden) signs in
    about a third of botocore's CPU, without an AWSRequest and its email-based headers."""
    pairs = list(headers.items())
    request = crt_http.HttpRequest("POST", path, crt_http.HttpHeaders(pairs))
    config = crt_auth.AwsSigningConfig(
        algorithm=crt_auth.AwsSigningAlgorithm.V4, signature_type=crt_auth.AwsSignatureType.HTTP_REQUEST_HEADERS,
        credentials_provider=_static_provider(credentials.access_key, credentials.secret_key, credentials.token),
        region=region, service=service, date=now or datetime.datetime.now(datetime.timezone.utc),
        signed_body_value=hashlib.sha256(body).hexdigest(),
        signed_body_header_type=crt_auth.AwsSignedBodyHeaderType.NONE,
        use_double_uri_encode=True, should_normalize_uri_path=True)
    crt_auth.aws_sign_request(request, config).result()
    # What signing added, read back by name (the headers given are sent as given: awscrt
    # trims their values in its copy, botocore sends them untrimmed).
    signed = request.headers
    pairs.append(("X-Amz-Date", signed.get("X-Amz-Date")))
    token = signed.get("X-Amz-Security-Token")
    if token is not None:
        pairs.append(("X-Amz-Security-Token", token))
    pairs.append(("Authorization", signed.get("Authorization")))
    return pairs


_providers: dict = {}


def _static_provider(access_key: str, secret_key: str, token: str | None):
    """An awscrt credentials provider for these frozen credentials, made once: they
    change only when a role's credentials are refreshed."""
    key = (access_key, secret_key, token or None)
    provider = _providers.get(key)
    if provider is None:
        if len(_providers) >= 16:  # refreshed credentials replace old ones: never a growing map
            _providers.clear()
        provider = _providers[key] = crt_auth.AwsCredentialsProvider.new_static(*key)
    return provider


class _SigV4Auth(SigV4Auth):
    """botocore's SigV4 signer. The payload hash is taken from the body bytes we hold:
    botocore's own payload() reads AWSRequest.body, which prepares the whole request
    (a copy of every header) just to return those same bytes. (Its other cases, a
    streamed checksum trailer or payload signing turned off in the request context,
    never apply to these requests.)"""

    def payload(self, request) -> str:
        return hashlib.sha256(request.data).hexdigest()


def _ssl_context(session) -> ssl.SSLContext:
    """The TLS settings botocore's HTTP session applies: its context, its CA bundle
    (verify: ca_bundle / AWS_CA_BUNDLE / REQUESTS_CA_BUNDLE / certifi), its client cert."""
    context = botocore.httpsession.create_urllib3_context()
    verify = session._verify
    if verify:
        context.verify_mode = ssl.CERT_REQUIRED
        context.check_hostname = True
        context.load_verify_locations(cafile=botocore.httpsession.get_cert_path(verify))
    else:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if session._cert_file:
        context.load_cert_chain(session._cert_file, session._key_file)
    return context


def _curl_tls(session) -> tuple[str | None, bool, str | None, str | None]:
    """_ssl_context's settings for libcurl: (CA bundle, verify, client cert, its key)."""
    verify = bool(session._verify)
    cafile = botocore.httpsession.get_cert_path(session._verify) if verify else None
    return cafile, verify, session._cert_file, session._key_file


class _Pool:
    """Kept-alive connections to one host, of either transport. LIFO, so the warmest is
    reused; at most max_idle are kept, more are opened under load and closed on return
    (as urllib3's non-blocking pool does); a dropped one is noticed before reuse. A
    connection says whether it is open (is_open) and was dropped while idle (dropped)."""

    def __init__(self, *, connect_timeout_s: float, read_timeout_s: float, socket_options: list, max_idle: int):
        self._connect_timeout_s = connect_timeout_s
        self._read_timeout_s = read_timeout_s
        self._socket_options = socket_options
        self._max_idle = max_idle
        self._idle: collections.deque = collections.deque()  # append/pop are atomic
        self.idle = self._idle  # read-only to others: empty or not
        self._closed = False

    def _new(self):
        raise NotImplementedError

    def _take(self, idle_only: bool = False):
        """The warmest idle connection, or a new one (unopened) unless idle_only, where
        only an open one will do (NoIdleConnection)."""
        while True:
            try:
                conn = self._idle.pop()
            except IndexError:
                if idle_only:
                    raise NoIdleConnection() from None
                return self._new()
            if not conn.is_open():
                if not idle_only:
                    return conn
            elif not conn.dropped():
                return conn
            conn.close()  # closed by the server while idle (keep-alive timeout), or unopened

    def _give(self, conn) -> None:
        if self._closed or len(self._idle) >= self._max_idle:
            conn.close()
        else:
            self._idle.append(conn)

    def close(self) -> None:
        self._closed = True
        while self._idle:
            try:
                self._idle.pop().close()
            except IndexError:
                break


class _Connections(_Pool):
    """The pool of http.client connections."""

    def __init__(self, host: str, port: int, *, ssl_context: ssl.SSLContext | None, **options):
        super().__init__(**options)
        self._host, self._port = host, port
        self._ssl_context = ssl_context

    def _new(self) -> http.client.HTTPConnection:
        if self._ssl_context is not None:
            return _HTTPSConnection(self._host, self._port, timeout=self._connect_timeout_s,
                                    context=self._ssl_context, options=self)
        return _HTTPConnection(self._host, self._port, timeout=self._connect_timeout_s, options=self)

    def post(self, path: str, body: bytes, headers, url: str, wait=None) -> tuple[int, http.client.HTTPMessage, bytes]:
        """(status, headers, body); raises botocore's HTTP exceptions, as URLLib3Session.send
        does. wait: see LeanClient.send."""
        conn = self._take(idle_only=wait is not None)
        if wait is not None and hasattr(wait, "deadline"):
            wait = _sliced_wait(wait)
        if conn.sock is None:
            try:
                conn.connect()
            except ssl.SSLError as exc:
                conn.close()
                raise botocore.exceptions.SSLError(endpoint_url=url, error=exc) from None
            except TimeoutError as exc:
                conn.close()
                raise botocore.exceptions.ConnectTimeoutError(endpoint_url=url, error=exc) from None
            except OSError as exc:
                conn.close()
                raise botocore.exceptions.EndpointConnectionError(endpoint_url=url, error=exc) from None
        try:
            conn.putrequest("POST", path, skip_host=True, skip_accept_encoding=False)
            for name, value in headers:
                conn.putheader(name, value)
            conn.putheader("Content-Length", str(len(body)))
            conn.end_request(body)
            if wait is not None:
                try:
                    budget_s = wait(conn.sock)
                except BaseException:
                    conn.close()  # its answer may still come: the connection cannot carry another request
                    raise
                if budget_s is not None and budget_s < self._read_timeout_s:
                    conn.sock.settimeout(max(budget_s, 0.001))  # the rest of the answer, within the caller's deadline
            answer = conn.getresponse()
            data = answer.read()
            _forget_response(conn)
            if wait is not None:
                conn.sock.settimeout(self._read_timeout_s)
        except TimeoutError as exc:
            conn.close()
            raise botocore.exceptions.ReadTimeoutError(endpoint_url=url, error=exc) from None
        except (OSError, http.client.HTTPException) as exc:
            # Reset, closed mid-answer, a keep-alive connection closed as it was reused:
            # botocore's ConnectionClosedError, which the engine retries.
            conn.close()
            raise botocore.exceptions.ConnectionClosedError(endpoint_url=url, error=exc) from None
        self._give(conn)
        return answer.status, answer.headers, data


def _sliced_wait(wait):
    """The object form of a wait (LeanClient.send) as the callable http.client's path
    calls: the answer awaited in wait.slice_s slices, wait.check(expired) between them."""
    slice_s = getattr(wait, "slice_s", 0.1)

    def wait_readable(sock) -> float:
        poller = select.poll()
        poller.register(sock, select.POLLIN | select.POLLPRI)
        while True:
            left_s = wait.deadline - time.monotonic()
            if poller.poll(max(0, int(min(slice_s, left_s) * 1000 + 0.999))):
                return wait.deadline - time.monotonic()
            expired = time.monotonic() >= wait.deadline
            wait.check(expired)
            if expired:  # check let it go on, but the deadline has passed
                raise TimeoutError("no answer before the caller's deadline")

    return wait_readable


# A body up to this size goes out in the same write as the request's head.
ONE_WRITE_MAX_BYTES = 64 * 1024


class _Options:
    """botocore's socket options and read timeout, applied once connected (the TCP and
    TLS handshakes run under the connect timeout); a small request in one write."""

    def __init__(self, *args, options: _Connections, **kwargs):
        super().__init__(*args, **kwargs)
        self._options = options
        self._body_after_head: bytes | None = None

    def end_request(self, body: bytes) -> None:
        """endheaders(body), in one write when the body is small. http.client writes the
        head and the body with two send() calls: on a TCP_NODELAY socket (botocore's
        option) two segments, two wake-ups of the service and twice the kernel's send
        path, which on the scalar path (a one-line body) cost more than the request's
        Python work. http.client still builds every byte; only the writes are joined."""
        if len(body) > ONE_WRITE_MAX_BYTES:
            self.endheaders(body)  # a batch: copying it to join the head would cost more than a write
            return
        self._body_after_head = body
        try:
            self.endheaders()  # its one send() of the head carries the body (send below)
        finally:
            self._body_after_head = None

    def send(self, data) -> None:
        body = self._body_after_head
        if body is not None:
            self._body_after_head = None
            data = data + body
        super().send(data)

    def connect(self) -> None:
        super().connect()
        for option in self._options._socket_options:
            self.sock.setsockopt(*option)
        self.sock.settimeout(self._options._read_timeout_s)
        # Asked before each reuse (dropped below): one poll object per connection,
        # not one per request.
        self._poller = select.poll()
        self._poller.register(self.sock, select.POLLIN)

    def is_open(self) -> bool:
        return self.sock is not None

    def dropped(self) -> bool:
        """An idle keep-alive socket with something to read has been closed by the server
        (or sent junk): either way it must not carry the next request. poll, not select:
        a server process can hold descriptors past select's 1024."""
        return bool(self._poller.poll(0))


class _HTTPConnection(_Options, http.client.HTTPConnection):
    pass


class _HTTPSConnection(_Options, http.client.HTTPSConnection):
    pass


def _forget_response(conn: http.client.HTTPConnection) -> None:
    """http.client keeps a kept-alive connection's last answer (an HTTPResponse, its
    headers, a few dozen small objects) until the connection's next request: for as long
    as the connection idles in the pool. Allocated among a batch's million cached answers,
    those few objects would keep their allocator arenas, megabytes each, after
    sqlml_cache_clear() freed the rest (bench/bench_memory.py). Done reading, the answer is
    forgotten now, as http.client itself forgets a finished answer at the next request."""
    if getattr(conn, _LAST_RESPONSE, None) is not None:
        setattr(conn, _LAST_RESPONSE, None)


# http.client.HTTPConnection's (name-mangled) reference to its last answer;
# tests/test_lean_client.py checks it is still there.
_LAST_RESPONSE = "_HTTPConnection__response"


# ---- libcurl (sqlml._curl_link) ----------------------------------------------------------

def _load_curl_link():
    """sqlml._curl_link (native/curl_link.c), or None and why. It is built only where
    libcurl's development files were found (CMakeLists.txt), against the system libcurl:
    the server's own OpenSSL, not a second one."""
    try:
        from .. import _curl_link
    except ImportError as exc:
        return None, (f"sqlml._curl_link cannot be imported ({exc}); install libcurl4-openssl-dev and rebuild "
                      "sqlml (make build)")
    return _curl_link, None


curl_link, _CURL_LINK_PROBLEM = _load_curl_link()
# The transport new LeanClients use: "curl" (libcurl through sqlml._curl_link) when it
# can be loaded, else "http.client". Tests set it to run both.
TRANSPORT = "curl" if curl_link is not None else "http.client"
# Who signs a request sent through libcurl: libcurl itself (CURLOPT_AWS_SIGV4) when
# CURL_SIGNS, else lean's own signer (SIGNER, in LeanClient.send_shape). libcurl's saves
# the signer's Python glue: about 20 us of server CPU a request on the scalar path
# (bench/bench_scalar.py). New LeanClients read it. libcurl 7.88 signs every header line it
# is given (a removal line such as "Expect:" as an empty header it never sends, a
# User-Agent line, which botocore never signs), so a request it signs carries neither
# (_CurlConnections.post_lines, the Link's own User-Agent); it signs the path as given,
# where botocore encodes it once more and removes dot segments and repeated slashes.
# With that, tests/test_lean_client.py finds its Authorization equal to botocore's for
# both services, with and without a session token.
CURL_SIGNS = True
# libcurl signs only requests up to this size (a scalar call's, a small batch's): a larger
# one, signed by SIGNER, pays the same few microseconds in a request of thousands of rows.
CURL_SIGN_MAX_BODY_BYTES = 64 * 1024
# ... and only paths botocore would sign as they are: no character it would encode, no
# empty, "." or ".." segment (a custom endpoint URL's base path may hold anything; a
# SageMaker endpoint name is letters, digits and hyphens).
_CURL_SIGNABLE_PATH = re.compile(r"(/[A-Za-z0-9_~-][A-Za-z0-9_.~-]*)*/?")
_warned_fallback = False


def _transport() -> str:
    global _warned_fallback
    if TRANSPORT == "curl" and curl_link is None:  # pragma: no cover - only without libcurl's dev files
        raise RuntimeError(f"lean.TRANSPORT is curl but {_CURL_LINK_PROBLEM}")
    if TRANSPORT == "http.client" and _CURL_LINK_PROBLEM and not _warned_fallback:
        _warned_fallback = True
        print(f"sqlml: requests go through http.client, slower than libcurl: {_CURL_LINK_PROBLEM}", file=sys.stderr,
              flush=True)
    return TRANSPORT


class _Headers:
    """An answer's headers: .get() by name in any letter case, .items() (lower-case
    names). Content-Type is libcurl's own reading (CURLINFO_CONTENT_TYPE), the one
    header a 2xx answer is asked for; the rest are split out of the raw lines only if
    asked for (an error answer, for botocore's parser)."""

    __slots__ = ("_raw", "_content_type", "_parsed")

    def __init__(self, raw: bytes, content_type: str | None):
        self._raw = raw
        self._content_type = content_type
        self._parsed: dict[str, str] | None = None

    def get(self, name: str, default=None):
        if self._parsed is None and name.lower() == "content-type":
            return default if self._content_type is None else self._content_type
        return self._parse().get(name.lower(), default)

    def items(self):
        return self._parse().items()

    def _parse(self) -> dict[str, str]:
        """The last answer's header lines (after its status line: a 1xx answer before it
        has its own), split at the first colon. libcurl did the framing; this only names
        the values (a repeated name's values joined with ", ", as http.client joins them)."""
        if self._parsed is None:
            lines = self._raw.decode("latin-1").split("\r\n")
            start = 0
            for i, line in enumerate(lines):
                if line.startswith("HTTP/"):
                    start = i + 1
            parsed: dict[str, str] = {}
            for line in lines[start:]:
                name, sep, value = line.partition(":")
                if sep:
                    key, value = name.strip().lower(), value.strip()
                    parsed[key] = value if key not in parsed else f"{parsed[key]}, {value}"
            self._parsed = parsed
        return self._parsed


# libcurl's error codes, grouped by the botocore exception http.client's failures map to.
_CURLE_TIMEOUT = 28
_CURLE_CONNECT = frozenset({5, 6, 7})  # could not resolve proxy / host, could not connect
_CURLE_SSL = frozenset({35, 51, 53, 54, 58, 59, 60, 64, 66, 77, 80, 82, 83, 90, 91, 98})
_CURLE_PEER_FAILED_VERIFICATION = 60


class _CurlConnections(_Pool):
    """The pool of libcurl connections: each a sqlml._curl_link.Link, one kept-alive
    connection whose request and whole answer are one C call without the GIL."""

    def __init__(self, origin: str, *, tls: tuple | None, **options):
        super().__init__(**options)
        self._origin = origin
        self._tls = tls
        self._connect_timeout_ms = max(1, int(self._connect_timeout_s * 1000))

    def _new(self):
        return curl_link.Link(self._connect_timeout_ms, self._socket_options, self._tls, USER_AGENT)

    def post(self, path: str, body: bytes, headers, url: str, wait=None) -> tuple[int, _Headers, bytes]:
        """(status, headers, body); raises botocore's HTTP exceptions as _Connections.post
        does. wait: see LeanClient.send (a callable, or an object with deadline and
        check(expired), waited on in C)."""
        # "Name;" is libcurl's spelling of a header with an empty value ("Name:" removes one).
        lines = [f"{name}: {value}" if value else f"{name};" for name, value in headers]
        # libcurl's own defaults that http.client does not send: none of them is wanted.
        present = {name.lower() for name, _ in headers}
        lines.append("Expect:")
        if "accept" not in present:
            lines.append("Accept:")
        if "content-type" not in present:
            lines.append("Content-Type:")
        return self.post_lines(url, body, lines, wait)

    def post_lines(self, url: str, body: bytes, lines: list[str], wait=None, sigv4: str | None = None,
                   userpwd: str | None = None) -> tuple[int, _Headers, bytes]:
        """post() of header lines as libcurl takes them; sigv4, userpwd: libcurl signs
        (Link.post). When it signs, no removal line may be among them: libcurl 7.88 signs
        one as an empty header it never sends, a signature AWS cannot verify (its Accept:
        */* then goes out unsigned; Expect it adds only to a body over 1 MiB)."""
        conn = self._take(idle_only=wait is not None)
        try:
            status, raw, content_type, data = conn.post(url, body, lines, self._connect_timeout_s,
                                                        self._read_timeout_s, wait, sigv4, userpwd)
        except curl_link.Timeout as exc:
            conn.close()
            if exc.args[0]:  # connected: the answer was late
                raise botocore.exceptions.ReadTimeoutError(endpoint_url=url, error=TimeoutError("timed out")) from None
            raise botocore.exceptions.ConnectTimeoutError(endpoint_url=url, error=TimeoutError("timed out")) from None
        except curl_link.Error as exc:
            conn.close()
            raise _botocore_error(exc, url) from None
        except TimeoutError as exc:  # from wait, as http.client's path maps it
            conn.close()
            raise botocore.exceptions.ReadTimeoutError(endpoint_url=url, error=exc) from None
        except OSError as exc:
            conn.close()
            raise botocore.exceptions.ConnectionClosedError(endpoint_url=url, error=exc) from None
        except BaseException:
            conn.close()  # a wait that gave up (a KILL): its answer may still come
            raise
        self._give(conn)
        return status, _Headers(raw, content_type), data


def _botocore_error(exc, url: str) -> Exception:
    """The botocore exception http.client's failure would have become (see _Connections.post)."""
    code, message = exc.args[0], exc.args[1] if len(exc.args) > 1 else ""
    error = OSError(code, f"libcurl: {message}")
    if code == _CURLE_TIMEOUT:
        if "onnect" in message:  # "Connection timed out after N milliseconds" / "Failed to connect"
            return botocore.exceptions.ConnectTimeoutError(endpoint_url=url, error=error)
        return botocore.exceptions.ReadTimeoutError(endpoint_url=url, error=error)
    if code in _CURLE_CONNECT:
        return botocore.exceptions.EndpointConnectionError(endpoint_url=url, error=error)
    if code in _CURLE_SSL:
        if code == _CURLE_PEER_FAILED_VERIFICATION:  # OpenSSL's own words, as ssl.SSLError says them
            error = OSError(code, f"certificate verify failed (libcurl: {message})")
        return botocore.exceptions.SSLError(endpoint_url=url, error=error)
    return botocore.exceptions.ConnectionClosedError(endpoint_url=url, error=error)
