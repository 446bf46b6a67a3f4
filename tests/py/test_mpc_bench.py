"""Black-box test of the mpc core through bench/mpc-bench: the two-party
signatures it produces verify with the Python `cryptography` package (an
implementation independent of OpenSSL's EC code paths used in C), and the
benchmark reports every figure it promises."""
import json
import subprocess

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils

CURVES = {"secp256k1": ec.SECP256K1(), "p256": ec.SECP256R1()}


def run_bench(build_dir, *args):
    out = subprocess.run(
        [str(build_dir / "bench" / "mpc-bench"), "--json-only", *args],
        check=True, capture_output=True, text=True, timeout=600).stdout
    return [json.loads(line) for line in out.splitlines() if line]


@pytest.fixture(scope="module")
def bench_lines(build_dir):
    return run_bench(build_dir, "--runs", "3", "--curve", "all")


def verify(sample, digest=None, sig=None):
    key = ec.EllipticCurvePublicKey.from_encoded_point(
        CURVES[sample["curve"]], bytes.fromhex(sample["pubkey"]))
    sig = bytes.fromhex(sig or sample["sig"])
    r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
    key.verify(utils.encode_dss_signature(r, s),
               bytes.fromhex(digest or sample["digest"]),
               ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    return r, s


@pytest.mark.parametrize("curve", sorted(CURVES))
def test_two_party_signature_verifies(bench_lines, curve):
    samples = [l for l in bench_lines
               if l.get("sample") == "signature" and l["curve"] == curve]
    assert len(samples) == 1
    _, s = verify(samples[0])
    order = CURVES[curve].key_size  # both orders are 256-bit
    assert order == 256
    # low-S: s is at most half the group order
    n = {"secp256k1": 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141,
         "p256": 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551}[curve]
    assert 0 < s <= n // 2


@pytest.mark.parametrize("curve", sorted(CURVES))
def test_wrong_digest_or_signature_rejected(bench_lines, curve):
    sample = next(l for l in bench_lines
                  if l.get("sample") == "signature" and l["curve"] == curve)
    digest = bytearray.fromhex(sample["digest"])
    digest[0] ^= 1
    with pytest.raises(InvalidSignature):
        verify(sample, digest=digest.hex())
    sig = bytearray.fromhex(sample["sig"])
    sig[40] ^= 1
    with pytest.raises(InvalidSignature):
        verify(sample, sig=sig.hex())


def test_bench_reports_every_figure(bench_lines):
    figures = [l for l in bench_lines if l.get("bench") == "mpc"]
    ops = {(l["op"], l["curve"]) for l in figures}
    for curve in CURVES:
        for op in ("keygen", "sign", "sign-noprecomp", "presign/each",
                   "sign-presigned", "refresh"):
            assert (op, curve) in ops
    for l in figures:
        assert l["critical_p50_ms"] > 0
        assert l["critical_p99_ms"] >= l["critical_p50_ms"]
        assert l["single_party_openssl_ms"] > 0
        assert all(b > 0 for b in l["msg_bytes"])
    setup = [l for l in bench_lines if l.get("bench") == "setup"]
    assert len(setup) == 1 and setup[0]["prm_verify_ms"] > 0
    # keygen and refresh in wall-clock time, without and with the pool
    wall = {(l["op"], l["curve"]): l for l in bench_lines
            if l.get("bench") == "mpc-wall"}
    for curve in CURVES:
        for op in ("keygen-wall", "keygen-pool", "refresh-wall",
                   "refresh-pool"):
            l = wall[(op, curve)]
            assert 0 < l["critical_wall_p50_ms"] <= l["critical_wall_p99_ms"]


def test_bench_rejects_bad_arguments(build_dir):
    for args in (["--runs", "0"], ["--curve", "p384"], ["--pbits", "1024"],
                 ["--bogus"]):
        proc = subprocess.run([str(build_dir / "bench" / "mpc-bench"), *args],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2
        assert "usage" in proc.stderr
