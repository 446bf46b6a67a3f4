"""txparse/ against independent Python implementations, through the
txinfo CLI (build/txparse/txinfo): PSBTs with several P2WPKH inputs built
here, their BIP143 sighashes (examples/wallet/wallet.py's bip143_sighash),
addresses, fee, non-witness UTXO checks, signatures made with coincurve
written as partial signatures; EIP-1559 transactions (random fields,
access lists, contract creation) whose digest is pycryptodome's
Keccak-256, whose signed form recovers (coincurve) to the key's address;
malformed and non-canonical inputs refused with a reason."""
import base64
import json
import random
import subprocess
import sys

import coincurve
import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "examples" / "wallet"))
import wallet  # noqa: E402


@pytest.fixture(scope="module")
def txinfo(build_dir):
    path = build_dir / "txparse" / "txinfo"
    assert path.exists(), "build txparse/txinfo first"

    def run(args, stdin="", ok=True):
        p = subprocess.run([str(path)] + args, input=stdin,
                           capture_output=True, text=True, timeout=30)
        if ok:
            assert p.returncode == 0, p.stderr
        return p
    return run


# --- Bitcoin ---------------------------------------------------------------

def cs(n):
    return wallet.compact_size(n)


def kv(key, val):
    return cs(len(key)) + key + cs(len(val)) + val


def tx_bytes(version, inputs, outputs, locktime):
    return (version.to_bytes(4, "little") + cs(len(inputs))
            + b"".join(t + v.to_bytes(4, "little") + b"\0"
                       + s.to_bytes(4, "little") for t, v, s in inputs)
            + cs(len(outputs))
            + b"".join(a.to_bytes(8, "little") + cs(len(spk)) + spk
                       for a, spk in outputs)
            + locktime.to_bytes(4, "little"))


def p2wpkh(pub):
    return b"\x00\x14" + wallet.hash160(pub)


def psbt(utx, in_maps, n_out):
    return (b"psbt\xff" + kv(b"\0", utx) + b"\0"
            + b"".join(b"".join(kv(k, v) for k, v in m) + b"\0"
                       for m in in_maps)
            + b"\0" * n_out)


def witness_utxo(amount, spk):
    return (b"\x01", amount.to_bytes(8, "little") + cs(len(spk)) + spk)


def b64(b):
    return base64.b64encode(b).decode()


def make(rng, n_in=3):
    keys = [coincurve.PrivateKey(rng.randbytes(32)) for _ in range(n_in)]
    pubs = [k.public_key.format(True) for k in keys]
    ins = [(rng.randbytes(32), rng.randrange(4), rng.choice(
        [0xffffffff, 0xfffffffd, 7])) for _ in range(n_in)]
    amounts = [rng.randrange(10**4, 10**9) for _ in range(n_in)]
    outs = [(rng.randrange(1000, 10**4), p2wpkh(b"\x02" + rng.randbytes(32))),
            (5000, bytes.fromhex("76a914") + rng.randbytes(20)
             + bytes.fromhex("88ac")),
            (6000, b"\xa9\x14" + rng.randbytes(20) + b"\x87"),
            (7000, b"\x51\x20" + rng.randbytes(32))]
    utx = tx_bytes(2, ins, outs, 800000)
    maps = [[witness_utxo(a, p2wpkh(p)),
             (b"\x06" + p, b"\x01\x02\x03\x04" + b"\x00\x00\x00\x80")]
            for a, p in zip(amounts, pubs)]
    return keys, pubs, ins, amounts, outs, utx, maps


def test_psbt_sighashes_fee_addresses(txinfo):
    rng = random.Random(19)
    keys, pubs, ins, amounts, outs, utx, maps = make(rng)
    j = json.loads(txinfo(["psbt", "regtest"], b64(psbt(utx, maps, 4))).stdout)
    assert j["signable"] and j["fee"] == sum(amounts) - sum(a for a, _ in outs)
    for i, inp in enumerate(j["inputs"]):
        pkh = wallet.hash160(pubs[i])
        want = wallet.bip143_sighash(2, ins, outs, 800000, i,
                                     wallet.p2wpkh_script_code(pkh),
                                     amounts[i])
        assert inp["sighash"] == want.hex()
        assert inp["pubkey"] == pubs[i].hex() and inp["amount"] == amounts[i]
    assert j["outputs"][0]["address"] == wallet.bech32_address(
        "bcrt", 0, outs[0][1][2:])
    assert j["outputs"][1]["address"].startswith(("m", "n"))
    assert j["outputs"][2]["address"].startswith("2")
    assert j["outputs"][3]["address"].startswith("bcrt1p")
    main = json.loads(txinfo(["psbt", "mainnet"],
                             b64(psbt(utx, maps, 4))).stdout)
    assert main["outputs"][0]["address"] == wallet.bech32_address(
        "bc", 0, outs[0][1][2:])


def test_psbt_partial_signatures(txinfo):
    rng = random.Random(20)
    keys, pubs, ins, amounts, outs, utx, maps = make(rng, 2)
    cur = b64(psbt(utx, maps, 4))
    for i in range(2):
        sighash = bytes.fromhex(json.loads(txinfo(["psbt", "mainnet"], cur)
                                           .stdout)["inputs"][i]["sighash"])
        der = keys[i].sign(sighash, hasher=None)
        cur = txinfo(["psbt-sign", "mainnet", str(i), pubs[i].hex(),
                      der.hex()], cur).stdout.strip()
        raw = base64.b64decode(cur)
        assert kv(b"\x02" + pubs[i], der + b"\x01") in raw
        # verify as Bitcoin does: low-S DER over the sighash
        assert coincurve.PublicKey(pubs[i]).verify(der, sighash, hasher=None)
    j = json.loads(txinfo(["psbt", "mainnet"], cur).stdout)
    assert [x["partial_sigs"] for x in j["inputs"]] == [1, 1]
    # another key's signature, or a signature for input 0 on input 1
    der = keys[0].sign(b"\x01" * 32, hasher=None)
    p = txinfo(["psbt-sign", "mainnet", "1", pubs[1].hex(), der.hex()],
               b64(psbt(utx, maps, 4)), ok=False)
    assert p.returncode == 1 and "invalid argument" in p.stderr


def test_psbt_non_witness_utxo(txinfo):
    rng = random.Random(21)
    pub = coincurve.PrivateKey(rng.randbytes(32)).public_key.format(True)
    prev = tx_bytes(2, [(rng.randbytes(32), 0, 0xffffffff)],
                    [(1234, b"\x6a"), (50000, p2wpkh(pub))], 0)
    txid = wallet.sha256d(prev)
    outs = [(40000, p2wpkh(b"\x03" + bytes(32)))]
    utx = tx_bytes(2, [(txid, 1, 0xffffffff)], outs, 0)
    good = [witness_utxo(50000, p2wpkh(pub)), (b"\x00", prev)]
    j = json.loads(txinfo(["psbt", "mainnet"],
                          b64(psbt(utx, [good], 1))).stdout)
    assert j["fee"] == 10000 and j["signable"]
    # the segwit fee attack: witness UTXO amount differs from the real one
    bad = [witness_utxo(60000, p2wpkh(pub)), (b"\x00", prev)]
    p = txinfo(["psbt", "mainnet"], b64(psbt(utx, [bad], 1)), ok=False)
    assert p.returncode == 1 and "differs" in p.stderr
    # a previous transaction that is not the one spent
    other = prev[:-1] + b"\x01"
    p = txinfo(["psbt", "mainnet"],
               b64(psbt(utx, [[good[0], (b"\x00", other)]], 1)), ok=False)
    assert p.returncode == 1 and "not the transaction spent" in p.stderr
    # no amount at all: parsed, but not signable and no fee
    j = json.loads(txinfo(["psbt", "mainnet"],
                          b64(psbt(utx, [[]], 1))).stdout)
    assert not j["signable"] and "fee" not in j


@pytest.mark.parametrize("mutate,why", [
    (lambda m: [m[0], m[0]], "duplicate key"),
    (lambda m: [(b"\x03", b"\x01\x00\x00")], "type 0x03"),
    (lambda m: [m[0], (b"\x03", b"\x81\x00\x00\x00")], None),
    (lambda m: [(b"\x0e", bytes(32))], "PSBT v2 field"),
])
def test_psbt_refusals(txinfo, mutate, why):
    rng = random.Random(22)
    keys, pubs, ins, amounts, outs, utx, maps = make(rng, 1)
    maps = [mutate(maps[0])]
    p = txinfo(["psbt", "mainnet"], b64(psbt(utx, maps, 4)), ok=why is None)
    if why is None:  # SIGHASH_ALL|ANYONECANPAY: parsed, not signable
        assert not json.loads(p.stdout)["signable"]
    else:
        assert p.returncode == 1 and why in p.stderr


# --- Ethereum --------------------------------------------------------------

def test_eip1559_random(txinfo):
    rng = random.Random(1559)
    for _ in range(25):
        priv = coincurve.PrivateKey(rng.randbytes(32))
        to = b"" if rng.random() < 0.2 else rng.randbytes(20)
        al = [[rng.randbytes(20), [rng.randbytes(32)
                                   for _ in range(rng.randrange(3))]]
              for _ in range(rng.randrange(3))]
        fee = rng.randrange(1, 2**64)
        fields = [rng.choice([1, 5, 137, 11155111, 2**40]),
                  rng.randrange(2**20), rng.randrange(fee + 1), fee,
                  rng.randrange(21000, 2**24), to, rng.randrange(2**200),
                  rng.randbytes(rng.choice([0, 1, 55, 56, 300])), al]
        raw = b"\x02" + wallet.rlp(fields)
        j = json.loads(txinfo(["eth"], raw.hex()).stdout)
        digest = wallet.keccak256(raw)
        assert j["digest"] == digest.hex()
        assert j["chain_id"] == fields[0] and j["nonce"] == fields[1]
        assert j["value"] == str(fields[6])
        assert j["max_fee_total"] == str(fields[3] * fields[4])
        assert j["access_list_len"] == len(al)
        assert (j["to"] is None if not to
                else j["to"].lower() == "0x" + to.hex())
        sig = priv.sign_recoverable(digest, hasher=None)
        r, s, y = (int.from_bytes(sig[:32], "big"),
                   int.from_bytes(sig[32:64], "big"), sig[64])
        if s > wallet.N // 2:  # EIP-2: low s, flipped parity
            s, y = wallet.N - s, y ^ 1
        signed = bytes.fromhex(txinfo(
            ["eth-signed", r.to_bytes(32, "big").hex(),
             s.to_bytes(32, "big").hex(), str(y)], raw.hex()).stdout)
        assert signed == b"\x02" + wallet.rlp(fields + [y, r, s])
        rec = coincurve.PublicKey.from_signature_and_message(
            r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([y]),
            digest, hasher=None)
        addr = txinfo(["eth-address", priv.public_key.format(False).hex()]
                      ).stdout.strip()
        assert addr == wallet.eth_address(rec.format(False))


@pytest.mark.parametrize("hexstr,why", [
    ("02c90100010280808080c0", "leading zero"),
    ("02ca810580010280808080c0", "wrapped"),
    ("02f8090180010280808080c0", "long form"),
    ("02c90180010280808080c000", "after the item"),
    ("02c90180030280808080c0", "above max_fee_per_gas"),
    ("f86b8085", "not an EIP-1559"),
    ("02c90180010280808080c", "not lowercase hex"),
])
def test_eip1559_refusals(txinfo, hexstr, why):
    p = txinfo(["eth"], hexstr, ok=False)
    assert p.returncode == 1 and why in p.stderr, p.stderr
