"""examples/wallet/wallet.py against a real halfkeyd: a secp256k1 key made
through the PKCS#11 module signs a Bitcoin (BIP143 P2WPKH) sighash and an
Ethereum (EIP-1559) transaction hash. The example's encodings are checked
against published vectors (BIP143, BIP173, EIP-155, RLP), and its output
independently: the Bitcoin signature with the `cryptography` package and
with libsecp256k1 (coincurve), the Ethereum address recovered from
(r, s, v) and compared with the key `halfkey pubkey` prints."""
import subprocess
import sys

import coincurve
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils

from conftest import ROOT

sys.path.insert(0, str(ROOT / "examples" / "wallet"))
import wallet  # noqa: E402

N = wallet.N


# --- the encodings, against published vectors ---------------------------------

def test_bip143_native_p2wpkh_vector():
    # BIP143, "Native P2WPKH": the second input's signature hash
    tx = bytes.fromhex(
        "0100000002fff7f7881a8099afa6940d42d1e7f6362bec38171ea3edf433541db4"
        "e4ad969f0000000000eeffffffef51e1b804cc89d182d279655c3aa89e815b1b309"
        "fe287d9b2b55d57b90ec68a0100000000ffffffff02202cb206000000001976a914"
        "8280b37df378db99f66f85c95a783a76ac7a6d5988ac9093510d000000001976a914"
        "3bde42dbee7e4dbe6a21b2d50ce2f0167faa815988ac11000000")
    inputs = [(tx[5:37], 0, 0xFFFFFFEE), (tx[46:78], 1, 0xFFFFFFFF)]
    outputs = [(112340000, bytes.fromhex(
                   "76a9148280b37df378db99f66f85c95a783a76ac7a6d5988ac")),
               (223450000, bytes.fromhex(
                   "76a9143bde42dbee7e4dbe6a21b2d50ce2f0167faa815988ac"))]
    pkh = bytes.fromhex("1d0f172a0ecb48aee1be1f2687d2963ae33f71a1")
    digest = wallet.bip143_sighash(1, inputs, outputs, 0x11, 1,
                                   wallet.p2wpkh_script_code(pkh), 600000000)
    assert digest.hex() == ("c37af31116d1b27caf68aae9e3ac82f1"
                            "477929014d5b917657d0eb49478cb670")


def test_bech32_and_hash160_vector():
    # BIP173: the generator's compressed key as a P2WPKH address
    pub = bytes.fromhex("0279BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28"
                        "D959F2815B16F81798")
    assert wallet.bech32_address("bc", 0, wallet.hash160(pub)) == \
        "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"


def test_rlp_keccak_and_recovery_vectors():
    assert wallet.rlp(b"dog") == bytes.fromhex("83646f67")
    assert wallet.rlp([b"cat", b"dog"]) == bytes.fromhex("c88363617483646f67")
    assert wallet.rlp(0) == b"\x80" and wallet.rlp(b"") == b"\x80"
    assert wallet.rlp(1024) == bytes.fromhex("820400")
    assert wallet.rlp([]) == b"\xc0"
    assert wallet.rlp(b"x" * 56)[:2] == bytes.fromhex("b838")
    # EIP-155's example transaction: signing data, hash, signature, sender
    fields = [9, 20 * 10**9, 21000, bytes.fromhex("35" * 20), 10**18, b"",
              1, 0, 0]
    data = wallet.rlp(fields)
    assert data.hex() == (
        "ec098504a817c800825208943535353535353535353535353535353535353535"
        "880de0b6b3a764000080018080")
    digest = wallet.keccak256(data)
    assert digest.hex() == ("daf5a779ae972f972197303d7b574746"
                            "c7ef83eadac0f2791ad23db92e4c8e53")
    priv = coincurve.PrivateKey(bytes.fromhex("46" * 32))
    unc = priv.public_key.format(compressed=False)
    r = 18515461264373351373200002665853028612451056578545711640558177340181847433846
    s = 46948507304638947509940763649030358759909902576025900602547168820602576006531
    assert wallet.recover_id(r, s, digest, unc) == 37 - 35 - 2 * 1
    assert wallet.eth_address(unc) == \
        "0x9d8A62f656a8d1615C1294fd71e9CFb3E4855A4F"


def test_low_s_and_der():
    hi = (N - 5).to_bytes(32, "big")
    assert wallet.low_s(b"\x01" * 32 + hi)[1:] == (5, False)
    assert wallet.low_s(b"\x01" * 32 + (5).to_bytes(32, "big"))[1:] == \
        (5, True)
    der = wallet.der_signature(2**255, 1)
    assert utils.decode_dss_signature(der) == (2**255, 1)


# --- the example against halfkeyd ---------------------------------------------

@pytest.fixture(scope="session")
def module_path(build_dir):
    path = build_dir / "pkcs11" / "libhalfkey-pkcs11.so"
    if not path.is_file():
        pytest.fail(f"{path} is not built: ninja -C {build_dir}")
    return str(path)


def run_wallet(tok, module_path, *args):
    env = dict(tok.env, HALFKEY_PKCS11_TOKENS=str(tok.dir))
    p = subprocess.run([sys.executable, str(ROOT / "examples" / "wallet" /
                                            "wallet.py"),
                        "--module", module_path, *args],
                       capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr + tok.server.log_text()
    return dict(line.split(" = ", 1) for line in p.stdout.splitlines())


def test_wallet_signs_bitcoin_and_ethereum(server, make_token, module_path):
    tok = make_token(server, "alice")
    out = run_wallet(tok, module_path, "--key", "wallet", "--create")
    # the key the CLI reads from the token, independently of PKCS#11
    pem = tok.pubkey_pem("wallet")
    key = serialization.load_pem_public_key(pem)
    assert isinstance(key.curve, ec.SECP256K1)
    unc = key.public_bytes(serialization.Encoding.X962,
                           serialization.PublicFormat.UncompressedPoint)
    assert out["pubkey"] == unc.hex()
    compressed = key.public_bytes(serialization.Encoding.X962,
                                  serialization.PublicFormat.CompressedPoint)

    # Bitcoin: DER + SIGHASH_ALL, low-S, verified by two implementations
    sig = bytes.fromhex(out["btc_signature"])
    assert sig[-1] == 1
    r, s = utils.decode_dss_signature(sig[:-1])
    assert s <= N // 2
    assert out["btc_low_s_from_module"] == "True"  # the module's own rule
    digest = bytes.fromhex(out["btc_sighash"])
    key.verify(sig[:-1], digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    assert coincurve.PublicKey(compressed).verify(sig[:-1], digest,
                                                  hasher=None)
    assert out["btc_verified"] == "True"
    assert out["btc_address"] == wallet.bech32_address(
        "bc", 0, wallet.hash160(compressed))
    tx = bytes.fromhex(out["btc_tx"])
    assert tx[4:6] == b"\x00\x01"  # segwit marker and flag
    assert tx.endswith(b"\x02" + bytes([len(sig)]) + sig + b"\x21" +
                       compressed + b"\0\0\0\0")  # witness, locktime

    # Ethereum: the recovered address is the token key's address
    digest = bytes.fromhex(out["eth_hash"])
    v, r, s = int(out["eth_v"]), int(out["eth_r"], 16), int(out["eth_s"], 16)
    assert v in (0, 1) and s <= N // 2
    rec = coincurve.PublicKey.from_signature_and_message(
        r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([v]), digest,
        hasher=None)
    assert rec.format(compressed=False) == unc
    addr = "0x" + wallet.keccak256(unc[1:])[-20:].hex()
    assert out["eth_address"].lower() == addr
    assert out["eth_address"] == wallet.eth_address(unc)
    signed = bytes.fromhex(out["eth_tx"][2:])
    assert signed[0] == 2
    # the signed transaction ends with rlp(v), rlp(r), rlp(s)
    assert signed.endswith(wallet.rlp(v) + wallet.rlp(r) + wallet.rlp(s))
    assert wallet.keccak256(b"\x02" + wallet.rlp(
        [1, 0, 1_000_000_000, 30_000_000_000, 21_000,
         bytes.fromhex("5a0b54d5dc17e0aadc383d2db43b0a0d3e029c4c"), 10**16,
         b"", []])) == digest

    # the key exists now: a second run signs with it (no --create)
    again = run_wallet(tok, module_path, "--key", "wallet")
    assert again["eth_address"] == out["eth_address"]
    assert again["btc_address"] == out["btc_address"]


def test_wallet_refuses_a_p256_key(server, make_token, module_path):
    tok = make_token(server, "bob")
    tok.keygen("p256", "web")
    env = dict(tok.env, HALFKEY_PKCS11_TOKENS=str(tok.dir))
    p = subprocess.run([sys.executable, str(ROOT / "examples" / "wallet" /
                                            "wallet.py"),
                        "--module", module_path, "--key", "web"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode != 0 and "not a secp256k1 key" in p.stderr
