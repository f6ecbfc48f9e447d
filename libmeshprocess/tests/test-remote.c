/* SPDX-License-Identifier: MIT */
/*
 * Remote hosts (mesh_process_config_set_remote_command()): a host whose
 * stdin and stdout are its link to the parent. This program is also the
 * host: mesh_try_run_host() at the top of main() finds the stdio invitation
 * in the command line the parent built.
 *
 * Without arguments: over a local command that plays ssh's part (a shell
 * that runs the quoted words it is given, as the remote user's shell does).
 * With --ssh: through a real ssh to a private sshd on 127.0.0.1 (a free
 * port, keys generated in a temporary directory); the sshd is stopped by
 * pid. No sshd binary is a failure, unless MESH_TEST_ALLOW_SKIP_SSH=1.
 *
 * The initial message: the scenario's name as bytes; ports 0 the work
 * receiver (chantest.WithPort), 1 the results sender (chantest.Text).
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <meshprocess/meshprocess.h>

#include "test-sandbox-env.h"

#include "test-channel.pb-c.h"

#define WAIT_US (20 * G_USEC_PER_SEC)

/* Host side. */

static void send_result(MeshSender *s, const char *text)
{
	Chantest__Text *t = malloc(sizeof(*t));
	chantest__text__init(t);
	t->text = strdup(text);
	t->sender = (uint32_t)getpid();
	mesh_sender_send(s, &t->base);
}

/*
 * "serve": each work item's name comes back on the results, or, when it
 * carries a port, goes out on that port; "probe" reports what a receive on
 * its port gives. "wait": says so, then only waits. When the work channel
 * ends, the host reports how and returns.
 */
static gboolean host_main(MeshMessage *initial, gpointer data, GError **error)
{
	size_t size = 0;
	const uint8_t *bytes = mesh_message_get_data(initial, &size);
	char *scenario = g_strndup((const char *)bytes, size);
	MeshReceiver *work = mesh_receiver_from_port(mesh_message_steal_port(initial, 0),
						     &chantest__with_port__descriptor);
	MeshSender *results = mesh_sender_from_port(mesh_message_steal_port(initial, 1),
						    &chantest__text__descriptor);
	mesh_message_free(initial);

	/* Our stdout is the link's no more: this goes to stderr. */
	printf("host %s: a stray printf\n", scenario);
	fflush(stdout);

	if (strcmp(scenario, "wait") == 0)
		send_result(results, "waiting");
	ProtobufCMessage *msg;
	GError *e = NULL;
	while (mesh_receiver_recv(work, -1, &msg, &e)) {
		Chantest__WithPort *w = (Chantest__WithPort *)msg;
		MeshPort *port = mesh_port_steal_from_field(w->port);
		if (port && strcmp(w->name, "probe") == 0) {
			MeshReceiver *r = mesh_receiver_from_port(port, NULL);
			MeshMessage *got = NULL;
			GError *pe = NULL;
			if (mesh_receiver_recv_message(r, WAIT_US, &got, &pe)) {
				send_result(results, "probe: a message");
				mesh_message_free(got);
			} else {
				char *text = g_strdup_printf("probe: %s", pe->message);
				send_result(results, text);
				g_free(text);
				g_error_free(pe);
			}
			mesh_receiver_free(r);
		} else if (port) {
			MeshSender *s = mesh_sender_from_port(port, &chantest__text__descriptor);
			send_result(s, w->name);
			mesh_sender_free(s);
		} else {
			send_result(results, w->name);
		}
		mesh_payload_message_free(msg);
	}
	char *text = g_strdup_printf("work ended: %s", e->message);
	send_result(results, text);
	g_free(text);
	g_error_free(e);
	mesh_receiver_free(work);
	mesh_sender_free(results);
	g_free(scenario);
	return TRUE;
}

/* Parent side. */

static Mesh *mesh;
/* The command the hosts run through: a local shell, or ssh to the private sshd. */
static char **remote_command;

typedef struct {
	GPid pid;
	MeshSender *work;      /* chantest.WithPort */
	MeshReceiver *results; /* chantest.Text */
} Host;

static void setup(void)
{
	GError *error = NULL;
	mesh = mesh_new("remote-test", NULL, &error);
	ck_assert_msg(mesh != NULL, "%s", error ? error->message : "");
}

static void teardown(void)
{
	mesh_free(mesh);
	mesh = NULL;
}

/* Launches @name through the remote command with its first port @work_port (or a new channel's). */
static Host launch_with(const char *name, const char *scenario, MeshPort *work_port)
{
	Host h = {0};
	MeshSender *rs;
	MeshReceiver *wr = NULL;
	GError *error = NULL;

	if (!work_port) {
		mesh_channel_new(&chantest__with_port__descriptor, &h.work, &wr);
		work_port = mesh_receiver_into_port(wr);
	}
	mesh_channel_new(&chantest__text__descriptor, &rs, &h.results);
	MeshMessage *initial = mesh_message_new(scenario, strlen(scenario));
	mesh_message_add_port_take(initial, work_port);
	mesh_message_add_port_take(initial, mesh_sender_into_port(rs));
	MeshProcessConfig *c = mesh_process_config_new(name);
	if (remote_command)
		mesh_process_config_set_remote_command(c, (const char *const *)remote_command);
	/*
	 * ssh passes no environment: what the sanitizer setups need goes in
	 * the command line (the instrumented GLib of the tsan setup, the
	 * suppressions).
	 */
	static const char *const forward[] = {"LD_LIBRARY_PATH", "ASAN_OPTIONS", "UBSAN_OPTIONS",
					      "LSAN_OPTIONS", "TSAN_OPTIONS"};
	for (gsize i = 0; i < G_N_ELEMENTS(forward); i++)
		if (g_getenv(forward[i]))
			mesh_process_config_set_env(c, forward[i], g_getenv(forward[i]));
	h.pid = mesh_launch_host(mesh, c, initial, &error);
	mesh_process_config_free(c);
	ck_assert_msg(h.pid > 0, "launch %s: %s", name, error ? error->message : "");
	return h;
}

static Host launch(const char *name, const char *scenario)
{
	return launch_with(name, scenario, NULL);
}

static void send_work(MeshSender *work, const char *name, MeshPort *port)
{
	Chantest__WithPort *w = malloc(sizeof(*w));
	chantest__with_port__init(w);
	w->name = strdup(name);
	if (port)
		w->port = mesh_port_into_field(port);
	mesh_sender_send(work, &w->base);
}

/* The next result's text (and the pid of the process that sent it). */
static char *recv_result(MeshReceiver *r, guint32 *ret_pid)
{
	ProtobufCMessage *msg = NULL;
	GError *error = NULL;
	ck_assert_msg(mesh_receiver_recv(r, WAIT_US, &msg, &error), "%s", error->message);
	Chantest__Text *t = (Chantest__Text *)msg;
	char *text = g_strdup(t->text);
	if (ret_pid)
		*ret_pid = t->sender;
	mesh_payload_message_free(msg);
	return text;
}

static void host_close(Host *h)
{
	mesh_sender_free(h->work);
	mesh_receiver_free(h->results);
}

/* The host's results fail: MESH_ERROR_NODE_FAILURE naming the host and its pid. */
static void expect_failure_naming(Host *h, const char *name)
{
	ProtobufCMessage *msg = NULL;
	GError *error = NULL;
	ck_assert(!mesh_receiver_recv(h->results, WAIT_US, &msg, &error));
	ck_assert_msg(g_error_matches(error, MESH_ERROR, MESH_ERROR_NODE_FAILURE), "%s",
		      error->message);
	char *who = g_strdup_printf("host %s (pid %d)", name, (int)h->pid);
	ck_assert_msg(strstr(error->message, who), "the error does not name %s: %s", who,
		      error->message);
	g_free(who);
	g_error_free(error);
}

/* Typed messages both ways, and a port sent to the host and used. */
static void exchange(Host *h)
{
	guint32 pid = 0;
	for (int i = 0; i < 20; i++) {
		char *name = g_strdup_printf("item %d", i);
		send_work(h->work, name, NULL);
		char *got = recv_result(h->results, &pid);
		ck_assert_str_eq(got, name);
		ck_assert_uint_ne(pid, 0);
		g_free(got);
		g_free(name);
	}
	MeshSender *tx;
	MeshReceiver *rx;
	mesh_channel_new(&chantest__text__descriptor, &tx, &rx);
	send_work(h->work, "via a port", mesh_sender_into_port(tx));
	char *got = recv_result(rx, NULL);
	ck_assert_str_eq(got, "via a port");
	g_free(got);
	/* The host dropped the sender it got: the channel closes cleanly. */
	ProtobufCMessage *msg = NULL;
	GError *error = NULL;
	ck_assert(!mesh_receiver_recv(rx, WAIT_US, &msg, &error));
	ck_assert_msg(g_error_matches(error, MESH_ERROR, MESH_ERROR_CLOSED), "%s", error->message);
	g_error_free(error);
	mesh_receiver_free(rx);
}

static void wait_hosts_gone(void)
{
	for (int i = 0; i < 4000 && mesh_get_host_count(mesh) > 0; i++)
		g_usleep(5000);
	ck_assert_uint_eq(mesh_get_host_count(mesh), 0);
}

START_TEST(test_remote_echo_and_close)
{
	Host h = launch("echo", "serve");
	exchange(&h);
	/* Closing its work channel ends the host's function: it exits 0. */
	mesh_sender_free(h.work);
	h.work = NULL;
	char *got = recv_result(h.results, NULL);
	ck_assert_msg(strstr(got, "work ended"), "%s", got);
	g_free(got);
	host_close(&h);
	wait_hosts_gone();
}
END_TEST

START_TEST(test_remote_inspect_and_shutdown)
{
	Host h = launch("looked-at", "wait");
	guint32 pid = 0;
	char *got = recv_result(h.results, &pid);
	ck_assert_str_eq(got, "waiting");
	g_free(got);
	char *json = mesh_inspect(mesh, WAIT_US);
	char *entry = g_strdup_printf("{\"pid\":%d,\"name\":\"looked-at\"", (int)h.pid);
	char *report = g_strdup_printf("\"report\":{\"pid\":%u,\"name\":\"looked-at\"", pid);
	ck_assert_msg(strstr(json, entry), "%s", json);
	ck_assert_msg(strstr(json, "\"transport\":\"p2p\",\"command\":\""), "%s", json);
	ck_assert_msg(strstr(json, report), "%s", json);
	ck_assert_msg(!strstr(json, "\"node\":\"00000000000000000000000000000000\""), "%s", json);
	ck_assert_msg(!strstr(json, "\"error\""), "%s", json);
	g_free(entry);
	g_free(report);
	g_free(json);

	/* The host's request channel closes: it exits by itself. */
	GError *error = NULL;
	ck_assert_msg(mesh_shutdown(mesh, WAIT_US, &error), "%s", error ? error->message : "");
	ck_assert_uint_eq(mesh_get_host_count(mesh), 0);
	ck_assert_int_eq(kill(h.pid, 0), -1);
	host_close(&h);
}
END_TEST

START_TEST(test_remote_killed)
{
	Host h = launch("victim", "serve");
	Host other = launch("bystander", "serve");
	send_work(h.work, "before", NULL);
	g_free(recv_result(h.results, NULL));
	/* The local command's pid: killing it ends the stream. */
	ck_assert_int_eq(kill(h.pid, SIGKILL), 0);
	expect_failure_naming(&h, "victim");
	host_close(&h);
	/* The other host goes on. */
	send_work(other.work, "still", NULL);
	char *got = recv_result(other.results, NULL);
	ck_assert_str_eq(got, "still");
	g_free(got);
	host_close(&other);
	wait_hosts_gone();
}
END_TEST

/* test_remote_stalled_link: a thread that fills the host's link. */
typedef struct {
	MeshSender *work;
	gint sent;      /* sends that returned */
	gint crash_done; /* mesh_crash() returned */
	GPid pid;
} Stall;

static gpointer flood_thread(gpointer data)
{
	Stall *st = data;
	char *big = g_malloc(1024 * 1024 + 1);
	memset(big, 'x', 1024 * 1024);
	big[1024 * 1024] = '\0';
	/* 1 MiB items until the link's queue is full and a send waits (64 MiB). */
	for (int i = 0; i < 100 && !mesh_sender_is_closed(st->work); i++) {
		send_work(st->work, big, NULL);
		g_atomic_int_inc(&st->sent);
	}
	g_free(big);
	return NULL;
}

static gpointer crash_thread(gpointer data)
{
	Stall *st = data;
	mesh_crash(mesh, st->pid, NULL); /* its request's send waits on the full link */
	g_atomic_int_set(&st->crash_done, 1);
	return NULL;
}

/*
 * A request to a remote host whose link is full (the host stopped reading)
 * waits for room, up to the link's timeout (30 s): the mesh's other calls
 * must not wait with it. The request's sender was cloned under the mesh's
 * lock, so mesh_get_host_count() waited until the link gave up.
 */
START_TEST(test_remote_stalled_link)
{
	Host h = launch("stalled", "serve");
	send_work(h.work, "before", NULL);
	g_free(recv_result(h.results, NULL));
	ck_assert_int_eq(kill(h.pid, SIGSTOP), 0);
	Stall st = {.work = h.work, .pid = h.pid};
	GThread *flood = g_thread_new("flood", flood_thread, &st);
	/* Until the sends stop returning: the link's queue is at its limit. */
	int last = -1, still = 0;
	while (still < 30) {
		int now = g_atomic_int_get(&st.sent);
		still = now == last ? still + 1 : 0;
		last = now;
		g_usleep(20 * 1000);
	}
	ck_assert_int_ge(last, 60);
	GThread *crash = g_thread_new("crash", crash_thread, &st);
	g_usleep(200 * 1000); /* into its send's wait */
	guint n = mesh_get_host_count(mesh);
	int crash_done = g_atomic_int_get(&st.crash_done);
	ck_assert_uint_eq(n, 1);
	ck_assert_msg(!crash_done, "mesh_get_host_count() waited for the request's send");
	/* The end: the host dies, its link ends and the waiting sends return. */
	kill(h.pid, SIGKILL);
	kill(h.pid, SIGCONT);
	g_thread_join(crash);
	g_thread_join(flood);
	expect_failure_naming(&h, "stalled");
	host_close(&h);
	wait_hosts_gone();
}
END_TEST

START_TEST(test_remote_crash)
{
	Host h = launch("crasher", "wait");
	g_free(recv_result(h.results, NULL));
	ck_assert(mesh_crash(mesh, h.pid, NULL));
	expect_failure_naming(&h, "crasher");
	host_close(&h);
	wait_hosts_gone();
}
END_TEST

/* The link carries no fds: the port that sends one fails at once, and the host sees it. */
START_TEST(test_remote_fd_fails_port)
{
	Host h = launch("no-fds", "serve");
	send_work(h.work, "first", NULL);
	g_free(recv_result(h.results, NULL));

	Chantest__WithFd *w = malloc(sizeof(*w));
	chantest__with_fd__init(w);
	w->name = strdup("an fd");
	int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	ck_assert_int_ge(fd, 0);
	w->fd = mesh_payload_fd_new_take(fd);
	MeshSender *untyped = mesh_sender_from_port(mesh_sender_into_port(h.work), NULL);
	h.work = NULL;
	mesh_sender_send_message(untyped, mesh_message_new_typed_take(&w->base));
	ck_assert(mesh_sender_is_closed(untyped));
	char *got = recv_result(h.results, NULL);
	ck_assert_msg(strstr(got, "work ended") && !strstr(got, "closed"), "%s", got);
	g_free(got);
	mesh_sender_free(untyped);
	host_close(&h);
	wait_hosts_gone();
}
END_TEST

/* An initial message with an fd: it fails at the parent, with the ports it carries. */
START_TEST(test_remote_initial_fd)
{
	MeshSender *rs;
	MeshReceiver *results;
	GError *error = NULL;
	mesh_channel_new(&chantest__text__descriptor, &rs, &results);
	MeshMessage *initial = mesh_message_new("serve", 5);
	mesh_message_add_port_take(initial, mesh_sender_into_port(rs));
	mesh_message_add_fd_take(initial, open("/dev/null", O_RDONLY | O_CLOEXEC));
	MeshProcessConfig *c = mesh_process_config_new("fd-at-start");
	mesh_process_config_set_remote_command(c, (const char *const *)remote_command);
	GPid pid = mesh_launch_host(mesh, c, initial, &error);
	mesh_process_config_free(c);
	ck_assert_msg(pid > 0, "%s", error ? error->message : "");
	/* The results sender went down with the message: its receiver hears of it. */
	ProtobufCMessage *msg = NULL;
	ck_assert(!mesh_receiver_recv(results, WAIT_US, &msg, &error));
	ck_assert_msg(!g_error_matches(error, MESH_ERROR, MESH_ERROR_TIMED_OUT), "%s",
		      error->message);
	g_error_free(error);
	mesh_receiver_free(results);
	/* The host finds no initial message and exits. */
	wait_hosts_gone();
}
END_TEST

/* A port whose peer is on another host fails at the remote host: it talks to the parent only. */
START_TEST(test_remote_third_node_port_fails)
{
	MeshPort *a, *b;
	mesh_port_new_pair(&a, &b);
	/* a: the work port of a local host (which waits on it). */
	char **keep = remote_command;
	remote_command = NULL;
	Host local = launch_with("local", "wait", a);
	remote_command = keep;
	g_free(recv_result(local.results, NULL));

	Host h = launch("remote", "serve");
	send_work(h.work, "probe", b);
	char *got = recv_result(h.results, NULL);
	ck_assert_msg(strstr(got, "no extra connections"), "%s", got);
	g_free(got);
	/* The remote host still works with the parent. */
	send_work(h.work, "after", NULL);
	got = recv_result(h.results, NULL);
	ck_assert_str_eq(got, "after");
	g_free(got);
	host_close(&h);
	host_close(&local);
}
END_TEST

START_TEST(test_remote_command_fails)
{
	const char *const bad[] = {"/nonexistent/ssh", "somewhere", NULL};
	MeshProcessConfig *c = mesh_process_config_new("nowhere");
	mesh_process_config_set_remote_command(c, bad);
	GError *error = NULL;
	GPid pid = mesh_launch_host(mesh, c, mesh_message_new("serve", 5), &error);
	mesh_process_config_free(c);
	ck_assert_int_eq(pid, 0);
	ck_assert(g_error_matches(error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_SPAWN));
	ck_assert_msg(strstr(error->message, "/nonexistent/ssh"), "%s", error->message);
	g_clear_error(&error);

	/* A command that exits at once: the host is gone, and the mesh says so. */
	const char *const gone[] = {"sh", "-c", "exit 7", "sh", NULL};
	char **keep = remote_command;
	remote_command = (char **)gone;
	Host h = launch("short-lived", "serve");
	remote_command = keep;
	ProtobufCMessage *msg = NULL;
	ck_assert(!mesh_receiver_recv(h.results, WAIT_US, &msg, &error));
	ck_assert_msg(g_error_matches(error, MESH_ERROR, MESH_ERROR_CLOSED) ||
			      g_error_matches(error, MESH_ERROR, MESH_ERROR_NODE_FAILURE),
		      "%s", error->message);
	g_error_free(error);
	host_close(&h);
	wait_hosts_gone();
}
END_TEST

/* A corrupt stdio invitation: an error, the variable gone, stdin and stdout left alone. */
START_TEST(test_corrupt_stdio_invitation)
{
	GError *error = NULL;
	g_setenv(MESH_STDIO_INVITATION, "not base64!", TRUE);
	int flags = fcntl(1, F_GETFL);
	ck_assert(!mesh_try_run_host("x", host_main, NULL, &error));
	ck_assert(g_error_matches(error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_INVITATION));
	ck_assert(!g_getenv(MESH_STDIO_INVITATION));
	ck_assert_int_eq(fcntl(1, F_GETFL), flags);
	g_error_free(error);
}
END_TEST

/* The private sshd. */

typedef struct {
	char *dir;
	GPid pid;
	int port;
	GThread *log_thread;
	int log_fd;
} Sshd;

static Sshd sshd;
/* meshctl, for its demo with a host over ssh (--ssh MESHCTL). */
static const char *meshctl_path;

static void run_or_fail(const char *const *argv)
{
	char *out = NULL, *err = NULL;
	int status = 0;
	GError *error = NULL;
	gboolean ok = g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, &out,
				   &err, &status, &error);
	ck_assert_msg(ok && g_spawn_check_wait_status(status, NULL), "%s failed: %s%s", argv[0],
		      error ? error->message : "", err ? err : "");
	g_free(out);
	g_free(err);
}

static int free_port(void)
{
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	ck_assert_int_ge(s, 0);
	ck_assert_int_eq(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(getsockname(s, (struct sockaddr *)&a, &len), 0);
	close(s);
	return ntohs(a.sin_port);
}

/* Copies sshd's log to our stderr, prefixed, until it ends. */
static gpointer log_thread(gpointer data)
{
	FILE *f = fdopen(GPOINTER_TO_INT(data), "r");
	char line[1024];
	while (fgets(line, sizeof(line), f))
		fprintf(stderr, "sshd: %s", line);
	fclose(f);
	return NULL;
}

static void sshd_start(void)
{
	GError *error = NULL;
	sshd.dir = g_dir_make_tmp("mesh-ssh-XXXXXX", &error);
	ck_assert_msg(sshd.dir, "%s", error ? error->message : "");
	char *host_key = g_build_filename(sshd.dir, "host_key", NULL);
	char *user_key = g_build_filename(sshd.dir, "user_key", NULL);
	char *config = g_build_filename(sshd.dir, "sshd_config", NULL);
	char *auth = g_build_filename(sshd.dir, "authorized_keys", NULL);
	run_or_fail((const char *const[]){"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C",
					  "mesh test host", "-f", host_key, NULL});
	run_or_fail((const char *const[]){"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C",
					  "mesh test user", "-f", user_key, NULL});
	char *pub_path = g_strconcat(user_key, ".pub", NULL);
	char *pub = NULL;
	ck_assert(g_file_get_contents(pub_path, &pub, NULL, NULL));
	ck_assert(g_file_set_contents(auth, pub, -1, NULL));
	/* Privilege separation wants its directory when sshd runs as root. */
	if (geteuid() == 0 && mkdir("/run/sshd", 0755) < 0)
		ck_assert_msg(errno == EEXIST, "mkdir /run/sshd: %s", g_strerror(errno));

	sshd.port = free_port();
	char *text = g_strdup_printf("Port %d\n"
				     "ListenAddress 127.0.0.1\n"
				     "HostKey %s\n"
				     "AuthorizedKeysFile %s\n"
				     "PidFile none\n"
				     "PermitRootLogin prohibit-password\n"
				     "PubkeyAuthentication yes\n"
				     "PasswordAuthentication no\n"
				     "KbdInteractiveAuthentication no\n"
				     "UsePAM no\n"
				     "StrictModes no\n"
				     "LogLevel INFO\n",
				     sshd.port, host_key, auth);
	ck_assert(g_file_set_contents(config, text, -1, NULL));
	g_free(text);

	/* -D -e: in the foreground, logging to stderr, where it says when it listens. */
	int log[2];
	ck_assert_int_eq(pipe2(log, O_CLOEXEC), 0);
	PalSpawn *spawn = pal_spawn_new("/usr/sbin/sshd");
	pal_spawn_add_args(spawn, (const char *const[]){"-D", "-e", "-f", config, NULL});
	pal_spawn_set_stdin(spawn, PAL_STDIO_NULL, -1);
	pal_spawn_set_stdout(spawn, PAL_STDIO_NULL, -1);
	pal_spawn_set_stderr(spawn, PAL_STDIO_FD, log[1]);
	pal_spawn_set_parent_death_signal(spawn, SIGTERM); /* a failed test leaves none */
	PalChild *child = NULL;
	int r = pal_spawn_run(spawn, &child);
	ck_assert_msg(r == 0, "/usr/sbin/sshd: %s", g_strerror(-r));
	pal_spawn_free(spawn);
	close(log[1]);
	sshd.pid = pal_child_get_pid(child);
	pal_child_free(child); /* reaped by sshd_stop() */

	FILE *f = fdopen(dup(log[0]), "r");
	char line[1024];
	gboolean listening = FALSE;
	while (!listening && fgets(line, sizeof(line), f)) {
		fprintf(stderr, "sshd: %s", line);
		listening = strstr(line, "Server listening on") != NULL;
	}
	fclose(f);
	ck_assert_msg(listening, "sshd ended before it listened (its log is above)");
	sshd.log_thread = g_thread_new("sshd-log", log_thread, GINT_TO_POINTER(log[0]));

	char *port = g_strdup_printf("%d", sshd.port);
	const char *const ssh[] = {"ssh",
				   "-F",
				   "/dev/null",
				   "-o",
				   "StrictHostKeyChecking=no",
				   "-o",
				   "UserKnownHostsFile=/dev/null",
				   "-o",
				   "BatchMode=yes",
				   "-o",
				   "IdentitiesOnly=yes",
				   "-o",
				   "LogLevel=ERROR",
				   "-i",
				   user_key,
				   "-p",
				   port,
				   "127.0.0.1",
				   NULL};
	remote_command = g_strdupv((char **)ssh);
	g_free(port);
	g_free(pub);
	g_free(pub_path);
	g_free(host_key);
	g_free(user_key);
	g_free(config);
	g_free(auth);
}

static void sshd_stop(void)
{
	ck_assert_int_eq(kill(sshd.pid, SIGTERM), 0);
	int status = 0;
	ck_assert_int_eq(waitpid(sshd.pid, &status, 0), sshd.pid);
	g_thread_join(sshd.log_thread); /* its log ends with it */
	run_or_fail((const char *const[]){"rm", "-rf", sshd.dir, NULL});
	g_free(sshd.dir);
	g_strfreev(remote_command);
	remote_command = NULL;
}

START_TEST(test_ssh)
{
	sshd_start();
	setup();

	/* Typed messages and ports, then inspect. */
	Host h = launch("over-ssh", "serve");
	exchange(&h);
	char *json = mesh_inspect(mesh, WAIT_US);
	ck_assert_msg(strstr(json, "\"transport\":\"p2p\",\"command\":\"ssh -F /dev/null"), "%s",
		      json);
	ck_assert_msg(!strstr(json, "\"error\""), "%s", json);
	g_free(json);

	/* Killed: the local ssh's pid. */
	ck_assert_int_eq(kill(h.pid, SIGKILL), 0);
	expect_failure_naming(&h, "over-ssh");
	host_close(&h);
	wait_hosts_gone();

	/* Another one shut down cleanly. */
	h = launch("over-ssh-2", "serve");
	send_work(h.work, "hello", NULL);
	char *got = recv_result(h.results, NULL);
	ck_assert_str_eq(got, "hello");
	g_free(got);
	GError *error = NULL;
	ck_assert_msg(mesh_shutdown(mesh, WAIT_US, &error), "%s", error ? error->message : "");
	ck_assert_uint_eq(mesh_get_host_count(mesh), 0);
	host_close(&h);
	teardown();

	/* meshctl's demo, with worker-3 over ssh. */
	if (meshctl_path) {
		GString *command = g_string_new(NULL);
		for (guint i = 0; remote_command[i]; i++) {
			char *q = g_shell_quote(remote_command[i]);
			g_string_append_printf(command, "%s%s", i ? " " : "", q);
			g_free(q);
		}
		const char *const argv[] = {meshctl_path, "demo", "--remote", command->str, NULL};
		char *out = NULL;
		int status = 0;
		ck_assert(g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_STDERR_TO_DEV_NULL, NULL,
				       NULL, &out, NULL, &status, NULL));
		fprintf(stderr, "%s", out);
		ck_assert_msg(g_spawn_check_wait_status(status, NULL), "meshctl demo failed");
		ck_assert_msg(strstr(out, "worker-3 (pid ") && strstr(out, ", through \"ssh "),
			      "%s", out);
		ck_assert_msg(strstr(out, "rpc: add(2, 3) = 5 on worker-3\n"), "%s", out);
		ck_assert_msg(strstr(out, "\ndemo: ok\n"), "%s", out);
		g_free(out);
		g_string_free(command, TRUE);
	}
	sshd_stop();
}
END_TEST

static int run_suite(Suite *s)
{
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_ENV);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}

static int run_ssh_suite(void)
{
	const char *const needed[] = {"/usr/sbin/sshd", "ssh", "ssh-keygen"};
	for (gsize i = 0; i < G_N_ELEMENTS(needed); i++) {
		char *path = g_find_program_in_path(needed[i]);
		gboolean found = path != NULL;
		g_free(path);
		if (found)
			continue;
		if (g_strcmp0(g_getenv("MESH_TEST_ALLOW_SKIP_SSH"), "1") == 0) {
			printf("SKIP: %s not found (install openssh-server and openssh-client: "
			       ".ci/setup)\n",
			       needed[i]);
			return 77;
		}
		fprintf(stderr,
			"test-ssh: %s not found: install openssh-server and openssh-client "
			"(.ci/setup), or set MESH_TEST_ALLOW_SKIP_SSH=1 to skip\n",
			needed[i]);
		return 1;
	}
	Suite *s = suite_create("libmeshprocess-ssh");
	TCase *tc = tcase_create("ssh");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_ssh);
	suite_add_tcase(s, tc);
	return run_suite(s);
}

int main(int argc, char **argv)
{
	GError *error = NULL;

	if (!mesh_try_run_host("rtest", host_main, NULL, &error)) {
		fprintf(stderr, "host: %s\n", error->message);
		return 3;
	}
	if (argc >= 2 && strcmp(argv[1], "--ssh") == 0) {
		meshctl_path = argc >= 3 ? argv[2] : NULL;
		return run_ssh_suite();
	}

	/* ssh's part: a shell that runs the words it is given as one command line. */
	static const char *const local[] = {"sh", "-c", "exec sh -c \"exec $*\"", "sh", NULL};
	remote_command = (char **)local;

	Suite *s = suite_create("libmeshprocess-remote");
	TCase *tc = tcase_create("remote");
	tcase_set_timeout(tc, 120);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_remote_echo_and_close);
	tcase_add_test(tc, test_remote_inspect_and_shutdown);
	tcase_add_test(tc, test_remote_killed);
	tcase_add_test(tc, test_remote_stalled_link);
	tcase_add_test(tc, test_remote_crash);
	tcase_add_test(tc, test_remote_fd_fails_port);
	tcase_add_test(tc, test_remote_initial_fd);
	tcase_add_test(tc, test_remote_third_node_port_fails);
	tcase_add_test(tc, test_remote_command_fails);
	suite_add_tcase(s, tc);
	TCase *host = tcase_create("host-side");
	tcase_add_test(host, test_corrupt_stdio_invitation);
	suite_add_tcase(s, host);
	return run_suite(s);
}
