"""A throw-away PostgreSQL server for the tests and the benchmark: Debian's
binaries (package postgresql), a fresh cluster in a temporary directory,
listening on 127.0.0.1 only, stopped by stop(). As root the server runs as
the `postgres` user (PostgreSQL refuses to run as root)."""
import glob
import os
import pathlib
import pwd
import shutil
import socket
import subprocess
import tempfile
import time


def _bindir():
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError("PostgreSQL server binaries not found: "
                           "apt-get install postgresql (scripts/setup)")
    return pathlib.Path(found[-1]).parent


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgCluster:
    USER = "halfkey"

    def __init__(self, durable=False):
        self.bindir = _bindir()
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="hk-pg-"))
        self.data = self.dir / "data"
        self.port = _free_port()
        self.durable = durable
        self._as = []
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]

    def _run(self, *cmd, timeout=120):
        return subprocess.run(self._as + [str(c) for c in cmd], check=True,
                              capture_output=True, text=True, timeout=timeout)

    def start(self):
        self._run(self.bindir / "initdb", "-D", self.data, "-U", self.USER,
                  "-A", "trust", "-E", "UTF8", "--no-instructions")
        opts = (f"-c listen_addresses=127.0.0.1 -c port={self.port} "
                f"-c unix_socket_directories={self.dir} -c max_connections=200")
        if not self.durable:
            # tests only: a crash of the test machine loses nothing of value
            opts += " -c fsync=off -c synchronous_commit=off"
        self._run(self.bindir / "pg_ctl", "-D", self.data, "-l",
                  self.dir / "log", "-o", opts, "-w", "-t", "60", "start")
        return self

    def stop(self):
        try:
            self._run(self.bindir / "pg_ctl", "-D", self.data, "-m", "fast",
                      "-w", "stop", timeout=60)
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)

    def url(self, dbname):
        return (f"host=127.0.0.1 port={self.port} user={self.USER} "
                f"dbname={dbname} connect_timeout=10")

    def sql(self, statement, dbname="postgres"):
        """Runs one statement with psql; returns its unaligned output."""
        out = subprocess.run(
            ["psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d",
             self.url(dbname), "-c", statement],
            check=True, capture_output=True, text=True, timeout=60)
        return out.stdout.strip()

    def create_db(self, name, template=None):
        tmpl = f" TEMPLATE {template}" if template else ""
        # a template in use by a closing connection: retry briefly
        for attempt in range(50):
            try:
                self.sql(f"CREATE DATABASE {name}{tmpl}")
                return self.url(name)
            except subprocess.CalledProcessError as e:
                if "being accessed by other users" not in e.stderr \
                        or attempt == 49:
                    raise
                time.sleep(0.1)
        raise AssertionError("unreachable")
