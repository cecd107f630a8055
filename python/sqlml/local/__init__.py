"""The local inference service (``sqlml serve``): Comprehend and SageMaker Runtime on 127.0.0.1.

It speaks the same wire protocols as Amazon Comprehend (DetectSentiment,
BatchDetectSentiment) and SageMaker Runtime (InvokeEndpoint) with real local models
(VADER for sentiment; Random Cut Forest, scikit-learn and XGBoost for endpoints), so the
same SQL and boto3 code run against it by changing only the endpoint URL. No AWS account
is needed and no credential is checked.

Modules: ``config`` (endpoint declarations), ``data`` (demo-taxi series, CSV training
data), ``models`` (the endpoint models), ``comprehend`` and ``sagemaker`` (the two
protocols), ``wire`` (AWS error shapes), ``server`` (HTTP), ``supervisor`` (processes,
``main`` and ``serve``).

Python::

    from sqlml.local import serve
    with serve() as svc:                        # shipped demo config, any free port
        boto3.client("sagemaker-runtime", endpoint_url=svc.url, ...)

Command line: ``sqlml serve [--config FILE] [--host H] [--port P] [--workers N]
[--port-file FILE] [--verbose]`` (also ``python -m sqlml.local``).
"""

from .config import ConfigError, EndpointConfig, ServerConfig, default_config_path, load_config
from .data import DEMO_TAXI_EVENTS, demo_taxi_anomalies, demo_taxi_events, demo_taxi_series
from .supervisor import READY_PREFIX, LocalService, build_parser, main, serve

__all__ = [
    "DEMO_TAXI_EVENTS",
    "READY_PREFIX",
    "ConfigError",
    "EndpointConfig",
    "LocalService",
    "ServerConfig",
    "build_parser",
    "default_config_path",
    "demo_taxi_anomalies",
    "demo_taxi_events",
    "demo_taxi_series",
    "load_config",
    "main",
    "serve",
]
