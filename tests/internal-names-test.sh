#!/bin/sh
# SPDX-License-Identifier: MIT
# Internal names do not use a library's public prefix: every name defined or
# declared at file scope in the library's own sources (its .c files and
# *-private.h headers in LIBDIR and its subfolders, static or not) that
# starts with PREFIX is declared in one of its installed headers. Tests,
# fuzz targets, benchmarks and tools (folders tests, fuzz, bench, meshctl)
# are not searched; generated protobuf-c code (PREFIX plus a package,
# `mesh_unix__`) is in the build tree and not searched either.
# Usage: internal-names-test.sh LIBDIR PREFIX PUBLIC_HEADER...
set -eu
dir=$1
prefix=$2
shift 2
here=$(dirname "$0")
. "$here/names-common.sh"

read_headers "$@"

# File-scope declarations start in column 0 (the project's style); the name
# is the identifier before the first '(' (functions) or before '=', '[' or
# ';' (variables). Preprocessor lines, types and braces are skipped.
find "$dir" \( -name tests -o -name fuzz -o -name bench -o -name meshctl \) -prune -o \
  \( -name '*.c' -o -name '*-private.h' \) -type f -print | sort >"$work/files"
if [ ! -s "$work/files" ]; then
  echo "FAIL: no sources under $dir"
  exit 1
fi

fail=0
while read -r f; do
  awk -f "$here/strip-comments.awk" "$f" | awk -v file="$f" '
    /^[A-Za-z_]/ && !/^(typedef|struct|union|enum|extern "C")([^A-Za-z0-9_]|$)/ && !/^G_DEFINE/ {
      line = $0
      p = index(line, "(")
      if (!p) {
        if (line !~ /[=;[]/)
          next
        p = match(line, /[=;[]/)
      }
      head = substr(line, 1, p - 1)
      sub(/[[:space:]]+$/, "", head)
      if (match(head, /[A-Za-z_][A-Za-z0-9_]*$/))
        print file ":" NR ": " substr(head, RSTART, RLENGTH)
    }' >"$work/names"
  while read -r where name; do
    case $name in
      "$prefix"*) ;;
      *) continue ;;
    esac
    if ! declared "$name"; then
      echo "FAIL: ${where%:} defines $name: internal, yet named with the public prefix $prefix"
      fail=1
    fi
  done <"$work/names"
done <"$work/files"
[ $fail = 0 ] || exit 1
echo "PASS: no internal name in the $(wc -l <"$work/files") sources of $dir starts with $prefix"
