#!/bin/sh
# Signs FILE with a halfkey key through the OpenSSL provider, then verifies
# the signature with plain openssl (the default provider only).
#   examples/sign-verify.sh 'halfkey:object=web' FILE
# Writes FILE.sig (DER ECDSA-Sig-Value) and FILE.pub.pem. The token and PIN
# come from the URI or the environment ($HALFKEY_HOME, $HALFKEY_PIN);
# $HALFKEY_PROVIDER_DIR is the directory of halfkey.so (default: the
# build/ossl-provider of this checkout).
set -eu
[ $# -eq 2 ] || { echo "usage: $0 URI FILE" >&2; exit 2; }
uri=$1 file=$2
dir=${HALFKEY_PROVIDER_DIR:-$(dirname "$0")/../build/ossl-provider}
set -- -provider-path "$dir" -provider halfkey -provider default
openssl pkey "$@" -in "$uri" -pubout -out "$file.pub.pem"
openssl dgst "$@" -sha256 -sign "$uri" -out "$file.sig" "$file"
openssl dgst -sha256 -verify "$file.pub.pem" -signature "$file.sig" "$file"
