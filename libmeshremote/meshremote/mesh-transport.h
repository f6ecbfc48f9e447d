/* SPDX-License-Identifier: MIT */
/**
 * The transport interface: what a transport implements and calls to carry a
 * node's events to other nodes. The Unix node (<meshremote/mesh-unix-node.h>)
 * and the point-to-point link (<meshremote/mesh-p2p.h>) are built on this
 * header alone; a transport of your own gets the same behaviour.
 *
 * A transport's life with a node:
 *
 * 1. Per connection, it makes a handle for the node at the other end
 *    (mesh_node_add_remote()) and, once it can send, connects it with a
 *    MeshEventSink (mesh_remote_node_connect()). Events for a node that is
 *    not connected yet are queued by the node meanwhile.
 * 2. It feeds every event it receives to mesh_node_receive_event().
 * 3. When the connection ends, it fails the handle (mesh_remote_node_fail():
 *    every port that depends on that node fails, naming it) and drops it.
 * 4. Optionally: a connector (mesh_node_set_connector()) arranges
 *    connections to nodes that ports refer to; an I/O hook
 *    (mesh_node_set_io_hook()) lets a thread blocked in a receive run the
 *    transport's I/O itself; mesh_node_wait_idle() waits for moves in
 *    flight before a graceful shutdown.
 *
 * OS resources (fds on Unix) travel as MeshOsHandle, so that a transport on
 * another OS carries its own kind the same way. A transport states what it
 * can carry (MeshTransportCaps); a message it cannot carry fails its port at
 * the sender with a clear error instead of going out incomplete.
 *
 * Versioning: MeshEventSink, MeshTransportCaps and MeshIoHookFuncs start
 * with a version; fields are only ever added at the end, under a new
 * version, and the node reads only the fields of the version it is given.
 */
#pragma once

#if !defined(__MESHREMOTE_H_INSIDE__) && !defined(MESHREMOTE_COMPILATION)
#error "Only <meshremote/meshremote.h> can be included directly."
#endif

#include <glib.h>
#include <stdint.h>

#include <meshremote/mesh-node.h> /* struct iovec */

G_BEGIN_DECLS

/**
 * MeshOsHandle:
 *
 * An OS resource a message carries: a file descriptor on Unix, a HANDLE on
 * Windows. MESH_OS_HANDLE_INVALID is none.
 */
#ifdef G_OS_WIN32
typedef void *MeshOsHandle;
/** MESH_OS_HANDLE_INVALID: no handle. */
#define MESH_OS_HANDLE_INVALID NULL
#else
typedef int MeshOsHandle;
#define MESH_OS_HANDLE_INVALID (-1)
#endif

/**
 * MESH_EVENT_MAX_SIZE:
 *
 * The largest event a node sends or accepts: a 40-byte header, 4096
 * resource records of 96 bytes and 256 MiB of message. A transport may
 * reject anything larger from a peer without looking further.
 */
#define MESH_EVENT_MAX_SIZE (40u + 4096u * 96u + (256u << 20))

/**
 * mesh_event_get_size:
 * @data: the start of an event (at least its 40-byte header)
 * @size: bytes available at @data
 *
 * For transports that receive events in larger buffers (page-rounded shared
 * memory, say): the exact size of the event at @data as its header gives it.
 * Nothing else is checked; mesh_node_receive_event() checks the rest.
 *
 * Returns: the size, or 0 if @size is shorter than a header or the header's
 * counts are over the bounds of MESH_EVENT_MAX_SIZE.
 */
MESH_REMOTE_API gsize mesh_event_get_size(const guint8 *data, gsize size);

/**
 * MeshTransportCaps:
 * @version: 0
 * @max_handles: (nullable): the most OS handles the transport carries with
 *     one event of @event_size bytes; NULL: it carries none. A pure function
 *     (any thread, no locks).
 * @max_event_size: the largest event the transport carries, 0 for
 *     MESH_EVENT_MAX_SIZE
 *
 * What a transport can carry. A message over these fails, at the sender,
 * the port that sent it and the ports it carried, with
 * MESH_ERROR_MESSAGE_TOO_LARGE (too many handles, too large) or
 * MESH_ERROR_INVALID_ARGUMENT (handles toward a transport that carries
 * none); the message says which. Static storage: the node keeps the pointer.
 */
typedef struct {
	unsigned version;
	gsize (*max_handles)(gsize event_size);
	gsize max_event_size;
} MeshTransportCaps;

/**
 * MeshEventSink:
 * @version: 0, 1 or 2 (MESH_EVENT_SINK_VERSION); a version 0 sink has no
 *     @caps (it carries any number of handles), a version 1 sink no
 *     @try_send
 * @send: transmits one event: the concatenation of the @n_iov buffers of
 *     @iov (at most 4) and @n_handles OS handles (all borrowed: the
 *     transport copies or duplicates what it keeps). Called from any thread,
 *     never with a library lock held; must not block (queue instead, within
 *     bounds the transport documents).
 * @destroy: (nullable): releases @user_data when the remote node is done
 *     (failed or dropped) and no send() runs any more
 * @caps: (nullable): what the connection carries (version 1); NULL as for
 *     version 0
 * @try_send: (nullable): as @send, but a handle that is not open is
 *     reported instead of sent (version 2): returns -EBADF having sent
 *     nothing and kept nothing, 0 otherwise (sent, queued, or the
 *     connection ends as after @send). When it is there the node calls it
 *     instead of @send, and leaves out its own check of the handles lent by
 *     mesh_message_add_fd_borrowed() (a system call per handle per send):
 *     an fd closed meanwhile fails the sending port with
 *     MESH_ERROR_INVALID_ARGUMENT, as it does for a sink without it.
 *
 * What a transport gives a node for each connection.
 */
typedef struct {
	unsigned version;
	void (*send)(void *user_data, const struct iovec *iov, size_t n_iov,
		     const MeshOsHandle *handles, size_t n_handles);
	void (*destroy)(void *user_data);
	/* version 1: */
	const MeshTransportCaps *caps;
	/* version 2: */
	int (*try_send)(void *user_data, const struct iovec *iov, size_t n_iov,
			const MeshOsHandle *handles, size_t n_handles);
} MeshEventSink;

/** MESH_EVENT_SINK_VERSION: the MeshEventSink version this header describes. */
#define MESH_EVENT_SINK_VERSION 2

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

/**
 * mesh_node_set_connector:
 * @node: a node
 * @func: (nullable): the connector; NULL removes it (a port that refers to
 *     an unknown node then fails)
 * @user_data: passed to @func
 *
 * Installs the connector. Any thread.
 */
MESH_REMOTE_API void mesh_node_set_connector(MeshNode *node, MeshConnectorFunc func,
					     void *user_data);

/**
 * mesh_node_set_connector_caps:
 * @node: a node
 * @caps: (nullable): what the connections the connector arranges will
 *     carry (static storage); NULL: no limit until a sink says otherwise
 *
 * Messages queued for a node that is not connected yet are checked against
 * @caps when they are sent (a message that a connection could not carry
 * fails its port at once, as for a connected node). Any thread.
 */
MESH_REMOTE_API void mesh_node_set_connector_caps(MeshNode *node, const MeshTransportCaps *caps);

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
 * @sink: how to send events to it (copied, as far as its version goes; its
 *     send must be set)
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
 * MeshRemoteFeatures:
 * @MESH_REMOTE_FEATURE_PROXY_DONE: the node reads the C extension event
 *     PROXY_DONE (0x40) and CHANGE_PEER's FORWARDS flag, so a port moved to
 *     it fails with its mover if the mover dies mid-move (doc/libmeshremote.md)
 *
 * What a remote node understands beyond upstream's protocol, as its
 * transport negotiated it. None by default: an upstream node.
 */
typedef enum {
	MESH_REMOTE_FEATURE_PROXY_DONE = 1 << 0,
} MeshRemoteFeatures;

/**
 * mesh_remote_node_set_features:
 * @remote: a handle
 * @features: what the node understands
 *
 * Set by the transport once it knows (a hello), before or after connecting;
 * events sent from then on use them. Any thread.
 */
MESH_REMOTE_API void mesh_remote_node_set_features(MeshRemoteNode *remote,
						   MeshRemoteFeatures features);

/**
 * mesh_remote_node_fail:
 * @remote: a handle
 * @reason: why, e.g. "connection lost"
 *
 * Fails the node: every port whose peer or move target is on it fails with
 * MESH_ERROR_NODE_FAILURE naming the node and @reason.
 */
MESH_REMOTE_API void mesh_remote_node_fail(MeshRemoteNode *remote, const char *reason);

/** mesh_remote_node_ref: Returns: (transfer full): another handle on @remote. */
MESH_REMOTE_API MeshRemoteNode *mesh_remote_node_ref(MeshRemoteNode *remote);

/** mesh_remote_node_unref: dropping the last handle fails the node ("remote node dropped"). */
MESH_REMOTE_API void mesh_remote_node_unref(MeshRemoteNode *remote);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(MeshRemoteNode, mesh_remote_node_unref)

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
 * bootstrap their first channel (invitations, a link's hello). If
 * @peer_node has failed, the port is created failed.
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
 * @handles: (transfer full): the OS handles that came with it; every one is
 *     consumed, also on a bad argument (NULL only with @n_handles 0)
 * @n_handles: their number
 *
 * Consumes @handles, also on failure. (Every handle in it; the array itself
 * stays the caller's.) Feeds one event from a transport. A malformed event
 * is logged (debug, rate-limited) and dropped (its handles closed); it never fails the
 * connection or the process.
 */
MESH_REMOTE_API void mesh_node_receive_event(MeshNode *node, const MeshNodeId *from,
					     const uint8_t *data, size_t size,
					     MeshOsHandle *handles, size_t n_handles);

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
 * memory they can hand over (a large event's mapping). Consumes @handles,
 * also on failure, as mesh_node_receive_event() does.
 */
MESH_REMOTE_API void mesh_node_receive_event_full(MeshNode *node, const MeshNodeId *from,
						  const uint8_t *data, size_t size,
						  MeshOsHandle *handles, size_t n_handles,
						  GDestroyNotify data_free, gpointer data_owner);

/**
 * MeshEventData:
 * @data: an event's bytes (NULL only with @size 0)
 * @size: their number
 * @handles: (transfer full) (nullable): the OS handles that came with it
 * @n_handles: their number
 *
 * One event of a batch for mesh_node_receive_events(). The array of handles
 * stays the caller's; every handle in it is consumed.
 */
typedef struct {
	const uint8_t *data;
	size_t size;
	MeshOsHandle *handles;
	size_t n_handles;
} MeshEventData;

/**
 * mesh_node_receive_events:
 * @node: a node
 * @from: the node the events came from
 * @events: the events, in the order they arrived
 * @n_events: their number
 *
 * mesh_node_receive_event() for each of @events in turn, for transports
 * that receive several at once (a packet of batched events, a drain of
 * shared memory): the same checks, the same effects in the same order.
 * Consecutive messages to one port without handles or ports in them are
 * handed to it together (one look-up of the port, one lock, the wake-ups
 * and callbacks they cause after the last), which is what a stream of
 * small messages costs the receiver. As for mesh_node_receive_event(),
 * the bytes must be memory the peer cannot change meanwhile (copied out of
 * shared memory first): they are checked, then read again. The node keeps
 * no pointer into them; the caller may reuse them on return. Consumes
 * every handle, also on failure.
 */
MESH_REMOTE_API void mesh_node_receive_events(MeshNode *node, const MeshNodeId *from,
					      const MeshEventData *events, size_t n_events);

/**
 * mesh_node_wait_idle:
 * @node: a node
 * @timeout_us: -1 without limit, 0 to only look, else microseconds
 *
 * For a graceful shutdown: waits until no port of @node is on its way to
 * another node (no move in flight: everything a moved port sent is handed
 * over), no port moved into @node still depends on the node it came from
 * (its move's PROXY_DONE, between nodes that have the
 * MESH_REMOTE_FEATURE_PROXY_DONE feature, has not arrived: until it does,
 * that node still forwards to this one, and would fail the port's peer if
 * this node left), and at most @max_ports ports remain in its table. The
 * wait ends when a port leaves the table or a move into it completes, not
 * on a timer. On a caller's context, run
 * it where the transport's I/O runs (see MeshIoHook), or from another
 * thread.
 *
 * Returns: TRUE when that holds, FALSE at the timeout.
 */
MESH_REMOTE_API gboolean mesh_node_wait_idle(MeshNode *node, guint max_ports, gint64 timeout_us);

/**
 * MeshIoHook:
 *
 * How a thread that blocks in a receive (mpsc, oneshot, rpc) runs a
 * transport's I/O itself: to get its message without a hop through an I/O
 * thread, or, on a caller's GMainContext, to make progress at all when the
 * wait happens where nobody else runs the context. Reference-counted; any
 * thread.
 */
typedef struct MeshIoHook MeshIoHook;

/**
 * MeshIoHookFuncs:
 * @version: 0
 * @run_once: polls and dispatches the transport's I/O once on the calling
 *     thread: returns after something was handled, a wakeup, or @deadline
 *     (monotonic microseconds, -1 none), setting *@ret_expired when it
 *     returned at @deadline. Returns FALSE at once, having done nothing, if
 *     this thread cannot do that now (another thread polls); the caller then
 *     waits as usual, and the transport makes sure some thread polls
 *     meanwhile. Called with no library lock held.
 * @wakeup: makes a run_once() in progress return, or the next one return
 *     at once. Any thread, possibly with library locks held: must not block
 *     or call into the library.
 * @foreign_delivery: (nullable): called on a thread inside this hook's
 *     run_once() when what it dispatched woke a receiver on another thread
 *     (others consume the traffic too: a transport that lends its I/O to
 *     blocked receivers may want it back). Library locks may be held: only
 *     record it.
 * @destroy: (nullable): releases @user_data with the last reference
 */
typedef struct {
	unsigned version;
	gboolean (*run_once)(void *user_data, gint64 deadline, gboolean *ret_expired);
	void (*wakeup)(void *user_data);
	void (*foreign_delivery)(void *user_data);
	GDestroyNotify destroy;
} MeshIoHookFuncs;

/**
 * mesh_io_hook_new:
 * @funcs: the hook's functions (copied)
 * @user_data: passed to them
 *
 * Returns: (transfer full): a hook.
 */
MESH_REMOTE_API MeshIoHook *mesh_io_hook_new(const MeshIoHookFuncs *funcs, void *user_data);

/**
 * mesh_io_hook_new_for_context:
 * @context: the caller's context a transport does its I/O on
 *
 * The hook of a transport whose I/O runs on a context the caller runs. Make
 * it on the thread that makes the transport. Its run_once iterates
 * @context once when this thread may (mesh_io_hook_acquire_context()); a
 * receive on a port no node's table holds yet finds it too, by the thread
 * that waits. Call mesh_io_hook_detach() when the transport goes.
 *
 * Returns: (transfer full): a hook.
 */
MESH_REMOTE_API MeshIoHook *mesh_io_hook_new_for_context(GMainContext *context);

/**
 * mesh_io_hook_acquire_context:
 * @hook: a mesh_io_hook_new_for_context() hook
 *
 * Acquires the hook's context if this thread may iterate it for a blocking
 * wait: it runs it already (a wait inside one of its dispatches), or nobody
 * runs it and it is this thread's (the thread that made the hook, the one
 * that pushed the context as its thread default, or the main thread for the
 * global default context). Release it with g_main_context_release().
 *
 * Returns: TRUE if acquired; FALSE: the thread that runs it does the I/O.
 */
MESH_REMOTE_API gboolean mesh_io_hook_acquire_context(MeshIoHook *hook);

/**
 * mesh_main_context_iterate_until:
 * @context: a context the caller acquired
 * @deadline: monotonic microseconds, -1 none
 *
 * One blocking iteration of @context: returns after something was
 * dispatched, a wakeup, or @deadline. Fine inside a dispatch of @context.
 *
 * Returns: TRUE if it ended at @deadline.
 */
MESH_REMOTE_API gboolean mesh_main_context_iterate_until(GMainContext *context, gint64 deadline);

/**
 * mesh_io_hook_detach:
 * @hook: (nullable): a hook
 *
 * The transport using @hook goes: a context hook is no longer found by
 * waiting threads (its references may outlive the transport; run_once then
 * does nothing harmful). Does nothing for other hooks.
 */
MESH_REMOTE_API void mesh_io_hook_detach(MeshIoHook *hook);

/** mesh_io_hook_ref: Returns: (transfer full): @hook, with one more reference. */
MESH_REMOTE_API MeshIoHook *mesh_io_hook_ref(MeshIoHook *hook);
/** mesh_io_hook_unref: @hook: (nullable). */
MESH_REMOTE_API void mesh_io_hook_unref(MeshIoHook *hook);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(MeshIoHook, mesh_io_hook_unref)

/**
 * mesh_node_set_io_hook:
 * @node: a node
 * @hook: (nullable): the hook of the transport that carries @node's events,
 *     referenced; NULL removes it (before the transport goes)
 *
 * A node has one I/O hook; a receive on one of its ports runs it. Any
 * thread.
 */
MESH_REMOTE_API void mesh_node_set_io_hook(MeshNode *node, MeshIoHook *hook);

G_END_DECLS
