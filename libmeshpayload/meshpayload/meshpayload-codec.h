/* SPDX-License-Identifier: MIT */
/**
 * Encoding and decoding protobuf-c messages in the mesh encoding.
 *
 * Messages the decoder builds are allocated with the system allocator, so
 * protobuf-c's accessors work on them; free them with
 * mesh_payload_message_free() (which releases their resources first), never
 * with protobuf_c_message_free_unpacked() alone.
 *
 * Threads: no global state; every function may be called from any thread on
 * distinct objects.
 */
#pragma once

#if !defined(__MESHPAYLOAD_H_INSIDE__) && !defined(MESHPAYLOAD_COMPILATION)
#error "Only <meshpayload/meshpayload.h> can be included directly."
#endif

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <protobuf-c/protobuf-c.h>
#include <meshpayload/resource.pb-c.h>

MESH_PAYLOAD_BEGIN_DECLS

/** MESH_PAYLOAD_DEFAULT_MAX_SIZE: default limit on one encoded message (64 MiB). */
#define MESH_PAYLOAD_DEFAULT_MAX_SIZE (64u << 20)
/** MESH_PAYLOAD_DEFAULT_MAX_DEPTH: default limit on message nesting. */
#define MESH_PAYLOAD_DEFAULT_MAX_DEPTH 64u
/** MESH_PAYLOAD_DEFAULT_MAX_RESOURCES: default limit on resources in one message. */
#define MESH_PAYLOAD_DEFAULT_MAX_RESOURCES 1024u

/**
 * MeshPayloadLimits:
 * @max_size: the most bytes one message may have
 * @max_depth: the deepest nesting of messages (the top level is depth 0)
 * @max_resources: the most resources one message may carry
 *
 * Limits on what a peer may send. A zero member means its default.
 */
typedef struct {
	size_t max_size;
	unsigned max_depth;
	unsigned max_resources;
} MeshPayloadLimits;

/**
 * MeshPayloadErrorCode:
 *
 * Why an encode or decode failed. This enum may be extended.
 */
typedef enum {
	MESH_PAYLOAD_ERROR_NONE = 0,
	MESH_PAYLOAD_ERROR_TRUNCATED,        /* input ends inside a value */
	MESH_PAYLOAD_ERROR_BAD_VARINT,       /* varint longer than 10 bytes or > 64 bits */
	MESH_PAYLOAD_ERROR_BAD_FIELD_NUMBER, /* field number 0 or > 2^29-1 */
	MESH_PAYLOAD_ERROR_UNKNOWN_WIRE_TYPE,
	MESH_PAYLOAD_ERROR_WRONG_WIRE_TYPE,  /* wire type does not fit the field */
	MESH_PAYLOAD_ERROR_INVALID_UTF8,
	MESH_PAYLOAD_ERROR_BAD_PACKED_LENGTH,
	MESH_PAYLOAD_ERROR_MISSING_REQUIRED_FIELD,
	MESH_PAYLOAD_ERROR_MISSING_RESOURCE,
	MESH_PAYLOAD_ERROR_EXTRA_RESOURCES,
	MESH_PAYLOAD_ERROR_INVALID_RESOURCE_RANGE,
	MESH_PAYLOAD_ERROR_WRONG_RESOURCE_KIND,
	MESH_PAYLOAD_ERROR_TOO_DEEP,
	MESH_PAYLOAD_ERROR_TOO_LARGE,
	MESH_PAYLOAD_ERROR_TOO_MANY_RESOURCES,
	MESH_PAYLOAD_ERROR_BAD_RESOURCE,     /* encode: an Fd < 0 or a NULL port */
	MESH_PAYLOAD_ERROR_BUFFER_SIZE,      /* encode: output size does not match */
	MESH_PAYLOAD_ERROR_NO_MEMORY,
	MESH_PAYLOAD_ERROR_DURATION_RANGE,   /* a Duration < 0 or nanos out of [0, 1e9) */
	MESH_PAYLOAD_ERROR_TYPE_MISMATCH,    /* an Any holds another type */
} MeshPayloadErrorCode;

/**
 * MeshPayloadError:
 * @code: the cause
 * @message: a readable description naming the field path, e.g.
 *     "decoding test.Outer.inner.name: invalid UTF-8"
 */
typedef struct {
	MeshPayloadErrorCode code;
	char message[256];
} MeshPayloadError;

/** mesh_payload_error_code_to_string: Returns: (transfer none): a short name for @code. */
MESH_PAYLOAD_API const char *mesh_payload_error_code_to_string(MeshPayloadErrorCode code);

/**
 * mesh_payload_is_resource_type:
 * @desc: a message descriptor
 *
 * Returns: whether @desc is mesh_payload.Fd or mesh_payload.Port.
 */
MESH_PAYLOAD_API bool mesh_payload_is_resource_type(const ProtobufCMessageDescriptor *desc);

/**
 * mesh_payload_count_resources:
 * @msg: a message
 *
 * Returns: the number of resources @msg holds (every non-NULL Fd and Port
 * field, at any depth).
 */
MESH_PAYLOAD_API size_t mesh_payload_count_resources(const ProtobufCMessage *msg);

/**
 * mesh_payload_get_encoded_size:
 * @msg: a message
 * @ret_size: (out): the encoded size in bytes
 * @ret_error: (out) (optional): details on failure
 *
 * Returns: 0, or -EINVAL for a resource field holding no resource.
 */
MESH_PAYLOAD_API int mesh_payload_get_encoded_size(const ProtobufCMessage *msg, size_t *ret_size,
						   MeshPayloadError *ret_error);

/**
 * mesh_payload_encode:
 * @msg: a message; its resources are moved out on success
 * @out: the output buffer
 * @size: exactly the size from mesh_payload_get_encoded_size()
 * @res: the list the resources are appended to, in depth-first field order
 * @ret_error: (out) (optional): details on failure
 *
 * Encodes @msg into @out. On success every resource moves from @msg into
 * @res: Fd fields are left at -1 and Port handles at 0, so freeing @msg
 * afterwards releases nothing twice. On failure neither @msg nor @res
 * changes. A message holding no resources is packed by protobuf-c and is
 * standard protobuf.
 *
 * Returns: 0 or a negative errno (-EINVAL bad resource or size mismatch,
 * -ENOMEM).
 */
MESH_PAYLOAD_API int mesh_payload_encode(ProtobufCMessage *msg, uint8_t *out, size_t size,
					 MeshPayloadResources *res, MeshPayloadError *ret_error);

/**
 * mesh_payload_encode_alloc:
 * @msg: a message; its resources are moved out on success
 * @ret_data: (out) (transfer full): the bytes, to free() (NULL when empty)
 * @ret_size: (out): their number
 * @res: the list the resources are appended to
 * @ret_error: (out) (optional): details on failure
 *
 * mesh_payload_get_encoded_size() and mesh_payload_encode() in one.
 *
 * Returns: 0 or a negative errno.
 */
MESH_PAYLOAD_API int mesh_payload_encode_alloc(ProtobufCMessage *msg, uint8_t **ret_data,
					       size_t *ret_size, MeshPayloadResources *res,
					       MeshPayloadError *ret_error);

/**
 * mesh_payload_decode:
 * @desc: the type to decode
 * @data: the bytes
 * @size: their number
 * @res: (nullable): the message's resources, consumed in every case: they
 *     move into the message on success and are released on failure; @res is
 *     left empty
 * @limits: (nullable): limits, NULL for the defaults
 * @ret_msg: (out) (transfer full): the message, to mesh_payload_message_free()
 * @ret_error: (out) (optional): details on failure
 *
 * Decodes a message. Unknown fields are skipped (a skipped field's
 * resources are released). Fails on truncation, bad varints, unknown or
 * mismatched wire types, invalid UTF-8, missing required fields, missing or
 * unconsumed resources, a resource of the wrong kind, and any limit
 * exceeded; everything partially built is released.
 *
 * Returns: 0, -EBADMSG for malformed input, -E2BIG for a limit exceeded,
 * -ENOMEM.
 */
MESH_PAYLOAD_API int mesh_payload_decode(const ProtobufCMessageDescriptor *desc,
					 const uint8_t *data, size_t size,
					 MeshPayloadResources *res, const MeshPayloadLimits *limits,
					 ProtobufCMessage **ret_msg, MeshPayloadError *ret_error);

/**
 * mesh_payload_message_free:
 * @msg: (nullable) (transfer full): a message built by mesh_payload_decode()
 *     or allocated the same way (malloc'ed, system allocator)
 *
 * Releases every resource @msg holds (fds closed, ports released), then
 * frees it with protobuf_c_message_free_unpacked().
 *
 * Returns: NULL.
 */
MESH_PAYLOAD_API ProtobufCMessage *mesh_payload_message_free(ProtobufCMessage *msg);

/**
 * mesh_payload_message_new:
 * @desc: the message type, e.g. &hello__descriptor
 *
 * Allocates a message of type @desc the way mesh_payload_message_free()
 * frees it (malloc(), zeroed) and initializes it with
 * protobuf_c_message_init() (every field at its default). Set its fields
 * with mesh_payload_message_set_string() and
 * mesh_payload_message_set_bytes() (which copy), or directly: a field that
 * points to memory (a string, bytes, a nested message, an Fd or a Port
 * made with mesh_payload_fd_new_take() or mesh_payload_port_new_take(), a
 * repeated field's array) must point to malloc()'d memory the message then
 * owns, since freeing the message frees it.
 *
 * Returns: (transfer full): the message, to mesh_payload_message_free() or
 * to a call that takes it (e.g. sending it); NULL with errno ENOMEM, or
 * EINVAL if @desc is not a message descriptor.
 */
MESH_PAYLOAD_API ProtobufCMessage *mesh_payload_message_new(const ProtobufCMessageDescriptor *desc);

/**
 * mesh_payload_message_set_string:
 * @msg: a message from mesh_payload_message_new() (or malloc'ed likewise)
 * @field: the name of a string field of @msg's type, not repeated
 * @value: (transfer none): UTF-8 text, copied
 *
 * Sets @field to a copy of @value and frees its previous value. A oneof
 * member becomes the oneof's case (the previous member, if another, is
 * freed, with its resources).
 *
 * Returns: 0; -ENOENT if @msg's type has no field @field, -EINVAL if it is
 * not a singular string field or @value is NULL or not valid UTF-8 (a peer
 * would refuse to decode it), -ENOMEM. On failure @msg is unchanged.
 */
MESH_PAYLOAD_API int mesh_payload_message_set_string(ProtobufCMessage *msg, const char *field,
						     const char *value);

/**
 * mesh_payload_message_set_bytes:
 * @msg: a message from mesh_payload_message_new() (or malloc'ed likewise)
 * @field: the name of a bytes field of @msg's type, not repeated
 * @data: (transfer none) (nullable): @size bytes, copied (NULL if @size is 0)
 * @size: their number
 *
 * As mesh_payload_message_set_string(), for a bytes field (a proto2
 * optional one is marked present).
 *
 * Returns: 0; -ENOENT, -EINVAL, -ENOMEM as mesh_payload_message_set_string().
 */
MESH_PAYLOAD_API int mesh_payload_message_set_bytes(ProtobufCMessage *msg, const char *field,
						    const void *data, size_t size);

/**
 * mesh_payload_message_release_resources:
 * @msg: a message, which may live on the stack
 *
 * Releases every resource @msg holds, leaving -1 / 0 in the fields. For
 * messages built by hand that were never encoded.
 */
MESH_PAYLOAD_API void mesh_payload_message_release_resources(ProtobufCMessage *msg);

/**
 * mesh_payload_fd_new_take:
 * @fd: an fd >= 0
 *
 * Consumes @fd, also on failure. (It is then closed.)
 *
 * Returns: (transfer full): a heap MeshPayload__Fd holding @fd, or NULL
 * (errno set: EBADF for a negative fd, ENOMEM).
 */
MESH_PAYLOAD_API MeshPayload__Fd *mesh_payload_fd_new_take(int fd);

/**
 * mesh_payload_fd_steal:
 * @fd_msg: (nullable): an Fd message
 *
 * Returns: (transfer full): the fd it held (now -1 in @fd_msg), or -1.
 */
MESH_PAYLOAD_API int mesh_payload_fd_steal(MeshPayload__Fd *fd_msg);

/**
 * mesh_payload_port_new_take:
 * @object: (transfer full): an object
 *
 * Consumes @object, also on failure. (It is then released.)
 *
 * Returns: (transfer full): a heap MeshPayload__Port, or NULL (errno set:
 * EINVAL for a NULL @object, ENOMEM).
 */
MESH_PAYLOAD_API MeshPayload__Port *mesh_payload_port_new_take(MeshPayloadObject *object);

/**
 * mesh_payload_port_steal:
 * @port_msg: (nullable): a Port message
 *
 * Returns: (transfer full) (nullable): the object it held (now 0 in @port_msg).
 */
MESH_PAYLOAD_API MeshPayloadObject *mesh_payload_port_steal(MeshPayload__Port *port_msg);

MESH_PAYLOAD_END_DECLS
