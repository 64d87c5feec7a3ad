# Sourced by the scripts in this folder: create .venv and install hinas into it, idempotently.
# torch/torchvision are pinned to the releases this machine serves from its local disk
# (HINAS_TORCH / HINAS_TORCHVISION override them; hinas itself accepts torch 2.11-2.14).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${HINAS_VENV:-$ROOT/.venv}"
EXTRAS="${1:-}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "[hinas] creating $VENV" >&2
  python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"
stamp="$VENV/.hinas-installed${EXTRAS:+-$EXTRAS}"
want="$(cat "$ROOT/pyproject.toml" | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  if ! "$PY" -c "import torch, torchvision" 2>/dev/null; then
    echo "[hinas] installing torch and torchvision" >&2
    "$PY" -m pip install -q --upgrade pip
    "$PY" -m pip install -q "torch==${HINAS_TORCH:-2.14.1}" "torchvision==${HINAS_TORCHVISION:-0.29.1}"
  fi
  echo "[hinas] installing hinas${EXTRAS:+[$EXTRAS]} and its dependencies" >&2
  "$PY" -m pip install -q -e "$ROOT${EXTRAS:+[$EXTRAS]}"
  echo "$want" > "$stamp"
fi
export PATH="$VENV/bin:$PATH"
