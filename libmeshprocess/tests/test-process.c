/* SPDX-License-Identifier: MIT */
/*
 * libmeshprocess across real processes. This program is also the host: a
 * launched host re-executes it, and mesh_try_run_host() at the top of main()
 * runs the scenario named by the initial message's bytes. Ports in the
 * initial message: 0 the work receiver, 1 the results sender (if any).
 */
#include <check.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <meshprocess/meshprocess.h>

#include "test-sandbox-env.h"

/* Host side. */

/* Messages a flood sends (the "flood-to" host, test_flood_host_killed). */
#define FLOOD_N 100000u

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

static gboolean host_main(MeshMessage *initial, gpointer data, GError **error)
{
	char *scenario = message_text(initial);
	MeshReceiver *work = NULL;
	MeshSender *results = NULL;
	guint n = mesh_message_get_n_resources(initial);

	if (n >= 1)
		work = mesh_receiver_from_port(mesh_message_steal_port(initial, 0), NULL);
	if (n >= 2)
		results = mesh_sender_from_port(mesh_message_steal_port(initial, 1), NULL);

	if (strcmp(scenario, "echo") == 0) {
		MeshMessage *msg;
		while (mesh_receiver_recv_message(work, -1, &msg, NULL))
			mesh_sender_send_message(results, msg);
	} else if (strcmp(scenario, "report") == 0) {
		/* What this process looks like from the inside. */
		char comm[32] = "";
		prctl(PR_GET_NAME, comm, 0, 0, 0);
		char *cmdline = NULL;
		gsize len = 0;
		g_file_get_contents("/proc/self/cmdline", &cmdline, &len, NULL);
		for (gsize i = 0; i + 1 < len; i++)
			if (cmdline[i] == '\0')
				cmdline[i] = ' ';
		char *text = g_strdup_printf(
			"comm=%s|cmdline=%s|var=%s|hook=%s|invitation=%s|fd3=%s", comm, cmdline,
			g_getenv("MESH_TEST_VAR") ?: "", g_getenv("MESH_TEST_HOOK") ?: "",
			g_getenv(MESH_WORKER_INVITATION) ? "present" : "absent",
			fcntl(3, F_GETFD) >= 0 ? ((fcntl(3, F_GETFD) & FD_CLOEXEC) ? "cloexec" : "open")
					       : "closed");
		send_text(results, text);
		g_free(text);
		g_free(cmdline);
		fprintf(stderr, "report from the host's stderr\n");
		fflush(stderr);
	} else if (strcmp(scenario, "fd") == 0) {
		/* The initial message's fd (resource 2): write into it. */
		int fd = mesh_message_steal_fd(initial, 2);
		if (fd < 0 || write(fd, "via fd", 6) != 6)
			send_text(results, "no fd");
		else
			send_text(results, "wrote");
		close(fd);
	} else if (strcmp(scenario, "peer") == 0) {
		/* Resource 0 is a raw port to another host: greet it, report its greeting. */
		MeshReceiver *peer_in = work;
		MeshSender *peer_out = mesh_sender_from_port(mesh_message_steal_port(initial, 2), NULL);
		char *hello = g_strdup_printf("hello from %d", (int)mesh_host_get_pid());
		send_text(peer_out, hello);
		g_free(hello);
		MeshMessage *msg;
		if (mesh_receiver_recv_message(peer_in, 20 * G_USEC_PER_SEC, &msg, NULL)) {
			mesh_sender_send_message(results, msg);
		} else {
			send_text(results, "no greeting");
		}
		mesh_sender_free(peer_out);
		work = NULL;
		mesh_receiver_free(peer_in);
	} else if (strcmp(scenario, "answer") == 0) {
		/* Each message carries a oneshot sender (resource 0): answer "ok" on it. */
		MeshMessage *msg;
		while (mesh_receiver_recv_message(work, -1, &msg, NULL)) {
			MeshPort *p = mesh_message_steal_port(msg, 0);
			if (p)
				mesh_oneshot_send_message(mesh_oneshot_sender_from_port(p, NULL),
							  mesh_message_new("ok", 2));
			mesh_message_free(msg);
		}
	} else if (strcmp(scenario, "drain") == 0) {
		/* Read and drop the work until it ends (or this host is killed). */
		send_text(results, "draining");
		MeshMessage *msg;
		while (mesh_receiver_recv_message(work, -1, &msg, NULL))
			mesh_message_free(msg);
	} else if (strcmp(scenario, "flood-to") == 0) {
		/*
		 * Resource 2 sends to another host: FLOOD_N messages to it, "half"
		 * on the results halfway, "flooded I" once the sends stop (all
		 * sent, or the receiver is known gone); then wait for the work to
		 * end. The sender stays open until then: closed, it would end the
		 * other host's work, and a receiver fast enough to drain all of it
		 * before the test kills it would exit on its own (its results
		 * "closed", not failed).
		 */
		MeshSender *to = mesh_sender_from_port(mesh_message_steal_port(initial, 2), NULL);
		char text[32];
		guint i;
		for (i = 0; i < FLOOD_N; i++) {
			if (i == FLOOD_N / 2)
				send_text(results, "half");
			if (i % 256 == 0 && mesh_sender_is_closed(to))
				break;
			snprintf(text, sizeof(text), "%u", i);
			send_text(to, text);
		}
		snprintf(text, sizeof(text), "flooded %u", i);
		send_text(results, text);
		MeshMessage *msg;
		while (mesh_receiver_recv_message(work, -1, &msg, NULL))
			mesh_message_free(msg);
		mesh_sender_free(to);
	} else if (strcmp(scenario, "why") == 0) {
		/* Receives until an error, and reports it. */
		MeshMessage *msg;
		GError *err = NULL;
		while (mesh_receiver_recv_message(work, -1, &msg, &err))
			mesh_message_free(msg);
		char *text = g_strdup_printf("%d %s", err->code, err->message);
		send_text(results, text);
		g_free(text);
		g_error_free(err);
	} else if (strcmp(scenario, "wait") == 0) {
		send_text(results, "waiting");
		for (;;)
			pause(); /* until the parent closes us down or crashes us */
	} else if (strcmp(scenario, "flood") == 0) {
		/* Streams until the process goes: the sender is never closed. */
		for (guint64 i = 0;; i++) {
			char text[32];
			snprintf(text, sizeof(text), "%" G_GUINT64_FORMAT, i);
			send_text(results, text);
		}
	} else if (strcmp(scenario, "exit") == 0) {
		/* Streams a while, then exits with the sender still open. */
		for (guint i = 0; i < 20000; i++)
			send_text(results, "x");
		exit(0);
	} else if (strcmp(scenario, "fail") == 0) {
		g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_FAILED, "the host failed on purpose");
		mesh_receiver_free(work);
		mesh_sender_free(results);
		mesh_message_free(initial);
		g_free(scenario);
		return FALSE;
	}
	mesh_receiver_free(work);
	mesh_sender_free(results);
	mesh_message_free(initial);
	g_free(scenario);
	return TRUE;
}

/* Parent side. */

typedef struct {
	MeshSender *work;      /* to the host */
	MeshReceiver *results; /* from the host */
	GPid pid;
} Host;

static Mesh *mesh;

static void setup(void)
{
	GError *error = NULL;
	mesh = mesh_new("test", NULL, &error);
	ck_assert_msg(mesh != NULL, "%s", error ? error->message : "");
}

static void teardown(void)
{
	mesh_free(mesh);
	mesh = NULL;
}

static Host launch(const char *scenario, MeshProcessConfig *config, MeshMessage *extra_port_msg)
{
	Host h = {0};
	MeshSender *ws, *rs;
	MeshReceiver *wr, *rr;
	GError *error = NULL;

	mesh_channel_new(NULL, &ws, &wr);
	mesh_channel_new(NULL, &rs, &rr);
	MeshMessage *initial = mesh_message_new(scenario, strlen(scenario));
	mesh_message_add_port_take(initial, mesh_receiver_into_port(wr));
	mesh_message_add_port_take(initial, mesh_sender_into_port(rs));
	if (extra_port_msg) {
		/* Move the extra message's resources along (one port or fd). */
		MeshPort *p = mesh_message_steal_port(extra_port_msg, 0);
		if (p)
			mesh_message_add_port_take(initial, p);
		else
			mesh_message_add_fd_take(initial, mesh_message_steal_fd(extra_port_msg, 0));
		mesh_message_free(extra_port_msg);
	}
	MeshProcessConfig *c = config ? config : mesh_process_config_new(scenario);
	h.pid = mesh_launch_host(mesh, c, initial, &error);
	ck_assert_msg(h.pid > 0, "%s", error ? error->message : "");
	if (!config)
		mesh_process_config_free(c);
	h.work = ws;
	h.results = rr;
	return h;
}

static char *recv_text(MeshReceiver *r)
{
	MeshMessage *msg = NULL;
	GError *error = NULL;
	ck_assert_msg(mesh_receiver_recv_message(r, 20 * G_USEC_PER_SEC, &msg, &error),
		      "no message: %s", error ? error->message : "");
	char *text = message_text(msg);
	mesh_message_free(msg);
	return text;
}

static void host_close(Host *h)
{
	mesh_sender_free(h->work);
	mesh_receiver_free(h->results);
}

static void wait_hosts_gone(void)
{
	for (int i = 0; i < 2000 && mesh_get_host_count(mesh) > 0; i++)
		g_usleep(5000);
	ck_assert_uint_eq(mesh_get_host_count(mesh), 0);
}

START_TEST(test_launch_and_echo)
{
	Host h = launch("echo", NULL, NULL);
	send_text(h.work, "one");
	send_text(h.work, "two");
	send_text(h.work, "three");
	char *t;
	ck_assert_str_eq((t = recv_text(h.results)), "one");
	g_free(t);
	ck_assert_str_eq((t = recv_text(h.results)), "two");
	g_free(t);
	ck_assert_str_eq((t = recv_text(h.results)), "three");
	g_free(t);
	host_close(&h); /* the host's work channel closes: its function returns, it exits 0 */
	wait_hosts_gone();
}
END_TEST

static gboolean spawn_hook(PalSpawn *spawn, gpointer data, GError **error)
{
	pal_spawn_env_set(spawn, "MESH_TEST_HOOK", data);
	return TRUE;
}

START_TEST(test_config_options)
{
	char *dir = g_dir_make_tmp("mesh-proc-XXXXXX", NULL);
	char *err_path = g_build_filename(dir, "stderr.log", NULL);
	MeshProcessConfig *c = mesh_process_config_new("reporter");
	mesh_process_config_set_program(c, "/proc/self/exe");
	mesh_process_config_add_arg(c, "--extra");
	mesh_process_config_set_env(c, "MESH_TEST_VAR", "hello env");
	mesh_process_config_set_stderr_path(c, err_path);
	mesh_process_config_set_spawn_hook(c, spawn_hook, "applied");
	/* The host reads /proc/self/cmdline by path, which Landlock refuses. */
	test_config_unsandboxed(c);
	Host h = launch("report", c, NULL);
	char *t = recv_text(h.results);
	ck_assert_msg(strstr(t, "comm=ptest-reporter"), "%s", t);
	ck_assert_msg(strstr(t, "cmdline=/proc/self/exe --extra reporter|"), "%s", t);
	ck_assert_msg(strstr(t, "var=hello env|"), "%s", t);
	ck_assert_msg(strstr(t, "hook=applied|"), "%s", t);
	ck_assert_msg(strstr(t, "invitation=absent"), "%s", t);
	ck_assert_msg(strstr(t, "fd3=cloexec"), "%s", t);
	g_free(t);
	host_close(&h);
	wait_hosts_gone();
	char *log = NULL;
	ck_assert(g_file_get_contents(err_path, &log, NULL, NULL));
	ck_assert_msg(strstr(log, "report from the host's stderr"), "%s", log);
	g_free(log);

	/* Without the worker argument. */
	mesh_process_config_set_skip_worker_arg(c, TRUE);
	h = launch("report", c, NULL);
	t = recv_text(h.results);
	ck_assert_msg(strstr(t, "cmdline=/proc/self/exe --extra|"), "%s", t);
	g_free(t);
	host_close(&h);
	wait_hosts_gone();
	mesh_process_config_free(c);
	unlink(err_path);
	rmdir(dir);
	g_free(err_path);
	g_free(dir);
}
END_TEST

START_TEST(test_initial_message_with_fd)
{
	int pipefd[2];
	ck_assert_int_eq(pipe2(pipefd, O_CLOEXEC), 0);
	MeshMessage *extra = mesh_message_new(NULL, 0);
	mesh_message_add_fd_take(extra, pipefd[1]);
	Host h = launch("fd", NULL, extra);
	char *t = recv_text(h.results);
	ck_assert_str_eq(t, "wrote");
	g_free(t);
	char buf[8] = "";
	ck_assert_int_eq(read(pipefd[0], buf, 6), 6);
	ck_assert_str_eq(buf, "via fd");
	close(pipefd[0]);
	host_close(&h);
	wait_hosts_gone();
}
END_TEST

START_TEST(test_host_to_host)
{
	/* Two channels, one end of each to either host: they talk directly. */
	MeshSender *a_to_b, *b_to_a;
	MeshReceiver *b_in, *a_in;
	mesh_channel_new(NULL, &a_to_b, &b_in);
	mesh_channel_new(NULL, &b_to_a, &a_in);
	/* Host A: work = a_in, extra = a_to_b; host B: work = b_in, extra = b_to_a. */
	Host a = {0}, b = {0};
	GError *error = NULL;
	MeshSender *rs_a, *rs_b;
	mesh_channel_new(NULL, &rs_a, &a.results);
	mesh_channel_new(NULL, &rs_b, &b.results);
	MeshMessage *ia = mesh_message_new("peer", 4);
	mesh_message_add_port_take(ia, mesh_receiver_into_port(a_in));
	mesh_message_add_port_take(ia, mesh_sender_into_port(rs_a));
	mesh_message_add_port_take(ia, mesh_sender_into_port(a_to_b));
	MeshMessage *ib = mesh_message_new("peer", 4);
	mesh_message_add_port_take(ib, mesh_receiver_into_port(b_in));
	mesh_message_add_port_take(ib, mesh_sender_into_port(rs_b));
	mesh_message_add_port_take(ib, mesh_sender_into_port(b_to_a));
	MeshProcessConfig *ca = mesh_process_config_new("peer-a");
	MeshProcessConfig *cb = mesh_process_config_new("peer-b");
	a.pid = mesh_launch_host(mesh, ca, ia, &error);
	b.pid = mesh_launch_host(mesh, cb, ib, &error);
	ck_assert(a.pid > 0 && b.pid > 0);
	char *ta = recv_text(a.results), *tb = recv_text(b.results);
	char *want_a = g_strdup_printf("hello from %d", (int)b.pid);
	char *want_b = g_strdup_printf("hello from %d", (int)a.pid);
	ck_assert_str_eq(ta, want_a);
	ck_assert_str_eq(tb, want_b);
	g_free(ta);
	g_free(tb);
	g_free(want_a);
	g_free(want_b);
	mesh_receiver_free(a.results);
	mesh_receiver_free(b.results);
	mesh_process_config_free(ca);
	mesh_process_config_free(cb);
	wait_hosts_gone();
}
END_TEST

START_TEST(test_crash_names_the_host)
{
	Host h = launch("wait", NULL, NULL);
	Host other = launch("echo", NULL, NULL);
	char *t = recv_text(h.results);
	ck_assert_str_eq(t, "waiting");
	g_free(t);
	ck_assert(mesh_crash(mesh, h.pid, NULL));
	MeshMessage *msg = NULL;
	GError *error = NULL;
	ck_assert(!mesh_receiver_recv_message(h.results, 20 * G_USEC_PER_SEC, &msg, &error));
	ck_assert_msg(g_error_matches(error, MESH_ERROR, MESH_ERROR_NODE_FAILURE), "%s",
		      error->message);
	char *pid = g_strdup_printf("pid %d", (int)h.pid);
	ck_assert_msg(strstr(error->message, "host wait") && strstr(error->message, pid),
		      "error does not name the host: %s", error->message);
	char *sig = g_strdup_printf("signal %d", test_crash_signal());
	ck_assert_msg(strstr(error->message, sig), "no exit status: %s", error->message);
	g_free(sig);
	g_free(pid);
	g_error_free(error);
	host_close(&h);

	/* The others go on. */
	send_text(other.work, "still");
	t = recv_text(other.results);
	ck_assert_str_eq(t, "still");
	g_free(t);
	host_close(&other);
	wait_hosts_gone();

	GError *no = NULL;
	ck_assert(!mesh_crash(mesh, 1, &no));
	ck_assert(g_error_matches(no, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_NO_SUCH_HOST));
	g_error_free(no);
}
END_TEST

START_TEST(test_inspect)
{
	Host a = launch("wait", NULL, NULL);
	Host b = launch("wait", NULL, NULL);
	g_free(recv_text(a.results));
	g_free(recv_text(b.results));
	char *json = mesh_inspect(mesh, 10 * G_USEC_PER_SEC);
	char *pa = g_strdup_printf("\"pid\":%d,\"name\":\"wait\"", (int)a.pid);
	char *pb = g_strdup_printf("\"pid\":%d,\"name\":\"wait\"", (int)b.pid);
	ck_assert_msg(strstr(json, "\"mesh\":\"test\""), "%s", json);
	ck_assert_msg(strstr(json, pa) && strstr(json, pb), "%s", json);
	/* Each host's own report (its rss) came back. */
	ck_assert_msg(strstr(json, "\"report\":{\"pid\":"), "%s", json);
	ck_assert_msg(strstr(json, "\"rlimits\":{\"nofile\":["), "%s", json);
	ck_assert_msg(!strstr(json, "\"error\""), "%s", json);
	g_free(json);
	/* A timeout of 0: no report waited for, no receiver left behind (ASan, valgrind). */
	json = mesh_inspect(mesh, 0);
	ck_assert_msg(strstr(json, pa) && strstr(json, pb), "%s", json);
	g_free(pa);
	g_free(pb);
	g_free(json);
	/* Shutdown with running hosts: they exit by themselves. */
	GError *error = NULL;
	ck_assert_msg(mesh_shutdown(mesh, 20 * G_USEC_PER_SEC, &error), "%s",
		      error ? error->message : "");
	ck_assert_uint_eq(mesh_get_host_count(mesh), 0);
	host_close(&a);
	host_close(&b);
}
END_TEST

/*
 * Drains @r: returns how many messages came before the end, which must be
 * a failure naming host @name, not a clean "closed" (the host's sender was
 * never closed).
 */
static guint drain_expect_failure(MeshReceiver *r, const char *name)
{
	MeshMessage *msg = NULL;
	GError *error = NULL;
	guint n = 0;

	while (mesh_receiver_recv_message(r, 20 * G_USEC_PER_SEC, &msg, &error)) {
		mesh_message_free(msg);
		n++;
	}
	ck_assert_msg(g_error_matches(error, MESH_ERROR, MESH_ERROR_NODE_FAILURE),
		      "host %s: after %u messages: %s", name, n, error->message);
	char *host = g_strdup_printf("host %s", name);
	ck_assert_msg(strstr(error->message, host), "the error does not name the host: %s",
		      error->message);
	g_free(host);
	g_error_free(error);
	return n;
}

/* A host that goes away mid-stream is a failure, never a sender that finished. */
START_TEST(test_host_gone_mid_stream)
{
	for (int i = 0; i < 5; i++) {
		/* The parent shuts the mesh down while the host streams. */
		Host h = launch("flood", NULL, NULL);
		for (int k = 0; k < 1000; k++)
			g_free(recv_text(h.results));
		GError *error = NULL;
		mesh_shutdown(mesh, 20 * G_USEC_PER_SEC, &error);
		g_clear_error(&error);
		drain_expect_failure(h.results, "flood");
		host_close(&h);
		mesh_free(mesh);
		setup();

		/* The host calls exit() with its sender open. */
		h = launch("exit", NULL, NULL);
		guint n = drain_expect_failure(h.results, "exit");
		ck_assert_uint_le(n, 20000);
		host_close(&h);
		wait_hosts_gone();
	}
}
END_TEST

START_TEST(test_shutdown_deadline_kills)
{
	Host h = launch("wait", NULL, NULL);
	g_free(recv_text(h.results));
	GError *error = NULL;
	gint64 start = g_get_monotonic_time();
	mesh_shutdown(mesh, 0, &error);
	ck_assert_uint_eq(mesh_get_host_count(mesh), 0);
	ck_assert(g_get_monotonic_time() - start < 15 * G_USEC_PER_SEC);
	g_clear_error(&error);
	ck_assert_int_eq(kill(h.pid, 0), -1);
	host_close(&h);
}
END_TEST

START_TEST(test_parent_killed_children_exit)
{
	/* An intermediate parent launches a host, then is killed with SIGKILL. */
	int p[2];
	ck_assert_int_eq(pipe(p), 0);
	pid_t mid = fork();
	if (mid == 0) {
		close(p[0]);
		Mesh *m = mesh_new("mid", NULL, NULL);
		MeshSender *ws, *rs;
		MeshReceiver *wr, *rr;
		mesh_channel_new(NULL, &ws, &wr);
		mesh_channel_new(NULL, &rs, &rr);
		MeshMessage *initial = mesh_message_new("wait", 4);
		mesh_message_add_port_take(initial, mesh_receiver_into_port(wr));
		mesh_message_add_port_take(initial, mesh_sender_into_port(rs));
		MeshProcessConfig *c = mesh_process_config_new("orphan");
		GPid pid = mesh_launch_host(m, c, initial, NULL);
		MeshMessage *msg;
		mesh_receiver_recv_message(rr, 20 * G_USEC_PER_SEC, &msg, NULL);
		if (write(p[1], &pid, sizeof(pid)) != sizeof(pid))
			_exit(1);
		for (;;)
			pause();
	}
	close(p[1]);
	GPid host = 0;
	ck_assert_int_eq(read(p[0], &host, sizeof(host)), sizeof(host));
	close(p[0]);
	ck_assert_int_gt(host, 0);
	kill(mid, SIGKILL);
	waitpid(mid, NULL, 0);
	/* The host had the parent-death signal: it is gone soon (it was reparented). */
	gboolean gone = FALSE;
	for (int i = 0; i < 1000 && !gone; i++) {
		char path[64];
		snprintf(path, sizeof(path), "/proc/%d/stat", (int)host);
		char *stat = NULL;
		gone = !g_file_get_contents(path, &stat, NULL, NULL) || strstr(stat, ") Z ");
		g_free(stat);
		if (!gone)
			g_usleep(10000);
	}
	ck_assert_msg(gone, "host %d outlived its parent", (int)host);
}
END_TEST

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

START_TEST(test_caller_context)
{
	/* The coordinator on a context the caller runs (in its own thread here). */
	GMainContext *ctx = g_main_context_new();
	GMainLoop *loop = g_main_loop_new(ctx, FALSE);
	GThread *t = g_thread_new("caller-loop", run_loop, loop);
	GError *error = NULL;
	mesh = mesh_new("caller", ctx, &error);
	ck_assert_ptr_nonnull(mesh);
	Host h = launch("echo", NULL, NULL);
	send_text(h.work, "on a caller's context");
	char *text = recv_text(h.results);
	ck_assert_str_eq(text, "on a caller's context");
	g_free(text);
	host_close(&h);
	ck_assert_msg(mesh_shutdown(mesh, 20 * G_USEC_PER_SEC, &error), "%s",
		      error ? error->message : "");
	mesh_free(mesh);
	mesh = NULL;
	stop_loop(loop, t);
	g_main_loop_unref(loop);
	g_main_context_unref(ctx);
}
END_TEST

START_TEST(test_not_a_host)
{
	GError *error = NULL;
	g_unsetenv(MESH_WORKER_INVITATION);
	ck_assert(mesh_try_run_host("x", host_main, NULL, &error));
	ck_assert_ptr_null(error);
}
END_TEST

START_TEST(test_corrupt_invitation)
{
	GError *error = NULL;
	g_setenv(MESH_WORKER_INVITATION, "not base64 at all!!", TRUE);
	ck_assert(!mesh_try_run_host("x", host_main, NULL, &error));
	ck_assert(g_error_matches(error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_INVITATION));
	ck_assert_ptr_null(g_getenv(MESH_WORKER_INVITATION)); /* removed after reading */
	g_clear_error(&error);
	g_setenv(MESH_WORKER_INVITATION, "AAEC/w==", TRUE); /* base64, not a message */
	ck_assert(!mesh_try_run_host("x", host_main, NULL, &error));
	ck_assert_msg(g_error_matches(error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_INVITATION),
		      "%s", error->message);
	g_clear_error(&error);
}
END_TEST

START_TEST(test_host_function_error)
{
	/* A host whose function fails exits non-zero (this program exits 3). */
	Host h = launch("fail", NULL, NULL);
	MeshMessage *msg;
	GError *error = NULL;
	ck_assert(!mesh_receiver_recv_message(h.results, 20 * G_USEC_PER_SEC, &msg, &error));
	g_clear_error(&error);
	host_close(&h);
	wait_hosts_gone();
}
END_TEST

/*
 * A host that dies before it joins: the channels it was given end with an
 * error naming it, its pid and how it ended, not a bare "closed".
 */
START_TEST(test_host_dies_before_joining)
{
	for (int round = 0; round < 3; round++) {
		MeshProcessConfig *c = mesh_process_config_new("early");
		mesh_process_config_set_env(c, "MESH_TEST_EXIT_BEFORE_JOIN", "7");
		Host h = launch("echo", c, NULL);
		mesh_process_config_free(c);
		MeshMessage *msg = NULL;
		GError *error = NULL;
		ck_assert(!mesh_receiver_recv_message(h.results, 20 * G_USEC_PER_SEC, &msg, &error));
		char *expect = g_strdup_printf("host early (pid %d) exited with status 7", (int)h.pid);
		ck_assert_msg(g_error_matches(error, MESH_ERROR, MESH_ERROR_NODE_FAILURE) &&
				      strstr(error->message, expect),
			      "round %d: %s", round, error->message);
		g_free(expect);
		g_error_free(error);
		host_close(&h);
		wait_hosts_gone();
	}
}
END_TEST

/*
 * A message over a node's limits (5000 ports) sent to a host: the sender's
 * port fails saying so, and the host's receiver hears that the parent's
 * node failed the port, not that the parent's (healthy) node failed.
 */
START_TEST(test_message_over_limits_to_host)
{
	Host h = launch("why", NULL, NULL);
	MeshMessage *big = mesh_message_new("big", 3);
	MeshPort **kept = g_new(MeshPort *, 5000);
	for (guint i = 0; i < 5000; i++) {
		MeshPort *x;
		mesh_port_new_pair(&x, &kept[i]);
		mesh_message_add_port_take(big, x);
	}
	mesh_sender_send_message(h.work, big);
	char *text = recv_text(h.results);
	char id[33];
	mesh_uuid_to_string(mesh_node_get_id(mesh_get_node(mesh)), id);
	char *expect = g_strdup_printf("%d node %s failed the peer port (a message over a "
				       "node's limits",
				       MESH_ERROR_NODE_FAILURE, id);
	ck_assert_msg(g_str_has_prefix(text, expect), "%s", text);
	g_free(expect);
	g_free(text);
	ck_assert(mesh_sender_is_closed(h.work));
	for (guint i = 0; i < 5000; i++)
		mesh_port_close(kept[i]);
	g_free(kept);
	host_close(&h);
	wait_hosts_gone();
}
END_TEST

static void count_criticals(const gchar *domain, GLogLevelFlags level, const gchar *message,
			    gpointer data)
{
	g_atomic_int_inc((gint *)data);
}

/*
 * Only -1 means "no limit": another negative timeout fails at once, with
 * MESH_ERROR_INVALID_ARGUMENT where the call takes a GError, else with a
 * critical (g_return_val_if_fail()) and the failure value; nothing waits.
 */
START_TEST(test_negative_timeouts)
{
	GError *error = NULL;
	gint criticals = 0;
	alarm(20);
	guint h1 = g_log_set_handler("MeshProcess", G_LOG_LEVEL_CRITICAL, count_criticals,
				     &criticals);
	guint h2 = g_log_set_handler("MeshRemote", G_LOG_LEVEL_CRITICAL, count_criticals,
				     &criticals);

	ck_assert(!mesh_shutdown(mesh, -5, &error));
	ck_assert_msg(g_error_matches(error, MESH_ERROR, MESH_ERROR_INVALID_ARGUMENT), "%s",
		      error->message);
	g_clear_error(&error);
	ck_assert_ptr_null(mesh_inspect(mesh, -5));
	ck_assert_int_eq(g_atomic_int_get(&criticals), 1);
	MeshSender *s = NULL;
	ck_assert_ptr_null(mesh_connect("/nonexistent/s.sock", -5, &s, &error));
	ck_assert_msg(g_error_matches(error, MESH_ERROR, MESH_ERROR_INVALID_ARGUMENT), "%s",
		      error->message);
	g_clear_error(&error);
	ck_assert(!mesh_connection_shutdown(NULL, -5));
	ck_assert_int_eq(g_atomic_int_get(&criticals), 2);

	/* The mesh was not shut down: it still launches, and -1 waits. */
	Host h = launch("echo", NULL, NULL);
	send_text(h.work, "one");
	char *t = recv_text(h.results);
	ck_assert_str_eq(t, "one");
	g_free(t);
	char *json = mesh_inspect(mesh, -1);
	ck_assert_msg(strstr(json, "\"echo\""), "%s", json);
	g_free(json);
	host_close(&h);
	wait_hosts_gone();
	g_log_remove_handler("MeshProcess", h1);
	g_log_remove_handler("MeshRemote", h2);
	alarm(0);
}
END_TEST

/* A launch after mesh_shutdown() says the mesh is shut down. */
START_TEST(test_launch_after_shutdown)
{
	GError *error = NULL;
	ck_assert(mesh_shutdown(mesh, 5 * G_USEC_PER_SEC, &error));
	MeshProcessConfig *c = mesh_process_config_new("late");
	GPid pid = mesh_launch_host(mesh, c, mesh_message_new("echo", 4), &error);
	mesh_process_config_free(c);
	ck_assert_int_eq(pid, 0);
	ck_assert_msg(g_error_matches(error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_SHUT_DOWN),
		      "%d %s", error->code, error->message);
	ck_assert_msg(strstr(error->message, "the mesh is shut down"), "%s", error->message);
	g_clear_error(&error);
	MeshReceiver *r = NULL;
	ck_assert(!mesh_listen(mesh, "/nonexistent/s.sock", FALSE, &r, &error));
	ck_assert_msg(g_error_matches(error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_SHUT_DOWN),
		      "%d %s", error->code, error->message);
	g_clear_error(&error);
}
END_TEST

/* An EnvInvitation, hand-encoded: both addresses well formed, socket_fd as given. */
static char *env_invitation(int socket_fd)
{
	GByteArray *uuid = g_byte_array_new(), *id = g_byte_array_new(),
		   *addr = g_byte_array_new(), *ia = g_byte_array_new(),
		   *env = g_byte_array_new();
	guint8 b[2];
	b[0] = 0x0a, b[1] = 16; /* Uuid.value */
	g_byte_array_append(uuid, b, 2);
	for (int i = 0; i < 16; i++) {
		guint8 v = (guint8)(i + 1);
		g_byte_array_append(uuid, &v, 1);
	}
	b[0] = 0x0a, b[1] = (guint8)uuid->len; /* NodeId.id / PortId.id */
	g_byte_array_append(id, b, 2);
	g_byte_array_append(id, uuid->data, uuid->len);
	b[0] = 0x0a, b[1] = (guint8)id->len; /* Address.node */
	g_byte_array_append(addr, b, 2);
	g_byte_array_append(addr, id->data, id->len);
	b[0] = 0x12; /* Address.port */
	g_byte_array_append(addr, b, 2);
	g_byte_array_append(addr, id->data, id->len);
	for (int k = 0; k < 2; k++) { /* InvitationAddress.local_addr, remote_addr */
		b[0] = k ? 0x12 : 0x0a, b[1] = (guint8)addr->len;
		g_byte_array_append(ia, b, 2);
		g_byte_array_append(ia, addr->data, addr->len);
	}
	b[0] = 0x0a, b[1] = 1; /* node_name "h" */
	g_byte_array_append(env, b, 2);
	g_byte_array_append(env, (const guint8 *)"h", 1);
	b[0] = 0x12, b[1] = (guint8)ia->len; /* address */
	g_byte_array_append(env, b, 2);
	g_byte_array_append(env, ia->data, ia->len);
	/* sint32: zigzag */
	guint32 zz = socket_fd < 0 ? ((guint32)(-(socket_fd + 1)) << 1) | 1 : (guint32)socket_fd << 1;
	b[0] = 0x18;
	g_byte_array_append(env, b, 1);
	do {
		guint8 v = (guint8)((zz & 0x7f) | (zz > 0x7f ? 0x80 : 0));
		g_byte_array_append(env, &v, 1);
		zz >>= 7;
	} while (zz);
	char *b64 = g_base64_encode(env->data, env->len);
	g_byte_array_free(uuid, TRUE);
	g_byte_array_free(id, TRUE);
	g_byte_array_free(addr, TRUE);
	g_byte_array_free(ia, TRUE);
	g_byte_array_free(env, TRUE);
	return b64;
}

/* An invitation with socket_fd -1 says so, not "without addresses". */
START_TEST(test_invitation_without_socket)
{
	GError *error = NULL;
	char *b64 = env_invitation(-1);
	g_setenv(MESH_WORKER_INVITATION, b64, TRUE);
	g_free(b64);
	ck_assert(!mesh_try_run_host("x", host_main, NULL, &error));
	ck_assert(g_error_matches(error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_INVITATION));
	ck_assert_msg(strstr(error->message, "socket fd -1") && !strstr(error->message, "addresses"),
		      "%s", error->message);
	g_clear_error(&error);
}
END_TEST

/* An external process: connects to a listener and sends three messages. */
static int run_client(const char *path)
{
	MeshSender *s = NULL;
	GError *error = NULL;
	MeshConnection *c = mesh_connect(path, 10 * G_USEC_PER_SEC, &s, &error);
	if (!c) {
		fprintf(stderr, "client: %s\n", error->message);
		return 1;
	}
	send_text(s, "c1");
	send_text(s, "c2");
	send_text(s, "c3");
	mesh_sender_free(s);
	return mesh_connection_shutdown(c, 10 * G_USEC_PER_SEC) ? 0 : 2;
}

/*
 * An external process: @n clients one after the other, each connecting to
 * the listener, asking (a oneshot sender in the message) and waiting for
 * the answer, then shutting down. Stops at the third failure.
 */
static int run_clients(const char *path, int n)
{
	int failures = 0;

	for (int i = 0; i < n && failures < 3; i++) {
		MeshSender *s = NULL;
		GError *error = NULL;
		MeshConnection *c = mesh_connect(path, 10 * G_USEC_PER_SEC, &s, &error);
		if (!c) {
			fprintf(stderr, "client %d: connect: %s\n", i, error->message);
			g_clear_error(&error);
			failures++;
			continue;
		}
		MeshOneshotSender *os;
		MeshOneshotReceiver *or;
		mesh_oneshot_new(NULL, &os, &or);
		MeshMessage *req = mesh_message_new("q", 1);
		mesh_message_add_port_take(req, mesh_oneshot_sender_into_port(os));
		mesh_sender_send_message(s, req);
		MeshMessage *reply = NULL;
		if (!mesh_oneshot_recv_message(or, 10 * G_USEC_PER_SEC, &reply, &error)) {
			fprintf(stderr, "client %d: no answer: %s\n", i, error->message);
			if (g_error_matches(error, MESH_ERROR, MESH_ERROR_TIMED_OUT))
				mesh_oneshot_receiver_free(or);
			g_clear_error(&error);
			failures++;
		}
		mesh_message_free(reply);
		mesh_sender_free(s);
		if (!mesh_connection_shutdown(c, 10 * G_USEC_PER_SEC)) {
			fprintf(stderr, "client %d: shutdown timed out\n", i);
			failures++;
		}
	}
	return failures ? 1 : 0;
}

static char *self_path;

/* A number in mesh_inspect()'s JSON: the @nth "@name" (0: the parent's, 1: the first host's). */
static guint64 inspect_number(const char *name, guint nth)
{
	char *json = mesh_inspect(mesh, 20 * G_USEC_PER_SEC);
	char *field = g_strdup_printf("\"%s\":", name);
	const char *at = json;
	for (guint i = 0; i <= nth; i++) {
		at = strstr(at, field);
		ck_assert_msg(at != NULL, "no %s #%u in %s", field, nth, json);
		at += strlen(field);
	}
	guint64 n = g_ascii_strtoull(at, NULL, 10);
	g_free(field);
	g_free(json);
	return n;
}

static guint inspect_remote_nodes(guint nth)
{
	return (guint)inspect_number("remote_nodes", nth);
}

static guint64 self_rss_kib(void)
{
	char *status = NULL;
	guint64 kib = 0;
	if (g_file_get_contents("/proc/self/status", &status, NULL, NULL)) {
		const char *at = strstr(status, "VmRSS:");
		if (at)
			kib = g_ascii_strtoull(at + 6, NULL, 10);
	}
	g_free(status);
	return kib;
}

/* Passes every message from @data's receiver on to its sender, until it ends. */
typedef struct {
	MeshReceiver *from;
	MeshSender *to;
} Forward;

static gpointer forward_thread(gpointer data)
{
	Forward *f = data;
	MeshMessage *msg;
	while (mesh_receiver_recv_message(f->from, 60 * G_USEC_PER_SEC, &msg, NULL))
		mesh_sender_send_message(f->to, msg);
	return NULL;
}

/*
 * A listener served 5000 short-lived clients (more than the 4096 remote
 * nodes a node takes): a host answers each, through a port the client
 * sends, so both the parent and the host meet every client's node. Every
 * client gets its answer, and neither table keeps the clients that left.
 */
START_TEST(test_listener_many_clients)
{
	enum { CLIENTS = 5000 };
	char *dir = g_dir_make_tmp("mesh-listen-XXXXXX", NULL);
	char *path = g_build_filename(dir, "mesh.sock", NULL);
	GError *error = NULL;
	Host h = launch("answer", NULL, NULL);
	MeshReceiver *r = NULL;
	ck_assert_msg(mesh_listen(mesh, path, FALSE, &r, &error), "%s",
		      error ? error->message : "");
	Forward f = {r, h.work};
	GThread *forward = g_thread_new("forward", forward_thread, &f);
	guint parent_before = inspect_remote_nodes(0);
	guint host_before = inspect_remote_nodes(1);
	guint64 rss_before = self_rss_kib();
	guint64 host_rss_before = inspect_number("rss_kib", 1);

	char *n = g_strdup_printf("%d", CLIENTS);
	char *argv[] = {self_path, "--clients", path, n, NULL};
	GPid client;
	ck_assert(g_spawn_async(NULL, argv, NULL, G_SPAWN_DO_NOT_REAP_CHILD, NULL, NULL, &client,
				NULL));
	int status;
	waitpid(client, &status, 0);
	g_free(n);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		      "a client failed (status %d)", status);

	/* The last client's connections may still be ending. */
	guint parent_after = inspect_remote_nodes(0);
	guint host_after = inspect_remote_nodes(1);
	for (int i = 0; i < 200 && (parent_after > parent_before + 2 || host_after > host_before + 2);
	     i++) {
		g_usleep(10000);
		parent_after = inspect_remote_nodes(0);
		host_after = inspect_remote_nodes(1);
	}
	/* RSS is measured and reported, not asserted. */
	printf("test_listener_many_clients: %d clients: remote nodes: parent %u -> %u, host %u -> "
	       "%u; RSS: parent %" G_GUINT64_FORMAT " -> %" G_GUINT64_FORMAT
	       " KiB, host %" G_GUINT64_FORMAT " -> %" G_GUINT64_FORMAT " KiB\n",
	       CLIENTS, parent_before, parent_after, host_before, host_after, rss_before,
	       self_rss_kib(), host_rss_before, inspect_number("rss_kib", 1));
	ck_assert_uint_le(parent_after, parent_before + 2);
	ck_assert_uint_le(host_after, host_before + 2);

	mesh_unlisten(mesh, path);
	g_thread_join(forward);
	mesh_receiver_free(r);
	host_close(&h);
	wait_hosts_gone();
	rmdir(dir);
	g_free(path);
	g_free(dir);
}
END_TEST

/* Hosts launched and gone one after the other leave the parent's table as it was. */
START_TEST(test_hosts_come_and_go)
{
	enum { WARM_UP = 20, HOSTS = 300 };
	guint before = inspect_remote_nodes(0);
	guint64 rss_before = 0;

	for (int i = 0; i < WARM_UP + HOSTS; i++) {
		if (i == WARM_UP)
			rss_before = self_rss_kib();
		Host h = launch("echo", NULL, NULL);
		send_text(h.work, "ping");
		char *t = recv_text(h.results);
		ck_assert_str_eq(t, "ping");
		g_free(t);
		host_close(&h);
		wait_hosts_gone();
	}
	guint after = inspect_remote_nodes(0);
	/* RSS is measured and reported, not asserted. */
	printf("test_hosts_come_and_go: %d hosts after %d: parent remote nodes %u -> %u, RSS %" G_GUINT64_FORMAT
	       " -> %" G_GUINT64_FORMAT " KiB\n",
	       HOSTS, WARM_UP, before, after, rss_before, self_rss_kib());
	ck_assert_uint_eq(after, before);
}
END_TEST

START_TEST(test_listen_connect)
{
	char *dir = g_dir_make_tmp("mesh-listen-XXXXXX", NULL);
	char *path = g_build_filename(dir, "mesh.sock", NULL);
	GError *error = NULL;

	/* A stale socket file is replaced. */
	int stale = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	g_strlcpy(addr.sun_path, path, sizeof(addr.sun_path));
	ck_assert_int_eq(bind(stale, (struct sockaddr *)&addr, sizeof(addr)), 0);
	close(stale);

	MeshReceiver *r = NULL;
	ck_assert_msg(mesh_listen(mesh, path, FALSE, &r, &error), "%s",
		      error ? error->message : "");
	struct stat st;
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0600);

	char *argv[] = {self_path, "--client", path, NULL};
	GPid client;
	ck_assert(g_spawn_async(NULL, argv, NULL, G_SPAWN_DO_NOT_REAP_CHILD, NULL, NULL, &client,
				NULL));
	char *t;
	ck_assert_str_eq((t = recv_text(r)), "c1");
	g_free(t);
	ck_assert_str_eq((t = recv_text(r)), "c2");
	g_free(t);
	ck_assert_str_eq((t = recv_text(r)), "c3");
	g_free(t);
	int status;
	waitpid(client, &status, 0);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	mesh_receiver_free(r);
	mesh_unlisten(mesh, path);
	ck_assert(!g_file_test(path, G_FILE_TEST_EXISTS));

	/* Any other file at the path is an error. */
	ck_assert(g_file_set_contents(path, "x", 1, NULL));
	ck_assert(!mesh_listen(mesh, path, FALSE, &r, &error));
	g_clear_error(&error);
	unlink(path);

	/* A directory other users can write to is refused. */
	chmod(dir, 0777);
	ck_assert(!mesh_listen(mesh, path, FALSE, &r, &error));
	ck_assert(g_error_matches(error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_INSECURE));
	g_clear_error(&error);
	rmdir(dir);
	g_free(path);
	g_free(dir);
}
END_TEST

/*
 * A host dies while messages are queued to it (SIGKILL halfway through a
 * flood), from the parent and from another host: the sending loops come
 * back, the ports fail naming the host, the flooding host still answers
 * an inspect, a launch does not hang, and shutdown is clean.
 */
typedef struct {
	MeshSender *to;
	GPid victim;
	guint sent;
	gboolean done;
	GMutex lock;
	GCond cond;
} ParentFlood;

static gpointer parent_flood_thread(gpointer data)
{
	ParentFlood *f = data;
	char text[32];

	for (guint i = 0; i < FLOOD_N; i++) {
		if (i == FLOOD_N / 2)
			kill(f->victim, SIGKILL);
		if (i % 256 == 0 && mesh_sender_is_closed(f->to))
			break;
		snprintf(text, sizeof(text), "%u", i);
		send_text(f->to, text);
		f->sent++;
	}
	g_mutex_lock(&f->lock);
	f->done = TRUE;
	g_cond_signal(&f->cond);
	g_mutex_unlock(&f->lock);
	return NULL;
}

/* The host's results fail naming it (it was killed). */
static void expect_host_failed(MeshReceiver *results, const char *name, GPid pid)
{
	MeshMessage *msg = NULL;
	GError *error = NULL;
	ck_assert(!mesh_receiver_recv_message(results, 20 * G_USEC_PER_SEC, &msg, &error));
	ck_assert_msg(g_error_matches(error, MESH_ERROR, MESH_ERROR_NODE_FAILURE), "%s",
		      error->message);
	char *who = g_strdup_printf("host %s", name);
	char *pid_text = g_strdup_printf("pid %d", (int)pid);
	ck_assert_msg(strstr(error->message, who) && strstr(error->message, pid_text),
		      "error does not name the host: %s", error->message);
	g_free(who);
	g_free(pid_text);
	g_error_free(error);
}

START_TEST(test_flood_host_killed)
{
	for (guint round = 0; round < 5; round++) {
		/* The parent floods a host and kills it halfway. */
		Host b = launch("drain", NULL, NULL);
		char *t = recv_text(b.results);
		ck_assert_str_eq(t, "draining");
		g_free(t);
		ParentFlood f = {.to = b.work, .victim = b.pid};
		g_mutex_init(&f.lock);
		g_cond_init(&f.cond);
		GThread *thread = g_thread_new("flood", parent_flood_thread, &f);
		gint64 deadline = g_get_monotonic_time() + 30 * G_USEC_PER_SEC;
		g_mutex_lock(&f.lock);
		while (!f.done && g_cond_wait_until(&f.cond, &f.lock, deadline))
			;
		gboolean done = f.done;
		g_mutex_unlock(&f.lock);
		ck_assert_msg(done, "round %u: the parent's sending thread did not come back (%u sent)",
			      round, f.sent);
		g_thread_join(thread);
		g_mutex_clear(&f.lock);
		g_cond_clear(&f.cond);
		expect_host_failed(b.results, "drain", b.pid);
		host_close(&b);

		/* Host A floods host C, which is killed halfway. */
		MeshSender *a_to_c, *rs_a, *rs_c, *ws_a;
		MeshReceiver *c_in, *a_results, *c_results, *wr_a;
		GError *error = NULL;
		mesh_channel_new(NULL, &a_to_c, &c_in);
		mesh_channel_new(NULL, &rs_a, &a_results);
		mesh_channel_new(NULL, &rs_c, &c_results);
		mesh_channel_new(NULL, &ws_a, &wr_a);
		MeshMessage *ic = mesh_message_new("drain", 5);
		mesh_message_add_port_take(ic, mesh_receiver_into_port(c_in));
		mesh_message_add_port_take(ic, mesh_sender_into_port(rs_c));
		MeshMessage *ia = mesh_message_new("flood-to", 8);
		mesh_message_add_port_take(ia, mesh_receiver_into_port(wr_a));
		mesh_message_add_port_take(ia, mesh_sender_into_port(rs_a));
		mesh_message_add_port_take(ia, mesh_sender_into_port(a_to_c));
		MeshProcessConfig *cc = mesh_process_config_new("drain");
		MeshProcessConfig *ca = mesh_process_config_new("flood-to");
		GPid c_pid = mesh_launch_host(mesh, cc, ic, &error);
		ck_assert_msg(c_pid > 0, "%s", error ? error->message : "");
		t = recv_text(c_results);
		ck_assert_str_eq(t, "draining");
		g_free(t);
		GPid a_pid = mesh_launch_host(mesh, ca, ia, &error);
		ck_assert_msg(a_pid > 0, "%s", error ? error->message : "");
		mesh_process_config_free(ca);
		mesh_process_config_free(cc);
		t = recv_text(a_results);
		ck_assert_str_eq(t, "half");
		g_free(t);
		ck_assert_int_eq(kill(c_pid, SIGKILL), 0);
		/* recv_text() waits 20 s: the old deadlock never sent it. */
		t = recv_text(a_results);
		ck_assert_msg(g_str_has_prefix(t, "flooded "), "%s", t);
		g_free(t);
		expect_host_failed(c_results, "drain", c_pid);
		mesh_receiver_free(c_results);

		/*
		 * A still answers: its report is in the inspect (once C's exit is
		 * seen: only A is asked).
		 */
		for (int i = 0; i < 2000 && mesh_get_host_count(mesh) > 1; i++)
			g_usleep(5000);
		ck_assert_uint_eq(mesh_get_host_count(mesh), 1);
		char *json = mesh_inspect(mesh, 10 * G_USEC_PER_SEC);
		char *entry = g_strdup_printf("{\"pid\":%d,\"name\":\"flood-to\"", (int)a_pid);
		const char *e = strstr(json, entry);
		ck_assert_msg(e, "%s", json);
		const char *report = strstr(e, "\"report\":");
		ck_assert_msg(report && g_str_has_prefix(report, "\"report\":{\"pid\":"), "%s", json);
		g_free(entry);
		g_free(json);
		mesh_sender_free(ws_a);
		mesh_receiver_free(a_results);
		wait_hosts_gone();
	}

	/* A launch after all that: no hang, and the host works. */
	Host h = launch("echo", NULL, NULL);
	send_text(h.work, "after");
	char *t = recv_text(h.results);
	ck_assert_str_eq(t, "after");
	g_free(t);
	host_close(&h);
	GError *error = NULL;
	ck_assert_msg(mesh_shutdown(mesh, 20 * G_USEC_PER_SEC, &error), "%s",
		      error ? error->message : "");
	ck_assert_uint_eq(mesh_get_host_count(mesh), 0);
}
END_TEST

int main(int argc, char **argv)
{
	GError *error = NULL;

	if (g_getenv("MESH_TEST_EXIT_BEFORE_JOIN"))
		_exit(atoi(g_getenv("MESH_TEST_EXIT_BEFORE_JOIN")));
	if (!mesh_try_run_host("ptest", host_main, NULL, &error)) {
		fprintf(stderr, "host: %s\n", error->message);
		return 3;
	}
	if (argc == 3 && strcmp(argv[1], "--client") == 0)
		return run_client(argv[2]);
	if (argc == 4 && strcmp(argv[1], "--clients") == 0)
		return run_clients(argv[2], atoi(argv[3]));
	self_path = argv[0];

	Suite *s = suite_create("libmeshprocess");
	TCase *tc = tcase_create("process");
	tcase_set_timeout(tc, 120);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_launch_and_echo);
	tcase_add_test(tc, test_config_options);
	tcase_add_test(tc, test_initial_message_with_fd);
	tcase_add_test(tc, test_host_to_host);
	tcase_add_test(tc, test_crash_names_the_host);
	tcase_add_test(tc, test_inspect);
	tcase_add_test(tc, test_shutdown_deadline_kills);
	tcase_add_test(tc, test_host_gone_mid_stream);
	tcase_add_test(tc, test_host_function_error);
	tcase_add_test(tc, test_listen_connect);
	tcase_add_test(tc, test_hosts_come_and_go);
	tcase_add_test(tc, test_flood_host_killed);
	tcase_add_test(tc, test_host_dies_before_joining);
	tcase_add_test(tc, test_launch_after_shutdown);
	tcase_add_test(tc, test_message_over_limits_to_host);
	tcase_add_test(tc, test_negative_timeouts);
	suite_add_tcase(s, tc);
	TCase *tc2 = tcase_create("host-side");
	tcase_set_timeout(tc2, 120);
	/* Forks: run it where no mesh (and no thread) exists yet. */
	tcase_add_test(tc2, test_parent_killed_children_exit);
	tcase_add_test(tc2, test_not_a_host);
	tcase_add_test(tc2, test_caller_context);
	tcase_add_test(tc2, test_corrupt_invitation);
	tcase_add_test(tc2, test_invitation_without_socket);
	suite_add_tcase(s, tc2);
	TCase *many = tcase_create("many");
	tcase_set_timeout(many, 600);
	tcase_add_checked_fixture(many, setup, teardown);
	tcase_add_test(many, test_listener_many_clients);
	suite_add_tcase(s, many);

	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_ENV);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
