#!/bin/sh
# SPDX-License-Identifier: MIT
# Every symbol a shared library exports carries the library's prefix and is
# declared in one of its installed headers: an internal function that leaks
# out, or an export nobody declared, fails here.
# Usage: exported-symbols-test.sh NM LIBRARY PREFIX HEADER...
set -eu
nm=$1
lib=$2
prefix=$3
shift 3
here=$(dirname "$0")
. "$here/names-common.sh"

read_headers "$@"
"$nm" -D --defined-only "$lib" | awk 'NF >= 3 { print $3 }' | sort -u >"$work/symbols"
if [ ! -s "$work/symbols" ]; then
  echo "FAIL: $lib exports nothing (or $nm cannot read it)"
  exit 1
fi

fail=0
while read -r sym; do
  case $sym in
    # A sanitizer's instrumentation (ASan's ODR indicators for exported
    # globals), not the library's.
    __odr_asan* | __asan_* | __ubsan_* | __tsan_* | __sanitizer_*) continue ;;
    "$prefix"*) ;;
    *) echo "FAIL: $lib exports $sym, without the prefix $prefix"; fail=1; continue ;;
  esac
  if ! declared "$sym"; then
    echo "FAIL: $lib exports $sym, which no installed header declares"
    fail=1
  fi
done <"$work/symbols"
[ $fail = 0 ] || exit 1
echo "PASS: $(wc -l <"$work/symbols") symbols of $lib, each $prefix* and declared"
