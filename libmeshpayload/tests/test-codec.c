/* SPDX-License-Identifier: MIT */
/* Encoding and decoding: upstream byte vectors, resources, errors, limits. */
#include <stdio.h>

#include "payload-test.h"
#include "test-proto2.pb-c.h"
#include "wire-private.h"

/* Encodes @msg, compares with @hex, and for resource-free messages with protobuf-c. */
static void check_encoding(ProtobufCMessage *msg, const char *hex)
{
	MeshPayloadResources *res = mesh_payload_resources_new();
	uint8_t *data = NULL;
	size_t size = 0;

	ck_assert_int_eq(mesh_payload_encode_alloc(msg, &data, &size, res, NULL), 0);
	assert_bytes(data, size, hex);
	ck_assert_uint_eq(mesh_payload_resources_len(res), 0);

	uint8_t std[256];
	ck_assert_uint_eq(protobuf_c_message_get_packed_size(msg), size);
	protobuf_c_message_pack(msg, std);
	ck_assert(size == 0 || memcmp(std, data, size) == 0);

	/* Decode and encode again: the same bytes. */
	ProtobufCMessage *back = NULL;
	ck_assert_int_eq(mesh_payload_decode(msg->descriptor, data, size, NULL, NULL, &back, NULL), 0);
	uint8_t *again = NULL;
	size_t again_size = 0;
	ck_assert_int_eq(mesh_payload_encode_alloc(back, &again, &again_size, res, NULL), 0);
	ck_assert_uint_eq(again_size, size);
	ck_assert(size == 0 || memcmp(again, data, size) == 0);

	free(again);
	free(data);
	mesh_payload_message_free(back);
	mesh_payload_resources_free(res);
}

START_TEST(test_upstream_vectors)
{
	Meshtest__U32 u32 = MESHTEST__U32__INIT;
	u32.v = 5;
	check_encoding(&u32.base, "08 05");

	Meshtest__Bool b = MESHTEST__BOOL__INIT;
	b.v = 1;
	check_encoding(&b.base, "08 01");

	Meshtest__Str str = MESHTEST__STR__INIT;
	str.v = "hi";
	check_encoding(&str.base, "0a 02 68 69");

	Meshtest__S32 s32 = MESHTEST__S32__INIT;
	s32.v = 5;
	check_encoding(&s32.base, "08 0a");

	Meshtest__I32 i32 = MESHTEST__I32__INIT;
	i32.v = -1;
	check_encoding(&i32.base, "08 ff ff ff ff ff ff ff ff ff 01");

	Meshtest__Pair pair = MESHTEST__PAIR__INIT;
	pair.a = 1;
	pair.b = 2;
	Meshtest__Nested nested = MESHTEST__NESTED__INIT;
	nested.v = &pair;
	check_encoding(&nested.base, "0a 04 08 02 10 04");

	int32_t values[] = {1, 2, 3};
	Meshtest__PackedS32 packed = MESHTEST__PACKED_S32__INIT;
	packed.v = values;
	packed.n_v = 3;
	check_encoding(&packed.base, "0a 03 02 04 06");

	char *strings[] = {"abc", "def"};
	Meshtest__Strings strs = MESHTEST__STRINGS__INIT;
	strs.v = strings;
	strs.n_v = 2;
	check_encoding(&strs.base, "0a 03 61 62 63 0a 03 64 65 66");

	Meshtest__Map__VEntry e1 = MESHTEST__MAP__VENTRY__INIT, e2 = MESHTEST__MAP__VENTRY__INIT;
	e1.key = "hi";
	e1.value = 6;
	e2.key = "hmm";
	e2.value = 2;
	Meshtest__Map__VEntry *entries[] = {&e1, &e2};
	Meshtest__Map map = MESHTEST__MAP__INIT;
	map.v = entries;
	map.n_v = 2;
	check_encoding(&map.base, "0a 06 0a 02 68 69 10 06 0a 07 0a 03 68 6d 6d 10 02");

	Meshtest__Struct st = MESHTEST__STRUCT__INIT;
	st.x = 5;
	st.y = 104824;
	st.z = "alphabet";
	check_encoding(&st.base, "08 05 10 f8 b2 06 1a 08 61 6c 70 68 61 62 65 74");

	/* Upstream table/mod.rs test_derived_macro: Foo {a: 1, b: 2, x: "hi"}. */
	Meshtest__Struct hi = MESHTEST__STRUCT__INIT;
	hi.x = 1;
	hi.y = 2;
	hi.z = "hi";
	check_encoding(&hi.base, "08 01 10 02 1a 02 68 69");
	/* An optional present with its zero value is written (upstream's Some(0)). */
	Meshtest__Struct some = MESHTEST__STRUCT__INIT;
	some.maybe_w_case = MESHTEST__STRUCT__MAYBE_W_W;
	some.w = 0;
	check_encoding(&some.base, "20 00");

	Meshtest__Duration dur = MESHTEST__DURATION__INIT;
	dur.secs = 1;
	dur.nanos = 10000;
	check_encoding(&dur.base, "08 01 10 90 4e");
	Meshtest__Duration zero = MESHTEST__DURATION__INIT;
	check_encoding(&zero.base, "");

	Meshtest__HoldsEmpty holds = MESHTEST__HOLDS_EMPTY__INIT;
	check_encoding(&holds.base, "");

	/*
	 * Upstream lib.rs test_nested_empty_message: Message(Outer::default(),
	 * Inner(1)). Upstream leaves out the all-default Outer; here it is
	 * absent (NULL), and the same bytes decode back.
	 */
	Meshtest__EmptyInner inner1 = MESHTEST__EMPTY_INNER__INIT;
	inner1.v = 1;
	Meshtest__NestedEmpty ne = MESHTEST__NESTED_EMPTY__INIT;
	ne.b = &inner1;
	check_encoding(&ne.base, "12 02 08 01");

	/* Upstream lib.rs test_derive_enum: an enum is a oneof of messages. */
	Meshtest__Empty unit = MESHTEST__EMPTY__INIT;
	Meshtest__EnumFoo foo = MESHTEST__ENUM_FOO__INIT;
	foo.v_case = MESHTEST__ENUM_FOO__V_A;
	foo.a = &unit;
	check_encoding(&foo.base, "0a 00"); /* Foo::A */
	Meshtest__EnumFooB fb = MESHTEST__ENUM_FOO_B__INIT;
	fb.f0 = 12;
	fb.f1 = "hi";
	foo.v_case = MESHTEST__ENUM_FOO__V_B;
	foo.b = &fb;
	check_encoding(&foo.base, "12 06 08 0c 12 02 68 69"); /* Foo::B(12, "hi") */
	Meshtest__EnumFooC fc = MESHTEST__ENUM_FOO_C__INIT;
	fc.x = 1;
	foo.v_case = MESHTEST__ENUM_FOO__V_C;
	foo.c = &fc;
	check_encoding(&foo.base, "1a 02 08 01"); /* Foo::C { x: true, y: 0 } */
	fc.x = 0;
	check_encoding(&foo.base, "1a 00"); /* Foo::C { x: false, y: 0 } */
}
END_TEST

START_TEST(test_zigzag_and_varint)
{
	static const struct {
		int32_t v;
		uint32_t z;
	} zz32[] = {{0, 0}, {-1, 1}, {1, 2}, {-2, 3}, {2147483647, 4294967294u},
		    {-2147483647 - 1, 4294967295u}};
	for (size_t i = 0; i < sizeof(zz32) / sizeof(zz32[0]); i++) {
		ck_assert_uint_eq(wire_zigzag32(zz32[i].v), zz32[i].z);
		ck_assert_int_eq(wire_unzigzag32(zz32[i].z), zz32[i].v);
	}
	ck_assert_uint_eq(wire_zigzag64(INT64_MIN), UINT64_MAX);
	ck_assert_int_eq(wire_unzigzag64(UINT64_MAX), INT64_MIN);
	ck_assert_uint_eq(wire_zigzag64(INT64_MAX), UINT64_MAX - 1);

	static const struct {
		uint64_t v;
		size_t size;
	} sizes[] = {{0, 1}, {127, 1}, {128, 2}, {16383, 2}, {16384, 3}, {UINT32_MAX, 5},
		     {UINT64_MAX, 10}};
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		uint8_t buf[10];
		ck_assert_uint_eq(wire_varint_size(sizes[i].v), sizes[i].size);
		ck_assert_uint_eq(wire_put_varint(buf, sizes[i].v), sizes[i].size);
		WireReader r = {buf, buf + sizes[i].size};
		uint64_t back;
		ck_assert_int_eq(wire_read_varint(&r, &back), 1);
		ck_assert_uint_eq(back, sizes[i].v);
	}
	uint8_t buf[10];
	wire_put_varint(buf, 300);
	assert_bytes(buf, 2, "ac 02");
	/* 10th byte above 1 overflows 64 bits; 11 bytes is too long. */
	uint8_t over[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02};
	WireReader r = {over, over + sizeof(over)};
	uint64_t v;
	ck_assert_int_eq(wire_read_varint(&r, &v), -1);
	uint8_t cut[] = {0x80, 0x80};
	WireReader r2 = {cut, cut + 2};
	ck_assert_int_eq(wire_read_varint(&r2, &v), 0);
}
END_TEST

/* The shared field reader (wire-private.h), as libmeshremote uses it. */
static WireStatus read_one(const char *bytes, size_t n, WireField *f, size_t *consumed)
{
	WireReader r = {(const uint8_t *)bytes, (const uint8_t *)bytes + n};
	WireStatus s = wire_read_field(&r, f);
	*consumed = (size_t)(r.p - (const uint8_t *)bytes);
	return s;
}

START_TEST(test_field_reader)
{
	WireField f;
	size_t used;

	ck_assert_int_eq(read_one("\x08\x96\x01", 3, &f, &used), WIRE_OK);
	ck_assert_uint_eq(f.number, 1);
	ck_assert_uint_eq(f.wire_type, WIRE_VARINT);
	ck_assert_uint_eq(f.value, 150);
	ck_assert_uint_eq(f.n_res, 0);
	ck_assert_uint_eq(used, 3);
	ck_assert_int_eq(read_one("\x0d\x01\x02\x03\x04", 5, &f, &used), WIRE_OK);
	ck_assert_uint_eq(f.value, 0x04030201);
	ck_assert_int_eq(read_one("\x09\x01\x00\x00\x00\x00\x00\x00\x80", 9, &f, &used), WIRE_OK);
	ck_assert_uint_eq(f.value, 0x8000000000000001ull);
	ck_assert_int_eq(read_one("\x12\x02hi!", 5, &f, &used), WIRE_OK);
	ck_assert_uint_eq(f.number, 2);
	ck_assert_uint_eq(f.size, 2);
	ck_assert_int_eq(memcmp(f.data, "hi", 2), 0);
	ck_assert_uint_eq(used, 4);
	/* Wire type 6: resource count, length, bytes; 7: one resource. */
	ck_assert_int_eq(read_one("\x0e\x03\x01\x17", 4, &f, &used), WIRE_OK);
	ck_assert_uint_eq(f.wire_type, WIRE_MESH_MESSAGE);
	ck_assert_uint_eq(f.n_res, 3);
	ck_assert_uint_eq(f.size, 1);
	ck_assert_int_eq(read_one("\x17", 1, &f, &used), WIRE_OK);
	ck_assert_uint_eq(f.number, 2);
	ck_assert_uint_eq(f.wire_type, WIRE_RESOURCE);
	ck_assert_uint_eq(f.n_res, 1);

	/* Each failure, with what the decoder reports for it. */
	ck_assert_int_eq(read_one("\x08\x80", 2, &f, &used), WIRE_ERROR_TRUNCATED);
	ck_assert_int_eq(read_one("\x0d\x01\x02\x03", 4, &f, &used), WIRE_ERROR_TRUNCATED);
	ck_assert_int_eq(read_one("\x12\x03hi", 4, &f, &used), WIRE_ERROR_TRUNCATED);
	ck_assert_int_eq(read_one("\x0e\x01", 2, &f, &used), WIRE_ERROR_TRUNCATED);
	ck_assert_int_eq(read_one("\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02", 11, &f, &used),
			 WIRE_ERROR_BAD_VARINT);
	ck_assert_int_eq(read_one("\x12\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 12, &f,
				  &used),
			 WIRE_ERROR_BAD_VARINT);
	ck_assert_int_eq(read_one("\x02\x00", 2, &f, &used), WIRE_ERROR_BAD_FIELD_NUMBER);
	ck_assert_int_eq(read_one("\x80\x80\x80\x80\x10", 5, &f, &used),
			 WIRE_ERROR_BAD_FIELD_NUMBER); /* 2^29 */
	ck_assert_int_eq(read_one("\xf8\xff\xff\xff\x0f\x00", 6, &f, &used), WIRE_OK); /* 2^29-1 */
	ck_assert_uint_eq(f.number, WIRE_MAX_FIELD_NUMBER);
	ck_assert_int_eq(read_one("\x0b", 1, &f, &used), WIRE_ERROR_UNKNOWN_WIRE_TYPE);
	ck_assert_int_eq(read_one("\x0c", 1, &f, &used), WIRE_ERROR_UNKNOWN_WIRE_TYPE);
	ck_assert_uint_eq(f.wire_type, 4);
}
END_TEST

START_TEST(test_resource_vector)
{
	int fds[5];
	for (int i = 0; i < 5; i++)
		fds[i] = open_null();
	MeshPayload__Fd m[5];
	for (int i = 0; i < 5; i++) {
		mesh_payload__fd__init(&m[i]);
		m[i].fd = fds[i];
	}
	Meshtest__Inner3 inner = MESHTEST__INNER3__INIT;
	MeshPayload__Fd *inner_fds[] = {&m[2], &m[3], &m[4]};
	inner.fds = inner_fds;
	inner.n_fds = 3;
	Meshtest__ResourceTest msg = MESHTEST__RESOURCE_TEST__INIT;
	msg.a = &m[0];
	msg.b = &m[1];
	msg.c = &inner;

	ck_assert_uint_eq(mesh_payload_count_resources(&msg.base), 5);
	MeshPayloadResources *res = mesh_payload_resources_new();
	uint8_t *data;
	size_t size;
	ck_assert_int_eq(mesh_payload_encode_alloc(&msg.base, &data, &size, res, NULL), 0);
	assert_bytes(data, size, "0f 17 1e 03 03 0f 0f 0f");
	ck_assert_uint_eq(mesh_payload_resources_len(res), 5);
	for (int i = 0; i < 5; i++) {
		ck_assert_int_eq(mesh_payload_resources_peek_fd(res, i), fds[i]);
		ck_assert_int_eq(m[i].fd, -1); /* moved out */
	}

	ProtobufCMessage *out;
	ck_assert_int_eq(mesh_payload_decode(&meshtest__resource_test__descriptor, data, size, res,
					     NULL, &out, NULL),
			 0);
	ck_assert_uint_eq(mesh_payload_resources_len(res), 0);
	Meshtest__ResourceTest *back = (Meshtest__ResourceTest *)out;
	ck_assert_int_eq(back->a->fd, fds[0]);
	ck_assert_int_eq(back->b->fd, fds[1]);
	ck_assert_uint_eq(back->c->n_fds, 3);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(back->c->fds[i]->fd, fds[2 + i]);
	mesh_payload_message_free(out);
	for (int i = 0; i < 5; i++)
		ck_assert(!fd_is_open(fds[i]));
	free(data);
	mesh_payload_resources_free(res);
}
END_TEST

/* A full Everything with @n_fds fds and two ports. */
static Meshtest__Everything *make_everything(TestObject *objs)
{
	Meshtest__Everything *e = calloc(1, sizeof(*e));
	meshtest__everything__init(e);
	e->i32 = -5;
	e->i64 = -1234567890123ll;
	e->u32 = 4000000000u;
	e->u64 = UINT64_MAX;
	e->s32 = -77;
	e->s64 = INT64_MIN;
	e->f32 = 0xdeadbeef;
	e->f64 = 0x0123456789abcdefull;
	e->sf32 = -9;
	e->sf64 = -10;
	e->fl = 1.5f;
	e->db = -2.25;
	e->b = 1;
	e->str = strdup("héllo");
	e->by.data = (uint8_t *)strdup("\x01\x02\x03");
	e->by.len = 3;
	e->color = MESHTEST__COLOR__COLOR_BLUE;
	e->pair = malloc(sizeof(*e->pair));
	meshtest__pair__init(e->pair);
	e->pair->a = 3;
	e->maybe_opt_case = MESHTEST__EVERYTHING__MAYBE_OPT_OPT;
	e->opt = 0;
	e->n_r_i32 = 3;
	e->r_i32 = malloc(3 * sizeof(int32_t));
	e->r_i32[0] = 1, e->r_i32[1] = -1, e->r_i32[2] = 300;
	e->n_r_s64 = 2;
	e->r_s64 = malloc(2 * sizeof(int64_t));
	e->r_s64[0] = -1, e->r_s64[1] = INT64_MAX;
	e->n_r_f32 = 1;
	e->r_f32 = malloc(sizeof(uint32_t));
	e->r_f32[0] = 7;
	e->n_r_db = 1;
	e->r_db = malloc(sizeof(double));
	e->r_db[0] = 3.5;
	e->n_r_b = 2;
	e->r_b = malloc(2 * sizeof(protobuf_c_boolean));
	e->r_b[0] = 1, e->r_b[1] = 0;
	e->n_r_str = 2;
	e->r_str = malloc(2 * sizeof(char *));
	e->r_str[0] = strdup("");
	e->r_str[1] = strdup("x");
	e->n_r_by = 1;
	e->r_by = calloc(1, sizeof(ProtobufCBinaryData));
	e->n_r_pair = 2;
	e->r_pair = malloc(2 * sizeof(void *));
	for (int i = 0; i < 2; i++) {
		e->r_pair[i] = malloc(sizeof(Meshtest__Pair));
		meshtest__pair__init(e->r_pair[i]);
		e->r_pair[i]->b = i;
	}
	e->n_r_unpacked = 2;
	e->r_unpacked = malloc(2 * sizeof(uint32_t));
	e->r_unpacked[0] = 0, e->r_unpacked[1] = 99;
	/* A map entry whose tree holds an fd and a port. */
	e->n_trees = 1;
	e->trees = malloc(sizeof(void *));
	e->trees[0] = malloc(sizeof(Meshtest__Everything__TreesEntry));
	meshtest__everything__trees_entry__init(e->trees[0]);
	e->trees[0]->key = strdup("k");
	e->trees[0]->value = malloc(sizeof(Meshtest__Tree));
	meshtest__tree__init(e->trees[0]->value);
	e->trees[0]->value->fd = mesh_payload_fd_new_take(open_null());
	e->trees[0]->value->port = mesh_payload_port_new_take(&objs[0].base);
	e->choice_case = MESHTEST__EVERYTHING__CHOICE_C_FD;
	e->c_fd = mesh_payload_fd_new_take(open_null());
	e->fd = mesh_payload_fd_new_take(open_null());
	e->n_fds = 2;
	e->fds = malloc(2 * sizeof(void *));
	e->fds[0] = mesh_payload_fd_new_take(open_null());
	e->fds[1] = mesh_payload_fd_new_take(open_null());
	e->port = mesh_payload_port_new_take(&objs[1].base);
	e->tree = malloc(sizeof(Meshtest__Tree));
	meshtest__tree__init(e->tree);
	e->tree->name = strdup("root");
	e->tree->n_children = 1;
	e->tree->children = malloc(sizeof(void *));
	e->tree->children[0] = malloc(sizeof(Meshtest__Tree));
	meshtest__tree__init(e->tree->children[0]);
	e->tree->children[0]->name = strdup("leaf");
	e->tree->children[0]->fd = mesh_payload_fd_new_take(open_null());
	return e;
}

#define EVERYTHING_FDS 6
#define EVERYTHING_PORTS 2

START_TEST(test_roundtrip_everything)
{
	TestObject objs[2];
	test_object_init(&objs[0], 0);
	test_object_init(&objs[1], 1);
	int fds_before = count_open_fds();
	Meshtest__Everything *e = make_everything(objs);
	ck_assert_int_eq(count_open_fds(), fds_before + EVERYTHING_FDS);
	ck_assert_uint_eq(mesh_payload_count_resources(&e->base), EVERYTHING_FDS + EVERYTHING_PORTS);

	MeshPayloadResources *res = mesh_payload_resources_new();
	uint8_t *data;
	size_t size;
	ck_assert_int_eq(mesh_payload_encode_alloc(&e->base, &data, &size, res, NULL), 0);
	ck_assert_uint_eq(mesh_payload_resources_len(res), EVERYTHING_FDS + EVERYTHING_PORTS);
	ck_assert_uint_eq(mesh_payload_count_resources(&e->base), EVERYTHING_FDS + EVERYTHING_PORTS);
	/* Depth-first field order: trees (fd, port), c_fd, fd, fds[2], port, tree.children.fd */
	static const MeshPayloadResourceKind order[] = {
		MESH_PAYLOAD_RESOURCE_FD, MESH_PAYLOAD_RESOURCE_PORT, MESH_PAYLOAD_RESOURCE_FD,
		MESH_PAYLOAD_RESOURCE_FD, MESH_PAYLOAD_RESOURCE_FD,   MESH_PAYLOAD_RESOURCE_FD,
		MESH_PAYLOAD_RESOURCE_PORT, MESH_PAYLOAD_RESOURCE_FD};
	for (size_t i = 0; i < 8; i++)
		ck_assert_int_eq(mesh_payload_resources_get_kind(res, i), order[i]);
	ck_assert_ptr_eq(mesh_payload_resources_peek_port(res, 1), &objs[0].base);
	ck_assert_ptr_eq(mesh_payload_resources_peek_port(res, 6), &objs[1].base);
	/* The emptied message releases nothing. */
	mesh_payload_message_free(&e->base);
	ck_assert_int_eq(objs[0].released + objs[1].released, 0);
	ck_assert_int_eq(count_open_fds(), fds_before + EVERYTHING_FDS);

	ProtobufCMessage *out;
	MeshPayloadError err;
	ck_assert_int_eq(mesh_payload_decode(&meshtest__everything__descriptor, data, size, res, NULL,
					     &out, &err),
			 0);
	Meshtest__Everything *d = (Meshtest__Everything *)out;
	ck_assert_int_eq(d->i32, -5);
	ck_assert_int_eq(d->i64, -1234567890123ll);
	ck_assert_uint_eq(d->u32, 4000000000u);
	ck_assert_uint_eq(d->u64, UINT64_MAX);
	ck_assert_int_eq(d->s32, -77);
	ck_assert_int_eq(d->s64, INT64_MIN);
	ck_assert_uint_eq(d->f32, 0xdeadbeef);
	ck_assert_uint_eq(d->f64, 0x0123456789abcdefull);
	ck_assert_int_eq(d->sf32, -9);
	ck_assert_int_eq(d->sf64, -10);
	ck_assert(d->fl == 1.5f);
	ck_assert(d->db == -2.25);
	ck_assert(d->b);
	ck_assert_str_eq(d->str, "héllo");
	ck_assert_uint_eq(d->by.len, 3);
	ck_assert_mem_eq(d->by.data, "\x01\x02\x03", 3);
	ck_assert_int_eq(d->color, MESHTEST__COLOR__COLOR_BLUE);
	ck_assert_int_eq(d->pair->a, 3);
	ck_assert(d->maybe_opt_case == MESHTEST__EVERYTHING__MAYBE_OPT_OPT && d->opt == 0);
	ck_assert_uint_eq(d->n_r_i32, 3);
	ck_assert_int_eq(d->r_i32[2], 300);
	ck_assert_int_eq(d->r_i32[1], -1);
	ck_assert_int_eq(d->r_s64[1], INT64_MAX);
	ck_assert_uint_eq(d->r_f32[0], 7);
	ck_assert(d->r_db[0] == 3.5);
	ck_assert(d->n_r_b == 2 && d->r_b[0] && !d->r_b[1]);
	ck_assert_uint_eq(d->n_r_str, 2);
	ck_assert_str_eq(d->r_str[0], "");
	ck_assert_str_eq(d->r_str[1], "x");
	ck_assert_uint_eq(d->n_r_by, 1);
	ck_assert_uint_eq(d->n_r_pair, 2);
	ck_assert_int_eq(d->r_pair[1]->b, 1);
	ck_assert_uint_eq(d->n_r_unpacked, 2);
	ck_assert_uint_eq(d->r_unpacked[1], 99);
	ck_assert_uint_eq(d->n_trees, 1);
	ck_assert_str_eq(d->trees[0]->key, "k");
	ck_assert(fd_is_open(d->trees[0]->value->fd->fd));
	ck_assert_ptr_eq((void *)(uintptr_t)d->trees[0]->value->port->handle, &objs[0]);
	ck_assert_int_eq(d->choice_case, MESHTEST__EVERYTHING__CHOICE_C_FD);
	ck_assert(fd_is_open(d->c_fd->fd));
	ck_assert_uint_eq(d->n_fds, 2);
	ck_assert_ptr_eq((void *)(uintptr_t)d->port->handle, &objs[1]);
	ck_assert_str_eq(d->tree->children[0]->name, "leaf");
	ck_assert(fd_is_open(d->tree->children[0]->fd->fd));

	/* Encoding the decoded message gives the same bytes. */
	MeshPayloadResources *res2 = mesh_payload_resources_new();
	uint8_t *again;
	size_t again_size;
	ck_assert_int_eq(mesh_payload_encode_alloc(out, &again, &again_size, res2, NULL), 0);
	ck_assert_uint_eq(again_size, size);
	ck_assert_mem_eq(again, data, size);
	ck_assert_int_eq(mesh_payload_decode(&meshtest__everything__descriptor, again, again_size,
					     res2, NULL, &out, NULL),
			 0);
	mesh_payload_message_free(&d->base);
	ck_assert_int_eq(objs[0].released + objs[1].released, 0);

	/* Freeing the decoded message releases every fd and port once. */
	mesh_payload_message_free(out);
	ck_assert_int_eq(objs[0].released, 1);
	ck_assert_int_eq(objs[1].released, 1);
	ck_assert_int_eq(count_open_fds(), fds_before);
	free(data);
	free(again);
	mesh_payload_resources_free(res);
	mesh_payload_resources_free(res2);
}
END_TEST

/* Decoding bytes that must fail: every resource given is released. */
typedef struct {
	const char *name;
	const ProtobufCMessageDescriptor *desc;
	const char *hex;
	int n_fds;
	int n_ports;
	MeshPayloadErrorCode code;
} BadCase;

static const BadCase bad_cases[] = {
	{"truncated varint", &meshtest__u32__descriptor, "08 80", 0, 0,
	 MESH_PAYLOAD_ERROR_TRUNCATED},
	{"truncated key", &meshtest__u32__descriptor, "80", 0, 0, MESH_PAYLOAD_ERROR_TRUNCATED},
	{"varint too long", &meshtest__u32__descriptor, "08 ff ff ff ff ff ff ff ff ff ff 01", 0,
	 0, MESH_PAYLOAD_ERROR_BAD_VARINT},
	{"varint overflow", &meshtest__u32__descriptor, "08 ff ff ff ff ff ff ff ff ff 02", 0, 0,
	 MESH_PAYLOAD_ERROR_BAD_VARINT},
	{"field zero", &meshtest__u32__descriptor, "00 01", 0, 0,
	 MESH_PAYLOAD_ERROR_BAD_FIELD_NUMBER},
	{"group start", &meshtest__u32__descriptor, "0b", 0, 0,
	 MESH_PAYLOAD_ERROR_UNKNOWN_WIRE_TYPE},
	{"group end unknown field", &meshtest__u32__descriptor, "14", 0, 0,
	 MESH_PAYLOAD_ERROR_UNKNOWN_WIRE_TYPE},
	{"string as varint", &meshtest__str__descriptor, "08 01", 0, 0,
	 MESH_PAYLOAD_ERROR_WRONG_WIRE_TYPE},
	{"varint as fixed32", &meshtest__u32__descriptor, "0d 01 00 00 00", 0, 0,
	 MESH_PAYLOAD_ERROR_WRONG_WIRE_TYPE},
	{"string too long", &meshtest__str__descriptor, "0a 05 68 69", 0, 0,
	 MESH_PAYLOAD_ERROR_TRUNCATED},
	{"fixed64 truncated", &meshtest__everything__descriptor, "41 01 02 03", 0, 0,
	 MESH_PAYLOAD_ERROR_TRUNCATED},
	{"utf8 overlong", &meshtest__str__descriptor, "0a 02 c0 80", 0, 0,
	 MESH_PAYLOAD_ERROR_INVALID_UTF8},
	{"utf8 surrogate", &meshtest__str__descriptor, "0a 03 ed a0 80", 0, 0,
	 MESH_PAYLOAD_ERROR_INVALID_UTF8},
	{"utf8 cut", &meshtest__str__descriptor, "0a 02 e2 82", 0, 0,
	 MESH_PAYLOAD_ERROR_INVALID_UTF8},
	{"utf8 above max", &meshtest__str__descriptor, "0a 04 f4 90 80 80", 0, 0,
	 MESH_PAYLOAD_ERROR_INVALID_UTF8},
	{"packed fixed32 bad length", &meshtest__everything__descriptor, "b2 01 03 01 02 03", 0,
	 0, MESH_PAYLOAD_ERROR_BAD_PACKED_LENGTH},
	{"packed varint cut", &meshtest__packed_s32__descriptor, "0a 02 02 84", 0, 0,
	 MESH_PAYLOAD_ERROR_TRUNCATED},
	{"missing resource", &meshtest__resource_test__descriptor, "0f", 0, 0,
	 MESH_PAYLOAD_ERROR_MISSING_RESOURCE},
	{"extra resources", &meshtest__resource_test__descriptor, "0f", 2, 0,
	 MESH_PAYLOAD_ERROR_EXTRA_RESOURCES},
	{"nested extra resources", &meshtest__resource_test__descriptor, "1e 02 01 0f", 2, 0,
	 MESH_PAYLOAD_ERROR_EXTRA_RESOURCES},
	{"nested range too large", &meshtest__resource_test__descriptor, "1e 04 03 0f 0f 0f", 3,
	 0, MESH_PAYLOAD_ERROR_INVALID_RESOURCE_RANGE},
	{"nested takes more than its range", &meshtest__resource_test__descriptor,
	 "1e 01 02 0f 0f 17", 2, 0, MESH_PAYLOAD_ERROR_MISSING_RESOURCE},
	{"port where fd expected", &meshtest__resource_test__descriptor, "0f", 0, 1,
	 MESH_PAYLOAD_ERROR_WRONG_RESOURCE_KIND},
	{"resource field as bytes", &meshtest__resource_test__descriptor, "0a 00", 0, 0,
	 MESH_PAYLOAD_ERROR_WRONG_WIRE_TYPE},
	{"resource wire type on a scalar", &meshtest__u32__descriptor, "0f", 1, 0,
	 MESH_PAYLOAD_ERROR_WRONG_WIRE_TYPE},
	{"message as varint", &meshtest__nested__descriptor, "08 01", 0, 0,
	 MESH_PAYLOAD_ERROR_WRONG_WIRE_TYPE},
	{"unknown resource field, none left", &meshtest__u32__descriptor, "77", 0, 0,
	 MESH_PAYLOAD_ERROR_MISSING_RESOURCE},
	{"unknown type 6 claims too many", &meshtest__u32__descriptor, "76 03 00", 2, 0,
	 MESH_PAYLOAD_ERROR_INVALID_RESOURCE_RANGE},
	{"error after resources taken", &meshtest__everything__descriptor, "c7 02 c7 02 9b 01", 2, 0,
	 MESH_PAYLOAD_ERROR_UNKNOWN_WIRE_TYPE},
	{"error inside nested message with fds", &meshtest__everything__descriptor,
	 "e6 02 02 05 1f 1f 0a 01 ff", 2, 0, MESH_PAYLOAD_ERROR_INVALID_UTF8},
};

START_TEST(test_decode_errors)
{
	const BadCase *c = &bad_cases[_i];
	uint8_t data[64];
	size_t size = parse_hex(c->hex, data);
	int fds_before = count_open_fds();
	TestObject objs[4];
	MeshPayloadResources *res = mesh_payload_resources_new();

	for (int i = 0; i < c->n_ports; i++) {
		test_object_init(&objs[i], i);
		ck_assert_int_ge(mesh_payload_resources_append_port_take(res, &objs[i].base), 0);
	}
	for (int i = 0; i < c->n_fds; i++)
		ck_assert_int_ge(mesh_payload_resources_append_fd_take(res, open_null()), 0);

	ProtobufCMessage *out = NULL;
	MeshPayloadError err;
	int r = mesh_payload_decode(c->desc, data, size, res, NULL, &out, &err);
	ck_assert_msg(r < 0, "%s: decoded", c->name);
	ck_assert_ptr_null(out);
	ck_assert_msg(err.code == c->code, "%s: got %s (%s)", c->name,
		      mesh_payload_error_code_to_string(err.code), err.message);
	ck_assert_uint_eq(mesh_payload_resources_len(res), 0);
	ck_assert_int_eq(count_open_fds(), fds_before);
	for (int i = 0; i < c->n_ports; i++)
		ck_assert_int_eq(objs[i].released, 1);
	mesh_payload_resources_free(res);
}
END_TEST

START_TEST(test_error_message_names_path)
{
	/* tree { children { name: "\xff" } } */
	uint8_t data[] = {0xe2, 0x02, 0x05, 0x12, 0x03, 0x0a, 0x01, 0xff};
	ProtobufCMessage *out = NULL;
	MeshPayloadError err;

	ck_assert_int_eq(mesh_payload_decode(&meshtest__everything__descriptor, data, sizeof(data),
					     NULL, NULL, &out, &err),
			 -EBADMSG);
	ck_assert_int_eq(err.code, MESH_PAYLOAD_ERROR_INVALID_UTF8);
	ck_assert_msg(strstr(err.message, "meshtest.Everything.tree.children.name") != NULL,
		      "message: %s", err.message);
}
END_TEST

START_TEST(test_truncation_sweep)
{
	TestObject objs[2];
	test_object_init(&objs[0], 0);
	test_object_init(&objs[1], 1);
	Meshtest__Everything *e = make_everything(objs);
	MeshPayloadResources *res = mesh_payload_resources_new();
	uint8_t *data;
	size_t size;
	ck_assert_int_eq(mesh_payload_encode_alloc(&e->base, &data, &size, res, NULL), 0);
	mesh_payload_message_free(&e->base);
	int fds_before = count_open_fds() - EVERYTHING_FDS;

	/* Every proper prefix fails and releases every resource it was given. */
	for (size_t len = 0; len < size; len++) {
		MeshPayloadResources *copy = mesh_payload_resources_new();
		TestObject tmp[2];
		for (size_t i = 0; i < mesh_payload_resources_len(res); i++) {
			if (mesh_payload_resources_get_kind(res, i) == MESH_PAYLOAD_RESOURCE_FD) {
				ck_assert_int_ge(mesh_payload_resources_append_fd(
							 copy, mesh_payload_resources_peek_fd(res, i)),
						 0);
			} else {
				TestObject *t = &tmp[i == 1 ? 0 : 1];
				test_object_init(t, 0);
				ck_assert_int_ge(mesh_payload_resources_append_port_take(copy, &t->base), 0);
			}
		}
		ProtobufCMessage *out = NULL;
		int r = mesh_payload_decode(&meshtest__everything__descriptor, data, len, copy, NULL,
					    &out, NULL);
		ck_assert_msg(r < 0, "prefix %zu of %zu decoded", len, size);
		ck_assert_int_eq(tmp[0].released, 1);
		ck_assert_int_eq(tmp[1].released, 1);
		ck_assert_int_eq(count_open_fds(), fds_before + EVERYTHING_FDS);
		mesh_payload_resources_free(copy);
	}
	mesh_payload_resources_free(res);
	ck_assert_int_eq(count_open_fds(), fds_before);
	ck_assert_int_eq(objs[0].released + objs[1].released, 2);
	free(data);
}
END_TEST

START_TEST(test_unknown_fields_skipped)
{
	/* v=7, then unknown fields of every wire type; two carry resources. */
	uint8_t data[] = {0x08, 0x07, 0x50, 0x96, 0x01, 0x59, 1, 2, 3, 4, 5, 6, 7, 8,
			  0x62, 0x02, 0xaa, 0xbb, 0x6d, 1, 2, 3, 4, 0x77, 0x7e, 0x01, 0x00};
	int fd1 = open_null(), fd2 = open_null();
	MeshPayloadResources *res = mesh_payload_resources_new();
	ck_assert_int_ge(mesh_payload_resources_append_fd_take(res, fd1), 0);
	ck_assert_int_ge(mesh_payload_resources_append_fd_take(res, fd2), 0);

	ProtobufCMessage *out;
	MeshPayloadError err;
	ck_assert_int_eq(mesh_payload_decode(&meshtest__u32__descriptor, data, sizeof(data), res,
					     NULL, &out, &err),
			 0);
	ck_assert_uint_eq(((Meshtest__U32 *)out)->v, 7);
	ck_assert(!fd_is_open(fd1));
	ck_assert(!fd_is_open(fd2));
	mesh_payload_message_free(out);
	mesh_payload_resources_free(res);
}
END_TEST

START_TEST(test_oneof_switch_and_merge)
{
	/*
	 * choice: c_str "ab", c_pair {a:1}, c_fd, c_u32 9: the last wins and
	 * the fd taken by c_fd is closed. pair {a:1} then pair {b:2} merges.
	 * str "x" then "yz": the last wins.
	 */
	uint8_t data[] = {0xf2, 0x01, 0x02, 0x61, 0x62, 0xfa, 0x01, 0x02, 0x08, 0x02,
			  0x87, 0x02, 0x88, 0x02, 0x09, 0x8a, 0x01, 0x02, 0x08, 0x02,
			  0x8a, 0x01, 0x02, 0x10, 0x04, 0x72, 0x01, 0x78, 0x72, 0x02, 0x79, 0x7a};
	int fd = open_null();
	MeshPayloadResources *res = mesh_payload_resources_new();
	ck_assert_int_ge(mesh_payload_resources_append_fd_take(res, fd), 0);

	ProtobufCMessage *out;
	MeshPayloadError err;
	ck_assert_int_eq(mesh_payload_decode(&meshtest__everything__descriptor, data, sizeof(data),
					     res, NULL, &out, &err),
			 0);
	Meshtest__Everything *e = (Meshtest__Everything *)out;
	ck_assert_int_eq(e->choice_case, MESHTEST__EVERYTHING__CHOICE_C_U32);
	ck_assert_uint_eq(e->c_u32, 9);
	ck_assert(!fd_is_open(fd));
	ck_assert_int_eq(e->pair->a, 1);
	ck_assert_int_eq(e->pair->b, 2);
	ck_assert_str_eq(e->str, "yz");
	mesh_payload_message_free(out);

	/* A oneof message member given twice merges; then a switch to a string. */
	uint8_t data2[] = {0xfa, 0x01, 0x02, 0x08, 0x02, 0xfa, 0x01, 0x02, 0x10, 0x04};
	ck_assert_int_eq(mesh_payload_decode(&meshtest__everything__descriptor, data2,
					     sizeof(data2), NULL, NULL, &out, NULL),
			 0);
	e = (Meshtest__Everything *)out;
	ck_assert_int_eq(e->choice_case, MESHTEST__EVERYTHING__CHOICE_C_PAIR);
	ck_assert_int_eq(e->c_pair->a, 1);
	ck_assert_int_eq(e->c_pair->b, 2);
	mesh_payload_message_free(out);
	mesh_payload_resources_free(res);
}
END_TEST

START_TEST(test_packed_and_unpacked_mixed)
{
	/* r_i32 (20): packed [1,2], unpacked 3, packed [4]; r_unpacked (28) packed [5]. */
	uint8_t data[] = {0xa2, 0x01, 0x02, 0x01, 0x02, 0xa0, 0x01, 0x03,
			  0xa2, 0x01, 0x01, 0x04, 0xe2, 0x01, 0x01, 0x05};
	ProtobufCMessage *out;
	ck_assert_int_eq(mesh_payload_decode(&meshtest__everything__descriptor, data, sizeof(data),
					     NULL, NULL, &out, NULL),
			 0);
	Meshtest__Everything *e = (Meshtest__Everything *)out;
	ck_assert_uint_eq(e->n_r_i32, 4);
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(e->r_i32[i], i + 1);
	ck_assert_uint_eq(e->n_r_unpacked, 1);
	ck_assert_uint_eq(e->r_unpacked[0], 5);
	mesh_payload_message_free(out);
}
END_TEST

/* Encodes a chain of @depth nested Trees. */
static uint8_t *make_deep_tree(unsigned depth, size_t *ret_size)
{
	Meshtest__Tree *nodes = calloc(depth + 1, sizeof(*nodes));
	Meshtest__Tree **links = calloc(depth + 1, sizeof(*links));
	for (unsigned i = 0; i <= depth; i++) {
		meshtest__tree__init(&nodes[i]);
		links[i] = &nodes[i];
		if (i > 0) {
			nodes[i - 1].children = &links[i];
			nodes[i - 1].n_children = 1;
		}
	}
	size_t size = protobuf_c_message_get_packed_size(&nodes[0].base);
	uint8_t *data = malloc(size);
	protobuf_c_message_pack(&nodes[0].base, data);
	free(nodes);
	free(links);
	*ret_size = size;
	return data;
}

START_TEST(test_limits)
{
	size_t size;
	ProtobufCMessage *out = NULL;
	MeshPayloadError err;

	uint8_t *deep = make_deep_tree(MESH_PAYLOAD_DEFAULT_MAX_DEPTH, &size);
	ck_assert_int_eq(mesh_payload_decode(&meshtest__tree__descriptor, deep, size, NULL, NULL,
					     &out, &err),
			 0);
	mesh_payload_message_free(out);
	free(deep);

	deep = make_deep_tree(MESH_PAYLOAD_DEFAULT_MAX_DEPTH + 1, &size);
	ck_assert_int_eq(mesh_payload_decode(&meshtest__tree__descriptor, deep, size, NULL, NULL,
					     &out, &err),
			 -E2BIG);
	ck_assert_int_eq(err.code, MESH_PAYLOAD_ERROR_TOO_DEEP);
	MeshPayloadLimits deeper = {.max_depth = 1000};
	ck_assert_int_eq(mesh_payload_decode(&meshtest__tree__descriptor, deep, size, NULL, &deeper,
					     &out, &err),
			 0);
	mesh_payload_message_free(out);
	free(deep);

	uint8_t str[] = {0x0a, 0x03, 0x61, 0x62, 0x63};
	MeshPayloadLimits small = {.max_size = 4};
	ck_assert_int_eq(mesh_payload_decode(&meshtest__str__descriptor, str, sizeof(str), NULL,
					     &small, &out, &err),
			 -E2BIG);
	ck_assert_int_eq(err.code, MESH_PAYLOAD_ERROR_TOO_LARGE);

	int fds_before = count_open_fds();
	MeshPayloadResources *res = mesh_payload_resources_new();
	for (int i = 0; i < 3; i++)
		mesh_payload_resources_append_fd_take(res, open_null());
	MeshPayloadLimits few = {.max_resources = 2};
	uint8_t three[] = {0x1e, 0x03, 0x03, 0x0f, 0x0f, 0x0f};
	ck_assert_int_eq(mesh_payload_decode(&meshtest__resource_test__descriptor, three,
					     sizeof(three), res, &few, &out, &err),
			 -E2BIG);
	ck_assert_int_eq(err.code, MESH_PAYLOAD_ERROR_TOO_MANY_RESOURCES);
	ck_assert_int_eq(count_open_fds(), fds_before);
	mesh_payload_resources_free(res);
}
END_TEST

START_TEST(test_proto2_required_and_defaults)
{
	ProtobufCMessage *out = NULL;
	MeshPayloadError err;
	uint8_t only_name[] = {0x12, 0x01, 0x61};
	ck_assert_int_eq(mesh_payload_decode(&meshtest2__required__descriptor, only_name,
					     sizeof(only_name), NULL, NULL, &out, &err),
			 -EBADMSG);
	ck_assert_int_eq(err.code, MESH_PAYLOAD_ERROR_MISSING_REQUIRED_FIELD);

	uint8_t id_only[] = {0x08, 0x2a};
	ck_assert_int_eq(mesh_payload_decode(&meshtest2__required__descriptor, id_only,
					     sizeof(id_only), NULL, NULL, &out, &err),
			 0);
	Meshtest2__Required *m = (Meshtest2__Required *)out;
	ck_assert_uint_eq(m->id, 42);
	ck_assert_str_eq(m->name, "nobody");
	ck_assert_int_eq(m->level, 7);
	ck_assert(!m->has_level);
	ck_assert_ptr_null(m->fd);
	mesh_payload_message_free(out);

	/* A replaced default string and a resource in a proto2 message. */
	int fd = open_null();
	MeshPayloadResources *res = mesh_payload_resources_new();
	mesh_payload_resources_append_fd_take(res, fd);
	uint8_t full[] = {0x08, 0x01, 0x12, 0x01, 0x61, 0x12, 0x01, 0x62, 0x18, 0x03, 0x27};
	ck_assert_int_eq(mesh_payload_decode(&meshtest2__required__descriptor, full, sizeof(full),
					     res, NULL, &out, &err),
			 0);
	m = (Meshtest2__Required *)out;
	ck_assert_str_eq(m->name, "b");
	ck_assert(m->has_level && m->level == 3);
	ck_assert_int_eq(m->fd->fd, fd);
	mesh_payload_message_free(out);
	ck_assert(!fd_is_open(fd));
	mesh_payload_resources_free(res);
}
END_TEST

START_TEST(test_encode_errors_change_nothing)
{
	MeshPayload__Fd bad = MESH_PAYLOAD__FD__INIT;
	bad.fd = -1;
	int good_fd = open_null();
	MeshPayload__Fd good = MESH_PAYLOAD__FD__INIT;
	good.fd = good_fd;
	Meshtest__ResourceTest msg = MESHTEST__RESOURCE_TEST__INIT;
	msg.a = &good;
	msg.b = &bad;
	MeshPayloadResources *res = mesh_payload_resources_new();
	MeshPayloadError err;
	size_t size;
	uint8_t buf[16];

	ck_assert_int_eq(mesh_payload_get_encoded_size(&msg.base, &size, &err), -EINVAL);
	ck_assert_int_eq(err.code, MESH_PAYLOAD_ERROR_BAD_RESOURCE);
	ck_assert_int_eq(mesh_payload_encode(&msg.base, buf, 2, res, &err), -EINVAL);
	ck_assert_int_eq(good.fd, good_fd);
	ck_assert_uint_eq(mesh_payload_resources_len(res), 0);

	MeshPayload__Port port = MESH_PAYLOAD__PORT__INIT;
	Meshtest__Tree tree = MESHTEST__TREE__INIT;
	tree.port = &port;
	ck_assert_int_eq(mesh_payload_get_encoded_size(&tree.base, &size, &err), -EINVAL);
	ck_assert_int_eq(err.code, MESH_PAYLOAD_ERROR_BAD_RESOURCE);

	/* A buffer of the wrong size. */
	msg.b = NULL;
	ck_assert_int_eq(mesh_payload_get_encoded_size(&msg.base, &size, NULL), 0);
	ck_assert_uint_eq(size, 1);
	ck_assert_int_eq(mesh_payload_encode(&msg.base, buf, 2, res, &err), -EINVAL);
	ck_assert_int_eq(err.code, MESH_PAYLOAD_ERROR_BUFFER_SIZE);
	ck_assert_int_eq(good.fd, good_fd);
	ck_assert_int_eq(mesh_payload_encode(&msg.base, buf, 1, res, NULL), 0);
	ck_assert_int_eq(good.fd, -1);
	ck_assert_int_eq(mesh_payload_resources_peek_fd(res, 0), good_fd);
	mesh_payload_resources_free(res);
	ck_assert(!fd_is_open(good_fd));

	/* Decoding a resource type at the top level is refused. */
	ProtobufCMessage *out = NULL;
	ck_assert_int_eq(mesh_payload_decode(&mesh_payload__fd__descriptor, buf, 0, NULL, NULL,
					     &out, NULL),
			 -EINVAL);
}
END_TEST

START_TEST(test_release_resources_of_stack_message)
{
	TestObject obj;
	test_object_init(&obj, 1);
	int fd = open_null();
	MeshPayload__Fd f = MESH_PAYLOAD__FD__INIT;
	f.fd = fd;
	MeshPayload__Port p = MESH_PAYLOAD__PORT__INIT;
	p.handle = (uintptr_t)&obj.base;
	Meshtest__Tree tree = MESHTEST__TREE__INIT;
	tree.fd = &f;
	tree.port = &p;
	mesh_payload_message_release_resources(&tree.base);
	ck_assert(!fd_is_open(fd));
	ck_assert_int_eq(obj.released, 1);
	ck_assert_int_eq(f.fd, -1);
	ck_assert_uint_eq(p.handle, 0);
	mesh_payload_message_release_resources(&tree.base);
	ck_assert_int_eq(obj.released, 1);
}
END_TEST

START_TEST(test_same_as_protobuf_c_unpack)
{
	/* A resource-free message decodes to what protobuf-c's own unpack gives. */
	Meshtest__Pair p1 = MESHTEST__PAIR__INIT, p2 = MESHTEST__PAIR__INIT;
	p1.a = -3;
	p2.b = 1 << 20;
	Meshtest__Pair *pairs[] = {&p1, &p2};
	int64_t s64[] = {-1, 0, INT64_MAX};
	char *strs[] = {"a", "", "ü"};
	Meshtest__Plain__CountsEntry ce = MESHTEST__PLAIN__COUNTS_ENTRY__INIT;
	ce.key = "n";
	ce.value = 3;
	Meshtest__Plain__CountsEntry *ces[] = {&ce};
	Meshtest__Plain plain = MESHTEST__PLAIN__INIT;
	plain.i32 = -100;
	plain.i64 = 1ll << 40;
	plain.u32 = 17;
	plain.s64 = -5;
	plain.f64 = 99;
	plain.db = 0.5;
	plain.b = 1;
	plain.str = "text";
	plain.by.data = (uint8_t *)"\0\1";
	plain.by.len = 2;
	plain.pair = &p1;
	plain.r_s64 = s64;
	plain.n_r_s64 = 3;
	plain.r_str = strs;
	plain.n_r_str = 3;
	plain.r_pair = pairs;
	plain.n_r_pair = 2;
	plain.counts = ces;
	plain.n_counts = 1;
	plain.choice_case = MESHTEST__PLAIN__CHOICE_C_PAIR;
	plain.c_pair = &p2;

	size_t size = protobuf_c_message_get_packed_size(&plain.base);
	uint8_t *data = malloc(size);
	protobuf_c_message_pack(&plain.base, data);

	ProtobufCMessage *ours;
	ck_assert_int_eq(mesh_payload_decode(&meshtest__plain__descriptor, data, size, NULL, NULL,
					     &ours, NULL),
			 0);
	ProtobufCMessage *theirs = protobuf_c_message_unpack(&meshtest__plain__descriptor, NULL,
							     size, data);
	ck_assert_ptr_nonnull(theirs);
	uint8_t *a = malloc(size), *b = malloc(size);
	ck_assert_uint_eq(protobuf_c_message_get_packed_size(ours), size);
	protobuf_c_message_pack(ours, a);
	protobuf_c_message_pack(theirs, b);
	ck_assert_mem_eq(a, data, size);
	ck_assert_mem_eq(b, data, size);
	protobuf_c_message_free_unpacked(theirs, NULL);
	mesh_payload_message_free(ours);
	free(a);
	free(b);
	free(data);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("libmeshpayload-codec");
	TCase *tc = tcase_create("codec");

	tcase_add_test(tc, test_upstream_vectors);
	tcase_add_test(tc, test_zigzag_and_varint);
	tcase_add_test(tc, test_field_reader);
	tcase_add_test(tc, test_resource_vector);
	tcase_add_test(tc, test_roundtrip_everything);
	tcase_add_loop_test(tc, test_decode_errors, 0, sizeof(bad_cases) / sizeof(bad_cases[0]));
	tcase_add_test(tc, test_error_message_names_path);
	tcase_add_test(tc, test_truncation_sweep);
	tcase_add_test(tc, test_unknown_fields_skipped);
	tcase_add_test(tc, test_oneof_switch_and_merge);
	tcase_add_test(tc, test_packed_and_unpacked_mixed);
	tcase_add_test(tc, test_limits);
	tcase_add_test(tc, test_proto2_required_and_defaults);
	tcase_add_test(tc, test_encode_errors_change_nothing);
	tcase_add_test(tc, test_release_resources_of_stack_message);
	tcase_add_test(tc, test_same_as_protobuf_c_unpack);
	suite_add_tcase(s, tc);

	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_ENV);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
