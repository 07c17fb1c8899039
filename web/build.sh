#!/usr/bin/env bash
# Builds web/dist, the folder to serve (python -m http.server -d web/dist) or publish: the page,
# onnxruntime-web's WebAssembly runtime, KaTeX, and the shipped model exported to ONNX with
# float16 weights (re-exported only when the checkpoint is newer than the export).
#   bash web/build.sh            (or: npm --prefix web run build)
# IMG2LATEX_WEB_CHECKPOINT picks another checkpoint; PYTHON the interpreter that exports it.
set -euo pipefail
cd "$(dirname "$0")"
CHECKPOINT=${IMG2LATEX_WEB_CHECKPOINT:-../checkpoints/img2latex-base}
PYTHON=${PYTHON:-python3}
DIST=dist

if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    npm ci --ignore-scripts --no-audit --no-fund
fi

MODEL="$DIST/model"
if [ ! -f "$MODEL/model.json" ] || [ -n "$(find "$CHECKPOINT" -newer "$MODEL/model.json" -type f)" ]; then
    mkdir -p "$DIST"
    "$PYTHON" -m img2latex_lib.cli export --format onnx --float16 "$CHECKPOINT" "$MODEL"
fi

rm -rf "$DIST/src" "$DIST/ort" "$DIST/katex"
mkdir -p "$DIST/ort" "$DIST/katex/fonts"
cp index.html style.css "$DIST/"
cp -r src "$DIST/src"
ORT=node_modules/onnxruntime-web/dist
cp "$ORT/ort.wasm.bundle.min.mjs" "$ORT/ort-wasm-simd-threaded.wasm" "$DIST/ort/"
KATEX=node_modules/katex/dist
cp "$KATEX/katex.mjs" "$KATEX/katex.min.css" "$DIST/katex/"
cp "$KATEX"/fonts/*.woff2 "$DIST/katex/fonts/"
echo "web/$DIST: $(du -sh "$DIST" | cut -f1) ($(du -sh "$MODEL" | cut -f1) of model)"
