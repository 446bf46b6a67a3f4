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


# --- item 5: init checks before the PIN; the PIN twice; passwd ---------------


def no_pin_env():
    return {k: v for k, v in os.environ.items()
            if k not in ("HALFKEY_PIN", "HALFKEY_HOME")}


def init_args(server, token_file, **over):
    args = {"url": server.url, "server-pin": server.pin,
            "token-file": token_file}
    args.update(over)
    out = ["init"]
    for k, v in args.items():
        if v is not None:
            out += [f"--{k}", v]
    return out


@pytest.mark.parametrize("over,words", [
    ({"server-pin": "ab" * 31}, "server_pin (64 hex digits"),
    ({"server-pin": "zz" * 32}, "server_pin (64 hex digits"),
    ({"url": "http://127.0.0.1:1"}, "must be https://HOST:PORT"),
    ({"url": "https://127.0.0.1"}, "must be https://HOST:PORT"),
    ({"paillier-bits": "1024"}, "2048 or 3072"),
    ({"paillier-bits": "lots"}, "2048 or 3072"),
    ({"token-file": "/nonexistent/alice.jwt"}, "No such file"),
    ({"server-ca": "/nonexistent/ca.pem", "server-pin": None},
     "No such file"),
    ({"label": "x" * 40}, "--label"),
])
def test_init_refuses_bad_input_before_the_pin(server, halfkey_bin, tmp_path,
                                               over, words):
    jwt = tmp_path / "alice.jwt"
    jwt.write_text(server.token("alice") + "\n")
    d = tmp_path / "tok"
    # no PIN anywhere and no terminal: a check that ran after the PIN
    # prompt would say "no PIN given" instead
    p = run(halfkey_bin, "--dir", d, *init_args(server, jwt, **over),
            env=no_pin_env())
    assert p.returncode == 1, p
    assert words in p.stderr and "PIN" not in p.stderr.replace(
        "server_pin", "").replace("halfkeyd init printed", ""), p.stderr
    assert not d.exists()


def test_init_refuses_an_existing_token_before_the_pin(server, make_token,
                                                       halfkey_bin):
    tok = make_token(server, "alice")
    p = run(halfkey_bin, "--dir", tok.dir,
            *init_args(server, tok.token_file), env=no_pin_env())
    assert p.returncode == 1 and "already holds a token" in p.stderr, p.stderr
    p = run(halfkey_bin, "--dir", tok.dir, "list", env=no_pin_env())
    assert p.returncode == 0


def pty_run(cmd, answers, env, timeout=60):
    """Runs cmd on a new pseudo-terminal (its controlling terminal, as for
    a person), typing each answer after its prompt appears; (exit code,
    everything the terminal showed)."""
    import fcntl
    import pty
    import select
    import termios
    import time
    master, slave = pty.openpty()

    def ctty():
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen([str(c) for c in cmd], stdin=slave, stdout=slave,
                            stderr=slave, env=env, preexec_fn=ctty,
                            close_fds=True)
    os.close(slave)
    seen, pending = b"", list(answers)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r, _, _ = select.select([master], [], [], 0.2)
        if r:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
            while pending and pending[0][0].encode() in seen.split(b"\n")[-1]:
                os.write(master, pending.pop(0)[1].encode() + b"\n")
                seen += b"\n"
        elif proc.poll() is not None:
            break
    proc.wait(timeout=timeout)
    os.close(master)
    return proc.returncode, seen.decode(errors="replace")


def test_init_asks_for_the_new_pin_twice(server, halfkey_bin, tmp_path):
    jwt = tmp_path / "alice.jwt"
    jwt.write_text(server.token("alice") + "\n")
    env = no_pin_env()
    cmd = [halfkey_bin, "--dir", tmp_path / "t1", *init_args(server, jwt)]
    rc, out = pty_run(cmd, [("New PIN:", "123456"), ("Again:", "654321")],
                      env)
    assert rc == 1 and "differ" in out, out
    assert not (tmp_path / "t1" / "token.json").exists()
    rc, out = pty_run(cmd, [("New PIN:", "123456"), ("Again:", "123456")],
                      env)
    assert rc == 0 and "token = " in out, out
    env["HALFKEY_PIN"] = "123456"
    p = run(halfkey_bin, "--dir", tmp_path / "t1", "keygen", "--curve",
            "p256", "--label", "k", env=env)
    assert p.returncode == 0, p.stderr


def sign_verify(tok, label, pem, env=None):
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: F401
    digest = hashlib.sha256(label.encode() + os.urandom(8)).digest()
    p = subprocess.run(tok.cmd("sign", "--key", label, "--digest",
                               digest.hex(), "--format", "raw"),
                       capture_output=True, text=True, env=env or tok.env,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    verify_raw(pem, p.stdout.strip(), digest)


def test_passwd(server, make_token, tmp_path):
    tok = make_token(server, "alice")
    tok.keygen("secp256k1", "wallet")
    pem = tok.pubkey_pem("wallet")
    new = tmp_path / "new-pin"
    new.write_text("a-new-pin-42\n")
    p = tok.run("passwd", "--new-pin-file", new)
    assert p.stdout.strip() == "pin = changed"
    # the old PIN fails (without a terminal, without a prompt) ...
    p = tok.run("sign", "--key", "wallet", "--digest", "11" * 32,
                check=False)
    assert p.returncode == 1 and "wrong PIN" in p.stderr, p.stderr
    # ... the new one works, and the key still signs
    env = dict(tok.env, HALFKEY_PIN="a-new-pin-42")
    sign_verify(tok, "wallet", pem, env)
    # change-pin stays as the old name of the same command
    new.write_text("third-pin-99\n")
    p = subprocess.run(tok.cmd("change-pin", "--new-pin-file", new),
                       capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 0, p.stderr
    env["HALFKEY_PIN"] = "third-pin-99"
    sign_verify(tok, "wallet", pem, env)
    # a new PIN too short is refused, the PIN stays
    new.write_text("123\n")
    p = subprocess.run(tok.cmd("passwd", "--new-pin-file", new),
                       capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 1 and "6 to 256" in p.stderr
    sign_verify(tok, "wallet", pem, env)


def test_passwd_by_the_so_after_a_lockout(server, halfkey_bin, tmp_path):
    jwt = tmp_path / "alice.jwt"
    jwt.write_text(server.token("alice") + "\n")
    so = tmp_path / "so-pin"
    so.write_text("so-secret-77\n")
    d = tmp_path / "tok"
    env = dict(no_pin_env(), HALFKEY_PIN="first-pin-1")
    p = run(halfkey_bin, "--dir", d, *init_args(server, jwt,
                                                **{"so-pin-file": so}),
            env=env)
    assert p.returncode == 0, p.stderr
    p = run(halfkey_bin, "--dir", d, "keygen", "--curve", "p256", "--label",
            "k", env=env)
    assert p.returncode == 0, p.stderr
    pem = run(halfkey_bin, "--dir", d, "pubkey", "--key", "k",
              env=env).stdout.encode()
    bad = dict(env, HALFKEY_PIN="wrong-pin-0")
    for _ in range(10):
        run(halfkey_bin, "--dir", d, "unlock", "--key", "k", env=bad)
    p = run(halfkey_bin, "--dir", d, "unlock", "--key", "k", env=env)
    assert p.returncode == 1 and "locked" in p.stderr.lower(), p.stderr
    assert "halfkey passwd --so-pin-file" in p.stderr, p.stderr
    new = tmp_path / "new-pin"
    new.write_text("after-reset-2\n")
    p = run(halfkey_bin, "--dir", d, "passwd", "--so-pin-file", so,
            "--new-pin-file", new, env=no_pin_env())
    assert p.returncode == 0 and "changed (by the SO)" in p.stdout, p.stderr

    class T:
        def cmd(self, *a):
            return [str(halfkey_bin), "--dir", str(d), *map(str, a)]
    sign_verify(T(), "k", pem, dict(env, HALFKEY_PIN="after-reset-2"))


# --- item 6: errors say what is wrong, and the fix ---------------------------


def test_expired_jwt_is_said_so(server, make_token, tmp_path):
    from test_doctor import mint
    import time
    tok = make_token(server, "alice")
    tok.keygen("secp256k1", "wallet")
    tok.token_file.write_text(mint(server, "alice", int(time.time()) - 600)
                              + "\n")
    # an HTTP request (POST /refresh) and the WebSocket upgrade (a sign,
    # one-shot or --digest-file) say the same
    digests = tmp_path / "digests"
    digests.write_text("11" * 32 + "\n")
    for args in (("refresh", "--key", "wallet"),
                 ("sign", "--key", "wallet", "--digest", "11" * 32),
                 ("sign", "--key", "wallet", "--digest-file", digests)):
        p = tok.run(*args, check=False)
        assert p.returncode == 1, p
        assert "server refused the token: expired" in p.stderr, p.stderr
        assert "network error" not in p.stderr
        assert str(tok.token_file) in p.stderr
        assert "halfkey doctor" in p.stderr
    # halfkeyd's log says which check failed, for whom, from where
    log = server.log_text()
    for path in ("/refresh", "/ws"):
        assert re.search(rf"warn event=auth_refused path={path} "
                         r"reason=expired sub=alice peer=127\.0\.0\.1", log), log
    # a token from another issuer: its subject is not believed
    tok.token_file.write_text("e30.e30.AAAA\n")
    p = tok.run("sign", "--key", "wallet", "--digest", "11" * 32,
                check=False)
    assert "server refused the token" in p.stderr, p.stderr
    assert re.search(r"auth_refused path=/ws reason=\w+ sub=- peer=",
                     server.log_text())


def test_token_directory_messages(server, make_token, tmp_path, halfkey_bin):
    tok = make_token(server, "alice")
    os.chmod(tok.dir, 0o777)
    try:
        p = tok.run("list", check=False)
    finally:
        os.chmod(tok.dir, 0o700)
    assert p.returncode == 1
    assert f"{tok.dir} has mode 0777: writable by others" in p.stderr
    assert f"chmod 700 {tok.dir}" in p.stderr
    # $HALFKEY_HOME: the directory named is the one used
    home = tmp_path / "elsewhere"
    env = dict(no_pin_env(), HALFKEY_HOME=str(home))
    p = run(halfkey_bin, "list", env=env)
    assert p.returncode == 1 and f"no token at {home}" in p.stderr, p.stderr


def test_pin_and_key_wording(server, make_token):
    tok = make_token(server, "alice")
    tok.keygen("p256", "k")
    env = dict(tok.env)
    del env["HALFKEY_PIN"]
    p = subprocess.run(tok.cmd("sign", "--key", "k", "--digest", "11" * 32),
                       capture_output=True, text=True, env=env, timeout=60,
                       stdin=subprocess.DEVNULL)
    assert p.returncode == 1
    assert "no PIN given: set HALFKEY_PIN" in p.stderr, p.stderr
    assert "wrong PIN" not in p.stderr
    for cmd in (("sign", "--key", "nosuch", "--digest", "11" * 32),
                ("pubkey", "--key", "nosuch"), ("refresh", "--key", "nosuch")):
        p = tok.run(*cmd, check=False)
        assert p.returncode == 1
        assert f"no key nosuch in the token {tok.dir}" in p.stderr, p.stderr
        assert "halfkey list" in p.stderr


def test_busy_port_and_lws_lines(make_server):
    import socket
    srv = make_server(start=False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        srv.set_conf(port=s.getsockname()[1])
        p = subprocess.run([str(srv.bin), "run", "--config", str(srv.conf)],
                           capture_output=True, text=True, timeout=30)
    assert p.returncode == 1
    assert "the port is in use" in p.stderr, p.stderr
    # libwebsockets' own lines carry the log's format
    for line in p.stderr.splitlines():
        if "lws" in line:
            assert re.match(r"\d{4}-\d\d-\d\dT\S+Z (error|warn) event=lws "
                            r'msg="[^"]*"$', line), line


def test_retry_after(server, make_token):
    tok = make_token(server, "alice")
    kid = tok.keygen("p256", "k")
    server.admin("keys", "limit", "--key", kid, "--per-hour", "1",
                 "--per-day", "unlimited")
    tok.run("sign", "--key", "k", "--digest", "11" * 32)
    p = tok.run("sign", "--key", "k", "--digest", "22" * 32, check=False)
    assert p.returncode == 1
    assert re.search(r"retry after \d+ s", p.stderr), p.stderr


def test_network_errors_suggest_doctor(server, make_token):
    tok = make_token(server, "alice")
    tok.keygen("p256", "k")
    assert server.stop() == 0
    p = tok.run("sign", "--key", "k", "--digest", "11" * 32, check=False)
    assert p.returncode == 1 and "halfkey doctor" in p.stderr, p.stderr
