#!/bin/sh
# SPDX-License-Identifier: MIT
# Downstream consumer test 2: the Meson subproject recipe of
# doc/downstream.md as written (its subprojects/mesh.wrap and meson.build,
# building doc/examples/typed-fds), with mesh's source as subprojects/mesh.
# Checks that the program runs, that the wrap provides all four
# dependencies, and that mesh builds no program of its own.
# Usage: subproject-test.sh MESH_SRCROOT
set -eu
root=$1
blocks="python3 $root/tests/doc-blocks.py"
doc="$root/doc/downstream.md"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
project="$work/project"
mkdir -p "$project/subprojects"
ln -s "$root" "$project/subprojects/mesh"
$blocks find "$doc" subproject-recipe subprojects/mesh.wrap >"$project/subprojects/mesh.wrap"
$blocks find "$doc" subproject-recipe meson.build >"$project/meson.build"
$blocks find "$doc" subproject-recipe commands >"$work/commands.sh"
cp "$root/doc/examples/typed-fds.c" "$root/doc/examples/typed-fds.proto" "$project/"
# Each name the wrap provides resolves through it.
cat >>"$project/meson.build" <<'EOT'
foreach name : ['libpal', 'libmeshpayload', 'libmeshremote', 'libmeshprocess']
  d = dependency(name, allow_fallback: true)
  assert(d.type_name() == 'internal', name + ' does not come from the subproject')
endforeach
EOT

# A mesh installed where pkg-config looks would be used instead.
export PKG_CONFIG_PATH="$work/none"
(cd "$project" && sh -ex "$work/commands.sh") >"$work/run.log" 2>&1 ||
  { cat "$work/run.log"; exit 1; }
grep -x 'shutdown: every host exited' "$work/run.log"

# mesh as a subproject builds its libraries only: no test, bench, demo or
# tool program.
meson introspect --targets "$project/build" >"$work/targets.json"
exes=$(python3 -c '
import json, sys
targets = json.load(open(sys.argv[1]))
print(" ".join(sorted(t["name"] for t in targets if t["type"] == "executable")))
' "$work/targets.json")
[ "$exes" = typed-fds ] || { echo "FAIL: the mesh subproject builds programs: $exes"; exit 1; }
echo "PASS: executables: $exes"
