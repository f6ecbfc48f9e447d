#!/bin/sh
# SPDX-License-Identifier: MIT
# meshctl bench with tiny knobs: the TSV lines appear, well formed, and the
# exit status is 0 (every reply inside is checked by meshctl bench itself).
# Usage: test-bench.sh MESHCTL
set -eu
meshctl=$1

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

out=$(BENCH_REPS=3 BENCH_REP_MS=5 BENCH_MAX_MS=200 BENCH_SPAWNS=10 MESHCTL_BENCH_SCALE=1,2,4 \
	"$meshctl" bench rtt_64B/ host_rss scale_hosts) || fail "meshctl bench exited $?"
echo "$out"
for key in rtt_64B/mesh/us rtt_64B/raw-tcp-loopback/us rtt_64B/mesh-p2p-socketpair/us \
	rtt_64B/mesh-p2p-tcp/us host_rss_kib/mesh/KiB scale_hosts_ms/mesh-1/ms \
	scale_hosts_ms/mesh-2/ms scale_hosts_ms/mesh-4/ms; do
	metric=${key%%/*}; rest=${key#*/}; system=${rest%%/*}; unit=${rest#*/}
	n=$(echo "$out" | awk -F'\t' -v m="$metric" -v s="$system" -v u="$unit" \
		'NF == 5 && $1 == m && $2 == s && $4 == u && $3 ~ /^[0-9]+(\.[0-9]+)?$/ && $3 > 0' |
		wc -l)
	[ "$n" -eq 1 ] || fail "expected one line $metric/$system in $unit, got $n"
done
# Nothing else: the filters held.
[ "$(echo "$out" | wc -l)" -eq 8 ] || fail "unexpected extra lines"
# A filter that matches nothing prints nothing and succeeds.
[ -z "$("$meshctl" bench no-such-metric)" ] || fail "output for a filter matching nothing"
echo "PASS"
