/* SPDX-License-Identifier: MIT */
/*
 * MeshP2pLink (see p2p-private.h for what lives in p2p/): one peer over a
 * stream. The node hands events to link_sink_send() on any thread; they
 * are written at once when nothing is queued (non-blocking), the rest
 * queued, bounded (doc/libmeshremote-p2p.md). A GSource on the I/O context
 * writes the queue out and reads: the hello first, then frames fed to
 * mesh_node_receive_event().
 *
 * Threads: the read state is the I/O context's alone; everything else is
 * under link->lock. Nothing calls into the node with the lock held.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <pal/pal.h>

#include "p2p-private.h"

#define NO_EXTRA_CONNECTIONS "no extra connections allowed in point-to-point mesh"
/* Reads per dispatch before others get a turn. */
#define READ_ROUNDS 16
/* iovecs per write of the queue. */
#define WRITE_IOV 64
/* The smallest send limit mesh_p2p_link_set_send_limit() takes. */
#define MIN_SEND_LIMIT (64u * 1024)

typedef struct {
	size_t len, off;
	uint8_t data[];
} OutChunk;

typedef struct {
	GSource base;
	MeshP2pLink *link; /* strong */
} LinkSource;

/* What a link carries: no OS handles; events up to the core's largest. */
static const MeshTransportCaps link_caps = {
	.version = 0,
	.max_handles = NULL,
	.max_event_size = 0,
};

struct MeshP2pLink {
	gint ref;
	GMutex lock;
	GCond cond; /* the queue went down, the write side closed, the link ended */
	MeshNode *node;
	gboolean own_node; /* made by the link: its connector and I/O hook are ours */
	int in_fd, out_fd;
	gboolean out_is_socket;
	GMainContext *context;
	GThread *thread; /* own I/O thread, or NULL (a caller's context) */
	gint quit;
	MeshIoHook *context_hook; /* a caller's context */
	gboolean hook_installed;  /* as the node's I/O hook */
	GSource *source;
	gpointer in_tag, out_tag; /* the same when in_fd == out_fd */
	GIOCondition out_watch;   /* what out_tag watches for writing now (I/O context) */
	P2pReader reader;         /* I/O context only */

	MeshPortId local_port;
	MeshPort *user_port; /* until the peer's hello */
	MeshP2pLinkState state;
	gboolean have_peer;
	MeshNodeId peer;
	MeshRemoteNode *remote;
	GError *error;
	/*
	 * A failure met on a sender's thread, ended on the I/O context
	 * (fail_later_locked()): no more sending meanwhile.
	 */
	GError *fail_pending;

	GQueue out; /* OutChunk *, the first the hello */
	size_t queued;
	gboolean out_closing; /* shutdown: close the write side once flushed */
	gboolean out_closed;
	gsize limit;
	gint64 timeout_us;

	MeshP2pLinkEndedFunc ended_func;
	gpointer ended_data;
	GDestroyNotify ended_notify;
	gboolean ended_reported;
	GSource *report_source;

	MeshP2pPeerDescribeFunc describe_func;
	gpointer describe_data;
	GDestroyNotify describe_notify;
};

static MeshP2pLink *link_ref(MeshP2pLink *l)
{
	g_atomic_int_inc(&l->ref);
	return l;
}

static void link_unref(MeshP2pLink *l)
{
	if (!g_atomic_int_dec_and_test(&l->ref))
		return;
	OutChunk *c;
	while ((c = g_queue_pop_head(&l->out)))
		g_free(c);
	p2p_reader_clear(&l->reader);
	g_clear_error(&l->error);
	g_clear_error(&l->fail_pending);
	g_main_context_unref(l->context);
	mesh_node_unref(l->node);
	g_cond_clear(&l->cond);
	g_mutex_clear(&l->lock);
	g_free(l);
}

static gboolean link_ended_locked(MeshP2pLink *l)
{
	return l->state == MESH_P2P_LINK_CLOSED || l->state == MESH_P2P_LINK_FAILED;
}

/* Writes @iov without SIGPIPE: MSG_NOSIGNAL on a socket, the signal held back on a pipe. */
static ssize_t write_nosigpipe(int fd, gboolean is_socket, const struct iovec *iov, int n)
{
	if (is_socket) {
		struct msghdr m = {.msg_iov = (struct iovec *)iov, .msg_iovlen = n};
		return sendmsg(fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
	}
	sigset_t pipe_set, old, pending;
	sigemptyset(&pipe_set);
	sigaddset(&pipe_set, SIGPIPE);
	sigpending(&pending);
	gboolean was_pending = sigismember(&pending, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
	ssize_t r = writev(fd, iov, n);
	int e = errno;
	if (r < 0 && e == EPIPE && !was_pending) {
		/* Ours: consume it before the mask comes back. */
		struct timespec zero = {0, 0};
		sigtimedwait(&pipe_set, NULL, &zero);
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	errno = e;
	return r;
}

static void report_ended(MeshP2pLink *l);

/*
 * Ends the link (once): @error (taken) NULL is a clean end. Fails the
 * remote node, and so every port that depended on the peer, with @why
 * (NULL: @error's message); closes the local port when the hello never
 * came. No lock held.
 */
static void link_end_full(MeshP2pLink *l, GError *error, const char *why)
{
	g_mutex_lock(&l->lock);
	if (link_ended_locked(l)) {
		g_mutex_unlock(&l->lock);
		g_clear_error(&error);
		return;
	}
	l->state = error ? MESH_P2P_LINK_FAILED : MESH_P2P_LINK_CLOSED;
	l->error = error;
	OutChunk *c;
	while ((c = g_queue_pop_head(&l->out)))
		g_free(c);
	l->queued = 0;
	MeshRemoteNode *remote = g_steal_pointer(&l->remote);
	MeshPort *user_port = g_steal_pointer(&l->user_port);
	const char *what = error ? error->message : "the point-to-point link ended (end of stream)";
	char *reason = g_strdup(why ? why : what);
	MeshP2pPeerDescribeFunc describe = remote ? l->describe_func : NULL;
	gpointer describe_data = l->describe_data;
	MeshNodeId peer = l->peer;
	g_cond_broadcast(&l->cond);
	g_mutex_unlock(&l->lock);

	char *who = describe ? describe(l, &peer, describe_data) : NULL;
	if (who) {
		char *full = g_strdup_printf("%s: %s", who, reason);
		g_free(reason);
		g_free(who);
		reason = full;
	}

	g_debug("mesh: p2p link ended: %s", reason);
	if (remote) {
		mesh_remote_node_fail(remote, reason);
		mesh_remote_node_unref(remote);
	}
	/* No peer to name yet: the port's peer sees it closed; the link says why. */
	mesh_port_close(user_port);
	g_free(reason);
	report_ended(l);
	/* The source sees the end, removes itself and closes the fds. */
	g_main_context_wakeup(l->context);
}

static void link_end(MeshP2pLink *l, GError *error)
{
	link_end_full(l, error, NULL);
}

/*
 * The link's error for a failure (@cause, not taken): it names the peer once
 * its hello came (MESH_ERROR_NODE_FAILURE), else it is @cause. Locked.
 */
static GError *link_error_locked(MeshP2pLink *l, const GError *cause)
{
	char id[33];

	if (!l->have_peer)
		return g_error_copy(cause);
	return g_error_new(MESH_ERROR, MESH_ERROR_NODE_FAILURE,
			   "communication with node %s failed: %s",
			   mesh_uuid_to_string(&l->peer, id), cause->message);
}

/*
 * A failure (@cause taken): the link's error names the peer once its hello
 * came (MESH_ERROR_NODE_FAILURE); the ports get @cause's message as the
 * reason their node failed.
 */
static void link_fail(MeshP2pLink *l, GError *cause)
{
	g_mutex_lock(&l->lock);
	GError *error = link_error_locked(l, cause);
	g_mutex_unlock(&l->lock);
	link_end_full(l, error, cause->message);
	g_error_free(cause);
}

static gboolean fail_later_cb(gpointer data)
{
	MeshP2pLink *l = data;

	g_mutex_lock(&l->lock);
	GError *error = g_steal_pointer(&l->fail_pending);
	g_mutex_unlock(&l->lock);
	if (error)
		link_fail(l, error);
	return G_SOURCE_REMOVE;
}

/*
 * A failure (@error taken) met while sending: sending stops now, and the
 * link fails on its I/O context. Failing it here would fail the remote
 * node, its ports and call the describer on the sender's stack, inside
 * whatever the sender holds (its own locks: a describer that takes one of
 * them deadlocks). Locked.
 */
static void fail_later_locked(MeshP2pLink *l, GError *error)
{
	if (link_ended_locked(l) || l->fail_pending) {
		g_error_free(error);
		return;
	}
	l->fail_pending = error;
	g_cond_broadcast(&l->cond); /* senders waiting for room */
	GSource *s = g_idle_source_new();
	g_source_set_priority(s, G_PRIORITY_DEFAULT);
	g_source_set_callback(s, fail_later_cb, link_ref(l), (GDestroyNotify)link_unref);
	g_source_attach(s, l->context);
	g_source_unref(s);
}

static gboolean report_cb(gpointer data)
{
	MeshP2pLink *l = data;

	g_mutex_lock(&l->lock);
	MeshP2pLinkEndedFunc func = l->ended_reported ? NULL : l->ended_func;
	gpointer user_data = l->ended_data;
	GError *error = l->error ? g_error_copy(l->error) : NULL;
	if (func)
		l->ended_reported = TRUE;
	g_mutex_unlock(&l->lock);
	if (func)
		func(l, error, user_data);
	g_clear_error(&error);
	return G_SOURCE_REMOVE;
}

/* Schedules the ended function on the I/O context, if the link ended and has one. */
static void report_ended(MeshP2pLink *l)
{
	g_mutex_lock(&l->lock);
	if (!link_ended_locked(l) || !l->ended_func || l->ended_reported || l->report_source) {
		g_mutex_unlock(&l->lock);
		return;
	}
	GSource *s = g_idle_source_new();
	g_source_set_callback(s, report_cb, link_ref(l), (GDestroyNotify)link_unref);
	l->report_source = s;
	g_source_attach(s, l->context);
	g_mutex_unlock(&l->lock);
}

/* Writes the queue out until it is empty or the stream is full. Locked. FALSE: failed (@error). */
static gboolean flush_locked(MeshP2pLink *l, GError **error)
{
	while (l->out.length > 0 && l->out_fd >= 0) {
		struct iovec iov[WRITE_IOV];
		int n = 0;
		for (GList *it = l->out.head; it && n < WRITE_IOV; it = it->next, n++) {
			OutChunk *c = it->data;
			iov[n].iov_base = c->data + c->off;
			iov[n].iov_len = c->len - c->off;
		}
		ssize_t w = write_nosigpipe(l->out_fd, l->out_is_socket, iov, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return TRUE;
			g_set_error(error, MESH_ERROR, MESH_ERROR_NODE_FAILURE,
				    "failed to send data: %s", g_strerror(errno));
			return FALSE;
		}
		size_t before = l->queued;
		l->queued -= (size_t)w;
		while (w > 0) {
			OutChunk *c = g_queue_peek_head(&l->out);
			size_t left = c->len - c->off;
			if ((size_t)w < left) {
				c->off += (size_t)w;
				break;
			}
			w -= (ssize_t)left;
			g_free(g_queue_pop_head(&l->out));
		}
		if (before >= l->limit && l->queued < l->limit)
			g_cond_broadcast(&l->cond);
	}
	return TRUE;
}

/*
 * One step of a wait on l->cond (locked; released meanwhile): on a
 * caller's context that this thread may run (mesh_io_hook_acquire_context()),
 * nobody else would make progress: iterate it once. FALSE at @deadline.
 */
static gboolean wait_step_locked(MeshP2pLink *l, gint64 deadline)
{
	if (l->context_hook && mesh_io_hook_acquire_context(l->context_hook)) {
		g_mutex_unlock(&l->lock);
		gboolean expired = mesh_main_context_iterate_until(l->context, deadline);
		g_main_context_release(l->context);
		g_mutex_lock(&l->lock);
		return !expired;
	}
	if (deadline < 0) {
		g_cond_wait(&l->cond, &l->lock);
		return TRUE;
	}
	return g_cond_wait_until(&l->cond, &l->lock, deadline);
}

/*
 * Whether this thread runs the link's I/O now (its sends must never wait):
 * it owns the context (the I/O thread while it iterates, a dispatch on a
 * caller's context, a wait that iterates it).
 */
static gboolean on_io_thread(MeshP2pLink *l)
{
	return g_main_context_is_owner(l->context);
}

/* MeshEventSink.send: any thread, never with a library lock held. */
static void link_sink_send(void *data, const struct iovec *iov, size_t n_iov,
			   const MeshOsHandle *handles, size_t n_handles)
{
	MeshP2pLink *l = data;
	GError *error = NULL;
	size_t size = 0;

	if (n_handles > 0) {
		/* Never: link_caps fails such a message's port at the sender. */
		g_debug("mesh: p2p: an event with %zu OS handles dropped: a point-to-point "
			"link carries none",
			n_handles);
		return;
	}
	for (size_t i = 0; i < n_iov; i++)
		size += iov[i].iov_len;
	guint64 head = GUINT64_TO_LE((guint64)size);

	g_mutex_lock(&l->lock);
	if (l->queued >= l->limit && !link_ended_locked(l) && !l->fail_pending) {
		/* Backpressure: the peer does not keep up. */
		if (!on_io_thread(l) && l->timeout_us > 0) {
			gint64 deadline = g_get_monotonic_time() + l->timeout_us;
			while (l->queued >= l->limit && !link_ended_locked(l) && !l->fail_pending &&
			       wait_step_locked(l, deadline))
				;
		}
		gboolean may_queue = l->queued < l->limit ||
				     (on_io_thread(l) && l->queued < 2 * l->limit);
		if (!link_ended_locked(l) && !may_queue) {
			g_set_error(&error, MESH_ERROR, MESH_ERROR_NODE_FAILURE,
				    "peer not reading: %zu bytes queued (limit %zu)", l->queued,
				    (size_t)l->limit);
			fail_later_locked(l, error);
			g_mutex_unlock(&l->lock);
			return;
		}
	}
	if (link_ended_locked(l) || l->fail_pending || l->out_closing || l->out_fd < 0) {
		g_mutex_unlock(&l->lock);
		return;
	}
	size_t written = 0;
	if (l->out.length == 0) {
		/* Nothing queued: straight to the stream, on this thread. */
		struct iovec v[5];
		v[0].iov_base = &head;
		v[0].iov_len = 8;
		for (size_t i = 0; i < n_iov; i++)
			v[i + 1] = iov[i];
		ssize_t w;
		do
			w = write_nosigpipe(l->out_fd, l->out_is_socket, v, (int)n_iov + 1);
		while (w < 0 && errno == EINTR);
		if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
			g_set_error(&error, MESH_ERROR, MESH_ERROR_NODE_FAILURE,
				    "failed to send data: %s", g_strerror(errno));
			fail_later_locked(l, error);
			g_mutex_unlock(&l->lock);
			return;
		}
		written = w > 0 ? (size_t)w : 0;
		if (written == 8 + size) {
			g_mutex_unlock(&l->lock);
			return;
		}
	}
	/* The rest is queued, framing included. */
	size_t total = 8 + size, rest = total - written;
	OutChunk *c = g_malloc(sizeof(OutChunk) + rest);
	c->len = rest;
	c->off = 0;
	size_t pos = 0, at = 0; /* at: the offset in the frame of the next byte copied */
	const uint8_t *hp = (const uint8_t *)&head;
	for (; at < 8; at++)
		if (at >= written)
			c->data[pos++] = hp[at];
	for (size_t i = 0; i < n_iov; i++) {
		size_t len = iov[i].iov_len, skip = 0;
		if (at + len <= written) {
			at += len;
			continue;
		}
		if (at < written)
			skip = written - at;
		memcpy(c->data + pos, (const uint8_t *)iov[i].iov_base + skip, len - skip);
		pos += len - skip;
		at += len;
	}
	gboolean was_empty = l->out.length == 0;
	g_queue_push_tail(&l->out, c);
	l->queued += rest;
	g_mutex_unlock(&l->lock);
	if (was_empty)
		g_main_context_wakeup(l->context);
}

static void link_sink_destroy(void *data)
{
	link_unref(data);
}

static const MeshEventSink link_sink = {
	.version = MESH_EVENT_SINK_VERSION,
	.send = link_sink_send,
	.destroy = link_sink_destroy,
	.caps = &link_caps,
};

/* The node's connector: a point-to-point mesh has exactly two nodes. */
static void no_extra_connections(MeshNode *node, MeshRemoteNode *remote, void *data)
{
	mesh_remote_node_fail(remote, NO_EXTRA_CONNECTIONS);
	mesh_remote_node_unref(remote);
}

/* The peer's hello: connect the remote node, join the ports. I/O context, no lock. */
static void handle_hello(MeshP2pLink *l, const P2pItem *it)
{
	if (mesh_uuid_equal(&it->node, mesh_node_get_id(l->node)) || mesh_uuid_is_zero(&it->node)) {
		link_fail(l, g_error_new(MESH_ERROR, MESH_ERROR_CORRUPTION,
					 "the peer's hello names %s node id",
					 mesh_uuid_is_zero(&it->node) ? "a zero" : "our own"));
		return;
	}
	g_mutex_lock(&l->lock);
	l->peer = it->node;
	l->have_peer = TRUE;
	if (l->state == MESH_P2P_LINK_CONNECTING)
		l->state = MESH_P2P_LINK_OPEN;
	MeshPort *user_port = g_steal_pointer(&l->user_port);
	g_mutex_unlock(&l->lock);
	if (!user_port)
		return; /* ended meanwhile */

	MeshRemoteNode *remote = mesh_node_add_remote(l->node, &it->node);
	if (!mesh_remote_node_connect(remote, &link_sink, link_ref(l))) {
		mesh_remote_node_unref(remote);
		mesh_port_close(user_port);
		link_fail(l, g_error_new(MESH_ERROR, MESH_ERROR_DUPLICATE,
					 "the node already has a connection to the peer (or it "
					 "failed)"));
		return;
	}
	g_mutex_lock(&l->lock);
	gboolean ended = link_ended_locked(l);
	if (!ended)
		l->remote = mesh_remote_node_ref(remote);
	g_mutex_unlock(&l->lock);
	if (ended)
		mesh_remote_node_fail(remote, "the point-to-point link ended");
	mesh_remote_node_unref(remote);

	MeshPort *init = mesh_node_add_port(l->node, &l->local_port, &it->node, &it->port);
	if (!init) {
		/* A random id taken: only if the node is given and very unlucky. */
		mesh_port_close(user_port);
		return;
	}
	mesh_port_bridge(init, user_port);
}

/* Reads what is there and feeds it on. I/O context. FALSE: the link ended. */
static gboolean link_read(MeshP2pLink *l)
{
	GError *error = NULL;

	for (int round = 0; round < READ_ROUNDS; round++) {
		size_t space;
		uint8_t *at = p2p_reader_space(&l->reader, &space);
		ssize_t n = read(l->in_fd, at, space);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return TRUE;
			link_fail(l, g_error_new(MESH_ERROR, MESH_ERROR_NODE_FAILURE,
						 "failed to receive data: %s", g_strerror(errno)));
			return FALSE;
		}
		if (n == 0) {
			if (p2p_reader_at_eof(&l->reader, &error))
				link_end(l, NULL);
			else
				link_fail(l, error);
			return FALSE;
		}
		p2p_reader_commit(&l->reader, (size_t)n);
		P2pItem it;
		P2pItemKind k;
		while ((k = p2p_reader_next(&l->reader, &it, &error)) != P2P_ITEM_NONE) {
			if (k == P2P_ITEM_ERROR) {
				link_fail(l, error);
				return FALSE;
			}
			if (k == P2P_ITEM_HELLO) {
				handle_hello(l, &it);
			} else if (it.owned) {
				mesh_node_receive_event_full(l->node, &l->peer, it.data, it.size,
							     NULL, 0, g_free, it.owned);
			} else {
				mesh_node_receive_event(l->node, &l->peer, it.data, it.size, NULL,
							0);
			}
			g_mutex_lock(&l->lock);
			gboolean ended = link_ended_locked(l);
			g_mutex_unlock(&l->lock);
			if (ended)
				return FALSE;
		}
		/* Less than asked: the stream was drained; no read just for EAGAIN. */
		if ((size_t)n < space)
			break;
	}
	return TRUE;
}

/* The out fd's watch: writable while something is queued or a close waits. Locked. */
static void update_out_watch_locked(MeshP2pLink *l)
{
	if (!l->out_tag)
		return;
	GIOCondition out = (l->out.length > 0 || (l->out_closing && !l->out_closed)) ? G_IO_OUT : 0;
	if (out == l->out_watch)
		return;
	l->out_watch = out;
	GIOCondition in = l->in_tag == l->out_tag ? G_IO_IN | G_IO_HUP | G_IO_ERR : 0;
	g_source_modify_unix_fd(l->source, l->out_tag, in | out | G_IO_ERR);
}

/* Shutdown's last step, once flushed: the peer reads an end of stream. Locked. */
static void close_out_locked(MeshP2pLink *l)
{
	if (l->out_is_socket) {
		shutdown(l->out_fd, SHUT_WR);
	} else if (l->out_fd != l->in_fd) {
		g_source_remove_unix_fd(l->source, l->out_tag);
		l->out_tag = NULL;
		close(l->out_fd);
		l->out_fd = -1;
	}
	l->out_closed = TRUE;
	g_cond_broadcast(&l->cond);
}

static gboolean link_source_prepare(GSource *s, gint *timeout)
{
	MeshP2pLink *l = ((LinkSource *)s)->link;

	*timeout = -1;
	g_mutex_lock(&l->lock);
	gboolean ended = link_ended_locked(l);
	if (!ended)
		update_out_watch_locked(l);
	g_mutex_unlock(&l->lock);
	return ended;
}

static gboolean link_source_dispatch(GSource *s, GSourceFunc cb, gpointer data)
{
	MeshP2pLink *l = ((LinkSource *)s)->link;
	GError *error = NULL;

	g_mutex_lock(&l->lock);
	if (link_ended_locked(l)) {
		g_mutex_unlock(&l->lock);
		return G_SOURCE_REMOVE;
	}
	GIOCondition in = l->in_tag ? g_source_query_unix_fd(s, l->in_tag) : 0;
	GIOCondition out = l->out_tag ? g_source_query_unix_fd(s, l->out_tag) : 0;
	gboolean separate = l->out_tag != l->in_tag;
	g_mutex_unlock(&l->lock);
	/* Reading first: a peer that closed both ways ends cleanly. */
	if ((in & (G_IO_IN | G_IO_HUP | G_IO_ERR)) && !link_read(l))
		return G_SOURCE_REMOVE;
	g_mutex_lock(&l->lock);
	gboolean ok = TRUE;
	if (out & (G_IO_OUT | G_IO_ERR | G_IO_HUP)) {
		ok = flush_locked(l, &error);
		if (ok && l->out_closing && !l->out_closed && l->out.length == 0)
			close_out_locked(l);
	}
	if (ok && separate && (out & (G_IO_ERR | G_IO_HUP)) && l->out_fd >= 0) {
		/* A pipe whose reader went: nothing can be written any more. */
		g_set_error(&error, MESH_ERROR, MESH_ERROR_NODE_FAILURE,
			    "the peer closed the stream it reads");
		ok = FALSE;
	}
	if (!ok) {
		g_mutex_unlock(&l->lock);
		link_fail(l, error);
		return G_SOURCE_REMOVE;
	}
	update_out_watch_locked(l);
	g_mutex_unlock(&l->lock);
	return G_SOURCE_CONTINUE;
}

static void link_source_finalize(GSource *s)
{
	MeshP2pLink *l = ((LinkSource *)s)->link;

	/* No dispatch runs any more: the fds go (a send checks out_fd under the lock). */
	g_mutex_lock(&l->lock);
	if (l->out_fd >= 0 && l->out_fd != l->in_fd)
		close(l->out_fd);
	if (l->in_fd >= 0)
		close(l->in_fd);
	l->in_fd = l->out_fd = -1;
	g_mutex_unlock(&l->lock);
	link_unref(l);
}

static GSourceFuncs link_source_funcs = {
	.prepare = link_source_prepare,
	.dispatch = link_source_dispatch,
	.finalize = link_source_finalize,
};

static gpointer io_thread_main(gpointer data)
{
	MeshP2pLink *l = data;

	g_main_context_push_thread_default(l->context);
	while (!g_atomic_int_get(&l->quit))
		g_main_context_iteration(l->context, TRUE);
	g_main_context_pop_thread_default(l->context);
	return NULL;
}

static gboolean prepare_fd(int fd, gboolean *ret_is_socket, GError **error)
{
	int type = 0;
	socklen_t len = sizeof(type);

	if (fd < 0 || fcntl(fd, F_GETFD) < 0) {
		g_set_error(error, MESH_ERROR, MESH_ERROR_INVALID_ARGUMENT, "fd %d is not open",
			    fd);
		return FALSE;
	}
	*ret_is_socket = getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0;
	if (*ret_is_socket && type != SOCK_STREAM) {
		g_set_error(error, MESH_ERROR, MESH_ERROR_INVALID_ARGUMENT,
			    "fd %d is not a stream socket", fd);
		return FALSE;
	}
	if (*ret_is_socket) {
		/* Events go whole; Nagle would only hold small ones back (ignored off TCP). */
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	pal_fd_set_cloexec(fd, TRUE);
	pal_fd_set_nonblock(fd, TRUE);
	return TRUE;
}

MeshP2pLink *mesh_p2p_link_new_take(MeshNode *node, int in_fd, int out_fd, MeshPort *port,
				    GMainContext *context, GError **error)
{
	gboolean in_sock = FALSE, out_sock = FALSE;

	if (!port || !prepare_fd(in_fd, &in_sock, error) ||
	    (out_fd != in_fd && !prepare_fd(out_fd, &out_sock, error))) {
		if (!port)
			g_set_error(error, MESH_ERROR, MESH_ERROR_INVALID_ARGUMENT, "no port");
		if (in_fd >= 0)
			close(in_fd);
		if (out_fd >= 0 && out_fd != in_fd)
			close(out_fd);
		mesh_port_close(port);
		return NULL;
	}
	if (out_fd == in_fd)
		out_sock = in_sock;

	MeshP2pLink *l = g_new0(MeshP2pLink, 1);
	l->ref = 1;
	g_mutex_init(&l->lock);
	g_cond_init(&l->cond);
	l->node = node ? mesh_node_ref(node) : mesh_node_new();
	l->own_node = node == NULL;
	l->in_fd = in_fd;
	l->out_fd = out_fd;
	l->out_is_socket = out_sock;
	l->user_port = port;
	l->state = MESH_P2P_LINK_CONNECTING;
	l->limit = MESH_P2P_DEFAULT_SEND_LIMIT;
	l->timeout_us = MESH_P2P_DEFAULT_SEND_TIMEOUT_US;
	g_queue_init(&l->out);
	p2p_reader_init(&l->reader);
	mesh_uuid_generate(&l->local_port);

	if (l->own_node) {
		mesh_node_set_connector(l->node, no_extra_connections, NULL);
		mesh_node_set_connector_caps(l->node, &link_caps);
	}

	/* Our hello goes first, whenever the stream takes it. */
	OutChunk *hello = g_malloc(sizeof(OutChunk) + P2P_HELLO_SIZE);
	hello->len = P2P_HELLO_SIZE;
	hello->off = 0;
	p2p_hello_build(hello->data, mesh_node_get_id(l->node), &l->local_port);
	g_queue_push_tail(&l->out, hello);
	l->queued = P2P_HELLO_SIZE;

	l->context = context ? g_main_context_ref(context) : g_main_context_new();
	if (context) {
		l->context_hook = mesh_io_hook_new_for_context(context);
		if (l->own_node) {
			mesh_node_set_io_hook(l->node, l->context_hook);
			l->hook_installed = TRUE;
		}
	}
	GSource *s = g_source_new(&link_source_funcs, sizeof(LinkSource));
	((LinkSource *)s)->link = link_ref(l);
	g_source_set_name(s, "mesh p2p link");
	l->in_tag = g_source_add_unix_fd(s, in_fd, G_IO_IN | G_IO_HUP | G_IO_ERR);
	l->out_tag = out_fd == in_fd ? l->in_tag : g_source_add_unix_fd(s, out_fd, G_IO_ERR);
	l->source = s;
	g_source_attach(s, l->context);
	if (!context)
		l->thread = g_thread_new("mesh-p2p", io_thread_main, l);
	g_main_context_wakeup(l->context);
	return l;
}

MeshNode *mesh_p2p_link_get_node(MeshP2pLink *l)
{
	g_return_val_if_fail(l != NULL, NULL);
	return l->node;
}

gboolean mesh_p2p_link_get_peer_id(MeshP2pLink *l, MeshNodeId *ret_id)
{
	g_return_val_if_fail(l != NULL && ret_id != NULL, FALSE);
	g_mutex_lock(&l->lock);
	gboolean have = l->have_peer;
	if (have)
		*ret_id = l->peer;
	g_mutex_unlock(&l->lock);
	return have;
}

MeshP2pLinkState mesh_p2p_link_get_state(MeshP2pLink *l, GError **error)
{
	g_return_val_if_fail(l != NULL, MESH_P2P_LINK_FAILED);
	g_mutex_lock(&l->lock);
	MeshP2pLinkState state = l->state;
	if (state == MESH_P2P_LINK_FAILED && error)
		*error = g_error_copy(l->error);
	if (!link_ended_locked(l) && l->fail_pending) {
		/* Failed already; the I/O context ends it soon (fail_later_locked()). */
		state = MESH_P2P_LINK_FAILED;
		if (error)
			*error = link_error_locked(l, l->fail_pending);
	}
	g_mutex_unlock(&l->lock);
	return state;
}

void mesh_p2p_link_set_ended_func(MeshP2pLink *l, MeshP2pLinkEndedFunc func, gpointer user_data,
				  GDestroyNotify notify)
{
	g_return_if_fail(l != NULL);
	g_mutex_lock(&l->lock);
	GDestroyNotify old_notify = l->ended_notify;
	gpointer old_data = l->ended_data;
	l->ended_func = func;
	l->ended_data = user_data;
	l->ended_notify = notify;
	g_mutex_unlock(&l->lock);
	if (old_notify)
		old_notify(old_data);
	report_ended(l);
}

void mesh_p2p_link_set_peer_describer(MeshP2pLink *l, MeshP2pPeerDescribeFunc func,
				      gpointer user_data, GDestroyNotify notify)
{
	g_return_if_fail(l != NULL);
	g_mutex_lock(&l->lock);
	GDestroyNotify old_notify = l->describe_notify;
	gpointer old_data = l->describe_data;
	l->describe_func = func;
	l->describe_data = user_data;
	l->describe_notify = notify;
	g_mutex_unlock(&l->lock);
	if (old_notify)
		old_notify(old_data);
}

void mesh_p2p_link_set_send_limit(MeshP2pLink *l, gsize max_queued, gint64 timeout_us)
{
	g_return_if_fail(l != NULL && timeout_us >= 0);
	g_mutex_lock(&l->lock);
	l->limit = MAX(max_queued, MIN_SEND_LIMIT);
	l->timeout_us = timeout_us;
	g_cond_broadcast(&l->cond);
	g_mutex_unlock(&l->lock);
}

gboolean mesh_p2p_link_shutdown(MeshP2pLink *l, gint64 timeout_us)
{
	g_return_val_if_fail(l != NULL && timeout_us >= -1, FALSE);
	gint64 deadline = timeout_us < 0 ? -1 : g_get_monotonic_time() + timeout_us;
	gboolean in_time = TRUE;

	/*
	 * 1. Moves finish (those across need the peer's acknowledgements; on
	 * a node given to the link, every move of the node is waited for).
	 */
	g_mutex_lock(&l->lock);
	gboolean up = l->remote != NULL;
	g_mutex_unlock(&l->lock);
	if (up && !mesh_node_wait_idle(l->node, G_MAXUINT,
				       deadline < 0 ? -1 : MAX(deadline - g_get_monotonic_time(), 0)))
		in_time = FALSE;

	/* 2. What still depends on the peer fails; nothing more is sent. */
	g_mutex_lock(&l->lock);
	MeshRemoteNode *remote = g_steal_pointer(&l->remote);
	l->out_closing = TRUE;
	g_mutex_unlock(&l->lock);
	if (remote) {
		mesh_remote_node_fail(remote, "the point-to-point link was shut down");
		mesh_remote_node_unref(remote);
	}

	/* 3. The queue goes out, then the end of stream. */
	g_main_context_wakeup(l->context);
	g_mutex_lock(&l->lock);
	while (in_time && !l->out_closed && !link_ended_locked(l))
		if (!wait_step_locked(l, deadline) && !l->out_closed)
			in_time = FALSE;
	gboolean clean = in_time && l->out_closed && !link_ended_locked(l);
	g_mutex_unlock(&l->lock);

	link_end(l, clean ? NULL
			  : g_error_new(MESH_ERROR, MESH_ERROR_TIMED_OUT,
					"the point-to-point link's shutdown timed out"));
	return clean;
}

void mesh_p2p_link_free(MeshP2pLink *l)
{
	if (!l)
		return;
	g_return_if_fail(!l->thread || g_thread_self() != l->thread);
	link_end(l, g_error_new(MESH_ERROR, MESH_ERROR_SHUTTING_DOWN,
				"the point-to-point link was freed"));
	if (l->hook_installed)
		mesh_node_set_io_hook(l->node, NULL);
	if (l->context_hook) {
		mesh_io_hook_detach(l->context_hook);
		mesh_io_hook_unref(l->context_hook);
		l->context_hook = NULL;
	}
	if (l->thread) {
		g_atomic_int_set(&l->quit, 1);
		g_main_context_wakeup(l->context);
		g_thread_join(l->thread);
		l->thread = NULL;
	}
	g_mutex_lock(&l->lock);
	GSource *report = g_steal_pointer(&l->report_source);
	l->ended_reported = TRUE;
	GDestroyNotify notify = l->ended_notify;
	gpointer data = l->ended_data;
	l->ended_func = NULL;
	l->ended_notify = NULL;
	GDestroyNotify describe_notify = l->describe_notify;
	gpointer describe_data = l->describe_data;
	l->describe_func = NULL;
	l->describe_notify = NULL;
	g_mutex_unlock(&l->lock);
	if (report) {
		g_source_destroy(report);
		g_source_unref(report);
	}
	if (notify)
		notify(data);
	if (describe_notify)
		describe_notify(describe_data);
	/* The fds close when no dispatch runs any more (the source's finalize). */
	g_source_destroy(l->source);
	g_source_unref(l->source);
	link_unref(l);
}
