#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# The parts of spawn_to_ready_ms from the stamps meshbench writes with
# MESHBENCH_STAMPS=FILE (tests/bench/meshbench.c, stamps_write()):
#   MESHBENCH_STAMPS=/tmp/s meshbench spawn_to_ready_ms/mesh; spawn-parts.py /tmp/s
# Each "P" line (the parent's spawn) pairs with the "C" line (its child)
# written before it; warm-up children have no "P" and are skipped.
import statistics
import sys

rows = []
child = None
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) != 4:
        continue
    t = [float(x) / 1e6 for x in f[1:]]  # ms
    if f[0] == "C":
        child = t
    elif f[0] == "P" and child:
        p0, p1, p2 = t
        c0, c1, c2 = child
        rows.append({
            "invite + pal_spawn_run() returned (parent)": p1 - p0,
            "exec, dynamic linking, constructors: main() entered": c0 - p0,
            "main() to the join (arguments, pinning, sandbox finalize)": c1 - c0,
            "mesh_unix_node_join() (node, I/O thread, handshake)": c2 - c1,
            "joined to the parent's first reply (setup, ready)": p2 - c2,
            "total": p2 - p0,
        })
        child = None
if not rows:
    sys.exit("spawn-parts: no P/C pairs in " + sys.argv[1])
print(f"{len(rows)} spawns, medians in ms:")
for k in rows[0]:
    print(f"  {statistics.median(r[k] for r in rows):7.3f}  {k}")
