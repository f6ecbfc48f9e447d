/* SPDX-License-Identifier: MIT */
/*
 * The child side of the Unix transport tests. Usage:
 *   unix-test-child NODE PARENT_NODE PORT PARENT_PORT SCENARIO
 * The connection to the parent is fd 3. Scenarios:
 *   echo      send every message back (bytes, fds and ports) until closed
 *   count N   send N numbered messages, close, shut down gracefully
 *   peer      the first message carries a port: send "hello from child" on
 *             it, then echo on it until closed
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

int main(int argc, char **argv)
{
	MeshNodeId me, parent;
	MeshPortId my_port, parent_port;

	if (argc < 6 || !uuid_from_hex(argv[1], &me) || !uuid_from_hex(argv[2], &parent) ||
	    !uuid_from_hex(argv[3], &my_port) || !uuid_from_hex(argv[4], &parent_port)) {
		fprintf(stderr, "usage: unix-test-child NODE PARENT PORT PARENT_PORT SCENARIO\n");
		return 64;
	}
	MeshNode *node = mesh_node_new_with_id(&me);
	MeshUnixNode *unode = mesh_unix_node_new(node, NULL);
	GError *error = NULL;
	if (!mesh_unix_node_connect_take(unode, &parent, 3, &error)) {
		fprintf(stderr, "child: %s\n", error->message);
		return 1;
	}
	MeshPort *port = mesh_node_add_port(node, &my_port, &parent, &parent_port);
	TestRecv *r = test_recv_new(port);
	int status = 0;

	if (strcmp(argv[5], "echo") == 0) {
		status = run_echo(r, port);
	} else if (strcmp(argv[5], "count") == 0 && argc > 6) {
		int n = atoi(argv[6]);
		char text[32];
		for (int i = 0; i < n; i++) {
			snprintf(text, sizeof(text), "%d", i);
			port_send_bytes(port, text);
		}
	} else if (strcmp(argv[5], "peer") == 0) {
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
	} else {
		fprintf(stderr, "child: unknown scenario %s\n", argv[5]);
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
