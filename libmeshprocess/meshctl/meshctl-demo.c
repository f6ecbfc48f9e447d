/* SPDX-License-Identifier: MIT */
/*
 * `meshctl demo` and `meshctl serve`: the parent side.
 *
 * The demo, step by step (each prints one summary line, or one member of
 * the --json object):
 *
 *  1. launch: three hosts, worker-1..3, each this executable re-run; each
 *     gets a commands receiver, a clone of the parent's reports sender and
 *     an rpc receiver, as ports in its initial message;
 *  2. work: twelve sentences, round robin; each host counts words and
 *     reports on the shared reports channel;
 *  3. port move: a port pair, one end to worker-1, the other to worker-2;
 *     they greet each other over it (worker-1 sends a oneshot for the answer
 *     along), without the parent in the way, and both report what they got;
 *  4. rpc: add and divide on the hosts, and a divide by zero whose error
 *     chain comes back;
 *  5. crash: a "hold" call that worker-2 keeps unanswered, then
 *     mesh_crash(worker-2): the waiting caller gets MESH_ERROR_NODE_FAILURE
 *     naming the host and its pid, and so does a new call;
 *  6. after the crash: worker-1 and worker-3 still answer calls and work;
 *  7. inspect: mesh_inspect()'s tree;
 *  8. shutdown: mesh_shutdown(); every host exits by itself.
 *
 * With --ssh DEST (or --remote COMMAND) worker-3 runs through ssh (or the
 * command): it takes part in every step but the port move and the crash,
 * which need two hosts that talk directly.
 *
 * The workers run in libpal's default sandbox profile (doc/sandbox.md:
 * namespaces, no_new_privs, no capabilities, Landlock without paths,
 * seccomp); the inspect step shows it per host. --no-sandbox launches them
 * unsandboxed.
 *
 * With --serve SOCKET the demo serves inspect requests on SOCKET between
 * steps 7 and 8, as `meshctl serve SOCKET` does with its own hosts.
 */
#include <errno.h>
#include <glib-unix.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "meshctl.h"

typedef struct {
	char *name;
	GPid pid;
	MeshSender *commands; /* Command */
	MeshSender *rpc;      /* untyped: RpcRequest calls */
	guint work_done;
	/* A remote host: its pid is the local command's; this is its own, once it says. */
	gboolean remote;
	guint32 own_pid;
} DemoHost;

typedef struct {
	const char *mesh_name;
	Mesh *mesh;
	DemoHost *hosts;
	guint n_hosts;
	MeshReceiver *reports; /* Report, from every host */
	gboolean json;
	char **remote;         /* worker-3's command (--ssh, --remote), or NULL */
	PalSandbox *sandbox;   /* the workers' profile; NULL with --no-sandbox */
	GString *out;          /* the --json object */
	const char *step;      /* what failed, when something did */
} Demo;

/* Output: text lines as they happen, or members of one JSON object. */

static void say(Demo *d, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
static void say(Demo *d, const char *fmt, ...)
{
	if (d->json)
		return;
	va_list ap;
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	fflush(stdout);
}

static void jkey(GString *o, const char *key)
{
	char last = o->len ? o->str[o->len - 1] : '{';
	if (last != '{' && last != '[' && last != ':')
		g_string_append_c(o, ',');
	if (key) {
		meshctl_json_append_string(o, key);
		g_string_append_c(o, ':');
	}
}

static void jstr(GString *o, const char *key, const char *value)
{
	jkey(o, key);
	meshctl_json_append_string(o, value);
}

static void jint(GString *o, const char *key, gint64 value)
{
	jkey(o, key);
	g_string_append_printf(o, "%" G_GINT64_FORMAT, value);
}

static void jbool(GString *o, const char *key, gboolean value)
{
	jkey(o, key);
	g_string_append(o, value ? "true" : "false");
}

static void jopen(GString *o, const char *key, char c)
{
	jkey(o, key);
	g_string_append_c(o, c);
}

static const char *error_code_name(const GError *e)
{
	static const char *const names[] = {
		"MESH_ERROR_CLOSED",	    "MESH_ERROR_NODE_FAILURE", "MESH_ERROR_CORRUPTION",
		"MESH_ERROR_EMPTY",	    "MESH_ERROR_TIMED_OUT",    "MESH_ERROR_REMOTE",
		"MESH_ERROR_SHUTTING_DOWN", "MESH_ERROR_INVALID_ARGUMENT", "MESH_ERROR_DUPLICATE",
		"MESH_ERROR_ADDRESS_IN_USE",
	};
	if (e->domain == MESH_ERROR && e->code >= 0 && (gsize)e->code < G_N_ELEMENTS(names))
		return names[e->code];
	return g_quark_to_string(e->domain);
}

/*
 * Whether @pid, which a host says is its own, is @h's. A remote host's own
 * pid (on the other machine) is learned from the first thing it says.
 */
static gboolean is_pid_of(DemoHost *h, guint32 pid)
{
	if (!h->remote)
		return pid == (guint32)h->pid;
	if (!h->own_pid)
		h->own_pid = pid;
	return pid == h->own_pid;
}

/* Messages. */

static Meshctl__Command *command_new(void)
{
	Meshctl__Command *c = malloc(sizeof(*c));
	meshctl__command__init(c);
	return c;
}

static void send_work(DemoHost *h, guint32 seq, const char *text)
{
	Meshctl__Command *c = command_new();
	c->command_case = MESHCTL__COMMAND__COMMAND_WORK;
	c->work = malloc(sizeof(*c->work));
	meshctl__work_item__init(c->work);
	c->work->seq = seq;
	c->work->text = strdup(text);
	mesh_sender_send(h->commands, &c->base);
}

static void send_introduce(DemoHost *h, const char *peer, gboolean initiator, MeshPort *port)
{
	Meshctl__Command *c = command_new();
	c->command_case = MESHCTL__COMMAND__COMMAND_INTRODUCE;
	c->introduce = malloc(sizeof(*c->introduce));
	meshctl__introduce__init(c->introduce);
	c->introduce->peer = strdup(peer);
	c->introduce->initiator = initiator;
	c->introduce->port = mesh_port_into_field(port);
	mesh_sender_send(h->commands, &c->base);
}

typedef enum { CALL_ADD, CALL_DIVIDE, CALL_PING, CALL_HOLD } CallKind;

static gboolean call(DemoHost *h, CallKind kind, gint64 a, gint64 b, gint64 timeout_us,
		     gint64 *ret_value, GError **error)
{
	Meshctl__RpcRequest *req = malloc(sizeof(*req));
	meshctl__rpc_request__init(req);
	switch (kind) {
	case CALL_ADD:
		req->request_case = MESHCTL__RPC_REQUEST__REQUEST_ADD;
		req->add = malloc(sizeof(*req->add));
		meshctl__add__init(req->add);
		req->add->a = a;
		req->add->b = b;
		break;
	case CALL_DIVIDE:
		req->request_case = MESHCTL__RPC_REQUEST__REQUEST_DIVIDE;
		req->divide = malloc(sizeof(*req->divide));
		meshctl__divide__init(req->divide);
		req->divide->a = a;
		req->divide->b = b;
		break;
	case CALL_PING:
		req->request_case = MESHCTL__RPC_REQUEST__REQUEST_PING;
		req->ping = malloc(sizeof(*req->ping));
		meshctl__ping__init(req->ping);
		break;
	case CALL_HOLD:
		req->request_case = MESHCTL__RPC_REQUEST__REQUEST_HOLD;
		req->hold = malloc(sizeof(*req->hold));
		meshctl__hold__init(req->hold);
		break;
	}
	ProtobufCMessage *reply = NULL;
	if (!mesh_rpc_call(h->rpc, &req->base, &meshctl__rpc_reply__descriptor, timeout_us, &reply,
			   error))
		return FALSE;
	Meshctl__RpcReply *r = (Meshctl__RpcReply *)reply;
	gboolean ok = is_pid_of(h, r->pid) && g_strcmp0(r->worker, h->name) == 0;
	if (!ok)
		g_set_error(error, MESHCTL_ERROR, 0,
			    "the answer came from %s (pid %u), not %s (pid %d)", r->worker, r->pid,
			    h->name, (int)h->pid);
	else if (ret_value)
		*ret_value = r->value;
	mesh_payload_message_free(reply);
	return ok;
}

/* The next report of kind @want (others are dropped), within @deadline. */
static Meshctl__Report *next_report(Demo *d, Meshctl__Report__ReportCase want, gint64 deadline,
				    GError **error)
{
	for (;;) {
		ProtobufCMessage *msg = NULL;
		gint64 left = MAX(deadline - g_get_monotonic_time(), 0);
		if (!mesh_receiver_recv(d->reports, left, &msg, error)) {
			g_prefix_error(error, "waiting for the hosts' reports: ");
			return NULL;
		}
		Meshctl__Report *r = (Meshctl__Report *)msg;
		if (r->report_case == want)
			return r;
		g_debug("unexpected report (case %d) dropped", r->report_case);
		mesh_payload_message_free(msg);
	}
}

static DemoHost *find_host(Demo *d, const char *name)
{
	for (guint i = 0; i < d->n_hosts; i++)
		if (g_strcmp0(d->hosts[i].name, name) == 0)
			return &d->hosts[i];
	return NULL;
}

/* 1. Launch. */

static gboolean launch_hosts(Demo *d, guint n, GError **error)
{
	MeshSender *reports;
	mesh_channel_new(&meshctl__report__descriptor, &reports, &d->reports);
	d->hosts = g_new0(DemoHost, n);
	for (guint i = 0; i < n; i++) {
		DemoHost *h = &d->hosts[d->n_hosts];
		MeshReceiver *commands, *rpc;
		h->name = g_strdup_printf("worker-%u", i + 1);
		mesh_channel_new(&meshctl__command__descriptor, &h->commands, &commands);
		mesh_channel_new(NULL, &h->rpc, &rpc);

		Meshctl__Setup *setup = malloc(sizeof(*setup));
		meshctl__setup__init(setup);
		setup->role = strdup("worker");
		setup->name = strdup(h->name);
		setup->commands = mesh_port_into_field(mesh_receiver_into_port(commands));
		setup->reports = mesh_port_into_field(mesh_sender_into_port(mesh_sender_clone(reports)));
		setup->rpc = mesh_port_into_field(mesh_receiver_into_port(rpc));

		MeshProcessConfig *config = mesh_process_config_new(h->name);
		if (meshctl_verbose)
			mesh_process_config_set_env(config, "MESHCTL_VERBOSE", "1");
		mesh_process_config_set_sandbox(config, d->sandbox);
		if (d->remote && i == 2) {
			mesh_process_config_set_remote_command(config,
							       (const char *const *)d->remote);
			h->remote = TRUE;
		}
		h->pid = mesh_launch_host(d->mesh, config, mesh_message_new_typed_take(&setup->base),
					  error);
		mesh_process_config_free(config);
		if (!h->pid) {
			g_free(h->name);
			mesh_sender_free(h->commands);
			mesh_sender_free(h->rpc);
			memset(h, 0, sizeof(*h));
			mesh_sender_free(reports);
			return FALSE;
		}
		d->n_hosts++;
	}
	/* The hosts hold the only senders: the channel closes when all are gone. */
	mesh_sender_free(reports);
	return TRUE;
}

static void show_launch(Demo *d)
{
	if (d->json) {
		jopen(d->out, "hosts", '[');
		for (guint i = 0; i < d->n_hosts; i++) {
			jopen(d->out, NULL, '{');
			jstr(d->out, "name", d->hosts[i].name);
			jint(d->out, "pid", d->hosts[i].pid);
			if (d->hosts[i].remote) {
				char *command = g_strjoinv(" ", d->remote);
				jstr(d->out, "remote_command", command);
				g_free(command);
			}
			g_string_append_c(d->out, '}');
		}
		g_string_append_c(d->out, ']');
		return;
	}
	GString *s = g_string_new(NULL);
	for (guint i = 0; i < d->n_hosts; i++) {
		g_string_append_printf(s, "%s%s (pid %d", i ? ", " : "", d->hosts[i].name,
				       (int)d->hosts[i].pid);
		if (d->hosts[i].remote) {
			char *command = g_strjoinv(" ", d->remote);
			g_string_append_printf(s, ", through \"%s\"", command);
			g_free(command);
		}
		g_string_append_c(s, ')');
	}
	say(d, "launched %u hosts: %s\n", d->n_hosts, s->str);
	g_string_free(s, TRUE);
}

/* 2. Work. */

static const char *const sentences[] = {
	"a parent launches hosts",
	"every host is this same program run again",
	"hosts join the mesh with an invitation",
	"the invitation travels in the environment",
	"channels are made of ports",
	"a port can be sent inside a message",
	"and keeps working at the other end",
	"messages from one sender stay in order",
	"a failable call brings its error chain back",
	"when a host crashes its callers are told who",
	"the other hosts go on",
	"shutdown waits for every host",
};

static guint32 count_words(const char *text)
{
	char **words = g_strsplit_set(text, " \t\n", -1);
	guint32 n = 0;
	for (char **w = words; *w; w++)
		n += **w != '\0';
	g_strfreev(words);
	return n;
}

/* Sends @n items from @first to the hosts @targets in turn and collects them. */
static gboolean run_work(Demo *d, DemoHost **targets, guint n_targets, guint first, guint n,
			 guint32 *ret_words, GError **error)
{
	gint64 deadline = g_get_monotonic_time() + MESHCTL_WAIT_US;
	guint32 words = 0;
	gboolean *seen = g_new0(gboolean, first + n);

	for (guint i = 0; i < n; i++) {
		guint seq = first + i;
		send_work(targets[i % n_targets], seq,
			  sentences[seq % G_N_ELEMENTS(sentences)]);
	}
	for (guint got = 0; got < n; got++) {
		Meshctl__Report *r = next_report(d, MESHCTL__REPORT__REPORT_WORK, deadline, error);
		if (!r) {
			g_prefix_error(error, "%u of %u items done: ", got, n);
			g_free(seen);
			return FALSE;
		}
		Meshctl__WorkDone *w = r->work;
		DemoHost *h = find_host(d, w->worker);
		const char *text = w->seq < first + n && w->seq >= first
					   ? sentences[w->seq % G_N_ELEMENTS(sentences)]
					   : NULL;
		gboolean ok = text && !seen[w->seq] && h && is_pid_of(h, w->pid) &&
			      w->words == count_words(text) &&
			      h == targets[(w->seq - first) % n_targets];
		if (!ok) {
			g_set_error(error, MESHCTL_ERROR, 0,
				    "bad result for item %u from %s (pid %u): %u words", w->seq,
				    w->worker, w->pid, w->words);
			mesh_payload_message_free(&r->base);
			g_free(seen);
			return FALSE;
		}
		seen[w->seq] = TRUE;
		h->work_done++;
		words += w->words;
		mesh_payload_message_free(&r->base);
	}
	g_free(seen);
	*ret_words = words;
	return TRUE;
}

static gboolean step_work(Demo *d, GError **error)
{
	guint n = G_N_ELEMENTS(sentences);
	guint32 words;
	DemoHost **all = g_new0(DemoHost *, d->n_hosts);
	for (guint i = 0; i < d->n_hosts; i++)
		all[i] = &d->hosts[i];
	gboolean ok = run_work(d, all, d->n_hosts, 0, n, &words, error);
	g_free(all);
	if (!ok)
		return FALSE;

	GString *by = g_string_new(NULL);
	if (d->json) {
		jopen(d->out, "work", '{');
		jint(d->out, "items", n);
		jint(d->out, "hosts", d->n_hosts);
		jint(d->out, "words", words);
		jopen(d->out, "by_host", '{');
	}
	for (guint i = 0; i < d->n_hosts; i++) {
		g_string_append_printf(by, "%s%s: %u", i ? ", " : "", d->hosts[i].name,
				       d->hosts[i].work_done);
		if (d->json)
			jint(d->out, d->hosts[i].name, d->hosts[i].work_done);
	}
	if (d->json)
		g_string_append(d->out, "}}");
	say(d, "work: %u items processed by %u hosts (%s), %u words counted\n", n, d->n_hosts,
	    by->str, words);
	g_string_free(by, TRUE);
	return TRUE;
}

/* 3. A port moves: two hosts talk directly. */

static gboolean step_port_move(Demo *d, DemoHost *a, DemoHost *b, GError **error)
{
	gint64 deadline = g_get_monotonic_time() + MESHCTL_WAIT_US;
	MeshPort *pa, *pb;
	char *got_a = NULL, *got_b = NULL;
	gboolean ok = FALSE;

	mesh_port_new_pair(&pa, &pb);
	send_introduce(a, b->name, TRUE, pa);
	send_introduce(b, a->name, FALSE, pb);
	for (int i = 0; i < 2; i++) {
		Meshctl__Report *r = next_report(d, MESHCTL__REPORT__REPORT_PEER, deadline, error);
		if (!r)
			goto out;
		Meshctl__PeerReport *p = r->peer;
		DemoHost *self = find_host(d, p->worker), *other = find_host(d, p->peer);
		if (!(self == a && other == b) && !(self == b && other == a)) {
			g_set_error(error, MESHCTL_ERROR, 0, "%s: no greeting from %s: %s",
				    p->worker, self == a ? b->name : a->name, p->text);
			mesh_payload_message_free(&r->base);
			goto out;
		}
		if (p->peer_pid != (guint32)other->pid) {
			g_set_error(error, MESHCTL_ERROR, 0,
				    "%s heard from pid %u, but %s is pid %d", p->worker,
				    p->peer_pid, other->name, (int)other->pid);
			mesh_payload_message_free(&r->base);
			goto out;
		}
		char **slot = self == a ? &got_a : &got_b;
		g_free(*slot);
		*slot = g_strdup(p->text);
		mesh_payload_message_free(&r->base);
	}
	if (!got_a || !got_b) {
		g_set_error(error, MESHCTL_ERROR, 0, "only one side of the conversation reported");
		goto out;
	}
	ok = TRUE;
	if (d->json) {
		jopen(d->out, "port_move", '{');
		jopen(d->out, "hosts", '[');
		jstr(d->out, NULL, a->name);
		jstr(d->out, NULL, b->name);
		g_string_append_c(d->out, ']');
		jstr(d->out, "a_got", got_a);
		jstr(d->out, "b_got", got_b);
		g_string_append_c(d->out, '}');
	}
	say(d, "port moved: %s <-> %s talked directly\n", a->name, b->name);
	say(d, "  %s got: \"%s\"\n", a->name, got_a);
	say(d, "  %s got: \"%s\"\n", b->name, got_b);
out:
	g_free(got_a);
	g_free(got_b);
	return ok;
}

/* 4. RPCs. */

static gboolean step_rpc(Demo *d, DemoHost *x, DemoHost *y, GError **error)
{
	gint64 sum = 0, quotient = 0;
	GError *e = NULL;

	if (!call(x, CALL_ADD, 2, 3, MESHCTL_WAIT_US, &sum, error)) {
		g_prefix_error(error, "add(2, 3) on %s: ", x->name);
		return FALSE;
	}
	if (!call(y, CALL_DIVIDE, 84, 2, MESHCTL_WAIT_US, &quotient, error)) {
		g_prefix_error(error, "divide(84, 2) on %s: ", y->name);
		return FALSE;
	}
	if (sum != 5 || quotient != 42) {
		g_set_error(error, MESHCTL_ERROR, 0, "wrong answers: %" G_GINT64_FORMAT
			    " and %" G_GINT64_FORMAT, sum, quotient);
		return FALSE;
	}
	if (call(x, CALL_DIVIDE, 7, 0, MESHCTL_WAIT_US, NULL, &e) ||
	    !g_error_matches(e, MESH_ERROR, MESH_ERROR_REMOTE)) {
		g_set_error(error, MESHCTL_ERROR, 0,
			    "divide(7, 0) on %s: expected the host's error, got %s", x->name,
			    e ? e->message : "an answer");
		g_clear_error(&e);
		return FALSE;
	}
	if (d->json) {
		jopen(d->out, "rpc", '[');
		jopen(d->out, NULL, '{');
		jstr(d->out, "call", "add(2, 3)");
		jstr(d->out, "host", x->name);
		jint(d->out, "result", sum);
		g_string_append(d->out, "}");
		jopen(d->out, NULL, '{');
		jstr(d->out, "call", "divide(84, 2)");
		jstr(d->out, "host", y->name);
		jint(d->out, "result", quotient);
		g_string_append(d->out, "}");
		jopen(d->out, NULL, '{');
		jstr(d->out, "call", "divide(7, 0)");
		jstr(d->out, "host", x->name);
		jstr(d->out, "error", e->message);
		jstr(d->out, "code", error_code_name(e));
		g_string_append(d->out, "}]");
	}
	say(d, "rpc: add(2, 3) = %" G_GINT64_FORMAT " on %s\n", sum, x->name);
	say(d, "rpc: divide(84, 2) = %" G_GINT64_FORMAT " on %s\n", quotient, y->name);
	say(d, "rpc: failable divide(7, 0) on %s returned its error chain: %s\n", x->name,
	    e->message);
	g_error_free(e);
	return TRUE;
}

/* 5. A crash. */

typedef struct {
	DemoHost *host;
	GError *error;
	gboolean answered;
} HeldCall;

static gpointer held_call_thread(gpointer data)
{
	HeldCall *c = data;
	c->answered = call(c->host, CALL_HOLD, 0, 0, MESHCTL_WAIT_US, NULL, &c->error);
	return NULL;
}

static gboolean names_host(const GError *e, DemoHost *h)
{
	char *pid = g_strdup_printf("pid %d", (int)h->pid);
	gboolean ok = e && strstr(e->message, h->name) && strstr(e->message, pid);
	g_free(pid);
	return ok;
}

static gboolean step_crash(Demo *d, DemoHost *victim, GError **error)
{
	HeldCall held = {.host = victim};
	GError *late = NULL;
	gboolean ok = FALSE;

	/* A call in flight: the host takes it and keeps it unanswered. */
	GThread *t = g_thread_new("meshctl-held-call", held_call_thread, &held);
	Meshctl__Report *r = next_report(d, MESHCTL__REPORT__REPORT_HOLDING,
					 g_get_monotonic_time() + MESHCTL_WAIT_US, error);
	if (!r) {
		/* The call ends at its own timeout; the host is still crashed below. */
		mesh_crash(d->mesh, victim->pid, NULL);
		g_thread_join(t);
		g_clear_error(&held.error);
		return FALSE;
	}
	mesh_payload_message_free(&r->base);

	if (!mesh_crash(d->mesh, victim->pid, error)) {
		g_prefix_error(error, "mesh_crash(%s): ", victim->name);
		g_thread_join(t);
		g_clear_error(&held.error);
		return FALSE;
	}
	g_thread_join(t);
	if (held.answered || !g_error_matches(held.error, MESH_ERROR, MESH_ERROR_NODE_FAILURE) ||
	    !names_host(held.error, victim)) {
		g_set_error(error, MESHCTL_ERROR, 0,
			    "the caller waiting on %s (pid %d) got %s%s%s, not a node failure "
			    "naming it",
			    victim->name, (int)victim->pid,
			    held.error ? error_code_name(held.error) : "an answer",
			    held.error ? ": " : "", held.error ? held.error->message : "");
		goto out;
	}

	/*
	 * A call made after the crash fails at once. (libmeshremote drops the
	 * request at the failed port, so the caller sees its reply oneshot
	 * closed, MESH_ERROR_CLOSED; a node failure is accepted as well.)
	 *
	 * Workaround: wait until the sender itself knows. A request sent in
	 * the moment between the node's failure and its ports' is sometimes
	 * lost with the reply port inside it, and the caller then waits for
	 * its whole timeout (libmeshremote; see doc/meshctl.md).
	 */
	gint64 deadline = g_get_monotonic_time() + MESHCTL_WAIT_US;
	while (!mesh_sender_is_closed(victim->rpc) && g_get_monotonic_time() < deadline)
		g_usleep(1000);
	if (call(victim, CALL_PING, 0, 0, MESHCTL_WAIT_US, NULL, &late) ||
	    !(g_error_matches(late, MESH_ERROR, MESH_ERROR_NODE_FAILURE) ||
	      g_error_matches(late, MESH_ERROR, MESH_ERROR_CLOSED))) {
		g_set_error(error, MESHCTL_ERROR, 0,
			    "a call to %s after its crash got %s%s%s, not an error",
			    victim->name, late ? error_code_name(late) : "an answer",
			    late ? ": " : "", late ? late->message : "");
		goto out;
	}
	gboolean sender_closed = mesh_sender_is_closed(victim->rpc);
	ok = TRUE;
	if (d->json) {
		jopen(d->out, "crash", '{');
		jstr(d->out, "host", victim->name);
		jint(d->out, "pid", victim->pid);
		jstr(d->out, "pending_call_error", held.error->message);
		jstr(d->out, "pending_call_code", error_code_name(held.error));
		jstr(d->out, "new_call_error", late->message);
		jstr(d->out, "new_call_code", error_code_name(late));
		jbool(d->out, "sender_closed", sender_closed);
		g_string_append_c(d->out, '}');
	}
	say(d, "crash: %s (pid %d) crashed with a call in flight; its caller got: %s\n",
	    victim->name, (int)victim->pid, held.error->message);
	say(d, "crash: a new call to %s failed at once: %s: %s (sender closed: %s)\n",
	    victim->name, error_code_name(late), late->message, sender_closed ? "yes" : "no");
out:
	g_clear_error(&held.error);
	g_clear_error(&late);
	return ok;
}

/* 6. The others go on. */

static gboolean step_after_crash(Demo *d, DemoHost *victim, GError **error)
{
	DemoHost **alive = g_new0(DemoHost *, d->n_hosts);
	guint n = 0;
	guint32 words;
	GString *names = g_string_new(NULL);
	gboolean ok = FALSE;

	for (guint i = 0; i < d->n_hosts; i++) {
		DemoHost *h = &d->hosts[i];
		if (h == victim)
			continue;
		if (!call(h, CALL_PING, 0, 0, MESHCTL_WAIT_US, NULL, error)) {
			g_prefix_error(error, "ping %s: ", h->name);
			goto out;
		}
		g_string_append_printf(names, "%s%s", n ? ", " : "", h->name);
		alive[n++] = h;
	}
	if (!run_work(d, alive, n, G_N_ELEMENTS(sentences), n, &words, error))
		goto out;
	ok = TRUE;
	if (d->json) {
		jopen(d->out, "after_crash", '{');
		jopen(d->out, "answered", '[');
		for (guint i = 0; i < n; i++)
			jstr(d->out, NULL, alive[i]->name);
		g_string_append_c(d->out, ']');
		jint(d->out, "work_items", n);
		g_string_append_c(d->out, '}');
	}
	say(d, "after crash: %s still answer (a ping and one more work item each)\n", names->str);
out:
	g_string_free(names, TRUE);
	g_free(alive);
	return ok;
}

/* 7. Inspect. */

static gboolean step_inspect(Demo *d, GError **error)
{
	char *json = mesh_inspect(d->mesh, MESHCTL_INSPECT_US);
	gboolean ok = TRUE;
	if (d->json) {
		MeshctlJson *v = meshctl_json_parse(json, error);
		ok = v != NULL;
		meshctl_json_free(v);
		if (ok) {
			jkey(d->out, "inspect");
			g_string_append(d->out, json);
		}
	} else {
		say(d, "inspect:\n");
		ok = meshctl_print_tree(stdout, json, "  ", error);
	}
	if (!ok)
		g_prefix_error(error, "mesh_inspect() gave %s: ", json);
	g_free(json);
	return ok;
}

/* 8. Shutdown. */

static gboolean step_shutdown(Demo *d, GError **error)
{
	guint running = mesh_get_host_count(d->mesh);
	gint64 start = g_get_monotonic_time();
	gboolean clean = mesh_shutdown(d->mesh, MESHCTL_SHUTDOWN_US, error);
	gint64 ms = (g_get_monotonic_time() - start) / 1000;
	guint left = mesh_get_host_count(d->mesh);

	if (d->json) {
		jopen(d->out, "shutdown", '{');
		jbool(d->out, "clean", clean);
		jint(d->out, "hosts", running);
		jint(d->out, "left", left);
		jint(d->out, "ms", ms);
		g_string_append_c(d->out, '}');
	}
	if (!clean)
		return FALSE;
	if (left) {
		g_set_error(error, MESHCTL_ERROR, 0, "%u hosts still running", left);
		return FALSE;
	}
	say(d, "shutdown: all hosts exited (%u running at the end, in %" G_GINT64_FORMAT " ms)\n",
	    running, ms);
	return TRUE;
}

static void demo_free(Demo *d)
{
	for (guint i = 0; i < d->n_hosts; i++) {
		mesh_sender_free(d->hosts[i].commands);
		mesh_sender_free(d->hosts[i].rpc);
		g_free(d->hosts[i].name);
	}
	g_free(d->hosts);
	mesh_receiver_free(d->reports);
	mesh_free(d->mesh);
	pal_sandbox_unref(d->sandbox);
	if (d->out)
		g_string_free(d->out, TRUE);
}

/* Serving inspect requests. */

typedef struct {
	Mesh *mesh;
	GMainLoop *loop;
	const char *why; /* what ended it */
	guint served;
} Server;

static void answer(MeshOneshotSender *os, const char *text)
{
	mesh_oneshot_send_message(os, mesh_message_new(text, strlen(text)));
}

static void serve_cb(MeshReceiver *receiver, gpointer data)
{
	Server *sv = data;
	MeshMessage *msg = NULL;
	GError *error = NULL;

	while (mesh_receiver_recv_message(receiver, 0, &msg, &error)) {
		size_t size = 0;
		const uint8_t *bytes = mesh_message_get_data(msg, &size);
		char *what = g_strndup((const char *)bytes, MIN(size, 64));
		MeshPort *port = mesh_message_get_n_resources(msg) == 1
					 ? mesh_message_steal_port(msg, 0)
					 : NULL;
		mesh_message_free(msg);
		if (!port) {
			g_message("a request without a reply port ignored");
			g_free(what);
			continue;
		}
		MeshOneshotSender *os = mesh_oneshot_sender_from_port(port, NULL);
		sv->served++;
		if (strcmp(what, "inspect") == 0) {
			char *json = mesh_inspect(sv->mesh, MESHCTL_INSPECT_US);
			answer(os, json);
			g_free(json);
		} else if (strcmp(what, "stop") == 0) {
			answer(os, "{\"stopping\":true}");
			sv->why = "a stop request";
			g_main_loop_quit(sv->loop);
		} else {
			GString *e = g_string_new("{\"error\":");
			char *text = g_strdup_printf("unknown request \"%s\" (inspect, stop)", what);
			meshctl_json_append_string(e, text);
			g_string_append_c(e, '}');
			answer(os, e->str);
			g_string_free(e, TRUE);
			g_free(text);
		}
		g_free(what);
	}
	if (!g_error_matches(error, MESH_ERROR, MESH_ERROR_EMPTY)) {
		g_warning("the listener's channel ended: %s", error->message);
		mesh_receiver_set_callback(receiver, NULL, NULL, NULL, NULL);
		sv->why = "the listener's end";
		g_main_loop_quit(sv->loop);
	}
	g_error_free(error);
}

static gboolean on_signal(gpointer data)
{
	Server *sv = data;
	sv->why = "a signal";
	g_main_loop_quit(sv->loop);
	return G_SOURCE_CONTINUE;
}

static gboolean serve(Mesh *mesh, const char *path, gboolean quiet, GError **error)
{
	MeshReceiver *receiver = NULL;
	if (!mesh_listen(mesh, path, FALSE, &receiver, error)) {
		g_prefix_error(error, "cannot listen on %s: ", path);
		return FALSE;
	}
	GMainContext *ctx = g_main_context_new();
	Server sv = {.mesh = mesh, .loop = g_main_loop_new(ctx, FALSE)};
	mesh_receiver_set_callback(receiver, ctx, serve_cb, &sv, NULL);
	const int signals[] = {SIGTERM, SIGINT, SIGHUP};
	GSource *sources[G_N_ELEMENTS(signals)];
	for (gsize i = 0; i < G_N_ELEMENTS(signals); i++) {
		sources[i] = g_unix_signal_source_new(signals[i]);
		g_source_set_callback(sources[i], on_signal, &sv, NULL);
		g_source_attach(sources[i], ctx);
	}
	if (!quiet) {
		printf("serving on %s (pid %d): meshctl inspect %s; stop with meshctl stop %s or "
		       "SIGTERM\n",
		       path, (int)getpid(), path, path);
		fflush(stdout);
	}
	g_main_loop_run(sv.loop);

	mesh_unlisten(mesh, path);
	mesh_receiver_set_callback(receiver, NULL, NULL, NULL, NULL);
	mesh_receiver_free(receiver);
	for (gsize i = 0; i < G_N_ELEMENTS(signals); i++) {
		g_source_destroy(sources[i]);
		g_source_unref(sources[i]);
	}
	g_main_loop_unref(sv.loop);
	g_main_context_unref(ctx);
	if (!quiet) {
		printf("stopped serving on %s after %s (%u request%s)\n", path, sv.why, sv.served,
		       sv.served == 1 ? "" : "s");
		fflush(stdout);
	}
	return TRUE;
}

/* Options. */

static GOptionContext *command_context(const char *name, const char *params, const char *summary,
				       const char *description, const GOptionEntry *entries)
{
	char *prgname = g_strdup_printf("meshctl %s", name);
	g_set_prgname(prgname);
	g_free(prgname);
	GOptionContext *ctx = g_option_context_new(params);
	g_option_context_set_summary(ctx, summary);
	if (description)
		g_option_context_set_description(ctx, description);
	g_option_context_add_main_entries(ctx, entries, NULL);
	return ctx;
}

static gboolean parse(GOptionContext *ctx, int *argc, char ***argv)
{
	GError *error = NULL;
	gboolean ok = g_option_context_parse(ctx, argc, argv, &error);
	g_option_context_free(ctx);
	if (!ok) {
		fprintf(stderr, "meshctl: %s\n", error->message);
		g_error_free(error);
	}
	return ok;
}

int meshctl_demo(int argc, char **argv)
{
	gboolean json = FALSE, no_sandbox = FALSE;
	char *serve_path = NULL;
	char *ssh_dest = NULL, *remote = NULL;
	char **remote_argv = NULL;
	char **rest = NULL;
	const GOptionEntry entries[] = {
		{"json", 0, 0, G_OPTION_ARG_NONE, &json, "Print the summary as one JSON object", NULL},
		{"serve", 0, 0, G_OPTION_ARG_FILENAME, &serve_path,
		 "Before shutting down, serve inspect requests on SOCKET until \"meshctl stop\" or "
		 "SIGTERM",
		 "SOCKET"},
		{"ssh", 0, 0, G_OPTION_ARG_STRING, &ssh_dest,
		 "Run worker-3 on DEST through ssh (meshctl must be at this same path there)",
		 "DEST"},
		{"remote", 0, 0, G_OPTION_ARG_STRING, &remote,
		 "Run worker-3 through COMMAND (split as a shell would), e.g. \"ssh -p 2222 "
		 "host\"; its stdin and stdout carry the link",
		 "COMMAND"},
		{"no-sandbox", 0, 0, G_OPTION_ARG_NONE, &no_sandbox,
		 "Run the workers unsandboxed (default: libpal's default sandbox profile)", NULL},
		{"verbose", 'v', 0, G_OPTION_ARG_NONE, &meshctl_verbose,
		 "Show the libraries' messages (on stderr)", NULL},
		{G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_STRING_ARRAY, &rest, NULL, NULL},
		{NULL},
	};
	GOptionContext *ctx = command_context(
		"demo", "",
		"The demonstration of libmeshprocess: a parent launches three hosts (this\n"
		"program, re-run), sends them work over channels, moves a port so that two\n"
		"hosts talk directly, makes RPCs, crashes one host and shows that its callers\n"
		"get an error naming it while the others go on, prints the mesh's tree and\n"
		"shuts down. One line per step; well under a second.",
		"Exit status: 0 if every step went as described, 1 otherwise.\n"
		"See doc/meshctl.md for what each line means.",
		entries);
	if (!parse(ctx, &argc, &argv))
		return 2;
	GError *parse_error = NULL;
	if (ssh_dest)
		remote_argv = g_strdupv((char *[]){"ssh", ssh_dest, NULL});
	else if (remote && !g_shell_parse_argv(remote, NULL, &remote_argv, &parse_error))
		fprintf(stderr, "meshctl: --remote: %s\n", parse_error->message);
	if ((rest && rest[0]) || (ssh_dest && remote) || parse_error) {
		if (!parse_error)
			fprintf(stderr, "meshctl: demo takes no arguments, and --ssh or --remote "
					"(see meshctl help demo)\n");
		g_clear_error(&parse_error);
		g_strfreev(rest);
		g_strfreev(remote_argv);
		g_free(ssh_dest);
		g_free(remote);
		g_free(serve_path);
		return 2;
	}

	Demo d = {.mesh_name = "demo",
		  .json = json,
		  .remote = remote_argv,
		  .sandbox = no_sandbox ? NULL : pal_sandbox_new()};
	GError *error = NULL;
	gboolean ok = FALSE;
	if (json)
		d.out = g_string_new("{");

	d.mesh = mesh_new(d.mesh_name, NULL, &error);
	if (!d.mesh) {
		d.step = "mesh_new";
		goto out;
	}
	if (json) {
		jstr(d.out, "mesh", d.mesh_name);
		jint(d.out, "parent_pid", getpid());
	} else {
		say(&d, "meshctl demo: mesh \"%s\", parent pid %d\n", d.mesh_name, (int)getpid());
	}

	d.step = "launch";
	if (!launch_hosts(&d, 3, &error))
		goto out;
	show_launch(&d);
	d.step = "work";
	if (!step_work(&d, &error))
		goto out;
	d.step = "port move";
	if (!step_port_move(&d, &d.hosts[0], &d.hosts[1], &error))
		goto out;
	d.step = "rpc";
	if (!step_rpc(&d, &d.hosts[2], &d.hosts[0], &error))
		goto out;
	d.step = "crash";
	if (!step_crash(&d, &d.hosts[1], &error))
		goto out;
	d.step = "after crash";
	if (!step_after_crash(&d, &d.hosts[1], &error))
		goto out;
	d.step = "inspect";
	if (!step_inspect(&d, &error))
		goto out;
	if (serve_path) {
		d.step = "serve";
		if (!serve(d.mesh, serve_path, json, &error))
			goto out;
	}
	d.step = "shutdown";
	if (!step_shutdown(&d, &error))
		goto out;
	d.step = NULL;
	ok = TRUE;
out:
	if (!ok && d.mesh) {
		/* Whatever happened, the hosts go. */
		GError *e = NULL;
		if (!mesh_shutdown(d.mesh, MESHCTL_SHUTDOWN_US, &e) && e)
			g_warning("shutdown after the failure: %s", e->message);
		g_clear_error(&e);
	}
	if (json) {
		if (!ok) {
			jstr(d.out, "failed_step", d.step);
			jstr(d.out, "error", error ? error->message : "unknown");
		}
		jbool(d.out, "ok", ok);
		g_string_append_c(d.out, '}');
		printf("%s\n", d.out->str);
	} else if (ok) {
		say(&d, "demo: ok\n");
	}
	if (!ok) {
		char *what = g_strdup_printf("demo failed at step \"%s\"", d.step);
		meshctl_print_error(what, error);
		g_free(what);
	}
	g_clear_error(&error);
	demo_free(&d);
	g_free(serve_path);
	g_strfreev(rest);
	g_strfreev(remote_argv);
	g_free(ssh_dest);
	g_free(remote);
	return ok ? 0 : 1;
}

int meshctl_serve(int argc, char **argv)
{
	gboolean no_sandbox = FALSE;
	int n_hosts = 3;
	char *name = NULL;
	char **rest = NULL;
	const GOptionEntry entries[] = {
		{"hosts", 'n', 0, G_OPTION_ARG_INT, &n_hosts, "Number of hosts (1 to 16, default 3)",
		 "N"},
		{"name", 0, 0, G_OPTION_ARG_STRING, &name, "The mesh's name (default \"serve\")",
		 "NAME"},
		{"no-sandbox", 0, 0, G_OPTION_ARG_NONE, &no_sandbox,
		 "Run the hosts unsandboxed (default: libpal's default sandbox profile)", NULL},
		{"verbose", 'v', 0, G_OPTION_ARG_NONE, &meshctl_verbose,
		 "Show the libraries' messages (on stderr)", NULL},
		{G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &rest, NULL, NULL},
		{NULL},
	};
	GOptionContext *ctx = command_context(
		"serve", "SOCKET",
		"Launches a mesh of worker hosts (as the demo's), has each do a work item,\n"
		"and serves on SOCKET until \"meshctl stop SOCKET\" or SIGTERM/SIGINT: a\n"
		"client that connects (mesh_connect()) and sends \"inspect\" with a reply\n"
		"port gets the mesh's tree (mesh_inspect()'s JSON). Then shuts the hosts\n"
		"down and exits 0. The directory of SOCKET must not be writable by other\n"
		"users; only clients of the same user are accepted.",
		NULL, entries);
	if (!parse(ctx, &argc, &argv))
		return 2;
	if (!rest || !rest[0] || rest[1] || n_hosts < 1 || n_hosts > 16) {
		fprintf(stderr, "meshctl: serve takes one SOCKET and 1 to 16 hosts (see meshctl "
				"help serve)\n");
		g_strfreev(rest);
		g_free(name);
		return 2;
	}

	Demo d = {.mesh_name = name ? name : "serve",
		  .sandbox = no_sandbox ? NULL : pal_sandbox_new()};
	GError *error = NULL;
	gboolean ok = FALSE;
	const char *path = rest[0];

	d.mesh = mesh_new(d.mesh_name, NULL, &error);
	if (!d.mesh)
		goto out;
	d.step = "launch";
	if (!launch_hosts(&d, (guint)n_hosts, &error))
		goto out;
	d.step = "work";
	DemoHost **all = g_new0(DemoHost *, d.n_hosts);
	for (guint i = 0; i < d.n_hosts; i++)
		all[i] = &d.hosts[i];
	guint32 words;
	ok = run_work(&d, all, d.n_hosts, 0, d.n_hosts, &words, &error);
	g_free(all);
	if (!ok)
		goto out;
	ok = FALSE;
	printf("mesh \"%s\": parent pid %d, %u hosts up\n", d.mesh_name, (int)getpid(), d.n_hosts);
	fflush(stdout);
	d.step = "serve";
	if (!serve(d.mesh, path, FALSE, &error))
		goto out;
	d.step = "shutdown";
	if (!mesh_shutdown(d.mesh, MESHCTL_SHUTDOWN_US, &error))
		goto out;
	printf("shutdown: all hosts exited\n");
	ok = TRUE;
out:
	if (!ok) {
		if (d.mesh)
			mesh_shutdown(d.mesh, MESHCTL_SHUTDOWN_US, NULL);
		char *what = g_strdup_printf("serve failed at step \"%s\"", d.step ? d.step : "start");
		meshctl_print_error(what, error);
		g_free(what);
	}
	g_clear_error(&error);
	demo_free(&d);
	g_strfreev(rest);
	g_free(name);
	return ok ? 0 : 1;
}
