/* SPDX-License-Identifier: MIT */
/*
 * mesh_launch_host() and mesh_try_run_host() on Windows, across real
 * processes, with both the parent's and the hosts' ALPC nodes on the
 * NtAlpc stand-in (a TEST DOUBLE: Wine has no ALPC;
 * libmeshremote/alpc/tests/alpc-standin.h). This program links
 * libmeshprocess's and libmeshremote's objects itself and sets the
 * test-only hook process_alpc_node_hook first thing in main(), in the
 * parent and in every host (the hosts are this program).
 *
 * What the stand-in does not cover: real ALPC, and the isolation the
 * object directory gives (the stand-in finds ports by a pipe name; the
 * directory handle the host inherits is a real directory object under
 * Wine, and the host checks that it is one).
 */
#include <check.h>
#include <stdio.h>
#include <string.h>
#include <windows.h>

#include "alpc-node-private.h"
#include "alpc-standin.h"
#include "mesh-win32-private.h"

static MeshAlpcNode *standin_node(HANDLE directory, const MeshNodeId *id, const guint8 *secret,
				  GError **error)
{
	return alpc_node_new_full(alpc_standin_api(), directory, id, secret, error);
}

static char *self_path(void)
{
	wchar_t path[MAX_PATH * 4];
	DWORD n = GetModuleFileNameW(NULL, path, G_N_ELEMENTS(path));
	return g_utf16_to_utf8((const gunichar2 *)path, n, NULL, NULL, NULL);
}

/* Host work, chosen by the initial message's data. */

/*
 * "echo": the initial message carries a receiver port and a sender port.
 * Each message received goes back with "echo:" before it; a handle in it
 * (an event) is signaled and sent back; "bye" ends the host (exit 0).
 */
static gboolean host_echo(MeshMessage *initial)
{
	MeshReceiver *in = mesh_receiver_from_port(mesh_message_steal_port(initial, 0), NULL);
	MeshSender *out = mesh_sender_from_port(mesh_message_steal_port(initial, 1), NULL);
	mesh_message_free(initial);
	for (;;) {
		MeshMessage *msg = NULL;
		GError *error = NULL;
		if (!mesh_receiver_recv_message(in, -1, &msg, &error)) {
			g_printerr("host: %s\n", error->message);
			return FALSE;
		}
		gsize size;
		const char *data = (const char *)mesh_message_get_data(msg, &size);
		if (size == 3 && memcmp(data, "bye", 3) == 0) {
			mesh_message_free(msg);
			break;
		}
		GString *reply = g_string_new("echo:");
		g_string_append_len(reply, data, size);
		MeshMessage *r = mesh_message_new(reply->str, reply->len);
		g_string_free(reply, TRUE);
		if (mesh_message_get_n_resources(msg) == 1) {
			HANDLE ev = mesh_message_steal_handle(msg, 0);
			SetEvent(ev);
			mesh_message_add_handle_take(r, ev);
		}
		mesh_message_free(msg);
		mesh_sender_send_message(out, r);
	}
	mesh_sender_free(out);
	mesh_receiver_free(in);
	return TRUE;
}

/* "wait": runs until the parent ends it. */
static gboolean host_wait(MeshMessage *initial)
{
	mesh_message_free(initial);
	Sleep(INFINITE);
	return TRUE;
}

/*
 * "orphan": starts a grandchild (this program, "sleep": no mesh, no handle
 * of ours; only its job can end it), writes "G <pid>" on stdout (the test's
 * pipe, inherited through the middle process), and waits.
 */
static gboolean host_orphan(MeshMessage *initial)
{
	mesh_message_free(initial);
	char *self = self_path();
	char *cmd = g_strdup_printf("\"%s\" sleep", self);
	wchar_t *wcmd = (wchar_t *)g_utf8_to_utf16(cmd, -1, NULL, NULL, NULL);
	STARTUPINFOW si = { .cb = sizeof(si) };
	PROCESS_INFORMATION pi;
	if (!CreateProcessW(NULL, wcmd, NULL, NULL, FALSE, 0, NULL, NULL, &si, &pi)) {
		g_printerr("host: CreateProcessW: %lu\n", GetLastError());
		return FALSE;
	}
	printf("G %lu\n", (unsigned long)pi.dwProcessId);
	fflush(stdout);
	CloseHandle(pi.hThread);
	CloseHandle(pi.hProcess);
	g_free(wcmd);
	g_free(cmd);
	g_free(self);
	Sleep(INFINITE);
	return TRUE;
}

static gboolean host_main(MeshMessage *initial, gpointer user_data, GError **error)
{
	gsize size;
	const char *mode = (const char *)mesh_message_get_data(initial, &size);
	if (size == 4 && memcmp(mode, "echo", 4) == 0)
		return host_echo(initial);
	if (size == 4 && memcmp(mode, "wait", 4) == 0)
		return host_wait(initial);
	if (size == 6 && memcmp(mode, "orphan", 6) == 0)
		return host_orphan(initial);
	g_set_error(error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_FAILED, "unknown host mode");
	mesh_message_free(initial);
	return FALSE;
}

/* Do @a and @b name one object? (CompareObjectHandles: Windows 10's kernelbase; Wine has it.) */
static gboolean same_object(HANDLE a, HANDLE b)
{
	typedef BOOL(WINAPI * Fn)(HANDLE, HANDLE);
	Fn compare = (Fn)(void *)GetProcAddress(GetModuleHandleW(L"kernelbase.dll"),
						 "CompareObjectHandles");
	ck_assert_msg(compare != NULL, "no CompareObjectHandles");
	return compare(a, b);
}

static MeshMessage *recv_one(MeshReceiver *r)
{
	MeshMessage *msg = NULL;
	GError *error = NULL;
	ck_assert_msg(mesh_receiver_recv_message(r, -1, &msg, &error), "%s",
		      error ? error->message : "");
	return msg;
}

static void assert_data(MeshMessage *msg, const char *want)
{
	gsize size;
	const char *data = (const char *)mesh_message_get_data(msg, &size);
	ck_assert_msg(size == strlen(want) && memcmp(data, want, size) == 0, "got '%.*s', want '%s'",
		      (int)size, data, want);
}

static void on_exit_cb(Mesh *mesh, const char *name, GPid pid, const MeshHostExit *exit,
		       gpointer user_data)
{
	MeshHostExit *copy = user_data;
	*copy = *exit;
	copy->description = NULL;
}

/* An "echo" host launched on its own mesh, with an exit callback on its own context. */
typedef struct {
	Mesh *mesh;
	MeshProcessConfig *config;
	GMainContext *ctx;
	MeshHostExit exit;
	MeshSender *to_host;
	MeshReceiver *from_host;
	GPid pid;
} EchoHost;

static void echo_host_launch(EchoHost *h, const char *mesh_name, const char *host_name)
{
	GError *error = NULL;
	MeshSender *from_host_send;
	MeshReceiver *to_host_recv;

	memset(h, 0, sizeof(*h));
	h->exit.status = -1;
	h->mesh = mesh_new(mesh_name, NULL, &error);
	ck_assert_msg(h->mesh, "%s", error ? error->message : "");
	h->config = mesh_process_config_new(host_name);
	h->ctx = g_main_context_new();
	mesh_process_config_set_exit_callback(h->config, h->ctx, on_exit_cb, &h->exit, NULL);
	mesh_channel_new(NULL, &h->to_host, &to_host_recv);
	mesh_channel_new(NULL, &from_host_send, &h->from_host);
	MeshMessage *initial = mesh_message_new("echo", 4);
	mesh_message_add_port_take(initial, mesh_receiver_into_port(to_host_recv));
	mesh_message_add_port_take(initial, mesh_sender_into_port(from_host_send));
	h->pid = mesh_launch_host(h->mesh, h->config, initial, &error);
	ck_assert_msg(h->pid, "%s", error ? error->message : "");
}

/* Waits for the exit callback. */
static void echo_host_wait_exit(EchoHost *h)
{
	while (h->exit.status < 0)
		g_main_context_iteration(h->ctx, TRUE);
}

static void echo_host_free(EchoHost *h)
{
	mesh_sender_free(h->to_host);
	mesh_receiver_free(h->from_host);
	mesh_process_config_free(h->config);
	mesh_free(h->mesh);
	g_main_context_unref(h->ctx);
}

/*
 * A real host process launched with mesh_launch_host(): messages both
 * ways on a channel the initial message carried, an event handle there
 * and back, a 64 KiB message (a large event: a section view), then the
 * host ends by itself and the mesh shuts down clean.
 */
START_TEST(test_launch_echo)
{
	GError *error = NULL;
	EchoHost h;
	echo_host_launch(&h, "wine-launch", "echo-host");
	Mesh *mesh = h.mesh;
	MeshSender *to_host = h.to_host;
	MeshReceiver *from_host = h.from_host;
	GPid pid = h.pid;
	ck_assert_int_ne(GPOINTER_TO_UINT(pid), GetCurrentProcessId());
	ck_assert_int_eq(mesh_get_host_count(mesh), 1);

	mesh_sender_send_message(to_host, mesh_message_new("hello", 5));
	MeshMessage *msg = recv_one(from_host);
	assert_data(msg, "echo:hello");
	mesh_message_free(msg);
	/* It joined and said so before its work ran: "running" by now. */
	ck_assert_int_eq(mesh_get_host_state(mesh, pid), MESH_HOST_STATE_RUNNING);

	/* An event handle there and back: the host signals it. */
	HANDLE ev = CreateEventW(NULL, TRUE, FALSE, NULL);
	MeshMessage *m = mesh_message_new("ev", 2);
	ck_assert_int_eq(mesh_message_add_handle(m, ev), 0);
	mesh_sender_send_message(to_host, m);
	msg = recv_one(from_host);
	assert_data(msg, "echo:ev");
	ck_assert_int_eq(mesh_message_get_n_resources(msg), 1);
	HANDLE back = NULL;
	back = mesh_message_steal_handle(msg, 0);
	mesh_message_free(msg);
	ck_assert(back != NULL && back != ev);
	ck_assert(same_object(back, ev));
	ck_assert_int_eq(WaitForSingleObject(ev, 0), WAIT_OBJECT_0);
	CloseHandle(back);
	CloseHandle(ev);

	/* 64 KiB: over the ALPC message size, through a section view. */
	gsize big = 64 * 1024;
	char *payload = g_malloc(big);
	for (gsize i = 0; i < big; i++)
		payload[i] = 'a' + (char)(i % 26);
	mesh_sender_send_message(to_host, mesh_message_new(payload, big));
	msg = recv_one(from_host);
	gsize size;
	const char *data = (const char *)mesh_message_get_data(msg, &size);
	ck_assert_uint_eq(size, big + 5);
	ck_assert(memcmp(data, "echo:", 5) == 0 && memcmp(data + 5, payload, big) == 0);
	mesh_message_free(msg);
	g_free(payload);

	/* Its work returns: it exits 0 by itself. */
	mesh_sender_send_message(to_host, mesh_message_new("bye", 3));
	echo_host_wait_exit(&h);
	ck_assert_int_eq(h.exit.status, 0);
	ck_assert(h.exit.expected);
	ck_assert_int_eq(mesh_get_host_state(mesh, pid), MESH_HOST_STATE_EXITED);
	ck_assert_int_eq(mesh_get_host_count(mesh), 0);

	ck_assert_msg(mesh_shutdown(mesh, 10 * G_USEC_PER_SEC, &error), "%s",
		      error ? error->message : "");
	echo_host_free(&h);
}
END_TEST

static void on_inspect(char *json, gpointer user_data)
{
	char **out = user_data;
	*out = json;
}

/*
 * mesh_inspect() of a launched host carries the host's own answer to the
 * inspect request (host-win32.c's inspect_self(): its name, its pid as it
 * sees it, its RSS and workers), asked as upstream asks before the host
 * said it joined and as a C host once it did, and so does
 * mesh_inspect_async().
 */
START_TEST(test_inspect_host)
{
	GError *error = NULL;
	EchoHost h;
	echo_host_launch(&h, "wine-inspect", "inspected");
	char *want = g_strdup_printf("\"report\":{\"name\":\"inspected\",\"pid\":%u,\"rss_kib\":",
				     GPOINTER_TO_UINT(h.pid));

	/*
	 * Right after the launch the host has not said it joined ("starting"):
	 * it is asked as upstream asks (Inspect(Deferred)), answers once it
	 * joined, and its InternalNode reads as the same JSON.
	 */
	char *json = mesh_inspect(h.mesh, 30 * G_USEC_PER_SEC);
	ck_assert_msg(json && strstr(json, want), "%s has no %s", json, want);
	g_free(json);

	mesh_sender_send_message(h.to_host, mesh_message_new("hello", 5));
	mesh_message_free(recv_one(h.from_host)); /* joined and working */
	/* Said it joined: a C host, asked for its JSON (HostInspectJson). */
	while (mesh_get_host_state(h.mesh, h.pid) != MESH_HOST_STATE_RUNNING)
		g_usleep(10000);
	json = mesh_inspect(h.mesh, 30 * G_USEC_PER_SEC);
	ck_assert_msg(json && strstr(json, want), "%s has no %s", json, want);
	ck_assert_msg(strstr(json, "\"workers\":"), "%s", json);
	ck_assert_msg(strstr(json, "\"transport\":\"alpc\""), "%s", json);
	g_free(json);

	char *async_json = NULL;
	mesh_inspect_async(h.mesh, 30 * G_USEC_PER_SEC, h.ctx, on_inspect, &async_json, NULL);
	while (!async_json)
		g_main_context_iteration(h.ctx, TRUE);
	ck_assert_msg(strstr(async_json, want), "%s has no %s", async_json, want);
	g_free(async_json);
	g_free(want);

	mesh_sender_send_message(h.to_host, mesh_message_new("bye", 3));
	echo_host_wait_exit(&h);
	ck_assert_int_eq(h.exit.status, 0);
	/* No host: nothing to ask. */
	json = mesh_inspect(h.mesh, 0);
	ck_assert_msg(strstr(json, "\"hosts\":[]"), "%s", json);
	g_free(json);
	ck_assert_msg(mesh_shutdown(h.mesh, 10 * G_USEC_PER_SEC, &error), "%s",
		      error ? error->message : "");
	echo_host_free(&h);
}
END_TEST

/*
 * mesh_shutdown() closes a waiting host's request channel: the host exits
 * 0 by itself; the mesh is clean. Then launches are refused.
 */
START_TEST(test_shutdown_ends_host)
{
	GError *error = NULL;
	Mesh *mesh = mesh_new("wine-shutdown", NULL, &error);
	ck_assert_msg(mesh, "%s", error ? error->message : "");
	MeshProcessConfig *config = mesh_process_config_new("waiter");
	GPid pid = mesh_launch_host(mesh, config, mesh_message_new("wait", 4), &error);
	ck_assert_msg(pid, "%s", error ? error->message : "");
	HANDLE proc = OpenProcess(SYNCHRONIZE | PROCESS_QUERY_LIMITED_INFORMATION, FALSE,
				  GPOINTER_TO_UINT(pid));
	ck_assert(proc);
	ck_assert_msg(mesh_shutdown(mesh, -1, &error), "%s", error ? error->message : "");
	ck_assert_int_eq(WaitForSingleObject(proc, 0), WAIT_OBJECT_0);
	DWORD code = 99;
	ck_assert(GetExitCodeProcess(proc, &code));
	ck_assert_int_eq(code, 0);
	CloseHandle(proc);
	ck_assert_int_eq(mesh_get_host_state(mesh, pid), MESH_HOST_STATE_EXITED);

	ck_assert(!mesh_launch_host(mesh, config, mesh_message_new("wait", 4), &error));
	ck_assert(g_error_matches(error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_SHUT_DOWN));
	g_clear_error(&error);
	mesh_process_config_free(config);
	mesh_free(mesh);
}
END_TEST

/*
 * mesh_crash(): the host's request channel carries the crash request and
 * the host aborts; its exit is a crash (abort()'s exit code 3). A pid that
 * is not a host's is MESH_PROCESS_ERROR_NO_SUCH_HOST.
 */
START_TEST(test_crash)
{
	GError *error = NULL;
	EchoHost h;
	echo_host_launch(&h, "wine-crash", "crasher");
	Mesh *mesh = h.mesh;
	MeshSender *to_host = h.to_host;
	MeshReceiver *from_host = h.from_host;
	GPid pid = h.pid;
	/* Joined (it answered): its request channel is up. */
	mesh_sender_send_message(to_host, mesh_message_new("x", 1));
	mesh_message_free(recv_one(from_host));

	ck_assert(!mesh_crash(mesh, GUINT_TO_POINTER(GetCurrentProcessId() + 4), &error));
	ck_assert(g_error_matches(error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_NO_SUCH_HOST));
	g_clear_error(&error);
	ck_assert_msg(mesh_crash(mesh, pid, &error), "%s", error ? error->message : "");
	echo_host_wait_exit(&h);
	ck_assert_int_eq(h.exit.status, 3);
	ck_assert(!h.exit.expected);
	ck_assert_int_eq(mesh_get_host_state(mesh, pid), MESH_HOST_STATE_CRASHED);
	MeshMessage *msg = NULL;
	ck_assert(!mesh_receiver_recv_message(from_host, -1, &msg, &error));
	ck_assert_msg(g_error_matches(error, MESH_ERROR, MESH_ERROR_NODE_FAILURE), "%s",
		      error->message);
	g_clear_error(&error);
	echo_host_free(&h);
}
END_TEST

/*
 * A host that exits before it joins (here not a mesh program at all): the
 * ports its InitialMessage carried fail, saying why, and its exit is a
 * crash with its code.
 */
START_TEST(test_exit_before_join)
{
	GError *error = NULL;
	Mesh *mesh = mesh_new("wine-early-exit", NULL, &error);
	ck_assert_msg(mesh, "%s", error ? error->message : "");
	MeshProcessConfig *config = mesh_process_config_new("not-a-host");
	mesh_process_config_set_program(config, "cmd");
	mesh_process_config_add_arg(config, "/c");
	mesh_process_config_add_arg(config, "exit 3");
	mesh_process_config_set_skip_worker_arg(config, TRUE);
	MeshHostExit exit = { .status = -1 };
	GMainContext *ctx = g_main_context_new();
	mesh_process_config_set_exit_callback(config, ctx, on_exit_cb, &exit, NULL);
	MeshSender *send;
	MeshReceiver *recv;
	mesh_channel_new(NULL, &send, &recv);
	MeshMessage *initial = mesh_message_new("echo", 4);
	mesh_message_add_port_take(initial, mesh_sender_into_port(send));
	GPid pid = mesh_launch_host(mesh, config, initial, &error);
	ck_assert_msg(pid, "%s", error ? error->message : "");

	MeshMessage *msg = NULL;
	ck_assert(!mesh_receiver_recv_message(recv, -1, &msg, &error));
	ck_assert_msg(g_error_matches(error, MESH_ERROR, MESH_ERROR_NODE_FAILURE), "%s",
		      error->message);
	ck_assert_msg(strstr(error->message, "the host exited before it joined"), "%s",
		      error->message);
	g_clear_error(&error);
	while (exit.status < 0)
		g_main_context_iteration(ctx, TRUE);
	ck_assert_int_eq(exit.status, 3);
	ck_assert(!exit.expected);
	ck_assert_int_eq(mesh_get_host_state(mesh, pid), MESH_HOST_STATE_CRASHED);
	mesh_receiver_free(recv);
	mesh_process_config_free(config);
	mesh_free(mesh);
	g_main_context_unref(ctx);
}
END_TEST

/*
 * The library's own path (no hook): under Wine, whose ntdll has no ALPC,
 * mesh_new() fails and says so; where ALPC exists this checks nothing.
 */
START_TEST(test_no_alpc)
{
	if (GetProcAddress(GetModuleHandleW(L"ntdll.dll"), "NtAlpcCreatePort"))
		return; /* real Windows */
	ProcessAlpcNodeFunc saved = process_alpc_node_hook;
	process_alpc_node_hook = NULL;
	GError *error = NULL;
	Mesh *mesh = mesh_new("no-alpc", NULL, &error);
	process_alpc_node_hook = saved;
	ck_assert(mesh == NULL);
	ck_assert_msg(g_error_matches(error, MESH_ERROR, MESH_ERROR_UNAVAILABLE), "%s",
		      error->message);
	ck_assert_msg(strstr(error->message, "NtAlpc"), "%s", error->message);
	g_error_free(error);
}
END_TEST

/* The Linux-only parts say so. */
START_TEST(test_unsupported)
{
	GError *error = NULL;
	Mesh *mesh = mesh_new("wine-unsupported", NULL, &error);
	ck_assert(mesh);
	MeshProcessConfig *config = mesh_process_config_new("x");
	const char *const ssh[] = { "ssh", "elsewhere", NULL };
	mesh_process_config_set_remote_command(config, ssh);
	ck_assert(!mesh_launch_host(mesh, config, mesh_message_new("wait", 4), &error));
	ck_assert(g_error_matches(error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_UNSUPPORTED));
	ck_assert_msg(strstr(error->message, "remote host"), "%s", error->message);
	g_clear_error(&error);
	mesh_process_config_set_remote_command(config, NULL);
	mesh_process_config_set_sandbox(config, (PalSandbox *)config); /* any non-NULL profile */
	ck_assert(!mesh_launch_host(mesh, config, mesh_message_new("wait", 4), &error));
	ck_assert(g_error_matches(error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_UNSUPPORTED));
	g_clear_error(&error);
	ck_assert(!mesh_prestart_hosts(mesh, config, 1, &error));
	ck_assert(g_error_matches(error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_UNSUPPORTED));
	g_clear_error(&error);
	MeshReceiver *recv = NULL;
	ck_assert(!mesh_listen(mesh, "C:\\x.sock", FALSE, &recv, &error));
	ck_assert(g_error_matches(error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_UNSUPPORTED));
	g_clear_error(&error);
	MeshSender *send = NULL;
	ck_assert(!mesh_connect("C:\\x.sock", -1, &send, &error));
	ck_assert(g_error_matches(error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_UNSUPPORTED));
	g_clear_error(&error);
	mesh_process_config_free(config);
	mesh_free(mesh);
}
END_TEST

/*
 * The host's checks of the handle an invitation names: not open, or open
 * but not an object directory (a hostile parent's value, or a stale one).
 */
START_TEST(test_join_bad_handle)
{
	ProcessWinInvitation inv = { 0 };
	inv.node_name = "h";
	mesh_uuid_generate(&inv.host_node);
	mesh_uuid_generate(&inv.host_port);
	mesh_uuid_generate(&inv.parent_node);
	mesh_uuid_generate(&inv.parent_port);
	memset(inv.secret, 7, sizeof(inv.secret));
	MeshAlpcNode *alpc = NULL;
	MeshPort *port = NULL;
	char *name = NULL;
	GError *error = NULL;

	/* An event: open, but not a directory. */
	HANDLE ev = CreateEventW(NULL, TRUE, FALSE, NULL);
	inv.directory = (guint64)(uintptr_t)ev;
	char *text = process_win_invitation_encode(&inv);
	ck_assert(!process_win_host_join(text, &alpc, &port, &name, &error));
	ck_assert(g_error_matches(error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_INVITATION));
	ck_assert_msg(strstr(error->message, "is a Event, not an object directory"), "%s",
		      error->message);
	g_clear_error(&error);
	g_free(text);

	/* The same value once closed: not open. */
	CloseHandle(ev);
	text = process_win_invitation_encode(&inv);
	ck_assert(!process_win_host_join(text, &alpc, &port, &name, &error));
	ck_assert(g_error_matches(error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_INVITATION));
	ck_assert_msg(strstr(error->message, "is not open"), "%s", error->message);
	g_clear_error(&error);
	g_free(text);
	ck_assert(alpc == NULL && port == NULL && name == NULL);
}
END_TEST

/*
 * The host's join as upstream's parent sees it (mesh_remote alpc_node.rs:
 * AlpcNode::join() sends InitialMessage { 1 user_port: Port } on the
 * bootstrap port; the inviter's wait_for_invite() bridges user_port to the
 * channel that carries mesh_process's InitialMessage). Here the parent is
 * played by hand, in this process, on the stand-in: its bootstrap port
 * gets one message with exactly one port and nothing else, and what is
 * sent into that port is what the host receives on the port the join
 * returned.
 */
START_TEST(test_join_as_upstream)
{
	GError *error = NULL;
	MeshAlpcNode *parent = standin_node(NULL, NULL, NULL, &error);
	ck_assert_msg(parent, "%s", error ? error->message : "");
	ProcessWinInvitation inv = { 0 };
	inv.node_name = "h";
	mesh_uuid_generate(&inv.host_node);
	mesh_uuid_generate(&inv.host_port);
	inv.parent_node = *mesh_node_get_id(mesh_alpc_node_get_node(parent));
	mesh_uuid_generate(&inv.parent_port);
	mesh_alpc_node_get_secret(parent, inv.secret);
	HANDLE dir = NULL;
	ck_assert(DuplicateHandle(GetCurrentProcess(), mesh_alpc_node_get_directory(parent),
				  GetCurrentProcess(), &dir, 0, FALSE, DUPLICATE_SAME_ACCESS));
	inv.directory = (guint64)(uintptr_t)dir;
	mesh_alpc_node_invite(parent, &inv.host_node);
	MeshPort *boot = mesh_node_add_port(mesh_alpc_node_get_node(parent), &inv.parent_port,
					    &inv.host_node, &inv.host_port);
	char *text = process_win_invitation_encode(&inv);

	MeshAlpcNode *host = NULL;
	MeshPort *host_port = NULL;
	char *name = NULL;
	ck_assert_msg(process_win_host_join(text, &host, &host_port, &name, &error), "%s",
		      error ? error->message : "");
	g_free(text);

	/* Upstream's alpc_node::InitialMessage: field 1, one port. */
	MeshOneshotReceiver *r = mesh_oneshot_receiver_from_port(boot, NULL);
	MeshMessage *im = NULL;
	ck_assert_msg(mesh_oneshot_recv_message(r, 30 * G_USEC_PER_SEC, &im, &error),
		      "no initial message from the joined host: %s", error ? error->message : "");
	ck_assert_int_eq(mesh_message_get_n_resources(im), 1);
	ProtobufCMessage *decoded =
		mesh_message_into_typed(im, &mesh_process__alpc_initial_message__descriptor, &error);
	ck_assert_msg(decoded, "%s", error ? error->message : "");
	MeshProcess__AlpcInitialMessage *aim = (MeshProcess__AlpcInitialMessage *)decoded;
	MeshPort *user_port = mesh_port_steal_from_field(aim->user_port);
	ck_assert(user_port);
	mesh_payload_message_free(decoded);

	/* What goes into it (upstream's bridge) is the host's startup message. */
	MeshOneshotSender *start = mesh_oneshot_sender_from_port(user_port, NULL);
	mesh_oneshot_send_message(start, mesh_message_new("start", 5));
	MeshOneshotReceiver *hr = mesh_oneshot_receiver_from_port(host_port, NULL);
	MeshMessage *got = NULL;
	ck_assert_msg(mesh_oneshot_recv_message(hr, 30 * G_USEC_PER_SEC, &got, &error), "%s",
		      error ? error->message : "");
	assert_data(got, "start");
	mesh_message_free(got);
	g_free(name);
	mesh_alpc_node_shutdown(host, 5 * G_USEC_PER_SEC);
	mesh_alpc_node_free(host);
	mesh_alpc_node_shutdown(parent, 5 * G_USEC_PER_SEC);
	mesh_alpc_node_free(parent);
}
END_TEST

/*
 * A host dies with its parent: a middle process (this program, "parent")
 * makes a mesh and launches a waiting host, writes its pid, and is then
 * killed with TerminateProcess() (no cleanup runs in it). The host's job,
 * whose only handle the middle process held, closes and kills the host.
 * The wait has no timeout of its own: the test's timeout is the failure.
 */
START_TEST(test_host_dies_with_parent)
{
	SECURITY_ATTRIBUTES sa = { .nLength = sizeof(sa), .bInheritHandle = TRUE };
	HANDLE rd, wr;
	ck_assert(CreatePipe(&rd, &wr, &sa, 0));
	SetHandleInformation(rd, HANDLE_FLAG_INHERIT, 0);
	char *self = self_path();
	char *cmd = g_strdup_printf("\"%s\" parent", self);
	wchar_t *wcmd = (wchar_t *)g_utf8_to_utf16(cmd, -1, NULL, NULL, NULL);
	STARTUPINFOW si = { .cb = sizeof(si), .dwFlags = STARTF_USESTDHANDLES };
	si.hStdInput = GetStdHandle(STD_INPUT_HANDLE);
	si.hStdOutput = wr;
	si.hStdError = GetStdHandle(STD_ERROR_HANDLE);
	PROCESS_INFORMATION pi;
	ck_assert(CreateProcessW(NULL, wcmd, NULL, NULL, TRUE, 0, NULL, NULL, &si, &pi));
	CloseHandle(wr);
	CloseHandle(pi.hThread);
	g_free(wcmd);
	g_free(cmd);
	g_free(self);

	/* "H <host pid>" from the middle process, "G <grandchild pid>" from its host. */
	char buf[256] = { 0 };
	DWORD got = 0, total = 0;
	DWORD host_pid = 0, grandchild_pid = 0;
	while ((!host_pid || !grandchild_pid) && total < sizeof(buf) - 1 &&
	       ReadFile(rd, buf + total, sizeof(buf) - 1 - total, &got, NULL) && got > 0) {
		total += got;
		const char *h = strstr(buf, "H "), *g = strstr(buf, "G ");
		if (h && strchr(h, '\n'))
			host_pid = (DWORD)strtoul(h + 2, NULL, 10);
		if (g && strchr(g, '\n'))
			grandchild_pid = (DWORD)strtoul(g + 2, NULL, 10);
	}
	ck_assert_msg(host_pid && grandchild_pid, "the middle process and its host wrote '%s'",
		      buf);
	HANDLE host = OpenProcess(SYNCHRONIZE | PROCESS_QUERY_LIMITED_INFORMATION, FALSE, host_pid);
	HANDLE grandchild = OpenProcess(SYNCHRONIZE, FALSE, grandchild_pid);
	ck_assert_msg(host && grandchild, "open: %lu", GetLastError());
	ck_assert_int_eq(WaitForSingleObject(host, 0), WAIT_TIMEOUT); /* running */
	ck_assert_int_eq(WaitForSingleObject(grandchild, 0), WAIT_TIMEOUT);

	ck_assert(TerminateProcess(pi.hProcess, 9));
	ck_assert_int_eq(WaitForSingleObject(pi.hProcess, INFINITE), WAIT_OBJECT_0);
	/*
	 * The host might also leave by itself (its parent's node went), but
	 * the grandchild has nothing to do with the mesh: only the job's
	 * kill-on-close ends it.
	 */
	ck_assert_int_eq(WaitForSingleObject(host, INFINITE), WAIT_OBJECT_0);
	ck_assert_int_eq(WaitForSingleObject(grandchild, INFINITE), WAIT_OBJECT_0);
	CloseHandle(grandchild);
	CloseHandle(host);
	CloseHandle(pi.hProcess);
	CloseHandle(rd);
}
END_TEST

/* The middle process of test_host_dies_with_parent. */
static int parent_main(void)
{
	GError *error = NULL;
	Mesh *mesh = mesh_new("middle", NULL, &error);
	if (!mesh) {
		g_printerr("middle: %s\n", error->message);
		return 2;
	}
	MeshProcessConfig *config = mesh_process_config_new("orphan");
	GPid pid = mesh_launch_host(mesh, config, mesh_message_new("orphan", 6), &error);
	if (!pid) {
		g_printerr("middle: %s\n", error->message);
		return 2;
	}
	printf("H %u\n", GPOINTER_TO_UINT(pid));
	fflush(stdout);
	Sleep(INFINITE);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "sleep") == 0) { /* host_orphan()'s grandchild */
		Sleep(INFINITE);
		return 0;
	}
	/*
	 * TEST-ONLY: every node of this program, parent or host, on the
	 * stand-in; with MESH_ALPC_TEST_REAL=1 (on Windows) on real ALPC.
	 */
	if (!g_getenv("MESH_ALPC_TEST_REAL"))
		process_alpc_node_hook = standin_node;
	GError *error = NULL;
	if (!mesh_try_run_host("test-win-launch", host_main, NULL, &error)) {
		g_printerr("host: %s\n", error->message);
		return 2;
	}
	if (!GetEnvironmentVariableA("MESH_ALPC_STANDIN_NS", NULL, 0)) {
		char ns[64];
		g_snprintf(ns, sizeof(ns), "launch%lu-%lu", GetCurrentProcessId(), GetTickCount());
		SetEnvironmentVariableA("MESH_ALPC_STANDIN_NS", ns); /* the hosts inherit it */
	}
	if (argc > 1 && strcmp(argv[1], "parent") == 0)
		return parent_main();

	/* One case per test: CK_RUN_CASE=echo runs one. */
	Suite *s = suite_create("win-launch");
	const struct {
		const char *name;
		const TTest *test;
	} cases[] = {
		{ "echo", test_launch_echo },
		{ "inspect", test_inspect_host },
		{ "shutdown", test_shutdown_ends_host },
		{ "unsupported", test_unsupported },
		{ "no-alpc", test_no_alpc },
		{ "exit-before-join", test_exit_before_join },
		{ "crash", test_crash },
		{ "bad-handle", test_join_bad_handle },
		{ "join-as-upstream", test_join_as_upstream },
		{ "parent-death", test_host_dies_with_parent },
	};
	for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
		TCase *tc = tcase_create(cases[i].name);
		tcase_set_timeout(tc, 120);
		tcase_add_test(tc, cases[i].test);
		suite_add_tcase(s, tc);
	}
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
