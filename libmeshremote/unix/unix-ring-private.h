/* SPDX-License-Identifier: MIT */
/*
 * unix-ring.c: a single-producer, single-consumer ring of small events in a
 * sealed memfd shared by two C nodes (HELLO_RING, unix-node.c). The peer can
 * write the shared memory at any time: the consumer reads every index once,
 * bounds it and copies an entry out before anyone looks at it; the producer
 * bounds the consumer's head the same way.
 */
#pragma once

#include <glib.h>
#include <stdint.h>
#include <sys/uio.h>

/* Bytes of entries a ring holds, and the largest entry's payload. */
#define UNIX_RING_DATA_SIZE ((size_t)128 << 10)
#define UNIX_RING_MAX_ENTRY ((size_t)16376)

typedef struct UnixTxRing UnixTxRing;
typedef struct UnixRxRing UnixRxRing;

/* A new ring in a new sealed memfd, or NULL with errno set. */
UnixTxRing *unix_tx_ring_new(void);
void unix_tx_ring_free(UnixTxRing *r);
/* Returns: (transfer none): the ring's memfd, to send to the consumer. */
int unix_tx_ring_get_memfd(UnixTxRing *r);
/* The consumer's eventfd (taken), written when it sleeps. */
void unix_tx_ring_set_wake_take(UnixTxRing *r, int eventfd);
/* The low 32 bits of the write position (a socket packet's stamp). */
guint32 unix_tx_ring_pos(UnixTxRing *r);
/*
 * Writes one entry (the concatenation of @iov, @size bytes) that the
 * consumer delivers once it has taken @gate socket packets. Returns 1, 0
 * when there is no room, -1 with @ret_reason when the consumer's head is
 * out of range (a corrupt ring).
 */
int unix_tx_ring_write(UnixTxRing *r, const struct iovec *iov, size_t n_iov, size_t size,
		       guint32 gate, const char **ret_reason);
/* Whether the last write left over half of the ring unread (under the writer's lock). */
gboolean unix_tx_ring_half_full(UnixTxRing *r);
/* After writes: wakes the consumer if it said it sleeps. */
void unix_tx_ring_wake(UnixTxRing *r);
/*
 * Publishes how many socket packets the producer has written to the
 * socket (stamped ones, the setup's included), once they all are there.
 */
void unix_tx_ring_set_sock_sent(UnixTxRing *r, guint32 sent);

/* A consumer side with its own eventfd (close-on-exec), or NULL with errno set. */
UnixRxRing *unix_rx_ring_new(void);
void unix_rx_ring_free(UnixRxRing *r);
/* Returns: (transfer none): the eventfd the producer writes and the consumer polls. */
int unix_rx_ring_get_eventfd(UnixRxRing *r);
/* Maps the producer's ring from @memfd (borrowed). NULL, or why not. */
const char *unix_rx_ring_map(UnixRxRing *r, int memfd);
gboolean unix_rx_ring_is_mapped(UnixRxRing *r);
/* The low 32 bits of the read position. */
guint32 unix_rx_ring_pos(UnixRxRing *r);
/*
 * Copies the next entry out to @buf (UNIX_RING_MAX_ENTRY bytes) if it is
 * there, deliverable after @claimed socket packets, and ends within
 * @max_bytes of the read position. Returns 1 with its size, 0 if there is
 * none (or it waits for a socket packet), -1 with @ret_reason if the ring
 * is corrupt.
 */
int unix_rx_ring_next(UnixRxRing *r, guint32 claimed, size_t max_bytes, uint8_t *buf,
		      size_t *ret_size, const char **ret_reason);
/* Whether an entry deliverable after @claimed socket packets is there (no arming). */
gboolean unix_rx_ring_ready(UnixRxRing *r, guint32 claimed);
/*
 * Says the consumer sleeps, then looks again: TRUE if an entry came
 * meanwhile (then the consumer must not sleep).
 */
gboolean unix_rx_ring_arm(UnixRxRing *r, guint32 claimed);
/* Awake: the producer need not write the eventfd. */
void unix_rx_ring_disarm(UnixRxRing *r);
/* Reads the eventfd's count away (it was readable). */
void unix_rx_ring_ack_wake(UnixRxRing *r);
/*
 * The producer's count of socket packets written (0 before the mapping):
 * a hint only, since the peer may write anything there.
 */
guint32 unix_rx_ring_sock_sent(UnixRxRing *r);
