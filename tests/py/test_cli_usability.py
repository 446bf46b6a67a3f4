"""The command lines as people and scripts use them (issue 21 items 4-7):
every command's --help, --version, the --json outputs, `halfkey init`'s
checks before the PIN, `halfkey passwd`, and the wording of the errors a
newcomer meets first."""
import datetime
import hashlib
import json
import os
import re
import subprocess

import pytest

from test_server import verify_raw


def run(*cmd, env=None, input=None, timeout=60):
    return subprocess.run([str(c) for c in cmd], capture_output=True,
                          text=True, env=env, input=input, timeout=timeout)


def iso(text):
    """A time as --json gives it: ISO 8601 in UTC."""
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", text), text
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ")


def halfkey_commands(halfkey_bin):
    out = run(halfkey_bin, "--help").stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("commands:"))
    return line.split()[1:]


# --- item 4: --help, --version, --json ---------------------------------------


def test_halfkey_help_of_every_command(halfkey_bin):
    p = run(halfkey_bin, "--help")
    assert p.returncode == 0 and p.stdout.startswith("usage: halfkey"), p
    cmds = halfkey_commands(halfkey_bin)
    assert {"init", "keygen", "sign", "list", "status", "doctor", "passwd",
            "backup-key"} <= set(cmds), cmds
    for cmd in cmds + ["change-pin"]:
        p = run(halfkey_bin, cmd, "--help")
        assert p.returncode == 0, (cmd, p.stderr)
        shown = "passwd" if cmd == "change-pin" else cmd
        assert p.stdout.startswith(f"usage: halfkey [--dir D] [--pin-file F] "
                                   f"{shown}"), (cmd, p.stdout)
        assert p.stderr == ""
        # the same with other options around it, and as `halfkey help CMD`
        assert run(halfkey_bin, "help", cmd).stdout == p.stdout
    # a usage error prints the command's own usage on stderr, exit 2
    p = run(halfkey_bin, "keygen", "--curve")
    assert p.returncode == 2 and "keygen --curve" in p.stderr, p.stderr
    p = run(halfkey_bin, "frobnicate")
    assert p.returncode == 2 and "unknown command frobnicate" in p.stderr


def test_halfkeyd_help_of_every_command(halfkeyd_bin):
    for cmd in ("init", "run", "token", "initdb", "keys", "audit", "reseal",
                "new-kek"):
        p = run(halfkeyd_bin, cmd, "--help")
        assert p.returncode == 0, (cmd, p.stderr)
        assert p.stdout.startswith(f"usage: halfkeyd {cmd}"), p.stdout
    p = run(halfkeyd_bin, "--help")
    assert p.returncode == 0 and "halfkeyd keys list" in p.stdout


def test_version(halfkey_bin, halfkeyd_bin, build_dir):
    project = re.search(r"version\s*:\s*'([^']+)'",
                        (build_dir.parent / "meson.build").read_text()
                        if (build_dir.parent / "meson.build").exists()
                        else "version : '?'").group(1)
    for binary, name in ((halfkey_bin, "halfkey"), (halfkeyd_bin, "halfkeyd")):
        p = run(binary, "--version")
        assert p.returncode == 0, p.stderr
        assert re.fullmatch(rf"{name} \S+ \(protocol \d+\)\n", p.stdout)
        if project != "?":
            assert f" {project} " in p.stdout


def test_list_and_status_json(server, make_token):
    tok = make_token(server, "alice")
    kid = tok.keygen("secp256k1", "wallet")
    keys = json.loads(tok.run("list", "--json").stdout)
    assert keys == [{"label": "wallet", "curve": "secp256k1",
                     "key_id": kid, "epoch": 1, "locked": False,
                     "signing_session": "idle", "lock_reason": None,
                     "locked_since": None}]
    st = json.loads(tok.run("status", "--json").stdout)
    assert st["status"] == "ok" and st["server"] == server.url
    assert st["http_status"] == 200 and isinstance(st["protocol"], int)
    text = tok.run("status").stdout
    assert "status = ok" in text and f"server = {server.url}" in text


def test_halfkeyd_keys_and_audit_json(server, make_token):
    tok = make_token(server, "alice")
    kid = tok.keygen("p256", "web")
    server.admin("keys", "limit", "--key", kid, "--per-hour", "unlimited",
                 "--per-day", "5")
    keys = json.loads(server.admin("keys", "list", "--json").stdout)
    (k,) = [k for k in keys if k["key_id"] == kid]
    assert k["curve"] == "p256" and k["subject"] == "alice"
    assert k["state"] == "enabled" and k["backup"] == "none"
    assert k["max_per_hour"] == "unlimited" and k["max_per_day"] == 5
    created = iso(k["created"])
    assert abs((datetime.datetime.utcnow() - created).total_seconds()) < 600
    text = server.admin("keys", "list").stdout
    assert "unlimited/h\t5/d" in text and k["created"] in text
    v = json.loads(server.admin("audit", "verify", "--json").stdout)
    assert v["intact"] is True and v["records"] >= 2
    assert v["anchor"] == f"{v['records']}:{v['head']}"
    assert v["broken_seq"] is None
    recs = server.audit()
    assert all(iso(r["at"]) for r in recs)
