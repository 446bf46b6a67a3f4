"""The client core's own OpenSSL library context (issue 21, item 2): the
module's TLS connection to halfkeyd, its keystore cryptography and its
random numbers run in a private OSSL_LIB_CTX with only OpenSSL's default
provider and no configuration, untouched by the host's providers and
openssl.cnf. Tests: latchset's pkcs11-provider (loaded before or after
default) signing through libhalfkey-pkcs11.so with `openssl pkeyutl`, and a
host whose openssl.cnf breaks every fetch in the default context."""
import hashlib
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils

from conftest import PIN


def ossl_modules_dir():
    p = subprocess.run(["openssl", "version", "-m"], capture_output=True,
                       text=True, timeout=30, check=True)
    return p.stdout.split('"')[1]


PKCS11_PROVIDER = os.path.join(ossl_modules_dir(), "pkcs11.so")


@pytest.fixture(scope="session")
def module_path(build_dir):
    path = build_dir / "pkcs11" / "libhalfkey-pkcs11.so"
    if not path.is_file():
        pytest.fail(f"{path} is not built: ninja -C {build_dir}")
    return str(path)


@pytest.fixture
def tok(server, make_token):
    t = make_token(server, "alice")
    t.keygen("p256", "p")
    t.keygen("secp256k1", "k")
    return t


def host_env(tok, **extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENSSL_CONF", "OPENSSL_MODULES", "HALFKEY_HOME",
                        "HALFKEY_PIN")}
    env["HALFKEY_PKCS11_TOKENS"] = str(tok.dir)
    env.update(extra)
    return env


def verify(tok, label, sig, digest):
    key = serialization.load_pem_public_key(tok.pubkey_pem(label))
    key.verify(sig, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))


@pytest.mark.skipif(not os.path.isfile(PKCS11_PROVIDER),
                    reason="latchset's pkcs11-provider is not installed "
                           "(Debian: apt-get install -t bookworm-backports "
                           "pkcs11-provider; scripts/setup does it)")
@pytest.mark.parametrize("order", [["pkcs11", "default"],
                                   ["default", "pkcs11"]])
def test_pkcs11_provider_signs_through_module(tok, module_path, tmp_path,
                                              order):
    env = host_env(tok, PKCS11_PROVIDER_MODULE=module_path)
    digest = hashlib.sha256(b"pkcs11-provider").digest()
    (tmp_path / "dig").write_bytes(digest)
    provs = [a for name in order for a in ("-provider", name)]
    for label in ("p", "k"):
        sig = tmp_path / f"{label}.sig"
        p = subprocess.run(
            ["openssl", "pkeyutl", "-sign", *provs, "-inkey",
             f"pkcs11:object={label};type=private?pin-value={PIN}",
             "-in", tmp_path / "dig", "-out", sig],
            capture_output=True, text=True, env=env, timeout=120)
        assert p.returncode == 0, p.stderr + tok.server.log_text()[-2000:]
        verify(tok, label, sig.read_bytes(), digest)


SIGN_SCRIPT = textwrap.dedent("""
    import sys
    import pkcs11
    from pkcs11 import KeyType, Mechanism, ObjectClass
    lib = pkcs11.lib(sys.argv[1])
    (slot,) = lib.get_slots(token_present=True)
    with slot.get_token().open(user_pin=sys.argv[2]) as s:
        key = s.get_key(ObjectClass.PRIVATE_KEY, KeyType.EC, label="p")
        sig = key.sign(bytes.fromhex(sys.argv[3]), mechanism=Mechanism.ECDSA)
    sys.stdout.write(sig.hex())
""")


def test_module_ignores_hostile_openssl_cnf(tok, module_path, tmp_path):
    """An openssl.cnf that makes every fetch in OpenSSL's default context
    fail (a property no provider has): the module still opens the token,
    connects to halfkeyd over TLS and signs."""
    cnf = tmp_path / "hostile.cnf"
    cnf.write_text(textwrap.dedent("""
        openssl_conf = openssl_init
        [openssl_init]
        providers = provider_sect
        alg_section = algorithm_sect
        ssl_conf = ssl_sect
        [provider_sect]
        default = default_sect
        [default_sect]
        activate = 1
        [algorithm_sect]
        default_properties = halfkey.hostile=yes
        [ssl_sect]
        system_default = system_default_sect
        [system_default_sect]
        MaxProtocol = TLSv1.2
        Groups = ffdhe2048
    """))
    env = host_env(tok, OPENSSL_CONF=str(cnf))
    # the configuration does break OpenSSL's own default context
    p = subprocess.run(["openssl", "dgst", "-sha256"], input=b"x",
                       capture_output=True, env=env, timeout=30)
    assert p.returncode != 0
    digest = hashlib.sha256(b"hostile host").digest()
    script = tmp_path / "sign.py"
    script.write_text(SIGN_SCRIPT)
    p = subprocess.run([sys.executable, script, module_path, PIN,
                        digest.hex()], capture_output=True, text=True,
                       env=env, timeout=120)
    assert p.returncode == 0, p.stderr + tok.server.log_text()[-2000:]
    sig = bytes.fromhex(p.stdout)
    r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
    verify(tok, "p", utils.encode_dss_signature(r, s), digest)
