/* SPDX-License-Identifier: MIT */
/**
 * Well-known types: Timestamp, Duration and Any (<meshpayload/wellknown.proto>),
 * with upstream mesh_protobuf's semantics.
 *
 * - Timestamp: a point in UTC time, {seconds, nanos} with nanos in
 *   [0, 1e9) also before the epoch (1.5 s before it is {-2, 500000000}).
 *   Any values decode; converting one whose nanos are out of range fails
 *   (upstream TimestampOutOfRange).
 * - Duration: non-negative; a message holding a negative one, or nanos out
 *   of [0, 1e9), fails to decode with MESH_PAYLOAD_ERROR_DURATION_RANGE
 *   (upstream DurationRange), at any depth.
 * - Any: a message without resources encoded into bytes, with the type URL
 *   "type.googleapis.com/" + its full protobuf name (upstream ProtobufAny).
 *
 * The Timestamp and Duration functions fill a caller's structure (which may
 * live on the stack; they initialize it). Threads: no global state.
 */
#pragma once

#if !defined(__MESHPAYLOAD_H_INSIDE__) && !defined(MESHPAYLOAD_COMPILATION)
#error "Only <meshpayload/meshpayload.h> can be included directly."
#endif

#include <stdbool.h>
#include <stdint.h>
#include <time.h>
#include <meshpayload/wellknown.pb-c.h>

MESH_PAYLOAD_BEGIN_DECLS

/** MESH_PAYLOAD_NANOS_PER_SEC: nanoseconds in a second. */
#define MESH_PAYLOAD_NANOS_PER_SEC 1000000000

/** MESH_PAYLOAD_ANY_URL_PREFIX: what every Any type URL starts with. */
#define MESH_PAYLOAD_ANY_URL_PREFIX "type.googleapis.com/"

/**
 * mesh_payload_timestamp_from_timespec:
 * @ts: a CLOCK_REALTIME time (tv_nsec in [0, 1e9))
 * @ret: (out caller-allocates): the timestamp (initialized here)
 *
 * Returns: 0, or -EINVAL if @ts's tv_nsec is out of range (@ret is then
 * the epoch).
 */
MESH_PAYLOAD_API int mesh_payload_timestamp_from_timespec(const struct timespec *ts,
							  MeshPayload__Timestamp *ret);

/**
 * mesh_payload_timestamp_to_timespec:
 * @t: a timestamp
 * @ret: (out caller-allocates): the same time as a timespec
 *
 * Returns: 0, or -ERANGE if @t's nanos are outside [0, 1e9) or its seconds
 * do not fit a time_t (upstream TimestampOutOfRange).
 */
MESH_PAYLOAD_API int mesh_payload_timestamp_to_timespec(const MeshPayload__Timestamp *t,
							struct timespec *ret);

/**
 * mesh_payload_timestamp_from_unix_ns:
 * @ns: nanoseconds since the Unix epoch, negative before it
 * @ret: (out caller-allocates): the timestamp (initialized here)
 *
 * Upstream's From&lt;SystemTime&gt;: -1.5 s gives {-2, 500000000}.
 */
MESH_PAYLOAD_API void mesh_payload_timestamp_from_unix_ns(int64_t ns, MeshPayload__Timestamp *ret);

/**
 * mesh_payload_timestamp_to_unix_ns:
 * @t: a timestamp
 * @ret_ns: (out): nanoseconds since the Unix epoch
 *
 * Returns: 0, or -ERANGE for nanos outside [0, 1e9) or a time that int64
 * nanoseconds cannot hold (before 1677 or after 2262).
 */
MESH_PAYLOAD_API int mesh_payload_timestamp_to_unix_ns(const MeshPayload__Timestamp *t,
						       int64_t *ret_ns);

/**
 * mesh_payload_timestamp_now:
 * @ret: (out caller-allocates): the current CLOCK_REALTIME time (initialized here)
 */
MESH_PAYLOAD_API void mesh_payload_timestamp_now(MeshPayload__Timestamp *ret);

/**
 * mesh_payload_duration_from_ns:
 * @ns: a span in nanoseconds
 * @ret: (out caller-allocates): the duration (initialized here)
 */
MESH_PAYLOAD_API void mesh_payload_duration_from_ns(uint64_t ns, MeshPayload__Duration *ret);

/**
 * mesh_payload_duration_to_ns:
 * @d: a duration
 * @ret_ns: (out): the span in nanoseconds
 *
 * Returns: 0; -ERANGE for a negative duration or nanos outside [0, 1e9)
 * (what the decoder refuses), or a span over 2^64-1 ns (584 years).
 */
MESH_PAYLOAD_API int mesh_payload_duration_to_ns(const MeshPayload__Duration *d,
						 uint64_t *ret_ns);

/**
 * mesh_payload_duration_is_valid:
 * @d: a duration
 *
 * Returns: whether @d decodes (upstream's rule): seconds >= 0 and nanos in
 * [0, 1e9).
 */
MESH_PAYLOAD_API bool mesh_payload_duration_is_valid(const MeshPayload__Duration *d);

/**
 * mesh_payload_type_url:
 * @desc: a message type
 *
 * The type URL of @desc: MESH_PAYLOAD_ANY_URL_PREFIX and its full name
 * ("type.googleapis.com/test.Message"); the types of wellknown.proto get
 * their google.protobuf names ("type.googleapis.com/google.protobuf.Timestamp").
 *
 * Returns: (transfer full): the URL, to free(); NULL with errno ENOMEM or
 * EINVAL (@desc NULL or not a message descriptor).
 */
MESH_PAYLOAD_API char *mesh_payload_type_url(const ProtobufCMessageDescriptor *desc);

/**
 * mesh_payload_any_pack:
 * @msg: (transfer none): a message holding no resources (Any carries bytes only)
 * @ret_any: (out) (transfer full): a heap Any with @msg's type URL and
 *     encoding, to mesh_payload_message_free() or to put in a message
 * @ret_error: (out) (optional): details on failure
 *
 * Returns: 0; -EINVAL if @msg holds a resource (MESH_PAYLOAD_ERROR_BAD_RESOURCE)
 * or is not a message; -ENOMEM.
 */
MESH_PAYLOAD_API int mesh_payload_any_pack(const ProtobufCMessage *msg, MeshPayload__Any **ret_any,
					   MeshPayloadError *ret_error);

/**
 * mesh_payload_any_is:
 * @any: an Any
 * @desc: a message type
 *
 * Returns: whether @any holds an encoding of @desc (its type URL is @desc's).
 */
MESH_PAYLOAD_API bool mesh_payload_any_is(const MeshPayload__Any *any,
					  const ProtobufCMessageDescriptor *desc);

/**
 * mesh_payload_any_unpack:
 * @any: (transfer none): an Any
 * @desc: the type expected
 * @limits: (nullable): decode limits, NULL for the defaults
 * @ret_msg: (out) (transfer full): the message, to mesh_payload_message_free()
 * @ret_error: (out) (optional): details on failure
 *
 * Decodes @any's value as @desc, which must be the type @any names.
 *
 * Returns: 0; -EBADMSG with MESH_PAYLOAD_ERROR_TYPE_MISMATCH when @any
 * holds another type (the error names both), or any error of
 * mesh_payload_decode().
 */
MESH_PAYLOAD_API int mesh_payload_any_unpack(const MeshPayload__Any *any,
					     const ProtobufCMessageDescriptor *desc,
					     const MeshPayloadLimits *limits,
					     ProtobufCMessage **ret_msg, MeshPayloadError *ret_error);

MESH_PAYLOAD_END_DECLS
