#!/bin/sh
# Makes a self-signed certificate for a halfkey key (signed by the split
# key), then verifies it with plain openssl.
#   examples/self-signed.sh 'halfkey:object=web' '/CN=127.0.0.1' OUT.crt [DAYS]
# Token, PIN and $HALFKEY_PROVIDER_DIR as in sign-verify.sh.
set -eu
[ $# -ge 3 ] && [ $# -le 4 ] || {
    echo "usage: $0 URI SUBJECT OUT [DAYS]" >&2
    exit 2
}
uri=$1 subject=$2 out=$3 days=${4:-365}
dir=${HALFKEY_PROVIDER_DIR:-$(dirname "$0")/../build/ossl-provider}
openssl req -provider-path "$dir" -provider halfkey -provider default \
    -new -x509 -key "$uri" -subj "$subject" -days "$days" -out "$out"
openssl verify -CAfile "$out" "$out"
