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

from ... import __version__, access, host, support
from ...crossing import Prepared
from ...errors import ArgumentError
from .. import Engine
from ..plans import Planner
from . import export
from .admin import prepare_cache_clear, prepare_echo, prepare_status, prepare_version, version_text
from .common import DECIMAL, INT, KIND_NAMES, REAL, STRING
from .comprehend import plan_confidence, plan_sentiment, prepare_confidence, prepare_sentiment
from .sagemaker import plan_sagemaker, prepare_sagemaker
from .warmups import WarmAggregate, prepare_warm_comprehend, prepare_warm_sagemaker

__all__ = ["REGISTRY", "WarmAggregate", "prepare", "version_text"]


# Each SQL function: its return kind, its prepare, and the roles that may call it
# (access.py; ADMIN: administrators; none: anyone).
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
    export.FUNCTION: (STRING, export.prepare, ("s3",)),
}
# Functions whose preparation is a plan kept across statements (engine/plans.py): what
# their factory builds is checked and chosen once per call site, and bound per statement.
# Each with the constant arguments its plan reads (the key): a feature or text given as
# a literal is a row value to the plan, so `SELECT f('ep', 'REAL', 1, 42)` from a client
# interpolating each row's value reuses one plan.
PLANNERS: dict[Callable[..., Prepared], tuple[Planner, slice]] = {
    prepare_sentiment: (plan_sentiment, slice(1, 3)),  # language, max_batch_size
    prepare_confidence: (plan_confidence, slice(1, 3)),
    prepare_sagemaker: (plan_sagemaker, slice(0, 3)),  # endpoint, return type, max_batch_size
}
# Functions whose prepare also takes each argument's name as written in the query.
NEEDS_NAMES = frozenset({export.FUNCTION})
# Functions that ask an ML service: refused under statement-based binary logging.
ML_SERVICES = frozenset({"comprehend", "sagemaker"})


def prepare(engine: Engine, name: str, kind: int, types: tuple, consts: tuple, names: tuple = ()) -> Prepared:
    abi_problem = host.abi_problem()
    if abi_problem is not None and name != "sqlml_version":  # fail closed; the version says why
        raise ArgumentError(support.abi_refusal(name, abi_problem))
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
    if services:
        # Who may make the call, before anything else is looked at or built: a refused
        # call gets a callable that raises on its first row (MariaDB would cut an init
        # message to 80 characters), its arguments as they are, and no memo lane.
        error = access.refusal(name, *services)
        if error is not None:
            engine.counters.add("access_denied_cnt")
        elif ML_SERVICES.intersection(services):  # replicas would answer differently
            error = access.binlog_refusal(name)
        if error is not None:
            return Prepared(access.Refused(error), coerce=tuple(types))
    if name in NEEDS_NAMES:
        return factory(engine, name, kind, types, consts, names)
    planned = PLANNERS.get(factory)
    if planned is not None:  # after the access checks above: never kept, run every statement
        planner, keyed = planned
        return engine.plans.bind(engine, planner, name, kind, types, consts, consts[keyed])
    return factory(engine, name, kind, types, consts)
