#!/bin/sh
# SPDX-License-Identifier: MIT
# Runs one of the doc/examples programs and checks its output.
# Usage: check-examples.sh NAME PROGRAM [PROGRAM2]
set -eu
name=$1
shift

expect() {
  printf '%s\n' "$out" | grep -qx -- "$1" || { echo "FAIL: no line \"$1\""; exit 1; }
}

case $name in
typed-fds)
  out=$("$1")
  echo "$out"
  expect 'poem.txt: 3 lines; the host wrote: poem.txt has 3 lines'
  expect 'empty.txt: 0 lines; the host wrote: empty.txt has 0 lines'
  expect 'shutdown: every host exited'
  ;;
rpc-errors)
  out=$("$1")
  echo "$out"
  expect 'color = blue'
  expect 'size: remote error: config service: store lookup: no such key "size"'
  expect 'shutdown: every host exited'
  ;;
cell-pipe)
  out=$("$1")
  echo "$out"
  expect 'sent 204800 bytes (sum 26112000)'
  expect 'the host read 204800 bytes (sum 26112000); settings now level 3, mode "fast"; saw them change while reading'
  expect 'shutdown: every host exited'
  ;;
async-service)
  out=$("$1")
  echo "$out"
  expect 'worker 1 answered 10 calls, sum of squares 1330'
  expect "worker 0's calls before its crash: some failed with it"
  expect 'the relaunched worker answered 20 calls, sum of squares 2870'
  expect 'inspect: 2 workers running'
  expect 'shutdown: every host exited'
  expect 'the loop kept running: yes'
  ;;
sandboxed-worker)
  out=$("$1")
  echo "$out"
  expect 'worker-1: open /etc/passwd: Permission denied'
  expect 'worker-1: socket(AF_INET): Address family not supported by protocol'
  expect 'worker-1: execv /bin/true: Operation not permitted'
  expect 'worker-1: poem.txt: 5 words'
  expect 'worker-1: list.txt: 3 words'
  expect 'worker-2: calling swapoff(2)'
  expect 'channel failed: .*host worker-2 (pid [0-9]*) killed by signal 31 (Bad system call).*'
  expect 'worker-2 exited: SIGSYS, killed by signal 31 (Bad system call)'
  expect 'shutdown: every host exited'
  ;;
listen)
  service=$1
  client=$2
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  sock="$work/upper.sock"
  "$service" "$sock" 2 >"$work/service.log" 2>&1 &
  pid=$!
  # Wait for the service to listen (it says so once the socket is bound).
  i=0
  until grep -q '^listening on' "$work/service.log"; do
    i=$((i + 1))
    [ $i -lt 300 ] || { cat "$work/service.log"; kill "$pid"; exit 1; }
    kill -0 "$pid" 2>/dev/null || { cat "$work/service.log"; exit 1; }
    sleep 0.1
  done
  out=$("$client" "$sock" hello; "$client" "$sock" "mesh clients")
  echo "$out"
  expect 'answer: HELLO'
  expect 'answer: MESH CLIENTS'
  wait "$pid" || { cat "$work/service.log"; exit 1; }
  out=$(cat "$work/service.log")
  echo "$out"
  expect 'served "hello"'
  expect 'served 2 clients'
  ;;
*)
  echo "unknown example $name"
  exit 2
  ;;
esac
