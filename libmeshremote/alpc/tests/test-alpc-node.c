/* SPDX-License-Identifier: MIT */
/*
 * The ALPC node against the test stand-in of NtAlpc (alpc-standin.c), under
 * Wine: two or three nodes of this process, each with its own server port,
 * talking over the stand-in's named pipes. What this shows is the node's
 * logic (framing, handle attributes, section lifetime, the secret check,
 * failure on disconnection, the flush), not real ALPC.
 */
#include <check.h>
#include <stdlib.h>
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

/* A node in @dir (a duplicate of it is the node's), with @id (NULL: a random one). */
static MeshAlpcNode *node_new(HANDLE dir, const MeshNodeId *id, const guint8 *secret)
{
	g_autoptr(GError) error = NULL;
	MeshAlpcNode *n = alpc_node_new_full(test_api(), dup_handle(dir), id,
						  secret, &error);

	ck_assert_msg(n, "%s", error ? error->message : "?");
	return n;
}

/*
 * The directory of a test's server ports, in a namespace of the stand-in's
 * of its own (@prefix, the process and the time: no other test's names).
 */
static HANDLE test_directory(const char *prefix)
{
	OBJECT_ATTRIBUTES oa = { .Length = sizeof(oa) };
	char ns[64];
	HANDLE dir;

	g_snprintf(ns, sizeof(ns), "%s%lu-%lu", prefix, GetCurrentProcessId(), GetTickCount());
	SetEnvironmentVariableA("MESH_ALPC_STANDIN_NS", ns);
	ck_assert(NT_SUCCESS(test_api()->create_directory_object(
		&dir, STANDARD_RIGHTS_REQUIRED | 0xF, &oa)));
	return dir;
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
	p->dir = test_directory("n");
	mesh_uuid_generate((MeshUuid *)p->secret);
	mesh_uuid_generate((MeshUuid *)(p->secret + 16));
	p->a = node_new(p->dir, NULL, p->secret);
	p->b = node_new(p->dir, NULL, p->secret);
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

/* Nodes whose ids start with zero bytes (whose text form,
 * mesh_uuid_to_string(), is shorter than 32 digits) still find each other's
 * ports by name, both ways. */
START_TEST(test_leading_zero_ids)
{
	MeshNodeId ia = { { 0 } }, ib = { { 0 } };
	guint8 secret[MESH_ALPC_SECRET_SIZE] = { 7 };
	MeshSender *s1, *s2;
	MeshReceiver *r1, *r2;

	HANDLE dir = test_directory("z");
	ia.bytes[1] = 0x0a; /* 29 digits */
	ia.bytes[15] = 1;
	ib.bytes[0] = 0x05; /* 31 digits */
	ib.bytes[15] = 2;
	MeshAlpcNode *a = node_new(dir, &ia, secret);
	MeshAlpcNode *b = node_new(dir, &ib, secret);
	channel_between(a, b, &s1, &r1);
	channel_between(b, a, &s2, &r2);
	mesh_sender_send_message(s1, mesh_message_new("ab", 2));
	mesh_sender_send_message(s2, mesh_message_new("ba", 2));
	mesh_message_free(recv_one(r1));
	mesh_message_free(recv_one(r2));
	mesh_sender_free(s1);
	mesh_sender_free(s2);
	mesh_receiver_free(r1);
	mesh_receiver_free(r2);
	mesh_alpc_node_shutdown(a, 5 * G_USEC_PER_SEC);
	mesh_alpc_node_shutdown(b, 5 * G_USEC_PER_SEC);
	mesh_alpc_node_free(a);
	mesh_alpc_node_free(b);
	CloseHandle(dir);
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
	/* The sender deletes its section once its send returned, which may be
	 * after the receiver got the event (another thread): wait for it. */
	alpc_standin_counts(&sections, &views, &unclaimed);
	for (int i = 0; i < 500 && sections != 0; i++) {
		g_usleep(10 * 1000);
		alpc_standin_counts(&sections, &views, &unclaimed);
	}
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
	c = node_new(p.dir, NULL, wrong);
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

static void raw_port_attr(MeshAlpcPortAttributes *pa);

/* A random mesh secret. */
static void new_secret(guint8 secret[MESH_ALPC_SECRET_SIZE])
{
	G_STATIC_ASSERT(MESH_ALPC_SECRET_SIZE == 32);
	mesh_uuid_generate((MeshUuid *)secret);
	mesh_uuid_generate((MeshUuid *)(secret + 16));
}

/*
 * A shut-down node's server port is closed: its name is free again, so a
 * connect to it is refused rather than queued on a port nobody serves.
 */
START_TEST(test_port_closed_at_shutdown)
{
	Pair p = { 0 };
	OBJECT_ATTRIBUTES oa;
	UNICODE_STRING us;
	wchar_t name[ALPC_PORT_NAME_MAX];
	MeshAlpcPortAttributes pa;
	HANDLE port = NULL;
	NTSTATUS status;

	pair_init(&p);
	mesh_sender_free(p.send);
	p.send = NULL;
	ck_assert(mesh_alpc_node_shutdown(p.a, 20 * G_USEC_PER_SEC));
	alpc_port_attributes(&oa, &us, name, p.dir, mesh_node_get_id(mesh_alpc_node_get_node(p.a)));
	raw_port_attr(&pa);
	/* Before mesh_alpc_node_free(): the name is free at the shutdown. */
	status = test_api()->create_port(&port, &oa, &pa);
	ck_assert_msg(NT_SUCCESS(status), "the shut-down node's port is still open: 0x%08lx",
		      (unsigned long)status);
	test_api()->close(port);
	pair_clear(&p);
}
END_TEST

/*
 * A connect in progress while its target shuts down: b's connect to a is
 * held (by the stand-in) until a's shutdown has returned, then goes on.
 * It must be refused, not left waiting for an answer from a's port, which
 * nobody serves any more: b's shutdown (which joins b's connect thread)
 * returns, and b's port that names a fails. On the old code a's server port
 * stayed open until mesh_alpc_node_free() and b's shutdown hung there.
 */
START_TEST(test_connect_to_shut_down_node)
{
	HANDLE dir, held, release;
	guint8 secret[MESH_ALPC_SECRET_SIZE];
	wchar_t name[ALPC_PORT_NAME_MAX];
	MeshAlpcNode *a, *b;
	MeshSender *send;
	MeshReceiver *recv;
	MeshMessage *msg = NULL;
	g_autoptr(GError) error = NULL;

	if (real_alpc())
		return;
	dir = test_directory("n");
	new_secret(secret);
	a = node_new(dir, NULL, secret);
	b = node_new(dir, NULL, secret);
	held = CreateEventW(NULL, TRUE, FALSE, NULL);
	release = CreateEventW(NULL, TRUE, FALSE, NULL);
	alpc_port_name(mesh_node_get_id(mesh_alpc_node_get_node(a)), name);
	alpc_standin_hold_connect(name, held, release);
	/* b's port names a: b's connect thread connects to a, and is held. */
	channel_between(a, b, &send, &recv);
	ck_assert(WaitForSingleObject(held, INFINITE) == WAIT_OBJECT_0);
	mesh_sender_free(send);
	mesh_alpc_node_shutdown(a, 20 * G_USEC_PER_SEC);
	SetEvent(release);
	mesh_alpc_node_shutdown(b, 20 * G_USEC_PER_SEC);
	ck_assert(!mesh_receiver_recv_message(recv, 20 * G_USEC_PER_SEC, &msg, &error));
	ck_assert(error);
	mesh_receiver_free(recv);
	mesh_alpc_node_free(a);
	mesh_alpc_node_free(b);
	CloseHandle(held);
	CloseHandle(release);
	CloseHandle(dir);
}
END_TEST

/*
 * A connect to a server port that exists but that nobody serves (a node
 * that hangs; here a bare stand-in port under a node's name) ends at the
 * connect's timeout: the remote node fails with NtAlpcConnectPortEx's
 * STATUS_TIMEOUT, and the node's shutdown, which joins its connect thread,
 * returns. On the old code the connect waited without a limit.
 */
START_TEST(test_connect_unanswered)
{
	HANDLE dir, server = NULL;
	guint8 secret[MESH_ALPC_SECRET_SIZE];
	wchar_t name[ALPC_PORT_NAME_MAX];
	OBJECT_ATTRIBUTES oa;
	UNICODE_STRING us;
	MeshAlpcPortAttributes pa;
	MeshNodeId silent;
	MeshPortId local, remote;
	MeshAlpcNode *b;
	MeshReceiver *recv;
	MeshMessage *msg = NULL;
	g_autoptr(GError) error = NULL;

	if (real_alpc())
		return;
	dir = test_directory("n");
	new_secret(secret);
	mesh_uuid_generate(&silent);
	alpc_port_attributes(&oa, &us, name, dir, &silent);
	raw_port_attr(&pa);
	ck_assert(NT_SUCCESS(alpc_standin_api()->create_port(&server, &oa, &pa)));
	b = node_new(dir, NULL, secret);
	alpc_node_set_connect_timeout(b, 200 * 1000);
	mesh_uuid_generate(&local);
	mesh_uuid_generate(&remote);
	/* A port naming the silent node: b connects to its server port. */
	recv = mesh_receiver_from_port(
		mesh_node_add_port(mesh_alpc_node_get_node(b), &local, &silent, &remote), NULL);
	ck_assert(!mesh_receiver_recv_message(recv, 20 * G_USEC_PER_SEC, &msg, &error));
	ck_assert(error);
	ck_assert_msg(g_error_matches(error, MESH_ERROR, MESH_ERROR_NODE_FAILURE) &&
			      strstr(error->message, "0x00000102"),
		      "%s", error->message);
	mesh_receiver_free(recv);
	mesh_alpc_node_shutdown(b, 20 * G_USEC_PER_SEC);
	mesh_alpc_node_free(b);
	alpc_standin_api()->close(server);
	CloseHandle(dir);
}
END_TEST

/* ---- the wire, with a raw stand-in peer ---------------------------------- */

typedef struct {
	MeshPortMessage h;
	guint8 data[ALPC_MAX_MESSAGE];
} RawMsg;

static void name_attributes(OBJECT_ATTRIBUTES *oa, UNICODE_STRING *us, wchar_t name[40],
			    HANDLE dir, const char *ascii)
{
	gsize n = strlen(ascii);

	for (gsize i = 0; i <= n; i++)
		name[i] = (wchar_t)ascii[i];
	us->Buffer = name;
	us->Length = (USHORT)(n * sizeof(wchar_t));
	us->MaximumLength = us->Length;
	memset(oa, 0, sizeof(*oa));
	oa->Length = sizeof(*oa);
	oa->RootDirectory = dir;
	oa->ObjectName = us;
}

static void raw_port_attr(MeshAlpcPortAttributes *pa)
{
	memset(pa, 0, sizeof(*pa));
	pa->Flags = MESH_ALPC_PORFLG_WAITABLE_PORT;
	pa->MaxMessageLength = ALPC_MAX_MESSAGE + sizeof(MeshPortMessage);
}

/* Connects to @name in @dir through @api with @data as the connection data. */
static NTSTATUS api_connect(const MeshAlpcNtApi *api, HANDLE dir, const char *name,
			    const guint8 *data, gsize len, HANDLE *ret)
{
	OBJECT_ATTRIBUTES oa;
	UNICODE_STRING us;
	wchar_t wname[40];
	MeshAlpcPortAttributes pa;
	RawMsg cm = { 0 };

	name_attributes(&oa, &us, wname, dir, name);
	raw_port_attr(&pa);
	cm.h.u1.s1.DataLength = (int16_t)len;
	cm.h.u1.s1.TotalLength = (int16_t)(len + sizeof(cm.h));
	memcpy(cm.data, data, len);
	*ret = NULL;
	return api->connect_port_ex(ret, &oa, NULL, &pa, 0, NULL, &cm.h, NULL, NULL, NULL, NULL);
}

/* Connects to @name with @data as the connection data (the stand-in's calls). */
static NTSTATUS raw_connect(HANDLE dir, const char *name, const guint8 *data, gsize len,
			    HANDLE *ret)
{
	return api_connect(alpc_standin_api(), dir, name, data, len, ret);
}

static NTSTATUS raw_recv(HANDLE port, RawMsg *m, MeshAlpcMessageAttributes *a)
{
	SIZE_T len = sizeof(*m);
	LARGE_INTEGER t = { .QuadPart = -10LL * 1000 * 10000 };

	return alpc_standin_api()->send_wait_receive_port(port, 0, NULL, NULL, &m->h, &len, a,
							  &t);
}

static NTSTATUS raw_datagram(HANDLE port, const void *data, gsize len,
			     MeshAlpcMessageAttributes *a)
{
	RawMsg m = { 0 };

	m.h.u1.s1.DataLength = (int16_t)len;
	m.h.u1.s1.TotalLength = (int16_t)(len + sizeof(m.h));
	memcpy(m.data, data, len);
	return alpc_standin_api()->send_wait_receive_port(port, MESH_ALPC_MSGFLG_RELEASE_MESSAGE,
							  &m.h, a, NULL, NULL, NULL, NULL);
}

static MeshAlpcMessageAttributes *raw_attributes(ULONG flags)
{
	const MeshAlpcNtApi *api = alpc_standin_api();
	ULONG need = 0;
	MeshAlpcMessageAttributes *a;

	api->initialize_message_attribute(flags, NULL, 0, &need);
	a = g_malloc0(need);
	ck_assert(NT_SUCCESS(api->initialize_message_attribute(flags, a, need, &need)));
	return a;
}

/*
 * Port names as upstream's node_path() makes them (format!("{:?}", NodeId):
 * "N-" and the id as a big-endian u128 in {:x}, no leading zeros): the
 * names below are written out by hand from that rule. A client that knows
 * only the upstream name (here a raw connect, with test_api(): the real
 * calls under MESH_ALPC_TEST_REAL) reaches the node's server port.
 */
static NTSTATUS connect_by_name(HANDLE dir, const char *name, const MeshNodeId *from,
				const guint8 *secret, HANDLE *ret)
{
	guint8 data[16 + MESH_ALPC_SECRET_SIZE];

	memcpy(data, from->bytes, 16);
	memcpy(data + 16, secret, MESH_ALPC_SECRET_SIZE);
	return api_connect(test_api(), dir, name, data, sizeof(data), ret);
}

static void check_name(const MeshNodeId *id, const char *want)
{
	wchar_t name[ALPC_PORT_NAME_MAX];
	gsize len = alpc_port_name(id, name);
	char got[ALPC_PORT_NAME_MAX];

	for (gsize i = 0; i <= len; i++)
		got[i] = (char)name[i];
	ck_assert_uint_eq(len, strlen(want));
	ck_assert_str_eq(got, want);
}

START_TEST(test_upstream_port_names)
{
	MeshNodeId zero = { { 0 } }, one = { { 0 } }, ia = { { 0 } }, full, client_id;
	guint8 secret[MESH_ALPC_SECRET_SIZE];
	HANDLE client = NULL;

	one.bytes[15] = 1;
	ia.bytes[1] = 0x0a;
	ia.bytes[15] = 1;
	for (int i = 0; i < 16; i++)
		full.bytes[i] = (guint8)(0xf0 - i * 0x11);
	check_name(&zero, "N-0");
	check_name(&one, "N-1");
	check_name(&ia, "N-a0000000000000000000000000001");
	check_name(&full, "N-f0dfcebdac9b8a7968574635241302f1");

	HANDLE dir = test_directory("n");
	for (gsize i = 0; i < sizeof(secret); i++)
		secret[i] = (guint8)(i + 1);
	mesh_uuid_generate(&client_id);
	MeshAlpcNode *a = node_new(dir, &ia, secret);
	MeshAlpcNode *b = node_new(dir, &full, secret);
	ck_assert_msg(NT_SUCCESS(connect_by_name(dir, "N-a0000000000000000000000000001",
						 &client_id, secret, &client)),
		      "no port under upstream's name of a leading-zero id");
	test_api()->close(client);
	ck_assert_msg(NT_SUCCESS(connect_by_name(dir, "N-f0dfcebdac9b8a7968574635241302f1",
						 &client_id, secret, &client)),
		      "no port under upstream's name of a full id");
	test_api()->close(client);
	/* Not under the bare hex (no "N-"), nor with the leading zeros kept. */
	ck_assert(!NT_SUCCESS(connect_by_name(dir, "f0dfcebdac9b8a7968574635241302f1",
					      &client_id, secret, &client)));
	ck_assert(!NT_SUCCESS(connect_by_name(dir, "N-000a0000000000000000000000000001",
					      &client_id, secret, &client)));
	mesh_alpc_node_shutdown(a, 5 * G_USEC_PER_SEC);
	mesh_alpc_node_shutdown(b, 5 * G_USEC_PER_SEC);
	mesh_alpc_node_free(a);
	mesh_alpc_node_free(b);
	CloseHandle(dir);
}
END_TEST

typedef struct {
	HANDLE dir;
	HANDLE client;
	NTSTATUS status;
} RawConnect;

static gpointer raw_connect_thread(gpointer data)
{
	RawConnect *rc = data;

	rc->status = raw_connect(rc->dir, "raw", (const guint8 *)"", 0, &rc->client);
	return NULL;
}

/* What the node puts on the wire: the packet header, the event, the
 * handles in the handle attribute (usable duplicates), and a large event
 * in a secure view whose section the sender does not keep. */
START_TEST(test_wire_send)
{
	const MeshAlpcNtApi *api = alpc_standin_api();
	Pair p = { 0 };
	OBJECT_ATTRIBUTES oa;
	UNICODE_STRING us;
	wchar_t wname[40];
	MeshAlpcPortAttributes pa;
	HANDLE server = NULL, comm = NULL, ev;
	RawConnect rc = { 0 };
	GThread *t;
	RawMsg m;
	g_autofree MeshAlpcMessageAttributes *a = raw_attributes(
		MESH_ALPC_MESSAGE_CONTEXT_ATTRIBUTE | MESH_ALPC_MESSAGE_HANDLE_ATTRIBUTE |
		MESH_ALPC_MESSAGE_VIEW_ATTRIBUTE);
	struct iovec iov[2] = { { (void *)"ab", 2 }, { (void *)"c", 1 } };
	MeshOsHandle hs[3];
	long sections, views, unclaimed;

	if (real_alpc())
		return;
	pair_init(&p); /* for the directory and the namespace */
	name_attributes(&oa, &us, wname, p.dir, "raw");
	raw_port_attr(&pa);
	ck_assert(NT_SUCCESS(api->create_port(&server, &oa, &pa)));
	rc.dir = p.dir;
	t = g_thread_new("raw-connect", raw_connect_thread, &rc);
	ck_assert(NT_SUCCESS(raw_recv(server, &m, a)));
	ck_assert(NT_SUCCESS(api->accept_connect_port(&comm, server, 0, NULL, &pa, (void *)1,
						      &m.h, NULL, TRUE)));
	g_thread_join(t);
	ck_assert(NT_SUCCESS(rc.status));

	/* Three handles (indirect), then one (direct). */
	ev = CreateEventW(NULL, TRUE, FALSE, NULL);
	hs[0] = hs[1] = hs[2] = ev;
	ck_assert(NT_SUCCESS(alpc_send_event(api, rc.client, iov, 2, hs, 3)));
	ck_assert(NT_SUCCESS(raw_recv(server, &m, a)));
	ck_assert_int_eq(m.h.u1.s1.DataLength, ALPC_PACKET_HEADER_SIZE + 3);
	ck_assert_int_eq(m.data[0], 1);
	for (int i = 1; i < 8; i++)
		ck_assert_int_eq(m.data[i], 0);
	ck_assert(memcmp(m.data + 8, "abc", 3) == 0);
	ck_assert(a->ValidAttributes & MESH_ALPC_MESSAGE_HANDLE_ATTRIBUTE);
	ck_assert_uint_eq(((MeshAlpcHandleAttr *)api->get_message_attribute(
				   a, MESH_ALPC_MESSAGE_HANDLE_ATTRIBUTE))->u3.HandleCount, 3);
	for (ULONG i = 0; i < 3; i++) {
		MeshAlpcMessageHandleInformation info = { .Index = i };
		HANDLE dup;

		ck_assert(NT_SUCCESS(api->query_information_message(
			server, &m.h, MESH_ALPC_MESSAGE_HANDLE_INFORMATION, &info, sizeof(info),
			NULL)));
		dup = (HANDLE)(uintptr_t)info.Handle;
		ck_assert(dup != ev);
		if (i == 1)
			ck_assert(SetEvent(dup)); /* the original sees it: one object */
		CloseHandle(dup);
	}
	ck_assert(WaitForSingleObject(ev, 0) == WAIT_OBJECT_0);
	ResetEvent(ev);
	ck_assert(NT_SUCCESS(alpc_send_event(api, rc.client, iov, 1, hs, 1)));
	ck_assert(NT_SUCCESS(raw_recv(server, &m, a)));
	ck_assert_uint_eq(((MeshAlpcHandleAttr *)api->get_message_attribute(
				   a, MESH_ALPC_MESSAGE_HANDLE_ATTRIBUTE))->u3.HandleCount, 1);
	{
		MeshAlpcMessageHandleInformation info = { .Index = 0 };

		ck_assert(NT_SUCCESS(api->query_information_message(
			server, &m.h, MESH_ALPC_MESSAGE_HANDLE_INFORMATION, &info, sizeof(info),
			NULL)));
		ck_assert(SetEvent((HANDLE)(uintptr_t)info.Handle));
		CloseHandle((HANDLE)(uintptr_t)info.Handle);
		ck_assert(WaitForSingleObject(ev, 0) == WAIT_OBJECT_0);
	}

	/* Large: the header alone in the message, the event in a secure view. */
	{
		gsize size = ALPC_MAX_SMALL_EVENT + 1;
		g_autofree guint8 *big = g_malloc(size);
		struct iovec one = { big, size };
		MeshAlpcDataViewAttr *va;

		for (gsize i = 0; i < size; i++)
			big[i] = (guint8)(i ^ 0x5a);
		ck_assert(NT_SUCCESS(alpc_send_event(api, rc.client, &one, 1, NULL, 0)));
		alpc_standin_counts(&sections, &views, &unclaimed);
		ck_assert_int_eq(sections, 0); /* the sender's went after the send */
		ck_assert(NT_SUCCESS(raw_recv(server, &m, a)));
		ck_assert_int_eq(m.h.u1.s1.DataLength, ALPC_PACKET_HEADER_SIZE);
		ck_assert_int_eq(m.data[0], 3);
		ck_assert(!(a->ValidAttributes & MESH_ALPC_MESSAGE_HANDLE_ATTRIBUTE));
		ck_assert(a->ValidAttributes & MESH_ALPC_MESSAGE_VIEW_ATTRIBUTE);
		va = api->get_message_attribute(a, MESH_ALPC_MESSAGE_VIEW_ATTRIBUTE);
		ck_assert(va->Flags & MESH_ALPC_VIEWFLG_SECURED_ACCESS);
		ck_assert_uint_ge(va->ViewSize, size);
		ck_assert(memcmp(va->ViewBase, big, size) == 0);
		ck_assert(NT_SUCCESS(api->delete_section_view(server, 0, va->ViewBase)));
		alpc_standin_counts(&sections, &views, &unclaimed);
		ck_assert_int_eq(views, 0);
	}
	CloseHandle(ev);
	api->close(rc.client);
	api->close(comm);
	api->close(server);
	pair_clear(&p);
}
END_TEST

/* What a peer sends is checked: bad connection data is refused, bad
 * datagrams are dropped (their handles taken and closed) without failing
 * the connection or the node. */
START_TEST(test_wire_bounds)
{
	const MeshAlpcNtApi *api = alpc_standin_api();
	Pair p = { 0 };
	char a_name[40];
	guint8 data[64];
	const MeshNodeId *a_id;
	MeshNodeId rnd;
	HANDLE client = NULL, ev;
	long sections, views, unclaimed;
	g_autofree MeshAlpcMessageAttributes *attr =
		raw_attributes(MESH_ALPC_MESSAGE_HANDLE_ATTRIBUTE);
	MeshAlpcHandleAttr *ha;

	if (real_alpc())
		return;
	pair_init(&p);
	a_id = mesh_node_get_id(mesh_alpc_node_get_node(p.a));
	a_name[0] = 'N';
	a_name[1] = '-';
	mesh_uuid_to_string(a_id, a_name + 2);
	mesh_uuid_generate(&rnd);
	memcpy(data, rnd.bytes, 16);
	memcpy(data + 16, p.secret, 32);

	/* One byte short, one byte long. */
	ck_assert_int_eq(raw_connect(p.dir, a_name, data, 47, &client),
			 MESH_STATUS_PORT_CONNECTION_REFUSED);
	ck_assert_int_eq(raw_connect(p.dir, a_name, data, 49, &client),
			 MESH_STATUS_PORT_CONNECTION_REFUSED);
	/* The wrong secret, in its last bit and its first. */
	data[47] ^= 1;
	ck_assert_int_eq(raw_connect(p.dir, a_name, data, 48, &client),
			 MESH_STATUS_PORT_CONNECTION_REFUSED);
	data[47] ^= 1;
	data[16] ^= 0x80;
	ck_assert_int_eq(raw_connect(p.dir, a_name, data, 48, &client),
			 MESH_STATUS_PORT_CONNECTION_REFUSED);
	data[16] ^= 0x80;
	/* A zero id; the node's own id. */
	memset(data, 0, 16);
	ck_assert_int_eq(raw_connect(p.dir, a_name, data, 48, &client),
			 MESH_STATUS_PORT_CONNECTION_REFUSED);
	memcpy(data, a_id->bytes, 16);
	ck_assert_int_eq(raw_connect(p.dir, a_name, data, 48, &client),
			 MESH_STATUS_PORT_CONNECTION_REFUSED);
	/* Right: accepted. */
	memcpy(data, rnd.bytes, 16);
	ck_assert(NT_SUCCESS(raw_connect(p.dir, a_name, data, 48, &client)));

	/* Garbage datagrams, one with a handle. */
	ev = CreateEventW(NULL, TRUE, FALSE, NULL);
	ha = api->get_message_attribute(attr, MESH_ALPC_MESSAGE_HANDLE_ATTRIBUTE);
	ha->Flags = MESH_ALPC_HANDLEFLG_DUPLICATE_SAME_ACCESS;
	ha->u2.Handle = ev;
	attr->ValidAttributes = MESH_ALPC_MESSAGE_HANDLE_ATTRIBUTE;
	ck_assert(NT_SUCCESS(raw_datagram(client, "\x01\x00\x00", 3, attr)));	/* short */
	ck_assert(NT_SUCCESS(raw_datagram(client, "\x09\0\0\0\0\0\0\0xx", 10, attr))); /* type */
	ck_assert(NT_SUCCESS(raw_datagram(client, "\x03\0\0\0\0\0\0\0", 8, NULL)));	/* no view */
	ck_assert(NT_SUCCESS(raw_datagram(client, "\x01\0\0\0\0\0\0\0garbage!", 16, attr)));
	CloseHandle(ev);

	/* The node still works, over a real connection from b. */
	{
		MeshSender *send;
		MeshReceiver *recv;

		channel_between(p.b, p.a, &send, &recv);
		mesh_sender_send_message(send, mesh_message_new("ok", 2));
		mesh_message_free(recv_one(recv));
		mesh_sender_free(send);
		mesh_receiver_free(recv);
	}
	/* Every handle was taken from the messages (and closed with them). */
	for (int i = 0; i < 100; i++) {
		alpc_standin_counts(&sections, &views, &unclaimed);
		if (unclaimed == 0)
			break;
		g_usleep(20000);
	}
	ck_assert_int_eq(unclaimed, 0);
	api->close(client);
	pair_clear(&p);
}
END_TEST

/* ---- across processes ----------------------------------------------------- */

static const char *self_path;

static void hex_decode(const char *hex, guint8 *out, gsize n)
{
	for (gsize i = 0; i < n; i++) {
		char b[3] = { hex[2 * i], hex[2 * i + 1], 0 };

		out[i] = (guint8)strtoul(b, NULL, 16);
	}
}

static char *hex_encode(const guint8 *in, gsize n)
{
	char *out = g_malloc(2 * n + 1);

	for (gsize i = 0; i < n; i++)
		g_snprintf(out + 2 * i, 3, "%02x", in[i]);
	return out;
}

/* The child: joins the mesh, signals READY (its server port exists), sends
 * "hi" to the parent's port, then waits to be killed.
 * argv: child DIR ID SECRET PARENT_NODE PARENT_PORT OWN_PORT READY */
static int child_main(char **argv)
{
	HANDLE dir = (HANDLE)(uintptr_t)g_ascii_strtoull(argv[2], NULL, 10);
	MeshNodeId id, parent;
	MeshPortId parent_port, own_port;
	guint8 secret[MESH_ALPC_SECRET_SIZE];
	g_autoptr(GError) error = NULL;
	MeshAlpcNode *n;
	MeshSender *send;

	hex_decode(argv[3], id.bytes, 16);
	hex_decode(argv[4], secret, sizeof(secret));
	hex_decode(argv[5], parent.bytes, 16);
	hex_decode(argv[6], parent_port.bytes, 16);
	hex_decode(argv[7], own_port.bytes, 16);
	n = alpc_node_new_full(test_api(), dir, &id, secret, &error);
	if (!n) {
		g_printerr("child: %s\n", error->message);
		return 2;
	}
	SetEvent((HANDLE)(uintptr_t)g_ascii_strtoull(argv[8], NULL, 10));
	/* Not before the parent's port exists: an event for a port a node does
	 * not have (yet) is dropped. */
	WaitForSingleObject((HANDLE)(uintptr_t)g_ascii_strtoull(argv[9], NULL, 10), INFINITE);
	send = mesh_sender_from_port(
		mesh_node_add_port(mesh_alpc_node_get_node(n), &own_port, &parent, &parent_port),
		NULL);
	mesh_sender_send_message(send, mesh_message_new("hi", 2));
	Sleep(INFINITE);
	return 0;
}

/* A peer process that is killed: the port that depends on it fails, and
 * the error names its node. */
START_TEST(test_killed_peer)
{
	Pair p = { 0 };
	MeshNodeId child_id;
	MeshPortId pp, cp;
	MeshReceiver *recv;
	MeshMessage *msg = NULL;
	g_autoptr(GError) error = NULL;
	char id_hex[33];
	g_autofree char *secret_hex = NULL, *parent_hex = NULL, *pp_hex = NULL, *cp_hex = NULL;
	g_autofree char *child_hex = NULL;
	g_autofree char *cmd = NULL;
	STARTUPINFOA si = { .cb = sizeof(si) };
	PROCESS_INFORMATION pi;
	MeshNode *na;
	SECURITY_ATTRIBUTES inherit = { .nLength = sizeof(inherit), .bInheritHandle = TRUE };
	HANDLE ready = CreateEventW(&inherit, TRUE, FALSE, NULL);
	HANDLE go = CreateEventW(&inherit, TRUE, FALSE, NULL);
	/* The child dies with this process even if a check below fails. */
	HANDLE job = CreateJobObjectW(NULL, NULL);
	JOBOBJECT_EXTENDED_LIMIT_INFORMATION limit = {
		.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE
	};

	ck_assert(ready && go && job);
	ck_assert(SetInformationJobObject(job, JobObjectExtendedLimitInformation, &limit,
					  sizeof(limit)));
	pair_init(&p);
	na = mesh_alpc_node_get_node(p.a);
	mesh_uuid_generate(&child_id);
	mesh_uuid_generate(&pp);
	mesh_uuid_generate(&cp);
	mesh_uuid_to_string(&child_id, id_hex);
	secret_hex = hex_encode(p.secret, sizeof(p.secret));
	/* All 32 digits: id_hex (mesh_uuid_to_string()) drops leading zeros,
	 * and the child decodes 32. */
	child_hex = hex_encode(child_id.bytes, 16);
	parent_hex = hex_encode(mesh_node_get_id(na)->bytes, 16);
	pp_hex = hex_encode(pp.bytes, 16);
	cp_hex = hex_encode(cp.bytes, 16);
	ck_assert(SetHandleInformation(p.dir, HANDLE_FLAG_INHERIT, HANDLE_FLAG_INHERIT));
	cmd = g_strdup_printf("\"%s\" child %llu %s %s %s %s %s %llu %llu", self_path,
			      (unsigned long long)(uintptr_t)p.dir, child_hex, secret_hex, parent_hex,
			      pp_hex, cp_hex, (unsigned long long)(uintptr_t)ready,
			      (unsigned long long)(uintptr_t)go);
	ck_assert(CreateProcessA(NULL, cmd, NULL, NULL, TRUE, CREATE_SUSPENDED, NULL, NULL, &si,
				 &pi));
	SetHandleInformation(p.dir, HANDLE_FLAG_INHERIT, 0);
	ck_assert(AssignProcessToJobObject(job, pi.hProcess));
	ResumeThread(pi.hThread);
	CloseHandle(pi.hThread);
	/* The parent's port names the child's node: its node connects to the
	 * child's server port at once, which must exist by then. */
	ck_assert_int_eq(WaitForSingleObject(ready, 30000), WAIT_OBJECT_0);
	CloseHandle(ready);
	recv = mesh_receiver_from_port(mesh_node_add_port(na, &pp, &child_id, &cp), NULL);
	/* The child sends once the port its event is for exists here. */
	SetEvent(go);
	CloseHandle(go);

	msg = recv_one(recv);
	{
		size_t size;
		const guint8 *d = mesh_message_get_data(msg, &size);

		ck_assert(size == 2 && memcmp(d, "hi", 2) == 0);
	}
	mesh_message_free(msg);
	msg = NULL;
	ck_assert(TerminateProcess(pi.hProcess, 9));
	WaitForSingleObject(pi.hProcess, 10000);
	CloseHandle(pi.hProcess);
	ck_assert(!mesh_receiver_recv_message(recv, 20 * G_USEC_PER_SEC, &msg, &error));
	ck_assert_msg(g_error_matches(error, MESH_ERROR, MESH_ERROR_NODE_FAILURE), "%s",
		      error->message);
	ck_assert_msg(strstr(error->message, id_hex), "%s does not name %s", error->message,
		      id_hex);
	mesh_receiver_free(recv);
	pair_clear(&p);
	CloseHandle(job);
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
	tcase_add_test(tc, test_wire_send);
	tcase_add_test(tc, test_wire_bounds);
	tcase_add_test(tc, test_framing);
	tcase_add_test(tc, test_section_lifetime);
	tcase_add_test(tc, test_wrong_secret);
	tcase_add_test(tc, test_peer_disconnect);
	tcase_add_test(tc, test_flush_at_shutdown);
	tcase_add_test(tc, test_port_closed_at_shutdown);
	tcase_add_test(tc, test_connect_to_shut_down_node);
	tcase_add_test(tc, test_connect_unanswered);
	tcase_add_test(tc, test_leading_zero_ids);
	tcase_add_test(tc, test_upstream_port_names);
	tcase_add_test(tc, test_killed_peer);
	suite_add_tcase(s, tc);
	return s;
}

int main(int argc, char **argv)
{
	SRunner *sr;
	int failed;

	self_path = argv[0];
	if (argc == 10 && strcmp(argv[1], "child") == 0)
		return child_main(argv);
	sr = srunner_create(alpc_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
