/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target for the Unix transport's packet layer and everything behind
 * it: packets are written into a real SOCK_SEQPACKET connection of a
 * MeshUnixNode running on a context this function iterates.
 *
 * Input: a sequence of packets, each [control: 1 byte][size: 2 bytes LE]
 * [size bytes]. Control bits 0-1: how many /dev/null fds ride along; bit 2:
 * send the bytes in a sealed memfd as the first fd (a large event; bit 3
 * leaves it unsealed) with only the header as data; bit 4: the first 24
 * bytes are the packet and the rest goes into a memfd sealed against
 * resizing only, sent as the first fd (a pool buffer, see unix-pool.c).
 * The node has a port with
 * a fixed id (0x11 x16) peered with port 0x21.. on the fuzzed peer node
 * (0xaa x16), so events can reach it. Checks: no crash, no leak, no fd left.
 */
#include "fuzz-common.h"


static void send_packet(int sock, uint8_t control, const uint8_t *bytes, size_t len)
{
	int fds[4], n = 0;
	uint8_t header[8] = {3};

	if ((control & 0x10) && !(control & 4)) {
		size_t head = len < 24 ? len : 24;
		int memfd = pal_memfd_create("fuzz-pool", len > head ? len - head : 1);
		if (memfd < 0)
			return;
		if (len > head && write(memfd, bytes + head, len - head) != (ssize_t)(len - head)) {
			close(memfd);
			return;
		}
		fcntl(memfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW);
		fds[n++] = memfd;
		len = head;
	}
	if (control & 4) {
		int memfd = pal_memfd_create("fuzz", len);
		if (memfd < 0)
			return;
		if (len && write(memfd, bytes, len) != (ssize_t)len) {
			close(memfd);
			return;
		}
		if (!(control & 8))
			pal_memfd_seal(memfd);
		fds[n++] = memfd;
	}
	for (int i = 0; i < (control & 3); i++)
		fds[n++] = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (control & 4) {
		struct iovec iov = {header, sizeof(header)};
		pal_send_with_fds(sock, &iov, 1, fds, (size_t)n, MSG_DONTWAIT);
	} else {
		struct iovec iov = {(void *)bytes, len};
		pal_send_with_fds(sock, &iov, 1, fds, (size_t)n, MSG_DONTWAIT);
	}
	for (int i = 0; i < n; i++)
		close(fds[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_quiet_logs();
	int lowest = fuzz_lowest_free_fd();

	FuzzUnixPeer f;
	fuzz_unix_peer_init(&f);
	GMainContext *ctx = f.ctx;
	int sock = f.sock;

	const uint8_t *p = data, *end = data + size;
	while (end - p >= 3) {
		uint8_t control = p[0];
		size_t len = (size_t)p[1] | (size_t)p[2] << 8;
		p += 3;
		if (len > (size_t)(end - p))
			len = (size_t)(end - p);
		send_packet(sock, control, p, len);
		p += len;
		while (g_main_context_iteration(ctx, FALSE))
			;
	}
	fuzz_unix_peer_finish(&f);
	while (g_main_context_iteration(ctx, FALSE))
		;
	fuzz_unix_peer_free_context(&f);
	fuzz_check_fds("fuzz-packet", lowest);
	return 0;
}
