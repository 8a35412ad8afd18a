#!/usr/bin/env bash
# Makes the development CA and server certificate for the nexushub demo:
#
#   ca.pem, ca.key    a development CA (CA:TRUE, ECDSA P-256). Trust it only in
#                     curl (--cacert) or a throw-away browser profile: its key is
#                     public, in this repository.
#   dev.pem           the server certificate (CA:FALSE, serverAuth) followed by
#                     ca.pem, i.e. a fullchain.pem, for `cert =` in the config.
#   dev.key           its private key, PKCS#8, for `key =` in the config.
#
# Then:  curl --cacert examples/certs/ca.pem https://hello.localhost:8443/
#
# An existing ca.pem/ca.key pair is reused, so a CA you already trust stays valid;
# delete both to get a new CA. To cover more host names, list them as extra SANs:
#   EXTRA_SANS="DNS:blog.localhost,DNS:shop.localhost" examples/certs/regen.sh
#
# `*.localhost` is in the SAN list but matches nothing: rustls, OpenSSL, curl and
# browsers all ignore a wildcard with fewer than two labels after it. Each demo host
# name (hello.localhost, whoami.localhost) is therefore listed on its own.
#
# Git keeps no permission bits but the executable one: after a checkout, run
# `chmod 600 examples/certs/dev.key` or nexushub warns that others can read it.
set -euo pipefail

cd "$(dirname "$0")"

SAN="DNS:localhost,DNS:*.localhost,DNS:hello.localhost,DNS:whoami.localhost,IP:127.0.0.1,IP:::1"
if [ -n "${EXTRA_SANS:-}" ]; then
    SAN="$SAN,$EXTRA_SANS"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cat >"$work/ext.cnf" <<EOF
[ v3_ca ]
basicConstraints       = critical, CA:TRUE, pathlen:0
keyUsage               = critical, keyCertSign, cRLSign
subjectKeyIdentifier   = hash

[ v3_leaf ]
basicConstraints       = critical, CA:FALSE
keyUsage               = critical, digitalSignature
extendedKeyUsage       = serverAuth
subjectAltName         = $SAN
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid
EOF

# ec_key FILE: a new ECDSA P-256 key in PKCS#8 ("PRIVATE KEY") form.
ec_key() {
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
        -pkeyopt ec_param_enc:named_curve -out "$1"
}

# The CA: about 30 years, since its only use is this demo.
if [ ! -f ca.pem ] || [ ! -f ca.key ]; then
    ec_key ca.key
    openssl req -x509 -new -key ca.key -subj "/O=nexushub demo/CN=nexushub development CA" \
        -days 10950 -sha256 -config "$work/ext.cnf" -extensions v3_ca -out ca.pem
fi

# The server certificate: valid from now for about 10 years. `x509 -req -days` is
# enough here (no fixed dates needed), and works with OpenSSL 3.0.
ec_key dev.key
openssl req -new -key dev.key -subj "/O=nexushub demo/CN=localhost" -out "$work/dev.csr"
openssl x509 -req -in "$work/dev.csr" -CA ca.pem -CAkey ca.key -CAcreateserial \
    -CAserial "$work/ca.srl" -days 3650 -sha256 \
    -extfile "$work/ext.cnf" -extensions v3_leaf -out "$work/dev.pem" 2>/dev/null
cat "$work/dev.pem" ca.pem >dev.pem
chmod 600 ca.key dev.key
