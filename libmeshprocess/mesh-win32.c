/* SPDX-License-Identifier: MIT */
/*
 * The coordinator on Windows (doc/windows.md, "libmeshprocess on Windows"),
 * as upstream's mesh_process launches hosts there: the mesh is an ALPC
 * node (mesh_alpc_node_new()); a host is started with libpal's Windows
 * process builder, inheriting only a duplicate of the mesh's object
 * directory handle (the spawn's handle list) and its stdio, inside a job
 * with kill-on-close (the host and its descendants die with its PalChild,
 * and so with this process); its invitation (invitation-private.h) travels
 * in MESH_WORKER_INVITATION. The host joins with mesh_alpc_node_join() and
 * the bootstrap port pair is made on both sides with mesh_node_add_port().
 *
 * What Linux has and this does not: sandbox profiles, spare hosts, remote
 * hosts, listen/connect; those calls fail with MESH_PROCESS_ERROR_UNSUPPORTED
 * (or return an empty result where they cannot fail). mesh_inspect() asks
 * every host for its report, as on Linux, but has no "parent" stats
 * entry. The coordinator always runs on a thread of its own; a @context
 * given to mesh_new() is not used (exit callbacks run on their config's
 * context, as on Linux). A GPid here
 * carries the process id (GUINT_TO_POINTER()), not a process handle.
 */
#include <windows.h>

#include "config-private.h"
#include "mesh-win32-private.h"
#include "startup-private.h"

/* Where tests make nodes on the NtAlpc stand-in; NULL in every real use. */
ProcessAlpcNodeFunc process_alpc_node_hook;

MeshAlpcNode *process_alpc_node_make(HANDLE directory, const MeshNodeId *id,
				     const guint8 *secret, GError **error)
{
	if (process_alpc_node_hook)
		return process_alpc_node_hook(directory, id, secret, error);
	if (!directory)
		return mesh_alpc_node_new(error);
	return mesh_alpc_node_join(directory, id, secret, error);
}

static void set_unsupported(GError **error, const char *what)
{
	g_set_error(error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_UNSUPPORTED,
		    "%s is not supported on Windows (doc/windows.md)", what);
}

/* The mesh. */

typedef struct {
	Mesh *mesh;
	char *name;
	DWORD pid;
	MeshNodeId node_id;
	PalChild *child;
	MeshSender *requests; /* HostRequest; NULL once stopping */
	MeshReceiver *events; /* HostEvent */
	/*
	 * Until the host joined: the bootstrap port, where its
	 * AlpcInitialMessage comes, and our end of the startup channel (the
	 * InitialMessage waits in it), which is bridged with the message's
	 * port (upstream's wait_for_invite()). Coordinator thread only.
	 */
	MeshReceiver *boot;
	MeshPort *start;
	GSource *watch;
	MeshHostState state; /* under mesh->lock */
	gboolean killed;
	ExitHandler *on_exit;
} Host;

struct Mesh {
	char *name;
	MeshAlpcNode *alpc;
	MeshNode *node;
	GMainContext *context; /* the coordinator's, run by @thread */
	GMainLoop *loop;
	GThread *thread;
	GMutex lock;
	GCond cond;
	GHashTable *hosts; /* pid -> Host *, until its exit was processed */
	GPtrArray *pending; /* GSource * of exit callbacks not run yet */
	gboolean shut_down;
	struct {
		DWORD pid;
		MeshHostState state;
	} gone[16];
	guint gone_next;
};

static gpointer run_loop(gpointer data)
{
	Mesh *m = data;
	g_main_context_push_thread_default(m->context);
	g_main_loop_run(m->loop);
	g_main_context_pop_thread_default(m->context);
	return NULL;
}

Mesh *mesh_new(const char *name, GMainContext *context, GError **error)
{
	g_return_val_if_fail(name, NULL);
	g_return_val_if_fail(error == NULL || *error == NULL, NULL);
	MeshAlpcNode *alpc = process_alpc_node_make(NULL, NULL, NULL, error);
	if (!alpc)
		return NULL;
	Mesh *m = g_new0(Mesh, 1);
	m->name = g_strdup(name);
	m->alpc = alpc;
	m->node = mesh_alpc_node_get_node(alpc);
	g_mutex_init(&m->lock);
	g_cond_init(&m->cond);
	m->hosts = g_hash_table_new(NULL, NULL);
	m->pending = g_ptr_array_new();
	m->context = g_main_context_new();
	m->loop = g_main_loop_new(m->context, FALSE);
	m->thread = g_thread_new("mesh-coordinator", run_loop, m);
	return m;
}

MeshNode *mesh_get_node(Mesh *m)
{
	g_return_val_if_fail(m, NULL);
	return m->node;
}

static void host_events_cb(MeshReceiver *r, gpointer data)
{
	Host *h = data;
	ProtobufCMessage *msg;
	GError *error = NULL;

	while (mesh_receiver_recv(r, 0, &msg, &error)) {
		MeshProcess__HostEvent *ev = (MeshProcess__HostEvent *)msg;
		if (ev->event_case == MESH_PROCESS__HOST_EVENT__EVENT_JOINED) {
			g_mutex_lock(&h->mesh->lock);
			if (h->state == MESH_HOST_STATE_STARTING)
				h->state = MESH_HOST_STATE_RUNNING;
			g_mutex_unlock(&h->mesh->lock);
		}
		mesh_payload_message_free(msg);
	}
	if (!g_error_matches(error, MESH_ERROR, MESH_ERROR_EMPTY))
		mesh_receiver_set_callback(r, NULL, NULL, NULL, NULL);
	g_clear_error(&error);
}

typedef struct {
	ExitHandler *handler;
	Mesh *mesh;
	char *name;
	DWORD pid;
	MeshHostExit exit;
} ExitCall;

static gboolean exit_call_cb(gpointer data)
{
	ExitCall *x = data;
	g_mutex_lock(&x->mesh->lock);
	GSource *self = g_main_current_source();
	gboolean listed = g_ptr_array_remove_fast(x->mesh->pending, self);
	g_mutex_unlock(&x->mesh->lock);
	if (listed)
		g_source_unref(self); /* the array's; the dispatch holds its own */
	x->handler->func(x->mesh, x->name, GUINT_TO_POINTER(x->pid), &x->exit, x->handler->data);
	return G_SOURCE_REMOVE;
}

static void exit_call_free(gpointer data)
{
	ExitCall *x = data;
	exit_handler_unref(x->handler);
	g_free(x->name);
	g_free((char *)x->exit.description);
	g_free(x);
}

/* On the coordinator's context: the host's process ended with @status (its exit code). */
static void host_exited_cb(GPid process, gint status, gpointer data)
{
	Host *h = data;
	Mesh *m = h->mesh;
	DWORD code = (DWORD)status;

	g_mutex_lock(&m->lock);
	gboolean expected = code == 0 || h->killed;
	h->state = expected ? MESH_HOST_STATE_EXITED : MESH_HOST_STATE_CRASHED;
	m->gone[m->gone_next].pid = h->pid;
	m->gone[m->gone_next].state = h->state;
	m->gone_next = (m->gone_next + 1) % G_N_ELEMENTS(m->gone);
	g_hash_table_remove(m->hosts, GUINT_TO_POINTER(h->pid));
	MeshSender *requests = g_steal_pointer(&h->requests);
	g_cond_broadcast(&m->cond);
	g_mutex_unlock(&m->lock);

	if (h->on_exit) {
		ExitCall *x = g_new0(ExitCall, 1);
		x->handler = g_steal_pointer(&h->on_exit);
		x->mesh = m;
		x->name = g_strdup(h->name);
		x->pid = h->pid;
		x->exit.status = (int)code;
		x->exit.expected = expected;
		x->exit.description =
			h->killed ? g_strdup_printf("killed by the mesh (exit code %lu)",
						    (unsigned long)code)
				  : g_strdup_printf("exited with code %lu (0x%08lx)",
						    (unsigned long)code, (unsigned long)code);
		GSource *s = g_idle_source_new();
		g_source_set_callback(s, exit_call_cb, x, exit_call_free);
		g_mutex_lock(&m->lock);
		g_ptr_array_add(m->pending, s); /* the array's reference */
		g_source_attach(s, x->handler->context);
		g_mutex_unlock(&m->lock);
	}
	mesh_sender_free(requests);
	mesh_receiver_free(h->events);
	if (h->boot) {
		/*
		 * It went before it joined: the startup channel goes to its node
		 * (upstream bridges the bootstrap port so), whose ports fail
		 * with the invitation's cancel below.
		 */
		mesh_port_bridge(mesh_receiver_into_port(g_steal_pointer(&h->boot)),
				 g_steal_pointer(&h->start));
	}
	/* A host that went before it joined: what waits for it fails now. */
	mesh_alpc_node_cancel_invite(m->alpc, &h->node_id, "the host exited before it joined");
	g_source_destroy(h->watch);
	g_source_unref(h->watch);
	pal_child_free(h->child); /* closes the job: a descendant left behind dies */
	g_free(h->name);
	g_free(h);
}

static char *own_program(void)
{
	wchar_t path[MAX_PATH * 4];
	DWORD n = GetModuleFileNameW(NULL, path, G_N_ELEMENTS(path));
	if (n == 0 || n >= G_N_ELEMENTS(path))
		return NULL;
	return g_utf16_to_utf8((const gunichar2 *)path, n, NULL, NULL, NULL);
}

static void set_spawn_error(GError **error, PalSpawn *spawn, const char *what, int r)
{
	char *msg = g_win32_error_message(-r);
	const char *step = spawn ? pal_spawn_get_failed_step(spawn) : NULL;
	g_set_error(error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_SPAWN, "%s%s%s: %s (%d)", what,
		    step ? " at " : "", step ? step : "", msg, -r);
	g_free(msg);
}

/*
 * Spawns the host: @directory (borrowed) is the only handle it inherits
 * besides stdio. Returns the child, or NULL with @error set.
 */
static PalChild *spawn_host(const MeshProcessConfig *config, const char *invitation,
			    HANDLE directory, GError **error)
{
	char *program = config->program ? g_strdup(config->program) : own_program();
	if (!program) {
		set_spawn_error(error, NULL, "GetModuleFileNameW", -(int)GetLastError());
		return NULL;
	}
	PalSpawn *spawn = pal_spawn_new(program);
	g_free(program);
	if (!spawn) {
		set_spawn_error(error, NULL, "pal_spawn_new", -(int)GetLastError());
		return NULL;
	}
	int r = 0;
	for (guint i = 0; i < config->args->len && r == 0; i++)
		r = pal_spawn_add_arg(spawn, config->args->pdata[i]);
	if (r == 0 && !config->skip_worker_arg)
		r = pal_spawn_add_arg(spawn, config->name);
	if (r == 0)
		r = pal_spawn_env_set(spawn, MESH_WORKER_INVITATION, invitation);
	for (guint i = 0; i + 1 < config->env->len && r == 0; i += 2)
		r = pal_spawn_env_set(spawn, config->env->pdata[i], config->env->pdata[i + 1]);
	if (r == 0)
		r = pal_spawn_set_stdin(spawn, PAL_STDIO_NULL, NULL);
	HANDLE err_file = NULL;
	if (r == 0 && config->stderr_path) {
		wchar_t *wpath = (wchar_t *)g_utf8_to_utf16(config->stderr_path, -1, NULL, NULL,
							    NULL);
		err_file = wpath ? CreateFileW(wpath, FILE_APPEND_DATA | SYNCHRONIZE,
					       FILE_SHARE_READ | FILE_SHARE_WRITE |
						       FILE_SHARE_DELETE,
					       NULL, OPEN_ALWAYS, FILE_ATTRIBUTE_NORMAL, NULL)
				 : INVALID_HANDLE_VALUE;
		g_free(wpath);
		if (err_file == INVALID_HANDLE_VALUE) {
			r = -(int)GetLastError();
			err_file = NULL;
			g_set_error(error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_SPAWN,
				    "opening the stderr file %s: Win32 error %d",
				    config->stderr_path, -r);
			pal_spawn_free(spawn);
			return NULL;
		}
		r = pal_spawn_set_stderr(spawn, PAL_STDIO_HANDLE, err_file);
	}
	if (r == 0)
		r = pal_spawn_inherit_handle(spawn, directory);
	if (r == 0)
		r = pal_spawn_set_job(spawn, true);
	if (r != 0) {
		set_spawn_error(error, NULL, "preparing the host's spawn", r);
		pal_spawn_free(spawn);
		pal_handle_close(err_file);
		return NULL;
	}
	if (config->spawn_hook &&
	    !config->spawn_hook(spawn, config->spawn_hook_data, error)) {
		pal_spawn_free(spawn);
		pal_handle_close(err_file);
		return NULL;
	}
	PalChild *child = NULL;
	r = pal_spawn_run(spawn, &child);
	if (r < 0)
		set_spawn_error(error, spawn, "failed to launch the host", r);
	pal_spawn_free(spawn);
	pal_handle_close(err_file);
	return r < 0 ? NULL : child;
}

/*
 * On the coordinator's context: the host's AlpcInitialMessage (it joined):
 * its port is bridged with our end of the startup channel. A failed
 * bootstrap port (its node failed) is bridged instead, which fails the
 * startup channel's ports as upstream's wait_for_invite() does.
 */
static void host_boot_cb(MeshReceiver *r, gpointer data)
{
	Host *h = data;
	ProtobufCMessage *msg = NULL;
	GError *error = NULL;

	if (mesh_receiver_recv(r, 0, &msg, &error)) {
		MeshProcess__AlpcInitialMessage *im = (MeshProcess__AlpcInitialMessage *)msg;
		MeshPort *user_port = mesh_port_steal_from_field(im->user_port);
		mesh_payload_message_free(msg);
		if (!user_port)
			g_warning("mesh %s: host %s's initial message has no port", h->mesh->name,
				  h->name);
		/* NULL closes the startup channel: the host fails its startup. */
		mesh_port_bridge(user_port, g_steal_pointer(&h->start));
		mesh_receiver_free(g_steal_pointer(&h->boot)); /* allowed in its own callback */
		return;
	}
	if (g_error_matches(error, MESH_ERROR, MESH_ERROR_EMPTY)) {
		g_error_free(error);
		return;
	}
	g_error_free(error);
	mesh_port_bridge(mesh_receiver_into_port(g_steal_pointer(&h->boot)),
			 g_steal_pointer(&h->start));
}

GPid mesh_launch_host(Mesh *m, const MeshProcessConfig *config, MeshMessage *initial,
		      GError **error)
{
	if (!m || !config || !initial || (error && *error)) {
		mesh_message_free(initial);
		g_return_val_if_fail(m && config && initial, 0);
		g_return_val_if_fail(error == NULL || *error == NULL, 0);
	}
	if (config->remote || config->sandbox) {
		set_unsupported(error, config->remote ? "a remote host" : "a sandbox profile");
		mesh_message_free(initial);
		return 0;
	}
	g_mutex_lock(&m->lock);
	gboolean shut_down = m->shut_down;
	g_mutex_unlock(&m->lock);
	if (shut_down) {
		g_set_error(error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_SHUT_DOWN,
			    "mesh %s is shut down", m->name);
		mesh_message_free(initial);
		return 0;
	}

	ProcessWinInvitation inv = { 0 };
	inv.node_name = config->name;
	mesh_uuid_generate(&inv.host_node);
	mesh_uuid_generate(&inv.host_port);
	mesh_uuid_generate(&inv.parent_port);
	inv.parent_node = *mesh_node_get_id(m->node);
	mesh_alpc_node_get_secret(m->alpc, inv.secret);

	/* A duplicate of the directory for the host: inherited, under its value. */
	HANDLE dir = NULL;
	int r = pal_handle_dup(mesh_alpc_node_get_directory(m->alpc), &dir);
	if (r < 0) {
		set_spawn_error(error, NULL, "duplicating the mesh's directory handle", r);
		mesh_message_free(initial);
		return 0;
	}
	inv.directory = (guint64)(uintptr_t)dir;
	char *text = process_win_invitation_encode(&inv);
	memset(inv.secret, 0, sizeof(inv.secret));

	/* Nothing connects to the host's node before it connected to us. */
	mesh_alpc_node_invite(m->alpc, &inv.host_node);
	MeshPort *boot_port = mesh_node_add_port(m->node, &inv.parent_port, &inv.host_node,
						 &inv.host_port);
	PalChild *child = spawn_host(config, text, dir, error);
	memset(text, 0, strlen(text));
	g_free(text);
	pal_handle_close(dir); /* the host has its own copy */
	if (!child) {
		mesh_alpc_node_cancel_invite(m->alpc, &inv.host_node, "the host did not start");
		mesh_port_close(boot_port);
		mesh_message_free(initial);
		return 0;
	}

	Host *h = g_new0(Host, 1);
	h->mesh = m;
	h->name = g_strdup(config->name);
	h->pid = pal_child_get_pid(child);
	h->node_id = inv.host_node;
	h->child = child;
	h->state = MESH_HOST_STATE_STARTING;
	h->on_exit = exit_handler_ref(config->on_exit);

	MeshSender *events;
	MeshReceiver *requests_recv;
	mesh_channel_new(&mesh_process__host_request__descriptor, &h->requests, &requests_recv);
	mesh_channel_new(&mesh_process__host_event__descriptor, &events, &h->events);

	MeshSender *late = NULL;
	g_mutex_lock(&m->lock);
	if (m->shut_down) {
		/* A shutdown began during the spawn: this host stops at once too. */
		late = g_steal_pointer(&h->requests);
		h->state = MESH_HOST_STATE_STOPPING;
	}
	g_hash_table_insert(m->hosts, GUINT_TO_POINTER(h->pid), h);
	/* Attached under the lock: the exit cannot be processed before the insert. */
	h->watch = g_child_watch_source_new(pal_child_get_process_handle(child));
	g_source_set_callback(h->watch, (GSourceFunc)(void (*)(void))host_exited_cb, h, NULL);
	g_source_attach(h->watch, m->context);
	mesh_receiver_set_callback(h->events, m->context, host_events_cb, h, NULL);
	/* The startup channel: its InitialMessage waits at h->start. */
	MeshPort *start_send;
	mesh_port_new_pair(&start_send, &h->start);
	h->boot = mesh_receiver_from_port(boot_port, &mesh_process__alpc_initial_message__descriptor);
	mesh_receiver_set_callback(h->boot, m->context, host_boot_cb, h, NULL);
	g_mutex_unlock(&m->lock);
	mesh_sender_free(late);

	/*
	 * Upstream's startup: one oneshot with the InitialMessage (our events
	 * channel in field 3, the host's pid in field 4). It waits in our node
	 * until the host has joined and connected to us (the invitation).
	 */
	MeshOneshotSender *boot = mesh_oneshot_sender_from_port(start_send, NULL);
	mesh_oneshot_send_message(boot, process_initial_message_new(
						mesh_receiver_into_port(requests_recv), initial,
						mesh_sender_into_port(events), (guint32)h->pid));
	return GUINT_TO_POINTER(h->pid);
}

gboolean mesh_prestart_hosts(Mesh *m, const MeshProcessConfig *config, guint n, GError **error)
{
	g_return_val_if_fail(m && config, FALSE);
	if (n == 0)
		return TRUE;
	set_unsupported(error, "mesh_prestart_hosts()");
	return FALSE;
}

guint mesh_get_spare_count(Mesh *m, gboolean ready)
{
	g_return_val_if_fail(m, 0);
	return 0;
}

gboolean mesh_crash(Mesh *m, GPid pid, GError **error)
{
	g_return_val_if_fail(m, FALSE);
	if (GPOINTER_TO_UINT(pid) == GetCurrentProcessId())
		abort();
	g_mutex_lock(&m->lock);
	Host *h = g_hash_table_lookup(m->hosts, pid);
	MeshSender *requests = h && h->requests ? mesh_sender_clone(h->requests) : NULL;
	g_mutex_unlock(&m->lock);
	if (!requests) {
		g_set_error(error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_NO_SUCH_HOST,
			    "no host with pid %u", GPOINTER_TO_UINT(pid));
		return FALSE;
	}
	MeshProcess__HostRequest *req = g_malloc(sizeof(*req));
	mesh_process__host_request__init(req);
	req->request_case = MESH_PROCESS__HOST_REQUEST__REQUEST_CRASH;
	req->crash = g_malloc(sizeof(*req->crash));
	mesh_process__host_crash__init(req->crash);
	mesh_sender_send(requests, &req->base);
	mesh_sender_free(requests);
	return TRUE;
}

/* One host of an inspect: what the parent knows, and the host's answer. */
typedef struct {
	DWORD pid;
	char *name;
	MeshNodeId node_id;
	const char *state;
	/*
	 * Not known as a C host (it has not said it joined: a Rust host, or
	 * one not joined yet): asked with upstream's Inspect(Deferred), as
	 * mesh.c does; a C host gets HostInspectJson, which a Rust host would
	 * fail its request channel on.
	 */
	gboolean deferred;
	MeshOneshotReceiver *reply; /* InspectReply or InspectNode; NULL once taken */
	char *report;		    /* JSON */
} InspectHost;

/* An inspect under way: needs nothing of the mesh once begun. */
typedef struct {
	char *mesh_name;
	gint64 deadline; /* monotonic, -1: none */
	GArray *hosts;	 /* InspectHost */
} Inspect;

/* Asks every host with a request channel for its report, at once. */
static Inspect *inspect_begin(Mesh *m, gint64 timeout_us)
{
	Inspect *in = g_new0(Inspect, 1);
	GPtrArray *senders = g_ptr_array_new();
	GHashTableIter it;
	gpointer value;

	in->mesh_name = g_strdup(m->name);
	in->deadline = timeout_us < 0 ? -1 : g_get_monotonic_time() + timeout_us;
	in->hosts = g_array_new(FALSE, TRUE, sizeof(InspectHost));
	g_mutex_lock(&m->lock);
	g_hash_table_iter_init(&it, m->hosts);
	while (g_hash_table_iter_next(&it, NULL, &value)) {
		Host *h = value;
		InspectHost ih = { .pid = h->pid, .name = g_strdup(h->name),
				   .node_id = h->node_id,
				   .state = mesh_host_state_to_string(h->state),
				   .deferred = h->state != MESH_HOST_STATE_RUNNING };
		g_array_append_val(in->hosts, ih);
		g_ptr_array_add(senders, h->requests ? mesh_sender_clone(h->requests) : NULL);
	}
	g_mutex_unlock(&m->lock);

	for (guint i = 0; i < in->hosts->len; i++) {
		InspectHost *ih = &g_array_index(in->hosts, InspectHost, i);
		MeshSender *s = senders->pdata[i];
		if (!s) {
			ih->report = process_inspect_error_json("no request channel");
			continue;
		}
		ih->reply = process_inspect_ask(s, ih->deferred);
		mesh_sender_free(s);
	}
	g_ptr_array_free(senders, TRUE);
	return in;
}

/* Waits for the answers (until the deadline) and writes the JSON; frees @in. */
static char *inspect_end(Inspect *in)
{
	GString *out = g_string_new("{\"mesh\":");
	process_json_string(out, in->mesh_name);
	g_string_append_printf(out, ",\"pid\":%lu,\"hosts\":[", (unsigned long)GetCurrentProcessId());
	for (guint i = 0; i < in->hosts->len; i++) {
		InspectHost *ih = &g_array_index(in->hosts, InspectHost, i);
		char id[33];
		if (ih->reply) {
			ProtobufCMessage *reply = NULL;
			GError *error = NULL;
			gint64 left = in->deadline < 0
					      ? -1
					      : MAX(in->deadline - g_get_monotonic_time(), 0);
			if (mesh_oneshot_recv(ih->reply, left, &reply, &error)) {
				if (ih->deferred)
					ih->report = process_inspect_node_to_json(
						(MeshProcess__InspectNode *)reply);
				else
					ih->report = g_strdup(
						((MeshProcess__InspectReply *)reply)->json);
				mesh_payload_message_free(reply);
			} else {
				/* A timeout did not consume the receiver; a final error did. */
				if (g_error_matches(error, MESH_ERROR, MESH_ERROR_TIMED_OUT) ||
				    g_error_matches(error, MESH_ERROR, MESH_ERROR_EMPTY)) {
					mesh_oneshot_receiver_free(ih->reply);
					ih->report = process_inspect_error_json("no value within the timeout");
				} else {
					ih->report = process_inspect_error_json(error->message);
				}
				g_error_free(error);
			}
			ih->reply = NULL;
		}
		if (i)
			g_string_append_c(out, ',');
		g_string_append_printf(out, "{\"pid\":%lu,\"name\":", (unsigned long)ih->pid);
		process_json_string(out, ih->name);
		g_string_append_printf(out,
				       ",\"node\":\"%s\",\"state\":\"%s\",\"transport\":\"alpc\","
				       "\"report\":%s}",
				       mesh_uuid_to_string(&ih->node_id, id), ih->state, ih->report);
		g_free(ih->name);
		g_free(ih->report);
	}
	g_string_append(out, "]}");
	g_array_free(in->hosts, TRUE);
	g_free(in->mesh_name);
	g_free(in);
	return g_string_free(out, FALSE);
}

char *mesh_inspect(Mesh *m, gint64 timeout_us)
{
	g_return_val_if_fail(m, NULL);
	g_return_val_if_fail(timeout_us >= -1, NULL);
	return inspect_end(inspect_begin(m, timeout_us));
}

typedef struct {
	Inspect *inspect;
	GMainContext *context;
	char *json;
	MeshInspectFunc callback;
	gpointer data;
	GDestroyNotify notify;
} InspectCall;

static gboolean inspect_call_cb(gpointer data)
{
	InspectCall *c = data;
	c->callback(g_steal_pointer(&c->json), c->data);
	return G_SOURCE_REMOVE;
}

static void inspect_call_free(gpointer data)
{
	InspectCall *c = data;
	if (c->notify)
		c->notify(c->data);
	g_main_context_unref(c->context);
	g_free(c->json);
	g_free(c);
}

/* The wait for the hosts' answers, off the caller's thread. */
static gpointer inspect_thread(gpointer data)
{
	InspectCall *c = data;
	c->json = inspect_end(g_steal_pointer(&c->inspect));
	GSource *s = g_idle_source_new();
	g_source_set_callback(s, inspect_call_cb, c, inspect_call_free);
	g_source_attach(s, c->context);
	g_source_unref(s);
	return NULL;
}

void mesh_inspect_async(Mesh *m, gint64 timeout_us, GMainContext *context,
			MeshInspectFunc callback, gpointer user_data, GDestroyNotify notify)
{
	if (!m || !callback || timeout_us < -1) {
		if (notify)
			notify(user_data);
		g_return_if_fail(m && callback && timeout_us >= -1);
	}
	InspectCall *c = g_new0(InspectCall, 1);
	c->inspect = inspect_begin(m, timeout_us);
	c->context = g_main_context_ref(context ? context : g_main_context_default());
	c->callback = callback;
	c->data = user_data;
	c->notify = notify;
	g_thread_unref(g_thread_new("mesh-inspect", inspect_thread, c));
}

guint mesh_get_host_count(Mesh *m)
{
	g_return_val_if_fail(m, 0);
	g_mutex_lock(&m->lock);
	guint n = g_hash_table_size(m->hosts);
	g_mutex_unlock(&m->lock);
	return n;
}

MeshHostState mesh_get_host_state(Mesh *m, GPid pid)
{
	g_return_val_if_fail(m, MESH_HOST_STATE_UNKNOWN);
	DWORD p = GPOINTER_TO_UINT(pid);
	MeshHostState state = MESH_HOST_STATE_UNKNOWN;
	g_mutex_lock(&m->lock);
	Host *h = g_hash_table_lookup(m->hosts, pid);
	if (h) {
		state = h->state;
	} else {
		/* The newest record of that pid wins. */
		for (guint i = 0; i < G_N_ELEMENTS(m->gone); i++) {
			guint k = (m->gone_next + G_N_ELEMENTS(m->gone) - 1 - i) %
				  G_N_ELEMENTS(m->gone);
			if (m->gone[k].pid == p && p != 0) {
				state = m->gone[k].state;
				break;
			}
		}
	}
	g_mutex_unlock(&m->lock);
	return state;
}

/* Closes every host's request channel (each host then exits); under m->lock. */
static void stop_hosts_locked(Mesh *m, GPtrArray *closing)
{
	GHashTableIter it;
	gpointer value;
	m->shut_down = TRUE;
	g_hash_table_iter_init(&it, m->hosts);
	while (g_hash_table_iter_next(&it, NULL, &value)) {
		Host *h = value;
		if (h->requests)
			g_ptr_array_add(closing, g_steal_pointer(&h->requests));
		h->state = MESH_HOST_STATE_STOPPING;
	}
}

static void kill_hosts_locked(Mesh *m)
{
	GHashTableIter it;
	gpointer value;
	g_hash_table_iter_init(&it, m->hosts);
	while (g_hash_table_iter_next(&it, NULL, &value)) {
		Host *h = value;
		h->killed = TRUE;
		pal_child_kill(h->child, 1);
	}
}

gboolean mesh_shutdown(Mesh *m, gint64 deadline_us, GError **error)
{
	g_return_val_if_fail(m, FALSE);
	if (deadline_us < -1) {
		g_set_error(error, MESH_ERROR, MESH_ERROR_INVALID_ARGUMENT,
			    "negative deadline %" G_GINT64_FORMAT, deadline_us);
		return FALSE;
	}
	GPtrArray *closing = g_ptr_array_new_with_free_func((GDestroyNotify)mesh_sender_free);
	g_mutex_lock(&m->lock);
	stop_hosts_locked(m, closing);
	g_mutex_unlock(&m->lock);
	g_ptr_array_free(closing, TRUE); /* outside the lock: a send may take the node's */

	gint64 end = deadline_us < 0 ? -1 : g_get_monotonic_time() + deadline_us;
	gboolean clean = TRUE;
	g_mutex_lock(&m->lock);
	while (g_hash_table_size(m->hosts) > 0) {
		if (end < 0) {
			g_cond_wait(&m->cond, &m->lock);
		} else if (!g_cond_wait_until(&m->cond, &m->lock, end)) {
			clean = FALSE;
			kill_hosts_locked(m);
			while (g_hash_table_size(m->hosts) > 0)
				g_cond_wait(&m->cond, &m->lock);
		}
	}
	g_mutex_unlock(&m->lock);
	mesh_alpc_node_shutdown(m->alpc, 5 * G_USEC_PER_SEC);
	if (!clean)
		g_set_error(error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_TIMED_OUT,
			    "hosts of mesh %s were killed at the shutdown deadline", m->name);
	return clean;
}

typedef struct {
	Mesh *mesh;
	gint64 deadline_us;
	GMainContext *context;
	MeshShutdownFunc func;
	gpointer data;
	GDestroyNotify notify;
	gboolean clean;
	GError *error;
} ShutdownCall;

static gboolean shutdown_call_cb(gpointer data)
{
	ShutdownCall *c = data;
	if (c->func)
		c->func(c->mesh, c->clean, c->error, c->data);
	return G_SOURCE_REMOVE;
}

static void shutdown_call_free(gpointer data)
{
	ShutdownCall *c = data;
	if (c->notify)
		c->notify(c->data);
	g_clear_error(&c->error);
	g_main_context_unref(c->context);
	g_free(c);
}

static gpointer shutdown_thread(gpointer data)
{
	ShutdownCall *c = data;
	c->clean = mesh_shutdown(c->mesh, c->deadline_us, &c->error);
	GSource *s = g_idle_source_new();
	g_source_set_callback(s, shutdown_call_cb, c, shutdown_call_free);
	g_source_attach(s, c->context);
	g_source_unref(s);
	return NULL;
}

void mesh_shutdown_async(Mesh *m, gint64 deadline_us, GMainContext *context,
			 MeshShutdownFunc func, gpointer user_data, GDestroyNotify notify)
{
	if (!m || deadline_us < -1) {
		if (notify)
			notify(user_data);
		g_return_if_fail(m && deadline_us >= -1);
	}
	ShutdownCall *c = g_new0(ShutdownCall, 1);
	c->mesh = m;
	c->deadline_us = deadline_us;
	c->context = g_main_context_ref(context ? context : g_main_context_default());
	c->func = func;
	c->data = user_data;
	c->notify = notify;
	/* Closed before this returns, as on Linux; the waits run on a thread. */
	GPtrArray *closing = g_ptr_array_new_with_free_func((GDestroyNotify)mesh_sender_free);
	g_mutex_lock(&m->lock);
	stop_hosts_locked(m, closing);
	g_mutex_unlock(&m->lock);
	g_ptr_array_free(closing, TRUE);
	/*
	 * Not joined by mesh_free(): a mesh freed while this runs is a caller's
	 * error on Windows (doc/windows.md).
	 */
	g_thread_unref(g_thread_new("mesh-shutdown", shutdown_thread, c));
}

static gboolean quit_cb(gpointer data)
{
	g_main_loop_quit(data);
	return G_SOURCE_REMOVE;
}

void mesh_free(Mesh *m)
{
	if (!m)
		return;
	g_mutex_lock(&m->lock);
	m->shut_down = TRUE;
	kill_hosts_locked(m);
	while (g_hash_table_size(m->hosts) > 0)
		g_cond_wait(&m->cond, &m->lock);
	g_mutex_unlock(&m->lock);
	/* On the loop's thread: a quit before g_main_loop_run() began would be lost. */
	GSource *quit = g_idle_source_new();
	g_source_set_callback(quit, quit_cb, m->loop, NULL);
	g_source_attach(quit, m->context);
	g_source_unref(quit);
	g_thread_join(m->thread);
	/* Exit callbacks that have not run never will (as on Linux). */
	g_mutex_lock(&m->lock);
	GPtrArray *pending = g_steal_pointer(&m->pending);
	m->pending = g_ptr_array_new();
	g_mutex_unlock(&m->lock);
	for (guint i = 0; i < pending->len; i++) {
		g_source_destroy(pending->pdata[i]);
		g_source_unref(pending->pdata[i]);
	}
	g_ptr_array_free(pending, TRUE);
	g_ptr_array_free(m->pending, TRUE);
	mesh_alpc_node_free(m->alpc);
	g_main_loop_unref(m->loop);
	g_main_context_unref(m->context);
	g_hash_table_unref(m->hosts);
	g_mutex_clear(&m->lock);
	g_cond_clear(&m->cond);
	g_free(m->name);
	g_free(m);
}

/* Listening and connecting: Unix sockets, not ported (doc/windows.md). */

gboolean mesh_listen(Mesh *m, const char *path, gboolean allow_other_users,
		     MeshReceiver **ret_receiver, GError **error)
{
	g_return_val_if_fail(m && path && ret_receiver, FALSE);
	set_unsupported(error, "mesh_listen()");
	return FALSE;
}

void mesh_unlisten(Mesh *m, const char *path)
{
	g_return_if_fail(m && path);
}

MeshConnection *mesh_connect(const char *path, gint64 timeout_us, MeshSender **ret_sender,
			     GError **error)
{
	g_return_val_if_fail(path && ret_sender, NULL);
	set_unsupported(error, "mesh_connect()");
	return NULL;
}

gboolean mesh_connection_shutdown(MeshConnection *conn, gint64 timeout_us)
{
	return conn == NULL;
}

const char *mesh_host_state_to_string(MeshHostState state)
{
	static const char *const names[] = { "unknown",	 "starting", "running",
					     "stopping", "exited",   "crashed" };
	return (guint)state < G_N_ELEMENTS(names) ? names[state] : "unknown";
}
