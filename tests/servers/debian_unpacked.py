"""Server binaries from a newer Debian suite, unpacked into a private directory.

Two legs need binaries bookworm does not carry: Oracle MySQL 9.7 (Debian sid) and
MariaDB 11.8 LTS (Debian trixie). Both need a newer glibc than bookworm's, so they
are never installed into the system: the .debs are fetched with a private apt
configuration (own sources, lists, cache and an empty dpkg status, so the host's
apt state is neither read nor touched), unpacked with `dpkg -x`, and run through
the suite's own dynamic loader (see `loader_command`). One fetcher serves both;
an `Unpacked` record says which suite and which packages.

Each unpacked root is cached (default ~/.cache/sqlml/<name>, override with the
record's env variable) and reused; a marker file is written only once everything
is unpacked, so an interrupted fetch is redone rather than half-used. The suites
move, so packages are resolved by name on every fetch and file names are never
pinned.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from .errors import ServerUnavailable



@dataclasses.dataclass(frozen=True)
class Unpacked:
    """One server's binaries from one Debian suite."""

    name: str                  # cache dir name under ~/.cache/sqlml
    suite: str                 # Debian suite the sources line names
    top_packages: tuple[str, ...]  # their dependency closure is the server + client
    server_binary: str         # relative to the root; its presence proves the unpack
    root_env: str              # environment variable that overrides the cache dir
    label: str                 # for messages


MYSQL_SID = Unpacked("mysql-sid", "sid", ("mysql-server-core", "mysql-client-core"), "usr/sbin/mysqld",
                     "SQLML_MYSQL_ROOT", "Oracle MySQL 9.7 (Debian sid)")
MARIADB_TRIXIE = Unpacked("mariadb-trixie", "trixie", ("mariadb-server-core", "mariadb-client-core"),
                          "usr/sbin/mariadbd", "SQLML_MARIADB118_ROOT", "MariaDB 11.8 (Debian trixie)")

KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
MARKER = ".sqlml-complete"
MULTIARCH = "x86_64-linux-gnu"
LOADER = f"usr/lib/{MULTIARCH}/ld-linux-x86-64.so.2"
# The host's own library dirs go AFTER the suite's: its newer glibc/OpenSSL must win,
# but the sqlml library loaded into the server links bookworm's libpython3.11, which
# the newer suite does not ship, so it (and its deps) must still be findable.
SYSTEM_LIB_DIRS = (f"/usr/lib/{MULTIARCH}", f"/lib/{MULTIARCH}")
# Generous: the first fetch downloads ~55 MB (MySQL); apt has its own per-connection timeouts.
APT_TIMEOUT = 900


def default_root(spec: Unpacked) -> Path:
    env = os.environ.get(spec.root_env)
    if env:
        return Path(env).expanduser().resolve()
    return Path.home() / ".cache" / "sqlml" / spec.name


def is_complete(spec: Unpacked, root: Path) -> bool:
    return (root / MARKER).is_file() and (root / spec.server_binary).is_file()


def unpacked_root(spec: Unpacked, fetch: bool = True, log=None) -> Path:
    """Return the unpacked root of `spec`, fetching it first if needed.

    Raises ServerUnavailable with the precise reason when it cannot be had.
    `log`, if given, is called with progress strings (a fetch takes ~15 s).
    """
    root = default_root(spec)
    if is_complete(spec, root):
        return root
    if not fetch:
        raise ServerUnavailable(f"{spec.label} is not unpacked in {root} "
                                f"(run: python -m tests.servers fetch {spec.name})")
    root.parent.mkdir(parents=True, exist_ok=True)
    # Parallel test workers may all want it at once: one fetches, the others wait.
    with _file_lock(root.parent / (root.name + ".lock")):
        if is_complete(spec, root):
            return root
        _fetch_into(spec, root, log or (lambda msg: None))
    return root


def mysql_root(fetch: bool = True, log=None) -> Path:
    return unpacked_root(MYSQL_SID, fetch, log)


def mariadb118_root(fetch: bool = True, log=None) -> Path:
    return unpacked_root(MARIADB_TRIXIE, fetch, log)


def library_dirs(root: Path) -> list[str]:
    """The suite's library dirs first, then the host's (see SYSTEM_LIB_DIRS).

    Only the multiarch dirs: sid and trixie are fully usr-merged and the server's
    whole closure (ICU, OpenSSL, protobuf, ...) lives there. Plugin dirs such as
    gconv/ or ossl-modules/ are deliberately not listed: they are not library dirs.
    """
    dirs = [str(d) for d in (root / f"usr/lib/{MULTIARCH}", root / f"lib/{MULTIARCH}")
            if d.is_dir() and not d.is_symlink()]
    return dirs + list(SYSTEM_LIB_DIRS)


def loader_command(root: Path | str) -> list[str]:
    """argv prefix that runs an unpacked binary through its suite's loader and libraries.

    Usage: loader_command(root) + [str(root / "usr/sbin/mysqld"), ...].
    --library-path acts like LD_LIBRARY_PATH for the whole process, so later
    dlopen() calls (UDF libraries, libpython, Python extension modules) use it too,
    while children of the process are not affected.
    """
    root = Path(root)
    loader = root / LOADER
    if not loader.exists():
        raise ServerUnavailable(f"the unpacked suite's dynamic loader is missing: {loader}")
    return [str(loader), "--library-path", ":".join(library_dirs(root))]


# --------------------------------------------------------------------------- fetch

@contextlib.contextmanager
def _file_lock(path: Path):
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def archive_uri() -> str:
    """The archive URI of the machine's own main Debian entry (read at run time,
    because CI machines may point at a different mirror or proxy)."""
    # SQLML_SID_MIRROR is the older name, from when sid was the only suite fetched.
    override = os.environ.get("SQLML_DEBIAN_MIRROR") or os.environ.get("SQLML_SID_MIRROR")
    if override:
        return override
    codename = _os_codename()
    candidates: list[tuple[int, str]] = []
    deb822 = Path("/etc/apt/sources.list.d/debian.sources")
    if deb822.is_file():
        for stanza in re.split(r"\n\s*\n", deb822.read_text()):
            fields = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line or line[:1].isspace():
                    continue
                key, _, value = line.partition(":")
                fields[key.strip().lower()] = value.split()
            if "deb" not in fields.get("types", []) or not fields.get("uris"):
                continue
            suites = fields.get("suites", [])
            # Prefer the stanza carrying the plain release suite (not -security).
            rank = 0 if codename in suites else (1 if any("-" not in s for s in suites) else 2)
            if all("security" not in s for s in suites):
                candidates.append((rank, fields["uris"][0]))
    legacy = Path("/etc/apt/sources.list")
    if legacy.is_file():
        for line in legacy.read_text().splitlines():
            m = re.match(r"\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", line)
            if m and "security" not in m.group(2):
                candidates.append((0 if m.group(2) == codename else 1, m.group(1)))
    if not candidates:
        raise ServerUnavailable("no Debian archive URI found in /etc/apt/sources.list.d/debian.sources "
                                "or /etc/apt/sources.list (set SQLML_DEBIAN_MIRROR)")
    return sorted(candidates, key=lambda c: c[0])[0][1]


def _os_codename() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("VERSION_CODENAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "bookworm"


def _write_apt_config(work: Path, uri: str, suite: str) -> dict:
    etc, state, cache = work / "etc", work / "state", work / "cache"
    for d in (etc / "apt.conf.d", etc / "preferences.d", etc / "sources.list.d", etc / "trusted.gpg.d",
              state / "lists/partial", cache / "archives/partial"):
        d.mkdir(parents=True, exist_ok=True)
    (state / "dpkg-status").write_text("")
    (etc / "sources.list").write_text(f"deb [signed-by={KEYRING}] {uri} {suite} main\n")
    conf = work / "apt.conf"
    # Dir::Etc points apt away from /etc/apt entirely (so the host's apt.conf.d hooks,
    # proxies-for-other-things and sources are not read); the few host settings that
    # matter for a snapshot-style mirror are restated here.
    conf.write_text(f"""\
Dir::Etc "{etc}/";
Dir::Etc::main "apt.conf";
Dir::Etc::parts "apt.conf.d";
Dir::Etc::sourcelist "sources.list";
Dir::Etc::sourceparts "sources.list.d";
Dir::Etc::preferences "preferences";
Dir::Etc::preferencesparts "preferences.d";
Dir::Etc::trustedparts "trusted.gpg.d";
Dir::State "{state}/";
Dir::State::lists "lists/";
Dir::State::status "{state}/dpkg-status";
Dir::Cache "{cache}/";
Dir::Cache::archives "archives/";
Debug::NoLocking "true";
APT::Sandbox::User "root";
APT::Architecture "amd64";
APT::Architectures {{ "amd64"; }};
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
Acquire::Check-Valid-Until "false";
Acquire::Retries "2";
Acquire::http::Timeout "30";
Acquire::https::Timeout "30";
""")
    env = dict(os.environ, APT_CONFIG=str(conf), DEBIAN_FRONTEND="noninteractive", LC_ALL="C")
    env.pop("APT_LISTCHANGES_FRONTEND", None)
    return env


def _run(argv: list[str], env: dict, cwd: Path | None = None, what: str = "") -> str:
    try:
        p = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=APT_TIMEOUT)
    except FileNotFoundError as e:
        raise ServerUnavailable(f"{what or argv[0]}: {e}") from None
    except subprocess.TimeoutExpired:
        raise ServerUnavailable(f"{what or argv[0]} timed out after {APT_TIMEOUT} s") from None
    if p.returncode != 0:
        tail = "\n".join((p.stderr or p.stdout).strip().splitlines()[-8:])
        raise ServerUnavailable(f"{what or ' '.join(argv)} failed (exit {p.returncode}): {tail}")
    return p.stdout + p.stderr


def _is_perl(pkg: str) -> bool:
    # perl is only a dependency of the servers' helper scripts, not of the binaries we run.
    return pkg.startswith(("perl", "libperl")) or pkg.endswith("-perl")


def resolve_packages(spec: Unpacked, env: dict) -> list[tuple[str, str]]:
    out = _run(["apt-get", "install", "-s", "-q", *spec.top_packages], env,
               what=f"apt-get install -s ({spec.suite})")
    pkgs = []
    for line in out.splitlines():
        m = re.match(r"Inst (\S+) \((\S+) ", line)
        if m and not _is_perl(m.group(1)):
            pkgs.append((m.group(1), m.group(2)))
    if not any(name == spec.top_packages[0] for name, _ in pkgs):
        raise ServerUnavailable(f"{spec.suite} no longer resolves {spec.top_packages[0]}:\n" + out[-2000:])
    return pkgs


def _fetch_into(spec: Unpacked, root: Path, log) -> None:
    t0 = time.monotonic()
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        raise ServerUnavailable(f"apt-get/dpkg not found: {spec.label} comes from Debian packages")
    if not Path(KEYRING).is_file():
        raise ServerUnavailable(f"{KEYRING} missing (install debian-archive-keyring)")
    uri = archive_uri()
    with tempfile.TemporaryDirectory(prefix=f"sqlml-{spec.name}-fetch-", dir=root.parent) as tmp:
        work = Path(tmp)
        env = _write_apt_config(work, uri, spec.suite)
        log(f"apt-get update ({spec.suite} from {uri})")
        # --error-on=any: a plain `apt-get update` exits 0 when the mirror is unreachable.
        _run(["apt-get", "update", "-q", "--error-on=any"], env, what=f"apt-get update for {spec.suite} from {uri}")
        pkgs = resolve_packages(spec, env)
        log(f"downloading {len(pkgs)} packages")
        debs = work / "debs"
        debs.mkdir()
        _run(["apt-get", "download", "-q", *(f"{n}={v}" for n, v in pkgs)], env, cwd=debs,
             what=f"apt-get download ({spec.suite})")
        files = sorted(debs.glob("*.deb"))
        if len(files) != len(pkgs):
            raise ServerUnavailable(f"apt-get download gave {len(files)} .debs for {len(pkgs)} packages")
        log(f"unpacking {len(files)} packages")
        staging = work / "root"
        staging.mkdir()
        for deb in files:
            _run(["dpkg", "-x", str(deb), str(staging)], env, what=f"dpkg -x {deb.name}")
        if not (staging / spec.server_binary).is_file() or not (staging / LOADER).exists():
            raise ServerUnavailable(f"unpacked {spec.suite} packages lack {spec.server_binary} or the loader")
        shutil.rmtree(staging / "usr/share/doc", ignore_errors=True)  # ~10% of the size, never read
        (staging / MARKER).write_text(
            "".join(f"{n} {v}\n" for n, v in pkgs) + f"# fetched from {uri} in {time.monotonic() - t0:.1f} s\n")
        if root.exists():  # an earlier, incomplete attempt
            shutil.rmtree(root)
        staging.rename(root)
    log(f"{spec.label} root ready in {time.monotonic() - t0:.1f} s: {root}")
