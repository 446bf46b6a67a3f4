"""PKCS#11 v3.0 argument and return-value rules of the module, one test per
rule (tests/py/p11_cases.py; doc/pkcs11-conformance.md is the table). The
rules run once, in a child process driving the raw C API with ctypes,
against a token of a real halfkeyd on 127.0.0.1 holding one key ("conf");
each test here reports its rule's result."""
import datetime
import json
import os
import shutil
import subprocess
import sys

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import PIN, Server, Token
import p11_cases

HERE = os.path.dirname(os.path.abspath(__file__))


def self_signed_der():
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "conf")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(7)
            .not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER)


@pytest.fixture(scope="module")
def results(tmp_path_factory, server_template, halfkeyd_bin, halfkey_bin,
            build_dir):
    tmp = tmp_path_factory.mktemp("p11conf")
    src, pin = server_template
    shutil.copytree(src, tmp / "srv")
    srv = Server(halfkeyd_bin, tmp / "srv", pin)
    srv.set_conf(port=0, port_file="port", shutdown_grace=10)
    srv.start()
    try:
        jwt = tmp / "alice.jwt"
        jwt.write_text(srv.token("alice") + "\n")
        tok = Token(halfkey_bin, tmp / "tok", jwt, srv)
        tok.run("init", "--url", srv.url, "--server-pin", srv.pin,
                "--token-file", jwt)
        tok.keygen("p256", "conf")
        cert = tmp / "cert.der"
        cert.write_bytes(self_signed_der())
        env = dict(os.environ, HALFKEY_PKCS11_TOKENS=str(tok.dir),
                   PYTHONPATH=HERE)
        env.pop("HALFKEY_HOME", None)
        cmd = [sys.executable, os.path.join(HERE, "p11_cases.py"),
               # another build of the module: $HALFKEY_TEST_PKCS11_MODULE
               os.environ.get("HALFKEY_TEST_PKCS11_MODULE", str(
                   build_dir / "pkcs11" / "libhalfkey-pkcs11.so")),
               str(tok.dir), PIN, str(cert)]
        res, todo = {}, list(p11_cases.RULES)
        while todo:  # a rule that kills the child: the rest in a new one
            try:
                p = subprocess.run(cmd + todo, capture_output=True, text=True,
                                   env=env, timeout=120)
                out, why = p.stdout, f"exit {p.returncode}: {p.stderr}"
            except subprocess.TimeoutExpired as e:
                out = (e.stdout or b"").decode(errors="replace")
                why = "hung (killed after 120 s)"
            for line in out.splitlines():
                if line.startswith("{"):
                    r = json.loads(line)
                    res[r["rule"]] = r
            todo = [r for r in todo if r not in res]
            if todo:
                res[todo[0]] = {"rule": todo[0], "ok": False, "info": {},
                                "err": f"the module killed the process "
                                       f"({why[-3000:]})"}
                todo = todo[1:]
        # session keys: the server's share is gone too
        res["_server"] = {
            kid: srv.request("GET", f"/pubkey?key_id={kid}",
                             token=srv.token("alice"))[0]
            for r in res.values() if isinstance(r, dict)
            for kid in r.get("info", {}).get("key_ids", [])}
        yield res
    finally:
        srv.stop()


@pytest.mark.parametrize("rule", list(p11_cases.RULES))
def test_rule(results, rule):
    r = results[rule]
    assert r["ok"], r["err"]
    for kid in r["info"].get("key_ids", []):
        assert results["_server"][kid] == 404, \
            f"the server still holds session key {kid}"
