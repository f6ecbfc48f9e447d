/* SPDX-License-Identifier: MIT */
/*
 * Cancel contexts and deadlines (upstream mesh_channel cancel.rs and
 * deadline.rs, reference 4.6).
 *
 * A context holds ports whose peers MeshCancel objects hold; a cancel closes
 * those peers, so every context sees a port event (upstream polls the
 * port: any message, close or failure means cancelled). Cloning a context
 * makes a new pair per port and sends the far end through the old port: the
 * MeshCancel at the other end adopts it (its port handler hands the message
 * to a deferred call, where no port lock is held). Closed ports are
 * collected whenever one of a MeshCancel's ports ends.
 *
 * Deadlines need no thread (upstream runs one, "deadline"): a blocking wait
 * sleeps until the earlier of its timeout and the deadline, the fd is a
 * timerfd (Windows: the handle is a waitable timer, os-private.h) armed at
 * the deadline (or at once on a cancel), and the callback
 * source sets its timeout from the deadline.
 *
 * Locks: a context's lock is taken under one of its ports' locks (the
 * handler); a MeshCancel's likewise. Neither is held while a port lock is
 * taken.
 */
#include <errno.h>

#include "channel-private.h"
#include "os-private.h"

#define NS_PER_SEC G_GINT64_CONSTANT(1000000000)

/* Deadlines. */

const char *mesh_cancel_reason_to_string(MeshCancelReason reason)
{
	switch (reason) {
	case MESH_CANCEL_REASON_CANCELLED:
		return "cancelled";
	case MESH_CANCEL_REASON_DEADLINE_EXCEEDED:
		return "deadline exceeded";
	default:
		return "not cancelled";
	}
}

void mesh_deadline_now(MeshDeadline *ret)
{
	g_return_if_fail(ret);
	gint64 now = os_realtime_ns();
	ret->wall_sec = now / NS_PER_SEC;
	ret->wall_nsec = (gint32)(now % NS_PER_SEC);
	ret->has_monotonic = TRUE;
	ret->monotonic_ns = os_monotonic_ns();
}

gboolean mesh_deadline_add(const MeshDeadline *deadline, guint64 ns, MeshDeadline *ret)
{
	MeshDeadline d;
	gint64 sec;

	g_return_val_if_fail(deadline && ret, FALSE);
	d = *deadline;
	if (ns / NS_PER_SEC > (guint64)G_MAXINT64 ||
	    __builtin_add_overflow(d.wall_sec, (gint64)(ns / NS_PER_SEC), &sec))
		return FALSE;
	d.wall_nsec += (gint32)(ns % NS_PER_SEC);
	if (d.wall_nsec >= NS_PER_SEC) {
		d.wall_nsec -= NS_PER_SEC;
		if (__builtin_add_overflow(sec, 1, &sec))
			return FALSE;
	}
	d.wall_sec = sec;
	/* Throw away the monotonic time if it overflows (upstream). */
	if (d.has_monotonic &&
	    (ns > (guint64)G_MAXINT64 ||
	     __builtin_add_overflow(d.monotonic_ns, (gint64)ns, &d.monotonic_ns)))
		d.has_monotonic = FALSE;
	*ret = d;
	return TRUE;
}

void mesh_deadline_sub(const MeshDeadline *deadline, guint64 ns, MeshDeadline *ret)
{
	MeshDeadline d;

	g_return_if_fail(deadline && ret);
	d = *deadline;
	gint64 s = (gint64)(ns / NS_PER_SEC), sec;
	gint32 n = (gint32)(ns % NS_PER_SEC);
	/*
	 * Times before the epoch are fine (a SystemTime may be one); only an
	 * overflow saturates, to the epoch, as upstream.
	 */
	gboolean overflow = __builtin_sub_overflow(d.wall_sec, s, &sec);
	d.wall_nsec -= n;
	if (!overflow && d.wall_nsec < 0) {
		d.wall_nsec += NS_PER_SEC;
		overflow = __builtin_sub_overflow(sec, 1, &sec);
	}
	if (overflow) {
		d.wall_sec = 0;
		d.wall_nsec = 0;
	} else {
		d.wall_sec = sec;
	}
	if (d.has_monotonic &&
	    (ns > (guint64)G_MAXINT64 || d.monotonic_ns < (gint64)ns))
		d.has_monotonic = FALSE; /* Instant::checked_sub fails before its origin */
	else if (d.has_monotonic)
		d.monotonic_ns -= (gint64)ns;
	*ret = d;
}

int mesh_deadline_compare(const MeshDeadline *a, const MeshDeadline *b)
{
	g_return_val_if_fail(a && b, 0);
	if (a->has_monotonic && b->has_monotonic)
		return (a->monotonic_ns > b->monotonic_ns) - (a->monotonic_ns < b->monotonic_ns);
	if (a->wall_sec != b->wall_sec)
		return a->wall_sec < b->wall_sec ? -1 : 1;
	return (a->wall_nsec > b->wall_nsec) - (a->wall_nsec < b->wall_nsec);
}

void mesh_deadline_to_timestamp(const MeshDeadline *deadline, MeshPayload__Timestamp *ret)
{
	g_return_if_fail(deadline && ret);
	mesh_payload__timestamp__init(ret);
	ret->seconds = deadline->wall_sec;
	ret->nanos = deadline->wall_nsec;
}

void mesh_deadline_from_timestamp(const MeshPayload__Timestamp *timestamp, MeshDeadline *ret)
{
	g_return_if_fail(timestamp && ret);
	memset(ret, 0, sizeof(*ret));
	/* Upstream: try_into().unwrap_or(UNIX_EPOCH). */
	if (timestamp->nanos >= 0 && timestamp->nanos < NS_PER_SEC) {
		ret->wall_sec = timestamp->seconds;
		ret->wall_nsec = timestamp->nanos;
	}
}

/* Nanoseconds from now until @d, by the clock the comparison uses; <= 0 once passed. */
static gint64 deadline_remaining_ns(const MeshDeadline *d)
{
	if (d->has_monotonic)
		return d->monotonic_ns - os_monotonic_ns();
	gint64 now = os_realtime_ns(), sec = d->wall_sec;
	/* Far away either way: saturate rather than overflow. */
	if (sec > G_MAXINT64 / NS_PER_SEC - 1)
		return G_MAXINT64;
	if (sec < G_MININT64 / NS_PER_SEC + 1)
		return G_MININT64;
	gint64 at = sec * NS_PER_SEC + d->wall_nsec;
	if (at > 0 && now < 0 && at - G_MAXINT64 > now)
		return G_MAXINT64;
	return at - now;
}

gint64 mesh_deadline_remaining_us(const MeshDeadline *deadline)
{
	g_return_val_if_fail(deadline, 0);
	gint64 ns = deadline_remaining_ns(deadline);
	if (ns <= 0)
		return 0;
	return ns / 1000 + (ns % 1000 != 0);
}

/* The monotonic time (us, g_get_monotonic_time()) at which @d passes. */
static gint64 deadline_monotonic_us(const MeshDeadline *d)
{
	gint64 now = g_get_monotonic_time(), left = mesh_deadline_remaining_us(d);
	return left > G_MAXINT64 - now ? G_MAXINT64 : now + left;
}

/* Contexts. */

struct MeshCancelContext {
	gint ref; /* the owner's, and one per callback source (the memory) */
	GMutex lock;
	GCond cond;
	GPtrArray *ports; /* MeshPort * (owned), each with ctx_handler; the owner's thread */
	gboolean has_deadline;
	MeshDeadline deadline;
	/* Under lock: */
	MeshCancelReason reason; /* NONE until seen cancelled; then fixed */
	guint n_waiters;
	IoWaiters io;
	OsTimer tfd;           /* mesh_cancel_context_get_fd() (Windows: _get_handle()), NONE until asked for */
	gboolean tfd_realtime; /* its deadlines are wall-clock times */
	GSource *source;       /* mesh_cancel_context_set_callback() */
	GMainContext *context; /* where it runs, while one is set */
};

static void ctx_arm_now_locked(MeshCancelContext *c)
{
	os_timer_arm_at(c->tfd, c->tfd_realtime, 0); /* passed: at once */
}

/* Sees the deadline; returns the reason, NONE if not cancelled. */
static MeshCancelReason ctx_poll_locked(MeshCancelContext *c)
{
	if (c->reason == MESH_CANCEL_REASON_NONE && c->has_deadline &&
	    deadline_remaining_ns(&c->deadline) <= 0)
		c->reason = MESH_CANCEL_REASON_DEADLINE_EXCEEDED;
	return c->reason;
}

/* A port event: cancelled (handler, port locked). */
static void ctx_on_event(MeshCancelContext *c, Deferred *d)
{
	g_mutex_lock(&c->lock);
	if (c->reason == MESH_CANCEL_REASON_NONE) {
		c->reason = MESH_CANCEL_REASON_CANCELLED;
		if (c->tfd != OS_EVENT_NONE)
			ctx_arm_now_locked(c);
		if (c->context)
			channel_wake_context_later(d, c->context);
		if (c->n_waiters)
			g_cond_broadcast(&c->cond);
		MeshIoHook *hook = io_waiters_wake_locked(&c->io);
		if (hook) {
			hook->funcs.wakeup(hook->user_data);
			mesh_io_hook_unref(hook);
		}
	}
	g_mutex_unlock(&c->lock);
}

static void ctx_on_message(MeshPort *port, void *data, MeshMessage *msg, Deferred *d)
{
	/* Nobody sends to a context: any message is a cancel, as a close is (upstream). */
	deferred_release_message(d, msg);
	ctx_on_event(data, d);
}

static void ctx_on_close(MeshPort *port, void *data, Deferred *d)
{
	ctx_on_event(data, d);
}

static void ctx_on_fail(MeshPort *port, void *data, const GError *error, Deferred *d)
{
	ctx_on_event(data, d);
}

static const PortHandler ctx_handler = {
	.message = ctx_on_message,
	.close = ctx_on_close,
	.fail = ctx_on_fail,
};

static MeshCancelContext *ctx_alloc(void)
{
	MeshCancelContext *c = g_new0(MeshCancelContext, 1);

	c->ref = 1;
	g_mutex_init(&c->lock);
	g_cond_init(&c->cond);
	c->ports = g_ptr_array_new();
	c->tfd = OS_EVENT_NONE;
	return c;
}

static MeshCancelContext *ctx_ref(MeshCancelContext *c)
{
	g_atomic_int_inc(&c->ref);
	return c;
}

static void ctx_unref(MeshCancelContext *c)
{
	if (!g_atomic_int_dec_and_test(&c->ref))
		return;
	os_handle_close(c->tfd);
	g_ptr_array_free(c->ports, TRUE);
	g_cond_clear(&c->cond);
	g_mutex_clear(&c->lock);
	g_free(c);
}

static void ctx_add_port(MeshCancelContext *c, MeshPort *port)
{
	g_ptr_array_add(c->ports, port);
	port_set_handler(port, &ctx_handler, c);
}

MeshCancelContext *mesh_cancel_context_new(void)
{
	return ctx_alloc();
}

MeshCancelContext *mesh_cancel_context_clone(MeshCancelContext *ctx)
{
	g_return_val_if_fail(ctx, NULL);
	MeshCancelContext *n = ctx_alloc();

	n->has_deadline = ctx->has_deadline;
	n->deadline = ctx->deadline;
	g_mutex_lock(&ctx->lock);
	MeshCancelReason reason = ctx->reason;
	g_mutex_unlock(&ctx->lock);
	if (reason != MESH_CANCEL_REASON_NONE) {
		n->reason = reason;
		return n;
	}
	for (guint i = 0; i < ctx->ports->len; i++) {
		/* A new pair per port; its far end goes to the Cancel behind this one. */
		MeshPort *mine, *theirs;
		mesh_port_new_pair(&mine, &theirs);
		MeshMessage *msg = mesh_message_new(NULL, 0);
		mesh_message_add_port_take(msg, theirs);
		port_send(ctx->ports->pdata[i], msg, FALSE);
		ctx_add_port(n, mine);
	}
	return n;
}

MeshCancelContext *mesh_cancel_context_with_deadline(MeshCancelContext *ctx,
						     const MeshDeadline *deadline)
{
	g_return_val_if_fail(ctx && deadline, NULL);
	MeshCancelContext *n = mesh_cancel_context_clone(ctx);
	if (!n->has_deadline || mesh_deadline_compare(deadline, &n->deadline) < 0)
		n->deadline = *deadline;
	n->has_deadline = TRUE;
	return n;
}

MeshCancelContext *mesh_cancel_context_with_timeout(MeshCancelContext *ctx, gint64 timeout_us)
{
	MeshDeadline d;

	g_return_val_if_fail(ctx && timeout_us >= 0, NULL);
	mesh_deadline_now(&d);
	if ((guint64)timeout_us > G_MAXUINT64 / 1000 ||
	    !mesh_deadline_add(&d, (guint64)timeout_us * 1000, &d))
		return mesh_cancel_context_clone(ctx);
	return mesh_cancel_context_with_deadline(ctx, &d);
}

gboolean mesh_cancel_context_get_deadline(MeshCancelContext *ctx, MeshDeadline *ret_deadline)
{
	g_return_val_if_fail(ctx, FALSE);
	if (ctx->has_deadline && ret_deadline)
		*ret_deadline = ctx->deadline;
	return ctx->has_deadline;
}

gboolean mesh_cancel_context_is_cancelled(MeshCancelContext *ctx, MeshCancelReason *ret_reason)
{
	g_return_val_if_fail(ctx, FALSE);
	g_mutex_lock(&ctx->lock);
	MeshCancelReason reason = ctx_poll_locked(ctx);
	g_mutex_unlock(&ctx->lock);
	if (ret_reason)
		*ret_reason = reason;
	return reason != MESH_CANCEL_REASON_NONE;
}

/* The hook of the first of @c's ports that has one (see oneshot_wait()). */
static MeshIoHook *ctx_get_io_hook(MeshCancelContext *c)
{
	for (guint i = 0; i < c->ports->len; i++) {
		MeshIoHook *hook = port_get_io_hook(c->ports->pdata[i]);
		if (hook)
			return hook;
	}
	return NULL;
}

gboolean mesh_cancel_context_wait(MeshCancelContext *ctx, gint64 timeout_us,
				  MeshCancelReason *ret_reason, GError **error)
{
	g_return_val_if_fail(ctx, FALSE);
	g_return_val_if_fail(error == NULL || *error == NULL, FALSE);
	if (!timeout_check(timeout_us, G_STRFUNC, error))
		return FALSE;

	gint64 end = -1; /* the timeout's, computed when a wait begins */
	gboolean timed_out = FALSE, looked_up = FALSE, io_refused = FALSE;
	MeshIoHook *hook = NULL;
	MeshCancelReason reason;

	g_mutex_lock(&ctx->lock);
	while ((reason = ctx_poll_locked(ctx)) == MESH_CANCEL_REASON_NONE) {
		if (timeout_us == 0 || timed_out) {
			g_mutex_unlock(&ctx->lock);
			mesh_io_hook_unref(hook);
			if (timeout_us == 0)
				g_set_error(error, MESH_ERROR, MESH_ERROR_EMPTY, "not cancelled");
			else
				g_set_error(error, MESH_ERROR, MESH_ERROR_TIMED_OUT,
					    "not cancelled within the timeout");
			return FALSE;
		}
		if (timeout_us > 0 && end < 0)
			end = channel_deadline(timeout_us);
		if (!looked_up) {
			looked_up = TRUE;
			g_mutex_unlock(&ctx->lock);
			hook = ctx_get_io_hook(ctx);
			g_mutex_lock(&ctx->lock);
			continue;
		}
		/* Wake at the earlier of the timeout and the deadline. */
		gint64 wake = end;
		if (ctx->has_deadline) {
			gint64 at = deadline_monotonic_us(&ctx->deadline);
			wake = wake < 0 ? at : MIN(wake, at);
		}
		gboolean expired = FALSE;
		if (hook && !io_refused) {
			if (!io_waiters_run(&ctx->io, &ctx->lock, hook, wake, &expired))
				io_refused = TRUE;
		} else {
			ctx->n_waiters++;
			if (!channel_cond_wait(&ctx->cond, &ctx->lock, wake))
				expired = TRUE;
			ctx->n_waiters--;
			io_refused = FALSE;
		}
		if (expired && end >= 0 && g_get_monotonic_time() >= end)
			timed_out = TRUE; /* unless the deadline passed too: looked at first */
	}
	g_mutex_unlock(&ctx->lock);
	mesh_io_hook_unref(hook);
	if (ret_reason)
		*ret_reason = reason;
	return TRUE;
}

/* Arms @c's timerfd: at once if cancelled, else at the deadline. */
static void ctx_arm_locked(MeshCancelContext *c)
{
	if (c->reason != MESH_CANCEL_REASON_NONE) {
		ctx_arm_now_locked(c);
		return;
	}
	if (!c->has_deadline)
		return;
	gint64 ns = 0; /* at or before the clock's origin: passed */
	if (c->deadline.has_monotonic)
		ns = c->deadline.monotonic_ns;
	else if (c->deadline.wall_sec > G_MAXINT64 / NS_PER_SEC - 1)
		ns = G_MAXINT64; /* past the year 2262: never */
	else if (c->deadline.wall_sec >= 0)
		ns = c->deadline.wall_sec * NS_PER_SEC + c->deadline.wall_nsec;
	os_timer_arm_at(c->tfd, c->tfd_realtime, ns);
}

/* The context's timer, made and armed on the first call; NONE and *@ret_errno on failure. */
static OsTimer ctx_get_timer(MeshCancelContext *ctx, int *ret_errno)
{
	g_mutex_lock(&ctx->lock);
	if (ctx->tfd == OS_EVENT_NONE) {
		gboolean realtime = ctx->has_deadline && !ctx->deadline.has_monotonic;
		ctx->tfd = os_timer_new(realtime, ret_errno);
		if (ctx->tfd != OS_EVENT_NONE) {
			ctx->tfd_realtime = realtime;
			ctx_poll_locked(ctx);
			ctx_arm_locked(ctx);
		}
	}
	OsTimer t = ctx->tfd;
	g_mutex_unlock(&ctx->lock);
	return t;
}

#ifdef G_OS_WIN32
MeshOsHandle mesh_cancel_context_get_handle(MeshCancelContext *ctx)
{
	int e;
	g_return_val_if_fail(ctx, MESH_OS_HANDLE_INVALID);
	return ctx_get_timer(ctx, &e);
}
#else
int mesh_cancel_context_get_fd(MeshCancelContext *ctx)
{
	int e = -EIO;
	g_return_val_if_fail(ctx, -EINVAL);
	OsTimer t = ctx_get_timer(ctx, &e);
	return t != OS_EVENT_NONE ? t : e;
}
#endif

/* Callbacks: a GSource ready once cancelled, with its timeout at the deadline. */

typedef struct {
	GSource base;
	MeshCancelContext *ctx; /* strong (its memory) */
	gboolean fired;
} CancelSource;

static gboolean cancel_source_check(GSource *source)
{
	CancelSource *s = (CancelSource *)source;

	g_mutex_lock(&s->ctx->lock);
	gboolean ready = ctx_poll_locked(s->ctx) != MESH_CANCEL_REASON_NONE;
	g_mutex_unlock(&s->ctx->lock);
	return ready && !s->fired;
}

static gboolean cancel_source_prepare(GSource *source, gint *timeout)
{
	CancelSource *s = (CancelSource *)source;

	if (cancel_source_check(source))
		return TRUE;
	*timeout = -1;
	if (s->ctx->has_deadline && !s->fired) {
		gint64 us = mesh_deadline_remaining_us(&s->ctx->deadline);
		*timeout = (gint)MIN((us + 999) / 1000, (gint64)G_MAXINT);
	}
	return FALSE;
}

static gboolean cancel_source_dispatch(GSource *source, GSourceFunc callback,
				       gpointer user_data)
{
	CancelSource *s = (CancelSource *)source;

	s->fired = TRUE;
	g_mutex_lock(&s->ctx->lock);
	MeshCancelReason reason = s->ctx->reason;
	g_mutex_unlock(&s->ctx->lock);
	if (callback)
		((MeshCancelFunc)(void (*)(void))callback)(s->ctx, reason, user_data);
	return G_SOURCE_REMOVE;
}

static void cancel_source_finalize(GSource *source)
{
	ctx_unref(((CancelSource *)source)->ctx);
}

static GSourceFuncs cancel_source_funcs = {
	.prepare = cancel_source_prepare,
	.check = cancel_source_check,
	.dispatch = cancel_source_dispatch,
	.finalize = cancel_source_finalize,
};

void mesh_cancel_context_set_callback(MeshCancelContext *ctx, GMainContext *context,
				      MeshCancelFunc func, gpointer user_data,
				      GDestroyNotify notify)
{
	GSource *source = NULL;

	g_return_if_fail(ctx);
	if (!context)
		context = g_main_context_default();
	if (func) {
		source = g_source_new(&cancel_source_funcs, sizeof(CancelSource));
		((CancelSource *)source)->ctx = ctx_ref(ctx);
		channel_source_attach(source, "MeshCancelContext", context, G_SOURCE_FUNC(func),
				      user_data, notify);
	}
	channel_swap_source(&ctx->lock, &ctx->source, &ctx->context, source, context);
	if (!func && notify)
		notify(user_data);
}

/* Frees @c; its ports were closed or taken (no handler runs after). */
static void ctx_destroy(MeshCancelContext *c)
{
	channel_swap_source(&c->lock, &c->source, &c->context, NULL, NULL);
	ctx_unref(c);
}

void mesh_cancel_context_free(MeshCancelContext *ctx)
{
	if (!ctx)
		return;
	/* Closing clears the handler under the port lock: no hook runs after this. */
	for (guint i = 0; i < ctx->ports->len; i++)
		mesh_port_close(ctx->ports->pdata[i]);
	g_ptr_array_set_size(ctx->ports, 0);
	ctx_destroy(ctx);
}

/* The wire form (cancel.proto). */

static gpointer field_new(const ProtobufCMessageDescriptor *desc)
{
	return mesh_payload_message_new(desc); /* aborts on ENOMEM as g_malloc() would */
}

MeshRemote__CancelContext *mesh_cancel_context_into_field(MeshCancelContext *ctx)
{
	g_return_val_if_fail(ctx, NULL);
	MeshRemote__CancelContext *f = field_new(&mesh_remote__cancel_context__descriptor);
	MeshRemote__CancelState *state = field_new(&mesh_remote__cancel_state__descriptor);
	f->state = state;

	g_mutex_lock(&ctx->lock);
	MeshCancelReason reason = ctx->reason;
	g_mutex_unlock(&ctx->lock);
	if (reason != MESH_CANCEL_REASON_NONE) {
		/* Upstream's CancelState::Cancelled(reason): the ports stay behind. */
		MeshRemote__CancelCancelled *c = field_new(&mesh_remote__cancel_cancelled__descriptor);
		c->reason = field_new(&mesh_remote__cancel_reason__descriptor);
		if (reason == MESH_CANCEL_REASON_CANCELLED) {
			c->reason->reason_case = MESH_REMOTE__CANCEL_REASON__REASON_CANCELLED;
			c->reason->cancelled = field_new(&mesh_remote__cancel_unit__descriptor);
		} else {
			c->reason->reason_case = MESH_REMOTE__CANCEL_REASON__REASON_DEADLINE_EXCEEDED;
			c->reason->deadline_exceeded =
				field_new(&mesh_remote__cancel_unit__descriptor);
		}
		state->state_case = MESH_REMOTE__CANCEL_STATE__STATE_CANCELLED;
		state->cancelled = c;
		for (guint i = 0; i < ctx->ports->len; i++)
			mesh_port_close(ctx->ports->pdata[i]);
	} else {
		MeshRemote__CancelNotCancelled *nc =
			field_new(&mesh_remote__cancel_not_cancelled__descriptor);
		nc->n_ports = ctx->ports->len;
		nc->ports = g_new0(MeshPayload__Port *, MAX(nc->n_ports, 1));
		for (guint i = 0; i < ctx->ports->len; i++) {
			MeshPort *port = ctx->ports->pdata[i];
			port_set_handler(port, NULL, NULL); /* no hook runs after this */
			nc->ports[i] = mesh_port_into_field(port);
		}
		state->state_case = MESH_REMOTE__CANCEL_STATE__STATE_NOT_CANCELLED;
		state->not_cancelled = nc;
	}
	g_ptr_array_set_size(ctx->ports, 0);
	if (ctx->has_deadline) {
		f->deadline = field_new(&mesh_payload__timestamp__descriptor);
		mesh_deadline_to_timestamp(&ctx->deadline, f->deadline);
	}
	ctx_destroy(ctx);
	return f;
}

MeshCancelContext *mesh_cancel_context_from_field(MeshRemote__CancelContext *field,
						  GError **error)
{
	g_return_val_if_fail(error == NULL || *error == NULL, NULL);
	if (!field || !field->state) {
		g_set_error(error, MESH_ERROR, MESH_ERROR_CORRUPTION,
			    "cancel context: missing enum variant (no state)");
		return NULL;
	}
	MeshRemote__CancelState *state = field->state;
	MeshCancelContext *c = ctx_alloc();

	switch (state->state_case) {
	case MESH_REMOTE__CANCEL_STATE__STATE_NOT_CANCELLED:
		for (size_t i = 0; i < state->not_cancelled->n_ports; i++) {
			MeshPort *port = mesh_port_steal_from_field(state->not_cancelled->ports[i]);
			if (!port) {
				g_set_error(error, MESH_ERROR, MESH_ERROR_CORRUPTION,
					    "cancel context: port %zu missing", i);
				mesh_cancel_context_free(c);
				return NULL;
			}
			ctx_add_port(c, port);
		}
		break;
	case MESH_REMOTE__CANCEL_STATE__STATE_CANCELLED: {
		MeshRemote__CancelReason *r = state->cancelled->reason;
		if (r && r->reason_case == MESH_REMOTE__CANCEL_REASON__REASON_CANCELLED) {
			c->reason = MESH_CANCEL_REASON_CANCELLED;
		} else if (r && r->reason_case ==
					MESH_REMOTE__CANCEL_REASON__REASON_DEADLINE_EXCEEDED) {
			c->reason = MESH_CANCEL_REASON_DEADLINE_EXCEEDED;
		} else {
			g_set_error(error, MESH_ERROR, MESH_ERROR_CORRUPTION,
				    "cancel context: missing enum variant (no reason)");
			mesh_cancel_context_free(c);
			return NULL;
		}
		break;
	}
	default:
		g_set_error(error, MESH_ERROR, MESH_ERROR_CORRUPTION,
			    "cancel context: missing enum variant (unknown state)");
		mesh_cancel_context_free(c);
		return NULL;
	}
	if (field->deadline) {
		c->has_deadline = TRUE;
		mesh_deadline_from_timestamp(field->deadline, &c->deadline);
	}
	return c;
}

/* Cancel: the peers of the contexts' ports. */

struct MeshCancel {
	gint ref; /* the owner's, and one per deferred call in flight */
	GMutex lock;
	/* Under lock: */
	GPtrArray *ports; /* MeshPort * (owned), each with cancel_handler */
	gboolean cancelled;
};

static MeshCancel *cancel_ref(MeshCancel *c)
{
	g_atomic_int_inc(&c->ref);
	return c;
}

static void cancel_unref(MeshCancel *c)
{
	if (!g_atomic_int_dec_and_test(&c->ref))
		return;
	g_ptr_array_free(c->ports, TRUE);
	g_mutex_clear(&c->lock);
	g_free(c);
}

static void close_ports(GPtrArray *ports)
{
	for (guint i = 0; i < ports->len; i++)
		mesh_port_close(ports->pdata[i]);
	g_ptr_array_free(ports, TRUE);
}

/* Keeps @kept (taken) unless cancelled meanwhile, when they are closed. */
static void cancel_keep(MeshCancel *c, GPtrArray *kept)
{
	g_mutex_lock(&c->lock);
	if (!c->cancelled) {
		for (guint i = 0; i < kept->len; i++)
			g_ptr_array_add(c->ports, kept->pdata[i]);
		g_ptr_array_set_size(kept, 0);
	}
	g_mutex_unlock(&c->lock);
	close_ports(kept);
}

/* One of the ports ended: collect every ended port (upstream's garbage collection). */
static void cancel_collect_cb(void *data)
{
	MeshCancel *c = data;

	g_mutex_lock(&c->lock);
	GPtrArray *all = c->ports;
	c->ports = g_ptr_array_new();
	g_mutex_unlock(&c->lock);
	GPtrArray *kept = g_ptr_array_new(), *ended = g_ptr_array_new();
	for (guint i = 0; i < all->len; i++) {
		MeshPort *port = all->pdata[i];
		PortState s = port_get_state(port);
		g_ptr_array_add(s == PORT_DONE || s == PORT_FAILED ? ended : kept, port);
	}
	g_ptr_array_free(all, TRUE);
	close_ports(ended);
	cancel_keep(c, kept);
	cancel_unref(c);
}

typedef struct {
	MeshCancel *cancel;
	MeshMessage *msg;
} Adopt;

static const PortHandler cancel_handler;

/* A clone's port came through one of ours: watch it too. */
static void cancel_adopt_cb(void *data)
{
	Adopt *a = data;
	GPtrArray *ports = g_ptr_array_new();
	guint n = mesh_message_get_n_resources(a->msg);

	for (guint i = 0; i < n; i++) {
		MeshPort *port = mesh_message_steal_port(a->msg, i);
		if (!port)
			continue; /* not a port: released with the message */
		port_set_handler(port, &cancel_handler, a->cancel);
		g_ptr_array_add(ports, port);
	}
	mesh_message_free(a->msg);
	cancel_keep(a->cancel, ports);
	cancel_unref(a->cancel);
	g_free(a);
}

static void cancel_on_message(MeshPort *port, void *data, MeshMessage *msg, Deferred *d)
{
	Adopt *a = g_new(Adopt, 1);
	a->cancel = cancel_ref(data);
	a->msg = msg;
	deferred_call(d, cancel_adopt_cb, a);
}

static void cancel_on_end(MeshPort *port, void *data, Deferred *d)
{
	deferred_call(d, cancel_collect_cb, cancel_ref(data));
}

static void cancel_on_fail(MeshPort *port, void *data, const GError *error, Deferred *d)
{
	cancel_on_end(port, data, d);
}

static const PortHandler cancel_handler = {
	.message = cancel_on_message,
	.close = cancel_on_end,
	.fail = cancel_on_fail,
};

MeshCancelContext *mesh_cancel_context_with_cancel(MeshCancelContext *ctx,
						   MeshCancel **ret_cancel)
{
	g_return_val_if_fail(ctx && ret_cancel, NULL);
	MeshCancelContext *n = mesh_cancel_context_clone(ctx);
	MeshPort *mine, *theirs;
	MeshCancel *c = g_new0(MeshCancel, 1);

	c->ref = 1;
	g_mutex_init(&c->lock);
	c->ports = g_ptr_array_new();
	mesh_port_new_pair(&mine, &theirs);
	if (n->reason == MESH_CANCEL_REASON_NONE)
		ctx_add_port(n, mine);
	else
		mesh_port_close(mine); /* already cancelled: nothing to add (upstream) */
	g_ptr_array_add(c->ports, theirs);
	port_set_handler(theirs, &cancel_handler, c);
	*ret_cancel = c;
	return n;
}

guint cancel_count_ports(MeshCancel *cancel)
{
	g_mutex_lock(&cancel->lock);
	guint n = cancel->ports->len;
	g_mutex_unlock(&cancel->lock);
	return n;
}

void mesh_cancel_cancel(MeshCancel *cancel)
{
	g_return_if_fail(cancel);
	g_mutex_lock(&cancel->lock);
	cancel->cancelled = TRUE;
	GPtrArray *ports = cancel->ports;
	cancel->ports = g_ptr_array_new();
	g_mutex_unlock(&cancel->lock);
	close_ports(ports);
}

void mesh_cancel_free(MeshCancel *cancel)
{
	if (!cancel)
		return;
	mesh_cancel_cancel(cancel);
	cancel_unref(cancel);
}
