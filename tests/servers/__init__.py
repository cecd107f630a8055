"""Private MariaDB / MySQL servers for sqlml's tests, demo and `make up`.

    from tests.servers import start_server, free_port, ServerUnavailable

    srv = start_server("mariadb", tmp_path / "db", free_port(), plugin_dir="build")
    with srv.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT VERSION()")
    srv.stop()

MariaDB 10.11 comes from the system (apt-installed if missing); MariaDB 11.8 from
Debian trixie and MySQL 9.7 from Debian sid, both unpacked privately and run
through their suite's loader (see debian_unpacked).
`ServerUnavailable` means the server software cannot be had on this machine
(tests may skip on it); `ServerStartError` means it is there but failed, which
is a real failure. The CLI is `python -m tests.servers up|down|fetch KIND`.
"""

from .errors import ServerStartError, ServerUnavailable
from .mariadb_pkg import mariadb_binaries
from .debian_unpacked import loader_command, mariadb118_root, mysql_root
from .dbserver import FLAVORS, KINDS, Server, ensure_software, free_port, start_server, stop_dir

__all__ = [
    "FLAVORS", "KINDS", "Server", "ServerStartError", "ServerUnavailable", "ensure_software", "free_port",
    "loader_command", "mariadb118_root", "mariadb_binaries", "mysql_root", "start_server", "stop_dir",
]
