#!/usr/bin/env python3
"""Signs a Bitcoin and an Ethereum transaction with a secp256k1 halfkey key
through PKCS#11 (python-pkcs11 over libhalfkey-pkcs11.so): every signature
is a two-party run with halfkeyd, and the private key never exists in one
place.

    HALFKEY_PKCS11_TOKENS=~/tok HALFKEY_PIN=... \\
        examples/wallet/wallet.py [--module PATH] [--key wallet] [--create]

Bitcoin: a one-input, one-output transaction spending a P2WPKH output of
the key, its BIP143 signature hash (SIGHASH_ALL), the signature DER-encoded
with the sighash type byte appended, verified with libsecp256k1 (through
coincurve: its verify accepts only low-S signatures, Bitcoin's rule), and
the signed transaction with its witness.
Ethereum: an EIP-1559 (type 2) transaction, keccak-256 of its RLP encoding,
the signature made recoverable by trying both recovery ids until the
recovered key is the token's CKA_EC_POINT, and the address of that key.

No network: the transactions are built here and printed, not broadcast.
The output is `name = value` lines."""
import argparse
import hashlib
import os
import pathlib
import sys

import coincurve
import pkcs11
from Crypto.Hash import RIPEMD160, keccak
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.util.ec import encode_named_curve_parameters

# secp256k1 group order
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
SIGHASH_ALL = 1


# --- encodings -------------------------------------------------------------

def sha256d(b):
    return hashlib.sha256(hashlib.sha256(b).digest()).digest()


def hash160(b):
    # pycryptodome's RIPEMD-160: OpenSSL 3 keeps it in the legacy provider,
    # so hashlib may not have it
    return RIPEMD160.new(hashlib.sha256(b).digest()).digest()


def keccak256(b):
    # Ethereum's Keccak-256 (not the standardised SHA3-256)
    return keccak.new(digest_bits=256, data=b).digest()


def compact_size(n):
    """Bitcoin's variable-length integer."""
    if n < 0xFD:
        return bytes([n])
    if n <= 0xFFFF:
        return b"\xfd" + n.to_bytes(2, "little")
    if n <= 0xFFFFFFFF:
        return b"\xfe" + n.to_bytes(4, "little")
    return b"\xff" + n.to_bytes(8, "little")


def bech32_address(hrp, witver, prog):
    """BIP173 segwit address (version 0)."""
    charset = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"

    def polymod(values):
        gen = [0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3]
        chk = 1
        for v in values:
            top = chk >> 25
            chk = (chk & 0x1FFFFFF) << 5 ^ v
            for i in range(5):
                chk ^= gen[i] if (top >> i) & 1 else 0
        return chk

    acc, bits, data = 0, 0, [witver]
    for byte in prog:  # 8-bit groups to 5-bit groups
        acc, bits = (acc << 8) | byte, bits + 8
        while bits >= 5:
            bits -= 5
            data.append((acc >> bits) & 31)
    if bits:
        data.append((acc << (5 - bits)) & 31)
    hrpx = [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]
    pm = polymod(hrpx + data + [0] * 6) ^ 1
    data += [(pm >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(charset[d] for d in data)


def rlp(item):
    """Ethereum's RLP: bytes, non-negative ints (minimal big-endian), lists."""
    if isinstance(item, int):
        item = item.to_bytes((item.bit_length() + 7) // 8, "big")
    if isinstance(item, (bytes, bytearray)):
        if len(item) == 1 and item[0] < 0x80:
            return bytes(item)
        return _rlp_len(len(item), 0x80) + bytes(item)
    body = b"".join(rlp(x) for x in item)
    return _rlp_len(len(body), 0xC0) + body


def _rlp_len(n, base):
    if n < 56:
        return bytes([base + n])
    nb = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([base + 55 + len(nb)]) + nb


def der_signature(r, s):
    """DER ECDSA-Sig-Value (the form Bitcoin scripts carry)."""
    def integer(x):
        b = x.to_bytes(32, "big").lstrip(b"\0") or b"\0"
        if b[0] & 0x80:
            b = b"\0" + b
        return b"\x02" + bytes([len(b)]) + b
    body = integer(r) + integer(s)
    return b"\x30" + bytes([len(body)]) + body


def eth_address(uncompressed):
    """EIP-55 checksummed address of a 65-byte uncompressed point."""
    addr = keccak256(uncompressed[1:])[-20:].hex()
    h = keccak256(addr.encode()).hex()
    return "0x" + "".join(c.upper() if int(h[i], 16) >= 8 else c
                          for i, c in enumerate(addr))


# --- Bitcoin: BIP143 signature hash of a P2WPKH input ----------------------

def bip143_sighash(version, inputs, outputs, locktime, index, script_code,
                   amount, hashtype=SIGHASH_ALL):
    """inputs: [(txid (internal byte order), vout, sequence)];
    outputs: [(value, scriptPubKey)]; SIGHASH_ALL only."""
    assert hashtype == SIGHASH_ALL
    prevouts = b"".join(t + v.to_bytes(4, "little") for t, v, _ in inputs)
    seqs = b"".join(s.to_bytes(4, "little") for _, _, s in inputs)
    outs = b"".join(v.to_bytes(8, "little") + compact_size(len(spk)) + spk
                    for v, spk in outputs)
    txid, vout, seq = inputs[index]
    pre = (version.to_bytes(4, "little") + sha256d(prevouts) + sha256d(seqs)
           + txid + vout.to_bytes(4, "little")
           + compact_size(len(script_code)) + script_code
           + amount.to_bytes(8, "little") + seq.to_bytes(4, "little")
           + sha256d(outs) + locktime.to_bytes(4, "little")
           + hashtype.to_bytes(4, "little"))
    return sha256d(pre)


def p2wpkh_script_code(pkh):
    """BIP143 scriptCode of P2WPKH: OP_DUP OP_HASH160 <pkh> OP_EQUALVERIFY
    OP_CHECKSIG."""
    return b"\x76\xa9\x14" + pkh + b"\x88\xac"


def segwit_tx(version, inputs, outputs, locktime, witnesses):
    """Serialised segwit transaction (BIP144), empty scriptSigs."""
    out = version.to_bytes(4, "little") + b"\x00\x01"
    out += compact_size(len(inputs))
    for t, v, s in inputs:
        out += t + v.to_bytes(4, "little") + b"\x00" + s.to_bytes(4, "little")
    out += compact_size(len(outputs))
    for v, spk in outputs:
        out += v.to_bytes(8, "little") + compact_size(len(spk)) + spk
    for items in witnesses:
        out += compact_size(len(items))
        for it in items:
            out += compact_size(len(it)) + it
    return out + locktime.to_bytes(4, "little")


# --- signing with the token --------------------------------------------------

def low_s(sig):
    """(r, s, was_low) with s normalised to the lower half (BIP62/EIP-2)."""
    r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
    return (r, s, True) if s <= N // 2 else (r, N - s, False)


def recover_id(r, s, digest, uncompressed):
    """The recovery id (0 or 1) whose recovered key is `uncompressed`."""
    for v in (0, 1):
        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([v])
        try:
            key = coincurve.PublicKey.from_signature_and_message(
                sig, digest, hasher=None)
        except ValueError:
            continue
        if key.format(compressed=False) == uncompressed:
            return v
    raise ValueError("no recovery id gives the token's public key")


def open_key(session, label, create):
    """The private key and the uncompressed public point of `label`."""
    try:
        pub = session.get_key(ObjectClass.PUBLIC_KEY, KeyType.EC, label=label)
    except pkcs11.NoSuchKey:
        if not create:
            raise SystemExit(f"wallet: no key {label!r} (use --create)")
        params = session.create_domain_parameters(
            KeyType.EC, {Attribute.EC_PARAMS:
                         encode_named_curve_parameters("secp256k1")},
            local=True)
        pub, _ = params.generate_keypair(store=True, label=label)
    if pub[Attribute.EC_PARAMS] != encode_named_curve_parameters("secp256k1"):
        raise SystemExit(f"wallet: key {label!r} is not a secp256k1 key")
    point = pub[Attribute.EC_POINT]  # DER OCTET STRING of 04||x||y
    if point[:2] != b"\x04\x41" or len(point) != 67:
        raise SystemExit("wallet: unexpected CKA_EC_POINT encoding")
    priv = session.get_key(ObjectClass.PRIVATE_KEY, KeyType.EC, label=label)
    return priv, point[2:]


def sign_bitcoin(priv, uncompressed, out):
    pub = coincurve.PublicKey(uncompressed)
    compressed = pub.format(compressed=True)
    pkh = hash160(compressed)
    spk = b"\x00\x14" + pkh  # P2WPKH scriptPubKey
    prev_txid = hashlib.sha256(b"halfkey wallet example funding").digest()
    amount, fee = 150_000, 1_000
    inputs = [(prev_txid, 0, 0xFFFFFFFD)]
    outputs = [(amount - fee, spk)]
    digest = bip143_sighash(2, inputs, outputs, 0, 0, p2wpkh_script_code(pkh),
                            amount)
    r, s, was_low = low_s(priv.sign(digest, mechanism=Mechanism.ECDSA))
    der = der_signature(r, s)
    # libsecp256k1's verify (coincurve): DER, and only low-S passes
    verified = pub.verify(der, digest, hasher=None)
    tx = segwit_tx(2, inputs, outputs, 0,
                   [[der + bytes([SIGHASH_ALL]), compressed]])
    out.update(btc_address=bech32_address("bc", 0, pkh),
               btc_sighash=digest.hex(), btc_signature=(
                   der + bytes([SIGHASH_ALL])).hex(),
               btc_low_s_from_module=was_low, btc_verified=verified,
               btc_tx=tx.hex())


def sign_ethereum(priv, uncompressed, out):
    chain_id, nonce = 1, 0
    fields = [chain_id, nonce, 1_000_000_000, 30_000_000_000, 21_000,
              bytes.fromhex("5a0b54d5dc17e0aadc383d2db43b0a0d3e029c4c"),
              10**16, b"", []]
    digest = keccak256(b"\x02" + rlp(fields))
    r, s, was_low = low_s(priv.sign(digest, mechanism=Mechanism.ECDSA))
    v = recover_id(r, s, digest, uncompressed)
    signed = b"\x02" + rlp(fields + [v, r, s])
    out.update(eth_address=eth_address(uncompressed), eth_hash=digest.hex(),
               eth_r=hex(r), eth_s=hex(s), eth_v=v,
               eth_low_s_from_module=was_low, eth_tx="0x" + signed.hex())


def main(argv=None):
    here = pathlib.Path(__file__).resolve().parent
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--module", default=os.environ.get(
        "HALFKEY_PKCS11_MODULE",
        str(here.parents[1] / "build" / "pkcs11" / "libhalfkey-pkcs11.so")))
    ap.add_argument("--key", default="wallet", help="key label")
    ap.add_argument("--create", action="store_true",
                    help="generate the key if the token has none")
    args = ap.parse_args(argv)
    pin = os.environ.get("HALFKEY_PIN")
    if not pin:
        raise SystemExit("wallet: set HALFKEY_PIN")
    lib = pkcs11.lib(args.module)
    slots = lib.get_slots(token_present=True)
    if not slots:
        raise SystemExit("wallet: no token ($HALFKEY_PKCS11_TOKENS)")
    out = {}
    with slots[0].get_token().open(user_pin=pin, rw=True) as session:
        priv, uncompressed = open_key(session, args.key, args.create)
        out["pubkey"] = uncompressed.hex()
        sign_bitcoin(priv, uncompressed, out)
        sign_ethereum(priv, uncompressed, out)
    for k, v in out.items():
        print(f"{k} = {v}")
    return 0 if out["btc_verified"] else 1


if __name__ == "__main__":
    sys.exit(main())
