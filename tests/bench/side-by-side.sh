#!/bin/sh
# SPDX-License-Identifier: MIT
# mesh side by side with the shared IPC peer baselines (bench/peers), as
# tests/bench/README.md describes: latencies pinned to one CPU
# (BENCH_PIN=same), throughputs and host-level figures unpinned, each in one
# run of bench/peers/run with `meshctl bench` as BENCH_LIB_CMD. Saves both
# TSVs and rewrites the table of doc/performance.md between
# <!-- table:begin --> and <!-- table:end -->.
#
# Usage: tests/bench/side-by-side.sh [PEERS_DIR]
#   PEERS_DIR  (or $PEERS) the shared bench/peers folder;
#              default ../shared/bench/peers relative to the repository root
#   $MESHCTL   meshctl to run (default build/libmeshprocess/meshctl/meshctl)
#   $OUT       where the TSVs go (default tests/bench/results)
#   $DOC       the page to update (default doc/performance.md); DOC=- skips it
# Other BENCH_* variables (BENCH_REPS, BENCH_MAX_MS, ...) pass through.
set -eu

root=$(cd "$(dirname "$0")/../.." && pwd)
peers=${1:-${PEERS:-$root/../shared/bench/peers}}
peers=$(cd "$peers" && pwd)
meshctl=${MESHCTL:-$root/build/libmeshprocess/meshctl/meshctl}
out=${OUT:-$root/tests/bench/results}
doc=${DOC:-$root/doc/performance.md}

[ -x "$peers/run" ] || { echo "side-by-side: no $peers/run" >&2; exit 1; }
[ -x "$meshctl" ] || { echo "side-by-side: no $meshctl (ninja -C build first)" >&2; exit 1; }
mkdir -p "$out"

echo "== latencies, BENCH_PIN=same ==" >&2
BENCH_PIN=same BENCH_LIB_CMD="$meshctl bench rtt_ rpc_ inproc port_move spawn_" \
	"$peers/run" rtt_ spawn_ > "$out/lat.tsv.new"
mv "$out/lat.tsv.new" "$out/lat.tsv"

echo "== throughputs and hosts, unpinned ==" >&2
BENCH_PIN=none BENCH_LIB_CMD="$meshctl bench stream_ host_rss scale_hosts scale_intro" \
	"$peers/run" stream_ > "$out/thr.tsv.new"
mv "$out/thr.tsv.new" "$out/thr.tsv"

[ "$doc" = - ] && exit 0
commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
python3 - "$out/lat.tsv" "$out/thr.tsv" "$doc" "$commit" <<'PY'
import re, sys, datetime
lat, thr, doc, commit = sys.argv[1:5]

def load(path):
    v, notes = {}, {}
    for line in open(path):
        f = line.rstrip('\n').split('\t')
        if len(f) < 4 or f[0] == 'metric':
            continue
        try:
            v[(f[0], f[1])] = float(f[2])
        except ValueError:
            continue
        notes[(f[0], f[1])] = f[4] if len(f) > 4 else ''
    return v, notes

L, LN = load(lat)
T, TN = load(thr)

def g(x):
    if x is None:
        return '-'
    if x >= 1e6:
        return '%.3g M' % (x / 1e6)
    if x >= 1e4:
        return '%.0f k' % (x / 1e3)
    if x >= 1000:
        return '%.0f' % x
    return '%.3g' % x

def r(x):
    return '-' if x is None else '%.2fx' % x

def ratio(a, b):
    return a / b if a is not None and b else None

rows = []
def row(name, mesh, raw_name, raw, peer_name, peer, rr, rp, target):
    rows.append('| %s | %s | %s | %s | %s | %s | %s |' % (
        name, g(mesh), (raw_name + ' ' + g(raw)) if raw is not None else '',
        (peer_name + ' ' + g(peer)) if peer is not None else '',
        r(rr) if rr is not None else '', r(rp) if rp is not None else '', target))

def met(ok):
    return 'met' if ok else 'missed'

def best(d, metric, names, higher):
    c = [(d[(metric, n)], label) for n, label in names if (metric, n) in d]
    if not c:
        return None, None
    v, label = (max if higher else min)(c)
    return label, v

peers_lat = [('zmq-ipc', 'ZeroMQ'), ('gdbus-p2p', 'GDBus')]
for m in ('rtt_64B', 'rtt_4KiB', 'rtt_64KiB'):
    mesh, raw = L.get((m, 'mesh')), L.get((m, 'socketpair-seqpacket'))
    pl, pv = best(L, m, peers_lat, False)
    t = ''
    if m == 'rtt_64B' and mesh is not None and raw:
        z, d = L.get((m, 'zmq-ipc')), L.get((m, 'gdbus-p2p'))
        t = '<= 1.5x raw: %s; below ZeroMQ and GDBus: %s' % (
            met(mesh / raw <= 1.5), met(z is not None and d is not None and mesh < z and mesh < d))
    row(m + ' (us)', mesh, 'seqpacket', raw, pl or '', pv, ratio(mesh, raw), ratio(mesh, pv), t)

for m in ('rpc_rtt', 'rpc_async_rtt', 'rpc_async_rtt_on_context'):
    mesh, rtt = L.get((m, 'mesh')), L.get(('rtt_64B', 'mesh'))
    pr = ratio(mesh, rtt)
    rows.append('| %s (us) | %s | | | %s | | (no target) |' % (
        m, g(mesh), (r(pr) + ' rtt_64B') if pr is not None else '-'))

m = 'rtt_fd_pass'
mesh, raw = L.get((m, 'mesh')), L.get((m, 'socketpair-seqpacket'))
pv = L.get((m, 'gdbus-p2p'))
row(m + ' (us)', mesh, 'seqpacket', raw, 'GDBus', pv, ratio(mesh, raw), ratio(mesh, pv),
    '<= 1.5x raw: ' + met(ratio(mesh, raw) is not None and ratio(mesh, raw) <= 1.5))
mb = L.get((m, 'mesh-borrow'))
if mb is not None:
    row(m + ' (mesh_message_add_fd_borrowed) (us)', mb, 'seqpacket', raw, 'GDBus', pv,
        ratio(mb, raw), ratio(mb, pv),
        '(issue 15: <= 1.3x raw: ' + met(ratio(mb, raw) is not None and ratio(mb, raw) <= 1.3) + ')')

m = 'stream_64B_msgs_per_s'
mesh, raw = T.get((m, 'mesh')), T.get((m, 'socketpair-seqpacket'))
z = T.get((m, 'zmq-ipc'))
row(m, mesh, 'seqpacket', raw, 'ZeroMQ', z, ratio(mesh, raw), ratio(mesh, z),
    '>= ZeroMQ: ' + met(ratio(mesh, z) is not None and ratio(mesh, z) >= 1))

m = 'stream_1MiB_GB_per_s'
mesh, raw = T.get((m, 'mesh')), T.get((m, 'socketpair-stream'))
pl, pv = best(T, m, [('zmq-ipc', 'ZeroMQ')], True)
row(m, mesh, 'stream', raw, pl or '', pv, ratio(mesh, raw), ratio(mesh, pv),
    '>= 0.7x stream: ' + met(ratio(mesh, raw) is not None and ratio(mesh, raw) >= 0.7))
mb = T.get((m, 'mesh-bytes'))
if mb is not None:
    row(m + ' (mesh_message_new_from_bytes)', mb, 'stream', raw, pl or '', pv, ratio(mb, raw),
        ratio(mb, pv), '(issue 15: >= 1.0x stream: ' +
        met(ratio(mb, raw) is not None and ratio(mb, raw) >= 1.0) + ')')

m = 'spawn_to_ready_ms'
mesh, raw = L.get((m, 'mesh')), L.get((m, 'posix_spawn'))
pv = L.get((m, 'posix_spawn-gio-child'))
row(m, mesh, 'posix_spawn', raw, 'GIO child', pv, ratio(mesh, raw), ratio(mesh, pv),
    '<= 1.3x posix_spawn: ' + met(ratio(mesh, raw) is not None and ratio(mesh, raw) <= 1.3))

# The same spawn in libpal's default sandbox profile (doc/sandbox.md), beside
# the unsandboxed mesh figure of the same run.
m = 'spawn_to_ready_sandboxed_ms'
mesh, plain = L.get((m, 'mesh')), L.get(('spawn_to_ready_ms', 'mesh'))
if mesh is not None:
    row(m, mesh, 'posix_spawn', L.get(('spawn_to_ready_ms', 'posix_spawn')), 'mesh unsandboxed',
        plain, ratio(mesh, L.get(('spawn_to_ready_ms', 'posix_spawn'))), ratio(mesh, plain),
        '(no target)')

m = 'inproc_rtt'
mesh, raw = L.get((m, 'mesh')), L.get((m, 'gasyncqueue'))
row(m + ' (us)', mesh, 'GAsyncQueue', raw, '', None, ratio(mesh, raw), None,
    '<= GAsyncQueue: ' + met(ratio(mesh, raw) is not None and ratio(mesh, raw) <= 1))

m = 'port_move_first_reply_us'
mesh, rtt = L.get((m, 'mesh')), L.get(('rtt_64B', 'mesh'))
pr = ratio(mesh, rtt)
rows.append('| %s | %s | | | %s | | <= 3x rtt_64B: %s |' % (
    m, g(mesh), (r(pr) + ' rtt_64B') if pr is not None else '-',
    met(pr is not None and pr <= 3)))

m = 'host_rss_kib'
mesh = T.get((m, 'mesh'))
bare = re.search(r'bare C program \(sleep\) (\d+) KiB', TN.get((m, 'mesh'), ''))
bare = float(bare.group(1)) if bare else None
over = mesh - bare if mesh is not None and bare is not None else None
rows.append('| %s | %s | bare C (sleep) %s | | +%s KiB | | <= 4096 KiB over bare C: %s |' % (
    m + ' (KiB)', g(mesh), g(bare), g(over),
    met(over is not None and over <= 4096)))

for n in sorted({int(s[5:]) for (mm, s) in T if mm == 'scale_hosts_ms' and s.startswith('mesh-')}):
    v = T[('scale_hosts_ms', 'mesh-%d' % n)]
    prss = re.search(r'parent VmRSS (\d+) KiB', TN[('scale_hosts_ms', 'mesh-%d' % n)])
    rows.append('| scale_hosts_ms, %d hosts all-to-all | %s | | | %s per host | | (no target; parent VmRSS %s KiB) |' % (
        n, g(v), g(v / n), prss.group(1) if prss else '?'))
    iv = T.get(('scale_intro_us', 'mesh-%d' % n))
    if iv is not None:
        rows.append('| scale_intro_us, %d hosts (one pair introduced) | %s | | | | | (no target: no growth worse than linear per pair) |' % (
            n, g(iv)))

# The point-to-point link (doc/libmeshremote-p2p.md) beside raw TCP loopback.
for m, d, unit in (('rtt_64B', L, ' (us)'), ('stream_1MiB_GB_per_s', T, '')):
    raw = d.get((m, 'raw-tcp-loopback'))
    for sysname, label in (('mesh-p2p-socketpair', 'p2p socketpair'), ('mesh-p2p-tcp', 'p2p TCP')):
        v = d.get((m, sysname))
        if v is not None:
            row('%s, %s%s' % (m, label, unit), v, 'TCP loopback', raw, 'Unix node',
                d.get((m, 'mesh')), ratio(v, raw), ratio(v, d.get((m, 'mesh'))),
                '(no target)')

today = datetime.date.today().isoformat()
table = '\n'.join([
    '<!-- table:begin (written by tests/bench/side-by-side.sh; do not edit by hand) -->',
    '## Table (%s, commit %s, one run each)' % (today, commit),
    '',
    'Latencies (`us`, `spawn_to_ready_ms`, `inproc_rtt`, port move): `BENCH_PIN=same`;',
    'throughputs, `host_rss_kib` and `scale_hosts_ms`: unpinned. Raw TSVs:',
    '`tests/bench/results/lat.tsv` and `thr.tsv`.',
    '',
    '| metric | mesh | raw limit | best peer | mesh / raw | mesh / best peer | target (DESIGN 6) |',
    '|---|---|---|---|---|---|---|',
] + rows + ['<!-- table:end -->'])

text = open(doc).read()
new, k = re.subn(r'<!-- table:begin.*?<!-- table:end -->', lambda _: table, text, flags=re.S)
if k != 1:
    sys.exit('side-by-side: %s has no <!-- table:begin --> ... <!-- table:end --> markers' % doc)
open(doc, 'w').write(new)
print('side-by-side: table written to %s' % doc, file=sys.stderr)
PY
