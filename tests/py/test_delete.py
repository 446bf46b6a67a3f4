"""Deleting a split key on both sides: `halfkey delete` and PKCS#11
C_DestroyObject on the private key call the server's POST /delete first,
then remove the local key file. Black-box, against a real halfkeyd on
127.0.0.1: the server's GET /pubkey tells whether its share is still
there."""
import re

import pkcs11
import pytest
from pkcs11 import Attribute, KeyType, ObjectClass
from pkcs11.util.ec import encode_named_curve_parameters

from conftest import PIN


def server_has(server, sub, key_id):
    status, _ = server.request("GET", f"/pubkey?key_id={key_id}",
                               token=server.token(sub))
    assert status in (200, 404), status
    return status == 200


def test_cli_delete_by_label_and_key_id(server, make_token):
    tok = make_token(server, "alice")
    a = tok.keygen("p256", "a")
    b = tok.keygen("secp256k1", "b")
    assert server_has(server, "alice", a) and server_has(server, "alice", b)
    out = tok.run("delete", "--key", "a", "--yes").stdout
    assert "deleted = a" in out
    assert not server_has(server, "alice", a)
    assert "a" not in tok.list()
    out = tok.run("delete", "--key", b, "--yes").stdout  # by key id
    assert "deleted = b" in out
    assert not server_has(server, "alice", b) and tok.list() == {}
    p = tok.run("delete", "--key", "a", "--yes", check=False)
    assert p.returncode != 0 and "delete" in p.stderr


def test_cli_delete_needs_the_pin(server, make_token):
    tok = make_token(server, "alice")
    kid = tok.keygen("p256", "k")
    tok.env["HALFKEY_PIN"] = "wrong-pin"
    p = tok.run("delete", "--key", "k", "--yes", check=False)
    assert p.returncode != 0 and "login" in p.stderr
    assert server_has(server, "alice", kid) and "k" in tok.list()


def test_cli_delete_server_already_gone_and_server_down(server, make_token):
    tok = make_token(server, "alice")
    gone = tok.keygen("p256", "gone")
    kept = tok.keygen("p256", "kept")
    # the server's share is deleted behind the client's back: 404, the
    # local key is removed too
    status, ans = server.request("POST", "/delete", {"key_id": gone},
                                 token=server.token("alice"))
    assert status == 200 and ans == {"key_id": gone, "deleted": True, "had_backup": False}
    assert "deleted = gone" in tok.run("delete", "--key", "gone", "--yes").stdout
    assert "gone" not in tok.list()
    # another subject does not own the key: 404, nothing deleted there
    status, ans = server.request("POST", "/delete", {"key_id": kept},
                                 token=server.token("mallory"))
    assert status == 404 and ans["error"] == "not_found"
    assert server_has(server, "alice", kept)
    # server down: the local key stays, the error is reported
    assert server.stop() == 0
    p = tok.run("delete", "--key", "kept", "--yes", check=False)
    assert p.returncode != 0 and "delete" in p.stderr
    assert "kept" in tok.list()
    server.start()  # on a new port: the token follows it
    conf = tok.conf_path()
    conf.write_text(re.sub(r"^server_url = .*$", f"server_url = {server.url}",
                           conf.read_text(), flags=re.M))
    assert "deleted = kept" in tok.run("delete", "--key", "kept", "--yes").stdout
    assert not server_has(server, "alice", kept)


def test_pkcs11_destroy_private_key_deletes_both_sides(server, make_token,
                                                       build_dir,
                                                       monkeypatch):
    tok = make_token(server, "alice")
    other = tok.keygen("secp256k1", "other")
    monkeypatch.setenv("HALFKEY_PKCS11_TOKENS", str(tok.dir))
    lib = pkcs11.lib(str(build_dir / "pkcs11" / "libhalfkey-pkcs11.so"))
    lib.reinitialize()
    try:
        (slot,) = lib.get_slots(token_present=True)
        with slot.get_token().open(user_pin=PIN, rw=True) as session:
            params = session.create_domain_parameters(
                KeyType.EC, {Attribute.EC_PARAMS:
                             encode_named_curve_parameters("secp256r1")},
                local=True)
            pub, priv = params.generate_keypair(store=True, label="gone",
                                                id=b"\x07")
            kid = tok.list()["gone"][1]
            assert server_has(server, "alice", kid)
            point = pub[Attribute.EC_POINT]
            priv.destroy()
            assert not server_has(server, "alice", kid)
            assert "gone" not in tok.list()
            # its public key object stays until destroyed
            assert pub[Attribute.EC_POINT] == point
            assert [o[Attribute.LABEL] for o in session.get_objects(
                {Attribute.CLASS: ObjectClass.PRIVATE_KEY})] == ["other"]
            pub.destroy()
            assert sorted(o[Attribute.LABEL] for o in session.get_objects()) \
                == ["other", "other"]
        with slot.get_token().open(user_pin=PIN) as session:  # read-only
            priv = session.get_key(ObjectClass.PRIVATE_KEY, label="other")
            with pytest.raises(pkcs11.SessionReadOnly):
                priv.destroy()
    finally:
        lib.finalize()
    assert server_has(server, "alice", other) and "other" in tok.list()
