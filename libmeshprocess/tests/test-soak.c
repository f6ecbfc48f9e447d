/* SPDX-License-Identifier: MIT */
/*
 * Soak test (suite `slow`, doc/testing.md): rounds of faults across real
 * processes for MESH_SOAK_SECONDS (default 150). Each round
 *
 *   launch   launches echo hosts, SIGKILLs some and lets the others exit;
 *   mesh     a short-lived second Mesh: a host killed, mesh_shutdown(), free;
 *   clients  listener clients that finish, drop without shutdown, hang until
 *            killed or close a raw socket at once, and one in-process client;
 *   flood    floods a host from this process and SIGKILLs it mid-flood;
 *   h2h      a host floods another host, which is SIGKILLed mid-flood;
 *   move     moves a sender and a receiver through a chain of three hosts,
 *            each once untouched and once with the middle host SIGKILLed
 *            just after it moved the port on.
 *
 * Checks: every operation ends (a watchdog aborts with the operation's name
 * and every thread's stack, through gdb when it is installed, after
 * MESH_SOAK_STALL seconds, default 30); each scenario's outcome (see fail());
 * and, after the warm-up rounds, a flat fd count, thread count and heap
 * (mallinfo2().uordblks). Prints a line per warm-up round, then one every
 * 10 s, and a summary; exits 1 on any failure.
 *
 * Environment: MESH_SOAK_SECONDS, MESH_SOAK_STALL, MESH_SOAK_SEED,
 * MESH_SOAK_SCENARIOS (comma-separated subset of the names above),
 * MESH_SOAK_WARMUP (rounds before the fd and thread counts must stay flat,
 * default 3), MESH_SOAK_HEAP_FROM (the percentage of the run after which the
 * heap must stay flat, default 40), MESH_SOAK_HEAP_TOLERANCE (bytes, default
 * 262144), MESH_SOAK_GDB=0 (no stacks on a stall).
 *
 * This program is also the host (mesh_try_run_host() at the top of main())
 * and the listener client (--client PATH MODE TAG).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <meshprocess/meshprocess.h>

#define FLOOD_COUNT 100000
#define FLOOD_SIZE 64
#define H2H_COUNT 200000
#define MOVE_COUNT 1000
#define LAUNCH_HOSTS 4
#define FD_TOLERANCE 4
#define THREAD_TOLERANCE 2
#define OVER_ROUNDS 5
#define RECV_TIMEOUT (20 * G_USEC_PER_SEC)

/* ---- shared helpers ---------------------------------------------------- */

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

/* ---- host side ---------------------------------------------------------- */

/*
 * Scenarios (the initial message's text); ports: 0 the work receiver, 1 the
 * results sender, 2 (flood, relay) a sender to the next hop.
 *   echo        work -> results until work closes
 *   sink        counts work until it ends
 *   flood:N     sends N messages to port 2, then "done" on results
 *   relay       a work message carrying a port: "port" on results, then
 *               the message goes on to port 2; the last hop (no port 2)
 *               sends MOVE_COUNT numbered messages into the port ("send")
 *               or receives from it and reports what it got ("recv")
 */
/* The last relay with a moved sender: MOVE_COUNT numbered messages. */
static void relay_send(MeshPort *port)
{
	MeshSender *out = mesh_sender_from_port(port, NULL);
	for (guint32 i = 0; i < MOVE_COUNT; i++)
		mesh_sender_send_message(out, mesh_message_new(&i, sizeof(i)));
	mesh_sender_free(out);
}

/*
 * The last relay with a moved receiver: receives until the end and reports
 * "N closed", "N failed: <error>", "N timeout" or "N out of order" on @results.
 */
static void relay_recv(MeshPort *port, MeshSender *results)
{
	MeshReceiver *in = mesh_receiver_from_port(port, NULL);
	MeshMessage *msg;
	GError *error = NULL;
	guint32 got = 0;
	const char *end = NULL;

	while (!end && mesh_receiver_recv_message(in, 20 * G_USEC_PER_SEC, &msg, &error)) {
		size_t size;
		const guint32 *v = (const guint32 *)mesh_message_get_data(msg, &size);
		if (size != sizeof(*v) || *v != got)
			end = "out of order";
		else
			got++;
		mesh_message_free(msg);
	}
	if (!end)
		end = g_error_matches(error, MESH_ERROR, MESH_ERROR_CLOSED)	   ? "closed"
		      : g_error_matches(error, MESH_ERROR, MESH_ERROR_TIMED_OUT) ? "timeout"
										     : "failed";
	/* A failure says which: "N failed: <error>". */
	char *text = strcmp(end, "failed") == 0 && error
			     ? g_strdup_printf("%u %s: %s", got, end, error->message)
			     : g_strdup_printf("%u %s", got, end);
	send_text(results, text);
	g_free(text);
	g_clear_error(&error);
	mesh_receiver_free(in);
}

static gboolean host_main(MeshMessage *initial, gpointer data, GError **error)
{
	char *scenario = message_text(initial);
	guint n = mesh_message_get_n_resources(initial);
	MeshReceiver *work = NULL;
	MeshSender *results = NULL, *next = NULL;
	MeshMessage *msg;

	if (n >= 1)
		work = mesh_receiver_from_port(mesh_message_steal_port(initial, 0), NULL);
	if (n >= 2)
		results = mesh_sender_from_port(mesh_message_steal_port(initial, 1), NULL);
	if (n >= 3)
		next = mesh_sender_from_port(mesh_message_steal_port(initial, 2), NULL);
	mesh_message_free(initial);

	if (strcmp(scenario, "echo") == 0) {
		while (mesh_receiver_recv_message(work, -1, &msg, NULL))
			mesh_sender_send_message(results, msg);
	} else if (strcmp(scenario, "sink") == 0) {
		send_text(results, "ready");
		while (mesh_receiver_recv_message(work, -1, &msg, NULL))
			mesh_message_free(msg);
	} else if (g_str_has_prefix(scenario, "flood:")) {
		guint count = (guint)g_ascii_strtoull(scenario + 6, NULL, 10);
		uint8_t buf[FLOOD_SIZE] = {0};
		send_text(results, "started");
		for (guint i = 0; i < count; i++)
			mesh_sender_send_message(next, mesh_message_new(buf, sizeof(buf)));
		send_text(results, "done");
		while (mesh_receiver_recv_message(work, -1, &msg, NULL))
			mesh_message_free(msg);
	} else if (strcmp(scenario, "relay") == 0) {
		while (mesh_receiver_recv_message(work, -1, &msg, NULL)) {
			send_text(results, "port");
			if (next) {
				mesh_sender_send_message(next, msg);
				continue;
			}
			char *what = message_text(msg);
			MeshPort *port = mesh_message_steal_port(msg, 0);
			mesh_message_free(msg);
			if (strcmp(what, "send") == 0)
				relay_send(port);
			else
				relay_recv(port, results);
			g_free(what);
		}
	}
	mesh_sender_free(next);
	mesh_receiver_free(work);
	mesh_sender_free(results);
	g_free(scenario);
	return TRUE;
}

/* ---- client side ---------------------------------------------------------- */

/*
 * Modes: "send" sends three messages and shuts down cleanly; "drop" sends
 * one and exits without shutting down; "hang" sends one and waits to be
 * killed; "raw" connects a plain socket and closes it at once.
 */
static int run_client(const char *path, const char *mode, const char *tag)
{
	if (strcmp(mode, "raw") == 0) {
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		struct sockaddr_un addr = {.sun_family = AF_UNIX};
		g_strlcpy(addr.sun_path, path, sizeof(addr.sun_path));
		int r = connect(fd, (struct sockaddr *)&addr, sizeof(addr));
		close(fd);
		return r == 0 ? 0 : 4;
	}

	MeshSender *s = NULL;
	GError *error = NULL;
	MeshConnection *c = mesh_connect(path, 10 * G_USEC_PER_SEC, &s, &error);
	if (!c) {
		fprintf(stderr, "soak client %s %s: %s\n", mode, tag, error->message);
		return 1;
	}
	if (strcmp(mode, "send") == 0) {
		for (int k = 0; k < 3; k++) {
			char *text = g_strdup_printf("%s:%d", tag, k);
			send_text(s, text);
			g_free(text);
		}
		mesh_sender_free(s);
		return mesh_connection_shutdown(c, 10 * G_USEC_PER_SEC) ? 0 : 2;
	}
	send_text(s, tag);
	if (strcmp(mode, "hang") == 0)
		for (;;)
			pause();
	_exit(0); /* "drop": no shutdown, no free */
}

/* ---- parent: bookkeeping ---------------------------------------------- */

static char *self_exe;
static gint64 stall_us;
static gboolean use_gdb;
static guint round_no;

/* Failures by kind: the count and the first message. */
typedef struct {
	guint count;
	char *first;
} Failure;
static GHashTable *failures;
static guint n_failures;

static void G_GNUC_PRINTF(2, 3) fail(const char *kind, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *text = g_strdup_vprintf(fmt, ap);
	va_end(ap);

	Failure *f = g_hash_table_lookup(failures, kind);
	if (!f) {
		f = g_new0(Failure, 1);
		f->first = g_strdup_printf("round %u: %s", round_no, text);
		g_hash_table_insert(failures, (gpointer)kind, f);
	}
	if (f->count++ < 3)
		fprintf(stderr, "soak: FAIL [%s] round %u: %s\n", kind, round_no, text);
	n_failures++;
	g_free(text);
}

/* The watchdog: one operation at a time is timed. */
static GMutex wd_lock;
static GCond wd_cond;
static const char *wd_op;
static gint64 wd_start;
static gboolean wd_quit;

static void op_begin(const char *name)
{
	g_mutex_lock(&wd_lock);
	wd_op = name;
	wd_start = g_get_monotonic_time();
	g_mutex_unlock(&wd_lock);
}

static void op_end(void)
{
	g_mutex_lock(&wd_lock);
	wd_op = NULL;
	g_mutex_unlock(&wd_lock);
}

/* Every thread's stack of process @pid, through gdb, to stderr. */
static void dump_stacks(int pid)
{
	char *spid = g_strdup_printf("%d", pid);
	char *argv[] = {"gdb", "-p", spid, "-batch", "-nx", "-ex", "thread apply all bt", NULL};
	char *out = NULL;
	fprintf(stderr, "soak: stacks of process %d:\n", pid);
	if (g_spawn_sync(NULL, argv, NULL, G_SPAWN_SEARCH_PATH | G_SPAWN_STDERR_TO_DEV_NULL, NULL,
			 NULL, &out, NULL, NULL, NULL))
		fprintf(stderr, "%s\n", out);
	else
		fprintf(stderr, "soak: (no gdb: no stacks)\n");
	g_free(out);
	g_free(spid);
}

/* This process's stacks, then its children's (hosts and clients). */
static void dump_all_stacks(void)
{
	dump_stacks(getpid());
	GDir *dir = g_dir_open("/proc/self/task", 0, NULL);
	const char *tid;
	while (dir && (tid = g_dir_read_name(dir))) {
		char *path = g_strdup_printf("/proc/self/task/%s/children", tid);
		char *children = NULL;
		if (g_file_get_contents(path, &children, NULL, NULL)) {
			char **pids = g_strsplit(g_strstrip(children), " ", -1);
			for (char **p = pids; *p; p++)
				if (**p)
					dump_stacks(atoi(*p));
			g_strfreev(pids);
		}
		g_free(children);
		g_free(path);
	}
	if (dir)
		g_dir_close(dir);
}

static char self_pid[16];
static volatile sig_atomic_t stacks_dumped;

/* A crash: this process's stacks through gdb (fork and exec only), then die. */
static void crash_handler(int sig)
{
	static const char msg[] = "soak: fatal signal, stacks follow\n";
	if (use_gdb && !stacks_dumped) {
		if (write(2, msg, sizeof(msg) - 1) < 0) {
		}
		pid_t p = fork();
		if (p == 0) {
			dup2(2, 1);
			execlp("gdb", "gdb", "-p", self_pid, "-batch", "-nx", "-ex",
			       "thread apply all bt", (char *)NULL);
			_exit(127);
		}
		if (p > 0)
			waitpid(p, NULL, 0);
	}
	signal(sig, SIG_DFL);
	raise(sig);
}

static gpointer watchdog(gpointer data)
{
	g_mutex_lock(&wd_lock);
	while (!wd_quit) {
		gint64 now = g_get_monotonic_time();
		if (wd_op && now - wd_start > stall_us) {
			fprintf(stderr,
				"soak: STALL: round %u: operation \"%s\" has not finished after %" G_GINT64_FORMAT " s\n",
				round_no, wd_op, (now - wd_start) / G_USEC_PER_SEC);
			if (use_gdb)
				dump_all_stacks();
			stacks_dumped = 1;
			fflush(stderr);
			abort();
		}
		g_cond_wait_until(&wd_cond, &wd_lock, now + G_USEC_PER_SEC);
	}
	g_mutex_unlock(&wd_lock);
	return NULL;
}

static guint count_dir(const char *path)
{
	guint n = 0;
	DIR *d = opendir(path);
	struct dirent *e;

	if (!d)
		return 0;
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

/* ---- parent: hosts ------------------------------------------------------ */

typedef struct {
	MeshSender *work;      /* to the host */
	MeshReceiver *results; /* from the host */
	GPid pid;
} Host;

static guint n_launched, n_killed;

/* Launches @scenario; @next (taken, nullable) becomes the host's port 2. */
static gboolean launch(Mesh *mesh, const char *scenario, MeshPort *next, Host *h)
{
	MeshSender *ws, *rs;
	MeshReceiver *wr, *rr;
	GError *error = NULL;

	mesh_channel_new(NULL, &ws, &wr);
	mesh_channel_new(NULL, &rs, &rr);
	MeshMessage *initial = mesh_message_new(scenario, strlen(scenario));
	mesh_message_add_port_take(initial, mesh_receiver_into_port(wr));
	mesh_message_add_port_take(initial, mesh_sender_into_port(rs));
	if (next)
		mesh_message_add_port_take(initial, next);
	MeshProcessConfig *c = mesh_process_config_new(scenario);
	h->pid = mesh_launch_host(mesh, c, initial, &error);
	mesh_process_config_free(c);
	h->work = ws;
	h->results = rr;
	if (h->pid <= 0) {
		fail("launch", "mesh_launch_host(%s): %s", scenario, error->message);
		g_error_free(error);
		return FALSE;
	}
	n_launched++;
	return TRUE;
}

static void host_kill(Host *h)
{
	if (h->pid > 0 && kill(h->pid, SIGKILL) == 0)
		n_killed++;
}

static void host_close(Host *h)
{
	mesh_sender_free(h->work);
	mesh_receiver_free(h->results);
	h->work = NULL;
	h->results = NULL;
}

/* Receives one text from @r; NULL with @error set. */
static char *recv_text(MeshReceiver *r, gint64 timeout_us, GError **error)
{
	MeshMessage *msg = NULL;
	if (!mesh_receiver_recv_message(r, timeout_us, &msg, error))
		return NULL;
	char *text = message_text(msg);
	mesh_message_free(msg);
	return text;
}

/* Expects @want from @h's results. */
static gboolean expect_text(const char *kind, Host *h, const char *want)
{
	GError *error = NULL;
	char *t = recv_text(h->results, RECV_TIMEOUT, &error);
	gboolean ok = t && strcmp(t, want) == 0;
	if (!ok)
		fail(kind, "host %d: wanted \"%s\", got %s%s%s", (int)h->pid, want, t ? "\"" : "",
		     t ? t : error->message, t ? "\"" : "");
	g_free(t);
	g_clear_error(&error);
	return ok;
}

/* A killed host's results receiver must fail (naming the host), not close. */
static void expect_failed(const char *kind, Host *h)
{
	GError *error = NULL;
	MeshMessage *msg;

	while (mesh_receiver_recv_message(h->results, RECV_TIMEOUT, &msg, &error))
		mesh_message_free(msg);
	if (g_error_matches(error, MESH_ERROR, MESH_ERROR_TIMED_OUT))
		fail(kind, "killed host %d: its receiver still waits after %d s", (int)h->pid,
		     (int)(RECV_TIMEOUT / G_USEC_PER_SEC));
	else if (!g_error_matches(error, MESH_ERROR, MESH_ERROR_NODE_FAILURE))
		fail(kind, "killed host %d: its receiver ended with \"%s\", not a node failure",
		     (int)h->pid, error->message);
	g_clear_error(&error);
}

/* Waits (polling: test code) until @mesh has @want hosts left. */
static void wait_host_count(const char *kind, Mesh *mesh, guint want)
{
	gint64 end = g_get_monotonic_time() + RECV_TIMEOUT;
	while (mesh_get_host_count(mesh) > want && g_get_monotonic_time() < end)
		g_usleep(2000);
	if (mesh_get_host_count(mesh) > want)
		fail(kind, "%u hosts still running, %u expected", mesh_get_host_count(mesh), want);
}

/* ---- parent: scenarios ---------------------------------------------------- */

static void scenario_launch(Mesh *mesh)
{
	Host h[LAUNCH_HOSTS] = {{0}};

	op_begin("launch: launch and echo");
	for (int i = 0; i < LAUNCH_HOSTS; i++)
		launch(mesh, "echo", NULL, &h[i]);
	for (int i = 0; i < LAUNCH_HOSTS; i++) {
		if (h[i].pid <= 0)
			continue;
		send_text(h[i].work, "ping");
		expect_text("launch", &h[i], "ping");
	}
	op_end();

	/* The first half is killed, the others see their work close. */
	op_begin("launch: kill and close");
	for (int i = 0; i < LAUNCH_HOSTS; i++) {
		if (h[i].pid <= 0)
			continue;
		if (i < LAUNCH_HOSTS / 2) {
			host_kill(&h[i]);
			expect_failed("launch-kill", &h[i]);
		} else {
			mesh_sender_free(h[i].work);
			h[i].work = NULL;
		}
	}
	for (int i = 0; i < LAUNCH_HOSTS; i++)
		host_close(&h[i]);
	wait_host_count("launch", mesh, 0);
	op_end();
}

static void scenario_mesh(void)
{
	GError *error = NULL;
	Host h[2] = {{0}};

	op_begin("mesh: new and launch");
	Mesh *m = mesh_new("soak-short", NULL, &error);
	if (!m) {
		fail("mesh", "mesh_new: %s", error->message);
		g_error_free(error);
		op_end();
		return;
	}
	for (int i = 0; i < 2; i++) {
		if (launch(m, "echo", NULL, &h[i])) {
			send_text(h[i].work, "ping");
			expect_text("mesh", &h[i], "ping");
		}
	}
	host_kill(&h[0]);
	op_end();

	op_begin("mesh: shutdown with a killed host");
	mesh_shutdown(m, 10 * G_USEC_PER_SEC, &error);
	g_clear_error(&error);
	if (mesh_get_host_count(m) != 0)
		fail("mesh", "mesh_shutdown() returned with %u hosts", mesh_get_host_count(m));
	op_end();

	op_begin("mesh: free");
	for (int i = 0; i < 2; i++)
		host_close(&h[i]);
	mesh_free(m);
	op_end();
}

/* Returns the client's pid, or 0 if it could not be started. */
static pid_t spawn_client(const char *path, const char *mode, const char *tag)
{
	pid_t pid = fork();
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		execl(self_exe, self_exe, "--client", path, mode, tag, (char *)NULL);
		_exit(127);
	}
	if (pid < 0) {
		fail("clients", "fork: %s", g_strerror(errno));
		return 0;
	}
	return pid;
}

static void kill_client(pid_t pid)
{
	if (pid > 0)
		kill(pid, SIGKILL);
}

static void reap_client(pid_t pid, gboolean must_succeed, const char *mode)
{
	int status = 0;
	if (pid <= 0)
		return;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (must_succeed && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
		fail("clients", "a \"%s\" client ended with status 0x%x", mode, status);
}

static void scenario_clients(Mesh *mesh, const char *path, MeshReceiver *listener)
{
	GHashTable *want = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	char *tag;

	op_begin("clients: spawn");
	pid_t send1, send2, drop, hang, raw;
	char *hang_tag = g_strdup_printf("hang-%u", round_no);
	for (int i = 0; i < 2; i++)
		for (int k = 0; k < 3; k++)
			g_hash_table_add(want, g_strdup_printf("send-%u-%d:%d", round_no, i, k));
	g_hash_table_add(want, g_strdup(hang_tag));
	tag = g_strdup_printf("send-%u-0", round_no);
	send1 = spawn_client(path, "send", tag);
	g_free(tag);
	tag = g_strdup_printf("send-%u-1", round_no);
	send2 = spawn_client(path, "send", tag);
	g_free(tag);
	tag = g_strdup_printf("drop-%u", round_no);
	drop = spawn_client(path, "drop", tag);
	g_free(tag);
	hang = spawn_client(path, "hang", hang_tag);
	raw = spawn_client(path, "raw", "raw");
	op_end();

	/* This process as a client too. */
	op_begin("clients: in-process mesh_connect");
	MeshSender *s = NULL;
	GError *error = NULL;
	MeshConnection *c = mesh_connect(path, 10 * G_USEC_PER_SEC, &s, &error);
	if (c) {
		tag = g_strdup_printf("self-%u", round_no);
		send_text(s, tag);
		g_hash_table_add(want, tag);
		mesh_sender_free(s);
		if (!mesh_connection_shutdown(c, 10 * G_USEC_PER_SEC))
			fail("clients", "mesh_connection_shutdown() of the in-process client failed");
	} else {
		fail("clients", "in-process mesh_connect: %s", error->message);
		g_clear_error(&error);
	}
	op_end();

	op_begin("clients: receive");
	while (g_hash_table_size(want) > 0) {
		char *t = recv_text(listener, RECV_TIMEOUT, &error);
		if (!t) {
			fail("clients", "%u messages missing (%s)", g_hash_table_size(want),
			     error->message);
			g_clear_error(&error);
			break;
		}
		if (strcmp(t, hang_tag) == 0)
			kill_client(hang);
		g_hash_table_remove(want, t);
		g_free(t);
	}
	kill_client(hang);
	op_end();

	op_begin("clients: reap");
	reap_client(send1, TRUE, "send");
	reap_client(send2, TRUE, "send");
	reap_client(drop, TRUE, "drop");
	reap_client(hang, FALSE, "hang");
	reap_client(raw, TRUE, "raw");
	op_end();
	g_free(hang_tag);
	g_hash_table_unref(want);
}

typedef struct {
	MeshSender *sender;
	GPid victim;
} Flood;

static gpointer flood_thread(gpointer data)
{
	Flood *f = data;
	uint8_t buf[FLOOD_SIZE] = {0};

	for (guint i = 0; i < FLOOD_COUNT; i++) {
		if (i == FLOOD_COUNT / 2)
			kill(f->victim, SIGKILL);
		mesh_sender_send_message(f->sender, mesh_message_new(buf, sizeof(buf)));
	}
	return NULL;
}

static void scenario_flood(Mesh *mesh)
{
	Host h = {0};

	op_begin("flood: launch a sink");
	if (!launch(mesh, "sink", NULL, &h) || !expect_text("flood", &h, "ready")) {
		host_kill(&h);
		host_close(&h);
		wait_host_count("flood", mesh, 0);
		op_end();
		return;
	}
	op_end();

	op_begin("flood: send 100k messages, SIGKILL the receiver halfway");
	Flood f = {h.work, h.pid};
	GThread *t = g_thread_new("soak-flood", flood_thread, &f);
	g_thread_join(t);
	n_killed++;
	op_end();

	op_begin("flood: after the kill");
	expect_failed("flood", &h);
	host_close(&h);
	wait_host_count("flood", mesh, 0);
	op_end();
}

static void scenario_h2h(Mesh *mesh)
{
	Host sink = {0}, flooder = {0};

	op_begin("h2h: launch a sink and a flooder");
	if (!launch(mesh, "sink", NULL, &sink) || !expect_text("h2h", &sink, "ready")) {
		host_kill(&sink);
		host_close(&sink);
		wait_host_count("h2h", mesh, 0);
		op_end();
		return;
	}
	/* The flooder gets a sender into the sink's work receiver. */
	char *scenario = g_strdup_printf("flood:%d", H2H_COUNT);
	gboolean ok = launch(mesh, scenario, mesh_sender_into_port(mesh_sender_clone(sink.work)),
			     &flooder);
	g_free(scenario);
	ok = ok && expect_text("h2h", &flooder, "started");
	op_end();

	if (ok) {
		op_begin("h2h: SIGKILL the sink mid-flood");
		g_usleep(g_random_int_range(0, 20000));
		host_kill(&sink);
		op_end();

		op_begin("h2h: inspect while the flooder's peer is dead");
		g_free(mesh_inspect(mesh, 5 * G_USEC_PER_SEC));
		op_end();

		op_begin("h2h: the flooder finishes");
		expect_text("h2h", &flooder, "done");
		op_end();
	}

	op_begin("h2h: teardown");
	host_kill(&sink);
	expect_failed("h2h", &sink);
	host_close(&sink);
	/* The flooder exits when its work closes. */
	mesh_sender_free(flooder.work);
	flooder.work = NULL;
	gint64 end = g_get_monotonic_time() + RECV_TIMEOUT;
	while (mesh_get_host_count(mesh) > 0 && g_get_monotonic_time() < end)
		g_usleep(2000);
	if (mesh_get_host_count(mesh) > 0) {
		fail("h2h", "the flooder %d did not exit after its work closed", (int)flooder.pid);
		host_kill(&flooder);
	}
	host_close(&flooder);
	wait_host_count("h2h", mesh, 0);
	op_end();
}

/* Whether relay @h reported holding the moved port (within @timeout_us). */
static gboolean relay_had_port(Host *h, gint64 timeout_us)
{
	char *t = recv_text(h->results, timeout_us, NULL);
	gboolean had = t && strcmp(t, "port") == 0;
	g_free(t);
	return had;
}

/*
 * Whether the last relay @c reported holding the moved receiver. With
 * @ds (B killed), the receiver may have died with B before it left:
 * then @ds fails, and C never reports; C is given a while after that
 * (a report on its way), not the whole timeout.
 */
static gboolean relay_reached(Host *c, MeshSender *ds)
{
	gint64 end = g_get_monotonic_time() + RECV_TIMEOUT;
	gint64 failed_at = 0;

	while (g_get_monotonic_time() < end) {
		GError *error = NULL;
		char *t = recv_text(c->results, ds ? 100 * 1000 : RECV_TIMEOUT, &error);
		gboolean had = t && strcmp(t, "port") == 0;
		gboolean ended = !t && !g_error_matches(error, MESH_ERROR, MESH_ERROR_TIMED_OUT);
		g_free(t);
		g_clear_error(&error);
		if (had)
			return TRUE;
		if (ended)
			return FALSE;
		if (ds && mesh_sender_is_closed(ds)) {
			gint64 now = g_get_monotonic_time();
			if (!failed_at)
				failed_at = now;
			else if (now - failed_at > 2 * G_USEC_PER_SEC)
				return FALSE;
		}
	}
	return FALSE;
}

/*
 * A port moves parent -> A -> B -> C. With @move_receiver it is the receiver
 * of a channel the parent then sends MOVE_COUNT numbered messages into, and C
 * reports what it received; otherwise it is a sender C sends the messages
 * into, and the parent receives them. With @kill_relay, B is SIGKILLed 0-4 ms
 * after it moved the port on (it reports "port" just before): the stream
 * must then be complete or end in a node failure, never hang and never end
 * "closed" early.
 */
static void scenario_move(Mesh *mesh, gboolean move_receiver, gboolean kill_relay)
{
	const char *kind = move_receiver ? (kill_relay ? "move-recv-kill" : "move-recv")
					 : (kill_relay ? "move-kill" : "move");
	Host a = {0}, b = {0}, c = {0};
	MeshSender *ds = NULL;
	MeshReceiver *dr;
	GError *error = NULL;

	op_begin(kind);
	gboolean ok = launch(mesh, "relay", NULL, &c);
	ok = ok && launch(mesh, "relay", mesh_sender_into_port(mesh_sender_clone(c.work)), &b);
	ok = ok && launch(mesh, "relay", mesh_sender_into_port(mesh_sender_clone(b.work)), &a);

	if (ok) {
		mesh_channel_new(NULL, &ds, &dr);
		MeshMessage *msg = mesh_message_new(move_receiver ? "recv" : "send", 4);
		if (move_receiver) {
			mesh_message_add_port_take(msg, mesh_receiver_into_port(dr));
			dr = NULL;
			mesh_sender_send_message(a.work, msg);
			for (guint32 i = 0; i < MOVE_COUNT; i++)
				mesh_sender_send_message(ds, mesh_message_new(&i, sizeof(i)));
			if (!kill_relay) {
				mesh_sender_free(ds);
				ds = NULL;
			}
		} else {
			mesh_message_add_port_take(msg, mesh_sender_into_port(ds));
			mesh_sender_send_message(a.work, msg);
		}
		if (kill_relay) {
			if (!relay_had_port(&b, RECV_TIMEOUT))
				fail(kind, "the middle relay never got the port");
			g_usleep(g_random_int_range(0, 4000));
			host_kill(&b);
		}

		guint32 got = 0;
		if (move_receiver) {
			/* C's "port", then its report (it gives up after 20 s). */
			char *t = NULL;
			gboolean reached = relay_reached(&c, ds);
			gboolean lost = !reached && ds && mesh_sender_is_closed(ds);
			mesh_sender_free(ds); /* the end of the stream */
			ds = NULL;
			if (reached)
				t = recv_text(c.results, RECV_TIMEOUT + 5 * G_USEC_PER_SEC, &error);
			else if (!lost)
				fail(kind, "the port never reached the last relay");
			if (t) {
				char *end = NULL;
				got = (guint32)g_ascii_strtoull(t, &end, 10);
				end = end && *end == ' ' ? end + 1 : "?";
				if (strcmp(end, "timeout") == 0)
					fail(kind, "the receiver waits forever after %u of %u messages",
					     got, MOVE_COUNT);
				else if (strcmp(end, "closed") == 0 && got != MOVE_COUNT)
					fail(kind, "\"closed\" after %u of %u messages", got,
					     MOVE_COUNT);
				else if (g_str_has_prefix(end, "failed") && !kill_relay)
					fail(kind, "the stream failed after %u messages (%s)", got,
					     end);
				else if (strcmp(end, "out of order") == 0)
					fail(kind, "message %u out of order", got);
			} else if (error) {
				fail(kind, "no report from the last relay: %s", error->message);
			}
			g_clear_error(&error);
			g_free(t);
		} else {
			while (mesh_receiver_recv_message(dr, RECV_TIMEOUT, &msg, &error)) {
				size_t size;
				const guint32 *v = (const guint32 *)mesh_message_get_data(msg, &size);
				gboolean in_order = size == sizeof(*v) && *v == got;
				mesh_message_free(msg);
				if (!in_order) {
					fail(kind, "message %u out of order", got);
					break;
				}
				got++;
			}
			if (g_error_matches(error, MESH_ERROR, MESH_ERROR_TIMED_OUT))
				fail(kind, "the receiver waits forever after %u of %u messages", got,
				     MOVE_COUNT);
			else if (g_error_matches(error, MESH_ERROR, MESH_ERROR_CLOSED) &&
				 got != MOVE_COUNT)
				fail(kind, "\"closed\" after %u of %u messages", got, MOVE_COUNT);
			else if (error && !g_error_matches(error, MESH_ERROR, MESH_ERROR_CLOSED) &&
				 !(kill_relay &&
				   g_error_matches(error, MESH_ERROR, MESH_ERROR_NODE_FAILURE)))
				fail(kind, "the stream ended after %u messages with \"%s\"", got,
				     error->message);
			g_clear_error(&error);
			mesh_receiver_free(dr);
		}
	}

	op_end();

	/* Teardown: A exits when its work closes, then B, then C. */
	op_begin("move: teardown");
	if (kill_relay)
		host_kill(&b);
	host_close(&a);
	host_close(&b);
	host_close(&c);
	gint64 end = g_get_monotonic_time() + RECV_TIMEOUT;
	while (mesh_get_host_count(mesh) > 0 && g_get_monotonic_time() < end)
		g_usleep(2000);
	if (mesh_get_host_count(mesh) > 0) {
		fail(kind, "%u relay hosts did not exit after their work closed",
		     mesh_get_host_count(mesh));
		host_kill(&a);
		host_kill(&c);
	}
	wait_host_count(kind, mesh, 0);
	op_end();
}

/* ---- parent: main loop -------------------------------------------------- */

typedef struct {
	guint fds;
	guint threads;
	gsize heap;
} Sample;

static gint64 env_int(const char *name, gint64 def)
{
	const char *v = g_getenv(name);
	return v && *v ? g_ascii_strtoll(v, NULL, 10) : def;
}

static gboolean enabled(char **only, const char *name)
{
	return !only || g_strv_contains((const char *const *)only, name);
}

/* The median of three. */
static gsize median3(const gsize v[3])
{
	gsize lo = MIN(v[0], v[1]), hi = MAX(v[0], v[1]);
	return v[2] < lo ? lo : v[2] > hi ? hi : v[2];
}

int main(int argc, char **argv)
{
	GError *error = NULL;

	if (!mesh_try_run_host("soak", host_main, NULL, &error)) {
		fprintf(stderr, "soak host: %s\n", error->message);
		return 3;
	}
	if (argc == 5 && strcmp(argv[1], "--client") == 0)
		return run_client(argv[2], argv[3], argv[4]);

	gint64 seconds = env_int("MESH_SOAK_SECONDS", 150);
	stall_us = env_int("MESH_SOAK_STALL", 30) * G_USEC_PER_SEC;
	guint warmup = (guint)env_int("MESH_SOAK_WARMUP", 3);
	gsize heap_tolerance = (gsize)env_int("MESH_SOAK_HEAP_TOLERANCE", 256 * 1024);
	gint64 heap_from = CLAMP(env_int("MESH_SOAK_HEAP_FROM", 40), 0, 99);
	guint32 seed = (guint32)env_int("MESH_SOAK_SEED", (gint64)(g_get_real_time() & 0x7fffffff));
	use_gdb = env_int("MESH_SOAK_GDB", 1) != 0;
	const char *only_env = g_getenv("MESH_SOAK_SCENARIOS");
	char **only = only_env && *only_env ? g_strsplit(only_env, ",", -1) : NULL;
	g_random_set_seed(seed);
	self_exe = g_file_read_link("/proc/self/exe", NULL);
	failures = g_hash_table_new(g_str_hash, g_str_equal);
	/* gdb may attach to this process from its own child. */
	prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY, 0, 0, 0);
	snprintf(self_pid, sizeof(self_pid), "%d", (int)getpid());
	signal(SIGPIPE, SIG_IGN);
	signal(SIGSEGV, crash_handler);
	signal(SIGBUS, crash_handler);
	signal(SIGABRT, crash_handler);

	printf("soak: %" G_GINT64_FORMAT " s, seed %u, stall limit %" G_GINT64_FORMAT
	       " s, warm-up %u rounds, heap flat within %zu bytes after %" G_GINT64_FORMAT
	       "%% of the run, scenarios %s\n",
	       seconds, seed, stall_us / G_USEC_PER_SEC, warmup, heap_tolerance, heap_from,
	       only_env && *only_env ? only_env : "all");
	fflush(stdout);

	GThread *wd = g_thread_new("soak-watchdog", watchdog, NULL);

	op_begin("setup: mesh_new and mesh_listen");
	Mesh *mesh = mesh_new("soak", NULL, &error);
	g_assert_no_error(error);
	char *dir = g_dir_make_tmp("mesh-soak-XXXXXX", NULL);
	char *path = g_build_filename(dir, "mesh.sock", NULL);
	MeshReceiver *listener = NULL;
	if (enabled(only, "clients") && !mesh_listen(mesh, path, FALSE, &listener, &error))
		g_error("mesh_listen: %s", error->message);
	op_end();

	/*
	 * What is kept of the rounds: not an array per round, which would grow
	 * the heap it measures.
	 */
	Sample first = {0}, base = {0}, last = {0};
	gsize early_heap[3], late_heap[3];
	guint n_early = 0, heap_first_round = 0;
	gint64 start = g_get_monotonic_time();
	gint64 end = start + seconds * G_USEC_PER_SEC;
	gint64 heap_start = start + seconds * G_USEC_PER_SEC * heap_from / 100;
	guint fds_over = 0, threads_over = 0;
	gint64 next_print = 0;

	for (round_no = 1; round_no == 1 || g_get_monotonic_time() < end; round_no++) {
		if (enabled(only, "launch"))
			scenario_launch(mesh);
		if (enabled(only, "mesh"))
			scenario_mesh();
		if (enabled(only, "clients"))
			scenario_clients(mesh, path, listener);
		if (enabled(only, "flood"))
			scenario_flood(mesh);
		if (enabled(only, "h2h"))
			scenario_h2h(mesh);
		if (enabled(only, "move")) {
			scenario_move(mesh, FALSE, FALSE);
			scenario_move(mesh, FALSE, TRUE);
			scenario_move(mesh, TRUE, FALSE);
			scenario_move(mesh, TRUE, TRUE);
		}

		Sample s = {
			.fds = count_dir("/proc/self/fd"),
			.threads = count_dir("/proc/self/task"),
			.heap = mallinfo2().uordblks,
		};
		if (round_no == 1)
			first = s;
		if (round_no == MAX(warmup, 1))
			base = s;
		if (g_get_monotonic_time() >= heap_start && n_early < 3) {
			if (n_early == 0)
				heap_first_round = round_no;
			early_heap[n_early++] = s.heap;
		}
		late_heap[round_no % 3] = s.heap;
		last = s;
		/*
		 * Connections to processes that just went away may still be
		 * closing when a round ends: a count over the tolerance fails
		 * only when it stays over for OVER_ROUNDS rounds in a row.
		 */
		fds_over = round_no > warmup && s.fds > base.fds + FD_TOLERANCE ? fds_over + 1 : 0;
		threads_over = round_no > warmup && s.threads > base.threads + THREAD_TOLERANCE
				       ? threads_over + 1
				       : 0;
		if (fds_over == OVER_ROUNDS)
			fail("fds", "%u fds open for %u rounds, %u after the warm-up", s.fds,
			     OVER_ROUNDS, base.fds);
		if (threads_over == OVER_ROUNDS)
			fail("threads", "%u threads for %u rounds, %u after the warm-up", s.threads,
			     OVER_ROUNDS, base.threads);
		/* The warm-up, then one line every 10 s. */
		gint64 now = g_get_monotonic_time();
		if (round_no <= warmup + 1 || now >= next_print) {
			printf("soak: round %u at %.1f s: %u fds, %u threads, heap %zu KiB, %u hosts launched, %u killed, %u failures\n",
			       round_no, (now - start) / 1e6, s.fds, s.threads, s.heap / 1024,
			       n_launched, n_killed, n_failures);
			fflush(stdout);
			next_print = now + 10 * G_USEC_PER_SEC;
		}
	}
	guint rounds = round_no - 1;

	/*
	 * The heap: the median of three rounds at MESH_SOAK_HEAP_FROM % of the
	 * run against the median of the last three. Bounded tables fill in the
	 * first part (a node remembers its last 1024 failed peers, for one);
	 * after it, a leak of a few hundred bytes per host or per connection
	 * adds up to more than the tolerance over a default run, while
	 * allocator noise (thread caches, GLib's own caches) stays below.
	 */
	gssize heap_growth = 0;
	if (n_early == 3 && rounds >= heap_first_round + 5) {
		heap_growth = (gssize)median3(late_heap) - (gssize)median3(early_heap);
		if (heap_growth > (gssize)heap_tolerance)
			fail("heap",
			     "the heap grew by %zd bytes (%zd per round) from round %u to round %u",
			     heap_growth, heap_growth / (gssize)(rounds - 1 - (heap_first_round + 1)),
			     heap_first_round + 1, rounds - 1);
	} else {
		printf("soak: only %u rounds, %u after %" G_GINT64_FORMAT
		       "%% of the run: too few to judge the heap (needs 6)\n",
		       rounds, n_early ? rounds - heap_first_round + 1 : 0, heap_from);
	}

	/* What the mesh holds at the end (its tables, its hosts). */
	op_begin("teardown: mesh_inspect");
	char *json = mesh_inspect(mesh, 5 * G_USEC_PER_SEC);
	printf("soak: inspect at the end: %s\n", json);
	g_free(json);
	op_end();

	op_begin("teardown: mesh_free");
	mesh_receiver_free(listener);
	if (listener)
		mesh_unlisten(mesh, path);
	mesh_free(mesh);
	op_end();

	g_mutex_lock(&wd_lock);
	wd_quit = TRUE;
	g_cond_signal(&wd_cond);
	g_mutex_unlock(&wd_lock);
	g_thread_join(wd);

	printf("soak: %u rounds in %.1f s, %u hosts launched, %u killed\n", rounds,
	       (g_get_monotonic_time() - start) / 1e6, n_launched, n_killed);
	printf("soak: fds %u -> %u, threads %u -> %u, heap %zu -> %zu KiB (growth after warm-up %zd bytes)\n",
	       first.fds, last.fds, first.threads, last.threads, first.heap / 1024,
	       last.heap / 1024, heap_growth);
	GHashTableIter it;
	gpointer k, v;
	g_hash_table_iter_init(&it, failures);
	while (g_hash_table_iter_next(&it, &k, &v)) {
		Failure *f = v;
		printf("soak: FAILED [%s] %u times; first: %s\n", (const char *)k, f->count,
		       f->first);
	}
	printf("soak: %s\n", n_failures ? "FAILED" : "passed");

	rmdir(dir);
	g_free(dir);
	g_free(path);
	g_strfreev(only);
	g_free(self_exe);
	return n_failures ? 1 : 0;
}
