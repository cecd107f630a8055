"""A fault-injecting S3 front for tests: forwards every request to moto's S3, except
the UploadPart requests it is told to fail or slow down.

moto implements S3 (multipart upload included) but cannot inject faults; this stub sits
between the server's sqlml.so and moto on 127.0.0.1 and fails, for example, the 2nd
UploadPart with a 500 once (a retried blip) or with a 403 for good (a failed export).
It counts what it saw so tests can assert that a failure really happened mid-upload.
"""

from __future__ import annotations

import http.client
import http.server
import threading
import time
import urllib.parse
from dataclasses import dataclass, field

FAILURE_BODIES = {
    500: b"<Error><Code>InternalError</Code><Message>injected by the test stub</Message></Error>",
    403: b"<Error><Code>AccessDenied</Code><Message>injected by the test stub</Message></Error>",
}


@dataclass
class Faults:
    fail_part_from: int | None = None  # fail UploadPart calls numbered >= this (1-based, counted across uploads)
    fail_status: int = 500
    fail_times: int = 1_000_000        # how many matching calls fail
    part_delay_s: float = 0.0
    lose_complete_replies: int = 0     # forward CompleteMultipartUpload, then answer 500 instead
    seen: dict = field(default_factory=dict)   # operation -> count
    failed: int = 0


class S3Stub:
    def __init__(self, upstream: str):
        self.upstream = urllib.parse.urlsplit(upstream)
        self.faults = Faults()
        self._lock = threading.Lock()
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _forward(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query, keep_blank_values=True)
                kind = "uploads" if "uploads" in query else "uploadId" if "uploadId" in query else ""
                op = "UploadPart" if self.command == "PUT" and "partNumber" in query else f"{self.command} {kind}"
                status = stub._fault_for(op)
                if status:
                    self._fail(status)
                    return
                conn = http.client.HTTPConnection(stub.upstream.hostname, stub.upstream.port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection",)}
                conn.request(self.command, self.path, body=body, headers=headers)
                reply = conn.getresponse()
                data = reply.read()
                if op == "POST uploadId" and stub._lose_reply():
                    conn.close()
                    self._fail(500)
                    return
                self.send_response(reply.status)
                for k, v in reply.getheaders():
                    if k.lower() not in ("content-length", "connection", "transfer-encoding", "server", "date"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            def _fail(self, status: int) -> None:
                payload = FAILURE_BODIES[status]
                self.send_response(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def _fault_for(self, op: str) -> int:
        with self._lock:
            f = self.faults
            n = f.seen[op] = f.seen.get(op, 0) + 1
            delay = f.part_delay_s if op == "UploadPart" else 0.0
            fail = (op == "UploadPart" and f.fail_part_from is not None and n >= f.fail_part_from
                    and f.failed < f.fail_times)
            if fail:
                f.failed += 1
        if delay:
            time.sleep(delay)
        return f.fail_status if fail else 0

    def _lose_reply(self) -> bool:
        with self._lock:
            if self.faults.lose_complete_replies > 0:
                self.faults.lose_complete_replies -= 1
                self.faults.failed += 1
                return True
            return False

    def reset(self, **faults) -> Faults:
        with self._lock:
            self.faults = Faults(**faults)
        return self.faults

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
