/* SPDX-License-Identifier: MIT */
/*
 * The decoder: one pass over the bytes, building protobuf-c structures with
 * the system allocator, so protobuf_c_message_free_unpacked() can free them.
 *
 * Resources: the message's resources are the entries [cursor, end) of the
 * list. A wire type 7 field takes the entry at the cursor; a wire type 6
 * nested message with count n gets the next n entries as its own range and
 * must consume exactly them.
 *
 * Every failure returns at once; the caller frees the partially built
 * message, which is always consistent (new values are attached to their
 * parent before they are filled), and releases whatever the list still holds.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#ifdef _WIN32
#include <io.h>
#endif

#include "meshpayload-private.h"
#include "wire-private.h"

#define PATH_MAX_NAMES 16

typedef struct {
	MeshPayloadResources *res;
	size_t cursor;
	MeshPayloadLimits limits;
	MeshPayloadError *err;
	const ProtobufCMessageDescriptor *top;
	const char *path[PATH_MAX_NAMES];
	unsigned depth; /* nesting of the message being decoded; top is 0 */
	unsigned path_len;
} Decoder;

static int decode_fields(Decoder *d, ProtobufCMessage *m, WireReader *r, size_t res_end,
			 bool fresh);

static int fail(Decoder *d, MeshPayloadErrorCode code, int errnum, const char *fmt, ...)
	__attribute__((format(PAYLOAD_PRINTF_FORMAT, 4, 5)));

static int fail(Decoder *d, MeshPayloadErrorCode code, int errnum, const char *fmt, ...)
{
	char path[160], what[96];
	size_t k;
	va_list ap;

	if (!d->err)
		return errnum;
	k = (size_t)snprintf(path, sizeof(path), "%s", d->top->name);
	for (unsigned i = 0; i < d->path_len && i < PATH_MAX_NAMES && k < sizeof(path); i++)
		k += (size_t)snprintf(path + k, sizeof(path) - k, ".%s", d->path[i]);
	if (d->path_len > PATH_MAX_NAMES && k < sizeof(path))
		snprintf(path + k, sizeof(path) - k, "...");
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	return payload_set_error(d->err, code, errnum, "decoding %s: %s", path, what);
}

static int fail_nomem(Decoder *d)
{
	return fail(d, MESH_PAYLOAD_ERROR_NO_MEMORY, -ENOMEM, "out of memory");
}

static int fail_truncated(Decoder *d)
{
	return fail(d, MESH_PAYLOAD_ERROR_TRUNCATED, -EBADMSG, "input truncated");
}

/* Fails with what the wire reader found; @number and @wire_type are the key's. */
static int fail_wire(Decoder *d, WireStatus s, uint64_t number, unsigned wire_type)
{
	switch (s) {
	case WIRE_ERROR_TRUNCATED:
		return fail_truncated(d);
	case WIRE_ERROR_BAD_VARINT:
		return fail(d, MESH_PAYLOAD_ERROR_BAD_VARINT, -EBADMSG, "bad varint");
	case WIRE_ERROR_BAD_FIELD_NUMBER:
		return fail(d, MESH_PAYLOAD_ERROR_BAD_FIELD_NUMBER, -EBADMSG,
			    "bad field number %llu", (unsigned long long)number);
	default:
		return fail(d, MESH_PAYLOAD_ERROR_UNKNOWN_WIRE_TYPE, -EBADMSG,
			    "unknown wire type %u", wire_type);
	}
}

static int read_varint(Decoder *d, WireReader *r, uint64_t *v)
{
	int k = wire_read_varint(r, v);
	return k > 0 ? 0 : fail_wire(d, wire_status_of_varint(k), 0, 0);
}

/* Reads the payload of a field whose key said @wire_type. */
static int read_payload(Decoder *d, WireReader *r, unsigned wire_type, WireField *f)
{
	WireStatus s = wire_read_payload(r, wire_type, f);
	return s == WIRE_OK ? 0 : fail_wire(d, s, 0, wire_type);
}

static WireReader field_body(const WireField *f)
{
	return (WireReader){.p = f->data, .end = f->data + f->size};
}

bool payload_utf8_valid(const uint8_t *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		uint8_t c = s[i];
		if (c < 0x80) {
			i++;
			continue;
		}
		size_t len;
		uint32_t cp, min;
		if ((c & 0xe0) == 0xc0) {
			len = 2, cp = c & 0x1f, min = 0x80;
		} else if ((c & 0xf0) == 0xe0) {
			len = 3, cp = c & 0x0f, min = 0x800;
		} else if ((c & 0xf8) == 0xf0) {
			len = 4, cp = c & 0x07, min = 0x10000;
		} else {
			return false;
		}
		if (n - i < len)
			return false;
		for (size_t j = 1; j < len; j++) {
			if ((s[i + j] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (s[i + j] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += len;
	}
	return true;
}

/* Stores a varint-encoded value into a member of type @t. */
static void store_varint(ProtobufCType t, void *dst, uint64_t v)
{
	switch (t) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_ENUM:
		*(int32_t *)dst = (int32_t)v;
		break;
	case PROTOBUF_C_TYPE_SINT32:
		*(int32_t *)dst = wire_unzigzag32((uint32_t)v);
		break;
	case PROTOBUF_C_TYPE_UINT32:
		*(uint32_t *)dst = (uint32_t)v;
		break;
	case PROTOBUF_C_TYPE_SINT64:
		*(int64_t *)dst = wire_unzigzag64(v);
		break;
	case PROTOBUF_C_TYPE_BOOL:
		*(protobuf_c_boolean *)dst = v != 0;
		break;
	default:
		*(uint64_t *)dst = v;
		break;
	}
}

/* Capacity of a repeated array holding @n elements (arrays grow by doubling). */
static size_t repeated_capacity(size_t n)
{
	size_t cap = 4;
	if (n == 0)
		return 0;
	while (cap < n)
		cap *= 2;
	return cap;
}

/*
 * Makes room for @k more elements in a repeated member and returns the first
 * new slot, zeroed; the count is not changed. NULL when out of memory.
 */
static void *repeated_reserve(const ProtobufCFieldDescriptor *f, ProtobufCMessage *m, size_t k)
{
	size_t *n = (size_t *)((char *)m + f->quantifier_offset);
	void **array = (void **)((char *)m + f->offset);
	size_t stride = wire_element_size(f->type);
	size_t cap = repeated_capacity(*n);

	if (k > SIZE_MAX / 2 - *n)
		return NULL;
	if (*n + k > cap) {
		size_t new_cap = repeated_capacity(*n + k);
		if (new_cap > SIZE_MAX / stride)
			return NULL;
		void *grown = realloc(*array, new_cap * stride);
		if (!grown)
			return NULL;
		*array = grown;
	}
	void *slot = (char *)*array + *n * stride;
	memset(slot, 0, k * stride);
	return slot;
}

/* Frees a message-typed value, releasing it if it is a resource. */
static void free_submessage(const ProtobufCFieldDescriptor *f, ProtobufCMessage *sub)
{
	if (!sub)
		return;
	if (field_is_fd(f)) {
		MeshPayload__Fd *fd = (MeshPayload__Fd *)sub;
		if (fd->fd >= 0)
			close(fd->fd);
	} else if (field_is_port(f)) {
		MeshPayload__Port *port = (MeshPayload__Port *)sub;
		mesh_payload_object_release((MeshPayloadObject *)(uintptr_t)port->handle);
	} else {
		mesh_payload_message_release_resources(sub);
	}
	protobuf_c_message_free_unpacked(sub, NULL);
}

/* Frees the current value of a singular member (not repeated). */
static void clear_singular(const ProtobufCFieldDescriptor *f, ProtobufCMessage *m)
{
	void *member = (char *)m + f->offset;

	switch (f->type) {
	case PROTOBUF_C_TYPE_MESSAGE:
		free_submessage(f, *(ProtobufCMessage **)member);
		*(ProtobufCMessage **)member = NULL;
		break;
	case PROTOBUF_C_TYPE_STRING: {
		char *s = *(char **)member;
		if (s && s != f->default_value && s != protobuf_c_empty_string)
			free(s);
		*(char **)member = NULL;
		break;
	}
	case PROTOBUF_C_TYPE_BYTES: {
		ProtobufCBinaryData *b = member;
		const ProtobufCBinaryData *def = f->default_value;
		if (b->data && (!def || b->data != def->data))
			free(b->data);
		b->data = NULL;
		b->len = 0;
		break;
	}
	default:
		break;
	}
}

/*
 * Returns where a singular or oneof value of @f is stored, after making @f
 * the selected member of its oneof (freeing the previously selected one).
 */
static void *singular_slot(const ProtobufCFieldDescriptor *f, ProtobufCMessage *m)
{
	void *member = (char *)m + f->offset;
	void *quant = (char *)m + f->quantifier_offset;

	if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
		uint32_t *oneof_case = quant;
		if (*oneof_case != f->id) {
			if (*oneof_case != 0) {
				const ProtobufCFieldDescriptor *old =
					protobuf_c_message_descriptor_get_field(m->descriptor,
										*oneof_case);
				if (old)
					clear_singular(old, m);
			}
			memset(member, 0, wire_element_size(f->type));
			*oneof_case = f->id;
		}
	} else if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->type != PROTOBUF_C_TYPE_MESSAGE &&
		   f->type != PROTOBUF_C_TYPE_STRING) {
		*(protobuf_c_boolean *)quant = 1;
	}
	return member;
}

/* Slot for the next value of @f: appended for repeated fields. */
static void *value_slot(Decoder *d, const ProtobufCFieldDescriptor *f, ProtobufCMessage *m,
			int *ret_err)
{
	if (f->label == PROTOBUF_C_LABEL_REPEATED) {
		void *slot = repeated_reserve(f, m, 1);
		if (!slot) {
			*ret_err = fail_nomem(d);
			return NULL;
		}
		(*(size_t *)((char *)m + f->quantifier_offset))++;
		return slot;
	}
	return singular_slot(f, m);
}

static int decode_resource(Decoder *d, const ProtobufCFieldDescriptor *f, ProtobufCMessage *m,
			   unsigned wire_type, size_t res_end)
{
	bool is_fd = field_is_fd(f);
	MeshPayloadResourceKind kind = is_fd ? MESH_PAYLOAD_RESOURCE_FD : MESH_PAYLOAD_RESOURCE_PORT;
	const ProtobufCMessageDescriptor *desc = f->descriptor;
	int r = 0;

	if (wire_type != WIRE_RESOURCE)
		return fail(d, MESH_PAYLOAD_ERROR_WRONG_WIRE_TYPE, -EBADMSG,
			    "wire type %u for a resource field", wire_type);
	if (d->cursor >= res_end)
		return fail(d, MESH_PAYLOAD_ERROR_MISSING_RESOURCE, -EBADMSG, "missing resource");
	MeshPayloadResource *entry = &d->res->items[d->cursor];
#ifdef _WIN32
	/* What arrived through a node is a HANDLE: an Fd field wants a C runtime
	 * descriptor, which wraps it if it is a file, pipe or console. */
	if (is_fd && entry->kind == MESH_PAYLOAD_RESOURCE_HANDLE) {
		int fd = _open_osfhandle((intptr_t)entry->handle, 0);
		if (fd < 0)
			return fail(d, MESH_PAYLOAD_ERROR_WRONG_RESOURCE_KIND, -EBADMSG,
				    "a handle that no C runtime descriptor can hold");
		entry->kind = MESH_PAYLOAD_RESOURCE_FD;
		entry->fd = fd;
	}
#endif
	if (entry->kind != kind)
		return fail(d, MESH_PAYLOAD_ERROR_WRONG_RESOURCE_KIND, -EBADMSG,
			    "expected %s resource", is_fd ? "an fd" : "a port");

	ProtobufCMessage *sub = malloc(desc->sizeof_message);
	if (!sub)
		return fail_nomem(d);
	protobuf_c_message_init(desc, sub);

	ProtobufCMessage **slot;
	if (f->label == PROTOBUF_C_LABEL_REPEATED) {
		slot = value_slot(d, f, m, &r);
	} else {
		slot = singular_slot(f, m);
		clear_singular(f, m); /* a repeated occurrence replaces the old one */
	}
	if (!slot) {
		free(sub);
		return r;
	}
	*slot = sub;
	if (is_fd)
		((MeshPayload__Fd *)sub)->fd = entry->fd;
	else
		((MeshPayload__Port *)sub)->handle = (uint64_t)(uintptr_t)entry->object;
	entry->kind = MESH_PAYLOAD_RESOURCE_NONE;
	d->cursor++;
	return 0;
}

static int decode_message_field(Decoder *d, const ProtobufCFieldDescriptor *f,
				ProtobufCMessage *m, unsigned wire_type, WireReader *r,
				size_t res_end)
{
	const ProtobufCMessageDescriptor *desc = f->descriptor;
	WireField field;
	int k;

	if (wire_type != WIRE_MESH_MESSAGE && wire_type != WIRE_LEN)
		return fail(d, MESH_PAYLOAD_ERROR_WRONG_WIRE_TYPE, -EBADMSG,
			    "wire type %u for a message field", wire_type);
	k = read_payload(d, r, wire_type, &field);
	if (k < 0)
		return k;
	uint64_t n_res = field.n_res;
	WireReader body = field_body(&field);
	/* Within the parent's range, not the whole list: d->cursor <= res_end holds. */
	if (n_res > res_end - d->cursor)
		return fail(d, MESH_PAYLOAD_ERROR_INVALID_RESOURCE_RANGE, -EBADMSG,
			    "nested message claims %llu resources", (unsigned long long)n_res);
	if (d->depth + 1 > d->limits.max_depth)
		return fail(d, MESH_PAYLOAD_ERROR_TOO_DEEP, -E2BIG, "nesting deeper than %u",
			    d->limits.max_depth);

	ProtobufCMessage **slot;
	bool fresh = true;
	if (f->label == PROTOBUF_C_LABEL_REPEATED) {
		slot = value_slot(d, f, m, &k);
		if (!slot)
			return k;
	} else {
		slot = singular_slot(f, m);
		fresh = *slot == NULL;
	}
	if (fresh) {
		ProtobufCMessage *sub = malloc(desc->sizeof_message);
		if (!sub)
			return fail_nomem(d);
		protobuf_c_message_init(desc, sub);
		*slot = sub;
	}
	d->depth++;
	k = decode_fields(d, *slot, &body, d->cursor + n_res, fresh);
	d->depth--;
	return k;
}

static int decode_packed(Decoder *d, const ProtobufCFieldDescriptor *f, ProtobufCMessage *m,
			 WireReader *r)
{
	WireField field;
	size_t count = 0;
	int k = read_payload(d, r, WIRE_LEN, &field);
	if (k < 0)
		return k;
	WireReader body = field_body(&field);

	unsigned wt = wire_type_of(f->type);
	size_t len = wire_remaining(&body);
	if (wt == WIRE_FIXED32 || wt == WIRE_FIXED64) {
		size_t width = wt == WIRE_FIXED32 ? 4 : 8;
		if (len % width)
			return fail(d, MESH_PAYLOAD_ERROR_BAD_PACKED_LENGTH, -EBADMSG,
				    "packed length %zu is not a multiple of %zu", len, width);
		count = len / width;
	} else {
		for (const uint8_t *p = body.p; p < body.end; p++)
			count += !(*p & 0x80);
		if (len && (body.end[-1] & 0x80))
			return fail_truncated(d);
	}
	if (count == 0)
		return 0;

	uint8_t *dst = repeated_reserve(f, m, count);
	if (!dst)
		return fail_nomem(d);
	size_t stride = wire_element_size(f->type);
	for (size_t i = 0; i < count; i++, dst += stride) {
		if (wt == WIRE_FIXED32) {
			*(uint32_t *)dst = wire_get_le32(body.p);
			body.p += 4;
		} else if (wt == WIRE_FIXED64) {
			*(uint64_t *)dst = wire_get_le64(body.p);
			body.p += 8;
		} else {
			uint64_t v = 0;
			k = read_varint(d, &body, &v);
			if (k < 0)
				return k; /* the reserved slots are not counted: nothing leaks */
			store_varint(f->type, dst, v);
		}
	}
	*(size_t *)((char *)m + f->quantifier_offset) += count;
	return 0;
}

static int decode_scalar(Decoder *d, const ProtobufCFieldDescriptor *f, ProtobufCMessage *m,
			 unsigned wire_type, WireReader *r)
{
	unsigned expected = wire_type_of(f->type);
	int k = 0;

	if (wire_type == WIRE_LEN && expected != WIRE_LEN && f->label == PROTOBUF_C_LABEL_REPEATED)
		return decode_packed(d, f, m, r);
	if (wire_type != expected)
		return fail(d, MESH_PAYLOAD_ERROR_WRONG_WIRE_TYPE, -EBADMSG,
			    "wire type %u, expected %u", wire_type, expected);

	/* Read the value fully before touching the message. */
	WireField field;
	void *copy = NULL;
	k = read_payload(d, r, expected, &field);
	if (k < 0)
		return k;
	if (expected == WIRE_LEN) {
		size_t len = field.size;
		if (f->type == PROTOBUF_C_TYPE_STRING) {
			if (!payload_utf8_valid(field.data, len))
				return fail(d, MESH_PAYLOAD_ERROR_INVALID_UTF8, -EBADMSG,
					    "invalid UTF-8");
			copy = malloc(len + 1);
			if (!copy)
				return fail_nomem(d);
			memcpy(copy, field.data, len);
			((char *)copy)[len] = '\0';
		} else if (len) {
			copy = malloc(len);
			if (!copy)
				return fail_nomem(d);
			memcpy(copy, field.data, len);
		}
	}

	void *slot;
	if (f->label == PROTOBUF_C_LABEL_REPEATED) {
		slot = value_slot(d, f, m, &k);
		if (!slot) {
			free(copy);
			return k;
		}
	} else {
		slot = singular_slot(f, m);
		clear_singular(f, m);
	}
	switch (expected) {
	case WIRE_VARINT:
		store_varint(f->type, slot, field.value);
		break;
	case WIRE_FIXED32:
		*(uint32_t *)slot = (uint32_t)field.value;
		break;
	case WIRE_FIXED64:
		*(uint64_t *)slot = field.value;
		break;
	default:
		if (f->type == PROTOBUF_C_TYPE_STRING) {
			*(char **)slot = copy;
		} else {
			ProtobufCBinaryData *b = slot;
			b->data = copy;
			b->len = field.size;
		}
		break;
	}
	return 0;
}

/* Skips an unknown field, releasing the resources it carries. */
static int skip_field(Decoder *d, unsigned wire_type, WireReader *r, size_t res_end)
{
	WireField field;
	int k = read_payload(d, r, wire_type, &field);

	if (k < 0)
		return k;
	if (wire_type == WIRE_RESOURCE && d->cursor >= res_end)
		return fail(d, MESH_PAYLOAD_ERROR_MISSING_RESOURCE, -EBADMSG, "missing resource");
	if (wire_type == WIRE_MESH_MESSAGE && field.n_res > res_end - d->cursor)
		return fail(d, MESH_PAYLOAD_ERROR_INVALID_RESOURCE_RANGE, -EBADMSG,
			    "unknown field claims %llu resources",
			    (unsigned long long)field.n_res);
	for (size_t i = 0; i < field.n_res; i++)
		resource_release(&d->res->items[d->cursor++]);
	return 0;
}

static int check_required(Decoder *d, const ProtobufCMessageDescriptor *desc,
			  const uint64_t *seen)
{
	for (unsigned i = 0; i < desc->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &desc->fields[i];
		if (f->label == PROTOBUF_C_LABEL_REQUIRED && !(seen[i / 64] & (1ull << (i % 64))))
			return fail(d, MESH_PAYLOAD_ERROR_MISSING_REQUIRED_FIELD, -EBADMSG,
				    "missing required field %s", f->name);
	}
	return 0;
}

/*
 * Decodes the fields in @r into @m (fresh from init, or an existing message
 * being merged into). Resources come from [cursor, res_end).
 */
static int decode_fields(Decoder *d, ProtobufCMessage *m, WireReader *r, size_t res_end,
			 bool fresh)
{
	const ProtobufCMessageDescriptor *desc = m->descriptor;
	uint64_t seen_small[4] = {0}, *seen = seen_small;
	unsigned last = 0;
	int k = 0;

	if (fresh && desc->n_fields > 64 * 4) {
		seen = calloc((desc->n_fields + 63) / 64, sizeof(uint64_t));
		if (!seen)
			return fail_nomem(d);
	}

	while (r->p < r->end) {
		uint64_t number = 0;
		unsigned wire_type = 0;
		WireStatus s = wire_read_key(r, &number, &wire_type);
		if (s != WIRE_OK) {
			k = fail_wire(d, s, number, wire_type);
			break;
		}

		/* Fields usually arrive in order: try the next one first. */
		const ProtobufCFieldDescriptor *f = NULL;
		if (last < desc->n_fields && desc->fields[last].id == number)
			f = &desc->fields[last];
		else
			f = protobuf_c_message_descriptor_get_field(desc, (unsigned)number);
		if (!f) {
			k = skip_field(d, wire_type, r, res_end);
			if (k < 0)
				break;
			continue;
		}
		unsigned index = (unsigned)(f - desc->fields);
		last = index + 1;
		if (fresh)
			seen[index / 64] |= 1ull << (index % 64);

		if (d->path_len < PATH_MAX_NAMES)
			d->path[d->path_len] = f->name;
		d->path_len++;
		if (field_is_resource(f))
			k = decode_resource(d, f, m, wire_type, res_end);
		else if (f->type == PROTOBUF_C_TYPE_MESSAGE)
			k = decode_message_field(d, f, m, wire_type, r, res_end);
		else
			k = decode_scalar(d, f, m, wire_type, r);
		if (k < 0)
			break; /* keep the path for the caller's error message */
		d->path_len--;
	}

	if (k >= 0 && d->cursor != res_end)
		k = fail(d, MESH_PAYLOAD_ERROR_EXTRA_RESOURCES, -EBADMSG,
			 "%zu resources not consumed", res_end - d->cursor);
	if (k >= 0 && fresh)
		k = check_required(d, desc, seen);
	/* Upstream's Duration decoder refuses what a Rust Duration cannot hold. */
	if (k >= 0 && desc == &mesh_payload__duration__descriptor &&
	    !mesh_payload_duration_is_valid((const MeshPayload__Duration *)m))
		k = fail(d, MESH_PAYLOAD_ERROR_DURATION_RANGE, -EBADMSG, "duration out of range");
	if (seen != seen_small)
		free(seen);
	return k < 0 ? k : 0;
}

int mesh_payload_decode(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t size,
			MeshPayloadResources *res, const MeshPayloadLimits *limits,
			ProtobufCMessage **ret_msg, MeshPayloadError *ret_error)
{
	MeshPayloadResources empty = {0};
	Decoder d = {
		.res = res ? res : &empty,
		.err = ret_error,
		.top = desc,
		.limits = {
			.max_size = limits && limits->max_size ? limits->max_size
							       : MESH_PAYLOAD_DEFAULT_MAX_SIZE,
			.max_depth = limits && limits->max_depth ? limits->max_depth
								 : MESH_PAYLOAD_DEFAULT_MAX_DEPTH,
			.max_resources = limits && limits->max_resources
						 ? limits->max_resources
						 : MESH_PAYLOAD_DEFAULT_MAX_RESOURCES,
		},
	};
	ProtobufCMessage *m = NULL;
	int k;

	if (ret_error) {
		ret_error->code = MESH_PAYLOAD_ERROR_NONE;
		ret_error->message[0] = '\0';
	}
	if (!desc || desc->magic != PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC || (!data && size) ||
	    !ret_msg || mesh_payload_is_resource_type(desc)) {
		k = -EINVAL;
		goto out;
	}
	if (size > d.limits.max_size) {
		k = fail(&d, MESH_PAYLOAD_ERROR_TOO_LARGE, -E2BIG, "%zu bytes, limit %zu", size,
			 d.limits.max_size);
		goto out;
	}
	if (d.res->len > d.limits.max_resources) {
		k = fail(&d, MESH_PAYLOAD_ERROR_TOO_MANY_RESOURCES, -E2BIG,
			 "%zu resources, limit %u", d.res->len, d.limits.max_resources);
		goto out;
	}
	m = malloc(desc->sizeof_message);
	if (!m) {
		k = fail_nomem(&d);
		goto out;
	}
	protobuf_c_message_init(desc, m);

	static const uint8_t nothing[1];
	WireReader r = {.p = size ? data : nothing, .end = size ? data + size : nothing};
	k = decode_fields(&d, m, &r, d.res->len, true);
out:
	if (k < 0)
		mesh_payload_message_free(m);
	else
		*ret_msg = m;
	mesh_payload_resources_clear(res);
	return k;
}
