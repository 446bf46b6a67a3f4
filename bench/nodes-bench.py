#!/usr/bin/env python3
"""nodes-bench: signing throughput of one halfkeyd on SQLite, one on
PostgreSQL and two on one PostgreSQL, with the same clients (e2e-bench:
the real client core over loopback TLS 1.3, a new connection per sign and
kept-open connections), printed side by side.

    bench/nodes-bench.py [--build DIR] [--clients N] [--seconds S]

With two nodes, half of the clients use node A and half node B (two
e2e-bench processes at once; a key made through A signs through B, as the
nodes share the database). PostgreSQL runs durably (fsync on) in a
throw-away cluster on 127.0.0.1 (tests/py/pgcluster.py). Every process
shares this machine's cores: the figures compare the configurations on one
machine, they are not a capacity plan."""
import argparse
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "py"))
from pgcluster import PgCluster  # noqa: E402

PIN = "bench-pin-1234"


def run(*cmd, **kw):
    kw.setdefault("timeout", 600)
    return subprocess.run([str(c) for c in cmd], check=True,
                          capture_output=True, text=True, **kw)


class Node:
    def __init__(self, build, directory, name):
        self.build, self.dir, self.name = build, directory, name
        self.conf = directory / "halfkeyd.conf"
        self.proc = None

    def set_conf(self, **kv):
        lines = [ln for ln in self.conf.read_text().splitlines()
                 if ln.split(" =")[0] not in kv]
        lines += [f"{k} = {v}" for k, v in kv.items() if v is not None]
        self.conf.write_text("\n".join(lines) + "\n")

    def start(self):
        port_file = self.dir / "port"
        port_file.unlink(missing_ok=True)
        self.log = open(self.dir / "log", "ab")
        self.proc = subprocess.Popen(
            [str(self.build / "server/halfkeyd"), "run", "--config",
             str(self.conf)], stdout=self.log, stderr=self.log)
        for _ in range(300):
            text = port_file.read_text() if port_file.exists() else ""
            if text.endswith("\n"):
                self.port = int(text)
                return self
            if self.proc.poll() is not None:
                raise RuntimeError((self.dir / "log").read_text())
            time.sleep(0.05)
        raise RuntimeError("halfkeyd did not start")

    def stop(self):
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=60)
            self.log.close()
            self.proc = None


def make_token(build, work, node, pin_hex, name):
    tok = work / name
    jwt = work / f"{name}.jwt"
    jwt.write_text(run(build / "server/halfkeyd", "token", "--config",
                       node.conf, "--sub", "bench", "--ttl", "7200").stdout)
    run(build / "tools/halfkey", "--dir", tok, "init", "--url",
        f"https://127.0.0.1:{node.port}", "--server-pin", pin_hex,
        "--token-file", jwt, env=dict(os.environ, HALFKEY_PIN=PIN))
    return tok


def keygen(build, tok, labels):
    env = dict(os.environ, HALFKEY_PIN=PIN)
    for label in labels:
        run(build / "tools/halfkey", "--dir", tok, "keygen", "--curve",
            "secp256k1", "--label", label, env=env)


def e2e(build, tok, prefix, clients, seconds, keep_open):
    cmd = [build / "bench/e2e-bench", "--dir", tok, "--key", prefix,
           "--clients", clients, "--seconds", seconds]
    if keep_open:
        cmd += ["--keep-open", "plain"]
    return subprocess.Popen([str(c) for c in cmd], stdout=subprocess.PIPE,
                            text=True, env=dict(os.environ, HALFKEY_PIN=PIN))


def result(proc):
    out, _ = proc.communicate(timeout=600)
    line = [ln for ln in out.splitlines() if ln.startswith("{")][-1]
    return json.loads(line)


def measure(build, toks, clients, seconds, keep_open):
    """toks: [(token dir, key prefix)], clients split between them."""
    per = clients // len(toks)
    procs = [e2e(build, t, p, per, seconds, keep_open) for t, p in toks]
    res = [result(p) for p in procs]
    signs = sum(r["signs"] for r in res)
    secs = max(r["seconds"] for r in res)
    return {"signs_per_s": signs / secs,
            "p50_ms": max(r["p50_ms"] for r in res),
            "p99_ms": max(r["p99_ms"] for r in res),
            "failed": sum(r["failed"] for r in res)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=str(ROOT / "build"))
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=int, default=8)
    a = ap.parse_args()
    build = pathlib.Path(a.build)
    clients = max(2, a.clients - a.clients % 2)
    work = pathlib.Path(tempfile.mkdtemp(prefix="hk-nodes-"))
    pg, nodes = None, []
    try:
        tmpl = work / "template"
        out = run(build / "server/halfkeyd", "init", tmpl, "--port",
                  "0").stdout
        pin_hex = re.search(r"^pin = (\w+)$", out, re.M).group(1)
        pg = PgCluster(durable=True).start()
        url = pg.create_db("halfkey_bench")

        rows = []
        for label, backend, n in (("1 node, SQLite", "sqlite", 1),
                                  ("1 node, PostgreSQL", "pg", 1),
                                  ("2 nodes, one PostgreSQL", "pg", 2)):
            nodes = []
            dburl = None
            if backend == "pg":
                dburl = pg.create_db(f"hk_{len(rows)}")
            for i in range(n):
                d = work / f"{len(rows)}-node{i}"
                shutil.copytree(tmpl, d)
                node = Node(build, d, f"node-{i}")
                node.set_conf(port=0, port_file="port", node=node.name,
                              rate_per_minute=0,
                              **({"db": None, "db_url": dburl}
                                 if dburl else {}))
                if dburl and i == 0:
                    run(build / "server/halfkeyd", "initdb", "--config",
                        node.conf)
                nodes.append(node.start())
            tok = make_token(build, work, nodes[0], pin_hex,
                             f"tok{len(rows)}")
            keygen(build, tok, [f"a-{i}" for i in range(clients // n)] +
                   ([f"b-{i}" for i in range(clients // n)] if n == 2
                    else []))
            toks = [(tok, "a")]
            if n == 2:
                tok_b = work / f"tok{len(rows)}b"
                shutil.copytree(tok, tok_b)
                conf = tok_b / "halfkey.conf"
                conf.write_text(conf.read_text().replace(
                    f":{nodes[0].port}", f":{nodes[1].port}"))
                toks.append((tok_b, "b"))
            row = {"config": label}
            for keep in (False, True):
                row["keep" if keep else "new"] = measure(
                    build, toks, clients, a.seconds, keep)
            rows.append(row)
            for node in nodes:
                node.stop()
            nodes = []
        print(f"== signing throughput, {clients} clients, {a.seconds} s "
              f"each, secp256k1 (all processes share "
              f"{os.cpu_count()} cores)")
        print(f"{'configuration':26} {'new conn/sign':>16} "
              f"{'p50':>9} {'kept-open':>14} {'p50':>9} {'failed':>7}")
        for r in rows:
            nw, kp = r["new"], r["keep"]
            print(f"{r['config']:26} {nw['signs_per_s']:10.1f} signs/s "
                  f"{nw['p50_ms']:6.1f} ms {kp['signs_per_s']:8.1f} signs/s "
                  f"{kp['p50_ms']:6.1f} ms {nw['failed'] + kp['failed']:7d}")
        for r in rows:
            print(json.dumps({"bench": "nodes", **r}))
        return 1 if any(r["new"]["failed"] or r["keep"]["failed"]
                        for r in rows) else 0
    finally:
        for node in nodes:
            node.stop()
        if pg is not None:
            pg.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
