"""The client's prime pool end to end (issue 20 item 5): `halfkey pool
fill` seals Paillier primes in the token, a keygen and a refresh against a
real halfkeyd each take one entry (its file gone afterwards), an empty
pool falls back to generating, and every signature verifies with the
Python `cryptography` package against the public key `halfkey pubkey`
prints."""
import hashlib
import os
import re
import stat
import subprocess

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils


def fields(out):
    return dict(line.split(" = ", 1) for line in out.splitlines()
                if " = " in line)


def entries(tok):
    d = tok.dir / "pool"
    if not d.exists():
        return set()
    return {p.name for p in d.iterdir() if p.name.endswith(".key")}


def sign_verify(tok, label):
    pem = tok.pubkey_pem(label)
    key = serialization.load_pem_public_key(pem)
    assert isinstance(key, ec.EllipticCurvePublicKey)
    digest = hashlib.sha256(os.urandom(64)).digest()
    sig = tok.run("sign", "--key", label, "--digest", digest.hex(),
                  "--format", "raw").stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{128}", sig), sig
    raw = bytes.fromhex(sig)
    r, s = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
    key.verify(utils.encode_dss_signature(r, s), digest,
               ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    return pem


def test_pool_fill_keygen_refresh(server, make_token):
    tok = make_token(server, "pooler")
    assert fields(tok.run("pool", "status").stdout) == {
        "pool_bits": "2048", "pool_entries": "0", "pool_max": "16"}

    out = fields(tok.run("pool", "fill", "--count", "2").stdout)
    assert out == {"pool_bits": "2048", "pool_entries": "2",
                   "pool_added": "2"}
    names = entries(tok)
    assert len(names) == 2
    assert stat.S_IMODE((tok.dir / "pool").stat().st_mode) == 0o700
    for n in names:
        assert re.fullmatch(r"2048-[0-9a-f]{32}\.key", n), n
        assert stat.S_IMODE((tok.dir / "pool" / n).stat().st_mode) == 0o600
    # filling again to the same count makes nothing
    assert fields(tok.run("pool", "fill", "--count", "2").stdout)[
        "pool_added"] == "0"

    # a keygen takes one entry
    tok.keygen("secp256k1", "k")
    left = entries(tok)
    assert len(left) == 1 and left < names
    pem = sign_verify(tok, "k")

    # a refresh takes the other; same public key, signatures verify
    assert tok.run("refresh", "--key", "k").stdout == "refreshed = k\n"
    assert entries(tok) == set()
    assert sign_verify(tok, "k") == pem

    # empty pool: keygen and refresh generate the key, as before
    tok.keygen("p256", "k2")
    sign_verify(tok, "k2")
    assert tok.run("refresh", "--key", "k2").stdout == "refreshed = k2\n"
    sign_verify(tok, "k2")
    assert tok.list()["k"][2] == 2 and tok.list()["k2"][2] == 2


def test_pool_needs_the_pin_and_valid_options(server, make_token):
    tok = make_token(server, "pooler2")
    env = dict(tok.env)
    env.pop("HALFKEY_PIN")
    p = subprocess.run(tok.cmd("pool", "fill"), capture_output=True,
                       text=True, env=env, timeout=60,
                       stdin=subprocess.DEVNULL)
    assert p.returncode == 1 and entries(tok) == set(), p.stderr
    for args, rc in ((("pool",), 2), (("pool", "drain"), 2),
                     (("pool", "status", "--count", "1"), 2),
                     (("pool", "fill", "--count", "17"), 1),
                     (("pool", "fill", "--count", "x"), 1)):
        p = tok.run(*args, check=False)
        assert p.returncode == rc, (args, p.stderr)
    p = tok.run("pool", "--help")
    assert p.returncode == 0 and "pool fill" in p.stdout
    assert entries(tok) == set()
