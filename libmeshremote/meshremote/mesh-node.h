/* SPDX-License-Identifier: MIT */
/**
 * Nodes, ids, errors, and the interface a transport implements.
 *
 * A MeshNode is this process's membership in a mesh: it owns the table of
 * ports other nodes can address and one MeshRemoteNode per node it talks to.
 * A transport (the Unix node, or an in-memory one in tests) only carries
 * encoded events: the node hands it bytes and fds through a MeshEventSink,
 * and the transport feeds what arrives to mesh_node_receive_event().
 */
#pragma once

#if !defined(__MESHREMOTE_H_INSIDE__) && !defined(MESHREMOTE_COMPILATION)
#error "Only <meshremote/meshremote.h> can be included directly."
#endif

#include <glib.h>
#include <stdint.h>
#include <sys/uio.h>

G_BEGIN_DECLS

#define MESH_REMOTE_API __attribute__((visibility("default")))

/**
 * MeshUuid:
 * @bytes: 16 bytes from the OS random source
 *
 * Node and port ids. Ports are capabilities: an id is unguessable.
 */
typedef struct {
	uint8_t bytes[16];
} MeshUuid;

typedef MeshUuid MeshNodeId;
typedef MeshUuid MeshPortId;

/** mesh_uuid_generate: fills @ret from getrandom(2). */
MESH_REMOTE_API void mesh_uuid_generate(MeshUuid *ret);

/** mesh_uuid_is_zero: Returns: whether all 16 bytes are zero. */
MESH_REMOTE_API gboolean mesh_uuid_is_zero(const MeshUuid *id);

/**
 * mesh_uuid_to_string:
 * @id: an id
 * @buf: (out caller-allocates): 33 bytes
 *
 * Lowercase hex of the 16 bytes read as a big-endian number, leading zeros
 * dropped (upstream's display form).
 *
 * Returns: (transfer none): @buf.
 */
MESH_REMOTE_API const char *mesh_uuid_to_string(const MeshUuid *id, char buf[33]);

/**
 * MeshError:
 * @MESH_ERROR_CLOSED: the other end closed (no more messages)
 * @MESH_ERROR_NODE_FAILURE: a node on the path failed, or a node on the path
 *     (still up) failed the port, for example for a message over a node's
 *     limits ("node X failed the peer port (...)"); the message names it
 * @MESH_ERROR_CORRUPTION: a message could not be decoded, or broke the protocol
 * @MESH_ERROR_EMPTY: nothing to receive yet (try_recv)
 * @MESH_ERROR_TIMED_OUT: a blocking receive timed out
 * @MESH_ERROR_REMOTE: a failable RPC's server returned an error
 * @MESH_ERROR_SHUTTING_DOWN: the local node is shutting down
 * @MESH_ERROR_INVALID_ARGUMENT: a bad argument (e.g. not a SOCK_SEQPACKET socket)
 * @MESH_ERROR_DUPLICATE: the node is already connected
 * @MESH_ERROR_ADDRESS_IN_USE: a listener's socket path is taken (a server
 *     listens there, or another file is in the way)
 * @MESH_ERROR_UNAVAILABLE: nothing listens on a socket path (yet): no such
 *     file, or nobody accepts behind it (ECONNREFUSED); worth retrying
 * @MESH_ERROR_PERMISSION_DENIED: the listener refused this client (its uid
 *     is not allowed, or it may not connect to the socket file)
 * @MESH_ERROR_MESSAGE_TOO_LARGE: a message over a node's limits (256 MiB of
 *     data with its framing, 4096 resources) was not sent to another node:
 *     the port that sent it fails with this (the message says which limit),
 *     and so do the ports it carried
 *
 * Error codes of domain MESH_ERROR. This enum may be extended.
 */
typedef enum {
	MESH_ERROR_CLOSED,
	MESH_ERROR_NODE_FAILURE,
	MESH_ERROR_CORRUPTION,
	MESH_ERROR_EMPTY,
	MESH_ERROR_TIMED_OUT,
	MESH_ERROR_REMOTE,
	MESH_ERROR_SHUTTING_DOWN,
	MESH_ERROR_INVALID_ARGUMENT,
	MESH_ERROR_DUPLICATE,
	MESH_ERROR_ADDRESS_IN_USE,
	MESH_ERROR_UNAVAILABLE,
	MESH_ERROR_PERMISSION_DENIED,
	MESH_ERROR_MESSAGE_TOO_LARGE,
} MeshError;

#define MESH_ERROR (mesh_error_quark())
MESH_REMOTE_API GQuark mesh_error_quark(void);

typedef struct MeshNode MeshNode;
typedef struct MeshRemoteNode MeshRemoteNode;
typedef struct MeshPort MeshPort;

/**
 * mesh_node_new:
 *
 * Returns: (transfer full): a node with a fresh random id.
 */
MESH_REMOTE_API MeshNode *mesh_node_new(void);

/**
 * mesh_node_new_with_id:
 * @id: the id another node assigned to this one (an invitation's)
 *
 * Returns: (transfer full): a node with the given id.
 */
MESH_REMOTE_API MeshNode *mesh_node_new_with_id(const MeshNodeId *id);

MESH_REMOTE_API MeshNode *mesh_node_ref(MeshNode *node);

/**
 * mesh_node_unref:
 * @node: (nullable) (transfer full): a node
 *
 * When the last reference goes, every port still associated with the node
 * and every remote node fail with MESH_ERROR_SHUTTING_DOWN.
 */
MESH_REMOTE_API void mesh_node_unref(MeshNode *node);

/** mesh_node_get_id: Returns: (transfer none): the node's id. */
MESH_REMOTE_API const MeshNodeId *mesh_node_get_id(MeshNode *node);

/**
 * mesh_node_count_ports:
 * @node: a node
 *
 * Returns: the number of ports in the node's table (addressable from other
 * nodes). Zero once every cross-node port is closed and every move done.
 */
MESH_REMOTE_API guint mesh_node_count_ports(MeshNode *node);

/**
 * mesh_node_count_remotes:
 * @node: a node
 *
 * A node keeps a remote node while something refers to it: a port whose
 * peer or move target is on it, an event on its way, a transport's handle
 * (a connection), a connection being arranged. A remote node nothing refers
 * to any more is forgotten, failed or not (the ids of the last 1024 failed
 * ones are remembered, so that a port naming one still arrives failed).
 * Any thread.
 *
 * Returns: the number of remote nodes in the node's table.
 */
MESH_REMOTE_API guint mesh_node_count_remotes(MeshNode *node);

/**
 * MeshEventSink:
 * @version: 0
 * @send: transmits one event: the concatenation of the @n_iov buffers of
 *     @iov (at most 4) and @n_fds fds (all borrowed: the transport copies
 *     or duplicates what it keeps). Called from any thread, never with a
 *     library lock held; must not block.
 * @destroy: (nullable): releases @user_data when the remote node is done
 *
 * What a transport gives a node for each connection.
 */
typedef struct {
	unsigned version;
	void (*send)(void *user_data, const struct iovec *iov, size_t n_iov, const int *fds,
		     size_t n_fds);
	void (*destroy)(void *user_data);
} MeshEventSink;

/**
 * MeshConnectorFunc:
 * @node: the local node
 * @remote: (transfer full): a handle for the node that must be reached
 * @user_data: the connector's data
 *
 * Called (without locks held) when a port refers to a node this node has no
 * connection to. The connector arranges a connection and calls
 * mesh_remote_node_connect(), or fails the handle. Events for the node are
 * queued meanwhile.
 */
typedef void (*MeshConnectorFunc)(MeshNode *node, MeshRemoteNode *remote, void *user_data);

/** mesh_node_set_connector: installs the connector (NULL removes it). */
MESH_REMOTE_API void mesh_node_set_connector(MeshNode *node, MeshConnectorFunc func,
					     void *user_data);

/**
 * mesh_node_add_remote:
 * @node: a node
 * @id: the remote node's id
 *
 * Returns: (transfer full): a handle; events to the node are queued until
 * mesh_remote_node_connect(). Dropping the last handle disconnects the node
 * (it fails); the node forgets it once nothing else refers to it either.
 * For the id of a node that failed and was forgotten recently (see
 * mesh_node_count_remotes()), the handle is of a failed node:
 * mesh_remote_node_connect() returns FALSE.
 */
MESH_REMOTE_API MeshRemoteNode *mesh_node_add_remote(MeshNode *node, const MeshNodeId *id);

/**
 * mesh_remote_node_connect:
 * @remote: a handle
 * @sink: how to send events to it (copied; its send must be set)
 * @user_data: passed to @sink
 *
 * Flushes queued events in order.
 *
 * Returns: FALSE if the node was already connected or failed, or on a bad
 * argument (then @sink's destroy, if any, is called at once).
 */
MESH_REMOTE_API gboolean mesh_remote_node_connect(MeshRemoteNode *remote, const MeshEventSink *sink,
						  void *user_data);

/**
 * mesh_remote_node_fail:
 * @remote: a handle
 * @reason: why, e.g. "connection lost"
 *
 * Fails the node: every port whose peer or move target is on it fails with
 * MESH_ERROR_NODE_FAILURE naming the node and @reason.
 */
MESH_REMOTE_API void mesh_remote_node_fail(MeshRemoteNode *remote, const char *reason);

MESH_REMOTE_API MeshRemoteNode *mesh_remote_node_ref(MeshRemoteNode *remote);

/** mesh_remote_node_unref: dropping the last handle fails the node ("remote node dropped"). */
MESH_REMOTE_API void mesh_remote_node_unref(MeshRemoteNode *remote);

/** mesh_remote_node_get_id: Returns: (transfer none): the remote node's id. */
MESH_REMOTE_API const MeshNodeId *mesh_remote_node_get_id(MeshRemoteNode *remote);

/**
 * mesh_node_add_port:
 * @node: a node
 * @id: the new port's id
 * @peer_node: the node of its peer (not @node)
 * @peer_port: the peer's id there
 *
 * Creates a port already peered with a port on another node: how two nodes
 * bootstrap their first channel (invitations). If @peer_node has failed, the
 * port is created failed.
 *
 * Returns: (transfer full): the port, or NULL if @id is taken in @node.
 */
MESH_REMOTE_API MeshPort *mesh_node_add_port(MeshNode *node, const MeshPortId *id,
					     const MeshNodeId *peer_node,
					     const MeshPortId *peer_port);

/**
 * mesh_node_receive_event:
 * @node: a node
 * @from: the node the event came from
 * @data: the event's bytes (NULL only with @size 0)
 * @size: their number
 * @fds: (transfer full): the fds that came with it; every one is consumed,
 *     also on a bad argument (NULL only with @n_fds 0)
 * @n_fds: their number
 *
 * Feeds one event from a transport. A malformed event is logged and dropped
 * (its fds closed); it never fails the connection or the process.
 */
MESH_REMOTE_API void mesh_node_receive_event(MeshNode *node, const MeshNodeId *from,
					     const uint8_t *data, size_t size, int *fds,
					     size_t n_fds);

/**
 * mesh_node_receive_event_full:
 * @data_free: (nullable): when set, the node takes @data's memory over
 *     instead of copying the payload out of it: it keeps pointing into it
 *     (read-only) and calls @data_free(@data_owner) once, when done with it
 *     (at once if it keeps nothing, or on a bad argument). The transport
 *     must not release it.
 * @data_owner: passed to @data_free
 *
 * mesh_node_receive_event() for transports that received the event in
 * memory they can hand over (a large event's mapping).
 */
MESH_REMOTE_API void mesh_node_receive_event_full(MeshNode *node, const MeshNodeId *from,
						  const uint8_t *data, size_t size, int *fds,
						  size_t n_fds, GDestroyNotify data_free,
						  gpointer data_owner);

G_END_DECLS
