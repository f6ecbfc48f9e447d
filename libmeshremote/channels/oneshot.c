/* SPDX-License-Identifier: MIT */
/*
 * Oneshot channels on ports (upstream mesh_channel_core oneshot.rs,
 * reference 4.2): the value is one message (field 1 of the wire payload)
 * sent with the close flag in the same event.
 *
 * The receiver sets a handler on its port that keeps the first value (or
 * the end) under the receiver's own lock, taken under the port lock.
 */
#include <errno.h>

#include "channel-private.h"
#include "os-private.h"

struct MeshOneshotSender {
	MeshPort *port;
	const ProtobufCMessageDescriptor *desc;
};

typedef enum {
	ONESHOT_WAITING,
	ONESHOT_VALUE,
	ONESHOT_CLOSED,
	ONESHOT_FAILED,
	ONESHOT_CORRUPT,
} OneshotState;

struct MeshOneshotReceiver {
	gint ref; /* the owner's, and one per callback source (its memory, not its port) */
	GMutex lock;
	GCond cond;
	MeshPort *port;
	const ProtobufCMessageDescriptor *desc;
	/* Under lock: */
	OneshotState state;
	MeshMessage *value;
	GError *error; /* FAILED, CORRUPT */
	guint n_waiters;
	IoWaiters io; /* threads running the transport's I/O while they wait */
	OsEvent efd;  /* mesh_oneshot_receiver_get_fd() (Windows: _get_handle()), NONE until asked for */
	GSource *source;       /* mesh_oneshot_receiver_set_callback() */
	GMainContext *context; /* where it runs, while one is set */
};

/* Sender. */

void mesh_oneshot_send_message(MeshOneshotSender *sender, MeshMessage *msg)
{
	if (!sender || !msg) {
		/* Both are taken, as always: a sender without a value is dropped. */
		mesh_oneshot_sender_free(sender);
		mesh_message_free(msg);
		g_return_if_fail(sender && msg);
	}
	msg->wrap = MESH_WRAP_FIELD1;
	port_send(sender->port, msg, TRUE); /* value and close in one event */
	mesh_port_close(sender->port);      /* already closed: drops the reference */
	g_free(sender);
}

void mesh_oneshot_send(MeshOneshotSender *sender, ProtobufCMessage *msg)
{
	if (!sender || !msg) {
		/* Both are taken, as always: a sender without a value is dropped. */
		mesh_oneshot_sender_free(sender);
		mesh_payload_message_free(msg);
		g_return_if_fail(sender && msg);
	}
	mesh_oneshot_send_message(sender, mesh_message_new_typed_take(msg));
}

void mesh_oneshot_sender_free(MeshOneshotSender *sender)
{
	if (!sender)
		return;
	mesh_port_close(sender->port);
	g_free(sender);
}

gboolean mesh_oneshot_sender_is_closed(MeshOneshotSender *sender)
{
	g_return_val_if_fail(sender, TRUE);
	PortState s = port_get_state(sender->port);
	return s == PORT_DONE || s == PORT_FAILED;
}

MeshPort *mesh_oneshot_sender_into_port(MeshOneshotSender *sender)
{
	g_return_val_if_fail(sender, NULL);
	MeshPort *port = sender->port;
	g_free(sender);
	return port;
}

MeshOneshotSender *mesh_oneshot_sender_from_port(MeshPort *port,
						 const ProtobufCMessageDescriptor *desc)
{
	g_return_val_if_fail(port, NULL);
	MeshOneshotSender *s = g_new(MeshOneshotSender, 1);
	s->port = port;
	s->desc = desc;
	return s;
}

/* Receiver: handler hooks, called with the port locked. */

static void oneshot_wake_locked(MeshOneshotReceiver *r, Deferred *d)
{
	if (r->efd != OS_EVENT_NONE)
		os_event_set(r->efd); /* once: the outcome never goes away until consumed */
	if (r->context)
		channel_wake_context_later(d, r->context);
	if (r->n_waiters)
		g_cond_broadcast(&r->cond);
	MeshIoHook *hook = io_waiters_wake_locked(&r->io);
	if (hook) {
		hook->funcs.wakeup(hook->user_data); /* only an eventfd write: fine under the locks */
		mesh_io_hook_unref(hook); /* not the last: the waiter holds one */
	}
}

static void oneshot_on_message(MeshPort *port, void *data, MeshMessage *msg, Deferred *d)
{
	MeshOneshotReceiver *r = data;
	GError *error = NULL;

	if (channel_unwrap(msg, &error) == 0 && msg->wrap == MESH_WRAP_PORT) {
		deferred_release_message(d, msg);
		msg = NULL;
		error = g_error_new(MESH_ERROR, MESH_ERROR_CORRUPTION,
				    "unexpected port message on a oneshot");
	}
	g_mutex_lock(&r->lock);
	if (r->state == ONESHOT_WAITING && !error) {
		r->value = msg;
		r->state = ONESHOT_VALUE;
		oneshot_wake_locked(r, d);
	} else if (r->state == ONESHOT_WAITING || r->state == ONESHOT_VALUE) {
		/* A second message, or a malformed one: the value is discarded. */
		if (!error)
			error = g_error_new(MESH_ERROR, MESH_ERROR_CORRUPTION,
					    "unexpected oneshot message");
		deferred_release_message(d, r->value);
		deferred_release_message(d, msg);
		r->value = NULL;
		msg = NULL;
		r->state = ONESHOT_CORRUPT;
		r->error = error;
		error = NULL;
		oneshot_wake_locked(r, d);
		channel_fail_port_later(d, port, r->error->message);
	} else {
		deferred_release_message(d, msg);
		msg = NULL;
	}
	g_mutex_unlock(&r->lock);
	if (error)
		g_error_free(error);
}

static void oneshot_on_close(MeshPort *port, void *data, Deferred *d)
{
	MeshOneshotReceiver *r = data;

	g_mutex_lock(&r->lock);
	if (r->state == ONESHOT_WAITING) {
		r->state = ONESHOT_CLOSED;
		oneshot_wake_locked(r, d);
	}
	g_mutex_unlock(&r->lock);
}

static void oneshot_on_fail(MeshPort *port, void *data, const GError *error, Deferred *d)
{
	MeshOneshotReceiver *r = data;

	g_mutex_lock(&r->lock);
	if (r->state == ONESHOT_WAITING) {
		/* Failure may overtake nothing here: a value already kept stays. */
		r->state = ONESHOT_FAILED;
		r->error = g_error_copy(error);
		oneshot_wake_locked(r, d);
	}
	g_mutex_unlock(&r->lock);
}

static const PortHandler oneshot_handler = {
	.message = oneshot_on_message,
	.close = oneshot_on_close,
	.fail = oneshot_on_fail,
};

MeshOneshotReceiver *mesh_oneshot_receiver_from_port(MeshPort *port,
						     const ProtobufCMessageDescriptor *desc)
{
	g_return_val_if_fail(port, NULL);
	MeshOneshotReceiver *r = g_new0(MeshOneshotReceiver, 1);

	g_mutex_init(&r->lock);
	g_cond_init(&r->cond);
	r->port = port;
	r->desc = desc;
	r->ref = 1;
	r->efd = OS_EVENT_NONE;
	r->state = ONESHOT_WAITING;
	port_set_handler(port, &oneshot_handler, r);
	return r;
}

void mesh_oneshot_new(const ProtobufCMessageDescriptor *desc, MeshOneshotSender **ret_sender,
		      MeshOneshotReceiver **ret_receiver)
{
	MeshPort *a, *b;

	g_return_if_fail(ret_sender && ret_receiver);
	mesh_port_new_pair(&a, &b);
	*ret_sender = mesh_oneshot_sender_from_port(a, desc);
	*ret_receiver = mesh_oneshot_receiver_from_port(b, desc);
}

static MeshOneshotReceiver *oneshot_receiver_ref(MeshOneshotReceiver *r)
{
	g_atomic_int_inc(&r->ref);
	return r;
}

static void oneshot_receiver_unref(MeshOneshotReceiver *r)
{
	if (!g_atomic_int_dec_and_test(&r->ref))
		return;
	mesh_message_free(r->value);
	g_clear_error(&r->error);
	os_handle_close(r->efd);
	g_cond_clear(&r->cond);
	g_mutex_clear(&r->lock);
	g_free(r);
}

/*
 * Frees the receiver state; the port was already closed or handed out, so
 * no handler runs. The callback source goes (its notify after a running
 * dispatch returns); a source being dispatched keeps the memory.
 */
static void oneshot_receiver_destroy(MeshOneshotReceiver *r)
{
	channel_swap_source(&r->lock, &r->source, &r->context, NULL, NULL);
	oneshot_receiver_unref(r);
}

void mesh_oneshot_receiver_free(MeshOneshotReceiver *receiver)
{
	if (!receiver)
		return;
	/* Clears the handler under the port lock: no hook runs after this. */
	mesh_port_close(receiver->port);
	oneshot_receiver_destroy(receiver);
}

MeshPort *mesh_oneshot_receiver_into_port(MeshOneshotReceiver *r)
{
	MeshPort *port, *a, *b;

	g_return_val_if_fail(r, NULL);
	port_set_handler(r->port, NULL, NULL); /* no hook runs after this */
	port = r->port;
	switch (r->state) {
	case ONESHOT_VALUE:
		/* The value left the port already: resend it on a new one. */
		mesh_port_new_pair(&a, &b);
		r->value->wrap = MESH_WRAP_FIELD1;
		port_send(a, r->value, TRUE);
		r->value = NULL;
		mesh_port_close(a);
		mesh_port_close(port);
		port = b;
		break;
	case ONESHOT_CORRUPT:
		/* Stands for the failure; the old port is failed (or about to be). */
		mesh_port_new_pair(&a, &b);
		port_fail(a, r->error->message);
		mesh_port_close(a);
		mesh_port_close(port);
		port = b;
		break;
	default:
		/* Waiting, closed or failed: the port itself carries that. */
		break;
	}
	oneshot_receiver_destroy(r);
	return port;
}

/* Waits for the outcome; TRUE with the value (@r consumed) or FALSE with @error. */
static gboolean oneshot_wait(MeshOneshotReceiver *r, gint64 timeout_us, MeshMessage **ret,
			     GError **error)
{
	gint64 deadline = -1; /* computed when a wait begins: no clock read when ready */
	gboolean expired = FALSE, looked_up = FALSE, io_refused = FALSE;
	MeshIoHook *hook = NULL;

	g_mutex_lock(&r->lock);
	while (r->state == ONESHOT_WAITING) {
		if (timeout_us == 0 || expired) {
			g_mutex_unlock(&r->lock);
			mesh_io_hook_unref(hook);
			if (timeout_us == 0)
				g_set_error(error, MESH_ERROR, MESH_ERROR_EMPTY, "no value yet");
			else
				g_set_error(error, MESH_ERROR, MESH_ERROR_TIMED_OUT,
					    "no value within the timeout");
			return FALSE;
		}
		if (timeout_us > 0 && deadline < 0)
			deadline = channel_deadline(timeout_us);
		if (!looked_up) {
			/* The port's lock comes before ours: look without it. */
			looked_up = TRUE;
			g_mutex_unlock(&r->lock);
			hook = port_get_io_hook(r->port);
			g_mutex_lock(&r->lock);
			continue;
		}
		if (hook && !io_refused) {
			/* Run the transport's I/O here (see receiver_pop() in channel.c). */
			if (!io_waiters_run(&r->io, &r->lock, hook, deadline, &expired))
				io_refused = TRUE;
			continue;
		}
		r->n_waiters++;
		if (!channel_cond_wait(&r->cond, &r->lock, deadline))
			expired = TRUE;
		r->n_waiters--;
		io_refused = FALSE;
	}
	OneshotState state = r->state;
	MeshMessage *value = r->value;
	GError *err = r->error;
	r->value = NULL;
	r->error = NULL;
	g_mutex_unlock(&r->lock);
	mesh_io_hook_unref(hook);

	mesh_oneshot_receiver_free(r);
	switch (state) {
	case ONESHOT_VALUE:
		*ret = value;
		return TRUE;
	case ONESHOT_CLOSED:
		g_set_error(error, MESH_ERROR, MESH_ERROR_CLOSED,
			    "the oneshot sender was dropped without sending");
		return FALSE;
	default:
		g_propagate_error(error, err);
		return FALSE;
	}
}

gboolean mesh_oneshot_recv(MeshOneshotReceiver *receiver, gint64 timeout_us,
			   ProtobufCMessage **ret_msg, GError **error)
{
	MeshMessage *msg;

	g_return_val_if_fail(receiver && ret_msg, FALSE); /* not consumed */
	g_return_val_if_fail(error == NULL || *error == NULL, FALSE);
	if (!timeout_check(timeout_us, G_STRFUNC, error))
		return FALSE; /* not consumed, as after TIMED_OUT */
	if (!receiver->desc) {
		/* The receiver stays the caller's, as after EMPTY or TIMED_OUT. */
		g_set_error(error, MESH_ERROR, MESH_ERROR_INVALID_ARGUMENT,
			    "mesh_oneshot_recv() on an untyped oneshot receiver: use "
			    "mesh_oneshot_recv_message()");
		return FALSE;
	}
	const ProtobufCMessageDescriptor *desc = receiver->desc;
	if (!oneshot_wait(receiver, timeout_us, &msg, error))
		return FALSE;
	*ret_msg = mesh_message_into_typed(msg, desc, error);
	return *ret_msg != NULL;
}

gboolean mesh_oneshot_recv_message(MeshOneshotReceiver *receiver, gint64 timeout_us,
				   MeshMessage **ret_msg, GError **error)
{
	MeshMessage *msg;

	g_return_val_if_fail(receiver && ret_msg, FALSE); /* not consumed */
	g_return_val_if_fail(error == NULL || *error == NULL, FALSE);
	if (!timeout_check(timeout_us, G_STRFUNC, error))
		return FALSE; /* not consumed, as after TIMED_OUT */
	if (!oneshot_wait(receiver, timeout_us, &msg, error))
		return FALSE;
	if (message_ensure_bytes(msg, error) < 0) {
		mesh_message_free(msg);
		return FALSE;
	}
	msg->wrap = MESH_WRAP_NONE;
	*ret_msg = msg;
	return TRUE;
}

/* Callbacks: a GSource ready once the outcome (value or end) is there. */

typedef struct {
	GSource base;
	MeshOneshotReceiver *recv; /* strong (its memory) */
} OneshotSource;

static gboolean oneshot_source_ready(GSource *source)
{
	MeshOneshotReceiver *r = ((OneshotSource *)source)->recv;

	g_mutex_lock(&r->lock);
	gboolean ready = r->state != ONESHOT_WAITING;
	g_mutex_unlock(&r->lock);
	return ready;
}

static gboolean oneshot_source_prepare(GSource *source, gint *timeout)
{
	*timeout = -1;
	return oneshot_source_ready(source);
}

static gboolean oneshot_source_dispatch(GSource *source, GSourceFunc callback, gpointer user_data)
{
	if (callback)
		((MeshOneshotReceiverFunc)(void (*)(void))callback)(
			((OneshotSource *)source)->recv, user_data);
	return G_SOURCE_CONTINUE;
}

static void oneshot_source_finalize(GSource *source)
{
	oneshot_receiver_unref(((OneshotSource *)source)->recv);
}

static GSourceFuncs oneshot_source_funcs = {
	.prepare = oneshot_source_prepare,
	.check = oneshot_source_ready,
	.dispatch = oneshot_source_dispatch,
	.finalize = oneshot_source_finalize,
};

void mesh_oneshot_receiver_set_callback(MeshOneshotReceiver *receiver, GMainContext *context,
					MeshOneshotReceiverFunc func, gpointer user_data,
					GDestroyNotify notify)
{
	GSource *source = NULL;

	g_return_if_fail(receiver);
	if (!context)
		context = g_main_context_default();
	if (func) {
		source = g_source_new(&oneshot_source_funcs, sizeof(OneshotSource));
		((OneshotSource *)source)->recv = oneshot_receiver_ref(receiver);
		channel_source_attach(source, "MeshOneshotReceiver", context, G_SOURCE_FUNC(func),
				      user_data, notify);
	}
	channel_swap_source(&receiver->lock, &receiver->source, &receiver->context, source,
			    context);
	if (!func && notify)
		notify(user_data);
}

/* The receiver's event, made on the first call; NONE and *@ret_errno on failure. */
static OsEvent oneshot_get_event(MeshOneshotReceiver *receiver, int *ret_errno)
{
	g_mutex_lock(&receiver->lock);
	if (receiver->efd == OS_EVENT_NONE)
		receiver->efd = os_event_new(receiver->state != ONESHOT_WAITING, ret_errno);
	OsEvent ev = receiver->efd;
	g_mutex_unlock(&receiver->lock);
	return ev;
}

#ifdef G_OS_WIN32
MeshOsHandle mesh_oneshot_receiver_get_handle(MeshOneshotReceiver *receiver)
{
	int e;
	g_return_val_if_fail(receiver, MESH_OS_HANDLE_INVALID);
	return oneshot_get_event(receiver, &e);
}
#else
int mesh_oneshot_receiver_get_fd(MeshOneshotReceiver *receiver)
{
	int e = -EIO;
	g_return_val_if_fail(receiver, -EINVAL);
	OsEvent ev = oneshot_get_event(receiver, &e);
	return ev != OS_EVENT_NONE ? ev : e;
}
#endif
