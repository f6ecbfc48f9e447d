/* SPDX-License-Identifier: MIT */
/*
 * Workers (upstream mesh_worker, reference 5.6): a registry of named worker
 * functions, the runner that serves a WorkerHost's launch requests and runs
 * each worker on a thread of its own, and the parent's host and handles.
 *
 * Channels per worker, all made by the parent's mesh_worker_host_launch():
 * rpc (WorkerRpc, parent -> worker), events (WorkerEvent, worker -> parent)
 * and a oneshot carrying the parameters as one untyped message. The launch
 * request (WorkerHostLaunchRequest) carries the three ends as ports.
 *
 * Restart (upstream WorkerHandle::restart): the handle swaps in fresh rpc
 * and event channels and sends a launch request of type Restart carrying
 * the old ends. The new side asks the old worker for its state with a
 * Restart rpc; with the state it runs a new instance; without it (refused,
 * unsupported, the old worker gone) it sends RestartFailed and bridges the
 * new channels onto the old ones, so the handle talks to the old worker
 * again. Local workers (mesh_worker_launch_local()) run the same thread
 * body with parameters that are never encoded.
 */
#include <stdlib.h>
#include <unistd.h>

#include "process-private.h"
#include "worker.pb-c.h"

/* The registry. */

typedef struct {
	char *name;
	MeshWorkerRunFunc func;
	gboolean restartable;
	gpointer user_data;
	GDestroyNotify notify;
} WorkerEntry;

struct MeshWorkerRegistry {
	GHashTable *entries; /* name -> WorkerEntry */
};

static void entry_free(gpointer data)
{
	WorkerEntry *e = data;
	if (e->notify)
		e->notify(e->user_data);
	g_free(e->name);
	g_free(e);
}

MeshWorkerRegistry *mesh_worker_registry_new(void)
{
	MeshWorkerRegistry *reg = g_new0(MeshWorkerRegistry, 1);
	reg->entries = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, entry_free);
	return reg;
}

static void registry_add(MeshWorkerRegistry *reg, const char *name, MeshWorkerRunFunc func,
			 gboolean restartable, gpointer user_data, GDestroyNotify notify)
{
	WorkerEntry *e = g_new0(WorkerEntry, 1);
	e->name = g_strdup(name);
	e->func = func;
	e->restartable = restartable;
	e->user_data = user_data;
	e->notify = notify;
	g_hash_table_replace(reg->entries, e->name, e);
}

void mesh_worker_registry_add(MeshWorkerRegistry *reg, const char *name, MeshWorkerRunFunc func,
			      gpointer user_data, GDestroyNotify notify)
{
	g_return_if_fail(reg && name && func);
	registry_add(reg, name, func, FALSE, user_data, notify);
}

void mesh_worker_registry_add_restartable(MeshWorkerRegistry *reg, const char *name,
					  MeshWorkerRunFunc func, gpointer user_data,
					  GDestroyNotify notify)
{
	g_return_if_fail(reg && name && func);
	registry_add(reg, name, func, TRUE, user_data, notify);
}

static WorkerEntry *registry_lookup(MeshWorkerRegistry *reg, const char *name, GError **error)
{
	WorkerEntry *e = name ? g_hash_table_lookup(reg->entries, name) : NULL;
	if (!e)
		g_set_error(error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_FAILED,
			    "unsupported worker %s", name ? name : "(no name)");
	return e;
}

gboolean mesh_worker_registry_check(MeshWorkerRegistry *reg, const char *name, GError **error)
{
	g_return_val_if_fail(reg && name, FALSE);
	g_return_val_if_fail(error == NULL || *error == NULL, FALSE);
	return registry_lookup(reg, name, error) != NULL;
}

void mesh_worker_registry_free(MeshWorkerRegistry *reg)
{
	if (!reg)
		return;
	g_hash_table_destroy(reg->entries);
	g_free(reg);
}

/* Events. */

/* Upstream's RemoteError from a message: as mesh_rpc_fail(), split at ": ". */
static MeshWorker__WorkerRemoteError *remote_error_new(const char *message)
{
	char **chain = g_strsplit(message ? message : "", ": ", -1);
	MeshWorker__WorkerErrorChain *c = g_malloc(sizeof(*c));
	mesh_worker__worker_error_chain__init(c);
	c->n_messages = g_strv_length(chain);
	c->messages = g_malloc_n(MAX(c->n_messages, 1), sizeof(char *));
	for (size_t i = 0; i < c->n_messages; i++)
		c->messages[i] = g_strdup(chain[i]);
	g_strfreev(chain);
	MeshWorker__WorkerRemoteError *e = g_malloc(sizeof(*e));
	mesh_worker__worker_remote_error__init(e);
	e->error = c;
	return e;
}

static MeshWorker__WorkerEvent *event_new(MeshWorker__WorkerEvent__EventCase which,
					  const char *message)
{
	MeshWorker__WorkerEvent *ev = g_malloc(sizeof(*ev));
	mesh_worker__worker_event__init(ev);
	ev->event_case = which;
	if (which == MESH_WORKER__WORKER_EVENT__EVENT_STARTED) {
		ev->started = g_malloc(sizeof(*ev->started));
		mesh_worker__worker_started__init(ev->started);
	} else if (which == MESH_WORKER__WORKER_EVENT__EVENT_STOPPED) {
		ev->stopped = g_malloc(sizeof(*ev->stopped));
		mesh_worker__worker_stopped__init(ev->stopped);
	} else if (which == MESH_WORKER__WORKER_EVENT__EVENT_RESTART_FAILED) {
		ev->restart_failed = remote_error_new(message);
	} else {
		ev->failed = remote_error_new(message);
	}
	return ev;
}

static void send_event(MeshSender *events, MeshWorker__WorkerEvent__EventCase which,
		       const char *message)
{
	if (events)
		mesh_sender_send(events, &event_new(which, message)->base);
}

static char *remote_error_text(const MeshWorker__WorkerRemoteError *e)
{
	if (!e || !e->error || e->error->n_messages == 0)
		return g_strdup("no error information");
	GString *s = g_string_new(NULL);
	for (size_t i = 0; i < e->error->n_messages; i++) {
		if (i)
			g_string_append(s, ": ");
		g_string_append(s, e->error->messages[i] ? e->error->messages[i] : "");
	}
	return g_string_free(s, FALSE);
}

/* The worker's side. */

struct MeshWorkerContext {
	char *name;
	MeshReceiver *rpc;
	gboolean stop;
	gboolean restartable;
	gboolean restarted;                /* this instance began from a state */
	MeshOneshotSender *restart_reply;  /* WorkerRestartResult: a restart asked for */
	MeshWorkerInspectFunc inspect;
	gpointer inspect_data;
	gint64 started_us;                 /* monotonic */
};

/* Every worker of this process, for the host's inspect (worker_inspect_all()). */
static GMutex running_lock;
static GList *running; /* MeshWorkerContext * */

static void running_add(MeshWorkerContext *ctx)
{
	ctx->started_us = g_get_monotonic_time();
	g_mutex_lock(&running_lock);
	running = g_list_prepend(running, ctx);
	g_mutex_unlock(&running_lock);
}

static void running_remove(MeshWorkerContext *ctx)
{
	g_mutex_lock(&running_lock);
	running = g_list_remove(running, ctx);
	g_mutex_unlock(&running_lock);
}

char *worker_inspect_all(void)
{
	GString *out = g_string_new("[");
	g_mutex_lock(&running_lock);
	gint64 now = g_get_monotonic_time();
	for (GList *i = running; i; i = i->next) {
		MeshWorkerContext *ctx = i->data;
		g_string_append(out, i == running ? "{\"name\":" : ",{\"name\":");
		process_json_string(out, ctx->name);
		g_string_append_printf(out, ",\"restarted\":%s,\"uptime_ms\":%" G_GINT64_FORMAT "}",
				       ctx->restarted ? "true" : "false",
				       (now - ctx->started_us) / 1000);
	}
	g_mutex_unlock(&running_lock);
	g_string_append(out, "]");
	return g_string_free(out, FALSE);
}

static void restart_reply_send(MeshOneshotSender *reply, MeshPort *state, const char *error)
{
	MeshWorker__WorkerRestartResult *r = g_malloc(sizeof(*r));
	mesh_worker__worker_restart_result__init(r);
	if (state) {
		r->result_case = MESH_WORKER__WORKER_RESTART_RESULT__RESULT_OK;
		r->ok = mesh_port_into_field(state);
	} else {
		r->result_case = MESH_WORKER__WORKER_RESTART_RESULT__RESULT_ERR;
		r->err = remote_error_new(error);
	}
	mesh_oneshot_send(reply, &r->base);
}

static char *context_inspect(MeshWorkerContext *ctx)
{
	GString *out = g_string_new("{\"name\":");
	process_json_string(out, ctx->name);
	/* mesh_host_get_pid(): in a sandbox's PID namespace getpid() is 1. */
	g_string_append_printf(out, ",\"pid\":%ld,\"restarted\":%s,\"worker\":",
			       PROCESS_PID_VALUE(mesh_host_get_pid()),
			       ctx->restarted ? "true" : "false");
	char *own = ctx->inspect ? ctx->inspect(ctx, ctx->inspect_data) : NULL;
	g_string_append(out, own ? own : "null");
	g_free(own);
	g_string_append(out, "}");
	return g_string_free(out, FALSE);
}

/* One request from the handle, on the worker's thread. */
static void context_handle(MeshWorkerContext *ctx, MeshWorker__WorkerRpc *rpc)
{
	MeshPort *p;

	switch (rpc->rpc_case) {
	case MESH_WORKER__WORKER_RPC__RPC_STOP:
		ctx->stop = TRUE;
		break;
	case MESH_WORKER__WORKER_RPC__RPC_RESTART:
		p = mesh_port_steal_from_field(rpc->restart->reply);
		if (!p)
			break;
		MeshOneshotSender *reply =
			mesh_oneshot_sender_from_port(p, &mesh_worker__worker_restart_result__descriptor);
		if (!ctx->restartable) {
			char *why = g_strdup_printf("worker %s does not support restart", ctx->name);
			restart_reply_send(reply, NULL, why);
			g_free(why);
		} else if (ctx->restart_reply) {
			restart_reply_send(reply, NULL, "a restart of this worker is under way");
		} else {
			/* The worker hands its state over, or refuses, then. */
			ctx->restart_reply = reply;
			ctx->stop = TRUE;
		}
		break;
	case MESH_WORKER__WORKER_RPC__RPC_INSPECT:
		p = mesh_port_steal_from_field(rpc->inspect->reply);
		if (p) {
			MeshWorker__WorkerInspectReply *ir = g_malloc(sizeof(*ir));
			mesh_worker__worker_inspect_reply__init(ir);
			ir->json = context_inspect(ctx);
			mesh_oneshot_send(mesh_oneshot_sender_from_port(
						  p, &mesh_worker__worker_inspect_reply__descriptor),
					  &ir->base);
		}
		break;
	default:
		debug_log(LOG_FIELDS("MESH_WORKER", ctx->name),
			  "worker %s: ignoring an unknown rpc", ctx->name);
		break;
	}
}

gboolean mesh_worker_context_wait_stop(MeshWorkerContext *ctx, gint64 timeout_us)
{
	gint64 deadline = timeout_us < 0 ? -1 : g_get_monotonic_time() + timeout_us;

	g_return_val_if_fail(ctx, TRUE);
	g_return_val_if_fail(timeout_us >= -1, FALSE);
	while (!ctx->stop) {
		gint64 wait = deadline < 0 ? -1 : MAX(deadline - g_get_monotonic_time(), 0);
		ProtobufCMessage *msg = NULL;
		GError *error = NULL;
		if (!mesh_receiver_recv(ctx->rpc, wait, &msg, &error)) {
			if (g_error_matches(error, MESH_ERROR, MESH_ERROR_EMPTY) ||
			    g_error_matches(error, MESH_ERROR, MESH_ERROR_TIMED_OUT)) {
				g_error_free(error);
				return FALSE;
			}
			if (g_error_matches(error, MESH_ERROR, MESH_ERROR_CORRUPTION)) {
				debug_log(LOG_FIELDS("MESH_WORKER", ctx->name),
					  "worker %s: a corrupt rpc: %s", ctx->name, error->message);
				g_error_free(error);
				continue;
			}
			/* Closed (every handle freed) or failed (the parent is gone). */
			debug_log(LOG_FIELDS("MESH_WORKER", ctx->name),
				  "worker %s: rpc channel ended: %s", ctx->name, error->message);
			g_error_free(error);
			ctx->stop = TRUE;
			break;
		}
		context_handle(ctx, (MeshWorker__WorkerRpc *)msg);
		mesh_payload_message_free(msg);
	}
	return TRUE;
}

gboolean mesh_worker_context_should_stop(MeshWorkerContext *ctx)
{
	return mesh_worker_context_wait_stop(ctx, 0);
}

#ifndef G_OS_WIN32
int mesh_worker_context_get_fd(MeshWorkerContext *ctx)
{
	g_return_val_if_fail(ctx, -1);
	return mesh_receiver_get_fd(ctx->rpc);
}
#else
MeshOsHandle mesh_worker_context_get_handle(MeshWorkerContext *ctx)
{
	g_return_val_if_fail(ctx, NULL);
	return mesh_receiver_get_handle(ctx->rpc);
}
#endif

const char *mesh_worker_context_get_name(MeshWorkerContext *ctx)
{
	g_return_val_if_fail(ctx, NULL);
	return ctx->name;
}

gboolean mesh_worker_context_is_restart(MeshWorkerContext *ctx)
{
	g_return_val_if_fail(ctx, FALSE);
	return ctx->restarted;
}

gboolean mesh_worker_context_restart_requested(MeshWorkerContext *ctx)
{
	g_return_val_if_fail(ctx, FALSE);
	return ctx->restart_reply != NULL;
}

gboolean mesh_worker_context_send_state(MeshWorkerContext *ctx, MeshMessage *state)
{
	if (!ctx || !ctx->restart_reply) {
		mesh_message_free(state); /* taken in all cases */
		g_return_val_if_fail(ctx, FALSE);
		g_return_val_if_fail(ctx->restart_reply, FALSE);
	}
	MeshOneshotSender *tx;
	MeshOneshotReceiver *rx;
	mesh_oneshot_new(NULL, &tx, &rx);
	mesh_oneshot_send_message(tx, state ? state : mesh_message_new(NULL, 0));
	restart_reply_send(ctx->restart_reply, mesh_oneshot_receiver_into_port(rx), NULL);
	ctx->restart_reply = NULL;
	return TRUE;
}

void mesh_worker_context_refuse_restart(MeshWorkerContext *ctx, const char *reason)
{
	g_return_if_fail(ctx && reason);
	g_return_if_fail(ctx->restart_reply);
	restart_reply_send(ctx->restart_reply, NULL, reason);
	ctx->restart_reply = NULL;
	ctx->stop = FALSE; /* it goes on */
}

void mesh_worker_context_set_inspect(MeshWorkerContext *ctx, MeshWorkerInspectFunc func,
				     gpointer user_data)
{
	g_return_if_fail(ctx);
	ctx->inspect = func;
	ctx->inspect_data = user_data;
}

/* The runner. */

typedef struct {
	WorkerEntry *entry; /* borrowed from the registry; NULL for a local worker */
	MeshWorkerLocalFunc local;
	gpointer local_params;
	GDestroyNotify local_params_free;
	MeshWorkerContext ctx;
	MeshOneshotReceiver *parameters; /* New */
	MeshSender *old_rpc;             /* Restart: the old worker's requests */
	MeshPort *old_events;            /* Restart: the old worker's events (a receiver) */
	MeshSender *events;
	GThread *thread;
	gint done;
} WorkerRun;

static void worker_run_free(WorkerRun *w)
{
	mesh_oneshot_receiver_free(w->parameters);
	mesh_sender_free(w->old_rpc);
	mesh_port_close(w->old_events);
	mesh_sender_free(w->events);
	mesh_receiver_free(w->ctx.rpc);
	mesh_oneshot_sender_free(w->ctx.restart_reply);
	if (w->local_params_free)
		w->local_params_free(w->local_params);
	g_free(w->ctx.name);
	g_free(w);
}

/*
 * A restart that cannot happen (upstream WorkerLaunchRequest::fail): say
 * RestartFailed on the new events, then bridge the new channels onto the
 * old worker's, so the handle talks to it again. Consumes everything.
 */
static void restart_revert(MeshSender *events, MeshPort *rpc, MeshPort *old_rpc,
			   MeshPort *old_events, const char *message)
{
	send_event(events, MESH_WORKER__WORKER_EVENT__EVENT_RESTART_FAILED, message);
	mesh_port_bridge(mesh_sender_into_port(events), old_events);
	mesh_port_bridge(rpc, old_rpc);
}

/* Asks the old worker for its state (upstream: send.call_failable(WorkerRpc::Restart)). */
static gboolean restart_fetch_state(WorkerRun *w, MeshMessage **ret_state, GError **error)
{
	MeshOneshotSender *tx;
	MeshOneshotReceiver *rx;
	ProtobufCMessage *msg = NULL;

	mesh_oneshot_new(&mesh_worker__worker_restart_result__descriptor, &tx, &rx);
	MeshWorker__WorkerRpc *rpc = g_malloc(sizeof(*rpc));
	mesh_worker__worker_rpc__init(rpc);
	rpc->rpc_case = MESH_WORKER__WORKER_RPC__RPC_RESTART;
	rpc->restart = g_malloc(sizeof(*rpc->restart));
	mesh_worker__worker_restart__init(rpc->restart);
	rpc->restart->reply = mesh_port_into_field(mesh_oneshot_sender_into_port(tx));
	mesh_sender_send(w->old_rpc, &rpc->base);
	/* As upstream, for as long as the old worker takes; its end is an answer too. */
	if (!mesh_oneshot_recv(rx, -1, &msg, error)) {
		g_prefix_error(error, "worker %s: asking the running worker for its state: ",
			       w->ctx.name);
		return FALSE;
	}
	MeshWorker__WorkerRestartResult *r = (MeshWorker__WorkerRestartResult *)msg;
	MeshPort *state = r->result_case == MESH_WORKER__WORKER_RESTART_RESULT__RESULT_OK
				  ? mesh_port_steal_from_field(r->ok)
				  : NULL;
	if (!state) {
		char *text = r->result_case == MESH_WORKER__WORKER_RESTART_RESULT__RESULT_ERR
				     ? remote_error_text(r->err)
				     : g_strdup("no state in the answer");
		g_set_error(error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_FAILED, "%s", text);
		g_free(text);
		mesh_payload_message_free(msg);
		return FALSE;
	}
	mesh_payload_message_free(msg);
	MeshOneshotReceiver *sr = mesh_oneshot_receiver_from_port(state, NULL);
	if (!mesh_oneshot_recv_message(sr, -1, ret_state, error)) {
		g_prefix_error(error, "worker %s: receiving the state: ", w->ctx.name);
		return FALSE;
	}
	return TRUE;
}

static gpointer worker_thread(gpointer data)
{
	WorkerRun *w = data;
	MeshMessage *params = NULL;
	GError *error = NULL;
	gboolean ready = TRUE;

	if (w->old_rpc) {
		if (!restart_fetch_state(w, &params, &error)) {
			debug_log(LOG_FIELDS("MESH_WORKER", w->ctx.name), "%s", error->message);
			MeshSender *events = w->events;
			MeshPort *rpc = mesh_receiver_into_port(w->ctx.rpc);
			MeshPort *old_rpc = mesh_sender_into_port(w->old_rpc);
			MeshPort *old_events = w->old_events;
			w->events = NULL;
			w->ctx.rpc = NULL;
			w->old_rpc = NULL;
			w->old_events = NULL;
			restart_revert(events, rpc, old_rpc, old_events, error->message);
			g_clear_error(&error);
			ready = FALSE;
		} else {
			/* The old instance is done with: its last events go nowhere. */
			w->ctx.restarted = TRUE;
			mesh_sender_free(w->old_rpc);
			w->old_rpc = NULL;
			mesh_port_close(w->old_events);
			w->old_events = NULL;
		}
	} else if (w->parameters) {
		MeshOneshotReceiver *pr = w->parameters;
		w->parameters = NULL;
		if (!mesh_oneshot_recv_message(pr, -1, &params, &error)) {
			g_prefix_error(&error, "worker %s: receiving the parameters: ", w->ctx.name);
			send_event(w->events, MESH_WORKER__WORKER_EVENT__EVENT_FAILED, error->message);
			g_clear_error(&error);
			ready = FALSE;
		}
	}
	if (ready) {
		gboolean ok;
		/* Upstream's local workers have no Started: the launch returned already. */
		/* Listed before STARTED, unlisted before the last event: inspect agrees. */
		running_add(&w->ctx);
		if (!w->local)
			send_event(w->events, MESH_WORKER__WORKER_EVENT__EVENT_STARTED, NULL);
		if (w->local)
			ok = w->local(w->local_params, &w->ctx, &error);
		else
			ok = w->entry->func(params, &w->ctx, w->entry->user_data, &error);
		running_remove(&w->ctx);
		if (w->local_params_free) {
			/* Before the last event: a joiner may count on it. */
			w->local_params_free(w->local_params);
			w->local_params_free = NULL;
		}
		if (w->ctx.restart_reply) {
			char *why = g_strdup_printf("worker %s stopped without handing over its state",
						    w->ctx.name);
			restart_reply_send(w->ctx.restart_reply, NULL, why);
			w->ctx.restart_reply = NULL;
			g_free(why);
		}
		if (ok) {
			send_event(w->events, MESH_WORKER__WORKER_EVENT__EVENT_STOPPED, NULL);
		} else {
			send_event(w->events, MESH_WORKER__WORKER_EVENT__EVENT_FAILED,
				   error ? error->message : "the worker failed without an error");
			g_clear_error(&error);
		}
	}
	/* The events' end: the handle's stream ends after the last event. */
	mesh_sender_free(w->events);
	w->events = NULL;
	mesh_receiver_free(w->ctx.rpc);
	w->ctx.rpc = NULL;
	if (w->local) {
		/* Nobody joins a local worker: it frees itself. */
		worker_run_free(w);
		return NULL;
	}
	g_atomic_int_set(&w->done, 1);
	return NULL;
}

static void reap(GPtrArray *runs, gboolean all)
{
	for (guint i = 0; i < runs->len;) {
		WorkerRun *w = runs->pdata[i];
		if (all || g_atomic_int_get(&w->done)) {
			g_thread_join(w->thread);
			worker_run_free(w);
			g_ptr_array_remove_index_fast(runs, i);
		} else {
			i++;
		}
	}
}

static void start_worker(MeshWorkerRegistry *reg, MeshWorker__WorkerHostLaunchRequest *req,
			 GPtrArray *runs)
{
	MeshWorker__WorkerLaunchRequest *r = req->request;
	GError *error = NULL;

	MeshPort *events_port = r ? mesh_port_steal_from_field(r->events) : NULL;
	if (!events_port) {
		debug_log(LOG_FIELDS("MESH_WORKER", req->name),
			  "worker runner: a launch request for %s without an event channel, dropped",
			  req->name);
		return;
	}
	MeshSender *events = mesh_sender_from_port(events_port, &mesh_worker__worker_event__descriptor);
	MeshPort *rpc_port = mesh_port_steal_from_field(r->rpc);
	MeshPort *params_port = NULL, *old_rpc = NULL, *old_events = NULL;
	MeshWorker__WorkerLaunchType *lt = r->launch_type;
	gboolean restart = lt && lt->type_case == MESH_WORKER__WORKER_LAUNCH_TYPE__TYPE_RESTART;
	if (lt && lt->type_case == MESH_WORKER__WORKER_LAUNCH_TYPE__TYPE_NEW_WORKER) {
		params_port = mesh_port_steal_from_field(lt->new_worker->parameters);
	} else if (restart) {
		old_rpc = mesh_port_steal_from_field(lt->restart->send);
		old_events = mesh_port_steal_from_field(lt->restart->events);
	}

	WorkerEntry *entry = registry_lookup(reg, req->name, &error);
	if (entry && !params_port && !restart)
		g_set_error(&error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_FAILED,
			    "worker %s: malformed launch request", req->name);
	else if (entry && restart && !entry->restartable)
		g_set_error(&error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_FAILED,
			    "worker %s does not support restart", req->name);
	if (!rpc_port || (restart && (!old_rpc || !old_events))) {
		/* Nothing to answer on, or nothing to revert to: a plain failure. */
		restart = FALSE;
		if (!error)
			g_set_error(&error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_FAILED,
				    "worker %s: malformed launch request", req->name);
	}

	WorkerRun *w = NULL;
	if (!error) {
		w = g_new0(WorkerRun, 1);
		w->entry = entry;
		w->ctx.name = g_strdup(req->name);
		w->ctx.restartable = entry->restartable;
		w->ctx.rpc = mesh_receiver_from_port(rpc_port, &mesh_worker__worker_rpc__descriptor);
		if (params_port)
			w->parameters = mesh_oneshot_receiver_from_port(params_port, NULL);
		if (restart) {
			w->old_rpc = mesh_sender_from_port(old_rpc, &mesh_worker__worker_rpc__descriptor);
			w->old_events = old_events;
		}
		w->events = events;
		rpc_port = params_port = old_rpc = old_events = NULL;
		events = NULL;
		char *thread_name = g_strdup_printf("worker-%s", req->name);
		w->thread = g_thread_try_new(thread_name, worker_thread, w, &error);
		g_free(thread_name);
		if (w->thread) {
			g_ptr_array_add(runs, w);
			return;
		}
		g_prefix_error(&error, "worker %s: ", req->name);
		/* Take the ends back for the answer. */
		events = w->events;
		w->events = NULL;
		rpc_port = mesh_receiver_into_port(w->ctx.rpc);
		w->ctx.rpc = NULL;
		if (w->old_rpc) {
			old_rpc = mesh_sender_into_port(w->old_rpc);
			old_events = w->old_events;
			w->old_rpc = NULL;
			w->old_events = NULL;
		}
		worker_run_free(w);
	}
	debug_log(NULL, "worker runner: %s", error->message);
	if (restart && rpc_port && old_rpc && old_events) {
		restart_revert(events, rpc_port, old_rpc, old_events, error->message);
	} else {
		send_event(events, MESH_WORKER__WORKER_EVENT__EVENT_FAILED, error->message);
		mesh_sender_free(events);
		mesh_port_close(rpc_port);
		mesh_port_close(old_rpc);
		mesh_port_close(old_events);
	}
	g_error_free(error);
	mesh_port_close(params_port);
}

gboolean mesh_worker_host_run(MeshPort *port, MeshWorkerRegistry *reg, GError **error)
{
	GError *local = NULL;

	if (!reg || (error && *error)) {
		mesh_port_close(port); /* taken in all cases */
		g_return_val_if_fail(reg, FALSE);
		g_return_val_if_fail(error == NULL || *error == NULL, FALSE);
	}
	g_return_val_if_fail(port, FALSE);
	MeshReceiver *launch =
		mesh_receiver_from_port(port, &mesh_worker__worker_host_launch_request__descriptor);
	GPtrArray *runs = g_ptr_array_new();
	for (;;) {
		ProtobufCMessage *msg = NULL;
		if (!mesh_receiver_recv(launch, -1, &msg, &local)) {
			if (g_error_matches(local, MESH_ERROR, MESH_ERROR_CORRUPTION)) {
				debug_log(NULL, "worker runner: a corrupt launch request: %s",
					  local->message);
				g_clear_error(&local);
				continue;
			}
			break;
		}
		reap(runs, FALSE);
		start_worker(reg, (MeshWorker__WorkerHostLaunchRequest *)msg, runs);
		mesh_payload_message_free(msg);
	}
	mesh_receiver_free(launch);
	/* Every host is gone; the workers finish on their own (or on stop). */
	reap(runs, TRUE);
	g_ptr_array_free(runs, TRUE);
	if (g_error_matches(local, MESH_ERROR, MESH_ERROR_CLOSED)) {
		g_error_free(local);
		return TRUE;
	}
	g_propagate_prefixed_error(error, local, "worker runner: ");
	return FALSE;
}

/* The parent's side. */

struct MeshWorkerHost {
	MeshSender *launch;
};

struct MeshWorkerHandle {
	char *name;
	MeshSender *rpc;
	MeshReceiver *events;
	gboolean ended;
};

MeshWorkerHost *mesh_worker_host_new(MeshPort **ret_runner_port)
{
	MeshReceiver *r;
	g_return_val_if_fail(ret_runner_port, NULL);
	MeshWorkerHost *host = g_new0(MeshWorkerHost, 1);
	mesh_channel_new(&mesh_worker__worker_host_launch_request__descriptor, &host->launch, &r);
	*ret_runner_port = mesh_receiver_into_port(r);
	return host;
}

MeshWorkerHost *mesh_worker_host_clone(MeshWorkerHost *host)
{
	g_return_val_if_fail(host, NULL);
	MeshWorkerHost *h = g_new0(MeshWorkerHost, 1);
	h->launch = mesh_sender_clone(host->launch);
	return h;
}

void mesh_worker_host_free(MeshWorkerHost *host)
{
	if (!host)
		return;
	mesh_sender_free(host->launch);
	g_free(host);
}

/*
 * Sends @host a launch request of type @lt (taken) with fresh channels,
 * whose ends for the parent come back in @ret_rpc and @ret_events.
 */
static void host_send_launch(MeshWorkerHost *host, const char *name, MeshWorker__WorkerLaunchType *lt,
			     MeshSender **ret_rpc, MeshReceiver **ret_events)
{
	MeshSender *events_tx;
	MeshReceiver *rpc_rx;
	mesh_channel_new(&mesh_worker__worker_rpc__descriptor, ret_rpc, &rpc_rx);
	mesh_channel_new(&mesh_worker__worker_event__descriptor, &events_tx, ret_events);

	MeshWorker__WorkerHostLaunchRequest *req = g_malloc(sizeof(*req));
	mesh_worker__worker_host_launch_request__init(req);
	req->name = g_strdup(name);
	req->request = g_malloc(sizeof(*req->request));
	mesh_worker__worker_launch_request__init(req->request);
	req->request->rpc = mesh_port_into_field(mesh_receiver_into_port(rpc_rx));
	req->request->events = mesh_port_into_field(mesh_sender_into_port(events_tx));
	req->request->launch_type = lt;
	mesh_sender_send(host->launch, &req->base);
}

MeshWorkerHandle *mesh_worker_host_start(MeshWorkerHost *host, const char *name,
					 MeshMessage *parameters)
{
	if (!host || !name) {
		mesh_message_free(parameters); /* taken in all cases */
		g_return_val_if_fail(host && name, NULL);
	}

	MeshOneshotSender *params_tx;
	MeshOneshotReceiver *params_rx;
	mesh_oneshot_new(NULL, &params_tx, &params_rx);
	mesh_oneshot_send_message(params_tx, parameters ? parameters : mesh_message_new(NULL, 0));
	MeshWorker__WorkerLaunchType *lt = g_malloc(sizeof(*lt));
	mesh_worker__worker_launch_type__init(lt);
	lt->type_case = MESH_WORKER__WORKER_LAUNCH_TYPE__TYPE_NEW_WORKER;
	lt->new_worker = g_malloc(sizeof(*lt->new_worker));
	mesh_worker__worker_launch_new__init(lt->new_worker);
	lt->new_worker->parameters = mesh_port_into_field(mesh_oneshot_receiver_into_port(params_rx));

	MeshWorkerHandle *handle = g_new0(MeshWorkerHandle, 1);
	handle->name = g_strdup(name);
	host_send_launch(host, name, lt, &handle->rpc, &handle->events);
	return handle;
}

void mesh_worker_handle_restart(MeshWorkerHandle *handle, MeshWorkerHost *host)
{
	g_return_if_fail(handle && host);
	MeshWorker__WorkerLaunchType *lt = g_malloc(sizeof(*lt));
	mesh_worker__worker_launch_type__init(lt);
	lt->type_case = MESH_WORKER__WORKER_LAUNCH_TYPE__TYPE_RESTART;
	lt->restart = g_malloc(sizeof(*lt->restart));
	mesh_worker__worker_launch_restart__init(lt->restart);
	lt->restart->send = mesh_port_into_field(mesh_sender_into_port(handle->rpc));
	lt->restart->events = mesh_port_into_field(mesh_receiver_into_port(handle->events));
	/* The handle now talks to whichever instance answers on the new channels. */
	host_send_launch(host, handle->name, lt, &handle->rpc, &handle->events);
	handle->ended = FALSE;
}

char *mesh_worker_handle_inspect(MeshWorkerHandle *handle, gint64 timeout_us, GError **error)
{
	MeshOneshotSender *tx;
	MeshOneshotReceiver *rx;
	ProtobufCMessage *msg = NULL;

	g_return_val_if_fail(handle, NULL);
	g_return_val_if_fail(error == NULL || *error == NULL, NULL);
	if (!timeout_check(timeout_us, G_STRFUNC, error))
		return NULL;
	mesh_oneshot_new(&mesh_worker__worker_inspect_reply__descriptor, &tx, &rx);
	MeshWorker__WorkerRpc *rpc = g_malloc(sizeof(*rpc));
	mesh_worker__worker_rpc__init(rpc);
	rpc->rpc_case = MESH_WORKER__WORKER_RPC__RPC_INSPECT;
	rpc->inspect = g_malloc(sizeof(*rpc->inspect));
	mesh_worker__worker_inspect__init(rpc->inspect);
	rpc->inspect->reply = mesh_port_into_field(mesh_oneshot_sender_into_port(tx));
	mesh_sender_send(handle->rpc, &rpc->base);
	GError *local = NULL;
	if (!mesh_oneshot_recv(rx, timeout_us, &msg, &local)) {
		if (g_error_matches(local, MESH_ERROR, MESH_ERROR_TIMED_OUT) ||
		    g_error_matches(local, MESH_ERROR, MESH_ERROR_EMPTY))
			mesh_oneshot_receiver_free(rx); /* not consumed */
		g_propagate_prefixed_error(error, local, "inspecting worker %s: ", handle->name);
		return NULL;
	}
	char *json = g_strdup(((MeshWorker__WorkerInspectReply *)msg)->json);
	mesh_payload_message_free(msg);
	return json;
}

MeshWorkerHandle *mesh_worker_launch_local(const char *name, MeshWorkerLocalFunc func,
					   gpointer parameters, GDestroyNotify parameters_free,
					   GError **error)
{
	if (!name || !func || (error && *error)) {
		if (parameters_free) /* taken in all cases */
			parameters_free(parameters);
		g_return_val_if_fail(name && func, NULL);
		g_return_val_if_fail(error == NULL || *error == NULL, NULL);
	}
	MeshWorkerHandle *handle = g_new0(MeshWorkerHandle, 1);
	MeshReceiver *rpc_rx;
	MeshSender *events_tx;
	handle->name = g_strdup(name);
	mesh_channel_new(&mesh_worker__worker_rpc__descriptor, &handle->rpc, &rpc_rx);
	mesh_channel_new(&mesh_worker__worker_event__descriptor, &events_tx, &handle->events);

	WorkerRun *w = g_new0(WorkerRun, 1);
	w->local = func;
	w->local_params = parameters;
	w->local_params_free = parameters_free;
	w->ctx.name = g_strdup(name);
	w->ctx.rpc = rpc_rx;
	w->events = events_tx;
	char *thread_name = g_strdup_printf("worker-%s", name);
	GThread *thread = g_thread_try_new(thread_name, worker_thread, w, error);
	g_free(thread_name);
	if (!thread) {
		g_prefix_error(error, "launching worker %s: ", name);
		worker_run_free(w);
		mesh_worker_handle_free(handle);
		return NULL;
	}
	g_thread_unref(thread); /* it frees itself */
	return handle;
}

MeshWorkerHandle *mesh_worker_host_launch(MeshWorkerHost *host, const char *name,
					  MeshMessage *parameters, gint64 timeout_us,
					  GError **error)
{
	if (!host || !name || (error && *error)) {
		mesh_message_free(parameters); /* taken in all cases */
		g_return_val_if_fail(host && name, NULL);
		g_return_val_if_fail(error == NULL || *error == NULL, NULL);
	}
	if (!timeout_check(timeout_us, G_STRFUNC, error)) {
		mesh_message_free(parameters); /* taken in all cases */
		return NULL;
	}
	MeshWorkerHandle *handle = mesh_worker_host_start(host, name, parameters);
	MeshWorkerEvent ev;
	char *message = NULL;
	if (!mesh_worker_handle_next_event(handle, timeout_us, &ev, &message, error)) {
		g_prefix_error(error, "launching worker %s: ", name);
		mesh_worker_handle_free(handle);
		return NULL;
	}
	switch (ev) {
	case MESH_WORKER_EVENT_STARTED:
		return handle;
	case MESH_WORKER_EVENT_FAILED:
		g_set_error_literal(error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_FAILED, message);
		break;
	case MESH_WORKER_EVENT_END:
		g_set_error(error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_FAILED,
			    "launching worker %s: the request was dropped (no runner)", name);
		break;
	default:
		g_set_error(error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_FAILED,
			    "launching worker %s: received invalid worker event", name);
		break;
	}
	g_free(message);
	mesh_worker_handle_free(handle);
	return NULL;
}

const char *mesh_worker_handle_get_name(MeshWorkerHandle *handle)
{
	g_return_val_if_fail(handle, NULL);
	return handle->name;
}

void mesh_worker_handle_stop(MeshWorkerHandle *handle)
{
	g_return_if_fail(handle);
	MeshWorker__WorkerRpc *rpc = g_malloc(sizeof(*rpc));
	mesh_worker__worker_rpc__init(rpc);
	rpc->rpc_case = MESH_WORKER__WORKER_RPC__RPC_STOP;
	rpc->stop = g_malloc(sizeof(*rpc->stop));
	mesh_worker__worker_stop__init(rpc->stop);
	mesh_sender_send(handle->rpc, &rpc->base);
}

gboolean mesh_worker_handle_next_event(MeshWorkerHandle *handle, gint64 timeout_us,
				       MeshWorkerEvent *ret_event, char **ret_error_message,
				       GError **error)
{
	gint64 deadline = timeout_us < 0 ? -1 : g_get_monotonic_time() + timeout_us;

	g_return_val_if_fail(handle && ret_event, FALSE);
	g_return_val_if_fail(error == NULL || *error == NULL, FALSE);
	if (ret_error_message)
		*ret_error_message = NULL;
	if (!timeout_check(timeout_us, G_STRFUNC, error))
		return FALSE;
	while (!handle->ended) {
		gint64 wait = deadline < 0 ? -1 : MAX(deadline - g_get_monotonic_time(), 0);
		ProtobufCMessage *msg = NULL;
		GError *local = NULL;
		if (!mesh_receiver_recv(handle->events, wait, &msg, &local)) {
			if (g_error_matches(local, MESH_ERROR, MESH_ERROR_EMPTY) ||
			    g_error_matches(local, MESH_ERROR, MESH_ERROR_TIMED_OUT)) {
				g_propagate_error(error, local);
				return FALSE;
			}
			handle->ended = TRUE;
			if (g_error_matches(local, MESH_ERROR, MESH_ERROR_CLOSED)) {
				g_error_free(local);
				break;
			}
			/* A channel error is the worker's failure; the stream then ends. */
			*ret_event = MESH_WORKER_EVENT_FAILED;
			if (ret_error_message)
				*ret_error_message = g_strdup(local->message);
			g_error_free(local);
			return TRUE;
		}
		MeshWorker__WorkerEvent *ev = (MeshWorker__WorkerEvent *)msg;
		gboolean known = TRUE;
		switch (ev->event_case) {
		case MESH_WORKER__WORKER_EVENT__EVENT_STARTED:
			*ret_event = MESH_WORKER_EVENT_STARTED;
			break;
		case MESH_WORKER__WORKER_EVENT__EVENT_STOPPED:
			*ret_event = MESH_WORKER_EVENT_STOPPED;
			break;
		case MESH_WORKER__WORKER_EVENT__EVENT_FAILED:
			*ret_event = MESH_WORKER_EVENT_FAILED;
			if (ret_error_message)
				*ret_error_message = remote_error_text(ev->failed);
			break;
		case MESH_WORKER__WORKER_EVENT__EVENT_RESTART_FAILED:
			*ret_event = MESH_WORKER_EVENT_RESTART_FAILED;
			if (ret_error_message)
				*ret_error_message = remote_error_text(ev->restart_failed);
			break;
		default:
			known = FALSE; /* newer than us */
			break;
		}
		mesh_payload_message_free(msg);
		if (known)
			return TRUE;
	}
	*ret_event = MESH_WORKER_EVENT_END;
	return TRUE;
}

gboolean mesh_worker_handle_join(MeshWorkerHandle *handle, gint64 timeout_us, GError **error)
{
	gint64 deadline = timeout_us < 0 ? -1 : g_get_monotonic_time() + timeout_us;

	g_return_val_if_fail(handle, FALSE);
	g_return_val_if_fail(error == NULL || *error == NULL, FALSE);
	if (!timeout_check(timeout_us, G_STRFUNC, error))
		return FALSE;
	for (;;) {
		gint64 wait = deadline < 0 ? -1 : MAX(deadline - g_get_monotonic_time(), 0);
		MeshWorkerEvent ev;
		char *message = NULL;
		if (!mesh_worker_handle_next_event(handle, wait, &ev, &message, error))
			return FALSE;
		if (ev == MESH_WORKER_EVENT_STOPPED)
			return TRUE;
		if (ev == MESH_WORKER_EVENT_FAILED) {
			g_set_error_literal(error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_FAILED,
					    message);
			g_free(message);
			return FALSE;
		}
		if (ev == MESH_WORKER_EVENT_END) {
			g_set_error(error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_FAILED,
				    "worker %s disconnected", handle->name);
			return FALSE;
		}
	}
}

void mesh_worker_handle_free(MeshWorkerHandle *handle)
{
	if (!handle)
		return;
	mesh_sender_free(handle->rpc);
	mesh_receiver_free(handle->events);
	g_free(handle->name);
	g_free(handle);
}
