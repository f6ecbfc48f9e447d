/* SPDX-License-Identifier: MIT */
/*
 * The Unix transport across real processes: a parent node and child
 * processes (unix-test-child) joined by SOCK_SEQPACKET socketpairs.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glib-unix.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <pal/pal.h>

#include "log-count.h"
#include "test-channel.pb-c.h"
#include "unix-leader-private.h"
#include "unix-test.h"

/* unix-leader-private.h (which needs the generated protocol header): the leader's pairs. */
guint unix_leader_count_pairs(MeshUnixNode *u);

typedef struct {
	MeshNode *node;
	MeshUnixNode *unode;
} Parent;

typedef struct {
	PalChild *process;
	MeshNodeId id;
	MeshPort *port;
	TestRecv *recv;
} Child;

static Parent parent;

static void parent_setup(void)
{
	parent.node = mesh_node_new();
	parent.unode = mesh_unix_node_new(parent.node, NULL);
}

static void parent_teardown(void)
{
	/* A test may have freed the transport already. */
	if (parent.unode)
		mesh_unix_node_shutdown(parent.unode, 5 * G_USEC_PER_SEC);
	mesh_unix_node_free(parent.unode);
	mesh_node_unref(parent.node);
}

/* A child that joins the parent's mesh with an invitation (fd 3). */
static Child *spawn_joiner(const char *scenario, const char *arg)
{
	Child *c = g_new0(Child, 1);
	MeshPort *theirs;
	MeshInvitation *inv = NULL;
	MeshNodeId ln, rn;
	MeshPortId lp, rp;
	char ids[4][33];

	mesh_port_new_pair(&c->port, &theirs);
	c->recv = test_recv_new(c->port);
	ck_assert(mesh_unix_node_invite(parent.unode, theirs, -1, &inv, NULL));
	mesh_invitation_get_address(inv, &ln, &lp, &rn, &rp);
	c->id = ln;
	uuid_to_hex(&ln, ids[0]);
	uuid_to_hex(&rn, ids[1]);
	uuid_to_hex(&lp, ids[2]);
	uuid_to_hex(&rp, ids[3]);
	PalSpawn *spawn = pal_spawn_new(UNIX_TEST_CHILD);
	const char *args[] = {"join", ids[0], ids[1], ids[2], ids[3], scenario, arg, NULL};
	pal_spawn_add_args(spawn, args);
	pal_spawn_dup_fd(spawn, mesh_invitation_get_fd(inv), 3);
	/* The invitation's extensions travel with it, as libmeshprocess's do. */
	char ext[16];
	g_snprintf(ext, sizeof(ext), "%u", mesh_invitation_get_extensions(inv));
	pal_spawn_env_set(spawn, "UNIX_TEST_EXTENSIONS", ext);
	pal_spawn_set_parent_death_signal(spawn, SIGKILL);
	ck_assert_int_eq(pal_spawn_run(spawn, &c->process), 0);
	pal_spawn_free(spawn);
	mesh_invitation_free(inv);
	return c;
}

/* Called with the child's port before its connection exists (events queue). */
typedef void (*BeforeConnect)(Child *c, void *data);

static Child *spawn_child_full(const char *scenario, const char *arg, BeforeConnect before,
			       void *data)
{
	Child *c = g_new0(Child, 1);
	MeshPortId my_port, child_port;
	char ids[4][33];
	int sv[2];

	mesh_uuid_generate(&c->id);
	mesh_uuid_generate(&my_port);
	mesh_uuid_generate(&child_port);
	ck_assert_int_eq(pal_socketpair(SOCK_SEQPACKET, sv), 0);
	MeshRemoteNode *h = mesh_node_add_remote(parent.node, &c->id);
	c->port = mesh_node_add_port(parent.node, &my_port, &c->id, &child_port);
	if (before)
		before(c, data);
	ck_assert(mesh_unix_node_connect_take(parent.unode, &c->id, sv[0], NULL));
	mesh_remote_node_unref(h);
	ck_assert_ptr_nonnull(c->port);
	c->recv = test_recv_new(c->port);

	uuid_to_hex(&c->id, ids[0]);
	uuid_to_hex(mesh_node_get_id(parent.node), ids[1]);
	uuid_to_hex(&child_port, ids[2]);
	uuid_to_hex(&my_port, ids[3]);
	PalSpawn *spawn = pal_spawn_new(UNIX_TEST_CHILD);
	const char *args[] = {ids[0], ids[1], ids[2], ids[3], scenario, arg, NULL};
	pal_spawn_add_args(spawn, args);
	pal_spawn_dup_fd(spawn, sv[1], 3);
	pal_spawn_set_parent_death_signal(spawn, SIGKILL);
	ck_assert_int_eq(pal_spawn_run(spawn, &c->process), 0);
	pal_spawn_free(spawn);
	close(sv[1]);
	return c;
}

static Child *spawn_child(const char *scenario, const char *arg)
{
	return spawn_child_full(scenario, arg, NULL, NULL);
}

/* Closes the parent's end of the child's bootstrap port. */
static void child_close_port(Child *c)
{
	test_recv_free(c->recv);
	c->recv = NULL;
	mesh_port_close(c->port);
	c->port = NULL;
}

/* Waits for the child's exit (bounded) and frees everything. */
static int child_finish(Child *c)
{
	int status = -1;
	for (int i = 0; i < 2000; i++) {
		if (pal_child_try_wait(c->process, &status) == 0)
			break;
		g_usleep(5000);
	}
	if (pal_child_try_wait(c->process, &status) != 0) {
		pal_child_kill(c->process, SIGKILL);
		pal_child_wait(c->process, &status);
		ck_abort_msg("child did not exit");
	}
	if (c->port)
		child_close_port(c);
	pal_child_free(c->process);
	g_free(c);
	return status;
}

static MeshMessage *expect_message(TestRecv *r)
{
	MeshMessage *msg = test_recv_wait(r, 20000);
	ck_assert_msg(test_recv_is_message(msg), "no message (%p)", msg);
	return msg;
}

static void expect_bytes(TestRecv *r, const void *data, size_t size)
{
	MeshMessage *msg = expect_message(r);
	size_t got;
	const uint8_t *bytes = mesh_message_get_data(msg, &got);
	ck_assert_uint_eq(got, size);
	ck_assert(size == 0 || memcmp(bytes, data, size) == 0);
	mesh_message_free(msg);
}

START_TEST(test_echo)
{
	Child *c = spawn_child("echo", NULL);
	port_send_bytes(c->port, "hello");
	expect_bytes(c->recv, "hello", 5);
	child_close_port(c);
	ck_assert_int_eq(child_finish(c), 0);
}
END_TEST

START_TEST(test_message_sizes)
{
	/* Every size across the large-event threshold, one by one. */
	Child *c = spawn_child("echo", NULL);
	enum { HEADER = MESH_EVENT_HEADER_SIZE + 8 };
	size_t threshold = MESH_UNIX_MAX_PACKET_SIZE - HEADER;
	uint8_t *buf = g_malloc(threshold + 4096);
	for (size_t i = 0; i < threshold + 4096; i++)
		buf[i] = (uint8_t)(i * 7 + 1);
	for (size_t size = 0; size <= threshold + 4096; size++) {
		port_send(c->port, mesh_message_new(buf, size), FALSE);
		expect_bytes(c->recv, buf, size);
	}
	g_free(buf);
	child_close_port(c);
	ck_assert_int_eq(child_finish(c), 0);
}
END_TEST

START_TEST(test_huge_message)
{
	size_t size = 16u << 20;
	Child *c = spawn_child("echo", NULL);
	uint8_t *buf = g_malloc(size);
	for (size_t i = 0; i < size; i++)
		buf[i] = (uint8_t)(i ^ (i >> 11));
	port_send(c->port, mesh_message_new(buf, size), FALSE);
	expect_bytes(c->recv, buf, size);
	g_free(buf);
	child_close_port(c);
	ck_assert_int_eq(child_finish(c), 0);
}
END_TEST

START_TEST(test_fds_and_no_leak)
{
	Child *c = spawn_child("echo", NULL);
	port_send_bytes(c->port, "warm up");
	expect_bytes(c->recv, "warm up", 7);
	int before = count_fds();

	int pipefd[2];
	ck_assert_int_eq(pipe2(pipefd, O_CLOEXEC), 0);
	MeshMessage *msg = mesh_message_new("fd", 2);
	mesh_message_add_fd(msg, pipefd[1]);
	mesh_message_add_fd(msg, pipefd[0]);
	port_send(c->port, msg, FALSE);
	msg = expect_message(c->recv);
	ck_assert_uint_eq(mesh_message_get_n_resources(msg), 2);
	int w = mesh_message_steal_fd(msg, 0);
	struct stat a, b;
	ck_assert_int_eq(fstat(w, &a), 0);
	ck_assert_int_eq(fstat(pipefd[1], &b), 0);
	ck_assert(a.st_ino == b.st_ino && a.st_dev == b.st_dev);
	ck_assert_int_eq(write(w, "z", 1), 1);
	char ch;
	ck_assert_int_eq(read(pipefd[0], &ch, 1), 1);
	ck_assert_int_eq(ch, 'z');
	close(w);
	mesh_message_free(msg);
	close(pipefd[0]);
	close(pipefd[1]);
	ck_assert_int_eq(count_fds(), before);

	child_close_port(c);
	ck_assert_int_eq(child_finish(c), 0);
}
END_TEST

/*
 * upstream alpc_node.rs test_socket, on Unix: one end of a socketpair goes
 * to a child process and back; what is written on the other end, read to
 * its end through the copy that travelled, is "abc".
 */
START_TEST(test_socket_fd)
{
	Child *c = spawn_child("echo", NULL);
	int sv[2];
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	MeshMessage *msg = mesh_message_new("socket", 6);
	ck_assert_int_eq(mesh_message_add_fd_take(msg, sv[1]), 0);
	port_send(c->port, msg, FALSE);
	msg = expect_message(c->recv);
	ck_assert_uint_eq(mesh_message_get_n_resources(msg), 1);
	int s2 = mesh_message_steal_fd(msg, 0);
	mesh_message_free(msg);
	ck_assert_int_ge(s2, 0);
	ck_assert_int_eq(write(sv[0], "abc", 3), 3);
	close(sv[0]);
	char buf[8];
	size_t got = 0;
	ssize_t n;
	while ((n = read(s2, buf + got, sizeof(buf) - got)) > 0)
		got += (size_t)n;
	ck_assert_int_eq(n, 0); /* end of stream: no other copy of sv[0] was left open */
	ck_assert_uint_eq(got, 3);
	ck_assert_mem_eq(buf, "abc", 3);
	close(s2);
	child_close_port(c);
	ck_assert_int_eq(child_finish(c), 0);
}
END_TEST

/*
 * upstream alpc_node.rs test_handle, on Unix: an eventfd goes to a child
 * process and back; signalled through the original, it is seen through
 * the copy.
 */
START_TEST(test_event_fd)
{
	Child *c = spawn_child("echo", NULL);
	int e = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	ck_assert_int_ge(e, 0);
	MeshMessage *msg = mesh_message_new("event", 5);
	ck_assert_int_eq(mesh_message_add_fd(msg, e), 0);
	port_send(c->port, msg, FALSE);
	msg = expect_message(c->recv);
	ck_assert_uint_eq(mesh_message_get_n_resources(msg), 1);
	int e2 = mesh_message_steal_fd(msg, 0);
	mesh_message_free(msg);
	ck_assert_int_ge(e2, 0);
	ck_assert_int_ne(e2, e);
	uint64_t v;
	ck_assert_int_eq(read(e2, &v, sizeof(v)), -1); /* not signalled yet */
	ck_assert_int_eq(errno, EAGAIN);
	v = 1;
	ck_assert_int_eq(write(e, &v, sizeof(v)), (ssize_t)sizeof(v));
	struct pollfd pfd = {.fd = e2, .events = POLLIN};
	ck_assert_int_eq(poll(&pfd, 1, 10000), 1);
	v = 0;
	ck_assert_int_eq(read(e2, &v, sizeof(v)), (ssize_t)sizeof(v));
	ck_assert_uint_eq(v, 1);
	close(e2);
	close(e);
	child_close_port(c);
	ck_assert_int_eq(child_finish(c), 0);
}
END_TEST

START_TEST(test_port_to_child)
{
	/* A port moves to the child with messages in flight; order holds both ways. */
	Child *c = spawn_child("peer", NULL);
	MeshPort *x, *y;
	mesh_port_new_pair(&x, &y);
	TestRecv *ry = test_recv_new(y);
	port_send_bytes(y, "before 1");
	port_send_bytes(y, "before 2");
	MeshMessage *msg = mesh_message_new(NULL, 0);
	mesh_message_add_port_take(msg, x);
	port_send(c->port, msg, FALSE);
	port_send_bytes(y, "after");
	expect_bytes(ry, "hello from child", 16);
	expect_bytes(ry, "before 1", 8);
	expect_bytes(ry, "before 2", 8);
	expect_bytes(ry, "after", 5);
	for (int i = 0; i < 100; i++) {
		char text[16];
		snprintf(text, sizeof(text), "n%d", i);
		port_send_bytes(y, text);
	}
	for (int i = 0; i < 100; i++) {
		char text[16];
		snprintf(text, sizeof(text), "n%d", i);
		expect_bytes(ry, text, strlen(text));
	}
	test_recv_free(ry);
	mesh_port_close(y);
	child_close_port(c);
	ck_assert_int_eq(child_finish(c), 0);
	ck_assert_uint_eq(mesh_node_count_ports(parent.node), 0);
}
END_TEST

/* A "count" child's messages "0" .. "@n - 1", in order, then its close and exit 0. */
static void expect_count(Child *c, int n)
{
	char text[16];
	for (int i = 0; i < n; i++) {
		snprintf(text, sizeof(text), "%d", i);
		expect_bytes(c->recv, text, strlen(text));
	}
	MeshMessage *end = test_recv_wait(c->recv, 20000);
	ck_assert(test_recv_is_end(end, RECV_END_CLOSED));
	ck_assert_int_eq(child_finish(c), 0);
}

START_TEST(test_shutdown_delivers)
{
	Child *c = spawn_child("count", "1000");
	expect_count(c, 1000);
}
END_TEST

START_TEST(test_100k_messages)
{
	enum { N = 100000 };
	Child *c = spawn_child("count", "100000");
	expect_count(c, N);
}
END_TEST


static void fill_bytes(uint8_t *buf, size_t size, guint salt)
{
	for (size_t i = 0; i < size; i++)
		buf[i] = (uint8_t)(i * 31 + salt);
}

/* Whether this process maps a shared-memory ring (memfd "mesh-ring"). */
static gboolean maps_ring(void)
{
	char *maps = NULL;
	ck_assert(g_file_get_contents("/proc/self/maps", &maps, NULL, NULL));
	gboolean found = strstr(maps, "memfd:mesh-ring") != NULL;
	g_free(maps);
	return found;
}

/*
 * Small events through the shared-memory ring (both ways: the child echoes),
 * interleaved with what must use the socket: large events, events with fds,
 * events carrying ports, with traffic on the moved ports right behind the
 * messages that carry them (those events name a port that exists only once
 * its carrier arrived: sequence numbers cannot reorder them). Everything
 * comes back in order; with MESH_UNIX_RING=0 the same over the socket alone.
 */
START_TEST(test_ring_interleaved)
{
	enum { N = 600, LARGE = 40000, PORTS = 8 };
	Child *c = spawn_child("echo", NULL);
	gboolean ring = g_strcmp0(g_getenv("MESH_UNIX_RING"), "0") != 0;
	uint8_t *large = g_malloc(LARGE);
	MeshPort *kept[PORTS] = {0};
	TestRecv *kept_recv[PORTS] = {0};
	MeshPort *back[PORTS] = {0};
	guint n_ports = 0;
	char text[32];

	port_send_bytes(c->port, "warm up");
	expect_bytes(c->recv, "warm up", 7);
	ck_assert_msg(maps_ring() == ring, "ring mapped: %d, expected %d", maps_ring(), ring);
	int before = count_fds();

	for (guint i = 0; i < N; i++) {
		MeshMessage *msg;
		if (i % 13 == 5) {
			fill_bytes(large, LARGE, i);
			msg = mesh_message_new(large, LARGE);
		} else if (i % 17 == 3) {
			snprintf(text, sizeof(text), "fd%u", i);
			msg = mesh_message_new(text, strlen(text));
			mesh_message_add_fd_take(msg, open("/dev/null", O_RDONLY | O_CLOEXEC));
		} else if (i % 71 == 9 && n_ports < PORTS) {
			MeshPort *x, *y;
			mesh_port_new_pair(&x, &y);
			/* With an fd: the carrier takes the socket. */
			msg = mesh_message_new("port", 4);
			mesh_message_add_port_take(msg, x);
			mesh_message_add_fd_take(msg, open("/dev/null", O_RDONLY | O_CLOEXEC));
			port_send(c->port, msg, FALSE);
			/* Right behind it, through the ring: events for x, wherever it is. */
			for (int k = 0; k < 5; k++) {
				snprintf(text, sizeof(text), "y%u.%d", n_ports, k);
				port_send_bytes(y, text);
			}
			kept[n_ports++] = y;
			continue;
		} else {
			snprintf(text, sizeof(text), "s%u", i);
			msg = mesh_message_new(text, strlen(text));
		}
		port_send(c->port, msg, FALSE);
	}
	guint ports_back = 0;
	for (guint i = 0; i < N; i++) {
		MeshMessage *msg = expect_message(c->recv);
		size_t size;
		const uint8_t *data = mesh_message_get_data(msg, &size);
		if (i % 13 == 5) {
			fill_bytes(large, LARGE, i);
			ck_assert_uint_eq(size, LARGE);
			ck_assert(memcmp(data, large, LARGE) == 0);
		} else if (i % 17 == 3) {
			snprintf(text, sizeof(text), "fd%u", i);
			ck_assert_uint_eq(size, strlen(text));
			ck_assert(memcmp(data, text, size) == 0);
			ck_assert_uint_eq(mesh_message_get_n_resources(msg), 1);
		} else if (i % 71 == 9 && ports_back < n_ports) {
			ck_assert_uint_eq(size, 4);
			MeshPort *x = mesh_message_steal_port(msg, 0);
			ck_assert_ptr_nonnull(x);
			TestRecv *rx = test_recv_new(x);
			for (int k = 0; k < 5; k++) {
				snprintf(text, sizeof(text), "y%u.%d", ports_back, k);
				expect_bytes(rx, text, strlen(text));
			}
			kept_recv[ports_back] = rx;
			back[ports_back] = x;
			ports_back++;
			mesh_message_free(msg);
			continue;
		} else {
			snprintf(text, sizeof(text), "s%u", i);
			ck_assert_msg(size == strlen(text) && memcmp(data, text, size) == 0,
				      "message %u out of order", i);
		}
		mesh_message_free(msg);
	}
	ck_assert_uint_eq(ports_back, n_ports);
	for (guint k = 0; k < n_ports; k++) {
		test_recv_free(kept_recv[k]);
		mesh_port_close(back[k]);
		mesh_port_close(kept[k]);
	}
	g_free(large);
	child_close_port(c);
	ck_assert_int_eq(child_finish(c), 0);
	/* The connection's ring and eventfds went with it. */
	for (int i = 0; i < 400 && (count_fds() > before || maps_ring()); i++)
		g_usleep(5000);
	ck_assert(!maps_ring());
	ck_assert_int_le(count_fds(), before);
}
END_TEST

/*
 * A one-way stream long enough to travel in batches (ring drains, batch
 * packets: the node hands their messages to a port in runs), with ports
 * carried in the middle of it through the same path (no fd: in the ring or
 * a batch like the rest) and traffic on each moved port right behind its
 * carrier. The child echoes all: the stream, the carriers and what
 * followed them come back in order, both ways through runs.
 */
START_TEST(test_stream_runs_with_moves)
{
	enum { N = 4000, EVERY = 97, PORTS = 40, BEHIND = 5 };
	Child *c = spawn_child("echo", NULL);
	MeshPort *kept[PORTS] = {0};
	MeshPort *back[PORTS] = {0};
	TestRecv *back_recv[PORTS] = {0};
	guint n_ports = 0, ports_back = 0;
	char text[32];

	for (guint i = 0; i < N; i++) {
		if (i % EVERY == EVERY / 2 && n_ports < PORTS) {
			MeshPort *x, *y;
			mesh_port_new_pair(&x, &y);
			MeshMessage *msg = mesh_message_new("port", 4);
			mesh_message_add_port_take(msg, x);
			port_send(c->port, msg, FALSE);
			for (int k = 0; k < BEHIND; k++) {
				snprintf(text, sizeof(text), "y%u.%d", n_ports, k);
				port_send_bytes(y, text);
			}
			kept[n_ports++] = y;
			continue;
		}
		snprintf(text, sizeof(text), "s%u", i);
		port_send_bytes(c->port, text);
	}
	for (guint i = 0; i < N; i++) {
		MeshMessage *msg = expect_message(c->recv);
		size_t size;
		const uint8_t *data = mesh_message_get_data(msg, &size);
		if (i % EVERY == EVERY / 2 && ports_back < n_ports) {
			ck_assert_uint_eq(size, 4);
			MeshPort *x = mesh_message_steal_port(msg, 0);
			ck_assert_ptr_nonnull(x);
			back_recv[ports_back] = test_recv_new(x);
			back[ports_back++] = x;
		} else {
			snprintf(text, sizeof(text), "s%u", i);
			ck_assert_msg(size == strlen(text) && memcmp(data, text, size) == 0,
				      "message %u out of order", i);
		}
		mesh_message_free(msg);
	}
	ck_assert_uint_eq(ports_back, n_ports);
	for (guint k = 0; k < n_ports; k++) {
		for (int j = 0; j < BEHIND; j++) {
			snprintf(text, sizeof(text), "y%u.%d", k, j);
			expect_bytes(back_recv[k], text, strlen(text));
		}
		/* And the other way, once the port is home again. */
		port_send_bytes(back[k], "back");
		TestRecv *ry = test_recv_new(kept[k]);
		expect_bytes(ry, "back", 4);
		test_recv_free(ry);
		test_recv_free(back_recv[k]);
		mesh_port_close(back[k]);
		mesh_port_close(kept[k]);
	}
	child_close_port(c);
	ck_assert_int_eq(child_finish(c), 0);
}
END_TEST

/*
 * A one-way stream of 64-byte events many times the ring's size (128 KiB),
 * every 97th with an fd (those take the socket, stamped with the ring's
 * position): with the ring on, the ring fills and the rest spills to the
 * socket (entries gated on the socket packets before them), both ways
 * since the child echoes. @stopped: the child is stopped (SIGSTOP) for the
 * whole stream and continued only after the last send, so that the ring
 * fills for certain and the socket and the sender's queue hold the rest.
 * Everything comes back, in order, with its fds.
 */
static void ring_full_stream(gboolean stopped)
{
	enum { N = 30000, FD_EVERY = 97, SIZE = 64 };
	Child *c = spawn_child("echo", NULL);
	gboolean ring = g_strcmp0(g_getenv("MESH_UNIX_RING"), "0") != 0;
	char text[SIZE + 1];

	port_send_bytes(c->port, "warm up");
	expect_bytes(c->recv, "warm up", 7);
	ck_assert_msg(maps_ring() == ring, "ring mapped: %d, expected %d", maps_ring(), ring);
	if (stopped)
		ck_assert_int_eq(pal_child_kill(c->process, SIGSTOP), 0);
	for (guint i = 0; i < N; i++) {
		g_snprintf(text, sizeof(text), "%-63u|", i);
		MeshMessage *msg = mesh_message_new(text, SIZE);
		if (i % FD_EVERY == 1)
			mesh_message_add_fd_take(msg, open("/dev/null", O_RDONLY | O_CLOEXEC));
		port_send(c->port, msg, FALSE);
	}
	if (stopped)
		ck_assert_int_eq(pal_child_kill(c->process, SIGCONT), 0);
	for (guint i = 0; i < N; i++) {
		MeshMessage *msg = expect_message(c->recv);
		size_t size;
		const uint8_t *data = mesh_message_get_data(msg, &size);
		g_snprintf(text, sizeof(text), "%-63u|", i);
		ck_assert_msg(size == SIZE && memcmp(data, text, SIZE) == 0, "message %u out of order",
			      i);
		ck_assert_uint_eq(mesh_message_get_n_resources(msg), i % FD_EVERY == 1);
		mesh_message_free(msg);
	}
	child_close_port(c);
	ck_assert_int_eq(child_finish(c), 0);
}

START_TEST(test_ring_full_stream)
{
	ring_full_stream(FALSE);
}
END_TEST

START_TEST(test_ring_full_stopped_consumer)
{
	ring_full_stream(TRUE);
}
END_TEST

typedef struct {
	MeshPort *port;
	guint n;
	gint done; /* atomic: every send returned */
} FullSender;

static gpointer full_sender_thread(gpointer data)
{
	FullSender *rs = data;
	char text[65];
	for (guint i = 0; i < rs->n; i++) {
		g_snprintf(text, sizeof(text), "%-63u|", i);
		port_send(rs->port, mesh_message_new(text, 64), FALSE);
	}
	g_atomic_int_set(&rs->done, 1);
	return NULL;
}

/*
 * A consumer killed while the producer waits: the child is stopped, a
 * thread streams far more than the ring, the socket and the send limit
 * (64 KiB, with a send timeout far beyond the test's) hold, so it waits
 * for the queue to go below the limit; the child is killed. The waiting
 * send returns, the thread ends, the port fails: no hang, and the queue
 * never grew past the limit meanwhile (the thread was still waiting when
 * the child died).
 */
START_TEST(test_ring_full_consumer_killed)
{
	enum { N = 200000 };
	Child *c = spawn_child("echo", NULL);
	port_send_bytes(c->port, "warm up");
	expect_bytes(c->recv, "warm up", 7);
	mesh_unix_node_set_send_limit(parent.unode, MESH_UNIX_MIN_SEND_LIMIT,
				      (gint64)3600 * G_USEC_PER_SEC);
	ck_assert_int_eq(pal_child_kill(c->process, SIGSTOP), 0);
	FullSender rs = {c->port, N, 0};
	GThread *t = g_thread_new("full-sender", full_sender_thread, &rs);
	/* Not a bound on anything: time for the thread to get to its wait. */
	g_usleep(300 * 1000);
	ck_assert_msg(!g_atomic_int_get(&rs.done), "all %u sends returned with the consumer stopped",
		      N);
	ck_assert_int_eq(pal_child_kill(c->process, SIGKILL), 0);
	g_thread_join(t);
	/* Echoes the child made before the stop took hold, if any, come first. */
	MeshMessage *end;
	while (test_recv_is_message(end = test_recv_wait(c->recv, 60000)))
		mesh_message_free(end);
	ck_assert_msg(test_recv_is_end(end, RECV_END_FAILED), "the port did not fail");
	int status = child_finish(c);
	ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
}
END_TEST

START_TEST(test_child_killed)
{
	Child *c = spawn_child("echo", NULL);
	Child *other = spawn_child("echo", NULL);
	port_send_bytes(c->port, "ping");
	expect_bytes(c->recv, "ping", 4);
	ck_assert_int_eq(pal_child_kill(c->process, SIGKILL), 0);
	MeshMessage *end = test_recv_wait(c->recv, 10000);
	ck_assert_msg(test_recv_is_end(end, RECV_END_FAILED), "the port did not fail");
	MeshMessage *msg = NULL;
	GError *error = NULL;
	ck_assert_int_eq(port_try_recv(c->port, &msg, &error), PORT_RECV_FAILED);
	char id[33];
	mesh_uuid_to_string(&c->id, id);
	ck_assert_msg(strstr(error->message, id) != NULL, "%s", error->message);
	g_error_free(error);
	int status = child_finish(c);
	ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

	/* The other child goes on. */
	port_send_bytes(other->port, "still here");
	expect_bytes(other->recv, "still here", 10);
	child_close_port(other);
	ck_assert_int_eq(child_finish(other), 0);
}
END_TEST

/*
 * A raw peer connected to the parent's node: returns the socket the test
 * writes its packets to by hand; @ret_mine: a port of the parent's whose
 * peer is on it, @ret_port that port.
 */
static int raw_peer_new(MeshPortId *ret_mine, MeshPort **ret_port)
{
	int sv[2];
	MeshNodeId evil;
	MeshPortId theirs;
	mesh_uuid_generate(&evil);
	mesh_uuid_generate(ret_mine);
	mesh_uuid_generate(&theirs);
	ck_assert_int_eq(pal_socketpair(SOCK_SEQPACKET, sv), 0);
	ck_assert(mesh_unix_node_connect_take(parent.unode, &evil, sv[0], NULL));
	*ret_port = mesh_node_add_port(parent.node, ret_mine, &evil, &theirs);
	return sv[1];
}

/* A raw peer: the test writes packets by hand on the other end. */
static void hostile_case(gboolean (*attack)(int sock, const MeshPortId *port))
{
	Child *good = spawn_child("echo", NULL);
	int before = count_fds();
	MeshPortId mine;
	MeshPort *p;
	int sock = raw_peer_new(&mine, &p);
	TestRecv *r = test_recv_new(p);

	gboolean delivers = attack(sock, &mine);
	if (delivers)
		expect_bytes(r, "abc", 3);
	MeshMessage *end = test_recv_wait(r, 10000);
	ck_assert_msg(test_recv_is_end(end, RECV_END_FAILED), "the connection was not ended");
	close(sock);
	test_recv_free(r);
	mesh_port_close(p);

	port_send_bytes(good->port, "ok");
	expect_bytes(good->recv, "ok", 2);
	child_close_port(good);
	ck_assert_int_eq(child_finish(good), 0);
	/* Give the I/O thread a moment to drop the dead connection. */
	for (int i = 0; i < 200 && count_fds() > before - 1; i++)
		g_usleep(5000);
	ck_assert_int_le(count_fds(), before - 1); /* the good child's socket is gone too */
}

static gboolean attack_garbage(int sock, const MeshPortId *port)
{
	uint8_t junk[100];
	memset(junk, 0xee, sizeof(junk));
	ck_assert_int_eq(send(sock, junk, sizeof(junk), 0), sizeof(junk));
	return FALSE;
}

static gboolean attack_short_packet(int sock, const MeshPortId *port)
{
	ck_assert_int_eq(send(sock, "\x01\x00", 2, 0), 2);
	return FALSE;
}

static void send_large_event_fd(int sock, int memfd)
{
	uint8_t header[8] = {3};
	struct iovec iov = {header, sizeof(header)};
	ck_assert_int_eq(pal_send_with_fds(sock, &iov, 1, &memfd, 1, 0), 8);
	close(memfd);
}

static gboolean attack_unsealed_memfd(int sock, const MeshPortId *port)
{
	int memfd = pal_memfd_create("evil", 4096);
	send_large_event_fd(sock, memfd);
	return FALSE;
}

static gboolean attack_empty_memfd(int sock, const MeshPortId *port)
{
	int memfd = pal_memfd_create("evil", 0);
	ck_assert_int_eq(pal_memfd_seal(memfd), 0);
	send_large_event_fd(sock, memfd);
	return FALSE;
}

static gboolean attack_65_fds(int sock, const MeshPortId *port)
{
	int fds[65];
	for (int i = 0; i < 65; i++)
		fds[i] = open("/dev/null", O_RDONLY | O_CLOEXEC);
	uint8_t header[8] = {1};
	struct iovec iov = {header, sizeof(header)};
	ck_assert_int_eq(pal_send_with_fds(sock, &iov, 1, fds, 65, 0), 8);
	for (int i = 0; i < 65; i++)
		close(fds[i]);
	return FALSE;
}

static gboolean attack_unknown_port_then_garbage(int sock, const MeshPortId *port)
{
	/* A valid event for a port that does not exist is only dropped... */
	uint8_t pkt[8 + MESH_EVENT_HEADER_SIZE + 3] = {1};
	MeshEventHeader h = {.type = MESH_EVENT_MESSAGE, .flags = MESH_EVENT_FLAG_MESSAGE,
			     .seq = 1, .message_size = 3};
	mesh_uuid_generate(&h.port_id);
	protocol_event_write_header(pkt + 8, &h);
	memcpy(pkt + 8 + MESH_EVENT_HEADER_SIZE, "abc", 3);
	ck_assert_int_eq(send(sock, pkt, sizeof(pkt), 0), sizeof(pkt));
	/* ...so is a truncated event for our port (the connection stays)... */
	h.port_id = *port;
	protocol_event_write_header(pkt + 8, &h);
	ck_assert_int_eq(send(sock, pkt, sizeof(pkt) - 2, 0), sizeof(pkt) - 2);
	/* ...and one for our port is delivered; then an unknown packet type ends it. */
	h.port_id = *port;
	protocol_event_write_header(pkt + 8, &h);
	ck_assert_int_eq(send(sock, pkt, sizeof(pkt), 0), sizeof(pkt));
	ck_assert_int_eq(send(sock, "\x09\0\0\0\0\0\0\0", 8, 0), 8);
	return TRUE;
}

START_TEST(test_hostile_garbage)
{
	hostile_case(attack_garbage);
}
END_TEST

START_TEST(test_hostile_short)
{
	hostile_case(attack_short_packet);
}
END_TEST

START_TEST(test_hostile_unsealed_memfd)
{
	hostile_case(attack_unsealed_memfd);
}
END_TEST

START_TEST(test_hostile_empty_memfd)
{
	hostile_case(attack_empty_memfd);
}
END_TEST

START_TEST(test_hostile_65_fds)
{
	hostile_case(attack_65_fds);
}
END_TEST

START_TEST(test_hostile_unknown_port)
{
	hostile_case(attack_unknown_port_then_garbage);
}
END_TEST

/*
 * A peer that sends malformed events without end cannot flood the log: the
 * node drops each, and logs them at debug level, at most LOG_BURST lines a
 * second plus one that says how many were left out (log-private.h).
 */
START_TEST(test_hostile_flood_not_logged_each)
{
	enum { N = 3000 };
	MeshPortId mine;
	MeshPort *p;
	int sock = raw_peer_new(&mine, &p);
	TestRecv *r = test_recv_new(p);
	int lines = log_count_watch("malformed event");

	uint8_t pkt[8 + MESH_EVENT_HEADER_SIZE + 3] = {1};
	MeshEventHeader h = {.port_id = mine, .type = MESH_EVENT_MESSAGE,
			     .flags = MESH_EVENT_FLAG_MESSAGE, .seq = 1, .message_size = 3};
	protocol_event_write_header(pkt + 8, &h);
	memcpy(pkt + 8 + MESH_EVENT_HEADER_SIZE, "abc", 3);
	gint64 start = g_get_monotonic_time();
	/* Truncated events: each is dropped, the connection stays. */
	for (int i = 0; i < N; i++)
		ck_assert_int_eq(send(sock, pkt, sizeof(pkt) - 2, 0), sizeof(pkt) - 2);
	/* A good one after them: once it is here, all of them were read. */
	ck_assert_int_eq(send(sock, pkt, sizeof(pkt), 0), sizeof(pkt));
	expect_bytes(r, "abc", 3);
	gint64 seconds = (g_get_monotonic_time() - start) / G_USEC_PER_SEC;

	/* Windows of a second each, at least a second apart, from the first line. */
	gint logged = log_count_get(lines);
	ck_assert_int_gt(logged, 0);
	ck_assert_msg(logged <= (LOG_BURST + 1) * (seconds + 1),
		      "%d lines for %d malformed events in %" G_GINT64_FORMAT " s", logged, N,
		      seconds);
	log_count_stop(lines);

	close(sock);
	MeshMessage *end = test_recv_wait(r, 10000);
	ck_assert(test_recv_is_end(end, RECV_END_FAILED));
	test_recv_free(r);
	mesh_port_close(p);
}
END_TEST

START_TEST(test_not_seqpacket)
{
	int sv[2];
	MeshNodeId id;
	GError *error = NULL;
	mesh_uuid_generate(&id);
	ck_assert_int_eq(pal_socketpair(SOCK_STREAM, sv), 0);
	ck_assert(!mesh_unix_node_connect_take(parent.unode, &id, sv[0], &error));
	ck_assert(g_error_matches(error, MESH_ERROR, MESH_ERROR_INVALID_ARGUMENT));
	g_error_free(error);
	ck_assert_int_eq(fcntl(sv[0], F_GETFD), -1);
	close(sv[1]);
}
END_TEST

START_TEST(test_join_echo)
{
	Child *c = spawn_joiner("echo", NULL);
	port_send_bytes(c->port, "joined");
	expect_bytes(c->recv, "joined", 6);
	child_close_port(c);
	ck_assert_int_eq(child_finish(c), 0);
}
END_TEST

/*
 * A joined child sends at once and never receives: its I/O thread starts
 * with the context lent to the join, and no receive borrows it after, so
 * when the ring and the socket fill up the queued sends are flushed only
 * once that thread takes the context back. All arrive, in order.
 */
START_TEST(test_join_count_without_receive)
{
	enum { N = 100000 };
	Child *c = spawn_joiner("count", "100000");
	expect_count(c, N);
}
END_TEST

/* The children gone: the leader forgets their pairs, the node the children (10 s at most). */
static void expect_children_forgotten(guint remotes_before)
{
	for (int i = 0; i < 1000 && (unix_leader_count_pairs(parent.unode) > 0 ||
				     mesh_node_count_remotes(parent.node) > remotes_before);
	     i++)
		g_usleep(10000);
	ck_assert_uint_eq(unix_leader_count_pairs(parent.unode), 0);
	ck_assert_uint_eq(mesh_node_count_remotes(parent.node), remotes_before);
}

START_TEST(test_port_from_child_to_child)
{
	/*
	 * Child A makes a port pair and sends one end to the parent while it
	 * keeps sending on the other; the parent passes that end to child B.
	 * B must see every message in order; A and B then talk directly (the
	 * leader, this process, introduces them) and B's "done" reaches A.
	 */
	guint remotes_before = mesh_node_count_remotes(parent.node);
	Child *a = spawn_joiner("origin", "2000");
	Child *b = spawn_joiner("sink", "2000");
	MeshMessage *msg = expect_message(a->recv);
	ck_assert_uint_eq(mesh_message_get_n_resources(msg), 1);
	MeshMessage *fwd = mesh_message_new(NULL, 0);
	mesh_message_add_port_take(fwd, mesh_message_steal_port(msg, 0));
	mesh_message_free(msg);
	port_send(b->port, fwd, FALSE);
	ck_assert_int_eq(child_finish(b), 0);
	ck_assert_int_eq(child_finish(a), 0);

	/* Both gone: the leader forgets their pair, the node forgets them. */
	expect_children_forgotten(remotes_before);
}
END_TEST

/*
 * What test_port_from_child_to_child hit now and then, forced: B ("sink")
 * gets the port that A ("origin") sent here, answers "done" on it, closes
 * it and shuts down while the move into B is not complete: A is stopped,
 * so it has not applied the CHANGE_PEER that this node's proxy sent it,
 * and that proxy still forwards to B. B's graceful shutdown must wait for
 * the move to complete (the proxy's PROXY_DONE). Had B left, the proxy here
 * would fail with B's connection, and its FAIL_PORT would reach A with (or
 * before) the CHANGE_PEER and B's "done": A's port failed instead.
 */
START_TEST(test_sink_exits_mid_move)
{
	guint remotes_before = mesh_node_count_remotes(parent.node);
	Child *a = spawn_joiner("origin", "0");
	Child *b = spawn_joiner("sink", "0");
	MeshMessage *msg = expect_message(a->recv);
	ck_assert_uint_eq(mesh_message_get_n_resources(msg), 1);
	/* A stops before it can hear of the port's next move. */
	ck_assert_int_eq(pal_child_kill(a->process, SIGSTOP), 0);
	MeshMessage *fwd = mesh_message_new(NULL, 0);
	mesh_message_add_port_take(fwd, mesh_message_steal_port(msg, 0));
	mesh_message_free(msg);
	port_send(b->port, fwd, FALSE);

	/*
	 * B closes its first port just before its shutdown; its ACK_PORT came
	 * before, on the same connection, so our proxy is in the table now.
	 */
	MeshMessage *end = test_recv_wait(b->recv, 20000);
	ck_assert(test_recv_is_end(end, RECV_END_CLOSED));
	guint ports = mesh_node_count_ports(parent.node);
	/*
	 * A shutdown that does not wait ends B's connection here now, and the
	 * proxy fails and leaves the table; give it that chance (bounded: with
	 * the wait, nothing leaves until A runs again).
	 */
	for (int i = 0; i < 200 && mesh_node_count_ports(parent.node) >= ports; i++)
		g_usleep(10000);
	ck_assert_int_eq(pal_child_kill(a->process, SIGCONT), 0);
	ck_assert_int_eq(child_finish(b), 0);
	ck_assert_int_eq(child_finish(a), 0);

	expect_children_forgotten(remotes_before);
}
END_TEST

/*
 * The other side of a move: this node sends port x to child C while x's
 * peer y is on child B, which answers "done" on y, closes it and shuts
 * down. C is stopped, so x is still on its way (it holds B's "done" and
 * close for C) when B's connection ends after B's graceful shutdown. x
 * failed with it (its peer's node was gone; about 7 runs in 8) and C got x
 * failed instead of "done" and the close. B's shutdown waiting for its
 * close's answer would cover it, but makes every shutdown wait for the
 * peers of its closed ports (test-p2p's children then wait out their
 * timeout: the parent runs no I/O in child_wait()); instead x goes on
 * without a peer whose close it already holds (doc/libmeshremote.md,
 * "Close and failure"). test_peer_killed_mid_move is the other case.
 */
START_TEST(test_peer_exits_mid_move)
{
	guint remotes_before = mesh_node_count_remotes(parent.node);
	Child *b = spawn_joiner("sink", "1");
	Child *c = spawn_joiner("reader", NULL);
	mesh_message_free(expect_message(c->recv)); /* "ready" */

	MeshPort *x, *y;
	mesh_port_new_pair(&x, &y);
	MeshMessage *msg = mesh_message_new(NULL, 0);
	mesh_message_add_port_take(msg, y);
	port_send(b->port, msg, FALSE);
	ck_assert_int_eq(pal_child_kill(c->process, SIGSTOP), 0);
	/* B answers "done" to this "0" only: x is on its way by then. */
	port_send_bytes(x, "0");
	msg = mesh_message_new(NULL, 0);
	mesh_message_add_port_take(msg, x);
	port_send(c->port, msg, FALSE);

	/*
	 * A shutdown that does not wait for its close's answer ends B's
	 * connection here now; give it that chance (bounded: with the wait,
	 * B stays until C runs again).
	 */
	for (int i = 0; i < 200 && mesh_node_count_remotes(parent.node) > remotes_before + 1; i++)
		g_usleep(10000);
	ck_assert_int_eq(pal_child_kill(c->process, SIGCONT), 0);
	ck_assert_int_eq(child_finish(b), 0);
	ck_assert_int_eq(child_finish(c), 0);

	expect_children_forgotten(remotes_before);
}
END_TEST

/*
 * As test_peer_exits_mid_move, but B is killed holding y, which it did not
 * close: x, on its way to the stopped C, holds no close of its peer, so it
 * still fails with B's node, and C reads the failure (never a hang or a
 * clean close).
 */
START_TEST(test_peer_killed_mid_move)
{
	guint remotes_before = mesh_node_count_remotes(parent.node);
	Child *b = spawn_joiner("sink", "2");
	Child *c = spawn_joiner("reader", "fail");
	mesh_message_free(expect_message(c->recv)); /* "ready" */

	MeshPort *x, *y;
	mesh_port_new_pair(&x, &y);
	MeshMessage *msg = mesh_message_new(NULL, 0);
	mesh_message_add_port_take(msg, y);
	port_send(b->port, msg, FALSE);
	ck_assert_int_eq(pal_child_kill(c->process, SIGSTOP), 0);
	/* B waits for a "1" that never comes: y stays open. */
	port_send_bytes(x, "0");
	msg = mesh_message_new(NULL, 0);
	mesh_message_add_port_take(msg, x);
	port_send(c->port, msg, FALSE);

	ck_assert_int_eq(pal_child_kill(b->process, SIGKILL), 0);
	MeshMessage *end = test_recv_wait(b->recv, 20000);
	ck_assert(test_recv_is_end(end, RECV_END_FAILED));
	ck_assert_int_eq(pal_child_kill(c->process, SIGCONT), 0);
	int status = child_finish(b);
	ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	ck_assert_int_eq(child_finish(c), 0);

	expect_children_forgotten(remotes_before);
}
END_TEST

/* A follower of the parent's mesh in this process. */
static MeshUnixNode *join_here(MeshPort **ret_theirs)
{
	MeshPort *mine;
	MeshInvitation *inv = NULL;
	GError *error = NULL;
	mesh_port_new_pair(&mine, ret_theirs);
	ck_assert(mesh_unix_node_invite(parent.unode, mine, -1, &inv, &error));
	MeshPort *port = NULL;
	MeshUnixNode *u = mesh_unix_node_join(inv, NULL, 10 * G_USEC_PER_SEC, &port, &error);
	ck_assert_msg(u != NULL, "%s", error ? error->message : "");
	mesh_port_close(port);
	return u;
}

/* Waits (bounded) until a port made on @node, peered with a port on @peer, fails. */
static void expect_peer_port_fails(MeshNode *node, const MeshNodeId *peer)
{
	MeshPortId id, peer_port;
	mesh_uuid_generate(&id);
	mesh_uuid_generate(&peer_port);
	MeshPort *p = mesh_node_add_port(node, &id, peer, &peer_port);
	TestRecv *r = test_recv_new(p);
	MeshMessage *end = test_recv_wait(r, 10000);
	ck_assert_msg(test_recv_is_end(end, RECV_END_FAILED), "the port did not fail");
	test_recv_free(r);
	mesh_port_close(p);
}

/*
 * Two followers A and B were introduced and their connection failed (both
 * alive). A remembers B failed, but only so many failed nodes: once B is
 * forgotten, a port on A naming B asks the leader again, which must answer
 * (no new connection for a pair it introduced) rather than leave A waiting.
 */
START_TEST(test_failed_pair_not_reintroduced)
{
	MeshPort *ta, *tb;
	MeshUnixNode *ua = join_here(&ta), *ub = join_here(&tb);
	MeshNode *a = mesh_unix_node_get_node(ua), *b = mesh_unix_node_get_node(ub);
	const MeshNodeId *b_id = mesh_node_get_id(b);

	/* A port on A peered with one on B: A asks, the leader introduces them. */
	MeshPortId id, peer_port;
	mesh_uuid_generate(&id);
	mesh_uuid_generate(&peer_port);
	MeshPort *p = mesh_node_add_port(a, &id, b_id, &peer_port);
	for (int i = 0; i < 1000 && mesh_node_count_remotes(b) < 2; i++)
		g_usleep(10000);
	ck_assert_uint_eq(mesh_node_count_remotes(b), 2); /* the leader and A */

	/* Their connection fails; A remembers B failed. */
	MeshRemoteNode *rb = node_get_remote(a, b_id);
	mesh_remote_node_fail(rb, "test");
	remote_node_unref_internal(rb);
	mesh_port_close(p);
	expect_peer_port_fails(a, b_id);
	/* The connection ends (both sides), then nothing on A refers to B. */
	for (int i = 0; i < 1000 && mesh_node_count_remotes(a) > 1; i++)
		g_usleep(10000);
	ck_assert_uint_eq(mesh_node_count_remotes(a), 1); /* the leader */

	/* A forgets B after as many other failures: the leader is asked again. */
	for (guint i = 0; i < MESH_NODE_FAILED_MEMORY; i++) {
		MeshNodeId other;
		mesh_uuid_generate(&other);
		MeshRemoteNode *h = mesh_node_add_remote(a, &other);
		mesh_remote_node_fail(h, "test");
		mesh_remote_node_unref(h);
	}
	expect_peer_port_fails(a, b_id);

	mesh_port_close(ta);
	mesh_port_close(tb);
	mesh_unix_node_shutdown(ua, 5 * G_USEC_PER_SEC);
	mesh_unix_node_shutdown(ub, 5 * G_USEC_PER_SEC);
	mesh_unix_node_free(ua); /* and its node, made by the join */
	mesh_unix_node_free(ub);
}
END_TEST

/*
 * A host killed while it moves a port to a third host (0 to ~5 ms after
 * the move was asked of it): the new owner must see every message and the
 * close, or fail; never wait forever (issue: 14 of 18 runs hung).
 */
START_TEST(test_mover_killed)
{
	guint n_failed = 0, n_closed = 0;

	/* Without PROXY_DONE the hole is upstream's, and documented (doc/libmeshremote.md,
	 * "A mover that dies mid-move"): the new owner may wait for ever. */
	if (g_strcmp0(g_getenv("MESH_UNIX_EXT_MOVES"), "0") == 0) {
		printf("test_mover_killed: skipped, MESH_UNIX_EXT_MOVES=0 (upstream's moves)\n");
		return;
	}

	for (guint i = 0; i < 20; i++) {
		Child *a = spawn_joiner("mover", NULL);
		Child *b = spawn_joiner("owner", NULL);
		MeshPort *y, *x, *c1, *c2;
		mesh_port_new_pair(&y, &x);
		mesh_port_new_pair(&c1, &c2);
		port_send_bytes(y, "m1"); /* queued at x: moves with it */
		MeshMessage *msg = mesh_message_new(NULL, 0);
		mesh_message_add_port_take(msg, c2);
		port_send(b->port, msg, FALSE);
		/* Both have joined: the kill lands in the move, not in the start. */
		expect_bytes(a->recv, "ready", 5);
		expect_bytes(b->recv, "ready", 5);
		msg = mesh_message_new(NULL, 0);
		mesh_message_add_port_take(msg, x);
		mesh_message_add_port_take(msg, c1);
		port_send(a->port, msg, FALSE);
		/* After the mover sent the port: 0 to 1.1 ms into the move. */
		expect_bytes(a->recv, "sent", 4);
		guint delay_us = i * 60;
		gint64 until = g_get_monotonic_time() + delay_us;
		while (g_get_monotonic_time() < until)
			; /* a busy wait: finer than a sleep */
		pal_child_kill(a->process, SIGKILL);
		port_send_bytes(y, "m2");
		mesh_port_close(y);

		MeshMessage *report = test_recv_wait(b->recv, 30000);
		ck_assert_msg(test_recv_is_message(report), "run %u: the owner did not report", i);
		size_t size;
		const char *text = (const char *)mesh_message_get_data(report, &size);
		char *r = g_strndup(text, size);
		ck_assert_msg(strcmp(r, "timeout") != 0,
			      "run %u (kill after %u us): the new owner waits forever", i, delay_us);
		ck_assert_msg(strcmp(r, "failed") == 0 || strcmp(r, "noport") == 0 ||
				      strcmp(r, "closed m1,m2") == 0,
			      "run %u: %s", i, r);
		n_failed += strcmp(r, "failed") == 0;
		n_closed += strcmp(r, "closed m1,m2") == 0;
		g_free(r);
		mesh_message_free(report);
		ck_assert_int_eq(child_finish(b), 0);
		child_finish(a);
	}
	g_message("mover killed: %u owners failed, %u completed", n_failed, n_closed);
}
END_TEST

START_TEST(test_dropped_invitation)
{
	MeshPort *x, *y;
	MeshInvitation *inv = NULL;
	mesh_port_new_pair(&x, &y);
	TestRecv *r = test_recv_new(y);
	ck_assert(mesh_unix_node_invite(parent.unode, x, -1, &inv, NULL));
	mesh_invitation_free(inv);
	MeshMessage *end = test_recv_wait(r, 10000);
	ck_assert_msg(test_recv_is_end(end, RECV_END_FAILED), "the invited port's peer did not fail");
	test_recv_free(r);
	mesh_port_close(y);
}
END_TEST

static void on_client(MeshPort *port, gpointer data)
{
	g_async_queue_push(data, port);
}

static Child *spawn_by_path(const char *path)
{
	Child *c = g_new0(Child, 1);
	PalSpawn *spawn = pal_spawn_new(UNIX_TEST_CHILD);
	const char *args[] = {"bypath", path, "echo", NULL};
	pal_spawn_add_args(spawn, args);
	pal_spawn_set_parent_death_signal(spawn, SIGKILL);
	ck_assert_int_eq(pal_spawn_run(spawn, &c->process), 0);
	pal_spawn_free(spawn);
	return c;
}

static gpointer run_loop(gpointer data)
{
	g_main_loop_run(data);
	return NULL;
}

START_TEST(test_caller_context)
{
	/* The transport's I/O on a context the caller runs (here in its own thread). */
	GMainContext *ctx = g_main_context_new();
	GMainLoop *loop = g_main_loop_new(ctx, FALSE);
	GThread *t = g_thread_new("caller-loop", run_loop, loop);
	MeshUnixNode *saved = parent.unode;
	parent.unode = mesh_unix_node_new(parent.node, ctx);

	Child *c = spawn_child("echo", NULL);
	port_send_bytes(c->port, "on your context");
	expect_bytes(c->recv, "on your context", 15);
	child_close_port(c);
	ck_assert_int_eq(child_finish(c), 0);
	ck_assert(mesh_unix_node_shutdown(parent.unode, 5 * G_USEC_PER_SEC));
	mesh_unix_node_free(parent.unode);
	parent.unode = saved;

	g_main_loop_quit(loop);
	g_thread_join(t);
	g_main_loop_unref(loop);
	g_main_context_unref(ctx);
}
END_TEST

START_TEST(test_listener)
{
	char *dir = g_dir_make_tmp("mesh-test-XXXXXX", NULL);
	char *path = g_build_filename(dir, "mesh.sock", NULL);
	GAsyncQueue *clients = g_async_queue_new();
	GError *error = NULL;
	MeshUnixListener *l = mesh_unix_node_listen(parent.unode, path, on_client,
						    g_async_queue_ref(clients),
						    (GDestroyNotify)g_async_queue_unref, &error);
	ck_assert_msg(l != NULL, "%s", error ? error->message : "");

	/* A client that connects and never reads does not hold anyone up. */
	int slow = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	g_strlcpy(addr.sun_path, path, sizeof(addr.sun_path));
	ck_assert_int_eq(connect(slow, (struct sockaddr *)&addr, sizeof(addr)), 0);

	/* Neither does one that writes junk (the server may drop it first). */
	int junk = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_eq(connect(junk, (struct sockaddr *)&addr, sizeof(addr)), 0);
	ssize_t sent = send(junk, "junk junk junk", 14, MSG_NOSIGNAL);
	ck_assert_msg(sent == 14 || (sent < 0 && (errno == EPIPE || errno == ECONNRESET)),
		      "send: %zd, %s", sent, g_strerror(errno));

	Child *a = spawn_by_path(path);
	Child *b = spawn_by_path(path);
	for (int i = 0; i < 4; i++) {
		MeshPort *p = g_async_queue_timeout_pop(clients, 20 * G_USEC_PER_SEC);
		ck_assert_ptr_nonnull(p);
		if (i < 2) {
			mesh_port_close(p); /* the slow and the junk client's ports */
			continue;
		}
		TestRecv *r = test_recv_new(p);
		port_send_bytes(p, "by path");
		expect_bytes(r, "by path", 7);
		test_recv_free(r);
		mesh_port_close(p);
	}
	ck_assert_int_eq(child_finish(a), 0);
	ck_assert_int_eq(child_finish(b), 0);
	close(slow);
	close(junk);
	mesh_unix_listener_free(l);
	ck_assert(!g_file_test(path, G_FILE_TEST_EXISTS));
	g_async_queue_unref(clients);
	rmdir(dir);
	g_free(path);
	g_free(dir);
}
END_TEST

/* A fake listener that sends one malformed frame. */
typedef struct {
	int server;
	uint32_t data_len, fd_count;
	int fds_sent;
	size_t bytes_sent; /* of the frame, then close */
} BadFrame;

static gpointer bad_listener(gpointer data)
{
	BadFrame *f = data;
	int client = accept4(f->server, NULL, NULL, SOCK_CLOEXEC);
	uint8_t frame[8 + 64] = {0};
	for (int i = 0; i < 4; i++) {
		frame[i] = (uint8_t)(f->data_len >> (8 * i));
		frame[4 + i] = (uint8_t)(f->fd_count >> (8 * i));
	}
	int fds[8];
	for (int i = 0; i < f->fds_sent; i++)
		fds[i] = open("/dev/null", O_RDONLY | O_CLOEXEC);
	struct iovec iov = {frame, f->bytes_sent};
	pal_send_with_fds(client, &iov, 1, fds, (size_t)f->fds_sent, 0);
	for (int i = 0; i < f->fds_sent; i++)
		close(fds[i]);
	close(client);
	return NULL;
}

static void join_error_case(uint32_t data_len, uint32_t fd_count, int fds_sent,
			    size_t bytes_sent, const char *what, gboolean check_fds)
{
	char *dir = g_dir_make_tmp("mesh-test-XXXXXX", NULL);
	char *path = g_build_filename(dir, "bad.sock", NULL);
	BadFrame f = {.data_len = data_len, .fd_count = fd_count, .fds_sent = fds_sent,
		      .bytes_sent = bytes_sent};
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	g_strlcpy(addr.sun_path, path, sizeof(addr.sun_path));
	f.server = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_eq(bind(f.server, (struct sockaddr *)&addr, sizeof(addr)), 0);
	ck_assert_int_eq(listen(f.server, 4), 0);
	GThread *t = g_thread_new("bad-listener", bad_listener, &f);

	int before = count_fds();
	MeshPort *port = NULL;
	GError *error = NULL;
	MeshUnixNode *u = mesh_unix_node_join_by_path(path, NULL, 5 * G_USEC_PER_SEC, &port, &error);
	ck_assert_ptr_null(u);
	ck_assert_msg(error && strstr(error->message, what), "expected \"%s\", got \"%s\"", what,
		      error ? error->message : "no error");
	g_error_free(error);
	g_thread_join(t);
	/* Every fd that came was closed. */
	if (check_fds)
		ck_assert_msg(count_fds() == before, "%s: %d fds, %d before", what, count_fds(),
			      before);
	close(f.server);
	unlink(path);
	rmdir(dir);
	g_free(path);
	g_free(dir);
}

static void expect_join_error(uint32_t data_len, uint32_t fd_count, int fds_sent,
			      size_t bytes_sent, const char *what)
{
	join_error_case(data_len, fd_count, fds_sent, bytes_sent, what, TRUE);
}

static void expect_join_error_unchecked(uint32_t data_len, uint32_t fd_count, int fds_sent,
					size_t bytes_sent, const char *what)
{
	join_error_case(data_len, fd_count, fds_sent, bytes_sent, what, FALSE);
}

START_TEST(test_listener_limits)
{
	/* A first round lets GLib and libc make their lazy fds (measured: one). */
	int warm = count_fds();
	expect_join_error_unchecked(5000, 1, 0, 8, "too large");
	ck_assert_int_le(count_fds(), warm + 1);

	expect_join_error(5000, 1, 0, 8, "too large");
	expect_join_error(10, 5, 0, 8, "too many");
	expect_join_error(10, 2, 1, 18, "announces 2 fds but 1 came");
	expect_join_error(10, 0, 0, 4, "closed the connection early");
	expect_join_error(10, 1, 0, 12, "closed the connection early");
	expect_join_error(10, 4, 6, 18, "too many fds");
	expect_join_error(3, 0, 0, 11, "cannot decode the invitation");
}
END_TEST

/*
 * Channels across the process boundary, received with blocking receives:
 * the node runs its own I/O thread, so a blocked receiver borrows the I/O
 * context and polls the sockets itself (unix-io.c). The child ("chan")
 * answers commands; see run_chan() in unix-test-child.c.
 */

/* The parent's ends of a "chan" child's channels. */
typedef struct {
	Child *child;
	MeshSender *commands;
	MeshReceiver *replies; /* "p N" */
	MeshReceiver *side;    /* "c K" */
	MeshReceiver *other;   /* "q N" */
} ChanChild;

/*
 * Spawns a "chan" child (joined with an invitation if @join) and hands it
 * its channel ends. With @ret_reply_clone, a clone of the replies sender
 * stays here: the replies receiver then has a remote and a local sender.
 */
static ChanChild *chan_child_new(gboolean join, MeshSender **ret_reply_clone)
{
	ChanChild *cc = g_new0(ChanChild, 1);
	MeshReceiver *commands;
	MeshSender *replies, *side, *other;
	MeshMessage *msg;

	cc->child = join ? spawn_joiner("chan", NULL) : spawn_child("chan", NULL);
	mesh_channel_new(NULL, &cc->commands, &commands);
	mesh_channel_new(NULL, &replies, &cc->replies);
	mesh_channel_new(NULL, &side, &cc->side);
	mesh_channel_new(NULL, &other, &cc->other);
	if (ret_reply_clone)
		*ret_reply_clone = mesh_sender_clone(replies);

	msg = mesh_message_new(NULL, 0);
	ck_assert_int_eq(mesh_message_add_port_take(msg, mesh_receiver_into_port(commands)),
			 UNIX_TEST_CHAN_COMMANDS);
	ck_assert_int_eq(mesh_message_add_port_take(msg, mesh_sender_into_port(replies)),
			 UNIX_TEST_CHAN_REPLIES);
	ck_assert_int_eq(mesh_message_add_port_take(msg, mesh_sender_into_port(side)),
			 UNIX_TEST_CHAN_SIDE);
	ck_assert_int_eq(mesh_message_add_port_take(msg, mesh_sender_into_port(other)),
			 UNIX_TEST_CHAN_OTHER);
	port_send(cc->child->port, msg, FALSE);
	return cc;
}

static void chan_command(ChanChild *cc, const char *word, guint n)
{
	char *text = g_strdup_printf("%s %u", word, n);

	mesh_sender_send_message(cc->commands, mesh_message_new(text, strlen(text)));
	g_free(text);
}

/*
 * Receives one message as text, truncated to @size - 1 bytes. The messages
 * of these tests come within milliseconds, far before the multi-second
 * timeouts, so one returned only once the timeout ran out means that the
 * receiver slept through its arrival: that is an error here, not a success.
 */
static gboolean chan_recv_text(MeshReceiver *r, gint64 timeout_us, char *text, size_t size,
			       GError **error)
{
	gint64 start = g_get_monotonic_time();
	MeshMessage *msg;
	const uint8_t *data;
	size_t len;

	if (!mesh_receiver_recv_message(r, timeout_us, &msg, error))
		return FALSE;
	if (timeout_us > 0 && g_get_monotonic_time() - start >= timeout_us) {
		mesh_message_free(msg);
		g_set_error(error, MESH_ERROR, MESH_ERROR_TIMED_OUT,
			    "a message came only when the %" G_GINT64_FORMAT
			    " us timeout ran out: the receiver slept through it",
			    timeout_us);
		return FALSE;
	}
	data = mesh_message_get_data(msg, &len);
	len = MIN(len, size - 1);
	memcpy(text, data, len);
	text[len] = '\0';
	mesh_message_free(msg);
	return TRUE;
}

/* The next message on @r must be "@word @n", within 20 s. */
static void expect_text(MeshReceiver *r, const char *word, guint n)
{
	char text[64], want[64];
	GError *error = NULL;

	g_snprintf(want, sizeof(want), "%s %u", word, n);
	ck_assert_msg(chan_recv_text(r, 20 * G_USEC_PER_SEC, text, sizeof(text), &error),
		      "waiting for \"%s\": %s", want, error->message);
	ck_assert_str_eq(text, want);
}

/* A receive on @r must fail with @code within @timeout_us. */
static void expect_recv_error(MeshReceiver *r, gint64 timeout_us, int code)
{
	MeshMessage *msg = NULL;
	GError *error = NULL;

	ck_assert(!mesh_receiver_recv_message(r, timeout_us, &msg, &error));
	ck_assert_ptr_null(msg);
	ck_assert_msg(g_error_matches(error, MESH_ERROR, code), "expected error %d, got %s", code,
		      error->message);
	g_error_free(error);
}

/*
 * Drops the commands sender: the child sees its commands end, drops its
 * senders and exits; every receiver here sees the close.
 */
static void chan_child_finish(ChanChild *cc)
{
	mesh_sender_free(cc->commands);
	expect_recv_error(cc->replies, 20 * G_USEC_PER_SEC, MESH_ERROR_CLOSED);
	expect_recv_error(cc->other, 20 * G_USEC_PER_SEC, MESH_ERROR_CLOSED);
	if (cc->side)
		expect_recv_error(cc->side, 20 * G_USEC_PER_SEC, MESH_ERROR_CLOSED);
	mesh_receiver_free(cc->replies);
	mesh_receiver_free(cc->side);
	mesh_receiver_free(cc->other);
	ck_assert_int_eq(child_finish(cc->child), 0);
	g_free(cc);
}

/* Frees what is left here of a child that did not end by itself. */
static int chan_child_abandon(ChanChild *cc)
{
	int status;

	mesh_sender_free(cc->commands);
	mesh_receiver_free(cc->replies);
	mesh_receiver_free(cc->side);
	mesh_receiver_free(cc->other);
	status = child_finish(cc->child);
	g_free(cc);
	return status;
}

/* Counts the deliveries to a raw port, and those on one thread. */
typedef struct {
	GThread *thread;
	gint total;
	gint on_thread;
} ThreadProbe;

static void probe_message(MeshPort *port, void *data, MeshMessage *msg, Deferred *d)
{
	ThreadProbe *probe = data;

	if (g_thread_self() == probe->thread)
		g_atomic_int_inc(&probe->on_thread);
	g_atomic_int_inc(&probe->total);
	deferred_release_message(d, msg);
}

static void probe_end(MeshPort *port, void *data, Deferred *d)
{
}

static void probe_fail(MeshPort *port, void *data, const GError *error, Deferred *d)
{
}

static const PortHandler probe_handler = {
	.message = probe_message,
	.close = probe_end,
	.fail = probe_fail,
};

START_TEST(test_chan_ping_pong)
{
	/* Blocking receives on both sides; every reply in order. */
	enum { N = 20000, PROBES = 200 };
	ChanChild *cc = chan_child_new(FALSE, NULL);
	ThreadProbe probe = {.thread = g_thread_self()};

	for (guint i = 0; i < N; i++) {
		chan_command(cc, "p", i);
		expect_text(cc->replies, "p", i);
	}

	/*
	 * The point of lending: while this thread waits in a receive, it reads
	 * the socket itself. A raw message that the child sends just before
	 * each reply is then delivered on this thread, not the I/O thread's.
	 */
	port_set_handler(cc->child->port, &probe_handler, &probe);
	for (guint i = 0; i < PROBES; i++) {
		chan_command(cc, "r", i);
		expect_text(cc->replies, "p", i);
	}
	port_set_handler(cc->child->port, &test_recv_handler, cc->child->recv);
	ck_assert_int_eq(g_atomic_int_get(&probe.total), PROBES);
	ck_assert_msg(g_atomic_int_get(&probe.on_thread) > 0,
		      "no message was read by the thread blocked in the receive");

	/* Nothing more came. */
	expect_recv_error(cc->replies, 0, MESH_ERROR_EMPTY);
	expect_recv_error(cc->side, 0, MESH_ERROR_EMPTY);
	chan_child_finish(cc);
}
END_TEST

/*
 * Oneshot replies across the process boundary, waited for with blocking
 * receives right after a channel receive (the I/O context is then lent and
 * nobody else polls): the oneshot's wait must run the I/O, or the reply
 * would sit in the socket until the I/O thread takes its context back.
 */
START_TEST(test_chan_oneshot_replies)
{
	enum { N = 2000 };
	ChanChild *cc = chan_child_new(FALSE, NULL);
	GError *error = NULL;

	for (guint i = 0; i < N; i++) {
		MeshOneshotSender *os;
		MeshOneshotReceiver *orx;
		MeshMessage *value = NULL;
		char want[32];

		/* A channel round trip first: it leaves the context lent. */
		chan_command(cc, "p", i);
		expect_text(cc->replies, "p", i);

		mesh_oneshot_new(NULL, &os, &orx);
		g_snprintf(want, sizeof(want), "o %u", i);
		MeshMessage *cmd = mesh_message_new(want, strlen(want));
		mesh_message_add_port_take(cmd, mesh_oneshot_sender_into_port(os));
		mesh_sender_send_message(cc->commands, cmd);
		ck_assert_msg(mesh_oneshot_recv_message(orx, 10 * G_USEC_PER_SEC, &value, &error),
			      "oneshot %u: %s", i, error ? error->message : "?");
		size_t size;
		const uint8_t *data = mesh_message_get_data(value, &size);
		ck_assert_uint_eq(size, strlen(want));
		ck_assert(memcmp(data, want, size) == 0);
		mesh_message_free(value);
	}
	chan_child_finish(cc);
}
END_TEST

/*
 * The transport on the default context, which only this thread runs (when
 * it runs it at all): blocking channel and oneshot receives made here must
 * iterate it, outside any dispatch and inside one, or nothing arrives.
 */
static void parent_setup_default_context(void)
{
	parent.node = mesh_node_new();
	parent.unode = mesh_unix_node_new(parent.node, g_main_context_default());
}

/* A channel round trip, then a oneshot one, with blocking receives. */
static void chan_round_trips(ChanChild *cc, guint first, guint n)
{
	GError *error = NULL;

	for (guint i = first; i < first + n; i++) {
		MeshOneshotSender *os;
		MeshOneshotReceiver *orx;
		MeshMessage *value = NULL;
		char want[32];

		chan_command(cc, "p", i);
		expect_text(cc->replies, "p", i);

		mesh_oneshot_new(NULL, &os, &orx);
		g_snprintf(want, sizeof(want), "o %u", i);
		MeshMessage *cmd = mesh_message_new(want, strlen(want));
		mesh_message_add_port_take(cmd, mesh_oneshot_sender_into_port(os));
		mesh_sender_send_message(cc->commands, cmd);
		ck_assert_msg(mesh_oneshot_recv_message(orx, 20 * G_USEC_PER_SEC, &value, &error),
			      "oneshot %u: %s", i, error ? error->message : "?");
		size_t size;
		const uint8_t *data = mesh_message_get_data(value, &size);
		ck_assert_uint_eq(size, strlen(want));
		ck_assert(memcmp(data, want, size) == 0);
		mesh_message_free(value);
	}
}

typedef struct {
	ChanChild *cc;
	GMainLoop *loop;
	guint round;
} InDispatch;

static gboolean round_trips_cb(gpointer data)
{
	InDispatch *d = data;

	chan_round_trips(d->cc, 1000 + 100 * d->round, 100);
	if (++d->round < 5)
		return G_SOURCE_CONTINUE;
	g_main_loop_quit(d->loop);
	return G_SOURCE_REMOVE;
}

static gboolean child_exited_cb(gint fd, GIOCondition cond, gpointer data)
{
	*(gboolean *)data = TRUE;
	return G_SOURCE_REMOVE;
}

/*
 * chan_child_finish(), running the default context meanwhile: the child's
 * shutdown waits for this side's end of stream, which only an iteration of
 * the context sends.
 */
static void chan_child_finish_on_context(ChanChild *cc)
{
	gboolean exited = FALSE;

	mesh_sender_free(cc->commands);
	cc->commands = NULL;
	expect_recv_error(cc->replies, 20 * G_USEC_PER_SEC, MESH_ERROR_CLOSED);
	expect_recv_error(cc->other, 20 * G_USEC_PER_SEC, MESH_ERROR_CLOSED);
	expect_recv_error(cc->side, 20 * G_USEC_PER_SEC, MESH_ERROR_CLOSED);
	ck_assert_int_ge(pal_child_get_pidfd(cc->child->process), 0);
	g_unix_fd_add(pal_child_get_pidfd(cc->child->process), G_IO_IN, child_exited_cb, &exited);
	while (!exited)
		g_main_context_iteration(NULL, TRUE); /* bounded by the test's timeout */
	ck_assert_int_eq(chan_child_abandon(cc), 0);
}

/* _i: 0 a child on a socketpair, 1 one joined through an invitation. */
START_TEST(test_chan_blocking_on_own_context)
{
	ChanChild *cc = chan_child_new(_i == 1, NULL);
	InDispatch d = {.cc = cc, .loop = g_main_loop_new(NULL, FALSE)};

	chan_round_trips(cc, 0, 100);
	g_idle_add(round_trips_cb, &d);
	g_main_loop_run(d.loop);
	g_main_loop_unref(d.loop);
	ck_assert_uint_eq(d.round, 5);
	chan_child_finish_on_context(cc);
}
END_TEST

/* A callback consumer on a thread of its own, checking the order of "c K". */
typedef struct {
	GMutex lock;
	GCond cond;
	guint received;
	gboolean closed;
	char *failure;
	GMainContext *context;
	GMainLoop *loop;
	GThread *thread;
} SideConsumer;

static void side_cb(MeshReceiver *r, gpointer data)
{
	SideConsumer *sc = data;
	char text[64], want[64];
	GError *error = NULL;

	g_mutex_lock(&sc->lock);
	while (chan_recv_text(r, 0, text, sizeof(text), &error)) {
		g_snprintf(want, sizeof(want), "c %u", sc->received);
		if (strcmp(text, want) != 0 && !sc->failure)
			sc->failure = g_strdup_printf("got \"%s\", wanted \"%s\"", text, want);
		sc->received++;
	}
	if (g_error_matches(error, MESH_ERROR, MESH_ERROR_CLOSED))
		sc->closed = TRUE;
	else if (!g_error_matches(error, MESH_ERROR, MESH_ERROR_EMPTY) && !sc->failure)
		sc->failure = g_strdup(error->message);
	g_error_free(error);
	g_cond_broadcast(&sc->cond);
	g_mutex_unlock(&sc->lock);
}

static void side_consumer_start(SideConsumer *sc, MeshReceiver *r)
{
	g_mutex_init(&sc->lock);
	g_cond_init(&sc->cond);
	sc->context = g_main_context_new();
	sc->loop = g_main_loop_new(sc->context, FALSE);
	mesh_receiver_set_callback(r, sc->context, side_cb, sc, NULL);
	sc->thread = g_thread_new("side-consumer", run_loop, sc->loop);
}

/* Waits (at most @timeout_us) until @n messages came, or the close with @closed. */
static gboolean side_consumer_wait(SideConsumer *sc, guint n, gboolean closed, gint64 timeout_us)
{
	gint64 deadline = g_get_monotonic_time() + timeout_us;
	gboolean done;

	g_mutex_lock(&sc->lock);
	while (!(done = sc->received >= n && (!closed || sc->closed)) && !sc->failure)
		if (!g_cond_wait_until(&sc->cond, &sc->lock, deadline))
			break;
	done = sc->received >= n && (!closed || sc->closed);
	ck_assert_msg(!sc->failure, "side consumer: %s", sc->failure);
	g_mutex_unlock(&sc->lock);
	return done;
}

static void side_consumer_stop(SideConsumer *sc, MeshReceiver *r)
{
	g_main_loop_quit(sc->loop);
	g_thread_join(sc->thread);
	mesh_receiver_set_callback(r, NULL, NULL, NULL, NULL);
	g_main_loop_unref(sc->loop);
	g_main_context_unref(sc->context);
	g_free(sc->failure);
	g_cond_clear(&sc->cond);
	g_mutex_clear(&sc->lock);
}

START_TEST(test_chan_callback_consumer)
{
	/*
	 * While this thread does blocking receives on one channel, a callback
	 * on another thread's context consumes a second channel of the same
	 * connection; then this thread goes away and the second channel must
	 * still be served (the I/O thread takes its context back).
	 */
	enum { PINGS = 5000, ROUNDS = 3, BURST = 1000, AFTER = 200 };
	ChanChild *cc = chan_child_new(TRUE, NULL);
	SideConsumer sc = {0};
	guint expected = 0;

	side_consumer_start(&sc, cc->side);
	for (guint i = 0; i < PINGS; i++) {
		chan_command(cc, "pc", i);
		expect_text(cc->replies, "p", i);
	}
	expected += PINGS;
	ck_assert_msg(side_consumer_wait(&sc, expected, FALSE, 5 * G_USEC_PER_SEC),
		      "%u of %u side messages", sc.received, expected);

	for (guint round = 0; round < ROUNDS; round++) {
		/* The last receive just returned: the context is lent, unused. */
		chan_command(cc, "burst", BURST);
		expected += BURST;
		g_usleep(50000); /* away: no receive, no send */
		ck_assert_msg(side_consumer_wait(&sc, expected, FALSE, 5 * G_USEC_PER_SEC),
			      "round %u: %u of %u side messages", round, sc.received, expected);

		/* And blocking receives work again after the I/O thread took over. */
		for (guint i = 0; i < AFTER; i++) {
			chan_command(cc, "pc", i);
			expect_text(cc->replies, "p", i);
		}
		expected += AFTER;
	}
	ck_assert_msg(side_consumer_wait(&sc, expected, FALSE, 5 * G_USEC_PER_SEC),
		      "%u of %u side messages", sc.received, expected);

	/* The end reaches the callback too. */
	mesh_sender_free(cc->commands);
	cc->commands = NULL;
	expect_recv_error(cc->replies, 20 * G_USEC_PER_SEC, MESH_ERROR_CLOSED);
	ck_assert_msg(side_consumer_wait(&sc, expected, TRUE, 5 * G_USEC_PER_SEC),
		      "the side channel's close did not reach the callback");
	ck_assert_uint_eq(sc.received, expected);
	side_consumer_stop(&sc, cc->side);
	expect_recv_error(cc->other, 20 * G_USEC_PER_SEC, MESH_ERROR_CLOSED);
	mesh_receiver_free(cc->replies);
	mesh_receiver_free(cc->side);
	mesh_receiver_free(cc->other);
	ck_assert_int_eq(child_finish(cc->child), 0);
	g_free(cc);
}
END_TEST

/* A thread that receives "@word 0" .. on @r, sending its own pings too. */
typedef struct {
	ChanChild *cc;
	MeshReceiver *r;
	const char *word;
	guint n_burst; /* first: replies to a "both" sent before */
	guint n_pings; /* then: ping-pongs of its own */
	gint64 timeout_us;
	char *failure;
	int error_code; /* of a failed receive (MESH_ERROR), or -1 */
	GThread *thread;
} Waiter;

static gpointer waiter_thread(gpointer data)
{
	Waiter *w = data;
	char text[64], want[64];
	GError *error = NULL;

	for (guint i = 0; i < w->n_burst + w->n_pings; i++) {
		guint n = i < w->n_burst ? i : i - w->n_burst;

		if (i >= w->n_burst)
			chan_command(w->cc, w->word, n);
		g_snprintf(want, sizeof(want), "%s %u", w->word, n);
		if (!chan_recv_text(w->r, w->timeout_us, text, sizeof(text), &error)) {
			w->error_code = error->domain == MESH_ERROR ? error->code : -1;
			w->failure = g_strdup_printf("waiting for \"%s\": %s", want, error->message);
			g_error_free(error);
			break;
		}
		if (strcmp(text, want) != 0) {
			w->failure = g_strdup_printf("got \"%s\", wanted \"%s\"", text, want);
			break;
		}
	}
	return NULL;
}

static void waiter_start(Waiter *w, const char *name)
{
	w->thread = g_thread_new(name, waiter_thread, w);
}

static void waiter_join(Waiter *w)
{
	g_thread_join(w->thread);
	ck_assert_msg(!w->failure, "%s: %s", w->word, w->failure);
}

START_TEST(test_chan_two_waiters)
{
	/*
	 * Two threads blocked in receives on two channels fed by the same
	 * child over the same connection: one of them polls, the other waits
	 * for what the poller or the I/O thread delivers.
	 */
	enum { BURST = 3000, PINGS = 3000 };
	ChanChild *cc = chan_child_new(FALSE, NULL);
	Waiter p = {.cc = cc, .r = cc->replies, .word = "p", .n_burst = BURST, .n_pings = PINGS,
		    .timeout_us = 20 * G_USEC_PER_SEC};
	Waiter q = p;

	q.r = cc->other;
	q.word = "q";
	/* Interleaved: "p 0", "q 0", "p 1", ... then each thread's own pings. */
	chan_command(cc, "both", BURST);
	waiter_start(&p, "waiter-p");
	waiter_start(&q, "waiter-q");
	waiter_join(&p);
	waiter_join(&q);

	/* Once more, with the threads already waiting when the burst comes. */
	p.n_burst = q.n_burst = BURST;
	p.n_pings = q.n_pings = 0;
	waiter_start(&p, "waiter-p");
	waiter_start(&q, "waiter-q");
	g_usleep(10000);
	chan_command(cc, "both", BURST);
	waiter_join(&p);
	waiter_join(&q);

	expect_recv_error(cc->replies, 0, MESH_ERROR_EMPTY);
	expect_recv_error(cc->other, 0, MESH_ERROR_EMPTY);
	chan_child_finish(cc);
}
END_TEST

/* Sends "l 0" .. on a local sender; with @acks, each after the last was received. */
typedef struct {
	MeshSender *sender;
	guint n;
	GAsyncQueue *acks; /* nullable */
	char *failure;
	GThread *thread;
} LocalSender;

static gpointer local_sender_thread(gpointer data)
{
	LocalSender *ls = data;
	char text[32];

	for (guint i = 0; i < ls->n; i++) {
		/* Often let the receiver get into its poll first. */
		if (ls->acks && i % 2)
			g_usleep(300);
		g_snprintf(text, sizeof(text), "l %u", i);
		mesh_sender_send_message(ls->sender, mesh_message_new(text, strlen(text)));
		if (ls->acks && !g_async_queue_timeout_pop(ls->acks, 20 * G_USEC_PER_SEC)) {
			ls->failure = g_strdup_printf("\"%s\" was not received", text);
			break;
		}
	}
	return NULL;
}

START_TEST(test_chan_local_and_remote_sender)
{
	/*
	 * A receiver with a sender in the child and a local one used by another
	 * thread: while the receiving thread polls the sockets (the child says
	 * nothing), a local send must wake it. Each local message is sent only
	 * after the previous one was received, so a missed wakeup shows as a
	 * receive that times out.
	 */
	enum { LOCKSTEP = 500, MIXED = 2000 };
	MeshSender *local;
	ChanChild *cc = chan_child_new(FALSE, &local);
	LocalSender ls = {.sender = local, .n = LOCKSTEP, .acks = g_async_queue_new()};
	char text[64], want[64];
	GError *error = NULL;
	guint next_p = 0, next_l = 0;

	/* The remote sender works, and the receiver now polls when it waits. */
	chan_command(cc, "p", 0);
	expect_text(cc->replies, "p", 0);

	ls.thread = g_thread_new("local-sender", local_sender_thread, &ls);
	for (guint i = 0; i < LOCKSTEP; i++) {
		g_snprintf(want, sizeof(want), "l %u", i);
		ck_assert_msg(chan_recv_text(cc->replies, 5 * G_USEC_PER_SEC, text, sizeof(text),
					     &error),
			      "waiting for \"%s\": %s", want, error->message);
		ck_assert_str_eq(text, want);
		g_async_queue_push(ls.acks, GINT_TO_POINTER(1));
	}
	g_thread_join(ls.thread);
	ck_assert_msg(!ls.failure, "%s", ls.failure);

	/* Both at once: each sender's messages in its own order. */
	ls.n = MIXED;
	g_async_queue_unref(ls.acks);
	ls.acks = NULL;
	chan_command(cc, "pn", MIXED);
	ls.thread = g_thread_new("local-sender", local_sender_thread, &ls);
	while (next_p < MIXED || next_l < MIXED) {
		guint n;
		ck_assert_msg(chan_recv_text(cc->replies, 20 * G_USEC_PER_SEC, text, sizeof(text),
					     &error),
			      "after p %u and l %u: %s", next_p, next_l, error->message);
		ck_assert_msg(sscanf(text + 1, " %u", &n) == 1, "\"%s\"", text);
		if (text[0] == 'p') {
			ck_assert_uint_eq(n, next_p);
			next_p++;
		} else {
			ck_assert_int_eq(text[0], 'l');
			ck_assert_uint_eq(n, next_l);
			next_l++;
		}
	}
	g_thread_join(ls.thread);

	/* The local sender alone keeps the receiver open after the child's goes. */
	mesh_sender_free(cc->commands);
	cc->commands = NULL;
	expect_recv_error(cc->other, 20 * G_USEC_PER_SEC, MESH_ERROR_CLOSED);
	expect_recv_error(cc->replies, 100000, MESH_ERROR_TIMED_OUT);
	mesh_sender_send_message(local, mesh_message_new("l end", 5));
	ck_assert(chan_recv_text(cc->replies, 5 * G_USEC_PER_SEC, text, sizeof(text), NULL));
	ck_assert_str_eq(text, "l end");
	mesh_sender_free(local);
	expect_recv_error(cc->replies, 5 * G_USEC_PER_SEC, MESH_ERROR_CLOSED);
	ck_assert_int_eq(chan_child_abandon(cc), 0);
}
END_TEST

START_TEST(test_chan_recv_timeout)
{
	/* Timed receives on a channel whose sender is remote and says nothing. */
	ChanChild *cc = chan_child_new(FALSE, NULL);
	gint64 start, elapsed;
	char text[64];

	/* Before anything came over the channel. */
	start = g_get_monotonic_time();
	expect_recv_error(cc->replies, 100000, MESH_ERROR_TIMED_OUT);
	elapsed = g_get_monotonic_time() - start;
	ck_assert_int_ge(elapsed, 100000);
	ck_assert_int_lt(elapsed, 10 * G_USEC_PER_SEC);

	chan_command(cc, "p", 0);
	expect_text(cc->replies, "p", 0);

	/* After: the thread now polls the sockets while it waits. */
	for (int i = 0; i < 20; i++)
		expect_recv_error(cc->replies, 1000, MESH_ERROR_TIMED_OUT);
	expect_recv_error(cc->replies, 0, MESH_ERROR_EMPTY);
	start = g_get_monotonic_time();
	expect_recv_error(cc->replies, 200000, MESH_ERROR_TIMED_OUT);
	elapsed = g_get_monotonic_time() - start;
	ck_assert_int_ge(elapsed, 200000);
	ck_assert_int_lt(elapsed, 10 * G_USEC_PER_SEC);

	/* Traffic for another receiver does not end the wait early nor late. */
	chan_command(cc, "burst", 1000);
	start = g_get_monotonic_time();
	expect_recv_error(cc->replies, 100000, MESH_ERROR_TIMED_OUT);
	elapsed = g_get_monotonic_time() - start;
	ck_assert_int_ge(elapsed, 100000);
	ck_assert_int_lt(elapsed, 10 * G_USEC_PER_SEC);
	for (guint i = 0; i < 1000; i++)
		expect_text(cc->side, "c", i);

	/* A message still comes after all those timeouts. */
	chan_command(cc, "p", 1);
	ck_assert(chan_recv_text(cc->replies, 20 * G_USEC_PER_SEC, text, sizeof(text), NULL));
	ck_assert_str_eq(text, "p 1");
	chan_child_finish(cc);
}
END_TEST

/* Sends "sleep", then @n "k I" and "kdone @n" (and a "p @ping" if not 0). */
static void send_counted(ChanChild *cc, guint sleep_ms, guint n, guint ping)
{
	chan_command(cc, "sleep", sleep_ms);
	for (guint i = 0; i < n; i++)
		chan_command(cc, "k", i);
	chan_command(cc, "kdone", n);
	if (ping)
		chan_command(cc, "p", ping);
}

typedef struct {
	ChanChild *cc;
	guint n;
	GThread *thread;
} Flooder;

static gpointer flooder_thread(gpointer data)
{
	Flooder *f = data;

	send_counted(f->cc, 100, f->n, 7);
	return NULL;
}

START_TEST(test_chan_queued_send_flushes)
{
	/*
	 * Sends pile up while the child sleeps and the socket fills: they wait
	 * in the connection's queue, which only a thread polling the I/O
	 * context drains. First while this thread, the last borrower, is away
	 * (the I/O thread must take its context back), then while it waits in
	 * a receive and another thread sends.
	 */
	enum { N = 20000 };
	ChanChild *cc = chan_child_new(FALSE, NULL);
	SideConsumer sc = {0};
	Flooder f = {.cc = cc, .n = N};

	side_consumer_start(&sc, cc->side);
	chan_command(cc, "p", 0);
	expect_text(cc->replies, "p", 0);

	/* Away: waiting on the consumer only. */
	send_counted(cc, 100, N, 0);
	ck_assert_msg(side_consumer_wait(&sc, 1, FALSE, 20 * G_USEC_PER_SEC),
		      "the child did not get every queued message");

	/* Waiting in a receive while another thread sends. */
	f.thread = g_thread_new("flooder", flooder_thread, &f);
	expect_text(cc->replies, "p", 7);
	g_thread_join(f.thread);
	ck_assert_msg(side_consumer_wait(&sc, 2, FALSE, 20 * G_USEC_PER_SEC),
		      "the child did not get every queued message");

	mesh_sender_free(cc->commands);
	cc->commands = NULL;
	ck_assert(side_consumer_wait(&sc, 2, TRUE, 20 * G_USEC_PER_SEC));
	side_consumer_stop(&sc, cc->side);
	expect_recv_error(cc->replies, 20 * G_USEC_PER_SEC, MESH_ERROR_CLOSED);
	ck_assert_int_eq(chan_child_abandon(cc), 0);
}
END_TEST

/* A thread that keeps a CPU busy until told to stop. */
typedef struct {
	gint stop;
	GThread *thread;
} Burner;

static gpointer burner_thread(gpointer data)
{
	Burner *b = data;
	volatile guint64 spins = 0;

	while (!g_atomic_int_get(&b->stop))
		spins++;
	return NULL;
}

typedef struct {
	ChanChild *cc;
	guint n;
	char *failure;
} SlowWaiter;

static gpointer slow_waiter_thread(gpointer data)
{
	SlowWaiter *w = data;
	char text[64], want[64];
	GError *error = NULL;

	/* The lowest priority: this thread runs late after each wakeup. */
	setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 19);
	for (guint i = 0; i < w->n && !w->failure; i++) {
		/* Long enough for the I/O thread to take its context back. */
		g_usleep(3000);
		chan_command(w->cc, "p", i);
		g_snprintf(want, sizeof(want), "p %u", i);
		if (!chan_recv_text(w->cc->replies, 5 * G_USEC_PER_SEC, text, sizeof(text), &error)) {
			w->failure = g_strdup_printf("waiting for \"%s\": %s", want, error->message);
			g_clear_error(&error);
		} else if (strcmp(text, want) != 0) {
			w->failure = g_strdup_printf("got \"%s\", wanted \"%s\"", text, want);
		}
	}
	return NULL;
}

START_TEST(test_chan_slow_waiter)
{
	/*
	 * A receiver that asks the I/O thread to lend and is slow to run
	 * afterwards (lowest priority, every CPU busy): the I/O thread may lend
	 * and take its context back (1 ms unused) before the receiver looks.
	 * The receiver must then ask again, not wait for a lend that nobody
	 * asked for (it slept until its timeout; fixed in 0bf2188, which this
	 * caught in most runs without the fix).
	 */
	enum { N = 100, MAX_BURNERS = 4 };

	/*
	 * Not under valgrind: it runs one thread at a time, and a nice-19
	 * thread beside spinning ones gets so little of it that the waits
	 * outlast any timeout without anything being lost.
	 */
	if (g_getenv("MESH_TEST_VALGRIND")) {
		fprintf(stderr, "test_chan_slow_waiter: skipped under valgrind\n");
		return;
	}
	ChanChild *cc = chan_child_new(FALSE, NULL);
	SlowWaiter w = {.cc = cc, .n = N};
	Burner burners[MAX_BURNERS] = {{0}};
	guint n_burners = MIN(g_get_num_processors(), MAX_BURNERS);
	GThread *t;

	chan_command(cc, "p", 0);
	expect_text(cc->replies, "p", 0);
	for (guint i = 0; i < n_burners; i++)
		burners[i].thread = g_thread_new("burner", burner_thread, &burners[i]);
	t = g_thread_new("slow-waiter", slow_waiter_thread, &w);
	g_thread_join(t);
	for (guint i = 0; i < n_burners; i++) {
		g_atomic_int_set(&burners[i].stop, TRUE);
		g_thread_join(burners[i].thread);
	}
	ck_assert_msg(!w.failure, "%s", w.failure);
	chan_child_finish(cc);
}
END_TEST

typedef struct {
	PalChild *process;
	gint64 delay_us;
	int result;
} Killer;

static gpointer killer_thread(gpointer data)
{
	Killer *k = data;

	g_usleep(k->delay_us);
	k->result = pal_child_kill(k->process, SIGKILL);
	return NULL;
}

START_TEST(test_chan_child_killed)
{
	/* The child dies while two threads wait in receives on its channels. */
	ChanChild *cc = chan_child_new(FALSE, NULL);
	Waiter q = {.cc = cc, .r = cc->other, .word = "q", .n_burst = 1,
		    .timeout_us = 20 * G_USEC_PER_SEC};
	Killer k = {.process = cc->child->process, .delay_us = 50000};
	GError *error = NULL;
	MeshMessage *msg = NULL;
	char id[33];
	GThread *killer;
	int status;

	chan_command(cc, "p", 0);
	expect_text(cc->replies, "p", 0);
	waiter_start(&q, "waiter-q");
	killer = g_thread_new("killer", killer_thread, &k);

	ck_assert(!mesh_receiver_recv_message(cc->replies, 20 * G_USEC_PER_SEC, &msg, &error));
	ck_assert_msg(g_error_matches(error, MESH_ERROR, MESH_ERROR_NODE_FAILURE), "%s",
		      error->message);
	mesh_uuid_to_string(&cc->child->id, id);
	ck_assert_msg(strstr(error->message, id) != NULL, "%s", error->message);
	g_clear_error(&error);
	g_thread_join(killer);
	ck_assert_int_eq(k.result, 0);

	/* The other waiter got the failure too, not a message nor a timeout. */
	g_thread_join(q.thread);
	ck_assert_ptr_nonnull(q.failure);
	ck_assert_msg(q.error_code == MESH_ERROR_NODE_FAILURE, "%s", q.failure);
	ck_assert_msg(strstr(q.failure, id) != NULL, "%s", q.failure);
	g_free(q.failure);

	/* The failure stays. */
	expect_recv_error(cc->replies, 0, MESH_ERROR_NODE_FAILURE);
	expect_recv_error(cc->side, 5 * G_USEC_PER_SEC, MESH_ERROR_NODE_FAILURE);
	status = chan_child_abandon(cc);
	ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
}
END_TEST

typedef struct {
	MeshReceiver *r;
	gint64 timeout_us;
	gboolean got;
	GError *error;
	GThread *thread;
} TimedWaiter;

static gpointer timed_waiter_thread(gpointer data)
{
	TimedWaiter *w = data;
	MeshMessage *msg = NULL;

	w->got = mesh_receiver_recv_message(w->r, w->timeout_us, &msg, &w->error);
	mesh_message_free(msg);
	return NULL;
}

START_TEST(test_chan_free_node_while_blocked)
{
	/*
	 * The transport is freed while another thread waits in a timed
	 * receive on a channel it carries: the receive returns (the sender's
	 * node is cut off, or the time is up), nothing crashes or hangs, and
	 * nothing of the transport stays behind (fds here, memory under ASan).
	 * At different moments: right away, while the thread polls, later.
	 */
	static const gint64 delays_us[] = {0, 1000, 5000, 30000};

	for (guint i = 0; i < G_N_ELEMENTS(delays_us); i++) {
		int fds_before = count_fds();
		ChanChild *cc = chan_child_new(FALSE, NULL);
		TimedWaiter w = {.r = cc->replies, .timeout_us = 3 * G_USEC_PER_SEC};
		int status;

		chan_command(cc, "p", 0);
		expect_text(cc->replies, "p", 0);
		w.thread = g_thread_new("timed-waiter", timed_waiter_thread, &w);
		g_usleep(delays_us[i]);
		mesh_unix_node_free(parent.unode);
		parent.unode = NULL;
		g_thread_join(w.thread);
		ck_assert(!w.got);
		ck_assert_msg(g_error_matches(w.error, MESH_ERROR, MESH_ERROR_NODE_FAILURE) ||
				      g_error_matches(w.error, MESH_ERROR, MESH_ERROR_TIMED_OUT),
			      "delay %" G_GINT64_FORMAT ": %s", delays_us[i], w.error->message);
		g_error_free(w.error);
		/* Once the transport is gone, the receive fails at once. */
		expect_recv_error(cc->replies, 5 * G_USEC_PER_SEC, MESH_ERROR_NODE_FAILURE);

		/* The child saw its parent go: its receive failed (20), no crash. */
		status = chan_child_abandon(cc);
		ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 20, "child status %d",
			      status);
		mesh_node_unref(parent.node);
		parent_setup();
		/*
		 * The freed transport closed its sockets. The first round lets
		 * GLib make its lazy fds (measured: one), so it is not counted.
		 */
		if (i > 0)
			ck_assert_msg(count_fds() == fds_before,
				      "delay %" G_GINT64_FORMAT ": %d fds, %d before", delays_us[i],
				      count_fds(), fds_before);
	}
}
END_TEST

/*
 * Asynchronous calls from a plain GMainLoop on the default context, to an
 * rpc server in a child ("rpc", run_rpc() in unix-test-child.c). The
 * transport runs its own I/O thread ("rpc-async") or the default context
 * itself ("rpc-async-caller-context"): then nothing may block the loop.
 */

typedef struct AsyncRun AsyncRun;

/* One call: what it expects, and how often its callback and notify ran. */
typedef struct {
	AsyncRun *run;
	guint a, b;
	int expect; /* -1: the sum; else a MESH_ERROR code */
	guint n_callbacks, n_notified;
	MeshRpcCall *handle; /* kept by the tests that cancel */
	gboolean cancelled;  /* mesh_rpc_call_cancel() returned, on the loop's thread */
	int got;             /* -1: the sum; else the error code */
} AsyncCall;

struct AsyncRun {
	GMainLoop *loop;
	AsyncCall *calls;
	guint n_calls, n_done;
	MeshSender *sender;     /* freed inside the first callback, if free_in_callback */
	gboolean free_in_callback;
	const char *node_id;    /* set: every error must name this node */
	gboolean allow_cancel;  /* a call may end with the reply or CANCELLED */
	GMutex lock;            /* n_done_shared, for a thread that waits on the loop */
	GCond cond;
	guint n_done_shared;
};

static MeshSender *rpc_child_new(Child **ret_child)
{
	MeshSender *s;
	MeshReceiver *r;

	*ret_child = spawn_child("rpc", NULL);
	mesh_channel_new(NULL, &s, &r);
	MeshMessage *msg = mesh_message_new(NULL, 0);
	mesh_message_add_port_take(msg, mesh_receiver_into_port(r));
	port_send((*ret_child)->port, msg, FALSE);
	return s;
}

static ProtobufCMessage *add_input(guint a, guint b)
{
	Chantest__Add *add = malloc(sizeof(*add));
	chantest__add__init(add);
	add->a = a;
	add->b = b;
	return &add->base;
}

static void async_outcome(AsyncCall *ac, guint sum, gboolean have_reply, const GError *error)
{
	AsyncRun *run = ac->run;

	ck_assert_uint_eq(++ac->n_callbacks, 1);
	ck_assert_uint_eq(ac->n_notified, 0);
	ck_assert(have_reply != (error != NULL));
	ac->got = have_reply ? -1 : error->code;
	if (have_reply) {
		ck_assert_uint_eq(sum, ac->a + ac->b);
	} else {
		ck_assert(error->domain == MESH_ERROR);
		if (error->code == MESH_ERROR_REMOTE)
			ck_assert_str_eq(error->message, "outer: inner");
		if (error->code == MESH_ERROR_NODE_FAILURE && run->node_id)
			ck_assert_msg(strstr(error->message, run->node_id), "%s", error->message);
	}
	if (ac->cancelled)
		ck_assert_int_eq(ac->got, MESH_ERROR_CANCELLED);
	else if (run->allow_cancel && ac->got == MESH_ERROR_CANCELLED)
		; /* cancelled from another thread */
	else
		ck_assert_msg(ac->got == ac->expect, "call %u (a %u): expected %d, got %d (%s)",
			      (guint)(ac - run->calls), ac->a, ac->expect, ac->got,
			      error ? error->message : "a reply");
	if (run->free_in_callback && run->sender) {
		/* The calls already made go on without it. */
		mesh_sender_free(run->sender);
		run->sender = NULL;
	}
	g_mutex_lock(&run->lock);
	run->n_done_shared = run->n_done + 1;
	g_cond_signal(&run->cond);
	g_mutex_unlock(&run->lock);
	if (++run->n_done == run->n_calls)
		g_main_loop_quit(run->loop);
}

static void async_cb(ProtobufCMessage *reply, const GError *error, gpointer user_data)
{
	async_outcome(user_data, reply ? ((Chantest__Sum *)reply)->v : 0, reply != NULL, error);
	mesh_payload_message_free(reply);
}

static void async_message_cb(MeshMessage *reply, const GError *error, gpointer user_data)
{
	ProtobufCMessage *sum = NULL;

	if (reply)
		ck_assert_ptr_nonnull(sum = mesh_message_into_typed(reply, &chantest__sum__descriptor,
								     NULL));
	async_outcome(user_data, sum ? ((Chantest__Sum *)sum)->v : 0, reply != NULL, error);
	mesh_payload_message_free(sum);
}

static void async_notify(gpointer user_data)
{
	AsyncCall *ac = user_data;
	ck_assert_uint_eq(ac->n_callbacks, 1); /* right after the callback */
	ac->n_notified++;
}

static AsyncRun *async_run_new(guint n)
{
	AsyncRun *run = g_new0(AsyncRun, 1);
	run->loop = g_main_loop_new(NULL, FALSE);
	g_mutex_init(&run->lock);
	g_cond_init(&run->cond);
	run->calls = g_new0(AsyncCall, n);
	run->n_calls = n;
	for (guint i = 0; i < n; i++)
		run->calls[i].run = run;
	return run;
}

/* Makes call @i (typed, or untyped when @i is odd and @mix) with @timeout_us. */
static void async_call(AsyncRun *run, guint i, guint a, guint b, int expect, gint64 timeout_us,
		       gboolean keep, gboolean mix)
{
	AsyncCall *ac = &run->calls[i];
	MeshRpcCall *call;

	ac->a = a;
	ac->b = b;
	ac->expect = expect;
	if (mix && i % 2)
		call = mesh_rpc_call_message_async(run->sender,
						   mesh_message_new_typed_take(add_input(a, b)),
						   timeout_us, NULL, async_message_cb, ac, async_notify);
	else
		call = mesh_rpc_call_async(run->sender, add_input(a, b), &chantest__sum__descriptor,
					   timeout_us, NULL, async_cb, ac, async_notify);
	ck_assert_ptr_nonnull(call);
	ck_assert_uint_eq(ac->n_callbacks, 0); /* never inside the call */
	if (keep)
		ac->handle = call;
	else
		mesh_rpc_call_unref(call);
}

/* Runs the loop until every callback ran; each ran once and was notified. */
static void async_run_finish(AsyncRun *run)
{
	if (run->n_done < run->n_calls)
		g_main_loop_run(run->loop); /* bounded by the test's timeout */
	for (guint i = 0; i < run->n_calls; i++) {
		ck_assert_uint_eq(run->calls[i].n_callbacks, 1);
		ck_assert_uint_eq(run->calls[i].n_notified, 1);
		/* After the callback: cancel does nothing more. */
		if (run->calls[i].handle)
			mesh_rpc_call_cancel(run->calls[i].handle);
		mesh_rpc_call_unref(run->calls[i].handle);
	}
	g_main_context_iteration(NULL, FALSE);
	for (guint i = 0; i < run->n_calls; i++)
		ck_assert_uint_eq(run->calls[i].n_callbacks, 1);
	mesh_sender_free(run->sender);
	g_main_loop_unref(run->loop);
	g_mutex_clear(&run->lock);
	g_cond_clear(&run->cond);
	g_free(run->calls);
	g_free(run);
}

/* Waits for the child's exit running the default context (the transport may be on it). */
static int child_finish_on_context(Child *c)
{
	gboolean exited = FALSE;

	ck_assert_int_ge(pal_child_get_pidfd(c->process), 0);
	guint id = g_unix_fd_add(pal_child_get_pidfd(c->process), G_IO_IN, child_exited_cb,
				 &exited);
	while (!exited)
		g_main_context_iteration(NULL, TRUE); /* bounded by the test's timeout */
	(void)id;
	return child_finish(c);
}

static void release_cb(ProtobufCMessage *reply, const GError *error, gpointer user_data)
{
	ck_assert_msg(reply, "%s", error ? error->message : "?");
	ck_assert_uint_eq(((Chantest__Sum *)reply)->v, UNIX_TEST_RPC_RELEASE);
	mesh_payload_message_free(reply);
	g_main_loop_quit(user_data);
}

/*
 * Many concurrent calls, typed and untyped: replies, remote errors and
 * dropped requests; the sender is freed inside the first callback, with
 * every other call in flight. The child then sees its requests end.
 */
START_TEST(test_rpc_async_many)
{
	enum { N = 2000 };
	Child *c;
	AsyncRun *run = async_run_new(N);

	run->sender = rpc_child_new(&c);
	run->free_in_callback = TRUE;
	for (guint i = 0; i < N; i++) {
		if (i % 10 == 3)
			async_call(run, i, UNIX_TEST_RPC_FAIL, 0, MESH_ERROR_REMOTE, -1, FALSE, TRUE);
		else if (i % 10 == 7)
			async_call(run, i, UNIX_TEST_RPC_DROP, 0, MESH_ERROR_CLOSED, -1, FALSE, TRUE);
		else
			async_call(run, i, i, 7, -1, i % 3 ? -1 : 60 * G_USEC_PER_SEC, FALSE, TRUE);
	}
	async_run_finish(run);
	ck_assert_int_eq(child_finish_on_context(c), 0);
}
END_TEST

/*
 * The server's process dies with calls in flight: each callback runs once,
 * with the failure naming the node; a call with a deadline gets the failure
 * too, not the deadline.
 */
START_TEST(test_rpc_async_host_dies)
{
	enum { N = 300 };
	Child *c;
	AsyncRun *run = async_run_new(N + 1);
	char id[33];

	run->sender = rpc_child_new(&c);
	run->node_id = mesh_uuid_to_string(&c->id, id);
	for (guint i = 0; i < N; i++)
		async_call(run, i, UNIX_TEST_RPC_HOLD, i, MESH_ERROR_NODE_FAILURE,
			   i % 2 ? -1 : 600 * G_USEC_PER_SEC, FALSE, TRUE);
	async_call(run, N, UNIX_TEST_RPC_DIE, 0, MESH_ERROR_NODE_FAILURE, -1, FALSE, FALSE);
	async_run_finish(run);
	int status = child_finish_on_context(c);
	ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
}
END_TEST

/*
 * Cancellation: before the reply (the server holds the request); inside
 * another call's callback (whatever came, the cancelled one gets
 * CANCELLED: its callback had not started); and a thread that cancels
 * while the loop takes the replies, racing them (each callback once, with
 * the reply or CANCELLED). A deadline that passes gives TIMED_OUT, a bad
 * one INVALID_ARGUMENT, never inside the call.
 */
typedef struct {
	AsyncRun *run;
	guint first, n;
} Canceller;

static gpointer canceller_thread(gpointer data)
{
	Canceller *k = data;

	/* Once the loop is busy with the race's replies. */
	g_mutex_lock(&k->run->lock);
	while (k->run->n_done_shared < k->first + k->n / 8)
		g_cond_wait(&k->run->cond, &k->run->lock);
	g_mutex_unlock(&k->run->lock);
	for (guint i = k->first; i < k->first + k->n; i += 2)
		mesh_rpc_call_cancel(k->run->calls[i].handle);
	return NULL;
}

static void cancel_next_cb(ProtobufCMessage *reply, const GError *error, gpointer user_data)
{
	AsyncCall *ac = user_data;
	AsyncCall *next = ac + 1;

	/* The next call's reply may be here already: its callback has not run. */
	mesh_rpc_call_cancel(next->handle);
	next->cancelled = TRUE;
	async_cb(reply, error, user_data);
}

START_TEST(test_rpc_async_cancel)
{
	enum { RACE = 1000, PAIRS = 50 };
	guint n = 3 + 2 * PAIRS + RACE, i = 0;
	Child *c;
	AsyncRun *run = async_run_new(n);

	run->sender = rpc_child_new(&c);
	run->allow_cancel = TRUE;

	/* Held by the server: cancelled before any reply. */
	async_call(run, i, UNIX_TEST_RPC_HOLD, 0, MESH_ERROR_CANCELLED, -1, TRUE, FALSE);
	mesh_rpc_call_cancel(run->calls[i].handle);
	mesh_rpc_call_cancel(run->calls[i].handle); /* a second time: nothing */
	run->calls[i].cancelled = TRUE;
	ck_assert_uint_eq(run->calls[i].n_callbacks, 0); /* never inside the cancel */
	i++;
	/* A deadline that passes (the request is held), and a bad one. */
	async_call(run, i++, UNIX_TEST_RPC_HOLD, 1, MESH_ERROR_TIMED_OUT, 1000, FALSE, FALSE);
	async_call(run, i++, 5, 5, MESH_ERROR_INVALID_ARGUMENT, -5, FALSE, FALSE);

	/* Pairs: the first's callback cancels the second. */
	for (guint p = 0; p < PAIRS; p++, i += 2) {
		AsyncCall *ac = &run->calls[i];
		ac->a = p;
		ac->b = 1;
		ac->expect = -1;
		mesh_rpc_call_unref(mesh_rpc_call_async(run->sender, add_input(p, 1),
							&chantest__sum__descriptor, -1, NULL,
							cancel_next_cb, ac, async_notify));
		async_call(run, i + 1, p, 2, MESH_ERROR_CANCELLED, -1, TRUE, p % 2);
	}

	/* The race. */
	Canceller k = {.run = run, .first = i, .n = RACE};
	for (guint j = 0; j < RACE; j++, i++)
		async_call(run, i, j, 3, -1, -1, TRUE, j % 2);
	GThread *t = g_thread_new("canceller", canceller_thread, &k);
	g_main_loop_run(run->loop);
	g_thread_join(t);

	guint n_cancelled = 0;
	for (guint j = k.first; j < k.first + RACE; j++) {
		ck_assert(run->calls[j].got == -1 ||
			  (run->calls[j].got == MESH_ERROR_CANCELLED && (j - k.first) % 2 == 0));
		n_cancelled += run->calls[j].got == MESH_ERROR_CANCELLED;
	}
	g_debug("race: %u of %u cancelled", n_cancelled, RACE / 2);
	/* The held requests are answered now: those replies are dropped. */
	ck_assert_uint_eq(run->n_done, run->n_calls);
	mesh_rpc_call_unref(mesh_rpc_call_async(run->sender, add_input(UNIX_TEST_RPC_RELEASE, 0),
						&chantest__sum__descriptor, -1, NULL, release_cb,
						run->loop, NULL));
	g_main_loop_run(run->loop);
	async_run_finish(run);
	ck_assert_int_eq(child_finish_on_context(c), 0);
}
END_TEST

/* A oneshot's outcome through its callback, or its fd, from a "chan" child. */
typedef struct {
	GMainLoop *loop;
	guint n_callbacks, n_notified;
	char text[32];
	int code; /* -1: a value */
} OneshotWait;

static void oneshot_take(MeshOneshotReceiver *orx, OneshotWait *w)
{
	MeshMessage *value = NULL;
	GError *error = NULL;

	if (mesh_oneshot_recv_message(orx, 0, &value, &error)) {
		size_t size;
		const uint8_t *data = mesh_message_get_data(value, &size);
		size = MIN(size, sizeof(w->text) - 1);
		memcpy(w->text, data, size);
		w->text[size] = '\0';
		w->code = -1;
		mesh_message_free(value);
	} else {
		ck_assert(!g_error_matches(error, MESH_ERROR, MESH_ERROR_EMPTY));
		w->code = error->code;
		g_error_free(error);
	}
}

static void oneshot_cb(MeshOneshotReceiver *orx, gpointer data)
{
	OneshotWait *w = data;

	ck_assert_uint_eq(++w->n_callbacks, 1);
	oneshot_take(orx, w); /* consumes @orx: no second callback */
	g_main_loop_quit(w->loop);
}

static void oneshot_notify(gpointer data)
{
	((OneshotWait *)data)->n_notified++;
}

/* Sends "@word @n" with a oneshot sender attached; returns its receiver. */
static MeshOneshotReceiver *chan_oneshot(ChanChild *cc, const char *word, guint n)
{
	MeshOneshotSender *os;
	MeshOneshotReceiver *orx;
	char text[32];

	mesh_oneshot_new(NULL, &os, &orx);
	g_snprintf(text, sizeof(text), "%s %u", word, n);
	MeshMessage *cmd = mesh_message_new(text, strlen(text));
	mesh_message_add_port_take(cmd, mesh_oneshot_sender_into_port(os));
	mesh_sender_send_message(cc->commands, cmd);
	return orx;
}

START_TEST(test_oneshot_callback_and_fd)
{
	ChanChild *cc = chan_child_new(FALSE, NULL);
	OneshotWait w = {.loop = g_main_loop_new(NULL, FALSE)};

	/* The value, on the default context. */
	MeshOneshotReceiver *orx = chan_oneshot(cc, "o", 5);
	mesh_oneshot_receiver_set_callback(orx, NULL, oneshot_cb, &w, oneshot_notify);
	g_main_loop_run(w.loop);
	ck_assert_int_eq(w.code, -1);
	ck_assert_str_eq(w.text, "o 5");
	ck_assert_uint_eq(w.n_notified, 1); /* consumed: the callback is gone */

	/* The end: the child closes a oneshot sender that came with "p". */
	w.n_callbacks = w.n_notified = 0;
	orx = chan_oneshot(cc, "p", 6);
	mesh_oneshot_receiver_set_callback(orx, NULL, oneshot_cb, &w, oneshot_notify);
	g_main_loop_run(w.loop);
	ck_assert_int_eq(w.code, MESH_ERROR_CLOSED);
	ck_assert_uint_eq(w.n_notified, 1);
	expect_text(cc->replies, "p", 6);

	/* The fd: readable once the value is there; closed with the receiver. */
	orx = chan_oneshot(cc, "o", 7);
	int fd = mesh_oneshot_receiver_get_fd(orx);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(mesh_oneshot_receiver_get_fd(orx), fd);
	ck_assert(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	ck_assert_int_eq(poll(&pfd, 1, -1), 1); /* bounded by the test's timeout */
	oneshot_take(orx, &w);
	ck_assert_int_eq(w.code, -1);
	ck_assert_str_eq(w.text, "o 7");
	ck_assert_int_eq(fcntl(fd, F_GETFD), -1);

	/* A callback replaced, then removed: each notify once; then freed. */
	w.n_notified = 0;
	orx = chan_oneshot(cc, "o", 8);
	mesh_oneshot_receiver_set_callback(orx, NULL, oneshot_cb, &w, oneshot_notify);
	mesh_oneshot_receiver_set_callback(orx, NULL, oneshot_cb, &w, oneshot_notify);
	ck_assert_uint_eq(w.n_notified, 1);
	mesh_oneshot_receiver_free(orx);
	ck_assert_uint_eq(w.n_notified, 2);

	g_main_loop_unref(w.loop);
	chan_child_finish(cc);
}
END_TEST

/*
 * A peer dies while messages are queued to it: the sending thread comes
 * back, every later send is refused, and the port fails naming the node.
 * The flood gets the socket full and the queue long (the I/O context
 * flushes it), with a large event every 1000 (a pool buffer or a memfd).
 */
typedef struct {
	MeshPort *port;
	PalChild *child;
	guint n, kill_at;
	guint sent;     /* sends the port took */
	int kill_result;
	gboolean done;
	GMutex lock;
	GCond cond;
} Flood;

static gpointer flood_thread(gpointer data)
{
	Flood *f = data;
	char text[32];
	enum { BIG = 20000 };
	uint8_t *big = g_malloc0(BIG);

	for (guint i = 0; i < f->n; i++) {
		if (i == f->kill_at)
			f->kill_result = pal_child_kill(f->child, SIGKILL);
		MeshMessage *msg;
		if (i % 1000 == 999) {
			msg = mesh_message_new(big, BIG);
		} else {
			snprintf(text, sizeof(text), "%u", i);
			msg = mesh_message_new(text, strlen(text));
		}
		if (!port_send(f->port, msg, FALSE))
			break;
		f->sent++;
	}
	g_free(big);
	g_mutex_lock(&f->lock);
	f->done = TRUE;
	g_cond_signal(&f->cond);
	g_mutex_unlock(&f->lock);
	return NULL;
}

/* One child flooded and killed halfway; TRUE if the sending thread came back in time. */
static void flood_and_kill_once(guint round)
{
	enum { N = 100000 };
	Child *c = spawn_child("drain", NULL);
	Flood f = {.port = c->port, .child = c->process, .n = N, .kill_at = N / 2,
		   .kill_result = -1};
	g_mutex_init(&f.lock);
	g_cond_init(&f.cond);

	/* The child is up and reading before the flood. */
	port_send_bytes(c->port, "warm up");
	GThread *t = g_thread_new("flood", flood_thread, &f);
	gint64 deadline = g_get_monotonic_time() + 30 * G_USEC_PER_SEC;
	g_mutex_lock(&f.lock);
	while (!f.done && g_cond_wait_until(&f.cond, &f.lock, deadline))
		;
	gboolean done = f.done;
	g_mutex_unlock(&f.lock);
	/* Stuck (the old deadlock): fail here; the stuck thread goes with the test's process. */
	ck_assert_msg(done, "round %u: the sending thread did not come back (%u sent)", round,
		      f.sent);
	g_thread_join(t);
	ck_assert_int_eq(f.kill_result, 0);
	ck_assert_uint_ge(f.sent, N / 2);

	/* The port failed, naming the node; no message came (the child sends none). */
	MeshMessage *end = test_recv_wait(c->recv, 20000);
	ck_assert_msg(test_recv_is_end(end, RECV_END_FAILED), "round %u: the port did not fail",
		      round);
	MeshMessage *msg = NULL;
	GError *error = NULL;
	ck_assert_int_eq(port_try_recv(c->port, &msg, &error), PORT_RECV_FAILED);
	char id[33];
	mesh_uuid_to_string(&c->id, id);
	ck_assert_msg(strstr(error->message, id) != NULL, "%s", error->message);
	g_error_free(error);
	ck_assert(!port_send_bytes(c->port, "after"));
	int status = child_finish(c);
	ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	g_mutex_clear(&f.lock);
	g_cond_clear(&f.cond);
}

static void flood_and_kill(void)
{
	for (guint round = 0; round < 5; round++)
		flood_and_kill_once(round);
	/* The transport still works: another child echoes. */
	Child *other = spawn_child("echo", NULL);
	port_send_bytes(other->port, "still here");
	expect_bytes(other->recv, "still here", 10);
	child_close_port(other);
	ck_assert_int_eq(child_finish(other), 0);
}

START_TEST(test_flood_child_killed)
{
	flood_and_kill();
}
END_TEST

START_TEST(test_flood_child_killed_upstream_wire)
{
	/*
	 * The switches are read once per process: this test needs its own
	 * (Check's fork mode; the valgrind setup runs with CK_FORK=no).
	 */
	if (g_strcmp0(g_getenv("CK_FORK"), "no") == 0) {
		fprintf(stderr, "test_flood_child_killed_upstream_wire: skipped with CK_FORK=no\n");
		return;
	}
	/* No batches, no pool: every event its own packet (the child inherits it). */
	g_setenv("MESH_UNIX_BATCH", "0", TRUE);
	g_setenv("MESH_UNIX_POOL", "0", TRUE);
	ck_assert_msg(!unix_batching_enabled() && !unix_pooling_enabled(),
		      "the switches were read before this test (run it in its own process)");
	flood_and_kill();
}
END_TEST

START_TEST(test_flood_child_killed_caller_context)
{
	/* The transport on a caller's context (as libmeshprocess runs it). */
	GMainContext *ctx = g_main_context_new();
	GMainLoop *loop = g_main_loop_new(ctx, FALSE);
	GThread *t = g_thread_new("caller-loop", run_loop, loop);
	MeshUnixNode *saved = parent.unode;
	parent.unode = mesh_unix_node_new(parent.node, ctx);

	flood_and_kill();
	ck_assert(mesh_unix_node_shutdown(parent.unode, 5 * G_USEC_PER_SEC));
	mesh_unix_node_free(parent.unode);
	parent.unode = saved;

	g_main_loop_quit(loop);
	g_thread_join(t);
	g_main_loop_unref(loop);
	g_main_context_unref(ctx);
}
END_TEST

typedef struct {
	ChanChild *cc;
	guint n, kill_at;
	int kill_result;
	gboolean flood_done, recv_done;
	gboolean got;  /* the receive returned a message */
	GError *error; /* why it did not */
	GMutex lock;
	GCond cond;
} ChanFlood;

static void chan_flood_signal(ChanFlood *f, gboolean *done)
{
	g_mutex_lock(&f->lock);
	*done = TRUE;
	g_cond_signal(&f->cond);
	g_mutex_unlock(&f->lock);
}

static gpointer chan_flood_thread(gpointer data)
{
	ChanFlood *f = data;

	for (guint i = 0; i < f->n; i++) {
		if (i == f->kill_at)
			f->kill_result = pal_child_kill(f->cc->child->process, SIGKILL);
		chan_command(f->cc, "k", i);
	}
	chan_flood_signal(f, &f->flood_done);
	return NULL;
}

/* Waits in a receive, so borrows the I/O context and runs the flushes itself. */
static gpointer chan_flood_receiver_thread(gpointer data)
{
	ChanFlood *f = data;
	MeshMessage *msg = NULL;

	f->got = mesh_receiver_recv_message(f->cc->replies, 30 * G_USEC_PER_SEC, &msg, &f->error);
	mesh_message_free(msg);
	chan_flood_signal(f, &f->recv_done);
	return NULL;
}

START_TEST(test_flood_child_killed_while_borrowed)
{
	/*
	 * A thread waits in a receive (it borrows the I/O context) while
	 * another floods a child that stopped reading (the socket is full, the
	 * queue long) and kills it halfway. Both threads come back: the
	 * receive with the node's failure.
	 */
	enum { N = 100000 };

	for (guint round = 0; round < 5; round++) {
		ChanChild *cc = chan_child_new(FALSE, NULL);
		ChanFlood f = {.cc = cc, .n = N, .kill_at = N / 2, .kill_result = -1};
		char id[33];

		g_mutex_init(&f.lock);
		g_cond_init(&f.cond);
		chan_command(cc, "p", 0);
		expect_text(cc->replies, "p", 0);
		chan_command(cc, "sleep", 20000);
		GThread *rt = g_thread_new("chan-receiver", chan_flood_receiver_thread, &f);
		GThread *ft = g_thread_new("chan-flood", chan_flood_thread, &f);
		gint64 deadline = g_get_monotonic_time() + 40 * G_USEC_PER_SEC;
		g_mutex_lock(&f.lock);
		while (!(f.flood_done && f.recv_done) &&
		       g_cond_wait_until(&f.cond, &f.lock, deadline))
			;
		gboolean flood_done = f.flood_done, recv_done = f.recv_done;
		g_mutex_unlock(&f.lock);
		/* Stuck (the old deadlock): fail here; the threads go with the test's process. */
		ck_assert_msg(flood_done && recv_done,
			      "round %u: stuck: the sending thread %s, the receiving thread %s", round,
			      flood_done ? "came back" : "did not come back",
			      recv_done ? "came back" : "did not come back");
		g_thread_join(ft);
		g_thread_join(rt);
		ck_assert_int_eq(f.kill_result, 0);
		ck_assert(!f.got);
		ck_assert_msg(g_error_matches(f.error, MESH_ERROR, MESH_ERROR_NODE_FAILURE),
			      "round %u: %s", round, f.error->message);
		mesh_uuid_to_string(&cc->child->id, id);
		ck_assert_msg(strstr(f.error->message, id) != NULL, "%s", f.error->message);
		g_clear_error(&f.error);
		g_mutex_clear(&f.lock);
		g_cond_clear(&f.cond);
		int status = chan_child_abandon(cc);
		ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	}
}
END_TEST

/* A message with @n_fds fds (of /dev/null) and @size bytes. */
static MeshMessage *message_with_fds(guint n_fds, size_t size)
{
	uint8_t *data = g_malloc0(size ? size : 1);
	MeshMessage *msg = mesh_message_new(data, size);
	g_free(data);
	for (guint i = 0; i < n_fds; i++) {
		int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
		ck_assert_int_ge(fd, 0);
		ck_assert_int_eq(mesh_message_add_fd_take(msg, fd), (int)i);
	}
	return msg;
}

typedef enum {
	TOO_MANY_FDS,
	TOO_MANY_WITH_MEMFD,
	FD_CLOSED_AFTER_ADD,
	FD_CLOSED_AFTER_ADD_TO_RECEIVED,
	BORROWED_FD_CLOSED,
	BORROWED_FD_CLOSED_QUEUED
} BadMessage;

/*
 * A message the transport cannot carry, on one port of a connection: that
 * port fails (at the child, naming the parent), the other port on the same
 * connection goes on, and no fd stays behind here.
 */
static void bad_message_case(BadMessage kind)
{
	Child *c = spawn_child("peerfail", NULL);
	MeshPort *x, *y;
	mesh_port_new_pair(&x, &y);
	TestRecv *ry = test_recv_new(y);
	MeshMessage *msg = mesh_message_new(NULL, 0);
	mesh_message_add_port_take(msg, x);
	port_send(c->port, msg, FALSE);
	expect_bytes(ry, "hello from child", 16);

	/* At the limit, both ways: 64 fds with a small message. */
	port_send(y, message_with_fds(MESH_UNIX_MAX_FDS_PER_PACKET, 10), FALSE);
	msg = expect_message(ry);
	ck_assert_uint_eq(mesh_message_get_n_resources(msg), MESH_UNIX_MAX_FDS_PER_PACKET);
	mesh_message_free(msg);

	int before = count_fds();
	int lent = -1; /* BORROWED_FD_CLOSED*: an open fd the message borrows too */
	int fill = -1; /* BORROWED_FD_CLOSED_QUEUED: lent by the messages that fill the socket */
	MeshPort *moved = NULL, *moved_peer = NULL; /* BORROWED_FD_CLOSED*: a port in the message */
	guint n_fill = 0;
	switch (kind) {
	case TOO_MANY_FDS:
		msg = message_with_fds(MESH_UNIX_MAX_FDS_PER_PACKET + 1, 10);
		break;
	case TOO_MANY_WITH_MEMFD:
		/* Out of line, the event's memfd (or pool buffer) is the 65th. */
		msg = message_with_fds(MESH_UNIX_MAX_FDS_PER_PACKET, 100000);
		break;
	case FD_CLOSED_AFTER_ADD: {
		int pipefd[2];
		ck_assert_int_eq(pipe2(pipefd, O_CLOEXEC), 0);
		msg = mesh_message_new("x", 1);
		ck_assert_int_eq(mesh_message_add_fd_take(msg, pipefd[0]), 0);
		close(pipefd[0]); /* behind the message's back */
		close(pipefd[1]);
		break;
	}
	case FD_CLOSED_AFTER_ADD_TO_RECEIVED: {
		/*
		 * A received message's fds are the node's own and go unchecked;
		 * one the application adds to it is checked as any other.
		 */
		port_send(y, message_with_fds(1, 10), FALSE);
		msg = expect_message(ry);
		ck_assert_uint_eq(mesh_message_get_n_resources(msg), 1);
		int pipefd[2];
		ck_assert_int_eq(pipe2(pipefd, O_CLOEXEC), 0);
		ck_assert_int_eq(mesh_message_add_fd_take(msg, pipefd[0]), 1);
		close(pipefd[0]); /* behind the message's back */
		close(pipefd[1]);
		break;
	}
	case BORROWED_FD_CLOSED_QUEUED:
		/*
		 * The child stops reading: until a packet waits in the queue
		 * (with a duplicate of @fill: one more fd), then as below, but
		 * what finds the closed fd is the duplicate for the queue.
		 */
		fill = memfd_create("fill", MFD_CLOEXEC);
		ck_assert_int_ge(fill, 0);
		ck_assert_int_eq(pal_child_kill(c->process, SIGSTOP), 0);
		while (count_fds() <= before + 2) {
			ck_assert_uint_lt(n_fill, 4096);
			msg = mesh_message_new("fill", 4);
			ck_assert_int_eq(mesh_message_add_fd_borrowed(msg, fill), 0);
			port_send(y, msg, FALSE);
			n_fill++;
		}
		G_GNUC_FALLTHROUGH;
	case BORROWED_FD_CLOSED: {
		/*
		 * Lent, then closed: the add does not look (no system call);
		 * the send's sendmsg() finds it, on an idle connection, in
		 * this thread. Next to an open fd, and to an fd the message
		 * owns, which is closed with the message.
		 */
		lent = open("/dev/null", O_RDONLY | O_CLOEXEC);
		ck_assert_int_ge(lent, 0);
		int pipefd[2];
		ck_assert_int_eq(pipe2(pipefd, O_CLOEXEC), 0);
		close(pipefd[1]);
		msg = mesh_message_new("x", 1);
		ck_assert_int_eq(mesh_message_add_fd_borrowed(msg, lent), 0);
		ck_assert_int_eq(mesh_message_add_fd_borrowed(msg, pipefd[1]), 1);
		ck_assert_int_eq(mesh_message_add_fd_take(msg, pipefd[0]), 2);
		/* A port in it is moved before the send: it fails too. */
		mesh_port_new_pair(&moved, &moved_peer);
		ck_assert_int_eq(mesh_message_add_port_take(msg, moved), 3);
		break;
	}
	}
	ck_assert(port_send(c->port, msg, FALSE));
	if (lent >= 0) {
		MeshMessage *none = NULL;
		GError *error = NULL;
		ck_assert_int_eq(port_try_recv(moved_peer, &none, &error), PORT_RECV_FAILED);
		ck_assert_msg(strstr(error->message, "fd that is not open") != NULL, "%s",
			      error->message);
		g_error_free(error);
		mesh_port_close(moved_peer);
	}
	if (lent >= 0) {
		/* The sending port failed at once, saying why; the lent fd stays open. */
		MeshMessage *none = NULL;
		GError *error = NULL;
		ck_assert_int_eq(port_try_recv(c->port, &none, &error), PORT_RECV_FAILED);
		ck_assert(g_error_matches(error, MESH_ERROR, MESH_ERROR_INVALID_ARGUMENT));
		ck_assert_msg(strstr(error->message, "fd that is not open") != NULL, "%s",
			      error->message);
		g_error_free(error);
		ck_assert_int_eq(close(lent), 0);
	}
	if (fill >= 0) {
		/* The connection goes on: everything queued arrives. */
		ck_assert_int_eq(pal_child_kill(c->process, SIGCONT), 0);
		for (guint i = 0; i < n_fill; i++) {
			msg = expect_message(ry);
			ck_assert_uint_eq(mesh_message_get_n_resources(msg), 1);
			mesh_message_free(msg);
		}
		close(fill);
	}
	ck_assert_int_eq(count_fds(), before);

	/* The other port on the same connection goes on. */
	port_send_bytes(y, "still here");
	expect_bytes(ry, "still here", 10);
	test_recv_free(ry);
	mesh_port_close(y);
	/* The child saw its bootstrap port fail (status 9 if not), and nothing else. */
	child_close_port(c);
	ck_assert_int_eq(child_finish(c), 0);
}

START_TEST(test_too_many_fds_fails_the_port)
{
	bad_message_case(TOO_MANY_FDS);
}
END_TEST

START_TEST(test_too_many_fds_with_memfd_fails_the_port)
{
	bad_message_case(TOO_MANY_WITH_MEMFD);
}
END_TEST

START_TEST(test_closed_fd_fails_the_port)
{
	bad_message_case(FD_CLOSED_AFTER_ADD);
}
END_TEST

START_TEST(test_closed_fd_in_received_fails_the_port)
{
	bad_message_case(FD_CLOSED_AFTER_ADD_TO_RECEIVED);
}
END_TEST

START_TEST(test_borrowed_closed_fd_fails_the_port)
{
	bad_message_case(BORROWED_FD_CLOSED);
}
END_TEST

START_TEST(test_borrowed_closed_fd_queued_fails_the_port)
{
	bad_message_case(BORROWED_FD_CLOSED_QUEUED);
}
END_TEST

START_TEST(test_add_closed_fd)
{
	/* A closed fd is refused when it is added, and nothing is added. */
	int pipefd[2];
	ck_assert_int_eq(pipe2(pipefd, O_CLOEXEC), 0);
	close(pipefd[0]);
	close(pipefd[1]);
	MeshMessage *msg = mesh_message_new("x", 1);
	ck_assert_int_eq(mesh_message_add_fd_take(msg, pipefd[0]), -EBADF);
	ck_assert_int_eq(mesh_message_add_fd(msg, pipefd[1]), -EBADF);
	ck_assert_int_eq(mesh_message_add_fd_take(msg, -1), -EBADF);
	ck_assert_uint_eq(mesh_message_get_n_resources(msg), 0);
	/* An open one still goes in. */
	int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	ck_assert_int_eq(mesh_message_add_fd_take(msg, fd), 0);
	mesh_message_free(msg);
	ck_assert_int_eq(fcntl(fd, F_GETFD), -1); /* the message closed it */
}
END_TEST


/* ------------------------------------------------ borrowed fds */

static gboolean same_file(int fd, const struct stat *want)
{
	struct stat st;
	return fstat(fd, &st) == 0 && st.st_ino == want->st_ino && st.st_dev == want->st_dev;
}

/* How many of this process's fds are the file @st. */
static int count_fds_of(const struct stat *st)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		int fd = e->d_name[0] == '.' ? -1 : atoi(e->d_name);
		n += fd >= 0 && fd != dirfd(d) && same_file(fd, st);
	}
	closedir(d);
	return n;
}

/* A new memfd and its identity. */
static int new_memfd(struct stat *st)
{
	int fd = memfd_create("borrowed", MFD_CLOEXEC);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(fstat(fd, st), 0);
	return fd;
}

/*
 * Closes the caller's @fd, as it may once the send returned, and opens
 * another file under the same number: a library that still used the
 * number would send that file, or fail on it.
 */
static int close_and_reuse(int fd)
{
	close(fd);
	int other = open("/dev/null", O_RDONLY | O_CLOEXEC);
	ck_assert_int_ge(other, 0);
	if (other != fd) {
		/* A lower number came free meanwhile (a queued packet's duplicate sent): take @fd's. */
		ck_assert_int_eq(dup3(other, fd, O_CLOEXEC), fd);
		close(other);
		other = fd;
	}
	return other;
}

/* The next message from @r carries exactly one fd, the file @want. */
static void expect_fd_message(TestRecv *r, const struct stat *want)
{
	MeshMessage *msg = expect_message(r);
	ck_assert_uint_eq(mesh_message_get_n_resources(msg), 1);
	int fd = mesh_message_steal_fd(msg, 0);
	ck_assert_int_ge(fd, 0);
	ck_assert_msg(same_file(fd, want), "the fd that arrived is another file");
	close(fd);
	mesh_message_free(msg);
}

START_TEST(test_borrowed_fd)
{
	/* Idle connection: the fast path. The library never closes the caller's fd. */
	Child *c = spawn_child("echo", NULL);
	port_send_bytes(c->port, "warm up");
	expect_bytes(c->recv, "warm up", 7);
	int before = count_fds();
	struct stat st;
	int fd = new_memfd(&st);

	for (int i = 0; i < 3; i++) {
		MeshMessage *msg = mesh_message_new("fd", 2);
		ck_assert_int_eq(mesh_message_add_fd_borrowed(msg, fd), 0);
		port_send(c->port, msg, FALSE);
		ck_assert_int_ge(fcntl(fd, F_GETFD), 0);
		expect_fd_message(c->recv, &st);
	}
	/* Freed unsent: still open. Stolen back: a duplicate. */
	MeshMessage *msg = mesh_message_new("x", 1);
	ck_assert_int_eq(mesh_message_add_fd_borrowed(msg, fd), 0);
	mesh_message_free(msg);
	ck_assert_int_ge(fcntl(fd, F_GETFD), 0);
	msg = mesh_message_new("x", 1);
	ck_assert_int_eq(mesh_message_add_fd_borrowed(msg, fd), 0);
	int dup = mesh_message_steal_fd(msg, 0);
	ck_assert_int_ge(dup, 0);
	ck_assert_int_ne(dup, fd);
	ck_assert(same_file(dup, &st));
	ck_assert_int_ge(fcntl(dup, F_GETFD) & FD_CLOEXEC, 1);
	close(dup);
	mesh_message_free(msg);
	ck_assert_int_ge(fcntl(fd, F_GETFD), 0);
	close(fd);
	ck_assert_int_eq(count_fds(), before);

	/*
	 * A negative fd is refused; a closed one is not looked at until the
	 * message is used (test_borrowed_closed_fd_fails_the_port): stealing
	 * it fails as its duplicate does, and freeing closes nothing.
	 */
	msg = mesh_message_new("x", 1);
	ck_assert_int_eq(mesh_message_add_fd_borrowed(msg, -1), -EBADF);
	ck_assert_uint_eq(mesh_message_get_n_resources(msg), 0);
	ck_assert_int_eq(mesh_message_add_fd_borrowed(msg, fd), 0); /* closed */
	ck_assert_int_eq(mesh_message_steal_fd(msg, 0), -EBADF);
	ck_assert_int_eq(mesh_message_add_fd_borrowed(msg, fd), 1);
	mesh_message_free(msg);
	ck_assert_int_eq(count_fds(), before);

	child_close_port(c);
	ck_assert_int_eq(child_finish(c), 0);
}
END_TEST

START_TEST(test_borrowed_fd_backlog)
{
	/*
	 * The child stops reading: the connection queues what it cannot
	 * write. A borrowed fd in a queued packet must be the transport's
	 * duplicate: the caller closes its fd, and its number is reused, as
	 * soon as the send returns.
	 */
	Child *c = spawn_child("echo", NULL);
	port_send_bytes(c->port, "warm up");
	expect_bytes(c->recv, "warm up", 7);
	int before = count_fds();
	struct stat fill_st, st;
	int fill = new_memfd(&fill_st);
	guint n_fill = 0;

	ck_assert_int_eq(pal_child_kill(c->process, SIGSTOP), 0);
	/* Until a packet waits in the queue (it holds a duplicate: one more fd). */
	while (count_fds() <= before + 1) {
		ck_assert_uint_lt(n_fill, 4096);
		MeshMessage *msg = mesh_message_new("fill", 4);
		ck_assert_int_eq(mesh_message_add_fd_borrowed(msg, fill), 0);
		port_send(c->port, msg, FALSE);
		n_fill++;
	}
	int fd = new_memfd(&st);
	MeshMessage *msg = mesh_message_new("fd", 2);
	ck_assert_int_eq(mesh_message_add_fd_borrowed(msg, fd), 0);
	port_send(c->port, msg, FALSE);
	int other = close_and_reuse(fd);
	ck_assert_int_eq(pal_child_kill(c->process, SIGCONT), 0);

	for (guint i = 0; i < n_fill; i++)
		expect_fd_message(c->recv, &fill_st);
	expect_fd_message(c->recv, &st);
	close(other);
	close(fill);
	ck_assert_int_eq(count_fds(), before);

	child_close_port(c);
	ck_assert_int_eq(child_finish(c), 0);
}
END_TEST

typedef struct {
	struct stat st;
	int reused; /* the number the borrowed fd had, now another file */
} BeforeConnectSend;

static void send_borrowed_before_connect(Child *c, void *data)
{
	BeforeConnectSend *b = data;
	int fd = new_memfd(&b->st);
	MeshMessage *msg = mesh_message_new("fd", 2);
	ck_assert_int_eq(mesh_message_add_fd_borrowed(msg, fd), 0);
	port_send(c->port, msg, FALSE);
	b->reused = close_and_reuse(fd);
}

START_TEST(test_borrowed_fd_before_connect)
{
	/* Sent while the node is not connected: the packet waits, with its own fd. */
	BeforeConnectSend b;
	Child *c = spawn_child_full("echo", NULL, send_borrowed_before_connect, &b);
	expect_fd_message(c->recv, &b.st);
	close(b.reused);
	/* The queued packet's duplicate went with it. */
	ck_assert_int_eq(count_fds_of(&b.st), 0);
	child_close_port(c);
	ck_assert_int_eq(child_finish(c), 0);
}
END_TEST

START_TEST(test_borrowed_fd_failed_node)
{
	/* Sent toward a node that failed: dropped, and the caller's fd stays open. */
	MeshNodeId gone;
	MeshPortId mine, theirs;
	mesh_uuid_generate(&gone);
	mesh_uuid_generate(&mine);
	mesh_uuid_generate(&theirs);
	MeshRemoteNode *h = mesh_node_add_remote(parent.node, &gone);
	MeshPort *p = mesh_node_add_port(parent.node, &mine, &gone, &theirs);
	ck_assert_ptr_nonnull(p);
	int before = count_fds();
	struct stat st;
	int fd = new_memfd(&st);
	MeshMessage *msg = mesh_message_new("fd", 2);
	ck_assert_int_eq(mesh_message_add_fd_borrowed(msg, fd), 0);
	port_send(p, msg, FALSE); /* queued for the node, with a duplicate */
	mesh_remote_node_fail(h, "test: gone");
	msg = mesh_message_new("fd", 2);
	ck_assert_int_eq(mesh_message_add_fd_borrowed(msg, fd), 0);
	port_send(p, msg, FALSE); /* the port failed with its node */
	ck_assert_int_ge(fcntl(fd, F_GETFD), 0);
	ck_assert_int_eq(count_fds_of(&st), 1);
	close(fd);
	ck_assert_int_eq(count_fds(), before);
	mesh_port_close(p);
	mesh_remote_node_unref(h);
}
END_TEST

START_TEST(test_borrowed_fd_local_port)
{
	/* To a port in this process: the message lives on in its queue. */
	MeshPort *a, *b;
	mesh_port_new_pair(&a, &b);
	TestRecv *r = test_recv_new(b);
	int before = count_fds();
	struct stat st;
	int fd = new_memfd(&st);
	MeshMessage *msg = mesh_message_new("fd", 2);
	ck_assert_int_eq(mesh_message_add_fd_borrowed(msg, fd), 0);
	port_send(a, msg, FALSE);
	int other = close_and_reuse(fd);
	expect_fd_message(r, &st);
	close(other);
	ck_assert_int_eq(count_fds(), before);

	/*
	 * A lent fd that is closed, after an open one: not delivered (the
	 * open one's duplicate must not take the closed one's number and
	 * stand in for it); the port fails, saying why.
	 */
	fd = new_memfd(&st);
	int pipefd[2];
	ck_assert_int_eq(pipe2(pipefd, O_CLOEXEC), 0);
	close(pipefd[0]);
	close(pipefd[1]);
	msg = mesh_message_new("fd", 2);
	ck_assert_int_eq(mesh_message_add_fd_borrowed(msg, fd), 0);
	ck_assert_int_eq(mesh_message_add_fd_borrowed(msg, pipefd[0]), 1);
	port_send(a, msg, FALSE);
	MeshMessage *none = NULL;
	GError *error = NULL;
	ck_assert_int_eq(port_try_recv(a, &none, &error), PORT_RECV_FAILED);
	ck_assert_msg(strstr(error->message, "could not be duplicated") != NULL, "%s",
		      error->message);
	g_error_free(error);
	close(fd);
	ck_assert_int_eq(count_fds(), before);
	test_recv_free(r);
	mesh_port_close(a);
	mesh_port_close(b);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("libmeshremote-unix");
	TCase *tc = tcase_create("unix");
	tcase_set_timeout(tc, 120);
	tcase_add_checked_fixture(tc, parent_setup, parent_teardown);
	tcase_add_test(tc, test_echo);
	tcase_add_test(tc, test_message_sizes);
	tcase_add_test(tc, test_huge_message);
	tcase_add_test(tc, test_fds_and_no_leak);
	tcase_add_test(tc, test_socket_fd);
	tcase_add_test(tc, test_event_fd);
	tcase_add_test(tc, test_port_to_child);
	tcase_add_test(tc, test_shutdown_delivers);
	tcase_add_test(tc, test_100k_messages);
	tcase_add_test(tc, test_child_killed);
	tcase_add_test(tc, test_ring_interleaved);
	tcase_add_test(tc, test_stream_runs_with_moves);
	tcase_add_test(tc, test_ring_full_stream);
	tcase_add_test(tc, test_ring_full_stopped_consumer);
	tcase_add_test(tc, test_ring_full_consumer_killed);
	tcase_add_test(tc, test_hostile_garbage);
	tcase_add_test(tc, test_hostile_short);
	tcase_add_test(tc, test_hostile_unsealed_memfd);
	tcase_add_test(tc, test_hostile_empty_memfd);
	tcase_add_test(tc, test_hostile_65_fds);
	tcase_add_test(tc, test_hostile_unknown_port);
	tcase_add_test(tc, test_hostile_flood_not_logged_each);
	tcase_add_test(tc, test_not_seqpacket);
	tcase_add_test(tc, test_join_echo);
	tcase_add_test(tc, test_join_count_without_receive);
	tcase_add_test(tc, test_port_from_child_to_child);
	tcase_add_test(tc, test_sink_exits_mid_move);
	tcase_add_test(tc, test_failed_pair_not_reintroduced);
	tcase_add_test(tc, test_dropped_invitation);
	tcase_add_test(tc, test_mover_killed);
	tcase_add_test(tc, test_listener);
	tcase_add_test(tc, test_caller_context);
	tcase_add_test(tc, test_listener_limits);
	suite_add_tcase(s, tc);

	/* A port on its way between nodes while its peer's node ends. */
	tc = tcase_create("mid-move");
	tcase_set_timeout(tc, 120);
	tcase_add_checked_fixture(tc, parent_setup, parent_teardown);
	tcase_add_test(tc, test_peer_exits_mid_move);
	tcase_add_test(tc, test_peer_killed_mid_move);
	suite_add_tcase(s, tc);

	/* Channels with blocking receives: the I/O thread lends its context. */
	tc = tcase_create("lending");
	tcase_set_timeout(tc, 60);
	tcase_add_checked_fixture(tc, parent_setup, parent_teardown);
	tcase_add_test(tc, test_chan_ping_pong);
	tcase_add_test(tc, test_chan_oneshot_replies);
	tcase_add_test(tc, test_chan_callback_consumer);
	tcase_add_test(tc, test_chan_two_waiters);
	tcase_add_test(tc, test_chan_slow_waiter);
	tcase_add_test(tc, test_chan_local_and_remote_sender);
	tcase_add_test(tc, test_chan_recv_timeout);
	tcase_add_test(tc, test_chan_queued_send_flushes);
	tcase_add_test(tc, test_chan_child_killed);
	tcase_add_test(tc, test_chan_free_node_while_blocked);
	suite_add_tcase(s, tc);

	/* Blocking receives where the caller's context is run by nobody else. */
	tc = tcase_create("caller-context");
	tcase_set_timeout(tc, 60);
	tcase_add_checked_fixture(tc, parent_setup_default_context, parent_teardown);
	tcase_add_loop_test(tc, test_chan_blocking_on_own_context, 0, 2);
	suite_add_tcase(s, tc);

	/*
	 * Asynchronous calls from a GMainLoop: the transport on its own thread,
	 * then on the loop's own context (nothing may block).
	 */
	for (int own = 0; own < 2; own++) {
		tc = tcase_create(own ? "rpc-async-caller-context" : "rpc-async");
		tcase_set_timeout(tc, 60);
		tcase_add_checked_fixture(tc, own ? parent_setup_default_context : parent_setup,
					  parent_teardown);
		if (!own)
			tcase_add_test(tc, test_oneshot_callback_and_fd);
		tcase_add_test(tc, test_rpc_async_many);
		tcase_add_test(tc, test_rpc_async_host_dies);
		tcase_add_test(tc, test_rpc_async_cancel);
		suite_add_tcase(s, tc);
	}

	/* Faults: peers that die under load, bad messages. */
	tc = tcase_create("faults");
	tcase_set_timeout(tc, 240);
	tcase_add_checked_fixture(tc, parent_setup, parent_teardown);
	tcase_add_test(tc, test_flood_child_killed);
	tcase_add_test(tc, test_flood_child_killed_upstream_wire);
	tcase_add_test(tc, test_flood_child_killed_caller_context);
	tcase_add_test(tc, test_flood_child_killed_while_borrowed);
	tcase_add_test(tc, test_too_many_fds_fails_the_port);
	tcase_add_test(tc, test_too_many_fds_with_memfd_fails_the_port);
	tcase_add_test(tc, test_closed_fd_fails_the_port);
	tcase_add_test(tc, test_closed_fd_in_received_fails_the_port);
	tcase_add_test(tc, test_borrowed_closed_fd_fails_the_port);
	tcase_add_test(tc, test_borrowed_closed_fd_queued_fails_the_port);
	tcase_add_test(tc, test_add_closed_fd);
	tcase_add_test(tc, test_borrowed_fd);
	tcase_add_test(tc, test_borrowed_fd_backlog);
	tcase_add_test(tc, test_borrowed_fd_before_connect);
	tcase_add_test(tc, test_borrowed_fd_local_port);
	tcase_add_test(tc, test_borrowed_fd_failed_node);
	suite_add_tcase(s, tc);

	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_ENV);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
