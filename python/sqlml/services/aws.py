"""The process's boto3 Sessions and their clients.

A Session plus client is slow to build (tens of ms) and Sessions are not thread-safe, while
clients are: so there is one Session and one client per service per process, built
at boot and rebuilt only when a setting they depend on changes. Retries are ours
(engine/dispatch.py counts and bounds them), so botocore's are pinned to a single
attempt; timeouts and the connection pool are pinned explicitly too.

Comprehend and SageMaker Runtime requests go through a LeanClient (lean.py) made from
that boto3 client: botocore's endpoint, credentials, signer and HTTP settings, without
its per-call machinery. S3 (the export) and STS use their boto3 clients as they are.

A service with an IAM role configured (aws_default_sagemaker_role and friends) gets
its own Session whose credentials come from STS AssumeRole on the default chain's
credentials; botocore refreshes them before they expire (RefreshableCredentials), so
no server thread ever signs with expired keys and no secret is stored anywhere else.
"""

from __future__ import annotations

import threading

import boto3
import botocore.config
import botocore.session
from botocore.credentials import AssumeRoleCredentialFetcher, Credentials, DeferredRefreshableCredentials

from ..config import Settings
from .lean import LeanClient

# The wire format comprehend.py and sagemaker.py build, and the operations each lean
# client sends (its endpoint is resolved for them once).
LEAN_OPERATIONS = {
    "comprehend": ("json", ("DetectSentiment", "BatchDetectSentiment")),
    "sagemaker-runtime": ("rest-json", ("InvokeEndpoint",)),
}


class Clients:
    def __init__(self, settings: Settings):
        self._lock = threading.Lock()
        self._settings = settings
        self._session = boto3.session.Session()
        self._clients: dict[str, object] = {}
        self._role_sessions: dict[tuple, boto3.session.Session] = {}

    def update(self, settings: Settings) -> None:
        with self._lock:
            if settings != self._settings:
                self._settings = settings
                for client in self._clients.values():
                    if isinstance(client, LeanClient):
                        client.close()  # idle connections; requests in flight finish first
                self._clients.clear()
                self._role_sessions.clear()

    def get(self, service: str):
        """The client for 'comprehend' or 'sagemaker-runtime' (a LeanClient), or 's3'
        (a boto3 client), under the current settings."""
        client = self._clients.get(service)
        if client is not None:
            return client
        with self._lock:
            client = self._clients.get(service)
            if client is None:
                client = self._build(service, self._settings)
                self._clients[service] = client
            return client

    def _config(self, s: Settings, s3_path_style: bool = False) -> botocore.config.Config:
        # A local S3-compatible store answers on one host name: buckets go in the path.
        s3_style = {"s3": {"addressing_style": "path"}} if s3_path_style else {}
        return botocore.config.Config(
            region_name=s.region,
            # total_max_attempts counts the first try; botocore's max_attempts counts retries.
            retries={"mode": "standard", "total_max_attempts": 1},
            connect_timeout=s.connect_timeout_s,
            read_timeout=s.timeout_s,
            max_pool_connections=max(10, s.max_in_flight),
            tcp_keepalive=True,
            **s3_style,
        )

    def _build(self, service: str, s: Settings):
        endpoint_url = {
            "comprehend": s.comprehend_endpoint_url,
            "sagemaker-runtime": s.sagemaker_endpoint_url,
            "s3": s.s3_endpoint_url,
        }[service]
        role_arn = {
            "comprehend": s.comprehend_role_arn,
            "sagemaker-runtime": s.sagemaker_role_arn,
            "s3": s.s3_role_arn,
        }[service]
        config = self._config(s, s3_path_style=service == "s3" and bool(endpoint_url))
        if role_arn:
            session = self._role_session(role_arn, s)
            client = session.client(service, endpoint_url=endpoint_url, config=config)
            credentials = session.get_credentials()  # the RefreshableCredentials the client signs with
        else:
            keys = self._placeholder_keys(endpoint_url)
            client = self._session.client(service, endpoint_url=endpoint_url, config=config, **keys)
            credentials = (Credentials(keys["aws_access_key_id"], keys["aws_secret_access_key"]) if keys
                           else self._session.get_credentials())
        if service in LEAN_OPERATIONS:
            return LeanClient(client, credentials, *LEAN_OPERATIONS[service])
        return client

    def _placeholder_keys(self, endpoint_url: str | None) -> dict:
        if endpoint_url and self._session.get_credentials() is None:
            # A local, AWS-compatible service (sqlml serve, a fake) needs no account: sign
            # with placeholder keys rather than fail. AWS itself would refuse them.
            return {"aws_access_key_id": "sqlml-local", "aws_secret_access_key": "sqlml-local"}
        return {}

    def _role_session(self, role_arn: str, s: Settings) -> boto3.session.Session:
        """A Session whose credentials are `role_arn`'s, assumed with STS and refreshed by
        botocore before they expire (called with self._lock held)."""
        key = (role_arn, s.sts_endpoint_url, s.region)
        session = self._role_sessions.get(key)
        if session is not None:
            return session
        source = self._session.get_credentials()
        if source is None:
            keys = self._placeholder_keys(s.sts_endpoint_url)
            if not keys:
                raise RuntimeError("no AWS credentials to assume the role with")
            source = Credentials(keys["aws_access_key_id"], keys["aws_secret_access_key"])
        config = self._config(s)

        def create_sts(service_name, **kwargs):
            return self._session.client(service_name, endpoint_url=s.sts_endpoint_url, config=config, **kwargs)

        fetcher = AssumeRoleCredentialFetcher(
            create_sts, source, role_arn,
            extra_args={"RoleSessionName": "sqlml", "DurationSeconds": ROLE_SESSION_SECONDS})
        core = botocore.session.get_session()
        core._credentials = DeferredRefreshableCredentials(refresh_using=fetcher.fetch_credentials,
                                                          method="assume-role")
        session = self._role_sessions[key] = boto3.session.Session(botocore_session=core, region_name=s.region)
        return session


ROLE_SESSION_SECONDS = 3600
