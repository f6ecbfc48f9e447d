#!/bin/sh
# SPDX-License-Identifier: MIT
# Runs `meshctl demo` and checks its summary, then `meshctl demo --json`.
# Usage: test-demo.sh MESHCTL
set -eu
meshctl=$1

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

# The text summary (the command exits 0 only if every step went as planned).
out=$("$meshctl" demo) || fail "meshctl demo exited with status $?"
echo "$out"
check() {
	echo "$out" | grep -Eq -- "$1" || fail "no line matching: $1"
}
check '^meshctl demo: mesh "demo", parent pid [0-9]+$'
check '^launched 3 hosts: worker-1 \(pid [0-9]+\), worker-2 \(pid [0-9]+\), worker-3 \(pid [0-9]+\)$'
check '^work: 12 items processed by 3 hosts \(worker-1: 4, worker-2: 4, worker-3: 4\), 79 words counted$'
check '^port moved: worker-1 <-> worker-2 talked directly$'
check '^rpc: add\(2, 3\) = 5 on worker-3$'
check '^rpc: divide\(84, 2\) = 42 on worker-1$'
check '^rpc: failable divide\(7, 0\) on worker-3 returned its error chain: divide\(7, 0\) on worker-3: division by zero$'
check '^after crash: worker-1, worker-3 still answer'
check '^  mesh demo: a parent and 2 hosts$'
check '^shutdown: all hosts exited'
check '^demo: ok$'

# The pids line up: the hosts greeted each other with their own pids, the
# crash error names worker-2 and its pid, and the tree lists the survivors.
pid_of() {
	echo "$out" | sed -n "s/^launched 3 hosts: .*$1 (pid \([0-9]*\)).*/\1/p"
}
p1=$(pid_of worker-1)
p2=$(pid_of worker-2)
p3=$(pid_of worker-3)
[ -n "$p1" ] && [ -n "$p2" ] && [ -n "$p3" ] || fail "no pids in the launch line"
check "^  worker-1 got: \"hello worker-1, this is worker-2 \(pid $p2\)\"$"
check "^  worker-2 got: \"hello worker-2, this is worker-1 \(pid $p1\)\"$"
check "^crash: worker-2 \(pid $p2\) crashed with a call in flight; its caller got: .*host worker-2 \(pid $p2\)"
check "^crash: a new call to worker-2 failed at once: MESH_ERROR_(CLOSED|NODE_FAILURE): "
check "worker-1 pid $p1 \(running, node [0-9a-f]+, rss [0-9]+ KiB, [0-9]+ threads?\)$"
check "worker-3 pid $p3 \(running, node [0-9a-f]+, rss [0-9]+ KiB, [0-9]+ threads?\)$"
if echo "$out" | grep -q "worker-2 pid"; then
	fail "the crashed host is still in the tree"
fi
# The workers are sandboxed (doc/sandbox.md): a sandbox line under each
# (without a private /tmp when meshctl runs from a tree under /tmp).
n=$(echo "$out" | grep -Ec -- "sandbox: namespaces [a-z ]+(, private /tmp)?, no_new_privs, capabilities dropped, Landlock ABI [0-9]+, seccomp kill$" || true)
[ "$n" -eq 2 ] || fail "expected 2 sandbox lines in the tree, got $n"
# worker-2, pid 1 of its PID namespace, trapped rather than aborted.
check "^crash: worker-2 \(pid $p2\) crashed with a call in flight; its caller got: .*killed by signal 4 "

# --no-sandbox: the same story, unsandboxed hosts, no sandbox lines.
plain=$("$meshctl" demo --no-sandbox) || fail "meshctl demo --no-sandbox exited with status $?"
echo "$plain" | grep -q '^demo: ok$' || fail "meshctl demo --no-sandbox: $plain"
if echo "$plain" | grep -q "sandbox:"; then
	fail "sandbox lines with --no-sandbox"
fi
echo "$plain" | grep -q "killed by signal 6 (Aborted)" || fail "no abort with --no-sandbox"

# The same facts as one JSON object.
json=$("$meshctl" demo --json) || fail "meshctl demo --json exited with status $?"
echo "$json"
if command -v python3 >/dev/null 2>&1; then
	echo "$json" | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert d["ok"] is True, d
assert [h["name"] for h in d["hosts"]] == ["worker-1", "worker-2", "worker-3"]
pids = {h["name"]: h["pid"] for h in d["hosts"]}
assert d["work"] == {"items": 12, "hosts": 3, "words": 79,
                     "by_host": {"worker-1": 4, "worker-2": 4, "worker-3": 4}}, d["work"]
assert d["port_move"]["a_got"].endswith("(pid %d)" % pids["worker-2"])
assert d["port_move"]["b_got"].endswith("(pid %d)" % pids["worker-1"])
assert [r.get("result") for r in d["rpc"]] == [5, 42, None]
assert d["rpc"][2]["code"] == "MESH_ERROR_REMOTE"
c = d["crash"]
assert c["host"] == "worker-2" and c["pid"] == pids["worker-2"]
assert c["pending_call_code"] == "MESH_ERROR_NODE_FAILURE"
assert "host worker-2 (pid %d)" % c["pid"] in c["pending_call_error"]
assert c["new_call_code"] in ("MESH_ERROR_CLOSED", "MESH_ERROR_NODE_FAILURE")
assert d["after_crash"]["answered"] == ["worker-1", "worker-3"]
tree = d["inspect"]
assert tree["mesh"] == "demo" and tree["parent"]["pid"] == d["parent_pid"]
assert sorted(h["name"] for h in tree["hosts"]) == ["worker-1", "worker-3"]
for h in tree["hosts"]:
    assert h["report"]["pid"] == h["pid"] and h["report"]["rss_kib"] > 0, h
    sb = h["report"]["sandbox"]
    assert sb["finalized"] and sb["no_new_privs"] and sb["seccomp"] == "kill", h
    assert "net" in sb["namespaces"] and "pid" in sb["namespaces"], h
assert d["shutdown"]["clean"] is True and d["shutdown"]["left"] == 0
print("json: ok")
' || fail "meshctl demo --json: unexpected content"
else
	for key in '"ok":true' '"pending_call_code":"MESH_ERROR_NODE_FAILURE"' \
		'"items":12' '"clean":true'; do
		echo "$json" | grep -qF "$key" || fail "no $key in the JSON"
	done
	echo "json: ok (python3 not found: checked with grep)"
fi
