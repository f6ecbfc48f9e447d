#!/bin/sh
# SPDX-License-Identifier: MIT
# Downstream consumer test 1: install into a temporary DESTDIR, then build
# programs against the four installed .pc files with plain cc and
# pkg-config, the way a user of a distribution package would, and run them:
# consumer.c (libpal, libmeshpayload), consumer-remote.c (libmeshremote)
# and the getting-started example (libmeshprocess).
# Usage: install-test.sh BUILDDIR SRCDIR PREFIX
set -eu
builddir=$1
srcdir=$2
prefix=$3

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
. "$srcdir/install-destdir.sh"

for p in libpal libmeshpayload libmeshremote libmeshprocess; do
  [ -f "$pcdir/$p.pc" ] || { echo "$p.pc not installed"; exit 1; }
done
protodir=$(pkg-config --variable=protodir libmeshpayload)
[ -f "$protodir/meshpayload/resource.proto" ] || { echo "resource.proto not at $protodir"; exit 1; }

cd "$work"
protoc-c -I"$protodir" -I"$srcdir" --c_out=. "$srcdir/hello.proto"
# shellcheck disable=SC2046
cc -Wall -Werror -I. -o consumer "$srcdir/consumer.c" hello.pb-c.c \
  $(pkg-config --cflags --libs libpal libmeshpayload)
./consumer
# shellcheck disable=SC2046
cc -Wall -Werror -o consumer-remote "$srcdir/consumer-remote.c" \
  $(pkg-config --cflags --libs libmeshremote)
./consumer-remote
# shellcheck disable=SC2046
cc -Wall -Werror -o getting-started "$srcdir/../../doc/examples/getting-started.c" \
  $(pkg-config --cflags --libs libmeshprocess)
./getting-started
