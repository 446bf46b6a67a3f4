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

Standard library, plus coincurve and pycryptodome for the check."""
import argparse
import http.client
import json
import ssl
import sys
import time
import urllib.parse


def rlp(item):
    """RLP of bytes, ints and lists (what an EIP-1559 transaction needs)."""
    if isinstance(item, int):
        item = item.to_bytes((item.bit_length() + 7) // 8, "big")
    if isinstance(item, bytes):
        if len(item) == 1 and item[0] < 0x80:
            return item
        return _len(len(item), 0x80) + item
    body = b"".join(rlp(x) for x in item)
    return _len(len(body), 0xc0) + body


def _len(n, base):
    if n < 56:
        return bytes([base + n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([base + 55 + len(b)]) + b


def rlp_list(b):
    """The items of the RLP list b (flat strings; enough for a signed
    EIP-1559 transaction without an access list)."""
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
    from Crypto.Hash import keccak

    def k256(b):
        return keccak.new(digest_bits=256, data=b).digest()

    raw = bytes.fromhex(args.raw[2:])
    items = rlp_list(raw[1:])
    unsigned = b"\x02" + rlp([int.from_bytes(x, "big") if i in (0, 1, 2, 3,
                                                                  4, 6)
                              else x for i, x in enumerate(items[:8])] + [[]])
    y, r, s = (int.from_bytes(x, "big") for x in items[9:12])
    pub = coincurve.PublicKey.from_signature_and_message(
        r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([y]),
        k256(unsigned), hasher=None).format(False)
    sender = "0x" + k256(pub[1:])[-20:].hex()
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
