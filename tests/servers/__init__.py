"""Private MariaDB / MySQL servers for sqlml's tests, demo and `make up`.

    from tests.servers import start_server, free_port, ServerUnavailable

    srv = start_server("mariadb", tmp_path / "db", free_port(), plugin_dir="build")
    with srv.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT VERSION()")
    srv.stop()

MariaDB comes from the system (apt-installed if missing); MySQL 9.7 from Debian
sid packages unpacked privately and run through sid's loader (see mysql_sid).
`ServerUnavailable` means the server software cannot be had on this machine
(tests may skip on it); `ServerStartError` means it is there but failed, which
is a real failure. The CLI is `python -m tests.servers up|down|fetch-mysql`.
"""

from .errors import ServerStartError, ServerUnavailable
from .mariadb_pkg import mariadb_binaries
from .mysql_sid import loader_command, mysql_root
from .server import KINDS, Server, free_port, start_server, stop_dir

__all__ = [
    "KINDS", "Server", "ServerStartError", "ServerUnavailable", "free_port", "loader_command",
    "mariadb_binaries", "mysql_root", "start_server", "stop_dir",
]
