/* SPDX-License-Identifier: MIT */
/*
 * libmeshremote internals: ports, nodes, events.
 *
 * Locking: one mutex per port, per node and per remote node. Order: a port,
 * then its node, then a remote node. Two ports are never locked at once
 * except by bridge (address order). Every effect on another object (an event
 * for another port, a message to release, a wakeup) is collected in a
 * Deferred while locked and carried out after unlocking, so handlers and
 * callbacks never run under a lock they do not own.
 *
 * Allocation: as everywhere with GLib, g_malloc() and g_new() abort when
 * memory runs out, so their results are not checked. That includes the
 * protobuf-c messages that libmeshremote and libmeshprocess build (and their
 * strings, g_strdup()), although protobuf_c_message_free_unpacked() (through
 * mesh_payload_message_free()) frees them with the system allocator's
 * free(): since GLib 2.46 g_malloc() is malloc() (the build requires 2.72),
 * so memory from either may be freed by the other.
 */
#pragma once

#include <meshpayload/meshpayload.h>

#define MESHREMOTE_COMPILATION 1
#include "meshremote/meshremote.h"
#include "log-private.h"
#include "protocol-private.h"
#include "timeout-private.h"

typedef enum {
	PORT_PEERED,
	PORT_SENDING,
	PORT_PROXYING,
	PORT_DONE,
	PORT_FAILED,
} PortState;

/* Where a port's events go: a local port, or a port on a remote node. */
typedef struct {
	MeshPort *local;        /* strong reference */
	MeshRemoteNode *remote; /* strong reference */
	MeshPortId id;          /* the port on @remote */
} PeerAddr;

typedef struct {
	MeshEventType type;
	guint8 flags;
	/* FAIL_PORT from another node that blames itself: it failed the port, it did not fail */
	guint8 culprit_is_sender;
	/*
	 * CHANGE_PEER naming a port of this node that already ended (new_peer
	 * unset): it answered a close of ours first, or it failed (see port.c).
	 */
	guint8 new_peer_ended;
	guint64 seq;
	MeshMessage *message; /* MESSAGE with MESH_EVENT_FLAG_MESSAGE */
	PeerAddr new_peer;    /* CHANGE_PEER */
	guint64 seq_delta;    /* CHANGE_PEER */
	MeshNodeId culprit;   /* FAIL_PORT: the node that caused it (zero: local);
			       * PROXY_DONE: the node it came from */
	char *reason;         /* FAIL_PORT: readable cause, local delivery only */
} Event;

/* Channel framing of a message on the wire (upstream ChannelPayload). */
typedef enum {
	MESH_WRAP_NONE,   /* raw bytes */
	MESH_WRAP_FIELD1, /* the payload is field 1 (mpsc data, oneshot value) */
	MESH_WRAP_PORT,   /* field 2: a new sender port (resource 0) */
	MESH_WRAP_WIRE,   /* as received from another node: framing still in the bytes */
} MeshWrap;

struct MeshMessage {
	ProtobufCMessage *typed; /* typed form, or NULL */
	uint8_t *data;           /* bytes form; g_free'd unless data_free is set */
	GDestroyNotify data_free; /* set: data points into data_owner (a mapping), read-only */
	gpointer data_owner;
	size_t size;
	MeshPayloadResources *res;
	MeshWrap wrap;
	gboolean small_block; /* allocated with small_block_alloc() */
	/*
	 * Every fd in res is one this library made: mesh_message_add_fd()'s
	 * duplicate, or one a transport received. The application never had
	 * its number (the API only steals fds out), so it cannot have closed
	 * it: message_fits() skips the F_GETFD check. Cleared by an fd the
	 * application hands over (_take, a typed message's fds); a lent one
	 * (borrowed below) leaves it: message_fits() checks lent fds on their
	 * own, unless the sink reports a closed one itself (try_send).
	 */
	gboolean fds_private;
	/*
	 * Bit i: resource i is an fd the application lends
	 * (mesh_message_add_fd_borrowed()): its number, not ours to close. A
	 * send to another node passes it to the transport in the sending
	 * call (which duplicates what it keeps); everything else that keeps
	 * the message or its fds past that call owns them first
	 * (message_own_fds()); mesh_message_free() leaves them open.
	 */
	guint64 borrowed;
};

typedef struct Deferred Deferred;

/*
 * Receive-side hooks of a port, called with the port locked. They must not
 * block or take other port locks; effects on others go through @d.
 */
typedef struct {
	void (*message)(MeshPort *port, void *data, MeshMessage *msg, Deferred *d);
	void (*close)(MeshPort *port, void *data, Deferred *d);
	void (*fail)(MeshPort *port, void *data, const GError *error, Deferred *d);
} PortHandler;

struct MeshPort {
	MeshPayloadObject object; /* first: carried as a payload resource */
	gint ref;
	GMutex lock;
	MeshPortId id;
	PortState state;
	PeerAddr peer;
	PeerAddr target; /* SENDING, PROXYING */
	guint64 next_local_seq;
	guint64 next_peer_seq;
	guint64 change_peer_seq; /* SENDING: the seq reserved for CHANGE_PEER */
	guint64 forward_seq;     /* PROXYING: next seq toward the target */
	GPtrArray *heap;         /* Event *, a min-heap on seq */
	GQueue queue;            /* MeshMessage * received while no handler is set */
	const PortHandler *handler;
	void *handler_data;
	gboolean local_closed;
	MeshNode *node; /* weak: the node whose table holds this port, or NULL */
	MeshNodeId culprit; /* FAILED: the node blamed */
	GError *error;  /* FAILED */
	/*
	 * A port moved in from a C node (MESH_EVENT_PROXY_DONE) depends on
	 * that node until its proxy there has forwarded everything: until
	 * then the node's failure fails the port (strong, or NULL).
	 */
	MeshRemoteNode *move_from;
	guint64 move_done_seq; /* from PROXY_DONE: done once next_peer_seq reaches it (0: unknown) */
	gboolean peer_close_passed; /* PROXYING: the peer's close went on to the target */
	/*
	 * SENDING: the peer's node failed after everything up to the peer's
	 * close was here: the move goes on, and ends once that is forwarded.
	 * PEERED with move_from: the peer's node failed; the port fails when
	 * its move ends, unless the peer's close came through the move.
	 */
	gboolean peer_gone;
};

typedef struct {
	PeerAddr to;
	Event *event;
	MeshNode *from; /* strong, may be NULL */
} Outgoing;

typedef struct {
	void (*func)(void *data);
	void *data;
} DeferredCall;

/*
 * A message's send or delivery usually defers one event and a wakeup or two:
 * those fit in place, so the hot path allocates nothing here.
 */
#define DEFERRED_INLINE 4

struct Deferred {
	Outgoing out[DEFERRED_INLINE];
	guint n_out;
	GArray *out_more; /* Outgoing, after the first DEFERRED_INLINE */
	DeferredCall call[DEFERRED_INLINE];
	guint n_calls;
	GArray *calls_more; /* DeferredCall */
	GPtrArray *messages;
	GPtrArray *ports;
};

/*
 * An I/O hook (mesh-transport.h): a transport's I/O that a thread blocked in
 * a receive can run. The functions as given, with their data.
 */
struct MeshIoHook {
	gint ref;
	MeshIoHookFuncs funcs;
	void *user_data;
};

/*
 * Called when a receiver is woken for a thread other than the caller: if
 * the caller is inside a hook's run_once() (io_waiters_run()), that hook's
 * foreign_delivery is told. Cheap otherwise.
 */
void io_note_foreign_delivery(void);

/* context-io.c */
/*
 * For a wait on a port that no node's table holds yet (a oneshot whose
 * sender is still queued on its way out, say): the events it waits for need
 * some transport's I/O, which cannot be told from the port. Returns
 * (transfer full) (nullable): the hook of a transport on a caller's context
 * that this thread runs (a wait inside its dispatch), else of one that is
 * this thread's and that nobody runs now (mesh_io_hook_acquire_context()); NULL
 * if there is none (own-thread transports poll anyway, and a context run by
 * another thread is run there).
 */
MeshIoHook *context_io_hook_for_thread(void);

/* Returns: (transfer full) (nullable): the hook of the node whose table holds @port. */
MeshIoHook *port_get_io_hook(MeshPort *port);

/*
 * Waiting for a change of what a node holds (a port leaving its table, a
 * transport's pending introduction answered), without polling: a watcher
 * takes the generation, looks, and waits for the generation to move.
 * node_watch_begin() returns the generation and counts the watcher in
 * (notifications cost nothing while nobody watches); node_watch_end() ends
 * it. node_watch_wait() waits on the node's GCond until the generation is
 * not @gen, or @deadline: FALSE then. A notification also wakes the node's
 * I/O hook, for a watcher that iterates a caller's context instead.
 */
guint node_watch_begin(MeshNode *node);
guint node_watch_generation(MeshNode *node);
gboolean node_watch_wait(MeshNode *node, guint gen, gint64 deadline);
void node_watch_end(MeshNode *node);
/* Something a watcher may wait for changed (@node locked, or not: _locked). */
void node_watch_notify(MeshNode *node);
void node_watch_notify_locked(MeshNode *node);

struct MeshNode {
	gint ref;
	MeshNodeId id;
	GMutex lock;
	GHashTable *ports;   /* MeshPortId * -> MeshPort * (strong) */
	/*
	 * MeshNodeId * -> MeshRemoteNode * (strong). A remote node leaves the
	 * table when the table's is its last reference but one, and that one
	 * is dropped (remote_node_unref_internal()): only nodes something
	 * refers to stay.
	 */
	GHashTable *remotes;
	/*
	 * Ids of failed remote nodes that left the table, oldest first: a ring
	 * of MESH_NODE_FAILED_MEMORY, and a set of pointers into it. Made on
	 * first use. A remote node made again for one of them is made failed.
	 */
	MeshNodeId *failed_ring;
	guint failed_next; /* the ring slot written next */
	GHashTable *failed;
	/* The remote-node cap: refusals since the last warning, and its time. */
	guint cap_refused;
	gint64 cap_warned_at;
	MeshConnectorFunc connector;
	void *connector_data;
	gboolean shutting_down;
	MeshIoHook *io_hook; /* strong, may be NULL */
	/* Waits for the table to change (node_watch_*), under lock: */
	guint watchers;
	guint watch_gen; /* counts changes while watched */
	GCond watch_cond;
	const MeshTransportCaps *connector_caps; /* atomic pointer, may be NULL: no limit */
};

typedef enum {
	REMOTE_QUEUING,
	REMOTE_ACTIVE,
	REMOTE_FAILED,
} RemoteState;

struct MeshRemoteNode {
	gint ref;     /* all references, the table's included */
	gint handles; /* references held through the public API */
	GMutex lock;
	MeshNode *node; /* weak: set while in its table (cleared when it leaves or the node goes) */
	MeshNodeId id;
	gint state; /* RemoteState: changed under the lock; read without it atomically */
	char *fail_reason; /* FAILED: the reason it failed with (immutable once set) */
	GQueue queued; /* Packet * while QUEUING */
	MeshEventSink sink;
	void *sink_data;
	/* Atomic: what the connection carries, set once it is connected. */
	const MeshTransportCaps *caps;
	/*
	 * Atomic: the sink has try_send (it reports an fd that is not open
	 * instead of ending the connection), set once it is connected.
	 */
	gint sink_checks;
	/*
	 * Sends running outside the lock (atomic: raised under the lock while
	 * ACTIVE, dropped without it); the sink is released after the last.
	 * release_pending (atomic) is set under the lock; see remote_send_done().
	 */
	gint sending;
	gint release_pending;
	MeshEventSink released_sink;
	void *released_data;
	/* MeshRemoteFeatures (atomic): what the transport says the node reads. */
	gint features;
};

/* deferred.c */
/* A per-thread cache of SMALL_BLOCK_SIZE blocks (any thread frees into its own). */
#define SMALL_BLOCK_SIZE 256
void *small_block_alloc(void);
void small_block_free(void *block);
void deferred_init(Deferred *d);
void deferred_event(Deferred *d, const PeerAddr *to, Event *ev, MeshNode *from);
void deferred_release_message(Deferred *d, MeshMessage *msg);
void deferred_unref_port(Deferred *d, MeshPort *port);
void deferred_unref_remote(Deferred *d, MeshRemoteNode *remote);
/* Drops the references of @addr after unlocking. */
void peer_addr_defer_clear(PeerAddr *addr, Deferred *d);
/* Frees @ev after unlocking (its message and peer are released then). */
void event_discard(Event *ev, Deferred *d);
void deferred_call(Deferred *d, void (*func)(void *), void *data);
/* Carries everything out (no lock may be held) and clears @d. */
void deferred_run(Deferred *d);

/* events */
Event *event_new(MeshEventType type, guint8 flags, guint64 seq);
void event_free(Event *ev); /* releases the message */
void peer_addr_copy(PeerAddr *dst, const PeerAddr *src);
void peer_addr_clear(PeerAddr *addr);
gboolean peer_addr_is_set(const PeerAddr *addr);

/* port.c */
/*
 * How far ahead of the next expected one an event's seq may be (events
 * waiting for a gap): more is a protocol error that fails the port.
 */
#define PORT_REORDER_WINDOW (1u << 20)
MeshPort *port_new(const MeshPortId *id);
MeshPort *port_ref(MeshPort *port);
void port_unref(MeshPort *port);
/* Delivers @ev (taken) to @port: locks, processes, unlocks, runs deferred. */
void port_deliver(MeshPort *port, Event *ev);
void port_receive_locked(MeshPort *port, Event *ev, Deferred *d);
void port_fail_locked(MeshPort *port, const MeshNodeId *culprit, const char *reason,
		      Deferred *d);
/*
 * @remote failed: @port fails if its peer, its target or the node it moved
 * in from (move_from) is there, unless it is on its way (SENDING,
 * PROXYING), its target is elsewhere and it already holds its peer's close
 * and everything before it: then it goes on as a port whose peer closed
 * (its move ends without the peer's acknowledgement if the peer that
 * closed, maybe named by a CHANGE_PEER it holds, or the peer it would
 * send its own CHANGE_PEER to was on @remote).
 */
void port_remote_failed_locked(MeshPort *port, MeshRemoteNode *remote, const char *reason,
			       Deferred *d);
/*
 * Fails @port with @error (taken) instead of a node failure built from
 * @culprit and @reason; @reason goes with the FAIL_PORT its peer gets.
 */
void port_fail_error_locked(MeshPort *port, const MeshNodeId *culprit, GError *error,
			    const char *reason, Deferred *d);
/* From any thread, no lock held: as port_fail_error_locked(). */
void port_fail_error(MeshPort *port, const MeshNodeId *culprit, const GError *error,
		     const char *reason);
/*
 * A message that will never be delivered (its port failed, or it is over
 * the limits) is released; the ports it carries fail with @error (copied)
 * after @d runs, so that their peers hear why rather than a bare close.
 */
void port_fail_message_ports(MeshMessage *msg, const MeshNodeId *culprit, const GError *error,
			     Deferred *d);
/* Sends a message (taken) to the peer; FALSE if the port cannot send (dropped). */
gboolean port_send(MeshPort *port, MeshMessage *msg, gboolean close);
void port_set_handler(MeshPort *port, const PortHandler *handler, void *data);
/* Enters @port in @node's table; FALSE if its id is taken there. */
gboolean port_associate_locked(MeshPort *port, MeshNode *node);
void port_disassociate_locked(MeshPort *port, Deferred *d);
/* Moves @port (taken) to @remote: fills @rd and leaves the port proxying. */
void port_encode_for_move(MeshPort *port, MeshNode *from, MeshRemoteNode *remote,
			  MeshResourceData *rd);
PortState port_get_state(MeshPort *port);
/*
 * Whether @port is part of a move that has not completed: on its way to
 * another node (sending, proxying), or moved in and still depending on the
 * node it came from (move_from: its PROXY_DONE, or what comes before it,
 * has not arrived). A graceful shutdown waits until no port is either.
 */
gboolean port_is_moving(MeshPort *port);
/* Fails @port explicitly (tests, protocol errors found by channels). */
void port_fail(MeshPort *port, const char *reason);
/* port_fail() blaming @culprit (NULL or zero: a local failure). */
void port_fail_culprit(MeshPort *port, const MeshNodeId *culprit, const char *reason);
#define LOST_WITH_FAILED_PORT "a message carrying the port was lost with a failed port"

/* Internal raw-port receive (tests and channels): pops the port's queue. */
typedef enum {
	PORT_RECV_MESSAGE,
	PORT_RECV_EMPTY,
	PORT_RECV_CLOSED,
	PORT_RECV_FAILED,
} PortRecv;
PortRecv port_try_recv(MeshPort *port, MeshMessage **ret_msg, GError **error);
/* Raw send of bytes (tests). */
gboolean port_send_bytes(MeshPort *port, const char *text);

/* node.c */
/*
 * Remote nodes a node creates because a peer named them: the table's bound
 * (a node only keeps the remote nodes something refers to, so it bounds the
 * live ones).
 */
#define MESH_NODE_MAX_REMOTES 4096
/* Failed remote nodes a node remembers after it forgot them (see MeshNode.failed). */
#define MESH_NODE_FAILED_MEMORY 1024
/* The shortest interval between two warnings that the remote-node cap refused one. */
#define MESH_NODE_CAP_WARN_INTERVAL (10 * G_USEC_PER_SEC)
MeshRemoteNode *node_get_remote(MeshNode *node, const MeshNodeId *id);
/* Takes @ev; @remote is a reference the caller holds until this returns. */
void remote_node_send_event(MeshRemoteNode *remote, MeshNode *from, const MeshPortId *dest,
			    Event *ev);
gboolean remote_node_is_failed(MeshRemoteNode *remote);
/*
 * Whether the transport said the node reads and sends MESH_EVENT_PROXY_DONE
 * (MESH_REMOTE_FEATURE_PROXY_DONE, an extension upstream does not know):
 * then a port moved in from that node fails if the node dies before the
 * move completed (see port.c).
 */
gboolean remote_node_has_ext_moves(MeshRemoteNode *remote);
MeshRemoteNode *remote_node_ref_internal(MeshRemoteNode *remote);
/* Returns: (transfer full) (nullable): the local node @remote belongs to. */
MeshNode *remote_node_get_local(MeshRemoteNode *remote);
void remote_node_unref_internal(MeshRemoteNode *remote);
GError *error_node_failure(const MeshNodeId *node, const char *reason);

/* message.c */
MeshMessage *message_new_bytes_take(uint8_t *data, size_t size, MeshPayloadResources *res,
				    MeshWrap wrap);
/* A copy of @data in the message's own allocation (read-only, as data_free is set). */
MeshMessage *message_new_bytes_copy(const void *data, size_t size, MeshPayloadResources *res,
				    MeshWrap wrap);
/*
 * Replaces every borrowed fd of @msg with a close-on-exec duplicate that the
 * message owns. 0, or a negative errno (EMFILE...): the fds not duplicated
 * stay borrowed (freeing the message leaves them open).
 */
int message_own_fds(MeshMessage *msg);
/* The error for message_own_fds() failing (a send, an rpc call, mesh_message_into_typed()). */
GError *message_own_fds_error(int r);
/* Encodes a typed message into bytes form (resources move to msg->res). */
int message_ensure_bytes(MeshMessage *msg, GError **error);
/*
 * The wire payload of @msg is @head (the channel framing, up to 24 bytes)
 * followed by msg->data. Encodes a typed message first.
 */
int message_wire_framing(MeshMessage *msg, uint8_t head[24], size_t *ret_head_len,
			 GError **error);
/* Parses channel framing of a WIRE message in place into FIELD1 or PORT. */
int message_unwrap_channel(MeshMessage *msg, GError **error);
