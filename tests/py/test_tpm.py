"""TPM-backed tokens (issue 22 item 1) against a software TPM: `halfkey
init --tpm` seals the master key in swtpm; keygen, sign (verified with
`cryptography`), refresh and a restart of the TPM work as on a file token;
a PIN change killed with SIGKILL at several points leaves a token that
either PIN opens; a copy of the token directory on another (fresh) TPM is
refused; wrong PINs end in the TPM's dictionary-attack lockout, reported
as such, and the TPM owner's reset lifts it. Each test module starts its
own swtpm on a Unix socket in a temporary directory."""
import json
import os
import random
import re
import shutil
import signal
import subprocess
import time

import pytest

from conftest import PIN, Token
from test_server import verify_raw

NEW_PIN = "1357-new-pin"

pytestmark = pytest.mark.skipif(
    shutil.which("swtpm") is None,
    reason="swtpm not installed (Debian: swtpm swtpm-tools): TPM-backed "
           "tokens are tested against a software TPM")


class SwTpm:
    """One swtpm (TPM 2.0) on a Unix socket; its state persists in
    `directory` across stop/start. The swtpm TCTI expects the control
    socket at <socket>.ctrl."""

    def __init__(self, directory):
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "state").mkdir(exist_ok=True)
        self.sock = self.dir / "sock"
        self.proc = None

    @property
    def tcti(self):
        return f"swtpm:path={self.sock}"

    def start(self):
        for p in (self.sock, self.dir / "sock.ctrl"):
            if p.exists():
                p.unlink()
        self.proc = subprocess.Popen(
            ["swtpm", "socket", "--tpm2",
             "--server", f"type=unixio,path={self.sock}",
             "--ctrl", f"type=unixio,path={self.dir / 'sock.ctrl'}",
             "--tpmstate", f"dir={self.dir / 'state'}",
             "--flags", "startup-clear"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 10
        while not (self.sock.exists() and (self.dir / "sock.ctrl").exists()):
            assert self.proc.poll() is None, self.proc.stderr.read()
            assert time.time() < deadline, "swtpm did not start"
            time.sleep(0.02)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None

    def clear_lockout(self):
        """TPM2_DictionaryAttackLockReset with the (empty) lockout auth."""
        subprocess.run(["tpm2_dictionarylockout", "--clear-lockout",
                        "-T", self.tcti], check=True, capture_output=True,
                       timeout=30)


@pytest.fixture(scope="module")
def swtpm(tmp_path_factory):
    t = SwTpm(tmp_path_factory.mktemp("swtpm"))
    t.start()
    yield t
    t.stop()


@pytest.fixture
def fresh_swtpm(tmp_path):
    """A second TPM with its own seeds: another machine."""
    t = SwTpm(tmp_path / "swtpm-other")
    t.start()
    yield t
    t.stop()


@pytest.fixture
def tpm_token(tmp_path, halfkey_bin):
    """tpm_token(server, sub, swtpm) -> a TPM-backed Token."""
    def make(server, sub, tpm, name=None):
        name = name or f"tpm-{sub}"
        tok_file = tmp_path / f"{name}.jwt"
        tok_file.write_text(server.token(sub) + "\n")
        tok = Token(halfkey_bin, tmp_path / name, tok_file, server)
        p = tok.run("init", "--url", server.url, "--server-pin", server.pin,
                    "--token-file", tok_file, "--tpm", "--tcti", tpm.tcti,
                    check=False)
        if "built without TPM support" in p.stderr:
            pytest.skip("halfkey built without tpm2-tss (libtss2-dev)")
        assert p.returncode == 0, p.stderr
        assert f"tpm = {tpm.tcti}" in p.stdout
        return tok

    return make


def sign_ok(tok, label, pin=None, msg=b"tpm"):
    """Signs a digest through the CLI and verifies it; the process result."""
    digest = os.urandom(32)
    env = dict(tok.env, HALFKEY_PIN=pin or tok.env["HALFKEY_PIN"])
    p = subprocess.run(tok.cmd("sign", "--key", label, "--digest",
                               digest.hex(), "--format", "raw"),
                       capture_output=True, text=True, env=env, timeout=120)
    if p.returncode == 0:
        verify_raw(tok.pubkey_pem(label), p.stdout.strip(), digest)
    return p


def token_json(tok):
    return json.loads((tok.dir / "token.json").read_text())


def test_tpm_token_keys_sign_refresh_restart(server, swtpm, tpm_token):
    tok = tpm_token(server, "alice", swtpm)
    t = token_json(tok)
    # The record says TPM-backed: version 2, the TCTI, the sealed object's
    # public and private parts; no scrypt parameters (the PIN derives
    # nothing but the object's authorisation).
    assert t["ver"] == 2, t
    assert t["tpm_tcti"] == swtpm.tcti
    assert len(t["tpm_pub"]) > 0 and len(t["tpm_priv"]) > 0
    assert "scrypt_log2n" not in t
    tok.keygen("p256", "k")
    assert sign_ok(tok, "k").returncode == 0
    epoch = tok.list()["k"][2]
    tok.run("refresh", "--key", "k")
    assert tok.list()["k"][2] == epoch + 1
    assert sign_ok(tok, "k").returncode == 0
    # The doctor names the TPM and finds it reachable.
    p = tok.run("doctor", check=False)
    assert re.search(r"OK +tpm: TPM-backed token, TPM swtpm:path=\S+ "
                     r"\(IBM \) reachable", p.stdout), p.stdout
    # The TPM restarts (its state persists): the token still signs.
    swtpm.stop()
    p = sign_ok(tok, "k")
    assert p.returncode != 0 and "TPM" in p.stderr, p.stderr
    swtpm.start()
    assert sign_ok(tok, "k").returncode == 0


def test_tpm_token_copied_to_another_tpm(server, swtpm, fresh_swtpm,
                                         tpm_token):
    tok = tpm_token(server, "bob", swtpm)
    tok.keygen("secp256k1", "k")
    copy = Token(tok.bin, tok.dir.parent / "copied", tok.token_file, server)
    shutil.copytree(tok.dir, copy.dir)
    # On the other machine its TPM answers at the recorded TCTI.
    t = (copy.dir / "token.json").read_text()
    (copy.dir / "token.json").write_text(
        t.replace(swtpm.tcti, fresh_swtpm.tcti))
    p = sign_ok(copy, "k")
    assert p.returncode != 0
    assert "sealed to another TPM" in p.stderr, p.stderr
    assert "made on another machine's TPM" in p.stderr, p.stderr
    # The original still works.
    assert sign_ok(tok, "k").returncode == 0


def test_tpm_pin_change_killed(server, swtpm, tpm_token, tmp_path):
    # A TPM restarted without TPM2_Shutdown (as swtpm is by an earlier
    # test) counts one failure: start from zero.
    swtpm.clear_lockout()
    tok = tpm_token(server, "carol", swtpm)
    tok.keygen("p256", "k")
    pins = [PIN, NEW_PIN]
    pin_files = {}
    for p in pins:
        pin_files[p] = tmp_path / f"pin-{len(pin_files)}"
        pin_files[p].write_text(p + "\n")

    def change(cur, kill_after=None):
        other = pins[1 - pins.index(cur)]
        env = dict(tok.env, HALFKEY_PIN=cur)
        proc = subprocess.Popen(
            tok.cmd("change-pin", "--new-pin-file", pin_files[other]),
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if kill_after is not None:
            time.sleep(kill_after)
            proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=60)
        return proc.returncode, err.decode()

    # A complete change there and back, timed.
    t0 = time.monotonic()
    assert change(PIN) == (0, "")
    full = time.monotonic() - t0
    assert sign_ok(tok, "k", pin=NEW_PIN).returncode == 0
    assert change(NEW_PIN)[0] == 0
    cur, pending_seen = PIN, 0
    rnd = random.Random(22)
    for frac in [0.0, 0.1, 0.2, 0.35, 0.5, 0.65, 0.8, 0.95] + \
            [rnd.random() for _ in range(4)]:
        gen = token_json(tok)["gen"]
        rc, err = change(cur, kill_after=frac * full)
        t = token_json(tok)
        other = pins[1 - pins.index(cur)]
        if t["t"] == "token-pending":
            pending_seen += 1
            # Both PINs open it: the old one on a copy (rolls back), the
            # new one here (rolls forward).
            copy = Token(tok.bin, tmp_path / f"copy-{pending_seen}",
                         tok.token_file, server)
            shutil.copytree(tok.dir, copy.dir)
            assert sign_ok(copy, "k", pin=cur).returncode == 0
            assert token_json(copy)["t"] == "token"
            # The roll-back tried the old PIN on the new slot first: the
            # TPM counted one failure (swtpm allows 3); its owner resets.
            swtpm.clear_lockout()
            cur = other
        elif t["gen"] == gen + 1:
            cur = other  # the change committed before the kill
        else:
            assert t["gen"] == gen, (t, gen)
        p = sign_ok(tok, "k", pin=cur)
        assert p.returncode == 0, (frac, p.stderr)
        assert token_json(tok)["t"] == "token"
    # No wrong PIN was ever given: beyond the roll-backs (reset above) the
    # TPM counted no failure.
    env = dict(tok.env, HALFKEY_PIN=cur)
    p = subprocess.run(tok.cmd("doctor"), capture_output=True, text=True,
                       env=env, timeout=60)
    m = re.search(r"tpm: .* reachable, (\d+) of (\d+) failed", p.stdout)
    assert m and int(m.group(1)) == 0, p.stdout
    assert re.search(r"OK +login: PIN accepted", p.stdout), p.stdout
    swtpm.clear_lockout()


def test_tpm_lockout(server, fresh_swtpm, tpm_token):
    tok = tpm_token(server, "dave", fresh_swtpm)
    tok.keygen("p256", "k")
    errs = []
    for _ in range(20):
        p = sign_ok(tok, "k", pin="0000-wrong")
        assert p.returncode != 0
        errs.append(p.stderr)
        if "PIN locked" in p.stderr:
            break
    # swtpm allows 3 failures; the file counter (10) is not what stopped it.
    assert "wrong PIN" in errs[0], errs
    assert "PIN locked" in errs[-1] and len(errs) <= 5, errs
    assert "dictionary-attack lockout" in errs[-1], errs[-1]
    # The right PIN is refused too, with the same explanation.
    p = sign_ok(tok, "k")
    assert p.returncode != 0 and "dictionary-attack lockout" in p.stderr
    p = tok.run("doctor", check=False)
    assert re.search(r"FAIL +tpm: .*dictionary-attack lockout", p.stdout), \
        p.stdout
    # The TPM owner lifts it; the token works again.
    fresh_swtpm.clear_lockout()
    assert sign_ok(tok, "k").returncode == 0
