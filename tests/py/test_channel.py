"""Kept-open connections: `halfkey sign --digest-file` signs many digests
over one WebSocket (`/ws?channel=1`), each in its own server session; the
signatures verify with the `cryptography` package; a refresh between
batches is honoured; hostile channel requests get an error and a close."""
import hashlib
import json
import os
import re
import subprocess
import time

import pytest
import websocket

from conftest import PIN
from test_server import (assert_ws_error, server_pubkey, uncompressed,
                         verify_raw, ws_drain)


def channel_connect(server, token):
    return websocket.create_connection(
        f"wss://127.0.0.1:{server.port}/ws?channel=1",
        header=[f"Authorization: Bearer {token}"],
        sslopt={"ca_certs": str(server.cert)}, timeout=15)


def batch(tok, label, digests, tmp_path):
    f = tmp_path / f"digests-{label}.txt"
    f.write_text("".join(d.hex() + "\n" for d in digests))
    out = tok.run("sign", "--key", label, "--digest-file", f,
                  "--format", "raw").stdout.split()
    assert len(out) == len(digests), out
    return out


@pytest.mark.parametrize("curve", ["secp256k1", "p256"])
def test_batch_over_one_connection(server, make_token, tmp_path, curve):
    tok = make_token(server, "carol")
    tok.keygen(curve, "k")
    pem = tok.pubkey_pem("k")
    digests = [hashlib.new(h, os.urandom(16)).digest()
               for h in ["sha256", "sha384", "sha512"] * 4]
    for d, sig in zip(digests, batch(tok, "k", digests, tmp_path)):
        verify_raw(pem, sig, d)
    # the server ends a session when it has checked the client's last
    # message, a moment after the client has its signature
    deadline = time.monotonic() + 10
    while server.log_text().count("event=sign_done") < len(digests) and \
            time.monotonic() < deadline:
        time.sleep(0.05)
    log = server.log_text()
    assert len(re.findall(r"event=session_open op=sign .*channel=1",
                          log)) == len(digests)
    assert log.count("event=sign_done") == len(digests)
    # a refresh between batches: the channel loads the new share
    tok.run("refresh", "--key", "k")
    assert tok.list()["k"][2] == 2
    digests = [os.urandom(32) for _ in range(3)]
    for d, sig in zip(digests, batch(tok, "k", digests, tmp_path)):
        verify_raw(pem, sig, d)
    assert tok.pubkey_pem("k") == pem


def test_bad_digest_file_is_one_error(server, make_token, tmp_path):
    tok = make_token(server, "dave")
    tok.keygen("p256", "k")
    for content in ["zz\n", "\n", "00" * 65 + "\n"]:
        f = tmp_path / "bad.txt"
        f.write_text(content)
        p = tok.run("sign", "--key", "k", "--digest-file", f, check=False)
        assert p.returncode == 1
        assert len(p.stderr.strip().splitlines()) == 1, p.stderr
        assert "digest-file" in p.stderr


def test_hostile_channel_requests(server, make_token):
    alice = make_token(server, "alice")
    kid = alice.keygen("secp256k1", "k")
    bob_token = server.token("bob")
    bad = [
        "not json",
        json.dumps({"v": 1, "t": "open", "op": "sign", "key_id": kid,
                    "x": 1}),
        json.dumps({"v": 1, "t": "open", "op": "keygen", "key_id": kid}),
        json.dumps({"v": 2, "t": "open", "op": "sign", "key_id": kid}),
        json.dumps({"v": 1, "t": "open", "op": "sign", "key_id": "00"}),
        # bob opening alice's key: not found, like a missing key
        json.dumps({"v": 1, "t": "open", "op": "sign", "key_id": kid}),
    ]
    for i, msg in enumerate(bad):
        ws = channel_connect(server, bob_token)
        ws.send(msg)
        msgs, _ = ws_drain(ws)
        err = assert_ws_error(msgs)
        if i == len(bad) - 1:
            assert "not found" in err["message"], err
    # each refusal is logged under the channel, no op being known yet
    # (printf of a NULL op printed "op=(null)" with glibc, may crash on
    # another libc)
    log = server.log_text()
    assert "(null)" not in log
    assert len(re.findall(r"event=session_failed op=channel sub=bob ",
                          log)) == len(bad), log
    # a refused upgrade: no token
    with pytest.raises(websocket.WebSocketBadStatusException) as exc:
        websocket.create_connection(
            f"wss://127.0.0.1:{server.port}/ws?channel=1",
            sslopt={"ca_certs": str(server.cert)}, timeout=15)
    assert exc.value.status_code == 401
    # alice's key is untouched and still signs
    assert uncompressed(alice.pubkey_pem("k")) == server_pubkey(
        server, server.token("alice"), kid)["pubkey"]
    d = hashlib.sha256(b"after").digest()
    sig = alice.run("sign", "--key", "k", "--digest", d.hex(), "--format",
                    "raw").stdout.strip()
    verify_raw(alice.pubkey_pem("k"), sig, d)


@pytest.mark.parametrize("curve", ["secp256k1", "p256"])
def test_kept_connection_and_tls_state_across_fork(server, make_token,
                                                   build_dir, curve):
    """hk_client_sign keeps its connection and its TLS session tickets; a
    forked child using the same hk_client forgets both (the parent's
    secrets) and signs on a connection of its own, leaving the parent's
    open: the parent's two signs after the fork run on the connection it
    kept, so it resumed a TLS session exactly once (its one reconnect, after
    hk_client_idle_close). Every signature verifies with `cryptography`."""
    tok = make_token(server, "fork")
    tok.keygen(curve, "k")
    pem = tok.pubkey_pem("k")
    p = subprocess.run([str(build_dir / "tests/unit/client_fork_check"),
                        str(tok.dir), "k"], capture_output=True, text=True,
                       timeout=300, env=dict(os.environ, HALFKEY_PIN=PIN))
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    sigs = [ln.split() for ln in lines if ln.split()[0] in ("parent",
                                                            "child")]
    assert [w for w, _, _ in sigs] == ["parent"] * 3 + ["child"] * 2 + \
        ["parent"] * 2, lines
    for _, d, sig in sigs:
        verify_raw(pem, sig, bytes.fromhex(d))
    assert len({sig[:64] for _, _, sig in sigs}) == len(sigs)
    assert "resumed 1" in lines, lines
