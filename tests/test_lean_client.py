"""The lean request path (services/lean.py) against the boto3 path it replaces.

No database server here: the Comprehend and SageMaker modules are called directly,
the way the engine calls them, against tests/doubles/fakeaws (faults), moto (an independent
implementation of both wire formats) and small local servers that check what arrives
(the SigV4 signature recomputed with botocore, TLS with a private CA, a proxy).
The boto3 client each LeanClient is made from is the reference: for the same answer
the lean path must give the same results and the same ServiceError (code, retryable,
message). Every test runs on both transports (libcurl through sqlml._curl_link, and
http.client, the fallback where that module was not built); a few check a transport's
own parts.
"""

from __future__ import annotations

import datetime
import http.client
import os
import http.server
import json
import re
import socket
import ssl
import sys
import threading
import time
import urllib.request

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, RefreshableCredentials

from sqlml import config
from sqlml.errors import ServiceError
from sqlml.services import aws, comprehend, lean, sagemaker
from sqlml.services.codecs import parse_response
from sqlml.services.lean import LeanClient, NoIdleConnection
from tests.doubles.fakeaws import FakeAWS, fake_sentiment
from tests.doubles.fakeaws.sts import FakeSTS
from tests.doubles.motoserver import moto_server

ROLE = "arn:aws:iam::123456789012:role/sqlml-comprehend"
TEXTS = ["I love this, it is excellent", "Terrible, broken after a week", "It is a blender", "#fail# this one"]


@pytest.fixture(autouse=True)
def aws_env(monkeypatch):
    """The process environment the server gets in the suite (tests/conftest.py), and no
    proxy or CA bundle from the machine's own environment."""
    for name, value in {"AWS_EC2_METADATA_DISABLED": "true", "AWS_ACCESS_KEY_ID": "testing",
                        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_CONFIG_FILE": "/dev/null",
                        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_SESSION_TOKEN", "AWS_CA_BUNDLE", "REQUESTS_CA_BUNDLE",
                 "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
                 "AWS_USE_FIPS_ENDPOINT", "AWS_USE_DUALSTACK_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True, params=["curl", "http.client"])
def transport(request, monkeypatch) -> str:
    """The transport the LeanClients made during the test use."""
    monkeypatch.setattr(lean, "TRANSPORT", request.param)
    return request.param


@pytest.fixture(scope="module")
def fake():
    with FakeAWS() as server:
        yield server


@pytest.fixture
def clients(fake):
    fake.reset()
    built = aws.Clients(settings(fake.url, timeout_s="1"))
    yield built
    built.update(settings("http://127.0.0.1:9"))  # closes the lean clients' connections


def settings(url: str, **more) -> config.Settings:
    return config.parse({"comprehend_endpoint_url": url, "sagemaker_endpoint_url": url, **more})


def detect_with_boto3(client: LeanClient, texts: list[str], language: str) -> list:
    """What comprehend.detect answered through boto3 before the lean path (the reference)."""
    boto = client.boto3_client
    if len(texts) == 1:
        reply = boto.detect_sentiment(Text=texts[0], LanguageCode=language)
        return [comprehend.Sentiment.from_wire(reply, "boto3")]
    reply = boto.batch_detect_sentiment(TextList=texts, LanguageCode=language)
    out: list = [None] * len(texts)
    for item in reply["ResultList"]:
        out[item["Index"]] = comprehend.Sentiment.from_wire(item, "boto3")
    for item in reply["ErrorList"]:
        out[item["Index"]] = item["ErrorCode"]
    return out


def error_of(call) -> tuple[str, bool, str]:
    """(code, retryable, message after the operation's name) of the ServiceError call() raises."""
    with pytest.raises(ServiceError) as err:
        call()
    return err.value.code, err.value.retryable, err.value.sql_message.split(" failed: ", 1)[-1]


def boto3_error_of(call) -> tuple[str, bool, str]:
    """The same for a boto3 call, mapped by comprehend.client_error as the boto3 path did."""
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - mapped or re-raised by client_error
        mapped = comprehend.client_error(exc, "boto3")
        return mapped.code, mapped.retryable, mapped.sql_message.split(" failed: ", 1)[-1]
    raise AssertionError("the boto3 call did not fail")


# ---- same answers as the boto3 path ------------------------------------------------


def test_batch_and_single_sentiment_equal_the_boto3_path(clients, fake):
    client = clients.get("comprehend")
    assert isinstance(client, LeanClient)
    lean = comprehend.detect(client, TEXTS, "en")
    assert [r.label for r in lean[:3]] == [fake_sentiment(t)[0] for t in TEXTS[:3]]
    assert isinstance(lean[3], ServiceError) and lean[3].code == "INTERNAL_SERVER_ERROR"  # ErrorList: this row only
    reference = detect_with_boto3(client, TEXTS, "en")
    assert lean[:3] == reference[:3] and reference[3] == "INTERNAL_SERVER_ERROR"
    assert comprehend.detect(client, ["Great price"], "fr") == detect_with_boto3(client, ["Great price"], "fr")
    assert fake.stats()["by_operation"] == {"BatchDetectSentiment": 2, "DetectSentiment": 2}


def test_invoke_endpoint_equals_the_boto3_path(clients, fake):
    client = clients.get("sagemaker-runtime")
    assert sagemaker.invoke(client, "sum-lean", ["1,2", "3.5,4"], "text/csv") == ["3.0", "7.5"]
    assert sagemaker.invoke(client, "rcf-lean", ["1", "3"], "application/json") == [9.9, 9.7]
    reply = client.boto3_client.invoke_endpoint(EndpointName="rcf-lean", Body=b"1\n3\n", ContentType="text/csv",
                                                Accept="application/json")
    assert parse_response(reply["Body"].read(), reply["ContentType"], 2, "boto3") == [9.9, 9.7]
    log = [e for e in fake.stats()["log"] if e["service"] == "sagemaker"]
    assert [(e["endpoint"], e["content_type"], e["accept"]) for e in log[:2]] == [
        ("sum-lean", "text/csv", "text/csv"), ("rcf-lean", "text/csv", "application/json")]


def test_moto_agrees_with_the_lean_path():
    """moto implements both wire formats independently of botocore and of the fake."""
    with moto_server() as url:
        built = aws.Clients(settings(url))
        client = built.get("comprehend")
        assert comprehend.detect(client, ["I like it"], "en") == detect_with_boto3(client, ["I like it"], "en")
        # moto has no BatchDetectSentiment (an HTML 500): both paths read it as the same retryable error.
        lean = error_of(lambda: comprehend.detect(client, ["a", "b"], "en"))
        assert lean == boto3_error_of(lambda: detect_with_boto3(client, ["a", "b"], "en"))
        assert lean[:2] == ("500", True)
        results = {"results": [{"Body": "0.25\n", "ContentType": "text/csv"},
                               {"Body": '{"scores":[{"score":1.75}]}', "ContentType": "application/json"}]}
        urllib.request.urlopen(urllib.request.Request(
            f"{url}/moto-api/static/sagemaker/endpoint-results", data=json.dumps(results).encode(), method="POST",
            headers={"Content-Type": "application/json"})).read()
        runtime = built.get("sagemaker-runtime")
        assert sagemaker.invoke(runtime, "any-endpoint", ["1,a"], "text/csv") == ["0.25"]
        assert sagemaker.invoke(runtime, "any-endpoint", ["2"], "text/csv") == [1.75]
        built.update(settings("http://127.0.0.1:9"))


# ---- what goes on the wire: a signature botocore verifies ------------------------------


class Recorder:
    """An HTTP server that keeps each request and answers `answer` (status, headers, body)."""

    def __init__(self, answer=(200, {"Content-Type": "application/x-amz-json-1.1"}, b"{}"), tls=None):
        self.requests: list[dict] = []
        self.answer = answer
        self.trickle_s = 0.0  # > 0: the answer's head, then this pause, then its body
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                recorder.requests.append({"path": self.path, "headers": dict(self.headers.items()), "body": body})
                status, headers, data = recorder.answer
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if recorder.trickle_s:
                    self.wfile.flush()
                    time.sleep(recorder.trickle_s)
                self.wfile.write(data)

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        self.url = f"{'https' if tls else 'http'}://{'localhost' if tls else '127.0.0.1'}:{self.port}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self):
        self._server.shutdown()
        self._server.server_close()


AUTHORIZATION = re.compile(r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[a-z0-9-]+)/"
                           r"(?P<service>[a-z0-9-]+)/aws4_request, SignedHeaders=(?P<signed>[a-z0-9;-]+), "
                           r"Signature=(?P<signature>[0-9a-f]{64})")


def signature_verifies(request: dict, secret: str, token: str | None = None) -> dict:
    """Recomputes the request's SigV4 signature with botocore from what arrived; the
    Authorization fields if it matches."""
    auth = AUTHORIZATION.fullmatch(request["headers"]["Authorization"])
    assert auth, request["headers"]["Authorization"]
    headers = {k.lower(): v for k, v in request["headers"].items()}
    signed = auth["signed"].split(";")
    arrived = AWSRequest(method="POST", url=f"http://{headers['host']}{request['path']}", data=request["body"],
                         headers={name: headers[name] for name in signed})
    arrived.context["timestamp"] = headers["x-amz-date"]
    signer = SigV4Auth(Credentials(auth["key"], secret, token), auth["service"], auth["region"])
    expected = signer.signature(signer.string_to_sign(arrived, signer.canonical_request(arrived)), arrived)
    assert expected == auth["signature"], "signature does not verify"
    return auth.groupdict()


def test_requests_carry_a_sigv4_signature_that_botocore_verifies():
    recorder = Recorder((200, {"Content-Type": "application/x-amz-json-1.1"},
                         b'{"Sentiment": "POSITIVE", "SentimentScore": '
                         b'{"Positive": 0.9, "Negative": 0.0, "Neutral": 0.1, "Mixed": 0.0}}'))
    try:
        built = aws.Clients(config.parse({"comprehend_endpoint_url": recorder.url,
                                          "sagemaker_endpoint_url": recorder.url, "region": "eu-west-1"}))
        comprehend.detect(built.get("comprehend"), ["Schön, très bien 😀"], "de")
        request = recorder.requests[-1]
        auth = signature_verifies(request, "testing")
        assert (auth["key"], auth["region"], auth["service"]) == ("testing", "eu-west-1", "comprehend")
        assert auth["signed"] == "content-type;host;x-amz-date;x-amz-target"
        assert request["headers"]["X-Amz-Target"] == "Comprehend_20171127.DetectSentiment"
        assert request["headers"]["Content-Type"] == "application/x-amz-json-1.1"
        assert json.loads(request["body"]) == {"Text": "Schön, très bien 😀", "LanguageCode": "de"}
        # The check can fail: a changed body no longer verifies.
        with pytest.raises(AssertionError, match="does not verify"):
            signature_verifies({**request, "body": request["body"].replace(b"de", b"en")}, "testing")

        recorder.answer = (200, {"Content-Type": "text/csv"}, b"0.5\n")
        assert sagemaker.invoke(built.get("sagemaker-runtime"), "churn-model", ["1,x y"], "text/csv") == ["0.5"]
        request = recorder.requests[-1]
        auth = signature_verifies(request, "testing")
        assert (auth["service"], request["path"]) == ("sagemaker", "/endpoints/churn-model/invocations")
        assert (request["headers"]["Accept"], request["body"]) == ("text/csv", b"1,x y\n")
        built.update(settings("http://127.0.0.1:9"))
    finally:
        recorder.close()


def test_temporary_credentials_sign_with_their_session_token():
    recorder = Recorder()
    try:
        boto = aws.Clients(settings(recorder.url)).get("comprehend").boto3_client
        client = LeanClient(boto, Credentials("ASIATEMP", "temp-secret", "the-token"),
                            *aws.LEAN_OPERATIONS["comprehend"])
        client.send("DetectSentiment", "/", b"{}", {"X-Amz-Target": "Comprehend_20171127.DetectSentiment"})
        request = recorder.requests[-1]
        auth = signature_verifies(request, "temp-secret", "the-token")
        assert request["headers"]["X-Amz-Security-Token"] == "the-token"
        assert "x-amz-security-token" in auth["signed"].split(";")
        client.close()
    finally:
        recorder.close()


# ---- credentials: refreshed as botocore refreshes them ---------------------------------


def test_refreshable_credentials_are_refreshed_per_call(clients, fake):
    refreshes = []

    def refresh():
        refreshes.append(time.monotonic())
        # Expiring inside botocore's mandatory refresh window: every use refreshes.
        expiry = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=60)
        return {"access_key": f"ASIAREFRESH{len(refreshes)}", "secret_key": "s", "token": "t",
                "expiry_time": expiry.isoformat()}

    credentials = RefreshableCredentials.create_from_metadata(refresh(), refresh, "test")
    client = LeanClient(clients.get("comprehend").boto3_client, credentials, *aws.LEAN_OPERATIONS["comprehend"])
    comprehend.detect(client, ["one"], "en")
    comprehend.detect(client, ["two", "three"], "en")
    assert len(refreshes) == 3
    assert [e["access_key"] for e in fake.stats()["log"]] == ["ASIAREFRESH2", "ASIAREFRESH3"]
    client.close()


def test_a_role_is_assumed_with_sts_and_its_keys_refreshed(fake):
    fake.reset()
    with FakeSTS(expires_in=120) as sts:  # inside botocore's refresh window: each use renews
        built = aws.Clients(settings(fake.url, comprehend_role_arn=ROLE, sts_endpoint_url=sts.url))
        client = built.get("comprehend")
        assert sts.calls == []  # assumed when first needed, not when built
        comprehend.detect(client, ["one"], "en")
        comprehend.detect(client, ["two"], "en")
        used = [e["access_key"] for e in fake.stats()["log"]]
        assert [c["role"] for c in sts.calls] == [ROLE, ROLE] and sts.calls[0]["caller"] == "testing"
        assert used == ["ASIAFAKE1", "ASIAFAKE2"]
        built.update(settings("http://127.0.0.1:9"))


def test_a_refused_assume_role_is_the_requests_error_and_nothing_is_sent(fake):
    fake.reset()
    with FakeSTS() as sts:
        sts.deny.add(ROLE)
        built = aws.Clients(settings(fake.url, comprehend_role_arn=ROLE, sts_endpoint_url=sts.url))
        code, retryable, message = error_of(lambda: comprehend.detect(built.get("comprehend"), ["x"], "en"))
        assert (code, retryable) == ("AccessDenied", False) and "sts:AssumeRole" in message
        assert fake.stats()["requests"] == 0
        built.update(settings("http://127.0.0.1:9"))


def test_no_credentials_is_a_clear_error():
    boto = aws.Clients(settings("http://127.0.0.1:9")).get("comprehend").boto3_client
    client = LeanClient(boto, None, *aws.LEAN_OPERATIONS["comprehend"])
    code, retryable, message = error_of(lambda: comprehend.detect(client, ["x"], "en"))
    assert (code, retryable) == ("NoCredentials", False) and "no AWS credentials" in message


# ---- errors: the same ServiceError as the boto3 path ------------------------------------


@pytest.mark.parametrize("fault, spec, code, retryable", [
    ("error", {"code": "ThrottlingException"}, "ThrottlingException", True),
    ("error", {"code": "TooManyRequestsException"}, "TooManyRequestsException", True),
    ("error", {"code": "InternalServerException"}, "InternalServerException", True),
    ("error", {"code": "ServiceUnavailableException"}, "ServiceUnavailableException", True),
    ("error", {"code": "InvalidRequestException", "message": "bad"}, "InvalidRequestException", False),
    ("error", {"code": "com.amazon.coral#TextSizeLimitExceededException"}, "TextSizeLimitExceededException", False),
    ("error", {"code": "SomethingNew", "status": 429}, "SomethingNew", True),
    ("disconnect", {}, "ConnectionClosedError", True),
    ("hang", {"seconds": 3}, "Timeout", True),
])
@pytest.mark.parametrize("texts", [["one text"], ["two", "texts"]])
def test_comprehend_failures_map_like_the_boto3_path(clients, fake, fault, spec, code, retryable, texts):
    client = clients.get("comprehend")
    fake.inject(fault, 1, service="comprehend", **spec)
    lean = error_of(lambda: comprehend.detect(client, texts, "en"))
    fake.inject(fault, 1, service="comprehend", **spec)
    assert lean == boto3_error_of(lambda: detect_with_boto3(client, texts, "en"))
    assert lean[:2] == (code, retryable)
    assert comprehend.detect(client, texts, "en")  # and the next request works


@pytest.mark.parametrize("spec, code, retryable", [
    ({"code": "ValidationError"}, "ValidationError", False),
    ({"code": "ModelError"}, "ModelError", False),
    ({"code": "ModelNotReadyException"}, "ModelNotReadyException", True),
    ({"code": "InternalFailure"}, "InternalFailure", True),
    ({"code": "ServiceUnavailable"}, "ServiceUnavailable", True),
    ({"code": "InternalDependencyException"}, "InternalDependencyException", True),
])
def test_sagemaker_failures_map_like_the_boto3_path(clients, fake, spec, code, retryable):
    client = clients.get("sagemaker-runtime")
    fake.inject("error", 1, service="sagemaker", **spec)
    lean = error_of(lambda: sagemaker.invoke(client, "sum-e", ["1"], "text/csv"))
    fake.inject("error", 1, service="sagemaker", **spec)
    assert lean == boto3_error_of(lambda: client.boto3_client.invoke_endpoint(
        EndpointName="sum-e", Body=b"1\n", ContentType="text/csv", Accept="text/csv"))
    assert lean[:2] == (code, retryable)


def test_an_html_gateway_error_is_a_retryable_status_code(clients):
    recorder = Recorder((502, {"Content-Type": "text/html"}, b"<html><body>Bad Gateway</body></html>"))
    try:
        client = aws.Clients(settings(recorder.url)).get("sagemaker-runtime")
        lean = error_of(lambda: sagemaker.invoke(client, "any", ["1"], "text/csv"))
        assert lean == boto3_error_of(lambda: client.boto3_client.invoke_endpoint(
            EndpointName="any", Body=b"1\n", ContentType="text/csv", Accept="text/csv"))
        assert lean == ("502", True, "502: Bad Gateway")
        client.close()
    finally:
        recorder.close()


def test_a_refused_connection_is_retryable():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    client = aws.Clients(settings(url)).get("comprehend")
    lean = error_of(lambda: comprehend.detect(client, ["x", "y"], "en"))
    assert lean == boto3_error_of(lambda: detect_with_boto3(client, ["x", "y"], "en"))
    assert lean == ("ConnectionError", True, f"cannot connect to {url}/")


def test_a_connect_timeout_is_a_timeout():
    # A listening socket that never accepts, its backlog full: the next SYN is dropped.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        url = f"http://127.0.0.1:{server.getsockname()[1]}"
        fillers = []
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", server.getsockname()[1]))
            fillers.append(filler)
        try:
            client = aws.Clients(settings(url, connect_timeout_s="0.3")).get("comprehend")
            started = time.monotonic()
            code, retryable, message = error_of(lambda: comprehend.detect(client, ["x"], "en"))
            assert (code, retryable) == ("Timeout", True) and "ConnectTimeoutError" in message
            assert time.monotonic() - started < 2
        finally:
            for filler in fillers:
                filler.close()


def test_a_read_timeout_is_a_timeout_within_timeout_s(clients, fake):
    fake.hang_next(1, seconds=5, service="sagemaker")
    started = time.monotonic()
    code, retryable, message = error_of(lambda: sagemaker.invoke(clients.get("sagemaker-runtime"), "sum-h", ["1"],
                                                                "text/csv"))
    assert (code, retryable) == ("Timeout", True) and "ReadTimeoutError" in message
    assert time.monotonic() - started < 2.5  # timeout_s=1


@pytest.mark.parametrize("body, message", [
    ('{"ResultList": [{"Index": 0, "Sentiment": "POSI', "malformed answer (not JSON"),
    ('{"ResultList": [], "ErrorList": []}', "sent 2 texts, service accounted for 0"),
    ('{"ResultList": [{"Index": 5}], "ErrorList": []}', "result Index 5 is out of range or repeated"),
    ('{"ResultList": [], "ErrorList": [{"Index": 0}, {"Index": 0}]}', "error Index 0 is out of range or repeated"),
])
def test_malformed_batch_answers_fail_the_whole_batch(clients, fake, body, message):
    fake.malformed_next(1, body=body, service="comprehend")
    with pytest.raises(ServiceError) as err:
        comprehend.detect(clients.get("comprehend"), ["a", "b"], "en")
    assert message in err.value.sql_message and not err.value.retryable


# ---- connections ---------------------------------------------------------------------


def test_a_keep_alive_connection_closed_by_the_server_is_not_reused():
    with FakeAWS(idle_timeout=0.2) as fake:
        built = aws.Clients(settings(fake.url))
        client = built.get("comprehend")
        comprehend.detect(client, ["one"], "en")
        time.sleep(0.6)  # the fake closes the idle connection
        comprehend.detect(client, ["two"], "en")  # on a new connection, not an error
        assert fake.stats()["requests"] == 2
        built.update(settings("http://127.0.0.1:9"))


def _idle_socket(client: LeanClient) -> socket.socket:
    """The most recently pooled connection's socket (with libcurl, a duplicate of its descriptor)."""
    sock = client._connections._idle[-1].sock
    return socket.fromfd(sock, socket.AF_INET, socket.SOCK_STREAM) if isinstance(sock, int) else sock


def test_connections_are_kept_alive_with_botocores_socket_options_and_read_timeout(clients, fake, transport):
    client = clients.get("comprehend")
    assert client.transport == transport
    for text in ("one", "two", "three"):
        comprehend.detect(client, [text], "en")
    assert fake.stats()["connections"] == 1
    sock = _idle_socket(client)
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1  # tcp_keepalive=True
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    if transport == "http.client":
        assert sock.gettimeout() == 1.0  # read timeout = timeout_s
    else:
        sock.close()  # the duplicate
        assert client._connections._read_timeout_s == 1.0  # each request's read deadline


def test_idle_connections_are_bounded_by_the_pool_size(clients, fake):
    client = clients.get("comprehend")
    start = threading.Barrier(24)

    def call(i):
        start.wait()
        comprehend.detect(client, [f"text {i}"], "en")

    fake.configure(latency_ms=200)
    try:
        threads = [threading.Thread(target=call, args=(i,)) for i in range(24)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        fake.configure(latency_ms=0)
    assert fake.stats()["requests"] == 24 and fake.stats()["connections"] > 16  # more in flight than kept
    assert len(client._connections._idle) == client.boto3_client.meta.config.max_pool_connections == 16


# ---- endpoint, TLS and proxies: botocore's settings ------------------------------------


@pytest.mark.parametrize("env, comprehend_url, sagemaker_url", [
    ({}, "https://comprehend.eu-west-1.amazonaws.com", "https://runtime.sagemaker.eu-west-1.amazonaws.com"),
    ({"AWS_USE_FIPS_ENDPOINT": "true"}, "https://comprehend-fips.eu-west-1.amazonaws.com",
     "https://runtime-fips.sagemaker.eu-west-1.amazonaws.com"),
])
def test_without_an_override_the_endpoint_is_botocores_own_resolution(monkeypatch, env, comprehend_url,
                                                                      sagemaker_url):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    built = aws.Clients(config.parse({"region": "eu-west-1"}))  # nothing is sent
    assert built.get("comprehend").endpoint_url == comprehend_url
    assert built.get("sagemaker-runtime").endpoint_url == sagemaker_url
    assert built.get("sagemaker-runtime")._signing_name == "sagemaker"


def test_a_wire_format_the_service_does_not_speak_is_refused_when_built():
    boto = aws.Clients(settings("http://127.0.0.1:9")).get("sagemaker-runtime").boto3_client
    with pytest.raises(RuntimeError, match="does not speak json"):
        LeanClient(boto, None, "json", ("InvokeEndpoint",))


def _self_signed(tmp_path):
    """A certificate for localhost, its own CA, written as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def test_tls_is_verified_against_the_ca_bundle_botocore_would_use(tmp_path, monkeypatch):
    cert_file, key_file = _self_signed(tmp_path)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert_file, key_file)
    recorder = Recorder((200, {"Content-Type": "text/csv"}, b"0.5\n"), tls=tls)
    try:
        # Default bundle (certifi's): the private CA is refused, as botocore refuses it.
        client = aws.Clients(settings(recorder.url)).get("sagemaker-runtime")
        lean = error_of(lambda: sagemaker.invoke(client, "tls", ["1"], "text/csv"))
        assert lean[0] == "SSLError" and "certificate verify failed" in lean[2]
        assert boto3_error_of(lambda: client.boto3_client.invoke_endpoint(
            EndpointName="tls", Body=b"1\n", ContentType="text/csv"))[:2] == lean[:2]
        client.close()
        # AWS_CA_BUNDLE naming that CA: accepted.
        monkeypatch.setenv("AWS_CA_BUNDLE", str(cert_file))
        client = aws.Clients(settings(recorder.url)).get("sagemaker-runtime")
        assert sagemaker.invoke(client, "tls", ["1"], "text/csv") == ["0.5"]
        signature_verifies(recorder.requests[-1], "testing")
        client.close()
    finally:
        recorder.close()


def test_a_send_with_a_wait_fits_in_a_small_thread_stack_over_tls(tmp_path, monkeypatch):
    """A lone scalar call is sent from the calling server thread (engine/dispatch.py,
    attempt_inline): MariaDB gives those threads 292 KB of stack, part of it used by
    the server before our row function runs. The whole send (signing, TLS write and
    read, the answer's parsing) must fit in far less: here a 64 KiB thread."""
    cert_file, key_file = _self_signed(tmp_path)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert_file, key_file)
    recorder = Recorder((200, {"Content-Type": "text/csv"}, b"0.5\n"), tls=tls)
    monkeypatch.setenv("AWS_CA_BUNDLE", str(cert_file))
    client = aws.Clients(settings(recorder.url)).get("sagemaker-runtime")
    waited: list = []
    out: dict = {}

    def wait(sock) -> None:
        waited.append(sock)

    def send() -> None:
        try:
            out["answers"] = [sagemaker.invoke(client, "tls", [str(i)], "text/csv", wait)[0] for i in range(20)]
        except BaseException as exc:  # noqa: BLE001 - reported below
            out["error"] = repr(exc)

    try:
        assert sagemaker.invoke(client, "tls", ["0"], "text/csv") == ["0.5"]  # connects (a worker's job)
        assert client.can_send_inline()
        previous = threading.stack_size(64 * 1024)
        try:
            thread = threading.Thread(target=send)
            thread.start()
        finally:
            threading.stack_size(previous)
        thread.join(30)
        assert out == {"answers": ["0.5"] * 20}, out
        socket_type = ssl.SSLSocket if client.transport == "http.client" else int  # libcurl's descriptor
        assert len(waited) == 20 and all(isinstance(sock, socket_type) for sock in waited)
    finally:
        client.close()
        recorder.close()


def test_a_callable_wait_is_given_the_connections_own_socket():
    """wait(sock) polls that socket for the answer: it must be the connection to the
    service (libcurl 8, in MySQL 9.7's process, also watches a wakeup socket of its own,
    which no answer ever makes readable: every inline request then waited out timeout_s)."""
    recorder = Recorder((200, {"Content-Type": "text/csv"}, b"0.5\n"))
    client = aws.Clients(settings(recorder.url)).get("sagemaker-runtime")
    peers: list = []

    def wait(sock) -> float:
        fd = sock if isinstance(sock, int) else sock.fileno()
        with socket.socket(fileno=os.dup(fd)) as conn:
            peers.append(conn.getpeername()[1])
        return 5.0

    try:
        assert sagemaker.invoke(client, "own-socket", ["1"], "text/csv") == ["0.5"]  # a kept-alive connection
        started = time.monotonic()
        assert [sagemaker.invoke(client, "own-socket", [str(i)], "text/csv", wait)[0] for i in range(3)] == ["0.5"] * 3
        assert peers == [recorder.port] * 3
        assert time.monotonic() - started < 1.0
    finally:
        client.close()
        recorder.close()


def test_a_send_with_a_wait_uses_only_a_kept_alive_connection():
    """With a wait, nothing is sent unless a kept-alive connection is there: a new one
    would be opened under the connect timeout, which no KILL can cut short."""
    recorder = Recorder((200, {"Content-Type": "text/csv"}, b"0.5\n"))
    client = aws.Clients(settings(recorder.url)).get("sagemaker-runtime")
    try:
        assert not client.can_send_inline()
        with pytest.raises(NoIdleConnection):
            sagemaker.invoke(client, "cold", ["1"], "text/csv", lambda sock: None)
        assert recorder.requests == []
        assert sagemaker.invoke(client, "cold", ["1"], "text/csv") == ["0.5"]
        assert client.can_send_inline()

        def refuse(sock):  # a wait that gives up (a KILL): the connection cannot be reused
            raise TimeoutError("stopped waiting")

        with pytest.raises(ServiceError):
            sagemaker.invoke(client, "cold", ["2"], "text/csv", refuse)
        assert not client.can_send_inline()
    finally:
        client.close()
        recorder.close()


def test_a_send_with_a_wait_reads_a_slow_answer_within_the_callers_budget():
    """wait() returns the seconds left before the caller's deadline: an answer whose body
    trickles in after its head cannot keep the calling thread past them (the read
    timeout, timeout_s, would)."""
    recorder = Recorder((200, {"Content-Type": "text/csv"}, b"0.5\n"))
    client = aws.Clients(settings(recorder.url)).get("sagemaker-runtime")
    try:
        assert sagemaker.invoke(client, "slow", ["1"], "text/csv") == ["0.5"]  # a kept-alive connection
        recorder.trickle_s = 3.0
        started = time.monotonic()
        with pytest.raises(ServiceError) as failed:
            sagemaker.invoke(client, "slow", ["2"], "text/csv", lambda sock: 0.3)
        assert time.monotonic() - started < 2.0
        assert failed.value.code == "Timeout"
        assert not client.can_send_inline()  # that connection is gone, not reused half read
        recorder.trickle_s = 0.0
        assert sagemaker.invoke(client, "slow", ["3"], "text/csv") == ["0.5"]
        assert sagemaker.invoke(client, "slow", ["4"], "text/csv", lambda sock: 5.0) == ["0.5"]
        assert client.can_send_inline()  # and the read timeout is back on the kept one
        if client.transport == "http.client":
            assert client._connections._idle[-1].sock.gettimeout() == client._connections._read_timeout_s
    finally:
        client.close()
        recorder.close()


def test_an_idle_connection_keeps_no_answer_alive():
    """A kept-alive connection idling in the pool must not hold its last answer: those
    objects would pin their allocator arenas after the cache is cleared (lean._forget_response)."""
    recorder = Recorder((200, {"Content-Type": "text/csv"}, b"0.5\n"))
    client = aws.Clients(settings(recorder.url)).get("sagemaker-runtime")
    try:
        # http.client itself keeps it, under this name: if it ever stops, so does the fix.
        plain = http.client.HTTPConnection("127.0.0.1", recorder.port)
        plain.request("POST", "/endpoints/idle/invocations", body=b"1\n")
        plain.getresponse().read()
        assert getattr(plain, lean._LAST_RESPONSE) is not None
        plain.close()
        assert sagemaker.invoke(client, "idle", ["1"], "text/csv") == ["0.5"]
        idle = client._connections._idle[-1]
        if client.transport == "http.client":
            assert hasattr(idle, lean._LAST_RESPONSE) and getattr(idle, lean._LAST_RESPONSE) is None
        assert sagemaker.invoke(client, "idle", ["2"], "text/csv") == ["0.5"]  # and it carries the next request
        assert client._connections._idle[-1] is idle
        if client.transport == "curl":  # a large answer's C buffer is given back once it is read
            recorder.answer = (200, {"Content-Type": "text/csv"}, b"0.5" + b" " * (4 << 20) + b"\n")
            assert [a.strip() for a in sagemaker.invoke(client, "idle", ["3"], "text/csv")] == ["0.5"]
            assert client._connections._idle[-1] is idle and idle.buffered <= 65536, idle.buffered
    finally:
        client.close()
        recorder.close()


def test_an_endpoint_behind_a_proxy_is_sent_through_botocores_http_session(monkeypatch):
    proxy = Recorder((200, {"Content-Type": "text/csv"}, b"0.5\n"))
    try:
        with socket.socket() as probe:  # the endpoint itself is not listening
            probe.bind(("127.0.0.1", 0))
            url = f"http://127.0.0.1:{probe.getsockname()[1]}"
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        client = aws.Clients(settings(url)).get("sagemaker-runtime")
        assert sagemaker.invoke(client, "proxied", ["1"], "text/csv") == ["0.5"]
        assert proxy.requests[-1]["path"] == f"{url}/endpoints/proxied/invocations"  # absolute-form: a proxy request
        assert signature_verifies({**proxy.requests[-1], "path": "/endpoints/proxied/invocations"}, "testing")
        client.close()
    finally:
        proxy.close()


class _CountingSocket:
    """A connection's socket that records each write (the rest goes to the socket)."""

    def __init__(self, sock):
        self._sock = sock
        self.writes: list[bytes] = []

    def sendall(self, data) -> None:
        self.writes.append(bytes(data))
        self._sock.sendall(data)

    def __getattr__(self, name):
        return getattr(self._sock, name)


def test_a_small_request_goes_out_in_one_write_and_a_large_body_after_its_head(monkeypatch):
    """Head and body in one write: two writes on a TCP_NODELAY socket are two segments
    and two wake-ups of the service per row on the scalar path. (http.client's own
    writes, whichever transport the test was given: libcurl sends a small request in
    one piece itself.)"""
    monkeypatch.setattr(lean, "TRANSPORT", "http.client")
    recorder = Recorder((200, {"Content-Type": "text/csv"}, b"0.5\n"))
    client = aws.Clients(settings(recorder.url)).get("sagemaker-runtime")
    try:
        assert sagemaker.invoke(client, "one-write", ["1"], "text/csv") == ["0.5"]  # a kept-alive connection
        conn = client._connections._idle[-1]
        conn.sock = counting = _CountingSocket(conn.sock)
        assert sagemaker.invoke(client, "one-write", ["2"], "text/csv", lambda sock: None) == ["0.5"]
        assert len(counting.writes) == 1
        assert counting.writes[0].startswith(b"POST /endpoints/one-write/invocations HTTP/1.1\r\n")
        assert counting.writes[0].endswith(b"\r\n\r\n2\n")
        assert recorder.requests[-1]["body"] == b"2\n"
        # A batch's body is not copied to join its head: written after it, as http.client does.
        big = "9" * (lean.ONE_WRITE_MAX_BYTES + 1)
        counting.writes.clear()
        recorder.answer = (200, {"Content-Type": "text/csv"}, b"0.5\n")
        assert sagemaker.invoke(client, "one-write", [big], "text/csv") == ["0.5"]
        assert [w.endswith(b"\r\n\r\n") for w in counting.writes] == [True, False]
        assert recorder.requests[-1]["body"] == big.encode() + b"\n"
    finally:
        client.close()
        recorder.close()


# ---- libcurl's own parts ------------------------------------------------------------------


def test_curl_link_is_linked_against_the_system_libcurl():
    """sqlml._curl_link uses the system's libcurl and OpenSSL, the ones the server
    itself loads: never a second copy bundled in a wheel."""
    assert lean.curl_link is not None, lean._CURL_LINK_PROBLEM
    with open("/proc/self/maps") as maps:
        loaded = {line.split()[-1] for line in maps if "libcurl" in line or "libssl" in line}
    assert any("libcurl" in path for path in loaded), loaded
    assert all(path.startswith(("/lib/x86_64-linux-gnu/", "/usr/lib/x86_64-linux-gnu/")) for path in loaded), loaded
    assert "pycurl" not in sys.modules


def test_only_the_signed_headers_and_the_framing_go_on_the_wire(transport):
    """No header of libcurl's own (Expect: 100-continue, Accept: */*, a form Content-Type)
    and no Accept-Encoding of its choosing: what arrives is what was signed, the
    User-Agent, the Authorization and the Content-Length (http.client adds
    Accept-Encoding: identity)."""
    recorder = Recorder((200, {"Content-Type": "text/csv"}, b"0.5\n"))
    client = aws.Clients(settings(recorder.url)).get("sagemaker-runtime")
    try:
        assert sagemaker.invoke(client, "wire", ["1"], "text/csv") == ["0.5"]
        request = recorder.requests[-1]
        auth = signature_verifies(request, "testing")
        arrived = {name.lower() for name in request["headers"]}
        expected = {*auth["signed"].split(";"), "user-agent", "authorization", "content-length"}
        if transport == "http.client":
            expected.add("accept-encoding")
        assert arrived == expected
        assert request["body"] == b"1\n"
    finally:
        client.close()
        recorder.close()


def test_a_large_body_goes_out_whole_with_a_wait():
    """A body larger than the socket's buffers is written in several pieces before the
    wait for the answer starts (a wait polls for the answer only)."""
    recorder = Recorder((200, {"Content-Type": "text/csv"}, b"0.5\n"))
    client = aws.Clients(settings(recorder.url)).get("sagemaker-runtime")
    try:
        assert sagemaker.invoke(client, "big", ["1"], "text/csv") == ["0.5"]  # a kept-alive connection
        big = "7" * (4 << 20)
        started = time.monotonic()
        assert sagemaker.invoke(client, "big", [big], "text/csv", lambda sock: 5.0) == ["0.5"]
        assert time.monotonic() - started < 3
        assert recorder.requests[-1]["body"] == big.encode() + b"\n"
    finally:
        client.close()
        recorder.close()


def test_requests_are_quick_on_a_descriptor_past_1024(clients, fake):
    """A server process holds many descriptors: a connection's socket numbered past
    select()'s 1024 is waited on as quickly as any (poll, not CurlMulti.select)."""
    fillers = [os.dup(0) for _ in range(1100)]
    try:
        client = clients.get("sagemaker-runtime")
        started = time.monotonic()
        for i in range(20):
            assert sagemaker.invoke(client, "sum-fds", [f"{i},1"], "text/csv") == [f"{i + 1}.0"]
        assert time.monotonic() - started < 1.0  # a select() blind to the socket would wait out each slice
        sock = client._connections._idle[-1].sock
        assert (sock if isinstance(sock, int) else sock.fileno()) > 1024
    finally:
        for fd in fillers:
            os.close(fd)


# ---- signing: awscrt signs exactly as botocore ----------------------------------------------


@pytest.mark.parametrize("token", [None, "FwoGZXIvYXdzE+temporary/token=="])
@pytest.mark.parametrize("service, operation, path, headers", [
    ("comprehend", "DetectSentiment", "/", {"X-Amz-Target": "Comprehend_20171127.DetectSentiment",
                                            "Content-Type": "application/x-amz-json-1.1"}),
    ("comprehend", "BatchDetectSentiment", "/", {"X-Amz-Target": "Comprehend_20171127.BatchDetectSentiment",
                                                 "Content-Type": "application/x-amz-json-1.1"}),
    ("sagemaker-runtime", "InvokeEndpoint", "/endpoints/my-model.v2_x/invocations",
     {"Content-Type": "text/csv", "Accept": "application/json"}),
    ("sagemaker-runtime", "InvokeEndpoint", "/endpoints/x%20y/invocations",
     {"Content-Type": " text/csv;  charset=utf-8 ", "Accept": "text/csv"}),
])
def test_awscrt_signs_as_botocore_signs(monkeypatch, token, service, operation, path, headers):
    """Same request, same time: the same X-Amz-Date, session token and Authorization
    from lean._crt_sign as from botocore's SigV4Auth (the signer the lean path replaced)."""
    assert lean.crt_auth is not None, "awscrt is a dependency (pyproject.toml)"
    when = datetime.datetime(2026, 12, 4, 19, 40, 1, tzinfo=datetime.timezone.utc)
    monkeypatch.setattr("botocore.auth.get_current_datetime", lambda: when.replace(tzinfo=None))
    client = aws.Clients(config.parse({"region": "eu-west-1"})).get(service)  # nothing is sent
    credentials = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    body = '{"Text":"Schön, très bien 😀","LanguageCode":"de"}'.encode() if service == "comprehend" else b"1,2\n"
    full = {**client._extra_headers[operation], "Host": client._host_header, **headers}
    by_botocore = AWSRequest(method="POST", url=client.endpoint_url + path, data=body, headers=full)
    lean._SigV4Auth(credentials, client._signing_name, client._region).add_auth(by_botocore)
    by_crt = dict(lean._crt_sign(path, full, body, credentials, client._signing_name, client._region, when))
    assert by_crt == dict(by_botocore.headers.items())
    assert ("X-Amz-Security-Token" in by_crt) == (token is not None)


# ---- the object form of wait: deadline and check(), waited on in C ------------------------


class KillStub(Exception):
    """What the engine's check() raises for a KILL (engine/dispatch.py's QueryKilled)."""


class Waiter:
    """The object form of a wait: records each check(expired); raises KillStub at the
    stop_at-th call if asked to."""

    def __init__(self, timeout_s: float, slice_s: float = 0.1, stop_at: int | None = None):
        self.deadline = time.monotonic() + timeout_s
        self.slice_s = slice_s
        self.checks: list[tuple[float, bool]] = []
        self._stop_at = stop_at

    def check(self, expired: bool) -> None:
        self.checks.append((time.monotonic(), expired))
        if self._stop_at is not None and len(self.checks) >= self._stop_at:
            raise KillStub("query killed")


def test_an_answer_within_the_first_slice_never_calls_check(clients, fake):
    """The common case on the scalar path: the answer arrives within the first slice, so
    the wait costs no Python at all (with libcurl: the whole wait is in C)."""
    client = clients.get("sagemaker-runtime")
    assert sagemaker.invoke(client, "sum-w", ["0,1"], "text/csv") == ["1.0"]  # a kept-alive connection
    waiters = [Waiter(5.0) for _ in range(20)]
    answers = [sagemaker.invoke(client, "sum-w", [f"{i},1"], "text/csv", w)[0] for i, w in enumerate(waiters)]
    assert answers == [f"{i + 1}.0" for i in range(20)]
    assert [w.checks for w in waiters] == [[]] * 20
    assert fake.stats()["connections"] == 1


def test_a_slow_answer_calls_check_once_per_slice(clients, fake):
    client = clients.get("sagemaker-runtime")
    assert sagemaker.invoke(client, "sum-s", ["0,1"], "text/csv") == ["1.0"]
    fake.configure(latency_ms=550)
    try:
        waiter = Waiter(5.0, slice_s=0.1)
        assert sagemaker.invoke(client, "sum-s", ["2,1"], "text/csv", waiter) == ["3.0"]
    finally:
        fake.configure(latency_ms=0)
    assert 4 <= len(waiter.checks) <= 6, waiter.checks  # 550 ms in 100 ms slices
    assert not any(expired for _, expired in waiter.checks)
    gaps = [b - a for (a, _), (b, _) in zip(waiter.checks, waiter.checks[1:], strict=False)]
    assert all(0.08 <= gap <= 0.2 for gap in gaps), gaps
    assert client.can_send_inline()  # answered: the connection is kept


def test_a_raise_in_check_stops_the_request_within_a_slice_and_closes_the_connection(clients, fake):
    client = clients.get("sagemaker-runtime")
    assert sagemaker.invoke(client, "sum-k", ["0,1"], "text/csv") == ["1.0"]
    fake.configure(latency_ms=3000)
    try:
        waiter = Waiter(10.0, slice_s=0.1, stop_at=3)
        started = time.monotonic()
        with pytest.raises(KillStub):
            sagemaker.invoke(client, "sum-k", ["2,1"], "text/csv", waiter)
        elapsed = time.monotonic() - started
    finally:
        fake.configure(latency_ms=0)
    assert len(waiter.checks) == 3
    assert 0.28 <= elapsed <= 0.45, elapsed  # three slices, then stopped at once
    assert not client.can_send_inline()  # its answer may still come: never reused


def test_an_object_wait_past_its_deadline_is_a_timeout(clients, fake):
    """check(True) once the deadline passed; if it lets the request go on, it is a timeout."""
    client = clients.get("sagemaker-runtime")
    assert sagemaker.invoke(client, "sum-d", ["0,1"], "text/csv") == ["1.0"]
    fake.configure(latency_ms=2000)
    try:
        waiter = Waiter(0.25, slice_s=0.1)
        started = time.monotonic()
        code, retryable, _ = error_of(lambda: sagemaker.invoke(client, "sum-d", ["2,1"], "text/csv", waiter))
        elapsed = time.monotonic() - started
    finally:
        fake.configure(latency_ms=0)
    assert (code, retryable) == ("Timeout", True)
    assert elapsed < 0.5, elapsed
    assert waiter.checks and waiter.checks[-1][1] is True and not any(e for _, e in waiter.checks[:-1])
    assert not client.can_send_inline()


# ---- sqlml._curl_link's Link on its own ------------------------------------------------------


def _link():
    return lean.curl_link.Link(1000, [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])


def test_a_link_used_from_two_threads_at_once_raises_instead_of_sharing_the_handle():
    recorder = Recorder((200, {"Content-Type": "text/csv"}, b"0.5\n"))
    recorder.trickle_s = 0.5
    link = _link()
    out: dict = {}

    def first() -> None:
        out["answer"] = link.post(recorder.url + "/a", b"1\n", [], 1.0, 5.0)

    try:
        thread = threading.Thread(target=first)
        thread.start()
        time.sleep(0.2)  # the first post is waiting for its answer, the GIL released
        with pytest.raises(RuntimeError, match="in use by another thread"):
            link.post(recorder.url + "/b", b"2\n", [], 1.0, 5.0)
        with pytest.raises(RuntimeError, match="post is running"):
            link.close()
        thread.join(5)
        assert out["answer"][0] == 200 and out["answer"][3] == b"0.5\n"
        assert [r["body"] for r in recorder.requests] == [b"1\n"]  # the refused one sent nothing
        recorder.trickle_s = 0.0
        assert link.post(recorder.url + "/c", b"3\n", [], 1.0, 5.0)[0] == 200  # and it is free again
    finally:
        link.close()
        recorder.close()


@pytest.mark.parametrize("call, error, message", [
    (lambda link, url: link.post(url, b"x", ["X-Evil: a\r\nX-Smuggled: b"], 1.0, 1.0), ValueError, "CR or LF"),
    (lambda link, url: link.post(url, b"x", ["X-A: é"], 1.0, 1.0), ValueError, "ASCII"),
    (lambda link, url: link.post(url, b"x", [b"X-A: b"], 1.0, 1.0), TypeError, "must be str"),
    (lambda link, url: link.post(url, "text", [], 1.0, 1.0), TypeError, "bytes-like"),
    (lambda link, url: link.post(url, b"x", [], float("nan"), 1.0), ValueError, "connect_s"),
    (lambda link, url: link.post(url, b"x", [], 1.0, 1.0, 42), TypeError, "wait must be"),
    (lambda link, url: link.post(url, b"x", [], 1.0, 1.0, None, "aws:amz:r:s"), ValueError, "go together"),
    (lambda link, url: lean.curl_link.Link(0, []), ValueError, "connect_timeout_ms"),
    (lambda link, url: lean.curl_link.Link(1000, [("a", 1, 1)]), TypeError, "socket option"),
    (lambda link, url: lean.curl_link.Link(1000, [], ("ca", True)), TypeError, "tls"),
])
def test_bad_arguments_to_a_link_raise_and_send_nothing(call, error, message):
    recorder = Recorder((200, {"Content-Type": "text/csv"}, b"0.5\n"))
    link = _link()
    try:
        with pytest.raises(error, match=message):
            call(link, recorder.url + "/x")
        assert recorder.requests == []
        assert link.post(recorder.url + "/x", b"1\n", [], 1.0, 1.0)[0] == 200  # the Link is still usable
        link.close()
        link.close()  # again: nothing
        with pytest.raises(ValueError, match="closed"):
            link.post(recorder.url + "/x", b"1\n", [], 1.0, 1.0)
        assert not link.is_open() and link.sock == -1 and not link.dropped()
    finally:
        link.close()
        recorder.close()


# ---- libcurl's own SigV4 (lean.CURL_SIGNS), against botocore's ---------------------------------


class RawRecorder:
    """A socket server that keeps each request's raw bytes and answers 200 with a CSV body."""

    def __init__(self):
        self.raw: list[bytes] = []
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head = data.split(b"\r\n\r\n", 1)[0]
                length = int(re.search(rb"(?i)\r\ncontent-length: *(\d+)", head).group(1))
                while len(data) < len(head) + 4 + length:
                    data += conn.recv(65536)
                self.raw.append(data)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/csv\r\nContent-Length: 4\r\n"
                             b"Connection: close\r\n\r\n0.5\n")

    def request(self, i: int = -1) -> tuple[str, dict[str, str], bytes]:
        """(path, headers by lower-case name, body) of a recorded request."""
        head, body = self.raw[i].split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return lines[0].split(" ")[1], headers, body

    def close(self) -> None:
        self._server.close()


@pytest.mark.parametrize("token", [None, "FwoGZXIvYXdzE+temporary/token=="])
@pytest.mark.parametrize("service", ["sagemaker-runtime", "comprehend"])
def test_libcurls_signature_equals_botocores(monkeypatch, service, token):
    """lean.CURL_SIGNS: libcurl signs (CURLOPT_AWS_SIGV4). The exact bytes it sent, signed
    again by botocore's SigV4Auth at the X-Amz-Date libcurl used: the same Authorization.
    (libcurl 7.88 signs every header line it is given, a removal line such as 'Expect:'
    included, as an empty header it never sends; lean sends none when libcurl signs.)"""
    monkeypatch.setattr(lean, "CURL_SIGNS", True)
    monkeypatch.setattr(lean, "TRANSPORT", "curl")
    recorder = RawRecorder()
    try:
        boto = aws.Clients(settings(recorder.url, region="eu-west-1")).get(service).boto3_client
        client = LeanClient(boto, Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token),
                            *aws.LEAN_OPERATIONS[service])
        if service == "comprehend":
            body = json.dumps({"Text": "Schön, très bien 😀", "LanguageCode": "de"}).encode()
            client.send("DetectSentiment", "/", body, {"X-Amz-Target": "Comprehend_20171127.DetectSentiment",
                                                       "Content-Type": "application/x-amz-json-1.1"})
        else:
            assert sagemaker.invoke(client, "my-model-v2", ["1,x y"], "text/csv") == ["0.5"]
        path, arrived, body = recorder.request()
        when = datetime.datetime.strptime(arrived["x-amz-date"], "%Y%m%dT%H%M%SZ")
        monkeypatch.setattr("botocore.auth.get_current_datetime", lambda: when)
        skip = {"authorization", "x-amz-date", "content-length", "user-agent", "accept" if service == "comprehend"
                else "-"}
        by_botocore = AWSRequest(method="POST", url=recorder.url + path, data=body,
                                 headers={n: v for n, v in arrived.items() if n not in skip})
        SigV4Auth(Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token),
                  client._signing_name, "eu-west-1").add_auth(by_botocore)
        assert arrived["authorization"] == by_botocore.headers["Authorization"]
        signed = {"sagemaker-runtime": ["accept", "content-type", "host", "x-amz-date"],
                  "comprehend": ["content-type", "host", "x-amz-date", "x-amz-target"]}[service]
        signed += ["x-amz-security-token"] if token else []
        assert f"SignedHeaders={';'.join(sorted(signed))}," in arrived["authorization"]
        assert arrived.get("x-amz-security-token") == token
        assert arrived["user-agent"] == lean.USER_AGENT and "expect" not in arrived
        if service == "comprehend":  # libcurl's default, unsigned (botocore sends none)
            assert arrived["accept"] == "*/*"
        client.close()
    finally:
        recorder.close()


@pytest.mark.parametrize("case", ["scalar", "large body", "base path botocore would normalize"])
def test_libcurl_signs_only_small_requests_to_plain_paths(monkeypatch, case):
    """Who signs (lean.CURL_SIGNS): libcurl, a request up to CURL_SIGN_MAX_BODY_BYTES to a
    path botocore would sign as it is; lean's own signer any other (a batch's large body,
    a custom endpoint URL whose path botocore would encode or normalize)."""
    monkeypatch.setattr(lean, "TRANSPORT", "curl")
    signed_by_lean = []
    crt_sign = lean._crt_sign
    monkeypatch.setattr(lean, "_crt_sign", lambda *args, **kw: signed_by_lean.append(args[0]) or crt_sign(*args, **kw))
    recorder = RawRecorder()
    try:
        base = "/base//v1" if case.startswith("base path") else ""
        boto = aws.Clients(settings(recorder.url + base)).get("sagemaker-runtime").boto3_client
        client = LeanClient(boto, Credentials("AKIDEXAMPLE", "secret"), *aws.LEAN_OPERATIONS["sagemaker-runtime"])
        body = b"1\n" * (lean.CURL_SIGN_MAX_BODY_BYTES // 2 + 1) if case == "large body" else b"1\n"
        reply = client.send("InvokeEndpoint", "/endpoints/m/invocations", body,
                            {"Content-Type": "text/csv", "Accept": "text/csv"})
        assert reply.status == 200
        path, arrived, sent = recorder.request()
        assert sent == body and path == base + "/endpoints/m/invocations"
        assert signed_by_lean == ([] if case == "scalar" else [path])
        assert "SignedHeaders=accept;content-type;host;x-amz-date," in arrived["authorization"]
        client.close()
    finally:
        recorder.close()


def test_a_request_shape_is_kept_per_client_and_bounded(monkeypatch):
    """LeanClient.shape: the same operation, path and headers give the same Shape (a
    statement of one row asks for it once, not its parts); other headers another; the
    kept shapes never exceed MAX_SHAPES."""
    boto = aws.Clients(settings("http://127.0.0.1:9")).get("sagemaker-runtime").boto3_client
    client = LeanClient(boto, Credentials("AKIDEXAMPLE", "secret"), *aws.LEAN_OPERATIONS["sagemaker-runtime"])
    csv = {"Content-Type": "text/csv", "Accept": "text/csv"}
    first = client.shape("InvokeEndpoint", "/endpoints/a/invocations", csv)
    assert client.shape("InvokeEndpoint", "/endpoints/a/invocations", dict(csv)) is first
    other = client.shape("InvokeEndpoint", "/endpoints/a/invocations", {**csv, "Accept": "application/json"})
    assert other is not first and other.headers["Accept"] == "application/json"
    monkeypatch.setattr(lean, "MAX_SHAPES", 4)
    for i in range(10):
        client.shape("InvokeEndpoint", f"/endpoints/e{i}/invocations", csv)
        assert len(client._shapes) <= 4
    client.close()
