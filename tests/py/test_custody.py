"""Custody: no claim destroys a key, the abort lock holds for good and is
fail-closed, keygen is two-phase (issue 14, DESIGN.md section 2).

A man in the middle (mitm.py) with the server's own TLS key plays the
malicious server or the failing network at the chosen step; the attacker
with only the subject's JWT talks raw WebSocket. Every signature is
verified with `cryptography`. Runs on SQLite and PostgreSQL."""
import hashlib
import json
import os
import pathlib
import shutil
import signal
import subprocess
import tempfile
import time

import pytest
import websocket

from mitm import Cut, Mitm, msg_type, point_token_at
from test_server import server_pubkey, sign_and_verify, uncompressed


def direct(tok, server):
    point_token_at(tok, server.url)


def via(tok, mitm):
    point_token_at(tok, mitm.url)


def cut_on(direction, mtype):
    """A hook that cuts the connection instead of passing `mtype`."""
    def hook(d, message):
        if d == direction and msg_type(message) == mtype:
            raise Cut()
        return [message]
    return hook


def open_sign(server, token, kid):
    status, body = server.request("POST", "/sign", {"key_id": kid},
                                  token=token)
    assert status == 200, body
    return body["session_id"]


# --- 1. a claim never promotes a pending share ------------------------------


def test_claim_never_promotes(server, make_token):
    tok = make_token(server, "alice")
    kid = tok.keygen("secp256k1", "k")
    pem = tok.pubkey_pem("k")
    mitm = Mitm(server)
    via(tok, mitm)
    sign_and_verify(tok, "k", pem)  # records a genuine sign.1
    sign1 = json.loads(next(m for d, m in mitm.seen
                            if d == "c2s" and msg_type(m) == "sign.1"))
    # the refresh is cut off after the client's refresh.3: the server holds
    # a pending share (epoch 2), the client still epoch 1
    mitm.hook = cut_on("s2c", "refresh.4")
    p = tok.run("refresh", "--key", "k", check=False)
    assert p.returncode != 0
    assert tok.list()["k"][2] == 1
    assert "event=refresh_pending sub=alice epoch=2" in server.log_text()
    # the JWT holder (no share, no PIN) names epoch 2 with a zero
    # fingerprint in a sign.1 of its own session
    jwt = server.token("alice")
    sid = open_sign(server, jwt, kid)
    forged = dict(sign1, sid=sid[5:], epoch=sign1["epoch"] + 1,
                  fp="00" * 32)
    ws = websocket.create_connection(
        server.ws_url(sid), header=[f"Authorization: Bearer {jwt}"],
        sslopt={"ca_certs": str(server.cert)}, timeout=15)
    ws.send(json.dumps(forged, separators=(",", ":")))
    answer = json.loads(ws.recv())
    ws.close()
    assert answer["t"] == "error", answer
    # nothing changed: the client's epoch-1 share still signs, twice
    direct(tok, server)
    sign_and_verify(tok, "k", pem, b"after the claim")
    sign_and_verify(tok, "k", pem, b"and again")
    assert "share_proven" not in server.log_text()
    # and a later refresh still works (it replaces the stale pending share)
    tok.run("refresh", "--key", "k")
    assert tok.list()["k"][2] == 2
    sign_and_verify(tok, "k", pem, b"refreshed")


def test_lost_confirmation_still_signs(server, make_token):
    """The client stored the new share but its refresh.5 never arrived: the
    first signature with the new share proves it and the server switches;
    the active share was never deleted on a claim."""
    tok = make_token(server, "alice")
    kid = tok.keygen("p256", "k")
    pem = tok.pubkey_pem("k")
    mitm = Mitm(server, cut_on("c2s", "refresh.5"))
    via(tok, mitm)
    tok.run("refresh", "--key", "k")  # stored locally; no confirmation
    assert tok.list()["k"][2] == 2
    time.sleep(0.3)
    assert "event=refresh_done" not in server.log_text()
    direct(tok, server)
    sign_and_verify(tok, "k", pem, b"pending share")
    server_log_wait(server, "event=share_proven key=" + kid
                    + " epoch=2 by=signature")
    sign_and_verify(tok, "k", pem, b"active now")
    tok.run("refresh", "--key", "k")
    assert tok.list()["k"][2] == 3
    sign_and_verify(tok, "k", pem, b"epoch 3")


def test_lost_confirmation_then_refresh(server, make_token):
    """A refresh naming the unconfirmed share proves possession in
    refresh.1 (a Schnorr proof of x1 bound to the session)."""
    tok = make_token(server, "alice")
    kid = tok.keygen("secp256k1", "k")
    pem = tok.pubkey_pem("k")
    mitm = Mitm(server, cut_on("c2s", "refresh.5"))
    via(tok, mitm)
    tok.run("refresh", "--key", "k")
    direct(tok, server)
    tok.run("refresh", "--key", "k")
    server_log_wait(server, "event=share_proven key=" + kid
                    + " epoch=2 by=refresh.1")
    assert tok.list()["k"][2] == 3
    sign_and_verify(tok, "k", pem, b"epoch 3")


def server_log_wait(server, text, timeout=10):
    deadline = time.monotonic() + timeout
    while text not in server.log_text():
        assert time.monotonic() < deadline, server.log_text()[-3000:]
        time.sleep(0.05)


# --- 5. keygen is two-phase -------------------------------------------------


def keys_list(server):
    return server.admin("keys", "list").stdout


def test_keygen_pending_until_confirmed(server, make_token):
    tok = make_token(server, "alice")
    mitm = Mitm(server, cut_on("c2s", "keygen.5"))
    via(tok, mitm)
    p = tok.run("keygen", "--curve", "p256", "--label", "lost", check=False)
    # the client stored its share, the server's key stays pending
    line = next(ln for ln in keys_list(server).splitlines() if "alice" in ln)
    assert "pending" in line, line
    kid = line.split()[0]
    server.wait_audit(lambda r: r["event"] == "keygen"
                      and r["outcome"] == "failed")
    assert not any(r["event"] == "keygen" and r["outcome"] == "ok"
                   for r in server.audit())
    if p.returncode == 0:
        # a signature with the stored share confirms the key
        direct(tok, server)
        sign_and_verify(tok, "lost", tok.pubkey_pem("lost"))
        server_log_wait(server, "event=share_proven key=" + kid)
        assert "pending" not in keys_list(server)
    # a normal keygen is confirmed at once
    direct(tok, server)
    tok.keygen("secp256k1", "fine")
    server.wait_audit(lambda r: r["event"] == "keygen"
                      and r["outcome"] == "ok")


def test_pending_key_expires(make_server, make_token):
    server = make_server(pending_key_ttl=1)
    tok = make_token(server, "alice")
    mitm = Mitm(server, cut_on("s2c", "keygen.4"))
    via(tok, mitm)
    p = tok.run("keygen", "--curve", "p256", "--label", "gone", check=False)
    assert p.returncode != 0
    assert "pending" in keys_list(server)
    # the sweep runs every 10 s; the key is removed and audited
    rec = server.wait_audit(lambda r: r["event"] == "keygen"
                            and r["outcome"] == "expired", timeout=30)
    assert "never confirmed" in rec["detail"]
    assert "alice" not in keys_list(server)


# --- 2. the abort lock holds -------------------------------------------------


class C3Swap:
    """A malicious server: the c3 of the first sign is kept and returned
    again for a later one (a valid ciphertext under the same key that
    decrypts to the wrong value): the client's signature check fails."""

    def __init__(self):
        self.c3 = None
        self.armed = False

    def __call__(self, d, message):
        if d == "s2c" and msg_type(message) == "sign.4":
            m = json.loads(message)
            if self.c3 is None:
                self.c3 = m["c3"]
            elif self.armed:
                m["c3"] = self.c3
                return [json.dumps(m, separators=(",", ":")).encode()]
        return [message]


def test_abort_locks_for_good(server, make_token):
    tok = make_token(server, "alice")
    tok.keygen("secp256k1", "k")
    pem = tok.pubkey_pem("k")
    swap = C3Swap()
    mitm = Mitm(server, swap)
    via(tok, mitm)
    sign_and_verify(tok, "k", pem)
    swap.armed = True
    p = tok.run("sign", "--key", "k", "--digest", "11" * 32, check=False)
    assert p.returncode != 0 and "abort" in p.stderr, p.stderr
    direct(tok, server)
    assert tok.list()["k"][3]
    # no refresh, no plain unlock
    p = tok.run("refresh", "--key", "k", check=False)
    assert p.returncode != 0 and "does not clear the lock" in p.stderr
    assert tok.list()["k"][2] == 1
    p = tok.run("unlock", "--key", "k", check=False)
    assert p.returncode != 0 and "--force" in p.stderr
    p = tok.run("sign", "--key", "k", "--digest", "22" * 32, check=False)
    assert p.returncode != 0 and "locked" in p.stderr
    # the explicit override: audited by the server, then it signs
    tok.run("unlock", "--key", "k", "--force")
    server.wait_audit(lambda r: r["event"] == "unlock"
                      and r["outcome"] == "forced")
    sign_and_verify(tok, "k", pem, b"after the override")


class HoldC3:
    """Holds the server's sign.4 back until released (the client waits)."""

    def __init__(self):
        import threading
        self.sent3 = threading.Event()
        self.release = threading.Event()

    def __call__(self, d, message):
        if d == "c2s" and msg_type(message) == "sign.3":
            self.sent3.set()
        if d == "s2c" and msg_type(message) == "sign.4":
            self.release.wait(60)
            raise Cut()
        return [message]


def test_killed_mid_sign_is_locked(server, make_token):
    """kill -9 of the client between sending sign.3 and verifying: the key
    is locked as an interrupted signature; a plain unlock clears it."""
    tok = make_token(server, "alice")
    tok.keygen("p256", "k")
    pem = tok.pubkey_pem("k")
    hold = HoldC3()
    mitm = Mitm(server, hold)
    via(tok, mitm)
    proc = tok.popen("sign", "--key", "k", "--digest", "33" * 32)
    assert hold.sent3.wait(30)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    hold.release.set()
    direct(tok, server)
    assert tok.list()["k"][3]
    p = tok.run("sign", "--key", "k", "--digest", "44" * 32, check=False)
    assert p.returncode != 0 and "interrupted signature" in p.stderr, \
        p.stderr
    doc = tok.run("doctor", check=False).stdout
    assert "interrupted" in doc
    tok.run("unlock", "--key", "k")  # no --force needed
    sign_and_verify(tok, "k", pem, b"after the interruption")


@pytest.mark.parametrize("step", ["sign.2", "sign.4"])
def test_server_error_before_c3_does_not_lock(server, make_token, step):
    """A connection lost before any c3 arrived leaks nothing: no lock. The
    client records the signature in flight once sign.1 has left (its sync
    overlaps the server's work), so a sign.2 that never comes must clear
    it as well."""
    tok = make_token(server, "alice")
    tok.keygen("p256", "k")
    pem = tok.pubkey_pem("k")
    mitm = Mitm(server, cut_on("s2c", step))
    via(tok, mitm)
    p = tok.run("sign", "--key", "k", "--digest", "55" * 32, check=False)
    assert p.returncode != 0
    direct(tok, server)
    assert not tok.list()["k"][3]
    sign_and_verify(tok, "k", pem)


def _as_nobody(cmd):
    return ["setpriv", "--reuid=nobody", "--regid=nogroup",
            "--clear-groups", "--"] + cmd


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become nobody")
def test_readonly_token_dir_still_locks(server, make_token, halfkey_bin):
    """The key files cannot be rewritten when the abort happens (the keys
    directory is read-only to the client): the signing-session record
    written before sign.3 still locks the key."""
    base = pathlib.Path(tempfile.mkdtemp(prefix="hk-ro-"))
    try:
        os.chmod(base, 0o755)
        shutil.chown(base, "nobody", "nogroup")
        jwt = base / "alice.jwt"
        jwt.write_text(server.token("alice") + "\n")
        swap = C3Swap()
        mitm = Mitm(server, swap)
        env = dict(os.environ, HALFKEY_PIN="2468-test-pin")
        d = base / "tok"

        def run(*args, check=True):
            p = subprocess.run(_as_nobody([str(halfkey_bin), "--dir", str(d),
                                           *map(str, args)]),
                               capture_output=True, text=True, env=env,
                               timeout=120)
            assert not check or p.returncode == 0, p.stderr
            return p

        os.chmod(jwt, 0o644)
        run("init", "--url", mitm.url, "--server-pin", server.pin,
            "--token-file", jwt)
        run("keygen", "--curve", "secp256k1", "--label", "k")
        digest = hashlib.sha256(b"first").digest()
        run("sign", "--key", "k", "--digest", digest.hex())
        os.chmod(d / "keys", 0o500)  # no rename into it any more
        swap.armed = True
        p = run("sign", "--key", "k", "--digest", "66" * 32, check=False)
        assert p.returncode != 0 and "abort" in p.stderr, p.stderr
        os.chmod(d / "keys", 0o700)
        p = run("list")
        assert "LOCKED" in p.stdout, p.stdout
        p = run("sign", "--key", "k", "--digest", "77" * 32, check=False)
        assert p.returncode != 0 and "locked" in p.stderr
        p = run("unlock", "--key", "k", check=False)  # an abort: --force
        assert p.returncode != 0 and "--force" in p.stderr
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_locked_key_refused_by_the_faces(server, make_token, tmp_path):
    """After an abort, the provider refuses to sign and the PKCS#11
    module refuses sign and refresh (test_pkcs11's raw checks cover the
    vendor refresh attribute on a locked key)."""
    tok = make_token(server, "alice")
    tok.keygen("p256", "k")
    swap = C3Swap()
    mitm = Mitm(server, swap)
    via(tok, mitm)
    sign_and_verify(tok, "k", tok.pubkey_pem("k"))
    swap.armed = True
    p = tok.run("sign", "--key", "k", "--digest", "88" * 32, check=False)
    assert p.returncode != 0 and "abort" in p.stderr, p.stderr
    direct(tok, server)
    dig = tmp_path / "dig"
    dig.write_bytes(bytes(32))
    build = pathlib.Path(os.environ["HALFKEY_BUILD"])
    env = dict(tok.env, HALFKEY_HOME=str(tok.dir),
               OPENSSL_MODULES=str(build / "ossl-provider"))
    p = subprocess.run(["openssl", "pkeyutl", "-provider", "halfkey",
                        "-provider", "default", "-sign", "-inkey",
                        "halfkey:object=k", "-in", str(dig)],
                       capture_output=True, env=env, timeout=60)
    assert p.returncode != 0 and b"signing refused" in p.stderr, p.stderr


def test_pubkey_unchanged_through_custody(server, make_token):
    tok = make_token(server, "alice")
    kid = tok.keygen("secp256k1", "k")
    pem = tok.pubkey_pem("k")
    assert server_pubkey(server, server.token("alice"),
                         kid)["pubkey"] == uncompressed(pem)


def test_c3_waits_for_the_open_to_sync(make_server, make_token, db_backend):
    """halfkeyd syncs a sign's open (admission, presignature taken) while
    the sign runs and sends c3 only once it is on disk (db.h,
    HK_DB_DEFERRED). A sync that fails -- here the database's directory
    is renamed away, so the syncer cannot open the WAL by its path --
    fails the sign before any c3 (and every later one: the disk may
    have lost writes): the client's key stays unlocked and signs again
    once the server is restarted."""
    if db_backend != "sqlite":
        pytest.skip("PostgreSQL commits a sign's open durably")
    srv = make_server(start=False)
    data = srv.dir / "data"
    data.mkdir()
    (srv.dir / "halfkeyd.db").rename(data / "halfkeyd.db")
    srv.set_conf(db=str(data / "halfkeyd.db"))
    srv.start()
    tok = make_token(srv, "alice")
    tok.keygen("secp256k1", "k")
    pem = tok.pubkey_pem("k")
    sign_and_verify(tok, "k", pem, b"synced")
    moved = srv.dir / "data-moved"
    data.rename(moved)
    try:
        p = tok.run("sign", "--key", "k", "--digest", "55" * 32, check=False)
        assert p.returncode != 0, p.stdout
        # refused at c3 ("the open's commit did not sync") or, when the
        # first sign's end was synced after the rename and failed, at
        # the open: either way an I/O error before any c3
        log = srv.log_text()
        assert 'error="input/output error"' in log, log[-2000:]
        assert log.count("event=sign_done") == 1, log[-2000:]
        assert not tok.list()["k"][3]  # no c3 came: nothing to lock
    finally:
        moved.rename(data)
    srv.stop()
    srv.start()
    direct(tok, srv)  # a new port
    sign_and_verify(tok, "k", pem, b"after the restart")
