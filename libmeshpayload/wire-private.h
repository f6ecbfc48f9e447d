/* SPDX-License-Identifier: MIT */
/*
 * The suite's one implementation of the protobuf wire format (with mesh's
 * wire types 6 and 7): varints, keys, fixed-width values and a bounded
 * field reader. Used by libmeshpayload's encoder and decoder and by
 * libmeshremote's channel framing and rpc envelope, which compose and parse
 * a few fields by hand around encoded messages.
 *
 * Private to the suite: not installed, and header-only (static inline), so
 * no library exports it, each library links on its own, and the message
 * path inlines it.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <protobuf-c/protobuf-c.h>

enum {
	WIRE_VARINT = 0,
	WIRE_FIXED64 = 1,
	WIRE_LEN = 2,
	WIRE_FIXED32 = 5,
	WIRE_MESH_MESSAGE = 6, /* resource count, length, bytes */
	WIRE_RESOURCE = 7,     /* no payload: the next resource */
};

#define WIRE_MAX_FIELD_NUMBER ((1u << 29) - 1)

/* A key that fits in one byte (field numbers 1 to 15), for fixed framing. */
#define WIRE_KEY1(number, wire_type) ((uint8_t)((number) << 3 | (wire_type)))

static inline size_t wire_varint_size(uint64_t v)
{
	size_t n = 1;
	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

static inline size_t wire_put_varint(uint8_t *out, uint64_t v)
{
	size_t n = 0;
	while (v >= 0x80) {
		out[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	out[n++] = (uint8_t)v;
	return n;
}

static inline size_t wire_key_size(uint32_t field)
{
	return wire_varint_size((uint64_t)field << 3);
}

static inline size_t wire_put_key(uint8_t *out, uint32_t field, unsigned wire_type)
{
	return wire_put_varint(out, ((uint64_t)field << 3) | wire_type);
}

static inline uint32_t wire_zigzag32(int32_t v)
{
	return ((uint32_t)v << 1) ^ (uint32_t)(v >> 31);
}

static inline uint64_t wire_zigzag64(int64_t v)
{
	return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

static inline int32_t wire_unzigzag32(uint32_t v)
{
	return (int32_t)((v >> 1) ^ (~(v & 1) + 1));
}

static inline int64_t wire_unzigzag64(uint64_t v)
{
	return (int64_t)((v >> 1) ^ (~(v & 1) + 1));
}

static inline void wire_put_le32(uint8_t *out, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		out[i] = (uint8_t)(v >> (8 * i));
}

static inline void wire_put_le64(uint8_t *out, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		out[i] = (uint8_t)(v >> (8 * i));
}

static inline uint32_t wire_get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t wire_get_le64(const uint8_t *p)
{
	return (uint64_t)wire_get_le32(p) | (uint64_t)wire_get_le32(p + 4) << 32;
}

/* A bounded reader over a byte range. */
typedef struct {
	const uint8_t *p;
	const uint8_t *end;
} WireReader;

/*
 * Reads a varint. Returns 1 on success, 0 at a truncated varint, -1 for one
 * that is over 10 bytes or overflows 64 bits.
 */
static inline int wire_read_varint(WireReader *r, uint64_t *ret)
{
	uint64_t v = 0;
	unsigned shift = 0;

	for (size_t i = 0; i < 10; i++) {
		if (r->p == r->end)
			return 0;
		uint8_t b = *r->p++;
		if (i == 9 && b > 1)
			return -1;
		v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80)) {
			*ret = v;
			return 1;
		}
		shift += 7;
	}
	return -1;
}

static inline size_t wire_remaining(const WireReader *r)
{
	return (size_t)(r->end - r->p);
}

/* Why a field could not be read. */
typedef enum {
	WIRE_OK = 0,
	WIRE_ERROR_TRUNCATED,         /* the input ends inside the field */
	WIRE_ERROR_BAD_VARINT,        /* a varint over 10 bytes or 64 bits */
	WIRE_ERROR_BAD_FIELD_NUMBER,  /* 0 or over WIRE_MAX_FIELD_NUMBER */
	WIRE_ERROR_UNKNOWN_WIRE_TYPE, /* 3 or 4 (groups) */
} WireStatus;

/* One field as read from the wire. */
typedef struct {
	uint32_t number;
	unsigned wire_type;
	uint64_t value;      /* WIRE_VARINT, WIRE_FIXED32, WIRE_FIXED64 */
	const uint8_t *data; /* WIRE_LEN, WIRE_MESH_MESSAGE: the bytes... */
	size_t size;         /* ... and their length */
	uint64_t n_res;      /* resources the field claims: its count, 1 for WIRE_RESOURCE */
} WireField;

static inline WireStatus wire_status_of_varint(int k)
{
	return k == 0 ? WIRE_ERROR_TRUNCATED : WIRE_ERROR_BAD_VARINT;
}

/*
 * Reads a key. On WIRE_ERROR_BAD_FIELD_NUMBER and WIRE_ERROR_UNKNOWN_WIRE_TYPE
 * the key's number and wire type are still returned, for the error message.
 */
static inline WireStatus wire_read_key(WireReader *r, uint64_t *ret_number,
				       unsigned *ret_wire_type)
{
	uint64_t key;
	int k = wire_read_varint(r, &key);

	if (k <= 0)
		return wire_status_of_varint(k);
	*ret_number = key >> 3;
	*ret_wire_type = (unsigned)(key & 7);
	if (*ret_number == 0 || *ret_number > WIRE_MAX_FIELD_NUMBER)
		return WIRE_ERROR_BAD_FIELD_NUMBER;
	if (*ret_wire_type == 3 || *ret_wire_type == 4)
		return WIRE_ERROR_UNKNOWN_WIRE_TYPE;
	return WIRE_OK;
}

/*
 * Reads the payload of a field of @wire_type (its key already read) into
 * @f: value (WIRE_VARINT, WIRE_FIXED*), data and size (WIRE_LEN,
 * WIRE_MESH_MESSAGE) and n_res (always); the other members are left alone. The
 * resource count of a WIRE_MESH_MESSAGE field is not checked here: the
 * caller knows the resources.
 */
static inline WireStatus wire_read_payload(WireReader *r, unsigned wire_type, WireField *f)
{
	uint64_t len;
	int k;

	f->n_res = 0;
	switch (wire_type) {
	case WIRE_VARINT:
		k = wire_read_varint(r, &f->value);
		return k > 0 ? WIRE_OK : wire_status_of_varint(k);
	case WIRE_FIXED32:
		if (wire_remaining(r) < 4)
			return WIRE_ERROR_TRUNCATED;
		f->value = wire_get_le32(r->p);
		r->p += 4;
		return WIRE_OK;
	case WIRE_FIXED64:
		if (wire_remaining(r) < 8)
			return WIRE_ERROR_TRUNCATED;
		f->value = wire_get_le64(r->p);
		r->p += 8;
		return WIRE_OK;
	case WIRE_LEN:
	case WIRE_MESH_MESSAGE:
		if (wire_type == WIRE_MESH_MESSAGE) {
			k = wire_read_varint(r, &f->n_res);
			if (k <= 0)
				return wire_status_of_varint(k);
		}
		k = wire_read_varint(r, &len);
		if (k <= 0)
			return wire_status_of_varint(k);
		if (len > wire_remaining(r))
			return WIRE_ERROR_TRUNCATED;
		f->data = r->p;
		f->size = (size_t)len;
		r->p += len;
		return WIRE_OK;
	case WIRE_RESOURCE:
		f->n_res = 1;
		return WIRE_OK;
	default:
		return WIRE_ERROR_UNKNOWN_WIRE_TYPE;
	}
}

/* Reads one whole field: its key, then its payload. */
static inline WireStatus wire_read_field(WireReader *r, WireField *f)
{
	uint64_t number;
	WireStatus s = wire_read_key(r, &number, &f->wire_type);

	if (s != WIRE_OK)
		return s;
	f->number = (uint32_t)number;
	return wire_read_payload(r, f->wire_type, f);
}

/* In-memory size of one value of type @t (protobuf-c's layout). */
static inline size_t wire_element_size(ProtobufCType t)
{
	switch (t) {
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_FIXED64:
	case PROTOBUF_C_TYPE_DOUBLE:
		return 8;
	case PROTOBUF_C_TYPE_BOOL:
		return sizeof(protobuf_c_boolean);
	case PROTOBUF_C_TYPE_STRING:
	case PROTOBUF_C_TYPE_MESSAGE:
		return sizeof(void *);
	case PROTOBUF_C_TYPE_BYTES:
		return sizeof(ProtobufCBinaryData);
	default:
		return 4;
	}
}

/* The standard wire type of a field of type @t. */
static inline unsigned wire_type_of(ProtobufCType t)
{
	switch (t) {
	case PROTOBUF_C_TYPE_SFIXED32:
	case PROTOBUF_C_TYPE_FIXED32:
	case PROTOBUF_C_TYPE_FLOAT:
		return WIRE_FIXED32;
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_FIXED64:
	case PROTOBUF_C_TYPE_DOUBLE:
		return WIRE_FIXED64;
	case PROTOBUF_C_TYPE_STRING:
	case PROTOBUF_C_TYPE_BYTES:
	case PROTOBUF_C_TYPE_MESSAGE:
		return WIRE_LEN;
	default:
		return WIRE_VARINT;
	}
}
