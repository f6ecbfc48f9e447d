/* SPDX-License-Identifier: MIT */
/*
 * The host side of meshctl: what a launched host (this same executable,
 * re-run by mesh_try_run_host()) does. Its initial message is a Setup: a
 * role, a name and three channel ends. A "worker" serves, on one
 * GMainContext of its main thread:
 *
 *  - commands (Receiver<Command>): work items, whose words it counts and
 *    reports; and introductions: one end of a port pair whose other end
 *    another host got, over which the two greet each other directly;
 *  - rpc requests (failable): add, divide, ping, and hold (kept unanswered);
 *
 * and reports to the parent on a Sender<Report>. It returns when its
 * commands channel closes; mesh_shutdown() ends it before that by closing
 * the host's request channel (libmeshprocess then exits the process).
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "meshctl.h"

typedef struct {
	char *name;
	MeshReceiver *commands;
	MeshSender *reports;
	MeshReceiver *rpc;
	MeshReceiver *peer;   /* Receiver<Greeting>, for the host that answers */
	GPtrArray *held;      /* MeshRpc *, "hold" calls never answered */
	GMainLoop *loop;
	GError *error;
} Worker;

static void worker_fail(Worker *w, GError *error)
{
	if (!w->error)
		w->error = error;
	else
		g_error_free(error);
	g_main_loop_quit(w->loop);
}

static void report(Worker *w, Meshctl__Report *r)
{
	mesh_sender_send(w->reports, &r->base);
}

static Meshctl__Report *report_new(void)
{
	Meshctl__Report *r = malloc(sizeof(*r));
	meshctl__report__init(r);
	return r;
}

static void report_peer(Worker *w, const char *peer, guint32 peer_pid, const char *text)
{
	Meshctl__Report *r = report_new();
	r->report_case = MESHCTL__REPORT__REPORT_PEER;
	r->peer = malloc(sizeof(*r->peer));
	meshctl__peer_report__init(r->peer);
	r->peer->worker = strdup(w->name);
	r->peer->peer = strdup(peer);
	r->peer->peer_pid = peer_pid;
	r->peer->text = strdup(text);
	report(w, r);
}

static Meshctl__Greeting *greeting_new(Worker *w, const char *peer)
{
	Meshctl__Greeting *g = malloc(sizeof(*g));
	meshctl__greeting__init(g);
	g->from = strdup(w->name);
	g->pid = (guint32)mesh_host_get_pid();
	char *text = g_strdup_printf("hello %s, this is %s (pid %d)", peer, w->name,
				     (int)mesh_host_get_pid());
	g->text = strdup(text);
	g_free(text);
	return g;
}

static guint32 count_words(const char *text)
{
	guint32 n = 0;
	gboolean in_word = FALSE;
	for (const char *p = text; *p; p++) {
		gboolean space = g_ascii_isspace(*p);
		if (!space && !in_word)
			n++;
		in_word = !space;
	}
	return n;
}

static void do_work(Worker *w, const Meshctl__WorkItem *item)
{
	Meshctl__Report *r = report_new();
	r->report_case = MESHCTL__REPORT__REPORT_WORK;
	r->work = malloc(sizeof(*r->work));
	meshctl__work_done__init(r->work);
	r->work->seq = item->seq;
	r->work->words = count_words(item->text ? item->text : "");
	r->work->worker = strdup(w->name);
	r->work->pid = (guint32)mesh_host_get_pid();
	report(w, r);
}

/* The answering side: one greeting arrives on the moved port. */
static void peer_cb(MeshReceiver *receiver, gpointer data)
{
	Worker *w = data;
	ProtobufCMessage *msg = NULL;
	GError *error = NULL;

	if (!mesh_receiver_recv(receiver, 0, &msg, &error)) {
		if (g_error_matches(error, MESH_ERROR, MESH_ERROR_EMPTY)) {
			g_error_free(error);
			return;
		}
		report_peer(w, "?", 0, error->message);
		g_error_free(error);
	} else {
		Meshctl__Greeting *g = (Meshctl__Greeting *)msg;
		MeshPort *reply = mesh_port_steal_from_field(g->reply);
		if (reply) {
			MeshOneshotSender *os =
				mesh_oneshot_sender_from_port(reply, &meshctl__greeting__descriptor);
			mesh_oneshot_send(os, &greeting_new(w, g->from)->base);
		}
		report_peer(w, g->from, g->pid, g->text);
		mesh_payload_message_free(msg);
	}
	/* One greeting is the whole conversation. */
	w->peer = NULL;
	mesh_receiver_free(receiver);
}

static void introduce(Worker *w, Meshctl__Introduce *intro)
{
	MeshPort *port = mesh_port_steal_from_field(intro->port);
	if (!port) {
		report_peer(w, intro->peer, 0, "introduction without a port");
		return;
	}
	if (!intro->initiator) {
		if (w->peer)
			mesh_receiver_free(w->peer);
		w->peer = mesh_receiver_from_port(port, &meshctl__greeting__descriptor);
		mesh_receiver_set_callback(w->peer, g_main_loop_get_context(w->loop), peer_cb, w,
					   NULL);
		return;
	}

	/* Speak first: a greeting with a oneshot for the answer, over the port. */
	MeshSender *to_peer = mesh_sender_from_port(port, &meshctl__greeting__descriptor);
	MeshOneshotSender *os;
	MeshOneshotReceiver *answer;
	mesh_oneshot_new(&meshctl__greeting__descriptor, &os, &answer);
	Meshctl__Greeting *g = greeting_new(w, intro->peer);
	g->reply = mesh_port_into_field(mesh_oneshot_sender_into_port(os));
	mesh_sender_send(to_peer, &g->base);
	mesh_sender_free(to_peer);

	ProtobufCMessage *msg = NULL;
	GError *error = NULL;
	if (mesh_oneshot_recv(answer, MESHCTL_WAIT_US, &msg, &error)) {
		Meshctl__Greeting *back = (Meshctl__Greeting *)msg;
		report_peer(w, back->from, back->pid, back->text);
		mesh_payload_message_free(msg);
	} else {
		report_peer(w, intro->peer, 0, error->message);
		if (g_error_matches(error, MESH_ERROR, MESH_ERROR_TIMED_OUT))
			mesh_oneshot_receiver_free(answer); /* consumed on a final error only */
		g_error_free(error);
	}
}

static gboolean quit_later(gpointer data)
{
	Worker *w = data;
	g_main_loop_quit(w->loop);
	return G_SOURCE_REMOVE;
}

static void commands_cb(MeshReceiver *receiver, gpointer data)
{
	Worker *w = data;
	ProtobufCMessage *msg = NULL;
	GError *error = NULL;

	while (mesh_receiver_recv(receiver, 0, &msg, &error)) {
		Meshctl__Command *c = (Meshctl__Command *)msg;
		if (c->command_case == MESHCTL__COMMAND__COMMAND_WORK)
			do_work(w, c->work);
		else if (c->command_case == MESHCTL__COMMAND__COMMAND_INTRODUCE)
			introduce(w, c->introduce);
		mesh_payload_message_free(msg);
	}
	if (g_error_matches(error, MESH_ERROR, MESH_ERROR_EMPTY)) {
		g_error_free(error);
	} else if (g_error_matches(error, MESH_ERROR, MESH_ERROR_CLOSED)) {
		/* The parent is done with us. */
		g_error_free(error);
		mesh_receiver_set_callback(receiver, NULL, NULL, NULL, NULL);
		g_main_loop_quit(w->loop);
	} else if (g_error_matches(error, MESH_ERROR, MESH_ERROR_NODE_FAILURE) ||
		   g_error_matches(error, MESH_ERROR, MESH_ERROR_SHUTTING_DOWN)) {
		/*
		 * The parent's node is gone or going: mesh_shutdown() closed
		 * our request channel and libmeshprocess is shutting this
		 * node down, or the parent died. libmeshprocess exits the
		 * process then; returning as well would run a second node
		 * shutdown beside its own. Quit only if that did not happen.
		 */
		g_debug("%s: commands: %s", w->name, error->message);
		g_error_free(error);
		mesh_receiver_set_callback(receiver, NULL, NULL, NULL, NULL);
		GSource *later = g_timeout_source_new_seconds(10);
		g_source_set_callback(later, quit_later, w, NULL);
		g_source_attach(later, g_main_loop_get_context(w->loop));
		g_source_unref(later);
	} else {
		mesh_receiver_set_callback(receiver, NULL, NULL, NULL, NULL);
		g_prefix_error(&error, "%s: commands: ", w->name);
		worker_fail(w, error);
	}
}

static void rpc_reply(Worker *w, MeshRpc *rpc, gint64 value)
{
	Meshctl__RpcReply *r = malloc(sizeof(*r));
	meshctl__rpc_reply__init(r);
	r->value = value;
	r->worker = strdup(w->name);
	r->pid = (guint32)mesh_host_get_pid();
	mesh_rpc_complete(rpc, &r->base);
}

static void rpc_cb(MeshReceiver *receiver, gpointer data)
{
	Worker *w = data;
	MeshRpc *rpc = NULL;
	GError *error = NULL;

	while (mesh_receiver_recv_rpc(receiver, &meshctl__rpc_request__descriptor, 0, &rpc,
				      &error)) {
		Meshctl__RpcRequest *req = (Meshctl__RpcRequest *)mesh_rpc_get_input(rpc);
		switch (req->request_case) {
		case MESHCTL__RPC_REQUEST__REQUEST_ADD:
			rpc_reply(w, rpc, req->add->a + req->add->b);
			break;
		case MESHCTL__RPC_REQUEST__REQUEST_DIVIDE:
			if (req->divide->b == 0) {
				/* The message, split at ": ", is the error chain. */
				GError *e = g_error_new(MESHCTL_ERROR, 0,
							"divide(%" G_GINT64_FORMAT ", 0) on %s: "
							"division by zero",
							req->divide->a, w->name);
				mesh_rpc_fail(rpc, e);
				g_error_free(e);
			} else {
				rpc_reply(w, rpc, req->divide->a / req->divide->b);
			}
			break;
		case MESHCTL__RPC_REQUEST__REQUEST_PING:
			rpc_reply(w, rpc, 0);
			break;
		case MESHCTL__RPC_REQUEST__REQUEST_HOLD: {
			g_ptr_array_add(w->held, rpc);
			Meshctl__Report *r = report_new();
			r->report_case = MESHCTL__REPORT__REPORT_HOLDING;
			r->holding = malloc(sizeof(*r->holding));
			meshctl__holding__init(r->holding);
			r->holding->worker = strdup(w->name);
			report(w, r);
			break;
		}
		default: {
			GError *e = g_error_new(MESHCTL_ERROR, 0, "%s: unknown request", w->name);
			mesh_rpc_fail(rpc, e);
			g_error_free(e);
		}
		}
	}
	if (!g_error_matches(error, MESH_ERROR, MESH_ERROR_EMPTY))
		mesh_receiver_set_callback(receiver, NULL, NULL, NULL, NULL);
	g_error_free(error);
}

static gboolean run_worker(Worker *w, Meshctl__Setup *setup, GError **error)
{
	MeshPort *commands = mesh_port_steal_from_field(setup->commands);
	MeshPort *reports = mesh_port_steal_from_field(setup->reports);
	MeshPort *rpc = mesh_port_steal_from_field(setup->rpc);

	if (!commands || !reports || !rpc) {
		mesh_port_close(commands);
		mesh_port_close(reports);
		mesh_port_close(rpc);
		g_set_error(error, MESHCTL_ERROR, 0, "setup of %s lacks a channel", w->name);
		return FALSE;
	}
	GMainContext *ctx = g_main_context_new();
	w->loop = g_main_loop_new(ctx, FALSE);
	w->held = g_ptr_array_new_with_free_func((GDestroyNotify)mesh_rpc_free);
	w->commands = mesh_receiver_from_port(commands, &meshctl__command__descriptor);
	w->reports = mesh_sender_from_port(reports, &meshctl__report__descriptor);
	w->rpc = mesh_receiver_from_port(rpc, NULL);
	mesh_receiver_set_callback(w->commands, ctx, commands_cb, w, NULL);
	mesh_receiver_set_callback(w->rpc, ctx, rpc_cb, w, NULL);

	g_main_context_push_thread_default(ctx);
	g_main_loop_run(w->loop);
	g_main_context_pop_thread_default(ctx);

	mesh_receiver_free(w->peer);
	mesh_receiver_free(w->rpc);
	mesh_receiver_free(w->commands);
	g_ptr_array_free(w->held, TRUE);
	mesh_sender_free(w->reports);
	g_main_loop_unref(w->loop);
	g_main_context_unref(ctx);
	if (w->error) {
		g_propagate_error(error, w->error);
		return FALSE;
	}
	return TRUE;
}

gboolean meshctl_host_main(MeshMessage *initial, gpointer user_data, GError **error)
{
	Meshctl__Setup *setup = (Meshctl__Setup *)mesh_message_into_typed(
		initial, &meshctl__setup__descriptor, error);
	if (!setup)
		return FALSE;

	Worker w = {.name = g_strdup(setup->name && *setup->name ? setup->name : "host")};
	gboolean ok;
	if (g_strcmp0(setup->role, "worker") == 0) {
		ok = run_worker(&w, setup, error);
	} else if (setup->role && g_str_has_prefix(setup->role, "bench-")) {
		ok = meshctl_bench_host(setup, error);
	} else {
		g_set_error(error, MESHCTL_ERROR, 0, "unknown host role \"%s\"",
			    setup->role ? setup->role : "");
		ok = FALSE;
	}
	mesh_payload_message_free(&setup->base);
	g_free(w.name);
	return ok;
}
