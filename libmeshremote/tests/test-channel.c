/* SPDX-License-Identifier: MIT */
/*
 * Channels: mpsc, oneshot and rpc (upstream catalogs 7.4 and 7.5), in
 * process and across nodes joined by the in-memory transport, plus the
 * channel payload bytes on the wire (reference 3.9), threads and callbacks.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#ifdef _WIN32
#include <fcntl.h>
#include <io.h>
#else
#include <poll.h>
#endif

#include "test-channel.pb-c.h"
#include "test-net.h"

#ifdef G_OS_WIN32
/* Windows (under Wine): fds are C runtime descriptors, not inherited. */
#define pipe2(fds, flags) _pipe(fds, 4096, _O_BINARY | _O_NOINHERIT)
#define dup_cloexec(fd) _dup(fd)
#define DEV_NULL "NUL"
#define O_CLOEXEC _O_NOINHERIT
#define alarm(seconds) ((void)0) /* no SIGALRM: the test's timeout bounds a hang */
#else
#define DEV_NULL "/dev/null"
#define dup_cloexec(fd) fcntl(fd, F_DUPFD_CLOEXEC, 3)
#endif

#define WAIT_US (10 * G_USEC_PER_SEC) /* a bound for every blocking wait */

/* Helpers. */

static Chantest__Text *text_new(const char *s, guint seq, guint sender)
{
	Chantest__Text *m = malloc(sizeof(*m));
	chantest__text__init(m);
	m->text = strdup(s);
	m->seq = seq;
	m->sender = sender;
	return m;
}

static void send_text(MeshSender *s, const char *text)
{
	mesh_sender_send(s, &text_new(text, 0, 0)->base);
}

static void expect_text(MeshReceiver *r, const char *text)
{
	ProtobufCMessage *m = NULL;
	GError *error = NULL;
	gboolean ok = mesh_receiver_recv(r, WAIT_US, &m, &error);
	ck_assert_msg(ok, "expected \"%s\": %s", text, error ? error->message : "");
	ck_assert_ptr_eq(m->descriptor, &chantest__text__descriptor);
	ck_assert_str_eq(((Chantest__Text *)m)->text, text);
	mesh_payload_message_free(m);
}

static void expect_error(MeshReceiver *r, gint64 timeout_us, MeshError code)
{
	MeshMessage *m = NULL;
	GError *error = NULL;
	ck_assert(!mesh_receiver_recv_message(r, timeout_us, &m, &error));
	ck_assert_msg(g_error_matches(error, MESH_ERROR, code), "expected error %d, got %s", code,
		      error ? error->message : "(none)");
	g_error_free(error);
}

static Chantest__Add *add_new(guint a, guint b)
{
	Chantest__Add *m = malloc(sizeof(*m));
	chantest__add__init(m);
	m->a = a;
	m->b = b;
	return m;
}

static Chantest__Sum *sum_new(guint v)
{
	Chantest__Sum *m = malloc(sizeof(*m));
	chantest__sum__init(m);
	m->v = v;
	return m;
}

static Chantest__WithPort *with_port_new(const char *name, MeshPort *port)
{
	Chantest__WithPort *m = malloc(sizeof(*m));
	chantest__with_port__init(m);
	m->name = strdup(name);
	m->port = mesh_payload_port_new_take(mesh_port_as_object(port));
	return m;
}

static MeshPort *with_port_steal(ProtobufCMessage *m)
{
	ck_assert_ptr_eq(m->descriptor, &chantest__with_port__descriptor);
	MeshPort *port = mesh_port_from_object(mesh_payload_port_steal(((Chantest__WithPort *)m)->port));
	ck_assert_ptr_nonnull(port);
	mesh_payload_message_free(m);
	return port;
}

#ifdef G_OS_WIN32
static bool fd_is_open(int fd)
{
	return _get_osfhandle(fd) != (intptr_t)INVALID_HANDLE_VALUE;
}

/* Windows: a receiver's pollable object is an event HANDLE, signalled when ready. */
static bool fd_readable(MeshOsHandle h)
{
	return WaitForSingleObject(h, 0) == WAIT_OBJECT_0;
}

/* Whether fds @a and @b are the same pipe end (CompareObjectHandles: Windows 10's kernelbase). */
static bool same_file(int a, int b)
{
	BOOL(WINAPI * compare)(HANDLE, HANDLE) = (BOOL(WINAPI *)(HANDLE, HANDLE))(void *)GetProcAddress(
		GetModuleHandleW(L"kernelbase.dll"), "CompareObjectHandles");
	ck_assert_msg(compare != NULL, "no CompareObjectHandles");
	return compare((HANDLE)_get_osfhandle(a), (HANDLE)_get_osfhandle(b));
}
#else
static bool fd_is_open(int fd)
{
	return fcntl(fd, F_GETFD) >= 0;
}

static bool fd_readable(int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

static bool same_file(int a, int b)
{
	struct stat sa, sb;
	ck_assert_int_eq(fstat(a, &sa), 0);
	ck_assert_int_eq(fstat(b, &sb), 0);
	return sa.st_ino == sb.st_ino && sa.st_dev == sb.st_dev;
}
#endif

static void assert_bytes(const uint8_t *data, size_t size, const char *hex)
{
	char *got = g_malloc(size * 3 + 1);
	got[0] = '\0';
	for (size_t i = 0; i < size; i++)
		sprintf(got + strlen(got), i ? " %02x" : "%02x", data[i]);
	ck_assert_str_eq(got, hex);
	g_free(got);
}

/* mpsc in process. */

START_TEST(test_basic)
{
	MeshSender *s;
	MeshReceiver *r;

	mesh_channel_new(&chantest__text__descriptor, &s, &r);
	ck_assert(!mesh_sender_is_closed(s));
	send_text(s, "test");
	expect_text(r, "test");
	expect_error(r, 0, MESH_ERROR_EMPTY);
	mesh_sender_free(s);
	expect_error(r, 0, MESH_ERROR_CLOSED);
	expect_error(r, -1, MESH_ERROR_CLOSED); /* does not block */
	mesh_receiver_free(r);
	mesh_sender_free(NULL);
	mesh_receiver_free(NULL);
}
END_TEST

START_TEST(test_in_process_no_encoding)
{
	MeshSender *s;
	MeshReceiver *r;
	ProtobufCMessage *got = NULL;

	mesh_channel_new(&chantest__text__descriptor, &s, &r);
	Chantest__Text *t = text_new("same object", 1, 2);
	mesh_sender_send(s, &t->base);
	ck_assert(mesh_receiver_recv(r, 0, &got, NULL));
	ck_assert_ptr_eq(got, &t->base);
	mesh_payload_message_free(got);
	mesh_sender_free(s);
	mesh_receiver_free(r);
}
END_TEST

START_TEST(test_untyped)
{
	MeshSender *s;
	MeshReceiver *r;
	MeshMessage *m = NULL;
	size_t size;

	mesh_channel_new(NULL, &s, &r);
	MeshMessage *out = mesh_message_new("raw", 3);
	int fds[2];
	ck_assert_int_eq(pipe2(fds, O_CLOEXEC), 0);
	ck_assert_int_eq(mesh_message_add_fd_take(out, fds[1]), 0);
	mesh_sender_send_message(s, out);
	ck_assert(mesh_receiver_recv_message(r, 0, &m, NULL));
	const uint8_t *data = mesh_message_get_data(m, &size);
	ck_assert_uint_eq(size, 3);
	ck_assert_mem_eq(data, "raw", 3);
	ck_assert_uint_eq(mesh_message_get_n_resources(m), 1);
	int w = mesh_message_steal_fd(m, 0);
	ck_assert_int_eq(w, fds[1]); /* in process: the very fd */
	mesh_message_free(m);
	close(w);
	close(fds[0]);

	/* A typed message received untyped: its bytes. */
	mesh_sender_send(s, &add_new(3, 4)->base);
	ck_assert(mesh_receiver_recv_message(r, 0, &m, NULL));
	data = mesh_message_get_data(m, &size);
	assert_bytes(data, size, "08 03 10 04");
	mesh_message_free(m);

	/* Untyped bytes received typed: decoded. */
	MeshSender *s2;
	MeshReceiver *r2;
	ProtobufCMessage *t = NULL;
	mesh_channel_new(&chantest__add__descriptor, &s2, &r2);
	mesh_sender_send_message(s2, mesh_message_new("\x08\x05\x10\x06", 4));
	ck_assert(mesh_receiver_recv(r2, 0, &t, NULL));
	ck_assert_uint_eq(((Chantest__Add *)t)->a, 5);
	ck_assert_uint_eq(((Chantest__Add *)t)->b, 6);
	mesh_payload_message_free(t);

	/* A typed receive on an untyped receiver (or oneshot) says why it fails. */
	GError *error = NULL;
	ck_assert(!mesh_receiver_recv(r, 0, &t, &error));
	ck_assert_msg(g_error_matches(error, MESH_ERROR, MESH_ERROR_INVALID_ARGUMENT) &&
			      strstr(error->message, "untyped"),
		      "%s", error ? error->message : "no error set");
	g_clear_error(&error);
	MeshOneshotSender *os;
	MeshOneshotReceiver *orx;
	mesh_oneshot_new(NULL, &os, &orx);
	ck_assert(!mesh_oneshot_recv(orx, 0, &t, &error));
	ck_assert_msg(g_error_matches(error, MESH_ERROR, MESH_ERROR_INVALID_ARGUMENT) &&
			      strstr(error->message, "untyped"),
		      "%s", error ? error->message : "no error set");
	g_clear_error(&error);
	mesh_oneshot_sender_free(os);
	mesh_oneshot_receiver_free(orx); /* not consumed by that error */

	mesh_sender_free(s);
	mesh_sender_free(s2);
	expect_error(r, 0, MESH_ERROR_CLOSED);
	mesh_receiver_free(r);
	mesh_receiver_free(r2);
}
END_TEST

/*
 * Only -1 means "forever": another negative timeout is an argument error at
 * once (it used to block forever), on every receive and rpc call.
 */
static void note_freed(gpointer data)
{
	*(gboolean *)data = TRUE;
}

/* A GBytes message is not copied: in process the receiver gets the very bytes. */
START_TEST(test_from_bytes)
{
	static const char text[] = "not copied";
	MeshSender *s;
	MeshReceiver *r;
	MeshMessage *m = NULL;
	size_t size;
	gboolean freed = FALSE;

	mesh_channel_new(NULL, &s, &r);
	GBytes *bytes = g_bytes_new_with_free_func(text, sizeof(text), note_freed, &freed);
	mesh_sender_send_message(s, mesh_message_new_from_bytes(bytes));
	g_bytes_unref(bytes);
	ck_assert(!freed); /* the queued message holds it */
	ck_assert(mesh_receiver_recv_message(r, 0, &m, NULL));
	const uint8_t *data = mesh_message_get_data(m, &size);
	ck_assert_uint_eq(size, sizeof(text));
	ck_assert_ptr_eq(data, text);
	mesh_message_free(m);
	ck_assert(freed);

	/* Empty bytes: an empty message. */
	bytes = g_bytes_new(NULL, 0);
	mesh_sender_send_message(s, mesh_message_new_from_bytes(bytes));
	g_bytes_unref(bytes);
	ck_assert(mesh_receiver_recv_message(r, 0, &m, NULL));
	mesh_message_get_data(m, &size);
	ck_assert_uint_eq(size, 0);
	mesh_message_free(m);
	mesh_sender_free(s);
	mesh_receiver_free(r);
}
END_TEST

START_TEST(test_negative_timeout)
{
	MeshSender *s, *su;
	MeshReceiver *r, *ru;
	MeshOneshotSender *os, *osu;
	MeshOneshotReceiver *orx, *orxu;
	ProtobufCMessage *t = NULL;
	MeshMessage *m = NULL;
	MeshRpc *rpc = NULL;
	GError *error = NULL;

	alarm(20); /* the old code blocked forever */
	mesh_channel_new(&chantest__add__descriptor, &s, &r);
	mesh_channel_new(NULL, &su, &ru);
	mesh_oneshot_new(&chantest__add__descriptor, &os, &orx);
	for (gint64 bad = -2; bad >= -1000; bad *= 10) {
		ck_assert(!mesh_receiver_recv(r, bad, &t, &error));
		ck_assert(g_error_matches(error, MESH_ERROR, MESH_ERROR_INVALID_ARGUMENT));
		ck_assert_msg(strstr(error->message, "-1 (no limit) or >= 0"), "%s", error->message);
		g_clear_error(&error);
		ck_assert(!mesh_receiver_recv_message(ru, bad, &m, &error));
		ck_assert(g_error_matches(error, MESH_ERROR, MESH_ERROR_INVALID_ARGUMENT));
		g_clear_error(&error);
		ck_assert(!mesh_oneshot_recv(orx, bad, &t, &error)); /* not consumed */
		ck_assert(g_error_matches(error, MESH_ERROR, MESH_ERROR_INVALID_ARGUMENT));
		g_clear_error(&error);
		ck_assert(!mesh_receiver_recv_rpc(ru, &chantest__add__descriptor, bad, &rpc, &error));
		ck_assert(g_error_matches(error, MESH_ERROR, MESH_ERROR_INVALID_ARGUMENT));
		g_clear_error(&error);
	}
	mesh_oneshot_new(NULL, &osu, &orxu);
	ck_assert(!mesh_oneshot_recv_message(orxu, -5, &m, &error));
	ck_assert(g_error_matches(error, MESH_ERROR, MESH_ERROR_INVALID_ARGUMENT));
	g_clear_error(&error);

	/* An rpc call: nothing is sent, the input is freed. */
	MeshSender *rs;
	MeshReceiver *rr;
	mesh_channel_new(NULL, &rs, &rr);
	ck_assert(!mesh_rpc_call(rs, &add_new(3, 4)->base, &chantest__sum__descriptor, -5, &t,
				 &error));
	ck_assert(g_error_matches(error, MESH_ERROR, MESH_ERROR_INVALID_ARGUMENT));
	g_clear_error(&error);
	ck_assert(!mesh_receiver_recv_message(rr, 0, &m, &error));
	ck_assert(g_error_matches(error, MESH_ERROR, MESH_ERROR_EMPTY));
	g_clear_error(&error);

	/* -1 still waits: here for a message that is there. */
	mesh_sender_send(s, &add_new(1, 2)->base);
	ck_assert(mesh_receiver_recv(r, -1, &t, &error));
	mesh_payload_message_free(t);
	alarm(0);

	mesh_sender_free(rs);
	mesh_receiver_free(rr);
	mesh_oneshot_sender_free(os);
	mesh_oneshot_sender_free(osu);
	mesh_oneshot_receiver_free(orxu);
	mesh_oneshot_receiver_free(orx);
	mesh_sender_free(s);
	mesh_sender_free(su);
	mesh_receiver_free(r);
	mesh_receiver_free(ru);
}
END_TEST

START_TEST(test_clone)
{
	MeshSender *s1, *s2, *s3;
	MeshReceiver *r;

	mesh_channel_new(&chantest__text__descriptor, &s1, &r);
	s2 = mesh_sender_clone(s1);
	send_text(s1, "a1");
	send_text(s2, "b1");
	send_text(s1, "a2");
	s3 = mesh_sender_clone(s2); /* a clone of a clone */
	send_text(s2, "b2");
	send_text(s3, "c1");
	/* In process, delivery is synchronous: send order. */
	expect_text(r, "a1");
	expect_text(r, "b1");
	expect_text(r, "a2");
	expect_text(r, "b2");
	expect_text(r, "c1");
	mesh_sender_free(s1);
	expect_error(r, 0, MESH_ERROR_EMPTY);
	mesh_sender_free(s3);
	expect_error(r, 0, MESH_ERROR_EMPTY);
	send_text(s2, "b3");
	mesh_sender_free(s2);
	expect_text(r, "b3");
	expect_error(r, 0, MESH_ERROR_CLOSED);
	mesh_receiver_free(r);
}
END_TEST

START_TEST(test_convert_sender_port)
{
	MeshSender *s;
	MeshReceiver *r;

	mesh_channel_new(&chantest__text__descriptor, &s, &r);
	s = mesh_sender_from_port(mesh_sender_into_port(s), &chantest__text__descriptor);
	send_text(s, "test");
	expect_text(r, "test");
	mesh_sender_free(s);
	expect_error(r, 0, MESH_ERROR_CLOSED);
	mesh_receiver_free(r);
}
END_TEST

START_TEST(test_convert_receiver_port)
{
	MeshSender *s;
	MeshReceiver *r;

	mesh_channel_new(&chantest__text__descriptor, &s, &r);
	r = mesh_receiver_from_port(mesh_receiver_into_port(r), &chantest__text__descriptor);
	send_text(s, "test");
	expect_text(r, "test");
	mesh_sender_free(s);
	expect_error(r, 0, MESH_ERROR_CLOSED);
	mesh_receiver_free(r);
}
END_TEST

START_TEST(test_non_port_and_port_sender)
{
	MeshSender *s, *s2;
	MeshReceiver *r;

	mesh_channel_new(&chantest__text__descriptor, &s, &r);
	s2 = mesh_sender_from_port(mesh_sender_into_port(mesh_sender_clone(s)),
				   &chantest__text__descriptor);
	send_text(s, "test");
	send_text(s2, "tset");
	expect_text(r, "test");
	expect_text(r, "tset");
	mesh_sender_free(s);
	mesh_sender_free(s2);
	expect_error(r, 0, MESH_ERROR_CLOSED);
	mesh_receiver_free(r);
}
END_TEST

START_TEST(test_port_receiver_with_senders_and_messages)
{
	MeshSender *s, *s2;
	MeshReceiver *r;

	mesh_channel_new(&chantest__text__descriptor, &s, &r);
	s2 = mesh_sender_from_port(mesh_sender_into_port(mesh_sender_clone(s)),
				   &chantest__text__descriptor);
	send_text(s, "a1");
	send_text(s2, "b1");
	send_text(s, "a2");
	/* Queued from two senders, then converted twice. */
	r = mesh_receiver_from_port(mesh_receiver_into_port(r), &chantest__text__descriptor);
	send_text(s2, "b2");
	r = mesh_receiver_from_port(mesh_receiver_into_port(r), &chantest__text__descriptor);
	send_text(s, "a3");
	expect_text(r, "a1");
	expect_text(r, "b1");
	expect_text(r, "a2");
	expect_text(r, "b2");
	expect_text(r, "a3");
	expect_error(r, 0, MESH_ERROR_EMPTY);
	mesh_sender_free(s);
	mesh_sender_free(s2);
	expect_error(r, 0, MESH_ERROR_CLOSED);
	mesh_receiver_free(r);
}
END_TEST

START_TEST(test_receiver_port_after_close)
{
	MeshSender *s;
	MeshReceiver *r;

	/* Everything sent and the sender gone before the conversion. */
	mesh_channel_new(&chantest__text__descriptor, &s, &r);
	send_text(s, "last words");
	mesh_sender_free(s);
	r = mesh_receiver_from_port(mesh_receiver_into_port(r), &chantest__text__descriptor);
	expect_text(r, "last words");
	expect_error(r, 0, MESH_ERROR_CLOSED);
	mesh_receiver_free(r);

	/* No message at all. */
	mesh_channel_new(&chantest__text__descriptor, &s, &r);
	mesh_sender_free(s);
	r = mesh_receiver_from_port(mesh_receiver_into_port(r), &chantest__text__descriptor);
	expect_error(r, 0, MESH_ERROR_CLOSED);
	mesh_receiver_free(r);
}
END_TEST

START_TEST(test_send_receiver_in_message)
{
	MeshSender *outer_s, *s;
	MeshReceiver *outer_r, *r;
	ProtobufCMessage *m = NULL;

	mesh_channel_new(&chantest__with_port__descriptor, &outer_s, &outer_r);
	mesh_channel_new(&chantest__text__descriptor, &s, &r);
	send_text(s, "before");
	mesh_sender_send(outer_s, &with_port_new("a receiver", mesh_receiver_into_port(r))->base);
	send_text(s, "during");
	ck_assert(mesh_receiver_recv(outer_r, 0, &m, NULL));
	r = mesh_receiver_from_port(with_port_steal(m), &chantest__text__descriptor);
	send_text(s, "after");
	expect_text(r, "before");
	expect_text(r, "during");
	expect_text(r, "after");
	mesh_sender_free(s);
	expect_error(r, 0, MESH_ERROR_CLOSED);
	mesh_receiver_free(r);

	/* A sender inside a message works the same way. */
	mesh_channel_new(&chantest__text__descriptor, &s, &r);
	mesh_sender_send(outer_s, &with_port_new("a sender", mesh_sender_into_port(s))->base);
	ck_assert(mesh_receiver_recv(outer_r, 0, &m, NULL));
	s = mesh_sender_from_port(with_port_steal(m), &chantest__text__descriptor);
	send_text(s, "via a moved sender");
	expect_text(r, "via a moved sender");
	mesh_sender_free(s);
	expect_error(r, 0, MESH_ERROR_CLOSED);
	mesh_receiver_free(r);

	mesh_sender_free(outer_s);
	mesh_receiver_free(outer_r);
}
END_TEST

START_TEST(test_send_fd)
{
	MeshSender *s;
	MeshReceiver *r;
	ProtobufCMessage *m = NULL;
	int fds[2];

	ck_assert_int_eq(pipe2(fds, O_CLOEXEC), 0);
	mesh_channel_new(&chantest__with_fd__descriptor, &s, &r);
	Chantest__WithFd *out = malloc(sizeof(*out));
	chantest__with_fd__init(out);
	out->name = strdup("pipe");
	out->fd = mesh_payload_fd_new_take(dup_cloexec(fds[1]));
	mesh_sender_send(s, &out->base);
	ck_assert(mesh_receiver_recv(r, 0, &m, NULL));
	int got = mesh_payload_fd_steal(((Chantest__WithFd *)m)->fd);
	mesh_payload_message_free(m);
	ck_assert_int_ge(got, 0);
	ck_assert(same_file(got, fds[1]));
	ck_assert_int_eq(write(got, "x", 1), 1);
	char c = 0;
	ck_assert_int_eq(read(fds[0], &c, 1), 1);
	ck_assert_int_eq(c, 'x');
	close(got);
	close(fds[0]);
	close(fds[1]);
	mesh_sender_free(s);
	mesh_receiver_free(r);
}
END_TEST

START_TEST(test_send_after_receiver_dropped)
{
	MeshSender *s, *s2;
	MeshReceiver *r;
	int fds[2];

	mesh_channel_new(&chantest__with_fd__descriptor, &s, &r);
	s2 = mesh_sender_clone(s);
	mesh_receiver_free(r);
	ck_assert(mesh_sender_is_closed(s));
	ck_assert(mesh_sender_is_closed(s2));

	ck_assert_int_eq(pipe2(fds, O_CLOEXEC), 0);
	Chantest__WithFd *out = malloc(sizeof(*out));
	chantest__with_fd__init(out);
	out->fd = mesh_payload_fd_new_take(fds[1]);
	mesh_sender_send(s, &out->base); /* no failure; the fd is closed */
	ck_assert(!fd_is_open(fds[1]));
	char c;
	ck_assert_int_eq(read(fds[0], &c, 1), 0); /* no writer left: EOF */
	close(fds[0]);

	MeshMessage *raw = mesh_message_new("x", 1);
	ck_assert_int_eq(pipe2(fds, O_CLOEXEC), 0);
	ck_assert_int_eq(mesh_message_add_fd_take(raw, fds[1]), 0);
	mesh_sender_send_message(s2, raw);
	ck_assert(!fd_is_open(fds[1]));
	close(fds[0]);

	/* A clone of a sender whose receiver is gone is closed too. */
	MeshSender *s3 = mesh_sender_clone(s2);
	ck_assert(mesh_sender_is_closed(s3));
	mesh_sender_free(s3);
	mesh_sender_free(s2);
	mesh_sender_free(s);
}
END_TEST

static Chantest__Number *number_new(gint v)
{
	Chantest__Number *n = malloc(sizeof(*n));
	chantest__number__init(n);
	n->v = v;
	return n;
}

static void expect_number(MeshReceiver *r, gint v)
{
	ProtobufCMessage *m = NULL;
	GError *error = NULL;
	ck_assert_msg(mesh_receiver_recv(r, WAIT_US, &m, &error), "expected %d: %s", v,
		      error ? error->message : "");
	ck_assert_int_eq(((Chantest__Number *)m)->v, v);
	mesh_payload_message_free(m);
}

/*
 * Upstream's Sender::bridge doc example: what the inner receiver holds and
 * what its senders send from then on reach the outer receiver.
 */
START_TEST(test_sender_bridge)
{
	MeshSender *outer_send, *inner_send;
	MeshReceiver *outer_recv, *inner_recv;

	mesh_channel_new(&chantest__number__descriptor, &outer_send, &outer_recv);
	mesh_channel_new(&chantest__number__descriptor, &inner_send, &inner_recv);
	mesh_sender_send(outer_send, &number_new(2)->base);
	mesh_sender_send(inner_send, &number_new(1)->base);
	mesh_sender_bridge(outer_send, inner_recv);
	/* Per sender in order; across senders (here 2 came first) no order. */
	expect_number(outer_recv, 2);
	expect_number(outer_recv, 1);
	/* The inner sender lives on, now feeding the outer receiver. */
	mesh_sender_send(inner_send, &number_new(3)->base);
	expect_number(outer_recv, 3);
	expect_error(outer_recv, 0, MESH_ERROR_EMPTY);
	mesh_sender_free(inner_send);
	expect_error(outer_recv, 0, MESH_ERROR_CLOSED);
	mesh_receiver_free(outer_recv);
}
END_TEST

/*
 * The pattern bridge(sender_into_port(s), receiver_into_port(r)) with
 * messages queued at r from several senders, live senders, and one that
 * already left: nothing is lost, every sender keeps going. Also through
 * mesh_receiver_bridge(), and with the outer receiver on another node.
 */
static void bridge_queued(int how, TestNet *net)
{
	MeshSender *outer_send, *inner_send, *inner2, *gone;
	MeshReceiver *outer_recv, *inner_recv;

	if (net) {
		MeshPort *p0, *p1;
		test_net_port_pair(net, 0, 1, &p0, &p1);
		outer_send = mesh_sender_from_port(p1, &chantest__text__descriptor);
		outer_recv = mesh_receiver_from_port(p0, &chantest__text__descriptor);
	} else {
		mesh_channel_new(&chantest__text__descriptor, &outer_send, &outer_recv);
	}
	mesh_channel_new(&chantest__text__descriptor, &inner_send, &inner_recv);
	inner2 = mesh_sender_clone(inner_send);
	gone = mesh_sender_clone(inner_send);
	send_text(inner_send, "a1");
	send_text(inner2, "b1");
	send_text(gone, "c1");
	mesh_sender_free(gone);
	send_text(inner_send, "a2");
	if (how == 0)
		mesh_port_bridge(mesh_sender_into_port(outer_send), mesh_receiver_into_port(inner_recv));
	else if (how == 1)
		mesh_sender_bridge(outer_send, inner_recv);
	else
		mesh_receiver_bridge(inner_recv, outer_send);
	send_text(inner2, "b2");
	send_text(inner_send, "a3");
	if (net)
		test_net_pump(net);
	expect_text(outer_recv, "a1");
	expect_text(outer_recv, "b1");
	expect_text(outer_recv, "c1");
	expect_text(outer_recv, "a2");
	/* Then b2 and a3, in either order. */
	GHashTable *rest = g_hash_table_new(g_str_hash, g_str_equal);
	for (int i = 0; i < 2; i++) {
		ProtobufCMessage *m = NULL;
		GError *error = NULL;
		ck_assert_msg(mesh_receiver_recv(outer_recv, WAIT_US, &m, &error), "%s",
			      error ? error->message : "");
		g_hash_table_add(rest, g_strdup(((Chantest__Text *)m)->text));
		mesh_payload_message_free(m);
	}
	ck_assert(g_hash_table_contains(rest, "b2") && g_hash_table_contains(rest, "a3"));
	g_hash_table_foreach(rest, (GHFunc)(void (*)(void))g_free, NULL);
	g_hash_table_destroy(rest);
	expect_error(outer_recv, 0, MESH_ERROR_EMPTY);
	mesh_sender_free(inner_send);
	send_text(inner2, "b3");
	if (net)
		test_net_pump(net);
	expect_text(outer_recv, "b3");
	mesh_sender_free(inner2);
	if (net)
		test_net_pump(net);
	expect_error(outer_recv, 0, MESH_ERROR_CLOSED);
	mesh_receiver_free(outer_recv);
	if (net)
		test_net_pump(net);
}

START_TEST(test_bridge_queued)
{
	for (int how = 0; how < 3; how++) {
		bridge_queued(how, NULL);
		TestNet *net = test_net_new(2, 0);
		bridge_queued(how, net);
		for (guint i = 0; i < net->n; i++)
			ck_assert_uint_eq(mesh_node_count_ports(net->nodes[i]), 0);
		test_net_free(net);
	}
}
END_TEST

/* One corrupt sender does not end a receive loop while others are alive. */
START_TEST(test_corrupt_sender_loop)
{
	MeshSender *s1, *s2, *bad;
	MeshReceiver *r;
	ProtobufCMessage *m = NULL;
	GError *error = NULL;

	mesh_channel_new(&chantest__number__descriptor, &s1, &r);
	s2 = mesh_sender_clone(s1);
	bad = mesh_sender_from_port(mesh_sender_into_port(mesh_sender_clone(s1)),
				    &chantest__text__descriptor);
	mesh_sender_send(s1, &number_new(1)->base);
	send_text(bad, "not a number");
	mesh_sender_send(s2, &number_new(2)->base);
	send_text(bad, "after");
	mesh_sender_send(s1, &number_new(3)->base);
	mesh_sender_free(s1);
	mesh_sender_free(s2);
	gint sum = 0, n = 0;
	while (mesh_receiver_recv(r, WAIT_US, &m, &error)) {
		sum += ((Chantest__Number *)m)->v;
		n++;
		mesh_payload_message_free(m);
	}
	ck_assert_msg(g_error_matches(error, MESH_ERROR, MESH_ERROR_CLOSED), "%s", error->message);
	g_clear_error(&error);
	ck_assert_int_eq(n, 3);
	ck_assert_int_eq(sum, 6);
	ck_assert_uint_eq(mesh_receiver_get_n_dropped(r), 2);
	ck_assert(mesh_sender_is_closed(bad));
	mesh_sender_free(bad);
	mesh_receiver_free(r);
}
END_TEST

START_TEST(test_message_corruption)
{
	MeshSender *s;
	MeshReceiver *r;
	MeshPort *a, *b;
	ProtobufCMessage *m = NULL;
	GError *error = NULL;

	/* A Text into a receiver of Number. */
	mesh_port_new_pair(&a, &b);
	s = mesh_sender_from_port(a, &chantest__text__descriptor);
	r = mesh_receiver_from_port(b, &chantest__number__descriptor);
	send_text(s, "text");
	ck_assert(!mesh_receiver_recv(r, 0, &m, &error));
	ck_assert_msg(g_error_matches(error, MESH_ERROR, MESH_ERROR_CORRUPTION), "%s",
		      error->message);
	g_clear_error(&error);
	/* The receiver is terminated (upstream is_terminated()): the sender sees it closed. */
	ck_assert(mesh_receiver_is_terminated(r));
	ck_assert(mesh_sender_is_closed(s));
	expect_error(r, 0, MESH_ERROR_CLOSED);
	mesh_sender_free(s);
	mesh_receiver_free(r);

	/* A bad sender is cut off; a good one goes on. */
	MeshSender *good;
	mesh_channel_new(&chantest__number__descriptor, &good, &r);
	s = mesh_sender_from_port(mesh_sender_into_port(mesh_sender_clone(good)), NULL);
	Chantest__Number *n = malloc(sizeof(*n));
	chantest__number__init(n);
	n->v = -3;
	mesh_sender_send(good, &n->base);
	mesh_sender_send_message(s, mesh_message_new("\x0a\x01x", 3)); /* wrong wire type */
	mesh_sender_send_message(s, mesh_message_new("\x08\x02", 2));  /* valid, after it */
	n = malloc(sizeof(*n));
	chantest__number__init(n);
	n->v = 7;
	mesh_sender_send(good, &n->base);
	ck_assert(mesh_receiver_recv(r, 0, &m, NULL));
	ck_assert_int_eq(((Chantest__Number *)m)->v, -3);
	mesh_payload_message_free(m);
	/* Another sender remains: the corrupt message is dropped, not reported. */
	ck_assert(mesh_receiver_recv(r, 0, &m, NULL));
	ck_assert_int_eq(((Chantest__Number *)m)->v, 7);
	mesh_payload_message_free(m);
	ck_assert(mesh_sender_is_closed(s));
	ck_assert(!mesh_sender_is_closed(good));
	/* The corrupt one and the one its sender sent after it. */
	ck_assert_uint_eq(mesh_receiver_get_n_dropped(r), 2);
	expect_error(r, 0, MESH_ERROR_EMPTY);
	mesh_sender_free(s);
	mesh_sender_free(good);
	expect_error(r, 0, MESH_ERROR_CLOSED);
	mesh_receiver_free(r);
}
END_TEST

START_TEST(test_malformed_framing)
{
	MeshPort *a, *b;
	MeshReceiver *r;

	/* Raw bytes on the port are the wire payload: not channel framing. */
	mesh_port_new_pair(&a, &b);
	r = mesh_receiver_from_port(b, &chantest__text__descriptor);
	ck_assert(port_send_bytes(a, "\x0a\x05xy"));
	expect_error(r, 0, MESH_ERROR_CORRUPTION);
	ck_assert_int_eq(port_get_state(a), PORT_FAILED);
	expect_error(r, 0, MESH_ERROR_CLOSED);
	mesh_port_close(a);
	mesh_receiver_free(r);

	/* Well-formed raw framing is accepted: field 1 holds the message. */
	mesh_port_new_pair(&a, &b);
	r = mesh_receiver_from_port(b, &chantest__text__descriptor);
	ck_assert(port_send_bytes(a, "\x0a\x04\x0a\x02hi"));
	expect_text(r, "hi");
	mesh_port_close(a);
	expect_error(r, 0, MESH_ERROR_CLOSED);
	mesh_receiver_free(r);

	/*
	 * A length varint over 64 bits (10th byte above 1) is malformed, as
	 * everywhere else on the wire, even when its low bits would fit.
	 */
	mesh_port_new_pair(&a, &b);
	r = mesh_receiver_from_port(b, &chantest__text__descriptor);
	ck_assert(port_send_bytes(a, "\x0a\x84\x80\x80\x80\x80\x80\x80\x80\x80\x02\x0a\x02hi"));
	expect_error(r, 0, MESH_ERROR_CORRUPTION);
	mesh_port_close(a);
	mesh_receiver_free(r);
}
END_TEST

START_TEST(test_sender_failure)
{
	MeshSender *s, *s2;
	MeshReceiver *r;
	GError *error = NULL;
	MeshMessage *m;

	/* The last sender fails with nothing queued: NODE_FAILURE. */
	mesh_channel_new(&chantest__text__descriptor, &s, &r);
	MeshPort *p = mesh_sender_into_port(s);
	port_fail(p, "boom");
	mesh_port_close(p);
	ck_assert(!mesh_receiver_recv_message(r, 0, &m, &error));
	ck_assert(g_error_matches(error, MESH_ERROR, MESH_ERROR_NODE_FAILURE));
	ck_assert_msg(strstr(error->message, "boom"), "%s", error->message);
	g_clear_error(&error);
	mesh_receiver_free(r);

	/* Another sender remains: the failure is ignored, the end is CLOSED. */
	mesh_channel_new(&chantest__text__descriptor, &s, &r);
	s2 = mesh_sender_clone(s);
	p = mesh_sender_into_port(s);
	port_fail(p, "boom");
	mesh_port_close(p);
	send_text(s2, "still here");
	expect_text(r, "still here");
	mesh_sender_free(s2);
	expect_error(r, 0, MESH_ERROR_CLOSED);
	mesh_receiver_free(r);

	/*
	 * Messages are queued when the last sender fails: they arrive, then
	 * the failure (upstream says CLOSED: a cut stream would look finished).
	 */
	mesh_channel_new(&chantest__text__descriptor, &s, &r);
	send_text(s, "queued");
	p = mesh_sender_into_port(s);
	port_fail(p, "boom");
	mesh_port_close(p);
	expect_text(r, "queued");
	expect_error(r, 0, MESH_ERROR_NODE_FAILURE);
	mesh_receiver_free(r);
}
END_TEST

/*
 * Senders that come and go, as listener clients do: every one that closes
 * or fails is let go, received from or not (a failed one used to be kept
 * for good, a closed one until the next receive).
 */
START_TEST(test_senders_come_and_go)
{
	MeshSender *s, *c;
	MeshReceiver *r;
	guint queued = 0;

	mesh_channel_new(&chantest__text__descriptor, &s, &r);
	ck_assert_uint_eq(mesh_receiver_count_senders(r), 1);
	for (guint i = 0; i < 2000; i++) {
		c = mesh_sender_clone(s);
		if (i % 2) {
			send_text(c, "bye");
			queued++;
		}
		switch (i % 4) {
		case 0:
		case 1:
			mesh_sender_free(c); /* closes */
			break;
		default: {
			MeshPort *p = mesh_sender_into_port(c);
			port_fail(p, "gone");
			mesh_port_close(p);
			break;
		}
		}
		ck_assert_uint_eq(mesh_receiver_count_senders(r), 1);
	}
	for (guint i = 0; i < queued; i++)
		expect_text(r, "bye");
	expect_error(r, 0, MESH_ERROR_EMPTY);
	ck_assert_uint_eq(mesh_receiver_count_senders(r), 1);

	/* The last one failed: it is kept, and its failure is the end. */
	c = mesh_sender_clone(s);
	mesh_sender_free(s);
	MeshPort *p = mesh_sender_into_port(c);
	port_fail(p, "boom");
	mesh_port_close(p);
	ck_assert_uint_eq(mesh_receiver_count_senders(r), 1);
	expect_error(r, 0, MESH_ERROR_NODE_FAILURE);
	mesh_receiver_free(r);

	/* A receiver whose one port is already closed or failed. */
	MeshPort *a, *b;
	mesh_port_new_pair(&a, &b);
	mesh_port_close(a);
	r = mesh_receiver_from_port(b, &chantest__text__descriptor);
	ck_assert_uint_eq(mesh_receiver_count_senders(r), 0);
	expect_error(r, 0, MESH_ERROR_CLOSED);
	mesh_receiver_free(r);
	mesh_port_new_pair(&a, &b);
	port_fail(a, "boom");
	mesh_port_close(a);
	r = mesh_receiver_from_port(b, &chantest__text__descriptor);
	ck_assert_uint_eq(mesh_receiver_count_senders(r), 1);
	expect_error(r, 0, MESH_ERROR_NODE_FAILURE);
	mesh_receiver_free(r);
}
END_TEST

START_TEST(test_timeouts)
{
	MeshSender *s;
	MeshReceiver *r;
	MeshOneshotSender *os;
	MeshOneshotReceiver *orx;
	MeshMessage *m;
	GError *error = NULL;

	mesh_channel_new(NULL, &s, &r);
	gint64 t0 = g_get_monotonic_time();
	expect_error(r, 10000, MESH_ERROR_TIMED_OUT);
	gint64 dt = g_get_monotonic_time() - t0;
	ck_assert_int_ge(dt, 10000);
	ck_assert_int_lt(dt, 5 * G_USEC_PER_SEC);
	expect_error(r, 0, MESH_ERROR_EMPTY);

	mesh_oneshot_new(NULL, &os, &orx);
	t0 = g_get_monotonic_time();
	ck_assert(!mesh_oneshot_recv_message(orx, 10000, &m, &error));
	ck_assert(g_error_matches(error, MESH_ERROR, MESH_ERROR_TIMED_OUT));
	g_clear_error(&error);
	dt = g_get_monotonic_time() - t0;
	ck_assert_int_ge(dt, 10000);
	ck_assert_int_lt(dt, 5 * G_USEC_PER_SEC);
	ck_assert(!mesh_oneshot_recv_message(orx, 0, &m, &error));
	ck_assert(g_error_matches(error, MESH_ERROR, MESH_ERROR_EMPTY));
	g_clear_error(&error);
	/* Not consumed by EMPTY / TIMED_OUT: still usable. */
	mesh_oneshot_send_message(os, mesh_message_new("v", 1));
	ck_assert(mesh_oneshot_recv_message(orx, 0, &m, NULL));
	mesh_message_free(m);

	mesh_sender_free(s);
	mesh_receiver_free(r);
}
END_TEST

START_TEST(test_poll_fd)
{
	MeshSender *s;
	MeshReceiver *r;

	mesh_channel_new(&chantest__text__descriptor, &s, &r);
#ifdef G_OS_WIN32
	/* Windows: a manual-reset event, not inheritable. */
	MeshOsHandle fd = mesh_receiver_get_handle(r);
	DWORD flags;
	ck_assert(fd != NULL);
	ck_assert(mesh_receiver_get_handle(r) == fd);
	ck_assert(GetHandleInformation(fd, &flags));
	ck_assert_uint_eq(flags & HANDLE_FLAG_INHERIT, 0);
#define mesh_receiver_get_fd mesh_receiver_get_handle
#else
	int fd = mesh_receiver_get_fd(r);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(mesh_receiver_get_fd(r), fd);
	ck_assert_int_eq(fcntl(fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
#endif
	ck_assert(!fd_readable(fd));
	send_text(s, "one");
	send_text(s, "two");
	ck_assert(fd_readable(fd));
	expect_text(r, "one");
	ck_assert(fd_readable(fd));
	expect_text(r, "two");
	ck_assert(!fd_readable(fd));
	mesh_sender_free(s);
	ck_assert(fd_readable(fd)); /* the end can be received */
	expect_error(r, 0, MESH_ERROR_CLOSED);
	mesh_receiver_free(r);

	/* Created late, on a receiver that already has a message. */
	mesh_channel_new(&chantest__text__descriptor, &s, &r);
	send_text(s, "early");
	fd = mesh_receiver_get_fd(r);
	ck_assert(fd_readable(fd));
	expect_text(r, "early");
	ck_assert(!fd_readable(fd));
	mesh_sender_free(s);
	mesh_receiver_free(r);
#undef mesh_receiver_get_fd
}
END_TEST

/* Threads: 4 senders x 25000 messages into one receiver. */

#define N_THREADS 4
#define N_PER_THREAD 25000

typedef struct {
	MeshSender *sender;
	guint index;
	guint count;
} SenderThread;

static gpointer sender_thread(gpointer data)
{
	SenderThread *t = data;

	for (guint i = 0; i < t->count; i++)
		mesh_sender_send(t->sender, &text_new("m", i, t->index)->base);
	mesh_sender_free(t->sender);
	return NULL;
}

START_TEST(test_threads)
{
	MeshSender *s;
	MeshReceiver *r;
	SenderThread t[N_THREADS];
	GThread *threads[N_THREADS];
	guint next[N_THREADS] = {0};
	guint total = 0;

	mesh_channel_new(&chantest__text__descriptor, &s, &r);
	for (guint i = 0; i < N_THREADS; i++) {
		t[i] = (SenderThread){mesh_sender_clone(s), i, N_PER_THREAD};
		threads[i] = g_thread_new("sender", sender_thread, &t[i]);
	}
	mesh_sender_free(s);
	for (;;) {
		ProtobufCMessage *m = NULL;
		GError *error = NULL;
		if (!mesh_receiver_recv(r, WAIT_US, &m, &error)) {
			ck_assert_msg(g_error_matches(error, MESH_ERROR, MESH_ERROR_CLOSED), "%s",
				      error->message);
			g_error_free(error);
			break;
		}
		Chantest__Text *text = (Chantest__Text *)m;
		ck_assert_uint_lt(text->sender, N_THREADS);
		ck_assert_uint_eq(text->seq, next[text->sender]); /* FIFO per sender */
		next[text->sender]++;
		total++;
		mesh_payload_message_free(m);
	}
	for (guint i = 0; i < N_THREADS; i++) {
		g_thread_join(threads[i]);
		ck_assert_uint_eq(next[i], N_PER_THREAD);
	}
	ck_assert_uint_eq(total, N_THREADS * N_PER_THREAD);
	mesh_receiver_free(r);
}
END_TEST

/* Callbacks on a GMainContext running in another thread. */

typedef struct {
	GMainContext *context;
	GMainLoop *loop;
	GThread *thread;
	gboolean timed_out;
} LoopThread;

static gboolean loop_timeout(gpointer data)
{
	LoopThread *lt = data;
	lt->timed_out = TRUE;
	g_main_loop_quit(lt->loop);
	return G_SOURCE_REMOVE;
}

static gpointer loop_thread_run(gpointer data)
{
	LoopThread *lt = data;
	g_main_context_push_thread_default(lt->context);
	g_main_loop_run(lt->loop);
	g_main_context_pop_thread_default(lt->context);
	return NULL;
}

static void loop_thread_start(LoopThread *lt)
{
	lt->context = g_main_context_new();
	lt->loop = g_main_loop_new(lt->context, FALSE);
	lt->timed_out = FALSE;
	GSource *timeout = g_timeout_source_new(20000);
	g_source_set_callback(timeout, loop_timeout, lt, NULL);
	g_source_attach(timeout, lt->context);
	g_source_unref(timeout);
	lt->thread = g_thread_new("loop", loop_thread_run, lt);
}

static void loop_thread_join(LoopThread *lt)
{
	g_thread_join(lt->thread);
	ck_assert_msg(!lt->timed_out, "the loop timed out");
	g_main_loop_unref(lt->loop);
	g_main_context_unref(lt->context);
}

typedef struct {
	LoopThread *lt;
	guint received;
	guint calls;
	gboolean closed;
	gboolean wrong_thread;
	gint notified;
	MeshSender *extra; /* test_callback_not_locked */
} CallbackState;

static void count_cb(MeshReceiver *r, gpointer data)
{
	CallbackState *st = data;
	ProtobufCMessage *m;
	GError *error = NULL;

	st->calls++;
	if (!g_main_context_is_owner(st->lt->context))
		st->wrong_thread = TRUE;
	while (mesh_receiver_recv(r, 0, &m, &error)) {
		st->received++;
		mesh_payload_message_free(m);
	}
	if (g_error_matches(error, MESH_ERROR, MESH_ERROR_CLOSED)) {
		st->closed = TRUE;
		g_main_loop_quit(st->lt->loop);
	}
	g_error_free(error);
}

static void count_notify(gpointer data)
{
	CallbackState *st = data;
	g_atomic_int_inc(&st->notified);
}

START_TEST(test_callbacks)
{
	MeshSender *s;
	MeshReceiver *r;
	SenderThread t[N_THREADS];
	GThread *threads[N_THREADS];
	LoopThread lt;
	CallbackState st = {.lt = &lt};

	loop_thread_start(&lt);
	mesh_channel_new(&chantest__text__descriptor, &s, &r);
	mesh_receiver_set_callback(r, lt.context, count_cb, &st, count_notify);
	for (guint i = 0; i < N_THREADS; i++) {
		t[i] = (SenderThread){mesh_sender_clone(s), i, 1000};
		threads[i] = g_thread_new("sender", sender_thread, &t[i]);
	}
	mesh_sender_free(s);
	for (guint i = 0; i < N_THREADS; i++)
		g_thread_join(threads[i]);
	loop_thread_join(&lt);
	ck_assert(st.closed);
	ck_assert(!st.wrong_thread);
	ck_assert_uint_eq(st.received, N_THREADS * 1000);
	ck_assert_uint_ge(st.calls, 1);
	ck_assert_int_eq(st.notified, 0);
	mesh_receiver_free(r); /* removes the callback */
	ck_assert_int_eq(st.notified, 1);
}
END_TEST

/* Each message on its own clone, made and dropped concurrently (as a leader request). */
static gpointer clone_sender_thread(gpointer data)
{
	SenderThread *t = data;

	for (guint i = 0; i < t->count; i++) {
		MeshSender *c = mesh_sender_clone(t->sender);
		mesh_sender_send(c, &text_new("c", i, t->index)->base);
		mesh_sender_free(c);
	}
	return NULL;
}

START_TEST(test_callbacks_clone_per_message)
{
	MeshSender *s;
	MeshReceiver *r;
	SenderThread t[N_THREADS];
	GThread *threads[N_THREADS];
	LoopThread lt;
	CallbackState st = {.lt = &lt};

	loop_thread_start(&lt);
	mesh_channel_new(&chantest__text__descriptor, &s, &r);
	mesh_receiver_set_callback(r, lt.context, count_cb, &st, NULL);
	for (guint i = 0; i < N_THREADS; i++) {
		t[i] = (SenderThread){s, i, 2000};
		threads[i] = g_thread_new("cloner", clone_sender_thread, &t[i]);
	}
	for (guint i = 0; i < N_THREADS; i++)
		g_thread_join(threads[i]);
	mesh_sender_free(s);
	loop_thread_join(&lt);
	ck_assert(st.closed);
	ck_assert_uint_eq(st.received, N_THREADS * 2000);
	mesh_receiver_free(r);
}
END_TEST

static void relock_cb(MeshReceiver *r, gpointer data)
{
	CallbackState *st = data;
	ProtobufCMessage *m;
	GError *error = NULL;

	st->calls++;
	while (mesh_receiver_recv(r, 0, &m, &error)) {
		Chantest__Text *text = (Chantest__Text *)m;
		st->received++;
		if (strcmp(text->text, "first") == 0) {
			/*
			 * Under a library lock these would deadlock: the send
			 * runs this receiver's port handler, the free closes a
			 * sender port of this receiver.
			 */
			send_text(st->extra, "from the callback");
			MeshSender *c = mesh_sender_clone(st->extra);
			mesh_sender_free(c);
			mesh_sender_free(st->extra);
			st->extra = NULL;
		}
		mesh_payload_message_free(m);
	}
	if (g_error_matches(error, MESH_ERROR, MESH_ERROR_CLOSED)) {
		st->closed = TRUE;
		mesh_receiver_free(r); /* from its own callback */
		g_main_loop_quit(st->lt->loop);
	}
	g_error_free(error);
}

START_TEST(test_callback_not_locked)
{
	MeshSender *s;
	MeshReceiver *r;
	LoopThread lt;
	CallbackState st = {.lt = &lt};

	loop_thread_start(&lt);
	mesh_channel_new(&chantest__text__descriptor, &s, &r);
	st.extra = mesh_sender_clone(s);
	mesh_receiver_set_callback(r, lt.context, relock_cb, &st, count_notify);
	send_text(s, "first");
	mesh_sender_free(s);
	loop_thread_join(&lt);
	ck_assert(st.closed);
	ck_assert_uint_eq(st.received, 2);
	ck_assert_int_eq(st.notified, 1);
}
END_TEST

static void never_cb(MeshReceiver *r, gpointer data)
{
	CallbackState *st = data;
	st->calls++;
}

START_TEST(test_callback_replace)
{
	MeshSender *s;
	MeshReceiver *r;
	LoopThread lt;
	CallbackState st = {.lt = &lt}, st2 = {.lt = &lt};

	/* Set and removed from this thread while the loop runs in another. */
	loop_thread_start(&lt);
	mesh_channel_new(&chantest__text__descriptor, &s, &r);
	for (int i = 0; i < 100; i++) {
		mesh_receiver_set_callback(r, lt.context, never_cb, &st2, count_notify);
		mesh_receiver_set_callback(r, lt.context, NULL, NULL, NULL);
	}
	ck_assert_int_eq(g_atomic_int_get(&st2.notified), 100);
	ck_assert_uint_eq(st2.calls, 0); /* nothing was ready */
	mesh_receiver_set_callback(r, lt.context, never_cb, &st2, count_notify);
	mesh_receiver_set_callback(r, lt.context, count_cb, &st, count_notify); /* replaces */
	ck_assert_int_eq(g_atomic_int_get(&st2.notified), 101);
	send_text(s, "x");
	mesh_sender_free(s);
	loop_thread_join(&lt);
	ck_assert(st.closed);
	ck_assert_uint_eq(st.received, 1);
	mesh_receiver_free(r);
	ck_assert_int_eq(st.notified, 1);
}
END_TEST

/* Oneshot. */

START_TEST(test_oneshot)
{
	MeshOneshotSender *s;
	MeshOneshotReceiver *r;
	ProtobufCMessage *m = NULL;

	mesh_oneshot_new(&chantest__text__descriptor, &s, &r);
	Chantest__Text *t = text_new("value", 0, 0);
	mesh_oneshot_send(s, &t->base);
	ck_assert(mesh_oneshot_recv(r, 0, &m, NULL));
	ck_assert_ptr_eq(m, &t->base); /* in process: the object itself */
	mesh_payload_message_free(m);
	mesh_oneshot_receiver_free(NULL);
	mesh_oneshot_sender_free(NULL);
}
END_TEST

START_TEST(test_oneshot_closed)
{
	MeshOneshotSender *s;
	MeshOneshotReceiver *r;
	ProtobufCMessage *m = NULL;
	GError *error = NULL;

	mesh_oneshot_new(&chantest__text__descriptor, &s, &r);
	mesh_oneshot_sender_free(s);
	ck_assert(!mesh_oneshot_recv(r, WAIT_US, &m, &error));
	ck_assert(g_error_matches(error, MESH_ERROR, MESH_ERROR_CLOSED));
	g_error_free(error);

	/* The receiver gone first: the send drops the value. */
	mesh_oneshot_new(NULL, &s, &r);
	mesh_oneshot_receiver_free(r);
	int fds[2];
	ck_assert_int_eq(pipe2(fds, O_CLOEXEC), 0);
	MeshMessage *msg = mesh_message_new(NULL, 0);
	ck_assert_int_eq(mesh_message_add_fd_take(msg, fds[1]), 0);
	mesh_oneshot_send_message(s, msg);
	ck_assert(!fd_is_open(fds[1]));
	close(fds[0]);
}
END_TEST

START_TEST(test_oneshot_failed)
{
	MeshOneshotSender *s;
	MeshOneshotReceiver *r;
	MeshMessage *m = NULL;
	GError *error = NULL;

	mesh_oneshot_new(NULL, &s, &r);
	MeshPort *p = mesh_oneshot_sender_into_port(s);
	port_fail(p, "node gone");
	ck_assert(!mesh_oneshot_recv_message(r, 0, &m, &error));
	ck_assert(g_error_matches(error, MESH_ERROR, MESH_ERROR_NODE_FAILURE));
	g_error_free(error);
	mesh_port_close(p);
}
END_TEST

typedef enum {
	CONVERT_SENDER = 1,
	CONVERT_RECEIVER = 2,
	CONVERT_AFTER_SEND = 4,
	CONVERT_AFTER_POLL = 8,
} ConvertMode;

static void oneshot_convert(ConvertMode mode)
{
	MeshOneshotSender *s;
	MeshOneshotReceiver *r;
	ProtobufCMessage *m = NULL;
	GError *error = NULL;
	const ProtobufCMessageDescriptor *desc = &chantest__text__descriptor;

	mesh_oneshot_new(desc, &s, &r);
	if (mode & CONVERT_AFTER_POLL) {
		ck_assert(!mesh_oneshot_recv(r, 0, &m, &error));
		ck_assert(g_error_matches(error, MESH_ERROR, MESH_ERROR_EMPTY));
		g_clear_error(&error);
	}
	if (mode & CONVERT_SENDER)
		s = mesh_oneshot_sender_from_port(mesh_oneshot_sender_into_port(s), desc);
	if ((mode & CONVERT_RECEIVER) && !(mode & CONVERT_AFTER_SEND))
		r = mesh_oneshot_receiver_from_port(mesh_oneshot_receiver_into_port(r), desc);
	mesh_oneshot_send(s, &text_new("converted", 0, 0)->base);
	if ((mode & CONVERT_RECEIVER) && (mode & CONVERT_AFTER_SEND))
		r = mesh_oneshot_receiver_from_port(mesh_oneshot_receiver_into_port(r), desc);
	ck_assert_msg(mesh_oneshot_recv(r, WAIT_US, &m, &error), "mode %d: %s", mode,
		      error ? error->message : "");
	ck_assert_str_eq(((Chantest__Text *)m)->text, "converted");
	mesh_payload_message_free(m);
}

START_TEST(test_oneshot_convert)
{
	/* Every combination of endpoints made ports, before/after send and a poll. */
	for (int mode = 0; mode < 16; mode++)
		oneshot_convert(mode);
}
END_TEST

START_TEST(test_oneshot_convert_closed)
{
	MeshOneshotSender *s;
	MeshOneshotReceiver *r;
	MeshMessage *m = NULL;
	GError *error = NULL;

	mesh_oneshot_new(NULL, &s, &r);
	mesh_oneshot_sender_free(s);
	r = mesh_oneshot_receiver_from_port(mesh_oneshot_receiver_into_port(r), NULL);
	ck_assert(!mesh_oneshot_recv_message(r, 0, &m, &error));
	ck_assert(g_error_matches(error, MESH_ERROR, MESH_ERROR_CLOSED));
	g_error_free(error);
}
END_TEST

START_TEST(test_oneshot_extra_messages)
{
	MeshPort *a, *b;
	MeshOneshotReceiver *r;
	ProtobufCMessage *m = NULL;
	GError *error = NULL;

	mesh_port_new_pair(&a, &b);
	r = mesh_oneshot_receiver_from_port(b, &chantest__text__descriptor);
	MeshSender *two = mesh_sender_from_port(a, &chantest__text__descriptor);
	send_text(two, "one");
	send_text(two, "two");
	ck_assert(!mesh_oneshot_recv(r, 0, &m, &error));
	ck_assert_msg(g_error_matches(error, MESH_ERROR, MESH_ERROR_CORRUPTION), "%s",
		      error->message);
	ck_assert(strstr(error->message, "unexpected oneshot message"));
	g_error_free(error);
	ck_assert(mesh_sender_is_closed(two)); /* the port failed */
	mesh_sender_free(two);
}
END_TEST

START_TEST(test_oneshot_message_corruption)
{
	MeshOneshotSender *s;
	MeshOneshotReceiver *r;
	ProtobufCMessage *m = NULL;
	GError *error = NULL;
	MeshPort *a, *b;

	mesh_port_new_pair(&a, &b);
	s = mesh_oneshot_sender_from_port(a, NULL);
	r = mesh_oneshot_receiver_from_port(b, &chantest__number__descriptor);
	mesh_oneshot_send(s, &text_new("text", 0, 0)->base);
	ck_assert(!mesh_oneshot_recv(r, 0, &m, &error));
	ck_assert(g_error_matches(error, MESH_ERROR, MESH_ERROR_CORRUPTION));
	g_error_free(error);
}
END_TEST

typedef struct {
	MeshOneshotSender *sender;
	gint64 delay_us;
} DelayedSend;

static gpointer delayed_send(gpointer data)
{
	DelayedSend *ds = data;
	g_usleep((gulong)ds->delay_us); /* only to make the receiver wait */
	mesh_oneshot_send(ds->sender, &text_new("later", 0, 0)->base);
	return NULL;
}

START_TEST(test_oneshot_blocking)
{
	MeshOneshotReceiver *r;
	ProtobufCMessage *m = NULL;
	DelayedSend ds = {.delay_us = 20000};

	mesh_oneshot_new(&chantest__text__descriptor, &ds.sender, &r);
	GThread *t = g_thread_new("oneshot", delayed_send, &ds);
	ck_assert(mesh_oneshot_recv(r, WAIT_US, &m, NULL));
	ck_assert_str_eq(((Chantest__Text *)m)->text, "later");
	mesh_payload_message_free(m);
	g_thread_join(t);
}
END_TEST

/*
 * upstream oneshot.rs test_oneshot_message_corruption, its waiting half: a
 * receiver already blocked is woken by the corrupt value and fails.
 */
START_TEST(test_oneshot_message_corruption_wakes)
{
	MeshOneshotReceiver *r;
	ProtobufCMessage *m = NULL;
	GError *error = NULL;
	MeshPort *a, *b;
	DelayedSend ds = {.delay_us = 20000};

	mesh_port_new_pair(&a, &b);
	ds.sender = mesh_oneshot_sender_from_port(a, NULL);
	r = mesh_oneshot_receiver_from_port(b, &chantest__number__descriptor);
	GThread *t = g_thread_new("oneshot", delayed_send, &ds);
	gint64 start = g_get_monotonic_time();
	ck_assert(!mesh_oneshot_recv(r, WAIT_US, &m, &error));
	ck_assert_msg(g_error_matches(error, MESH_ERROR, MESH_ERROR_CORRUPTION), "%s",
		      error->message);
	ck_assert(g_get_monotonic_time() - start < WAIT_US);
	g_error_free(error);
	g_thread_join(t);
}
END_TEST

/* RPC. */

typedef struct {
	MeshReceiver *receiver;
	guint served;
	gboolean fail_next;
	gboolean drop_next;
} Server;

static gpointer server_thread(gpointer data)
{
	Server *sv = data;
	MeshRpc *rpc;
	GError *error = NULL;

	while (mesh_receiver_recv_rpc(sv->receiver, &chantest__add__descriptor, WAIT_US, &rpc,
				      &error)) {
		Chantest__Add *in = (Chantest__Add *)mesh_rpc_get_input(rpc);
		sv->served++;
		if (in->a == 0) {
			mesh_rpc_free(rpc); /* dropped: the caller sees CLOSED */
		} else if (in->b == 0) {
			GError *e = g_error_new(MESH_ERROR, MESH_ERROR_REMOTE, "outer: inner");
			mesh_rpc_fail(rpc, e);
			g_error_free(e);
		} else {
			mesh_rpc_complete(rpc, &sum_new(in->a + in->b)->base);
		}
	}
	ck_assert_msg(g_error_matches(error, MESH_ERROR, MESH_ERROR_CLOSED), "%s",
		      error->message);
	g_error_free(error);
	return NULL;
}

START_TEST(test_rpc)
{
	MeshSender *s;
	Server sv = {0};
	ProtobufCMessage *reply = NULL;
	GError *error = NULL;

	mesh_channel_new(NULL, &s, &sv.receiver);
	GThread *t = g_thread_new("server", server_thread, &sv);

	ck_assert(mesh_rpc_call(s, &add_new(3, 4)->base, &chantest__sum__descriptor, WAIT_US,
				&reply, &error));
	ck_assert_uint_eq(((Chantest__Sum *)reply)->v, 7);
	mesh_payload_message_free(reply);

	/* A failable call's error chain. */
	ck_assert(!mesh_rpc_call(s, &add_new(3, 0)->base, &chantest__sum__descriptor, WAIT_US,
				 &reply, &error));
	ck_assert(g_error_matches(error, MESH_ERROR, MESH_ERROR_REMOTE));
	ck_assert_str_eq(error->message, "outer: inner");
	g_clear_error(&error);

	/* A request dropped unanswered. */
	ck_assert(!mesh_rpc_call(s, &add_new(0, 1)->base, &chantest__sum__descriptor, WAIT_US,
				 &reply, &error));
	ck_assert(g_error_matches(error, MESH_ERROR, MESH_ERROR_CLOSED));
	g_clear_error(&error);

	/* An empty reply (all fields default) is still a reply. */
	ck_assert(mesh_rpc_call(s, &add_new(1, 0xffffffffu)->base, &chantest__sum__descriptor,
				WAIT_US, &reply, &error));
	ck_assert_uint_eq(((Chantest__Sum *)reply)->v, 0);
	mesh_payload_message_free(reply);

	mesh_sender_free(s);
	g_thread_join(t);
	ck_assert_uint_eq(sv.served, 4);
	mesh_receiver_free(sv.receiver);

	/* Nobody serves: the request is dropped with the receiver. */
	mesh_channel_new(NULL, &s, &sv.receiver);
	mesh_receiver_free(sv.receiver);
	ck_assert(!mesh_rpc_call(s, &add_new(1, 1)->base, &chantest__sum__descriptor, WAIT_US,
				 &reply, &error));
	ck_assert(g_error_matches(error, MESH_ERROR, MESH_ERROR_CLOSED));
	g_clear_error(&error);
	mesh_sender_free(s);

	/* Nobody answers in time. */
	mesh_channel_new(NULL, &s, &sv.receiver);
	ck_assert(!mesh_rpc_call(s, &add_new(1, 1)->base, &chantest__sum__descriptor, 10000,
				 &reply, &error));
	ck_assert(g_error_matches(error, MESH_ERROR, MESH_ERROR_TIMED_OUT));
	g_clear_error(&error);
	mesh_sender_free(s);
	mesh_receiver_free(sv.receiver);
}
END_TEST

/*
 * Async calls whose deadline passes at once (timeout 0), made on this
 * thread while another thread runs the callbacks' context: the deadline
 * may fire before the call returns, and must not finish the call before
 * it is set up (each callback once, TIMED_OUT; ASan sees the rest).
 */
typedef struct {
	GMainContext *context;
	GMainLoop *loop;
	GMutex lock;
	GCond cond;
	guint n_timed_out, n_other;
} DeadlineRace;

static void deadline_race_cb(ProtobufCMessage *reply, const GError *error, gpointer data)
{
	DeadlineRace *d = data;

	mesh_payload_message_free(reply);
	g_mutex_lock(&d->lock);
	if (g_error_matches(error, MESH_ERROR, MESH_ERROR_TIMED_OUT))
		d->n_timed_out++;
	else
		d->n_other++;
	g_cond_signal(&d->cond);
	g_mutex_unlock(&d->lock);
}

static gpointer deadline_race_loop(gpointer data)
{
	DeadlineRace *d = data;

	g_main_context_push_thread_default(d->context);
	g_main_loop_run(d->loop);
	g_main_context_pop_thread_default(d->context);
	return NULL;
}

static gboolean deadline_race_quit(gpointer data)
{
	g_main_loop_quit(((DeadlineRace *)data)->loop);
	return G_SOURCE_REMOVE;
}

START_TEST(test_rpc_async_deadline_race)
{
	enum { N = 3000 };
	DeadlineRace d = {.context = g_main_context_new()};
	MeshSender *s;
	MeshReceiver *r; /* never answers */

	d.loop = g_main_loop_new(d.context, FALSE);
	mesh_channel_new(NULL, &s, &r);
	GThread *t = g_thread_new("loop", deadline_race_loop, &d);
	for (guint i = 0; i < N; i++)
		mesh_rpc_call_unref(mesh_rpc_call_async(s, &add_new(i, 1)->base,
							&chantest__sum__descriptor, 0, d.context,
							deadline_race_cb, &d, NULL));
	g_mutex_lock(&d.lock);
	while (d.n_timed_out + d.n_other < N)
		g_cond_wait(&d.cond, &d.lock); /* bounded by the test's timeout */
	g_mutex_unlock(&d.lock);
	g_main_context_invoke(d.context, deadline_race_quit, &d);
	g_thread_join(t);
	ck_assert_uint_eq(d.n_timed_out, N);
	ck_assert_uint_eq(d.n_other, 0);
	mesh_sender_free(s);
	mesh_receiver_free(r);
	g_main_loop_unref(d.loop);
	g_main_context_unref(d.context);
}
END_TEST

START_TEST(test_rpc_bytes)
{
	MeshSender *s;
	MeshReceiver *r;
	MeshMessage *m = NULL;
	MeshRpc *rpc = NULL;
	ProtobufCMessage *reply = NULL;
	GError *error = NULL;
	size_t size;

	/* The request: {1: Add{3, 4}, 2: port}. Timeout 0: sent, not waited for. */
	mesh_channel_new(NULL, &s, &r);
	ck_assert(!mesh_rpc_call(s, &add_new(3, 4)->base, &chantest__sum__descriptor, 0, &reply,
				 &error));
	ck_assert(g_error_matches(error, MESH_ERROR, MESH_ERROR_EMPTY));
	g_clear_error(&error);
	ck_assert(mesh_receiver_recv_message(r, 0, &m, NULL));
	const uint8_t *data = mesh_message_get_data(m, &size);
	assert_bytes(data, size, "0a 04 08 03 10 04 17");
	ck_assert_uint_eq(mesh_message_get_n_resources(m), 1);
	mesh_message_free(m);

	/* An input with an fd: wire type 6 with its resource count. */
	Chantest__WithFd *wf = malloc(sizeof(*wf));
	chantest__with_fd__init(wf);
	wf->fd = mesh_payload_fd_new_take(open(DEV_NULL, O_RDONLY | O_CLOEXEC));
	mesh_rpc_call(s, &wf->base, &chantest__sum__descriptor, 0, &reply, NULL);
	ck_assert(mesh_receiver_recv_message(r, 0, &m, NULL));
	data = mesh_message_get_data(m, &size);
	assert_bytes(data, size, "0e 01 01 17 17");
	ck_assert_uint_eq(mesh_message_get_n_resources(m), 2);
	mesh_message_free(m);

	/* Replies, read raw at the caller's end of the reply port. */
	const char *expected[] = {
		/* Err(RemoteError{1: {1: ["outer", "inner"]}}) */
		"12 10 0a 0e 0a 05 6f 75 74 65 72 0a 05 69 6e 6e 65 72",
		/* Ok(Sum{7}) */
		"0a 02 08 07",
		/* Ok(Sum{0}): written although empty */
		"0a 00",
	};
	for (int i = 0; i < 3; i++) {
		MeshPort *a, *b;
		mesh_port_new_pair(&a, &b);
		MeshMessage *req = mesh_message_new("\x0a\x02\x08\x01\x17", 5);
		ck_assert_int_eq(mesh_message_add_port_take(req, a), 0);
		mesh_sender_send_message(s, req);
		ck_assert(mesh_receiver_recv_rpc(r, &chantest__add__descriptor, 0, &rpc, NULL));
		ck_assert_uint_eq(((Chantest__Add *)mesh_rpc_get_input(rpc))->a, 1);
		if (i == 0) {
			GError *e = g_error_new_literal(MESH_ERROR, MESH_ERROR_REMOTE, "outer: inner");
			mesh_rpc_fail(rpc, e);
			g_error_free(e);
		} else {
			mesh_rpc_complete(rpc, &sum_new(i == 1 ? 7 : 0)->base);
		}
		MeshOneshotReceiver *or = mesh_oneshot_receiver_from_port(b, NULL);
		ck_assert(mesh_oneshot_recv_message(or, 0, &m, NULL));
		data = mesh_message_get_data(m, &size);
		assert_bytes(data, size, expected[i]);
		mesh_message_free(m);
	}

	/* Malformed requests are dropped: the server's loop goes on. */
	mesh_sender_send_message(s, mesh_message_new("\x0a\x02\x08\x01", 4)); /* no port */
	mesh_sender_send_message(s, mesh_message_new("\x0a\x09\x08", 3)); /* truncated */
	MeshPort *a, *b;
	/* An unknown field whose varint is over 64 bits: the reader's one rule. */
	mesh_port_new_pair(&a, &b);
	MeshMessage *req = mesh_message_new("\x0a\x02\x08\x01"
					    "\x18\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02\x17",
					    16);
	ck_assert_int_eq(mesh_message_add_port_take(req, a), 0);
	mesh_sender_send_message(s, req);
	MeshOneshotReceiver *dropped = mesh_oneshot_receiver_from_port(b, NULL);
	mesh_port_new_pair(&a, &b);
	req = mesh_message_new("\x0a\x02\x08\x05\x17", 5);
	ck_assert_int_eq(mesh_message_add_port_take(req, a), 0);
	mesh_sender_send_message(s, req);
	ck_assert(mesh_receiver_recv_rpc(r, &chantest__add__descriptor, 0, &rpc, &error));
	ck_assert_uint_eq(((Chantest__Add *)mesh_rpc_get_input(rpc))->a, 5);
	ck_assert_uint_eq(mesh_receiver_get_n_dropped(r), 3);
	/* The dropped request's reply port was closed: its caller is not left waiting. */
	ck_assert(!mesh_oneshot_recv_message(dropped, 0, &m, &error)); /* consumes @dropped */
	ck_assert(g_error_matches(error, MESH_ERROR, MESH_ERROR_CLOSED));
	g_clear_error(&error);
	mesh_rpc_free(rpc);
	mesh_port_close(b);
	ck_assert(!mesh_receiver_recv_rpc(r, &chantest__add__descriptor, 0, &rpc, &error));
	ck_assert(g_error_matches(error, MESH_ERROR, MESH_ERROR_EMPTY));
	g_clear_error(&error);

	mesh_sender_free(s);
	mesh_receiver_free(r);
}
END_TEST

/* Across nodes (the in-memory transport; the real event encoding). */

/* The channel payload of the next packet (after the event header and resources). */
static void assert_next_payload(TestNet *net, const char *hex, guint n_res)
{
	MeshEventView view;
	g_mutex_lock(&net->lock);
	ck_assert_uint_ge(net->packets->len, 1);
	TestPacket *pk = net->packets->pdata[0];
	ck_assert_int_eq(protocol_event_parse(pk->data, pk->size, &view), 0);
	ck_assert_uint_eq(view.header.resource_count, n_res);
	assert_bytes(view.payload, view.header.message_size, hex);
	g_mutex_unlock(&net->lock);
}

START_TEST(test_net_channel)
{
	TestNet *net = test_net_new(2, 0);
	MeshPort *p0, *p1;
	ProtobufCMessage *m = NULL;

	test_net_port_pair(net, 0, 1, &p0, &p1);
	MeshSender *s = mesh_sender_from_port(p1, &chantest__add__descriptor);
	MeshReceiver *r = mesh_receiver_from_port(p0, &chantest__add__descriptor);

	mesh_sender_send(s, &add_new(3, 4)->base);
	assert_next_payload(net, "0a 04 08 03 10 04", 0);
	test_net_pump(net);
	ck_assert(mesh_receiver_recv(r, 0, &m, NULL));
	ck_assert_uint_eq(((Chantest__Add *)m)->a, 3);
	ck_assert_uint_eq(((Chantest__Add *)m)->b, 4);
	mesh_payload_message_free(m);

	/* A default value: field 1 written, empty. */
	mesh_sender_send(s, &add_new(0, 0)->base);
	assert_next_payload(net, "0a 00", 0);
	test_net_pump(net);
	ck_assert(mesh_receiver_recv(r, 0, &m, NULL));
	mesh_payload_message_free(m);

	/* A clone: its port travels as field 2, wire type 7. */
	MeshSender *s2 = mesh_sender_clone(s);
	assert_next_payload(net, "17", 1);
	test_net_pump(net);
	mesh_sender_send(s2, &add_new(5, 6)->base);
	mesh_sender_send(s, &add_new(1, 2)->base);
	test_net_pump(net);
	guint sum = 0;
	for (int i = 0; i < 2; i++) {
		ck_assert(mesh_receiver_recv(r, 0, &m, NULL));
		sum += ((Chantest__Add *)m)->a;
		mesh_payload_message_free(m);
	}
	ck_assert_uint_eq(sum, 6);

	mesh_sender_free(s);
	test_net_pump(net);
	expect_error(r, 0, MESH_ERROR_EMPTY);
	mesh_sender_free(s2);
	test_net_pump(net);
	expect_error(r, 0, MESH_ERROR_CLOSED);
	mesh_receiver_free(r);
	test_net_pump(net);
	for (guint i = 0; i < net->n; i++)
		ck_assert_uint_eq(mesh_node_count_ports(net->nodes[i]), 0);
	test_net_free(net);
}
END_TEST

START_TEST(test_net_fd_and_corruption)
{
	TestNet *net = test_net_new(2, 0);
	MeshPort *p0, *p1;
	ProtobufCMessage *m = NULL;
	GError *error = NULL;
	int fds[2];

	/* An fd through a channel across nodes (Windows: a HANDLE between them): the same pipe. */
	test_net_port_pair(net, 0, 1, &p0, &p1);
	MeshSender *s = mesh_sender_from_port(p1, &chantest__with_fd__descriptor);
	MeshReceiver *r = mesh_receiver_from_port(p0, &chantest__with_fd__descriptor);
	ck_assert_int_eq(pipe2(fds, O_CLOEXEC), 0);
	Chantest__WithFd *out = malloc(sizeof(*out));
	chantest__with_fd__init(out);
	out->fd = mesh_payload_fd_new_take(fds[1]);
	mesh_sender_send(s, &out->base);
	assert_next_payload(net, "0e 01 01 17", 1);
	test_net_pump(net);
	ck_assert(mesh_receiver_recv(r, 0, &m, NULL));
	int got = mesh_payload_fd_steal(((Chantest__WithFd *)m)->fd);
	mesh_payload_message_free(m);
	ck_assert_int_ge(got, 0);
#ifndef G_OS_WIN32
	struct stat a, b;
	ck_assert_int_eq(fstat(got, &a), 0);
	ck_assert_int_eq(fstat(fds[0], &b), 0);
	ck_assert(a.st_dev == b.st_dev); /* the pipe's two ends share a device */
#endif
	ck_assert_int_eq(write(got, "y", 1), 1);
	char c = 0;
	ck_assert_int_eq(read(fds[0], &c, 1), 1);
	ck_assert_int_eq(c, 'y');
	close(got);
	close(fds[0]);
	mesh_sender_free(s);
	mesh_receiver_free(r);
	test_net_pump(net);

	/* test_message_corruption across nodes: decoded as the wrong type. */
	test_net_port_pair(net, 0, 1, &p0, &p1);
	s = mesh_sender_from_port(p1, &chantest__text__descriptor);
	r = mesh_receiver_from_port(p0, &chantest__number__descriptor);
	send_text(s, "text");
	test_net_pump(net);
	ck_assert(!mesh_receiver_recv(r, 0, &m, &error));
	ck_assert(g_error_matches(error, MESH_ERROR, MESH_ERROR_CORRUPTION));
	g_clear_error(&error);
	test_net_pump(net);
	ck_assert(mesh_sender_is_closed(s));
	expect_error(r, 0, MESH_ERROR_CLOSED);
	mesh_sender_free(s);
	mesh_receiver_free(r);

	/* Malformed channel framing from another node. */
	test_net_port_pair(net, 0, 1, &p0, &p1);
	r = mesh_receiver_from_port(p0, &chantest__text__descriptor);
	ck_assert(port_send_bytes(p1, "\x12\x00"));
	test_net_pump(net);
	expect_error(r, 0, MESH_ERROR_CORRUPTION);
	test_net_pump(net);
	ck_assert_int_eq(port_get_state(p1), PORT_FAILED);
	mesh_port_close(p1);
	mesh_receiver_free(r);

	/*
	 * One corrupt sender among several, from another node: a receive
	 * loop gets every good message and ends "closed".
	 */
	test_net_port_pair(net, 0, 1, &p0, &p1);
	r = mesh_receiver_from_port(p0, &chantest__text__descriptor);
	s = mesh_sender_from_port(p1, &chantest__text__descriptor);
	MeshSender *s2 = mesh_sender_clone(s);
	MeshPort *bad = mesh_sender_into_port(mesh_sender_clone(s));
	MeshSender *s3 = mesh_sender_clone(s);
	test_net_pump(net);
	send_text(s, "a");
	ck_assert(port_send_bytes(bad, "\x12\x00")); /* malformed framing */
	send_text(s2, "b");
	ck_assert(port_send_bytes(bad, "\x0a\x02\x0a\x00")); /* valid, after it */
	send_text(s3, "c");
	test_net_pump(net);
	mesh_sender_free(s);
	mesh_sender_free(s2);
	mesh_sender_free(s3);
	test_net_pump(net);
	guint n = 0;
	while (mesh_receiver_recv(r, 0, &m, &error)) {
		n++;
		mesh_payload_message_free(m);
	}
	ck_assert_msg(g_error_matches(error, MESH_ERROR, MESH_ERROR_CLOSED), "%s", error->message);
	g_clear_error(&error);
	ck_assert_uint_eq(n, 3);
	ck_assert_uint_ge(mesh_receiver_get_n_dropped(r), 1);
	ck_assert_int_eq(port_get_state(bad), PORT_FAILED);
	mesh_port_close(bad);
	mesh_receiver_free(r);
	test_net_pump(net);
	test_net_free(net);
}
END_TEST

START_TEST(test_net_receiver_moved)
{
	TestNet *net = test_net_new(3, 0);
	MeshPort *p0, *p1, *q1, *q2;
	ProtobufCMessage *m = NULL;

	/* Channel X: senders on node 0, receiver on node 1 with messages queued. */
	test_net_port_pair(net, 0, 1, &p0, &p1);
	MeshSender *s = mesh_sender_from_port(p0, &chantest__text__descriptor);
	MeshReceiver *r = mesh_receiver_from_port(p1, &chantest__text__descriptor);
	MeshSender *s2 = mesh_sender_clone(s);
	send_text(s, "a1");
	send_text(s2, "b1");
	test_net_pump(net);

	/* The receiver moves to node 2 inside a message on channel Y. */
	test_net_port_pair(net, 1, 2, &q1, &q2);
	MeshSender *ys = mesh_sender_from_port(q1, &chantest__with_port__descriptor);
	MeshReceiver *yr = mesh_receiver_from_port(q2, &chantest__with_port__descriptor);
	mesh_sender_send(ys, &with_port_new("receiver", mesh_receiver_into_port(r))->base);
	send_text(s, "a2");
	test_net_pump(net);
	ck_assert(mesh_receiver_recv(yr, 0, &m, NULL));
	r = mesh_receiver_from_port(with_port_steal(m), &chantest__text__descriptor);
	send_text(s2, "b2");
	test_net_pump(net);
	expect_text(r, "a1");
	expect_text(r, "b1");
	/* No order across senders; per sender it holds. */
	ProtobufCMessage *x = NULL, *y = NULL;
	ck_assert(mesh_receiver_recv(r, 0, &x, NULL));
	ck_assert(mesh_receiver_recv(r, 0, &y, NULL));
	const char *tx = ((Chantest__Text *)x)->text, *ty = ((Chantest__Text *)y)->text;
	ck_assert((strcmp(tx, "a2") == 0 && strcmp(ty, "b2") == 0) ||
		  (strcmp(tx, "b2") == 0 && strcmp(ty, "a2") == 0));
	mesh_payload_message_free(x);
	mesh_payload_message_free(y);
	mesh_sender_free(s);
	mesh_sender_free(s2);
	test_net_pump(net);
	expect_error(r, 0, MESH_ERROR_CLOSED);
	mesh_receiver_free(r);
	mesh_sender_free(ys);
	mesh_receiver_free(yr);
	test_net_pump(net);
	for (guint i = 0; i < net->n; i++)
		ck_assert_uint_eq(mesh_node_count_ports(net->nodes[i]), 0);
	test_net_free(net);
}
END_TEST

typedef struct {
	MeshSender *s;
	guint a, b;
	gboolean ok;
	guint v;
	GError *error;
	gint done;
} Call;

static gpointer caller_thread(gpointer data)
{
	Call *c = data;
	ProtobufCMessage *reply = NULL;

	c->ok = mesh_rpc_call(c->s, &add_new(c->a, c->b)->base, &chantest__sum__descriptor,
			      WAIT_US, &reply, &c->error);
	if (c->ok) {
		c->v = ((Chantest__Sum *)reply)->v;
		mesh_payload_message_free(reply);
	}
	g_atomic_int_set(&c->done, 1);
	return NULL;
}

typedef struct {
	GThread *thread;
	gint *done;
} ServerJoin;

static gpointer server_join(gpointer data)
{
	ServerJoin *sj = data;
	g_thread_join(sj->thread);
	g_atomic_int_set(sj->done, 1);
	return NULL;
}

/* Delivers packets until *@flag is set by another thread (bounded). */
static void pump_until(TestNet *net, gint *flag)
{
	gint64 deadline = g_get_monotonic_time() + WAIT_US;

	while (!g_atomic_int_get(flag)) {
		ck_assert_msg(g_get_monotonic_time() < deadline, "pumping timed out");
		if (!test_net_step(net))
			g_usleep(100); /* nothing in flight: let the other threads run */
	}
	test_net_pump(net);
}

START_TEST(test_net_rpc_and_oneshot)
{
	TestNet *net = test_net_new(2, 0);
	MeshPort *p0, *p1;
	MeshRpc *rpc = NULL;
	ProtobufCMessage *reply = NULL;

	/* The request, on the wire: mpsc field 1 (type 6) around {1: input, 2: port}. */
	test_net_port_pair(net, 0, 1, &p0, &p1);
	MeshSender *s = mesh_sender_from_port(p0, NULL);
	MeshReceiver *r = mesh_receiver_from_port(p1, NULL);
	ck_assert(!mesh_rpc_call(s, &add_new(3, 4)->base, &chantest__sum__descriptor, 0, &reply,
				 NULL));
	assert_next_payload(net, "0e 01 07 0a 04 08 03 10 04 17", 1);
	test_net_pump(net);
	ck_assert(mesh_receiver_recv_rpc(r, &chantest__add__descriptor, 0, &rpc, NULL));
	mesh_rpc_free(rpc);
	test_net_pump(net);

	/* An input holding an fd: wire type 6 inside wire type 6. */
	Chantest__WithFd *wf = malloc(sizeof(*wf));
	chantest__with_fd__init(wf);
	wf->fd = mesh_payload_fd_new_take(open(DEV_NULL, O_RDONLY | O_CLOEXEC));
	ck_assert(!mesh_rpc_call(s, &wf->base, &chantest__sum__descriptor, 0, &reply, NULL));
	assert_next_payload(net, "0e 02 05 0e 01 01 17 17", 2);
	test_net_pump(net);
	ck_assert(mesh_receiver_recv_rpc(r, &chantest__with_fd__descriptor, 0, &rpc, NULL));
	struct stat st;
	ck_assert_int_eq(fstat(((Chantest__WithFd *)mesh_rpc_get_input(rpc))->fd->fd, &st), 0);
	ck_assert(S_ISCHR(st.st_mode));
	mesh_rpc_free(rpc);
	test_net_pump(net);

	/* Replies, on the wire: oneshot field 1 around the Result, with the close flag. */
	static const struct {
		const char *wire, *result;
	} replies[] = {
		{"0a 12 12 10 0a 0e 0a 05 6f 75 74 65 72 0a 05 69 6e 6e 65 72",
		 "12 10 0a 0e 0a 05 6f 75 74 65 72 0a 05 69 6e 6e 65 72"},
		{"0a 04 0a 02 08 07", "0a 02 08 07"},
		{"0a 02 0a 00", "0a 00"},
	};
	for (guint i = 0; i < G_N_ELEMENTS(replies); i++) {
		MeshOneshotSender *os;
		MeshOneshotReceiver *orx;
		mesh_oneshot_new(NULL, &os, &orx);
		MeshMessage *req = mesh_message_new("\x0a\x02\x08\x01\x17", 5);
		ck_assert_int_eq(mesh_message_add_port_take(req, mesh_oneshot_sender_into_port(os)),
				 0);
		mesh_sender_send_message(s, req);
		test_net_pump(net);
		ck_assert(mesh_receiver_recv_rpc(r, &chantest__add__descriptor, 0, &rpc, NULL));
		if (i == 0) {
			GError *e = g_error_new_literal(MESH_ERROR, MESH_ERROR_REMOTE,
							"outer: inner");
			mesh_rpc_fail(rpc, e);
			g_error_free(e);
		} else {
			mesh_rpc_complete(rpc, &sum_new(i == 1 ? 7 : 0)->base);
		}
		assert_next_payload(net, replies[i].wire, 0);
		g_mutex_lock(&net->lock);
		MeshEventView view;
		TestPacket *pk = net->packets->pdata[0];
		ck_assert_int_eq(protocol_event_parse(pk->data, pk->size, &view), 0);
		ck_assert_uint_eq(view.header.flags, MESH_EVENT_FLAG_MESSAGE | MESH_EVENT_FLAG_CLOSE);
		g_mutex_unlock(&net->lock);
		test_net_pump(net);
		MeshMessage *m = NULL;
		ck_assert(mesh_oneshot_recv_message(orx, 0, &m, NULL));
		size_t size;
		const uint8_t *data = mesh_message_get_data(m, &size);
		assert_bytes(data, size, replies[i].result);
		mesh_message_free(m);
	}

	/* Full calls across nodes: a server thread, a caller thread, this one pumps. */
	Server sv = {.receiver = r};
	GThread *t = g_thread_new("server", server_thread, &sv);
	Call call = {.s = s, .a = 3, .b = 4};
	GThread *ct = g_thread_new("caller", caller_thread, &call);
	pump_until(net, &call.done);
	g_thread_join(ct);
	ck_assert_msg(call.ok, "%s", call.error ? call.error->message : "");
	ck_assert_uint_eq(call.v, 7);
	call = (Call){.s = s, .a = 5, .b = 0};
	ct = g_thread_new("caller", caller_thread, &call);
	pump_until(net, &call.done);
	g_thread_join(ct);
	ck_assert(!call.ok);
	ck_assert(g_error_matches(call.error, MESH_ERROR, MESH_ERROR_REMOTE));
	ck_assert_str_eq(call.error->message, "outer: inner");
	g_clear_error(&call.error);
	mesh_sender_free(s);
	gint server_done = 0;
	ServerJoin sj = {t, &server_done};
	GThread *jt = g_thread_new("join", server_join, &sj);
	pump_until(net, &server_done);
	g_thread_join(jt);
	ck_assert_uint_eq(sv.served, 2);
	mesh_receiver_free(r);
	test_net_free(net);
}
END_TEST

typedef struct {
	TestNet *net;
	gint stop;
} Pumper;

static gpointer pump_thread(gpointer data)
{
	Pumper *pm = data;

	while (!g_atomic_int_get(&pm->stop))
		if (!test_net_step(pm->net))
			g_usleep(50);
	return NULL;
}

START_TEST(test_net_clone_per_message)
{
	TestNet *net = test_net_new(2, 0);
	MeshPort *p0, *p1;
	SenderThread t[N_THREADS];
	GThread *threads[N_THREADS];
	LoopThread lt;
	CallbackState st = {.lt = &lt};
	Pumper pm = {net, 0};

	/* Senders on node 1 clone, send and drop concurrently; two threads deliver. */
	test_net_port_pair(net, 0, 1, &p0, &p1);
	MeshSender *s = mesh_sender_from_port(p1, &chantest__text__descriptor);
	MeshReceiver *r = mesh_receiver_from_port(p0, &chantest__text__descriptor);
	loop_thread_start(&lt);
	mesh_receiver_set_callback(r, lt.context, count_cb, &st, NULL);
	GThread *pumpers[2] = {g_thread_new("pump", pump_thread, &pm),
			       g_thread_new("pump", pump_thread, &pm)};
	for (guint i = 0; i < N_THREADS; i++) {
		t[i] = (SenderThread){s, i, 300};
		threads[i] = g_thread_new("cloner", clone_sender_thread, &t[i]);
	}
	for (guint i = 0; i < N_THREADS; i++)
		g_thread_join(threads[i]);
	mesh_sender_free(s);
	loop_thread_join(&lt);
	g_atomic_int_set(&pm.stop, 1);
	g_thread_join(pumpers[0]);
	g_thread_join(pumpers[1]);
	ck_assert(st.closed);
	ck_assert_uint_eq(st.received, N_THREADS * 300);
	mesh_receiver_free(r);
	test_net_pump(net);
	for (guint i = 0; i < net->n; i++)
		ck_assert_uint_eq(mesh_node_count_ports(net->nodes[i]), 0);
	test_net_free(net);
}
END_TEST

START_TEST(test_net_node_failure)
{
	TestNet *net = test_net_new(2, 0);
	MeshPort *p0, *p1;
	GError *error = NULL;
	MeshMessage *m = NULL;
	char id[33];

	/* The last sender's node fails with nothing queued: NODE_FAILURE naming it. */
	test_net_port_pair(net, 0, 1, &p0, &p1);
	MeshReceiver *r = mesh_receiver_from_port(p0, &chantest__text__descriptor);
	MeshSender *s = mesh_sender_from_port(p1, &chantest__text__descriptor);
	/* A message queued when another channel's node fails is still received. */
	MeshPort *q0, *q1;
	test_net_port_pair(net, 0, 1, &q0, &q1);
	MeshReceiver *r2 = mesh_receiver_from_port(q0, &chantest__text__descriptor);
	MeshSender *s2 = mesh_sender_from_port(q1, &chantest__text__descriptor);
	send_text(s2, "queued");
	/* A oneshot whose sender is on the failing node (an rpc server that crashed). */
	MeshPort *o0, *o1;
	test_net_port_pair(net, 0, 1, &o0, &o1);
	MeshOneshotReceiver *orx = mesh_oneshot_receiver_from_port(o0, NULL);
	MeshOneshotSender *os = mesh_oneshot_sender_from_port(o1, NULL);
	test_net_pump(net);

	test_net_disconnect(net, 0, 1);
	test_net_pump(net);
	ck_assert(!mesh_receiver_recv_message(r, 0, &m, &error));
	ck_assert(g_error_matches(error, MESH_ERROR, MESH_ERROR_NODE_FAILURE));
	mesh_uuid_to_string(mesh_node_get_id(net->nodes[1]), id);
	ck_assert_msg(strstr(error->message, id), "%s does not name %s", error->message, id);
	g_clear_error(&error);
	ck_assert(mesh_sender_is_closed(s));

	/* ... and then the failure: the stream was cut short, not finished. */
	expect_text(r2, "queued");
	expect_error(r2, 0, MESH_ERROR_NODE_FAILURE);

	ck_assert(!mesh_oneshot_recv_message(orx, 0, &m, &error));
	ck_assert(g_error_matches(error, MESH_ERROR, MESH_ERROR_NODE_FAILURE));
	g_clear_error(&error);

	mesh_oneshot_sender_free(os);
	mesh_sender_free(s);
	mesh_sender_free(s2);
	mesh_receiver_free(r);
	mesh_receiver_free(r2);
	test_net_free(net);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("libmeshremote-channel");

	TCase *mpsc = tcase_create("mpsc");
	tcase_add_test(mpsc, test_basic);
	tcase_add_test(mpsc, test_in_process_no_encoding);
	tcase_add_test(mpsc, test_untyped);
	tcase_add_test(mpsc, test_from_bytes);
	tcase_add_test(mpsc, test_negative_timeout);
	tcase_add_test(mpsc, test_clone);
	tcase_add_test(mpsc, test_convert_sender_port);
	tcase_add_test(mpsc, test_convert_receiver_port);
	tcase_add_test(mpsc, test_non_port_and_port_sender);
	tcase_add_test(mpsc, test_port_receiver_with_senders_and_messages);
	tcase_add_test(mpsc, test_receiver_port_after_close);
	tcase_add_test(mpsc, test_send_receiver_in_message);
	tcase_add_test(mpsc, test_send_fd);
	tcase_add_test(mpsc, test_send_after_receiver_dropped);
	tcase_add_test(mpsc, test_sender_bridge);
	tcase_add_test(mpsc, test_bridge_queued);
	tcase_add_test(mpsc, test_message_corruption);
	tcase_add_test(mpsc, test_corrupt_sender_loop);
	tcase_add_test(mpsc, test_malformed_framing);
	tcase_add_test(mpsc, test_sender_failure);
	tcase_add_test(mpsc, test_senders_come_and_go);
	tcase_add_test(mpsc, test_timeouts);
	tcase_add_test(mpsc, test_poll_fd);
	suite_add_tcase(s, mpsc);

	TCase *threads = tcase_create("threads");
	tcase_set_timeout(threads, 120);
	tcase_add_test(threads, test_threads);
	tcase_add_test(threads, test_callbacks);
	tcase_add_test(threads, test_callbacks_clone_per_message);
	tcase_add_test(threads, test_callback_not_locked);
	tcase_add_test(threads, test_callback_replace);
	suite_add_tcase(s, threads);

	TCase *oneshot = tcase_create("oneshot");
	tcase_add_test(oneshot, test_oneshot);
	tcase_add_test(oneshot, test_oneshot_closed);
	tcase_add_test(oneshot, test_oneshot_failed);
	tcase_add_test(oneshot, test_oneshot_convert);
	tcase_add_test(oneshot, test_oneshot_convert_closed);
	tcase_add_test(oneshot, test_oneshot_extra_messages);
	tcase_add_test(oneshot, test_oneshot_message_corruption);
	tcase_add_test(oneshot, test_oneshot_message_corruption_wakes);
	tcase_add_test(oneshot, test_oneshot_blocking);
	suite_add_tcase(s, oneshot);

	TCase *rpc = tcase_create("rpc");
	tcase_add_test(rpc, test_rpc);
	tcase_add_test(rpc, test_rpc_bytes);
	tcase_add_test(rpc, test_rpc_async_deadline_race);
	suite_add_tcase(s, rpc);

	TCase *net = tcase_create("net");
	tcase_add_test(net, test_net_channel);
	tcase_add_test(net, test_net_fd_and_corruption);
	tcase_add_test(net, test_net_receiver_moved);
	tcase_add_test(net, test_net_rpc_and_oneshot);
	tcase_add_test(net, test_net_node_failure);
	tcase_add_test(net, test_net_clone_per_message);
	suite_add_tcase(s, net);

	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_ENV);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
