#!/usr/bin/env bash
# Makes a CA and one node certificate for every tierkv process of a cluster,
# then prints the command that stores them as the tierkv-tls secret.
#
#   ./make-certs.sh [DIR] [NAMESPACE]      (default: ./certs, tierkv)
#
# The node certificate serves both sides of every link (mutual TLS): it names
# the origin and the regional nodes as the manifests address them, and can
# authenticate as a client. Keep ca.key offline; it can mint new nodes.
set -euo pipefail
dir="${1:-./certs}"
ns="${2:-tierkv}"
mkdir -p "$dir"
cd "$dir"
umask 077

# EC P-256 keys in PKCS#8 PEM, which rustls reads.
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ca.key
openssl req -x509 -new -key ca.key -sha256 -days 3650 -subj "/CN=tierkv CA" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out ca.pem

openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out node.key
openssl req -new -key node.key -subj "/CN=tierkv node" -out node.csr
cat > node.ext <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=DNS:localhost,DNS:origin,DNS:origin.${ns}.svc,DNS:origin.${ns}.svc.cluster.local,DNS:*.origin.${ns}.svc,DNS:*.origin.${ns}.svc.cluster.local,DNS:regional,DNS:regional.${ns}.svc,DNS:*.regional.${ns}.svc,DNS:*.regional.${ns}.svc.cluster.local,DNS:edge,DNS:edge.${ns}.svc
EXT
openssl x509 -req -in node.csr -CA ca.pem -CAkey ca.key -CAcreateserial -sha256 -days 825 \
  -extfile node.ext -out node.pem
rm -f node.csr node.ext ca.srl
chmod 644 ca.pem node.pem

echo "Certificates in $(pwd). Store them in the cluster with:"
echo "  kubectl -n ${ns} create secret generic tierkv-tls --from-file=ca.pem=$(pwd)/ca.pem --from-file=node.pem=$(pwd)/node.pem --from-file=node.key=$(pwd)/node.key"
