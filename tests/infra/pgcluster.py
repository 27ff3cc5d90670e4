"""Real PostgreSQL servers (a primary, a streaming replica) and a real PgBouncer for tests, each on
a free loopback port in its own temp dir; stop() removes everything they made.

    bin_dir = pgserver_bin_dir()                       # PostgreSQL 16, always installed, no contrib
    primary = PgCluster.start(bin_dir)                 # or debian_bin_dir() for pg_stat_statements
    replica = start_replica(primary)                   # pg_basebackup -R, hot standby
    primary.execute("CREATE TABLE t (x int)")
    wait_for_replay(primary, replica)                  # the replica has caught up with the primary
    bouncer = PgBouncer.start(primary, pool_mode="transaction")
    bouncer.url                                        # postgresql://postgres@127.0.0.1:<port>/postgres
    for server in (bouncer, replica, primary): server.stop()

PostgreSQL and PgBouncer refuse to run as root; as root (CI) they run as the system user
`pgserver` (the one the embedded pgserver already uses), created if missing. The Debian binaries
(`postgresql`, `pgbouncer`) are installed by scripts/bootstrap; when they are missing the helpers
raise MissingBinary naming the package, so the tests needing them fail with that message."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import warnings
from pathlib import Path
from urllib.parse import quote

import psycopg

# pgserver (imported for its binaries) warns when XDG_RUNTIME_DIR is unset, as on CI; harmless.
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")

SYSTEM_USER = "pgserver"  # who runs the servers when we are root


class MissingBinary(RuntimeError):
    """A server binary is not installed; the message says which package provides it."""


# --------------------------------------------------------------------------------------------
# Finding binaries
# --------------------------------------------------------------------------------------------
def pgserver_bin_dir() -> Path:
    """The embedded pgserver's PostgreSQL 16 (has initdb, pg_ctl, pg_basebackup; no contrib modules
    such as pg_stat_statements)."""
    import pgserver._commands

    return Path(pgserver._commands.POSTGRES_BIN_PATH)


def debian_bin_dir(version: int | None = None) -> Path:
    """Debian's PostgreSQL server binaries (/usr/lib/postgresql/<ver>/bin, newest unless a version is
    given); they come with the contrib modules, pg_stat_statements included."""
    root = Path("/usr/lib/postgresql")
    versions = sorted((int(p.name) for p in root.glob("*") if p.name.isdigit() and (p / "bin" / "postgres").exists()),
                      reverse=True) if root.exists() else []
    if version is not None:
        versions = [v for v in versions if v == version]
    if not versions:
        wanted = f"postgresql-{version}" if version else "postgresql"
        raise MissingBinary(f"Debian's PostgreSQL server is not installed (/usr/lib/postgresql/*/bin/postgres): "
                            f"run scripts/bootstrap as root, or apt-get install -y {wanted} postgresql-contrib")
    return root / str(versions[0]) / "bin"


def pgbouncer_binary() -> Path:
    found = shutil.which("pgbouncer") or next((p for p in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer")
                                               if os.path.exists(p)), None)
    if not found:
        raise MissingBinary("pgbouncer is not installed: run scripts/bootstrap as root, or apt-get install -y pgbouncer")
    return Path(found)


# --------------------------------------------------------------------------------------------
# Plumbing
# --------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_root() -> bool:
    return os.geteuid() == 0


def _prepare_dir(path: Path, bin_dir: Path | None = None) -> None:
    """As root, let the unprivileged system user own `path` and reach it and the binaries."""
    if not _as_root():
        return
    import pwd

    from pgserver.utils import ensure_prefix_permissions, ensure_user_exists

    ensure_user_exists(SYSTEM_USER)
    entry = pwd.getpwnam(SYSTEM_USER)
    ensure_prefix_permissions(path)
    os.chown(path, entry.pw_uid, entry.pw_gid)
    if bin_dir is not None:
        ensure_prefix_permissions(bin_dir)


def _run(args: list, *, log: Path | None = None, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    """Runs a server tool (as the system user when we are root); on failure the error carries its output."""
    user = SYSTEM_USER if _as_root() else None
    result = subprocess.run([str(a) for a in args], user=user, capture_output=True, text=True, timeout=timeout,
                            cwd="/", env={**os.environ, "LC_ALL": "C"})
    if check and result.returncode != 0:
        extra = f"\n--- {log} ---\n{log.read_text()[-4000:]}" if log is not None and log.exists() else ""
        raise RuntimeError(f"{' '.join(map(str, args))} failed ({result.returncode}):\n"
                           f"{result.stdout}{result.stderr}{extra}")
    return result


def _conf_value(value) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (int, float)):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


# --------------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------------
class PgCluster:
    """One PostgreSQL server: its own data dir in a temp dir, on 127.0.0.1:<free port> (and a unix
    socket in the data dir). Trust authentication for local and loopback connections, replication
    included, for the superuser `user`."""

    def __init__(self, bin_dir: Path, root: Path, port: int, user: str, dbname: str):
        self.bin_dir, self.root, self.port, self.user, self.dbname = Path(bin_dir), root, port, user, dbname
        self.data_dir = root / "data"
        self.log = root / "postgres.log"
        self.host = "127.0.0.1"

    @property
    def url(self) -> str:
        return self.url_for(self.dbname)

    def url_for(self, dbname: str, user: str | None = None) -> str:
        return f"postgresql://{quote(user or self.user)}@{self.host}:{self.port}/{quote(dbname)}"

    @classmethod
    def start(cls, bin_dir: Path, settings: dict | None = None, *, user: str = "postgres",
              dbname: str = "postgres") -> "PgCluster":
        """initdb + start. `settings` are extra postgresql.conf lines, e.g.
        {"shared_preload_libraries": "pg_stat_statements"} (needs debian_bin_dir())."""
        root = Path(tempfile.mkdtemp(prefix="bookingtms-pg-"))
        _prepare_dir(root, Path(bin_dir))
        cluster = cls(Path(bin_dir), root, free_port(), user, dbname)
        try:
            _run([cluster.bin_dir / "initdb", "-D", cluster.data_dir, "-U", user, "--auth=trust",
                  "--encoding=UTF8", "--no-sync"])
            cluster._configure({"listen_addresses": "127.0.0.1", "unix_socket_directories": str(cluster.data_dir),
                                "fsync": False, "full_page_writes": False, "max_connections": 200,
                                **(settings or {})})
            cluster._start()
            if dbname != "postgres":
                cluster.execute(f'CREATE DATABASE "{dbname}"', dbname="postgres")
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def _configure(self, settings: dict) -> None:
        # Later lines win, so appending overrides what initdb (or the primary, for a replica) wrote.
        lines = "".join(f"{key} = {_conf_value(value)}\n" for key, value in settings.items())
        conf = self.data_dir / "postgresql.conf"
        with open(conf, "a") as f:  # root may write it; the server only reads it
            f.write(lines)

    def _start(self) -> None:
        _run([self.bin_dir / "pg_ctl", "-D", self.data_dir, "-l", self.log, "-w", "-t", "60",
              "-o", f"-p {self.port}", "start"], log=self.log)

    def connect(self, dbname: str | None = None, user: str | None = None) -> psycopg.Connection:
        """An autocommit psycopg connection (the caller closes it)."""
        return psycopg.connect(self.url_for(dbname or self.dbname, user), autocommit=True, connect_timeout=10)

    def execute(self, sql: str, params=None, *, dbname: str | None = None) -> list[tuple]:
        """Runs one statement in autocommit and returns its rows (empty when it returns none)."""
        with self.connect(dbname) as conn:
            cur = conn.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def stop(self) -> None:
        """Stops the server (fast shutdown) and removes its directory; safe to call twice."""
        if (self.data_dir / "postmaster.pid").exists():
            _run([self.bin_dir / "pg_ctl", "-D", self.data_dir, "-m", "fast", "-w", "stop"], check=False)
        shutil.rmtree(self.root, ignore_errors=True)


def start_replica(primary: PgCluster, settings: dict | None = None) -> PgCluster:
    """A hot standby streaming from `primary`: pg_basebackup -R (writes primary_conninfo and
    standby.signal), started on its own port with the primary's binaries."""
    root = Path(tempfile.mkdtemp(prefix="bookingtms-pg-replica-"))
    _prepare_dir(root, primary.bin_dir)
    replica = PgCluster(primary.bin_dir, root, free_port(), primary.user, primary.dbname)
    try:
        _run([primary.bin_dir / "pg_basebackup", "-h", primary.host, "-p", primary.port, "-U", primary.user,
              "-D", replica.data_dir, "-R", "-X", "stream", "-c", "fast", "--no-sync"])
        replica._configure({"unix_socket_directories": str(replica.data_dir), "hot_standby": True,
                            **(settings or {})})
        replica._start()
    except BaseException:
        replica.stop()
        raise
    return replica


def current_lsn(primary: PgCluster) -> str:
    return primary.execute("SELECT pg_current_wal_lsn()::text")[0][0]


def wait_for_replay(primary: PgCluster, replica: PgCluster, timeout: float = 30) -> None:
    """Waits until the replica has replayed everything the primary had written when called (so a
    read on the replica sees every commit made before). Times out if replay is paused."""
    target = current_lsn(primary)
    deadline = time.monotonic() + timeout
    while True:
        caught_up = replica.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (target,))[0][0]
        if caught_up:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"replica on port {replica.port} did not replay up to {target} in {timeout}s")
        time.sleep(0.05)


def pause_replay(replica: PgCluster) -> None:
    """Stops applying WAL on the replica (it keeps receiving it): reads there see an older state."""
    replica.execute("SELECT pg_wal_replay_pause()")
    deadline = time.monotonic() + 10
    while replica.execute("SELECT pg_get_wal_replay_pause_state()")[0][0] != "paused":
        if time.monotonic() > deadline:
            raise TimeoutError("replay did not pause")
        time.sleep(0.02)


def resume_replay(replica: PgCluster) -> None:
    replica.execute("SELECT pg_wal_replay_resume()")


# --------------------------------------------------------------------------------------------
# PgBouncer
# --------------------------------------------------------------------------------------------
class PgBouncer:
    """A real PgBouncer on 127.0.0.1:<free port> in front of one server, every database name passed
    through (`* = host=... port=...`). Clients are trusted (listed users only); PgBouncer logs in
    to the server as the client's user with the password given in `users` (if the server asks)."""

    def __init__(self, root: Path, port: int, default_user: str, default_db: str):
        self.root, self.port, self.user, self.dbname = root, port, default_user, default_db
        self.host = "127.0.0.1"
        self.log = root / "pgbouncer.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return self.url_for(self.dbname)

    def url_for(self, dbname: str, user: str | None = None) -> str:
        return f"postgresql://{quote(user or self.user)}@{self.host}:{self.port}/{quote(dbname)}"

    @classmethod
    def start(cls, target: PgCluster | None = None, pool_mode: str = "transaction", *,
              host: str | None = None, port: int | None = None, users: dict[str, str] | None = None,
              pool_size: int = 20, max_client_conn: int = 1000, settings: dict | None = None,
              default_user: str | None = None, default_db: str = "postgres") -> "PgBouncer":
        """In front of `target`, or of `host` (a name, an address or a unix socket directory) and
        `port`. `users` maps user -> password (empty when the server trusts); the target's superuser
        is always listed. `settings` are extra [pgbouncer] lines."""
        binary = pgbouncer_binary()
        if target is not None:
            host, port = target.host, target.port
            users = {target.user: "", **(users or {})}
            default_user = default_user or target.user
            default_db = target.dbname if default_db == "postgres" else default_db
        if host is None or port is None:
            raise ValueError("PgBouncer.start needs a target or a host and port")
        users = users or {}
        root = Path(tempfile.mkdtemp(prefix="bookingtms-pgbouncer-"))
        _prepare_dir(root)
        bouncer = cls(root, free_port(), default_user or next(iter(users), "postgres"), default_db)
        (root / "userlist.txt").write_text("".join(f'"{u}" "{p}"\n' for u, p in users.items()))
        options = {
            "listen_addr": bouncer.host, "listen_port": bouncer.port, "unix_socket_dir": "",
            "auth_type": "trust", "auth_file": root / "userlist.txt", "pool_mode": pool_mode,
            "default_pool_size": pool_size, "max_client_conn": max_client_conn,
            "max_db_connections": 0, "logfile": bouncer.log, "pidfile": root / "pgbouncer.pid",
            # Drivers send these at startup; PgBouncer would refuse an unknown one.
            "ignore_startup_parameters": "extra_float_digits,options,search_path,statement_timeout",
            "server_login_retry": 1, "log_connections": 0, "log_disconnections": 0,
            "admin_users": bouncer.user,  # SHOW POOLS / SHOW STATS on the `pgbouncer` database
            **(settings or {}),
        }
        ini = (f"[databases]\n* = host={host} port={port}\n\n[pgbouncer]\n"
               + "".join(f"{k} = {v}\n" for k, v in options.items()))
        (root / "pgbouncer.ini").write_text(ini)
        for path in root.iterdir():
            path.chmod(0o644)
        user = SYSTEM_USER if _as_root() else None
        bouncer.proc = subprocess.Popen([str(binary), str(root / "pgbouncer.ini")], user=user, cwd="/",
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            bouncer._wait_ready()
        except BaseException:
            bouncer.stop()
            raise
        return bouncer

    def _wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pgbouncer exited with {self.proc.returncode}:\n{self._log_tail()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"pgbouncer did not listen in {timeout}s:\n{self._log_tail()}") from None
                time.sleep(0.05)

    def _log_tail(self) -> str:
        return self.log.read_text()[-4000:] if self.log.exists() else "(no log)"

    def connect(self, dbname: str | None = None, user: str | None = None) -> psycopg.Connection:
        """An autocommit psycopg connection through PgBouncer, without server-side prepared
        statements (they do not survive transaction pooling)."""
        return psycopg.connect(self.url_for(dbname or self.dbname, user), autocommit=True, connect_timeout=10,
                               prepare_threshold=None)

    def show(self, what: str) -> list[dict]:
        """PgBouncer's admin console, e.g. show("POOLS"): one dict per row."""
        with psycopg.connect(self.url_for("pgbouncer"), autocommit=True, prepare_threshold=None) as conn:
            cur = conn.execute(f"SHOW {what}")
            names = [c.name for c in cur.description]
            return [dict(zip(names, row)) for row in cur.fetchall()]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)
