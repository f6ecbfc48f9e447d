/* SPDX-License-Identifier: MIT */
/*
 * The own I/O thread of a MeshUnixNode, and lending its context to a thread
 * that blocks in a receive.
 *
 * Without lending, a message crosses two threads in the receiving process:
 * the I/O thread wakes, reads and delivers it, then wakes the receiver. A
 * thread that blocks in mesh_receiver_recv() instead borrows the I/O
 * context and polls the sockets itself (MeshIoHook run_once), so that the
 * message wakes the thread that wants it; the I/O thread steps aside.
 *
 * The context is handed over lazily, because handing it back at every
 * return would cost the wakeup that lending saves: a borrower returns it
 * by leaving it unowned, and the I/O thread takes it back when no borrower
 * has polled for LEND_IDLE_US, when a thread needs it to poll now (a
 * receiver that cannot borrow, a queued send: unix_io_reclaim()), or when
 * the transport stops. Meanwhile anything that arrives waits for the next
 * borrower or the reclaim, so a consumer on a callback may see up to
 * LEND_IDLE_US more latency right after a blocking receive. One thread
 * polls at a time; a second waiter waits as before, after a reclaim.
 *
 * A joining node's thread starts with its context lent (unix_io_start()):
 * the join receives the leader's initial message on the calling thread at
 * once, so it neither waits for the new thread to run and take the
 * context nor wakes it to lend it back; the thread takes the context as
 * after any blocking receive.
 *
 * Locks: io->lock, then the context's own lock (inside GLib). No port or
 * channel lock is held while a borrower polls.
 */
#include <errno.h>

#include "unix-node-private.h"

/* How long the I/O thread leaves its context to a borrower that is away. */
#define LEND_IDLE_US 1000
/* Iterations in a row that may leave the poll out (io_iterate()). */
#define MAX_SKIPPED_POLLS 4

struct UnixIo {
	MeshIoHook *hook; /* owns this: the last reference frees it */
	GMainContext *context;
	GThread *thread;
	GMutex lock;
	GCond cond; /* state changes: the I/O thread and would-be borrowers wait */
	/* Atomic (a borrower's fast path takes no lock); changed under lock: */
	gint lent;         /* the I/O thread does not own the context */
	gint stopping;     /* disabled or quit */
	gint reclaim;      /* the I/O thread must poll again as soon as it can */
	GThread *poller;   /* the borrower polling now, set by compare-and-swap */
	gint returns;      /* counts borrowers' returns (the I/O thread watches it change) */
	gint polls;        /* counts borrowers' polls begun */
	gint parked;       /* the I/O thread waits with no timeout for the poller's return */
	/* Under lock: */
	gboolean started;
	gboolean quit;
	gboolean disabled;    /* no more lending: the transport goes */
	gboolean lend_wanted; /* a blocked receiver asked the I/O thread to lend */
	/* The poller's: */
	GPollFD *fds;
	gint n_fds;
	gint skipped_polls; /* io_iterate()s in a row that dispatched without a poll */
};

/* The transport this thread borrows the I/O of right now, if any. */
static __thread UnixIo *tls_borrowed;
/* Set by io_foreign_delivery() while borrowing. */
static __thread gboolean tls_foreign;

/* MeshIoHookFuncs.foreign_delivery: on a borrower, inside its run_once. */
static void io_foreign_delivery(void *data)
{
	if (tls_borrowed == data)
		tls_foreign = TRUE;
}

/*
 * One prepare/query/poll/check/dispatch of the owned context, with a
 * deadline. TRUE if the poll ended at @deadline.
 *
 * When a source is ready already at prepare (a ring entry there), the
 * poll would return at once: it is left out, which saves a system call per
 * message on a round trip, but at most MAX_SKIPPED_POLLS times in a row, so
 * that the fds (the sockets, the context's wake-up) are looked at however
 * busy the ring is. Their readiness is not lost meanwhile (level-triggered).
 */
static gboolean io_iterate(UnixIo *io, gint64 deadline)
{
	gint max_priority, timeout, n;
	gboolean ours = FALSE;

	gboolean ready = g_main_context_prepare(io->context, &max_priority);
	while ((n = g_main_context_query(io->context, max_priority, &timeout, io->fds,
					 io->n_fds)) > io->n_fds) {
		io->n_fds = n;
		io->fds = g_renew(GPollFD, io->fds, n);
	}
	gboolean past = FALSE;
	if (deadline >= 0) {
		gint64 left = deadline - g_get_monotonic_time();
		past = left <= 0;
		gint ms = left <= 0 ? 0 : (gint)MIN((left + 999) / 1000, G_MAXINT);
		if (timeout < 0 || ms <= timeout) {
			timeout = ms;
			ours = TRUE;
		}
	}
	int r = 1;
	if (ready && timeout == 0 && io->skipped_polls < MAX_SKIPPED_POLLS) {
		io->skipped_polls++; /* the fds' revents stay 0 (query cleared them) */
	} else {
		io->skipped_polls = 0;
		GPollFunc poll_func = g_main_context_get_poll_func(io->context);
		r = poll_func(io->fds, n, timeout);
		if (r < 0 && errno != EINTR)
			g_warning("mesh: poll: %s", g_strerror(errno));
	}
	g_main_context_check(io->context, max_priority, io->fds, n);
	g_main_context_dispatch(io->context);
	return past || (r == 0 && ours);
}

static void io_signal(UnixIo *io)
{
	g_mutex_lock(&io->lock);
	g_cond_broadcast(&io->cond);
	g_mutex_unlock(&io->lock);
}

/* The fast path: the context is lent and nobody polls it. */
static gboolean io_try_borrow(UnixIo *io, gint64 deadline, gboolean *ret_expired)
{
	if (!g_atomic_int_get(&io->lent) || g_atomic_int_get(&io->stopping) ||
	    !g_atomic_pointer_compare_and_exchange(&io->poller, NULL, g_thread_self()))
		return FALSE;
	/* The I/O thread may have taken it back between the two reads. */
	if (!g_atomic_int_get(&io->lent) || !g_main_context_acquire(io->context)) {
		g_atomic_pointer_set(&io->poller, NULL);
		io_signal(io);
		return FALSE;
	}
	tls_borrowed = io;
	tls_foreign = FALSE;
	g_atomic_int_inc(&io->polls);
	*ret_expired = io_iterate(io, deadline);
	tls_borrowed = NULL;
	g_atomic_int_inc(&io->returns);
	g_main_context_release(io->context);
	g_atomic_pointer_set(&io->poller, NULL);
	/* Read after poller's store (both sequentially consistent): see io_lend_locked(). */
	if (g_atomic_int_get(&io->parked))
		io_signal(io);
	if (tls_foreign) {
		/*
		 * It delivered to others (a callback consumer, another thread):
		 * they must not wait for this thread to come back, so the I/O
		 * thread polls again now rather than after LEND_IDLE_US.
		 */
		g_atomic_int_set(&io->reclaim, TRUE);
	}
	if (g_atomic_int_get(&io->reclaim) || g_atomic_int_get(&io->stopping))
		io_signal(io);
	return TRUE;
}

static gboolean io_run_once(void *data, gint64 deadline, gboolean *ret_expired)
{
	UnixIo *io = data;

	*ret_expired = FALSE;
	/* A wait inside a dispatch of this context: no recursion. */
	if (g_main_context_is_owner(io->context))
		return FALSE;
	if (io_try_borrow(io, deadline, ret_expired))
		return TRUE;

	g_mutex_lock(&io->lock);
	if (io->quit || io->disabled) {
		g_mutex_unlock(&io->lock);
		return FALSE;
	}
	if (g_atomic_int_get(&io->lent)) {
		/*
		 * Another thread polls, or a function invoked on the context runs:
		 * the caller waits on its GCond, so the I/O thread must poll again.
		 */
		g_atomic_int_set(&io->reclaim, TRUE);
		g_cond_broadcast(&io->cond);
		g_mutex_unlock(&io->lock);
		return FALSE;
	}
	/*
	 * Ask the I/O thread to lend, and wait for a change; then let the
	 * caller look at its queue again (the I/O thread may have delivered
	 * meanwhile, and that wakeup went to no poll) and come back. One wait
	 * only: the I/O thread may lend and take back before this thread runs,
	 * which clears lend_wanted, and then the request must be made again.
	 */
	if (!io->lend_wanted) {
		io->lend_wanted = TRUE;
		g_main_context_wakeup(io->context);
	}
	if (deadline < 0)
		g_cond_wait(&io->cond, &io->lock);
	else if (!g_cond_wait_until(&io->cond, &io->lock, deadline))
		*ret_expired = TRUE;
	g_mutex_unlock(&io->lock);
	return TRUE;
}

static void io_wakeup(void *data)
{
	UnixIo *io = data;

	/* Also with nobody polling: the wakeup stays pending for the next poll. */
	g_main_context_wakeup(io->context);
}

static void io_finalize(void *data);

static const MeshIoHookFuncs io_funcs = {
	.version = 0,
	.run_once = io_run_once,
	.wakeup = io_wakeup,
	.foreign_delivery = io_foreign_delivery,
	.destroy = io_finalize,
};

static void io_finalize(void *data)
{
	UnixIo *io = data;

	g_main_context_unref(io->context);
	g_free(io->fds);
	g_cond_clear(&io->cond);
	g_mutex_clear(&io->lock);
	g_free(io);
}

/*
 * Lends the context until it is to be taken back; returns owning it, or
 * FALSE at quit. Locked. Borrowers only count their polls and returns (no
 * clock, no signal on the hot path): the context is idle when a whole
 * LEND_IDLE_US passed with no return and no poller. A poll that lasts a
 * whole LEND_IDLE_US (a receiver that waits for a message that does not
 * come) parks the I/O thread with no timeout: the borrower signals when it
 * returns, so an idle wait wakes nobody. A poller that stores NULL and then
 * reads parked, against this thread that sets parked and then reads the
 * poller, cannot both miss the other's store. @owned: the thread owns the
 * context now (FALSE: it starts lent, unix_io_start()).
 */
static gboolean io_lend_locked(UnixIo *io, gboolean owned)
{
	gint seen = g_atomic_int_get(&io->returns);
	gint seen_polls = g_atomic_int_get(&io->polls);
	gint64 since = g_get_monotonic_time();

	if (owned)
		g_main_context_release(io->context);
	g_atomic_int_set(&io->lent, TRUE);
	g_cond_broadcast(&io->cond);
	for (;;) {
		if (io->quit)
			return FALSE;
		gint64 now = g_get_monotonic_time();
		gint returns = g_atomic_int_get(&io->returns);
		gint polls = g_atomic_int_get(&io->polls);
		gboolean polled = g_atomic_pointer_get(&io->poller) != NULL;
		if (returns != seen || polls != seen_polls) {
			/* A borrower came or went: the idle time starts again. */
			seen = returns;
			seen_polls = polls;
			since = now;
		} else if (polled && now - since >= LEND_IDLE_US) {
			/*
			 * One poll all along: wait for its return, which signals
			 * (parked, or reclaim and stopping set).
			 */
			g_atomic_int_set(&io->parked, TRUE);
			if (g_atomic_pointer_get(&io->poller) != NULL)
				g_cond_wait(&io->cond, &io->lock);
			g_atomic_int_set(&io->parked, FALSE);
			continue;
		}
		if (!polled && (g_atomic_int_get(&io->reclaim) || io->disabled ||
				now - since >= LEND_IDLE_US)) {
			if (g_main_context_acquire(io->context))
				break;
			/*
			 * Held: by a borrower that came in after the read of
			 * poller (it signals on return when reclaim or stopping is
			 * set), or by a thread that runs a function on the context
			 * (unix_io_released() signals). Wait for that signal; the
			 * context is in use, so the idle time starts again.
			 */
			since = now;
		}
		g_cond_wait_until(&io->cond, &io->lock, since + LEND_IDLE_US);
	}
	g_atomic_int_set(&io->lent, FALSE);
	g_atomic_int_set(&io->reclaim, FALSE);
	io->lend_wanted = FALSE;
	g_cond_broadcast(&io->cond);
	return TRUE;
}

static gpointer io_thread(gpointer data)
{
	UnixIo *io = data;
	gboolean owned;

	g_mutex_lock(&io->lock);
	if (g_atomic_int_get(&io->lent)) {
		/* Started lent: the context is taken when no borrower wants it. */
		owned = io_lend_locked(io, FALSE);
	} else {
		/* Not made the thread default: that would acquire it a second time. */
		owned = g_main_context_acquire(io->context);
		g_assert(owned);
		io->started = TRUE;
		g_cond_broadcast(&io->cond);
	}
	while (!io->quit) {
		if (io->lend_wanted && !io->disabled) {
			owned = io_lend_locked(io, TRUE);
			continue;
		}
		g_mutex_unlock(&io->lock);
		g_main_context_iteration(io->context, TRUE);
		g_mutex_lock(&io->lock);
	}
	g_mutex_unlock(&io->lock);
	if (owned)
		g_main_context_release(io->context);
	return NULL;
}

UnixIo *unix_io_start(GMainContext *context, gboolean lent)
{
	UnixIo *io = g_new0(UnixIo, 1);

	io->hook = mesh_io_hook_new(&io_funcs, io);
	io->context = g_main_context_ref(context);
	g_mutex_init(&io->lock);
	g_cond_init(&io->cond);
	/*
	 * Lent: nobody owns the context until a borrower or the thread takes
	 * it (unix_run_sync() and g_main_context_invoke() work either way).
	 */
	g_atomic_int_set(&io->lent, lent);
	io->thread = g_thread_new("mesh-io", io_thread, io);
	if (lent)
		return io;
	/* Owned from now on: unix_run_sync() from other threads must invoke. */
	g_mutex_lock(&io->lock);
	while (!io->started)
		g_cond_wait(&io->cond, &io->lock);
	g_mutex_unlock(&io->lock);
	return io;
}

MeshIoHook *unix_io_get_hook(UnixIo *io)
{
	return io->hook;
}

void unix_io_reclaim(UnixIo *io)
{
	if (!io || !g_atomic_int_get(&io->lent))
		return;
	g_mutex_lock(&io->lock);
	/* With a poller too: it may be past its poll; it signals on return. */
	if (g_atomic_int_get(&io->lent)) {
		g_atomic_int_set(&io->reclaim, TRUE);
		g_cond_broadcast(&io->cond);
	}
	g_mutex_unlock(&io->lock);
}

void unix_io_released(UnixIo *io)
{
	/* Lock and signal only while lent: the I/O thread waits only then. */
	if (io && g_atomic_int_get(&io->lent))
		io_signal(io);
}

void unix_io_disable_lending(UnixIo *io)
{
	g_mutex_lock(&io->lock);
	io->disabled = TRUE;
	g_atomic_int_set(&io->stopping, TRUE);
	g_cond_broadcast(&io->cond);
	g_main_context_wakeup(io->context);
	while (g_atomic_pointer_get(&io->poller) || g_atomic_int_get(&io->lent))
		g_cond_wait(&io->cond, &io->lock);
	g_mutex_unlock(&io->lock);
}

void unix_io_stop(UnixIo *io)
{
	g_mutex_lock(&io->lock);
	io->quit = TRUE;
	g_atomic_int_set(&io->stopping, TRUE);
	g_cond_broadcast(&io->cond);
	g_mutex_unlock(&io->lock);
	g_main_context_wakeup(io->context);
	g_thread_join(io->thread);
	io->thread = NULL;
	mesh_io_hook_unref(io->hook);
}
