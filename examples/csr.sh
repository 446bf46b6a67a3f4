#!/bin/sh
# Makes a certificate signing request signed by a halfkey key, then checks
# its signature with plain openssl.
#   examples/csr.sh 'pkcs11:object=web;type=private' '/CN=web.example' OUT.csr
# Token, PIN and $HALFKEY_PROVIDER_DIR as in sign-verify.sh.
set -eu
[ $# -eq 3 ] || { echo "usage: $0 URI SUBJECT OUT" >&2; exit 2; }
uri=$1 subject=$2 out=$3
dir=${HALFKEY_PROVIDER_DIR:-$(dirname "$0")/../build/ossl-provider}
openssl req -provider-path "$dir" -provider halfkey -provider default \
    -new -key "$uri" -subj "$subject" -out "$out"
openssl req -in "$out" -verify -noout
