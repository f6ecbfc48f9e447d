/* SPDX-License-Identifier: MIT */
#pragma once

#include <meshpayload/meshpayload.h>

/* The printf format archetype: mingw's C runtime functions (which _GNU_SOURCE
 * selects, with %zu) are not the Microsoft ones that `printf` means there. */
#ifdef __MINGW_PRINTF_FORMAT
#define PAYLOAD_PRINTF_FORMAT __MINGW_PRINTF_FORMAT
#else
#define PAYLOAD_PRINTF_FORMAT printf
#endif

typedef struct {
	MeshPayloadResourceKind kind;
	union {
		int fd;
		MeshPayloadObject *object;
		void *handle; /* Windows */
	};
} MeshPayloadResource;

struct MeshPayloadResources {
	MeshPayloadResource *items;
	size_t len;
	size_t cap;
};

/* Makes room for @extra more entries; 0 or -ENOMEM. */
int resources_reserve(MeshPayloadResources *res, size_t extra);

/* Releases one entry's resource and marks it NONE. */
void resource_release(MeshPayloadResource *r);

/* Whether a field's message type is mesh_payload.Fd / mesh_payload.Port. */
static inline bool field_is_fd(const ProtobufCFieldDescriptor *f)
{
	return f->type == PROTOBUF_C_TYPE_MESSAGE && f->descriptor == &mesh_payload__fd__descriptor;
}

static inline bool field_is_port(const ProtobufCFieldDescriptor *f)
{
	return f->type == PROTOBUF_C_TYPE_MESSAGE &&
	       f->descriptor == &mesh_payload__port__descriptor;
}

static inline bool field_is_resource(const ProtobufCFieldDescriptor *f)
{
	return field_is_fd(f) || field_is_port(f);
}

/* Strict UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF. */
bool payload_utf8_valid(const uint8_t *s, size_t n);

/* Formats into @err (when non-NULL) and returns @errnum. */
int payload_set_error(MeshPayloadError *err, MeshPayloadErrorCode code, int errnum,
		      const char *fmt, ...) __attribute__((format(PAYLOAD_PRINTF_FORMAT, 4, 5)));
