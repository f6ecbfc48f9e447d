#!/bin/sh
# SPDX-License-Identifier: MIT
# `meshctl serve` in the background, `meshctl inspect` (text and --json) and
# `meshctl stop` against it; SIGTERM; `meshctl demo --serve`; a server that
# does not answer; and a socket nobody serves. Every wait is bounded.
# Usage: test-inspect.sh MESHCTL
set -eu
meshctl=$1
dir=$(mktemp -d)
server=

cleanup() {
	if [ -n "$server" ]; then
		kill -CONT "$server" 2>/dev/null || true
		kill -KILL "$server" 2>/dev/null || true
	fi
	rm -rf "$dir"
}
trap cleanup EXIT

fail() {
	echo "FAIL: $*" >&2
	for f in "$dir"/*.out "$dir"/*.err; do
		[ -f "$f" ] && { echo "--- $f"; cat "$f"; } >&2
	done
	exit 1
}

# Starts "meshctl ARGS..." in the background and waits for its socket $sock.
start() {
	sock=$1
	shift
	"$meshctl" "$@" >"$dir/server.out" 2>"$dir/server.err" &
	server=$!
	i=0
	while [ ! -S "$sock" ]; do
		i=$((i + 1))
		[ $i -le 200 ] || fail "no socket $sock after 20 s"
		kill -0 "$server" 2>/dev/null || fail "the server exited before listening"
		sleep 0.1
	done
}

# Process state (R, S, Z...) of pid $1, empty once it is gone.
state() {
	sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1
}

# Waits (bounded) for the server to exit; checks its status.
expect_exit() {
	i=0
	while [ -n "$(state "$server")" ] && [ "$(state "$server")" != Z ]; do
		i=$((i + 1))
		[ $i -le 200 ] || fail "the server did not exit within 20 s"
		sleep 0.1
	done
	set +e
	wait "$server"
	status=$?
	set -e
	server=
	[ "$status" -eq 0 ] || fail "the server exited with status $status"
}

# Runs meshctl with a hard bound on top of its own timeouts.
bounded() {
	if command -v timeout >/dev/null 2>&1; then
		timeout 30 "$meshctl" "$@"
	else
		"$meshctl" "$@"
	fi
}

# 1. serve; inspect as text.
sock=$dir/mesh.sock
start "$sock" serve --name test "$sock"
tree=$(bounded inspect "$sock") || fail "meshctl inspect: status $?"
echo "$tree"
echo "$tree" | grep -q '^mesh test: a parent and 3 hosts$' || fail "no mesh line"
echo "$tree" | grep -Eq "parent pid $server \(node [0-9a-f]+, rss [0-9]+ KiB, [0-9]+ threads?\)$" ||
	fail "no parent line with pid $server"
hosts=
for w in worker-1 worker-2 worker-3; do
	line=$(echo "$tree" | grep -E " $w pid [0-9]+ \(running, node [0-9a-f]+, rss [0-9]+ KiB, [0-9]+ threads?\)$") ||
		fail "no line for $w"
	hosts="$hosts $(echo "$line" | sed 's/.* pid \([0-9]*\) .*/\1/')"
done
for pid in $hosts; do
	kill -0 "$pid" 2>/dev/null || fail "host pid $pid is not running"
done

# 2. inspect --json.
json=$(bounded inspect --json "$sock") || fail "meshctl inspect --json: status $?"
echo "$json"
if command -v python3 >/dev/null 2>&1; then
	echo "$json" | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert d["mesh"] == "test", d
assert d["parent"]["pid"] == int(sys.argv[1]), d["parent"]
assert sorted(h["name"] for h in d["hosts"]) == ["worker-1", "worker-2", "worker-3"]
for h in d["hosts"]:
    assert h["report"]["pid"] == h["pid"] and h["report"]["threads"] >= 1, h
' "$server" || fail "inspect --json: unexpected content"
else
	echo "$json" | grep -q '^{"mesh":"test","parent":{"pid":'"$server"',' || fail "inspect --json"
fi

# 3. stop: the server acknowledges, shuts its hosts down and exits 0.
bounded stop "$sock" || fail "meshctl stop: status $?"
expect_exit
grep -q "^stopped serving on $sock after a stop request" "$dir/server.out" || fail "no stop line"
grep -q '^shutdown: all hosts exited$' "$dir/server.out" || fail "no shutdown line"
[ ! -e "$sock" ] || fail "the socket was left behind"
for pid in $hosts; do
	[ -z "$(state "$pid")" ] || fail "host pid $pid outlived the server"
done

# 4. Nobody serves: a clear error and status 1, at once.
set +e
err=$(bounded inspect "$sock" 2>&1 >/dev/null)
status=$?
set -e
echo "$err"
[ "$status" -eq 1 ] || fail "inspect with nobody serving: status $status"
echo "$err" | grep -q "cannot connect to $sock" || fail "inspect with nobody serving: $err"

# 5. SIGTERM stops the server cleanly too.
start "$sock" serve --hosts 1 "$sock"
bounded inspect "$sock" | grep -q '^mesh serve: a parent and 1 host$' || fail "inspect --hosts 1"
kill -TERM "$server"
expect_exit
grep -q "^stopped serving on $sock after a signal" "$dir/server.out" || fail "no signal line"

# 6. A server that does not answer: inspect gives up after --timeout.
start "$sock" serve --hosts 1 "$sock"
kill -STOP "$server"
set +e
err=$(bounded inspect --timeout 1 "$sock" 2>&1 >/dev/null)
status=$?
set -e
kill -CONT "$server"
echo "$err"
[ "$status" -eq 1 ] || fail "inspect of a stopped server: status $status"
echo "$err" | grep -q "within 1 s" || fail "inspect of a stopped server: $err"
bounded stop "$sock" || fail "meshctl stop after SIGCONT: status $?"
expect_exit

# 7. demo --serve: the demo's mesh after the crash, then a clean shutdown.
start "$sock" demo --serve "$sock"
tree=$(bounded inspect "$sock") || fail "inspect of demo --serve: status $?"
echo "$tree"
echo "$tree" | grep -q '^mesh demo: a parent and 2 hosts$' || fail "demo --serve: no mesh line"
echo "$tree" | grep -q ' worker-2 pid ' && fail "demo --serve: the crashed host is listed"
bounded stop "$sock" || fail "meshctl stop of demo --serve: status $?"
expect_exit
grep -q '^demo: ok$' "$dir/server.out" || fail "demo --serve did not finish"
echo "inspect: ok"
