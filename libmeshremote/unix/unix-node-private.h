/* SPDX-License-Identifier: MIT */
/*
 * The Unix transport's lower layer (unix-node.c, unix-io.c, unix-pool.c):
 * connections, packets, the I/O thread and pools. It knows nothing of the
 * leader protocol above it (unix-leader-private.h), which plugs in through
 * MeshUnixNode.stop_roles.
 */
#pragma once

#include "meshremote/meshremote.h"
#include "log-private.h"
#include "timeout-private.h"
#include "unix-protocol.pb-c.h"

typedef struct Leader Leader;
typedef struct UnixIo UnixIo;
typedef struct UnixRx UnixRx;

struct MeshUnixNode {
	MeshNode *node;
	GMainContext *context;
	UnixIo *io; /* own-thread mode: the I/O thread; NULL on a caller's context */
	MeshIoHook *context_hook; /* on a caller's context: iterates it for blocked receives */
	GMutex lock;
	GCond cond;
	/* mesh_unix_node_set_send_limit(); read by senders under a connection's lock */
	size_t send_limit;
	gint64 send_timeout_us;
	GPtrArray *conns; /* UnixConn * (strong) */
	UnixRx *rx;       /* receive buffers, made by the first dispatch; the context owner's */

	/* Every node is a follower of a leader (the leader too, of itself). */
	MeshSender *to_leader;     /* LeaderRequest; NULL once shut down */
	MeshReceiver *from_leader; /* FollowerRequest */
	GHashTable *pending;       /* MeshNodeId * -> MeshRemoteNode * awaiting a socket */
	gboolean leader_stopped;   /* shut down: no more introductions */
	gboolean leader_channel_up; /* at the stop: a leader (maybe a new one) still answered */
	Leader *leader;            /* non-NULL on the leader */
	gboolean joined;           /* made by mesh_unix_node_join(): it follows leader_node */
	MeshNodeId leader_node;
	MeshPeerDescribeFunc describe;
	gpointer describe_data;
	/*
	 * Set by the layer above (unix-leader.c): stops leading and following,
	 * run on the I/O context by shutdown and free before the connections go.
	 */
	void (*stop_roles)(MeshUnixNode *u);
};

/*
 * unix-io.c: the own I/O thread, which lends its context to blocked
 * receivers. @lent: the thread starts with its context lent, as if a
 * receiver had asked for it (a join, which blocks in a receive at once):
 * the caller neither waits for the thread to run nor wakes it, and the
 * thread takes the context once no borrower polled for a while.
 */
UnixIo *unix_io_start(GMainContext *context, gboolean lent);
/* Returns: (transfer none): the hook to set on the node. */
MeshIoHook *unix_io_get_hook(UnixIo *io);
/* If the context is lent and nobody polls it, has the I/O thread take it back now. */
void unix_io_reclaim(UnixIo *io);
/*
 * A thread that is neither the I/O thread nor a borrower released the
 * context (@io may be NULL): the I/O thread, which may wait to take it
 * back, looks again.
 */
void unix_io_released(UnixIo *io);
/* Ends lending; returns once the I/O thread owns its context again. */
void unix_io_disable_lending(UnixIo *io);
/* Ends the thread and drops the transport's reference. */
void unix_io_stop(UnixIo *io);
/*
 * The I/O thread waits on an epoll set (unix-io.c): before a source with
 * an fd is attached to the I/O context (or an fd added to one), its fd is
 * noted here, so that a number that names a new file is registered again.
 * Any thread; @io may be NULL (a caller's context: nothing to do).
 */
void unix_io_fd_attached(UnixIo *io, int fd);
/*
 * Around the close of an fd that a source on the I/O context watched (a
 * connection's socket and ring eventfd, the listener's fds), on any
 * thread: unix_io_forget_fd() takes it out of the epoll set while its
 * number still names it, and the poller names no number meanwhile (it may
 * still have this one in its array). @io may be NULL; the caller keeps
 * @io alive (a reference on its hook, or the I/O context's own thread).
 */
void unix_io_lock_fds(UnixIo *io);
void unix_io_unlock_fds(UnixIo *io);
/* Between unix_io_lock_fds() and unix_io_unlock_fds(), before close(@fd). */
void unix_io_forget_fd(UnixIo *io, int fd);
/* The three around one fd: takes it out of the set and closes it. */
void unix_io_close_fd(UnixIo *io, int fd);
/*
 * A ring's eventfd (@edge TRUE, before its source is attached; FALSE when
 * the source goes): waited on edge-triggered, so that a wake-up needs no
 * read. Any thread; @io may be NULL.
 */
void unix_io_set_edge_fd(UnixIo *io, int fd, gboolean edge);
/*
 * In a source's check, on the polling thread: TRUE if @fd's revents came
 * from the edge-triggered epoll set (then it must not be read: nothing
 * needs resetting), FALSE after a plain poll() (read it, as before).
 */
gboolean unix_io_edge_polled(UnixIo *io, int fd);

/* Runs @func(@data) on the I/O context and waits for it (or at once, there). */
void unix_run_sync(MeshUnixNode *u, GSourceFunc func, gpointer data);

void unix_rx_free(UnixRx *rx);
/* FALSE when MESH_UNIX_BATCH=0: no batch hello, no PACKET_BATCH either way. */
gboolean unix_batching_enabled(void);
/* FALSE when MESH_UNIX_POOL=0: large events always go in a new sealed memfd. */
gboolean unix_pooling_enabled(void);
/* FALSE when MESH_UNIX_RING=0: no shared-memory ring (HELLO_RING) either way. */
gboolean unix_ring_enabled(void);
/* MESH_UNIX_EXT_MOVES (default on): the PROXY_DONE extension (HELLO_MOVES). */
gboolean unix_ext_moves_enabled(void);

/* unix-pool.c: reused memory for large events (sender and receiver sides). */
#define UNIX_POOL_MAX_EVENT ((size_t)16 << 20)
typedef struct UnixTxPool UnixTxPool;
typedef struct UnixRxPool UnixRxPool;
typedef struct {
	guint32 id;
	int fd;
	uint8_t *map;
	size_t size;
	gboolean busy;      /* written, not yet released by the peer */
	gboolean announced; /* the peer has (or is being sent) its memfd */
} UnixPoolBuf;
UnixTxPool *unix_tx_pool_new(void);
void unix_tx_pool_free(UnixTxPool *p);
/* A free buffer of at least @size, now busy; NULL if the pool may not give one. */
UnixPoolBuf *unix_tx_pool_take(UnixTxPool *p, size_t size);
/* FALSE if @id names no busy buffer (a peer's protocol error). */
gboolean unix_tx_pool_release(UnixTxPool *p, guint32 id);
UnixRxPool *unix_rx_pool_new(void);
void unix_rx_pool_free(UnixRxPool *p);
/* Maps the peer's buffer @id from @memfd (borrowed). NULL, or why not. */
const char *unix_rx_pool_add(UnixRxPool *p, guint32 id, int memfd);
/*
 * Returns: a copy of the event in buffer @id, to be released with
 * @ret_free(@ret_owner) (any thread, any time); or NULL with why.
 */
const uint8_t *unix_rx_pool_copy(UnixRxPool *p, guint32 id, size_t size,
				 void (**ret_free)(void *), void **ret_owner, const char **ret_reason);

/*
 * unix-node.c: the transport without a role; the leader layer makes it lead
 * or follow (mesh_unix_node_new(), mesh_unix_node_join()). @joining: an own
 * I/O thread starts with its context lent (unix_io_start()).
 */
MeshUnixNode *unix_node_new(MeshNode *node, GMainContext *context, gboolean joining);
/*
 * mesh_unix_node_connect_take() with the hello's rules (unix-node.c, "The
 * hello"): @send_hello sends ours first (when any extension is on);
 * @peer_hello > 0 is what the peer reads, known from its invitation (then
 * its hello is not awaited), -1 or 0 unknown.
 */
gboolean unix_node_connect_take(MeshUnixNode *u, const MeshNodeId *peer, int fd,
				gboolean send_hello, int peer_hello, GError **error);
/* Our hello's flags: 0 when every extension is off (the upstream wire). */
guint unix_hello_flags(void);
/* Whether @peer is this node or a connected C node (its hello came, or its invitation said). */
gboolean unix_node_peer_is_c(MeshUnixNode *u, const MeshNodeId *peer);
/* Whether a connection to @peer is up (not ended); any thread, no lock held. */
gboolean unix_node_is_connected(MeshUnixNode *u, const MeshNodeId *peer);
/* Ends the connection to @peer, if any (from any thread; no lock held). */
void unix_node_cut(MeshUnixNode *u, const MeshNodeId *peer, const char *reason);

/* Heap NodeId / PortId messages for the protocol (system allocator). */
MeshUnix__NodeId *unix_node_id_new(const MeshUuid *id);
MeshUnix__PortId *unix_port_id_new(const MeshUuid *id);
gboolean unix_uuid_read(const MeshUnix__Uuid *u, MeshUuid *ret);
