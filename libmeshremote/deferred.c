/* SPDX-License-Identifier: MIT */
/* Deferred effects, events, peer addresses, ids and the error domain. */
#include <sys/random.h>

#include <string.h>

#include "remote-private.h"

G_DEFINE_QUARK(mesh-error-quark, mesh_error)

void mesh_uuid_generate(MeshUuid *ret)
{
	size_t got = 0;

	g_return_if_fail(ret);
	while (got < sizeof(ret->bytes)) {
		ssize_t k = getrandom(ret->bytes + got, sizeof(ret->bytes) - got, 0);
		if (k < 0) {
			if (errno == EINTR)
				continue;
			g_error("getrandom failed: %s", g_strerror(errno));
		}
		got += (size_t)k;
	}
}

gboolean mesh_uuid_is_zero(const MeshUuid *id)
{
	g_return_val_if_fail(id, FALSE);
	for (size_t i = 0; i < sizeof(id->bytes); i++)
		if (id->bytes[i])
			return FALSE;
	return TRUE;
}

const char *mesh_uuid_to_string(const MeshUuid *id, char buf[33])
{
	static const char hex[] = "0123456789abcdef";
	size_t i = 0, k = 0;

	g_return_val_if_fail(id && buf, NULL);
	while (i < 16 && id->bytes[i] == 0)
		i++;
	if (i == 16) {
		buf[0] = '0';
		buf[1] = '\0';
		return buf;
	}
	if (id->bytes[i] < 0x10) {
		buf[k++] = hex[id->bytes[i] & 0xf];
		i++;
	}
	for (; i < 16; i++) {
		buf[k++] = hex[id->bytes[i] >> 4];
		buf[k++] = hex[id->bytes[i] & 0xf];
	}
	buf[k] = '\0';
	return buf;
}

GError *mesh_error_node_failure(const MeshNodeId *node, const char *reason)
{
	char id[33];

	if (!node || mesh_uuid_is_zero(node))
		return g_error_new(MESH_ERROR, MESH_ERROR_NODE_FAILURE, "local mesh failure: %s",
				   reason);
	return g_error_new(MESH_ERROR, MESH_ERROR_NODE_FAILURE,
			   "communication with node %s failed: %s", mesh_uuid_to_string(node, id),
			   reason);
}

/*
 * Small blocks (events, small messages) from a per-thread cache: a stream
 * makes and frees one of each per 64-byte message, mostly on one thread.
 */
#define SMALL_CACHE_MAX 256

typedef struct {
	guint n;
	void *blocks[SMALL_CACHE_MAX];
} SmallCache;

static void small_cache_free(gpointer data)
{
	SmallCache *c = data;
	for (guint i = 0; i < c->n; i++)
		g_free(c->blocks[i]);
	g_free(c);
}

static GPrivate small_cache_key = G_PRIVATE_INIT(small_cache_free);

static SmallCache *small_cache(void)
{
	SmallCache *c = g_private_get(&small_cache_key);
	if (!c) {
		c = g_new0(SmallCache, 1);
		g_private_set(&small_cache_key, c);
	}
	return c;
}

void *small_block_alloc(void)
{
	SmallCache *c = small_cache();
	return c->n ? c->blocks[--c->n] : g_malloc(SMALL_BLOCK_SIZE);
}

void small_block_free(void *block)
{
	SmallCache *c = small_cache();
	if (c->n < SMALL_CACHE_MAX)
		c->blocks[c->n++] = block;
	else
		g_free(block);
}

G_STATIC_ASSERT(sizeof(Event) <= SMALL_BLOCK_SIZE);

Event *event_new(MeshEventType type, guint8 flags, guint64 seq)
{
	Event *ev = memset(small_block_alloc(), 0, sizeof(Event));
	ev->type = type;
	ev->flags = flags;
	ev->seq = seq;
	return ev;
}

void event_free(Event *ev)
{
	if (!ev)
		return;
	mesh_message_free(ev->message);
	peer_addr_clear(&ev->new_peer);
	g_free(ev->reason);
	small_block_free(ev);
}

void peer_addr_copy(PeerAddr *dst, const PeerAddr *src)
{
	dst->local = src->local ? port_ref(src->local) : NULL;
	dst->remote = src->remote ? remote_node_ref_internal(src->remote) : NULL;
	dst->id = src->id;
}

void peer_addr_clear(PeerAddr *addr)
{
	MeshPort *local = addr->local;
	MeshRemoteNode *remote = addr->remote;

	addr->local = NULL;
	addr->remote = NULL;
	if (local)
		port_unref(local);
	if (remote)
		remote_node_unref_internal(remote);
}

gboolean peer_addr_is_set(const PeerAddr *addr)
{
	return addr->local || addr->remote;
}

void deferred_init(Deferred *d)
{
	d->n_out = 0;
	d->out_more = NULL;
	d->n_calls = 0;
	d->calls_more = NULL;
	d->messages = NULL;
	d->ports = NULL;
}

void deferred_event(Deferred *d, const PeerAddr *to, Event *ev, MeshNode *from)
{
	Outgoing o = {.event = ev, .from = from ? mesh_node_ref(from) : NULL};

	peer_addr_copy(&o.to, to);
	if (d->n_out < DEFERRED_INLINE) {
		d->out[d->n_out++] = o;
		return;
	}
	if (!d->out_more)
		d->out_more = g_array_new(FALSE, FALSE, sizeof(Outgoing));
	g_array_append_val(d->out_more, o);
}

void deferred_release_message(Deferred *d, MeshMessage *msg)
{
	if (!msg)
		return;
	if (!d->messages)
		d->messages = g_ptr_array_new();
	g_ptr_array_add(d->messages, msg);
}

void deferred_unref_port(Deferred *d, MeshPort *port)
{
	if (!port)
		return;
	if (!d->ports)
		d->ports = g_ptr_array_new();
	g_ptr_array_add(d->ports, port);
}

static void unref_remote_cb(void *data)
{
	remote_node_unref_internal(data);
}

void deferred_unref_remote(Deferred *d, MeshRemoteNode *remote)
{
	if (remote)
		deferred_call(d, unref_remote_cb, remote);
}

void peer_addr_defer_clear(PeerAddr *addr, Deferred *d)
{
	deferred_unref_port(d, addr->local);
	deferred_unref_remote(d, addr->remote);
	addr->local = NULL;
	addr->remote = NULL;
}

void event_discard(Event *ev, Deferred *d)
{
	if (!ev)
		return;
	deferred_release_message(d, ev->message);
	ev->message = NULL;
	peer_addr_defer_clear(&ev->new_peer, d);
	g_free(ev->reason);
	small_block_free(ev);
}

void deferred_call(Deferred *d, void (*func)(void *), void *data)
{
	DeferredCall c = {func, data};

	if (d->n_calls < DEFERRED_INLINE) {
		d->call[d->n_calls++] = c;
		return;
	}
	if (!d->calls_more)
		d->calls_more = g_array_new(FALSE, FALSE, sizeof(DeferredCall));
	g_array_append_val(d->calls_more, c);
}

static void outgoing_run(Outgoing *o)
{
	if (o->to.local)
		port_deliver(o->to.local, o->event);
	else if (o->to.remote)
		remote_node_send_event(o->to.remote, o->from, &o->to.id, o->event);
	else
		event_free(o->event);
	peer_addr_clear(&o->to);
	if (o->from)
		mesh_node_unref(o->from);
}

void deferred_run(Deferred *d)
{
	/* Events first, in the order they were made; take them out of @d first. */
	if (d->n_out) {
		Outgoing out[DEFERRED_INLINE];
		guint n = d->n_out;
		GArray *more = d->out_more;
		memcpy(out, d->out, n * sizeof(Outgoing));
		d->n_out = 0;
		d->out_more = NULL;
		for (guint i = 0; i < n; i++)
			outgoing_run(&out[i]);
		for (guint i = 0; more && i < more->len; i++)
			outgoing_run(&g_array_index(more, Outgoing, i));
		if (more)
			g_array_free(more, TRUE);
	}
	if (d->n_calls) {
		DeferredCall calls[DEFERRED_INLINE];
		guint n = d->n_calls;
		GArray *more = d->calls_more;
		memcpy(calls, d->call, n * sizeof(DeferredCall));
		d->n_calls = 0;
		d->calls_more = NULL;
		for (guint i = 0; i < n; i++)
			calls[i].func(calls[i].data);
		for (guint i = 0; more && i < more->len; i++)
			g_array_index(more, DeferredCall, i).func(g_array_index(more, DeferredCall, i).data);
		if (more)
			g_array_free(more, TRUE);
	}
	if (d->messages) {
		GPtrArray *msgs = d->messages;
		d->messages = NULL;
		for (guint i = 0; i < msgs->len; i++)
			mesh_message_free(msgs->pdata[i]);
		g_ptr_array_free(msgs, TRUE);
	}
	if (d->ports) {
		GPtrArray *ports = d->ports;
		d->ports = NULL;
		for (guint i = 0; i < ports->len; i++)
			port_unref(ports->pdata[i]);
		g_ptr_array_free(ports, TRUE);
	}
	/* Running the above may have deferred more (nested deliveries run their own). */
	if (d->n_out || d->n_calls || d->messages || d->ports)
		deferred_run(d);
}
