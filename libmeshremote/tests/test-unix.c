/* SPDX-License-Identifier: MIT */
/*
 * The Unix transport across real processes: a parent node and child
 * processes (unix-test-child) joined by SOCK_SEQPACKET socketpairs.
 */
#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <pal/pal.h>

#include "unix-test.h"

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
	pal_spawn_set_parent_death_signal(spawn, SIGKILL);
	ck_assert_int_eq(pal_spawn_run(spawn, &c->process), 0);
	pal_spawn_free(spawn);
	mesh_invitation_free(inv);
	return c;
}

static Child *spawn_child(const char *scenario, const char *arg)
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

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n - 1;
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

START_TEST(test_shutdown_delivers)
{
	Child *c = spawn_child("count", "1000");
	char text[16];
	for (int i = 0; i < 1000; i++) {
		snprintf(text, sizeof(text), "%d", i);
		expect_bytes(c->recv, text, strlen(text));
	}
	MeshMessage *end = test_recv_wait(c->recv, 20000);
	ck_assert(test_recv_is_end(end, RECV_END_CLOSED));
	ck_assert_int_eq(child_finish(c), 0);
}
END_TEST

START_TEST(test_100k_messages)
{
	enum { N = 100000 };
	Child *c = spawn_child("count", "100000");
	char text[16];
	for (int i = 0; i < N; i++) {
		snprintf(text, sizeof(text), "%d", i);
		expect_bytes(c->recv, text, strlen(text));
	}
	MeshMessage *end = test_recv_wait(c->recv, 20000);
	ck_assert(test_recv_is_end(end, RECV_END_CLOSED));
	ck_assert_int_eq(child_finish(c), 0);
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

/* A raw peer: the test writes packets by hand on the other end. */
static void hostile_case(gboolean (*attack)(int sock, const MeshPortId *port))
{
	Child *good = spawn_child("echo", NULL);
	int before = count_fds();
	int sv[2];
	MeshNodeId evil;
	MeshPortId mine, theirs;
	mesh_uuid_generate(&evil);
	mesh_uuid_generate(&mine);
	mesh_uuid_generate(&theirs);
	ck_assert_int_eq(pal_socketpair(SOCK_SEQPACKET, sv), 0);
	ck_assert(mesh_unix_node_connect_take(parent.unode, &evil, sv[0], NULL));
	MeshPort *p = mesh_node_add_port(parent.node, &mine, &evil, &theirs);
	TestRecv *r = test_recv_new(p);

	gboolean delivers = attack(sv[1], &mine);
	if (delivers)
		expect_bytes(r, "abc", 3);
	MeshMessage *end = test_recv_wait(r, 10000);
	ck_assert_msg(test_recv_is_end(end, RECV_END_FAILED), "the connection was not ended");
	close(sv[1]);
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
	mesh_event_write_header(pkt + 8, &h);
	memcpy(pkt + 8 + MESH_EVENT_HEADER_SIZE, "abc", 3);
	ck_assert_int_eq(send(sock, pkt, sizeof(pkt), 0), sizeof(pkt));
	/* ...so is a truncated event for our port (the connection stays)... */
	h.port_id = *port;
	mesh_event_write_header(pkt + 8, &h);
	ck_assert_int_eq(send(sock, pkt, sizeof(pkt) - 2, 0), sizeof(pkt) - 2);
	/* ...and one for our port is delivered; then an unknown packet type ends it. */
	h.port_id = *port;
	mesh_event_write_header(pkt + 8, &h);
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

START_TEST(test_port_from_child_to_child)
{
	/*
	 * Child A makes a port pair and sends one end to the parent while it
	 * keeps sending on the other; the parent passes that end to child B.
	 * B must see every message in order; A and B then talk directly (the
	 * leader, this process, introduces them) and B's "done" reaches A.
	 */
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

	/* Neither does one that writes junk: the server never reads. */
	int junk = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_eq(connect(junk, (struct sockaddr *)&addr, sizeof(addr)), 0);
	ck_assert_int_eq(send(junk, "junk junk junk", 14, MSG_NOSIGNAL), 14);

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
	tcase_add_test(tc, test_port_to_child);
	tcase_add_test(tc, test_shutdown_delivers);
	tcase_add_test(tc, test_100k_messages);
	tcase_add_test(tc, test_child_killed);
	tcase_add_test(tc, test_hostile_garbage);
	tcase_add_test(tc, test_hostile_short);
	tcase_add_test(tc, test_hostile_unsealed_memfd);
	tcase_add_test(tc, test_hostile_empty_memfd);
	tcase_add_test(tc, test_hostile_65_fds);
	tcase_add_test(tc, test_hostile_unknown_port);
	tcase_add_test(tc, test_not_seqpacket);
	tcase_add_test(tc, test_join_echo);
	tcase_add_test(tc, test_port_from_child_to_child);
	tcase_add_test(tc, test_dropped_invitation);
	tcase_add_test(tc, test_listener);
	tcase_add_test(tc, test_caller_context);
	tcase_add_test(tc, test_listener_limits);
	suite_add_tcase(s, tc);

	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_ENV);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
