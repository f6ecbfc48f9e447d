/* SPDX-License-Identifier: MIT */
/**
 * Nodes, ids and errors.
 *
 * A MeshNode is this process's membership in a mesh: it owns the table of
 * ports other nodes can address and one MeshRemoteNode per node it talks to.
 * Transports (the Unix node, the point-to-point link, or one of your own)
 * carry its encoded events: see <meshremote/mesh-transport.h>.
 */
#pragma once

#if !defined(__MESHREMOTE_H_INSIDE__) && !defined(MESHREMOTE_COMPILATION)
#error "Only <meshremote/meshremote.h> can be included directly."
#endif

#include <glib.h>
#include <stdint.h>
#ifdef _WIN32
#ifndef MESH_HAVE_STRUCT_IOVEC
/**
 * MESH_HAVE_STRUCT_IOVEC:
 *
 * Windows has no <sys/uio.h>: there this header defines struct iovec, the
 * transport interface's scatter list, with POSIX's layout. A program that
 * defines its own struct iovec defines MESH_HAVE_STRUCT_IOVEC before it
 * includes <meshremote/meshremote.h>.
 */
#define MESH_HAVE_STRUCT_IOVEC 1
struct iovec {
	void *iov_base;
	size_t iov_len;
};
#endif
#else
#include <sys/uio.h>
#endif

G_BEGIN_DECLS

/**
 * MESH_REMOTE_API:
 *
 * Marks an exported libmeshremote symbol; everything else is hidden. On
 * Windows it is `__declspec(dllexport)` while the DLL is built (and in the
 * white-box tests, which link the library's objects) and
 * `__declspec(dllimport)` for its users.
 */
#if defined(_WIN32) || defined(__CYGWIN__)
#ifdef MESHREMOTE_COMPILATION
#define MESH_REMOTE_API __declspec(dllexport)
#else
#define MESH_REMOTE_API __declspec(dllimport)
#endif
#else
#define MESH_REMOTE_API __attribute__((visibility("default")))
#endif

/**
 * MeshUuid:
 * @bytes: 16 bytes from the OS random source
 *
 * Node and port ids. Ports are capabilities: an id is unguessable.
 */
typedef struct {
	uint8_t bytes[16];
} MeshUuid;

/** MeshNodeId: a node's id. */
typedef MeshUuid MeshNodeId;
/** MeshPortId: a port's id. */
typedef MeshUuid MeshPortId;

/** mesh_uuid_generate: fills @ret from the OS random source (getrandom(2); Windows: BCryptGenRandom()). */
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
 * mesh_uuid_hash:
 * @key: a MeshUuid
 *
 * For GHashTable keyed by ids: g_hash_table_new(mesh_uuid_hash, mesh_uuid_equal).
 */
MESH_REMOTE_API guint mesh_uuid_hash(gconstpointer key);

/** mesh_uuid_equal: Returns: whether the MeshUuids @a and @b are the same id. */
MESH_REMOTE_API gboolean mesh_uuid_equal(gconstpointer a, gconstpointer b);

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
 * @MESH_ERROR_CANCELLED: an asynchronous call was cancelled
 *     (mesh_rpc_call_cancel()) before its callback ran
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
	MESH_ERROR_CANCELLED,
} MeshError;

/** MESH_ERROR: the error domain of libmeshremote and of channel calls; codes: MeshError. */
#define MESH_ERROR (mesh_error_quark())
/** mesh_error_quark: Returns: the MESH_ERROR domain. */
MESH_REMOTE_API GQuark mesh_error_quark(void);

/** MeshNode: a node: the ports of one process and the remote nodes it knows. Refcounted. */
typedef struct MeshNode MeshNode;
/** MeshRemoteNode: a node's handle on another node, reached through a transport. Refcounted. */
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

/** mesh_node_ref: Returns: (transfer full): @node, with one more reference. */
MESH_REMOTE_API MeshNode *mesh_node_ref(MeshNode *node);

/**
 * mesh_node_unref:
 * @node: (nullable) (transfer full): a node
 *
 * When the last reference goes, every port still associated with the node
 * and every remote node fail with MESH_ERROR_SHUTTING_DOWN.
 */
MESH_REMOTE_API void mesh_node_unref(MeshNode *node);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(MeshNode, mesh_node_unref)

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

G_END_DECLS
