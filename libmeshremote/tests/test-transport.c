/* SPDX-License-Identifier: MIT */
/*
 * The transport interface from the outside: a transport written here with
 * <meshremote/meshremote.h> alone (no private header; this program links
 * the shared library) carries events between two nodes of this process, and
 * gets what the Unix transport gets: capabilities checked at the sender,
 * a blocked receiver that runs its I/O, and a wait for idle before shutdown.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <meshremote/meshremote.h>

typedef struct Net Net;

typedef struct {
	Net *net;
	int from, to;
} Link;

typedef struct {
	int from, to;
	guint8 *data;
	gsize size;
	int *fds;
	gsize n_fds;
} Packet;

struct Net {
	MeshNode *nodes[2];
	MeshRemoteNode *handles[2][2];
	Link links[2][2];
	GMutex lock;
	GCond cond;
	GQueue packets;
	guint hook_runs; /* run_once calls that delivered */
	guint wakeups;
};

static void link_send(void *user_data, const struct iovec *iov, size_t n_iov,
		      const MeshOsHandle *handles, size_t n_handles)
{
	Link *link = user_data;
	Packet *pk = g_new0(Packet, 1);

	pk->from = link->from;
	pk->to = link->to;
	for (size_t i = 0; i < n_iov; i++)
		pk->size += iov[i].iov_len;
	pk->data = g_malloc(pk->size ? pk->size : 1);
	for (size_t i = 0, off = 0; i < n_iov; off += iov[i].iov_len, i++)
		memcpy(pk->data + off, iov[i].iov_base, iov[i].iov_len);
	pk->fds = g_new(int, n_handles ? n_handles : 1);
	for (size_t i = 0; i < n_handles; i++)
		pk->fds[i] = fcntl(handles[i], F_DUPFD_CLOEXEC, 3);
	pk->n_fds = n_handles;
	g_mutex_lock(&link->net->lock);
	g_queue_push_tail(&link->net->packets, pk);
	g_cond_broadcast(&link->net->cond);
	g_mutex_unlock(&link->net->lock);
}

/* Delivers what is queued, in order. Returns how many packets. */
static guint net_pump(Net *net)
{
	guint n = 0;
	Packet *pk;

	for (;;) {
		g_mutex_lock(&net->lock);
		pk = g_queue_pop_head(&net->packets);
		g_mutex_unlock(&net->lock);
		if (!pk)
			return n;
		mesh_node_receive_event(net->nodes[pk->to], mesh_node_get_id(net->nodes[pk->from]),
					pk->data, pk->size, pk->fds, pk->n_fds);
		g_free(pk->fds);
		g_free(pk->data);
		g_free(pk);
		n++;
	}
}

/*
 * As net_pump(), but what is queued goes in batches (mesh_node_receive_events()),
 * each the longest run of packets between the same two nodes, as a transport
 * that receives many packets at once hands them over.
 */
static guint net_pump_batches(Net *net, gboolean once)
{
	guint n = 0;

	for (;;) {
		GPtrArray *batch = g_ptr_array_new();
		Packet *pk;
		g_mutex_lock(&net->lock);
		while ((pk = g_queue_peek_head(&net->packets))) {
			Packet *first = batch->len ? batch->pdata[0] : NULL;
			if (first && (first->from != pk->from || first->to != pk->to))
				break;
			g_ptr_array_add(batch, g_queue_pop_head(&net->packets));
		}
		g_mutex_unlock(&net->lock);
		if (!batch->len) {
			g_ptr_array_free(batch, TRUE);
			return n;
		}
		MeshEventData *events = g_new(MeshEventData, batch->len);
		for (guint i = 0; i < batch->len; i++) {
			pk = batch->pdata[i];
			events[i] = (MeshEventData){pk->data, pk->size, pk->fds, pk->n_fds};
		}
		pk = batch->pdata[0];
		mesh_node_receive_events(net->nodes[pk->to], mesh_node_get_id(net->nodes[pk->from]),
					 events, batch->len);
		for (guint i = 0; i < batch->len; i++) {
			pk = batch->pdata[i];
			g_free(pk->fds);
			g_free(pk->data);
			g_free(pk);
		}
		n += batch->len;
		g_free(events);
		g_ptr_array_free(batch, TRUE);
		if (once)
			return n;
	}
}

static guint net_pump_batched(Net *net)
{
	return net_pump_batches(net, FALSE);
}

/* Queues a copy of the @index-th queued packet (no fds) at the end. */
static void net_repeat_packet(Net *net, guint index)
{
	g_mutex_lock(&net->lock);
	Packet *pk = g_queue_peek_nth(&net->packets, index);
	ck_assert(pk && pk->n_fds == 0);
	Packet *copy = g_memdup2(pk, sizeof(*pk));
	copy->data = g_memdup2(pk->data, pk->size ? pk->size : 1);
	copy->fds = g_new(int, 1);
	g_queue_push_tail(&net->packets, copy);
	g_mutex_unlock(&net->lock);
}

/* The hook: a blocked receiver delivers the queue itself, or waits for a packet. */
static gboolean hook_run_once(void *user_data, gint64 deadline, gboolean *ret_expired)
{
	Net *net = user_data;

	*ret_expired = FALSE;
	g_mutex_lock(&net->lock);
	while (g_queue_is_empty(&net->packets) && !net->wakeups) {
		if (deadline >= 0 && !g_cond_wait_until(&net->cond, &net->lock, deadline)) {
			*ret_expired = TRUE;
			break;
		}
		if (deadline < 0)
			g_cond_wait(&net->cond, &net->lock);
	}
	net->wakeups = 0;
	g_mutex_unlock(&net->lock);
	if (net_pump(net)) {
		g_mutex_lock(&net->lock);
		net->hook_runs++;
		g_mutex_unlock(&net->lock);
	}
	return TRUE;
}

static void hook_wakeup(void *user_data)
{
	Net *net = user_data;

	g_mutex_lock(&net->lock);
	net->wakeups++;
	g_cond_broadcast(&net->cond);
	g_mutex_unlock(&net->lock);
}

static const MeshIoHookFuncs hook_funcs = {
	.version = 0,
	.run_once = hook_run_once,
	.wakeup = hook_wakeup,
};

static gsize two_fds(gsize event_size)
{
	return 2;
}

static const MeshTransportCaps caps_no_fds = {.version = 0};
static const MeshTransportCaps caps_two_fds = {.version = 0, .max_handles = two_fds};
static const MeshTransportCaps caps_small = {
	.version = 0, .max_handles = two_fds, .max_event_size = 4096};

static Net *net_new(const MeshTransportCaps *caps, gboolean hook)
{
	Net *net = g_new0(Net, 1);
	const MeshEventSink sink = {
		.version = MESH_EVENT_SINK_VERSION,
		.send = link_send,
		.caps = caps,
	};

	g_mutex_init(&net->lock);
	g_cond_init(&net->cond);
	for (int i = 0; i < 2; i++)
		net->nodes[i] = mesh_node_new();
	for (int i = 0; i < 2; i++) {
		int j = 1 - i;
		net->links[i][j] = (Link){net, i, j};
		net->handles[i][j] = mesh_node_add_remote(net->nodes[i],
							  mesh_node_get_id(net->nodes[j]));
		ck_assert(mesh_remote_node_connect(net->handles[i][j], &sink, &net->links[i][j]));
	}
	if (hook) {
		for (int i = 0; i < 2; i++) {
			MeshIoHook *h = mesh_io_hook_new(&hook_funcs, net);
			mesh_node_set_io_hook(net->nodes[i], h);
			mesh_io_hook_unref(h);
		}
	}
	return net;
}

static void net_free(Net *net)
{
	net_pump(net);
	for (int i = 0; i < 2; i++) {
		mesh_node_set_io_hook(net->nodes[i], NULL);
		mesh_remote_node_unref(net->handles[i][1 - i]);
	}
	net_pump(net);
	for (int i = 0; i < 2; i++)
		mesh_node_unref(net->nodes[i]);
	g_mutex_clear(&net->lock);
	g_cond_clear(&net->cond);
	g_free(net);
}

/* A port on node 0 peered with one on node 1, as a link's hello makes them. */
static void net_port_pair(Net *net, MeshPort **ret_a, MeshPort **ret_b)
{
	MeshPortId a, b;

	mesh_uuid_generate(&a);
	mesh_uuid_generate(&b);
	*ret_a = mesh_node_add_port(net->nodes[0], &a, mesh_node_get_id(net->nodes[1]), &b);
	*ret_b = mesh_node_add_port(net->nodes[1], &b, mesh_node_get_id(net->nodes[0]), &a);
	ck_assert(*ret_a && *ret_b);
}

/* A sender on node 0 and its receiver on node 1, over net_port_pair()'s ports. */
static void net_channel(Net *net, MeshSender **ret_s, MeshReceiver **ret_r)
{
	MeshPort *a, *b;

	net_port_pair(net, &a, &b);
	*ret_s = mesh_sender_from_port(a, NULL);
	*ret_r = mesh_receiver_from_port(b, NULL);
}

static MeshMessage *message_with_fds(gsize size, guint n_fds)
{
	guint8 *data = g_malloc0(size ? size : 1);
	MeshMessage *msg = mesh_message_new(data, size);

	g_free(data);
	for (guint i = 0; i < n_fds; i++)
		ck_assert_int_eq(mesh_message_add_fd(msg, STDERR_FILENO), (int)i);
	return msg;
}

/*
 * Sends @msg from node 0, with a port of a local pair in it, and returns the
 * error that port's other end got: the sender's error (the ports a rejected
 * message carries fail with it).
 */
static GError *send_rejected(const MeshTransportCaps *caps, MeshMessage *msg)
{
	Net *net = net_new(caps, FALSE);
	MeshPort *x, *kept;
	GError *error = NULL, *sender_error = NULL;
	MeshMessage *got = NULL;
	MeshSender *s;
	MeshReceiver *r;

	net_channel(net, &s, &r);
	mesh_port_new_pair(&x, &kept);
	ck_assert_int_ge(mesh_message_add_port_take(msg, x), 0);
	MeshReceiver *k = mesh_receiver_from_port(kept, NULL);
	mesh_sender_send_message(s, msg);
	mesh_sender_send_message(s, message_with_fds(8, 0));
	net_pump(net);
	/* The sender learns at once: its port failed, and so did the port it sent. */
	ck_assert(mesh_sender_is_closed(s));
	ck_assert(!mesh_receiver_recv_message(k, 0, &got, &sender_error));
	/* The receiver gets no partial message, and a failure in its place. */
	ck_assert(!mesh_receiver_recv_message(r, 0, &got, &error));
	ck_assert_ptr_null(got);
	ck_assert_msg(g_error_matches(error, MESH_ERROR, MESH_ERROR_NODE_FAILURE), "%s",
		      error->message);
	g_error_free(error);
	mesh_receiver_free(k);
	mesh_receiver_free(r);
	mesh_sender_free(s);
	net_free(net);
	return sender_error;
}

START_TEST(test_caps_no_fds)
{
	GError *error = send_rejected(&caps_no_fds, message_with_fds(16, 1));

	/* The ports it carried fail naming the cause; the sending port gets the code. */
	ck_assert_msg(strstr(error->message, "carries no fds"), "%s", error->message);
	g_error_free(error);
}
END_TEST

START_TEST(test_lent_closed_fd_without_try_send)
{
	/*
	 * A sink without try_send cannot report a lent fd that is not open:
	 * the node checks it before the send, and the port fails.
	 */
	int pipefd[2];
	ck_assert_int_eq(pipe(pipefd), 0);
	close(pipefd[0]);
	close(pipefd[1]);
	MeshMessage *msg = message_with_fds(16, 0);
	ck_assert_int_eq(mesh_message_add_fd_borrowed(msg, pipefd[0]), 0);
	GError *error = send_rejected(&caps_two_fds, msg);
	ck_assert_msg(strstr(error->message, "fd that is not open"), "%s", error->message);
	g_error_free(error);
}
END_TEST

START_TEST(test_caps_too_many_fds)
{
	GError *error = send_rejected(&caps_two_fds, message_with_fds(16, 3));

	/* The ports it carried fail naming the cause; the sending port gets the code. */
	ck_assert_msg(strstr(error->message, "too many fds"), "%s", error->message);
	g_error_free(error);
}
END_TEST

START_TEST(test_caps_event_too_large)
{
	GError *error = send_rejected(&caps_small, message_with_fds(8192, 0));

	/* The ports it carried fail naming the cause; the sending port gets the code. */
	ck_assert_msg(strstr(error->message, "too large for the transport"), "%s",
		      error->message);
	g_error_free(error);
}
END_TEST

/* Within the caps, fds and data go through. */
START_TEST(test_caps_within)
{
	Net *net = net_new(&caps_small, FALSE);
	GError *error = NULL;
	MeshMessage *got = NULL;
	MeshSender *s;
	MeshReceiver *r;

	net_channel(net, &s, &r);
	mesh_sender_send_message(s, message_with_fds(100, 2));
	net_pump(net);
	ck_assert_msg(mesh_receiver_recv_message(r, 0, &got, &error), "%s",
		      error ? error->message : "");
	ck_assert_uint_eq(mesh_message_get_n_resources(got), 2);
	for (guint i = 0; i < 2; i++) {
		int fd = mesh_message_steal_fd(got, i);
		ck_assert_int_ge(fd, 0);
		close(fd);
	}
	mesh_message_free(got);
	ck_assert(!mesh_sender_is_closed(s));
	mesh_receiver_free(r);
	mesh_sender_free(s);
	net_free(net);
}
END_TEST

/* A version 0 sink (no caps field) carries any number of fds, as before. */
START_TEST(test_caps_version0)
{
	Net *net = net_new(NULL, FALSE);
	MeshMessage *got = NULL;
	MeshSender *s;
	MeshReceiver *r;

	net_channel(net, &s, &r);
	mesh_sender_send_message(s, message_with_fds(4, 5));
	net_pump(net);
	ck_assert(mesh_receiver_recv_message(r, 0, &got, NULL));
	ck_assert_uint_eq(mesh_message_get_n_resources(got), 5);
	mesh_message_free(got);
	mesh_receiver_free(r);
	mesh_sender_free(s);
	net_free(net);
}
END_TEST

/* Queued for a node not connected yet: the connector's caps apply. */
static void hold_connector(MeshNode *node, MeshRemoteNode *remote, void *user_data)
{
	g_ptr_array_add(user_data, remote);
}

START_TEST(test_caps_connector)
{
	MeshNode *node = mesh_node_new();
	GPtrArray *held = g_ptr_array_new();
	MeshNodeId far;
	MeshPortId mine, theirs;

	mesh_node_set_connector(node, hold_connector, held);
	mesh_node_set_connector_caps(node, &caps_no_fds);
	mesh_uuid_generate(&far);
	mesh_uuid_generate(&mine);
	mesh_uuid_generate(&theirs);
	MeshPort *p = mesh_node_add_port(node, &mine, &far, &theirs);
	MeshSender *s = mesh_sender_from_port(p, NULL);
	mesh_sender_send_message(s, message_with_fds(4, 1));
	ck_assert(mesh_sender_is_closed(s));
	mesh_sender_free(s);
	for (guint i = 0; i < held->len; i++) {
		mesh_remote_node_fail(held->pdata[i], "test over");
		mesh_remote_node_unref(held->pdata[i]);
	}
	g_ptr_array_free(held, TRUE);
	mesh_node_set_connector(node, NULL, NULL);
	mesh_node_unref(node);
}
END_TEST

/* A receive blocked on a port runs the transport's I/O through its hook. */
static gpointer send_later(gpointer data)
{
	MeshSender *s = data;

	mesh_sender_send_message(s, message_with_fds(3, 0));
	return NULL;
}

START_TEST(test_hook_blocked_receiver)
{
	Net *net = net_new(NULL, TRUE);
	MeshMessage *got = NULL;
	GError *error = NULL;
	MeshSender *s;
	MeshReceiver *r;

	net_channel(net, &s, &r);
	/* Nothing but the hook delivers: without it, this receive never ends. */
	GThread *t = g_thread_new("sender", send_later, s);
	ck_assert_msg(mesh_receiver_recv_message(r, -1, &got, &error), "%s",
		      error ? error->message : "");
	g_thread_join(t);
	ck_assert_uint_ge(net->hook_runs, 1);
	mesh_message_free(got);
	/* A timeout still ends a hook-driven wait. */
	ck_assert(!mesh_receiver_recv_message(r, 1000, &got, &error));
	ck_assert_int_eq(error->code, MESH_ERROR_TIMED_OUT);
	g_clear_error(&error);
	mesh_receiver_free(r);
	mesh_sender_free(s);
	net_free(net);
}
END_TEST

/* mesh_node_wait_idle() ends when the ports leave the table. */
typedef struct {
	Net *net;
	MeshPort *a, *b;
} Closer;

static gpointer close_later(gpointer data)
{
	Closer *c = data;

	mesh_port_close(c->a);
	mesh_port_close(c->b);
	net_pump(c->net);
	return NULL;
}

START_TEST(test_wait_idle)
{
	Net *net = net_new(NULL, FALSE);
	Closer c = {net};

	net_port_pair(net, &c.a, &c.b);
	ck_assert_uint_eq(mesh_node_count_ports(net->nodes[0]), 1);
	ck_assert(!mesh_node_wait_idle(net->nodes[0], 0, 0));
	ck_assert(mesh_node_wait_idle(net->nodes[0], 1, 0));
	ck_assert(!mesh_node_wait_idle(net->nodes[0], 0, 1000));
	GThread *t = g_thread_new("closer", close_later, &c);
	ck_assert(mesh_node_wait_idle(net->nodes[0], 0, -1));
	g_thread_join(t);
	ck_assert(mesh_node_wait_idle(net->nodes[1], 0, -1));
	net_free(net);
}
END_TEST

START_TEST(test_event_get_size)
{
	guint8 header[40] = {0};

	ck_assert_uint_eq(mesh_event_get_size(header, 39), 0);
	header[32] = 2;   /* two resource records */
	header[36] = 100; /* and 100 bytes */
	ck_assert_uint_eq(mesh_event_get_size(header, 40), 40 + 2 * 96 + 100);
	header[35] = 0xff; /* over the resource bound */
	ck_assert_uint_eq(mesh_event_get_size(header, 40), 0);
}
END_TEST

static void expect_text(MeshReceiver *r, const char *text)
{
	MeshMessage *got = NULL;
	GError *error = NULL;
	size_t size;

	ck_assert_msg(mesh_receiver_recv_message(r, 0, &got, &error), "expected %s: %s", text,
		      error ? error->message : "");
	const char *data = (const char *)mesh_message_get_data(got, &size);
	ck_assert_msg(size == strlen(text) && memcmp(data, text, size) == 0, "expected %s, got %.*s",
		      text, (int)size, data);
	mesh_message_free(got);
}

static void send_text(MeshSender *s, const char *text)
{
	mesh_sender_send_message(s, mesh_message_new(text, strlen(text)));
}

/*
 * A batch that moves a port in its middle: the messages before and after
 * it, to one port, arrive in order around it; what was sent to the moving
 * port before, during and after the move arrives in order at its new home.
 */
START_TEST(test_receive_events_move_in_batch)
{
	Net *net = net_new(NULL, FALSE);
	MeshPort *x, *y;
	MeshMessage *got = NULL;
	MeshSender *s;
	MeshReceiver *r;

	net_channel(net, &s, &r);
	mesh_port_new_pair(&x, &y);
	MeshSender *xs = mesh_sender_from_port(x, NULL);
	send_text(xs, "x0");
	send_text(xs, "x1");
	send_text(s, "1");
	send_text(s, "2");
	MeshMessage *carrier = mesh_message_new(NULL, 0);
	ck_assert_int_ge(mesh_message_add_port_take(carrier, y), 0);
	mesh_sender_send_message(s, carrier);
	send_text(s, "3");
	send_text(s, "4");
	send_text(xs, "x2"); /* to a port on its way */
	/* The five events go to node 1 in one batch: two runs and the move. */
	ck_assert_uint_eq(net_pump_batches(net, TRUE), 5);
	expect_text(r, "1");
	expect_text(r, "2");
	ck_assert(mesh_receiver_recv_message(r, 0, &got, NULL));
	MeshPort *moved = mesh_message_steal_port(got, 0);
	ck_assert_ptr_nonnull(moved);
	mesh_message_free(got);
	MeshReceiver *ry = mesh_receiver_from_port(moved, NULL);
	expect_text(r, "3");
	expect_text(r, "4");
	send_text(xs, "x3"); /* maybe before the move completes, maybe after */
	while (net_pump_batched(net))
		;
	expect_text(ry, "x0");
	expect_text(ry, "x1");
	expect_text(ry, "x2");
	expect_text(ry, "x3");
	send_text(xs, "x4"); /* straight to node 1 now */
	while (net_pump_batched(net))
		;
	expect_text(ry, "x4");
	ck_assert(!mesh_receiver_recv_message(r, 0, &got, NULL));
	ck_assert(!mesh_receiver_recv_message(ry, 0, &got, NULL));
	mesh_receiver_free(ry);
	mesh_sender_free(xs);
	mesh_receiver_free(r);
	mesh_sender_free(s);
	net_free(net);
}
END_TEST

/*
 * Events of one run after the one that ended or failed the port: what each
 * would get alone (the port is no longer in the table: dropped), in a
 * batch as one by one.
 */
static void run_after_end(gboolean batched, gboolean close)
{
	Net *net = net_new(NULL, FALSE);
	MeshMessage *got = NULL;
	GError *error = NULL;
	MeshSender *s;
	MeshReceiver *r;

	net_channel(net, &s, &r);
	send_text(s, "1");
	send_text(s, "2");
	if (close) {
		/* 1, 2, close, then 2 again: the port ended, the copy is dropped. */
		mesh_sender_free(s);
		s = NULL;
		net_repeat_packet(net, 1);
	} else {
		/* 1, 2, 2 again (a protocol error), 3: the port failed, 3 is dropped. */
		net_repeat_packet(net, 1);
		send_text(s, "3");
	}
	/* The four events (and the answer to the close) */
	ck_assert_uint_ge(batched ? net_pump_batched(net) : net_pump(net), 4);
	expect_text(r, "1");
	expect_text(r, "2");
	ck_assert(!mesh_receiver_recv_message(r, 0, &got, &error));
	ck_assert_ptr_null(got);
	if (close) {
		ck_assert_msg(g_error_matches(error, MESH_ERROR, MESH_ERROR_CLOSED), "%s",
			      error->message);
	} else {
		ck_assert_msg(g_error_matches(error, MESH_ERROR, MESH_ERROR_NODE_FAILURE), "%s",
			      error->message);
		ck_assert_msg(strstr(error->message, "duplicate sequence number"), "%s",
			      error->message);
	}
	g_error_free(error);
	mesh_receiver_free(r);
	mesh_sender_free(s);
	net_free(net);
}

START_TEST(test_receive_events_after_end)
{
	for (int batched = 0; batched <= 1; batched++) {
		run_after_end(batched, TRUE);
		run_after_end(batched, FALSE);
	}
}
END_TEST

/* Bad arguments: every handle is consumed, as mesh_node_receive_event() does. */
START_TEST(test_receive_events_bad_args)
{
	MeshNode *node = mesh_node_new();
	int fds[2] = {dup(STDERR_FILENO), dup(STDERR_FILENO)};
	MeshEventData ev = {(const uint8_t *)"junk", 4, fds, 2};

	ck_assert_int_ge(fds[0], 0);
	ck_assert_int_ge(fds[1], 0);
	/* A malformed event: dropped, its fds closed. */
	mesh_node_receive_events(node, mesh_node_get_id(node), &ev, 1);
	ck_assert_int_eq(fcntl(fds[0], F_GETFD), -1);
	ck_assert_int_eq(fcntl(fds[1], F_GETFD), -1);
	mesh_node_unref(node);
}
END_TEST

static Suite *transport_suite(void)
{
	Suite *s = suite_create("transport");
	TCase *tc = tcase_create("interface");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_caps_no_fds);
	tcase_add_test(tc, test_lent_closed_fd_without_try_send);
	tcase_add_test(tc, test_caps_too_many_fds);
	tcase_add_test(tc, test_caps_event_too_large);
	tcase_add_test(tc, test_caps_within);
	tcase_add_test(tc, test_caps_version0);
	tcase_add_test(tc, test_caps_connector);
	tcase_add_test(tc, test_hook_blocked_receiver);
	tcase_add_test(tc, test_wait_idle);
	tcase_add_test(tc, test_event_get_size);
	tcase_add_test(tc, test_receive_events_move_in_batch);
	tcase_add_test(tc, test_receive_events_after_end);
	tcase_add_test(tc, test_receive_events_bad_args);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(transport_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
