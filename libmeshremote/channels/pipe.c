/* SPDX-License-Identifier: MIT */
/*
 * Pipes on ports (upstream mesh_channel pipe.rs, reference 4.5): each write
 * is one raw message; the reader gives credit back with PipeQuota messages.
 *
 * Each end sets a handler on its port that updates the end's state under
 * its Waitable's lock (taken under the port lock). Messages are sent only
 * with no lock held: the reader's credit computed under the lock goes out
 * after it (credit is additive: the order of two quota messages does not
 * matter).
 */
#include <errno.h>
#include <string.h>

#include "channels.pb-c.h"
#include "waitable-private.h"

struct MeshReadPipe {
	gint ref;
	Waitable w;
	MeshPort *port;
	guint32 quota_bytes;
	guint32 quota_messages;
	/* Under w.lock: */
	GQueue data;     /* MeshMessage * in bytes form, the first read from head_off */
	gsize head_off;
	gsize buffered;  /* unread bytes */
	guint32 consumed_bytes;    /* read since the last credit given back */
	guint32 consumed_messages; /* received since the last credit given back */
};

struct MeshWritePipe {
	gint ref;
	Waitable w;
	MeshPort *port; /* NULL: made closed (an upstream WritePipe without its port) */
	/* Under w.lock: */
	guint32 remaining_bytes;
	guint32 remaining_messages;
};

/* Reader. */

static gboolean read_pipe_ready_locked(gpointer owner)
{
	MeshReadPipe *p = owner;
	return p->buffered > 0 || p->w.closed || p->w.failed;
}

static gpointer read_pipe_ref(gpointer owner)
{
	MeshReadPipe *p = owner;
	g_atomic_int_inc(&p->ref);
	return p;
}

static void read_pipe_unref(gpointer owner)
{
	MeshReadPipe *p = owner;
	if (!g_atomic_int_dec_and_test(&p->ref))
		return;
	g_queue_clear_full(&p->data, (GDestroyNotify)mesh_message_free);
	waitable_clear(&p->w);
	g_free(p);
}

static const WaitableClass read_pipe_class = {
	.name = "MeshReadPipe",
	.ready_locked = read_pipe_ready_locked,
	.ref = read_pipe_ref,
	.unref = read_pipe_unref,
};

/* @data is the pipe's Waitable (the close and fail handlers are waitable's). */
static void read_pipe_on_message(MeshPort *port, void *data, MeshMessage *msg, Deferred *d)
{
	MeshReadPipe *p = ((Waitable *)data)->owner;
	GError *error = NULL;

	/* The payload is the bytes (a typed message sent in process: its encoding). */
	int r = message_ensure_bytes(msg, &error);
	g_mutex_lock(&p->w.lock);
	if (p->w.failed || r < 0) {
		if (!p->w.failed)
			p->w.failed = error;
		else
			g_clear_error(&error);
		deferred_release_message(d, msg);
		channel_fail_port_later(d, port, p->w.failed->message);
	} else if (msg->size + p->buffered + p->consumed_bytes > p->quota_bytes) {
		p->w.failed = g_error_new(MESH_ERROR, MESH_ERROR_CORRUPTION,
					"pipe: received message beyond quota");
		deferred_release_message(d, msg);
		channel_fail_port_later(d, port, p->w.failed->message);
	} else {
		/* Upstream keeps the bytes only: resources that came along are dropped. */
		if (msg->res && mesh_payload_resources_len(msg->res)) {
			MeshMessage *bytes = message_new_bytes_copy(msg->data, msg->size, NULL,
								    MESH_WRAP_NONE);
			deferred_release_message(d, msg);
			msg = bytes;
		}
		p->consumed_messages++;
		if (msg->size) {
			g_queue_push_tail(&p->data, msg);
			p->buffered += msg->size;
		} else {
			deferred_release_message(d, msg);
		}
	}
	waitable_changed_locked(&p->w, d);
	g_mutex_unlock(&p->w.lock);
}

static const PortHandler read_pipe_handler = {
	.message = read_pipe_on_message,
	.close = waitable_on_port_close,
	.fail = waitable_on_port_fail,
};

static MeshReadPipe *read_pipe_new(MeshPort *port, guint32 quota_bytes, guint32 quota_messages)
{
	MeshReadPipe *p = g_new0(MeshReadPipe, 1);

	p->ref = 1;
	waitable_init(&p->w, &read_pipe_class, p);
	p->port = port;
	p->quota_bytes = quota_bytes;
	p->quota_messages = quota_messages;
	g_queue_init(&p->data);
	port_set_handler(port, &read_pipe_handler, &p->w);
	return p;
}

/* Sends credit back (no lock held). */
static void pipe_send_quota(MeshPort *port, guint32 bytes, guint32 messages)
{
	MeshChannels__PipeQuota *q = g_new(MeshChannels__PipeQuota, 1);

	mesh_channels__pipe_quota__init(q);
	q->bytes = bytes;
	q->messages = messages;
	port_send(port, mesh_message_new_typed_take(&q->base), FALSE);
}

gssize mesh_read_pipe_read(MeshReadPipe *pipe, void *buf, gsize size, gint64 timeout_us,
			   GError **error)
{
	MeshIoHook *hook = NULL;
	guint32 credit_bytes = 0, credit_messages = 0;
	gsize n = 0;

	g_return_val_if_fail(pipe && (buf || size == 0), -1);
	g_return_val_if_fail(error == NULL || *error == NULL, -1);
	if (!timeout_check(timeout_us, G_STRFUNC, error))
		return -1;
	if (size == 0)
		return 0;
	g_mutex_lock(&pipe->w.lock);
	if (!read_pipe_ready_locked(pipe) &&
	    (timeout_us == 0 ||
	     !waitable_wait_locked(&pipe->w, pipe->port, channel_deadline(timeout_us), &hook))) {
		g_mutex_unlock(&pipe->w.lock);
		mesh_io_hook_unref(hook);
		waitable_set_timeout_error(error, timeout_us, "pipe read");
		return -1;
	}
	mesh_io_hook_unref(hook);
	if (pipe->buffered == 0) {
		gssize r = 0;
		if (pipe->w.failed) {
			g_propagate_error(error, g_error_copy(pipe->w.failed));
			r = -1;
		}
		g_mutex_unlock(&pipe->w.lock);
		return r;
	}
	while (n < size && pipe->buffered) {
		MeshMessage *msg = g_queue_peek_head(&pipe->data);
		gsize k = MIN(size - n, msg->size - pipe->head_off);
		memcpy((uint8_t *)buf + n, msg->data + pipe->head_off, k);
		n += k;
		pipe->head_off += k;
		pipe->buffered -= k;
		if (pipe->head_off == msg->size) {
			mesh_message_free(g_queue_pop_head(&pipe->data));
			pipe->head_off = 0;
		}
	}
	pipe->consumed_bytes += (guint32)n;
	if (pipe->consumed_bytes >= pipe->quota_bytes / 2 ||
	    pipe->consumed_messages >= pipe->quota_messages / 2) {
		credit_bytes = pipe->consumed_bytes;
		credit_messages = pipe->consumed_messages;
		pipe->consumed_bytes = 0;
		pipe->consumed_messages = 0;
	}
	waitable_changed_locked(&pipe->w, NULL);
	g_mutex_unlock(&pipe->w.lock);
	if (credit_bytes || credit_messages)
		pipe_send_quota(pipe->port, credit_bytes, credit_messages);
	return (gssize)n;
}

void mesh_read_pipe_set_callback(MeshReadPipe *pipe, GMainContext *context, MeshReadPipeFunc func,
				 gpointer user_data, GDestroyNotify notify)
{
	g_return_if_fail(pipe);
	waitable_set_callback(&pipe->w, context, (WaitableFunc)(void (*)(void))func, user_data,
			      notify);
}

#ifdef G_OS_WIN32
MeshOsHandle mesh_read_pipe_get_handle(MeshReadPipe *pipe)
{
	g_return_val_if_fail(pipe, MESH_OS_HANDLE_INVALID);
	return waitable_get_handle(&pipe->w);
}
#else
int mesh_read_pipe_get_fd(MeshReadPipe *pipe)
{
	g_return_val_if_fail(pipe, -EINVAL);
	return waitable_get_fd(&pipe->w);
}
#endif

static void read_pipe_destroy(MeshReadPipe *pipe)
{
	waitable_set_callback(&pipe->w, NULL, NULL, NULL, NULL);
	read_pipe_unref(pipe);
}

void mesh_read_pipe_free(MeshReadPipe *pipe)
{
	if (!pipe)
		return;
	mesh_port_close(pipe->port); /* clears the handler under the port lock */
	read_pipe_destroy(pipe);
}

MeshMessage *mesh_read_pipe_into_message(MeshReadPipe *pipe)
{
	MeshPort *port, *a, *b;

	g_return_val_if_fail(pipe, NULL);
	port_set_handler(pipe->port, NULL, NULL); /* no hook runs after this */
	port = pipe->port;
	g_mutex_lock(&pipe->w.lock);
	guint32 credit_bytes = pipe->consumed_bytes, credit_messages = pipe->consumed_messages;
	gsize buffered = pipe->buffered;
	gboolean closed = pipe->w.closed;
	GError *failed = pipe->w.failed;
	pipe->w.failed = NULL;
	uint8_t *data = buffered ? g_malloc(buffered) : NULL;
	gsize off = pipe->head_off, k = 0;
	MeshMessage *msg;
	while ((msg = g_queue_pop_head(&pipe->data))) {
		memcpy(data + k, msg->data + off, msg->size - off);
		k += msg->size - off;
		off = 0;
		mesh_message_free(msg);
	}
	pipe->buffered = 0;
	pipe->head_off = 0;
	g_mutex_unlock(&pipe->w.lock);

	/*
	 * Credit for what was read here goes back now (upstream drops it: a
	 * writer would lose it for good at every move).
	 */
	if (credit_bytes || credit_messages)
		pipe_send_quota(port, credit_bytes, credit_messages);
	if (data || closed || failed) {
		/*
		 * The unread bytes left the port: a new port carries them, then
		 * what the old one has or gets (upstream's drain), then its end.
		 */
		mesh_port_new_pair(&a, &b);
		if (data)
			port_send(a, message_new_bytes_take(data, buffered, NULL, MESH_WRAP_NONE),
				  FALSE);
		if (failed) {
			port_fail(a, failed->message);
			mesh_port_close(a);
			mesh_port_close(port);
		} else if (closed) {
			mesh_port_close(a);
			mesh_port_close(port);
		} else {
			mesh_port_bridge(a, port);
		}
		port = b;
	}
	g_clear_error(&failed);
	MeshChannels__PipeRead *m = g_new(MeshChannels__PipeRead, 1);
	mesh_channels__pipe_read__init(m);
	m->port = mesh_port_into_field(port);
	m->quota_bytes = pipe->quota_bytes;
	m->quota_messages = pipe->quota_messages;
	read_pipe_destroy(pipe);
	return mesh_message_new_typed_take(&m->base);
}

MeshReadPipe *mesh_read_pipe_from_message(MeshMessage *msg, GError **error)
{
	if (error && *error) {
		mesh_message_free(msg);
		g_return_val_if_fail(error == NULL || *error == NULL, NULL);
	}
	g_return_val_if_fail(msg, NULL);
	MeshChannels__PipeRead *m = (MeshChannels__PipeRead *)mesh_message_into_typed(
		msg, &mesh_channels__pipe_read__descriptor, error);
	if (!m)
		return NULL;
	MeshPort *port = mesh_port_steal_from_field(m->port);
	guint32 qb = m->quota_bytes, qm = m->quota_messages;
	mesh_payload_message_free(&m->base);
	if (!port) {
		g_set_error(error, MESH_ERROR, MESH_ERROR_CORRUPTION, "a ReadPipe without its port");
		return NULL;
	}
	return read_pipe_new(port, qb, qm);
}

/* Writer. */

static gboolean write_pipe_ready_locked(gpointer owner)
{
	MeshWritePipe *p = owner;
	return (p->remaining_bytes > 0 && p->remaining_messages > 0) || p->w.closed || p->w.failed;
}

static gpointer write_pipe_ref(gpointer owner)
{
	MeshWritePipe *p = owner;
	g_atomic_int_inc(&p->ref);
	return p;
}

static void write_pipe_unref(gpointer owner)
{
	MeshWritePipe *p = owner;
	if (!g_atomic_int_dec_and_test(&p->ref))
		return;
	waitable_clear(&p->w);
	g_free(p);
}

static const WaitableClass write_pipe_class = {
	.name = "MeshWritePipe",
	.ready_locked = write_pipe_ready_locked,
	.ref = write_pipe_ref,
	.unref = write_pipe_unref,
};

/* @data is the pipe's Waitable, as for the reader. */
static void write_pipe_on_message(MeshPort *port, void *data, MeshMessage *msg, Deferred *d)
{
	MeshWritePipe *p = ((Waitable *)data)->owner;
	GError *error = NULL;
	MeshChannels__PipeQuota *q = NULL;

	g_mutex_lock(&p->w.lock);
	if (p->w.failed) {
		deferred_release_message(d, msg);
		g_mutex_unlock(&p->w.lock);
		return;
	}
	g_mutex_unlock(&p->w.lock);
	/* Decoding a quota message takes no lock. */
	q = (MeshChannels__PipeQuota *)mesh_message_into_typed(
		msg, &mesh_channels__pipe_quota__descriptor, &error);
	g_mutex_lock(&p->w.lock);
	if (!q) {
		if (!p->w.failed)
			p->w.failed = error;
		else
			g_error_free(error);
		channel_fail_port_later(d, port, p->w.failed->message);
	} else if (!p->w.failed) {
		/* Saturated: a peer cannot make the credit wrap around. */
		p->remaining_bytes = (guint32)MIN((guint64)p->remaining_bytes + q->bytes, G_MAXUINT32);
		p->remaining_messages =
			(guint32)MIN((guint64)p->remaining_messages + q->messages, G_MAXUINT32);
	}
	waitable_changed_locked(&p->w, d);
	g_mutex_unlock(&p->w.lock);
	mesh_payload_message_free(q ? &q->base : NULL);
}

static const PortHandler write_pipe_handler = {
	.message = write_pipe_on_message,
	.close = waitable_on_port_close,
	.fail = waitable_on_port_fail,
};

static MeshWritePipe *write_pipe_new(MeshPort *port, guint32 bytes, guint32 messages)
{
	MeshWritePipe *p = g_new0(MeshWritePipe, 1);

	p->ref = 1;
	waitable_init(&p->w, &write_pipe_class, p);
	p->port = port;
	p->remaining_bytes = bytes;
	p->remaining_messages = messages;
	p->w.closed = port == NULL;
	if (port)
		port_set_handler(port, &write_pipe_handler, &p->w);
	return p;
}

void mesh_pipe_new(MeshReadPipe **ret_read, MeshWritePipe **ret_write)
{
	MeshPort *r, *w;

	g_return_if_fail(ret_read && ret_write);
	mesh_port_new_pair(&r, &w);
	*ret_read = read_pipe_new(r, MESH_PIPE_QUOTA_BYTES, MESH_PIPE_QUOTA_MESSAGES);
	*ret_write = write_pipe_new(w, MESH_PIPE_QUOTA_BYTES, MESH_PIPE_QUOTA_MESSAGES);
}

/* One write; @deadline as for waitable_wait_locked(), @timeout_us for the error. */
static gssize write_pipe_write_once(MeshWritePipe *pipe, const void *buf, gsize size,
				    gint64 timeout_us, gint64 deadline, MeshIoHook **hook,
				    GError **error)
{
	g_mutex_lock(&pipe->w.lock);
	if (!write_pipe_ready_locked(pipe) &&
	    (timeout_us == 0 || !waitable_wait_locked(&pipe->w, pipe->port, deadline, hook))) {
		g_mutex_unlock(&pipe->w.lock);
		waitable_set_timeout_error(error, timeout_us, "pipe write");
		return -1;
	}
	if (pipe->w.failed) {
		g_propagate_error(error, g_error_copy(pipe->w.failed));
		g_mutex_unlock(&pipe->w.lock);
		return -1;
	}
	if (pipe->w.closed) {
		g_mutex_unlock(&pipe->w.lock);
		g_set_error(error, MESH_ERROR, MESH_ERROR_CLOSED, "pipe write: the reader is gone");
		return -1;
	}
	gsize n = MIN(size, pipe->remaining_bytes);
	pipe->remaining_bytes -= (guint32)n;
	pipe->remaining_messages--;
	waitable_changed_locked(&pipe->w, NULL);
	g_mutex_unlock(&pipe->w.lock);
	port_send(pipe->port, message_new_bytes_copy(buf, n, NULL, MESH_WRAP_NONE), FALSE);
	return (gssize)n;
}

gssize mesh_write_pipe_write(MeshWritePipe *pipe, const void *buf, gsize size, gint64 timeout_us,
			     GError **error)
{
	MeshIoHook *hook = NULL;

	g_return_val_if_fail(pipe && (buf || size == 0), -1);
	g_return_val_if_fail(error == NULL || *error == NULL, -1);
	if (!timeout_check(timeout_us, G_STRFUNC, error))
		return -1;
	if (size == 0)
		return 0;
	gssize r = write_pipe_write_once(pipe, buf, size, timeout_us, channel_deadline(timeout_us),
					 &hook, error);
	mesh_io_hook_unref(hook);
	return r;
}

gboolean mesh_write_pipe_write_all(MeshWritePipe *pipe, const void *buf, gsize size,
				   gint64 timeout_us, GError **error)
{
	MeshIoHook *hook = NULL;
	gsize off = 0;

	g_return_val_if_fail(pipe && (buf || size == 0), FALSE);
	g_return_val_if_fail(error == NULL || *error == NULL, FALSE);
	if (!timeout_check(timeout_us, G_STRFUNC, error))
		return FALSE;
	gint64 deadline = channel_deadline(timeout_us);
	while (off < size) {
		gssize n = write_pipe_write_once(pipe, (const uint8_t *)buf + off, size - off,
						 timeout_us, deadline, &hook, error);
		if (n < 0)
			break;
		off += (gsize)n;
	}
	mesh_io_hook_unref(hook);
	return off == size;
}

void mesh_write_pipe_set_callback(MeshWritePipe *pipe, GMainContext *context,
				  MeshWritePipeFunc func, gpointer user_data, GDestroyNotify notify)
{
	g_return_if_fail(pipe);
	waitable_set_callback(&pipe->w, context, (WaitableFunc)(void (*)(void))func, user_data,
			      notify);
}

#ifdef G_OS_WIN32
MeshOsHandle mesh_write_pipe_get_handle(MeshWritePipe *pipe)
{
	g_return_val_if_fail(pipe, MESH_OS_HANDLE_INVALID);
	return waitable_get_handle(&pipe->w);
}
#else
int mesh_write_pipe_get_fd(MeshWritePipe *pipe)
{
	g_return_val_if_fail(pipe, -EINVAL);
	return waitable_get_fd(&pipe->w);
}
#endif

static void write_pipe_destroy(MeshWritePipe *pipe)
{
	waitable_set_callback(&pipe->w, NULL, NULL, NULL, NULL);
	write_pipe_unref(pipe);
}

void mesh_write_pipe_free(MeshWritePipe *pipe)
{
	if (!pipe)
		return;
	mesh_port_close(pipe->port);
	write_pipe_destroy(pipe);
}

MeshMessage *mesh_write_pipe_into_message(MeshWritePipe *pipe)
{
	MeshPort *port = pipe ? pipe->port : NULL, *a, *b;

	g_return_val_if_fail(pipe, NULL);
	MeshChannels__PipeWrite *m = g_new(MeshChannels__PipeWrite, 1);
	mesh_channels__pipe_write__init(m);
	if (port) {
		port_set_handler(port, NULL, NULL); /* no hook runs after this */
		g_mutex_lock(&pipe->w.lock);
		guint32 bytes = pipe->remaining_bytes, messages = pipe->remaining_messages;
		gboolean ended = pipe->w.closed || pipe->w.failed;
		g_mutex_unlock(&pipe->w.lock);
		if (!ended && (bytes || messages)) {
			/*
			 * The credit goes with the end (upstream's drain): a quota
			 * message first on a new port, then what the old one
			 * has or gets. A closed or failed port carries its end.
			 */
			mesh_port_new_pair(&a, &b);
			pipe_send_quota(a, bytes, messages);
			mesh_port_bridge(a, port);
			port = b;
		}
		m->port = mesh_port_into_field(port);
	}
	write_pipe_destroy(pipe);
	return mesh_message_new_typed_take(&m->base);
}

MeshWritePipe *mesh_write_pipe_from_message(MeshMessage *msg, GError **error)
{
	if (error && *error) {
		mesh_message_free(msg);
		g_return_val_if_fail(error == NULL || *error == NULL, NULL);
	}
	g_return_val_if_fail(msg, NULL);
	MeshChannels__PipeWrite *m = (MeshChannels__PipeWrite *)mesh_message_into_typed(
		msg, &mesh_channels__pipe_write__descriptor, error);
	if (!m)
		return NULL;
	MeshPort *port = mesh_port_steal_from_field(m->port);
	mesh_payload_message_free(&m->base);
	return write_pipe_new(port, 0, 0);
}
