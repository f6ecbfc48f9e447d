/* SPDX-License-Identifier: MIT */
/*
 * meshctl bench [--check] [FILTER...]: libmeshprocess beside the shared IPC
 * peer baselines (bench/peers). Prints TSV lines
 * metric<TAB>system<TAB>value<TAB>unit<TAB>notes with the peers' filter rule
 * (a line is measured if "metric/system" contains any FILTER) and BENCH_*
 * knobs; a readable summary goes to stderr.
 *
 *  1. Runs meshbench (tests/bench) for the channel-level metrics it
 *     has, passing the filters and the environment through.
 *  2. Measures the host-level metrics itself:
 *     host_rss_kib/mesh     VmRSS of an idle launched host after it reported
 *                           ready (median over several hosts), beside a bare
 *                           C program's (sleep(1)).
 *     scale_hosts_ms/mesh-N from before the first launch until N hosts are
 *                           connected all-to-all: every host gets a roster of
 *                           senders into every other host's inbox, sends one
 *                           message through each, and reports "done" once it
 *                           has sent its own and received all N-1 others'.
 *                           N from MESHCTL_BENCH_SCALE (default 1,8,32,64).
 *     scale_intro_us/mesh-N the same runs' all-to-all part (from all hosts
 *                           "ready", joined, until all "done") per host pair.
 *
 * Hosts are this executable re-run by mesh_launch_host() with a Setup whose
 * role is "bench-idle" or "bench-scale" (meshctl_bench_host()). Every
 * message is checked (tag, sender index, no duplicates, counts) and every
 * mesh is shut down cleanly, or the command fails.
 */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "meshctl.h"

extern char **environ;

#define BENCH_WAIT_US (60 * G_USEC_PER_SEC)
#define BENCH_SHUTDOWN_US (20 * G_USEC_PER_SEC)

enum { TAG_READY = 0x52454459, TAG_ROSTER = 0x524f5354, TAG_HELLO = 0x48454c4f,
       TAG_DONE = 0x444f4e45 };

typedef struct {
	guint32 tag;
	guint32 from;   /* host index */
	guint32 count;  /* roster: ports; done: hellos received */
	guint32 n;      /* hosts in the mesh */
} BenchMsg;

/* The metric/system keys meshbench prints (tests/bench/meshbench.c). */
static const char *const meshbench_keys[] = {
	"rtt_64B/mesh", "rtt_4KiB/mesh", "rtt_64KiB/mesh", "stream_64B_msgs_per_s/mesh",
	"stream_1MiB_GB_per_s/mesh", "rtt_fd_pass/mesh", "inproc_rtt/gasyncqueue",
	"inproc_rtt/mesh", "port_move_first_reply_us/mesh", "spawn_to_ready_ms/mesh",
	"spawn_to_ready_sandboxed_ms/mesh",
	"rpc_rtt/mesh", "rpc_async_rtt/mesh", "rpc_async_rtt_on_context/mesh",
};

static char **filters;
static int opt_reps = 9, opt_max_ms = 3000;
static gboolean opt_check;
static GString *summary;

/* ------------------------------------------------------------ helpers */

static gboolean wanted(const char *key)
{
	if (!filters || !filters[0])
		return TRUE;
	for (int i = 0; filters[i]; i++)
		if (strstr(key, filters[i]))
			return TRUE;
	return FALSE;
}

static gboolean wanted2(const char *metric, const char *system)
{
	char *key = g_strdup_printf("%s/%s", metric, system);
	gboolean w = wanted(key);
	g_free(key);
	return w;
}

static gboolean env_int(const char *name, int *value, GError **error)
{
	const char *v = getenv(name);
	if (!v || !*v)
		return TRUE;
	char *end;
	long x = strtol(v, &end, 10);
	if (*end || x <= 0 || x > 1000000) {
		g_set_error(error, MESHCTL_ERROR, 0, "bad value for %s: '%s'", name, v);
		return FALSE;
	}
	*value = (int)x;
	return TRUE;
}

static const char *pin_mode(void)
{
	const char *m = getenv("BENCH_PIN");
	return m && *m ? m : "none";
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double median(double *v, guint n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* 4 significant digits below 1000, whole numbers above, never an exponent. */
static char *fmt(double v)
{
	if (v >= 1000)
		return g_strdup_printf("%.0f", v);
	int digits = v >= 100 ? 1 : v >= 10 ? 2 : v >= 1 ? 3 : 4;
	if (v > 0 && v < 0.1)
		digits = 5;
	return g_strdup_printf("%.*f", digits, v);
}

static void emit(const char *metric, const char *system, double value, const char *unit,
		 const char *notes)
{
	char *v = fmt(value);
	printf("%s\t%s\t%s\t%s\t%s; BENCH_PIN=%s\n", metric, system, v, unit, notes, pin_mode());
	fflush(stdout);
	g_string_append_printf(summary, "  %-16s %-8s %10s %-4s  %s\n", metric, system, v, unit,
			       notes);
	g_free(v);
}

static gint64 now_us(void)
{
	return g_get_monotonic_time();
}

/* A field of /proc/PID/status in kB, or -1. */
static long proc_status_kib(GPid pid, const char *field)
{
	char *path = pid ? g_strdup_printf("/proc/%d/status", (int)pid)
			 : g_strdup("/proc/self/status");
	char *text = NULL;
	long v = -1;
	if (g_file_get_contents(path, &text, NULL, NULL)) {
		size_t len = strlen(field);
		for (char *line = text; line && *line;) {
			if (strncmp(line, field, len) == 0 && line[len] == ':') {
				v = strtol(line + len + 1, NULL, 10);
				break;
			}
			line = strchr(line, '\n');
			if (line)
				line++;
		}
	}
	g_free(text);
	g_free(path);
	return v;
}

static MeshMessage *bench_msg(guint32 tag, guint32 from, guint32 count, guint32 n)
{
	BenchMsg m = {tag, from, count, n};
	return mesh_message_new(&m, sizeof(m));
}

/* Reads a BenchMsg out of @msg; FALSE with @error if it is not one. */
static gboolean read_msg(MeshMessage *msg, BenchMsg *out, GError **error)
{
	size_t size;
	const guint8 *data = mesh_message_get_data(msg, &size);
	if (size != sizeof(*out)) {
		g_set_error(error, MESHCTL_ERROR, 0, "message of %zu bytes, expected %zu", size,
			    sizeof(*out));
		return FALSE;
	}
	memcpy(out, data, sizeof(*out));
	return TRUE;
}

/* ------------------------------------------------------------ the hosts */

/* Waits until @inbox closes (the parent and every peer dropped their senders). */
static gboolean host_idle(const char *name, MeshReceiver *inbox, GError **error)
{
	for (;;) {
		MeshMessage *msg = NULL;
		GError *e = NULL;
		if (mesh_receiver_recv_message(inbox, -1, &msg, &e)) {
			mesh_message_free(msg);
			g_set_error(error, MESHCTL_ERROR, 0, "%s: unexpected message", name);
			return FALSE;
		}
		if (g_error_matches(e, MESH_ERROR, MESH_ERROR_CLOSED)) {
			g_error_free(e);
			return TRUE;
		}
		if (g_error_matches(e, MESH_ERROR, MESH_ERROR_NODE_FAILURE) ||
		    g_error_matches(e, MESH_ERROR, MESH_ERROR_SHUTTING_DOWN)) {
			/* libmeshprocess is ending this process (see meshctl-host.c). */
			g_error_free(e);
			g_usleep(10 * G_USEC_PER_SEC);
			return TRUE;
		}
		g_propagate_prefixed_error(error, e, "%s: ", name);
		return FALSE;
	}
}

static gboolean host_scale(const char *name, MeshReceiver *inbox, MeshSender *reports,
			   GError **error)
{
	guint idx = 0, n = 0;
	if (sscanf(name, "scale-%u-of-%u", &idx, &n) != 2 || n == 0 || idx >= n) {
		g_set_error(error, MESHCTL_ERROR, 0, "bad bench host name %s", name);
		return FALSE;
	}
	guint8 *seen = g_new0(guint8, n);
	guint hellos = 0;
	gboolean roster_done = FALSE, ok = TRUE;

	/* Joined and waiting: the parent starts the all-to-all once all are. */
	mesh_sender_send_message(reports, bench_msg(TAG_READY, idx, 0, n));

	while (ok && !(roster_done && hellos == n - 1)) {
		MeshMessage *msg = NULL;
		BenchMsg m;
		if (!mesh_receiver_recv_message(inbox, BENCH_WAIT_US, &msg, error)) {
			g_prefix_error(error, "%s (roster %s, %u of %u hellos): ", name,
				       roster_done ? "in" : "not in", hellos, n - 1);
			ok = FALSE;
			break;
		}
		if (!read_msg(msg, &m, error)) {
			ok = FALSE;
		} else if (m.tag == TAG_ROSTER && !roster_done && m.count == n - 1 &&
			   m.n == n && mesh_message_get_n_resources(msg) == n - 1) {
			/* One hello into every other host's inbox. */
			for (guint i = 0; i < n - 1; i++) {
				MeshPort *port = mesh_message_steal_port(msg, i);
				if (!port) {
					g_set_error(error, MESHCTL_ERROR, 0,
						    "%s: roster entry %u is not a port", name, i);
					ok = FALSE;
					break;
				}
				MeshSender *to = mesh_sender_from_port(port, NULL);
				mesh_sender_send_message(to, bench_msg(TAG_HELLO, idx, 0, n));
				mesh_sender_free(to);
			}
			roster_done = TRUE;
		} else if (m.tag == TAG_HELLO && m.n == n && m.from < n && m.from != idx &&
			   !seen[m.from] && mesh_message_get_n_resources(msg) == 0) {
			seen[m.from] = 1;
			hellos++;
		} else {
			g_set_error(error, MESHCTL_ERROR, 0,
				    "%s: unexpected message (tag %x from %u count %u n %u)", name,
				    m.tag, m.from, m.count, m.n);
			ok = FALSE;
		}
		mesh_message_free(msg);
	}
	g_free(seen);
	if (!ok)
		return FALSE;
	mesh_sender_send_message(reports, bench_msg(TAG_DONE, idx, hellos, n));
	return TRUE;
}

gboolean meshctl_bench_host(Meshctl__Setup *setup, GError **error)
{
	const char *name = setup->name ? setup->name : "bench";
	MeshPort *commands = mesh_port_steal_from_field(setup->commands);
	MeshPort *reports_port = mesh_port_steal_from_field(setup->reports);
	if (!commands || !reports_port) {
		mesh_port_close(commands);
		mesh_port_close(reports_port);
		g_set_error(error, MESHCTL_ERROR, 0, "setup of %s lacks a channel", name);
		return FALSE;
	}
	MeshReceiver *inbox = mesh_receiver_from_port(commands, NULL);
	MeshSender *reports = mesh_sender_from_port(reports_port, NULL);
	gboolean ok;

	if (g_strcmp0(setup->role, "bench-idle") == 0) {
		mesh_sender_send_message(reports, bench_msg(TAG_READY, (guint32)getpid(), 0, 1));
		mesh_sender_free(reports);
		reports = NULL;
		ok = host_idle(name, inbox, error);
	} else if (g_strcmp0(setup->role, "bench-scale") == 0) {
		ok = host_scale(name, inbox, reports, error);
		mesh_sender_free(reports);
		reports = NULL;
		if (ok)
			ok = host_idle(name, inbox, error);
	} else {
		g_set_error(error, MESHCTL_ERROR, 0, "unknown bench role \"%s\"", setup->role);
		ok = FALSE;
	}
	mesh_sender_free(reports);
	mesh_receiver_free(inbox);
	return ok;
}

/* ------------------------------------------------------------ the parent */

typedef struct {
	Mesh *mesh;
	guint n;
	MeshSender **inbox;  /* the parent's sender into each host's inbox */
	GPid *pids;
	MeshReceiver *reports;
} Bench;

static gboolean bench_launch(Bench *b, const char *role, guint n, GError **error)
{
	MeshSender *reports;
	b->n = n;
	b->inbox = g_new0(MeshSender *, n);
	b->pids = g_new0(GPid, n);
	mesh_channel_new(NULL, &reports, &b->reports);
	gboolean ok = TRUE;
	for (guint i = 0; i < n && ok; i++) {
		MeshReceiver *inbox;
		mesh_channel_new(NULL, &b->inbox[i], &inbox);
		Meshctl__Setup *setup = malloc(sizeof(*setup));
		meshctl__setup__init(setup);
		setup->role = strdup(role);
		char *name = g_strdup_printf("%s-%u-of-%u",
					     strcmp(role, "bench-idle") == 0 ? "idle" : "scale", i, n);
		setup->name = strdup(name);
		setup->commands = mesh_port_into_field(mesh_receiver_into_port(inbox));
		setup->reports = mesh_port_into_field(mesh_sender_into_port(mesh_sender_clone(reports)));
		MeshProcessConfig *config = mesh_process_config_new(name);
		if (meshctl_verbose)
			mesh_process_config_set_env(config, "MESHCTL_VERBOSE", "1");
		b->pids[i] = mesh_launch_host(b->mesh, config,
					      mesh_message_new_typed_take(&setup->base), error);
		mesh_process_config_free(config);
		g_free(name);
		ok = b->pids[i] != 0;
	}
	mesh_sender_free(reports);
	return ok;
}

/* Drops the parent's senders and shuts the mesh down; FALSE if not clean. */
static gboolean bench_end(Bench *b, gboolean ok, GError **error)
{
	for (guint i = 0; i < b->n; i++)
		mesh_sender_free(b->inbox[i]);
	GError *e = NULL;
	if (!mesh_shutdown(b->mesh, BENCH_SHUTDOWN_US, &e)) {
		if (ok) {
			if (e)
				g_propagate_prefixed_error(error, e, "shutdown: ");
			else
				g_set_error(error, MESHCTL_ERROR, 0, "shutdown was not clean");
		} else {
			g_clear_error(&e);
		}
		ok = FALSE;
	}
	mesh_receiver_free(b->reports);
	mesh_free(b->mesh);
	g_free(b->inbox);
	g_free(b->pids);
	memset(b, 0, sizeof(*b));
	return ok;
}

/* RSS of a bare C program: sleep(1), once it has exec'd. */
static long bare_rss_kib(void)
{
	char *argv[] = {(char *)"sleep", (char *)"30", NULL};
	pid_t pid;
	if (posix_spawnp(&pid, "sleep", NULL, NULL, argv, environ) != 0)
		return -1;
	long rss = -1;
	char *path = g_strdup_printf("/proc/%d/comm", (int)pid);
	for (int i = 0; i < 200; i++) {
		char *comm = NULL;
		if (g_file_get_contents(path, &comm, NULL, NULL) &&
		    strcmp(g_strstrip(comm), "sleep") == 0) {
			g_free(comm);
			g_usleep(20000); /* past the dynamic loader */
			rss = proc_status_kib(pid, "VmRSS");
			break;
		}
		g_free(comm);
		g_usleep(5000);
	}
	g_free(path);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	return rss;
}

static gboolean bench_host_rss(GError **error)
{
	if (!wanted2("host_rss_kib", "mesh"))
		return TRUE;
	alarm(opt_max_ms / 1000 * 4 + 60);
	guint n = CLAMP(opt_reps, 3, 9);
	Bench b = {0};
	b.mesh = mesh_new("meshctl-bench-rss", NULL, error);
	if (!b.mesh)
		return FALSE;
	gboolean ok = bench_launch(&b, "bench-idle", n, error);
	double *rss = g_new0(double, n);
	guint got = 0;
	while (ok && got < n) {
		MeshMessage *msg = NULL;
		BenchMsg m;
		if (!mesh_receiver_recv_message(b.reports, BENCH_WAIT_US, &msg, error) ||
		    !read_msg(msg, &m, error)) {
			ok = FALSE;
		} else if (m.tag != TAG_READY) {
			g_set_error(error, MESHCTL_ERROR, 0, "idle host: tag %x, expected ready",
				    m.tag);
			ok = FALSE;
		} else {
			long kib = -1;
			for (guint i = 0; i < n; i++)
				if ((guint32)b.pids[i] == m.from)
					kib = proc_status_kib(b.pids[i], "VmRSS");
			if (kib <= 0) {
				g_set_error(error, MESHCTL_ERROR, 0,
					    "no VmRSS for host pid %u (not one of ours?)", m.from);
				ok = FALSE;
			} else {
				rss[got++] = kib;
			}
		}
		if (msg)
			mesh_message_free(msg);
	}
	long parent_rss = proc_status_kib(0, "VmRSS");
	ok = bench_end(&b, ok, error);
	if (ok) {
		long bare = bare_rss_kib();
		double med = median(rss, n);
		char *notes;
		if (bare > 0)
			notes = g_strdup_printf(
				"VmRSS of an idle host after its ready message, median of %u hosts "
				"(range %.0f-%.0f); bare C program (sleep) %ld KiB, host - bare = "
				"%.0f KiB (DESIGN target <= 4096); parent VmRSS %ld KiB",
				n, rss[0], rss[n - 1], bare, med - bare, parent_rss);
		else
			notes = g_strdup_printf(
				"VmRSS of an idle host after its ready message, median of %u hosts "
				"(range %.0f-%.0f); bare C program: not measured; parent VmRSS %ld KiB",
				n, rss[0], rss[n - 1], parent_rss);
		emit("host_rss_kib", "mesh", med, "KiB", notes);
		g_free(notes);
	}
	g_free(rss);
	alarm(0);
	return ok;
}

/*
 * Waits for one report with @tag from each of the @n hosts (checked: tag,
 * index, no duplicates, @count); FALSE with @error otherwise.
 */
static gboolean scale_wait_all(Bench *b, guint32 tag, guint32 count, const char *what,
			       GError **error)
{
	guint n = b->n;
	guint8 *seen = g_new0(guint8, n);
	gboolean ok = TRUE;

	for (guint got = 0; ok && got < n; got++) {
		MeshMessage *msg = NULL;
		BenchMsg m;
		if (!mesh_receiver_recv_message(b->reports, BENCH_WAIT_US, &msg, error)) {
			g_prefix_error(error, "%u of %u hosts %s: ", got, n, what);
			ok = FALSE;
		} else if (!read_msg(msg, &m, error)) {
			ok = FALSE;
		} else if (m.tag != tag || m.from >= n || seen[m.from] || m.count != count ||
			   m.n != n) {
			g_set_error(error, MESHCTL_ERROR, 0,
				    "bad %s report (tag %x from %u count %u n %u)", what, m.tag,
				    m.from, m.count, m.n);
			ok = FALSE;
		} else {
			seen[m.from] = 1;
		}
		if (msg)
			mesh_message_free(msg);
	}
	g_free(seen);
	return ok;
}

/*
 * One all-to-all start of @n hosts: in @ret_ms the time in ms from before
 * the first launch until all are done; in @ret_intro_ms the all-to-all
 * part alone, from all hosts ready (joined, waiting for their roster) until
 * all are done.
 */
static gboolean scale_once(guint n, double *ret_ms, double *ret_intro_ms, long *ret_parent_rss,
			   GError **error)
{
	Bench b = {0};
	b.mesh = mesh_new("meshctl-bench-scale", NULL, error);
	if (!b.mesh)
		return FALSE;
	gint64 t0 = now_us();
	gboolean ok = bench_launch(&b, "bench-scale", n, error);
	ok = ok && scale_wait_all(&b, TAG_READY, 0, "ready", error);
	gint64 t1 = now_us();
	/* Each host's roster: a sender into every other host's inbox. */
	for (guint i = 0; ok && i < n; i++) {
		MeshMessage *roster = bench_msg(TAG_ROSTER, 0, n - 1, n);
		for (guint j = 0; j < n; j++)
			if (j != i)
				mesh_message_add_port_take(
					roster, mesh_sender_into_port(mesh_sender_clone(b.inbox[j])));
		mesh_sender_send_message(b.inbox[i], roster);
	}
	ok = ok && scale_wait_all(&b, TAG_DONE, n - 1, "done", error);
	gint64 t2 = now_us();
	*ret_ms = (t2 - t0) / 1000.0;
	*ret_intro_ms = (t2 - t1) / 1000.0;
	*ret_parent_rss = proc_status_kib(0, "VmRSS");
	return bench_end(&b, ok, error);
}

static gboolean bench_scale(GError **error)
{
	const char *spec = getenv("MESHCTL_BENCH_SCALE");
	if (!spec || !*spec)
		spec = opt_check ? "1,4" : "1,8,32,64";
	char **ns = g_strsplit(spec, ",", -1);
	gboolean ok = TRUE;
	for (int k = 0; ns[k] && ok; k++) {
		char *end;
		long n = strtol(ns[k], &end, 10);
		if (*end || n < 1 || n > 1000) {
			g_set_error(error, MESHCTL_ERROR, 0, "bad MESHCTL_BENCH_SCALE entry '%s'",
				    ns[k]);
			ok = FALSE;
			break;
		}
		char *system = g_strdup_printf("mesh-%ld", n);
		if (!wanted2("scale_hosts_ms", system) && !wanted2("scale_intro_us", system)) {
			g_free(system);
			continue;
		}
		alarm(opt_max_ms / 1000 * 4 + 120);
		double warm, warm_intro, *v = g_new0(double, opt_reps);
		double *intro = g_new0(double, opt_reps);
		long parent_rss = 0, parent_max = 0;
		ok = scale_once((guint)n, &warm, &warm_intro, &parent_rss, error); /* warm-up */
		gint64 start = now_us();
		int reps = 0;
		while (ok && reps < opt_reps &&
		       (reps < 3 || now_us() - start < (gint64)opt_max_ms * 1000)) {
			ok = scale_once((guint)n, &v[reps], &intro[reps], &parent_rss, error);
			if (ok)
				reps++;
			parent_max = MAX(parent_max, parent_rss);
		}
		if (ok) {
			double med = median(v, reps);
			char *notes = g_strdup_printf(
				"median of %d reps x 1 (range %.3g-%.3g); %ld host(s) launched, each "
				"sends one message to every other host through senders passed in "
				"its roster; until all %ld reported every message received; "
				"parent VmRSS %ld KiB (VmHWM %ld KiB)",
				reps, v[0], v[reps - 1], n, n, parent_max,
				proc_status_kib(0, "VmHWM"));
			if (wanted2("scale_hosts_ms", system))
				emit("scale_hosts_ms", system, med, "ms", notes);
			g_free(notes);
			if (n > 1 && wanted2("scale_intro_us", system)) {
				/* Per connected pair: n(n-1)/2 introductions. */
				double pairs = n * (n - 1) / 2.0;
				for (int i = 0; i < reps; i++)
					intro[i] = intro[i] * 1000.0 / pairs;
				med = median(intro, reps);
				notes = g_strdup_printf(
					"median of %d reps x 1 (range %.3g-%.3g); the all-to-all part of "
					"scale_hosts_ms/%s (from all %ld hosts joined until all done) "
					"divided by its %.0f host pairs",
					reps, intro[0], intro[reps - 1], system, n, pairs);
				emit("scale_intro_us", system, med, "us", notes);
				g_free(notes);
			}
		} else {
			g_prefix_error(error, "scale_hosts_ms/%s: ", system);
		}
		alarm(0);
		g_free(v);
		g_free(intro);
		g_free(system);
	}
	g_strfreev(ns);
	return ok;
}

/* ------------------------------------------------------------ meshbench */

/*
 * The meshbench this meshctl goes with: MESHCTL_MESHBENCH if set, else
 * relative to this executable, where `meson install` puts it (libexecdir/mesh,
 * MESHCTL_MESHBENCH_INSTALLED), where the build tree has it, or next to it.
 * Never by a build-tree path or PATH: an installed meshctl runs its own
 * helper, wherever the installed tree is and whether or not the build tree
 * still exists.
 */
static char *find_meshbench(void)
{
	const char *env = getenv("MESHCTL_MESHBENCH");
	if (env && *env)
		return g_strdup(env);
	char *self = g_file_read_link("/proc/self/exe", NULL);
	if (!self)
		return NULL;
	static const char *const candidates[] = {
		MESHCTL_MESHBENCH_INSTALLED,
		MESHCTL_MESHBENCH_BUILD,
		"meshbench",
	};
	char *dir = g_path_get_dirname(self);
	char *found = NULL;
	for (gsize i = 0; i < G_N_ELEMENTS(candidates) && !found; i++) {
		char *path = g_canonicalize_filename(candidates[i], dir);
		if (g_file_test(path, G_FILE_TEST_IS_EXECUTABLE))
			found = path;
		else
			g_free(path);
	}
	g_free(dir);
	g_free(self);
	return found;
}

static gboolean run_meshbench(GError **error)
{
	gboolean any = FALSE;
	for (gsize i = 0; i < G_N_ELEMENTS(meshbench_keys); i++)
		any |= wanted(meshbench_keys[i]);
	if (!any)
		return TRUE;
	char *path = find_meshbench();
	if (!path) {
		g_set_error(error, MESHCTL_ERROR, 0,
			    "meshbench not found (relative to meshctl: %s, %s or next to it; "
			    "or set MESHCTL_MESHBENCH)",
			    MESHCTL_MESHBENCH_INSTALLED, MESHCTL_MESHBENCH_BUILD);
		return FALSE;
	}
	GPtrArray *args = g_ptr_array_new();
	g_ptr_array_add(args, path);
	if (opt_check)
		g_ptr_array_add(args, (char *)"--check");
	for (int i = 0; filters && filters[i]; i++)
		g_ptr_array_add(args, filters[i]);
	g_ptr_array_add(args, NULL);

	fflush(stdout);
	fflush(stderr);
	pid_t pid;
	int rc = posix_spawn(&pid, path, NULL, NULL, (char **)args->pdata, environ);
	g_ptr_array_free(args, TRUE);
	if (rc != 0) {
		g_set_error(error, MESHCTL_ERROR, 0, "%s: %s", path, g_strerror(rc));
		g_free(path);
		return FALSE;
	}
	int status;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	gboolean ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
	if (!ok)
		g_set_error(error, MESHCTL_ERROR, 0, "%s failed (status 0x%x)", path, status);
	g_free(path);
	return ok;
}

/* ------------------------------------------------------------ command */

int meshctl_bench(int argc, char **argv)
{
	GError *error = NULL;
	gboolean no_meshbench = FALSE;
	GOptionEntry entries[] = {
		{"check", 0, 0, G_OPTION_ARG_NONE, &opt_check,
		 "tiny counts (meshbench --check; default scale 1,4)", NULL},
		{"no-meshbench", 0, 0, G_OPTION_ARG_NONE, &no_meshbench,
		 "only the host-level metrics", NULL},
		{G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_STRING_ARRAY, &filters, NULL,
		 "[FILTER…]"},
		{NULL},
	};
	GOptionContext *ctx = g_option_context_new("[FILTER…]");
	g_option_context_set_summary(
		ctx,
		"Measure mesh beside the IPC peer baselines (bench/peers): TSV lines\n"
		"metric<TAB>system<TAB>value<TAB>unit<TAB>notes on stdout, a summary on stderr.\n"
		"Runs meshbench for the channel metrics, then measures host_rss_kib/mesh and\n"
		"scale_hosts_ms/mesh-N itself. A line is measured if \"metric/system\" contains\n"
		"a FILTER (all without filters).\n"
		"\n"
		"Environment: BENCH_REPS, BENCH_REP_MS, BENCH_MAX_MS, BENCH_SPAWNS, BENCH_PIN\n"
		"(as bench/peers); MESHCTL_BENCH_SCALE=1,8,32,64 (host counts);\n"
		"MESHCTL_MESHBENCH (path of meshbench).");
	g_option_context_add_main_entries(ctx, entries, NULL);
	gboolean parsed = g_option_context_parse(ctx, &argc, &argv, &error);
	g_option_context_free(ctx);
	if (!parsed) {
		meshctl_print_error("bench", error);
		g_error_free(error);
		return 2;
	}
	if (opt_check) {
		opt_reps = 3;
		opt_max_ms = 200;
	}
	if (!env_int("BENCH_REPS", &opt_reps, &error) ||
	    !env_int("BENCH_MAX_MS", &opt_max_ms, &error)) {
		meshctl_print_error("bench", error);
		g_error_free(error);
		return 2;
	}
	opt_reps = CLAMP(opt_reps, 3, 99);
	if (strcmp(pin_mode(), "none") != 0) {
		/* same and split: this process (and the hosts it starts) on CPU 0. */
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(0, &set);
		sched_setaffinity(0, sizeof(set), &set);
	}
	signal(SIGPIPE, SIG_IGN);
	summary = g_string_new(NULL);

	int status = 0;
	if (!no_meshbench && !run_meshbench(&error)) {
		meshctl_print_error("bench", error);
		g_clear_error(&error);
		status = 1;
	}
	if (!bench_host_rss(&error) || !bench_scale(&error)) {
		meshctl_print_error("bench", error);
		g_clear_error(&error);
		status = 1;
	}
	if (summary->len)
		fprintf(stderr, "\n== meshctl bench (BENCH_PIN=%s) ==\n%s", pin_mode(),
			summary->str);
	g_string_free(summary, TRUE);
	g_strfreev(filters);
	filters = NULL;
	return status;
}
