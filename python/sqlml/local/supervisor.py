"""Process model and entry points of the local service: ``main(argv)`` and ``serve(...)``.

``main`` (``sqlml serve``) loads the config, trains/loads every endpoint once, binds
one listening socket, then forks ``workers`` processes that all serve that socket
(``server.HTTPServer``), so requests use every core while the models are built once and
shared copy-on-write. The supervisor prints ``sqlml serve listening on URL`` when
ready, restarts a worker that dies, and on SIGTERM/SIGINT stops the workers and exits.
Workers exit by themselves if the supervisor disappears (they watch a pipe to it).
``workers = 0`` serves from threads of the supervisor itself (no fork).

``serve(config)`` is the Python API for tests and tools: it runs ``main`` in a child
process (never forking the caller, which may have threads) and returns a
:class:`LocalService` handle with ``.url`` and ``.stop()``; the child stops if the caller
dies. ``serve(config, workers=0)`` serves from threads of the caller instead.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import deque
from pathlib import Path

from .config import ConfigError, ServerConfig, is_loopback, load_config

READY_PREFIX = "sqlml serve listening on "
_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
_RESPAWN_MIN_INTERVAL_S = 1.0  # a worker that keeps crashing is restarted at most once a second


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _limit_native_threads() -> None:
    """One native thread per model call. The service scales by processes, and an OpenMP
    pool (XGBoost, scikit-learn) started before the fork into workers would deadlock them.
    Must run before numpy/xgboost are imported."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"


def _write_port_file(path: str, port: int) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(f"{port}\n")
    os.replace(tmp, path)  # readers never see a half-written file


# ---------------------------------------------------------------------------
# the command line
# ---------------------------------------------------------------------------


def build_parser(prog: str = "sqlml serve") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Local Amazon Comprehend and SageMaker Runtime on 127.0.0.1: point boto3 (or sqlml's "
                    "comprehend_endpoint_url / sagemaker_endpoint_url) at the printed URL.")
    p.add_argument("--config", metavar="FILE",
                   help="TOML or JSON file declaring the endpoints (default: the shipped demo config, endpoint "
                        "'random-cut-forest-model-demo')")
    p.add_argument("--host", help="address to listen on (default 127.0.0.1; the service checks no credentials)")
    p.add_argument("--port", type=int, help="port (default 8080; 0 = any free port)")
    p.add_argument("--workers", type=int,
                   help="worker processes (default: one per CPU; 0 = threads of a single process)")
    p.add_argument("--port-file", metavar="FILE", help="write the port number here once listening")
    p.add_argument("--verbose", "-v", action="store_true", help="log every request to stderr")
    # internal: used by serve() so that the service dies with its caller
    p.add_argument("--exit-on-stdin-eof", action="store_true", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    """``sqlml serve``: run until SIGTERM/SIGINT. Returns the process exit status."""
    args = build_parser().parse_args(argv)
    _limit_native_threads()
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"sqlml serve: {exc}", file=sys.stderr)
        return 2
    host = args.host or config.host
    port = config.port if args.port is None else args.port
    workers = config.workers if args.workers is None else args.workers
    workers = default_workers() if workers is None else workers
    if not 0 <= port <= 65535 or not 0 <= workers <= 256:
        print("sqlml serve: --port must be 0-65535 and --workers 0-256", file=sys.stderr)
        return 2
    if not is_loopback(host):
        print(f"sqlml serve: WARNING: listening on {host}: anyone who can reach it can use the service "
              "(no credentials are checked)", file=sys.stderr)

    from .httpd import App, listen

    # Block the stop signals before any thread exists: every thread inherits the mask
    # and the main thread collects them with sigwait, so no handler runs mid-operation.
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS | {signal.SIGCHLD})
    try:
        app = App.load(config)
        try:
            sock = listen(host, port)
        except OSError as exc:
            print(f"sqlml serve: cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
            return 1
        bound_port = sock.getsockname()[1]
        url = f"http://{'[' + host + ']' if ':' in host else host}:{bound_port}"
        supervisor = _Supervisor(app, sock, workers, config.idle_timeout_s, args.verbose)
        try:
            supervisor.start()
            if args.port_file:
                _write_port_file(args.port_file, bound_port)
            print(f"{READY_PREFIX}{url}", flush=True)
            if args.exit_on_stdin_eof:
                threading.Thread(target=_exit_on_eof, args=(sys.stdin.fileno(),), daemon=True).start()
            supervisor.run()
        finally:
            supervisor.stop()
            sock.close()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
    return 0


def _exit_on_eof(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except OSError:
        pass
    os.kill(os.getpid(), signal.SIGTERM)


class _Supervisor:
    """Forks and watches the worker processes (or, with 0 workers, serves in-process)."""

    def __init__(self, app, sock, workers: int, idle_timeout_s: float, verbose: bool) -> None:
        self.app = app
        self.sock = sock
        self.workers = workers
        self.idle_timeout_s = idle_timeout_s
        self.verbose = verbose
        self.children: dict[int, int] = {}  # pid -> slot
        self.last_spawn: dict[int, float] = {}
        self.lifeline_r, self.lifeline_w = os.pipe()  # workers see EOF when the supervisor is gone
        self.inline = None

    def start(self) -> None:
        if self.workers == 0:
            from .httpd import HTTPServer

            self.inline = HTTPServer(self.sock, self.app, self.idle_timeout_s, self.verbose)
            threading.Thread(target=self.inline.serve_forever, kwargs={"poll_interval": 0.5},
                             name="sqlml-serve", daemon=True).start()
            return
        for slot in range(self.workers):
            self._spawn(slot)

    def _spawn(self, slot: int) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                _worker(self.app, self.sock, self.lifeline_r, self.lifeline_w, self.idle_timeout_s, self.verbose)
                code = 0
            except BaseException:  # noqa: BLE001 - a forked child must never return into the parent's code
                import traceback

                traceback.print_exc()
            finally:
                os._exit(code)
        self.children[pid] = slot
        self.last_spawn[slot] = time.monotonic()

    def run(self) -> None:
        while True:
            info = signal.sigtimedwait(_STOP_SIGNALS | {signal.SIGCHLD}, 1.0)
            if info is not None and info.si_signo in _STOP_SIGNALS:
                return
            self._reap(respawn=True)

    def _reap(self, respawn: bool) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            slot = self.children.pop(pid, None)
            if slot is None or not respawn:
                continue
            print(f"sqlml serve: worker {pid} exited ({_describe_status(status)}); starting a new one",
                  file=sys.stderr, flush=True)
            wait = _RESPAWN_MIN_INTERVAL_S - (time.monotonic() - self.last_spawn.get(slot, 0.0))
            if wait > 0:
                time.sleep(wait)
            self._spawn(slot)

    def stop(self, timeout_s: float = 5.0) -> None:
        if self.inline is not None:
            self.inline.shutdown()
            self.inline.close_connections()
            return
        for pid in list(self.children):
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while self.children and time.monotonic() < deadline:
            self._reap(respawn=False)
            time.sleep(0.02)
        for pid in list(self.children):  # still there: a handler is stuck in native code
            _signal(pid, signal.SIGKILL)
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
            self.children.pop(pid, None)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.WEXITSTATUS(status)}"


def _worker(app, sock, lifeline_r: int, lifeline_w: int, idle_timeout_s: float, verbose: bool) -> None:
    """A worker process: serve the shared socket until SIGTERM or the supervisor's death."""
    from .httpd import HTTPServer

    os.close(lifeline_w)  # keep only the read end: EOF there means the supervisor is gone
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the supervisor decides
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
    server = HTTPServer(sock, app, idle_timeout_s, verbose)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.5}, name="serve", daemon=True).start()
    threading.Thread(target=_exit_on_eof, args=(lifeline_r,), name="lifeline", daemon=True).start()
    signal.sigwait({signal.SIGTERM})
    server.shutdown()  # stop accepting; requests in flight finish on their own threads
    deadline = time.monotonic() + 2.0
    while server.busy() and time.monotonic() < deadline:
        time.sleep(0.02)
    server.close_connections()


# ---------------------------------------------------------------------------
# the Python API
# ---------------------------------------------------------------------------


class LocalService:
    """A running local service: ``url``, ``stop()``, usable as a context manager."""

    def __init__(self, url: str, stop, pid: int) -> None:
        self.url = url
        self.pid = pid  # the supervisor process (this process when serving in-process)
        self._stop = stop

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def status(self, timeout_s: float = 5.0) -> dict:
        """GET /ping: every endpoint's status (InService or Failed with its reason)."""
        with urllib.request.urlopen(f"{self.url}/ping", timeout=timeout_s) as r:
            return json.loads(r.read())

    def stop(self) -> None:
        stop, self._stop = self._stop, None
        if stop is not None:
            stop()

    def __enter__(self) -> "LocalService":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __del__(self) -> None:  # a forgotten handle must not leave a service running
        try:
            self.stop()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


def serve(config: str | os.PathLike | dict | ServerConfig | None = None, host: str = "127.0.0.1", port: int = 0,
          workers: int | None = None, verbose: bool = False, start_timeout_s: float = 120.0) -> LocalService:
    """Start the local service and return once it accepts requests.

    *config*: a TOML/JSON path, a dict in the same shape, a ServerConfig, or None for the
    shipped demo config. *host*/*port* are always these arguments (port 0: any free port);
    *workers*: worker processes (None: the config's ``server.workers``, else one per CPU);
    0 serves from threads of this process. Raises ConfigError for a bad config, RuntimeError if the
    service cannot start (with its stderr).
    """
    cfg = load_config(config)
    if workers is None:
        workers = default_workers() if cfg.workers is None else cfg.workers
    if workers == 0:
        return _serve_inline(cfg, host, port, verbose)
    return _serve_subprocess(cfg, host, port, workers, verbose, start_timeout_s)


def _serve_inline(cfg: ServerConfig, host: str, port: int, verbose: bool) -> LocalService:
    from .httpd import App, HTTPServer, listen

    app = App.load(cfg)
    sock = listen(host, port)
    server = HTTPServer(sock, app, cfg.idle_timeout_s, verbose)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              name="sqlml-serve", daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.close_connections()
        sock.close()
        thread.join(5)

    return LocalService(f"http://{host}:{sock.getsockname()[1]}", stop, os.getpid())


def _serve_subprocess(cfg: ServerConfig, host: str, port: int, workers: int, verbose: bool,
                      start_timeout_s: float) -> LocalService:
    fd, config_path = tempfile.mkstemp(prefix="sqlml-serve-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        f.write(cfg.to_json())
    argv = [sys.executable, "-m", "sqlml.local", "--config", config_path, "--host", host, "--port", str(port),
            "--workers", str(workers), "--exit-on-stdin-eof"] + (["--verbose"] if verbose else [])
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[2])
    if package_root not in _site_dirs():
        # running from a source tree: the child must import this very copy of sqlml (but an
        # installed copy needs nothing, and site-packages on PYTHONPATH would precede the stdlib)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    tail: deque[str] = deque(maxlen=40)
    forwarder = threading.Thread(target=_forward_stderr, args=(proc.stderr, tail), daemon=True)
    forwarder.start()
    try:
        url = _await_ready(proc, start_timeout_s)
    except Exception as exc:
        _stop_process(proc)
        forwarder.join(2.0)  # collect the child's last words for the message
        raise RuntimeError(f"sqlml serve did not start ({exc}; exit status {proc.poll()}):\n"
                           + "".join(tail)) from None
    except BaseException:  # e.g. KeyboardInterrupt: leave nothing running, then let it through
        _stop_process(proc)
        raise
    finally:
        os.unlink(config_path)  # read by now: the child prints the ready line after loading it

    def stop() -> None:
        _stop_process(proc)

    return LocalService(url, stop, proc.pid)


def _site_dirs() -> set[str]:
    import site

    dirs = set(site.getsitepackages()) | {site.getusersitepackages()}
    return {str(Path(d).resolve()) for d in dirs}


def _await_ready(proc: subprocess.Popen, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    buffered = b""
    fd = proc.stdout.fileno()
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                raise RuntimeError("exited")
            buffered += chunk
            for line in buffered.decode("utf-8", "replace").splitlines():
                if line.startswith(READY_PREFIX):
                    # keep draining stdout so a chatty child never blocks on a full pipe
                    threading.Thread(target=_drain, args=(proc.stdout,), daemon=True).start()
                    return line[len(READY_PREFIX):].strip()
        elif proc.poll() is not None:
            raise RuntimeError("exited")
    raise TimeoutError(f"not ready after {timeout_s} s")


def _drain(stream) -> None:
    try:
        while stream.read(65536):
            pass
    except (OSError, ValueError):
        pass


def _forward_stderr(stream, tail: deque) -> None:
    try:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace")
            tail.append(line)
            try:
                sys.stderr.write(line)
            except (OSError, ValueError):
                pass
    except (OSError, ValueError):
        pass


def _stop_process(proc: subprocess.Popen, timeout_s: float = 10.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for stream in (proc.stdin, proc.stdout):
        try:
            stream.close()
        except (OSError, ValueError):
            pass
