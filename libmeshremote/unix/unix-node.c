/* SPDX-License-Identifier: MIT */
/*
 * The Unix transport (upstream mesh_remote unix_node, reference section 2):
 * one SOCK_SEQPACKET socket per pair of nodes, 8-byte packet headers, large
 * events in sealed memfds, a send fast path on the caller's thread and a
 * queue drained by the I/O context, and the half-close lifecycle.
 */
#include <errno.h>
#include <fcntl.h>
#include <glib-unix.h>
#include <pal/pal.h>
#include <poll.h>
#include <sys/mman.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sys/stat.h>

#include "unix-node-private.h"
#include "unix-ring-private.h"

#define PACKET_HEADER_SIZE 8
#define PACKET_EVENT 1
#define PACKET_LARGE_EVENT 3
/*
 * Beyond upstream: several events in one packet, sent only to a peer that
 * announced it reads them (see batch_hello). Body: per event, a u32 LE
 * size, a u16 LE fd count, two zero bytes, then the event; the packet's
 * fds are the events' fds in order.
 */
#define PACKET_BATCH 0x80
#define BATCH_ENTRY_HEADER 8
/*
 * Beyond upstream too (unix-pool.c): a large event in a reused buffer of
 * the sender's pool, and the receiver's word that the buffer is free.
 * POOL_EVENT body: u32 LE buffer id, u32 LE flags (POOL_NEW: the first fd
 * is the buffer's memfd), u64 LE event size; the other fds are the
 * event's. POOL_RELEASE body: u32 LE buffer id, 4 zero bytes.
 */
#define PACKET_POOL_EVENT 0x81
#define PACKET_POOL_RELEASE 0x82
#define POOL_EVENT_BODY 16
#define POOL_RELEASE_BODY 8
#define POOL_NEW 0x1
/*
 * Beyond upstream too (unix-ring.c, "The shared-memory ring" below): each
 * side's ring, sent once. Body: u32 LE ring data size, u32 LE zero; fds:
 * the sender's ring memfd (it produces), then the eventfd it polls for the
 * peer's ring (it consumes).
 */
#define PACKET_RING_SETUP 0x83
#define RING_SETUP_BODY 8
/*
 * A one-way stream: after this many events sent with no packet back from
 * the peer, sends to a peer that reads batches queue for the I/O context,
 * which sends what gathered meanwhile as batches (one wakeup per batch, not
 * one sendmsg per event). A request/response pattern never gets there.
 */
#define STREAM_STREAK 16
#define MAX_SMALL_EVENT_SIZE (MESH_UNIX_MAX_PACKET_SIZE - PACKET_HEADER_SIZE)
/* Packets per recvmmsg(), and recvmmsg() calls per dispatch before other sources run. */
#define RX_BATCH 16
#define RX_ROUNDS 1
/* Ring entries per dispatch before other sources run. */
#define RING_BUDGET 64
/* Events handed to the node at once (mesh_node_receive_events()). */
#define RING_DELIVER_RUN 64
#define BATCH_DELIVER_RUN 64

typedef struct {
	uint8_t header[PACKET_HEADER_SIZE];
	uint8_t *body; /* owned; NULL for a large event */
	size_t body_size;
	int fds[MESH_UNIX_MAX_FDS_PER_PACKET]; /* owned */
	size_t n_fds;
	size_t large_size; /* a large event's size (its memfd is fds[0]) */
} OutPacket;

/* What a queued packet holds, for the connection's send limit. */
static size_t out_packet_cost(const OutPacket *pk)
{
	return pk->body_size + pk->large_size;
}

typedef struct UnixConn UnixConn;

struct UnixConn {
	gint ref;
	MeshUnixNode *owner; /* weak: the owner cuts every connection before it goes */
	/* The owner's I/O thread (NULL on a caller's context), alive by a reference on its hook. */
	UnixIo *io;
	MeshIoHook *io_hook;
	MeshRemoteNode *remote;
	MeshNodeId peer;
	int fd;
	GMutex lock; /* the send side and the fd's life */
	GQueue pending;
	size_t pending_bytes; /* out_packet_cost() of the queue */
	GCond room;           /* senders that wait for pending_bytes to go below the limit */
	guint room_waiters;
	gboolean write_wanted; /* the I/O context watches for POLLOUT */
	gboolean send_closed;  /* no more sends: flush, then SHUT_WR */
	gboolean write_shut;
	gboolean ended;
	gboolean broken;   /* a send failed: nothing more goes out, conn_end is on its way */
	gboolean confirmed; /* it ended with the peer's end of stream after ours */
	gboolean flushing; /* a thread sends queued packets (outside the lock) */
	gboolean peer_batches; /* the peer said it reads PACKET_BATCH */
	gboolean peer_is_c;    /* its hello came, or the invitation named its flags */
	gint peer_pools;       /* atomic (read unlocked by senders): ... and PACKET_POOL_EVENT */
	UnixTxPool *tx_pool;   /* under lock, made on first use */
	UnixRxPool *rx_pool;   /* the receive path's (one dispatcher at a time) */
	gint streak; /* atomic: events sent since a packet last came from the peer */
	/* The shared-memory ring (HELLO_RING); under lock: */
	gboolean peer_rings;     /* the peer said it reads rings */
	gboolean ring_setup_sent; /* ours went: socket packets carry stamps from then on */
	gboolean ring_tx_on;     /* the peer's setup came: small events may go by the ring */
	UnixTxRing *tx_ring;
	guint32 tx_sock_seq; /* socket packets sent since (and with) our setup */
	/* The receive side's (the I/O context's): */
	UnixRxRing *rx_ring;  /* made with our setup (its eventfd), mapped at the peer's */
	gboolean rx_ring_on;  /* the peer's setup came: its socket packets carry stamps */
	guint32 rx_sock_seq;  /* socket packets of the peer taken since (and with) its setup */
	gboolean rx_hint_off; /* the ring's count of socket packets lied once: not used */
	GSource *ring_source;
	gint ring_wake_due; /* atomic: a stream's deferred wake-up is scheduled */
	GSource *source;
	gpointer fd_tag;
};

static UnixConn *conn_ref(UnixConn *c)
{
	g_atomic_int_inc(&c->ref);
	return c;
}

static gpointer conn_copy(gconstpointer c, gpointer unused)
{
	return conn_ref((UnixConn *)c);
}

static void out_packet_free(OutPacket *pk)
{
	for (size_t i = 0; i < pk->n_fds; i++)
		close(pk->fds[i]);
	g_free(pk->body);
	g_free(pk);
}

static void conn_unref(UnixConn *c)
{
	if (!c || !g_atomic_int_dec_and_test(&c->ref))
		return;
	OutPacket *pk;
	while ((pk = g_queue_pop_head(&c->pending)))
		out_packet_free(pk);
	/* Its socket and ring eventfd may still be in the poller's array: see unix_io_lock_fds(). */
	unix_io_lock_fds(c->io);
	unix_io_forget_fd(c->io, c->fd);
	if (c->rx_ring)
		unix_io_forget_fd(c->io, unix_rx_ring_get_eventfd(c->rx_ring));
	if (c->fd >= 0)
		close(c->fd);
	unix_rx_ring_free(c->rx_ring);
	unix_io_unlock_fds(c->io);
	unix_tx_pool_free(c->tx_pool);
	unix_rx_pool_free(c->rx_pool);
	unix_tx_ring_free(c->tx_ring);
	mesh_io_hook_unref(c->io_hook);
	g_cond_clear(&c->room);
	g_mutex_clear(&c->lock);
	g_free(c);
}

/* One sendmsg of @pk; 0, -EAGAIN or another negative errno. */
static int packet_send(int fd, const uint8_t *header, const uint8_t *body, size_t body_size,
		       const int *fds, size_t n_fds)
{
	struct iovec iov[2] = {{(void *)header, PACKET_HEADER_SIZE}, {(void *)body, body_size}};
	ssize_t r = pal_send_with_fds(fd, iov, body_size ? 2 : 1, fds, n_fds, MSG_DONTWAIT);
	if (r < 0)
		return (int)r;
	return (size_t)r == PACKET_HEADER_SIZE + body_size ? 0 : -EMSGSIZE;
}

static gboolean conn_end_cb(gpointer data);

typedef struct {
	UnixConn *conn;
	char *reason; /* NULL: clean end of stream */
} EndRequest;

static void end_request_free(gpointer data)
{
	EndRequest *req = data;
	conn_unref(req->conn);
	g_free(req->reason);
	g_free(req);
}

/*
 * Runs @func(@data) on @c's I/O context soon, never at once on this thread
 * (g_main_context_invoke() would, on a context this thread owns or nobody
 * holds); a context lent to a receiver that is away is taken back for it.
 * Takes only the context's lock (and the I/O thread's): callable with
 * c->lock held, from any thread.
 */
static void conn_schedule(UnixConn *c, GSourceFunc func, gpointer data, GDestroyNotify destroy)
{
	MeshUnixNode *u = c->owner;

	unix_io_reclaim(u->io);
	GSource *source = g_idle_source_new();
	g_source_set_priority(source, G_PRIORITY_DEFAULT);
	/* @data goes with the source, run or not (a context freed first). */
	g_source_set_callback(source, func, data, destroy);
	g_source_attach(source, u->context);
	g_source_unref(source);
}

/*
 * Ends @c on its I/O context, from any thread, with c->lock held or not:
 * ending fails the remote node, which runs port handlers and callbacks, so
 * it never runs where the caller may hold a lock (a send, a flush, a
 * dispatch in progress) but from a source of its own.
 */
static void conn_end_async(UnixConn *c, const char *reason)
{
	EndRequest *req = g_new0(EndRequest, 1);
	req->conn = conn_ref(c);
	req->reason = g_strdup(reason);
	conn_schedule(c, conn_end_cb, req, end_request_free);
}

/* A send failed (locked): nothing more is sent or queued; the connection ends soon. */
static void conn_break_locked(UnixConn *c, const char *reason)
{
	if (c->broken || c->ended)
		return;
	c->broken = TRUE;
	g_cond_broadcast(&c->room); /* nothing will be sent: waiting senders give up */
	conn_end_async(c, reason);
}

static void conn_note_sent_locked(UnixConn *c);

/*
 * Sends what is queued; then, once closed for sending, half-closes. Locked;
 * the lock is let go around each sendmsg(), so that senders keep queueing
 * (and batching) meanwhile; while c->flushing, they do not send directly,
 * which would overtake the packet in flight. A failed send breaks the
 * connection, which ends later on its own source (conn_break_locked()).
 */
static void conn_flush_locked(UnixConn *c)
{
	OutPacket *pk;

	if (c->flushing)
		return; /* the thread that flushes looks at the queue again before it stops */
	c->flushing = TRUE;
	while (!c->ended && !c->broken && (pk = g_queue_pop_head(&c->pending))) {
		g_mutex_unlock(&c->lock);
		int r = packet_send(c->fd, pk->header, pk->body, pk->body_size, pk->fds, pk->n_fds);
		size_t cost = out_packet_cost(pk);
		if (r != -EAGAIN)
			out_packet_free(pk);
		g_mutex_lock(&c->lock);
		if (r != -EAGAIN) {
			c->pending_bytes -= MIN(cost, c->pending_bytes);
			if (c->room_waiters && c->pending_bytes < c->owner->send_limit)
				g_cond_broadcast(&c->room);
		}
		if (r == -EAGAIN) {
			g_queue_push_head(&c->pending, pk);
			break;
		}
		if (r < 0) {
			conn_break_locked(c, g_strerror(-r));
			break;
		}
	}
	c->flushing = FALSE;
	if (!c->broken)
		conn_note_sent_locked(c);
	if (c->pending.length == 0 && c->send_closed && !c->write_shut && !c->broken) {
		shutdown(c->fd, SHUT_WR);
		c->write_shut = TRUE;
	}
}

static void conn_update_interest_locked(UnixConn *c)
{
	GIOCondition want = G_IO_IN | G_IO_HUP | G_IO_ERR;
	/* Broken: what is queued is never sent (no wakeups for it until the end). */
	gboolean out = c->pending.length > 0 && !c->broken;
	if (out)
		want |= G_IO_OUT;
	if (c->source && c->fd_tag)
		g_source_modify_unix_fd(c->source, c->fd_tag, want);
	c->write_wanted = out;
}

static gboolean conn_write_source_cb(gpointer data)
{
	UnixConn *c = data;

	g_mutex_lock(&c->lock);
	if (!c->ended) {
		conn_flush_locked(c);
		conn_update_interest_locked(c);
	}
	g_mutex_unlock(&c->lock);
	return G_SOURCE_REMOVE;
}

static void schedule_write(UnixConn *c)
{
	MeshUnixNode *u = c->owner;

	if (!u->io) {
		g_main_context_invoke_full(u->context, G_PRIORITY_DEFAULT, conn_write_source_cb,
					   conn_ref(c), (GDestroyNotify)conn_unref);
		return;
	}
	/*
	 * Own I/O thread: always through a source, never run here at once, so
	 * that sends gather into batches while the I/O context flushes.
	 */
	conn_schedule(c, conn_write_source_cb, conn_ref(c), (GDestroyNotify)conn_unref);
}

/* Queues @pk (taken) and unlocks; schedules a flush unless one is due. Locked. */
static void conn_enqueue_unlock(UnixConn *c, OutPacket *pk)
{
	g_queue_push_tail(&c->pending, pk);
	c->pending_bytes += out_packet_cost(pk);
	gboolean schedule = !c->write_wanted;
	c->write_wanted = TRUE;
	g_mutex_unlock(&c->lock);
	if (schedule)
		schedule_write(c);
}

/*
 * Once our ring setup went, every socket packet carries the ring's write
 * position at its place in the stream (header bytes 4-7, u32 LE), so that
 * the peer delivers the ring's entries before it up to there. Sets the
 * bytes only; conn_count_packet_locked() counts the packet once it is sent
 * or queued as a packet of its own. Locked.
 */
static void conn_stamp_locked(UnixConn *c, uint8_t *header)
{
	if (!c->ring_setup_sent)
		return;
	guint32 pos = GUINT32_TO_LE(unix_tx_ring_pos(c->tx_ring));
	memcpy(header + 4, &pos, 4);
}

static void conn_count_packet_locked(UnixConn *c)
{
	if (c->ring_setup_sent)
		c->tx_sock_seq++;
}

/*
 * Once every counted packet is in the socket (none queued or in flight),
 * tells the peer how many through our ring's header: its reader then takes
 * them without a poll (conn_hinted()). Locked.
 */
static void conn_note_sent_locked(UnixConn *c)
{
	if (c->ring_setup_sent && c->tx_ring && c->pending.length == 0 && !c->flushing)
		unix_tx_ring_set_sock_sent(c->tx_ring, c->tx_sock_seq);
}

/* Sends a small packet without fds from the transport itself (any thread, unlocked). */
static void conn_send_control(UnixConn *c, uint8_t type, const uint8_t *body, size_t size)
{
	uint8_t header[PACKET_HEADER_SIZE] = {type};

	g_mutex_lock(&c->lock);
	if (c->ended || c->broken || c->send_closed) {
		g_mutex_unlock(&c->lock);
		return;
	}
	int r = -EAGAIN;
	conn_stamp_locked(c, header);
	conn_count_packet_locked(c);
	if (c->pending.length == 0 && !c->flushing)
		r = packet_send(c->fd, header, body, size, NULL, 0);
	if (r == -EAGAIN) {
		OutPacket *pk = g_new0(OutPacket, 1);
		memcpy(pk->header, header, PACKET_HEADER_SIZE);
		pk->body = g_memdup2(body, size);
		pk->body_size = size;
		conn_enqueue_unlock(c, pk);
		return;
	}
	if (r < 0)
		conn_break_locked(c, g_strerror(-r));
	else
		conn_note_sent_locked(c);
	g_mutex_unlock(&c->lock);
}

#define SINK_MAX_IOV 4

/* One sendmsg of the packet header and the body pieces. */
static int packet_sendv(int fd, const uint8_t *header, const struct iovec *body, size_t n_body,
			const int *fds, size_t n_fds)
{
	struct iovec iov[1 + SINK_MAX_IOV] = {{(void *)header, PACKET_HEADER_SIZE}};
	size_t total = PACKET_HEADER_SIZE;
	for (size_t i = 0; i < n_body; i++) {
		iov[1 + i] = body[i];
		total += body[i].iov_len;
	}
	ssize_t r = pal_send_with_fds(fd, iov, 1 + n_body, fds, n_fds, MSG_DONTWAIT);
	if (r < 0)
		return (int)r;
	return (size_t)r == total ? 0 : -EMSGSIZE;
}

/* Copies the pieces of @iov to @dst, one after the other; returns the bytes copied. */
static size_t iov_gather(uint8_t *dst, const struct iovec *iov, size_t n_iov)
{
	size_t off = 0;
	for (size_t i = 0; i < n_iov; i++) {
		memcpy(dst + off, iov[i].iov_base, iov[i].iov_len);
		off += iov[i].iov_len;
	}
	return off;
}

/* Writes the pieces into a new memfd. Returns the fd or -errno. */
static int large_event_write(const struct iovec *iov, size_t n_iov, size_t size)
{
	size_t mapped = (size + 4095) & ~(size_t)4095;
	int memfd = pal_memfd_create("mesh", mapped);
	if (memfd < 0)
		return memfd;
	off_t off = 0;
	for (size_t i = 0; i < n_iov; i++) {
		const uint8_t *p = iov[i].iov_base;
		for (size_t done = 0; done < iov[i].iov_len;) {
			ssize_t k = pwrite(memfd, p + done, iov[i].iov_len - done, off);
			if (k <= 0) {
				close(memfd);
				return k < 0 ? -errno : -EIO;
			}
			done += (size_t)k;
			off += k;
		}
	}
	return memfd;
}

/*
 * Writes the pieces into a new sealed memfd (a large event). Returns the fd
 * or -errno.
 *
 * F_SEAL_WRITE fails with EBUSY while the file has a writable shared
 * mapping, or while a page has a reference beyond the page cache's and the
 * mappings' (a pin by direct or asynchronous I/O, a page in a CPU's batch
 * for the LRU, one isolated for compaction or reclaim). The memfd is never
 * mapped or pinned here: it is written with pwrite(), so the only such
 * references are the kernel's own, passing ones, and the kernel waits for
 * those itself (it drains every CPU's batch, then checks again for about
 * 150 ms). Should a page stay referenced past that, no timer here would know
 * when it is let go: the event goes once more into a fresh memfd, whose
 * pages are new, and a second refusal ends the connection.
 */
static int large_event_memfd(const struct iovec *iov, size_t n_iov, size_t size)
{
	int r = -EBUSY;
	for (int attempt = 0; attempt < 2 && r == -EBUSY; attempt++) {
		int memfd = large_event_write(iov, n_iov, size);
		if (memfd < 0)
			return memfd;
		r = pal_memfd_seal(memfd);
		if (r == 0)
			return memfd;
		close(memfd);
	}
	return r;
}

/*
 * The hello: an EVENT packet whose event is a MESSAGE to a port id that no
 * node has; a C node reads its payload ("MC", then u16 LE flags) as what
 * the peer reads beyond upstream. It goes first on a connection, and only
 * to a peer known to be a C node (upstream logs an event to an unknown port
 * as a node event failure): a joiner whose invitation carries the leader's
 * flags sends it (the leader learns from it), both ends of an introduction
 * the leader marked as between C nodes send it, and so does
 * mesh_unix_node_connect_take(). None with MESH_UNIX_BATCH=0,
 * MESH_UNIX_POOL=0, MESH_UNIX_EXT_MOVES=0 and MESH_UNIX_RING=0 (the
 * upstream wire).
 * HELLO_MOVES: the node reads and sends MESH_EVENT_PROXY_DONE (port.c: a
 * port moved in fails with the mover).
 *
 * The shared-memory ring (HELLO_RING, unix-ring.c; off with
 * MESH_UNIX_RING=0): a side that knows the peer reads rings (its hello or
 * invitation) sends PACKET_RING_SETUP with its own ring (it produces) and
 * the eventfd it polls for the peer's (it consumes); it also sends its
 * setup on receipt of the peer's, and writes its ring once the peer's
 * setup came. Small events without fds go into the ring when it has room,
 * everything else on the socket. The connection's order stays whole in
 * both directions between the two paths: from our setup on, every socket
 * packet carries the ring's write position (header bytes 4-7), and the
 * reader delivers the entries before it first; every entry carries its
 * gate, the socket packets sent before it, and waits for them. (The
 * ports' sequence numbers would reorder one port's events, not events of
 * different ports, nor events for a port whose carrier has not arrived.)
 */
#define HELLO_BATCH 0x1
#define HELLO_POOL 0x2
#define HELLO_MOVES 0x4
#define HELLO_RING 0x8
static const uint8_t hello_port[16] = "mesh-c:hello:v1";
#define HELLO_PAYLOAD 4
#define HELLO_EVENT_HEADER 40 /* upstream's event header (protocol.rs) */
#define HELLO_SIZE (PACKET_HEADER_SIZE + HELLO_EVENT_HEADER + HELLO_PAYLOAD)

static gboolean env_switch(const char *name, gint *cache)
{
	if (g_atomic_int_get(cache) < 0) {
		const char *v = g_getenv(name);
		g_atomic_int_set(cache, !(v && g_strcmp0(v, "0") == 0));
	}
	return g_atomic_int_get(cache);
}

gboolean unix_batching_enabled(void)
{
	static gint enabled = -1;
	return env_switch("MESH_UNIX_BATCH", &enabled);
}

gboolean unix_pooling_enabled(void)
{
	static gint enabled = -1;
	return env_switch("MESH_UNIX_POOL", &enabled);
}

gboolean unix_ring_enabled(void)
{
	static gint enabled = -1;
	return env_switch("MESH_UNIX_RING", &enabled);
}

gboolean unix_ext_moves_enabled(void)
{
	static gint enabled = -1;
	return env_switch("MESH_UNIX_EXT_MOVES", &enabled);
}

static void hello_build(uint8_t out[HELLO_SIZE], guint16 flags)
{
	/*
	 * The event header: port id[16], type, flags, 6 zero bytes, seq (u64),
	 * resource count (u32), message size (u32), little-endian: a MESSAGE
	 * (type 1, flag MESSAGE 0x1) of HELLO_PAYLOAD bytes, seq 0.
	 */
	uint8_t *h = out + PACKET_HEADER_SIZE;
	memset(out, 0, HELLO_SIZE);
	out[0] = PACKET_EVENT;
	memcpy(h, hello_port, sizeof(hello_port));
	h[16] = 1;
	h[17] = 0x1;
	h[36] = HELLO_PAYLOAD;
	uint8_t *payload = h + HELLO_EVENT_HEADER;
	payload[0] = 'M';
	payload[1] = 'C';
	payload[2] = flags & 0xff;
	payload[3] = flags >> 8;
}

guint unix_hello_flags(void)
{
	return (unix_batching_enabled() ? HELLO_BATCH : 0) | (unix_pooling_enabled() ? HELLO_POOL : 0) |
	       (unix_ext_moves_enabled() ? HELLO_MOVES : 0) | (unix_ring_enabled() ? HELLO_RING : 0);
}

/* What the peer reads, from its hello or its invitation: @c locked. */
static void conn_apply_hello_locked(UnixConn *c, guint hello)
{
	c->peer_is_c = TRUE;
	c->peer_batches = unix_batching_enabled() && (hello & HELLO_BATCH);
	g_atomic_int_set(&c->peer_pools, unix_pooling_enabled() && (hello & HELLO_POOL));
	c->peer_rings = unix_ring_enabled() && (hello & HELLO_RING);
	/* Before any event of the peer: the hello comes first. */
	if (!c->ended && c->remote)
		mesh_remote_node_set_features(c->remote, unix_ext_moves_enabled() &&
								 (hello & HELLO_MOVES)
							 ? MESH_REMOTE_FEATURE_PROXY_DONE
							 : 0);
}

/* The peer's hello flags, or -1 if the packet is no hello. */
static int hello_parse(const uint8_t *buf, size_t size)
{
	uint8_t hello[HELLO_SIZE];
	if (size != HELLO_SIZE)
		return -1;
	hello_build(hello, 0);
	if (memcmp(buf, hello, HELLO_SIZE - 2) != 0)
		return -1;
	return buf[HELLO_SIZE - 2] | buf[HELLO_SIZE - 1] << 8;
}

static void put_entry_header(uint8_t *p, size_t event_size, size_t n_fds)
{
	uint32_t size = GUINT32_TO_LE((uint32_t)event_size);
	uint16_t nf = GUINT16_TO_LE((uint16_t)n_fds);
	memcpy(p, &size, 4);
	memcpy(p + 4, &nf, 2);
	p[6] = p[7] = 0;
}

/*
 * Appends an event to the queued packet @pk, making a batch of it: only a
 * small, unsent EVENT or BATCH packet with room. Locked.
 */
static gboolean out_packet_append(OutPacket *pk, const struct iovec *iov, size_t n_iov,
				  size_t size, const int *fds, size_t n_fds)
{
	if (pk->header[0] != PACKET_EVENT && pk->header[0] != PACKET_BATCH)
		return FALSE;
	size_t need = BATCH_ENTRY_HEADER + size;
	size_t have = pk->body_size + (pk->header[0] == PACKET_EVENT ? BATCH_ENTRY_HEADER : 0);
	if (have + need > MAX_SMALL_EVENT_SIZE || pk->n_fds + n_fds > MESH_UNIX_MAX_FDS_PER_PACKET)
		return FALSE;
	int dups[MESH_UNIX_MAX_FDS_PER_PACKET];
	for (size_t i = 0; i < n_fds; i++) {
		dups[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
		if (dups[i] < 0) {
			while (i-- > 0)
				close(dups[i]);
			return FALSE;
		}
	}
	if (pk->header[0] == PACKET_EVENT) {
		/* The queued event becomes the batch's first entry. */
		uint8_t *body = g_malloc(MAX_SMALL_EVENT_SIZE);
		put_entry_header(body, pk->body_size, pk->n_fds);
		if (pk->body_size)
			memcpy(body + BATCH_ENTRY_HEADER, pk->body, pk->body_size);
		g_free(pk->body);
		pk->body = body;
		pk->body_size += BATCH_ENTRY_HEADER;
		pk->header[0] = PACKET_BATCH;
	}
	put_entry_header(pk->body + pk->body_size, size, n_fds);
	pk->body_size += BATCH_ENTRY_HEADER;
	pk->body_size += iov_gather(pk->body + pk->body_size, iov, n_iov);
	for (size_t i = 0; i < n_fds; i++)
		pk->fds[pk->n_fds++] = dups[i];
	return TRUE;
}

/*
 * One more event sent: TRUE if STREAM_STREAK or more went before it since
 * the peer last sent a packet (a one-way stream). The count stops there,
 * so that a long stream makes no locked add per event (nor overflows it);
 * a packet from the peer resets it on the I/O thread.
 */
static gboolean conn_streak_step(UnixConn *c)
{
	if (g_atomic_int_get(&c->streak) >= STREAM_STREAK)
		return TRUE;
	return g_atomic_int_add(&c->streak, 1) >= STREAM_STREAK;
}

/* A stream's deferred wake-up of the peer's ring consumer (on the I/O context). */
static gboolean ring_wake_cb(gpointer data)
{
	UnixConn *c = data;

	g_atomic_int_set(&c->ring_wake_due, 0);
	unix_tx_ring_wake(c->tx_ring);
	return G_SOURCE_REMOVE;
}

/* MeshEventSink.send: on the caller's thread; the event is the concatenation of @iov. */
/*
 * The queue holds the send limit or more (a peer that does not read):
 * waits for room, up to the node's send timeout. A thread that runs the I/O
 * context (the I/O thread, a borrower, a dispatch on a caller's context)
 * never waits, since it is the one that writes the queue out: it may queue
 * up to twice the limit. On a caller's context that nobody runs, a thread
 * that may run it iterates it meanwhile. FALSE: no room (the connection is
 * then to break), TRUE also when it ended meanwhile. Locked.
 */
static gboolean conn_wait_room_locked(UnixConn *c)
{
	MeshUnixNode *u = c->owner;

	if (g_main_context_is_owner(u->context))
		return c->pending_bytes < 2 * u->send_limit;
	if (u->send_timeout_us <= 0)
		return FALSE;
	gint64 deadline = g_get_monotonic_time() + u->send_timeout_us;
	gboolean in_time = TRUE;
	while (in_time && c->pending_bytes >= u->send_limit && !c->ended && !c->broken) {
		if (!u->io && u->context_hook && mesh_io_hook_acquire_context(u->context_hook)) {
			g_mutex_unlock(&c->lock);
			in_time = !mesh_main_context_iterate_until(u->context, deadline);
			g_main_context_release(u->context);
			g_mutex_lock(&c->lock);
			continue;
		}
		c->room_waiters++;
		in_time = g_cond_wait_until(&c->room, &c->lock, deadline);
		c->room_waiters--;
	}
	return c->pending_bytes < u->send_limit || c->ended || c->broken;
}

/* Whether each of @fds is open (a failed send's slow path). */
static gboolean fds_all_open(const int *fds, size_t n_fds)
{
	for (size_t i = 0; i < n_fds; i++)
		if (fcntl(fds[i], F_GETFD) < 0)
			return FALSE;
	return TRUE;
}

/*
 * MeshEventSink.send and .try_send (@report): with @report, an fd of @fds
 * that is not open is reported (-EBADF, nothing sent, nothing kept)
 * instead of ending the connection. On the fast path that costs nothing:
 * the sendmsg() fails with EBADF before it sends anything, and only then
 * are the fds looked at. An event out of line (a pool buffer or a memfd
 * is written first), and one that is queued (its fds duplicated), has its
 * fds checked before that work.
 */
static int sink_send_full(UnixConn *c, const struct iovec *iov, size_t n_iov, const int *fds,
			  size_t n_fds, gboolean report)
{
	uint8_t header[PACKET_HEADER_SIZE] = {PACKET_EVENT};
	int memfd = -1;
	size_t size = 0;

	if (n_iov > SINK_MAX_IOV) {
		conn_end_async(c, "an event in too many pieces");
		return 0;
	}
	for (size_t i = 0; i < n_iov; i++)
		size += iov[i].iov_len;
	/*
	 * Out of line, the buffer's or the memfd's fd rides first: count it
	 * before any work. The node refuses such a message before it gets here
	 * (unix_max_fds()); this is the last line.
	 */
	if (n_fds + (size > MAX_SMALL_EVENT_SIZE) > MESH_UNIX_MAX_FDS_PER_PACKET) {
		g_warning("mesh: an event with %zu fds exceeds %d per packet", n_fds,
			  MESH_UNIX_MAX_FDS_PER_PACKET);
		conn_end_async(c, "too many fds in one event");
		return 0;
	}
	if (report && size > MAX_SMALL_EVENT_SIZE && !fds_all_open(fds, n_fds))
		return -EBADF;
	uint8_t pool_body[POOL_EVENT_BODY];
	struct iovec pool_iov = {pool_body, sizeof(pool_body)};
	int lead_fd = -1; /* borrowed: a pool buffer's memfd, sent with its first use */
	UnixPoolBuf *buf = NULL;
	if (size > MAX_SMALL_EVENT_SIZE && g_atomic_int_get(&c->peer_pools)) {
		g_mutex_lock(&c->lock);
		if (!c->tx_pool)
			c->tx_pool = unix_tx_pool_new();
		buf = unix_tx_pool_take(c->tx_pool, size);
		gboolean announce = buf && !buf->announced;
		if (buf)
			buf->announced = TRUE;
		g_mutex_unlock(&c->lock);
		if (buf) {
			/* Busy until the peer releases it: written outside the lock. */
			iov_gather(buf->map, iov, n_iov);
			guint32 id = GUINT32_TO_LE(buf->id);
			guint32 flags = GUINT32_TO_LE(announce ? POOL_NEW : 0);
			guint64 le_size = GUINT64_TO_LE((guint64)size);
			memcpy(pool_body, &id, 4);
			memcpy(pool_body + 4, &flags, 4);
			memcpy(pool_body + 8, &le_size, 8);
			if (announce)
				lead_fd = buf->fd;
			header[0] = PACKET_POOL_EVENT;
			iov = &pool_iov;
			n_iov = 1;
			size = sizeof(pool_body);
		}
	}
	if (size > MAX_SMALL_EVENT_SIZE) {
		/* Out of line: a sealed memfd holds the event; the packet has no body. */
		memfd = large_event_memfd(iov, n_iov, size);
		if (memfd < 0) {
			debug_log(LOG_FIELDS("MESH_NODE", LOG_ID(mesh_node_get_id(c->owner->node)), "MESH_PEER",
					     LOG_ID(&c->peer)),
				  "mesh: cannot send a %zu-byte event in a memfd: %s", size,
				  g_strerror(-memfd));
			conn_end_async(c, "cannot send a large event");
			return 0;
		}
		header[0] = PACKET_LARGE_EVENT;
		n_iov = 0;
	}
	int lead = memfd >= 0 ? memfd : lead_fd;
	size_t total_fds = n_fds + (lead >= 0);
	int all_fds[MESH_UNIX_MAX_FDS_PER_PACKET];
	size_t k = 0;
	if (lead >= 0)
		all_fds[k++] = lead;
	for (size_t i = 0; i < n_fds; i++)
		all_fds[k++] = fds[i];

	g_mutex_lock(&c->lock);
	if (c->ended || c->broken || c->send_closed) {
		g_mutex_unlock(&c->lock);
		if (memfd >= 0)
			close(memfd);
		return 0;
	}
	int r = -EAGAIN;
	gboolean small = header[0] == PACKET_EVENT;
	/*
	 * Through shared memory when it has room; the socket otherwise. A
	 * one-way stream past its first STREAM_STREAK events takes the
	 * socket's batches (to a peer that reads them): they reach the reader
	 * in one wake-up per flush, where the ring woke it once per run it
	 * caught up with (doc/performance.md, "stream_64B, round 7"). The
	 * ring's stamps keep the order across the switch, both ways. Not on a
	 * caller's context, which flushes batches only when it runs: there
	 * the ring wakes the reader at once.
	 */
	if (small && n_fds == 0 && c->ring_tx_on && size <= UNIX_RING_MAX_ENTRY &&
	    !(c->peer_batches && c->owner->io &&
	      g_atomic_int_get(&c->streak) >= STREAM_STREAK)) {
		const char *why = NULL;
		int wrote = unix_tx_ring_write(c->tx_ring, iov, n_iov, size, c->tx_sock_seq, &why);
		if (wrote < 0) {
			conn_break_locked(c, why);
			g_mutex_unlock(&c->lock);
			return 0;
		}
		if (wrote > 0) {
			/*
			 * A one-way stream: the I/O context wakes the peer once for
			 * what gathered meanwhile (as batches do on the socket),
			 * not once per event; at once when the ring fills up, so
			 * that a late I/O thread does not stall the stream, and on
			 * a caller's context, which may not run soon.
			 */
			gboolean defer = conn_streak_step(c) && c->owner->io &&
					 !unix_tx_ring_half_full(c->tx_ring);
			/*
			 * Read before the exchange: while a wake-up is due (most
			 * of a stream) the I/O thread owns that word's line, and
			 * a locked exchange per event bounced it between the two.
			 */
			if (defer && !g_atomic_int_get(&c->ring_wake_due) &&
			    g_atomic_int_compare_and_exchange(&c->ring_wake_due, 0, 1))
				conn_schedule(c, ring_wake_cb, conn_ref(c), (GDestroyNotify)conn_unref);
			g_mutex_unlock(&c->lock);
			if (!defer)
				unix_tx_ring_wake(c->tx_ring);
			return 0;
		}
	}
	if (c->pending_bytes >= c->owner->send_limit && !conn_wait_room_locked(c)) {
		char *why = g_strdup_printf("peer not reading: %zu bytes queued (limit %zu)",
					    c->pending_bytes, c->owner->send_limit);
		conn_break_locked(c, why);
		g_free(why);
	}
	if (c->ended || c->broken) {
		g_mutex_unlock(&c->lock);
		if (memfd >= 0)
			close(memfd);
		return 0;
	}
	conn_stamp_locked(c, header);
	gboolean streaming = c->peer_batches && small && conn_streak_step(c);
	if (c->pending.length == 0 && !c->flushing && !streaming)
		r = packet_sendv(c->fd, header, iov, n_iov, all_fds, total_fds);
	if (r == -EAGAIN && report && n_fds && !buf && !fds_all_open(fds, n_fds)) {
		/*
		 * Queued, the fds are duplicated one by one: a duplicate may
		 * take a closed fd's number and hide it. Looked at first.
		 */
		g_mutex_unlock(&c->lock);
		if (memfd >= 0)
			close(memfd);
		return -EBADF;
	}
	OutPacket *tail_pk = g_queue_peek_tail(&c->pending);
	size_t tail_cost = tail_pk ? out_packet_cost(tail_pk) : 0;
	if (r == -EAGAIN && small && c->peer_batches && tail_pk &&
	    memcmp(tail_pk->header + 4, header + 4, 4) == 0 &&
	    out_packet_append(tail_pk, iov, n_iov, size, fds, n_fds)) {
		/* Under load: one packet carries many events (the flush is scheduled). */
		c->pending_bytes += out_packet_cost(tail_pk) - tail_cost;
		g_mutex_unlock(&c->lock);
	} else if (r == -EAGAIN) {
		/* Queue a copy; the I/O context sends it when the socket drains. */
		OutPacket *pk = g_new0(OutPacket, 1);
		memcpy(pk->header, header, PACKET_HEADER_SIZE);
		size_t body_size = memfd >= 0 ? 0 : size;
		pk->large_size = memfd >= 0 ? size : 0;
		pk->body = body_size ? g_malloc(body_size) : NULL;
		if (body_size)
			iov_gather(pk->body, iov, n_iov);
		pk->body_size = body_size;
		for (size_t i = 0; i < total_fds; i++) {
			pk->fds[i] = (memfd >= 0 && i == 0) ? memfd
							    : fcntl(all_fds[i], F_DUPFD_CLOEXEC, 3);
			if (pk->fds[i] < 0) {
				int err = errno;
				pk->n_fds = i;
				out_packet_free(pk);
				if (report && err == EBADF && !buf) {
					g_mutex_unlock(&c->lock);
					return -EBADF; /* the memfd, if any, went with pk */
				}
				conn_break_locked(c, "cannot duplicate an fd");
				g_mutex_unlock(&c->lock);
				return 0;
			}
			pk->n_fds = i + 1;
		}
		memfd = -1; /* now the packet's */
		conn_count_packet_locked(c);
		conn_enqueue_unlock(c, pk);
	} else if (r == -EBADF && report && !buf && n_fds && !fds_all_open(fds, n_fds)) {
		/*
		 * Nothing went: the kernel checks the fds before it queues.
		 * (A pool buffer, announced to the peer with its first use,
		 * cannot be taken back: then the connection ends, as without
		 * @report; its fds were checked before it was taken.)
		 */
		g_mutex_unlock(&c->lock);
		if (memfd >= 0)
			close(memfd);
		return -EBADF;
	} else {
		conn_count_packet_locked(c);
		if (r < 0)
			conn_break_locked(c, g_strerror(-r));
		else
			conn_note_sent_locked(c);
		g_mutex_unlock(&c->lock);
	}
	if (memfd >= 0)
		close(memfd);
	return 0;
}

static void sink_send(void *user_data, const struct iovec *iov, size_t n_iov, const int *fds,
		      size_t n_fds)
{
	(void)sink_send_full(user_data, iov, n_iov, fds, n_fds, FALSE);
}

static int sink_try_send(void *user_data, const struct iovec *iov, size_t n_iov, const int *fds,
			 size_t n_fds)
{
	return sink_send_full(user_data, iov, n_iov, fds, n_fds, TRUE);
}


/* MeshEventSink.destroy: the remote node is gone; stop sending, half-close. */
static void sink_destroy(void *user_data)
{
	UnixConn *c = user_data;

	g_mutex_lock(&c->lock);
	c->send_closed = TRUE;
	g_mutex_unlock(&c->lock);
	schedule_write(c);
	conn_unref(c);
}

/* MeshTransportCaps.max_handles: an event out of line carries its memfd (or pool buffer) first. */
static gsize unix_max_fds(gsize event_size)
{
	return MESH_UNIX_MAX_FDS_PER_PACKET - (event_size > MAX_SMALL_EVENT_SIZE);
}

/* Checked by the node at the sender: only that port fails, not the connection. */
static const MeshTransportCaps unix_caps = {
	.version = 0,
	.max_handles = unix_max_fds,
};

static const MeshEventSink unix_sink = {
	.version = MESH_EVENT_SINK_VERSION,
	.send = sink_send,
	.destroy = sink_destroy,
	.caps = &unix_caps,
	.try_send = sink_try_send,
};

typedef struct {
	void *addr;
	size_t size;
} Mapping;

static void mapping_free(gpointer data)
{
	Mapping *m = data;
	munmap(m->addr, m->size);
	g_free(m);
}

/* A PACKET_BATCH body: checked whole first, then each event delivered in order. */
static const char *conn_handle_batch(UnixConn *c, const uint8_t *body, size_t size,
				     PalFdArray *fds)
{
	size_t n_fds = pal_fd_array_len(fds);
	size_t off = 0, fds_used = 0, n_events = 0;

	if (!unix_batching_enabled())
		return "unknown packet type";
	if (n_fds > MESH_UNIX_MAX_FDS_PER_PACKET)
		return "batch with too many fds";
	while (off < size) {
		uint32_t len;
		uint16_t nf;
		if (size - off < BATCH_ENTRY_HEADER)
			return "batch entry without its header";
		memcpy(&len, body + off, 4);
		memcpy(&nf, body + off + 4, 2);
		len = GUINT32_FROM_LE(len);
		nf = GUINT16_FROM_LE(nf);
		if (body[off + 6] || body[off + 7])
			return "batch entry with reserved bits set";
		off += BATCH_ENTRY_HEADER;
		if (len == 0 || len > size - off)
			return "batch entry of a bad size";
		if (nf > n_fds - fds_used)
			return "batch entry with missing fds";
		off += len;
		fds_used += nf;
		n_events++;
	}
	if (n_events == 0 || fds_used != n_fds)
		return "batch with fds left over, or empty";

	/* Handed over in runs: the node delivers a run of messages to a port at once. */
	MeshEventData events[BATCH_DELIVER_RUN];
	int moved[MESH_UNIX_MAX_FDS_PER_PACKET]; /* every fd of the packet at most */
	size_t n = 0;
	off = 0;
	fds_used = 0;
	while (off < size) {
		uint32_t len;
		uint16_t nf;
		memcpy(&len, body + off, 4);
		memcpy(&nf, body + off + 4, 2);
		len = GUINT32_FROM_LE(len);
		nf = GUINT16_FROM_LE(nf);
		off += BATCH_ENTRY_HEADER;
		for (size_t i = 0; i < nf; i++)
			moved[fds_used + i] = pal_fd_array_steal(fds, fds_used + i);
		events[n++] = (MeshEventData){body + off, len, moved + fds_used, nf};
		if (n == BATCH_DELIVER_RUN) {
			mesh_node_receive_events(c->owner->node, &c->peer, events, n);
			n = 0;
		}
		off += len;
		fds_used += nf;
	}
	mesh_node_receive_events(c->owner->node, &c->peer, events, n);
	return NULL;
}

static void conn_send_control(UnixConn *c, uint8_t type, const uint8_t *body, size_t size);

/* A PACKET_POOL_EVENT: copy the event out, release the buffer, deliver. */
static const char *conn_handle_pool_event(UnixConn *c, const uint8_t *body, size_t size,
					  PalFdArray *fds)
{
	size_t n_fds = pal_fd_array_len(fds);
	guint32 id, flags;
	guint64 event_size;
	const char *reason = NULL;

	if (!unix_pooling_enabled())
		return "unknown packet type";
	if (size != POOL_EVENT_BODY)
		return "pool event of a bad size";
	memcpy(&id, body, 4);
	memcpy(&flags, body + 4, 4);
	memcpy(&event_size, body + 8, 8);
	id = GUINT32_FROM_LE(id);
	flags = GUINT32_FROM_LE(flags);
	event_size = GUINT64_FROM_LE(event_size);
	if (flags & ~(guint32)POOL_NEW)
		return "pool event with unknown flags";
	if (event_size > UNIX_POOL_MAX_EVENT)
		return "pooled event too large";
	if (!c->rx_pool)
		c->rx_pool = unix_rx_pool_new();
	size_t first = 0;
	if (flags & POOL_NEW) {
		if (n_fds < 1)
			return "new pool buffer without its memfd";
		reason = unix_rx_pool_add(c->rx_pool, id, pal_fd_array_peek_data(fds)[0]);
		if (reason)
			return reason;
		first = 1;
	}
	void (*copy_free)(void *);
	void *event_owner;
	const uint8_t *event = unix_rx_pool_copy(c->rx_pool, id, (size_t)event_size, &copy_free,
						 &event_owner, &reason);
	if (!event)
		return reason;
	guint8 release[POOL_RELEASE_BODY] = {0};
	guint32 le = GUINT32_TO_LE(id);
	memcpy(release, &le, 4);
	conn_send_control(c, PACKET_POOL_RELEASE, release, sizeof(release));

	int moved[MESH_UNIX_MAX_FDS_PER_PACKET];
	for (size_t i = first; i < n_fds; i++)
		moved[i - first] = pal_fd_array_steal(fds, i);
	mesh_node_receive_event_full(c->owner->node, &c->peer, event, (size_t)event_size, moved,
				     n_fds - first, copy_free, event_owner);
	return NULL;
}

/*
 * Sends a packet of the transport's own with fds (borrowed: duplicated when
 * it waits in the queue), at once or through the queue. Locked; @header
 * stamped and counted by the caller.
 */
static void conn_send_locked(UnixConn *c, const uint8_t *header, const uint8_t *body, size_t size,
			     const int *fds, size_t n_fds)
{
	int r = -EAGAIN;
	if (c->pending.length == 0 && !c->flushing)
		r = packet_send(c->fd, header, body, size, fds, n_fds);
	if (r == -EAGAIN) {
		OutPacket *pk = g_new0(OutPacket, 1);
		memcpy(pk->header, header, PACKET_HEADER_SIZE);
		pk->body = g_memdup2(body, size);
		pk->body_size = size;
		for (size_t i = 0; i < n_fds; i++) {
			pk->fds[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
			if (pk->fds[i] < 0) {
				out_packet_free(pk);
				conn_break_locked(c, "cannot duplicate an fd");
				return;
			}
			pk->n_fds = i + 1;
		}
		g_queue_push_tail(&c->pending, pk);
		c->pending_bytes += out_packet_cost(pk);
		if (!c->write_wanted) {
			c->write_wanted = TRUE;
			/* Never at once: the lock is held. */
			conn_schedule(c, conn_write_source_cb, conn_ref(c), (GDestroyNotify)conn_unref);
		}
	} else if (r < 0) {
		conn_break_locked(c, g_strerror(-r));
	} else {
		conn_note_sent_locked(c);
	}
}

/*
 * The shared-memory ring (HELLO_RING): makes our ring and sends it, with
 * the eventfd we poll for the peer's, once we know the peer reads rings.
 * Locked. Without memory for it, no ring: the peer's setup is then
 * ignored, and neither side writes a ring.
 */
static void conn_ring_setup_locked(UnixConn *c)
{
	if (!unix_ring_enabled() || c->ring_setup_sent || c->ended || c->broken || c->send_closed)
		return;
	UnixTxRing *tx = unix_tx_ring_new();
	UnixRxRing *rx = tx ? unix_rx_ring_new() : NULL;
	if (!rx) {
		debug_log(LOG_FIELDS("MESH_NODE", LOG_ID(mesh_node_get_id(c->owner->node)), "MESH_PEER",
				     LOG_ID(&c->peer)),
			  "mesh: no shared-memory ring: %s", g_strerror(errno));
		unix_tx_ring_free(tx);
		return;
	}
	c->tx_ring = tx;
	c->rx_ring = rx;
	uint8_t header[PACKET_HEADER_SIZE] = {PACKET_RING_SETUP};
	uint8_t body[RING_SETUP_BODY] = {0};
	guint32 le = GUINT32_TO_LE((guint32)UNIX_RING_DATA_SIZE);
	memcpy(body, &le, 4);
	int fds[2] = {unix_tx_ring_get_memfd(tx), unix_rx_ring_get_eventfd(rx)};
	c->ring_setup_sent = TRUE;
	conn_stamp_locked(c, header);
	conn_count_packet_locked(c);
	conn_send_locked(c, header, body, sizeof(body), fds, 2);
}

static void ring_source_attach(UnixConn *c);

/* The peer's PACKET_RING_SETUP: map its ring, wake it through its eventfd. */
static const char *conn_handle_ring_setup(UnixConn *c, const uint8_t *body, size_t size,
					  PalFdArray *fds)
{
	guint32 ring_size, zero;
	struct stat st;

	if (!unix_ring_enabled())
		return "unknown packet type";
	if (size != RING_SETUP_BODY || pal_fd_array_len(fds) != 2)
		return "ring setup of a bad size";
	if (c->rx_ring_on)
		return "a second ring setup";
	memcpy(&ring_size, body, 4);
	memcpy(&zero, body + 4, 4);
	if (GUINT32_FROM_LE(ring_size) != UNIX_RING_DATA_SIZE || zero)
		return "ring setup with unknown parameters";
	const int *f = pal_fd_array_peek_data(fds);
	/*
	 * Its wake-up fd must be an anonymous inode: a pipe or a socket could
	 * block our writes or raise SIGPIPE. Another anonymous inode than an
	 * eventfd (a timerfd, an epoll fd) only refuses the write: the peer
	 * then sleeps through its own ring, which harms nobody else.
	 */
	if (fstat(f[1], &st) < 0 || (st.st_mode & S_IFMT) != 0)
		return "ring setup without an eventfd";
	g_mutex_lock(&c->lock);
	conn_ring_setup_locked(c);
	if (!c->ring_setup_sent || c->ended) {
		g_mutex_unlock(&c->lock);
		return NULL;
	}
	const char *reason = unix_rx_ring_map(c->rx_ring, f[0]);
	if (reason) {
		g_mutex_unlock(&c->lock);
		return reason;
	}
	int efd = pal_fd_array_steal(fds, 1);
	int fl = fcntl(efd, F_GETFL);
	if (fl >= 0)
		fcntl(efd, F_SETFL, fl | O_NONBLOCK);
	unix_tx_ring_set_wake_take(c->tx_ring, efd);
	c->ring_tx_on = TRUE;
	c->rx_ring_on = TRUE;
	c->rx_sock_seq = 1; /* this packet */
	g_mutex_unlock(&c->lock);
	ring_source_attach(c);
	return NULL;
}

/*
 * Delivers the peer's ring entries in order: those before the socket
 * packet stamped @stamp (@to_stamp: all of them must be there), or those
 * deliverable now, at most @budget. NULL, or why the connection must end.
 */
static const char *conn_ring_drain(UnixConn *c, gboolean to_stamp, guint32 stamp, guint budget)
{
	/*
	 * Entries are copied out into @buf and handed to the node in runs (it
	 * delivers a run of messages to a port at once), before the buffer
	 * could not take one more of the largest, and before any return.
	 */
	uint8_t buf[2 * UNIX_RING_MAX_ENTRY];
	MeshEventData events[RING_DELIVER_RUN];
	size_t used = 0, n_events = 0;
	const char *reason = NULL;

	for (guint n = 0; to_stamp || n < budget; n++) {
		size_t max = UNIX_RING_DATA_SIZE, size = 0;
		if (to_stamp) {
			guint32 dist = stamp - unix_rx_ring_pos(c->rx_ring);
			if (dist == 0)
				break;
			if (dist > UNIX_RING_DATA_SIZE) {
				reason = "socket packet stamped out of the shared-memory ring's range";
				break;
			}
			max = dist;
		}
		if (sizeof(buf) - used < UNIX_RING_MAX_ENTRY || n_events == RING_DELIVER_RUN) {
			mesh_node_receive_events(c->owner->node, &c->peer, events, n_events);
			used = n_events = 0;
		}
		int k = unix_rx_ring_next(c->rx_ring, c->rx_sock_seq, max, buf + used, &size, &reason);
		if (k < 0)
			break;
		if (k == 0) {
			if (to_stamp)
				reason = "socket packet ahead of its shared-memory ring entries";
			break;
		}
		if (n == 0)
			g_atomic_int_set(&c->streak, 0); /* the peer talks back: no stream */
		events[n_events++] = (MeshEventData){buf + used, size, NULL, 0};
		used += (size + 7) & ~(size_t)7;
	}
	/* What came before a corrupt entry is delivered; the connection then ends. */
	mesh_node_receive_events(c->owner->node, &c->peer, events, n_events);
	return reason;
}

/* Handles one received packet. Returns NULL or why the connection must end. */
static const char *conn_handle_packet(UnixConn *c, const uint8_t *buf, size_t size,
				      PalFdArray *fds)
{
	size_t n_fds = pal_fd_array_len(fds);
	int *owned = (int *)pal_fd_array_peek_data(fds);

	if (size < PACKET_HEADER_SIZE)
		return "packet without a header";
	switch (buf[0]) {
	case PACKET_EVENT: {
		int hello = n_fds == 0 ? hello_parse(buf, size) : -1;
		if (hello >= 0) {
			g_mutex_lock(&c->lock);
			conn_apply_hello_locked(c, (guint)hello);
			if (c->peer_rings)
				conn_ring_setup_locked(c);
			g_mutex_unlock(&c->lock);
			return NULL;
		}
	}
		{
		int moved[MESH_UNIX_MAX_FDS_PER_PACKET];
		for (size_t i = 0; i < n_fds; i++)
			moved[i] = pal_fd_array_steal(fds, i);
		mesh_node_receive_event(c->owner->node, &c->peer, buf + PACKET_HEADER_SIZE,
					size - PACKET_HEADER_SIZE, moved, n_fds);
		return NULL;
	}
	case PACKET_RING_SETUP:
		return conn_handle_ring_setup(c, buf + PACKET_HEADER_SIZE, size - PACKET_HEADER_SIZE,
					      fds);
	case PACKET_BATCH:
		return conn_handle_batch(c, buf + PACKET_HEADER_SIZE, size - PACKET_HEADER_SIZE, fds);
	case PACKET_POOL_EVENT:
		return conn_handle_pool_event(c, buf + PACKET_HEADER_SIZE,
					      size - PACKET_HEADER_SIZE, fds);
	case PACKET_POOL_RELEASE: {
		guint32 id;
		if (!unix_pooling_enabled())
			return "unknown packet type";
		if (size != PACKET_HEADER_SIZE + POOL_RELEASE_BODY || n_fds)
			return "pool release of a bad size";
		memcpy(&id, buf + PACKET_HEADER_SIZE, 4);
		g_mutex_lock(&c->lock);
		gboolean ok = unix_tx_pool_release(c->tx_pool, GUINT32_FROM_LE(id));
		g_mutex_unlock(&c->lock);
		return ok ? NULL : "release of a pool buffer not in use";
	}
	case PACKET_LARGE_EVENT: {
		size_t mem_size;
		void *map;
		if (size != PACKET_HEADER_SIZE || n_fds < 1)
			return "large event without its memfd";
		int r = pal_memfd_verify_seals(owned[0], &mem_size);
		if (r < 0)
			return "large event in a memfd that is not sealed";
		if (mem_size == 0 || mem_size > MESH_EVENT_MAX_SIZE + (1u << 20))
			return "large event of a bad size";
		map = mmap(NULL, mem_size, PROT_READ, MAP_PRIVATE, owned[0], 0);
		if (map == MAP_FAILED)
			return "cannot map a large event";
		size_t event_size = mesh_event_get_size(map, mem_size);
		if (event_size == 0 || event_size > mem_size) {
			munmap(map, mem_size);
			return "large event with a bad header";
		}
		int moved[MESH_UNIX_MAX_FDS_PER_PACKET];
		for (size_t i = 1; i < n_fds; i++)
			moved[i - 1] = pal_fd_array_steal(fds, i);
		/* The message keeps the mapping instead of a copy of it. */
		Mapping *m = g_new(Mapping, 1);
		m->addr = map;
		m->size = mem_size;
		mesh_node_receive_event_full(c->owner->node, &c->peer, map, event_size, moved,
					     n_fds - 1, mapping_free, m);
		return NULL;
	}
	default:
		return "unknown packet type";
	}
}

/*
 * Ends @c: fails its remote node (ports, handlers, callbacks). Only on the
 * I/O context with no lock held: from its own source (conn_end_async()) or
 * at the end of the connection's dispatch, never inside a send or a flush.
 */
static void conn_end(UnixConn *c, const char *reason)
{
	MeshUnixNode *owner = c->owner;

	g_mutex_lock(&c->lock);
	if (c->ended) {
		g_mutex_unlock(&c->lock);
		return;
	}
	c->ended = TRUE;
	g_cond_broadcast(&c->room);
	c->confirmed = reason == NULL && c->write_shut;
	if (!c->write_shut) {
		shutdown(c->fd, SHUT_WR);
		c->write_shut = TRUE;
	}
	GSource *source = c->source;
	GSource *ring_source = c->ring_source;
	c->source = NULL;
	c->fd_tag = NULL;
	c->ring_source = NULL;
	g_mutex_unlock(&c->lock);

	if (source) {
		g_source_destroy(source);
		g_source_unref(source);
	}
	if (ring_source) {
		g_source_destroy(ring_source);
		g_source_unref(ring_source);
		unix_io_set_edge_fd(owner->io, unix_rx_ring_get_eventfd(c->rx_ring), FALSE);
	}
	const char *why = reason ? reason : "remote node disconnected";
	g_mutex_lock(&owner->lock);
	MeshPeerDescribeFunc describe = owner->describe;
	gpointer describe_data = owner->describe_data;
	g_mutex_unlock(&owner->lock);
	char *who = describe ? describe(&c->peer, describe_data) : NULL;
	char *full = who ? g_strdup_printf("%s: %s", who, why) : g_strdup(why);
	if (reason)
		debug_log(LOG_FIELDS("MESH_NODE", LOG_ID(mesh_node_get_id(owner->node)), "MESH_PEER",
				     LOG_ID(&c->peer)),
			  "mesh: connection to node %s ended: %s", LOG_ID(&c->peer), full);
	mesh_remote_node_fail(c->remote, full);
	g_free(full);
	g_free(who);
	mesh_remote_node_unref(c->remote);
	c->remote = NULL;

	g_mutex_lock(&owner->lock);
	g_ptr_array_remove(owner->conns, c);
	g_cond_broadcast(&owner->cond);
	g_mutex_unlock(&owner->lock);
	conn_unref(c); /* the owner's list */
}

static gboolean conn_end_cb(gpointer data)
{
	EndRequest *req = data;
	conn_end(req->conn, req->reason);
	return G_SOURCE_REMOVE;
}

/*
 * Receive buffers: one set per transport, used by whoever dispatches its
 * context (one thread at a time); a nested dispatch gets its own.
 */
struct UnixRx {
	gboolean busy;
	uint8_t *bufs; /* RX_BATCH packets */
	PalFdArray *fds[RX_BATCH];
	struct iovec iov[RX_BATCH];
	PalRecvPacket pk[RX_BATCH];
};

static UnixRx *rx_new(void)
{
	UnixRx *rx = g_new0(UnixRx, 1);
	/* Large and mostly untouched: pages are used as packets arrive. */
	rx->bufs = g_malloc((gsize)RX_BATCH * MESH_UNIX_MAX_PACKET_SIZE);
	for (int i = 0; i < RX_BATCH; i++) {
		rx->fds[i] = pal_fd_array_new();
		rx->iov[i] = (struct iovec){rx->bufs + (gsize)i * MESH_UNIX_MAX_PACKET_SIZE,
					    MESH_UNIX_MAX_PACKET_SIZE};
		rx->pk[i] = (PalRecvPacket){&rx->iov[i], 1, rx->fds[i], 0};
	}
	return rx;
}

void unix_rx_free(UnixRx *rx)
{
	if (!rx)
		return;
	for (int i = 0; i < RX_BATCH; i++)
		pal_fd_array_free(rx->fds[i]);
	g_free(rx->bufs);
	g_free(rx);
}

/*
 * Only the thread that holds the context dispatches, and ownership passes
 * between threads through GLib's context lock: u->rx needs no lock of its
 * own. busy covers a dispatch nested in another on the same thread.
 */
static UnixRx *rx_acquire(MeshUnixNode *u)
{
	UnixRx *rx = u->rx;
	if (rx && !rx->busy) {
		rx->busy = TRUE;
		return rx;
	}
	return rx_new();
}

static void rx_release(MeshUnixNode *u, UnixRx *rx)
{
	if (rx == u->rx)
		rx->busy = FALSE;
	else if (!u->rx)
		u->rx = rx; /* the first one stays */
	else
		unix_rx_free(rx);
}

static const char *recv_error_reason(ssize_t r)
{
	return r == -EPROTO     ? "too many fds or truncated control data"
	       : r == -EMSGSIZE ? "packet too large"
				: g_strerror((int)-r);
}

/*
 * Packets the peer says it wrote (the count in its ring's header) and we
 * did not take yet: there to read without a poll. A hint only: the peer
 * may write anything there. It publishes the count only once they all are
 * in the socket, so a read that then finds none means it lied, and the
 * hint is not used again on this connection (no spin, no harm: we poll).
 * On the I/O context.
 */
static guint32 conn_hinted(UnixConn *c)
{
	if (!c->rx_ring_on || c->rx_hint_off)
		return 0;
	guint32 ahead = unix_rx_ring_sock_sent(c->rx_ring) - c->rx_sock_seq;
	return (gint32)ahead > 0 ? ahead : 0;
}

static gboolean conn_dispatch(gint fd, GIOCondition cond, gpointer data)
{
	UnixConn *c = data;

	if (cond & G_IO_OUT) {
		g_mutex_lock(&c->lock);
		conn_flush_locked(c);
		conn_update_interest_locked(c);
		g_mutex_unlock(&c->lock);
	}
	guint32 hinted = conn_hinted(c);
	if (!(cond & (G_IO_IN | G_IO_HUP | G_IO_ERR)) && !hinted)
		return G_SOURCE_CONTINUE;

	UnixRx *rx = rx_acquire(c->owner);
	const char *reason = NULL;
	gboolean end = FALSE;
	conn_ref(c);
	for (int round = 0; round < RX_ROUNDS && !end; round++) {
		PalRecvPacket *pk = rx->pk;
		/*
		 * Fewer packets than asked: the socket is drained, no EAGAIN call.
		 * As many as the hint says are there: no second try that fails.
		 */
		size_t want = hinted && hinted < RX_BATCH && !(cond & (G_IO_HUP | G_IO_ERR))
				      ? hinted
				      : RX_BATCH;
		ssize_t n = pal_recv_many_with_fds(c->fd, pk, want, MESH_UNIX_MAX_FDS_PER_PACKET,
						   MSG_DONTWAIT);
		if (n == -EAGAIN) {
			if (hinted) {
				/* None there: it lied. */
				debug_log(LOG_FIELDS("MESH_NODE",
						     LOG_ID(mesh_node_get_id(c->owner->node)),
						     "MESH_PEER", LOG_ID(&c->peer)),
					  "mesh: node %s counts socket packets in its ring that "
					  "are not there: the count is not used",
					  LOG_ID(&c->peer));
				c->rx_hint_off = TRUE;
			}
			break;
		}
		if (n < 0) {
			end = TRUE;
			reason = recv_error_reason(n);
			break;
		}
		if (n > 0)
			g_atomic_int_set(&c->streak, 0);
		for (ssize_t i = 0; i < n; i++) {
			ssize_t r = pk[i].result;
			if (end) {
				/* Ending: what follows is dropped (its fds closed). */
			} else if (r == 0) {
				end = TRUE; /* the peer's end of stream: a clean end */
			} else if (r < 0) {
				end = TRUE;
				reason = recv_error_reason(r);
			} else {
				const uint8_t *pkt = rx->iov[i].iov_base;
				if (c->rx_ring_on && r >= PACKET_HEADER_SIZE) {
					/* The ring's entries sent before this packet go first. */
					guint32 stamp;
					memcpy(&stamp, pkt + 4, 4);
					reason = conn_ring_drain(c, TRUE, GUINT32_FROM_LE(stamp), 0);
					c->rx_sock_seq++;
				}
				if (!reason)
					reason = conn_handle_packet(c, pkt, (size_t)r, rx->fds[i]);
				end = reason != NULL;
			}
			pal_fd_array_clear(rx->fds[i]);
		}
		if (n < (ssize_t)want)
			break;
	}
	rx_release(c->owner, rx);
	/*
	 * Ring entries that waited for these packets; at the peer's end of
	 * stream, all that it wrote before it.
	 */
	if (c->rx_ring_on && !reason)
		reason = conn_ring_drain(c, FALSE, 0, end ? G_MAXUINT : RING_BUDGET);
	if (reason)
		end = TRUE;
	if (end)
		conn_end(c, reason);
	conn_unref(c);
	return end ? G_SOURCE_REMOVE : G_SOURCE_CONTINUE;
}

typedef struct {
	GSource base;
	UnixConn *conn;
	gpointer tag;
} ConnSource;

/* Ready without a poll when the peer's ring says packets wait (conn_hinted()). */
static gboolean conn_source_prepare(GSource *source, gint *timeout)
{
	*timeout = -1;
	return conn_hinted(((ConnSource *)source)->conn) != 0;
}

static gboolean conn_source_check(GSource *source)
{
	/* GLib looks at the fd's revents itself. */
	return conn_hinted(((ConnSource *)source)->conn) != 0;
}

static gboolean conn_source_dispatch(GSource *source, GSourceFunc callback, gpointer data)
{
	ConnSource *cs = (ConnSource *)source;
	return conn_dispatch(cs->conn->fd, g_source_query_unix_fd(source, cs->tag), cs->conn);
}

static void conn_source_finalize(GSource *source)
{
	conn_unref(((ConnSource *)source)->conn);
}

static GSourceFuncs conn_source_funcs = {
	.prepare = conn_source_prepare,
	.check = conn_source_check,
	.dispatch = conn_source_dispatch,
	.finalize = conn_source_finalize,
};

/*
 * The peer's ring on the I/O context: ready when an entry is there (none:
 * it says it sleeps, then polls the eventfd the peer writes). Whoever
 * iterates the context runs it, a borrowing receiver too.
 */
typedef struct {
	GSource base;
	UnixConn *conn;
	gpointer tag;
} RingSource;

static gboolean ring_source_prepare(GSource *source, gint *timeout)
{
	UnixConn *c = ((RingSource *)source)->conn;

	*timeout = -1;
	if (unix_rx_ring_ready(c->rx_ring, c->rx_sock_seq))
		return TRUE;
	if (!unix_rx_ring_arm(c->rx_ring, c->rx_sock_seq))
		return FALSE;
	unix_rx_ring_disarm(c->rx_ring);
	return TRUE;
}

static gboolean ring_source_check(GSource *source)
{
	RingSource *rs = (RingSource *)source;
	UnixConn *c = rs->conn;

	/* From the epoll set the eventfd is edge-triggered: nothing to reset. */
	if ((g_source_query_unix_fd(source, rs->tag) & G_IO_IN) &&
	    !unix_io_edge_polled(c->owner->io, unix_rx_ring_get_eventfd(c->rx_ring)))
		unix_rx_ring_ack_wake(c->rx_ring);
	return unix_rx_ring_ready(c->rx_ring, c->rx_sock_seq);
}

static gboolean ring_source_dispatch(GSource *source, GSourceFunc callback, gpointer data)
{
	UnixConn *c = ((RingSource *)source)->conn;

	unix_rx_ring_disarm(c->rx_ring);
	conn_ref(c);
	const char *reason = conn_ring_drain(c, FALSE, 0, RING_BUDGET);
	if (reason)
		conn_end(c, reason);
	conn_unref(c);
	return reason ? G_SOURCE_REMOVE : G_SOURCE_CONTINUE;
}

static GSourceFuncs ring_source_funcs = {
	.prepare = ring_source_prepare,
	.check = ring_source_check,
	.dispatch = ring_source_dispatch,
	.finalize = conn_source_finalize,
};

/* On the I/O context, once the peer's ring is mapped. */
static void ring_source_attach(UnixConn *c)
{
	RingSource *rs = (RingSource *)g_source_new(&ring_source_funcs, sizeof(RingSource));
	rs->conn = conn_ref(c);
	rs->tag = g_source_add_unix_fd(&rs->base, unix_rx_ring_get_eventfd(c->rx_ring), G_IO_IN);
	g_source_set_can_recurse(&rs->base, TRUE);
	g_mutex_lock(&c->lock);
	gboolean ended = c->ended;
	if (!ended) {
		c->ring_source = &rs->base;
		unix_io_set_edge_fd(c->owner->io, unix_rx_ring_get_eventfd(c->rx_ring), TRUE);
	}
	g_mutex_unlock(&c->lock);
	if (!ended)
		g_source_attach(&rs->base, c->owner->context);
	else
		g_source_unref(&rs->base);
}

static gboolean attach_cb(gpointer data)
{
	UnixConn *c = data;

	g_mutex_lock(&c->lock);
	if (!c->ended) {
		ConnSource *cs = (ConnSource *)g_source_new(&conn_source_funcs, sizeof(ConnSource));
		cs->conn = conn_ref(c);
		cs->tag = g_source_add_unix_fd(&cs->base, c->fd, G_IO_IN | G_IO_HUP | G_IO_ERR);
		c->source = &cs->base;
		c->fd_tag = cs->tag;
		/* Not blocked around each dispatch: saves two wakeups per packet. */
		g_source_set_can_recurse(c->source, TRUE);
		unix_io_fd_attached(c->owner->io, c->fd);
		g_source_attach(c->source, c->owner->context);
		conn_flush_locked(c);
		conn_update_interest_locked(c);
	}
	g_mutex_unlock(&c->lock);
	conn_unref(c);
	return G_SOURCE_REMOVE;
}

MeshUnixNode *unix_node_new(MeshNode *node, GMainContext *context, gboolean joining)
{
	MeshUnixNode *u = g_new0(MeshUnixNode, 1);

	u->node = mesh_node_ref(node);
	mesh_node_set_connector_caps(node, &unix_caps);
	u->pending = g_hash_table_new(mesh_uuid_hash, mesh_uuid_equal);
	g_mutex_init(&u->lock);
	g_cond_init(&u->cond);
	u->send_limit = MESH_UNIX_DEFAULT_SEND_LIMIT;
	u->send_timeout_us = MESH_UNIX_DEFAULT_SEND_TIMEOUT_US;
	u->conns = g_ptr_array_new();
	if (context) {
		/* A thread that blocks in a receive where the context runs iterates it. */
		u->context_hook = mesh_io_hook_new_for_context(context);
		u->context = g_main_context_ref(context);
		mesh_node_set_io_hook(node, u->context_hook);
	} else {
		u->context = g_main_context_new();
		u->io = unix_io_start(u->context, joining);
		mesh_node_set_io_hook(node, unix_io_get_hook(u->io));
	}
	return u;
}

MeshNode *mesh_unix_node_get_node(MeshUnixNode *u)
{
	g_return_val_if_fail(u, NULL);
	return u->node;
}

gboolean mesh_unix_node_connect_take(MeshUnixNode *u, const MeshNodeId *peer, int fd,
				     GError **error)
{
	if (!u || !peer || (error && *error)) {
		if (fd >= 0)
			close(fd); /* taken in all cases */
		g_return_val_if_fail(u && peer, FALSE);
		g_return_val_if_fail(error == NULL || *error == NULL, FALSE);
	}
	return unix_node_connect_take(u, peer, fd, TRUE, -1, error);
}

gboolean unix_node_connect_take(MeshUnixNode *u, const MeshNodeId *peer, int fd,
				gboolean send_hello, int peer_hello, GError **error)
{
	int type = 0;
	socklen_t len = sizeof(type);

	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 || type != SOCK_SEQPACKET) {
		close(fd);
		g_set_error(error, MESH_ERROR, MESH_ERROR_INVALID_ARGUMENT,
			    "not a SOCK_SEQPACKET socket");
		return FALSE;
	}
	pal_fd_set_cloexec(fd, TRUE);
	pal_fd_set_nonblock(fd, TRUE);

	UnixConn *c = g_new0(UnixConn, 1);
	c->ref = 1; /* the owner's list */
	c->owner = u;
	if (u->io) {
		c->io = u->io;
		c->io_hook = mesh_io_hook_ref(unix_io_get_hook(u->io));
	}
	c->peer = *peer;
	c->fd = fd;
	g_mutex_init(&c->lock);
	g_cond_init(&c->room);
	g_queue_init(&c->pending);
	c->remote = mesh_node_add_remote(u->node, peer);

	if (peer_hello > 0)
		conn_apply_hello_locked(c, (guint)peer_hello); /* not shared yet */

	g_mutex_lock(&u->lock);
	g_ptr_array_add(u->conns, c);
	g_mutex_unlock(&u->lock);

	guint16 hello_flags = (guint16)unix_hello_flags();
	if (hello_flags && send_hello) {
		/* First on the socket, before any event: what the peer may send us. */
		uint8_t hello[HELLO_SIZE];
		hello_build(hello, hello_flags);
		if (send(fd, hello, sizeof(hello), MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
			debug_log(LOG_FIELDS("MESH_PEER", LOG_ID(&c->peer)),
				  "mesh: batch hello not sent: %s", g_strerror(errno));
	}
	/* After the hello: the peer (known from its invitation) reads rings. */
	g_mutex_lock(&c->lock);
	if (c->peer_rings && send_hello)
		conn_ring_setup_locked(c);
	g_mutex_unlock(&c->lock);
	if (!mesh_remote_node_connect(c->remote, &unix_sink, conn_ref(c))) {
		/* The sink's destroy already dropped its reference. */
		g_mutex_lock(&c->lock);
		c->ended = TRUE;
		g_mutex_unlock(&c->lock);
		mesh_remote_node_unref(c->remote);
		c->remote = NULL;
		g_mutex_lock(&u->lock);
		g_ptr_array_remove(u->conns, c);
		g_mutex_unlock(&u->lock);
		conn_unref(c);
		g_set_error(error, MESH_ERROR, MESH_ERROR_DUPLICATE,
			    "duplicate connection to the node (or it failed)");
		return FALSE;
	}
	g_main_context_invoke(u->context, attach_cb, conn_ref(c));
	return TRUE;
}

/*
 * One step of a wait for a change that u->cond announces (u->lock held,
 * released meanwhile). On a caller's context that this thread runs, or that
 * is this thread's and nobody runs now (mesh_io_hook_acquire_context()), nobody
 * else would make the change happen: iterate the context once, blocking
 * until something is dispatched, a wakeup or @deadline. Otherwise the
 * context's owner (or the I/O thread) does, and signals u->cond. FALSE at
 * the deadline.
 */
static gboolean wait_step(MeshUnixNode *u, gint64 deadline)
{
	if (u->context_hook && mesh_io_hook_acquire_context(u->context_hook)) {
		g_mutex_unlock(&u->lock);
		gboolean expired = mesh_main_context_iterate_until(u->context, deadline);
		g_main_context_release(u->context);
		g_mutex_lock(&u->lock);
		return !expired;
	}
	if (deadline < 0) {
		g_cond_wait(&u->cond, &u->lock);
		return TRUE;
	}
	return g_cond_wait_until(&u->cond, &u->lock, deadline);
}

typedef struct {
	GSourceFunc func;
	gpointer data;
	GMutex lock;
	GCond cond;
	gboolean done;
} SyncCall;

static gboolean sync_call_cb(gpointer data)
{
	SyncCall *s = data;
	s->func(s->data);
	g_mutex_lock(&s->lock);
	s->done = TRUE;
	g_cond_signal(&s->cond);
	g_mutex_unlock(&s->lock);
	return G_SOURCE_REMOVE;
}

void unix_run_sync(MeshUnixNode *u, GSourceFunc func, gpointer data)
{
	/* Here if this thread runs the context, or nobody does right now. */
	if (g_main_context_acquire(u->context)) {
		func(data);
		g_main_context_release(u->context);
		/* The I/O thread may wait to take its lent context back. */
		unix_io_released(u->io);
		return;
	}
	SyncCall s = {.func = func, .data = data};
	g_mutex_init(&s.lock);
	g_cond_init(&s.cond);
	g_main_context_invoke(u->context, sync_call_cb, &s);
	g_mutex_lock(&s.lock);
	while (!s.done)
		g_cond_wait(&s.cond, &s.lock);
	g_mutex_unlock(&s.lock);
	g_mutex_clear(&s.lock);
	g_cond_clear(&s.cond);
}

static gboolean stop_roles_cb(gpointer data)
{
	MeshUnixNode *u = data;

	u->stop_roles(u);
	return G_SOURCE_REMOVE;
}

/*
 * Stops leading and following on the I/O context, so that no channel
 * callback of the leader runs while its state is freed.
 */
static void leader_stop_sync(MeshUnixNode *u)
{
	if (u->stop_roles)
		unix_run_sync(u, stop_roles_cb, u);
}

/*
 * Whether the peer of @c ended its side, or went away, before we half-closed
 * (its end of stream then confirms nothing). Locked.
 */
static gboolean peer_gone_first_locked(UnixConn *c)
{
	struct pollfd pfd = {.fd = c->fd, .events = POLLIN | POLLRDHUP};
	if (c->ended)
		return TRUE;
	if (c->write_shut)
		return FALSE;
	return poll(&pfd, 1, 0) == 1 && (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

gboolean mesh_unix_node_shutdown(MeshUnixNode *u, gint64 timeout_us)
{
	g_return_val_if_fail(u && timeout_us >= -1, FALSE);
	gint64 deadline = timeout_us < 0 ? -1 : g_get_monotonic_time() + timeout_us;
	gboolean clean = TRUE, in_time = TRUE;

	/*
	 * 1. Let moves and introductions finish, so nothing is lost in flight
	 * or waiting for a socket; then stop leading and following.
	 */
	for (;;) {
		/* Each wait ends when a port leaves the table, or an answer comes. */
		gint64 left = deadline < 0 ? -1 : MAX(deadline - g_get_monotonic_time(), 0);
		if (!mesh_node_wait_idle(u->node, G_MAXUINT, left)) {
			clean = in_time = FALSE;
			break;
		}
		g_mutex_lock(&u->lock);
		gboolean introducing = g_hash_table_size(u->pending) > 0;
		gboolean waited = introducing && wait_step(u, deadline);
		g_mutex_unlock(&u->lock);
		if (!introducing)
			break;
		if (!waited) {
			clean = in_time = FALSE;
			break;
		}
	}

	leader_stop_sync(u);

	/*
	 * 2. Flush and half-close every connection. Clean means each peer
	 * confirms: its end of stream comes after ours. A follower whose
	 * connection to its leader is gone already (the leader died or left)
	 * cannot have that confirmation.
	 */
	g_mutex_lock(&u->lock);
	GPtrArray *conns = g_ptr_array_copy(u->conns, conn_copy, NULL);
	g_mutex_unlock(&u->lock);
	gboolean leader_up = !u->joined;
	for (guint i = 0; i < conns->len; i++) {
		UnixConn *c = conns->pdata[i];
		leader_up = leader_up || mesh_uuid_equal(&c->peer, &u->leader_node);
		g_mutex_lock(&c->lock);
		if (peer_gone_first_locked(c))
			clean = FALSE;
		c->send_closed = TRUE;
		g_mutex_unlock(&c->lock);
		schedule_write(c);
	}
	/* After a handoff the leader is another node; its channel tells. */
	if (!leader_up && !u->leader_channel_up)
		clean = FALSE;

	/* 3. Wait for every peer's end of stream. */
	g_mutex_lock(&u->lock);
	while (u->conns->len > 0) {
		if (!wait_step(u, deadline) && u->conns->len > 0) {
			clean = in_time = FALSE;
			break;
		}
	}
	g_mutex_unlock(&u->lock);

	/* 4. Cut what is left; an end that was not the peer's confirmation is not clean. */
	for (guint i = 0; i < conns->len; i++) {
		UnixConn *c = conns->pdata[i];
		conn_end_async(c, in_time ? NULL : "shutdown timed out");
		g_mutex_lock(&c->lock);
		if (c->ended && !c->confirmed)
			clean = FALSE;
		g_mutex_unlock(&c->lock);
		conn_unref(c);
	}
	g_ptr_array_free(conns, TRUE);
	g_mutex_lock(&u->lock);
	while (u->conns->len > 0)
		wait_step(u, -1);
	g_mutex_unlock(&u->lock);
	return clean;
}

void mesh_unix_node_free(MeshUnixNode *u)
{
	if (!u)
		return;
	if (u->io) {
		/* From here on, the I/O thread alone runs the context. */
		mesh_node_set_io_hook(u->node, NULL);
		unix_io_disable_lending(u->io);
	}
	if (u->context_hook) {
		/* ... and no receive iterates the caller's context for us (our waits still do). */
		mesh_node_set_io_hook(u->node, NULL);
		mesh_io_hook_detach(u->context_hook);
	}
	leader_stop_sync(u);
	g_mutex_lock(&u->lock);
	GPtrArray *conns = g_ptr_array_copy(u->conns, conn_copy, NULL);
	g_mutex_unlock(&u->lock);
	for (guint i = 0; i < conns->len; i++) {
		conn_end_async(conns->pdata[i], "the transport was freed");
		conn_unref(conns->pdata[i]);
	}
	g_ptr_array_free(conns, TRUE);
	g_mutex_lock(&u->lock);
	while (u->conns->len > 0)
		wait_step(u, -1);
	g_mutex_unlock(&u->lock);

	if (u->io) {
		unix_io_stop(u->io);
		/* What the thread left scheduled (flushes of ended connections) runs now. */
		while (g_main_context_iteration(u->context, FALSE))
			;
	}
	mesh_io_hook_unref(u->context_hook);
	g_main_context_unref(u->context);
	g_ptr_array_free(u->conns, TRUE);
	unix_rx_free(u->rx);
	g_hash_table_destroy(u->pending);
	g_cond_clear(&u->cond);
	g_mutex_clear(&u->lock);
	mesh_node_unref(u->node);
	g_free(u);
}

void mesh_unix_node_set_peer_describer(MeshUnixNode *u, MeshPeerDescribeFunc func,
				       gpointer user_data)
{
	g_return_if_fail(u);
	g_mutex_lock(&u->lock);
	u->describe = func;
	u->describe_data = user_data;
	g_mutex_unlock(&u->lock);
}

/* Returns: (transfer full) (nullable): the connection to @peer in u->conns. */
static UnixConn *conn_find(MeshUnixNode *u, const MeshNodeId *peer)
{
	UnixConn *found = NULL;

	g_mutex_lock(&u->lock);
	for (guint i = 0; i < u->conns->len && !found; i++) {
		UnixConn *c = u->conns->pdata[i];
		if (mesh_uuid_equal(&c->peer, peer))
			found = conn_ref(c);
	}
	g_mutex_unlock(&u->lock);
	return found;
}

void unix_node_cut(MeshUnixNode *u, const MeshNodeId *peer, const char *reason)
{
	UnixConn *found = conn_find(u, peer);

	if (found) {
		conn_end_async(found, reason);
		conn_unref(found);
	}
}

gboolean unix_node_is_connected(MeshUnixNode *u, const MeshNodeId *peer)
{
	UnixConn *found = conn_find(u, peer);

	if (!found)
		return FALSE;
	g_mutex_lock(&found->lock);
	gboolean up = !found->ended;
	g_mutex_unlock(&found->lock);
	conn_unref(found);
	return up;
}

gboolean unix_node_peer_is_c(MeshUnixNode *u, const MeshNodeId *peer)
{
	if (mesh_uuid_equal(peer, mesh_node_get_id(u->node)))
		return TRUE; /* the leader as its own follower */
	UnixConn *found = conn_find(u, peer);
	if (!found)
		return FALSE;
	g_mutex_lock(&found->lock);
	gboolean is_c = found->peer_is_c && !found->ended;
	g_mutex_unlock(&found->lock);
	conn_unref(found);
	return is_c;
}

void mesh_unix_node_set_send_limit(MeshUnixNode *u, gsize max_queued, gint64 timeout_us)
{
	g_return_if_fail(u != NULL);
	max_queued = MAX(max_queued, MESH_UNIX_MIN_SEND_LIMIT);
	/* Under every connection's lock, which is where senders read them. */
	g_mutex_lock(&u->lock);
	GPtrArray *conns = g_ptr_array_copy(u->conns, conn_copy, NULL);
	g_mutex_unlock(&u->lock);
	for (guint i = 0; i < conns->len; i++)
		g_mutex_lock(&((UnixConn *)conns->pdata[i])->lock);
	u->send_limit = max_queued;
	u->send_timeout_us = timeout_us;
	for (guint i = 0; i < conns->len; i++) {
		UnixConn *c = conns->pdata[i];
		g_cond_broadcast(&c->room); /* a larger limit may make room */
		g_mutex_unlock(&c->lock);
		conn_unref(c);
	}
	g_ptr_array_unref(conns);
}
