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
 */
#include <stdlib.h>

#include "process-private.h"
#include "worker.pb-c.h"

/* The registry. */

typedef struct {
	char *name;
	MeshWorkerRunFunc func;
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

void mesh_worker_registry_add(MeshWorkerRegistry *reg, const char *name, MeshWorkerRunFunc func,
			      gpointer user_data, GDestroyNotify notify)
{
	g_return_if_fail(reg && name && func);
	WorkerEntry *e = g_new0(WorkerEntry, 1);
	e->name = g_strdup(name);
	e->func = func;
	e->user_data = user_data;
	e->notify = notify;
	g_hash_table_replace(reg->entries, e->name, e);
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
	} else {
		/* As mesh_rpc_fail(): the message split at ": " is the chain. */
		char **chain = g_strsplit(message ? message : "", ": ", -1);
		MeshWorker__WorkerErrorChain *c = g_malloc(sizeof(*c));
		mesh_worker__worker_error_chain__init(c);
		c->n_messages = g_strv_length(chain);
		c->messages = g_malloc_n(MAX(c->n_messages, 1), sizeof(char *));
		for (size_t i = 0; i < c->n_messages; i++)
			c->messages[i] = g_strdup(chain[i]);
		g_strfreev(chain);
		ev->failed = g_malloc(sizeof(*ev->failed));
		mesh_worker__worker_remote_error__init(ev->failed);
		ev->failed->error = c;
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
};

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
		MeshWorker__WorkerRpc *rpc = (MeshWorker__WorkerRpc *)msg;
		if (rpc->rpc_case == MESH_WORKER__WORKER_RPC__RPC_STOP)
			ctx->stop = TRUE;
		else
			debug_log(LOG_FIELDS("MESH_WORKER", ctx->name),
				  "worker %s: ignoring an unsupported rpc", ctx->name);
		mesh_payload_message_free(msg);
	}
	return TRUE;
}

gboolean mesh_worker_context_should_stop(MeshWorkerContext *ctx)
{
	return mesh_worker_context_wait_stop(ctx, 0);
}

int mesh_worker_context_get_fd(MeshWorkerContext *ctx)
{
	g_return_val_if_fail(ctx, -1);
	return mesh_receiver_get_fd(ctx->rpc);
}

const char *mesh_worker_context_get_name(MeshWorkerContext *ctx)
{
	g_return_val_if_fail(ctx, NULL);
	return ctx->name;
}

/* The runner. */

typedef struct {
	WorkerEntry *entry; /* borrowed from the registry */
	MeshWorkerContext ctx;
	MeshOneshotReceiver *parameters;
	MeshSender *events;
	GThread *thread;
	gint done;
} WorkerRun;

static void worker_run_free(WorkerRun *w)
{
	mesh_oneshot_receiver_free(w->parameters);
	mesh_sender_free(w->events);
	mesh_receiver_free(w->ctx.rpc);
	g_free(w->ctx.name);
	g_free(w);
}

static gpointer worker_thread(gpointer data)
{
	WorkerRun *w = data;
	MeshMessage *params = NULL;
	GError *error = NULL;

	MeshOneshotReceiver *pr = w->parameters;
	w->parameters = NULL;
	if (!mesh_oneshot_recv_message(pr, -1, &params, &error)) {
		g_prefix_error(&error, "worker %s: receiving the parameters: ", w->ctx.name);
		send_event(w->events, MESH_WORKER__WORKER_EVENT__EVENT_FAILED, error->message);
		g_error_free(error);
	} else {
		send_event(w->events, MESH_WORKER__WORKER_EVENT__EVENT_STARTED, NULL);
		if (w->entry->func(params, &w->ctx, w->entry->user_data, &error)) {
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
	MeshPort *params_port = NULL;
	MeshWorker__WorkerLaunchType *lt = r->launch_type;
	if (lt && lt->type_case == MESH_WORKER__WORKER_LAUNCH_TYPE__TYPE_NEW_WORKER)
		params_port = mesh_port_steal_from_field(lt->new_worker->parameters);

	WorkerEntry *entry = registry_lookup(reg, req->name, &error);
	if (entry && (!lt || lt->type_case != MESH_WORKER__WORKER_LAUNCH_TYPE__TYPE_NEW_WORKER))
		g_set_error(&error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_FAILED,
			    "worker %s: restart is not supported", req->name);
	else if (entry && (!rpc_port || !params_port))
		g_set_error(&error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_FAILED,
			    "worker %s: malformed launch request", req->name);

	WorkerRun *w = NULL;
	if (!error) {
		w = g_new0(WorkerRun, 1);
		w->entry = entry;
		w->ctx.name = g_strdup(req->name);
		w->ctx.rpc = mesh_receiver_from_port(rpc_port, &mesh_worker__worker_rpc__descriptor);
		w->parameters = mesh_oneshot_receiver_from_port(params_port, NULL);
		w->events = events;
		rpc_port = params_port = NULL;
		events = NULL;
		char *thread_name = g_strdup_printf("worker-%s", req->name);
		w->thread = g_thread_try_new(thread_name, worker_thread, w, &error);
		g_free(thread_name);
		if (w->thread) {
			g_ptr_array_add(runs, w);
			return;
		}
		g_prefix_error(&error, "worker %s: ", req->name);
		events = w->events;
		w->events = NULL;
		worker_run_free(w);
	}
	debug_log(NULL, "worker runner: %s", error->message);
	send_event(events, MESH_WORKER__WORKER_EVENT__EVENT_FAILED, error->message);
	g_error_free(error);
	mesh_sender_free(events);
	mesh_port_close(rpc_port);
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

MeshWorkerHandle *mesh_worker_host_start(MeshWorkerHost *host, const char *name,
					 MeshMessage *parameters)
{
	if (!host || !name) {
		mesh_message_free(parameters); /* taken in all cases */
		g_return_val_if_fail(host && name, NULL);
	}

	MeshSender *rpc_tx, *events_tx;
	MeshReceiver *rpc_rx, *events_rx;
	MeshOneshotSender *params_tx;
	MeshOneshotReceiver *params_rx;
	mesh_channel_new(&mesh_worker__worker_rpc__descriptor, &rpc_tx, &rpc_rx);
	mesh_channel_new(&mesh_worker__worker_event__descriptor, &events_tx, &events_rx);
	mesh_oneshot_new(NULL, &params_tx, &params_rx);
	mesh_oneshot_send_message(params_tx, parameters ? parameters : mesh_message_new(NULL, 0));

	MeshWorker__WorkerHostLaunchRequest *req = g_malloc(sizeof(*req));
	mesh_worker__worker_host_launch_request__init(req);
	req->name = g_strdup(name);
	req->request = g_malloc(sizeof(*req->request));
	mesh_worker__worker_launch_request__init(req->request);
	req->request->rpc = mesh_port_into_field(mesh_receiver_into_port(rpc_rx));
	req->request->events = mesh_port_into_field(mesh_sender_into_port(events_tx));
	MeshWorker__WorkerLaunchType *lt = g_malloc(sizeof(*lt));
	mesh_worker__worker_launch_type__init(lt);
	lt->type_case = MESH_WORKER__WORKER_LAUNCH_TYPE__TYPE_NEW_WORKER;
	lt->new_worker = g_malloc(sizeof(*lt->new_worker));
	mesh_worker__worker_launch_new__init(lt->new_worker);
	lt->new_worker->parameters = mesh_port_into_field(mesh_oneshot_receiver_into_port(params_rx));
	req->request->launch_type = lt;
	mesh_sender_send(host->launch, &req->base);

	MeshWorkerHandle *handle = g_new0(MeshWorkerHandle, 1);
	handle->name = g_strdup(name);
	handle->rpc = rpc_tx;
	handle->events = events_rx;
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
		default:
			known = FALSE; /* RestartFailed or newer: not ours */
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
