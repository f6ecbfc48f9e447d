/* SPDX-License-Identifier: MIT */
/*
 * What the fuzz targets share: quiet logs, the fd-leak probe, and a
 * MeshUnixNode on its own context with one connection whose far end the
 * target writes (fuzz-packet.c, fuzz-ring.c). Test code only.
 */
#pragma once

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <pal/pal.h>

#include "remote-private.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static inline void fuzz_ignore_log(const gchar *domain, GLogLevelFlags level, const gchar *message,
			    gpointer user_data)
{
}

/* Once per process: the library's warnings about bad input are expected. */
static inline void fuzz_quiet_logs(void)
{
	static gboolean done;
	if (!done) {
		g_log_set_handler("MeshRemote", G_LOG_LEVEL_MASK, fuzz_ignore_log, NULL);
		done = TRUE;
	}
}

/* The lowest free fd: the same before and after a run, or an fd leaked. */
static inline int fuzz_lowest_free_fd(void)
{
	int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		abort();
	close(fd);
	return fd;
}

static inline void fuzz_check_fds(const char *target, int lowest)
{
	if (fuzz_lowest_free_fd() != lowest) {
		fprintf(stderr, "%s: an fd leaked\n", target);
		abort();
	}
}

/*
 * A node (its own context, not iterated here) connected to peer 0xaa x16
 * over a SOCK_SEQPACKET pair; @sock is the peer's end, which the target
 * writes. The node's port 0x11 x16 is peered with 0x21 x16 on the peer, so
 * events can reach it.
 */
typedef struct {
	GMainContext *ctx;
	MeshNode *node;
	MeshUnixNode *unode;
	MeshPort *port;
	MeshPortId port_id; /* the port's: 0x11 x16 */
	int sock;
} FuzzUnixPeer;

static inline void fuzz_unix_peer_init(FuzzUnixPeer *f)
{
	MeshNodeId peer;
	MeshPortId mine, theirs;
	int sv[2];

	memset(peer.bytes, 0xaa, 16);
	memset(mine.bytes, 0x11, 16);
	memset(theirs.bytes, 0x21, 16);
	f->ctx = g_main_context_new();
	f->node = mesh_node_new();
	f->unode = mesh_unix_node_new(f->node, f->ctx);
	MeshRemoteNode *h = mesh_node_add_remote(f->node, &peer);
	f->port = mesh_node_add_port(f->node, &mine, &peer, &theirs);
	f->port_id = mine;
	if (pal_socketpair(SOCK_SEQPACKET, sv) < 0)
		abort();
	mesh_unix_node_connect_take(f->unode, &peer, sv[0], NULL);
	mesh_remote_node_unref(h);
	f->sock = sv[1];
}

/* Ends the peer's stream, drains the port; returns how many messages it had. */
static inline int fuzz_unix_peer_finish(FuzzUnixPeer *f)
{
	MeshMessage *msg;
	int got = 0;

	shutdown(f->sock, SHUT_WR);
	while (port_try_recv(f->port, &msg, NULL) == PORT_RECV_MESSAGE) {
		mesh_message_free(msg);
		got++;
	}
	mesh_port_close(f->port);
	mesh_unix_node_shutdown(f->unode, 2 * G_USEC_PER_SEC);
	mesh_unix_node_free(f->unode);
	mesh_node_unref(f->node);
	close(f->sock);
	return got;
}

/* After fuzz_unix_peer_finish() and the last iterations of the context. */
static inline void fuzz_unix_peer_free_context(FuzzUnixPeer *f)
{
	g_main_context_unref(f->ctx);
}
