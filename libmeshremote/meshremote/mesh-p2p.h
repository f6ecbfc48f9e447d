/* SPDX-License-Identifier: MIT */
/**
 * MeshP2pLink: a two-node mesh over any connected byte stream.
 *
 * Upstream's PointToPointMesh (mesh_remote point_to_point.rs), wire
 * compatible: each side writes a 36-byte hello {"mesh", node id[16], port
 * id[16]}, then every event as a little-endian u64 length and the event's
 * bytes. The stream may be a socketpair, TCP, vsock, a pipe pair (two fds,
 * such as ssh's stdin and stdout): anything that carries bytes in order.
 * No fds cross it. The stream is trusted as upstream's is: authentication
 * and encryption come from what carries it (SSH, or TLS ended outside).
 *
 * A link joins one local port to the peer's initial port. Ports sent across
 * work as in any mesh; a port whose peer would be on a third node fails
 * ("no extra connections allowed in point-to-point mesh"); a message that
 * carries fds fails the port that sends it, at once (unlike upstream, which
 * loses it). Built on <meshremote/mesh-transport.h> alone. See
 * doc/libmeshremote-p2p.md for the memory bounds and the send policy.
 */
#pragma once

#if !defined(__MESHREMOTE_H_INSIDE__) && !defined(MESHREMOTE_COMPILATION)
#error "Only <meshremote/meshremote.h> can be included directly."
#endif

#include <glib.h>

G_BEGIN_DECLS

typedef struct MeshP2pLink MeshP2pLink;

/**
 * MeshP2pLinkState:
 * @MESH_P2P_LINK_CONNECTING: our hello is out, the peer's not in yet
 * @MESH_P2P_LINK_OPEN: hellos exchanged, events flow
 * @MESH_P2P_LINK_CLOSED: ended cleanly: the peer's end of stream between
 *     two events, or mesh_p2p_link_shutdown()
 * @MESH_P2P_LINK_FAILED: ended by an error (see mesh_p2p_link_get_state())
 */
typedef enum {
	MESH_P2P_LINK_CONNECTING,
	MESH_P2P_LINK_OPEN,
	MESH_P2P_LINK_CLOSED,
	MESH_P2P_LINK_FAILED,
} MeshP2pLinkState;

/**
 * MESH_P2P_DEFAULT_SEND_LIMIT:
 *
 * Bytes a link queues toward a peer that does not read before a sender
 * waits (64 MiB). See mesh_p2p_link_set_send_limit().
 */
#define MESH_P2P_DEFAULT_SEND_LIMIT (64u << 20)

/**
 * MESH_P2P_DEFAULT_SEND_TIMEOUT_US:
 *
 * How long a sender waits for a peer that does not read before the link
 * fails (30 s). See mesh_p2p_link_set_send_limit().
 */
#define MESH_P2P_DEFAULT_SEND_TIMEOUT_US (30 * G_USEC_PER_SEC)

/**
 * mesh_p2p_link_new_take:
 * @node: (nullable): the node the link belongs to; NULL makes one with a
 *     fresh id (as upstream does), see mesh_p2p_link_get_node()
 * @in_fd: (transfer full): a connected stream to read from
 * @out_fd: (transfer full): the stream to write to; may equal @in_fd
 * @port: (transfer full): the local port to join to the peer's initial port
 * @context: (nullable): the context to do I/O on, which the caller runs;
 *     NULL starts a thread with its own context
 * @error: return location for an error
 *
 * Starts a link: the hello exchange and everything after happen on the
 * I/O context, so this never blocks. Messages sent toward @port's peer
 * before the peer's hello arrives wait (they are queued at @port).
 *
 * Both fds are set close-on-exec and O_NONBLOCK. O_NONBLOCK belongs to the
 * open file description: on a stream shared with other processes (a host's
 * stdin and stdout under ssh) they see it too.
 *
 * A node the link makes gets a connector that fails every attempt to reach
 * another node, and, with @context, the link's I/O hook: a thread that
 * blocks in a receive on @context's own thread runs the link's I/O itself
 * (as mesh_unix_node_new() describes). A given @node keeps its connector
 * and I/O hook (a Unix mesh's, say).
 *
 * If the link ends before the peer's hello, @port is closed (there is no
 * peer to name yet): mesh_p2p_link_get_state() says why.
 *
 * Consumes @in_fd, also on failure. Consumes @out_fd, also on failure.
 * Consumes @port, also on failure. (A port taken on failure is closed.)
 *
 * Returns: (transfer full) (nullable): the link, or NULL with @error set
 * (a bad fd, a datagram socket: MESH_ERROR_INVALID_ARGUMENT).
 */
MESH_REMOTE_API MeshP2pLink *mesh_p2p_link_new_take(MeshNode *node, int in_fd, int out_fd,
						    MeshPort *port, GMainContext *context,
						    GError **error);

/** mesh_p2p_link_get_node: Returns: (transfer none): the link's node. Any thread. */
MESH_REMOTE_API MeshNode *mesh_p2p_link_get_node(MeshP2pLink *link);

/**
 * mesh_p2p_link_get_peer_id:
 * @link: a link
 * @ret_id: (out caller-allocates): the peer's node id
 *
 * Returns: FALSE until the peer's hello has arrived. Any thread.
 */
MESH_REMOTE_API gboolean mesh_p2p_link_get_peer_id(MeshP2pLink *link, MeshNodeId *ret_id);

/**
 * mesh_p2p_link_get_state:
 * @link: a link
 * @error: (nullable): set to why it failed when the state is
 *     MESH_P2P_LINK_FAILED (MESH_ERROR_NODE_FAILURE naming the peer once
 *     known, MESH_ERROR_CORRUPTION for a broken stream)
 *
 * Returns: where the link is. Any thread.
 */
MESH_REMOTE_API MeshP2pLinkState mesh_p2p_link_get_state(MeshP2pLink *link, GError **error);

/**
 * MeshP2pLinkEndedFunc:
 * @link: the link
 * @error: (nullable): why it failed; NULL when it closed cleanly
 * @user_data: the data given with the function
 *
 * Called once on the link's I/O context (its own thread when it has one)
 * when the link ends. Every port that depended on the peer has failed by
 * then, naming the peer. It may not free @link.
 */
typedef void (*MeshP2pLinkEndedFunc)(MeshP2pLink *link, const GError *error, gpointer user_data);

/**
 * mesh_p2p_link_set_ended_func:
 * @link: a link
 * @func: (nullable): called when the link ends (at once, on the I/O
 *     context, if it has ended already)
 * @user_data: passed to @func
 * @notify: (nullable): releases @user_data when replaced or the link is freed
 *
 * Any thread.
 */
MESH_REMOTE_API void mesh_p2p_link_set_ended_func(MeshP2pLink *link, MeshP2pLinkEndedFunc func,
						  gpointer user_data, GDestroyNotify notify);

/**
 * MeshP2pPeerDescribeFunc:
 * @link: the link
 * @peer: the peer's node id
 * @user_data: the data given with the function
 *
 * Called once, when a link whose peer's hello had come ends, on the thread
 * that ends it (the I/O context, mesh_p2p_link_shutdown() or
 * mesh_p2p_link_free()), with no library lock held. Never inside a send: a
 * send that finds the stream broken or gives up on a peer not reading marks
 * the link failed (mesh_p2p_link_get_state() says so at once) and leaves
 * the rest (failing the peer's ports, this call) to the I/O context, so a
 * sender may hold locks this function takes.
 *
 * Returns: (transfer full) (nullable): words naming the peer for the
 * errors its ports get, e.g. "host worker-1 (pid 4242) exited with status
 * 255"; they go before the reason ("WORDS: REASON").
 */
typedef char *(*MeshP2pPeerDescribeFunc)(MeshP2pLink *link, const MeshNodeId *peer,
					 gpointer user_data);

/**
 * mesh_p2p_link_set_peer_describer:
 * @link: a link
 * @func: (nullable): names the peer when the link ends
 * @user_data: passed to @func
 * @notify: (nullable): releases @user_data when replaced or the link is freed
 *
 * Lets the layer above name the culprit in the errors that ports get (as
 * mesh_unix_node_set_peer_describer() does for the Unix transport). Any
 * thread.
 */
MESH_REMOTE_API void mesh_p2p_link_set_peer_describer(MeshP2pLink *link,
						      MeshP2pPeerDescribeFunc func,
						      gpointer user_data, GDestroyNotify notify);

/**
 * mesh_p2p_link_set_send_limit:
 * @link: a link
 * @max_queued: bytes queued toward the peer above which a sender waits
 *     (at least 64 KiB)
 * @timeout_us: how long a sender waits before the link fails ("peer not
 *     reading"); 0 fails at once; -1 is refused
 *
 * The send policy (doc/libmeshremote-p2p.md): a send writes what the
 * stream takes at once, and queues the rest on the link. While
 * @max_queued bytes or more are queued, a send on any thread but the
 * link's I/O thread (or the thread running the link's context) waits for
 * the queue to go below, up to @timeout_us; then the link fails with
 * MESH_ERROR_NODE_FAILURE "peer not reading". A send that may not wait
 * (the link's own I/O: acknowledgements, moves) queues, up to twice
 * @max_queued; beyond, the link fails the same way. Defaults:
 * MESH_P2P_DEFAULT_SEND_LIMIT, MESH_P2P_DEFAULT_SEND_TIMEOUT_US. Any thread.
 */
MESH_REMOTE_API void mesh_p2p_link_set_send_limit(MeshP2pLink *link, gsize max_queued,
						  gint64 timeout_us);

/**
 * mesh_p2p_link_shutdown:
 * @link: a link
 * @timeout_us: how long to wait, -1 without limit
 *
 * Ends the link gracefully, as upstream's shutdown: waits for the ports
 * being moved across to finish their moves, fails the ports that still
 * depend on the peer ("the link was shut down"), writes out what is
 * queued, and ends the stream (half-closes a socket, closes a separate
 * out fd). Any thread; on the thread that runs a caller's context it
 * iterates that context meanwhile.
 *
 * Returns: TRUE if everything was written in time; FALSE if the link had
 * failed or @timeout_us ran out (what was left is dropped).
 */
MESH_REMOTE_API gboolean mesh_p2p_link_shutdown(MeshP2pLink *link, gint64 timeout_us);

/**
 * mesh_p2p_link_free:
 * @link: (nullable) (transfer full): a link
 *
 * Ends the link if it is still up (its ports fail: "the link was freed"),
 * stops its I/O thread, closes the fds and drops the ended function. Not
 * from the link's ended function, nor on its I/O thread.
 */
MESH_REMOTE_API void mesh_p2p_link_free(MeshP2pLink *link);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(MeshP2pLink, mesh_p2p_link_free)

G_END_DECLS
