/* SPDX-License-Identifier: MIT */
/**
 * Pipes: a one-way byte stream over a port, with backpressure (upstream
 * mesh_channel::pipe, reference 4.5).
 *
 * The writer holds credit: 65536 bytes and 64 messages. A write sends at
 * most the remaining bytes as one message and spends one message; with no
 * credit left it waits. The reader gives credit back (a quota message)
 * once it has read half the bytes, or received half the messages, since it
 * last did. So the writer is never more than 64 KiB or 64 writes ahead of
 * the reader, in any process. The bytes on the wire are upstream's: each
 * write is a raw message (its payload is the bytes), credit is
 * `{1: bytes, 2: messages}`.
 *
 * Ends: the writer freed, the reader reads what was written, then 0 (end
 * of stream). The reader freed, a write fails with MESH_ERROR_CLOSED
 * (upstream BrokenPipe). A node failure fails both with
 * MESH_ERROR_NODE_FAILURE (upstream ConnectionReset); a writer that sends
 * beyond its credit fails the reader with MESH_ERROR_CORRUPTION (upstream
 * OverQuota).
 *
 * Both ends travel inside messages and keep working at the other end: the
 * reader's unread bytes and the writer's credit go with them.
 *
 * Threads: an end is used by one thread at a time; its callback runs on
 * the GMainContext given to its set_callback, never under a library lock.
 * Blocking calls wait as mesh_receiver_recv() does (mesh-channel.h).
 */
#pragma once

#if !defined(__MESHREMOTE_H_INSIDE__) && !defined(MESHREMOTE_COMPILATION)
#error "Only <meshremote/meshremote.h> can be included directly."
#endif

#include <glib.h>

G_BEGIN_DECLS

/** MeshReadPipe: the reading end of a pipe (upstream ReadPipe). */
typedef struct MeshReadPipe MeshReadPipe;
/** MeshWritePipe: the writing end of a pipe (upstream WritePipe). */
typedef struct MeshWritePipe MeshWritePipe;

/** MESH_PIPE_QUOTA_BYTES: the bytes a writer may send ahead of its reader. */
#define MESH_PIPE_QUOTA_BYTES 65536
/** MESH_PIPE_QUOTA_MESSAGES: the writes a writer may make ahead of its reader. */
#define MESH_PIPE_QUOTA_MESSAGES 64

/**
 * mesh_pipe_new:
 * @ret_read: (out) (transfer full): the reading end
 * @ret_write: (out) (transfer full): the writing end
 *
 * Makes a pipe (upstream pipe()).
 */
MESH_REMOTE_API void mesh_pipe_new(MeshReadPipe **ret_read, MeshWritePipe **ret_write);

/**
 * mesh_read_pipe_read:
 * @pipe: a reading end
 * @buf: where the bytes go
 * @size: at most this many; 0 returns 0 at once
 * @timeout_us: 0 does not wait, -1 waits forever; any other negative value
 *     fails at once with MESH_ERROR_INVALID_ARGUMENT
 * @error: MESH_ERROR_NODE_FAILURE, MESH_ERROR_CORRUPTION (the writer broke
 *     the protocol), MESH_ERROR_EMPTY (nothing yet, @timeout_us 0),
 *     MESH_ERROR_TIMED_OUT
 *
 * Reads what is there, up to @size bytes, waiting for something if nothing
 * is (a short read is normal). Gives credit back to the writer as it goes.
 *
 * Returns: the number of bytes read; 0 at the end of the stream (the writer
 * was freed and everything was read); -1 with @error set.
 */
MESH_REMOTE_API gssize mesh_read_pipe_read(MeshReadPipe *pipe, void *buf, gsize size,
					   gint64 timeout_us, GError **error);

/**
 * MeshReadPipeFunc:
 * @pipe: the reading end
 * @user_data: the callback's data
 *
 * Called on the chosen GMainContext while a read would not wait (bytes,
 * the end, or an error); read with a timeout of 0 until MESH_ERROR_EMPTY.
 */
typedef void (*MeshReadPipeFunc)(MeshReadPipe *pipe, gpointer user_data);

/**
 * mesh_read_pipe_set_callback:
 * @pipe: a reading end
 * @context: (nullable): where the callback runs, NULL for the global default
 * @func: (nullable): the callback; NULL removes it
 * @user_data: passed to @func
 * @notify: (nullable): frees @user_data when the callback is replaced or
 *     removed, or the end freed or moved into a message
 */
MESH_REMOTE_API void mesh_read_pipe_set_callback(MeshReadPipe *pipe, GMainContext *context,
						 MeshReadPipeFunc func, gpointer user_data,
						 GDestroyNotify notify);

#ifndef G_OS_WIN32
/**
 * mesh_read_pipe_get_fd:
 * @pipe: a reading end
 *
 * Returns: (transfer none): an eventfd (close-on-exec, nonblocking, made on
 * the first call) that polls readable while a read would not wait, until
 * the end is freed or moved; or a negative errno.
 */
MESH_REMOTE_API int mesh_read_pipe_get_fd(MeshReadPipe *pipe);
#else
/**
 * mesh_read_pipe_get_handle:
 * @pipe: a reading end
 *
 * Windows only: the counterpart of mesh_read_pipe_get_fd(), which
 * Windows does not have.
 *
 * Returns: (transfer none): a manual-reset event HANDLE (not inheritable,
 * made on the first call) that is signalled when the fd would poll
 * readable, for WaitForMultipleObjects() and loops other than GLib's; it
 * lives as long as the fd would. NULL if it cannot be made.
 */
MESH_REMOTE_API MeshOsHandle mesh_read_pipe_get_handle(MeshReadPipe *pipe);
#endif

/** mesh_read_pipe_free: closes the reading end: writes fail with MESH_ERROR_CLOSED. NULL-safe. */
MESH_REMOTE_API void mesh_read_pipe_free(MeshReadPipe *pipe);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(MeshReadPipe, mesh_read_pipe_free)

/**
 * mesh_read_pipe_into_message:
 * @pipe: (transfer full): a reading end
 *
 * Consumes @pipe, also on failure.
 *
 * Returns: (transfer full): a message that is the end (upstream's encoding
 * of a ReadPipe: `{1: port, 2: quota_bytes, 3: quota_messages}`), to send
 * as a whole (mesh_sender_send_message()); its unread bytes go with it.
 */
MESH_REMOTE_API MeshMessage *mesh_read_pipe_into_message(MeshReadPipe *pipe);

/**
 * mesh_read_pipe_from_message:
 * @msg: (transfer full): a message from mesh_read_pipe_into_message() (or
 *     an upstream ReadPipe)
 * @error: MESH_ERROR_CORRUPTION if it is not one
 *
 * Consumes @msg, also on failure.
 *
 * Returns: (transfer full): the reading end, or NULL.
 */
MESH_REMOTE_API MeshReadPipe *mesh_read_pipe_from_message(MeshMessage *msg, GError **error);

/**
 * mesh_write_pipe_write:
 * @pipe: a writing end
 * @buf: the bytes
 * @size: their number; 0 returns 0 at once
 * @timeout_us: how long to wait for credit: 0 does not wait, -1 waits
 *     forever; any other negative value fails at once with
 *     MESH_ERROR_INVALID_ARGUMENT
 * @error: MESH_ERROR_CLOSED (the reader is gone), MESH_ERROR_NODE_FAILURE,
 *     MESH_ERROR_CORRUPTION, MESH_ERROR_EMPTY (no credit, @timeout_us 0:
 *     upstream WouldBlock), MESH_ERROR_TIMED_OUT
 *
 * Sends up to @size bytes in one message, as many as the credit allows,
 * waiting for credit if there is none.
 *
 * Returns: the number of bytes sent (at least 1 for a non-empty @buf), or
 * -1 with @error set.
 */
MESH_REMOTE_API gssize mesh_write_pipe_write(MeshWritePipe *pipe, const void *buf, gsize size,
					     gint64 timeout_us, GError **error);

/**
 * mesh_write_pipe_write_all:
 * @pipe: a writing end
 * @buf: the bytes
 * @size: their number
 * @timeout_us: for the whole write, as for mesh_write_pipe_write()
 * @error: as for mesh_write_pipe_write()
 *
 * Writes everything, waiting for credit as needed. On failure some of the
 * bytes may have been sent.
 *
 * Returns: TRUE once all were sent.
 */
MESH_REMOTE_API gboolean mesh_write_pipe_write_all(MeshWritePipe *pipe, const void *buf,
						   gsize size, gint64 timeout_us, GError **error);

/**
 * MeshWritePipeFunc:
 * @pipe: the writing end
 * @user_data: the callback's data
 *
 * Called on the chosen GMainContext while a write would not wait (credit,
 * or an error to report).
 */
typedef void (*MeshWritePipeFunc)(MeshWritePipe *pipe, gpointer user_data);

/**
 * mesh_write_pipe_set_callback:
 * @pipe: a writing end
 * @context: (nullable): where the callback runs, NULL for the global default
 * @func: (nullable): the callback; NULL removes it
 * @user_data: passed to @func
 * @notify: (nullable): frees @user_data when the callback is replaced or
 *     removed, or the end freed or moved into a message
 */
MESH_REMOTE_API void mesh_write_pipe_set_callback(MeshWritePipe *pipe, GMainContext *context,
						  MeshWritePipeFunc func, gpointer user_data,
						  GDestroyNotify notify);

#ifndef G_OS_WIN32
/**
 * mesh_write_pipe_get_fd:
 * @pipe: a writing end
 *
 * Returns: (transfer none): an eventfd (close-on-exec, nonblocking, made on
 * the first call) that polls readable while a write would not wait; or a
 * negative errno.
 */
MESH_REMOTE_API int mesh_write_pipe_get_fd(MeshWritePipe *pipe);
#else
/**
 * mesh_write_pipe_get_handle:
 * @pipe: a writing end
 *
 * Windows only: the counterpart of mesh_write_pipe_get_fd(), which
 * Windows does not have.
 *
 * Returns: (transfer none): a manual-reset event HANDLE (not inheritable,
 * made on the first call) that is signalled when the fd would poll
 * readable, for WaitForMultipleObjects() and loops other than GLib's; it
 * lives as long as the fd would. NULL if it cannot be made.
 */
MESH_REMOTE_API MeshOsHandle mesh_write_pipe_get_handle(MeshWritePipe *pipe);
#endif

/** mesh_write_pipe_free: closes the writing end: the reader reads the rest, then 0. NULL-safe. */
MESH_REMOTE_API void mesh_write_pipe_free(MeshWritePipe *pipe);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(MeshWritePipe, mesh_write_pipe_free)

/**
 * mesh_write_pipe_into_message:
 * @pipe: (transfer full): a writing end
 *
 * Consumes @pipe, also on failure.
 *
 * Returns: (transfer full): a message that is the end (upstream's encoding
 * of a WritePipe: `{1: port}`); its credit goes with it.
 */
MESH_REMOTE_API MeshMessage *mesh_write_pipe_into_message(MeshWritePipe *pipe);

/**
 * mesh_write_pipe_from_message:
 * @msg: (transfer full): a message from mesh_write_pipe_into_message() (or
 *     an upstream WritePipe)
 * @error: MESH_ERROR_CORRUPTION if it is not one
 *
 * Consumes @msg, also on failure.
 *
 * Returns: (transfer full): the writing end, or NULL. A WritePipe that
 * upstream encoded closed (no port) makes an end whose writes fail with
 * MESH_ERROR_CLOSED.
 */
MESH_REMOTE_API MeshWritePipe *mesh_write_pipe_from_message(MeshMessage *msg, GError **error);

G_END_DECLS
