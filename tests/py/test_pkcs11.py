"""Black-box tests of the PKCS#11 module (pkcs11/libhalfkey-pkcs11.so):
python-pkcs11 (and OpenSC's pkcs11-tool when installed) load the module and
make and use split keys of a real halfkeyd on 127.0.0.1 (server and token
fixtures in conftest.py). Every signature is checked with the Python
`cryptography` package and the public key read from CKA_EC_POINT. Raw
argument checks run through ctypes in a child process (the module's state
is per process)."""
import datetime
import hashlib
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import threading

import pkcs11
import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils
from cryptography.x509.oid import NameOID
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass, TokenFlag
from pkcs11.util.ec import encode_named_curve_parameters

from conftest import PIN

CURVES = {"p256": (ec.SECP256R1, "secp256r1"),
          "secp256k1": (ec.SECP256K1, "secp256k1")}
ORDER = {
    "secp256k1":
    0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141,
    "p256": 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
}
HASHES = {Mechanism.ECDSA_SHA1: hashes.SHA1, Mechanism.ECDSA_SHA224:
          hashes.SHA224, Mechanism.ECDSA_SHA256: hashes.SHA256,
          Mechanism.ECDSA_SHA384: hashes.SHA384,
          Mechanism.ECDSA_SHA512: hashes.SHA512}


# --- fixtures and helpers ---------------------------------------------------


@pytest.fixture(scope="session")
def module_path(build_dir):
    path = build_dir / "pkcs11" / "libhalfkey-pkcs11.so"
    if not path.is_file():
        pytest.fail(f"{path} is not built: ninja -C {build_dir}")
    return str(path)


@pytest.fixture
def tok(server, make_token):
    return make_token(server, "alice")


@pytest.fixture
def lib(tok, module_path, monkeypatch):
    """The module, initialised over one slot: the token `tok`."""
    monkeypatch.setenv("HALFKEY_PKCS11_TOKENS", str(tok.dir))
    monkeypatch.delenv("HALFKEY_HOME", raising=False)
    lib = pkcs11.lib(module_path)
    lib.reinitialize()
    yield lib
    lib.finalize()


def token_of(lib):
    (slot,) = lib.get_slots(token_present=True)
    return slot.get_token()


def public_key(pub, curve):
    """The cryptography key from CKA_EC_POINT (a DER OCTET STRING)."""
    der = pub[Attribute.EC_POINT]
    assert der[0] == 0x04 and der[1] == 65 and len(der) == 67
    return ec.EllipticCurvePublicKey.from_encoded_point(
        CURVES[curve][0](), der[2:])


def check_sig(key, curve, sig, data=None, digest=None, hash_cls=None):
    assert len(sig) == 64
    r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
    assert 0 < r < ORDER[curve] and 0 < s <= ORDER[curve] // 2
    der = utils.encode_dss_signature(r, s)
    if digest is not None:
        key.verify(der, digest, ec.ECDSA(utils.Prehashed(hash_cls())))
    else:
        key.verify(der, data, ec.ECDSA(hash_cls()))


def keygen(session, curve, label):
    params = session.create_domain_parameters(
        KeyType.EC, {Attribute.EC_PARAMS:
                     encode_named_curve_parameters(CURVES[curve][1])},
        local=True)
    return params.generate_keypair(store=True, label=label)


# --- slots, tokens, login ----------------------------------------------------


def test_slot_and_token_info(lib, tok):
    assert lib.manufacturer_id == "halfkey"
    assert lib.cryptoki_version == (2, 40)
    (slot,) = lib.get_slots()
    assert slot.flags & pkcs11.SlotFlag.TOKEN_PRESENT
    token = slot.get_token()
    for flag in (TokenFlag.TOKEN_INITIALIZED, TokenFlag.LOGIN_REQUIRED,
                 TokenFlag.USER_PIN_INITIALIZED, TokenFlag.RNG):
        assert token.flags & flag, flag
    assert not token.flags & TokenFlag.USER_PIN_LOCKED
    assert token.manufacturer_id == "halfkey"
    mechs = slot.get_mechanisms()
    digests = {Mechanism.SHA_1, Mechanism.SHA224, Mechanism.SHA256,
               Mechanism.SHA384, Mechanism.SHA512}
    assert mechs == {Mechanism.EC_KEY_PAIR_GEN, Mechanism.ECDSA,
                     *HASHES.keys(), *digests}
    for m in mechs - digests:  # digests: test_digest_mechanisms
        info = slot.get_mechanism_info(m)
        assert (info.min_key_length, info.max_key_length) == (256, 256)
        for f in ("EC_F_P", "EC_NAMEDCURVE", "EC_UNCOMPRESS"):
            assert info.flags & getattr(pkcs11.MechanismFlag, f)
    gen = slot.get_mechanism_info(Mechanism.EC_KEY_PAIR_GEN)
    assert gen.flags & pkcs11.MechanismFlag.GENERATE_KEY_PAIR
    info = slot.get_mechanism_info(Mechanism.ECDSA_SHA256)
    assert info.flags & pkcs11.MechanismFlag.SIGN
    assert info.flags & pkcs11.MechanismFlag.VERIFY
    with token.open() as session:
        assert len(session.generate_random(256)) == 32


def test_one_slot_per_token_directory(server, make_token, module_path,
                                      monkeypatch):
    a, b = make_token(server, "alice"), make_token(server, "bob")
    a.keygen("p256", "ka")
    b.keygen("secp256k1", "kb")
    monkeypatch.setenv("HALFKEY_PKCS11_TOKENS", f"{a.dir}:{b.dir}")
    lib = pkcs11.lib(module_path)
    lib.reinitialize()
    try:
        slots = lib.get_slots(token_present=True)
        desc = [s.slot_description for s in slots]  # the dir, or its end
        assert desc[0].endswith("/tok-alice") and desc[1].endswith("/tok-bob")
        labels = []
        for slot in slots:
            with slot.get_token().open(user_pin=PIN) as session:
                labels.append(sorted(o[Attribute.LABEL]
                                     for o in session.get_objects()))
        assert labels == [["ka", "ka"], ["kb", "kb"]]
        # no list: $HALFKEY_HOME
        monkeypatch.delenv("HALFKEY_PKCS11_TOKENS")
        monkeypatch.setenv("HALFKEY_HOME", str(b.dir))
        lib.reinitialize()
        (slot,) = lib.get_slots()
        assert slot.slot_description.endswith("/tok-bob")
    finally:
        lib.finalize()


def test_token_made_after_initialize(server, make_token, module_path,
                                     monkeypatch, tmp_path):
    monkeypatch.setenv("HALFKEY_PKCS11_TOKENS", str(tmp_path / "tok-late"))
    lib = pkcs11.lib(module_path)
    lib.reinitialize()
    try:
        (slot,) = lib.get_slots(token_present=True)
        with pytest.raises(pkcs11.TokenNotRecognised):
            slot.get_token()
        make_token(server, "late")  # halfkey init in tmp_path/tok-late
        with slot.get_token().open(user_pin=PIN):
            pass
    finally:
        lib.finalize()


def test_login_wrong_pin_counter_and_lockout(lib, tok):
    token = token_of(lib)
    with pytest.raises(pkcs11.PinIncorrect):
        token.open(user_pin="wrong-pin")
    assert token_of(lib).flags & TokenFlag.USER_PIN_COUNT_LOW
    with pytest.raises(pkcs11.PinLenRange):
        token.open(user_pin="12")
    with token.open(user_pin=PIN) as session:
        assert session.user_type == pkcs11.UserType.USER
    assert not token_of(lib).flags & TokenFlag.USER_PIN_COUNT_LOW
    for _ in range(9):
        with pytest.raises(pkcs11.PinIncorrect):
            token.open(user_pin="wrong-pin")
    assert token_of(lib).flags & TokenFlag.USER_PIN_FINAL_TRY
    with pytest.raises(pkcs11.PinIncorrect):
        token.open(user_pin="wrong-pin")
    assert token_of(lib).flags & TokenFlag.USER_PIN_LOCKED
    with pytest.raises(pkcs11.PinLocked):
        token.open(user_pin=PIN)


def test_protected_authentication_path(tok, module_path, monkeypatch,
                                       tmp_path):
    pin_file = tmp_path / "pin"
    pin_file.write_text(PIN + "\n")
    pin_file.chmod(0o600)
    monkeypatch.setenv("HALFKEY_PKCS11_TOKENS", str(tok.dir))
    monkeypatch.setenv("HALFKEY_PKCS11_PIN_FILE", str(pin_file))
    lib = pkcs11.lib(module_path)
    lib.reinitialize()
    try:
        token = token_of(lib)
        assert token.flags & TokenFlag.PROTECTED_AUTHENTICATION_PATH
        with token.open(user_pin=pkcs11.PROTECTED_AUTH) as session:
            assert session.user_type == pkcs11.UserType.USER
        with token.open(user_pin=PIN):  # a PIN given still works
            pass
        pin_file.chmod(0o644)
        with pytest.raises(pkcs11.FunctionFailed):
            token.open(user_pin=pkcs11.PROTECTED_AUTH)
    finally:
        lib.finalize()


def test_set_pin(lib, tok):
    token = token_of(lib)
    with token.open(rw=True) as session:
        with pytest.raises(pkcs11.PinIncorrect):
            session.set_pin("not-the-pin", "new-pin-5678")
        session.set_pin(PIN, "new-pin-5678")
    with pytest.raises(pkcs11.PinIncorrect):
        token.open(user_pin=PIN)
    with token.open(user_pin="new-pin-5678"):
        pass
    with token.open(user_pin="new-pin-5678", rw=True) as session:
        session.set_pin("new-pin-5678", PIN)
    tok.run("list")  # the CLI reads the token with the old PIN again


# --- keys and signatures ----------------------------------------------------


@pytest.mark.parametrize("curve", ["p256", "secp256k1"])
def test_keygen_sign_verify_every_mechanism(lib, tok, curve):
    token = token_of(lib)
    with token.open(user_pin=PIN, rw=True) as session:
        pub, priv = keygen(session, curve, f"k-{curve}")
        assert priv[Attribute.LABEL] == f"k-{curve}"
        assert pub[Attribute.ID] == priv[Attribute.ID]
        assert len(priv[Attribute.ID]) == 16
        oid = encode_named_curve_parameters(CURVES[curve][1])
        assert pub[Attribute.EC_PARAMS] == priv[Attribute.EC_PARAMS] == oid
        key = public_key(pub, curve)
        data = os.urandom(1000)
        for mech, hcls in HASHES.items():
            sig = priv.sign(data, mechanism=mech)
            check_sig(key, curve, sig, data=data, hash_cls=hcls)
            assert pub.verify(data, sig, mechanism=mech)
            chunks = [data[:1], data[1:500], b"", data[500:]]
            sig = priv.sign(iter(chunks), mechanism=mech)
            check_sig(key, curve, sig, data=data, hash_cls=hcls)
            assert pub.verify(iter(chunks), sig, mechanism=mech)
            assert not pub.verify(data + b"x", sig, mechanism=mech)
        for hcls in (hashes.SHA256, hashes.SHA384, hashes.SHA512,
                     hashes.SHA1):
            dig = hashlib.new(hcls.name, data).digest()
            sig = priv.sign(dig, mechanism=Mechanism.ECDSA)
            check_sig(key, curve, sig, digest=dig, hash_cls=hcls)
            assert pub.verify(dig, sig, mechanism=Mechanism.ECDSA)
            sig = priv.sign(iter([dig[:7], dig[7:]]),
                            mechanism=Mechanism.ECDSA)
            check_sig(key, curve, sig, digest=dig, hash_cls=hcls)
        # a template CKA_ID is the key's CKA_ID (else the key id)
        params = session.create_domain_parameters(
            KeyType.EC, {Attribute.EC_PARAMS: oid}, local=True)
        pub2, priv2 = params.generate_keypair(store=True, id=b"\x0a\x0b")
        assert priv2[Attribute.LABEL] == "id-0a0b"
        assert priv2[Attribute.ID] == pub2[Attribute.ID] == b"\x0a\x0b"
        sig = session.get_key(id=b"\x0a\x0b",
                              object_class=ObjectClass.PRIVATE_KEY).sign(
            data, mechanism=Mechanism.ECDSA_SHA256)
        check_sig(public_key(pub2, curve), curve, sig, data=data,
                  hash_cls=hashes.SHA256)
    # the CLI sees the same keys
    keys = tok.list()
    assert keys[f"k-{curve}"][0] == keys["id-0a0b"][0] == curve


def test_objects_and_attributes(lib, tok):
    tok.keygen("p256", "cli-key")
    token = token_of(lib)
    with token.open() as session:  # logged out: public objects only
        objs = list(session.get_objects())
        assert [o.object_class for o in objs] == [ObjectClass.PUBLIC_KEY]
    with token.open(user_pin=PIN) as session:
        priv = session.get_key(ObjectClass.PRIVATE_KEY, label="cli-key")
        pub = session.get_key(ObjectClass.PUBLIC_KEY, label="cli-key")
        assert priv.key_type == KeyType.EC
        for attr, val in ((Attribute.SENSITIVE, True),
                          (Attribute.ALWAYS_SENSITIVE, True),
                          (Attribute.NEVER_EXTRACTABLE, True),
                          (Attribute.EXTRACTABLE, False),
                          (Attribute.SIGN, True), (Attribute.PRIVATE, True),
                          (Attribute.TOKEN, True)):
            assert priv[attr] == val, attr
        assert pub[Attribute.VERIFY] is True
        assert pub[Attribute.PRIVATE] is False
        with pytest.raises(pkcs11.AttributeSensitive):
            priv[Attribute.VALUE]
        with pytest.raises(pkcs11.AttributeTypeInvalid):
            priv[Attribute.MODULUS]
        by_id = list(session.get_objects({Attribute.ID: priv[Attribute.ID]}))
        assert len(by_id) == 2
        assert list(session.get_objects({Attribute.LABEL: "nope"})) == []
        pem = tok.pubkey_pem("cli-key")
        assert serialization.load_pem_public_key(pem).public_numbers() == \
            public_key(pub, "p256").public_numbers()


def test_ten_threads_share_one_session(lib, tok):
    tok.keygen("secp256k1", "t")
    token = token_of(lib)
    errors, sigs = [], []
    with token.open(user_pin=PIN) as session:
        priv = session.get_key(ObjectClass.PRIVATE_KEY, label="t")
        key = public_key(session.get_key(ObjectClass.PUBLIC_KEY, label="t"),
                         "secp256k1")

        def work(i):
            try:
                msg = f"message {i}".encode()
                sigs.append((msg, priv.sign(
                    msg, mechanism=Mechanism.ECDSA_SHA256)))
            except Exception as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(i,))
                   for i in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
    assert errors == []
    assert len(sigs) == 10
    for msg, sig in sigs:
        check_sig(key, "secp256k1", sig, data=msg, hash_cls=hashes.SHA256)


def module_signs(lib, label, n, pause=0.0):
    """n signatures by P-256 key `label` through the module in one
    session, each verified, `pause` seconds apart."""
    import time
    token = token_of(lib)
    with token.open(user_pin=PIN) as session:
        priv = session.get_key(ObjectClass.PRIVATE_KEY, label=label)
        pub = public_key(session.get_key(ObjectClass.PUBLIC_KEY,
                                         label=label), "p256")
        for i in range(n):
            msg = f"{label} {i}".encode()
            check_sig(pub, "p256", priv.sign(
                msg, mechanism=Mechanism.ECDSA_SHA256), data=msg,
                hash_cls=hashes.SHA256)
            time.sleep(pause)


def test_module_keeps_its_connection_and_presigns(lib, tok, server):
    """The module keeps its connection to halfkeyd between signatures
    (hk_client_sign): every sign opens its session on a kept-open
    WebSocket, and from the second on (presign = auto) they run on
    presignatures, one round trip each. Every signature verifies."""
    tok.keygen("p256", "k")
    module_signs(lib, "k", 8)
    log = server.log_text()
    opens = re.findall(r"event=session_open op=sign .*", log)
    assert len(opens) == 8 and all("channel=1" in o for o in opens), log
    # a new connection's first sign of a key is plain: 7 presigned opens
    # show that all 8 ran on one kept connection
    assert sum("presig=1" in o for o in opens) == 7


def test_module_reconnects_after_halfkeyd_restart(lib, tok, server):
    """A kept connection that halfkeyd dropped (a restart) is replaced:
    the next signature opens a new one, verifies, and leaves no lock."""
    tok.keygen("p256", "k")
    module_signs(lib, "k", 2)
    assert server.stop() == 0
    server.set_conf(port=server.port)  # the token's halfkey.conf names it
    server.start()
    module_signs(lib, "k", 2)
    assert not tok.list()["k"][3]
    opens = re.findall(r"event=session_open op=sign", server.log_text())
    assert len(opens) >= 2


def test_module_presigns_for_keys_signed_in_turn(lib, tok, server):
    """A host that signs with two keys in turn presigns for both: each
    key's first sign on the connection is plain, the rest presigned (the
    connection remembered only the last key before, so none was)."""
    tok.keygen("p256", "a")
    tok.keygen("secp256k1", "b")
    token = token_of(lib)
    with token.open(user_pin=PIN) as session:
        keys = {}
        for label, curve in (("a", "p256"), ("b", "secp256k1")):
            keys[label] = (
                session.get_key(ObjectClass.PRIVATE_KEY, label=label),
                public_key(session.get_key(ObjectClass.PUBLIC_KEY,
                                           label=label), curve), curve)
        for i in range(12):
            priv, pub, curve = keys["ab"[i % 2]]
            msg = f"turn {i}".encode()
            check_sig(pub, curve, priv.sign(
                msg, mechanism=Mechanism.ECDSA_SHA256), data=msg,
                hash_cls=hashes.SHA256)
    opens = re.findall(r"event=session_open op=sign .*", server.log_text())
    assert len(opens) == 12
    assert sum("presig=1" in o for o in opens) == 10


def test_module_refills_presignatures_in_idle_time(lib, tok, server):
    """Between a host's signatures the module's kept connection makes the
    next batch itself, once it is down to its last presignature: the
    sign after that finds one ready. In halfkeyd's log the second batch
    comes after 3 signs on the first batch of 4 (refilled with one left),
    where a sign that finds none would make it after all 4."""
    tok.keygen("p256", "k")
    module_signs(lib, "k", 8, pause=0.5)  # the host's idle time
    ops = re.findall(r"event=session_open op=(sign|presign)",
                     server.log_text())
    first = ops.index("presign")
    second = ops.index("presign", first + 1)
    assert ops[first + 1:second] == ["sign"] * 3, ops
    assert ops.count("sign") == 8


def test_sessions_in_parallel_on_two_keys(lib, tok):
    """Four sessions in four threads, two keys: the client core runs
    concurrently (the module mutex is not held while signing) and sessions
    on the same key wait for each other."""
    tok.keygen("p256", "a")
    tok.keygen("secp256k1", "b")
    token = token_of(lib)
    errors, done = [], []
    login = token.open(user_pin=PIN)  # keeps the slot logged in

    def work(label, curve):
        try:
            with token.open() as session:
                priv = session.get_key(ObjectClass.PRIVATE_KEY, label=label)
                key = public_key(session.get_key(ObjectClass.PUBLIC_KEY,
                                                 label=label), curve)
                for i in range(3):
                    msg = f"{label} {i}".encode()
                    sig = priv.sign(msg, mechanism=Mechanism.ECDSA_SHA384)
                    check_sig(key, curve, sig, data=msg,
                              hash_cls=hashes.SHA384)
                    done.append(label)
        except Exception as exc:  # reported below
            errors.append(repr(exc))

    threads = [threading.Thread(target=work, args=args) for args in
               [("a", "p256"), ("b", "secp256k1")] * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    login.close()
    assert errors == []
    assert sorted(done) == ["a"] * 6 + ["b"] * 6


def test_sign_init_while_another_process_signs(lib, tok, server):
    """While another process is in the middle of a sign with the key (its
    in-flight record written, its session lock held: here the CLI, its c3
    held back by a man in the middle), C_SignInit must not take the key
    for locked: C_Sign waits for that session, then signs. (Before, the
    module read the record without asking whether anyone held the session
    lock, and refused with CKR_KEY_FUNCTION_NOT_PERMITTED; seen in CI as a
    flake of test_sessions_in_parallel_on_two_keys.)"""
    from mitm import Mitm, point_token_at
    from test_backup import Hold

    tok.keygen("p256", "busy")
    token = token_of(lib)  # the module reads halfkey.conf now: the server
    hold = Hold("s2c", "sign.4")
    mitm = Mitm(server, hold)
    point_token_at(tok, mitm.url)
    proc = tok.popen("sign", "--key", "busy", "--digest", "11" * 32)
    try:
        assert hold.reached.wait(60), proc.communicate(timeout=5)
        point_token_at(tok, server.url)
        assert not tok.list()["busy"][3]  # in progress, not locked
        result = {}

        def sign():
            try:
                with token.open(user_pin=PIN) as session:
                    priv = session.get_key(ObjectClass.PRIVATE_KEY,
                                           label="busy")
                    pub = public_key(session.get_key(ObjectClass.PUBLIC_KEY,
                                                     label="busy"), "p256")
                    sig = priv.sign(b"while busy",
                                    mechanism=Mechanism.ECDSA_SHA256)
                    check_sig(pub, "p256", sig, data=b"while busy",
                              hash_cls=hashes.SHA256)
                    result["ok"] = True
            except Exception as exc:  # reported below
                result["error"] = repr(exc)

        t = threading.Thread(target=sign)
        t.start()
        t.join(1.5)
        assert t.is_alive() and not result, result  # waiting, not refused
    finally:
        hold.release.set()  # the CLI's connection is cut before its c3
    t.join(120)
    proc.communicate(timeout=60)
    mitm.close()
    assert result == {"ok": True}, result
    assert proc.returncode != 0
    assert not tok.list()["busy"][3]


def test_locked_key_is_refused(lib, tok, build_dir, capfd):
    tok.keygen("p256", "lk")
    subprocess.run([str(build_dir / "ossl-provider" / "hk-lock-key"),
                    str(tok.dir), "lk"], check=True, env=tok.env)
    token = token_of(lib)
    with token.open(user_pin=PIN) as session:
        priv = session.get_key(ObjectClass.PRIVATE_KEY, label="lk")
        assert priv[Attribute.SIGN] is True
        with pytest.raises(pkcs11.PKCS11Error) as exc:
            priv.sign(b"data", mechanism=Mechanism.ECDSA_SHA256)
        # CKR_KEY_FUNCTION_NOT_PERMITTED (exact code: test_raw_...)
        assert type(exc.value).__name__ in ("PKCS11Error",
                                            "KeyFunctionNotPermitted")
    err = capfd.readouterr().err
    assert "halfkey-pkcs11: sign: key lk is locked" in err
    assert "halfkey unlock --key lk" in err


def test_keygen_template_errors(lib, tok):
    token = token_of(lib)
    with token.open(user_pin=PIN, rw=True) as session:
        with pytest.raises(pkcs11.PKCS11Error):  # CKR_CURVE_NOT_SUPPORTED
            p = session.create_domain_parameters(
                KeyType.EC, {Attribute.EC_PARAMS:
                             encode_named_curve_parameters("secp384r1")},
                local=True)
            p.generate_keypair(store=True, label="x384")
        with pytest.raises(pkcs11.AttributeValueInvalid):
            keygen(session, "p256", "bad label/")
        pub, priv = keygen(session, "p256", "dup")
        with pytest.raises(pkcs11.AttributeValueInvalid):
            keygen(session, "p256", "dup")
    with token.open() as session:
        with pytest.raises(pkcs11.SessionReadOnly):
            keygen(session, "p256", "ro")
    with token.open(rw=True) as session:
        with pytest.raises(pkcs11.UserNotLoggedIn):
            keygen(session, "p256", "nologin")


def make_cert(pub_key, cn):
    """A certificate for pub_key issued by a throwaway CA."""
    ca = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer)
            .public_key(pub_key).serial_number(4711).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1))
            .sign(ca, hashes.SHA256()))
    return cert, cert.public_bytes(serialization.Encoding.DER)


def test_certificate_and_data_objects(lib, tok):
    tok.keygen("p256", "web")
    token = token_of(lib)
    with token.open(user_pin=PIN, rw=True) as session:
        pub = session.get_key(ObjectClass.PUBLIC_KEY, label="web")
        kid = pub[Attribute.ID]
        cert, der = make_cert(public_key(pub, "p256"), "web")
        c = session.create_object({
            Attribute.CLASS: ObjectClass.CERTIFICATE,
            Attribute.CERTIFICATE_TYPE: pkcs11.CertificateType.X_509,
            Attribute.VALUE: der, Attribute.ID: kid, Attribute.LABEL: "web",
            Attribute.TOKEN: True})
        assert c[Attribute.SUBJECT] == cert.subject.public_bytes()
        assert c[Attribute.ISSUER] == cert.issuer.public_bytes()
        d = session.create_object({Attribute.CLASS: ObjectClass.DATA,
                                   Attribute.APPLICATION: "halfkey-test",
                                   Attribute.LABEL: "note",
                                   Attribute.VALUE: b"hello"})
        assert d[Attribute.VALUE] == b"hello"
        with pytest.raises(pkcs11.TemplateInconsistent):
            session.create_object({Attribute.CLASS: ObjectClass.DATA,
                                   Attribute.PRIVATE: True,
                                   Attribute.VALUE: b"secret"})
        with pytest.raises(pkcs11.AttributeValueInvalid):
            session.create_object({
                Attribute.CLASS: ObjectClass.CERTIFICATE,
                Attribute.CERTIFICATE_TYPE: pkcs11.CertificateType.X_509,
                Attribute.VALUE: b"not DER"})
    with token.open() as session:  # not logged in: read only
        with pytest.raises(pkcs11.SessionReadOnly):
            session.create_object({Attribute.CLASS: ObjectClass.DATA,
                                   Attribute.VALUE: b"x"})
    lib.reinitialize()  # stored in the token: still there
    token = token_of(lib)
    with token.open() as session:
        (c,) = session.get_objects({Attribute.CLASS: ObjectClass.CERTIFICATE})
        assert c[Attribute.VALUE] == der and c[Attribute.ID] == kid
        assert c[Attribute.SERIAL_NUMBER] == bytes([2, 2, 0x12, 0x67])
    with token.open(user_pin=PIN, rw=True) as session:
        found = list(session.get_objects({Attribute.ID: kid}))
        assert sorted(o.object_class for o in found) == sorted(
            [ObjectClass.CERTIFICATE, ObjectClass.PUBLIC_KEY,
             ObjectClass.PRIVATE_KEY])
        (d,) = session.get_objects({Attribute.LABEL: "note"})
        d.destroy()
        assert list(session.get_objects({Attribute.LABEL: "note"})) == []
        priv = session.get_key(ObjectClass.PRIVATE_KEY, label="web")
        # the public key of a live key is the key's own: not destroyed
        with pytest.raises(pkcs11.PKCS11Error):  # CKR_ACTION_PROHIBITED
            pub.destroy()
        assert pub[Attribute.LABEL] == "web"
        assert len(list(session.get_objects(
            {Attribute.CLASS: ObjectClass.CERTIFICATE}))) == 1
        # C_SetAttributeValue: label and id of a certificate, id of a key
        (c,) = session.get_objects({Attribute.CLASS: ObjectClass.CERTIFICATE})
        c[Attribute.LABEL] = "web-renamed"
        c[Attribute.ID] = b"\x01\x02"
        assert c[Attribute.LABEL] == "web-renamed"
        with pytest.raises(pkcs11.AttributeReadOnly):
            c[Attribute.VALUE] = b"x"
        priv[Attribute.ID] = b"\x01\x02"
        with pytest.raises(pkcs11.AttributeReadOnly):
            priv[Attribute.LABEL] = "other"
        found = list(session.get_objects({Attribute.ID: b"\x01\x02"}))
        assert len(found) == 3
        assert priv[Attribute.LABEL] == "web"
    assert "web" in tok.list()  # the CLI reads the token as before


def test_session_objects(lib, tok):
    """CKA_TOKEN false: certificates and data objects that live in the
    session that made them, seen by the application's other sessions (the
    private ones only logged in), gone at C_CloseSession, never stored."""
    tok.keygen("p256", "web")
    token = token_of(lib)
    other = token.open()  # another session of the application
    with token.open() as ro:  # R/O, public: public session objects only
        d = ro.create_object({Attribute.CLASS: ObjectClass.DATA,
                              Attribute.TOKEN: False, Attribute.LABEL: "tmp",
                              Attribute.VALUE: b"scratch"})
        assert d[Attribute.TOKEN] is False and d[Attribute.VALUE] == b"scratch"
        with pytest.raises(pkcs11.UserNotLoggedIn):
            ro.create_object({Attribute.CLASS: ObjectClass.DATA,
                              Attribute.TOKEN: False, Attribute.PRIVATE: True,
                              Attribute.VALUE: b"x"})
        (seen,) = other.get_objects({Attribute.LABEL: "tmp"})
        assert seen[Attribute.VALUE] == b"scratch"
        d[Attribute.LABEL] = "tmp2"  # a session object is writable here
        assert [o[Attribute.LABEL] for o in ro.get_objects(
            {Attribute.CLASS: ObjectClass.DATA})] == ["tmp2"]
    # closed: gone for everyone
    assert list(other.get_objects({Attribute.CLASS: ObjectClass.DATA})) == []
    other.close()
    with token.open(user_pin=PIN) as session:
        pub = session.get_key(ObjectClass.PUBLIC_KEY, label="web")
        _, der = make_cert(public_key(pub, "p256"), "web")
        c = session.create_object({
            Attribute.CLASS: ObjectClass.CERTIFICATE,
            Attribute.CERTIFICATE_TYPE: pkcs11.CertificateType.X_509,
            Attribute.VALUE: der, Attribute.ID: pub[Attribute.ID],
            Attribute.TOKEN: False})
        p = session.create_object({Attribute.CLASS: ObjectClass.DATA,
                                   Attribute.TOKEN: False,
                                   Attribute.PRIVATE: True,
                                   Attribute.LABEL: "secret-note",
                                   Attribute.VALUE: b"s"})
        assert c[Attribute.SERIAL_NUMBER] == bytes([2, 2, 0x12, 0x67])
        found = list(session.get_objects({Attribute.ID: pub[Attribute.ID]}))
        assert sorted(o.object_class for o in found) == sorted(
            [ObjectClass.CERTIFICATE, ObjectClass.PUBLIC_KEY,
             ObjectClass.PRIVATE_KEY])
        with token.open() as second:  # same login state: sees both
            assert len(list(second.get_objects(
                {Attribute.LABEL: "secret-note"}))) == 1
            assert len(list(second.get_objects(
                {Attribute.CLASS: ObjectClass.CERTIFICATE}))) == 1
        p.destroy()
        assert list(session.get_objects(
            {Attribute.LABEL: "secret-note"})) == []
    assert not (tok.dir / "objects.bin").exists()  # never stored
    with token.open(user_pin=PIN) as session:
        assert list(session.get_objects(
            {Attribute.CLASS: ObjectClass.CERTIFICATE})) == []
        assert list(session.get_objects(
            {Attribute.CLASS: ObjectClass.DATA})) == []


# --- raw argument checks (ctypes, in a child process) -----------------------

RAW = r'''
import ctypes, os, sys
from ctypes import (c_ulong, c_void_p, c_char_p, byref, POINTER, Structure,
                    create_string_buffer)
m = ctypes.CDLL(sys.argv[1])
PIN = sys.argv[2].encode()
U = c_ulong
class Args(Structure):
    _fields_ = [("c", c_void_p), ("d", c_void_p), ("l", c_void_p),
                ("u", c_void_p), ("flags", U), ("res", c_void_p)]
class Attr(Structure):
    _fields_ = [("type", U), ("p", c_void_p), ("len", U)]
class Mech(Structure):
    _fields_ = [("mech", U), ("p", c_void_p), ("len", U)]
def rv(x):
    return hex(x)
out = []
def check(name, got, want):
    out.append(name)
    if got != want:
        print(f"{name}: got {rv(got)} want {rv(want)}"); sys.exit(1)
NI = 0x190
check("slotlist-not-init", m.C_GetSlotList(0, None, byref(U())), NI)
check("finalize-not-init", m.C_Finalize(None), NI)
check("sign-not-init", m.C_SignInit(U(1), None, U(1)), NI)
check("unsupported-not-init", m.C_EncryptInit(U(1), None, U(1)), NI)
# PKCS#11 3.0 interfaces: "PKCS 11" with the v2.40 list, not fork-safe
class Iface(Structure):
    _fields_ = [("name", c_char_p), ("fl", c_void_p), ("flags", U)]
n = U(0)
check("iflist-null", m.C_GetInterfaceList(None, None), 0x7)
check("iflist-size", m.C_GetInterfaceList(None, byref(n)), 0)
assert n.value == 1
il = (Iface * 1)()
small = U(0)
check("iflist-small", m.C_GetInterfaceList(il, byref(small)), 0x150)
check("iflist", m.C_GetInterfaceList(il, byref(n)), 0)
assert il[0].name == b"PKCS 11" and il[0].flags == 0
fl = c_void_p()
check("getfunctionlist", m.C_GetFunctionList(byref(fl)), 0)
assert il[0].fl == fl.value
ip = POINTER(Iface)()
P11 = c_char_p(b"PKCS 11")
check("iface-forksafe", m.C_GetInterface(P11, None, byref(ip), U(1)), 0x7)
check("iface-null-out", m.C_GetInterface(P11, None, None, U(0)), 0x7)
check("iface", m.C_GetInterface(P11, None, byref(ip), U(0)), 0)
assert ip.contents.fl == fl.value
check("iface-default", m.C_GetInterface(None, None, byref(ip), U(0)), 0)
assert ip.contents.name == b"PKCS 11"
v = (ctypes.c_ubyte * 2)(2, 40)
check("iface-v240", m.C_GetInterface(P11, v, byref(ip), U(0)), 0)
v = (ctypes.c_ubyte * 2)(3, 0)
check("iface-v30", m.C_GetInterface(P11, v, byref(ip), U(0)), 0x7)
check("iface-other", m.C_GetInterface(c_char_p(b"Vendor"), None, byref(ip),
                                      U(0)), 0x7)
a = Args(flags=0, res=1)
check("bad-reserved", m.C_Initialize(byref(a)), 0x7)
a = Args(flags=0x2, res=None)
a.c = ctypes.cast(m.C_Initialize, c_void_p)  # some but not all callbacks
check("partial-callbacks", m.C_Initialize(byref(a)), 0x7)
a = Args(flags=0x2 | 0x1, res=None)  # OS locking, can't create threads
check("init-os-locking", m.C_Initialize(byref(a)), 0)
check("init-twice", m.C_Initialize(None), 0x191)
n = U(0)
check("slotlist-size", m.C_GetSlotList(1, None, byref(n)), 0)
assert n.value == 1
small = U(0); lst = (U * 1)()
check("slotlist-small", m.C_GetSlotList(1, lst, byref(small)), 0x150)
check("slotinfo-bad", m.C_GetSlotInfo(U(7), c_void_p(1)), 0x3)
check("slotinfo-null", m.C_GetSlotInfo(U(0), None), 0x7)
h = U()
check("open-noserial", m.C_OpenSession(U(0), U(0), None, None, byref(h)),
      0xB4)
check("open", m.C_OpenSession(U(0), U(4), None, None, byref(h)), 0)
check("bad-session", m.C_CloseSession(U(999)), 0xB3)
check("encrypt", m.C_EncryptInit(h, None, U(1)), 0x54)
check("seed", m.C_SeedRandom(h, c_char_p(b"x"), U(1)), 0x120)
check("login-so", m.C_Login(h, U(0), c_char_p(PIN), U(len(PIN))), 0x103)
check("login-null", m.C_Login(h, U(1), None, U(4)), 0x7)
check("logout-not-in", m.C_Logout(h), 0x101)
check("login", m.C_Login(h, U(1), c_char_p(PIN), U(len(PIN))), 0)
check("login-again", m.C_Login(h, U(1), c_char_p(PIN), U(len(PIN))), 0x100)
# find the private key
CKA_CLASS, CKA_LABEL, CKA_VALUE, CKA_EC_POINT = 0, 3, 0x11, 0x181
cls = U(3)
tpl = (Attr * 1)(Attr(CKA_CLASS, ctypes.cast(byref(cls), c_void_p),
                      ctypes.sizeof(U)))
check("find-init", m.C_FindObjectsInit(h, tpl, U(1)), 0)
check("find-init-again", m.C_FindObjectsInit(h, tpl, U(1)), 0x90)
objs = (U * 4)(); cnt = U()
check("find", m.C_FindObjects(h, objs, U(4), byref(cnt)), 0)
assert cnt.value == 1, cnt.value
check("find-final", m.C_FindObjectsFinal(h), 0)
check("find-final-again", m.C_FindObjectsFinal(h), 0x91)
key = U(objs[0])
at = (Attr * 2)(Attr(CKA_LABEL, None, 0), Attr(CKA_VALUE, None, 0))
check("attr-sensitive", m.C_GetAttributeValue(h, key, at, U(2)), 0x11)
assert at[0].len == 3 and at[1].len == 0xFFFFFFFFFFFFFFFF
buf = create_string_buffer(1)
at = (Attr * 1)(Attr(CKA_LABEL, ctypes.cast(buf, c_void_p), 1))
check("attr-small", m.C_GetAttributeValue(h, key, at, U(1)), 0x150)
at = (Attr * 1)(Attr(0x7FFF0000, None, 0))
check("attr-type", m.C_GetAttributeValue(h, key, at, U(1)), 0x12)
check("attr-badobj", m.C_GetAttributeValue(h, U(12345), at, U(1)), 0x82)
# vendor refresh: HK_CKA_REFRESH = TRUE on the private key (R/W session)
EPOCH, REFRESH = (1 << 31) | 0x484b0001, (1 << 31) | 0x484b0002
def epoch():
    e = U(0)
    at = (Attr * 1)(Attr(EPOCH, ctypes.cast(byref(e), c_void_p),
                         ctypes.sizeof(U)))
    check("epoch", m.C_GetAttributeValue(h, key, at, U(1)), 0)
    return e.value
yes = ctypes.c_ubyte(1)
rt = (Attr * 1)(Attr(REFRESH, ctypes.cast(byref(yes), c_void_p), 1))
check("refresh-ro", m.C_SetAttributeValue(h, key, rt, U(1)), 0xB5)
lt = (Attr * 1)(Attr(CKA_LABEL, ctypes.cast(c_char_p(b"x"), c_void_p), 1))
h2 = U()
check("open-rw", m.C_OpenSession(U(0), U(6), None, None, byref(h2)), 0)
check("set-key-label", m.C_SetAttributeValue(h2, key, lt, U(1)), 0x10)
e0 = epoch()
check("refresh", m.C_SetAttributeValue(h2, key, rt, U(1)), 0)
assert epoch() == e0 + 1, (e0, epoch())
mech = Mech(0x1041, None, 0)  # CKM_ECDSA
sig = create_string_buffer(64); sl = U(0)
check("sign-noinit", m.C_Sign(h, c_char_p(b"x" * 32), U(32), sig,
      byref(sl)), 0x91)
check("signinit-badkey", m.C_SignInit(h, byref(mech), U(99)), 0x60)
bad = Mech(0x1, None, 0)
check("signinit-badmech", m.C_SignInit(h, byref(bad), key), 0x70)
check("signinit", m.C_SignInit(h, byref(mech), key), 0)
check("signinit-again", m.C_SignInit(h, byref(mech), key), 0x90)
d = c_char_p(b"\x01" * 32)
check("sign-size", m.C_Sign(h, d, U(32), None, byref(sl)), 0)
assert sl.value == 64
sl = U(10)
check("sign-small", m.C_Sign(h, d, U(32), sig, byref(sl)), 0x150)
assert sl.value == 64
check("sign", m.C_Sign(h, d, U(32), sig, byref(sl)), 0)
check("sign-after", m.C_Sign(h, d, U(32), sig, byref(sl)), 0x91)
# a key locked after an abort: CKR_KEY_FUNCTION_NOT_PERMITTED
import subprocess
subprocess.run([sys.argv[3], sys.argv[4], "raw"], check=True,
               env=dict(os.environ, HALFKEY_PIN=sys.argv[2]))
check("signinit-locked", m.C_SignInit(h, byref(mech), key), 0x68)
# ... and it is not refreshed either: a refresh does not clear the abort
# lock (DESIGN.md section 2)
check("refresh-locked", m.C_SetAttributeValue(h2, key, rt, U(1)), 0x68)
# fork: the child must initialise again
pid = os.fork()
if pid == 0:
    r1 = m.C_GetSlotList(0, None, byref(U()))
    r2 = m.C_Initialize(None)
    r3 = m.C_OpenSession(U(0), U(4), None, None, byref(U()))
    r4 = m.C_Finalize(None)
    os._exit(0 if (r1, r2, r3, r4) == (NI, 0, 0, 0) else 1)
_, status = os.waitpid(pid, 0)
check("fork-child", status, 0)
check("close-all", m.C_CloseAllSessions(U(0)), 0)
check("closed", m.C_CloseSession(h), 0xB3)
check("finalize-bad", m.C_Finalize(c_void_p(1)), 0x7)
check("finalize", m.C_Finalize(None), 0)
check("after-finalize", m.C_GetInfo(c_void_p(1)), NI)
# the caller's mutex callbacks (no CKF_OS_LOCKING_OK): the module uses them
import threading
locks, calls = {}, []
CREATE = ctypes.CFUNCTYPE(U, POINTER(c_void_p))
OTHER = ctypes.CFUNCTYPE(U, c_void_p)
def create(pp):
    locks[len(locks) + 1] = threading.Lock()
    pp[0] = len(locks)
    calls.append("create")
    return 0
def destroy(p):
    calls.append("destroy")
    return 0
def lock(p):
    locks[p].acquire()
    calls.append("lock")
    return 0
def unlock(p):
    locks[p].release()
    return 0
cbs = [CREATE(create), OTHER(destroy), OTHER(lock), OTHER(unlock)]
a = Args(flags=0, res=None)
a.c, a.d, a.l, a.u = [ctypes.cast(f, c_void_p) for f in cbs]
check("init-callbacks", m.C_Initialize(byref(a)), 0)
check("open-cb", m.C_OpenSession(U(0), U(4), None, None, byref(h)), 0)
check("finalize-cb", m.C_Finalize(None), 0)
assert calls[0] == "create" and calls[-1] == "destroy", calls
assert calls.count("lock") >= 2, calls
print("ok", len(out))
'''


def test_raw_argument_checks(tok, module_path, tmp_path, build_dir):
    tok.keygen("p256", "raw")
    env = dict(os.environ, HALFKEY_PKCS11_TOKENS=str(tok.dir))
    script = tmp_path / "raw.py"
    script.write_text(RAW)
    locker = build_dir / "ossl-provider" / "hk-lock-key"
    p = subprocess.run([sys.executable, str(script), module_path, PIN,
                        str(locker), str(tok.dir)],
                       capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0 and p.stdout.startswith("ok"), \
        p.stdout + p.stderr
    assert tok.list()["raw"][2:] == (2, True)  # refreshed once, then locked


# --- OpenSC pkcs11-tool ---------------------------------------------------


@pytest.fixture
def p11tool(tok, module_path):
    tool = shutil.which("pkcs11-tool")
    if tool is None:
        pytest.skip("pkcs11-tool (Debian package opensc) is not installed")
    env = dict(os.environ, HALFKEY_PKCS11_TOKENS=str(tok.dir))

    def run(*args, check=True):
        p = subprocess.run([tool, "--module", module_path, *map(str, args)],
                           capture_output=True, env=env, timeout=120)
        if check and p.returncode != 0:
            pytest.fail(f"pkcs11-tool {' '.join(map(str, args))}: "
                        f"{p.returncode}\n{p.stdout.decode()}\n"
                        f"{p.stderr.decode()}")
        return p
    return run


@pytest.mark.parametrize("curve,name", [("p256", "prime256v1"),
                                        ("secp256k1", "secp256k1")])
def test_pkcs11_tool(p11tool, tok, tmp_path, curve, name):
    out = p11tool("-L").stdout.decode()
    assert "halfkey" in out and "token initialized" in out
    p11tool("--login", "--pin", PIN, "--keypairgen", "--key-type",
            f"EC:{name}", "--label", f"tool-{curve}", "--id", "c0ffee")
    out = p11tool("--login", "--pin", PIN, "--list-objects").stdout.decode()
    assert f"tool-{curve}" in out and "Private Key Object; EC" in out
    data = tmp_path / "data.bin"
    data.write_bytes(os.urandom(300))
    sig = tmp_path / "sig.bin"
    p11tool("--login", "--pin", PIN, "--sign", "--mechanism", "ECDSA-SHA256",
            "--id", "c0ffee", "--input-file", data, "--output-file", sig)
    pem = tok.pubkey_pem(f"tool-{curve}")
    key = serialization.load_pem_public_key(pem)
    raw = sig.read_bytes()
    check_sig(key, curve, raw, data=data.read_bytes(),
              hash_cls=hashes.SHA256)
    with pytest.raises(InvalidSignature):
        check_sig(key, curve, raw, data=b"other", hash_cls=hashes.SHA256)
    # a certificate for the key, linked by CKA_ID
    pub_der = p11tool("--read-object", "--type", "pubkey", "--label",
                      f"tool-{curve}").stdout
    assert serialization.load_der_public_key(pub_der).public_numbers() == \
        key.public_numbers()
    _, cert_der = make_cert(key, f"tool-{curve}")
    (tmp_path / "cert.der").write_bytes(cert_der)
    kid = "c0ffee"
    p11tool("--login", "--pin", PIN, "--write-object", tmp_path / "cert.der",
            "--type", "cert", "--id", kid, "--label", f"cert-{curve}")
    out = p11tool("--list-objects").stdout.decode()
    assert "Certificate Object" in out and f"cert-{curve}" in out
    assert p11tool("--read-object", "--type", "cert", "--id",
                   kid).stdout == cert_der


# --- NSS (certutil, modutil from libnss3-tools) ---------------------------


def test_nss_lists_token_and_key(tok, tmp_path, module_path):
    if shutil.which("certutil") is None or shutil.which("modutil") is None:
        pytest.skip("certutil/modutil (Debian libnss3-tools) not installed")
    kid = tok.keygen("p256", "nsskey")
    db = f"sql:{tmp_path / 'nssdb'}"
    (tmp_path / "nssdb").mkdir()
    env = dict(os.environ, HALFKEY_PKCS11_TOKENS=str(tok.dir))
    pin = tmp_path / "pin"
    pin.write_text(PIN + "\n")

    def run(*cmd, input=None):
        p = subprocess.run(list(map(str, cmd)), capture_output=True,
                           env=env, timeout=60, input=input)
        assert p.returncode == 0, p.stdout.decode() + p.stderr.decode()
        return p.stdout.decode() + p.stderr.decode()

    run("certutil", "-N", "-d", db, "--empty-password")
    run("modutil", "-dbdir", db, "-add", "halfkey", "-libfile",
        module_path, "-force")
    assert "token: halfkey" in run("certutil", "-U", "-d", db)
    out = run("certutil", "-K", "-d", db, "-h", "halfkey", "-f", pin)
    assert f"ec       {kid}           nsskey" in out.replace("\t", " "), out
    # a certificate imported into the token by NSS, found again by NSS
    pem = tok.pubkey_pem("nsskey")
    _, der = make_cert(serialization.load_pem_public_key(pem), "nss")
    (tmp_path / "c.der").write_bytes(der)
    run("certutil", "-A", "-d", db, "-h", "halfkey", "-f", pin, "-n",
        "halfkey:nsscert", "-t", ",,", "-i", tmp_path / "c.der")
    out = run("certutil", "-L", "-d", db, "-h", "halfkey", "-f", pin)
    assert "halfkey:nsscert" in out, out


def test_pkcs11_tool_test_suites(p11tool, tok):
    """OpenSC's own tests against the module: --test-ec (keygen in an R/W
    session, CKA_ID changes, sign, then destroying both keys: on the server
    too), --test-threads (threads racing C_Initialize, C_GetInfo,
    C_GetSlotList, C_GetTokenInfo) and --list-objects."""
    tok.keygen("p256", "cli-key")
    p = p11tool("--login", "--pin", PIN, "--session-rw", "--test-ec",
                "--id", "e1", "--key-type", "EC:prime256v1")
    out = p.stdout.decode()
    assert "Doing a signature" in out and "Aborting" not in out, out
    assert list(tok.list()) == ["cli-key"]  # the test key is gone
    out = p11tool("--test-threads", "ILGISLT0", "--test-threads",
                  "INGISLT0GI", "--test-threads", "ILSLT0GI", "-L"
                  ).stdout.decode()
    assert "all threads have ended with no errors" in out or \
        "some errors" not in out, out
    assert out.count("Slot 0 (0x0)") >= 1 and "Slot 1" not in out, out
    out = p11tool("--login", "--pin", PIN, "--list-objects").stdout.decode()
    assert out.count("Private Key Object; EC") == 1, out
    assert out.count("Public Key Object; EC") == 1, out
    assert "label:      cli-key" in out, out


SO_PIN = "so-secret-1"


def token_flags(p11tool):
    out = p11tool("-L").stdout.decode()
    (line,) = [x for x in out.splitlines() if "token flags" in x]
    return line


def test_so_pin_init_token_init_pin(p11tool, tok, tmp_path):
    """C_InitToken sets the SO PIN (no SO yet), C_InitPIN by the SO resets
    a locked user PIN once the user escrowed for the SO (`halfkey
    set-so-pin`), C_SetPIN as SO changes the SO PIN, C_InitToken with the
    SO PIN re-initialises the token (its keys deleted locally), all driven
    by pkcs11-tool."""
    tok.keygen("p256", "k1")
    p11tool("--init-token", "--so-pin", SO_PIN, "--label", "so-token")
    out = p11tool("-L").stdout.decode()
    assert "so-token" in out
    # keys sealed under a user PIN the SO cannot open yet: refused
    p = p11tool("--init-pin", "--so-pin", SO_PIN, "--pin", "new-pin-1",
                check=False)
    assert p.returncode != 0 and b"not escrowed" in p.stderr
    so_file = tmp_path / "so-pin"
    so_file.write_text(SO_PIN + "\n")
    out = tok.run("set-so-pin", "--so-pin-file", so_file).stdout
    assert "escrow = yes" in out
    # the user forgets the PIN: locked out
    for _ in range(10):
        p11tool("--login", "--pin", "wrong-pin", "--list-objects",
                check=False)
    assert "user PIN locked" in token_flags(p11tool)
    # a wrong SO PIN is counted
    p = p11tool("--init-pin", "--so-pin", "wrong-so", "--pin", "new-pin-1",
                check=False)
    assert p.returncode != 0
    assert "SO PIN count low" in token_flags(p11tool)
    p11tool("--init-pin", "--so-pin", SO_PIN, "--pin", "new-pin-1")
    flags = token_flags(p11tool)
    assert "locked" not in flags and "count low" not in flags, flags
    out = p11tool("--login", "--pin", "new-pin-1",
                  "--list-objects").stdout.decode()
    assert "Private Key Object; EC" in out and "k1" in out
    tok.env["HALFKEY_PIN"] = "new-pin-1"  # the key signs with the new PIN
    tok.run("sign", "--key", "k1", "--digest", "11" * 32)
    # C_SetPIN as the SO
    p11tool("--login", "--login-type", "so", "--so-pin", SO_PIN,
            "--change-pin", "--new-pin", "so-secret-2")
    p = p11tool("--init-token", "--so-pin", SO_PIN, "--label", "x",
                check=False)
    assert p.returncode != 0 and list(tok.list()) == ["k1"]
    # re-initialisation: the keys are deleted here (orphaned on the server)
    p11tool("--init-token", "--so-pin", "so-secret-2", "--label", "again")
    assert tok.list() == {}
    assert "again" in p11tool("-L").stdout.decode()
    p11tool("--login", "--pin", "new-pin-1", "--list-objects")


# --- p11-kit ----------------------------------------------------------------


@pytest.fixture
def p11kit_home(tok, build_dir):
    """A private p11-kit user configuration registering the module (the
    build's halfkey.module, its `module:` pointed at the build), and a copy
    of the token, both usable by an unprivileged user. p11-kit has no
    environment override for its configuration directories and, run as
    root, ignores the user's (~/.config/pkcs11/modules); so as root the
    p11-kit commands run as `nobody` (runuser) with HOME set here; as
    another user they run as that user."""
    for tool in ("p11-kit", "pkg-config"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    root = os.geteuid() == 0
    if root and shutil.which("runuser") is None:
        pytest.skip("runuser is needed to drop root for p11-kit")
    base = pathlib.Path(tempfile.mkdtemp(prefix="hk-p11kit-", dir="/tmp"))
    base.chmod(0o755)
    mods = base / "home" / ".config" / "pkcs11" / "modules"
    mods.mkdir(parents=True)
    conf = (build_dir / "pkcs11" / "halfkey.module").read_text()
    assert re.search(r"^module: /.*/libhalfkey-pkcs11\.so$", conf, re.M)
    assert "critical: no" in conf
    lib = build_dir / "pkcs11" / "libhalfkey-pkcs11.so"
    (mods / "halfkey.module").write_text(
        re.sub(r"^module: .*$", f"module: {lib}", conf, flags=re.M))
    tdir = base / "tok"
    shutil.copytree(tok.dir, tdir)
    jwt = base / "token.jwt"
    shutil.copy(tok.server_jwt_file(), jwt)
    hconf = tdir / "halfkey.conf"
    hconf.write_text(re.sub(r"^token_file = .*$", f"token_file = {jwt}",
                            hconf.read_text(), flags=re.M))
    if root:
        subprocess.run(["chown", "-R", "nobody", str(base)], check=True)
    env = {"HOME": str(base / "home"), "PATH": os.environ["PATH"],
           "HALFKEY_PKCS11_TOKENS": str(tdir)}
    prefix = ["runuser", "-u", "nobody", "--"] if root else []

    def run(*cmd):
        p = subprocess.run([*prefix, "env", *[f"{k}={v}" for k, v in
                                              env.items()], *map(str, cmd)],
                           capture_output=True, timeout=120)
        assert p.returncode == 0, p.stdout.decode() + p.stderr.decode()
        return p.stdout.decode()

    run.base = base
    yield run
    shutil.rmtree(base, ignore_errors=True)


def test_p11kit_lists_module_and_proxy_signs(tok, p11kit_home):
    if shutil.which("pkcs11-tool") is None:
        pytest.skip("pkcs11-tool (Debian package opensc) is not installed")
    kid = tok.keygen("p256", "px")
    shutil.copy(tok.dir / "keys" / "px.json",
                p11kit_home.base / "tok" / "keys" / "px.json")
    if os.geteuid() == 0:
        subprocess.run(["chown", "-R", "nobody", str(p11kit_home.base)],
                       check=True)
    out = p11kit_home("p11-kit", "list-modules")
    block = out[out.index("halfkey: "):].splitlines()
    end = next((i for i, x in enumerate(block[1:], 1)
                if not x.startswith(" ")), len(block))
    block = "\n".join(block[:end])  # the halfkey module's lines only
    assert "library-manufacturer: halfkey" in block, out
    assert "token: halfkey" in block, out
    proxy = subprocess.run(["pkg-config", "--variable=proxy_module",
                            "p11-kit-1"], capture_output=True, text=True,
                           check=True).stdout.strip()
    out = p11kit_home("pkcs11-tool", "--module", proxy, "-L")
    assert "token label        : halfkey" in out, out
    data = p11kit_home.base / "data.bin"
    data.write_bytes(os.urandom(100))
    sig = p11kit_home.base / "sig.bin"
    if os.geteuid() == 0:
        subprocess.run(["chown", "nobody", str(data), str(p11kit_home.base)],
                       check=True)
    p11kit_home("pkcs11-tool", "--module", proxy, "--token-label", "halfkey",
                "--login", "--pin", PIN, "--sign", "--mechanism",
                "ECDSA-SHA256", "--id", kid, "--input-file", data,
                "--output-file", sig)
    key = serialization.load_pem_public_key(tok.pubkey_pem("px"))
    check_sig(key, "p256", sig.read_bytes(), data=data.read_bytes(),
              hash_cls=hashes.SHA256)


# --- digests, public key objects, the application's view (issue 21) --------

DIGESTS = {Mechanism.SHA_1: "sha1", Mechanism.SHA224: "sha224",
           Mechanism.SHA256: "sha256", Mechanism.SHA384: "sha384",
           Mechanism.SHA512: "sha512"}


def test_digest_mechanisms(lib):
    token = token_of(lib)
    slot = lib.get_slots(token_present=True)[0]
    mechs = slot.get_mechanisms()
    data = os.urandom(5000)
    with token.open() as s:  # no login: digests need none
        for mech, name in DIGESTS.items():
            assert mech in mechs
            info = slot.get_mechanism_info(mech)
            assert info.flags & pkcs11.MechanismFlag.DIGEST
            assert not info.flags & (pkcs11.MechanismFlag.SIGN |
                                     pkcs11.MechanismFlag.VERIFY)
            want = hashlib.new(name, data).digest()
            assert s.digest(data, mechanism=mech) == want
            # multi-part: C_DigestUpdate per chunk, C_DigestFinal
            parts = (data[i:i + 777] for i in range(0, len(data), 777))
            assert s.digest(parts, mechanism=mech) == want
            assert s.digest(b"", mechanism=mech) == hashlib.new(
                name, b"").digest()
    # ECDSA mechanisms do not digest
    with token.open() as s, pytest.raises(pkcs11.MechanismInvalid):
        s.digest(b"x", mechanism=Mechanism.ECDSA_SHA256)


def ec_point_der(pub):
    pt = pub.public_bytes(serialization.Encoding.X962,
                          serialization.PublicFormat.UncompressedPoint)
    return b"\x04" + bytes([len(pt)]) + pt


def pub_template(curve, point_der, token, label="imported"):
    return {Attribute.CLASS: ObjectClass.PUBLIC_KEY,
            Attribute.KEY_TYPE: KeyType.EC,
            Attribute.EC_PARAMS: encode_named_curve_parameters(
                CURVES[curve][1]),
            Attribute.EC_POINT: point_der, Attribute.TOKEN: token,
            Attribute.LABEL: label}


@pytest.mark.parametrize("curve", sorted(CURVES))
def test_public_key_objects_verify(lib, tok, curve):
    """C_CreateObject of EC public keys (session and token objects) and
    C_Verify with them: a foreign key's signatures, and the halfkey key's
    own signature through a copy of its public key."""
    tok.keygen(curve, "hk")
    token = token_of(lib)
    other = ec.generate_private_key(CURVES[curve][0]())
    data = b"verify with an imported key"
    der = other.sign(data, ec.ECDSA(hashes.SHA256()))
    r, s_ = utils.decode_dss_signature(der)
    raw = r.to_bytes(32, "big") + s_.to_bytes(32, "big")
    with token.open(user_pin=PIN, rw=True) as s:
        for is_token in (False, True):
            pub = s.create_object(pub_template(
                curve, ec_point_der(other.public_key()), is_token,
                f"imported-{is_token}"))
            assert pub[Attribute.TOKEN] == is_token
            assert pub[Attribute.VERIFY] is True
            assert pub[Attribute.LOCAL] is False
            assert pub.verify(data, raw, mechanism=Mechanism.ECDSA_SHA256)
            bad = raw[:-1] + bytes([raw[-1] ^ 1])
            assert not pub.verify(data, bad,
                                  mechanism=Mechanism.ECDSA_SHA256)
            digest = hashlib.sha256(data).digest()
            assert pub.verify(digest, raw, mechanism=Mechanism.ECDSA)
        # the halfkey key's signature, checked with an imported copy
        priv = s.get_key(ObjectClass.PRIVATE_KEY, KeyType.EC, label="hk")
        kpub = s.get_key(ObjectClass.PUBLIC_KEY, KeyType.EC, label="hk")
        sig = priv.sign(data, mechanism=Mechanism.ECDSA_SHA256)
        copy = s.create_object(pub_template(
            curve, kpub[Attribute.EC_POINT], False, "copy"))
        assert copy.verify(data, sig, mechanism=Mechanism.ECDSA_SHA256)
        # the token object outlives the session, the session one does not
    with token.open() as s:
        labels = {o[Attribute.LABEL] for o in s.get_objects(
            {Attribute.CLASS: ObjectClass.PUBLIC_KEY})}
        assert "imported-True" in labels and "imported-False" not in labels
        pub = s.get_key(ObjectClass.PUBLIC_KEY, KeyType.EC,
                        label="imported-True")
        assert pub.verify(data, raw, mechanism=Mechanism.ECDSA_SHA256)


def test_public_key_object_checks(lib):
    token = token_of(lib)
    pt = ec_point_der(ec.generate_private_key(ec.SECP256R1()).public_key())
    with token.open(user_pin=PIN, rw=True) as s:
        off_curve = pt[:-1] + bytes([pt[-1] ^ 1])
        with pytest.raises(pkcs11.AttributeValueInvalid):
            s.create_object(pub_template("p256", off_curve, False))
        with pytest.raises(pkcs11.AttributeValueInvalid):
            s.create_object(pub_template("p256", pt[:-1], False))
        t = pub_template("p256", pt, False)
        t[Attribute.EC_PARAMS] = encode_named_curve_parameters("secp384r1")
        with pytest.raises(pkcs11.PKCS11Error):  # CKR_CURVE_NOT_SUPPORTED
            s.create_object(t)
        t = pub_template("p256", pt, False)
        del t[Attribute.EC_POINT]
        with pytest.raises(pkcs11.TemplateIncomplete):
            s.create_object(t)
        t = pub_template("p256", pt, False)
        t[Attribute.LOCAL] = True
        with pytest.raises(pkcs11.exceptions.AttributeReadOnly):
            s.create_object(t)
        # a public key that may not verify (C_VerifyInit's
        # CKR_KEY_FUNCTION_NOT_PERMITTED: conf:pubkey-object-verify)
        t = pub_template("p256", pt, False)
        t[Attribute.VERIFY] = False
        assert s.create_object(t)[Attribute.VERIFY] is False


def visible_labels(module_path, tok, **env):
    """The private key labels an application with env sees (a child
    process: the module reads the view at each refresh)."""
    code = ("import sys, pkcs11\n"
            "from pkcs11 import ObjectClass, Attribute\n"
            "lib = pkcs11.lib(sys.argv[1])\n"
            "(slot,) = lib.get_slots(token_present=True)\n"
            "with slot.get_token().open(user_pin=sys.argv[2]) as s:\n"
            "    print(','.join(sorted(o[Attribute.LABEL] for o in "
            "s.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY}))))\n")
    e = dict(os.environ, HALFKEY_PKCS11_TOKENS=str(tok.dir))
    for k in ("HALFKEY_HOME", "HALFKEY_PKCS11_CURVES", "HALFKEY_PKCS11_KEYS"):
        e.pop(k, None)
    e.update(env)
    p = subprocess.run([sys.executable, "-c", code, module_path, PIN],
                       capture_output=True, text=True, env=e, timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


def test_application_view_of_keys(module_path, tok, lib):
    tok.keygen("p256", "p")
    tok.keygen("secp256k1", "k")
    tok.keygen("p256", "q")
    assert visible_labels(module_path, tok) == "k,p,q"
    assert visible_labels(module_path, tok,
                          HALFKEY_PKCS11_CURVES="p256") == "p,q"
    assert visible_labels(module_path, tok,
                          HALFKEY_PKCS11_CURVES="P-256, secp256k1") == "k,p,q"
    assert visible_labels(module_path, tok, HALFKEY_PKCS11_KEYS="k,q") == "k,q"
    assert visible_labels(module_path, tok, HALFKEY_PKCS11_KEYS="k",
                          HALFKEY_PKCS11_CURVES="p256") == ""
    # halfkey.conf: the token's default view; the environment overrides it
    with open(tok.conf_path(), "a") as f:
        f.write("pkcs11_curves = secp256k1\n")
    assert visible_labels(module_path, tok) == "k"
    assert visible_labels(module_path, tok,
                          HALFKEY_PKCS11_CURVES="") == "k,p,q"
    # keygen on a curve the application is not shown
    with open(tok.conf_path(), "a") as f:
        f.write("pkcs11_keys = k, p\n")
    assert visible_labels(module_path, tok) == "k"
    lib.reinitialize()
    with token_of(lib).open(user_pin=PIN, rw=True) as s:
        with pytest.raises(pkcs11.PKCS11Error):  # CKR_CURVE_NOT_SUPPORTED
            s.generate_keypair(KeyType.EC, 256, store=True, label="new",
                               public_template={
                                   Attribute.EC_PARAMS:
                                   encode_named_curve_parameters(
                                       "secp256r1")})
