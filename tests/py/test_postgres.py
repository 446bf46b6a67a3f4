"""halfkeyd on PostgreSQL (issue 4): the storage tests of
tests/unit/test_serverdb.c against a real PostgreSQL, and two halfkeyd
nodes on one database serving one client whose POST and WebSocket land on
different nodes. The server suites of test_server.py, test_channel.py and
test_policy.py also run on PostgreSQL (conftest.BOTH_BACKENDS)."""
import concurrent.futures
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import websocket

from test_server import load_pub, open_session, sign_and_verify
from conftest import ROOT, new_pg_db


def test_storage_rules_on_postgresql(postgres, build_dir):
    url = postgres.create_db("hk_unit")
    p = subprocess.run([str(build_dir / "tests/unit/test_serverdb")],
                       env=dict(os.environ, HK_TEST_PG_CONNINFO=url),
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "test_serverdb (postgresql): ok" in p.stdout


def _pair(make_server, postgres, pg_template):
    url = new_pg_db(postgres, pg_template)
    a = make_server("node-a", db_url=url, node="node-a")
    b = make_server("node-b", db_url=url, node="node-b")
    return a, b


def test_two_nodes_share_keys_and_sessions(make_server, make_token, postgres,
                                           pg_template):
    a, b = _pair(make_server, postgres, pg_template)
    # one token per node (the URL and pin name a node; both nodes share
    # the JWT issuer and the TLS key of the template directory)
    on_a = make_token(a, "alice", name="tok-a")
    kid = on_a.keygen("secp256k1", "k")
    pem = on_a.pubkey_pem("k")
    sign_and_verify(on_a, "k", pem)

    # the key made on node A signs through node B: the client's token
    # directory now points at B
    conf = on_a.conf_path()
    conf.write_text(conf.read_text().replace(a.url, b.url))
    sign_and_verify(on_a, "k", pem, b"via node B")
    on_a.run("refresh", "--key", "k")  # refreshed through B
    conf.write_text(conf.read_text().replace(b.url, a.url))
    sign_and_verify(on_a, "k", pem, b"back on node A")

    # a session opened by POST on A is claimed by a WebSocket on B, once
    token = a.token("alice")
    sess = open_session(a, token, "/sign", {"key_id": kid})
    ws = websocket.create_connection(
        b.ws_url(sess["session_id"]),
        header=[f"Authorization: Bearer {token}"],
        sslopt={"ca_certs": str(b.cert)}, timeout=10)
    ws.close()
    try:
        websocket.create_connection(
            a.ws_url(sess["session_id"]),
            header=[f"Authorization: Bearer {token}"],
            sslopt={"ca_certs": str(a.cert)}, timeout=10)
        raise AssertionError("a session was claimed twice")
    except websocket.WebSocketBadStatusException as exc:
        assert exc.status_code == 409

    # keys made on B are listed and usable on A; the audit log is one
    # chain written by both nodes
    on_b = make_token(b, "bob", name="tok-b")
    on_b.keygen("p256", "kb")
    listing = a.admin("keys", "list").stdout
    assert "\tbob\t" in listing and "\talice\t" in listing
    out = b.admin("audit", "verify").stdout
    assert "chain intact" in out, out
    nodes = {line.split('"node":"')[1].split('"')[0]
             for line in a.admin("audit", "export").stdout.splitlines()}
    assert nodes == {"node-a", "node-b"}


class RoundRobinProxy:
    """A TCP load balancer on 127.0.0.1: connection i goes to backend
    i mod n (TLS passes through; the nodes share the TLS key)."""

    def __init__(self, ports):
        self.ports = ports
        self.count = 0
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            port = self.ports[self.count % len(self.ports)]
            self.count += 1
            u = socket.create_connection(("127.0.0.1", port))
            for x, y in ((c, u), (u, c)):
                threading.Thread(target=self._pipe, args=(x, y),
                                 daemon=True).start()

    @staticmethod
    def _pipe(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.lsock.close()


def test_two_nodes_behind_a_load_balancer(make_server, make_token, postgres,
                                          pg_template):
    """The CLI's own commands through a round-robin balancer: a sign is
    one WebSocket, so signs alternate between the nodes; a refresh's POST
    and WebSocket are two connections, so they land on different nodes,
    which share the session through the database."""
    a, b = _pair(make_server, postgres, pg_template)
    tok = make_token(a, "carol")
    tok.keygen("p256", "k")
    pem = tok.pubkey_pem("k")
    lb = RoundRobinProxy([a.port, b.port])
    try:
        conf = tok.conf_path()
        conf.write_text(conf.read_text().replace(
            a.url, f"https://127.0.0.1:{lb.port}"))
        for i in range(4):
            sign_and_verify(tok, "k", pem, bytes([i]))
        tok.run("refresh", "--key", "k")
        sign_and_verify(tok, "k", pem, b"after refresh")
    finally:
        lb.close()
    assert lb.count >= 7
    logs = {n: n.log_text() for n in (a, b)}
    assert all("event=sign_done" in logs[n] for n in (a, b)), logs
    # strict alternation puts the refresh's POST on one node and its
    # WebSocket on the other
    split = [(x, y) for x, y in ((a, b), (b, a))
             if "event=session_open op=refresh" in logs[x] and
             "event=refresh_pending" in logs[y]]
    assert split, logs


def test_two_nodes_concurrent_clients(make_server, make_token, postgres,
                                      pg_template):
    a, b = _pair(make_server, postgres, pg_template)
    toks = [make_token(n, f"user{i}", name=f"t{i}")
            for i, n in enumerate([a, b, a, b])]
    pems = []
    for t in toks:
        t.keygen("p256", "k")
        pems.append(t.pubkey_pem("k"))

    def work(i):
        for _ in range(3):
            sign_and_verify(toks[i], "k", pems[i])
        return i

    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        assert sorted(ex.map(work, range(4))) == [0, 1, 2, 3]
    for n in (a, b):
        assert load_pub(pems[0])  # keys readable
    out = a.admin("audit", "verify").stdout
    assert "chain intact" in out


def _reload(node):
    """SIGHUP: the node reads its sealing keys again, without a restart."""
    mark = node.log_text().count("event=reload")
    node.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while node.log_text().count("event=reload") == mark:
        assert time.monotonic() < deadline, node.log_text()[-2000:]
        time.sleep(0.05)
    return node.log_text().rsplit("event=reload", 1)[1].split("\n")[0]


def test_key_file_rotation_with_reseal_on_postgresql(make_server, make_token,
                                                     postgres, pg_template):
    """KEK rotation (new key file, reseal) on a PostgreSQL database that
    two nodes share, without restarting them (SIGHUP reloads the keys);
    both keep signing throughout."""
    a, b = _pair(make_server, postgres, pg_template)
    tok = make_token(a, "dora")
    tok.keygen("p256", "k")
    pem = tok.pubkey_pem("k")
    new = a.admin("new-kek", "--file", str(a.dir / "kek2.bin")).stdout
    assert "kek_id" in new
    (b.dir / "kek2.bin").write_bytes((a.dir / "kek2.bin").read_bytes())
    (b.dir / "kek2.bin").chmod(0o600)

    # a reload whose keys cannot open the stored data is refused
    b.set_conf(kek_file="kek2.bin")
    assert "reload_refused" in "event=reload" + _reload(b)
    sign_and_verify(tok, "k", pem, b"after a refused reload")

    for n in (a, b):
        n.set_conf(kek_file="kek2.bin", seal_previous_key_file="kek.bin")
        assert _reload(n).startswith("ed what=seal")
    sign_and_verify(tok, "k", pem, b"before reseal")
    out = a.admin("reseal").stdout
    assert re.search(r"resealed = [1-9]", out) and "failed = 0" in out, out
    out = b.admin("reseal", "--check").stdout
    assert re.search(r"total = \d+", out), out
    again = a.admin("reseal").stdout
    assert "resealed = 0" in again, again
    # the old key file is no longer needed
    for n in (a, b):
        n.unset_conf("seal_previous_key_file")
        assert _reload(n).startswith("ed what=seal")
    conf = tok.conf_path()
    conf.write_text(re.sub(r"https://127\.0\.0\.1:\d+", b.url,
                           conf.read_text()))
    sign_and_verify(tok, "k", pem, b"after reseal, old KEK gone")
    # and a restart with the new configuration works too
    a.stop()
    a.start()
    conf.write_text(re.sub(r"https://127\.0\.0\.1:\d+", a.url,
                           conf.read_text()))
    sign_and_verify(tok, "k", pem, b"after restart")


def test_nodes_benchmark_runs(build_dir):
    """bench/nodes-bench.py (a benchmark, not a timed test): it runs the
    three configurations with zero failed signs and prints each figure."""
    p = subprocess.run([sys.executable,
                        str(ROOT / "bench" / "nodes-bench.py"), "--build",
                        str(build_dir), "--clients", "2", "--seconds", "1"],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    rows = [json.loads(line) for line in p.stdout.splitlines()
            if line.startswith("{")]
    assert [r["config"] for r in rows] == [
        "1 node, SQLite", "1 node, PostgreSQL", "2 nodes, one PostgreSQL"]
    for r in rows:
        for mode in ("new", "keep"):
            assert r[mode]["failed"] == 0 and r[mode]["signs_per_s"] > 0
