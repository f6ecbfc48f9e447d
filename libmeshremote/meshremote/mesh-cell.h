/* SPDX-License-Identifier: MIT */
/**
 * Cells: a value that its owner updates across processes and that every
 * holder reads locally (upstream mesh_channel::cell, reference 4.4).
 *
 * A MeshCellUpdater owns the value; each MeshCell follows it over a port
 * of its own. mesh_cell_updater_set() sends the new value (with an id one
 * higher than the last) to every cell and waits until each live cell has
 * acknowledged it; a cell keeps the newest value it was sent. Cells are
 * cloned (the clone follows the same updater) and travel inside messages
 * to other processes, where they keep following.
 *
 * The value is a protobuf-c message without resources (no fds, no ports);
 * on the wire it is the message's encoding, as upstream encodes a struct:
 * an update is `{1: value, 2: id}`, an answer `Updated{1: id}` or
 * `NewPort{1: id, 2: port}`, and a cell inside a message
 * `{1: id, 2: value, 3: port}` (upstream EncodedCell).
 *
 * Threads: an updater is used by one thread at a time; a cell too (its
 * handler runs on any thread, under the cell's own lock). A cell's
 * callback runs on the GMainContext given to mesh_cell_set_callback(),
 * never under a library lock. Blocking calls wait as mesh_receiver_recv()
 * does (mesh-channel.h).
 */
#pragma once

#if !defined(__MESHREMOTE_H_INSIDE__) && !defined(MESHREMOTE_COMPILATION)
#error "Only <meshremote/meshremote.h> can be included directly."
#endif

#include <glib.h>
#include <meshpayload/meshpayload.h>

G_BEGIN_DECLS

/** MeshCell: a value kept up to date by its updater (upstream Cell&lt;T&gt;). */
typedef struct MeshCell MeshCell;
/** MeshCellUpdater: the owner of a value and of the cells that follow it (upstream CellUpdater&lt;T&gt;). */
typedef struct MeshCellUpdater MeshCellUpdater;

/**
 * mesh_cell_updater_new:
 * @value: (transfer full): the first value, a heap message without
 *     resources; its type is the cells' type
 *
 * Consumes @value, also on failure.
 *
 * Returns: (transfer full): an updater without cells (upstream
 * CellUpdater::new()), or NULL (a critical) for a value holding resources.
 */
MESH_REMOTE_API MeshCellUpdater *mesh_cell_updater_new(ProtobufCMessage *value);

/**
 * mesh_cell_new:
 * @value: (transfer full): the first value, as for mesh_cell_updater_new()
 * @ret_updater: (out) (transfer full): the updater
 * @ret_cell: (out) (transfer full): its first cell
 *
 * Consumes @value, also on failure. Upstream cell().
 */
MESH_REMOTE_API void mesh_cell_new(ProtobufCMessage *value, MeshCellUpdater **ret_updater,
				   MeshCell **ret_cell);

/**
 * mesh_cell_updater_new_cell:
 * @updater: an updater
 *
 * Returns: (transfer full): a new cell holding the current value (upstream
 * CellUpdater::cell()).
 */
MESH_REMOTE_API MeshCell *mesh_cell_updater_new_cell(MeshCellUpdater *updater);

/**
 * mesh_cell_updater_get:
 * @updater: an updater
 *
 * Returns: (transfer none): the current value, valid until the next
 * mesh_cell_updater_set() or the updater is freed.
 */
MESH_REMOTE_API const ProtobufCMessage *mesh_cell_updater_get(MeshCellUpdater *updater);

/**
 * mesh_cell_updater_set:
 * @updater: an updater
 * @value: (transfer full): the new value, of the updater's type, without
 *     resources
 * @timeout_us: how long to wait for the acknowledgements: 0 does not wait,
 *     -1 waits forever; any other negative value fails at once with
 *     MESH_ERROR_INVALID_ARGUMENT (nothing is set)
 * @error: MESH_ERROR_EMPTY (@timeout_us 0) or MESH_ERROR_TIMED_OUT while a
 *     cell has not acknowledged the value yet
 *
 * Consumes @value, also on failure. Sets the value and sends it to every
 * cell, then waits until every cell that is still there (a cell freed, or
 * whose process died, is forgotten) has it, cells cloned meanwhile
 * included (upstream `set(value).await`). A timeout leaves the value set:
 * the cells get it all the same, and the next set waits for them too.
 *
 * Returns: TRUE once every cell acknowledged the value.
 */
MESH_REMOTE_API gboolean mesh_cell_updater_set(MeshCellUpdater *updater, ProtobufCMessage *value,
					       gint64 timeout_us, GError **error);

/**
 * mesh_cell_updater_count_cells:
 * @updater: an updater
 *
 * Returns: how many cells the updater follows, as of its last set (cells
 * that went away are forgotten at a set). For tests and diagnostics.
 */
MESH_REMOTE_API guint mesh_cell_updater_count_cells(MeshCellUpdater *updater);

/** mesh_cell_updater_free: drops the updater; its cells keep their last value. NULL-safe. */
MESH_REMOTE_API void mesh_cell_updater_free(MeshCellUpdater *updater);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(MeshCellUpdater, mesh_cell_updater_free)

/**
 * mesh_cell_get:
 * @cell: a cell
 *
 * Returns: (transfer full): a copy of the cell's current value (free it
 * with mesh_payload_message_free()).
 */
MESH_REMOTE_API ProtobufCMessage *mesh_cell_get(MeshCell *cell);

/**
 * mesh_cell_wait_next:
 * @cell: a cell
 * @timeout_us: 0 does not wait, -1 waits forever; any other negative value
 *     fails at once with MESH_ERROR_INVALID_ARGUMENT
 * @error: MESH_ERROR_EMPTY (@timeout_us 0) or MESH_ERROR_TIMED_OUT
 *
 * Waits until the cell holds a newer value than the one it held when it
 * was made or when this function (or its callback) last returned
 * (upstream Cell::wait_next()). The value seen is then the last observed.
 *
 * Returns: TRUE once there is a newer value.
 */
MESH_REMOTE_API gboolean mesh_cell_wait_next(MeshCell *cell, gint64 timeout_us, GError **error);

/**
 * MeshCellFunc:
 * @cell: the cell
 * @user_data: the callback's data
 *
 * Called on the chosen GMainContext when the cell holds a newer value than
 * the last observed one, which it then becomes (several updates in between
 * make one call).
 */
typedef void (*MeshCellFunc)(MeshCell *cell, gpointer user_data);

/**
 * mesh_cell_set_callback:
 * @cell: a cell
 * @context: (nullable): where the callback runs, NULL for the global default
 * @func: (nullable): the callback; NULL removes it
 * @user_data: passed to @func
 * @notify: (nullable): frees @user_data when the callback is replaced or
 *     removed, or the cell freed or moved into a message
 */
MESH_REMOTE_API void mesh_cell_set_callback(MeshCell *cell, GMainContext *context,
					    MeshCellFunc func, gpointer user_data,
					    GDestroyNotify notify);

#ifndef G_OS_WIN32
/**
 * mesh_cell_get_fd:
 * @cell: a cell
 *
 * Returns: (transfer none): an eventfd (close-on-exec, nonblocking, made on
 * the first call) that polls readable while the cell holds a newer value
 * than the last observed one (mesh_cell_wait_next() with a timeout of 0
 * observes it); or a negative errno.
 */
MESH_REMOTE_API int mesh_cell_get_fd(MeshCell *cell);
#else
/**
 * mesh_cell_get_handle:
 * @cell: a cell
 *
 * Windows only: the counterpart of mesh_cell_get_fd(), which
 * Windows does not have.
 *
 * Returns: (transfer none): a manual-reset event HANDLE (not inheritable,
 * made on the first call) that is signalled when the fd would poll
 * readable, for WaitForMultipleObjects() and loops other than GLib's; it
 * lives as long as the fd would. NULL if it cannot be made.
 */
MESH_REMOTE_API MeshOsHandle mesh_cell_get_handle(MeshCell *cell);
#endif

/**
 * mesh_cell_clone:
 * @cell: a cell
 *
 * Returns: (transfer full): another cell following the same updater, with
 * the same value (upstream Cell::clone()).
 */
MESH_REMOTE_API MeshCell *mesh_cell_clone(MeshCell *cell);

/** mesh_cell_free: drops the cell; its updater forgets it. NULL-safe. */
MESH_REMOTE_API void mesh_cell_free(MeshCell *cell);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(MeshCell, mesh_cell_free)

/**
 * mesh_cell_into_message:
 * @cell: (transfer full): a cell
 *
 * Consumes @cell, also on failure.
 *
 * Returns: (transfer full): a message that is the cell (upstream's
 * encoding `{1: id, 2: value, 3: port}`), to send as a whole
 * (mesh_sender_send_message()).
 */
MESH_REMOTE_API MeshMessage *mesh_cell_into_message(MeshCell *cell);

/**
 * mesh_cell_from_message:
 * @msg: (transfer full): a message from mesh_cell_into_message() (or an
 *     upstream Cell of a struct type)
 * @desc: the value's type
 * @error: MESH_ERROR_CORRUPTION if it is not a cell of that type
 *
 * Consumes @msg, also on failure.
 *
 * Returns: (transfer full): the cell, or NULL.
 */
MESH_REMOTE_API MeshCell *mesh_cell_from_message(MeshMessage *msg,
						 const ProtobufCMessageDescriptor *desc,
						 GError **error);

G_END_DECLS
