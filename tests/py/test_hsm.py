"""HSM sealing of halfkeyd's shares with a real SoftHSM2 token that these
tests initialise themselves (SOFTHSM2_CONF pointing at a private token
directory): `halfkeyd init --hsm`, keygen and signing through the halfkey
CLI with the KEK inside the token, restarts, start-up errors (wrong PIN,
missing token, missing key, a key with the wrong attributes, PIN sources),
`GET /status` health, and KEK migration with `halfkeyd reseal` (key file ->
HSM -> another HSM key) while a client keeps signing, including an
interrupted reseal and `reseal --check` counts. Signatures are verified with
the Python `cryptography` package; the database is read directly to check
that every blob is sealed (version 2) under the expected KEK id."""
import os
import pathlib
import re
import shutil
import sqlite3
import subprocess
import threading

import sys

import pytest

from conftest import Server
from test_server import sign_and_verify

TOKEN = "halfkey-test"
USER_PIN = "4321-user"
SO_PIN = "8765-so"
MODULES = ("/usr/lib/softhsm/libsofthsm2.so",
           "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so")


def softhsm_module():
    for path in MODULES:
        if os.path.exists(path):
            return path
    pytest.fail("SoftHSM2 is not installed (apt-get install softhsm2; "
                "scripts/setup does)")


class Hsm:
    """A SoftHSM2 configuration with its own token directory."""

    def __init__(self, root):
        self.root = pathlib.Path(root)
        self.conf = self.root / "softhsm2.conf"
        self.pin_file = self.root / "user.pin"
        self.module = softhsm_module()

    def write_conf(self):
        self.conf.write_text(f"directories.tokendir = {self.root}/tokens\n"
                             "objectstore.backend = file\n"
                             "log.level = ERROR\n")

    def env(self):
        return dict(os.environ, SOFTHSM2_CONF=str(self.conf))

    def init_token(self, label=TOKEN):
        (self.root / "tokens").mkdir(parents=True, exist_ok=True)
        self.write_conf()
        subprocess.run(["softhsm2-util", "--init-token", "--free", "--label",
                        label, "--so-pin", SO_PIN, "--pin", USER_PIN],
                       check=True, capture_output=True, env=self.env(),
                       timeout=60)
        self.pin_file.write_text(USER_PIN + "\n")
        self.pin_file.chmod(0o600)

    def copy_to(self, root):
        shutil.copytree(self.root, root)
        other = Hsm(root)
        other.write_conf()
        return other

    def in_session(self, code):
        """Runs Python `code` with `s`, a python-pkcs11 session on the
        token (user logged in), in a child process: the module reads
        SOFTHSM2_CONF once per process. Returns its stdout."""
        script = ("import pkcs11, sys\n"
                  "from pkcs11 import Attribute, KeyType\n"
                  f"lib = pkcs11.lib({self.module!r})\n"
                  f"tok = lib.get_token(token_label={TOKEN!r})\n"
                  f"with tok.open(user_pin={USER_PIN!r}, rw=True) as s:\n"
                  + "".join(f"    {ln}\n" for ln in code.splitlines()))
        return subprocess.run([sys.executable, "-c", script], check=True,
                              capture_output=True, text=True,
                              env=self.env(), timeout=60).stdout


def hsm_opts(hsm, label="kek1"):
    return ["--hsm", "--hsm-module", hsm.module, "--hsm-token", TOKEN,
            "--hsm-key-label", label, "--hsm-pin-file", str(hsm.pin_file)]


@pytest.fixture(scope="module")
def hsm_template(tmp_path_factory, halfkeyd_bin):
    """A token with key kek1 and a server directory `init --hsm` made."""
    root = tmp_path_factory.mktemp("hsm-template")
    hsm = Hsm(root / "hsm")
    hsm.init_token()
    out = subprocess.run(
        [str(halfkeyd_bin), "init", str(root / "srv"), "--port", "0",
         *hsm_opts(hsm)], check=True, capture_output=True, text=True,
        env=hsm.env(), timeout=300).stdout
    info = dict(line.split(" = ", 1) for line in out.splitlines()
                if " = " in line)
    conf = (root / "srv" / "halfkeyd.conf").read_text()
    assert "seal = pkcs11" in conf and "hsm_key_label = kek1" in conf
    assert "kek_file" not in conf and USER_PIN not in conf
    assert not (root / "srv" / "kek.bin").exists()
    return root, info["pin"]


@pytest.fixture
def hsm_server(tmp_path, hsm_template, halfkeyd_bin, monkeypatch):
    """(Server not started, Hsm) on private copies of the template."""
    servers = []

    def make():
        src, pin = hsm_template
        hsm = Hsm(src / "hsm").copy_to(tmp_path / "hsm")
        shutil.copytree(src / "srv", tmp_path / "srv")
        monkeypatch.setenv("SOFTHSM2_CONF", str(hsm.conf))
        srv = Server(halfkeyd_bin, tmp_path / "srv", pin)
        srv.set_conf(port=0, port_file="port", hsm_pin_file=hsm.pin_file)
        servers.append(srv)
        return srv, hsm

    yield make
    for srv in servers:
        if srv.proc is not None:
            assert srv.stop() == 0, srv.log_text()[-3000:]


# --- helpers ---------------------------------------------------------------


def drop_conf(srv, *keys):
    lines = [ln for ln in srv.conf.read_text().splitlines()
             if not any(re.match(rf"\s*{k}\s*=", ln) for k in keys)]
    srv.conf.write_text("\n".join(lines) + "\n")


def halfkeyd(srv, *args, check=True, timeout=120):
    p = subprocess.run([str(srv.bin), *map(str, args)], capture_output=True,
                       text=True, timeout=timeout)
    if check and p.returncode != 0:
        pytest.fail(f"halfkeyd {' '.join(map(str, args))}: "
                    f"{p.returncode}: {p.stderr}")
    return p


def kv(text):
    return dict(line.split(" = ", 1) for line in text.splitlines()
                if " = " in line)


def check_counts(srv):
    """reseal --check: {kek id: count}, and the primary's id."""
    out = kv(halfkeyd(srv, "reseal", "--config", srv.conf,
                      "--check").stdout)
    primary, total = out.pop("primary"), int(out.pop("total"))
    counts = {k: int(v.split()[0]) for k, v in out.items()}
    assert sum(counts.values()) == total
    return primary, counts


def reseal(srv, *extra):
    p = halfkeyd(srv, "reseal", "--config", srv.conf, *extra)
    out = kv(p.stdout)
    return {k: (int(v) if v.isdigit() else v) for k, v in out.items()}


def new_kek(srv, *args):
    out = halfkeyd(srv, "new-kek", "--config", srv.conf, *args).stdout
    kek_id = kv(out)["kek_id"]
    assert re.fullmatch(r"[0-9a-f]{16}", kek_id)
    return kek_id


def blob_ids(srv):
    """Every sealed blob of the database: [(version, kek id hex)]."""
    db = sqlite3.connect(f"file:{srv.dir / 'halfkeyd.db'}?mode=ro",
                         uri=True)
    try:
        rows = db.execute("SELECT sealed FROM shares UNION ALL "
                          "SELECT sealed FROM setup").fetchall()
    finally:
        db.close()
    return [(r[0][0], r[0][1:9].hex()) for r in rows]


def tamper_share(srv, kid_hex, off, blob=None):
    """Flips one bit at off of the active share's blob of kid (or writes
    blob back); returns the blob before."""
    db = sqlite3.connect(str(srv.dir / "halfkeyd.db"), timeout=10)
    try:
        kid = bytes.fromhex(kid_hex)
        old = db.execute("SELECT sealed FROM shares WHERE kid = ? AND "
                         "state = 'active'", (kid,)).fetchone()[0]
        new = blob
        if new is None:
            new = bytearray(old)
            new[off] ^= 0x01
        db.execute("UPDATE shares SET sealed = ? WHERE kid = ? AND state "
                   "= 'active'", (bytes(new), kid))
        db.commit()
    finally:
        db.close()
    return old


def seal_status(srv):
    status, body = srv.request("GET", "/status")
    assert status == 200, body
    return body["seal"]


def start_fails(srv, *needles):
    """`halfkeyd run` must exit non-zero at start with one line naming the
    problem."""
    p = subprocess.run([str(srv.bin), "run", "--config", str(srv.conf)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode != 0, p.stderr
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("halfkeyd: start: "), p.stderr
    for needle in needles:
        assert needle in last, (needle, p.stderr)
    return last


# --- tests -----------------------------------------------------------------


def test_init_hsm_sign_restart(hsm_server, make_token):
    srv, hsm = hsm_server()
    srv.start()
    seal = seal_status(srv)
    assert seal["backend"] == "pkcs11" and seal["status"] == "ok"
    kek1 = seal["kek_id"]
    assert re.fullmatch(r"[0-9a-f]{16}", kek1)
    tok = make_token(srv, "alice")
    tok.keygen("secp256k1", "w")
    tok.keygen("p256", "p")
    pems = {k: tok.pubkey_pem(k) for k in ("w", "p")}
    for k in pems:
        sign_and_verify(tok, k, pems[k])
    tok.run("refresh", "--key", "p")
    sign_and_verify(tok, "p", pems["p"], b"after refresh")
    # every blob (setup + one share per key) is version 2 under kek1, and
    # the database holds no plaintext share
    ids = blob_ids(srv)
    assert len(ids) == 3 and set(ids) == {(2, kek1)}
    assert check_counts(srv) == (kek1, {kek1: 3})

    port = srv.port
    assert srv.stop() == 0
    srv.set_conf(port=port)
    srv.start()
    assert seal_status(srv)["kek_id"] == kek1
    for k in pems:
        sign_and_verify(tok, k, pems[k], b"after restart")
    # an altered blob (ciphertext, or the KEK id byte) does not open inside
    # the HSM: that key cannot sign, the other can; restored, it signs
    kid = tok.list()["w"][1]
    for off in (40, 3):
        original = tamper_share(srv, kid, off)
        p = tok.run("sign", "--key", "w", "--digest", "00" * 32, check=False)
        assert p.returncode != 0
        sign_and_verify(tok, "p", pems["p"], b"other key")
        tamper_share(srv, kid, None, original)
        sign_and_verify(tok, "w", pems["w"], b"restored")
    assert "not configured" in srv.log_text()  # the altered id

    # the key is in the token, sensitive and not extractable
    out = hsm.in_session(
        'k = s.get_key(label="kek1", key_type=KeyType.AES)\n'
        'print(k[Attribute.SENSITIVE], k[Attribute.EXTRACTABLE],\n'
        '      k[Attribute.VALUE_LEN], k[Attribute.TOKEN])')
    assert out.split() == ["True", "False", "32", "True"]


def test_init_hsm_refuses_existing_label(hsm_server, tmp_path):
    srv, hsm = hsm_server()
    p = subprocess.run([str(srv.bin), "init", str(tmp_path / "again"),
                        "--port", "0", *hsm_opts(hsm, "kek1")],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode != 0
    assert "already has a key labelled 'kek1'" in p.stderr
    assert not (tmp_path / "again" / "halfkeyd.conf").exists()


def test_startup_errors(hsm_server):
    srv, hsm = hsm_server()
    bad_pin = hsm.root / "bad.pin"
    bad_pin.write_text("0000\n")
    bad_pin.chmod(0o600)
    srv.set_conf(hsm_pin_file=bad_pin)
    start_fails(srv, "wrong PIN", TOKEN)
    srv.set_conf(hsm_pin_file=hsm.pin_file)

    srv.set_conf(hsm_token="no-such-token")
    start_fails(srv, "no token labelled 'no-such-token'", hsm.module)
    srv.set_conf(hsm_token=TOKEN)

    srv.set_conf(hsm_key_label="nokey")
    start_fails(srv, "no secret key labelled 'nokey'")

    # keys that are not a fit KEK
    hsm.in_session("""
def gen(label, bits, sens, extr):
    s.generate_key(KeyType.AES, bits, label=label, store=True,
                   template={Attribute.SENSITIVE: sens,
                             Attribute.EXTRACTABLE: extr})
gen("extractable", 256, True, True)
gen("plain", 256, False, False)
gen("short", 128, True, False)
gen("twice", 256, True, False)
gen("twice", 256, True, False)
""")
    srv.set_conf(hsm_key_label="extractable")
    start_fails(srv, "'extractable'", "refused: CKA_EXTRACTABLE")
    srv.set_conf(hsm_key_label="plain")
    start_fails(srv, "refused: not CKA_SENSITIVE")
    srv.set_conf(hsm_key_label="short")
    start_fails(srv, "refused: not an AES-256 key")
    srv.set_conf(hsm_key_label="twice")
    start_fails(srv, "more than one secret key labelled 'twice'")
    srv.set_conf(hsm_key_label="kek1")

    # PIN sources: a file others can read, an unset variable, both given
    hsm.pin_file.chmod(0o644)
    start_fails(srv, "chmod 600")
    hsm.pin_file.chmod(0o600)
    drop_conf(srv, "hsm_pin_file")
    srv.set_conf(hsm_pin_env="HK_TEST_HSM_PIN")
    os.environ.pop("HK_TEST_HSM_PIN", None)
    start_fails(srv, "$HK_TEST_HSM_PIN is not set")
    srv.set_conf(hsm_pin_file=hsm.pin_file)
    p = subprocess.run([str(srv.bin), "run", "--config", str(srv.conf)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and "exactly one of" in p.stderr
    drop_conf(srv, "hsm_pin_file")
    # the PIN from the environment works
    os.environ["HK_TEST_HSM_PIN"] = USER_PIN
    try:
        srv.start()
        assert seal_status(srv)["status"] == "ok"
    finally:
        srv.stop()
        os.environ.pop("HK_TEST_HSM_PIN", None)
    assert USER_PIN not in srv.log_text()


def sign_loop(tok, pems, n, errors, done):
    """n signatures over the keys in turn; failures into errors."""
    labels = sorted(pems)
    try:
        for i in range(n):
            label = labels[i % len(labels)]
            sign_and_verify(tok, label, pems[label], b"loop %d" % i)
    except BaseException as exc:  # noqa: B902 - reported by the test
        errors.append(exc)
    finally:
        done.set()


def test_migrate_file_to_hsm_and_rotate(make_server, make_token, tmp_path,
                                        monkeypatch):
    hsm = Hsm(tmp_path / "hsm")
    hsm.init_token()
    monkeypatch.setenv("SOFTHSM2_CONF", str(hsm.conf))
    srv = make_server()
    tok = make_token(srv, "alice")
    for label, curve in (("a", "secp256k1"), ("b", "p256"),
                         ("c", "secp256k1")):
        tok.keygen(curve, label)
    pems = {k: tok.pubkey_pem(k) for k in ("a", "b", "c")}
    file_id = seal_status(srv)["kek_id"]
    assert seal_status(srv)["backend"] == "file"
    assert set(blob_ids(srv)) == {(2, file_id)} and len(blob_ids(srv)) == 4
    port = srv.port

    # 1. a new KEK in the HSM as primary, the key file as previous; restart
    srv.set_conf(hsm_module=hsm.module, hsm_token=TOKEN,
                 hsm_pin_file=hsm.pin_file)
    hsm_id = new_kek(srv, "--hsm-key-label", "kek2")
    assert hsm_id != file_id
    assert srv.stop() == 0
    drop_conf(srv, "kek_file")
    srv.set_conf(port=port, seal="pkcs11", hsm_key_label="kek2",
                 seal_previous_key_file="kek.bin")
    srv.start()
    assert seal_status(srv) == {"backend": "pkcs11", "kek_id": hsm_id,
                                "status": "ok"}
    sign_and_verify(tok, "a", pems["a"], b"old blob, new primary")
    tok.run("refresh", "--key", "c")  # new shares sealed under the HSM key
    assert check_counts(srv) == (hsm_id, {file_id: 3, hsm_id: 1})

    # 2. reseal, interrupted after one blob, then finished while the client
    # signs in a loop
    out = reseal(srv, "--limit", "1")
    assert out["resealed"] == 1 and "stopped" in out and out["failed"] == 0
    assert check_counts(srv)[1] == {file_id: 2, hsm_id: 2}
    errors, done = [], threading.Event()
    th = threading.Thread(target=sign_loop,
                          args=(tok, pems, 20, errors, done))
    th.start()
    passes = 0
    while not done.is_set() or passes == 0:
        out = reseal(srv)
        assert out["failed"] == 0, out
        passes += 1
    th.join()
    assert errors == [], errors
    assert check_counts(srv) == (hsm_id, {hsm_id: 4})
    assert set(blob_ids(srv)) == {(2, hsm_id)}
    out = reseal(srv)
    assert out["already"] == 4 and out["resealed"] == 0

    # 3. the old key file is removed from the configuration and the disk
    assert srv.stop() == 0
    drop_conf(srv, "seal_previous_key_file")
    (srv.dir / "kek.bin").unlink()
    srv.start()
    for k in pems:
        sign_and_verify(tok, k, pems[k], b"HSM only")

    # rotation between HSM keys: kek3 primary, kek2 previous
    kek3 = new_kek(srv, "--hsm-key-label", "kek3")
    assert srv.stop() == 0
    srv.set_conf(hsm_key_label="kek3", seal_previous_hsm_key_label="kek2")
    srv.start()
    assert seal_status(srv)["kek_id"] == kek3
    out = reseal(srv)
    assert out["resealed"] == 4 and out["failed"] == 0
    assert check_counts(srv) == (kek3, {kek3: 4})
    sign_and_verify(tok, "b", pems["b"], b"after rotation")

    # a server without the KEK the blobs name refuses to start, naming it
    assert srv.stop() == 0
    drop_conf(srv, "seal_previous_hsm_key_label")
    srv.set_conf(hsm_key_label="kek2")
    p = subprocess.run([str(srv.bin), "run", "--config", str(srv.conf)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode != 0
    assert f"sealed under KEK {kek3}, not configured" in p.stderr
    assert "setup unreadable" in p.stderr
    srv.set_conf(hsm_key_label="kek3")
    srv.start()
    sign_and_verify(tok, "c", pems["c"], b"back on kek3")
