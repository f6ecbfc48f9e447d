/* SPDX-License-Identifier: MIT */
/**
 * The ALPC node (Windows only): a node whose events travel over Windows
 * ALPC, after upstream's mesh_remote::alpc_node. Each node has one waitable
 * server port, named by its node id, in an object directory that only the
 * mesh holds a handle to; a node sends to another over one client
 * connection to that node's server port, presenting {its node id, the
 * mesh's 256-bit secret}, which the server checks in constant time. OS
 * handles travel in the ALPC handle attribute; events over 4 KiB travel in
 * secure section views. A closed port fails the ports that depend on the
 * node at its other end.
 *
 * Status: see doc/windows.md, "The ALPC node". Its logic is tested under
 * Wine against a test stand-in of the NtAlpc calls; it has not run against
 * real ALPC.
 */
#pragma once

#include <meshremote/meshremote.h>

#ifdef G_OS_WIN32

G_BEGIN_DECLS

/** MeshAlpcNode: an ALPC node; owned by its creator, one thread at a time. */
typedef struct MeshAlpcNode MeshAlpcNode;

/** MESH_ALPC_SECRET_SIZE: the size of a mesh secret, in bytes (256 bits). */
#define MESH_ALPC_SECRET_SIZE 32

/**
 * mesh_alpc_node_new:
 * @error: where a failure goes (MESH_ERROR_UNAVAILABLE: no ALPC in ntdll,
 *     or a call failed; the message names the call and its NTSTATUS)
 *
 * Makes a node in a new mesh: a new anonymous object directory, a new
 * secret from the OS random source, a new node id. Its threads (a receive
 * thread and a connect thread) run until mesh_alpc_node_shutdown().
 *
 * Returns: (transfer full) (nullable): the node, or NULL with @error set.
 */
MESH_REMOTE_API MeshAlpcNode *mesh_alpc_node_new(GError **error);

/**
 * mesh_alpc_node_join:
 * @directory: (transfer full): the mesh's directory handle (inherited or
 *     duplicated from an inviter). Consumes @directory, also on failure.
 * @id: the new node's id, as the inviter chose it
 * @secret: the mesh secret (MESH_ALPC_SECRET_SIZE bytes; copied)
 * @error: as for mesh_alpc_node_new()
 *
 * Makes a node in an existing mesh. The inviter bootstraps ports to it
 * with mesh_node_add_port() on both sides.
 *
 * Returns: (transfer full) (nullable): the node, or NULL with @error set.
 */
MESH_REMOTE_API MeshAlpcNode *mesh_alpc_node_join(MeshOsHandle directory, const MeshNodeId *id,
						  const guint8 *secret, GError **error);

/**
 * mesh_alpc_node_invite:
 * @alpc: a node
 * @id: the id of a node that will join the mesh (mesh_alpc_node_join(),
 *     in a process @alpc's owner starts) and connect to @alpc
 *
 * Until the node @id has connected to @alpc, @alpc does not connect to it:
 * its server port may not exist yet, and a connection to a missing port
 * fails the node. Events for it queue meanwhile. So an inviter can
 * bootstrap its ports to the new node (mesh_node_add_port()) and send on
 * them before the new node exists, as upstream's AlpcNode::invite allows;
 * the new node connects as soon as it makes its side of the bootstrap
 * port. mesh_alpc_node_cancel_invite() ends the wait if it never comes.
 * Any thread; no effect after shutdown or for an id invited already.
 */
MESH_REMOTE_API void mesh_alpc_node_invite(MeshAlpcNode *alpc, const MeshNodeId *id);

/**
 * mesh_alpc_node_cancel_invite:
 * @alpc: a node
 * @id: an invited node's id
 * @reason: why (the failure of the ports that wait for it, e.g. "the
 *     host exited before it joined")
 *
 * Ends an invitation the node @id never took: the connection that waited
 * for it fails @id with @reason. No effect once @id has connected (its
 * port closing fails it then) or for an id not invited. Any thread.
 */
MESH_REMOTE_API void mesh_alpc_node_cancel_invite(MeshAlpcNode *alpc, const MeshNodeId *id,
						  const char *reason);

/** mesh_alpc_node_get_node: Returns: (transfer none): the node's MeshNode. Any thread. */
MESH_REMOTE_API MeshNode *mesh_alpc_node_get_node(MeshAlpcNode *alpc);

/**
 * mesh_alpc_node_get_directory:
 * @alpc: a node
 *
 * Returns: (transfer none): the mesh's directory handle, for an invitation
 * (duplicate it; the node keeps its own until freed).
 */
MESH_REMOTE_API MeshOsHandle mesh_alpc_node_get_directory(MeshAlpcNode *alpc);

/**
 * mesh_alpc_node_get_secret:
 * @alpc: a node
 * @secret: (out caller-allocates): MESH_ALPC_SECRET_SIZE bytes
 *
 * Copies the mesh secret, for an invitation.
 */
MESH_REMOTE_API void mesh_alpc_node_get_secret(MeshAlpcNode *alpc, guint8 *secret);

/**
 * mesh_alpc_node_shutdown:
 * @alpc: a node
 * @timeout_us: how long to wait for moves in flight and for the flush,
 *     -1 without limit
 *
 * Graceful shutdown: waits for moves in flight (mesh_node_wait_idle()),
 * then flushes every outgoing connection (a request each; the other node
 * replies once it has received everything sent before it), then closes
 * the ports and stops the threads. Ports on other nodes then fail, naming
 * this node. The node's server port closes here (or, if a received large
 * message is still held, when the last one is freed): a node connecting
 * to it from then on is refused and fails this node. A connect of this node
 * still in progress (waiting for the other node's answer, at most 30 s)
 * is waited for. Not from the node's own threads. Idempotent.
 *
 * Returns: FALSE if the timeout cut the wait or a flush short.
 */
MESH_REMOTE_API gboolean mesh_alpc_node_shutdown(MeshAlpcNode *alpc, gint64 timeout_us);

/**
 * mesh_alpc_node_free:
 * @alpc: (nullable): a node
 *
 * Shuts down without waiting (if mesh_alpc_node_shutdown() did not run)
 * and frees @alpc and its directory handle. Received events whose memory
 * the node still holds stay valid until released.
 */
MESH_REMOTE_API void mesh_alpc_node_free(MeshAlpcNode *alpc);

G_END_DECLS

#endif /* G_OS_WIN32 */
