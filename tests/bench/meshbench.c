/* SPDX-License-Identifier: MIT */
/*
 * meshbench: libmeshremote measured the way bench/peers measures the kernel
 * primitives and the peer libraries (same metric names, units, statistics,
 * BENCH_* knobs and filter rule), so that its TSV lines join the peers' run
 * through BENCH_LIB_CMD.
 *
 *   meshbench [FILTER...]          measure; TSV on stdout, progress on stderr
 *   meshbench --check [FILTER...]  every measurement with tiny counts, every
 *                                  byte and fd of every reply checked; exits
 *                                  non-zero on any mismatch (a test)
 *   meshbench --child MODE ...     the peer process (internal)
 *
 * Method (as bench/peers/common.c): every cross-process measurement starts a
 * fresh child: the parent invites it into its mesh (mesh_unix_node_invite),
 * spawns /proc/self/exe with the invitation's socket on fd 3 and the four ids
 * in argv, and the child joins (mesh_unix_node_join). Both sides use an
 * own-thread MeshUnixNode. Parent -> child is an untyped mpsc channel made
 * of the invitation's port; child -> parent is a second untyped channel
 * whose sender the parent moves to the child in the first message. The
 * parent drives the protocol and does all timing with CLOCK_MONOTONIC.
 * Calibration doubles as warm-up: the batch size n grows until a batch takes
 * >= 20 ms, then is set so that a batch takes about BENCH_REP_MS; BENCH_REPS
 * batches are timed (no new one after BENCH_MAX_MS once 3 ran) and the median
 * of the per-batch values is reported. Every reply is checked (size, a
 * sequence number at both ends of the payload, fds by inode; with --check
 * every byte). Receives block (with a generous timeout that aborts), nothing
 * spins. Children are reaped and their exit status checked, and the parent's
 * node must have no port left once a child is done. A watchdog
 * (alarm) ends a measurement that takes more than 4 x BENCH_MAX_MS + 20 s;
 * the children die with the parent (parent-death signal).
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <glib-unix.h>
#include <glib.h>
#include <meshprocess/meshprocess.h>
#include <meshremote/meshremote.h>
#include <pal/pal.h>

#include "meshbench.pb-c.h"

#define KIB ((size_t)1024)
#define MIB ((size_t)1024 * 1024)
#define SYSTEM "mesh"
/* A receive that takes this long means something is broken. */
#define RECV_TIMEOUT_US (60 * G_USEC_PER_SEC)
#define CHILD_JOIN_TIMEOUT_US (20 * G_USEC_PER_SEC)
#define SHUTDOWN_TIMEOUT_US (5 * G_USEC_PER_SEC)

/* ------------------------------------------------------------ helpers */

static gboolean opt_check;

__attribute__((noreturn, format(printf, 1, 2))) static void die(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fprintf(stderr, "meshbench[%d]: ", (int)getpid());
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	_exit(1);
}

#define CHECK(cond)                                                                       \
	do {                                                                              \
		if (!(cond))                                                              \
			die("%s:%d: %s failed (errno: %s)", __FILE__, __LINE__, #cond,    \
			    g_strerror(errno));                                           \
	} while (0)

/*
 * MESHBENCH_STAMPS=FILE (bench only): spawn_to_ready_ms's parts. Each spawn
 * appends a line "P t0 t_spawned t_ready" (the parent: before the invite,
 * after pal_spawn_run(), at the child's first message) and the child one
 * "C t_main t_join t_joined" (main() entered, the join starts, the join
 * returned); CLOCK_MONOTONIC in ns, the same clock in both processes.
 * tests/bench/spawn-parts.py pairs them and prints the medians (filter
 * on one spawn row: both write their lines).
 */
static double stamps_ns[3];

static double stamp_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

/* The stamps file, opened once (a sandboxed child: before its sandbox), or -1. */
static int stamps_fd = -2;

static void stamps_open(void)
{
	const char *path = getenv("MESHBENCH_STAMPS");
	if (stamps_fd == -2)
		stamps_fd = path && *path ? open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600)
					  : -1;
}

static void stamps_write(char who)
{
	stamps_open();
	if (stamps_fd < 0)
		return;
	char line[128];
	int n = snprintf(line, sizeof(line), "%c %.0f %.0f %.0f\n", who, stamps_ns[0], stamps_ns[1],
			 stamps_ns[2]);
	if (write(stamps_fd, line, (size_t)n) != n)
		fprintf(stderr, "meshbench: cannot write the stamps\n");
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void id_to_hex(const MeshUuid *id, char out[33])
{
	static const char hex[] = "0123456789abcdef";

	for (int i = 0; i < 16; i++) {
		out[2 * i] = hex[id->bytes[i] >> 4];
		out[2 * i + 1] = hex[id->bytes[i] & 15];
	}
	out[32] = '\0';
}

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static gboolean id_from_hex(const char *s, MeshUuid *id)
{
	if (strlen(s) != 32)
		return FALSE;
	for (int i = 0; i < 16; i++) {
		int hi = hex_digit(s[2 * i]), lo = hex_digit(s[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return FALSE;
		id->bytes[i] = (uint8_t)(hi << 4 | lo);
	}
	return TRUE;
}

/*
 * Payloads: the sequence number in the first and the last 8 bytes; with
 * --check every other byte is a pattern of the sequence number and its
 * position, and every byte is verified.
 */
static uint8_t pattern_byte(uint64_t seq, size_t j)
{
	return (uint8_t)(seq * 131u + j * 7u + (j >> 8) * 3u + 1u);
}

static void payload_fill(uint8_t *buf, size_t size, uint64_t seq)
{
	if (opt_check)
		for (size_t j = 0; j < size; j++)
			buf[j] = pattern_byte(seq, j);
	if (size >= sizeof(seq))
		memcpy(buf, &seq, sizeof(seq));
	if (size >= 2 * sizeof(seq))
		memcpy(buf + size - sizeof(seq), &seq, sizeof(seq));
}

/* Returns NULL when @data is the payload @seq of @want bytes, else what is wrong. */
static const char *payload_verify(const uint8_t *data, size_t size, size_t want, uint64_t seq)
{
	uint64_t v;

	if (size != want)
		return "wrong size";
	if (size >= sizeof(v)) {
		memcpy(&v, data, sizeof(v));
		if (v != seq)
			return "wrong sequence number at the start";
	}
	if (size >= 2 * sizeof(v)) {
		memcpy(&v, data + size - sizeof(v), sizeof(v));
		if (v != seq)
			return "wrong sequence number at the end";
	}
	if (opt_check)
		for (size_t j = sizeof(v); j + sizeof(v) < size; j++)
			if (data[j] != pattern_byte(seq, j))
				return "wrong byte in the payload";
	return NULL;
}

static MeshMessage *message_new_u64(uint64_t a, uint64_t b)
{
	uint64_t v[2] = {a, b};

	return mesh_message_new(v, sizeof(v));
}

static gboolean message_get_u64(MeshMessage *msg, uint64_t *a, uint64_t *b)
{
	size_t size;
	const uint8_t *data = mesh_message_get_data(msg, &size);
	uint64_t v[2];

	if (size != sizeof(v))
		return FALSE;
	memcpy(v, data, sizeof(v));
	*a = v[0];
	*b = v[1];
	return TRUE;
}

/*
 * Blocking receive. Returns NULL only when the channel is closed and
 * @closed_ok; any other failure ends the process.
 */
static MeshMessage *recv_or_die(MeshReceiver *rx, const char *what, gboolean closed_ok)
{
	MeshMessage *msg = NULL;
	GError *error = NULL;

	if (mesh_receiver_recv_message(rx, RECV_TIMEOUT_US, &msg, &error))
		return msg;
	if (closed_ok && g_error_matches(error, MESH_ERROR, MESH_ERROR_CLOSED)) {
		g_error_free(error);
		return NULL;
	}
	die("%s: receive failed: %s", what, error->message);
}

/* ------------------------------------------------ measurement harness */

#define MAX_REPS 99
#define MAX_FILTERS 16

static int opt_reps = 9;
static double opt_rep_s = 0.1, opt_max_s = 3.0;
static const char *filters[MAX_FILTERS];
static int nfilters;
static char watchdog_what[160];
static GString *summary;
static int n_checked;

static int env_int(const char *name, int dflt)
{
	const char *v = getenv(name);
	char *end;
	long x;

	if (!v || !*v)
		return dflt;
	x = strtol(v, &end, 10);
	if (*end || x <= 0 || x > 1000000)
		die("bad value for %s: '%s'", name, v);
	return (int)x;
}

static const char *pin_mode(void)
{
	const char *mode = getenv("BENCH_PIN");

	return mode && *mode ? mode : "none";
}

/* BENCH_PIN=none|same|split; role 0 = the driving process, 1 = the child. */
static void bench_pin(int role)
{
	const char *mode = pin_mode();
	cpu_set_t set;

	if (strcmp(mode, "none") == 0)
		return;
	CPU_ZERO(&set);
	if (strcmp(mode, "same") == 0)
		CPU_SET(0, &set);
	else if (strcmp(mode, "split") == 0)
		CPU_SET(role ? 1 : 0, &set);
	else
		die("BENCH_PIN must be none, same or split (got '%s')", mode);
	CHECK(sched_setaffinity(0, sizeof(set), &set) == 0);
}

static void on_alarm(int sig)
{
	static const char msg[] = "meshbench: watchdog expired in ";

	(void)sig;
	(void)!write(2, msg, sizeof(msg) - 1);
	(void)!write(2, watchdog_what, strlen(watchdog_what));
	(void)!write(2, "\n", 1);
	_exit(3);
}

static void watchdog(unsigned seconds, const char *what)
{
	snprintf(watchdog_what, sizeof(watchdog_what), "%s", what);
	alarm(seconds);
}

static void bench_init(int argc, char **argv)
{
	struct sigaction sa = {.sa_handler = on_alarm};

	opt_reps = env_int("BENCH_REPS", opt_reps);
	if (opt_reps > MAX_REPS)
		opt_reps = MAX_REPS;
	opt_rep_s = env_int("BENCH_REP_MS", 100) / 1000.0;
	opt_max_s = env_int("BENCH_MAX_MS", 3000) / 1000.0;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--check") == 0)
			opt_check = TRUE;
		else if (argv[i][0] == '-' && argv[i][1] == '-')
			die("unknown option %s (usage: meshbench [--check] [FILTER...])", argv[i]);
		else if (nfilters < MAX_FILTERS)
			filters[nfilters++] = argv[i];
	}
	sigemptyset(&sa.sa_mask);
	CHECK(sigaction(SIGALRM, &sa, NULL) == 0);
	signal(SIGPIPE, SIG_IGN);
	bench_pin(0);
	summary = g_string_new(NULL);
}

static gboolean bench_wanted(const char *metric, const char *system)
{
	char key[256];

	if (nfilters == 0)
		return TRUE;
	snprintf(key, sizeof(key), "%s/%s", metric, system);
	for (int i = 0; i < nfilters; i++) {
		size_t len = strlen(filters[i]);

		/* "metric/system$": that measurement only. */
		if (len > 0 && filters[i][len - 1] == '$') {
			if (strlen(key) == len - 1 && strncmp(key, filters[i], len - 1) == 0)
				return TRUE;
		} else if (strstr(key, filters[i])) {
			return TRUE;
		}
	}
	return FALSE;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double median(double *v, size_t n)
{
	CHECK(n > 0);
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* 4 significant digits below 1000, whole numbers above, never an exponent. */
static void fmt_value(char *out, size_t cap, double v)
{
	if (v >= 1000)
		snprintf(out, cap, "%.0f", v);
	else
		snprintf(out, cap, "%.4g", v);
}

static void bench_emit(const char *metric, const char *system, double value, const char *unit,
		       const char *notes)
{
	char val[64];

	fmt_value(val, sizeof(val), value);
	printf("%s\t%s\t%s\t%s\t%s; BENCH_PIN=%s\n", metric, system, val, unit, notes, pin_mode());
	fflush(stdout);
	g_string_append_printf(summary, "  %-26s %-12s %12s %s\n", metric, system, val, unit);
}

enum bench_kind {
	BENCH_TIME_PER_OP, /* value = scale * seconds / n */
	BENCH_RATE,        /* value = scale * n / seconds */
};

/* Performs n operations and returns the elapsed seconds. */
typedef double (*bench_rep_fn)(void *ctx, long n);

typedef struct {
	const char *metric, *system, *unit, *notes;
	enum bench_kind kind;
	double scale;
	bench_rep_fn rep;
	void *ctx;
	long max_n;
} Bench;

static double rep_value(const Bench *b, double secs, long n)
{
	if (secs <= 0)
		secs = 1e-9;
	return b->kind == BENCH_TIME_PER_OP ? b->scale * secs / (double)n
					    : b->scale * (double)n / secs;
}

static void bench_run(const Bench *b)
{
	double vals[MAX_REPS], t0 = now_s(), t, med;
	char what[160], lo[32], hi[32], notes[768];
	long n = 1, max_n = b->max_n > 0 ? b->max_n : 10000000;
	int r;

	snprintf(what, sizeof(what), "%s/%s", b->metric, b->system);
	if (opt_check) {
		/* Tiny batches; what is measured is that every reply was right. */
		static const long counts[] = {1, 2, 17};

		watchdog(120, what);
		for (size_t i = 0; i < G_N_ELEMENTS(counts); i++)
			b->rep(b->ctx, counts[i] < max_n ? counts[i] : max_n);
		watchdog(0, "");
		fprintf(stderr, "meshbench: check %-40s ok\n", what);
		n_checked++;
		return;
	}
	fprintf(stderr, "meshbench: %s ...\n", what);
	watchdog((unsigned)(opt_max_s * 4) + 20, what);

	/* Calibration doubles as warm-up: grow n until a batch takes 20 ms. */
	t = b->rep(b->ctx, n);
	while (t < 0.02 && n < max_n) {
		double f = t > 0 ? 0.03 / t : 100;

		f = f < 2 ? 2 : f > 100 ? 100 : f;
		n = (long)((double)n * f);
		n = n > max_n ? max_n : n;
		t = b->rep(b->ctx, n);
	}
	n = (long)((double)n * opt_rep_s / (t > 0 ? t : 1e-9));
	n = n < 1 ? 1 : n > max_n ? max_n : n;

	for (r = 0; r < opt_reps; r++) {
		if (r >= 3 && now_s() - t0 > opt_max_s)
			break;
		vals[r] = rep_value(b, b->rep(b->ctx, n), n);
	}
	med = median(vals, (size_t)r);
	fmt_value(lo, sizeof(lo), vals[0]);
	fmt_value(hi, sizeof(hi), vals[r - 1]);
	snprintf(notes, sizeof(notes), "median of %d reps x %ld (range %s-%s); %s", r, n, lo, hi,
		 b->notes);
	bench_emit(b->metric, b->system, med, b->unit, notes);
	watchdog(0, "");
}

/* ------------------------------------------------ the peer process */

/*
 * Child modes:
 *   echo      send every message back as it came (bytes and fds)
 *   stream    a header {n, 0}, then n messages of the size in argv, each
 *             checked; answers {n, number of bad messages}
 *   portmove  every message carries a port: make a sender of it, send the
 *             message's bytes back on it once, drop it
 * Each ends when the parent drops its sender.
 */

static MeshNode *the_node;      /* the parent's */
static MeshUnixNode *the_unode; /* its transport */

/*
 * Fault injection, to test that --check notices: MESHBENCH_FAULT=byte makes
 * the child corrupt one payload byte of the third message it handles (the
 * middle byte of an echo or a port-move reply, or of the stream message it
 * checks); MESHBENCH_FAULT=fd makes it drop the fd of the third echo.
 */
static const char *child_fault;
static unsigned child_handled;

static gboolean fault_now(const char *kind)
{
	return child_fault && strcmp(child_fault, kind) == 0 && child_handled == 3;
}

/* Returns @msg, or (under MESHBENCH_FAULT) a corrupted replacement of it. */
static MeshMessage *child_maybe_corrupt(MeshMessage *msg)
{
	child_handled++;
	if (fault_now("byte")) {
		size_t size;
		const uint8_t *data = mesh_message_get_data(msg, &size);
		uint8_t *copy = g_memdup2(data, size);
		copy[size / 2] ^= 0x40;
		MeshMessage *bad = mesh_message_new(copy, size);
		g_free(copy);
		for (guint i = 0; i < mesh_message_get_n_resources(msg); i++) {
			int fd = mesh_message_steal_fd(msg, i);
			CHECK(fd >= 0 && mesh_message_add_fd_take(bad, fd) >= 0);
		}
		mesh_message_free(msg);
		return bad;
	}
	if (fault_now("fd") && mesh_message_get_n_resources(msg) == 1) {
		size_t size;
		const uint8_t *data = mesh_message_get_data(msg, &size);
		MeshMessage *bad = mesh_message_new(data, size);
		mesh_message_free(msg);
		return bad;
	}
	return msg;
}

typedef struct {
	PalChild *process;
	MeshSender *tx;   /* to the child (the invitation's port) */
	MeshReceiver *rx; /* from the child */
	const char *mode;
	MeshP2pLink *link; /* p2p: the parent's end of the link */
} Peer;

/*
 * The transport the next measurements use: the Unix node (system "mesh"),
 * or a point-to-point link over a socketpair or TCP loopback (systems
 * "mesh-p2p-socketpair", "mesh-p2p-tcp").
 */
typedef enum { VIA_UNIX, VIA_P2P_SOCKETPAIR, VIA_P2P_TCP } Via;
static Via via = VIA_UNIX;
static const char *via_system[] = {SYSTEM, "mesh-p2p-socketpair", "mesh-p2p-tcp"};

static int child_echo(MeshReceiver *rx, MeshSender *tx)
{
	MeshMessage *msg;

	while ((msg = recv_or_die(rx, "child echo", TRUE)))
		mesh_sender_send_message(tx, child_fault ? child_maybe_corrupt(msg) : msg);
	return 0;
}

static int child_stream(MeshReceiver *rx, MeshSender *tx, size_t size)
{
	MeshMessage *msg;
	int status = 0;

	while ((msg = recv_or_die(rx, "child stream header", TRUE))) {
		uint64_t n, zero, bad = 0;

		if (!message_get_u64(msg, &n, &zero) || zero != 0)
			die("child stream: bad header");
		mesh_message_free(msg);
		for (uint64_t i = 0; i < n; i++) {
			size_t got;
			const uint8_t *data;
			const char *why;

			msg = recv_or_die(rx, "child stream", FALSE);
			if (child_fault)
				msg = child_maybe_corrupt(msg);
			data = mesh_message_get_data(msg, &got);
			why = payload_verify(data, got, size, i);
			if (why || mesh_message_get_n_resources(msg) != 0) {
				if (bad == 0)
					fprintf(stderr, "meshbench child: message %llu of %llu: %s\n",
						(unsigned long long)i, (unsigned long long)n,
						why ? why : "unexpected resources");
				bad++;
				status = 2;
			}
			mesh_message_free(msg);
		}
		mesh_sender_send_message(tx, message_new_u64(n, bad));
	}
	return status;
}

/*
 * pipe: the first message is the reading end of a pipe; then, per header
 * {n, 0} on @rx, n payloads of @size bytes read from the pipe and checked;
 * answers {n, bad}.
 */
static int child_pipe(MeshReceiver *rx, MeshSender *tx, size_t size)
{
	GError *error = NULL;
	MeshReadPipe *pipe = mesh_read_pipe_from_message(recv_or_die(rx, "child pipe", FALSE),
							 &error);
	uint8_t *buf = g_malloc(size ? size : 1);
	MeshMessage *msg;
	int status = 0;

	if (!pipe)
		die("child pipe: %s", error->message);
	while ((msg = recv_or_die(rx, "child pipe header", TRUE))) {
		uint64_t n, zero, bad = 0;

		if (!message_get_u64(msg, &n, &zero) || zero != 0)
			die("child pipe: bad header");
		mesh_message_free(msg);
		for (uint64_t i = 0; i < n; i++) {
			for (size_t got = 0; got < size;) {
				gssize k = mesh_read_pipe_read(pipe, buf + got, size - got, -1, &error);
				if (k <= 0)
					die("child pipe: read: %s", k == 0 ? "end of stream"
									  : error->message);
				got += (size_t)k;
			}
			child_handled++;
			if (fault_now("byte"))
				buf[size / 2] ^= 0x40;
			const char *why = payload_verify(buf, size, size, i);
			if (why) {
				if (bad == 0)
					fprintf(stderr, "meshbench child: pipe payload %llu of %llu: %s\n",
						(unsigned long long)i, (unsigned long long)n, why);
				bad++;
				status = 2;
			}
		}
		mesh_sender_send_message(tx, message_new_u64(n, bad));
	}
	mesh_read_pipe_free(pipe);
	g_free(buf);
	return status;
}

static int child_portmove(MeshReceiver *rx)
{
	MeshMessage *msg;

	while ((msg = recv_or_die(rx, "child portmove", TRUE))) {
		size_t size;
		const uint8_t *data = mesh_message_get_data(msg, &size);
		MeshPort *port;

		if (mesh_message_get_n_resources(msg) != 1 ||
		    !(port = mesh_message_steal_port(msg, 0)))
			die("child portmove: the message carries no port");
		MeshSender *reply = mesh_sender_from_port(port, NULL);
		MeshMessage *answer = mesh_message_new(data, size);
		mesh_sender_send_message(reply,
					 child_fault ? child_maybe_corrupt(answer) : answer);
		mesh_sender_free(reply);
		mesh_message_free(msg);
	}
	return 0;
}

/* Answers every Echo rpc with the same bytes and sequence number, until closed. */
static int child_rpc(MeshReceiver *rx)
{
	MeshRpc *rpc;
	GError *error = NULL;

	while (mesh_receiver_recv_rpc(rx, &meshbench__echo__descriptor, -1, &rpc, &error)) {
		Meshbench__Echo *in = (Meshbench__Echo *)mesh_rpc_get_input(rpc);
		Meshbench__Echo *out = malloc(sizeof(*out));
		CHECK(out != NULL);
		meshbench__echo__init(out);
		out->seq = in->seq;
		out->data.len = in->data.len;
		out->data.data = malloc(in->data.len ? in->data.len : 1);
		CHECK(out->data.data != NULL);
		if (in->data.len)
			memcpy(out->data.data, in->data.data, in->data.len);
		child_handled++;
		if (fault_now("byte") && out->data.len)
			out->data.data[out->data.len / 2] ^= 0x40;
		mesh_rpc_complete(rpc, &out->base);
	}
	if (!g_error_matches(error, MESH_ERROR, MESH_ERROR_CLOSED))
		die("child rpc: %s", error->message);
	g_error_free(error);
	return 0;
}

/*
 * Each message carries a cancel context (mesh_remote.CancelContext): say
 * "got", wait until it is cancelled, say "cancelled".
 */
static int child_cancel(MeshReceiver *rx, MeshSender *tx)
{
	MeshMessage *msg;
	GError *error = NULL;

	while ((msg = recv_or_die(rx, "child cancel", TRUE))) {
		ProtobufCMessage *f =
			mesh_message_into_typed(msg, &mesh_remote__cancel_context__descriptor, &error);
		if (!f)
			die("child cancel: %s", error->message);
		MeshCancelContext *ctx =
			mesh_cancel_context_from_field((MeshRemote__CancelContext *)f, &error);
		mesh_payload_message_free(f);
		if (!ctx)
			die("child cancel: %s", error->message);
		mesh_sender_send_message(tx, mesh_message_new("got", 3));
		MeshCancelReason reason;
		if (!mesh_cancel_context_wait(ctx, -1, &reason, &error))
			die("child cancel: %s", error->message);
		if (reason != MESH_CANCEL_REASON_CANCELLED)
			die("child cancel: %s", mesh_cancel_reason_to_string(reason));
		mesh_cancel_context_free(ctx);
		mesh_sender_send_message(tx, mesh_message_new("cancelled", 9));
	}
	return 0;
}

/* meshbench --child MODE SIZE CHECK NODE LEADER PORT LEADER_PORT */
/*
 * The child's side of a measurement, whatever the transport: the first
 * message on @rx (taken) carries the sender of the channel back; then
 * @mode runs. Returns its status.
 */
static int child_run(MeshReceiver *rx, const char *mode, size_t size)
{
	MeshMessage *setup = recv_or_die(rx, "child setup", FALSE);
	MeshPort *back;
	if (mesh_message_get_n_resources(setup) != 1 || !(back = mesh_message_steal_port(setup, 0)))
		die("child: the setup message carries no port");
	mesh_message_free(setup);
	MeshSender *tx = mesh_sender_from_port(back, NULL);
	mesh_sender_send_message(tx, mesh_message_new("ready", 5));

	int status;
	if (strcmp(mode, "echo") == 0)
		status = child_echo(rx, tx);
	else if (strcmp(mode, "stream") == 0)
		status = child_stream(rx, tx, size);
	else if (strcmp(mode, "portmove") == 0)
		status = child_portmove(rx);
	else if (strcmp(mode, "pipe") == 0)
		status = child_pipe(rx, tx, size);
	else if (strcmp(mode, "rpc") == 0)
		status = child_rpc(rx);
	else if (strcmp(mode, "cancel") == 0)
		status = child_cancel(rx, tx);
	else
		die("child: unknown mode %s", mode);
	mesh_sender_free(tx);
	mesh_receiver_free(rx);
	return status;
}

/* The child of a p2p measurement: the link's stream is fd 3. */
static int child_main_p2p(int argc, char **argv)
{
	GError *error = NULL;

	if (argc != 5)
		die("usage: meshbench --child-p2p MODE SIZE CHECK");
	const char *mode = argv[2];
	size_t size = strtoull(argv[3], NULL, 10);
	opt_check = strcmp(argv[4], "1") == 0;
	bench_pin(1);

	MeshSender *first;
	MeshReceiver *rx;
	mesh_channel_new(NULL, &first, &rx);
	MeshP2pLink *link = mesh_p2p_link_new_take(NULL, 3, 3, mesh_sender_into_port(first), NULL,
						   &error);
	if (!link)
		die("child: p2p link: %s", error->message);
	int status = child_run(rx, mode, size);
	if (!mesh_p2p_link_shutdown(link, SHUTDOWN_TIMEOUT_US))
		fprintf(stderr, "meshbench child: p2p shutdown was not clean\n");
	mesh_p2p_link_free(link);
	return status;
}

/* The sandbox the parent spawned us in, if any: finalized before the join. */
static void child_enter_sandbox(void)
{
	PalSandbox *sb = NULL;
	int r = pal_sandbox_new_from_env(&sb);
	if (r == 0 && sb)
		r = pal_sandbox_finalize(sb);
	if (r < 0)
		die("child: sandbox: %s: %s", sb ? pal_sandbox_get_failed_step(sb) ?: "?" : "env",
		    g_strerror(-r));
	pal_sandbox_unref(sb);
}

static int child_main(int argc, char **argv)
{
	MeshNodeId me, leader;
	MeshPortId my_port, leader_port;
	MeshPort *port = NULL;
	GError *error = NULL;

	stamps_ns[0] = stamp_now_ns();
	stamps_open();
	if (argc != 9 || !id_from_hex(argv[5], &me) || !id_from_hex(argv[6], &leader) ||
	    !id_from_hex(argv[7], &my_port) || !id_from_hex(argv[8], &leader_port))
		die("usage: meshbench --child MODE SIZE CHECK NODE LEADER PORT LEADER_PORT");
	const char *mode = argv[2];
	size_t size = strtoull(argv[3], NULL, 10);
	opt_check = strcmp(argv[4], "1") == 0;
	child_fault = getenv("MESHBENCH_FAULT");
	if (child_fault && !*child_fault)
		child_fault = NULL;
	bench_pin(1);
	child_enter_sandbox();

	MeshInvitation *inv = mesh_invitation_new_take(&me, &my_port, &leader, &leader_port, 3);
	/* The leader's extensions: without them the child speaks upstream's wire. */
	const char *ext = getenv("MESHBENCH_EXTENSIONS");
	if (ext)
		mesh_invitation_set_extensions(inv, (guint)strtoul(ext, NULL, 10));
	stamps_ns[1] = stamp_now_ns();
	MeshUnixNode *unode = mesh_unix_node_join(inv, NULL, CHILD_JOIN_TIMEOUT_US, &port, &error);
	if (!unode)
		die("child: join failed: %s", error->message);
	stamps_ns[2] = stamp_now_ns();
	if (strcmp(mode, "echo") == 0 && size == 64)
		stamps_write('C');
	MeshNode *node = mesh_node_ref(mesh_unix_node_get_node(unode));
	int status = child_run(mesh_receiver_from_port(port, NULL), mode, size);
	if (!mesh_unix_node_shutdown(unode, SHUTDOWN_TIMEOUT_US))
		fprintf(stderr, "meshbench child: shutdown was not clean\n");
	mesh_unix_node_free(unode);
	mesh_node_unref(node);
	return status;
}

/*
 * The profile the children are spawned in (spawn_to_ready_sandboxed_ms),
 * or NULL; a child finalizes it (child_enter_sandbox()) before it joins,
 * as mesh_try_run_host() does.
 */
static PalSandbox *spawn_sandbox;

/* Starts /proc/self/exe with @args and @fd as its fd 3. */
/* @extensions: the invitation's (mesh_invitation_get_extensions()), carried in the environment. */
static void peer_spawn(Peer *p, const char **args, int fd, guint extensions)
{
	char ext[16];
	PalSpawn *spawn = pal_spawn_new("/proc/self/exe");
	CHECK(spawn != NULL);
	CHECK(pal_spawn_set_arg0(spawn, "meshbench") == 0);
	CHECK(pal_spawn_add_args(spawn, args) == 0);
	CHECK(pal_spawn_dup_fd(spawn, fd, 3) == 0);
	g_snprintf(ext, sizeof(ext), "%u", extensions);
	CHECK(pal_spawn_env_set(spawn, "MESHBENCH_EXTENSIONS", ext) == 0);
	CHECK(pal_spawn_set_stdin(spawn, PAL_STDIO_NULL, -1) == 0);
	CHECK(pal_spawn_set_stdout(spawn, PAL_STDIO_NULL, -1) == 0);
	CHECK(pal_spawn_set_parent_death_signal(spawn, SIGKILL) == 0);
	if (spawn_sandbox && pal_sandbox_apply(spawn_sandbox, spawn) < 0)
		die("sandbox: %s", pal_sandbox_get_failed_step(spawn_sandbox) ?: "?");
	int r = pal_spawn_run(spawn, &p->process);
	if (r < 0)
		die("spawn (%s): %s", pal_spawn_get_failed_step(spawn) ?: "?", g_strerror(-r));
	pal_spawn_free(spawn);
}

/* Moves the sender of the channel back to the child (p->tx is set); waits for "ready". */
static void peer_handshake(Peer *p)
{
	MeshSender *back;
	mesh_channel_new(NULL, &back, &p->rx);
	MeshMessage *setup = mesh_message_new("setup", 5);
	CHECK(mesh_message_add_port_take(setup, mesh_sender_into_port(back)) >= 0);
	mesh_sender_send_message(p->tx, setup);

	MeshMessage *ready = recv_or_die(p->rx, "waiting for the child", FALSE);
	size_t got;
	const uint8_t *data = mesh_message_get_data(ready, &got);
	if (got != 5 || memcmp(data, "ready", 5) != 0)
		die("the child's first message is not \"ready\"");
	mesh_message_free(ready);
}

/* A connected TCP loopback pair (127.0.0.1, an ephemeral port). */
static void tcp_pair(int *a, int *b)
{
	struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(addr);
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	CHECK(lfd >= 0);
	CHECK(bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) == 0);
	CHECK(listen(lfd, 1) == 0);
	CHECK(getsockname(lfd, (struct sockaddr *)&addr, &len) == 0);
	*a = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK(*a >= 0 && connect(*a, (struct sockaddr *)&addr, sizeof(addr)) == 0);
	*b = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	CHECK(*b >= 0);
	close(lfd);
}

/* The child over a p2p link (own-thread links, own nodes, both sides). */
static void peer_start_p2p(Peer *p, const char *mode, size_t size)
{
	GError *error = NULL;
	char size_s[32];
	int ours, theirs;

	memset(p, 0, sizeof(*p));
	p->mode = mode;
	if (via == VIA_P2P_TCP) {
		tcp_pair(&ours, &theirs);
	} else {
		int sv[2];
		CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
		ours = sv[0];
		theirs = sv[1];
	}
	snprintf(size_s, sizeof(size_s), "%zu", size);
	const char *args[] = {"--child-p2p", mode, size_s, opt_check ? "1" : "0", NULL};
	peer_spawn(p, args, theirs, 0); /* a p2p link: no invitation */
	close(theirs);

	MeshReceiver *first;
	mesh_channel_new(NULL, &p->tx, &first);
	p->link = mesh_p2p_link_new_take(NULL, ours, ours, mesh_receiver_into_port(first), NULL,
					 &error);
	if (!p->link)
		die("p2p link: %s", error->message);
	peer_handshake(p);
}

/* Invites a child into the parent's mesh and waits until it is ready. */
static void peer_start(Peer *p, const char *mode, size_t size)
{
	if (via != VIA_UNIX) {
		peer_start_p2p(p, mode, size);
		return;
	}
	MeshPort *mine, *theirs;
	MeshInvitation *inv = NULL;
	MeshNodeId ln, rn;
	MeshPortId lp, rp;
	GError *error = NULL;
	char ids[4][33], size_s[32];

	memset(p, 0, sizeof(*p));
	p->mode = mode;
	stamps_ns[0] = stamp_now_ns();
	mesh_port_new_pair(&mine, &theirs);
	if (!mesh_unix_node_invite(the_unode, theirs, -1, &inv, &error))
		die("invite: %s", error->message);
	mesh_invitation_get_address(inv, &ln, &lp, &rn, &rp);
	id_to_hex(&ln, ids[0]);
	id_to_hex(&rn, ids[1]);
	id_to_hex(&lp, ids[2]);
	id_to_hex(&rp, ids[3]);
	snprintf(size_s, sizeof(size_s), "%zu", size);

	const char *args[] = {"--child", mode,   size_s, opt_check ? "1" : "0",
			      ids[0],    ids[1], ids[2], ids[3],
			      NULL};
	peer_spawn(p, args, mesh_invitation_get_fd(inv), mesh_invitation_get_extensions(inv));
	mesh_invitation_free(inv); /* the child has its copy of the socket */
	stamps_ns[1] = stamp_now_ns();

	p->tx = mesh_sender_from_port(mine, NULL);
	peer_handshake(p);
	stamps_ns[2] = stamp_now_ns();
}

/*
 * Every port of a finished measurement is closed, so the node's port table
 * must empty (closes travel asynchronously: wait a little). A leak fails
 * --check and is reported otherwise.
 */
static void expect_no_ports(const char *what)
{
	guint n = 0;

	for (int i = 0; i < 500 && (n = mesh_node_count_ports(the_node)) != 0; i++) {
		/* A transport on this thread's context (rpc_async_rtt_on_context) needs it run. */
		GMainContext *ctx = g_main_context_get_thread_default();
		while (ctx && g_main_context_iteration(ctx, FALSE))
			;
		g_usleep(10000);
	}
	if (n == 0)
		return;
	if (opt_check)
		die("%s: %u ports left in the parent's node after the child exited", what, n);
	fprintf(stderr, "meshbench: warning: %s: %u ports left in the parent's node\n", what, n);
}

static gboolean child_exited(gint fd, GIOCondition condition, gpointer data)
{
	return G_SOURCE_CONTINUE; /* wakes the iteration; the caller reaps */
}

/* Drops the parent's sender; the child answers by closing its own, exits 0. */
static void peer_stop(Peer *p)
{
	int status;

	mesh_sender_free(p->tx);
	MeshMessage *extra = recv_or_die(p->rx, "waiting for the child to close", TRUE);
	if (extra)
		die("%s child: a message after the end", p->mode);
	mesh_receiver_free(p->rx);
	GMainContext *ctx = g_main_context_get_thread_default();
	if (ctx) {
		/* The transport runs here: the child's shutdown waits for this side's. */
		GSource *exited = g_unix_fd_source_new(pal_child_get_pidfd(p->process), G_IO_IN);
		g_source_set_callback(exited, G_SOURCE_FUNC(child_exited), NULL, NULL);
		g_source_attach(exited, ctx);
		while (pal_child_try_wait(p->process, &status) != 0)
			g_main_context_iteration(ctx, TRUE);
		g_source_destroy(exited);
		g_source_unref(exited);
	} else {
		CHECK(pal_child_wait(p->process, &status) == 0);
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		die("%s child failed (status 0x%x)", p->mode, status);
	pal_child_free(p->process);
	if (p->link) {
		mesh_p2p_link_shutdown(p->link, SHUTDOWN_TIMEOUT_US);
		mesh_p2p_link_free(p->link);
	}
	expect_no_ports(p->mode);
}

/* ------------------------------------------------ round trips */

typedef struct {
	Peer peer;
	size_t size;
	uint8_t *buf;
	int fd;           /* rtt_fd_pass: the memfd sent every time */
	struct stat fd_st; /* ... and its identity */
	gboolean from_bytes; /* streams: mesh_message_new_from_bytes(), a new buffer each */
	gboolean borrow;     /* rtt_fd_pass: mesh_message_add_fd_borrowed(), no dup */
} RttCtx;

static double rtt_rep(void *p, long n)
{
	RttCtx *x = p;
	double t0 = now_s();

	for (uint64_t i = 0; i < (uint64_t)n; i++) {
		payload_fill(x->buf, x->size, i);
		mesh_sender_send_message(x->peer.tx, mesh_message_new(x->buf, x->size));
		MeshMessage *reply = recv_or_die(x->peer.rx, "rtt", FALSE);
		size_t got;
		const uint8_t *data = mesh_message_get_data(reply, &got);
		const char *why = payload_verify(data, got, x->size, i);
		if (why)
			die("rtt: reply %llu: %s", (unsigned long long)i, why);
		if (mesh_message_get_n_resources(reply) != 0)
			die("rtt: reply %llu carries resources", (unsigned long long)i);
		mesh_message_free(reply);
	}
	return now_s() - t0;
}

static void bench_rtt(const char *metric, size_t size)
{
	RttCtx x = {.size = size, .fd = -1};
	char notes[512];

	if (!bench_wanted(metric, via_system[via]))
		return;
	x.buf = g_malloc0(size);
	peer_start(&x.peer, "echo", size);
	if (via != VIA_UNIX)
		snprintf(notes, sizeof(notes),
			 "untyped mpsc channel each way over a MeshP2pLink (%s; own-thread links "
			 "both sides); as system mesh otherwise",
			 via == VIA_P2P_TCP ? "TCP loopback, TCP_NODELAY" : "AF_UNIX stream socketpair");
	else
	snprintf(notes, sizeof(notes),
		 "untyped mpsc channel each way (parent->child: the invitation's port; "
		 "child->parent: a sender moved to the child), mesh_message_new per request, "
		 "child re-sends the received message; blocking recv; own-thread MeshUnixNode "
		 "both sides%s",
		 size > MESH_UNIX_MAX_PACKET_SIZE - 8
			 ? "; events over 16376 B go out of line (in a reused pool buffer between "
			   "C nodes; a new sealed memfd per event with MESH_UNIX_POOL=0)"
			 : "");
	bench_run(&(Bench){.metric = metric,
			   .system = via_system[via],
			   .unit = "us",
			   .kind = BENCH_TIME_PER_OP,
			   .scale = 1e6,
			   .rep = rtt_rep,
			   .ctx = &x,
			   .max_n = 1000000,
			   .notes = notes});
	peer_stop(&x.peer);
	g_free(x.buf);
}

static double fdpass_rep(void *p, long n)
{
	RttCtx *x = p;
	double t0 = now_s();

	for (uint64_t i = 0; i < (uint64_t)n; i++) {
		payload_fill(x->buf, x->size, i);
		MeshMessage *msg = mesh_message_new(x->buf, x->size);
		CHECK((x->borrow ? mesh_message_add_fd_borrowed(msg, x->fd)
				 : mesh_message_add_fd(msg, x->fd)) == 0);
		mesh_sender_send_message(x->peer.tx, msg);
		MeshMessage *reply = recv_or_die(x->peer.rx, "rtt_fd_pass", FALSE);
		size_t got;
		const uint8_t *data = mesh_message_get_data(reply, &got);
		const char *why = payload_verify(data, got, x->size, i);
		if (why)
			die("rtt_fd_pass: reply %llu: %s", (unsigned long long)i, why);
		if (mesh_message_get_n_resources(reply) != 1)
			die("rtt_fd_pass: reply %llu carries %u resources, not one fd",
			    (unsigned long long)i, mesh_message_get_n_resources(reply));
		int fd = mesh_message_steal_fd(reply, 0);
		struct stat st;
		if (fd < 0)
			die("rtt_fd_pass: reply %llu: no fd (%d)", (unsigned long long)i, fd);
		/*
		 * The raw reference checks no fd's identity: the inode only on
		 * the first and last round trip of a repetition (and --check).
		 */
		if (i == 0 || i + 1 == (uint64_t)n || opt_check) {
			CHECK(fstat(fd, &st) == 0);
			if (st.st_ino != x->fd_st.st_ino || st.st_dev != x->fd_st.st_dev)
				die("rtt_fd_pass: reply %llu: the fd is not the memfd sent",
				    (unsigned long long)i);
		}
		if (fd == x->fd)
			die("rtt_fd_pass: the received fd is the sender's own");
		close(fd);
		mesh_message_free(reply);
	}
	return now_s() - t0;
}

static void bench_fdpass(gboolean borrow)
{
	RttCtx x = {.size = 64, .borrow = borrow};
	const char *system = borrow ? "mesh-borrow" : SYSTEM;

	if (!bench_wanted("rtt_fd_pass", system))
		return;
	x.buf = g_malloc0(x.size);
	x.fd = memfd_create("meshbench", MFD_CLOEXEC);
	CHECK(x.fd >= 0);
	CHECK(fstat(x.fd, &x.fd_st) == 0);
	peer_start(&x.peer, "echo", x.size);
	bench_run(&(Bench){.metric = "rtt_fd_pass",
			   .system = system,
			   .unit = "us",
			   .kind = BENCH_TIME_PER_OP,
			   .scale = 1e6,
			   .rep = fdpass_rep,
			   .ctx = &x,
			   .max_n = 1000000,
			   .notes = borrow
					     ? "as rtt_fd_pass/mesh, but the parent lends its memfd "
					       "(mesh_message_add_fd_borrowed: no system call, no dup "
					       "and no close of a duplicate)"
					     : "64B + 1 fd each way: parent adds its memfd "
					       "(mesh_message_add_fd, a dup), child re-sends the message "
					       "with the fd it got, parent closes it (checks its inode on "
					       "a repetition's first and last round trip); untyped "
					       "channels"});
	peer_stop(&x.peer);
	close(x.fd);
	g_free(x.buf);
}

/* ------------------------------------------------ streams */

static double stream_rep(void *p, long n)
{
	RttCtx *x = p;
	uint64_t got_n, bad;
	double t0 = now_s();

	mesh_sender_send_message(x->peer.tx, message_new_u64((uint64_t)n, 0));
	for (uint64_t i = 0; i < (uint64_t)n; i++) {
		if (x->from_bytes) {
			/* Written where it is sent from: the message takes the buffer. */
			uint8_t *b = g_malloc(x->size);
			payload_fill(b, x->size, i);
			GBytes *bytes = g_bytes_new_take(b, x->size);
			mesh_sender_send_message(x->peer.tx, mesh_message_new_from_bytes(bytes));
			g_bytes_unref(bytes);
			continue;
		}
		payload_fill(x->buf, x->size, i);
		mesh_sender_send_message(x->peer.tx, mesh_message_new(x->buf, x->size));
	}
	MeshMessage *ack = recv_or_die(x->peer.rx, "stream acknowledgement", FALSE);
	double t = now_s() - t0;
	if (!message_get_u64(ack, &got_n, &bad) || got_n != (uint64_t)n)
		die("stream: bad end acknowledgement");
	if (bad)
		die("stream: the child got %llu bad messages of %ld", (unsigned long long)bad, n);
	mesh_message_free(ack);
	return t;
}

static void bench_stream(const char *metric, size_t size, gboolean from_bytes)
{
	RttCtx x = {.size = size, .fd = -1, .from_bytes = from_bytes};
	gboolean bulk = size >= MIB;
	const char *system = from_bytes ? "mesh-bytes" : via_system[via];

	if (!bench_wanted(metric, system))
		return;
	x.buf = g_malloc0(size);
	peer_start(&x.peer, "stream", size);
	bench_run(&(Bench){
		.metric = metric,
		.system = system,
		.unit = bulk ? "GB/s" : "msgs/s",
		.kind = BENCH_RATE,
		.scale = bulk ? (double)size / 1e9 : 1.0,
		.rep = stream_rep,
		.ctx = &x,
		/* The sender never blocks: a batch is queued whole (memfds for
		 * 1 MiB), so bound it. */
		.max_n = bulk ? 1024 : 10000000,
		.notes = from_bytes ? "one mesh_sender_send_message (mesh_message_new_from_bytes: "
				      "the sender fills a new g_malloc buffer, the message takes it, "
				      "no copy) per message; each event out of line as for mesh; "
				      "child checks each message in its buffer; end ack"
			 : via != VIA_UNIX ? "one mesh_sender_send_message (mesh_message_new copy) per "
					   "message over a MeshP2pLink (framed in the stream, copied "
					   "into the link's queue when the socket is full); child "
					   "checks each message; end ack"
			 : bulk ? "one mesh_sender_send_message (mesh_message_new copy) per message; "
				"each event out of line (a reused pool buffer between C nodes, or a "
				"sealed memfd when none is free); child checks each message in its "
				"buffer; end ack"
			      : "one mesh_sender_send_message (mesh_message_new) per message (batched "
				"between C nodes after 16 in a row), child receives and checks each; "
				"end ack"});
	peer_stop(&x.peer);
	g_free(x.buf);
}


/* ------------------------------------------------ pipes */

typedef struct {
	Peer peer;
	size_t size;
	uint8_t *buf;
	MeshWritePipe *pipe;
} PipeCtx;

static double pipe_rep(void *p, long n)
{
	PipeCtx *x = p;
	GError *error = NULL;
	uint64_t got_n, bad;
	double t0 = now_s();

	mesh_sender_send_message(x->peer.tx, message_new_u64((uint64_t)n, 0));
	for (uint64_t i = 0; i < (uint64_t)n; i++) {
		payload_fill(x->buf, x->size, i);
		if (!mesh_write_pipe_write_all(x->pipe, x->buf, x->size, -1, &error))
			die("pipe: write: %s", error->message);
	}
	MeshMessage *ack = recv_or_die(x->peer.rx, "pipe acknowledgement", FALSE);
	double t = now_s() - t0;
	if (!message_get_u64(ack, &got_n, &bad) || got_n != (uint64_t)n)
		die("pipe: bad end acknowledgement");
	if (bad)
		die("pipe: the child got %llu bad payloads of %ld", (unsigned long long)bad, n);
	mesh_message_free(ack);
	return t;
}

/* A MeshWritePipe into the child: upstream's credit window (64 KiB, 64 writes). */
static void bench_pipe_stream(void)
{
	PipeCtx x = {.size = MIB};
	MeshReadPipe *r;

	if (!bench_wanted("pipe_stream_1MiB_GB_per_s", SYSTEM))
		return;
	x.buf = g_malloc0(x.size);
	peer_start(&x.peer, "pipe", x.size);
	mesh_pipe_new(&r, &x.pipe);
	mesh_sender_send_message(x.peer.tx, mesh_read_pipe_into_message(r));
	bench_run(&(Bench){
		.metric = "pipe_stream_1MiB_GB_per_s",
		.system = SYSTEM,
		.unit = "GB/s",
		.kind = BENCH_RATE,
		.scale = (double)MIB / 1e9,
		.rep = pipe_rep,
		.ctx = &x,
		.max_n = 4096,
		.notes = "1 MiB payloads through a MeshWritePipe (mesh_write_pipe_write_all: "
			 "64 KiB writes, at most 64 KiB ahead of the reader, credit back every "
			 "32 KiB) to a MeshReadPipe in the child, which reads each payload whole "
			 "and checks it; end ack on a channel"});
	mesh_write_pipe_free(x.pipe);
	peer_stop(&x.peer);
	g_free(x.buf);
}

/* ------------------------------------------------ raw TCP loopback */

/* Reads exactly @size bytes; FALSE at end of stream before any. */
static gboolean read_full(int fd, void *buf, size_t size)
{
	size_t off = 0;
	while (off < size) {
		ssize_t r = read(fd, (uint8_t *)buf + off, size - off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r == 0 && off == 0)
			return FALSE;
		if (r <= 0)
			die("raw tcp: read: %s", r == 0 ? "end of stream" : g_strerror(errno));
		off += (size_t)r;
	}
	return TRUE;
}

static void write_full(int fd, const void *buf, size_t size)
{
	size_t off = 0;
	while (off < size) {
		ssize_t w = write(fd, (const uint8_t *)buf + off, size - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			die("raw tcp: write: %s", g_strerror(errno));
		off += (size_t)w;
	}
}

typedef struct {
	int fd;
	size_t size;
	uint8_t *buf;
} RawCtx;

/*
 * A raw TCP worker (fork, no exec: the buffer is allocated before, the child
 * only reads and writes): echo mode sends every @size-byte message back;
 * stream mode reads a u64 count, then that many messages, and acks the count.
 */
static pid_t raw_worker(int fd, int other, uint8_t *buf, size_t size, gboolean echo)
{
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid != 0)
		return pid;
	close(other);
	if (echo) {
		while (read_full(fd, buf, size))
			write_full(fd, buf, size);
	} else {
		uint64_t n;
		while (read_full(fd, &n, sizeof(n))) {
			for (uint64_t i = 0; i < n; i++) {
				read_full(fd, buf, size);
				if (opt_check && payload_verify(buf, size, size, i))
					_exit(2);
			}
			write_full(fd, &n, sizeof(n));
		}
	}
	_exit(0);
}

static void raw_reap(pid_t pid, const char *what)
{
	int status;
	CHECK(waitpid(pid, &status, 0) == pid);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		die("%s worker failed (status 0x%x)", what, status);
}

static double raw_rtt_rep(void *p, long n)
{
	RawCtx *x = p;
	double t0 = now_s();

	for (uint64_t i = 0; i < (uint64_t)n; i++) {
		payload_fill(x->buf, x->size, i);
		write_full(x->fd, x->buf, x->size);
		if (!read_full(x->fd, x->buf, x->size))
			die("raw tcp rtt: the worker closed");
		const char *why = payload_verify(x->buf, x->size, x->size, i);
		if (why)
			die("raw tcp rtt: reply %llu: %s", (unsigned long long)i, why);
	}
	return now_s() - t0;
}

static void bench_raw_tcp_rtt(void)
{
	RawCtx x = {.size = 64};
	int a, b;

	if (!bench_wanted("rtt_64B", "raw-tcp-loopback"))
		return;
	tcp_pair(&a, &b);
	int one = 1;
	CHECK(setsockopt(a, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) == 0);
	CHECK(setsockopt(b, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) == 0);
	x.buf = g_malloc0(x.size);
	pid_t pid = raw_worker(b, a, x.buf, x.size, TRUE);
	close(b);
	x.fd = a;
	bench_run(&(Bench){.metric = "rtt_64B",
			   .system = "raw-tcp-loopback",
			   .unit = "us",
			   .kind = BENCH_TIME_PER_OP,
			   .scale = 1e6,
			   .rep = raw_rtt_rep,
			   .ctx = &x,
			   .max_n = 1000000,
			   .notes = "TCP over 127.0.0.1, TCP_NODELAY, blocking write + read of 64 B "
				    "each way (fork, no exec)"});
	close(a);
	raw_reap(pid, "raw tcp rtt");
	g_free(x.buf);
}

static double raw_stream_rep(void *p, long n)
{
	RawCtx *x = p;
	uint64_t count = (uint64_t)n, ack = 0;
	double t0 = now_s();

	write_full(x->fd, &count, sizeof(count));
	for (uint64_t i = 0; i < count; i++) {
		payload_fill(x->buf, x->size, i);
		write_full(x->fd, x->buf, x->size);
	}
	if (!read_full(x->fd, &ack, sizeof(ack)) || ack != count)
		die("raw tcp stream: bad end acknowledgement");
	return now_s() - t0;
}

static void bench_raw_tcp_stream(void)
{
	RawCtx x = {.size = MIB};
	int a, b;

	if (!bench_wanted("stream_1MiB_GB_per_s", "raw-tcp-loopback"))
		return;
	tcp_pair(&a, &b);
	x.buf = g_malloc0(x.size);
	uint8_t *worker_buf = g_malloc0(x.size);
	pid_t pid = raw_worker(b, a, worker_buf, x.size, FALSE);
	close(b);
	x.fd = a;
	bench_run(&(Bench){.metric = "stream_1MiB_GB_per_s",
			   .system = "raw-tcp-loopback",
			   .unit = "GB/s",
			   .kind = BENCH_RATE,
			   .scale = (double)MIB / 1e9,
			   .rep = raw_stream_rep,
			   .ctx = &x,
			   .max_n = 4096,
			   .notes = "TCP over 127.0.0.1, one blocking write of 1 MiB per message, "
				    "receiver reads each into its buffer; end ack (fork, no exec)"});
	close(a);
	raw_reap(pid, "raw tcp stream");
	g_free(x.buf);
	g_free(worker_buf);
}

/* ------------------------------------------------ port moves */

static double portmove_rep(void *p, long n)
{
	RttCtx *x = p;
	double t0 = now_s();

	for (uint64_t i = 0; i < (uint64_t)n; i++) {
		MeshPort *a, *b;
		MeshReceiver *rx;

		mesh_port_new_pair(&a, &b);
		rx = mesh_receiver_from_port(a, NULL);
		payload_fill(x->buf, x->size, i);
		MeshMessage *msg = mesh_message_new(x->buf, x->size);
		CHECK(mesh_message_add_port_take(msg, b) == 0);
		mesh_sender_send_message(x->peer.tx, msg);
		MeshMessage *reply = recv_or_die(rx, "port move first reply", FALSE);
		size_t got;
		const uint8_t *data = mesh_message_get_data(reply, &got);
		const char *why = payload_verify(data, got, x->size, i);
		if (why)
			die("port move: reply %llu: %s", (unsigned long long)i, why);
		mesh_message_free(reply);
		mesh_receiver_free(rx);
	}
	return now_s() - t0;
}

static void bench_portmove(void)
{
	RttCtx x = {.size = 64, .fd = -1};

	if (!bench_wanted("port_move_first_reply_us", SYSTEM))
		return;
	x.buf = g_malloc0(x.size);
	peer_start(&x.peer, "portmove", x.size);
	bench_run(&(Bench){.metric = "port_move_first_reply_us",
			   .system = SYSTEM,
			   .unit = "us",
			   .kind = BENCH_TIME_PER_OP,
			   .scale = 1e6,
			   .rep = portmove_rep,
			   .ctx = &x,
			   .max_n = 1000000,
			   .notes = "per op: mesh_port_new_pair, receiver on one end, the other "
				    "sent in a 64B message to the child, which makes a sender of "
				    "it and sends the 64B back on it at once; time until that "
				    "reply; receiver freed (not waiting for the close)"});
	peer_stop(&x.peer);
	g_free(x.buf);
}

/* ------------------------------------------------ cancellation */

static void expect_reply(Peer *p, const char *want)
{
	MeshMessage *reply = recv_or_die(p->rx, "cancel", FALSE);
	size_t got;
	const uint8_t *data = mesh_message_get_data(reply, &got);
	if (got != strlen(want) || memcmp(data, want, got) != 0)
		die("cancel: expected \"%s\", got %zu bytes", want, got);
	mesh_message_free(reply);
}

/* Only the cancel -> observed -> reply part of each op is timed. */
static double cancel_rep(void *p, long n)
{
	RttCtx *x = p;
	MeshCancelContext *root = mesh_cancel_context_new();
	double total = 0;

	for (long i = 0; i < n; i++) {
		MeshCancel *cancel = NULL;
		MeshCancelContext *ctx = mesh_cancel_context_with_cancel(root, &cancel);
		MeshRemote__CancelContext *f = mesh_cancel_context_into_field(ctx);
		mesh_sender_send_message(x->peer.tx, mesh_message_new_typed_take(&f->base));
		expect_reply(&x->peer, "got");
		double t0 = now_s();
		mesh_cancel_cancel(cancel);
		expect_reply(&x->peer, "cancelled");
		total += now_s() - t0;
		mesh_cancel_free(cancel);
	}
	mesh_cancel_context_free(root);
	return total;
}

static void bench_cancel(void)
{
	RttCtx x = {.size = 0, .fd = -1};

	if (!bench_wanted("cancel_rtt", SYSTEM))
		return;
	peer_start(&x.peer, "cancel", 0);
	bench_run(&(Bench){.metric = "cancel_rtt",
			   .system = SYSTEM,
			   .unit = "us",
			   .kind = BENCH_TIME_PER_OP,
			   .scale = 1e6,
			   .rep = cancel_rep,
			   .ctx = &x,
			   .max_n = 1000000,
			   .notes = "per op (untimed): a MeshCancelContext with a MeshCancel sent "
				    "to the child, which says \"got\" and blocks in "
				    "mesh_cancel_context_wait(); timed: mesh_cancel_cancel() here "
				    "(closes the context's peer port) until the child's "
				    "\"cancelled\" message is received here"});
	peer_stop(&x.peer);
}

/* ------------------------------------------------ in process */

typedef struct {
	MeshSender *tx1, *tx2;
	MeshReceiver *rx1, *rx2;
	GAsyncQueue *q1, *q2;
	GThread *thread;
	uint8_t buf[64];
} InprocCtx;

static gpointer inproc_mesh_echo(gpointer data)
{
	InprocCtx *x = data;
	MeshMessage *msg;

	while ((msg = recv_or_die(x->rx1, "inproc echo", TRUE)))
		mesh_sender_send_message(x->tx2, msg);
	mesh_sender_free(x->tx2);
	return NULL;
}

static double inproc_mesh_rep(void *p, long n)
{
	InprocCtx *x = p;
	double t0 = now_s();

	for (uint64_t i = 0; i < (uint64_t)n; i++) {
		payload_fill(x->buf, sizeof(x->buf), i);
		mesh_sender_send_message(x->tx1, mesh_message_new(x->buf, sizeof(x->buf)));
		MeshMessage *reply = recv_or_die(x->rx2, "inproc rtt", FALSE);
		size_t got;
		const uint8_t *data = mesh_message_get_data(reply, &got);
		const char *why = payload_verify(data, got, sizeof(x->buf), i);
		if (why)
			die("inproc rtt: reply %llu: %s", (unsigned long long)i, why);
		mesh_message_free(reply);
	}
	return now_s() - t0;
}

static void bench_inproc_mesh(void)
{
	InprocCtx x = {0};

	if (!bench_wanted("inproc_rtt", SYSTEM))
		return;
	mesh_channel_new(NULL, &x.tx1, &x.rx1);
	mesh_channel_new(NULL, &x.tx2, &x.rx2);
	x.thread = g_thread_new("meshbench-echo", inproc_mesh_echo, &x);
	bench_run(&(Bench){.metric = "inproc_rtt",
			   .system = SYSTEM,
			   .unit = "us",
			   .kind = BENCH_TIME_PER_OP,
			   .scale = 1e6,
			   .rep = inproc_mesh_rep,
			   .ctx = &x,
			   .max_n = 10000000,
			   .notes = "two threads, two in-process untyped channels; a 64B "
				    "MeshMessage made per round trip, echoed as the same object; "
				    "blocking recv"});
	mesh_sender_free(x.tx1);
	if (recv_or_die(x.rx2, "inproc end", TRUE))
		die("inproc: a message after the end");
	g_thread_join(x.thread);
	mesh_receiver_free(x.rx1);
	mesh_receiver_free(x.rx2);
}

static gpointer inproc_queue_echo(gpointer data)
{
	InprocCtx *x = data;

	for (;;) {
		gpointer item = g_async_queue_timeout_pop(x->q1, RECV_TIMEOUT_US);
		if (!item)
			die("gasyncqueue echo: timed out");
		if (item == (gpointer)x) /* the end */
			break;
		g_async_queue_push(x->q2, item);
	}
	return NULL;
}

static double inproc_queue_rep(void *p, long n)
{
	InprocCtx *x = p;
	double t0 = now_s();

	for (uint64_t i = 0; i < (uint64_t)n; i++) {
		payload_fill(x->buf, sizeof(x->buf), i);
		g_async_queue_push(x->q1, g_memdup2(x->buf, sizeof(x->buf)));
		uint8_t *reply = g_async_queue_timeout_pop(x->q2, RECV_TIMEOUT_US);
		if (!reply)
			die("gasyncqueue rtt: timed out");
		const char *why = payload_verify(reply, sizeof(x->buf), sizeof(x->buf), i);
		if (why)
			die("gasyncqueue rtt: reply %llu: %s", (unsigned long long)i, why);
		g_free(reply);
	}
	return now_s() - t0;
}

static void bench_inproc_queue(void)
{
	InprocCtx x = {0};

	if (!bench_wanted("inproc_rtt", "gasyncqueue"))
		return;
	x.q1 = g_async_queue_new();
	x.q2 = g_async_queue_new();
	x.thread = g_thread_new("meshbench-echo", inproc_queue_echo, &x);
	bench_run(&(Bench){.metric = "inproc_rtt",
			   .system = "gasyncqueue",
			   .unit = "us",
			   .kind = BENCH_TIME_PER_OP,
			   .scale = 1e6,
			   .rep = inproc_queue_rep,
			   .ctx = &x,
			   .max_n = 10000000,
			   .notes = "two threads, two GAsyncQueues; a 64B g_malloc buffer made per "
				    "round trip, echoed as the same pointer; blocking pop"});
	g_async_queue_push(x.q1, &x);
	g_thread_join(x.thread);
	g_async_queue_unref(x.q1);
	g_async_queue_unref(x.q2);
}

/* ------------------------------------------------ rpc round trips */

/*
 * rpc_rtt: mesh_rpc_call() (blocking) of a typed Echo of 64 B, the child
 * answers with the same bytes. rpc_async_rtt: the same request with
 * mesh_rpc_call_async() from a GMainLoop on a context of this thread (the
 * transport keeps its own I/O thread), one call at a time: each callback
 * checks the reply and makes the next call.
 */
typedef struct {
	Peer peer;
	uint8_t buf[64];
	GMainContext *context;
	GMainLoop *loop;
	uint64_t next, end;
} RpcCtx;

static ProtobufCMessage *echo_new(RpcCtx *x, uint64_t seq)
{
	Meshbench__Echo *e = malloc(sizeof(*e));
	CHECK(e != NULL);
	meshbench__echo__init(e);
	payload_fill(x->buf, sizeof(x->buf), seq);
	e->seq = seq;
	e->data.len = sizeof(x->buf);
	e->data.data = malloc(sizeof(x->buf));
	CHECK(e->data.data != NULL);
	memcpy(e->data.data, x->buf, sizeof(x->buf));
	return &e->base;
}

static void echo_verify(ProtobufCMessage *reply, const GError *error, uint64_t seq)
{
	if (!reply)
		die("rpc: call %llu: %s", (unsigned long long)seq, error->message);
	Meshbench__Echo *e = (Meshbench__Echo *)reply;
	const char *why = payload_verify(e->data.data, e->data.len, 64, seq);
	if (why || e->seq != seq)
		die("rpc: reply %llu: %s", (unsigned long long)seq, why ? why : "wrong sequence");
	mesh_payload_message_free(reply);
}

static double rpc_rep(void *p, long n)
{
	RpcCtx *x = p;
	double t0 = now_s();

	for (uint64_t i = 0; i < (uint64_t)n; i++) {
		ProtobufCMessage *reply = NULL;
		GError *error = NULL;
		mesh_rpc_call(x->peer.tx, echo_new(x, i), &meshbench__echo__descriptor, 60 * G_USEC_PER_SEC,
			      &reply, &error);
		echo_verify(reply, error, i);
	}
	return now_s() - t0;
}

static void rpc_async_call(RpcCtx *x);

static void rpc_async_cb(ProtobufCMessage *reply, const GError *error, gpointer data)
{
	RpcCtx *x = data;

	echo_verify(reply, error, x->next);
	if (++x->next < x->end)
		rpc_async_call(x);
	else
		g_main_loop_quit(x->loop);
}

static void rpc_async_call(RpcCtx *x)
{
	mesh_rpc_call_unref(mesh_rpc_call_async(x->peer.tx, echo_new(x, x->next),
						&meshbench__echo__descriptor, 60 * G_USEC_PER_SEC,
						x->context, rpc_async_cb, x, NULL));
}

static double rpc_async_rep(void *p, long n)
{
	RpcCtx *x = p;
	double t0 = now_s();

	x->next = 0;
	x->end = (uint64_t)n;
	rpc_async_call(x);
	g_main_loop_run(x->loop);
	return now_s() - t0;
}

/*
 * @on_context: the parent's node and transport for this measurement run on
 * the loop's context (mesh_unix_node_new(node, context)), as a GLib
 * program's do: no thread between the socket and the callback.
 */
static void bench_rpc(const char *metric, gboolean async, gboolean on_context)
{
	RpcCtx x = {0};
	MeshNode *node = the_node;
	MeshUnixNode *unode = the_unode;

	if (!bench_wanted(metric, SYSTEM))
		return;
	x.context = g_main_context_new();
	x.loop = g_main_loop_new(x.context, FALSE);
	if (on_context) {
		g_main_context_push_thread_default(x.context);
		the_node = mesh_node_new();
		the_unode = mesh_unix_node_new(the_node, x.context);
	}
	peer_start(&x.peer, "rpc", 64);
	bench_run(&(Bench){.metric = metric,
			   .system = SYSTEM,
			   .unit = "us",
			   .kind = BENCH_TIME_PER_OP,
			   .scale = 1e6,
			   .rep = async ? rpc_async_rep : rpc_rep,
			   .ctx = &x,
			   .max_n = 1000000,
			   .notes = !async ? "mesh_rpc_call (blocking) of a typed 64 B Echo; the child "
					     "answers with mesh_rpc_complete; own-thread MeshUnixNode "
					     "both sides"
				    : on_context
					    ? "as rpc_async_rtt, the parent's MeshUnixNode on the "
					      "loop's context (no I/O thread in the parent)"
					    : "mesh_rpc_call_async of a typed 64 B Echo from a GMainLoop "
					      "on its own context, one call at a time (the callback makes "
					      "the next); the child answers with mesh_rpc_complete; "
					      "own-thread MeshUnixNode both sides"});
	peer_stop(&x.peer);
	if (on_context) {
		if (!mesh_unix_node_shutdown(the_unode, SHUTDOWN_TIMEOUT_US))
			fprintf(stderr, "meshbench: shutdown was not clean\n");
		mesh_unix_node_free(the_unode);
		mesh_node_unref(the_node);
		g_main_context_pop_thread_default(x.context);
		the_node = node;
		the_unode = unode;
	}
	g_main_loop_unref(x.loop);
	g_main_context_unref(x.context);
}

/* ------------------------------------------------ spawn to ready */

/*
 * As bench/peers' spawn_to_ready_ms: the clock runs from before the
 * invitation (socketpair, ids) and the spawn until the parent has the
 * child's first message. The library's own joining path, so that includes
 * the child's join and the sender it needs to answer: the parent's first
 * message moves it to the child. Each spawn timed on its own: 3 warm-up
 * spawns, then up to BENCH_SPAWNS (at least 10) within BENCH_MAX_MS; the
 * median is reported, p10 and p90 in the notes. Stopping and reaping the
 * child are not timed.
 */
static void bench_spawn(const char *metric, gboolean sandboxed)
{
	int max = env_int("BENCH_SPAWNS", 100), n = 0;
	double *v, t0, med;
	char notes[768];
	Peer peer;

	if (!bench_wanted(metric, SYSTEM))
		return;
	/* The default profile (doc/sandbox.md): spawn part here, finalize in the child. */
	spawn_sandbox = sandboxed ? pal_sandbox_new() : NULL;
	if (max < 10)
		max = 10;
	if (opt_check) {
		for (int i = 0; i < 2; i++) {
			peer_start(&peer, "echo", 64);
			peer_stop(&peer);
		}
		fprintf(stderr, "meshbench: check %s/%-*s ok\n", metric,
			(int)(39 - strlen(metric)), SYSTEM);
		n_checked++;
		spawn_sandbox = pal_sandbox_unref(spawn_sandbox);
		return;
	}
	fprintf(stderr, "meshbench: %s/%s ...\n", metric, SYSTEM);
	watchdog((unsigned)(opt_max_s * 4) + 20, metric);
	v = g_new(double, max);
	for (int i = 0; i < 3; i++) { /* warm-up: page cache, dynamic loader */
		peer_start(&peer, "echo", 64);
		peer_stop(&peer);
	}
	t0 = now_s();
	while (n < max && (n < 10 || now_s() - t0 < opt_max_s)) {
		double t = now_s();
		peer_start(&peer, "echo", 64);
		v[n++] = now_s() - t;
		stamps_write('P'); /* run one of the two rows at a time for spawn-parts.py */
		peer_stop(&peer);
	}
	med = median(v, (size_t)n);
	snprintf(notes, sizeof(notes),
		 "median of %d spawns (p10 %.3f, p90 %.3f ms); mesh_unix_node_invite + pal_spawn "
		 "of this program (links libmeshremote, GLib) with the socket on fd 3, child "
		 "mesh_unix_node_join (own I/O thread), parent's first message moves a sender "
		 "to it, clock stops at the child's first message on it%s",
		 n, v[n / 10] * 1e3, v[n - 1 - n / 10] * 1e3,
		 sandboxed ? "; in libpal's default sandbox profile (pal_sandbox_apply on the "
			     "spawn, the child finalizes before its join)"
			   : "");
	bench_emit(metric, SYSTEM, med * 1e3, "ms", notes);
	watchdog(0, "");
	g_free(v);
	spawn_sandbox = pal_sandbox_unref(spawn_sandbox);
}

/*
 * A host of libmeshprocess (mesh_launch_host()), fresh or a spare handed out
 * (mesh_prestart_hosts()): the initial message carries a sender, the host
 * answers on it at once and returns (it exits). The clock runs from
 * mesh_launch_host() to that answer.
 */
static gboolean bench_host_main(MeshMessage *initial, gpointer user_data, GError **error)
{
	MeshSender *reply = mesh_sender_from_port(mesh_message_steal_port(initial, 0), NULL);
	mesh_sender_send_message(reply, mesh_message_new("ready", 5));
	mesh_sender_free(reply);
	mesh_message_free(initial);
	return TRUE;
}

static void host_ready_once(Mesh *mesh, const MeshProcessConfig *config, double *ret_s)
{
	MeshSender *tx;
	MeshReceiver *rx;
	MeshMessage *msg = NULL;
	GError *error = NULL;
	size_t size;

	mesh_channel_new(NULL, &tx, &rx);
	MeshMessage *initial = mesh_message_new(NULL, 0);
	mesh_message_add_port_take(initial, mesh_sender_into_port(tx));
	double t = now_s();
	if (!mesh_launch_host(mesh, config, initial, &error))
		die("launch: %s", error->message);
	if (!mesh_receiver_recv_message(rx, 10 * G_USEC_PER_SEC, &msg, &error))
		die("the host did not answer: %s", error->message);
	*ret_s = now_s() - t;
	const uint8_t *data = mesh_message_get_data(msg, &size);
	if (size != 5 || memcmp(data, "ready", 5) != 0)
		die("the host's answer is wrong");
	mesh_message_free(msg);
	mesh_receiver_free(rx);
	/* Quiet before the next one: the host exited and was reaped, the spare is back. */
	for (int i = 0; mesh_get_host_count(mesh) != 0; i++) {
		if (i > 10000)
			die("a host did not exit");
		g_usleep(200);
	}
}

static void wait_spare(Mesh *mesh)
{
	for (int i = 0; mesh_get_spare_count(mesh, TRUE) != 1; i++) {
		if (i > 50000)
			die("no spare host became ready");
		g_usleep(200);
	}
}

static void bench_host_spawn(const char *metric, gboolean spare)
{
	int max = env_int("BENCH_SPAWNS", 100), n = 0;
	double *v, t0, med;
	char notes[768];
	GError *error = NULL;

	if (!bench_wanted(metric, SYSTEM))
		return;
	if (max < 10)
		max = 10;
	Mesh *mesh = mesh_new("meshbench", NULL, &error);
	if (!mesh)
		die("mesh_new: %s", error->message);
	MeshProcessConfig *config = mesh_process_config_new("bench-host");
	mesh_process_config_set_skip_worker_arg(config, TRUE);
	if (spare && !mesh_prestart_hosts(mesh, config, 1, &error))
		die("mesh_prestart_hosts: %s", error->message);
	if (!opt_check) {
		fprintf(stderr, "meshbench: %s/%s ...\n", metric, SYSTEM);
		watchdog((unsigned)(opt_max_s * 4) + 20, metric);
	}
	v = g_new(double, max);
	int warm = opt_check ? 0 : 3; /* page cache, dynamic loader */
	t0 = now_s();
	for (int i = 0; i < warm + max; i++) {
		if (opt_check && i == 2)
			break;
		if (i >= warm + 10 && now_s() - t0 >= opt_max_s)
			break;
		if (spare)
			wait_spare(mesh);
		double t;
		host_ready_once(mesh, config, &t);
		if (i >= warm)
			v[n++] = t;
	}
	if (!mesh_shutdown(mesh, 10 * G_USEC_PER_SEC, &error))
		die("mesh_shutdown: %s", error->message);
	mesh_free(mesh);
	mesh_process_config_free(config);
	if (opt_check) {
		fprintf(stderr, "meshbench: check %s/%-*s ok\n", metric,
			(int)(39 - strlen(metric)), SYSTEM);
		n_checked++;
		g_free(v);
		return;
	}
	med = median(v, (size_t)n);
	snprintf(notes, sizeof(notes),
		 "median of %d launches (p10 %.3f, p90 %.3f ms); libmeshprocess: mesh_launch_host() "
		 "of this program (no sandbox), clock stops at the host function's first message "
		 "on a sender in the initial message%s",
		 n, v[n / 10] * 1e3, v[n - 1 - n / 10] * 1e3,
		 spare ? "; a spare host handed out (mesh_prestart_hosts(config, 1), joined and "
			 "waiting before the clock starts; refilled between launches)"
		       : "; a fresh host (spawn, join, InitialMessage)");
	bench_emit(metric, SYSTEM, med * 1e3, "ms", notes);
	watchdog(0, "");
	g_free(v);
}

/* ------------------------------------------------ main */

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "--child") == 0)
		return child_main(argc, argv);
	if (argc > 1 && strcmp(argv[1], "--child-p2p") == 0)
		return child_main_p2p(argc, argv);
	GError *host_error = NULL;
	if (!mesh_try_run_host("meshbench", bench_host_main, NULL, &host_error)) {
		fprintf(stderr, "meshbench host: %s\n", host_error->message);
		return 1;
	}

	bench_init(argc, argv);
	the_node = mesh_node_new();
	the_unode = mesh_unix_node_new(the_node, NULL);

	bench_rtt("rtt_64B", 64);
	bench_rtt("rtt_4KiB", 4 * KIB);
	bench_rtt("rtt_64KiB", 64 * KIB);
	bench_rpc("rpc_rtt", FALSE, FALSE);
	bench_rpc("rpc_async_rtt", TRUE, FALSE);
	bench_rpc("rpc_async_rtt_on_context", TRUE, TRUE);
	bench_stream("stream_64B_msgs_per_s", 64, FALSE);
	bench_stream("stream_1MiB_GB_per_s", MIB, FALSE);
	bench_stream("stream_1MiB_GB_per_s", MIB, TRUE);
	bench_pipe_stream();
	bench_fdpass(FALSE);
	bench_fdpass(TRUE);
	/* The reference first: the run script's ratios are against the first row. */
	bench_inproc_queue();
	bench_inproc_mesh();
	bench_portmove();
	bench_cancel();
	bench_spawn("spawn_to_ready_ms", FALSE);
	bench_spawn("spawn_to_ready_sandboxed_ms", TRUE);
	bench_host_spawn("spawn_to_ready_host_ms", FALSE);
	bench_host_spawn("spawn_to_ready_spare_ms", TRUE);
	/* The point-to-point transport, beside raw TCP loopback in the same run. */
	bench_raw_tcp_rtt();
	bench_raw_tcp_stream();
	for (via = VIA_P2P_SOCKETPAIR; via <= VIA_P2P_TCP; via++) {
		bench_rtt("rtt_64B", 64);
		bench_stream("stream_1MiB_GB_per_s", MIB, FALSE);
	}
	via = VIA_UNIX;

	if (!mesh_unix_node_shutdown(the_unode, SHUTDOWN_TIMEOUT_US))
		fprintf(stderr, "meshbench: shutdown was not clean\n");
	mesh_unix_node_free(the_unode);
	mesh_node_unref(the_node);

	if (opt_check) {
		fprintf(stderr, "meshbench: --check: %d measurements, every reply correct\n",
			n_checked);
		if (n_checked == 0)
			die("--check: no measurement matched the filters");
	} else {
		fprintf(stderr, "\n== meshbench (BENCH_PIN=%s) ==\n%s", pin_mode(), summary->str);
	}
	g_string_free(summary, TRUE);
	return 0;
}
