/* SPDX-License-Identifier: MIT */
/*
 * A mesh on a caller's GMainContext, across real processes: blocking calls
 * made on the context's own thread (also inside its dispatch) complete, and
 * a host outlives the thread that launched it. This program is also the
 * host (mesh_try_run_host() at the top of main()); the initial message's
 * bytes name the scenario, its ports are 0 the requests receiver and 1 the
 * results sender.
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
		/* Answers Add rpcs; after each, sends "done N" on the results. */
		MeshRpc *rpc;
		while (mesh_receiver_recv_rpc(requests, &chantest__add__descriptor, -1, &rpc, NULL)) {
			Chantest__Add *add = (Chantest__Add *)mesh_rpc_get_input(rpc);
			guint32 v = add->a + add->b;
			mesh_rpc_complete(rpc, sum_new(v));
			char *text = g_strdup_printf("done %u", v);
			send_text(results, text);
			g_free(text);
		}
	} else if (strcmp(scenario, "hold") == 0) {
		/* Keeps every rpc unanswered until the requests end (or a crash). */
		GPtrArray *held = g_ptr_array_new_with_free_func((GDestroyNotify)mesh_rpc_free);
		MeshRpc *rpc;
		while (mesh_receiver_recv_rpc(requests, &chantest__add__descriptor, -1, &rpc, NULL))
			g_ptr_array_add(held, rpc);
		g_ptr_array_free(held, TRUE);
	} else if (strcmp(scenario, "echo") == 0) {
		MeshMessage *msg;
		while (mesh_receiver_recv_message(requests, -1, &msg, NULL))
			mesh_sender_send_message(results, msg);
	}
	mesh_receiver_free(requests);
	mesh_sender_free(results);
	mesh_message_free(initial);
	g_free(scenario);
	return TRUE;
}

/* Parent side. */

static Host launch(Mesh *mesh, const char *scenario)
{
	MeshProcessConfig *c = mesh_process_config_new(scenario);
	Host h = host_launch(mesh, c, scenario);
	mesh_process_config_free(c);
	return h;
}

static void assert_inspect(Mesh *mesh, Host *h)
{
	char *json = mesh_inspect(mesh, WAIT_US);
	char *pid = g_strdup_printf("\"pid\":%d,\"name\":\"serve\"", (int)h->pid);

	ck_assert_msg(strstr(json, pid), "%s", json);
	ck_assert_msg(strstr(json, "\"report\":{\"pid\":"), "%s", json);
	ck_assert_msg(!strstr(json, "\"error\""), "%s", json);
	g_free(pid);
	g_free(json);
}

typedef struct {
	Mesh *mesh;
	Host *host;
	GMainLoop *loop;
	GThread *thread; /* the one that runs the loop */
	gboolean done;
} Dispatch;

/* The blocking calls from inside a dispatch of the mesh's own context. */
static gboolean blocking_calls_cb(gpointer data)
{
	Dispatch *d = data;

	assert_rpc(d->host, 20, 22, WAIT_US);
	assert_text(d->host->results, -1, "done 42");
	assert_inspect(d->mesh, d->host);
	d->done = TRUE;
	g_main_loop_quit(d->loop);
	return G_SOURCE_REMOVE;
}

/*
 * The mesh on the default context, which only this thread runs (when it
 * runs it at all): an rpc call, a channel receive and an inspect, first
 * outside any dispatch, then from an idle callback of a GMainLoop on that
 * context; then a shutdown there.
 */
START_TEST(test_blocking_calls_on_default_context)
{
	GMainContext *ctx = g_main_context_default();
	GError *error = NULL;
	Mesh *mesh = mesh_new("default", ctx, &error);

	ck_assert_msg(mesh, "%s", error ? error->message : "");
	Host h = launch(mesh, "serve");

	assert_rpc(&h, 1, 2, WAIT_US);
	assert_text(h.results, WAIT_US, "done 3");
	assert_inspect(mesh, &h);

	for (int i = 0; i < 3; i++) {
		Dispatch d = {.mesh = mesh, .host = &h, .loop = g_main_loop_new(ctx, FALSE)};
		g_idle_add(blocking_calls_cb, &d);
		g_main_loop_run(d.loop);
		g_main_loop_unref(d.loop);
		ck_assert(d.done);
	}

	host_close(&h);
	ck_assert_msg(mesh_shutdown(mesh, WAIT_US, &error), "%s", error ? error->message : "");
	ck_assert_uint_eq(mesh_get_host_count(mesh), 0);
	mesh_free(mesh);
}
END_TEST

typedef struct {
	Host *host;
	GMainLoop *loop;
	gboolean got;
	char *error;
} Waiter;

static gboolean quit_cb(gpointer data)
{
	g_main_loop_quit(data);
	return G_SOURCE_REMOVE;
}

/* Waits on another thread for what the main loop's callback causes. */
static gpointer waiter_thread(gpointer data)
{
	Waiter *w = data;
	MeshMessage *msg = NULL;
	GError *error = NULL;

	if (mesh_receiver_recv_message(w->host->results, WAIT_US, &msg, &error)) {
		char *text = message_text(msg);
		w->got = strcmp(text, "done 5") == 0;
		if (!w->got)
			w->error = g_strdup_printf("got \"%s\"", text);
		g_free(text);
		mesh_message_free(msg);
	} else {
		w->error = g_strdup(error->message);
		g_error_free(error);
	}
	/* The main loop runs until here: it does the I/O of this receive. */
	g_idle_add(quit_cb, w->loop);
	return NULL;
}

static gboolean rpc_cb(gpointer data)
{
	Dispatch *d = data;

	/* The waiting thread did not take the context and run this. */
	ck_assert_ptr_eq(g_thread_self(), d->thread);
	assert_rpc(d->host, 2, 3, WAIT_US);
	d->done = TRUE;
	return G_SOURCE_REMOVE;
}

/*
 * A thread that blocks on a channel while the main thread does not run the
 * default context yet must not take the context from the main thread: it
 * waits for the main loop, whose callback makes the host send.
 */
START_TEST(test_other_thread_waits_for_the_loop)
{
	GMainContext *ctx = g_main_context_default();
	GError *error = NULL;
	Mesh *mesh = mesh_new("default", ctx, &error);

	ck_assert_msg(mesh, "%s", error ? error->message : "");
	Host h = launch(mesh, "serve");
	for (int i = 0; i < 3; i++) {
		Dispatch d = {.mesh = mesh,
			      .host = &h,
			      .loop = g_main_loop_new(ctx, FALSE),
			      .thread = g_thread_self()};
		Waiter w = {.host = &h, .loop = d.loop};
		GThread *t = g_thread_new("waiter", waiter_thread, &w);
		/* Let it start waiting first (a wait that took the context would hold it). */
		g_usleep(100 * 1000);
		g_idle_add(rpc_cb, &d);
		g_main_loop_run(d.loop);
		g_main_loop_unref(d.loop);
		g_thread_join(t);
		ck_assert(d.done);
		ck_assert_msg(w.got, "the waiting thread: %s", w.error);
	}
	host_close(&h);
	ck_assert_msg(mesh_shutdown(mesh, WAIT_US, &error), "%s", error ? error->message : "");
	mesh_free(mesh);
}
END_TEST

typedef struct {
	Mesh *mesh;
	Host host;
} LaunchJob;

static gpointer launch_thread(gpointer data)
{
	LaunchJob *job = data;

	job->host = launch(job->mesh, "echo");
	return NULL;
}

static gpointer run_loop(gpointer data)
{
	g_main_loop_run(data);
	return NULL;
}

static gboolean quit_loop_cb(gpointer data)
{
	g_main_loop_quit(data);
	return G_SOURCE_REMOVE;
}

/*
 * Stops run_loop()'s loop from inside its run: a g_main_loop_quit() from here
 * before the thread has entered g_main_loop_run() would be lost, and the
 * join would wait forever.
 */
static void stop_loop(GMainLoop *loop, GThread *t)
{
	GSource *source = g_idle_source_new();
	g_source_set_callback(source, quit_loop_cb, loop, NULL);
	g_source_attach(source, g_main_loop_get_context(loop));
	g_source_unref(source);
	g_thread_join(t);
}

/*
 * Hosts launched from short-lived threads outlive them (the parent-death
 * signal follows the thread that spawned the host): on a context another
 * thread runs, on the default context that this thread iterates, and with
 * the mesh's own thread (@ctx NULL).
 */
static void check_launch_from_exiting_thread(GMainContext *ctx)
{
	GError *error = NULL;
	Mesh *mesh = mesh_new("launcher", ctx, &error);
	LaunchJob jobs[3];

	ck_assert_msg(mesh, "%s", error ? error->message : "");
	for (int i = 0; i < 3; i++) {
		jobs[i].mesh = mesh;
		g_thread_join(g_thread_new("short-lived", launch_thread, &jobs[i]));
	}
	for (int i = 0; i < 3; i++) {
		char *text = g_strdup_printf("still here %d", i);
		send_text(jobs[i].host.requests, text);
		assert_text(jobs[i].host.results, WAIT_US, text);
		ck_assert_int_eq(kill(jobs[i].host.pid, 0), 0);
		g_free(text);
	}
	ck_assert_uint_eq(mesh_get_host_count(mesh), 3);
	for (int i = 0; i < 3; i++)
		host_close(&jobs[i].host);
	ck_assert_msg(mesh_shutdown(mesh, WAIT_US, &error), "%s", error ? error->message : "");
	mesh_free(mesh);
}

START_TEST(test_host_outlives_launching_thread)
{
	GMainContext *ctx = g_main_context_new();
	GMainLoop *loop = g_main_loop_new(ctx, FALSE);
	GThread *t = g_thread_new("caller-loop", run_loop, loop);

	check_launch_from_exiting_thread(ctx);
	stop_loop(loop, t);
	g_main_loop_unref(loop);
	g_main_context_unref(ctx);

	check_launch_from_exiting_thread(g_main_context_default());
	check_launch_from_exiting_thread(NULL);
}
END_TEST

/*
 * A GMainLoop program with no threads of its own: concurrent async rpcs to
 * a host that answers and to one that holds them, an async inspect, and a
 * crash of the holding host from the inspect's callback: every call's
 * callback runs once (the held ones with the failure naming the host), all
 * without blocking the loop. _i: 0 the mesh on the loop's own (default)
 * context, 1 the mesh on its own thread.
 */
typedef struct {
	Mesh *mesh;
	Host *serve, *hold;
	GMainLoop *loop;
	guint n_calls, n_done, n_failed, n_inspects;
	char *hold_pid; /* "pid N" */
} AsyncMain;

enum { ASYNC_N = 200 };

static void async_maybe_quit(AsyncMain *am)
{
	if (am->n_done == am->n_calls && am->n_inspects == 2)
		g_main_loop_quit(am->loop);
}

static void async_sum_cb(ProtobufCMessage *reply, const GError *error, gpointer data)
{
	AsyncMain *am = data;

	ck_assert_msg(reply, "rpc: %s", error ? error->message : "");
	ck_assert_uint_eq(((Chantest__Sum *)reply)->v, 42);
	protobuf_c_message_free_unpacked(reply, NULL);
	am->n_done++;
	async_maybe_quit(am);
}

static void async_held_cb(ProtobufCMessage *reply, const GError *error, gpointer data)
{
	AsyncMain *am = data;

	ck_assert_ptr_null(reply);
	ck_assert_msg(g_error_matches(error, MESH_ERROR, MESH_ERROR_NODE_FAILURE), "%s",
		      error->message);
	/* The culprit is named: the host's name and pid. */
	ck_assert_msg(strstr(error->message, am->hold_pid) && strstr(error->message, "hold"),
		      "%s", error->message);
	am->n_failed++;
	am->n_done++;
	async_maybe_quit(am);
}

static void async_inspect_cb(char *json, gpointer data)
{
	AsyncMain *am = data;
	char *serve = g_strdup_printf("\"pid\":%d,\"name\":\"serve\"", (int)am->serve->pid);
	char *hold = g_strdup_printf("\"pid\":%d,\"name\":\"hold\"", (int)am->hold->pid);

	ck_assert_msg(strstr(json, serve), "%s", json);
	if (++am->n_inspects == 1) {
		ck_assert_msg(strstr(json, hold), "%s", json);
		/* Both hosts answer (the holding one serves inspect on its own). */
		ck_assert_msg(!strstr(json, "\"error\""), "%s", json);
		ck_assert(mesh_crash(am->mesh, am->hold->pid, NULL));
		/* Another inspect while the crash goes on: it never blocks either. */
		mesh_inspect_async(am->mesh, WAIT_US, NULL, async_inspect_cb, am, NULL);
	}
	g_free(serve);
	g_free(hold);
	g_free(json);
	async_maybe_quit(am);
}

static gboolean async_start_cb(gpointer data)
{
	AsyncMain *am = data;

	for (guint i = 0; i < ASYNC_N; i++) {
		mesh_rpc_call_unref(mesh_rpc_call_async(am->serve->requests, add_new(i, 42 - i),
							&chantest__sum__descriptor, WAIT_US, NULL,
							async_sum_cb, am, NULL));
		mesh_rpc_call_unref(mesh_rpc_call_async(am->hold->requests, add_new(i, 1),
							&chantest__sum__descriptor, -1, NULL,
							async_held_cb, am, NULL));
		am->n_calls += 2;
	}
	mesh_inspect_async(am->mesh, WAIT_US, NULL, async_inspect_cb, am, NULL);
	return G_SOURCE_REMOVE;
}

START_TEST(test_async_calls_from_main_loop)
{
	GError *error = NULL;
	Mesh *mesh = mesh_new("async", _i == 0 ? g_main_context_default() : NULL, &error);

	ck_assert_msg(mesh, "%s", error ? error->message : "");
	Host serve = launch(mesh, "serve");
	Host hold = launch(mesh, "hold");
	AsyncMain am = {.mesh = mesh, .serve = &serve, .hold = &hold,
			.loop = g_main_loop_new(NULL, FALSE),
			.hold_pid = g_strdup_printf("pid %d", (int)hold.pid)};

	g_idle_add(async_start_cb, &am);
	g_main_loop_run(am.loop); /* bounded by the test's timeout */
	ck_assert_uint_eq(am.n_done, 2 * ASYNC_N);
	ck_assert_uint_eq(am.n_failed, ASYNC_N);
	g_main_loop_unref(am.loop);
	g_free(am.hold_pid);

	host_close(&serve);
	host_close(&hold);
	mesh_shutdown(mesh, WAIT_US, NULL); /* the crashed host did not exit by itself */
	ck_assert_uint_eq(mesh_get_host_count(mesh), 0);
	mesh_free(mesh);
}
END_TEST

/*
 * An inspect still in flight when the mesh is freed: the callback runs
 * once, later, on its context, with every host listed (its report, or the
 * failure that ended the wait).
 */
static void inspect_after_free_cb(char *json, gpointer data)
{
	char **out = data;

	ck_assert_ptr_null(*out);
	*out = json;
}

START_TEST(test_inspect_async_outlives_mesh)
{
	GError *error = NULL;
	Mesh *mesh = mesh_new("gone", NULL, &error);
	char *json = NULL;

	ck_assert_msg(mesh, "%s", error ? error->message : "");
	Host h = launch(mesh, "hold");
	char *pid = g_strdup_printf("\"pid\":%d,\"name\":\"hold\"", (int)h.pid);
	mesh_inspect_async(mesh, -1, NULL, inspect_after_free_cb, &json, NULL);
	host_close(&h);
	mesh_free(mesh); /* kills the host if it is still there */
	ck_assert_ptr_null(json); /* never inside the calls */
	while (!json)
		g_main_context_iteration(NULL, TRUE); /* bounded by the test's timeout */
	ck_assert_msg(strstr(json, pid) && strstr(json, "\"report\":{"), "%s", json);
	g_free(pid);
	g_free(json);
}
END_TEST

int main(int argc, char **argv)
{
	GError *error = NULL;

	if (!mesh_try_run_host("ctxtest", host_main, NULL, &error)) {
		fprintf(stderr, "host: %s\n", error->message);
		return 3;
	}

	Suite *s = suite_create("libmeshprocess-context");
	TCase *tc = tcase_create("caller-context");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_blocking_calls_on_default_context);
	tcase_add_test(tc, test_host_outlives_launching_thread);
	tcase_add_test(tc, test_other_thread_waits_for_the_loop);
	tcase_add_loop_test(tc, test_async_calls_from_main_loop, 0, 2);
	tcase_add_test(tc, test_inspect_async_outlives_mesh);
	suite_add_tcase(s, tc);

	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_ENV);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
