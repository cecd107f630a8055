"""The process's one boto3 Session and its clients.

A Session plus client costs ~70 ms to build and Sessions are not thread-safe, while
clients are: so there is one Session and one client per service per process, built
at boot and rebuilt only when a setting they depend on changes. Retries are ours
(engine/dispatch.py counts and bounds them), so botocore's are pinned to a single
attempt; timeouts and the connection pool are pinned explicitly too.
"""

from __future__ import annotations

import threading

import boto3
import botocore.config

from ..config import Settings


class Clients:
    def __init__(self, settings: Settings):
        self._lock = threading.Lock()
        self._settings = settings
        self._session = boto3.session.Session()
        self._clients: dict[str, object] = {}

    def update(self, settings: Settings) -> None:
        with self._lock:
            if settings != self._settings:
                self._settings = settings
                self._clients.clear()

    def get(self, service: str):
        """The client for 'comprehend', 'sagemaker-runtime' or 's3' under the current settings."""
        client = self._clients.get(service)
        if client is not None:
            return client
        with self._lock:
            client = self._clients.get(service)
            if client is None:
                client = self._build(service, self._settings)
                self._clients[service] = client
            return client

    def _build(self, service: str, s: Settings):
        endpoint_url = {
            "comprehend": s.comprehend_endpoint_url,
            "sagemaker-runtime": s.sagemaker_endpoint_url,
            "s3": s.s3_endpoint_url,
        }[service]
        # A local S3-compatible store answers on one host name: buckets go in the path.
        s3_style = {"s3": {"addressing_style": "path"}} if service == "s3" and endpoint_url else {}
        config = botocore.config.Config(
            region_name=s.region,
            # total_max_attempts counts the first try; botocore's max_attempts counts retries.
            retries={"mode": "standard", "total_max_attempts": 1},
            connect_timeout=s.connect_timeout_s,
            read_timeout=s.timeout_s,
            max_pool_connections=max(10, s.max_in_flight),
            tcp_keepalive=True,
            **s3_style,
        )
        credentials = {}
        if endpoint_url and self._session.get_credentials() is None:
            # A local, AWS-compatible service (sqlml serve, a fake) needs no account: sign
            # with placeholder keys rather than fail. AWS itself would refuse them.
            credentials = {"aws_access_key_id": "sqlml-local", "aws_secret_access_key": "sqlml-local"}
        return self._session.client(service, endpoint_url=endpoint_url, config=config, **credentials)
