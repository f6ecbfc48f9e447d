/* SPDX-License-Identifier: MIT */
/*
 * Ports across several nodes joined by the in-memory transport (real event
 * encoding): upstream's mesh_node catalog (7.1) plus reordering, concurrent
 * moves and hostile events.
 */
#include <stdio.h>
#include <sys/stat.h>
#ifdef _WIN32
#include <fcntl.h>
#include <io.h>
#endif

#include "log-count.h"
#include "test-net.h"

#ifdef G_OS_WIN32
/* Windows (under Wine): fds are C runtime descriptors, OS resources HANDLEs. */
#define pipe2(fds, flags) _pipe(fds, 4096, _O_BINARY | _O_NOINHERIT)

static gboolean fd_is_open(int fd)
{
	return _get_osfhandle(fd) != (intptr_t)INVALID_HANDLE_VALUE;
}

/* An OS resource for a node to consume. */
static MeshOsHandle test_resource_new(void)
{
	HANDLE h = CreateEventW(NULL, TRUE, FALSE, NULL);
	ck_assert(h != NULL);
	return h;
}
#else
static gboolean fd_is_open(int fd)
{
	return fcntl(fd, F_GETFD) >= 0;
}

static MeshOsHandle test_resource_new(void)
{
	int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	ck_assert_int_ge(fd, 0);
	return fd;
}
#endif

static guint32 test_seed; /* 0: in order; otherwise reorder with this seed */

static void expect_text(MeshPort *p, const char *text)
{
	MeshMessage *msg = NULL;
	GError *error = NULL;
	PortRecv r = port_try_recv(p, &msg, &error);
	ck_assert_msg(r == PORT_RECV_MESSAGE, "expected \"%s\", got state %d (%s)", text, r,
		      error ? error->message : "");
	size_t size;
	const uint8_t *data = mesh_message_get_data(msg, &size);
	ck_assert_msg(size == strlen(text) && memcmp(data, text, size) == 0,
		      "expected \"%s\", got \"%.*s\"", text, (int)size, (const char *)data);
	mesh_message_free(msg);
}

static void expect_state(MeshPort *p, PortRecv want)
{
	MeshMessage *msg = NULL;
	GError *error = NULL;
	PortRecv r = port_try_recv(p, &msg, &error);
	ck_assert_msg(r == want, "state %d, expected %d", r, want);
	if (want == PORT_RECV_FAILED)
		ck_assert(g_error_matches(error, MESH_ERROR, MESH_ERROR_NODE_FAILURE));
	g_clear_error(&error);
	mesh_message_free(msg);
}

static void send_port(MeshPort *via, MeshPort *x)
{
	MeshMessage *msg = mesh_message_new(NULL, 0);
	ck_assert_int_eq(mesh_message_add_port_take(msg, x), 0);
	ck_assert(port_send(via, msg, FALSE));
}

static MeshPort *recv_port(MeshPort *p)
{
	MeshMessage *msg = NULL;
	ck_assert_int_eq(port_try_recv(p, &msg, NULL), PORT_RECV_MESSAGE);
	ck_assert_uint_eq(mesh_message_get_n_resources(msg), 1);
	MeshPort *x = mesh_message_steal_port(msg, 0);
	ck_assert_ptr_nonnull(x);
	mesh_message_free(msg);
	return x;
}

/* No port left in any table, and no remote node but the connected ones. */
static void assert_tables_empty(TestNet *net)
{
	for (guint i = 0; i < net->n; i++) {
		ck_assert_msg(mesh_node_count_ports(net->nodes[i]) == 0, "node %u has %u ports", i,
			      mesh_node_count_ports(net->nodes[i]));
		guint connected = 0;
		for (guint j = 0; j < net->n; j++)
			connected += net->handles[i][j] != NULL;
		ck_assert_msg(mesh_node_count_remotes(net->nodes[i]) == connected,
			      "node %u has %u remote nodes, %u connected", i,
			      mesh_node_count_remotes(net->nodes[i]), connected);
	}
}

START_TEST(test_local)
{
	MeshPort *a, *b;
	mesh_port_new_pair(&a, &b);
	ck_assert(port_send_bytes(a, "abc"));
	expect_text(b, "abc");
	expect_state(b, PORT_RECV_EMPTY);
	mesh_port_close(a);
	expect_state(b, PORT_RECV_CLOSED);
	mesh_port_close(b);
}
END_TEST

START_TEST(test_local_close)
{
	MeshPort *a, *b;
	mesh_port_new_pair(&a, &b);
	port_send_bytes(a, "abc");
	mesh_port_close(a);
	expect_text(b, "abc");
	expect_state(b, PORT_RECV_CLOSED);
	mesh_port_close(b);
}
END_TEST

START_TEST(test_remote)
{
	TestNet *net = test_net_new(2, test_seed);
	MeshPort *p1, *p2;
	test_net_port_pair(net, 0, 1, &p1, &p2);

	port_send_bytes(p1, "abc");
	port_send_bytes(p2, "xyz");
	test_net_pump(net);
	expect_text(p2, "abc");
	expect_text(p1, "xyz");
	mesh_port_close(p1);
	mesh_port_close(p2);
	test_net_pump(net);
	assert_tables_empty(net);
	test_net_free(net);
}
END_TEST

START_TEST(test_remote_close)
{
	TestNet *net = test_net_new(2, test_seed);
	MeshPort *p1, *p2;
	test_net_port_pair(net, 0, 1, &p1, &p2);

	port_send_bytes(p1, "abc");
	mesh_port_close(p1);
	test_net_pump(net);
	expect_text(p2, "abc");
	expect_state(p2, PORT_RECV_CLOSED);
	mesh_port_close(p2);
	test_net_pump(net);
	assert_tables_empty(net);
	test_net_free(net);
}
END_TEST

START_TEST(test_send_port)
{
	TestNet *net = test_net_new(2, test_seed);
	MeshPort *p1, *p2, *x, *y;
	test_net_port_pair(net, 0, 1, &p1, &p2);
	mesh_port_new_pair(&x, &y);

	port_send_bytes(y, "abc"); /* queued at x before it moves */
	send_port(p1, x);
	port_send_bytes(y, "def"); /* while x is in flight */
	test_net_pump(net);
	MeshPort *z = recv_port(p2);
	port_send_bytes(y, "ghi"); /* after the move */
	port_send_bytes(z, "back");
	test_net_pump(net);
	expect_text(z, "abc");
	expect_text(z, "def");
	expect_text(z, "ghi");
	expect_text(y, "back");

	mesh_port_close(z);
	mesh_port_close(y);
	mesh_port_close(p1);
	mesh_port_close(p2);
	test_net_pump(net);
	assert_tables_empty(net);
	test_net_free(net);
}
END_TEST

START_TEST(test_send_port_with_three_nodes)
{
	TestNet *net = test_net_new(3, test_seed);
	MeshPort *p01, *p10, *p02, *p20, *x, *y0;
	test_net_port_pair(net, 0, 1, &p01, &p10);
	test_net_port_pair(net, 0, 2, &p02, &p20);

	/* x on node 0, its peer y on node 2. */
	mesh_port_new_pair(&x, &y0);
	send_port(p02, y0);
	test_net_pump(net);
	MeshPort *y = recv_port(p20);

	port_send_bytes(y, "abc");
	send_port(p01, x); /* move x to node 1 */
	port_send_bytes(y, "def");
	test_net_pump(net);
	MeshPort *z = recv_port(p10);
	port_send_bytes(y, "ghi");
	port_send_bytes(z, "to y");
	test_net_pump(net);
	expect_text(z, "abc");
	expect_text(z, "def");
	expect_text(z, "ghi");
	expect_text(y, "to y");

	mesh_port_close(z);
	mesh_port_close(y);
	test_net_pump(net);
	expect_state(p10, PORT_RECV_EMPTY);
	mesh_port_close(p01);
	mesh_port_close(p10);
	mesh_port_close(p02);
	mesh_port_close(p20);
	test_net_pump(net);
	assert_tables_empty(net);
	test_net_free(net);
}
END_TEST

START_TEST(test_concurrent_moves)
{
	/* Both ends move at once, to different nodes, with traffic both ways. */
	TestNet *net = test_net_new(3, test_seed);
	MeshPort *p01, *p10, *p02, *p20, *x, *y;
	test_net_port_pair(net, 0, 1, &p01, &p10);
	test_net_port_pair(net, 0, 2, &p02, &p20);
	mesh_port_new_pair(&x, &y);

	port_send_bytes(x, "x1");
	port_send_bytes(y, "y1");
	send_port(p01, x);
	send_port(p02, y);
	test_net_pump(net);
	MeshPort *x1 = recv_port(p10), *y2 = recv_port(p20);
	port_send_bytes(x1, "x2");
	port_send_bytes(y2, "y2");
	test_net_pump(net);
	expect_text(y2, "x1");
	expect_text(y2, "x2");
	expect_text(x1, "y1");
	expect_text(x1, "y2");

	mesh_port_close(x1);
	test_net_pump(net);
	expect_state(y2, PORT_RECV_CLOSED);
	mesh_port_close(y2);
	mesh_port_close(p01);
	mesh_port_close(p10);
	mesh_port_close(p02);
	mesh_port_close(p20);
	test_net_pump(net);
	assert_tables_empty(net);
	test_net_free(net);
}
END_TEST

START_TEST(test_move_back_and_forth)
{
	/* A port travels 0 -> 1 -> 2 -> 0 while its peer keeps sending. */
	TestNet *net = test_net_new(3, test_seed);
	MeshPort *p[3][3] = {{0}};
	for (guint i = 0; i < 3; i++)
		for (guint j = i + 1; j < 3; j++)
			test_net_port_pair(net, i, j, &p[i][j], &p[j][i]);
	MeshPort *x, *y;
	mesh_port_new_pair(&x, &y);

	static const guint hops[][2] = {{0, 1}, {1, 2}, {2, 0}};
	char text[16];
	int sent = 0;
	for (guint h = 0; h < 3; h++) {
		snprintf(text, sizeof(text), "m%d", sent++);
		port_send_bytes(y, text);
		send_port(p[hops[h][0]][hops[h][1]], x);
		snprintf(text, sizeof(text), "m%d", sent++);
		port_send_bytes(y, text);
		test_net_pump(net);
		x = recv_port(p[hops[h][1]][hops[h][0]]);
	}
	for (int i = 0; i < sent; i++) {
		snprintf(text, sizeof(text), "m%d", i);
		expect_text(x, text);
	}
	mesh_port_close(x);
	mesh_port_close(y);
	for (guint i = 0; i < 3; i++)
		for (guint j = 0; j < 3; j++)
			mesh_port_close(p[i][j]);
	test_net_pump(net);
	assert_tables_empty(net);
	test_net_free(net);
}
END_TEST

START_TEST(test_move_back_peer_closed_meanwhile)
{
	/*
	 * x moves 0 -> 1 -> 0 while its peer y, on 0, closes: the close
	 * reaches x on 1 while it is sent, and x's proxy forwards it to x's
	 * new home on 0 before it tells y where x went. x's new home answers
	 * the close (DONE) before y reads the CHANGE_PEER naming it: y must
	 * still end closed, not failed ("names an unknown local port").
	 */
	TestNet *net = test_net_new(2, 0);
	MeshPort *p01, *p10, *x, *y;
	test_net_port_pair(net, 0, 1, &p01, &p10);
	mesh_port_new_pair(&x, &y);
	port_ref(y);
	port_send_bytes(y, "m0");
	send_port(p01, x);
	test_net_pump(net);
	x = recv_port(p10);
	send_port(p10, x); /* back to 0: sent, not yet acknowledged */
	port_send_bytes(y, "m1");
	mesh_port_close(y); /* y is still referenced: its state is checked */
	test_net_pump(net);
	ck_assert_int_eq(port_get_state(y), PORT_DONE);
	port_unref(y);
	x = recv_port(p01);
	expect_text(x, "m0");
	expect_text(x, "m1");
	expect_state(x, PORT_RECV_CLOSED);
	mesh_port_close(x);
	mesh_port_close(p01);
	mesh_port_close(p10);
	test_net_pump(net);
	assert_tables_empty(net);
	test_net_free(net);
}
END_TEST

START_TEST(test_send_closed_port)
{
	TestNet *net = test_net_new(2, test_seed);
	MeshPort *p1, *p2, *x, *y;
	test_net_port_pair(net, 0, 1, &p1, &p2);
	mesh_port_new_pair(&x, &y);
	mesh_port_close(y);
	send_port(p1, x);
	test_net_pump(net);
	MeshPort *z = recv_port(p2);
	test_net_pump(net);
	expect_state(z, PORT_RECV_CLOSED);
	mesh_port_close(z);
	mesh_port_close(p1);
	mesh_port_close(p2);
	test_net_pump(net);
	assert_tables_empty(net);
	test_net_free(net);
}
END_TEST

START_TEST(test_node_fail)
{
	TestNet *net = test_net_new(2, test_seed);
	MeshPort *p1, *p2;
	test_net_port_pair(net, 0, 1, &p1, &p2);
	test_net_pump(net);

	mesh_remote_node_unref(net->handles[1][0]);
	net->handles[1][0] = NULL;
	MeshMessage *msg = NULL;
	GError *error = NULL;
	ck_assert_int_eq(port_try_recv(p2, &msg, &error), PORT_RECV_FAILED);
	char id[33];
	mesh_uuid_to_string(mesh_node_get_id(net->nodes[0]), id);
	ck_assert_msg(strstr(error->message, id) != NULL, "error does not name the node: %s",
		      error->message);
	ck_assert_msg(strstr(error->message, "remote node dropped") != NULL, "%s", error->message);
	g_error_free(error);
	ck_assert_uint_eq(mesh_node_count_ports(net->nodes[1]), 0);
	mesh_port_close(p1);
	mesh_port_close(p2);
	test_net_free(net);
}
END_TEST

START_TEST(test_send_failed_port)
{
	TestNet *net = test_net_new(3, test_seed);
	MeshPort *p01, *p10, *p12, *p21;
	test_net_port_pair(net, 0, 1, &p01, &p10);
	test_net_port_pair(net, 1, 2, &p12, &p21);
	test_net_pump(net);
	test_net_disconnect(net, 0, 1); /* p10 fails */
	expect_state(p10, PORT_RECV_FAILED);
	send_port(p12, p10);
	test_net_pump(net);
	MeshPort *z = recv_port(p21);
	expect_state(z, PORT_RECV_FAILED);
	mesh_port_close(z);
	mesh_port_close(p01);
	mesh_port_close(p12);
	mesh_port_close(p21);
	test_net_pump(net);
	test_net_free(net);
}
END_TEST

START_TEST(test_fail_sent_port_to_failed_node)
{
	TestNet *net = test_net_new(2, test_seed);
	MeshPort *p1, *p2, *x, *y;
	test_net_port_pair(net, 0, 1, &p1, &p2);
	mesh_port_new_pair(&x, &y);
	send_port(p1, x); /* x now waits for node 1's acknowledgement */
	test_net_discard_node(net, 1);
	test_net_disconnect(net, 0, 1);
	expect_state(y, PORT_RECV_FAILED);
	mesh_port_close(y);
	mesh_port_close(p1);
	mesh_port_close(p2);
	test_net_pump(net);
	assert_tables_empty(net);
	test_net_free(net);
}
END_TEST

START_TEST(test_bridge_local)
{
	MeshPort *p1, *p2, *p3, *p4;
	mesh_port_new_pair(&p1, &p2);
	mesh_port_new_pair(&p3, &p4);
	port_send_bytes(p1, "abc"); /* queued at p2 */
	port_send_bytes(p4, "xyz"); /* queued at p3 */
	mesh_port_bridge(p2, p3);
	port_send_bytes(p1, "def");
	port_send_bytes(p1, "ghi");
	mesh_port_close(p1);
	expect_text(p4, "abc");
	expect_text(p4, "def");
	expect_text(p4, "ghi");
	expect_state(p4, PORT_RECV_CLOSED);
	mesh_port_close(p4);
}
END_TEST

START_TEST(test_bridge_local_reverse)
{
	MeshPort *p1, *p2, *p3, *p4;
	mesh_port_new_pair(&p1, &p2);
	mesh_port_new_pair(&p3, &p4);
	port_send_bytes(p4, "xyz");
	mesh_port_bridge(p2, p3);
	port_send_bytes(p4, "uvw");
	expect_text(p1, "xyz");
	expect_text(p1, "uvw");
	mesh_port_close(p4);
	expect_state(p1, PORT_RECV_CLOSED);
	mesh_port_close(p1);
}
END_TEST

START_TEST(test_bridge_remote)
{
	/* p1 on node 0 -- p2, p3 on node 1 -- p4 on node 2; bridge p2 with p3. */
	TestNet *net = test_net_new(3, test_seed);
	MeshPort *p1, *p2, *p3, *p4;
	test_net_port_pair(net, 0, 1, &p1, &p2);
	test_net_port_pair(net, 1, 2, &p3, &p4);
	port_send_bytes(p1, "abc");
	port_send_bytes(p4, "xyz");
	test_net_pump(net);
	mesh_port_bridge(p2, p3);
	port_send_bytes(p1, "def");
	port_send_bytes(p4, "uvw");
	test_net_pump(net);
	port_send_bytes(p1, "ghi");
	mesh_port_close(p1);
	test_net_pump(net);
	expect_text(p4, "abc");
	expect_text(p4, "def");
	expect_text(p4, "ghi");
	expect_state(p4, PORT_RECV_CLOSED);
	mesh_port_close(p4);
	test_net_pump(net);
	assert_tables_empty(net);
	test_net_free(net);
}
END_TEST

/*
 * Bridging a port whose peer already closed (DONE, messages still queued):
 * the other side's peer gets those messages, in order, then "closed"
 * (upstream repeer_if_done). @done_first: the DONE port is the first
 * argument of mesh_port_bridge().
 */
static void bridge_done_local(gboolean done_first)
{
	MeshPort *p1, *p2, *p3, *p4;
	mesh_port_new_pair(&p1, &p2);
	mesh_port_new_pair(&p3, &p4);
	port_send_bytes(p1, "abc");
	port_send_bytes(p1, "def");
	mesh_port_close(p1); /* p2: DONE, "abc" "def" queued */
	ck_assert_int_eq(port_get_state(p2), PORT_DONE);
	port_send_bytes(p4, "xyz"); /* queued at p3: nobody left to read it */
	if (done_first)
		mesh_port_bridge(p2, p3);
	else
		mesh_port_bridge(p3, p2);
	expect_text(p4, "abc");
	expect_text(p4, "def");
	expect_state(p4, PORT_RECV_CLOSED);
	mesh_port_close(p4);
}

START_TEST(test_bridge_done_local)
{
	bridge_done_local(TRUE);
	bridge_done_local(FALSE);

	/* Both peers closed: nothing to deliver, nothing left over. */
	MeshPort *p1, *p2, *p3, *p4;
	mesh_port_new_pair(&p1, &p2);
	mesh_port_new_pair(&p3, &p4);
	port_send_bytes(p1, "abc");
	port_send_bytes(p4, "xyz");
	mesh_port_close(p1);
	mesh_port_close(p4);
	mesh_port_bridge(p2, p3);
}
END_TEST

START_TEST(test_bridge_done_remote)
{
	/* p1 on node 0 -- p2, p3 on node 1 -- p4 on node 2; p1 closed early. */
	for (int dir = 0; dir < 2; dir++) {
		TestNet *net = test_net_new(3, test_seed);
		MeshPort *p1, *p2, *p3, *p4;
		test_net_port_pair(net, 0, 1, &p1, &p2);
		test_net_port_pair(net, 1, 2, &p3, &p4);
		port_send_bytes(p1, "abc");
		port_send_bytes(p1, "def");
		mesh_port_close(p1);
		port_send_bytes(p4, "xyz");
		test_net_pump(net);
		ck_assert_int_eq(port_get_state(p2), PORT_DONE);
		if (dir == 0)
			mesh_port_bridge(p2, p3);
		else
			mesh_port_bridge(p3, p2);
		test_net_pump(net);
		expect_text(p4, "abc");
		expect_text(p4, "def");
		expect_state(p4, PORT_RECV_CLOSED);
		mesh_port_close(p4);
		test_net_pump(net);
		assert_tables_empty(net);
		test_net_free(net);
	}
	/* A local pair whose peer closed, bridged with a port peered remotely. */
	TestNet *net = test_net_new(2, test_seed);
	MeshPort *p1, *p2, *p3, *p4;
	mesh_port_new_pair(&p1, &p2);
	test_net_port_pair(net, 0, 1, &p3, &p4);
	port_send_bytes(p1, "abc");
	mesh_port_close(p1);
	mesh_port_bridge(p2, p3);
	test_net_pump(net);
	expect_text(p4, "abc");
	expect_state(p4, PORT_RECV_CLOSED);
	mesh_port_close(p4);
	test_net_pump(net);
	assert_tables_empty(net);
	test_net_free(net);
}
END_TEST

/* Receives every queued text of @p into @out (joined by ","); returns the end state. */
static PortRecv drain_texts(MeshPort *p, GString *out)
{
	for (;;) {
		MeshMessage *msg = NULL;
		PortRecv r = port_try_recv(p, &msg, NULL);
		if (r != PORT_RECV_MESSAGE)
			return r;
		size_t size;
		const uint8_t *data = mesh_message_get_data(msg, &size);
		if (size) {
			if (out->len)
				g_string_append_c(out, ',');
			g_string_append_len(out, (const char *)data, (gssize)size);
		}
		mesh_message_free(msg);
	}
}

/*
 * Node 1 moves port X (peered with Y on node 0, or on node 2) to node 2,
 * and crashes after @steps packets of the move were delivered. After that
 * nobody may wait forever: the new home Z and Y either both work (every
 * message arrives, both ways) or both fail. Returns FALSE once the move
 * completed within @steps (no later crash point left).
 */
static gboolean move_then_crash(guint steps, guint32 seed, guint y_node, gboolean upstream)
{
	TestNet *net = test_net_new_full(3, seed, upstream);
	MeshPort *y, *x, *c1, *c2;
	gboolean more = TRUE;

	test_net_port_pair(net, y_node, 1, &y, &x);
	test_net_port_pair(net, 1, 2, &c1, &c2);
	port_send_bytes(y, "m1"); /* reaches X, then Z through the proxy */
	test_net_pump(net);
	send_port(c1, x);
	port_send_bytes(y, "m2"); /* in flight to X while it moves */
	for (guint i = 0; i < steps; i++) {
		if (!test_net_step(net)) {
			more = FALSE;
			break;
		}
	}
	test_net_crash_node(net, 1);
	test_net_pump(net);

	MeshMessage *msg = NULL;
	MeshPort *z = NULL;
	if (port_try_recv(c2, &msg, NULL) == PORT_RECV_MESSAGE) {
		z = mesh_message_steal_port(msg, 0);
		mesh_message_free(msg);
	}
	port_send_bytes(y, "m3");
	if (z)
		port_send_bytes(z, "back");
	test_net_pump(net);

	GString *at_y = g_string_new(NULL), *at_z = g_string_new(NULL);
	PortRecv ry = drain_texts(y, at_y);
	PortRecv rz = z ? drain_texts(z, at_z) : PORT_RECV_FAILED;
	if (upstream) {
		/* Upstream's protocol: Z may hang (the documented hole); just no crash. */
	} else if (ry == PORT_RECV_FAILED || rz == PORT_RECV_FAILED) {
		ck_assert_msg(ry == PORT_RECV_FAILED && rz == PORT_RECV_FAILED,
			      "crash after %u steps (seed %u, Y on node %u): one side failed, the "
			      "other waits: Y state %d got \"%s\", Z state %d got \"%s\"",
			      steps, seed, y_node, ry, at_y->str, rz, at_z->str);
	} else {
		ck_assert_msg(strcmp(at_z->str, "m1,m2,m3") == 0 && strcmp(at_y->str, "back") == 0,
			      "crash after %u steps (seed %u): Z got \"%s\", Y got \"%s\"", steps,
			      seed, at_z->str, at_y->str);
	}
	g_string_free(at_y, TRUE);
	g_string_free(at_z, TRUE);
	mesh_port_close(y);
	mesh_port_close(z);
	mesh_port_close(c1);
	mesh_port_close(c2);
	test_net_pump(net);
	if (!upstream)
		for (guint i = 0; i < net->n; i++)
			if (i != 1)
				ck_assert_msg(mesh_node_count_ports(net->nodes[i]) == 0,
					      "node %u has %u ports (steps %u)", i,
					      mesh_node_count_ports(net->nodes[i]), steps);
	test_net_free(net);
	return more;
}

/*
 * A node that dies while it moves a port to a third node (between SENDING
 * and CHANGE_PEER, or before its forwarded messages all arrived): the new
 * owner must fail or complete, never wait forever (issue: 0-4 ms kills).
 */
START_TEST(test_move_mover_crashes)
{
	for (guint y_node = 0; y_node <= 2; y_node += 2) {
		for (guint steps = 0; move_then_crash(steps, 0, y_node, FALSE); steps++)
			;
		for (guint32 seed = 1; seed < 40; seed++)
			for (guint steps = 0; move_then_crash(steps, seed, y_node, FALSE); steps++)
				;
	}
	/* With nodes that do not speak the extension: no crash, no leak. */
	for (guint steps = 0; move_then_crash(steps, 0, 0, TRUE); steps++)
		;
}
END_TEST

/* Throws away the packets between nodes @i and @j; returns how many went from @j to @i. */
static guint discard_between(TestNet *net, guint i, guint j)
{
	guint lost_to_i = 0;
	g_mutex_lock(&net->lock);
	for (guint k = 0; k < net->packets->len;) {
		TestPacket *pk = net->packets->pdata[k];
		if ((pk->from == i && pk->to == j) || (pk->from == j && pk->to == i)) {
			lost_to_i += pk->to == i;
			g_ptr_array_remove_index(net->packets, k);
			test_packet_free(pk);
		} else {
			k++;
		}
	}
	g_mutex_unlock(&net->lock);
	return lost_to_i;
}

/*
 * Node 0 moves port X (peer Y on node 1) to node 2 while Y says "done" and
 * closes; after @steps packets node 1's link to node 0 ends (node 1 left;
 * node 2 does not know yet, or, @everywhere, its link to node 2 ends at the
 * same time). If every packet from node 1 arrived, X held Y's close: the
 * new home Z reads "done", then "closed", never a failure (X sending or
 * proxying when the link ended; with @everywhere, Z waits for the move to
 * end before it fails). Otherwise Z reads that or fails, never waits.
 * FALSE once the move completed within @steps.
 */
static gboolean move_while_peer_leaves(guint steps, guint32 seed, gboolean upstream,
				       gboolean everywhere)
{
	TestNet *net = test_net_new_full(3, seed, upstream);
	MeshPort *x, *y, *c0, *c2;
	gboolean more = TRUE;

	test_net_port_pair(net, 0, 1, &x, &y);
	test_net_port_pair(net, 0, 2, &c0, &c2);
	test_net_pump(net);
	send_port(c0, x);
	port_send_bytes(y, "done");
	mesh_port_close(y);
	for (guint i = 0; i < steps; i++) {
		if (!test_net_step(net)) {
			more = FALSE;
			break;
		}
	}
	guint lost = discard_between(net, 0, 1);
	test_net_disconnect(net, 0, 1);
	if (everywhere) {
		/* Node 2's link ends too, maybe before X forwarded the close. */
		lost += discard_between(net, 2, 1);
		test_net_disconnect(net, 2, 1);
	}
	test_net_pump(net);

	MeshMessage *msg = NULL;
	ck_assert_int_eq(port_try_recv(c2, &msg, NULL), PORT_RECV_MESSAGE);
	MeshPort *z = mesh_message_steal_port(msg, 0);
	mesh_message_free(msg);
	ck_assert_ptr_nonnull(z);
	GString *at_z = g_string_new(NULL);
	PortRecv rz = drain_texts(z, at_z);
	/*
	 * In random order (seed), X's FAIL_PORT may overtake the message that
	 * makes Z: it is dropped and Z waits (not this change's case; a real
	 * connection keeps the order). So no-waiting is checked in order only.
	 */
	if (lost == 0 || (seed == 0 && rz != PORT_RECV_FAILED))
		ck_assert_msg(rz == PORT_RECV_CLOSED && strcmp(at_z->str, "done") == 0,
			      "link ended after %u steps (seed %u, upstream %d, %u lost from Y's "
			      "node): Z state %d got \"%s\"",
			      steps, seed, upstream, lost, rz, at_z->str);
	g_string_free(at_z, TRUE);
	mesh_port_close(z);
	mesh_port_close(c0);
	mesh_port_close(c2);
	test_net_pump(net);
	/* X's move ended (done or failed): nothing left behind. */
	ck_assert_msg(mesh_node_count_ports(net->nodes[0]) == 0, "node 0 has %u ports (steps %u)",
		      mesh_node_count_ports(net->nodes[0]), steps);
	if (seed == 0 || lost == 0)
		ck_assert_msg(mesh_node_count_ports(net->nodes[2]) == 0,
			      "node 2 has %u ports (steps %u)", mesh_node_count_ports(net->nodes[2]),
			      steps);
	test_net_free(net);
	return more;
}

START_TEST(test_move_peer_leaves)
{
	for (int mode = 0; mode < 3; mode++) {
		/* Node 1's link to node 0 ends; or to both, between C nodes. */
		gboolean upstream = mode == 1, everywhere = mode == 2;
		for (guint steps = 0; move_while_peer_leaves(steps, 0, upstream, everywhere); steps++)
			;
		for (guint32 seed = 1; seed < 40; seed++)
			for (guint steps = 0;
			     move_while_peer_leaves(steps, seed, upstream, everywhere); steps++)
				;
	}
}
END_TEST

/*
 * Node 1 bridges p2 (peer p1 on node 0) with p3 (peer p4 on node 2), with
 * messages queued and in flight both ways, and crashes after @steps
 * packets. p1 and p4 both work (each gets all the other sent, in order)
 * or both fail. FALSE once the bridge completed within @steps.
 */
static gboolean bridge_then_crash(guint steps, guint32 seed)
{
	TestNet *net = test_net_new_full(3, seed, FALSE);
	MeshPort *p1, *p2, *p3, *p4;
	gboolean more = TRUE;

	test_net_port_pair(net, 0, 1, &p1, &p2);
	test_net_port_pair(net, 1, 2, &p3, &p4);
	port_send_bytes(p1, "a1");
	port_send_bytes(p4, "b1");
	test_net_pump(net);
	port_send_bytes(p1, "a2"); /* in flight to p2 */
	port_send_bytes(p4, "b2");
	mesh_port_bridge(p2, p3);
	for (guint i = 0; i < steps; i++) {
		if (!test_net_step(net)) {
			more = FALSE;
			break;
		}
	}
	test_net_crash_node(net, 1);
	test_net_pump(net);
	port_send_bytes(p1, "a3");
	port_send_bytes(p4, "b3");
	test_net_pump(net);

	GString *at1 = g_string_new(NULL), *at4 = g_string_new(NULL);
	PortRecv r1 = drain_texts(p1, at1), r4 = drain_texts(p4, at4);
	if (r1 == PORT_RECV_FAILED || r4 == PORT_RECV_FAILED)
		ck_assert_msg(r1 == PORT_RECV_FAILED && r4 == PORT_RECV_FAILED,
			      "bridge, crash after %u steps (seed %u): one side failed, the other "
			      "waits: p1 state %d got \"%s\", p4 state %d got \"%s\"",
			      steps, seed, r1, at1->str, r4, at4->str);
	else
		ck_assert_msg(strcmp(at4->str, "a1,a2,a3") == 0 && strcmp(at1->str, "b1,b2,b3") == 0,
			      "bridge, crash after %u steps (seed %u): p4 got \"%s\", p1 got \"%s\"",
			      steps, seed, at4->str, at1->str);
	g_string_free(at1, TRUE);
	g_string_free(at4, TRUE);
	mesh_port_close(p1);
	mesh_port_close(p4);
	test_net_pump(net);
	ck_assert_uint_eq(mesh_node_count_ports(net->nodes[0]), 0);
	ck_assert_uint_eq(mesh_node_count_ports(net->nodes[2]), 0);
	test_net_free(net);
	return more;
}

/* The bridging node dies mid-bridge: the far ends both fail or both work. */
START_TEST(test_bridge_node_crashes)
{
	for (guint steps = 0; bridge_then_crash(steps, 0); steps++)
		;
	for (guint32 seed = 1; seed < 40; seed++)
		for (guint steps = 0; bridge_then_crash(steps, seed); steps++)
			;
}
END_TEST

START_TEST(test_bridge_self)
{
	MeshPort *a, *b, *c, *d;
	mesh_port_new_pair(&a, &b);
	port_ref(a);
	port_ref(b);
	mesh_port_bridge(a, b);
	ck_assert_int_eq(port_get_state(a), PORT_FAILED);
	ck_assert_int_eq(port_get_state(b), PORT_FAILED);
	port_unref(a);
	port_unref(b);

	/* Bridging with a failed port fails the other side's peer. */
	mesh_port_new_pair(&a, &b);
	mesh_port_new_pair(&c, &d);
	port_fail(a, "test");
	mesh_port_bridge(a, c);
	expect_state(d, PORT_RECV_FAILED);
	mesh_port_close(b);
	mesh_port_close(d);
}
END_TEST

START_TEST(test_close_drop_port_with_queued_ports)
{
	MeshPort *a, *b, *x, *y;
	mesh_port_new_pair(&a, &b);
	mesh_port_new_pair(&x, &y);
	send_port(a, x);
	mesh_port_close(b); /* x sits unread in b's queue */
	expect_state(y, PORT_RECV_CLOSED);
	mesh_port_close(y);
	mesh_port_close(a);
}
END_TEST

START_TEST(test_close_send_port_to_dropped_port)
{
	MeshPort *a, *b, *x, *y;
	mesh_port_new_pair(&a, &b);
	mesh_port_new_pair(&x, &y);
	mesh_port_close(b);
	MeshMessage *msg = mesh_message_new(NULL, 0);
	mesh_message_add_port_take(msg, x);
	port_send(a, msg, FALSE);
	expect_state(y, PORT_RECV_CLOSED);
	mesh_port_close(y);
	mesh_port_close(a);
}
END_TEST

/* Delivers the first pending packet from node @from to node @to; FALSE if none. */
static gboolean deliver_one(TestNet *net, guint from, guint to)
{
	TestPacket *pk = NULL;

	g_mutex_lock(&net->lock);
	for (guint i = 0; i < net->packets->len && !pk; i++) {
		TestPacket *p = net->packets->pdata[i];
		if (p->from == from && p->to == to)
			pk = g_ptr_array_steal_index(net->packets, i);
	}
	g_mutex_unlock(&net->lock);
	if (!pk)
		return FALSE;
	mesh_node_receive_event(net->nodes[to], mesh_node_get_id(net->nodes[from]), pk->data,
				pk->size, pk->fds, pk->n_fds);
	pk->n_fds = 0;
	test_packet_free(pk);
	return TRUE;
}

/*
 * A message lost because a node failed fails the ports it carries: their
 * peers see the failure, never a clean "closed" (soak: a host killed while
 * the port it moved on was on its way ended the stream "closed").
 */
START_TEST(test_ports_lost_with_failure)
{
	/* Sent on a port that failed: the port it carries fails. */
	TestNet *net = test_net_new(2, 0);
	MeshPort *a, *b, *r, *z;
	test_net_port_pair(net, 0, 1, &a, &b);
	test_net_crash_node(net, 1);
	mesh_port_new_pair(&r, &z);
	MeshMessage *msg = mesh_message_new(NULL, 0);
	ck_assert_int_eq(mesh_message_add_port_take(msg, z), 0);
	ck_assert(!port_send(a, msg, FALSE));
	expect_state(r, PORT_RECV_FAILED);
	mesh_port_close(r);
	mesh_port_close(a);
	mesh_port_close(b);
	test_net_free(net);

	/*
	 * A port with a queued message carrying another port, moved to a
	 * node that failed (the event is dropped): both fail, the port's
	 * peer and the carried port's peer alike.
	 */
	net = test_net_new(2, 0);
	MeshPort *x, *xp;
	test_net_crash_node(net, 1);
	mesh_port_new_pair(&r, &z);
	mesh_port_new_pair(&x, &xp);
	send_port(xp, z); /* queued at x */
	MeshRemoteNode *dead = node_get_remote(net->nodes[0], mesh_node_get_id(net->nodes[1]));
	ck_assert(remote_node_is_failed(dead));
	Event *ev = event_new(MESH_EVENT_MESSAGE, MESH_EVENT_FLAG_MESSAGE, 1);
	ev->message = mesh_message_new(NULL, 0);
	ck_assert_int_eq(mesh_message_add_port_take(ev->message, x), 0);
	MeshPortId dest;
	mesh_uuid_generate(&dest);
	remote_node_send_event(dead, net->nodes[0], &dest, ev);
	remote_node_unref_internal(dead);
	expect_state(xp, PORT_RECV_FAILED);
	expect_state(r, PORT_RECV_FAILED);
	mesh_port_close(r);
	mesh_port_close(xp);
	test_net_free(net);

	/*
	 * A message carrying a moved port waits in its port's reorder heap
	 * when the sending node dies, after the moved port's peer already
	 * applied the move: the moved port fails, whichever the new node
	 * fails first (hash order: repeated with fresh ids).
	 */
	for (int round = 0; round < 32; round++) {
		net = test_net_new(3, 0);
		test_net_port_pair(net, 0, 2, &z, &r); /* z moves 0 -> 1, r on 2 */
		test_net_port_pair(net, 0, 1, &a, &b);
		port_send_bytes(a, "m1"); /* never arrives: a gap at b */
		send_port(a, z);
		/* The second packet 0 -> 1 (z's record) only. */
		g_mutex_lock(&net->lock);
		TestPacket *first = NULL;
		for (guint i = 0; i < net->packets->len; i++) {
			TestPacket *p = net->packets->pdata[i];
			if (p->from == 0 && p->to == 1) {
				first = g_ptr_array_steal_index(net->packets, i);
				break;
			}
		}
		g_mutex_unlock(&net->lock);
		ck_assert(first);
		ck_assert(deliver_one(net, 0, 1)); /* the record: ACK_PORT to 0 */
		ck_assert(deliver_one(net, 1, 0)); /* z proxies: CHANGE_PEER to r */
		ck_assert(deliver_one(net, 0, 2)); /* r follows to node 1 */
		test_packet_free(first);
		test_net_crash_node(net, 0);
		test_net_pump(net);
		expect_state(r, PORT_RECV_FAILED);
		mesh_port_close(r);
		mesh_port_close(a);
		mesh_port_close(b);
		test_net_pump(net);
		test_net_free(net);
	}
}
END_TEST

START_TEST(test_fail_port)
{
	TestNet *net = test_net_new(2, test_seed);
	MeshPort *p1, *p2;
	test_net_port_pair(net, 0, 1, &p1, &p2);
	port_fail(p1, "explicit failure");
	test_net_pump(net);
	expect_state(p2, PORT_RECV_FAILED);
	mesh_port_close(p1);
	mesh_port_close(p2);
	test_net_pump(net);
	assert_tables_empty(net);
	test_net_free(net);
}
END_TEST

/*
 * A message sent on a failed port is dropped; the ports it carries fail
 * with the same cause (their peers hear why), they do not just close.
 */
START_TEST(test_send_on_failed_port_fails_carried_ports)
{
	TestNet *net = test_net_new(2, test_seed);
	MeshPort *p1, *p2, *a, *b;
	test_net_port_pair(net, 0, 1, &p1, &p2);
	port_fail(p1, "explicit failure");
	test_net_pump(net);
	mesh_port_new_pair(&a, &b);
	MeshMessage *msg = mesh_message_new("x", 1);
	ck_assert_int_eq(mesh_message_add_port_take(msg, a), 0);
	ck_assert(!port_send(p1, msg, FALSE));
	test_net_pump(net);
	MeshMessage *none = NULL;
	GError *error = NULL;
	ck_assert_int_eq(port_try_recv(b, &none, &error), PORT_RECV_FAILED);
	ck_assert_msg(strstr(error->message, "explicit failure"), "%s", error->message);
	g_clear_error(&error);
	mesh_port_close(b);
	mesh_port_close(p1);
	mesh_port_close(p2);
	test_net_pump(net);
	test_net_free(net);
}
END_TEST

/*
 * Node 0 sends node 1 one event of @n moved ports, each naming a new node
 * as its peer's (@peer_node: that one instead). Returns: the message's
 * ports (the caller closes them); @ret_refused: how many arrived failed
 * because the node held too many remote nodes.
 */
static GPtrArray *receive_ports_naming_nodes(TestNet *net, MeshPort *to, guint64 seq, guint n,
					     const MeshNodeId *peer_node, guint *ret_refused,
					     guint *ret_failed)
{
	const MeshNodeId *from = mesh_node_get_id(net->nodes[0]);
	size_t size = MESH_EVENT_HEADER_SIZE + (size_t)n * MESH_RESOURCE_DATA_SIZE;
	/*
	 * The made-up ports name node 0 as their old home, where no proxy
	 * will send them PROXY_DONE: node 0 speaks upstream's moves to node 1
	 * from now on, or a port whose peer's node failed would wait for that
	 * move to end (port_remote_failed_locked()).
	 */
	mesh_remote_node_set_features(net->handles[1][0], 0);
	uint8_t *buf = g_malloc0(size);
	MeshEventHeader h = {.type = MESH_EVENT_MESSAGE, .flags = MESH_EVENT_FLAG_MESSAGE,
			     .seq = seq, .resource_count = n};
	h.port_id = to->id;
	protocol_event_write_header(buf, &h);
	for (guint i = 0; i < n; i++) {
		MeshResourceData rd = {.old_node = *from};
		mesh_uuid_generate(&rd.id);
		mesh_uuid_generate(&rd.old_port);
		if (peer_node)
			rd.peer_node = *peer_node;
		else
			mesh_uuid_generate(&rd.peer_node);
		mesh_uuid_generate(&rd.peer_port);
		protocol_event_write_resource(buf + MESH_EVENT_HEADER_SIZE +
						      (size_t)i * MESH_RESOURCE_DATA_SIZE,
					      &rd);
	}
	mesh_node_receive_event(net->nodes[1], from, buf, size, NULL, 0);
	g_free(buf);
	test_net_pump(net);

	MeshMessage *msg = NULL;
	ck_assert_int_eq(port_try_recv(to, &msg, NULL), PORT_RECV_MESSAGE);
	ck_assert_uint_eq(mesh_message_get_n_resources(msg), n);
	GPtrArray *ports = g_ptr_array_new();
	*ret_refused = 0;
	if (ret_failed)
		*ret_failed = 0;
	for (guint i = 0; i < n; i++) {
		MeshPort *x = mesh_message_steal_port(msg, i);
		MeshMessage *none = NULL;
		GError *error = NULL;
		if (port_try_recv(x, &none, &error) == PORT_RECV_FAILED) {
			if (strstr(error->message, "too many remote nodes"))
				(*ret_refused)++;
			else if (ret_failed)
				(*ret_failed)++;
		}
		g_clear_error(&error);
		mesh_message_free(none);
		g_ptr_array_add(ports, x);
	}
	mesh_message_free(msg);
	return ports;
}

/* A connector that holds every request, as a transport waiting for an answer. */
static void hold_connector(MeshNode *node, MeshRemoteNode *remote, void *data)
{
	g_ptr_array_add(data, remote);
}

/* The answer to every request held: the node is unknown. */
static void fail_held(GPtrArray *held)
{
	for (guint i = 0; i < held->len; i++) {
		mesh_remote_node_fail(held->pdata[i], "unknown node");
		mesh_remote_node_unref(held->pdata[i]);
	}
	g_ptr_array_set_size(held, 0);
}

static void close_ports(TestNet *net, GPtrArray *ports)
{
	for (guint i = 0; i < ports->len; i++)
		mesh_port_close(ports->pdata[i]);
	g_ptr_array_free(ports, TRUE);
	test_net_pump(net);
}

/*
 * A peer that names ever new nodes (in the records of moved ports) makes
 * the node create a remote node for each. The node keeps one only while
 * something refers to it, so MESH_NODE_MAX_REMOTES bounds the live ones:
 * past it, such ports arrive failed (and a debug line says so, not once
 * per port); once they are closed, the node takes as many again.
 */
START_TEST(test_named_nodes_bounded)
{
	enum { PER_EVENT = 3000 };
	TestNet *net = test_net_new(2, 0);
	MeshPort *p1, *p2;
	test_net_port_pair(net, 0, 1, &p1, &p2);
	MeshNode *node = net->nodes[1];
	GPtrArray *held = g_ptr_array_new();
	mesh_node_set_connector(node, hold_connector, held);
	guint baseline = mesh_node_count_remotes(node);
	int cap_lines = log_count_watch("live remote nodes");
	guint refused;

	/* 6000 live at once: the ports past the cap arrive failed. */
	GPtrArray *first = receive_ports_naming_nodes(net, p2, 1, PER_EVENT, NULL, &refused, NULL);
	ck_assert_uint_eq(refused, 0);
	ck_assert_uint_eq(mesh_node_count_remotes(node), baseline + PER_EVENT);
	GPtrArray *second = receive_ports_naming_nodes(net, p2, 2, PER_EVENT, NULL, &refused, NULL);
	ck_assert_uint_eq(mesh_node_count_remotes(node), MESH_NODE_MAX_REMOTES);
	ck_assert_uint_eq(refused, 2 * PER_EVENT - (MESH_NODE_MAX_REMOTES - baseline));
	ck_assert_int_eq(log_count_get(cap_lines), 1);

	/* Their nodes fail; closed, the ports no longer hold them. */
	fail_held(held);
	close_ports(net, first);
	close_ports(net, second);
	ck_assert_uint_eq(mesh_node_count_remotes(node), baseline);
	for (guint64 seq = 3; seq < 6; seq++) {
		GPtrArray *more =
			receive_ports_naming_nodes(net, p2, seq, PER_EVENT, NULL, &refused, NULL);
		ck_assert_uint_eq(refused, 0);
		fail_held(held);
		close_ports(net, more);
		ck_assert_uint_eq(mesh_node_count_remotes(node), baseline);
	}
	log_count_stop(cap_lines);
	mesh_node_set_connector(node, NULL, NULL);
	g_ptr_array_free(held, TRUE);

	mesh_port_close(p1);
	mesh_port_close(p2);
	test_net_pump(net);
	assert_tables_empty(net);
	test_net_free(net);
}
END_TEST

static void discard_send(void *user_data, const struct iovec *iov, size_t n_iov,
			 const MeshOsHandle *fds, size_t n_fds)
{
	g_atomic_int_inc((gint *)user_data);
}

static const MeshEventSink discard_sink = {.version = 0, .send = discard_send};

/*
 * A port moved to a node whose table is full arrives failed, and its old
 * home hears it (FAIL_PORT naming the refusing node, not a silent drop), so
 * that the port's peer fails at once instead of waiting for the move.
 */
START_TEST(test_refused_port_fails_its_sender)
{
	TestNet *net = test_net_new(2, 0);
	MeshPort *p1, *p2, *q1, *q2;
	test_net_port_pair(net, 0, 1, &p1, &p2);
	test_net_port_pair(net, 0, 1, &q1, &q2);
	MeshNode *node = net->nodes[1];
	GPtrArray *held = g_ptr_array_new();
	mesh_node_set_connector(node, hold_connector, held);
	guint refused;
	int cap_lines = log_count_watch("live remote nodes");

	/* Node 1 is full. */
	GPtrArray *live = receive_ports_naming_nodes(
		net, q2, 1, MESH_NODE_MAX_REMOTES - mesh_node_count_remotes(node), NULL, &refused,
		NULL);
	ck_assert_uint_eq(refused, 0);
	ck_assert_uint_eq(mesh_node_count_remotes(node), MESH_NODE_MAX_REMOTES);

	/* On node 0, a port peered with a port on a node z that node 1 does not know. */
	MeshNodeId z;
	MeshPortId a_id, z_port;
	mesh_uuid_generate(&z);
	mesh_uuid_generate(&a_id);
	mesh_uuid_generate(&z_port);
	gint sent_to_z = 0;
	MeshRemoteNode *hz = mesh_node_add_remote(net->nodes[0], &z);
	ck_assert(mesh_remote_node_connect(hz, &discard_sink, &sent_to_z));
	MeshPort *a = mesh_node_add_port(net->nodes[0], &a_id, &z, &z_port);
	MeshPort *watch = port_ref(a);
	send_port(p1, a);
	test_net_pump(net);

	MeshPort *x = recv_port(p2);
	MeshMessage *none = NULL;
	GError *error = NULL;
	ck_assert_int_eq(port_try_recv(x, &none, &error), PORT_RECV_FAILED);
	ck_assert_msg(strstr(error->message, "too many remote nodes"), "%s", error->message);
	g_clear_error(&error);
	/* The old home failed it, naming node 1, and told z. */
	ck_assert_int_eq(port_get_state(watch), PORT_FAILED);
	ck_assert_int_eq(port_try_recv(watch, &none, &error), PORT_RECV_FAILED);
	char id1[33];
	mesh_uuid_to_string(mesh_node_get_id(node), id1);
	ck_assert_msg(strstr(error->message, id1), "%s", error->message);
	g_clear_error(&error);
	ck_assert_int_gt(g_atomic_int_get(&sent_to_z), 0);
	ck_assert_int_eq(log_count_get(cap_lines), 1);
	log_count_stop(cap_lines);

	port_unref(watch);
	mesh_port_close(x);
	mesh_remote_node_unref(hz);
	fail_held(held);
	close_ports(net, live);
	mesh_node_set_connector(node, NULL, NULL);
	g_ptr_array_free(held, TRUE);
	mesh_port_close(p1);
	mesh_port_close(p2);
	mesh_port_close(q1);
	mesh_port_close(q2);
	test_net_pump(net);
	assert_tables_empty(net);
	test_net_free(net);
}
END_TEST


/*
 * Remote nodes connected, used by ports, failed and dropped in every order:
 * the table returns to its size before, each round.
 */
START_TEST(test_remotes_forgotten)
{
	enum { ROUNDS = 3, PER_ROUND = 3000 };
	TestNet *net = test_net_new(2, 0);
	MeshNode *node = net->nodes[1];
	guint baseline = mesh_node_count_remotes(node);
	gint sent = 0;

	for (guint round = 0; round < ROUNDS; round++) {
		for (guint i = 0; i < PER_ROUND; i++) {
			MeshNodeId id;
			MeshPortId port_id, peer_id;
			mesh_uuid_generate(&id);
			mesh_uuid_generate(&port_id);
			mesh_uuid_generate(&peer_id);
			MeshRemoteNode *h = mesh_node_add_remote(node, &id);
			ck_assert(mesh_remote_node_connect(h, &discard_sink, &sent));
			MeshPort *p = mesh_node_add_port(node, &port_id, &id, &peer_id);
			ck_assert_ptr_nonnull(p);
			port_send_bytes(p, "x");
			switch (i % 4) {
			case 0: /* the transport fails it, then lets go */
				mesh_remote_node_fail(h, "test");
				expect_state(p, PORT_RECV_FAILED);
				mesh_remote_node_unref(h);
				mesh_port_close(p);
				break;
			case 1: /* the transport lets go first */
				mesh_remote_node_unref(h);
				expect_state(p, PORT_RECV_FAILED);
				mesh_port_close(p);
				break;
			case 2: /* the port is closed first (its close waits for the peer) */
				mesh_port_close(p);
				mesh_remote_node_unref(h);
				break;
			default: { /* a handle of the API outlives the transport's */
				MeshRemoteNode *extra = mesh_remote_node_ref(h);
				mesh_remote_node_fail(h, "test");
				mesh_remote_node_unref(h);
				mesh_port_close(p);
				ck_assert_uint_eq(mesh_node_count_remotes(node), baseline + 1);
				mesh_remote_node_unref(extra);
				break;
			}
			}
		}
		ck_assert_uint_eq(mesh_node_count_remotes(node), baseline);
		ck_assert_uint_eq(mesh_node_count_ports(node), 0);
	}
	ck_assert_int_gt(g_atomic_int_get(&sent), 0);
	assert_tables_empty(net);
	test_net_free(net);
}
END_TEST

typedef struct {
	MeshNode *node;
	MeshNodeId *ids;
	guint n_ids;
	guint32 seed;
	gint *sent;
} Churn;

static gpointer churn_thread(gpointer data)
{
	Churn *c = data;
	GRand *rand = g_rand_new_with_seed(c->seed);

	for (guint i = 0; i < 20000; i++) {
		const MeshNodeId *id = &c->ids[g_rand_int_range(rand, 0, (gint32)c->n_ids)];
		MeshPortId port_id, peer_id;
		mesh_uuid_generate(&port_id);
		mesh_uuid_generate(&peer_id);
		MeshRemoteNode *h = mesh_node_add_remote(c->node, id);
		mesh_remote_node_connect(h, &discard_sink, c->sent); /* FALSE if another did */
		MeshPort *p = mesh_node_add_port(c->node, &port_id, id, &peer_id);
		if (g_rand_int_range(rand, 0, 100) == 0)
			mesh_remote_node_fail(h, "test");
		port_send_bytes(p, "x");
		if (g_rand_boolean(rand)) {
			mesh_port_close(p);
			mesh_remote_node_unref(h);
		} else {
			mesh_remote_node_unref(h);
			mesh_port_close(p);
		}
	}
	g_rand_free(rand);
	return NULL;
}

/*
 * Four threads make, use, fail and drop remote nodes of a few ids at once
 * (the same remote node is found, forgotten and made again concurrently):
 * no crash (ASan), and the table returns to its size before.
 */
START_TEST(test_remotes_concurrent)
{
	enum { THREADS = 4, IDS = 64 };
	MeshNode *node = mesh_node_new();
	MeshNodeId ids[IDS];
	gint sent = 0;
	Churn churn[THREADS];
	GThread *threads[THREADS];

	for (guint i = 0; i < IDS; i++)
		mesh_uuid_generate(&ids[i]);
	for (guint t = 0; t < THREADS; t++) {
		churn[t] = (Churn){node, ids, IDS, 1000 + t, &sent};
		threads[t] = g_thread_new("churn", churn_thread, &churn[t]);
	}
	for (guint t = 0; t < THREADS; t++)
		g_thread_join(threads[t]);
	/* A port closed while its node was alive waits for its peer's close: fail them all. */
	for (guint i = 0; i < IDS; i++) {
		MeshRemoteNode *h = mesh_node_add_remote(node, &ids[i]);
		mesh_remote_node_fail(h, "test");
		mesh_remote_node_unref(h);
	}
	ck_assert_uint_eq(mesh_node_count_ports(node), 0);
	ck_assert_uint_eq(mesh_node_count_remotes(node), 0);
	mesh_node_unref(node);
}
END_TEST

/*
 * A failed node is forgotten once nothing refers to it, but its id is
 * remembered (the last MESH_NODE_FAILED_MEMORY): a port that names it later
 * still arrives failed, and it cannot connect again.
 */
START_TEST(test_failed_node_remembered)
{
	TestNet *net = test_net_new(2, 0);
	MeshPort *p1, *p2;
	test_net_port_pair(net, 0, 1, &p1, &p2);
	MeshNode *node = net->nodes[1];
	guint baseline = mesh_node_count_remotes(node);
	MeshNodeId x;
	MeshPortId port_id, peer_id;
	mesh_uuid_generate(&x);

	/* x is connected, a port peers with it, x fails. */
	gint sent = 0;
	MeshRemoteNode *h = mesh_node_add_remote(node, &x);
	ck_assert(mesh_remote_node_connect(h, &discard_sink, &sent));
	mesh_uuid_generate(&port_id);
	mesh_uuid_generate(&peer_id);
	MeshPort *p = mesh_node_add_port(node, &port_id, &x, &peer_id);
	mesh_remote_node_unref(h);
	expect_state(p, PORT_RECV_FAILED);
	mesh_port_close(p);
	ck_assert_uint_eq(mesh_node_count_remotes(node), baseline);

	/* A port made for it, or moved in naming it, is failed. */
	mesh_uuid_generate(&port_id);
	p = mesh_node_add_port(node, &port_id, &x, &peer_id);
	expect_state(p, PORT_RECV_FAILED);
	mesh_port_close(p);
	guint refused, failed;
	GPtrArray *ports = receive_ports_naming_nodes(net, p2, 1, 10, &x, &refused, &failed);
	ck_assert_uint_eq(failed, 10);
	close_ports(net, ports);
	h = mesh_node_add_remote(node, &x);
	ck_assert(!mesh_remote_node_connect(h, &discard_sink, NULL));
	mesh_remote_node_unref(h);
	ck_assert_uint_eq(mesh_node_count_remotes(node), baseline);

	/* The memory is bounded: after as many other failures, x is new again. */
	for (guint i = 0; i < MESH_NODE_FAILED_MEMORY; i++) {
		MeshNodeId y;
		mesh_uuid_generate(&y);
		MeshRemoteNode *hy = mesh_node_add_remote(node, &y);
		mesh_remote_node_fail(hy, "test");
		mesh_remote_node_unref(hy);
	}
	ck_assert_uint_eq(mesh_node_count_remotes(node), baseline);
	h = mesh_node_add_remote(node, &x);
	ck_assert(mesh_remote_node_connect(h, &discard_sink, &sent));
	mesh_remote_node_unref(h);

	mesh_port_close(p1);
	mesh_port_close(p2);
	test_net_pump(net);
	assert_tables_empty(net);
	test_net_free(net);
}
END_TEST

/*
 * A message over the receiving node's limits (4097 resources) is refused
 * by the sender: the port that sent it fails saying so ("too many
 * resources"), the ports it carried fail the same way, so their peers hear
 * why instead of waiting on a move that the receiver would never accept,
 * and the receiving port fails instead of waiting for its seq forever,
 * naming the node that failed it, not as if that node had failed.
 */
START_TEST(test_over_limits_across_nodes)
{
	enum { N = MESH_EVENT_MAX_RESOURCES + 1 };
	TestNet *net = test_net_new(2, 0);
	MeshPort *p1, *p2;
	MeshPort **kept = g_new(MeshPort *, N);
	test_net_port_pair(net, 0, 1, &p1, &p2);
	MeshMessage *msg = mesh_message_new("big", 3);
	for (guint i = 0; i < N; i++) {
		MeshPort *x;
		mesh_port_new_pair(&x, &kept[i]);
		ck_assert_int_eq(mesh_message_add_port_take(msg, x), (int)i);
	}
	port_send(p1, msg, FALSE);
	test_net_pump(net);
	/* Lost on the way: the receiving port fails (it cannot wait for that seq). */
	MeshMessage *none = NULL;
	GError *error = NULL;
	char id0[33];
	mesh_uuid_to_string(mesh_node_get_id(net->nodes[0]), id0);
	ck_assert_int_eq(port_try_recv(p2, &none, &error), PORT_RECV_FAILED);
	ck_assert_msg(g_error_matches(error, MESH_ERROR, MESH_ERROR_NODE_FAILURE), "%s",
		      error->message);
	char *expect = g_strdup_printf("node %s failed the peer port", id0);
	ck_assert_msg(strstr(error->message, expect), "%s", error->message);
	g_free(expect);
	g_clear_error(&error);
	/* The sender hears it too. */
	ck_assert_int_eq(port_try_recv(p1, &none, &error), PORT_RECV_FAILED);
	ck_assert_msg(g_error_matches(error, MESH_ERROR, MESH_ERROR_MESSAGE_TOO_LARGE) &&
			      strstr(error->message, "too many resources"),
		      "%s", error->message);
	g_clear_error(&error);
	for (guint i = 0; i < N; i++) {
		ck_assert_int_eq(port_try_recv(kept[i], &none, &error), PORT_RECV_FAILED);
		ck_assert_msg(strstr(error->message, "too many resources"), "%s", error->message);
		g_clear_error(&error);
		mesh_port_close(kept[i]);
	}
	g_free(kept);
	mesh_port_close(p1);
	mesh_port_close(p2);
	test_net_free(net);
}
END_TEST

/*
 * A relayed message whose first resource (a port) was stolen: the empty
 * slot must not be read as an fd on the other node, so the fd behind it
 * still arrives, in its own slot, with the first slot a failed port.
 */
START_TEST(test_empty_slot_across_nodes)
{
	TestNet *net = test_net_new(2, test_seed);
	MeshPort *p1, *p2, *a, *b;
	test_net_port_pair(net, 0, 1, &p1, &p2);
	mesh_port_new_pair(&a, &b);
	int pipefd[2];
	ck_assert_int_eq(pipe2(pipefd, O_CLOEXEC), 0);
	MeshMessage *msg = mesh_message_new("relay", 5);
	ck_assert_int_eq(mesh_message_add_port_take(msg, a), 0);
	ck_assert_int_eq(mesh_message_add_fd_take(msg, pipefd[1]), 1);
	MeshPort *stolen = mesh_message_steal_port(msg, 0);
	ck_assert_ptr_eq(stolen, a);
	port_send(p1, msg, FALSE);
	test_net_pump(net);

	msg = NULL;
	ck_assert_int_eq(port_try_recv(p2, &msg, NULL), PORT_RECV_MESSAGE);
	ck_assert_uint_eq(mesh_message_get_n_resources(msg), 2);
	MeshPort *gone = mesh_message_steal_port(msg, 0);
	ck_assert_ptr_nonnull(gone);
	expect_state(gone, PORT_RECV_FAILED);
	int w = mesh_message_steal_fd(msg, 1);
	ck_assert_int_ge(w, 0);
	ck_assert_int_eq(write(w, "x", 1), 1);
	char c;
	ck_assert_int_eq(read(pipefd[0], &c, 1), 1);
	close(w);
	close(pipefd[0]);
	mesh_message_free(msg);
	mesh_port_close(gone);
	mesh_port_close(stolen);
	mesh_port_close(b);
	mesh_port_close(p1);
	mesh_port_close(p2);
	test_net_pump(net);
	test_net_free(net);
}
END_TEST

START_TEST(test_fd_across_nodes)
{
	TestNet *net = test_net_new(2, test_seed);
	MeshPort *p1, *p2;
	test_net_port_pair(net, 0, 1, &p1, &p2);
	int pipefd[2];
	ck_assert_int_eq(pipe2(pipefd, O_CLOEXEC), 0);
	MeshMessage *msg = mesh_message_new("fd", 2);
	ck_assert_int_ge(mesh_message_add_fd_take(msg, pipefd[1]), 0);
	port_send(p1, msg, FALSE);
	test_net_pump(net);
	ck_assert(!fd_is_open(pipefd[1])); /* moved out, closed here */

	msg = NULL;
	ck_assert_int_eq(port_try_recv(p2, &msg, NULL), PORT_RECV_MESSAGE);
	int w = mesh_message_steal_fd(msg, 0);
	ck_assert_int_ge(w, 0);
	ck_assert_int_eq(write(w, "x", 1), 1);
	char c;
	ck_assert_int_eq(read(pipefd[0], &c, 1), 1);
	ck_assert_int_eq(c, 'x');
	close(w);
	close(pipefd[0]);
	mesh_message_free(msg);
	mesh_port_close(p1);
	mesh_port_close(p2);
	test_net_free(net);
}
END_TEST

START_TEST(test_hostile_events)
{
	TestNet *net = test_net_new(2, 0);
	MeshPort *p1, *p2;
	test_net_port_pair(net, 0, 1, &p1, &p2);
	MeshNode *node = net->nodes[1];
	const MeshNodeId *from = mesh_node_get_id(net->nodes[0]);
	uint8_t buf[256] = {0};
	MeshOsHandle fds[2];

	/* Garbage, truncations, a bad type, fds without resources, an unknown port. */
	for (size_t size = 0; size < sizeof(buf); size += 7) {
		for (int i = 0; i < 2; i++)
			fds[i] = test_resource_new();
		memset(buf, (int)size, sizeof(buf));
		mesh_node_receive_event(node, from, buf, size, fds, 2);
		ck_assert(!os_handle_is_open(fds[0]));
		ck_assert(!os_handle_is_open(fds[1]));
	}
	/* A message naming an fd it does not carry. */
	MeshEventHeader h = {.type = MESH_EVENT_MESSAGE, .flags = MESH_EVENT_FLAG_MESSAGE,
			     .seq = 1, .resource_count = 1};
	h.port_id = p2->id;
	protocol_event_write_header(buf, &h);
	MeshResourceData rd = {0};
	protocol_event_write_resource(buf + MESH_EVENT_HEADER_SIZE, &rd);
	mesh_node_receive_event(node, from, buf, MESH_EVENT_HEADER_SIZE + MESH_RESOURCE_DATA_SIZE,
				NULL, 0);
	/* A duplicate sequence number fails only that port. */
	port_send_bytes(p1, "one");
	test_net_pump(net);
	expect_text(p2, "one");
	h.resource_count = 0;
	h.flags = MESH_EVENT_FLAG_MESSAGE;
	h.seq = 1;
	protocol_event_write_header(buf, &h);
	mesh_node_receive_event(node, from, buf, MESH_EVENT_HEADER_SIZE, NULL, 0);
	expect_state(p2, PORT_RECV_FAILED);
	mesh_port_close(p1);
	mesh_port_close(p2);

	/*
	 * A duplicate that arrives while the gap before it is open (3, 3, then
	 * 2): once 2 fills the gap, the second 3 is behind the sequence; it must
	 * fail the port, not sit on top of the reorder heap and block it.
	 */
	test_net_port_pair(net, 0, 1, &p1, &p2);
	port_send_bytes(p1, "one");
	test_net_pump(net);
	expect_text(p2, "one");
	h.port_id = p2->id;
	for (int i = 0; i < 3; i++) {
		h.seq = i < 2 ? 3 : 2;
		protocol_event_write_header(buf, &h);
		mesh_node_receive_event(node, from, buf, MESH_EVENT_HEADER_SIZE, NULL, 0);
	}
	expect_state(p2, PORT_RECV_MESSAGE); /* 2 */
	expect_state(p2, PORT_RECV_MESSAGE); /* the first 3 */
	expect_state(p2, PORT_RECV_FAILED);
	mesh_port_close(p1);
	mesh_port_close(p2);

	/* An event far beyond the reorder window fails the port at once. */
	test_net_port_pair(net, 0, 1, &p1, &p2);
	h.port_id = p2->id;
	h.seq = 2 + (guint64)PORT_REORDER_WINDOW + 1;
	protocol_event_write_header(buf, &h);
	mesh_node_receive_event(node, from, buf, MESH_EVENT_HEADER_SIZE, NULL, 0);
	expect_state(p2, PORT_RECV_FAILED);
	mesh_port_close(p1);
	mesh_port_close(p2);
	test_net_free(net);
}
END_TEST

START_TEST(test_uuid)
{
	MeshUuid a, b;
	char s[33];
	mesh_uuid_generate(&a);
	mesh_uuid_generate(&b);
	ck_assert(memcmp(&a, &b, sizeof(a)) != 0);
	ck_assert(!mesh_uuid_is_zero(&a));
	MeshUuid z = {{0}};
	ck_assert_str_eq(mesh_uuid_to_string(&z, s), "0");
	z.bytes[15] = 0x1f;
	z.bytes[14] = 0x02;
	ck_assert_str_eq(mesh_uuid_to_string(&z, s), "21f");
}
END_TEST


typedef struct {
	MeshPort *port;
	int id;
	int count;
} SenderThread;

/* upstream local_node.rs test_async: a send from another thread, across nodes. */
static gpointer send_abc_thread(gpointer data)
{
	port_send_bytes(data, "abc");
	return NULL;
}

START_TEST(test_async)
{
	TestNet *net = test_net_new(2, test_seed);
	MeshPort *p1, *p2;
	test_net_port_pair(net, 0, 1, &p1, &p2);
	GThread *t = g_thread_new("send", send_abc_thread, p1);
	MeshMessage *msg = NULL;
	PortRecv r;
	while ((r = port_try_recv(p2, &msg, NULL)) == PORT_RECV_EMPTY)
		if (!test_net_step(net))
			g_thread_yield();
	g_thread_join(t);
	ck_assert_int_eq(r, PORT_RECV_MESSAGE);
	size_t size;
	const uint8_t *data = mesh_message_get_data(msg, &size);
	ck_assert(size == 3 && memcmp(data, "abc", 3) == 0);
	mesh_message_free(msg);
	mesh_port_close(p1);
	mesh_port_close(p2);
	test_net_pump(net);
	assert_tables_empty(net);
	test_net_free(net);
}
END_TEST

/* upstream local_node.rs test_async_close: the far end dropped by another thread. */
static gpointer close_thread(gpointer data)
{
	mesh_port_close(data);
	return NULL;
}

START_TEST(test_async_close)
{
	TestNet *net = test_net_new(2, test_seed);
	MeshPort *p1, *p2;
	test_net_port_pair(net, 0, 1, &p1, &p2);
	GThread *t = g_thread_new("close", close_thread, p1);
	MeshMessage *msg = NULL;
	PortRecv r;
	while ((r = port_try_recv(p2, &msg, NULL)) == PORT_RECV_EMPTY)
		if (!test_net_step(net))
			g_thread_yield();
	g_thread_join(t);
	ck_assert_int_eq(r, PORT_RECV_CLOSED);
	mesh_port_close(p2);
	test_net_pump(net);
	assert_tables_empty(net);
	test_net_free(net);
}
END_TEST

static gpointer sender_thread(gpointer data)
{
	SenderThread *t = data;
	char text[32];
	for (int k = 0; k < t->count; k++) {
		snprintf(text, sizeof(text), "%d:%d", t->id, k);
		port_send_bytes(t->port, text);
	}
	return NULL;
}

START_TEST(test_concurrent_senders_across_nodes)
{
	/* Four threads send on one port while the main thread moves packets. */
	enum { THREADS = 4, PER_THREAD = 5000 };
	TestNet *net = test_net_new(2, test_seed);
	MeshPort *p1, *p2;
	test_net_port_pair(net, 0, 1, &p1, &p2);
	SenderThread t[THREADS];
	GThread *threads[THREADS];
	for (int i = 0; i < THREADS; i++) {
		t[i] = (SenderThread){p1, i, PER_THREAD};
		threads[i] = g_thread_new("sender", sender_thread, &t[i]);
	}
	int next[THREADS] = {0}, received = 0;
	while (received < THREADS * PER_THREAD) {
		test_net_step(net);
		MeshMessage *msg;
		while (port_try_recv(p2, &msg, NULL) == PORT_RECV_MESSAGE) {
			size_t size;
			const uint8_t *data = mesh_message_get_data(msg, &size);
			int id, k;
			char text[32];
			memcpy(text, data, size);
			text[size] = '\0';
			ck_assert_int_eq(sscanf(text, "%d:%d", &id, &k), 2);
			ck_assert_int_eq(k, next[id]); /* FIFO per sender */
			next[id]++;
			received++;
			mesh_message_free(msg);
		}
	}
	for (int i = 0; i < THREADS; i++)
		g_thread_join(threads[i]);
	expect_state(p2, PORT_RECV_EMPTY);
	mesh_port_close(p1);
	mesh_port_close(p2);
	test_net_pump(net);
	assert_tables_empty(net);
	test_net_free(net);
}
END_TEST

/* Connects node @i to node @j on demand, as a leader's introduction would. */
static void connect_on_demand(MeshNode *node, MeshRemoteNode *remote, void *user_data)
{
	TestNet *net = user_data;
	guint from = 0, to = 0;
	for (guint k = 0; k < net->n; k++) {
		if (net->nodes[k] == node)
			from = k;
		if (memcmp(mesh_node_get_id(net->nodes[k]), mesh_remote_node_get_id(remote),
			   sizeof(MeshNodeId)) == 0)
			to = k;
	}
	net->links[from][to] = (TestLink){net, from, to};
	ck_assert(mesh_remote_node_connect(remote, &test_link_sink, &net->links[from][to]));
	ck_assert_ptr_null(net->handles[from][to]);
	net->handles[from][to] = remote;
}

START_TEST(test_connector)
{
	/* Nodes 1 and 2 know only node 0; a port whose peer is on node 2 lands on node 1. */
	TestNet *net = g_new0(TestNet, 1);
	net->n = 3;
	g_mutex_init(&net->lock);
	net->packets = g_ptr_array_new();
	if (test_seed)
		net->rand = g_rand_new_with_seed(test_seed);
	for (guint i = 0; i < 3; i++) {
		net->nodes[i] = mesh_node_new();
		mesh_node_set_connector(net->nodes[i], connect_on_demand, net);
	}
	for (guint j = 1; j < 3; j++) {
		guint pairs[2][2] = {{0, j}, {j, 0}};
		for (int k = 0; k < 2; k++) {
			guint a = pairs[k][0], b = pairs[k][1];
			net->links[a][b] = (TestLink){net, a, b};
			net->handles[a][b] =
				mesh_node_add_remote(net->nodes[a], mesh_node_get_id(net->nodes[b]));
			mesh_remote_node_connect(net->handles[a][b], &test_link_sink,
						 &net->links[a][b]);
		}
	}
	MeshPort *p01, *p10, *p02, *p20, *x, *y;
	test_net_port_pair(net, 0, 1, &p01, &p10);
	test_net_port_pair(net, 0, 2, &p02, &p20);
	mesh_port_new_pair(&x, &y);
	send_port(p01, x);
	send_port(p02, y);
	test_net_pump(net);
	MeshPort *x1 = recv_port(p10), *y2 = recv_port(p20);
	port_send_bytes(x1, "direct");
	test_net_pump(net);
	expect_text(y2, "direct");
	ck_assert_ptr_nonnull(net->handles[1][2]); /* the connector ran */

	mesh_port_close(x1);
	mesh_port_close(y2);
	mesh_port_close(p01);
	mesh_port_close(p10);
	mesh_port_close(p02);
	mesh_port_close(p20);
	test_net_pump(net);
	assert_tables_empty(net);
	test_net_free(net);
}
END_TEST

#ifdef G_OS_WIN32
/*
 * Windows: OS resources travel between nodes as HANDLEs. An event (which no
 * C runtime descriptor can hold) goes across nodes and arrives as a usable
 * duplicate; a descriptor's handle leaves as a duplicate (the descriptor is
 * closed at the sender) and comes back as a descriptor from
 * mesh_message_steal_fd(); an invalid handle is refused at once.
 */
START_TEST(test_handles_across_nodes)
{
	TestNet *net = test_net_new(2, test_seed);
	MeshPort *p1, *p2;
	test_net_port_pair(net, 0, 1, &p1, &p2);
	HANDLE ev = CreateEventW(NULL, TRUE, FALSE, NULL);
	int pipefd[2];
	ck_assert(ev != NULL);
	ck_assert_int_eq(_pipe(pipefd, 4096, _O_BINARY | _O_NOINHERIT), 0);

	MeshMessage *msg = mesh_message_new("h", 1);
	ck_assert_int_eq(mesh_message_add_handle_take(msg, NULL), -EBADF);
	ck_assert_int_eq(mesh_message_add_handle_take(msg, INVALID_HANDLE_VALUE), -EBADF);
	ck_assert_int_eq(mesh_message_add_handle(msg, ev), 0);  /* a duplicate */
	ck_assert_int_eq(mesh_message_add_fd_take(msg, pipefd[1]), 1);
	ck_assert_int_eq(mesh_message_add_handle_take(msg, CreateEventW(NULL, TRUE, TRUE, NULL)), 2);
	port_send(p1, msg, FALSE);
	test_net_pump(net);
	ck_assert(!fd_is_open(pipefd[1])); /* its handle left as a duplicate */

	msg = NULL;
	ck_assert_int_eq(port_try_recv(p2, &msg, NULL), PORT_RECV_MESSAGE);
	ck_assert_uint_eq(mesh_message_get_n_resources(msg), 3);
	/* An event is no file: no descriptor for it, and the entry stays. */
	ck_assert_int_eq(mesh_message_steal_fd(msg, 0), -EINVAL);
	HANDLE got = mesh_message_steal_handle(msg, 0);
	ck_assert(got != NULL && got != ev);
	ck_assert(mesh_message_steal_handle(msg, 0) == NULL); /* stolen already */
	DWORD flags;
	ck_assert(GetHandleInformation(got, &flags));
	ck_assert_uint_eq(flags & HANDLE_FLAG_INHERIT, 0);
	ck_assert_uint_eq(WaitForSingleObject(ev, 0), WAIT_TIMEOUT);
	ck_assert(SetEvent(got)); /* the same event */
	ck_assert_uint_eq(WaitForSingleObject(ev, 0), WAIT_OBJECT_0);
	CloseHandle(got);

	int w = mesh_message_steal_fd(msg, 1); /* the pipe's handle, as a descriptor */
	ck_assert_int_ge(w, 0);
	ck_assert_int_eq(write(w, "x", 1), 1);
	char c = 0;
	ck_assert_int_eq(read(pipefd[0], &c, 1), 1);
	ck_assert_int_eq(c, 'x');
	close(w);
	close(pipefd[0]);

	HANDLE set = mesh_message_steal_handle(msg, 2);
	ck_assert_uint_eq(WaitForSingleObject(set, 0), WAIT_OBJECT_0);
	CloseHandle(set);
	mesh_message_free(msg);
	CloseHandle(ev);
	mesh_port_close(p1);
	mesh_port_close(p2);
	test_net_free(net);
}
END_TEST

/* Windows: a cancel context's handle is a waitable timer, signalled once the
 * deadline passed or at the cancel. */
START_TEST(test_cancel_handle)
{
	MeshCancel *cancel = NULL;
	MeshCancelContext *root = mesh_cancel_context_new();
	MeshCancelContext *ctx = mesh_cancel_context_with_cancel(root, &cancel);
	HANDLE h = mesh_cancel_context_get_handle(ctx);
	ck_assert(h != NULL);
	ck_assert(mesh_cancel_context_get_handle(ctx) == h);
	ck_assert_uint_eq(WaitForSingleObject(h, 0), WAIT_TIMEOUT);
	mesh_cancel_cancel(cancel);
	ck_assert_uint_eq(WaitForSingleObject(h, 10000), WAIT_OBJECT_0);
	mesh_cancel_free(cancel);
	mesh_cancel_context_free(ctx);

	/* A deadline 50 ms away (monotonic), one long passed (wall clock only). */
	MeshCancelContext *soon = mesh_cancel_context_with_timeout(root, 50 * 1000);
	h = mesh_cancel_context_get_handle(soon);
	ck_assert_uint_eq(WaitForSingleObject(h, 10000), WAIT_OBJECT_0);
	MeshCancelReason reason = MESH_CANCEL_REASON_NONE;
	ck_assert(mesh_cancel_context_is_cancelled(soon, &reason));
	ck_assert_int_eq(reason, MESH_CANCEL_REASON_DEADLINE_EXCEEDED);
	mesh_cancel_context_free(soon);

	MeshDeadline past = {.wall_sec = 1000};
	MeshCancelContext *late = mesh_cancel_context_with_deadline(root, &past);
	ck_assert_uint_eq(WaitForSingleObject(mesh_cancel_context_get_handle(late), 10000),
			  WAIT_OBJECT_0);
	mesh_cancel_context_free(late);
	mesh_cancel_context_free(root);
}
END_TEST
#endif

static void add_moving_tests(TCase *tc)
{
	tcase_add_test(tc, test_remote);
	tcase_add_test(tc, test_remote_close);
	tcase_add_test(tc, test_send_port);
	tcase_add_test(tc, test_send_port_with_three_nodes);
	tcase_add_test(tc, test_concurrent_moves);
	tcase_add_test(tc, test_move_back_and_forth);
	tcase_add_test(tc, test_send_closed_port);
	tcase_add_test(tc, test_bridge_remote);
	tcase_add_test(tc, test_bridge_done_remote);
	tcase_add_test(tc, test_fail_port);
	tcase_add_test(tc, test_fd_across_nodes);
	tcase_add_test(tc, test_empty_slot_across_nodes);
	tcase_add_test(tc, test_connector);
}

static void reorder_setup(void)
{
	test_seed = (guint32)g_random_int() | 1;
}

static void in_order_setup(void)
{
	test_seed = 0;
}

int main(void)
{
	Suite *s = suite_create("libmeshremote-port");
	TCase *tc = tcase_create("port");
	tcase_add_checked_fixture(tc, in_order_setup, NULL);
	tcase_add_test(tc, test_uuid);
	tcase_add_test(tc, test_local);
	tcase_add_test(tc, test_local_close);
	add_moving_tests(tc);
	tcase_add_test(tc, test_node_fail);
	tcase_add_test(tc, test_send_failed_port);
	tcase_add_test(tc, test_fail_sent_port_to_failed_node);
	tcase_add_test(tc, test_bridge_local);
	tcase_add_test(tc, test_move_back_peer_closed_meanwhile);
	tcase_add_test(tc, test_bridge_local_reverse);
	tcase_add_test(tc, test_bridge_done_local);
	tcase_add_test(tc, test_bridge_self);
	tcase_add_test(tc, test_close_drop_port_with_queued_ports);
	tcase_add_test(tc, test_close_send_port_to_dropped_port);
	tcase_add_test(tc, test_hostile_events);
	tcase_add_test(tc, test_named_nodes_bounded);
	tcase_add_test(tc, test_remotes_forgotten);
	tcase_add_test(tc, test_remotes_concurrent);
	tcase_add_test(tc, test_refused_port_fails_its_sender);
	tcase_add_test(tc, test_send_on_failed_port_fails_carried_ports);
	tcase_add_test(tc, test_failed_node_remembered);
	tcase_add_test(tc, test_over_limits_across_nodes);
	tcase_add_test(tc, test_concurrent_senders_across_nodes);
	tcase_add_test(tc, test_async);
	tcase_add_test(tc, test_async_close);
	tcase_add_test(tc, test_move_mover_crashes);
	tcase_add_test(tc, test_move_peer_leaves);
	tcase_add_test(tc, test_bridge_node_crashes);
	tcase_add_test(tc, test_ports_lost_with_failure);
	suite_add_tcase(s, tc);

#ifdef G_OS_WIN32
	TCase *win = tcase_create("win32");
	tcase_add_test(win, test_handles_across_nodes);
	tcase_add_test(win, test_cancel_handle);
	suite_add_tcase(s, win);
#endif

	/* The same scenarios with the transport delivering in random order. */
	TCase *reorder = tcase_create("reorder");
	tcase_add_checked_fixture(reorder, reorder_setup, NULL);
	for (int i = 0; i < 20; i++)
		add_moving_tests(reorder);
	suite_add_tcase(s, reorder);

	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_ENV);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
