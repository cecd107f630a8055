"""The one error type that crosses into the server.

The C shim reads `sql_errno` and `sql_message` off any exception it catches and
raises that as the statement's SQL error; anything without them is reported as an
internal error with its traceback in the server's error log. Messages name the SQL
function (or service and endpoint) and say how to fix the call.
"""

from __future__ import annotations

ER_UNKNOWN_ERROR = 1105
ER_SPECIFIC_ACCESS_DENIED = 1227  # "Access denied; you need (at least one of) the %s privilege(s)"
ER_WRONG_VALUE_FOR_VAR = 1231
ER_BINLOG_UNSAFE = 1592  # the server's "unsafe statement" code
ER_WRONG_ARGUMENTS = 1210  # "Incorrect arguments to %s"
ER_DATA_OUT_OF_RANGE = 1264
WARN_DATA_TRUNCATED = 1265


class SqlmlError(Exception):
    """An error with a message fit to show a SQL user (no secrets, no stack)."""

    sql_errno = ER_UNKNOWN_ERROR

    def __init__(self, message: str):
        super().__init__(message)
        self.sql_message = message


class ArgumentError(SqlmlError):
    """A call with arguments the function cannot accept: the caller must fix the SQL."""

    sql_errno = ER_WRONG_ARGUMENTS


class AccessDenied(SqlmlError):
    """The caller lacks the role (privilege) a function needs; nothing was sent."""

    sql_errno = ER_SPECIFIC_ACCESS_DENIED


class SettingRefused(SqlmlError):
    """A SET GLOBAL value sqlml does not accept; the message says what is allowed."""

    sql_errno = ER_WRONG_VALUE_FOR_VAR


class UnsafeForBinlog(SqlmlError):
    """A call that statement-based replication would replay with a different answer."""

    sql_errno = ER_BINLOG_UNSAFE


class ResultTypeError(SqlmlError):
    """A service answer that does not fit the function's declared return type."""

    sql_errno = ER_DATA_OUT_OF_RANGE


class ServiceError(SqlmlError):
    """A request to an AWS (or AWS-compatible) service failed.

    `retryable` marks throttling, 5xx and connection failures, which the engine
    retries with bounded backoff; `code` is the AWS error code when there is one.
    """

    def __init__(self, message: str, *, code: str = "", retryable: bool = False):
        super().__init__(message)
        self.code = code
        self.retryable = retryable


class ServiceTimeout(ServiceError):
    """No answer within the configured timeout."""

    def __init__(self, message: str):
        super().__init__(message, code="Timeout", retryable=False)
