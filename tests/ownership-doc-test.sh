#!/bin/sh
# SPDX-License-Identifier: MIT
# The ownership convention of doc/index.md holds in the installed headers:
# every public function that consumes an argument (one documented
# `(transfer full)`, or the fd or object of a `_take` function) says so
# with the words "Consumes @ARG, also on failure." in its doc comment, or
# states its exception with "Exception to the ownership rule:". `_free`,
# `_unref`, `_close` and `_release` functions (they consume by their name)
# are left out, and so are callback types (their `(transfer full)`
# parameters go to the callback).
# Usage: ownership-doc-test.sh HEADER...
set -eu

awk '
  function check(comment, decl,    name, rest, p, arg, ok) {
    if (decl ~ /^[[:space:]]*typedef/)
      return
    p = index(decl, "(")
    if (!p)
      return
    name = substr(decl, 1, p - 1)
    sub(/[[:space:]]+$/, "", name)
    if (!match(name, /[A-Za-z_][A-Za-z0-9_]*$/))
      return
    name = substr(name, RSTART, RLENGTH)
    if (name ~ /_(free|unref|close|release)$/)
      return
    gsub(/[[:space:]]+/, " ", comment)
    exception = index(comment, "Exception to the ownership rule:") > 0
    rest = comment
    # "@arg: (annotation) (annotation): text": the annotations follow the colon.
    while (match(rest, /@[a-z_0-9]+:([[:space:]]*\([a-z ]+\))*/)) {
      arg = substr(rest, RSTART + 1, RLENGTH - 1)
      rest = substr(rest, RSTART + RLENGTH)
      annotations = arg
      sub(/:.*/, "", arg)
      if (annotations !~ /\(transfer full\)/ || annotations ~ /\(out\)/)
        continue
      if (!index(comment, "Consumes @" arg ", also on failure.") && !exception) {
        printf "FAIL: %s: %s: @%s is (transfer full) without \"Consumes @%s, also on failure.\"\n", FILENAME, name, arg, arg
        bad = 1
      }
    }
    if (name ~ /_take$/ && !index(comment, "Consumes @") && !exception) {
      printf "FAIL: %s: %s: a _take function without \"Consumes @ARG, also on failure.\"\n", FILENAME, name
      bad = 1
    }
    n++
  }
  FNR == 1 { comment = ""; in_comment = 0; last_end = -1; in_decl = 0 }
  in_decl {
    decl = decl " " $0
    if ($0 ~ /;/) { check(use, decl); in_decl = 0 }
    next
  }
  /^[[:space:]]*\/\*\*/ { in_comment = 1; comment = "" }
  in_comment {
    line = $0
    sub(/^[[:space:]]*(\/\*\*|\*\/|\*)?/, "", line)
    comment = comment " " line
    if ($0 ~ /\*\//) { in_comment = 0; last_end = FNR }
    next
  }
  /^(MESH_REMOTE_API|MESH_PROCESS_API|MESH_PAYLOAD_API|PAL_API)/ {
    use = (last_end == FNR - 1) ? comment : ""
    decl = $0
    if ($0 ~ /;/) check(use, decl)
    else in_decl = 1
    next
  }
  END {
    if (bad) exit 1
    printf "PASS: %d public functions state what they consume\n", n
  }
' "$@"
