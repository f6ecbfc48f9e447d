#!/bin/sh
# SPDX-License-Identifier: MIT
# The installed meshctl runs every command it lists, without the build tree:
# installs into a temporary DESTDIR, moves that tree elsewhere (what meshctl
# needs, its meshbench helper included, must be found relative to where it
# is installed), hides the build and source trees (an empty tmpfs over each,
# in a private mount namespace, where user namespaces are available), then
# runs the help, demo, serve/inspect/stop and bench tests on that copy.
# Usage: test-installed.sh BUILDDIR SRCROOT BINDIR LIBDIR
#   (BINDIR and LIBDIR: absolute install paths, prefix included)
set -eu
builddir=$1
srcroot=$2
bindir=$3
libdir=$4

# Not under /tmp: the demo's hosts run sandboxed with a private /tmp
# (doc/sandbox.md) and would not find the moved program's libraries there.
work=$(mktemp -d -p /var/tmp)
trap 'rm -rf "$work"' EXIT

meson install -C "$builddir" --destdir "$work/dest" --no-rebuild --quiet >"$work/install.log" 2>&1 ||
  { cat "$work/install.log"; exit 1; }
mv "$work/dest" "$work/moved"
root="$work/moved"
meshctl="$root$bindir/meshctl"
[ -x "$meshctl" ] || { echo "FAIL: meshctl not installed at $bindir"; exit 1; }
# The test scripts are read from a copy: the source tree is hidden too.
mkdir "$work/scripts"
for t in help demo inspect bench; do
  cp "$(dirname "$0")/test-$t.sh" "$work/scripts/"
done

# Runs in the (possibly private) mount namespace.
cat >"$work/run.sh" <<'SCRIPT'
set -eu
meshctl=$1 scripts=$2
shift 2
cd "$scripts"  # not in a hidden tree
for dir in "$@"; do
  mount -t tmpfs -o size=1m,mode=0555 mesh-hidden "$dir"
  [ -z "$(ls -A "$dir")" ] || { echo "FAIL: could not hide $dir"; exit 1; }
done
for t in help demo inspect bench; do
  echo "== installed meshctl: test-$t.sh"
  sh "$scripts/test-$t.sh" "$meshctl"
done
SCRIPT

unset MESHCTL_MESHBENCH
export LD_LIBRARY_PATH="$root$libdir"
if unshare --mount --map-root-user true 2>/dev/null; then
  echo "hiding $builddir and $srcroot"
  unshare --mount --map-root-user sh "$work/run.sh" "$meshctl" "$work/scripts" \
    "$builddir" "$srcroot"
else
  echo "no user namespaces: the build tree stays visible (the installed tree is still moved)"
  sh "$work/run.sh" "$meshctl" "$work/scripts"
fi
echo "PASS"
