/* SPDX-License-Identifier: MIT */
/* A per-thread cache of small blocks for the hot path, with a shared depot. */
#include "remote-private.h"

/*
 * Small blocks (events, small messages) from a per-thread cache: a stream
 * makes and frees one of each per 64-byte message. A receiver takes a
 * whole dispatch of messages (a recvmmsg() of batches, a ring drain: often
 * more than a thread's cache) before it frees them, and the thread that
 * frees is often not the one that made them (an I/O thread makes, the
 * reader frees). Both overflows go through a depot of full magazines
 * shared by all threads, a lock per SMALL_MAGAZINE blocks: without it each
 * burst went back to malloc, whose heap top was trimmed and faulted in
 * again for every burst (page faults were a fifth of a stream receiver's
 * time, doc/performance.md "stream_64B, round 3").
 *
 * Held at most: SMALL_CACHE_MAX blocks per thread (freed at thread exit)
 * and SMALL_DEPOT_MAX magazines (256 KiB + 512 KiB of 256-byte blocks).
 */
#define SMALL_CACHE_MAX 256
#define SMALL_MAGAZINE 128
#define SMALL_DEPOT_MAX 16

G_STATIC_ASSERT(SMALL_CACHE_MAX >= 2 * SMALL_MAGAZINE);

typedef struct {
	guint n;
	void *blocks[SMALL_CACHE_MAX];
} SmallCache;

static GMutex depot_lock;
static guint depot_n;
static void *depot[SMALL_DEPOT_MAX][SMALL_MAGAZINE];

/*
 * The thread's cache: read through a TLS variable (g_private_get() costs a
 * pthread_getspecific() per block); the GPrivate only frees it at thread
 * exit, and then forgets it, so that a later destructor that frees a
 * block makes a new one (freed in turn) instead of using a freed cache.
 */
#if defined(__GNUC__) && defined(__ELF__)
/* Initial-exec: a plain load, not a __tls_get_addr() call (8 bytes of static TLS). */
static __thread SmallCache *small_cache_tls __attribute__((tls_model("initial-exec")));
#else
static __thread SmallCache *small_cache_tls;
#endif

static void small_cache_free(gpointer data)
{
	SmallCache *c = data;
	if (small_cache_tls == c)
		small_cache_tls = NULL;
	for (guint i = 0; i < c->n; i++)
		g_free(c->blocks[i]);
	g_free(c);
}

static GPrivate small_cache_key = G_PRIVATE_INIT(small_cache_free);

static SmallCache *small_cache(void)
{
	SmallCache *c = small_cache_tls;
	if (G_UNLIKELY(!c)) {
		c = g_new0(SmallCache, 1);
		g_private_set(&small_cache_key, c);
		small_cache_tls = c;
	}
	return c;
}

void *small_block_alloc(void)
{
	SmallCache *c = small_cache();
	if (c->n)
		return c->blocks[--c->n];
	/* Empty: a magazine from the depot (blocks another thread freed), or malloc. */
	g_mutex_lock(&depot_lock);
	if (depot_n) {
		memcpy(c->blocks, depot[--depot_n], sizeof(depot[0]));
		c->n = SMALL_MAGAZINE;
	}
	g_mutex_unlock(&depot_lock);
	return c->n ? c->blocks[--c->n] : g_malloc(SMALL_BLOCK_SIZE);
}

void small_block_free(void *block)
{
	SmallCache *c = small_cache();
	if (c->n == SMALL_CACHE_MAX) {
		/* Full: its older half to the depot, unless the depot is full too. */
		gboolean kept = FALSE;
		g_mutex_lock(&depot_lock);
		if (depot_n < SMALL_DEPOT_MAX) {
			memcpy(depot[depot_n++], c->blocks, sizeof(depot[0]));
			kept = TRUE;
		}
		g_mutex_unlock(&depot_lock);
		if (!kept) {
			g_free(block);
			return;
		}
		memmove(c->blocks, c->blocks + SMALL_MAGAZINE,
			(SMALL_CACHE_MAX - SMALL_MAGAZINE) * sizeof(void *));
		c->n -= SMALL_MAGAZINE;
	}
	c->blocks[c->n++] = block;
}
