/* SPDX-License-Identifier: MIT */
#include <fcntl.h>
#ifdef _WIN32
#include <io.h>
#include <windows.h>
#endif
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "meshpayload-private.h"

void mesh_payload_object_release(MeshPayloadObject *object)
{
	if (object && object->klass && object->klass->release)
		object->klass->release(object);
}

MeshPayloadResources *mesh_payload_resources_new(void)
{
	return calloc(1, sizeof(MeshPayloadResources));
}

void resource_release(MeshPayloadResource *r)
{
	switch (r->kind) {
	case MESH_PAYLOAD_RESOURCE_FD:
		close(r->fd);
		break;
	case MESH_PAYLOAD_RESOURCE_PORT:
		mesh_payload_object_release(r->object);
		break;
	case MESH_PAYLOAD_RESOURCE_NONE:
		break;
#ifdef _WIN32
	case MESH_PAYLOAD_RESOURCE_HANDLE:
		CloseHandle(r->handle);
		break;
#endif
	}
	r->kind = MESH_PAYLOAD_RESOURCE_NONE;
}

void mesh_payload_resources_clear(MeshPayloadResources *res)
{
	if (!res)
		return;
	int saved = errno;
	for (size_t i = 0; i < res->len; i++)
		resource_release(&res->items[i]);
	res->len = 0;
	errno = saved;
}

MeshPayloadResources *mesh_payload_resources_free(MeshPayloadResources *res)
{
	if (!res)
		return NULL;
	mesh_payload_resources_clear(res);
	free(res->items);
	free(res);
	return NULL;
}

size_t mesh_payload_resources_len(const MeshPayloadResources *res)
{
	return res ? res->len : 0;
}

int resources_reserve(MeshPayloadResources *res, size_t extra)
{
	if (extra <= res->cap - res->len)
		return 0;
	if (extra > SIZE_MAX / sizeof(MeshPayloadResource) - res->len)
		return -ENOMEM;
	size_t cap = res->cap ? res->cap : 8;
	while (cap < res->len + extra)
		cap *= 2;
	MeshPayloadResource *items = realloc(res->items, cap * sizeof(*items));
	if (!items)
		return -ENOMEM;
	res->items = items;
	res->cap = cap;
	return 0;
}

int mesh_payload_resources_append_fd_take(MeshPayloadResources *res, int fd)
{
	if (fd < 0)
		return -EBADF;
	int r = res ? resources_reserve(res, 1) : -EINVAL;
	if (r < 0) {
		close(fd); /* consumed, also on failure */
		return r;
	}
	res->items[res->len] = (MeshPayloadResource){.kind = MESH_PAYLOAD_RESOURCE_FD, .fd = fd};
	return (int)res->len++;
}

/* A close-on-exec duplicate of @fd, or a negative errno. On Windows @fd is
 * a C runtime descriptor, which no child inherits unless it is told to. */
static int fd_dup_cloexec(int fd)
{
#ifdef _WIN32
	int dup = _dup(fd);
	if (dup >= 0 && !SetHandleInformation((HANDLE)_get_osfhandle(dup), HANDLE_FLAG_INHERIT, 0)) {
		_close(dup);
		return -EBADF;
	}
#else
	int dup = fcntl(fd, F_DUPFD_CLOEXEC, 3);
#endif
	return dup < 0 ? -errno : dup;
}

int mesh_payload_resources_append_fd(MeshPayloadResources *res, int fd)
{
	if (fd < 0)
		return -EBADF;
	int dup = fd_dup_cloexec(fd);
	if (dup < 0)
		return dup;
	return mesh_payload_resources_append_fd_take(res, dup);
}

int mesh_payload_resources_append_port_take(MeshPayloadResources *res, MeshPayloadObject *object)
{
	if (!object)
		return -EINVAL;
	int r = res ? resources_reserve(res, 1) : -EINVAL;
	if (r < 0) {
		mesh_payload_object_release(object); /* consumed, also on failure */
		return r;
	}
	res->items[res->len] =
		(MeshPayloadResource){.kind = MESH_PAYLOAD_RESOURCE_PORT, .object = object};
	return (int)res->len++;
}

MeshPayloadResourceKind mesh_payload_resources_get_kind(const MeshPayloadResources *res,
							size_t index)
{
	if (!res || index >= res->len)
		return MESH_PAYLOAD_RESOURCE_NONE;
	return res->items[index].kind;
}

int mesh_payload_resources_peek_fd(const MeshPayloadResources *res, size_t index)
{
	if (mesh_payload_resources_get_kind(res, index) != MESH_PAYLOAD_RESOURCE_FD)
		return -EINVAL;
	return res->items[index].fd;
}

MeshPayloadObject *mesh_payload_resources_peek_port(const MeshPayloadResources *res, size_t index)
{
	if (mesh_payload_resources_get_kind(res, index) != MESH_PAYLOAD_RESOURCE_PORT)
		return NULL;
	return res->items[index].object;
}

int mesh_payload_resources_steal_fd(MeshPayloadResources *res, size_t index)
{
	int fd = mesh_payload_resources_peek_fd(res, index);
	if (fd >= 0)
		res->items[index].kind = MESH_PAYLOAD_RESOURCE_NONE;
	return fd;
}

int mesh_payload_resources_replace_fd(MeshPayloadResources *res, size_t index, int fd)
{
	if (fd < 0)
		return -EBADF;
	int old = mesh_payload_resources_peek_fd(res, index);
	if (old >= 0)
		res->items[index].fd = fd;
	return old;
}

MeshPayloadObject *mesh_payload_resources_steal_port(MeshPayloadResources *res, size_t index)
{
	MeshPayloadObject *object = mesh_payload_resources_peek_port(res, index);
	if (object)
		res->items[index].kind = MESH_PAYLOAD_RESOURCE_NONE;
	return object;
}

#ifdef _WIN32
int mesh_payload_resources_append_handle_take(MeshPayloadResources *res, void *handle)
{
	if (!handle || handle == INVALID_HANDLE_VALUE)
		return -EBADF;
	int r = res ? resources_reserve(res, 1) : -EINVAL;
	if (r < 0) {
		CloseHandle(handle); /* consumed, also on failure */
		return r;
	}
	res->items[res->len] =
		(MeshPayloadResource){.kind = MESH_PAYLOAD_RESOURCE_HANDLE, .handle = handle};
	return (int)res->len++;
}

int mesh_payload_resources_append_handle(MeshPayloadResources *res, void *handle)
{
	HANDLE dup;

	if (!handle || handle == INVALID_HANDLE_VALUE)
		return -EBADF;
	if (!DuplicateHandle(GetCurrentProcess(), handle, GetCurrentProcess(), &dup, 0, FALSE,
			     DUPLICATE_SAME_ACCESS))
		return -EBADF;
	return mesh_payload_resources_append_handle_take(res, dup);
}

void *mesh_payload_resources_peek_handle(const MeshPayloadResources *res, size_t index)
{
	if (mesh_payload_resources_get_kind(res, index) != MESH_PAYLOAD_RESOURCE_HANDLE)
		return NULL;
	return res->items[index].handle;
}

void *mesh_payload_resources_steal_handle(MeshPayloadResources *res, size_t index)
{
	void *handle = mesh_payload_resources_peek_handle(res, index);
	if (handle)
		res->items[index].kind = MESH_PAYLOAD_RESOURCE_NONE;
	return handle;
}
#endif

int payload_set_error(MeshPayloadError *err, MeshPayloadErrorCode code, int errnum,
		      const char *fmt, ...)
{
	if (err) {
		va_list ap;
		err->code = code;
		va_start(ap, fmt);
		vsnprintf(err->message, sizeof(err->message), fmt, ap);
		va_end(ap);
	}
	return errnum;
}

const char *mesh_payload_error_code_to_string(MeshPayloadErrorCode code)
{
	static const char *const names[] = {
		[MESH_PAYLOAD_ERROR_NONE] = "none",
		[MESH_PAYLOAD_ERROR_TRUNCATED] = "truncated",
		[MESH_PAYLOAD_ERROR_BAD_VARINT] = "bad varint",
		[MESH_PAYLOAD_ERROR_BAD_FIELD_NUMBER] = "bad field number",
		[MESH_PAYLOAD_ERROR_UNKNOWN_WIRE_TYPE] = "unknown wire type",
		[MESH_PAYLOAD_ERROR_WRONG_WIRE_TYPE] = "wrong wire type",
		[MESH_PAYLOAD_ERROR_INVALID_UTF8] = "invalid UTF-8",
		[MESH_PAYLOAD_ERROR_BAD_PACKED_LENGTH] = "bad packed length",
		[MESH_PAYLOAD_ERROR_MISSING_REQUIRED_FIELD] = "missing required field",
		[MESH_PAYLOAD_ERROR_MISSING_RESOURCE] = "missing resource",
		[MESH_PAYLOAD_ERROR_EXTRA_RESOURCES] = "extra resources",
		[MESH_PAYLOAD_ERROR_INVALID_RESOURCE_RANGE] = "invalid resource range",
		[MESH_PAYLOAD_ERROR_WRONG_RESOURCE_KIND] = "wrong resource kind",
		[MESH_PAYLOAD_ERROR_TOO_DEEP] = "nesting too deep",
		[MESH_PAYLOAD_ERROR_TOO_LARGE] = "message too large",
		[MESH_PAYLOAD_ERROR_TOO_MANY_RESOURCES] = "too many resources",
		[MESH_PAYLOAD_ERROR_BAD_RESOURCE] = "bad resource",
		[MESH_PAYLOAD_ERROR_BUFFER_SIZE] = "buffer size mismatch",
		[MESH_PAYLOAD_ERROR_NO_MEMORY] = "out of memory",
		[MESH_PAYLOAD_ERROR_DURATION_RANGE] = "duration out of range",
		[MESH_PAYLOAD_ERROR_TYPE_MISMATCH] = "type mismatch",
	};
	if ((size_t)code < sizeof(names) / sizeof(names[0]) && names[code])
		return names[code];
	return "unknown error";
}
