#!/usr/bin/env python3
"""flood-bench: honest signing while halfkeyd holds hostile connections.

    bench/flood-bench.py [--build DIR] [--idle N] [--slow N] [--signs M]
                         [--nofile F] [--peers P] [--max-connections C]

Starts a throw-away halfkeyd (SQLite) on 127.0.0.1 under RLIMIT_NOFILE F,
makes a key with the real `halfkey` CLI, then times M honest signs (each a
`halfkey sign` process: TLS 1.3, POST /sign, WebSocket) three times:
before the flood, while N idle TCP connections and N slow ones (a TLS
ClientHello sent one byte every 10 s) are held open, and after they are
closed. The attackers connect from P loopback source addresses
(127.0.0.2, ...), the honest client from 127.0.0.1, so the per-peer cap
sees them apart. Prints honest p50/p99, the refusals counted in /metrics
and the server's RSS before, at the peak and after. Only 127.0.0.x is
used."""
import argparse
import hashlib
import os
import pathlib
import re
import shutil
import socket
import ssl
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.request
import resource

ROOT = pathlib.Path(__file__).resolve().parents[1]
PIN = "bench-pin-1234"
# the first bytes of a TLS 1.3 ClientHello record: enough to keep the
# server inside its handshake
HELLO = bytes.fromhex("16030100f8010000f40303") + os.urandom(32)


def run(*cmd, **kw):
    kw.setdefault("timeout", 600)
    return subprocess.run([str(c) for c in cmd], check=True,
                          capture_output=True, text=True, **kw)


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


class Server:
    def __init__(self, build, tmp, nofile, max_conns):
        self.dir = tmp / "srv"
        out = run(build / "server" / "halfkeyd", "init", self.dir, "--port",
                  "0").stdout
        self.pin = re.search(r"^pin = (\S+)", out, re.M).group(1)
        conf = self.dir / "halfkeyd.conf"
        text = re.sub(r"(?m)^(port|rate_per_minute) = .*\n", "",
                      conf.read_text())
        text += "port = 0\nport_file = port\nrate_per_minute = 0\n"
        if max_conns:
            text += f"max_connections = {max_conns}\n"
        conf.write_text(text)
        self.conf = conf
        self.log = open(tmp / "halfkeyd.log", "wb")

        def limit():
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
        self.proc = subprocess.Popen(
            [str(build / "server" / "halfkeyd"), "run", "--config",
             str(conf)], stdout=self.log, stderr=self.log, preexec_fn=limit)
        port_file = self.dir / "port"
        for _ in range(200):
            if port_file.exists() and port_file.read_text().endswith("\n"):
                break
            time.sleep(0.05)
        self.port = int(port_file.read_text())
        self.ctx = ssl.create_default_context(
            cafile=str(self.dir / "tls-cert.pem"))

    def metrics(self):
        with urllib.request.urlopen(f"https://127.0.0.1:{self.port}/metrics",
                                    context=self.ctx, timeout=10) as r:
            text = r.read().decode()
        return {m.group(1): float(m.group(2)) for m in re.finditer(
            r"^(halfkey_connections\S*) (\S+)$", text, re.M)}

    def stop(self):
        self.proc.terminate()
        self.proc.wait(30)
        self.log.close()


def signs(build, tok_dir, count):
    env = dict(os.environ, HALFKEY_PIN=PIN)
    times, failed = [], 0
    for i in range(count):
        digest = hashlib.sha256(f"bench {i}".encode()).hexdigest()
        t0 = time.monotonic()
        p = subprocess.run([str(build / "tools" / "halfkey"), "--dir",
                            str(tok_dir), "sign", "--key", "k", "--digest",
                            digest, "--format", "raw"],
                           capture_output=True, text=True, env=env,
                           timeout=120)
        if p.returncode == 0:
            times.append(time.monotonic() - t0)
        else:
            failed += 1
    return times, failed


def hold(port, idle, slow, peers):
    """Opens the idle and slow connections; returns them and a stop event
    for the thread that feeds the slow ones a byte every 10 s."""
    sources = [f"127.0.0.{2 + i}" for i in range(peers)]
    conns = []
    for i in range(idle + slow):
        s = socket.socket()
        s.bind((sources[i % len(sources)], 0))
        s.settimeout(5)
        try:
            s.connect(("127.0.0.1", port))
        except OSError:
            s.close()
            continue
        conns.append((s, i >= idle))
    stop = threading.Event()

    def feed():
        pos = 0
        while not stop.wait(10 if pos else 0):
            for s, is_slow in conns:
                if is_slow:
                    try:
                        s.send(HELLO[pos % len(HELLO):][:1])
                    except OSError:
                        pass
            pos += 1
    threading.Thread(target=feed, daemon=True).start()
    return conns, stop


def line(name, times, failed):
    if not times:
        return f"{name:<16} all {failed} signs failed"
    return (f"{name:<16} p50 {statistics.median(times) * 1000:7.1f} ms  "
            f"p99 {pct(times, 99) * 1000:7.1f} ms  ok {len(times):3d}  "
            f"failed {failed}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", type=pathlib.Path, default=ROOT / "build")
    ap.add_argument("--idle", type=int, default=300)
    ap.add_argument("--slow", type=int, default=300)
    ap.add_argument("--signs", type=int, default=20)
    ap.add_argument("--nofile", type=int, default=1024)
    ap.add_argument("--peers", type=int, default=12)
    ap.add_argument("--max-connections", type=int, default=0)
    a = ap.parse_args()
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="flood-bench-"))
    srv = None
    try:
        srv = Server(a.build, tmp, a.nofile, a.max_connections)
        jwt = tmp / "jwt"
        jwt.write_text(run(a.build / "server" / "halfkeyd", "token",
                           "--config", srv.conf, "--sub", "bench").stdout)
        tok = tmp / "tok"
        env = dict(os.environ, HALFKEY_PIN=PIN)
        run(a.build / "tools" / "halfkey", "--dir", tok, "init", "--url",
            f"https://127.0.0.1:{srv.port}", "--server-pin", srv.pin,
            "--token-file", jwt, env=env)
        run(a.build / "tools" / "halfkey", "--dir", tok, "keygen", "--curve",
            "p256", "--label", "k", env=env)
        rss0 = rss_mb(srv.proc.pid)
        base = signs(a.build, tok, a.signs)
        conns, stop = hold(srv.port, a.idle, a.slow, a.peers)
        time.sleep(1)
        during = signs(a.build, tok, a.signs)
        peak = rss_mb(srv.proc.pid)
        stop.set()
        for s, _ in conns:
            s.close()
        time.sleep(2.5)  # the tick trims the heap once they are gone
        after = signs(a.build, tok, a.signs)
        rss1 = rss_mb(srv.proc.pid)
        m = srv.metrics()
        cap = m['halfkey_connections_max{scope="total"}']
        per_peer = m['halfkey_connections_max{scope="peer"}']
        ref_cap = m['halfkey_connections_refused_total{cap="total"}']
        ref_peer = m['halfkey_connections_refused_total{cap="peer"}']
        print(f"halfkeyd: RLIMIT_NOFILE {a.nofile}, max_connections "
              f"{cap:.0f}, per peer {per_peer:.0f}")
        print(f"attack: {a.idle} idle + {a.slow} slow (1 byte / 10 s) from "
              f"{a.peers} peers; {len(conns)} connected")
        print(line("honest before", *base))
        print(line("honest flooded", *during))
        print(line("honest after", *after))
        print(f"refused: total cap {ref_cap:.0f}, per-peer cap "
              f"{ref_peer:.0f}")
        print(f"RSS: before {rss0:.1f} MB, flooded {peak:.1f} MB, after "
              f"{rss1:.1f} MB")
    finally:
        if srv is not None:
            srv.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
