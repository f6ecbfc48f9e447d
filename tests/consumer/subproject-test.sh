#!/bin/sh
# SPDX-License-Identifier: MIT
# Downstream consumer test 2: a Meson project that pulls mesh in as a
# subproject and uses dependency('libmeshpayload') and dependency('libpal').
# Usage: subproject-test.sh MESH_SRCROOT CONSUMER_SRCDIR
set -eu
root=$1
srcdir=$2

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cp -r "$srcdir/meson-project" "$work/project"
cp "$srcdir/hello.proto" "$srcdir/consumer.c" "$work/project/"
mkdir -p "$work/project/subprojects"
ln -s "$root" "$work/project/subprojects/mesh"

cd "$work/project"
meson setup "$work/build" >"$work/setup.log" 2>&1 || { cat "$work/setup.log"; exit 1; }
meson compile -C "$work/build" >"$work/compile.log" 2>&1 || { cat "$work/compile.log"; exit 1; }
"$work/build/consumer"

# mesh as a subproject builds its libraries only: no test, bench, demo or
# tool program.
meson introspect --targets "$work/build" >"$work/targets.json"
exes=$(python3 -c '
import json, sys
targets = json.load(open(sys.argv[1]))
print(" ".join(sorted(t["name"] for t in targets if t["type"] == "executable")))
' "$work/targets.json")
[ "$exes" = consumer ] || { echo "FAIL: the mesh subproject builds programs: $exes"; exit 1; }
