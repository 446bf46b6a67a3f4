#!/usr/bin/env python3
"""A requester of halfkey signing requests (doc/requests.md): asks halfkeyd
for a signed EIP-1559 transaction with a key whose owner is offline, waits
for the owner to approve, then checks the signed transaction it gets back:
the sender recovered from it is the key's address.

  requester.py ask   --url URL --ca PEM --jwt FILE --key-id HEX --to ADDR
                     --value WEI [--chain ID]          prints the request id
  requester.py wait  --url URL --ca PEM --jwt FILE --id REQ [--timeout S]
                     prints the signed raw transaction (0x hex)
  requester.py check --raw 0x... --address 0x...     recovers the sender

RLP, Keccak-256 and addresses come from examples/wallet/wallet.py
(coincurve, pycryptodome)."""
import argparse
import http.client
import json
import pathlib
import ssl
import sys
import time
import urllib.parse

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent
                       / "wallet"))
from wallet import eth_address, keccak256, rlp  # noqa: E402


def rlp_list(b):
    """The items of the RLP list b: strings, and lists of items (a
    canonical encoding assumed: its maker checked it)."""
    def item(p):
        t = b[p]
        if t < 0x80:
            return b[p:p + 1], p + 1
        if t < 0xb8:
            return b[p + 1:p + 1 + t - 0x80], p + 1 + t - 0x80
        if t < 0xc0:
            n = t - 0xb7
            ln = int.from_bytes(b[p + 1:p + 1 + n], "big")
            return b[p + 1 + n:p + 1 + n + ln], p + 1 + n + ln
        n = t - 0xf7 if t >= 0xf8 else 0
        start = p + 1 + n
        ln = int.from_bytes(b[p + 1:start], "big") if n else t - 0xc0
        out, q = [], start
        while q < start + ln:
            x, q = item(q)
            out.append(x)
        return out, start + ln
    return item(0)[0]


def call(args, method, path, body=None):
    u = urllib.parse.urlsplit(args.url)
    ctx = ssl.create_default_context(cafile=args.ca)
    conn = http.client.HTTPSConnection(u.hostname, u.port, context=ctx,
                                       timeout=30)
    jwt = open(args.jwt).read().strip()
    conn.request(method, path, json.dumps(body) if body is not None else None,
                 {"Authorization": f"Bearer {jwt}",
                  "Content-Type": "application/json"})
    r = conn.getresponse()
    data = json.loads(r.read() or b"{}")
    conn.close()
    if r.status >= 300:
        sys.exit(f"requester: HTTP {r.status}: {data.get('message')}")
    return data


def ask(args):
    to = bytes.fromhex(args.to[2:] if args.to.startswith("0x") else args.to)
    tx = b"\x02" + rlp([args.chain, 0, 10**9, 30 * 10**9, 21000, to,
                        args.value, b"", []])
    req = call(args, "POST", "/requests", {
        "key_id": args.key_id, "kind": "eth-tx", "payload": "0x" + tx.hex(),
        "expires_in": 3600, "metadata": {"note": "example payout"}})
    print(req["request_id"])


def wait(args):
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        req = call(args, "GET", f"/requests/{args.id}")
        if req["state"] == "signed":
            print(req["result"])
            return
        if req["state"] != "pending":
            sys.exit(f"requester: request {req['state']}: {req['reason']}")
        time.sleep(1)
    sys.exit("requester: still pending")


def check(args):
    import coincurve

    raw = bytes.fromhex(args.raw[2:])
    items = rlp_list(raw[1:])
    unsigned = b"\x02" + rlp([int.from_bytes(x, "big") if i in (0, 1, 2, 3,
                                                                  4, 6)
                              else x for i, x in enumerate(items[:8])] + [[]])
    y, r, s = (int.from_bytes(x, "big") for x in items[9:12])
    pub = coincurve.PublicKey.from_signature_and_message(
        r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([y]),
        keccak256(unsigned), hasher=None).format(False)
    sender = eth_address(pub).lower()
    print(f"sender {sender}")
    if sender != args.address.lower():
        sys.exit(f"requester: the sender is not {args.address}")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("ask", "wait"):
        p = sub.add_parser(name)
        p.add_argument("--url", required=True)
        p.add_argument("--ca", required=True)
        p.add_argument("--jwt", required=True)
    a = sub.choices["ask"]
    a.add_argument("--key-id", required=True)
    a.add_argument("--to", required=True)
    a.add_argument("--value", type=int, required=True)
    a.add_argument("--chain", type=int, default=11155111)
    w = sub.choices["wait"]
    w.add_argument("--id", required=True)
    w.add_argument("--timeout", type=int, default=60)
    c = sub.add_parser("check")
    c.add_argument("--raw", required=True)
    c.add_argument("--address", required=True)
    args = ap.parse_args()
    {"ask": ask, "wait": wait, "check": check}[args.cmd](args)


if __name__ == "__main__":
    main()
