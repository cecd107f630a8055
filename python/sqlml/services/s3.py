"""Amazon S3 for the training-data export: URIs, the few operations it needs, error mapping.

engine/functions/export.py decides what to write; this module only talks to S3 through the process's
shared client (services/aws.py, same credentials and endpoint rules as the other
services) and turns botocore's failures into SqlmlErrors that name the operation,
the object and the AWS code. Every operation here runs on an engine worker thread,
never on a server thread, and is retried (throttling, 5xx, dropped connections) up
to `max_attempts` times with jittered exponential backoff.
"""

from __future__ import annotations

import random
import re
import time
from dataclasses import dataclass
from typing import Callable, TypeVar

import botocore.exceptions

from ..errors import ArgumentError, ServiceError
from .comprehend import client_error

T = TypeVar("T")
# S3's own rule for new bucket names: 3-63 of a-z 0-9 . -, starting and ending alphanumeric.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
MAX_KEY_BYTES = 1024
RETRYABLE_CODES = frozenset({"SlowDown", "InternalError", "RequestTimeout", "ServiceUnavailable",
                             "RequestTimeTooSkewed", "OperationAborted"})
BACKOFF_BASE_S = 0.05
BACKOFF_CAP_S = 2.0


@dataclass(frozen=True)
class Location:
    bucket: str
    prefix: str

    def uri(self, key: str | None = None) -> str:
        return f"s3://{self.bucket}/{self.prefix if key is None else key}"


def parse_uri(uri: str, function: str) -> Location:
    """`s3://bucket/prefix` as Aurora writes it; the prefix names the files (prefix.part_00000)."""
    m = re.fullmatch(r"s3://([^/]*)/(.*)", uri)
    if not m:
        raise ArgumentError(f"{function}: S3 URI must look like s3://bucket/prefix, got {uri[:200]!r}")
    bucket, prefix = m.groups()
    if not _BUCKET.match(bucket) or ".." in bucket:
        raise ArgumentError(f"{function}: {bucket[:100]!r} is not a valid S3 bucket name "
                            "(3-63 characters: a-z, 0-9, '.', '-')")
    if not prefix or prefix.endswith("/"):
        raise ArgumentError(f"{function}: S3 URI needs a file prefix after the bucket "
                            f"(s3://{bucket}/path/name), got {uri[:200]!r}")
    if len(prefix.encode("utf-8")) + len(".part_00000") > MAX_KEY_BYTES:
        raise ArgumentError(f"{function}: S3 key prefix is longer than {MAX_KEY_BYTES - 11} bytes")
    return Location(bucket, prefix)


def _error(exc: Exception, operation: str, loc: Location, key: str | None) -> ServiceError:
    where = f"S3 {operation} ({loc.uri(key)})"
    if isinstance(exc, botocore.exceptions.ClientError):
        code = exc.response.get("Error", {}).get("Code", "Unknown")
        if code == "NoSuchBucket":
            return ServiceError(f"{where} failed: bucket '{loc.bucket}' does not exist (NoSuchBucket)", code=code)
        if code in ("AccessDenied", "AllAccessDisabled", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return ServiceError(f"{where} failed: {code}: the server's AWS credentials (aws_default_s3_role) "
                                f"may not write to s3://{loc.bucket}", code=code)
        mapped = client_error(exc, where)
        mapped.retryable = mapped.retryable or code in RETRYABLE_CODES
        return mapped
    return client_error(exc, where)


def attempts(request: Callable[[], T], operation: str, loc: Location, key: str | None, max_attempts: int,
             deadline: float) -> T:
    """request() until it succeeds, fails for good, runs out of attempts or passes the deadline."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return request()
        except Exception as exc:  # botocore's: mapped below, anything else is a bug and propagates
            if not isinstance(exc, (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError)):
                raise
            error = _error(exc, operation, loc, key)
        backoff = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)
        if not error.retryable or attempt >= max_attempts or time.monotonic() + backoff >= deadline:
            raise error
        time.sleep(backoff)


class Bucket:
    """The operations of one export on one bucket, each with its retries and error mapping."""

    def __init__(self, client, loc: Location, max_attempts: int, timeout_s: float):
        self.client = client
        self.loc = loc
        self.max_attempts = max_attempts
        self.timeout_s = timeout_s

    def _do(self, operation: str, key: str | None, request: Callable[[], T]) -> T:
        return attempts(request, operation, self.loc, key, self.max_attempts, time.monotonic() + self.timeout_s)

    def first_matching(self, key_prefix: str, start_after: str, wanted: Callable[[str], bool]) -> str | None:
        """The first key starting with key_prefix, sorting after start_after, that wanted
        accepts, or None; fails NoSuchBucket for a missing bucket. Lists page by page, so
        other keys sorting first (``prefix.part_!x``) cannot hide a wanted one."""
        token = None
        while True:
            kwargs = {"Bucket": self.loc.bucket, "Prefix": key_prefix, "StartAfter": start_after}
            if token:
                kwargs["ContinuationToken"] = token
            reply = self._do("ListObjectsV2", None, lambda kwargs=kwargs: self.client.list_objects_v2(**kwargs))
            for item in reply.get("Contents") or []:
                if wanted(item["Key"]):
                    return item["Key"]
            token = reply.get("NextContinuationToken")
            if not reply.get("IsTruncated") or not token:
                return None

    def put(self, key: str, body: bytes, content_type: str) -> None:
        self._do("PutObject", key, lambda: self.client.put_object(
            Bucket=self.loc.bucket, Key=key, Body=body, ContentType=content_type))

    def start_upload(self, key: str, content_type: str) -> str:
        reply = self._do("CreateMultipartUpload", key, lambda: self.client.create_multipart_upload(
            Bucket=self.loc.bucket, Key=key, ContentType=content_type))
        return reply["UploadId"]

    def upload_part(self, key: str, upload_id: str, number: int, body: bytes) -> dict:
        reply = self._do("UploadPart", key, lambda: self.client.upload_part(
            Bucket=self.loc.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body))
        return {"PartNumber": number, "ETag": reply["ETag"]}

    def complete_upload(self, key: str, upload_id: str, parts: list[dict]) -> None:
        self._do("CompleteMultipartUpload", key, lambda: self.client.complete_multipart_upload(
            Bucket=self.loc.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}))

    def abort_upload(self, key: str, upload_id: str) -> None:
        self._do("AbortMultipartUpload", key, lambda: self.client.abort_multipart_upload(
            Bucket=self.loc.bucket, Key=key, UploadId=upload_id))

    def delete(self, key: str) -> None:
        self._do("DeleteObject", key, lambda: self.client.delete_object(Bucket=self.loc.bucket, Key=key))

    def keys(self, key_prefix: str) -> list[str]:
        """Every key starting with key_prefix."""
        keys: list[str] = []
        token = None
        while True:
            kwargs = {"Bucket": self.loc.bucket, "Prefix": key_prefix}
            if token:
                kwargs["ContinuationToken"] = token
            reply = self._do("ListObjectsV2", None, lambda kwargs=kwargs: self.client.list_objects_v2(**kwargs))
            keys.extend(item["Key"] for item in reply.get("Contents") or [])
            token = reply.get("NextContinuationToken")
            if not reply.get("IsTruncated") or not token:
                return keys
