#!/usr/bin/env bash
# Idempotently create a venv with a pinned Ray + msgpack for the ray-like backend.
# Usage: setup-venv.sh [VENV_DIR]   (default: target/ray-venv in the workspace)
# Env:   PYTHON (interpreter to build the venv from; default python3.11, then python3)
set -euo pipefail

RAY_VERSION="${RAY_VERSION:-2.60.0}"
MSGPACK_VERSION="${MSGPACK_VERSION:-1.2.4}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${1:-$HERE/../../target/ray-venv}"
PY="${PYTHON:-$(command -v python3.11 || command -v python3)}"

want="ray==${RAY_VERSION} msgpack==${MSGPACK_VERSION}"
stamp="$VENV/.backplane-ray-stamp"

if [[ -x "$VENV/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    # Fast path: check that the imports still work (a half-deleted venv is rebuilt).
    if "$VENV/bin/python" -c "import ray, msgpack, sys; sys.exit(ray.__version__ != '$RAY_VERSION')" 2>/dev/null; then
        echo "venv $VENV already has $want"
        exit 0
    fi
fi

start=$(date +%s%N)
if [[ ! -x "$VENV/bin/python" ]]; then
    "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
# Plain `ray` (no extras): core only, no dashboard deps -> include_dashboard=False is required.
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "ray==${RAY_VERSION}" "msgpack==${MSGPACK_VERSION}"
"$VENV/bin/python" -c "import ray, msgpack; print('ray', ray.__version__, 'msgpack', msgpack.version)"
echo "$want" > "$stamp"
end=$(date +%s%N)
echo "venv $VENV ready in $(( (end - start) / 1000000 )) ms"
