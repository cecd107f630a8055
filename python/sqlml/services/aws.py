"""The process's one boto3 Session and its clients.

A Session plus client costs ~70 ms to build and Sessions are not thread-safe, while
clients are: so there is one Session and one client per service per process, built
at boot and rebuilt only when a setting they depend on changes. Retries are ours
(engine/dispatch.py counts and bounds them), so botocore's are pinned to a single
attempt; timeouts and the connection pool are pinned explicitly too.
"""

from __future__ import annotations

import json
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
        """The client for 'comprehend' or 'sagemaker-runtime' under the current settings."""
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
        }[service]
        config = botocore.config.Config(
            region_name=s.region,
            # total_max_attempts counts the first try; botocore's max_attempts counts retries.
            retries={"mode": "standard", "total_max_attempts": 1},
            connect_timeout=s.connect_timeout_s,
            read_timeout=s.timeout_s,
            max_pool_connections=max(10, s.max_in_flight),
            tcp_keepalive=True,
            # The engine checks every argument AWS would refuse (text sizes, language
            # codes, endpoint names, body size) before a request exists; botocore's own
            # validation walk cost a quarter of a 25-text BatchDetectSentiment call's CPU.
            parameter_validation=False,
        )
        credentials = {}
        if endpoint_url and self._session.get_credentials() is None:
            # A local, AWS-compatible service (sqlml serve, a fake) needs no account: sign
            # with placeholder keys rather than fail. AWS itself would refuse them.
            credentials = {"aws_access_key_id": "sqlml-local", "aws_secret_access_key": "sqlml-local"}
        client = self._session.client(service, endpoint_url=endpoint_url, config=config, **credentials)
        if service == "comprehend":
            for operation in ("DetectSentiment", "BatchDetectSentiment"):
                client.meta.events.register(f"before-parse.comprehend.{operation}", _json_body_as_is)
        return client


RAW_JSON = "sqlml_raw_json"


def _json_body_as_is(response_dict, customized_response_dict, **_):
    """Hands a successful JSON 1.1 answer over as json.loads() made it.

    botocore walks every answer through its output shape; for 25 sentiment results that
    walk was most of a BatchDetectSentiment call's CPU, to build the same dicts json.loads
    gives (JSON 1.1 member names are the wire names). The body becomes an empty object
    for that walk and the document reaches comprehend.detect under RAW_JSON, which
    checks every field itself. Errors and bodies that are not JSON are left to botocore,
    so its error parsing and codes are unchanged.
    """
    if response_dict.get("status_code") != 200:
        return
    try:
        doc = json.loads(response_dict["body"])
    except (ValueError, TypeError):
        return
    customized_response_dict[RAW_JSON] = doc  # even a non-object: detect() refuses it by name
    response_dict["body"] = b"{}"
