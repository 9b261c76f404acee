#!/usr/bin/env bash
# Prepares the Python node: a venv with the pinned packages of requirements.txt,
# and the protobuf module generated from proto/ringgate.proto (never committed).
# Idempotent and quick when nothing changed: packages are reinstalled only when
# requirements.txt changes; the module is regenerated every run (under a second).
#
#   examples/python_node/setup.sh
#
# Environment:
#   RINGGATE_NODE_VENV  where the venv lives (default: examples/python_node/.venv)
#   RINGGATE_PROTO      the .proto to generate from (default: proto/ringgate.proto)
#   PYTHON              the interpreter that creates the venv (default: python3, 3.11+)
#
# Afterwards `$RINGGATE_NODE_VENV/bin/python -m ringgate_node ...` works from any
# directory (the venv gets a .pth file naming this directory).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
PROTO="${RINGGATE_PROTO:-$REPO/proto/ringgate.proto}"
VENV="${RINGGATE_NODE_VENV:-$HERE/.venv}"
PYTHON="${PYTHON:-python3}"

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "setup.sh: $PYTHON is $("$PYTHON" --version 2>&1); the node needs Python 3.11 or later" >&2
  exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
  if ! "$PYTHON" -m venv "$VENV"; then
    rm -rf "$VENV"
    echo "setup.sh: could not create a venv with $PYTHON; on Debian: apt-get install python3-venv" >&2
    exit 1
  fi
fi

# Packages: installed again only when requirements.txt changed since the last run.
stamp="$VENV/.ringgate-requirements.sha256"
want="$(sha256sum "$HERE/requirements.txt" | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore \
    "$VENV/bin/python" -m pip install --quiet -r "$HERE/requirements.txt"
  echo "$want" >"$stamp"
fi

# The package itself: importable from the venv wherever it runs.
"$VENV/bin/python" - "$HERE" <<'EOF'
import pathlib, site, sys
pathlib.Path(site.getsitepackages()[0], "ringgate_node.pth").write_text(sys.argv[1] + "\n")
EOF

# Generated code, into a fresh directory first so that a failed run leaves the
# previous module intact. SOURCE_SHA256 lets the package notice a .proto that
# changed after generation (ringgate_node/proto.py refuses stale code).
OUT="$HERE/ringgate_node/_generated"
tmp="$(mktemp -d "$HERE/ringgate_node/.gen.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
"$VENV/bin/python" -m grpc_tools.protoc -I "$(dirname "$PROTO")" \
  --python_out="$tmp" --pyi_out="$tmp" "$PROTO"
: >"$tmp/__init__.py"
sha256sum "$PROTO" | cut -d' ' -f1 >"$tmp/SOURCE_SHA256"
rm -rf "$OUT"
mv "$tmp" "$OUT"
trap - EXIT
echo "setup.sh: venv $VENV ready; generated $(basename "$PROTO" .proto)_pb2.py from $PROTO"
