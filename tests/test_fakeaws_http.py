"""The fake's HTTP/1.1 layer on a raw socket: tests/doubles/fakeaws reads request headers
with its own small reader (http.client.parse_headers' email.parser pass was a third of its
CPU per request), so these pin what that reader must keep doing as http.server did:
case-insensitive names, the first of repeated fields, bodies by Content-Length, keep-alive
and Connection: close, Expect: 100-continue, obs-fold, and the 431 / 400 answers.
Everything talks to 127.0.0.1 only."""

import json
import socket

import pytest

from tests.doubles.fakeaws import FakeAWS

AUTH = ("AWS4-HMAC-SHA256 Credential=AKIDHTTP/20260101/eu-west-1/sagemaker/aws4_request, "
        "SignedHeaders=host, Signature=00")


@pytest.fixture(scope="module")
def fake():
    with FakeAWS() as f:
        yield f


@pytest.fixture(autouse=True)
def _reset(fake):
    fake.reset()
    yield


class Conn:
    """One raw TCP connection that sends bytes and reads HTTP/1.1 answers off it."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        self.buf += chunk
        return bool(chunk)

    def answer(self) -> tuple[int, dict, bytes]:
        """(status, {lower-cased name: value}, body) of the next answer."""
        while b"\r\n\r\n" not in self.buf:
            assert self._fill(), "connection closed before an answer: %r" % self.buf
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("iso-8859-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(self.buf) < length:
            assert self._fill(), "connection closed inside a body"
        body, self.buf = self.buf[:length], self.buf[length:]
        return status, headers, body

    def closed_by_peer(self) -> bool:
        """True when the fake closed its side (recv returns EOF)."""
        try:
            return self.buf == b"" and self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def conn(fake):
    c = Conn(fake.port)
    yield c
    c.close()


def invocation(body: bytes, *header_lines: str, endpoint: str = "sum-a", version: str = "HTTP/1.1") -> bytes:
    head = ["POST /endpoints/%s/invocations %s" % (endpoint, version), "Host: 127.0.0.1", *header_lines,
            "Content-Length: %d" % len(body)]
    return ("\r\n".join(head) + "\r\n\r\n").encode("iso-8859-1") + body


def test_kept_alive_bodies_by_content_length_and_lower_case_names(fake, conn):
    # two requests in one send: each body ends where its Content-Length says
    conn.send(invocation(b"1,2\n", "content-type: text/csv", "authorization: " + AUTH)
              + invocation(b"3,4\n5\n", "CONTENT-TYPE: text/csv", "AUTHORIZATION: " + AUTH))
    assert conn.answer()[::2] == (200, b"3.0\n")
    status, headers, body = conn.answer()
    assert (status, body) == (200, b"7.0\n5.0\n")
    assert "connection" not in headers
    st = fake.stats()
    assert st["connections"] == 1 and st["items"]["sagemaker"] == [1, 2]
    assert [e["content_type"] for e in st["log"]] == ["text/csv", "text/csv"]
    assert [(e["access_key"], e["region"]) for e in st["log"]] == [("AKIDHTTP", "eu-west-1")] * 2


def test_repeated_field_first_one_counts(fake, conn):
    conn.send(invocation(b"1\n", "Content-Type: text/csv", "Content-Type: application/json",
                         "Authorization: " + AUTH))
    assert conn.answer()[::2] == (200, b"1.0\n")
    conn.send(invocation(b"1\n", "Content-Type: text/csv", "Authorization: Basic eDp5",
                         "Authorization: " + AUTH))
    status, headers, body = conn.answer()
    assert status == 403 and json.loads(body) == {"message": "Missing Authentication Token"}
    assert fake.stats()["log"][0]["content_type"] == "text/csv"


def test_missing_auth_refused(conn):
    conn.send(invocation(b"1\n", "Content-Type: text/csv"))
    status, headers, _ = conn.answer()
    assert status == 403 and headers["x-amzn-errortype"].startswith("MissingAuthenticationTokenException:")


def test_obs_fold_continues_the_previous_value(fake, conn):
    conn.send(invocation(b"1\n", "Content-Type: text/csv", "Authorization: AWS4-HMAC-SHA256",
                         " Credential=AKIDFOLD/20260101/us-west-2/sagemaker/aws4_request"))
    assert conn.answer()[0] == 200
    assert fake.stats()["log"][0]["access_key"] == "AKIDFOLD"


def test_connection_close_answers_and_closes(conn):
    conn.send(invocation(b"1\n", "Content-Type: text/csv", "Authorization: " + AUTH, "Connection: Close"))
    status, headers, body = conn.answer()
    assert (status, body, headers["connection"]) == (200, b"1.0\n", "close")
    assert conn.closed_by_peer()


def test_http10_closes_unless_keep_alive(conn, fake):
    conn.send(invocation(b"1\n", "Content-Type: text/csv", "Authorization: " + AUTH, "Connection: keep-alive",
                         version="HTTP/1.0"))
    assert conn.answer()[0] == 200
    conn.send(invocation(b"2\n", "Content-Type: text/csv", "Authorization: " + AUTH, version="HTTP/1.0"))
    status, headers, body = conn.answer()
    assert (status, body, headers["connection"]) == (200, b"2.0\n", "close")
    assert conn.closed_by_peer()
    assert fake.stats()["connections"] == 1


def test_expect_100_continue(conn):
    body = b"1,1\n"
    conn.send(invocation(b"", "Content-Type: text/csv", "Authorization: " + AUTH, "Expect: 100-continue")
              .replace(b"Content-Length: 0", b"Content-Length: %d" % len(body)))
    assert conn.answer()[0] == 100
    conn.send(body)
    assert conn.answer()[::2] == (200, b"2.0\n")


def test_too_many_headers_is_431(conn):
    conn.send(invocation(b"1\n", *("X-Pad-%d: x" % i for i in range(120))))
    status, _, body = conn.answer()
    assert status == 431 and b"Too many headers" in body


def test_header_line_too_long_is_431(conn):
    conn.send(invocation(b"1\n", "X-Pad: " + "x" * 70000))
    status, _, body = conn.answer()
    assert status == 431 and b"Line too long" in body


def test_bad_request_lines_get_the_stdlib_answers(fake):
    for line, code in ((b"POST /endpoints/sum-a/invocations HTTP/2.0", 505),
                       (b"POST /endpoints/sum-a/invocations HTTP/1.x", 400),
                       (b"POST too many words HTTP/1.1", 400)):
        c = Conn(fake.port)
        try:
            c.send(line + b"\r\nHost: 127.0.0.1\r\n\r\n")
            while c._fill():  # http.server answers (status line or HTML page only) and closes
                pass
            assert b"Error code: %d" % code in c.buf, (line, c.buf)
        finally:
            c.close()


def test_log_keeps_the_last_log_limit_entries(fake, conn):
    # the request log is a bounded deque now; it must keep the newest entries, follow a
    # changed limit, and stop growing at 0, as the list it replaced did
    def send(n: int, first: int) -> None:
        for i in range(first, first + n):
            conn.send(invocation(b"%d\n" % i, "Content-Type: text/csv", "Authorization: " + AUTH))
            assert conn.answer()[0] == 200

    fake.configure(log_limit=3)
    send(5, 0)
    assert [e["seq"] for e in fake.stats()["log"]] == [3, 4, 5]
    fake.configure(log_limit=2)
    send(1, 5)
    assert [e["seq"] for e in fake.stats()["log"]] == [5, 6]
    fake.configure(log_limit=0)
    send(2, 6)
    st = fake.stats()
    assert [e["seq"] for e in st["log"]] == [5, 6] and st["requests"] == 8


def test_connection_threads_are_reused_and_end_with_the_fake():
    # the server keeps a finished connection's thread for the next connection; concurrent
    # connections still get a thread each, and stop() ends the idle ones (how many workers
    # there are in between depends on timing: a connection may come before one is idle)
    import threading
    import time

    before = threading.active_count()
    with FakeAWS() as f:
        for i in range(5):  # one after the other
            c = Conn(f.port)
            c.send(invocation(b"%d\n" % i, "Content-Type: text/csv", "Authorization: " + AUTH))
            assert c.answer()[::2] == (200, b"%d.0\n" % i)
            c.close()
        pair = [Conn(f.port), Conn(f.port)]  # both open at once: both answered
        for c in pair:
            c.send(invocation(b"1\n", "Content-Type: text/csv", "Authorization: " + AUTH))
        assert [c.answer()[0] for c in pair] == [200, 200]
        for c in pair:
            c.close()
        assert f.stats()["connections"] == 7
    deadline = time.monotonic() + 5
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert threading.active_count() == before
