/* SPDX-License-Identifier: MIT */
/*
 * Reused shared memory for large events (beyond upstream, negotiated; see
 * doc/libmeshremote-unix.md "Pooled large events").
 *
 * Upstream sends every event over 16376 bytes in a new sealed memfd: the
 * kernel allocates, and later frees, every page of it, per event. Between
 * two C nodes, the sender instead keeps a few memfds mapped (its pool),
 * writes an event into a free one and sends only the buffer's id (the
 * memfd itself the first time); the receiver copies the event out of its
 * own read-only mapping and at once tells the sender that the buffer is
 * free again. The copy is what makes a buffer the sender may still write
 * safe to read; the memfd is sealed against shrinking, so the mapping
 * cannot fault.
 *
 * Both sides bound what they hold: the sender falls back to a sealed
 * memfd when its pool is exhausted (a receiver that never releases costs
 * it nothing more), the receiver refuses a peer's buffers past its limits.
 */
#include <errno.h>
#include <fcntl.h>
#include <pal/pal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "unix-node-private.h"

/* Sender: buffers per connection, bytes in all, and the largest pooled event. */
#define TX_POOL_MAX_BUFS 8
#define TX_POOL_MAX_BYTES ((size_t)64 << 20)
#define TX_POOL_MIN_BUF ((size_t)64 << 10)
/* Receiver: what a peer may make it map. */
#define RX_POOL_MAX_BUFS 16
#define RX_POOL_MAX_BYTES ((size_t)256 << 20)

struct UnixTxPool {
	GPtrArray *bufs; /* UnixPoolBuf * */
	size_t bytes;
	guint32 next_id;
};

typedef struct {
	guint32 id;
	const uint8_t *map;
	size_t size;
} RxBuf;

/*
 * The receiver's copies come from a few recycled blocks: a fresh 1 MiB
 * g_malloc() per event costs as many page faults (and zeroed pages) as a
 * new memfd would. A message returns its block when it is freed, from any
 * thread, possibly after the connection is gone.
 */
#define COPY_CACHE_BLOCKS 8

typedef struct {
	gint ref;
	GMutex lock;
	GPtrArray *free_blocks; /* CopyBlock * */
	gboolean closed;
} CopyCache;

typedef struct {
	CopyCache *cache; /* strong */
	size_t cap;
	uint8_t *data;
} CopyBlock;

struct UnixRxPool {
	GArray *bufs; /* RxBuf */
	size_t bytes;
	CopyCache *cache;
};

static void copy_block_free(CopyBlock *b)
{
	g_free(b->data);
	g_free(b);
}

static void copy_cache_unref(CopyCache *c)
{
	if (!g_atomic_int_dec_and_test(&c->ref))
		return;
	for (guint i = 0; i < c->free_blocks->len; i++)
		copy_block_free(c->free_blocks->pdata[i]);
	g_ptr_array_free(c->free_blocks, TRUE);
	g_mutex_clear(&c->lock);
	g_free(c);
}

/* A message's data_free: the block goes back to its cache, or away. */
static void copy_block_return(void *data)
{
	CopyBlock *b = data;
	CopyCache *c = b->cache;

	g_mutex_lock(&c->lock);
	gboolean keep = !c->closed && c->free_blocks->len < COPY_CACHE_BLOCKS;
	if (keep)
		g_ptr_array_add(c->free_blocks, b);
	g_mutex_unlock(&c->lock);
	if (!keep)
		copy_block_free(b);
	copy_cache_unref(c);
}

static CopyBlock *copy_block_get(CopyCache *c, size_t size)
{
	CopyBlock *b = NULL;

	g_mutex_lock(&c->lock);
	for (guint i = 0; i < c->free_blocks->len; i++) {
		CopyBlock *x = c->free_blocks->pdata[i];
		if (x->cap >= size && (!b || x->cap < b->cap))
			b = x;
	}
	if (b)
		g_ptr_array_remove_fast(c->free_blocks, b);
	g_mutex_unlock(&c->lock);
	if (!b) {
		size_t cap = TX_POOL_MIN_BUF;
		while (cap < size)
			cap <<= 1;
		b = g_new(CopyBlock, 1);
		b->cap = cap;
		b->data = g_malloc(cap);
	}
	g_atomic_int_inc(&c->ref);
	b->cache = c;
	return b;
}

static void pool_buf_free(gpointer data)
{
	UnixPoolBuf *b = data;
	munmap(b->map, b->size);
	close(b->fd);
	g_free(b);
}

UnixTxPool *unix_tx_pool_new(void)
{
	UnixTxPool *p = g_new0(UnixTxPool, 1);
	p->bufs = g_ptr_array_new_with_free_func(pool_buf_free);
	p->next_id = 1;
	return p;
}

void unix_tx_pool_free(UnixTxPool *p)
{
	if (!p)
		return;
	g_ptr_array_free(p->bufs, TRUE);
	g_free(p);
}

static UnixPoolBuf *pool_buf_new(guint32 id, size_t size)
{
	int fd = pal_memfd_create("mesh-pool", size);
	if (fd < 0)
		return NULL;
	if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
		close(fd);
		return NULL;
	}
	void *map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED) {
		close(fd);
		return NULL;
	}
	UnixPoolBuf *b = g_new0(UnixPoolBuf, 1);
	b->id = id;
	b->fd = fd;
	b->map = map;
	b->size = size;
	return b;
}

UnixPoolBuf *unix_tx_pool_take(UnixTxPool *p, size_t size)
{
	UnixPoolBuf *fit = NULL, *spare = NULL;

	if (size > UNIX_POOL_MAX_EVENT)
		return NULL;
	for (guint i = 0; i < p->bufs->len; i++) {
		UnixPoolBuf *b = p->bufs->pdata[i];
		if (b->busy)
			continue;
		if (b->size >= size && (!fit || b->size < fit->size))
			fit = b;
		else if (!spare)
			spare = b;
	}
	if (!fit) {
		size_t want = TX_POOL_MIN_BUF;
		while (want < size)
			want <<= 1;
		/*
		 * Room for a new buffer, if need be by dropping a free one too
		 * small. The new one takes the dropped one's id, so that the
		 * receiver replaces its mapping rather than keeping both: the ids
		 * in use never exceed TX_POOL_MAX_BUFS.
		 */
		if (p->bufs->len >= TX_POOL_MAX_BUFS || p->bytes + want > TX_POOL_MAX_BYTES) {
			if (!spare || p->bytes - spare->size + want > TX_POOL_MAX_BYTES)
				return NULL;
			fit = pool_buf_new(spare->id, want);
			if (!fit)
				return NULL;
			p->bytes -= spare->size;
			g_ptr_array_remove_fast(p->bufs, spare);
		} else {
			fit = pool_buf_new(p->next_id, want);
			if (!fit)
				return NULL;
			p->next_id++;
		}
		p->bytes += want;
		g_ptr_array_add(p->bufs, fit);
	}
	fit->busy = TRUE;
	return fit;
}

gboolean unix_tx_pool_release(UnixTxPool *p, guint32 id)
{
	for (guint i = 0; p && i < p->bufs->len; i++) {
		UnixPoolBuf *b = p->bufs->pdata[i];
		if (b->id == id) {
			if (!b->busy)
				return FALSE;
			b->busy = FALSE;
			return TRUE;
		}
	}
	return FALSE;
}

UnixRxPool *unix_rx_pool_new(void)
{
	UnixRxPool *p = g_new0(UnixRxPool, 1);
	p->bufs = g_array_new(FALSE, FALSE, sizeof(RxBuf));
	p->cache = g_new0(CopyCache, 1);
	p->cache->ref = 1;
	g_mutex_init(&p->cache->lock);
	p->cache->free_blocks = g_ptr_array_new();
	return p;
}

void unix_rx_pool_free(UnixRxPool *p)
{
	if (!p)
		return;
	for (guint i = 0; i < p->bufs->len; i++) {
		RxBuf *b = &g_array_index(p->bufs, RxBuf, i);
		munmap((void *)b->map, b->size);
	}
	g_array_free(p->bufs, TRUE);
	g_mutex_lock(&p->cache->lock);
	p->cache->closed = TRUE;
	g_mutex_unlock(&p->cache->lock);
	copy_cache_unref(p->cache);
	g_free(p);
}

static gint rx_find(UnixRxPool *p, guint32 id)
{
	for (guint i = 0; i < p->bufs->len; i++)
		if (g_array_index(p->bufs, RxBuf, i).id == id)
			return (gint)i;
	return -1;
}

const char *unix_rx_pool_add(UnixRxPool *p, guint32 id, int memfd)
{
	struct stat st;
	int seals = fcntl(memfd, F_GET_SEALS);

	/* A memfd (only those have seals) whose size cannot change under us. */
	if (seals < 0 || !(seals & F_SEAL_SHRINK))
		return "pool buffer that is not a memfd sealed against shrinking";
	if (fstat(memfd, &st) < 0 || st.st_size <= 0 || (uint64_t)st.st_size > UNIX_POOL_MAX_EVENT * 2)
		return "pool buffer of a bad size";
	size_t size = (size_t)st.st_size;
	gint k = rx_find(p, id);
	size_t old = k >= 0 ? g_array_index(p->bufs, RxBuf, k).size : 0;
	if ((k < 0 && p->bufs->len >= RX_POOL_MAX_BUFS) || p->bytes - old + size > RX_POOL_MAX_BYTES)
		return "too many pool buffers";
	void *map = mmap(NULL, size, PROT_READ, MAP_SHARED, memfd, 0);
	if (map == MAP_FAILED)
		return "cannot map a pool buffer";
	if (k >= 0) {
		/* The sender dropped that buffer and made a new one with its id. */
		RxBuf *b = &g_array_index(p->bufs, RxBuf, k);
		munmap((void *)b->map, b->size);
		p->bytes -= b->size;
		b->map = map;
		b->size = size;
	} else {
		RxBuf b = {id, map, size};
		g_array_append_val(p->bufs, b);
	}
	p->bytes += size;
	return NULL;
}

const uint8_t *unix_rx_pool_copy(UnixRxPool *p, guint32 id, size_t size,
				 void (**ret_free)(void *), void **ret_owner, const char **ret_reason)
{
	gint k = rx_find(p, id);
	if (k < 0) {
		*ret_reason = "event in an unknown pool buffer";
		return NULL;
	}
	RxBuf *b = &g_array_index(p->bufs, RxBuf, k);
	if (size == 0 || size > b->size) {
		*ret_reason = "pooled event of a bad size";
		return NULL;
	}
	/* A copy: the sender can write the buffer again once it is released. */
	CopyBlock *block = copy_block_get(p->cache, size);
	memcpy(block->data, b->map, size);
	*ret_free = copy_block_return;
	*ret_owner = block;
	return block->data;
}
