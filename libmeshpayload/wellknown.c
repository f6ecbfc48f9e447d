/* SPDX-License-Identifier: MIT */
/*
 * Well-known types (meshpayload-wellknown.h): conversions of Timestamp and
 * Duration, and Any. The decoder's Duration range check is in decode.c.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "meshpayload-private.h"

#ifdef _WIN32
#include <windows.h>

/* The wall clock as a timespec: FILETIME counts 100 ns from 1601. */
static void realtime_now(struct timespec *ts)
{
	FILETIME ft;
	GetSystemTimePreciseAsFileTime(&ft);
	uint64_t t = ((uint64_t)ft.dwHighDateTime << 32 | ft.dwLowDateTime) - 116444736000000000ULL;
	ts->tv_sec = (time_t)(t / 10000000);
	ts->tv_nsec = (long)(t % 10000000) * 100;
}
#else
static void realtime_now(struct timespec *ts)
{
	clock_gettime(CLOCK_REALTIME, ts);
}
#endif

#define NANOS MESH_PAYLOAD_NANOS_PER_SEC

int mesh_payload_timestamp_from_timespec(const struct timespec *ts, MeshPayload__Timestamp *ret)
{
	if (!ret)
		return -EINVAL;
	mesh_payload__timestamp__init(ret);
	if (!ts || ts->tv_nsec < 0 || ts->tv_nsec >= NANOS)
		return -EINVAL;
	ret->seconds = (int64_t)ts->tv_sec;
	ret->nanos = (int32_t)ts->tv_nsec;
	return 0;
}

int mesh_payload_timestamp_to_timespec(const MeshPayload__Timestamp *t, struct timespec *ret)
{
	if (!t || !ret)
		return -EINVAL;
	if (t->nanos < 0 || t->nanos >= NANOS)
		return -ERANGE;
	if ((int64_t)(time_t)t->seconds != t->seconds)
		return -ERANGE;
	ret->tv_sec = (time_t)t->seconds;
	ret->tv_nsec = t->nanos;
	return 0;
}

void mesh_payload_timestamp_from_unix_ns(int64_t ns, MeshPayload__Timestamp *ret)
{
	if (!ret)
		return;
	mesh_payload__timestamp__init(ret);
	/* Floor division: the nanos of a time before the epoch count forward. */
	int64_t sec = ns / NANOS, rem = ns % NANOS;
	if (rem < 0) {
		sec -= 1;
		rem += NANOS;
	}
	ret->seconds = sec;
	ret->nanos = (int32_t)rem;
}

int mesh_payload_timestamp_to_unix_ns(const MeshPayload__Timestamp *t, int64_t *ret_ns)
{
	int64_t ns;

	if (!t || !ret_ns)
		return -EINVAL;
	if (t->nanos < 0 || t->nanos >= NANOS)
		return -ERANGE;
	if (__builtin_mul_overflow(t->seconds, (int64_t)NANOS, &ns) ||
	    __builtin_add_overflow(ns, (int64_t)t->nanos, &ns))
		return -ERANGE;
	*ret_ns = ns;
	return 0;
}

void mesh_payload_timestamp_now(MeshPayload__Timestamp *ret)
{
	struct timespec ts;

	if (!ret)
		return;
	realtime_now(&ts);
	mesh_payload_timestamp_from_timespec(&ts, ret);
}

void mesh_payload_duration_from_ns(uint64_t ns, MeshPayload__Duration *ret)
{
	if (!ret)
		return;
	mesh_payload__duration__init(ret);
	ret->seconds = (int64_t)(ns / NANOS);
	ret->nanos = (int32_t)(ns % NANOS);
}

bool mesh_payload_duration_is_valid(const MeshPayload__Duration *d)
{
	/* Upstream reads u64 secs and u32 nanos: (secs as i64) < 0 || nanos >= 1e9. */
	return d && d->seconds >= 0 && (uint32_t)d->nanos < NANOS;
}

int mesh_payload_duration_to_ns(const MeshPayload__Duration *d, uint64_t *ret_ns)
{
	uint64_t ns;

	if (!d || !ret_ns)
		return -EINVAL;
	if (!mesh_payload_duration_is_valid(d))
		return -ERANGE;
	if (__builtin_mul_overflow((uint64_t)d->seconds, (uint64_t)NANOS, &ns) ||
	    __builtin_add_overflow(ns, (uint64_t)d->nanos, &ns))
		return -ERANGE;
	*ret_ns = ns;
	return 0;
}

/* The name a type is known by in type URLs: wellknown.proto's are google's. */
static const char *type_url_name(const ProtobufCMessageDescriptor *desc)
{
	if (desc == &mesh_payload__timestamp__descriptor)
		return "google.protobuf.Timestamp";
	if (desc == &mesh_payload__duration__descriptor)
		return "google.protobuf.Duration";
	if (desc == &mesh_payload__any__descriptor)
		return "google.protobuf.Any";
	return desc->name;
}

char *mesh_payload_type_url(const ProtobufCMessageDescriptor *desc)
{
	if (!desc || desc->magic != PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC || !desc->name) {
		errno = EINVAL;
		return NULL;
	}
	const char *name = type_url_name(desc);
	size_t a = strlen(MESH_PAYLOAD_ANY_URL_PREFIX), b = strlen(name);
	char *url = malloc(a + b + 1);
	if (!url) {
		errno = ENOMEM;
		return NULL;
	}
	memcpy(url, MESH_PAYLOAD_ANY_URL_PREFIX, a);
	memcpy(url + a, name, b + 1);
	return url;
}

int mesh_payload_any_pack(const ProtobufCMessage *msg, MeshPayload__Any **ret_any,
			  MeshPayloadError *ret_error)
{
	if (ret_error) {
		ret_error->code = MESH_PAYLOAD_ERROR_NONE;
		ret_error->message[0] = '\0';
	}
	if (!msg || !ret_any || !msg->descriptor ||
	    msg->descriptor->magic != PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC)
		return -EINVAL;
	if (mesh_payload_count_resources(msg) > 0)
		return payload_set_error(ret_error, MESH_PAYLOAD_ERROR_BAD_RESOURCE, -EINVAL,
					 "packing %s into Any: it holds resources",
					 msg->descriptor->name);

	MeshPayload__Any *any = (MeshPayload__Any *)mesh_payload_message_new(
		&mesh_payload__any__descriptor);
	if (!any)
		return payload_set_error(ret_error, MESH_PAYLOAD_ERROR_NO_MEMORY, -ENOMEM,
					 "out of memory");
	/* Without resources the encoding is protobuf-c's own packing. */
	size_t n = protobuf_c_message_get_packed_size(msg);
	uint8_t *value = malloc(n ? n : 1);
	char *url = mesh_payload_type_url(msg->descriptor);
	if (!value || !url) {
		free(value);
		free(url);
		mesh_payload_message_free(&any->base);
		return payload_set_error(ret_error, MESH_PAYLOAD_ERROR_NO_MEMORY, -ENOMEM,
					 "out of memory");
	}
	protobuf_c_message_pack(msg, value);
	/* init left the defaults (static empty string): replace, do not free. */
	any->type_url = url;
	any->value.data = value;
	any->value.len = n;
	*ret_any = any;
	return 0;
}

bool mesh_payload_any_is(const MeshPayload__Any *any, const ProtobufCMessageDescriptor *desc)
{
	if (!any || !any->type_url || !desc || desc->magic != PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC)
		return false;
	size_t a = strlen(MESH_PAYLOAD_ANY_URL_PREFIX);
	return strncmp(any->type_url, MESH_PAYLOAD_ANY_URL_PREFIX, a) == 0 &&
	       strcmp(any->type_url + a, type_url_name(desc)) == 0;
}

int mesh_payload_any_unpack(const MeshPayload__Any *any, const ProtobufCMessageDescriptor *desc,
			    const MeshPayloadLimits *limits, ProtobufCMessage **ret_msg,
			    MeshPayloadError *ret_error)
{
	if (ret_error) {
		ret_error->code = MESH_PAYLOAD_ERROR_NONE;
		ret_error->message[0] = '\0';
	}
	if (!any || !desc || desc->magic != PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC || !ret_msg)
		return -EINVAL;
	if (!mesh_payload_any_is(any, desc))
		return payload_set_error(ret_error, MESH_PAYLOAD_ERROR_TYPE_MISMATCH, -EBADMSG,
					 "protobuf type mismatch, expected %s%s, got %.120s",
					 MESH_PAYLOAD_ANY_URL_PREFIX, type_url_name(desc),
					 any->type_url ? any->type_url : "");
	return mesh_payload_decode(desc, any->value.data, any->value.len, NULL, limits, ret_msg,
				   ret_error);
}
