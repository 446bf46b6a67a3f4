"""The documentation as CI checks it (issue 21 items 8-9): every man page
renders without a warning, meson installs each, the README keeps its two
quick-start commands and its links resolve, and the man pages name every
command the programs list."""
import os
import pathlib
import re
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
MAN = sorted(p for p in (ROOT / "doc").iterdir()
             if re.fullmatch(r".+\.[1-8]", p.name))


def test_man_pages_exist():
    names = {p.name for p in MAN}
    assert {"halfkey.1", "halfkeyd.8", "halfkey-pkcs11.7",
            "halfkey-provider.7"} <= names, names


@pytest.mark.parametrize("page", MAN, ids=lambda p: p.name)
def test_man_page_renders_without_warnings(page):
    if shutil.which("groff") is None:
        pytest.skip("groff is not installed")
    env = dict(os.environ, LC_ALL="C.UTF-8")
    p = subprocess.run(["groff", "-man", "-z", "-ww", str(page)],
                       capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 0 and p.stderr == "", p.stderr
    if shutil.which("man") is not None:
        p = subprocess.run(["man", "--warnings", "-l", str(page)],
                           capture_output=True, text=True, timeout=60,
                           env=dict(env, MANPAGER="cat", MANWIDTH="80"))
        assert p.returncode == 0 and p.stderr == "", p.stderr
        assert "NAME" in p.stdout


def test_meson_installs_every_man_page():
    text = (ROOT / "meson.build").read_text()
    call = re.search(r"install_man\(([^)]*)\)", text).group(1)
    for page in MAN:
        assert f"'doc/{page.name}'" in call, page.name


def test_readme_quick_start_and_links():
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## Quick start.*?```sh\n(.*?)```", text, re.S)
    cmds = [line.split("#")[0].strip() for line in
            block.group(1).splitlines()]
    assert cmds[:2] == ["scripts/demo", "scripts/test"], cmds
    assert "scripts/test --ci" in (ROOT / ".ci" / "run").read_text()
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
        assert (ROOT / target).exists(), target
    assert "## First run" in text
    for doc in ("server", "client", "pkcs11", "provider", "operations",
                "protocol", "benchmarks"):
        assert (ROOT / "doc" / f"{doc}.md").exists(), doc
        assert f"doc/{doc}.md" in text, doc


def test_man_pages_name_every_command(halfkey_bin):
    out = subprocess.run([str(halfkey_bin), "--help"], capture_output=True,
                         text=True, timeout=30).stdout
    cmds = next(ln for ln in out.splitlines()
                if ln.startswith("commands:")).split()[1:]
    page = (ROOT / "doc" / "halfkey.1").read_text().replace("\\-", "-")
    for cmd in cmds:
        assert re.search(rf"^\.BI? \"?{re.escape(cmd)}\b", page, re.M), cmd
    env = page[page.index(".SH ENVIRONMENT"):page.index(".SH EXIT STATUS")]
    for var in ("HALFKEY_PIN", "HALFKEY_HOME", "XDG_DATA_HOME",
                "HALFKEY_PKCS11_TOKENS", "HALFKEY_PKCS11_PIN_FILE",
                "HALFKEY_PKCS11_AUTO_LOGIN", "HALFKEY_PKCS11_CURVES"):
        assert var in env, var
    files = page[page.index(".SH FILES"):page.index(".SH ENVIRONMENT")]
    for name in ("objects.bin", ".lock", "keys/<label>.lock"):
        assert name in files, name


def test_newcomer_fixes():
    p11 = (ROOT / "doc" / "pkcs11.md").read_text()
    sign = next(ln for ln in p11.splitlines()
                if "pkcs11-tool" in ln and "--sign" in ln)
    assert "--id" in sign and "--label" not in sign
    assert "--signature-format openssl" in p11 and "-verify" in p11
    srv = (ROOT / "doc" / "server.md").read_text()
    assert re.search(r"halfkeyd token .*--sub alice.*> ~/alice\.jwt", srv)
    assert "cannot\nbe made unlimited" not in srv
    assert "`unlimited`" in srv
    assert re.search(r'/pubkey.*disabled: `true`', srv)
    assert "## Build dependencies" in srv
    assert "Client tokens" in (ROOT / "doc" / "operations.md").read_text()
    d8 = (ROOT / "doc" / "halfkeyd.8").read_text()
    audit = d8[d8.index(".SH AUDIT LOG"):d8.index(".SH METRICS")]
    assert "\\-\\-anchor" in audit
