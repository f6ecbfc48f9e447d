/* SPDX-License-Identifier: MIT */
/*
 * Cancel contexts and deadlines: ports of upstream's tests (cancel.rs:
 * no_cancel, basic_cancel, chain_cancel, chain_deadline, cancel_deadline,
 * test_encode_deadline; deadline.rs: deadline_set), the wire form against
 * upstream's encoding, and contexts sent to another process (this program
 * is also the child) where they are cancelled, run out or owned.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <pal/pal.h>

#include "channel-private.h"
#include "unix-test.h"

static char *self_exe;

#define CTX_DESC (&mesh_remote__cancel_context__descriptor)

static gint64 now_us(void)
{
	return g_get_monotonic_time();
}

/* Helpers: contexts and text over untyped channels. */

static void send_text(MeshSender *s, const char *text)
{
	mesh_sender_send_message(s, mesh_message_new(text, strlen(text)));
}

static char *recv_text(MeshReceiver *r, gint64 timeout_us)
{
	MeshMessage *msg = NULL;
	GError *error = NULL;
	if (!mesh_receiver_recv_message(r, timeout_us, &msg, &error)) {
		char *s = g_strdup_printf("<%s>", error->message);
		g_error_free(error);
		return s;
	}
	size_t n;
	const uint8_t *data = mesh_message_get_data(msg, &n);
	char *s = g_strndup((const char *)data, n);
	mesh_message_free(msg);
	return s;
}

static void expect_text(MeshReceiver *r, const char *want)
{
	char *got = recv_text(r, 20 * G_USEC_PER_SEC);
	ck_assert_msg(strcmp(got, want) == 0, "expected \"%s\", got \"%s\"", want, got);
	g_free(got);
}

static void send_ctx(MeshSender *s, MeshCancelContext *ctx)
{
	MeshRemote__CancelContext *f = mesh_cancel_context_into_field(ctx);
	mesh_sender_send_message(s, mesh_message_new_typed_take(&f->base));
}

static MeshCancelContext *recv_ctx(MeshReceiver *r)
{
	MeshMessage *msg = NULL;
	GError *error = NULL;
	if (!mesh_receiver_recv_message(r, 20 * G_USEC_PER_SEC, &msg, &error)) {
		fprintf(stderr, "recv_ctx: %s\n", error->message);
		g_error_free(error);
		return NULL;
	}
	ProtobufCMessage *f = mesh_message_into_typed(msg, CTX_DESC, &error);
	if (!f) {
		fprintf(stderr, "recv_ctx: %s\n", error->message);
		g_error_free(error);
		return NULL;
	}
	MeshCancelContext *ctx =
		mesh_cancel_context_from_field((MeshRemote__CancelContext *)f, &error);
	if (!ctx) {
		fprintf(stderr, "recv_ctx: %s\n", error->message);
		g_error_free(error);
	}
	mesh_payload_message_free(f);
	return ctx;
}

static gboolean cancelled(MeshCancelContext *ctx)
{
	return mesh_cancel_context_is_cancelled(ctx, NULL);
}

/* Upstream cancel.rs. */

START_TEST(test_no_cancel)
{
	MeshCancelContext *ctx = mesh_cancel_context_new();
	GError *error = NULL;

	ck_assert(!cancelled(ctx));
	ck_assert(!mesh_cancel_context_wait(ctx, 0, NULL, &error));
	ck_assert(g_error_matches(error, MESH_ERROR, MESH_ERROR_EMPTY));
	g_clear_error(&error);
	ck_assert(!mesh_cancel_context_wait(ctx, 20000, NULL, &error));
	ck_assert(g_error_matches(error, MESH_ERROR, MESH_ERROR_TIMED_OUT));
	g_clear_error(&error);
	ck_assert(!mesh_cancel_context_get_deadline(ctx, NULL));
	mesh_cancel_context_free(ctx);
}
END_TEST

START_TEST(test_basic_cancel)
{
	MeshCancelContext *root = mesh_cancel_context_new();
	MeshCancel *cancel = NULL;
	MeshCancelContext *ctx = mesh_cancel_context_with_cancel(root, &cancel);
	MeshCancelReason reason = MESH_CANCEL_REASON_NONE;

	ck_assert(!cancelled(ctx));
	mesh_cancel_cancel(cancel);
	/* In process the close is delivered at once: ready without waiting. */
	ck_assert(mesh_cancel_context_is_cancelled(ctx, &reason));
	ck_assert_int_eq(reason, MESH_CANCEL_REASON_CANCELLED);
	ck_assert_str_eq(mesh_cancel_reason_to_string(reason), "cancelled");
	ck_assert(!cancelled(root));
	mesh_cancel_cancel(cancel); /* idempotent */
	mesh_cancel_free(cancel);
	mesh_cancel_context_free(ctx);
	mesh_cancel_context_free(root);
}
END_TEST

/* Upstream chain(use_cancel): long chains of clones all see the cancel or the deadline. */
static void chain(gboolean use_cancel)
{
	MeshCancelContext *root = mesh_cancel_context_new();
	MeshCancel *cancel = NULL;
	MeshCancelContext *ctx = mesh_cancel_context_with_cancel(root, &cancel), *t;

	if (!use_cancel) {
		t = mesh_cancel_context_with_timeout(ctx, 15000);
		mesh_cancel_context_free(ctx);
		ctx = t;
	}
	for (int i = 0; i < 8; i++) {
		t = mesh_cancel_context_clone(ctx);
		mesh_cancel_context_free(ctx);
		ctx = t;
	}
	MeshCancelContext *ctx2 = mesh_cancel_context_clone(ctx);
	for (int i = 0; i < 5; i++) {
		t = mesh_cancel_context_clone(ctx2);
		mesh_cancel_context_free(ctx2);
		ctx2 = t;
	}
	t = mesh_cancel_context_clone(ctx2);
	for (int i = 0; i < 9; i++) {
		MeshCancelContext *u = mesh_cancel_context_clone(t);
		mesh_cancel_context_free(t);
		t = u;
	}
	mesh_cancel_context_free(t);
	g_usleep(100000);
	if (use_cancel) {
		ck_assert(!cancelled(ctx) && !cancelled(ctx2));
		mesh_cancel_cancel(cancel);
	}
	MeshCancelReason r1, r2;
	ck_assert(mesh_cancel_context_is_cancelled(ctx, &r1));
	ck_assert(mesh_cancel_context_is_cancelled(ctx2, &r2));
	MeshCancelReason want = use_cancel ? MESH_CANCEL_REASON_CANCELLED
					   : MESH_CANCEL_REASON_DEADLINE_EXCEEDED;
	ck_assert_int_eq(r1, want);
	ck_assert_int_eq(r2, want);
	mesh_cancel_context_free(ctx);
	mesh_cancel_context_free(ctx2);
	mesh_cancel_free(cancel);
	mesh_cancel_context_free(root);
}

START_TEST(test_chain_cancel)
{
	chain(TRUE);
}
END_TEST

START_TEST(test_chain_deadline)
{
	chain(FALSE);
}
END_TEST

START_TEST(test_cancel_deadline)
{
	MeshCancelContext *root = mesh_cancel_context_new();
	MeshCancelReason reason = MESH_CANCEL_REASON_NONE;

	MeshCancelContext *ctx = mesh_cancel_context_with_timeout(root, 0);
	ck_assert(mesh_cancel_context_wait(ctx, -1, &reason, NULL));
	ck_assert_int_eq(reason, MESH_CANCEL_REASON_DEADLINE_EXCEEDED);
	mesh_cancel_context_free(ctx);

	gint64 t0 = now_us();
	ctx = mesh_cancel_context_with_timeout(root, 100000);
	ck_assert(mesh_cancel_context_wait(ctx, -1, &reason, NULL));
	ck_assert_int_eq(reason, MESH_CANCEL_REASON_DEADLINE_EXCEEDED);
	ck_assert_int_ge(now_us() - t0, 100000);
	mesh_cancel_context_free(ctx);
	mesh_cancel_context_free(root);
}
END_TEST

static void check_encode_deadline(const MeshDeadline *d)
{
	MeshPayload__Timestamp t;
	MeshDeadline d2;
	mesh_deadline_to_timestamp(d, &t);
	mesh_deadline_from_timestamp(&t, &d2);
	ck_assert(!d2.has_monotonic);
	ck_assert_int_eq(mesh_deadline_compare(d, &d2), 0);
}

START_TEST(test_encode_deadline)
{
	MeshDeadline now, d;

	mesh_deadline_now(&now);
	check_encode_deadline(&now);
	ck_assert(mesh_deadline_add(&now, 1000000000, &d));
	check_encode_deadline(&d);
	mesh_deadline_sub(&now, 1000000000, &d);
	check_encode_deadline(&d);
	/* UNIX_EPOCH - 1.5 s and + 1.5 s (wall-clock only, as Deadline::from(SystemTime)). */
	MeshDeadline before = {.wall_sec = -2, .wall_nsec = 500000000};
	check_encode_deadline(&before);
	MeshDeadline after = {.wall_sec = 1, .wall_nsec = 500000000};
	check_encode_deadline(&after);

	/* Out-of-range timestamps become the epoch (upstream unwrap_or(UNIX_EPOCH)). */
	MeshPayload__Timestamp bad = MESH_PAYLOAD__TIMESTAMP__INIT;
	bad.seconds = 77;
	bad.nanos = -1;
	mesh_deadline_from_timestamp(&bad, &d);
	ck_assert_int_eq(d.wall_sec, 0);
	ck_assert_int_eq(d.wall_nsec, 0);

	/* Monotonic time wins when both have it. */
	MeshDeadline a = now, b = now;
	b.wall_sec -= 100;
	b.monotonic_ns += 1;
	ck_assert_int_lt(mesh_deadline_compare(&a, &b), 0);
	b.has_monotonic = FALSE;
	ck_assert_int_gt(mesh_deadline_compare(&a, &b), 0);
	/* Subtracting goes before the epoch; only an overflow saturates at it. */
	mesh_deadline_sub(&after, 2000000000, &d);
	ck_assert_int_eq(d.wall_sec, -1);
	ck_assert_int_eq(d.wall_nsec, 500000000);
	MeshDeadline early = {.wall_sec = G_MININT64 + 1};
	mesh_deadline_sub(&early, 2000000000, &d);
	ck_assert_int_eq(d.wall_sec, 0);
	ck_assert_int_eq(d.wall_nsec, 0);
	MeshDeadline far = {.wall_sec = G_MAXINT64 - 1};
	ck_assert(!mesh_deadline_add(&far, 5 * 1000000000ull, &d));
}
END_TEST

/* Upstream deadline_set: a wait on a deadline 10 ms out ends no earlier than it. */
static void on_cancel_quit(MeshCancelContext *ctx, MeshCancelReason reason, gpointer data)
{
	*(MeshCancelReason *)data = reason;
}

START_TEST(test_deadline_set)
{
	MeshCancelContext *root = mesh_cancel_context_new();
	MeshDeadline deadline, now;
	MeshCancelReason reason = MESH_CANCEL_REASON_NONE;

	/* _i: 0 blocking wait, 1 fd, 2 GMainContext callback. */
	mesh_deadline_now(&deadline);
	mesh_deadline_add(&deadline, 10000000, &deadline);
	MeshCancelContext *ctx = mesh_cancel_context_with_deadline(root, &deadline);
	if (_i == 0) {
		ck_assert(mesh_cancel_context_wait(ctx, -1, &reason, NULL));
	} else if (_i == 1) {
		int fd = mesh_cancel_context_get_fd(ctx);
		ck_assert_int_ge(fd, 0);
		ck_assert_int_eq(fcntl(fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
		struct pollfd p = {.fd = fd, .events = POLLIN};
		ck_assert_int_eq(poll(&p, 1, 20000), 1);
		ck_assert(mesh_cancel_context_is_cancelled(ctx, &reason));
	} else {
		GMainContext *mc = g_main_context_new();
		mesh_cancel_context_set_callback(ctx, mc, on_cancel_quit, &reason, NULL);
		while (reason == MESH_CANCEL_REASON_NONE)
			g_main_context_iteration(mc, TRUE);
		mesh_cancel_context_set_callback(ctx, NULL, NULL, NULL, NULL);
		g_main_context_unref(mc);
	}
	mesh_deadline_now(&now);
	ck_assert_int_ge(mesh_deadline_compare(&now, &deadline), 0);
	ck_assert_int_eq(reason, MESH_CANCEL_REASON_DEADLINE_EXCEEDED);
	mesh_cancel_context_free(ctx);
	mesh_cancel_context_free(root);
}
END_TEST

/* Each waiting form sees a cancel by the owner, from another thread. */
static gpointer cancel_later(gpointer data)
{
	g_usleep(30000);
	mesh_cancel_cancel(data);
	return NULL;
}

START_TEST(test_wait_forms_see_cancel)
{
	MeshCancelContext *root = mesh_cancel_context_new();
	MeshCancel *cancel = NULL;
	MeshCancelContext *ctx = mesh_cancel_context_with_cancel(root, &cancel);
	MeshCancelReason reason = MESH_CANCEL_REASON_NONE;
	GMainContext *mc = NULL;
	int fd = -1;

	if (_i == 1)
		fd = mesh_cancel_context_get_fd(ctx);
	if (_i == 2) {
		mc = g_main_context_new();
		mesh_cancel_context_set_callback(ctx, mc, on_cancel_quit, &reason, NULL);
		/* Not yet: the callback does not run. */
		for (int k = 0; k < 3; k++)
			g_main_context_iteration(mc, FALSE);
		ck_assert_int_eq(reason, MESH_CANCEL_REASON_NONE);
	}
	GThread *t = g_thread_new("cancel", cancel_later, cancel);
	if (_i == 0) {
		ck_assert(mesh_cancel_context_wait(ctx, 20 * G_USEC_PER_SEC, &reason, NULL));
	} else if (_i == 1) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		ck_assert_int_eq(poll(&p, 1, 0), 0);
		ck_assert_int_eq(poll(&p, 1, 20000), 1);
		ck_assert(mesh_cancel_context_is_cancelled(ctx, &reason));
	} else {
		while (reason == MESH_CANCEL_REASON_NONE)
			g_main_context_iteration(mc, TRUE);
	}
	ck_assert_int_eq(reason, MESH_CANCEL_REASON_CANCELLED);
	g_thread_join(t);
	mesh_cancel_context_free(ctx);
	if (mc)
		g_main_context_unref(mc);
	mesh_cancel_free(cancel);
	mesh_cancel_context_free(root);
}
END_TEST

/* Freeing the Cancel cancels (upstream drop); a child of a cancelled context is cancelled. */
START_TEST(test_drop_cancel_and_children)
{
	MeshCancelContext *root = mesh_cancel_context_new();
	MeshCancel *cancel = NULL, *inner = NULL;
	MeshCancelContext *ctx = mesh_cancel_context_with_cancel(root, &cancel);
	MeshCancelContext *child = mesh_cancel_context_with_cancel(ctx, &inner);
	MeshCancelContext *late = mesh_cancel_context_with_timeout(child, 60 * G_USEC_PER_SEC);
	MeshCancelReason reason;

	/* Cancelling the inner one leaves the parent alone. */
	mesh_cancel_free(inner);
	ck_assert(cancelled(child));
	ck_assert(!cancelled(ctx));
	mesh_cancel_free(cancel);
	ck_assert(cancelled(ctx));
	ck_assert(mesh_cancel_context_is_cancelled(late, &reason));
	ck_assert_int_eq(reason, MESH_CANCEL_REASON_CANCELLED); /* port seen before the deadline */

	/* A clone or child of a cancelled context is cancelled with its reason. */
	MeshCancel *c2 = NULL;
	MeshCancelContext *again = mesh_cancel_context_with_cancel(ctx, &c2);
	ck_assert(cancelled(again));
	mesh_cancel_free(c2);
	mesh_cancel_context_free(again);

	/* The earlier deadline wins. */
	MeshDeadline d1, d2, got;
	mesh_deadline_now(&d1);
	mesh_deadline_add(&d1, 5000000000ull, &d2);
	MeshCancelContext *a = mesh_cancel_context_with_deadline(root, &d2);
	MeshCancelContext *b = mesh_cancel_context_with_deadline(a, &d1);
	MeshCancelContext *c = mesh_cancel_context_with_deadline(b, &d2);
	ck_assert(mesh_cancel_context_get_deadline(c, &got));
	ck_assert_int_eq(mesh_deadline_compare(&got, &d1), 0);
	mesh_cancel_context_free(a);
	mesh_cancel_context_free(b);
	mesh_cancel_context_free(c);

	mesh_cancel_context_free(late);
	mesh_cancel_context_free(child);
	mesh_cancel_context_free(ctx);
	mesh_cancel_context_free(root);
}
END_TEST

/* A callback may free its context. */
static void free_in_callback(MeshCancelContext *ctx, MeshCancelReason reason, gpointer data)
{
	mesh_cancel_context_free(ctx);
	*(int *)data += 1;
}

START_TEST(test_callback_frees_context)
{
	MeshCancelContext *root = mesh_cancel_context_new();
	MeshCancel *cancel = NULL;
	MeshCancelContext *ctx = mesh_cancel_context_with_cancel(root, &cancel);
	GMainContext *mc = g_main_context_new();
	int calls = 0;

	mesh_cancel_context_set_callback(ctx, mc, free_in_callback, &calls, NULL);
	mesh_cancel_cancel(cancel);
	while (g_main_context_iteration(mc, FALSE))
		;
	g_main_context_iteration(mc, FALSE);
	ck_assert_int_eq(calls, 1);
	g_main_context_unref(mc);
	mesh_cancel_free(cancel);
	mesh_cancel_context_free(root);
}
END_TEST

/*
 * Upstream's garbage collection: the Cancel adopts a port per clone and lets
 * it go when the clone is freed, so many short-lived clones do not pile up.
 * And a cancel from another thread while clones are being made reaches all.
 */
static gpointer clone_churn(gpointer data)
{
	MeshCancelContext *ctx = data;
	GPtrArray *kept = g_ptr_array_new();
	for (int i = 0; i < 2000; i++) {
		MeshCancelContext *c = mesh_cancel_context_clone(ctx);
		if (i % 10 == 0)
			g_ptr_array_add(kept, c);
		else
			mesh_cancel_context_free(c);
	}
	return kept;
}

START_TEST(test_clones_collected_and_cancelled)
{
	MeshCancelContext *root = mesh_cancel_context_new();
	MeshCancel *cancel = NULL;
	MeshCancelContext *ctx = mesh_cancel_context_with_cancel(root, &cancel);

	for (int i = 0; i < 1000; i++)
		mesh_cancel_context_free(mesh_cancel_context_clone(ctx));
	/* Only the context's own port is left (collection runs as the clones end). */
	ck_assert_uint_eq(cancel_count_ports(cancel), 1);

	MeshCancelContext *other = mesh_cancel_context_clone(ctx);
	GThread *t = g_thread_new("churn", clone_churn, other);
	g_usleep(2000);
	mesh_cancel_cancel(cancel);
	GPtrArray *kept = g_thread_join(t);
	ck_assert_uint_eq(kept->len, 200);
	for (guint i = 0; i < kept->len; i++) {
		ck_assert(mesh_cancel_context_wait(kept->pdata[i], 20 * G_USEC_PER_SEC, NULL, NULL));
		mesh_cancel_context_free(kept->pdata[i]);
	}
	g_ptr_array_free(kept, TRUE);
	ck_assert(cancelled(other) && cancelled(ctx));
	ck_assert_uint_eq(cancel_count_ports(cancel), 0);
	mesh_cancel_context_free(other);
	mesh_cancel_context_free(ctx);
	mesh_cancel_free(cancel);
	mesh_cancel_context_free(root);
}
END_TEST

/* The wire form, against upstream's encoding of CancelContext. */
static void check_wire(MeshCancelContext *ctx, const char *hex, guint n_res,
		       MeshPayloadResources **ret_res, uint8_t **ret_data, size_t *ret_size)
{
	MeshRemote__CancelContext *f = mesh_cancel_context_into_field(ctx);
	MeshPayloadResources *res = mesh_payload_resources_new();
	uint8_t *data = NULL, want[64];
	size_t size = 0, n = 0;
	char got[200] = "";

	ck_assert_int_eq(mesh_payload_encode_alloc(&f->base, &data, &size, res, NULL), 0);
	for (size_t i = 0; i < size && i < 60; i++)
		sprintf(got + 3 * i, "%02x ", data[i]);
	for (const char *p = hex; *p; p++) {
		if (*p == ' ')
			continue;
		unsigned v;
		sscanf(p, "%2x", &v);
		want[n++] = (uint8_t)v;
		p++;
	}
	ck_assert_msg(n == size && memcmp(want, data, n) == 0, "got %s, want %s", got, hex);
	ck_assert_uint_eq(mesh_payload_resources_len(res), n_res);
	mesh_payload_message_free(&f->base);
	if (ret_res) {
		*ret_res = res;
		*ret_data = data;
		*ret_size = size;
	} else {
		mesh_payload_resources_free(res);
		free(data);
	}
}

START_TEST(test_wire_form)
{
	MeshCancelContext *root = mesh_cancel_context_new();

	/* CancelContext::new(): state NotCancelled { ports: [] }, no deadline. */
	check_wire(mesh_cancel_context_clone(root), "0a 02 0a 00", 0, NULL, NULL, NULL);

	/* One port: wire type 6 (count 1, length) down to the resource field 0f. */
	MeshCancel *cancel = NULL;
	MeshPayloadResources *res;
	uint8_t *data;
	size_t size;
	check_wire(mesh_cancel_context_with_cancel(root, &cancel), "0e 01 04 0e 01 01 0f", 1, &res,
		   &data, &size);
	/* Decoded back (the port in the list), it still cancels. */
	ProtobufCMessage *m = NULL;
	ck_assert_int_eq(mesh_payload_decode(CTX_DESC, data, size, res, NULL, &m, NULL), 0);
	MeshCancelContext *back =
		mesh_cancel_context_from_field((MeshRemote__CancelContext *)m, NULL);
	mesh_payload_message_free(m);
	ck_assert_ptr_nonnull(back);
	ck_assert(!cancelled(back));
	mesh_cancel_free(cancel);
	ck_assert(cancelled(back));
	mesh_cancel_context_free(back);
	mesh_payload_resources_free(res);
	free(data);

	/* Seen cancelled: Cancelled(Cancelled), no port. */
	MeshCancelContext *c = mesh_cancel_context_with_cancel(root, &cancel);
	mesh_cancel_cancel(cancel);
	ck_assert(cancelled(c));
	check_wire(c, "0a 06 12 04 0a 02 0a 00", 0, NULL, NULL, NULL);
	mesh_cancel_free(cancel);

	/* A deadline: Some(Timestamp) as field 2 (plain varints), 1.5 s after the epoch. */
	MeshDeadline d = {.wall_sec = 1, .wall_nsec = 500000000};
	MeshCancelContext *dl = mesh_cancel_context_with_deadline(root, &d);
	MeshCancelContext *dl2 = mesh_cancel_context_clone(dl);
	check_wire(dl, "0a 02 0a 00 12 08 08 01 10 80 ca b5 ee 01", 0, NULL, NULL, NULL);
	/* Seen past it: Cancelled(DeadlineExceeded) with the deadline. */
	ck_assert(cancelled(dl2));
	check_wire(dl2, "0a 06 12 04 0a 02 12 00 12 08 08 01 10 80 ca b5 ee 01", 0, NULL, NULL,
		   NULL);
	/* The epoch itself is present, as an empty message (Some in sequence mode). */
	MeshDeadline epoch = {0};
	check_wire(mesh_cancel_context_with_deadline(root, &epoch), "0a 02 0a 00 12 00", 0, NULL,
		   NULL, NULL);

	/* Upstream's bytes decode: Cancelled(DeadlineExceeded). */
	const uint8_t de[] = {0x0a, 0x06, 0x12, 0x04, 0x0a, 0x02, 0x12, 0x00};
	ck_assert_int_eq(mesh_payload_decode(CTX_DESC, de, sizeof(de), NULL, NULL, &m, NULL), 0);
	back = mesh_cancel_context_from_field((MeshRemote__CancelContext *)m, NULL);
	mesh_payload_message_free(m);
	MeshCancelReason reason;
	ck_assert(mesh_cancel_context_is_cancelled(back, &reason));
	ck_assert_int_eq(reason, MESH_CANCEL_REASON_DEADLINE_EXCEEDED);
	ck_assert(!mesh_cancel_context_get_deadline(back, NULL));
	mesh_cancel_context_free(back);

	/* No state: upstream's "missing enum variant". */
	GError *error = NULL;
	ck_assert_int_eq(mesh_payload_decode(CTX_DESC, NULL, 0, NULL, NULL, &m, NULL), 0);
	ck_assert_ptr_null(mesh_cancel_context_from_field((MeshRemote__CancelContext *)m, &error));
	ck_assert(g_error_matches(error, MESH_ERROR, MESH_ERROR_CORRUPTION));
	g_clear_error(&error);
	mesh_payload_message_free(m);
	/* Cancelled with no reason. */
	const uint8_t nr[] = {0x0a, 0x02, 0x12, 0x00};
	ck_assert_int_eq(mesh_payload_decode(CTX_DESC, nr, sizeof(nr), NULL, NULL, &m, NULL), 0);
	ck_assert_ptr_null(mesh_cancel_context_from_field((MeshRemote__CancelContext *)m, &error));
	ck_assert(g_error_matches(error, MESH_ERROR, MESH_ERROR_CORRUPTION));
	g_clear_error(&error);
	mesh_payload_message_free(m);

	mesh_cancel_context_free(root);
}
END_TEST

/* Across processes: a parent node and this program as the child. */

typedef struct {
	PalChild *process;
	MeshSender *to_child;       /* untyped: contexts and commands */
	MeshReceiver *from_child;   /* untyped: contexts and reports */
} Child;

static MeshNode *pnode;
static MeshUnixNode *punode;

static void parent_setup(void)
{
	pnode = mesh_node_new();
	punode = mesh_unix_node_new(pnode, NULL);
}

static GMainContext *pcontext;

static void parent_teardown(void)
{
	mesh_unix_node_shutdown(punode, 5 * G_USEC_PER_SEC);
	mesh_unix_node_free(punode);
	mesh_node_unref(pnode);
	if (pcontext) {
		g_main_context_pop_thread_default(pcontext);
		g_main_context_unref(pcontext);
		pcontext = NULL;
	}
}

/*
 * The transport on this thread's own GMainContext, which nobody else runs:
 * a blocking wait here must run it (or it would wait for nothing).
 */
static void parent_setup_on_context(void)
{
	pcontext = g_main_context_new();
	g_main_context_push_thread_default(pcontext);
	pnode = mesh_node_new();
	punode = mesh_unix_node_new(pnode, pcontext);
}

static Child *spawn_child(const char *scenario)
{
	Child *c = g_new0(Child, 1);
	MeshNodeId id;
	MeshPortId my_port, child_port;
	char ids[4][33];
	int sv[2];

	mesh_uuid_generate(&id);
	mesh_uuid_generate(&my_port);
	mesh_uuid_generate(&child_port);
	ck_assert_int_eq(pal_socketpair(SOCK_SEQPACKET, sv), 0);
	MeshRemoteNode *h = mesh_node_add_remote(pnode, &id);
	MeshPort *port = mesh_node_add_port(pnode, &my_port, &id, &child_port);
	ck_assert(mesh_unix_node_connect_take(punode, &id, sv[0], NULL));
	mesh_remote_node_unref(h);

	uuid_to_hex(&id, ids[0]);
	uuid_to_hex(mesh_node_get_id(pnode), ids[1]);
	uuid_to_hex(&child_port, ids[2]);
	uuid_to_hex(&my_port, ids[3]);
	PalSpawn *spawn = pal_spawn_new(self_exe);
	const char *args[] = {"child", ids[0], ids[1], ids[2], ids[3], scenario, NULL};
	pal_spawn_add_args(spawn, args);
	pal_spawn_dup_fd(spawn, sv[1], 3);
	pal_spawn_set_parent_death_signal(spawn, SIGKILL);
	ck_assert_int_eq(pal_spawn_run(spawn, &c->process), 0);
	pal_spawn_free(spawn);
	close(sv[1]);

	MeshSender *a_s, *b_s;
	MeshReceiver *a_r, *b_r;
	mesh_channel_new(NULL, &a_s, &a_r);
	mesh_channel_new(NULL, &b_s, &b_r);
	MeshMessage *msg = mesh_message_new(NULL, 0);
	mesh_message_add_port_take(msg, mesh_receiver_into_port(a_r));
	mesh_message_add_port_take(msg, mesh_sender_into_port(b_s));
	MeshSender *boot = mesh_sender_from_port(port, NULL);
	mesh_sender_send_message(boot, msg);
	mesh_sender_free(boot);
	c->to_child = a_s;
	c->from_child = b_r;
	return c;
}

static int child_finish(Child *c)
{
	int status = -1;
	mesh_sender_free(c->to_child);
	mesh_receiver_free(c->from_child);
	for (int i = 0; i < 2000 && pal_child_try_wait(c->process, &status) != 0; i++)
		g_usleep(5000);
	if (pal_child_try_wait(c->process, &status) != 0) {
		pal_child_kill(c->process, SIGKILL);
		pal_child_wait(c->process, &status);
		ck_abort_msg("child did not exit");
	}
	pal_child_free(c->process);
	g_free(c);
	return status;
}

/* Cancelled here, observed there (the child polls the context's fd). */
START_TEST(test_cross_cancel_observed)
{
	Child *c = spawn_child("observe-fd");
	MeshCancelContext *root = mesh_cancel_context_new();
	MeshCancel *cancel = NULL;

	send_ctx(c->to_child, mesh_cancel_context_with_cancel(root, &cancel));
	expect_text(c->from_child, "got");
	/* Nothing until the cancel. */
	char *early = recv_text(c->from_child, 200000);
	ck_assert_msg(g_str_has_prefix(early, "<"), "the child saw \"%s\" before the cancel",
		      early);
	g_free(early);
	mesh_cancel_cancel(cancel);
	expect_text(c->from_child, "cancelled");
	ck_assert_int_eq(child_finish(c), 0);
	mesh_cancel_free(cancel);
	mesh_cancel_context_free(root);
}
END_TEST

/* A deadline set here runs out there (the child waits with a GMainContext callback). */
START_TEST(test_cross_deadline_observed)
{
	Child *c = spawn_child("observe-callback");
	MeshCancelContext *root = mesh_cancel_context_new();
	gint64 t0 = now_us();

	send_ctx(c->to_child, mesh_cancel_context_with_timeout(root, 300000));
	expect_text(c->from_child, "got");
	expect_text(c->from_child, "deadline exceeded");
	/* Wall-clock time travelled: not before the deadline (a ms of clock slack). */
	ck_assert_int_ge(now_us() - t0, 299000);
	ck_assert_int_eq(child_finish(c), 0);
	mesh_cancel_context_free(root);
}
END_TEST

/* Cancelled there, observed here (a blocking wait). */
START_TEST(test_cross_cancel_by_child)
{
	Child *c = spawn_child("owner");
	MeshCancelContext *ctx = recv_ctx(c->from_child);
	GError *error = NULL;
	MeshCancelReason reason;

	ck_assert_ptr_nonnull(ctx);
	ck_assert(!mesh_cancel_context_wait(ctx, 100000, NULL, &error));
	ck_assert(g_error_matches(error, MESH_ERROR, MESH_ERROR_TIMED_OUT));
	g_clear_error(&error);
	send_text(c->to_child, "cancel");
	ck_assert(mesh_cancel_context_wait(ctx, 20 * G_USEC_PER_SEC, &reason, NULL));
	ck_assert_int_eq(reason, MESH_CANCEL_REASON_CANCELLED);
	expect_text(c->from_child, "done");
	mesh_cancel_context_free(ctx);
	ck_assert_int_eq(child_finish(c), 0);
}
END_TEST

/* A context chained and cloned there, from one made here: the cancel reaches them all. */
START_TEST(test_cross_chain)
{
	Child *c = spawn_child("chain");
	MeshCancelContext *root = mesh_cancel_context_new();
	MeshCancel *cancel = NULL;

	send_ctx(c->to_child, mesh_cancel_context_with_cancel(root, &cancel));
	expect_text(c->from_child, "chained");
	/* The child sent one clone back: it is cancelled too. */
	MeshCancelContext *back = recv_ctx(c->from_child);
	ck_assert_ptr_nonnull(back);
	ck_assert(!cancelled(back));
	mesh_cancel_free(cancel);
	expect_text(c->from_child, "cancelled");
	ck_assert(mesh_cancel_context_wait(back, 20 * G_USEC_PER_SEC, NULL, NULL));
	mesh_cancel_context_free(back);
	ck_assert_int_eq(child_finish(c), 0);
	mesh_cancel_context_free(root);
}
END_TEST

/* The owner's process exits without cancelling: its Cancel is gone, so cancelled. */
START_TEST(test_cross_owner_exits)
{
	Child *c = spawn_child("owner-exits");
	MeshCancelContext *ctx = recv_ctx(c->from_child);
	MeshCancelReason reason;

	ck_assert_ptr_nonnull(ctx);
	ck_assert(!cancelled(ctx));
	send_text(c->to_child, "exit");
	ck_assert(mesh_cancel_context_wait(ctx, 20 * G_USEC_PER_SEC, &reason, NULL));
	ck_assert_int_eq(reason, MESH_CANCEL_REASON_CANCELLED);
	mesh_cancel_context_free(ctx);
	ck_assert_int_eq(child_finish(c), 0);
}
END_TEST

/* Async rpc calls ended by a cancel context, against a server in another process. */
typedef struct {
	int calls;
	GError *error;
	gint64 seconds; /* the reply's */
} Outcome;

static void on_rpc_done(ProtobufCMessage *reply, const GError *error, gpointer data)
{
	Outcome *o = data;
	o->calls++;
	if (error)
		o->error = g_error_copy(error);
	else
		o->seconds = ((MeshPayload__Timestamp *)reply)->seconds;
	mesh_payload_message_free(reply);
}

static gboolean flag_set(gpointer data)
{
	*(gboolean *)data = TRUE;
	return G_SOURCE_REMOVE;
}

/* Runs @mc until @o has an outcome or @ms passed; returns whether it has one. */
static gboolean run_until_done(GMainContext *mc, Outcome *o, guint ms)
{
	gboolean expired = FALSE;
	GSource *t = g_timeout_source_new(ms);
	g_source_set_callback(t, flag_set, &expired, NULL);
	g_source_attach(t, mc);
	while (!o->calls && !expired)
		g_main_context_iteration(mc, TRUE);
	g_source_destroy(t);
	g_source_unref(t);
	return o->calls > 0;
}

static MeshRpcCall *call_ts(MeshSender *rs, gint64 seconds, MeshCancelContext *ctx,
			    GMainContext *mc, Outcome *o)
{
	MeshPayload__Timestamp *in = (MeshPayload__Timestamp *)mesh_payload_message_new(
		&mesh_payload__timestamp__descriptor);
	in->seconds = seconds;
	return mesh_rpc_call_async_with_cancel(rs, &in->base, &mesh_payload__timestamp__descriptor,
					       ctx, mc, on_rpc_done, o, NULL);
}

START_TEST(test_cross_rpc_with_cancel)
{
	Child *c = spawn_child("rpc");
	MeshSender *rs;
	MeshReceiver *rr;
	mesh_channel_new(NULL, &rs, &rr);
	MeshMessage *msg = mesh_message_new(NULL, 0);
	mesh_message_add_port_take(msg, mesh_receiver_into_port(rr));
	mesh_sender_send_message(c->to_child, msg);
	GMainContext *mc = g_main_context_new();
	MeshCancelContext *root = mesh_cancel_context_new();

	/* Cancelled by its owner while the server holds the request. */
	MeshCancel *cancel = NULL;
	MeshCancelContext *ctx = mesh_cancel_context_with_cancel(root, &cancel);
	Outcome o1 = {0};
	mesh_rpc_call_unref(call_ts(rs, 2, ctx, mc, &o1));
	mesh_cancel_context_free(ctx); /* the call keeps its own clone */
	ck_assert(!run_until_done(mc, &o1, 200));
	mesh_cancel_cancel(cancel);
	ck_assert(run_until_done(mc, &o1, 20000));
	ck_assert_msg(g_error_matches(o1.error, MESH_ERROR, MESH_ERROR_CANCELLED), "%s",
		      o1.error ? o1.error->message : "a reply");
	mesh_cancel_free(cancel);

	/* Its deadline passes: MESH_ERROR_TIMED_OUT, not before the deadline. */
	gint64 t0 = now_us();
	ctx = mesh_cancel_context_with_timeout(root, 150000);
	Outcome o2 = {0};
	mesh_rpc_call_unref(call_ts(rs, 2, ctx, mc, &o2));
	ck_assert(run_until_done(mc, &o2, 20000));
	ck_assert(g_error_matches(o2.error, MESH_ERROR, MESH_ERROR_TIMED_OUT));
	ck_assert_str_eq(o2.error->message, "deadline exceeded");
	ck_assert_int_ge(now_us() - t0, 150000);
	mesh_cancel_context_free(ctx);

	/* The reply comes first: a later cancel changes nothing. */
	ctx = mesh_cancel_context_with_cancel(root, &cancel);
	Outcome o3 = {0};
	MeshRpcCall *call = call_ts(rs, 1, ctx, mc, &o3);
	ck_assert(run_until_done(mc, &o3, 20000));
	ck_assert_ptr_null(o3.error);
	ck_assert_int_eq(o3.seconds, 1);
	mesh_cancel_cancel(cancel);
	for (int i = 0; i < 5; i++)
		g_main_context_iteration(mc, FALSE);
	ck_assert_int_eq(o3.calls, 1);
	mesh_rpc_call_unref(call);
	mesh_cancel_free(cancel);
	mesh_cancel_context_free(ctx);

	/* Already cancelled: completes at the next iteration, never inside the call. */
	ctx = mesh_cancel_context_with_cancel(root, &cancel);
	mesh_cancel_cancel(cancel);
	Outcome o4 = {0};
	mesh_rpc_call_unref(call_ts(rs, 2, ctx, mc, &o4));
	ck_assert_int_eq(o4.calls, 0);
	ck_assert(run_until_done(mc, &o4, 20000));
	ck_assert(g_error_matches(o4.error, MESH_ERROR, MESH_ERROR_CANCELLED));
	mesh_cancel_free(cancel);
	mesh_cancel_context_free(ctx);

	g_clear_error(&o1.error);
	g_clear_error(&o2.error);
	g_clear_error(&o4.error);
	mesh_sender_free(rs);
	mesh_cancel_context_free(root);
	ck_assert_int_eq(child_finish(c), 0);
	while (g_main_context_iteration(mc, FALSE))
		;
	g_main_context_unref(mc);
}
END_TEST

/* libmeshpayload's well-known types from another process: an Any, and Durations. */
static ProtobufCMessage *recv_typed(MeshReceiver *r, const ProtobufCMessageDescriptor *d,
				   GError **error)
{
	MeshMessage *msg = NULL;
	if (!mesh_receiver_recv_message(r, 20 * G_USEC_PER_SEC, &msg, error))
		return NULL;
	return mesh_message_into_typed(msg, d, error);
}

START_TEST(test_cross_wellknown)
{
	Child *c = spawn_child("wellknown");
	GError *error = NULL;

	/* An Any holding a Timestamp 1.5 s before the epoch. */
	MeshPayload__Any *any =
		(MeshPayload__Any *)recv_typed(c->from_child, &mesh_payload__any__descriptor, &error);
	ck_assert_msg(any, "%s", error ? error->message : "");
	ck_assert_str_eq(any->type_url, "type.googleapis.com/google.protobuf.Timestamp");
	ck_assert(mesh_payload_any_is(any, &mesh_payload__timestamp__descriptor));
	ProtobufCMessage *t = NULL;
	ck_assert_int_eq(mesh_payload_any_unpack(any, &mesh_payload__timestamp__descriptor, NULL,
						 &t, NULL),
			 0);
	int64_t ns = 0;
	ck_assert_int_eq(mesh_payload_timestamp_to_unix_ns((MeshPayload__Timestamp *)t, &ns), 0);
	ck_assert_int_eq(ns, -1500000000);
	mesh_payload_message_free(t);
	mesh_payload_message_free(&any->base);

	/* A negative Duration (the peer's encoder does not check): refused here. */
	ck_assert_ptr_null(recv_typed(c->from_child, &mesh_payload__duration__descriptor, &error));
	ck_assert_msg(error && strstr(error->message, "duration out of range"), "%s",
		      error ? error->message : "decoded");
	g_clear_error(&error);

	/* A valid one. */
	MeshPayload__Duration *d = (MeshPayload__Duration *)recv_typed(
		c->from_child, &mesh_payload__duration__descriptor, &error);
	ck_assert_ptr_nonnull(d);
	uint64_t dns = 0;
	ck_assert_int_eq(mesh_payload_duration_to_ns(d, &dns), 0);
	ck_assert_uint_eq(dns, 1500000000);
	mesh_payload_message_free(&d->base);
	ck_assert_int_eq(child_finish(c), 0);
}
END_TEST

/* The child. */

static void on_cancel_report(MeshCancelContext *ctx, MeshCancelReason reason, gpointer data)
{
	*(MeshCancelReason *)data = reason;
}

static int child_main(int argc, char **argv)
{
	MeshNodeId me, parent;
	MeshPortId my_port, parent_port;
	GError *error = NULL;

	if (argc < 7 || !uuid_from_hex(argv[2], &me) || !uuid_from_hex(argv[3], &parent) ||
	    !uuid_from_hex(argv[4], &my_port) || !uuid_from_hex(argv[5], &parent_port))
		return 64;
	const char *scenario = argv[6];
	MeshNode *node = mesh_node_new_with_id(&me);
	MeshUnixNode *unode = mesh_unix_node_new(node, NULL);
	MeshRemoteNode *h = mesh_node_add_remote(node, &parent);
	MeshPort *port = mesh_node_add_port(node, &my_port, &parent, &parent_port);
	if (!mesh_unix_node_connect_take(unode, &parent, 3, &error))
		return 1;
	mesh_remote_node_unref(h);

	MeshReceiver *boot = mesh_receiver_from_port(port, NULL);
	MeshMessage *msg = NULL;
	if (!mesh_receiver_recv_message(boot, 20 * G_USEC_PER_SEC, &msg, &error))
		return 2;
	MeshReceiver *in = mesh_receiver_from_port(mesh_message_steal_port(msg, 0), NULL);
	MeshSender *out = mesh_sender_from_port(mesh_message_steal_port(msg, 1), NULL);
	mesh_message_free(msg);
	mesh_receiver_free(boot);

	int status = 0;
	MeshCancelReason reason = MESH_CANCEL_REASON_NONE;
	if (strcmp(scenario, "observe-fd") == 0) {
		MeshCancelContext *ctx = recv_ctx(in);
		if (!ctx)
			return 3;
		send_text(out, "got");
		struct pollfd p = {.fd = mesh_cancel_context_get_fd(ctx), .events = POLLIN};
		if (poll(&p, 1, 20000) != 1)
			return 4;
		mesh_cancel_context_is_cancelled(ctx, &reason);
		send_text(out, mesh_cancel_reason_to_string(reason));
		mesh_cancel_context_free(ctx);
	} else if (strcmp(scenario, "observe-callback") == 0) {
		MeshCancelContext *ctx = recv_ctx(in);
		if (!ctx)
			return 3;
		send_text(out, "got");
		GMainContext *mc = g_main_context_new();
		mesh_cancel_context_set_callback(ctx, mc, on_cancel_report, &reason, NULL);
		while (reason == MESH_CANCEL_REASON_NONE)
			g_main_context_iteration(mc, TRUE);
		send_text(out, mesh_cancel_reason_to_string(reason));
		mesh_cancel_context_free(ctx);
		g_main_context_unref(mc);
	} else if (strcmp(scenario, "owner") == 0 || strcmp(scenario, "owner-exits") == 0) {
		MeshCancelContext *root = mesh_cancel_context_new();
		MeshCancel *cancel = NULL;
		send_ctx(out, mesh_cancel_context_with_cancel(root, &cancel));
		char *cmd = recv_text(in, 20 * G_USEC_PER_SEC);
		if (strcmp(cmd, "exit") == 0) {
			/* No cancel, no free, no goodbye: the process just ends. */
			mesh_sender_free(out);
			_exit(0);
		}
		if (strcmp(cmd, "cancel") != 0)
			status = 5;
		g_free(cmd);
		mesh_cancel_cancel(cancel);
		send_text(out, "done");
		mesh_cancel_free(cancel);
		mesh_cancel_context_free(root);
	} else if (strcmp(scenario, "chain") == 0) {
		MeshCancelContext *ctx = recv_ctx(in);
		if (!ctx)
			return 3;
		MeshCancelContext *t = mesh_cancel_context_with_timeout(ctx, 60 * G_USEC_PER_SEC);
		MeshCancel *mine = NULL;
		MeshCancelContext *u = mesh_cancel_context_with_cancel(t, &mine);
		mesh_cancel_context_free(t);
		for (int i = 0; i < 5; i++) {
			t = mesh_cancel_context_clone(u);
			mesh_cancel_context_free(u);
			u = t;
		}
		send_text(out, "chained");
		send_ctx(out, mesh_cancel_context_clone(u));
		if (!mesh_cancel_context_wait(u, 20 * G_USEC_PER_SEC, &reason, NULL))
			return 6;
		send_text(out, mesh_cancel_reason_to_string(reason));
		mesh_cancel_context_free(u);
		mesh_cancel_free(mine);
		mesh_cancel_context_free(ctx);
	} else if (strcmp(scenario, "rpc") == 0) {
		/* Serve Timestamp -> Timestamp: seconds 1 answered, others held until the end. */
		MeshMessage *m = NULL;
		if (!mesh_receiver_recv_message(in, 20 * G_USEC_PER_SEC, &m, NULL))
			return 3;
		MeshReceiver *rr = mesh_receiver_from_port(mesh_message_steal_port(m, 0), NULL);
		mesh_message_free(m);
		GPtrArray *held = g_ptr_array_new_with_free_func((GDestroyNotify)mesh_rpc_free);
		MeshRpc *rpc;
		while (mesh_receiver_recv_rpc(rr, &mesh_payload__timestamp__descriptor,
					      30 * G_USEC_PER_SEC, &rpc, NULL)) {
			MeshPayload__Timestamp *t = (MeshPayload__Timestamp *)mesh_rpc_get_input(rpc);
			if (t->seconds != 1) {
				g_ptr_array_add(held, rpc);
				continue;
			}
			MeshPayload__Timestamp *r = (MeshPayload__Timestamp *)mesh_payload_message_new(
				&mesh_payload__timestamp__descriptor);
			r->seconds = 1;
			mesh_rpc_complete(rpc, &r->base);
		}
		g_ptr_array_free(held, TRUE);
		mesh_receiver_free(rr);
	} else if (strcmp(scenario, "wellknown") == 0) {
		MeshPayload__Timestamp ts;
		mesh_payload_timestamp_from_unix_ns(-1500000000, &ts);
		MeshPayload__Any *any = NULL;
		if (mesh_payload_any_pack(&ts.base, &any, NULL) != 0)
			return 7;
		mesh_sender_send_message(out, mesh_message_new_typed_take(&any->base));
		MeshPayload__Duration *bad = (MeshPayload__Duration *)mesh_payload_message_new(
			&mesh_payload__duration__descriptor);
		bad->seconds = -1;
		mesh_sender_send_message(out, mesh_message_new_typed_take(&bad->base));
		MeshPayload__Duration *good = (MeshPayload__Duration *)mesh_payload_message_new(
			&mesh_payload__duration__descriptor);
		mesh_payload_duration_from_ns(1500000000, good);
		mesh_sender_send_message(out, mesh_message_new_typed_take(&good->base));
		/* Until the parent is done. */
		g_free(recv_text(in, 20 * G_USEC_PER_SEC));
	} else {
		status = 125;
	}
	mesh_sender_free(out);
	mesh_receiver_free(in);
	mesh_unix_node_shutdown(unode, 5 * G_USEC_PER_SEC);
	mesh_unix_node_free(unode);
	mesh_node_unref(node);
	return status;
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "child") == 0)
		return child_main(argc, argv);
	signal(SIGPIPE, SIG_IGN);
	self_exe = g_file_read_link("/proc/self/exe", NULL);

	Suite *s = suite_create("libmeshremote-cancel");
	TCase *tc = tcase_create("upstream");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_no_cancel);
	tcase_add_test(tc, test_basic_cancel);
	tcase_add_test(tc, test_chain_cancel);
	tcase_add_test(tc, test_chain_deadline);
	tcase_add_test(tc, test_cancel_deadline);
	tcase_add_test(tc, test_encode_deadline);
	tcase_add_loop_test(tc, test_deadline_set, 0, 3);
	tcase_add_loop_test(tc, test_wait_forms_see_cancel, 0, 3);
	tcase_add_test(tc, test_drop_cancel_and_children);
	tcase_add_test(tc, test_callback_frees_context);
	tcase_add_test(tc, test_clones_collected_and_cancelled);
	tcase_add_test(tc, test_wire_form);
	suite_add_tcase(s, tc);

	TCase *tp = tcase_create("processes");
	tcase_set_timeout(tp, 120);
	tcase_add_checked_fixture(tp, parent_setup, parent_teardown);
	tcase_add_test(tp, test_cross_cancel_observed);
	tcase_add_test(tp, test_cross_deadline_observed);
	tcase_add_test(tp, test_cross_cancel_by_child);
	tcase_add_test(tp, test_cross_chain);
	tcase_add_test(tp, test_cross_owner_exits);
	tcase_add_test(tp, test_cross_rpc_with_cancel);
	tcase_add_test(tp, test_cross_wellknown);
	suite_add_tcase(s, tp);

	TCase *tx = tcase_create("processes-on-context");
	tcase_set_timeout(tx, 120);
	tcase_add_checked_fixture(tx, parent_setup_on_context, parent_teardown);
	tcase_add_test(tx, test_cross_cancel_by_child);
	tcase_add_test(tx, test_cross_owner_exits);
	suite_add_tcase(s, tx);

	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_ENV);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	g_free(self_exe);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
