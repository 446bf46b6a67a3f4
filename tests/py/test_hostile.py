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

from test_server import (b64u, es256_sig, issuer_key, jwt_claims, mint,
                         open_session, sign_and_verify, ws_drain)


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


# --- 2. bounded state ------------------------------------------------------


def channel(server, jwt):
    return websocket.create_connection(
        f"wss://127.0.0.1:{server.port}/ws?channel=1",
        header=[f"Authorization: Bearer {jwt}"],
        sslopt={"ca_certs": str(server.cert)}, timeout=15)


def test_session_queue_is_capped(server, make_token):
    """A client that sends without waiting for answers used to queue
    memory without limit; past the cap the session ends with an error."""
    tok, _ = keygen_ready(server, make_token)
    kid = tok.list()["k1"][1]
    ws = channel(server, server.token("alice"))
    ws.send(json.dumps({"v": 1, "t": "open", "op": "sign", "key_id": kid}))
    junk = json.dumps({"v": 1, "t": "junk", "pad": "x" * 4000})
    try:
        for _ in range(300):
            ws.send(junk)
    except (websocket.WebSocketConnectionClosedException, OSError):
        pass  # closed by the server mid-burst
    msgs, _ = ws_drain(ws)
    assert any("too many messages queued" in m for m in msgs), msgs
    assert "event=session_queue_full" in server.log_text()
    assert server.alive()


def raw_upgrade(server, path, jwt):
    """A TLS socket after a hand-written WebSocket upgrade."""
    sock = socket.create_connection(("127.0.0.1", server.port), 10)
    tls = server.ssl_context().wrap_socket(sock, server_hostname="127.0.0.1")
    tls.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 "Sec-WebSocket-Version: 13\r\n"
                 f"Authorization: Bearer {jwt}\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = tls.recv(4096)
        assert chunk, head
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    return tls


@pytest.mark.xfail(strict=True, reason=(
    "libwebsockets 4.1.6 accepts unmasked client frames and does not "
    "expose the mask bit to the application; upstream rejects them since "
    "commit cae06c63a (2026, no release yet). Strict: this fails loudly "
    "once the installed libwebsockets closes such a connection."))
def test_unmasked_client_frame_closes(server, make_token):
    tok, _ = keygen_ready(server, make_token)
    kid = tok.list()["k1"][1]
    tls = raw_upgrade(server, "/ws?channel=1", server.token("alice"))
    body = json.dumps({"v": 1, "t": "open", "op": "sign",
                       "key_id": kid}).encode()
    assert len(body) < 126
    tls.sendall(bytes([0x81, len(body)]) + body)  # FIN|text, mask bit 0
    tls.settimeout(5)
    data = b""
    try:
        while True:
            chunk = tls.recv(4096)
            if not chunk:
                break
            data += chunk
            if b"opened" in data or data[:1] == b"\x88":
                break
    except (OSError, ssl.SSLError):
        pass
    # RFC 6455 5.1: the server closes (1002); it never serves the frame
    assert b"opened" not in data, data


def test_killed_server_frees_running_sessions(make_server, make_token,
                                              db_backend):
    """A session left running by a killed server used to make the key's
    next refresh fail as busy ("another signing session", the wrong
    operation too) until the idle timeout."""
    srv = make_server()
    tok, _ = keygen_ready(srv, make_token)
    kid = tok.list()["k1"][1]
    jwt = srv.token("alice")
    ans = open_session(srv, jwt, "/refresh", {"key_id": kid})
    ws = websocket.create_connection(
        srv.ws_url(ans["session_id"]), header=[f"Authorization: Bearer {jwt}"],
        sslopt={"ca_certs": str(srv.cert)}, timeout=15)  # claimed: running
    srv.kill()
    ws.close()
    srv.set_conf(port=srv.port)  # the token's configuration names it
    srv.start()
    assert "event=sessions_orphaned count=1" in srv.log_text()
    assert tok.run("refresh", "--key", "k1").stdout == "refreshed = k1\n"


@pytest.fixture
def tiny_fs(tmp_path):
    """A 4 MB tmpfs (root only; skipped where mounting is not allowed):
    filling it gives halfkeyd a disk that cannot write."""
    mnt = tmp_path / "tinyfs"
    mnt.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs",
                        str(mnt)], capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {p.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(path):
    """Fills the file system (it may be full already: the database and
    its WAL can take the whole of it)."""
    try:
        with open(path, "wb") as f:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
    except OSError:
        pass


def test_status_unhealthy_when_database_cannot_write(make_server, tiny_fs):
    """A full disk: reads work, every write fails. /status used to say ok."""
    srv = make_server(start=False)
    db = tiny_fs / "halfkeyd.db"
    subprocess.run(["cp", str(srv.dir / "halfkeyd.db"), str(db)], check=True)
    srv.set_conf(db=str(db))
    srv.start()
    fill(tiny_fs / "filler")
    time.sleep(1.1)  # past the probe's cache
    status, body = srv.request("GET", "/status")
    assert status == 503, body
    assert body["status"] == "degraded", body
    assert body["database"]["writable"] is False, body
    assert body["database"]["status"] == "error", body
    assert "full" in body["database"]["error"], body
    os.unlink(tiny_fs / "filler")
    time.sleep(1.1)
    status, body = srv.request("GET", "/status")
    assert status == 200 and body["database"]["writable"] is True, body


def test_high_s_jwt_refused(server):
    """ES256 signatures are malleable: (r, n - s) verifies too. Only the
    low-S form is accepted."""
    key = issuer_key(server)
    head = b64u(json.dumps({"alg": "ES256", "typ": "JWT"}).encode())
    body = b64u(json.dumps(jwt_claims()).encode())
    signing_input = f"{head}.{body}".encode()
    low = f"{head}.{body}.{b64u(es256_sig(key, signing_input))}"
    high = f"{head}.{body}.{b64u(es256_sig(key, signing_input, True))}"
    assert server.request("GET", "/pubkey?key_id=" + "0" * 32,
                          token=low)[0] == 404  # authenticated, no such key
    status, ans = server.request("GET", "/pubkey?key_id=" + "0" * 32,
                                 token=high)
    assert status == 401, ans
    # and the tokens halfkeyd mints are all low-S
    for _ in range(16):
        assert server.request("GET", "/pubkey?key_id=" + "0" * 32,
                              token=server.token("alice"))[0] == 404


# --- 3. tokens up to the server's limit ------------------------------------


def padded_token(server, size):
    """A valid ES256 token of exactly `size` bytes (a padding claim)."""
    key = issuer_key(server)
    claims = jwt_claims(pad="")
    tok = mint(key, claims)
    claims["pad"] = "x" * ((size - len(tok)) * 3 // 4)
    tok = mint(key, claims)
    while len(tok) < size:
        claims["pad"] += "x"
        tok = mint(key, claims)
    assert len(tok) == size, (len(tok), size)
    return tok


@pytest.mark.parametrize("size", [4500, 6000, 8192])
def test_tokens_up_to_8k_accepted(server, size):
    tok = padded_token(server, size)
    status, ans = server.request("GET", "/pubkey?key_id=" + "0" * 32,
                                 token=tok)
    assert status == 404, ans  # authenticated; no such key
    assert server.request("POST", "/sign", {"key_id": "0" * 32},
                          token=tok)[0] == 404


def test_token_over_8k_answered(server):
    tok = padded_token(server, 8200)
    status, ans = server.request("GET", "/pubkey?key_id=" + "0" * 32,
                                 token=tok)
    assert status == 431, ans
    assert ans["error"] == "header_too_large", ans
    assert "8192" in ans["message"], ans
