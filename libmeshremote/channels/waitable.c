/* SPDX-License-Identifier: MIT */
/* Waiting on a channel object whose port handler changes its state (waitable-private.h). */
#include <errno.h>

#include "os-private.h"
#include "waitable-private.h"

void waitable_init(Waitable *w, const WaitableClass *cls, gpointer owner)
{
	memset(w, 0, sizeof(*w));
	g_mutex_init(&w->lock);
	g_cond_init(&w->cond);
	w->cls = cls;
	w->owner = owner;
	w->efd = OS_EVENT_NONE;
}

void waitable_on_port_close(MeshPort *port, void *data, Deferred *d)
{
	Waitable *w = data;

	g_mutex_lock(&w->lock);
	w->closed = TRUE;
	waitable_changed_locked(w, d);
	g_mutex_unlock(&w->lock);
}

void waitable_on_port_fail(MeshPort *port, void *data, const GError *error, Deferred *d)
{
	Waitable *w = data;

	g_mutex_lock(&w->lock);
	if (!w->failed)
		w->failed = g_error_copy(error);
	waitable_changed_locked(w, d);
	g_mutex_unlock(&w->lock);
}

void waitable_clear(Waitable *w)
{
	g_clear_error(&w->failed);
	g_warn_if_fail(w->source == NULL);
	os_handle_close(w->efd);
	if (w->context)
		g_main_context_unref(w->context);
	g_cond_clear(&w->cond);
	g_mutex_clear(&w->lock);
}

void waitable_changed_locked(Waitable *w, Deferred *d)
{
	gboolean ready = w->cls->ready_locked(w->owner);

	if (w->efd != OS_EVENT_NONE && ready != w->efd_set) {
		if (ready)
			os_event_set(w->efd);
		else
			os_event_clear(w->efd);
		w->efd_set = ready;
	}
	if (!ready)
		return;
	if (w->n_waiters)
		g_cond_broadcast(&w->cond);
	MeshIoHook *hook = io_waiters_wake_locked(&w->io);
	if (hook) {
		hook->funcs.wakeup(hook->user_data); /* an eventfd write: fine under the locks */
		mesh_io_hook_unref(hook);            /* not the last: the waiter holds one */
	}
	if (w->context) {
		if (d)
			channel_wake_context_later(d, w->context);
		else
			g_main_context_wakeup(w->context);
	}
}

gboolean waitable_wait_locked(Waitable *w, MeshPort *port, gint64 deadline, MeshIoHook **hook)
{
	gboolean expired = FALSE, io_refused = FALSE;

	while (!w->cls->ready_locked(w->owner)) {
		if (expired)
			return FALSE;
		if (port && !*hook) {
			/* The port's lock comes before ours: look without it. */
			g_mutex_unlock(&w->lock);
			MeshIoHook *h = port_get_io_hook(port);
			g_mutex_lock(&w->lock);
			if (!h) {
				port = NULL; /* nothing to run: wait on the GCond */
				continue;
			}
			*hook = h;
			continue; /* the state may have changed meanwhile */
		}
		if (*hook && !io_refused) {
			/* Run the transport's I/O here rather than wait for its thread. */
			if (!io_waiters_run(&w->io, &w->lock, *hook, deadline, &expired))
				io_refused = TRUE;
			continue;
		}
		w->n_waiters++;
		if (!channel_cond_wait(&w->cond, &w->lock, deadline))
			expired = TRUE;
		w->n_waiters--;
		io_refused = FALSE;
	}
	return TRUE;
}

MeshOsHandle waitable_get_event(Waitable *w, int *ret_errno)
{
	g_mutex_lock(&w->lock);
	if (w->efd == MESH_OS_HANDLE_INVALID) {
		gboolean ready = w->cls->ready_locked(w->owner);
		w->efd = os_event_new(ready, ret_errno);
		w->efd_set = ready;
	}
	MeshOsHandle ev = w->efd;
	g_mutex_unlock(&w->lock);
	return ev;
}

typedef struct {
	GSource base;
	Waitable *w; /* its owner held (cls->ref) */
} WaitableSource;

static gboolean waitable_source_ready(GSource *source)
{
	Waitable *w = ((WaitableSource *)source)->w;

	g_mutex_lock(&w->lock);
	gboolean ready = w->cls->ready_locked(w->owner);
	g_mutex_unlock(&w->lock);
	return ready;
}

static gboolean waitable_source_prepare(GSource *source, gint *timeout)
{
	*timeout = -1;
	return waitable_source_ready(source);
}

static gboolean waitable_source_dispatch(GSource *source, GSourceFunc callback, gpointer user_data)
{
	Waitable *w = ((WaitableSource *)source)->w;

	if (!callback)
		return G_SOURCE_CONTINUE;
	if (w->cls->dispatch_locked) {
		g_mutex_lock(&w->lock);
		w->cls->dispatch_locked(w->owner);
		waitable_changed_locked(w, NULL);
		g_mutex_unlock(&w->lock);
	}
	((WaitableFunc)(void (*)(void))callback)(w->owner, user_data);
	return G_SOURCE_CONTINUE;
}

static void waitable_source_finalize(GSource *source)
{
	Waitable *w = ((WaitableSource *)source)->w;
	w->cls->unref(w->owner);
}

static GSourceFuncs waitable_source_funcs = {
	.prepare = waitable_source_prepare,
	.check = waitable_source_ready,
	.dispatch = waitable_source_dispatch,
	.finalize = waitable_source_finalize,
};

void waitable_set_callback(Waitable *w, GMainContext *context, WaitableFunc func,
			   gpointer user_data, GDestroyNotify notify)
{
	GSource *source = NULL;

	if (!context)
		context = g_main_context_default();
	if (func) {
		source = g_source_new(&waitable_source_funcs, sizeof(WaitableSource));
		w->cls->ref(w->owner);
		((WaitableSource *)source)->w = w;
		channel_source_attach(source, w->cls->name, context, G_SOURCE_FUNC(func), user_data,
				      notify);
	}
	channel_swap_source(&w->lock, &w->source, &w->context, source, context);
	if (!func && notify)
		notify(user_data);
}

void waitable_set_timeout_error(GError **error, gint64 timeout_us, const char *what)
{
	if (timeout_us == 0)
		g_set_error(error, MESH_ERROR, MESH_ERROR_EMPTY, "%s: not ready", what);
	else
		g_set_error(error, MESH_ERROR, MESH_ERROR_TIMED_OUT, "%s: not ready within the timeout",
			    what);
}
