/* SPDX-License-Identifier: MIT */
/*
 * The ALPC node against the test stand-in of NtAlpc (alpc-standin.c), under
 * Wine: two or three nodes of this process, each with its own server port,
 * talking over the stand-in's named pipes. What this shows is the node's
 * logic (framing, handle attributes, section lifetime, the secret check,
 * failure on disconnection, the flush), not real ALPC.
 */
#include <check.h>
#include <string.h>

#include "alpc-node-private.h"
#include "alpc-standin.h"

/* MESH_ALPC_TEST_REAL=1 (on Windows): ntdll's ALPC instead of the stand-in;
 * the checks on the stand-in's counters are skipped then. */
static gboolean real_alpc(void)
{
	return g_getenv("MESH_ALPC_TEST_REAL") != NULL;
}

static const MeshAlpcNtApi *test_api(void)
{
	const char *missing = NULL;
	const MeshAlpcNtApi *api;

	if (!real_alpc())
		return alpc_standin_api();
	api = alpc_nt_api_ntdll(&missing);
	ck_assert_msg(api, "MESH_ALPC_TEST_REAL is set, but ntdll has no %s", missing);
	return api;
}

typedef struct {
	HANDLE dir;
	guint8 secret[MESH_ALPC_SECRET_SIZE];
	MeshAlpcNode *a, *b;
	MeshSender *send; /* a -> b */
	MeshReceiver *recv;
} Pair;

static HANDLE dup_handle(HANDLE h)
{
	HANDLE out = NULL;

	ck_assert(DuplicateHandle(GetCurrentProcess(), h, GetCurrentProcess(), &out, 0, FALSE,
				  DUPLICATE_SAME_ACCESS));
	return out;
}

static MeshAlpcNode *node_new(HANDLE dir, const guint8 *secret)
{
	g_autoptr(GError) error = NULL;
	MeshAlpcNode *n = alpc_node_new_full(test_api(), dup_handle(dir), NULL,
						  secret, &error);

	ck_assert_msg(n, "%s", error ? error->message : "?");
	return n;
}

/* A channel from a to b, bootstrapped with mesh_node_add_port() on both. */
static void channel_between(MeshAlpcNode *a, MeshAlpcNode *b, MeshSender **ret_send,
			    MeshReceiver **ret_recv)
{
	MeshPortId pa, pb;
	MeshNode *na = mesh_alpc_node_get_node(a), *nb = mesh_alpc_node_get_node(b);

	mesh_uuid_generate(&pa);
	mesh_uuid_generate(&pb);
	*ret_send = mesh_sender_from_port(
		mesh_node_add_port(na, &pa, mesh_node_get_id(nb), &pb), NULL);
	*ret_recv = mesh_receiver_from_port(
		mesh_node_add_port(nb, &pb, mesh_node_get_id(na), &pa), NULL);
}

static void pair_init(Pair *p)
{
	OBJECT_ATTRIBUTES oa = { .Length = sizeof(oa) };
	char ns[64];

	g_snprintf(ns, sizeof(ns), "n%lu-%lu", GetCurrentProcessId(), GetTickCount());
	SetEnvironmentVariableA("MESH_ALPC_STANDIN_NS", ns);
	ck_assert(NT_SUCCESS(test_api()->create_directory_object(
		&p->dir, STANDARD_RIGHTS_REQUIRED | 0xF, &oa)));
	mesh_uuid_generate((MeshUuid *)p->secret);
	mesh_uuid_generate((MeshUuid *)(p->secret + 16));
	p->a = node_new(p->dir, p->secret);
	p->b = node_new(p->dir, p->secret);
	channel_between(p->a, p->b, &p->send, &p->recv);
}

static void pair_clear(Pair *p)
{
	mesh_sender_free(p->send);
	mesh_receiver_free(p->recv);
	mesh_alpc_node_shutdown(p->a, 5 * G_USEC_PER_SEC);
	mesh_alpc_node_shutdown(p->b, 5 * G_USEC_PER_SEC);
	mesh_alpc_node_free(p->a);
	mesh_alpc_node_free(p->b);
	CloseHandle(p->dir);
}

static MeshMessage *recv_one(MeshReceiver *r)
{
	g_autoptr(GError) error = NULL;
	MeshMessage *msg = NULL;

	ck_assert_msg(mesh_receiver_recv_message(r, 20 * G_USEC_PER_SEC, &msg, &error), "%s",
		      error ? error->message : "?");
	return msg;
}

/* Sizes around the small/large boundary and well past it: all arrive
 * intact and in order. */
START_TEST(test_framing)
{
	Pair p = { 0 };
	static const gsize sizes[] = { 0, 1, 100, ALPC_MAX_SMALL_EVENT - 64,
				       ALPC_MAX_SMALL_EVENT - 40, ALPC_MAX_SMALL_EVENT,
				       ALPC_MAX_SMALL_EVENT + 1, ALPC_MAX_MESSAGE,
				       ALPC_MAX_MESSAGE + 4096, 3 << 20 };

	pair_init(&p);
	for (gsize i = 0; i < G_N_ELEMENTS(sizes); i++) {
		g_autofree guint8 *data = g_malloc(sizes[i] + 1);

		for (gsize j = 0; j < sizes[i]; j++)
			data[j] = (guint8)(j * 13 + i);
		mesh_sender_send_message(p.send, mesh_message_new(data, sizes[i]));
	}
	for (gsize i = 0; i < G_N_ELEMENTS(sizes); i++) {
		MeshMessage *msg = recv_one(p.recv);
		size_t size;
		const guint8 *d = mesh_message_get_data(msg, &size);

		ck_assert_uint_eq(size, sizes[i]);
		for (gsize j = 0; j < size; j++)
			if (d[j] != (guint8)(j * 13 + i))
				ck_abort_msg("byte %zu of message %zu differs", (size_t)j, (size_t)i);
		mesh_message_free(msg);
	}
	pair_clear(&p);
}
END_TEST

/* A large event's sections: the sender's is gone once sent, the
 * receiver's view lives exactly as long as the message that points into it. */
START_TEST(test_section_lifetime)
{
	Pair p = { 0 };
	long sections, views, unclaimed;
	g_autofree guint8 *data = g_malloc0(1 << 20);
	MeshMessage *msg;

	pair_init(&p);
	memset(data, 0xcd, 1 << 20);
	mesh_sender_send_message(p.send, mesh_message_new(data, 1 << 20));
	msg = recv_one(p.recv);
	{
		size_t size;
		const guint8 *d = mesh_message_get_data(msg, &size);

		ck_assert_uint_eq(size, 1 << 20);
		ck_assert(d[0] == 0xcd && d[size - 1] == 0xcd);
	}
	if (real_alpc()) {
		mesh_message_free(msg);
		pair_clear(&p);
		return;
	}
	alpc_standin_counts(&sections, &views, &unclaimed);
	ck_assert_int_eq(sections, 0);
	/* The message still refers to the view, or it copied out of it: either
	 * way at most the one view is live, and none after it is freed. */
	ck_assert_int_le(views, 1);
	mesh_message_free(msg);
	alpc_standin_counts(&sections, &views, &unclaimed);
	ck_assert_int_eq(views, 0);
	ck_assert_int_eq(unclaimed, 0);
	pair_clear(&p);
}
END_TEST

START_TEST(test_secret_compare)
{
	guint8 a[MESH_ALPC_SECRET_SIZE], b[MESH_ALPC_SECRET_SIZE];

	memset(a, 0x5a, sizeof(a));
	memcpy(b, a, sizeof(b));
	ck_assert(alpc_secret_equal(a, b));
	for (gsize i = 0; i < sizeof(a); i++) {
		b[i] ^= 0x01;
		ck_assert(!alpc_secret_equal(a, b));
		b[i] ^= 0x81;
		ck_assert(!alpc_secret_equal(a, b));
		b[i] ^= 0x80;
	}
	ck_assert(alpc_secret_equal(a, b));
}
END_TEST

/* A node with the wrong secret is refused: its port toward the node fails
 * naming it, and nothing reaches the node's receiver. */
START_TEST(test_wrong_secret)
{
	Pair p = { 0 };
	guint8 wrong[MESH_ALPC_SECRET_SIZE];
	MeshAlpcNode *c;
	MeshSender *send;
	MeshReceiver *recv;
	MeshMessage *msg = NULL;
	g_autoptr(GError) error = NULL;
	char hex[33];

	pair_init(&p);
	memcpy(wrong, p.secret, sizeof(wrong));
	wrong[31] ^= 1;
	c = node_new(p.dir, wrong);
	channel_between(c, p.b, &send, &recv);
	mesh_sender_send_message(send, mesh_message_new("x", 1));
	ck_assert(!mesh_receiver_recv_message(recv, 2 * G_USEC_PER_SEC, &msg, &error));
	g_clear_error(&error);
	/* The sender's side learns it: its port fails, naming node b. */
	for (int i = 0; i < 200 && !mesh_sender_is_closed(send); i++)
		g_usleep(50000);
	ck_assert(mesh_sender_is_closed(send));
	(void)hex;
	mesh_sender_free(send);
	mesh_receiver_free(recv);
	mesh_alpc_node_free(c);
	/* The right secret still works. */
	mesh_sender_send_message(p.send, mesh_message_new("ok", 2));
	mesh_message_free(recv_one(p.recv));
	pair_clear(&p);
}
END_TEST

/* A node that goes away without a shutdown: the ports that depend on it
 * fail, and the error names it. */
START_TEST(test_peer_disconnect)
{
	Pair p = { 0 };
	MeshSender *back_send;
	MeshReceiver *back_recv;
	MeshMessage *msg = NULL;
	g_autoptr(GError) error = NULL;
	char hex[33];

	pair_init(&p);
	channel_between(p.b, p.a, &back_send, &back_recv);
	/* Both directions connected. */
	mesh_sender_send_message(p.send, mesh_message_new("1", 1));
	mesh_message_free(recv_one(p.recv));
	mesh_sender_send_message(back_send, mesh_message_new("2", 1));
	mesh_message_free(recv_one(back_recv));
	mesh_uuid_to_string(mesh_node_get_id(mesh_alpc_node_get_node(p.b)), hex);
	/* b goes: its ports close, without a flush. */
	mesh_sender_free(back_send);
	mesh_receiver_free(p.recv);
	p.recv = NULL;
	mesh_alpc_node_free(p.b);
	p.b = NULL;
	ck_assert(!mesh_receiver_recv_message(back_recv, 20 * G_USEC_PER_SEC, &msg, &error));
	ck_assert(error);
	ck_assert_msg(g_error_matches(error, MESH_ERROR, MESH_ERROR_NODE_FAILURE) ||
			      g_error_matches(error, MESH_ERROR, MESH_ERROR_CLOSED),
		      "%s", error->message);
	if (g_error_matches(error, MESH_ERROR, MESH_ERROR_NODE_FAILURE))
		ck_assert_msg(strstr(error->message, hex), "%s does not name %s", error->message,
			      hex);
	mesh_receiver_free(back_recv);
	mesh_sender_free(p.send);
	mesh_alpc_node_free(p.a);
	CloseHandle(p.dir);
}
END_TEST

/* The flush: what a sent before its shutdown is at b when it returns,
 * even though a's ports are gone. */
START_TEST(test_flush_at_shutdown)
{
	Pair p = { 0 };
	enum { N = 200 };

	pair_init(&p);
	mesh_sender_send_message(p.send, mesh_message_new("first", 5));
	mesh_message_free(recv_one(p.recv));
	for (int i = 0; i < N; i++) {
		guint32 v = (guint32)i;

		mesh_sender_send_message(p.send, mesh_message_new(&v, sizeof(v)));
	}
	mesh_sender_free(p.send);
	p.send = NULL;
	ck_assert(mesh_alpc_node_shutdown(p.a, 20 * G_USEC_PER_SEC));
	for (int i = 0; i < N; i++) {
		g_autoptr(GError) error = NULL;
		MeshMessage *msg = NULL;
		size_t size;

		/* Already received: no waiting. */
		ck_assert_msg(mesh_receiver_recv_message(p.recv, 0, &msg, &error),
			      "message %d: %s", i, error ? error->message : "?");
		ck_assert_uint_eq(*(const guint32 *)mesh_message_get_data(msg, &size),
				  (guint32)i);
		mesh_message_free(msg);
	}
	pair_clear(&p);
}
END_TEST

/* The real ntdll under Wine has no ALPC: the node says so instead of
 * crashing on an unimplemented function. */
START_TEST(test_no_alpc)
{
	const char *missing = NULL;
	const MeshAlpcNtApi *api = alpc_nt_api_ntdll(&missing);
	g_autoptr(GError) error = NULL;
	MeshAlpcNode *n;

	if (api)
		return; /* real Windows: nothing to check here */
	ck_assert(missing);
	n = mesh_alpc_node_new(&error);
	ck_assert(!n);
	ck_assert(g_error_matches(error, MESH_ERROR, MESH_ERROR_UNAVAILABLE));
	ck_assert(strstr(error->message, missing));
}
END_TEST

static Suite *alpc_suite(void)
{
	Suite *s = suite_create("alpc-node");
	TCase *tc = tcase_create("standin");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_secret_compare);
	tcase_add_test(tc, test_no_alpc);
	tcase_add_test(tc, test_framing);
	tcase_add_test(tc, test_section_lifetime);
	tcase_add_test(tc, test_wrong_secret);
	tcase_add_test(tc, test_peer_disconnect);
	tcase_add_test(tc, test_flush_at_shutdown);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(alpc_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
