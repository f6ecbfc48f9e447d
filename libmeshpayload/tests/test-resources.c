/* SPDX-License-Identifier: MIT */
/* The MeshPayloadResources list: ownership in, out and on release. */
#include "payload-test.h"
#include "test-proto2.pb-c.h"

START_TEST(test_append_take_steal)
{
	int fds_before = count_open_fds();
	MeshPayloadResources *res = mesh_payload_resources_new();
	TestObject obj;
	test_object_init(&obj, 1);

	int fd = open_null();
	ck_assert_int_eq(mesh_payload_resources_append_fd_take(res, fd), 0);
	ck_assert_int_eq(mesh_payload_resources_append_port_take(res, &obj.base), 1);
	ck_assert_int_eq(mesh_payload_resources_append_fd_take(res, -1), -EBADF);
	ck_assert_int_eq(mesh_payload_resources_append_port_take(res, NULL), -EINVAL);

	/* append_fd duplicates: another number, the same file, close-on-exec. */
	int other = open_null();
	int idx = mesh_payload_resources_append_fd(res, other);
	ck_assert_int_eq(idx, 2);
	int dup = mesh_payload_resources_peek_fd(res, 2);
	ck_assert_int_ne(dup, other);
	ck_assert(fds_same_file(dup, other));
	ck_assert(!fd_is_inheritable(dup));
	close(other);

	ck_assert_uint_eq(mesh_payload_resources_len(res), 3);
	ck_assert_int_eq(mesh_payload_resources_get_kind(res, 0), MESH_PAYLOAD_RESOURCE_FD);
	ck_assert_int_eq(mesh_payload_resources_get_kind(res, 1), MESH_PAYLOAD_RESOURCE_PORT);
	ck_assert_int_eq(mesh_payload_resources_get_kind(res, 9), MESH_PAYLOAD_RESOURCE_NONE);
	ck_assert_int_eq(mesh_payload_resources_peek_fd(res, 1), -EINVAL);
	ck_assert_ptr_null(mesh_payload_resources_peek_port(res, 0));

	/* Stealing moves ownership out; the slot becomes NONE. */
	ck_assert_int_eq(mesh_payload_resources_steal_fd(res, 0), fd);
	ck_assert_int_eq(mesh_payload_resources_get_kind(res, 0), MESH_PAYLOAD_RESOURCE_NONE);
	ck_assert_int_eq(mesh_payload_resources_steal_fd(res, 0), -EINVAL);
	ck_assert_ptr_eq(mesh_payload_resources_steal_port(res, 1), &obj.base);
	ck_assert_ptr_null(mesh_payload_resources_steal_port(res, 1));

	/* Freeing releases only what is still owned. */
	mesh_payload_resources_free(res);
	ck_assert(fd_is_open(fd));
	ck_assert(!fd_is_open(dup));
	ck_assert_int_eq(obj.released, 0);
	close(fd);
	ck_assert_int_eq(count_open_fds(), fds_before);
	ck_assert_ptr_null(mesh_payload_resources_free(NULL));
	ck_assert_ptr_null(mesh_payload_message_free(NULL));
}
END_TEST

/* A `_take` consumes what it is given also when it fails. */
START_TEST(test_take_consumes_on_failure)
{
	int fds_before = count_open_fds();
	TestObject obj;
	test_object_init(&obj, 1);

	ck_assert_int_eq(mesh_payload_resources_append_fd_take(NULL, open_null()), -EINVAL);
	ck_assert_int_eq(count_open_fds(), fds_before);
	ck_assert_int_eq(mesh_payload_resources_append_port_take(NULL, &obj.base), -EINVAL);
	ck_assert_int_eq(obj.released, 1);
	/* append_fd's duplicate is the library's own: closed as well. */
	int fd = open_null();
	ck_assert_int_eq(mesh_payload_resources_append_fd(NULL, fd), -EINVAL);
	close(fd);
	ck_assert_int_eq(count_open_fds(), fds_before);
}
END_TEST

START_TEST(test_clear_releases_everything)
{
	int fds_before = count_open_fds();
	MeshPayloadResources *res = mesh_payload_resources_new();
	TestObject objs[40];

	for (int i = 0; i < 40; i++) {
		test_object_init(&objs[i], i);
		ck_assert_int_ge(mesh_payload_resources_append_fd_take(res, open_null()), 0);
		ck_assert_int_ge(mesh_payload_resources_append_port_take(res, &objs[i].base), 0);
	}
	ck_assert_uint_eq(mesh_payload_resources_len(res), 80);
	mesh_payload_resources_clear(res);
	ck_assert_uint_eq(mesh_payload_resources_len(res), 0);
	for (int i = 0; i < 40; i++)
		ck_assert_int_eq(objs[i].released, 1);
	ck_assert_int_eq(count_open_fds(), fds_before);
	mesh_payload_resources_free(res);
}
END_TEST

START_TEST(test_fd_and_port_messages)
{
	int fd = open_null();
	MeshPayload__Fd *m = mesh_payload_fd_new_take(fd);
	ck_assert_ptr_nonnull(m);
	ck_assert_int_eq(m->fd, fd);
	ck_assert_int_eq(mesh_payload_fd_steal(m), fd);
	ck_assert_int_eq(m->fd, -1);
	ck_assert_int_eq(mesh_payload_fd_steal(NULL), -1);
	free(m);
	close(fd);
	errno = 0;
	ck_assert_ptr_null(mesh_payload_fd_new_take(-1));
	ck_assert_int_eq(errno, EBADF);

	TestObject obj;
	test_object_init(&obj, 1);
	MeshPayload__Port *p = mesh_payload_port_new_take(&obj.base);
	ck_assert_ptr_eq(mesh_payload_port_steal(p), &obj.base);
	ck_assert_ptr_null(mesh_payload_port_steal(p));
	free(p);
	ck_assert(mesh_payload_is_resource_type(&mesh_payload__fd__descriptor));
	ck_assert(mesh_payload_is_resource_type(&mesh_payload__port__descriptor));
	ck_assert(!mesh_payload_is_resource_type(&meshtest__tree__descriptor));
}
END_TEST

/* mesh_payload_message_new() and the copying setters. */
START_TEST(test_message_builder)
{
	int fds_before = count_open_fds();
	Meshtest__Everything *e =
		(Meshtest__Everything *)mesh_payload_message_new(&meshtest__everything__descriptor);
	ck_assert_ptr_nonnull(e);
	ck_assert_str_eq(e->str, ""); /* initialized: the defaults */
	ck_assert_int_eq(e->choice_case, MESHTEST__EVERYTHING__CHOICE__NOT_SET);

	char text[] = "héllo";
	ck_assert_int_eq(mesh_payload_message_set_string(&e->base, "str", text), 0);
	text[0] = 'j'; /* copied */
	ck_assert_str_eq(e->str, "héllo");
	ck_assert_int_eq(mesh_payload_message_set_string(&e->base, "str", "again"), 0);
	ck_assert_int_eq(mesh_payload_message_set_bytes(&e->base, "by", "\0\1\2", 3), 0);
	ck_assert_uint_eq(e->by.len, 3);
	ck_assert_int_eq(memcmp(e->by.data, "\0\1\2", 3), 0);
	ck_assert_int_eq(mesh_payload_message_set_bytes(&e->base, "by", NULL, 0), 0);
	ck_assert_uint_eq(e->by.len, 0);
	ck_assert_int_eq(mesh_payload_message_set_bytes(&e->base, "by", "xy", 2), 0);

	/* Errors leave the message alone. */
	ck_assert_int_eq(mesh_payload_message_set_string(&e->base, "nope", "x"), -ENOENT);
	ck_assert_int_eq(mesh_payload_message_set_string(&e->base, "u32", "x"), -EINVAL);
	ck_assert_int_eq(mesh_payload_message_set_string(&e->base, "r_str", "x"), -EINVAL);
	ck_assert_int_eq(mesh_payload_message_set_string(&e->base, "by", "x"), -EINVAL);
	ck_assert_int_eq(mesh_payload_message_set_string(&e->base, "str", "\xff"), -EINVAL);
	ck_assert_int_eq(mesh_payload_message_set_string(&e->base, "str", NULL), -EINVAL);
	ck_assert_int_eq(mesh_payload_message_set_bytes(&e->base, "by", NULL, 1), -EINVAL);
	ck_assert_int_eq(mesh_payload_message_set_string(NULL, "str", "x"), -EINVAL);
	ck_assert_str_eq(e->str, "again");

	/* A oneof: setting a member frees the one set before, fd included. */
	e->c_fd = mesh_payload_fd_new_take(open_null());
	e->choice_case = MESHTEST__EVERYTHING__CHOICE_C_FD;
	ck_assert_int_eq(count_open_fds(), fds_before + 1);
	ck_assert_int_eq(mesh_payload_message_set_string(&e->base, "c_str", "chosen"), 0);
	ck_assert_int_eq(e->choice_case, MESHTEST__EVERYTHING__CHOICE_C_STR);
	ck_assert_int_eq(count_open_fds(), fds_before);
	ck_assert_int_eq(mesh_payload_message_set_string(&e->base, "c_str", "twice"), 0);

	/* It encodes and decodes like any message. */
	MeshPayloadResources *res = mesh_payload_resources_new();
	uint8_t *bytes;
	size_t size;
	ck_assert_int_eq(mesh_payload_encode_alloc(&e->base, &bytes, &size, res, NULL), 0);
	ProtobufCMessage *out;
	ck_assert_int_eq(mesh_payload_decode(&meshtest__everything__descriptor, bytes, size, res,
					     NULL, &out, NULL),
			 0);
	Meshtest__Everything *d = (Meshtest__Everything *)out;
	ck_assert_str_eq(d->str, "again");
	ck_assert_uint_eq(d->by.len, 2);
	ck_assert_str_eq(d->c_str, "twice");
	mesh_payload_message_free(out);
	mesh_payload_resources_free(res);
	free(bytes);
	mesh_payload_message_free(&e->base);

	/* proto2: a default value is replaced, never freed. */
	Meshtest2__Required *r =
		(Meshtest2__Required *)mesh_payload_message_new(&meshtest2__required__descriptor);
	ck_assert_str_eq(r->name, "nobody");
	ck_assert_int_eq(r->level, 7);
	ck_assert_int_eq(mesh_payload_message_set_string(&r->base, "name", "somebody"), 0);
	ck_assert_str_eq(r->name, "somebody");
	mesh_payload_message_free(&r->base);

	errno = 0;
	ck_assert_ptr_null(mesh_payload_message_new(NULL));
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_int_eq(count_open_fds(), fds_before);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("libmeshpayload-resources");
	TCase *tc = tcase_create("resources");

	tcase_add_test(tc, test_append_take_steal);
	tcase_add_test(tc, test_take_consumes_on_failure);
	tcase_add_test(tc, test_clear_releases_everything);
	tcase_add_test(tc, test_fd_and_port_messages);
	tcase_add_test(tc, test_message_builder);
	suite_add_tcase(s, tc);

	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_ENV);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
