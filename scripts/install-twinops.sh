#!/usr/bin/env bash
# Installs twinops for the composite action (action.yml): a release binary when one exists for this
# runner (checked against its published SHA-256), otherwise `cargo install --locked --git` at the
# given ref. Idempotent: an installed binary of the same version is kept (the action caches the
# install directory). Prints nothing secret; never reads TWINOPS_HUB.
#
# Environment:
#   TWINOPS_VERSION   release tag (v1.2.3) or git ref (branch, tag, commit) to install; default main
#   TWINOPS_REPO      owner/name of the twinops repository (the action passes its own)
#   TWINOPS_ROOT      install root; the binary goes to $TWINOPS_ROOT/bin (default ~/.twinops)
#   TWINOPS_RELEASES  base URL of release downloads (default https://github.com/$TWINOPS_REPO/releases/download);
#                     the test suite points it at a local directory with file://
set -euo pipefail

version="${TWINOPS_VERSION:-main}"
repo="${TWINOPS_REPO:-}"
root="${TWINOPS_ROOT:-$HOME/.twinops}"
bin="$root/bin"
mkdir -p "$bin"

say() { echo "twinops install: $*" >&2; }

target() {
  local os arch
  os="$(uname -s)"
  arch="$(uname -m)"
  case "$os/$arch" in
    Linux/x86_64) echo x86_64-unknown-linux-gnu ;;
    Linux/aarch64 | Linux/arm64) echo aarch64-unknown-linux-gnu ;;
    Darwin/x86_64) echo x86_64-apple-darwin ;;
    Darwin/arm64) echo aarch64-apple-darwin ;;
    MINGW* | MSYS* | CYGWIN*) echo x86_64-pc-windows-msvc ;;
    *) echo unknown ;;
  esac
}

add_to_path() {
  if [ -n "${GITHUB_PATH:-}" ]; then
    echo "$bin" >> "$GITHUB_PATH"
  fi
}

if { [ -x "$bin/twinops" ] || [ -x "$bin/twinops.exe" ]; } \
  && [ "$(cat "$root/version" 2>/dev/null || true)" = "$version" ]; then
  say "twinops $version already installed in $bin"
  add_to_path
  exit 0
fi

t="$(target)"
base="${TWINOPS_RELEASES:-}"
if [ -z "$base" ] && [ -n "$repo" ]; then
  base="https://github.com/$repo/releases/download"
fi

# A release binary, when the version is a release tag and one is published for this runner.
if [ -n "$base" ] && [ "$t" != unknown ] && [[ "$version" =~ ^v[0-9] ]]; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  asset="twinops-$version-$t.tar.gz"
  if curl -fsSL "$base/$version/$asset" -o "$tmp/$asset" \
    && curl -fsSL "$base/$version/$asset.sha256" -o "$tmp/$asset.sha256"; then
    want="$(awk '{print $1}' "$tmp/$asset.sha256")"
    got="$(sha256sum "$tmp/$asset" 2>/dev/null | awk '{print $1}' || shasum -a 256 "$tmp/$asset" | awk '{print $1}')"
    if [ "$want" != "$got" ]; then
      say "checksum mismatch for $asset (published $want, downloaded $got); refusing it"
      exit 1
    fi
    tar -xzf "$tmp/$asset" -C "$tmp"
    exe=twinops
    [ -f "$tmp/twinops.exe" ] && exe=twinops.exe
    install -m 0755 "$tmp/$exe" "$bin/$exe"
    echo "$version" > "$root/version"
    say "installed release $version ($t) into $bin"
    add_to_path
    exit 0
  fi
  say "no release asset $asset; building from source instead"
fi

# Otherwise build it: minutes on a cold cache, which is why the action caches $TWINOPS_ROOT.
if [ -z "$repo" ]; then
  say "TWINOPS_REPO is not set and no release was found; cannot build"
  exit 1
fi
rev_flag=(--branch "$version")
if [[ "$version" =~ ^v[0-9] ]]; then
  rev_flag=(--tag "$version")
elif [[ "$version" =~ ^[0-9a-f]{7,40}$ ]]; then
  rev_flag=(--rev "$version")
fi
cargo install --locked --git "https://github.com/$repo" "${rev_flag[@]}" --root "$root" twinops
echo "$version" > "$root/version"
say "built twinops $version from source into $bin"
add_to_path
