/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target for the shared-memory ring between C nodes (unix-ring.c,
 * HELLO_RING): a MeshUnixNode on a context this function iterates reads
 * the ring of a peer that the input plays, and writes its own ring, whose
 * head the input may corrupt too. The peer says a hello with HELLO_RING,
 * takes the node's ring setup and sends its own; then the input is a
 * sequence of operations, each [op: 1 byte][arg: 2 bytes LE][len: 1 byte]
 * [len bytes]:
 *   0 raw bytes into the ring's data at offset arg * 8 (wrapping)
 *   1 a well-formed entry of the bytes, gate arg (an event to the node's port
 *     when the bytes begin with 'E': a header is made for the rest)
 *   2 publish the tail (+ arg - 0x8000 bytes of skew), then wake the node
 *   3 a socket packet of the bytes, stamped with the tail + arg - 0x8000
 *   4 write the node's ring head (the consumer's word) as arg * 8
 *   5 the node sends a message of len bytes on its port (its ring, or the socket)
 *   6 wake the node without writing anything
 * The node has a port 0x11.. peered with 0x21.. on the peer 0xaa... Checks:
 * no crash, no fd left, and no spin: the context goes idle after each
 * operation within a bounded number of iterations.
 */
#include <sys/eventfd.h>
#include <sys/mman.h>

#include "fuzz-common.h"

#define RING_DATA (128u << 10)
#define RING_MAP (4096u + RING_DATA)
#define HELLO_RING_ALL 0xf
/* Iterations after one operation before the context must be idle. */
#define MAX_ITERATIONS 10000

static void send_stamped(int sock, uint8_t type, guint32 stamp, const void *body, size_t len,
			 const int *fds, size_t n_fds)
{
	uint8_t header[8] = {type};
	guint32 le = GUINT32_TO_LE(stamp);
	memcpy(header + 4, &le, 4);
	struct iovec iov[2] = {{header, 8}, {(void *)body, len}};
	pal_send_with_fds(sock, iov, len ? 2 : 1, fds, n_fds, MSG_DONTWAIT);
}

static void send_hello(int sock)
{
	uint8_t ev[MESH_EVENT_HEADER_SIZE + 4];
	MeshEventHeader h = {
		.type = MESH_EVENT_MESSAGE,
		.flags = MESH_EVENT_FLAG_MESSAGE,
		.message_size = 4,
	};
	memcpy(h.port_id.bytes, "mesh-c:hello:v1", 16);
	protocol_event_write_header(ev, &h);
	uint8_t *p = ev + MESH_EVENT_HEADER_SIZE;
	p[0] = 'M';
	p[1] = 'C';
	p[2] = HELLO_RING_ALL;
	p[3] = 0;
	send_stamped(sock, 1, 0, ev, sizeof(ev), NULL, 0);
}

static void run_idle(GMainContext *ctx)
{
	for (int i = 0; g_main_context_iteration(ctx, FALSE); i++) {
		if (i > MAX_ITERATIONS) {
			fprintf(stderr, "fuzz-ring: the context never goes idle (a spin)\n");
			abort();
		}
	}
}

static void ring_write(uint8_t *d, guint64 pos, const uint8_t *src, size_t n)
{
	for (size_t i = 0; i < n; i++)
		d[(pos + i) % RING_DATA] = src[i];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_quiet_logs();
	int lowest = fuzz_lowest_free_fd();

	FuzzUnixPeer f;
	fuzz_unix_peer_init(&f);
	GMainContext *ctx = f.ctx;
	int sock = f.sock;
	send_hello(sock);
	run_idle(ctx);

	/* The node's hello, then its ring setup: keep its eventfd and ring. */
	int node_efd = -1;
	uint8_t *node_ring = NULL;
	for (int k = 0; k < 4 && node_efd < 0; k++) {
		uint8_t buf[256];
		PalFdArray *fds = pal_fd_array_new();
		struct iovec iov = {buf, sizeof(buf)};
		ssize_t r = pal_recv_with_fds(sock, &iov, 1, fds, 4, MSG_DONTWAIT);
		if (r >= 8 && buf[0] == 0x83 && pal_fd_array_len(fds) == 2) {
			int memfd = pal_fd_array_steal(fds, 0);
			node_efd = pal_fd_array_steal(fds, 1);
			void *m = mmap(NULL, RING_MAP, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
			node_ring = m == MAP_FAILED ? NULL : m;
			close(memfd);
		}
		pal_fd_array_free(fds);
		if (r < 0)
			break;
	}

	int memfd = pal_memfd_create("fuzz-ring", RING_MAP);
	if (memfd < 0)
		abort();
	fcntl(memfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
	uint8_t *ring = mmap(NULL, RING_MAP, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
	if (ring == MAP_FAILED)
		abort();
	uint8_t *rd = ring + 4096;
	int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	uint8_t setup[8] = {0, 0, 2, 0}; /* 128 KiB */
	int sfds[2] = {memfd, efd};
	send_stamped(sock, 0x83, 0, setup, sizeof(setup), sfds, 2);
	run_idle(ctx);

	guint64 tail = 0;
	guint64 one = 1;
	guint64 seq = 1;
	const uint8_t *p = data, *end = data + size;
	while (end - p >= 4) {
		uint8_t op = p[0];
		guint arg = (guint)p[1] | (guint)p[2] << 8;
		size_t len = p[3];
		p += 4;
		if (len > (size_t)(end - p))
			len = (size_t)(end - p);
		const uint8_t *bytes = p;
		p += len;
		switch (op % 7) {
		case 0:
			ring_write(rd, (guint64)arg * 8, bytes, len);
			break;
		case 1: {
			uint8_t ev[MESH_EVENT_HEADER_SIZE + 256];
			const uint8_t *payload = bytes;
			size_t n = len;
			if (len > 0 && bytes[0] == 'E') {
				MeshEventHeader eh = {
					.port_id = f.port_id,
					.type = MESH_EVENT_MESSAGE,
					.flags = MESH_EVENT_FLAG_MESSAGE,
					.seq = seq++,
					.message_size = (uint32_t)(len - 1),
				};
				protocol_event_write_header(ev, &eh);
				memcpy(ev + MESH_EVENT_HEADER_SIZE, bytes + 1, len - 1);
				payload = ev;
				n = MESH_EVENT_HEADER_SIZE + len - 1;
			}
			guint32 eh2[2] = {GUINT32_TO_LE((guint32)n), GUINT32_TO_LE((guint32)arg)};
			ring_write(rd, tail, (const uint8_t *)eh2, 8);
			ring_write(rd, tail + 8, payload, n);
			tail += 8 + ((n + 7) & ~(size_t)7);
			break;
		}
		case 2:
			__atomic_store_n((guint64 *)(ring + 64), tail + arg - 0x8000, __ATOMIC_RELEASE);
			if (node_efd >= 0 && write(node_efd, &one, 8) < 0)
				break;
			break;
		case 3:
			send_stamped(sock, 1, (guint32)(tail + arg - 0x8000), bytes, len, NULL, 0);
			break;
		case 4:
			if (node_ring)
				__atomic_store_n((guint64 *)(node_ring + 128), (guint64)arg * 8,
						 __ATOMIC_RELEASE);
			break;
		case 5:
			port_send(f.port, mesh_message_new(bytes, len), FALSE);
			break;
		case 6:
			if (node_efd >= 0 && write(node_efd, &one, 8) < 0)
				break;
			break;
		}
		run_idle(ctx);
		/* What the node sent: drained, so that its socket never fills. */
		for (;;) {
			uint8_t buf[64];
			PalFdArray *fds = pal_fd_array_new();
			struct iovec iov = {buf, sizeof(buf)};
			ssize_t r = pal_recv_with_fds(sock, &iov, 1, fds, 64, MSG_DONTWAIT);
			pal_fd_array_free(fds);
			if (r <= 0)
				break;
		}
	}
	int got = fuzz_unix_peer_finish(&f);
	if (getenv("FUZZ_RING_DEBUG"))
		fprintf(stderr, "fuzz-ring: setup %d, %d messages\n", node_efd >= 0, got);
	run_idle(ctx);
	fuzz_unix_peer_free_context(&f);
	munmap(ring, RING_MAP);
	if (node_ring)
		munmap(node_ring, RING_MAP);
	close(memfd);
	close(efd);
	if (node_efd >= 0)
		close(node_efd);

	fuzz_check_fds("fuzz-ring", lowest);
	return 0;
}
