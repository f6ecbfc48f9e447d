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
 * Threads: every function may be called from any thread. On a caller's
 * context, a blocking call (a receive, an rpc call, a oneshot wait,
 * mesh_unix_node_shutdown(), mesh_unix_node_free()) made on the context's own
 * thread iterates the context itself until it completes: on the thread that
 * runs it (also inside one of its dispatches), or, while nobody runs it, on
 * the thread it belongs to (the thread that made the transport or pushed the
 * context as its thread default; for the global default context, the main
 * thread). Other sources of that context may then be dispatched inside the
 * call, as in a nested main loop. Made on any other thread, the call waits
 * for the thread that runs the context to do the I/O (it never takes the
 * context from it).
 */
#pragma once

#if !defined(__MESHREMOTE_H_INSIDE__) && !defined(MESHREMOTE_COMPILATION)
#error "Only <meshremote/meshremote.h> can be included directly."
#endif

#include <glib.h>
#include <sys/types.h>

G_BEGIN_DECLS

typedef struct MeshUnixNode MeshUnixNode;

/** MESH_UNIX_MAX_PACKET_SIZE: the largest packet; larger events go out of line. */
#define MESH_UNIX_MAX_PACKET_SIZE 16384
/** MESH_UNIX_MAX_FDS_PER_PACKET: fds one packet may carry, a large event's memfd included. */
#define MESH_UNIX_MAX_FDS_PER_PACKET 64

/**
 * MESH_UNIX_DEFAULT_SEND_LIMIT:
 *
 * Bytes queued on one connection (events its peer has not read yet) beyond
 * which a send waits (64 MiB). See mesh_unix_node_set_send_limit().
 */
#define MESH_UNIX_DEFAULT_SEND_LIMIT (64u << 20)

/**
 * MESH_UNIX_DEFAULT_SEND_TIMEOUT_US:
 *
 * How long a send waits for room before the connection fails (30 s). See
 * mesh_unix_node_set_send_limit().
 */
#define MESH_UNIX_DEFAULT_SEND_TIMEOUT_US (30 * G_USEC_PER_SEC)

/** MESH_UNIX_MIN_SEND_LIMIT: the smallest limit mesh_unix_node_set_send_limit() takes (64 KiB). */
#define MESH_UNIX_MIN_SEND_LIMIT (64u * 1024)

/**
 * mesh_unix_node_new:
 * @node: (transfer none): the node this transport serves (referenced)
 * @context: (nullable): the context to do I/O on; NULL starts a thread with
 *     its own context. A given context must be run by the caller (see the
 *     threads paragraph above for blocking calls made where it runs).
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
 * @fd: (transfer full): a connected SOCK_SEQPACKET socket
 * @error: why not
 *
 * Consumes @fd, also on failure. Uses @fd as the connection to @peer. When the connection ends (EOF, an
 * error, a malformed packet), every port that depends on @peer fails with an
 * error naming it.
 *
 * Returns: FALSE if @fd is not a SOCK_SEQPACKET socket or @peer is already
 * connected (a duplicate connection, then @fd is closed).
 */
MESH_REMOTE_API gboolean mesh_unix_node_connect_take(MeshUnixNode *unode, const MeshNodeId *peer,
						     int fd, GError **error);

/**
 * MeshInvitation:
 *
 * What a process needs to join a mesh: its node id and first port id, the
 * inviting leader's node and port ids, and a socket connected to the leader.
 * It owns the socket.
 */
typedef struct MeshInvitation MeshInvitation;

/**
 * mesh_invitation_new_take:
 * @fd: (transfer full): the socket, taken in all cases (closed if an id is
 *     NULL)
 *
 * Consumes @fd, also on failure. Rebuilds an invitation that travelled by other means (an environment
 * variable and an inherited fd).
 *
 * Returns: (transfer full): the invitation.
 */
MESH_REMOTE_API MeshInvitation *mesh_invitation_new_take(const MeshNodeId *local_node,
							 const MeshPortId *local_port,
							 const MeshNodeId *remote_node,
							 const MeshPortId *remote_port, int fd);

/** mesh_invitation_get_address: the four ids (each out parameter optional). */
MESH_REMOTE_API void mesh_invitation_get_address(const MeshInvitation *inv,
						 MeshNodeId *ret_local_node,
						 MeshPortId *ret_local_port,
						 MeshNodeId *ret_remote_node,
						 MeshPortId *ret_remote_port);

/**
 * mesh_invitation_get_extensions:
 * @inv: an invitation
 *
 * The extensions beyond upstream's wire that the inviting leader, a C node,
 * reads (its hello's flags; doc/libmeshremote-unix.md, "Extensions between
 * C nodes"); 0 when it reads none, and in an invitation from an upstream
 * leader. A joiner given non-zero extensions says its own hello first on
 * the connection; with 0 it speaks upstream's wire only. An invitation that
 * travels by other means (an environment variable) carries them along with
 * mesh_invitation_set_extensions().
 *
 * Returns: the flags.
 */
MESH_REMOTE_API guint mesh_invitation_get_extensions(const MeshInvitation *inv);

/**
 * mesh_invitation_set_extensions:
 * @inv: an invitation
 * @extensions: what mesh_invitation_get_extensions() returned for it where
 *     it was made (0 for an invitation of an upstream leader)
 *
 * Sets the extensions a rebuilt invitation carries.
 */
MESH_REMOTE_API void mesh_invitation_set_extensions(MeshInvitation *inv, guint extensions);

/** mesh_invitation_get_fd: Returns: (transfer none): the socket, -1 once stolen. */
MESH_REMOTE_API int mesh_invitation_get_fd(const MeshInvitation *inv);

/** mesh_invitation_steal_fd: Returns: (transfer full): the socket; the invitation keeps -1. */
MESH_REMOTE_API int mesh_invitation_steal_fd(MeshInvitation *inv);

/**
 * mesh_invitation_free:
 * @inv: (nullable): an invitation
 *
 * Closes its socket: an invitation dropped unused makes the leader see the
 * invited node fail, so the invited port's peer gets an error.
 */
MESH_REMOTE_API void mesh_invitation_free(MeshInvitation *inv);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(MeshInvitation, mesh_invitation_free)

/**
 * mesh_unix_node_invite:
 * @unode: a transport
 * @port: (transfer full): the port the joiner will get the peer of, taken in
 *     all cases (closed on any failure, a bad argument included)
 * @timeout_us: how long a follower waits for its leader's answer (-1: forever;
 *     another negative value: MESH_ERROR_INVALID_ARGUMENT)
 * @ret_invitation: (out) (transfer full): the invitation
 * @error: why not
 *
 * Consumes @port, also on failure. Invites a new process into the mesh. The leader makes the socketpair and
 * the new node's id; a follower asks its leader over the mesh. Must not be
 * called on the I/O context's thread of a follower.
 *
 * Returns: TRUE with an invitation.
 */
MESH_REMOTE_API gboolean mesh_unix_node_invite(MeshUnixNode *unode, MeshPort *port,
					       gint64 timeout_us,
					       MeshInvitation **ret_invitation, GError **error);

/**
 * mesh_unix_node_join:
 * @invitation: (transfer full): an invitation, taken in all cases (freed on
 *     any failure, a bad argument included)
 * @context: (nullable): as for mesh_unix_node_new()
 * @timeout_us: how long to wait for the leader's initial message (-1: forever;
 *     another negative value: MESH_ERROR_INVALID_ARGUMENT)
 * @ret_port: (out) (transfer full): the joined port, peered with the port
 *     that was invited
 * @error: why not
 *
 * Consumes @invitation, also on failure. Joins a mesh: makes a node with
 * the invitation's id that follows the
 * inviting leader (which then introduces it to any node it must reach).
 * The invitation's socket is checked first, before the node makes any fd
 * of its own: if it is not an open SOCK_SEQPACKET socket (an inherited fd
 * that was closed), the join fails at once with MESH_ERROR_INVALID_ARGUMENT
 * (an fd that is not open is left alone). If the leader's end closes before
 * its initial message came, the join fails with that error. Every error
 * message starts with "joining the mesh: ".
 *
 * Returns: (transfer full): the transport (its node via
 * mesh_unix_node_get_node()), or NULL.
 */
MESH_REMOTE_API MeshUnixNode *mesh_unix_node_join(MeshInvitation *invitation,
						  GMainContext *context, gint64 timeout_us,
						  MeshPort **ret_port, GError **error);

/**
 * MeshUnixListener:
 *
 * A listening socket that lets unrelated processes join the mesh.
 */
typedef struct MeshUnixListener MeshUnixListener;

/**
 * MeshUnixListenerFunc:
 * @port: (transfer full): a port peered with the joining client's port
 * @user_data: the listener's data
 *
 * Called on the node's I/O context for each client that connected.
 */
typedef void (*MeshUnixListenerFunc)(MeshPort *port, gpointer user_data);

/**
 * mesh_unix_node_listen:
 * @unode: the leader's transport
 * @path: where to bind a SOCK_STREAM socket (it must not exist: replacing a
 *     stale socket file is the caller's business)
 * @func: called for each client
 * @user_data: passed to @func
 * @notify: (nullable): frees @user_data with the listener
 * @error: MESH_ERROR_ADDRESS_IN_USE if @path exists, else why not
 *
 * Each client that connects gets an invitation (one frame: data_len u32,
 * fd_count u32, the encoded invitation, its socket attached) and @func gets
 * the port at once; the server never reads a client's data nor blocks on
 * one. The client must close its stream once it read the frame: until
 * then its handshake is pending. Pending handshakes are bounded (see
 * mesh_unix_listener_set_handshake_limits()); one dropped or timed out is
 * closed and its invited node's connection cut, so the port given to @func
 * fails. Drops are logged (debug), at most once a second.
 *
 * Returns: (transfer full): the listener, or NULL.
 */
MESH_REMOTE_API MeshUnixListener *mesh_unix_node_listen(MeshUnixNode *unode, const char *path,
							MeshUnixListenerFunc func,
							gpointer user_data,
							GDestroyNotify notify, GError **error);

/**
 * mesh_unix_listener_set_allowed_uid:
 * @listener: a listener
 * @uid: the only user id whose clients are accepted (checked with
 *     SO_PEERCRED); (uid_t)-1 accepts anyone (the default)
 */
MESH_REMOTE_API void mesh_unix_listener_set_allowed_uid(MeshUnixListener *listener, uid_t uid);

/**
 * mesh_unix_listener_set_handshake_limits:
 * @listener: a listener
 * @timeout_us: how long a client may keep its stream open after its
 *     invitation was sent (-1: no limit; another negative value is a
 *     programmer error: a critical, nothing changes); default 5 s
 * @max_pending: how many handshakes may be pending at once (at least 1);
 *     default 64. A client beyond it makes the oldest pending one go.
 *
 * Also, when accept() runs out of fds, the oldest pending handshake goes,
 * or with none pending the client is closed at once. New limits apply to
 * clients that come after.
 */
MESH_REMOTE_API void mesh_unix_listener_set_handshake_limits(MeshUnixListener *listener,
							     gint64 timeout_us,
							     guint max_pending);

/**
 * mesh_unix_listener_free:
 * @listener: (nullable): a listener
 *
 * Stops accepting, closes the streams of pending handshakes (their joiners
 * keep their connections: the node outlives the listener) and removes the
 * socket file if it is still the one this listener made (same device and
 * inode: a server that took the path over keeps its socket). No callback
 * runs once this returns.
 */
MESH_REMOTE_API void mesh_unix_listener_free(MeshUnixListener *listener);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(MeshUnixListener, mesh_unix_listener_free)

/**
 * mesh_unix_node_join_by_path:
 * @path: a listener's socket path
 * @context: (nullable): as for mesh_unix_node_new()
 * @timeout_us: bound on reading the invitation and on joining (-1: none;
 *     another negative value: MESH_ERROR_INVALID_ARGUMENT)
 * @ret_port: (out) (transfer full): the joined port
 * @error: why not: MESH_ERROR_UNAVAILABLE if nothing listens on @path (yet:
 *     ENOENT, ECONNREFUSED); MESH_ERROR_PERMISSION_DENIED if the listener
 *     refused this client (a refusal frame: its uid is not allowed) or the
 *     socket file may not be connected to (EACCES); MESH_ERROR_INVALID_ARGUMENT
 *     for a path too long (or another connect error); MESH_ERROR_TIMED_OUT;
 *     MESH_ERROR_CORRUPTION when the frame breaks its bounds (4 KiB of data,
 *     4 fds; more, an fd count that does not match, or an early end of
 *     stream)
 *
 * Returns: (transfer full): the transport, or NULL.
 */
MESH_REMOTE_API MeshUnixNode *mesh_unix_node_join_by_path(const char *path,
							  GMainContext *context,
							  gint64 timeout_us, MeshPort **ret_port,
							  GError **error);

/**
 * MeshPeerDescribeFunc:
 * @peer: a node whose connection ended
 * @user_data: the describer's data
 *
 * Returns: (transfer full) (nullable): words naming @peer for error messages,
 * e.g. "host worker-1 (pid 4242) killed by signal 9".
 */
typedef char *(*MeshPeerDescribeFunc)(const MeshNodeId *peer, gpointer user_data);

/**
 * mesh_unix_node_set_peer_describer:
 * @unode: a transport
 * @func: (nullable): called on the I/O context when a connection ends
 * @user_data: passed to @func
 *
 * Lets the layer above name the culprit in the errors that ports get.
 */
MESH_REMOTE_API void mesh_unix_node_set_peer_describer(MeshUnixNode *unode,
						       MeshPeerDescribeFunc func,
						       gpointer user_data);

/**
 * mesh_unix_node_set_send_limit:
 * @unode: a node
 * @max_queued: bytes one connection may hold for a peer that does not read
 *     (raised to MESH_UNIX_MIN_SEND_LIMIT)
 * @timeout_us: how long a send waits for room; 0: it does not wait
 *
 * Bounds what a peer that stops reading (stopped, hung, hostile) can make
 * this process hold. Events that the socket does not take at once are
 * queued; while @max_queued bytes or more are queued on a connection, a send
 * on another thread than the one running the node's I/O waits until the
 * queue goes below it, up to @timeout_us; then the connection fails, its
 * peer's ports with "peer not reading: N bytes queued (limit M)". A send on
 * the thread that runs the I/O never waits: it queues up to twice
 * @max_queued, then fails the connection the same way. Small events in the
 * shared-memory ring and the pool's buffers are bounded on their own.
 * Defaults: MESH_UNIX_DEFAULT_SEND_LIMIT, MESH_UNIX_DEFAULT_SEND_TIMEOUT_US.
 * Any thread.
 */
MESH_REMOTE_API void mesh_unix_node_set_send_limit(MeshUnixNode *unode, gsize max_queued,
						   gint64 timeout_us);

/**
 * mesh_unix_node_shutdown:
 * @unode: a transport
 * @timeout_us: how long to wait for peers, -1 for no limit (another negative
 *     value is a programmer error: a critical, and FALSE at once)
 *
 * Graceful shutdown: waits (within @timeout_us) until no port is being
 * moved, out of this node or into it (a port moved in waits until the node
 * it came from no longer forwards to it), and no introduction is pending
 * (each wait ends on its event: a port leaving the node's table, a move
 * completing, an answer of the leader), then flushes every
 * connection and half-closes it (shutdown(SHUT_WR)),
 * so everything sent before reaches the peer, and waits for each peer's end
 * of stream. Connections left after the timeout are cut.
 *
 * Returns: TRUE if every peer confirmed in time: each connection open when
 * the call began completed the half-close handshake, our flush and end of
 * stream first, then the peer's end of stream (the peer read everything and
 * ended its side). FALSE after a timeout, when a connection ended otherwise
 * (reset, a failed send, a peer that ended or died before our end of
 * stream), or when a joined node's (a follower's) connection to its leader
 * was gone already. A peer killed after it read everything but before it
 * ended its side looks the same as one that ended it: only an answer from
 * the application above can confirm more.
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
G_DEFINE_AUTOPTR_CLEANUP_FUNC(MeshUnixNode, mesh_unix_node_free)

/**
 * mesh_unix_node_offer_leadership:
 * @unode: a transport
 *
 * Upstream's UnixNode::offer_leadership(): an offer to hand this node's
 * leadership to another node of the mesh. Send the port to that node (in a
 * message) and pass it to mesh_unix_node_accept_leadership() there. When
 * the acceptance arrives, this node connects every follower to the new
 * leader, then sends it every follower's channels; its own requests (new
 * invitations, introductions) go to the new leader from then on. The mesh
 * keeps working when this node goes away afterwards; until the new leader
 * has the followers, their requests wait in their channels.
 *
 * An offer from a node that does not lead (or no longer) is honoured by
 * nobody: its acceptor never leads. An acceptance from a node that is not
 * a follower of this leader is ignored (debug log), and this node keeps
 * leading. Upstream's LeadershipOffer message is {1: this port}.
 * Any thread.
 *
 * Returns: (transfer full): the offer: the sending end of a channel.
 */
MESH_REMOTE_API MeshPort *mesh_unix_node_offer_leadership(MeshUnixNode *unode);

/**
 * mesh_unix_node_accept_leadership:
 * @unode: a transport that does not lead
 * @offer: (transfer full): a port from mesh_unix_node_offer_leadership(),
 *     received from the leader
 * @error: MESH_ERROR_INVALID_ARGUMENT if @unode leads already or accepted
 *     an offer before; MESH_ERROR_CLOSED after its shutdown began
 *
 * Consumes @offer, also on failure. Upstream's
 * UnixNode::accept_leadership(): sends this node's acceptance on @offer
 * and returns at once; the node leads once the followers arrive
 * (mesh_unix_node_is_leader() then says so). Any thread.
 *
 * Returns: TRUE if the acceptance was sent.
 */
MESH_REMOTE_API gboolean mesh_unix_node_accept_leadership(MeshUnixNode *unode, MeshPort *offer,
							  GError **error);

/**
 * mesh_unix_node_is_leader:
 * @unode: a transport
 *
 * Any thread.
 *
 * Returns: TRUE if @unode leads now: made by mesh_unix_node_new() and
 * not resigned, or it accepted a leadership and received its followers.
 */
MESH_REMOTE_API gboolean mesh_unix_node_is_leader(MeshUnixNode *unode);

G_END_DECLS
