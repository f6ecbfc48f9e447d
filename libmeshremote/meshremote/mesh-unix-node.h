/* SPDX-License-Identifier: MIT */
/**
 * MeshUnixNode: a node whose connections to other nodes are Unix
 * SOCK_SEQPACKET sockets, one per pair of nodes, carrying fds by SCM_RIGHTS.
 *
 * Packets: an 8-byte header (type, 7 zero bytes) then the body. EVENT (1)
 * carries one event, its fds attached. An event over 16376 bytes travels as
 * LARGE_EVENT (3): no body, the first fd a sealed memfd holding the event,
 * the rest the event's fds. At most 64 fds per packet.
 *
 * I/O runs on a GMainContext: the node's own thread by default, or one the
 * caller gives (then the caller iterates it). Sends run on the caller's
 * thread with a non-blocking sendmsg, falling back to the I/O context's
 * queue when the socket is full; sequence numbers absorb the reordering.
 *
 * Threads: every function may be called from any thread.
 */
#pragma once

#if !defined(__MESHREMOTE_H_INSIDE__) && !defined(MESHREMOTE_COMPILATION)
#error "Only <meshremote/meshremote.h> can be included directly."
#endif

#include <glib.h>

G_BEGIN_DECLS

typedef struct MeshUnixNode MeshUnixNode;

/** MESH_UNIX_MAX_PACKET_SIZE: the largest packet; larger events go out of line. */
#define MESH_UNIX_MAX_PACKET_SIZE 16384
/** MESH_UNIX_MAX_FDS_PER_PACKET: fds one packet may carry, a large event's memfd included. */
#define MESH_UNIX_MAX_FDS_PER_PACKET 64

/**
 * mesh_unix_node_new:
 * @node: (transfer none): the node this transport serves (referenced)
 * @context: (nullable): the context to do I/O on; NULL starts a thread with
 *     its own context
 *
 * Returns: (transfer full): the transport.
 */
MESH_REMOTE_API MeshUnixNode *mesh_unix_node_new(MeshNode *node, GMainContext *context);

/** mesh_unix_node_get_node: Returns: (transfer none): the node. */
MESH_REMOTE_API MeshNode *mesh_unix_node_get_node(MeshUnixNode *unode);

/**
 * mesh_unix_node_connect_take:
 * @unode: a transport
 * @peer: the node at the other end of @fd
 * @fd: (transfer full): a connected SOCK_SEQPACKET socket, taken in all cases
 * @error: why not
 *
 * Uses @fd as the connection to @peer. When the connection ends (EOF, an
 * error, a malformed packet), every port that depends on @peer fails with an
 * error naming it.
 *
 * Returns: FALSE if @fd is not a SOCK_SEQPACKET socket or @peer is already
 * connected (a duplicate connection, then @fd is closed).
 */
MESH_REMOTE_API gboolean mesh_unix_node_connect_take(MeshUnixNode *unode, const MeshNodeId *peer,
						     int fd, GError **error);

/**
 * mesh_unix_node_shutdown:
 * @unode: a transport
 * @timeout_us: how long to wait for peers, -1 for no limit
 *
 * Graceful shutdown: waits (within @timeout_us) until no port is being
 * moved, then flushes every connection and half-closes it (shutdown(SHUT_WR)),
 * so everything sent before reaches the peer, and waits for each peer's end
 * of stream. Connections left after the timeout are cut.
 *
 * Returns: TRUE if every connection ended cleanly in time.
 */
MESH_REMOTE_API gboolean mesh_unix_node_shutdown(MeshUnixNode *unode, gint64 timeout_us);

/**
 * mesh_unix_node_free:
 * @unode: (nullable): a transport
 *
 * Cuts every remaining connection at once (prefer mesh_unix_node_shutdown()
 * first) and stops the I/O thread if it owns one.
 */
MESH_REMOTE_API void mesh_unix_node_free(MeshUnixNode *unode);

G_END_DECLS
