/* SPDX-License-Identifier: MIT */
/*
 * Joining and listening under faults, across real processes: a joiner whose
 * leader goes away before the initial message, a joiner without its socket,
 * a listener flooded with clients that never take their invitation. This
 * program is also the child: main() runs the mode named by argv[1].
 */
#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <pal/pal.h>

#include "unix-leader-private.h"
#include "unix-test.h"

#define WAIT_S 20

/* Child modes. */

/* joinfd: join with an invitation whose socket is fd 3 (ids made up). */
static int mode_joinfd(void)
{
	MeshNodeId me, leader;
	MeshPortId p, lp;
	mesh_uuid_generate(&me);
	mesh_uuid_generate(&leader);
	mesh_uuid_generate(&p);
	mesh_uuid_generate(&lp);
	MeshInvitation *inv = mesh_invitation_new_take(&me, &p, &leader, &lp, 3);
	MeshPort *port = NULL;
	GError *error = NULL;
	MeshUnixNode *u = mesh_unix_node_join(inv, NULL, 10 * G_USEC_PER_SEC, &port, &error);
	if (!u) {
		fprintf(stderr, "child: %s\n", error->message);
		g_error_free(error);
		return 1;
	}
	mesh_port_close(port);
	mesh_unix_node_free(u);
	return 0;
}

/*
 * bypath PATH: join through a listener; exit 0 once the server's "welcome"
 * came, 1 on a join error, 2 without the welcome.
 */
static int mode_bypath(const char *path)
{
	MeshPort *port = NULL;
	GError *error = NULL;
	MeshUnixNode *u = mesh_unix_node_join_by_path(path, NULL, 10 * G_USEC_PER_SEC, &port,
						      &error);
	if (!u) {
		fprintf(stderr, "child: %s\n", error->message);
		g_error_free(error);
		return 1;
	}
	TestRecv *r = test_recv_new(port);
	MeshMessage *msg = test_recv_wait(r, 10000);
	int status = 2;
	if (test_recv_is_message(msg)) {
		size_t size;
		const uint8_t *data = mesh_message_get_data(msg, &size);
		status = size == 7 && memcmp(data, "welcome", 7) == 0 ? 0 : 2;
		mesh_message_free(msg);
	}
	test_recv_free(r);
	mesh_port_close(port);
	mesh_unix_node_shutdown(u, G_USEC_PER_SEC);
	mesh_unix_node_free(u);
	return status;
}

/*
 * The server's log: only the listener's reports of dropped clients (debug
 * included), not one line per client: nobody reads the pipe until the end.
 */
static GLogWriterOutput server_log(GLogLevelFlags level, const GLogField *fields,
				   gsize n_fields, gpointer data)
{
	for (gsize i = 0; i < n_fields; i++) {
		if (strcmp(fields[i].key, "MESSAGE") == 0 && fields[i].length == -1 &&
		    strstr(fields[i].value, "client(s) dropped"))
			fprintf(stderr, "%s\n", (const char *)fields[i].value);
	}
	return G_LOG_WRITER_HANDLED;
}

static void welcome_client(MeshPort *port, gpointer data)
{
	port_send_bytes(port, "welcome");
	mesh_port_close(port);
}

/*
 * server PATH NOFILE TIMEOUT_MS MAX_PENDING [refuse]: a leader listening on
 * PATH with RLIMIT_NOFILE lowered (refusing every uid with "refuse"); says
 * "ready" on stdout, serves until stdin closes.
 */
static int mode_server(char **argv)
{
	struct rlimit rl = {(rlim_t)atoi(argv[3]), (rlim_t)atoi(argv[3])};
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
		return 10;
	g_log_set_writer_func(server_log, NULL, NULL);
	MeshNode *node = mesh_node_new();
	MeshUnixNode *u = mesh_unix_node_new(node, NULL);
	GError *error = NULL;
	MeshUnixListener *l = mesh_unix_node_listen(u, argv[2], welcome_client, NULL, NULL, &error);
	if (!l) {
		fprintf(stderr, "server: %s\n", error->message);
		return 11;
	}
	mesh_unix_listener_set_handshake_limits(l, (gint64)atoi(argv[4]) * 1000,
						(guint)atoi(argv[5]));
	if (argv[6] && strcmp(argv[6], "refuse") == 0)
		mesh_unix_listener_set_allowed_uid(l, geteuid() + 1); /* everyone here is refused */
	printf("ready\n");
	fflush(stdout);
	char c;
	while (read(0, &c, 1) > 0)
		;
	mesh_unix_listener_free(l);
	mesh_unix_node_free(u);
	mesh_node_unref(node);
	return 0;
}

/*
 * idle PATH N: connects N clients that never read; says "connected=K" on
 * stdout, then on a line from stdin waits (bounded) until the server hung
 * up on each, and says "hup=H".
 */
static int mode_idle(const char *path, int n)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	g_strlcpy(addr.sun_path, path, sizeof(addr.sun_path));
	struct pollfd *pfd = g_new0(struct pollfd, n);
	int k = 0;
	for (int i = 0; i < n; i++) {
		int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		struct timeval tv = {2, 0}; /* bounds a connect to a full backlog */
		setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		if (connect(s, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
			close(s);
			continue;
		}
		pfd[k++] = (struct pollfd){.fd = s, .events = POLLRDHUP};
	}
	printf("connected=%d\n", k);
	fflush(stdout);
	char c;
	if (read(0, &c, 1) != 1) {
		g_free(pfd);
		return 1;
	}
	int hup = 0;
	gint64 deadline = g_get_monotonic_time() + 15 * G_USEC_PER_SEC;
	while (hup < k && g_get_monotonic_time() < deadline) {
		hup = 0;
		for (int i = 0; i < k; i++)
			hup += (pfd[i].revents & (POLLHUP | POLLRDHUP)) != 0;
		if (hup < k)
			poll(pfd, (nfds_t)k, 100);
	}
	printf("hup=%d\n", hup);
	fflush(stdout);
	for (int i = 0; i < k; i++)
		close(pfd[i].fd);
	g_free(pfd);
	return 0;
}

/* Parent side. */

static char *self_exe;

typedef struct {
	pid_t pid;
	int err; /* the child's stderr, read end */
	int in;  /* its stdin, write end (or -1) */
	int out; /* its stdout, read end (or -1) */
} Proc;

/* Starts this program in mode @args; @fd3 becomes its fd 3 (-1: fd 3 closed). */
static Proc proc_start(const char *const *args, int fd3, gboolean pipes)
{
	int err[2], in[2] = {-1, -1}, out[2] = {-1, -1};
	ck_assert_int_eq(pipe2(err, O_CLOEXEC), 0);
	if (pipes) {
		ck_assert_int_eq(pipe2(in, O_CLOEXEC), 0);
		ck_assert_int_eq(pipe2(out, O_CLOEXEC), 0);
	}
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		dup2(err[1], 2);
		if (pipes) {
			dup2(in[0], 0);
			dup2(out[1], 1);
		}
		if (fd3 >= 0)
			dup2(fd3, 3); /* not close-on-exec */
		else
			close(3);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		char *argv[8] = {self_exe};
		for (int i = 0; args[i] && i < 6; i++)
			argv[i + 1] = (char *)args[i];
		execv(self_exe, argv);
		_exit(127);
	}
	close(err[1]);
	if (pipes) {
		close(in[0]);
		close(out[1]);
	}
	return (Proc){pid, err[0], in[1], out[0]};
}

/* Waits (bounded) for the child's exit; returns its status, its stderr in @ret_err. */
static int proc_finish(Proc *p, char **ret_err)
{
	int status = -1;
	for (int i = 0; i < WAIT_S * 100; i++) {
		if (waitpid(p->pid, &status, WNOHANG) == p->pid)
			break;
		g_usleep(10000);
		status = -1;
	}
	if (status == -1) {
		kill(p->pid, SIGKILL);
		waitpid(p->pid, NULL, 0);
	}
	GString *s = g_string_new(NULL);
	char buf[512];
	ssize_t n;
	pal_fd_set_nonblock(p->err, TRUE);
	while ((n = read(p->err, buf, sizeof(buf))) > 0)
		g_string_append_len(s, buf, n);
	close(p->err);
	if (p->in >= 0)
		close(p->in);
	if (p->out >= 0)
		close(p->out);
	if (ret_err)
		*ret_err = g_string_free(s, FALSE);
	else
		g_string_free(s, TRUE);
	return status;
}

/* Item: the leader's end closes before the initial message; the joiner fails cleanly. */
START_TEST(test_join_leader_closes_early)
{
	for (int round = 0; round < 5; round++) {
		int sv[2];
		ck_assert_int_eq(pal_socketpair(SOCK_SEQPACKET, sv), 0);
		const char *args[] = {"joinfd", NULL};
		Proc p = proc_start(args, sv[1], FALSE);
		close(sv[1]);
		if (round % 2)
			g_usleep(20000); /* sometimes after the joiner waits */
		close(sv[0]);
		char *err = NULL;
		int status = proc_finish(&p, &err);
		ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 1,
			      "round %d: status %#x, stderr: %s", round, status, err);
		ck_assert_msg(strstr(err, "joining the mesh"), "stderr: %s", err);
		ck_assert_msg(!strstr(err, "joining the mesh: joining the mesh"), "stderr: %s", err);
		g_free(err);
	}
}
END_TEST

/*
 * Sends @inv on @client the way upstream's send_payload() frames a payload:
 * a header of two little-endian u32 (data length, fd count), the protobuf
 * data, and the fds as SCM_RIGHTS, in one sendmsg(). Consumes @inv.
 */
static void send_upstream_frame(int client, MeshInvitation *inv)
{
	ProtobufCMessage *msg = unix_invitation_to_message(inv);
	MeshPayloadResources *res = mesh_payload_resources_new();
	uint8_t *data_ = NULL;
	size_t size = 0;
	ck_assert_int_eq(mesh_payload_encode_alloc(msg, &data_, &size, res, NULL), 0);
	uint8_t header[8] = {0};
	for (int i = 0; i < 4; i++) {
		header[i] = (uint8_t)(size >> (8 * i));
		header[4 + i] = (uint8_t)(mesh_payload_resources_len(res) >> (8 * i));
	}
	int fd = mesh_payload_resources_peek_fd(res, 0);
	struct iovec iov[2] = {{header, 8}, {data_, size}};
	ck_assert_int_eq(pal_send_with_fds(client, iov, 2, &fd, 1, 0), (ssize_t)(8 + size));
	g_free(data_);
	mesh_payload_resources_free(res);
	mesh_payload_message_free(msg);
}

/* A fake listener: hands out an invitation whose leader end is already closed. */
static gpointer dead_leader_listener(gpointer data)
{
	int server = GPOINTER_TO_INT(data);
	int client = accept4(server, NULL, NULL, SOCK_CLOEXEC);
	int sv[2];
	ck_assert_int_eq(pal_socketpair(SOCK_SEQPACKET, sv), 0);
	close(sv[0]); /* the leader dies mid-handshake */
	MeshNodeId a, b;
	MeshPortId pa, pb;
	mesh_uuid_generate(&a);
	mesh_uuid_generate(&b);
	mesh_uuid_generate(&pa);
	mesh_uuid_generate(&pb);
	send_upstream_frame(client, mesh_invitation_new_take(&a, &pa, &b, &pb, sv[1]));
	close(client);
	return NULL;
}

typedef struct {
	int server;
	MeshInvitation *inv;
} FrameListener;

/* A listener played by hand: one client gets @inv in upstream's frame. */
static gpointer frame_listener(gpointer data)
{
	FrameListener *fl = data;
	int client = accept4(fl->server, NULL, NULL, SOCK_CLOEXEC);
	ck_assert_int_ge(client, 0);
	send_upstream_frame(client, fl->inv);
	close(client);
	return NULL;
}

/*
 * upstream unix_listener.rs test_send_recv_simple_payload: a payload framed
 * as upstream's send_payload() frames it, over a Unix stream, decodes on the
 * other side to the same value. Here the payload is the one a listener
 * sends, a live invitation (with its fd): the C joiner in a child process
 * reads the frame, joins with it, and gets the leader's "welcome".
 */
START_TEST(test_send_recv_simple_payload)
{
	char *dir = g_dir_make_tmp("mesh-listen-XXXXXX", NULL);
	char *path = g_build_filename(dir, "frame.sock", NULL);
	MeshNode *node = mesh_node_new();
	MeshUnixNode *u = mesh_unix_node_new(node, NULL);
	MeshPort *x, *y;
	FrameListener fl = {0};
	mesh_port_new_pair(&x, &y);
	ck_assert(mesh_unix_node_invite(u, x, -1, &fl.inv, NULL));

	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	g_strlcpy(addr.sun_path, path, sizeof(addr.sun_path));
	fl.server = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_eq(bind(fl.server, (struct sockaddr *)&addr, sizeof(addr)), 0);
	ck_assert_int_eq(listen(fl.server, 4), 0);
	GThread *t = g_thread_new("frame-listener", frame_listener, &fl);
	ck_assert(port_send_bytes(y, "welcome"));
	const char *args[] = {"bypath", path, NULL};
	Proc p = proc_start(args, -1, FALSE);
	char *err = NULL;
	int status = proc_finish(&p, &err);
	g_thread_join(t);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %#x, stderr: %s",
		      status, err);
	g_free(err);

	close(fl.server);
	unlink(path);
	mesh_port_close(y);
	mesh_unix_node_shutdown(u, G_USEC_PER_SEC); /* the child is gone: no verdict */
	mesh_unix_node_free(u);
	mesh_node_unref(node);
	rmdir(dir);
	g_free(path);
	g_free(dir);
}
END_TEST

/* mesh_connect()'s path: a server that dies mid-handshake is a clear error, not a crash. */
START_TEST(test_join_by_path_leader_dead)
{
	char *dir = g_dir_make_tmp("mesh-listen-XXXXXX", NULL);
	char *path = g_build_filename(dir, "dead.sock", NULL);
	for (int round = 0; round < 3; round++) {
		struct sockaddr_un addr = {.sun_family = AF_UNIX};
		g_strlcpy(addr.sun_path, path, sizeof(addr.sun_path));
		int server = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		ck_assert_int_eq(bind(server, (struct sockaddr *)&addr, sizeof(addr)), 0);
		ck_assert_int_eq(listen(server, 4), 0);
		GThread *t = g_thread_new("dead-leader", dead_leader_listener,
					  GINT_TO_POINTER(server));
		const char *args[] = {"bypath", path, NULL};
		Proc p = proc_start(args, -1, FALSE);
		char *err = NULL;
		int status = proc_finish(&p, &err);
		g_thread_join(t);
		close(server);
		unlink(path);
		ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 1,
			      "status %#x, stderr: %s", status, err);
		ck_assert_msg(strstr(err, "joining the mesh"), "stderr: %s", err);
		ck_assert_msg(!strstr(err, "joining the mesh: joining the mesh"), "stderr: %s", err);
		g_free(err);
	}
	rmdir(dir);
	g_free(path);
	g_free(dir);
}
END_TEST

/* A joiner started without its socket on fd 3 fails at once, saying so. */
START_TEST(test_join_without_fd3)
{
	/* fd 3 closed, then fd 3 something else than a SOCK_SEQPACKET socket. */
	int pipefd[2];
	ck_assert_int_eq(pipe2(pipefd, O_CLOEXEC), 0);
	for (int round = 0; round < 2; round++) {
		const char *args[] = {"joinfd", NULL};
		Proc p = proc_start(args, round ? pipefd[0] : -1, FALSE);
		char *err = NULL;
		int status = proc_finish(&p, &err);
		ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 1,
			      "round %d: status %#x, stderr: %s", round, status, err);
		ck_assert_msg(strstr(err, "SOCK_SEQPACKET"), "stderr: %s", err);
		g_free(err);
	}
	close(pipefd[0]);
	close(pipefd[1]);
}
END_TEST

/* A line from the child's stdout (bounded). */
static char *proc_read_line(Proc *p)
{
	GString *s = g_string_new(NULL);
	char c;
	struct pollfd pfd = {p->out, POLLIN, 0};
	while (poll(&pfd, 1, WAIT_S * 1000) == 1 && read(p->out, &c, 1) == 1 && c != '\n')
		g_string_append_c(s, c);
	return g_string_free(s, FALSE);
}

static int count_fds_of(pid_t pid)
{
	char *path = g_strdup_printf("/proc/%d/fd", (int)pid);
	DIR *d = opendir(path);
	int n = 0;
	struct dirent *e;
	while (d && (e = readdir(d)))
		n += e->d_name[0] != '.';
	if (d)
		closedir(d);
	g_free(path);
	return n;
}

/*
 * Clients that connect and never take their invitation cannot exhaust a
 * server: with 128 fds, 300 idle clients, a well-behaved one still joins,
 * and the idle ones are closed (dropped or timed out), their fds given back.
 */
START_TEST(test_idle_clients_do_not_pin)
{
	char *dir = g_dir_make_tmp("mesh-listen-XXXXXX", NULL);
	char *path = g_build_filename(dir, "idle.sock", NULL);
	const char *sargs[] = {"server", path, "128", "1000", "16", NULL};
	Proc server = proc_start(sargs, -1, TRUE);
	char *line = proc_read_line(&server);
	ck_assert_str_eq(line, "ready");
	g_free(line);
	int baseline = count_fds_of(server.pid);

	const char *iargs[] = {"idle", path, "300", NULL};
	Proc idle = proc_start(iargs, -1, TRUE);
	line = proc_read_line(&idle);
	ck_assert_msg(g_str_has_prefix(line, "connected="), "%s", line);
	int connected = atoi(line + 10);
	g_free(line);
	ck_assert_int_gt(connected, 200);

	/* While they idle, a good client joins. */
	for (int round = 0; round < 3; round++) {
		const char *gargs[] = {"bypath", path, NULL};
		Proc good = proc_start(gargs, -1, FALSE);
		char *err = NULL;
		int status = proc_finish(&good, &err);
		ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
			      "round %d: status %#x, stderr: %s", round, status, err);
		g_free(err);
	}

	/* Every idle client is hung up on, and the server's fds come back. */
	ck_assert_int_eq(write(idle.in, "x", 1), 1);
	line = proc_read_line(&idle);
	ck_assert_msg(g_str_has_prefix(line, "hup="), "%s", line);
	ck_assert_int_eq(atoi(line + 4), connected);
	g_free(line);
	ck_assert_int_eq(proc_finish(&idle, NULL), 0);
	int fds = 0;
	for (int i = 0; i < WAIT_S * 100; i++) {
		if ((fds = count_fds_of(server.pid)) <= baseline)
			break;
		g_usleep(10000);
	}
	ck_assert_int_le(fds, baseline);

	close(server.in);
	server.in = -1;
	char *err = NULL;
	int status = proc_finish(&server, &err);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %#x: %s", status,
		      err);
	ck_assert_msg(strstr(err, "client(s) dropped"), "%s", err); /* and said so */
	g_free(err);
	rmdir(dir);
	g_free(path);
	g_free(dir);
}
END_TEST

/*
 * A client whose uid the listener does not allow gets a refusal frame and
 * says it was refused, not that the stream ended early.
 */
START_TEST(test_join_refused_uid)
{
	char *dir = g_dir_make_tmp("mesh-listen-XXXXXX", NULL);
	char *path = g_build_filename(dir, "refuse.sock", NULL);
	const char *sargs[] = {"server", path, "256", "1000", "16", "refuse", NULL};
	Proc server = proc_start(sargs, -1, TRUE);
	char *line = proc_read_line(&server);
	ck_assert_str_eq(line, "ready");
	g_free(line);
	for (int round = 0; round < 3; round++) {
		const char *args[] = {"bypath", path, NULL};
		Proc p = proc_start(args, -1, FALSE);
		char *err = NULL;
		int status = proc_finish(&p, &err);
		ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 1,
			      "round %d: status %#x, stderr: %s", round, status, err);
		ck_assert_msg(strstr(err, "the listener refused this client: its uid is not allowed"),
			      "stderr: %s", err);
		g_free(err);
	}
	close(server.in);
	server.in = -1;
	ck_assert_int_eq(proc_finish(&server, NULL), 0);
	rmdir(dir);
	g_free(path);
	g_free(dir);
}
END_TEST

int main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "joinfd") == 0)
		return mode_joinfd();
	if (argc >= 3 && strcmp(argv[1], "bypath") == 0)
		return mode_bypath(argv[2]);
	if (argc >= 6 && strcmp(argv[1], "server") == 0)
		return mode_server(argv);
	if (argc >= 4 && strcmp(argv[1], "idle") == 0)
		return mode_idle(argv[2], atoi(argv[3]));
	self_exe = g_file_read_link("/proc/self/exe", NULL);

	Suite *s = suite_create("libmeshremote-unix-listen");
	TCase *tc = tcase_create("join");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_join_leader_closes_early);
	tcase_add_test(tc, test_join_by_path_leader_dead);
	tcase_add_test(tc, test_send_recv_simple_payload);
	tcase_add_test(tc, test_join_without_fd3);
	suite_add_tcase(s, tc);
	TCase *tc2 = tcase_create("listen");
	tcase_set_timeout(tc2, 120);
	tcase_add_test(tc2, test_idle_clients_do_not_pin);
	tcase_add_test(tc2, test_join_refused_uid);
	suite_add_tcase(s, tc2);

	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_ENV);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	g_free(self_exe);
	return failed ? 1 : 0;
}
