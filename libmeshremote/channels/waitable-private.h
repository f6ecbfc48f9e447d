/* SPDX-License-Identifier: MIT */
/*
 * The waiting machinery of one channel object whose readiness a port
 * handler changes (cell.c, pipe.c): a lock, blocking waits that run the
 * transport's I/O when they can (as receiver_pop() in channel.c), a
 * level-triggered eventfd and a GMainContext callback source.
 *
 * Lock order: a port, then the waitable's lock (handlers take it under
 * their port's lock). Nothing is sent on a port with the lock held.
 */
#pragma once

#include "channel-private.h"

typedef struct Waitable Waitable;

/* What an owner object tells the waitable about itself. */
typedef struct {
	const char *name;                       /* the GSource's name */
	gboolean (*ready_locked)(gpointer owner); /* under the lock */
	/* Called on the context just before the callback, under the lock. */
	void (*dispatch_locked)(gpointer owner);
	gpointer (*ref)(gpointer owner);
	void (*unref)(gpointer owner);
} WaitableClass;

/* The owner's callback: (owner, user_data). */
typedef void (*WaitableFunc)(gpointer owner, gpointer user_data);

struct Waitable {
	GMutex lock;
	GCond cond;
	const WaitableClass *cls;
	gpointer owner;
	/* Under lock: */
	guint n_waiters;
	IoWaiters io;
	MeshOsHandle efd; /* an OsEvent (os-private.h): eventfd, Windows event */
	gboolean efd_set;
	GSource *source;
	GMainContext *context;
	/* How the owner's port ended: closed, or failed (the first error). */
	gboolean closed;
	GError *failed;
};

void waitable_init(Waitable *w, const WaitableClass *cls, gpointer owner);

/*
 * Port handlers for an owner whose port's end is all it records: they set
 * @closed, or @failed (first error kept), and wake the waiters. @data is
 * the owner's Waitable.
 */
void waitable_on_port_close(MeshPort *port, void *data, Deferred *d);
void waitable_on_port_fail(MeshPort *port, void *data, const GError *error, Deferred *d);
/* After the last reference: closes the eventfd. The source must be gone. */
void waitable_clear(Waitable *w);

/*
 * The state changed under the lock: wakes blocking waiters, the callback's
 * context and the eventfd if the owner is ready now; clears the eventfd if
 * it is not. @d: (nullable) defers the context wakeup (from a handler).
 */
void waitable_changed_locked(Waitable *w, Deferred *d);

/*
 * Waits (lock held, released while waiting) until ready_locked() or
 * @deadline (monotonic us, -1 forever). @port: (nullable) the port whose
 * node's I/O this thread may run while it waits; *@hook caches its I/O hook
 * across calls (unref it at the end). Returns TRUE if ready, FALSE at the
 * deadline.
 */
gboolean waitable_wait_locked(Waitable *w, MeshPort *port, gint64 deadline, MeshIoHook **hook);

/* The event (eventfd; Windows: event HANDLE), made on the first call;
 * MESH_OS_HANDLE_INVALID and *@ret_errno (a negative errno) on failure. Any thread. */
MeshOsHandle waitable_get_event(Waitable *w, int *ret_errno);

#ifdef G_OS_WIN32
/* What the public mesh_*_get_handle() return: the event or NULL. */
static inline MeshOsHandle waitable_get_handle(Waitable *w)
{
	int e;
	return waitable_get_event(w, &e);
}
#else
/* What the public mesh_*_get_fd() return: the eventfd or a negative errno. */
static inline int waitable_get_fd(Waitable *w)
{
	int e = -EIO;
	MeshOsHandle fd = waitable_get_event(w, &e);
	return fd >= 0 ? fd : e;
}
#endif

/* Sets (func non-NULL) or removes the callback. Any thread. */
void waitable_set_callback(Waitable *w, GMainContext *context, WaitableFunc func,
			   gpointer user_data, GDestroyNotify notify);

/* Timeout errors of a wait: MESH_ERROR_EMPTY for 0, else TIMED_OUT. */
void waitable_set_timeout_error(GError **error, gint64 timeout_us, const char *what);
