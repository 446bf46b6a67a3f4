"""halfkeyd on a hostile network (issue 15): the exact bind, connection
caps, bounded state, an honest health check and token limits. Every
connection goes to 127.0.0.1 or ::1; the bind is checked by reading the
process's listening sockets, never by connecting elsewhere. Attackers use
other loopback source addresses (127.0.0.2, ...) so the per-peer cap tells
them apart from the honest client on 127.0.0.1."""
import hashlib
import json
import os
import re
import socket
import ssl
import subprocess
import time

import pytest
import websocket
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils

from test_server import (b64u, issuer_key, jwt_claims, load_pub, mint,
                         open_session, sign_and_verify)

P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


# --- helpers ---------------------------------------------------------------


def listening(pid):
    """(address, port) of every listening TCP socket of process pid, read
    from /proc/PID/net/tcp{,6} and filtered by the process's socket
    inodes."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            m = re.fullmatch(r"socket:\[(\d+)\]",
                             os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            continue
        if m:
            inodes.add(m.group(1))
    found = []
    for name, fam in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        with open(f"/proc/{pid}/net/{name}") as f:
            next(f)
            for line in f:
                col = line.split()
                if col[3] != "0A" or col[9] not in inodes:  # 0A: LISTEN
                    continue
                addr_hex, port_hex = col[1].split(":")
                raw = bytes.fromhex(addr_hex)
                # /proc prints each 32-bit word in host (little-endian) order
                raw = b"".join(raw[i:i + 4][::-1]
                               for i in range(0, len(raw), 4))
                found.append((socket.inet_ntop(fam, raw), int(port_hex, 16)))
    return sorted(found)


def metric(server, name, **labels):
    status, text = server.request("GET", "/metrics")
    assert status == 200, text
    want = name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels.items())
                   + "}" if labels else "")
    for line in text.splitlines():
        if line.startswith(want + " "):
            return float(line.split()[-1])
    raise AssertionError(f"no {want} in /metrics")


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def flood(port, count, sources, payload=b""):
    """count TCP connections to 127.0.0.1:port spread over the source
    addresses; each sends payload (if any) and stays open."""
    socks = []
    for i in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((sources[i % len(sources)], 0))
        s.settimeout(5)
        try:
            s.connect(("127.0.0.1", port))
            if payload:
                s.sendall(payload)
        except OSError:
            s.close()
            continue
        socks.append(s)
    return socks


def close_all(socks):
    for s in socks:
        s.close()


def keygen_ready(server, make_token):
    tok = make_token(server, "alice")
    tok.keygen("p256", "k1")
    return tok, tok.pubkey_pem("k1")


# --- 1. the exact bind -----------------------------------------------------


def test_binds_exactly_ipv4(make_server):
    srv = make_server(listen="127.0.0.1")
    assert listening(srv.proc.pid) == [("127.0.0.1", srv.port)]
    assert re.search(rf"event=listening address=127\.0\.0\.1 port={srv.port}",
                     srv.log_text())


def test_binds_exactly_ipv6(make_server):
    srv = make_server(start=False, listen="::1")
    srv.host = "::1"
    srv.start()
    assert listening(srv.proc.pid) == [("::1", srv.port)]
    assert re.search(rf"event=listening address=::1 port={srv.port}",
                     srv.log_text())


def test_listen_must_be_an_address(make_server):
    srv = make_server(start=False, listen="localhost")
    p = subprocess.run([str(srv.bin), "run", "--config", str(srv.conf)],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode != 0
    assert re.search(r"halfkeyd\.conf:\d+: listen: must be an IPv4 or IPv6",
                     p.stderr), p.stderr


# --- 1. connection caps ----------------------------------------------------


def test_idle_connections_do_not_stop_signing(make_server, make_token):
    """With 512 fds, ~600 idle connections from one peer used to exhaust
    the fds and stop every honest sign; the per-peer cap refuses them at
    accept. Connections from many peers fill the total cap instead, which
    refuses the excess while fds are left (today: EMFILE)."""
    srv = make_server(start=False)
    srv.nofile = 512
    srv.start()
    tok, pem = keygen_ready(srv, make_token)
    socks = flood(srv.port, 600, ["127.0.0.2"])
    try:
        time.sleep(0.5)
        sign_and_verify(tok, "k1", pem)
        assert metric(srv, "halfkey_connections_refused_total",
                      cap="peer") >= 600 - 64
    finally:
        close_all(socks)
    cap = metric(srv, "halfkey_connections_max", scope="total")
    assert cap < 512
    sources = [f"127.0.0.{i}" for i in range(2, 14)]
    socks = flood(srv.port, 700, sources)
    try:
        time.sleep(0.5)
        # the cap is full (a /metrics request would be refused too), but
        # fds are left: the process is below its limit
        assert len(os.listdir(f"/proc/{srv.proc.pid}/fd")) < 500
    finally:
        close_all(socks)
    time.sleep(0.5)
    assert metric(srv, "halfkey_connections_refused_total",
                  cap="total") >= 700 - cap
    sign_and_verify(tok, "k1", pem)
    assert srv.alive()


def test_half_open_connections_keep_memory_bounded(make_server):
    """Thousands of connections stopped inside the TLS handshake: the cap
    bounds the memory they hold, and it is given back when they go."""
    srv = make_server(max_connections=300, max_connections_per_peer=0)
    hello = bytes.fromhex("160301020001")  # a ClientHello record, cut short
    before = rss_kb(srv.proc.pid)
    sources = [f"127.0.0.{i}" for i in range(2, 22)]
    socks = []
    try:
        for _ in range(4):
            socks += flood(srv.port, 1000, sources, hello)
        time.sleep(1)
        peak = rss_kb(srv.proc.pid)
    finally:
        close_all(socks)
    time.sleep(0.5)
    refused = metric(srv, "halfkey_connections_refused_total", cap="total")
    assert refused >= 4000 - 300
    assert peak - before < 40 * 1024, (before, peak)
    time.sleep(2.5)  # the next ticks trim the heap
    after = rss_kb(srv.proc.pid)
    assert after - before < 20 * 1024, (before, peak, after)
    status, body = srv.request("GET", "/status")
    assert status == 200, body
