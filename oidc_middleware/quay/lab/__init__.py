"""The real Quay, installed and served on loopback: source trees, cached virtualenvs, fixture
databases, and Quay's app on a WSGI server in a process of its own. For the tests against Quay,
``oidc-middleware demo --quay`` and the benchmark; it needs a checkout of this project (it installs
the checkout into Quay's virtualenvs).

Where Quay's source comes from: ``OIDC_QUAY_SOURCES`` (a directory holding ``quay-VERSION.tar.gz``
files, ``vendor/`` and ``placeholder-country.mmdb`` laid out as in ``../shared/quay/``), else
``../shared/quay/`` beside this repository. Without either, the Quay tests skip, unless
``OIDC_QUAY_REQUIRED=1`` (CI), which makes a missing Quay a failure.

What is cached, outside the repository (``OIDC_QUAY_CACHE``, default ``~/.cache/oidc-middleware/quay``),
per version: the extracted tree, a virtualenv with Quay's pinned requirements (and the pip freeze
taken before this project was added to it), and a SQLite database built by Quay's own
``initdb``. Each test session installs the current checkout of this project into each
virtualenv (a wheel, built once per session), so the served Quay runs the code under test.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

VERSIONS = ("3.15.7", "3.17.4", "3.18.0")
REPO = Path(__file__).resolve().parents[3]
HOW_TO_GET = (
    "no Quay source trees: set OIDC_QUAY_SOURCES to a directory holding quay-VERSION.tar.gz "
    "(a clone of github.com/quay/quay at tag vVERSION, packed as quay-VERSION/), vendor/ and "
    "placeholder-country.mmdb as in ../shared/quay/"
)
# Headers for the requirements that Quay builds from source (python-ldap, psycopg2, lxml, ...).
APT_PACKAGES = [
    "build-essential",
    "pkg-config",
    "libldap2-dev",
    "libsasl2-dev",
    "libpq-dev",
    "libmagic1",
    "libjpeg-dev",
    "libxml2-dev",
    "libxslt1-dev",
    "libffi-dev",
    "libssl-dev",
    "zlib1g-dev",
]
# What Quay's initdb imports from its test fixtures, at Quay's own pins.
DEV_REQUIREMENTS = ("pytest", "pytest-flask", "filelock", "mock", "httmock", "fakeredis", "freezegun")


def required() -> bool:
    return os.environ.get("OIDC_QUAY_REQUIRED", "") not in ("", "0")


def sources() -> Path | None:
    configured = os.environ.get("OIDC_QUAY_SOURCES")
    candidates = [Path(configured)] if configured else [REPO.parent / "shared" / "quay"]
    for candidate in candidates:
        if all((candidate / f"quay-{version}.tar.gz").is_file() for version in VERSIONS):
            return candidate
    return None


def cache_root() -> Path:
    configured = os.environ.get("OIDC_QUAY_CACHE")
    root = Path(configured) if configured else Path.home() / ".cache" / "oidc-middleware" / "quay"
    root.mkdir(parents=True, exist_ok=True)
    return root


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One installer at a time per version (parallel sessions share the cache)."""
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(command: list[str], log: Path, **options: Any) -> None:
    with open(log, "a") as out:
        out.write(f"\n$ {' '.join(command)}\n")
        out.flush()
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=False, **options)
    if done.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-40:]
        raise RuntimeError(f"{command[:4]} failed ({done.returncode}); log {log}:\n" + "\n".join(tail))


def _apt_headers(log: Path) -> None:
    if shutil.which("dpkg") is None:
        return  # not Debian: the build headers must be there already (pip says which is missing)
    missing = [
        package
        for package in APT_PACKAGES
        if subprocess.run(["dpkg", "-s", package], capture_output=True, check=False).returncode != 0
    ]
    if missing and os.geteuid() != 0:
        raise RuntimeError(
            f"Quay's requirements need Debian packages that are missing ({' '.join(missing)}); "
            "install them (as root: apt-get install ...) and run the tests again"
        )
    if missing:
        _run(["apt-get", "update", "-qq"], log)
        environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        _run(["apt-get", "install", "-y", "-qq", *missing], log, env=environment)


@dataclass(frozen=True)
class QuayInstall:
    """One installed Quay version: its source tree, its Python, its fixture database."""

    version: str
    tree: Path
    python: Path
    database: Path
    freeze_before: Path  # pip freeze of Quay's pins alone, before this project was installed

    @property
    def line(self) -> str:
        return ".".join(self.version.split(".")[:2])

    def freeze(self) -> list[str]:
        done = subprocess.run(
            [str(self.python), "-m", "pip", "freeze", "--all", "--disable-pip-version-check"],
            capture_output=True,
            text=True,
            check=True,
        )
        return sorted(line for line in done.stdout.splitlines() if line.strip())


def ensure_installed(version: str, source: Path, wheel: Path) -> QuayInstall:
    """The cached install of ``version``, built when missing, with ``wheel`` (this project) in it."""
    root = cache_root()
    log = root / f"install-{version}.log"
    tree = root / f"quay-{version}"
    venv = root / f"venv-{version}"
    python = venv / "bin" / "python"
    pins_done = venv / ".quay-pins-installed"
    freeze_before = venv / "freeze-before-oidc-middleware.txt"
    # Keyed on the script that builds it, so that a changed fixture is rebuilt.
    script = hashlib.sha256((Path(__file__).with_name("build_database.py")).read_bytes()).hexdigest()[:12]
    database = root / f"db-{version}-{script}.sqlite"
    with _locked(root / f".lock-{version}"):
        if not tree.is_dir():
            # Extracted beside, then renamed: an interrupted extraction never looks complete.
            partial = Path(tempfile.mkdtemp(dir=root, prefix=f".extract-{version}-"))
            with tarfile.open(source / f"quay-{version}.tar.gz") as archive:
                archive.extractall(partial, filter="data")
            (partial / f"quay-{version}").rename(tree)
            shutil.rmtree(partial)
            # The GeoIP database Quay opens at import: the placeholder beside the trees.
            placeholder = source / "placeholder-country.mmdb"
            for target in ("util/ipresolver/ip-to-country.mmdb", "util/ipresolver/GeoLite2-Country.mmdb"):
                if (tree / target).parent.is_dir() and not (tree / target).exists():
                    shutil.copy(placeholder, tree / target)
        if not pins_done.exists():
            _apt_headers(log)
            if not python.exists():
                _run([sys.executable, "-m", "venv", str(venv)], log)
            pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--quiet"]
            _run([*pip, "--upgrade", "pip", "setuptools", "wheel"], log)
            requirements = root / f"requirements-{version}.txt"
            lines = (tree / "requirements.txt").read_text().splitlines()
            requirements.write_text("\n".join(line for line in lines if "git+https://" not in line) + "\n")
            vendored = sorted(str(path) for path in (source / "vendor").glob("*.tar.gz"))
            _run([*pip, "-r", str(requirements), *vendored], log)
            dev = root / f"requirements-dev-{version}.txt"
            wanted = [
                line
                for line in (tree / "requirements-dev.txt").read_text().splitlines()
                if line.split("=")[0].split("<")[0].split(">")[0].strip().lower() in DEV_REQUIREMENTS
            ]
            dev.write_text("\n".join(wanted) + "\n")
            _run([*pip, "-r", str(dev)], log)
            freeze = QuayInstall(version, tree, python, database, freeze_before).freeze()
            freeze_before.write_text("\n".join(freeze) + "\n")
            pins_done.touch()
        # This project, as the current checkout: its dependencies once, the wheel every session.
        pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--quiet"]
        _run([*pip, str(wheel)], log)
        _run([*pip, "--no-deps", "--force-reinstall", str(wheel)], log)
        if not database.exists():
            _build_database(tree, python, database, log)
    return QuayInstall(version, tree, python, database, freeze_before)


def _build_database(tree: Path, python: Path, database: Path, log: Path) -> None:
    """The SQLite fixture database, from Quay's own initdb (its test configuration)."""
    partial = database.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    environment = {**clean_environment(), "TEST": "true", "PYTHONPATH": str(tree)}
    _run(
        [str(python), "-m", "oidc_middleware.quay.lab.build_database", str(partial)],
        log,
        cwd=tree,
        env=environment,
    )
    partial.rename(database)


def clean_environment() -> dict[str, str]:
    """The environment for Quay's processes: no TEST (any value selects Quay's test config), no
    proxies and no CA bundles of this machine's (Quay's image sets none: its HTTP client trusts
    certifi's bundle), no variables of this project's own tests."""
    dropped = (
        "TEST",
        "QUAY_OVERRIDE_CONFIG",
        "QUAYCONF",
        "PYTHONPATH",
        "VIRTUAL_ENV",
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
    )
    return {
        name: value
        for name, value in os.environ.items()
        if name not in dropped and not name.lower().endswith("_proxy")
    }


def build_wheel(directory: Path) -> Path:
    """A wheel of this checkout, built once per session with the project's own Python."""
    if not (REPO / "pyproject.toml").is_file():
        raise RuntimeError(f"the Quay lab needs a checkout of oidc-middleware; {REPO} is not one")
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet"]
    with tempfile.TemporaryDirectory() as build:
        # Built from a copy, so that the checkout gets no build/ or egg-info directory.
        copy = Path(build) / "src"
        shutil.copytree(
            REPO,
            copy,
            ignore=shutil.ignore_patterns(
                ".git", ".venv", "node_modules", "*.egg-info", "build", "__pycache__"
            ),
        )
        built = subprocess.run([*command, "-w", str(directory), str(copy)], capture_output=True, text=True)
        if built.returncode != 0:
            raise RuntimeError(f"building the wheel failed:\n{built.stdout[-3000:]}{built.stderr[-3000:]}")
    return next(directory.glob("oidc_middleware-*.whl"))


# -- serving ------------------------------------------------------------------------------------


def quay_config(
    tree: Path,
    workdir: Path,
    port: int,
    provider: dict[str, Any],
    *,
    ca_file: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A production-shaped config.yaml (no TEST variable): what an administrator writes.
    ``ca_file``: the provider's CA, which the middleware trusts through its own ``CA_BUNDLE``."""
    storage = workdir / "storage"
    middleware = {**({"CA_BUNDLE": ca_file} if ca_file else {}), **extra.pop("OIDC_MIDDLEWARE_CONFIG", {})}
    return {
        "TESTING": True,  # while importing: false makes Quay connect to Redis (see serve.py)
        "SETUP_COMPLETE": True,
        "SERVER_HOSTNAME": f"127.0.0.1:{port}",
        "PREFERRED_URL_SCHEME": "http",
        "DB_URI": f"sqlite:///{workdir / 'quay.sqlite'}",
        "DATABASE_SECRET_KEY": "a-database-secret-key-for-tests",
        "SECRET_KEY": "a-secret-key-for-tests",
        "AUTHENTICATION_TYPE": "Database",
        "FEATURE_USER_CREATION": True,
        "FEATURE_MAILING": False,
        "DISTRIBUTED_STORAGE_CONFIG": {
            "local_us": ["LocalStorage", {"storage_path": str(storage / "us")}],
            "local_eu": ["LocalStorage", {"storage_path": str(storage / "eu")}],
        },
        "DISTRIBUTED_STORAGE_PREFERENCE": ["local_us"],
        "DISTRIBUTED_STORAGE_DEFAULT_LOCATIONS": ["local_us"],
        "USERFILES_LOCATION": "local_us",
        # The instance key that signs Quay's registry tokens: the one the fixture database approves.
        "INSTANCE_SERVICE_KEY_KID_LOCATION": str(tree / "test" / "data" / "test.kid"),
        "INSTANCE_SERVICE_KEY_LOCATION": str(tree / "test" / "data" / "test.pem"),
        "AZURE_LOGIN_CONFIG": provider,
        **({"OIDC_MIDDLEWARE_CONFIG": middleware} if middleware else {}),
        **extra,
    }


def trusting(environment: dict[str, str], ca_file: str | None) -> dict[str, str]:
    """Quay's process environment trusting ``ca_file`` as Quay's HTTP client reads it (requests
    reads ``REQUESTS_CA_BUNDLE``; ``SSL_CERT_FILE`` alone is not enough for it)."""
    return {**environment, "REQUESTS_CA_BUNDLE": ca_file} if ca_file else environment


@dataclass
class QuayServer:
    """Quay's app served on loopback by a process of its own. ``mode``: "alone" (Quay as shipped),
    "filter" (only OIDCMiddleware in front) or "install" (oidc_middleware.quay.install)."""

    install: QuayInstall
    mode: str
    testing: bool
    workdir: Path
    port: int
    process: subprocess.Popen[bytes]
    audit_log: Path
    output: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def audit_events(self) -> list[dict[str, Any]]:
        if not self.audit_log.exists():
            return []
        return [json.loads(line) for line in self.audit_log.read_text().splitlines() if line.startswith("{")]

    def query(self, sql: str, *parameters: Any) -> list[tuple[Any, ...]]:
        """Read Quay's database (SQLite allows a reader beside the server)."""
        import sqlite3

        connection = sqlite3.connect(f"file:{self.workdir / 'quay.sqlite'}?mode=ro", uri=True, timeout=10)
        try:
            return connection.execute(sql, parameters).fetchall()
        finally:
            connection.close()

    def federated_users(self) -> list[tuple[str, str]]:
        """(Quay username, federated sub) of every user bound to the provider's login service."""
        rows = self.query(
            "SELECT u.username, f.service_ident FROM federatedlogin f "
            "JOIN user u ON u.id = f.user_id JOIN loginservice s ON s.id = f.service_id "
            "WHERE s.name = 'azure'"
        )
        return sorted((str(name), str(sub)) for name, sub in rows)

    def stop(self) -> None:
        _stop(self.process)


def prepare(install: QuayInstall, workdir: Path) -> Path:
    """A working directory for one Quay: its own copy of the fixture database (``quay.sqlite``) and
    a configuration directory with Quay's logging files; returns the directory for QUAYCONF (its
    ``stack/config.yaml`` is the caller's to write)."""
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copy(install.database, workdir / "quay.sqlite")
    conf = workdir / "conf"
    (conf / "stack").mkdir(parents=True, exist_ok=True)
    for logging_conf in (install.tree / "conf").glob("logging*.conf"):
        shutil.copy(logging_conf, conf / logging_conf.name)
    return conf


def run_benchmark(install: QuayInstall, workdir: Path, timeout: float = 900.0) -> dict[str, Any]:
    """Run ``oidc_middleware.quay.lab.bench`` with Quay's Python: Quay's app in process, natively and
    with ``install``; returns its figures."""
    conf = prepare(install, workdir)
    environment = {**clean_environment(), "QUAYCONF": str(conf), "PYTHONPATH": str(install.tree)}
    done = subprocess.run(
        [str(install.python), "-m", "oidc_middleware.quay.lab.bench", str(workdir)],
        cwd=install.tree,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"the Quay benchmark failed:\n{done.stdout[-2000:]}{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def start_server(
    install: QuayInstall,
    workdir: Path,
    provider: dict[str, Any],
    *,
    mode: str,
    testing: bool,
    extra_config: dict[str, Any] | None = None,
    ca_file: str | None = None,
    environment: dict[str, str] | None = None,
    overlay: Path | None = None,
    timeout: float = 120.0,
) -> QuayServer:
    """Start Quay (its own database copy, its own config) and wait until it answers. ``ca_file``:
    the provider's CA, trusted by Quay's process and by the middleware; ``environment``: more
    variables for Quay's process (a proxy); ``overlay``: a directory first on its PYTHONPATH."""
    conf = prepare(install, workdir)
    port = _free_port()
    config = quay_config(install.tree, workdir, port, provider, ca_file=ca_file, **(extra_config or {}))
    (conf / "stack" / "config.yaml").write_text(yaml.safe_dump(config))
    audit_log = workdir / "audit.jsonl"
    output = workdir / "server.log"
    paths = [str(overlay)] if overlay is not None else []
    environment = {
        **trusting(clean_environment(), ca_file),
        **(environment or {}),
        "QUAYCONF": str(conf),
        "PYTHONPATH": os.pathsep.join([*paths, str(install.tree)]),
        "OIDC_QUAY_MODE": mode,
        "OIDC_QUAY_TESTING": "true" if testing else "false",
        "OIDC_QUAY_PORT": str(port),
        "OIDC_QUAY_AUDIT_LOG": str(audit_log),
    }
    with open(output, "wb") as out:
        process = subprocess.Popen(
            [str(install.python), "-m", "oidc_middleware.quay.lab.serve"],
            cwd=install.tree,
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = QuayServer(install, mode, testing, workdir, port, process, audit_log, output)
    deadline = time.monotonic() + timeout
    ready = workdir / "ready"
    while not ready.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            tail = "\n".join(output.read_text(errors="replace").splitlines()[-30:])
            raise RuntimeError(f"Quay {install.version} ({mode}) did not start:\n{tail}")
        time.sleep(0.1)
    return server


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- Quay's production process model: gunicorn with Quay's own configuration, gevent, Redis ----------


def ensure_command(command: str, package: str, workdir: Path) -> str:
    """The path of ``command``, installing Debian's ``package`` with apt-get (as root) if missing."""
    found = shutil.which(command)
    if found is None:
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            raise RuntimeError(f"{command} is missing: install Debian's {package} package")
        environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        with _locked(cache_root() / ".lock-apt"):
            if shutil.which(command) is None:
                log = workdir / f"apt-{package}.log"
                _run(["apt-get", "update", "-qq"], log, env=environment)
                _run(["apt-get", "install", "-y", "-qq", package], log, env=environment)
        found = shutil.which(command)
        if found is None:
            raise RuntimeError(f"installing {package} gave no {command}")
    return found


@dataclass
class Redis:
    """Debian's redis-server on a loopback port, nothing persisted."""

    port: int
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        _stop(self.process)


def start_redis(workdir: Path, timeout: float = 20.0) -> Redis:
    """Start redis-server (installed by apt-get as root when missing) and wait until it answers."""
    ensure_command("redis-server", "redis-server", workdir)
    port = _free_port()
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    with open(workdir / "redis.log", "wb") as out:
        process = subprocess.Popen(command, cwd=workdir, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    import socket

    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as connection:
                connection.sendall(b"PING\r\n")
                if connection.recv(16).startswith(b"+PONG"):
                    return Redis(port, process)
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            _stop(process)
            raise RuntimeError(f"redis-server did not start: {(workdir / 'redis.log').read_text()[-2000:]}")
        time.sleep(0.1)


# The hook of docs/quay-integration.md for Quay's conf/gunicorn_web.py and gunicorn_registry.py.
GUNICORN_HOOKS = """

def post_worker_init(worker):
    import web  # the module gunicorn loaded as web:application

    health = web.validator.prefetch()
    worker.log.info("oidc keys ready: %s", health["ready"])

"""
IMAGE_STEP = REPO / "examples" / "quay-image" / "install-oidc-middleware.sh"


def build_image(install: QuayInstall, wheel: Path, directory: Path) -> Path:
    """The lab's "derived image": a copy of Quay's tree (``directory/quay-registry``) on which the
    derived image's one build step runs as the Containerfile runs it
    (``examples/quay-image/install-oidc-middleware.sh``: the wheel into Quay's Python, then
    ``oidc-middleware quay patch``), with Quay's cached virtualenv as the image's Python; then the
    gunicorn hooks of docs/quay-integration.md appended to its ``conf/gunicorn_web.py``. Returns
    the patched tree; the cached one is never changed."""
    tree = directory / "quay-registry"
    shutil.copytree(install.tree, tree, symlinks=True)
    environment = {**clean_environment(), "QUAYDIR": str(tree), "QUAY_PYTHON": str(install.python)}
    done = subprocess.run(
        ["sh", str(IMAGE_STEP), str(wheel)], env=environment, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"the image's build step failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    with open(tree / "conf" / "gunicorn_web.py", "a") as conf:
        conf.write(GUNICORN_HOOKS)
    return tree


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


# -- a real registry client: skopeo ------------------------------------------------------------------


def oci_image(directory: Path, content: bytes) -> str:
    """A one-layer OCI image layout (tag ``latest``) holding a file with ``content``; returns the
    digest of its manifest."""
    import gzip
    import io

    blobs = directory / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)

    def blob(data: bytes) -> dict[str, Any]:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return {"digest": f"sha256:{digest}", "size": len(data)}

    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size, info.mtime, info.mode = len(content), 0, 0o644
        tar.addfile(info, io.BytesIO(content))
    layer_tar = archive.getvalue()
    layer = {
        "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
        **blob(gzip.compress(layer_tar, mtime=0)),
    }
    config = {
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(layer_tar).hexdigest()}"]},
        "config": {},
    }
    config_blob = {
        "mediaType": "application/vnd.oci.image.config.v1+json",
        **blob(json.dumps(config).encode()),
    }
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": config_blob, "layers": [layer]}  # fmt: skip
    manifest_blob = blob(json.dumps(manifest).encode())
    (directory / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    index = {
        "schemaVersion": 2,
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", **manifest_blob,
             "annotations": {"org.opencontainers.image.ref.name": "latest"}}
        ],
    }  # fmt: skip
    (directory / "index.json").write_text(json.dumps(index))
    return str(manifest_blob["digest"])


def skopeo(workdir: Path, *arguments: str, timeout: float = 180.0) -> subprocess.CompletedProcess[str]:
    """Run Debian's skopeo (installed when missing) against the lab's plain-http registry."""
    command = ensure_command("skopeo", "skopeo", workdir)
    return subprocess.run(
        [command, "--insecure-policy", *arguments],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**clean_environment(), "HOME": str(workdir)},
    )


def push_and_pull(port: int, workdir: Path, target: str, credentials: str) -> tuple[str, str, str]:
    """skopeo copies a fresh one-layer image to ``127.0.0.1:port/target:latest`` with
    ``credentials`` (``user:password``) and back; returns the manifest digests (built, as the
    registry serves it, as pulled)."""
    import uuid

    built = oci_image(workdir / "built", uuid.uuid4().bytes)
    registry = f"docker://127.0.0.1:{port}/{target}:latest"
    steps = {
        "push": ("copy", "--dest-tls-verify=false", "--dest-creds", credentials, "--preserve-digests",
                 f"oci:{workdir / 'built'}:latest", registry),
        "inspect": ("inspect", "--tls-verify=false", "--creds", credentials, "--raw", registry),
        "pull": ("copy", "--src-tls-verify=false", "--src-creds", credentials, registry,
                 f"oci:{workdir / 'pulled'}:latest"),
    }  # fmt: skip
    outputs = {}
    for step, arguments in steps.items():
        done = skopeo(workdir, *arguments)
        if done.returncode != 0:
            raise RuntimeError(f"skopeo {step} of {target} failed: {done.stderr[-2000:]}")
        outputs[step] = done.stdout
    served = "sha256:" + hashlib.sha256(outputs["inspect"].encode()).hexdigest()
    pulled = json.loads((workdir / "pulled" / "index.json").read_text())["manifests"][0]["digest"]
    return built, served, str(pulled)


# -- a forward proxy, the only way to the provider ----------------------------------------------------


@dataclass
class Proxy:
    """Debian's tinyproxy on a loopback port, running as its own user ``tinyproxy``."""

    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def tunnels(self) -> list[str]:
        """The CONNECT requests it served (``host:port``), in order."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        marker = "): CONNECT "  # "Request (file descriptor 5): CONNECT host:port HTTP/1.0"
        return [line.split(marker, 1)[1].split()[0] for line in text.splitlines() if marker in line]

    def stop(self) -> None:
        _stop(self.process)
        shutil.rmtree(self.log.parent, ignore_errors=True)


def start_tinyproxy(workdir: Path, timeout: float = 20.0) -> Proxy:
    """Start tinyproxy (installed by apt-get when missing); it drops root for the user
    ``tinyproxy``, so that :func:`only_through` can tell its connections from everyone else's."""
    command = ensure_command("tinyproxy", "tinyproxy", workdir)
    port = _free_port()
    # Its log in a directory the unprivileged proxy may write (the test's directory is root's).
    logs = Path(tempfile.mkdtemp(prefix="oidc-tinyproxy-"))
    logs.chmod(0o777)
    conf = workdir / "tinyproxy.conf"
    conf.write_text(
        f"User tinyproxy\nGroup tinyproxy\nPort {port}\nListen 127.0.0.1\nTimeout 60\n"
        f'LogFile "{logs / "tinyproxy.log"}"\nLogLevel Connect\nMaxClients 64\nAllow 127.0.0.1\n'
        "DisableViaHeader Yes\n"
    )
    with open(workdir / "tinyproxy.out", "wb") as out:
        process = subprocess.Popen([command, "-d", "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT)
    proxy = Proxy(port, process, logs / "tinyproxy.log")
    deadline = time.monotonic() + timeout
    import socket

    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proxy
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            proxy.stop()
            raise RuntimeError(f"tinyproxy did not start: {(workdir / 'tinyproxy.out').read_text()[-2000:]}")
        time.sleep(0.1)


@contextlib.contextmanager
def only_through(port: int, user: str = "tinyproxy") -> Iterator[None]:
    """Refuse every connection to 127.0.0.1:``port`` that ``user``'s processes do not make (an
    iptables rule on the loopback's OUTPUT chain, removed on exit): the proxy is the only route."""
    rule = ["OUTPUT", "-o", "lo", "-p", "tcp", "-d", "127.0.0.1", "--dport", str(port),
            "-m", "owner", "!", "--uid-owner", user, "-j", "REJECT", "--reject-with", "tcp-reset"]  # fmt: skip
    iptables = shutil.which("iptables")
    if iptables is None or os.geteuid() != 0:
        raise RuntimeError("refusing the direct route needs iptables and root")
    subprocess.run([iptables, "-I", *rule], check=True, capture_output=True)
    try:
        yield
    finally:
        subprocess.run([iptables, "-D", *rule], check=False, capture_output=True)


# -- Quay's conf/init/certs_install.sh, on stand-ins for the image's OS --------------------------------


def install_extra_ca_certs(install: QuayInstall, workdir: Path, ca_file: str) -> Path:
    """Trust ``ca_file`` as an administrator does: put it in Quay's ``extra_ca_certs`` directory
    and run Quay's own ``conf/init/certs_install.sh``, which appends it to certifi's bundle, the one
    Quay's HTTP client (requests) trusts. Returns the overlay directory to put first on Quay's
    PYTHONPATH: it holds that patched certifi.

    Stand-ins for the image: the shared virtualenv's certifi is copied into the overlay (the
    script's ``PYTHONUSERBASE_SITE_PACKAGE``); the script takes its UBI 8 branch, the one whose
    paths come from the environment, through an ``/etc/os-release`` saying ``VERSION_ID="8"``
    bind-mounted in a private mount namespace (``unshare``); ``update-ca-trust`` (UBI's system
    store, which Python's requests do not read) is a no-op; ``SYSTEM_CERTDIR`` is a directory here.
    """
    overlay = workdir / "overlay"
    certifi = next((install.python.parent.parent / "lib").glob("python3*/site-packages/certifi"))
    shutil.copytree(certifi, overlay / "certifi")
    conf = workdir / "ca-conf"
    (conf / "stack" / "extra_ca_certs").mkdir(parents=True)
    shutil.copy(ca_file, conf / "stack" / "extra_ca_certs" / "identity-provider.crt")
    standins = workdir / "standins"
    standins.mkdir()
    (standins / "update-ca-trust").write_text("#!/bin/sh\nexit 0\n")
    (standins / "update-ca-trust").chmod(0o755)
    (standins / "os-release").write_text('NAME="stand-in"\nVERSION_ID="8"\n')
    (workdir / "system-anchors").mkdir()
    script = install.tree / "conf" / "init" / "certs_install.sh"
    environment = {
        **clean_environment(),
        "PATH": f"{standins}{os.pathsep}{os.environ.get('PATH', '')}",
        "QUAYDIR": str(install.tree),
        "QUAYPATH": str(install.tree),
        "QUAYCONF": str(conf),
        "PYTHONUSERBASE_SITE_PACKAGE": str(overlay),
        "SYSTEM_CERTDIR": str(workdir / "system-anchors"),
    }
    inside = f'mount --bind "{standins / "os-release"}" /etc/os-release && exec bash "{script}"'
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", inside],
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"certs_install.sh failed ({done.returncode}): {done.stdout[-1500:]}{done.stderr[-1500:]}"
        )
    return overlay


# -- Quay's logs as its image writes them: supervisord with Quay's stdout event listener -------------

SUPERVISORD_CONF = """[supervisord]
nodaemon=true
logfile=/dev/null
logfile_maxbytes=0
pidfile={workdir}/supervisord.pid

[unix_http_server]
file={workdir}/supervisord.sock

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

; Quay's conf/supervisord.conf.jnj (logdriver stdout): every program's lines, prefixed, on stdout.
[eventlistener:stdout]
command = supervisor_stdout
result_handler = supervisor_stdout:event_handler
buffer_size = 1024
events = PROCESS_LOG

[program:gunicorn-web]
command = {python} -m oidc_middleware.quay.lab.serve
directory = {tree}
autostart = true
stdout_events_enabled = true
stderr_events_enabled = true
"""


def start_supervised(
    install: QuayInstall,
    workdir: Path,
    provider: dict[str, Any],
    *,
    ca_file: str | None = None,
    timeout: float = 120.0,
) -> QuayServer:
    """Quay's app with ``install`` (the lab's server, its audit events as JSON lines on stdout) as
    the program ``gunicorn-web`` of Quay's venv's supervisord, with the stdout event listener of
    Quay's own supervisord configuration: ``output`` then holds Quay's log as the image writes it,
    each line prefixed ``gunicorn-web stdout | ``."""
    conf = prepare(install, workdir)
    port = _free_port()
    config = quay_config(install.tree, workdir, port, provider, ca_file=ca_file)
    (conf / "stack" / "config.yaml").write_text(yaml.safe_dump(config))
    supervisord_conf = workdir / "supervisord.conf"
    supervisord_conf.write_text(
        SUPERVISORD_CONF.format(workdir=workdir, python=install.python, tree=install.tree)
    )
    output = workdir / "quay.log"
    bin_dir = install.python.parent
    environment = {
        **trusting(clean_environment(), ca_file),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "QUAYCONF": str(conf),
        "PYTHONPATH": str(install.tree),
        "OIDC_QUAY_MODE": "install",
        "OIDC_QUAY_TESTING": "false",
        "OIDC_QUAY_PORT": str(port),
        "OIDC_QUAY_AUDIT_LOG": "/dev/stdout",
    }
    with open(output, "wb") as out:
        process = subprocess.Popen(
            [str(bin_dir / "supervisord"), "-c", str(supervisord_conf)],
            cwd=workdir,
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = QuayServer(install, "supervised", False, workdir, port, process, output, output)
    deadline = time.monotonic() + timeout
    while not (workdir / "ready").exists():
        if process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            tail = "\n".join(output.read_text(errors="replace").splitlines()[-30:])
            raise RuntimeError(f"supervisord with Quay {install.version} did not start:\n{tail}")
        time.sleep(0.1)
    return server
