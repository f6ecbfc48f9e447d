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
 * Whoever iterates the context (the thread or a borrower, io_iterate())
 * waits in epoll_wait() on a set that mirrors GLib's poll array, with the
 * rings' eventfds edge-triggered (io_poll(), "The poll" below).
 *
 * Locks: io->lock, then the context's own lock (inside GLib). No port or
 * channel lock is held while a borrower polls.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "unix-node-private.h"

/* How long the I/O thread leaves its context to a borrower that is away. */
#define LEND_IDLE_US 1000
/* Iterations in a row that may leave the poll out (io_iterate()). */
#define MAX_SKIPPED_POLLS 4
/*
 * A borrower whose deadline is further than this waits with no timeout:
 * the I/O thread watches the deadline (io_lend_locked()), so that a wait
 * arms no kernel timer (about 1 us per round trip on this VM).
 */
#define WATCHED_DEADLINE_MS 10

/* One fd in the epoll set; the serial tells a stale registration's events. */
typedef struct {
	int fd;
	guint32 events; /* EPOLL* */
	guint32 serial;
} EpReg;

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
	gint parked;       /* the I/O thread waits for the poller's return (or its deadline) */
	/*
	 * The poller's deadline (-1: none), set before it polls; read by the
	 * I/O thread when it parks. __atomic, sequentially consistent: the
	 * poller stores it and then reads parked, the I/O thread sets parked
	 * and then reads it, so one of them sees the other.
	 */
	gint64 poll_deadline;
	/* Under lock: */
	gboolean started;
	gboolean quit;
	gboolean disabled;    /* no more lending: the transport goes */
	gboolean lend_wanted; /* a blocked receiver asked the I/O thread to lend */
	/* The poller's: */
	GPollFD *fds;
	gint n_fds;
	gint skipped_polls; /* io_iterate()s in a row that dispatched without a poll */
	/* The epoll set the poller waits on (io_poll()); the poller's: */
	int epfd;          /* -1: none (not made yet, or dropped after an error) */
	gboolean ep_off;   /* epoll_create1() failed: plain poll() for good */
	gboolean ep_valid; /* the set holds exactly ep_regs, made from ep_seen */
	gboolean ep_plain; /* epoll refused an fd of ep_seen (a regular file): plain poll() */
	EpReg *ep_regs;    /* registered fds, sorted by fd */
	gint n_ep_regs;
	EpReg *ep_want;    /* ep_regs' successor while it is made; both ep_cap long */
	gint ep_cap;
	GArray *ep_again;  /* the poller's copies of attached and edge_fds */
	GArray *ep_edges;
	GPollFD *ep_seen; /* the array the set was made from (revents 0) */
	gint n_ep_seen;
	guint32 ep_serial; /* the last registration's serial */
	struct epoll_event *ep_evs;
	gint n_ep_evs;
	/*
	 * Held around the set's epoll_ctl() calls and around the close of an
	 * fd that may be in the set (unix_io_lock_fds()): the poller never
	 * names a number another thread is closing.
	 */
	GMutex ep_lock;
	/* Under lock; ep_dirty (atomic) says they changed: */
	gint ep_dirty;
	GArray *attached;  /* fds (re)attached since the last poll: registered again */
	GArray *edge_fds;  /* the rings' eventfds: edge-triggered, never read */
};

/* The UnixIo whose epoll set gave the revents being checked now. */
static __thread UnixIo *tls_edge_polled;
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
 * The poll: an epoll set that mirrors the array of fds GLib makes at each
 * iteration, instead of poll() over that array. The set changes only when
 * the array does, so a wait is one epoll_wait() whatever the number of
 * connections; and the rings' eventfds are edge-triggered: a write of the
 * peer wakes the poller once, and nobody reads the eventfd afterwards (its
 * count only grows; a write wakes an edge-triggered waiter however high it
 * is). With poll(), each wake-up through a ring cost a poll() and a read().
 *
 * The array alone cannot say that an fd number now names another file (a
 * connection ended and its socket's number came back for a new one): a
 * source with an fd is attached to the context only after
 * unix_io_fd_attached() noted that fd, which has it registered again.
 * A watched fd is taken out of the set and closed under ep_lock
 * (unix_io_forget_fd()), which the poller holds around its epoll_ctl()
 * calls: it never names a number another thread is closing, nor one that
 * left its array. A registration that outlives its fd anyway (closed
 * while another process keeps the file, as the peer keeps our ring's
 * eventfd) can still report: each registration carries a serial, and an
 * event whose serial is not the fd's current one makes a new set. Anything epoll refuses (a regular
 * file) makes that array's waits a plain poll().
 */
static int ep_reg_cmp(const void *a, const void *b)
{
	int x = ((const EpReg *)a)->fd, y = ((const EpReg *)b)->fd;
	return (x > y) - (x < y);
}

static EpReg *ep_find(UnixIo *io, int fd)
{
	EpReg key = {.fd = fd};
	return bsearch(&key, io->ep_regs, (size_t)io->n_ep_regs, sizeof(EpReg), ep_reg_cmp);
}

static gboolean fd_listed(GArray *a, int fd)
{
	for (guint i = 0; i < a->len; i++)
		if (g_array_index(a, int, i) == fd)
			return TRUE;
	return FALSE;
}

/*
 * Starts an empty set under the same number (a number that came and went
 * behind a caller's back would confuse one that checks its own closed fd).
 */
static void ep_reset(UnixIo *io)
{
	io->n_ep_regs = 0;
	if (io->epfd < 0)
		return;
	int fresh = epoll_create1(EPOLL_CLOEXEC);
	if (fresh < 0 || dup3(fresh, io->epfd, O_CLOEXEC) < 0) {
		close(io->epfd);
		io->epfd = -1;
		io->ep_off = TRUE;
	}
	if (fresh >= 0)
		close(fresh);
}

/*
 * Makes the set hold ep_want[0..n) (sorted, one per fd), from ep_regs.
 * FALSE: epoll refused one of them. An fd that left the array is not named
 * here (its number may be closed, and another thread may have opened a
 * file under it by now): whoever closes a watched fd takes it out of the
 * set first (unix_io_forget_fd()); one that stays open and reports later
 * is a stale registration, which io_poll() drops with a new set. Only fds
 * of this iteration's array are named, with ep_lock held (their closes
 * take it too). The caller holds ep_lock.
 */
static gboolean ep_sync(UnixIo *io, gint n)
{
	EpReg *old = io->ep_regs, *want = io->ep_want;
	gint i = 0, j = 0;

	if (io->epfd < 0)
		return FALSE;
	while (j < n) {
		while (i < io->n_ep_regs && old[i].fd < want[j].fd)
			i++; /* left the array: dropped */
		EpReg *w = &want[j++];
		gboolean had = i < io->n_ep_regs && old[i].fd == w->fd;
		if (had && old[i].events == w->events && !fd_listed(io->ep_again, w->fd)) {
			w->serial = old[i++].serial;
			continue;
		}
		if (had)
			i++;
		w->serial = ++io->ep_serial;
		struct epoll_event ev = {
			.events = w->events,
			.data.u64 = ((guint64)w->serial << 32) | (guint32)w->fd,
		};
		/* By the file the number names now: ENOENT if it is another one. */
		int r = had ? epoll_ctl(io->epfd, EPOLL_CTL_MOD, w->fd, &ev) : -1;
		if (!had || (r < 0 && errno == ENOENT)) {
			r = epoll_ctl(io->epfd, EPOLL_CTL_ADD, w->fd, &ev);
			if (r < 0 && errno == EEXIST)
				r = epoll_ctl(io->epfd, EPOLL_CTL_MOD, w->fd, &ev);
		}
		if (r < 0)
			return FALSE;
	}
	return TRUE;
}

/* The set for @fds: FALSE if only a plain poll() can wait on them. */
static gboolean ep_update(UnixIo *io, const GPollFD *fds, gint n)
{
	g_mutex_lock(&io->lock);
	g_atomic_int_set(&io->ep_dirty, FALSE);
	g_array_set_size(io->ep_again, 0);
	g_array_append_vals(io->ep_again, io->attached->data, io->attached->len);
	g_array_set_size(io->attached, 0);
	g_array_set_size(io->ep_edges, 0);
	g_array_append_vals(io->ep_edges, io->edge_fds->data, io->edge_fds->len);
	g_mutex_unlock(&io->lock);

	if (io->ep_cap < MAX(n, 1)) {
		io->ep_cap = MAX(n, 1);
		io->ep_regs = g_renew(EpReg, io->ep_regs, io->ep_cap);
		io->ep_want = g_renew(EpReg, io->ep_want, io->ep_cap);
		io->ep_evs = g_renew(struct epoll_event, io->ep_evs, io->ep_cap);
		io->ep_seen = g_renew(GPollFD, io->ep_seen, io->ep_cap);
	}
	gint m = 0;
	for (gint i = 0; i < n; i++) {
		if (fds[i].fd < 0)
			continue;
		io->ep_want[m++] = (EpReg){
			.fd = fds[i].fd,
			.events = fds[i].events & (EPOLLIN | EPOLLPRI | EPOLLOUT),
		};
	}
	qsort(io->ep_want, (size_t)m, sizeof(EpReg), ep_reg_cmp);
	gint u = 0;
	for (gint i = 0; i < m; i++) {
		if (u > 0 && io->ep_want[u - 1].fd == io->ep_want[i].fd)
			io->ep_want[u - 1].events |= io->ep_want[i].events;
		else
			io->ep_want[u++] = io->ep_want[i];
	}
	for (gint i = 0; i < u; i++)
		if (fd_listed(io->ep_edges, io->ep_want[i].fd))
			io->ep_want[i].events |= EPOLLET;

	memcpy(io->ep_seen, fds, sizeof(GPollFD) * (size_t)n);
	for (gint i = 0; i < n; i++)
		io->ep_seen[i].revents = 0;
	io->n_ep_seen = n;
	g_mutex_lock(&io->ep_lock);
	io->ep_plain = !ep_sync(io, u);
	if (io->ep_plain)
		ep_reset(io); /* half made: the next array epoll can take starts afresh */
	g_mutex_unlock(&io->ep_lock);
	if (io->ep_plain)
		return FALSE;
	EpReg *t = io->ep_regs;
	io->ep_regs = io->ep_want;
	io->ep_want = t;
	io->n_ep_regs = u;
	return TRUE;
}

/* What io_iterate() polls with: the context's fds through the epoll set. */
static int io_poll(UnixIo *io, GPollFD *fds, gint n, gint timeout)
{
	if (io->ep_off)
		return g_poll(fds, (guint)n, timeout);
	if (g_atomic_int_get(&io->ep_dirty) || n != io->n_ep_seen ||
	    memcmp(fds, io->ep_seen, sizeof(GPollFD) * (size_t)n) != 0) {
		if (!ep_update(io, fds, n))
			return g_poll(fds, (guint)n, timeout);
	} else if (io->ep_plain) {
		return g_poll(fds, (guint)n, timeout);
	}
	int k = epoll_wait(io->epfd, io->ep_evs, MAX(io->n_ep_regs, 1), timeout);
	if (k <= 0)
		return k;
	gboolean stale = FALSE;
	int ready = 0;
	for (int e = 0; e < k; e++) {
		guint64 d = io->ep_evs[e].data.u64;
		int fd = (int)(guint32)d;
		EpReg *reg = ep_find(io, fd);
		if (!reg || reg->serial != (guint32)(d >> 32)) {
			stale = TRUE;
			continue;
		}
		gushort got = io->ep_evs[e].events & (G_IO_IN | G_IO_PRI | G_IO_OUT | G_IO_ERR | G_IO_HUP);
		for (gint i = 0; i < n; i++) {
			if (fds[i].fd != fd)
				continue;
			gushort r = got & (fds[i].events | G_IO_ERR | G_IO_HUP);
			ready += r && !fds[i].revents;
			fds[i].revents |= r;
		}
	}
	if (stale) {
		g_mutex_lock(&io->ep_lock);
		ep_reset(io);
		g_mutex_unlock(&io->ep_lock);
		io->n_ep_seen = -1; /* made again at the next poll */
	}
	tls_edge_polled = io;
	/* Not 0 for events nobody asked for: that would read as a timeout. */
	return MAX(ready, 1);
}

gboolean unix_io_edge_polled(UnixIo *io, int fd)
{
	if (!io || tls_edge_polled != io)
		return FALSE;
	EpReg *reg = ep_find(io, fd);
	return reg && (reg->events & EPOLLET);
}

void unix_io_lock_fds(UnixIo *io)
{
	if (io)
		g_mutex_lock(&io->ep_lock);
}

void unix_io_unlock_fds(UnixIo *io)
{
	if (io)
		g_mutex_unlock(&io->ep_lock);
}

void unix_io_forget_fd(UnixIo *io, int fd)
{
	/* Not in the set (never, or not any more): ENOENT, nothing to do. */
	if (io && io->epfd >= 0 && fd >= 0)
		epoll_ctl(io->epfd, EPOLL_CTL_DEL, fd, NULL);
}

void unix_io_close_fd(UnixIo *io, int fd)
{
	unix_io_lock_fds(io);
	unix_io_forget_fd(io, fd);
	close(fd);
	unix_io_unlock_fds(io);
}

void unix_io_fd_attached(UnixIo *io, int fd)
{
	if (!io || fd < 0)
		return;
	g_mutex_lock(&io->lock);
	g_array_append_val(io->attached, fd);
	g_atomic_int_set(&io->ep_dirty, TRUE);
	g_mutex_unlock(&io->lock);
}

void unix_io_set_edge_fd(UnixIo *io, int fd, gboolean edge)
{
	if (!io || fd < 0)
		return;
	g_mutex_lock(&io->lock);
	for (guint i = 0; i < io->edge_fds->len; i++) {
		if (g_array_index(io->edge_fds, int, i) == fd) {
			g_array_remove_index_fast(io->edge_fds, i);
			break;
		}
	}
	if (edge)
		g_array_append_val(io->edge_fds, fd);
	g_array_append_val(io->attached, fd);
	g_atomic_int_set(&io->ep_dirty, TRUE);
	g_mutex_unlock(&io->lock);
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
static gboolean io_iterate(UnixIo *io, gint64 deadline, gboolean watched)
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
	/* Watched by the I/O thread: it wakes the context at the deadline. */
	gboolean unbounded = watched && ours && timeout > WATCHED_DEADLINE_MS;
	if (unbounded)
		timeout = -1;
	int r = 1;
	if (ready && timeout == 0 && io->skipped_polls < MAX_SKIPPED_POLLS) {
		io->skipped_polls++; /* the fds' revents stay 0 (query cleared them) */
	} else {
		io->skipped_polls = 0;
		r = io_poll(io, io->fds, n, timeout);
		if (r < 0 && errno != EINTR)
			g_warning("mesh: poll: %s", g_strerror(errno));
	}
	g_main_context_check(io->context, max_priority, io->fds, n);
	tls_edge_polled = NULL;
	g_main_context_dispatch(io->context);
	return past || (r == 0 && ours && !unbounded);
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
	/*
	 * Before the poll: a parked I/O thread (it read the deadline of an
	 * earlier poller, or none) looks at it again.
	 */
	__atomic_store_n(&io->poll_deadline, deadline, __ATOMIC_SEQ_CST);
	if (g_atomic_int_get(&io->parked))
		io_signal(io);
	g_atomic_int_inc(&io->polls);
	*ret_expired = io_iterate(io, deadline, TRUE);
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
	if (io->epfd >= 0)
		close(io->epfd);
	g_free(io->ep_regs);
	g_free(io->ep_want);
	g_free(io->ep_seen);
	g_free(io->ep_evs);
	g_array_unref(io->ep_again);
	g_array_unref(io->ep_edges);
	g_array_unref(io->attached);
	g_array_unref(io->edge_fds);
	g_cond_clear(&io->cond);
	g_mutex_clear(&io->lock);
	g_mutex_clear(&io->ep_lock);
	g_free(io);
}

/*
 * Lends the context until it is to be taken back; returns owning it, or
 * FALSE at quit. Locked. Borrowers only count their polls and returns (no
 * clock, no signal on the hot path): the context is idle when a whole
 * LEND_IDLE_US passed with no return and no poller. A poll that lasts a
 * whole LEND_IDLE_US (a receiver that waits for a message that does not
 * come) parks the I/O thread until the poller returns, or until the
 * poller's deadline, which it then signals with a wake-up of the context
 * (a poll that waits for a deadline over WATCHED_DEADLINE_MS away has no
 * timeout of its own): the borrower signals when it returns, so an idle
 * wait with no deadline wakes nobody. A poller that stores NULL and then
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
			 * (parked, or reclaim and stopping set), or for its
			 * deadline, which the poll does not watch (io_iterate():
			 * WATCHED_DEADLINE_MS): then wake the context, once per
			 * LEND_IDLE_US until the poller returns.
			 */
			g_atomic_int_set(&io->parked, TRUE);
			if (g_atomic_pointer_get(&io->poller) != NULL) {
				gint64 dl = __atomic_load_n(&io->poll_deadline, __ATOMIC_SEQ_CST);
				if (dl < 0) {
					g_cond_wait(&io->cond, &io->lock);
				} else if (dl > now) {
					g_cond_wait_until(&io->cond, &io->lock, dl);
				} else {
					g_main_context_wakeup(io->context);
					g_cond_wait_until(&io->cond, &io->lock, now + LEND_IDLE_US);
				}
			}
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
		io_iterate(io, -1, FALSE);
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
	io->epfd = epoll_create1(EPOLL_CLOEXEC);
	io->ep_off = io->epfd < 0; /* then plain poll() */
	io->n_ep_seen = -1;
	io->poll_deadline = -1;
	io->attached = g_array_new(FALSE, FALSE, sizeof(int));
	io->edge_fds = g_array_new(FALSE, FALSE, sizeof(int));
	io->ep_again = g_array_new(FALSE, FALSE, sizeof(int));
	io->ep_edges = g_array_new(FALSE, FALSE, sizeof(int));
	g_mutex_init(&io->lock);
	g_mutex_init(&io->ep_lock);
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
	/* Nobody polls any more (no lending after quit): the hook may outlive this. */
	g_mutex_lock(&io->ep_lock);
	if (io->epfd >= 0)
		close(io->epfd);
	io->epfd = -1;
	io->ep_off = TRUE;
	g_mutex_unlock(&io->ep_lock);
	mesh_io_hook_unref(io->hook);
}
