/* SPDX-License-Identifier: MIT */
/*
 * The host side on Windows (host.c's counterpart; doc/windows.md,
 * "libmeshprocess on Windows"): decode MESH_WORKER_INVITATION
 * (invitation-private.h), check that the directory handle it names is an
 * open object directory of this process, join the parent's ALPC mesh with
 * mesh_alpc_node_join(), bootstrap the port pair with mesh_node_add_port(),
 * receive the InitialMessage and run the host's work while serving the
 * parent's crash and inspect requests; exit when the work is done or the
 * parent closes the request channel. A remote host (MESH_STDIO_INVITATION)
 * and sandbox profiles are Linux-only.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <windows.h>
#include <psapi.h>
#include <winternl.h>

#include "mesh-win32-private.h"
#include "startup-private.h"

typedef struct {
	MeshAlpcNode *alpc;
	MeshNode *node;
	char *name;
	MeshReceiver *requests;
} HostState;

/* This host's pid as its parent sees it: the same as GetCurrentProcessId() here. */
static gint outer_pid;

GPid mesh_host_get_pid(void)
{
	gint pid = g_atomic_int_get(&outer_pid);
	return GUINT_TO_POINTER(pid > 0 ? (DWORD)pid : GetCurrentProcessId());
}

void process_self_stats(int status_fd, guint64 *ret_rss_kib, guint *ret_threads)
{
	PROCESS_MEMORY_COUNTERS pmc = { .cb = sizeof(pmc) };
	*ret_rss_kib = 0;
	*ret_threads = 0; /* not counted on Windows */
	if (K32GetProcessMemoryInfo(GetCurrentProcess(), &pmc, sizeof(pmc)))
		*ret_rss_kib = pmc.WorkingSetSize / 1024;
}

static _Noreturn void host_exit(HostState *s, int status)
{
	static gint exiting;

	/* Once: the work may end while the parent closes us down. */
	if (!g_atomic_int_compare_and_exchange(&exiting, 0, 1))
		for (;;)
			Sleep(INFINITE); /* until the first caller's _exit() */
	/* Deliver what was sent, then go. */
	mesh_alpc_node_shutdown(s->alpc, 5 * G_USEC_PER_SEC);
	fflush(NULL);
	_exit(status);
}

static void host_state_free(HostState *s)
{
	mesh_alpc_node_free(s->alpc);
	g_free(s->name);
	g_free(s);
}

static gpointer run_loop(gpointer data)
{
	g_main_loop_run(data);
	return NULL;
}

static gpointer exit_thread(gpointer data)
{
	host_exit(data, 0);
	return NULL;
}

static char *inspect_self(HostState *s)
{
	guint64 rss;
	guint threads;
	GString *out = g_string_new("{\"name\":");
	process_json_string(out, s->name);
	process_self_stats(-1, &rss, &threads);
	g_string_append_printf(out, ",\"pid\":%lu,\"rss_kib\":%" G_GUINT64_FORMAT,
			       (unsigned long)GetCurrentProcessId(), rss);
	char *workers = worker_inspect_all();
	g_string_append_printf(out, ",\"workers\":%s}", workers);
	g_free(workers);
	return g_string_free(out, FALSE);
}

static void requests_cb(MeshReceiver *r, gpointer data)
{
	HostState *s = data;
	ProtobufCMessage *msg;
	GError *error = NULL;

	while (mesh_receiver_recv(r, 0, &msg, &error)) {
		MeshProcess__HostRequest *req = (MeshProcess__HostRequest *)msg;
		if (req->request_case == MESH_PROCESS__HOST_REQUEST__REQUEST_CRASH) {
			g_printerr("host %s: crash requested by the parent\n", s->name);
			abort();
		}
		if (req->request_case == MESH_PROCESS__HOST_REQUEST__REQUEST_INSPECT_JSON) {
			MeshPort *p = mesh_port_steal_from_field(req->inspect_json->reply);
			if (p) {
				MeshOneshotSender *reply = mesh_oneshot_sender_from_port(
					p, &mesh_process__inspect_reply__descriptor);
				MeshProcess__InspectReply *ir = g_malloc(sizeof(*ir));
				mesh_process__inspect_reply__init(ir);
				ir->json = inspect_self(s);
				mesh_oneshot_send(reply, &ir->base);
			}
		}
		if (req->request_case == MESH_PROCESS__HOST_REQUEST__REQUEST_INSPECT &&
		    req->inspect->inner) {
			MeshProcess__InspectDeferredInner *in = req->inspect->inner;
			MeshPort *p = mesh_port_steal_from_field(in->node);
			if (p) {
				MeshOneshotSender *reply = mesh_oneshot_sender_from_port(
					p, &mesh_process__inspect_node__descriptor);
				char *json = inspect_self(s);
				MeshProcess__InspectNode *node = process_inspect_respond(json, in);
				g_free(json);
				mesh_oneshot_send(reply, &node->base);
			}
		}
		mesh_payload_message_free(msg);
	}
	if (!g_error_matches(error, MESH_ERROR, MESH_ERROR_EMPTY)) {
		/* The parent closed our request channel or went away: stop. */
		mesh_receiver_set_callback(r, NULL, NULL, NULL, NULL);
		g_thread_unref(g_thread_new("mesh-host-exit", exit_thread, s));
	}
	g_clear_error(&error);
}

/*
 * Is @h an open handle of this process to an object directory? A hostile
 * or stale value may name nothing, or another of our handles.
 */
static gboolean check_directory(HANDLE h, GError **error)
{
	DWORD flags;
	if (!GetHandleInformation(h, &flags)) {
		g_set_error(error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_INVITATION,
			    "invalid " MESH_WORKER_INVITATION
			    ": directory handle 0x%llx is not open in this process (Win32 error %lu)",
			    (unsigned long long)(uintptr_t)h, (unsigned long)GetLastError());
		return FALSE;
	}
	union {
		PUBLIC_OBJECT_TYPE_INFORMATION info;
		guint8 bytes[512];
	} buf;
	ULONG len = 0;
	NTSTATUS st = NtQueryObject(h, ObjectTypeInformation, &buf, sizeof(buf), &len);
	if (st < 0) {
		g_set_error(error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_INVITATION,
			    "invalid " MESH_WORKER_INVITATION
			    ": the type of handle 0x%llx is unknown (NTSTATUS 0x%08lx)",
			    (unsigned long long)(uintptr_t)h, (unsigned long)st);
		return FALSE;
	}
	const UNICODE_STRING *t = &buf.info.TypeName;
	static const wchar_t want[] = L"Directory";
	if (t->Length != sizeof(want) - sizeof(wchar_t) ||
	    memcmp(t->Buffer, want, t->Length) != 0) {
		char *type = g_utf16_to_utf8((const gunichar2 *)t->Buffer,
					     t->Length / sizeof(wchar_t), NULL, NULL, NULL);
		g_set_error(error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_INVITATION,
			    "invalid " MESH_WORKER_INVITATION
			    ": handle 0x%llx is a %s, not an object directory",
			    (unsigned long long)(uintptr_t)h, type ? type : "?");
		g_free(type);
		return FALSE;
	}
	return TRUE;
}

gboolean process_win_host_join(const char *text, MeshAlpcNode **ret_alpc, MeshPort **ret_port,
			       char **ret_name, GError **error)
{
	ProcessWinInvitation inv;
	if (!process_win_invitation_decode(text, &inv, error))
		return FALSE;
	HANDLE dir = (HANDLE)(uintptr_t)inv.directory;
	if (!check_directory(dir, error)) {
		process_win_invitation_clear(&inv);
		return FALSE;
	}
	/* Ours alone from now on: not for a child of the host's own. */
	SetHandleInformation(dir, HANDLE_FLAG_INHERIT, 0);
	MeshAlpcNode *alpc = process_alpc_node_make(dir, &inv.host_node, inv.secret, error);
	if (!alpc) {
		g_prefix_error(error, "joining the mesh: ");
		process_win_invitation_clear(&inv);
		return FALSE;
	}
	MeshPort *boot = mesh_node_add_port(mesh_alpc_node_get_node(alpc), &inv.host_port,
					    &inv.parent_node, &inv.parent_port);
	/*
	 * Upstream's AlpcNode::join(): the bootstrap port carries one
	 * AlpcInitialMessage with the port the parent bridges to its end of
	 * the startup channel; ours is that port's peer.
	 */
	MeshPort *port, *user_port;
	mesh_port_new_pair(&port, &user_port);
	MeshProcess__AlpcInitialMessage *im = g_malloc(sizeof(*im));
	mesh_process__alpc_initial_message__init(im);
	im->user_port = mesh_port_into_field(user_port);
	mesh_oneshot_send(mesh_oneshot_sender_from_port(
				  boot, &mesh_process__alpc_initial_message__descriptor),
			  &im->base);
	*ret_alpc = alpc;
	*ret_port = port;
	*ret_name = g_steal_pointer(&inv.node_name);
	process_win_invitation_clear(&inv);
	return TRUE;
}

gboolean mesh_try_run_host(const char *base_name, MeshHostFunc func, gpointer user_data,
			   GError **error)
{
	g_return_val_if_fail(base_name && func, FALSE);
	g_return_val_if_fail(error == NULL || *error == NULL, FALSE);
	if (g_getenv(MESH_STDIO_INVITATION)) {
		g_set_error(error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_UNSUPPORTED,
			    "a remote host (" MESH_STDIO_INVITATION
			    ") is not supported on Windows (doc/windows.md)");
		return FALSE;
	}
	if (!g_getenv(MESH_WORKER_INVITATION))
		return TRUE;
	/* Taken out of the environment: not for our own children. */
	char *text = g_strdup(g_getenv(MESH_WORKER_INVITATION));
	g_unsetenv(MESH_WORKER_INVITATION);

	HostState *s = g_new0(HostState, 1);
	MeshPort *port = NULL;
	gboolean joined = process_win_host_join(text, &s->alpc, &port, &s->name, error);
	memset(text, 0, strlen(text));
	g_free(text);
	if (!joined) {
		g_free(s);
		return FALSE;
	}
	s->node = mesh_alpc_node_get_node(s->alpc);

	/* The bootstrap channel: a oneshot of upstream's InitialMessage. */
	MeshOneshotReceiver *boot = mesh_oneshot_receiver_from_port(port, NULL);
	MeshMessage *first = NULL;
	GError *err = NULL;
	if (!mesh_oneshot_recv_message(boot, 30 * G_USEC_PER_SEC, &first, &err)) {
		if (g_error_matches(err, MESH_ERROR, MESH_ERROR_TIMED_OUT))
			mesh_oneshot_receiver_free(boot);
		g_propagate_prefixed_error(error, err, "failed to receive initial message: ");
		host_state_free(s);
		return FALSE;
	}
	MeshMessage *initial = NULL;
	MeshPort *req_port = NULL, *events_port = NULL;
	guint32 pid = 0;
	if (!process_initial_message_parse(first, FALSE, &req_port, &initial, &events_port,
					   &pid, error)) {
		host_state_free(s);
		return FALSE;
	}
	if (pid > 0)
		g_atomic_int_set(&outer_pid, (gint)pid);
	if (events_port) {
		/* Tell the parent we joined (its state for us becomes "running"). */
		MeshSender *events =
			mesh_sender_from_port(events_port, &mesh_process__host_event__descriptor);
		MeshProcess__HostEvent *ev = g_malloc(sizeof(*ev));
		mesh_process__host_event__init(ev);
		ev->event_case = MESH_PROCESS__HOST_EVENT__EVENT_JOINED;
		ev->joined = g_malloc(sizeof(*ev->joined));
		mesh_process__host_joined__init(ev->joined);
		mesh_sender_send(events, &ev->base);
		mesh_sender_free(events);
	}
	s->requests = mesh_receiver_from_port(req_port, &mesh_process__host_request__descriptor);
	GMainContext *ctx = g_main_context_new();
	mesh_receiver_set_callback(s->requests, ctx, requests_cb, s, NULL);
	g_thread_unref(g_thread_new("mesh-host-requests", run_loop, g_main_loop_new(ctx, FALSE)));

	if (!func(initial, user_data, error))
		return FALSE;
	host_exit(s, 0);
}
