"""What each SQL function means: its arguments, its checks, and its per-row callable.

`prepare` runs once per statement (from xxx_init): it validates the argument count and
types and every constant argument, picks an encoder per argument, and returns the
callable the shim calls for each row. Per-row work is kept to what a row needs.

Per-row failures follow the on_error policy: 'error' (the default) fails the
statement with the message; 'null' makes that row NULL and adds the message as a
warning. A NULL argument always gives NULL without a request.
"""

from __future__ import annotations

from typing import Callable

from ... import __version__, access, export, server, support
from ...errors import ArgumentError
from .. import Engine
from .admin import prepare_cache_clear, prepare_echo, prepare_status, prepare_version, version_text
from .common import DECIMAL, INT, KIND_NAMES, REAL, STRING, Prepared
from .comprehend import prepare_confidence, prepare_sentiment
from .sagemaker import prepare_sagemaker
from .warmups import WarmAggregate, prepare_warm_comprehend, prepare_warm_sagemaker

__all__ = ["NAMED_REGISTRY", "REGISTRY", "WarmAggregate", "prepare", "version_text"]


# Which role each function needs (access.py); None: anyone may call it.
REGISTRY: dict[str, tuple[int, Callable[..., Prepared], tuple[str, ...]]] = {
    "aws_comprehend_detect_sentiment": (STRING, prepare_sentiment, ("comprehend",)),
    "aws_comprehend_detect_sentiment_confidence": (REAL, prepare_confidence, ("comprehend",)),
    "aws_sagemaker_invoke_endpoint_real": (REAL, prepare_sagemaker, ("sagemaker",)),
    "aws_sagemaker_invoke_endpoint_int": (INT, prepare_sagemaker, ("sagemaker",)),
    "aws_sagemaker_invoke_endpoint_decimal": (DECIMAL, prepare_sagemaker, ("sagemaker",)),
    "aws_sagemaker_invoke_endpoint_string": (STRING, prepare_sagemaker, ("sagemaker",)),
    "sqlml_version": (STRING, prepare_version, ()),
    "sqlml_status": (STRING, prepare_status, ()),
    "sqlml_echo_int": (INT, prepare_echo, ()),
    "sqlml_warm_comprehend": (INT, prepare_warm_comprehend, ("comprehend",)),
    "sqlml_warm_sagemaker": (INT, prepare_warm_sagemaker, ("sagemaker",)),
    "sqlml_cache_clear": (INT, prepare_cache_clear, (access.ADMIN,)),
}


# Functions that also need each argument's name as written in the query.
NAMED_REGISTRY: dict[str, tuple[int, Callable[..., Prepared]]] = {
    export.FUNCTION: (STRING, export.prepare),
}


def prepare(engine: Engine, name: str, kind: int, types: tuple, consts: tuple, names: tuple = ()) -> Prepared:
    abi_problem = server.abi_problem()
    if abi_problem is not None and name != "sqlml_version":  # fail closed; the version says why
        raise ArgumentError(support.abi_refusal(name, abi_problem))
    if name in NAMED_REGISTRY:
        expected_kind, factory = NAMED_REGISTRY[name]
        if expected_kind != kind:
            raise ArgumentError(f"{name}: library and engine disagree on its return type; reinstall sqlml")
        engine.maybe_reload()
        return factory(engine, name, kind, types, consts, names)
    entry = REGISTRY.get(name)
    if entry is None:
        raise ArgumentError(f"{name}: not a function of this sqlml engine ({__version__}); reinstall sqlml")
    expected_kind, factory, services = entry
    if expected_kind != kind:
        raise ArgumentError(
            f"{name}: library and engine disagree on its return type ({KIND_NAMES[kind]} vs "
            f"{KIND_NAMES[expected_kind]}); reinstall sqlml"
        )
    engine.maybe_reload()
    prepared = factory(engine, name, kind, types, consts)
    if services:
        error = access.refusal(name, *services)
        if error is not None:
            engine.counters.add("access_denied_cnt")
        elif services != (access.ADMIN,):  # it calls a service: replicas would answer differently
            error = access.binlog_refusal(name)
        if error is not None:  # and no memo lane: every row meets the refusal
            return (access.Refused(error),) + tuple(prepared[1:4])
    return prepared
