"""Which servers sqlml is tested on, and what sqlml_version() says about the one it runs in.

TESTED is the one list of server series that `make test` runs on (tests/servers:
MariaDB 10.11 from bookworm, MariaDB 11.8 from trixie, Oracle MySQL 9.7 from sid);
docs/install.md's support matrix and a test on every leg check against it. sqlml still loads
on any other version (sqlml_version() then says "untested"); what it refuses is an
ABI it can see is not the one it was built for (native/server_api.h), and then every
function but sqlml_version() fails with the mismatch named.
"""

from __future__ import annotations

import re

# flavor -> the release series `make test` runs on.
TESTED: dict[str, tuple[str, ...]] = {"mariadb": ("10.11", "11.8"), "mysql": ("9.7",)}
FLAVOR_NAMES = {"mariadb": "MariaDB", "mysql": "MySQL"}


def series(version: str) -> str | None:
    """'11.8.9-MariaDB-0+deb13u1 from Debian' -> '11.8'; None if it is not a version."""
    match = re.match(r"\s*(\d+)\.(\d+)", version)
    return f"{match.group(1)}.{match.group(2)}" if match else None


def is_tested(flavor: str, version: str) -> bool:
    return series(version) in TESTED.get(flavor, ())


def tested_series_text() -> str:
    """'MariaDB 10.11, 11.8; MySQL 9.7'"""
    return "; ".join(f"{FLAVOR_NAMES[f]} {', '.join(v)}" for f, v in TESTED.items())


def server_note(flavor: str, version: str, abi_problem: str | None) -> str:
    """The server part of sqlml_version(): flavor, version, and whether sqlml may run there."""
    head = f"server {flavor} {version}".rstrip()
    if abi_problem:
        return f"{head}, ABI MISMATCH: {abi_problem}; every function but sqlml_version() is refused"
    if is_tested(flavor, version):
        return f"{head}, tested"
    return f"{head}, untested: sqlml is tested on {tested_series_text()}"


def abi_refusal(name: str, abi_problem: str) -> str:
    """The init error of every function but sqlml_version() on a mismatched server."""
    return f"{name}: server ABI mismatch: {abi_problem}; see sqlml_version()"
