"""Shared fixtures for the black-box tests: where the built artefacts are,
and a running halfkeyd with client tokens (for test_server.py)."""
import http.client
import json
import os
import pathlib
import re
import resource
import shutil
import signal
import ssl
import subprocess
import time

import pytest

from pgcluster import PgCluster

ROOT = pathlib.Path(__file__).resolve().parents[2]
# These modules run every test against SQLite and against PostgreSQL.
BOTH_BACKENDS = {"test_server", "test_channel", "test_policy", "test_custody",
                 "test_backup", "test_requests"}
PIN = "2468-test-pin"  # the client tokens' PIN ($HALFKEY_PIN)
# Tokens made by the suite use scrypt N = 2^12 instead of the default 2^17
# (0.4 s and 128 MiB per login, and the suite logs in hundreds of times).
# The variable is test-only (halfkey(1)); test_at_rest.py checks the
# default and the upgrade of cheaper tokens.
os.environ.setdefault("HALFKEY_INSECURE_SCRYPT_LOG2N", "12")


@pytest.fixture(scope="session")
def build_dir() -> pathlib.Path:
    path = pathlib.Path(os.environ.get("HALFKEY_BUILD", ROOT / "build"))
    if not (path / "build.ninja").exists():
        pytest.fail(f"no meson build directory at {path}: run scripts/setup")
    return path


def _binary(build_dir, rel):
    path = build_dir / rel
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} is not built: ninja -C {build_dir}")
    return path


@pytest.fixture(scope="session")
def halfkeyd_bin(build_dir) -> pathlib.Path:
    return _binary(build_dir, "server/halfkeyd")


@pytest.fixture(scope="session")
def halfkey_bin(build_dir) -> pathlib.Path:
    return _binary(build_dir, "tools/halfkey")


# --- the server ------------------------------------------------------------


class Server:
    """One halfkeyd directory and its `halfkeyd run` process."""

    def __init__(self, binary, directory, pin):
        self.bin = binary
        self.dir = pathlib.Path(directory)
        self.conf = self.dir / "halfkeyd.conf"
        self.cert = self.dir / "tls-cert.pem"
        self.port_file = self.dir / "port"
        self.log = self.dir / "halfkeyd.log"
        self.pin = pin
        self.proc = None
        self.port = None
        self._logf = None
        self.host = "127.0.0.1"  # where the tests reach it: loopback only
        self.nofile = None  # RLIMIT_NOFILE for the process, if set

    # configuration: `key = value` lines, each key once
    def set_conf(self, **values):
        lines = self.conf.read_text().splitlines()
        for key, val in values.items():
            line = f"{key} = {val}"
            for i, old in enumerate(lines):
                if re.match(rf"\s*{re.escape(key)}\s*=", old):
                    lines[i] = line
                    break
            else:
                lines.append(line)
        self.conf.write_text("\n".join(lines) + "\n")

    def unset_conf(self, *keys):
        lines = [line for line in self.conf.read_text().splitlines()
                 if not any(re.match(rf"\s*{re.escape(k)}\s*=", line)
                            for k in keys)]
        self.conf.write_text("\n".join(lines) + "\n")

    def admin(self, *args, check=True, timeout=60):
        """`halfkeyd ARGS... --config` this server's file."""
        return subprocess.run(
            [str(self.bin), *args, "--config", str(self.conf)], check=check,
            capture_output=True, text=True, timeout=timeout)

    def audit(self):
        out = self.admin("audit", "export").stdout
        return [json.loads(line) for line in out.splitlines()]

    def wait_audit(self, pred, timeout=10):
        """The first audit record matching pred; fails after timeout (the
        server records a session's end a moment after the client is
        done)."""
        deadline = time.monotonic() + timeout
        while True:
            recs = [r for r in self.audit() if pred(r)]
            if recs:
                return recs[0]
            assert time.monotonic() < deadline, "no such audit record"
            time.sleep(0.05)

    @property
    def url(self):
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}"

    def start(self, timeout=20):
        assert self.proc is None, "already running"
        if self.port_file.exists():
            self.port_file.unlink()
        self._logf = open(self.log, "ab")
        limit = None
        if self.nofile is not None:
            def limit():
                resource.setrlimit(resource.RLIMIT_NOFILE,
                                   (self.nofile, self.nofile))
        self.proc = subprocess.Popen(
            [str(self.bin), "run", "--config", str(self.conf)],
            stdin=subprocess.DEVNULL, stdout=self._logf, stderr=self._logf,
            preexec_fn=limit)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                rc = self.proc.returncode
                self.proc = None
                pytest.fail(f"halfkeyd exited with {rc} at start:\n"
                            + self.log_text())
            if time.monotonic() > deadline:
                self.kill()
                pytest.fail("halfkeyd did not become ready:\n"
                            + self.log_text())
            text = (self.port_file.read_text()
                    if self.port_file.exists() else "")
            if text.endswith("\n") and text.strip().isdigit():
                self.port = int(text)
                try:
                    status, body = self.request("GET", "/status")
                    if status == 200 and body.get("status") == "ok":
                        return self
                except OSError:
                    pass
            time.sleep(0.05)

    def stop(self, timeout=15):
        """SIGTERM; returns the exit code (the caller checks it)."""
        if self.proc is None:
            return None
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            rc = "hung (killed after SIGTERM)"
        self._logf.close()
        return rc

    def kill(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None
            self._logf.close()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log_text(self):
        return self.log.read_text(errors="replace") if self.log.exists() \
            else ""

    def token(self, sub, ttl=None, scope=None):
        cmd = [str(self.bin), "token", "--config", str(self.conf),
               "--sub", sub]
        if ttl is not None:
            cmd += ["--ttl", str(ttl)]
        if scope is not None:
            cmd += ["--scope", scope]
        out = subprocess.run(cmd, check=True, capture_output=True,
                             text=True, timeout=30).stdout
        return out.strip()

    # direct HTTPS (TLS 1.3, the server's self-signed certificate as CA)
    def ssl_context(self):
        return ssl.create_default_context(cafile=str(self.cert))

    def request(self, method, path, body=None, token=None, headers=None,
                context=None):
        """(status, parsed JSON body or raw text)."""
        conn = http.client.HTTPSConnection(
            self.host, self.port, context=context or self.ssl_context(),
            timeout=15)
        hdrs = dict(headers or {})
        if token is not None:
            hdrs["Authorization"] = f"Bearer {token}"
        data = None
        if body is not None:
            data = body if isinstance(body, (bytes, str)) \
                else json.dumps(body)
            if isinstance(data, str):
                data = data.encode()
            hdrs.setdefault("Content-Type", "application/json")
        try:
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
            raw = resp.read().decode(errors="replace")
            status = resp.status
        finally:
            conn.close()
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw

    def ws_url(self, session_id):
        return f"wss://127.0.0.1:{self.port}/ws?session_id={session_id}"


@pytest.fixture(scope="session")
def server_template(tmp_path_factory, halfkeyd_bin):
    """`halfkeyd init` once (the setup's safe primes take seconds); each
    test's server runs on its own copy of this directory."""
    d = tmp_path_factory.mktemp("halfkeyd-template") / "srv"
    out = subprocess.run([str(halfkeyd_bin), "init", str(d), "--port", "0"],
                         check=True, capture_output=True, text=True,
                         timeout=300).stdout
    info = dict(line.split(" = ", 1) for line in out.splitlines()
                if " = " in line)
    assert re.fullmatch(r"[0-9a-f]{64}", info["pin"]), out
    assert info["config"] == str(d / "halfkeyd.conf")
    for name in ("halfkeyd.conf", "tls-cert.pem", "tls-key.pem",
                 "halfkeyd.db", "kek.bin", "jwt-issuer.pub.pem",
                 "jwt-issuer.key.pem"):
        assert (d / name).is_file(), name
    return d, info["pin"]


def pytest_generate_tests(metafunc):
    if metafunc.module.__name__ in BOTH_BACKENDS and \
            "db_backend" not in metafunc.fixturenames and \
            ({"server", "make_server"} & set(metafunc.fixturenames)):
        metafunc.fixturenames.append("db_backend")
    if "db_backend" in metafunc.fixturenames:
        metafunc.parametrize("db_backend", ["sqlite", "postgresql"])


@pytest.fixture(scope="session")
def postgres():
    """A PostgreSQL server on 127.0.0.1 for the whole test session."""
    cluster = PgCluster().start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def pg_template(postgres, server_template, halfkeyd_bin, tmp_path_factory):
    """A database holding the template server's setup (made once with
    `halfkeyd initdb`); each test gets a copy (CREATE DATABASE ...
    TEMPLATE), which works with the template directory's KEK."""
    src, pin = server_template
    d = tmp_path_factory.mktemp("pg-template") / "srv"
    shutil.copytree(src, d)
    srv = Server(halfkeyd_bin, d, pin)
    srv.unset_conf("db")
    srv.set_conf(db_url=postgres.create_db("hk_template"))
    out = srv.admin("initdb").stdout
    assert "postgresql database" in out and "setup" in out, out
    return "hk_template"


_pg_count = [0]


def new_pg_db(postgres, pg_template):
    _pg_count[0] += 1
    return postgres.create_db(f"hk_{os.getpid()}_{_pg_count[0]}",
                              template=pg_template)


@pytest.fixture
def make_server(request, tmp_path, server_template, halfkeyd_bin):
    """make_server(name="srv", **conf) -> a started Server on a free port;
    every one is stopped at teardown, which fails if it crashed or did not
    stop cleanly on SIGTERM. In the modules of BOTH_BACKENDS each test
    runs twice, the second time on a fresh PostgreSQL database
    (db_url=...; pass db_url yourself to share one between servers)."""
    servers = []
    backend = request.getfixturevalue("db_backend") \
        if "db_backend" in request.fixturenames else "sqlite"

    def make(name="srv", start=True, **conf):
        src, pin = server_template
        d = tmp_path / name
        shutil.copytree(src, d)
        srv = Server(halfkeyd_bin, d, pin)
        if backend == "postgresql" and "db_url" not in conf:
            conf["db_url"] = new_pg_db(request.getfixturevalue("postgres"),
                                       request.getfixturevalue("pg_template"))
        if "db_url" in conf:
            srv.unset_conf("db")
        conf.setdefault("shutdown_grace", 10)  # below stop()'s timeout
        srv.set_conf(port=0, port_file="port", **conf)
        servers.append(srv)
        return srv.start() if start else srv

    yield make
    problems = []
    for srv in servers:
        if srv.proc is not None and not srv.alive():
            problems.append(f"{srv.dir}: halfkeyd died during the test "
                            f"(exit {srv.proc.returncode})")
        rc = srv.stop()
        if rc not in (None, 0):
            problems.append(f"{srv.dir}: halfkeyd exit {rc} after SIGTERM")
    if problems:
        pytest.fail("\n".join(problems) + "\n" + "\n".join(
            s.log_text()[-4000:] for s in servers))


@pytest.fixture
def server(make_server):
    return make_server()


# --- client tokens ---------------------------------------------------------


class Token:
    """A client token directory for one subject, driven through the CLI."""

    def __init__(self, binary, directory, token_file, server):
        self.bin = binary
        self.dir = pathlib.Path(directory)
        self.token_file = pathlib.Path(token_file)
        self.server = server
        self.env = dict(os.environ, HALFKEY_PIN=PIN)
        self.env.pop("HALFKEY_HOME", None)

    def cmd(self, *args):
        return [str(self.bin), "--dir", str(self.dir), *map(str, args)]

    def run(self, *args, check=True, timeout=60):
        p = subprocess.run(self.cmd(*args), capture_output=True, text=True,
                           env=self.env, timeout=timeout)
        if check and p.returncode != 0:
            pytest.fail(f"halfkey {' '.join(map(str, args))} exited "
                        f"{p.returncode}: {p.stderr.strip()}\n--- server:\n"
                        + self.server.log_text()[-3000:])
        return p

    def popen(self, *args):
        return subprocess.Popen(self.cmd(*args), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True,
                                env=self.env)

    def keygen(self, curve, label):
        out = self.run("keygen", "--curve", curve, "--label", label).stdout
        info = dict(line.split(" = ", 1) for line in out.splitlines()
                    if " = " in line)
        assert info["label"] == label and info["curve"] == curve, out
        assert re.fullmatch(r"[0-9a-f]{32}", info["key_id"]), out
        return info["key_id"]

    def pubkey_pem(self, label):
        return self.run("pubkey", "--key", label).stdout.encode()

    def list(self):
        """label -> (curve, key_id, epoch, locked)"""
        keys = {}
        for line in self.run("list").stdout.splitlines():
            f = line.split("\t")
            assert f[3].startswith("epoch="), line
            keys[f[0]] = (f[1], f[2], int(f[3][6:]), "LOCKED" in f[4:])
        return keys

    def conf_path(self):
        return self.dir / "halfkey.conf"

    def server_jwt_file(self):
        return self.token_file


@pytest.fixture
def make_token(tmp_path, halfkey_bin):
    """make_token(server, sub, name=None) -> a Token initialised against
    the server, its JWT file minted by `halfkeyd token`."""
    def make(server, sub, name=None):
        name = name or f"tok-{sub}"
        tok_file = tmp_path / f"{name}.jwt"
        tok_file.write_text(server.token(sub) + "\n")
        tok = Token(halfkey_bin, tmp_path / name, tok_file, server)
        out = tok.run("init", "--url", server.url, "--server-pin",
                      server.pin, "--token-file", tok_file).stdout
        assert f"token = {tok.dir}" in out
        return tok

    return make
