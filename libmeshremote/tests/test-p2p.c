/* SPDX-License-Identifier: MIT */
/*
 * The point-to-point transport: upstream's test_point_to_point and
 * test_point_to_point_os_resource_dropped, then across real processes over
 * a socketpair, TCP loopback and a pipe pair (and on a caller's context):
 * ports sent across and used, a moved sender dropped, 8 MiB echoed, the
 * peer killed mid-stream, a peer that stops reading; in process: malformed
 * streams played by hand and a port that would need a third node. This
 * program is also the child: main() runs "child SCENARIO" itself.
 */
#include <check.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "p2p/p2p-private.h"
#include "test-p2p.pb-c.h"

#define WAIT_US (30 * G_USEC_PER_SEC)
#define BIG_SIZE (8u << 20)

static char *self_exe;

/* Helpers. */

static P2ptest__Cmd *cmd_new(const char *text, MeshPort *port)
{
	P2ptest__Cmd *m = malloc(sizeof(*m));
	p2ptest__cmd__init(m);
	m->text = strdup(text);
	if (port)
		m->port = mesh_port_into_field(port);
	return m;
}

static void send_cmd(MeshSender *s, const char *text, MeshPort *port)
{
	mesh_sender_send(s, &cmd_new(text, port)->base);
}

/* Receives a Cmd; fails the test on an error. */
static P2ptest__Cmd *recv_cmd(MeshReceiver *r)
{
	ProtobufCMessage *m = NULL;
	GError *error = NULL;
	if (!mesh_receiver_recv(r, WAIT_US, &m, &error))
		ck_abort_msg("receive failed: %s", error->message);
	return (P2ptest__Cmd *)m;
}

/* Expects the receive to fail; returns the error. */
static GError *recv_error(MeshReceiver *r)
{
	ProtobufCMessage *m = NULL;
	GError *error = NULL;
	ck_assert_msg(!mesh_receiver_recv(r, WAIT_US, &m, &error), "a message came instead");
	return error;
}

typedef enum {
	LINK_SOCKETPAIR,
	LINK_TCP,
	LINK_PIPES,
	LINK_SOCKETPAIR_CONTEXT, /* the parent's link on a caller's context */
	LINK_N_KINDS,
} LinkKind;

static const char *kind_name[] = {"socketpair", "tcp", "pipes", "socketpair+context"};

/* Two connected ends: fds[0] in/out of one side, fds[1] of the other (pipes: in, out). */
typedef struct {
	int in, out;
} Ends;

static void tcp_pair(int *a, int *b)
{
	struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(addr);
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(lfd, 0);
	ck_assert_int_eq(bind(lfd, (struct sockaddr *)&addr, sizeof(addr)), 0);
	ck_assert_int_eq(listen(lfd, 1), 0);
	ck_assert_int_eq(getsockname(lfd, (struct sockaddr *)&addr, &len), 0);
	*a = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_eq(connect(*a, (struct sockaddr *)&addr, sizeof(addr)), 0);
	*b = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	ck_assert_int_ge(*b, 0);
	close(lfd);
}

static void make_ends(LinkKind kind, Ends *ours, Ends *theirs)
{
	int a, b;
	if (kind == LINK_PIPES) {
		int p1[2], p2[2];
		ck_assert_int_eq(pipe2(p1, O_CLOEXEC), 0);
		ck_assert_int_eq(pipe2(p2, O_CLOEXEC), 0);
		*ours = (Ends){p1[0], p2[1]};
		*theirs = (Ends){p2[0], p1[1]};
		return;
	}
	if (kind == LINK_TCP) {
		tcp_pair(&a, &b);
	} else {
		int sv[2];
		ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
		a = sv[0];
		b = sv[1];
	}
	*ours = (Ends){a, a};
	*theirs = (Ends){b, b};
}

/* Starts "child SCENARIO" with @theirs as fds 3 (in) and 4 (out); closes @theirs here. */
static pid_t spawn_child(const char *scenario, Ends theirs)
{
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int a = fcntl(theirs.in, F_DUPFD, 10);
		int b = fcntl(theirs.out, F_DUPFD, 10);
		if (a < 0 || b < 0 || dup2(a, 3) < 0 || dup2(b, 4) < 0)
			_exit(126);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		execl(self_exe, self_exe, "child", scenario, theirs.in == theirs.out ? "same" : "two",
		      (char *)NULL);
		_exit(127);
	}
	close(theirs.in);
	if (theirs.out != theirs.in)
		close(theirs.out);
	return pid;
}

static int child_wait(pid_t pid)
{
	int status = 0;
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* A link of the parent: the kind says which I/O mode. */
static MeshP2pLink *parent_link(LinkKind kind, Ends ours, MeshPort *port, GMainContext **ret_ctx)
{
	GError *error = NULL;
	*ret_ctx = NULL;
	if (kind == LINK_SOCKETPAIR_CONTEXT) {
		*ret_ctx = g_main_context_new();
		g_main_context_push_thread_default(*ret_ctx);
	}
	MeshP2pLink *link = mesh_p2p_link_new_take(NULL, ours.in, ours.out, port, *ret_ctx, &error);
	ck_assert_msg(link != NULL, "link: %s", error ? error->message : "?");
	return link;
}

static void parent_link_free(MeshP2pLink *link, GMainContext *ctx)
{
	mesh_p2p_link_free(link);
	if (ctx) {
		g_main_context_pop_thread_default(ctx);
		g_main_context_unref(ctx);
	}
}

/* Child scenarios. */

/*
 * echo: the initial port is a receiver of commands:
 *   "reply" + port: the sender for replies from now on; answers "ready"
 *   "echo" (+ data): sends the text and data back
 *   "drop" + port: closes that port; answers "dropped"
 *   "sink": nothing (a peer that floods us)
 * Ends (status 0) when the commands' sender closes; 3 on a failure.
 */
static int child_echo(int in, int out)
{
	MeshSender *tx, *reply = NULL;
	MeshReceiver *rx;
	GError *error = NULL;
	int rc = 0;

	mesh_channel_new(&p2ptest__cmd__descriptor, &tx, &rx);
	MeshP2pLink *link = mesh_p2p_link_new_take(NULL, in, out, mesh_sender_into_port(tx), NULL,
						   &error);
	if (!link)
		return 2;
	for (;;) {
		ProtobufCMessage *m = NULL;
		if (!mesh_receiver_recv(rx, 60 * G_USEC_PER_SEC, &m, &error)) {
			if (!g_error_matches(error, MESH_ERROR, MESH_ERROR_CLOSED)) {
				fprintf(stderr, "child: %s\n", error->message);
				rc = 3;
			}
			g_clear_error(&error);
			break;
		}
		P2ptest__Cmd *c = (P2ptest__Cmd *)m;
		if (strcmp(c->text, "reply") == 0) {
			mesh_sender_free(reply);
			reply = mesh_sender_from_port(mesh_port_steal_from_field(c->port),
						      &p2ptest__cmd__descriptor);
			send_cmd(reply, "ready", NULL);
		} else if (strcmp(c->text, "echo") == 0 && reply) {
			P2ptest__Cmd *back = cmd_new("echo", NULL);
			back->data.len = c->data.len;
			back->data.data = malloc(c->data.len ? c->data.len : 1);
			if (c->data.len)
				memcpy(back->data.data, c->data.data, c->data.len);
			mesh_sender_send(reply, &back->base);
		} else if (strcmp(c->text, "drop") == 0 && reply) {
			mesh_port_close(mesh_port_steal_from_field(c->port));
			send_cmd(reply, "dropped", NULL);
		}
		mesh_payload_message_free(m);
	}
	mesh_sender_free(reply);
	mesh_receiver_free(rx);
	mesh_p2p_link_shutdown(link, 10 * G_USEC_PER_SEC);
	mesh_p2p_link_free(link);
	return rc;
}

/* The parent side of the echo scenario: a link, the commands' sender, the replies' receiver. */
typedef struct {
	pid_t pid;
	MeshP2pLink *link;
	GMainContext *ctx;
	MeshSender *cmds;
	MeshReceiver *replies;
} Echo;

static void echo_start(Echo *e, LinkKind kind)
{
	Ends ours, theirs;
	MeshReceiver *r;
	MeshSender *rs;

	make_ends(kind, &ours, &theirs);
	e->pid = spawn_child("echo", theirs);
	mesh_channel_new(&p2ptest__cmd__descriptor, &e->cmds, &r);
	e->link = parent_link(kind, ours, mesh_receiver_into_port(r), &e->ctx);
	/* A channel inside a message across the link: the replies. */
	mesh_channel_new(&p2ptest__cmd__descriptor, &rs, &e->replies);
	send_cmd(e->cmds, "reply", mesh_sender_into_port(rs));
	P2ptest__Cmd *c = recv_cmd(e->replies);
	ck_assert_str_eq(c->text, "ready");
	mesh_payload_message_free(&c->base);
}

static void echo_finish(Echo *e, int expect_status)
{
	mesh_sender_free(e->cmds);
	e->cmds = NULL;
	if (expect_status >= 0)
		ck_assert_int_eq(child_wait(e->pid), expect_status);
	mesh_receiver_free(e->replies);
	mesh_p2p_link_shutdown(e->link, 10 * G_USEC_PER_SEC);
	parent_link_free(e->link, e->ctx);
}

/* Tests. */

/* Upstream's test_point_to_point: two links in one process over a socketpair. */
START_TEST(test_point_to_point)
{
	int sv[2];
	MeshSender *a, *bx;
	MeshReceiver *ax, *b;
	ProtobufCMessage *m = NULL;
	GError *error = NULL;

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	mesh_channel_new(&p2ptest__number__descriptor, &a, &ax);
	mesh_channel_new(&p2ptest__number__descriptor, &bx, &b);
	MeshP2pLink *left = mesh_p2p_link_new_take(NULL, sv[0], sv[0], mesh_receiver_into_port(ax),
						   NULL, &error);
	MeshP2pLink *right = mesh_p2p_link_new_take(NULL, sv[1], sv[1], mesh_sender_into_port(bx),
						    NULL, &error);
	ck_assert_ptr_nonnull(left);
	ck_assert_ptr_nonnull(right);
	P2ptest__Number *n = malloc(sizeof(*n));
	p2ptest__number__init(n);
	n->v = 5;
	mesh_sender_send(a, &n->base);
	ck_assert(mesh_receiver_recv(b, WAIT_US, &m, &error));
	ck_assert_uint_eq(((P2ptest__Number *)m)->v, 5);
	mesh_payload_message_free(m);

	MeshNodeId l_id, r_id;
	ck_assert(mesh_p2p_link_get_peer_id(left, &l_id));
	ck_assert(mesh_p2p_link_get_peer_id(right, &r_id));
	ck_assert(mesh_uuid_equal(&l_id, mesh_node_get_id(mesh_p2p_link_get_node(right))));
	ck_assert(mesh_uuid_equal(&r_id, mesh_node_get_id(mesh_p2p_link_get_node(left))));
	ck_assert_int_eq(mesh_p2p_link_get_state(left, NULL), MESH_P2P_LINK_OPEN);

	ck_assert(mesh_p2p_link_shutdown(left, WAIT_US));
	mesh_p2p_link_shutdown(right, WAIT_US);
	ck_assert_int_eq(mesh_p2p_link_get_state(left, NULL), MESH_P2P_LINK_CLOSED);
	/* After the shutdown, the channel across fails (upstream: fail_all_nodes). */
	ck_assert(!mesh_receiver_recv(b, WAIT_US, &m, &error));
	ck_assert_int_eq(error->code, MESH_ERROR_NODE_FAILURE);
	g_clear_error(&error);
	mesh_p2p_link_free(left);
	mesh_p2p_link_free(right);
	mesh_sender_free(a);
	mesh_receiver_free(b);
}
END_TEST

static P2ptest__Cmd *cmd_with_fd(void)
{
	int sv[2];
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	P2ptest__Cmd *c = cmd_new("fd", NULL);
	c->fd = mesh_payload_fd_new_take(sv[0]);
	close(sv[1]);
	return c;
}

/*
 * Upstream's test_point_to_point_os_resource_dropped: a message with an fd
 * never arrives, and the receiver sees an error once the links are shut
 * down, not a message.
 */
START_TEST(test_point_to_point_os_resource_dropped)
{
	int sv[2];
	MeshSender *sender;
	MeshReceiver *sender_port, *receiver;
	MeshSender *receiver_port;
	ProtobufCMessage *m = NULL;
	GError *error = NULL;

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	mesh_channel_new(&p2ptest__cmd__descriptor, &sender, &sender_port);
	mesh_channel_new(&p2ptest__cmd__descriptor, &receiver_port, &receiver);
	MeshP2pLink *left = mesh_p2p_link_new_take(
		NULL, sv[0], sv[0], mesh_receiver_into_port(sender_port), NULL, &error);
	MeshP2pLink *right = mesh_p2p_link_new_take(
		NULL, sv[1], sv[1], mesh_sender_into_port(receiver_port), NULL, &error);
	mesh_sender_send(sender, &cmd_with_fd()->base);
	mesh_sender_free(sender);
	mesh_p2p_link_shutdown(left, WAIT_US);
	mesh_p2p_link_shutdown(right, WAIT_US);
	ck_assert(!mesh_receiver_recv(receiver, WAIT_US, &m, &error));
	g_clear_error(&error);
	mesh_receiver_free(receiver);
	mesh_p2p_link_free(left);
	mesh_p2p_link_free(right);
}
END_TEST

/*
 * Our deviation from upstream: a message with an fd sent toward the link
 * fails its port at once (the sink's capabilities: no OS handles), so the
 * receiver across sees the error without any shutdown.
 */
START_TEST(test_fd_message_fails_port)
{
	Echo e;
	echo_start(&e, (LinkKind)_i);
	MeshSender *tx;
	MeshReceiver *rx;
	mesh_channel_new(&p2ptest__cmd__descriptor, &tx, &rx);
	send_cmd(e.cmds, "reply", mesh_sender_into_port(tx));
	P2ptest__Cmd *c = recv_cmd(rx);
	mesh_payload_message_free(&c->base);
	/* The commands' port fails at the sender: the child's receive fails (status 3). */
	mesh_sender_send(e.cmds, &cmd_with_fd()->base);
	ck_assert(mesh_sender_is_closed(e.cmds));
	ck_assert_int_eq(child_wait(e.pid), 3);
	mesh_receiver_free(rx);
	echo_finish(&e, -1);
}
END_TEST

/* Ports across, a channel inside a message, 8 MiB echoed, a moved sender dropped. */
START_TEST(test_echo_across)
{
	Echo e;
	echo_start(&e, (LinkKind)_i);

	for (int i = 0; i < 100; i++) {
		char text[32];
		g_snprintf(text, sizeof(text), "msg %d", i);
		P2ptest__Cmd *c = cmd_new("echo", NULL);
		c->data.data = (uint8_t *)strdup(text);
		c->data.len = strlen(text);
		mesh_sender_send(e.cmds, &c->base);
	}
	for (int i = 0; i < 100; i++) {
		char text[32];
		g_snprintf(text, sizeof(text), "msg %d", i);
		P2ptest__Cmd *c = recv_cmd(e.replies);
		ck_assert_uint_eq(c->data.len, strlen(text));
		ck_assert(memcmp(c->data.data, text, c->data.len) == 0);
		mesh_payload_message_free(&c->base);
	}

	/* 8 MiB each way. */
	P2ptest__Cmd *big = cmd_new("echo", NULL);
	big->data.len = BIG_SIZE;
	big->data.data = malloc(BIG_SIZE);
	for (size_t i = 0; i < BIG_SIZE; i++)
		big->data.data[i] = (uint8_t)(i * 7 + (i >> 13));
	mesh_sender_send(e.cmds, &big->base);
	P2ptest__Cmd *c = recv_cmd(e.replies);
	ck_assert_uint_eq(c->data.len, BIG_SIZE);
	for (size_t i = 0; i < BIG_SIZE; i++)
		if (c->data.data[i] != (uint8_t)(i * 7 + (i >> 13)))
			ck_abort_msg("byte %zu differs", i);
	mesh_payload_message_free(&c->base);

	/* A sender moved across and dropped there: its receiver here sees the close. */
	MeshSender *dtx;
	MeshReceiver *drx;
	mesh_channel_new(&p2ptest__cmd__descriptor, &dtx, &drx);
	send_cmd(e.cmds, "drop", mesh_sender_into_port(dtx));
	c = recv_cmd(e.replies);
	ck_assert_str_eq(c->text, "dropped");
	mesh_payload_message_free(&c->base);
	GError *error = recv_error(drx);
	ck_assert_msg(g_error_matches(error, MESH_ERROR, MESH_ERROR_CLOSED), "%s", error->message);
	g_error_free(error);
	mesh_receiver_free(drx);

	echo_finish(&e, 0);
}
END_TEST

/* The child killed mid-stream: the replies' receiver fails, naming the child's node. */
START_TEST(test_peer_killed)
{
	Echo e;
	echo_start(&e, (LinkKind)_i);
	MeshNodeId peer;
	char id[33];

	ck_assert(mesh_p2p_link_get_peer_id(e.link, &peer));
	for (int i = 0; i < 50; i++)
		send_cmd(e.cmds, "echo", NULL);
	P2ptest__Cmd *c = recv_cmd(e.replies);
	mesh_payload_message_free(&c->base);
	kill(e.pid, SIGKILL);
	ck_assert_int_eq(child_wait(e.pid), 128 + SIGKILL);
	GError *error = NULL;
	ProtobufCMessage *m = NULL;
	/* What was already on its way may still come; then the failure. */
	while (mesh_receiver_recv(e.replies, WAIT_US, &m, &error))
		mesh_payload_message_free(m);
	ck_assert_msg(g_error_matches(error, MESH_ERROR, MESH_ERROR_NODE_FAILURE), "%s",
		      error->message);
	ck_assert_msg(strstr(error->message, mesh_uuid_to_string(&peer, id)) != NULL,
		      "the error does not name the peer %s: %s", id, error->message);
	g_error_free(error);
	echo_finish(&e, -1);
}
END_TEST

/* The sender's lock in test_send_failure_deferred: the describer takes it. */
static GMutex sender_lock;
static gint described;
static gint described_inside_send;

static char *describe_locking(MeshP2pLink *link, const MeshNodeId *peer, gpointer data)
{
	/* Inside the send, on the sending thread, the lock is this thread's. */
	if (!g_mutex_trylock(&sender_lock)) {
		g_atomic_int_inc(&described_inside_send);
	} else {
		g_mutex_unlock(&sender_lock);
	}
	g_atomic_int_inc(&described);
	return g_strdup("the echo child");
}

/*
 * A send that meets a dead peer (EPIPE, before the I/O context saw the end)
 * fails the link on the I/O context, not on the sender's stack: a sender
 * that holds a lock its describer takes (libmeshprocess's Mesh cloned a
 * host's request sender under its lock, and the describer takes it) must
 * not deadlock. The link reports the failure at once; the ports learn it
 * from the I/O context, with the describer's words.
 */
START_TEST(test_send_failure_deferred)
{
	Echo e;
	echo_start(&e, LINK_SOCKETPAIR_CONTEXT);
	g_atomic_int_set(&described, 0);
	g_atomic_int_set(&described_inside_send, 0);
	mesh_p2p_link_set_peer_describer(e.link, describe_locking, NULL, NULL);
	kill(e.pid, SIGKILL);
	ck_assert_int_eq(child_wait(e.pid), 128 + SIGKILL);

	/* Nobody iterates the link's context: the send is the first to see it. */
	g_mutex_lock(&sender_lock);
	send_cmd(e.cmds, "echo", NULL);
	g_mutex_unlock(&sender_lock);
	int inside = g_atomic_int_get(&described_inside_send);
	ck_assert_msg(inside == 0, "the describer ran inside the send");
	GError *error = NULL;
	ck_assert_int_eq(mesh_p2p_link_get_state(e.link, &error), MESH_P2P_LINK_FAILED);
	ck_assert_msg(g_error_matches(error, MESH_ERROR, MESH_ERROR_NODE_FAILURE), "%s",
		      error->message);
	g_clear_error(&error);
	/* Further sends are dropped, not written. */
	send_cmd(e.cmds, "echo", NULL);

	error = recv_error(e.replies); /* iterates the context: the failure runs there */
	ck_assert_int_eq(error->code, MESH_ERROR_NODE_FAILURE);
	ck_assert_msg(strstr(error->message, "the echo child") != NULL, "%s", error->message);
	g_error_free(error);
	int n_described = g_atomic_int_get(&described);
	ck_assert_int_eq(n_described, 1);
	inside = g_atomic_int_get(&described_inside_send);
	ck_assert_msg(inside == 0, "the describer ran inside a send");
	echo_finish(&e, -1);
}
END_TEST

static void ended_cb(MeshP2pLink *link, const GError *error, gpointer data)
{
	g_async_queue_push(data, g_strdup(error ? error->message : "clean"));
}

/*
 * A peer that stops reading (SIGSTOP): sends wait at the limit, then the
 * link fails "peer not reading" and the ended function says so; memory
 * stays at the limit.
 */
START_TEST(test_slow_reader)
{
	Echo e;
	echo_start(&e, (LinkKind)_i);
	GAsyncQueue *ended = g_async_queue_new_full(g_free);

	mesh_p2p_link_set_ended_func(e.link, ended_cb, g_async_queue_ref(ended),
				     (GDestroyNotify)g_async_queue_unref);
	mesh_p2p_link_set_send_limit(e.link, 1u << 20, G_USEC_PER_SEC / 2);
	ck_assert_int_eq(kill(e.pid, SIGSTOP), 0);
	int sent = 0;
	while (mesh_p2p_link_get_state(e.link, NULL) == MESH_P2P_LINK_OPEN && sent < 1000) {
		P2ptest__Cmd *c = cmd_new("sink", NULL);
		c->data.len = 256 * 1024;
		c->data.data = calloc(1, c->data.len);
		mesh_sender_send(e.cmds, &c->base);
		sent++;
	}
	GError *error = NULL;
	ck_assert_int_eq(mesh_p2p_link_get_state(e.link, &error), MESH_P2P_LINK_FAILED);
	ck_assert_msg(strstr(error->message, "peer not reading") != NULL, "%s", error->message);
	g_error_free(error);
	if (e.ctx)
		while (g_async_queue_length(ended) == 0)
			g_main_context_iteration(e.ctx, TRUE);
	char *why = g_async_queue_timeout_pop(ended, WAIT_US);
	ck_assert_ptr_nonnull(why);
	ck_assert_msg(strstr(why, "peer not reading") != NULL, "%s", why);
	g_free(why);
	kill(e.pid, SIGKILL);
	kill(e.pid, SIGCONT);
	child_wait(e.pid);
	error = recv_error(e.replies);
	ck_assert_int_eq(error->code, MESH_ERROR_NODE_FAILURE);
	g_error_free(error);
	echo_finish(&e, -1);
	g_async_queue_unref(ended);
}
END_TEST

/* A stream played by hand: the link's side, and our raw end. */
typedef struct {
	MeshP2pLink *link;
	MeshReceiver *rx;
	int raw;
	uint8_t hello[P2P_HELLO_SIZE]; /* the link's */
} Hand;

static void hand_start(Hand *h)
{
	int sv[2];
	MeshSender *tx;
	GError *error = NULL;

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	mesh_channel_new(&p2ptest__cmd__descriptor, &tx, &h->rx);
	h->link = mesh_p2p_link_new_take(NULL, sv[0], sv[0], mesh_sender_into_port(tx), NULL,
					 &error);
	ck_assert_ptr_nonnull(h->link);
	h->raw = sv[1];
	size_t got = 0;
	while (got < P2P_HELLO_SIZE) {
		ssize_t n = read(h->raw, h->hello + got, P2P_HELLO_SIZE - got);
		ck_assert_int_gt(n, 0);
		got += (size_t)n;
	}
	ck_assert(memcmp(h->hello, "mesh", 4) == 0);
}

static void hand_write(Hand *h, const void *data, size_t size)
{
	ck_assert_int_eq(write(h->raw, data, size), (ssize_t)size);
}

static void hand_hello(Hand *h)
{
	uint8_t hello[P2P_HELLO_SIZE];
	MeshNodeId node;
	MeshPortId port;
	mesh_uuid_generate(&node);
	mesh_uuid_generate(&port);
	p2p_hello_build(hello, &node, &port);
	hand_write(h, hello, sizeof(hello));
}

static void hand_frame_len(Hand *h, guint64 len)
{
	guint64 le = GUINT64_TO_LE(len);
	hand_write(h, &le, 8);
}

/* Waits for the link to end; returns its state (error: why). */
static MeshP2pLinkState hand_wait_end(Hand *h, GError **error)
{
	GAsyncQueue *ended = g_async_queue_new_full(g_free);
	mesh_p2p_link_set_ended_func(h->link, ended_cb, g_async_queue_ref(ended),
				     (GDestroyNotify)g_async_queue_unref);
	char *why = g_async_queue_timeout_pop(ended, WAIT_US);
	ck_assert_ptr_nonnull(why);
	g_free(why);
	g_async_queue_unref(ended);
	return mesh_p2p_link_get_state(h->link, error);
}

static void hand_finish(Hand *h)
{
	mesh_p2p_link_free(h->link);
	mesh_receiver_free(h->rx);
	close(h->raw);
}

START_TEST(test_bad_magic)
{
	Hand h;
	GError *error = NULL;
	hand_start(&h);
	uint8_t hello[P2P_HELLO_SIZE] = "MESH";
	hand_write(&h, hello, sizeof(hello));
	ck_assert_int_eq(hand_wait_end(&h, &error), MESH_P2P_LINK_FAILED);
	ck_assert_msg(strstr(error->message, "invalid address header"), "%s", error->message);
	g_error_free(error);
	/* No peer to name: the local port closes; the link says why. */
	error = recv_error(h.rx);
	ck_assert_int_eq(error->code, MESH_ERROR_CLOSED);
	g_error_free(error);
	hand_finish(&h);
}
END_TEST

START_TEST(test_oversize_frame)
{
	Hand h;
	GError *error = NULL;
	hand_start(&h);
	hand_hello(&h);
	hand_frame_len(&h, P2P_MAX_FRAME + 1);
	ck_assert_int_eq(hand_wait_end(&h, &error), MESH_P2P_LINK_FAILED);
	ck_assert_msg(strstr(error->message, "over the limit"), "%s", error->message);
	g_error_free(error);
	error = recv_error(h.rx);
	ck_assert_msg(strstr(error->message, "over the limit"), "%s", error->message);
	g_error_free(error);
	hand_finish(&h);
}
END_TEST

/* A frame cut by the end of stream (small and large), and a hello cut short. */
START_TEST(test_truncated)
{
	static const guint64 lens[] = {100, 1u << 20};
	for (int i = 0; i < 3; i++) {
		Hand h;
		GError *error = NULL;
		hand_start(&h);
		if (i < 2) {
			hand_hello(&h);
			hand_frame_len(&h, lens[i]);
			hand_write(&h, "partial", 7);
		} else {
			hand_write(&h, "mesh", 4);
		}
		shutdown(h.raw, SHUT_WR);
		ck_assert_int_eq(hand_wait_end(&h, &error), MESH_P2P_LINK_FAILED);
		ck_assert_msg(strstr(error->message, "end of stream in"), "%s", error->message);
		g_error_free(error);
		hand_finish(&h);
	}
}
END_TEST

/*
 * A frame that is no event is dropped, as the core drops any malformed
 * event: the link stays up; the peer's end of stream then ends it cleanly.
 */
START_TEST(test_garbage_event)
{
	Hand h;
	GError *error = NULL;
	hand_start(&h);
	hand_hello(&h);
	hand_frame_len(&h, 5);
	hand_write(&h, "junk!", 5);
	hand_frame_len(&h, 0);
	shutdown(h.raw, SHUT_WR);
	ck_assert_int_eq(hand_wait_end(&h, &error), MESH_P2P_LINK_CLOSED);
	ck_assert_ptr_null(error);
	hand_finish(&h);
}
END_TEST

/*
 * Three nodes in one process: B and C each linked to A (one node, two
 * links). B sends a receiver across to A, A forwards it to C: its peer is on
 * B, which C cannot reach: it arrives failed, "no extra connections".
 */
START_TEST(test_third_node)
{
	int ab[2], ac[2];
	GError *error = NULL;
	MeshSender *a_to_b, *b_in_tx, *a_to_c, *c_in_tx;
	MeshReceiver *a_from_b_rx, *b_in, *a_from_c_rx, *c_in;

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ab), 0);
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ac), 0);
	MeshNode *a = mesh_node_new();
	/* A -> B commands; B's initial port is a receiver (unused), A's a sender. */
	mesh_channel_new(&p2ptest__cmd__descriptor, &a_to_b, &a_from_b_rx);
	mesh_channel_new(&p2ptest__cmd__descriptor, &b_in_tx, &b_in);
	MeshP2pLink *ab_link = mesh_p2p_link_new_take(a, ab[0], ab[0],
						      mesh_receiver_into_port(a_from_b_rx), NULL,
						      &error);
	MeshP2pLink *b_link = mesh_p2p_link_new_take(NULL, ab[1], ab[1],
						     mesh_sender_into_port(b_in_tx), NULL, &error);
	mesh_channel_new(&p2ptest__cmd__descriptor, &a_to_c, &a_from_c_rx);
	mesh_channel_new(&p2ptest__cmd__descriptor, &c_in_tx, &c_in);
	MeshP2pLink *ac_link = mesh_p2p_link_new_take(a, ac[0], ac[0],
						      mesh_receiver_into_port(a_from_c_rx), NULL,
						      &error);
	MeshP2pLink *c_link = mesh_p2p_link_new_take(NULL, ac[1], ac[1],
						     mesh_sender_into_port(c_in_tx), NULL, &error);
	ck_assert(ab_link && b_link && ac_link && c_link);

	/* A way from B back to A: a sender moved across. */
	MeshSender *b_to_a;
	MeshReceiver *a_in;
	mesh_channel_new(&p2ptest__cmd__descriptor, &b_to_a, &a_in);
	send_cmd(a_to_b, "here is a way back", mesh_sender_into_port(b_to_a));
	P2ptest__Cmd *c = recv_cmd(b_in);
	MeshSender *b_back = mesh_sender_from_port(mesh_port_steal_from_field(c->port),
						   &p2ptest__cmd__descriptor);
	mesh_payload_message_free(&c->base);

	/* On B: a channel whose receiver goes to A, then on to C. */
	MeshSender *keep_tx;
	MeshReceiver *travel_rx;
	mesh_channel_new(&p2ptest__cmd__descriptor, &keep_tx, &travel_rx);
	send_cmd(b_back, "to forward", mesh_receiver_into_port(travel_rx));
	c = recv_cmd(a_in);
	MeshPort *travel = mesh_port_steal_from_field(c->port);
	mesh_payload_message_free(&c->base);
	ck_assert_ptr_nonnull(travel);
	send_cmd(a_to_c, "forwarded", travel);
	c = recv_cmd(c_in);
	MeshReceiver *arrived = mesh_receiver_from_port(mesh_port_steal_from_field(c->port),
							&p2ptest__cmd__descriptor);
	mesh_payload_message_free(&c->base);
	error = recv_error(arrived);
	ck_assert_msg(strstr(error->message, "no extra connections allowed in point-to-point mesh"),
		      "%s", error->message);
	g_error_free(error);

	/* The links themselves are fine. */
	ck_assert_int_eq(mesh_p2p_link_get_state(c_link, NULL), MESH_P2P_LINK_OPEN);
	ck_assert_int_eq(mesh_p2p_link_get_state(ab_link, NULL), MESH_P2P_LINK_OPEN);
	mesh_receiver_free(arrived);
	mesh_sender_free(keep_tx);
	mesh_sender_free(b_back);
	mesh_sender_free(a_to_b);
	mesh_sender_free(a_to_c);
	mesh_receiver_free(a_in);
	mesh_receiver_free(b_in);
	mesh_receiver_free(c_in);
	mesh_p2p_link_free(ab_link);
	mesh_p2p_link_free(ac_link);
	mesh_p2p_link_free(b_link);
	mesh_p2p_link_free(c_link);
	mesh_node_unref(a);
}
END_TEST

/*
 * One node with a Unix mesh and a point-to-point link at once: U leads a
 * Unix mesh with J and is linked to P. Channels work on both; a receiver
 * from P that U forwards to J needs J to reach P, which only U can: it
 * fails on J instead of hanging (the leader cannot introduce P; which of
 * the failures reaches J first depends on timing).
 */
START_TEST(test_with_unix_mesh)
{
	GError *error = NULL;
	MeshNode *u = mesh_node_new();
	MeshUnixNode *unode = mesh_unix_node_new(u, NULL);

	/* J joins U's Unix mesh (in this process). */
	MeshPort *u_port, *j_invited, *j_port = NULL;
	MeshInvitation *inv = NULL;
	mesh_port_new_pair(&u_port, &j_invited);
	ck_assert(mesh_unix_node_invite(unode, j_invited, -1, &inv, &error));
	MeshUnixNode *jnode = mesh_unix_node_join(inv, NULL, WAIT_US, &j_port, &error);
	ck_assert_msg(jnode != NULL, "%s", error ? error->message : "?");
	MeshSender *u_to_j = mesh_sender_from_port(u_port, &p2ptest__cmd__descriptor);
	MeshReceiver *j_in = mesh_receiver_from_port(j_port, &p2ptest__cmd__descriptor);

	/* P is linked to U's node. */
	int sv[2];
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	MeshSender *p_to_u, *u_in_tx;
	MeshReceiver *p_in_rx, *u_in;
	mesh_channel_new(&p2ptest__cmd__descriptor, &p_to_u, &p_in_rx);
	mesh_channel_new(&p2ptest__cmd__descriptor, &u_in_tx, &u_in);
	MeshP2pLink *u_link = mesh_p2p_link_new_take(u, sv[0], sv[0], mesh_sender_into_port(u_in_tx),
						     NULL, &error);
	MeshP2pLink *p_link = mesh_p2p_link_new_take(NULL, sv[1], sv[1],
						     mesh_receiver_into_port(p_in_rx), NULL, &error);
	ck_assert(u_link && p_link);

	/* Both work. */
	send_cmd(u_to_j, "to J", NULL);
	P2ptest__Cmd *c = recv_cmd(j_in);
	ck_assert_str_eq(c->text, "to J");
	mesh_payload_message_free(&c->base);
	MeshSender *keep;
	MeshReceiver *travel;
	mesh_channel_new(&p2ptest__cmd__descriptor, &keep, &travel);
	send_cmd(p_to_u, "from P", mesh_receiver_into_port(travel));
	c = recv_cmd(u_in);
	ck_assert_str_eq(c->text, "from P");
	MeshPort *fwd = mesh_port_steal_from_field(c->port);
	mesh_payload_message_free(&c->base);

	/* U forwards P's receiver to J: its peer is on P, which J cannot reach. */
	send_cmd(u_to_j, "forwarded", fwd);
	c = recv_cmd(j_in);
	MeshReceiver *arrived = mesh_receiver_from_port(mesh_port_steal_from_field(c->port),
							&p2ptest__cmd__descriptor);
	mesh_payload_message_free(&c->base);
	error = recv_error(arrived);
	ck_assert_int_eq(error->code, MESH_ERROR_NODE_FAILURE);
	g_error_free(error);
	ck_assert_int_eq(mesh_p2p_link_get_state(u_link, NULL), MESH_P2P_LINK_OPEN);

	mesh_receiver_free(arrived);
	mesh_sender_free(keep);
	mesh_sender_free(p_to_u);
	mesh_receiver_free(u_in);
	mesh_sender_free(u_to_j);
	mesh_receiver_free(j_in);
	mesh_p2p_link_free(p_link);
	mesh_p2p_link_free(u_link);
	mesh_unix_node_free(jnode);
	mesh_unix_node_free(unode);
	mesh_node_unref(u);
}
END_TEST

/* Bad arguments: the fds and the port are taken, the port fails. */
START_TEST(test_bad_fd)
{
	MeshSender *tx;
	MeshReceiver *rx;
	GError *error = NULL;
	int fds[2];

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, fds), 0);
	mesh_channel_new(&p2ptest__cmd__descriptor, &tx, &rx);
	ck_assert_ptr_null(
		mesh_p2p_link_new_take(NULL, fds[0], fds[0], mesh_sender_into_port(tx), NULL, &error));
	ck_assert_int_eq(error->code, MESH_ERROR_INVALID_ARGUMENT);
	g_clear_error(&error);
	ck_assert_int_eq(fcntl(fds[0], F_GETFD), -1);
	error = recv_error(rx);
	g_error_free(error);
	mesh_receiver_free(rx);
	close(fds[1]);
}
END_TEST

int main(int argc, char **argv)
{
	if (argc >= 4 && strcmp(argv[1], "child") == 0) {
		gboolean same = strcmp(argv[3], "same") == 0;
		if (same)
			close(4);
		if (strcmp(argv[2], "echo") == 0)
			return child_echo(3, same ? 3 : 4);
		return 125;
	}
	signal(SIGPIPE, SIG_IGN);
	self_exe = g_file_read_link("/proc/self/exe", NULL);

	Suite *s = suite_create("libmeshremote-p2p");
	TCase *tc = tcase_create("upstream");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_point_to_point);
	tcase_add_test(tc, test_point_to_point_os_resource_dropped);
	suite_add_tcase(s, tc);

	TCase *tp = tcase_create("processes");
	tcase_set_timeout(tp, 120);
	tcase_add_loop_test(tp, test_echo_across, 0, LINK_N_KINDS);
	tcase_add_loop_test(tp, test_peer_killed, 0, LINK_N_KINDS);
	tcase_add_loop_test(tp, test_slow_reader, 0, LINK_N_KINDS);
	tcase_add_test(tp, test_send_failure_deferred);
	tcase_add_loop_test(tp, test_fd_message_fails_port, 0, LINK_N_KINDS);
	suite_add_tcase(s, tp);

	TCase *th = tcase_create("stream");
	tcase_set_timeout(th, 60);
	tcase_add_test(th, test_bad_magic);
	tcase_add_test(th, test_oversize_frame);
	tcase_add_test(th, test_truncated);
	tcase_add_test(th, test_garbage_event);
	tcase_add_test(th, test_third_node);
	tcase_add_test(th, test_with_unix_mesh);
	tcase_add_test(th, test_bad_fd);
	suite_add_tcase(s, th);

	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_ENV);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	(void)kind_name;
	return failed ? 1 : 0;
}
