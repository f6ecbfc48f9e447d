/* SPDX-License-Identifier: MIT */
/*
 * mpsc channels on ports (upstream mesh_channel_core mpsc.rs, reference 4.1).
 *
 * Every sender is a port; the receiver holds the peers of those ports
 * ("sender entries"), each with a PortHandler that queues what arrives. A
 * cloned sender is a new port pair whose far end travels to the receiver
 * through the existing sender port as a MESH_WRAP_PORT message.
 *
 * Locks: a handler runs under its port's lock and takes the receiver's lock
 * (order: port, then receiver). It never blocks: it queues, signals the
 * GCond (only when someone waits), writes the eventfd (nonblocking, only when
 * it was clear) and defers everything else (attaching a new sender port,
 * dropping the sender ports that ended, waking a GMainContext) to after the
 * port lock is released. attach_lock (taken before any port lock) orders
 * attaching new sender ports against dropping them and detaching them all
 * when the receiver is freed or converted to a port.
 */
#include <errno.h>

#include "channel-private.h"
#include "os-private.h"

struct MeshSender {
	MeshPort *port;
	const ProtobufCMessageDescriptor *desc;
};

typedef struct SenderEntry SenderEntry;

/* A queued message, or a marker (msg NULL) for a sender cut off as corrupt. */
typedef struct {
	MeshMessage *msg;
	SenderEntry *from; /* strong */
	GError *error;     /* marker only */
} Item;

struct MeshReceiver {
	gint ref;
	GMutex lock;
	GCond cond;
	GRecMutex attach_lock;
	const ProtobufCMessageDescriptor *desc;

	/* Under lock: */
	Item *items; /* ring buffer */
	guint head, len, cap;
	GPtrArray *entries; /* SenderEntry *, strong */
	guint n_open;       /* entries whose port may still deliver */
	gboolean prune_due; /* an entry ended: receiver_prune() is on its way */
	GError *failure;    /* the last sender failed: the end, once the queue is read */
	gboolean gone;      /* freed or converted: accepts nothing more */
	gboolean terminal_reported;
	gboolean corrupt_end_reported; /* the last sender's corruption error was returned */
	guint64 n_dropped; /* messages dropped as corrupt (mesh_receiver_get_n_dropped()) */
	guint n_waiters;  /* threads in a GCond wait */
	IoWaiters io;        /* threads running the transport's I/O (io_hook) */
	MeshIoHook *io_hook; /* strong, looked up on the first blocking wait */
	OsEvent efd; /* mesh_receiver_get_fd() (Windows: _get_handle()); NONE until asked for */
	gboolean efd_set;
	GSource *source;
	GMainContext *context; /* where the callback runs, while one is set */
};

struct SenderEntry {
	gint ref;
	MeshReceiver *recv; /* strong */
	MeshPort *port;     /* owned; changed only on the receiver's thread or under attach_lock */
	/* Under recv->lock: */
	gboolean open;
	gboolean failed; /* the last open one, failed: kept, it is the channel's end */
	gboolean corrupted;
	/* Under recv->attach_lock: */
	gboolean attached;
	gboolean detached;
};

static const PortHandler entry_handler;

/* Shared helpers. */

typedef struct {
	MeshPort *port;
	char *reason;
} FailCall;

static void fail_call_run(void *data)
{
	FailCall *c = data;

	port_fail(c->port, c->reason);
	port_unref(c->port);
	g_free(c->reason);
	g_free(c);
}

void channel_fail_port_later(Deferred *d, MeshPort *port, const char *reason)
{
	FailCall *c = g_new(FailCall, 1);

	c->port = port_ref(port);
	c->reason = g_strdup(reason);
	deferred_call(d, fail_call_run, c);
}

int channel_unwrap(MeshMessage *msg, GError **error)
{
	if (msg->wrap == MESH_WRAP_NONE)
		msg->wrap = MESH_WRAP_WIRE; /* raw bytes are the wire payload */
	return message_unwrap_channel(msg, error);
}

gint64 channel_deadline(gint64 timeout_us)
{
	if (timeout_us < 0)
		return -1;
	return g_get_monotonic_time() + timeout_us;
}

/* The hook whose run_once() this thread is inside (io_waiters_run()). */
static __thread MeshIoHook *tls_running_hook;

void io_note_foreign_delivery(void)
{
	MeshIoHook *hook = tls_running_hook;

	if (hook && hook->funcs.foreign_delivery)
		hook->funcs.foreign_delivery(hook->user_data);
}

MeshIoHook *io_waiters_wake_locked(IoWaiters *w)
{
	gboolean own = w->n == 1 && w->last == g_thread_self();

	if (!own)
		io_note_foreign_delivery();
	return w->n && !own ? mesh_io_hook_ref(w->hook) : NULL;
}

gboolean io_waiters_run(IoWaiters *w, GMutex *lock, MeshIoHook *hook, gint64 deadline,
			gboolean *expired)
{
	gboolean at_deadline;

	w->n++;
	w->last = g_thread_self();
	w->hook = hook;
	g_mutex_unlock(lock);
	MeshIoHook *outer = tls_running_hook;
	tls_running_hook = hook;
	gboolean ran = hook->funcs.run_once(hook->user_data, deadline, &at_deadline);
	tls_running_hook = outer;
	g_mutex_lock(lock);
	w->n--;
	if (ran && at_deadline)
		*expired = TRUE;
	return ran;
}

gboolean channel_cond_wait(GCond *cond, GMutex *lock, gint64 deadline)
{
	if (deadline < 0) {
		g_cond_wait(cond, lock);
		return TRUE;
	}
	return g_cond_wait_until(cond, lock, deadline);
}

/* Senders. */

static MeshSender *sender_new(MeshPort *port, const ProtobufCMessageDescriptor *desc)
{
	MeshSender *s = g_new(MeshSender, 1);

	s->port = port;
	s->desc = desc;
	return s;
}

void mesh_sender_send(MeshSender *sender, ProtobufCMessage *msg)
{
	if (!sender) {
		mesh_payload_message_free(msg); /* taken, as always */
		g_return_if_fail(sender);
	}
	g_return_if_fail(msg);
	MeshMessage *m = mesh_message_new_typed_take(msg);

	m->wrap = MESH_WRAP_FIELD1;
	port_send(sender->port, m, FALSE); /* a receiver that is gone: dropped */
}

void mesh_sender_send_message(MeshSender *sender, MeshMessage *msg)
{
	if (!sender) {
		mesh_message_free(msg); /* taken, as always */
		g_return_if_fail(sender);
	}
	g_return_if_fail(msg);
	msg->wrap = MESH_WRAP_FIELD1;
	port_send(sender->port, msg, FALSE);
}

MeshSender *mesh_sender_clone(MeshSender *sender)
{
	MeshPort *a, *b;

	g_return_val_if_fail(sender, NULL);
	mesh_port_new_pair(&a, &b);
	MeshPayloadResources *res = mesh_payload_resources_new();
	if (!res || mesh_payload_resources_append_port_take(res, mesh_port_as_object(b)) < 0)
		g_error("mesh_sender_clone: out of memory");
	/* If the receiver is gone, b is released and a sees the close. */
	port_send(sender->port, message_new_bytes_take(NULL, 0, res, MESH_WRAP_PORT), FALSE);
	return sender_new(a, sender->desc);
}

void mesh_sender_free(MeshSender *sender)
{
	if (!sender)
		return;
	mesh_port_close(sender->port);
	g_free(sender);
}

gboolean mesh_sender_is_closed(MeshSender *sender)
{
	g_return_val_if_fail(sender, TRUE);
	PortState s = port_get_state(sender->port);
	return s == PORT_DONE || s == PORT_FAILED;
}

MeshPort *mesh_sender_into_port(MeshSender *sender)
{
	g_return_val_if_fail(sender, NULL);
	MeshPort *port = sender->port;
	g_free(sender);
	return port;
}

MeshSender *mesh_sender_from_port(MeshPort *port, const ProtobufCMessageDescriptor *desc)
{
	g_return_val_if_fail(port, NULL);
	return sender_new(port, desc);
}

/* Receiver references and sender entries. */

static MeshReceiver *receiver_ref(MeshReceiver *r)
{
	g_atomic_int_inc(&r->ref);
	return r;
}

static void item_clear(Item *it)
{
	mesh_message_free(it->msg);
	g_clear_error(&it->error);
	it->msg = NULL;
}

static void entry_unref(SenderEntry *e);

static void receiver_unref(MeshReceiver *r)
{
	if (!g_atomic_int_dec_and_test(&r->ref))
		return;
	/* Everything was handed out by free or into_port; this is a backstop. */
	for (guint i = 0; i < r->len; i++) {
		Item *it = &r->items[(r->head + i) % r->cap];
		item_clear(it);
		entry_unref(it->from);
	}
	g_free(r->items);
	g_ptr_array_free(r->entries, TRUE);
	g_clear_error(&r->failure);
	os_handle_close(r->efd);
	if (r->context)
		g_main_context_unref(r->context);
	mesh_io_hook_unref(r->io_hook);
	g_rec_mutex_clear(&r->attach_lock);
	g_cond_clear(&r->cond);
	g_mutex_clear(&r->lock);
	g_free(r);
}

static MeshReceiver *receiver_new(const ProtobufCMessageDescriptor *desc)
{
	MeshReceiver *r = g_new0(MeshReceiver, 1);

	r->ref = 1;
	g_mutex_init(&r->lock);
	g_cond_init(&r->cond);
	g_rec_mutex_init(&r->attach_lock);
	r->desc = desc;
	r->entries = g_ptr_array_new();
	r->efd = OS_EVENT_NONE;
	return r;
}

static SenderEntry *entry_new(MeshReceiver *r, MeshPort *port)
{
	SenderEntry *e = g_new0(SenderEntry, 1);

	e->ref = 1;
	e->recv = receiver_ref(r);
	e->port = port;
	e->open = TRUE;
	return e;
}

static SenderEntry *entry_ref(SenderEntry *e)
{
	g_atomic_int_inc(&e->ref);
	return e;
}

static void entry_unref(SenderEntry *e)
{
	if (!e || !g_atomic_int_dec_and_test(&e->ref))
		return;
	mesh_port_close(e->port);
	receiver_unref(e->recv);
	g_free(e);
}

/* The queue (under lock). */

static void queue_push(MeshReceiver *r, Item it)
{
	if (r->len == r->cap) {
		guint cap = r->cap ? r->cap * 2 : 16;
		Item *items = g_new(Item, cap);
		for (guint i = 0; i < r->len; i++)
			items[i] = r->items[(r->head + i) % r->cap];
		g_free(r->items);
		r->items = items;
		r->cap = cap;
		r->head = 0;
	}
	r->items[(r->head + r->len) % r->cap] = it;
	r->len++;
}

static Item queue_pop(MeshReceiver *r)
{
	Item it = r->items[r->head];

	r->head = (r->head + 1) % r->cap;
	r->len--;
	return it;
}

/* Moves every item out of the queue into @out (in order). */
static void queue_take_all(MeshReceiver *r, GArray *out)
{
	while (r->len) {
		Item it = queue_pop(r);
		g_array_append_val(out, it);
	}
}

/* Readiness: something to receive, or the end not yet reported. */

static gboolean receiver_terminal_locked(MeshReceiver *r)
{
	return r->n_open == 0 && r->len == 0;
}

static void wakeup_context(void *data)
{
	GMainContext *context = data;

	g_main_context_wakeup(context);
	g_main_context_unref(context);
}

void channel_wake_context_later(Deferred *d, GMainContext *context)
{
	deferred_call(d, wakeup_context, g_main_context_ref(context));
}

static MeshReceiver *receiver_ref(MeshReceiver *r);
static void receiver_unref(MeshReceiver *r);

static void broadcast_cb(void *data)
{
	MeshReceiver *r = data;
	g_cond_broadcast(&r->cond);
	receiver_unref(r);
}

/*
 * Called when the receiver becomes ready (the queue stops being empty, or
 * the end). Waiters are woken after the locks are released, so that they do
 * not wake only to block on the receiver's mutex; the state they wait for
 * changed under it, so no wakeup is lost.
 */
static void io_wakeup_cb(void *data)
{
	MeshIoHook *hook = data;
	hook->funcs.wakeup(hook->user_data);
	mesh_io_hook_unref(hook);
}

static void receiver_wake_locked(MeshReceiver *r, Deferred *d)
{
	if (r->n_waiters)
		deferred_call(d, broadcast_cb, receiver_ref(r));
	MeshIoHook *hook = io_waiters_wake_locked(&r->io);
	if (hook)
		deferred_call(d, io_wakeup_cb, hook);
	if (r->efd != OS_EVENT_NONE && !r->efd_set) {
		os_event_set(r->efd);
		r->efd_set = TRUE;
	}
	if (r->context)
		channel_wake_context_later(d, r->context);
}

/* After a receive: the eventfd stays readable only while something is there. */
static void receiver_update_fd_locked(MeshReceiver *r)
{
	if (r->efd != OS_EVENT_NONE && r->efd_set && r->len == 0 && r->n_open > 0) {
		os_event_clear(r->efd);
		r->efd_set = FALSE;
	}
}

static void receiver_prune(MeshReceiver *r);

static void prune_cb(void *data)
{
	MeshReceiver *r = data;
	receiver_prune(r);
	receiver_unref(r);
}

static void entry_mark_closed_locked(MeshReceiver *r, SenderEntry *e, const GError *error,
				     Deferred *d)
{
	if (!e->open)
		return;
	e->open = FALSE;
	r->n_open--;
	if (error && !e->corrupted && r->n_open == 0 && !r->failure) {
		/*
		 * The last sender failed: that is the channel's end, reported
		 * after what is queued (upstream reports "closed" when messages
		 * are queued: a stream cut short by a dead process would look
		 * finished). Its entry is kept: converted to a port, the
		 * receiver hands on the failure.
		 */
		e->failed = TRUE;
		r->failure = g_error_copy(error);
	} else {
		if (error && !e->corrupted)
			debug_log(NULL, "channel sender failed, ignored (others remain): %s",
				  error->message);
		/*
		 * Let go of it now, not at the next receive: senders that an
		 * outside client makes and drops (a listener's) must not pile
		 * up while nobody receives. After the port lock is released.
		 */
		if (!r->prune_due) {
			r->prune_due = TRUE;
			deferred_call(d, prune_cb, receiver_ref(r));
		}
	}
	if (receiver_terminal_locked(r))
		receiver_wake_locked(r, d);
}

/* Cuts @e off for a corrupt message: a marker takes its place in the queue. */
static void entry_cut_off_locked(MeshReceiver *r, SenderEntry *e, GError *error, Deferred *d)
{
	if (e->corrupted || !e->open || r->gone) {
		g_error_free(error);
		return;
	}
	e->corrupted = TRUE;
	queue_push(r, (Item){.from = entry_ref(e), .error = error});
	if (r->len == 1)
		receiver_wake_locked(r, d);
	entry_mark_closed_locked(r, e, NULL, d);
}

/* Port handler hooks: called with the entry's port locked. */

static void attach_entry(void *data)
{
	SenderEntry *e = data;
	MeshReceiver *r = e->recv;

	g_rec_mutex_lock(&r->attach_lock);
	if (!e->detached && e->port) {
		port_set_handler(e->port, &entry_handler, e);
		e->attached = TRUE;
	}
	g_rec_mutex_unlock(&r->attach_lock);
	entry_unref(e);
}

static void entry_on_message(MeshPort *port, void *data, MeshMessage *msg, Deferred *d)
{
	SenderEntry *e = data;
	MeshReceiver *r = e->recv;
	GError *error = NULL;

	if (channel_unwrap(msg, &error) < 0) {
		deferred_release_message(d, msg);
		g_mutex_lock(&r->lock);
		entry_cut_off_locked(r, e, error, d);
		g_mutex_unlock(&r->lock);
		channel_fail_port_later(d, port, "malformed channel message");
		return;
	}

	g_mutex_lock(&r->lock);
	if (r->gone || e->corrupted) {
		if (e->corrupted)
			r->n_dropped++;
		g_mutex_unlock(&r->lock);
		deferred_release_message(d, msg);
		return;
	}
	if (msg->wrap == MESH_WRAP_PORT) {
		/* Another sender: count it open now, attach it after unlocking. */
		MeshPort *np = mesh_message_steal_port(msg, 0);
		deferred_release_message(d, msg);
		if (np) {
			SenderEntry *ne = entry_new(r, np);
			g_ptr_array_add(r->entries, ne);
			r->n_open++;
			deferred_call(d, attach_entry, entry_ref(ne));
		}
	} else {
		queue_push(r, (Item){.msg = msg, .from = entry_ref(e)});
		if (r->len == 1)
			receiver_wake_locked(r, d);
	}
	g_mutex_unlock(&r->lock);
}

static void entry_on_close(MeshPort *port, void *data, Deferred *d)
{
	SenderEntry *e = data;
	MeshReceiver *r = e->recv;

	g_mutex_lock(&r->lock);
	entry_mark_closed_locked(r, e, NULL, d);
	g_mutex_unlock(&r->lock);
}

static void entry_on_fail(MeshPort *port, void *data, const GError *error, Deferred *d)
{
	SenderEntry *e = data;
	MeshReceiver *r = e->recv;

	g_mutex_lock(&r->lock);
	entry_mark_closed_locked(r, e, error, d);
	g_mutex_unlock(&r->lock);
}

static const PortHandler entry_handler = {
	.message = entry_on_message,
	.close = entry_on_close,
	.fail = entry_on_fail,
};

/* Receiver. */

MeshReceiver *mesh_receiver_from_port(MeshPort *port, const ProtobufCMessageDescriptor *desc)
{
	g_return_val_if_fail(port, NULL);
	MeshReceiver *r = receiver_new(desc);
	SenderEntry *e = entry_new(r, port);

	g_ptr_array_add(r->entries, e);
	r->n_open = 1;
	/* A port that already ended may have its entry pruned in there: held. */
	entry_ref(e);
	g_rec_mutex_lock(&r->attach_lock);
	e->attached = TRUE;
	port_set_handler(port, &entry_handler, e);
	g_rec_mutex_unlock(&r->attach_lock);
	entry_unref(e);
	return r;
}

MeshReceiver *mesh_receiver_new(const ProtobufCMessageDescriptor *desc)
{
	return receiver_new(desc);
}

MeshSender *mesh_receiver_new_sender(MeshReceiver *receiver)
{
	MeshReceiver *r = receiver;
	MeshPort *a, *b;
	gboolean prune = FALSE;

	g_return_val_if_fail(receiver, NULL);
	mesh_port_new_pair(&a, &b);
	SenderEntry *e = entry_new(r, b);
	entry_ref(e); /* held while attached, as in mesh_receiver_from_port() */
	g_rec_mutex_lock(&r->attach_lock);
	g_mutex_lock(&r->lock);
	/*
	 * The channel reopens (upstream Receiver::sender()): an end already
	 * reported is forgotten, and a failed last sender let go.
	 */
	if (r->failure) {
		for (guint i = 0; i < r->entries->len; i++)
			((SenderEntry *)r->entries->pdata[i])->failed = FALSE;
		g_clear_error(&r->failure);
		prune = TRUE;
	}
	r->terminal_reported = FALSE;
	r->corrupt_end_reported = FALSE;
	g_ptr_array_add(r->entries, e);
	r->n_open++;
	receiver_update_fd_locked(r);
	g_mutex_unlock(&r->lock);
	e->attached = TRUE;
	port_set_handler(b, &entry_handler, e);
	g_rec_mutex_unlock(&r->attach_lock);
	entry_unref(e);
	if (prune)
		receiver_prune(r);
	return sender_new(a, r->desc);
}

gboolean mesh_receiver_is_terminated(MeshReceiver *receiver)
{
	g_return_val_if_fail(receiver, TRUE);
	g_mutex_lock(&receiver->lock);
	gboolean t = (receiver->terminal_reported || receiver->corrupt_end_reported) &&
		     receiver_terminal_locked(receiver);
	g_mutex_unlock(&receiver->lock);
	return t;
}

void mesh_channel_new(const ProtobufCMessageDescriptor *desc, MeshSender **ret_sender,
		      MeshReceiver **ret_receiver)
{
	MeshPort *a, *b;

	g_return_if_fail(ret_sender && ret_receiver);
	mesh_port_new_pair(&a, &b);
	*ret_sender = sender_new(a, desc);
	*ret_receiver = mesh_receiver_from_port(b, desc);
}

/*
 * Drops the entries that ended (but the failed last one). On the thread that
 * saw them end, without a port lock (a deferred call), or the receiver's.
 */
static void receiver_prune(MeshReceiver *r)
{
	GPtrArray *dead = NULL;

	g_rec_mutex_lock(&r->attach_lock);
	g_mutex_lock(&r->lock);
	for (guint i = 0; i < r->entries->len;) {
		SenderEntry *e = r->entries->pdata[i];
		if (!e->open && !e->failed) {
			if (!dead)
				dead = g_ptr_array_new();
			g_ptr_array_add(dead, g_ptr_array_steal_index_fast(r->entries, i));
		} else {
			i++;
		}
	}
	r->prune_due = FALSE;
	g_mutex_unlock(&r->lock);
	g_rec_mutex_unlock(&r->attach_lock);
	if (!dead)
		return;
	for (guint i = 0; i < dead->len; i++)
		entry_unref(dead->pdata[i]); /* closes the port (its handler with it) */
	g_ptr_array_free(dead, TRUE);
}

/*
 * The I/O hook of the node that the receiver's first open sender port is on.
 * Called without r->lock.
 */
static MeshIoHook *receiver_find_io_hook(MeshReceiver *r)
{
	MeshIoHook *hook = NULL;
	MeshPort *port = NULL;

	/* attach_lock keeps entry->port; r->lock the entry array (lock order). */
	g_rec_mutex_lock(&r->attach_lock);
	g_mutex_lock(&r->lock);
	for (guint i = 0; i < r->entries->len && !port; i++) {
		SenderEntry *e = r->entries->pdata[i];
		if (e->open && e->port)
			port = port_ref(e->port);
	}
	g_mutex_unlock(&r->lock);
	g_rec_mutex_unlock(&r->attach_lock);
	if (port) {
		hook = port_get_io_hook(port);
		port_unref(port);
	} else {
		hook = context_io_hook_for_thread();
	}
	return hook;
}

/*
 * Takes the next item. FALSE with @error for nothing (EMPTY, TIMED_OUT,
 * CLOSED, NODE_FAILURE) or a corruption marker. *@deadline is -1 until a
 * wait of @timeout_us begins (no clock read when an item is ready), then
 * the wait's end: a caller that pops again passes it back, so that the
 * whole receive keeps one deadline.
 */
static gboolean receiver_pop(MeshReceiver *r, gint64 timeout_us, gint64 *deadline_inout,
			     Item *ret, GError **error)
{
	gint64 deadline = *deadline_inout;
	gboolean expired = timeout_us > 0 && deadline >= 0 && g_get_monotonic_time() >= deadline;
	gboolean hook_looked_up = FALSE, io_refused = FALSE;

	g_mutex_lock(&r->lock);
	for (;;) {
		if (r->len) {
			*ret = queue_pop(r);
			receiver_update_fd_locked(r);
			g_mutex_unlock(&r->lock);
			if (ret->error) {
				g_propagate_error(error, ret->error);
				entry_unref(ret->from);
				return FALSE;
			}
			return TRUE;
		}
		if (r->n_open == 0) {
			r->terminal_reported = TRUE;
			if (r->failure)
				g_propagate_error(error, g_error_copy(r->failure));
			else
				g_set_error(error, MESH_ERROR, MESH_ERROR_CLOSED, "the channel is closed");
			g_mutex_unlock(&r->lock);
			return FALSE;
		}
		if (timeout_us == 0 || expired) {
			g_mutex_unlock(&r->lock);
			if (timeout_us == 0)
				g_set_error(error, MESH_ERROR, MESH_ERROR_EMPTY, "no message");
			else
				g_set_error(error, MESH_ERROR, MESH_ERROR_TIMED_OUT,
					    "no message within the timeout");
			return FALSE;
		}
		if (timeout_us > 0 && deadline < 0)
			*deadline_inout = deadline = channel_deadline(timeout_us);
		if (!r->io_hook && !hook_looked_up) {
			hook_looked_up = TRUE;
			g_mutex_unlock(&r->lock);
			MeshIoHook *hook = receiver_find_io_hook(r);
			g_mutex_lock(&r->lock);
			if (hook && !r->io_hook)
				r->io_hook = hook;
			else
				mesh_io_hook_unref(hook);
			continue; /* the state may have changed meanwhile */
		}
		if (r->io_hook && !io_refused) {
			/* Run the transport's I/O here rather than wait for its thread. */
			if (!io_waiters_run(&r->io, &r->lock, r->io_hook, deadline, &expired))
				io_refused = TRUE; /* wait on the GCond, after a new look */
			continue;
		}
		r->n_waiters++;
		if (!channel_cond_wait(&r->cond, &r->lock, deadline))
			expired = TRUE;
		r->n_waiters--;
		io_refused = FALSE;
	}
}


/* A message from @e did not decode: fail its port and drop what else it sent. */
static void receiver_cut_off(MeshReceiver *r, SenderEntry *e, const char *reason)
{
	GArray *all = g_array_new(FALSE, FALSE, sizeof(Item));
	GArray *dropped = g_array_new(FALSE, FALSE, sizeof(Item));
	Deferred d;

	deferred_init(&d);
	g_mutex_lock(&r->lock);
	if (!e->corrupted) {
		e->corrupted = TRUE;
		queue_take_all(r, all);
		for (guint i = 0; i < all->len; i++) {
			Item *it = &g_array_index(all, Item, i);
			if (it->from == e)
				g_array_append_val(dropped, *it);
			else
				queue_push(r, *it);
		}
		r->n_dropped += dropped->len;
		entry_mark_closed_locked(r, e, NULL, &d);
		receiver_update_fd_locked(r);
	}
	g_mutex_unlock(&r->lock);
	for (guint i = 0; i < dropped->len; i++) {
		Item *it = &g_array_index(dropped, Item, i);
		item_clear(it);
		entry_unref(it->from);
	}
	g_array_free(all, TRUE);
	g_array_free(dropped, TRUE);
	if (e->port)
		port_fail(e->port, reason);
	deferred_run(&d);
}

/* Peer faults: at debug level, rate-limited (log-private.h). */
static void log_dropped(const char *what, const GError *error)
{
	debug_log(NULL, "channel: %s dropped: %s", what, error->message);
}

void receiver_drop_message(MeshReceiver *r, const char *what, const GError *error)
{
	g_mutex_lock(&r->lock);
	r->n_dropped++;
	g_mutex_unlock(&r->lock);
	log_dropped(what, error);
}

/*
 * A message from a sender did not decode (@error) and the sender was cut
 * off. Upstream: while other senders remain or messages are
 * queued, it is logged and dropped, and the receive goes on (TRUE); from
 * the last sender it is the receiver's end, reported once (FALSE).
 */
static gboolean receiver_skip_corrupt(MeshReceiver *r, GError *error)
{
	g_mutex_lock(&r->lock);
	gboolean others = r->n_open > 0 || r->len > 0;
	if (others)
		r->n_dropped++;
	else
		r->corrupt_end_reported = TRUE; /* the error ends the stream (upstream is_terminated) */
	g_mutex_unlock(&r->lock);
	if (others)
		log_dropped("a message that does not decode (its sender is cut off)", error);
	return others;
}

/*
 * Takes the next message, in bytes form if @typed_desc is NULL, else
 * decoded as @typed_desc: corrupt ones are skipped while other senders
 * remain.
 */
static gboolean receiver_recv_next(MeshReceiver *r, gint64 timeout_us,
				   const ProtobufCMessageDescriptor *typed_desc,
				   ProtobufCMessage **ret_typed, MeshMessage **ret_msg, GError **error)
{
	gint64 deadline = -1; /* set by the first pop that waits */
	Item it;

	for (;;) {
		GError *err = NULL;
		if (!receiver_pop(r, timeout_us, &deadline, &it, &err)) {
			/* A corruption marker: its sender was cut off when it came. */
			if (g_error_matches(err, MESH_ERROR, MESH_ERROR_CORRUPTION) &&
			    receiver_skip_corrupt(r, err)) {
				g_error_free(err);
				continue;
			}
			g_propagate_error(error, err);
			return FALSE;
		}
		if (typed_desc) {
			ProtobufCMessage *typed = mesh_message_into_typed(it.msg, typed_desc, &err);
			if (typed) {
				entry_unref(it.from);
				*ret_typed = typed;
				return TRUE;
			}
		} else if (message_ensure_bytes(it.msg, &err) == 0) {
			entry_unref(it.from);
			it.msg->wrap = MESH_WRAP_NONE;
			*ret_msg = it.msg;
			return TRUE;
		} else {
			mesh_message_free(it.msg);
		}
		receiver_cut_off(r, it.from, "corrupt channel message");
		entry_unref(it.from);
		if (receiver_skip_corrupt(r, err)) {
			g_error_free(err);
			continue;
		}
		g_propagate_error(error, err);
		return FALSE;
	}
}

gboolean mesh_receiver_recv(MeshReceiver *receiver, gint64 timeout_us, ProtobufCMessage **ret_msg,
			    GError **error)
{
	g_return_val_if_fail(receiver && ret_msg, FALSE);
	g_return_val_if_fail(error == NULL || *error == NULL, FALSE);
	if (!timeout_check(timeout_us, G_STRFUNC, error))
		return FALSE;
	if (!receiver->desc) {
		g_set_error(error, MESH_ERROR, MESH_ERROR_INVALID_ARGUMENT,
			    "mesh_receiver_recv() on an untyped receiver: use "
			    "mesh_receiver_recv_message()");
		return FALSE;
	}
	return receiver_recv_next(receiver, timeout_us, receiver->desc, ret_msg, NULL, error);
}

gboolean mesh_receiver_recv_message(MeshReceiver *receiver, gint64 timeout_us,
				    MeshMessage **ret_msg, GError **error)
{
	g_return_val_if_fail(receiver && ret_msg, FALSE);
	g_return_val_if_fail(error == NULL || *error == NULL, FALSE);
	if (!timeout_check(timeout_us, G_STRFUNC, error))
		return FALSE;
	return receiver_recv_next(receiver, timeout_us, NULL, NULL, ret_msg, error);
}

guint64 mesh_receiver_get_n_dropped(MeshReceiver *receiver)
{
	g_return_val_if_fail(receiver, 0);
	g_mutex_lock(&receiver->lock);
	guint64 n = receiver->n_dropped;
	g_mutex_unlock(&receiver->lock);
	return n;
}

guint mesh_receiver_count_senders(MeshReceiver *receiver)
{
	g_return_val_if_fail(receiver, 0);
	g_mutex_lock(&receiver->lock);
	guint n = receiver->entries->len;
	g_mutex_unlock(&receiver->lock);
	return n;
}

/* Callbacks: a GSource ready while the receiver is. */

typedef struct {
	GSource base;
	MeshReceiver *recv; /* strong */
} ReceiverSource;

static gboolean receiver_source_ready(MeshReceiver *r)
{
	g_mutex_lock(&r->lock);
	gboolean ready = r->len > 0 || (r->n_open == 0 && !r->terminal_reported);
	g_mutex_unlock(&r->lock);
	return ready;
}

static gboolean receiver_source_prepare(GSource *source, gint *timeout)
{
	*timeout = -1;
	return receiver_source_ready(((ReceiverSource *)source)->recv);
}

static gboolean receiver_source_check(GSource *source)
{
	return receiver_source_ready(((ReceiverSource *)source)->recv);
}

static gboolean receiver_source_dispatch(GSource *source, GSourceFunc callback, gpointer user_data)
{
	MeshReceiver *r = ((ReceiverSource *)source)->recv;

	if (!callback)
		return G_SOURCE_CONTINUE;
	g_mutex_lock(&r->lock);
	if (receiver_terminal_locked(r))
		r->terminal_reported = TRUE; /* the end is reported once */
	g_mutex_unlock(&r->lock);
	((MeshReceiverFunc)(void (*)(void))callback)(r, user_data);
	return G_SOURCE_CONTINUE;
}

static void receiver_source_finalize(GSource *source)
{
	receiver_unref(((ReceiverSource *)source)->recv);
}

static GSourceFuncs receiver_source_funcs = {
	.prepare = receiver_source_prepare,
	.check = receiver_source_check,
	.dispatch = receiver_source_dispatch,
	.finalize = receiver_source_finalize,
};

void channel_source_attach(GSource *source, const char *name, GMainContext *context,
			   GSourceFunc func, gpointer user_data, GDestroyNotify notify)
{
	g_source_set_name(source, name);
	g_source_set_callback(source, func, user_data, notify);
	g_source_attach(source, context);
}

void channel_swap_source(GMutex *lock, GSource **slot, GMainContext **slot_context,
			 GSource *source, GMainContext *context)
{
	g_mutex_lock(lock);
	GSource *old = *slot;
	GMainContext *old_context = *slot_context;
	*slot = source;
	*slot_context = source ? g_main_context_ref(context) : NULL;
	g_mutex_unlock(lock);
	if (old) {
		g_source_destroy(old);
		g_source_unref(old);
	}
	if (old_context)
		g_main_context_unref(old_context);
}

void mesh_receiver_set_callback(MeshReceiver *receiver, GMainContext *context,
				MeshReceiverFunc func, gpointer user_data, GDestroyNotify notify)
{
	GSource *source = NULL;

	g_return_if_fail(receiver);
	if (!context)
		context = g_main_context_default();
	if (func) {
		source = g_source_new(&receiver_source_funcs, sizeof(ReceiverSource));
		((ReceiverSource *)source)->recv = receiver_ref(receiver);
		channel_source_attach(source, "MeshReceiver", context, G_SOURCE_FUNC(func),
				      user_data, notify);
	}
	channel_swap_source(&receiver->lock, &receiver->source, &receiver->context, source,
			    context);
	if (!func && notify)
		notify(user_data);
}

/* The receiver's event, made on the first call; NONE and *@ret_errno on failure. */
static OsEvent receiver_get_event(MeshReceiver *receiver, int *ret_errno)
{
	g_mutex_lock(&receiver->lock);
	if (receiver->efd == OS_EVENT_NONE) {
		gboolean ready = receiver->len || receiver->n_open == 0;
		receiver->efd = os_event_new(ready, ret_errno);
		receiver->efd_set = ready;
	}
	OsEvent ev = receiver->efd;
	g_mutex_unlock(&receiver->lock);
	return ev;
}

#ifdef G_OS_WIN32
MeshOsHandle mesh_receiver_get_handle(MeshReceiver *receiver)
{
	int e;
	g_return_val_if_fail(receiver, MESH_OS_HANDLE_INVALID);
	return receiver_get_event(receiver, &e);
}
#else
int mesh_receiver_get_fd(MeshReceiver *receiver)
{
	int e = -EIO;
	g_return_val_if_fail(receiver, -EINVAL);
	OsEvent ev = receiver_get_event(receiver, &e);
	return ev != OS_EVENT_NONE ? ev : e;
}
#endif

/*
 * Detaches every sender port from the receiver, which then accepts nothing
 * more. Returns its entries and queued items; the callback source is removed.
 */
static void receiver_detach_all(MeshReceiver *r, GPtrArray **ret_entries, GArray **ret_items)
{
	GSource *source;
	GMainContext *context;

	g_rec_mutex_lock(&r->attach_lock);
	for (guint i = 0;; i++) {
		g_mutex_lock(&r->lock);
		if (i >= r->entries->len) {
			r->gone = TRUE; /* still locked */
			break;
		}
		SenderEntry *e = entry_ref(r->entries->pdata[i]);
		g_mutex_unlock(&r->lock);
		e->detached = TRUE;
		/* Waits for a running handler; then none runs for this port. */
		if (e->attached && e->port)
			port_set_handler(e->port, NULL, NULL);
		entry_unref(e);
	}
	*ret_entries = r->entries;
	r->entries = g_ptr_array_new();
	*ret_items = g_array_new(FALSE, FALSE, sizeof(Item));
	queue_take_all(r, *ret_items);
	r->n_open = 0;
	source = r->source;
	context = r->context;
	r->source = NULL;
	r->context = NULL;
	g_mutex_unlock(&r->lock);
	g_rec_mutex_unlock(&r->attach_lock);

	if (source) {
		g_source_destroy(source);
		g_source_unref(source);
	}
	if (context)
		g_main_context_unref(context);
}

static void release_items(GArray *items)
{
	for (guint i = 0; i < items->len; i++) {
		Item *it = &g_array_index(items, Item, i);
		item_clear(it);
		entry_unref(it->from);
	}
	g_array_free(items, TRUE);
}

void mesh_receiver_free(MeshReceiver *receiver)
{
	GPtrArray *entries;
	GArray *items;

	if (!receiver)
		return;
	receiver_detach_all(receiver, &entries, &items);
	/* Closing the ports tells every sender; then the queue is released. */
	for (guint i = 0; i < entries->len; i++)
		entry_unref(entries->pdata[i]);
	g_ptr_array_free(entries, TRUE);
	release_items(items);
	receiver_unref(receiver);
}

static MeshMessage *port_message_new(MeshPort *port)
{
	MeshPayloadResources *res = mesh_payload_resources_new();

	if (!res || mesh_payload_resources_append_port_take(res, mesh_port_as_object(port)) < 0)
		g_error("out of memory");
	return message_new_bytes_take(NULL, 0, res, MESH_WRAP_PORT);
}

MeshPort *mesh_receiver_into_port(MeshReceiver *receiver)
{
	GPtrArray *entries;
	GArray *items;
	MeshPort *a, *b;

	g_return_val_if_fail(receiver, NULL);
	receiver_detach_all(receiver, &entries, &items);

	if (entries->len == 1 && items->len == 0) {
		SenderEntry *e = entries->pdata[0];
		if (!e->corrupted && e->port) {
			/* The one sender port stands for the receiver itself. */
			MeshPort *port = e->port;
			e->port = NULL;
			entry_unref(e);
			g_ptr_array_free(entries, TRUE);
			g_array_free(items, TRUE);
			receiver_unref(receiver);
			return port;
		}
	}

	/*
	 * Otherwise a new port carries it all, in order: first the queued
	 * messages, then every sender port (whose own queue keeps what came
	 * after), so each sender's messages stay in order.
	 */
	mesh_port_new_pair(&a, &b);
	for (guint i = 0; i < items->len; i++) {
		Item *it = &g_array_index(items, Item, i);
		if (it->msg) {
			it->msg->wrap = MESH_WRAP_FIELD1;
			port_send(a, it->msg, FALSE);
			it->msg = NULL;
		} else {
			debug_log(NULL, "channel: a corruption report is not forwarded: %s",
				  it->error->message);
		}
	}
	release_items(items);
	for (guint i = 0; i < entries->len; i++) {
		SenderEntry *e = entries->pdata[i];
		/* Closed and corrupt senders have nothing more to say. */
		if (e->port && !e->corrupted && (e->open || e->failed)) {
			port_send(a, port_message_new(e->port), FALSE);
			e->port = NULL;
		}
		entry_unref(e);
	}
	g_ptr_array_free(entries, TRUE);
	mesh_port_close(a);
	receiver_unref(receiver);
	return b;
}

void mesh_sender_bridge(MeshSender *sender, MeshReceiver *receiver)
{
	if (!sender || !receiver) {
		/* Both are taken, as always: the one given is dropped. */
		mesh_sender_free(sender);
		mesh_receiver_free(receiver);
		g_return_if_fail(sender && receiver);
	}
	/*
	 * The receiver's port holds its queue and its senders, and reads as
	 * closed once they are gone: bridged, all of it goes on in order.
	 */
	mesh_port_bridge(mesh_sender_into_port(sender), mesh_receiver_into_port(receiver));
}

void mesh_receiver_bridge(MeshReceiver *receiver, MeshSender *sender)
{
	if (!sender || !receiver) {
		/* Both are taken, as always: the one given is dropped. */
		mesh_sender_free(sender);
		mesh_receiver_free(receiver);
		g_return_if_fail(sender && receiver);
	}
	mesh_sender_bridge(sender, receiver);
}
