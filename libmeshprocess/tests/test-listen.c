/* SPDX-License-Identifier: MIT */
/*
 * Hosts and listeners under faults, across real processes. This program is
 * also the host (mesh_try_run_host() at the top of main()), the listening
 * server and the client: main() runs the mode named by argv[1].
 */
#include <check.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <meshprocess/meshprocess.h>

#include "test-sandbox-env.h"

#define WAIT_S 20

static char *self_exe;

static gboolean host_main(MeshMessage *initial, gpointer data, GError **error)
{
	size_t size;
	const uint8_t *text = mesh_message_get_data(initial, &size);
	gboolean wait = size == 4 && memcmp(text, "wait", 4) == 0;
	mesh_message_free(initial);
	while (wait)
		pause(); /* until the parent closes us down or kills us */
	return TRUE;
}

/* client PATH: connects, sends "hello from uid N"; 0 if delivered, 1 if refused. */
static int mode_client(const char *path)
{
	MeshSender *s = NULL;
	GError *error = NULL;
	MeshConnection *c = mesh_connect(path, 10 * G_USEC_PER_SEC, &s, &error);
	if (!c) {
		fprintf(stderr, "client: %s %d: %s\n", g_quark_to_string(error->domain), error->code,
			error->message);
		g_error_free(error);
		return 1;
	}
	char *text = g_strdup_printf("hello from uid %u", (unsigned)getuid());
	mesh_sender_send_message(s, mesh_message_new(text, strlen(text)));
	g_free(text);
	mesh_sender_free(s);
	if (!mesh_connection_shutdown(c, 10 * G_USEC_PER_SEC)) {
		fprintf(stderr, "client: its shutdown did not complete in 10 s\n");
		return 2;
	}
	return 0;
}

/*
 * client-wait PATH: connects, sends a hello, says "sent", waits for stdin to
 * close, then shuts the connection down: 0 if clean, 2 if not.
 */
static int mode_client_wait(const char *path)
{
	MeshSender *s = NULL;
	GError *error = NULL;
	MeshConnection *c = mesh_connect(path, 10 * G_USEC_PER_SEC, &s, &error);
	if (!c) {
		fprintf(stderr, "client: %s\n", error->message);
		g_error_free(error);
		return 1;
	}
	mesh_sender_send_message(s, mesh_message_new("hello", 5));
	printf("sent\n");
	fflush(stdout);
	char ch;
	while (read(0, &ch, 1) > 0)
		;
	mesh_sender_send_message(s, mesh_message_new("bye", 3));
	mesh_sender_free(s);
	return mesh_connection_shutdown(c, 5 * G_USEC_PER_SEC) ? 0 : 2;
}

/* idle PATH N: N clients that never read; says "connected=K", then waits for stdin to close. */
static int mode_idle(const char *path, int n)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	g_strlcpy(addr.sun_path, path, sizeof(addr.sun_path));
	int *fds = g_new(int, n);
	int k = 0;
	for (int i = 0; i < n; i++) {
		int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		struct timeval tv = {2, 0}; /* bounds a connect to a full backlog */
		setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		if (connect(s, (struct sockaddr *)&addr, sizeof(addr)) < 0)
			close(s);
		else
			fds[k++] = s;
	}
	printf("connected=%d\n", k);
	fflush(stdout);
	char c;
	while (read(0, &c, 1) > 0)
		;
	for (int i = 0; i < k; i++)
		close(fds[i]);
	g_free(fds);
	return 0;
}

/*
 * One short-lived client of @path in @mode (in a child of mode_clients):
 * "send" sends and shuts down cleanly; "silent" shuts down without
 * sending; "drop" sends and exits without shutting down; "killed" sends
 * and SIGKILLs itself a moment later; "raw" connects a plain socket and
 * closes it without reading its invitation.
 */
static int one_client(const char *path, guint mode, guint i)
{
	if (mode == 4) {
		struct sockaddr_un addr = {.sun_family = AF_UNIX};
		g_strlcpy(addr.sun_path, path, sizeof(addr.sun_path));
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		int r = connect(fd, (struct sockaddr *)&addr, sizeof(addr));
		close(fd);
		return r == 0 ? 0 : 4;
	}
	MeshSender *s = NULL;
	GError *error = NULL;
	MeshConnection *c = mesh_connect(path, 10 * G_USEC_PER_SEC, &s, &error);
	if (!c) {
		fprintf(stderr, "client %u: %s\n", i, error->message);
		return 1;
	}
	if (mode != 1) {
		char *text = g_strdup_printf("client %u", i);
		mesh_sender_send_message(s, mesh_message_new(text, strlen(text)));
		g_free(text);
	}
	if (mode == 2)
		_exit(0);
	if (mode == 3) {
		g_usleep(g_random_int_range(0, 20000));
		raise(SIGKILL);
	}
	mesh_sender_free(s);
	if (!mesh_connection_shutdown(c, 10 * G_USEC_PER_SEC)) {
		fprintf(stderr, "client %u: its shutdown did not complete in 10 s\n", i);
		return 2;
	}
	return 0;
}

/*
 * clients PATH N: N short-lived clients, CLIENTS_AT_ONCE at a time, in turn
 * "send", "silent", "drop", "killed" and "raw" (one_client()). Forks each
 * from this process, which has no threads. Says "done FAILED" at the end.
 */
#define CLIENTS_AT_ONCE 8
static int mode_clients(const char *path, int n)
{
	int running = 0, failed = 0;
	for (int i = 0; i < n || running > 0;) {
		if (i < n && running < CLIENTS_AT_ONCE) {
			pid_t pid = fork();
			if (pid == 0)
				_exit(one_client(path, (guint)i % 5, (guint)i));
			if (pid < 0)
				return 10;
			running++;
			i++;
			continue;
		}
		int status;
		pid_t pid = wait(&status);
		if (pid < 0)
			return 11;
		running--;
		gboolean killed = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
		if (!killed && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
			fprintf(stderr, "a client (pid %d) ended with status %#x\n", (int)pid, status);
			failed++;
		}
	}
	printf("done %d\n", failed);
	fflush(stdout);
	return 0;
}

static void quiet_log(const gchar *domain, GLogLevelFlags level, const gchar *message,
		      gpointer data)
{
}

/*
 * serve PATH [NOFILE]: listens on PATH (with RLIMIT_NOFILE lowered); says
 * "ready" or "error CODE MESSAGE" on stdout, then "got TEXT" for each
 * message, until stdin closes; then stops listening and says "done".
 */
static gpointer serve_stdin_watch(gpointer data)
{
	char c;
	while (read(0, &c, 1) > 0)
		;
	g_atomic_int_set((gint *)data, 1);
	return NULL;
}

static int mode_serve(const char *path, const char *nofile)
{
	GError *error = NULL;
	if (nofile) {
		struct rlimit rl = {(rlim_t)atoi(nofile), (rlim_t)atoi(nofile)};
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			return 10;
		g_log_set_default_handler(quiet_log, NULL); /* one line per cut client otherwise */
	}
	Mesh *mesh = mesh_new("server", NULL, &error);
	MeshReceiver *r = NULL;
	if (!mesh_listen(mesh, path, FALSE, &r, &error)) {
		printf("error %d %s\n", error->code, error->message);
		fflush(stdout);
		mesh_free(mesh);
		return 0;
	}
	printf("ready\n");
	fflush(stdout);
	gint stop = 0;
	GThread *t = g_thread_new("stdin", serve_stdin_watch, &stop);
	while (!g_atomic_int_get(&stop)) {
		MeshMessage *msg = NULL;
		if (mesh_receiver_recv_message(r, 50000, &msg, NULL)) {
			size_t size;
			const uint8_t *data = mesh_message_get_data(msg, &size);
			printf("got %.*s\n", (int)size, (const char *)data);
			fflush(stdout);
			mesh_message_free(msg);
		}
	}
	g_thread_join(t);
	mesh_receiver_free(r);
	mesh_unlisten(mesh, path);
	mesh_free(mesh);
	printf("done\n");
	fflush(stdout);
	return 0;
}

/* A child of this program in @mode; its stdin and stdout are pipes, stderr captured. */
typedef struct {
	pid_t pid;
	int in, out, err;
} Proc;

static Proc proc_start(const char *const *args, uid_t uid)
{
	int in[2], out[2], err[2];
	ck_assert_int_eq(pipe2(in, O_CLOEXEC), 0);
	ck_assert_int_eq(pipe2(out, O_CLOEXEC), 0);
	ck_assert_int_eq(pipe2(err, O_CLOEXEC), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		dup2(in[0], 0);
		dup2(out[1], 1);
		dup2(err[1], 2);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (uid != (uid_t)-1 && (setresgid(uid, uid, uid) < 0 || setresuid(uid, uid, uid) < 0))
			_exit(126);
		char *argv[8] = {self_exe};
		for (int i = 0; args[i] && i < 6; i++)
			argv[i + 1] = (char *)args[i];
		execv(self_exe, argv);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	close(err[1]);
	return (Proc){pid, in[1], out[0], err[0]};
}

/* Reads one line from the child's stdout (bounded by its exit or WAIT_S). */
static char *proc_read_line(Proc *p)
{
	GString *s = g_string_new(NULL);
	char c;
	alarm(WAIT_S);
	while (read(p->out, &c, 1) == 1 && c != '\n')
		g_string_append_c(s, c);
	alarm(0);
	return g_string_free(s, FALSE);
}

/* Closes its stdin, waits (bounded) for its exit; its status, its stderr in @ret_err. */
static int proc_finish(Proc *p, char **ret_err)
{
	int status = -1;
	if (p->in >= 0)
		close(p->in);
	for (int i = 0; i < WAIT_S * 100; i++) {
		if (waitpid(p->pid, &status, WNOHANG) == p->pid)
			break;
		g_usleep(10000);
		status = -1;
	}
	if (status == -1 && p->pid > 0) {
		kill(p->pid, SIGKILL);
		waitpid(p->pid, NULL, 0);
	}
	GString *s = g_string_new(NULL);
	char buf[512];
	ssize_t n;
	fcntl(p->err, F_SETFL, O_NONBLOCK);
	while ((n = read(p->err, buf, sizeof(buf))) > 0)
		g_string_append_len(s, buf, n);
	close(p->err);
	close(p->out);
	if (ret_err)
		*ret_err = g_string_free(s, FALSE);
	else
		g_string_free(s, TRUE);
	return status;
}

/* A host whose socket (fd 3) is missing exits at once, saying why. */
START_TEST(test_host_without_fd3)
{
	GError *error = NULL;
	Mesh *mesh = mesh_new("fd3", NULL, &error);
	ck_assert_ptr_nonnull(mesh);
	char *dir = g_dir_make_tmp("mesh-fd3-XXXXXX", NULL);
	char *err_path = g_build_filename(dir, "stderr.log", NULL);
	MeshProcessConfig *c = mesh_process_config_new("nofd3");
	mesh_process_config_set_env(c, "MESH_TEST_CLOSE_FD3", "1");
	mesh_process_config_set_stderr_path(c, err_path);
	GPid pid = mesh_launch_host(mesh, c, mesh_message_new("x", 1), &error);
	ck_assert_msg(pid > 0, "%s", error ? error->message : "");
	mesh_process_config_free(c);
	for (int i = 0; i < WAIT_S * 100 && mesh_get_host_count(mesh) > 0; i++)
		g_usleep(10000);
	ck_assert_uint_eq(mesh_get_host_count(mesh), 0);
	char *log = NULL;
	ck_assert(g_file_get_contents(err_path, &log, NULL, NULL));
	ck_assert_msg(strstr(log, "fd 3, the socket to the parent, is not open"), "%s", log);
	g_free(log);
	mesh_free(mesh);
	unlink(err_path);
	rmdir(dir);
	g_free(err_path);
	g_free(dir);
}
END_TEST

static char *make_dir(void)
{
	char *dir = g_dir_make_tmp("mesh-listen-XXXXXX", NULL);
	ck_assert_ptr_nonnull(dir);
	return dir;
}

static void remove_dir(char *dir)
{
	GDir *d = g_dir_open(dir, 0, NULL);
	const char *name;
	while (d && (name = g_dir_read_name(d))) {
		char *p = g_build_filename(dir, name, NULL);
		unlink(p);
		g_free(p);
	}
	if (d)
		g_dir_close(d);
	rmdir(dir);
	g_free(dir);
}

/* A live server's socket is not replaced; a dead one's is. */
START_TEST(test_listen_live_not_replaced)
{
	char *dir = make_dir();
	char *path = g_build_filename(dir, "s.sock", NULL);
	const char *sargs[] = {"serve", path, NULL};

	Proc a = proc_start(sargs, (uid_t)-1);
	char *line = proc_read_line(&a);
	ck_assert_str_eq(line, "ready");
	g_free(line);
	for (int round = 0; round < 3; round++) {
		Proc b = proc_start(sargs, (uid_t)-1);
		line = proc_read_line(&b);
		char *expect = g_strdup_printf("error %d ", MESH_PROCESS_ERROR_ADDRESS_IN_USE);
		ck_assert_msg(g_str_has_prefix(line, expect) && strstr(line, "a server listens there"),
			      "%s", line);
		g_free(expect);
		g_free(line);
		ck_assert_int_eq(proc_finish(&b, NULL), 0);
	}
	/* A still has its socket: a client reaches it. */
	const char *cargs[] = {"client", path, NULL};
	Proc c = proc_start(cargs, (uid_t)-1);
	ck_assert_int_eq(proc_finish(&c, NULL), 0);
	line = proc_read_line(&a);
	ck_assert_msg(g_str_has_prefix(line, "got hello from uid"), "%s", line);
	g_free(line);

	/* A dies: its socket is stale, and the next server replaces it. */
	kill(a.pid, SIGKILL);
	proc_finish(&a, NULL);
	ck_assert(g_file_test(path, G_FILE_TEST_EXISTS));
	Proc d = proc_start(sargs, (uid_t)-1);
	line = proc_read_line(&d);
	ck_assert_str_eq(line, "ready");
	g_free(line);

	/* Someone replaces D's socket file: D's unlisten leaves the new one alone. */
	unlink(path);
	int other = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	g_strlcpy(addr.sun_path, path, sizeof(addr.sun_path));
	ck_assert_int_eq(bind(other, (struct sockaddr *)&addr, sizeof(addr)), 0);
	ck_assert_int_eq(listen(other, 4), 0);
	close(d.in);
	d.in = -1;
	line = proc_read_line(&d);
	ck_assert_str_eq(line, "done");
	g_free(line);
	ck_assert_int_eq(proc_finish(&d, NULL), 0);
	ck_assert_msg(g_file_test(path, G_FILE_TEST_EXISTS), "the old server removed our socket");
	close(other);
	g_free(path);
	remove_dir(dir);
}
END_TEST

/* Listening twice on one path in one mesh is an error; the first listener goes on. */
START_TEST(test_listen_twice)
{
	GError *error = NULL;
	Mesh *mesh = mesh_new("twice", NULL, &error);
	char *dir = make_dir();
	char *path = g_build_filename(dir, "s.sock", NULL);
	MeshReceiver *r1 = NULL, *r2 = NULL;
	ck_assert_msg(mesh_listen(mesh, path, FALSE, &r1, &error), "%s",
		      error ? error->message : "");
	ck_assert(!mesh_listen(mesh, path, FALSE, &r2, &error));
	ck_assert_msg(g_error_matches(error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_ADDRESS_IN_USE),
		      "%s", error->message);
	ck_assert_ptr_null(r2);
	g_clear_error(&error);
	const char *cargs[] = {"client", path, NULL};
	Proc c = proc_start(cargs, (uid_t)-1);
	ck_assert_int_eq(proc_finish(&c, NULL), 0);
	MeshMessage *msg = NULL;
	ck_assert(mesh_receiver_recv_message(r1, WAIT_S * G_USEC_PER_SEC, &msg, NULL));
	mesh_message_free(msg);
	mesh_receiver_free(r1);
	mesh_unlisten(mesh, path);
	ck_assert(!g_file_test(path, G_FILE_TEST_EXISTS));
	/* And again, after unlisten. */
	ck_assert(mesh_listen(mesh, path, FALSE, &r1, &error));
	mesh_receiver_free(r1);
	mesh_free(mesh);
	ck_assert(!g_file_test(path, G_FILE_TEST_EXISTS));
	g_free(path);
	remove_dir(dir);
}
END_TEST

/* allow_other_users: a client of another uid gets in when allowed, not otherwise. */
START_TEST(test_listen_other_users)
{
	if (geteuid() != 0)
		return; /* needs root to run a client as another user */
	GError *error = NULL;
	Mesh *mesh = mesh_new("others", NULL, &error);
	char *dir = make_dir();
	ck_assert_int_eq(chmod(dir, 0711), 0); /* others may reach the socket, not list */
	char *open_path = g_build_filename(dir, "open.sock", NULL);
	char *closed_path = g_build_filename(dir, "closed.sock", NULL);
	MeshReceiver *ro = NULL, *rc = NULL;
	ck_assert_msg(mesh_listen(mesh, open_path, TRUE, &ro, &error), "%s",
		      error ? error->message : "");
	ck_assert(mesh_listen(mesh, closed_path, FALSE, &rc, &error));

	const char *oargs[] = {"client", open_path, NULL};
	Proc c = proc_start(oargs, 65534);
	char *err = NULL;
	int status = proc_finish(&c, &err);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %#x: %s", status, err);
	g_free(err);
	MeshMessage *msg = NULL;
	ck_assert(mesh_receiver_recv_message(ro, WAIT_S * G_USEC_PER_SEC, &msg, NULL));
	size_t size;
	const uint8_t *data = mesh_message_get_data(msg, &size);
	ck_assert_int_eq(size, strlen("hello from uid 65534"));
	ck_assert(memcmp(data, "hello from uid 65534", size) == 0);
	mesh_message_free(msg);

	const char *cargs[] = {"client", closed_path, NULL};
	c = proc_start(cargs, 65534);
	status = proc_finish(&c, &err);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 1, "status %#x: %s", status, err);
	ck_assert_msg(strstr(err, "Permission denied"), "%s", err);
	char *code = g_strdup_printf("mesh-error-quark %d: the listener on %s refused this client",
				     MESH_ERROR_PERMISSION_DENIED, closed_path);
	ck_assert_msg(strstr(err, code), "%s", err);
	g_free(code);
	g_free(err);

	/* The same uid still gets into the closed one. */
	c = proc_start(cargs, (uid_t)-1);
	ck_assert_int_eq(proc_finish(&c, NULL), 0);

	mesh_receiver_free(ro);
	mesh_receiver_free(rc);
	mesh_free(mesh);
	g_free(open_path);
	g_free(closed_path);
	remove_dir(dir);
}
END_TEST

/*
 * Connect errors tell "not up yet, retry" (no socket file, nobody accepts
 * behind it) from a bad path.
 */
START_TEST(test_connect_errors)
{
	char *dir = make_dir();
	char *missing = g_build_filename(dir, "missing.sock", NULL);
	char *stale = g_build_filename(dir, "stale.sock", NULL);
	MeshSender *s = NULL;
	GError *error = NULL;

	ck_assert_ptr_null(mesh_connect(missing, G_USEC_PER_SEC, &s, &error));
	ck_assert_msg(g_error_matches(error, MESH_ERROR, MESH_ERROR_UNAVAILABLE), "%d %s",
		      error->code, error->message);
	ck_assert_msg(strstr(error->message, missing), "%s", error->message);
	g_clear_error(&error);

	/* A socket file nobody accepts on (a server that died). */
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	g_strlcpy(addr.sun_path, stale, sizeof(addr.sun_path));
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
	close(fd);
	ck_assert_ptr_null(mesh_connect(stale, G_USEC_PER_SEC, &s, &error));
	ck_assert_msg(g_error_matches(error, MESH_ERROR, MESH_ERROR_UNAVAILABLE), "%d %s",
		      error->code, error->message);
	g_clear_error(&error);

	char *long_path = g_strdup_printf("%s/%0200d.sock", dir, 0);
	ck_assert_ptr_null(mesh_connect(long_path, G_USEC_PER_SEC, &s, &error));
	ck_assert_msg(g_error_matches(error, MESH_ERROR, MESH_ERROR_INVALID_ARGUMENT), "%d %s",
		      error->code, error->message);
	ck_assert_msg(strstr(error->message, "too long"), "%s", error->message);
	g_clear_error(&error);
	ck_assert_ptr_null(s);

	g_free(long_path);
	g_free(missing);
	g_free(stale);
	remove_dir(dir);
}
END_TEST

/*
 * A client whose uid the server does not allow (root gets past the socket
 * file's mode, not past the server's SO_PEERCRED check) is told it was
 * refused, not that the stream ended early.
 */
START_TEST(test_connect_refused_uid)
{
	if (geteuid() != 0)
		return; /* needs root to run the server as another user */
	char *dir = make_dir();
	ck_assert_int_eq(chown(dir, 65534, 65534), 0);
	char *path = g_build_filename(dir, "s.sock", NULL);
	const char *sargs[] = {"serve", path, NULL};
	Proc srv = proc_start(sargs, 65534);
	char *line = proc_read_line(&srv);
	ck_assert_str_eq(line, "ready");
	g_free(line);
	for (int round = 0; round < 3; round++) {
		const char *cargs[] = {"client", path, NULL};
		Proc c = proc_start(cargs, (uid_t)-1);
		char *err = NULL;
		int status = proc_finish(&c, &err);
		ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 1, "status %#x: %s",
			      status, err);
		char *expect = g_strdup_printf("mesh-error-quark %d: the listener refused this "
					       "client: its uid is not allowed",
					       MESH_ERROR_PERMISSION_DENIED);
		ck_assert_msg(strstr(err, expect), "%s", err);
		g_free(expect);
		g_free(err);
	}
	close(srv.in);
	srv.in = -1;
	line = proc_read_line(&srv);
	ck_assert_str_eq(line, "done");
	g_free(line);
	ck_assert_int_eq(proc_finish(&srv, NULL), 0);
	g_free(path);
	remove_dir(dir);
}
END_TEST

/*
 * A connection whose server was SIGKILLed does not shut down "cleanly":
 * clean means the server confirmed the end (its end of stream after ours).
 */
START_TEST(test_connection_shutdown_server_killed)
{
	char *dir = make_dir();
	char *path = g_build_filename(dir, "s.sock", NULL);
	for (int round = 0; round < 4; round++) {
		const char *sargs[] = {"serve", path, NULL};
		Proc srv = proc_start(sargs, (uid_t)-1);
		char *line = proc_read_line(&srv);
		ck_assert_str_eq(line, "ready");
		g_free(line);
		const char *cargs[] = {"client-wait", path, NULL};
		Proc c = proc_start(cargs, (uid_t)-1);
		line = proc_read_line(&c);
		ck_assert_str_eq(line, "sent");
		g_free(line);
		line = proc_read_line(&srv);
		ck_assert_str_eq(line, "got hello");
		g_free(line);
		kill(srv.pid, SIGKILL);
		proc_finish(&srv, NULL);
		if (round % 2)
			g_usleep(100000); /* the client may see the end before its shutdown, or not */
		char *err = NULL;
		int status = proc_finish(&c, &err);
		ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 2, "round %d: status %#x: %s",
			      round, status, err);
		g_free(err);
		unlink(path);
	}
	/* A live server confirms. */
	const char *sargs[] = {"serve", path, NULL};
	Proc srv = proc_start(sargs, (uid_t)-1);
	char *line = proc_read_line(&srv);
	ck_assert_str_eq(line, "ready");
	g_free(line);
	const char *cargs[] = {"client-wait", path, NULL};
	Proc c = proc_start(cargs, (uid_t)-1);
	line = proc_read_line(&c);
	ck_assert_str_eq(line, "sent");
	g_free(line);
	char *err = NULL;
	int status = proc_finish(&c, &err);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %#x: %s", status, err);
	g_free(err);
	line = proc_read_line(&srv);
	ck_assert_str_eq(line, "got hello");
	g_free(line);
	line = proc_read_line(&srv);
	ck_assert_str_eq(line, "got bye");
	g_free(line);
	ck_assert_int_eq(proc_finish(&srv, NULL), 0);
	g_free(path);
	remove_dir(dir);
}
END_TEST

/* A directory refused says why: another owner, or writable by others. */
START_TEST(test_listen_dir_messages)
{
	GError *error = NULL;
	Mesh *mesh = mesh_new("dirs", NULL, &error);
	char *dir = make_dir();
	char *path = g_build_filename(dir, "s.sock", NULL);
	MeshReceiver *r = NULL;

	ck_assert_int_eq(chmod(dir, 0770), 0);
	ck_assert(!mesh_listen(mesh, path, FALSE, &r, &error));
	ck_assert(g_error_matches(error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_INSECURE));
	ck_assert_msg(strstr(error->message, "other users can write to it (mode 0770)"), "%s",
		      error->message);
	g_clear_error(&error);
	ck_assert_int_eq(chmod(dir, 0700), 0);
	if (geteuid() == 0) {
		ck_assert_int_eq(chown(dir, 65534, 65534), 0);
		ck_assert(!mesh_listen(mesh, path, FALSE, &r, &error));
		ck_assert(g_error_matches(error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_INSECURE));
		ck_assert_msg(strstr(error->message, "belongs to uid 65534, not to us (uid 0)"), "%s",
			      error->message);
		ck_assert(!strstr(error->message, "write"));
		g_clear_error(&error);
	}
	mesh_free(mesh);
	g_free(path);
	remove_dir(dir);
}
END_TEST

/* mesh_listen() with 256 fds: 400 idle clients, and good clients still get in. */
START_TEST(test_listen_idle_clients)
{
	char *dir = make_dir();
	char *path = g_build_filename(dir, "s.sock", NULL);
	const char *sargs[] = {"serve", path, "256", NULL};
	Proc server = proc_start(sargs, (uid_t)-1);
	char *line = proc_read_line(&server);
	ck_assert_str_eq(line, "ready");
	g_free(line);
	const char *iargs[] = {"idle", path, "400", NULL};
	Proc idle = proc_start(iargs, (uid_t)-1);
	line = proc_read_line(&idle);
	ck_assert_msg(g_str_has_prefix(line, "connected=") && atoi(line + 10) > 300, "%s", line);
	g_free(line);
	for (int round = 0; round < 3; round++) {
		const char *cargs[] = {"client", path, NULL};
		Proc c = proc_start(cargs, (uid_t)-1);
		char *err = NULL;
		int status = proc_finish(&c, &err);
		ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %#x: %s",
			      status, err);
		g_free(err);
		line = proc_read_line(&server);
		ck_assert_msg(g_str_has_prefix(line, "got hello from uid"), "%s", line);
		g_free(line);
	}
	ck_assert_int_eq(proc_finish(&idle, NULL), 0);
	ck_assert_int_eq(proc_finish(&server, NULL), 0);
	g_free(path);
	remove_dir(dir);
}
END_TEST

/*
 * Thousands of listener clients come and go, some cleanly, some dropped
 * or killed, some closing a raw socket: the listener lets go of each
 * (the sender entry of its bridge in the listener's receiver, the bridge's
 * ports, its remote node) whether or not it was received from. A failed
 * client's sender entry used to be kept for good.
 */
START_TEST(test_listen_clients_come_and_go)
{
	char *dir = make_dir();
	char *path = g_build_filename(dir, "s.sock", NULL);
	GError *error = NULL;
	Mesh *mesh = mesh_new("server", NULL, &error);
	ck_assert_ptr_nonnull(mesh);
	MeshReceiver *r = NULL;
	ck_assert_msg(mesh_listen(mesh, path, FALSE, &r, &error), "%s",
		      error ? error->message : "");
	MeshNode *node = mesh_get_node(mesh);
	guint senders0 = mesh_receiver_count_senders(r);
	guint ports0 = mesh_node_count_ports(node);
	guint remotes0 = mesh_node_count_remotes(node);

	const int n = 2500;
	char *sn = g_strdup_printf("%d", n);
	const char *args[] = {"clients", path, sn, NULL};
	Proc p = proc_start(args, (uid_t)-1);
	g_free(sn);
	/* Receives while they come and go (a deadline bounds it: 300 s). */
	guint received = 0;
	int status = -1;
	gint64 deadline = g_get_monotonic_time() + 300 * G_USEC_PER_SEC;
	while (g_get_monotonic_time() < deadline) {
		MeshMessage *msg = NULL;
		if (mesh_receiver_recv_message(r, 20000, &msg, NULL)) {
			mesh_message_free(msg);
			received++;
		} else if (waitpid(p.pid, &status, WNOHANG) == p.pid) {
			break;
		}
	}
	if (status == -1) {
		kill(p.pid, SIGKILL);
		waitpid(p.pid, NULL, 0);
	}
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "clients: status %#x",
		      status);
	char *line = proc_read_line(&p);
	if (strcmp(line, "done 0") != 0) {
		/* The clients have all ended: their stderr is whole. */
		GString *err = g_string_new(NULL);
		char buf[512];
		ssize_t k;
		alarm(WAIT_S);
		while ((k = read(p.err, buf, sizeof(buf))) > 0)
			g_string_append_len(err, buf, k);
		alarm(0);
		ck_abort_msg("clients said \"%s\"; their stderr: %s", line, err->str);
	}
	g_free(line);
	/* At least every "send" client's message came. */
	ck_assert_uint_ge(received, n / 5);
	printf("%d clients came and went, %u messages received\n", n, received);

	/* Each client's end comes through its connection: wait for it (bounded). */
	guint senders = 0, ports = 0, remotes = 0;
	for (int i = 0; i < WAIT_S * 100; i++) {
		MeshMessage *msg = NULL;
		while (mesh_receiver_recv_message(r, 0, &msg, NULL))
			mesh_message_free(msg);
		senders = mesh_receiver_count_senders(r);
		ports = mesh_node_count_ports(node);
		remotes = mesh_node_count_remotes(node);
		if (senders == senders0 && ports == ports0 && remotes == remotes0)
			break;
		g_usleep(10000);
	}
	ck_assert_msg(senders == senders0 && ports == ports0 && remotes == remotes0,
		      "after %d clients: %u sender entries (%u before), %u ports (%u), "
		      "%u remote nodes (%u)",
		      n, senders, senders0, ports, ports0, remotes, remotes0);

	mesh_receiver_free(r);
	mesh_unlisten(mesh, path);
	mesh_free(mesh);
	close(p.in);
	close(p.out);
	close(p.err);
	g_free(path);
	remove_dir(dir);
}
END_TEST

/* meshctl inspect against a server that drops the request's answer: an error, no crash. */
START_TEST(test_meshctl_inspect_answer_dropped)
{
	const char *build = g_getenv("MESH_TEST_BUILDDIR");
	char *meshctl = g_build_filename(build ? build : ".", "libmeshprocess", "meshctl", "meshctl",
					 NULL);
	if (!g_file_test(meshctl, G_FILE_TEST_IS_EXECUTABLE)) {
		g_free(meshctl);
		return; /* not built here */
	}
	char *dir = make_dir();
	char *path = g_build_filename(dir, "s.sock", NULL);
	const char *sargs[] = {"serve", path, NULL};
	Proc server = proc_start(sargs, (uid_t)-1);
	char *line = proc_read_line(&server);
	ck_assert_str_eq(line, "ready");
	g_free(line);

	char *out = NULL, *err = NULL;
	int status = -1;
	char *argv[] = {meshctl, "inspect", "--timeout", "10", path, NULL};
	ck_assert(g_spawn_sync(NULL, argv, NULL, G_SPAWN_DEFAULT, NULL, NULL, &out, &err, &status,
			       NULL));
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 1, "status %#x: %s", status, err);
	ck_assert_msg(strstr(err, "no answer from"), "%s", err);
	g_free(out);
	g_free(err);
	line = proc_read_line(&server);
	ck_assert_str_eq(line, "got inspect"); /* the server had it, and dropped its answer */
	g_free(line);
	ck_assert_int_eq(proc_finish(&server, NULL), 0);
	g_free(path);
	remove_dir(dir);
	g_free(meshctl);
}
END_TEST

/* Waits until every thread of @pid is stopped (SIGSTOP stops the threads one by one). */
static void wait_stopped(GPid pid)
{
	for (int tries = 0; tries < 10000; tries++) {
		char *dir_path = g_strdup_printf("/proc/%d/task", pid);
		GDir *dir = g_dir_open(dir_path, 0, NULL);
		gboolean all = dir != NULL;
		const char *name;
		while (dir && (name = g_dir_read_name(dir))) {
			char *stat_path = g_strdup_printf("%s/%s/stat", dir_path, name);
			char *stat = NULL;
			if (g_file_get_contents(stat_path, &stat, NULL, NULL)) {
				const char *paren = strrchr(stat, ')');
				all = all && paren && paren[1] == ' ' && paren[2] == 'T';
			}
			g_free(stat);
			g_free(stat_path);
		}
		if (dir)
			g_dir_close(dir);
		g_free(dir_path);
		if (all)
			return;
		g_usleep(1000);
	}
	ck_abort_msg("host %d did not stop", pid);
}

static gpointer kill_later(gpointer data)
{
	g_usleep(300000);
	kill(GPOINTER_TO_INT(data), SIGKILL);
	return NULL;
}

/* A host killed while an inspect waits for its answer: an error in the report, no crash. */
START_TEST(test_inspect_host_killed)
{
	GError *error = NULL;
	Mesh *mesh = mesh_new("inspect", NULL, &error);
	ck_assert_ptr_nonnull(mesh);
	MeshProcessConfig *c = mesh_process_config_new("victim");
	GPid pid = mesh_launch_host(mesh, c, mesh_message_new("wait", 4), &error);
	ck_assert_msg(pid > 0, "%s", error ? error->message : "");
	mesh_process_config_free(c);
	char *json = mesh_inspect(mesh, 10 * G_USEC_PER_SEC); /* the host is up */
	ck_assert_msg(strstr(json, "rss_kib"), "%s", json);
	g_free(json);
	kill(pid, SIGSTOP); /* it cannot answer the next one */
	wait_stopped(pid);
	GThread *t = g_thread_new("killer", kill_later, GINT_TO_POINTER(pid));
	json = mesh_inspect(mesh, 10 * G_USEC_PER_SEC);
	g_thread_join(t);
	ck_assert_msg(strstr(json, "\"error\""), "%s", json);
	g_free(json);
	mesh_free(mesh);
}
END_TEST

int main(int argc, char **argv)
{
	GError *error = NULL;

	if (g_getenv("MESH_TEST_CLOSE_FD3"))
		close(3);
	if (!mesh_try_run_host("ltest", host_main, NULL, &error)) {
		fprintf(stderr, "host: %s\n", error->message);
		return 3;
	}
	if (argc >= 3 && strcmp(argv[1], "client") == 0)
		return mode_client(argv[2]);
	if (argc >= 3 && strcmp(argv[1], "client-wait") == 0)
		return mode_client_wait(argv[2]);
	if (argc >= 3 && strcmp(argv[1], "serve") == 0)
		return mode_serve(argv[2], argc >= 4 ? argv[3] : NULL);
	if (argc >= 4 && strcmp(argv[1], "clients") == 0)
		return mode_clients(argv[2], atoi(argv[3]));
	if (argc >= 4 && strcmp(argv[1], "idle") == 0)
		return mode_idle(argv[2], atoi(argv[3]));
	self_exe = g_file_read_link("/proc/self/exe", NULL);

	Suite *s = suite_create("libmeshprocess-listen");
	TCase *tc = tcase_create("host");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_host_without_fd3);
	tcase_add_test(tc, test_inspect_host_killed);
	suite_add_tcase(s, tc);
	TCase *tc2 = tcase_create("listen");
	tcase_set_timeout(tc2, 120);
	tcase_add_test(tc2, test_listen_live_not_replaced);
	tcase_add_test(tc2, test_listen_twice);
	tcase_add_test(tc2, test_listen_other_users);
	tcase_add_test(tc2, test_connect_errors);
	tcase_add_test(tc2, test_connect_refused_uid);
	tcase_add_test(tc2, test_connection_shutdown_server_killed);
	tcase_add_test(tc2, test_listen_dir_messages);
	tcase_add_test(tc2, test_meshctl_inspect_answer_dropped);
	tcase_add_test(tc2, test_listen_idle_clients);
	suite_add_tcase(s, tc2);
	TCase *tc3 = tcase_create("clients");
	tcase_set_timeout(tc3, 360);
	tcase_add_test(tc3, test_listen_clients_come_and_go);
	suite_add_tcase(s, tc3);

	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_ENV);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	g_free(self_exe);
	return failed ? 1 : 0;
}
