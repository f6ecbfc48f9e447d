/* SPDX-License-Identifier: MIT */
/*
 * The child side of the Unix transport tests. Usage:
 *   unix-test-child NODE PARENT_NODE PORT PARENT_PORT SCENARIO
 * The connection to the parent is fd 3. Scenarios:
 *   echo      send every message back (bytes, fds and ports) until closed
 *   count N   send N numbered messages, close, shut down gracefully
 *   peer      the first message carries a port: send "hello from child" on
 *             it, then echo on it until closed
 *   origin N  make a port pair, send one end to the parent, send N numbered
 *             messages on the other, wait for "done" on it
 *   sink N    the first message carries a port: receive N numbered messages
 *             on it in order, answer "done"
 * Or: unix-test-child join NODE PORT LEADER LEADER_PORT SCENARIO [N]: join
 * the mesh with the invitation whose socket is fd 3.
 * Or: unix-test-child bypath PATH SCENARIO [N]: join through a listener.
 */
#include <unistd.h>

#include "unix-test.h"

static int run_echo(TestRecv *r, MeshPort *port)
{
	for (;;) {
		MeshMessage *msg = test_recv_wait(r, 60000);
		if (!msg || test_recv_is_end(msg, RECV_END_FAILED))
			return 2;
		if (test_recv_is_end(msg, RECV_END_CLOSED))
			return 0;
		msg->wrap = MESH_WRAP_NONE; /* send back exactly the bytes that came */
		port_send(port, msg, FALSE);
	}
}

static MeshPort *wait_port(TestRecv *r)
{
	MeshMessage *msg = test_recv_wait(r, 60000);
	if (!test_recv_is_message(msg))
		return NULL;
	MeshPort *port = mesh_message_steal_port(msg, 0);
	mesh_message_free(msg);
	return port;
}

static int run_origin(TestRecv *r, MeshPort *port, int n)
{
	MeshPort *a1, *a2;
	char text[32];
	mesh_port_new_pair(&a1, &a2);
	MeshMessage *msg = mesh_message_new(NULL, 0);
	mesh_message_add_port_take(msg, a2);
	port_send(port, msg, FALSE);
	TestRecv *ra = test_recv_new(a1);
	for (int i = 0; i < n; i++) {
		snprintf(text, sizeof(text), "%d", i);
		port_send_bytes(a1, text);
	}
	msg = test_recv_wait(ra, 60000);
	int status = test_recv_is_message(msg) ? 0 : 5;
	if (status == 0) {
		size_t size;
		const uint8_t *data = mesh_message_get_data(msg, &size);
		status = size == 4 && memcmp(data, "done", 4) == 0 ? 0 : 6;
		mesh_message_free(msg);
	}
	test_recv_free(ra);
	mesh_port_close(a1);
	return status;
}

static int run_sink(TestRecv *r, int n)
{
	MeshPort *p = wait_port(r);
	char text[32];
	if (!p)
		return 3;
	TestRecv *rp = test_recv_new(p);
	int status = 0;
	for (int i = 0; i < n && status == 0; i++) {
		MeshMessage *msg = test_recv_wait(rp, 60000);
		if (!test_recv_is_message(msg)) {
			status = 7;
			break;
		}
		size_t size;
		const uint8_t *data = mesh_message_get_data(msg, &size);
		snprintf(text, sizeof(text), "%d", i);
		if (size != strlen(text) || memcmp(data, text, size) != 0)
			status = 8;
		mesh_message_free(msg);
	}
	port_send_bytes(p, "done");
	test_recv_free(rp);
	mesh_port_close(p);
	return status;
}

int main(int argc, char **argv)
{
	MeshNodeId me, parent;
	MeshPortId my_port, parent_port;
	MeshUnixNode *unode;
	MeshNode *node;
	MeshPort *port;
	GError *error = NULL;
	gboolean joined = argc > 1 && strcmp(argv[1], "join") == 0;
	gboolean bypath = argc > 3 && strcmp(argv[1], "bypath") == 0;
	const char *scenario, *scenario_arg;

	if (bypath) {
		unode = mesh_unix_node_join_by_path(argv[2], NULL, 20 * G_USEC_PER_SEC, &port,
						    &error);
		if (!unode) {
			fprintf(stderr, "child: %s\n", error->message);
			return 1;
		}
		node = mesh_node_ref(mesh_unix_node_get_node(unode));
		scenario = argv[3];
		scenario_arg = argc > 4 ? argv[4] : NULL;
		goto run;
	}
	if (joined) {
		argv++;
		argc--;
	}
	if (argc < 6 || !uuid_from_hex(argv[1], &me) || !uuid_from_hex(argv[2], &parent) ||
	    !uuid_from_hex(argv[3], &my_port) || !uuid_from_hex(argv[4], &parent_port)) {
		fprintf(stderr, "usage: unix-test-child [join] NODE PARENT PORT PARENT_PORT SCENARIO\n");
		return 64;
	}
	if (joined) {
		MeshInvitation *inv = mesh_invitation_new_take(&me, &my_port, &parent, &parent_port, 3);
		unode = mesh_unix_node_join(inv, NULL, 20 * G_USEC_PER_SEC, &port, &error);
		if (!unode) {
			fprintf(stderr, "child: %s\n", error->message);
			return 1;
		}
		node = mesh_node_ref(mesh_unix_node_get_node(unode));
	} else {
		node = mesh_node_new_with_id(&me);
		unode = mesh_unix_node_new(node, NULL);
		/* The port before the connection: events for it may come at once. */
		MeshRemoteNode *h = mesh_node_add_remote(node, &parent);
		port = mesh_node_add_port(node, &my_port, &parent, &parent_port);
		if (!mesh_unix_node_connect_take(unode, &parent, 3, &error)) {
			fprintf(stderr, "child: %s\n", error->message);
			return 1;
		}
		mesh_remote_node_unref(h);
	}
	scenario = argv[5];
	scenario_arg = argc > 6 ? argv[6] : NULL;
run:;
	TestRecv *r = test_recv_new(port);
	int status = 0;

	if (strcmp(scenario, "echo") == 0) {
		status = run_echo(r, port);
	} else if (strcmp(scenario, "count") == 0 && scenario_arg) {
		int n = atoi(scenario_arg);
		char text[32];
		for (int i = 0; i < n; i++) {
			snprintf(text, sizeof(text), "%d", i);
			port_send_bytes(port, text);
		}
	} else if (strcmp(scenario, "peer") == 0) {
		MeshMessage *msg = test_recv_wait(r, 60000);
		if (!test_recv_is_message(msg))
			return 3;
		MeshPort *other = mesh_message_steal_port(msg, 0);
		mesh_message_free(msg);
		if (!other)
			return 4;
		TestRecv *ro = test_recv_new(other);
		port_send_bytes(other, "hello from child");
		status = run_echo(ro, other);
		test_recv_free(ro);
		mesh_port_close(other);
	} else if (strcmp(scenario, "origin") == 0 && scenario_arg) {
		status = run_origin(r, port, atoi(scenario_arg));
	} else if (strcmp(scenario, "sink") == 0 && scenario_arg) {
		status = run_sink(r, atoi(scenario_arg));
	} else {
		fprintf(stderr, "child: unknown scenario %s\n", scenario);
		return 64;
	}
	test_recv_free(r);
	mesh_port_close(port);
	if (!mesh_unix_node_shutdown(unode, 10 * G_USEC_PER_SEC))
		fprintf(stderr, "child: shutdown was not clean\n");
	mesh_unix_node_free(unode);
	mesh_node_unref(node);
	return status;
}
