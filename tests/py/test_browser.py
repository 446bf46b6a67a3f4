"""A real browser logs in with a halfkey key: a TLS client-certificate
handshake in headless Firefox ESR (and Chromium, see below) against
`openssl s_server -Verify 1` on 127.0.0.1.

The key is a P-256 halfkey key made through the PKCS#11 module, its
certificate issued by a test CA from a CSR that `openssl req` signed with
the halfkey provider, and stored on the token with the key's CKA_ID. The
browser loads the module (enterprise policy SecurityDevices), selects the
certificate automatically and signs the handshake's CertificateVerify
through the module, i.e. a two-party signature with halfkeyd. The test
checks the page (from the browser, via Marionette) shows the certificate,
and halfkeyd's audit log has the signature, verified here with the
certificate's public key. The screenshot is kept in
$HALFKEY_BUILD/test-artefacts/. The example's code is
examples/browser/hkbrowser.py."""
import hashlib
import json
import os
import pathlib
import re
import shutil
import socket
import ssl
import sys
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils

from conftest import PIN, ROOT

sys.path.insert(0, str(ROOT / "examples" / "browser"))
import hkbrowser  # noqa: E402

LABEL = "browser"


@pytest.fixture
def login(make_server, make_token, build_dir, tmp_path, monkeypatch):
    """A halfkeyd, a token holding the key and its certificate, the PIN
    file for the module, and the s_server asking for the certificate."""
    srv = make_server()
    tok = make_token(srv, "browser-user")
    monkeypatch.setenv("HALFKEY_PKCS11_TOKENS", str(tok.dir))
    monkeypatch.delenv("HALFKEY_HOME", raising=False)
    pin_file = tmp_path / "pin"
    pin_file.touch(mode=0o600)
    pin_file.write_text(PIN + "\n")
    monkeypatch.setenv("HALFKEY_PKCS11_PIN_FILE", str(pin_file))
    module = build_dir / "pkcs11" / "libhalfkey-pkcs11.so"
    work = tmp_path / "pki"
    cert, key_id = hkbrowser.pki(work, module, PIN, LABEL,
                                 build_dir / "ossl-provider")
    web = hkbrowser.SServer(work).start()
    yield {"srv": srv, "tok": tok, "module": module, "work": work,
           "cert": cert, "key_id": key_id, "web": web}
    web.stop()


def sign_records(srv):
    out = srv.admin("audit", "export").stdout
    return [r for r in map(json.loads, out.splitlines())
            if r["event"] == "sign" and r["outcome"] == "ok"]


def check_new_signs(login, before):
    """halfkeyd's audit records of the signs the browser caused: this
    subject and key, and each signature verifies over its digest with the
    certificate's public key."""
    # the server records a sign when it has checked the client's last
    # message, a moment after the browser has its signature
    deadline = time.monotonic() + 10
    while not (new := sign_records(login["srv"])[len(before):]) and \
            time.monotonic() < deadline:
        time.sleep(0.1)
    assert new, "no sign in halfkeyd's audit log"
    pub = login["cert"].public_key()
    for r in new:
        assert r["subject"] == "browser-user"
        assert r["key_id"] == login["key_id"].hex()
        sig = bytes.fromhex(r["signature"])
        der = utils.encode_dss_signature(int.from_bytes(sig[:32], "big"),
                                         int.from_bytes(sig[32:], "big"))
        pub.verify(der, bytes.fromhex(r["digest"]),
                   ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    return new


def check_page(page, cert):
    """s_server's page shows the client certificate the browser sent: its
    subject and its PEM, which is the halfkey certificate."""
    assert hkbrowser.page_subject(page) == "CN=halfkey browser test", page
    m = re.search(r"-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\s]+"
                  r"-----END CERTIFICATE-----", page)
    assert m, page
    shown = x509.load_pem_x509_certificate(m.group(0).encode())
    assert shown == cert


def keep_artefact(build_dir, src, name):
    dest = build_dir / "test-artefacts" / name
    dest.parent.mkdir(exist_ok=True)
    shutil.copyfile(src, dest)
    print(f"screenshot: {dest}")
    return dest


def check_png(path):
    data = pathlib.Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10000


def test_server_requires_the_client_certificate(login):
    """The control: without a client certificate the handshake fails, so
    a page showing one means the browser sent it and proved the key."""
    ctx = ssl.create_default_context(cafile=str(login["work"] / "ca.pem"))
    with pytest.raises((ssl.SSLError, ConnectionError)):
        with socket.create_connection(("127.0.0.1", login["web"].port),
                                      timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                s.sendall(b"GET / HTTP/1.0\r\n\r\n")
                while s.recv(4096):
                    pass


needs_firefox = pytest.mark.skipif(
    not (hkbrowser.FIREFOX_DIR / "firefox-esr").exists(),
    reason="firefox-esr is not installed (scripts/setup)")


def firefox_login_checked(login, build_dir, tmp_path):
    before = sign_records(login["srv"])
    shot = tmp_path / "firefox.png"
    page = hkbrowser.firefox_login(tmp_path / "firefox", login["module"],
                                   login["work"] / "ca.pem",
                                   login["web"].url, shot)
    check_page(page, login["cert"])
    log = login["web"].log.read_text(errors="replace")
    assert "depth=0 CN = halfkey browser test" in log, log
    check_new_signs(login, before)
    check_png(shot)
    keep_artefact(build_dir, shot, "firefox-client-cert.png")
    # nothing system-wide was touched: the policy lived in our app copy
    assert not (hkbrowser.FIREFOX_DIR / "distribution" /
                "policies.json").exists()


@needs_firefox
def test_firefox_client_certificate_login(login, build_dir, tmp_path,
                                          monkeypatch):
    """The token logs in from the PIN file (HALFKEY_PKCS11_AUTO_LOGIN=1),
    so Firefox opens no window of its own."""
    monkeypatch.setenv("HALFKEY_PKCS11_AUTO_LOGIN", "1")
    firefox_login_checked(login, build_dir, tmp_path)


@needs_firefox
# Firefox's own "authenticate on the device" window (protected
# authentication path) does not always close in headless mode: a PKCS#11
# spy (OpenSC's pkcs11-spy) shows C_Login(NULL PIN) returning CKR_OK in
# milliseconds and Firefox making no further call while the navigation
# waits for ever (about half the runs, 4+ minutes each). The module has
# done its part, so this variant is informative only and opt-in
# (HALFKEY_TEST_FIREFOX_PROTECTED=1); the test above is the contract.
@pytest.mark.skipif(not os.environ.get("HALFKEY_TEST_FIREFOX_PROTECTED"),
                    reason="opt-in: HALFKEY_TEST_FIREFOX_PROTECTED=1")
@pytest.mark.xfail(strict=False, reason="Firefox headless: the protected "
                   "authentication window sometimes never closes")
def test_firefox_protected_authentication_path(login, build_dir, tmp_path):
    firefox_login_checked(login, build_dir, tmp_path)


def test_auto_login_token_needs_no_login(login, monkeypatch):
    """HALFKEY_PKCS11_AUTO_LOGIN=1 (with the PIN file): no
    CKF_LOGIN_REQUIRED, the private key is usable in a session that never
    called C_Login; without the PIN file the variable does nothing."""
    import pkcs11
    from pkcs11 import Attribute, Mechanism, ObjectClass, TokenFlag
    monkeypatch.setenv("HALFKEY_PKCS11_AUTO_LOGIN", "1")
    lib = pkcs11.lib(str(login["module"]))
    lib.reinitialize()
    try:
        (slot,) = lib.get_slots(token_present=True)
        token = slot.get_token()
        assert not token.flags & TokenFlag.LOGIN_REQUIRED
        assert token.flags & TokenFlag.PROTECTED_AUTHENTICATION_PATH
        with token.open() as s:
            key = s.get_key(object_class=ObjectClass.PRIVATE_KEY,
                            label=LABEL)
            digest = hashlib.sha256(b"auto login").digest()
            sig = key.sign(digest, mechanism=Mechanism.ECDSA)
        der = utils.encode_dss_signature(int.from_bytes(sig[:32], "big"),
                                         int.from_bytes(sig[32:], "big"))
        login["cert"].public_key().verify(
            der, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
        monkeypatch.delenv("HALFKEY_PKCS11_PIN_FILE")
        lib.reinitialize()
        (slot,) = lib.get_slots(token_present=True)
        assert slot.get_token().flags & TokenFlag.LOGIN_REQUIRED
        with slot.get_token().open() as s:
            assert not list(s.get_objects(
                {Attribute.CLASS: ObjectClass.PRIVATE_KEY}))
    finally:
        lib.finalize()


@pytest.mark.skipif(shutil.which("chromium") is None,
                    reason="chromium is not installed (scripts/setup)")
def test_chromium_client_certificate_login(login, build_dir, tmp_path,
                                           monkeypatch):
    # Chromium prompts for a PIN even on a protected authentication path
    monkeypatch.setenv("HALFKEY_PKCS11_AUTO_LOGIN", "1")
    before = sign_records(login["srv"])
    shot = tmp_path / "chromium.png"
    dom = hkbrowser.chromium_login(tmp_path / "chromium", login["module"],
                                   login["work"] / "ca.pem",
                                   login["web"].url, shot)
    check_page(dom, login["cert"])
    check_new_signs(login, before)
    check_png(shot)
    keep_artefact(build_dir, shot, "chromium-client-cert.png")
