"""`halfkey doctor` against a real halfkeyd on 127.0.0.1: a healthy token
passes every check; each broken part (certificate pin, server down, expired
or near-expiry JWT, locked key, wrong PIN, loose permissions) is a FAIL or
WARN line naming it, followed by a fix."""
import base64
import hashlib
import json
import os
import re
import subprocess
import time

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils

from test_server import verify_raw

CHECKS = ("token-dir", "config", "server", "pin", "jwt", "auth", "token",
          "tpm", "login", "key", "backup", "version")


def doctor(tok, pin=True):
    env = dict(tok.env)
    if not pin:
        env.pop("HALFKEY_PIN", None)
    p = subprocess.run(tok.cmd("doctor"), capture_output=True, text=True,
                       env=env, timeout=60)
    lines = {}
    for line in p.stdout.splitlines():
        m = re.match(r"(OK|WARN|FAIL|SKIP)\s+([a-z-]+): (.*)", line)
        if m:
            lines.setdefault(m.group(2), []).append((m.group(1), m.group(3)))
    return p, lines


def fix_after(out, check):
    """The fix line that follows the first FAIL/WARN of `check`."""
    lines = out.splitlines()
    for i, line in enumerate(lines):
        if re.match(rf"(FAIL|WARN)\s+{check}: ", line):
            assert lines[i + 1].lstrip().startswith("fix: "), out
            return lines[i + 1]
    pytest.fail(f"no FAIL/WARN for {check}:\n{out}")


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def mint(server, sub, exp, key=None):
    """An ES256 JWT with a chosen exp, from the server's issuer key (or
    from `key`)."""
    key = key or serialization.load_pem_private_key(
        (server.dir / "jwt-issuer.key.pem").read_bytes(), None)
    head = b64url(json.dumps({"alg": "ES256", "typ": "JWT"}).encode())
    body = b64url(json.dumps({"iss": "halfkeyd", "aud": "halfkey",
                              "sub": sub, "iat": int(time.time()) - 7200,
                              "exp": exp}).encode())
    der = key.sign(f"{head}.{body}".encode(), ec.ECDSA(hashes.SHA256()))
    r, s = utils.decode_dss_signature(der)
    # low S: halfkeyd refuses the malleable high-S twin
    n = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    s = min(s, n - s)
    return f"{head}.{body}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


@pytest.fixture
def tok(server, make_token):
    t = make_token(server, "alice")
    # a week of validity: the fixture's one hour would be a warning
    t.token_file.write_text(server.token("alice", ttl=7 * 86400) + "\n")
    t.keygen("secp256k1", "wallet")
    return t


def test_healthy(tok):
    p, lines = doctor(tok)
    assert p.returncode == 0, p.stdout + p.stderr
    assert set(lines) == set(CHECKS), p.stdout
    for check, results in lines.items():
        if check != "backup":
            assert all(lv == "OK" for lv, _ in results), p.stdout
    # a key without a backup is a warning (with its fix), not a failure
    assert lines["backup"][0][0] == "WARN", p.stdout
    assert "no backup on the server" in lines["backup"][0][1]
    assert p.stdout.count("fix:") == 1
    assert "wallet: secp256k1" in lines["key"][0][1]
    assert "the server holds its other share" in lines["key"][0][1]
    assert "subject alice" in lines["jwt"][0][1]
    assert "protocol 1" in lines["version"][0][1]
    # Without a PIN the keys are not unsealed, which is not a problem.
    p, lines = doctor(tok, pin=False)
    assert p.returncode == 0, p.stdout
    assert lines["login"][0][0] == "SKIP"


def test_wrong_server_pin(tok, server):
    conf = tok.conf_path()
    conf.write_text(re.sub(r"server_pin = [0-9a-f]+",
                           "server_pin = " + "ab" * 32, conf.read_text()))
    p, lines = doctor(tok)
    assert p.returncode == 1
    assert lines["server"][0][0] == "OK"
    lv, msg = lines["pin"][0]
    assert lv == "FAIL" and server.pin in msg and "ab" * 32 in msg
    assert f"set server_pin = {server.pin}" in fix_after(p.stdout, "pin")
    assert lines["auth"][0][0] == "SKIP"  # no JWT sent to an unpinned server


def test_server_down(tok, server):
    assert server.stop() == 0
    p, lines = doctor(tok)
    assert p.returncode == 1
    lv, msg = lines["server"][0]
    assert lv == "FAIL" and "cannot connect" in msg and server.url in msg
    assert "halfkeyd run" in fix_after(p.stdout, "server")
    assert lines["pin"][0][0] == "SKIP"
    assert lines["version"][0][0] == "SKIP"
    # The local checks still run.
    assert lines["token"][0][0] == "OK" and lines["key"][0][0] == "OK"


def test_expired_and_expiring_jwt(tok, server):
    tok.token_file.write_text(mint(server, "alice", int(time.time()) - 3600)
                              + "\n")
    p, lines = doctor(tok)
    assert p.returncode == 1
    lv, msg = lines["jwt"][0]
    assert lv == "FAIL" and "expired" in msg and "alice" in msg
    assert f"halfkeyd token --config SERVER.conf --sub alice > " \
        f"{tok.token_file}" in fix_after(p.stdout, "jwt")
    assert lines["auth"][0][0] == "SKIP"
    # An hour, as the README mints it: no warning.
    tok.token_file.write_text(server.token("alice", ttl=3600) + "\n")
    p, lines = doctor(tok)
    assert p.returncode == 0, p.stdout
    assert lines["jwt"][0][0] == "OK" and "expires in" in lines["jwt"][0][1]
    # Under five minutes left: a warning, and the server still accepts it.
    tok.token_file.write_text(server.token("alice", ttl=120) + "\n")
    p, lines = doctor(tok)
    assert p.returncode == 0, p.stdout
    assert lines["jwt"][0][0] == "WARN" and "expires in" in lines["jwt"][0][1]
    assert lines["auth"][0][0] == "OK"
    # Expired a moment ago, inside the server's clock skew (jwt_skew 30 s):
    # not a failure while the server accepts it.
    tok.token_file.write_text(mint(server, "alice", int(time.time()) - 5)
                              + "\n")
    p, lines = doctor(tok)
    assert p.returncode == 0, p.stdout
    lv, msg = lines["jwt"][0]
    assert lv == "WARN" and "clock skew" in msg, p.stdout
    assert lines["auth"][0][0] == "OK"
    # ... and beyond the skew the server refuses it: auth fails
    tok.token_file.write_text(mint(server, "alice", int(time.time()) - 200)
                              + "\n")
    p, lines = doctor(tok)
    assert p.returncode == 1
    assert lines["jwt"][0][0] == "WARN" and lines["auth"][0][0] == "FAIL"


def test_jwt_from_another_issuer(tok, server):
    # A well-formed, unexpired token the server cannot verify.
    other = ec.generate_private_key(ec.SECP256R1())
    tok.token_file.write_text(
        mint(server, "alice", int(time.time()) + 7 * 86400, other) + "\n")
    p, lines = doctor(tok)
    assert p.returncode == 1
    assert lines["jwt"][0][0] == "OK"
    assert lines["auth"][0][0] == "FAIL" and "refuses" in lines["auth"][0][1]
    assert "jwt_key" in fix_after(p.stdout, "auth")


def test_locked_key(tok, build_dir):
    tok.keygen("p256", "web")
    subprocess.run([str(build_dir / "ossl-provider" / "hk-lock-key"),
                    str(tok.dir), "wallet"], check=True, env=tok.env,
                   timeout=60)
    p, lines = doctor(tok)
    assert p.returncode == 1
    keys = dict((m.split(":")[0], (lv, m)) for lv, m in lines["key"])
    assert keys["web"][0] == "OK"
    lv, msg = keys["wallet"]
    assert lv == "FAIL" and "LOCKED" in msg and "simulated abort" in msg
    assert "halfkey unlock --key wallet --force" in fix_after(p.stdout, "key")
    tok.run("unlock", "--key", "wallet", "--force")
    p, lines = doctor(tok)
    assert p.returncode == 0, p.stdout


def test_wrong_pin_and_counter(tok):
    tok.env["HALFKEY_PIN"] = "not-the-pin"
    p, lines = doctor(tok)
    assert p.returncode == 1
    lv, msg = lines["login"][0]
    assert lv == "FAIL" and "PIN" in msg and "not counted" in msg, p.stdout
    # doctor's check used up no try of the lockout ...
    p, lines = doctor(tok, pin=False)
    assert p.returncode == 0
    assert lines["token"][0][0] == "OK" and "no wrong PINs" in \
        lines["token"][0][1], p.stdout
    # ... a real login's wrong PIN counts, and shows as a warning
    tok.run("unlock", "--key", "wallet", check=False)
    p, lines = doctor(tok, pin=False)
    assert p.returncode == 0
    lv, msg = lines["token"][0]
    assert lv == "WARN" and "1 wrong PIN" in msg


def test_locked_pin_points_at_the_so_reset(tok, tmp_path):
    tok.env["HALFKEY_PIN"] = "not-the-pin"
    for _ in range(10):
        tok.run("unlock", "--key", "wallet", check=False)
    p, lines = doctor(tok, pin=False)
    assert lines["token"][0][0] == "FAIL" and "PIN locked" in \
        lines["token"][0][1]
    # this token has no SO PIN: a backup or a new token
    assert "no SO PIN" in fix_after(p.stdout, "token"), p.stdout
    # with the right PIN too: locked (and the fix), no try used
    tok.env["HALFKEY_PIN"] = "2468-test-pin"
    p, lines = doctor(tok)
    assert lines["login"][0] == ("FAIL", "PIN locked"), p.stdout


def test_locked_pin_with_an_so(server, make_token, tmp_path):
    tok = make_token(server, "bob")
    so = tmp_path / "so"
    so.write_text("so-pin-1234\n")
    tok.run("set-so-pin", "--so-pin-file", so)
    tok.keygen("p256", "k")
    good = tok.env["HALFKEY_PIN"]
    tok.env["HALFKEY_PIN"] = "not-the-pin"
    for _ in range(10):
        tok.run("unlock", "--key", "k", check=False)
    tok.env["HALFKEY_PIN"] = good
    p, lines = doctor(tok)
    assert p.returncode == 1
    fix = fix_after(p.stdout, "token")
    assert "halfkey passwd --so-pin-file" in fix and "C_InitPIN" in fix
    new = tmp_path / "new"
    new.write_text("fresh-pin-77\n")
    tok.run("passwd", "--so-pin-file", so, "--new-pin-file", new)
    tok.env["HALFKEY_PIN"] = "fresh-pin-77"
    p, lines = doctor(tok)
    assert lines["login"][0][0] == "OK", p.stdout


def test_token_dir_permissions(tok):
    os.chmod(tok.dir, 0o755)  # readable: a copy allows a PIN search
    p, lines = doctor(tok)
    assert p.returncode == 1 and lines["token-dir"][0][0] == "FAIL"
    assert f"chmod 700 {tok.dir}" in fix_after(p.stdout, "token-dir")
    os.chmod(tok.dir, 0o777)
    p, lines = doctor(tok)
    assert p.returncode == 1 and lines["token-dir"][0][0] == "FAIL"
    assert lines["others"][0][0] == "SKIP" and "server" not in lines


def test_no_token(tmp_path, halfkey_bin):
    p = subprocess.run([str(halfkey_bin), "--dir", str(tmp_path / "none"),
                        "doctor"], capture_output=True, text=True, timeout=30,
                       env={k: v for k, v in os.environ.items()
                            if k != "HALFKEY_PIN"})
    assert p.returncode == 1
    assert re.search(r"FAIL\s+token-dir: .*does not exist", p.stdout)
    assert "halfkey --dir" in p.stdout and "init" in p.stdout


def test_bad_config(tok):
    conf = tok.conf_path()
    text = conf.read_text()
    conf.write_text(text + "server_colour = blue\n")
    p, lines = doctor(tok)
    assert p.returncode == 1
    lv, msg = lines["config"][0]
    line = len(text.splitlines()) + 1
    assert lv == "FAIL" and f"{conf}:{line}: unknown key" in msg
    assert f"edit {conf}" in fix_after(p.stdout, "config")
    assert lines["others"][0][0] == "SKIP"


def test_not_a_tls_server(tok):
    # A plain HTTP server on 127.0.0.1: it answers, but speaks no TLS.
    import http.server
    import threading
    httpd = http.server.HTTPServer(("127.0.0.1", 0),
                                   http.server.BaseHTTPRequestHandler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        conf = tok.conf_path()
        conf.write_text(re.sub(r"server_url = \S+",
                               f"server_url = https://127.0.0.1:"
                               f"{httpd.server_port}", conf.read_text()))
        p, lines = doctor(tok)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert p.returncode == 1
    lv, msg = lines["server"][0]
    assert lv == "FAIL" and "no TLS 1.3 handshake" in msg, p.stdout
    assert "server_url" in fix_after(p.stdout, "server")


def test_refresh_keeps_the_abort_lock(tok, build_dir):
    """DESIGN.md §2: the abort lock holds for good: neither a refresh nor
    a plain unlock clears it; `unlock --force` does, audited by the
    server."""
    tok.keygen("p256", "locky")
    pem = tok.pubkey_pem("locky")
    subprocess.run([str(build_dir / "ossl-provider" / "hk-lock-key"),
                    str(tok.dir), "locky"], check=True, env=tok.env,
                   timeout=60)
    p = tok.run("sign", "--key", "locky", "--digest", "ab" * 32,
                check=False)
    assert p.returncode != 0 and "locked" in p.stderr.lower(), p.stderr
    p = tok.run("refresh", "--key", "locky", check=False)
    assert p.returncode != 0 and "does not clear the lock" in p.stderr
    assert tok.list()["locky"][2] == 1 and tok.list()["locky"][3]
    p = tok.run("unlock", "--key", "locky", check=False)
    assert p.returncode != 0 and "--force" in p.stderr, p.stderr
    assert tok.list()["locky"][3]
    p = tok.run("unlock", "--key", "locky", "--force")
    assert "WARNING" in p.stderr and "audited" in p.stderr
    assert not tok.list()["locky"][3]
    tok.server.wait_audit(lambda r: r["event"] == "unlock"
                          and r["outcome"] == "forced")
    digest = hashlib.sha256(b"after the lock").digest()
    sig = tok.run("sign", "--key", "locky", "--digest", digest.hex(),
                  "--format", "raw").stdout.strip()
    verify_raw(pem, sig, digest)
