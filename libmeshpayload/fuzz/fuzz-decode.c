/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target for the payload decoder: bytes from another process.
 *
 * Input: one control byte, then the message. The control byte picks how many
 * fds (bits 0-2) and ports (bits 3-4) come with the message and which type it
 * is decoded as (bit 5: meshtest.Everything or meshtest.Plain; bit 6:
 * test.Job instead, the well-known types Timestamp, Duration and Any, whose
 * Duration range check and Any payload are also exercised). Checks:
 * - no crash, no leak (LeakSanitizer), no leaked fd, every port released once;
 * - what decodes re-encodes, and that encoding decodes and re-encodes to the
 *   same bytes;
 * - for Plain (no resources), when the input is canonical (it is exactly what
 *   packing the result gives), protobuf-c's own unpack accepts it too and its
 *   result packs to the same bytes. (Non-canonical input may legitimately
 *   differ: protobuf-c 1.4 replaces a repeated occurrence of a message field
 *   where protobuf and upstream mesh merge it, as we do.)
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <meshpayload/meshpayload.h>

#include "test-any.pb-c.h"
#include "test-messages.pb-c.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
	MeshPayloadObject base;
	int released;
} FuzzObject;

static void fuzz_object_release(MeshPayloadObject *o)
{
	((FuzzObject *)o)->released++;
}

static const MeshPayloadObjectClass fuzz_object_class = {
	.version = MESH_PAYLOAD_OBJECT_CLASS_VERSION,
	.name = "FuzzObject",
	.release = fuzz_object_release,
};

static int null_fd = -1;

static void check(bool ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz-decode: %s\n", what);
		abort();
	}
}

/* The lowest free fd must not move: anything else is a leaked fd. */
static int probe_lowest_free_fd(void)
{
	int fd = dup(null_fd);
	check(fd >= 0, "dup failed");
	close(fd);
	return fd;
}

static void roundtrip(ProtobufCMessage *msg)
{
	MeshPayloadResources *res = mesh_payload_resources_new();
	uint8_t *bytes = NULL, *again = NULL;
	size_t n, n_again;
	ProtobufCMessage *back = NULL;
	MeshPayloadError err;

	check(res != NULL, "out of memory");
	check(mesh_payload_encode_alloc(msg, &bytes, &n, res, &err) == 0, "re-encode failed");
	check(mesh_payload_decode(msg->descriptor, bytes, n, res, NULL, &back, &err) == 0,
	      "decoding our own encoding failed");
	check(mesh_payload_encode_alloc(back, &again, &n_again, res, &err) == 0,
	      "second encode failed");
	check(n == n_again && (n == 0 || memcmp(bytes, again, n) == 0), "round trip differs");
	mesh_payload_resources_clear(res);
	mesh_payload_message_free(back);
	mesh_payload_resources_free(res);
	free(bytes);
	free(again);
}

/* What decoded holds valid well-known values; the Any's payload decodes or fails cleanly. */
static void check_job(Test__Job *job)
{
	if (job->budget)
		check(mesh_payload_duration_is_valid(job->budget), "a decoded Duration is out of range");
	if (job->start) {
		struct timespec ts;
		int r = mesh_payload_timestamp_to_timespec(job->start, &ts);
		check(r == 0 || r == -ERANGE, "timestamp conversion failed oddly");
	}
	if (job->detail) {
		ProtobufCMessage *inner = NULL;
		MeshPayloadError err;
		int r = mesh_payload_any_unpack(job->detail, &test__message__descriptor, NULL, &inner,
						&err);
		check((r == 0) == (inner != NULL), "Any unpack result and message disagree");
		if (r == 0)
			check(mesh_payload_any_is(job->detail, &test__message__descriptor),
			      "unpacked an Any of another type");
		mesh_payload_message_free(inner);
	}
}

static void differential(const uint8_t *data, size_t size, ProtobufCMessage *ours)
{
	size_t a = protobuf_c_message_get_packed_size(ours);
	uint8_t *canon = malloc(a ? a : 1);
	check(canon != NULL, "out of memory");
	protobuf_c_message_pack(ours, canon);
	bool canonical = a == size && memcmp(canon, data, size) == 0;
	free(canon);
	if (!canonical)
		return;

	ProtobufCMessage *theirs = protobuf_c_message_unpack(&meshtest__plain__descriptor, NULL,
							     size, data);
	check(theirs != NULL, "protobuf-c rejected a canonical message");
	size_t b = protobuf_c_message_get_packed_size(theirs);
	check(a == b, "protobuf-c decoded a different message (size)");
	uint8_t *pa = malloc(a ? a : 1), *pb = malloc(b ? b : 1);
	check(pa && pb, "out of memory");
	protobuf_c_message_pack(ours, pa);
	protobuf_c_message_pack(theirs, pb);
	check(memcmp(pa, pb, a) == 0, "protobuf-c decoded a different message (bytes)");
	free(pa);
	free(pb);
	protobuf_c_message_free_unpacked(theirs, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	FuzzObject objs[4];
	MeshPayloadLimits limits = {.max_size = 1 << 20, .max_depth = 32, .max_resources = 16};

	if (null_fd < 0) {
#ifdef _WIN32
		null_fd = open("NUL", O_RDONLY | O_NOINHERIT);
#else
		null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
#endif
		check(null_fd >= 0, "cannot open the null device");
	}
	int lowest_free_fd = probe_lowest_free_fd();
	if (size < 1)
		return 0;

	unsigned n_fds = data[0] & 7, n_ports = (data[0] >> 3) & 3;
	bool plain = data[0] & 0x20, job = data[0] & 0x40;
	const ProtobufCMessageDescriptor *desc =
		job     ? &test__job__descriptor
		: plain ? &meshtest__plain__descriptor
			: &meshtest__everything__descriptor;
	data++, size--;

	MeshPayloadResources *res = mesh_payload_resources_new();
	check(res != NULL, "out of memory");
	/* Interleave ports among the fds so wrong-kind paths are reached. */
	for (unsigned i = 0; i < n_fds + n_ports; i++) {
		if (i % 2 == 1 && i / 2 < n_ports) {
			FuzzObject *o = &objs[i / 2];
			o->base.klass = &fuzz_object_class;
			o->released = 0;
			check(mesh_payload_resources_append_port_take(res, &o->base) >= 0, "append");
		} else {
			check(mesh_payload_resources_append_fd(res, null_fd) >= 0, "append");
		}
	}
	size_t n_objs = 0;
	for (unsigned i = 0; i < n_fds + n_ports; i++)
		if (mesh_payload_resources_get_kind(res, i) == MESH_PAYLOAD_RESOURCE_PORT)
			n_objs++;

	ProtobufCMessage *msg = NULL;
	MeshPayloadError err;
	int r = mesh_payload_decode(desc, data, size, res, &limits, &msg, &err);
	check(mesh_payload_resources_len(res) == 0, "resources left in the list");
	if (r == 0) {
		roundtrip(msg);
		if (plain && !job)
			differential(data, size, msg);
		if (job)
			check_job((Test__Job *)msg);
		mesh_payload_message_free(msg);
	} else {
		check(msg == NULL && err.code != MESH_PAYLOAD_ERROR_NONE, "error without a code");
	}
	mesh_payload_resources_free(res);

	for (size_t i = 0; i < n_objs; i++)
		check(objs[i].released == 1, "a port was not released exactly once");
	check(probe_lowest_free_fd() == lowest_free_fd, "an fd leaked");
	return 0;
}
