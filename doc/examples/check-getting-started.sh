#!/bin/sh
# SPDX-License-Identifier: MIT
# Runs the getting-started example and checks its output.
set -eu
out=$("$1")
echo "$out"
echo "$out" | grep -q '^launched host "upper" as pid [0-9]*$'
echo "$out" | grep -q '^hello -> HELLO$'
echo "$out" | grep -q '^mesh of processes -> MESH OF PROCESSES$'
echo "$out" | grep -q '^shutdown: every host exited$'
