/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target for a cancel context from another node: the bytes of a
 * mesh_remote.CancelContext field (cancel.proto) with 0-3 ports, decoded
 * and made a context (mesh_cancel_context_from_field()).
 *
 * Input: one control byte (bits 0-1: how many ports ride along; bit 2: one
 * /dev/null fd after them, a resource of the wrong kind), then the bytes.
 * A context that comes out is looked at, cloned, re-encoded (the bytes must
 * decode again) and freed; then every port given away must be closed (its
 * peer sees the end) and no fd left open.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "channel-private.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(gboolean ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz-cancel: %s\n", what);
		abort();
	}
}

static int null_fd = -1;

static int lowest_free_fd(void)
{
	int fd = dup(null_fd);
	check(fd >= 0, "dup");
	close(fd);
	return fd;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	MeshPort *peers[3];
	MeshPayloadLimits limits = {.max_size = 1 << 16, .max_depth = 16, .max_resources = 8};

	if (null_fd < 0) {
		null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
		check(null_fd >= 0, "cannot open /dev/null");
	}
	if (size < 1)
		return 0;
	int lowest = lowest_free_fd();
	unsigned n_ports = data[0] & 3;
	gboolean fd = (data[0] & 4) != 0;
	data++, size--;
	if (n_ports > 3)
		n_ports = 3;

	MeshPayloadResources *res = mesh_payload_resources_new();
	for (unsigned i = 0; i < n_ports; i++) {
		MeshPort *theirs;
		mesh_port_new_pair(&peers[i], &theirs);
		check(mesh_payload_resources_append_port_take(res, mesh_port_as_object(theirs)) >= 0,
		      "append port");
	}
	if (fd)
		check(mesh_payload_resources_append_fd(res, null_fd) >= 0, "append fd");

	ProtobufCMessage *msg = NULL;
	MeshPayloadError err;
	if (mesh_payload_decode(&mesh_remote__cancel_context__descriptor, data, size, res, &limits,
				&msg, &err) == 0) {
		GError *error = NULL;
		MeshCancelContext *ctx =
			mesh_cancel_context_from_field((MeshRemote__CancelContext *)msg, &error);
		check((ctx != NULL) == (error == NULL), "a result and an error, or neither");
		g_clear_error(&error);
		if (ctx) {
			MeshCancelReason reason;
			MeshDeadline dl;
			mesh_cancel_context_is_cancelled(ctx, &reason);
			mesh_cancel_context_get_deadline(ctx, &dl);
			MeshCancelContext *clone = mesh_cancel_context_clone(ctx);
			mesh_cancel_context_free(clone);
			MeshRemote__CancelContext *f = mesh_cancel_context_into_field(ctx);
			MeshPayloadResources *res2 = mesh_payload_resources_new();
			uint8_t *bytes = NULL;
			size_t n = 0;
			ProtobufCMessage *back = NULL;
			check(mesh_payload_encode_alloc(&f->base, &bytes, &n, res2, &err) == 0,
			      "re-encode");
			check(mesh_payload_decode(&mesh_remote__cancel_context__descriptor, bytes, n,
						  res2, NULL, &back, &err) == 0,
			      "our own encoding does not decode");
			mesh_payload_message_free(back);
			mesh_payload_message_free(&f->base);
			mesh_payload_resources_free(res2);
			free(bytes);
		}
		mesh_payload_message_free(msg);
	}
	mesh_payload_resources_free(res);

	/* Every port we gave away is closed now: its peer saw the end. */
	for (unsigned i = 0; i < n_ports; i++) {
		MeshMessage *m = NULL;
		PortRecv r;
		while ((r = port_try_recv(peers[i], &m, NULL)) == PORT_RECV_MESSAGE)
			mesh_message_free(m); /* a clone's port: closed with it */
		check(r == PORT_RECV_CLOSED || r == PORT_RECV_FAILED, "a port was not closed");
		mesh_port_close(peers[i]);
	}
	check(lowest_free_fd() == lowest, "an fd leaked");
	return 0;
}
