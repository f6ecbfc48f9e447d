/* SPDX-License-Identifier: MIT */
/*
 * Upstream's multi-node Unix tests (unix_node.rs, and the ALPC-only ones of
 * alpc_node.rs in their Unix form), each node a process of its own: this
 * test is node1 (the leader, unless a test says otherwise) and every other
 * node is a unix-ctl-child, driven over a control socket outside the mesh.
 * Upstream runs its nodes in one process; here every hop crosses a real
 * socket between processes. Each test names the upstream test it ports.
 */
#include <check.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/socket.h>
#include <unistd.h>

#include <pal/pal.h>

#include "unix-test.h"

#define WAIT_MS 20000

typedef struct {
	PalChild *process;
	int sock; /* the control socket */
} Ctl;

static MeshNode *node1;
static MeshUnixNode *unode1;

static void setup(void)
{
	node1 = mesh_node_new();
	unode1 = mesh_unix_node_new(node1, NULL);
}

static void teardown(void)
{
	if (unode1)
		mesh_unix_node_shutdown(unode1, 5 * G_USEC_PER_SEC);
	mesh_unix_node_free(unode1);
	unode1 = NULL;
	mesh_node_unref(node1);
}

static Ctl *ctl_spawn(const char *const *args, int inv_fd)
{
	Ctl *c = g_new0(Ctl, 1);
	int sv[2];
	ck_assert_int_eq(pal_socketpair(SOCK_SEQPACKET, sv), 0);
	PalSpawn *spawn = pal_spawn_new(UNIX_CTL_CHILD);
	pal_spawn_add_args(spawn, args);
	if (inv_fd >= 0)
		pal_spawn_dup_fd(spawn, inv_fd, 3);
	pal_spawn_dup_fd(spawn, sv[1], 4);
	pal_spawn_set_parent_death_signal(spawn, SIGKILL);
	ck_assert_int_eq(pal_spawn_run(spawn, &c->process), 0);
	pal_spawn_free(spawn);
	close(sv[1]);
	c->sock = sv[0];
	return c;
}

static Ctl *ctl_join_invitation(MeshInvitation *inv)
{
	MeshNodeId ln, rn;
	MeshPortId lp, rp;
	char ids[4][33];
	mesh_invitation_get_address(inv, &ln, &lp, &rn, &rp);
	uuid_to_hex(&ln, ids[0]);
	uuid_to_hex(&lp, ids[1]);
	uuid_to_hex(&rn, ids[2]);
	uuid_to_hex(&rp, ids[3]);
	const char *args[] = {"join", ids[0], ids[1], ids[2], ids[3], NULL};
	Ctl *c = ctl_spawn(args, mesh_invitation_get_fd(inv));
	mesh_invitation_free(inv);
	return c;
}

/* node1 invites a ctl child: @ret_mine is node1's end, the child's "boot" the other. */
static Ctl *ctl_invite(MeshPort **ret_mine)
{
	MeshPort *theirs;
	MeshInvitation *inv = NULL;
	GError *error = NULL;
	mesh_port_new_pair(ret_mine, &theirs);
	ck_assert_msg(mesh_unix_node_invite(unode1, theirs, -1, &inv, &error), "%s",
		      error ? error->message : "");
	return ctl_join_invitation(inv);
}

static void ctl_send(Ctl *c, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
static void ctl(Ctl *c, const char *want, const char *fmt, ...) G_GNUC_PRINTF(3, 4);

static void ctl_send(Ctl *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *cmd = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	ck_assert_int_eq(send(c->sock, cmd, strlen(cmd), MSG_NOSIGNAL), (ssize_t)strlen(cmd));
	g_free(cmd);
}

/* The next reply; its fd (if any) in @ret_fd. */
static char *ctl_reply_fd(Ctl *c, int *ret_fd)
{
	char buf[512];
	struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf) - 1};
	PalFdArray *fds = pal_fd_array_new();
	struct pollfd p = {.fd = c->sock, .events = POLLIN};
	ck_assert_msg(poll(&p, 1, 2 * WAIT_MS) == 1, "no reply from a node");
	ssize_t got = pal_recv_with_fds(c->sock, &iov, 1, fds, 1, 0);
	ck_assert_msg(got > 0, "a node closed its control socket (%zd)", got);
	buf[got] = 0;
	if (ret_fd)
		*ret_fd = pal_fd_array_len(fds) ? pal_fd_array_steal(fds, 0) : -1;
	pal_fd_array_free(fds);
	return g_strdup(buf);
}

static char *ctl_reply(Ctl *c)
{
	return ctl_reply_fd(c, NULL);
}

/*
 * A shutdown's reply. Nodes shutting down at once may each see the other's
 * end of stream before they end their own: "unclean" then says only that;
 * upstream's shutdown has no verdict. It must complete, in time.
 */
static void ctl_expect_shutdown(Ctl *c)
{
	char *r = ctl_reply(c);
	ck_assert_msg(strcmp(r, "clean") == 0 || strcmp(r, "unclean") == 0, "%s", r);
	g_free(r);
}

static void ctl(Ctl *c, const char *want, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *cmd = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	ctl_send(c, "%s", cmd);
	char *r = ctl_reply(c);
	ck_assert_msg(strcmp(r, want) == 0, "%s: \"%s\", wanted \"%s\"", cmd, r, want);
	g_free(r);
	g_free(cmd);
}

/* A ctl child's "invite SLOT": the invitation it got, for another node. */
static MeshInvitation *ctl_invite_from(Ctl *c, const char *slot)
{
	int fd = -1;
	ctl_send(c, "invite %s", slot);
	char *r = ctl_reply_fd(c, &fd);
	char **w = g_strsplit(r, " ", 0);
	ck_assert_msg(g_strv_length(w) == 5 && strcmp(w[0], "inv") == 0 && fd >= 0, "%s", r);
	MeshNodeId ln, rn;
	MeshPortId lp, rp;
	ck_assert(uuid_from_hex(w[1], &ln) && uuid_from_hex(w[2], &lp) &&
		  uuid_from_hex(w[3], &rn) && uuid_from_hex(w[4], &rp));
	g_strfreev(w);
	g_free(r);
	return mesh_invitation_new_take(&ln, &lp, &rn, &rp, fd);
}

/* Closes the control socket and waits for the child's exit status. */
static int ctl_finish(Ctl *c)
{
	int status = -1;
	close(c->sock);
	for (int i = 0; i < 4000 && pal_child_try_wait(c->process, &status) != 0; i++)
		g_usleep(5000);
	if (pal_child_try_wait(c->process, &status) != 0) {
		pal_child_kill(c->process, SIGKILL);
		pal_child_wait(c->process, &status);
		ck_abort_msg("a node did not exit");
	}
	pal_child_free(c->process);
	g_free(c);
	return status;
}

static MeshMessage *recv_message(TestRecv *r)
{
	MeshMessage *msg = test_recv_wait(r, WAIT_MS);
	ck_assert_msg(test_recv_is_message(msg), "no message (%p)", msg);
	return msg;
}

static void send_text(MeshPort *port, const char *text)
{
	ck_assert(port_send_bytes(port, text));
}

/* upstream unix_node.rs test_dropped_shutdown */
START_TEST(test_dropped_shutdown)
{
	MeshPort *send;
	Ctl *follower = ctl_invite(&send);
	ctl(follower, "ok", "send boot joined");
	TestRecv *r = test_recv_new(send);
	mesh_message_free(recv_message(r)); /* the follower is up */
	/* The follower's node goes without a shutdown (its process exits at once). */
	ctl_send(follower, "drop");
	ck_assert_int_eq(ctl_finish(follower), 0);

	gint64 start = g_get_monotonic_time();
	mesh_unix_node_shutdown(unode1, 30 * G_USEC_PER_SEC);
	ck_assert_int_lt(g_get_monotonic_time() - start, 10 * G_USEC_PER_SEC);
	test_recv_free(r);
	mesh_port_close(send);
}
END_TEST

/* upstream unix_node.rs test_three (and alpc_node.rs test_three) */
START_TEST(test_three)
{
	MeshPort *p1, *p6;
	Ctl *node2 = ctl_invite(&p1); /* node2's boot: p3 joined, p4 the receiver */
	Ctl *node3 = ctl_invite(&p6); /* node3's boot: p8 joined, p7 the sender */

	mesh_port_bridge(p1, p6);
	ctl(node3, "ok", "send boot 5");
	ctl(node2, "msg 5", "recv boot");
	ctl(node2, "ok", "close boot"); /* drop(p4) */
	ctl(node3, "ok", "close boot"); /* drop(p7) */
	/* futures::join!(node2.shutdown(), node3.shutdown()) */
	ctl_send(node2, "shutdown");
	ctl_send(node3, "shutdown");
	ctl_expect_shutdown(node2);
	ctl_expect_shutdown(node3);
	mesh_unix_node_shutdown(unode1, 10 * G_USEC_PER_SEC);
	ck_assert_int_eq(ctl_finish(node2), 0);
	ck_assert_int_eq(ctl_finish(node3), 0);
}
END_TEST

/*
 * upstream local_node.rs test_bridge_remote (test_bridge on a three-node
 * mesh): p1 on node1, p2 and p3 on node2, p4 on node3; p2 bridged with p3
 * while messages are queued everywhere.
 */
START_TEST(test_bridge)
{
	MeshPort *p1, *q;
	Ctl *node2 = ctl_invite(&p1); /* node2's boot is p2 */
	Ctl *node3 = ctl_invite(&q);
	TestRecv *r1 = test_recv_new(p1);

	/* p3 on node2, p4 on node3: made on node2, one end sent through node1. */
	ctl(node2, "ok", "pair p3 x");
	ctl(node2, "ok", "sendport boot x");
	MeshMessage *carrier = recv_message(r1);
	MeshPort *x = mesh_message_steal_port(carrier, 0);
	ck_assert_ptr_nonnull(x);
	mesh_message_free(carrier);
	MeshMessage *msg = mesh_message_new("p4", 2);
	mesh_message_add_port_take(msg, x);
	ck_assert(port_send(q, msg, FALSE));
	ctl(node3, "msg p4", "recv boot");

	send_text(p1, "5");
	send_text(p1, "6");
	send_text(p1, "7");
	ctl(node2, "ok", "send boot a");
	ctl(node2, "ok", "send boot b");
	for (int i = 1; i <= 4; i++)
		ctl(node2, "ok", "send p3 %d", i);
	static const char *const p4_texts[] = {"x", "y", "c", "d", "e", "f", "g", "h"};
	for (size_t i = 0; i < G_N_ELEMENTS(p4_texts); i++)
		ctl(node3, "ok", "send p4 %s", p4_texts[i]);
	ctl(node2, "msg x", "recv p3");
	ctl(node2, "msg y", "recv p3");
	ctl(node2, "ok", "bridge boot p3");
	ctl(node3, "ok", "send p4 i");
	ctl(node3, "ok", "close p4");

	GString *all = g_string_new(NULL);
	for (;;) {
		MeshMessage *m = test_recv_wait(r1, WAIT_MS);
		if (!test_recv_is_message(m)) {
			ck_assert_msg(test_recv_is_end(m, RECV_END_CLOSED), "p1 ended with %p", m);
			break;
		}
		size_t size;
		const uint8_t *data = mesh_message_get_data(m, &size);
		g_string_append_len(all, (const char *)data, (gssize)size);
		mesh_message_free(m);
	}
	ck_assert_str_eq(all->str, "abcdefghi");
	g_string_free(all, TRUE);
	test_recv_free(r1);
	mesh_port_close(p1);
	mesh_port_close(q);

	ctl_send(node2, "shutdown");
	ctl_send(node3, "shutdown");
	ctl_expect_shutdown(node2);
	ctl_expect_shutdown(node3);
	ck_assert_int_eq(ctl_finish(node2), 0);
	ck_assert_int_eq(ctl_finish(node3), 0);
}
END_TEST

/*
 * A follower invites a new node itself (upstream: UnixNode::invite() on
 * any node sends LeaderRequest::Invite to the leader): the new node joins
 * the leader, and its port is the inviting follower's peer.
 */
START_TEST(test_follower_invites)
{
	MeshPort *p1;
	Ctl *node2 = ctl_invite(&p1);
	Ctl *node3 = ctl_join_invitation(ctl_invite_from(node2, "new"));
	ctl(node3, "ok", "send boot hi");
	ctl(node2, "msg hi", "recv new");
	ctl(node2, "ok", "send new back");
	ctl(node3, "msg back", "recv boot");
	/* And a port through them: node1 -> node2 -> node3. */
	ctl(node2, "ok", "bridge boot new");
	send_text(p1, "through");
	ctl(node3, "msg through", "recv boot");
	mesh_port_close(p1);
	ctl(node3, "closed", "recv boot");
	ctl(node3, "clean", "shutdown");
	ctl(node2, "clean", "shutdown");
	ck_assert_int_eq(ctl_finish(node2), 0);
	ck_assert_int_eq(ctl_finish(node3), 0);
}
END_TEST

/* upstream alpc_node.rs test_failed_node, on Unix: node1 (the leader) dropped. */
START_TEST(test_failed_node)
{
	const char *lead[] = {"lead", NULL};
	Ctl *n1 = ctl_spawn(lead, -1);
	Ctl *n2 = ctl_join_invitation(ctl_invite_from(n1, "irecv"));
	ctl(n2, "ok", "send boot up");
	ctl(n1, "msg up", "recv irecv");
	ctl_send(n1, "drop");
	ck_assert_int_eq(ctl_finish(n1), 0);
	/* node2.shutdown() completes; its leader is gone, so not cleanly. */
	gint64 start = g_get_monotonic_time();
	ctl(n2, "unclean", "shutdown");
	ck_assert_int_lt(g_get_monotonic_time() - start, 10 * G_USEC_PER_SEC);
	ck_assert_int_eq(ctl_finish(n2), 0);
}
END_TEST

/*
 * upstream alpc_node.rs test_handoff_invitation, on Unix: an invitation
 * made before the peer of its port is forwarded through a second node is
 * still usable by a third.
 */
START_TEST(test_handoff_invitation)
{
	MeshPort *p1, *p5, *p6;
	MeshInvitation *inv = NULL;
	Ctl *node2 = ctl_invite(&p1); /* node2's boot: p3, p4 */
	mesh_port_new_pair(&p5, &p6);
	ck_assert(mesh_unix_node_invite(unode1, p6, -1, &inv, NULL));
	MeshMessage *msg = mesh_message_new("p5p", 3);
	mesh_message_add_port_take(msg, p5);
	ck_assert(port_send(p1, msg, FALSE)); /* p1.send(p5) */
	ctl(node2, "msg p5p", "recv boot");   /* p4.recv() */
	Ctl *node3 = ctl_join_invitation(inv); /* joins with p7 */
	ctl(node2, "ok", "send p5p ()");
	ctl(node3, "msg ()", "recv boot"); /* p8.recv() */
	mesh_port_close(p1);
	ctl(node2, "ok", "close boot");
	ctl(node2, "ok", "close p5p");
	ctl(node3, "ok", "close boot");
	ck_assert(mesh_unix_node_shutdown(unode1, 10 * G_USEC_PER_SEC));
	ctl(node2, "unclean", "shutdown"); /* node1, its leader, is gone */
	ctl(node3, "unclean", "shutdown");
	ck_assert_int_eq(ctl_finish(node2), 0);
	ck_assert_int_eq(ctl_finish(node3), 0);
}
END_TEST

/* upstream unix_node.rs test_handoff_leader, with checks that the mesh works after. */
START_TEST(test_handoff_leader)
{
	MeshPort *p1, *p6, *p9;
	Ctl *node2 = ctl_invite(&p1);  /* boot: p3 joined, p4 the receiver */
	Ctl *node3 = ctl_invite(&p6);  /* boot: p8 joined, p7 the sender */
	Ctl *node4 = ctl_invite(&p9);  /* boot: p11 joined, p12 the receiver */

	/* p9.send(node1.offer_leadership()); node4.accept_leadership(p12.recv()) */
	MeshMessage *msg = mesh_message_new("offer", 5);
	mesh_message_add_port_take(msg, mesh_unix_node_offer_leadership(unode1));
	ck_assert(port_send(p9, msg, FALSE));
	ctl(node4, "ok", "accept boot");
	mesh_port_close(p9);
	ctl(node4, "ok", "close boot");
	mesh_port_bridge(p1, p6);
	/* Instead of upstream's sleep: wait until node4 leads. */
	for (int i = 0; i < 2000; i++) {
		ctl_send(node4, "leader");
		char *r = ctl_reply(node4);
		gboolean yes = strcmp(r, "yes") == 0;
		g_free(r);
		if (yes)
			break;
		g_usleep(5000);
	}
	ctl(node4, "yes", "leader");
	ck_assert(!mesh_unix_node_is_leader(unode1));
	ctl(node2, "no", "leader");

	ck_assert(mesh_unix_node_shutdown(unode1, 10 * G_USEC_PER_SEC));
	mesh_unix_node_free(unode1);
	unode1 = NULL;

	/* The rest keep working: node2 and node3 meet through node4. */
	ctl(node3, "ok", "send boot 5");
	ctl(node2, "msg 5", "recv boot");
	/* And a follower's invitation now comes from node4. */
	Ctl *node5 = ctl_join_invitation(ctl_invite_from(node2, "n5"));
	ctl(node5, "ok", "send boot five");
	ctl(node2, "msg five", "recv n5");
	ctl(node5, "clean", "shutdown");
	ck_assert_int_eq(ctl_finish(node5), 0);

	ctl(node2, "ok", "close boot"); /* drop(p4) */
	ctl(node3, "ok", "close boot"); /* drop(p7) */
	/* One after the other, as upstream. */
	ctl(node2, "clean", "shutdown");
	ctl(node3, "clean", "shutdown");
	ctl_send(node4, "shutdown");
	ctl_expect_shutdown(node4);
	ck_assert_int_eq(ctl_finish(node2), 0);
	ck_assert_int_eq(ctl_finish(node3), 0);
	ck_assert_int_eq(ctl_finish(node4), 0);
}
END_TEST

/* An offer from a node that does not lead is honoured by nobody. */
START_TEST(test_offer_from_follower)
{
	MeshPort *p1, *p6;
	Ctl *node2 = ctl_invite(&p1);
	Ctl *node3 = ctl_invite(&p6);
	ctl(node2, "ok", "pair a b");
	ctl(node2, "ok", "sendport boot b");
	TestRecv *r1 = test_recv_new(p1);
	MeshMessage *carrier = recv_message(r1);
	MeshPort *b = mesh_message_steal_port(carrier, 0);
	mesh_message_free(carrier);
	MeshMessage *msg = mesh_message_new("b", 1);
	mesh_message_add_port_take(msg, b);
	ck_assert(port_send(p6, msg, FALSE));
	ctl(node3, "msg b", "recv boot");
	ctl(node2, "ok", "offer a");
	ctl(node3, "ok", "accept b");
	ctl(node3, "no", "leader");
	ck_assert(mesh_unix_node_is_leader(unode1));
	/* node1 still leads: a third node still joins through it. */
	MeshPort *p7;
	Ctl *node4 = ctl_invite(&p7);
	ctl(node4, "ok", "send boot hi");
	TestRecv *r7 = test_recv_new(p7);
	mesh_message_free(recv_message(r7));
	test_recv_free(r7);
	test_recv_free(r1);
	mesh_port_close(p7);
	mesh_port_close(p1);
	mesh_port_close(p6);
	ck_assert_int_eq(ctl_finish(node4), 0);
	ck_assert_int_eq(ctl_finish(node2), 0);
	ck_assert_int_eq(ctl_finish(node3), 0);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("libmeshremote-unix-nodes");
	TCase *tc = tcase_create("nodes");
	tcase_set_timeout(tc, 120);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_dropped_shutdown);
	tcase_add_test(tc, test_three);
	tcase_add_test(tc, test_bridge);
	tcase_add_test(tc, test_follower_invites);
	tcase_add_test(tc, test_failed_node);
	tcase_add_test(tc, test_handoff_invitation);
	tcase_add_test(tc, test_handoff_leader);
	tcase_add_test(tc, test_offer_from_follower);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_ENV);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
