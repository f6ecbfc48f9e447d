#!/bin/sh
# SPDX-License-Identifier: MIT
# libmeshremote's layers (doc/libmeshremote.md, "Source layout"): the core
# and the channels name no transport, and each transport includes no
# private header of the core or the channels (it is built on
# <meshremote/mesh-transport.h> alone; timeout-private.h and log-private.h
# are static-inline helpers shared by everyone).
# Usage: layers-test.sh LIBMESHREMOTE_SRCDIR
set -eu
src=$1
status=0

# Comments may say what a transport does; code and includes may not name one.
hits=$(grep -n -i -E 'unix|p2p|point.to.point' "$src"/core/*.[ch] "$src"/channels/*.[ch] |
	grep -v -E ':[0-9]+:[[:space:]]*(/?\*|//)' || true)
if [ -n "$hits" ]; then
	echo "FAIL: the core or the channels name a transport:" >&2
	echo "$hits" >&2
	status=1
fi

for t in unix p2p; do
	[ -d "$src/$t" ] || { echo "FAIL: no $src/$t" >&2; status=1; continue; }
	hits=$(grep -n -E '#include "(remote|channel|protocol)-private\.h"' "$src/$t"/*.[ch] || true)
	if [ -n "$hits" ]; then
		echo "FAIL: transport $t includes a private header of the core:" >&2
		echo "$hits" >&2
		status=1
	fi
done
[ "$status" -eq 0 ] && echo PASS
exit "$status"
