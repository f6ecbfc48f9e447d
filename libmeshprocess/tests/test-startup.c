/* SPDX-License-Identifier: MIT */
/*
 * The host startup and the host requests on upstream's wire: byte vectors
 * of upstream's InitialMessage, HostRequest, inspect::Deferred and
 * InternalNode (derived by hand from the Rust types and mesh_protobuf's
 * rules, reference section 3, as libmeshpayload's tests do), and both
 * directions across real processes: this program plays an upstream
 * (Rust) parent that starts a C host with hand-written bytes, and an
 * upstream host that a C parent starts (it checks every byte it is sent
 * and answers with hand-written bytes).
 *
 * The encoding rules used below (mesh_protobuf, reference 3.1-3.5):
 * - a key is (field << 3 | wire type); a resource field is wire type 7
 *   (key 0x0f for field 1) with no payload: its port is the next entry of
 *   the resource list, in field order;
 * - a nested message with resources is wire type 6: count, length, bytes
 *   (field 1: 0e); without, wire type 2 (field 1: 0a); empty nested
 *   messages and zero scalars are left out, except in a sequence (an enum
 *   variant, an Option's Some, a Vec's element), where they are written;
 * - an enum is a message with its variant k (declaration order, or
 *   #[mesh(k)]) as field k: a unit variant is `k 00`, a tuple variant a
 *   message of its fields, a #[mesh(transparent)] variant its one field;
 * - a oneshot sends (T,) (T at field 1), an mpsc channel
 *   ChannelPayload::Message(T) (transparent, field 1): the channels of
 *   libmeshremote strip that framing, so the bytes below are T's.
 */
#include <check.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <pal/pal.h>

#include "startup-private.h"
#include "wire-private.h"

#define WAIT_US (30 * G_USEC_PER_SEC)

static GByteArray *bytes_of(const char *hex)
{
	GByteArray *b = g_byte_array_new();
	for (const char *p = hex; *p;) {
		if (*p == ' ') {
			p++;
			continue;
		}
		char two[3] = {p[0], p[1], 0};
		guint8 v = (guint8)strtoul(two, NULL, 16);
		g_byte_array_append(b, &v, 1);
		p += 2;
	}
	return b;
}

static char *hex_of(const guint8 *data, size_t size)
{
	GString *s = g_string_new(NULL);
	for (size_t i = 0; i < size; i++)
		g_string_append_printf(s, "%s%02x", i ? " " : "", data[i]);
	return g_string_free(s, FALSE);
}

static void assert_message_bytes(MeshMessage *msg, const char *hex)
{
	size_t size;
	const guint8 *data = mesh_message_get_data(msg, &size);
	GByteArray *want = bytes_of(hex);
	char *got = hex_of(data, size);
	ck_assert_msg(size == want->len && (size == 0 || memcmp(data, want->data, size) == 0),
		      "bytes %s, expected %s", got, hex);
	g_free(got);
	g_byte_array_free(want, TRUE);
}

static MeshMessage *message_of(const char *hex)
{
	GByteArray *b = bytes_of(hex);
	MeshMessage *m = mesh_message_new(b->data, b->len);
	g_byte_array_free(b, TRUE);
	return m;
}

static void append_varint(GString *s, guint64 v)
{
	do {
		g_string_append_printf(s, " %02x", (unsigned)((v & 0x7f) | (v >= 0x80 ? 0x80 : 0)));
		v >>= 7;
	} while (v);
}

/*
 * InternalNode::Dir(vec![InternalEntry { name: "pid", node:
 * InternalNode::Value(Value { kind: ValueKind::Unsigned(pid), flags: 0 }),
 * sensitivity: Safe }]) (inspect lib.rs; Dir is variant 5, Value variant
 * 4, Unsigned variant 2, Safe #[mesh(1)]; flags 0 is left out):
 *   2a L0 [0a L1 [0a 03 "pid"  12 L2 [22 L3 [0a L4 [0a L5 [12 L6 [08 v]]]]]  1a 02 0a 00]]
 */
static char *pid_dir_hex(guint64 pid)
{
	GString *v = g_string_new("08");
	append_varint(v, pid);
	size_t l6 = (v->len + 1) / 3; /* bytes so far */
	GString *s = g_string_new(NULL);
	g_string_append_printf(s, "2a %02zx 0a %02zx 0a 03 70 69 64 12 %02zx 22 %02zx 0a %02zx 0a %02zx 12 %02zx %s 1a 02 0a 00",
			       l6 + 21, l6 + 19, l6 + 8, l6 + 6, l6 + 4, l6 + 2, l6, v->str);
	g_string_free(v, TRUE);
	return g_string_free(s, FALSE);
}

/* InitialMessage<T> { requests, init_message } for T = (5u32,): 0f, then 12 02 08 05. */
START_TEST(test_initial_message_bytes)
{
	MeshPort *a, *b, *c, *d;
	mesh_port_new_pair(&a, &b);
	mesh_port_new_pair(&c, &d);

	MeshMessage *m = process_initial_message_new(a, message_of("08 05"), NULL, 0);
	assert_message_bytes(m, "0f 12 02 08 05");
	ck_assert_uint_eq(mesh_message_get_n_resources(m), 1);
	mesh_message_free(m);

	/* Ours: field 3, the events port, after the others (1f). */
	mesh_port_close(b);
	mesh_port_new_pair(&a, &b);
	m = process_initial_message_new(a, message_of("08 05"), c, 0);
	assert_message_bytes(m, "0f 12 02 08 05 1f");
	ck_assert_uint_eq(mesh_message_get_n_resources(m), 2);
	mesh_message_free(m);

	/* T = (port, 5u32): wire type 6 with its resource count: 16 01 03 0f 10 05. */
	MeshPort *e, *f;
	mesh_port_close(b);
	mesh_port_new_pair(&a, &b);
	mesh_port_new_pair(&e, &f);
	MeshMessage *t = message_of("0f 10 05");
	mesh_message_add_port_take(t, e);
	m = process_initial_message_new(a, t, NULL, 0);
	assert_message_bytes(m, "0f 16 01 03 0f 10 05");
	ck_assert_uint_eq(mesh_message_get_n_resources(m), 2);
	/* The requests port first, then T's, in field order. */
	MeshPort *r0 = mesh_message_steal_port(m, 0), *r1 = mesh_message_steal_port(m, 1);
	ck_assert_ptr_eq(r0, a);
	ck_assert_ptr_eq(r1, e);
	mesh_port_close(r0);
	mesh_port_close(r1);
	mesh_message_free(m);

	/* An empty T is left out, as upstream leaves out an empty nested message. */
	mesh_port_new_pair(&a, &c);
	m = process_initial_message_new(a, mesh_message_new(NULL, 0), NULL, 0);
	assert_message_bytes(m, "0f");
	mesh_message_free(m);
	mesh_port_close(b);
	mesh_port_close(c);
	mesh_port_close(d);
	mesh_port_close(f);
}
END_TEST

START_TEST(test_initial_message_parse)
{
	MeshPort *req, *events, *p[4], *peer[4];
	MeshMessage *init;
	GError *error = NULL;

	/*
	 * Upstream's bytes with T = (port, 5u32), an unknown field 4 (a port,
	 * skipped: its port is released) and field 2 twice (merged: the
	 * encodings concatenate): 0f | 16 01 03 0f 10 05 | 27 | 12 02 18 07.
	 */
	MeshMessage *m = message_of("0f 16 01 03 0f 10 05 27 12 02 18 07");
	for (int i = 0; i < 3; i++) {
		mesh_port_new_pair(&p[i], &peer[i]);
		mesh_message_add_port_take(m, p[i]);
	}
	ck_assert(process_initial_message_parse(m, FALSE, &req, &init, &events, NULL, &error));
	ck_assert_ptr_eq(req, p[0]);
	ck_assert_ptr_null(events);
	assert_message_bytes(init, "0f 10 05 18 07");
	ck_assert_uint_eq(mesh_message_get_n_resources(init), 1);
	MeshPort *ip = mesh_message_steal_port(init, 0);
	ck_assert_ptr_eq(ip, p[1]);
	/* The skipped field's port was closed: its peer sees the close. */
	MeshReceiver *skipped = mesh_receiver_from_port(peer[2], NULL);
	MeshMessage *none = NULL;
	ck_assert(!mesh_receiver_recv_message(skipped, WAIT_US, &none, &error));
	ck_assert(g_error_matches(error, MESH_ERROR, MESH_ERROR_CLOSED));
	g_clear_error(&error);
	mesh_receiver_free(skipped);
	mesh_port_close(req);
	mesh_port_close(ip);
	mesh_message_free(init);
	mesh_port_close(peer[0]);
	mesh_port_close(peer[1]);

	/* A missing T is an empty message; field 3 is ours. */
	m = message_of("0f 1f");
	for (int i = 0; i < 2; i++) {
		mesh_port_new_pair(&p[i], &peer[i]);
		mesh_message_add_port_take(m, p[i]);
	}
	ck_assert(process_initial_message_parse(m, FALSE, &req, &init, &events, NULL, &error));
	ck_assert_ptr_eq(req, p[0]);
	ck_assert_ptr_eq(events, p[1]);
	assert_message_bytes(init, "");
	mesh_message_free(init);
	mesh_port_close(req);
	mesh_port_close(events);
	mesh_port_close(peer[0]);
	mesh_port_close(peer[1]);

	/* No requests, a resource too few, a field of the wrong wire type. */
	static const char *const bad[] = {"12 02 08 05", "0f 0f", "08 01", "0f 12 05 08"};
	for (guint i = 0; i < G_N_ELEMENTS(bad); i++) {
		m = message_of(bad[i]);
		mesh_port_new_pair(&p[0], &peer[0]);
		mesh_message_add_port_take(m, p[0]);
		ck_assert_msg(!process_initial_message_parse(m, FALSE, &req, &init, &events, NULL, &error), "%s",
			      bad[i]);
		ck_assert(g_error_matches(error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_INVITATION));
		g_clear_error(&error);
		mesh_port_close(peer[0]);
	}
}
END_TEST

/* Encodes a typed message as a MeshMessage's bytes and resources. */
static MeshMessage *typed(ProtobufCMessage *msg)
{
	MeshMessage *m = mesh_message_new_typed_take(msg);
	size_t size;
	mesh_message_get_data(m, &size);
	return m;
}

START_TEST(test_request_bytes)
{
	MeshPort *a, *b;

	/*
	 * HostRequest::Crash, variant 2, a unit: 12 00.
	 */
	MeshProcess__HostRequest *req = g_malloc(sizeof(*req));
	mesh_process__host_request__init(req);
	req->request_case = MESH_PROCESS__HOST_REQUEST__REQUEST_CRASH;
	req->crash = g_malloc(sizeof(*req->crash));
	mesh_process__host_crash__init(req->crash);
	MeshMessage *m = typed(&req->base);
	assert_message_bytes(m, "12 00");
	mesh_message_free(m);

	/*
	 * HostRequest::Inspect(Deferred(Box(DeferredInner { path: "", value:
	 * None, depth: 64, node, sensitivity: Sensitive, parent_sensitivity:
	 * Unspecified, number_format: Decimal }))): Inspect is transparent
	 * (field 1 is the Deferred itself), Deferred a one-field tuple struct
	 * (field 1: DeferredInner), both with the port so wire type 6:
	 *   0e 01 12 [0e 01 0f [18 40 | 27 | 2a 02 1a 00 | 32 02 12 00 | 3a 02 0a 00]]
	 * (path and value left out, depth 64 a varint, node a resource,
	 * SensitivityLevel's variants #[mesh(1..3)], NumberFormat's 1..4).
	 */
	mesh_port_new_pair(&a, &b);
	m = typed(&process_inspect_request_new(a, 64)->base);
	mesh_port_close(b);
	assert_message_bytes(m, "0e 01 12 0e 01 0f 18 40 27 2a 02 1a 00 32 02 12 00 3a 02 0a 00");
	ck_assert_uint_eq(mesh_message_get_n_resources(m), 1);
	mesh_message_free(m);
	/* Depth 0 (our probe) leaves the depth out: 13 bytes of DeferredInner. */
	mesh_port_new_pair(&a, &b);
	m = typed(&process_inspect_request_new(a, 0)->base);
	assert_message_bytes(m, "0e 01 10 0e 01 0d 27 2a 02 1a 00 32 02 12 00 3a 02 0a 00");
	mesh_message_free(m);
	mesh_port_close(b);
}
END_TEST

/* A DeferredInner as upstream encodes it, decoded with our descriptor. */
static MeshProcess__InspectDeferredInner *deferred_of(const char *hex)
{
	GByteArray *b = bytes_of(hex);
	ProtobufCMessage *msg = NULL;
	MeshPayloadError perr;
	MeshPort *a, *p;
	mesh_port_new_pair(&a, &p);
	MeshPayloadResources *res = mesh_payload_resources_new();
	mesh_payload_resources_append_port_take(res, (MeshPayloadObject *)a);
	int r = mesh_payload_decode(&mesh_process__inspect_deferred_inner__descriptor, b->data,
				    b->len, res, NULL, &msg, &perr);
	ck_assert_msg(r >= 0, "%s", perr.message);
	mesh_payload_resources_free(res);
	g_byte_array_free(b, TRUE);
	mesh_port_close(p);
	return (MeshProcess__InspectDeferredInner *)msg;
}

static void assert_node_bytes(MeshProcess__InspectNode *node, const char *hex)
{
	MeshMessage *m = typed(&node->base);
	assert_message_bytes(m, hex);
	mesh_message_free(m);
}

START_TEST(test_inspect_respond_bytes)
{
	const char *json = "{\"pid\":42,\"name\":\"h\",\"rlimits\":{\"nofile\":[1024,null]}}";

	/*
	 * Path "pid", depth 1, Sensitive, Decimal: 0a 03 "pid" | 18 01 | 27 |
	 * 2a 02 1a 00 | 32 02 12 00 | 3a 02 0a 00. The answer is the root
	 * directory holding only the entry on the path (Action::eval).
	 */
	MeshProcess__InspectDeferredInner *in =
		deferred_of("0a 03 70 69 64 18 01 27 2a 02 1a 00 32 02 12 00 3a 02 0a 00");
	ck_assert_ptr_null(in->value);
	char *want = pid_dir_hex(42);
	assert_node_bytes(process_inspect_respond(json, in), want);
	g_free(want);
	mesh_payload_message_free(&in->base);

	/*
	 * An update (value: Some("") is written: 12 00) of "pid": refused,
	 * InternalNode::Failed(InternalError::Immutable) = 12 04 0a 02 0a 00,
	 * in the entry: 2a 13 0a 11 0a 03 "pid" 12 06 [12 04 0a 02 0a 00] 1a 02 0a 00.
	 */
	in = deferred_of("0a 03 70 69 64 12 00 18 01 27 2a 02 1a 00");
	ck_assert_str_eq(in->value, "");
	assert_node_bytes(process_inspect_respond(json, in),
			  "2a 13 0a 11 0a 03 70 69 64 12 06 12 04 0a 02 0a 00 1a 02 0a 00");
	mesh_payload_message_free(&in->base);

	/* Depth 0 (left out): the root is a directory with no depth left: 1a 00. */
	in = deferred_of("27");
	assert_node_bytes(process_inspect_respond(json, in), "1a 00");
	mesh_payload_message_free(&in->base);

	/*
	 * Hex format (NumberFormat::Hex, 3a 02 12 00): the value carries flags
	 * {1: 1} (ValueFlags' hex bit): Value = 0a 04 12 02 08 2a | 12 02 08 01.
	 */
	in = deferred_of("0a 03 70 69 64 18 01 27 3a 02 12 00");
	assert_node_bytes(process_inspect_respond(json, in),
			  "2a 1b 0a 19 0a 03 70 69 64 12 0e 22 0c 0a 0a 0a 04 12 02 08 2a 12 02 08 01"
			  " 1a 02 0a 00");
	mesh_payload_message_free(&in->base);

	/* Past a value: "not a directory" (InternalError variant 3: 12 04 0a 02 1a 00). */
	in = deferred_of("0a 07 70 69 64 2f 78 79 7a 18 01 27");
	assert_node_bytes(process_inspect_respond(json, in),
			  "2a 13 0a 11 0a 03 70 69 64 12 06 12 04 0a 02 1a 00 1a 02 0a 00");
	mesh_payload_message_free(&in->base);

	/* The whole tree back as JSON: a directory of 0, 1, ... is an array again; null unevaluated. */
	in = deferred_of("18 10 27");
	MeshProcess__InspectNode *node = process_inspect_respond(json, in);
	char *text = process_inspect_node_to_json(node);
	ck_assert_str_eq(text,
			 "{\"pid\":42,\"name\":\"h\",\"rlimits\":{\"nofile\":[1024,null]}}");
	g_free(text);
	mesh_payload_message_free(&node->base);
	mesh_payload_message_free(&in->base);
}
END_TEST

/* An upstream parent, played by hand: the C host it starts. */

static gboolean c_host_func(MeshMessage *initial, gpointer user_data, GError **error)
{
	/* T = (results: Sender, value): echo T's bytes on results. */
	MeshPort *p = mesh_message_steal_port(initial, 0);
	if (!p)
		_exit(20);
	MeshSender *results = mesh_sender_from_port(p, NULL);
	size_t size;
	const uint8_t *data = mesh_message_get_data(initial, &size);
	mesh_sender_send_message(results, mesh_message_new(data, size));
	mesh_sender_free(results);
	mesh_message_free(initial);
	for (;;)
		pause(); /* until the parent closes our requests or crashes us */
	return TRUE;
}

static char *env_invitation(MeshInvitation *inv)
{
	MeshNodeId ln, rn;
	MeshPortId lp, rp;
	mesh_invitation_get_address(inv, &ln, &lp, &rn, &rp);
	MeshProcess__InvitationAddress addr = MESH_PROCESS__INVITATION_ADDRESS__INIT;
	MeshProcess__EnvInvitation env = MESH_PROCESS__ENV_INVITATION__INIT;
	env.node_name = (char *)"rusty";
	addr.local_addr = process_address_new(&ln, &lp);
	addr.remote_addr = process_address_new(&rn, &rp);
	env.address = &addr;
	env.socket_fd = 3;
	size_t size = protobuf_c_message_get_packed_size(&env.base);
	uint8_t *buf = g_malloc(size);
	protobuf_c_message_pack(&env.base, buf);
	char *b64 = g_base64_encode(buf, size);
	g_free(buf);
	protobuf_c_message_free_unpacked(&addr.local_addr->base, NULL);
	protobuf_c_message_free_unpacked(&addr.remote_addr->base, NULL);
	return b64;
}

START_TEST(test_upstream_parent_starts_c_host)
{
	GError *error = NULL;
	MeshNode *node = mesh_node_new();
	MeshUnixNode *unode = mesh_unix_node_new(node, NULL);
	MeshPort *boot, *boot_remote;
	MeshInvitation *inv = NULL;

	/* Upstream's launch_host: a oneshot's receiver is invited... */
	mesh_port_new_pair(&boot, &boot_remote);
	ck_assert(mesh_unix_node_invite(unode, boot_remote, WAIT_US, &inv, &error));
	PalSpawn *spawn = pal_spawn_new("/proc/self/exe");
	char *env = env_invitation(inv);
	pal_spawn_env_set(spawn, MESH_WORKER_INVITATION, env);
	g_free(env);
	pal_spawn_dup_fd(spawn, mesh_invitation_get_fd(inv), 3);
	pal_spawn_set_parent_death_signal(spawn, SIGKILL);
	PalChild *child = NULL;
	ck_assert_int_eq(pal_spawn_run(spawn, &child), 0);
	pal_spawn_free(spawn);
	mesh_invitation_free(inv);
	guint64 pid = (guint64)pal_child_get_pid(child);

	/*
	 * ...and its sender gets InitialMessage { requests, init_message: T }
	 * with T = (results, 5u32): 0f | 16 01 03 [0f 10 05].
	 */
	MeshSender *req_send, *res_send;
	MeshReceiver *req_recv, *res_recv;
	mesh_channel_new(NULL, &req_send, &req_recv);
	mesh_channel_new(NULL, &res_send, &res_recv);
	MeshMessage *im = message_of("0f 16 01 03 0f 10 05");
	mesh_message_add_port_take(im, mesh_receiver_into_port(req_recv));
	mesh_message_add_port_take(im, mesh_sender_into_port(res_send));
	mesh_oneshot_send_message(mesh_oneshot_sender_from_port(boot, NULL), im);

	MeshMessage *echo = NULL;
	ck_assert(mesh_receiver_recv_message(res_recv, WAIT_US, &echo, &error));
	assert_message_bytes(echo, "0f 10 05");
	mesh_message_free(echo);

	/* HostRequest::Inspect(Deferred) of path "pid", depth 1 (test_inspect_respond_bytes). */
	MeshOneshotSender *os;
	MeshOneshotReceiver *orx;
	mesh_oneshot_new(NULL, &os, &orx);
	MeshMessage *rq = message_of("0e 01 17 0e 01 14 0a 03 70 69 64 18 01 27 2a 02 1a 00 32 02 12"
				     " 00 3a 02 0a 00");
	mesh_message_add_port_take(rq, mesh_oneshot_sender_into_port(os));
	mesh_sender_send_message(req_send, rq);
	MeshMessage *reply = NULL;
	ck_assert(mesh_oneshot_recv_message(orx, WAIT_US, &reply, &error));
	char *want = pid_dir_hex(pid);
	assert_message_bytes(reply, want);
	g_free(want);
	mesh_message_free(reply);

	/* HostRequest::Crash: 12 00. The host panics (here: abort()). */
	mesh_sender_send_message(req_send, message_of("12 00"));
	int status = 0;
	ck_assert_int_eq(pal_child_wait(child, &status), 0);
	ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
	pal_child_free(child);
	mesh_sender_free(req_send);
	mesh_receiver_free(res_recv);
	mesh_unix_node_free(unode);
	mesh_node_unref(node);
}
END_TEST

/* An upstream host, played by hand: exits 0 when its requests end, 1x on a wrong byte. */
static int fake_upstream_host(void)
{
	GError *error = NULL;
	char *b64 = g_strdup(getenv(MESH_WORKER_INVITATION));
	unsetenv(MESH_WORKER_INVITATION);
	gsize size;
	guchar *raw = g_base64_decode(b64, &size);
	g_free(b64);
	ProtobufCMessage *msg = NULL;
	MeshPayloadError perr;
	if (mesh_payload_decode(&mesh_process__env_invitation__descriptor, raw, size, NULL, NULL,
				&msg, &perr) < 0)
		return 10;
	g_free(raw);
	MeshProcess__EnvInvitation *env = (MeshProcess__EnvInvitation *)msg;
	MeshNodeId ln, rn;
	MeshPortId lp, rp;
	if (!process_address_read(env->address->local_addr, &ln, &lp) ||
	    !process_address_read(env->address->remote_addr, &rn, &rp))
		return 11;
	MeshPort *port = NULL;
	MeshUnixNode *unode = mesh_unix_node_join(
		mesh_invitation_new_take(&ln, &lp, &rn, &rp, env->socket_fd), NULL, WAIT_US, &port,
		&error);
	mesh_payload_message_free(msg);
	if (!unode)
		return 12;

	/*
	 * InitialMessage: 0f | 12 02 08 05 (T = (5u32,)) | 1f, C's events port,
	 * dropped here | 20 varint, C's field 4, our pid (an upstream decoder
	 * skips both).
	 */
	MeshOneshotReceiver *boot = mesh_oneshot_receiver_from_port(port, NULL);
	MeshMessage *im = NULL;
	if (!mesh_oneshot_recv_message(boot, WAIT_US, &im, &error))
		return 13;
	GByteArray *want = bytes_of("0f 12 02 08 05 1f 20");
	guint8 pid_varint[10];
	g_byte_array_append(want, pid_varint, (guint)wire_put_varint(pid_varint, (uint64_t)getpid()));
	size_t n;
	const guint8 *data = mesh_message_get_data(im, &n);
	if (n != want->len || memcmp(data, want->data, n) != 0 ||
	    mesh_message_get_n_resources(im) != 2)
		return 14;
	g_byte_array_free(want, TRUE);
	MeshReceiver *requests = mesh_receiver_from_port(mesh_message_steal_port(im, 0), NULL);
	mesh_message_free(im); /* the events port with it, unread */

	/* The probe (depth 0), the inspect (depth 64), crash; nothing else. */
	GByteArray *probe = bytes_of("0e 01 10 0e 01 0d 27 2a 02 1a 00 32 02 12 00 3a 02 0a 00");
	GByteArray *inspect =
		bytes_of("0e 01 12 0e 01 0f 18 40 27 2a 02 1a 00 32 02 12 00 3a 02 0a 00");
	MeshMessage *rq;
	while (mesh_receiver_recv_message(requests, -1, &rq, &error)) {
		data = mesh_message_get_data(rq, &n);
		if (n == 2 && data[0] == 0x12 && data[1] == 0)
			abort(); /* upstream panics */
		GByteArray *known = n == probe->len && !memcmp(data, probe->data, n) ? probe
				    : n == inspect->len && !memcmp(data, inspect->data, n)
					? inspect
					: NULL;
		if (!known || mesh_message_get_n_resources(rq) != 1)
			return 15;
		MeshOneshotSender *reply =
			mesh_oneshot_sender_from_port(mesh_message_steal_port(rq, 0), NULL);
		/*
		 * Depth 0: DepthExhausted (1a 00). Otherwise Dir[{ "tasks":
		 * Value(String("ok")), Safe }]: String is ValueKind variant 6,
		 * 32 04 0a 02 "ok"; Value {1 kind} 0a 06 [...]; Node::Value 22 0a
		 * 0a 08 [...]; the entry 0a 05 "tasks" 12 0c [...] 1a 02 0a 00
		 * (25 bytes); Dir 2a 1b 0a 19 [entry].
		 */
		mesh_oneshot_send_message(
			reply, message_of(known == probe ? "1a 00"
							 : "2a 1b 0a 19 0a 05 74 61 73 6b 73 12 0c 22 0a"
							   " 0a 08 0a 06 32 04 0a 02 6f 6b 1a 02 0a 00"));
		mesh_message_free(rq);
	}
	mesh_unix_node_shutdown(unode, WAIT_US);
	return 0;
}

typedef struct {
	GMainContext *ctx;
	gboolean done;
	MeshHostExit exit;
} ExitRecord;

static void on_exit_cb(Mesh *mesh, const char *name, GPid pid, const MeshHostExit *exit,
		       gpointer user_data)
{
	ExitRecord *r = user_data;
	r->exit = *exit;
	r->exit.description = NULL;
	r->exit.signal_name = NULL;
	r->done = TRUE;
}

/* Until the host's exit callback ran on @r's context. */
static void wait_exit(ExitRecord *r)
{
	while (!r->done)
		g_main_context_iteration(r->ctx, TRUE);
	ck_assert(r->exit.signaled);
	ck_assert_int_eq(r->exit.signal, SIGABRT);
}

START_TEST(test_c_parent_starts_upstream_host)
{
	GError *error = NULL;
	Mesh *mesh = mesh_new("startup", NULL, &error);
	ck_assert_ptr_nonnull(mesh);
	MeshProcessConfig *c = mesh_process_config_new("fake");
	mesh_process_config_set_env(c, "STARTUP_FAKE_UPSTREAM_HOST", "1");
	ExitRecord exit = {.ctx = g_main_context_new()};
	mesh_process_config_set_exit_callback(c, exit.ctx, on_exit_cb, &exit, NULL);
	GPid pid = mesh_launch_host(mesh, c, message_of("08 05"), &error);
	ck_assert_msg(pid > 0, "%s", error ? error->message : "");

	/* It never says it joined: RUNNING once it answered the depth-0 inspect. */
	MeshHostState state;
	while ((state = mesh_get_host_state(mesh, pid)) == MESH_HOST_STATE_STARTING)
		g_usleep(1000);
	ck_assert_int_eq(state, MESH_HOST_STATE_RUNNING);

	/* Inspect with upstream's Deferred; its InternalNode becomes the report. */
	char *json = mesh_inspect(mesh, WAIT_US);
	ck_assert_msg(strstr(json, "\"report\":{\"tasks\":\"ok\"}"), "%s", json);
	g_free(json);

	/* Crash: HostRequest::Crash; it aborts (a wrong request would exit 15). */
	ck_assert(mesh_crash(mesh, pid, &error));
	wait_exit(&exit);
	ck_assert(mesh_shutdown(mesh, WAIT_US, &error));
	mesh_process_config_free(c);
	mesh_free(mesh);
	g_main_context_unref(exit.ctx);
}
END_TEST

/*
 * MESH_PROCESS_EXT=0: a C parent talks to a C host as to an upstream one
 * (no events channel): RUNNING by the probe, inspect by Deferred (the
 * report is the host's JSON through an InternalNode: its arrays become
 * directories), crash.
 */
START_TEST(test_upstream_only_switch)
{
	GError *error = NULL;
	g_setenv("MESH_PROCESS_EXT", "0", TRUE);
	Mesh *mesh = mesh_new("startup", NULL, &error);
	MeshProcessConfig *c = mesh_process_config_new("chost");
	ExitRecord exit = {.ctx = g_main_context_new()};
	mesh_process_config_set_exit_callback(c, exit.ctx, on_exit_cb, &exit, NULL);
	MeshSender *rs;
	MeshReceiver *rr;
	mesh_channel_new(NULL, &rs, &rr);
	MeshMessage *t = message_of("0f 10 05");
	mesh_message_add_port_take(t, mesh_sender_into_port(rs));
	GPid pid = mesh_launch_host(mesh, c, t, &error);
	ck_assert_msg(pid > 0, "%s", error ? error->message : "");
	MeshMessage *echo = NULL;
	ck_assert(mesh_receiver_recv_message(rr, WAIT_US, &echo, &error));
	assert_message_bytes(echo, "0f 10 05");
	mesh_message_free(echo);

	MeshHostState state;
	while ((state = mesh_get_host_state(mesh, pid)) == MESH_HOST_STATE_STARTING)
		g_usleep(1000);
	ck_assert_int_eq(state, MESH_HOST_STATE_RUNNING);
	char *json = mesh_inspect(mesh, WAIT_US);
	char *pid_field = g_strdup_printf("\"report\":{\"pid\":%d,\"name\":\"chost\"", (int)pid);
	ck_assert_msg(strstr(json, pid_field), "%s", json);
	ck_assert_msg(strstr(json, "\"nofile\":["), "%s", json);
	g_free(pid_field);
	g_free(json);

	ck_assert(mesh_crash(mesh, pid, &error));
	wait_exit(&exit);
	ck_assert(mesh_shutdown(mesh, WAIT_US, &error));
	mesh_receiver_free(rr);
	mesh_process_config_free(c);
	mesh_free(mesh);
	g_main_context_unref(exit.ctx);
	g_unsetenv("MESH_PROCESS_EXT");
}
END_TEST

int main(void)
{
	GError *error = NULL;

	if (getenv("STARTUP_FAKE_UPSTREAM_HOST"))
		return fake_upstream_host();
	if (!mesh_try_run_host("startup", c_host_func, NULL, &error)) {
		g_printerr("host: %s\n", error->message);
		return 2;
	}

	Suite *s = suite_create("startup");
	TCase *tc = tcase_create("bytes");
	tcase_add_test(tc, test_initial_message_bytes);
	tcase_add_test(tc, test_initial_message_parse);
	tcase_add_test(tc, test_request_bytes);
	tcase_add_test(tc, test_inspect_respond_bytes);
	suite_add_tcase(s, tc);
	TCase *tp = tcase_create("processes");
	tcase_set_timeout(tp, 120);
	tcase_add_test(tp, test_upstream_parent_starts_c_host);
	tcase_add_test(tp, test_c_parent_starts_upstream_host);
	tcase_add_test(tp, test_upstream_only_switch);
	suite_add_tcase(s, tp);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
