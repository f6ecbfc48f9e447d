#!/bin/sh
# SPDX-License-Identifier: MIT
# meshctl's help and usage errors.
# Usage: test-help.sh MESHCTL
set -eu
meshctl=$1

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

out=$("$meshctl" --help)
for cmd in demo serve inspect stop help; do
	echo "$out" | grep -q "^  $cmd " || fail "meshctl --help lacks $cmd"
done
[ "$("$meshctl" help)" = "$out" ] || fail "meshctl help differs from meshctl --help"
"$meshctl" help demo | grep -q -- "--json" || fail "meshctl help demo lacks --json"
"$meshctl" help demo | grep -q -- "--serve=SOCKET" || fail "meshctl help demo lacks --serve"
"$meshctl" help inspect | grep -q "meshctl inspect \[OPTION.*\] SOCKET" ||
	fail "meshctl help inspect: no usage line"
"$meshctl" inspect --help | grep -q -- "--timeout=SECONDS" || fail "inspect --help lacks --timeout"
"$meshctl" help serve | grep -q -- "--hosts=N" || fail "meshctl help serve lacks --hosts"
"$meshctl" --version | grep -Eq '^meshctl [0-9]+\.[0-9]+' || fail "meshctl --version"

# Usage errors exit 2 with a message.
expect_usage_error() {
	set +e
	err=$("$meshctl" "$@" 2>&1 >/dev/null)
	status=$?
	set -e
	[ "$status" -eq 2 ] || fail "meshctl $*: status $status, not 2"
	[ -n "$err" ] || fail "meshctl $*: no message"
	echo "meshctl $*: $err" | head -1
}
expect_usage_error
expect_usage_error frobnicate
expect_usage_error help frobnicate
expect_usage_error inspect
expect_usage_error inspect a b
expect_usage_error demo extra
expect_usage_error demo --no-such-option
expect_usage_error serve
expect_usage_error serve --hosts 0 /tmp/x
echo "help: ok"
