/* SPDX-License-Identifier: MIT */
/*
 * The Unix transport's extensions between C nodes (doc/libmeshremote-unix.md,
 * "Extensions between C nodes"): the hello, batches and pooled large events.
 *
 * A node with its own I/O thread gets one connection whose other end the
 * test plays by hand (the "fake node"), reading and writing raw packets, so
 * that every byte and fd on the wire is checked, and so that the node can
 * be sent what no C node would send. The wire constants are written out
 * here from the doc, not taken from the library, on purpose.
 *
 * Run as "test-unix-ext --switches-child" with MESH_UNIX_BATCH=0,
 * MESH_UNIX_POOL=0, MESH_UNIX_EXT_MOVES=0 and MESH_UNIX_RING=0 in its environment, the binary
 * runs instead the checks of a process with every extension off (the switches are read once per
 * process, hence a process of its own); test_switches starts it so.
 */
#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <poll.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <pal/pal.h>

#include "remote-private.h"
#include "unix-leader-private.h" /* unix_connector_cb(); unix_node_peer_is_c(): what the leader's introductions go by */
#include "unix-test.h"

/* Packets: an 8-byte header (the type, then 7 zero bytes) and a body. */
#define PACKET_HEADER 8
#define PACKET_EVENT 1
#define PACKET_LARGE_EVENT 3
#define PACKET_BATCH 0x80
#define PACKET_POOL_EVENT 0x81
#define PACKET_POOL_RELEASE 0x82
/* A batch entry: u32 LE event size, u16 LE fd count, 2 zero bytes. */
#define BATCH_ENTRY_HEADER 8
/* POOL_EVENT body: u32 LE id, u32 LE flags, u64 LE event size. */
#define POOL_EVENT_BODY 16
#define POOL_NEW 0x1
#define POOL_RELEASE_BODY 8
/* The hello's payload: 'M', 'C', u16 LE flags. */
#define HELLO_BATCH 0x1
#define HELLO_POOL 0x2
#define HELLO_MOVES 0x4 /* reads and sends PROXY_DONE */
#define HELLO_RING 0x8  /* reads small events from a shared-memory ring */
#define HELLO_ALL (HELLO_BATCH | HELLO_POOL | HELLO_MOVES | HELLO_RING)
#define HELLO_SIZE (PACKET_HEADER + MESH_EVENT_HEADER_SIZE + 4)
static const uint8_t hello_port[16] = "mesh-c:hello:v1";
/* Events sent at once before a one-way stream goes through the queue. */
#define STREAM_STREAK 16
/* Buffers in the sender's pool, and in the receiver's at most. */
#define TX_POOL_BUFS 8
#define RX_POOL_BUFS 16
/* A large event: over a packet, so it goes out of line. */
#define LARGE_PAYLOAD (100u << 10)
/*
 * The numbered messages of the streams: "m<seq>", padded with dots to
 * FLOOD_MESSAGE bytes in the floods (so that 2000 of them are far more
 * than FLOOD_SNDBUF, the node's send buffer there), unpadded otherwise.
 */
#define FLOOD_MESSAGE 200
#define FLOOD_SNDBUF (64 << 10)
/* The send buffer in the streak test: room for all its events, even unread. */
#define STREAK_SNDBUF (200 << 10)

#define SWITCHES_CHILD_ARG "--switches-child"
#define SWITCHES_CHILD_TESTS 5

/* Waits for what must come: generous, and more so under valgrind. */
static guint wait_ms(void)
{
	return g_getenv("MESH_TEST_VALGRIND") ? 60000 : 10000;
}

static guint32 get_le32(const uint8_t *p)
{
	guint32 v;
	memcpy(&v, p, 4);
	return GUINT32_FROM_LE(v);
}

static guint64 get_le64(const uint8_t *p)
{
	guint64 v;
	memcpy(&v, p, 8);
	return GUINT64_FROM_LE(v);
}

static void append_le16(GByteArray *b, guint16 v)
{
	v = GUINT16_TO_LE(v);
	g_byte_array_append(b, (const guint8 *)&v, 2);
}

static void append_le32(GByteArray *b, guint32 v)
{
	v = GUINT32_TO_LE(v);
	g_byte_array_append(b, (const guint8 *)&v, 4);
}

static void append_le64(GByteArray *b, guint64 v)
{
	v = GUINT64_TO_LE(v);
	g_byte_array_append(b, (const guint8 *)&v, 8);
}

static void fill_pattern(uint8_t *buf, size_t size, guint salt)
{
	for (size_t i = 0; i < size; i++)
		buf[i] = (uint8_t)(i * 131 + salt * 7 + (i >> 9));
}

/* A MESSAGE event for @port: the header, @n_fds fd records (zero ids), the payload. */
static GByteArray *event_build(const MeshPortId *port, guint64 seq, const void *payload,
			       size_t size, guint n_fds)
{
	GByteArray *ev = g_byte_array_new();
	MeshEventHeader h = {
		.port_id = *port,
		.type = MESH_EVENT_MESSAGE,
		.flags = MESH_EVENT_FLAG_MESSAGE,
		.seq = seq,
		.resource_count = n_fds,
		.message_size = (uint32_t)size,
	};
	g_byte_array_set_size(ev, MESH_EVENT_HEADER_SIZE + n_fds * MESH_RESOURCE_DATA_SIZE);
	protocol_event_write_header(ev->data, &h);
	for (guint i = 0; i < n_fds; i++) {
		MeshResourceData rd = {0};
		protocol_event_write_resource(
			ev->data + MESH_EVENT_HEADER_SIZE + i * MESH_RESOURCE_DATA_SIZE, &rd);
	}
	g_byte_array_append(ev, payload, (guint)size);
	return ev;
}

static void batch_entry_append(GByteArray *body, guint32 size, guint16 n_fds, guint8 reserved,
			       const GByteArray *ev)
{
	append_le32(body, size);
	append_le16(body, n_fds);
	guint8 zero[2] = {reserved, 0};
	g_byte_array_append(body, zero, 2);
	if (ev)
		g_byte_array_append(body, ev->data, ev->len);
}

/* The hello as the doc spells it, with @flags. */
static void hello_build(uint8_t out[HELLO_SIZE], guint16 flags)
{
	MeshEventHeader h = {
		.type = MESH_EVENT_MESSAGE,
		.flags = MESH_EVENT_FLAG_MESSAGE,
		.message_size = 4,
	};
	memcpy(h.port_id.bytes, hello_port, 16);
	memset(out, 0, PACKET_HEADER);
	out[0] = PACKET_EVENT;
	protocol_event_write_header(out + PACKET_HEADER, &h);
	uint8_t *p = out + PACKET_HEADER + MESH_EVENT_HEADER_SIZE;
	p[0] = 'M';
	p[1] = 'C';
	p[2] = flags & 0xff;
	p[3] = flags >> 8;
}

/*
 * What arrives on the node's port: a raw-port handler feeds a queue, and a
 * failure keeps its error's text (the reason the connection ended).
 */
typedef struct {
	MeshMessage *msg; /* NULL: not a message */
	char *failure;    /* the port failed with this error */
	gboolean closed;
} InboxItem;

typedef struct {
	GAsyncQueue *queue; /* InboxItem * */
	MeshPort *port;
} Inbox;

static void inbox_item_free(InboxItem *item)
{
	if (item->msg)
		mesh_message_free(item->msg);
	g_free(item->failure);
	g_free(item);
}

static void inbox_message(MeshPort *port, void *data, MeshMessage *msg, Deferred *d)
{
	InboxItem *item = g_new0(InboxItem, 1);
	item->msg = msg;
	g_async_queue_push(((Inbox *)data)->queue, item);
}

static void inbox_close(MeshPort *port, void *data, Deferred *d)
{
	InboxItem *item = g_new0(InboxItem, 1);
	item->closed = TRUE;
	g_async_queue_push(((Inbox *)data)->queue, item);
}

static void inbox_fail(MeshPort *port, void *data, const GError *error, Deferred *d)
{
	InboxItem *item = g_new0(InboxItem, 1);
	item->failure = g_strdup(error->message);
	g_async_queue_push(((Inbox *)data)->queue, item);
}

static const PortHandler inbox_handler = {
	.message = inbox_message,
	.close = inbox_close,
	.fail = inbox_fail,
};

static Inbox *inbox_new(MeshPort *port)
{
	Inbox *in = g_new0(Inbox, 1);
	in->queue = g_async_queue_new();
	in->port = port;
	port_set_handler(port, &inbox_handler, in);
	return in;
}

static void inbox_free(Inbox *in)
{
	InboxItem *item;

	port_set_handler(in->port, NULL, NULL);
	while ((item = g_async_queue_try_pop(in->queue)))
		inbox_item_free(item);
	g_async_queue_unref(in->queue);
	g_free(in);
}

/* A node, its port and one connection whose other end the test holds. */
typedef struct {
	MeshNode *node;
	MeshUnixNode *unode;
	MeshNodeId peer;   /* the fake node */
	MeshPortId mine;   /* the node's port */
	MeshPortId theirs; /* its peer, on the fake node */
	MeshPort *port;
	Inbox *inbox;
	int sock;         /* the fake node's end */
	guint64 next_seq; /* of the next message the fake node sends to the port */
	MeshPort *keep;   /* rig_new_invited(): the invited port's peer, kept open */
	GMainLoop *loop;  /* rig_new_on_context(): the caller's context, run by loop_thread */
	GThread *loop_thread;
} Rig;

static gpointer loop_run(gpointer data)
{
	GMainLoop *loop = data;
	g_main_context_push_thread_default(g_main_loop_get_context(loop));
	g_main_loop_run(loop);
	g_main_context_pop_thread_default(g_main_loop_get_context(loop));
	return NULL;
}

/*
 * @sndbuf: if not 0, the SO_SNDBUF of the node's end (how soon it fills).
 * @on_context: the node runs on a caller's GMainContext (run by a thread
 * of the rig) instead of its own I/O thread.
 */
static Rig *rig_new_in(int sndbuf, gboolean on_context)
{
	Rig *r = g_new0(Rig, 1);
	int sv[2];

	r->node = mesh_node_new();
	if (on_context) {
		GMainContext *ctx = g_main_context_new();
		r->loop = g_main_loop_new(ctx, FALSE);
		g_main_context_unref(ctx);
		r->loop_thread = g_thread_new("rig-context", loop_run, r->loop);
		r->unode = mesh_unix_node_new(r->node, ctx);
	} else {
		r->unode = mesh_unix_node_new(r->node, NULL);
	}
	mesh_uuid_generate(&r->peer);
	mesh_uuid_generate(&r->mine);
	mesh_uuid_generate(&r->theirs);
	MeshRemoteNode *h = mesh_node_add_remote(r->node, &r->peer);
	r->port = mesh_node_add_port(r->node, &r->mine, &r->peer, &r->theirs);
	ck_assert_ptr_nonnull(r->port);
	r->inbox = inbox_new(r->port);
	ck_assert_int_eq(pal_socketpair(SOCK_SEQPACKET, sv), 0);
	if (sndbuf)
		ck_assert_int_eq(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf)),
				 0);
	ck_assert(mesh_unix_node_connect_take(r->unode, &r->peer, sv[0], NULL));
	mesh_remote_node_unref(h);
	r->sock = sv[1];
	r->next_seq = 1;
	return r;
}

static Rig *rig_new_full(int sndbuf)
{
	return rig_new_in(sndbuf, FALSE);
}

static Rig *rig_new(void)
{
	return rig_new_full(0);
}

static void rig_free(Rig *r)
{
	inbox_free(r->inbox);
	mesh_port_close(r->port);
	if (r->keep)
		mesh_port_close(r->keep);
	/* The fake node's end of stream: the node ends the connection too. */
	shutdown(r->sock, SHUT_WR);
	mesh_unix_node_shutdown(r->unode, 5 * G_USEC_PER_SEC);
	mesh_unix_node_free(r->unode);
	mesh_node_unref(r->node);
	close(r->sock);
	if (r->loop) {
		g_main_loop_quit(r->loop);
		g_thread_join(r->loop_thread);
		g_main_loop_unref(r->loop);
	}
	g_free(r);
}

/* The fds a rig leaves behind once freed: none, which the first one settles. */
static void warm_up(void)
{
	static gboolean done;
	if (!done) {
		rig_free(rig_new());
		done = TRUE;
	}
}

static void wait_fds_back_to(int before)
{
	for (int i = 0; i < 400 && count_fds() != before; i++)
		g_usleep(5000);
	ck_assert_int_eq(count_fds(), before);
}

static InboxItem *inbox_wait(Rig *r)
{
	InboxItem *item = g_async_queue_timeout_pop(r->inbox->queue, (guint64)wait_ms() * 1000);
	ck_assert_msg(item != NULL, "nothing arrived on the node's port");
	return item;
}

/* Returns: (transfer full): the next thing on the port, which must be a message. */
static MeshMessage *expect_message(Rig *r)
{
	InboxItem *item = inbox_wait(r);
	ck_assert_msg(item->msg != NULL, "a message expected, got %s",
		      item->failure ? item->failure : "closed");
	MeshMessage *msg = item->msg;
	item->msg = NULL;
	inbox_item_free(item);
	return msg;
}

static void check_payload(MeshMessage *msg, const void *data, size_t size)
{
	size_t got;
	const uint8_t *bytes = mesh_message_get_data(msg, &got);
	ck_assert_uint_eq(got, size);
	ck_assert(size == 0 || memcmp(bytes, data, size) == 0);
}

static void expect_payload(Rig *r, const void *data, size_t size)
{
	MeshMessage *msg = expect_message(r);
	check_payload(msg, data, size);
	ck_assert_uint_eq(mesh_message_get_n_resources(msg), 0);
	mesh_message_free(msg);
}

/* The next thing on the port is its failure, with @reason in the error's text. */
static void expect_failure(Rig *r, const char *reason)
{
	InboxItem *item = inbox_wait(r);
	ck_assert_msg(item->failure != NULL, "the connection did not end (%s arrived first)",
		      item->msg ? "a message" : "closed");
	ck_assert_msg(strstr(item->failure, reason) != NULL, "ended with \"%s\", not \"%s\"",
		      item->failure, reason);
	inbox_item_free(item);
}

/* One packet from the fake node: @type, @body, @fds (borrowed). */
static void peer_send(Rig *r, guint8 type, const void *body, size_t size, const int *fds,
		      size_t n_fds)
{
	uint8_t header[PACKET_HEADER] = {type};
	struct iovec iov[2] = {{header, PACKET_HEADER}, {(void *)body, size}};
	ssize_t sent = pal_send_with_fds(r->sock, iov, size ? 2 : 1, fds, n_fds, 0);
	ck_assert_int_eq(sent, (ssize_t)(PACKET_HEADER + size));
}

static void peer_send_hello(Rig *r, guint16 flags)
{
	uint8_t hello[HELLO_SIZE];
	hello_build(hello, flags);
	ck_assert_int_eq(send(r->sock, hello, sizeof(hello), MSG_NOSIGNAL), sizeof(hello));
}

/* A message from the fake node; once it arrives, every earlier packet was handled. */
static void rig_sync(Rig *r)
{
	GByteArray *ev = event_build(&r->mine, r->next_seq++, "sync", 4, 0);
	peer_send(r, PACKET_EVENT, ev->data, ev->len, NULL, 0);
	g_byte_array_unref(ev);
	expect_payload(r, "sync", 4);
}

/* A packet from the node. */
typedef struct {
	uint8_t *data; /* the whole packet */
	size_t size;
	guint8 type;
	const uint8_t *body;
	size_t body_size;
	PalFdArray *fds;
} Packet;

/* No checks here (the reader thread uses it): 1 a packet, 0 nothing in time, -1 the end. */
static int packet_recv(int sock, Packet *pk, guint timeout_ms)
{
	struct pollfd pfd = {sock, POLLIN, 0};
	int n;

	memset(pk, 0, sizeof(*pk));
	do
		n = poll(&pfd, 1, (int)timeout_ms);
	while (n < 0 && errno == EINTR);
	if (n == 0)
		return 0;
	pk->data = g_malloc(MESH_UNIX_MAX_PACKET_SIZE);
	pk->fds = pal_fd_array_new();
	struct iovec iov = {pk->data, MESH_UNIX_MAX_PACKET_SIZE};
	ssize_t r = pal_recv_with_fds(sock, &iov, 1, pk->fds, MESH_UNIX_MAX_FDS_PER_PACKET,
				      MSG_DONTWAIT);
	if (r <= 0)
		return -1;
	pk->size = (size_t)r;
	pk->type = pk->data[0];
	pk->body = pk->data + PACKET_HEADER;
	pk->body_size = pk->size >= PACKET_HEADER ? pk->size - PACKET_HEADER : 0;
	return 1;
}

static void packet_clear(Packet *pk)
{
	g_free(pk->data);
	pal_fd_array_free(pk->fds);
	memset(pk, 0, sizeof(*pk));
}

static void packet_check_header(const Packet *pk)
{
	static const uint8_t zero[PACKET_HEADER - 1];
	ck_assert_uint_ge(pk->size, PACKET_HEADER);
	ck_assert_msg(memcmp(pk->data + 1, zero, sizeof(zero)) == 0, "header bytes not zero");
}

static void peer_recv(Rig *r, Packet *pk)
{
	int got = packet_recv(r->sock, pk, wait_ms());
	ck_assert_msg(got == 1, got ? "the node ended the connection" : "no packet from the node");
	packet_check_header(pk);
}

static void expect_hello(Rig *r, guint16 flags)
{
	uint8_t want[HELLO_SIZE];
	Packet pk;

	hello_build(want, flags);
	peer_recv(r, &pk);
	ck_assert_uint_eq(pk.size, HELLO_SIZE);
	ck_assert_uint_eq(pal_fd_array_len(pk.fds), 0);
	ck_assert_msg(memcmp(pk.data, want, HELLO_SIZE) == 0, "not the hello (flags %u)", flags);
	packet_clear(&pk);
}

/* A MESSAGE event from the node's port: its header checked and returned. */
static MeshEventView check_message_event(Rig *r, const uint8_t *ev, size_t size)
{
	MeshEventView view;
	ck_assert_int_eq(protocol_event_parse(ev, size, &view), 0);
	ck_assert(memcmp(view.header.port_id.bytes, r->theirs.bytes, 16) == 0);
	ck_assert_int_eq(view.header.type, MESH_EVENT_MESSAGE);
	ck_assert_int_eq(view.header.flags, MESH_EVENT_FLAG_MESSAGE);
	return view;
}

/* "m<seq>", then dots up to @size bytes if that is more; returns the length. */
static size_t numbered_text(char out[FLOOD_MESSAGE], guint64 seq, size_t size)
{
	size_t len = (size_t)snprintf(out, FLOOD_MESSAGE, "m%" G_GUINT64_FORMAT, seq);
	g_assert(size <= FLOOD_MESSAGE);
	if (size > len) {
		memset(out + len, '.', size - len);
		len = size;
	}
	return len;
}

/* A numbered message without resources (what node_send_numbered sends): its seq. */
static guint64 check_numbered_event(Rig *r, const uint8_t *ev, size_t size)
{
	MeshEventView view = check_message_event(r, ev, size);
	char want[FLOOD_MESSAGE];
	size_t len = numbered_text(want, view.header.seq, view.header.message_size);
	ck_assert_uint_eq(view.header.resource_count, 0);
	ck_assert_uint_eq(view.header.message_size, len);
	ck_assert(memcmp(view.payload, want, len) == 0);
	return view.header.seq;
}

/* Messages @first..@last from the node's port, of @size bytes (0: as short as can be). */
static void node_send_numbered(Rig *r, guint first, guint last, size_t size)
{
	for (guint i = first; i <= last; i++) {
		char text[FLOOD_MESSAGE];
		size_t len = numbered_text(text, i, size);
		ck_assert(port_send(r->port, mesh_message_new(text, len), FALSE));
	}
}

/* The numbered events of an EVENT or BATCH packet, appended to @seqs; how many. */
static guint collect_numbered(Rig *r, const Packet *pk, GArray *seqs)
{
	guint n = 0;

	packet_check_header(pk);
	ck_assert_uint_eq(pal_fd_array_len(pk->fds), 0);
	if (pk->type == PACKET_EVENT) {
		guint64 seq = check_numbered_event(r, pk->body, pk->body_size);
		g_array_append_val(seqs, seq);
		return 1;
	}
	ck_assert_msg(pk->type == PACKET_BATCH, "packet of type %u", pk->type);
	for (size_t off = 0; off < pk->body_size; n++) {
		ck_assert_uint_ge(pk->body_size - off, BATCH_ENTRY_HEADER);
		guint32 len = get_le32(pk->body + off);
		guint16 nf = (guint16)(pk->body[off + 4] | pk->body[off + 5] << 8);
		ck_assert_uint_eq(nf, 0);
		ck_assert(pk->body[off + 6] == 0 && pk->body[off + 7] == 0);
		off += BATCH_ENTRY_HEADER;
		ck_assert(len > 0 && len <= pk->body_size - off);
		guint64 seq = check_numbered_event(r, pk->body + off, len);
		g_array_append_val(seqs, seq);
		off += len;
	}
	ck_assert_uint_ge(n, 1);
	return n;
}

/* @seqs holds 1..@n each exactly once, and in ascending order. */
static void check_seqs(GArray *seqs, guint n)
{
	guint8 *seen = g_malloc0(n + 1);
	ck_assert_uint_eq(seqs->len, n);
	for (guint i = 0; i < seqs->len; i++) {
		guint64 s = g_array_index(seqs, guint64, i);
		ck_assert_msg(s >= 1 && s <= n, "seq %" G_GUINT64_FORMAT " out of range", s);
		ck_assert_msg(!seen[s], "seq %" G_GUINT64_FORMAT " twice", s);
		seen[s] = 1;
	}
	g_free(seen);
	for (guint i = 0; i < seqs->len; i++)
		ck_assert_msg(g_array_index(seqs, guint64, i) == i + 1,
			      "seq %" G_GUINT64_FORMAT " at position %u (the wire reordered)",
			      g_array_index(seqs, guint64, i), i + 1);
}

/*
 * The node's port sends messages 1..@n while the fake node does not read
 * for a while (the socket fills: make its send buffer small enough), then
 * the fake node reads it all: every event must arrive once, in order.
 * Returns how many BATCH packets there were.
 */
static guint flood(Rig *r, guint n)
{
	GArray *seqs = g_array_new(FALSE, FALSE, sizeof(guint64));
	guint batches = 0;
	int queued = 0;

	node_send_numbered(r, 1, n, FLOOD_MESSAGE);
	g_usleep(50 * 1000);
	/* Less than the events alone: the node holds the rest back. */
	ck_assert_int_eq(ioctl(r->sock, SIOCINQ, &queued), 0);
	ck_assert_msg((size_t)queued < n * (size_t)(MESH_EVENT_HEADER_SIZE + FLOOD_MESSAGE),
		      "the socket never filled (%d bytes waiting)", queued);
	while (seqs->len < n) {
		Packet pk;
		peer_recv(r, &pk);
		collect_numbered(r, &pk, seqs);
		batches += pk.type == PACKET_BATCH;
		packet_clear(&pk);
	}
	check_seqs(seqs, n);
	g_array_unref(seqs);
	return batches;
}

START_TEST(test_hello_first)
{
	Rig *r = rig_new();
	/* Sent before the hello is read: it must still come second. */
	node_send_numbered(r, 1, 1, 0);
	expect_hello(r, HELLO_ALL);

	Packet pk;
	peer_recv(r, &pk);
	ck_assert_int_eq(pk.type, PACKET_EVENT);
	ck_assert_uint_eq(check_numbered_event(r, pk.body, pk.body_size), 1);
	packet_clear(&pk);
	rig_free(r);
}
END_TEST

START_TEST(test_batch_receive)
{
	warm_up();
	int before = count_fds();
	Rig *r = rig_new();
	expect_hello(r, HELLO_ALL);
	peer_send_hello(r, HELLO_BATCH | HELLO_POOL);

	int pipefd[2];
	ck_assert_int_eq(pipe2(pipefd, O_CLOEXEC), 0);
	static const char *texts[] = {"one", "two", "three"};
	GByteArray *body = g_byte_array_new();
	for (guint i = 0; i < 3; i++) {
		guint n_fds = i == 1;
		GByteArray *ev = event_build(&r->mine, r->next_seq++, texts[i], strlen(texts[i]),
					     n_fds);
		batch_entry_append(body, ev->len, (guint16)n_fds, 0, ev);
		g_byte_array_unref(ev);
	}
	peer_send(r, PACKET_BATCH, body->data, body->len, &pipefd[1], 1);
	g_byte_array_unref(body);

	expect_payload(r, "one", 3);
	MeshMessage *msg = expect_message(r);
	check_payload(msg, "two", 3);
	ck_assert_uint_eq(mesh_message_get_n_resources(msg), 1);
	int fd = mesh_message_steal_fd(msg, 0);
	struct stat a, b;
	ck_assert_int_eq(fstat(fd, &a), 0);
	ck_assert_int_eq(fstat(pipefd[1], &b), 0);
	ck_assert(a.st_ino == b.st_ino && a.st_dev == b.st_dev);
	close(fd);
	mesh_message_free(msg);
	expect_payload(r, "three", 5);

	close(pipefd[0]);
	close(pipefd[1]);
	rig_free(r);
	wait_fds_back_to(before);
}
END_TEST

/* Each a batch that must end the connection before any of its events is delivered. */
typedef enum {
	BAD_BATCH_TRUNCATED_HEADER,
	BAD_BATCH_SIZE_ZERO,
	BAD_BATCH_SIZE_PAST_END,
	BAD_BATCH_RESERVED,
	BAD_BATCH_MISSING_FDS,
	BAD_BATCH_FDS_LEFT_OVER,
	BAD_BATCH_EMPTY,
} BadBatch;

static const char *const bad_batch_reasons[] = {
	[BAD_BATCH_TRUNCATED_HEADER] = "without its header",
	[BAD_BATCH_SIZE_ZERO] = "bad size",
	[BAD_BATCH_SIZE_PAST_END] = "bad size",
	[BAD_BATCH_RESERVED] = "reserved",
	[BAD_BATCH_MISSING_FDS] = "missing fds",
	[BAD_BATCH_FDS_LEFT_OVER] = "left over",
	[BAD_BATCH_EMPTY] = "empty",
};

/* Each case breaks one rule only, so that no other check can mask a missing one. */
static void send_bad_batch(Rig *r, BadBatch how)
{
	static const guint8 half_header[5] = {5, 0, 0, 0, 0};
	size_t n_fds = 1;

	if (how == BAD_BATCH_EMPTY) {
		/* No fd either: only the emptiness is wrong. */
		peer_send(r, PACKET_BATCH, NULL, 0, NULL, 0);
		return;
	}
	GByteArray *body = g_byte_array_new();
	int fds[2] = {
		open("/dev/null", O_RDONLY | O_CLOEXEC),
		open("/dev/null", O_RDONLY | O_CLOEXEC),
	};
	/* First a good entry with the packet's fd: it must not be delivered. */
	GByteArray *first = event_build(&r->mine, r->next_seq++, "never", 5, 1);
	batch_entry_append(body, first->len, 1, 0, first);
	g_byte_array_unref(first);
	/* Then the bad one (for MISSING_FDS, it names an fd the packet no longer has). */
	GByteArray *next = event_build(&r->mine, r->next_seq++, "nope", 4,
				       how == BAD_BATCH_MISSING_FDS);
	switch (how) {
	case BAD_BATCH_TRUNCATED_HEADER:
		g_byte_array_append(body, half_header, sizeof(half_header));
		break;
	case BAD_BATCH_SIZE_ZERO:
		batch_entry_append(body, 0, 0, 0, NULL);
		break;
	case BAD_BATCH_SIZE_PAST_END:
		batch_entry_append(body, next->len + 1, 0, 0, next);
		break;
	case BAD_BATCH_RESERVED:
		batch_entry_append(body, next->len, 0, 1, next);
		break;
	case BAD_BATCH_MISSING_FDS:
		batch_entry_append(body, next->len, 1, 0, next);
		break;
	case BAD_BATCH_FDS_LEFT_OVER:
		n_fds = 2;
		break;
	case BAD_BATCH_EMPTY:
		g_assert_not_reached();
	}
	peer_send(r, PACKET_BATCH, body->data, body->len, fds, n_fds);
	g_byte_array_unref(next);
	g_byte_array_unref(body);
	close(fds[0]);
	close(fds[1]);
}

START_TEST(test_batch_hostile)
{
	BadBatch how = (BadBatch)_i;

	warm_up();
	int before = count_fds();
	Rig *r = rig_new();
	expect_hello(r, HELLO_ALL);
	peer_send_hello(r, HELLO_BATCH | HELLO_POOL);
	rig_sync(r);
	send_bad_batch(r, how);
	expect_failure(r, bad_batch_reasons[how]);
	rig_free(r);
	wait_fds_back_to(before);
}
END_TEST

START_TEST(test_batch_send)
{
	Rig *r = rig_new_full(FLOOD_SNDBUF);
	expect_hello(r, HELLO_ALL);
	peer_send_hello(r, HELLO_BATCH);
	rig_sync(r);
	guint batches = flood(r, 2000);
	ck_assert_msg(batches >= 1, "2000 events under load and no batch");
	rig_free(r);
}
END_TEST

START_TEST(test_batch_send_not_announced)
{
	/* An upstream peer (no hello), then a C peer that reads pool events only. */
	for (int variant = 0; variant < 2; variant++) {
		Rig *r = rig_new_full(FLOOD_SNDBUF);
		expect_hello(r, HELLO_ALL);
		if (variant == 1) {
			peer_send_hello(r, HELLO_POOL);
			rig_sync(r);
		}
		ck_assert_uint_eq(flood(r, 2000), 0);
		rig_free(r);
	}
}
END_TEST

/* The fake node reading on a thread of its own (no Check calls there). */
typedef struct {
	int sock;
	guint want; /* events */
	gint64 deadline;
	GPtrArray *packets; /* Packet * in arrival order */
} Reader;

/* Events in an EVENT or BATCH packet, counted leniently: the main thread checks. */
static guint packet_count_events(const Packet *pk)
{
	guint n = 0;

	if (pk->type == PACKET_EVENT)
		return 1;
	if (pk->type != PACKET_BATCH)
		return 0;
	for (size_t off = 0; pk->body_size - off >= BATCH_ENTRY_HEADER; n++) {
		guint32 len = get_le32(pk->body + off);
		off += BATCH_ENTRY_HEADER;
		if (len == 0 || len > pk->body_size - off)
			break;
		off += len;
	}
	return n;
}

static gpointer reader_run(gpointer data)
{
	Reader *rd = data;
	guint events = 0;

	while (events < rd->want && g_get_monotonic_time() < rd->deadline) {
		Packet *pk = g_new(Packet, 1);
		int got = packet_recv(rd->sock, pk, 100);
		if (got <= 0) {
			packet_clear(pk);
			g_free(pk);
			if (got < 0)
				break;
			continue;
		}
		g_ptr_array_add(rd->packets, pk);
		events += packet_count_events(pk);
	}
	return NULL;
}

static void packet_free(gpointer data)
{
	packet_clear(data);
	g_free(data);
}

START_TEST(test_streak)
{
	enum { N = 200 };
	Rig *r = rig_new_full(STREAK_SNDBUF);
	expect_hello(r, HELLO_ALL);
	peer_send_hello(r, HELLO_BATCH);
	/* The last packet from the fake node: the streak counts from here. */
	rig_sync(r);

	Reader rd = {
		.sock = r->sock,
		.want = N,
		.deadline = g_get_monotonic_time() + (gint64)wait_ms() * 1000,
		.packets = g_ptr_array_new_with_free_func(packet_free),
	};
	GThread *reader = g_thread_new("fake-node-reader", reader_run, &rd);
	/* Short: even unread, they would not fill the socket (only the streak batches). */
	node_send_numbered(r, 1, N, 0);
	g_thread_join(reader);

	GArray *seqs = g_array_new(FALSE, FALSE, sizeof(guint64));
	guint batches = 0;
	for (guint i = 0; i < rd.packets->len; i++) {
		const Packet *pk = rd.packets->pdata[i];
		collect_numbered(r, pk, seqs);
		batches += pk->type == PACKET_BATCH;
		/* The socket has room: the first events of the streak go one by one. */
		if (i < STREAM_STREAK)
			ck_assert_msg(pk->type == PACKET_EVENT, "packet %u is a batch", i + 1);
	}
	check_seqs(seqs, N);
	ck_assert_msg(batches >= 1, "a one-way stream of %d events and no batch", N);
	g_array_unref(seqs);
	g_ptr_array_unref(rd.packets);
	rig_free(r);
}
END_TEST

/*
 * A peer that does not read: once the connection holds the send limit, a
 * send waits for room, then the connection fails "peer not reading",
 * naming it; what this process holds for it stays bounded (the queue grew
 * without bound).
 */
START_TEST(test_send_limit_stalled)
{
	enum { N = 4000 };
	Rig *r = rig_new_full(FLOOD_SNDBUF);
	expect_hello(r, HELLO_ALL);
	mesh_unix_node_set_send_limit(r->unode, MESH_UNIX_MIN_SEND_LIMIT, 100 * 1000);
	/* 800 KB: far more than the socket's buffer and the limit together. */
	for (guint i = 1; i <= N; i++) {
		char text[FLOOD_MESSAGE];
		size_t len = numbered_text(text, i, FLOOD_MESSAGE);
		if (!port_send(r->port, mesh_message_new(text, len), FALSE))
			break; /* the port failed meanwhile */
	}
	expect_failure(r, "peer not reading");
	rig_free(r);
}
END_TEST

/* A peer that reads, slower than the sender: the sender waits, nothing is lost or reordered. */
START_TEST(test_send_limit_reader)
{
	enum { N = 4000 };
	Rig *r = rig_new_full(FLOOD_SNDBUF);
	expect_hello(r, HELLO_ALL);
	mesh_unix_node_set_send_limit(r->unode, MESH_UNIX_MIN_SEND_LIMIT, 30 * G_USEC_PER_SEC);
	Reader rd = {
		.sock = r->sock,
		.want = N,
		.deadline = g_get_monotonic_time() + (gint64)wait_ms() * 1000,
		.packets = g_ptr_array_new_with_free_func(packet_free),
	};
	GThread *reader = g_thread_new("fake-node-reader", reader_run, &rd);
	node_send_numbered(r, 1, N, FLOOD_MESSAGE);
	g_thread_join(reader);
	GArray *seqs = g_array_new(FALSE, FALSE, sizeof(guint64));
	for (guint i = 0; i < rd.packets->len; i++)
		collect_numbered(r, rd.packets->pdata[i], seqs);
	check_seqs(seqs, N);
	g_array_unref(seqs);
	g_ptr_array_unref(rd.packets);
	ck_assert_ptr_null(g_async_queue_try_pop(r->inbox->queue)); /* no failure */
	rig_free(r);
}
END_TEST

/*
 * A rig whose connection comes from an invitation (the node leads, the
 * fake node is the joiner): the invitation carries the leader's
 * extensions, the leader says no hello, and its first packet, the
 * InitialMessage, is a plain EVENT to the joiner's port (checked here).
 * @c_joiner: the fake node then says a C joiner's hello; otherwise it plays
 * an upstream joiner, which says nothing.
 */
static Rig *rig_new_invited_full(gboolean c_joiner, guint extensions)
{
	Rig *r = g_new0(Rig, 1);
	MeshPort *invited;
	MeshInvitation *inv = NULL;
	MeshPortId joiner_port;
	MeshEventView view;
	Packet pk;

	r->node = mesh_node_new();
	r->unode = mesh_unix_node_new(r->node, NULL);
	mesh_port_new_pair(&r->keep, &invited);
	ck_assert(mesh_unix_node_invite(r->unode, invited, -1, &inv, NULL));
	ck_assert_uint_eq(mesh_invitation_get_extensions(inv), extensions);
	mesh_invitation_get_address(inv, &r->peer, &joiner_port, NULL, NULL);
	r->sock = mesh_invitation_steal_fd(inv);
	mesh_invitation_free(inv);

	peer_recv(r, &pk);
	ck_assert_int_eq(pk.type, PACKET_EVENT);
	ck_assert_int_eq(protocol_event_parse(pk.body, pk.body_size, &view), 0);
	ck_assert_msg(memcmp(view.header.port_id.bytes, joiner_port.bytes, 16) == 0,
		      "the leader's first packet is not its initial message (a hello?)");
	packet_clear(&pk);
	if (c_joiner)
		peer_send_hello(r, HELLO_BATCH | HELLO_POOL | HELLO_MOVES);

	mesh_uuid_generate(&r->mine);
	mesh_uuid_generate(&r->theirs);
	r->port = mesh_node_add_port(r->node, &r->mine, &r->peer, &r->theirs);
	ck_assert_ptr_nonnull(r->port);
	r->inbox = inbox_new(r->port);
	r->next_seq = 1;
	return r;
}

static Rig *rig_new_invited(gboolean c_joiner)
{
	return rig_new_invited_full(c_joiner, HELLO_ALL);
}

/*
 * A one-way stream of @n short events and one large event to the fake
 * joiner; returns how many BATCH packets came. Every packet is checked:
 * EVENT or BATCH for the stream, then LARGE_EVENT or POOL_EVENT for the
 * large one (@pooled says which).
 */
static guint invited_stream(Rig *r, guint n, gboolean pooled)
{
	rig_sync(r); /* the node has read whatever the fake node said first */
	Reader rd = {
		.sock = r->sock,
		.want = n,
		.deadline = g_get_monotonic_time() + (gint64)wait_ms() * 1000,
		.packets = g_ptr_array_new_with_free_func(packet_free),
	};
	GThread *reader = g_thread_new("fake-joiner-reader", reader_run, &rd);
	node_send_numbered(r, 1, n, 0);
	g_thread_join(reader);
	GArray *seqs = g_array_new(FALSE, FALSE, sizeof(guint64));
	guint batches = 0;
	for (guint i = 0; i < rd.packets->len; i++) {
		const Packet *pk = rd.packets->pdata[i];
		collect_numbered(r, pk, seqs); /* EVENT or BATCH, to our port only */
		batches += pk->type == PACKET_BATCH;
	}
	check_seqs(seqs, n);
	g_array_unref(seqs);
	g_ptr_array_unref(rd.packets);

	uint8_t *payload = g_malloc(LARGE_PAYLOAD);
	fill_pattern(payload, LARGE_PAYLOAD, 1);
	ck_assert(port_send(r->port, mesh_message_new(payload, LARGE_PAYLOAD), FALSE));
	g_free(payload);
	Packet pk;
	peer_recv(r, &pk);
	ck_assert_int_eq(pk.type, pooled ? PACKET_POOL_EVENT : PACKET_LARGE_EVENT);
	packet_clear(&pk);
	return batches;
}

/*
 * An upstream joiner (it says no hello): the C leader sends it upstream's
 * packets only, no hello, no batch even for a one-way stream that a C peer
 * would get batched, and a large event in a fresh memfd, not a pool buffer.
 */
START_TEST(test_invited_upstream_joiner)
{
	Rig *r = rig_new_invited(FALSE);
	ck_assert_uint_eq(invited_stream(r, 200, FALSE), 0);
	/* Not a C node to the leader: its introductions to it say no hello. */
	ck_assert(!unix_node_peer_is_c(r->unode, &r->peer));
	/* Nothing else came (a hello, a pool release...). */
	Packet pk;
	ck_assert_int_eq(packet_recv(r->sock, &pk, 100), 0);
	rig_free(r);
}
END_TEST

/* A C joiner's hello (sent first, as mesh_unix_node_join() does): the extensions are on. */
START_TEST(test_invited_c_joiner)
{
	Rig *r = rig_new_invited(TRUE);
	ck_assert_uint_ge(invited_stream(r, 200, TRUE), 1);
	ck_assert(unix_node_peer_is_c(r->unode, &r->peer));
	ck_assert(unix_node_peer_is_c(r->unode, mesh_node_get_id(r->node))); /* itself */
	rig_free(r);
}
END_TEST

/* A follower of @leader, joined in process; @extensions 0 plays an upstream joiner's wire. */
static MeshUnixNode *join_follower(MeshUnixNode *leader, gboolean keep_extensions,
				   MeshPort **ret_user)
{
	MeshPort *invited, *port = NULL;
	MeshInvitation *inv = NULL;
	GError *error = NULL;
	mesh_port_new_pair(ret_user, &invited);
	ck_assert(mesh_unix_node_invite(leader, invited, -1, &inv, NULL));
	if (!keep_extensions)
		mesh_invitation_set_extensions(inv, 0); /* as from an upstream leader: no hello */
	MeshUnixNode *u = mesh_unix_node_join(inv, NULL, 10 * G_USEC_PER_SEC, &port, &error);
	ck_assert_msg(u, "%s", error ? error->message : "");
	mesh_port_close(port);
	return u;
}

/* A message from @a to a new port on @b (the leader introduces them); waits for it. */
static void introduce(MeshUnixNode *a, MeshUnixNode *b)
{
	MeshNode *an = mesh_unix_node_get_node(a), *bn = mesh_unix_node_get_node(b);
	MeshPortId pa, pb;
	mesh_uuid_generate(&pa);
	mesh_uuid_generate(&pb);
	MeshPort *in_b = mesh_node_add_port(bn, &pb, mesh_node_get_id(an), &pa);
	Inbox *inbox = inbox_new(in_b);
	MeshPort *from_a = mesh_node_add_port(an, &pa, mesh_node_get_id(bn), &pb);
	ck_assert(port_send(from_a, mesh_message_new("hi", 2), FALSE));
	InboxItem *item = g_async_queue_timeout_pop(inbox->queue, (guint64)wait_ms() * 1000);
	ck_assert_msg(item && item->msg, "the introduced node's message did not arrive");
	inbox_item_free(item);
	inbox_free(inbox);
	mesh_port_close(from_a);
	mesh_port_close(in_b);
}

/*
 * Waits until @leader has read the hello of its follower @id. Joining does
 * not wait for it: the joiner's hello is first on its socket, but the
 * leader reads that socket when its I/O thread gets to it.
 */
static void wait_hello_read(MeshUnixNode *leader, const MeshNodeId *id)
{
	gint64 deadline = g_get_monotonic_time() + (gint64)wait_ms() * 1000;
	while (!unix_node_peer_is_c(leader, id) && g_get_monotonic_time() < deadline)
		g_usleep(1000);
	ck_assert_msg(unix_node_peer_is_c(leader, id), "the leader did not read the follower's hello");
}

/*
 * Introductions: two C followers (each said its hello to the leader) get a
 * socket marked as between C nodes and say their hellos on it; a C follower
 * and one that speaks upstream's wire (no hello to the leader) do not: no
 * hello either way, so neither takes the other for a C node.
 */
START_TEST(test_introductions)
{
	MeshNode *ln = mesh_node_new();
	MeshUnixNode *leader = mesh_unix_node_new(ln, NULL);
	MeshPort *uj, *uk, *uu;
	MeshUnixNode *j = join_follower(leader, TRUE, &uj);
	MeshUnixNode *k = join_follower(leader, TRUE, &uk);
	MeshUnixNode *up = join_follower(leader, FALSE, &uu);
	const MeshNodeId *jid = mesh_node_get_id(mesh_unix_node_get_node(j));
	const MeshNodeId *kid = mesh_node_get_id(mesh_unix_node_get_node(k));
	const MeshNodeId *upid = mesh_node_get_id(mesh_unix_node_get_node(up));

	/*
	 * The leader marks the pair's socket as between C nodes by what it
	 * knows when a request naming them comes: j's request (behind j's
	 * hello on j's socket) can be read before k's hello on k's socket,
	 * and j and k then speak upstream's wire with each other (the safe
	 * choice for a node whose hello the leader has not seen).
	 */
	wait_hello_read(leader, jid);
	wait_hello_read(leader, kid);
	/*
	 * Both ways: a message from k reaching j proves that j read k's hello
	 * (the first thing on k's end); one way alone leaves j's view racing.
	 */
	introduce(j, k);
	introduce(k, j);
	ck_assert(unix_node_peer_is_c(j, kid));
	ck_assert(unix_node_peer_is_c(k, jid));

	introduce(j, up);
	ck_assert(!unix_node_peer_is_c(j, upid));
	ck_assert(!unix_node_peer_is_c(up, jid));
	/* The leader: J said its hello, the other did not. */
	ck_assert(unix_node_peer_is_c(leader, jid));
	ck_assert(!unix_node_peer_is_c(leader, upid));

	mesh_port_close(uj);
	mesh_port_close(uk);
	mesh_port_close(uu);
	mesh_unix_node_free(j);
	mesh_unix_node_free(k);
	mesh_unix_node_free(up);
	mesh_unix_node_free(leader);
	mesh_node_unref(ln);
}
END_TEST

/* test_introduced_while_asking: j's connector, held open until k's introduction connected j. */
typedef struct {
	MeshUnixNode *j, *k;
	MeshPortId pj, pk;
	MeshPort *in_k; /* k's port to j's, made inside the window */
} AskWindow;

static gboolean pending_empty(MeshUnixNode *u)
{
	g_mutex_lock(&u->lock);
	gboolean empty = g_hash_table_size(u->pending) == 0;
	g_mutex_unlock(&u->lock);
	return empty;
}

static void connector_in_window(MeshNode *node, MeshRemoteNode *remote, void *data)
{
	AskWindow *w = data;
	const MeshNodeId *kid = mesh_node_get_id(mesh_unix_node_get_node(w->k));

	if (mesh_uuid_equal(mesh_remote_node_get_id(remote), kid) && !w->in_k) {
		/*
		 * j's remote node for k is in j's table, its request not made
		 * yet: k asks for j now, and the leader's answer connects j's
		 * remote node before j's own request goes.
		 */
		w->in_k = mesh_node_add_port(mesh_unix_node_get_node(w->k), &w->pk, mesh_node_get_id(node),
					     &w->pj);
		gint64 deadline = g_get_monotonic_time() + (gint64)wait_ms() * 1000;
		while (!unix_node_peer_is_c(w->j, kid) && g_get_monotonic_time() < deadline)
			g_usleep(1000);
		ck_assert_msg(unix_node_peer_is_c(w->j, kid), "k's introduction did not connect j");
	}
	unix_connector_cb(node, remote, w->j);
}

/*
 * A follower asks the leader for a node that an introduction connected
 * meanwhile (the other node asked first, and its answer came between the
 * remote node's making and the connector's call): the leader answers the
 * second request with no socket, as for a pair it connected already, and
 * the follower keeps the connection it has.
 */
START_TEST(test_introduced_while_asking)
{
	MeshNode *ln = mesh_node_new();
	MeshUnixNode *leader = mesh_unix_node_new(ln, NULL);
	MeshPort *uj, *uk;
	MeshUnixNode *j = join_follower(leader, TRUE, &uj);
	MeshUnixNode *k = join_follower(leader, TRUE, &uk);
	MeshNode *jn = mesh_unix_node_get_node(j);
	const MeshNodeId *jid = mesh_node_get_id(jn);
	const MeshNodeId *kid = mesh_node_get_id(mesh_unix_node_get_node(k));
	AskWindow w = {.j = j, .k = k};

	wait_hello_read(leader, jid);
	wait_hello_read(leader, kid);
	mesh_uuid_generate(&w.pj);
	mesh_uuid_generate(&w.pk);
	mesh_node_set_connector(jn, connector_in_window, &w);
	MeshPort *in_j = mesh_node_add_port(jn, &w.pj, kid, &w.pk);
	ck_assert(w.in_k);
	/* The leader's answer to j's request came (nothing pending). */
	gint64 deadline = g_get_monotonic_time() + (gint64)wait_ms() * 1000;
	while (!pending_empty(j) && g_get_monotonic_time() < deadline)
		g_usleep(1000);
	ck_assert(pending_empty(j));

	Inbox *at_j = inbox_new(in_j), *at_k = inbox_new(w.in_k);
	ck_assert(port_send(in_j, mesh_message_new("to k", 4), FALSE));
	ck_assert(port_send(w.in_k, mesh_message_new("to j", 4), FALSE));
	Inbox *inboxes[] = {at_k, at_j};
	for (guint i = 0; i < G_N_ELEMENTS(inboxes); i++) {
		InboxItem *item =
			g_async_queue_timeout_pop(inboxes[i]->queue, (guint64)wait_ms() * 1000);
		ck_assert_msg(item && item->msg, "%s: %s", i == 0 ? "j to k" : "k to j",
			      item && item->failure ? item->failure : "nothing arrived");
		inbox_item_free(item);
	}
	ck_assert(unix_node_peer_is_c(j, kid));

	inbox_free(at_j);
	inbox_free(at_k);
	mesh_port_close(in_j);
	mesh_port_close(w.in_k);
	mesh_port_close(uj);
	mesh_port_close(uk);
	mesh_unix_node_free(j);
	mesh_unix_node_free(k);
	mesh_unix_node_free(leader);
	mesh_node_unref(ln);
}
END_TEST

/* A read-only mapping of the fake node's view of one of the node's pool buffers. */
typedef struct {
	guint32 id;
	const uint8_t *map;
	size_t size;
} PeerBuf;

static void check_event_bytes(const uint8_t *got, const GByteArray *want)
{
	ck_assert_msg(memcmp(got, want->data, want->len) == 0, "the event's bytes differ");
}

START_TEST(test_pool_send)
{
	enum { N = TX_POOL_BUFS + 4 };
	uint8_t *payload = g_malloc(LARGE_PAYLOAD);
	PeerBuf bufs[TX_POOL_BUFS] = {{0}};
	Rig *r = rig_new();

	expect_hello(r, HELLO_ALL);
	peer_send_hello(r, HELLO_POOL);
	rig_sync(r);
	for (guint i = 1; i <= N; i++) {
		fill_pattern(payload, LARGE_PAYLOAD, i);
		ck_assert(port_send(r->port, mesh_message_new(payload, LARGE_PAYLOAD), FALSE));
	}

	for (guint i = 1; i <= N; i++) {
		Packet pk;
		fill_pattern(payload, LARGE_PAYLOAD, i);
		GByteArray *want = event_build(&r->theirs, i, payload, LARGE_PAYLOAD, 0);
		peer_recv(r, &pk);
		ck_assert_uint_eq(pal_fd_array_len(pk.fds), 1);
		int memfd = pal_fd_array_get(pk.fds, 0);
		struct stat st;
		ck_assert_int_eq(fstat(memfd, &st), 0);
		ck_assert_uint_ge((size_t)st.st_size, want->len);
		if (i <= TX_POOL_BUFS) {
			/* A new buffer of the pool, with its memfd. */
			ck_assert_int_eq(pk.type, PACKET_POOL_EVENT);
			ck_assert_uint_eq(pk.body_size, POOL_EVENT_BODY);
			guint32 id = get_le32(pk.body);
			ck_assert_uint_eq(get_le32(pk.body + 4), POOL_NEW);
			ck_assert_uint_eq(get_le64(pk.body + 8), want->len);
			for (guint k = 0; k < i - 1; k++)
				ck_assert_uint_ne(bufs[k].id, id);
			int seals = fcntl(memfd, F_GET_SEALS);
			ck_assert_int_ge(seals, 0);
			ck_assert_int_eq(seals & (F_SEAL_SHRINK | F_SEAL_GROW),
					 F_SEAL_SHRINK | F_SEAL_GROW);
			void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, memfd, 0);
			ck_assert(map != MAP_FAILED);
			bufs[i - 1] = (PeerBuf){id, map, (size_t)st.st_size};
			check_event_bytes(map, want);
		} else {
			/* The pool is exhausted (nothing released): a sealed memfd, as upstream. */
			ck_assert_int_eq(pk.type, PACKET_LARGE_EVENT);
			ck_assert_uint_eq(pk.body_size, 0);
			size_t size;
			ck_assert_int_eq(pal_memfd_verify_seals(memfd, &size), 0);
			void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, memfd, 0);
			ck_assert(map != MAP_FAILED);
			check_event_bytes(map, want);
			munmap(map, size);
		}
		g_byte_array_unref(want);
		packet_clear(&pk);
	}

	/* One buffer released: the next large event reuses it, without its memfd. */
	PeerBuf *freed = &bufs[2];
	GByteArray *release = g_byte_array_new();
	append_le32(release, freed->id);
	append_le32(release, 0);
	peer_send(r, PACKET_POOL_RELEASE, release->data, release->len, NULL, 0);
	g_byte_array_unref(release);
	rig_sync(r);
	fill_pattern(payload, LARGE_PAYLOAD, N + 1);
	ck_assert(port_send(r->port, mesh_message_new(payload, LARGE_PAYLOAD), FALSE));
	GByteArray *want = event_build(&r->theirs, N + 1, payload, LARGE_PAYLOAD, 0);
	Packet pk;
	peer_recv(r, &pk);
	ck_assert_int_eq(pk.type, PACKET_POOL_EVENT);
	ck_assert_uint_eq(pal_fd_array_len(pk.fds), 0);
	ck_assert_uint_eq(pk.body_size, POOL_EVENT_BODY);
	ck_assert_uint_eq(get_le32(pk.body), freed->id);
	ck_assert_uint_eq(get_le32(pk.body + 4), 0);
	ck_assert_uint_eq(get_le64(pk.body + 8), want->len);
	check_event_bytes(freed->map, want);
	packet_clear(&pk);
	g_byte_array_unref(want);

	for (guint k = 0; k < TX_POOL_BUFS; k++)
		munmap((void *)bufs[k].map, bufs[k].size);
	g_free(payload);
	rig_free(r);
}
END_TEST

/*
 * Growing sizes with the pool full: each new buffer replaces a free one
 * that is too small and takes its id (the receiver replaces its mapping),
 * so the ids in use stay within the pool's size; new ids every time would
 * walk a C receiver past its limit of 16 buffers and end the connection.
 */
START_TEST(test_pool_ids_bounded)
{
	Rig *r = rig_new();
	GHashTable *ids = g_hash_table_new(g_direct_hash, g_direct_equal);

	expect_hello(r, HELLO_ALL);
	peer_send_hello(r, HELLO_POOL);
	rig_sync(r);
	/* 64 KiB to 8 MiB classes: 8 events each, every one a new buffer. */
	for (guint k = 0; k < 8; k++) {
		size_t size = ((size_t)40 << 10) << k;
		uint8_t *payload = g_malloc(size);
		for (guint i = 0; i < TX_POOL_BUFS; i++) {
			fill_pattern(payload, size, k * 16 + i);
			ck_assert(port_send(r->port, mesh_message_new(payload, size), FALSE));
		}
		guint32 got[TX_POOL_BUFS];
		for (guint i = 0; i < TX_POOL_BUFS; i++) {
			Packet pk;
			peer_recv(r, &pk);
			ck_assert_int_eq(pk.type, PACKET_POOL_EVENT);
			ck_assert_uint_eq(get_le32(pk.body + 4), POOL_NEW);
			got[i] = get_le32(pk.body);
			g_hash_table_add(ids, GUINT_TO_POINTER(got[i]));
			packet_clear(&pk);
		}
		/* All released: the next, larger ones find only buffers too small. */
		for (guint i = 0; i < TX_POOL_BUFS; i++) {
			uint8_t rel[POOL_RELEASE_BODY] = {0};
			memcpy(rel, &(guint32){GUINT32_TO_LE(got[i])}, 4);
			peer_send(r, PACKET_POOL_RELEASE, rel, sizeof(rel), NULL, 0);
		}
		rig_sync(r);
		g_free(payload);
	}
	ck_assert_uint_le(g_hash_table_size(ids), TX_POOL_BUFS);
	g_hash_table_destroy(ids);
	rig_free(r);
}
END_TEST

/*
 * Two real nodes: large events of ever new sizes. Each new size makes the
 * sender replace a free buffer that is too small; the receiver must
 * replace its mapping (same id) rather than pile up buffers until its limit
 * ends the connection.
 */
START_TEST(test_pool_sizes_cycle)
{
	MeshNode *a = mesh_node_new(), *b = mesh_node_new();
	MeshUnixNode *ua = mesh_unix_node_new(a, NULL), *ub = mesh_unix_node_new(b, NULL);
	MeshPortId pa, pb;
	int sv[2];

	mesh_uuid_generate(&pa);
	mesh_uuid_generate(&pb);
	/* Known before the ports need them: no introduction through a leader. */
	MeshRemoteNode *ha = mesh_node_add_remote(a, mesh_node_get_id(b));
	MeshRemoteNode *hb = mesh_node_add_remote(b, mesh_node_get_id(a));
	MeshPort *port_a = mesh_node_add_port(a, &pa, mesh_node_get_id(b), &pb);
	MeshPort *port_b = mesh_node_add_port(b, &pb, mesh_node_get_id(a), &pa);
	ck_assert_ptr_nonnull(port_a);
	ck_assert_ptr_nonnull(port_b);
	Inbox *in = inbox_new(port_b);
	ck_assert_int_eq(pal_socketpair(SOCK_SEQPACKET, sv), 0);
	ck_assert(mesh_unix_node_connect_take(ua, mesh_node_get_id(b), sv[0], NULL));
	ck_assert(mesh_unix_node_connect_take(ub, mesh_node_get_id(a), sv[1], NULL));
	mesh_remote_node_unref(ha);
	mesh_remote_node_unref(hb);

	/* 20 KiB to 10 MiB, three times over: 30 events, > 2 x RX_POOL_BUFS sizes. */
	guint sent = 0;
	for (guint round = 0; round < 3; round++) {
		for (guint k = 0; k < 10; k++) {
			size_t size = ((size_t)20 << 10) << k;
			uint8_t *payload = g_malloc(size);
			fill_pattern(payload, size, ++sent);
			ck_assert(port_send(port_a, mesh_message_new(payload, size), FALSE));
			InboxItem *item = g_async_queue_timeout_pop(in->queue,
								    (guint64)wait_ms() * 1000);
			ck_assert_msg(item != NULL, "event %u (%zu bytes) did not arrive", sent, size);
			ck_assert_msg(item->msg != NULL, "event %u: the port failed: %s", sent,
				      item->failure ? item->failure : "closed");
			check_payload(item->msg, payload, size);
			inbox_item_free(item);
			g_free(payload);
		}
	}

	inbox_free(in);
	mesh_port_close(port_a);
	mesh_port_close(port_b);
	mesh_unix_node_free(ua);
	mesh_unix_node_free(ub);
	mesh_node_unref(a);
	mesh_node_unref(b);
}
END_TEST

/* A memfd of @size sealed as a pool buffer is (against resizing), holding @ev. */
static int pool_memfd_new(size_t size, const GByteArray *ev, gboolean seal)
{
	int memfd = pal_memfd_create("fake-pool", size);
	ck_assert_int_ge(memfd, 0);
	if (ev)
		ck_assert_int_eq(pwrite(memfd, ev->data, ev->len, 0), (ssize_t)ev->len);
	if (seal)
		ck_assert_int_eq(fcntl(memfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW), 0);
	return memfd;
}

static void peer_send_pool_event(Rig *r, guint32 id, guint32 flags, guint64 size,
				 const int *fds, size_t n_fds)
{
	GByteArray *body = g_byte_array_new();
	append_le32(body, id);
	append_le32(body, flags);
	append_le64(body, size);
	peer_send(r, PACKET_POOL_EVENT, body->data, body->len, fds, n_fds);
	g_byte_array_unref(body);
}

static void expect_release(Rig *r, guint32 id)
{
	Packet pk;
	peer_recv(r, &pk);
	ck_assert_int_eq(pk.type, PACKET_POOL_RELEASE);
	ck_assert_uint_eq(pal_fd_array_len(pk.fds), 0);
	ck_assert_uint_eq(pk.body_size, POOL_RELEASE_BODY);
	ck_assert_uint_eq(get_le32(pk.body), id);
	ck_assert_uint_eq(get_le32(pk.body + 4), 0);
	packet_clear(&pk);
}

START_TEST(test_pool_receive)
{
	enum { SIZE = 20000, BUF = 64 << 10 };
	uint8_t *a = g_malloc(SIZE), *b = g_malloc(SIZE);
	Rig *r = rig_new();

	expect_hello(r, HELLO_ALL);
	peer_send_hello(r, HELLO_POOL);
	fill_pattern(a, SIZE, 1);
	fill_pattern(b, SIZE, 2);

	GByteArray *ev = event_build(&r->mine, r->next_seq++, a, SIZE, 0);
	int memfd = pool_memfd_new(BUF, ev, TRUE);
	peer_send_pool_event(r, 5, POOL_NEW, ev->len, &memfd, 1);
	g_byte_array_unref(ev);
	MeshMessage *first = expect_message(r);
	check_payload(first, a, SIZE);
	expect_release(r, 5);

	/* The buffer written again: the first message is a copy and keeps its bytes. */
	ev = event_build(&r->mine, r->next_seq++, b, SIZE, 0);
	ck_assert_int_eq(pwrite(memfd, ev->data, ev->len, 0), (ssize_t)ev->len);
	peer_send_pool_event(r, 5, 0, ev->len, NULL, 0);
	g_byte_array_unref(ev);
	expect_payload(r, b, SIZE);
	expect_release(r, 5);
	check_payload(first, a, SIZE);
	mesh_message_free(first);

	close(memfd);
	g_free(a);
	g_free(b);
	rig_free(r);
}
END_TEST

/* Each a pool packet that must end the connection; the reason the node gives. */
typedef enum {
	BAD_POOL_UNSEALED,
	BAD_POOL_DEV_NULL,
	BAD_POOL_NO_FD,
	BAD_POOL_PAST_BUFFER,
	BAD_POOL_SIZE_ZERO,
	BAD_POOL_UNKNOWN_ID,
	BAD_POOL_RELEASE_UNKNOWN,
	BAD_POOL_TOO_MANY,
	BAD_POOL_UNKNOWN_FLAG,
} BadPool;

static const char *const bad_pool_reasons[] = {
	[BAD_POOL_UNSEALED] = "sealed against shrinking",
	[BAD_POOL_DEV_NULL] = "sealed against shrinking",
	[BAD_POOL_NO_FD] = "without its memfd",
	[BAD_POOL_PAST_BUFFER] = "bad size",
	[BAD_POOL_SIZE_ZERO] = "bad size",
	[BAD_POOL_UNKNOWN_ID] = "unknown pool buffer",
	[BAD_POOL_RELEASE_UNKNOWN] = "not in use",
	[BAD_POOL_TOO_MANY] = "too many pool buffers",
	[BAD_POOL_UNKNOWN_FLAG] = "unknown flags",
};

static void send_bad_pool(Rig *r, BadPool how)
{
	enum { BUF = 4096 };
	int fd = -1;

	if (how == BAD_POOL_TOO_MANY) {
		/* As many buffers as a peer may have mapped, each delivering its event... */
		for (guint32 id = 1; id <= RX_POOL_BUFS; id++) {
			GByteArray *good = event_build(&r->mine, r->next_seq++, "ok", 2, 0);
			fd = pool_memfd_new(BUF, good, TRUE);
			peer_send_pool_event(r, id, POOL_NEW, good->len, &fd, 1);
			close(fd);
			g_byte_array_unref(good);
		}
		for (guint32 id = 1; id <= RX_POOL_BUFS; id++) {
			expect_payload(r, "ok", 2);
			expect_release(r, id);
		}
	}
	GByteArray *ev = event_build(&r->mine, r->next_seq++, "pooled", 6, 0);
	fd = -1;
	switch (how) {
	case BAD_POOL_UNSEALED:
		fd = pool_memfd_new(BUF, ev, FALSE);
		peer_send_pool_event(r, 1, POOL_NEW, ev->len, &fd, 1);
		break;
	case BAD_POOL_DEV_NULL:
		fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
		peer_send_pool_event(r, 1, POOL_NEW, ev->len, &fd, 1);
		break;
	case BAD_POOL_NO_FD:
		peer_send_pool_event(r, 1, POOL_NEW, ev->len, NULL, 0);
		break;
	case BAD_POOL_PAST_BUFFER:
		fd = pool_memfd_new(BUF, ev, TRUE);
		peer_send_pool_event(r, 1, POOL_NEW, 2 * BUF, &fd, 1);
		break;
	case BAD_POOL_SIZE_ZERO:
		fd = pool_memfd_new(BUF, ev, TRUE);
		peer_send_pool_event(r, 1, POOL_NEW, 0, &fd, 1);
		break;
	case BAD_POOL_UNKNOWN_ID:
		peer_send_pool_event(r, 9, 0, ev->len, NULL, 0);
		break;
	case BAD_POOL_RELEASE_UNKNOWN: {
		static const guint8 release[POOL_RELEASE_BODY] = {3};
		peer_send(r, PACKET_POOL_RELEASE, release, sizeof(release), NULL, 0);
		break;
	}
	case BAD_POOL_TOO_MANY:
		/* ...then one more. */
		fd = pool_memfd_new(BUF, ev, TRUE);
		peer_send_pool_event(r, RX_POOL_BUFS + 1, POOL_NEW, ev->len, &fd, 1);
		break;
	case BAD_POOL_UNKNOWN_FLAG:
		fd = pool_memfd_new(BUF, ev, TRUE);
		peer_send_pool_event(r, 1, POOL_NEW | 0x4, ev->len, &fd, 1);
		break;
	}
	if (fd >= 0)
		close(fd);
	g_byte_array_unref(ev);
}

START_TEST(test_pool_hostile)
{
	BadPool how = (BadPool)_i;

	warm_up();
	int before = count_fds();
	Rig *r = rig_new();
	expect_hello(r, HELLO_ALL);
	peer_send_hello(r, HELLO_BATCH | HELLO_POOL);
	rig_sync(r);
	send_bad_pool(r, how);
	expect_failure(r, bad_pool_reasons[how]);
	rig_free(r);
	wait_fds_back_to(before);
}
END_TEST


/*
 * The shared-memory ring (HELLO_RING), as the doc spells it: RING_SETUP
 * (type 0x83, body u32 LE data size, u32 0; fds: the sender's ring memfd,
 * the eventfd it polls for the peer's ring); a ring is a 4 KiB header page
 * (tail u64 at 64, head u64 at 128, armed u32 at 136) and RING_DATA bytes
 * of entries (u32 LE size, u32 LE gate, payload padded to 8). Once a
 * side's setup went, its socket packets carry its ring's write position in
 * header bytes 4-7.
 */
#define PACKET_RING_SETUP 0x83
#define RING_DATA (128u << 10)
#define RING_MAP (4096u + RING_DATA)
#define RING_TAIL 64
#define RING_HEAD 128
#define RING_ARMED 136
#define RING_SOCK_SENT 192 /* u32: socket packets the ring's writer has sent (a hint) */

typedef struct {
	int memfd;
	uint8_t *map;
	guint64 pos; /* the fake's own index: tail (its ring) or head (the node's) */
} FakeRing;

typedef struct {
	Rig *r;
	FakeRing tx;  /* the fake node's ring, the node reads it */
	FakeRing rx;  /* the node's ring, mapped from its setup */
	int node_efd; /* the node's eventfd: the fake writes it to wake the node */
	int fake_efd; /* ours: the node writes it */
	guint32 sock_sent; /* the fake's socket packets since its setup (the gate) */
} RingRig;

static guint64 *ring_word(uint8_t *map, size_t off)
{
	return (guint64 *)(map + off);
}

static int ring_memfd_new(int seals)
{
	int fd = memfd_create("fake-ring", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, RING_MAP), 0);
	if (seals)
		ck_assert_int_eq(fcntl(fd, F_ADD_SEALS, seals), 0);
	return fd;
}

/* A packet of the fake node stamped with its ring's write position. */
static void ring_peer_send(RingRig *rr, guint8 type, const void *body, size_t size,
			   const int *fds, size_t n_fds, guint32 stamp)
{
	uint8_t header[PACKET_HEADER] = {type};
	guint32 le = GUINT32_TO_LE(stamp);
	memcpy(header + 4, &le, 4);
	struct iovec iov[2] = {{header, PACKET_HEADER}, {(void *)body, size}};
	ssize_t sent = pal_send_with_fds(rr->r->sock, iov, size ? 2 : 1, fds, n_fds, 0);
	ck_assert_int_eq(sent, (ssize_t)(PACKET_HEADER + size));
	rr->sock_sent++;
}

static void ring_setup_body(uint8_t body[8], guint32 size)
{
	guint32 le = GUINT32_TO_LE(size);
	memset(body, 0, 8);
	memcpy(body, &le, 4);
}

/* The node's next packet (its header's stamp not checked). */
static void ring_node_recv(RingRig *rr, Packet *pk)
{
	int got = packet_recv(rr->r->sock, pk, wait_ms());
	ck_assert_msg(got == 1, got ? "the node ended the connection" : "no packet from the node");
}

/*
 * A rig whose fake node reads rings: the node's setup is checked and
 * mapped; with @send_setup, the fake node sends its own.
 */
static RingRig *ring_rig_new_in(gboolean send_setup, gboolean on_context)
{
	RingRig *rr = g_new0(RingRig, 1);
	Packet pk;
	struct stat st;

	rr->r = rig_new_in(0, on_context);
	expect_hello(rr->r, HELLO_ALL);
	peer_send_hello(rr->r, HELLO_ALL);
	ring_node_recv(rr, &pk);
	ck_assert_int_eq(pk.type, PACKET_RING_SETUP);
	ck_assert_uint_eq(pk.body_size, 8);
	ck_assert_uint_eq(get_le32(pk.body), RING_DATA);
	ck_assert_uint_eq(get_le32(pk.body + 4), 0);
	ck_assert_uint_eq(pal_fd_array_len(pk.fds), 2);
	ck_assert_uint_eq(get_le32(pk.data + 4), 0); /* its stamp: the ring is empty */
	rr->rx.memfd = pal_fd_array_steal(pk.fds, 0);
	rr->node_efd = pal_fd_array_steal(pk.fds, 1);
	packet_clear(&pk);
	int seals = fcntl(rr->rx.memfd, F_GET_SEALS);
	ck_assert_int_eq(seals & (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL),
			 F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
	ck_assert_int_eq(fstat(rr->rx.memfd, &st), 0);
	ck_assert_int_eq(st.st_size, RING_MAP);
	rr->rx.map = mmap(NULL, RING_MAP, PROT_READ | PROT_WRITE, MAP_SHARED, rr->rx.memfd, 0);
	ck_assert(rr->rx.map != MAP_FAILED);

	rr->tx.memfd = ring_memfd_new(F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
	rr->tx.map = mmap(NULL, RING_MAP, PROT_READ | PROT_WRITE, MAP_SHARED, rr->tx.memfd, 0);
	ck_assert(rr->tx.map != MAP_FAILED);
	rr->fake_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	ck_assert_int_ge(rr->fake_efd, 0);
	if (send_setup) {
		uint8_t body[8];
		ring_setup_body(body, RING_DATA);
		int fds[2] = {rr->tx.memfd, rr->fake_efd};
		ring_peer_send(rr, PACKET_RING_SETUP, body, 8, fds, 2, 0);
	}
	return rr;
}

static RingRig *ring_rig_new(gboolean send_setup)
{
	return ring_rig_new_in(send_setup, FALSE);
}

static void ring_rig_free(RingRig *rr)
{
	Rig *r = rr->r;
	munmap(rr->tx.map, RING_MAP);
	munmap(rr->rx.map, RING_MAP);
	close(rr->tx.memfd);
	close(rr->rx.memfd);
	close(rr->node_efd);
	close(rr->fake_efd);
	g_free(rr);
	rig_free(r);
}

/* Raw: an entry header and payload at the fake's tail, not published. */
static void fake_ring_put(RingRig *rr, guint32 size_field, guint32 gate, const void *data,
			  size_t size)
{
	uint8_t *d = rr->tx.map + 4096;
	guint32 h[2] = {GUINT32_TO_LE(size_field), GUINT32_TO_LE(gate)};
	memcpy(d + (rr->tx.pos % RING_DATA), h, 8);
	guint64 pos = rr->tx.pos + 8;
	for (size_t i = 0; i < size; i++, pos++)
		d[pos % RING_DATA] = ((const uint8_t *)data)[i];
	rr->tx.pos += 8 + ((size + 7) & ~(size_t)7);
}

static void fake_ring_publish(RingRig *rr)
{
	__atomic_store_n(ring_word(rr->tx.map, RING_TAIL), rr->tx.pos, __ATOMIC_RELEASE);
	guint64 one = 1;
	ck_assert_int_eq(write(rr->node_efd, &one, 8), 8);
}

/* A numbered message to the node's port through the fake's ring, gated on the socket packets so far. */
static void fake_ring_send(RingRig *rr, const char *text)
{
	GByteArray *ev = event_build(&rr->r->mine, rr->r->next_seq++, text, strlen(text), 0);
	fake_ring_put(rr, ev->len, rr->sock_sent, ev->data, ev->len);
	g_byte_array_unref(ev);
}

static void expect_text(Rig *r, const char *text, size_t n_fds)
{
	MeshMessage *msg = expect_message(r);
	check_payload(msg, text, strlen(text));
	ck_assert_uint_eq(mesh_message_get_n_resources(msg), n_fds);
	mesh_message_free(msg);
}

/*
 * The node reads the fake's ring, in the order the fake sent on both
 * paths: an entry gated on a socket packet waits for it even when it is
 * written first, and a socket packet waits for the entries before it.
 */
START_TEST(test_ring_receive)
{
	warm_up();
	int before = count_fds();
	RingRig *rr = ring_rig_new(TRUE);
	Rig *r = rr->r;

	fake_ring_send(rr, "r1");
	fake_ring_send(rr, "r2");
	fake_ring_publish(rr);
	expect_text(r, "r1", 0);
	expect_text(r, "r2", 0);

	/* r3 in the ring, then s4 on the socket (after r3), then r5 gated after s4. */
	fake_ring_send(rr, "r3");
	guint32 stamp = (guint32)rr->tx.pos;
	guint32 gate_after = rr->sock_sent + 1;
	GByteArray *ev5 = event_build(&r->mine, 5, "r5", 2, 0);
	GByteArray *ev4 = event_build(&r->mine, 4, "s4", 2, 1);
	r->next_seq = 6;
	fake_ring_put(rr, ev5->len, gate_after, ev5->data, ev5->len);
	/* Both entries visible before the socket packet: r5 must still wait for s4. */
	fake_ring_publish(rr);
	expect_text(r, "r3", 0);
	g_usleep(20 * 1000);
	ck_assert_ptr_null(g_async_queue_try_pop(r->inbox->queue));
	int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	ring_peer_send(rr, PACKET_EVENT, ev4->data, ev4->len, &fd, 1, stamp);
	close(fd);
	expect_text(r, "s4", 1);
	expect_text(r, "r5", 0);
	g_byte_array_unref(ev4);
	g_byte_array_unref(ev5);

	/*
	 * Entries written but not yet woken for: the socket packet after them
	 * drains them first. It goes to a second port, whose sequence numbers
	 * cannot put it after the first port's: only the stamp orders them
	 * (as it orders a message that carries a port before the events to
	 * that port).
	 */
	MeshPortId mine2, theirs2;
	mesh_uuid_generate(&mine2);
	mesh_uuid_generate(&theirs2);
	MeshPort *p2 = mesh_node_add_port(r->node, &mine2, &r->peer, &theirs2);
	Inbox in2 = {r->inbox->queue, p2};
	port_set_handler(p2, &inbox_handler, &in2);
	for (int i = 0; i < 50; i++) {
		char t[16];
		snprintf(t, sizeof(t), "w%d", i);
		fake_ring_send(rr, t);
	}
	__atomic_store_n(ring_word(rr->tx.map, RING_TAIL), rr->tx.pos, __ATOMIC_RELEASE);
	GByteArray *ev_after = event_build(&mine2, 1, "after", 5, 0);
	ring_peer_send(rr, PACKET_EVENT, ev_after->data, ev_after->len, NULL, 0, (guint32)rr->tx.pos);
	g_byte_array_unref(ev_after);
	for (int i = 0; i < 50; i++) {
		char t[16];
		snprintf(t, sizeof(t), "w%d", i);
		expect_text(r, t, 0);
	}
	expect_text(r, "after", 0);
	port_set_handler(p2, NULL, NULL);
	mesh_port_close(p2);
	/* The node consumed all: its head is the fake's tail. */
	ck_assert_uint_eq(__atomic_load_n(ring_word(rr->tx.map, RING_HEAD), __ATOMIC_ACQUIRE),
			  rr->tx.pos);
	ring_rig_free(rr);
	wait_fds_back_to(before);
}
END_TEST

/* One entry of the node's ring, copied out: its event; NULL if there is none. */
static GByteArray *fake_ring_take(RingRig *rr, guint32 *ret_gate)
{
	guint64 tail = __atomic_load_n(ring_word(rr->rx.map, RING_TAIL), __ATOMIC_ACQUIRE);
	if (tail == rr->rx.pos)
		return NULL;
	const uint8_t *d = rr->rx.map + 4096;
	guint32 size = get_le32(d + rr->rx.pos % RING_DATA);
	*ret_gate = get_le32(d + rr->rx.pos % RING_DATA + 4);
	ck_assert(size > 0 && size <= 16376);
	GByteArray *ev = g_byte_array_sized_new(size);
	for (guint32 i = 0; i < size; i++) {
		uint8_t b = d[(rr->rx.pos + 8 + i) % RING_DATA];
		g_byte_array_append(ev, &b, 1);
	}
	rr->rx.pos += 8 + ((size + 7) & ~7u);
	__atomic_store_n(ring_word(rr->rx.map, RING_HEAD), rr->rx.pos, __ATOMIC_RELEASE);
	return ev;
}

static gboolean eventfd_fired(int efd)
{
	guint64 v;
	return read(efd, &v, 8) == 8;
}

/*
 * The node writes small events to its ring once the fake's setup came,
 * events with fds and large ones to the socket stamped with the ring's
 * position, and writes the eventfd only when the fake said it sleeps.
 */
START_TEST(test_ring_send)
{
	warm_up();
	int before = count_fds();
	RingRig *rr = ring_rig_new(TRUE);
	Rig *r = rr->r;
	guint32 gate;
	Packet pk;

	rig_sync(r); /* the node has the fake's setup */
	/* Not armed: no wake-up. */
	__atomic_store_n((guint32 *)(rr->tx.map + RING_ARMED), 0, __ATOMIC_SEQ_CST);
	node_send_numbered(r, 1, 1, 0);
	GByteArray *ev = fake_ring_take(rr, &gate);
	ck_assert_ptr_nonnull(ev);
	ck_assert_uint_eq(check_numbered_event(r, ev->data, ev->len), 1);
	ck_assert_uint_eq(gate, 1); /* after its setup packet */
	g_byte_array_unref(ev);
	ck_assert(!eventfd_fired(rr->fake_efd));
	/* Armed (the fake's ring setup names its eventfd): one wake-up, armed cleared. */
	guint32 *armed = (guint32 *)(rr->rx.map + RING_ARMED);
	__atomic_store_n(armed, 1, __ATOMIC_SEQ_CST);
	node_send_numbered(r, 2, 2, 0);
	ck_assert(eventfd_fired(rr->fake_efd));
	ck_assert_uint_eq(__atomic_load_n(armed, __ATOMIC_SEQ_CST), 0);
	node_send_numbered(r, 3, 3, 0);
	ck_assert(!eventfd_fired(rr->fake_efd));

	/* An fd goes by the socket, stamped after entries 2 and 3; 5 goes after it. */
	int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	MeshMessage *m = mesh_message_new("fd", 2);
	mesh_message_add_fd_take(m, fd);
	ck_assert(port_send(r->port, m, FALSE));
	node_send_numbered(r, 5, 5, 0);
	guint64 ring_after3 = 0;
	for (int want = 2; want <= 3; want++) {
		ev = fake_ring_take(rr, &gate);
		ck_assert_ptr_nonnull(ev);
		ck_assert_uint_eq(check_numbered_event(r, ev->data, ev->len), (guint64)want);
		ck_assert_uint_eq(gate, 1);
		g_byte_array_unref(ev);
	}
	ring_after3 = rr->rx.pos;
	ring_node_recv(rr, &pk);
	ck_assert_int_eq(pk.type, PACKET_EVENT);
	ck_assert_uint_eq(get_le32(pk.data + 4), (guint32)ring_after3);
	ck_assert_uint_eq(pal_fd_array_len(pk.fds), 1);
	packet_clear(&pk);
	ev = fake_ring_take(rr, &gate);
	ck_assert_ptr_nonnull(ev);
	ck_assert_uint_eq(check_numbered_event(r, ev->data, ev->len), 5);
	ck_assert_uint_eq(gate, 2); /* after the fd's packet */
	g_byte_array_unref(ev);

	/* A full ring: the rest goes by the socket, in order. */
	guint n = 0, sent = 6;
	for (; rr->rx.pos + RING_DATA > __atomic_load_n(ring_word(rr->rx.map, RING_TAIL),
							  __ATOMIC_ACQUIRE) + 247;
	     sent++) {
		node_send_numbered(r, sent, sent, FLOOD_MESSAGE);
		/* The fake talks back: no one-way stream, which would take the socket. */
		if (sent % 8 == 0)
			rig_sync(r);
	}
	node_send_numbered(r, sent, sent + 4, FLOOD_MESSAGE);
	sent += 5;
	GArray *seqs = g_array_new(FALSE, FALSE, sizeof(guint64));
	for (guint64 s = 1; s <= 5; s++)
		g_array_append_val(seqs, s);
	while ((ev = fake_ring_take(rr, &gate))) {
		guint64 s = check_numbered_event(r, ev->data, ev->len);
		g_array_append_val(seqs, s);
		g_byte_array_unref(ev);
		n++;
	}
	while (seqs->len < sent - 1) {
		ring_node_recv(rr, &pk);
		ck_assert_uint_eq(get_le32(pk.data + 4), (guint32)rr->rx.pos);
		memset(pk.data + 4, 0, 4); /* the stamp checked: the rest as before */
		collect_numbered(r, &pk, seqs);
		packet_clear(&pk);
	}
	check_seqs(seqs, sent - 1);
	ck_assert_uint_gt(n, 100);
	ring_rig_free(rr);
	wait_fds_back_to(before);
	g_array_unref(seqs);
}
END_TEST

/*
 * A one-way stream: its first STREAM_STREAK events go through the ring,
 * the rest in the socket's batches, stamped after them; once the peer
 * talks back the ring carries the next event, gated after those packets.
 */
START_TEST(test_ring_stream_to_socket)
{
	enum { N = 40 };
	RingRig *rr = ring_rig_new(TRUE);
	Rig *r = rr->r;
	guint32 gate;
	Packet pk;

	rig_sync(r); /* the node has the fake's setup; the streak counts from here */
	node_send_numbered(r, 1, N, 0);
	GArray *seqs = g_array_new(FALSE, FALSE, sizeof(guint64));
	GByteArray *ev;
	while ((ev = fake_ring_take(rr, &gate))) {
		guint64 s = check_numbered_event(r, ev->data, ev->len);
		g_array_append_val(seqs, s);
		ck_assert_uint_eq(gate, 1); /* after its setup packet */
		g_byte_array_unref(ev);
	}
	ck_assert_uint_eq(seqs->len, STREAM_STREAK);
	guint packets = 0;
	while (seqs->len < N) {
		ring_node_recv(rr, &pk);
		ck_assert_uint_eq(get_le32(pk.data + 4), (guint32)rr->rx.pos);
		memset(pk.data + 4, 0, 4); /* the stamp checked: the rest as before */
		collect_numbered(r, &pk, seqs);
		packet_clear(&pk);
		packets++;
	}
	check_seqs(seqs, N);
	ck_assert_ptr_null(fake_ring_take(rr, &gate));

	rig_sync(r); /* a packet from the peer ends the stream */
	node_send_numbered(r, N + 1, N + 1, 0);
	ev = fake_ring_take(rr, &gate);
	ck_assert_msg(ev != NULL, "after the peer talked, the next event is not on the ring");
	ck_assert_uint_eq(check_numbered_event(r, ev->data, ev->len), N + 1);
	ck_assert_uint_eq(gate, 1 + packets);
	g_byte_array_unref(ev);
	g_array_unref(seqs);
	ring_rig_free(rr);
}
END_TEST

/*
 * The same stream from a node on a caller's context stays on the ring:
 * that context flushes the socket's batches only when it runs, while the
 * ring wakes the reader at once.
 */
START_TEST(test_ring_stream_on_context)
{
	enum { N = 40 };
	RingRig *rr = ring_rig_new_in(TRUE, TRUE);
	Rig *r = rr->r;
	guint32 gate;

	rig_sync(r);
	node_send_numbered(r, 1, N, 0);
	GArray *seqs = g_array_new(FALSE, FALSE, sizeof(guint64));
	GByteArray *ev;
	while ((ev = fake_ring_take(rr, &gate))) {
		g_array_append_val(seqs, (guint64){check_numbered_event(r, ev->data, ev->len)});
		ck_assert_uint_eq(gate, 1); /* no socket packet came between */
		g_byte_array_unref(ev);
	}
	ck_assert_msg(seqs->len == N, "%u of %d events on the ring", seqs->len, (int)N);
	check_seqs(seqs, N);
	g_array_unref(seqs);
	ring_rig_free(rr);
}
END_TEST

typedef enum {
	BAD_RING_TAIL_RANGE,
	BAD_RING_TAIL_ODD,
	BAD_RING_SIZE_ZERO,
	BAD_RING_SIZE_HUGE,
	BAD_RING_SIZE_PAST_TAIL,
	BAD_RING_STAMP_AHEAD,
	BAD_RING_STAMP_FAR,
	BAD_RING_ACROSS_STAMP,
	BAD_RING_SECOND_SETUP,
	BAD_RING_UNSEALED,
	BAD_RING_NOT_EVENTFD,
	BAD_RING_PARAMS,
	BAD_RING_SETUP_FDS,
	BAD_RING_HEAD,
} BadRing;

static const char *const bad_ring_reasons[] = {
	[BAD_RING_TAIL_RANGE] = "ring with its write position out of range",
	[BAD_RING_TAIL_ODD] = "ring with its write position out of range",
	[BAD_RING_SIZE_ZERO] = "ring entry of a bad size",
	[BAD_RING_SIZE_HUGE] = "ring entry of a bad size",
	[BAD_RING_SIZE_PAST_TAIL] = "ring entry of a bad size",
	[BAD_RING_STAMP_AHEAD] = "socket packet ahead of its shared-memory ring entries",
	[BAD_RING_STAMP_FAR] = "socket packet stamped out of the shared-memory ring's range",
	/* Or, when the ring's source took the entry first, "stamped out of ...range". */
	[BAD_RING_ACROSS_STAMP] = "socket packet",
	[BAD_RING_SECOND_SETUP] = "a second ring setup",
	[BAD_RING_UNSEALED] = "ring in a memfd that is not sealed",
	[BAD_RING_NOT_EVENTFD] = "ring setup without an eventfd",
	[BAD_RING_PARAMS] = "ring setup with unknown parameters",
	[BAD_RING_SETUP_FDS] = "ring setup of a bad size",
	[BAD_RING_HEAD] = "ring with its read position out of range",
};

/*
 * A peer that writes garbage into its ring, its setup or the node's ring:
 * the connection fails naming the node and the reason, the process goes
 * on, and every fd and mapping goes with the connection.
 */
START_TEST(test_ring_hostile)
{
	BadRing how = (BadRing)_i;
	gboolean setup = how != BAD_RING_UNSEALED && how != BAD_RING_NOT_EVENTFD &&
			 how != BAD_RING_PARAMS && how != BAD_RING_SETUP_FDS;

	warm_up();
	int before = count_fds();
	RingRig *rr = ring_rig_new(setup);
	Rig *r = rr->r;
	uint8_t body[8];
	int fd = -1;
	if (setup) {
		fake_ring_send(rr, "ok");
		fake_ring_publish(rr);
		expect_text(r, "ok", 0);
	}
	GByteArray *ev = event_build(&r->mine, r->next_seq, "x", 1, 0);
	switch (how) {
	case BAD_RING_TAIL_RANGE:
		rr->tx.pos += RING_DATA + 8;
		fake_ring_publish(rr);
		break;
	case BAD_RING_TAIL_ODD:
		rr->tx.pos += 3;
		fake_ring_publish(rr);
		break;
	case BAD_RING_SIZE_ZERO:
		fake_ring_put(rr, 0, 1, NULL, 0);
		fake_ring_publish(rr);
		break;
	case BAD_RING_SIZE_HUGE:
		fake_ring_put(rr, 0xfffffff0u, 1, ev->data, ev->len);
		fake_ring_publish(rr);
		break;
	case BAD_RING_SIZE_PAST_TAIL:
		fake_ring_put(rr, 4096, 1, ev->data, ev->len);
		fake_ring_publish(rr);
		break;
	case BAD_RING_STAMP_AHEAD:
		ring_peer_send(rr, PACKET_EVENT, ev->data, ev->len, NULL, 0, (guint32)rr->tx.pos + 64);
		break;
	case BAD_RING_STAMP_FAR:
		ring_peer_send(rr, PACKET_EVENT, ev->data, ev->len, NULL, 0, (guint32)rr->tx.pos + (1u << 30));
		break;
	case BAD_RING_ACROSS_STAMP: {
		guint32 stamp = (guint32)rr->tx.pos + 8;
		fake_ring_put(rr, ev->len, 1, ev->data, ev->len);
		__atomic_store_n(ring_word(rr->tx.map, RING_TAIL), rr->tx.pos, __ATOMIC_RELEASE);
		ring_peer_send(rr, PACKET_EVENT, ev->data, ev->len, NULL, 0, stamp);
		break;
	}
	case BAD_RING_SECOND_SETUP: {
		int fds[2] = {rr->tx.memfd, rr->fake_efd};
		ring_setup_body(body, RING_DATA);
		ring_peer_send(rr, PACKET_RING_SETUP, body, 8, fds, 2, (guint32)rr->tx.pos);
		break;
	}
	case BAD_RING_UNSEALED: {
		fd = ring_memfd_new(0);
		int fds[2] = {fd, rr->fake_efd};
		ring_setup_body(body, RING_DATA);
		ring_peer_send(rr, PACKET_RING_SETUP, body, 8, fds, 2, 0);
		break;
	}
	case BAD_RING_NOT_EVENTFD: {
		int p[2];
		ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
		int fds[2] = {rr->tx.memfd, p[1]};
		ring_setup_body(body, RING_DATA);
		ring_peer_send(rr, PACKET_RING_SETUP, body, 8, fds, 2, 0);
		close(p[0]);
		close(p[1]);
		break;
	}
	case BAD_RING_PARAMS: {
		int fds[2] = {rr->tx.memfd, rr->fake_efd};
		ring_setup_body(body, 4096);
		ring_peer_send(rr, PACKET_RING_SETUP, body, 8, fds, 2, 0);
		break;
	}
	case BAD_RING_SETUP_FDS:
		ring_setup_body(body, RING_DATA);
		ring_peer_send(rr, PACKET_RING_SETUP, body, 8, &rr->tx.memfd, 1, 0);
		break;
	case BAD_RING_HEAD:
		/* The node's ring: its read position past its write position. */
		__atomic_store_n(ring_word(rr->rx.map, RING_HEAD), (guint64)1 << 40, __ATOMIC_RELEASE);
		node_send_numbered(r, 1, 1, 0);
		break;
	}
	g_byte_array_unref(ev);
	if (how == BAD_RING_ACROSS_STAMP) {
		/* The entry may have been delivered before the packet came. */
		InboxItem *item = inbox_wait(r);
		if (item->msg)
			inbox_item_free(item);
		else
			g_async_queue_push_front(r->inbox->queue, item);
	}
	expect_failure(r, bad_ring_reasons[how]);
	if (fd >= 0)
		close(fd);
	ring_rig_free(rr);
	wait_fds_back_to(before);
}
END_TEST

static gint64 cpu_us(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (gint64)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * G_USEC_PER_SEC +
	       ru.ru_utime.tv_usec + ru.ru_stime.tv_usec;
}

/*
 * No polling: an idle ring costs no CPU, nor does an entry that waits for
 * a socket packet that never comes (a hostile gate), nor a flood of
 * wake-ups for nothing; and a garbage event in a well-formed entry is
 * dropped like one on the socket, the connection going on.
 */
START_TEST(test_ring_idle)
{
	RingRig *rr = ring_rig_new(TRUE);
	Rig *r = rr->r;
	guint64 one = 1;

	rig_sync(r);
	gint64 cpu = cpu_us();
	g_usleep(300 * 1000);
	gint64 idle = cpu_us() - cpu;
	GByteArray *ev = event_build(&r->mine, 99, "late", 4, 0);
	guint64 gated_at = rr->tx.pos;
	fake_ring_put(rr, ev->len, 1000, ev->data, ev->len);
	g_byte_array_unref(ev);
	fake_ring_publish(rr);
	for (int i = 0; i < 100; i++)
		ck_assert_int_eq(write(rr->node_efd, &one, 8), 8);
	cpu = cpu_us();
	g_usleep(300 * 1000);
	gint64 stalled = cpu_us() - cpu;
	ck_assert_msg(idle < 30000 && stalled < 30000, "CPU while idle: %" G_GINT64_FORMAT
		      " us, while stalled: %" G_GINT64_FORMAT " us", idle, stalled);
	ck_assert_ptr_null(g_async_queue_try_pop(r->inbox->queue));
	/* The entry was never consumed. */
	ck_assert_uint_eq(__atomic_load_n(ring_word(rr->tx.map, RING_HEAD), __ATOMIC_ACQUIRE), gated_at);
	ring_rig_free(rr);
}
END_TEST

/*
 * A thread blocked in a receive polls the node's sockets itself (unix-io.c
 * lends it the I/O context); meanwhile the I/O thread sleeps: while nothing
 * arrives nothing wakes (it woke every LEND_IDLE_US, 1000 times a second,
 * for as long as the borrower polled: 400 switches in this wait).
 */
START_TEST(test_blocked_receiver_idle)
{
	Rig *r = rig_new();
	MeshPortId id, peer_id;
	mesh_uuid_generate(&id);
	mesh_uuid_generate(&peer_id);
	MeshPort *port = mesh_node_add_port(r->node, &id, &r->peer, &peer_id);
	ck_assert_ptr_nonnull(port);
	MeshReceiver *rx = mesh_receiver_from_port(port, NULL);
	MeshMessage *msg = NULL;
	GError *error = NULL;

	/* The first wait has the I/O thread lend its context. */
	ck_assert(!mesh_receiver_recv_message(rx, 50 * 1000, &msg, &error));
	g_clear_error(&error);
	struct rusage before, after;
	getrusage(RUSAGE_SELF, &before);
	ck_assert(!mesh_receiver_recv_message(rx, 400 * 1000, &msg, &error));
	getrusage(RUSAGE_SELF, &after);
	ck_assert_msg(g_error_matches(error, MESH_ERROR, MESH_ERROR_TIMED_OUT), "%s",
		      error->message);
	g_clear_error(&error);
	long switches = after.ru_nvcsw - before.ru_nvcsw;
	ck_assert_msg(switches < 40, "%ld voluntary context switches in a 400 ms idle receive",
		      switches);
	mesh_receiver_free(rx);
	rig_free(r);
}
END_TEST

static guint32 ring_sock_sent(FakeRing *ring)
{
	return __atomic_load_n((guint32 *)(ring->map + RING_SOCK_SENT), __ATOMIC_ACQUIRE);
}

/*
 * The count of socket packets in a ring's header: the node publishes its
 * own once they are in the socket (its setup is the first); the fake's
 * lets the node read without a poll, and a count that lies (packets that
 * are not there) is dropped after one read that finds none: no spin, and
 * the connection goes on.
 */
START_TEST(test_ring_sock_count)
{
	RingRig *rr = ring_rig_new(TRUE);
	Rig *r = rr->r;
	Packet pk;

	rig_sync(r);
	ck_assert_uint_eq(ring_sock_sent(&rr->rx), 1);
	int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	MeshMessage *m = mesh_message_new("fd", 2);
	mesh_message_add_fd_take(m, fd);
	ck_assert(port_send(r->port, m, FALSE));
	ring_node_recv(rr, &pk);
	ck_assert_uint_eq(pal_fd_array_len(pk.fds), 1);
	packet_clear(&pk);
	/* Stored after its sendmsg() returned: the packet may come first. */
	gint64 deadline = g_get_monotonic_time() + wait_ms() * 1000;
	while (ring_sock_sent(&rr->rx) != 2 && g_get_monotonic_time() < deadline)
		g_usleep(1000);
	ck_assert_uint_eq(ring_sock_sent(&rr->rx), 2);

	/* The fake's count, true: the packet is delivered (with or without a poll). */
	guint32 *count = (guint32 *)(rr->tx.map + RING_SOCK_SENT);
	GByteArray *ev = event_build(&r->mine, r->next_seq++, "s1", 2, 0);
	ring_peer_send(rr, PACKET_EVENT, ev->data, ev->len, NULL, 0, (guint32)rr->tx.pos);
	g_byte_array_unref(ev);
	__atomic_store_n(count, rr->sock_sent, __ATOMIC_RELEASE);
	expect_text(r, "s1", 0);

	/* Five packets that never come, and a wake-up for the node to look. */
	__atomic_store_n(count, rr->sock_sent + 5, __ATOMIC_RELEASE);
	guint64 one = 1;
	ck_assert_int_eq(write(rr->node_efd, &one, 8), 8);
	rig_sync(r);
	gint64 cpu = cpu_us();
	g_usleep(300 * 1000);
	gint64 used = cpu_us() - cpu;
	ck_assert_msg(used < 30000, "CPU with a count that lies: %" G_GINT64_FORMAT " us", used);
	ev = event_build(&r->mine, r->next_seq++, "s2", 2, 0);
	ring_peer_send(rr, PACKET_EVENT, ev->data, ev->len, NULL, 0, (guint32)rr->tx.pos);
	g_byte_array_unref(ev);
	expect_text(r, "s2", 0);
	fake_ring_send(rr, "r3");
	fake_ring_publish(rr);
	expect_text(r, "r3", 0);
	ring_rig_free(rr);
}
END_TEST

START_TEST(test_ring_garbage_event)
{
	RingRig *rr = ring_rig_new(TRUE);
	Rig *r = rr->r;
	static const uint8_t junk[64] = {0xff, 0xee, 0xdd};

	fake_ring_put(rr, sizeof(junk), 1, junk, sizeof(junk));
	fake_ring_send(rr, "fine");
	fake_ring_publish(rr);
	expect_text(r, "fine", 0);
	ring_rig_free(rr);
}
END_TEST
/*
 * The switches (run in a process started with MESH_UNIX_BATCH=0,
 * MESH_UNIX_POOL=0 and MESH_UNIX_EXT_MOVES=0): the upstream wire, whatever
 * the peer announces.
 */
START_TEST(test_off_no_hello)
{
	Rig *r = rig_new();
	node_send_numbered(r, 1, 1, 0);
	Packet pk;
	peer_recv(r, &pk);
	/* The first packet is the message: no hello before it. */
	ck_assert_int_eq(pk.type, PACKET_EVENT);
	ck_assert_uint_eq(check_numbered_event(r, pk.body, pk.body_size), 1);
	packet_clear(&pk);
	rig_free(r);
}
END_TEST

/*
 * Every extension off: an invitation carries none (a C joiner then says no
 * hello), and even a joiner that says one gets upstream's packets only.
 */
START_TEST(test_off_invited)
{
	Rig *r = rig_new_invited_full(TRUE, 0);
	ck_assert_uint_eq(invited_stream(r, 200, FALSE), 0);
	Packet pk;
	ck_assert_int_eq(packet_recv(r->sock, &pk, 100), 0);
	rig_free(r);
}
END_TEST

START_TEST(test_off_upstream_sends)
{
	Rig *r = rig_new_full(FLOOD_SNDBUF);
	peer_send_hello(r, HELLO_BATCH | HELLO_POOL);
	rig_sync(r);
	ck_assert_uint_eq(flood(r, 2000), 0);

	uint8_t *payload = g_malloc(LARGE_PAYLOAD);
	fill_pattern(payload, LARGE_PAYLOAD, 1);
	ck_assert(port_send(r->port, mesh_message_new(payload, LARGE_PAYLOAD), FALSE));
	GByteArray *want = event_build(&r->theirs, 2001, payload, LARGE_PAYLOAD, 0);
	Packet pk;
	peer_recv(r, &pk);
	ck_assert_int_eq(pk.type, PACKET_LARGE_EVENT);
	ck_assert_uint_eq(pal_fd_array_len(pk.fds), 1);
	size_t size;
	int memfd = pal_fd_array_get(pk.fds, 0);
	ck_assert_int_eq(pal_memfd_verify_seals(memfd, &size), 0);
	void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, memfd, 0);
	ck_assert(map != MAP_FAILED);
	check_event_bytes(map, want);
	munmap(map, size);
	packet_clear(&pk);
	g_byte_array_unref(want);
	g_free(payload);
	rig_free(r);
}
END_TEST

START_TEST(test_off_batch_unknown)
{
	Rig *r = rig_new();
	peer_send_hello(r, HELLO_BATCH | HELLO_POOL);
	rig_sync(r);
	GByteArray *ev = event_build(&r->mine, r->next_seq++, "never", 5, 0);
	GByteArray *body = g_byte_array_new();
	batch_entry_append(body, ev->len, 0, 0, ev);
	peer_send(r, PACKET_BATCH, body->data, body->len, NULL, 0);
	expect_failure(r, "unknown packet type");
	g_byte_array_unref(body);
	g_byte_array_unref(ev);
	rig_free(r);
}
END_TEST

START_TEST(test_off_pool_unknown)
{
	/* A pool event, then a pool release: each an unknown type here. */
	for (int variant = 0; variant < 2; variant++) {
		Rig *r = rig_new();
		peer_send_hello(r, HELLO_BATCH | HELLO_POOL);
		rig_sync(r);
		if (variant == 0) {
			GByteArray *ev = event_build(&r->mine, r->next_seq++, "never", 5, 0);
			int memfd = pool_memfd_new(4096, ev, TRUE);
			peer_send_pool_event(r, 1, POOL_NEW, ev->len, &memfd, 1);
			close(memfd);
			g_byte_array_unref(ev);
		} else {
			static const guint8 release[POOL_RELEASE_BODY] = {1};
			peer_send(r, PACKET_POOL_RELEASE, release, sizeof(release), NULL, 0);
		}
		expect_failure(r, "unknown packet type");
		rig_free(r);
	}
}
END_TEST

static int switches_child_main(void)
{
	if (g_strcmp0(g_getenv("MESH_UNIX_BATCH"), "0") != 0 ||
	    g_strcmp0(g_getenv("MESH_UNIX_POOL"), "0") != 0 ||
	    g_strcmp0(g_getenv("MESH_UNIX_EXT_MOVES"), "0") != 0 ||
	    g_strcmp0(g_getenv("MESH_UNIX_RING"), "0") != 0) {
		fprintf(stderr, "switches child: MESH_UNIX_BATCH=0 MESH_UNIX_POOL=0 "
				"MESH_UNIX_EXT_MOVES=0 MESH_UNIX_RING=0 expected\n");
		return 2;
	}
	Suite *s = suite_create("libmeshremote-unix-ext-off");
	TCase *tc = tcase_create("off");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_off_no_hello);
	tcase_add_test(tc, test_off_upstream_sends);
	tcase_add_test(tc, test_off_invited);
	tcase_add_test(tc, test_off_batch_unknown);
	tcase_add_test(tc, test_off_pool_unknown);
	suite_add_tcase(s, tc);

	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_ENV);
	int run = srunner_ntests_run(sr), failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	/* What the parent looks for: proof that these checks ran, and how. */
	printf("switches child: %d of %d passed\n", run - failed, run);
	return failed || run != SWITCHES_CHILD_TESTS ? 1 : 0;
}

START_TEST(test_switches)
{
	/* Under valgrind /proc/self/exe is valgrind; its readlink() gives the client. */
	char *self = g_file_read_link("/proc/self/exe", NULL);
	ck_assert_ptr_nonnull(self);
	char *argv[] = {self, SWITCHES_CHILD_ARG, NULL};
	char **env = g_get_environ();
	env = g_environ_setenv(env, "MESH_UNIX_BATCH", "0", TRUE);
	env = g_environ_setenv(env, "MESH_UNIX_POOL", "0", TRUE);
	env = g_environ_setenv(env, "MESH_UNIX_EXT_MOVES", "0", TRUE);
	env = g_environ_setenv(env, "MESH_UNIX_RING", "0", TRUE);
	/* A filter for the parent's tests would leave the child nothing to run. */
	static const char *const filters[] = {"CK_RUN_SUITE", "CK_RUN_CASE", "CK_INCLUDE_TAGS",
					      "CK_EXCLUDE_TAGS"};
	for (guint i = 0; i < G_N_ELEMENTS(filters); i++)
		env = g_environ_unsetenv(env, filters[i]);

	char *out = NULL;
	int status = 0;
	GError *error = NULL;
	gboolean spawned = g_spawn_sync(NULL, argv, env, G_SPAWN_DEFAULT, NULL, NULL, &out,
					NULL, &status, &error);
	ck_assert_msg(spawned, "cannot run %s: %s", self, error ? error->message : "?");
	fputs(out, stdout);
	fflush(stdout);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		      "the switches child failed (status %d)", status);
	char want[64];
	snprintf(want, sizeof(want), "switches child: %d of %d passed", SWITCHES_CHILD_TESTS,
		 SWITCHES_CHILD_TESTS);
	ck_assert_msg(strstr(out, want) != NULL, "the switches child did not run its checks");
	g_free(out);
	g_strfreev(env);
	g_free(self);
}
END_TEST

int main(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], SWITCHES_CHILD_ARG) == 0)
		return switches_child_main();
	/* These checks play the peer byte for byte with every extension on (the switches
	 * child, above, with every one off): the switches of the environment the suite runs
	 * in (`--setup noring`, or a caller's MESH_UNIX_RING=0) are not theirs to follow. */
	static const char *const switches[] = {"MESH_UNIX_BATCH", "MESH_UNIX_POOL",
					       "MESH_UNIX_EXT_MOVES", "MESH_UNIX_RING"};
	for (guint i = 0; i < G_N_ELEMENTS(switches); i++)
		g_unsetenv(switches[i]);

	Suite *s = suite_create("libmeshremote-unix-ext");
	TCase *tc = tcase_create("ext");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_hello_first);
	tcase_add_test(tc, test_batch_receive);
	tcase_add_loop_test(tc, test_batch_hostile, 0, BAD_BATCH_EMPTY + 1);
	tcase_add_test(tc, test_batch_send);
	tcase_add_test(tc, test_batch_send_not_announced);
	tcase_add_test(tc, test_streak);
	tcase_add_test(tc, test_invited_upstream_joiner);
	tcase_add_test(tc, test_invited_c_joiner);
	tcase_add_test(tc, test_introductions);
	tcase_add_test(tc, test_introduced_while_asking);
	tcase_add_test(tc, test_pool_send);
	tcase_add_test(tc, test_pool_sizes_cycle);
	tcase_add_test(tc, test_pool_ids_bounded);
	tcase_add_test(tc, test_pool_receive);
	tcase_add_loop_test(tc, test_pool_hostile, 0, BAD_POOL_UNKNOWN_FLAG + 1);
	tcase_add_test(tc, test_ring_receive);
	tcase_add_test(tc, test_ring_send);
	tcase_add_test(tc, test_ring_stream_to_socket);
	tcase_add_test(tc, test_ring_stream_on_context);
	tcase_add_loop_test(tc, test_ring_hostile, 0, BAD_RING_HEAD + 1);
	tcase_add_test(tc, test_ring_idle);
	tcase_add_test(tc, test_blocked_receiver_idle);
	tcase_add_test(tc, test_send_limit_stalled);
	tcase_add_test(tc, test_send_limit_reader);
	tcase_add_test(tc, test_ring_garbage_event);
	tcase_add_test(tc, test_ring_sock_count);
	tcase_add_test(tc, test_switches);
	suite_add_tcase(s, tc);

	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_ENV);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
