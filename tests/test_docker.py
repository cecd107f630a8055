"""The server Docker images: their install steps on our own servers, and the images themselves.

docker/install-sqlml.sh is everything the images do to install sqlml: `files` at build
time, `sql` at first start through the entrypoint hook docker/initdb.d/50-sqlml.sh.
Here that script and that hook run against private servers of every leg (MariaDB
10.11 and 11.8, MySQL 9.7) configured the way a container is (settings only in the server's environment,
sqlml.cnf naming nothing but the python), wired to the local inference service; then
the seed script (demo/seed.py) runs through the server's own command-line client and
its answers are checked against the service's own. The last test builds each image
and does the same in a container: it needs a Docker engine, and without one it
reports itself as not run (there is none on the project's machines).
"""

from __future__ import annotations

import configparser
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pymysql
import pytest
from botocore.config import Config

from demo.seed import seed_sql
from sqlml import __version__, installer
from sqlml.local import demo_taxi_events, demo_taxi_series, serve
from tests.conftest import KINDS
from tests.servers import ServerUnavailable, free_port, start_server

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "docker" / "install-sqlml.sh"
HOOK = ROOT / "docker" / "initdb.d" / "50-sqlml.sh"
VENV = Path(sys.executable).parent.parent  # the venv holding this build of sqlml
DOCKERFILES = {"mysql": ROOT / "docker" / "mysql.Dockerfile", "mariadb": ROOT / "docker" / "mariadb.Dockerfile"}
# The series `make test` runs on (sqlml.support.TESTED); MySQL 8.4 stays a build argument.
BASE_IMAGES = {"mysql": "mysql:9.7", "mariadb": "mariadb:11.8"}
FUNCTIONS = {"aws_comprehend_detect_sentiment", "aws_sagemaker_invoke_endpoint_real", "sqlml_version",
             "sqlml_status", "sqlml_warm_sagemaker", "sqlml_warm_comprehend"}


def run_script(*args: str, env: dict | None = None, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], input=stdin, capture_output=True, timeout=300,
                          env={**os.environ, "SQLML_VENV": str(VENV), **(env or {})})


def client_argv(server) -> list[str]:
    return server.client_argv()


@pytest.fixture(scope="module")
def local_service():
    """`sqlml serve` with its shipped demo config (VADER; the RCF demo endpoint)."""
    with serve() as service:
        yield service


def service_env(url: str) -> dict[str, str]:
    """A container's configuration: endpoint overrides and region, no credentials at all."""
    return {"SQLML_COMPREHEND_ENDPOINT_URL": url, "SQLML_SAGEMAKER_ENDPOINT_URL": url,
            "AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}


@pytest.fixture(scope="module", params=KINDS)
def fresh_server(request, tmp_path_factory, local_service):
    """A fresh server that got sqlml the way the images do: `files` before the first start."""
    kind = request.param
    base = tmp_path_factory.mktemp(f"image-{kind}")
    plugins = base / "plugins"
    plugins.mkdir()
    files = run_script("files", str(plugins))
    assert files.returncode == 0, files.stderr.decode()
    env = service_env(local_service.url)
    try:
        server = start_server(kind, base / "db", free_port(), plugins, env=env, fresh=True)
    except ServerUnavailable as exc:
        pytest.skip(f"the {kind} leg was not run: {exc}")
    try:
        yield server
    finally:
        server.stop()


def udfs(server) -> set[str]:
    with server.connect(database="mysql") as conn, conn.cursor() as cur:
        cur.execute("SELECT name FROM mysql.func WHERE dl = 'sqlml.so'")
        return {name for (name,) in cur.fetchall()}


def test_files_step_copies_the_library_and_a_cnf_naming_only_the_python(tmp_path):
    result = run_script("files", str(tmp_path))
    assert result.returncode == 0, result.stderr.decode()
    assert (tmp_path / "sqlml.so").read_bytes() == Path(installer.library_file()).read_bytes()
    cnf = configparser.ConfigParser()
    cnf.read(tmp_path / "sqlml.cnf")
    # Anything else in sqlml.cnf would override the container's environment.
    assert dict(cnf["sqlml"]) == {"python": str(VENV / "bin" / "python")}
    assert f"python = {VENV}/bin/python" in result.stdout.decode()


def test_files_step_refuses_a_missing_venv_or_plugin_dir(tmp_path):
    no_venv = run_script("files", str(tmp_path), env={"SQLML_VENV": str(tmp_path / "nowhere")})
    assert no_venv.returncode != 0 and b"set SQLML_VENV" in no_venv.stderr
    no_dir = run_script("files", str(tmp_path / "missing"))
    assert no_dir.returncode != 0 and b"does not exist" in no_dir.stderr
    assert not (tmp_path / "sqlml.so").exists()
    usage = run_script()
    assert usage.returncode == 2 and b"usage:" in usage.stderr


def test_files_step_refuses_a_library_that_cannot_load_here(tmp_path):
    broken = tmp_path / "sqlml.so"
    broken.write_bytes(b"\x7fELF truncated")
    for path in (os.environ["PATH"], ""):  # with ldd, and without it (the loader's own check)
        shell = f'PATH="{path}"; . {SCRIPT}; sqlml_check_loads {broken} {VENV}/bin/python'
        result = subprocess.run(["/bin/bash", "-c", shell], capture_output=True, text=True, timeout=60)
        assert result.returncode != 0 and "cannot load here" in result.stderr, (path, result.stderr)
    good = subprocess.run(["/bin/bash", "-c", f". {SCRIPT}; sqlml_check_loads {installer.library_file()} "
                           f"{VENV}/bin/python"], capture_output=True, text=True, timeout=60)
    assert good.returncode == 0, good.stderr


def venv_view(tmp_path: Path) -> Path:
    """A venv that is this one (same python, same site-packages) but whose directory is
    tmp_path, so the python-* steps can write their records there."""
    for name in ("bin", "lib", "pyvenv.cfg"):
        (tmp_path / name).symlink_to(VENV / name)
    return tmp_path


def test_python_runtime_step_accepts_exactly_the_python_the_build_step_recorded(tmp_path):
    venv = venv_view(tmp_path)
    recorded = run_script("python-packages", env={"SQLML_VENV": str(venv)})
    assert recorded.returncode == 0, recorded.stderr.decode()
    packages = (venv / "python-packages").read_text().split()
    # The interpreter, its stdlib and the libpython sqlml.so links, each with its version.
    assert packages and all("=" in p or re.search(r"-\d", p) for p in packages), packages
    assert any("libpython" in p for p in packages), packages
    assert (venv / "python-version").read_text().strip() == sys.version
    runtime = run_script("python-runtime", env={"SQLML_VENV": str(venv)})
    assert runtime.returncode == 0, runtime.stderr.decode()
    assert f"Python {sys.version}, as in the build stage" in runtime.stdout.decode()


def test_python_runtime_step_fails_on_another_interpreter_than_the_build_stage_linked(tmp_path):
    venv = venv_view(tmp_path)
    assert run_script("python-packages", env={"SQLML_VENV": str(venv)}).returncode == 0
    (venv / "python-version").write_text("3.11.0 (built elsewhere)\n")
    runtime = run_script("python-runtime", env={"SQLML_VENV": str(venv)})
    assert runtime.returncode != 0
    assert b"sqlml was built against Python 3.11.0 (built elsewhere), this image runs" in runtime.stderr
    (venv / "python-packages").unlink()
    missing = run_script("python-runtime", env={"SQLML_VENV": str(venv)})
    assert missing.returncode != 0 and b"run python-packages in the build stage" in missing.stderr


def test_files_step_finds_the_plugin_dir_of_the_server_on_path():
    found = subprocess.run(["bash", "-c", f". {SCRIPT}; sqlml_server_plugin_dir"], capture_output=True,
                           text=True, timeout=60, env={**os.environ, "PATH": f"{os.environ['PATH']}:/usr/sbin"})
    assert found.returncode == 0, found.stderr
    plugin_dir = Path(found.stdout.strip())
    # Debian's MariaDB ships its own plugins there (e.g. auth_ed25519.so).
    assert plugin_dir.is_dir() and list(plugin_dir.glob("*.so")), plugin_dir


def test_sql_step_installs_the_functions_through_the_servers_client(fresh_server, local_service):
    result = run_script("sql", *client_argv(fresh_server))
    assert result.returncode == 0, result.stderr.decode()
    assert f"library {__version__}" in result.stdout.decode()
    assert FUNCTIONS <= udfs(fresh_server)
    with fresh_server.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT CONVERT(sqlml_status() USING utf8mb4)")
        settings = json.loads(cur.fetchone()[0])["settings"]
    # The endpoints came from the server's environment alone.
    assert settings["comprehend_endpoint_url"] == local_service.url
    assert settings["sagemaker_endpoint_url"] == local_service.url


def source_hook(server, venv: Path) -> subprocess.CompletedProcess:
    """Sources the first-start hook as the official entrypoint does: in a `set -eo pipefail`
    shell where docker_process_sql is the server's client (with the root password there)."""
    shell = ('set -eo pipefail; client=("$@"); docker_process_sql() { "${client[@]}" "$@"; }; '
             f'. {HOOK}; echo hook-finished')
    return subprocess.run(["bash", "-c", shell, "entrypoint", *client_argv(server)], capture_output=True,
                          text=True, timeout=300,
                          env={**os.environ, "SQLML_VENV": str(venv), "SQLML_INSTALL_SCRIPT": str(SCRIPT)})


def test_first_start_hook_installs_through_docker_process_sql(fresh_server):
    with fresh_server.connect(database="mysql") as conn:
        installer.uninstall(conn, log=lambda *_: None)
    assert udfs(fresh_server) == set()
    result = source_hook(fresh_server, VENV)
    assert result.returncode == 0, result.stderr
    assert f"library {__version__}" in result.stdout and "hook-finished" in result.stdout
    assert FUNCTIONS <= udfs(fresh_server)


def test_hook_fails_the_first_start_when_the_python_is_broken(fresh_server, tmp_path):
    # A broken environment must stop the container's first start, not leave a server
    # whose functions fail later: here the venv named by SQLML_VENV does not exist.
    result = source_hook(fresh_server, tmp_path)
    assert result.returncode != 0
    assert "hook-finished" not in result.stdout


# ---------------------------------------------------------------- the seed script


def batch_sections(output: str) -> dict[str, list[list[str]]]:
    """Splits a client's batch (-B) output into result sets keyed by their header line."""
    headers = {"sqlml_version", "product_id\tavg_sentiment\tconfident_reviews", "score_cutoff",
               "ts\tvalue\tscore", "Variable_name\tValue"}
    sections: dict[str, list[list[str]]] = {}
    current = None
    for line in output.splitlines():
        if line in headers:
            current = line if line not in sections else line + " (2)"
            sections[current] = []
        elif current is not None:
            sections[current].append(line.split("\t"))
    return sections


def expected_sentiment(url: str) -> dict[int, tuple[float, int]]:
    """Seed query 1 computed from the service's own answers through boto3."""
    from demo.data import REVIEWS

    client = boto3.client("comprehend", endpoint_url=url, region_name="us-east-1",
                          aws_access_key_id="x", aws_secret_access_key="x",
                          config=Config(retries={"mode": "standard", "total_max_attempts": 1}))
    values: dict[int, list[float]] = {}
    for product, text in REVIEWS:
        answer = client.detect_sentiment(Text=text, LanguageCode="en")
        label = answer["Sentiment"]
        if answer["SentimentScore"][label.capitalize()] >= 0.6:
            values.setdefault(product, []).append({"POSITIVE": 1.0, "NEGATIVE": -1.0}.get(label, 0.0))
    return {p: (sum(v) / len(v), len(v)) for p, v in values.items()}


def check_seed_output(output: str, service_url: str) -> None:
    sections = batch_sections(output)
    assert f"library {__version__}" in sections["sqlml_version"][0][0]
    got = {int(p): (float(avg), int(n)) for p, avg, n in sections["product_id\tavg_sentiment\tconfident_reviews"]}
    want = expected_sentiment(service_url)
    assert got.keys() == want.keys()
    for product, (avg, n) in want.items():
        assert got[product][1] == n and abs(got[product][0] - avg) < 1e-4, (product, got[product], avg, n)
    batched, aurora = sections["ts\tvalue\tscore"], sections["ts\tvalue\tscore (2)"]
    assert batched == aurora and batched  # the same rows, each with its own score
    cutoff = float(sections["score_cutoff"][0][0])
    assert all(float(score) > cutoff - 1e-3 for _, _, score in batched)
    taxi = demo_taxi_series()
    known = {taxi[i][0] for i in demo_taxi_events()}
    assert known <= {ts for ts, _, _ in batched}, "the generated series' known anomalies were not all found"


def test_seed_script_through_the_client_answers_like_the_service(fresh_server, local_service):
    install = run_script("sql", *client_argv(fresh_server))
    assert install.returncode == 0, install.stderr.decode()
    with fresh_server.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT sqlml_cache_clear()")
    started = time.monotonic()
    result = subprocess.run([*client_argv(fresh_server), "-B", "--default-character-set=utf8mb4"],
                            input=seed_sql(demo_taxi_series()).encode(), capture_output=True, timeout=300)
    assert result.returncode == 0, result.stderr.decode()
    check_seed_output(result.stdout.decode(), local_service.url)
    aurora = {name.removeprefix("Aurora_ml_"): int(value)
              for name, value in batch_sections(result.stdout.decode())["Variable_name\tValue"]}
    # The anomaly query's 10,320 readings went in batches, not one request per row.
    assert aurora["actual_request_cnt"] < 100, aurora
    assert time.monotonic() - started < 120


# ---------------------------------------------------------------- the Dockerfiles


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_dockerfile_installs_with_the_tested_script_on_the_official_image(kind):
    text = DOCKERFILES[kind].read_text()
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    base_arg = re.search(r"^ARG (\w+_IMAGE)=(\S+)$", text, re.M)
    assert base_arg and base_arg.group(2) == BASE_IMAGES[kind]  # a pinned series, never :latest
    froms = [line for line in lines if line.startswith("FROM ")]
    assert froms == [f"FROM ${{{base_arg.group(1)}}} AS build", f"FROM ${{{base_arg.group(1)}}}"]  # multi-stage
    # The official entrypoint stays: it runs the initdb hook and steps down to the mysql user.
    assert not any(line.split()[0] in ("USER", "ENTRYPOINT", "CMD") for line in lines)
    assert "COPY docker/install-sqlml.sh /usr/local/bin/install-sqlml.sh" in lines
    assert "COPY docker/initdb.d/50-sqlml.sh /docker-entrypoint-initdb.d/50-sqlml.sh" in text
    assert "chmod 0644 /docker-entrypoint-initdb.d/50-sqlml.sh" in text  # sourced, not executed
    assert "install-sqlml.sh files" in text
    if kind == "mysql":
        assert "--build-arg MYSQL_IMAGE=mysql:8.4" in text  # the other LTS, documented
    # The runtime stage's Python is exactly the build stage's: recorded there, installed
    # here from that record and checked, and installed no other way.
    build, runtime = text.split(f"FROM ${{{base_arg.group(1)}}}\n")
    assert "install-sqlml.sh python-packages" in build.split("pip install")[-1]
    assert runtime.index("install-sqlml.sh python-runtime") < runtime.index("install-sqlml.sh files")
    assert "python3" not in runtime.replace("install-sqlml.sh python-runtime", "")
    assert "COPY --from=build /opt/sqlml /opt/sqlml" in lines
    for line in lines:  # every path the build copies from the repository exists
        if line.startswith("COPY ") and "--from=" not in line:
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), f"{DOCKERFILES[kind].name}: {source} does not exist"
    # Only what the build needs is in the context (no venv or build tree with host paths).
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", "build", ".run"} <= set(ignored)


# ---------------------------------------------------------------- the images, where Docker exists


@pytest.fixture(scope="module")
def docker_engine():
    import docker

    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:  # docker raises DockerException or requests' errors
        pytest.skip(f"not run: no Docker engine reachable from here ({type(exc).__name__}: {exc}); "
                    "it builds and runs the images wherever one is (DOCKER_HOST or /var/run/docker.sock)")
    return client


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_image_builds_starts_and_answers_the_seed_queries(kind, docker_engine):
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.image import DockerImage

    password = "sqlml-test"
    root_password = {"mysql": "MYSQL_ROOT_PASSWORD", "mariadb": "MARIADB_ROOT_PASSWORD"}[kind]
    client = {"mysql": "mysql", "mariadb": "mariadb"}[kind]
    # The container reaches the service on the host through Docker's host gateway.
    with serve(host="0.0.0.0") as service, \
            DockerImage(path=str(ROOT), dockerfile_path=f"docker/{DOCKERFILES[kind].name}",
                        tag=f"sqlml-{kind}:test") as image:
        url = f"http://host.docker.internal:{service.url.rsplit(':', 1)[1]}"
        container = DockerContainer(str(image)).with_exposed_ports(3306) \
            .with_kwargs(extra_hosts={"host.docker.internal": "host-gateway"})
        for key, value in {**service_env(url), root_password: password}.items():
            container = container.with_env(key, value)
        with container:
            host, port = container.get_container_host_ip(), int(container.get_exposed_port(3306))
            deadline = time.monotonic() + 300
            while True:  # the first start's temporary server has no TCP: this is the real one
                try:
                    pymysql.connect(host=host, port=port, user="root", password=password).close()
                    break
                except pymysql.err.OperationalError:
                    container.reload()
                    assert container.status == "running", container.get_logs()
                    assert time.monotonic() < deadline, container.get_logs()
                    time.sleep(1)
            logs = b"".join(container.get_logs()).decode(errors="replace")
            assert f"install-sqlml.sh: sqlml {__version__} (library {__version__}" in logs, logs
            container.copy_into_container(seed_sql(demo_taxi_series()).encode(), "/tmp/seed.sql")
            result = container.exec(["sh", "-c", f"{client} -uroot -p{password} -B "
                                                 "--default-character-set=utf8mb4 < /tmp/seed.sql"])
            assert result.exit_code == 0, result.output
            check_seed_output(result.output.decode(), service.url.replace("0.0.0.0", "127.0.0.1"))
