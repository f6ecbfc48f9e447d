#!/bin/sh
# SPDX-License-Identifier: MIT
# A build with -Dtests=disabled has the libraries and the installed tools
# (meshctl and its meshbench helper), and no test, bench or demo program.
# Configures a fresh build dir and lists its executables (nothing is compiled).
# Usage: tests-disabled-test.sh MESH_SRCROOT
set -eu
root=$1

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

meson setup "$work/build" "$root" -Dtests=disabled -Ddocs=disabled >"$work/setup.log" 2>&1 ||
  { cat "$work/setup.log"; exit 1; }
meson introspect --targets "$work/build" >"$work/targets.json"
exes=$(python3 -c '
import json, sys
targets = json.load(open(sys.argv[1]))
print(" ".join(sorted(t["name"] for t in targets if t["type"] == "executable")))
' "$work/targets.json")
if [ "$exes" != "meshbench meshctl" ]; then
  echo "FAIL: -Dtests=disabled builds these programs: $exes (expected: meshbench meshctl)"
  exit 1
fi
echo "PASS: executables with -Dtests=disabled: $exes"
