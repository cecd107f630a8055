"""AWS wire shapes shared by the local Comprehend and SageMaker Runtime front ends.

An operation either returns a :class:`Response` or raises :class:`ApiError`; this module
turns the error into the bytes AWS would send, per protocol, so boto3 raises the same
exception class with the same ``Error.Code`` and message fields:

* Comprehend (JSON 1.1): body ``{"__type": Code, "message": ...}``, content type
  ``application/x-amz-json-1.1``.
* SageMaker Runtime (REST-JSON): header ``x-amzn-ErrorType: Code:namespace`` and body
  ``{"message": ...}``; ModelError carries ``ErrorCode``, ``Message``,
  ``OriginalStatusCode``, ``OriginalMessage`` and ``LogStreamArn`` as AWS does.
* A status-only error (``code=None``), e.g. SageMaker's 413 for an oversized payload:
  body ``{"message": ...}`` and no error type, so boto3 reports the status as the code.

``comprehend.py`` and ``sagemaker.py`` raise these; ``httpd.py`` writes the Response.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

COMPREHEND_JSON = "application/x-amz-json-1.1"
_NS_VALIDATE = "http://internal.amazon.com/coral/com.amazon.coral.validate/"
_NS_SAGEMAKER = "http://internal.amazon.com/coral/com.amazon.sagemaker/"


@dataclass
class Response:
    status: int
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)
    close: bool = False  # close the connection after answering (the request could not be framed)


class ApiError(Exception):
    """A request that AWS would refuse: HTTP status, error code and message (plus ModelError fields)."""

    def __init__(self, status: int, code: str | None, message: str, extra: dict | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra


def validation_exception(member: str, constraint: str, value: str = "null") -> ApiError:
    """Comprehend's field-validation failure, worded as AWS words it."""
    return ApiError(400, "ValidationException",
                    f"1 validation error detected: Value {value} at '{member}' failed to satisfy constraint: "
                    f"{constraint}")


def model_error(endpoint: str, original_status: int, original_message: str, account_id: str,
                region: str) -> ApiError:
    """SageMaker's ModelError (424): the model container answered *original_status*."""
    side = "client" if original_status < 500 else "server"
    log_group = f"/aws/sagemaker/Endpoints/{endpoint}"
    message = (f'Received {side} error ({original_status}) from primary with message "{original_message}". '
               f"See https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}"
               f"#logEventViewer:group={log_group} in account {account_id} for more information.")
    return ApiError(424, "ModelError", message, extra={
        "ErrorCode": f"{side.upper()}_ERROR_FROM_MODEL",
        "LogStreamArn": f"arn:aws:logs:{region}:{account_id}:log-group:{log_group}",
        "OriginalMessage": original_message,
        "OriginalStatusCode": original_status,
    })


def comprehend_error(err: ApiError, request_id: str) -> Response:
    body = {"__type": err.code, "message": err.message} if err.code else {"message": err.message}
    return Response(err.status, json.dumps(body).encode("utf-8"),
                    [("Content-Type", COMPREHEND_JSON), ("x-amzn-RequestId", request_id)])


def sagemaker_error(err: ApiError, request_id: str) -> Response:
    headers = [("Content-Type", "application/json"), ("x-amzn-RequestId", request_id)]
    if err.code:
        namespace = _NS_VALIDATE if err.code == "ValidationError" else _NS_SAGEMAKER
        headers.append(("x-amzn-ErrorType", f"{err.code}:{namespace}"))
    if err.extra is not None:
        body = dict(err.extra, Message=err.message)
    else:
        body = {"message": err.message}
    return Response(err.status, json.dumps(body).encode("utf-8"), headers)
