"""A private database server with sqlml installed and wired to `sqlml serve`.

The same machinery serves `make up` (left running until `make down`), `make demo`
(stopped when the demo ends) and the Docker image's first-start script. The local
inference service runs as its own process beside the server; both record their
pids in the stack's directory so `down` can stop them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from sqlml import installer
from tests.servers import Server, start_server, stop_dir

SERVER_ENV = {"AWS_EC2_METADATA_DISABLED": "true", "AWS_REGION": "us-east-1"}
SERVICE_READY_TIMEOUT_S = 120
STOP_TIMEOUT_S = 10


@dataclass
class Stack:
    server: Server
    service_url: str
    service_pid: int
    base_dir: Path

    def stop(self) -> None:
        stop_service(self.base_dir)
        pid = self.server.pid
        self.server.stop()
        if not _wait_process_gone(pid, STOP_TIMEOUT_S):
            raise RuntimeError(f"{self.server.kind} pid {pid} still exists after shutdown")


def start_service(base_dir: Path, config: str | None = None) -> tuple[str, int]:
    """Starts `python -m sqlml.local` detached; returns (url, pid) once it answers."""
    base_dir.mkdir(parents=True, exist_ok=True)
    port_file = base_dir / "service.port"
    port_file.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "sqlml.local", "--port", "0", "--port-file", str(port_file)]
    if config:
        argv += ["--config", config]
    log = open(base_dir / "service.log", "ab")
    proc = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    (base_dir / "service.pid").write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + SERVICE_READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sqlml serve exited with {proc.returncode}; see {base_dir / 'service.log'}")
        if port_file.exists() and port_file.read_text().strip():
            return f"http://127.0.0.1:{int(port_file.read_text())}", proc.pid
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"sqlml serve did not start within {SERVICE_READY_TIMEOUT_S} s")


def stop_service(base_dir: Path) -> bool:
    """Stops `sqlml serve` and its workers (one process group); returns once none is left."""
    pid_file = base_dir / "service.pid"
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text())
    if not _is_service(pid):
        pid_file.unlink(missing_ok=True)  # stale: that process is gone, the pid may be another's now
        return False
    _signal_group(pid, signal.SIGTERM)
    if not _wait_group_gone(pid, STOP_TIMEOUT_S):
        _signal_group(pid, signal.SIGKILL)
        if not _wait_group_gone(pid, STOP_TIMEOUT_S):
            raise RuntimeError(f"sqlml serve (process group {pid}) survived SIGKILL")
    pid_file.unlink(missing_ok=True)
    return True


def _is_service(pid: int) -> bool:
    try:
        return b"sqlml.local" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _reap(pid: int) -> None:
    """Collects pid's exit status if it is our child (`make demo`), so it is not left a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass  # not our child (`make up` exited long ago): init reaps it


def _wait_group_gone(pgid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        _reap(pgid)
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def _wait_process_gone(pid: int, timeout_s: float) -> bool:
    """True once /proc/pid is gone. A server's main thread can exit before its other
    threads do, so "not alive" by its state is not yet "no process left"."""
    deadline = time.monotonic() + timeout_s
    while True:
        _reap(pid)
        if not os.path.exists(f"/proc/{pid}"):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def start_stack(kind: str, base_dir: Path, port: int, config: str | None = None,
                stop_at_exit: bool = True) -> Stack:
    url, pid = start_service(base_dir, config)
    (base_dir / "plugins").mkdir(parents=True, exist_ok=True)
    installer.copy_library(str(base_dir / "plugins"))  # before start: a loaded sqlml.so stays mapped
    try:
        server = start_server(kind, base_dir / "db", port, base_dir / "plugins", env=SERVER_ENV,
                              stop_at_exit=stop_at_exit)
        with server.connect(database="mysql") as conn:
            installer.install(conn, {"comprehend_endpoint_url": url, "sagemaker_endpoint_url": url},
                              log=lambda *_: None)
    except BaseException:
        stop_service(base_dir)
        raise
    (base_dir / "stack.json").write_text(json.dumps({"kind": kind, "port": port, "service_url": url}) + "\n")
    return Stack(server, url, pid, base_dir)


def stop_stack(base_dir: Path) -> bool:
    """Stops what `start_stack` left running in base_dir; returns once no process of it is left."""
    stopped = stop_service(base_dir)
    if (base_dir / "db").exists():
        pid = _recorded_server_pid(base_dir / "db")
        was_running = stop_dir(base_dir / "db")
        if was_running and pid and not _wait_process_gone(pid, STOP_TIMEOUT_S):
            raise RuntimeError(f"server pid {pid} in {base_dir / 'db'} still exists after shutdown")
        stopped = was_running or stopped
    (base_dir / "stack.json").unlink(missing_ok=True)
    return stopped


def _recorded_server_pid(db_dir: Path) -> int | None:
    for name in ("mysqld.pid", "server.json"):
        try:
            text = (db_dir / name).read_text()
            return int(text) if name.endswith(".pid") else int(json.loads(text)["pid"])
        except (OSError, ValueError, KeyError):
            continue
    return None


def rcf_config_for(csv_path: str, column: str = "value") -> str:
    """A `sqlml serve` config whose demo endpoint trains on a CSV (e.g. NAB's nyc_taxi.csv)."""
    text = (
        "[endpoints.random-cut-forest-model-demo]\n"
        'model = "rcf"\n'
        f"train_csv = {json.dumps(str(Path(csv_path).resolve()))}\n"
        f'column = "{column}"\nshingle_size = 1\nnum_trees = 100\nsample_size = 256\nseed = 42\n'
    )
    fd, path = tempfile.mkstemp(prefix="sqlml-demo-", suffix=".toml")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path
