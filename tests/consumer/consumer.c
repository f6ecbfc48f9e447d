/* SPDX-License-Identifier: MIT */
/*
 * A downstream program built only from the installed headers, .pc files and
 * .proto of libpal and libmeshpayload: it sends itself a message carrying a
 * sealed memfd over a SOCK_SEQPACKET pair and checks what arrives.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <meshpayload/meshpayload.h>
#include <pal/pal.h>

#include "hello.pb-c.h"

#define CHECK(x)                                                                 \
	do {                                                                     \
		if (!(x)) {                                                      \
			fprintf(stderr, "consumer: check failed: %s\n", #x);    \
			return 1;                                                \
		}                                                                \
	} while (0)

int main(void)
{
	int sv[2];
	CHECK(pal_socketpair(SOCK_SEQPACKET, sv) == 0);

	int memfd = pal_memfd_create("consumer", 5);
	CHECK(memfd >= 0);
	CHECK(write(memfd, "hello", 5) == 5);
	CHECK(pal_memfd_seal(memfd) == 0);

	Consumer__Hello hello = CONSUMER__HELLO__INIT;
	hello.text = "from downstream";
	hello.blob = mesh_payload_fd_new_take(memfd);
	CHECK(hello.blob != NULL);

	MeshPayloadResources *res = mesh_payload_resources_new();
	uint8_t *bytes;
	size_t size;
	CHECK(mesh_payload_encode_alloc(&hello.base, &bytes, &size, res, NULL) == 0);
	CHECK(mesh_payload_resources_len(res) == 1);
	int fd = mesh_payload_resources_peek_fd(res, 0);
	struct iovec iov = {bytes, size};
	CHECK(pal_send_with_fds(sv[0], &iov, 1, &fd, 1, 0) == (ssize_t)size);
	mesh_payload_resources_clear(res);
	free(hello.blob);
	free(bytes);

	uint8_t buf[256];
	struct iovec riov = {buf, sizeof(buf)};
	PalFdArray *fds = pal_fd_array_new();
	ssize_t n = pal_recv_with_fds(sv[1], &riov, 1, fds, 4, 0);
	CHECK(n == (ssize_t)size);
	CHECK(pal_fd_array_len(fds) == 1);
	CHECK(mesh_payload_resources_append_fd_take(res, pal_fd_array_steal(fds, 0)) == 0);

	ProtobufCMessage *msg;
	MeshPayloadError err;
	CHECK(mesh_payload_decode(&consumer__hello__descriptor, buf, (size_t)n, res, NULL, &msg,
				  &err) == 0);
	Consumer__Hello *got = (Consumer__Hello *)msg;
	size_t blob_size;
	CHECK(pal_memfd_verify_seals(got->blob->fd, &blob_size) == 0 && blob_size == 5);
	void *map;
	CHECK(pal_memfd_map(got->blob->fd, blob_size, false, &map) == 0);
	CHECK(memcmp(map, "hello", 5) == 0);
	printf("consumer: got \"%s\" with a sealed memfd holding \"%.5s\"\n", got->text,
	       (const char *)map);
	pal_memfd_unmap(map, blob_size);

	mesh_payload_message_free(msg);
	mesh_payload_resources_free(res);
	pal_fd_array_free(fds);
	close(sv[0]);
	close(sv[1]);
	return 0;
}
