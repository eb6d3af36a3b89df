#!/usr/bin/env bash
# The release workflow's steps that are worth testing, kept out of YAML so that the tests run the
# same code (tests/it/examples_workflows/install.rs): the archive names that install-twinops.sh
# downloads, the one checksum file, the version written into action.yml, and which major tag moves.
#
# Usage:
#   release-assets.sh check-tag TAG                 TAG is v + the version in Cargo.toml (so that
#                                                   `twinops --version` says what the release says)
#   release-assets.sh archive TAG TARGET BINARY DIR DIR/twinops-TAG-TARGET.tar.gz holding BINARY
#                                                   (twinops, or twinops.exe) at its root
#   release-assets.sh checksums DIR                 DIR/SHA256SUMS: `sha256  name` of every other file
#   release-assets.sh stamp TAG REPO ACTION_YML     write TAG and REPO (owner/name) over the
#                                                   `unreleased` placeholders of action.yml
#   release-assets.sh major TAG                     print the major tag (v1) when TAG is the newest
#                                                   release of that major among the repository's
#                                                   tags and not a pre-release; else print nothing
set -euo pipefail

PLACEHOLDER=unreleased

die() {
  echo "release-assets: $*" >&2
  exit 1
}

sha256() {
  if command -v sha256sum > /dev/null 2>&1; then
    sha256sum "$1" | awk '{ print $1 }'
  else
    shasum -a 256 "$1" | awk '{ print $1 }'
  fi
}

release_tag() {
  [[ "$1" =~ ^v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]] || die "\`$1\` is not a release tag (vX.Y.Z)"
}

cmd="${1:-}"
shift || true
case "$cmd" in
  check-tag)
    tag="${1:?TAG}"
    release_tag "$tag"
    # path+file:///…#twinops@1.2.3 (or …#1.2.3 from older cargo)
    id="$(cargo pkgid -p twinops)"
    version="${id##*[#@]}"
    [ "$tag" = "v$version" ] \
      || die "the tag $tag is not v$version, the version in Cargo.toml: set the version, commit, and tag that commit"
    ;;
  archive)
    tag="${1:?TAG}" target="${2:?TARGET}" binary="${3:?BINARY}" out="${4:?DIR}"
    release_tag "$tag"
    [ -f "$binary" ] || die "no binary at $binary"
    name="$(basename "$binary")"
    case "$name" in twinops | twinops.exe) ;; *) die "the binary is $name, not twinops" ;; esac
    mkdir -p "$out"
    stage="$(mktemp -d)"
    trap 'rm -rf "$stage"' EXIT
    cp "$binary" "$stage/$name"
    chmod 0755 "$stage/$name"
    # GZIP_LEVEL: 9 (the smallest download) unless the caller is in a hurry (the tests archive a
    # 200 MB debug binary).
    tar -cf - -C "$stage" "$name" | gzip -n -"${GZIP_LEVEL:-9}" > "$out/twinops-$tag-$target.tar.gz"
    echo "$out/twinops-$tag-$target.tar.gz"
    ;;
  checksums)
    dir="${1:?DIR}"
    sums="$(mktemp)"
    (
      cd "$dir"
      rm -f SHA256SUMS
      for f in *; do
        if [ -f "$f" ]; then printf '%s  %s\n' "$(sha256 "$f")" "$f"; fi
      done
    ) > "$sums"
    mv "$sums" "$dir/SHA256SUMS"
    chmod 0644 "$dir/SHA256SUMS"
    [ -s "$dir/SHA256SUMS" ] || die "$dir holds no file to checksum"
    ;;
  stamp)
    tag="${1:?TAG}" repo="${2:?REPO}" file="${3:?ACTION_YML}"
    release_tag "$tag"
    [[ "$repo" =~ ^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$ ]] || die "\`$repo\` is not owner/name"
    grep -q "^    default: $PLACEHOLDER$" "$file" || die "$file has no \`default: $PLACEHOLDER\` version to write"
    grep -q "TWINOPS_RELEASE_REPO: $PLACEHOLDER$" "$file" || die "$file has no TWINOPS_RELEASE_REPO placeholder"
    sed -e "s|^    default: $PLACEHOLDER\$|    default: $tag|" \
      -e "s|TWINOPS_RELEASE_REPO: $PLACEHOLDER\$|TWINOPS_RELEASE_REPO: $repo|" "$file" > "$file.stamped"
    mv "$file.stamped" "$file"
    if grep -nE "^[^#]*: $PLACEHOLDER\$" "$file"; then die "$file still holds the placeholder"; fi
    ;;
  major)
    tag="${1:?TAG}"
    release_tag "$tag"
    case "$tag" in *-*) exit 0 ;; esac
    major="${tag%%.*}"
    newest="$(git tag --list "$major.*.*" | grep -E '^v[0-9]+\.[0-9]+\.[0-9]+$' | sort -V | tail -n 1)"
    if [ "$newest" = "$tag" ]; then echo "$major"; fi
    ;;
  *) die "usage: release-assets.sh check-tag|archive|checksums|stamp|major …" ;;
esac
