"""Presignatures (issue 20 item 1, mpc/presign.h): a kept-open connection
that keeps signing makes presignatures and signs each digest in one round
trip; every signature verifies with `cryptography`; no two signatures of a
key share an r; a presignature signs once (a replayed or re-aimed sign.1p
is refused, also after a restart); a server that keeps none leaves the
client signing the plain way on the same connection; kill -9 of the client
or of halfkeyd at every step of a batch or a presigned sign loses
presignatures, never reuses one, and leaves a key that signs."""
import hashlib
import json
import os
import re
import signal
import subprocess
import time

import pytest

from conftest import PIN
from mitm import Mitm, msg_type, point_token_at
from test_backup import Hold, kill_held
from test_channel import channel_connect
from test_server import assert_ws_error, verify_raw, ws_drain


def batch(tok, label, digests, tmp_path, check=True):
    f = tmp_path / f"digests-{label}-{os.urandom(4).hex()}.txt"
    f.write_text("".join(d.hex() + "\n" for d in digests))
    return tok.run("sign", "--key", label, "--digest-file", f, "--format",
                   "raw", check=check)


def signed(tok, label, pem, n, tmp_path):
    """n fresh digests signed in one batch, each verified; the r values."""
    digests = [hashlib.sha256(os.urandom(16)).digest() for _ in range(n)]
    sigs = batch(tok, label, digests, tmp_path).stdout.split()
    assert len(sigs) == n
    for d, sig in zip(digests, sigs):
        verify_raw(pem, sig, d)
    return [sig[:64] for sig in sigs]


def presigned_opens(server):
    return len(re.findall(r"event=session_open op=sign .*channel=1 presig=1",
                          server.log_text()))


@pytest.mark.parametrize("curve", ["secp256k1", "p256"])
def test_channel_signs_on_presignatures(server, make_token, tmp_path, curve):
    tok = make_token(server, "carol")
    tok.keygen(curve, "k")
    pem = tok.pubkey_pem("k")
    rs = signed(tok, "k", pem, 14, tmp_path)
    # the first sign is plain; then batches of 4 and 8 (and 16) serve the
    # rest, one round trip each
    assert presigned_opens(server) == 13, server.log_text()[-3000:]
    assert len(re.findall(r"event=session_open op=presign",
                          server.log_text())) >= 2
    # a refresh makes the old epoch's presignatures useless; the next
    # batch makes new ones
    tok.run("refresh", "--key", "k")
    rs += signed(tok, "k", pem, 6, tmp_path)
    assert len(set(rs)) == len(rs), "two signatures share a nonce"


def channel_check(build_dir, tok, n1, n2, signs):
    """tests/unit/channel_check on tok's key "k": batches of n1 and n2 on
    one connection, then `signs` signatures. (counts, [(digest, sig)])."""
    p = subprocess.run([str(build_dir / "tests/unit/channel_check"),
                        str(tok.dir), "k", str(n1), str(n2), str(signs)],
                       capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, HALFKEY_PIN=PIN))
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    counts = [int(ln.split()[1]) for ln in lines if ln.startswith("presigs")]
    sigs = [tuple(ln.split()) for ln in lines if not ln.startswith("presigs")]
    return counts, sigs


def test_connection_pool_is_bounded(make_server, make_token, build_dir):
    """Two batches through the C API on one connection: the second makes
    room (the connection keeps at most 64) instead of writing past the
    end; every presignature signs, each signature verifies, and the r
    values differ. (66 sessions: above the default rate bucket.)"""
    server = make_server(rate_per_minute=0)
    tok = make_token(server, "frank")
    tok.keygen("secp256k1", "k")
    pem = tok.pubkey_pem("k")
    counts, sigs = channel_check(build_dir, tok, 40, 40, 64)
    assert counts == [40, 64, 0], counts
    for d, sig in sigs:
        verify_raw(pem, sig, bytes.fromhex(d))
    assert len(sigs) == 64 and len({sig[:64] for _, sig in sigs}) == 64
    assert presigned_opens(server) == 64


def test_presignature_the_server_dropped_falls_back(make_server, make_token,
                                                   build_dir):
    """A server that keeps fewer than the connection holds (8 per key
    here) evicts the oldest: the client's next sign on one of those is
    refused before any c3 and the digest is signed the plain way on the
    same connection; every signature verifies, none is lost, no lock."""
    server = make_server(presign_max_key=8)
    tok = make_token(server, "gina")
    tok.keygen("p256", "k")
    pem = tok.pubkey_pem("k")
    counts, sigs = channel_check(build_dir, tok, 8, 8, 16)
    assert counts[:2] == [8, 16], counts
    assert len(sigs) == 16
    for d, sig in sigs:
        verify_raw(pem, sig, bytes.fromhex(d))
    assert len({sig[:64] for _, sig in sigs}) == 16
    log = server.log_text()
    assert "no such presignature" in log
    # one connection throughout
    assert len(re.findall(r"event=session_open .*channel=1", log)) >= 16
    assert not tok.list()["k"][3]


def test_presign_off_signs_plain_on_one_connection(make_server, make_token,
                                                   tmp_path):
    server = make_server(presign_max_key=0)
    tok = make_token(server, "dora")
    tok.keygen("p256", "k")
    pem = tok.pubkey_pem("k")
    signed(tok, "k", pem, 6, tmp_path)
    log = server.log_text()
    assert presigned_opens(server) == 0
    # refused once, the channel kept: every sign on one connection
    assert len(re.findall(r"event=session_open op=sign .*channel=1",
                          log)) == 6


def test_client_presign_off(server, make_token, tmp_path):
    tok = make_token(server, "erin")
    tok.keygen("secp256k1", "k")
    set_presign(tok, "off")
    signed(tok, "k", tok.pubkey_pem("k"), 4, tmp_path)
    assert presigned_opens(server) == 0
    set_presign(tok, "sometimes")
    p = batch(tok, "k", [b"\x01" * 32], tmp_path, check=False)
    assert p.returncode != 0 and "presign" in p.stderr


def set_presign(tok, value):
    lines = [ln for ln in tok.conf_path().read_text().splitlines()
             if not ln.startswith("presign")]
    tok.conf_path().write_text("\n".join(lines + [f"presign = {value}"]) +
                               "\n")


class Capture:
    """Passes everything on and keeps the last presigned open message and
    the sign.1p that followed it."""

    def __init__(self):
        self.open = self.sign1p = None

    def __call__(self, d, message):
        if d == "c2s":
            try:
                m = json.loads(message)
            except ValueError:
                m = {}
            if m.get("t") == "open" and "presig" in m:
                self.open = message
            elif m.get("t") == "sign.1p":
                self.sign1p = message
        return [message]


def replay(server, sub, open_msg, sign1p):
    """The captured open + sign.1p sent again: refused (at the open, the
    session id being taken, or at sign.1p, the presignature gone), never
    a c3. The error."""
    ws = channel_connect(server, server.token(sub))
    ws.send(open_msg)
    ws.send(sign1p)
    msgs = []
    while not msgs or msg_type(msgs[-1]) == "opened":
        msgs.append(ws.recv())  # the server closes, or keeps the channel
    ws.close()
    assert not any(msg_type(m) == "sign.4" for m in msgs), msgs
    return assert_ws_error(msgs[-1:])


def replay_swept(server, open_msg, sign1p):
    """replay() once the session row of the last try is swept (a refusal
    at the open, "already exists", says only that the id was used)."""
    deadline = time.monotonic() + 40
    while True:
        err = replay(server, "alice", open_msg, sign1p)
        if "already exists" not in err["message"]:
            return err
        assert time.monotonic() < deadline, "the session was never swept"
        time.sleep(1)


def other_digest(sign1p):
    m = json.loads(sign1p)
    m["dig"] = hashlib.sha256(b"another digest").hexdigest()
    return json.dumps(m)


def test_presignature_signs_once(make_server, make_token, tmp_path):
    """A replayed presigned sign, and one aimed at another digest, find
    the presignature gone: two digests never meet one nonce. The session
    rows are swept first (session_idle = 2), so nothing but the
    presignature's own single use stands in the way."""
    server = make_server(session_idle=2)
    tok = make_token(server, "alice")
    tok.keygen("secp256k1", "k")
    pem = tok.pubkey_pem("k")
    cap = Capture()
    mitm = Mitm(server, cap)
    point_token_at(tok, mitm.url)
    signed(tok, "k", pem, 3, tmp_path)
    mitm.close()
    assert cap.open is not None and cap.sign1p is not None
    for msg in (cap.sign1p, other_digest(cap.sign1p)):
        err = replay_swept(server, cap.open, msg)
        assert "no such presignature" in err["message"], err
    # another subject cannot even name the key
    err = replay(server, "mallory", cap.open, cap.sign1p)
    assert "presignature" not in err["message"], err
    # and after a restart the presignature is still gone
    server.kill()
    server.start()
    err = replay_swept(server, cap.open, other_digest(cap.sign1p))
    assert "no such presignature" in err["message"], err


def test_unknown_presignature_refused(server, make_token):
    tok = make_token(server, "alice")
    kid = tok.keygen("p256", "k")
    ws = channel_connect(server, server.token("alice"))
    ws.send(json.dumps({"v": 1, "t": "open", "op": "sign", "key_id": kid,
                        "presig": os.urandom(16).hex()}))
    ws.send(json.dumps({"v": 1, "t": "sign.1p"}))
    err = assert_ws_error([ws.recv()])
    assert "no such presignature" in err["message"], err
    # refused alone: its sign.1p is dropped unread and the connection
    # serves the plain sign the client falls back to
    ws.send(json.dumps({"v": 1, "t": "open", "op": "sign", "key_id": kid}))
    assert msg_type(ws.recv()) == "opened"
    ws.close()
    # malformed batch requests: closed with an error, nothing made
    for bad in [{"n": 0}, {"n": 65}, {"n": "4"}, {"n": 4, "presig": "00"}]:
        ws = channel_connect(server, server.token("alice"))
        ws.send(json.dumps({"v": 1, "t": "open", "op": "presign",
                            "key_id": kid, **bad}))
        assert_ws_error(ws_drain(ws)[0])


# --- kill -9 at every step ---------------------------------------------------


# (direction, message type, how many to let pass first): the first sign
# of a run is plain (its sign.4 and sign.5 pass), the second makes a batch
STEPS = [("c2s", "pre.1", 0), ("s2c", "pre.2", 0), ("c2s", "pre.3", 0),
         ("s2c", "done", 0), ("c2s", "sign.1p", 0), ("s2c", "sign.4", 1),
         ("c2s", "sign.5", 1)]
IN_FLIGHT = {"sign.1p", "sign.4"}


def run_held(server, tok, hold, tmp_path, hook=None):
    """A batch of 4 digests through a man in the middle running `hook`
    (default: hold itself), until hold has stopped its message."""
    mitm = Mitm(server, hook or hold)
    point_token_at(tok, mitm.url)
    f = tmp_path / "held.txt"
    f.write_text("".join(os.urandom(32).hex() + "\n" for _ in range(4)))
    proc = tok.popen("sign", "--key", "k", "--digest-file", f)
    assert hold.reached.wait(60), proc.communicate(timeout=5)
    return mitm, proc


@pytest.mark.parametrize("step", STEPS)
def test_client_killed_at_each_step(server, make_token, tmp_path, step):
    tok = make_token(server, "alice")
    tok.keygen("secp256k1", "k")
    pem = tok.pubkey_pem("k")
    rs = signed(tok, "k", pem, 2, tmp_path)
    hold = Hold(*step)
    mitm, proc = run_held(server, tok, hold, tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    hold.release.set()
    mitm.close()
    point_token_at(tok, server.url)
    locked = tok.list()["k"][3]
    if step[1] in IN_FLIGHT:
        # a c3 may have been on its way: fail-closed, an interrupted sign
        assert locked
    elif step[1] != "sign.5":
        # nothing was in flight: no lock. (With sign.5 held the client has
        # its signature and may be in its next sign, which then counts as
        # interrupted.)
        assert not locked
    if locked:
        tok.run("unlock", "--key", "k")
    assert not tok.list()["k"][3]
    rs += signed(tok, "k", pem, 5, tmp_path)
    assert len(set(rs)) == len(rs)


@pytest.mark.parametrize("step", STEPS)
def test_server_killed_at_each_step(server, make_token, tmp_path, step):
    tok = make_token(server, "alice")
    tok.keygen("p256", "k")
    pem = tok.pubkey_pem("k")
    rs = signed(tok, "k", pem, 2, tmp_path)
    cap = Capture()
    hold = Hold(*step)

    def both(d, message):
        cap(d, message)
        return hold(d, message)

    mitm, proc = run_held(server, tok, hold, tmp_path, both)
    server.kill()
    hold.release.set()
    proc.communicate(timeout=60)
    mitm.close()
    server.start()
    point_token_at(tok, server.url)
    # the client saw no c3 (the connection broke): nothing leaked, no lock
    assert not tok.list()["k"][3]
    rs += signed(tok, "k", pem, 5, tmp_path)
    assert len(set(rs)) == len(rs)
    if step[1] == "sign.4":
        # taken before c3 was made: gone for good
        replay(server, "alice", cap.open, other_digest(cap.sign1p))


# --- presignatures stored on disk for one-shot processes -----------------


def stored(tok, label="k"):
    out = tok.run("presign", "--key", label, "--count", "0").stdout
    return int(re.search(r"presigs_stored = (\d+)", out).group(1))


def one_shot(tok, pem, label="k"):
    """One `halfkey sign` process (one connection), verified; its r."""
    d = hashlib.sha256(os.urandom(16)).digest()
    sig = tok.run("sign", "--key", label, "--digest", d.hex(), "--format",
                  "raw").stdout.strip()
    verify_raw(pem, sig, d)
    return sig[:64]


@pytest.mark.parametrize("curve", ["secp256k1", "p256"])
def test_stored_presignatures_serve_one_shot_signs(server, make_token,
                                                   curve):
    """`halfkey presign` seals presignatures on disk; each later one-shot
    `halfkey sign` takes one (its file gone before the digest is sent)
    and signs in one round trip; once they are used up the sign is plain
    again. Every signature verifies, no r repeats."""
    tok = make_token(server, "hank")
    tok.keygen(curve, "k")
    pem = tok.pubkey_pem("k")
    out = tok.run("presign", "--key", "k", "--count", "5").stdout
    assert "presigs_stored = 5" in out and "presigs_added = 5" in out
    names = sorted(os.listdir(tok.dir / "presig"))
    assert len(names) == 5 and all(n.endswith(".ps") for n in names)
    rs = [one_shot(tok, pem) for _ in range(5)]
    assert presigned_opens(server) == 5
    assert stored(tok) == 0 and os.listdir(tok.dir / "presig") == []
    rs += [one_shot(tok, pem) for _ in range(2)]
    assert presigned_opens(server) == 5  # none left: plain
    assert len(set(rs)) == len(rs)
    # topping up makes only what is missing; the bound is 64
    tok.run("presign", "--key", "k", "--count", "3")
    out = tok.run("presign", "--key", "k", "--count", "4").stdout
    assert "presigs_stored = 4" in out and "presigs_added = 1" in out
    p = tok.run("presign", "--key", "k", "--count", "65", check=False)
    assert p.returncode != 0 and "0 to 64" in p.stderr
    assert not tok.list()["k"][3]


def test_stored_presignature_is_sealed_and_bound(server, make_token):
    """An entry is sealed under the PIN key with its key id in the AAD: a
    tampered file, or one renamed to another key, is never used (removed
    when met), and the sign goes the plain way."""
    tok = make_token(server, "ivan")
    tok.keygen("p256", "a")
    tok.keygen("p256", "b")
    pem_a = tok.pubkey_pem("a")
    tok.run("presign", "--key", "b", "--count", "1")
    tok.run("presign", "--key", "a", "--count", "1")
    d = tok.dir / "presig"
    entries = sorted(os.listdir(d))
    assert len(entries) == 2
    # flip one byte of every entry's ciphertext
    for n in entries:
        b = bytearray((d / n).read_bytes())
        b[-5] ^= 1
        (d / n).write_bytes(bytes(b))
    one_shot(tok, pem_a, "a")
    assert presigned_opens(server) == 0
    assert stored(tok, "a") == 0  # met, unusable, removed
    # an empty, an oversize and a garbage file under a valid name: removed
    # unused, the sign is plain
    name = sorted(os.listdir(d))[0]
    for body in (b"", b"HKPSIG1\0" + os.urandom(4096), os.urandom(200)):
        (d / name).write_bytes(body)
        assert stored(tok, "b") == 1
        one_shot(tok, tok.pubkey_pem("b"), "b")
        assert stored(tok, "b") == 0 and presigned_opens(server) == 0
    for bad in ("x", "-1", "1e3", ""):
        p = tok.run("presign", "--key", "a", "--count", bad, check=False)
        assert p.returncode != 0 and "0 to 64" in p.stderr, (bad, p.stderr)


def test_stored_presignature_renamed_to_another_key(server, make_token):
    tok = make_token(server, "ivan2")
    tok.keygen("p256", "a")
    tok.keygen("p256", "b")
    pem_a = tok.pubkey_pem("a")
    tok.run("presign", "--key", "b", "--count", "1")
    d = tok.dir / "presig"
    (name,) = os.listdir(d)
    tok.run("presign", "--key", "a", "--count", "1")
    (mine,) = [n for n in os.listdir(d) if n != name]
    os.unlink(d / mine)
    # b's entry under a's key id
    os.rename(d / name, d / (mine[:32] + name[32:]))
    assert stored(tok, "a") == 1
    one_shot(tok, pem_a, "a")
    assert presigned_opens(server) == 0
    assert stored(tok, "a") == 0


def test_stored_presignatures_of_an_old_epoch_are_dropped(server, make_token):
    tok = make_token(server, "judy")
    tok.keygen("secp256k1", "k")
    pem = tok.pubkey_pem("k")
    tok.run("presign", "--key", "k", "--count", "3")
    tok.run("refresh", "--key", "k")
    one_shot(tok, pem)
    assert presigned_opens(server) == 0
    assert stored(tok) == 0
    tok.run("presign", "--key", "k", "--count", "1")
    one_shot(tok, pem)
    assert presigned_opens(server) == 1


def test_stored_presignatures_the_server_let_go(make_server, make_token):
    """A server that keeps 2 per key lets the oldest of 3 go: the newest
    are taken first and sign; the evicted one is refused before any c3,
    the digest is signed the plain way, the key's stored ones removed."""
    server = make_server(presign_max_key=2)
    tok = make_token(server, "kate")
    tok.keygen("p256", "k")
    pem = tok.pubkey_pem("k")
    out = tok.run("presign", "--key", "k", "--count", "3").stdout
    assert "presigs_stored = 3" in out
    rs = [one_shot(tok, pem) for _ in range(3)]
    assert presigned_opens(server) == 2
    assert "no such presignature" in server.log_text()
    assert stored(tok) == 0
    assert len(set(rs)) == 3 and not tok.list()["k"][3]


def test_stored_presignatures_refused_by_a_server_without(make_server,
                                                          make_token):
    server = make_server(presign_max_key=0)
    tok = make_token(server, "liam")
    tok.keygen("p256", "k")
    p = tok.run("presign", "--key", "k", "--count", "2", check=False)
    assert p.returncode != 0 and "presign_max_key" in p.stderr
    assert stored(tok) == 0


@pytest.mark.parametrize("step", [("c2s", "sign.1p", 0),
                                  ("s2c", "sign.4", 0)])
def test_one_shot_killed_loses_its_stored_presignature(server, make_token,
                                                       step):
    """kill -9 of a one-shot sign on a stored presignature: its entry was
    removed before the digest went out, so it is never used again (the
    server's half is gone too once the open committed); the key is left
    locked as an interrupted sign (a c3 may have been coming) and signs
    on after `unlock`."""
    tok = make_token(server, "mia")
    tok.keygen("secp256k1", "k")
    pem = tok.pubkey_pem("k")
    tok.run("presign", "--key", "k", "--count", "2")
    kill_held(server, tok, step, "sign", "--key", "k", "--digest",
              os.urandom(32).hex())
    assert stored(tok) == 1
    assert tok.list()["k"][3]
    tok.run("unlock", "--key", "k")
    rs = [one_shot(tok, pem) for _ in range(2)]
    assert presigned_opens(server) == 2  # the held one opened, then 1
    assert len(set(rs)) == 2
