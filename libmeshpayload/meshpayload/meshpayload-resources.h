/* SPDX-License-Identifier: MIT */
/**
 * Resources: the out-of-band list a message's fds and ports travel in.
 *
 * Ports are opaque here. The layer above makes its port type start with a
 * MeshPayloadObject header whose class says how to release it; this library
 * only moves such pointers and releases the ones nobody took.
 *
 * Ownership: a MeshPayloadResources owns every entry in it; `_take` calls
 * move ownership in, also on failure (the fd or object is then released),
 * `_steal` calls move it out.
 * Threads: not locked; one thread at a time.
 */
#pragma once

#if !defined(__MESHPAYLOAD_H_INSIDE__) && !defined(MESHPAYLOAD_COMPILATION)
#error "Only <meshpayload/meshpayload.h> can be included directly."
#endif

#include <stddef.h>

MESH_PAYLOAD_BEGIN_DECLS

typedef struct MeshPayloadObject MeshPayloadObject;

/**
 * MeshPayloadObjectClass:
 * @version: %MESH_PAYLOAD_OBJECT_CLASS_VERSION
 * @name: a type name for error messages
 * @release: drops the reference the holder owns (for a port: closes it)
 */
typedef struct {
	unsigned version;
	const char *name;
	void (*release)(MeshPayloadObject *object);
} MeshPayloadObjectClass;

/** MESH_PAYLOAD_OBJECT_CLASS_VERSION: the MeshPayloadObjectClass version this header describes. */
#define MESH_PAYLOAD_OBJECT_CLASS_VERSION 0

/**
 * MeshPayloadObject:
 * @klass: the object's class
 *
 * The first member of every object carried as a port resource.
 */
struct MeshPayloadObject {
	const MeshPayloadObjectClass *klass;
};

/**
 * mesh_payload_object_release:
 * @object: (nullable) (transfer full): an object
 *
 * Calls the class's release function.
 */
MESH_PAYLOAD_API void mesh_payload_object_release(MeshPayloadObject *object);

/**
 * MeshPayloadResourceKind:
 * @MESH_PAYLOAD_RESOURCE_NONE: an entry whose resource was stolen
 * @MESH_PAYLOAD_RESOURCE_FD: a file descriptor
 * @MESH_PAYLOAD_RESOURCE_PORT: a MeshPayloadObject
 * @MESH_PAYLOAD_RESOURCE_HANDLE: (Windows only) a HANDLE
 *
 * On Windows an fd is a C runtime descriptor. libmeshremote carries OS
 * resources there as HANDLEs (which a descriptor cannot wrap in general: an
 * event, a section, a process): what arrives in a message is a HANDLE entry.
 */
typedef enum {
	MESH_PAYLOAD_RESOURCE_NONE,
	MESH_PAYLOAD_RESOURCE_FD,
	MESH_PAYLOAD_RESOURCE_PORT,
#ifdef _WIN32
	MESH_PAYLOAD_RESOURCE_HANDLE,
#endif
} MeshPayloadResourceKind;

/**
 * MeshPayloadResources:
 *
 * An ordered list of owned resources.
 */
typedef struct MeshPayloadResources MeshPayloadResources;

/** mesh_payload_resources_new: Returns: (transfer full): an empty list, or NULL (ENOMEM). */
MESH_PAYLOAD_API MeshPayloadResources *mesh_payload_resources_new(void);

/**
 * mesh_payload_resources_free:
 * @res: (nullable): a list
 *
 * Releases every entry (fds closed, objects released) and frees @res.
 *
 * Returns: NULL.
 */
MESH_PAYLOAD_API MeshPayloadResources *mesh_payload_resources_free(MeshPayloadResources *res);
MESH_PAYLOAD_DEFINE_CLEANUP_FUNC(MeshPayloadResources, mesh_payload_resources_free)

/** mesh_payload_resources_clear: releases every entry; the list becomes empty. */
MESH_PAYLOAD_API void mesh_payload_resources_clear(MeshPayloadResources *res);

/** mesh_payload_resources_len: Returns: the number of entries, stolen ones included. */
MESH_PAYLOAD_API size_t mesh_payload_resources_len(const MeshPayloadResources *res);

/**
 * mesh_payload_resources_append_fd_take:
 * @res: a list
 * @fd: an fd >= 0
 *
 * Consumes @fd, also on failure. (It is then closed.)
 *
 * Returns: the new entry's index, or a negative errno: -EBADF for a
 * negative fd, -EINVAL for a NULL @res, -ENOMEM.
 */
MESH_PAYLOAD_API int mesh_payload_resources_append_fd_take(MeshPayloadResources *res, int fd);

/**
 * mesh_payload_resources_append_fd:
 * @res: a list
 * @fd: an fd, borrowed: a close-on-exec duplicate is appended
 *
 * Returns: the new entry's index, or a negative errno.
 */
MESH_PAYLOAD_API int mesh_payload_resources_append_fd(MeshPayloadResources *res, int fd);

/**
 * mesh_payload_resources_append_port_take:
 * @res: a list
 * @object: (transfer full): an object
 *
 * Consumes @object, also on failure. (It is then released.)
 *
 * Returns: the new entry's index, or a negative errno: -EINVAL for a NULL
 * @object or @res, -ENOMEM.
 */
MESH_PAYLOAD_API int mesh_payload_resources_append_port_take(MeshPayloadResources *res,
							     MeshPayloadObject *object);

/** mesh_payload_resources_get_kind: Returns: the kind of entry @index, NONE if out of range. */
MESH_PAYLOAD_API MeshPayloadResourceKind
mesh_payload_resources_get_kind(const MeshPayloadResources *res, size_t index);

/**
 * mesh_payload_resources_peek_fd:
 * Returns: (transfer none): the fd of entry @index, or -EINVAL if it is not an fd.
 */
MESH_PAYLOAD_API int mesh_payload_resources_peek_fd(const MeshPayloadResources *res, size_t index);

/**
 * mesh_payload_resources_peek_port:
 * Returns: (transfer none): the object of entry @index, or NULL if it is not a port.
 */
MESH_PAYLOAD_API MeshPayloadObject *
mesh_payload_resources_peek_port(const MeshPayloadResources *res, size_t index);

/**
 * mesh_payload_resources_steal_fd:
 * Returns: (transfer full): the fd of entry @index (the entry becomes NONE),
 * or -EINVAL if it is not an fd.
 */
MESH_PAYLOAD_API int mesh_payload_resources_steal_fd(MeshPayloadResources *res, size_t index);

/**
 * mesh_payload_resources_replace_fd:
 * @res: a list
 * @index: an entry that holds an fd
 * @fd: an fd >= 0, taken on success only
 *
 * Puts @fd in entry @index in place of the fd it held, which is handed back
 * (not closed): the entry keeps its place in the list. On failure nothing
 * changes and @fd stays the caller's.
 *
 * Returns: (transfer full): the entry's previous fd, or a negative errno:
 * -EBADF for a negative @fd, -EINVAL if entry @index is not an fd.
 */
MESH_PAYLOAD_API int mesh_payload_resources_replace_fd(MeshPayloadResources *res, size_t index,
						       int fd);

/**
 * mesh_payload_resources_steal_port:
 * Returns: (transfer full): the object of entry @index (the entry becomes
 * NONE), or NULL if it is not a port.
 */
MESH_PAYLOAD_API MeshPayloadObject *mesh_payload_resources_steal_port(MeshPayloadResources *res,
								       size_t index);

#ifdef _WIN32
/**
 * mesh_payload_resources_append_handle_take:
 * @res: a list
 * @handle: (transfer full): a HANDLE (not NULL or INVALID_HANDLE_VALUE)
 *
 * Windows only. Consumes @handle, also on failure. (It is then closed.)
 *
 * Returns: the new entry's index, or a negative errno: -EBADF for NULL or
 * INVALID_HANDLE_VALUE, -EINVAL for a NULL @res, -ENOMEM.
 */
MESH_PAYLOAD_API int mesh_payload_resources_append_handle_take(MeshPayloadResources *res,
							       void *handle);

/**
 * mesh_payload_resources_append_handle:
 * @res: a list
 * @handle: a HANDLE, borrowed: a non-inheritable duplicate
 *     (DuplicateHandle(), same access) is appended
 *
 * Windows only. Returns: the new entry's index, or a negative errno
 * (-EBADF when @handle cannot be duplicated).
 */
MESH_PAYLOAD_API int mesh_payload_resources_append_handle(MeshPayloadResources *res,
							  void *handle);

/**
 * mesh_payload_resources_peek_handle:
 * Windows only. Returns: (transfer none): the HANDLE of entry @index, or
 * NULL if it is not a HANDLE entry.
 */
MESH_PAYLOAD_API void *mesh_payload_resources_peek_handle(const MeshPayloadResources *res,
							  size_t index);

/**
 * mesh_payload_resources_steal_handle:
 * Windows only. Returns: (transfer full): the HANDLE of entry @index (the
 * entry becomes NONE), or NULL if it is not a HANDLE entry.
 */
MESH_PAYLOAD_API void *mesh_payload_resources_steal_handle(MeshPayloadResources *res,
							   size_t index);
#endif

MESH_PAYLOAD_END_DECLS
