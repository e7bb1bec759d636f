#!/usr/bin/env bash
# The commit that `hsea version` and GET /status report is the one the binary was built from,
# stamped on every build (not when CMake last configured), with "-dirty" for uncommitted changes
# to tracked files.
#   1. The binary under test names the source tree's HEAD (and its dirtiness). Skipped when the
#      source is not a git checkout.
#   2. The build wiring, in a temporary git copy of the source tree (configured; only
#      build_info.cpp is compiled): a build after a new commit stamps the new commit without
#      reconfiguring; a build with nothing changed recompiles nothing; a changed tracked file adds
#      -dirty, an untracked one does not; a source tree that is not a git checkout says "unknown".
#
#   tests/scripts/build_stamp_test.sh SOURCE_DIR HSEA_BINARY
#
# Exit status 77 (skipped) when git is not installed.
set -euo pipefail
src=$(cd "${1:?usage: $0 SOURCE_DIR HSEA_BINARY}" && pwd -P)
binary=${2:?usage: $0 SOURCE_DIR HSEA_BINARY}
unset GIT_DIR GIT_WORK_TREE GIT_INDEX_FILE

log() { printf 'build_stamp_test: %s\n' "$*" >&2; }
fail() {
  log "FAIL: $*"
  exit 1
}

if ! command -v git >/dev/null 2>&1; then
  echo "skipped: git is not installed"
  exit 77
fi

# What the build should have stamped for the work tree DIR.
expected_commit() { # DIR
  local commit
  commit=$(git -C "$1" rev-parse --short=12 HEAD)
  if [ -n "$(git -C "$1" --no-optional-locks status --porcelain --untracked-files=no)" ]; then
    commit+=-dirty
  fi
  echo "$commit"
}
# The commit a generated build_info.cpp holds (the second string of the initializer).
stamped_commit() { # FILE
  sed -n 's/.*kInfo{HSEA_VERSION, "\([^"]*\)", "[^"]*"}.*/\1/p' "$1"
}

# 1. The binary under test.
src_is_checkout=
if [ "$(git -C "$src" rev-parse --show-toplevel 2>/dev/null)" = "$src" ]; then
  src_is_checkout=1
fi
if [ -n "$src_is_checkout" ]; then
  want=$(expected_commit "$src")
  version=$("$binary" version)
  got=$(sed -n 's/.*(commit \([^,]*\), built .*/\1/p' <<<"$version")
  [ "$got" = "$want" ] ||
    fail "'$binary version' says '$version'; the source tree is at $want (stale stamp?)"
  log "ok: $binary names $want"
else
  log "skipping part 1: $src is not a git checkout"
fi

# 2. The wiring, in a temporary copy.
tmp=$(mktemp -d "${TMPDIR:-/tmp}/hsea-stamp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
copy=$tmp/src
mkdir "$copy"
# The source tree as it is on disk: in a checkout, tracked and new files (tracked files since
# deleted are skipped); otherwise everything but build trees and var/.
if [ -n "$src_is_checkout" ]; then
  (cd "$src" && git ls-files -z --cached --others --exclude-standard) |
    tar -C "$src" --null -T - --ignore-failed-read -cf - 2>/dev/null | tar -C "$copy" -xf -
else
  tar -C "$src" --exclude='./build*' --exclude=./var --exclude=node_modules -cf - . |
    tar -C "$copy" -xf -
fi
[ -f "$copy/CMakeLists.txt" ] || fail "copying the source tree to $copy failed"
g() { git -C "$copy" -c user.name=build-stamp-test -c user.email=test@invalid "$@"; }
g init -q
g add -A
g commit -q -m "copy of the source tree"

log "configuring $copy (HSEA_TESTS=OFF)"
cmake -S "$copy" -B "$tmp/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DHSEA_TESTS=OFF \
  >"$tmp/configure.log" 2>&1 || {
  cat "$tmp/configure.log" >&2
  fail "configuring the copy failed"
}
out=$tmp/build/generated/build_info.cpp
# Builds build_info.cpp's object file, the one part of the binary the stamp goes into (a full
# build would take minutes); whatever generates build_info.cpp runs first.
obj=CMakeFiles/hsea_core.dir/generated/build_info.cpp.o
stamp() {
  cmake --build "$tmp/build" --target "$obj" >"$tmp/build.log" 2>&1 || {
    cat "$tmp/build.log" >&2
    fail "building $obj failed"
  }
}

stamp
first=$(g rev-parse --short=12 HEAD)
[ "$(stamped_commit "$out")" = "$first" ] ||
  fail "the first build stamped '$(stamped_commit "$out")', HEAD is $first"
grep -Eq '"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z"' "$out" ||
  fail "no RFC 3339 build time in $out"
log "ok: the first build stamps $first"

g commit -q --allow-empty -m "a new commit, no reconfigure"
second=$(g rev-parse --short=12 HEAD)
stamp
[ "$(stamped_commit "$out")" = "$second" ] ||
  fail "after a new commit the build stamped '$(stamped_commit "$out")', not $second"
log "ok: a build after a new commit stamps $second (no reconfigure)"

before=$(stat -c %y "$out" "$tmp/build/$obj")
stamp
[ "$(stat -c %y "$out" "$tmp/build/$obj")" = "$before" ] ||
  fail "a build with nothing changed rewrote build_info.cpp or recompiled it"
log "ok: a build with nothing changed recompiles nothing"

touch "$copy/untracked-file"
stamp
[ "$(stamped_commit "$out")" = "$second" ] || fail "an untracked file made the stamp dirty"
echo "# changed" >>"$copy/README.md"
stamp
[ "$(stamped_commit "$out")" = "$second-dirty" ] ||
  fail "a changed tracked file stamped '$(stamped_commit "$out")', not $second-dirty"
g checkout -q -- README.md
stamp
[ "$(stamped_commit "$out")" = "$second" ] || fail "reverting the change kept -dirty"
log "ok: -dirty exactly while a tracked file differs from HEAD"

# Not a git checkout (also when inside another repository): "unknown".
mkdir "$copy/plain"
cmake -DSRC="$copy/plain" -DTEMPLATE="$copy/src/core/build_info.cpp.in" -DOUT="$tmp/plain.cpp" \
  -P "$copy/cmake/build_info.cmake"
[ "$(stamped_commit "$tmp/plain.cpp")" = unknown ] ||
  fail "a directory inside a repository stamped '$(stamped_commit "$tmp/plain.cpp")'"
log "ok: a source tree that is not a checkout stamps unknown"
log "passed"
