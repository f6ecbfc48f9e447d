/* SPDX-License-Identifier: MIT */
/*
 * TEST DOUBLE of the node side of <meshremote/mesh-transport.h>, for
 * test-alpc-wire: runs the real ALPC node code (alpc-node.c) with the real
 * GLib under Wine before libmeshremote's core builds for Windows. It keeps
 * the interface's contract (events queued until a sink connects and then
 * flushed in order, sends during the flush queued behind it, the connector called for an unknown node, handles
 * consumed by receive, data_free called once) and records what the
 * transport hands it. It decodes no events.
 */
#include "fake-core.h"

#include <string.h>

struct MeshRemoteNode {
	gint ref;
	MeshNode *node;
	MeshNodeId id;
	MeshEventSink sink;
	void *sink_data;
	gboolean connected, failed;
	gboolean flushing; /* connect is sending the queue: sends still queue */
	GPtrArray *queued; /* GBytes */
};

struct MeshNode {
	gint ref;
	MeshNodeId id;
	GMutex lock;
	MeshConnectorFunc connector;
	void *connector_data;
	GHashTable *remotes; /* id -> MeshRemoteNode (borrowed; the node keeps one ref) */
	GAsyncQueue *events; /* FakeEvent* */
	GAsyncQueue *failures; /* char* "<id>: reason" */
	FakeConnectHook connect_hook;
	void *connect_hook_data;
};

void mesh_uuid_generate(MeshUuid *ret)
{
	for (int i = 0; i < 16; i++)
		ret->bytes[i] = (uint8_t)g_random_int();
}

gboolean mesh_uuid_is_zero(const MeshUuid *id)
{
	static const MeshUuid zero;

	return memcmp(id, &zero, sizeof(zero)) == 0;
}

const char *mesh_uuid_to_string(const MeshUuid *id, char buf[33])
{
	for (int i = 0; i < 16; i++)
		g_snprintf(buf + 2 * i, 3, "%02x", id->bytes[i]);
	return buf;
}

guint mesh_uuid_hash(gconstpointer key)
{
	guint h;

	memcpy(&h, key, sizeof(h));
	return h;
}

gboolean mesh_uuid_equal(gconstpointer a, gconstpointer b)
{
	return memcmp(a, b, sizeof(MeshUuid)) == 0;
}

GQuark mesh_error_quark(void)
{
	return g_quark_from_static_string("mesh-error-quark");
}

MeshNode *mesh_node_new_with_id(const MeshNodeId *id)
{
	MeshNode *n = g_new0(MeshNode, 1);

	n->ref = 1;
	n->id = *id;
	g_mutex_init(&n->lock);
	n->remotes = g_hash_table_new(mesh_uuid_hash, mesh_uuid_equal);
	n->events = g_async_queue_new();
	n->failures = g_async_queue_new();
	return n;
}

void mesh_node_unref(MeshNode *node)
{
	if (node && g_atomic_int_dec_and_test(&node->ref)) {
		/* The remotes the node kept are leaked: test-only. */
		g_hash_table_unref(node->remotes);
		g_async_queue_unref(node->events);
		g_async_queue_unref(node->failures);
		g_free(node);
	}
}

const MeshNodeId *mesh_node_get_id(MeshNode *node)
{
	return &node->id;
}

void mesh_node_set_connector(MeshNode *node, MeshConnectorFunc func, void *user_data)
{
	g_mutex_lock(&node->lock);
	node->connector = func;
	node->connector_data = user_data;
	g_mutex_unlock(&node->lock);
}

void mesh_node_set_connector_caps(MeshNode *node, const MeshTransportCaps *caps)
{
	(void)node;
	(void)caps;
}

static MeshRemoteNode *remote_get(MeshNode *node, const MeshNodeId *id, gboolean *created)
{
	MeshRemoteNode *r;

	g_mutex_lock(&node->lock);
	r = g_hash_table_lookup(node->remotes, id);
	*created = !r;
	if (!r) {
		r = g_new0(MeshRemoteNode, 1);
		r->ref = 1; /* the node's */
		r->node = node;
		r->id = *id;
		r->queued = g_ptr_array_new_with_free_func((GDestroyNotify)g_bytes_unref);
		g_hash_table_insert(node->remotes, &r->id, r);
	}
	g_atomic_int_inc(&r->ref);
	g_mutex_unlock(&node->lock);
	return r;
}

MeshRemoteNode *mesh_node_add_remote(MeshNode *node, const MeshNodeId *id)
{
	gboolean created;

	return remote_get(node, id, &created);
}

gboolean mesh_remote_node_connect(MeshRemoteNode *remote, const MeshEventSink *sink,
				  void *user_data)
{
	g_mutex_lock(&remote->node->lock);
	if (remote->connected || remote->failed || remote->flushing) {
		g_mutex_unlock(&remote->node->lock);
		if (sink->destroy)
			sink->destroy(user_data);
		return FALSE;
	}
	remote->sink = *sink;
	remote->sink_data = user_data;
	/*
	 * Events sent while the queue is flushed are queued behind it (not
	 * sent straight to the sink, which could overtake the queue): the
	 * remote counts as connected only once its queue is empty.
	 */
	remote->flushing = TRUE;
	FakeConnectHook hook = remote->node->connect_hook;
	void *hook_data = remote->node->connect_hook_data;
	g_mutex_unlock(&remote->node->lock);
	if (hook)
		hook(remote->node, &remote->id, hook_data);
	for (;;) {
		g_autoptr(GPtrArray) queued = NULL;

		g_mutex_lock(&remote->node->lock);
		if (remote->queued->len == 0 || remote->failed) {
			g_ptr_array_set_size(remote->queued, 0);
			remote->flushing = FALSE;
			remote->connected = TRUE;
			g_mutex_unlock(&remote->node->lock);
			break;
		}
		queued = remote->queued;
		remote->queued = g_ptr_array_new_with_free_func((GDestroyNotify)g_bytes_unref);
		g_mutex_unlock(&remote->node->lock);
		for (guint i = 0; i < queued->len; i++) {
			gsize size;
			const void *data = g_bytes_get_data(queued->pdata[i], &size);
			struct iovec iov = { (void *)data, size };

			sink->send(user_data, &iov, 1, NULL, 0);
		}
	}
	return TRUE;
}

void mesh_remote_node_set_features(MeshRemoteNode *remote, MeshRemoteFeatures features)
{
	(void)remote;
	(void)features;
}

void mesh_remote_node_fail(MeshRemoteNode *remote, const char *reason)
{
	char hex[33];
	gboolean was;

	g_mutex_lock(&remote->node->lock);
	was = remote->failed;
	remote->failed = TRUE;
	g_mutex_unlock(&remote->node->lock);
	if (!was)
		g_async_queue_push(remote->node->failures,
				   g_strdup_printf("%s: %s", mesh_uuid_to_string(&remote->id, hex),
						   reason));
}

MeshRemoteNode *mesh_remote_node_ref(MeshRemoteNode *remote)
{
	g_atomic_int_inc(&remote->ref);
	return remote;
}

void mesh_remote_node_unref(MeshRemoteNode *remote)
{
	/* The node's own reference keeps it: nothing is freed here. */
	if (remote && g_atomic_int_dec_and_test(&remote->ref))
		g_error("fake core: a remote lost the node's reference");
}

const MeshNodeId *mesh_remote_node_get_id(MeshRemoteNode *remote)
{
	return &remote->id;
}

gsize mesh_event_get_size(const guint8 *data, gsize size)
{
	guint64 n;

	/* Test events: a u64 length, then the bytes. */
	if (size < 8)
		return 0;
	memcpy(&n, data, 8);
	return n <= size - 8 ? (gsize)n + 8 : 0;
}

void mesh_node_receive_event_full(MeshNode *node, const MeshNodeId *from, const uint8_t *data,
				  size_t size, MeshOsHandle *handles, size_t n_handles,
				  GDestroyNotify data_free, gpointer data_owner)
{
	FakeEvent *e = g_new0(FakeEvent, 1);

	e->from = *from;
	e->data = g_bytes_new(data, size);
	e->handles = g_memdup2(handles, n_handles * sizeof(*handles));
	e->n_handles = n_handles;
	e->zero_copy = data_free != NULL;
	if (data_free)
		data_free(data_owner); /* copied: done with it at once */
	g_async_queue_push(node->events, e);
}

void mesh_node_receive_event(MeshNode *node, const MeshNodeId *from, const uint8_t *data,
			     size_t size, MeshOsHandle *handles, size_t n_handles)
{
	mesh_node_receive_event_full(node, from, data, size, handles, n_handles, NULL, NULL);
}

gboolean mesh_node_wait_idle(MeshNode *node, guint max_ports, gint64 timeout_us)
{
	(void)node;
	(void)max_ports;
	(void)timeout_us;
	return TRUE;
}

void fake_node_send(MeshNode *node, const MeshNodeId *to, const void *data, gsize size,
		    const MeshOsHandle *handles, gsize n_handles)
{
	gboolean created;
	MeshRemoteNode *r = remote_get(node, to, &created);
	MeshConnectorFunc connector;
	void *cdata;

	g_mutex_lock(&node->lock);
	connector = node->connector;
	cdata = node->connector_data;
	if (!r->connected && !r->failed) {
		g_assert(n_handles == 0); /* queued events carry none here */
		g_ptr_array_add(r->queued, g_bytes_new(data, size));
		g_mutex_unlock(&node->lock);
		if (created && connector)
			connector(node, mesh_remote_node_ref(r), cdata);
		mesh_remote_node_unref(r);
		return;
	}
	g_mutex_unlock(&node->lock);
	if (r->connected && !r->failed) {
		struct iovec iov = { (void *)data, size };

		r->sink.send(r->sink_data, &iov, 1, handles, n_handles);
	}
	mesh_remote_node_unref(r);
}

void fake_node_set_connect_hook(MeshNode *node, FakeConnectHook hook, void *data)
{
	g_mutex_lock(&node->lock);
	node->connect_hook = hook;
	node->connect_hook_data = data;
	g_mutex_unlock(&node->lock);
}

FakeEvent *fake_node_next_event(MeshNode *node, gint64 timeout_us)
{
	return g_async_queue_timeout_pop(node->events, (guint64)timeout_us);
}

char *fake_node_next_failure(MeshNode *node, gint64 timeout_us)
{
	return g_async_queue_timeout_pop(node->failures, (guint64)timeout_us);
}

void fake_event_free(FakeEvent *e)
{
	if (!e)
		return;
	for (gsize i = 0; i < e->n_handles; i++)
		CloseHandle(e->handles[i]);
	g_free(e->handles);
	g_bytes_unref(e->data);
	g_free(e);
}
