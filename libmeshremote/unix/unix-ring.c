/* SPDX-License-Identifier: MIT */
/*
 * Small events through shared memory between two C nodes (HELLO_RING; see
 * unix-node.c "The shared-memory ring" for the protocol around it).
 *
 * One ring per direction, in a memfd the producer makes and seals against
 * shrinking and growing (so that no mapping can fault) and against further
 * seals. Layout: a 4 KiB header page (the producer's tail at 64, the
 * consumer's head at 128 and its "armed" word at 136, each a byte count
 * since the start; at 192 the producer's count of socket packets it has
 * written, u32, a hint that lets the consumer read the socket without a
 * poll), then UNIX_RING_DATA_SIZE bytes of entries. An entry is
 * an 8-byte header (u32 LE payload size, u32 LE gate: the socket packets
 * the producer had sent before it) and the payload, padded to 8 bytes; a
 * header never wraps (every offset is a multiple of 8), a payload may.
 *
 * Wake-ups: the consumer sets armed, issues a full fence and looks at the
 * tail again before it sleeps in poll() on its eventfd; the producer
 * publishes the tail, issues a full fence, and exchanges armed with 0:
 * only if it was set does it write the eventfd. Either the consumer sees
 * the new tail or the producer sees armed (Dekker), so no entry sleeps.
 *
 * Hostile peers: both words the other side writes are read once into a
 * local and bounded; an entry is copied out to private memory before its
 * size is trusted further. A corrupt ring yields a reason, never a fault,
 * a hang or a spin: the consumer only polls the eventfd it made itself.
 */
#include <errno.h>
#include <fcntl.h>
#include <pal/pal.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "unix-ring-private.h"

#define RING_HEADER_PAGE 4096
#define RING_TAIL_OFF 64
#define RING_HEAD_OFF 128
#define RING_ARMED_OFF 136
#define RING_SOCK_SENT_OFF 192
#define RING_MAP_SIZE (RING_HEADER_PAGE + UNIX_RING_DATA_SIZE)
#define RING_MASK (UNIX_RING_DATA_SIZE - 1)
#define ENTRY_HEADER 8
#define PAD8(n) (((n) + 7) & ~(size_t)7)

G_STATIC_ASSERT((UNIX_RING_DATA_SIZE & RING_MASK) == 0);

struct UnixTxRing {
	int memfd;
	int wake_fd; /* the consumer's eventfd, -1 until it sent it */
	uint8_t *map;
	uint64_t tail; /* ours: the shared copy is only published */
	uint64_t used; /* bytes unread at the last write, as the consumer's head said */
};

struct UnixRxRing {
	int eventfd;
	uint8_t *map; /* NULL until the producer's memfd came */
	uint64_t head; /* ours: never read back from the shared memory */
};

static uint64_t *word64(uint8_t *map, size_t off)
{
	return (uint64_t *)(map + off);
}

static uint32_t *armed_word(uint8_t *map)
{
	return (uint32_t *)(map + RING_ARMED_OFF);
}

UnixTxRing *unix_tx_ring_new(void)
{
	int fd = pal_memfd_create("mesh-ring", RING_MAP_SIZE);
	if (fd < 0) {
		errno = -fd;
		return NULL;
	}
	if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return NULL;
	}
	void *map = mmap(NULL, RING_MAP_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED) {
		int e = errno;
		close(fd);
		errno = e;
		return NULL;
	}
	UnixTxRing *r = g_new0(UnixTxRing, 1);
	r->memfd = fd;
	r->wake_fd = -1;
	r->map = map;
	return r;
}

void unix_tx_ring_free(UnixTxRing *r)
{
	if (!r)
		return;
	munmap(r->map, RING_MAP_SIZE);
	close(r->memfd);
	if (r->wake_fd >= 0)
		close(r->wake_fd);
	g_free(r);
}

int unix_tx_ring_get_memfd(UnixTxRing *r)
{
	return r->memfd;
}

void unix_tx_ring_set_wake_take(UnixTxRing *r, int eventfd)
{
	if (r->wake_fd >= 0)
		close(r->wake_fd);
	r->wake_fd = eventfd;
}

guint32 unix_tx_ring_pos(UnixTxRing *r)
{
	return (guint32)r->tail;
}

/* Copies @n bytes from @src to the ring at position @pos, wrapping. */
static void ring_put(uint8_t *data, uint64_t pos, const uint8_t *src, size_t n)
{
	size_t off = (size_t)(pos & RING_MASK);
	size_t first = MIN(n, UNIX_RING_DATA_SIZE - off);
	memcpy(data + off, src, first);
	if (n > first)
		memcpy(data, src + first, n - first);
}

int unix_tx_ring_write(UnixTxRing *r, const struct iovec *iov, size_t n_iov, size_t size,
		       guint32 gate, const char **ret_reason)
{
	uint8_t *data = r->map + RING_HEADER_PAGE;
	/* Written by the consumer: read once, and it must lie in [tail - size, tail]. */
	uint64_t head = __atomic_load_n(word64(r->map, RING_HEAD_OFF), __ATOMIC_ACQUIRE);
	uint64_t used = r->tail - head;
	if (used > UNIX_RING_DATA_SIZE || (used & 7)) {
		*ret_reason = "shared-memory ring with its read position out of range";
		return -1;
	}
	size_t need = ENTRY_HEADER + PAD8(size);
	if (size == 0 || size > UNIX_RING_MAX_ENTRY || UNIX_RING_DATA_SIZE - used < need)
		return 0;
	uint32_t h[2] = {GUINT32_TO_LE((uint32_t)size), GUINT32_TO_LE(gate)};
	memcpy(data + (r->tail & RING_MASK), h, ENTRY_HEADER);
	uint64_t pos = r->tail + ENTRY_HEADER;
	for (size_t i = 0; i < n_iov; i++) {
		ring_put(data, pos, iov[i].iov_base, iov[i].iov_len);
		pos += iov[i].iov_len;
	}
	r->tail += need;
	r->used = used + need;
	__atomic_store_n(word64(r->map, RING_TAIL_OFF), r->tail, __ATOMIC_RELEASE);
	return 1;
}

gboolean unix_tx_ring_half_full(UnixTxRing *r)
{
	return r->used > UNIX_RING_DATA_SIZE / 2;
}

void unix_tx_ring_wake(UnixTxRing *r)
{
	/* The tail's store before the read of armed (the consumer fences the other way). */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (r->wake_fd < 0 || !__atomic_load_n(armed_word(r->map), __ATOMIC_RELAXED))
		return;
	if (!__atomic_exchange_n(armed_word(r->map), 0, __ATOMIC_SEQ_CST))
		return;
	uint64_t one = 1;
	/* Non-blocking (made so on receipt): a full count needs no second wake-up. */
	ssize_t k = write(r->wake_fd, &one, sizeof(one));
	(void)k;
}

UnixRxRing *unix_rx_ring_new(void)
{
	int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (fd < 0)
		return NULL;
	UnixRxRing *r = g_new0(UnixRxRing, 1);
	r->eventfd = fd;
	return r;
}

void unix_rx_ring_free(UnixRxRing *r)
{
	if (!r)
		return;
	if (r->map)
		munmap(r->map, RING_MAP_SIZE);
	close(r->eventfd);
	g_free(r);
}

int unix_rx_ring_get_eventfd(UnixRxRing *r)
{
	return r->eventfd;
}

const char *unix_rx_ring_map(UnixRxRing *r, int memfd)
{
	struct stat st;
	int want = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;
	int seals = fcntl(memfd, F_GET_SEALS);

	if (r->map)
		return "a second shared-memory ring";
	if (seals < 0 || (seals & want) != want)
		return "shared-memory ring in a memfd that is not sealed";
	if (fstat(memfd, &st) < 0 || (uint64_t)st.st_size != RING_MAP_SIZE)
		return "shared-memory ring of a bad size";
	void *map = mmap(NULL, RING_MAP_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
	if (map == MAP_FAILED)
		return "cannot map a shared-memory ring";
	r->map = map;
	/* Where the producer starts: zero (its tail must agree, or it is corrupt). */
	r->head = 0;
	__atomic_store_n(word64(r->map, RING_HEAD_OFF), 0, __ATOMIC_RELEASE);
	return NULL;
}

gboolean unix_rx_ring_is_mapped(UnixRxRing *r)
{
	return r && r->map;
}

guint32 unix_rx_ring_pos(UnixRxRing *r)
{
	return (guint32)r->head;
}

/* Copies @n bytes at ring position @pos out to @dst, wrapping. */
static void ring_get(const uint8_t *data, uint64_t pos, uint8_t *dst, size_t n)
{
	size_t off = (size_t)(pos & RING_MASK);
	size_t first = MIN(n, UNIX_RING_DATA_SIZE - off);
	memcpy(dst, data + off, first);
	if (n > first)
		memcpy(dst + first, data, n - first);
}

/*
 * The next entry's header, checked against the tail read once; 1, 0 (none,
 * or it waits for a socket packet), -1 (corrupt).
 */
static int ring_peek(UnixRxRing *r, guint32 claimed, uint32_t *ret_size, const char **ret_reason)
{
	if (!r->map)
		return 0;
	uint64_t tail = __atomic_load_n(word64(r->map, RING_TAIL_OFF), __ATOMIC_ACQUIRE);
	uint64_t avail = tail - r->head;
	if (avail == 0)
		return 0;
	if (avail > UNIX_RING_DATA_SIZE || (avail & 7)) {
		*ret_reason = "shared-memory ring with its write position out of range";
		return -1;
	}
	uint32_t h[2];
	ring_get(r->map + RING_HEADER_PAGE, r->head, (uint8_t *)h, ENTRY_HEADER);
	uint32_t size = GUINT32_FROM_LE(h[0]);
	uint32_t gate = GUINT32_FROM_LE(h[1]);
	if (size == 0 || size > UNIX_RING_MAX_ENTRY || ENTRY_HEADER + PAD8((size_t)size) > avail) {
		*ret_reason = "shared-memory ring entry of a bad size";
		return -1;
	}
	/* Sent after a socket packet not taken yet: that packet goes first. */
	if ((gint32)(gate - claimed) > 0)
		return 0;
	*ret_size = size;
	return 1;
}

int unix_rx_ring_next(UnixRxRing *r, guint32 claimed, size_t max_bytes, uint8_t *buf,
		      size_t *ret_size, const char **ret_reason)
{
	uint32_t size;
	int k = ring_peek(r, claimed, &size, ret_reason);
	if (k <= 0)
		return k;
	size_t span = ENTRY_HEADER + PAD8((size_t)size);
	if (span > max_bytes) {
		*ret_reason = "shared-memory ring entry across a socket packet";
		return -1;
	}
	/* Out to private memory first: the producer may rewrite it meanwhile. */
	ring_get(r->map + RING_HEADER_PAGE, r->head + ENTRY_HEADER, buf, size);
	r->head += span;
	__atomic_store_n(word64(r->map, RING_HEAD_OFF), r->head, __ATOMIC_RELEASE);
	*ret_size = size;
	return 1;
}

gboolean unix_rx_ring_ready(UnixRxRing *r, guint32 claimed)
{
	uint32_t size;
	const char *reason = NULL;
	/* A corrupt ring is "ready": the dispatch finds it and fails the connection. */
	return ring_peek(r, claimed, &size, &reason) != 0;
}

gboolean unix_rx_ring_arm(UnixRxRing *r, guint32 claimed)
{
	if (!r->map)
		return FALSE;
	__atomic_store_n(armed_word(r->map), 1, __ATOMIC_RELAXED);
	/* The store of armed before the read of the tail (the producer fences the other way). */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return unix_rx_ring_ready(r, claimed);
}

void unix_rx_ring_disarm(UnixRxRing *r)
{
	if (r->map)
		__atomic_store_n(armed_word(r->map), 0, __ATOMIC_RELAXED);
}

void unix_tx_ring_set_sock_sent(UnixTxRing *r, guint32 sent)
{
	__atomic_store_n((uint32_t *)(r->map + RING_SOCK_SENT_OFF), sent, __ATOMIC_RELEASE);
}

guint32 unix_rx_ring_sock_sent(UnixRxRing *r)
{
	if (!r->map)
		return 0;
	return __atomic_load_n((uint32_t *)(r->map + RING_SOCK_SENT_OFF), __ATOMIC_ACQUIRE);
}

void unix_rx_ring_ack_wake(UnixRxRing *r)
{
	uint64_t count;
	ssize_t k = read(r->eventfd, &count, sizeof(count));
	(void)k;
}
