/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target for the rpc envelope (rpc.c): a request as a server's
 * mesh_receiver_recv_rpc() takes it off its channel, or a reply as
 * mesh_rpc_call() parses it, made of another node's bytes and resources.
 *
 * Input: one control byte, then the message. Control bits 0-2: how many
 * /dev/null fds and bits 3-4 how many ports ride along, interleaved as in
 * libmeshpayload's fuzz-decode (so its corpus wraps into this one); bit 6:
 * one more port after them (a request's reply port); bit 5: the input or
 * reply type is meshtest.Plain rather than meshtest.Everything; bit 7: parse
 * as a reply rather than a request.
 *
 * A request that parses is answered (mesh_rpc_fail() or mesh_rpc_complete()
 * with an empty value) and the answer, read at the reply port's peer, must
 * parse back to what was sent. Checks: no crash, no leak (LeakSanitizer), no fd left open, an
 * error for every failure, and every port given away closed in the end
 * (its peer sees the close).
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "channel-private.h"
#include "test-messages.pb-c.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_PORTS 4

static void ignore_log(const gchar *domain, GLogLevelFlags level, const gchar *message,
		       gpointer user_data)
{
}

static void check(gboolean ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz-rpc: %s\n", what);
		abort();
	}
}

static int probe_lowest_free_fd(void)
{
	int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	check(fd >= 0, "cannot open /dev/null");
	close(fd);
	return fd;
}

/* Answers a parsed request (a failure or an empty value). */
static void answer(MeshRpc *rpc, gboolean fail, const ProtobufCMessageDescriptor *desc)
{
	if (fail) {
		GError *e = g_error_new_literal(MESH_ERROR, MESH_ERROR_REMOTE, "outer: inner");
		mesh_rpc_fail(rpc, e);
		g_error_free(e);
	} else {
		ProtobufCMessage *empty = malloc(desc->sizeof_message);
		check(empty != NULL, "out of memory");
		protobuf_c_message_init(desc, empty);
		mesh_rpc_complete(rpc, empty);
	}
}

/* An answer must parse back, as mesh_rpc_call() reads it off its oneshot. */
static void check_answer(MeshMessage *reply, gboolean fail, const ProtobufCMessageDescriptor *desc)
{
	ProtobufCMessage *back = NULL;
	GError *error = NULL;

	check(channel_unwrap(reply, NULL) == 0, "an answer's framing");
	gboolean ok = rpc_parse_reply(reply, desc, &back, &error);
	if (fail) {
		check(!ok && g_error_matches(error, MESH_ERROR, MESH_ERROR_REMOTE) &&
			      strcmp(error->message, "outer: inner") == 0,
		      "an rpc failure did not parse back");
		g_clear_error(&error);
	} else {
		check(ok && back && back->descriptor == desc, "an rpc reply did not parse back");
		mesh_payload_message_free(back);
	}
}

/*
 * Every port given away must be closed once the input is handled, and only
 * the reply port of a parsed request got a message: the answer. Returns how
 * many answers arrived.
 */
static unsigned check_peers(MeshPort **peers, size_t n, gboolean fail,
			    const ProtobufCMessageDescriptor *desc)
{
	unsigned answers = 0;

	for (size_t i = 0; i < n; i++) {
		MeshMessage *m;
		PortRecv r;
		while ((r = port_try_recv(peers[i], &m, NULL)) == PORT_RECV_MESSAGE) {
			check(answers++ == 0, "more than one answer");
			check_answer(m, fail, desc);
		}
		check(r == PORT_RECV_CLOSED, "a port given away was not closed");
		mesh_port_close(peers[i]);
	}
	return answers;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static gboolean init;
	if (!init) {
		g_log_set_handler("MeshRemote", G_LOG_LEVEL_MASK, ignore_log, NULL);
		init = TRUE;
	}
	if (size < 1)
		return 0;
	int lowest = probe_lowest_free_fd();

	uint8_t control = data[0];
	unsigned n_fds = control & 7, n_ports = (control >> 3) & 3;
	gboolean plain = control & 0x20, reply_port = control & 0x40, as_reply = control & 0x80;
	const ProtobufCMessageDescriptor *desc =
		plain ? &meshtest__plain__descriptor : &meshtest__everything__descriptor;
	data++, size--;

	MeshMessage *msg = mesh_message_new(data, size);
	MeshPort *peers[MAX_PORTS];
	size_t n_peers = 0;
	for (unsigned i = 0; i < n_fds + n_ports + (reply_port ? 1 : 0); i++) {
		if (i == n_fds + n_ports || (i % 2 == 1 && i / 2 < n_ports)) {
			MeshPort *a;
			mesh_port_new_pair(&a, &peers[n_peers++]);
			check(mesh_message_add_port_take(msg, a) >= 0, "add port");
		} else {
			int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
			check(fd >= 0 && mesh_message_add_fd_take(msg, fd) >= 0, "add fd");
		}
	}

	GError *error = NULL;
	gboolean answered = FALSE, fail = size % 2;
	if (as_reply) {
		ProtobufCMessage *out = NULL;
		if (rpc_parse_reply(msg, desc, &out, &error)) {
			check(out && out->descriptor == desc && !error, "a reply without a value");
			mesh_payload_message_free(out);
		} else {
			check(error && error->domain == MESH_ERROR, "a failed reply without an error");
			g_clear_error(&error);
		}
	} else {
		/* Through a channel, as a server receives it. */
		MeshSender *s;
		MeshReceiver *r;
		MeshRpc *rpc = NULL;
		mesh_channel_new(NULL, &s, &r);
		mesh_sender_send_message(s, msg);
		if (mesh_receiver_recv_rpc(r, desc, 0, &rpc, &error)) {
			check(mesh_rpc_get_input(rpc) && mesh_rpc_get_input(rpc)->descriptor == desc,
			      "a request without an input");
			check(mesh_receiver_get_n_dropped(r) == 0, "a parsed request was dropped");
			answer(rpc, fail, desc);
			answered = TRUE;
		} else {
			check(g_error_matches(error, MESH_ERROR, MESH_ERROR_EMPTY) &&
				      mesh_receiver_get_n_dropped(r) == 1,
			      "a malformed request was not dropped");
			g_clear_error(&error);
		}
		mesh_sender_free(s);
		mesh_receiver_free(r);
	}

	check(check_peers(peers, n_peers, fail, desc) == (answered ? 1 : 0),
	      "a parsed request's answer did not reach its reply port");
	check(probe_lowest_free_fd() == lowest, "an fd leaked");
	return 0;
}
