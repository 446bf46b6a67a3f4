"""Signing requests that wait for an offline client (issue 19): a requester
with its own JWT scope posts what to sign; it waits in halfkeyd's database
while no client runs; the owner's CLI lists it, recomputes the digests
itself, approves by signing exactly the server-computed digests, or
rejects. Every signature here is checked with an independent
implementation: `cryptography` (P-256 digests), coincurve against the
BIP143 sighashes examples/wallet computes (PSBT), and the Ethereum sender
recovered from the signed raw transaction (coincurve + pycryptodome's
Keccak-256)."""
import base64
import hashlib
import json
import random
import subprocess
import sys
import time

import coincurve
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils

from conftest import ROOT
from test_txparse import kv, make, p2wpkh, psbt, tx_bytes, witness_utxo

sys.path.insert(0, str(ROOT / "examples" / "wallet"))
sys.path.insert(0, str(ROOT / "examples" / "requests"))
import wallet  # noqa: E402
from requester import rlp_list as rlp_decode  # noqa: E402

@pytest.fixture
def setup(make_server, make_token):
    """A server that lets requester "shop" ask alice's keys, alice's
    token, and the requester's JWT (scope "request")."""
    srv = make_server(requesters="shop=alice other=key:" + "0" * 32)
    tok = make_token(srv, "alice")
    return srv, tok, srv.token("shop", scope="request")


def post_request(srv, jwt, **body):
    return srv.request("POST", "/requests", body, token=jwt)


def get_request(srv, jwt, rid):
    return srv.request("GET", f"/requests/{rid}", token=jwt)


def pub_point(tok, label):
    pem = tok.pubkey_pem(label)
    return serialization.load_pem_public_key(pem)


def compressed(pub):
    return pub.public_bytes(serialization.Encoding.X962,
                            serialization.PublicFormat.CompressedPoint)


def audit_request(srv, rid):
    return [r["outcome"] for r in srv.audit()
            if r["event"] == "request" and rid in r["detail"]]


def test_digest_request_waits_then_approved(setup):
    srv, tok, shop = setup
    kid = tok.keygen("p256", "pay")
    digest = hashlib.sha256(b"invoice 7").digest()
    # made while no client runs: it waits, pending
    st, req = post_request(srv, shop, key_id=kid, kind="digest",
                           payload=digest.hex(), metadata={"order": 7})
    assert st == 201, req
    rid = req["request_id"]
    assert req["state"] == "pending" and req["digests"] == [digest.hex()]
    assert req["metadata"] == {"order": 7} and req["requester"] == "shop"
    st, got = get_request(srv, shop, rid)
    assert st == 200 and got["state"] == "pending" and "result" not in got
    # the client comes online: lists (digests recomputed locally), approves
    listed = json.loads(tok.run("requests", "--json").stdout)["requests"]
    assert [r["request_id"] for r in listed] == [rid]
    assert listed[0]["digests_verified"] and listed[0]["label"] == "pay"
    human = tok.run("requests").stdout
    assert rid in human and "from shop" in human and digest.hex() in human
    out = tok.run("approve", rid).stdout
    assert f"{rid}: signed" in out
    st, done = get_request(srv, shop, rid)
    assert st == 200 and done["state"] == "signed"
    sig = bytes.fromhex(done["result"])
    assert done["signatures"] == [sig.hex()]
    der = utils.encode_dss_signature(int.from_bytes(sig[:32], "big"),
                                     int.from_bytes(sig[32:], "big"))
    pub_point(tok, "pay").verify(der, digest,
                                 ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    assert audit_request(srv, rid) == ["created", "signed"]
    assert json.loads(tok.run("requests", "--json").stdout)["requests"] == []
    metrics = srv.request("GET", "/metrics")[1]
    assert 'halfkey_requests_total{state="signed"} 1' in metrics


def psbt_for(pub, rng, other_input=True):
    """A PSBT with two P2WPKH inputs of pub (and one of another key):
    (psbt bytes, inputs, outputs, amounts, index of pub's inputs)."""
    keys, pubs, ins, amounts, outs, utx, maps = make(rng, 3)
    pubs[0] = pubs[2] = pub
    if not other_input:
        pubs[1] = pub
    maps = [[witness_utxo(a, p2wpkh(p)),
             (b"\x06" + p, b"\x01\x02\x03\x04" + b"\x00\x00\x00\x80")]
            for a, p in zip(amounts, pubs)]
    mine = [i for i, p in enumerate(pubs) if p == pub]
    return psbt(utx, maps, 4), ins, outs, amounts, mine


def partial_sigs(raw_psbt):
    """input index -> (pubkey, DER signature with the sighash byte)."""
    b = raw_psbt
    pos = 5

    def cs_read(pos):
        n = b[pos]
        if n < 0xfd:
            return n, pos + 1
        if n == 0xfd:
            return int.from_bytes(b[pos + 1:pos + 3], "little"), pos + 3
        return int.from_bytes(b[pos + 1:pos + 5], "little"), pos + 5

    def read_map(pos):
        pairs = []
        while True:
            klen, pos = cs_read(pos)
            if klen == 0:
                return pairs, pos
            key = b[pos:pos + klen]
            pos += klen
            vlen, pos = cs_read(pos)
            pairs.append((key, b[pos:pos + vlen]))
            pos += vlen

    glob, pos = read_map(pos)
    utx = dict(glob)[b"\x00"]
    n_in = utx[4]  # fewer than 0xfd inputs here
    sigs = {}
    for i in range(n_in):
        pairs, pos = read_map(pos)
        for k, v in pairs:
            if k[0] == 2:
                sigs[i] = (k[1:], v)
    return sigs


def test_btc_psbt_request_signs_the_server_computed_sighashes(setup):
    srv, tok, shop = setup
    kid = tok.keygen("secp256k1", "btc")
    pub = compressed(pub_point(tok, "btc"))
    raw, ins, outs, amounts, mine = psbt_for(pub, random.Random(7))
    st, req = post_request(srv, shop, key_id=kid, kind="btc-psbt",
                           payload=base64.b64encode(raw).decode(),
                           network="regtest")
    assert st == 201, req
    rid = req["request_id"]
    want = [wallet.bip143_sighash(2, ins, outs, 800000, i,
                                  wallet.p2wpkh_script_code(
                                      wallet.hash160(pub)), amounts[i])
            for i in mine]
    assert req["digests"] == [d.hex() for d in want]  # BIP143, inputs 0, 2
    assert req["summary"]["fee"] == sum(amounts) - sum(a for a, _ in outs)
    human = tok.run("requests").stdout
    assert "Bitcoin regtest transaction" in human and "fee:" in human
    assert "bcrt1" in human
    tok.run("approve", rid)
    st, done = get_request(srv, shop, rid)
    assert done["state"] == "signed"
    sigs = partial_sigs(base64.b64decode(done["result"]))
    assert sorted(sigs) == mine
    for i, d in zip(mine, want):
        spub, der = sigs[i]
        assert spub == pub and der[-1] == 1  # SIGHASH_ALL
        assert coincurve.PublicKey(pub).verify(der[:-1], d, hasher=None)
        r, s = utils.decode_dss_signature(der[:-1])
        assert s <= wallet.N // 2  # low S


def test_eth_request_gives_a_signed_transaction_from_the_key(setup):
    srv, tok, shop = setup
    kid = tok.keygen("secp256k1", "eth")
    pub = pub_point(tok, "eth")
    unc = pub.public_bytes(serialization.Encoding.X962,
                           serialization.PublicFormat.UncompressedPoint)
    fields = [11155111, 3, 2 * 10**9, 30 * 10**9, 21000,
              bytes.fromhex("d8da6bf26964af9d7eed9e03e53415d37aa96045"),
              10**17, b"", []]
    raw = b"\x02" + wallet.rlp(fields)
    st, req = post_request(srv, shop, key_id=kid, kind="eth-tx",
                           payload="0x" + raw.hex())
    assert st == 201, req
    assert req["digests"] == [wallet.keccak256(raw).hex()]
    assert req["summary"]["chain_id"] == 11155111
    human = tok.run("requests").stdout
    assert "chain 11155111" in human and "value: 100000000000000000 wei" in human
    tok.run("approve", req["request_id"])
    st, done = get_request(srv, shop, req["request_id"])
    assert done["state"] == "signed"
    signed = bytes.fromhex(done["result"][2:])
    assert signed[0] == 2
    items = rlp_decode(signed[1:])
    assert items[:9] == rlp_decode(raw[1:])
    y, r, s = (int.from_bytes(x, "big") for x in items[9:])
    assert s <= wallet.N // 2
    rec = coincurve.PublicKey.from_signature_and_message(
        r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([y]),
        wallet.keccak256(raw), hasher=None)
    assert wallet.eth_address(rec.format(False)) == wallet.eth_address(unc)


def test_client_digest_under_a_request_is_refused(setup):
    srv, tok, shop = setup
    kid = tok.keygen("p256", "k")
    good = hashlib.sha256(b"pay 1").digest()
    st, req = post_request(srv, shop, key_id=kid, kind="digest",
                           payload=good.hex())
    rid = req["request_id"]
    bad = hashlib.sha256(b"pay 1000").digest()
    p = tok.run("sign", "--key", "k", "--digest", bad.hex(), "--request", rid,
                check=False)
    assert p.returncode != 0 and "not this one" in p.stderr, p.stderr
    assert get_request(srv, shop, rid)[1]["state"] == "pending"
    # the same path with the server's digest works (the server records it
    # from the client's sign.5, a moment after the client has it)
    tok.run("sign", "--key", "k", "--digest", good.hex(), "--request", rid)
    deadline = time.monotonic() + 10
    while get_request(srv, shop, rid)[1]["state"] != "signed":
        assert time.monotonic() < deadline, "never signed"
        time.sleep(0.1)
    # and once signed, the request signs nothing more
    p = tok.run("sign", "--key", "k", "--digest", good.hex(), "--request",
                rid, check=False)
    assert p.returncode != 0 and "not pending" in p.stderr, p.stderr


def test_reject_and_expire(setup):
    srv, tok, shop = setup
    kid = tok.keygen("p256", "k")
    d = hashlib.sha256(b"x").hexdigest()
    rid = post_request(srv, shop, key_id=kid, kind="digest",
                       payload=d)[1]["request_id"]
    out = tok.run("reject", rid, "--reason", "not mine").stdout
    assert f"{rid}: rejected" in out
    st, got = get_request(srv, shop, rid)
    assert got["state"] == "rejected" and "not mine" in got["reason"]
    p = tok.run("approve", rid, check=False)
    assert p.returncode != 0
    assert audit_request(srv, rid) == ["created", "rejected"]
    # expiry: refused at sign time at once, swept to expired after
    rid2 = post_request(srv, shop, key_id=kid, kind="digest", payload=d,
                        expires_in=1)[1]["request_id"]
    time.sleep(2.2)
    p = tok.run("sign", "--key", "k", "--digest", d, "--request", rid2,
                check=False)
    assert p.returncode != 0 and "not pending" in p.stderr, p.stderr
    deadline = time.monotonic() + 15
    while get_request(srv, shop, rid2)[1]["state"] != "expired":
        assert time.monotonic() < deadline, "never expired"
        time.sleep(0.5)
    assert audit_request(srv, rid2) == ["created", "expired"]


def test_scopes_and_grants(setup):
    srv, tok, shop = setup
    kid = tok.keygen("p256", "k")
    d = hashlib.sha256(b"x").hexdigest()
    owner = srv.token("alice")
    # an owner's token does not make requests; a requester's does not sign
    assert post_request(srv, owner, key_id=kid, kind="digest",
                        payload=d)[0] == 403
    assert srv.request("POST", "/sign", {"key_id": kid}, token=shop)[0] == 401
    assert srv.request("GET", "/requests", token=shop)[0] == 403
    # a requester without a grant for this owner sees no key
    other = srv.token("other", scope="request")
    st, body = post_request(srv, other, key_id=kid, kind="digest", payload=d)
    assert st == 404, body
    rid = post_request(srv, shop, key_id=kid, kind="digest",
                       payload=d)[1]["request_id"]
    assert get_request(srv, other, rid)[0] == 404
    assert get_request(srv, owner, rid)[0] == 200
    assert get_request(srv, srv.token("mallory"), rid)[0] == 404
    # rejecting is the owner's: not with the owner's request-scoped token
    assert srv.request("POST", f"/requests/{rid}/reject", {"reason": "x"},
                       token=srv.token("alice", scope="request"))[0] == 403
    # a scope claim that is not a string is refused outright
    assert srv.request("GET", "/requests", token=srv.token(
        "alice", scope="")) [0] == 401


def test_bad_json_body_is_400_with_nothing_stored(setup):
    srv, tok, shop = setup
    for body in (b"{not json", b"[1,2]", b'{"key_id":"x","extra":1}'):
        st, ans = srv.request("POST", "/requests", body, token=shop)
        assert st == 400 and "JSON object" in ans["message"], (body, ans)
    owner = srv.token("alice")
    assert srv.request("GET", "/requests", token=owner)[1]["requests"] == []


@pytest.mark.parametrize("kind,payload,why", [
    ("btc-psbt", base64.b64encode(b"psbt\xff\x00").decode(), "PSBT"),
    ("btc-psbt", "not base64!", "base64"),
    ("eth-tx", "02c90100010280808080c0", "transaction: "),
    ("eth-tx", "zz", "hex"),
    ("digest", "00" * 8, "16 to 64"),
    ("nonsense", "00", "kind"),
])
def test_malformed_requests_refused_with_nothing_stored(setup, kind, payload,
                                                        why):
    srv, tok, shop = setup
    kid = tok.keygen("secp256k1", "k")
    st, body = post_request(srv, shop, key_id=kid, kind=kind,
                            payload=payload)
    assert st == 400, body
    assert why.lower() in body["message"].lower(), body
    owner = srv.token("alice")
    assert srv.request("GET", "/requests", token=owner)[1]["requests"] == []
    assert not [r for r in srv.audit() if r["event"] == "request"]


def test_psbt_of_another_key_is_refused(setup):
    srv, tok, shop = setup
    kid = tok.keygen("secp256k1", "k")
    stranger = coincurve.PrivateKey(bytes(range(1, 33))).public_key
    raw, *_ = psbt_for(stranger.format(True), random.Random(3))
    st, body = post_request(srv, shop, key_id=kid, kind="btc-psbt",
                            payload=base64.b64encode(raw).decode(),
                            network="regtest")
    assert st == 400 and "spends from the key" in body["message"], body


def conf_value(srv, key):
    for line in srv.conf.read_text().splitlines():
        k, _, v = line.partition("=")
        if k.strip() == key:
            return v.strip()
    return None


def test_request_on_one_node_approved_through_another(make_server,
                                                      make_token, db_backend):
    if db_backend != "postgresql":
        pytest.skip("two nodes share one PostgreSQL database")
    a = make_server("a", node="a", requesters="shop=alice")
    b = make_server("b", node="b", requesters="shop=alice",
                    db_url=conf_value(a, "db_url"))
    tok = make_token(b, "alice")
    kid = tok.keygen("p256", "k")
    d = hashlib.sha256(b"two nodes").digest()
    rid = post_request(a, a.token("shop", scope="request"), key_id=kid,
                       kind="digest", payload=d.hex())[1]["request_id"]
    tok.run("approve", rid)  # lists and signs through node b
    st, done = get_request(a, a.token("shop", scope="request"), rid)
    assert st == 200 and done["state"] == "signed"
    sig = bytes.fromhex(done["result"])
    der = utils.encode_dss_signature(int.from_bytes(sig[:32], "big"),
                                     int.from_bytes(sig[32:], "big"))
    pub_point(tok, "k").verify(der, d,
                               ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    nodes = {r["node"] for r in a.audit() if r["event"] == "request"}
    assert nodes == {"a", "b"}


def test_watch_shows_a_new_request_at_once(setup):
    srv, tok, shop = setup
    kid = tok.keygen("p256", "k")
    watch = tok.popen("requests", "--watch")
    try:
        time.sleep(1.5)  # the watch waits on the server's long poll
        d = hashlib.sha256(b"watch").hexdigest()
        t0 = time.monotonic()
        rid = post_request(srv, shop, key_id=kid, kind="digest",
                           payload=d)[1]["request_id"]
        line = watch.stdout.readline()
        assert rid in line, line
        assert time.monotonic() - t0 < 5
        # two more in the same second: each shown once (the watch's cursor
        # is (created, id), not the second alone)
        more = [post_request(srv, shop, key_id=kid, kind="digest",
                             payload=hashlib.sha256(bytes([i])).hexdigest()
                             )[1]["request_id"] for i in range(2)]
        seen = []
        while len(seen) < 2:
            line = watch.stdout.readline()
            seen += [r for r in more if r in line]
        assert sorted(seen) == sorted(more)
    finally:
        watch.kill()
        watch.communicate(timeout=10)


# --- callbacks ---------------------------------------------------------------


class Receiver:
    """An HTTPS receiver on 127.0.0.1 (TLS 1.3, a certificate for the IP
    made here) that records each POST (headers, body) and answers 200."""

    def __init__(self, tmp_path):
        import datetime
        from cryptography import x509
        from cryptography.x509.oid import NameOID
        import ipaddress
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                             "callback receiver")])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name)
                .issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName(
                    [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                    critical=False)
                .add_extension(x509.BasicConstraints(ca=True, path_length=None),
                               critical=True)
                .sign(key, hashes.SHA256()))
        self.cert = tmp_path / "receiver.pem"
        self.key = tmp_path / "receiver.key"
        self.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.key.write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        import socket
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.got = []
        self.httpd = None

    def start(self):
        import http.server
        import ssl
        import threading
        got = self.got

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                got.append((dict(self.headers), self.rfile.read(n)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.httpd = http.server.HTTPServer(("127.0.0.1", self.port), H)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.load_cert_chain(self.cert, self.key)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket,
                                            server_side=True)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self):
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()


def check_hmac(key, headers, body):
    import hmac
    sig = headers.get("x-halfkey-signature") or \
        headers.get("X-Halfkey-Signature")
    t, v1 = (part.split("=", 1)[1] for part in sig.split(","))
    want = hmac.new(key, t.encode() + b"." + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(v1, want)
    assert abs(int(t) - time.time()) < 120


def test_callback_delivered_once_after_a_restart(make_server, make_token,
                                                 tmp_path):
    rcv = Receiver(tmp_path)
    cbkey = tmp_path / "callback.key"
    cbkey.write_bytes(bytes(range(48)))
    srv = make_server(requesters="shop=alice",
                      callback_ca_file=rcv.cert, callback_key_file=cbkey,
                      callback_hosts="127.0.0.1")
    tok = make_token(srv, "alice")
    kid = tok.keygen("p256", "k")
    shop = srv.token("shop", scope="request")
    d = hashlib.sha256(b"callback").digest()
    url = f"https://127.0.0.1:{rcv.port}/hook?x=1"
    st, req = post_request(srv, shop, key_id=kid, kind="digest",
                           payload=d.hex(), callback_url=url,
                           metadata={"order": 9})
    assert st == 201, req
    rid = req["request_id"]
    # the receiver is down: the first attempt fails, it stays queued
    tok.run("approve", rid)
    deadline = time.monotonic() + 15
    while "event=callback_failed" not in srv.log_text():
        assert time.monotonic() < deadline, srv.log_text()[-2000:]
        time.sleep(0.2)
    assert srv.stop() == 0
    rcv.start()
    try:
        srv.start()
        deadline = time.monotonic() + 20
        while not rcv.got:
            assert time.monotonic() < deadline, srv.log_text()[-2000:]
            time.sleep(0.2)
        time.sleep(4)  # a second delivery would come by now
        assert len(rcv.got) == 1
        headers, body = rcv.got[0]
        check_hmac(cbkey.read_bytes(), headers, body)
        sent = json.loads(body)
        done = get_request(srv, shop, rid)[1]
        assert sent["request_id"] == rid and sent["state"] == "signed"
        assert sent["result"] == done["result"]
        assert sent["metadata"] == {"order": 9} and "payload" not in sent
    finally:
        rcv.stop()


def test_callbacks_need_callback_hosts(make_server, tmp_path, db_backend):
    if db_backend != "sqlite":
        pytest.skip("a configuration check")
    rcv = Receiver(tmp_path)
    cbkey = tmp_path / "cb.key"
    cbkey.write_bytes(b"k" * 32)
    srv = make_server(callback_ca_file=rcv.cert, callback_key_file=cbkey,
                      start=False)
    p = subprocess.run([str(srv.bin), "run", "--config", str(srv.conf)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and "callback_hosts" in p.stderr, p.stderr


def test_callback_urls_checked_at_request_time(make_server, make_token,
                                               tmp_path):
    srv = make_server(requesters="shop=alice")
    tok = make_token(srv, "alice")
    kid = tok.keygen("p256", "k")
    shop = srv.token("shop", scope="request")
    d = hashlib.sha256(b"x").hexdigest()
    st, body = post_request(srv, shop, key_id=kid, kind="digest", payload=d,
                            callback_url="https://127.0.0.1:9/x")
    assert st == 400 and "delivers no callbacks" in body["message"], body
    rcv = Receiver(tmp_path)
    cbkey = tmp_path / "cb.key"
    cbkey.write_bytes(b"k" * 32)
    srv2 = make_server("srv2", requesters="shop=alice",
                       callback_ca_file=rcv.cert, callback_key_file=cbkey,
                       callback_hosts="127.0.0.1")
    tok2 = make_token(srv2, "alice", name="t2")
    kid2 = tok2.keygen("p256", "k")
    shop2 = srv2.token("shop", scope="request")
    for url, why in [("http://127.0.0.1/x", "https://"),
                     ("https://elsewhere.invalid/x", "not in callback_hosts"),
                     ("https://user@127.0.0.1/x", "https://")]:
        st, body = post_request(srv2, shop2, key_id=kid2, kind="digest",
                                payload=d, callback_url=url)
        assert st == 400 and why in body["message"], (url, body)


# --- the policy file ---------------------------------------------------------


def reload(srv, n_before):
    """SIGHUP and wait for the reload's log line (the n_before+1-th)."""
    import signal as sig
    srv.proc.send_signal(sig.SIGHUP)
    deadline = time.monotonic() + 10
    while srv.log_text().count("what=policy_file") + \
            srv.log_text().count("event=reload_refused") <= n_before:
        assert time.monotonic() < deadline, srv.log_text()[-2000:]
        time.sleep(0.1)


def reloads(srv):
    return srv.log_text().count("what=policy_file") + \
        srv.log_text().count("event=reload_refused")


def test_rules_at_request_time_and_again_at_sign_time(make_server, make_token,
                                                      tmp_path):
    pol = tmp_path / "policy.conf"
    pol.write_text("# requests may not be raw digests\n[default]\n"
                   "kinds = btc, eth\n")
    srv = make_server(requesters="shop=alice", policy_file=pol)
    tok = make_token(srv, "alice")
    shop = srv.token("shop", scope="request")
    kid = tok.keygen("secp256k1", "btc")
    pub = compressed(pub_point(tok, "btc"))
    st, body = post_request(srv, shop, key_id=kid, kind="digest",
                            payload=hashlib.sha256(b"x").hexdigest())
    assert st == 403 and body["error"] == "kind_not_allowed", body
    assert "raw digests are not allowed" in body["message"]
    # nor a bare digest outside any request: that would bypass the rules
    p = tok.run("sign", "--key", "btc", "--digest",
                hashlib.sha256(b"x").hexdigest(), check=False)
    assert p.returncode != 0 and "only through requests" in p.stderr, \
        p.stderr
    raw, ins, outs, amounts, mine = psbt_for(pub, random.Random(11))
    moved = sum(a for a, _ in outs)
    psbt64 = base64.b64encode(raw).decode()
    pol.write_text(f"[default]\nkinds = btc, eth\n[key {kid}]\n"
                   f"btc_networks = regtest\nbtc_max_amount = {moved - 1}\n")
    reload(srv, reloads(srv))
    st, body = post_request(srv, shop, key_id=kid, kind="btc-psbt",
                            payload=psbt64, network="regtest")
    assert st == 403 and body["error"] == "amount_over_limit", body
    st, body = post_request(srv, shop, key_id=kid, kind="btc-psbt",
                            payload=psbt64, network="testnet")
    assert st == 403 and body["error"] == "network_not_allowed", body
    pol.write_text(f"[key {kid}]\nbtc_max_amount = {moved}\n"
                   f"btc_max_amount_24h = {moved + moved // 2}\n")
    reload(srv, reloads(srv))
    rid = post_request(srv, shop, key_id=kid, kind="btc-psbt",
                       payload=psbt64, network="regtest")[1]["request_id"]
    # the rules hold again when the owner signs
    pol.write_text(f"[key {kid}]\nbtc_max_amount = {moved - 1}\n")
    reload(srv, reloads(srv))
    p = tok.run("approve", rid, check=False)
    assert p.returncode != 0 and "amount_over_limit" in p.stderr, p.stderr
    pol.write_text(f"[key {kid}]\nbtc_max_amount = {moved}\n"
                   f"btc_max_amount_24h = {moved + moved // 2}\n")
    reload(srv, reloads(srv))
    tok.run("approve", rid)
    assert get_request(srv, shop, rid)[1]["state"] == "signed"
    # the same again within 24 hours: over the daily limit
    st, body = post_request(srv, shop, key_id=kid, kind="btc-psbt",
                            payload=psbt64, network="regtest")
    assert st == 403 and body["error"] == "daily_limit", body
    refused = [r for r in srv.audit()
               if r["event"] == "request" and r["outcome"] == "refused"]
    assert len(refused) == 4
    metrics = srv.request("GET", "/metrics")[1]
    assert 'halfkey_policy_refusals_total{reason="daily_limit"} 1' in metrics


def test_a_request_being_signed_counts_against_the_daily_limit(
        make_server, make_token, tmp_path):
    """Two requests, each under the key's daily limit, together over it:
    while a sign under the first is admitted and running (its session
    open on another connection), the second is refused; once that session
    failed, the second signs and the first is then refused. Before the
    fix both signed: the rules counted only fully signed requests."""
    from test_channel import channel_connect
    pol = tmp_path / "policy.conf"
    pol.write_text("[default]\nkinds = btc, eth, digest\n")
    srv = make_server(requesters="shop=alice", policy_file=pol)
    tok = make_token(srv, "alice")
    shop = srv.token("shop", scope="request")
    kid = tok.keygen("secp256k1", "btc")
    pub = compressed(pub_point(tok, "btc"))
    reqs = []
    for seed in (21, 22):
        raw, _, outs, _, _ = psbt_for(pub, random.Random(seed))
        reqs.append((base64.b64encode(raw).decode(), sum(a for a, _ in outs)))
    limit = max(m for _, m in reqs)  # each fits, the two do not
    pol.write_text(f"[key {kid}]\nbtc_max_amount_24h = {limit}\n")
    reload(srv, reloads(srv))
    rids = [post_request(srv, shop, key_id=kid, kind="btc-psbt",
                         payload=p64, network="regtest")[1]["request_id"]
            for p64, _ in reqs]
    # a sign under the first admitted: the open passes the rules
    ws = channel_connect(srv, srv.token("alice"))
    ws.send(json.dumps({"v": 1, "t": "open", "op": "sign", "key_id": kid,
                        "request_id": rids[0], "index": 0}))
    opened = json.loads(ws.recv())
    assert opened["t"] == "opened", opened
    p = tok.run("approve", rids[1], check=False)
    assert p.returncode != 0 and "daily_limit" in p.stderr, p.stderr
    assert get_request(srv, shop, rids[1])[1]["state"] == "pending"
    # that session ends unsigned: the first commits nothing any more
    ws.close()
    deadline = time.monotonic() + 10
    while not any("connection closed mid-session" in r["detail"]
                  for r in srv.audit()):
        assert time.monotonic() < deadline, srv.log_text()[-2000:]
        time.sleep(0.05)
    tok.run("approve", rids[1])
    assert get_request(srv, shop, rids[1])[1]["state"] == "signed"
    p = tok.run("approve", rids[0], check=False)
    assert p.returncode != 0 and "daily_limit" in p.stderr, p.stderr


def eth_tx(to, value, chain=11155111):
    fields = [chain, 1, 10**9, 2 * 10**9, 21000, to, value, b"", []]
    return "0x" + (b"\x02" + wallet.rlp(fields)).hex()


def test_eth_destination_chain_and_fee_rules(make_server, make_token,
                                             tmp_path):
    pol = tmp_path / "policy.conf"
    good = bytes.fromhex("d8da6bf26964af9d7eed9e03e53415d37aa96045")
    pol.write_text("[subject alice]\neth_chain_ids = 11155111\n"
                   "allow_to = 0xD8dA6BF26964aF9D7eEd9e03E53415D37aA96045\n"
                   "eth_max_value = 1000\neth_max_fee = 42000000000000\n")
    srv = make_server(requesters="shop=alice", policy_file=pol)
    tok = make_token(srv, "alice")
    shop = srv.token("shop", scope="request")
    kid = tok.keygen("secp256k1", "eth")
    cases = [(eth_tx(b"\x11" * 20, 5), "destination_not_allowed"),
             (eth_tx(good, 5, chain=1), "network_not_allowed"),
             (eth_tx(good, 1001), "amount_over_limit"),
             (eth_tx(b"", 5), "destination_not_allowed")]
    for payload, code in cases:
        st, body = post_request(srv, shop, key_id=kid, kind="eth-tx",
                                payload=payload)
        assert st == 403 and body["error"] == code, (code, body)
    st, body = post_request(srv, shop, key_id=kid, kind="eth-tx",
                            payload=eth_tx(good, 1000))
    assert st == 201, body
    pol.write_text("[subject alice]\neth_max_fee = 41999999999999\n")
    reload(srv, reloads(srv))
    st, body = post_request(srv, shop, key_id=kid, kind="eth-tx",
                            payload=eth_tx(good, 1000))
    assert st == 403 and body["error"] == "fee_over_limit", body


def test_quorum_of_two_approvers(make_server, make_token, tmp_path):
    pol = tmp_path / "policy.conf"
    srv = make_server(requesters="shop=alice bob=alice",
                      policy_file=pol.with_name("empty.conf"), start=False)
    pol.with_name("empty.conf").write_text("")
    srv.start()
    tok = make_token(srv, "alice")
    kid = tok.keygen("p256", "k")
    pol.write_text(f"[key {kid}]\napprovals = 2\napprovers = bob, carol\n")
    srv.set_conf(policy_file=pol)
    reload(srv, reloads(srv))
    shop = srv.token("shop", scope="request")
    d = hashlib.sha256(b"quorum").digest()
    rid = post_request(srv, shop, key_id=kid, kind="digest",
                       payload=d.hex())[1]["request_id"]
    p = tok.run("approve", rid, check=False)
    assert p.returncode != 0 and "0 of the 2 approvals" in p.stderr, p.stderr
    p = tok.run("sign", "--key", "k", "--digest", d.hex(), check=False)
    assert p.returncode != 0 and "needs_approvals" in p.stderr, p.stderr

    def approve(who):
        return srv.request("POST", f"/requests/{rid}/approve", {},
                           token=srv.token(who, scope="approve"))

    assert approve("mallory")[0] == 404  # not an approver of this key
    # an approver that made the request does not approve it itself
    bob_rid = post_request(srv, srv.token("bob", scope="request approve"),
                           key_id=kid, kind="digest",
                           payload=hashlib.sha256(b"bob").hexdigest())
    assert bob_rid[0] == 201, bob_rid
    assert srv.request("POST",
                       f"/requests/{bob_rid[1]['request_id']}/approve", {},
                       token=srv.token("bob", scope="request approve"))[0] \
        == 404
    assert srv.request("POST", f"/requests/{rid}/approve", {},
                       token=srv.token("bob"))[0] == 403  # no approve scope
    st, body = approve("bob")
    assert st == 200 and body["new"] and body["needed"] == 2, body
    assert approve("bob")[1]["new"] is False  # once per approver
    assert get_request(srv, srv.token("carol", scope="approve"),
                       rid)[0] == 200  # approvers may read it
    p = tok.run("approve", rid, check=False)
    assert p.returncode != 0 and "1 of the 2 approvals" in p.stderr, p.stderr
    assert approve("carol")[0] == 200
    tok.run("approve", rid)
    st, done = get_request(srv, shop, rid)
    assert done["state"] == "signed"
    sig = bytes.fromhex(done["result"])
    der = utils.encode_dss_signature(int.from_bytes(sig[:32], "big"),
                                     int.from_bytes(sig[32:], "big"))
    pub_point(tok, "k").verify(der, d,
                               ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    outcomes = audit_request(srv, rid)
    assert outcomes == ["created", "approved", "approved", "signed"]


@pytest.mark.parametrize("text,line,why", [
    ("kinds = btc\n", 1, "before any section"),
    ("[default]\nkinds = btc, doge\n", 2, "malformed value"),
    ("[default]\nkinds = btc\nkinds = eth\n", 3, "twice"),
    ("[default]\n[default]\n", 2, "section given twice"),
    ("[default]\nbtc_max_amount = -5\n", 2, "malformed value"),
    ("[default]\nfoo = 1\n", 2, "unknown field"),
    ("[key 12]\n", 1, "malformed section"),
    ("[default]\neth_max_value = " + "9" * 79 + "\n", 2, "malformed value"),
])
def test_policy_file_errors_name_file_and_line(make_server, tmp_path, text,
                                               line, why, db_backend):
    if db_backend != "sqlite":
        pytest.skip("the file's parser is the same on both back ends")
    pol = tmp_path / "bad.conf"
    pol.write_text(text)
    srv = make_server(policy_file=pol, start=False)
    p = subprocess.run([str(srv.bin), "run", "--config", str(srv.conf)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode != 0
    err = p.stderr + p.stdout
    assert f"{pol}:{line}: " in err and why in err, err


def test_a_bad_reload_keeps_the_rules_in_force(make_server, make_token,
                                               tmp_path, db_backend):
    if db_backend != "sqlite":
        pytest.skip("the reload is the same on both back ends")
    pol = tmp_path / "policy.conf"
    pol.write_text("[default]\nkinds = eth\n")
    srv = make_server(requesters="shop=alice", policy_file=pol)
    tok = make_token(srv, "alice")
    kid = tok.keygen("p256", "k")
    pol.write_text("[default]\nkinds = nonsense\n")
    reload(srv, reloads(srv))
    assert "event=reload_refused" in srv.log_text()
    st, body = post_request(srv, srv.token("shop", scope="request"),
                            key_id=kid, kind="digest",
                            payload=hashlib.sha256(b"x").hexdigest())
    assert st == 403 and body["error"] == "kind_not_allowed", body


def test_example_runs(db_backend):
    """examples/requests/run.sh end to end (its own server on 127.0.0.1)."""
    if db_backend != "sqlite":
        pytest.skip("the example runs its own SQLite server")
    p = subprocess.run([str(ROOT / "examples" / "requests" / "run.sh")],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert p.stdout.rstrip().endswith("== ok")
    assert ": signed" in p.stdout
