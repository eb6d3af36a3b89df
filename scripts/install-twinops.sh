#!/usr/bin/env bash
# Installs one release of twinops and puts it on PATH: the archive for this machine's OS and
# architecture, checked against the release's SHA256SUMS before anything is installed. The composite
# action (action.yml) and the Azure Pipelines examples run it; it works by hand as well. It never
# installs a moving ref such as `main`: building from source is an explicit choice
# (TWINOPS_BUILD_FROM_SOURCE=true), at a ref resolved to its commit first, so that what is installed
# (and the cache key) names exactly one build. Idempotent per version: a version already installed
# under TWINOPS_ROOT is kept. Prints nothing secret; never reads TWINOPS_HUB.
#
# Usage: install-twinops.sh [install|resolve|target|targets]
#   install   (default) install, put the bin directory on PATH (GitHub Actions, Azure Pipelines) and
#             print it on stdout
#   resolve   print what `install` would install as key=value lines (version, commit, repository,
#             releases, dir, bin, cache-key), also appended to $GITHUB_OUTPUT; reads no network
#             except `git ls-remote` when building from source
#   target    print this machine's release target
#   targets   print every release target this script can name (the release workflow builds each)
#
# Environment:
#   TWINOPS_VERSION            the release: v1.2.3 (1.2.3 reads as v1.2.3)
#   TWINOPS_BUILD_FROM_SOURCE  `true`: build with `cargo install` at TWINOPS_REF instead (minutes;
#                              needs a Rust toolchain)
#   TWINOPS_REF                branch, tag or full commit hash to build (default: the version's tag)
#   TWINOPS_REPO               owner/name of the twinops repository; when empty: taken from
#                              GITHUB_ACTION_PATH (…/_actions/OWNER/NAME/REF), then TWINOPS_RELEASE_REPO
#   TWINOPS_RELEASE_REPO       the repository the release workflow wrote into action.yml
#   TWINOPS_RELEASES           base URL of the release downloads (default
#                              https://github.com/$repo/releases/download; the tests use file://DIR)
#   TWINOPS_GIT_URL            where to build from (default https://github.com/$repo)
#   TWINOPS_ROOT               where versions are installed, one directory each (default ~/.twinops)
set -euo pipefail

# The placeholder action.yml holds until the release workflow writes a release into it.
PLACEHOLDER=unreleased

# `uname -s`/`uname -m` -> release target. The release workflow (.github/workflows/release.yml)
# builds each target named here, and archives it as twinops-VERSION-TARGET.tar.gz.
TARGETS="Linux/x86_64 x86_64-unknown-linux-musl
Linux/aarch64 aarch64-unknown-linux-musl
Linux/arm64 aarch64-unknown-linux-musl
Darwin/x86_64 x86_64-apple-darwin
Darwin/arm64 aarch64-apple-darwin
Windows/x86_64 x86_64-pc-windows-msvc"

say() { echo "twinops install: $*" >&2; }
die() {
  say "$*"
  exit 1
}

# This machine's release target, or nothing.
target() {
  local os arch
  os="$(uname -s)"
  arch="$(uname -m)"
  case "$os" in MINGW* | MSYS* | CYGWIN* | Windows_NT) os=Windows ;; esac
  echo "$TARGETS" | awk -v k="$os/$arch" '$1 == k { print $2; exit }'
}

# The twinops repository (owner/name), or nothing: the input, then the action's own checkout
# path (github.action_repository can be empty inside a composite action), then what the release
# workflow wrote into action.yml.
repository() {
  local r="${TWINOPS_REPO:-}" p rest owner
  if [ -z "$r" ] && [ -n "${GITHUB_ACTION_PATH:-}" ]; then
    p="${GITHUB_ACTION_PATH//\\//}"
    case "$p" in
      */_actions/*/*/*)
        rest="${p##*/_actions/}"
        owner="${rest%%/*}"
        rest="${rest#*/}"
        r="$owner/${rest%%/*}"
        ;;
    esac
  fi
  if [ -z "$r" ] && [ "${TWINOPS_RELEASE_REPO:-$PLACEHOLDER}" != "$PLACEHOLDER" ]; then
    r="$TWINOPS_RELEASE_REPO"
  fi
  if [ -n "$r" ] && ! [[ "$r" =~ ^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$ ]]; then
    die "\`$r\` is not a repository (owner/name)"
  fi
  echo "$r"
}

need_repository() {
  [ -n "$repo" ] && return 0
  die "cannot tell which repository to $1: set the action's \`repository\` input (or TWINOPS_REPO) to owner/name of twinops"
}

# A path as the runner's other steps and actions take it (C:/… on Windows).
runner_path() {
  if command -v cygpath > /dev/null 2>&1; then cygpath -m "$1"; else echo "$1"; fi
}

sha256() {
  if command -v sha256sum > /dev/null 2>&1; then
    sha256sum "$1" | awk '{ print $1 }'
  else
    shasum -a 256 "$1" | awk '{ print $1 }'
  fi
}

fetch() {
  curl --fail --silent --show-error --location --retry 3 --output "$2" "$1"
}

# The commit a ref names in the source repository: a moving ref (a branch) is never cached by name.
commit_of() {
  local ref="$1" url="$2" lines sha
  if [[ "$ref" =~ ^[0-9a-f]{40}$ ]]; then
    echo "$ref"
    return
  fi
  lines="$(git ls-remote "$url" "refs/tags/$ref^{}" "refs/tags/$ref" "refs/heads/$ref")" \
    || die "cannot read the refs of $url"
  for want in "refs/tags/$ref^{}" "refs/tags/$ref" "refs/heads/$ref"; do
    sha="$(echo "$lines" | awk -v r="$want" '$2 == r { print $1; exit }')"
    if [ -n "$sha" ]; then
      echo "$sha"
      return
    fi
  done
  die "$url has no branch or tag \`$ref\` (give a commit as its full 40-character hash)"
}

mode="${1:-install}"
case "$mode" in
  install | resolve) ;;
  targets)
    echo "$TARGETS" | awk '{ print $2 }' | sort -u
    exit 0
    ;;
  target)
    t="$(target)"
    [ -n "$t" ] || die "no twinops release is built for $(uname -s)/$(uname -m)"
    echo "$t"
    exit 0
    ;;
  *) die "unknown mode \`$mode\` (install, resolve, target or targets)" ;;
esac

version="${TWINOPS_VERSION:-}"
if [[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+ ]]; then version="v$version"; fi
from_source="${TWINOPS_BUILD_FROM_SOURCE:-false}"
repo="$(repository)"
root="${TWINOPS_ROOT:-$HOME/.twinops}"
t="$(target)"
if [ -z "$t" ]; then
  [ "$from_source" = true ] \
    || die "no twinops release is built for $(uname -s)/$(uname -m); use build-from-source: true"
  t="$(uname -s)-$(uname -m)"
fi

case "$from_source" in
  true)
    ref="${TWINOPS_REF:-}"
    if [ -z "$ref" ] && [[ "$version" =~ ^v[0-9]+\.[0-9]+\.[0-9]+ ]]; then ref="$version"; fi
    [ -n "$ref" ] || die "build-from-source needs a ref: a branch, tag or commit of twinops to build"
    git_url="${TWINOPS_GIT_URL:-}"
    if [ -z "$git_url" ]; then
      need_repository "build from"
      git_url="https://github.com/$repo"
    fi
    commit="$(commit_of "$ref" "$git_url")"
    name="src-$commit"
    ;;
  false)
    if [ "$version" = "$PLACEHOLDER" ]; then
      die "this action.yml is not from a release (its version is the placeholder \`$PLACEHOLDER\`): use a release tag (uses: OWNER/twinops@v1), set \`version: vX.Y.Z\`, or build from source with \`build-from-source: true\` and \`ref:\`"
    fi
    if ! [[ "$version" =~ ^v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]]; then
      die "\`${version}\` is not a twinops release (vX.Y.Z); to build a branch or commit, set \`build-from-source: true\` and \`ref: ${version:-main}\`"
    fi
    releases="${TWINOPS_RELEASES:-}"
    if [ -z "$releases" ] && [ -n "$repo" ]; then
      releases="https://github.com/$repo/releases/download"
    fi
    name="$version"
    ;;
  *) die "build-from-source is \`$from_source\`: write true or false" ;;
esac

dir="$root/$name"
bin="$dir/bin"

if [ "$mode" = resolve ]; then
  {
    echo "version=$name"
    echo "commit=${commit:-}"
    echo "repository=$repo"
    echo "releases=${releases:-}"
    echo "dir=$(runner_path "$dir")"
    echo "bin=$(runner_path "$bin")"
    echo "cache-key=twinops-$t-$name"
  } | tee -a "${GITHUB_OUTPUT:-/dev/null}"
  exit 0
fi

on_path() {
  local p
  p="$(runner_path "$bin")"
  if [ -n "${GITHUB_PATH:-}" ]; then echo "$p" >> "$GITHUB_PATH"; fi
  if [ "${TF_BUILD:-}" = True ]; then echo "##vso[task.prependpath]$p"; fi
  echo "$p"
}

if [ -f "$dir/installed" ]; then
  say "twinops $name is already installed in $bin"
  on_path
  exit 0
fi

tmp="$(mktemp -d)"
place=""
trap 'rm -rf "$tmp" ${place:+"$place"}' EXIT
stage="$tmp/stage"
mkdir -p "$stage/bin"

if [ "$from_source" = true ]; then
  say "building twinops at $ref ($commit) from $git_url: this takes minutes"
  cargo install --locked --git "$git_url" --rev "$commit" --root "$stage" twinops
  echo "built from $git_url at $commit" > "$stage/installed"
else
  [ -n "$releases" ] || need_repository "download twinops from"
  asset="twinops-$version-$t.tar.gz"
  fetch "$releases/$version/SHA256SUMS" "$tmp/SHA256SUMS" \
    || die "cannot download $releases/$version/SHA256SUMS: is $version a twinops release?"
  want="$(awk -v a="$asset" '$2 == a || $2 == "*" a { print $1; exit }' "$tmp/SHA256SUMS")"
  [ -n "$want" ] || die "the release $version lists no $asset in its SHA256SUMS; nothing installed"
  fetch "$releases/$version/$asset" "$tmp/$asset" \
    || die "cannot download $releases/$version/$asset; nothing installed"
  got="$(sha256 "$tmp/$asset")"
  if [ "$want" != "$got" ]; then
    die "checksum mismatch for $asset: SHA256SUMS says $want, the download is $got; nothing installed"
  fi
  tar -xzf "$tmp/$asset" -C "$stage/bin"
  [ -f "$stage/bin/twinops" ] || [ -f "$stage/bin/twinops.exe" ] || die "$asset holds no twinops binary"
  chmod 0755 "$stage/bin/"twinops*
  echo "$got  $asset" > "$stage/installed"
fi

# Into place with one rename on the same file system, so that an interrupted install leaves
# nothing that looks installed.
mkdir -p "$root"
place="$(mktemp -d "$root/.$name.XXXXXX")"
chmod 0755 "$place"
cp -R "$stage/." "$place/"
rm -rf "$dir"
mv "$place" "$dir"
place=""
say "installed twinops $name ($t) in $bin"
on_path
