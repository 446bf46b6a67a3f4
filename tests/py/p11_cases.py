"""PKCS#11 v3.0 conformance rules of libhalfkey-pkcs11.so, driven through
the raw C API with ctypes (python-pkcs11 hides lengths, counts and NULL
pointers). Imported by test_p11_conformance.py for the rule names; run as a
script in a child process (the module's state is per process, and a rule
that crashes the module must not take pytest with it):

    p11_cases.py MODULE TOKEN_DIR PIN CERT_DER_FILE

prints one JSON line per rule: {"rule", "ok", "err", "info"}. Each rule
runs between its own C_Initialize and C_Finalize. doc/pkcs11-conformance.md
names the rules."""
import ctypes
import json
import os
import signal
import sys
import traceback
from ctypes import (POINTER, Structure, byref, c_char_p, c_ubyte, c_ulong,
                    c_void_p, cast, create_string_buffer, sizeof)

U = c_ulong
HUGE32 = 0xFFFFFFFF
UNAVAILABLE = (1 << (8 * sizeof(U))) - 1

# return codes
OK, HOST_MEMORY, ARGUMENTS_BAD, ACTION_PROHIBITED = 0, 0x2, 0x7, 0x1B
ATTRIBUTE_READ_ONLY, ATTRIBUTE_SENSITIVE = 0x10, 0x11
ATTRIBUTE_TYPE_INVALID, ATTRIBUTE_VALUE_INVALID = 0x12, 0x13
KEY_HANDLE_INVALID, KEY_FUNCTION_NOT_PERMITTED = 0x60, 0x68
MECHANISM_INVALID, OBJECT_HANDLE_INVALID = 0x70, 0x82
OPERATION_ACTIVE, OPERATION_NOT_INITIALIZED = 0x90, 0x91
SESSION_HANDLE_INVALID, SESSION_READ_ONLY = 0xB3, 0xB5
TEMPLATE_INCOMPLETE, TEMPLATE_INCONSISTENT = 0xD0, 0xD1
USER_NOT_LOGGED_IN, BUFFER_TOO_SMALL = 0x101, 0x150
CURVE_NOT_SUPPORTED, NOT_INITIALIZED = 0x140, 0x190

# attributes, classes, mechanisms
CKA_CLASS, CKA_TOKEN, CKA_PRIVATE, CKA_LABEL = 0x0, 0x1, 0x2, 0x3
CKA_UNIQUE_ID, CKA_APPLICATION, CKA_VALUE = 0x4, 0x10, 0x11
CKA_CERTIFICATE_TYPE, CKA_TRUSTED, CKA_CERTIFICATE_CATEGORY = 0x80, 0x86, 0x87
CKA_KEY_TYPE, CKA_ID, CKA_SENSITIVE = 0x100, 0x102, 0x103
CKA_START_DATE, CKA_EXTRACTABLE, CKA_LOCAL = 0x110, 0x162, 0x163
CKA_MODIFIABLE, CKA_COPYABLE, CKA_DESTROYABLE = 0x170, 0x171, 0x172
CKA_EC_PARAMS, CKA_EC_POINT = 0x180, 0x181
CKO_DATA, CKO_CERTIFICATE, CKO_PUBLIC_KEY, CKO_PRIVATE_KEY = 0, 1, 2, 3
CKM_EC_KEY_PAIR_GEN, CKM_ECDSA, CKM_ECDSA_SHA256 = 0x1040, 0x1041, 0x1044
CKU_SO, CKU_USER = 0, 1
CKF_RW, CKF_SERIAL = 0x2, 0x4
P256 = bytes.fromhex("06082a8648ce3d030107")
SO_PIN = b"so-pin-4321"


class Attr(Structure):
    _fields_ = [("type", U), ("p", c_void_p), ("len", U)]


class Mech(Structure):
    _fields_ = [("mech", U), ("p", c_void_p), ("len", U)]


class Args(Structure):
    _fields_ = [("c", c_void_p), ("d", c_void_p), ("l", c_void_p),
                ("u", c_void_p), ("flags", U), ("res", c_void_p)]


class Failed(Exception):
    pass


def expect(what, got, *want):
    if got not in want:
        raise Failed(f"{what}: got {got:#x}, want "
                     + " or ".join(f"{w:#x}" for w in want))


def buf(value):
    """A ctypes buffer holding bytes, kept alive by the caller."""
    return create_string_buffer(value, len(value)) if value else None


class Tpl:
    """A template; values as Python objects: bool (CK_BBOOL), int
    (CK_ULONG), bytes, or (pointer buffer, declared length) to lie."""

    def __init__(self, *items):
        self.keep = []
        self.arr = (Attr * max(1, len(items)))()
        self.n = len(items)
        for i, (t, v) in enumerate(items):
            if isinstance(v, tuple):
                b, length = v
            elif isinstance(v, bool):
                b, length = c_ubyte(int(v)), 1
            elif isinstance(v, int):
                b, length = U(v), sizeof(U)
            elif v is None:
                b, length = None, 0
            else:
                b, length = buf(v), len(v)
            self.keep.append(b)
            p = cast(byref(b), c_void_p) if b is not None else None
            self.arr[i] = Attr(t, p, length)


RULES = {}


def rule(name, session=None, login=False):
    """Registers a rule: session None (no session), "ro" or "rw"; login:
    the user logs in first."""
    def reg(f):
        RULES[name] = (f, session, login)
        return f
    return reg


class Ctx:
    def __init__(self, m, pin, cert, tokdir):
        self.m, self.pin, self.cert, self.tokdir = m, pin, cert, tokdir
        self.h = None
        self.info = {}

    def open(self, rw=True):
        h = U()
        expect("C_OpenSession", self.m.C_OpenSession(
            U(0), U(CKF_SERIAL | (CKF_RW if rw else 0)), None, None,
            byref(h)), OK)
        return h

    def login(self, h, user=CKU_USER, pin=None):
        pin = self.pin if pin is None else pin
        expect("C_Login", self.m.C_Login(h, U(user), c_char_p(pin),
                                         U(len(pin))), OK)

    def create(self, tpl, h=None, want=OK):
        o = U()
        rv = self.m.C_CreateObject(h or self.h, tpl.arr, U(tpl.n), byref(o))
        expect("C_CreateObject", rv, want)
        return o

    def get(self, obj, attr, size=256, h=None):
        b = create_string_buffer(size)
        t = (Attr * 1)(Attr(attr, cast(b, c_void_p), size))
        expect("C_GetAttributeValue", self.m.C_GetAttributeValue(
            h or self.h, obj, t, U(1)), OK)
        return b.raw[:t[0].len]

    def find(self, tpl, h=None):
        h = h or self.h
        expect("C_FindObjectsInit",
               self.m.C_FindObjectsInit(h, tpl.arr, U(tpl.n)), OK)
        objs, cnt = (U * 64)(), U()
        expect("C_FindObjects", self.m.C_FindObjects(h, objs, U(64),
                                                     byref(cnt)), OK)
        expect("C_FindObjectsFinal", self.m.C_FindObjectsFinal(h), OK)
        return [U(objs[i]) for i in range(cnt.value)]

    def key(self, cls, label=b"conf"):
        (k,) = self.find(Tpl((CKA_CLASS, cls), (CKA_LABEL, label)))
        return k

    def data(self, *extra, token=False):
        return Tpl((CKA_CLASS, CKO_DATA), (CKA_TOKEN, token),
                   (CKA_VALUE, b"v"), *extra)

    def cert_tpl(self, *extra, token=False):
        return Tpl((CKA_CLASS, CKO_CERTIFICATE), (CKA_CERTIFICATE_TYPE, 0),
                   (CKA_TOKEN, token), (CKA_VALUE, self.cert), *extra)

    def keygen(self, pub=(), prv=(), h=None, want=OK, mech=True):
        m = Mech(CKM_EC_KEY_PAIR_GEN, None, 0)
        pt = Tpl((CKA_EC_PARAMS, P256), *pub)
        qt = Tpl(*prv)
        hp, hq = U(), U()
        rv = self.m.C_GenerateKeyPair(h or self.h, byref(m) if mech else None,
                                      pt.arr, U(pt.n), qt.arr, U(qt.n),
                                      byref(hp), byref(hq))
        expect("C_GenerateKeyPair", rv, want)
        return hp, hq


# --- templates: lengths against the attribute's type ------------------------

ONE = c_ubyte(1)


@rule("create-bool-length-huge", "rw", True)
def _(c):
    # a CK_BBOOL declared 0xFFFFFFFF bytes long, 1 byte behind it
    c.create(c.data((CKA_PRIVATE, (ONE, HUGE32))),
             want=ATTRIBUTE_VALUE_INVALID)
    c.create(Tpl((CKA_CLASS, CKO_DATA), (CKA_MODIFIABLE, (ONE, HUGE32)),
                 (CKA_VALUE, b"x")), want=ATTRIBUTE_VALUE_INVALID)


@rule("create-bool-length-long", "rw", True)
def _(c):
    c.create(c.data((CKA_MODIFIABLE, (U(1), sizeof(U)))),
             want=ATTRIBUTE_VALUE_INVALID)


@rule("create-bool-value", "rw", True)
def _(c):
    c.create(c.data((CKA_MODIFIABLE, (c_ubyte(2), 1))),
             want=ATTRIBUTE_VALUE_INVALID)


@rule("create-ulong-length", "rw", True)
def _(c):
    c.create(Tpl((CKA_CLASS, (U(0), 4)), (CKA_TOKEN, False)),
             want=ATTRIBUTE_VALUE_INVALID)


@rule("create-bytes-length-huge", "rw", True)
def _(c):
    c.create(c.data((CKA_LABEL, (c_ubyte(65), HUGE32 + 1))),
             want=ATTRIBUTE_VALUE_INVALID)


@rule("create-date-length", "rw", True)
def _(c):
    c.create(c.cert_tpl((CKA_START_DATE, b"2024")),
             want=ATTRIBUTE_VALUE_INVALID)


@rule("create-null-value", "rw", True)
def _(c):
    c.create(c.data((CKA_LABEL, (None, 5))), want=ARGUMENTS_BAD)


@rule("create-count-huge", "rw", True)
def _(c):
    t, o = c.data(), U()
    expect("C_CreateObject", c.m.C_CreateObject(c.h, t.arr, U(1 << 32),
                                                byref(o)), ARGUMENTS_BAD)


@rule("create-null-handle", "rw", True)
def _(c):
    t = c.data()
    expect("C_CreateObject", c.m.C_CreateObject(c.h, t.arr, U(t.n), None),
           ARGUMENTS_BAD)


@rule("create-type-invalid", "rw", True)
def _(c):
    c.create(c.data((0x7FFF0000, b"x")), want=ATTRIBUTE_TYPE_INVALID)
    # a key attribute on a data object
    c.create(c.data((CKA_KEY_TYPE, 3)), want=ATTRIBUTE_TYPE_INVALID)


@rule("create-duplicate", "rw", True)
def _(c):
    c.create(c.data((CKA_LABEL, b"a"), (CKA_LABEL, b"b")),
             want=TEMPLATE_INCONSISTENT)


@rule("create-no-class", "rw", True)
def _(c):
    c.create(Tpl((CKA_TOKEN, False), (CKA_VALUE, b"x")),
             want=TEMPLATE_INCOMPLETE)


@rule("create-class-invalid", "rw", True)
def _(c):
    c.create(Tpl((CKA_CLASS, CKO_PRIVATE_KEY), (CKA_TOKEN, False)),
             want=ATTRIBUTE_VALUE_INVALID)


@rule("create-unique-id", "rw", True)
def _(c):
    c.create(c.data((CKA_UNIQUE_ID, b"1")), want=ATTRIBUTE_READ_ONLY)


@rule("create-cert-category", "rw", True)
def _(c):
    c.create(c.cert_tpl((CKA_CERTIFICATE_CATEGORY, 9)),
             want=ATTRIBUTE_VALUE_INVALID)


@rule("create-trusted-user", "rw", True)
def _(c):
    c.create(c.cert_tpl((CKA_TRUSTED, True)), want=ATTRIBUTE_READ_ONLY)
    c.create(c.cert_tpl((CKA_TRUSTED, True), token=True),
             want=ATTRIBUTE_READ_ONLY)


@rule("create-trusted-so")
def _(c):
    label = (ctypes.c_char * 32).from_buffer_copy(b"conformance".ljust(32))
    expect("C_InitToken", c.m.C_InitToken(U(0), c_char_p(SO_PIN),
                                          U(len(SO_PIN)), label), OK)
    h = c.open()
    c.login(h, CKU_SO, SO_PIN)
    o = c.create(c.cert_tpl((CKA_TRUSTED, True), token=True), h=h)
    assert c.get(o, CKA_TRUSTED, h=h) == b"\x01"
    expect("C_DestroyObject", c.m.C_DestroyObject(h, o), OK)


@rule("create-token-ro-session", "ro", True)
def _(c):
    c.create(c.data(token=True), want=SESSION_READ_ONLY)


@rule("create-token-not-logged-in", "rw", False)
def _(c):
    c.create(c.data(token=True), want=USER_NOT_LOGGED_IN)


@rule("create-private-session-object-not-logged-in", "ro", False)
def _(c):
    c.create(c.data((CKA_PRIVATE, True)), want=USER_NOT_LOGGED_IN)


# --- object attribute semantics ---------------------------------------------

@rule("data-defaults", "rw", True)
def _(c):
    for token in (False, True):
        o = c.create(c.data(token=token))
        for a in (CKA_MODIFIABLE, CKA_COPYABLE, CKA_DESTROYABLE):
            if c.get(o, a) != b"\x01":
                raise Failed(f"attribute {a:#x} of a new data object "
                             f"(token {token}) is not CK_TRUE")
        assert c.get(o, CKA_PRIVATE) == b"\x00"
        expect("C_DestroyObject", c.m.C_DestroyObject(c.h, o), OK)


@rule("modifiable-false", "rw", True)
def _(c):
    for token in (False, True):
        o = c.create(c.data((CKA_MODIFIABLE, False), token=token))
        t = Tpl((CKA_LABEL, b"changed"))
        expect("C_SetAttributeValue",
               c.m.C_SetAttributeValue(c.h, o, t.arr, U(t.n)),
               ACTION_PROHIBITED)
        assert c.get(o, CKA_LABEL) == b""
        expect("C_DestroyObject", c.m.C_DestroyObject(c.h, o), OK)


@rule("destroyable-false", "rw", True)
def _(c):
    o = c.create(c.data((CKA_DESTROYABLE, False)))
    expect("C_DestroyObject", c.m.C_DestroyObject(c.h, o), ACTION_PROHIBITED)
    assert c.get(o, CKA_VALUE) == b"v"


@rule("set-attribute-checks", "rw", True)
def _(c):
    o = c.create(c.data())
    for what, t, n, want in (
            ("unknown type", Tpl((0x7FFF0000, b"x")), 1,
             ATTRIBUTE_TYPE_INVALID),
            ("read-only value", Tpl((CKA_VALUE, b"x")), 1,
             ATTRIBUTE_READ_ONLY),
            ("bool length", Tpl((CKA_MODIFIABLE, (ONE, HUGE32))), 1,
             ATTRIBUTE_VALUE_INVALID),
            ("null value", Tpl((CKA_LABEL, (None, 3))), 1, ARGUMENTS_BAD),
            ("count 2^32", Tpl((CKA_LABEL, b"x")), 1 << 32, ARGUMENTS_BAD),
            ("duplicate", Tpl((CKA_LABEL, b"x"), (CKA_LABEL, b"y")), 2,
             TEMPLATE_INCONSISTENT)):
        expect(f"C_SetAttributeValue {what}",
               c.m.C_SetAttributeValue(c.h, o, t.arr, U(n)), want)
    expect("C_SetAttributeValue NULL",
           c.m.C_SetAttributeValue(c.h, o, None, U(1)), ARGUMENTS_BAD)
    t = Tpl((CKA_LABEL, b"new"))
    expect("C_SetAttributeValue", c.m.C_SetAttributeValue(c.h, o, t.arr,
                                                          U(1)), OK)
    assert c.get(o, CKA_LABEL) == b"new"


@rule("set-attribute-token-ro-session", "rw", True)
def _(c):
    o = c.create(c.data(token=True))
    ro = c.open(rw=False)
    t = Tpl((CKA_LABEL, b"x"))
    expect("C_SetAttributeValue", c.m.C_SetAttributeValue(ro, o, t.arr,
                                                          U(1)),
           SESSION_READ_ONLY)
    expect("C_DestroyObject", c.m.C_DestroyObject(ro, o), SESSION_READ_ONLY)
    expect("C_DestroyObject", c.m.C_DestroyObject(c.h, o), OK)


@rule("get-attribute-count-huge", "rw", True)
def _(c):
    o = c.create(c.data())
    t = Tpl((CKA_LABEL, None))
    for obj in (o, c.key(CKO_PRIVATE_KEY)):
        expect("C_GetAttributeValue", c.m.C_GetAttributeValue(
            c.h, obj, t.arr, U(1 << 32)), ARGUMENTS_BAD)
        expect("C_GetAttributeValue NULL", c.m.C_GetAttributeValue(
            c.h, obj, None, U(1)), ARGUMENTS_BAD)


@rule("get-attribute-every-entry", "rw", True)
def _(c):
    """Sensitive, invalid, too small and good entries in one call: each
    gets its length (CK_UNAVAILABLE_INFORMATION for the failed ones) and
    the call returns one of the errors."""
    small = create_string_buffer(1)
    good = create_string_buffer(64)
    for obj, sensitive in ((c.key(CKO_PRIVATE_KEY), True),
                           (c.create(c.data((CKA_LABEL, b"lbl"))), False)):
        t = (Attr * 5)(Attr(CKA_VALUE if sensitive else CKA_EC_POINT,
                            None, 0),
                       Attr(0x7FFF0000, None, 0),
                       Attr(CKA_LABEL, cast(small, c_void_p), 1),
                       Attr(CKA_LABEL, cast(good, c_void_p), 64),
                       Attr(CKA_CLASS, None, 0))
        rv = c.m.C_GetAttributeValue(c.h, obj, t, U(5))
        expect("C_GetAttributeValue", rv, ATTRIBUTE_SENSITIVE,
               ATTRIBUTE_TYPE_INVALID, BUFFER_TOO_SMALL)
        lens = [t[i].len for i in range(5)]
        want = [UNAVAILABLE, UNAVAILABLE, UNAVAILABLE, None, sizeof(U)]
        if lens[:3] != want[:3] or lens[4] != want[4] or lens[3] < 1:
            raise Failed(f"lengths {lens}")


@rule("find-checks", "rw", True)
def _(c):
    t = Tpl((CKA_CLASS, CKO_PRIVATE_KEY))
    expect("C_FindObjectsInit count", c.m.C_FindObjectsInit(
        c.h, t.arr, U(1 << 32)), ARGUMENTS_BAD)
    expect("C_FindObjectsInit NULL", c.m.C_FindObjectsInit(c.h, None, U(1)),
           ARGUMENTS_BAD)
    n = Tpl((CKA_LABEL, (None, 4)))
    expect("C_FindObjectsInit NULL value", c.m.C_FindObjectsInit(
        c.h, n.arr, U(1)), ARGUMENTS_BAD)
    cnt = U()
    expect("C_FindObjects not init", c.m.C_FindObjects(
        c.h, (U * 1)(), U(1), byref(cnt)), OPERATION_NOT_INITIALIZED)
    # a boolean of the wrong length matches nothing, and reads nothing
    assert c.find(Tpl((CKA_TOKEN, (ONE, HUGE32)))) == []
    assert len(c.find(Tpl((CKA_CLASS, CKO_PRIVATE_KEY)))) == 1
    expect("C_FindObjectsInit", c.m.C_FindObjectsInit(c.h, t.arr, U(1)), OK)
    expect("C_FindObjectsInit again", c.m.C_FindObjectsInit(
        c.h, t.arr, U(1)), OPERATION_ACTIVE)
    expect("C_FindObjects NULL count", c.m.C_FindObjects(
        c.h, (U * 1)(), U(1), None), ARGUMENTS_BAD)
    expect("C_FindObjectsFinal", c.m.C_FindObjectsFinal(c.h), OK)


# --- key generation templates -------------------------------------------------

@rule("keygen-template-checks", "rw", True)
def _(c):
    for what, pub, prv, want in (
            ("bool length", [(CKA_TOKEN, (ONE, HUGE32))], [],
             ATTRIBUTE_VALUE_INVALID),
            ("bool value", [], [(CKA_SENSITIVE, (c_ubyte(7), 1))],
             ATTRIBUTE_VALUE_INVALID),
            ("extractable", [], [(CKA_EXTRACTABLE, True)],
             ATTRIBUTE_VALUE_INVALID),
            ("not sensitive", [], [(CKA_SENSITIVE, False)],
             ATTRIBUTE_VALUE_INVALID),
            ("local", [], [(CKA_LOCAL, True)], ATTRIBUTE_READ_ONLY),
            ("trusted", [(CKA_TRUSTED, True)], [], ATTRIBUTE_READ_ONLY),
            ("ec point", [(CKA_EC_POINT, b"\x04")], [], ATTRIBUTE_READ_ONLY),
            ("unknown type", [(0x7FFF0000, b"")], [], ATTRIBUTE_TYPE_INVALID),
            ("class", [(CKA_CLASS, CKO_PRIVATE_KEY)], [],
             TEMPLATE_INCONSISTENT),
            ("token halves differ", [(CKA_TOKEN, True)], [(CKA_TOKEN, False)],
             TEMPLATE_INCONSISTENT),
            ("duplicate", [(CKA_EC_PARAMS, P256)], [],
             TEMPLATE_INCONSISTENT)):
        try:
            c.keygen(pub, prv, want=want)
        except Failed as e:
            raise Failed(f"{what}: {e}") from None
    # the curve: a second CKA_EC_PARAMS is a duplicate; alone, unsupported
    m, hp, hq = Mech(CKM_EC_KEY_PAIR_GEN, None, 0), U(), U()
    pt = Tpl((CKA_EC_PARAMS, b"\x06\x03\x2b\x65\x70"))
    expect("curve", c.m.C_GenerateKeyPair(c.h, byref(m), pt.arr, U(1), None,
                                          U(0), byref(hp), byref(hq)),
           CURVE_NOT_SUPPORTED)
    expect("no curve", c.m.C_GenerateKeyPair(c.h, byref(m), None, U(0), None,
                                             U(0), byref(hp), byref(hq)),
           TEMPLATE_INCOMPLETE)
    expect("count", c.m.C_GenerateKeyPair(c.h, byref(m), pt.arr, U(1 << 32),
                                          None, U(0), byref(hp), byref(hq)),
           ARGUMENTS_BAD)
    expect("NULL handles", c.m.C_GenerateKeyPair(c.h, byref(m), pt.arr, U(1),
                                                 None, U(0), None, None),
           ARGUMENTS_BAD)
    c.keygen(want=ARGUMENTS_BAD, mech=False)
    bad = Mech(CKM_ECDSA, None, 0)
    expect("mechanism", c.m.C_GenerateKeyPair(c.h, byref(bad), pt.arr, U(1),
                                              None, U(0), byref(hp),
                                              byref(hq)), MECHANISM_INVALID)


@rule("keygen-token-ro-session", "ro", True)
def _(c):
    c.keygen([(CKA_TOKEN, True)], [(CKA_TOKEN, True)],
             want=SESSION_READ_ONLY)


@rule("keygen-not-logged-in", "rw", False)
def _(c):
    c.keygen([(CKA_TOKEN, False)], [(CKA_TOKEN, False)],
             want=USER_NOT_LOGGED_IN)


# --- session keys (CKA_TOKEN false) -------------------------------------------

def session_key(c, h, label):
    hp, hq = c.keygen([(CKA_TOKEN, False), (CKA_LABEL, label)],
                      [(CKA_TOKEN, False), (CKA_LABEL, label)], h=h)
    for o in (hp, hq):
        if c.get(o, CKA_TOKEN, h=h) != b"\x00":
            raise Failed("a session key's CKA_TOKEN is not CK_FALSE")
    path = os.path.join(c.tokdir, "keys", label.decode() + ".json")
    assert os.path.exists(path), path
    c.info.setdefault("key_ids", []).append(c.get(hq, CKA_ID, h=h).hex())
    return hp, hq, path


def gone(path):
    if os.path.exists(path):
        raise Failed(f"{path} is still there")


@rule("session-key-close-session", "ro", True)
def _(c):
    hp, hq, path = session_key(c, c.h, b"sess-close")
    other = c.open(rw=False)  # every session of the application sees it
    assert c.find(Tpl((CKA_LABEL, b"sess-close")), h=other) != []
    expect("C_CloseSession", c.m.C_CloseSession(c.h), OK)
    c.h = None
    gone(path)
    assert c.find(Tpl((CKA_LABEL, b"sess-close")), h=other) == []


@rule("session-key-close-all", "rw", True)
def _(c):
    _, _, path = session_key(c, c.h, b"sess-all")
    expect("C_CloseAllSessions", c.m.C_CloseAllSessions(U(0)), OK)
    c.h = None
    gone(path)


@rule("session-key-finalize", "rw", True)
def _(c):
    _, _, path = session_key(c, c.h, b"sess-fin")
    expect("C_Finalize", c.m.C_Finalize(None), OK)
    c.h = None
    gone(path)
    expect("C_Initialize", c.m.C_Initialize(None), OK)


@rule("session-key-logout", "rw", True)
def _(c):
    hp, hq, path = session_key(c, c.h, b"sess-out")
    expect("C_Logout", c.m.C_Logout(c.h), OK)
    gone(path)  # the private half with the login
    assert c.get(hp, CKA_LABEL) == b"sess-out"  # the public one: until close
    c.login(c.h)
    expect("C_SignInit", c.m.C_SignInit(c.h, byref(Mech(CKM_ECDSA, None, 0)),
                                        hq), KEY_HANDLE_INVALID)


@rule("logout-destroys-private-session-objects", "ro", True)
def _(c):
    priv = c.create(c.data((CKA_PRIVATE, True), (CKA_LABEL, b"p")))
    pub = c.create(c.data((CKA_LABEL, b"q")))
    expect("C_Logout", c.m.C_Logout(c.h), OK)
    c.login(c.h)
    assert c.find(Tpl((CKA_LABEL, b"p"))) == [], "private object survived"
    assert len(c.find(Tpl((CKA_LABEL, b"q")))) == 1
    expect("C_DestroyObject", c.m.C_DestroyObject(c.h, priv),
           OBJECT_HANDLE_INVALID)
    expect("C_DestroyObject", c.m.C_DestroyObject(c.h, pub), OK)


# --- signing and verifying ----------------------------------------------------

@rule("signinit-null-mechanism", "ro", True)
def _(c):
    k = c.key(CKO_PRIVATE_KEY)
    expect("C_SignInit", c.m.C_SignInit(c.h, None, k), ARGUMENTS_BAD)
    expect("C_SignInit bad key", c.m.C_SignInit(c.h, None, U(99)),
           ARGUMENTS_BAD)


@rule("verifyinit-null-mechanism", "ro", True)
def _(c):
    k = c.key(CKO_PUBLIC_KEY)
    expect("C_VerifyInit", c.m.C_VerifyInit(c.h, None, k), ARGUMENTS_BAD)


@rule("sign-after-update", "ro", True)
def _(c):
    k, mech = c.key(CKO_PRIVATE_KEY), Mech(CKM_ECDSA_SHA256, None, 0)
    sig, sl = create_string_buffer(64), U(64)
    expect("C_SignInit", c.m.C_SignInit(c.h, byref(mech), k), OK)
    expect("C_SignUpdate", c.m.C_SignUpdate(c.h, c_char_p(b"abc"), U(3)), OK)
    expect("C_Sign size", c.m.C_Sign(c.h, c_char_p(b"x"), U(1), None,
                                     byref(sl)), OPERATION_ACTIVE)
    # C_Sign ended the operation (PKCS#11 v3.0 5.13)
    expect("C_SignFinal", c.m.C_SignFinal(c.h, sig, byref(sl)),
           OPERATION_NOT_INITIALIZED)
    expect("C_SignInit", c.m.C_SignInit(c.h, byref(mech), k), OK)
    expect("C_SignUpdate", c.m.C_SignUpdate(c.h, c_char_p(b"abc"), U(3)), OK)
    expect("C_Sign", c.m.C_Sign(c.h, c_char_p(b"x"), U(1), sig, byref(sl)),
           OPERATION_ACTIVE)


@rule("verify-after-update", "ro", True)
def _(c):
    k, mech = c.key(CKO_PUBLIC_KEY), Mech(CKM_ECDSA_SHA256, None, 0)
    sig = create_string_buffer(64)
    expect("C_VerifyInit", c.m.C_VerifyInit(c.h, byref(mech), k), OK)
    expect("C_VerifyUpdate", c.m.C_VerifyUpdate(c.h, c_char_p(b"a"), U(1)),
           OK)
    expect("C_Verify", c.m.C_Verify(c.h, c_char_p(b"x"), U(1), sig, U(64)),
           OPERATION_ACTIVE)
    expect("C_VerifyFinal", c.m.C_VerifyFinal(c.h, sig, U(64)),
           OPERATION_NOT_INITIALIZED)


@rule("sign-bad-length-pointer-ends-operation", "ro", True)
def _(c):
    k, mech = c.key(CKO_PRIVATE_KEY), Mech(CKM_ECDSA, None, 0)
    sl = U(0)
    expect("C_SignInit", c.m.C_SignInit(c.h, byref(mech), k), OK)
    expect("C_Sign size", c.m.C_Sign(c.h, c_char_p(b"x" * 32), U(32), None,
                                     byref(sl)), OK)  # keeps it
    expect("C_Sign NULL length", c.m.C_Sign(c.h, c_char_p(b"x" * 32), U(32),
                                            None, None), ARGUMENTS_BAD)
    expect("C_Sign after", c.m.C_Sign(c.h, c_char_p(b"x" * 32), U(32), None,
                                      byref(sl)), OPERATION_NOT_INITIALIZED)


@rule("signinit-public-key", "ro", True)
def _(c):
    expect("C_SignInit", c.m.C_SignInit(c.h, byref(Mech(CKM_ECDSA, None, 0)),
                                        c.key(CKO_PUBLIC_KEY)),
           KEY_FUNCTION_NOT_PERMITTED)


@rule("signinit-not-logged-in", "ro", False)
def _(c):
    expect("C_SignInit", c.m.C_SignInit(c.h, byref(Mech(CKM_ECDSA, None, 0)),
                                        U(1)), USER_NOT_LOGGED_IN)


@rule("sign-data-len-range", "ro", True)
def _(c):
    k, mech, sl = c.key(CKO_PRIVATE_KEY), Mech(CKM_ECDSA, None, 0), U(0)
    expect("C_SignInit", c.m.C_SignInit(c.h, byref(mech), k), OK)
    expect("C_SignUpdate", c.m.C_SignUpdate(c.h, c_char_p(b"x" * 1025),
                                            U(1025)), 0x21)  # DATA_LEN_RANGE
    expect("C_SignInit", c.m.C_SignInit(c.h, byref(mech), k), OK)
    expect("C_SignFinal empty", c.m.C_SignFinal(
        c.h, create_string_buffer(64), byref(U(64))), 0x21)


@rule("verify-signature-checks", "ro", False)
def _(c):
    k, mech = c.key(CKO_PUBLIC_KEY), Mech(CKM_ECDSA_SHA256, None, 0)
    for sig, n, want in ((None, 64, ARGUMENTS_BAD),
                         (create_string_buffer(63), 63, 0xC1),  # LEN_RANGE
                         (create_string_buffer(b"\x01" * 64, 64), 64,
                          0xC0)):  # SIGNATURE_INVALID
        expect("C_VerifyInit", c.m.C_VerifyInit(c.h, byref(mech), k), OK)
        expect("C_Verify", c.m.C_Verify(c.h, c_char_p(b"m"), U(1), sig,
                                        U(n)), want)


@rule("mechanism-list-and-info", None, False)
def _(c):
    n, one = U(0), (U * 1)()
    expect("C_GetMechanismList size", c.m.C_GetMechanismList(
        U(0), None, byref(n)), OK)
    small = U(1)
    expect("C_GetMechanismList small", c.m.C_GetMechanismList(
        U(0), one, byref(small)), BUFFER_TOO_SMALL)
    assert small.value == n.value == 12  # 7 EC, 5 digests
    expect("C_GetMechanismInfo", c.m.C_GetMechanismInfo(
        U(0), U(0x1), byref((U * 3)())), MECHANISM_INVALID)
    expect("C_GetMechanismList slot", c.m.C_GetMechanismList(
        U(9), None, byref(n)), 0x3)  # SLOT_ID_INVALID
    expect("C_CloseAllSessions slot", c.m.C_CloseAllSessions(U(9)), 0x3)


# --- digests (C_DigestInit, C_Digest, C_DigestUpdate, C_DigestFinal) --------

CKM_SHA256, CKM_SHA512, MECHANISM_PARAM_INVALID = 0x250, 0x270, 0x71


def digest_init(c, mech=CKM_SHA256, want=OK):
    m = Mech(mech, None, 0)
    expect("C_DigestInit", c.m.C_DigestInit(c.h, byref(m)), want)


@rule("digest-init", "ro", False)
def _(c):
    expect("C_DigestInit NULL", c.m.C_DigestInit(c.h, None), ARGUMENTS_BAD)
    digest_init(c, CKM_ECDSA_SHA256, MECHANISM_INVALID)
    p = c_ulong(1)
    m = Mech(CKM_SHA256, cast(byref(p), c_void_p), sizeof(p))
    expect("C_DigestInit param", c.m.C_DigestInit(c.h, byref(m)),
           MECHANISM_PARAM_INVALID)
    digest_init(c)
    digest_init(c, want=OPERATION_ACTIVE)


@rule("digest-output", "ro", False)
def _(c):
    import hashlib
    n, out = U(), create_string_buffer(64)
    expect("C_Digest not initialised", c.m.C_Digest(
        c.h, b"abc", U(3), out, byref(n)), OPERATION_NOT_INITIALIZED)
    expect("C_DigestFinal not initialised", c.m.C_DigestFinal(
        c.h, out, byref(n)), OPERATION_NOT_INITIALIZED)
    digest_init(c, CKM_SHA512)
    # a length query and a short buffer keep the operation
    expect("C_Digest length", c.m.C_Digest(c.h, b"abc", U(3), None,
                                           byref(n)), OK)
    assert n.value == 64
    n.value = 10
    expect("C_Digest short", c.m.C_Digest(c.h, b"abc", U(3), out,
                                          byref(n)), BUFFER_TOO_SMALL)
    assert n.value == 64
    expect("C_Digest", c.m.C_Digest(c.h, b"abc", U(3), out, byref(n)), OK)
    assert out.raw[:n.value] == hashlib.sha512(b"abc").digest()
    expect("C_Digest ended", c.m.C_Digest(c.h, b"abc", U(3), out, byref(n)),
           OPERATION_NOT_INITIALIZED)
    # NULL length pointer: CKR_ARGUMENTS_BAD, which ends the operation
    digest_init(c)
    expect("C_Digest NULL length", c.m.C_Digest(c.h, b"abc", U(3), out,
                                                None), ARGUMENTS_BAD)
    expect("C_DigestFinal ended", c.m.C_DigestFinal(c.h, out, byref(n)),
           OPERATION_NOT_INITIALIZED)
    # multi-part: only C_DigestFinal finishes it
    digest_init(c)
    expect("C_DigestUpdate", c.m.C_DigestUpdate(c.h, b"ab", U(2)), OK)
    expect("C_DigestUpdate NULL", c.m.C_DigestUpdate(c.h, None, U(0)), OK)
    n.value = 64
    expect("C_Digest after update", c.m.C_Digest(c.h, b"c", U(1), out,
                                                 byref(n)), OPERATION_ACTIVE)
    expect("C_DigestUpdate", c.m.C_DigestUpdate(c.h, b"c", U(1)), OK)
    expect("C_DigestFinal", c.m.C_DigestFinal(c.h, out, byref(n)), OK)
    assert out.raw[:n.value] == hashlib.sha256(b"abc").digest()
    digest_init(c)
    expect("C_DigestUpdate NULL data", c.m.C_DigestUpdate(c.h, None, U(4)),
           ARGUMENTS_BAD)
    expect("C_DigestFinal ended", c.m.C_DigestFinal(c.h, out, byref(n)),
           OPERATION_NOT_INITIALIZED)


# --- EC public key objects (C_CreateObject, C_VerifyInit) -------------------

CKA_VERIFY, CKK_EC = 0x10A, 3
SECP384R1 = bytes.fromhex("06052b81040022")
# P-256's generator: a point on the curve
P256_G = bytes.fromhex(
    "046b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296"
    "4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5")


def pub_tpl(*extra, params=P256, point=b"\x04\x41" + P256_G, token=False):
    return Tpl((CKA_CLASS, CKO_PUBLIC_KEY), (CKA_KEY_TYPE, CKK_EC),
               (CKA_TOKEN, token), (CKA_EC_PARAMS, params),
               (CKA_EC_POINT, point), *extra)


@rule("pubkey-object-create", "rw", True)
def _(c):
    c.create(pub_tpl(params=SECP384R1), want=CURVE_NOT_SUPPORTED)
    c.create(pub_tpl(point=b"\x04\x41" + P256_G[:-1] + b"\x00"),
             want=ATTRIBUTE_VALUE_INVALID)  # not on the curve
    c.create(pub_tpl(point=P256_G[:33]), want=ATTRIBUTE_VALUE_INVALID)
    c.create(Tpl((CKA_CLASS, CKO_PUBLIC_KEY), (CKA_KEY_TYPE, CKK_EC),
                 (CKA_EC_PARAMS, P256)), want=TEMPLATE_INCOMPLETE)
    c.create(Tpl((CKA_CLASS, CKO_PUBLIC_KEY), (CKA_KEY_TYPE, 0),
                 (CKA_EC_PARAMS, P256), (CKA_EC_POINT, P256_G)),
             want=ATTRIBUTE_VALUE_INVALID)  # CKK_RSA
    c.create(pub_tpl((CKA_LOCAL, True)), want=ATTRIBUTE_READ_ONLY)
    c.create(pub_tpl((CKA_SENSITIVE, True)), want=ATTRIBUTE_TYPE_INVALID)
    ro = c.open(rw=False)
    c.create(pub_tpl(token=True), h=ro, want=SESSION_READ_ONLY)
    o = c.create(pub_tpl(point=P256_G))  # the bare point is taken too
    assert c.get(o, CKA_EC_POINT) == P256_G
    assert c.get(o, CKA_VERIFY) == b"\x01"
    assert c.get(o, CKA_LOCAL) == b"\x00"
    t = c.create(pub_tpl(token=True))
    expect("C_DestroyObject", c.m.C_DestroyObject(c.h, t), OK)


@rule("pubkey-object-verify", "rw", True)
def _(c):
    m = Mech(CKM_ECDSA, None, 0)
    o = c.create(pub_tpl((CKA_VERIFY, False)))
    expect("C_VerifyInit no CKA_VERIFY",
           c.m.C_VerifyInit(c.h, byref(m), o), KEY_FUNCTION_NOT_PERMITTED)
    d = c.create(c.data())
    expect("C_VerifyInit data object", c.m.C_VerifyInit(c.h, byref(m), d),
           KEY_HANDLE_INVALID)
    o = c.create(pub_tpl())
    expect("C_VerifyInit", c.m.C_VerifyInit(c.h, byref(m), o), OK)
    expect("C_Verify wrong", c.m.C_Verify(c.h, bytes(32), U(32),
                                          b"\x01" * 64, U(64)), 0xC0)
    # the key destroyed between C_VerifyInit and C_Verify
    expect("C_VerifyInit", c.m.C_VerifyInit(c.h, byref(m), o), OK)
    expect("C_DestroyObject", c.m.C_DestroyObject(c.h, o), OK)
    expect("C_Verify destroyed", c.m.C_Verify(c.h, bytes(32), U(32),
                                              b"\x01" * 64, U(64)),
           KEY_HANDLE_INVALID)


# --- every function: bad session handles, NULL outputs ------------------------

@rule("session-handle-invalid", "ro", False)
def _(c):
    b, n, o = U(0xDEAD), U(), U()
    m = Mech(CKM_ECDSA, None, 0)
    for name, args in (
            ("C_CloseSession", ()), ("C_GetSessionInfo", (c_void_p(1),)),
            ("C_Login", (U(1), c_char_p(b"x" * 8), U(8))), ("C_Logout", ()),
            ("C_CreateObject", (None, U(0), byref(o))),
            ("C_DestroyObject", (U(1),)),
            ("C_GetAttributeValue", (U(1), None, U(0))),
            ("C_SetAttributeValue", (U(1), None, U(0))),
            ("C_FindObjectsInit", (None, U(0))),
            ("C_FindObjects", (None, U(0), byref(n))),
            ("C_FindObjectsFinal", ()), ("C_SignInit", (byref(m), U(1))),
            ("C_Sign", (None, U(0), None, byref(n))),
            ("C_SignUpdate", (None, U(0))), ("C_SignFinal", (None, byref(n))),
            ("C_VerifyInit", (byref(m), U(1))),
            ("C_Verify", (None, U(0), None, U(0))),
            ("C_VerifyUpdate", (None, U(0))), ("C_VerifyFinal", (None, U(0))),
            ("C_GenerateKeyPair", (byref(m), None, U(0), None, U(0),
                                   byref(o), byref(o))),
            ("C_GenerateRandom", (None, U(0))),
            ("C_SetPIN", (None, U(0), None, U(0))),
            ("C_InitPIN", (None, U(0)))):
        expect(name, getattr(c.m, name)(b, *args), SESSION_HANDLE_INVALID)


@rule("null-output-pointers", "ro", False)
def _(c):
    for name, args in (
            ("C_GetInfo", (None,)), ("C_GetFunctionList", (None,)),
            ("C_GetSlotList", (U(0), None, None)),
            ("C_GetSlotInfo", (U(0), None)), ("C_GetTokenInfo", (U(0), None)),
            ("C_GetMechanismList", (U(0), None, None)),
            ("C_GetMechanismInfo", (U(0), U(CKM_ECDSA), None)),
            ("C_OpenSession", (U(0), U(CKF_SERIAL), None, None, None)),
            ("C_GetSessionInfo", (c.h, None)),
            ("C_Login", (c.h, U(CKU_USER), None, U(8))),
            ("C_GenerateRandom", (c.h, None, U(8))),
            ("C_Finalize", (c_void_p(1),))):
        expect(name, getattr(c.m, name)(*args), ARGUMENTS_BAD)


# --- fork: the init mutex ------------------------------------------------------

@rule("fork-while-initializing")
def _(c):
    """fork() while another thread is inside C_Initialize (here: the
    CreateMutex callback, called with the module's init mutex held): the
    child's C_Initialize must not wait for a mutex no thread of it holds."""
    expect("C_Finalize", c.m.C_Finalize(None), OK)
    status = []
    CREATE = ctypes.CFUNCTYPE(U, POINTER(c_void_p))
    OTHER = ctypes.CFUNCTYPE(U, c_void_p)

    def create(pp):
        pid = os.fork()
        if pid == 0:
            signal.alarm(5)  # a deadlock ends here
            rv = c.m.C_Initialize(None)
            rv2 = c.m.C_Finalize(None)
            os._exit(0 if (rv, rv2) == (OK, OK) else 1)
        status.append(os.waitpid(pid, 0)[1])
        pp[0] = 1
        return 0

    cbs = [CREATE(create), OTHER(lambda p: 0), OTHER(lambda p: 0),
           OTHER(lambda p: 0)]
    a = Args(flags=0, res=None)
    a.c, a.d, a.l, a.u = [cast(f, c_void_p) for f in cbs]
    expect("C_Initialize", c.m.C_Initialize(byref(a)), OK)
    expect("C_Finalize", c.m.C_Finalize(None), OK)
    if status != [0]:
        raise Failed(f"child status {status} (deadlock: SIGALRM = 14)")
    expect("C_Initialize", c.m.C_Initialize(None), OK)


def run(module, tokdir, pin, cert, only=None):
    m = ctypes.CDLL(module)
    for name, (f, session, login) in RULES.items():
        if only and name not in only:
            continue
        c = Ctx(m, pin, cert, tokdir)
        ok, err = True, ""
        try:
            expect("C_Initialize", m.C_Initialize(None), OK)
            if session is not None:
                c.h = c.open(rw=session == "rw")
                if login:
                    c.login(c.h)
            f(c)
        except Exception as e:  # noqa: BLE001 - reported to the parent
            ok = False
            err = (str(e) if isinstance(e, Failed)
                   else traceback.format_exc())
        m.C_Finalize(None)
        print(json.dumps({"rule": name, "ok": ok, "err": err,
                          "info": c.info}), flush=True)


if __name__ == "__main__":
    with open(sys.argv[4], "rb") as f:
        der = f.read()
    run(sys.argv[1], sys.argv[2], sys.argv[3].encode(), der,
        set(sys.argv[5:]) or None)
