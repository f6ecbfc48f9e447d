/* SPDX-License-Identifier: MIT */
/*
 * The host side (upstream try_run_mesh_host, reference 5.3): join with the
 * invitation from the environment and fd 3, receive the initial message, run
 * the host's work while serving the parent's inspect and crash requests, and
 * exit when the work is done or the parent goes away. A remote host
 * (MESH_STDIO_INVITATION) joins over its stdin and stdout instead, as one
 * end of a point-to-point link.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "startup-private.h"

typedef struct {
	MeshUnixNode *unode; /* a local host */
	MeshP2pLink *link;   /* a remote host */
	MeshNode *node;      /* either's */
	char *name;
	MeshReceiver *requests;
	int status_fd; /* /proc/self/status, opened before the sandbox, or -1 */
} HostState;

/* This host's pid as its parent sees it (field 4 of the InitialMessage); 0: getpid()'s. Atomic. */
static gint outer_pid;

GPid mesh_host_get_pid(void)
{
	gint pid = g_atomic_int_get(&outer_pid);
	return pid > 0 ? pid : getpid();
}

static _Noreturn void host_exit(HostState *s, int status)
{
	static gint exiting;

	/* Once: the work may end while the parent closes us down. */
	if (!g_atomic_int_compare_and_exchange(&exiting, 0, 1))
		for (;;)
			pause(); /* until the first caller's _exit() (the sandbox allows pause) */
	/* Deliver what was sent, then go. */
	if (s->unode)
		mesh_unix_node_shutdown(s->unode, 5 * G_USEC_PER_SEC);
	else
		mesh_p2p_link_shutdown(s->link, 5 * G_USEC_PER_SEC);
	_exit(status);
}

/* For the failure paths before the host runs: nothing else refers to @s yet. */
static void host_state_free(HostState *s)
{
	if (s->unode)
		mesh_unix_node_free(s->unode);
	mesh_p2p_link_free(s->link);
	if (s->status_fd >= 0)
		close(s->status_fd);
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

/* The "sandbox" node of a host's inspect: what pal_sandbox_get_status() says. */
static void inspect_sandbox(GString *out)
{
	static const struct {
		unsigned flag;
		const char *name;
	} namespaces[] = {
		{PAL_SANDBOX_NS_USER, "user"}, {PAL_SANDBOX_NS_MOUNT, "mount"},
		{PAL_SANDBOX_NS_NET, "net"},   {PAL_SANDBOX_NS_PID, "pid"},
		{PAL_SANDBOX_NS_IPC, "ipc"},   {PAL_SANDBOX_NS_UTS, "uts"},
	};
	static const char *const seccomp[] = {"off", "kill", "log"};
	PalSandboxStatus st;

	memset(&st, 0, sizeof(st));
	pal_sandbox_get_status(&st);
	g_string_append_printf(out, "{\"finalized\":%s,\"namespaces\":[",
			       st.finalized ? "true" : "false");
	gboolean first = TRUE;
	for (size_t i = 0; i < G_N_ELEMENTS(namespaces); i++) {
		if (!(st.namespaces & namespaces[i].flag))
			continue;
		g_string_append_printf(out, "%s\"%s\"", first ? "" : ",", namespaces[i].name);
		first = FALSE;
	}
	g_string_append_printf(out,
			       "],\"private_tmp\":%s,\"no_new_privs\":%s,"
			       "\"capabilities_dropped\":%s,\"landlock_abi\":%d,\"seccomp\":\"%s\"}",
			       st.private_tmp ? "true" : "false", st.no_new_privs ? "true" : "false",
			       st.capabilities_dropped ? "true" : "false", st.landlock_abi,
			       (unsigned)st.seccomp < G_N_ELEMENTS(seccomp) ? seccomp[st.seccomp]
									 : "unknown");
}

static char *inspect_self(HostState *s)
{
	GString *out = g_string_new("{\"pid\":");
	guint64 rss;
	guint threads;
	char id[33];
	process_self_stats(s->status_fd, &rss, &threads);
	g_string_append_printf(out, "%d,\"name\":", (int)mesh_host_get_pid());
	process_json_string(out, s->name);
	MeshNode *node = s->node;
	g_string_append_printf(out, ",\"node\":\"%s\",\"rss_kib\":%" G_GUINT64_FORMAT
				    ",\"threads\":%u,\"remote_nodes\":%u,\"rlimits\":{",
			       mesh_uuid_to_string(mesh_node_get_id(node), id), rss, threads,
			       mesh_node_count_remotes(node));
	static const struct {
		const char *name;
		int resource;
	} limits[] = {{"nofile", RLIMIT_NOFILE}, {"as", RLIMIT_AS},     {"core", RLIMIT_CORE},
		      {"nproc", RLIMIT_NPROC},   {"stack", RLIMIT_STACK}, {"memlock", RLIMIT_MEMLOCK}};
	for (size_t i = 0; i < G_N_ELEMENTS(limits); i++) {
		struct rlimit rl;
		if (getrlimit(limits[i].resource, &rl) < 0)
			continue;
		g_string_append_printf(out, "%s\"%s\":[", i ? "," : "", limits[i].name);
		if (rl.rlim_cur == RLIM_INFINITY)
			g_string_append(out, "null,");
		else
			g_string_append_printf(out, "%llu,", (unsigned long long)rl.rlim_cur);
		if (rl.rlim_max == RLIM_INFINITY)
			g_string_append(out, "null]");
		else
			g_string_append_printf(out, "%llu]", (unsigned long long)rl.rlim_max);
	}
	char *workers = worker_inspect_all();
	g_string_append_printf(out, "},\"workers\":%s,\"sandbox\":", workers);
	g_free(workers);
	inspect_sandbox(out);
	g_string_append_c(out, '}');
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
			if (getpid() == 1) {
				/*
				 * Pid 1 of a PID namespace (a sandbox's): the kernel
				 * ignores the SIGABRT of abort() there, only a fault
				 * ends it.
				 */
				g_printerr("host %s: pid 1 of its PID namespace cannot "
					   "abort: trapping instead (SIGILL)\n",
					   s->name);
				__builtin_trap();
			}
			abort();
		}
		if (req->request_case == MESH_PROCESS__HOST_REQUEST__REQUEST_INSPECT_JSON) {
			/* A C parent's: the report as JSON. */
			MeshPort *p = mesh_port_steal_from_field(req->inspect_json->reply);
			if (p) {
				MeshOneshotSender *reply = mesh_oneshot_sender_from_port(
					p, &mesh_process__inspect_reply__descriptor);
				MeshProcess__InspectReply *ir = g_malloc(sizeof(*ir));
				mesh_process__inspect_reply__init(ir);
				char *json = inspect_self(s);
				ir->json = g_strdup(json);
				g_free(json);
				mesh_oneshot_send(reply, &ir->base);
			}
		}
		if (req->request_case == MESH_PROCESS__HOST_REQUEST__REQUEST_INSPECT &&
		    req->inspect->inner) {
			/* Upstream's Deferred: the same report as an InternalNode. */
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

static gboolean decode_env(const char *b64, MeshProcess__EnvInvitation **ret, GError **error)
{
	gsize size = 0;
	guchar *bytes = g_base64_decode(b64, &size);
	ProtobufCMessage *msg = NULL;
	MeshPayloadError perr;

	if (!bytes || size == 0) {
		g_free(bytes);
		g_set_error(error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_INVITATION,
			    "failed to base64 decode invitation");
		return FALSE;
	}
	int r = mesh_payload_decode(&mesh_process__env_invitation__descriptor, bytes, size, NULL,
				    NULL, &msg, &perr);
	g_free(bytes);
	if (r < 0) {
		g_set_error(error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_INVITATION,
			    "failed to protobuf decode invitation: %s", perr.message);
		return FALSE;
	}
	*ret = (MeshProcess__EnvInvitation *)msg;
	return TRUE;
}

/* Takes @var's value out of the environment (not for our own children) and decodes it. */
static gboolean take_env(const char *var, MeshProcess__EnvInvitation **ret, GError **error)
{
	char *copy = g_strdup(getenv(var));
	unsetenv(var);
	gboolean ok = decode_env(copy, ret, error);
	g_free(copy);
	return ok;
}

static void set_process_name(const char *base_name, const char *name)
{
	char comm[16];
	snprintf(comm, sizeof(comm), "%s-%s", base_name, name);
	prctl(PR_SET_NAME, comm, 0, 0, 0);
}

static gboolean run_host(HostState *s, MeshPort *port, MeshHostFunc func, gpointer user_data,
			 GError **error);
static gboolean run_host_with(HostState *s, MeshMessage *first, MeshHostFunc func,
			      gpointer user_data, GError **error);
static gboolean run_spare(HostState *s, MeshPort *port, MeshHostFunc func, gpointer user_data,
			  GError **error);

/*
 * Enters the sandbox the parent asked for (@sandboxed, from the invitation):
 * the finalize part of its profile, from PAL_SANDBOX. Called while the
 * process has one thread and before a byte from the mesh is read. A
 * program that finalized the profile itself took the variable already
 * (pal_sandbox_new_from_env()); its status says it is finalized. Failing,
 * the host says why on stderr and exits with MESH_HOST_EXIT_SANDBOX: it
 * never runs weaker than its parent asked.
 */
static void host_enter_sandbox(HostState *s, gboolean sandboxed)
{
	PalSandbox *sb = NULL;
	const char *step = NULL, *why = NULL;

	/* Before Landlock closes the file system: inspect reads this. */
	s->status_fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
	int r = pal_sandbox_new_from_env(&sb);
	if (r < 0) {
		step = "environment";
	} else if (sb) {
		r = pal_sandbox_finalize(sb);
		if (r < 0)
			step = pal_sandbox_get_failed_step(sb);
		if (r < 0 && !step)
			step = "finalize";
	} else if (sandboxed) {
		PalSandboxStatus st;
		memset(&st, 0, sizeof(st));
		pal_sandbox_get_status(&st);
		if (!st.finalized) {
			step = "environment";
			why = "the parent asked for a sandbox, but " PAL_SANDBOX_ENV " is not set";
		}
	}
	if (!step) {
		pal_sandbox_unref(sb);
		return;
	}
	/* No GLib here: its messages may want files the sandbox half closed. */
	fprintf(stderr, "host %s: sandbox: %s: %s\n", s->name, step, why ? why : strerror(-r));
	fflush(stderr);
	_exit(MESH_HOST_EXIT_SANDBOX);
}

/*
 * A remote host: fds 0 and 1 are the link to the parent. The link gets
 * copies; fd 0 then reads an empty pipe and fd 1 goes to stderr, so that a
 * stray printf() cannot corrupt the stream.
 */
static gboolean run_stdio_host(const char *base_name, MeshHostFunc func, gpointer user_data,
			       GError **error)
{
	MeshProcess__EnvInvitation *env = NULL;

	if (!take_env(MESH_STDIO_INVITATION, &env, error))
		return FALSE;
	int in_fd = fcntl(0, F_DUPFD_CLOEXEC, 3);
	int out_fd = in_fd >= 0 ? fcntl(1, F_DUPFD_CLOEXEC, 3) : -1;
	/*
	 * The read end of a pipe whose write end is closed reads as /dev/null
	 * does, without a file: a program may have entered its sandbox
	 * (Landlock) before this call.
	 */
	int empty[2] = {-1, -1};
	int null_fd = out_fd >= 0 && pipe2(empty, O_CLOEXEC) == 0 ? empty[0] : -1;
	if (empty[1] >= 0)
		close(empty[1]);
	if (null_fd < 0 || dup2(null_fd, 0) < 0 || dup2(2, 1) < 0) {
		g_set_error(error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_INVITATION,
			    "a stdio invitation, but stdin and stdout cannot be taken: %s",
			    g_strerror(errno));
		if (in_fd >= 0)
			close(in_fd);
		if (out_fd >= 0)
			close(out_fd);
		if (null_fd >= 0)
			close(null_fd);
		mesh_payload_message_free(&env->base);
		return FALSE;
	}
	close(null_fd);

	HostState *s = g_new0(HostState, 1);
	s->status_fd = -1;
	s->name = g_strdup(env->node_name && *env->node_name ? env->node_name : "host");
	gboolean sandboxed = env->sandboxed;
	mesh_payload_message_free(&env->base);
	set_process_name(base_name, s->name);
	host_enter_sandbox(s, sandboxed);

	/* The parent's first messages arrive on @port's peer, as on a Unix join. */
	MeshPort *link_port, *port;
	mesh_port_new_pair(&link_port, &port);
	s->link = mesh_p2p_link_new_take(NULL, in_fd, out_fd, link_port, NULL, error);
	if (!s->link) {
		g_prefix_error(error, "joining the parent over stdin and stdout: ");
		mesh_port_close(port);
		host_state_free(s);
		return FALSE;
	}
	s->node = mesh_p2p_link_get_node(s->link);
	return run_host(s, port, func, user_data, error);
}

gboolean mesh_try_run_host(const char *base_name, MeshHostFunc func, gpointer user_data,
			   GError **error)
{
	MeshProcess__EnvInvitation *env = NULL;
	MeshNodeId ln, rn;
	MeshPortId lp, rp;

	g_return_val_if_fail(base_name && func, FALSE);
	g_return_val_if_fail(error == NULL || *error == NULL, FALSE);
	if (getenv(MESH_STDIO_INVITATION))
		return run_stdio_host(base_name, func, user_data, error);
	if (!getenv(MESH_WORKER_INVITATION))
		return TRUE;
	if (!take_env(MESH_WORKER_INVITATION, &env, error))
		return FALSE;
	if (!env->address || !process_address_read(env->address->local_addr, &ln, &lp) ||
	    !process_address_read(env->address->remote_addr, &rn, &rp)) {
		mesh_payload_message_free(&env->base);
		g_set_error(error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_INVITATION,
			    "invitation without addresses");
		return FALSE;
	}
	if (env->socket_fd < 0) {
		g_set_error(error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_INVITATION,
			    "invitation with socket fd %d: no socket to the parent",
			    (int)env->socket_fd);
		mesh_payload_message_free(&env->base);
		return FALSE;
	}
	/*
	 * Before we make any fd: if the socket is missing, the first fd we made
	 * would take its number and be taken for it.
	 */
	int fd = env->socket_fd, type = 0;
	socklen_t len = sizeof(type);
	gboolean is_open = fcntl(fd, F_SETFD, FD_CLOEXEC) == 0;
	if (!is_open || getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 ||
	    type != SOCK_SEQPACKET) {
		g_set_error(error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_INVITATION,
			    "fd %d, the socket to the parent, is %s", fd,
			    is_open ? "not a SOCK_SEQPACKET socket" : "not open");
		mesh_payload_message_free(&env->base);
		return FALSE;
	}

	HostState *s = g_new0(HostState, 1);
	s->status_fd = -1;
	s->name = g_strdup(env->node_name && *env->node_name ? env->node_name : "host");
	guint extensions = env->c_extensions; /* 0 from an upstream parent */
	gboolean sandboxed = env->sandboxed;
	gboolean spare = env->spare;
	mesh_payload_message_free(&env->base);

	set_process_name(base_name, s->name);
	/* One thread still, and nothing read from the mesh yet: the join runs sandboxed. */
	host_enter_sandbox(s, sandboxed);

	MeshPort *port = NULL;
	MeshInvitation *inv = mesh_invitation_new_take(&ln, &lp, &rn, &rp, fd);
	mesh_invitation_set_extensions(inv, extensions);
	s->unode = mesh_unix_node_join(inv, NULL, 30 * G_USEC_PER_SEC, &port, error);
	if (!s->unode) {
		host_state_free(s); /* the error says "joining the mesh" */
		return FALSE;
	}
	s->node = mesh_unix_node_get_node(s->unode);
	if (spare)
		return run_spare(s, port, func, user_data, error);
	return run_host(s, port, func, user_data, error);
}

/*
 * A spare host (mesh_prestart_hosts()): joined, it waits for as long as it
 * takes. The bootstrap port then carries, as an untyped channel, a hello
 * with a oneshot sender that we answer at once (the parent counts us ready)
 * and our request channel, which we serve from then on; at hand-out an
 * InitialMessage without a request channel (field 1) or events (field 3):
 * the caller's message and our pid. The parent dropping the channel before
 * that (its shutdown, a pool removed) ends us quietly.
 */
static gboolean run_spare(HostState *s, MeshPort *port, MeshHostFunc func, gpointer user_data,
			  GError **error)
{
	MeshReceiver *boot = mesh_receiver_from_port(port, NULL);
	MeshMessage *msg = NULL;
	GError *err = NULL;

	if (!mesh_receiver_recv_message(boot, -1, &msg, &err))
		goto ended;
	MeshPort *ready_port = NULL, *req_port = NULL;
	if (mesh_message_get_n_resources(msg) == 2) {
		ready_port = mesh_message_steal_port(msg, 0);
		req_port = mesh_message_steal_port(msg, 1);
	}
	mesh_message_free(msg);
	if (!ready_port || !req_port) {
		mesh_port_close(ready_port);
		mesh_port_close(req_port);
		mesh_receiver_free(boot);
		g_set_error(error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_INVITATION,
			    "a spare's hello must carry two ports");
		host_state_free(s);
		return FALSE;
	}
	/* What a host makes after its InitialMessage, made now: the hand-out is quicker. */
	s->requests = mesh_receiver_from_port(req_port, &mesh_process__host_request__descriptor);
	GMainContext *ctx = g_main_context_new();
	mesh_receiver_set_callback(s->requests, ctx, requests_cb, s, NULL);
	g_thread_unref(g_thread_new("mesh-host-requests", run_loop, g_main_loop_new(ctx, FALSE)));
	MeshOneshotSender *ready = mesh_oneshot_sender_from_port(ready_port, NULL);
	mesh_oneshot_send_message(ready, mesh_message_new(NULL, 0));
	if (!mesh_receiver_recv_message(boot, -1, &msg, &err))
		goto ended;
	mesh_receiver_free(boot);
	return run_host_with(s, msg, func, user_data, error);

ended:
	/* Never handed out: the parent let us go (or went away). */
	g_debug("spare host %s: ended before its hand-out: %s", s->name, err->message);
	g_error_free(err);
	mesh_receiver_free(boot);
	host_exit(s, 0);
}

/* Joined: the bootstrap channel's end is @port (taken). */
static gboolean run_host(HostState *s, MeshPort *port, MeshHostFunc func, gpointer user_data,
			 GError **error)
{
	/*
	 * The bootstrap channel is a oneshot of upstream's InitialMessage: our
	 * request channel and the initial message, and from a C parent its
	 * events channel.
	 */
	MeshOneshotReceiver *boot = mesh_oneshot_receiver_from_port(port, NULL);
	MeshMessage *first = NULL;
	GError *err = NULL;
	if (!mesh_oneshot_recv_message(boot, 30 * G_USEC_PER_SEC, &first, &err)) {
		/* A timeout leaves the receiver ours; a final error consumed it. */
		if (g_error_matches(err, MESH_ERROR, MESH_ERROR_TIMED_OUT))
			mesh_oneshot_receiver_free(boot);
		g_propagate_prefixed_error(error, err, "failed to receive initial message: ");
		host_state_free(s);
		return FALSE;
	}
	return run_host_with(s, first, func, user_data, error);
}

/* @first (taken) is the InitialMessage. */
static gboolean run_host_with(HostState *s, MeshMessage *first, MeshHostFunc func,
			      gpointer user_data, GError **error)
{
	MeshMessage *initial = NULL;
	MeshPort *req_port = NULL, *events_port = NULL;
	guint32 pid = 0;
	/* A spare's request channel came with its hello. */
	if (!process_initial_message_parse(first, s->requests != NULL, &req_port, &initial,
					   &events_port, &pid, error)) {
		/* A spare's request thread runs with @s: it stays, the process ends soon. */
		if (!s->requests)
			host_state_free(s);
		return FALSE;
	}
	if (s->requests)
		mesh_port_close(g_steal_pointer(&req_port));
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
	/* Serve requests on a context of our own while the work runs here (a spare does already). */
	if (req_port) {
		s->requests =
			mesh_receiver_from_port(req_port, &mesh_process__host_request__descriptor);
		GMainContext *ctx = g_main_context_new();
		mesh_receiver_set_callback(s->requests, ctx, requests_cb, s, NULL);
		g_thread_unref(
			g_thread_new("mesh-host-requests", run_loop, g_main_loop_new(ctx, FALSE)));
	}

	if (!func(initial, user_data, error))
		return FALSE;
	host_exit(s, 0);
	return TRUE; /* not reached */
}
