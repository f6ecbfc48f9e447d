/* SPDX-License-Identifier: MIT */
/*
 * Events, peer addresses and deferred effects: what a port does under its
 * lock is recorded and run after unlocking (deferred_run()).
 */
#include <string.h>

#include "remote-private.h"

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

/*
 * A message for a port in this process lives on past the send: it owns
 * its fds. One whose borrowed fd cannot be duplicated is not delivered:
 * the port fails in its place (and tells its peer, the sender), the ports
 * it carries fail.
 */
static gboolean outgoing_own_fds(Outgoing *o)
{
	MeshMessage *msg = o->event->message;
	int r = msg && msg->borrowed ? message_own_fds(msg) : 0;
	if (r >= 0)
		return TRUE;
	GError *e = message_own_fds_error(r);
	Deferred d;
	deferred_init(&d);
	port_fail_message_ports(msg, NULL, e, &d);
	o->event->message = NULL;
	deferred_run(&d);
	port_fail_error(o->to.local, NULL, e, e->message);
	g_error_free(e);
	event_free(o->event);
	return FALSE;
}

static void outgoing_run(Outgoing *o)
{
	if (o->to.local) {
		if (outgoing_own_fds(o))
			port_deliver(o->to.local, o->event);
	} else if (o->to.remote) {
		remote_node_send_event(o->to.remote, o->from, &o->to.id, o->event);
	} else {
		event_free(o->event);
	}
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
