#!/bin/sh
# SPDX-License-Identifier: MIT
# Runs the shell commands of README.md and doc/*.md as they are written.
# Every ```sh block must be marked by an HTML comment right above it:
#   <!-- doc-commands: installed -->      run here, in a fresh directory
#       holding doc/examples/* and the doc's file blocks, against mesh
#       installed into a temporary DESTDIR (pkg-config finds it);
#   <!-- doc-commands: elsewhere WHERE --> not run here; WHERE says what runs it.
# A block marked <!-- doc-commands: file NAME --> (any language) is written
# to NAME in each such directory of its page. An unmarked sh block fails.
# Usage: doc-commands.sh SRCROOT BUILDDIR PREFIX
set -eu
root=$1
builddir=$2
prefix=$3
blocks="python3 $root/tests/doc-blocks.py"

# Not under /tmp: doc/sandbox.md's example runs sandboxed hosts, whose
# private /tmp would hide the installed libraries and the run directory.
work=$(mktemp -d -p /var/tmp)
trap 'rm -rf "$work"' EXIT
. "$root/tests/consumer/install-destdir.sh"

cd "$root"
$blocks list README.md doc/*.md >"$work/blocks"
status=0
n=0
while IFS="$(printf '\t')" read -r file line lang markers; do
  [ "$lang" = sh ] || continue
  n=$((n + 1))
  case "$markers" in
  *doc-commands=installed*)
    dir="$work/run-$n"
    mkdir "$dir"
    cp "$root"/doc/examples/*.c "$root"/doc/examples/*.proto "$dir/"
    $blocks list "$file" | while IFS="$(printf '\t')" read -r _ fline _ fmarkers; do
      case "$fmarkers" in
      *doc-commands=file\ *)
        name=${fmarkers#*doc-commands=file }
        name=${name%%	*}
        $blocks get "$file" "$fline" >"$dir/$name"
        ;;
      esac
    done
    $blocks get "$file" "$line" >"$work/block-$n.sh"
    echo "== $file:$line"
    if (cd "$dir" && sh -ex "$work/block-$n.sh") >"$work/block-$n.log" 2>&1; then
      sed 's/^/  /' "$work/block-$n.log"
    else
      sed 's/^/  /' "$work/block-$n.log"
      echo "FAIL: $file:$line"
      status=1
    fi
    ;;
  *doc-commands=elsewhere*)
    where=${markers#*doc-commands=elsewhere }
    echo "== $file:$line: elsewhere: ${where%%	*}"
    ;;
  *)
    echo "FAIL: $file:$line: a sh block without a doc-commands marker"
    status=1
    ;;
  esac
done <"$work/blocks"
[ "$n" -gt 0 ] || { echo "FAIL: no sh block found"; exit 1; }
exit $status
