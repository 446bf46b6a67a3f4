#!/usr/bin/env bash
# The browser login end to end on a fresh halfkeyd (127.0.0.1): token, P-256
# key, test CA and certificates (hkbrowser.py pki), s_server asking for the
# client certificate, then headless Firefox ESR and Chromium open the page
# and sign the TLS handshake with the halfkey key. See README.md.
#   examples/browser/run.sh [--keep]     --keep: leave the work directory
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
py=$root/.venv/bin/python
ninja -C build -j 2 >/dev/null
work=$(mktemp -d /tmp/halfkey-browser.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
    [ "${1:-}" = "--keep" ] && echo "work directory: $work" || rm -rf "$work"
}
trap 'cleanup "${1:-}"' EXIT

build/server/halfkeyd init "$work/server" --port 0 >"$work/init.out"
echo "port_file = port" >>"$work/server/halfkeyd.conf"
build/server/halfkeyd run --config "$work/server/halfkeyd.conf" \
    2>"$work/halfkeyd.log" &
pids+=($!)
for _ in $(seq 100); do [ -s "$work/server/port" ] && break; sleep 0.1; done
build/server/halfkeyd token --config "$work/server/halfkeyd.conf" \
    --sub browser-user >"$work/token.jwt"
export HALFKEY_PIN=browser-pin-1234
build/tools/halfkey --dir "$work/token" init \
    --url "https://127.0.0.1:$(cat "$work/server/port")" \
    --server-pin "$(sed -n 's/^pin = //p' "$work/init.out")" \
    --token-file "$work/token.jwt" >/dev/null
export HALFKEY_PKCS11_TOKENS=$work/token
(umask 077; echo "$HALFKEY_PIN" >"$work/pin")
export HALFKEY_PKCS11_PIN_FILE=$work/pin

"$py" examples/browser/hkbrowser.py pki --work "$work/pki"
"$py" examples/browser/hkbrowser.py serve --work "$work/pki" >"$work/serve.out" &
pids+=($!)
for _ in $(seq 100); do grep -q '^url' "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
url=$(sed -n 's/^url = //p' "$work/serve.out")
echo "== Firefox ESR -> $url"
HALFKEY_PKCS11_AUTO_LOGIN=1 timeout 120 \
    "$py" examples/browser/hkbrowser.py firefox --work "$work/pki" --url "$url"
if command -v chromium >/dev/null; then
    echo "== Chromium -> $url"
    HALFKEY_PKCS11_AUTO_LOGIN=1 timeout 180 \
        "$py" examples/browser/hkbrowser.py chromium --work "$work/pki" --url "$url"
fi
echo "== halfkeyd's audit log: the signatures the handshakes caused"
build/server/halfkeyd audit export --config "$work/server/halfkeyd.conf" |
    grep '"event":"sign","outcome":"ok"' | cut -c1-160
