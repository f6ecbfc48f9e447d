/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target for the channel framing parser (message_unwrap_channel() in
 * message.c): a channel message as it arrives from another node, with its
 * resources, then decoded as a typed receiver would.
 *
 * Input: one control byte, then the event payload. Control bits 0-2: how
 * many /dev/null fds and bits 3-4 how many ports ride along, interleaved as
 * in libmeshpayload's fuzz-decode (so its corpus wraps into this one); bit 7:
 * one more port after them (a new sender's port comes alone); bit 5: decode
 * as meshtest.Plain rather than meshtest.Everything; bit 6: the bytes are in
 * the message's own read-only block (as from a mapping: unwrapping looks
 * past the framing) rather than in a buffer of their own (unwrapping moves
 * them).
 *
 * Checks: no crash, no leak (LeakSanitizer), no fd left open, every port
 * given away closed in the end; a failure has an error; and what unwraps
 * frames back (message_wire_framing()) to the same field and body.
 */
#include "fuzz-common.h"
#include "test-messages.pb-c.h"


#define MAX_PORTS 4

static void check(gboolean ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz-framing: %s\n", what);
		abort();
	}
}

/*
 * What unwraps must frame back to the bytes it came from: the same field,
 * and the body is the rest. The head may differ: varints may have come in a
 * longer form than the one written, and field 1 with wire type 6 and a
 * resource count of 0 is written with wire type 2.
 */
static void check_reframes(MeshMessage *msg, const uint8_t *data, size_t size)
{
	uint8_t head[24];
	size_t k = 0, n;

	if (size == 0)
		return; /* field 1 omitted: frames as "0a 00" */
	check(message_wire_framing(msg, head, &k, NULL) == 0, "framing failed");
	const uint8_t *body = mesh_message_get_data(msg, &n);
	check(k >= 1 && k + n <= size && head[0] >> 3 == data[0] >> 3 &&
		      memcmp(body, data + size - n, n) == 0,
	      "what unwrapped frames back to other bytes");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_quiet_logs();
	if (size < 1)
		return 0;
	int lowest = fuzz_lowest_free_fd();

	uint8_t control = data[0];
	unsigned n_fds = control & 7, n_ports = (control >> 3) & 3, extra = control >> 7;
	const ProtobufCMessageDescriptor *desc =
		control & 0x20 ? &meshtest__plain__descriptor : &meshtest__everything__descriptor;
	data++, size--;

	MeshPayloadResources *res = NULL;
	MeshPort *peers[MAX_PORTS];
	size_t n_peers = 0;
	if (n_fds + n_ports + extra)
		res = mesh_payload_resources_new();
	for (unsigned i = 0; i < n_fds + n_ports + extra; i++) {
		if (i == n_fds + n_ports || (i % 2 == 1 && i / 2 < n_ports)) {
			MeshPort *a;
			mesh_port_new_pair(&a, &peers[n_peers++]);
			check(mesh_payload_resources_append_port_take(res, mesh_port_as_object(a)) >= 0,
			      "add port");
		} else {
			int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
			check(fd >= 0 && mesh_payload_resources_append_fd_take(res, fd) >= 0, "add fd");
		}
	}
	MeshMessage *msg;
	if (control & 0x40)
		msg = message_new_bytes_copy(data, size, res, MESH_WRAP_WIRE);
	else
		msg = message_new_bytes_take(size ? g_memdup2(data, size) : NULL, size, res,
					     MESH_WRAP_WIRE);

	GError *error = NULL;
	if (message_unwrap_channel(msg, &error) < 0) {
		check(g_error_matches(error, MESH_ERROR, MESH_ERROR_CORRUPTION), "no error");
		g_clear_error(&error);
		mesh_message_free(msg);
	} else if (msg->wrap == MESH_WRAP_PORT) {
		check_reframes(msg, data, size);
		MeshPort *port = mesh_message_steal_port(msg, 0);
		check(port != NULL, "a new sender without its port");
		mesh_port_close(port);
		mesh_message_free(msg);
	} else {
		check(msg->wrap == MESH_WRAP_FIELD1, "unwrapped into something else");
		check_reframes(msg, data, size);
		ProtobufCMessage *typed = mesh_message_into_typed(msg, desc, &error);
		check((typed != NULL) == (error == NULL), "a typed decode without a result");
		g_clear_error(&error);
		mesh_payload_message_free(typed);
	}

	for (size_t i = 0; i < n_peers; i++) {
		MeshMessage *m = NULL;
		check(port_try_recv(peers[i], &m, NULL) == PORT_RECV_CLOSED,
		      "a port given away was not closed");
		mesh_port_close(peers[i]);
	}
	check(fuzz_lowest_free_fd() == lowest, "an fd leaked");
	return 0;
}
