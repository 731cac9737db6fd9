#!/bin/sh
# The image's health check: the server's gRPC health (exit 0 when SERVING). With TLS it trusts
# ONNXPRUNE_HEALTH_CA (default: the server's own certificate, for a self-signed one naming
# localhost) and, with mutual TLS, presents ONNXPRUNE_HEALTH_CERT and ONNXPRUNE_HEALTH_KEY.
set -eu
set -- remote health --server "localhost:${ONNXPRUNE_PORT:-50051}" --timeout 4
if [ -n "${ONNXPRUNE_TLS_CERT:-}" ]; then
    set -- "$@" --tls-ca "${ONNXPRUNE_HEALTH_CA:-$ONNXPRUNE_TLS_CERT}"
    if [ -n "${ONNXPRUNE_HEALTH_CERT:-}" ]; then
        set -- "$@" --tls-cert "$ONNXPRUNE_HEALTH_CERT" --tls-key "$ONNXPRUNE_HEALTH_KEY"
    fi
fi
exec onnxprune "$@" > /dev/null
