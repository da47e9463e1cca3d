#!/bin/sh
# Install a waferscope edge image on an air-gapped box: verify first, then install offline.
#
#   tar xf waferscope-edge-image-<version>.tar -C image && image/install.sh --root root.pub
#
# Options: --root FILE (the trusted root public key, required), --prefix DIR (the virtualenv to
# create, default /opt/waferscope-edge), --python EXE (default python3, 3.11 or newer).
# Nothing is installed unless verify_image.py accepts image.wsrelease against the root key.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=""
prefix=/opt/waferscope-edge
python=python3
while [ $# -gt 0 ]; do
    case "$1" in
        --root) root=$2; shift 2 ;;
        --prefix) prefix=$2; shift 2 ;;
        --python) python=$2; shift 2 ;;
        *) echo "install.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
if [ -z "$root" ]; then
    echo "install.sh: --root ROOT.pub is required (the trusted root public key)" >&2
    exit 2
fi
if [ -e "$prefix" ]; then
    echo "install.sh: $prefix exists; choose another --prefix or remove it" >&2
    exit 2
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$python" "$here/verify_image.py" --root "$root" --extract "$work/payload" "$here/image.wsrelease"

"$python" -m venv "$prefix"
"$prefix/bin/python" -m pip install --quiet --no-index --find-links "$work/payload/wheels" \
    waferscope-edge
mkdir -p "$prefix/share/waferscope"
cp -R "$work/payload/engine" "$prefix/share/waferscope/engine"
"$prefix/bin/waferscope" edge check-bundle "$prefix/share/waferscope/engine"
echo "installed waferscope edge into $prefix; engine bundle: $prefix/share/waferscope/engine"
echo "next: write edge.toml ([model] path = \"$prefix/share/waferscope/engine\") and run"
echo "      $prefix/bin/waferscope edge run -c edge.toml"
