/* SPDX-License-Identifier: MIT */
/*
 * The port state machine (upstream mesh_node local_node.rs, sections 1.3 to
 * 1.10 of the reference): sequencing and the reorder heap, close handshake,
 * moves (SENDING -> PROXYING -> DONE), CHANGE_PEER, bridging and failure.
 */
#include "remote-private.h"

/*
 * Set while a message lost to a failure is freed (message_free_failing()):
 * the ports it carries fail, naming the culprit, rather than close. A
 * port released from it then frees its own queue the same way (failed).
 */
typedef struct {
	MeshNodeId culprit;
	const char *reason;
	const GError *error; /* or NULL: a node failure with @reason */
} LostTo;

static __thread const LostTo *lost_to;

static void port_object_release(MeshPayloadObject *object)
{
	MeshPort *p = (MeshPort *)object;
	const LostTo *lost = lost_to;

	if (lost) {
		lost_to = NULL; /* only the ports the message carries itself */
		if (lost->error)
			port_fail_error(p, &lost->culprit, lost->error, lost->error->message);
		else
			port_fail_culprit(p, &lost->culprit, lost->reason);
		mesh_port_close(p);
		lost_to = lost;
	} else {
		mesh_port_close(p);
	}
}

/*
 * Frees a message lost to a failure (its port failed, or the node it was
 * going to): the ports it carries, also inside a typed message, fail with
 * @error (copied by each), or else with a node failure blaming @culprit
 * and saying @reason, instead of closing: their peers must not take the
 * loss for a clean close.
 */
static void message_free_failing(MeshMessage *msg, const MeshNodeId *culprit,
				       const GError *error, const char *reason)
{
	if (!msg)
		return;
	LostTo lost = {.reason = reason, .error = error};
	const LostTo *saved = lost_to;

	if (culprit)
		lost.culprit = *culprit;
	lost_to = &lost;
	mesh_message_free(msg);
	lost_to = saved;
}

static const MeshPayloadObjectClass port_class = {
	.version = MESH_PAYLOAD_OBJECT_CLASS_VERSION,
	.name = "MeshPort",
	.release = port_object_release,
};

MeshPort *port_new(const MeshPortId *id)
{
	MeshPort *p = g_new0(MeshPort, 1);

	p->object.klass = &port_class;
	p->ref = 1;
	g_mutex_init(&p->lock);
	if (id)
		p->id = *id;
	else
		mesh_uuid_generate(&p->id);
	p->state = PORT_PEERED;
	p->next_local_seq = 1;
	p->next_peer_seq = 1;
	p->heap = g_ptr_array_new();
	g_queue_init(&p->queue);
	return p;
}

MeshPort *port_ref(MeshPort *p)
{
	g_atomic_int_inc(&p->ref);
	return p;
}

void port_unref(MeshPort *p)
{
	if (!p || !g_atomic_int_dec_and_test(&p->ref))
		return;
	for (guint i = 0; i < p->heap->len; i++)
		event_free(p->heap->pdata[i]);
	g_ptr_array_free(p->heap, TRUE);
	MeshMessage *msg;
	while ((msg = g_queue_pop_head(&p->queue))) {
		/* Nobody read them: lost with the port if it failed. */
		if (p->state == PORT_FAILED)
			message_free_failing(msg, &p->culprit, p->error, LOST_WITH_FAILED_PORT);
		else
			mesh_message_free(msg);
	}
	peer_addr_clear(&p->peer);
	peer_addr_clear(&p->target);
	remote_node_unref_internal(p->move_from);
	g_clear_error(&p->error);
	g_mutex_clear(&p->lock);
	g_free(p);
}

MeshPayloadObject *mesh_port_as_object(MeshPort *port)
{
	g_return_val_if_fail(port, NULL);
	return &port->object;
}

MeshPort *mesh_port_from_object(MeshPayloadObject *object)
{
	if (!object)
		return NULL;
	if (object->klass != &port_class) {
		mesh_payload_object_release(object);
		return NULL;
	}
	return (MeshPort *)object;
}

MeshPayload__Port *mesh_port_into_field(MeshPort *port)
{
	g_return_val_if_fail(port, NULL);
	return mesh_payload_port_new_take(&port->object);
}

MeshPort *mesh_port_steal_from_field(MeshPayload__Port *field)
{
	return field ? mesh_port_from_object(mesh_payload_port_steal(field)) : NULL;
}

void mesh_port_new_pair(MeshPort **ret_a, MeshPort **ret_b)
{
	g_return_if_fail(ret_a && ret_b);
	MeshPort *a = port_new(NULL), *b = port_new(NULL);

	a->peer.local = port_ref(b);
	b->peer.local = port_ref(a);
	*ret_a = a;
	*ret_b = b;
}

/* The reorder heap: a binary min-heap of events on seq. */
static void heap_push(GPtrArray *h, Event *ev)
{
	g_ptr_array_add(h, ev);
	for (guint i = h->len - 1; i > 0;) {
		guint parent = (i - 1) / 2;
		Event *a = h->pdata[parent], *b = h->pdata[i];
		if (a->seq <= b->seq)
			break;
		h->pdata[parent] = b;
		h->pdata[i] = a;
		i = parent;
	}
}

static Event *heap_pop(GPtrArray *h)
{
	Event *top = h->pdata[0];
	Event *last = g_ptr_array_steal_index_fast(h, h->len - 1);

	if (h->len == 0)
		return top;
	h->pdata[0] = last;
	for (guint i = 0;;) {
		guint l = 2 * i + 1, r = l + 1, m = i;
		if (l < h->len && ((Event *)h->pdata[l])->seq < ((Event *)h->pdata[m])->seq)
			m = l;
		if (r < h->len && ((Event *)h->pdata[r])->seq < ((Event *)h->pdata[m])->seq)
			m = r;
		if (m == i)
			break;
		gpointer t = h->pdata[i];
		h->pdata[i] = h->pdata[m];
		h->pdata[m] = t;
		i = m;
	}
	return top;
}

/* Drops the events waiting in the heap; on a failed port their ports fail too. */
static void heap_discard_all(MeshPort *p, Deferred *d)
{
	for (guint i = 0; i < p->heap->len; i++) {
		Event *ev = p->heap->pdata[i];
		if (p->state == PORT_FAILED) {
			/* Lost to the failure: the ports they carry fail too. */
			port_fail_message_ports(ev->message, &p->culprit, p->error, d);
			ev->message = NULL;
		}
		event_discard(ev, d);
	}
	g_ptr_array_set_size(p->heap, 0);
}

static void node_unref_cb(void *data)
{
	mesh_node_unref(data);
}

gboolean port_associate_locked(MeshPort *p, MeshNode *node)
{
	gboolean ok = TRUE;

	if (p->node)
		return p->node == node;
	g_mutex_lock(&node->lock);
	if (node->shutting_down || g_hash_table_contains(node->ports, &p->id))
		ok = FALSE;
	else
		g_hash_table_insert(node->ports, &p->id, port_ref(p));
	g_mutex_unlock(&node->lock);
	if (ok)
		p->node = node;
	return ok;
}

MeshIoHook *port_get_io_hook(MeshPort *p)
{
	MeshIoHook *hook = NULL;

	g_mutex_lock(&p->lock);
	/*
	 * Any port in a node's table, whatever its peer: a peer that is local
	 * now may be moving (a port just sent away has its peer changed only
	 * when the move completes), and the events that complete it come
	 * through the transport, which someone must be polling.
	 */
	if (p->node) {
		g_mutex_lock(&p->node->lock);
		if (p->node->io_hook)
			hook = mesh_io_hook_ref(p->node->io_hook);
		g_mutex_unlock(&p->node->lock);
	}
	g_mutex_unlock(&p->lock);
	return hook ? hook : context_io_hook_for_thread();
}

void port_disassociate_locked(MeshPort *p, Deferred *d)
{
	MeshNode *node = p->node;
	gboolean removed = FALSE;

	if (!node)
		return;
	p->node = NULL;
	g_mutex_lock(&node->lock);
	if (g_hash_table_lookup(node->ports, &p->id) == p)
		removed = g_hash_table_steal(node->ports, &p->id);
	/* A move ends with the port leaving the table (done or failed). */
	node_watch_notify_locked(node);
	g_mutex_unlock(&node->lock);
	if (removed)
		deferred_unref_port(d, p);
}

static void handler_message(MeshPort *p, MeshMessage *msg, Deferred *d)
{
	if (p->local_closed)
		deferred_release_message(d, msg); /* nobody will read it */
	else if (p->handler)
		p->handler->message(p, p->handler_data, msg, d);
	else
		g_queue_push_tail(&p->queue, msg);
}

/*
 * The move that brought the port here is complete: its old node no longer
 * matters. A graceful shutdown waits for that (port_is_moving()): tell it.
 */
static void port_end_move_locked(MeshPort *p, Deferred *d)
{
	if (p->move_from) {
		deferred_unref_remote(d, p->move_from);
		p->move_from = NULL;
		if (p->node)
			node_watch_notify(p->node); /* lock order: port, then node */
	}
	p->move_done_seq = 0;
}

static void port_check_move_locked(MeshPort *p, Deferred *d)
{
	if (p->move_from && p->move_done_seq && p->next_peer_seq >= p->move_done_seq) {
		port_end_move_locked(p, d);
		if (p->peer_gone && p->state == PORT_PEERED && p->peer.remote) {
			/* Its peer's node failed; the close did not come through the move. */
			MeshNodeId culprit = p->peer.remote->id;
			port_fail_locked(p, &culprit, "the peer's node failed", d);
		}
	}
}

typedef struct {
	MeshMessage *msg;
	MeshNodeId culprit;
	GError *error;
} FailMessageCall;

static void fail_message_call_run(void *data)
{
	FailMessageCall *c = data;
	message_free_failing(c->msg, &c->culprit, c->error, NULL);
	g_error_free(c->error);
	g_free(c);
}

void port_fail_message_ports(MeshMessage *msg, const MeshNodeId *culprit, const GError *error,
			     Deferred *d)
{
	if (!msg)
		return;
	FailMessageCall *c = g_new0(FailMessageCall, 1);
	c->msg = msg;
	if (culprit)
		c->culprit = *culprit;
	c->error = g_error_copy(error);
	deferred_call(d, fail_message_call_run, c);
}

void port_fail_locked(MeshPort *p, const MeshNodeId *culprit, const char *reason, Deferred *d)
{
	if (p->state == PORT_DONE || p->state == PORT_FAILED)
		return;
	MeshNodeId blamed = {{0}};
	if (culprit)
		blamed = *culprit;
	port_fail_error_locked(p, culprit, error_node_failure(&blamed, reason), reason, d);
}

void port_fail_error_locked(MeshPort *p, const MeshNodeId *culprit, GError *error,
			    const char *reason, Deferred *d)
{
	PortState prev = p->state;
	MeshNodeId blamed = {{0}};

	if (prev == PORT_DONE || prev == PORT_FAILED) {
		g_error_free(error);
		return;
	}
	if (culprit)
		blamed = *culprit;
	p->state = PORT_FAILED;
	p->culprit = blamed;
	p->error = error;
	debug_log(LOG_FIELDS("MESH_NODE", p->node ? LOG_ID(&p->node->id) : NULL, "MESH_PORT",
			     LOG_ID(&p->id)),
		  "port failed: %s", p->error->message);
	if (p->handler && !p->local_closed)
		p->handler->fail(p, p->handler_data, p->error, d);

	/* Tell both sides; a port that gets FAIL_PORT fails and echoes it. */
	if (peer_addr_is_set(&p->peer)) {
		Event *ev = event_new(MESH_EVENT_FAIL_PORT, 0, 0);
		ev->culprit = blamed;
		ev->reason = g_strdup(reason);
		deferred_event(d, &p->peer, ev, p->node);
	}
	if ((prev == PORT_SENDING || prev == PORT_PROXYING) && peer_addr_is_set(&p->target)) {
		Event *ev = event_new(MESH_EVENT_FAIL_PORT, 0, 0);
		ev->culprit = blamed;
		ev->reason = g_strdup(reason);
		deferred_event(d, &p->target, ev, p->node);
	}
	heap_discard_all(p, d);
	port_end_move_locked(p, d);
	port_disassociate_locked(p, d);
	peer_addr_defer_clear(&p->peer, d);
	peer_addr_defer_clear(&p->target, d);
}

static void port_protocol_error(MeshPort *p, const char *what, Deferred *d)
{
	debug_log(LOG_FIELDS("MESH_NODE", p->node ? LOG_ID(&p->node->id) : NULL, "MESH_PORT",
			     LOG_ID(&p->id)),
		  "mesh port protocol error: %s", what);
	port_fail_locked(p, p->node ? &p->node->id : NULL, what, d);
}

/* Becomes DONE: the close handshake or a proxy's move finished. */
static void port_done_locked(MeshPort *p, Deferred *d)
{
	p->state = PORT_DONE;
	port_end_move_locked(p, d);
	port_disassociate_locked(p, d);
	peer_addr_defer_clear(&p->peer, d);
	peer_addr_defer_clear(&p->target, d);
	if (p->heap->len) {
		debug_log(LOG_FIELDS("MESH_PORT", LOG_ID(&p->id)),
			  "mesh port: %u events after the end dropped", p->heap->len);
		heap_discard_all(p, d);
	}
}

static void process_peered(MeshPort *p, Event *ev, Deferred *d)
{
	switch (ev->type) {
	case MESH_EVENT_MESSAGE:
		if (ev->message) {
			handler_message(p, ev->message, d);
			ev->message = NULL;
		}
		/* A handler may have failed the port; then the close is moot. */
		if ((ev->flags & MESH_EVENT_FLAG_CLOSE) && p->state == PORT_PEERED) {
			if (p->handler && !p->local_closed)
				p->handler->close(p, p->handler_data, d);
			if (!p->local_closed) {
				/* Two-way close: answer so the peer can finish too. */
				Event *reply = event_new(MESH_EVENT_MESSAGE, MESH_EVENT_FLAG_CLOSE,
							 p->next_local_seq++);
				deferred_event(d, &p->peer, reply, p->node);
			}
			port_done_locked(p, d);
		}
		break;
	case MESH_EVENT_CHANGE_PEER: {
		if (ev->new_peer_ended) {
			/*
			 * Our peer moved to a port of this node that already
			 * answered our close (port_receive_locked() lets nothing
			 * else here): acknowledged, with no peer left; its answer
			 * follows in order and ends this port.
			 */
			Event *ack = event_new(MESH_EVENT_ACK_CHANGE_PEER, 0, p->next_local_seq);
			deferred_event(d, &p->peer, ack, p->node);
			peer_addr_defer_clear(&p->peer, d);
			p->next_local_seq -= ev->seq_delta;
			break;
		}
		/*
		 * A new peer whose node failed may have closed, the close on
		 * its way through the move into this node: then the port fails
		 * only when that move ends without it (port_check_move_locked()).
		 */
		gboolean new_peer_failed =
			ev->new_peer.remote && remote_node_is_failed(ev->new_peer.remote);
		if (new_peer_failed && !(p->move_from && p->move_from != ev->new_peer.remote)) {
			port_fail_locked(p, &ev->new_peer.remote->id, "the new peer's node failed",
					 d);
			break;
		}
		PeerAddr old = p->peer;
		p->peer = ev->new_peer;
		p->peer_gone = new_peer_failed; /* not the old peer's node's failure */
		memset(&ev->new_peer, 0, sizeof(ev->new_peer));
		if ((ev->flags & MESH_EVENT_FLAG_FORWARDS) && old.remote && !p->move_from &&
		    old.remote != p->peer.remote) {
			/*
			 * A bridge on the old peer's node: until its other proxy
			 * has forwarded what the new peer sent before (its
			 * PROXY_DONE, maybe already here), we depend on that node.
			 */
			p->move_from = remote_node_ref_internal(old.remote);
			if (remote_node_is_failed(old.remote)) {
				port_fail_locked(p, &old.remote->id, "the bridging node failed", d);
				peer_addr_defer_clear(&old, d);
				break;
			}
		}
		if (p->peer.remote && !p->node) {
			/* The new peer is remote: it must be able to address us. */
			MeshNode *local = remote_node_get_local(p->peer.remote);
			if (local) {
				port_associate_locked(p, local);
				deferred_call(d, node_unref_cb, local);
			}
		}
		Event *ack = event_new(MESH_EVENT_ACK_CHANGE_PEER, 0, p->next_local_seq);
		deferred_event(d, &old, ack, p->node);
		peer_addr_defer_clear(&old, d);
		p->next_local_seq -= ev->seq_delta;
		break;
	}
	default:
		port_protocol_error(p, "ACKNOWLEDGE_CHANGE_PEER while peered", d);
		break;
	}
	event_discard(ev, d);
}

/*
 * Everything from the peer came through: the proxy ends, and tells the new
 * home, if it reads it, from which seq on it no longer depends on us.
 */
static void port_finish_proxy_locked(MeshPort *p, Deferred *d)
{
	if (p->target.remote && remote_node_has_ext_moves(p->target.remote))
		deferred_event(d, &p->target, event_new(MESH_EVENT_PROXY_DONE, 0, p->forward_seq),
			       p->node);
	port_done_locked(p, d);
}

static gboolean event_is_close(const Event *ev)
{
	return ev->type == MESH_EVENT_MESSAGE && (ev->flags & MESH_EVENT_FLAG_CLOSE);
}

static void process_proxying(MeshPort *p, Event *ev, Deferred *d)
{
	if (ev->type == MESH_EVENT_ACK_CHANGE_PEER) {
		event_discard(ev, d);
		port_finish_proxy_locked(p, d);
		return;
	}
	if (ev->type == MESH_EVENT_CHANGE_PEER) {
		/* Our peer moved too: follow it, and pass the news on. */
		PeerAddr old = p->peer;
		peer_addr_copy(&p->peer, &ev->new_peer);
		peer_addr_defer_clear(&old, d);
	}
	if (event_is_close(ev))
		p->peer_close_passed = TRUE;
	ev->seq = p->forward_seq++;
	deferred_event(d, &p->target, ev, p->node);
}

static int event_seq_compare(const void *a, const void *b)
{
	guint64 x = (*(Event *const *)a)->seq, y = (*(Event *const *)b)->seq;
	return x < y ? -1 : x > y;
}

/*
 * Whether the port on its way holds everything its peer will send: its
 * close and every event before it (forwarded while PROXYING; in the heap
 * while SENDING, where nothing is taken from it). *ret_closed is the node
 * of the peer that closed: a CHANGE_PEER waiting in the heap names it, or
 * the current peer's. Only when a node fails: a walk of the heap is fine.
 */
static gboolean port_holds_peer_close_locked(MeshPort *p, MeshRemoteNode **ret_closed)
{
	*ret_closed = p->peer.remote;
	if (p->state == PORT_PROXYING)
		return p->peer_close_passed;
	if (p->state != PORT_SENDING || !p->heap->len)
		return FALSE;
	Event **evs = g_memdup2(p->heap->pdata, p->heap->len * sizeof(Event *));
	qsort(evs, p->heap->len, sizeof(Event *), event_seq_compare);
	guint64 want = p->next_peer_seq;
	gboolean held = FALSE;
	for (guint i = 0; i < p->heap->len && !held; i++) {
		if (evs[i]->seq < want)
			continue; /* a duplicate: the protocol error comes later */
		if (evs[i]->seq != want)
			break; /* a gap */
		if (evs[i]->type == MESH_EVENT_CHANGE_PEER)
			*ret_closed = evs[i]->new_peer.remote;
		held = event_is_close(evs[i]);
		want++;
	}
	g_free(evs);
	return held;
}

/*
 * The node of the peer whose close the port holds failed: it goes on as a
 * port whose peer closed, forwards what it holds and the close, and ends
 * as if the peer had acknowledged its CHANGE_PEER.
 */
static void port_peer_gone_locked(MeshPort *p, Deferred *d)
{
	if (p->state == PORT_PROXYING)
		port_finish_proxy_locked(p, d);
	else
		p->peer_gone = TRUE;
}

void port_remote_failed_locked(MeshPort *p, MeshRemoteNode *remote, const char *reason,
			       Deferred *d)
{
	MeshRemoteNode *closed = NULL;
	gboolean named = p->peer.remote == remote || p->move_from == remote ||
			 p->target.remote == remote;

	/*
	 * Only a CHANGE_PEER in a sending port's heap can name another node:
	 * the walk of the heap is for those, not for every port of the node.
	 */
	if (!named && (p->state != PORT_SENDING || !p->heap->len))
		return;
	gboolean held = port_holds_peer_close_locked(p, &closed);
	if (!named && (!held || closed != remote))
		return;
	if (p->state == PORT_PEERED && p->peer.remote == remote && p->move_from &&
	    p->move_from != remote) {
		/*
		 * Moved in, and the old node has not forwarded all yet: the
		 * peer's close may still come through it. Fails once the move
		 * ends without it (port_check_move_locked()), or with the old
		 * node's or the proxy's failure.
		 */
		p->peer_gone = TRUE;
		return;
	}
	if (p->target.remote == remote || !held) {
		port_fail_locked(p, &remote->id, reason, d);
		return;
	}
	/* Nothing more can come from the peer: its node no longer matters. */
	if (p->move_from == remote)
		port_end_move_locked(p, d);
	/* Nobody there acknowledges a CHANGE_PEER: it ends without that. */
	if (closed == remote || p->peer.remote == remote)
		port_peer_gone_locked(p, d);
}

/*
 * Takes the next event in order from the heap, or NULL. An event whose seq
 * was already taken (the peer sent it twice, the second while the gap
 * before it was open) would block the heap for good: a protocol error.
 */
static Event *heap_take_next(MeshPort *p, Deferred *d)
{
	if (!p->heap->len)
		return NULL;
	Event *top = p->heap->pdata[0];
	if (top->seq < p->next_peer_seq) {
		port_protocol_error(p, "duplicate sequence number", d);
		return NULL;
	}
	if (top->seq != p->next_peer_seq)
		return NULL;
	p->next_peer_seq++;
	return heap_pop(p->heap);
}

static void process_heap(MeshPort *p, Deferred *d)
{
	Event *ev;

	while ((ev = heap_take_next(p, d))) {
		if (p->state == PORT_PEERED)
			process_peered(p, ev, d);
		else if (p->state == PORT_PROXYING)
			process_proxying(p, ev, d);
		else
			event_discard(ev, d);
		if (p->state != PORT_PEERED && p->state != PORT_PROXYING) {
			heap_discard_all(p, d);
			break;
		}
	}
}

/*
 * Starts proxying toward p->target: forwards the messages nobody read, then
 * the in-order events buffered meanwhile, as they are (a buffered CHANGE_PEER
 * is passed on, not applied: the new home applies it), numbering from
 * @first_seq; then tells the peer where the port went, with the seq reserved
 * for it (@change_seq) and the delta that maps its numbering to the target's.
 */
static void start_proxy(MeshPort *p, guint64 first_seq, guint64 change_seq, gboolean bridge,
			Deferred *d)
{
	MeshMessage *msg;

	p->state = PORT_PROXYING;
	p->forward_seq = first_seq;
	while ((msg = g_queue_pop_head(&p->queue))) {
		Event *ev = event_new(MESH_EVENT_MESSAGE, MESH_EVENT_FLAG_MESSAGE, p->forward_seq++);
		ev->message = msg;
		deferred_event(d, &p->target, ev, p->node);
	}
	Event *ev;
	while ((ev = heap_take_next(p, d))) {
		if (event_is_close(ev))
			p->peer_close_passed = TRUE;
		ev->seq = p->forward_seq++;
		deferred_event(d, &p->target, ev, p->node);
	}
	if (p->peer_gone && p->state == PORT_PROXYING) {
		/* Its close is forwarded; its node is gone: no CHANGE_PEER. */
		port_finish_proxy_locked(p, d);
		return;
	}
	/*
	 * A bridge: the new peer's messages reach our peer through the other
	 * bridged port, here; a peer that reads PROXY_DONE waits for it.
	 */
	guint8 flags = bridge && p->peer.remote && remote_node_has_ext_moves(p->peer.remote)
			       ? MESH_EVENT_FLAG_FORWARDS
			       : 0;
	Event *cp = event_new(MESH_EVENT_CHANGE_PEER, flags, change_seq);
	peer_addr_copy(&cp->new_peer, &p->target);
	cp->seq_delta = p->next_peer_seq - p->forward_seq;
	deferred_event(d, &p->peer, cp, p->node);
}

void port_receive_locked(MeshPort *p, Event *ev, Deferred *d)
{
	if (p->state == PORT_FAILED) {
		/* Never delivered: the ports it carries fail for the same cause. */
		port_fail_message_ports(ev->message, &p->culprit, p->error, d);
		ev->message = NULL;
		event_discard(ev, d);
		return;
	}
	if (p->state == PORT_DONE) {
		event_discard(ev, d);
		return;
	}
	switch (ev->type) {
	case MESH_EVENT_FAIL_PORT: {
		MeshRemoteNode *closed = NULL;
		if (!ev->culprit_is_sender && port_holds_peer_close_locked(p, &closed)) {
			/*
			 * A node failed on the way to the peer (a proxy there
			 * failed with it) after the peer's close came: nothing
			 * was lost, and no acknowledgement comes that way.
			 */
			port_peer_gone_locked(p, d);
			event_discard(ev, d);
			return;
		}
		if (ev->culprit_is_sender) {
			/* Not a node failure: that node, still up, failed the port. */
			char id[33];
			const char *why = ev->reason ? ev->reason
						     : "a message over a node's limits, or a "
						       "fault on that node";
			GError *e = g_error_new(MESH_ERROR, MESH_ERROR_NODE_FAILURE,
						"node %s failed the peer port (%s)",
						mesh_uuid_to_string(&ev->culprit, id), why);
			port_fail_error_locked(p, &ev->culprit, e, why, d);
		} else {
			port_fail_locked(p, &ev->culprit,
					 ev->reason ? ev->reason : "the peer port failed", d);
		}
		event_discard(ev, d);
		return;
	}
	case MESH_EVENT_ACK_PORT:
		if (p->state == PORT_SENDING)
			start_proxy(p, 1, p->change_peer_seq, FALSE, d);
		else
			port_protocol_error(p, "ACKNOWLEDGE_PORT for a port that is not being sent",
					    d);
		event_discard(ev, d);
		port_check_move_locked(p, d);
		return;
	case MESH_EVENT_PROXY_DONE:
		/*
		 * Only a port moved in from the sender's node waits for it; a
		 * bridge's may come before its CHANGE_PEER: kept for it.
		 */
		if (ev->seq && p->move_from && mesh_uuid_equal(&ev->culprit, &p->move_from->id)) {
			p->move_done_seq = ev->seq;
			port_check_move_locked(p, d);
		} else if (ev->seq && !p->move_from && p->peer.remote &&
			   mesh_uuid_equal(&ev->culprit, &p->peer.remote->id)) {
			p->move_done_seq = ev->seq;
		}
		event_discard(ev, d);
		return;
	default:
		break;
	}
	if (ev->type == MESH_EVENT_CHANGE_PEER && ev->new_peer_ended &&
	    (p->state != PORT_PEERED || !p->local_closed)) {
		/*
		 * A port that ended before its peer heard of it sent that peer
		 * its last word: the answer to a close (only a closed port can
		 * take it: the answer ends it), or a failure (already here).
		 * Otherwise nothing would end this port, and a moving one
		 * could not pass the name on: it fails.
		 */
		event_discard(ev, d);
		port_fail_locked(p, p->node ? &p->node->id : NULL,
				 "CHANGE_PEER names an unknown local port", d);
		return;
	}
	if (ev->seq < p->next_peer_seq) {
		event_discard(ev, d);
		port_protocol_error(p, "duplicate sequence number", d);
		return;
	}
	/*
	 * Out of order only within a window: a peer could otherwise park any
	 * number of events (with their fds) behind a gap it never fills.
	 */
	if (ev->seq - p->next_peer_seq > PORT_REORDER_WINDOW) {
		event_discard(ev, d);
		port_protocol_error(p, "sequence number too far ahead", d);
		return;
	}
	heap_push(p->heap, ev);
	if (p->state != PORT_SENDING)
		process_heap(p, d);
	port_check_move_locked(p, d);
}

void port_deliver(MeshPort *p, Event *ev)
{
	Deferred d;

	deferred_init(&d);
	g_mutex_lock(&p->lock);
	port_receive_locked(p, ev, &d);
	g_mutex_unlock(&p->lock);
	deferred_run(&d);
}

gboolean port_send(MeshPort *p, MeshMessage *msg, gboolean close)
{
	Deferred d;
	gboolean sent = FALSE;

	deferred_init(&d);
	g_mutex_lock(&p->lock);
	if (p->state == PORT_PEERED && !p->local_closed) {
		guint8 flags = (msg ? MESH_EVENT_FLAG_MESSAGE : 0) | (close ? MESH_EVENT_FLAG_CLOSE : 0);
		Event *ev = event_new(MESH_EVENT_MESSAGE, flags, p->next_local_seq++);
		ev->message = msg;
		msg = NULL;
		if (close)
			p->local_closed = TRUE;
		deferred_event(&d, &p->peer, ev, p->node);
		sent = TRUE;
	} else if (p->state == PORT_FAILED) {
		/* Lost to the failure: the ports it carries fail, never look closed. */
		port_fail_message_ports(msg, &p->culprit, p->error, &d);
		msg = NULL;
	}
	deferred_release_message(&d, msg); /* a closed port drops it */
	g_mutex_unlock(&p->lock);
	deferred_run(&d);
	return sent;
}

gboolean port_send_bytes(MeshPort *p, const char *text)
{
	return port_send(p, mesh_message_new(text, strlen(text)), FALSE);
}

void mesh_port_close(MeshPort *p)
{
	Deferred d;
	MeshMessage *msg;

	if (!p)
		return;
	deferred_init(&d);
	g_mutex_lock(&p->lock);
	if (!p->local_closed) {
		p->local_closed = TRUE;
		p->handler = NULL;
		while ((msg = g_queue_pop_head(&p->queue))) {
			if (p->state == PORT_FAILED)
				port_fail_message_ports(msg, &p->culprit, p->error, &d);
			else
				deferred_release_message(&d, msg);
		}
		if (p->state == PORT_PEERED) {
			Event *ev = event_new(MESH_EVENT_MESSAGE, MESH_EVENT_FLAG_CLOSE,
					      p->next_local_seq++);
			deferred_event(&d, &p->peer, ev, p->node);
		}
	}
	g_mutex_unlock(&p->lock);
	deferred_run(&d);
	port_unref(p);
}

void port_set_handler(MeshPort *p, const PortHandler *handler, void *data)
{
	Deferred d;
	MeshMessage *msg;

	deferred_init(&d);
	g_mutex_lock(&p->lock);
	p->handler = handler;
	p->handler_data = data;
	if (handler && !p->local_closed) {
		while ((msg = g_queue_pop_head(&p->queue)))
			handler->message(p, data, msg, &d);
		if (p->state == PORT_DONE)
			handler->close(p, data, &d);
		else if (p->state == PORT_FAILED)
			handler->fail(p, data, p->error, &d);
	}
	g_mutex_unlock(&p->lock);
	deferred_run(&d);
}

PortState port_get_state(MeshPort *p)
{
	g_mutex_lock(&p->lock);
	PortState s = p->state;
	g_mutex_unlock(&p->lock);
	return s;
}

gboolean port_is_moving(MeshPort *p)
{
	g_mutex_lock(&p->lock);
	gboolean moving = p->state == PORT_SENDING || p->state == PORT_PROXYING ||
			  (p->state == PORT_PEERED && p->move_from);
	g_mutex_unlock(&p->lock);
	return moving;
}

PortRecv port_try_recv(MeshPort *p, MeshMessage **ret_msg, GError **error)
{
	PortRecv r;

	g_mutex_lock(&p->lock);
	*ret_msg = g_queue_pop_head(&p->queue);
	if (*ret_msg) {
		r = PORT_RECV_MESSAGE;
	} else if (p->state == PORT_DONE) {
		r = PORT_RECV_CLOSED;
	} else if (p->state == PORT_FAILED) {
		r = PORT_RECV_FAILED;
		if (error)
			*error = g_error_copy(p->error);
	} else {
		r = PORT_RECV_EMPTY;
	}
	g_mutex_unlock(&p->lock);
	return r;
}

/*
 * A port whose peer already closed (DONE) that is sent or bridged is first
 * re-peered with a fresh local port that closes at once (upstream
 * repeer_if_done): the messages it holds and then the close travel on to
 * its new home, in order, as any port's would.
 */
static void port_repeer_if_done_locked(MeshPort *x, Deferred *d)
{
	if (x->state != PORT_DONE)
		return;
	MeshPort *s = port_new(NULL);
	s->peer.local = port_ref(x);
	s->local_closed = TRUE;
	x->peer.local = port_ref(s);
	x->state = PORT_PEERED;
	x->next_local_seq = 1;
	x->next_peer_seq = 1;
	Event *ev = event_new(MESH_EVENT_MESSAGE, MESH_EVENT_FLAG_CLOSE, s->next_local_seq++);
	deferred_event(d, &s->peer, ev, NULL);
	deferred_unref_port(d, s);
}

/*
 * A proxy toward a remote port must have a node: events leave from it, and
 * the acknowledgement comes back to it. A port of a purely local pair takes
 * the node of @to's remote node.
 */
static void port_associate_for_locked(MeshPort *p, const PeerAddr *to, Deferred *d)
{
	if (p->node || !to->remote)
		return;
	MeshNode *local = remote_node_get_local(to->remote);
	if (local) {
		port_associate_locked(p, local);
		deferred_call(d, node_unref_cb, local);
	}
}

void port_encode_for_move(MeshPort *x, MeshNode *from, MeshRemoteNode *remote,
			  MeshResourceData *rd)
{
	Deferred d;
	MeshPort *local_peer = NULL;

	deferred_init(&d);
	memset(rd, 0, sizeof(*rd));
	mesh_uuid_generate(&rd->id);
	rd->old_node = from->id;

	g_mutex_lock(&x->lock);
	rd->old_port = x->id;
	port_repeer_if_done_locked(x, &d);
	if (x->state == PORT_PEERED && port_associate_locked(x, from)) {
		rd->next_local_seq = x->next_local_seq + 1;
		x->change_peer_seq = x->next_local_seq++;
		x->state = PORT_SENDING;
		x->target.remote = remote_node_ref_internal(remote);
		x->target.id = rd->id;
		if (x->peer.local) {
			local_peer = port_ref(x->peer.local);
			rd->peer_port = local_peer->id;
		} else {
			rd->peer_node = x->peer.remote->id;
			rd->peer_port = x->peer.id;
		}
	} else {
		/* Failed (or unsendable): it arrives failed, blaming the culprit. */
		if (x->state != PORT_FAILED)
			port_fail_locked(x, &from->id, "the port could not be sent", &d);
		rd->peer_node = x->culprit;
	}
	g_mutex_unlock(&x->lock);

	if (local_peer) {
		/* The peer must be addressable; it names its own node. */
		g_mutex_lock(&local_peer->lock);
		if (!local_peer->node)
			port_associate_locked(local_peer, from);
		rd->peer_node = local_peer->node ? local_peer->node->id : from->id;
		g_mutex_unlock(&local_peer->lock);
		port_unref(local_peer);
	}
	deferred_run(&d);
}

void mesh_port_bridge(MeshPort *a, MeshPort *b)
{
	Deferred d;

	if (!a || !b) {
		/* Both are taken, as always: the one given is closed. */
		mesh_port_close(a);
		mesh_port_close(b);
		g_return_if_fail(a && b);
	}
	MeshPort *first = a < b ? a : b, *second = a < b ? b : a;
	deferred_init(&d);
	g_mutex_lock(&first->lock);
	g_mutex_lock(&second->lock);

	if (a->peer.local == b || b->peer.local == a) {
		port_fail_locked(a, NULL, "circular bridge", &d);
		port_fail_locked(b, NULL, "circular bridge", &d);
	} else if (a->state == PORT_FAILED || b->state == PORT_FAILED) {
		MeshPort *failed = a->state == PORT_FAILED ? a : b;
		MeshPort *other = failed == a ? b : a;
		port_fail_locked(other, &failed->culprit,
				 failed->error ? failed->error->message : "bridged to a failed port",
				 &d);
	} else {
		/*
		 * A side whose peer already closed still holds what it sent:
		 * re-peered first, it forwards that, then the close.
		 */
		port_repeer_if_done_locked(a, &d);
		port_repeer_if_done_locked(b, &d);
		if (a->state == PORT_PEERED && b->state == PORT_PEERED) {
			guint64 na = a->next_local_seq++, nb = b->next_local_seq++;
			PeerAddr pa, pb;
			peer_addr_copy(&pa, &a->peer);
			peer_addr_copy(&pb, &b->peer);
			a->target = pb;
			b->target = pa;
			port_associate_for_locked(a, &a->target, &d);
			port_associate_for_locked(b, &b->target, &d);
			start_proxy(a, nb + 1, na, TRUE, &d);
			start_proxy(b, na + 1, nb, TRUE, &d);
		} else {
			/* Not bridgeable (a port already on the move): both fail. */
			port_fail_locked(a, NULL, "bridged a port that is being sent", &d);
			port_fail_locked(b, NULL, "bridged a port that is being sent", &d);
		}
	}
	a->local_closed = TRUE;
	b->local_closed = TRUE;
	a->handler = NULL;
	b->handler = NULL;
	g_mutex_unlock(&second->lock);
	g_mutex_unlock(&first->lock);
	deferred_run(&d);
	port_unref(a);
	port_unref(b);
}

void port_fail_error(MeshPort *p, const MeshNodeId *culprit, const GError *error,
		     const char *reason)
{
	Deferred d;

	deferred_init(&d);
	g_mutex_lock(&p->lock);
	port_fail_error_locked(p, culprit, g_error_copy(error), reason, &d);
	g_mutex_unlock(&p->lock);
	deferred_run(&d);
}

void port_fail(MeshPort *p, const char *reason)
{
	Deferred d;

	deferred_init(&d);
	g_mutex_lock(&p->lock);
	port_fail_locked(p, p->node ? &p->node->id : NULL, reason, &d);
	g_mutex_unlock(&p->lock);
	deferred_run(&d);
}

void port_fail_culprit(MeshPort *p, const MeshNodeId *culprit, const char *reason)
{
	Deferred d;

	deferred_init(&d);
	g_mutex_lock(&p->lock);
	port_fail_locked(p, culprit, reason, &d);
	g_mutex_unlock(&p->lock);
	deferred_run(&d);
}
