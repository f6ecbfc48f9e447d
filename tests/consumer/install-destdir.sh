# SPDX-License-Identifier: MIT
# Sourced by the consumer tests: installs the build BUILDDIR (configured for
# PREFIX) into "$work/dest" and puts a pkg-config first in PATH that finds
# the installed .pc files there (copies whose prefix points into the
# DESTDIR; other packages, such as glib-2.0, stay as they are). Sets dest,
# pcdir and LD_LIBRARY_PATH (exported).
# Usage: . install-destdir.sh   (with builddir, prefix and work set)
dest="$work/dest"
meson install -C "$builddir" --destdir "$dest" --no-rebuild --quiet >"$work/install.log" 2>&1 ||
  { cat "$work/install.log"; exit 1; }
installed_pcdir=$(dirname "$(find "$dest" -name libpal.pc | head -n 1)")
pcdir="$work/pkgconfig"
mkdir -p "$pcdir" "$work/bin"
for pc in "$installed_pcdir"/*.pc; do
  sed "s|^prefix=.*|prefix=$dest$prefix|" "$pc" >"$pcdir/$(basename "$pc")"
done
real_pkg_config=$(command -v pkg-config)
cat >"$work/bin/pkg-config" <<EOT
#!/bin/sh
PKG_CONFIG_PATH="$pcdir\${PKG_CONFIG_PATH:+:\$PKG_CONFIG_PATH}" exec "$real_pkg_config" "\$@"
EOT
chmod +x "$work/bin/pkg-config"
PATH="$work/bin:$PATH"
LD_LIBRARY_PATH=$(pkg-config --variable=libdir libpal)
export PATH LD_LIBRARY_PATH
