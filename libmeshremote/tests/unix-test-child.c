/* SPDX-License-Identifier: MIT */
/*
 * The child side of the Unix transport tests. Usage:
 *   unix-test-child NODE PARENT_NODE PORT PARENT_PORT SCENARIO
 * The connection to the parent is fd 3. Scenarios:
 *   echo      send every message back (bytes, fds and ports) until closed
 *   count N   send N numbered messages, close, shut down gracefully
 *   peer      the first message carries a port: send "hello from child" on
 *             it, then echo on it until closed
 *   peerfail  as peer; then the bootstrap port must have failed (status 9 if
 *             not): the parent failed it with a message it could not send
 *   origin N  make a port pair, send one end to the parent, send N numbered
 *             messages on the other, wait for "done" on it
 *   sink N    the first message carries a port: receive N numbered messages
 *             on it in order, answer "done"
 *   mover     says "ready"; the first message carries two ports: after a
 *             message on the second, send the first inside a message on it
 *             (a move to a third node), say "sent", and wait to be killed
 *   owner     says "ready"; the first message carries a port: send "hi" on
 *             it; a message on it carries port Z: say "hello" on Z, gather what comes until its end, and
 *             report on the bootstrap port: "closed A,B,..", "failed",
 *             "noport" (no Z came, its carrier failed) or "timeout"
 *   drain     receive and drop every message until closed or failed
 *   rpc       the first message carries the receiver of an rpc channel:
 *             serve chantest Add requests (see run_rpc()) until closed
 *   chan      the first message carries four channel ends (UNIX_TEST_CHAN_*):
 *             a receiver of commands, read with blocking receives, and three
 *             senders; see run_chan() for the commands. Ends when every
 *             sender of the commands is gone.
 * Or: unix-test-child join NODE PORT LEADER LEADER_PORT SCENARIO [N]: join
 * the mesh with the invitation whose socket is fd 3.
 * Or: unix-test-child bypath PATH SCENARIO [N]: join through a listener.
 */
#include <signal.h>
#include <unistd.h>

#include "test-channel.pb-c.h"
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

/*
 * Says "ready", then reads a port it is given: "done", then its close; or,
 * with @expect_fail, only the port's failure.
 */
static int run_reader(TestRecv *r, MeshPort *bootstrap, gboolean expect_fail)
{
	port_send_bytes(bootstrap, "ready");
	MeshPort *p = wait_port(r);
	if (!p)
		return 3;
	TestRecv *rp = test_recv_new(p);
	int status = 0;
	MeshMessage *msg = test_recv_wait(rp, 60000);
	if (expect_fail) {
		status = test_recv_is_end(msg, RECV_END_FAILED) ? 0 : 10;
		if (test_recv_is_message(msg))
			mesh_message_free(msg);
		test_recv_free(rp);
		mesh_port_close(p);
		return status;
	}
	if (!test_recv_is_message(msg)) {
		status = 4;
	} else {
		size_t size;
		const uint8_t *data = mesh_message_get_data(msg, &size);
		status = size == 4 && memcmp(data, "done", 4) == 0 ? 0 : 6;
		mesh_message_free(msg);
	}
	if (status == 0) {
		msg = test_recv_wait(rp, 60000);
		if (!test_recv_is_end(msg, RECV_END_CLOSED))
			status = 5;
		if (test_recv_is_message(msg))
			mesh_message_free(msg);
	}
	test_recv_free(rp);
	mesh_port_close(p);
	return status;
}

static int run_mover(TestRecv *r, MeshPort *bootstrap)
{
	port_send_bytes(bootstrap, "ready");
	MeshMessage *msg = test_recv_wait(r, 60000);
	if (!test_recv_is_message(msg) || mesh_message_get_n_resources(msg) != 2)
		return 3;
	MeshPort *x = mesh_message_steal_port(msg, 0);
	MeshPort *carrier = mesh_message_steal_port(msg, 1);
	mesh_message_free(msg);
	/* The owner's "hi": the connection to its node is up. */
	TestRecv *rc = test_recv_new(carrier);
	msg = test_recv_wait(rc, 60000);
	if (!test_recv_is_message(msg))
		return 4;
	mesh_message_free(msg);
	MeshMessage *move = mesh_message_new(NULL, 0);
	mesh_message_add_port_take(move, x);
	port_send(carrier, move, FALSE);
	port_send_bytes(bootstrap, "sent");
	for (;;)
		pause(); /* the parent kills us, at some point of the move */
	return 0;
}

static int run_owner(TestRecv *r, MeshPort *bootstrap)
{
	port_send_bytes(bootstrap, "ready");
	MeshPort *carrier = wait_port(r);
	const char *report = NULL;
	GString *got = g_string_new("closed ");
	if (!carrier)
		return 3;
	TestRecv *rc = test_recv_new(carrier);
	port_send_bytes(carrier, "hi");
	MeshPort *z = wait_port(rc);
	if (!z) {
		report = "noport";
	} else {
		TestRecv *rz = test_recv_new(z);
		port_send_bytes(z, "hello");
		/* Bounded: a port that waits forever is what the test looks for. */
		for (;;) {
			MeshMessage *msg = test_recv_wait(rz, 5000);
			if (!msg) {
				report = "timeout";
				break;
			}
			if (test_recv_is_end(msg, RECV_END_FAILED)) {
				report = "failed";
				break;
			}
			if (test_recv_is_end(msg, RECV_END_CLOSED)) {
				report = got->str;
				break;
			}
			size_t size;
			const uint8_t *data = mesh_message_get_data(msg, &size);
			if (got->str[got->len - 1] != ' ')
				g_string_append_c(got, ',');
			g_string_append_len(got, (const char *)data, (gssize)size);
			mesh_message_free(msg);
		}
		test_recv_free(rz);
		mesh_port_close(z);
	}
	port_send_bytes(bootstrap, report);
	g_string_free(got, TRUE);
	test_recv_free(rc);
	mesh_port_close(carrier);
	return 0;
}

/*
 * One command's text: a word and a number. Commands, received on the
 * command channel with blocking receives (the node lends its I/O):
 *   p N      reply "p N" on the first sender
 *   q N      reply "q N" on the third sender
 *   pc N     reply "p N", then "c K" on the second sender (K counts up)
 *   r N      send "raw N" on the bootstrap port, then reply "p N"
 *   burst N  send N side messages "c K" on the second sender
 *   pn N     send "p 0" .. "p N-1" on the first sender
 *   both N   send "p I" on the first and "q I" on the third, I from 0 to N-1
 *   sleep N  sleep N ms without reading
 *   k N      count: N must be the number of "k" commands since the last "kdone"
 *   kdone N  N "k" came in order: send "c K" on the second sender, else "bad"
 *   o N      the command carries a oneshot sender: send "o N" on it
 */
static int run_chan(TestRecv *r, MeshPort *bootstrap)
{
	MeshMessage *msg = test_recv_wait(r, 60000);
	MeshReceiver *commands;
	MeshSender *senders[3];
	GError *error = NULL;
	char word[16], text[48];
	unsigned n, side = 0, counted = 0;
	gboolean count_ok = TRUE;
	int status = 0;

	if (!test_recv_is_message(msg))
		return 3;
	if (mesh_message_get_n_resources(msg) != UNIX_TEST_CHAN_PORTS) {
		mesh_message_free(msg);
		return 4;
	}
	commands = mesh_receiver_from_port(mesh_message_steal_port(msg, UNIX_TEST_CHAN_COMMANDS),
					   NULL);
	for (int i = 0; i < 3; i++)
		senders[i] = mesh_sender_from_port(
			mesh_message_steal_port(msg, UNIX_TEST_CHAN_REPLIES + i), NULL);
	mesh_message_free(msg);

	for (;;) {
		size_t size;
		const uint8_t *data;

		if (!mesh_receiver_recv_message(commands, -1, &msg, &error)) {
			if (!g_error_matches(error, MESH_ERROR, MESH_ERROR_CLOSED)) {
				fprintf(stderr, "child: commands: %s\n", error->message);
				status = 20;
			}
			g_clear_error(&error);
			break;
		}
		data = mesh_message_get_data(msg, &size);
		size = MIN(size, sizeof(text) - 1);
		memcpy(text, data, size);
		text[size] = '\0';
		MeshPort *attached = mesh_message_get_n_resources(msg) == 1
					     ? mesh_message_steal_port(msg, 0)
					     : NULL;
		mesh_message_free(msg);
		if (sscanf(text, "%15s %u", word, &n) != 2) {
			fprintf(stderr, "child: bad command \"%s\"\n", text);
			status = 21;
			break;
		}
		if (strcmp(word, "p") == 0 || strcmp(word, "q") == 0) {
			MeshSender *to = senders[word[0] == 'p' ? 0 : 2];
			mesh_sender_send_message(to, mesh_message_new(text, strlen(text)));
		} else if (strcmp(word, "pc") == 0) {
			g_snprintf(text, sizeof(text), "p %u", n);
			mesh_sender_send_message(senders[0], mesh_message_new(text, strlen(text)));
			g_snprintf(text, sizeof(text), "c %u", side++);
			mesh_sender_send_message(senders[1], mesh_message_new(text, strlen(text)));
		} else if (strcmp(word, "r") == 0) {
			g_snprintf(text, sizeof(text), "raw %u", n);
			port_send_bytes(bootstrap, text);
			g_snprintf(text, sizeof(text), "p %u", n);
			mesh_sender_send_message(senders[0], mesh_message_new(text, strlen(text)));
		} else if (strcmp(word, "burst") == 0) {
			for (unsigned i = 0; i < n; i++) {
				g_snprintf(text, sizeof(text), "c %u", side++);
				mesh_sender_send_message(senders[1],
							 mesh_message_new(text, strlen(text)));
			}
		} else if (strcmp(word, "pn") == 0 || strcmp(word, "both") == 0) {
			gboolean both = word[0] == 'b';
			for (unsigned i = 0; i < n; i++) {
				g_snprintf(text, sizeof(text), "p %u", i);
				mesh_sender_send_message(senders[0],
							 mesh_message_new(text, strlen(text)));
				if (!both)
					continue;
				g_snprintf(text, sizeof(text), "q %u", i);
				mesh_sender_send_message(senders[2],
							 mesh_message_new(text, strlen(text)));
			}
		} else if (strcmp(word, "o") == 0 && attached) {
			MeshOneshotSender *os = mesh_oneshot_sender_from_port(attached, NULL);
			attached = NULL;
			mesh_oneshot_send_message(os, mesh_message_new(text, strlen(text)));
		} else if (strcmp(word, "sleep") == 0) {
			g_usleep(n * 1000);
		} else if (strcmp(word, "k") == 0) {
			count_ok = count_ok && n == counted;
			counted++;
		} else if (strcmp(word, "kdone") == 0) {
			if (count_ok && n == counted)
				g_snprintf(text, sizeof(text), "c %u", side++);
			else
				g_snprintf(text, sizeof(text), "bad %u of %u", counted, n);
			mesh_sender_send_message(senders[1], mesh_message_new(text, strlen(text)));
			counted = 0;
			count_ok = TRUE;
		} else {
			fprintf(stderr, "child: unknown command \"%s\"\n", text);
			mesh_port_close(attached);
			status = 22;
			break;
		}
		if (attached)
			mesh_port_close(attached);
	}
	for (int i = 0; i < 3; i++)
		mesh_sender_free(senders[i]);
	mesh_receiver_free(commands);
	return status;
}

/*
 * Serves chantest Add requests with blocking receives, in order:
 *   a = UNIX_TEST_RPC_FAIL     fail with "outer: inner"
 *   a = UNIX_TEST_RPC_DROP     drop the request (its caller: closed)
 *   a = UNIX_TEST_RPC_HOLD     keep it unanswered
 *   a = UNIX_TEST_RPC_DIE      SIGKILL this process (held requests in flight)
 *   a = UNIX_TEST_RPC_RELEASE  answer the held ones (Sum 0), then this one
 *   otherwise                  reply Sum{a + b}
 */
static int run_rpc(TestRecv *r)
{
	MeshPort *port = wait_port(r);
	GPtrArray *held = g_ptr_array_new();
	GError *error = NULL;
	MeshRpc *rpc;
	int status = 0;

	if (!port)
		return 3;
	MeshReceiver *requests = mesh_receiver_from_port(port, NULL);
	while (mesh_receiver_recv_rpc(requests, &chantest__add__descriptor, -1, &rpc, &error)) {
		Chantest__Add *add = (Chantest__Add *)mesh_rpc_get_input(rpc);
		Chantest__Sum *sum = malloc(sizeof(*sum));
		chantest__sum__init(sum);
		switch (add->a) {
		case UNIX_TEST_RPC_FAIL:
			g_set_error(&error, MESH_ERROR, MESH_ERROR_REMOTE, "outer: inner");
			mesh_rpc_fail(rpc, error);
			g_clear_error(&error);
			free(sum);
			break;
		case UNIX_TEST_RPC_DROP:
			mesh_rpc_free(rpc);
			free(sum);
			break;
		case UNIX_TEST_RPC_HOLD:
			g_ptr_array_add(held, rpc);
			free(sum);
			break;
		case UNIX_TEST_RPC_DIE:
			kill(getpid(), SIGKILL);
			break;
		case UNIX_TEST_RPC_RELEASE:
			for (guint i = 0; i < held->len; i++) {
				Chantest__Sum *zero = malloc(sizeof(*zero));
				chantest__sum__init(zero);
				mesh_rpc_complete(held->pdata[i], &zero->base);
			}
			g_ptr_array_set_size(held, 0);
			sum->v = add->a + add->b;
			mesh_rpc_complete(rpc, &sum->base);
			break;
		default:
			sum->v = add->a + add->b;
			mesh_rpc_complete(rpc, &sum->base);
			break;
		}
	}
	if (!g_error_matches(error, MESH_ERROR, MESH_ERROR_CLOSED)) {
		fprintf(stderr, "child: rpc requests: %s\n", error->message);
		status = 20;
	}
	g_clear_error(&error);
	g_ptr_array_set_free_func(held, (GDestroyNotify)mesh_rpc_free);
	g_ptr_array_free(held, TRUE);
	mesh_receiver_free(requests);
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
		const char *ext = getenv("UNIX_TEST_EXTENSIONS");
		if (ext)
			mesh_invitation_set_extensions(inv, (guint)strtoul(ext, NULL, 10));
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
	} else if (strcmp(scenario, "peer") == 0 || strcmp(scenario, "peerfail") == 0) {
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
		if (status == 0 && strcmp(scenario, "peerfail") == 0) {
			/* Nothing else came on the bootstrap port: only its failure. */
			msg = test_recv_wait(r, 20000);
			if (!test_recv_is_end(msg, RECV_END_FAILED))
				status = 9;
			if (test_recv_is_message(msg))
				mesh_message_free(msg);
		}
	} else if (strcmp(scenario, "origin") == 0 && scenario_arg) {
		status = run_origin(r, port, atoi(scenario_arg));
	} else if (strcmp(scenario, "sink") == 0 && scenario_arg) {
		status = run_sink(r, atoi(scenario_arg));
	} else if (strcmp(scenario, "reader") == 0) {
		status = run_reader(r, port, scenario_arg && strcmp(scenario_arg, "fail") == 0);
	} else if (strcmp(scenario, "drain") == 0) {
		for (;;) {
			MeshMessage *msg = test_recv_wait(r, 60000);
			if (!test_recv_is_message(msg))
				break;
			mesh_message_free(msg);
		}
	} else if (strcmp(scenario, "chan") == 0) {
		status = run_chan(r, port);
	} else if (strcmp(scenario, "rpc") == 0) {
		status = run_rpc(r);
	} else if (strcmp(scenario, "mover") == 0) {
		status = run_mover(r, port);
	} else if (strcmp(scenario, "owner") == 0) {
		status = run_owner(r, port);
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
