"""Amazon SageMaker Runtime InvokeEndpoint: body limit, codecs and error mapping."""

from __future__ import annotations

import re

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


def invoke(client, endpoint: str, lines: list[str], accept: str) -> list[object]:
    """Sends the CSV rows in one request; returns the first output of each row, in order."""
    body = csv_body(lines)
    where = f"SageMaker InvokeEndpoint (endpoint '{endpoint}')"
    if len(body) > MAX_BODY_BYTES:
        raise ServiceError(f"{where}: request body is {len(body)} bytes; SageMaker accepts at most {MAX_BODY_BYTES}")
    try:
        reply = client.invoke_endpoint(EndpointName=endpoint, Body=body, ContentType="text/csv", Accept=accept)
        payload = reply["Body"].read()
    except Exception as exc:  # noqa: BLE001 - mapped or re-raised by client_error
        raise client_error(exc, where) from None
    return parse_response(payload, reply.get("ContentType", ""), len(lines), where)
