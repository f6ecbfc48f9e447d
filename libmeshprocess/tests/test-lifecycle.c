/* SPDX-License-Identifier: MIT */
/*
 * Host lifecycle across real processes: exit callbacks (status or signal,
 * expected or a crash), a crashed host relaunched from its callback, the
 * state of a host over its life (mesh_get_host_state(), inspect), and
 * mesh_shutdown_async() from a plain GMainLoop on the main thread (the test
 * itself starts no thread). This program is also the host: the initial
 * message's bytes name the scenario; its ports are 0 the requests receiver
 * and 1 the results sender.
 */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <meshprocess/meshprocess.h>

#include "test-host.h"
#include "test-sandbox-env.h"

/* Bound of every blocking call; the test timeout is far above it. */
#define WAIT_US (20 * G_USEC_PER_SEC)

/* Host side. */

static gboolean host_main(MeshMessage *initial, gpointer data, GError **error)
{
	char *scenario = message_text(initial);
	MeshReceiver *requests = mesh_receiver_from_port(mesh_message_steal_port(initial, 0), NULL);
	MeshSender *results = mesh_sender_from_port(mesh_message_steal_port(initial, 1), NULL);

	if (strcmp(scenario, "serve") == 0) {
		/* Answers Add rpcs until the requests end. */
		MeshRpc *rpc;
		send_text(results, "ready");
		while (mesh_receiver_recv_rpc(requests, &chantest__add__descriptor, -1, &rpc, NULL)) {
			Chantest__Add *add = (Chantest__Add *)mesh_rpc_get_input(rpc);
			mesh_rpc_complete(rpc, sum_new(add->a + add->b));
		}
	} else if (strcmp(scenario, "wait") == 0) {
		send_text(results, "ready");
		for (;;)
			pause(); /* until the parent closes us down, crashes or kills us */
	} else if (strcmp(scenario, "exit3") == 0) {
		mesh_sender_free(results); /* delivered before the exit */
		results = NULL;
		_exit(3);
	}
	/* "done": the work returns at once (the host exits 0). */
	mesh_receiver_free(requests);
	mesh_sender_free(results);
	mesh_message_free(initial);
	g_free(scenario);
	return TRUE;
}

/* Parent side. */

static void assert_ready(Host *h)
{
	assert_text(h->results, WAIT_US, "ready");
}

/* What an exit callback saw. */
typedef struct {
	char *name;
	GPid pid;
	MeshHostExit exit; /* its strings copied */
	MeshHostState state; /* mesh_get_host_state() from inside the callback */
	GThread *thread;
	guint hosts_left; /* mesh_get_host_count() from inside */
} Exit;

typedef struct {
	GPtrArray *exits; /* Exit * */
	int notified;     /* the GDestroyNotify's count */
	/* Shutdown. */
	gboolean shut;
	gboolean clean;
	GError *error;
	guint exits_before_shutdown; /* exit callbacks that ran before it */
	gboolean free_in_callback;
	/* Relaunch. */
	MeshProcessConfig *config;
	Host relaunched;
} Record;

static void exit_free(gpointer data)
{
	Exit *e = data;
	g_free(e->name);
	g_free((char *)e->exit.signal_name);
	g_free((char *)e->exit.description);
	g_free(e);
}

static Record *record_new(void)
{
	Record *r = g_new0(Record, 1);
	r->exits = g_ptr_array_new_with_free_func(exit_free);
	return r;
}

static void record_free(Record *r)
{
	g_ptr_array_free(r->exits, TRUE);
	g_clear_error(&r->error);
	g_free(r);
}

static void record_notify(gpointer data)
{
	((Record *)data)->notified++;
}

static void record_exit(Mesh *mesh, const char *name, GPid pid, const MeshHostExit *exit,
		    gpointer data)
{
	Record *r = data;
	Exit *e = g_new0(Exit, 1);

	e->name = g_strdup(name);
	e->pid = pid;
	e->exit = *exit;
	e->exit.signal_name = g_strdup(exit->signal_name);
	e->exit.description = g_strdup(exit->description);
	/* No library lock is held: these would deadlock otherwise. */
	e->state = mesh_get_host_state(mesh, pid);
	e->hosts_left = mesh_get_host_count(mesh);
	e->thread = g_thread_self();
	g_ptr_array_add(r->exits, e);
}

/* Iterates @ctx until @r has @n exits (each iteration ends on an event). */
static void wait_exits(GMainContext *ctx, Record *r, guint n)
{
	while (r->exits->len < n)
		g_main_context_iteration(ctx, TRUE);
}

static Exit *find_exit(Record *r, GPid pid)
{
	for (guint i = 0; i < r->exits->len; i++) {
		Exit *e = r->exits->pdata[i];
		if (e->pid == pid)
			return e;
	}
	ck_abort_msg("no exit callback for pid %d", (int)pid);
	return NULL;
}

/* A mesh on @ctx (NULL: its own thread), or the test fails. */
static Mesh *mesh_new_ok(const char *name, GMainContext *ctx)
{
	GError *error = NULL;
	Mesh *mesh = mesh_new(name, ctx, &error);
	ck_assert_msg(mesh, "%s", error ? error->message : "");
	return mesh;
}

static MeshProcessConfig *config_with_callback(const char *name, GMainContext *ctx, Record *r)
{
	MeshProcessConfig *c = mesh_process_config_new(name);
	mesh_process_config_set_exit_callback(c, ctx, record_exit, r, record_notify);
	return c;
}

/*
 * Each way a host ends, as its exit callback tells it: killed with SIGKILL
 * (kill()), aborted by mesh_crash(), exit(3) by itself, a host whose work
 * returned (status 0), and hosts stopped by mesh_shutdown(): expected or a
 * crash, state EXITED or CRASHED. The mesh has its own thread; the callbacks
 * run on a context this thread iterates.
 */
START_TEST(test_exit_status_and_signal)
{
	GMainContext *ctx = g_main_context_new();
	GError *error = NULL;
	Mesh *mesh = mesh_new_ok("exits", NULL);
	Record *r = record_new();

	MeshProcessConfig *c = config_with_callback("worker", ctx, r);

	Host killed = host_launch(mesh, c, "wait");
	assert_ready(&killed);
	ck_assert_int_eq(kill(killed.pid, SIGKILL), 0);
	wait_exits(ctx, r, 1);
	Exit *e = find_exit(r, killed.pid);
	ck_assert_str_eq(e->name, "worker");
	ck_assert(e->exit.signaled);
	ck_assert_int_eq(e->exit.signal, SIGKILL);
	ck_assert_str_eq(e->exit.signal_name, "SIGKILL");
	ck_assert_int_eq(e->exit.status, 0);
	ck_assert(!e->exit.expected);
	ck_assert_str_eq(e->exit.description, "killed by signal 9 (Killed)");
	ck_assert_int_eq(e->state, MESH_HOST_STATE_CRASHED);
	ck_assert_ptr_eq(e->thread, g_thread_self());
	ck_assert_int_eq(mesh_get_host_state(mesh, killed.pid), MESH_HOST_STATE_CRASHED);

	Host crashed = host_launch(mesh, c, "wait");
	assert_ready(&crashed);
	ck_assert(mesh_crash(mesh, crashed.pid, NULL));
	wait_exits(ctx, r, 2);
	e = find_exit(r, crashed.pid);
	ck_assert(e->exit.signaled);
	ck_assert_int_eq(e->exit.signal, test_crash_signal());
	ck_assert_str_eq(e->exit.signal_name, test_sandboxed() ? "SIGILL" : "SIGABRT");
	ck_assert(!e->exit.expected);
	ck_assert_int_eq(e->state, MESH_HOST_STATE_CRASHED);

	Host three = host_launch(mesh, c, "exit3");
	wait_exits(ctx, r, 3);
	e = find_exit(r, three.pid);
	ck_assert(!e->exit.signaled);
	ck_assert_int_eq(e->exit.status, 3);
	ck_assert_ptr_null(e->exit.signal_name);
	ck_assert(!e->exit.expected);
	ck_assert_str_eq(e->exit.description, "exited with status 3");
	ck_assert_int_eq(e->state, MESH_HOST_STATE_CRASHED);

	Host done = host_launch(mesh, c, "done");
	wait_exits(ctx, r, 4);
	e = find_exit(r, done.pid);
	ck_assert(!e->exit.signaled);
	ck_assert_int_eq(e->exit.status, 0);
	ck_assert(e->exit.expected);
	ck_assert_int_eq(e->state, MESH_HOST_STATE_EXITED);

	/* Stopped by the mesh: expected, status 0. */
	Host a = host_launch(mesh, c, "wait");
	Host b = host_launch(mesh, c, "wait");
	assert_ready(&a);
	assert_ready(&b);
	ck_assert_msg(mesh_shutdown(mesh, WAIT_US, &error), "%s", error ? error->message : "");
	/* Reaped already (mesh_shutdown() waited); the callbacks wait for this context. */
	ck_assert_int_eq(mesh_get_host_state(mesh, a.pid), MESH_HOST_STATE_EXITED);
	ck_assert_int_eq(mesh_get_host_state(mesh, b.pid), MESH_HOST_STATE_EXITED);
	wait_exits(ctx, r, 6);
	for (int i = 0; i < 2; i++) {
		e = find_exit(r, i ? b.pid : a.pid);
		ck_assert(!e->exit.signaled);
		ck_assert_int_eq(e->exit.status, 0);
		ck_assert(e->exit.expected);
		ck_assert_int_eq(e->state, MESH_HOST_STATE_EXITED);
	}
	ck_assert_int_eq(mesh_get_host_state(mesh, killed.pid), MESH_HOST_STATE_CRASHED);
	ck_assert_int_eq(mesh_get_host_state(mesh, done.pid), MESH_HOST_STATE_EXITED);
	ck_assert_int_eq(mesh_get_host_state(mesh, getpid()), MESH_HOST_STATE_UNKNOWN);

	/* The user data goes when the config and every host let go of it. */
	ck_assert_int_eq(r->notified, 0);
	Host *all[] = {&killed, &crashed, &three, &done, &a, &b};
	for (size_t i = 0; i < G_N_ELEMENTS(all); i++)
		host_close(all[i]);
	mesh_free(mesh);
	ck_assert_int_eq(r->notified, 0); /* the config holds it */
	mesh_process_config_free(c);
	ck_assert_int_eq(r->notified, 1);
	ck_assert_uint_eq(r->exits->len, 6);
	record_free(r);
	g_main_context_unref(ctx);
}
END_TEST

/* The relaunch policy: a host that crashed is launched again, with the same config. */
static void relaunch_on_crash(Mesh *mesh, const char *name, GPid pid, const MeshHostExit *exit,
			      gpointer data)
{
	Record *r = data;

	record_exit(mesh, name, pid, exit, data);
	if (exit->expected)
		return;
	/* A new host with the same config: the same name and callback. */
	r->relaunched = host_launch(mesh, r->config, "serve");
}

/*
 * A crashed host relaunched from its exit callback serves: the mesh on its
 * own thread with the callback on the default context, then the mesh on the
 * default context itself (a GMainLoop on the main thread).
 */
static void check_relaunch(gboolean mesh_on_default)
{
	GMainContext *ctx = g_main_context_default();
	GError *error = NULL;
	Mesh *mesh = mesh_new_ok("relaunch", mesh_on_default ? ctx : NULL);
	Record *r = record_new();

	r->config = mesh_process_config_new("worker");
	mesh_process_config_set_exit_callback(r->config, NULL, relaunch_on_crash, r,
					      record_notify);
	Host h = host_launch(mesh, r->config, "serve");
	assert_ready(&h);
	assert_rpc(&h, 1, 2, WAIT_US);

	for (int round = 0; round < 3; round++) {
		GPid old = h.pid;
		if (round == 1)
			ck_assert(mesh_crash(mesh, old, NULL));
		else
			ck_assert_int_eq(kill(old, SIGKILL), 0);
		wait_exits(ctx, r, round + 1);
		ck_assert_int_gt(r->relaunched.pid, 0);
		ck_assert_int_ne(r->relaunched.pid, old);
		ck_assert_int_eq(mesh_get_host_state(mesh, old), MESH_HOST_STATE_CRASHED);
		host_close(&h);
		h = r->relaunched;
		memset(&r->relaunched, 0, sizeof(r->relaunched));
		/* The new host, with the same name, serves. */
		assert_ready(&h);
		assert_rpc(&h, 20, round, WAIT_US);
		ck_assert_uint_eq(mesh_get_host_count(mesh), 1);
		char *json = mesh_inspect(mesh, WAIT_US);
		char *entry = g_strdup_printf("\"pid\":%d,\"name\":\"worker\",\"state\":", (int)h.pid);
		ck_assert_msg(strstr(json, entry), "%s", json);
		g_free(entry);
		g_free(json);
	}

	/* Stopped by the mesh: expected, so not relaunched. */
	ck_assert_msg(mesh_shutdown(mesh, WAIT_US, &error), "%s", error ? error->message : "");
	wait_exits(ctx, r, 4);
	ck_assert(find_exit(r, h.pid)->exit.expected);
	ck_assert_int_eq(r->relaunched.pid, 0);
	ck_assert_uint_eq(mesh_get_host_count(mesh), 0);
	host_close(&h);
	mesh_free(mesh);
	mesh_process_config_free(r->config);
	ck_assert_int_eq(r->notified, 1);
	record_free(r);
}

START_TEST(test_relaunch_from_callback)
{
	check_relaunch(FALSE);
	check_relaunch(TRUE);
}
END_TEST

static void on_shutdown(Mesh *mesh, gboolean clean, const GError *error, gpointer data)
{
	Record *r = data;

	r->shut = TRUE;
	r->clean = clean;
	r->error = error ? g_error_copy(error) : NULL;
	r->exits_before_shutdown = r->exits->len;
	if (r->free_in_callback)
		mesh_free(mesh);
}

typedef struct {
	GPid stopped; /* a host stopped with SIGSTOP; continued at the third tick */
	guint ticks;
	gboolean shutdown_pending; /* at each tick */
	Record *record;
} Ticker;

static gboolean tick_cb(gpointer data)
{
	Ticker *t = data;

	t->ticks++;
	ck_assert(!t->record->shut); /* the shutdown waits for the stopped host */
	if (t->ticks == 3)
		ck_assert_int_eq(kill(t->stopped, SIGCONT), 0);
	return t->ticks < 3 ? G_SOURCE_CONTINUE : G_SOURCE_REMOVE;
}

/*
 * A host's state over its life, and mesh_shutdown_async() on the default
 * context from a GMainLoop on the main thread: the mesh runs on that
 * context, and the test starts no thread. Until the context runs, a host
 * cannot have joined (its handshake is on the context): STARTING; then
 * RUNNING; STOPPING as soon as mesh_shutdown_async() returns; EXITED in its
 * exit callback. A host stopped with SIGSTOP holds the shutdown (no
 * deadline) while a timeout source of the same loop ticks, and continues it
 * at the third tick: the loop never blocks.
 */
START_TEST(test_state_and_async_shutdown)
{
	GMainContext *ctx = g_main_context_default();
	GMainLoop *loop = g_main_loop_new(ctx, FALSE);
	Mesh *mesh = mesh_new_ok("states", ctx);
	Record *r = record_new();

	MeshProcessConfig *c = config_with_callback("worker", NULL, r);
	Host h = host_launch(mesh, c, "wait");
	Host held = host_launch(mesh, c, "wait");
	ck_assert_int_eq(mesh_get_host_state(mesh, h.pid), MESH_HOST_STATE_STARTING);
	ck_assert_int_eq(mesh_get_host_state(mesh, held.pid), MESH_HOST_STATE_STARTING);

	assert_ready(&h); /* iterates the context */
	assert_ready(&held);
	while (mesh_get_host_state(mesh, h.pid) != MESH_HOST_STATE_RUNNING ||
	       mesh_get_host_state(mesh, held.pid) != MESH_HOST_STATE_RUNNING) {
		MeshHostState state = mesh_get_host_state(mesh, h.pid);
		ck_assert(state == MESH_HOST_STATE_STARTING || state == MESH_HOST_STATE_RUNNING);
		g_main_context_iteration(ctx, TRUE);
	}
	char *json = mesh_inspect(mesh, WAIT_US);
	char *entry = g_strdup_printf("\"pid\":%d,\"name\":\"worker\",\"state\":\"running\"",
				      (int)h.pid);
	ck_assert_msg(strstr(json, entry), "%s", json);
	ck_assert_msg(!strstr(json, "\"error\""), "%s", json);
	g_free(entry);
	g_free(json);

	ck_assert_int_eq(kill(held.pid, SIGSTOP), 0);
	Ticker t = {.stopped = held.pid, .record = r};
	mesh_shutdown_async(mesh, -1, NULL, on_shutdown, r, record_notify);
	ck_assert_int_eq(mesh_get_host_state(mesh, h.pid), MESH_HOST_STATE_STOPPING);
	ck_assert_int_eq(mesh_get_host_state(mesh, held.pid), MESH_HOST_STATE_STOPPING);
	json = mesh_inspect(mesh, 0);
	ck_assert_msg(strstr(json, "\"state\":\"stopping\""), "%s", json);
	ck_assert_msg(!strstr(json, "\"state\":\"running\""), "%s", json);
	g_free(json);
	GError *down = NULL;
	MeshProcessConfig *late = mesh_process_config_new("late");
	MeshMessage *initial = mesh_message_new("done", 4);
	ck_assert_int_eq(mesh_launch_host(mesh, late, initial, &down), 0);
	ck_assert(g_error_matches(down, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_SHUT_DOWN));
	g_error_free(down);
	mesh_process_config_free(late);

	g_timeout_add(10, tick_cb, &t);
	while (!r->shut)
		g_main_context_iteration(ctx, TRUE);
	ck_assert_uint_eq(t.ticks, 3);
	ck_assert_msg(r->clean, "%s", r->error ? r->error->message : "");
	ck_assert_ptr_null(r->error);
	/* The exits ran first, each EXITED, expected. */
	ck_assert_uint_eq(r->exits_before_shutdown, 2);
	for (int i = 0; i < 2; i++) {
		Exit *e = find_exit(r, i ? held.pid : h.pid);
		ck_assert(e->exit.expected);
		ck_assert_int_eq(e->exit.status, 0);
		ck_assert_int_eq(e->state, MESH_HOST_STATE_EXITED);
	}
	ck_assert_int_eq(mesh_get_host_state(mesh, h.pid), MESH_HOST_STATE_EXITED);
	ck_assert_int_eq(r->notified, 1); /* the shutdown's, after its callback */
	host_close(&h);
	host_close(&held);
	mesh_process_config_free(c);
	mesh_free(mesh);
	ck_assert_int_eq(r->notified, 2);
	record_free(r);
	g_main_loop_unref(loop);
}
END_TEST

/*
 * A deadline and a host that ignores the shutdown (stopped with SIGSTOP):
 * the callback says not clean (MESH_PROCESS_ERROR_TIMED_OUT), the host was
 * killed by the mesh (SIGKILL, expected), and the callback frees the mesh.
 * Then a mesh freed while its async shutdown waits for such a host: the
 * host is killed at once, the shutdown's callback never runs, its user data
 * is freed.
 */
START_TEST(test_async_shutdown_deadline)
{
	GMainContext *ctx = g_main_context_default();
	Mesh *mesh = mesh_new_ok("deadline", ctx);
	Record *r = record_new();

	MeshProcessConfig *c = config_with_callback("stubborn", NULL, r);
	Host h = host_launch(mesh, c, "wait");
	assert_ready(&h);
	ck_assert_int_eq(kill(h.pid, SIGSTOP), 0);
	r->free_in_callback = TRUE;
	mesh_shutdown_async(mesh, G_USEC_PER_SEC / 2, NULL, on_shutdown, r, record_notify);
	while (!r->shut)
		g_main_context_iteration(ctx, TRUE);
	ck_assert(!r->clean);
	ck_assert(g_error_matches(r->error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_TIMED_OUT));
	ck_assert_uint_eq(r->exits_before_shutdown, 1);
	Exit *e = find_exit(r, h.pid);
	ck_assert(e->exit.signaled);
	ck_assert_str_eq(e->exit.signal_name, "SIGKILL");
	ck_assert(e->exit.expected);
	ck_assert_int_eq(e->state, MESH_HOST_STATE_EXITED);
	ck_assert_int_eq(kill(h.pid, 0), -1);
	ck_assert_int_eq(r->notified, 1);
	host_close(&h);

	/* Freed while the shutdown waits (no deadline). */
	mesh = mesh_new_ok("freed", ctx);
	Record *r2 = record_new();
	h = host_launch(mesh, c, "wait");
	assert_ready(&h);
	ck_assert_int_eq(kill(h.pid, SIGSTOP), 0);
	mesh_shutdown_async(mesh, -1, NULL, on_shutdown, r2, record_notify);
	mesh_free(mesh);
	ck_assert_int_eq(kill(h.pid, 0), -1);
	ck_assert_int_eq(r2->notified, 1);
	ck_assert(!r2->shut);
	/* No callback comes later. */
	for (int i = 0; i < 10; i++)
		g_main_context_iteration(ctx, FALSE);
	ck_assert(!r2->shut);
	ck_assert_uint_eq(r->exits->len, 1); /* the host killed by mesh_free(): no callback */
	host_close(&h);
	mesh_process_config_free(c);
	ck_assert_int_eq(r->notified, 2);
	record_free(r);
	record_free(r2);
}
END_TEST

static void free_mesh_on_exit(Mesh *mesh, const char *name, GPid pid, const MeshHostExit *exit,
			      gpointer data)
{
	record_exit(mesh, name, pid, exit, data);
	mesh_free(mesh);
}

/*
 * The exit callback frees the mesh, which still has a running host (killed
 * by mesh_free(), so it calls nothing): with the mesh on its own thread, and
 * on the default context that runs the callback.
 */
START_TEST(test_free_in_exit_callback)
{
	GMainContext *ctx = g_main_context_default();

	for (int own = 0; own < 2; own++) {
		Mesh *mesh = mesh_new_ok("freed", own ? NULL : ctx);
		Record *r = record_new();

		MeshProcessConfig *c = mesh_process_config_new("worker");
		mesh_process_config_set_exit_callback(c, NULL, free_mesh_on_exit, r, record_notify);
		Host other = host_launch(mesh, c, "wait");
		assert_ready(&other);
		Host h = host_launch(mesh, c, "exit3");
		wait_exits(ctx, r, 1);
		ck_assert_int_eq(find_exit(r, h.pid)->exit.status, 3);
		ck_assert_int_eq(kill(other.pid, 0), -1); /* mesh_free() killed it */
		for (int i = 0; i < 10; i++)
			g_main_context_iteration(ctx, FALSE);
		ck_assert_uint_eq(r->exits->len, 1);
		mesh_process_config_free(c);
		ck_assert_int_eq(r->notified, 1);
		host_close(&h);
		host_close(&other);
		record_free(r);
	}
}
END_TEST

/* ssh's part for a remote host: a shell that runs the words it is given as one command line. */
static const char *const local_ssh[] = {"sh", "-c", "exec sh -c \"exec $*\"", "sh", NULL};

/*
 * Right after mesh_shutdown_async() returned: STOPPING, or already EXITED
 * (the mesh on its own thread may have seen the host's exit meanwhile).
 */
static void assert_stopping(Mesh *mesh, GPid pid)
{
	MeshHostState state = mesh_get_host_state(mesh, pid);
	ck_assert_msg(state == MESH_HOST_STATE_STOPPING || state == MESH_HOST_STATE_EXITED,
		      "host %d in state %d after the shutdown began", (int)pid, (int)state);
}

/* Until @pid is RUNNING (the mesh on its own thread processes the join). */
static void wait_running(Mesh *mesh, GPid pid)
{
	MeshHostState state;
	while ((state = mesh_get_host_state(mesh, pid)) == MESH_HOST_STATE_STARTING)
		g_usleep(1000);
	ck_assert_int_eq(state, MESH_HOST_STATE_RUNNING);
}

/*
 * A remote host (mesh_process_config_set_remote_command(), over a local
 * command that plays ssh's part) has a local host's lifecycle: RUNNING once
 * its HostEvent.joined came over the link (inspect says so, with its
 * transport); killed from outside (the command's pid), its exit callback
 * says a crash with SIGKILL, once, after it left the mesh's table, and the
 * callback relaunches it (remote again, serving); mesh_shutdown_async()
 * stops the new one: expected, status 0, EXITED, before the shutdown's
 * callback.
 */
START_TEST(test_remote_lifecycle)
{
	GMainContext *ctx = g_main_context_new();
	Mesh *mesh = mesh_new_ok("remote-life", NULL);
	Record *r = record_new();

	r->config = mesh_process_config_new("far");
	mesh_process_config_set_remote_command(r->config, local_ssh);
	mesh_process_config_set_exit_callback(r->config, ctx, relaunch_on_crash, r,
					      record_notify);
	Host h = host_launch(mesh, r->config, "serve");
	assert_ready(&h);
	wait_running(mesh, h.pid);
	char *json = mesh_inspect(mesh, WAIT_US);
	char *entry = g_strdup_printf("\"pid\":%d,\"name\":\"far\",\"state\":\"running\",", (int)h.pid);
	ck_assert_msg(strstr(json, entry), "%s", json);
	ck_assert_msg(strstr(json, "\"transport\":\"p2p\""), "%s", json);
	ck_assert_msg(!strstr(json, "\"error\""), "%s", json);
	g_free(entry);
	g_free(json);

	ck_assert_int_eq(kill(h.pid, SIGKILL), 0);
	wait_exits(ctx, r, 1);
	Exit *e = find_exit(r, h.pid);
	ck_assert_str_eq(e->name, "far");
	ck_assert(e->exit.signaled);
	ck_assert_int_eq(e->exit.signal, SIGKILL);
	ck_assert_str_eq(e->exit.signal_name, "SIGKILL");
	ck_assert(!e->exit.expected);
	ck_assert_int_eq(e->state, MESH_HOST_STATE_CRASHED);
	ck_assert_uint_eq(e->hosts_left, 0); /* gone from the table before its callback */
	ck_assert_int_eq(mesh_get_host_state(mesh, h.pid), MESH_HOST_STATE_CRASHED);

	/* Relaunched from the callback: remote again, and it serves. */
	ck_assert_int_gt(r->relaunched.pid, 0);
	host_close(&h);
	h = r->relaunched;
	memset(&r->relaunched, 0, sizeof(r->relaunched));
	assert_ready(&h);
	assert_rpc(&h, 40, 2, WAIT_US);
	wait_running(mesh, h.pid);
	json = mesh_inspect(mesh, WAIT_US);
	entry = g_strdup_printf("\"pid\":%d,\"name\":\"far\",\"state\":\"running\",", (int)h.pid);
	ck_assert_msg(strstr(json, entry), "%s", json);
	ck_assert_msg(strstr(json, "\"transport\":\"p2p\""), "%s", json);
	g_free(entry);
	g_free(json);

	mesh_shutdown_async(mesh, WAIT_US, ctx, on_shutdown, r, NULL);
	assert_stopping(mesh, h.pid);
	while (!r->shut)
		g_main_context_iteration(ctx, TRUE);
	ck_assert_msg(r->clean, "%s", r->error ? r->error->message : "");
	ck_assert_uint_eq(r->exits_before_shutdown, 2);
	e = find_exit(r, h.pid);
	ck_assert(!e->exit.signaled);
	ck_assert_int_eq(e->exit.status, 0);
	ck_assert(e->exit.expected);
	ck_assert_int_eq(e->state, MESH_HOST_STATE_EXITED);
	ck_assert_int_eq(r->relaunched.pid, 0); /* expected: not relaunched */
	ck_assert_uint_eq(mesh_get_host_count(mesh), 0);
	host_close(&h);
	mesh_free(mesh);
	ck_assert_uint_eq(r->exits->len, 2); /* once each */
	mesh_process_config_free(r->config);
	ck_assert_int_eq(r->notified, 1);
	record_free(r);
	g_main_context_unref(ctx);
}
END_TEST

/*
 * A remote host that ignores the shutdown (its command stopped with
 * SIGSTOP): the mesh kills the command at the deadline, and the exit says
 * SIGKILL, expected.
 */
START_TEST(test_remote_shutdown_deadline)
{
	GMainContext *ctx = g_main_context_new();
	GError *error = NULL;
	Mesh *mesh = mesh_new_ok("remote-deadline", NULL);
	Record *r = record_new();

	MeshProcessConfig *c = config_with_callback("far-stubborn", ctx, r);
	mesh_process_config_set_remote_command(c, local_ssh);
	Host h = host_launch(mesh, c, "wait");
	assert_ready(&h);
	wait_running(mesh, h.pid);
	ck_assert_int_eq(kill(h.pid, SIGSTOP), 0);
	ck_assert(!mesh_shutdown(mesh, G_USEC_PER_SEC / 2, &error));
	ck_assert(g_error_matches(error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_TIMED_OUT));
	g_clear_error(&error);
	ck_assert_uint_eq(mesh_get_host_count(mesh), 0);
	wait_exits(ctx, r, 1);
	Exit *e = find_exit(r, h.pid);
	ck_assert(e->exit.signaled);
	ck_assert_str_eq(e->exit.signal_name, "SIGKILL");
	ck_assert(e->exit.expected);
	ck_assert_int_eq(e->state, MESH_HOST_STATE_EXITED);
	host_close(&h);
	mesh_free(mesh);
	mesh_process_config_free(c);
	ck_assert_uint_eq(r->exits->len, 1);
	ck_assert_int_eq(r->notified, 1);
	record_free(r);
	g_main_context_unref(ctx);
}
END_TEST

int main(int argc, char **argv)
{
	GError *error = NULL;

	if (!mesh_try_run_host("lifetest", host_main, NULL, &error)) {
		fprintf(stderr, "host: %s\n", error->message);
		return 3;
	}

	Suite *s = suite_create("libmeshprocess-lifecycle");
	TCase *tc = tcase_create("lifecycle");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_exit_status_and_signal);
	tcase_add_test(tc, test_relaunch_from_callback);
	tcase_add_test(tc, test_state_and_async_shutdown);
	tcase_add_test(tc, test_async_shutdown_deadline);
	tcase_add_test(tc, test_free_in_exit_callback);
	tcase_add_test(tc, test_remote_lifecycle);
	tcase_add_test(tc, test_remote_shutdown_deadline);
	suite_add_tcase(s, tc);

	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_ENV);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
