#!/bin/sh
# SPDX-License-Identifier: MIT
# Runs the demo and checks what it prints.
set -eu
out=$("$1")
echo "$out"
echo "$out" | grep -q '^parent -> child: "hello from the parent" + a sealed memfd of 62 bytes$'
echo "$out" | grep -q '^child -> parent: "HELLO FROM THE PARENT" (pid [0-9]* read 62 bytes) + a pipe$'
# The child saw stdio, the socket and the memfd it was sent: nothing leaked in.
echo "$out" | grep -q '^report from the pipe: child [0-9]*: 5 fds open .* starts "Ports are capabiliti"$'
echo "$out" | grep -q '^child exited with status 0$'
