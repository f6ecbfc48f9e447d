/* SPDX-License-Identifier: MIT */
/*
 * The encoder. A message holding no resources is packed by protobuf-c. One
 * holding resources is written here: field by field in descriptor order,
 * exactly as protobuf-c would, except that resource fields become wire type 7
 * and nested messages holding resources wire type 6 (count, length, bytes).
 */
#include <stdlib.h>

#include "meshpayload-private.h"
#include "wire-private.h"

typedef struct {
	MeshPayloadResources *res; /* NULL in the sizing pass */
	MeshPayloadError *err;
	int r;
} Encoder;

static size_t message_body_size(Encoder *e, const ProtobufCMessage *m);
static size_t message_body_write(Encoder *e, ProtobufCMessage *m, uint8_t *out);

static bool type_is_varint(ProtobufCType t)
{
	switch (t) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_BOOL:
	case PROTOBUF_C_TYPE_ENUM:
		return true;
	default:
		return false;
	}
}

/* The 64-bit varint value of a varint-typed element. */
static uint64_t varint_value(ProtobufCType t, const void *v)
{
	switch (t) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_ENUM:
		return (uint64_t)(int64_t) * (const int32_t *)v;
	case PROTOBUF_C_TYPE_SINT32:
		return wire_zigzag32(*(const int32_t *)v);
	case PROTOBUF_C_TYPE_UINT32:
		return *(const uint32_t *)v;
	case PROTOBUF_C_TYPE_SINT64:
		return wire_zigzag64(*(const int64_t *)v);
	case PROTOBUF_C_TYPE_BOOL:
		return *(const protobuf_c_boolean *)v ? 1 : 0;
	default:
		return *(const uint64_t *)v;
	}
}

/* Size of a non-message value without its key. */
static size_t scalar_size(ProtobufCType t, const void *v)
{
	switch (wire_type_of(t)) {
	case WIRE_FIXED32:
		return 4;
	case WIRE_FIXED64:
		return 8;
	case WIRE_LEN:
		if (t == PROTOBUF_C_TYPE_STRING) {
			const char *s = *(const char *const *)v;
			size_t n = s ? strlen(s) : 0;
			return wire_varint_size(n) + n;
		} else {
			const ProtobufCBinaryData *b = v;
			return wire_varint_size(b->len) + b->len;
		}
	default:
		return wire_varint_size(varint_value(t, v));
	}
}

static size_t scalar_write(ProtobufCType t, const void *v, uint8_t *out)
{
	switch (wire_type_of(t)) {
	case WIRE_FIXED32:
		wire_put_le32(out, *(const uint32_t *)v);
		return 4;
	case WIRE_FIXED64:
		wire_put_le64(out, *(const uint64_t *)v);
		return 8;
	case WIRE_LEN:
		if (t == PROTOBUF_C_TYPE_STRING) {
			const char *s = *(const char *const *)v;
			size_t n = s ? strlen(s) : 0;
			size_t k = wire_put_varint(out, n);
			if (n)
				memcpy(out + k, s, n);
			return k + n;
		} else {
			const ProtobufCBinaryData *b = v;
			size_t k = wire_put_varint(out, b->len);
			if (b->len)
				memcpy(out + k, b->data, b->len);
			return k + b->len;
		}
	default:
		return wire_put_varint(out, varint_value(t, v));
	}
}

static bool value_is_zeroish(const ProtobufCFieldDescriptor *f, const void *v)
{
	switch (f->type) {
	case PROTOBUF_C_TYPE_STRING: {
		const char *s = *(const char *const *)v;
		return !s || !*s;
	}
	case PROTOBUF_C_TYPE_BYTES:
		return ((const ProtobufCBinaryData *)v)->len == 0;
	case PROTOBUF_C_TYPE_MESSAGE:
		return *(const void *const *)v == NULL;
	case PROTOBUF_C_TYPE_FLOAT:
		return *(const float *)v == 0;
	case PROTOBUF_C_TYPE_DOUBLE:
		return *(const double *)v == 0;
	case PROTOBUF_C_TYPE_BOOL:
		return *(const protobuf_c_boolean *)v == 0;
	default:
		if (wire_element_size(f->type) == 8)
			return *(const uint64_t *)v == 0;
		return *(const uint32_t *)v == 0;
	}
}

/* Whether a singular field is written, following protobuf-c's pack rules. */
static bool field_present(const ProtobufCFieldDescriptor *f, const ProtobufCMessage *m)
{
	const void *member = (const char *)m + f->offset;
	const void *quant = (const char *)m + f->quantifier_offset;
	bool pointer = f->type == PROTOBUF_C_TYPE_MESSAGE || f->type == PROTOBUF_C_TYPE_STRING;

	if (f->label == PROTOBUF_C_LABEL_REQUIRED)
		return true;
	if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
		if (*(const uint32_t *)quant != f->id)
			return false;
		if (pointer) {
			const void *p = *(const void *const *)member;
			return p && p != f->default_value;
		}
		return true;
	}
	if (f->label == PROTOBUF_C_LABEL_OPTIONAL) {
		if (pointer) {
			const void *p = *(const void *const *)member;
			return p && p != f->default_value;
		}
		return *(const protobuf_c_boolean *)quant;
	}
	return !value_is_zeroish(f, member);
}

static int bad_resource(Encoder *e, const ProtobufCFieldDescriptor *f, const char *what)
{
	if (e->r == 0)
		e->r = payload_set_error(e->err, MESH_PAYLOAD_ERROR_BAD_RESOURCE, -EINVAL,
					 "encoding field %s: %s", f->name, what);
	return 0;
}

/* Size of one message-typed element, key included. */
static size_t message_value_size(Encoder *e, const ProtobufCFieldDescriptor *f,
				 const ProtobufCMessage *sub)
{
	size_t key = wire_key_size(f->id);

	if (field_is_fd(f)) {
		if (!sub || ((const MeshPayload__Fd *)sub)->fd < 0)
			bad_resource(e, f, "an Fd holds no file descriptor");
		return key;
	}
	if (field_is_port(f)) {
		if (!sub || ((const MeshPayload__Port *)sub)->handle == 0)
			bad_resource(e, f, "a Port holds no object");
		return key;
	}
	size_t n = sub ? mesh_payload_count_resources(sub) : 0;
	if (n == 0) {
		size_t len = sub ? protobuf_c_message_get_packed_size(sub) : 0;
		return key + wire_varint_size(len) + len;
	}
	size_t len = message_body_size(e, sub);
	return key + wire_varint_size(n) + wire_varint_size(len) + len;
}

static size_t message_value_write(Encoder *e, const ProtobufCFieldDescriptor *f,
				  ProtobufCMessage *sub, uint8_t *out)
{
	MeshPayloadResources *res = e->res;

	if (field_is_fd(f)) {
		MeshPayload__Fd *fd = (MeshPayload__Fd *)sub;
		res->items[res->len++] =
			(MeshPayloadResource){.kind = MESH_PAYLOAD_RESOURCE_FD, .fd = fd->fd};
		fd->fd = -1;
		return wire_put_key(out, f->id, WIRE_RESOURCE);
	}
	if (field_is_port(f)) {
		MeshPayload__Port *port = (MeshPayload__Port *)sub;
		res->items[res->len++] = (MeshPayloadResource){
			.kind = MESH_PAYLOAD_RESOURCE_PORT,
			.object = (MeshPayloadObject *)(uintptr_t)port->handle};
		port->handle = 0;
		return wire_put_key(out, f->id, WIRE_RESOURCE);
	}

	size_t n = sub ? mesh_payload_count_resources(sub) : 0;
	size_t k;
	if (n == 0) {
		size_t len = sub ? protobuf_c_message_get_packed_size(sub) : 0;
		k = wire_put_key(out, f->id, WIRE_LEN);
		k += wire_put_varint(out + k, len);
		if (len)
			k += protobuf_c_message_pack(sub, out + k);
		return k;
	}
	size_t len = message_body_size(e, sub);
	k = wire_put_key(out, f->id, WIRE_MESH_MESSAGE);
	k += wire_put_varint(out + k, n);
	k += wire_put_varint(out + k, len);
	return k + message_body_write(e, sub, out + k);
}

static size_t packed_payload_size(const ProtobufCFieldDescriptor *f, const void *array, size_t n)
{
	size_t stride = wire_element_size(f->type);
	size_t len = 0;

	if (!type_is_varint(f->type))
		return n * stride;
	for (size_t i = 0; i < n; i++)
		len += wire_varint_size(varint_value(f->type, (const char *)array + i * stride));
	return len;
}

static size_t field_size(Encoder *e, const ProtobufCFieldDescriptor *f, const ProtobufCMessage *m)
{
	const void *member = (const char *)m + f->offset;

	if (f->label == PROTOBUF_C_LABEL_REPEATED) {
		size_t n = *(const size_t *)((const char *)m + f->quantifier_offset);
		const void *array = *(const void *const *)member;
		size_t stride = wire_element_size(f->type);
		size_t size = 0;

		if (n == 0)
			return 0;
		if (f->flags & PROTOBUF_C_FIELD_FLAG_PACKED) {
			size_t len = packed_payload_size(f, array, n);
			return wire_key_size(f->id) + wire_varint_size(len) + len;
		}
		for (size_t i = 0; i < n; i++) {
			const void *v = (const char *)array + i * stride;
			if (f->type == PROTOBUF_C_TYPE_MESSAGE)
				size += message_value_size(e, f, *(const ProtobufCMessage *const *)v);
			else
				size += wire_key_size(f->id) + scalar_size(f->type, v);
		}
		return size;
	}
	if (!field_present(f, m))
		return 0;
	if (f->type == PROTOBUF_C_TYPE_MESSAGE)
		return message_value_size(e, f, *(const ProtobufCMessage *const *)member);
	return wire_key_size(f->id) + scalar_size(f->type, member);
}

static size_t field_write(Encoder *e, const ProtobufCFieldDescriptor *f, ProtobufCMessage *m,
			  uint8_t *out)
{
	const void *member = (const char *)m + f->offset;

	if (f->label == PROTOBUF_C_LABEL_REPEATED) {
		size_t n = *(const size_t *)((const char *)m + f->quantifier_offset);
		void *array = *(void *const *)member;
		size_t stride = wire_element_size(f->type);
		size_t k = 0;

		if (n == 0)
			return 0;
		if (f->flags & PROTOBUF_C_FIELD_FLAG_PACKED) {
			k = wire_put_key(out, f->id, WIRE_LEN);
			k += wire_put_varint(out + k, packed_payload_size(f, array, n));
			for (size_t i = 0; i < n; i++)
				k += scalar_write(f->type, (const char *)array + i * stride, out + k);
			return k;
		}
		for (size_t i = 0; i < n; i++) {
			void *v = (char *)array + i * stride;
			if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
				k += message_value_write(e, f, *(ProtobufCMessage **)v, out + k);
			} else {
				k += wire_put_key(out + k, f->id, wire_type_of(f->type));
				k += scalar_write(f->type, v, out + k);
			}
		}
		return k;
	}
	if (!field_present(f, m))
		return 0;
	if (f->type == PROTOBUF_C_TYPE_MESSAGE)
		return message_value_write(e, f, *(ProtobufCMessage **)member, out);
	size_t k = wire_put_key(out, f->id, wire_type_of(f->type));
	return k + scalar_write(f->type, member, out + k);
}

static size_t message_body_size(Encoder *e, const ProtobufCMessage *m)
{
	size_t size = 0;

	for (unsigned i = 0; i < m->descriptor->n_fields; i++)
		size += field_size(e, &m->descriptor->fields[i], m);
	for (unsigned i = 0; i < m->n_unknown_fields; i++)
		size += wire_key_size(m->unknown_fields[i].tag) + m->unknown_fields[i].len;
	return size;
}

static size_t message_body_write(Encoder *e, ProtobufCMessage *m, uint8_t *out)
{
	size_t k = 0;

	for (unsigned i = 0; i < m->descriptor->n_fields; i++)
		k += field_write(e, &m->descriptor->fields[i], m, out + k);
	for (unsigned i = 0; i < m->n_unknown_fields; i++) {
		const ProtobufCMessageUnknownField *u = &m->unknown_fields[i];
		k += wire_put_key(out + k, u->tag, u->wire_type);
		memcpy(out + k, u->data, u->len);
		k += u->len;
	}
	return k;
}

static int encoded_size(const ProtobufCMessage *msg, size_t n_resources, size_t *ret_size,
			MeshPayloadError *err)
{
	Encoder e = {.err = err};
	size_t size;

	if (n_resources == 0)
		size = protobuf_c_message_get_packed_size(msg);
	else
		size = message_body_size(&e, msg);
	if (e.r < 0)
		return e.r;
	*ret_size = size;
	return 0;
}

int mesh_payload_get_encoded_size(const ProtobufCMessage *msg, size_t *ret_size,
				  MeshPayloadError *ret_error)
{
	if (!msg || !ret_size)
		return -EINVAL;
	return encoded_size(msg, mesh_payload_count_resources(msg), ret_size, ret_error);
}

/* The write pass, for a message of @n resources and @size bytes (both known). */
static int encode_sized(ProtobufCMessage *msg, size_t n, uint8_t *out, size_t size,
			MeshPayloadResources *res, MeshPayloadError *ret_error)
{
	int r;

	if (n == 0) {
		protobuf_c_message_pack(msg, out);
		return 0;
	}
	/* Reserve first: the write pass then cannot fail halfway. */
	r = resources_reserve(res, n);
	if (r < 0)
		return payload_set_error(ret_error, MESH_PAYLOAD_ERROR_NO_MEMORY, r,
					 "encoding %s: out of memory", msg->descriptor->name);
	Encoder e = {.res = res, .err = ret_error};
	size_t written = message_body_write(&e, msg, out);
	if (written != size)
		abort(); /* the two passes disagree: a bug, not an input error */
	return 0;
}

int mesh_payload_encode(ProtobufCMessage *msg, uint8_t *out, size_t size,
			MeshPayloadResources *res, MeshPayloadError *ret_error)
{
	size_t n, expected;
	int r;

	if (!msg || !res || (size && !out))
		return -EINVAL;
	n = mesh_payload_count_resources(msg);
	r = encoded_size(msg, n, &expected, ret_error);
	if (r < 0)
		return r;
	if (expected != size)
		return payload_set_error(ret_error, MESH_PAYLOAD_ERROR_BUFFER_SIZE, -EINVAL,
					 "encoding %s: buffer of %zu bytes, need %zu",
					 msg->descriptor->name, size, expected);
	return encode_sized(msg, n, out, size, res, ret_error);
}

int mesh_payload_encode_alloc(ProtobufCMessage *msg, uint8_t **ret_data, size_t *ret_size,
			      MeshPayloadResources *res, MeshPayloadError *ret_error)
{
	size_t size, n;
	uint8_t *data = NULL;
	int r;

	if (!msg || !res || !ret_data || !ret_size)
		return -EINVAL;
	/* Counted and sized once: mesh_payload_encode() would do both again. */
	n = mesh_payload_count_resources(msg);
	r = encoded_size(msg, n, &size, ret_error);
	if (r < 0)
		return r;
	if (size > 0) {
		data = malloc(size);
		if (!data)
			return payload_set_error(ret_error, MESH_PAYLOAD_ERROR_NO_MEMORY,
						 -ENOMEM, "encoding %s: out of memory",
						 msg->descriptor->name);
	}
	r = encode_sized(msg, n, data, size, res, ret_error);
	if (r < 0) {
		free(data);
		return r;
	}
	*ret_data = data;
	*ret_size = size;
	return 0;
}
