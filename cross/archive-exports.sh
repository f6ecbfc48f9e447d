#!/bin/sh
# SPDX-License-Identifier: MIT
# Usage: archive-exports.sh NM ARCHIVE
# Prints a module-definition (.def) file exporting every global symbol the
# static library ARCHIVE defines. On Windows a DLL that marks its API
# __declspec(dllexport) exports nothing else; the code protoc-c generates
# carries no such mark, so its descriptors and functions are listed here.
set -eu
echo EXPORTS
"$1" --defined-only -g --format=posix "$2" | awk 'NF >= 2 && $2 ~ /^[TDRB]$/ { print "    " $1 }' | sort -u
