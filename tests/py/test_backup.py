"""Backup and recovery of the client share (issue 18), black-box against a
real halfkeyd on 127.0.0.1 (SQLite and PostgreSQL): `halfkey backup-key
new`, `halfkey backup` (POST /backup, verified by the server), losing the
token directory, `halfkey restore` on a new one (GET /backup, decrypt,
check, refresh at once), then signing through the CLI, PKCS#11 and the
OpenSSL provider with the same public key and key id; the "never stale"
rule (backup_pub in halfkey.conf, promotion waits for the backup), safe
deletion, and kill -9 of the client and of halfkeyd at the steps of a
backup, a restore and the restore's refresh."""
import base64
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time

import pkcs11
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils
from pkcs11 import Attribute, Mechanism, ObjectClass

from conftest import PIN
from mitm import Cut, Mitm, msg_type, point_token_at
from test_server import sign_and_verify

PASS = "correct horse battery"


def kv(out):
    return dict(ln.split(" = ", 1) for ln in out.splitlines() if " = " in ln)


def backup_key(tok, tmp_path, name="bk", kind="p256"):
    """A backup key pair made by the CLI: (private file, public file)."""
    pf = tmp_path / "pass.txt"
    pf.write_text(PASS + "\n")
    out = tok.run("backup-key", "new", "--out", tmp_path / name, "--type",
                  kind, "--passphrase-file", pf).stdout
    info = kv(out)
    assert "-----BEGIN PUBLIC KEY-----" in out
    priv = tmp_path / name
    assert priv.read_text().startswith("-----BEGIN ENCRYPTED PRIVATE KEY")
    assert oct(priv.stat().st_mode & 0o777) == "0o600"
    assert re.fullmatch(r"[0-9a-f]{64}", info["fingerprint"])
    return priv, pf, tmp_path / f"{name}.pub"


def pubkey_info(server, sub, kid):
    status, ans = server.request("GET", f"/pubkey?key_id={kid}",
                                 token=server.token(sub))
    assert status == 200, ans
    return ans


def verify_cli_sig(tok, label, pem, data):
    sign_and_verify(tok, label, pem, data)


def restore(tok, kid, priv, pf, label, check=True):
    return tok.run("restore", "--key-id", kid, "--backup-priv", priv,
                   "--label", label, "--passphrase-file", pf, check=check)


def new_token(make_token, server, sub, name):
    return make_token(server, sub, name=name)


# --- the whole story ---------------------------------------------------------


def p11_sign(build_dir, monkeypatch, tok_dir, label, data):
    """Signs data (ECDSA-SHA256) with the key `label` of the token
    directory through the PKCS#11 module: (CKA_ID, the public key's
    CKA_EC_POINT, DER signature)."""
    monkeypatch.setenv("HALFKEY_PKCS11_TOKENS", str(tok_dir))
    monkeypatch.delenv("HALFKEY_HOME", raising=False)
    lib = pkcs11.lib(str(build_dir / "pkcs11" / "libhalfkey-pkcs11.so"))
    lib.reinitialize()
    try:
        (slot,) = lib.get_slots(token_present=True)
        with slot.get_token().open(user_pin=PIN) as s:
            (k,) = list(s.get_objects({Attribute.CLASS:
                                       ObjectClass.PRIVATE_KEY,
                                       Attribute.LABEL: label}))
            (pub,) = list(s.get_objects({Attribute.CLASS:
                                         ObjectClass.PUBLIC_KEY,
                                         Attribute.LABEL: label}))
            kid, point = k[Attribute.ID], pub[Attribute.EC_POINT]
            assert pub[Attribute.ID] == kid
            sig = k.sign(data, mechanism=Mechanism.ECDSA_SHA256)
    finally:
        lib.finalize()
    r, s_ = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
    return kid, point, utils.encode_dss_signature(r, s_)


def provider_sign(build_dir, tok_dir, uri, data, tmp_path):
    """Signs SHA-256(data) with `openssl pkeyutl` through the halfkey
    provider, the key named by a URI: the DER signature."""
    env = dict(os.environ, HALFKEY_HOME=str(tok_dir), HALFKEY_PIN=PIN)
    for var in ("OPENSSL_CONF", "OPENSSL_MODULES", "XDG_DATA_HOME"):
        env.pop(var, None)
    dig, sigf = tmp_path / "dig", tmp_path / "sig"
    dig.write_bytes(hashlib.sha256(data).digest())
    subprocess.run(["openssl", "pkeyutl", "-provider-path",
                    str(build_dir / "ossl-provider"), "-provider", "halfkey",
                    "-provider", "default", "-sign", "-inkey", uri, "-in",
                    dig, "-out", sigf], check=True, env=env,
                   capture_output=True)
    return sigf.read_bytes()


def openssl_verifies(pem, data, sig, tmp_path):
    """`openssl pkeyutl -verify` with the default provider only."""
    env = dict(os.environ)
    for var in ("OPENSSL_CONF", "OPENSSL_MODULES"):
        env.pop(var, None)
    pubf, dig, sigf = (tmp_path / "v.pem", tmp_path / "v.dig",
                       tmp_path / "v.sig")
    pubf.write_bytes(pem)
    dig.write_bytes(hashlib.sha256(data).digest())
    sigf.write_bytes(sig)
    p = subprocess.run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey",
                        pubf, "-in", dig, "-sigfile", sigf],
                       capture_output=True, env=env)
    return b"Signature Verified Successfully" in p.stdout


def check_faces(build_dir, monkeypatch, tok_dir, label, kid, pem, tmp_path,
                what):
    """Signs with the key through PKCS#11 and through the provider by its
    pkcs11: URIs (label, and CKA_ID percent-encoded); every signature
    verified by cryptography and by openssl's default provider. The
    PKCS#11 view (CKA_ID, CKA_EC_POINT)."""
    key = serialization.load_pem_public_key(pem)
    data = b"pkcs11, " + what
    cka_id, point, sig = p11_sign(build_dir, monkeypatch, tok_dir, label,
                                  data)
    assert cka_id == bytes.fromhex(kid)
    key.verify(sig, data, ec.ECDSA(hashes.SHA256()))
    assert openssl_verifies(pem, data, sig, tmp_path)
    pct = "".join(f"%{b:02x}" for b in cka_id)
    for uri in (f"pkcs11:object={label};type=private",
                f"pkcs11:id={pct};type=private"):
        data = b"provider, " + uri.encode() + b", " + what
        sig = provider_sign(build_dir, tok_dir, uri, data, tmp_path)
        key.verify(sig, data, ec.ECDSA(hashes.SHA256()))
        assert openssl_verifies(pem, data, sig, tmp_path)
    return cka_id, point


def test_lose_the_token_and_restore(server, make_token, tmp_path, build_dir,
                                    monkeypatch):
    tok = make_token(server, "alice", name="old")
    kid = tok.keygen("p256", "wallet")
    pem = tok.pubkey_pem("wallet")
    # what applications see of the key before the loss
    before = check_faces(build_dir, monkeypatch, tok.dir, "wallet", kid, pem,
                         tmp_path, b"before the loss")
    priv, pf, pub = backup_key(tok, tmp_path)
    out = tok.run("backup", "--key", "wallet", "--backup-pub", pub).stdout
    assert kv(out) == {"backup": "wallet", "epoch": "1"}
    assert pubkey_info(server, "alice", kid)["backup_epoch"] == 1
    assert f"{kid}\t" in server.admin("keys", "list").stdout
    assert "backup=ok:1" in server.admin("keys", "list").stdout
    server.wait_audit(lambda r: r["event"] == "backup" and
                      r["outcome"] == "ok")

    shutil.rmtree(tok.dir)  # the device is lost
    fresh = make_token(server, "alice", name="new")
    out = restore(fresh, kid, priv, pf, "wallet").stdout
    assert kv(out)["key_id"] == kid and kv(out)["epoch"] == "2"
    assert fresh.pubkey_pem("wallet") == pem  # the same key
    # refreshed at once: the server's active share is the new epoch, and
    # its backup was stored before the promotion
    ans = pubkey_info(server, "alice", kid)
    assert ans["epoch"] == 2 and ans["backup_epoch"] == 2
    assert fresh.list()["wallet"][1:3] == (kid, 2)
    verify_cli_sig(fresh, "wallet", pem, b"after the restore")

    # the same key to every application: PKCS#11 (same CKA_ID and
    # CKA_EC_POINT) and the provider by the same pkcs11: URIs
    after = check_faces(build_dir, monkeypatch, fresh.dir, "wallet", kid,
                        pem, tmp_path, b"after the restore")
    assert after == before

    # a second restore of the same key into the token is refused
    p = restore(fresh, kid, priv, pf, "again", check=False)
    assert p.returncode != 0 and "exists" in p.stderr


def test_rsa_backup_key_and_secp256k1(server, make_token, tmp_path,
                                      db_backend):
    if db_backend != "sqlite":
        pytest.skip("the RSA path is the same on both back ends")
    tok = make_token(server, "bob", name="old")
    kid = tok.keygen("secp256k1", "k")
    pem = tok.pubkey_pem("k")
    priv, pf, pub = backup_key(tok, tmp_path, kind="rsa3072")
    tok.run("backup", "--key", "k", "--backup-pub", pub)  # ~137 KB body
    fresh = make_token(server, "bob", name="new")
    restore(fresh, kid, priv, pf, "k")
    assert fresh.pubkey_pem("k") == pem
    verify_cli_sig(fresh, "k", pem, b"rsa backup")


# --- the server checks every blob ------------------------------------------


def test_server_refuses_bad_blobs(server, make_token, tmp_path):
    tok = make_token(server, "alice")
    a = tok.keygen("p256", "a")
    b = tok.keygen("p256", "b")
    priv, pf, pub = backup_key(tok, tmp_path)
    tok.run("backup", "--key", "a", "--backup-pub", pub)
    jwt = server.token("alice")
    status, got = server.request("GET", f"/backup?key_id={a}", token=jwt)
    assert status == 200 and got["epoch"] == 1 and got["state"] == "active"
    blob = base64.b64decode(got["blob"])
    bkpem = pub.read_text()

    def post(kid, epoch, data, who="alice", pem=bkpem):
        return server.request(
            "POST", "/backup",
            {"key_id": kid, "epoch": epoch,
             "blob": base64.b64encode(data).decode(), "backup_pub": pem},
            token=server.token(who))

    assert post(a, 1, blob)[0] == 200  # the same again is fine
    cases = [
        (b, 1, blob, "another key"),                 # binding
        (a, 2, blob, "no share of that epoch"),      # epoch
        (a, 1, blob[:-1], "malformed"),              # truncated
        (a, 1, blob[:500] + bytes([blob[500] ^ 1]) + blob[501:], None),
        (a, 1, blob[:-40] + bytes(40), None),
    ]
    for kid, epoch, data, why in cases:
        status, ans = post(kid, epoch, data)
        assert status == 400 and ans["error"] == "backup_refused", ans
        if why:
            assert why in ans["message"], ans
    # another backup key than the blob's
    other = backup_key(tok, tmp_path, name="other")[2].read_text()
    status, ans = post(a, 1, blob, pem=other)
    assert status == 400 and "backup key" in ans["message"]
    status, ans = post(a, 1, blob, pem="not a key")
    assert status == 400 and "PEM" in ans["message"]
    # another subject: the key does not exist for it
    assert post(a, 1, blob, who="mallory")[0] == 404
    assert server.request("GET", f"/backup?key_id={a}",
                          token=server.token("mallory"))[0] == 404
    # nothing was stored for b; refusals are audited
    assert server.request("GET", f"/backup?key_id={b}", token=jwt)[0] == 404
    server.wait_audit(lambda r: r["event"] == "backup" and
                      r["outcome"] == "refused")
    status, ans = server.request("POST", "/backup", {"key_id": a}, token=jwt)
    assert status == 400 and ans["error"] == "bad_request"


# --- never stale ---------------------------------------------------------------


def test_backup_pub_in_config_keeps_the_backup_current(server, make_token,
                                                       tmp_path):
    tok = make_token(server, "alice")
    priv, pf, pub = backup_key(tok, tmp_path)
    with open(tok.conf_path(), "a") as f:
        f.write(f"backup_pub = {pub}\n")
    kid = tok.keygen("p256", "k")  # backed up after the keygen
    pem = tok.pubkey_pem("k")
    assert pubkey_info(server, "alice", kid)["backup_epoch"] == 1
    tok.run("refresh", "--key", "k")  # and after every refresh
    ans = pubkey_info(server, "alice", kid)
    assert ans["epoch"] == 2 and ans["backup_epoch"] == 2
    assert "ok" in tok.run("doctor").stdout

    # without backup_pub the next refresh cannot promote: the new share
    # is stored and signs, the old one stays active on the server
    lines = tok.conf_path().read_text().splitlines()
    tok.conf_path().write_text(
        "\n".join(ln for ln in lines if not ln.startswith("backup_pub"))
        + "\n")
    p = tok.run("refresh", "--key", "k", check=False)
    assert p.returncode != 0 and "backup" in p.stderr, p.stderr
    assert tok.list()["k"][2] == 3
    ans = pubkey_info(server, "alice", kid)
    assert ans["epoch"] == 2 and ans["backup_epoch"] == 2
    status, text = server.request("GET", "/metrics")
    if status == 200:
        assert 'halfkey_keys_backup{state="waiting"} 1' in text
    doc = tok.run("doctor", check=False).stdout
    assert "backup" in doc and "epoch 3" in doc, doc
    verify_cli_sig(tok, "k", pem, b"pending share signs")
    assert pubkey_info(server, "alice", kid)["epoch"] == 2  # still waits
    # a refresh from the waiting share is refused: it would replace it
    p = tok.run("refresh", "--key", "k", check=False)
    assert p.returncode != 0 and "backup" in p.stderr
    assert tok.list()["k"][2] == 3
    # the backup arrives: the next proof promotes
    tok.run("backup", "--key", "k", "--backup-pub", pub)
    verify_cli_sig(tok, "k", pem, b"promotes")
    ans = pubkey_info(server, "alice", kid)
    assert ans["epoch"] == 3 and ans["backup_epoch"] == 3
    assert "backup=ok:3" in server.admin("keys", "list").stdout
    # a token restored from an older copy of its directory: doctor says so
    old = tmp_path / "copy"
    shutil.copytree(tok.dir, old)
    with open(tok.conf_path(), "a") as f:
        f.write(f"backup_pub = {pub}\n")
    tok.run("refresh", "--key", "k")
    shutil.rmtree(tok.dir)
    shutil.copytree(old, tok.dir)
    doc = tok.run("doctor", check=False).stdout
    assert "older epoch" in doc, doc


# --- safe deletion -------------------------------------------------------------


def test_delete_asks_and_says_the_backup_goes(server, make_token, tmp_path):
    tok = make_token(server, "alice")
    kid = tok.keygen("p256", "k")
    priv, pf, pub = backup_key(tok, tmp_path)
    tok.run("backup", "--key", "k", "--backup-pub", pub)
    p = subprocess.run(tok.cmd("delete", "--key", "k"), input="nope\n",
                       capture_output=True, text=True, env=tok.env)
    assert p.returncode != 0 and "not confirmed" in p.stderr
    assert "k" in tok.list()
    p = subprocess.run(tok.cmd("delete", "--key", "k"), input="",
                       capture_output=True, text=True, env=tok.env)
    assert p.returncode != 0 and "k" in tok.list()
    p = subprocess.run(tok.cmd("delete", "--key", "k"), input="k\n",
                       capture_output=True, text=True, env=tok.env)
    assert p.returncode == 0, p.stderr
    assert "deleted = k" in p.stdout and "backup = deleted" in p.stdout
    assert server.request("GET", f"/pubkey?key_id={kid}",
                          token=server.token("alice"))[0] == 404


def test_operator_deletes_a_key_whose_client_is_gone(server, make_token,
                                                     tmp_path):
    tok = make_token(server, "alice")
    kid = tok.keygen("p256", "k")
    plain = tok.keygen("p256", "plain")
    priv, pf, pub = backup_key(tok, tmp_path)
    tok.run("backup", "--key", "k", "--backup-pub", pub)
    p = server.admin("keys", "delete", "--key", kid)
    assert f"{kid}\tdeleted" in p.stdout and "had a backup" in p.stderr
    p = server.admin("keys", "delete", "--key", plain)
    assert "backup" not in p.stderr
    assert server.admin("keys", "delete", "--key", kid,
                        check=False).returncode != 0
    server.wait_audit(lambda r: r["event"] == "delete" and
                      "had a backup" in r.get("detail", ""))
    # the restore has nothing to restore any more
    fresh = make_token(server, "alice", name="new")
    p = restore(fresh, kid, priv, pf, "k", check=False)
    assert p.returncode != 0


# --- the blob's verification leaves the service thread -----------------------


def captured_backup_body(server, tok, pub):
    """The body of a real `halfkey backup` (POST /backup), as sent."""
    chunks = []

    def grab(d, head, data):
        if d == "c2s" and head.startswith(b"POST /backup") and \
                data is not head:
            chunks.append(data)

    mitm = Mitm(server, http_hook=grab)
    point_token_at(tok, mitm.url)
    tok.run("backup", "--key", "k", "--backup-pub", pub)
    mitm.close()
    point_token_at(tok, server.url)
    body = b"".join(chunks)
    assert json.loads(body)["epoch"] == 1
    return body


def test_backups_run_beside_signs(server, make_token, tmp_path):
    """halfkeyd verifies backup blobs on its worker pool: backups posted
    without pause by 6 clients at once while another client signs all
    succeed, the signatures verify, and the service thread answers
    /status meanwhile in bounded time."""
    tok = make_token(server, "alice", name="a")
    tok.keygen("p256", "k")
    priv, pf, pub = backup_key(tok, tmp_path)
    body = captured_backup_body(server, tok, pub)
    other = make_token(server, "bob", name="b")
    other.keygen("p256", "s")
    pem = other.pubkey_pem("s")
    token = server.token("alice")
    done = threading.Event()
    posted, probes = [], []

    def post():
        while True:
            posted.append(server.request("POST", "/backup", body,
                                         token=token)[0])
            if done.is_set():
                return

    def probe():
        while not done.is_set():
            t0 = time.monotonic()
            status = server.request("GET", "/status")[0]
            probes.append((status, time.monotonic() - t0))

    threads = [threading.Thread(target=post) for _ in range(6)]
    threads.append(threading.Thread(target=probe))
    for t in threads:
        t.start()
    try:
        for i in range(3):
            verify_cli_sig(other, "s", pem, f"beside backups {i}".encode())
    finally:
        done.set()
        for t in threads:
            t.join(60)
    assert len(posted) >= 6 and set(posted) == {200}, posted
    assert probes and {st for st, _ in probes} == {200}
    worst = max(dt for _, dt in probes)
    print(f"{len(posted)} backups verified beside 3 signatures; "
          f"{len(probes)} /status, slowest {worst * 1000:.0f} ms")
    assert worst < 2.0


def test_backup_answer_to_a_gone_client_is_dropped(server, make_token,
                                                   tmp_path):
    """A client that hangs up while its blob is verified: the deferred
    answer is dropped, halfkeyd carries on (the fixture checks it is
    alive and stops cleanly) and still stores the backup."""
    tok = make_token(server, "alice")
    kid = tok.keygen("p256", "k")
    priv, pf, pub = backup_key(tok, tmp_path)
    body = captured_backup_body(server, tok, pub)
    head = (f"POST /backup HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {server.token('alice')}\r\n"
            f"Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    ctx = server.ssl_context()
    ctx.check_hostname = False  # the CA is the server's own certificate
    socks = [ctx.wrap_socket(socket.create_connection(("127.0.0.1",
                                                       server.port)))
             for _ in range(8)]
    for s in socks:
        s.sendall(head + body)
    # all 8 hang up at once while their blobs wait for or run on the 2
    # workers; what the server sent so far (session tickets) is read
    # first, else the close would be a reset that discards the request
    for s in socks:
        s.setblocking(False)
        try:
            s.recv(65536)
        except ssl.SSLWantReadError:
            pass
        s.close()
    deadline = time.monotonic() + 20
    while len([r for r in server.audit() if r["event"] == "backup" and
               r["outcome"] == "ok"]) < 1 + 8:  # the captured one and 8
        assert time.monotonic() < deadline, "the blobs were not all verified"
        time.sleep(0.1)
    assert server.request("GET", "/status")[0] == 200
    assert pubkey_info(server, "alice", kid)["backup_epoch"] == 1


# --- crash safety: kill -9 of the client at each step -------------------------


class Hold:
    """Holds the first message of type `mtype` in `direction` (after
    letting `skip` of them pass) until the test has killed a party, then
    cuts the connection."""

    def __init__(self, direction, mtype, skip=0):
        self.direction, self.mtype, self.skip = direction, mtype, skip
        self.reached = threading.Event()
        self.release = threading.Event()

    def __call__(self, d, message):
        if d == self.direction and msg_type(message) == self.mtype:
            if self.skip > 0:
                self.skip -= 1
                return [message]
            self.reached.set()
            self.release.wait(60)
            raise Cut()
        return [message]


def kill_held(server, tok, step, *args):
    """Runs `halfkey ARGS` through a man in the middle holding `step`,
    kills it with SIGKILL once held, then points tok back at the server."""
    hold = Hold(*step)
    mitm = Mitm(server, hold)
    point_token_at(tok, mitm.url)
    proc = tok.popen(*args)
    assert hold.reached.wait(60), proc.communicate(timeout=5)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    hold.release.set()
    mitm.close()
    point_token_at(tok, server.url)


@pytest.mark.parametrize("step", [("c2s", "refresh.1"), ("s2c", "refresh.2"),
                                  ("s2c", "refresh.4"), ("c2s", "refresh.5")])
def test_restore_killed_at_each_step_leaves_a_key(server, make_token,
                                                  tmp_path, step):
    tok = make_token(server, "alice", name="old")
    kid = tok.keygen("p256", "k")
    pem = tok.pubkey_pem("k")
    priv, pf, pub = backup_key(tok, tmp_path)
    tok.run("backup", "--key", "k", "--backup-pub", pub)
    shutil.rmtree(tok.dir)
    fresh = make_token(server, "alice", name="new")
    kill_held(server, fresh, step, "restore", "--key-id", kid,
              "--backup-priv", priv, "--label", "k", "--passphrase-file", pf)
    if "k" not in fresh.list():
        # killed before the new share was stored: the server still has a
        # share the backup restores; a second restore finishes the job
        restore(fresh, kid, priv, pf, "k")
    verify_cli_sig(fresh, "k", pem, b"after a killed restore")
    verify_cli_sig(fresh, "k", pem, b"and again")
    # the share is current on the server and backed up
    ans = pubkey_info(server, "alice", kid)
    assert ans["epoch"] == fresh.list()["k"][2]
    assert ans["backup_epoch"] == ans["epoch"]


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.3])
def test_backup_killed_leaves_a_key_that_signs(server, make_token, tmp_path,
                                               delay):
    tok = make_token(server, "alice")
    tok.keygen("p256", "k")
    pem = tok.pubkey_pem("k")
    priv, pf, pub = backup_key(tok, tmp_path)
    proc = tok.popen("backup", "--key", "k", "--backup-pub", pub)
    if delay:
        threading.Event().wait(delay)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    verify_cli_sig(tok, "k", pem, b"after a killed backup")
    tok.run("backup", "--key", "k", "--backup-pub", pub)
    verify_cli_sig(tok, "k", pem, b"after the backup")


# --- crash safety: kill -9 of halfkeyd at each step --------------------------


class HttpHold:
    """Holds the first HTTP traffic in `direction` of a request whose head
    starts with `start` until the test has killed halfkeyd, then cuts the
    connection. "c2s": the request never reaches the server; "s2c": the
    server has answered (and stored what it stores), the client never
    hears it."""

    def __init__(self, direction, start):
        self.direction, self.start = direction, start
        self.reached = threading.Event()
        self.release = threading.Event()

    def __call__(self, d, head, data):
        if d == self.direction and head.startswith(self.start) and \
                not self.reached.is_set():
            self.reached.set()
            self.release.wait(60)
            raise Cut()


def kill_server_at(server, tok, hold, mitm, proc):
    """Once the client reached the hold: kill -9 of halfkeyd, the client's
    connection cut, the client's exit awaited, halfkeyd started again on
    the same storage (a new port: the token follows it)."""
    assert hold.reached.wait(60), proc.communicate(timeout=5)
    server.kill()
    hold.release.set()
    proc.communicate(timeout=60)
    mitm.close()
    server.start()
    point_token_at(tok, server.url)


def converge(server, tok, sub, kid, pem, pub):
    """After a crash the user's next steps bring server, token and backup
    back to one epoch: a backup if the server reports it missing for the
    token's share, then a signature (which proves the share)."""
    if pubkey_info(server, sub, kid)["backup_epoch"] != tok.list()["k"][2]:
        tok.run("backup", "--key", "k", "--backup-pub", pub)
    verify_cli_sig(tok, "k", pem, b"after the backup")
    ans = pubkey_info(server, sub, kid)
    assert ans["epoch"] == tok.list()["k"][2] == ans["backup_epoch"], ans


@pytest.mark.parametrize("direction", ["c2s", "s2c"])
def test_backup_with_the_server_killed_leaves_a_key_that_signs(
        server, make_token, tmp_path, direction):
    tok = make_token(server, "alice")
    kid = tok.keygen("p256", "k")
    pem = tok.pubkey_pem("k")
    priv, pf, pub = backup_key(tok, tmp_path)
    hold = HttpHold(direction, b"POST /backup")
    mitm = Mitm(server, http_hook=hold)
    point_token_at(tok, mitm.url)
    proc = tok.popen("backup", "--key", "k", "--backup-pub", pub)
    kill_server_at(server, tok, hold, mitm, proc)
    assert proc.returncode != 0
    verify_cli_sig(tok, "k", pem, b"after halfkeyd died in a backup")
    # stored before the answer, durably: the answer lost, the backup kept
    stored = pubkey_info(server, "alice", kid)["backup_epoch"]
    assert stored == (1 if direction == "s2c" else 0)
    tok.run("backup", "--key", "k", "--backup-pub", pub)
    assert pubkey_info(server, "alice", kid)["backup_epoch"] == 1
    verify_cli_sig(tok, "k", pem, b"after the backup")


@pytest.mark.parametrize("step", [
    ("http", "c2s", b"GET /backup"), ("http", "s2c", b"GET /backup"),
    ("ws", "c2s", "refresh.1"), ("ws", "s2c", "refresh.2"),
    ("ws", "s2c", "refresh.4"), ("http", "c2s", b"POST /backup"),
    ("http", "s2c", b"POST /backup"), ("ws", "c2s", "refresh.5")],
    ids=lambda s: f"{s[1]}-{s[2].decode() if isinstance(s[2], bytes) else s[2]}"
    .replace(" ", "_").replace("/", ""))
def test_restore_with_the_server_killed_leaves_a_key(server, make_token,
                                                     tmp_path, step):
    """kill -9 of halfkeyd at each step of a restore and its refresh (the
    restore's backup of the new share included): the key signs with the
    old share (restored again) or the new one, never neither."""
    tok = make_token(server, "alice", name="old")
    kid = tok.keygen("p256", "k")
    pem = tok.pubkey_pem("k")
    priv, pf, pub = backup_key(tok, tmp_path)
    tok.run("backup", "--key", "k", "--backup-pub", pub)
    shutil.rmtree(tok.dir)
    fresh = make_token(server, "alice", name="new")
    kind, direction, what = step
    hold = (HttpHold(direction, what) if kind == "http"
            else Hold(direction, what))
    mitm = (Mitm(server, http_hook=hold) if kind == "http"
            else Mitm(server, hold))
    point_token_at(fresh, mitm.url)
    proc = fresh.popen("restore", "--key-id", kid, "--backup-priv", priv,
                       "--label", "k", "--passphrase-file", pf)
    kill_server_at(server, fresh, hold, mitm, proc)
    if "k" not in fresh.list():
        # the new share was not stored: the server still has the share
        # the backup restores
        restore(fresh, kid, priv, pf, "k")
    verify_cli_sig(fresh, "k", pem, b"after halfkeyd died in a restore")
    converge(server, fresh, "alice", kid, pem, pub)


def test_refresh_killed_after_storing_with_backup_pub(server, make_token,
                                                      tmp_path):
    """kill -9 between the new share's store (and backup) and refresh.5:
    the key signs with the new share, which the server then promotes."""
    tok = make_token(server, "alice")
    priv, pf, pub = backup_key(tok, tmp_path)
    with open(tok.conf_path(), "a") as f:
        f.write(f"backup_pub = {pub}\n")
    kid = tok.keygen("p256", "k")
    pem = tok.pubkey_pem("k")
    hold = Hold("c2s", "refresh.5")
    mitm = Mitm(server, hold)
    point_token_at(tok, mitm.url)
    proc = tok.popen("refresh", "--key", "k")
    assert hold.reached.wait(60)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    hold.release.set()
    mitm.close()
    point_token_at(tok, server.url)
    assert tok.list()["k"][2] == 2
    verify_cli_sig(tok, "k", pem, b"new share")
    ans = pubkey_info(server, "alice", kid)
    assert ans["epoch"] == 2 and ans["backup_epoch"] == 2
