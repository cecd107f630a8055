"""Per-statement preparation kept across statements: a small LRU of plans.

functions.prepare (functions/__init__.py) runs once per statement, from xxx_init. For
the service functions the work that depends only on the call site (argument checks,
the endpoint and return type parsed, the encoders chosen, the memo spec from the
settings) is a plan: a planner (sagemaker.plan_sagemaker, comprehend.plan_*) does it
and returns a bind, and each statement calls bind() for its own Prepared with its own
per-statement state (a tally, a language memo), so two connections running the same
call share nothing mutable.

Plans are kept under (function, return kind, argument types, the constant arguments
the plan reads, settings version): not the features or texts, which a client
interpolating each row's value into `SELECT f('ep', 'REAL', 1, 42)` makes constants.
Engine.apply gives every settings change (SET GLOBAL of a sqlml variable, sqlml.cnf
edited) a new version, so a plan built under older settings is never found again and
ages out. Never kept: who may call. access.refusal and binlog_refusal run on every
statement before the plan is looked up, so a REVOKE, SET ROLE or a DEFINER routine
counts at the very next statement.

Bounded both ways: at most MAX_PLANS entries (least recently used dropped first), and
calls whose keyed constants are longer than MAX_KEY_BYTES are prepared every time and
never kept, so constants from users cannot grow the server's memory. A plan costs tens
of microseconds to rebuild: a user cycling through many distinct constants moves
another's statement by that much at most.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Callable

from ..crossing import Prepared

if TYPE_CHECKING:  # the engine holds its PlanCache (engine/__init__.py imports this module)
    from . import Engine

Bind = Callable[[], Prepared]
Planner = Callable[["Engine", str, int, tuple, tuple], Bind]

MAX_PLANS = 256
MAX_KEY_BYTES = 4096  # the constants' total length beyond which a call is not kept


class PlanCache:
    """The LRU of binds by call site; safe under concurrent statements (one lock, held
    for dictionary work only: planning runs outside it)."""

    def __init__(self, max_plans: int = MAX_PLANS):
        self.max_plans = max_plans
        self._plans: OrderedDict[tuple, Bind] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._plans)

    def bind(self, engine: "Engine", planner: Planner, name: str, kind: int, types: tuple, consts: tuple,
             keyed: tuple) -> Prepared:
        """This statement's Prepared, from a kept plan if one matches (counted in
        Sqlml_prepare_reuse_cnt), else from a new plan, kept if its key is small.
        keyed: the constant arguments the planner reads (it must read no other)."""
        key = _key(engine, name, kind, types, keyed)
        if key is None:
            return planner(engine, name, kind, types, consts)()
        with self._lock:
            bind = self._plans.get(key)
            if bind is not None:
                self._plans.move_to_end(key)
        if bind is not None:
            engine.counters.add("prepare_reuse_cnt")
            return bind()
        bind = planner(engine, name, kind, types, consts)  # raises for a bad call: nothing kept
        with self._lock:
            self._plans[key] = bind
            self._plans.move_to_end(key)
            while len(self._plans) > self.max_plans:
                self._plans.popitem(last=False)
        return bind()

    def clear(self) -> None:
        with self._lock:
            self._plans.clear()


def _key(engine: "Engine", name: str, kind: int, types: tuple, consts: tuple) -> tuple | None:
    size = 0
    for value in consts:
        if type(value) is bytes:
            size += len(value)
        elif value is not None and type(value) not in (int, float):
            return None  # not a value the shim passes: never guess its hash or size
    if size > MAX_KEY_BYTES:
        return None
    # The version is read after maybe_reload and before planning; Engine.apply moves it
    # only after the new settings are in place, so a plan kept under a version was built
    # with that version's settings or newer ones.
    return name, kind, types, consts, engine.settings_version
