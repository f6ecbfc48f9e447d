#!/bin/sh
# SPDX-License-Identifier: MIT
# Downstream consumer test 1: install into a temporary DESTDIR, then build a
# program against the installed .pc files with plain cc and pkg-config, the
# way a user of a distribution package would, and run it.
# Usage: install-test.sh BUILDDIR SRCDIR PREFIX
set -eu
builddir=$1
srcdir=$2
prefix=$3

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dest="$work/dest"

meson install -C "$builddir" --destdir "$dest" --no-rebuild --quiet >"$work/install.log" 2>&1 ||
  { cat "$work/install.log"; exit 1; }

pcdir=$(dirname "$(find "$dest" -name libpal.pc | head -n 1)")
[ -f "$pcdir/libmeshpayload.pc" ] || { echo "libmeshpayload.pc not installed"; exit 1; }
pc() { PKG_CONFIG_PATH="$pcdir" pkg-config --define-variable=prefix="$dest$prefix" "$@"; }

protodir=$(pc --variable=protodir libmeshpayload)
[ -f "$protodir/meshpayload/resource.proto" ] || { echo "resource.proto not at $protodir"; exit 1; }

cd "$work"
protoc-c -I"$protodir" -I"$srcdir" --c_out=. "$srcdir/hello.proto"
# shellcheck disable=SC2046
cc -Wall -Werror -I. -o consumer "$srcdir/consumer.c" hello.pb-c.c \
  $(pc --cflags libpal libmeshpayload) $(pc --libs libpal libmeshpayload)
libdir=$(pc --variable=libdir libpal)
LD_LIBRARY_PATH="$libdir" ./consumer
