#!/bin/sh
# Container entrypoint: refresh the TensorRT engine cache when the models or onnxruntime
# changed (a no-op otherwise), then run the command (default: edge-msa run --config ...).
# PREBUILD_ENGINES=0 skips the refresh (for example with runtime.backend = "cpu").
if [ "${PREBUILD_ENGINES:-1}" = 1 ]; then
    python /opt/edge-msa/deploy/jetson/build_engines.py --if-changed \
        || echo "entrypoint: engine prebuild failed; sessions build engines on first use" >&2
fi
exec "$@"
