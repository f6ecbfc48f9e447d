/* SPDX-License-Identifier: MIT */
/* A per-thread cache of small blocks for the hot path. */
#include "remote-private.h"

/*
 * Small blocks (events, small messages) from a per-thread cache: a stream
 * makes and frees one of each per 64-byte message, mostly on one thread.
 */
#define SMALL_CACHE_MAX 256

typedef struct {
	guint n;
	void *blocks[SMALL_CACHE_MAX];
} SmallCache;

static void small_cache_free(gpointer data)
{
	SmallCache *c = data;
	for (guint i = 0; i < c->n; i++)
		g_free(c->blocks[i]);
	g_free(c);
}

static GPrivate small_cache_key = G_PRIVATE_INIT(small_cache_free);

static SmallCache *small_cache(void)
{
	SmallCache *c = g_private_get(&small_cache_key);
	if (!c) {
		c = g_new0(SmallCache, 1);
		g_private_set(&small_cache_key, c);
	}
	return c;
}

void *small_block_alloc(void)
{
	SmallCache *c = small_cache();
	return c->n ? c->blocks[--c->n] : g_malloc(SMALL_BLOCK_SIZE);
}

void small_block_free(void *block)
{
	SmallCache *c = small_cache();
	if (c->n < SMALL_CACHE_MAX)
		c->blocks[c->n++] = block;
	else
		g_free(block);
}
