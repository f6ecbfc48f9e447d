/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target for the Unix transport's packet layer and everything behind
 * it: packets are written into a real SOCK_SEQPACKET connection of a
 * MeshUnixNode running on a context this function iterates.
 *
 * Input: a sequence of packets, each [control: 1 byte][size: 2 bytes LE]
 * [size bytes]. Control bits 0-1: how many /dev/null fds ride along; bit 2:
 * send the bytes in a sealed memfd as the first fd (a large event; bit 3
 * leaves it unsealed) with only the header as data; bit 4: the first 24
 * bytes are the packet and the rest goes into a memfd sealed against
 * resizing only, sent as the first fd (a pool buffer, see unix-pool.c).
 * The node has a port with
 * a fixed id (0x11 x16) peered with port 0x21.. on the fuzzed peer node
 * (0xaa x16), so events can reach it. Checks: no crash, no leak, no fd left.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <pal/pal.h>

#include "remote-private.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void ignore_log(const gchar *domain, GLogLevelFlags level, const gchar *message,
		       gpointer user_data)
{
}

static int probe_lowest_free_fd(void)
{
	int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		abort();
	close(fd);
	return fd;
}

static void send_packet(int sock, uint8_t control, const uint8_t *bytes, size_t len)
{
	int fds[4], n = 0;
	uint8_t header[8] = {3};

	if ((control & 0x10) && !(control & 4)) {
		size_t head = len < 24 ? len : 24;
		int memfd = pal_memfd_create("fuzz-pool", len > head ? len - head : 1);
		if (memfd < 0)
			return;
		if (len > head && write(memfd, bytes + head, len - head) != (ssize_t)(len - head)) {
			close(memfd);
			return;
		}
		fcntl(memfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW);
		fds[n++] = memfd;
		len = head;
	}
	if (control & 4) {
		int memfd = pal_memfd_create("fuzz", len);
		if (memfd < 0)
			return;
		if (len && write(memfd, bytes, len) != (ssize_t)len) {
			close(memfd);
			return;
		}
		if (!(control & 8))
			pal_memfd_seal(memfd);
		fds[n++] = memfd;
	}
	for (int i = 0; i < (control & 3); i++)
		fds[n++] = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (control & 4) {
		struct iovec iov = {header, sizeof(header)};
		pal_send_with_fds(sock, &iov, 1, fds, (size_t)n, MSG_DONTWAIT);
	} else {
		struct iovec iov = {(void *)bytes, len};
		pal_send_with_fds(sock, &iov, 1, fds, (size_t)n, MSG_DONTWAIT);
	}
	for (int i = 0; i < n; i++)
		close(fds[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static gboolean init;
	if (!init) {
		g_log_set_handler("MeshRemote", G_LOG_LEVEL_MASK, ignore_log, NULL);
		init = TRUE;
	}
	int lowest = probe_lowest_free_fd();

	GMainContext *ctx = g_main_context_new();
	MeshNode *node = mesh_node_new();
	MeshUnixNode *u = mesh_unix_node_new(node, ctx);
	MeshNodeId peer;
	MeshPortId mine, theirs;
	memset(peer.bytes, 0xaa, 16);
	memset(mine.bytes, 0x11, 16);
	memset(theirs.bytes, 0x21, 16);
	MeshRemoteNode *h = mesh_node_add_remote(node, &peer);
	MeshPort *port = mesh_node_add_port(node, &mine, &peer, &theirs);
	int sv[2];
	if (pal_socketpair(SOCK_SEQPACKET, sv) < 0)
		abort();
	mesh_unix_node_connect_take(u, &peer, sv[0], NULL);
	mesh_remote_node_unref(h);

	const uint8_t *p = data, *end = data + size;
	while (end - p >= 3) {
		uint8_t control = p[0];
		size_t len = (size_t)p[1] | (size_t)p[2] << 8;
		p += 3;
		if (len > (size_t)(end - p))
			len = (size_t)(end - p);
		send_packet(sv[1], control, p, len);
		p += len;
		while (g_main_context_iteration(ctx, FALSE))
			;
	}
	shutdown(sv[1], SHUT_WR);
	MeshMessage *msg;
	while (port_try_recv(port, &msg, NULL) == PORT_RECV_MESSAGE)
		mesh_message_free(msg);
	mesh_port_close(port);
	mesh_unix_node_shutdown(u, 2 * G_USEC_PER_SEC);
	mesh_unix_node_free(u);
	mesh_node_unref(node);
	close(sv[1]);
	while (g_main_context_iteration(ctx, FALSE))
		;
	g_main_context_unref(ctx);

	if (probe_lowest_free_fd() != lowest) {
		fprintf(stderr, "fuzz-packet: an fd leaked\n");
		abort();
	}
	return 0;
}
