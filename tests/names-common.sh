# SPDX-License-Identifier: MIT
# Sourced by the naming tests (with $here set to this folder): a temporary
# folder, and what the installed headers declare.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Keeps the headers, without comments, as one line: a name only mentioned
# in a comment is not declared.
read_headers() {
  awk -f "$here/strip-comments.awk" "$@" | tr '\n' ' ' >"$work/headers"
}

# Whether the headers declare the function, variable or array $1.
declared() {
  grep -Eq "(^|[^A-Za-z0-9_])$1[[:space:]]*[(;[]" "$work/headers"
}
