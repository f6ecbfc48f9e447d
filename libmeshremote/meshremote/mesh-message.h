/* SPDX-License-Identifier: MIT */
/**
 * MeshMessage: bytes plus an ordered list of resources (fds and ports), or a
 * typed protobuf-c message that is encoded only if it must cross to another
 * node. In-process delivery passes the object itself.
 *
 * Ownership: every `_take` moves ownership in, also on failure; a message
 * owns its resources and releases them when freed (fds closed, ports closed).
 * Threads: a message is used by one thread at a time.
 */
#pragma once

#if !defined(__MESHREMOTE_H_INSIDE__) && !defined(MESHREMOTE_COMPILATION)
#error "Only <meshremote/meshremote.h> can be included directly."
#endif

#include <glib.h>
#include <meshpayload/meshpayload.h>

G_BEGIN_DECLS

typedef struct MeshMessage MeshMessage;
typedef struct MeshPort MeshPort;

/**
 * mesh_message_new:
 * @data: (nullable): bytes, copied; NULL only with @size 0
 * @size: their number
 *
 * Returns: (transfer full): an untyped message without resources.
 */
MESH_REMOTE_API MeshMessage *mesh_message_new(const void *data, size_t size);

/**
 * mesh_message_new_from_bytes:
 * @bytes: the message's bytes, not copied (the message takes a reference)
 *
 * An untyped message without resources whose bytes are @bytes: the copy
 * mesh_message_new() makes is skipped. The message holds its reference
 * until it is freed: sent to another process, the transport writes or
 * copies the bytes out during the send (a large one into shared memory
 * once) and drops it; sent within the process, the receiver's message
 * holds it. @bytes, like any GBytes, must not change meanwhile. Any thread.
 *
 * Returns: (transfer full): the message.
 */
MESH_REMOTE_API MeshMessage *mesh_message_new_from_bytes(GBytes *bytes);

/**
 * mesh_message_new_typed_take:
 * @msg: (transfer full): a heap message (freed with mesh_payload_message_free())
 *
 * Consumes @msg, also on failure.
 *
 * Returns: (transfer full): a message holding @msg; it is encoded only if it
 * crosses to another node or is received as another type.
 */
MESH_REMOTE_API MeshMessage *mesh_message_new_typed_take(ProtobufCMessage *msg);

/** mesh_message_free: releases the message and its resources. NULL-safe. */
MESH_REMOTE_API void mesh_message_free(MeshMessage *msg);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(MeshMessage, mesh_message_free)

/**
 * mesh_message_add_fd:
 * @msg: an untyped message
 * @fd: an fd, duplicated (F_DUPFD_CLOEXEC)
 *
 * Returns: the resource index, or a negative errno: -EBADF if @fd is not
 * an open fd (nothing is added).
 */
MESH_REMOTE_API int mesh_message_add_fd(MeshMessage *msg, int fd);

/**
 * mesh_message_add_fd_take:
 * @msg: an untyped message
 * @fd: an open fd
 *
 * Like mesh_message_add_fd() but takes @fd instead of a duplicate.
 * Consumes @fd, also on failure. An fd that is not open (fcntl(F_GETFD)
 * fails: closed, or never opened) is refused with -EBADF and nothing is
 * added or closed. (An fd closed behind
 * the message's back later is caught when the message is sent to another
 * node: the receiving port fails in its place.)
 *
 * Returns: the resource index, or a negative errno.
 */
MESH_REMOTE_API int mesh_message_add_fd_take(MeshMessage *msg, int fd);

/**
 * mesh_message_add_fd_borrowed:
 * @msg: an untyped message
 * @fd: an open fd, lent: it stays the caller's
 *
 * Like mesh_message_add_fd() without the duplicate: @msg refers to the
 * caller's @fd. The caller promises that @fd stays open, and names the same
 * file, until @msg is consumed: until the send that takes @msg returns
 * (mesh_sender_send_message(), mesh_oneshot_send_message(), an RPC
 * call's), or
 * mesh_message_free() or mesh_message_into_typed() returns. After that the
 * caller may close @fd: the library never uses its number again. A send to
 * another process passes @fd to the transport in the sending thread (on an
 * idle connection the kernel takes it in the send's sendmsg(): no
 * duplicate, no close); whatever has to keep the message or its fds longer
 * keeps a duplicate (F_DUPFD_CLOEXEC) made before the send returns: a
 * packet queued behind others or for a node not connected yet, delivery to
 * a port in this process, a message taken apart by an RPC call or
 * mesh_message_into_typed(). mesh_message_steal_fd() on this entry returns
 * a duplicate. Freeing @msg unsent leaves @fd open. When the node cannot
 * make a duplicate it needs (EMFILE), the message is not sent: the ports
 * fail as for a message over the limits (a transport that cannot duplicate
 * for its queue ends the connection, as for any fd). Only untyped messages
 * lend: a typed message's fds are its own. Windows, and a message with 64
 * resources already: @fd is duplicated at once, as by mesh_message_add_fd().
 * Same thread rules as the message.
 *
 * An @fd that is not open is not looked at here (that would be a system
 * call per send) but where it is used. A send to another node does not
 * send the message: the sending port fails with MESH_ERROR_INVALID_ARGUMENT
 * ("a message with an fd that is not open"), as do the ports the message
 * carries, and the peer port fails in its place; the connection and its
 * other ports go on. The Unix node finds it in the send's sendmsg() (a
 * packet it queues or sends out of line: with fcntl(F_GETFD) first); with
 * a transport that cannot report it (a MeshEventSink without try_send) the
 * node checks it with fcntl(F_GETFD) before sending. Where a duplicate is made instead (a node not connected
 * yet, a local port, an RPC call, mesh_message_into_typed(),
 * mesh_message_steal_fd()), that fails with EBADF as described above.
 *
 * Returns: the resource index, or a negative errno: -EBADF if @fd is
 * negative (nothing is added).
 */
MESH_REMOTE_API int mesh_message_add_fd_borrowed(MeshMessage *msg, int fd);

/**
 * mesh_message_add_port_take:
 * @msg: an untyped message
 * @port: (transfer full): a port
 *
 * Appends @port. Consumes @port, also on failure.
 *
 * Returns: the resource index, or a negative errno.
 */
MESH_REMOTE_API int mesh_message_add_port_take(MeshMessage *msg, MeshPort *port);

/**
 * mesh_message_get_data:
 * @msg: a message
 * @ret_size: (out): the number of bytes
 *
 * The message's bytes; a typed message is encoded first (its resources move
 * to the message's resource list).
 *
 * Returns: (transfer none): the bytes, valid while @msg lives.
 */
MESH_REMOTE_API const uint8_t *mesh_message_get_data(MeshMessage *msg, size_t *ret_size);

/** mesh_message_get_n_resources: Returns: the resources of an untyped message (after get_data for typed ones). */
MESH_REMOTE_API guint mesh_message_get_n_resources(MeshMessage *msg);

/** mesh_message_steal_fd: Returns: (transfer full): the fd at @index, or -EINVAL. */
MESH_REMOTE_API int mesh_message_steal_fd(MeshMessage *msg, guint index);

/** mesh_message_steal_port: Returns: (transfer full) (nullable): the port at @index. */
MESH_REMOTE_API MeshPort *mesh_message_steal_port(MeshMessage *msg, guint index);

#ifdef G_OS_WIN32
/*
 * Windows: OS resources travel between nodes as HANDLEs. The fd functions
 * above take C runtime descriptors there (checked with _get_osfhandle());
 * a descriptor's handle leaves as a duplicate when the message goes to
 * another node, and arrives as a HANDLE: mesh_message_steal_handle(), or
 * mesh_message_steal_fd(), which wraps a file's, pipe's or console's
 * handle in a new descriptor (_open_osfhandle()) and refuses others.
 */

/**
 * mesh_message_add_handle:
 * @msg: an untyped message
 * @handle: a HANDLE, duplicated (DuplicateHandle(), same access, not
 *     inheritable)
 *
 * Windows only: the counterpart of mesh_message_add_fd().
 *
 * Returns: the resource index, or a negative errno: -EBADF if @handle is
 * not a valid handle (nothing is added).
 */
MESH_REMOTE_API int mesh_message_add_handle(MeshMessage *msg, MeshOsHandle handle);

/**
 * mesh_message_add_handle_take:
 * @msg: an untyped message
 * @handle: a valid HANDLE
 *
 * Windows only: the counterpart of mesh_message_add_fd_take(). Consumes
 * @handle, also on failure. A handle that is not valid
 * (GetHandleInformation() fails) is refused with -EBADF and nothing is added
 * or closed.
 *
 * Returns: the resource index, or a negative errno.
 */
MESH_REMOTE_API int mesh_message_add_handle_take(MeshMessage *msg, MeshOsHandle handle);

/**
 * mesh_message_steal_handle:
 *
 * Windows only: the counterpart of mesh_message_steal_fd().
 *
 * Returns: (transfer full): the HANDLE at @index, or NULL if that resource
 * is no HANDLE (a port, a C runtime descriptor, or stolen already).
 */
MESH_REMOTE_API MeshOsHandle mesh_message_steal_handle(MeshMessage *msg, guint index);
#endif

/**
 * mesh_message_into_typed:
 * @msg: (transfer full): a message, taken in all cases (freed on any
 *     failure, a bad argument included)
 * @desc: the wanted type
 * @error: MESH_ERROR_CORRUPTION when it does not decode
 *
 * Consumes @msg, also on failure.
 *
 * Returns: (transfer full): the typed message (the original object when it
 * was sent as @desc in process, otherwise decoded), to free with
 * mesh_payload_message_free(); NULL on error.
 */
MESH_REMOTE_API ProtobufCMessage *mesh_message_into_typed(MeshMessage *msg,
							 const ProtobufCMessageDescriptor *desc,
							 GError **error);

G_END_DECLS
