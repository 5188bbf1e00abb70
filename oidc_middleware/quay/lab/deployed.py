"""Quay as its image runs it, on this machine: the lab's derived "image" (:func:`build_image`),
Quay's own ``quay-entrypoint.sh registry`` (its ``conf/init`` scripts in order, then supervisord
with the configuration they generate), Debian's nginx in front of the web and registry gunicorns,
PostgreSQL 15 with Quay's schema from its own alembic migrations, Redis, storage in the test's
directory, and the provider's CA in Quay's ``extra_ca_certs``.

Stand-ins for the image's operating system (UBI), all inside a private mount namespace of the
entrypoint (``unshare``): an ``/etc/os-release`` saying ``VERSION_ID="8"``, the branch of
``certs_install.sh`` whose paths come from the environment (certifi in an overlay first on
``PYTHONPATH``, ``SYSTEM_CERTDIR`` in the test's directory), and a no-op ``update-ca-trust``;
``IGNORE_VALIDATION=1`` because ``config-tool`` (Go) is not in Quay's source tree. nginx, the
gunicorn sockets (``/tmp/gunicorn_*.sock``) and port 8080 are fixed by Quay's generated
configuration: one deployment at a time on a machine.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import (
    GUNICORN_HOOKS,
    QuayInstall,
    Redis,
    _free_port,
    _stop,
    build_image,
    clean_environment,
    ensure_command,
    quay_config,
    start_redis,
)

PORT = 8080  # nginx's, from Quay's own nginx.conf
POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")


@dataclass
class Postgres:
    """A throwaway PostgreSQL 15 cluster on a loopback port, owned by the user ``postgres``."""

    port: int
    data: Path
    process: subprocess.Popen[bytes]

    def uri(self) -> str:
        return f"postgresql://quay:quay@127.0.0.1:{self.port}/quay"

    def psql(self, sql: str, database: str = "quay") -> str:
        done = subprocess.run(
            [str(POSTGRES_BIN / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d",
             database, "-tA", "-v", "ON_ERROR_STOP=1", "-c", sql],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        return done.stdout.strip()

    def stop(self) -> None:
        # A fast shutdown (clients disconnected), then whatever is left of it.
        subprocess.run(["runuser", "-u", "postgres", "--", str(POSTGRES_BIN / "pg_ctl"), "stop", "-D",
                        str(self.data), "-m", "fast", "-w", "-t", "30"], capture_output=True, check=False)  # fmt: skip
        _stop(self.process)
        _kill_remaining(str(self.data))
        shutil.rmtree(self.data, ignore_errors=True)


def start_postgres(workdir: Path, timeout: float = 60.0) -> Postgres:
    """Debian's postgresql-15 (installed by apt-get when missing): a new cluster in a temporary
    directory, trust on loopback only, a database ``quay`` owned by ``quay`` with ``pg_trgm``."""
    if not (POSTGRES_BIN / "postgres").exists():
        ensure_command("pg_ctlcluster", "postgresql-15", workdir)
    data = Path(tempfile.mkdtemp(prefix="oidc-postgres-"))
    shutil.chown(data, "postgres", "postgres")
    as_postgres = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*as_postgres, str(POSTGRES_BIN / "initdb"), "-D", str(data), "-U", "postgres",
                    "--auth=trust", "-E", "UTF8"], capture_output=True, check=True)  # fmt: skip
    port = _free_port()
    with open(workdir / "postgres.log", "wb") as log:  # the child keeps its own descriptor
        process = subprocess.Popen(
            [*as_postgres, str(POSTGRES_BIN / "postgres"), "-D", str(data), "-p", str(port),
             "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={data}", "-c", "fsync=off",
             "-c", "max_connections=200"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    postgres = Postgres(port, data, process)
    deadline = time.monotonic() + timeout
    while subprocess.run([str(POSTGRES_BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                         capture_output=True).returncode != 0:  # fmt: skip
        if process.poll() is not None or time.monotonic() > deadline:
            postgres.stop()
            raise RuntimeError(f"PostgreSQL did not start: {(workdir / 'postgres.log').read_text()[-2000:]}")
        time.sleep(0.2)
    try:
        postgres.psql("CREATE USER quay PASSWORD 'quay'", "postgres")
        postgres.psql("CREATE DATABASE quay OWNER quay", "postgres")
        postgres.psql("CREATE EXTENSION pg_trgm")
    except BaseException:
        postgres.stop()
        raise
    return postgres


@dataclass
class Deployment:
    """Quay started by its own entrypoint, and what it runs on."""

    tree: Path
    workdir: Path
    process: subprocess.Popen[bytes]
    output: Path
    postgres: Postgres
    redis: Redis
    services: tuple[str, ...]
    python: Path
    stopped: bool = field(default=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{PORT}"

    @property
    def port(self) -> int:
        return PORT

    def programs(self) -> dict[str, int]:
        """supervisord's running programs and their PIDs (``supervisorctl status``)."""
        done = subprocess.run(
            [str(self.python.parent / "supervisorctl"), "-c", str(self.tree / "conf" / "supervisord.conf"),
             "status"],
            capture_output=True, text=True, check=False, env=self._environment(),
        )  # fmt: skip
        running = {}
        for line in done.stdout.splitlines():
            parts = line.split()
            if len(parts) >= 4 and parts[1] == "RUNNING" and parts[2] == "pid":
                running[parts[0]] = int(parts[3].rstrip(","))
        return running

    def _environment(self) -> dict[str, str]:
        return {
            **clean_environment(),
            "QUAYRUN": str(self.workdir / "run"),
            "QUAYCONF": str(self.tree / "conf"),
        }

    def keys_fetched(self) -> dict[str, int]:
        """``oidc.keys.fetched`` events per supervisord program, read from Quay's log as its image
        writes it (each line prefixed with the program's name)."""
        counts: dict[str, int] = {}
        for line in self.output.read_text(errors="replace").splitlines():
            program, separator, rest = line.partition(" stdout | ")
            if separator and "oidc.keys.fetched" in rest:
                counts[program] = counts.get(program, 0) + 1
        return counts

    def workers(self) -> dict[str, int]:
        """The worker processes of each gunicorn program (children of its master, from /proc)."""
        masters = {pid: name for name, pid in self.programs().items() if name.startswith("gunicorn-")}
        counts = dict.fromkeys(masters.values(), 0)
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if parent in masters:
                counts[masters[parent]] += 1
        return counts

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            _stop(self.process)  # supervisord stops its programs; after 20 s it is killed
            _kill_remaining(str(self.tree))
            self.postgres.stop()
            self.redis.stop()


def _kill_remaining(marker: str) -> None:
    """Kill every process whose command line names ``marker`` (this deployment's tree): programs
    that outlived a supervisord killed before it could stop them."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in command:
            with contextlib.suppress(OSError):
                os.kill(int(entry.name), signal.SIGKILL)


def start_deployed(
    install: QuayInstall,
    wheel: Path,
    workdir: Path,
    provider: dict[str, Any],
    ca_file: str,
    *,
    services: tuple[str, ...] = ("nginx", "gunicorn-web", "gunicorn-registry"),
    workers: int = 2,
    extra_config: dict[str, Any] | None = None,
    timeout: float = 240.0,
) -> Deployment:
    """Build the image, start PostgreSQL and Redis, write config.yaml and the provider's CA into
    the image's configuration directory, and run Quay's ``quay-entrypoint.sh registry``; return
    once nginx answers with Quay behind it."""
    nginx = ensure_command("nginx", "nginx", workdir)
    image = workdir / "image"
    tree = build_image(install, wheel, image)
    # The prefetch hook in the registry's gunicorn too (build_image adds it to the web's).
    with open(tree / "conf" / "gunicorn_registry.py", "a") as conf:
        conf.write(GUNICORN_HOOKS.replace("import web", "import registry as web"))
    # Quay's scripts and supervisord's programs run "python", "gunicorn", "alembic" and "nginx"
    # from PATH: the image's are Quay's virtualenv, Debian's nginx and the stand-ins.
    bin_dir = image / "bin"
    bin_dir.mkdir()
    (bin_dir / "nginx").symlink_to(nginx)
    (bin_dir / "update-ca-trust").write_text("#!/bin/sh\nexit 0\n")  # UBI's trust store: not read by Python
    (bin_dir / "update-ca-trust").chmod(0o755)
    redis = start_redis(workdir)
    try:
        postgres = start_postgres(workdir)
    except BaseException:
        redis.stop()
        raise
    try:
        redis_block = {"host": "127.0.0.1", "port": redis.port}
        config = quay_config(
            tree,
            workdir,
            PORT,
            provider,
            TESTING=False,
            DB_URI=postgres.uri(),
            BUILDLOGS_REDIS=redis_block,
            USER_EVENTS_REDIS=redis_block,
            PULL_METRICS_REDIS=redis_block,
            FEATURE_USER_INITIALIZE=True,
            **(extra_config or {}),
        )
        for generated in ("INSTANCE_SERVICE_KEY_KID_LOCATION", "INSTANCE_SERVICE_KEY_LOCATION"):
            config.pop(generated)  # Quay's boot.py makes the instance key, as in the image
        stack = tree / "conf" / "stack"
        (stack / "extra_ca_certs").mkdir(parents=True, exist_ok=True)
        shutil.copy(ca_file, stack / "extra_ca_certs" / "identity-provider.crt")
        (stack / "config.yaml").write_text(yaml.safe_dump(config))
        overlay = image / "site-packages"
        certifi = next((install.python.parent.parent / "lib").glob("python3*/site-packages/certifi"))
        shutil.copytree(certifi, overlay / "certifi")
        (workdir / "run").mkdir(exist_ok=True)
        (workdir / "system-anchors").mkdir(exist_ok=True)
        (image / "os-release").write_text('NAME="stand-in for UBI"\nVERSION_ID="8"\n')
        environment = {
            **clean_environment(),
            "PATH": os.pathsep.join([str(bin_dir), str(install.python.parent), os.environ.get("PATH", "")]),
            "QUAYDIR": str(tree),
            "QUAYPATH": str(tree),
            "QUAYCONF": str(tree / "conf"),
            "QUAYRUN": str(workdir / "run"),
            "QUAY_SERVICES": ",".join(services),
            "PYTHONPATH": f"{overlay}{os.pathsep}{tree}",
            "PYTHONUSERBASE_SITE_PACKAGE": str(overlay),
            "SYSTEM_CERTDIR": str(workdir / "system-anchors"),
            "IGNORE_VALIDATION": "1",
            "WORKER_COUNT_WEB": str(workers),  # Quay's minimum for the web: 2; the registry's: 8
        }
        inside = f'mount --bind "{image / "os-release"}" /etc/os-release && exec bash "{tree / "quay-entrypoint.sh"}" registry'
        output = workdir / "quay.log"
        with open(output, "wb") as out:
            process = subprocess.Popen(
                ["unshare", "--mount", "--propagation", "private", "sh", "-c", inside],
                cwd=tree, env=environment, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
    except BaseException:
        postgres.stop()
        redis.stop()
        raise
    deployment = Deployment(tree, workdir, process, output, postgres, redis, services, install.python)
    import requests

    deadline = time.monotonic() + timeout
    while True:
        try:
            answer = requests.get(f"{deployment.url}/api/v1/discovery", timeout=5)
            if answer.status_code == 200:
                return deployment
        except requests.RequestException:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            deployment.stop()
            tail = "\n".join(output.read_text(errors="replace").splitlines()[-60:])
            raise RuntimeError(f"Quay {install.version} did not start from its entrypoint:\n{tail}")
        time.sleep(0.5)
