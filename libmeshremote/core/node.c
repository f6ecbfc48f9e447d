/* SPDX-License-Identifier: MIT */
/*
 * Nodes and remote nodes: the port table, the connector, event encoding for
 * other nodes (ports inside messages start moving here) and decoding of
 * events that arrive (ports inside messages are created here).
 */
#include "os-private.h"
#include "remote-private.h"
#include "sink-steps-private.h"

typedef struct {
	uint8_t *data;
	size_t size;
	MeshOsHandle *fds; /* OS resources: fds, HANDLEs on Windows */
	size_t n_fds;
	guint64 borrowed; /* bit i: fds[i] is the application's (never in a queued packet) */
} Packet;

static gboolean packet_fd_borrowed(const Packet *pk, size_t i)
{
	return i < 64 && (pk->borrowed & (G_GUINT64_CONSTANT(1) << i));
}

static void packet_clear(Packet *pk)
{
	for (size_t i = 0; i < pk->n_fds; i++)
		if (!packet_fd_borrowed(pk, i))
			os_handle_close(pk->fds[i]);
	g_free(pk->fds);
	g_free(pk->data);
}

static void packet_free(Packet *pk)
{
	packet_clear(pk);
	g_free(pk);
}

MeshNode *mesh_node_new(void)
{
	MeshNodeId id;

	mesh_uuid_generate(&id);
	return mesh_node_new_with_id(&id);
}

MeshNode *mesh_node_new_with_id(const MeshNodeId *id)
{
	g_return_val_if_fail(id, NULL);
	MeshNode *node = g_new0(MeshNode, 1);

	node->ref = 1;
	node->id = *id;
	g_mutex_init(&node->lock);
	g_cond_init(&node->watch_cond);
	node->ports = g_hash_table_new(mesh_uuid_hash, mesh_uuid_equal);
	node->remotes = g_hash_table_new(mesh_uuid_hash, mesh_uuid_equal);
	return node;
}

MeshNode *mesh_node_ref(MeshNode *node)
{
	g_return_val_if_fail(node, NULL);
	g_atomic_int_inc(&node->ref);
	return node;
}

/* The capabilities of a version 0 sink, or one without caps: no limit. */
static const MeshTransportCaps unlimited_caps = {0};

static void node_fail_remote(MeshRemoteNode *remote, const char *reason);

void mesh_node_unref(MeshNode *node)
{
	if (!node || !g_atomic_int_dec_and_test(&node->ref))
		return;

	g_mutex_lock(&node->lock);
	node->shutting_down = TRUE;
	GList *remotes = g_hash_table_get_values(node->remotes);
	GList *ports = g_hash_table_get_values(node->ports);
	g_hash_table_steal_all(node->remotes);
	g_hash_table_steal_all(node->ports);
	g_mutex_unlock(&node->lock);

	for (GList *l = remotes; l; l = l->next) {
		MeshRemoteNode *remote = l->data;
		g_mutex_lock(&remote->lock);
		remote->node = NULL;
		g_mutex_unlock(&remote->lock);
		node_fail_remote(remote, "mesh is shutting down");
		remote_node_unref_internal(remote);
	}
	/*
	 * Forget the node in every port first: failing one port delivers to
	 * others, and nothing may take a new reference on this dying node.
	 */
	for (GList *l = ports; l; l = l->next) {
		MeshPort *p = l->data;
		g_mutex_lock(&p->lock);
		p->node = NULL;
		g_mutex_unlock(&p->lock);
	}
	for (GList *l = ports; l; l = l->next) {
		MeshPort *p = l->data;
		Deferred d;
		deferred_init(&d);
		g_mutex_lock(&p->lock);
		port_fail_locked(p, NULL, "mesh is shutting down", &d);
		g_mutex_unlock(&p->lock);
		deferred_run(&d);
		port_unref(p);
	}
	g_list_free(remotes);
	g_list_free(ports);
	g_hash_table_destroy(node->remotes);
	g_hash_table_destroy(node->ports);
	if (node->failed)
		g_hash_table_destroy(node->failed);
	g_free(node->failed_ring);
	mesh_io_hook_unref(node->io_hook);
	g_cond_clear(&node->watch_cond);
	g_mutex_clear(&node->lock);
	g_free(node);
}

MeshIoHook *mesh_io_hook_new(const MeshIoHookFuncs *funcs, void *user_data)
{
	g_return_val_if_fail(funcs && funcs->run_once && funcs->wakeup, NULL);

	MeshIoHook *hook = g_new0(MeshIoHook, 1);
	hook->ref = 1;
	hook->funcs = *funcs; /* version 0: all of it */
	hook->user_data = user_data;
	return hook;
}

MeshIoHook *mesh_io_hook_ref(MeshIoHook *hook)
{
	g_return_val_if_fail(hook != NULL, NULL);
	g_atomic_int_inc(&hook->ref);
	return hook;
}

void mesh_io_hook_unref(MeshIoHook *hook)
{
	if (!hook || !g_atomic_int_dec_and_test(&hook->ref))
		return;
	if (hook->funcs.destroy)
		hook->funcs.destroy(hook->user_data);
	g_free(hook);
}

void mesh_node_set_io_hook(MeshNode *node, MeshIoHook *hook)
{
	g_return_if_fail(node != NULL);

	g_mutex_lock(&node->lock);
	MeshIoHook *old = node->io_hook;
	node->io_hook = hook ? mesh_io_hook_ref(hook) : NULL;
	g_mutex_unlock(&node->lock);
	mesh_io_hook_unref(old);
}

guint node_watch_begin(MeshNode *node)
{
	g_mutex_lock(&node->lock);
	node->watchers++;
	guint gen = node->watch_gen;
	g_mutex_unlock(&node->lock);
	return gen;
}

guint node_watch_generation(MeshNode *node)
{
	g_mutex_lock(&node->lock);
	guint gen = node->watch_gen;
	g_mutex_unlock(&node->lock);
	return gen;
}

gboolean node_watch_wait(MeshNode *node, guint gen, gint64 deadline)
{
	gboolean in_time = TRUE;

	g_mutex_lock(&node->lock);
	while (node->watch_gen == gen && in_time) {
		if (deadline < 0)
			g_cond_wait(&node->watch_cond, &node->lock);
		else
			in_time = g_cond_wait_until(&node->watch_cond, &node->lock, deadline);
	}
	g_mutex_unlock(&node->lock);
	return in_time;
}

void node_watch_end(MeshNode *node)
{
	g_mutex_lock(&node->lock);
	node->watchers--;
	g_mutex_unlock(&node->lock);
}

void node_watch_notify_locked(MeshNode *node)
{
	if (!node->watchers)
		return;
	node->watch_gen++;
	g_cond_broadcast(&node->watch_cond);
	if (node->io_hook)
		node->io_hook->funcs.wakeup(node->io_hook->user_data); /* fine under locks */
}

void node_watch_notify(MeshNode *node)
{
	g_mutex_lock(&node->lock);
	node_watch_notify_locked(node);
	g_mutex_unlock(&node->lock);
}

/*
 * The ports of @node's table, each referenced (g_list_free_full(ports,
 * (GDestroyNotify)port_unref) when done): references are taken under the
 * node's lock, and a port's state is then read under its own (lock order).
 */
static GList *node_ref_ports(MeshNode *node)
{
	g_mutex_lock(&node->lock);
	GList *ports = g_hash_table_get_values(node->ports);
	for (GList *l = ports; l; l = l->next)
		port_ref(l->data);
	g_mutex_unlock(&node->lock);
	return ports;
}

/*
 * Ports of @node in a move not complete (port_is_moving()): on their way to
 * another node, or moved in and still depending on the node they came from.
 * A node that left before the latter would fail the proxy forwarding to it
 * (its target's node gone), and that failure overtakes what the port sent.
 */
static guint count_moving_ports(MeshNode *node, guint *ret_total)
{
	guint n = 0;
	GList *ports = node_ref_ports(node);

	*ret_total = g_list_length(ports);
	for (GList *l = ports; l; l = l->next)
		n += port_is_moving(l->data);
	g_list_free_full(ports, (GDestroyNotify)port_unref);
	return n;
}

gboolean mesh_node_wait_idle(MeshNode *node, guint max_ports, gint64 timeout_us)
{
	g_return_val_if_fail(node != NULL, FALSE);
	g_return_val_if_fail(timeout_us >= -1, FALSE);
	gint64 deadline = timeout_us < 0 ? -1 : g_get_monotonic_time() + timeout_us;
	gboolean idle = FALSE;

	guint gen = node_watch_begin(node);
	for (;;) {
		guint total;
		if (count_moving_ports(node, &total) == 0 && total <= max_ports) {
			idle = TRUE;
			break;
		}
		if (deadline >= 0 && g_get_monotonic_time() >= deadline)
			break;
		/* Each change of the table moves the generation (and wakes the hook). */
		g_mutex_lock(&node->lock);
		MeshIoHook *hook = node->io_hook ? mesh_io_hook_ref(node->io_hook) : NULL;
		g_mutex_unlock(&node->lock);
		gboolean ran = FALSE, expired = FALSE;
		if (hook && node_watch_generation(node) == gen)
			ran = hook->funcs.run_once(hook->user_data, deadline, &expired);
		mesh_io_hook_unref(hook);
		if (!ran)
			node_watch_wait(node, gen, deadline);
		gen = node_watch_generation(node);
	}
	node_watch_end(node);
	return idle;
}

gsize mesh_event_get_size(const guint8 *data, gsize size)
{
	g_return_val_if_fail(data != NULL || size == 0, 0);
	return protocol_event_size(data, size);
}

void mesh_node_set_connector_caps(MeshNode *node, const MeshTransportCaps *caps)
{
	g_return_if_fail(node != NULL);
	g_atomic_pointer_set(&node->connector_caps, caps);
}

const MeshNodeId *mesh_node_get_id(MeshNode *node)
{
	g_return_val_if_fail(node, NULL);
	return &node->id;
}

guint mesh_node_count_ports(MeshNode *node)
{
	g_return_val_if_fail(node, 0);
	g_mutex_lock(&node->lock);
	guint n = g_hash_table_size(node->ports);
	g_mutex_unlock(&node->lock);
	return n;
}

guint mesh_node_count_remotes(MeshNode *node)
{
	g_return_val_if_fail(node != NULL, 0);

	g_mutex_lock(&node->lock);
	guint n = g_hash_table_size(node->remotes);
	g_mutex_unlock(&node->lock);
	return n;
}

void mesh_node_set_connector(MeshNode *node, MeshConnectorFunc func, void *user_data)
{
	g_return_if_fail(node);
	g_mutex_lock(&node->lock);
	node->connector = func;
	node->connector_data = user_data;
	g_mutex_unlock(&node->lock);
}

/* Looks up a port of the node's table. Returns: (transfer full) (nullable). */
static MeshPort *node_lookup_port(MeshNode *node, const MeshPortId *id)
{
	g_mutex_lock(&node->lock);
	MeshPort *p = g_hash_table_lookup(node->ports, id);
	if (p)
		port_ref(p);
	g_mutex_unlock(&node->lock);
	return p;
}

MeshRemoteNode *remote_node_ref_internal(MeshRemoteNode *remote)
{
	g_atomic_int_inc(&remote->ref);
	return remote;
}

/* A reference to @node unless it is already going (its count reached zero). */
static MeshNode *node_try_ref(MeshNode *node)
{
	gint old;

	do {
		old = g_atomic_int_get(&node->ref);
		if (old == 0)
			return NULL;
	} while (!g_atomic_int_compare_and_exchange(&node->ref, old, old + 1));
	return node;
}

/* Called with @node locked: remembers that the remote node @id failed. */
static void node_remember_failed_locked(MeshNode *node, const MeshNodeId *id)
{
	if (!node->failed) {
		node->failed_ring = g_new0(MeshNodeId, MESH_NODE_FAILED_MEMORY);
		node->failed = g_hash_table_new(mesh_uuid_hash, mesh_uuid_equal);
	}
	if (g_hash_table_contains(node->failed, id))
		return;
	MeshNodeId *slot = &node->failed_ring[node->failed_next];
	/* Full: the slot to write holds the oldest id (slots fill in order). */
	if (g_hash_table_size(node->failed) == MESH_NODE_FAILED_MEMORY)
		g_hash_table_remove(node->failed, slot);
	*slot = *id;
	g_hash_table_add(node->failed, slot);
	node->failed_next = (node->failed_next + 1) % MESH_NODE_FAILED_MEMORY;
}

/*
 * The caller holds one of the two references of @remote: if the other is
 * its node's table, takes the remote node out of the table (remembering it
 * if it failed) and returns TRUE: both references are then the caller's.
 * Nothing else can reach the remote node then: new references come from
 * the table, under the node's lock, or from one that is held.
 */
static gboolean remote_node_forget(MeshRemoteNode *remote)
{
	g_mutex_lock(&remote->lock);
	/* Set only while in the table: the node outlives it (it clears this first). */
	MeshNode *node = remote->node ? node_try_ref(remote->node) : NULL;
	g_mutex_unlock(&remote->lock);
	if (!node)
		return FALSE;

	gboolean forgotten = FALSE;
	g_mutex_lock(&node->lock);
	if (!node->shutting_down && g_hash_table_lookup(node->remotes, &remote->id) == remote &&
	    g_atomic_int_get(&remote->ref) == 2) {
		g_hash_table_remove(node->remotes, &remote->id);
		g_mutex_lock(&remote->lock);
		remote->node = NULL;
		gboolean failed = remote->state == REMOTE_FAILED;
		g_mutex_unlock(&remote->lock);
		if (failed)
			node_remember_failed_locked(node, &remote->id);
		forgotten = TRUE;
	}
	g_mutex_unlock(&node->lock);
	mesh_node_unref(node);
	return forgotten;
}

static void remote_node_free(MeshRemoteNode *remote)
{
	Packet *pk;
	while ((pk = g_queue_pop_head(&remote->queued)))
		packet_free(pk);
	if (remote->sink.destroy)
		remote->sink.destroy(remote->sink_data);
	g_free(remote->fail_reason);
	g_mutex_clear(&remote->lock);
	g_free(remote);
}

/*
 * Dropping the last reference but the table's forgets the remote node: a
 * node keeps only the remote nodes that a port (peer or move target), an
 * event, a transport's handle or a connector refers to.
 */
void remote_node_unref_internal(MeshRemoteNode *remote)
{
	if (!remote)
		return;
	for (;;) {
		gint old = g_atomic_int_get(&remote->ref);
		if (old == 2 && remote_node_forget(remote)) {
			g_atomic_int_set(&remote->ref, 0);
			remote_node_free(remote);
			return;
		}
		if (g_atomic_int_compare_and_exchange(&remote->ref, old, old - 1)) {
			if (old == 1)
				remote_node_free(remote);
			return;
		}
	}
}

MeshNode *remote_node_get_local(MeshRemoteNode *remote)
{
	g_mutex_lock(&remote->lock);
	MeshNode *node = remote->node ? node_try_ref(remote->node) : NULL;
	g_mutex_unlock(&remote->lock);
	return node;
}

/* No lock: FAILED is the last state, and a send that races the failure is dropped later. */
gboolean remote_node_is_failed(MeshRemoteNode *remote)
{
	return g_atomic_int_get(&remote->state) == REMOTE_FAILED;
}

void mesh_remote_node_set_features(MeshRemoteNode *remote, MeshRemoteFeatures features)
{
	g_return_if_fail(remote != NULL);
	g_atomic_int_set(&remote->features, (gint)features);
}

gboolean remote_node_has_ext_moves(MeshRemoteNode *remote)
{
	return (g_atomic_int_get(&remote->features) & MESH_REMOTE_FEATURE_PROXY_DONE) != 0;
}

/* Returns: (transfer full): the remote node @id, created (and the connector
 * called) if it is new. */
static MeshRemoteNode *node_get_remote_full(MeshNode *node, const MeshNodeId *id,
					    gboolean as_handle, gboolean bounded)
{
	MeshConnectorFunc connector = NULL;
	void *connector_data = NULL;
	MeshRemoteNode *handle_for_connector = NULL;

	g_mutex_lock(&node->lock);
	MeshRemoteNode *remote = g_hash_table_lookup(node->remotes, id);
	if (!remote && bounded && g_hash_table_size(node->remotes) >= MESH_NODE_MAX_REMOTES) {
		/* Logged, but not for each: a peer may name many at once. */
		gint64 now = g_get_monotonic_time();
		guint refused = ++node->cap_refused;
		gboolean warn = node->cap_warned_at == 0 ||
				now - node->cap_warned_at >= MESH_NODE_CAP_WARN_INTERVAL;
		if (warn) {
			node->cap_warned_at = now;
			node->cap_refused = 0;
		}
		g_mutex_unlock(&node->lock);
		if (warn)
			debug_log(LOG_FIELDS("MESH_NODE", LOG_ID(&node->id)),
				  "mesh: node %s holds %u live remote nodes, the most it takes: "
				  "%u port%s naming another node refused", LOG_ID(&node->id),
				  MESH_NODE_MAX_REMOTES, refused, refused == 1 ? "" : "s");
		return NULL;
	}
	if (!remote) {
		remote = g_new0(MeshRemoteNode, 1);
		remote->ref = 1; /* the table's */
		g_mutex_init(&remote->lock);
		remote->node = node;
		remote->id = *id;
		remote->state = REMOTE_QUEUING;
		g_queue_init(&remote->queued);
		g_hash_table_insert(node->remotes, &remote->id, remote);
		if (node->failed && g_hash_table_contains(node->failed, id)) {
			/* Failed before it was forgotten: it stays failed, nobody connects. */
			g_atomic_int_set(&remote->state, REMOTE_FAILED);
		} else if (node->connector && !as_handle) {
			connector = node->connector;
			connector_data = node->connector_data;
			handle_for_connector = remote_node_ref_internal(remote);
			g_atomic_int_inc(&handle_for_connector->handles);
		}
	}
	remote_node_ref_internal(remote);
	if (as_handle)
		g_atomic_int_inc(&remote->handles);
	g_mutex_unlock(&node->lock);

	if (connector)
		connector(node, handle_for_connector, connector_data);
	return remote;
}

MeshRemoteNode *node_get_remote(MeshNode *node, const MeshNodeId *id)
{
	return node_get_remote_full(node, id, FALSE, FALSE);
}

/* node_get_remote() for a node id a peer named: NULL past MESH_NODE_MAX_REMOTES. */
static MeshRemoteNode *node_get_remote_named(MeshNode *node, const MeshNodeId *id)
{
	return node_get_remote_full(node, id, FALSE, TRUE);
}

MeshRemoteNode *mesh_node_add_remote(MeshNode *node, const MeshNodeId *id)
{
	g_return_val_if_fail(node && id, NULL);
	return node_get_remote_full(node, id, TRUE, FALSE);
}

const MeshNodeId *mesh_remote_node_get_id(MeshRemoteNode *remote)
{
	g_return_val_if_fail(remote, NULL);
	return &remote->id;
}

MeshRemoteNode *mesh_remote_node_ref(MeshRemoteNode *remote)
{
	g_return_val_if_fail(remote, NULL);
	g_atomic_int_inc(&remote->handles);
	return remote_node_ref_internal(remote);
}

void mesh_remote_node_unref(MeshRemoteNode *remote)
{
	if (!remote)
		return;
	if (g_atomic_int_dec_and_test(&remote->handles))
		node_fail_remote(remote, "remote node dropped");
	remote_node_unref_internal(remote);
}

/*
 * A send outside the lock ended. Without the lock (a stream makes one per
 * event): the count drops atomically, and only a send that drops it to 0
 * looks at release_pending. node_fail_remote() sets that before it reads
 * the count, the send drops the count before it reads the flag (both
 * sequentially consistent), so at least one of them sees the other;
 * whichever takes the flag back (an exchange, under the lock) releases the
 * sink, once. The flag seen, the send looks at the count again under the
 * lock: another send may have started after its drop to 0 and before the
 * failure, and still run (then the last of those releases). None starts
 * once the node failed (the count rises only under the lock, while ACTIVE).
 */
static void remote_send_done(MeshRemoteNode *remote)
{
	MeshEventSink sink = {0};
	void *data = NULL;

	SINK_STEP(remote, SINK_STEP_SEND_DECREMENT);
	if (!g_atomic_int_dec_and_test(&remote->sending))
		return;
	SINK_STEP(remote, SINK_STEP_SEND_READ_FLAG);
	if (!g_atomic_int_get(&remote->release_pending))
		return;
	SINK_STEP(remote, SINK_STEP_SEND_LOCK);
	g_mutex_lock(&remote->lock);
	if (g_atomic_int_get(&remote->sending) == 0 &&
	    g_atomic_int_compare_and_exchange(&remote->release_pending, TRUE, FALSE)) {
		sink = remote->released_sink;
		data = remote->released_data;
	}
	g_mutex_unlock(&remote->lock);
	if (sink.destroy)
		sink.destroy(data);
}

static void transmit(const MeshEventSink *sink, void *data, Packet *pk)
{
	struct iovec iov = {pk->data, pk->size};
	sink->send(data, &iov, 1, pk->fds, pk->n_fds);
	packet_free(pk); /* the sink duplicated what it keeps */
}

gboolean mesh_remote_node_connect(MeshRemoteNode *remote, const MeshEventSink *sink,
				  void *user_data)
{
	if (!remote || !sink || !sink->send) {
		if (sink && sink->destroy) /* as on any failure */
			sink->destroy(user_data);
		g_return_val_if_fail(remote && sink && sink->send, FALSE);
	}
	g_mutex_lock(&remote->lock);
	if (remote->state != REMOTE_QUEUING) {
		g_mutex_unlock(&remote->lock);
		if (sink->destroy)
			sink->destroy(user_data);
		return FALSE;
	}
	remote->sink = (MeshEventSink){
		.version = sink->version,
		.send = sink->send,
		.destroy = sink->destroy,
		.caps = sink->version >= 1 ? sink->caps : NULL,
		.try_send = sink->version >= 2 ? sink->try_send : NULL,
	};
	g_atomic_pointer_set(&remote->caps,
			     remote->sink.caps ? remote->sink.caps : &unlimited_caps);
	g_atomic_int_set(&remote->sink_checks, remote->sink.try_send != NULL);
	remote->sink_data = user_data;
	/* Flush in order; packets sent meanwhile may overtake (seq absorbs it). */
	GQueue queued = remote->queued;
	g_queue_init(&remote->queued);
	g_atomic_int_set(&remote->state, REMOTE_ACTIVE);
	g_atomic_int_inc(&remote->sending);
	g_mutex_unlock(&remote->lock);

	Packet *pk;
	while ((pk = g_queue_pop_head(&queued)))
		transmit(sink, user_data, pk);
	remote_send_done(remote);
	return TRUE;
}

static void node_fail_remote(MeshRemoteNode *remote, const char *reason)
{
	GQueue queued;

	g_mutex_lock(&remote->lock);
	if (remote->state == REMOTE_FAILED) {
		g_mutex_unlock(&remote->lock);
		return;
	}
	g_atomic_int_set(&remote->state, REMOTE_FAILED);
	remote->fail_reason = g_strdup(reason);
	queued = remote->queued;
	g_queue_init(&remote->queued);
	MeshNode *node = remote->node ? node_try_ref(remote->node) : NULL;
	/*
	 * Release the transport now: nothing more is sent to a failed node.
	 * A send still running outside the lock releases it when it ends.
	 */
	MeshEventSink sink = remote->sink;
	void *sink_data = remote->sink_data;
	memset(&remote->sink, 0, sizeof(remote->sink));
	remote->sink_data = NULL;
	/* See remote_send_done(): the flag first, then the count. */
	remote->released_sink = sink;
	remote->released_data = sink_data;
	SINK_STEP(remote, SINK_STEP_FAIL_SET_FLAG);
	g_atomic_int_set(&remote->release_pending, TRUE);
	SINK_STEP(remote, SINK_STEP_FAIL_READ_COUNT);
	if (g_atomic_int_get(&remote->sending) > 0 ||
	    !g_atomic_int_compare_and_exchange(&remote->release_pending, TRUE, FALSE))
		sink.destroy = NULL; /* the last send releases it */
	g_mutex_unlock(&remote->lock);

	if (sink.destroy)
		sink.destroy(sink_data);

	Packet *pk;
	while ((pk = g_queue_pop_head(&queued)))
		packet_free(pk);
	if (!node)
		return;

	/*
	 * Fail every port whose peer or target is on that node, or whose move
	 * from there had not completed (events may be lost), except a port on
	 * its way that already holds its peer's close.
	 */
	GList *ports = node_ref_ports(node);
	for (GList *l = ports; l; l = l->next) {
		MeshPort *p = l->data;
		Deferred d;
		deferred_init(&d);
		g_mutex_lock(&p->lock);
		port_remote_failed_locked(p, remote, reason, &d);
		g_mutex_unlock(&p->lock);
		deferred_run(&d);
		port_unref(p);
	}
	g_list_free(ports);
	mesh_node_unref(node);
}

void mesh_remote_node_fail(MeshRemoteNode *remote, const char *reason)
{
	g_return_if_fail(remote && reason);
	node_fail_remote(remote, reason);
}

/* Names a local port as the peer in an outgoing event: it must be addressable. */
static MeshNodeId name_local_port(MeshPort *p, MeshNode *from)
{
	MeshNodeId id;

	g_mutex_lock(&p->lock);
	if (!p->node && from)
		port_associate_locked(p, from);
	id = p->node ? p->node->id : (from ? from->id : (MeshNodeId){{0}});
	g_mutex_unlock(&p->lock);
	return id;
}

/*
 * Whether @msg (@size bytes on the wire with its framing) can go to
 * another node: NULL, or why not. Over the receiver's limits, its seq would
 * never come and the ports it moves would hang; an fd that is not open, or
 * more fds than the transport carries in one event, would end the whole
 * connection. Cheap without resources (the send fast path); only fds the
 * application handed over are checked with a system call (fds_private),
 * and lent ones (mesh_message_add_fd_borrowed()) only for a sink that
 * cannot report them itself (try_send: remote_node_send_event()).
 */
static GError *message_fits(MeshNode *from, MeshRemoteNode *remote, MeshMessage *msg,
			    size_t size)
{
	size_t n_res = mesh_message_get_n_resources(msg);

	if (n_res > MESH_EVENT_MAX_RESOURCES || size > MESH_EVENT_MAX_MESSAGE_SIZE)
		return g_error_new(MESH_ERROR, MESH_ERROR_MESSAGE_TOO_LARGE,
				   "%s: a message of %zu bytes with %zu resources is over a "
				   "node's limits (%u bytes, %u resources): it was not sent",
				   n_res > MESH_EVENT_MAX_RESOURCES ? "too many resources"
								    : "message too large",
				   size, n_res, MESH_EVENT_MAX_MESSAGE_SIZE,
				   MESH_EVENT_MAX_RESOURCES);
	size_t n_fds = 0;
	/*
	 * A sink with try_send reports a lent fd that is not open itself;
	 * otherwise (a version 1 sink, a node not connected yet) it is checked
	 * here.
	 */
	gboolean lent_checked = msg->borrowed && g_atomic_int_get(&remote->sink_checks);
	for (size_t i = 0; i < n_res; i++) {
		gboolean open = TRUE;
		gboolean lent = i < 64 && (msg->borrowed & (G_GUINT64_CONSTANT(1) << i));
		gboolean check = lent ? !lent_checked : !msg->fds_private;
		if (!os_resource_peek(msg->res, i, check ? &open : NULL))
			continue; /* a port, or an empty slot */
		if (!open)
			return g_error_new(MESH_ERROR, MESH_ERROR_INVALID_ARGUMENT,
					   "a message with an fd that is not open (resource %zu): "
					   "it was not sent",
					   i);
		n_fds++;
	}

	/* What the connection carries: its sink's, or the connector's while queued. */
	const MeshTransportCaps *caps = g_atomic_pointer_get(&remote->caps);
	if (!caps)
		caps = g_atomic_pointer_get(&from->connector_caps);
	if (!caps || caps == &unlimited_caps)
		return NULL;
	gsize event_size = MESH_EVENT_HEADER_SIZE + n_res * MESH_RESOURCE_DATA_SIZE + size;
	if (caps->max_event_size && event_size > caps->max_event_size)
		return g_error_new(MESH_ERROR, MESH_ERROR_MESSAGE_TOO_LARGE,
				   "message too large for the transport: an event of %zu bytes "
				   "is over the %zu it carries: it was not sent",
				   (size_t)event_size, (size_t)caps->max_event_size);
	if (!n_fds)
		return NULL;
	if (!caps->max_handles)
		return g_error_new(MESH_ERROR, MESH_ERROR_INVALID_ARGUMENT,
				   "a message with %zu fds toward a node whose transport "
				   "carries no fds: it was "
				   "not sent",
				   n_fds);
	gsize max = caps->max_handles(event_size);
	if (n_fds > max)
		return g_error_new(MESH_ERROR, MESH_ERROR_MESSAGE_TOO_LARGE,
				   "too many fds: a message of %zu bytes with %zu fds is "
				   "over the %zu fds the transport carries in such an "
				   "event: it was not sent",
				   size, n_fds, (size_t)max);
	return NULL;
}

/*
 * The port of @from whose peer (or, proxying, target) is @dest on @remote
 * fails with @error: it sent what cannot go. Rare (a message over the
 * limits): a walk of the table is fine.
 */
static void fail_sending_port(MeshNode *from, MeshRemoteNode *remote, const MeshPortId *dest,
			      const GError *error)
{
	MeshPort *found = NULL;
	GList *ports = node_ref_ports(from);

	for (GList *l = ports; l; l = l->next) {
		MeshPort *p = l->data;
		g_mutex_lock(&p->lock);
		gboolean match = (p->peer.remote == remote && mesh_uuid_equal(&p->peer.id, dest)) ||
				 (p->target.remote == remote && mesh_uuid_equal(&p->target.id, dest));
		g_mutex_unlock(&p->lock);
		if (match && !found)
			found = port_ref(p);
		port_unref(p);
	}
	g_list_free(ports);
	if (found) {
		port_fail_error(found, NULL, error, error->message);
		port_unref(found);
	}
}

void remote_node_send_event(MeshRemoteNode *remote, MeshNode *from, const MeshPortId *dest,
			    Event *ev)
{
	MeshEventHeader h = {.port_id = *dest, .type = ev->type, .flags = ev->flags, .seq = ev->seq};
	uint8_t head[24], extra[MESH_CHANGE_PEER_DATA_SIZE];
	size_t head_len = 0, extra_len = 0;
	MeshMessage *msg = ev->message;
	/* On the stack: a packet goes to the heap only to wait for a connection. */
	Packet local = {0}, *pk = &local;
	GPtrArray *moved = NULL; /* ports moved into this packet */
	uint8_t meta_buf[512], *meta = NULL;
	gboolean refused = FALSE; /* the sink found a lent fd that is not open */

	if (!from) {
		debug_log(LOG_FIELDS("MESH_PEER", LOG_ID(&remote->id)),
			  "mesh: event (type %d) for a remote node from a port without a node dropped",
			  ev->type);
		goto drop;
	}
	if (remote_node_is_failed(remote)) {
		/* Dropped: its fds are closed, the ports it carries fail. */
		if (msg) {
			GError *e = error_node_failure(
				&remote->id, "the node the message was sent to failed");
			Deferred d;
			deferred_init(&d);
			port_fail_message_ports(msg, &remote->id, e, &d);
			deferred_run(&d);
			g_error_free(e);
			ev->message = msg = NULL;
		}
		goto drop;
	}
	if (msg) {
		GError *error = NULL;
		if (message_wire_framing(msg, head, &head_len, &error) < 0) {
			debug_log(LOG_FIELDS("MESH_PEER", LOG_ID(&remote->id)),
				  "mesh: message dropped: %s", error->message);
			g_error_free(error);
			goto drop;
		}
		size_t n_res = mesh_message_get_n_resources(msg);
		GError *too_large = message_fits(from, remote, msg, head_len + msg->size);
		/*
		 * Borrowed fds go to the transport in this call, which keeps
		 * duplicates of what it queues. A node not connected yet keeps
		 * the packet itself: its fds are owned first. (ACTIVE never
		 * turns back into QUEUING.)
		 */
		if (!too_large && msg->borrowed &&
		    g_atomic_int_get(&remote->state) == REMOTE_QUEUING) {
			int r = message_own_fds(msg);
			if (r < 0)
				too_large = message_own_fds_error(r);
		}
		if (too_large) {
			/*
			 * The peer port fails in its place (same seq), and only
			 * it: the resources are released.
			 */
			debug_log(LOG_FIELDS("MESH_PEER", LOG_ID(&remote->id)), "mesh: %s",
				  too_large->message);
			/* The ports it carried fail, and so does the port that sent it. */
			Deferred d;
			deferred_init(&d);
			port_fail_message_ports(msg, NULL, too_large, &d);
			deferred_run(&d);
			fail_sending_port(from, remote, dest, too_large);
			g_error_free(too_large);
			ev->message = msg = NULL;
			ev->type = MESH_EVENT_FAIL_PORT;
			ev->flags = 0;
			ev->culprit = from->id;
			h.type = ev->type;
			h.flags = 0;
			head_len = 0;
		} else {
			h.resource_count = (uint32_t)n_res;
			h.message_size = (uint32_t)(head_len + msg->size);
		}
	}
	if (!msg && ev->type == MESH_EVENT_CHANGE_PEER) {
		MeshChangePeerData cp = {.seq_delta = ev->seq_delta};
		if (ev->new_peer.local) {
			cp.node = name_local_port(ev->new_peer.local, from);
			cp.port = ev->new_peer.local->id;
		} else {
			cp.node = ev->new_peer.remote->id;
			cp.port = ev->new_peer.id;
		}
		protocol_event_write_change_peer(extra, &cp);
		extra_len = MESH_CHANGE_PEER_DATA_SIZE;
		h.message_size = (uint32_t)extra_len;
	} else if (ev->type == MESH_EVENT_FAIL_PORT) {
		MeshNodeId culprit = mesh_uuid_is_zero(&ev->culprit) ? from->id : ev->culprit;
		protocol_event_write_fail_port(extra, &culprit);
		extra_len = MESH_FAIL_PORT_DATA_SIZE;
		h.message_size = (uint32_t)extra_len;
	}

	/*
	 * The event goes out as up to three pieces, never copied here: the
	 * header and resource records (and a fixed payload), the channel
	 * framing, and the message's own bytes.
	 */
	size_t meta_size = MESH_EVENT_HEADER_SIZE +
			   (size_t)h.resource_count * MESH_RESOURCE_DATA_SIZE + extra_len;
	meta = meta_size <= sizeof(meta_buf) ? meta_buf : g_malloc(meta_size);
	protocol_event_write_header(meta, &h);
	uint8_t *rec = meta + MESH_EVENT_HEADER_SIZE;
	if (msg) {
		pk->fds = h.resource_count ? g_new(MeshOsHandle, h.resource_count) : NULL;
		for (guint i = 0; i < h.resource_count; i++, rec += MESH_RESOURCE_DATA_SIZE) {
			MeshResourceData rd = {0};
			if (os_resource_peek(msg->res, i, NULL)) {
				/* Ours to keep until sent: steal it from the message. */
				if (i < 64 && (msg->borrowed & (G_GUINT64_CONSTANT(1) << i)))
					pk->borrowed |= G_GUINT64_CONSTANT(1) << pk->n_fds;
				pk->fds[pk->n_fds++] = os_resource_steal(msg->res, i);
			} else {
				MeshPort *x = mesh_port_from_object(
					mesh_payload_resources_steal_port(msg->res, i));
				if (x) {
					port_encode_for_move(x, from, remote, &rd);
					if (!moved)
						moved = g_ptr_array_new_with_free_func(
							(GDestroyNotify)port_unref);
					g_ptr_array_add(moved, x); /* lives on as a proxy */
				} else {
					/*
					 * An empty slot (its resource was stolen, or was
					 * no port): an all-zero record would read as
					 * "the next fd". It goes as a port that arrives
					 * failed, so that every record keeps its place.
					 */
					mesh_uuid_generate(&rd.id);
					rd.peer_node = from->id;
				}
			}
			protocol_event_write_resource(rec, &rd);
		}
		msg->borrowed = 0; /* all in the packet now */
	} else if (extra_len) {
		memcpy(rec, extra, extra_len);
	}
	struct iovec iov[3] = {{meta, meta_size}, {head, head_len}, {NULL, 0}};
	size_t n_iov = 1;
	if (head_len)
		n_iov = 2;
	if (msg && msg->size) {
		iov[n_iov].iov_base = msg->data;
		iov[n_iov].iov_len = msg->size;
		n_iov++;
	}

	g_mutex_lock(&remote->lock);
	switch (remote->state) {
	case REMOTE_QUEUING: {
		/* Kept until the node connects: one owned copy (its fds owned above). */
		g_assert(pk->borrowed == 0);
		size_t total = 0;
		for (size_t i = 0; i < n_iov; i++)
			total += iov[i].iov_len;
		pk->data = g_malloc(total ? total : 1);
		pk->size = 0;
		for (size_t i = 0; i < n_iov; i++) {
			memcpy(pk->data + pk->size, iov[i].iov_base, iov[i].iov_len);
			pk->size += iov[i].iov_len;
		}
		g_queue_push_tail(&remote->queued, g_memdup2(pk, sizeof(*pk)));
		pk = NULL;
		g_mutex_unlock(&remote->lock);
		break;
	}
	case REMOTE_ACTIVE: {
		MeshEventSink sink = remote->sink;
		void *data = remote->sink_data;
		/* No reference of its own: the caller's keeps @remote until we return. */
		g_atomic_int_inc(&remote->sending);
		g_mutex_unlock(&remote->lock);
		if (sink.try_send)
			refused = sink.try_send(data, iov, n_iov, pk->fds, pk->n_fds) == -EBADF;
		else
			sink.send(data, iov, n_iov, pk->fds, pk->n_fds);
		remote_send_done(remote);
		break;
	}
	default:
		g_mutex_unlock(&remote->lock);
		/* The node failed meanwhile: ports moved into the packet fail now. */
		for (guint i = 0; moved && i < moved->len; i++)
			port_fail_culprit(moved->pdata[i], &remote->id,
					  "the node the port was sent to failed");
		break;
	}
drop:
	if (refused) {
		/*
		 * A lent fd was not open (the sink sent nothing): as
		 * message_fits() would have said. The ports moved into the
		 * packet, and the port that sent it, fail; the peer port fails
		 * in its place (same seq).
		 */
		GError *e = g_error_new(MESH_ERROR, MESH_ERROR_INVALID_ARGUMENT,
					"a message with an fd that is not open: it was not sent");
		debug_log(LOG_FIELDS("MESH_PEER", LOG_ID(&remote->id)), "mesh: %s", e->message);
		for (guint i = 0; moved && i < moved->len; i++)
			port_fail_culprit(moved->pdata[i], &from->id, e->message);
		fail_sending_port(from, remote, dest, e);
		g_error_free(e);
		Event *fail = event_new(MESH_EVENT_FAIL_PORT, 0, ev->seq);
		fail->culprit = from->id;
		remote_node_send_event(remote, from, dest, fail);
	}
	if (meta != meta_buf)
		g_free(meta);
	if (moved)
		g_ptr_array_free(moved, TRUE);
	if (pk)
		packet_clear(pk);
	event_free(ev);
}

#define TOO_MANY_REMOTES \
	"this node holds too many remote nodes (" G_STRINGIFY(MESH_NODE_MAX_REMOTES) \
	" live) to take a port that names one more"

/* Creates the port a ResourceData describes, and acknowledges it to its old node. */
static MeshPort *materialize_port(MeshNode *node, const MeshResourceData *rd, Deferred *d)
{
	MeshPort *z = port_new(&rd->id);
	const char *failure = NULL;
	MeshNodeId culprit = rd->peer_node;
	MeshRemoteNode *old = NULL;
	gboolean refused = FALSE; /* for MESH_NODE_MAX_REMOTES */
	const char *peer_failed = NULL;

	z->next_local_seq = rd->next_local_seq;
	if (mesh_uuid_is_zero(&rd->peer_port)) {
		failure = "the port was failed when it was sent";
	} else if (mesh_uuid_equal(&rd->peer_node, &node->id)) {
		z->peer.local = node_lookup_port(node, &rd->peer_port);
		if (!z->peer.local) {
			failure = "unknown local port";
			culprit = node->id;
		}
	} else {
		z->peer.remote = node_get_remote_named(node, &rd->peer_node);
		z->peer.id = rd->peer_port;
		if (!z->peer.remote) {
			failure = TOO_MANY_REMOTES;
			culprit = node->id;
			refused = TRUE;
		} else if (remote_node_is_failed(z->peer.remote)) {
			/* Why, when a connector refused it ("no extra connections"). */
			peer_failed = z->peer.remote->fail_reason ? z->peer.remote->fail_reason
								  : "the peer's node failed";
		}
	}
	if (!failure && !mesh_uuid_equal(&rd->old_node, &node->id))
		old = node_get_remote_named(node, &rd->old_node);
	if (peer_failed &&
	    !(old && old != z->peer.remote && remote_node_has_ext_moves(old) &&
	      !remote_node_is_failed(old))) {
		failure = peer_failed;
		remote_node_unref_internal(old);
		old = NULL;
	}
	if ((!failure || refused) && !mesh_uuid_equal(&rd->old_node, &node->id)) {
		if (!old)
			old = node_get_remote_named(node, &rd->old_node);
		if (!old) {
			failure = TOO_MANY_REMOTES;
			culprit = node->id;
		} else if (refused) {
			/* Known: it hears why below. */
		} else if (remote_node_is_failed(old)) {
			failure = "the sending node failed";
			culprit = rd->old_node;
		}
	}

	g_mutex_lock(&z->lock);
	if (!failure && !port_associate_locked(z, node)) {
		failure = "duplicate port id";
		culprit = rd->old_node;
	}
	if (failure) {
		/* Not yet peered from the peer's view: fail quietly, tell no one. */
		peer_addr_defer_clear(&z->peer, d);
		z->state = PORT_FAILED;
		z->culprit = culprit;
		z->error = error_node_failure(&culprit, failure);
	} else if (old && old != z->peer.remote && remote_node_has_ext_moves(old)) {
		/*
		 * Until the proxy on the old node has passed on everything (its
		 * PROXY_DONE), a failure of that node would leave this port
		 * waiting forever for what the proxy held, and its peer failed
		 * without a word to us: the port depends on that node too.
		 * Checked after entering the table, against a failure meanwhile.
		 */
		z->move_from = remote_node_ref_internal(old);
		/*
		 * A peer whose node failed may have closed, and its close be
		 * on its way through the old node: the port fails when the move
		 * ends without it (port_remote_failed_locked()).
		 */
		z->peer_gone = peer_failed != NULL;
		if (remote_node_is_failed(old))
			port_fail_locked(z, &rd->old_node, "the sending node failed during the move",
					 d);
	}
	g_mutex_unlock(&z->lock);

	/*
	 * Acknowledged to the port's old home, which then proxies to it. A
	 * port refused for the remote-node bound is failed there instead,
	 * naming this node: its peer learns at once rather than waiting.
	 */
	if (!failure || refused) {
		Event *ev;
		if (!failure) {
			ev = event_new(MESH_EVENT_ACK_PORT, 0, 0);
		} else {
			ev = event_new(MESH_EVENT_FAIL_PORT, 0, 0);
			ev->culprit = node->id;
			ev->reason = g_strdup(failure); /* told only on this node */
		}
		PeerAddr to = {.remote = old, .id = rd->old_port};
		if (old) {
			deferred_event(d, &to, ev, node);
		} else if (mesh_uuid_equal(&rd->old_node, &node->id)) {
			/* Sent by this very node: tell it locally. */
			MeshPort *x = node_lookup_port(node, &rd->old_port);
			PeerAddr local = {.local = x};
			if (x)
				deferred_event(d, &local, ev, node);
			else
				event_discard(ev, d);
			port_unref(x);
		} else {
			event_discard(ev, d);
		}
	}
	if (old)
		remote_node_unref_internal(old);
	return z;
}

void mesh_node_receive_event(MeshNode *node, const MeshNodeId *from, const uint8_t *data,
			     size_t size, MeshOsHandle *fds, size_t n_fds)
{
	mesh_node_receive_event_full(node, from, data, size, fds, n_fds, NULL, NULL);
}

/*
 * Delivers an event parsed already (@view points into memory that
 * @data_free, if set, gives back). Consumes @fds and the memory, as
 * mesh_node_receive_event_full() does.
 */
static void node_receive_view(MeshNode *node, const MeshNodeId *from, const MeshEventView *view,
			      MeshOsHandle *fds, size_t n_fds, GDestroyNotify data_free,
			      gpointer data_owner)
{
	Deferred d;
	size_t next_fd = 0;
	Event *ev = NULL;
	char id[33];

	deferred_init(&d);
	const MeshEventHeader *h = &view->header;
	ev = event_new(h->type, h->flags, h->seq);

	switch (h->type) {
	case MESH_EVENT_MESSAGE:
		if (h->flags & MESH_EVENT_FLAG_MESSAGE) {
			/* Most messages carry no resources: no list for them. */
			MeshPayloadResources *res =
				h->resource_count ? mesh_payload_resources_new() : NULL;
			for (guint i = 0; i < h->resource_count; i++) {
				MeshResourceData rd;
				protocol_event_read_resource(view, i, &rd);
				if (mesh_uuid_is_zero(&rd.id)) {
					if (next_fd >= n_fds) {
						debug_log(LOG_FIELDS("MESH_PEER", LOG_ID(from)),
							  "mesh: event names more fds than it carries");
						mesh_payload_resources_free(res);
						goto bad;
					}
					os_resource_append_take(res, fds[next_fd]);
					fds[next_fd++] = MESH_OS_HANDLE_INVALID;
				} else {
					MeshPort *z = materialize_port(node, &rd, &d);
					mesh_payload_resources_append_port_take(res, &z->object);
				}
			}
			if (data_free && h->message_size) {
				/* The payload stays where it is (a mapping); the message owns it. */
				ev->message = message_new_bytes_take((uint8_t *)view->payload,
								     h->message_size, res,
								     MESH_WRAP_WIRE);
				ev->message->data_free = data_free;
				ev->message->data_owner = data_owner;
				data_free = NULL;
			} else {
				ev->message = message_new_bytes_copy(view->payload, h->message_size,
								     res, MESH_WRAP_WIRE);
			}
			/* Its fds are the node's, taken from the transport. */
			ev->message->fds_private = TRUE;
		}
		break;
	case MESH_EVENT_CHANGE_PEER: {
		MeshChangePeerData cp;
		protocol_event_read_change_peer(view, &cp);
		ev->seq_delta = cp.seq_delta;
		if (mesh_uuid_equal(&cp.node, &node->id)) {
			ev->new_peer.local = node_lookup_port(node, &cp.port);
			/*
			 * The port it names is gone: it ended before its peer
			 * heard of it (port.c: tolerated only after a close).
			 */
			ev->new_peer_ended = !ev->new_peer.local;
		} else {
			ev->new_peer.remote = node_get_remote_named(node, &cp.node);
			ev->new_peer.id = cp.port;
			if (!ev->new_peer.remote) {
				event_free(ev);
				ev = event_new(MESH_EVENT_FAIL_PORT, 0, 0);
				ev->culprit = *from;
				ev->reason = g_strdup("CHANGE_PEER names one node too many");
			}
		}
		break;
	}
	case MESH_EVENT_FAIL_PORT:
		protocol_event_read_fail_port(view, &ev->culprit);
		ev->culprit_is_sender = mesh_uuid_equal(&ev->culprit, from);
		break;
	case MESH_EVENT_PROXY_DONE:
		ev->culprit = *from; /* the port heeds it only from the node it moved from */
		break;
	default:
		break;
	}

	if (next_fd < n_fds)
		debug_log(LOG_FIELDS("MESH_PEER", LOG_ID(from)),
			  "mesh: %zu fds more than the event uses closed", n_fds - next_fd);

	MeshPort *dest = node_lookup_port(node, &h->port_id);
	if (!dest) {
		debug_log(LOG_FIELDS("MESH_PEER", LOG_ID(from), "MESH_PORT", LOG_ID(&h->port_id)),
			  "mesh: event for unknown port %s dropped",
			  mesh_uuid_to_string(&h->port_id, id));
		goto bad;
	}
	deferred_run(&d); /* acknowledge the ports that arrived first */
	port_deliver(dest, ev);
	port_unref(dest);
	ev = NULL;
	goto out;

bad:
	event_discard(ev, &d);
	ev = NULL;
out:
	for (size_t i = 0; i < n_fds; i++)
		os_handle_close(fds[i]);
	deferred_run(&d);
	if (data_free) /* not handed to a message */
		data_free(data_owner);
}

void mesh_node_receive_event_full(MeshNode *node, const MeshNodeId *from, const uint8_t *data,
				  size_t size, MeshOsHandle *fds, size_t n_fds, GDestroyNotify data_free,
				  gpointer data_owner)
{
	MeshEventView view;
	char id[33];

	if (!node || !from || (!data && size > 0) || (!fds && n_fds > 0)) {
		/* Consumed, as always: the fds closed, the memory given back. */
		for (size_t i = 0; fds && i < n_fds; i++)
			os_handle_close(fds[i]);
		if (data_free)
			data_free(data_owner);
		g_return_if_fail(node && from);
		g_return_if_fail(data || size == 0);
		g_return_if_fail(fds || n_fds == 0);
	}
	if (protocol_event_parse(data, size, &view) < 0) {
		debug_log(LOG_FIELDS("MESH_NODE", LOG_ID(&node->id), "MESH_PEER", LOG_ID(from)),
			  "mesh: malformed event of %zu bytes from node %s dropped", size,
			  mesh_uuid_to_string(from, id));
		for (size_t i = 0; i < n_fds; i++)
			os_handle_close(fds[i]);
		if (data_free)
			data_free(data_owner);
		return;
	}
	node_receive_view(node, from, &view, fds, n_fds, data_free, data_owner);
}

/*
 * A run of consecutive messages to one port, without handles or ports in
 * them (mesh_node_receive_events()): delivered under one lock of the port,
 * their deferred effects (wake-ups, sends of a proxy) run after the last.
 */
#define EVENT_RUN_MAX 64

typedef struct {
	MeshPort *port; /* (owned): the port of the run, kept while the port stays */
	guint n;
	Event *events[EVENT_RUN_MAX];
} EventRun;

/* Events of a run whose port left the table meanwhile: one at a time, as they came. */
static void event_run_deliver_rest(MeshNode *node, const MeshNodeId *from,
				   const MeshPortId *port_id, Event **events, guint n)
{
	char id[33];

	for (guint i = 0; i < n; i++) {
		MeshPort *dest = node_lookup_port(node, port_id);
		if (dest) {
			port_deliver(dest, events[i]);
			port_unref(dest);
			continue;
		}
		debug_log(LOG_FIELDS("MESH_PEER", LOG_ID(from), "MESH_PORT", LOG_ID(port_id)),
			  "mesh: event for unknown port %s dropped", mesh_uuid_to_string(port_id, id));
		Deferred d;
		deferred_init(&d);
		event_discard(events[i], &d);
		deferred_run(&d);
	}
}

static void event_run_flush(MeshNode *node, const MeshNodeId *from, EventRun *run)
{
	Deferred d;
	guint i = 0;

	if (!run->n)
		return;
	deferred_init(&d);
	g_mutex_lock(&run->port->lock);
	/*
	 * Each event reaches the port only while it is the one in the table
	 * under its id (an earlier one may have ended it), exactly as if each
	 * had been looked up on its own.
	 */
	for (; i < run->n && run->port->node == node; i++)
		port_receive_locked(run->port, run->events[i], &d);
	g_mutex_unlock(&run->port->lock);
	deferred_run(&d);
	event_run_deliver_rest(node, from, &run->port->id, run->events + i, run->n - i);
	run->n = 0;
}

static void event_run_end(MeshNode *node, const MeshNodeId *from, EventRun *run)
{
	event_run_flush(node, from, run);
	port_unref(run->port);
	run->port = NULL;
}

/*
 * Adds the event @e (parsed: @view) to @run if it is a message without
 * resources to a port of @node (flushing the run first if it was for
 * another port).
 * FALSE if it is anything else: nothing was done with it.
 */
static gboolean event_run_add(MeshNode *node, const MeshNodeId *from, EventRun *run,
			      const MeshEventData *e, const MeshEventView *view)
{
	if (e->n_handles)
		return FALSE;
	const MeshEventHeader *h = &view->header;
	if (h->type != MESH_EVENT_MESSAGE || h->resource_count)
		return FALSE;
	if (!run->port || !mesh_uuid_equal(&run->port->id, &h->port_id)) {
		event_run_end(node, from, run);
		run->port = node_lookup_port(node, &h->port_id);
		if (!run->port)
			return FALSE; /* logged by the single path */
	}
	Event *ev = event_new(h->type, h->flags, h->seq);
	if (h->flags & MESH_EVENT_FLAG_MESSAGE)
		ev->message = message_new_bytes_copy(view->payload, h->message_size, NULL,
						     MESH_WRAP_WIRE);
	run->events[run->n++] = ev;
	if (run->n == EVENT_RUN_MAX)
		event_run_flush(node, from, run);
	return TRUE;
}

void mesh_node_receive_events(MeshNode *node, const MeshNodeId *from, const MeshEventData *events,
			      size_t n_events)
{
	EventRun run = {0};

	if (!node || !from || (!events && n_events)) {
		/* Consumed, as always: the handles closed. */
		for (size_t i = 0; events && i < n_events; i++)
			for (size_t j = 0; events[i].handles && j < events[i].n_handles; j++)
				os_handle_close(events[i].handles[j]);
		g_return_if_fail(node && from);
		g_return_if_fail(events || n_events == 0);
	}
	for (size_t i = 0; i < n_events; i++) {
		const MeshEventData *e = &events[i];
		/* Parsed once: what does not join the run is delivered from the same view. */
		MeshEventView view;
		gboolean parsed = (e->data || !e->size) && (e->handles || !e->n_handles) &&
				  protocol_event_parse(e->data, e->size, &view) >= 0;
		if (parsed && event_run_add(node, from, &run, e, &view))
			continue;
		/* Anything else ends the run first: the order of effects is the arrival's. */
		event_run_end(node, from, &run);
		if (parsed)
			node_receive_view(node, from, &view, e->handles, e->n_handles, NULL, NULL);
		else /* malformed, or a bad argument: logged and consumed there */
			mesh_node_receive_event(node, from, e->data, e->size, e->handles,
						e->n_handles);
	}
	event_run_end(node, from, &run);
}

MeshPort *mesh_node_add_port(MeshNode *node, const MeshPortId *id, const MeshNodeId *peer_node,
			     const MeshPortId *peer_port)
{
	gboolean ok;

	g_return_val_if_fail(node && id && peer_node && peer_port, NULL);
	MeshPort *p = port_new(id);
	p->peer.remote = node_get_remote(node, peer_node);
	p->peer.id = *peer_port;
	g_mutex_lock(&p->lock);
	ok = port_associate_locked(p, node);
	if (ok && remote_node_is_failed(p->peer.remote)) {
		Deferred d;
		deferred_init(&d);
		port_fail_locked(p, peer_node, "the peer's node failed", &d);
		g_mutex_unlock(&p->lock);
		deferred_run(&d);
	} else {
		g_mutex_unlock(&p->lock);
	}
	if (!ok) {
		port_unref(p);
		return NULL;
	}
	return p;
}
