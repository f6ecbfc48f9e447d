/* SPDX-License-Identifier: MIT */
/*
 * g_autoptr() for every type of libmeshremote and libmeshprocess that has a
 * free or unref function: each is declared with g_autoptr in a scope, and
 * what its release does is checked from outside the scope (a peer sees the
 * close, a socket file goes away, no fd is left open). Leaks are checked by
 * the asan setup and valgrind.
 */
#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <unistd.h>

#include <meshprocess/meshprocess.h>

#include "test-channel.pb-c.h"

#define WAIT_US (20 * G_USEC_PER_SEC)

static int count_fds(void)
{
	int n = 0;
	DIR *dir = opendir("/proc/self/fd");
	ck_assert_ptr_nonnull(dir);
	while (readdir(dir))
		n++;
	closedir(dir);
	return n;
}

/* The error the receiver made of @port ends with. */
static GError *port_end(MeshPort *port)
{
	g_autoptr(MeshReceiver) receiver = mesh_receiver_from_port(port, NULL);
	MeshMessage *msg = NULL;
	GError *error = NULL;
	ck_assert(!mesh_receiver_recv_message(receiver, WAIT_US, &msg, &error));
	return error;
}

START_TEST(test_autoptr_channels)
{
	MeshSender *s1, *s2;
	MeshReceiver *r1, *r2;
	MeshOneshotSender *os1, *os2;
	MeshOneshotReceiver *or1, *or2;
	MeshMessage *value = NULL;
	GError *error = NULL;

	mesh_channel_new(NULL, &s1, &r1);
	mesh_channel_new(NULL, &s2, &r2);
	mesh_oneshot_new(NULL, &os1, &or1);
	mesh_oneshot_new(NULL, &os2, &or2);
	{
		g_autoptr(MeshSender) sender = s1;
		g_autoptr(MeshReceiver) receiver = r2;
		g_autoptr(MeshOneshotSender) oneshot_sender = os1;
		g_autoptr(MeshOneshotReceiver) oneshot_receiver = or2;
		g_autoptr(MeshSender) none = NULL; /* NULL is left alone */
		ck_assert(sender && receiver && oneshot_sender && oneshot_receiver && !none);
	}
	MeshMessage *msg = NULL;
	ck_assert(!mesh_receiver_recv_message(r1, 0, &msg, &error));
	ck_assert(g_error_matches(error, MESH_ERROR, MESH_ERROR_CLOSED));
	g_clear_error(&error);
	ck_assert(mesh_sender_is_closed(s2));
	ck_assert(!mesh_oneshot_recv_message(or1, 0, &value, &error));
	ck_assert(g_error_matches(error, MESH_ERROR, MESH_ERROR_CLOSED));
	g_clear_error(&error); /* a final error consumed or1 */
	mesh_oneshot_send_message(os2, mesh_message_new("x", 1)); /* to nobody: dropped */
	mesh_receiver_free(r1);
	mesh_sender_free(s2);
}
END_TEST

START_TEST(test_autoptr_message_and_port)
{
	int pipefd[2];
	char c;
	MeshPort *a, *b;

	ck_assert_int_eq(pipe2(pipefd, O_CLOEXEC), 0);
	mesh_port_new_pair(&a, &b);
	{
		g_autoptr(MeshMessage) msg = mesh_message_new("hello", 5);
		ck_assert_int_eq(mesh_message_add_fd_take(msg, pipefd[1]), 0);
		g_autoptr(MeshPort) port = a;
		ck_assert_ptr_nonnull(port);
	}
	/* The message closed the write end; the port's peer sees it closed. */
	ck_assert_int_eq(read(pipefd[0], &c, 1), 0);
	close(pipefd[0]);
	GError *error = port_end(b);
	ck_assert(g_error_matches(error, MESH_ERROR, MESH_ERROR_CLOSED));
	g_error_free(error);
}
END_TEST

/* Calls Add on the channel in @data; returns the call's error. */
static gpointer call_thread(gpointer data)
{
	Chantest__Add *add = malloc(sizeof(*add));
	chantest__add__init(add);
	ProtobufCMessage *reply = NULL;
	GError *error = NULL;
	ck_assert(!mesh_rpc_call(data, &add->base, &chantest__sum__descriptor, WAIT_US, &reply,
				 &error));
	return error;
}

START_TEST(test_autoptr_rpc)
{
	MeshSender *sender;
	g_autoptr(MeshReceiver) receiver = NULL;
	GError *error = NULL;

	mesh_channel_new(NULL, &sender, &receiver);
	GThread *caller = g_thread_new("caller", call_thread, sender);
	{
		g_autoptr(MeshRpc) rpc = NULL;
		ck_assert(mesh_receiver_recv_rpc(receiver, &chantest__add__descriptor, WAIT_US, &rpc,
						 &error));
	}
	/* Dropped unanswered. */
	error = g_thread_join(caller);
	ck_assert(g_error_matches(error, MESH_ERROR, MESH_ERROR_CLOSED));
	g_error_free(error);
	mesh_sender_free(sender);
}
END_TEST

static void close_client(MeshPort *port, gpointer data)
{
	mesh_port_close(port);
}

/* A transport with its thread, an invitation, a listener and a p2p link, in scopes. */
static void unix_node_round(MeshNode *node)
{
	char *dir = g_dir_make_tmp("test-autoptr-XXXXXX", NULL);
	char *path = g_build_filename(dir, "sock", NULL);
	MeshPort *kept, *invited;
	GError *error = NULL;

	mesh_port_new_pair(&kept, &invited);
	{
		g_autoptr(MeshUnixNode) unode = mesh_unix_node_new(node, NULL);
		g_autoptr(MeshInvitation) invitation = NULL;
		ck_assert(mesh_unix_node_invite(unode, invited, -1, &invitation, &error));
		g_autoptr(MeshUnixListener) listener =
			mesh_unix_node_listen(unode, path, close_client, NULL, NULL, &error);
		ck_assert_ptr_nonnull(listener);
		ck_assert(g_file_test(path, G_FILE_TEST_EXISTS));
	}
	ck_assert(!g_file_test(path, G_FILE_TEST_EXISTS));
	/* The invitation was dropped unused: the invited node failed. */
	error = port_end(kept);
	ck_assert(g_error_matches(error, MESH_ERROR, MESH_ERROR_NODE_FAILURE));
	g_error_free(error);

	/* A point-to-point link over a socket whose other end we keep. */
	int sv[2];
	char buf[256];
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	mesh_port_new_pair(&kept, &invited);
	{
		g_autoptr(MeshP2pLink) link =
			mesh_p2p_link_new_take(node, sv[0], sv[0], invited, NULL, &error);
		ck_assert_ptr_nonnull(link);
	}
	/* Its fd is closed (after its hello, perhaps), its port too. */
	while (read(sv[1], buf, sizeof(buf)) > 0)
		;
	close(sv[1]);
	error = port_end(kept);
	ck_assert_ptr_nonnull(error);
	g_error_free(error);
	ck_assert_int_eq(rmdir(dir), 0);
	g_free(path);
	g_free(dir);
}

START_TEST(test_autoptr_nodes)
{
	g_autoptr(MeshNode) node = mesh_node_new();
	g_autoptr(GMainContext) context = g_main_context_new();
	MeshNodeId remote_id;
	MeshPortId port_id, peer_port_id;
	MeshPort *port;
	GError *error = NULL;

	mesh_uuid_generate(&remote_id);
	mesh_uuid_generate(&port_id);
	mesh_uuid_generate(&peer_port_id);
	{
		g_autoptr(MeshNode) ref = mesh_node_ref(node);
		g_autoptr(MeshRemoteNode) remote = mesh_node_add_remote(node, &remote_id);
		port = mesh_node_add_port(node, &port_id, &remote_id, &peer_port_id);
		ck_assert_ptr_nonnull(port);
		g_autoptr(MeshIoHook) hook = mesh_io_hook_new_for_context(context);
		ck_assert(ref && remote && hook);
	}
	/* The last handle on the remote node went: the port fails. */
	error = port_end(port);
	ck_assert(g_error_matches(error, MESH_ERROR, MESH_ERROR_NODE_FAILURE));
	g_error_free(error);
	ck_assert_uint_eq(mesh_node_count_ports(node), 0);

	/* The first round may leave GLib's own lazily made fds; no round leaves one of ours. */
	unix_node_round(node);
	int fds = count_fds();
	unix_node_round(node);
	ck_assert_int_eq(count_fds(), fds);
}
END_TEST

/* A mesh, a config, a worker registry, a worker host and a handle, in a scope. */
static void process_round(void)
{
	MeshPort *runner_port;
	GError *error = NULL;
	{
		g_autoptr(Mesh) mesh = mesh_new("autoptr", NULL, &error);
		ck_assert_ptr_nonnull(mesh);
		g_autoptr(MeshProcessConfig) config = mesh_process_config_new("host");
		g_autoptr(MeshWorkerRegistry) registry = mesh_worker_registry_new();
		g_autoptr(MeshWorkerHost) host = mesh_worker_host_new(&runner_port);
		g_autoptr(MeshWorkerHandle) handle = mesh_worker_host_start(host, "nobody", NULL);
		ck_assert(config && registry && handle);
	}
	/* The host (the launch channel's only sender) is gone. */
	g_autoptr(MeshReceiver) launches = mesh_receiver_from_port(runner_port, NULL);
	MeshMessage *request = NULL;
	ck_assert(mesh_receiver_recv_message(launches, WAIT_US, &request, &error));
	mesh_message_free(request); /* the launch of "nobody" */
	ck_assert(!mesh_receiver_recv_message(launches, WAIT_US, &request, &error));
	ck_assert(g_error_matches(error, MESH_ERROR, MESH_ERROR_CLOSED));
	g_error_free(error);
}

START_TEST(test_autoptr_process)
{
	process_round();
	int fds = count_fds();
	process_round();
	ck_assert_int_eq(count_fds(), fds);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("autoptr");
	TCase *tc = tcase_create("autoptr");
	tcase_add_test(tc, test_autoptr_channels);
	tcase_add_test(tc, test_autoptr_message_and_port);
	tcase_add_test(tc, test_autoptr_rpc);
	tcase_add_test(tc, test_autoptr_nodes);
	tcase_add_test(tc, test_autoptr_process);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
