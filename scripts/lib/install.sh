# shellcheck shell=bash
# Sourced by the scripts that install what the tests run (Microsoft's SDKs, schema validators,
# Azurite) under target/: each installs once, under a lock, and again only when its pins change.
# Every install fails loudly (non-zero exit): a test must never pass by skipping.

# install_once DIR STAMP READY COMMAND...
#   Runs COMMAND unless STAMP exists and READY (a file or directory) is there, holding DIR.lock so
#   that test binaries running in parallel do not install twice; then writes STAMP. COMMAND starts
#   from scratch (it removes what an earlier install left in DIR).
install_once() {
  local dir="$1" stamp="$2" ready="$3"
  shift 3
  [[ -f "$stamp" && -e "$ready" ]] && return 0
  mkdir -p "$(dirname "$dir")"
  exec 9>"$dir.lock"
  flock 9
  [[ -f "$stamp" && -e "$ready" ]] && return 0
  "$@"
  touch "$stamp"
}

# npm_stamp SRC DIR: the stamp in DIR that names SRC's package-lock.json, so a changed pin
# reinstalls.
npm_stamp() {
  echo "$2/.twinops-npm-$(sha256sum "$1/package-lock.json" | cut -c1-16)"
}

# npm_ci SRC DIR: installs exactly the tree locked by SRC's package.json and package-lock.json
# into DIR/node_modules.
npm_ci() {
  local src="$1" dir="$2"
  command -v npm >/dev/null || { echo "$0: npm is not installed (apt-get install npm)" >&2; return 1; }
  mkdir -p "$dir"
  rm -rf "$dir/node_modules" "$dir"/.twinops-npm-*
  cp "$src/package.json" "$src/package-lock.json" "$dir/"
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) >&2
}

# pip_stamp VENV PIN...: the stamp in VENV that names the pins, so a changed pin rebuilds it.
pip_stamp() {
  local venv="$1"
  shift
  echo "$venv/.twinops-pip-$(echo "$*" | sha256sum | cut -c1-16)"
}

# pip_venv VENV PIN...: a fresh virtualenv at VENV (made by $PYTHON, default python3) with the
# pinned packages installed.
pip_venv() {
  local venv="$1"
  shift
  rm -rf "$venv"
  "${PYTHON:-python3}" -m venv "$venv" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$@" >&2
}
