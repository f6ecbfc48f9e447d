#!/bin/sh
# SPDX-License-Identifier: MIT
# Usage: archive-exports.sh NM ARCHIVE
# Prints a module-definition (.def) file exporting every global symbol the
# static library ARCHIVE defines. On Windows a DLL that marks its API
# __declspec(dllexport) exports nothing else; the code protoc-c generates
# carries no such mark, so its descriptors and functions are listed here.
set -eu
echo EXPORTS
# Data (the descriptors) is marked DATA: the import library then holds only
# __imp_NAME, and the linker's auto-import makes a user's plain reference
# point at the DLL's object, not at a code thunk of that name.
"$1" --defined-only -g --format=posix "$2" |
	awk 'NF >= 2 && $2 == "T" { print "    " $1 }
	     NF >= 2 && $2 ~ /^[DRB]$/ { print "    " $1 " DATA" }' | sort -u
