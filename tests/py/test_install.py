"""`meson install` into a DESTDIR stage: every artefact in its standard
place (paths computed here from pkg-config, independently of meson.build),
the man pages complete and clean, the systemd unit valid, and a signature
made with the staged binaries, the staged provider (openssl pkeyutl
-provider-path STAGE) and the staged PKCS#11 module, verified with plain
openssl."""
import json
import os
import pathlib
import re
import shutil
import subprocess

import pytest

from conftest import PIN, ROOT, Server, Token


def pkgvar(pkg, var, **define):
    cmd = ["pkg-config", f"--variable={var}", pkg]
    for k, v in define.items():
        cmd.insert(1, f"--define-variable={k}={v}")
    p = subprocess.run(cmd, capture_output=True, text=True)
    return p.stdout.strip() if p.returncode == 0 else ""


@pytest.fixture(scope="module")
def stage(build_dir, tmp_path_factory):
    """(destdir, prefix, options): the build installed under destdir."""
    dest = tmp_path_factory.mktemp("stage")
    p = subprocess.run(["meson", "install", "-C", str(build_dir),
                        "--destdir", str(dest), "--quiet"],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    opts = {o["name"]: o["value"] for o in json.loads(subprocess.run(
        ["meson", "introspect", str(build_dir), "--buildoptions"],
        check=True, capture_output=True, text=True).stdout)}
    return dest, opts["prefix"], opts


def staged(dest, path):
    return dest / str(path).lstrip("/")


def unit_dir(prefix):
    for var in ("rootprefix", "prefix"):
        d = pkgvar("systemd", "systemdsystemunitdir", **{var: prefix})
        if d.startswith(prefix + "/"):
            return d
    return f"{prefix}/lib/systemd/system"


def expected(prefix, opts):
    libdir = f"{prefix}/{opts['libdir']}"
    mods = pkgvar("libcrypto", "modulesdir", prefix=prefix)
    p11 = pkgvar("p11-kit-1", "p11_module_configs", prefix=prefix)
    assert mods.startswith(prefix) and p11.startswith(prefix)
    doc = f"{prefix}/{opts['datadir']}/doc/halfkey/examples"
    man = f"{prefix}/{opts['mandir']}"
    return {
        "halfkey": f"{prefix}/{opts['bindir']}/halfkey",
        "halfkeyd": f"{prefix}/{opts['bindir']}/halfkeyd",
        "pkcs11": f"{libdir}/pkcs11/libhalfkey-pkcs11.so",
        "p11kit": f"{p11}/halfkey.module",
        "provider": f"{mods}/halfkey.so",
        "unit": f"{unit_dir(prefix)}/halfkeyd.service",
        "sysusers": f"{prefix}/lib/sysusers.d/halfkeyd.conf",
        "man1": f"{man}/man1/halfkey.1",
        "man8": f"{man}/man8/halfkeyd.8",
        **{f"ex:{n}": f"{doc}/{n}" for n in (
            "openssl.cnf", "sign_store.c", "sign-verify.sh", "csr.sh",
            "self-signed.sh", "wallet/wallet.py")},
    }


def test_every_artefact_in_place(stage):
    dest, prefix, opts = stage
    exp = expected(prefix, opts)
    for name, path in exp.items():
        assert staged(dest, path).is_file(), f"{name}: {path} not installed"
    for name in ("halfkey", "halfkeyd", "ex:sign-verify.sh",
                 "ex:wallet/wallet.py"):
        assert os.access(staged(dest, exp[name]), os.X_OK), name
    module = staged(dest, exp["p11kit"]).read_text()
    assert re.search(rf"^module: {re.escape(exp['pkcs11'])}$", module, re.M)
    unit = staged(dest, exp["unit"]).read_text()
    assert f"ExecStart={exp['halfkeyd']} run --config " \
        "/etc/halfkeyd/halfkeyd.conf" in unit
    for opt in ("NoNewPrivileges=yes", "ProtectSystem=strict",
                "StateDirectory=halfkeyd", "User=halfkeyd",
                "ReadWritePaths=/var/lib/halfkeyd"):
        assert opt in unit, opt
    assert "u halfkeyd" in staged(dest, exp["sysusers"]).read_text()


def test_systemd_unit_verifies(stage, tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not installed")
    dest, prefix, opts = stage
    exp = expected(prefix, opts)
    # the unit as installed, its ExecStart pointed at the staged binary
    unit = staged(dest, exp["unit"]).read_text().replace(
        f"ExecStart={exp['halfkeyd']}",
        f"ExecStart={staged(dest, exp['halfkeyd'])}")
    (tmp_path / "halfkeyd.service").write_text(unit)
    env = dict(os.environ, MANPATH=str(staged(dest, exp["man8"]).parents[1]))
    p = subprocess.run(["systemd-analyze", "verify",
                        str(tmp_path / "halfkeyd.service")],
                       capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 0 and p.stderr.strip() == "", p.stderr


def man_text(path):
    p = subprocess.run(["man", "--warnings", "-l", str(path)],
                       capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, MANWIDTH="80"))
    assert p.returncode == 0 and p.stderr.strip() == "", p.stderr
    return p.stdout


def test_man_pages_complete(stage):
    if shutil.which("man") is None:
        pytest.skip("man not installed")
    dest, prefix, opts = stage
    exp = expected(prefix, opts)
    # halfkey(1): every command of the usage line, every option the CLI
    # accepts (its `allowed` lists and the global ones)
    text = man_text(staged(dest, exp["man1"]))
    src = (ROOT / "tools" / "halfkey.c").read_text()
    usage = subprocess.run([str(staged(dest, exp["halfkey"])), "--help"],
                           capture_output=True, text=True).stdout
    cmds = re.search(r"^commands: ([a-z -]+)$", usage, re.M)
    for cmd in re.findall(r"[a-z][a-z-]*", cmds.group(1)):
        assert re.search(rf"^\s+halfkey {cmd}\b", text, re.M), cmd
    opts_src = set(re.findall(r'"([a-z-]+)"', " ".join(
        re.findall(r"allowed\[\] = \{([^}]*)\}", src))))
    opts_src |= {"dir", "pin-file", "help", "version"}
    for opt in opts_src:
        assert f"--{opt}" in text, opt
    # halfkeyd(8): every command and option of its usage, every
    # configuration key
    text = man_text(staged(dest, exp["man8"]))
    usage = subprocess.run([str(staged(dest, exp["halfkeyd"]))],
                           capture_output=True, text=True).stderr
    for cmd in re.findall(r"halfkeyd ([a-z]+)", usage):
        assert re.search(rf"^\s+halfkeyd {cmd}\b", text, re.M), cmd
    for opt in re.findall(r"--[a-z-]+", usage):
        assert opt in text, opt
    conf = (ROOT / "server" / "config.c").read_text()
    for key in re.findall(r'HK_KV_[SPI]\(T, "([a-z_]+)"', conf):
        assert re.search(rf"\b{key}\b", text), key


def test_sign_with_the_staged_install(stage, tmp_path):
    dest, prefix, opts = stage
    exp = expected(prefix, opts)
    halfkeyd = staged(dest, exp["halfkeyd"])
    halfkey = staged(dest, exp["halfkey"])
    srvdir = tmp_path / "srv"
    out = subprocess.run([str(halfkeyd), "init", str(srvdir), "--port", "0"],
                         check=True, capture_output=True, text=True,
                         timeout=300).stdout
    pin = re.search(r"^pin = ([0-9a-f]{64})$", out, re.M).group(1)
    srv = Server(halfkeyd, srvdir, pin)
    srv.set_conf(port_file="port")
    srv.start()
    try:
        jwt = tmp_path / "alice.jwt"
        jwt.write_text(srv.token("alice") + "\n")
        tok = Token(halfkey, tmp_path / "tok", jwt, srv)
        tok.run("init", "--url", srv.url, "--server-pin", pin,
                "--token-file", jwt)
        tok.keygen("p256", "web")
        (tmp_path / "web.pem").write_bytes(tok.pubkey_pem("web"))
        data = tmp_path / "msg.bin"
        data.write_bytes(b"signed by an installed halfkey\n")
        dgst = tmp_path / "msg.dgst"
        subprocess.run(["openssl", "dgst", "-sha256", "-binary", "-out",
                        str(dgst), str(data)], check=True)
        env = dict(os.environ, HALFKEY_HOME=str(tok.dir), HALFKEY_PIN=PIN)
        mods = staged(dest, exp["provider"]).parent
        p = subprocess.run(
            ["openssl", "pkeyutl", "-provider-path", str(mods),
             "-provider", "halfkey", "-provider", "default", "-sign",
             "-inkey", "halfkey:object=web", "-in", str(dgst),
             "-out", str(tmp_path / "sig.der")],
            capture_output=True, text=True, env=env, timeout=60)
        assert p.returncode == 0, p.stderr + srv.log_text()[-2000:]
        # plain openssl (default provider only) verifies
        p = subprocess.run(
            ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey",
             str(tmp_path / "web.pem"), "-in", str(dgst), "-sigfile",
             str(tmp_path / "sig.der")], capture_output=True, text=True)
        assert p.returncode == 0 and "Verified Successfully" in p.stdout, \
            p.stdout + p.stderr
        # the staged PKCS#11 module lists the token and signs
        if shutil.which("pkcs11-tool"):
            raw = tmp_path / "sig.raw"
            env["HALFKEY_PKCS11_TOKENS"] = str(tok.dir)
            p = subprocess.run(
                ["pkcs11-tool", "--module", str(staged(dest, exp["pkcs11"])),
                 "--login", "--pin", PIN, "--sign", "--mechanism",
                 "ECDSA-SHA256", "--label", "web", "--input-file", str(data),
                 "--output-file", str(raw), "--signature-format", "openssl"],
                capture_output=True, text=True, env=env, timeout=60)
            assert p.returncode == 0, p.stdout + p.stderr
            p = subprocess.run(
                ["openssl", "dgst", "-sha256", "-verify",
                 str(tmp_path / "web.pem"), "-signature", str(raw),
                 str(data)], capture_output=True, text=True)
            assert p.returncode == 0, p.stdout + p.stderr
        # the staged doctor finds the installation healthy
        p = tok.run("doctor", check=False)
        assert p.returncode == 0, p.stdout
    finally:
        assert srv.stop() == 0


def test_sqlite_only_build_without_libpq(tmp_path):
    """-Dpostgresql=disabled (and -Dtpm=disabled): halfkeyd builds without
    libpq, serves SQLite, and refuses db_url saying why."""
    bdir = tmp_path / "build-sqlite"
    subprocess.run(["meson", "setup", str(bdir), "-Dpostgresql=disabled",
                    "-Dtpm=disabled"], cwd=ROOT, check=True,
                   capture_output=True, timeout=300)
    subprocess.run(["ninja", "-C", str(bdir), "-j", "2", "server/halfkeyd"],
                   check=True, capture_output=True, timeout=900)
    halfkeyd = bdir / "server" / "halfkeyd"
    deps = subprocess.run(["ldd", str(halfkeyd)], capture_output=True,
                          text=True).stdout
    assert "libpq" not in deps, deps
    srvdir = tmp_path / "srv"
    subprocess.run([str(halfkeyd), "init", str(srvdir), "--port", "0"],
                   check=True, capture_output=True, timeout=300)
    conf = srvdir / "halfkeyd.conf"
    text = re.sub(r"^db = .*$", "db_url = host=127.0.0.1 dbname=x",
                  conf.read_text(), flags=re.M)
    conf.write_text(text)
    p = subprocess.run([str(halfkeyd), "run", "--config", str(conf)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode != 0
    assert "built without PostgreSQL support" in p.stderr, p.stderr
