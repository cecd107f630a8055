"""Amazon SageMaker Runtime InvokeEndpoint: body limit, codecs and error mapping.

REST-JSON: POST /endpoints/{name}/invocations with the CSV rows as the raw body, sent
by the service's LeanClient (lean.py); the answer is the raw body and its Content-Type.
"""

from __future__ import annotations

import functools
import re
from urllib.parse import quote

from ..errors import ArgumentError, ServiceError
from .codecs import csv_body, parse_response
from .comprehend import client_error

MAX_BODY_BYTES = 6_291_456
_ENDPOINT_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")


def check_endpoint(name: str, function: str) -> str:
    if not _ENDPOINT_RE.match(name):
        raise ArgumentError(
            f"{function}: endpoint {name[:20]!r} invalid: use 1-63 letters, digits, hyphens"
        )
    return name


@functools.lru_cache(maxsize=4096)  # a statement of one row asks once per statement
def invocations_path(endpoint: str) -> str:
    return f"/endpoints/{quote(endpoint, safe='')}/invocations"


def where(endpoint: str) -> str:
    """How messages name a request to this endpoint."""
    return f"SageMaker InvokeEndpoint (endpoint '{endpoint}')"


def shape(client, endpoint: str, accept: str):
    """The Shape (services/lean.py) of this endpoint's requests through `client`."""
    return client.shape("InvokeEndpoint", invocations_path(endpoint), {"Content-Type": "text/csv", "Accept": accept})


def invoke(client, endpoint: str, lines: list[str], accept: str, wait=None) -> list[object]:
    """Sends the CSV rows in one request through `client` (a LeanClient); returns the
    first output of each row, in order. wait: see LeanClient.send."""
    return _send(client, shape(client, endpoint, accept), csv_body(lines), len(lines), where(endpoint), wait)


def invoke_one(client, request_shape, line: str, where: str, wait=None) -> object:
    """invoke() for one row, with the request's Shape and the endpoint's name for
    messages made once by the caller (the scalar path sends a request per row)."""
    return _send(client, request_shape, (line + "\n").encode("utf-8"), 1, where, wait)[0]


def _send(client, request_shape, body: bytes, rows: int, where: str, wait) -> list[object]:
    if len(body) > MAX_BODY_BYTES:
        raise ServiceError(f"{where}: request body is {len(body)} bytes; SageMaker accepts at most {MAX_BODY_BYTES}")
    try:
        reply = client.send_shape(request_shape, body, wait)
    except Exception as exc:  # noqa: BLE001 - mapped or re-raised by client_error
        raise client_error(exc, where) from None
    return parse_response(reply.body, reply.headers.get("Content-Type") or "", rows, where)
