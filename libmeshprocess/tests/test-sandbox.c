/* SPDX-License-Identifier: MIT */
/*
 * Sandboxed hosts (mesh_process_config_set_sandbox(), doc/sandbox.md)
 * across real processes. This program is also the host: the initial
 * message's bytes name a scenario; port 0 is the work receiver, port 1 the
 * results sender, resource 2 an optional fd. Every test runs as root and,
 * when started as root, once more as uid 65534 (the "unprivileged" loop
 * iteration: the parent then needs a user namespace for the profile's
 * namespaces, which the profile adds).
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifdef MESH_TEST_HAVE_GIO
#include <gio/gio.h>
#include <gio/gunixfdlist.h>
#include <gio/gunixfdmessage.h>
#endif
#include <glib-unix.h>
#include <sched.h>
#include <sys/time.h>
#include <sys/times.h>
#include <time.h>

#include <meshprocess/meshprocess.h>

#define WAIT_US (30 * G_USEC_PER_SEC)
#define ALLOWED_TEXT "sandbox-allowed"

/* Host side. */

/* The fds open when main() began (before the sandbox), "0,1,2,3". */
static char *fds_at_start;
/* What a host that finalized early read before it did (test_finalize_early). */
static char *early_read;

static char *list_fds(void)
{
	GString *s = g_string_new(NULL);
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return g_string_free(s, FALSE);
	GArray *fds = g_array_new(FALSE, FALSE, sizeof(int));
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		int fd = atoi(e->d_name);
		if (fd != dirfd(d))
			g_array_append_val(fds, fd);
	}
	closedir(d);
	for (guint i = 0; i < fds->len; i++)
		for (guint j = i + 1; j < fds->len; j++)
			if (g_array_index(fds, int, j) < g_array_index(fds, int, i)) {
				int t = g_array_index(fds, int, i);
				g_array_index(fds, int, i) = g_array_index(fds, int, j);
				g_array_index(fds, int, j) = t;
			}
	for (guint i = 0; i < fds->len; i++)
		g_string_append_printf(s, "%s%d", i ? "," : "", g_array_index(fds, int, i));
	g_array_free(fds, TRUE);
	return g_string_free(s, FALSE);
}

static const char *errno_name(int e)
{
	switch (e) {
	case 0:
		return "ok";
	case EACCES:
		return "EACCES";
	case EPERM:
		return "EPERM";
	case ENOENT:
		return "ENOENT";
	case EAFNOSUPPORT:
		return "EAFNOSUPPORT";
	case ENOSYS:
		return "ENOSYS";
	default:
		return "other";
	}
}

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

/* open() of @path for reading: "ok" when its content is ALLOWED_TEXT, else the errno. */
static const char *try_read(const char *path)
{
	int fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1;
	if (fd < 0)
		return path ? errno_name(errno) : "nopath";
	char buf[64] = "";
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n < 0)
		return errno_name(errno);
	return strncmp(buf, ALLOWED_TEXT, strlen(ALLOWED_TEXT)) == 0 ? "ok" : "readable";
}

/* What the sandbox lets this process do, as "key=value" words. */
static char *probe(void)
{
	const char *outside = try_read("/etc/passwd");
	const char *allowed = try_read(g_getenv("MESH_TEST_ALLOWED"));

	/*
	 * A program that exists: if exec worked, this host would be gone (the
	 * unsandboxed test passes a missing one instead).
	 */
	const char *prog = g_getenv("MESH_TEST_EXEC") ? g_getenv("MESH_TEST_EXEC") : "/bin/sh";
	char *argv[] = {(char *)prog, (char *)"-c", (char *)"exit 0", NULL};
	execve(argv[0], argv, environ);
	const char *exec = errno_name(errno);

	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	const char *inet = fd >= 0 ? "ok" : errno_name(errno);
	if (fd >= 0)
		close(fd);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	const char *unix_ = fd >= 0 ? "ok" : errno_name(errno);
	if (fd >= 0)
		close(fd);
	int nnp = prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0);
	int bset = prctl(PR_CAPBSET_READ, 21 /* CAP_SYS_ADMIN */, 0, 0, 0);
	return g_strdup_printf("outside=%s allowed=%s exec=%s inet=%s unix=%s nnp=%d bset_admin=%d",
			       outside, allowed, exec, inet, unix_, nnp, bset);
}

/* ---- "waits": what a sleeping or waiting program commonly calls ---- */

static volatile sig_atomic_t usr1_seen;
static volatile gint pause_done;

static void on_usr1(int sig)
{
	(void)sig;
	usr1_seen = 1;
}

/* Signals this process until pause() returned (a signal before pause() is lost). */
static gpointer poke_main(gpointer data)
{
	(void)data;
	while (!g_atomic_int_get(&pause_done)) {
		g_usleep(5000);
		kill(getpid(), SIGUSR1);
	}
	return NULL;
}

static void pool_func(gpointer item, gpointer data)
{
	g_usleep(1000);
	g_atomic_int_add((gint *)data, GPOINTER_TO_INT(item));
}

static gboolean on_hup(gpointer data)
{
	g_main_loop_quit(data);
	return G_SOURCE_REMOVE;
}

static gboolean on_timeout(gpointer data)
{
	*(gboolean *)data = TRUE;
	return G_SOURCE_REMOVE;
}

/* GSocket + GUnixFDList over a socketpair: a pipe's write end, then a byte through it. */
static const char *socket_fd_roundtrip(void)
{
#ifndef MESH_TEST_HAVE_GIO
	return "skipped"; /* no gio to link here (see meson.build) */
#else
	int sv[2], p[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0 || pipe2(p, O_CLOEXEC) < 0)
		return errno_name(errno);
	GSocket *a = g_socket_new_from_fd(sv[0], NULL), *b = g_socket_new_from_fd(sv[1], NULL);
	if (!a || !b)
		return "gsocket";
	GUnixFDList *list = g_unix_fd_list_new();
	g_unix_fd_list_append(list, p[1], NULL);
	close(p[1]);
	GSocketControlMessage *cm = g_unix_fd_message_new_with_fd_list(list);
	GOutputVector out = {"x", 1};
	const char *res = "ok";
	if (g_socket_send_message(a, NULL, &out, 1, &cm, 1, 0, NULL, NULL) != 1)
		res = "send";
	char c = 0;
	GInputVector in = {&c, 1};
	GSocketControlMessage **msgs = NULL;
	int n = 0;
	if (!g_socket_condition_timed_wait(b, G_IO_IN, G_USEC_PER_SEC, NULL, NULL) ||
	    g_socket_receive_message(b, NULL, &in, 1, &msgs, &n, NULL, NULL, NULL) != 1 || n != 1)
		res = "receive";
	for (int i = 0; i < n; i++) {
		if (strcmp(res, "ok") == 0 && G_IS_UNIX_FD_MESSAGE(msgs[i])) {
			gint nfds = 0;
			gint *fds = g_unix_fd_message_steal_fds(G_UNIX_FD_MESSAGE(msgs[i]), &nfds);
			if (nfds != 1 || write(fds[0], "y", 1) != 1 || read(p[0], &c, 1) != 1 || c != 'y')
				res = "fd";
			for (int j = 0; j < nfds; j++)
				close(fds[j]);
			g_free(fds);
		}
		g_object_unref(msgs[i]);
	}
	g_free(msgs);
	g_object_unref(cm);
	g_object_unref(list);
	g_object_unref(a);
	g_object_unref(b);
	close(p[0]);
	return res;
#endif
}

/* Each wait in turn; a syscall off the allow-list kills the host before its answer. */
static char *waits(void)
{
	GString *s = g_string_new("waits");
	struct sigaction sa = {.sa_handler = on_usr1};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);

	/* pause() woken by a signal from another thread. */
	GThread *poker = g_thread_new("poker", poke_main, NULL);
	int r = pause();
	g_atomic_int_set(&pause_done, 1);
	g_thread_join(poker);
	g_string_append_printf(s, " pause=%s", r == -1 && errno == EINTR && usr1_seen ? "ok" : "no");

	/* sigsuspend() with the signal pending. */
	sigset_t block, old, empty;
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	sigaddset(&block, SIGUSR2);
	sigprocmask(SIG_BLOCK, &block, &old);
	usr1_seen = 0;
	raise(SIGUSR1);
	sigemptyset(&empty);
	r = sigsuspend(&empty);
	g_string_append_printf(s, " sigsuspend=%s", r == -1 && usr1_seen ? "ok" : "no");

	/* sigtimedwait(): one pending, then a timeout. */
	sigset_t usr2;
	sigemptyset(&usr2);
	sigaddset(&usr2, SIGUSR2);
	struct timespec ten_ms = {0, 10 * 1000 * 1000};
	raise(SIGUSR2);
	int got = sigtimedwait(&usr2, NULL, &ten_ms);
	int again = sigtimedwait(&usr2, NULL, &ten_ms);
	g_string_append_printf(s, " sigtimedwait=%s",
			       got == SIGUSR2 && again == -1 && errno == EAGAIN ? "ok" : "no");
	sigprocmask(SIG_SETMASK, &old, NULL);

	/* Sleeps and the clock. */
	gint64 t0 = g_get_monotonic_time();
	struct timespec ts = {0, 1000 * 1000};
	nanosleep(&ts, NULL);
	clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, NULL);
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_nsec += 1000 * 1000;
	if (ts.tv_nsec >= 1000 * 1000 * 1000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000 * 1000 * 1000;
	}
	clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
	g_usleep(1000);
	sched_yield();
	g_string_append_printf(s, " sleeps=%s", g_get_monotonic_time() - t0 >= 3000 ? "ok" : "no");

	/* An alarm set and cleared, an interval timer read, the process's times. */
	struct itimerval itv;
	struct tms tms;
	struct rusage ru;
	g_string_append_printf(s, " timers=%s",
			       alarm(100) == 0 && alarm(0) > 0 && getitimer(ITIMER_REAL, &itv) == 0 &&
					       times(&tms) != (clock_t)-1 &&
					       getrusage(RUSAGE_SELF, &ru) == 0 &&
					       getrusage(RUSAGE_THREAD, &ru) == 0
				       ? "ok"
				       : "no");

	/* A timed condition wait that times out, a mutex, g_getenv(). */
	GMutex m;
	GCond c;
	g_mutex_init(&m);
	g_cond_init(&c);
	g_mutex_lock(&m);
	t0 = g_get_monotonic_time();
	gboolean signalled = g_cond_wait_until(&c, &m, t0 + 20000);
	g_mutex_unlock(&m);
	g_cond_clear(&c);
	g_mutex_clear(&m);
	g_string_append_printf(s, " cond=%s",
			       !signalled && g_get_monotonic_time() - t0 >= 20000 && g_getenv("PATH")
				       ? "ok"
				       : "no");

	/* GLib's thread pool. */
	gint sum = 0;
	GThreadPool *pool = g_thread_pool_new(pool_func, &sum, 3, FALSE, NULL);
	for (int i = 1; i <= 8; i++)
		g_thread_pool_push(pool, GINT_TO_POINTER(i), NULL);
	g_thread_pool_free(pool, FALSE, TRUE);
	g_string_append_printf(s, " pool=%s", g_atomic_int_get(&sum) == 36 ? "ok" : "no");

	/* A main loop: a timeout, then a Unix signal source (GLib's worker thread). */
	GMainContext *ctx = g_main_context_new();
	g_main_context_push_thread_default(ctx);
	GMainLoop *loop = g_main_loop_new(ctx, FALSE);
	gboolean timed_out = FALSE;
	GSource *src = g_timeout_source_new(5);
	g_source_set_callback(src, on_timeout, &timed_out, NULL);
	g_source_attach(src, ctx);
	g_source_unref(src);
	while (!timed_out)
		g_main_context_iteration(ctx, TRUE);
	src = g_unix_signal_source_new(SIGHUP);
	g_source_set_callback(src, on_hup, loop, NULL);
	g_source_attach(src, ctx);
	g_source_unref(src);
	raise(SIGHUP);
	g_main_loop_run(loop);
	g_main_loop_unref(loop);
	g_main_context_pop_thread_default(ctx);
	g_main_context_unref(ctx);
	g_string_append(s, " mainloop=ok");

	g_string_append_printf(s, " gsocket=%s", socket_fd_roundtrip());
	return g_string_free(s, FALSE);
}

static gboolean host_main(MeshMessage *initial, gpointer data, GError **error)
{
	char *scenario = message_text(initial);
	MeshReceiver *work = mesh_receiver_from_port(mesh_message_steal_port(initial, 0), NULL);
	MeshSender *results = mesh_sender_from_port(mesh_message_steal_port(initial, 1), NULL);

	if (strcmp(scenario, "serve") == 0) {
		/* Echo text; a message with an fd: write "via fd" into it, answer "wrote". */
		MeshMessage *msg;
		while (mesh_receiver_recv_message(work, -1, &msg, NULL)) {
			int fd = mesh_message_steal_fd(msg, 0);
			if (fd >= 0) {
				send_text(results, write(fd, "via fd", 6) == 6 ? "wrote" : "no write");
				close(fd);
				mesh_message_free(msg);
			} else {
				mesh_sender_send_message(results, msg);
			}
		}
	} else if (strcmp(scenario, "fds") == 0) {
		send_text(results, fds_at_start ? fds_at_start : "none");
	} else if (strcmp(scenario, "waits") == 0) {
		char *text = waits();
		send_text(results, text);
		g_free(text);
	} else if (strcmp(scenario, "probe") == 0) {
		char *text = probe();
		send_text(results, text);
		g_free(text);
		/* Stays for an inspect until the parent closes its end. */
		MeshMessage *end = NULL;
		mesh_receiver_recv_message(work, WAIT_US, &end, NULL);
		mesh_message_free(end);
	} else if (strcmp(scenario, "early") == 0) {
		PalSandboxStatus st;
		pal_sandbox_get_status(&st);
		char *text = g_strdup_printf("early=%s finalized=%d outside=%s",
					     early_read ? early_read : "none", st.finalized,
					     try_read(g_getenv("MESH_TEST_ALLOWED")));
		send_text(results, text);
		g_free(text);
	} else if (strcmp(scenario, "forbidden") == 0) {
		/* Said, and known to have arrived (the parent answers), before we die. */
		send_text(results, "calling swapoff");
		MeshMessage *go = NULL;
		mesh_receiver_recv_message(work, WAIT_US, &go, NULL);
		mesh_message_free(go);
		/* Not on any allow-list: seccomp kills the process (SIGSYS). */
		syscall(SYS_swapoff, "/nonexistent");
		g_usleep(G_USEC_PER_SEC); /* let the parent see the sends... */
		_exit(7);                 /* ...and fail it if we are still here */
	}
	mesh_sender_free(results);
	mesh_receiver_free(work);
	g_free(scenario);
	return TRUE;
}

/*
 * "Finalizing later": a host program that needs a file for its own setup
 * reads it first, then finalizes the sandbox itself, then joins.
 */
static void finalize_early(void)
{
	PalSandbox *sb = NULL;
	int r = pal_sandbox_new_from_env(&sb);
	if (r < 0 || !sb) {
		fprintf(stderr, "finalize_early: no profile (%d)\n", r);
		_exit(5);
	}
	char *text = NULL;
	if (g_file_get_contents(g_getenv("MESH_TEST_ALLOWED"), &text, NULL, NULL))
		early_read = g_strchomp(text);
	r = pal_sandbox_finalize(sb);
	if (r < 0) {
		fprintf(stderr, "finalize_early: %s: %s\n", pal_sandbox_get_failed_step(sb),
			strerror(-r));
		_exit(6);
	}
	pal_sandbox_unref(sb);
}

/* Parent side. */

typedef struct {
	GMainContext *ctx;
	gboolean exited;
	MeshHostExit exit; /* its strings copied */
} Exited;

static void on_exit_cb(Mesh *mesh, const char *name, GPid pid, const MeshHostExit *exit,
		       gpointer data)
{
	Exited *x = data;
	x->exit = *exit;
	x->exit.signal_name = g_strdup(exit->signal_name);
	x->exit.description = g_strdup(exit->description);
	x->exited = TRUE;
}

static void wait_exit(Exited *x)
{
	gint64 deadline = g_get_monotonic_time() + WAIT_US;
	while (!x->exited && g_get_monotonic_time() < deadline)
		g_main_context_iteration(x->ctx, FALSE) || (g_usleep(2000), 0);
	ck_assert_msg(x->exited, "no exit callback");
}

static void exited_clear(Exited *x)
{
	g_free((char *)x->exit.signal_name);
	g_free((char *)x->exit.description);
	g_main_context_unref(x->ctx);
}

typedef struct {
	MeshSender *work;
	MeshReceiver *results;
	GPid pid;
} Host;

static Host launch(Mesh *mesh, MeshProcessConfig *c, const char *scenario)
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
	h.pid = mesh_launch_host(mesh, c, initial, &error);
	ck_assert_msg(h.pid > 0, "%s", error ? error->message : "");
	h.work = ws;
	h.results = rr;
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

static void host_close(Host *h)
{
	mesh_sender_free(h->work);
	mesh_receiver_free(h->results);
}

/*
 * Loop iteration 1 runs the test as uid 65534 when started as root (the
 * test's own forked process drops; CK_FORK=no runs it as is). Returns the
 * uid the test runs as.
 */
static uid_t become(int iteration)
{
	if (iteration == 1 && geteuid() == 0) {
		if (g_strcmp0(g_getenv("CK_FORK"), "no") == 0)
			return geteuid();
		ck_assert_int_eq(setgroups(0, NULL), 0);
		ck_assert_int_eq(setresgid(65534, 65534, 65534), 0);
		ck_assert_int_eq(setresuid(65534, 65534, 65534), 0);
		/*
		 * A uid change leaves the process non-dumpable: its children's
		 * /proc files stay root's, so libpal leaves the user namespace
		 * out (and with it the others; test_non_dumpable_parent). A
		 * user who never was root has no such flag: be one here.
		 */
		ck_assert_int_eq(prctl(PR_SET_DUMPABLE, 1, 0, 0, 0), 0);
	}
	return geteuid();
}

static Mesh *mesh_new_ok(void)
{
	GError *error = NULL;
	Mesh *mesh = mesh_new("sandbox", NULL, &error);
	ck_assert_msg(mesh, "%s", error ? error->message : "");
	return mesh;
}

/* A config whose hosts run in the default profile, @allowed readable. */
static MeshProcessConfig *sandboxed_config(const char *name, const char *allowed)
{
	MeshProcessConfig *c = mesh_process_config_new(name);
	PalSandbox *sb = pal_sandbox_new();
	if (allowed) {
		ck_assert_int_eq(pal_sandbox_allow_path(sb, allowed, PAL_SANDBOX_FS_READ), 0);
		mesh_process_config_set_env(c, "MESH_TEST_ALLOWED", allowed);
	}
	mesh_process_config_set_sandbox(c, sb);
	pal_sandbox_unref(sb);
	return c;
}

/*
 * A file (ALLOWED_TEXT) outside /tmp, which the default profile replaces:
 * under the build directory, readable by uid 65534. Returns its path; its
 * directory in @ret_dir.
 */
static char *allowed_file_new(char **ret_dir)
{
	const char *base = g_getenv("MESH_TEST_BUILDDIR");
	char *tmpl = g_build_filename(base ? base : ".", "sandbox-test-XXXXXX", NULL);
	ck_assert_ptr_nonnull(g_mkdtemp_full(tmpl, 0755));
	char *path = g_build_filename(tmpl, "allowed.txt", NULL);
	ck_assert(g_file_set_contents(path, ALLOWED_TEXT "\n", -1, NULL));
	ck_assert_int_eq(chmod(path, 0644), 0);
	*ret_dir = tmpl;
	return path;
}

static void allowed_file_free(char *path, char *dir)
{
	unlink(path);
	rmdir(dir);
	g_free(path);
	g_free(dir);
}

/* Messages and fds reach a sandboxed host and come back; inspect shows its sandbox. */
START_TEST(test_sandboxed_host_serves)
{
	become(_i);
	Mesh *mesh = mesh_new_ok();
	MeshProcessConfig *c = sandboxed_config("worker-1", NULL);
	Host h = launch(mesh, c, "serve");
	for (int i = 0; i < 20; i++) {
		char text[16];
		g_snprintf(text, sizeof(text), "m%d", i);
		send_text(h.work, text);
		char *t = recv_text(h.results);
		ck_assert_str_eq(t, text);
		g_free(t);
	}
	int p[2];
	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	MeshMessage *msg = mesh_message_new("fd", 2);
	mesh_message_add_fd_take(msg, p[1]);
	mesh_sender_send_message(h.work, msg);
	char *t = recv_text(h.results);
	ck_assert_str_eq(t, "wrote");
	g_free(t);
	char buf[16] = "";
	ck_assert_int_eq(read(p[0], buf, sizeof(buf)), 6);
	ck_assert(memcmp(buf, "via fd", 6) == 0);
	close(p[0]);

	char *json = mesh_inspect(mesh, WAIT_US);
	ck_assert_msg(strstr(json, "\"sandbox\":{\"finalized\":true,\"namespaces\":["), "%s", json);
	ck_assert_msg(strstr(json, "\"no_new_privs\":true,\"capabilities_dropped\":true"), "%s",
		      json);
	ck_assert_msg(strstr(json, "\"seccomp\":\"kill\""), "%s", json);
	ck_assert_msg(!strstr(json, "\"landlock_abi\":0"), "%s", json);
	/* Its own pid, as we know it, though getpid() is 1 in its PID namespace. */
	char *own = g_strdup_printf("\"report\":{\"pid\":%d,", (int)h.pid);
	ck_assert_msg(strstr(json, own), "%s", json);
	g_free(own);
	/* The host's own rss came through its sandbox (a file opened before). */
	ck_assert_msg(!strstr(json, "\"rss_kib\":0,"), "%s", json);
	g_free(json);

	GError *error = NULL;
	ck_assert_msg(mesh_shutdown(mesh, WAIT_US, &error), "%s", error ? error->message : "");
	host_close(&h);
	mesh_process_config_free(c);
	mesh_free(mesh);
}
END_TEST

/*
 * From inside: a file outside the rules is EACCES, the one allowed reads;
 * execve is refused; no AF_INET socket (AF_UNIX works); no_new_privs is
 * set and CAP_SYS_ADMIN is out of the bounding set.
 */
START_TEST(test_sandboxed_host_confined)
{
	char *dir, *path = allowed_file_new(&dir);
	become(_i);
	Mesh *mesh = mesh_new_ok();
	MeshProcessConfig *c = sandboxed_config("prober", path);
	Host h = launch(mesh, c, "probe");
	char *t = recv_text(h.results);
	ck_assert_str_eq(t, "outside=EACCES allowed=ok exec=EPERM inet=EAFNOSUPPORT unix=ok "
			    "nnp=1 bset_admin=0");
	g_free(t);
	host_close(&h);
	mesh_process_config_free(c);
	mesh_free(mesh);
	allowed_file_free(path, dir);
}
END_TEST

#ifdef MESH_TEST_HAVE_GIO
#define GSOCKET_OK "gsocket=ok"
#else
#define GSOCKET_OK "gsocket=skipped"
#endif
#define WAITS_OK                                                                              \
	"waits pause=ok sigsuspend=ok sigtimedwait=ok sleeps=ok timers=ok cond=ok pool=ok "   \
	"mainloop=ok " GSOCKET_OK

/*
 * A sandboxed host waits as programs do: pause() woken by a signal,
 * sigsuspend(), sigtimedwait(), sleeps, alarms, a timed GCond, GLib's thread
 * pool, a main loop with a Unix signal source, GSocket with a GUnixFDList.
 * Iteration 2 runs the same unsandboxed (the answer the sandbox must keep).
 */
START_TEST(test_sandboxed_host_waits)
{
	if (_i < 2)
		become(_i);
	Mesh *mesh = mesh_new_ok();
	Exited x = {.ctx = g_main_context_new()};
	MeshProcessConfig *c = _i < 2 ? sandboxed_config("sleeper", NULL)
				      : mesh_process_config_new("sleeper");
	mesh_process_config_set_exit_callback(c, x.ctx, on_exit_cb, &x, NULL);
	Host h = launch(mesh, c, "waits");
	MeshMessage *msg = NULL;
	GError *error = NULL;
	if (!mesh_receiver_recv_message(h.results, WAIT_US, &msg, &error)) {
		wait_exit(&x);
		ck_abort_msg("no answer: %s; the host %s", error ? error->message : "",
			     x.exit.description);
	}
	char *t = message_text(msg);
	mesh_message_free(msg);
	ck_assert_str_eq(t, WAITS_OK);
	g_free(t);
	host_close(&h);
	mesh_process_config_free(c);
	mesh_free(mesh);
	exited_clear(&x);
}
END_TEST

/*
 * A parent that left root is not dumpable: its children cannot open their
 * own user namespace's maps (root owns them). The default profile's
 * best-effort namespaces are then left out, said in inspect, and the host
 * runs; a profile that requires the user namespace fails naming the cause.
 */
START_TEST(test_non_dumpable_parent)
{
	if (geteuid() != 0)
		return; /* only a uid change makes a process non-dumpable here */
	if (g_strcmp0(g_getenv("CK_FORK"), "no") == 0)
		return;
	ck_assert_int_eq(setgroups(0, NULL), 0);
	ck_assert_int_eq(setresgid(65534, 65534, 65534), 0);
	ck_assert_int_eq(setresuid(65534, 65534, 65534), 0);
	ck_assert_int_eq(prctl(PR_GET_DUMPABLE, 0, 0, 0, 0), 0);

	Mesh *mesh = mesh_new_ok();
	MeshProcessConfig *c = sandboxed_config("worker-1", NULL);
	Host h = launch(mesh, c, "serve");
	send_text(h.work, "m");
	char *t = recv_text(h.results);
	ck_assert_str_eq(t, "m");
	g_free(t);
	char *json = mesh_inspect(mesh, WAIT_US);
	/*
	 * An empty list; a host inspected while still "starting" shows its
	 * lists as {} (seen under ASan): either says "none".
	 */
	ck_assert_msg(strstr(json, "\"sandbox\":{\"finalized\":true,\"namespaces\":[],"
				   "\"private_tmp\":false,\"no_new_privs\":true,"
				   "\"capabilities_dropped\":true,") ||
			      strstr(json, "\"sandbox\":{\"finalized\":true,\"namespaces\":{},"
					   "\"private_tmp\":false,\"no_new_privs\":true,"
					   "\"capabilities_dropped\":true,"),
		      "%s", json);
	g_free(json);
	host_close(&h);
	mesh_process_config_free(c);

	c = mesh_process_config_new("worker-2");
	PalSandbox *sb = pal_sandbox_new();
	ck_assert_int_eq(pal_sandbox_set_namespaces(sb, PAL_SANDBOX_NS_USER, true), 0);
	mesh_process_config_set_sandbox(c, sb);
	pal_sandbox_unref(sb);
	GError *error = NULL;
	MeshMessage *initial = mesh_message_new("serve", 5);
	ck_assert_int_le(mesh_launch_host(mesh, c, initial, &error), 0);
	ck_assert_msg(error && strstr(error->message, "sandbox: dumpable: ") &&
			      strstr(error->message, "not dumpable"),
		      "%s", error ? error->message : "no error");
	g_clear_error(&error);
	mesh_process_config_free(c);
	mesh_free(mesh);
}
END_TEST

/* The same probe, unsandboxed: the test above can fail. */
START_TEST(test_unsandboxed_probe_differs)
{
	char *dir, *path = allowed_file_new(&dir);
	Mesh *mesh = mesh_new_ok();
	MeshProcessConfig *c = mesh_process_config_new("prober");
	mesh_process_config_set_env(c, "MESH_TEST_ALLOWED", path);
	mesh_process_config_set_env(c, "MESH_TEST_EXEC", "/nonexistent/mesh-test");
	mesh_process_config_set_sandbox(c, NULL);
	Host h = launch(mesh, c, "probe");
	char *t = recv_text(h.results);
	ck_assert_msg(g_str_has_prefix(t, "outside=ok ") || g_str_has_prefix(t, "outside=readable "),
		      "%s", t);
	ck_assert_msg(strstr(t, " exec=ENOENT inet=ok ") && strstr(t, " nnp=0 "), "%s", t);
	g_free(t);
	host_close(&h);
	mesh_process_config_free(c);
	mesh_free(mesh);
	allowed_file_free(path, dir);
}
END_TEST

/* Only the mesh socket and stdio reach the host (fds listed before the sandbox). */
START_TEST(test_no_fd_leaks)
{
	become(_i);
	/* Fds the parent has open without close-on-exec must not leak either. */
	int leak = open("/dev/null", O_RDONLY);
	ck_assert_int_ge(leak, 0);
	Mesh *mesh = mesh_new_ok();
	MeshProcessConfig *c = sandboxed_config("fds", NULL);
	Host h = launch(mesh, c, "fds");
	char *t = recv_text(h.results);
	ck_assert_str_eq(t, "0,1,2,3");
	g_free(t);
	host_close(&h);
	mesh_process_config_free(c);
	mesh_free(mesh);
	close(leak);
}
END_TEST

/* A forbidden syscall kills the host with SIGSYS; the exit and the ports name it. */
START_TEST(test_forbidden_syscall_kills)
{
	become(_i);
	Mesh *mesh = mesh_new_ok();
	Exited x = {.ctx = g_main_context_new()};
	MeshProcessConfig *c = sandboxed_config("worker-2", NULL);
	mesh_process_config_set_exit_callback(c, x.ctx, on_exit_cb, &x, NULL);
	Host h = launch(mesh, c, "forbidden");
	char *t = recv_text(h.results);
	ck_assert_str_eq(t, "calling swapoff");
	g_free(t);
	send_text(h.work, "go");
	wait_exit(&x);
	ck_assert(x.exit.signaled);
	ck_assert_int_eq(x.exit.signal, SIGSYS);
	ck_assert_str_eq(x.exit.signal_name, "SIGSYS");
	ck_assert(!x.exit.expected);
	char *want = g_strdup_printf("killed by signal %d (%s)", SIGSYS, g_strsignal(SIGSYS));
	ck_assert_str_eq(x.exit.description, want);
	/* A port to it fails naming the host, its pid and the signal. */
	MeshMessage *msg = NULL;
	GError *error = NULL;
	ck_assert(!mesh_receiver_recv_message(h.results, WAIT_US, &msg, &error));
	char *named = g_strdup_printf("host worker-2 (pid %d) %s", (int)h.pid, want);
	ck_assert_msg(error && strstr(error->message, named), "%s",
		      error ? error->message : "no error");
	g_clear_error(&error);
	g_free(named);
	g_free(want);
	host_close(&h);
	mesh_process_config_free(c);
	mesh_free(mesh);
	exited_clear(&x);
}
END_TEST

/*
 * mesh_crash() on a host that is pid 1 of its PID namespace: SIGABRT cannot
 * end it there, so it traps; the exit says SIGILL.
 */
START_TEST(test_crash_in_pid_namespace)
{
	become(_i);
	Mesh *mesh = mesh_new_ok();
	Exited x = {.ctx = g_main_context_new()};
	MeshProcessConfig *c = sandboxed_config("worker-3", NULL);
	mesh_process_config_set_exit_callback(c, x.ctx, on_exit_cb, &x, NULL);
	Host h = launch(mesh, c, "serve");
	send_text(h.work, "up");
	char *t = recv_text(h.results);
	g_free(t);
	GError *error = NULL;
	ck_assert_msg(mesh_crash(mesh, h.pid, &error), "%s", error ? error->message : "");
	wait_exit(&x);
	ck_assert(x.exit.signaled);
	ck_assert_str_eq(x.exit.signal_name, "SIGILL");
	ck_assert(!x.exit.expected);
	host_close(&h);
	mesh_process_config_free(c);
	mesh_free(mesh);
	exited_clear(&x);
}
END_TEST

/*
 * A profile the host cannot finalize (a Landlock ABI no kernel has): the
 * host never joins, says why on its stderr and exits with
 * MESH_HOST_EXIT_SANDBOX, which the exit description names.
 */
START_TEST(test_finalize_failure)
{
	char *dir, *path = allowed_file_new(&dir);
	char *err_path = g_build_filename(dir, "stderr.log", NULL);
	/* Made before become(): uid 65534 cannot create files in @dir. */
	ck_assert(g_file_set_contents(err_path, "", 0, NULL));
	ck_assert_int_eq(chmod(err_path, 0666), 0);
	become(_i);
	Mesh *mesh = mesh_new_ok();
	Exited x = {.ctx = g_main_context_new()};
	MeshProcessConfig *c = mesh_process_config_new("strict");
	PalSandbox *sb = pal_sandbox_new();
	ck_assert_int_eq(pal_sandbox_require_landlock_abi(sb, 1000), 0);
	mesh_process_config_set_sandbox(c, sb);
	pal_sandbox_unref(sb);
	mesh_process_config_set_exit_callback(c, x.ctx, on_exit_cb, &x, NULL);
	mesh_process_config_set_stderr_path(c, err_path);
	Host h = launch(mesh, c, "serve");
	wait_exit(&x);
	ck_assert(!x.exit.signaled);
	ck_assert_int_eq(x.exit.status, MESH_HOST_EXIT_SANDBOX);
	ck_assert_msg(strstr(x.exit.description, "its sandbox could not be finalized"), "%s",
		      x.exit.description);
	ck_assert_int_ne(mesh_get_host_state(mesh, h.pid), MESH_HOST_STATE_RUNNING);
	char *err = NULL;
	ck_assert(g_file_get_contents(err_path, &err, NULL, NULL));
	ck_assert_msg(strstr(err, "host strict: sandbox: landlock"), "%s", err);
	g_free(err);
	unlink(err_path);
	host_close(&h);
	mesh_process_config_free(c);
	mesh_free(mesh);
	exited_clear(&x);
	g_free(err_path);
	allowed_file_free(path, dir);
}
END_TEST

/*
 * A profile whose spawn part fails: mesh_launch_host() fails naming the
 * sandbox and the step. As root: a uid change with a user namespace
 * (pal_sandbox_apply() refuses it); as uid 65534: raising a hard rlimit.
 */
START_TEST(test_spawn_step_failure)
{
	uid_t uid = become(_i);
	Mesh *mesh = mesh_new_ok();
	MeshProcessConfig *c = mesh_process_config_new("refused");
	PalSandbox *sb = pal_sandbox_new();
	const char *want;
	if (uid == 0) {
		ck_assert_int_eq(pal_sandbox_set_namespaces(sb, PAL_SANDBOX_NS_USER, true), 0);
		ck_assert_int_eq(pal_sandbox_set_uid(sb, 1234), 0);
		want = "cannot start host refused: sandbox: ";
	} else {
		struct rlimit rl;
		ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
		if (rl.rlim_max == RLIM_INFINITY) {
			pal_sandbox_unref(sb);
			mesh_process_config_free(c);
			mesh_free(mesh);
			return; /* nothing to raise */
		}
		ck_assert_int_eq(pal_sandbox_set_rlimit(sb, RLIMIT_NOFILE, rl.rlim_cur, rl.rlim_max + 1),
				 0);
		want = "cannot start host refused (this program): sandbox: rlimit: ";
	}
	mesh_process_config_set_sandbox(c, sb);
	pal_sandbox_unref(sb);
	GError *error = NULL;
	GPid pid = mesh_launch_host(mesh, c, mesh_message_new("serve", 5), &error);
	ck_assert_int_eq(pid, 0);
	ck_assert_msg(g_error_matches(error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_SPAWN) &&
			      g_str_has_prefix(error->message, want),
		      "%s", error ? error->message : "no error");
	g_clear_error(&error);
	mesh_process_config_free(c);
	mesh_free(mesh);
}
END_TEST

/*
 * "Finalizing later": the host program reads a file, finalizes the profile
 * itself, then calls mesh_try_run_host(), which does not finalize again.
 */
START_TEST(test_finalize_early)
{
	char *dir, *path = allowed_file_new(&dir);
	become(_i);
	Mesh *mesh = mesh_new_ok();
	/* No rule for the file: only the early read gets it. */
	MeshProcessConfig *c = sandboxed_config("early", NULL);
	mesh_process_config_set_env(c, "MESH_TEST_ALLOWED", path);
	mesh_process_config_set_env(c, "MESH_TEST_FINALIZE_EARLY", "1");
	Host h = launch(mesh, c, "early");
	char *t = recv_text(h.results);
	ck_assert_str_eq(t, "early=" ALLOWED_TEXT " finalized=1 outside=EACCES");
	g_free(t);
	host_close(&h);
	mesh_process_config_free(c);
	mesh_free(mesh);
	allowed_file_free(path, dir);
}
END_TEST

/*
 * A remote host (a local command in ssh's place): the finalize part travels
 * in the command's environment words, the spawn part is not applied.
 */
static const char *const local_ssh[] = {"sh", "-c", "exec sh -c \"exec $*\"", "sh", NULL};

START_TEST(test_remote_host_finalizes)
{
	char *dir, *path = allowed_file_new(&dir);
	become(_i);
	Mesh *mesh = mesh_new_ok();
	MeshProcessConfig *c = sandboxed_config("far", path);
	mesh_process_config_set_remote_command(c, local_ssh);
	Host h = launch(mesh, c, "probe");
	char *t = recv_text(h.results);
	/*
	 * No user namespace (the spawn part is not applied): a host without
	 * CAP_SETPCAP keeps its bounding set, which no_new_privs makes
	 * harmless (pal_sandbox_set_drop_capabilities()).
	 */
	ck_assert_str_eq(t, geteuid() == 0 ? "outside=EACCES allowed=ok exec=EPERM "
					     "inet=EAFNOSUPPORT unix=ok nnp=1 bset_admin=0"
					   : "outside=EACCES allowed=ok exec=EPERM "
					     "inet=EAFNOSUPPORT unix=ok nnp=1 bset_admin=1");
	g_free(t);
	/* Its inspect claims no namespace and no private /tmp: it got none. */
	char *json = mesh_inspect(mesh, WAIT_US);
	ck_assert_msg(strstr(json, "\"sandbox\":{\"finalized\":true,\"namespaces\":[],"
				   "\"private_tmp\":false,\"no_new_privs\":true,") ||
			      strstr(json, "\"sandbox\":{\"finalized\":true,\"namespaces\":{},"
					   "\"private_tmp\":false,\"no_new_privs\":true,"),
		      "%s", json);
	g_free(json);
	host_close(&h);
	mesh_process_config_free(c);
	mesh_free(mesh);
	allowed_file_free(path, dir);
}
END_TEST

int main(int argc, char **argv)
{
	GError *error = NULL;

	if (g_getenv(MESH_WORKER_INVITATION) || g_getenv(MESH_STDIO_INVITATION)) {
		fds_at_start = list_fds();
		if (g_getenv("MESH_TEST_FINALIZE_EARLY"))
			finalize_early();
	}
	if (!mesh_try_run_host("sbtest", host_main, NULL, &error)) {
		fprintf(stderr, "host: %s\n", error->message);
		return 3;
	}

	Suite *s = suite_create("libmeshprocess");
	TCase *tc = tcase_create("sandbox");
	tcase_set_timeout(tc, 120);
	/* Iteration 0 as started (root in CI), 1 as uid 65534. */
	tcase_add_loop_test(tc, test_sandboxed_host_serves, 0, 2);
	tcase_add_loop_test(tc, test_sandboxed_host_confined, 0, 2);
	tcase_add_test(tc, test_unsandboxed_probe_differs);
	tcase_add_loop_test(tc, test_sandboxed_host_waits, 0, 3);
	tcase_add_test(tc, test_non_dumpable_parent);
	tcase_add_loop_test(tc, test_no_fd_leaks, 0, 2);
	tcase_add_loop_test(tc, test_forbidden_syscall_kills, 0, 2);
	tcase_add_loop_test(tc, test_crash_in_pid_namespace, 0, 2);
	tcase_add_loop_test(tc, test_finalize_failure, 0, 2);
	tcase_add_loop_test(tc, test_finalize_early, 0, 2);
	tcase_add_loop_test(tc, test_spawn_step_failure, 0, 2);
	tcase_add_loop_test(tc, test_remote_host_finalizes, 0, 2);
	suite_add_tcase(s, tc);

	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_ENV);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
