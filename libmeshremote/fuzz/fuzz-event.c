/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target for the event decoder and the port state machine behind it:
 * everything a node accepts from another node.
 *
 * Input: a sequence of events, each as [n_fds: 1 byte (low 2 bits)]
 * [size: 2 bytes LE][size bytes]. They are fed to node B, which has two
 * ports peered with node A and a local pair, all with fixed ids so that
 * inputs can address them: port 0x11.. (peer 0x21.. on A), port 0x12..
 * (peer 0x22.. on A). Checks: no crash, no leak (LeakSanitizer), no fd left
 * open after everything is torn down.
 */
#include "fuzz-common.h"


static void sink_send(void *user_data, const struct iovec *iov, size_t n_iov, const int *fds,
		      size_t n_fds)
{
	/* Replies to node A go nowhere. */
}

static const MeshEventSink sink = {.send = sink_send};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_quiet_logs();
	int lowest = fuzz_lowest_free_fd();

	MeshNode *b = mesh_node_new();
	MeshNodeId a_id;
	memset(a_id.bytes, 0xaa, sizeof(a_id.bytes));
	MeshRemoteNode *a = mesh_node_add_remote(b, &a_id);
	mesh_remote_node_connect(a, &sink, NULL);

	MeshPortId id1, id2, peer1, peer2;
	memset(id1.bytes, 0x11, 16);
	memset(id2.bytes, 0x12, 16);
	memset(peer1.bytes, 0x21, 16);
	memset(peer2.bytes, 0x22, 16);
	MeshPort *p1 = mesh_node_add_port(b, &id1, &a_id, &peer1);
	MeshPort *p2 = mesh_node_add_port(b, &id2, &a_id, &peer2);

	const uint8_t *p = data, *end = data + size;
	while (end - p >= 3) {
		size_t n_fds = p[0] & 3;
		size_t len = (size_t)p[1] | (size_t)p[2] << 8;
		p += 3;
		if (len > (size_t)(end - p))
			len = (size_t)(end - p);
		int fds[3];
		for (size_t i = 0; i < n_fds; i++)
			fds[i] = open("/dev/null", O_RDONLY | O_CLOEXEC);
		mesh_node_receive_event(b, &a_id, p, len, fds, n_fds);
		p += len;
	}

	/* Drain whatever arrived, then tear everything down. */
	MeshMessage *msg;
	while (port_try_recv(p1, &msg, NULL) == PORT_RECV_MESSAGE)
		mesh_message_free(msg);
	mesh_port_close(p1);
	mesh_port_close(p2);
	mesh_remote_node_unref(a);
	mesh_node_unref(b);

	fuzz_check_fds("fuzz-event", lowest);
	return 0;
}
