"""Locate the system MariaDB binaries, installing the Debian packages if missing.

The MariaDB leg must always run, so a fresh CI machine gets bookworm's
MariaDB 10.11 through apt. Only the binaries are used: the system service is
never started or configured (every test server is a private instance).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from .errors import ServerUnavailable

PACKAGES = ("mariadb-server", "mariadb-client", "libmariadb-dev")
# sbin is often missing from PATH for non-login shells, so look there too.
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/bin", "/sbin", "/bin"])


def _which(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name, path=SEARCH_PATH)
        if found:
            return found
    return None


# libmariadb-dev is not needed to run a server, but the project builds against
# its headers, so its absence also triggers the install.
DEV_HEADER = Path("/usr/include/mariadb/mysql.h")


def _find() -> dict[str, str] | None:
    tools = {
        "mariadbd": _which("mariadbd", "mysqld"),
        "install_db": _which("mariadb-install-db", "mysql_install_db"),
    }
    return tools if all(tools.values()) and DEV_HEADER.exists() else None


def mariadb_binaries(install: bool = True) -> dict[str, str]:
    """Return {'mariadbd': path, 'install_db': path}, apt-installing MariaDB if needed."""
    tools = _find()
    if tools:
        return tools
    if not install:
        raise ServerUnavailable("MariaDB is not installed (mariadbd, mariadb-install-db or "
                                f"{DEV_HEADER} not found)")
    if os.geteuid() != 0:
        raise ServerUnavailable("MariaDB is not installed and installing it needs root: "
                                f"apt-get install -y {' '.join(PACKAGES)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for argv in (["apt-get", "update"], ["apt-get", "install", "-y", *PACKAGES]):
        try:
            p = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise ServerUnavailable(f"{' '.join(argv)}: {e}") from None
        if p.returncode != 0:
            tail = "\n".join((p.stderr or p.stdout).strip().splitlines()[-8:])
            raise ServerUnavailable(f"{' '.join(argv)} failed (exit {p.returncode}): {tail}")
    tools = _find()
    if not tools:
        raise ServerUnavailable(f"apt-get installed {' '.join(PACKAGES)} but mariadbd is still not found")
    return tools

