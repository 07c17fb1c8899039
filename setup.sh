#!/usr/bin/env bash
# Sets up everything Img2LaTeX needs on Debian/Ubuntu: TeX Live for rendering, Chromium for the
# browser tests, Node.js for the KaTeX check and npm for the web page's packages (web/), the
# clipboard tools (and Xvfb for their test), and the Python package with its development tools
# (and the ONNX converter, extra [onnx]).
set -euo pipefail
cd "$(dirname "$0")"

APT_PACKAGES=(texlive-latex-base texlive-latex-recommended texlive-fonts-recommended
              poppler-utils ghostscript chromium
              lmodern texlive-luatex fonts-texgyre-math fonts-oflb-asana-math
              libjs-katex libjs-mathjax nodejs
              xclip xvfb)
if command -v apt-get >/dev/null; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        "${APT_PACKAGES[@]}"
    if ! command -v npm >/dev/null; then  # Debian's nodejs comes without npm; NodeSource's with it
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends npm
    fi
else
    echo "No apt-get: install a TeX distribution with pdflatex (e.g. TeX Live or MiKTeX) and" \
         "poppler (pdftoppm) yourself; without them the library falls back to matplotlib." >&2
fi
python3 -m pip install -q -e ".[dev]"
if command -v npm >/dev/null; then  # onnxruntime-web and KaTeX, pinned in web/package-lock.json
    npm ci --prefix web --ignore-scripts --no-audit --no-fund
fi
python3 -c "import img2latex_lib, keras; print('img2latex ready, keras', keras.__version__)"
