"""The client at rest (issue 14, item 4), through the real CLI against a
real halfkeyd: the scrypt cost of a new token (read from token.json), the
minimum PIN length, a token of the older, cheaper cost moved to the new
one at its next login and still usable, `halfkey doctor` failing on a key
file or directory others can read, and a CA-file configuration that trusts
only that CA, not the system's trust store."""
import json
import os
import re
import subprocess

from test_doctor import doctor, fix_after
from test_server import _selfsigned

KDF_ENV = "HALFKEY_INSECURE_SCRYPT_LOG2N"


def token_kdf(tok):
    rec = json.loads((tok.dir / "token.json").read_text())
    assert rec["t"] == "token", rec  # no PIN change left pending
    return rec["scrypt_log2n"], rec["scrypt_r"], rec["scrypt_p"], rec["gen"]


def test_new_token_cost_and_pin_length(server, make_token, tmp_path,
                                       monkeypatch):
    monkeypatch.delenv(KDF_ENV, raising=False)  # the real default
    tok = make_token(server, "alice")
    assert token_kdf(tok)[:3] == (17, 8, 1)

    short = dict(tok.env, HALFKEY_PIN="12345")
    short.pop(KDF_ENV, None)
    p = subprocess.run([str(tok.bin), "--dir", str(tmp_path / "short"),
                        "init", "--url", server.url, "--server-pin",
                        server.pin, "--token-file", str(tok.token_file)],
                       capture_output=True, text=True, env=short, timeout=60)
    assert p.returncode != 0 and "PIN" in p.stderr, p.stderr
    assert "6 to 256" in p.stderr, p.stderr
    assert not (tmp_path / "short" / "token.json").exists()


def test_old_cost_token_upgraded_at_login(server, make_token):
    tok = make_token(server, "bob")  # at the suite's cheap cost
    tok.env[KDF_ENV] = "15"           # as earlier versions made tokens
    tok.keygen("secp256k1", "k")
    log2n, _, _, gen = token_kdf(tok)
    assert log2n == 15
    digest = "ab" * 32
    tok.env.pop(KDF_ENV)
    tok.run("sign", "--key", "k", "--digest", digest)  # logs in: upgrades
    log2n, _, _, gen2 = token_kdf(tok)
    assert log2n == 17 and gen2 == gen + 1
    key_file = tok.dir / "keys" / "k.json"
    assert json.loads(key_file.read_text())["gen"] == gen2
    tok.run("sign", "--key", "k", "--digest", digest)  # still signs
    assert token_kdf(tok)[3] == gen2                   # no second upgrade
    tok.env[KDF_ENV] = "12"  # the test-only variable never lowers it
    tok.run("sign", "--key", "k", "--digest", digest)
    assert token_kdf(tok)[0] == 17


def test_doctor_fails_on_readable_files(server, make_token):
    tok = make_token(server, "carol")
    tok.keygen("p256", "k")
    p, lines = doctor(tok)
    assert p.returncode == 0, p.stdout
    key_file = tok.dir / "keys" / "k.json"
    for path, mode, want in ((key_file, 0o644, "600"),
                             (tok.dir / "token.json", 0o640, "600"),
                             (tok.dir / "keys", 0o755, "700")):
        os.chmod(path, mode)
        p, lines = doctor(tok)
        assert p.returncode == 1, p.stdout
        bad = [m for lv, m in lines["token-dir"] if lv == "FAIL"]
        assert len(bad) == 1 and str(path) in bad[0], p.stdout
        assert f"chmod {want} {path}" in fix_after(p.stdout, "token-dir")
        os.chmod(path, int(want, 8))
    p, lines = doctor(tok)
    assert p.returncode == 0, p.stdout


def test_ca_file_trusts_only_that_ca(server, make_token, tmp_path):
    """server_ca names another CA; the server's certificate is trusted by
    the "system" store (SSL_CERT_FILE): the client must still refuse."""
    tok = make_token(server, "dave")
    conf = tok.conf_path().read_text()
    lines = [ln for ln in conf.splitlines()
             if not ln.startswith("server_pin")]
    from cryptography.hazmat.primitives.asymmetric import ec
    other = tmp_path / "other-ca.pem"
    other.write_bytes(_selfsigned(ec.generate_private_key(ec.SECP256R1())))
    tok.conf_path().write_text("\n".join(
        lines + [f"server_ca = {other}"]) + "\n")
    empty = tmp_path / "empty-certs"
    empty.mkdir()
    tok.env["SSL_CERT_FILE"] = str(server.cert)
    tok.env["SSL_CERT_DIR"] = str(empty)
    p = tok.run("status", check=False)
    assert p.returncode != 0 and "TLS" in p.stderr, (p.stdout, p.stderr)
    # the configured CA itself still works
    tok.conf_path().write_text("\n".join(
        lines + [f"server_ca = {server.cert}"]) + "\n")
    assert tok.run("status").returncode == 0
    assert re.search(r"ok", tok.run("status").stdout)
