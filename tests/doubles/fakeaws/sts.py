"""A fake AWS STS (AssumeRole only) on 127.0.0.1, for the aws_default_*_role settings.

Each AssumeRole answers new temporary credentials (AccessKeyId ASIAFAKE<n>) that
expire `expires_in` seconds later, and records who asked for which role. A role ARN
listed in `deny` gets AccessDenied, as STS does for a role the caller may not assume.
"""

from __future__ import annotations

import datetime
import http.server
import threading
import urllib.parse

SECRET_PREFIX = "fake-sts-secret-"


class FakeSTS:
    def __init__(self, expires_in: int = 3600):
        self.expires_in = expires_in
        self.deny: set[str] = set()
        self.calls: list[dict] = []
        self._lock = threading.Lock()
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                form = dict(urllib.parse.parse_qsl(body))
                auth = self.headers.get("Authorization", "")
                caller = auth.split("Credential=", 1)[1].split("/", 1)[0] if "Credential=" in auth else None
                status, text = fake._answer(form, caller)
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()

    def _answer(self, form: dict, caller: str | None) -> tuple[int, str]:
        with self._lock:
            n = len(self.calls) + 1
            self.calls.append({"action": form.get("Action"), "role": form.get("RoleArn"),
                               "session": form.get("RoleSessionName"), "caller": caller})
        role = form.get("RoleArn", "")
        if form.get("Action") != "AssumeRole":
            return 400, _error("InvalidAction", f"{form.get('Action')} is not supported by this fake")
        if role in self.deny:
            return 403, _error("AccessDenied", "User: arn:aws:iam::123456789012:user/server is not authorized "
                                               f"to perform: sts:AssumeRole on resource: {role}")
        expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=self.expires_in)
        return 200, f"""<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleResult>
    <Credentials>
      <AccessKeyId>ASIAFAKE{n}</AccessKeyId>
      <SecretAccessKey>{SECRET_PREFIX}{n}</SecretAccessKey>
      <SessionToken>fake-token-{n}</SessionToken>
      <Expiration>{expires.strftime('%Y-%m-%dT%H:%M:%SZ')}</Expiration>
    </Credentials>
    <AssumedRoleUser>
      <AssumedRoleId>AROAFAKE:{form.get('RoleSessionName')}</AssumedRoleId>
      <Arn>{role}/{form.get('RoleSessionName')}</Arn>
    </AssumedRoleUser>
  </AssumeRoleResult>
  <ResponseMetadata><RequestId>fake-{n}</RequestId></ResponseMetadata>
</AssumeRoleResponse>"""


def _error(code: str, message: str) -> str:
    return (f'<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
            f"<Code>{code}</Code><Message>{message}</Message></Error><RequestId>fake</RequestId></ErrorResponse>")
