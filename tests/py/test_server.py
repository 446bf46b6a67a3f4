"""Black-box tests of halfkeyd and the halfkey CLI over TLS 1.3 WebSocket on
127.0.0.1 (fixtures in conftest.py). Every signature is verified with the
Python `cryptography` package against the public key `halfkey pubkey`
prints; hostile inputs (JWTs, WebSocket frames, TLS settings, killed
clients) are built here directly, not through the C client."""
import base64
import concurrent.futures
import hashlib
import hmac
import json
import os
import re
import signal
import socket
import ssl
import time

import pytest
import websocket
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils

CURVES = {"secp256k1": ec.SECP256K1, "p256": ec.SECP256R1}
ORDER = {
    "secp256k1":
    0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141,
    "p256": 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
}
HASHES = {"sha256": hashes.SHA256, "sha384": hashes.SHA384,
          "sha512": hashes.SHA512}


# --- helpers ---------------------------------------------------------------


def load_pub(pem, curve=None):
    key = serialization.load_pem_public_key(pem)
    assert isinstance(key, ec.EllipticCurvePublicKey)
    if curve is not None:
        assert isinstance(key.curve, CURVES[curve]), key.curve.name
    return key


def curve_of(key):
    return "secp256k1" if isinstance(key.curve, ec.SECP256K1) else "p256"


def check_low_s(key, s):
    assert 0 < s <= ORDER[curve_of(key)] // 2, "signature is not low-S"


def verify_raw(pem, sig_hex, digest):
    """r || s (64 bytes, hex) over a digest (pre-hashed)."""
    key = load_pub(pem)
    sig = bytes.fromhex(sig_hex)
    assert len(sig) == 64
    r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
    check_low_s(key, s)
    algo = {32: hashes.SHA256, 48: hashes.SHA384, 64: hashes.SHA512}[
        len(digest)]
    key.verify(utils.encode_dss_signature(r, s), digest,
               ec.ECDSA(utils.Prehashed(algo())))  # raises if invalid


def verify_der(pem, der, data, hash_name="sha256"):
    key = load_pub(pem)
    _, s = utils.decode_dss_signature(der)
    check_low_s(key, s)
    key.verify(der, data, ec.ECDSA(HASHES[hash_name]()))


def cli_sign_digest(tok, label, digest):
    """Signs through the CLI (raw format) and returns the signature hex."""
    out = tok.run("sign", "--key", label, "--digest", digest.hex(),
                  "--format", "raw").stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{128}", out), out
    return out


def sign_and_verify(tok, label, pem, tag=b""):
    digest = hashlib.sha256(b"halfkey test " + tag + os.urandom(8)).digest()
    sig = cli_sign_digest(tok, label, digest)
    verify_raw(pem, sig, digest)
    return digest, sig


def error_lines(stderr):
    """stderr without the CLI's progress notes (lines ending in "...")."""
    return [ln for ln in stderr.splitlines() if not ln.endswith("...")]


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def jwt_claims(sub="alice", **over):
    now = int(time.time())
    claims = {"iss": "halfkeyd", "aud": "halfkey", "sub": sub, "iat": now,
              "nbf": now, "exp": now + 600}
    for k, v in over.items():
        if v is None:
            claims.pop(k, None)
        else:
            claims[k] = v
    return claims


def es256_sig(key, signing_input, high_s=False):
    """r || s in the low-S form halfkeyd requires (or its high-S twin)."""
    r, s = utils.decode_dss_signature(
        key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
    n = ORDER["p256"]
    if (s > n // 2) != high_s:
        s = n - s
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def mint(key, claims, header=None, alg="ES256"):
    """A compact JWT built here: header and payload JSON, then the
    signature (ES256 raw r||s, HS256 with `key` as secret, or none)."""
    head = header or {"alg": alg, "typ": "JWT"}
    signing_input = (b64u(json.dumps(head).encode()) + "."
                     + b64u(json.dumps(claims).encode())).encode()
    if alg == "ES256":
        sig = es256_sig(key, signing_input)
    elif alg == "HS256":
        sig = hmac.new(key, signing_input, hashlib.sha256).digest()
    else:
        sig = b""
    return signing_input.decode() + "." + b64u(sig)


def issuer_key(server):
    return serialization.load_pem_private_key(
        (server.dir / "jwt-issuer.key.pem").read_bytes(), None)


def open_session(server, token, path, body):
    status, ans = server.request("POST", path, body, token=token)
    assert status == 200, (path, status, ans)
    assert re.fullmatch(r"sess_[0-9a-f]{32}", ans["session_id"]), ans
    assert re.fullmatch(r"[0-9a-f]{32}", ans["key_id"]), ans
    assert isinstance(ans["idle_timeout"], int)
    return ans


def ws_connect(server, session_id, token):
    return websocket.create_connection(
        server.ws_url(session_id), header=[f"Authorization: Bearer {token}"],
        sslopt={"ca_certs": str(server.cert)}, timeout=15)


def ws_refused(server, session_id, token):
    """The HTTP status with which the server refuses the upgrade."""
    with pytest.raises(websocket.WebSocketBadStatusException) as exc:
        ws = ws_connect(server, session_id, token)
        ws.close()
    return exc.value.status_code


def ws_drain(ws, timeout=15):
    """Reads until the server closes: (text messages, close code or None
    when the connection just dropped). Fails if the server neither closes
    nor drops the connection within `timeout`."""
    ws.settimeout(timeout)
    msgs, code = [], None
    while True:
        try:
            op, frame = ws.recv_data_frame(True)
        except websocket.WebSocketTimeoutException:
            pytest.fail(f"the server kept the connection open; got {msgs}")
        except (websocket.WebSocketConnectionClosedException, OSError):
            break
        if op == websocket.ABNF.OPCODE_CLOSE:
            if len(frame.data) >= 2:
                code = int.from_bytes(frame.data[:2], "big")
            break
        if op == websocket.ABNF.OPCODE_TEXT:
            msgs.append(frame.data.decode())
    ws.close()
    return msgs, code


def assert_ws_error(msgs):
    assert len(msgs) == 1, msgs
    err = json.loads(msgs[0])
    assert err["v"] == 1 and err["t"] == "error", err
    assert isinstance(err["code"], int) and err["code"] > 0, err
    assert isinstance(err["message"], str) and err["message"], err
    return err


def wait_log(server, pattern, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(pattern, server.log_text())
        if m:
            return m
        time.sleep(0.05)
    pytest.fail(f"no {pattern!r} in the server log:\n"
                + server.log_text()[-3000:])


def server_pubkey(server, token, key_id):
    status, ans = server.request("GET", f"/pubkey?key_id={key_id}",
                                 token=token)
    assert status == 200, ans
    return ans


def uncompressed(pem):
    return load_pub(pem).public_bytes(
        serialization.Encoding.X962,
        serialization.PublicFormat.UncompressedPoint).hex()


# --- 1. keygen, sign, refresh, sign on both curves -------------------------


@pytest.mark.parametrize("curve", sorted(CURVES))
def test_keygen_sign_refresh_sign(server, make_token, tmp_path, curve):
    tok = make_token(server, "alice")
    token = server.token("alice")
    kid = tok.keygen(curve, "k")
    pem = tok.pubkey_pem("k")
    load_pub(pem, curve)
    # the server holds the same public key for this subject
    ans = server_pubkey(server, token, kid)
    assert ans == {"key_id": kid, "curve": curve, "pubkey": uncompressed(pem),
                   "disabled": False, "epoch": 1, "backup_epoch": 0,
                   "attested": False}
    assert tok.list() == {"k": (curve, kid, 1, False)}

    def sign_all(tag):
        data = os.urandom(1000) + tag
        f = tmp_path / f"msg-{curve}-{tag.decode()}.bin"
        f.write_bytes(data)
        # --in FILE, DER on stdout (hex)
        der = tok.run("sign", "--key", "k", "--in", f).stdout.strip()
        verify_der(pem, bytes.fromhex(der), data)
        # --in FILE --hash sha384 --out FILE
        out = tmp_path / f"sig-{curve}-{tag.decode()}.der"
        assert tok.run("sign", "--key", "k", "--in", f, "--hash", "sha384",
                       "--format", "der", "--out", out).stdout == ""
        verify_der(pem, out.read_bytes(), data, "sha384")
        # --digest HEX, raw r||s
        digest = hashlib.sha256(data).digest()
        sig = cli_sign_digest(tok, "k", digest)
        verify_raw(pem, sig, digest)
        # the server's audit log records this signature (sign.5)
        wait_log(server, rf"event=sign_done sub=alice key={kid} "
                 rf"epoch=\d+ digest={digest.hex()} sig={sig}")
        # a short digest is signed as given (ECDSA truncation rules)
        short = os.urandom(20)
        sig = bytes.fromhex(cli_sign_digest(tok, "k", short))
        r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
        load_pub(pem).verify(utils.encode_dss_signature(r, s), short,
                             ec.ECDSA(utils.Prehashed(hashes.SHA1())))

    sign_all(b"before")
    assert tok.run("refresh", "--key", "k").stdout == "refreshed = k\n"
    assert tok.list() == {"k": (curve, kid, 2, False)}
    assert tok.pubkey_pem("k") == pem
    assert server_pubkey(server, token, kid)["pubkey"] == uncompressed(pem)
    wait_log(server, r"event=refresh_done sub=alice epoch=2")
    sign_all(b"after")
    wait_log(server, rf"event=sign_done sub=alice key={kid} epoch=2 ")


# --- 2. hostile JWTs -------------------------------------------------------


def _bad_tokens(server):
    iss_key = issuer_key(server)
    other = ec.generate_private_key(ec.SECP256R1())
    good = mint(iss_key, jwt_claims())
    head, payload, sig = good.split(".")
    now = int(time.time())
    altered = b64u(json.dumps(jwt_claims(exp=now + 86400 * 365)).encode())
    as_bob = b64u(json.dumps(jwt_claims(sub="bob")).encode())
    pub_pem = (server.dir / "jwt-issuer.pub.pem").read_bytes()
    return {
        "expired": mint(iss_key, jwt_claims(exp=now - 120, nbf=now - 3600,
                                            iat=now - 3600)),
        "not yet valid": mint(iss_key, jwt_claims(nbf=now + 120)),
        "payload altered": f"{head}.{altered}.{sig}",
        "subject altered": f"{head}.{as_bob}.{sig}",
        "signature of another key": mint(other, jwt_claims()),
        "signature truncated": good[:-4],
        "wrong issuer": mint(iss_key, jwt_claims(iss="mallory")),
        "no issuer": mint(iss_key, jwt_claims(iss=None)),
        "wrong audience": mint(iss_key, jwt_claims(aud="someone-else")),
        "audience list without ours": mint(
            iss_key, jwt_claims(aud=["a", "halfkey-x"])),
        "no audience": mint(iss_key, jwt_claims(aud=None)),
        "alg none": mint(None, jwt_claims(), alg="none"),
        "alg none with a signature": ".".join(
            [b64u(b'{"alg":"none"}'), payload, sig]),
        "HS256 keyed with the public key": mint(pub_pem, jwt_claims(),
                                                alg="HS256"),
        "ES384 header on an ES256 signature": mint(
            iss_key, jwt_claims(), header={"alg": "ES384", "typ": "JWT"}),
        "missing exp": mint(iss_key, jwt_claims(exp=None)),
        "exp as a string": mint(iss_key, jwt_claims(exp=str(now + 600))),
        "missing sub": mint(iss_key, jwt_claims(sub=None)),
        "sub with a slash": mint(iss_key, jwt_claims(sub="a/b")),
        "empty sub": mint(iss_key, jwt_claims(sub="")),
        "sub not a string": mint(iss_key, jwt_claims(sub=42)),
        "sub too long": mint(iss_key, jwt_claims(sub="a" * 129)),
        "not a JWT": "not-a-jwt",
        "JSON serialisation": json.dumps({"payload": payload,
                                          "signature": sig}),
    }


def test_hostile_jwts_are_refused(server, make_token):
    tok = make_token(server, "alice")
    kid = tok.keygen("p256", "k")
    pem = tok.pubkey_pem("k")
    iss_key = issuer_key(server)
    now = int(time.time())
    body = {"key_id": kid}

    # Controls: tokens built here the same way are accepted, including
    # times inside the 30 s skew and an audience list holding ours.
    for name, t in {
        "minted here": mint(iss_key, jwt_claims()),
        "expired within the skew": mint(iss_key, jwt_claims(exp=now - 5)),
        "nbf within the skew": mint(iss_key, jwt_claims(nbf=now + 5)),
        "audience list": mint(iss_key, jwt_claims(aud=["x", "halfkey"])),
        "no nbf": mint(iss_key, jwt_claims(nbf=None)),
    }.items():
        status, ans = server.request("POST", "/sign", body, token=t)
        assert status == 200, (name, ans)

    for name, bad in _bad_tokens(server).items():
        for path, req in (("/sign", body), ("/refresh", body),
                          ("/keygen", {"curve": "p256"})):
            status, ans = server.request("POST", path, req, token=bad)
            assert status == 401, (name, path, status, ans)
            assert ans["error"] == "unauthorized", (name, ans)
        status, ans = server.request("GET", f"/pubkey?key_id={kid}",
                                     token=bad)
        assert status == 401, (name, "/pubkey", status, ans)
    for hdr in ({}, {"Authorization": "Basic YWxpY2U6eA=="},
                {"Authorization": "Bearer"},
                {"Authorization": "bearer " + mint(iss_key, jwt_claims())}):
        status, ans = server.request("POST", "/sign", body, headers=hdr)
        assert status == 401, (hdr, ans)

    # The WebSocket upgrade checks the token too, and a refused attempt
    # does not use up the session.
    sess = open_session(server, server.token("alice"), "/sign", body)
    bads = _bad_tokens(server)
    for name in ("expired", "alg none", "HS256 keyed with the public key",
                 "signature of another key", "wrong audience"):
        assert ws_refused(server, sess["session_id"], bads[name]) == 401, name
    ws = ws_connect(server, sess["session_id"], server.token("alice"))
    ws.close()

    # The CLI with a bad token in its token file: an authentication error.
    good_file = tok.token_file.read_text()
    for name in ("expired", "not yet valid", "payload altered",
                 "signature of another key", "wrong issuer",
                 "wrong audience", "alg none",
                 "HS256 keyed with the public key", "missing exp",
                 "sub with a slash"):
        tok.token_file.write_text(bads[name] + "\n")
        p = tok.run("sign", "--key", "k", "--digest", "11" * 32,
                    check=False)
        assert p.returncode == 1, (name, p.stdout, p.stderr)
        assert p.stdout == ""
        assert "authentication refused" in p.stderr, (name, p.stderr)
        assert "HTTP 401" in p.stderr, (name, p.stderr)
        assert len(error_lines(p.stderr)) == 1, p.stderr
    p = tok.run("refresh", "--key", "k", check=False)
    assert p.returncode == 1 and "authentication refused" in p.stderr
    tok.token_file.write_text(good_file)
    sign_and_verify(tok, "k", pem)
    assert tok.list()["k"][2] == 1


# --- 3. another subject's key ----------------------------------------------


def test_other_subjects_key_is_not_found(server, make_token):
    alice = make_token(server, "alice")
    kid = alice.keygen("secp256k1", "k")
    pem = alice.pubkey_pem("k")
    ta, tb = server.token("alice"), server.token("bob")
    missing = "00" * 16

    answers = []
    for key_id in (kid, missing):
        for path in ("/sign", "/refresh"):
            status, ans = server.request("POST", path, {"key_id": key_id},
                                         token=tb)
            assert status == 404, (path, key_id, ans)
            answers.append(ans)
        status, ans = server.request("GET", f"/pubkey?key_id={kid}",
                                     token=tb)
        assert status == 404, ans
        answers.append(ans)
    # no oracle: another subject's key looks exactly like a missing one
    assert answers[:3] == answers[3:]
    for ans in answers:
        assert ans["error"] == "not_found"
    # malformed key ids: 404 or 400, never anything else
    for bad in ("", "zz" * 16, kid[:-2], kid + "00", kid.upper()):
        status, _ = server.request("POST", "/sign", {"key_id": bad},
                                   token=ta)
        assert status in (400, 404), bad
    status, _ = server.request("POST", "/sign", {"key_id": kid, "x": 1},
                               token=ta)
    assert status == 400
    status, _ = server.request("POST", "/sign", b"{not json", token=ta)
    assert status == 400

    # alice's own key: found
    assert server_pubkey(server, ta, kid)["pubkey"] == uncompressed(pem)
    # bob cannot take over alice's session either
    sess = open_session(server, ta, "/sign", {"key_id": kid})
    assert ws_refused(server, sess["session_id"], tb) == 404
    # and bob's own CLI token cannot reach it: his keys are his own
    bob = make_token(server, "bob")
    bob_kid = bob.keygen("secp256k1", "k")
    assert bob_kid != kid
    status, _ = server.request("GET", f"/pubkey?key_id={bob_kid}", token=ta)
    assert status == 404
    sign_and_verify(alice, "k", pem)
    sign_and_verify(bob, "k", bob.pubkey_pem("k"))
    assert alice.list()["k"][2] == 1


# --- 4. session idle expiry ------------------------------------------------


def test_session_idle_expiry(make_server, make_token):
    server = make_server(session_idle=2)
    tok = make_token(server, "alice")
    kid = tok.keygen("p256", "k")
    pem = tok.pubkey_pem("k")
    token = server.token("alice")

    sess = open_session(server, token, "/sign", {"key_id": kid})
    assert sess["idle_timeout"] == 2
    time.sleep(3)
    assert ws_refused(server, sess["session_id"], token) == 404

    # An open but silent WebSocket is closed by the server when idle.
    sess = open_session(server, token, "/sign", {"key_id": kid})
    ws = ws_connect(server, sess["session_id"], token)
    t0 = time.monotonic()
    msgs, _ = ws_drain(ws, timeout=10)
    assert msgs == [] and time.monotonic() - t0 >= 1.0
    wait_log(server, r"event=session_idle_close")

    # a new session works at once
    sess = open_session(server, token, "/sign", {"key_id": kid})
    ws_connect(server, sess["session_id"], token).close()
    sign_and_verify(tok, "k", pem)
    tok.run("refresh", "--key", "k")
    sign_and_verify(tok, "k", pem)


# --- 5. restart ------------------------------------------------------------


def test_paillier_3072_key_signs(server, make_token):
    """A key on a Paillier-3072 modulus (paillier_bits = 3072) signs on
    both curves and after a refresh: from a key's first sign on, halfkeyd
    makes the fixed-base table of its ckey (64 entries of |N^2| = 768
    bytes) and later signs' c3 use it (mpc/paillier_fb.c); every
    signature verifies."""
    tok = make_token(server, "alice")
    conf = tok.conf_path()
    conf.write_text(re.sub(r"(?m)^paillier_bits = .*$", "paillier_bits = 3072",
                           conf.read_text()))
    assert "paillier_bits = 3072" in conf.read_text()
    for curve in ("secp256k1", "p256"):
        label = "k-" + curve
        tok.keygen(curve, label)
        pem = tok.pubkey_pem(label)
        for i in range(3):
            sign_and_verify(tok, label, pem, b"3072 %d" % i)
        tok.run("refresh", "--key", label)
        for i in range(2):
            sign_and_verify(tok, label, pem, b"3072 refreshed %d" % i)


def test_restart_keeps_keys(server, make_token):
    tok = make_token(server, "alice")
    kids = {"a": tok.keygen("secp256k1", "a"), "b": tok.keygen("p256", "b")}
    pems = {k: tok.pubkey_pem(k) for k in kids}
    tok.run("refresh", "--key", "b")
    sess = open_session(server, server.token("alice"), "/sign",
                        {"key_id": kids["a"]})
    port = server.port

    assert server.stop() == 0
    assert "event=stopped" in server.log_text()
    server.set_conf(port=port)  # the token's URL names this port
    server.start()
    assert server.port == port

    for label in kids:
        sign_and_verify(tok, label, pems[label], b"after restart")
    assert {k: v[2] for k, v in tok.list().items()} == {"a": 1, "b": 2}
    tok.run("refresh", "--key", "a")
    sign_and_verify(tok, "a", pems["a"])
    # the session opened before the restart is still within its idle time
    # and claimable once (it lives in the database), or refused; never
    # anything else
    try:
        ws_connect(server, sess["session_id"], server.token("alice")).close()
    except websocket.WebSocketBadStatusException as exc:
        assert exc.status_code == 404


# --- 6. bad WebSocket input ------------------------------------------------


def test_bad_websocket_input_changes_nothing(server, make_token):
    tok = make_token(server, "alice")
    kid = tok.keygen("secp256k1", "k")
    pem = tok.pubkey_pem("k")
    tok.run("refresh", "--key", "k")
    epoch = tok.list()["k"][2]
    assert epoch == 2
    token = server.token("alice")

    def session(op="/sign"):
        sess = open_session(server, token, op, {"key_id": kid})
        return sess["session_id"], ws_connect(server, sess["session_id"],
                                              token)

    def wellformed(sid, t, **fields):
        return json.dumps({"v": 1, "t": t, "sid": sid[5:], "kid": kid,
                           **fields})

    def error_and_close(ws, payload):
        ws.send(payload)
        return assert_ws_error(ws_drain(ws)[0])

    for op in ("/sign", "/refresh"):
        sid, ws = session(op)
        error_and_close(ws, "not json")
        # the session is single-use: a failed one cannot be reopened
        assert ws_refused(server, sid, token) in (404, 409)
        sid, ws = session(op)
        error_and_close(ws, wellformed(sid, "keygen.1", epoch=epoch,
                                       fp="00" * 32))
        sid, ws = session(op)
        first = "sign.1" if op == "/sign" else "refresh.1"
        error_and_close(ws, wellformed(sid, first, epoch=epoch, fp="00" * 32))
        sid, ws = session(op)
        error_and_close(ws, wellformed(sid, first, epoch=epoch + 7,
                                       fp="00" * 32))
        sid, ws = session(op)
        error_and_close(ws, json.dumps([1, 2, 3]))
        sid, ws = session(op)
        error_and_close(ws, "{}")

    # an oversize text frame (300 KiB): the server closes (1009)
    sid, ws = session()
    try:
        ws.send("x" * (300 * 1024))
    except OSError:
        pass  # the server may close while we are still sending
    msgs, code = ws_drain(ws)
    assert msgs == [] and code in (None, 1009), (msgs, code)
    # a binary frame: the server closes (1003)
    sid, ws = session()
    ws.send_binary(b"\x00\x01binary" * 10)
    msgs, code = ws_drain(ws)
    assert msgs == [] and code in (None, 1003), (msgs, code)
    # a fragmented oversize message (many small frames): closed too
    sid, ws = session()
    try:
        ws.send_frame(websocket.ABNF.create_frame("y" * 65536,
                                                  websocket.ABNF.OPCODE_TEXT,
                                                  fin=0))
        for _ in range(4):
            ws.send_frame(websocket.ABNF.create_frame(
                "y" * 65536, websocket.ABNF.OPCODE_CONT, fin=0))
    except OSError:
        pass
    msgs, code = ws_drain(ws)
    assert msgs == [], msgs

    assert server.alive()
    assert tok.list()["k"] == ("secp256k1", kid, epoch, False)
    assert server_pubkey(server, token, kid)["pubkey"] == uncompressed(pem)
    sign_and_verify(tok, "k", pem)
    tok.run("refresh", "--key", "k")
    assert tok.list()["k"][2] == epoch + 1
    sign_and_verify(tok, "k", pem)

    # a keygen session fed garbage leaves no key on the server
    for payload in ("not json",
                    lambda s, k: json.dumps({"v": 1, "t": "keygen.3",
                                             "sid": s[5:], "kid": k}),
                    lambda s, k: json.dumps({"v": 1, "t": "keygen.1",
                                             "sid": s[5:], "kid": k,
                                             "curve": "p256"})):
        ans = open_session(server, token, "/keygen", {"curve": "p256"})
        ws = ws_connect(server, ans["session_id"], token)
        if callable(payload):
            payload = payload(ans["session_id"], ans["key_id"])
        error_and_close(ws, payload)
        status, _ = server.request(
            "GET", f"/pubkey?key_id={ans['key_id']}", token=token)
        assert status == 404
        for path in ("/sign", "/refresh"):
            status, _ = server.request("POST", path,
                                       {"key_id": ans["key_id"]}, token=token)
            assert status == 404
    assert server.alive()


# --- 7. TLS ----------------------------------------------------------------


def test_tls_pin_and_version(server, make_token, tmp_path):
    tok = make_token(server, "alice")
    p = tok.run("status", "--json")
    assert json.loads(p.stdout)["status"] == "ok"

    conf = tok.conf_path().read_text()
    pin = re.search(r"server_pin = ([0-9a-f]{64})", conf).group(1)
    wrong = ("0" if pin[0] != "0" else "1") + pin[1:]
    tok.conf_path().write_text(conf.replace(pin, wrong))
    for args in (("status",), ("keygen", "--curve", "p256", "--label", "x")):
        p = tok.run(*args, check=False)
        assert p.returncode != 0, (args, p.stdout)
        assert "TLS" in p.stderr, p.stderr
        assert len(error_lines(p.stderr)) == 1, p.stderr
    assert tok.list() == {}

    # a CA file instead of the pin: the server's own certificate works,
    # another server's certificate does not
    lines = [ln for ln in conf.splitlines() if not ln.startswith("server_pin")]
    tok.conf_path().write_text("\n".join(
        lines + [f"server_ca = {server.cert}"]) + "\n")
    assert tok.run("status").returncode == 0
    other = tmp_path / "other-cert.pem"
    key = ec.generate_private_key(ec.SECP256R1())
    other.write_bytes(_selfsigned(key))
    tok.conf_path().write_text("\n".join(
        lines + [f"server_ca = {other}"]) + "\n")
    p = tok.run("status", check=False)
    assert p.returncode != 0 and "TLS" in p.stderr, p.stderr
    assert len(error_lines(p.stderr)) == 1, p.stderr
    tok.conf_path().write_text(conf)
    assert tok.run("status").returncode == 0

    # TLS 1.3 only
    ctx = server.ssl_context()
    with socket.create_connection(("127.0.0.1", server.port), 10) as s:
        with ctx.wrap_socket(s, server_hostname="127.0.0.1") as t:
            assert t.version() == "TLSv1.3"
    ctx12 = server.ssl_context()
    ctx12.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(ssl.SSLError):
        with socket.create_connection(("127.0.0.1", server.port), 10) as s:
            with ctx12.wrap_socket(s, server_hostname="127.0.0.1"):
                pass
    with pytest.raises(ssl.SSLError):
        server.request("GET", "/status", context=ctx12)
    assert server.request("GET", "/status")[0] == 200


def _selfsigned(key):
    import datetime
    import ipaddress
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "other")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None),
                           True)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


# --- 8. bounded concurrency ------------------------------------------------


def test_concurrent_signing(server, make_token):
    tok = make_token(server, "alice")
    labels = [f"k{i:02d}" for i in range(20)]
    curves = {lab: ("secp256k1", "p256")[i % 2]
              for i, lab in enumerate(labels)}
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda lab: tok.keygen(curves[lab], lab), labels))
    pems = {lab: tok.pubkey_pem(lab) for lab in labels}
    for lab in labels:
        load_pub(pems[lab], curves[lab])

    def worker(lab):
        done = []
        for i in range(3):
            digest = hashlib.sha256(f"{lab}/{i}".encode()).digest()
            p = tok.run("sign", "--key", lab, "--digest", digest.hex(),
                        "--format", "raw", check=False, timeout=110)
            done.append((digest, p.returncode, p.stdout.strip(),
                         p.stderr.strip()))
        return lab, done

    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        futures = [pool.submit(worker, lab) for lab in labels]
        finished, pending = concurrent.futures.wait(futures, timeout=120)
    assert not pending, "concurrent signing did not finish in 120 s"
    elapsed = time.monotonic() - t0
    n = 0
    for f in finished:
        lab, done = f.result()
        for digest, rc, out, err in done:
            assert rc == 0, (lab, err)
            verify_raw(pems[lab], out, digest)
            n += 1
    assert n == 60
    assert all(v[2] == 1 and not v[3] for v in tok.list().values())
    assert server.alive()
    print(f"60 concurrent signatures in {elapsed:.1f} s")


# --- 9. a client killed during refresh -------------------------------------


def test_killed_refresh_leaves_a_working_key(server, make_token):
    tok = make_token(server, "alice")
    kid = tok.keygen("secp256k1", "k")
    pem = tok.pubkey_pem("k")
    t0 = time.monotonic()
    tok.run("refresh", "--key", "k")
    full = time.monotonic() - t0  # a whole refresh process, for late kills
    seen = []

    def kill_at(delay):
        before = tok.list()["k"][2]
        log_mark = len(server.log_text())
        proc = tok.popen("refresh", "--key", "k")
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        after = tok.list()["k"]
        assert after[1] == kid and not after[3]
        assert after[2] in (before, before + 1), (delay, before, after)
        sign_and_verify(tok, "k", pem, f"killed at {delay}".encode())
        assert tok.pubkey_pem("k") == pem
        tok.run("refresh", "--key", "k")
        assert tok.list()["k"][2] == after[2] + 1
        sign_and_verify(tok, "k", pem)
        # how far the killed refresh got on the server
        log = server.log_text()[log_mark:].split("op=sign", 1)[0]
        phase = ("done" if "event=refresh_done" in log else
                 "pending" if "event=refresh_pending" in log else
                 "open" if "op=refresh" in log else "client only")
        seen.append((round(delay, 2), phase, after[2] - before))

    for delay in (0.05, 0.15, 0.25, 0.35, 0.5):
        kill_at(delay)
    # and late in the run, around the store-then-confirm steps
    for frac in (0.7, 0.8, 0.88, 0.94, 0.98):
        kill_at(full * frac)
    assert server_pubkey(server, server.token("alice"),
                         kid)["pubkey"] == uncompressed(pem)
    assert server.alive()
    print(f"refresh {full:.2f} s; (kill delay, server phase, client epoch "
          f"step):", seen)
