/* SPDX-License-Identifier: MIT */
/*
 * Blocking on a caller's GMainContext (GSubprocess's pattern, DESIGN.md
 * section 3): a transport that runs on a context the caller gives has no
 * thread of its own, so a thread that blocks in a receive on the context's
 * own thread makes progress by iterating that context itself: when it runs
 * the context already (inside one of its dispatches, say), or when the
 * context is this thread's and nobody runs it now (see
 * context_io_acquire_if_ours()). Any other thread waits on its GCond for the
 * thread that runs the context, as with any other delivery.
 *
 * A message for the waiter is dispatched by its own iteration; one that
 * another thread delivers (a local send) wakes the context
 * (MeshIoHook.wakeup), which ends the iteration's poll.
 */
#include <errno.h>

#include "os-private.h"
#include "remote-private.h"

typedef struct {
	MeshIoHook *hook; /* weak: the hook owns this */
	GMainContext *context;
	guint64 creator; /* the thread that made the transport (os_thread_id()) */
} ContextIo;

/*
 * Acquires @c's context if this thread may iterate it for a blocking wait.
 * It runs it already: a wait inside its dispatch (acquiring is recursive).
 * Or nobody runs it and it is this thread's: the thread that made the
 * transport on it, the one that pushed it as its thread default, or for the
 * global default context the main thread (GLib's convention). Another
 * thread that took it while nobody ran it would block its real owner, which
 * waits in g_main_context_acquire() (g_main_loop_run()) for as long as the
 * iteration's poll lasts, with nothing to wake it.
 */
static gboolean context_io_acquire_if_ours(ContextIo *c)
{
	if (g_main_context_is_owner(c->context))
		return g_main_context_acquire(c->context);
	guint64 self = os_thread_id();
	GMainContext *own = g_main_context_get_thread_default();
	gboolean ours = self == c->creator ||
			(own ? own == c->context
			     : c->context == g_main_context_default() && os_thread_is_main(self));
	return ours && g_main_context_acquire(c->context);
}

static gboolean context_run_once(void *data, gint64 deadline, gboolean *ret_expired);

/* The ContextIo of a mesh_io_hook_new_for_context() hook, else NULL. */
static ContextIo *context_io_of(MeshIoHook *hook)
{
	return hook && hook->funcs.run_once == context_run_once ? hook->user_data : NULL;
}

gboolean mesh_io_hook_acquire_context(MeshIoHook *hook)
{
	ContextIo *c = context_io_of(hook);

	g_return_val_if_fail(c != NULL, FALSE);
	return context_io_acquire_if_ours(c);
}

/* A reference to @hook unless its count already reached zero. */
static gboolean hook_try_ref(MeshIoHook *hook)
{
	gint ref = g_atomic_int_get(&hook->ref);

	while (ref > 0) {
		if (g_atomic_int_compare_and_exchange(&hook->ref, ref, ref + 1))
			return TRUE;
		ref = g_atomic_int_get(&hook->ref);
	}
	return FALSE;
}

/* GPollFDs on the stack per iteration; a nested iteration has its own. */
#define CONTEXT_POLL_FDS 16

gboolean mesh_main_context_iterate_until(GMainContext *context, gint64 deadline)
{
	g_return_val_if_fail(context != NULL, FALSE);

	GPollFD stack_fds[CONTEXT_POLL_FDS];
	GPollFD *fds = stack_fds;
	gint n_fds = CONTEXT_POLL_FDS, max_priority, timeout, n;
	gboolean ours = FALSE, past = FALSE;

	g_main_context_prepare(context, &max_priority);
	while ((n = g_main_context_query(context, max_priority, &timeout, fds, n_fds)) > n_fds) {
		n_fds = n;
		fds = fds == stack_fds ? g_new(GPollFD, n) : g_renew(GPollFD, fds, n);
	}
	if (deadline >= 0) {
		gint64 left = deadline - g_get_monotonic_time();
		gint ms = left <= 0 ? 0 : (gint)MIN((left + 999) / 1000, G_MAXINT);

		past = left <= 0;
		if (timeout < 0 || ms <= timeout) {
			timeout = ms;
			ours = TRUE;
		}
	}
	GPollFunc poll_func = g_main_context_get_poll_func(context);
	int r = poll_func(fds, n, timeout);
	if (r < 0 && errno != EINTR)
		g_warning("mesh: poll: %s", g_strerror(errno));
	g_main_context_check(context, max_priority, fds, n);
	g_main_context_dispatch(context);
	if (fds != stack_fds)
		g_free(fds);
	return past || (r == 0 && ours);
}

/*
 * The hooks of the live transports on callers' contexts, for a wait on a
 * port that no node's table holds yet (context_io_hook_for_thread()). Each
 * holds no reference: the transport unregisters it before dropping its own.
 */
static GMutex registry_lock;
static GPtrArray *registry;
static gint n_registered; /* atomic: the common case (none) takes no lock */

static gboolean context_run_once(void *data, gint64 deadline, gboolean *ret_expired)
{
	ContextIo *c = data;

	*ret_expired = FALSE;
	if (!context_io_acquire_if_ours(c))
		return FALSE;
	*ret_expired = mesh_main_context_iterate_until(c->context, deadline);
	g_main_context_release(c->context);
	return TRUE;
}

static void context_wakeup(void *data)
{
	g_main_context_wakeup(((ContextIo *)data)->context);
}

static void context_io_unregister(ContextIo *c);

static void context_finalize(void *data)
{
	ContextIo *c = data;

	context_io_unregister(c); /* if the transport did not */
	g_main_context_unref(c->context);
	g_free(c);
}

static void context_io_unregister(ContextIo *c)
{
	g_mutex_lock(&registry_lock);
	if (registry && g_ptr_array_remove(registry, c))
		g_atomic_int_add(&n_registered, -1);
	g_mutex_unlock(&registry_lock);
}

static const MeshIoHookFuncs context_funcs = {
	.version = 0,
	.run_once = context_run_once,
	.wakeup = context_wakeup,
	.destroy = context_finalize,
};

MeshIoHook *mesh_io_hook_new_for_context(GMainContext *context)
{
	g_return_val_if_fail(context != NULL, NULL);
	ContextIo *c = g_new0(ContextIo, 1);

	c->hook = mesh_io_hook_new(&context_funcs, c);
	c->context = g_main_context_ref(context);
	c->creator = os_thread_id();
	g_mutex_lock(&registry_lock);
	if (!registry)
		registry = g_ptr_array_new();
	g_ptr_array_add(registry, c);
	g_atomic_int_inc(&n_registered);
	g_mutex_unlock(&registry_lock);
	return c->hook;
}

void mesh_io_hook_detach(MeshIoHook *hook)
{
	ContextIo *c = context_io_of(hook);

	if (c)
		context_io_unregister(c);
}

MeshIoHook *context_io_hook_for_thread(void)
{
	ContextIo *found = NULL;

	if (!g_atomic_int_get(&n_registered))
		return NULL;
	g_mutex_lock(&registry_lock);
	/* The context this thread runs (a wait inside its dispatch) first. */
	for (guint i = 0; registry && i < registry->len && !found; i++) {
		ContextIo *c = registry->pdata[i];
		if (g_main_context_is_owner(c->context))
			found = c;
	}
	/* Then this thread's own one, which nobody runs right now. */
	for (guint i = 0; registry && i < registry->len && !found; i++) {
		ContextIo *c = registry->pdata[i];
		if (context_io_acquire_if_ours(c)) {
			g_main_context_release(c->context);
			found = c;
		}
	}
	/* A hook going away (its last reference dropped) unregisters: skip it. */
	MeshIoHook *hook = found && hook_try_ref(found->hook) ? found->hook : NULL;
	g_mutex_unlock(&registry_lock);
	return hook;
}
