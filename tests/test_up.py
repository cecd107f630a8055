"""`make up` / `make down` on both servers: the Makefile's own commands, on a free port.

The commands are taken from `make -n up` / `make -n down` (so the test follows the
Makefile, not a copy of it) and run with a temporary RUN_DIR and a free PORT instead
of 3307; `build` is not repeated (the suite already runs on this build). `up` must
leave a server on 127.0.0.1:<port> taking root without a password, with sqlml wired
to its own `sqlml serve`; `down` must leave no process of either running.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path

import pymysql
import pytest

from tests.conftest import KINDS
from tests.servers import FLAVORS, ServerUnavailable, ensure_software, free_port

ROOT = Path(__file__).resolve().parent.parent


def make_command(target: str, **variables: str) -> str:
    """The recipe line of `target` that runs demo.up, as make would run it."""
    dry = subprocess.run(["make", "-n", target, *(f"{k}={v}" for k, v in variables.items())],
                         cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    lines = [line for line in dry.stdout.splitlines() if "-m demo.up" in line]
    assert len(lines) == 1, dry.stdout
    return lines[0]


def processes_of(run_dir: Path) -> list[str]:
    """Command lines of live processes that belong to this run dir (server or service)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if str(run_dir) in cmdline and state != "Z":
            found.append(f"{proc.name}: {cmdline[:200]}")
    return found


@pytest.mark.parametrize("kind", KINDS)
def test_make_up_serves_root_without_password_with_sqlml_and_make_down_stops_everything(kind, tmp_path):
    try:
        ensure_software(kind)
    except ServerUnavailable as exc:
        pytest.skip(f"the {kind} leg was not run: {exc}")
    run_dir, port = tmp_path / "run", free_port()
    up = make_command("up", SERVER=kind, PORT=str(port), RUN_DIR=str(run_dir))
    assert f"--server {kind}" in up and f"--port {port}" in up
    result = subprocess.run(up, shell=True, cwd=ROOT, capture_output=True, text=True, timeout=300)
    try:
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"on 127.0.0.1:{port} (user root, no password)" in result.stdout
        stack = json.loads((run_dir / f"up-{kind}" / "stack.json").read_text())
        # `make up` returned: the server and the service outlive it.
        with pymysql.connect(host="127.0.0.1", port=port, user="root", password="", autocommit=True) as conn:
            with conn.cursor() as cur:
                cur.execute("SELECT CONVERT(sqlml_version() USING utf8mb4), CONVERT(sqlml_status() USING utf8mb4)")
                version, status = cur.fetchone()
                assert f"server {FLAVORS[kind]}" in version
                settings = json.loads(status)["settings"]
                assert settings["comprehend_endpoint_url"] == stack["service_url"]
                assert settings["sagemaker_endpoint_url"] == stack["service_url"]
                cur.execute("SELECT CONVERT(aws_comprehend_detect_sentiment('What a wonderful, lovely day', 'en') "
                            "USING utf8mb4), aws_comprehend_detect_sentiment('This is awful and broken', 'en'), "
                            "aws_sagemaker_invoke_endpoint_real('random-cut-forest-model-demo', 'REAL', 1, 12000)")
                positive, negative, score = cur.fetchone()
        assert (positive, bytes(negative).decode() if isinstance(negative, bytes) else negative) \
            == ("POSITIVE", "NEGATIVE")
        assert score > 0  # a Random Cut Forest anomaly score
        assert processes_of(run_dir), "nothing of `make up` is running"
        service_group = int((run_dir / f"up-{kind}" / "service.pid").read_text())
    finally:
        down = make_command("down", RUN_DIR=str(run_dir))
        stopped = subprocess.run(down, shell=True, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert f"stopped: up-{kind}" in stopped.stdout
    assert processes_of(run_dir) == []  # `down` returns once no process is left
    with pytest.raises(ProcessLookupError):
        os.killpg(service_group, 0)  # the service's forked workers are gone too
    with pytest.raises(pymysql.err.OperationalError):
        pymysql.connect(host="127.0.0.1", port=port, user="root", password="", connect_timeout=2)
    again = subprocess.run(shlex.split(down.split("then ", 1)[1].split(";", 1)[0]), cwd=ROOT,
                           capture_output=True, text=True, timeout=60, env=os.environ)
    assert "nothing was running" in again.stdout
