"""halfkeyd in production (issue 4): policies (rate limits, per-key sign
limits, curves, disabled keys), the hash-chained audit log with `halfkeyd
audit verify|export`, operator commands (`halfkeyd keys ...`), key
deletion, /metrics and /status, graceful shutdown and configuration errors
with file and line. Every test runs on SQLite and on PostgreSQL
(conftest.BOTH_BACKENDS). Signatures are verified with `cryptography`."""
import hashlib
import json
import re
import signal
import sqlite3
import subprocess
import time

import pytest

from test_server import (cli_sign_digest, open_session, server_pubkey,
                         sign_and_verify, verify_raw, wait_log, ws_connect)


# --- helpers ---------------------------------------------------------------


def conf_value(server, key):
    m = re.search(rf"^{key} = (.*)$", server.conf.read_text(), re.M)
    return m.group(1) if m else None


def db_exec(server, *statements):
    """Runs SQL on the server's database directly (an attacker with
    database access, or a test looking at rows)."""
    url = conf_value(server, "db_url")
    if url is None:
        con = sqlite3.connect(server.dir / "halfkeyd.db")
        try:
            rows = [con.execute(s).fetchall() for s in statements]
            con.commit()
        finally:
            con.close()
        return rows
    out = []
    for s in statements:
        p = subprocess.run(["psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                            "-d", url, "-c", s], capture_output=True,
                           text=True, timeout=30, check=True)
        out.append([tuple(line.split("|"))
                    for line in p.stdout.splitlines() if line])
    return out


def unlock_audit(server):
    """Removes the append-only guard, as an attacker with the database's
    owner rights could."""
    if conf_value(server, "db_url") is None:
        db_exec(server, "DROP TRIGGER audit_no_update",
                "DROP TRIGGER audit_no_delete")
    else:
        db_exec(server, "ALTER TABLE audit DISABLE TRIGGER audit_no_change")


def audit_records(server, until=None, timeout=10):
    """The exported records; with until=(event, outcome), waits for one
    (the server records a session's end when it has checked the client's
    last message, a moment after the client is done)."""
    deadline = time.monotonic() + timeout
    while True:
        out = server.admin("audit", "export").stdout
        recs = [json.loads(line) for line in out.splitlines()]
        if until is None or time.monotonic() > deadline or any(
                (r["event"], r["outcome"]) == until for r in recs):
            return recs
        time.sleep(0.05)


def wait_metric(server, count, name, **labels):
    """The metric once it reaches count (or its value after 10 s)."""
    deadline = time.monotonic() + 10
    while True:
        value = metric(get_metrics(server), name, **labels)
        if value >= count or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def metric(text, name, **labels):
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pat = rf"^{re.escape(name)}" + (rf"\{{{re.escape(want)}\}}" if want
                                     else "") + r" (\S+)$"
    m = re.search(pat, text, re.M)
    assert m, f"no {name}{{{want}}} in:\n{text}"
    return float(m.group(1))


def get_metrics(server):
    conn_status, body = server.request("GET", "/metrics")
    assert conn_status == 200
    return body


# --- rate limits and per-key limits ----------------------------------------


def test_subject_rate_limit(make_server, make_token):
    server = make_server(rate_per_minute=1, rate_burst=4)
    alice = make_token(server, "alice")
    kid = alice.keygen("p256", "k")  # POST /keygen takes one token
    ta, tb = server.token("alice"), server.token("bob")
    for _ in range(3):
        open_session(server, ta, "/sign", {"key_id": kid})
    status, ans = server.request("POST", "/sign", {"key_id": kid}, token=ta)
    assert status == 429, ans
    assert ans["error"] == "rate_limited"
    assert "retry in" in ans["message"] and ans["retry_after"] >= 1
    # the refusal reaches the CLI as one clear line
    p = alice.run("sign", "--key", "k", "--digest", "11" * 32, check=False)
    assert p.returncode != 0 and "too many requests" in p.stderr, p.stderr
    # other subjects have their own bucket
    status, ans = server.request("POST", "/keygen", {"curve": "p256"},
                                 token=tb)
    assert status == 200, ans
    text = get_metrics(server)
    assert metric(text, "halfkey_policy_refusals_total",
                  reason="rate_limited") >= 2
    assert metric(text, "halfkey_operations_total", op="sign",
                  outcome="refused") >= 2
    refused = [r for r in audit_records(server)
               if r["outcome"] == "refused"]
    assert refused and refused[0]["detail"] == "rate_limited"
    assert refused[0]["subject"] == "alice"


def test_per_key_sign_limits(server, make_token):
    alice = make_token(server, "alice")
    kid = alice.keygen("secp256k1", "k")
    pem = alice.pubkey_pem("k")
    out = server.admin("keys", "limit", "--key", kid, "--per-hour", "2",
                       "--per-day", "10").stdout
    assert "2/h" in out and "10/d" in out
    sign_and_verify(alice, "k", pem)
    sign_and_verify(alice, "k", pem)
    status, ans = server.request("POST", "/sign", {"key_id": kid},
                                 token=server.token("alice"))
    assert status == 429 and ans["error"] == "key_hour_limit", ans
    assert "2 signatures per hour" in ans["message"]
    p = alice.run("sign", "--key", "k", "--digest", "22" * 32, check=False)
    assert p.returncode != 0
    # the operator lifts the limit: signing works again
    server.admin("keys", "limit", "--key", kid, "--per-hour", "0",
                 "--per-day", "0")
    sign_and_verify(alice, "k", pem)


def test_server_default_day_limit(make_server, make_token):
    server = make_server(max_signs_day=1)
    alice = make_token(server, "alice")
    alice.keygen("p256", "k")
    sign_and_verify(alice, "k", alice.pubkey_pem("k"))
    p = alice.run("sign", "--key", "k", "--digest", "33" * 32, check=False)
    assert p.returncode != 0
    wait_log(server, r"event=policy_refused op=sign sub=alice "
                     r"reason=key_day_limit")


def test_allowed_curves(make_server, make_token):
    server = make_server(curves="p256")
    tok = server.token("alice")
    status, ans = server.request("POST", "/keygen", {"curve": "secp256k1"},
                                 token=tok)
    assert status == 403 and ans["error"] == "curve_not_allowed", ans
    alice = make_token(server, "alice")
    p = alice.run("keygen", "--curve", "secp256k1", "--label", "x",
                  check=False)
    assert p.returncode != 0 and "x" not in alice.list()
    alice.keygen("p256", "y")
    assert metric(get_metrics(server), "halfkey_policy_refusals_total",
                  reason="curve_not_allowed") == 2


def test_disable_enable_and_list(server, make_token):
    alice = make_token(server, "alice")
    kid = alice.keygen("p256", "k")
    pem = alice.pubkey_pem("k")
    server.admin("keys", "disable", "--key", kid)
    status, ans = server.request("POST", "/sign", {"key_id": kid},
                                 token=server.token("alice"))
    assert status == 403 and ans["error"] == "key_disabled", ans
    listing = server.admin("keys", "list", "--sub", "alice").stdout
    assert re.search(rf"^{kid}\tp256\talice\t\S+Z\tdisabled", listing,
                     re.M)
    # the public key stays readable; the key works again once enabled
    assert server_pubkey(server, server.token("alice"), kid)["disabled"]
    server.admin("keys", "enable", "--key", kid)
    sign_and_verify(alice, "k", pem)
    assert "enabled" in server.admin("keys", "list").stdout
    # every key of a subject at once
    alice.keygen("secp256k1", "k2")
    out = server.admin("keys", "disable", "--sub", "alice").stdout
    assert out.count("\tdisabled\t") == 2, out
    p = alice.run("sign", "--key", "k2", "--digest", "44" * 32, check=False)
    assert p.returncode != 0 and "disabled" in p.stderr, p.stderr
    server.admin("keys", "enable", "--sub", "alice")
    sign_and_verify(alice, "k", pem)
    # unknown key and bad arguments: clear errors, nothing changed
    p = server.admin("keys", "disable", "--key", "00" * 16, check=False)
    assert p.returncode == 1 and "no such key" in p.stderr
    p = server.admin("keys", "disable", "--key", "xyz", check=False)
    assert p.returncode == 2
    events = [(r["event"], r["outcome"]) for r in audit_records(server)]
    assert ("disable", "ok") in events and ("enable", "ok") in events


def test_delete_key(server, make_token):
    alice = make_token(server, "alice")
    kid = alice.keygen("p256", "k")
    ta, tb = server.token("alice"), server.token("bob")
    status, ans = server.request("POST", "/delete", {"key_id": kid},
                                 token=tb)
    assert status == 404, ans  # not bob's
    status, ans = server.request("POST", "/delete", {"key_id": kid},
                                 token=ta)
    assert status == 200 and ans == {"key_id": kid, "deleted": True,
                                    "had_backup": False}, ans
    status, _ = server.request("GET", f"/pubkey?key_id={kid}", token=ta)
    assert status == 404
    status, _ = server.request("POST", "/sign", {"key_id": kid}, token=ta)
    assert status == 404
    status, _ = server.request("POST", "/delete", {"key_id": kid}, token=ta)
    assert status == 404
    status, _ = server.request("POST", "/delete", {"kid": kid}, token=ta)
    assert status == 400
    # the server's shares went with it
    assert db_exec(server, "SELECT count(*) FROM shares")[0][0][0] in (0, "0")


# --- audit log -------------------------------------------------------------


def test_audit_records_and_chain(server, make_token):
    alice = make_token(server, "alice")
    kid = alice.keygen("secp256k1", "k")
    pem = alice.pubkey_pem("k")
    digest = hashlib.sha256(b"audited").digest()
    sig = cli_sign_digest(alice, "k", digest)
    verify_raw(pem, sig, digest)
    alice.run("refresh", "--key", "k")

    recs = audit_records(server, until=("refresh", "ok"))
    assert [r["seq"] for r in recs] == list(range(1, len(recs) + 1))
    kinds = [(r["event"], r["outcome"]) for r in recs]
    for want in [("keygen", "granted"), ("keygen", "ok"),
                 ("sign", "granted"), ("sign", "ok"),
                 ("refresh", "granted"), ("refresh", "ok")]:
        assert want in kinds, kinds
    done = [r for r in recs if (r["event"], r["outcome"]) == ("sign", "ok")]
    assert done[0]["digest"] == digest.hex()
    assert done[0]["signature"] == sig  # the signature the client sent
    assert done[0]["key_id"] == kid and done[0]["subject"] == "alice"
    assert done[0]["node"] == "halfkeyd"
    assert recs[0]["prev"] == "00" * 32

    out = server.admin("audit", "verify").stdout
    m = re.search(r"audit: (\d+) records, chain intact, head ([0-9a-f]{64})",
                  out)
    assert m and int(m.group(1)) == len(recs) and \
        m.group(2) == recs[-1]["hash"], out
    assert len(audit_records(server)) == len(recs)
    part = server.admin("audit", "export", "--from", "3").stdout
    assert json.loads(part.splitlines()[0])["seq"] == 3

    # the log refuses changes through the database's own rules
    with pytest.raises((sqlite3.DatabaseError, subprocess.CalledProcessError)):
        db_exec(server, "UPDATE audit SET detail = 'x' WHERE seq = 2")


def test_audit_verify_finds_tampering(server, make_token):
    alice = make_token(server, "alice")
    alice.keygen("p256", "k")
    for _ in range(2):
        sign_and_verify(alice, "k", alice.pubkey_pem("k"))
    n = len(audit_records(server))
    assert n >= 6
    unlock_audit(server)

    # an altered record
    db_exec(server, "UPDATE audit SET subject = 'mallory' WHERE seq = 4")
    p = server.admin("audit", "verify", check=False)
    assert p.returncode == 1, p.stdout
    assert "chain broken at record 4" in p.stdout and "altered" in p.stdout
    db_exec(server, "UPDATE audit SET subject = 'alice' WHERE seq = 4")
    assert server.admin("audit", "verify").returncode == 0

    # a log cut short at the end still chains: the anchor of an earlier
    # verify, kept elsewhere, shows it
    out = server.admin("audit", "verify").stdout
    anchor = re.search(r"^anchor = (\d+:[0-9a-f]{64})$", out, re.M).group(1)
    assert server.admin("audit", "verify", "--anchor", anchor).returncode == 0
    db_exec(server, f"DELETE FROM audit WHERE seq = {n}")
    assert server.admin("audit", "verify").returncode == 0
    p = server.admin("audit", "verify", "--anchor", anchor, check=False)
    assert p.returncode == 1 and "cut short" in p.stdout, p.stdout
    p = server.admin("audit", "verify", "--anchor", anchor[:-1] + "0",
                     check=False)
    assert p.returncode in (1, 2)

    # a removed record
    db_exec(server, "DELETE FROM audit WHERE seq = 3")
    p = server.admin("audit", "verify", check=False)
    assert p.returncode == 1 and "chain broken at record 4" in p.stdout
    assert "removed" in p.stdout, p.stdout


# --- /metrics and /status ----------------------------------------------------


def test_metrics_and_status(make_server, make_token):
    server = make_server(node="node-a")
    alice = make_token(server, "alice")
    alice.keygen("p256", "k")
    for _ in range(3):
        sign_and_verify(alice, "k", alice.pubkey_pem("k"))
    assert wait_metric(server, 3, "halfkey_operations_total", op="sign",
                       outcome="ok") == 3
    status, ans = server.request("GET", "/status")
    assert status == 200 and ans["status"] == "ok" and ans["node"] == "node-a"
    assert ans["database"]["status"] == "ok"
    assert ans["database"]["backend"] in ("sqlite", "postgresql")
    assert ans["database"]["schema"] == 8 and ans["draining"] is False

    import http.client
    conn = http.client.HTTPSConnection("127.0.0.1", server.port,
                                       context=server.ssl_context(),
                                       timeout=10)
    conn.request("GET", "/metrics")
    resp = conn.getresponse()
    text = resp.read().decode()
    conn.close()
    assert resp.status == 200
    assert resp.getheader("Content-Type").startswith("text/plain")
    assert metric(text, "halfkey_operations_total", op="sign",
                  outcome="ok") == 3
    assert metric(text, "halfkey_operations_total", op="keygen",
                  outcome="ok") == 1
    assert metric(text, "halfkey_operation_seconds_count", op="sign") == 3
    assert metric(text, "halfkey_operation_seconds_bucket", op="sign",
                  le="+Inf") == 3
    assert metric(text, "halfkey_info", node="node-a") == 1
    assert metric(text, "halfkey_sessions_active") >= 0
    # every sample line is well formed
    for line in text.splitlines():
        assert line.startswith("#") or re.fullmatch(
            r'[a-z_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? [0-9.e+-]+',
            line), line

    off = make_server("off", metrics=0)
    status, _ = off.request("GET", "/metrics")
    assert status == 404


# --- graceful shutdown -----------------------------------------------------


def _stopped(server, timeout):
    rc = server.proc.wait(timeout=timeout)
    server.proc = None
    server._logf.close()
    return rc


def test_graceful_shutdown_waits_for_running_sessions(make_server,
                                                      make_token):
    server = make_server(shutdown_grace=60)
    alice = make_token(server, "alice")
    kid = alice.keygen("p256", "k")
    token = server.token("alice")
    # a claimed session: running on the server until its WebSocket ends
    sess = open_session(server, token, "/sign", {"key_id": kid})
    ws = ws_connect(server, sess["session_id"], token)
    wait_log(server, r"event=session_open op=sign")
    server.proc.send_signal(signal.SIGTERM)
    wait_log(server, r"event=draining sessions=1 grace=60", timeout=10)
    # no new work while draining; /status says so
    status, ans = server.request("POST", "/sign", {"key_id": kid},
                                 token=token)
    assert status == 503 and ans["error"] == "draining", ans
    status, ans = server.request("GET", "/status")
    assert status == 503 and ans["status"] == "draining" and ans["draining"]
    time.sleep(1.5)
    assert server.alive()  # still waiting for the session
    ws.close()
    assert _stopped(server, 15) == 0
    log = server.log_text()
    assert "event=stopped" in log and "drain_timeout" not in log


def test_graceful_shutdown_grace_period_ends(make_server, make_token):
    server = make_server(shutdown_grace=2)
    alice = make_token(server, "alice")
    kid = alice.keygen("p256", "k")
    token = server.token("alice")
    sess = open_session(server, token, "/sign", {"key_id": kid})
    ws = ws_connect(server, sess["session_id"], token)
    wait_log(server, r"event=session_open op=sign")
    t0 = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    assert _stopped(server, 20) == 0
    assert 1.5 <= time.monotonic() - t0 < 10
    assert "event=drain_timeout sessions=1" in server.log_text()
    ws.close()


def test_kept_open_connection_closes_on_shutdown(make_server, make_token,
                                                 tmp_path):
    server = make_server(shutdown_grace=30)
    alice = make_token(server, "alice")
    alice.keygen("p256", "k")
    pem = alice.pubkey_pem("k")
    digests = [hashlib.sha256(bytes([i])).digest() for i in range(3)]
    f = tmp_path / "digests"
    f.write_text("".join(d.hex() + "\n" for d in digests))
    out = alice.run("sign", "--key", "k", "--digest-file", f,
                    "--format", "raw").stdout
    for d, sig in zip(digests, out.split()):
        verify_raw(pem, sig, d)
    server.proc.send_signal(signal.SIGTERM)
    assert _stopped(server, 15) == 0


# --- configuration errors --------------------------------------------------


@pytest.mark.parametrize("line,want", [
    ("curves = p256,ed25519", "curves: must list"),
    ("rate_burst = 0", "integer out of range"),
    ("no_such_key = 1", "unknown key"),
    ("db_url = host=127.0.0.1", "give db or db_url"),
])
def test_config_errors_name_file_and_line(make_server, db_backend, line,
                                         want):
    server = make_server(start=False)
    if line.startswith("db_url") and db_backend == "postgresql":
        line = "db = other.db"  # the other half of the conflict
    text = server.conf.read_text().rstrip("\n").split("\n")
    key = line.split(" =")[0]
    at = next((i for i, old in enumerate(text)
               if old.startswith(key + " =")), None)
    if at is None:
        text.insert(3, line)
        at = 3
    else:
        text[at] = line  # a value the file already sets
    server.conf.write_text("\n".join(text) + "\n")
    p = subprocess.run([str(server.bin), "run", "--config", str(server.conf)],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 1 and want in p.stderr, p.stderr
    n = int(re.search(rf"{re.escape(str(server.conf))}:(\d+): ",
                      p.stderr).group(1))
    assert n == at + 1 or (db_backend == "postgresql" and "db_url" in want), n
