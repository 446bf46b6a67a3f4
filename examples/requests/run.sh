#!/usr/bin/env bash
# Signing requests end to end on a fresh halfkeyd (127.0.0.1), see
# doc/requests.md: the owner makes a secp256k1 key and goes offline; the
# requester "shop" (its own token, scope "request") asks for a signed
# Ethereum transaction; the owner comes back, lists and approves; the
# requester reads the signed transaction and checks its sender.
#   examples/requests/run.sh [--keep]     --keep: leave the work directory
set -euo pipefail
cd "$(dirname "$0")/../.."
py=$PWD/.venv/bin/python
ninja -C build -j 2 >/dev/null
work=$(mktemp -d /tmp/halfkey-requests.XXXXXX)
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    [ "${1:-}" = "--keep" ] && echo "work directory: $work" || rm -rf "$work"
}
trap 'cleanup "${1:-}"' EXIT

conf=$work/server/halfkeyd.conf
build/server/halfkeyd init "$work/server" --port 0 >"$work/init.out"
printf 'port_file = port\nrequesters = shop=alice\n' >>"$conf"
build/server/halfkeyd run --config "$conf" 2>"$work/halfkeyd.log" &
pid=$!
for _ in $(seq 100); do [ -s "$work/server/port" ] && break; sleep 0.1; done
url="https://127.0.0.1:$(cat "$work/server/port")"
ca=$work/server/tls-cert.pem

echo "== the owner (alice) makes a key, then goes offline"
build/server/halfkeyd token --config "$conf" --sub alice >"$work/alice.jwt"
build/server/halfkeyd token --config "$conf" --sub shop --scope request \
    >"$work/shop.jwt"
export HALFKEY_PIN=requests-pin-1234
hk() { build/tools/halfkey --dir "$work/token" "$@"; }
hk init --url "$url" --server-pin "$(sed -n 's/^pin = //p' "$work/init.out")" \
    --token-file "$work/alice.jwt" >/dev/null
kid=$(hk keygen --curve secp256k1 --label payouts | sed -n 's/^key_id = //p')
address=$(hk pubkey --key payouts | openssl ec -pubin -pubout -conv_form \
    uncompressed -outform DER 2>/dev/null | tail -c 64 |
    "$py" -c 'import sys; from Crypto.Hash import keccak; print("0x" + keccak.new(digest_bits=256, data=sys.stdin.buffer.read()).digest()[-20:].hex())')
echo "key $kid, address $address"

echo "== the requester asks while no client runs"
rid=$("$py" examples/requests/requester.py ask --url "$url" --ca "$ca" \
    --jwt "$work/shop.jwt" --key-id "$kid" \
    --to 0xd8da6bf26964af9d7eed9e03e53415d37aa96045 --value 100000000000000000)
echo "request $rid"

echo "== the owner comes online: lists, approves"
hk requests
hk approve "$rid"

echo "== the requester gets the signed transaction"
raw=$("$py" examples/requests/requester.py wait --url "$url" --ca "$ca" \
    --jwt "$work/shop.jwt" --id "$rid")
echo "signed ${raw:0:40}..."
"$py" examples/requests/requester.py check --raw "$raw" --address "$address"
echo "== ok"
