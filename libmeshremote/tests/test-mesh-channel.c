/* SPDX-License-Identifier: MIT */
/*
 * The rest of upstream mesh_channel: Cell and Pipe (cell.rs and pipe.rs
 * tests), Receiver::new() / sender(), is_terminated, OneshotSender::
 * is_closed, pending calls and the non-failable Rpc; in process and across
 * real processes joined by Unix nodes: this program is also the child
 * (main() runs the mode named by argv[1]).
 */
#include <check.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include <pal/pal.h>

#include "channels.pb-c.h"
#include "test-channel.pb-c.h"
#include "unix-test.h"

#define WAIT_US (20 * G_USEC_PER_SEC) /* a bound for every blocking wait */

static char *self_exe;

static ProtobufCMessage *text_new(const char *s)
{
	Chantest__Text *m = malloc(sizeof(*m));
	chantest__text__init(m);
	m->text = strdup(s);
	return &m->base;
}

static ProtobufCMessage *sum_new(guint v)
{
	Chantest__Sum *m = malloc(sizeof(*m));
	chantest__sum__init(m);
	m->v = v;
	return &m->base;
}

/* The cell's value as a Sum. */
static guint cell_sum(MeshCell *c)
{
	Chantest__Sum *m = (Chantest__Sum *)mesh_cell_get(c);
	ck_assert_ptr_nonnull(m);
	guint v = m->v;
	mesh_payload_message_free(&m->base);
	return v;
}

static void check_text(MeshCell *c, const char *text)
{
	Chantest__Text *m = (Chantest__Text *)mesh_cell_get(c);
	ck_assert_ptr_nonnull(m);
	ck_assert_str_eq(m->text, text);
	mesh_payload_message_free(&m->base);
}

static void set_sum(MeshCellUpdater *u, guint v)
{
	GError *error = NULL;
	ck_assert_msg(mesh_cell_updater_set(u, sum_new(v), WAIT_US, &error), "set %u: %s", v,
		      error ? error->message : "");
}

/* Encodes a typed message as libmeshpayload does on the wire. */
static GBytes *encode(ProtobufCMessage *m, MeshPayloadResources *res)
{
	uint8_t *data = NULL;
	size_t size = 0;
	ck_assert_int_eq(mesh_payload_encode_alloc(m, &data, &size, res, NULL), 0);
	GBytes *b = g_bytes_new(data, size);
	free(data);
	return b;
}

static void check_bytes(GBytes *b, const char *hex)
{
	GString *s = g_string_new(NULL);
	gsize n;
	const uint8_t *p = g_bytes_get_data(b, &n);
	for (gsize i = 0; i < n; i++)
		g_string_append_printf(s, "%s%02x", i ? " " : "", p[i]);
	ck_assert_str_eq(s->str, hex);
	g_string_free(s, TRUE);
	g_bytes_unref(b);
}

/* Cell, in process. */

/* upstream cell.rs `cell` */
START_TEST(test_cell)
{
	MeshCellUpdater *u;
	MeshCell *c;
	mesh_cell_new(text_new("hey"), &u, &c);
	check_text(c, "hey");
	GError *error = NULL;
	ck_assert(mesh_cell_updater_set(u, text_new("hello"), WAIT_US, &error));
	check_text(c, "hello");
	ck_assert_str_eq(((const Chantest__Text *)mesh_cell_updater_get(u))->text, "hello");
	mesh_cell_free(c);
	mesh_cell_updater_free(u);
}
END_TEST

/* upstream cell.rs `multi_cell` */
START_TEST(test_multi_cell)
{
	MeshCellUpdater *u = mesh_cell_updater_new(sum_new(0));
	MeshCell *c1 = mesh_cell_updater_new_cell(u);
	MeshCell *c2 = mesh_cell_updater_new_cell(u);
	MeshCell *c3 = mesh_cell_updater_new_cell(u);
	MeshCell *c4 = mesh_cell_clone(c3);
	set_sum(u, 5);
	MeshCell *c5 = mesh_cell_updater_new_cell(u);
	MeshCell *c6 = mesh_cell_clone(c4);
	MeshCell *all[] = {c1, c2, c3, c4, c5, c6};
	for (guint i = 0; i < G_N_ELEMENTS(all); i++)
		ck_assert_uint_eq(cell_sum(all[i]), 5);
	set_sum(u, 6);
	ck_assert_uint_eq(mesh_cell_updater_count_cells(u), 6);
	for (guint i = 0; i < G_N_ELEMENTS(all); i++)
		ck_assert_uint_eq(cell_sum(all[i]), 6);
	/* Cells that went away are forgotten; the others still follow. */
	mesh_cell_free(c2);
	mesh_cell_free(c4);
	set_sum(u, 7);
	ck_assert_uint_eq(mesh_cell_updater_count_cells(u), 4);
	ck_assert_uint_eq(cell_sum(c6), 7);
	ck_assert_uint_eq(cell_sum(c1), 7);
	mesh_cell_free(c1);
	mesh_cell_free(c3);
	mesh_cell_free(c5);
	/* The updater gone, a cell keeps its last value. */
	mesh_cell_updater_free(u);
	ck_assert_uint_eq(cell_sum(c6), 7);
	mesh_cell_free(c6);
}
END_TEST

typedef struct {
	MeshCell *cell;
	gint waiting;
	gboolean ok;
} WaitNext;

static gpointer wait_next_thread(gpointer data)
{
	WaitNext *w = data;
	g_atomic_int_set(&w->waiting, 1);
	w->ok = mesh_cell_wait_next(w->cell, WAIT_US, NULL);
	return NULL;
}

/* upstream cell.rs `wait_next`: a waiter on another thread sees each set. */
START_TEST(test_wait_next)
{
	MeshCellUpdater *u = mesh_cell_updater_new(sum_new(0));
	MeshCell *c = mesh_cell_updater_new_cell(u);
	GError *error = NULL;

	ck_assert(!mesh_cell_wait_next(c, 0, &error));
	ck_assert(g_error_matches(error, MESH_ERROR, MESH_ERROR_EMPTY));
	g_clear_error(&error);
	ck_assert(!mesh_cell_wait_next(c, 1000, &error));
	ck_assert(g_error_matches(error, MESH_ERROR, MESH_ERROR_TIMED_OUT));
	g_clear_error(&error);
	for (guint i = 1; i < 100; i++) {
		WaitNext w = {c, 0, FALSE};
		GThread *t = g_thread_new("wait-next", wait_next_thread, &w);
		while (!g_atomic_int_get(&w.waiting))
			g_thread_yield();
		if (i % 2)
			g_usleep(200); /* often already blocked, sometimes not yet */
		/* Upstream drops the set's future: no wait for the acknowledgement. */
		mesh_cell_updater_set(u, sum_new(i), 0, NULL);
		g_thread_join(t);
		ck_assert(w.ok);
		ck_assert_uint_eq(cell_sum(c), i);
	}
	/* Each value observed once. */
	ck_assert(!mesh_cell_wait_next(c, 0, NULL));
	mesh_cell_free(c);
	mesh_cell_updater_free(u);
}
END_TEST

static void on_cell(MeshCell *cell, gpointer data)
{
	guint *seen = data;
	*seen = cell_sum(cell);
}

START_TEST(test_cell_callback_and_fd)
{
	MeshCellUpdater *u = mesh_cell_updater_new(sum_new(1));
	MeshCell *c = mesh_cell_updater_new_cell(u);
	GMainContext *ctx = g_main_context_new();
	guint seen = 0;

	int fd = mesh_cell_get_fd(c);
	ck_assert_int_ge(fd, 0);
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	ck_assert_int_eq(poll(&pfd, 1, 0), 0);
	mesh_cell_set_callback(c, ctx, on_cell, &seen, NULL);
	ck_assert(!g_main_context_iteration(ctx, FALSE));
	set_sum(u, 2);
	set_sum(u, 3);
	ck_assert_int_eq(poll(&pfd, 1, 1000), 1);
	ck_assert(g_main_context_iteration(ctx, FALSE));
	ck_assert_uint_eq(seen, 3);
	/* Observed by the callback: the fd is clear, nothing runs again. */
	ck_assert_int_eq(poll(&pfd, 1, 0), 0);
	ck_assert(!g_main_context_iteration(ctx, FALSE));
	mesh_cell_set_callback(c, NULL, NULL, NULL, NULL);
	set_sum(u, 4);
	ck_assert_int_eq(poll(&pfd, 1, 0), 1);
	ck_assert(mesh_cell_wait_next(c, 0, NULL));
	ck_assert_int_eq(poll(&pfd, 1, 0), 0);
	mesh_cell_free(c);
	mesh_cell_updater_free(u);
	g_main_context_unref(ctx);
}
END_TEST

/* The wire forms (reference 4.4): field for field upstream's. */
START_TEST(test_cell_wire_bytes)
{
	MeshChannels__CellUpdate up = MESH_CHANNELS__CELL_UPDATE__INIT;
	uint8_t value[] = {0x08, 0x05}; /* a struct {1: 5u32} */
	up.value.data = value;
	up.value.len = sizeof(value);
	up.id = 3;
	MeshPayloadResources *res = mesh_payload_resources_new();
	check_bytes(encode(&up.base, res), "0a 02 08 05 10 03");

	MeshChannels__CellResponse r = MESH_CHANNELS__CELL_RESPONSE__INIT;
	MeshChannels__CellUpdated upd = MESH_CHANNELS__CELL_UPDATED__INIT;
	r.response_case = MESH_CHANNELS__CELL_RESPONSE__RESPONSE_UPDATED;
	r.updated = &upd;
	check_bytes(encode(&r.base, res), "0a 00"); /* Updated(0): a variant is always written */
	upd.id = 300;
	check_bytes(encode(&r.base, res), "0a 03 08 ac 02");

	MeshPort *a, *b;
	mesh_port_new_pair(&a, &b);
	MeshChannels__CellNewPort np = MESH_CHANNELS__CELL_NEW_PORT__INIT;
	np.id = 2;
	np.port = mesh_port_into_field(a);
	r.response_case = MESH_CHANNELS__CELL_RESPONSE__RESPONSE_NEW_PORT;
	r.new_port = &np;
	/* NewPort(2, port): field 2, a message holding one resource (wire type 6). */
	check_bytes(encode(&r.base, res), "16 01 03 08 02 17");
	ck_assert_uint_eq(mesh_payload_resources_len(res), 1);
	mesh_payload_resources_free(res);
	mesh_payload_message_free(&np.port->base);
	mesh_port_close(b);

	/* A cell inside a message: {1: id, 2: value, 3: port}. */
	MeshCellUpdater *u = mesh_cell_updater_new(sum_new(5));
	set_sum(u, 5);
	MeshCell *c = mesh_cell_updater_new_cell(u);
	MeshMessage *m = mesh_cell_into_message(c);
	size_t size;
	const uint8_t *data = mesh_message_get_data(m, &size);
	check_bytes(g_bytes_new(data, size), "08 01 12 02 08 05 1f");
	ck_assert_uint_eq(mesh_message_get_n_resources(m), 1);
	GError *error = NULL;
	c = mesh_cell_from_message(m, &chantest__sum__descriptor, &error);
	ck_assert_msg(c, "%s", error ? error->message : "");
	set_sum(u, 6);
	ck_assert_uint_eq(cell_sum(c), 6);
	mesh_cell_free(c);

	/* Not a cell of that type. */
	m = mesh_message_new("\x08\x01\x12\x02\x0a\x05", 6);
	ck_assert_ptr_null(mesh_cell_from_message(m, &chantest__text__descriptor, &error));
	ck_assert(g_error_matches(error, MESH_ERROR, MESH_ERROR_CORRUPTION));
	g_clear_error(&error);
	mesh_cell_updater_free(u);
}
END_TEST

/* A cell moved through the in-memory transport (really encoded) keeps following. */
START_TEST(test_cell_encoding)
{
	MeshCellUpdater *u = mesh_cell_updater_new(sum_new(1));
	MeshCell *c = mesh_cell_updater_new_cell(u);
	for (int i = 0; i < 3; i++) {
		MeshCell *clone = mesh_cell_clone(c);
		mesh_cell_free(c);
		c = mesh_cell_from_message(mesh_cell_into_message(clone), &chantest__sum__descriptor,
					   NULL);
		ck_assert_ptr_nonnull(c);
		set_sum(u, 10 + i);
		ck_assert_uint_eq(cell_sum(c), 10 + i);
		ck_assert(mesh_cell_wait_next(c, 0, NULL));
	}
	ck_assert_uint_eq(mesh_cell_updater_count_cells(u), 1);
	mesh_cell_free(c);
	mesh_cell_updater_free(u);
}
END_TEST

/* Pipe, in process. */

typedef struct {
	MeshWritePipe *w;
	const uint8_t *data;
	gsize size;
	gboolean ok;
} Writer;

static gpointer writer_thread(gpointer data)
{
	Writer *w = data;
	GError *error = NULL;
	w->ok = mesh_write_pipe_write_all(w->w, w->data, w->size, WAIT_US, &error);
	if (error) {
		g_printerr("writer: %s\n", error->message);
		g_error_free(error);
	}
	mesh_write_pipe_free(w->w);
	return NULL;
}

/* Reads to the end; returns the bytes. */
static GByteArray *read_to_end(MeshReadPipe *r)
{
	GByteArray *out = g_byte_array_new();
	uint8_t buf[10000];
	for (;;) {
		GError *error = NULL;
		gssize n = mesh_read_pipe_read(r, buf, sizeof(buf), WAIT_US, &error);
		ck_assert_msg(n >= 0, "read: %s", error ? error->message : "");
		if (n == 0)
			break;
		g_byte_array_append(out, buf, (guint)n);
	}
	return out;
}

/* upstream pipe.rs `test_pipe`: a million bytes through, the writer on another thread. */
START_TEST(test_pipe)
{
	MeshReadPipe *r;
	MeshWritePipe *w;
	mesh_pipe_new(&r, &w);
	gsize n = 1000000;
	uint8_t *v = g_malloc(n);
	for (gsize i = 0; i < n; i++)
		v[i] = (uint8_t)i;
	Writer wr = {w, v, n, FALSE};
	GThread *t = g_thread_new("writer", writer_thread, &wr);
	GByteArray *got = read_to_end(r);
	g_thread_join(t);
	ck_assert(wr.ok);
	ck_assert_uint_eq(got->len, n);
	ck_assert(memcmp(got->data, v, n) == 0);
	g_byte_array_unref(got);
	g_free(v);
	mesh_read_pipe_free(r);
}
END_TEST

/* upstream pipe.rs `test_message_backpressure`: 64 writes, then none until a read. */
START_TEST(test_message_backpressure)
{
	MeshReadPipe *r;
	MeshWritePipe *w;
	GError *error = NULL;
	mesh_pipe_new(&r, &w);
	int n = 0;
	while (mesh_write_pipe_write(w, "", 1, 0, &error) == 1)
		n++;
	ck_assert_int_eq(n, 64);
	ck_assert(g_error_matches(error, MESH_ERROR, MESH_ERROR_EMPTY));
	g_clear_error(&error);
	ck_assert_int_eq(mesh_write_pipe_write(w, "", 1, 1000, &error), -1);
	ck_assert(g_error_matches(error, MESH_ERROR, MESH_ERROR_TIMED_OUT));
	g_clear_error(&error);
	uint8_t b;
	ck_assert_int_eq(mesh_read_pipe_read(r, &b, 1, 0, NULL), 1);
	ck_assert_int_eq(mesh_write_pipe_write(w, "", 1, 0, NULL), 1);
	mesh_write_pipe_free(w);
	mesh_read_pipe_free(r);
}
END_TEST

/* Byte credit: 64 KiB ahead, no more. */
START_TEST(test_byte_backpressure)
{
	MeshReadPipe *r;
	MeshWritePipe *w;
	mesh_pipe_new(&r, &w);
	static uint8_t big[100000];
	ck_assert_int_eq(mesh_write_pipe_write(w, big, sizeof(big), 0, NULL), 65536);
	ck_assert_int_eq(mesh_write_pipe_write(w, big, 1, 0, NULL), -1);
	/* Under half read: no credit back yet. */
	ck_assert_int_eq(mesh_read_pipe_read(r, big, 32767, 0, NULL), 32767);
	ck_assert_int_eq(mesh_write_pipe_write(w, big, 1, 0, NULL), -1);
	ck_assert_int_eq(mesh_read_pipe_read(r, big, 1, 0, NULL), 1);
	ck_assert_int_eq(mesh_write_pipe_write(w, big, sizeof(big), 0, NULL), 32768);
	mesh_write_pipe_free(w);
	mesh_read_pipe_free(r);
}
END_TEST

/* upstream pipe.rs `test_encoding`: both ends still work once moved into messages. */
START_TEST(test_encoding)
{
	MeshReadPipe *r;
	MeshWritePipe *w;
	GError *error = NULL;
	mesh_pipe_new(&r, &w);
	ck_assert(mesh_write_pipe_write_all(w, "hello world", 11, WAIT_US, NULL));
	MeshMessage *rm = mesh_read_pipe_into_message(r);
	MeshMessage *wm = mesh_write_pipe_into_message(w);
	size_t size;
	const uint8_t *data = mesh_message_get_data(rm, &size);
	/* {1: port, 2: 65536, 3: 64} */
	check_bytes(g_bytes_new(data, size), "0f 10 80 80 04 18 40");
	data = mesh_message_get_data(wm, &size);
	check_bytes(g_bytes_new(data, size), "0f");
	r = mesh_read_pipe_from_message(rm, &error);
	ck_assert_ptr_nonnull(r);
	w = mesh_write_pipe_from_message(wm, &error);
	ck_assert_ptr_nonnull(w);
	ck_assert(mesh_write_pipe_write_all(w, "!", 1, WAIT_US, NULL));
	mesh_write_pipe_free(w);
	GByteArray *got = read_to_end(r);
	ck_assert_uint_eq(got->len, 12);
	ck_assert(memcmp(got->data, "hello world!", 12) == 0);
	g_byte_array_unref(got);
	mesh_read_pipe_free(r);
}
END_TEST

/* The writer's credit travels with it: a moved writer is still limited, and not starved. */
START_TEST(test_encoding_credit)
{
	MeshReadPipe *r;
	MeshWritePipe *w;
	mesh_pipe_new(&r, &w);
	for (int i = 0; i < 60; i++)
		ck_assert_int_eq(mesh_write_pipe_write(w, "x", 1, 0, NULL), 1);
	w = mesh_write_pipe_from_message(mesh_write_pipe_into_message(w), NULL);
	int n = 0;
	while (mesh_write_pipe_write(w, "x", 1, 0, NULL) == 1)
		n++;
	ck_assert_int_eq(n, 4);
	/* The reader moves too, with its 64 unread bytes, and reads them all. */
	r = mesh_read_pipe_from_message(mesh_read_pipe_into_message(r), NULL);
	uint8_t buf[100];
	ck_assert_int_eq(mesh_read_pipe_read(r, buf, sizeof(buf), WAIT_US, NULL), 64);
	for (int round = 0; round < 5; round++) {
		/* Moving ends back and forth never loses credit for good. */
		w = mesh_write_pipe_from_message(mesh_write_pipe_into_message(w), NULL);
		r = mesh_read_pipe_from_message(mesh_read_pipe_into_message(r), NULL);
		ck_assert_int_eq(mesh_write_pipe_write(w, "abc", 3, WAIT_US, NULL), 3);
		ck_assert_int_eq(mesh_read_pipe_read(r, buf, sizeof(buf), WAIT_US, NULL), 3);
	}
	mesh_write_pipe_free(w);
	ck_assert_int_eq(mesh_read_pipe_read(r, buf, sizeof(buf), WAIT_US, NULL), 0);
	mesh_read_pipe_free(r);
}
END_TEST

START_TEST(test_pipe_close)
{
	MeshReadPipe *r;
	MeshWritePipe *w;
	GError *error = NULL;
	uint8_t buf[8];

	/* The writer gone: the rest, then 0, and 0 again. */
	mesh_pipe_new(&r, &w);
	ck_assert_int_eq(mesh_write_pipe_write(w, "abc", 3, 0, NULL), 3);
	mesh_write_pipe_free(w);
	ck_assert_int_eq(mesh_read_pipe_read(r, buf, 2, 0, NULL), 2);
	ck_assert_int_eq(mesh_read_pipe_read(r, buf, 8, 0, NULL), 1);
	ck_assert_int_eq(mesh_read_pipe_read(r, buf, 8, 0, NULL), 0);
	ck_assert_int_eq(mesh_read_pipe_read(r, buf, 8, WAIT_US, NULL), 0);
	mesh_read_pipe_free(r);

	/* The reader gone: writes fail (upstream BrokenPipe). */
	mesh_pipe_new(&r, &w);
	mesh_read_pipe_free(r);
	ck_assert_int_eq(mesh_write_pipe_write(w, "abc", 3, WAIT_US, &error), -1);
	ck_assert(g_error_matches(error, MESH_ERROR, MESH_ERROR_CLOSED));
	g_clear_error(&error);
	ck_assert_int_eq(mesh_write_pipe_write(w, NULL, 0, 0, &error), 0);
	mesh_write_pipe_free(w);

	/* A reader waiting for nothing times out; a bad timeout is refused. */
	mesh_pipe_new(&r, &w);
	ck_assert_int_eq(mesh_read_pipe_read(r, buf, 8, 0, &error), -1);
	ck_assert(g_error_matches(error, MESH_ERROR, MESH_ERROR_EMPTY));
	g_clear_error(&error);
	ck_assert_int_eq(mesh_read_pipe_read(r, buf, 8, 1000, &error), -1);
	ck_assert(g_error_matches(error, MESH_ERROR, MESH_ERROR_TIMED_OUT));
	g_clear_error(&error);
	ck_assert_int_eq(mesh_read_pipe_read(r, buf, 8, -2, &error), -1);
	ck_assert(g_error_matches(error, MESH_ERROR, MESH_ERROR_INVALID_ARGUMENT));
	g_clear_error(&error);
	/* An upstream WritePipe encoded without its port is closed. */
	MeshWritePipe *none = mesh_write_pipe_from_message(mesh_message_new(NULL, 0), NULL);
	ck_assert_int_eq(mesh_write_pipe_write(none, "a", 1, 0, &error), -1);
	ck_assert(g_error_matches(error, MESH_ERROR, MESH_ERROR_CLOSED));
	g_clear_error(&error);
	mesh_write_pipe_free(none);
	mesh_write_pipe_free(w);
	mesh_read_pipe_free(r);
}
END_TEST

/* A writer that ignores its credit fails the reader (upstream OverQuota), after the rest. */
START_TEST(test_over_quota)
{
	MeshPort *a, *b;
	GError *error = NULL;
	mesh_port_new_pair(&a, &b);
	MeshChannels__PipeRead *m = g_new(MeshChannels__PipeRead, 1);
	mesh_channels__pipe_read__init(m);
	m->port = mesh_port_into_field(b);
	m->quota_bytes = 16;
	m->quota_messages = 4;
	MeshReadPipe *r = mesh_read_pipe_from_message(mesh_message_new_typed_take(&m->base), NULL);
	ck_assert_ptr_nonnull(r);
	port_send_bytes(a, "0123456789");
	port_send_bytes(a, "0123456789");
	uint8_t buf[32];
	ck_assert_int_eq(mesh_read_pipe_read(r, buf, sizeof(buf), 0, NULL), 10);
	ck_assert_int_eq(mesh_read_pipe_read(r, buf, sizeof(buf), 0, &error), -1);
	ck_assert(g_error_matches(error, MESH_ERROR, MESH_ERROR_CORRUPTION));
	g_clear_error(&error);
	/* The writer's port was failed. */
	ck_assert_int_eq(port_get_state(a), PORT_FAILED);
	mesh_port_close(a);
	mesh_read_pipe_free(r);
}
END_TEST

typedef struct {
	MeshReadPipe *r;
	MeshWritePipe *w;
	GByteArray *got;
	guint writable_calls;
	gboolean eof;
	GMainLoop *loop;
} Pump;

static void on_readable(MeshReadPipe *r, gpointer data)
{
	Pump *p = data;
	uint8_t buf[4096];
	for (;;) {
		GError *error = NULL;
		gssize n = mesh_read_pipe_read(r, buf, sizeof(buf), 0, &error);
		if (n < 0) {
			ck_assert(g_error_matches(error, MESH_ERROR, MESH_ERROR_EMPTY));
			g_error_free(error);
			return;
		}
		if (n == 0) {
			p->eof = TRUE;
			g_main_loop_quit(p->loop);
			mesh_read_pipe_set_callback(r, NULL, NULL, NULL, NULL);
			return;
		}
		g_byte_array_append(p->got, buf, (guint)n);
	}
}

static void on_writable(MeshWritePipe *w, gpointer data)
{
	Pump *p = data;
	static uint8_t chunk[1000];
	p->writable_calls++;
	while (mesh_write_pipe_write(w, chunk, sizeof(chunk), 0, NULL) > 0)
		if (p->writable_calls > 100) {
			mesh_write_pipe_set_callback(w, NULL, NULL, NULL, NULL);
			mesh_write_pipe_free(p->w);
			p->w = NULL;
			return;
		}
}

/* Both ends driven by callbacks on one GMainContext, and the fds. */
START_TEST(test_pipe_callbacks_and_fds)
{
	Pump p = {0};
	mesh_pipe_new(&p.r, &p.w);
	p.got = g_byte_array_new();
	GMainContext *ctx = g_main_context_new();
	p.loop = g_main_loop_new(ctx, FALSE);

	int rfd = mesh_read_pipe_get_fd(p.r), wfd = mesh_write_pipe_get_fd(p.w);
	struct pollfd pfd[2] = {{.fd = rfd, .events = POLLIN}, {.fd = wfd, .events = POLLIN}};
	ck_assert_int_eq(poll(pfd, 2, 0), 1);
	ck_assert(!(pfd[0].revents & POLLIN) && (pfd[1].revents & POLLIN));
	static uint8_t big[65536];
	ck_assert_int_eq(mesh_write_pipe_write(p.w, big, sizeof(big), 0, NULL), 65536);
	ck_assert_int_eq(poll(pfd, 2, 0), 1);
	ck_assert((pfd[0].revents & POLLIN) && !(pfd[1].revents & POLLIN));
	uint8_t buf[65536];
	ck_assert_int_eq(mesh_read_pipe_read(p.r, buf, sizeof(buf), 0, NULL), 65536);
	ck_assert_int_eq(poll(pfd, 2, 0), 1);
	ck_assert(!(pfd[0].revents & POLLIN) && (pfd[1].revents & POLLIN));

	mesh_read_pipe_set_callback(p.r, ctx, on_readable, &p, NULL);
	mesh_write_pipe_set_callback(p.w, ctx, on_writable, &p, NULL);
	g_main_loop_run(p.loop);
	ck_assert(p.eof);
	ck_assert_uint_gt(p.writable_calls, 100);
	ck_assert_uint_ge(p.got->len, 100 * 1000);
	g_byte_array_unref(p.got);
	mesh_read_pipe_free(p.r);
	g_main_loop_unref(p.loop);
	g_main_context_unref(ctx);
}
END_TEST

/* Bytes of a raw message as a hex string (bytes form; typed ones encoded). */
static void expect_raw(TestRecv *r, const char *hex)
{
	MeshMessage *msg = test_recv_wait(r, 10000);
	ck_assert_msg(test_recv_is_message(msg), "no message for %s", hex);
	size_t size;
	const uint8_t *data = mesh_message_get_data(msg, &size);
	check_bytes(g_bytes_new(data, size), hex);
	mesh_message_free(msg);
}

/*
 * A raw port plays upstream's end of each protocol, byte for byte: a
 * WritePipe (raw data messages, then QuotaMessage back), a CellUpdater
 * (UpdateMessage, then Updated back) and the updater's side of a clone.
 */
START_TEST(test_wire_against_raw_ports)
{
	MeshPort *a, *b;
	GError *error = NULL;
	uint8_t buf[40000];

	/* The writer: data is the raw payload; 32768 bytes read give credit back. */
	mesh_port_new_pair(&a, &b);
	TestRecv *ra = test_recv_new(a);
	MeshChannels__PipeRead *m = g_new(MeshChannels__PipeRead, 1);
	mesh_channels__pipe_read__init(m);
	m->port = mesh_port_into_field(b);
	m->quota_bytes = 65536;
	m->quota_messages = 64;
	MeshReadPipe *r = mesh_read_pipe_from_message(mesh_message_new_typed_take(&m->base), NULL);
	port_send_bytes(a, "hello");
	ck_assert_int_eq(mesh_read_pipe_read(r, buf, sizeof(buf), WAIT_US, NULL), 5);
	ck_assert(memcmp(buf, "hello", 5) == 0);
	memset(buf, 'x', sizeof(buf));
	port_send(a, mesh_message_new(buf, 32763), FALSE);
	ck_assert_int_eq(mesh_read_pipe_read(r, buf, sizeof(buf), WAIT_US, NULL), 32763);
	expect_raw(ra, "08 80 80 02 10 02"); /* QuotaMessage{bytes: 32768, messages: 2} */
	mesh_read_pipe_free(r);
	ck_assert(test_recv_is_end(test_recv_wait(ra, 10000), RECV_END_CLOSED));
	test_recv_free(ra);
	mesh_port_close(a);

	/* The reader: a write is one raw message; credit comes as QuotaMessage bytes. */
	mesh_port_new_pair(&a, &b);
	ra = test_recv_new(a);
	MeshChannels__PipeWrite *wm = g_new(MeshChannels__PipeWrite, 1);
	mesh_channels__pipe_write__init(wm);
	wm->port = mesh_port_into_field(b);
	MeshWritePipe *w = mesh_write_pipe_from_message(mesh_message_new_typed_take(&wm->base), NULL);
	ck_assert_int_eq(mesh_write_pipe_write(w, "x", 1, 0, &error), -1); /* no credit yet */
	g_clear_error(&error);
	MeshMessage *q = mesh_message_new("\x08\x03\x10\x01", 4); /* {bytes: 3, messages: 1} */
	port_send(a, q, FALSE);
	ck_assert_int_eq(mesh_write_pipe_write(w, "abcdef", 6, WAIT_US, NULL), 3);
	expect_raw(ra, "61 62 63");
	ck_assert_int_eq(mesh_write_pipe_write(w, "d", 1, 0, &error), -1);
	g_clear_error(&error);
	/* Credit that does not parse fails the writer (upstream: the port fails). */
	port_send_bytes(a, "\xff");
	ck_assert_int_eq(mesh_write_pipe_write(w, "d", 1, WAIT_US, &error), -1);
	ck_assert_msg(g_error_matches(error, MESH_ERROR, MESH_ERROR_CORRUPTION), "%s",
		      error->message);
	g_clear_error(&error);
	mesh_write_pipe_free(w);
	test_recv_free(ra);
	mesh_port_close(a);

	/* The cell: an UpdateMessage {value: Sum{5}, id: 1}, answered Updated(1). */
	mesh_port_new_pair(&a, &b);
	ra = test_recv_new(a);
	MeshChannels__CellEncoded *ce = g_new(MeshChannels__CellEncoded, 1);
	mesh_channels__cell_encoded__init(ce);
	ce->port = mesh_port_into_field(b);
	MeshCell *c = mesh_cell_from_message(mesh_message_new_typed_take(&ce->base),
					     &chantest__sum__descriptor, &error);
	ck_assert_msg(c, "%s", error ? error->message : "");
	ck_assert_uint_eq(cell_sum(c), 0);
	port_send(a, mesh_message_new("\x0a\x02\x08\x05\x10\x01", 6), FALSE);
	ck_assert(mesh_cell_wait_next(c, WAIT_US, NULL));
	ck_assert_uint_eq(cell_sum(c), 5);
	expect_raw(ra, "0a 02 08 01");
	/* An older id changes nothing and is not answered. */
	port_send(a, mesh_message_new("\x0a\x02\x08\x07\x10\x01", 6), FALSE);
	/* A clone: NewPort(1, port) on the updater's side, with one resource. */
	MeshCell *clone = mesh_cell_clone(c);
	MeshMessage *np = test_recv_wait(ra, 10000);
	ck_assert(test_recv_is_message(np));
	size_t size;
	const uint8_t *data = mesh_message_get_data(np, &size);
	check_bytes(g_bytes_new(data, size), "16 01 03 08 01 17");
	MeshPort *clone_port = mesh_message_steal_port(np, 0);
	ck_assert_ptr_nonnull(clone_port);
	mesh_message_free(np);
	ck_assert_uint_eq(cell_sum(c), 5);
	ck_assert(!mesh_cell_wait_next(c, 0, NULL));
	/* The updater's value reaches the clone through its port. */
	TestRecv *rc = test_recv_new(clone_port);
	port_send(clone_port, mesh_message_new("\x0a\x02\x08\x09\x10\x02", 6), FALSE);
	ck_assert(mesh_cell_wait_next(clone, WAIT_US, NULL));
	ck_assert_uint_eq(cell_sum(clone), 9);
	expect_raw(rc, "0a 02 08 02");
	/* A value that is not the cell's type fails the port; the value stays. */
	port_send(a, mesh_message_new("\x0a\x02\x0a\x05\x10\x03", 6), FALSE);
	ck_assert(test_recv_is_end(test_recv_wait(ra, 10000), RECV_END_FAILED));
	ck_assert_uint_eq(cell_sum(c), 5);
	test_recv_free(rc);
	test_recv_free(ra);
	mesh_port_close(clone_port);
	mesh_port_close(a);
	mesh_cell_free(clone);
	mesh_cell_free(c);
}
END_TEST

/* Receivers that mint senders, is_terminated, OneshotSender::is_closed. */

static void expect_code(gboolean ok, GError *error, MeshError code)
{
	ck_assert(!ok);
	ck_assert_msg(g_error_matches(error, MESH_ERROR, code), "expected error %d, got %s", code,
		      error ? error->message : "(none)");
	g_error_free(error);
}

static ProtobufCMessage *recv_typed(MeshReceiver *r, gint64 timeout_us, GError **error)
{
	ProtobufCMessage *m = NULL;
	return mesh_receiver_recv(r, timeout_us, &m, error) ? m : NULL;
}

/* upstream Receiver::new(), sender(), is_terminated */
START_TEST(test_receiver_new)
{
	MeshReceiver *r = mesh_receiver_new(&chantest__text__descriptor);
	GError *error = NULL;

	ck_assert(!mesh_receiver_is_terminated(r));
	ck_assert_ptr_null(recv_typed(r, 0, &error));
	expect_code(FALSE, error, MESH_ERROR_CLOSED);
	error = NULL;
	ck_assert(mesh_receiver_is_terminated(r));

	/* A sender reopens it. */
	MeshSender *s = mesh_receiver_new_sender(r);
	ck_assert(!mesh_receiver_is_terminated(r));
	ck_assert_ptr_null(recv_typed(r, 0, &error));
	expect_code(FALSE, error, MESH_ERROR_EMPTY);
	error = NULL;
	MeshSender *s2 = mesh_sender_clone(s);
	mesh_sender_send(s, text_new("one"));
	mesh_sender_send(s2, text_new("two"));
	mesh_sender_free(s);
	ProtobufCMessage *m = recv_typed(r, WAIT_US, NULL);
	ck_assert_str_eq(((Chantest__Text *)m)->text, "one");
	mesh_payload_message_free(m);
	m = recv_typed(r, WAIT_US, NULL);
	ck_assert_str_eq(((Chantest__Text *)m)->text, "two");
	mesh_payload_message_free(m);
	ck_assert(!mesh_receiver_is_terminated(r));
	mesh_sender_free(s2);
	ck_assert(!mesh_receiver_is_terminated(r)); /* not reported yet */
	ck_assert_ptr_null(recv_typed(r, WAIT_US, &error));
	expect_code(FALSE, error, MESH_ERROR_CLOSED);
	error = NULL;
	ck_assert(mesh_receiver_is_terminated(r));

	/* Reopened after a failure too: the old failure is forgotten. */
	MeshPort *a, *b;
	mesh_port_new_pair(&a, &b);
	mesh_receiver_bridge(r, mesh_sender_from_port(b, &chantest__text__descriptor));
	MeshReceiver *r2 = mesh_receiver_from_port(a, &chantest__text__descriptor);
	s = mesh_receiver_new_sender(r2);
	mesh_sender_send(s, text_new("three"));
	m = recv_typed(r2, WAIT_US, NULL);
	ck_assert_str_eq(((Chantest__Text *)m)->text, "three");
	mesh_payload_message_free(m);
	int fd = mesh_receiver_get_fd(r2);
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	ck_assert_int_eq(poll(&pfd, 1, 0), 0);
	mesh_sender_free(s);
	ck_assert_int_eq(poll(&pfd, 1, 1000), 1);
	ck_assert_ptr_null(recv_typed(r2, WAIT_US, &error));
	expect_code(FALSE, error, MESH_ERROR_CLOSED);
	error = NULL;
	/* The readable fd of an ended receiver clears when a sender reopens it. */
	s = mesh_receiver_new_sender(r2);
	ck_assert_int_eq(poll(&pfd, 1, 0), 0);
	mesh_sender_free(s);
	mesh_receiver_free(r2);
}
END_TEST

START_TEST(test_oneshot_sender_is_closed)
{
	MeshOneshotSender *os;
	MeshOneshotReceiver *orx;
	mesh_oneshot_new(&chantest__text__descriptor, &os, &orx);
	ck_assert(!mesh_oneshot_sender_is_closed(os));
	/* Moved into a port and back: still open. */
	os = mesh_oneshot_sender_from_port(mesh_oneshot_sender_into_port(os),
					   &chantest__text__descriptor);
	ck_assert(!mesh_oneshot_sender_is_closed(os));
	mesh_oneshot_receiver_free(orx);
	ck_assert(mesh_oneshot_sender_is_closed(os));
	mesh_oneshot_send(os, text_new("nobody"));
}
END_TEST

/* Pending calls and the non-failable form. */

typedef struct {
	MeshReceiver *requests;
	guint n;
} Server;

/* Serves @n requests (Add): a == 1 plain reply, 2 failable Ok, 3 failure, 4 dropped. */
static gpointer serve(gpointer data)
{
	Server *sv = data;
	for (guint i = 0; i < sv->n; i++) {
		MeshRpc *rpc = NULL;
		if (!mesh_receiver_recv_rpc(sv->requests, &chantest__add__descriptor, WAIT_US, &rpc,
					    NULL))
			return NULL;
		Chantest__Add *in = (Chantest__Add *)mesh_rpc_get_input(rpc);
		guint sum = in->a + in->b;
		switch (in->a) {
		case 1:
			mesh_rpc_complete_infallible(rpc, sum_new(sum));
			break;
		case 2:
			mesh_rpc_complete(rpc, sum_new(sum));
			break;
		case 3: {
			GError *e = g_error_new(MESH_ERROR, MESH_ERROR_REMOTE, "bad: worse");
			mesh_rpc_fail(rpc, e);
			g_error_free(e);
			break;
		}
		default:
			mesh_rpc_free(rpc);
			break;
		}
	}
	return NULL;
}

static ProtobufCMessage *add_new(guint a, guint b)
{
	Chantest__Add *m = malloc(sizeof(*m));
	chantest__add__init(m);
	m->a = a;
	m->b = b;
	return &m->base;
}

static void expect_wait_error(MeshRpcPending *p, gint64 timeout_us, MeshError code)
{
	ProtobufCMessage *reply = NULL;
	GError *error = NULL;
	gboolean ok = mesh_rpc_pending_wait(p, timeout_us, &reply, &error);
	expect_code(ok, error, code);
}

static void expect_sum(MeshRpcPending *p, guint v)
{
	ProtobufCMessage *reply = NULL;
	GError *error = NULL;
	ck_assert_msg(mesh_rpc_pending_wait(p, WAIT_US, &reply, &error), "%s",
		      error ? error->message : "");
	ck_assert_ptr_eq(reply->descriptor, &chantest__sum__descriptor);
	ck_assert_uint_eq(((Chantest__Sum *)reply)->v, v);
	mesh_payload_message_free(reply);
}

/* Checks the pending calls of the "rpc" server (serve() or the child). */
static void check_pending_calls(MeshSender *s)
{
	GError *error = NULL;
	ProtobufCMessage *reply = NULL;

	MeshRpcPending *plain = mesh_rpc_send_infallible(s, add_new(1, 10), &chantest__sum__descriptor,
							 NULL);
	MeshRpcPending *ok = mesh_rpc_send(s, add_new(2, 20), &chantest__sum__descriptor, NULL);
	MeshRpcPending *bad = mesh_rpc_send(s, add_new(3, 30), &chantest__sum__descriptor, NULL);
	MeshRpcPending *dropped = mesh_rpc_send_infallible(s, add_new(4, 40),
							   &chantest__sum__descriptor, NULL);
	ck_assert(plain && ok && bad && dropped);
	/* Waited for later, in any order. */
	expect_wait_error(bad, WAIT_US, MESH_ERROR_REMOTE);
	expect_sum(ok, 22);
	expect_sum(plain, 11);
	expect_wait_error(dropped, WAIT_US, MESH_ERROR_CLOSED);
	/* The outcome is returned once. */
	expect_wait_error(plain, 0, MESH_ERROR_INVALID_ARGUMENT);
	mesh_rpc_pending_free(plain);
	mesh_rpc_pending_free(ok);
	mesh_rpc_pending_free(bad);
	mesh_rpc_pending_free(dropped);
	/* The blocking non-failable call. */
	ck_assert(mesh_rpc_call_infallible(s, add_new(1, 2), &chantest__sum__descriptor, WAIT_US,
					   &reply, NULL));
	ck_assert_uint_eq(((Chantest__Sum *)reply)->v, 3);
	mesh_payload_message_free(reply);
	/* A failable caller cannot read a plain reply; nor the other way round. */
	ck_assert(!mesh_rpc_call(s, add_new(1, 2), &chantest__sum__descriptor, WAIT_US, &reply,
				 &error));
	ck_assert_msg(g_error_matches(error, MESH_ERROR, MESH_ERROR_CORRUPTION), "%s",
		      error->message);
	g_clear_error(&error);
}

START_TEST(test_rpc_pending_and_infallible)
{
	MeshSender *s;
	Server sv = {NULL, 6};
	mesh_channel_new(NULL, &s, &sv.requests);
	GThread *t = g_thread_new("server", serve, &sv);
	check_pending_calls(s);
	g_thread_join(t);

	/* Not there yet: EMPTY, TIMED_OUT, and the call can still be waited for. */
	MeshRpcPending *p = mesh_rpc_send_infallible(s, add_new(1, 5), &chantest__sum__descriptor,
						     NULL);
	expect_wait_error(p, 0, MESH_ERROR_EMPTY);
	expect_wait_error(p, 1000, MESH_ERROR_TIMED_OUT);
	sv.n = 1;
	serve(&sv);
	expect_sum(p, 6);
	mesh_rpc_pending_free(p);
	/* Freed unanswered: the server's reply goes nowhere. */
	p = mesh_rpc_send(s, add_new(2, 5), &chantest__sum__descriptor, NULL);
	mesh_rpc_pending_free(p);
	serve(&sv);
	mesh_sender_free(s);
	mesh_receiver_free(sv.requests);
}
END_TEST

/* Across real processes: a child joined over a Unix node. */

typedef struct {
	MeshNode *node;
	MeshUnixNode *unode;
	PalChild *process;
	MeshPort *port;
	TestRecv *recv;
} Proc;

static Proc *proc_start_on(const char *mode, GMainContext *context)
{
	Proc *c = g_new0(Proc, 1);
	MeshPort *theirs;
	MeshInvitation *inv = NULL;
	MeshNodeId ln, rn;
	MeshPortId lp, rp;
	char ids[4][33];

	c->node = mesh_node_new();
	c->unode = mesh_unix_node_new(c->node, context);
	mesh_port_new_pair(&c->port, &theirs);
	ck_assert(mesh_unix_node_invite(c->unode, theirs, -1, &inv, NULL));
	mesh_invitation_get_address(inv, &ln, &lp, &rn, &rp);
	uuid_to_hex(&ln, ids[0]);
	uuid_to_hex(&rn, ids[1]);
	uuid_to_hex(&lp, ids[2]);
	uuid_to_hex(&rp, ids[3]);
	PalSpawn *spawn = pal_spawn_new(self_exe);
	const char *args[] = {"child", ids[0], ids[1], ids[2], ids[3], mode, NULL};
	pal_spawn_add_args(spawn, args);
	pal_spawn_dup_fd(spawn, mesh_invitation_get_fd(inv), 3);
	pal_spawn_set_parent_death_signal(spawn, SIGKILL);
	ck_assert_int_eq(pal_spawn_run(spawn, &c->process), 0);
	pal_spawn_free(spawn);
	mesh_invitation_free(inv);
	return c;
}

/* The parent's transport on its own thread. */
static Proc *proc_start(const char *mode)
{
	return proc_start_on(mode, NULL);
}

/* Waits for the child (bounded); returns its wait status. The parent's node goes on. */
static int proc_wait(Proc *c)
{
	int status = -1;
	for (int i = 0; i < 4000 && pal_child_try_wait(c->process, &status) != 0; i++)
		g_usleep(5000);
	if (pal_child_try_wait(c->process, &status) != 0) {
		pal_child_kill(c->process, SIGKILL);
		pal_child_wait(c->process, &status);
		ck_abort_msg("child did not exit");
	}
	return status;
}

/* Shuts the parent's node down (its ports fail) and frees everything. */
static void proc_free(Proc *c)
{
	test_recv_free(c->recv);
	mesh_port_close(c->port);
	mesh_unix_node_shutdown(c->unode, 5 * G_USEC_PER_SEC);
	mesh_unix_node_free(c->unode);
	mesh_node_unref(c->node);
	pal_child_free(c->process);
	g_free(c);
}

/* proc_wait() then proc_free(). */
static int proc_finish(Proc *c)
{
	int status = proc_wait(c);
	proc_free(c);
	return status;
}

static MeshMessage *expect_message(TestRecv *r)
{
	MeshMessage *msg = test_recv_wait(r, 20000);
	ck_assert_msg(test_recv_is_message(msg), "no message (%p)", msg);
	return msg;
}

static void expect_line(TestRecv *r, const char *text)
{
	MeshMessage *msg = test_recv_wait(r, 20000);
	ck_assert_msg(test_recv_is_message(msg), "no message (%p) for \"%s\"", msg, text);
	size_t n;
	const uint8_t *data = mesh_message_get_data(msg, &n);
	char *got = g_strndup((const char *)data, n);
	ck_assert_str_eq(got, text);
	g_free(got);
	mesh_message_free(msg);
}

/*
 * cell: the child gets a cell, sends back a clone (made there), then says
 * each value it sees ("v=N") until it sees 0.
 */
START_TEST(test_cell_across_processes)
{
	Proc *c = proc_start("cell");
	c->recv = test_recv_new(c->port);
	MeshCellUpdater *u = mesh_cell_updater_new(sum_new(7));
	MeshCell *local = mesh_cell_updater_new_cell(u);
	port_send(c->port, mesh_cell_into_message(mesh_cell_updater_new_cell(u)), FALSE);
	expect_line(c->recv, "v=7");
	/* The clone the child made follows the updater here. */
	MeshCell *back = mesh_cell_from_message(expect_message(c->recv), &chantest__sum__descriptor,
						NULL);
	ck_assert_ptr_nonnull(back);
	ck_assert_uint_eq(cell_sum(back), 7);
	for (guint v = 1; v <= 20; v++) {
		set_sum(u, v * 100);
		/* set returned: every cell has it, in the child too. */
		ck_assert_uint_eq(cell_sum(back), v * 100);
		ck_assert_uint_eq(cell_sum(local), v * 100);
		char line[32];
		g_snprintf(line, sizeof(line), "v=%u", v * 100);
		expect_line(c->recv, line);
	}
	ck_assert_uint_eq(mesh_cell_updater_count_cells(u), 4); /* local, child's, its clone, back */
	set_sum(u, 0);
	ck_assert_int_eq(proc_wait(c), 0);
	/*
	 * The child's cells went with it: a set does not wait for them, and
	 * forgets them. The clone it sent here follows on without it.
	 */
	set_sum(u, 1);
	ck_assert_uint_eq(cell_sum(local), 1);
	ck_assert_uint_eq(cell_sum(back), 1);
	ck_assert_uint_eq(mesh_cell_updater_count_cells(u), 2);
	proc_free(c);
	mesh_cell_free(back);
	mesh_cell_free(local);
	mesh_cell_updater_free(u);
}
END_TEST

static int child_fail(int status, int line)
{
	fprintf(stderr, "child: failed at line %d\n", line);
	return status;
}

/* cell_sum() without Check (in the child): G_MAXUINT if there is no value. */
static guint child_sum(MeshCell *c)
{
	Chantest__Sum *m = (Chantest__Sum *)mesh_cell_get(c);
	if (!m) {
		fprintf(stderr, "child: the cell has no value\n");
		return G_MAXUINT;
	}
	guint v = m->v;
	mesh_payload_message_free(&m->base);
	return v;
}

static int child_cell(TestRecv *r, MeshPort *port)
{
	MeshMessage *msg = test_recv_wait(r, 20000);
	if (!test_recv_is_message(msg))
		return child_fail(2, __LINE__);
	MeshCell *c = mesh_cell_from_message(msg, &chantest__sum__descriptor, NULL);
	if (!c)
		return child_fail(3, __LINE__);
	MeshCell *clone = mesh_cell_clone(c);
	guint v = child_sum(c);
	char line[32];
	g_snprintf(line, sizeof(line), "v=%u", v);
	port_send_bytes(port, line);
	port_send(port, mesh_cell_into_message(mesh_cell_clone(clone)), FALSE);
	while (v != 0) {
		if (!mesh_cell_wait_next(c, WAIT_US, NULL))
			return child_fail(4, __LINE__);
		v = child_sum(c);
		/* The clone follows as well (its update may come a little later). */
		if (!mesh_cell_wait_next(clone, WAIT_US, NULL) || child_sum(clone) != v)
			return child_fail(5, __LINE__);
		g_snprintf(line, sizeof(line), "v=%u", v);
		if (v)
			port_send_bytes(port, line);
	}
	mesh_cell_free(clone);
	mesh_cell_free(c);
	return 0;
}

/*
 * pipe: the parent sends a reader, writes 1 MiB in a known pattern; the
 * child reads to the end and answers "n=N sum=S". Then the child sends a
 * reader of its own and writes the same back.
 */
START_TEST(test_pipe_across_processes)
{
	Proc *c = proc_start("pipe");
	c->recv = test_recv_new(c->port);
	MeshReadPipe *r;
	MeshWritePipe *w;
	mesh_pipe_new(&r, &w);
	port_send(c->port, mesh_read_pipe_into_message(r), FALSE);
	gsize n = 1 << 20;
	uint8_t *v = g_malloc(n);
	guint64 sum = 0;
	for (gsize i = 0; i < n; i++) {
		v[i] = (uint8_t)(i * 7 + (i >> 9));
		sum += v[i];
	}
	GError *error = NULL;
	ck_assert_msg(mesh_write_pipe_write_all(w, v, n, WAIT_US, &error), "%s",
		      error ? error->message : "");
	mesh_write_pipe_free(w);
	char line[64];
	g_snprintf(line, sizeof(line), "n=%zu sum=%" G_GUINT64_FORMAT, n, sum);
	expect_line(c->recv, line);

	/* The other way: the child's writer, held back by our credit. */
	r = mesh_read_pipe_from_message(expect_message(c->recv), &error);
	ck_assert_ptr_nonnull(r);
	GByteArray *got = read_to_end(r);
	ck_assert_uint_eq(got->len, n);
	ck_assert(memcmp(got->data, v, n) == 0);
	g_byte_array_unref(got);
	mesh_read_pipe_free(r);
	expect_line(c->recv, "max-ahead-ok");
	g_free(v);
	ck_assert_int_eq(proc_finish(c), 0);
}
END_TEST

static int child_pipe(TestRecv *rq, MeshPort *port)
{
	MeshMessage *msg = test_recv_wait(rq, 20000);
	if (!test_recv_is_message(msg))
		return 2;
	MeshReadPipe *r = mesh_read_pipe_from_message(msg, NULL);
	if (!r)
		return 3;
	gsize n = 0;
	guint64 sum = 0;
	uint8_t buf[7000];
	GByteArray *all = g_byte_array_new();
	for (;;) {
		gssize k = mesh_read_pipe_read(r, buf, sizeof(buf), WAIT_US, NULL);
		if (k < 0)
			return 4;
		if (k == 0)
			break;
		for (gssize i = 0; i < k; i++)
			sum += buf[i];
		n += (gsize)k;
		g_byte_array_append(all, buf, (guint)k);
	}
	mesh_read_pipe_free(r);
	char line[64];
	g_snprintf(line, sizeof(line), "n=%zu sum=%" G_GUINT64_FORMAT, n, sum);
	port_send_bytes(port, line);

	MeshWritePipe *w;
	mesh_pipe_new(&r, &w);
	/*
	 * Nobody can read yet (the reader is still here): at most the quota
	 * goes out without waiting. Checked before the reader leaves: once
	 * the parent has it, its credit may come back between any two writes.
	 */
	gssize first = mesh_write_pipe_write(w, all->data, all->len, 0, NULL);
	gssize second = mesh_write_pipe_write(w, all->data + first, all->len - first, 0, NULL);
	gboolean held = first == MESH_PIPE_QUOTA_BYTES && second < 0;
	if (first <= 0)
		return 5;
	gsize off = (gsize)first;
	/* The reader moves with the quota's bytes in it, while this writes on. */
	port_send(port, mesh_read_pipe_into_message(r), FALSE);
	/*
	 * Wait for the parent's first credit: a write then sends part of the
	 * rest, and the stream goes on from where it stopped (not from
	 * @first again: that sent the credit's bytes twice).
	 */
	gssize third = mesh_write_pipe_write(w, all->data + off, all->len - off, WAIT_US, NULL);
	if (third <= 0)
		return 5;
	off += (gsize)third;
	if (!mesh_write_pipe_write_all(w, all->data + off, all->len - off, WAIT_US, NULL))
		return 5;
	mesh_write_pipe_free(w);
	g_byte_array_unref(all);
	port_send_bytes(port, held ? "max-ahead-ok" : "max-ahead-bad");
	return 0;
}

/*
 * pipefail: the child takes a writer and a reader, writes "partial", then
 * dies: the parent reads "partial", then MESH_ERROR_NODE_FAILURE; its
 * writer fails too.
 */
START_TEST(test_pipe_node_failure)
{
	Proc *c = proc_start("pipefail");
	c->recv = test_recv_new(c->port);
	MeshReadPipe *r, *r2;
	MeshWritePipe *w, *w2;
	mesh_pipe_new(&r, &w);
	mesh_pipe_new(&r2, &w2);
	port_send(c->port, mesh_write_pipe_into_message(w), FALSE);
	port_send(c->port, mesh_read_pipe_into_message(r2), FALSE);
	uint8_t buf[16];
	ck_assert_int_eq(mesh_read_pipe_read(r, buf, sizeof(buf), WAIT_US, NULL), 7);
	ck_assert(memcmp(buf, "partial", 7) == 0);
	GError *error = NULL;
	ck_assert_int_eq(mesh_read_pipe_read(r, buf, sizeof(buf), WAIT_US, &error), -1);
	ck_assert_msg(g_error_matches(error, MESH_ERROR, MESH_ERROR_NODE_FAILURE), "%s",
		      error ? error->message : "");
	g_clear_error(&error);
	gssize k;
	while ((k = mesh_write_pipe_write(w2, "x", 1, WAIT_US, &error)) == 1)
		;
	ck_assert_msg(g_error_matches(error, MESH_ERROR, MESH_ERROR_NODE_FAILURE) ||
			      g_error_matches(error, MESH_ERROR, MESH_ERROR_CLOSED),
		      "%s", error ? error->message : "");
	g_clear_error(&error);
	mesh_read_pipe_free(r);
	mesh_write_pipe_free(w2);
	int status = proc_finish(c);
	ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
}
END_TEST

static int child_pipefail(TestRecv *rq)
{
	MeshMessage *msg = test_recv_wait(rq, 20000);
	if (!test_recv_is_message(msg))
		return 2;
	MeshWritePipe *w = mesh_write_pipe_from_message(msg, NULL);
	msg = test_recv_wait(rq, 20000);
	if (!w || !test_recv_is_message(msg))
		return 3;
	MeshReadPipe *r = mesh_read_pipe_from_message(msg, NULL);
	if (!r || !mesh_write_pipe_write_all(w, "partial", 7, WAIT_US, NULL))
		return 4;
	g_usleep(100000); /* the bytes leave before the process dies */
	raise(SIGKILL);
	return 5;
}

static int child_pairback(MeshPort *port)
{
	MeshPort *a, *b;
	mesh_port_new_pair(&a, &b);
	MeshMessage *m = mesh_message_new("a", 1);
	mesh_message_add_port_take(m, a);
	port_send(port, m, FALSE);
	port_send_bytes(b, "early");
	m = mesh_message_new("b", 1);
	mesh_message_add_port_take(m, b);
	port_send(port, m, FALSE);
	return 0;
}

/*
 * A port pair whose two ends both came from the child: once here, the pair
 * works without the child (it was made there, its ends passed through it).
 */
START_TEST(test_pair_moved_back)
{
	Proc *c = proc_start("pairback");
	c->recv = test_recv_new(c->port);
	MeshMessage *m = expect_message(c->recv);
	MeshPort *a = mesh_message_steal_port(m, 0);
	mesh_message_free(m);
	m = expect_message(c->recv);
	MeshPort *b = mesh_message_steal_port(m, 0);
	mesh_message_free(m);
	TestRecv *ra = test_recv_new(a);
	TestRecv *rb = test_recv_new(b);
	expect_line(ra, "early");
	port_send_bytes(a, "late");
	expect_line(rb, "late");
	port_send_bytes(b, "later");
	expect_line(ra, "later");
	ck_assert_int_eq(proc_wait(c), 0);
	port_send_bytes(b, "after");
	expect_line(ra, "after");
	test_recv_free(ra);
	test_recv_free(rb);
	mesh_port_close(a);
	mesh_port_close(b);
	proc_free(c);
}
END_TEST

/*
 * rpc: the child makes a receiver without senders, mints one and sends it
 * here, then serves the calls of check_pending_calls(). It then gets a
 * oneshot sender and reports when it sees it closed, and reports its
 * receiver terminated once our sender is gone.
 */
START_TEST(test_rpc_across_processes)
{
	Proc *c = proc_start("rpc");
	c->recv = test_recv_new(c->port);
	MeshMessage *m = expect_message(c->recv);
	MeshSender *s = mesh_sender_from_port(mesh_message_steal_port(m, 0), NULL);
	mesh_message_free(m);
	check_pending_calls(s);

	MeshOneshotSender *os;
	MeshOneshotReceiver *orx;
	mesh_oneshot_new(&chantest__text__descriptor, &os, &orx);
	m = mesh_message_new("os", 2);
	mesh_message_add_port_take(m, mesh_oneshot_sender_into_port(os));
	port_send(c->port, m, FALSE);
	expect_line(c->recv, "open");
	mesh_oneshot_receiver_free(orx);
	expect_line(c->recv, "closed");
	mesh_sender_free(s);
	expect_line(c->recv, "terminated");
	ck_assert_int_eq(proc_finish(c), 0);
}
END_TEST

static int child_rpc(TestRecv *rq, MeshPort *port)
{
	Server sv = {mesh_receiver_new(NULL), 6};
	GError *error = NULL;
	MeshMessage *m;

	if (mesh_receiver_recv_message(sv.requests, 0, &m, &error) ||
	    !g_error_matches(error, MESH_ERROR, MESH_ERROR_CLOSED) ||
	    !mesh_receiver_is_terminated(sv.requests))
		return child_fail(2, __LINE__);
	g_clear_error(&error);
	m = mesh_message_new("s", 1);
	mesh_message_add_port_take(m, mesh_sender_into_port(mesh_receiver_new_sender(sv.requests)));
	port_send(port, m, FALSE);
	serve(&sv);
	if (mesh_receiver_is_terminated(sv.requests))
		return child_fail(3, __LINE__);

	m = test_recv_wait(rq, 20000);
	if (!test_recv_is_message(m))
		return child_fail(4, __LINE__);
	MeshOneshotSender *os = mesh_oneshot_sender_from_port(mesh_message_steal_port(m, 0),
							      &chantest__text__descriptor);
	mesh_message_free(m);
	port_send_bytes(port, mesh_oneshot_sender_is_closed(os) ? "closed" : "open");
	for (int i = 0; i < 2000 && !mesh_oneshot_sender_is_closed(os); i++)
		g_usleep(5000);
	port_send_bytes(port, mesh_oneshot_sender_is_closed(os) ? "closed" : "open");
	mesh_oneshot_sender_free(os);

	if (mesh_receiver_recv_message(sv.requests, WAIT_US, &m, &error)) {
		mesh_message_free(m);
		return child_fail(5, __LINE__);
	}
	gboolean closed = g_error_matches(error, MESH_ERROR, MESH_ERROR_CLOSED);
	g_clear_error(&error);
	port_send_bytes(port, closed && mesh_receiver_is_terminated(sv.requests) ? "terminated"
										: "not-terminated");
	mesh_receiver_free(sv.requests);
	return 0;
}

/*
 * feed: the parent's transport runs on a GMainContext of this thread that
 * nobody else runs. The child writes through a pipe and sets a cell; the
 * parent's blocking reads and waits run the context themselves.
 */
START_TEST(test_blocking_on_caller_context)
{
	GMainContext *ctx = g_main_context_new();
	g_main_context_push_thread_default(ctx);
	Proc *c = proc_start_on("feed", ctx);
	c->recv = test_recv_new(c->port);
	MeshReadPipe *r;
	MeshWritePipe *w;
	GError *error = NULL;
	mesh_pipe_new(&r, &w);
	port_send(c->port, mesh_write_pipe_into_message(w), FALSE);
	/* The raw port's handler queues without the context: wait by running it. */
	MeshMessage *m = NULL;
	for (int i = 0; i < 2000 && !(m = g_async_queue_try_pop(c->recv->queue)); i++)
		g_main_context_iteration(ctx, FALSE), g_usleep(1000);
	ck_assert(test_recv_is_message(m));
	MeshCell *cell = mesh_cell_from_message(m, &chantest__sum__descriptor, &error);
	ck_assert_msg(cell, "%s", error ? error->message : "");
	GByteArray *got = read_to_end(r);
	ck_assert_uint_eq(got->len, 5 * 65536);
	for (guint i = 0; i < got->len; i++)
		ck_assert_uint_eq(got->data[i], (uint8_t)(i / 65536 + 1));
	g_byte_array_unref(got);
	while (cell_sum(cell) != 5)
		ck_assert(mesh_cell_wait_next(cell, WAIT_US, NULL));
	mesh_cell_free(cell);
	mesh_read_pipe_free(r);
	/* The child exits once its last set was acknowledged: run the context meanwhile. */
	int status = -1;
	for (int i = 0; i < 4000 && pal_child_try_wait(c->process, &status) != 0; i++)
		g_main_context_iteration(ctx, FALSE), g_usleep(1000);
	ck_assert_int_eq(proc_wait(c), 0);
	proc_free(c);
	g_main_context_pop_thread_default(ctx);
	g_main_context_unref(ctx);
}
END_TEST

static int child_feed(TestRecv *rq, MeshPort *port)
{
	MeshMessage *msg = test_recv_wait(rq, 20000);
	if (!test_recv_is_message(msg))
		return child_fail(2, __LINE__);
	MeshWritePipe *w = mesh_write_pipe_from_message(msg, NULL);
	MeshCellUpdater *u = mesh_cell_updater_new(sum_new(0));
	port_send(port, mesh_cell_into_message(mesh_cell_updater_new_cell(u)), FALSE);
	static uint8_t chunk[65536];
	for (guint i = 1; i <= 5; i++) {
		memset(chunk, (int)i, sizeof(chunk));
		if (!w || !mesh_write_pipe_write_all(w, chunk, sizeof(chunk), WAIT_US, NULL))
			return child_fail(3, __LINE__);
		if (!mesh_cell_updater_set(u, sum_new(i), WAIT_US, NULL))
			return child_fail(4, __LINE__);
	}
	mesh_write_pipe_free(w);
	mesh_cell_updater_free(u);
	return 0;
}

static int child_main(char **argv)
{
	MeshNodeId me, parent;
	MeshPortId my_port, parent_port;
	GError *error = NULL;
	MeshPort *port = NULL;

	if (!argv[5] || !uuid_from_hex(argv[1], &me) || !uuid_from_hex(argv[2], &parent) ||
	    !uuid_from_hex(argv[3], &my_port) || !uuid_from_hex(argv[4], &parent_port))
		return 64;
	MeshInvitation *inv = mesh_invitation_new_take(&me, &my_port, &parent, &parent_port, 3);
	MeshUnixNode *unode = mesh_unix_node_join(inv, NULL, WAIT_US, &port, &error);
	if (!unode) {
		fprintf(stderr, "child: %s\n", error->message);
		return 1;
	}
	TestRecv *r = test_recv_new(port);
	int status = 64;
	if (strcmp(argv[5], "cell") == 0)
		status = child_cell(r, port);
	else if (strcmp(argv[5], "pipe") == 0)
		status = child_pipe(r, port);
	else if (strcmp(argv[5], "feed") == 0)
		status = child_feed(r, port);
	else if (strcmp(argv[5], "rpc") == 0)
		status = child_rpc(r, port);
	else if (strcmp(argv[5], "pairback") == 0)
		status = child_pairback(port);
	else if (strcmp(argv[5], "pipefail") == 0)
		status = child_pipefail(r);
	test_recv_free(r);
	mesh_port_close(port);
	if (!mesh_unix_node_shutdown(unode, 10 * G_USEC_PER_SEC))
		fprintf(stderr, "child: shutdown was not clean\n");
	mesh_unix_node_free(unode);
	return status;
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "child") == 0)
		return child_main(argv + 1);
	self_exe = g_file_read_link("/proc/self/exe", NULL);

	Suite *s = suite_create("libmeshremote-mesh-channel");
	TCase *cell = tcase_create("cell");
	tcase_set_timeout(cell, 60);
	tcase_add_test(cell, test_cell);
	tcase_add_test(cell, test_multi_cell);
	tcase_add_test(cell, test_wait_next);
	tcase_add_test(cell, test_cell_callback_and_fd);
	tcase_add_test(cell, test_cell_wire_bytes);
	tcase_add_test(cell, test_cell_encoding);
	suite_add_tcase(s, cell);

	TCase *pipe = tcase_create("pipe");
	tcase_set_timeout(pipe, 60);
	tcase_add_test(pipe, test_pipe);
	tcase_add_test(pipe, test_message_backpressure);
	tcase_add_test(pipe, test_byte_backpressure);
	tcase_add_test(pipe, test_encoding);
	tcase_add_test(pipe, test_encoding_credit);
	tcase_add_test(pipe, test_pipe_close);
	tcase_add_test(pipe, test_over_quota);
	tcase_add_test(pipe, test_pipe_callbacks_and_fds);
	tcase_add_test(pipe, test_wire_against_raw_ports);
	suite_add_tcase(s, pipe);

	TCase *more = tcase_create("receiver-rpc");
	tcase_set_timeout(more, 60);
	tcase_add_test(more, test_receiver_new);
	tcase_add_test(more, test_oneshot_sender_is_closed);
	tcase_add_test(more, test_rpc_pending_and_infallible);
	suite_add_tcase(s, more);

	TCase *procs = tcase_create("processes");
	tcase_set_timeout(procs, 120);
	tcase_add_test(procs, test_pair_moved_back);
	tcase_add_test(procs, test_cell_across_processes);
	tcase_add_test(procs, test_pipe_across_processes);
	tcase_add_test(procs, test_pipe_node_failure);
	tcase_add_test(procs, test_rpc_across_processes);
	tcase_add_test(procs, test_blocking_on_caller_context);
	suite_add_tcase(s, procs);

	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	g_free(self_exe);
	return failed ? 1 : 0;
}
