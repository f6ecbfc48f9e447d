/* SPDX-License-Identifier: MIT */
/*
 * Well-known types: Timestamp, Duration, Any. Ports of upstream
 * mesh_protobuf's test_timestamp_system_time (time.rs) and test_any
 * (message.rs), and byte vectors of upstream's encodings.
 */
#include <errno.h>

#include "payload-test.h"
#include "test-any.pb-c.h"

/* Encodes @msg (no resources), compares with @hex, decodes it back. */
static ProtobufCMessage *check_vector(ProtobufCMessage *msg, const char *hex)
{
	uint8_t *data = NULL;
	size_t size = 0;
	ProtobufCMessage *back = NULL;
	MeshPayloadError err;
	MeshPayloadResources *res = mesh_payload_resources_new();

	ck_assert_int_eq(mesh_payload_encode_alloc(msg, &data, &size, res, &err), 0);
	assert_bytes(data, size, hex);
	ck_assert_uint_eq(mesh_payload_resources_len(res), 0);
	ck_assert_int_eq(mesh_payload_decode(msg->descriptor, data, size, res, NULL, &back, &err),
			 0);
	mesh_payload_resources_free(res);
	free(data);
	return back;
}

static void check_roundtrip_ns(int64_t ns)
{
	MeshPayload__Timestamp t;
	int64_t back = 0;
	struct timespec ts;

	mesh_payload_timestamp_from_unix_ns(ns, &t);
	ck_assert_int_ge(t.nanos, 0);
	ck_assert_int_lt(t.nanos, MESH_PAYLOAD_NANOS_PER_SEC);
	ck_assert_int_eq(mesh_payload_timestamp_to_unix_ns(&t, &back), 0);
	ck_assert_int_eq(back, ns);

	/* The same through a timespec (tv_nsec is also counted forward). */
	ck_assert_int_eq(mesh_payload_timestamp_to_timespec(&t, &ts), 0);
	MeshPayload__Timestamp t2;
	ck_assert_int_eq(mesh_payload_timestamp_from_timespec(&ts, &t2), 0);
	ck_assert_int_eq(t2.seconds, t.seconds);
	ck_assert_int_eq(t2.nanos, t.nanos);
}

static int64_t now_ns(void)
{
#ifdef _WIN32
	/* Not the library's clock (GetSystemTimePreciseAsFileTime): the coarse
	 * one, never ahead of it. FILETIME counts 100 ns from 1601. */
	FILETIME ft;
	GetSystemTimeAsFileTime(&ft);
	uint64_t t = (uint64_t)ft.dwHighDateTime << 32 | ft.dwLowDateTime;
	return (int64_t)(t - 116444736000000000ULL) * 100;
#else
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * MESH_PAYLOAD_NANOS_PER_SEC + ts.tv_nsec;
#endif
}

/* Upstream time.rs test_timestamp_system_time. */
START_TEST(test_timestamp_system_time)
{
	int64_t now = now_ns();

	check_roundtrip_ns(now);
	check_roundtrip_ns(now + 1000000000);
	check_roundtrip_ns(now - 1000000000);
	check_roundtrip_ns(-1500000000);
	check_roundtrip_ns(1500000000);

	MeshPayload__Timestamp t;
	mesh_payload_timestamp_from_unix_ns(-1500000000, &t);
	ck_assert_int_eq(t.seconds, -2);
	ck_assert_int_eq(t.nanos, 500000000);

	/* now() is CLOCK_REALTIME. */
	MeshPayload__Timestamp n;
	int64_t n_ns = 0;
	mesh_payload_timestamp_now(&n);
	ck_assert_int_eq(mesh_payload_timestamp_to_unix_ns(&n, &n_ns), 0);
	ck_assert_int_ge(n_ns, now);
	ck_assert_int_lt(n_ns, now + 60ll * MESH_PAYLOAD_NANOS_PER_SEC);
}
END_TEST

/* Upstream's TryFrom<Timestamp> for SystemTime: TimestampOutOfRange. */
START_TEST(test_timestamp_out_of_range)
{
	MeshPayload__Timestamp t = MESH_PAYLOAD__TIMESTAMP__INIT;
	struct timespec ts;
	int64_t ns;

	t.nanos = -1;
	ck_assert_int_eq(mesh_payload_timestamp_to_timespec(&t, &ts), -ERANGE);
	ck_assert_int_eq(mesh_payload_timestamp_to_unix_ns(&t, &ns), -ERANGE);
	t.nanos = MESH_PAYLOAD_NANOS_PER_SEC;
	ck_assert_int_eq(mesh_payload_timestamp_to_timespec(&t, &ts), -ERANGE);
	t.nanos = 0;
	t.seconds = INT64_MAX;
	ck_assert_int_eq(mesh_payload_timestamp_to_unix_ns(&t, &ns), -ERANGE);

	ts.tv_sec = 1;
	ts.tv_nsec = MESH_PAYLOAD_NANOS_PER_SEC;
	ck_assert_int_eq(mesh_payload_timestamp_from_timespec(&ts, &t), -EINVAL);

	/* Out-of-range values still decode, as upstream's Timestamp does. */
	uint8_t bad[] = {0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
	ProtobufCMessage *m = NULL;
	ck_assert_int_eq(mesh_payload_decode(&mesh_payload__timestamp__descriptor, bad, sizeof(bad),
					     NULL, NULL, &m, NULL),
			 0);
	ck_assert_int_eq(((MeshPayload__Timestamp *)m)->nanos, -1);
	mesh_payload_message_free(m);
}
END_TEST

/* google.protobuf.Timestamp bytes: plain varints, -2 is ten bytes. */
START_TEST(test_timestamp_vectors)
{
	MeshPayload__Timestamp t;

	mesh_payload_timestamp_from_unix_ns(-1500000000, &t);
	ProtobufCMessage *back = check_vector(&t.base, "08 fe ff ff ff ff ff ff ff ff 01 "
						       "10 80 ca b5 ee 01");
	ck_assert_int_eq(((MeshPayload__Timestamp *)back)->seconds, -2);
	ck_assert_int_eq(((MeshPayload__Timestamp *)back)->nanos, 500000000);
	mesh_payload_message_free(back);

	/* The epoch is the empty message. */
	mesh_payload_timestamp_from_unix_ns(0, &t);
	mesh_payload_message_free(check_vector(&t.base, ""));

	mesh_payload_timestamp_from_unix_ns(1700000000123456789ll, &t);
	mesh_payload_message_free(check_vector(&t.base, "08 80 e2 cf aa 06 10 95 9a ef 3a"));
}
END_TEST

/* Upstream's DurationEncoding: {1: secs, 2: nanos}; negative ones refused. */
START_TEST(test_duration)
{
	MeshPayload__Duration d;
	uint64_t ns = 0;

	mesh_payload_duration_from_ns(1500000000, &d);
	ck_assert_int_eq(d.seconds, 1);
	ck_assert_int_eq(d.nanos, 500000000);
	ck_assert_int_eq(mesh_payload_duration_to_ns(&d, &ns), 0);
	ck_assert_uint_eq(ns, 1500000000);
	mesh_payload_message_free(check_vector(&d.base, "08 01 10 80 ca b5 ee 01"));

	mesh_payload_duration_from_ns(UINT64_MAX, &d);
	ck_assert_int_eq(mesh_payload_duration_to_ns(&d, &ns), 0);
	ck_assert_uint_eq(ns, UINT64_MAX);

	d.seconds = -1;
	d.nanos = 0;
	ck_assert(!mesh_payload_duration_is_valid(&d));
	ck_assert_int_eq(mesh_payload_duration_to_ns(&d, &ns), -ERANGE);
	d.seconds = 0;
	d.nanos = -1;
	ck_assert_int_eq(mesh_payload_duration_to_ns(&d, &ns), -ERANGE);
	d.nanos = MESH_PAYLOAD_NANOS_PER_SEC;
	ck_assert_int_eq(mesh_payload_duration_to_ns(&d, &ns), -ERANGE);
}
END_TEST

static const struct {
	const char *hex;
	const ProtobufCMessageDescriptor *desc;
} bad_durations[] = {
	/* secs -1 (u64 2^64-1: (secs as i64) < 0 upstream) */
	{"08 ff ff ff ff ff ff ff ff ff 01", &mesh_payload__duration__descriptor},
	/* nanos 1e9 */
	{"10 80 94 eb dc 03", &mesh_payload__duration__descriptor},
	/* nanos -1 (u32 0xffffffff upstream) */
	{"10 ff ff ff ff ff ff ff ff ff 01", &mesh_payload__duration__descriptor},
	/* nested: Job.budget = {secs: 2^63} */
	{"12 0b 08 80 80 80 80 80 80 80 80 80 01", &test__job__descriptor},
};

/* Decoding refuses an out-of-range Duration at any depth (upstream DurationRange). */
START_TEST(test_duration_range_rejected)
{
	uint8_t bytes[64];
	size_t n = parse_hex(bad_durations[_i].hex, bytes);
	ProtobufCMessage *m = NULL;
	MeshPayloadError err;

	ck_assert_int_eq(mesh_payload_decode(bad_durations[_i].desc, bytes, n, NULL, NULL, &m, &err),
			 -EBADMSG);
	ck_assert_ptr_null(m);
	ck_assert_int_eq(err.code, MESH_PAYLOAD_ERROR_DURATION_RANGE);
	ck_assert_str_eq(mesh_payload_error_code_to_string(err.code), "duration out of range");
}
END_TEST

/* Upstream message.rs test_any. */
START_TEST(test_any)
{
	Test__Message msg = TEST__MESSAGE__INIT;
	MeshPayload__Any *any = NULL;
	ProtobufCMessage *parsed = NULL;
	MeshPayloadError err;

	msg.x = 5;
	ck_assert_int_eq(mesh_payload_any_pack(&msg.base, &any, &err), 0);
	ck_assert_str_eq(any->type_url, "type.googleapis.com/test.Message");
	ck_assert(mesh_payload_any_is(any, &test__message__descriptor));
	ck_assert(!mesh_payload_any_is(any, &test__other__descriptor));
	ck_assert_int_eq(mesh_payload_any_unpack(any, &test__message__descriptor, NULL, &parsed,
						 &err),
			 0);
	ck_assert_uint_eq(((Test__Message *)parsed)->x, 5);
	mesh_payload_message_free(parsed);
	parsed = NULL;

	ck_assert_int_eq(mesh_payload_any_unpack(any, &test__other__descriptor, NULL, &parsed,
						 &err),
			 -EBADMSG);
	ck_assert_ptr_null(parsed);
	ck_assert_int_eq(err.code, MESH_PAYLOAD_ERROR_TYPE_MISMATCH);
	ck_assert_msg(strstr(err.message, "test.Other") && strstr(err.message, "test.Message"),
		      "%s", err.message);

	/* google.protobuf.Any bytes: {1: type_url, 2: value}. */
	mesh_payload_message_free(check_vector(
		&any->base, "0a 20 74 79 70 65 2e 67 6f 6f 67 6c 65 61 70 69 73 2e 63 6f 6d 2f "
			    "74 65 73 74 2e 4d 65 73 73 61 67 65 12 02 08 05"));
	mesh_payload_message_free(&any->base);
}
END_TEST

START_TEST(test_any_wellknown_names_and_resources)
{
	char *url = mesh_payload_type_url(&mesh_payload__timestamp__descriptor);
	ck_assert_str_eq(url, "type.googleapis.com/google.protobuf.Timestamp");
	free(url);
	url = mesh_payload_type_url(&mesh_payload__duration__descriptor);
	ck_assert_str_eq(url, "type.googleapis.com/google.protobuf.Duration");
	free(url);

	/* An Any carries bytes only: a message holding an fd is refused. */
	Test__WithFd wf = TEST__WITH_FD__INIT;
	wf.fd = mesh_payload_fd_new_take(open_null());
	MeshPayload__Any *any = NULL;
	MeshPayloadError err;
	ck_assert_int_eq(mesh_payload_any_pack(&wf.base, &any, &err), -EINVAL);
	ck_assert_ptr_null(any);
	ck_assert_int_eq(err.code, MESH_PAYLOAD_ERROR_BAD_RESOURCE);
	mesh_payload_message_release_resources(&wf.base);
	free(wf.fd);

	/* An Any whose URL lacks the prefix matches nothing. */
	MeshPayload__Any raw = MESH_PAYLOAD__ANY__INIT;
	raw.type_url = "test.Message";
	ck_assert(!mesh_payload_any_is(&raw, &test__message__descriptor));
}
END_TEST

/* The three in one message, as a field of a peer's message. */
START_TEST(test_wellknown_fields)
{
	Test__Job job = TEST__JOB__INIT;
	MeshPayload__Timestamp start;
	MeshPayload__Duration budget;
	Test__Message inner = TEST__MESSAGE__INIT;
	MeshPayloadError err;

	mesh_payload_timestamp_from_unix_ns(1500000000, &start);
	mesh_payload_duration_from_ns(0, &budget);
	inner.x = 1;
	ck_assert_int_eq(mesh_payload_any_pack(&inner.base, &job.detail, &err), 0);
	job.start = &start;
	job.budget = &budget; /* zero, but present: written as an empty message */

	ProtobufCMessage *back = check_vector(
		&job.base, "0a 08 08 01 10 80 ca b5 ee 01 12 00 1a 26 0a 20 74 79 70 65 2e 67 6f "
			   "6f 67 6c 65 61 70 69 73 2e 63 6f 6d 2f 74 65 73 74 2e 4d 65 73 73 61 "
			   "67 65 12 02 08 01");
	Test__Job *j = (Test__Job *)back;
	ck_assert_ptr_nonnull(j->budget);
	ck_assert(mesh_payload_any_is(j->detail, &test__message__descriptor));
	mesh_payload_message_free(back);
	mesh_payload_message_free(&job.detail->base);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("libmeshpayload-wellknown");
	TCase *tc = tcase_create("wellknown");

	tcase_add_test(tc, test_timestamp_system_time);
	tcase_add_test(tc, test_timestamp_out_of_range);
	tcase_add_test(tc, test_timestamp_vectors);
	tcase_add_test(tc, test_duration);
	tcase_add_loop_test(tc, test_duration_range_rejected, 0,
			    sizeof(bad_durations) / sizeof(bad_durations[0]));
	tcase_add_test(tc, test_any);
	tcase_add_test(tc, test_any_wellknown_names_and_resources);
	tcase_add_test(tc, test_wellknown_fields);
	suite_add_tcase(s, tc);

	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_ENV);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
