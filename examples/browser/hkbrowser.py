#!/usr/bin/env python3
"""A TLS client-certificate login in a real browser with a halfkey key.

Steps (each a subcommand; `run.sh` chains them against a fresh halfkeyd):
  pki      P-256 key on the halfkey token (PKCS#11 keygen), test CA, server
           certificate, CSR signed by the halfkey key (openssl req with the
           halfkey provider), client certificate from the CA, stored on the
           token with the key's CKA_ID (C_CreateObject)
  serve    openssl s_server on 127.0.0.1 requiring a client certificate from
           the CA; its page (-www) shows the client certificate
  firefox  Firefox ESR headless with a fresh profile, the module registered
           by enterprise policy (SecurityDevices), automatic certificate
           selection; opens the page through Marionette, saves a screenshot,
           prints the page's `Subject:` line
  chromium the same with Debian's Chromium (NSS database, the content
           setting behind AutoSelectCertificateForUrls; needs
           HALFKEY_PKCS11_AUTO_LOGIN=1, see chromium_login)

Environment: HALFKEY_PKCS11_TOKENS (the token directory), HALFKEY_PIN (its
PIN, for the pki step), HALFKEY_PKCS11_PIN_FILE (the PIN in a 0600 file: the
browsers call C_Login with a NULL PIN, see the README's PKCS#11 section).
Everything listens on 127.0.0.1. Used by tests/py/test_browser.py."""
import argparse
import base64
import datetime
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SUBJECT = "halfkey browser test"
FIREFOX_DIR = pathlib.Path("/usr/lib/firefox-esr")
# Fresh-profile preferences: no first-run UI, no network but 127.0.0.1,
# the client certificate chosen without asking.
FIREFOX_PREFS = {
    "security.default_personal_cert": "Select Automatically",
    "marionette.port": 0,  # the port is written to MarionetteActivePort
    "browser.shell.checkDefaultBrowser": False,
    "browser.startup.homepage_override.mstone": "ignore",
    "browser.aboutwelcome.enabled": False,
    "startup.homepage_welcome_url": "about:blank",
    "datareporting.policy.dataSubmissionEnabled": False,
    "datareporting.healthreport.uploadEnabled": False,
    "toolkit.telemetry.enabled": False,
    "app.update.enabled": False,
    "app.normandy.enabled": False,
    "messaging-system.rsexperimentloader.enabled": False,
    "services.settings.server": "data:,#remote-settings-off/v1",
    "extensions.update.enabled": False,
    "extensions.getAddons.cache.enabled": False,
    "browser.safebrowsing.malware.enabled": False,
    "browser.safebrowsing.phishing.enabled": False,
    "browser.safebrowsing.downloads.enabled": False,
    "browser.search.update": False,
    "network.proxy.type": 0,
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    "network.dns.disablePrefetch": True,
    "network.prefetch-next": False,
    "media.gmp-manager.updateEnabled": False,
}


class Failure(Exception):
    """A step failed; the message says which and why."""


def run(cmd, timeout=60, **kw):
    """subprocess.run with a timeout; a failure raises Failure with the
    command's stderr."""
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                       timeout=timeout, **kw)
    if p.returncode != 0:
        raise Failure(f"{cmd[0]} exited {p.returncode}: {p.stderr.strip()}")
    return p.stdout


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- PKI: test CA, server certificate, halfkey client certificate ---------


def _name(cn):
    from cryptography import x509
    from cryptography.x509.oid import NameOID
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _issue(ca_key, ca_cert, subject, pub, exts, days=2):
    """A certificate for `pub` from the CA (ca_cert None: self-signed)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    now = datetime.datetime.now(datetime.timezone.utc)
    issuer = ca_cert.subject if ca_cert is not None else subject
    b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
         .public_key(pub).serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(minutes=5))
         .not_valid_after(now + datetime.timedelta(days=days))
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(pub),
                        critical=False))
    if ca_cert is not None:
        b = b.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
    for ext, critical in exts:
        b = b.add_extension(ext, critical=critical)
    return b.sign(ca_key, hashes.SHA256())


def _leaf_exts(eku):
    from cryptography import x509
    return [(x509.BasicConstraints(ca=False, path_length=None), True),
            (x509.KeyUsage(True, False, False, False, False, False, False,
                           False, False), True),
            (x509.ExtendedKeyUsage([eku]), False)]


def _write_pem(path, obj, private=False):
    from cryptography.hazmat.primitives import serialization
    if private:
        data = obj.private_bytes(serialization.Encoding.PEM,
                                 serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())
        path.touch(mode=0o600)
    else:
        data = obj.public_bytes(serialization.Encoding.PEM)
    path.write_bytes(data)


def make_ca_and_server(work):
    """ca.pem/ca.key (test CA) and server.pem/server.key (SAN IP:127.0.0.1)
    in `work`."""
    import ipaddress
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _issue(ca_key, None, _name(SUBJECT + " CA"), ca_key.public_key(), [
        (x509.BasicConstraints(ca=True, path_length=0), True),
        (x509.KeyUsage(False, False, False, False, False, True, True, False,
                       False), True)])
    srv_key = ec.generate_private_key(ec.SECP256R1())
    srv = _issue(ca_key, ca, _name("127.0.0.1"), srv_key.public_key(),
                 _leaf_exts(ExtendedKeyUsageOID.SERVER_AUTH) + [(
                     x509.SubjectAlternativeName([x509.IPAddress(
                         ipaddress.ip_address("127.0.0.1"))]), False)])
    _write_pem(work / "ca.key", ca_key, private=True)
    _write_pem(work / "ca.pem", ca)
    _write_pem(work / "server.key", srv_key, private=True)
    _write_pem(work / "server.pem", srv)


def pkcs11_keygen(module, pin, label):
    """A P-256 key pair made on the halfkey token through PKCS#11 (a
    two-party keygen with halfkeyd), or the one already labelled `label`
    (a second run reuses it); returns its CKA_ID."""
    import pkcs11
    from pkcs11 import Attribute, KeyType, ObjectClass
    from pkcs11.util.ec import encode_named_curve_parameters
    lib = pkcs11.lib(str(module))
    lib.reinitialize()  # the token list is read at C_Initialize
    try:
        (slot,) = lib.get_slots(token_present=True)
        with slot.get_token().open(rw=True, user_pin=pin) as s:
            if not list(s.get_objects({
                    Attribute.CLASS: ObjectClass.PRIVATE_KEY,
                    Attribute.LABEL: label})):
                params = s.create_domain_parameters(KeyType.EC, {
                    Attribute.EC_PARAMS:
                    encode_named_curve_parameters("secp256r1")}, local=True)
                params.generate_keypair(store=True, label=label)
            key = s.get_key(object_class=ObjectClass.PRIVATE_KEY,
                            label=label)
            return bytes(key[Attribute.ID])
    finally:
        lib.finalize()


def pkcs11_store_cert(module, pin, cert, key_id, label):
    """C_CreateObject: the certificate as a token object with the key's
    CKA_ID, so that NSS pairs it with the private key (replacing the
    certificates a previous run stored for that key)."""
    import pkcs11
    from cryptography.hazmat.primitives import serialization
    from pkcs11 import Attribute, ObjectClass
    lib = pkcs11.lib(str(module))
    lib.reinitialize()
    try:
        (slot,) = lib.get_slots(token_present=True)
        with slot.get_token().open(rw=True, user_pin=pin) as s:
            for old in s.get_objects({Attribute.CLASS: ObjectClass.CERTIFICATE,
                                      Attribute.ID: key_id}):
                old.destroy()
            s.create_object({
                Attribute.CLASS: ObjectClass.CERTIFICATE,
                Attribute.CERTIFICATE_TYPE: pkcs11.CertificateType.X_509,
                Attribute.TOKEN: True,
                Attribute.LABEL: label,
                Attribute.ID: key_id,
                Attribute.VALUE: cert.public_bytes(
                    serialization.Encoding.DER),
                Attribute.SUBJECT: cert.subject.public_bytes(),
                Attribute.ISSUER: cert.issuer.public_bytes(),
                Attribute.SERIAL_NUMBER: _der_integer(cert.serial_number),
            })
    finally:
        lib.finalize()


def _der_integer(n):
    body = n.to_bytes(n.bit_length() // 8 + 1, "big")
    return bytes([0x02, len(body)]) + body


def provider_csr(work, token_dir, pin, label, provider_dir):
    """client.csr: `openssl req` signs the request with the halfkey key
    (PKCS#11 URI through the halfkey provider); checked by `openssl req
    -verify` with the default provider."""
    csr = work / "client.csr"
    env = dict(os.environ, HALFKEY_HOME=str(token_dir), HALFKEY_PIN=pin)
    run(["openssl", "req", "-provider-path", provider_dir, "-provider",
         "halfkey", "-provider", "default", "-new", "-key",
         f"pkcs11:object={label};type=private", "-subj", f"/CN={SUBJECT}",
         "-out", csr], env=env)
    run(["openssl", "req", "-in", csr, "-verify", "-noout"])
    return csr


def issue_client(work):
    """client.pem: the CA's certificate (clientAuth) for the CSR's key,
    after checking the CSR's halfkey signature with `cryptography`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID
    csr = x509.load_pem_x509_csr((work / "client.csr").read_bytes())
    if not csr.is_signature_valid:
        raise Failure("the CSR's signature does not verify")
    ca = x509.load_pem_x509_certificate((work / "ca.pem").read_bytes())
    ca_key = serialization.load_pem_private_key(
        (work / "ca.key").read_bytes(), None)
    cert = _issue(ca_key, ca, csr.subject, csr.public_key(),
                  _leaf_exts(ExtendedKeyUsageOID.CLIENT_AUTH))
    _write_pem(work / "client.pem", cert)
    return cert


def pki(work, module, pin, label, provider_dir):
    """All of the pki step on the token $HALFKEY_PKCS11_TOKENS (one token
    directory: the module reads it at C_Initialize); returns (client
    certificate, key CKA_ID)."""
    token_dir = os.environ.get("HALFKEY_PKCS11_TOKENS", "")
    if not token_dir or ":" in token_dir:
        raise Failure("set HALFKEY_PKCS11_TOKENS to one token directory")
    work.mkdir(parents=True, exist_ok=True)
    make_ca_and_server(work)
    key_id = pkcs11_keygen(module, pin, label)
    provider_csr(work, token_dir, pin, label, provider_dir)
    cert = issue_client(work)
    pkcs11_store_cert(module, pin, cert, key_id, SUBJECT)
    return cert, key_id


# --- the TLS server ---------------------------------------------------------


class SServer:
    """`openssl s_server -Verify 1 -www` on 127.0.0.1: a handshake without
    a client certificate from the test CA fails; the page shows the
    session, including the client certificate (subject and PEM)."""

    def __init__(self, work):
        self.work = pathlib.Path(work)
        self.log = self.work / "s_server.log"
        self.proc = None
        self.port = None

    def start(self, port=None, timeout=15):
        self.port = port or free_port()
        w = self.work
        self._logf = open(self.log, "wb")
        self.proc = subprocess.Popen(
            ["openssl", "s_server", "-Verify", "1", "-verify_return_error",
             "-CAfile", w / "ca.pem", "-cert", w / "server.pem", "-key",
             w / "server.key", "-www", "-accept", f"127.0.0.1:{self.port}"],
            stdin=subprocess.DEVNULL, stdout=self._logf,
            stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while b"ACCEPT" not in self.log.read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise Failure("s_server did not start: "
                              + self.log.read_text(errors="replace"))
            time.sleep(0.05)
        return self

    @property
    def url(self):
        return f"https://127.0.0.1:{self.port}/"

    def stop(self):
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
            self._logf.close()


# --- Firefox ----------------------------------------------------------------


class Marionette:
    """The few Marionette (WebDriver over TCP, `LEN:JSON` frames) commands
    this needs; no client package."""

    def __init__(self, port, timeout=120):
        self.sock = socket.create_connection(("127.0.0.1", port),
                                             timeout=timeout)
        self.buf = b""
        self.msg_id = 0
        hello = self._recv()
        if hello.get("marionetteProtocol") != 3:
            raise Failure(f"unexpected Marionette hello {hello}")

    def _recv(self):
        while b":" not in self.buf:
            self._more()
        size, rest = self.buf.split(b":", 1)
        if not size.isdigit() or int(size) > 64 << 20:
            raise Failure("bad Marionette frame")
        self.buf = rest
        while len(self.buf) < int(size):
            self._more()
        frame, self.buf = self.buf[:int(size)], self.buf[int(size):]
        return json.loads(frame)

    def _more(self):
        data = self.sock.recv(1 << 16)
        if not data:
            raise Failure("Marionette closed the connection")
        self.buf += data

    def cmd(self, name, params=None):
        """The command's result; a WebDriver error raises Failure."""
        self.msg_id += 1
        msg = json.dumps([0, self.msg_id, name, params or {}]).encode()
        self.sock.sendall(str(len(msg)).encode() + b":" + msg)
        while True:
            reply = self._recv()
            if reply[0] == 1 and reply[1] == self.msg_id:
                if reply[2] is not None:
                    raise Failure(f"{name}: {reply[2]}")
                return reply[3]

    def close(self):
        self.sock.close()


def firefox_app_dir(dest, module, ca_pem):
    """A private Firefox installation directory with our policies.json.

    Firefox reads policies.json from its installation's distribution/
    directory (or /etc/firefox-esr/policies/): both system-wide, and the
    per-user alternatives (browser.policies.alternatePath,
    toolkit.policies.perUserDir) work only in test builds. Firefox finds
    its installation from /proc/self/exe, so a copy of the small
    firefox-esr binary beside symlinks to everything else is an
    installation of its own whose distribution/ we own: the policy applies
    to this run only and nothing system-wide changes."""
    dest = pathlib.Path(dest)
    dest.mkdir(parents=True)
    for entry in FIREFOX_DIR.iterdir():
        if entry.name not in ("firefox-esr", "firefox-bin", "distribution"):
            (dest / entry.name).symlink_to(entry)
    shutil.copy2(FIREFOX_DIR / "firefox-esr", dest / "firefox-esr")
    (dest / "distribution").mkdir()
    policies = {"policies": {
        "SecurityDevices": {"Add": {"halfkey": str(module)}},
        "Certificates": {"ImportEnterpriseRoots": False,
                         "Install": [str(ca_pem)]},
        "DisableAppUpdate": True,
        "DisableTelemetry": True,
        "DisableFirefoxStudies": True,
    }}
    (dest / "distribution" / "policies.json").write_text(
        json.dumps(policies, indent=2) + "\n")
    return dest / "firefox-esr"


class Firefox:
    """Headless Firefox ESR on a fresh profile, driven by Marionette."""

    def __init__(self, work, module, ca_pem):
        self.work = pathlib.Path(work)
        self.profile = self.work / "profile"
        self.log = self.work / "firefox.log"
        self.binary = firefox_app_dir(self.work / "app", module, ca_pem)
        self.profile.mkdir()
        (self.profile / "user.js").write_text("".join(
            f"user_pref({json.dumps(k)}, {json.dumps(v)});\n"
            for k, v in FIREFOX_PREFS.items()))
        self.proc = None
        self.mn = None

    def start(self, env=None, timeout=90):
        self._logf = open(self.log, "wb")
        self.proc = subprocess.Popen(
            [self.binary, "--headless", "--marionette", "--no-remote",
             "--profile", self.profile, "about:blank"],
            stdin=subprocess.DEVNULL, stdout=self._logf,
            stderr=subprocess.STDOUT, start_new_session=True,
            env=dict(env or os.environ, MOZ_HEADLESS="1"))
        port_file = self.profile / "MarionetteActivePort"
        deadline = time.monotonic() + timeout
        while not (port_file.exists() and port_file.read_text().strip()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise Failure("Firefox did not start Marionette: "
                              + self.log.read_text(errors="replace")[-3000:])
            time.sleep(0.2)
        self.mn = Marionette(int(port_file.read_text()))
        self.mn.cmd("WebDriver:NewSession", {"capabilities": {
            "alwaysMatch": {"acceptInsecureCerts": False}}})
        self.mn.cmd("WebDriver:SetTimeouts", {"pageLoad": 60000,
                                              "script": 30000})
        return self

    def open(self, url):
        """Navigates; returns the page source."""
        self.mn.cmd("WebDriver:Navigate", {"url": url})
        return self.mn.cmd("WebDriver:GetPageSource")["value"]

    def screenshot(self, path):
        png = self.mn.cmd("WebDriver:TakeScreenshot", {"full": True})
        pathlib.Path(path).write_bytes(base64.b64decode(png["value"]))

    def stop(self):
        if self.mn is not None:
            try:
                self.mn.cmd("Marionette:Quit", {"flags": ["eForceQuit"]})
            except (Failure, OSError):
                pass
            self.mn.close()
            self.mn = None
        if self.proc is not None:
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
            try:  # its content processes too (its own process group)
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
            self.proc = None
            self._logf.close()


def page_subject(page):
    """The client certificate's subject as s_server's page shows it."""
    m = re.search(r"Client certificate.*?Subject: ([^\n<]+)", page, re.S)
    return m.group(1).strip() if m else None


def firefox_login(work, module, ca_pem, url, shot):
    """Opens `url` in a fresh headless Firefox; returns the page source and
    saves a full-page screenshot to `shot`."""
    ff = Firefox(work, module, ca_pem).start()
    try:
        page = ff.open(url)
        ff.screenshot(shot)
        return page
    finally:
        ff.stop()


# --- Chromium -----------------------------------------------------------------


def chromium_login(work, module, ca_pem, url, shot, timeout=60):
    """Opens `url` in headless Chromium; returns the DOM (--dump-dom) and
    saves a screenshot (a second run: each is a new handshake).

    Per run, nothing system-wide: Chromium's NSS database is
    $HOME/.pki/nssdb, so HOME is a fresh directory whose database has the
    module (modutil -add) and trusts the CA (certutil); the
    AutoSelectCertificateForUrls policy (/etc/chromium/policies/managed/)
    sets a content setting that a profile can hold itself, so the fresh
    --user-data-dir starts with it. Chromium asks for a token's PIN in a
    dialog even on a protected authentication path, so the module must
    run with HALFKEY_PKCS11_AUTO_LOGIN=1 (and HALFKEY_PKCS11_PIN_FILE)."""
    work = pathlib.Path(work)
    home, data = work / "home", work / "user-data"
    db = f"sql:{home / '.pki' / 'nssdb'}"
    (home / ".pki" / "nssdb").mkdir(parents=True)
    run(["certutil", "-N", "-d", db, "--empty-password"])
    run(["certutil", "-A", "-d", db, "-n", "halfkey test CA", "-t", "C,,",
         "-i", ca_pem])
    run(["modutil", "-add", "halfkey", "-libfile", module, "-dbdir", db,
         "-force"], input="\n")
    origin = url.rstrip("/")
    prefs = {"profile": {"content_settings": {"exceptions": {
        "auto_select_certificate": {f"{origin},*": {"setting": {
            "filters": [{"ISSUER": {"CN": SUBJECT + " CA"}}]}}}}}}}
    (data / "Default").mkdir(parents=True)
    (data / "Default" / "Preferences").write_text(json.dumps(prefs))
    base = ["chromium", "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--no-default-browser-check",
            f"--user-data-dir={data}"]
    env = dict(os.environ, HOME=str(home))
    with open(work / "chromium.log", "ab") as log:
        dom = subprocess.run(base + ["--dump-dom", url], env=env,
                             stdout=subprocess.PIPE, stderr=log,
                             stdin=subprocess.DEVNULL, timeout=timeout)
        subprocess.run(base + [f"--screenshot={shot}",
                               "--window-size=1280,2200", url], env=env,
                       stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                       timeout=timeout, check=True)
    return dom.stdout.decode(errors="replace")


# --- command line ------------------------------------------------------------


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("step", choices=("pki", "serve", "firefox", "chromium"))
    ap.add_argument("--work", type=pathlib.Path, required=True,
                    help="directory for keys, certificates, profiles, logs")
    ap.add_argument("--module", type=pathlib.Path,
                    default=ROOT / "build/pkcs11/libhalfkey-pkcs11.so")
    ap.add_argument("--provider-dir", type=pathlib.Path,
                    default=ROOT / "build/ossl-provider")
    ap.add_argument("--label", default="browser", help="key label")
    ap.add_argument("--port", type=int, help="serve: port on 127.0.0.1")
    ap.add_argument("--url", help="firefox, chromium: the page to open")
    ap.add_argument("--screenshot", type=pathlib.Path,
                    help="PNG to write (default WORK/BROWSER.png)")
    a = ap.parse_args(argv)
    try:
        if a.step == "pki":
            cert, key_id = pki(a.work, a.module, os.environ["HALFKEY_PIN"],
                               a.label, a.provider_dir)
            print(f"client certificate = {a.work / 'client.pem'}\n"
                  f"subject = {cert.subject.rfc4514_string()}\n"
                  f"key CKA_ID = {key_id.hex()}")
        elif a.step == "serve":
            # SIGTERM (e.g. from `timeout`) stops s_server too
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
            srv = SServer(a.work).start(a.port)
            print(f"url = {srv.url}\nlog = {srv.log}", flush=True)
            try:
                srv.proc.wait()
            finally:
                srv.stop()
        else:
            shot = a.screenshot or a.work / f"{a.step}.png"
            login = firefox_login if a.step == "firefox" else chromium_login
            page = login(a.work / f"{a.step}-{os.getpid()}", a.module,
                         a.work / "ca.pem", a.url, shot)
            subject = page_subject(page)
            print(f"screenshot = {shot}\nsubject = {subject}")
            if subject is None:
                raise Failure("the page shows no client certificate")
    except (Failure, subprocess.TimeoutExpired, KeyError, OSError) as e:
        print(f"hkbrowser: {a.step}: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # python-pkcs11's errors name only the CKR_
        if type(e).__module__.split(".")[0] != "pkcs11":
            raise
        e = f"PKCS#11 {type(e).__name__}"
        print(f"hkbrowser: {a.step}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
