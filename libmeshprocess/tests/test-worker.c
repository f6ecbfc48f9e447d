/* SPDX-License-Identifier: MIT */
/*
 * Workers (upstream mesh_worker's tests, reference 7.7, and more), in
 * process and in a real host. This program is also the host: a launched host
 * re-executes it, and mesh_try_run_host() at the top of main() runs a worker
 * runner. The host's initial message: port 0 the runner port, port 1 a
 * sender that gets "runner done" (or "runner failed: ...") when
 * mesh_worker_host_run() returns.
 */
#include <check.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <meshprocess/meshprocess.h>

#include "test-sandbox-env.h"

#include "../../libmeshremote/tests/log-count.h"

#define WAIT_US (20 * G_USEC_PER_SEC)

static void send_text(MeshSender *s, const char *text)
{
	mesh_sender_send_message(s, mesh_message_new(text, strlen(text)));
}

static char *message_text(MeshMessage *msg)
{
	size_t size;
	const uint8_t *data = mesh_message_get_data(msg, &size);
	return g_strndup((const char *)data, size);
}

/* The workers. */

/* Runs until stopped. */
static gboolean wait_worker(MeshMessage *params, MeshWorkerContext *ctx, gpointer data,
			    GError **error)
{
	mesh_message_free(params);
	while (!mesh_worker_context_wait_stop(ctx, 100 * 1000))
		;
	return TRUE;
}

/* Fails at once. */
static gboolean fail_worker(MeshMessage *params, MeshWorkerContext *ctx, gpointer data,
			    GError **error)
{
	mesh_message_free(params);
	g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_FAILED,
		    "the worker failed on purpose: inner cause");
	return FALSE;
}

/* Returns at once, without being stopped. */
static gboolean quick_worker(MeshMessage *params, MeshWorkerContext *ctx, gpointer data,
			     GError **error)
{
	mesh_message_free(params);
	return TRUE;
}

/* Polls the context's fd until a stop is requested. */
static gboolean poll_worker(MeshMessage *params, MeshWorkerContext *ctx, gpointer data,
			    GError **error)
{
	mesh_message_free(params);
	struct pollfd p = {.fd = mesh_worker_context_get_fd(ctx), .events = POLLIN};
	while (!mesh_worker_context_should_stop(ctx))
		poll(&p, 1, 100);
	/* Once TRUE, TRUE. */
	return mesh_worker_context_should_stop(ctx) && mesh_worker_context_wait_stop(ctx, -1);
}

/*
 * Parameters: the bytes are a tag; resource 0 a sender for reports, resource
 * 1 an fd to write "fd ok" into. Reports "got TAG in THREAD pid PID", waits
 * for the stop, reports "stopping TAG".
 */
static gboolean params_worker(MeshMessage *params, MeshWorkerContext *ctx, gpointer data,
			      GError **error)
{
	char *tag = message_text(params);
	MeshPort *port = mesh_message_steal_port(params, 0);
	int fd = mesh_message_steal_fd(params, 1);
	mesh_message_free(params);
	if (!port || fd < 0) {
		g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_INVAL, "bad parameters for %s", tag);
		g_free(tag);
		mesh_port_close(port);
		if (fd >= 0)
			close(fd);
		return FALSE;
	}
	MeshSender *reports = mesh_sender_from_port(port, NULL);
	gboolean wrote = write(fd, "fd ok", 5) == 5;
	close(fd);
	char thread[32] = "";
	prctl(PR_GET_NAME, thread, 0, 0, 0);
	char *text = g_strdup_printf("got %s in %s pid %d%s", tag, thread, (int)mesh_host_get_pid(),
				     wrote ? "" : " (write failed)");
	send_text(reports, text);
	g_free(text);
	while (!mesh_worker_context_wait_stop(ctx, 100 * 1000))
		;
	text = g_strdup_printf("stopping %s (%s)", tag, mesh_worker_context_get_name(ctx));
	send_text(reports, text);
	g_free(text);
	mesh_sender_free(reports);
	g_free(tag);
	return TRUE;
}

/*
 * Restartable. Parameters (or the state of a restart): a number N as text.
 * Inspect says {"value":N}. On a restart request it hands N over, unless N
 * is negative: then it refuses and goes on.
 */
static char *counter_inspect(MeshWorkerContext *ctx, gpointer data)
{
	return g_strdup_printf("{\"value\":%d}", *(int *)data);
}

static gboolean counter_worker(MeshMessage *params, MeshWorkerContext *ctx, gpointer data,
			       GError **error)
{
	char *text = message_text(params);
	int value = atoi(text);
	g_free(text);
	mesh_message_free(params);
	mesh_worker_context_set_inspect(ctx, counter_inspect, &value);
	for (;;) {
		while (!mesh_worker_context_wait_stop(ctx, 100 * 1000))
			;
		if (!mesh_worker_context_restart_requested(ctx))
			return TRUE;
		if (value < 0) {
			mesh_worker_context_refuse_restart(ctx, "counter refuses: negative");
			continue;
		}
		char *state = g_strdup_printf("%d", value);
		mesh_worker_context_send_state(ctx, mesh_message_new(state, strlen(state)));
		g_free(state);
		return TRUE;
	}
}

static gint notified;

static void count_notify(gpointer data)
{
	g_atomic_int_inc(&notified);
}

static MeshWorkerRegistry *registry_build(void)
{
	MeshWorkerRegistry *reg = mesh_worker_registry_new();
	mesh_worker_registry_add(reg, "wait", wait_worker, NULL, NULL);
	mesh_worker_registry_add(reg, "fail", fail_worker, NULL, NULL);
	mesh_worker_registry_add(reg, "quick", quick_worker, NULL, NULL);
	mesh_worker_registry_add(reg, "poll", poll_worker, NULL, NULL);
	mesh_worker_registry_add(reg, "params", params_worker, NULL, NULL);
	mesh_worker_registry_add_restartable(reg, "counter", counter_worker, NULL, NULL);
	/* Restartable, but it stops without handing anything over. */
	mesh_worker_registry_add_restartable(reg, "quitter", wait_worker, NULL, NULL);
	return reg;
}

/* Host side. */

static gboolean host_main(MeshMessage *initial, gpointer data, GError **error)
{
	MeshPort *runner = mesh_message_steal_port(initial, 0);
	MeshSender *done = mesh_sender_from_port(mesh_message_steal_port(initial, 1), NULL);
	mesh_message_free(initial);

	MeshWorkerRegistry *reg = registry_build();
	GError *local = NULL;
	gboolean ok = mesh_worker_host_run(runner, reg, &local);
	char *text = ok ? g_strdup("runner done") : g_strdup_printf("runner failed: %s",
								     local->message);
	send_text(done, text);
	g_free(text);
	g_clear_error(&local);
	mesh_worker_registry_free(reg);
	mesh_sender_free(done);
	return TRUE;
}

/* Parent side. */

static Mesh *mesh;
static char *self_path; /* the hosts run this program natively, even under valgrind */

static void setup(void)
{
	GError *error = NULL;
	mesh = mesh_new("test-worker", NULL, &error);
	ck_assert_msg(mesh != NULL, "%s", error ? error->message : "");
}

static void teardown(void)
{
	mesh_free(mesh);
	mesh = NULL;
}

typedef struct {
	MeshWorkerHost *host;
	MeshReceiver *done; /* "runner done" from the host */
	GPid pid;
} RemoteHost;

static RemoteHost launch_runner_host(const char *name)
{
	RemoteHost h = {0};
	MeshPort *runner = NULL;
	MeshSender *ds;
	GError *error = NULL;

	h.host = mesh_worker_host_new(&runner);
	ck_assert_ptr_nonnull(runner);
	mesh_channel_new(NULL, &ds, &h.done);
	MeshMessage *initial = mesh_message_new(NULL, 0);
	ck_assert_int_eq(mesh_message_add_port_take(initial, runner), 0);
	ck_assert_int_eq(mesh_message_add_port_take(initial, mesh_sender_into_port(ds)), 1);
	MeshProcessConfig *c = mesh_process_config_new(name);
	mesh_process_config_set_program(c, self_path);
	h.pid = mesh_launch_host(mesh, c, initial, &error);
	ck_assert_msg(h.pid > 0, "%s", error ? error->message : "");
	mesh_process_config_free(c);
	return h;
}

static char *recv_text(MeshReceiver *r)
{
	MeshMessage *msg = NULL;
	GError *error = NULL;
	ck_assert_msg(mesh_receiver_recv_message(r, WAIT_US, &msg, &error), "no message: %s",
		      error ? error->message : "");
	char *text = message_text(msg);
	mesh_message_free(msg);
	return text;
}

static void assert_text(MeshReceiver *r, const char *want)
{
	char *t = recv_text(r);
	ck_assert_str_eq(t, want);
	g_free(t);
}

static void assert_nothing_yet(MeshReceiver *r, gint64 timeout_us)
{
	MeshMessage *msg = NULL;
	GError *error = NULL;
	gboolean got = mesh_receiver_recv_message(r, timeout_us, &msg, &error);
	char *t = got ? message_text(msg) : NULL;
	ck_assert_msg(!got, "unexpected message: %s", t);
	ck_assert_msg(g_error_matches(error, MESH_ERROR, MESH_ERROR_TIMED_OUT), "%s",
		      error->message);
	g_error_free(error);
}

static void wait_hosts_gone(void)
{
	for (int i = 0; i < 4000 && mesh_get_host_count(mesh) > 0; i++)
		g_usleep(5000);
	ck_assert_uint_eq(mesh_get_host_count(mesh), 0);
}

static MeshWorkerHandle *launch_ok(MeshWorkerHost *host, const char *name, MeshMessage *params)
{
	GError *error = NULL;
	MeshWorkerHandle *h = mesh_worker_host_launch(host, name, params, WAIT_US, &error);
	ck_assert_msg(h != NULL, "launching %s: %s", name, error ? error->message : "");
	ck_assert_str_eq(mesh_worker_handle_get_name(h), name);
	return h;
}

static void assert_event(MeshWorkerHandle *h, MeshWorkerEvent want, const char *want_message)
{
	MeshWorkerEvent ev = -1;
	char *message = NULL;
	GError *error = NULL;
	ck_assert_msg(mesh_worker_handle_next_event(h, WAIT_US, &ev, &message, &error),
		      "no event: %s", error ? error->message : "");
	ck_assert_msg(ev == want, "event %d, wanted %d (%s)", ev, want, message ? message : "");
	if (want_message)
		ck_assert_msg(message && strstr(message, want_message), "\"%s\" not in \"%s\"",
			      want_message, message ? message : "(null)");
	else if (want != MESH_WORKER_EVENT_FAILED)
		ck_assert_ptr_null(message);
	g_free(message);
}

static void assert_launch_fails(MeshWorkerHost *host, const char *name, const char *want)
{
	GError *error = NULL;
	MeshWorkerHandle *h = mesh_worker_host_launch(host, name, NULL, WAIT_US, &error);
	ck_assert_ptr_null(h);
	ck_assert_msg(g_error_matches(error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_FAILED), "%s",
		      error->message);
	ck_assert_msg(strstr(error->message, want), "\"%s\" not in \"%s\"", want, error->message);
	g_error_free(error);
}

/* A runner on a thread of this process. */

typedef struct {
	MeshPort *port;
	MeshWorkerRegistry *reg;
	GThread *thread;
	gint done;
	gboolean ok;
} LocalRunner;

static gpointer local_runner_thread(gpointer data)
{
	LocalRunner *r = data;
	r->ok = mesh_worker_host_run(r->port, r->reg, NULL);
	g_atomic_int_set(&r->done, 1);
	return NULL;
}

static MeshWorkerHost *local_runner_start_with(LocalRunner *r, MeshWorkerRegistry *reg)
{
	MeshWorkerHost *host = mesh_worker_host_new(&r->port);
	r->reg = reg;
	r->thread = g_thread_new("runner", local_runner_thread, r);
	return host;
}

static MeshWorkerHost *local_runner_start(LocalRunner *r)
{
	MeshWorkerHost *host = mesh_worker_host_new(&r->port);
	r->reg = registry_build();
	r->thread = g_thread_new("runner", local_runner_thread, r);
	return host;
}

static gboolean local_runner_wait(LocalRunner *r, gint64 timeout_us)
{
	gint64 end = g_get_monotonic_time() + timeout_us;
	while (!g_atomic_int_get(&r->done) && g_get_monotonic_time() < end)
		g_usleep(2000);
	return g_atomic_int_get(&r->done);
}

static void local_runner_join(LocalRunner *r)
{
	ck_assert_msg(local_runner_wait(r, WAIT_US), "the runner did not finish");
	g_thread_join(r->thread);
	ck_assert(r->ok);
	mesh_worker_registry_free(r->reg);
}

/* Tests. */

START_TEST(test_registry_unsupported)
{
	GError *error = NULL;
	MeshWorkerRegistry *reg = registry_build();
	ck_assert(mesh_worker_registry_check(reg, "wait", &error));
	ck_assert_ptr_null(error);
	ck_assert(!mesh_worker_registry_check(reg, "no-such-worker", &error));
	ck_assert(g_error_matches(error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_FAILED));
	ck_assert_str_eq(error->message, "unsupported worker no-such-worker");
	g_clear_error(&error);

	/* Registering a name again replaces it, notifying the old data. */
	notified = 0;
	mesh_worker_registry_add(reg, "extra", quick_worker, GINT_TO_POINTER(1), count_notify);
	mesh_worker_registry_add(reg, "extra", wait_worker, GINT_TO_POINTER(2), count_notify);
	ck_assert_int_eq(g_atomic_int_get(&notified), 1);
	ck_assert(mesh_worker_registry_check(reg, "extra", NULL));
	mesh_worker_registry_free(reg);
	ck_assert_int_eq(g_atomic_int_get(&notified), 2);
}
END_TEST

START_TEST(test_local_runner)
{
	LocalRunner r = {0};
	MeshWorkerHost *host = local_runner_start(&r);

	/* Unknown name: an error naming it. */
	assert_launch_fails(host, "no-such-worker", "unsupported worker no-such-worker");

	/* A worker that ends on its own: Stopped, then the end, again and again. */
	MeshWorkerHandle *h = launch_ok(host, "quick", NULL);
	assert_event(h, MESH_WORKER_EVENT_STOPPED, NULL);
	assert_event(h, MESH_WORKER_EVENT_END, NULL);
	assert_event(h, MESH_WORKER_EVENT_END, NULL);
	mesh_worker_handle_stop(h); /* harmless now */
	mesh_worker_handle_free(h);

	/* Start without waiting: every event comes from the handle. */
	h = mesh_worker_host_start(host, "no-such-worker", NULL);
	assert_event(h, MESH_WORKER_EVENT_FAILED, "unsupported worker no-such-worker");
	assert_event(h, MESH_WORKER_EVENT_END, NULL);
	mesh_worker_handle_free(h);
	h = mesh_worker_host_start(host, "quick", mesh_message_new("x", 1));
	assert_event(h, MESH_WORKER_EVENT_STARTED, NULL);
	assert_event(h, MESH_WORKER_EVENT_STOPPED, NULL);
	assert_event(h, MESH_WORKER_EVENT_END, NULL);
	mesh_worker_handle_free(h);

	/* A worker polling its fd; a clone of the host launches it. */
	MeshWorkerHost *clone = mesh_worker_host_clone(host);
	h = launch_ok(clone, "poll", NULL);
	MeshWorkerEvent ev;
	GError *error = NULL;
	ck_assert(!mesh_worker_handle_next_event(h, 0, &ev, NULL, &error));
	ck_assert(g_error_matches(error, MESH_ERROR, MESH_ERROR_EMPTY));
	g_clear_error(&error);
	ck_assert(!mesh_worker_handle_next_event(h, 50 * 1000, &ev, NULL, &error));
	ck_assert(g_error_matches(error, MESH_ERROR, MESH_ERROR_TIMED_OUT));
	g_clear_error(&error);
	mesh_worker_handle_stop(h);
	ck_assert_msg(mesh_worker_handle_join(h, WAIT_US, &error), "%s",
		      error ? error->message : "");
	assert_event(h, MESH_WORKER_EVENT_END, NULL);
	mesh_worker_handle_free(h);
	mesh_worker_host_free(clone);

	/* Upstream's test_launch_worker_remote_supported_worker: a running
	 * worker; dropping its handle and the host lets the runner finish. */
	h = launch_ok(host, "wait", NULL);
	mesh_worker_handle_free(h);
	mesh_worker_host_free(host);
	local_runner_join(&r);
}
END_TEST

START_TEST(test_local_runner_waits_for_workers)
{
	LocalRunner r = {0};
	MeshWorkerHost *host = local_runner_start(&r);
	MeshWorkerHandle *h = launch_ok(host, "wait", NULL);
	mesh_worker_host_free(host);
	/* No host left, but a worker runs: the runner waits for it. */
	ck_assert(!local_runner_wait(&r, 200 * 1000));
	mesh_worker_handle_stop(h);
	assert_event(h, MESH_WORKER_EVENT_STOPPED, NULL);
	assert_event(h, MESH_WORKER_EVENT_END, NULL);
	local_runner_join(&r);
	mesh_worker_handle_free(h);
}
END_TEST

START_TEST(test_no_runner)
{
	MeshPort *port = NULL;
	MeshWorkerHost *host = mesh_worker_host_new(&port);
	mesh_port_close(port);
	assert_launch_fails(host, "wait", "dropped");
	mesh_worker_host_free(host);

	/* A runner whose last host was already dropped returns at once. */
	MeshWorkerRegistry *reg = registry_build();
	host = mesh_worker_host_new(&port);
	mesh_worker_host_free(host);
	ck_assert(mesh_worker_host_run(port, reg, NULL));
	mesh_worker_registry_free(reg);
}
END_TEST

START_TEST(test_remote_unsupported)
{
	RemoteHost rh = launch_runner_host("workers");
	assert_launch_fails(rh.host, "no-such-worker", "unsupported worker no-such-worker");
	mesh_worker_host_free(rh.host);
	assert_text(rh.done, "runner done");
	mesh_receiver_free(rh.done);
	wait_hosts_gone();
}
END_TEST

START_TEST(test_remote_start_stop)
{
	/* Upstream's test_launch_worker_remote_restart_worker without the
	 * restart: Started; stop; Stopped; then the end of the stream. */
	RemoteHost rh = launch_runner_host("workers");
	MeshWorkerHandle *h = launch_ok(rh.host, "wait", NULL);
	mesh_worker_handle_stop(h);
	assert_event(h, MESH_WORKER_EVENT_STOPPED, NULL);
	assert_event(h, MESH_WORKER_EVENT_END, NULL);
	assert_event(h, MESH_WORKER_EVENT_END, NULL);
	mesh_worker_handle_free(h);

	/* Again with join. */
	h = launch_ok(rh.host, "wait", NULL);
	mesh_worker_handle_stop(h);
	GError *error = NULL;
	ck_assert_msg(mesh_worker_handle_join(h, WAIT_US, &error), "%s",
		      error ? error->message : "");
	mesh_worker_handle_free(h);

	mesh_worker_host_free(rh.host);
	assert_text(rh.done, "runner done");
	mesh_receiver_free(rh.done);
	wait_hosts_gone();
}
END_TEST

START_TEST(test_remote_failed)
{
	RemoteHost rh = launch_runner_host("workers");
	MeshWorkerHandle *h = launch_ok(rh.host, "fail", NULL);
	assert_event(h, MESH_WORKER_EVENT_FAILED, "the worker failed on purpose: inner cause");
	assert_event(h, MESH_WORKER_EVENT_END, NULL);
	mesh_worker_handle_free(h);

	h = launch_ok(rh.host, "fail", NULL);
	GError *error = NULL;
	ck_assert(!mesh_worker_handle_join(h, WAIT_US, &error));
	ck_assert(g_error_matches(error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_FAILED));
	ck_assert_str_eq(error->message, "the worker failed on purpose: inner cause");
	g_clear_error(&error);
	/* The stream ended: join now says so. */
	ck_assert(!mesh_worker_handle_join(h, WAIT_US, &error));
	ck_assert_str_eq(error->message, "worker fail disconnected");
	g_clear_error(&error);
	mesh_worker_handle_free(h);

	mesh_worker_host_free(rh.host);
	assert_text(rh.done, "runner done");
	mesh_receiver_free(rh.done);
	wait_hosts_gone();
}
END_TEST

static MeshMessage *params_new(const char *tag, MeshReceiver **ret_reports, int *ret_read_fd)
{
	int p[2];
	MeshSender *s;
	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	mesh_channel_new(NULL, &s, ret_reports);
	MeshMessage *msg = mesh_message_new(tag, strlen(tag));
	ck_assert_int_eq(mesh_message_add_port_take(msg, mesh_sender_into_port(s)), 0);
	ck_assert_int_eq(mesh_message_add_fd_take(msg, p[1]), 1);
	*ret_read_fd = p[0];
	return msg;
}

static void assert_fd_text(int fd, const char *want)
{
	char buf[32] = "";
	struct pollfd p = {.fd = fd, .events = POLLIN};
	ck_assert_int_eq(poll(&p, 1, WAIT_US / 1000), 1);
	ck_assert_int_eq(read(fd, buf, sizeof(buf) - 1), (int)strlen(want));
	ck_assert_str_eq(buf, want);
}

START_TEST(test_remote_params)
{
	RemoteHost rh = launch_runner_host("workers");
	MeshReceiver *reports;
	int fd;
	MeshMessage *params = params_new("hello", &reports, &fd);
	MeshWorkerHandle *h = launch_ok(rh.host, "params", params);
	char *want = g_strdup_printf("got hello in worker-params pid %d", (int)rh.pid);
	assert_text(reports, want);
	g_free(want);
	assert_fd_text(fd, "fd ok");
	close(fd);
	mesh_worker_handle_stop(h);
	assert_text(reports, "stopping hello (params)");
	assert_event(h, MESH_WORKER_EVENT_STOPPED, NULL);
	assert_event(h, MESH_WORKER_EVENT_END, NULL);
	mesh_worker_handle_free(h);
	mesh_receiver_free(reports);

	/* Missing parameters: the worker's own error. */
	h = launch_ok(rh.host, "params", NULL);
	assert_event(h, MESH_WORKER_EVENT_FAILED, "bad parameters for ");
	assert_event(h, MESH_WORKER_EVENT_END, NULL);
	mesh_worker_handle_free(h);

	mesh_worker_host_free(rh.host);
	assert_text(rh.done, "runner done");
	mesh_receiver_free(rh.done);
	wait_hosts_gone();
}
END_TEST

START_TEST(test_remote_two_workers)
{
	RemoteHost rh = launch_runner_host("workers");
	MeshReceiver *ra, *rb;
	int fa, fb;
	MeshWorkerHandle *a = launch_ok(rh.host, "params", params_new("A", &ra, &fa));
	MeshWorkerHandle *b = launch_ok(rh.host, "params", params_new("B", &rb, &fb));
	/* Both run at once, in the same host. */
	char *want = g_strdup_printf("got A in worker-params pid %d", (int)rh.pid);
	assert_text(ra, want);
	g_free(want);
	want = g_strdup_printf("got B in worker-params pid %d", (int)rh.pid);
	assert_text(rb, want);
	g_free(want);
	assert_fd_text(fa, "fd ok");
	assert_fd_text(fb, "fd ok");
	close(fa);
	close(fb);

	/* Stopping one leaves the other running. */
	mesh_worker_handle_stop(a);
	assert_text(ra, "stopping A (params)");
	assert_event(a, MESH_WORKER_EVENT_STOPPED, NULL);
	assert_event(a, MESH_WORKER_EVENT_END, NULL);
	assert_nothing_yet(rb, 200 * 1000);
	MeshWorkerEvent ev;
	GError *error = NULL;
	ck_assert(!mesh_worker_handle_next_event(b, 0, &ev, NULL, &error));
	ck_assert(g_error_matches(error, MESH_ERROR, MESH_ERROR_EMPTY));
	g_clear_error(&error);

	mesh_worker_handle_stop(b);
	assert_text(rb, "stopping B (params)");
	assert_event(b, MESH_WORKER_EVENT_STOPPED, NULL);
	assert_event(b, MESH_WORKER_EVENT_END, NULL);
	mesh_worker_handle_free(a);
	mesh_worker_handle_free(b);
	mesh_receiver_free(ra);
	mesh_receiver_free(rb);

	mesh_worker_host_free(rh.host);
	assert_text(rh.done, "runner done");
	mesh_receiver_free(rh.done);
	wait_hosts_gone();
}
END_TEST

START_TEST(test_remote_host_exits_clean)
{
	/* The coordinator's debug lines of host exits. */
	int clean_exits = log_count_watch("exited successfully");
	int abnormal_exits = log_count_watch("abnormal exit");
	RemoteHost rh = launch_runner_host("workers");
	MeshWorkerHandle *h = launch_ok(rh.host, "wait", NULL);

	/* The parent drops the WorkerHost: the runner still waits for the worker. */
	mesh_worker_host_free(rh.host);
	assert_nothing_yet(rh.done, 300 * 1000);
	ck_assert_uint_eq(mesh_get_host_count(mesh), 1);

	/* The worker finishes: the runner returns, the host exits 0 by itself. */
	mesh_worker_handle_stop(h);
	assert_event(h, MESH_WORKER_EVENT_STOPPED, NULL);
	assert_event(h, MESH_WORKER_EVENT_END, NULL);
	mesh_worker_handle_free(h);
	assert_text(rh.done, "runner done");
	wait_hosts_gone();
	ck_assert_int_eq(log_count_get(clean_exits), 1);
	ck_assert_int_eq(log_count_get(abnormal_exits), 0);
	GError *error = NULL;
	ck_assert_msg(mesh_shutdown(mesh, WAIT_US, &error), "%s", error ? error->message : "");
	mesh_receiver_free(rh.done);
	log_count_stop(clean_exits);
	log_count_stop(abnormal_exits);
}
END_TEST

START_TEST(test_remote_drop_handle_and_host)
{
	RemoteHost rh = launch_runner_host("workers");
	MeshWorkerHandle *h = launch_ok(rh.host, "wait", NULL);
	/* No stop: the closed rpc channel is the stop request. */
	mesh_worker_handle_free(h);
	mesh_worker_host_free(rh.host);
	assert_text(rh.done, "runner done");
	mesh_receiver_free(rh.done);
	wait_hosts_gone();
	GError *error = NULL;
	ck_assert_msg(mesh_shutdown(mesh, WAIT_US, &error), "%s", error ? error->message : "");
}
END_TEST

START_TEST(test_remote_host_crash)
{
	/* A channel error is surfaced as a Failed event; then the end. */
	RemoteHost rh = launch_runner_host("crashing");
	MeshWorkerHandle *h = launch_ok(rh.host, "wait", NULL);
	ck_assert(mesh_crash(mesh, rh.pid, NULL));
	char *pid = g_strdup_printf("pid %d", (int)rh.pid);
	assert_event(h, MESH_WORKER_EVENT_FAILED, pid);
	g_free(pid);
	assert_event(h, MESH_WORKER_EVENT_END, NULL);
	mesh_worker_handle_free(h);
	/* The host is gone: launching fails (the request is dropped or fails). */
	GError *error = NULL;
	h = mesh_worker_host_launch(rh.host, "wait", NULL, WAIT_US, &error);
	ck_assert_ptr_null(h);
	ck_assert_ptr_nonnull(error);
	g_clear_error(&error);
	mesh_worker_host_free(rh.host);
	mesh_receiver_free(rh.done);
	wait_hosts_gone();
}
END_TEST

static char *inspect_ok(MeshWorkerHandle *h)
{
	GError *error = NULL;
	char *json = mesh_worker_handle_inspect(h, WAIT_US, &error);
	ck_assert_msg(json != NULL, "%s", error ? error->message : "");
	return json;
}

/* The inspect answer of a counter: its pid, whether restarted, its value. */
static void assert_counter(MeshWorkerHandle *h, int pid, gboolean restarted, int value)
{
	char *json = inspect_ok(h);
	char *want = g_strdup_printf("{\"name\":\"counter\",\"pid\":%d,\"restarted\":%s,"
				     "\"worker\":{\"value\":%d}}",
				     pid, restarted ? "true" : "false", value);
	ck_assert_str_eq(json, want);
	g_free(want);
	g_free(json);
}

static MeshMessage *number(int n)
{
	char *text = g_strdup_printf("%d", n);
	MeshMessage *msg = mesh_message_new(text, strlen(text));
	g_free(text);
	return msg;
}

/* upstream worker.rs test_launch_worker_remote_restart_worker (its "remote" runner is in process) */
START_TEST(test_local_restart)
{
	LocalRunner r = {0};
	MeshWorkerHost *host = local_runner_start(&r);
	MeshWorkerHandle *h = launch_ok(host, "counter", number(7));
	assert_counter(h, getpid(), FALSE, 7);
	mesh_worker_handle_restart(h, host);
	assert_event(h, MESH_WORKER_EVENT_STARTED, NULL);
	assert_counter(h, getpid(), TRUE, 7);
	mesh_worker_handle_stop(h);
	assert_event(h, MESH_WORKER_EVENT_STOPPED, NULL);
	assert_event(h, MESH_WORKER_EVENT_END, NULL);
	mesh_worker_handle_free(h);
	mesh_worker_host_free(host);
	local_runner_join(&r);
}
END_TEST

/* The same across processes: the worker in a host, restarted on that host. */
START_TEST(test_remote_restart_same_host)
{
	RemoteHost rh = launch_runner_host("workers");
	MeshWorkerHandle *h = launch_ok(rh.host, "counter", number(41));
	assert_counter(h, rh.pid, FALSE, 41);
	mesh_worker_handle_restart(h, rh.host);
	assert_event(h, MESH_WORKER_EVENT_STARTED, NULL);
	assert_counter(h, rh.pid, TRUE, 41);
	/* Again: a restarted instance restarts too. */
	mesh_worker_handle_restart(h, rh.host);
	assert_event(h, MESH_WORKER_EVENT_STARTED, NULL);
	assert_counter(h, rh.pid, TRUE, 41);
	mesh_worker_handle_stop(h);
	assert_event(h, MESH_WORKER_EVENT_STOPPED, NULL);
	assert_event(h, MESH_WORKER_EVENT_END, NULL);
	mesh_worker_handle_free(h);
	mesh_worker_host_free(rh.host);
	assert_text(rh.done, "runner done");
	mesh_receiver_free(rh.done);
	wait_hosts_gone();
}
END_TEST

/* A hot upgrade: the state moves to a newly launched host process. */
START_TEST(test_remote_restart_new_host)
{
	RemoteHost a = launch_runner_host("old");
	MeshWorkerHandle *h = launch_ok(a.host, "counter", number(5));
	assert_counter(h, a.pid, FALSE, 5);
	RemoteHost b = launch_runner_host("new");
	mesh_worker_handle_restart(h, b.host);
	assert_event(h, MESH_WORKER_EVENT_STARTED, NULL);
	assert_counter(h, b.pid, TRUE, 5);
	/* The old host's runner has no worker left: it ends once its host is freed. */
	mesh_worker_host_free(a.host);
	assert_text(a.done, "runner done");
	mesh_receiver_free(a.done);
	mesh_worker_handle_stop(h);
	assert_event(h, MESH_WORKER_EVENT_STOPPED, NULL);
	assert_event(h, MESH_WORKER_EVENT_END, NULL);
	mesh_worker_handle_free(h);
	mesh_worker_host_free(b.host);
	assert_text(b.done, "runner done");
	mesh_receiver_free(b.done);
	wait_hosts_gone();
}
END_TEST

/* RestartFailed, and the old instance keeps running, as upstream. */
START_TEST(test_remote_restart_failed)
{
	RemoteHost rh = launch_runner_host("workers");

	/* The worker refuses: RESTART_FAILED with its reason; it goes on. */
	MeshWorkerHandle *h = launch_ok(rh.host, "counter", number(-1));
	mesh_worker_handle_restart(h, rh.host);
	assert_event(h, MESH_WORKER_EVENT_RESTART_FAILED, "counter refuses: negative");
	assert_counter(h, rh.pid, FALSE, -1);

	/* The new runner does not know the name (an empty registry here). */
	LocalRunner r = {0};
	MeshWorkerHost *empty = local_runner_start_with(&r, mesh_worker_registry_new());
	mesh_worker_handle_restart(h, empty);
	assert_event(h, MESH_WORKER_EVENT_RESTART_FAILED, "unsupported worker counter");
	assert_counter(h, rh.pid, FALSE, -1);
	mesh_worker_handle_stop(h);
	assert_event(h, MESH_WORKER_EVENT_STOPPED, NULL);
	assert_event(h, MESH_WORKER_EVENT_END, NULL);
	mesh_worker_handle_free(h);
	mesh_worker_host_free(empty);
	local_runner_join(&r);

	/* A worker that does not support restart answers so itself, and goes on. */
	h = launch_ok(rh.host, "wait", NULL);
	mesh_worker_handle_restart(h, rh.host);
	assert_event(h, MESH_WORKER_EVENT_RESTART_FAILED, "worker wait does not support restart");
	char *json = inspect_ok(h);
	char *want = g_strdup_printf("{\"name\":\"wait\",\"pid\":%d,\"restarted\":false,"
				     "\"worker\":null}", (int)rh.pid);
	ck_assert_str_eq(json, want);
	g_free(want);
	g_free(json);
	mesh_worker_handle_stop(h);
	assert_event(h, MESH_WORKER_EVENT_STOPPED, NULL);
	assert_event(h, MESH_WORKER_EVENT_END, NULL);
	mesh_worker_handle_free(h);

	/* The new runner would restart "wait", but the old instance cannot give a state. */
	MeshWorkerRegistry *other = mesh_worker_registry_new();
	mesh_worker_registry_add_restartable(other, "wait", counter_worker, NULL, NULL);
	LocalRunner r2 = {0};
	MeshWorkerHost *willing = local_runner_start_with(&r2, other);
	h = launch_ok(rh.host, "wait", NULL);
	mesh_worker_handle_restart(h, willing);
	assert_event(h, MESH_WORKER_EVENT_RESTART_FAILED, "worker wait does not support restart");
	json = inspect_ok(h);
	ck_assert_msg(strstr(json, "\"restarted\":false"), "%s", json);
	g_free(json);
	mesh_worker_handle_stop(h);
	assert_event(h, MESH_WORKER_EVENT_STOPPED, NULL);
	assert_event(h, MESH_WORKER_EVENT_END, NULL);
	mesh_worker_handle_free(h);
	mesh_worker_host_free(willing);
	local_runner_join(&r2);

	/* A restartable worker that stops without its state: RESTART_FAILED, its STOPPED. */
	h = launch_ok(rh.host, "quitter", NULL);
	mesh_worker_handle_restart(h, rh.host);
	assert_event(h, MESH_WORKER_EVENT_RESTART_FAILED,
		     "worker quitter stopped without handing over its state");
	assert_event(h, MESH_WORKER_EVENT_STOPPED, NULL);
	assert_event(h, MESH_WORKER_EVENT_END, NULL);
	mesh_worker_handle_free(h);

	/* The old worker is gone already: RESTART_FAILED, then the end. */
	h = launch_ok(rh.host, "counter", number(1));
	mesh_worker_handle_stop(h);
	assert_event(h, MESH_WORKER_EVENT_STOPPED, NULL);
	mesh_worker_handle_restart(h, rh.host);
	assert_event(h, MESH_WORKER_EVENT_RESTART_FAILED,
		     "worker counter: asking the running worker for its state: ");
	assert_event(h, MESH_WORKER_EVENT_END, NULL);
	mesh_worker_handle_free(h);

	mesh_worker_host_free(rh.host);
	assert_text(rh.done, "runner done");
	mesh_receiver_free(rh.done);
	wait_hosts_gone();
}
END_TEST

/* Workers show in the mesh's inspect tree, in their host's entry. */
START_TEST(test_remote_inspect_mesh)
{
	RemoteHost rh = launch_runner_host("workers");
	MeshWorkerHandle *h = launch_ok(rh.host, "counter", number(9));
	char *json = mesh_inspect(mesh, WAIT_US);
	ck_assert_msg(strstr(json, "\"workers\":[{\"name\":\"counter\",\"restarted\":false,"),
		      "%s", json);
	g_free(json);
	mesh_worker_handle_restart(h, rh.host);
	assert_event(h, MESH_WORKER_EVENT_STARTED, NULL);
	json = mesh_inspect(mesh, WAIT_US);
	ck_assert_msg(strstr(json, "\"workers\":[{\"name\":\"counter\",\"restarted\":true,"),
		      "%s", json);
	g_free(json);
	mesh_worker_handle_stop(h);
	assert_event(h, MESH_WORKER_EVENT_STOPPED, NULL);
	mesh_worker_handle_free(h);
	json = mesh_inspect(mesh, WAIT_US);
	ck_assert_msg(strstr(json, "\"workers\":[]"), "%s", json);
	g_free(json);
	mesh_worker_host_free(rh.host);
	assert_text(rh.done, "runner done");
	mesh_receiver_free(rh.done);
	wait_hosts_gone();
}
END_TEST

/* Local workers: parameters that cannot be encoded (a function pointer). */
typedef gboolean (*LocalParam)(GError **error);

static gboolean local_ok(GError **error)
{
	return TRUE;
}

static gboolean local_fails(GError **error)
{
	g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_FAILED, "local parameters said no");
	return FALSE;
}

static gboolean local_worker(gpointer parameters, MeshWorkerContext *ctx, GError **error)
{
	LocalParam f = (LocalParam)parameters;
	return f(error);
}

static gint local_freed;

static void local_free(gpointer p)
{
	g_atomic_int_inc(&local_freed);
}

static gboolean local_waiter(gpointer parameters, MeshWorkerContext *ctx, GError **error)
{
	mesh_worker_context_set_inspect(ctx, counter_inspect, parameters);
	while (!mesh_worker_context_wait_stop(ctx, 100 * 1000))
		;
	return TRUE;
}

/* upstream worker.rs test_launch_local_no_mesh */
START_TEST(test_launch_local_no_mesh)
{
	GError *error = NULL;
	local_freed = 0;
	MeshWorkerHandle *h =
		mesh_worker_launch_local("local", local_worker, (gpointer)local_ok, local_free, &error);
	ck_assert_msg(h != NULL, "%s", error ? error->message : "");
	ck_assert_msg(mesh_worker_handle_join(h, WAIT_US, &error), "%s",
		      error ? error->message : "");
	mesh_worker_handle_free(h);
	ck_assert_int_eq(g_atomic_int_get(&local_freed), 1);

	h = mesh_worker_launch_local("local", local_worker, (gpointer)local_fails, NULL, &error);
	ck_assert(!mesh_worker_handle_join(h, WAIT_US, &error));
	ck_assert_str_eq(error->message, "local parameters said no");
	g_clear_error(&error);
	mesh_worker_handle_free(h);

	/* Stop, inspect and a refused restart, as for any worker; no STARTED. */
	int value = 3;
	h = mesh_worker_launch_local("local", local_waiter, &value, NULL, &error);
	char *json = inspect_ok(h);
	char *want = g_strdup_printf("{\"name\":\"local\",\"pid\":%d,\"restarted\":false,"
				     "\"worker\":{\"value\":3}}", (int)getpid());
	ck_assert_str_eq(json, want);
	g_free(want);
	g_free(json);
	LocalRunner r = {0};
	MeshWorkerHost *host = local_runner_start(&r);
	mesh_worker_handle_restart(h, host);
	assert_event(h, MESH_WORKER_EVENT_RESTART_FAILED, "unsupported worker local");
	mesh_worker_handle_stop(h);
	assert_event(h, MESH_WORKER_EVENT_STOPPED, NULL);
	assert_event(h, MESH_WORKER_EVENT_END, NULL);
	mesh_worker_handle_free(h);
	mesh_worker_host_free(host);
	local_runner_join(&r);
}
END_TEST

int main(int argc, char **argv)
{
	GError *error = NULL;

	if (!mesh_try_run_host("wtest", host_main, NULL, &error)) {
		fprintf(stderr, "host: %s\n", error->message);
		return 3;
	}
	self_path = realpath(argv[0], NULL);

	Suite *s = suite_create("libmeshprocess-worker");
	TCase *local = tcase_create("local");
	tcase_set_timeout(local, 120);
	tcase_add_test(local, test_registry_unsupported);
	tcase_add_test(local, test_local_runner);
	tcase_add_test(local, test_local_runner_waits_for_workers);
	tcase_add_test(local, test_no_runner);
	tcase_add_test(local, test_local_restart);
	tcase_add_test(local, test_launch_local_no_mesh);
	suite_add_tcase(s, local);
	TCase *remote = tcase_create("remote");
	tcase_set_timeout(remote, 120);
	tcase_add_checked_fixture(remote, setup, teardown);
	tcase_add_test(remote, test_remote_unsupported);
	tcase_add_test(remote, test_remote_start_stop);
	tcase_add_test(remote, test_remote_failed);
	tcase_add_test(remote, test_remote_params);
	tcase_add_test(remote, test_remote_two_workers);
	tcase_add_test(remote, test_remote_host_exits_clean);
	tcase_add_test(remote, test_remote_drop_handle_and_host);
	tcase_add_test(remote, test_remote_host_crash);
	tcase_add_test(remote, test_remote_restart_same_host);
	tcase_add_test(remote, test_remote_restart_new_host);
	tcase_add_test(remote, test_remote_restart_failed);
	tcase_add_test(remote, test_remote_inspect_mesh);
	suite_add_tcase(s, remote);

	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_ENV);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	free(self_path);
	return failed ? 1 : 0;
}
