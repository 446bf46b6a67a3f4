"""Black-box tests of the OpenSSL 3 provider `halfkey` (ossl-provider/): the
real `openssl` binary loads build/ossl-provider/halfkey.so and signs with
split keys of a real halfkeyd on 127.0.0.1 (server and token fixtures in
conftest.py). Every signature, CSR and certificate is checked with plain
openssl (the default provider only) and with the Python `cryptography`
package."""
import hashlib
import os
import re
import socket
import subprocess
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils

from conftest import PIN, ROOT

CURVES = {"p256": ec.SECP256R1, "secp256k1": ec.SECP256K1}
ORDER = {
    "secp256k1":
    0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141,
    "p256": 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
}


# --- fixtures and helpers ---------------------------------------------------


@pytest.fixture(scope="session")
def provider_dir(build_dir):
    d = build_dir / "ossl-provider"
    if not (d / "halfkey.so").is_file():
        pytest.fail(f"{d}/halfkey.so is not built: ninja -C {build_dir}")
    return d


class Ossl:
    """Runs `openssl` with or without the halfkey provider, against one
    token (its directory in $HALFKEY_HOME, the PIN in $HALFKEY_PIN)."""

    def __init__(self, provider_dir, tok, tmp_path):
        self.prov = ["-provider-path", str(provider_dir), "-provider",
                     "halfkey", "-provider", "default"]
        self.tok = tok
        self.tmp = tmp_path
        self.env = dict(os.environ, HALFKEY_HOME=str(tok.dir),
                        HALFKEY_PIN=PIN)
        for var in ("OPENSSL_CONF", "OPENSSL_MODULES", "XDG_DATA_HOME"):
            self.env.pop(var, None)

    def args(self, cmd, *args, provider=True):
        """openssl CMD [provider options] ARGS"""
        return ["openssl", cmd, *(self.prov if provider else []),
                *map(str, args)]

    def run(self, cmd, *args, provider=True, env=None, check=True,
            input=None, timeout=60):
        p = subprocess.run(self.args(cmd, *args, provider=provider),
                           capture_output=True, env=env or self.env,
                           input=input, timeout=timeout)
        if check and p.returncode != 0:
            pytest.fail(f"openssl {cmd} {' '.join(map(str, args))} exited "
                        f"{p.returncode}:\n{p.stderr.decode(errors='replace')}"
                        "\n--- server:\n"
                        + self.tok.server.log_text()[-3000:])
        return p

    def plain(self, cmd, *args, **kw):
        """openssl without the provider (the default provider only)."""
        return self.run(cmd, *args, provider=False, **kw)

    def fails(self, cmd, *args, env=None, provider=True):
        """Runs a command that must fail; returns its stderr."""
        p = self.run(cmd, *args, env=env, check=False, provider=provider)
        assert p.returncode != 0, p.stdout
        return p.stderr.decode(errors="replace")


@pytest.fixture
def ossl(server, make_token, provider_dir, tmp_path):
    """An Ossl over a fresh token with a P-256 key `p` and a secp256k1 key
    `k`."""
    tok = make_token(server, "alice")
    tok.keygen("p256", "p")
    tok.keygen("secp256k1", "k")
    return Ossl(provider_dir, tok, tmp_path)


LABEL = {"p256": "p", "secp256k1": "k"}


def write(path, data):
    path.write_bytes(data)
    return path


def check_der_sig(pem, der, data=None, digest=None, hash_cls=hashes.SHA256):
    """A DER ECDSA-Sig-Value, low-S, valid for data (or a digest)."""
    key = serialization.load_pem_public_key(pem)
    _, s = utils.decode_dss_signature(der)
    assert 0 < s <= ORDER[key.curve.name.replace("secp256r1", "p256")] // 2
    if digest is not None:
        key.verify(der, digest, ec.ECDSA(utils.Prehashed(hash_cls())))
    else:
        key.verify(der, data, ec.ECDSA(hash_cls()))


def error_lines(stderr, what):
    """The stderr lines naming the halfkey provider's error `what`."""
    return [ln for ln in stderr.splitlines()
            if ":halfkey:" in ln and what in ln]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SServer:
    """`openssl s_server -www` on 127.0.0.1, stopped by the test."""

    def __init__(self, args, env):
        self.proc = subprocess.Popen(
            args + ["-accept", "127.0.0.1:0", "-www"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, env=env)
        self.port = None
        line = b""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            m = re.match(rb"ACCEPT 127\.0\.0\.1:(\d+)", line)
            if m:
                self.port = int(m.group(1))
                return
            if not line and self.proc.poll() is not None:
                break
        self.stop(wait=0)
        pytest.fail(f"s_server did not start: {line!r}")

    def stop(self, wait=15):
        """Waits for the exit -naccept makes (it prints the statistics),
        then terminates; returns the output."""
        try:
            self.proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            pass
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        out = self.proc.stdout.read().decode(errors="replace")
        self.proc.stdout.close()
        self.proc.stdin.close()
        return out


def s_client(ossl, port, *args, provider=False):
    """One TLS 1.3 connection with an HTTP request; the client's output."""
    p = ossl.run("s_client", "-connect", f"127.0.0.1:{port}", "-tls1_3",
                 "-ign_eof", *args, provider=provider, check=False,
                 input=b"GET / HTTP/1.0\r\n\r\n", timeout=60)
    return p.returncode, (p.stdout + p.stderr).decode(errors="replace")


# --- the provider -----------------------------------------------------------


def test_provider_is_listed(provider_dir, tmp_path):
    p = subprocess.run(["openssl", "list", "-providers", "-verbose",
                        "-provider-path", str(provider_dir), "-provider",
                        "halfkey"], capture_output=True, text=True,
                       timeout=30, check=True)
    assert re.search(r"halfkey\n\s+name: halfkey two-party ECDSA provider\n"
                     r"\s+version: \d+\.\d+\.\d+\n\s+status: active\n"
                     r"\s+build info: halfkey ", p.stdout), p.stdout


# --- keys and signatures ----------------------------------------------------


@pytest.mark.parametrize("curve", sorted(CURVES))
def test_pkeyutl_sign_verify(ossl, tmp_path, curve):
    label = LABEL[curve]
    pem = ossl.tok.pubkey_pem(label)
    # the provider exports the public half: the same key as the CLI's
    out = ossl.run("pkey", "-in", f"halfkey:object={label}", "-pubout").stdout
    assert out == pem
    # and describes the key without any secret
    kid = ossl.tok.list()[label][1]
    text = ossl.run("pkey", "-in", f"halfkey:object={label}", "-text",
                    "-noout").stdout.decode()
    assert text.startswith("halfkey Private-Key: (256 bit, split with "
                           f"halfkeyd)\nlabel: {label}\nkey id: {kid}\npub:")
    assert ("prime256v1" if curve == "p256" else "secp256k1") in text
    pub = write(tmp_path / "pub.pem", pem)
    for i in range(2):
        data = os.urandom(100)
        digest = hashlib.sha256(data).digest()
        dig = write(tmp_path / f"dig{i}", digest)
        sig = tmp_path / f"sig{i}"
        ossl.run("pkeyutl", "-sign", "-inkey",
                 f"halfkey:object={label};type=private", "-in", dig, "-out",
                 sig)
        check_der_sig(pem, sig.read_bytes(), digest=digest)
        # plain openssl (default provider only) verifies it
        p = ossl.plain("pkeyutl", "-verify", "-pubin", "-inkey", pub, "-in",
                       dig, "-sigfile", sig)
        assert b"Signature Verified Successfully" in p.stdout
    # the provider verifies too (handing the public half to the default)
    p = ossl.run("pkeyutl", "-verify", "-inkey", f"halfkey:object={label}",
                 "-in", dig, "-sigfile", sig)
    assert b"Signature Verified Successfully" in p.stdout
    bad = write(tmp_path / "bad", bytes(32))
    assert ossl.run("pkeyutl", "-verify", "-inkey", f"halfkey:object={label}",
                    "-in", bad, "-sigfile", sig,
                    check=False).returncode != 0


@pytest.mark.parametrize("curve", sorted(CURVES))
def test_dgst_sign_verify(ossl, tmp_path, curve):
    label = LABEL[curve]
    kid = ossl.tok.list()[label][1]
    pem = ossl.tok.pubkey_pem(label)
    pub = write(tmp_path / "pub.pem", pem)
    msg = write(tmp_path / "msg", os.urandom(5000))
    pct = "".join(f"%{b:02x}" for b in bytes.fromhex(kid))
    uris = [f"halfkey:object={label}",
            f"pkcs11:object={label};type=private",
            f"pkcs11:id={pct}",
            f"halfkey:id={kid}?halfkey-dir={ossl.tok.dir}"]
    for i, (uri, md, hcls) in enumerate(zip(
            uris, ["sha256", "sha384", "sha512", "sha256"],
            [hashes.SHA256, hashes.SHA384, hashes.SHA512, hashes.SHA256])):
        sig = tmp_path / f"sig{i}"
        ossl.run("dgst", f"-{md}", "-sign", uri, "-out", sig, msg)
        check_der_sig(pem, sig.read_bytes(), data=msg.read_bytes(),
                      hash_cls=hcls)
        p = ossl.plain("dgst", f"-{md}", "-verify", pub, "-signature", sig,
                       msg)
        assert p.stdout == b"Verified OK\n"


def test_public_key_needs_no_pin(ossl, tmp_path):
    env = dict(ossl.env)
    del env["HALFKEY_PIN"]
    pem = ossl.tok.pubkey_pem("p")
    for uri in ("halfkey:object=p;type=public", "pkcs11:object=p"):
        out = ossl.run("pkey", "-pubin", "-in", uri, "-pubout",
                       env=env).stdout
        assert out == pem
    # verifying with a public-key URI: the default provider does the work
    msg = write(tmp_path / "msg", b"data")
    sig = tmp_path / "sig"
    ossl.run("dgst", "-sha256", "-sign", "halfkey:object=p", "-out", sig, msg)
    p = ossl.run("dgst", "-sha256", "-verify", "pkcs11:object=p;type=public",
                 "-signature", sig, msg, env=env)
    assert p.stdout == b"Verified OK\n"


def test_pin_from_passphrase_callback(ossl, tmp_path):
    env = dict(ossl.env)
    del env["HALFKEY_PIN"]
    dig = write(tmp_path / "dig", hashlib.sha256(b"x").digest())
    sig = tmp_path / "sig"
    ossl.run("pkeyutl", "-sign", "-inkey", "halfkey:object=p", "-passin",
             f"pass:{PIN}", "-in", dig, "-out", sig, env=env)
    check_der_sig(ossl.tok.pubkey_pem("p"), sig.read_bytes(),
                  digest=dig.read_bytes())
    # no PIN anywhere, and no terminal to ask on
    err = ossl.fails("pkeyutl", "-sign", "-inkey", "halfkey:object=p",
                     "-in", dig, "-out", sig, env=env)
    assert error_lines(err, "no PIN given"), err


def test_pin_in_uri_and_pin_file(ossl, tmp_path):
    env = dict(ossl.env)
    del env["HALFKEY_PIN"]
    dig = write(tmp_path / "dig", hashlib.sha256(b"y").digest())
    sig = tmp_path / "sig"
    pin_file = write(tmp_path / "pin", PIN.encode() + b"\n")
    pin_file.chmod(0o600)
    for uri in (f"pkcs11:object=p?pin-value={PIN}",
                f"pkcs11:object=p?pin-source=file:{pin_file}",
                f"pkcs11:object=p?pin-source=file://{pin_file}",
                f"halfkey:object=p;pin-source={pin_file}"):
        ossl.run("pkeyutl", "-sign", "-inkey", uri, "-in", dig, "-out", sig,
                 env=env)
        check_der_sig(ossl.tok.pubkey_pem("p"), sig.read_bytes(),
                      digest=dig.read_bytes())
    pin_file.chmod(0o644)
    err = ossl.fails("pkeyutl", "-sign", "-inkey",
                     f"halfkey:object=p?pin-source={pin_file}", "-in", dig,
                     "-out", sig, env=env)
    assert error_lines(err, "readable by others"), err


def test_openssl_cnf(ossl, provider_dir, tmp_path):
    """Token directory and PIN file from the provider's openssl.cnf
    section (examples/openssl.cnf), nothing in the environment."""
    pin_file = write(tmp_path / "pin", PIN.encode() + b"\n")
    pin_file.chmod(0o600)
    example = (ROOT / "examples" / "openssl.cnf").read_text()
    conf = (example
            .replace("module = halfkey.so",
                     f"module = {provider_dir}/halfkey.so")
            .replace("#halfkey-dir = /home/alice/.local/share/halfkey",
                     f"halfkey-dir = {ossl.tok.dir}")
            .replace("#halfkey-pin-file = /home/alice/.config/halfkey/pin",
                     f"halfkey-pin-file = {pin_file}"))
    assert conf.count(str(tmp_path)) >= 1 and str(ossl.tok.dir) in conf
    cnf = write(tmp_path / "openssl.cnf", conf.encode())
    env = {k: v for k, v in ossl.env.items()
           if k not in ("HALFKEY_HOME", "HALFKEY_PIN")}
    env["OPENSSL_CONF"] = str(cnf)
    env["XDG_DATA_HOME"] = str(tmp_path / "nothing-here")
    p = ossl.run("list", "-providers", provider=False, env=env)
    assert b"halfkey" in p.stdout
    msg = write(tmp_path / "msg", b"configured")
    sig = tmp_path / "sig"
    ossl.run("dgst", "-sha256", "-sign", "halfkey:object=k", "-out", sig, msg,
             provider=False, env=env)
    check_der_sig(ossl.tok.pubkey_pem("k"), sig.read_bytes(),
                  data=b"configured")


# --- X.509 ------------------------------------------------------------------


@pytest.mark.parametrize("curve", sorted(CURVES))
def test_csr_and_self_signed_certificate(ossl, tmp_path, curve):
    label = LABEL[curve]
    pem = ossl.tok.pubkey_pem(label)
    csr = tmp_path / "req.csr"
    ossl.run("req", "-new", "-key", f"pkcs11:object={label};type=private",
             "-subj", "/CN=halfkey test", "-out", csr)
    p = ossl.plain("req", "-in", csr, "-verify", "-noout")
    assert b"verify OK" in p.stdout + p.stderr
    req = x509.load_pem_x509_csr(csr.read_bytes())
    assert req.is_signature_valid
    assert req.public_key().public_bytes(
        serialization.Encoding.PEM,
        serialization.PublicFormat.SubjectPublicKeyInfo) == pem
    assert req.signature_algorithm_oid == x509.SignatureAlgorithmOID \
        .ECDSA_WITH_SHA256

    crt = tmp_path / "self.crt"
    ossl.run("req", "-new", "-x509", "-key", f"halfkey:object={label}",
             "-sha384", "-subj", "/CN=halfkey self-signed", "-days", "2",
             "-out", crt)
    p = ossl.plain("verify", "-CAfile", crt, crt)
    assert p.stdout == f"{crt}: OK\n".encode()
    cert = x509.load_pem_x509_certificate(crt.read_bytes())
    assert cert.signature_algorithm_oid == x509.SignatureAlgorithmOID \
        .ECDSA_WITH_SHA384
    cert.public_key().verify(cert.signature, cert.tbs_certificate_bytes,
                             ec.ECDSA(hashes.SHA384()))


# --- TLS 1.3 ----------------------------------------------------------------


def self_signed(ossl, tmp_path, label, cn):
    crt = tmp_path / f"{label}.crt"
    ossl.run("req", "-new", "-x509", "-key", f"halfkey:object={label}",
             "-subj", f"/CN={cn}", "-addext",
             "subjectAltName=IP:127.0.0.1", "-days", "2", "-out", crt)
    return crt


def test_tls_server_key(ossl, tmp_path):
    crt = self_signed(ossl, tmp_path, "p", "127.0.0.1")
    srv = SServer(ossl.args("s_server", "-key", "halfkey:object=p", "-cert",
                            crt, "-tls1_3", "-naccept", "3"), ossl.env)
    try:
        for _ in range(3):  # the second and third reuse the connection
            rc, out = s_client(ossl, srv.port, "-CAfile", crt,
                               "-verify_return_error", "-verify_ip",
                               "127.0.0.1")
            assert rc == 0, out
            assert "New, TLSv1.3, Cipher is" in out, out
            assert "Peer signature type: ECDSA" in out, out
            assert "Verify return code: 0 (ok)" in out, out
    finally:
        log = srv.stop()
    assert "3 server accepts that finished" in log, log


def test_tls_server_survives_halfkeyd_restart(ossl, tmp_path):
    """The provider keeps one connection to halfkeyd open between
    signatures; when halfkeyd drops it, the next signature reconnects."""
    crt = self_signed(ossl, tmp_path, "p", "127.0.0.1")
    srv = SServer(ossl.args("s_server", "-key", "halfkey:object=p", "-cert",
                            crt, "-tls1_3", "-naccept", "2"), ossl.env)
    hk = ossl.tok.server
    try:
        rc, out = s_client(ossl, srv.port, "-CAfile", crt)
        assert rc == 0 and "Verify return code: 0 (ok)" in out, out
        assert hk.stop() == 0
        hk.set_conf(port=hk.port)  # the token's halfkey.conf names it
        hk.start()
        t0 = time.monotonic()
        rc, out = s_client(ossl, srv.port, "-CAfile", crt)
        assert rc == 0 and "Verify return code: 0 (ok)" in out, out
        assert time.monotonic() - t0 < 10
    finally:
        log = srv.stop()
    assert "2 server accepts that finished" in log, log


def test_tls_client_key(ossl, tmp_path):
    crt = self_signed(ossl, tmp_path, "p", "halfkey client")
    skey, scrt = tmp_path / "srv.key", tmp_path / "srv.crt"
    ossl.plain("req", "-x509", "-newkey", "ec", "-pkeyopt",
               "ec_paramgen_curve:P-256", "-nodes", "-keyout", skey, "-out",
               scrt, "-subj", "/CN=127.0.0.1", "-days", "2")
    srv = SServer(ossl.args("s_server", "-key", skey, "-cert", scrt,
                            "-Verify", "1", "-CAfile", crt,
                            "-verify_return_error", "-tls1_3", "-naccept",
                            "1", provider=False), ossl.env)
    try:
        rc, out = s_client(ossl, srv.port, "-CAfile", scrt, "-key",
                           "halfkey:object=p", "-cert", crt, provider=True)
    finally:
        log = srv.stop()
    assert rc == 0, out
    assert "New, TLSv1.3, Cipher is" in out, out
    # the -www page lists the client certificate the server verified
    assert "Client certificate" in out and "CN=halfkey client" in out, out
    assert "1 server accepts that finished" in log, log
    assert "verify error" not in log, log


# --- provider order ---------------------------------------------------------
#
# Loaded before `default` (on the command line or first in an openssl.cnf),
# the provider must not take over plain EC: TLS keeps its EC groups (ECDHE
# on P-256, TLS 1.2 with an ECDSA peer) whether or not a halfkey key is in
# use.

ORDERS = ["cli-halfkey-first", "cli-default-first", "cnf-halfkey-first",
          "cnf-default-first"]


def order_setup(ossl, provider_dir, tmp_path, order):
    """(provider options, environment) loading both providers in order."""
    first, second = (("halfkey", "default") if order.endswith("halfkey-first")
                     else ("default", "halfkey"))
    if order.startswith("cli"):
        return (["-provider-path", str(provider_dir), "-provider", first,
                 "-provider", second], ossl.env)
    sect = {"default": "[default_sect]\nactivate = 1\n",
            "halfkey": f"[halfkey_sect]\nmodule = {provider_dir}/halfkey.so\n"
                       f"activate = 1\nhalfkey-dir = {ossl.tok.dir}\n"}
    cnf = write(tmp_path / f"{order}.cnf", (
        "openssl_conf = openssl_init\n[openssl_init]\n"
        "providers = provider_sect\n[provider_sect]\n"
        f"{first} = {first}_sect\n{second} = {second}_sect\n"
        + sect[first] + sect[second]).encode())
    env = dict(ossl.env, OPENSSL_CONF=str(cnf))
    env.pop("HALFKEY_HOME")
    return [], env


def order_handshake(ossl, server_args, client_args, version, server_env,
                    client_env):
    srv = SServer(["openssl", "s_server", *map(str, server_args), version,
                   "-groups", "P-256", "-naccept", "1"], server_env)
    try:
        p = subprocess.run(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{srv.port}",
             version, "-groups", "P-256", "-ign_eof",
             *map(str, client_args)], input=b"GET / HTTP/1.0\r\n\r\n",
            capture_output=True, env=client_env, timeout=60)
    finally:
        log = srv.stop()
    out = (p.stdout + p.stderr).decode(errors="replace")
    name = {"-tls1_2": "TLSv1.2", "-tls1_3": "TLSv1.3"}[version]
    assert p.returncode == 0, out + "\n--- s_server:\n" + log
    assert re.search(rf"New, {name}, Cipher is (ECDHE-ECDSA|TLS_)", out), out
    assert "Server Temp Key: ECDH, prime256v1" in out, out
    assert "1 server accepts that finished" in log, log
    return out


@pytest.mark.parametrize("version", ["-tls1_2", "-tls1_3"])
@pytest.mark.parametrize("order", ORDERS)
def test_provider_order_tls(ossl, provider_dir, tmp_path, order, version):
    opts, env = order_setup(ossl, provider_dir, tmp_path, order)
    plain_env = {k: v for k, v in ossl.env.items() if k != "OPENSSL_CONF"}
    skey, scrt = tmp_path / "srv.key", tmp_path / "srv.crt"
    ossl.plain("req", "-x509", "-newkey", "ec", "-pkeyopt",
               "ec_paramgen_curve:P-256", "-nodes", "-keyout", skey, "-out",
               scrt, "-subj", "/CN=127.0.0.1", "-days", "2")
    # no halfkey key: a client with both providers, a default-key server
    order_handshake(ossl, ["-key", skey, "-cert", scrt], [*opts, "-CAfile",
                    scrt, "-verify_return_error"], version, plain_env, env)
    # a halfkey server key (the provider signs), a plain client
    crt = self_signed(ossl, tmp_path, "p", "127.0.0.1")
    out = order_handshake(ossl, [*opts, "-key", "halfkey:object=p", "-cert",
                                 crt], ["-CAfile", crt,
                                        "-verify_return_error"],
                          version, env, plain_env)
    assert "Peer signature type: ECDSA" in out, out
    assert "Verify return code: 0 (ok)" in out, out


# --- errors -----------------------------------------------------------------


def test_wrong_pin(ossl, tmp_path):
    dig = write(tmp_path / "dig", bytes(32))
    sig = tmp_path / "sig"
    env = dict(ossl.env, HALFKEY_PIN="0000-wrong")
    err = ossl.fails("pkeyutl", "-sign", "-inkey", "halfkey:object=p",
                     "-in", dig, "-out", sig, env=env)
    assert error_lines(err, "wrong PIN:"), err
    assert "(1 of 10 tries used)" in err, err
    err = ossl.fails("dgst", "-sha256", "-sign",
                     "pkcs11:object=p?pin-value=1111-wrong", "-out", sig,
                     dig)
    assert error_lines(err, "wrong PIN:") and "(2 of 10" in err, err
    assert not sig.exists() or sig.stat().st_size == 0
    # the provider's messages never hold a PIN (openssl echoes the URI)
    ours = [ln for ln in err.splitlines() if ":halfkey:" in ln]
    assert ours and not any("1111" in ln or PIN in ln for ln in ours), err


def test_unknown_and_bad_uris(ossl, tmp_path):
    dig = write(tmp_path / "dig", bytes(32))
    for uri in ("halfkey:object=nope", "pkcs11:object=p;token=other",
                "pkcs11:id=%01%02", "pkcs11:object=p;type=cert",
                f"halfkey:object=p?halfkey-dir={tmp_path}/none"):
        err = ossl.fails("pkeyutl", "-sign", "-inkey", uri, "-in", dig)
        assert (error_lines(err, "no halfkey key matches the URI")
                or error_lines(err, "halfkey token configuration")), \
            (uri, err)
    for uri in ("halfkey:objekt=p", "halfkey:object=p;object=k",
                "halfkey:type=secret", "pkcs11:object=%zz",
                "halfkey:object=p%"):
        err = ossl.fails("pkeyutl", "-sign", "-inkey", uri, "-in", dig)
        assert error_lines(err, "bad halfkey or pkcs11 URI"), (uri, err)


def test_locked_key(ossl, build_dir, tmp_path):
    subprocess.run([str(build_dir / "ossl-provider" / "hk-lock-key"),
                    str(ossl.tok.dir), "p"], check=True, env=ossl.env,
                   timeout=60)
    assert ossl.tok.list()["p"][3], "the key is not locked"
    dig = write(tmp_path / "dig", bytes(32))
    for args in (("pkeyutl", "-sign", "-inkey", "halfkey:object=p", "-in",
                  dig),
                 ("dgst", "-sha256", "-sign", "halfkey:object=p", "-out",
                  tmp_path / "sig", dig)):
        err = ossl.fails(*args)
        lines = error_lines(err, "key locked after an invalid-signature")
        assert len(lines) == 1, err
        assert "halfkey unlock --key p" in lines[0]
    # the public half stays usable; the other key signs
    assert ossl.run("pkey", "-in", "halfkey:object=p;type=public",
                    "-pubin", "-pubout").stdout == ossl.tok.pubkey_pem("p")
    ossl.run("pkeyutl", "-sign", "-inkey", "halfkey:object=k", "-in", dig,
             "-out", tmp_path / "ok.sig")
    # after the operator's unlock it signs again
    ossl.tok.run("unlock", "--key", "p", "--force")
    ossl.run("pkeyutl", "-sign", "-inkey", "halfkey:object=p", "-in", dig,
             "-out", tmp_path / "ok2.sig")


def test_server_down(ossl, tmp_path):
    dig = write(tmp_path / "dig", bytes(32))
    assert ossl.tok.server.stop() == 0
    err = ossl.fails("pkeyutl", "-sign", "-inkey", "halfkey:object=p",
                     "-in", dig)
    assert error_lines(err, "two-party signing failed"), err


# --- the C example ----------------------------------------------------------


def test_sign_store_example(ossl, build_dir, provider_dir, tmp_path):
    msg = write(tmp_path / "msg", os.urandom(3000))
    sig = tmp_path / "sig"
    for label in ("p", "k"):
        subprocess.run([str(build_dir / "examples" / "sign_store"), "-p",
                        str(provider_dir), f"pkcs11:object={label}", msg, sig],
                       check=True, env=ossl.env, timeout=60)
        pub = write(tmp_path / "pub.pem", ossl.tok.pubkey_pem(label))
        p = ossl.plain("dgst", "-sha256", "-verify", pub, "-signature", sig,
                       msg)
        assert p.stdout == b"Verified OK\n"


def test_example_scripts(ossl, provider_dir, tmp_path):
    env = dict(ossl.env, HALFKEY_PROVIDER_DIR=str(provider_dir))
    ex = ROOT / "examples"
    msg = write(tmp_path / "msg", b"example")

    def run(script, *args):
        p = subprocess.run([str(ex / script), *map(str, args)], env=env,
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        return p.stdout + p.stderr

    assert "Verified OK" in run("sign-verify.sh", "halfkey:object=k", msg)
    assert (tmp_path / "msg.pub.pem").read_bytes() == \
        ossl.tok.pubkey_pem("k")
    assert "verify OK" in run("csr.sh", "pkcs11:object=p;type=private",
                              "/CN=example", tmp_path / "r.csr")
    assert f"{tmp_path}/c.crt: OK" in run(
        "self-signed.sh", "halfkey:object=p", "/CN=127.0.0.1",
        tmp_path / "c.crt", 3)


# --- certificates stored on the token ---------------------------------------


def import_cert(ossl, build_dir, der, label, cka_id):
    """Stores a certificate on the token through the PKCS#11 module
    (C_CreateObject, python-pkcs11)."""
    import pkcs11
    from pkcs11 import Attribute, ObjectClass

    os.environ["HALFKEY_PKCS11_TOKENS"] = str(ossl.tok.dir)
    try:
        lib = pkcs11.lib(str(build_dir / "pkcs11" /
                             "libhalfkey-pkcs11.so"))
        lib.reinitialize()
        (slot,) = lib.get_slots(token_present=True)
        with slot.get_token().open(user_pin=PIN, rw=True) as session:
            session.create_object({
                Attribute.CLASS: ObjectClass.CERTIFICATE,
                Attribute.CERTIFICATE_TYPE: pkcs11.CertificateType.X_509,
                Attribute.VALUE: der, Attribute.LABEL: label,
                Attribute.ID: cka_id})
        lib.finalize()
    finally:
        del os.environ["HALFKEY_PKCS11_TOKENS"]


def test_store_yields_token_certificates(ossl, build_dir, tmp_path):
    crt = self_signed(ossl, tmp_path, "p", "127.0.0.1")
    der = x509.load_pem_x509_certificate(crt.read_bytes()).public_bytes(
        serialization.Encoding.DER)
    kid = bytes.fromhex(ossl.tok.list()["p"][1])
    import_cert(ossl, build_dir, der, "p", kid)
    import_cert(ossl, build_dir, der, "other", b"\x01\x02")
    # by label, by id, and all certificates of the token
    for uri, count in (("pkcs11:object=p;type=cert", 1),
                       ("pkcs11:id=%01%02;type=cert", 1),
                       ("pkcs11:type=cert", 2),
                       ("halfkey:object=p;type=cert", 1)):
        out = ossl.run("storeutl", "-certs", uri).stdout.decode()
        assert out.count("-----BEGIN CERTIFICATE-----") == count, (uri, out)
        assert f"Total found: {count}" in out, out
    out = ossl.run("storeutl", "-certs", "-text",
                   "pkcs11:object=p;type=cert").stdout.decode()
    assert "Subject: CN=127.0.0.1" in out.replace(" = ", "="), out
    # no key material under type=cert, no certificate under type=private
    out = ossl.run("storeutl", "pkcs11:object=p").stdout.decode()
    assert "Total found: 3" in out, out  # private, public, certificate
    ossl.fails("storeutl", "-certs", "pkcs11:object=nothing;type=cert")
    pem = ossl.run("storeutl", "-certs", "pkcs11:object=p;type=cert"
                   ).stdout.decode()
    got = x509.load_pem_x509_certificate(
        pem[pem.index("-----BEGIN"):].encode())
    assert got.public_bytes(serialization.Encoding.DER) == der
    # s_server takes both the key and the certificate from the token
    srv = SServer(ossl.args("s_server", "-key", "pkcs11:object=p;type=private",
                            "-cert", "pkcs11:object=p;type=cert", "-tls1_3",
                            "-naccept", "1"), ossl.env)
    try:
        rc, out = s_client(ossl, srv.port, "-CAfile", crt,
                           "-verify_return_error", "-verify_ip", "127.0.0.1")
        assert rc == 0 and "Verify return code: 0 (ok)" in out, out
    finally:
        srv.stop()
