"""Device attestation at keygen (issue 22 items 2 and 3) against a
software TPM: the test is the TPM's manufacturer (its own endorsement CA
signs the swtpm's EK certificate, written to NV index 0x01c00002 with
tpm2-tools). `halfkey keygen --attest` on a TPM-backed token is accepted
and shown attested in `halfkeyd keys list`, /pubkey and the audit log,
and the key signs; an EK certificate from an untrusted CA, a quote over
another session and a replayed quote are refused with nothing stored; a
subject that requires attestation is refused without one; a file token
asking for one gets a clear error. The refusals of forged answers drive
the protocol by hand with tpm2-tools (the same TPM, a second AK)."""
import base64
import datetime
import json
import os
import shutil
import struct
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from test_server import verify_raw
from test_tpm import SwTpm, tpm_token  # noqa: F401 (fixture)

pytestmark = pytest.mark.skipif(
    shutil.which("swtpm") is None or shutil.which("tpm2_nvdefine") is None,
    reason="swtpm and tpm2-tools needed (Debian: swtpm swtpm-tools "
           "tpm2-tools)")

EK_CERT_NV = "0x1c00002"


def make_ca(name):
    key = ec.generate_private_key(ec.SECP256R1())
    subj = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subj).issuer_name(subj)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None),
                           critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def tpm2(tpm, *args, **kw):
    """A tpm2-tools command on the swtpm, then its transient objects
    flushed (no resource manager in front of the socket)."""
    env = dict(os.environ, TPM2TOOLS_TCTI=tpm.tcti)
    p = subprocess.run(["tpm2_" + args[0], *map(str, args[1:])], env=env,
                       capture_output=True, timeout=60, **kw)
    subprocess.run(["tpm2_flushcontext", "-t"], env=env, capture_output=True,
                   timeout=60)
    assert p.returncode == 0, p.stderr
    return p


@pytest.fixture(scope="module")
def ek_tpm(tmp_path_factory):
    """A swtpm whose EK certificate (RSA-2048 EK) is signed by the test's
    endorsement CA; (tpm, ca_pem_path, work dir)."""
    d = tmp_path_factory.mktemp("attest")
    tpm = SwTpm(d / "swtpm")
    tpm.start()
    ca_key, ca = make_ca("halfkey test EK CA")
    tpm2(tpm, "createek", "-c", d / "ek.ctx", "-G", "rsa", "-u",
         d / "ek.pem", "-f", "pem")
    ek_pub = serialization.load_pem_public_key((d / "ek.pem").read_bytes())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(ca.subject).public_key(ek_pub)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DirectoryName(
                x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                              "swtpm")]))]), critical=True)
            .sign(ca_key, hashes.SHA256()))
    der = cert.public_bytes(serialization.Encoding.DER)
    (d / "ek.der").write_bytes(der)
    tpm2(tpm, "nvdefine", EK_CERT_NV, "-C", "o", "-s", len(der), "-a",
         "ownerread|ownerwrite|authread|no_da")
    tpm2(tpm, "nvwrite", EK_CERT_NV, "-C", "o", "-i", d / "ek.der")
    (d / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    _, other = make_ca("some other EK CA")
    (d / "other.pem").write_bytes(
        other.public_bytes(serialization.Encoding.PEM))
    yield tpm, d
    tpm.stop()


def keys_of(server, sub):
    return [k for k in json.loads(server.admin("keys", "list",
                                               "--json").stdout)
            if k["subject"] == sub]


def sign_ok(tok, label):
    digest = os.urandom(32)
    sig = tok.run("sign", "--key", label, "--digest", digest.hex(),
                  "--format", "raw").stdout.strip()
    verify_raw(tok.pubkey_pem(label), sig, digest)


def test_attested_keygen(make_server, ek_tpm, tpm_token):
    tpm, d = ek_tpm
    server = make_server(attestation_roots=d / "ca.pem")
    tok = tpm_token(server, "alice", tpm)
    out = tok.run("keygen", "--curve", "p256", "--label", "k",
                  "--attest").stdout
    assert "attested = yes" in out, out
    kid = next(line.split(" = ")[1] for line in out.splitlines()
               if line.startswith("key_id"))
    # keys list, text and JSON
    (k,) = keys_of(server, "alice")
    assert k["attested"] is True
    assert k["attestation"]["ek_issuer"] == "CN=halfkey test EK CA"
    assert len(k["attestation"]["ek_cert_sha256"]) == 64
    assert "attested=CN=halfkey test EK CA" in server.admin(
        "keys", "list").stdout
    # /pubkey
    st, body = server.request("GET", f"/pubkey?key_id={kid}",
                              token=server.token("alice"))
    assert st == 200 and body["attested"] is True, body
    assert body["attestation"]["ek_issuer"] == "CN=halfkey test EK CA"
    # the audit log: the attestation of the session that made the key
    rec = server.wait_audit(lambda r: r["event"] == "attest")
    assert rec["outcome"] == "ok" and rec["key_id"] == kid, rec
    # the key works
    sign_ok(tok, "k")
    # The token setting attests every keygen (what PKCS#11 and the
    # provider use too); a key made without it is not attested.
    conf = tok.conf_path()
    conf.write_text(conf.read_text().replace("attest = 0", "attest = 1"))
    assert "attested = yes" in tok.run("keygen", "--curve", "secp256k1",
                                       "--label", "k2").stdout
    assert all(k["attested"] for k in keys_of(server, "alice"))
    plain = make_server("plain")
    ftok = tpm_token(plain, "bob", tpm, name="bob2")
    ftok.keygen("p256", "k")
    (k,) = keys_of(plain, "bob")
    assert k["attested"] is False and "attestation" not in k
    assert "attested=no" in plain.admin("keys", "list").stdout


def test_untrusted_ca_refused(make_server, ek_tpm, tpm_token):
    tpm, d = ek_tpm
    server = make_server(attestation_roots=d / "other.pem")
    tok = tpm_token(server, "carol", tpm)
    p = tok.run("keygen", "--curve", "p256", "--label", "k", "--attest",
                check=False)
    assert p.returncode != 0
    assert "does not chain to attestation_roots" in p.stderr, p.stderr
    assert keys_of(server, "carol") == []
    assert tok.list() == {}
    rec = server.wait_audit(lambda r: r["event"] == "attest")
    assert rec["outcome"] == "refused"


def test_file_token_cannot_attest(make_server, ek_tpm, make_token):
    _, d = ek_tpm
    server = make_server(attestation_roots=d / "ca.pem")
    tok = make_token(server, "dave")
    p = tok.run("keygen", "--curve", "p256", "--label", "k", "--attest",
                check=False)
    assert p.returncode != 0
    assert "not TPM-backed" in p.stderr, p.stderr
    assert keys_of(server, "dave") == []


def test_require_attestation(make_server, ek_tpm, make_token, tpm_token):
    tpm, d = ek_tpm
    server = make_server(attestation_roots=d / "ca.pem",
                         require_attestation="erin, frank")
    tok = make_token(server, "erin")
    p = tok.run("keygen", "--curve", "p256", "--label", "k", check=False)
    assert p.returncode != 0
    assert "need a device attestation" in p.stderr, p.stderr
    assert keys_of(server, "erin") == []
    ttok = tpm_token(server, "frank", tpm)
    p = ttok.run("keygen", "--curve", "p256", "--label", "k", check=False)
    assert p.returncode != 0 and "device attestation" in p.stderr
    ttok.run("keygen", "--curve", "p256", "--label", "k", "--attest")
    assert [k["attested"] for k in keys_of(server, "frank")] == [True]
    # a subject not listed keeps today's behaviour
    make_token(server, "gina").keygen("p256", "k")
    assert len(keys_of(server, "gina")) == 1


def test_require_attestation_in_the_policy_file(make_server, ek_tpm,
                                                make_token, tpm_token,
                                                tmp_path):
    """The same rule from the policy file's subject section (rules.h)."""
    tpm, d = ek_tpm
    pol = tmp_path / "policy.conf"
    pol.write_text("[subject hana]\nrequire_attestation = yes\n")
    server = make_server(attestation_roots=d / "ca.pem", policy_file=pol)
    p = make_token(server, "hana").run("keygen", "--curve", "p256",
                                       "--label", "k", check=False)
    assert p.returncode != 0 and "device attestation" in p.stderr, p.stderr
    assert keys_of(server, "hana") == []
    tpm_token(server, "hana", tpm, name="hana-tpm").run(
        "keygen", "--curve", "p256", "--label", "k", "--attest")
    assert [k["attested"] for k in keys_of(server, "hana")] == [True]
    make_token(server, "ivan").keygen("p256", "k")


# --- forged answers, with tpm2-tools ----------------------------------------


class ManualAttester:
    """The client's half of the protocol done by hand: EK and an AK (a
    child of the EK, as tpm2_createak makes it), then per session the
    credential activated and a quote over chosen qualifying data."""

    def __init__(self, tpm, d):
        self.tpm, self.d = tpm, d
        tpm2(tpm, "createek", "-c", d / "m-ek.ctx", "-G", "rsa", "-u",
             d / "m-ek.pub")
        tpm2(tpm, "createak", "-C", d / "m-ek.ctx", "-c", d / "m-ak.ctx",
             "-G", "ecc", "-g", "sha256", "-s", "ecdsa", "-u",
             d / "m-ak.pub", "-n", d / "m-ak.name")
        b64 = lambda p: base64.b64encode(p.read_bytes()).decode()  # noqa
        self.identity = {"ek_cert": b64(d / "ek.der"),
                         "ek_pub": b64(d / "m-ek.pub"),
                         "ak_pub": b64(d / "m-ak.pub")}

    def open(self, server, jwt):
        st, body = server.request("POST", "/keygen",
                                  {"curve": "p256", "attest": self.identity},
                                  token=jwt)
        assert st == 200, body
        return body

    def answer(self, session, qual):
        """(credential, quote, signature), base64, for a challenge."""
        d, ch = self.d, session["attest"]
        blob = base64.b64decode(ch["credential_blob"])
        sec = base64.b64decode(ch["encrypted_secret"])
        # tpm2-tools' credential file: magic, version, the two TPM2Bs
        (d / "cred.in").write_bytes(struct.pack(">II", 0xBADCC0DE, 1) +
                                    blob + sec)
        tpm2(self.tpm, "startauthsession", "--policy-session", "-S",
             d / "s.ctx")
        tpm2(self.tpm, "policysecret", "-S", d / "s.ctx", "-c", "e")
        tpm2(self.tpm, "activatecredential", "-c", d / "m-ak.ctx", "-C",
             d / "m-ek.ctx", "-i", d / "cred.in", "-o", d / "cred.out",
             "-P", f"session:{d / 's.ctx'}")
        tpm2(self.tpm, "flushcontext", d / "s.ctx")
        tpm2(self.tpm, "quote", "-c", d / "m-ak.ctx", "-l", "sha256:0",
             "-q", qual.hex(), "-m", d / "q.msg", "-s", d / "q.sig")
        return tuple(base64.b64encode((d / n).read_bytes()).decode()
                     for n in ("cred.out", "q.msg", "q.sig"))


def qualifying(session):
    sid = bytes.fromhex(session["session_id"][5:])
    kid = bytes.fromhex(session["key_id"])
    import hashlib
    return hashlib.sha256(b"halfkey/attest/1" + sid + kid).digest()


def post_answer(server, jwt, session, ans):
    cred, quote, sig = ans
    return server.request("POST", "/attest",
                          {"session_id": session["session_id"],
                           "credential": cred, "quote": quote,
                           "signature": sig}, token=jwt)


def test_forged_answers_refused(make_server, ek_tpm):
    tpm, d = ek_tpm
    server = make_server(attestation_roots=d / "ca.pem")
    jwt = server.token("henry")
    m = ManualAttester(tpm, d)
    # An honest answer by hand is accepted (the protocol is what the
    # tools speak); a second answer to the same challenge is not.
    a = m.open(server, jwt)
    good = m.answer(a, qualifying(a))
    st, body = post_answer(server, jwt, a, good)
    assert st == 200 and body["attested"] is True, body
    st, body = post_answer(server, jwt, a, good)
    assert st == 409, body
    # A replayed quote: session A's answer for session B (B's credential
    # is right, the quote is A's).
    b = m.open(server, jwt)
    cred_b, _, _ = m.answer(b, qualifying(b))
    st, body = post_answer(server, jwt, b, (cred_b, good[1], good[2]))
    assert st == 403 and body["error"] == "attestation_refused", body
    assert "not over this keygen session" in body["message"]
    # A quote over another session id.
    c = m.open(server, jwt)
    other = dict(c, session_id="sess_" + os.urandom(16).hex())
    st, body = post_answer(server, jwt, c, m.answer(c, qualifying(other)))
    assert st == 403 and "not over this keygen session" in body["message"]
    # A wrong credential (another session's): the AK is not proven to be
    # on the TPM of that EK.
    e = m.open(server, jwt)
    ans_e = m.answer(e, qualifying(e))
    st, body = post_answer(server, jwt, e, (cred_b,) + ans_e[1:])
    assert st == 403 and "credential" in body["message"], body
    # Nothing was stored: no key for the subject, and each refusal is
    # in the audit log.
    assert keys_of(server, "henry") == []
    recs = [r for r in server.audit() if r["event"] == "attest"]
    assert [r["outcome"] for r in recs] == ["ok", "refused", "refused",
                                            "refused"], recs
