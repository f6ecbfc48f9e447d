/* SPDX-License-Identifier: MIT */
/**
 * Windows handle plumbing (Windows only): an owning handle array, the
 * counterpart of PalFdArray, and duplicate/close helpers.
 *
 * Ownership is in the names, as for fds: `_take` moves a handle into the
 * callee, also on failure (it is then closed); `_steal` moves it out to the
 * caller; everything else borrows, and stores a duplicate made with
 * DuplicateHandle(). Every handle libpal creates or duplicates is not
 * inheritable: a child gets only what pal_spawn_inherit_handle() lists.
 *
 * "No handle" is NULL. INVALID_HANDLE_VALUE is also refused where a handle
 * is taken (it is the current-process pseudo-handle, never owned).
 *
 * Errors: 0 (or an index) on success, a negative Win32 error code
 * (-(int)GetLastError() of the failing call) on failure.
 *
 * Thread rules: a PalHandleArray is not internally locked; use one from one
 * thread at a time. The other functions are thread-safe.
 */
#pragma once

#if !defined(__PAL_H_INSIDE__) && !defined(PAL_COMPILATION)
#error "Only <pal/pal.h> can be included directly."
#endif

#include <stdbool.h>
#include <stddef.h>
#include <windows.h>

PAL_BEGIN_DECLS

/**
 * pal_handle_close:
 * @handle: (nullable): a handle, NULL or INVALID_HANDLE_VALUE
 *
 * Closes @handle unless it is NULL or INVALID_HANDLE_VALUE, preserving the
 * thread's last-error value.
 *
 * Returns: NULL, so that `h = pal_handle_close(h);` resets the variable.
 */
PAL_API HANDLE pal_handle_close(HANDLE handle);

/**
 * pal_handle_dup:
 * @handle: a handle of this process, borrowed
 * @ret_handle: (out) (transfer full): a duplicate with the same access,
 *     not inheritable
 *
 * Returns: 0 or a negative Win32 error code.
 */
PAL_API int pal_handle_dup(HANDLE handle, HANDLE *ret_handle);

/**
 * pal_handle_dup_to_process:
 * @handle: a handle of this process, borrowed
 * @process: a handle of the target process with PROCESS_DUP_HANDLE access
 *     (pal_child_get_process_handle() has it), borrowed
 * @access: the access of the new handle, or 0 for the same access as @handle
 * @ret_remote: (out): the handle's value in the target process, which owns
 *     it (close it there, or with DuplicateHandle(DUPLICATE_CLOSE_SOURCE))
 *
 * DuplicateHandle() into another process; the copy is not inheritable. The
 * value means nothing in this process: send it to the target (argv, a pipe)
 * for it to use.
 *
 * Returns: 0 or a negative Win32 error code.
 */
PAL_API int pal_handle_dup_to_process(HANDLE handle, HANDLE process, DWORD access,
				      HANDLE *ret_remote);

/**
 * pal_handle_set_inheritable:
 * @handle: a handle, borrowed
 * @inheritable: the wanted state of HANDLE_FLAG_INHERIT
 *
 * Returns: 0 or a negative Win32 error code.
 */
PAL_API int pal_handle_set_inheritable(HANDLE handle, bool inheritable);

/**
 * pal_handle_is_inheritable:
 * @handle: a handle, borrowed
 *
 * Returns: 1 if HANDLE_FLAG_INHERIT is set, 0 if not, or a negative Win32
 * error code (-ERROR_INVALID_HANDLE for a closed handle).
 */
PAL_API int pal_handle_is_inheritable(HANDLE handle);

/**
 * PalHandleArray:
 *
 * An ordered array of handles that the array owns: every handle in it is
 * closed when the array is cleared or freed, unless stolen first.
 */
typedef struct PalHandleArray PalHandleArray;

/**
 * pal_handle_array_new:
 *
 * Returns: (transfer full): a new empty array, or NULL when out of memory.
 */
PAL_API PalHandleArray *pal_handle_array_new(void);

/**
 * pal_handle_array_free:
 * @array: (nullable): an array
 *
 * Closes every handle still in @array and frees it.
 *
 * Returns: NULL.
 */
PAL_API PalHandleArray *pal_handle_array_free(PalHandleArray *array);
PAL_DEFINE_CLEANUP_FUNC(PalHandleArray, pal_handle_array_free)

/**
 * pal_handle_array_append:
 * @array: an array
 * @handle: a handle, borrowed
 *
 * Appends a non-inheritable duplicate of @handle (pal_handle_dup()).
 *
 * Returns: the index of the new entry, or a negative Win32 error code.
 */
PAL_API int pal_handle_array_append(PalHandleArray *array, HANDLE handle);

/**
 * pal_handle_array_append_take:
 * @array: an array
 * @handle: a handle
 *
 * Consumes @handle, also on failure. (It is then closed.)
 *
 * Returns: the index of the new entry, or a negative Win32 error code
 * (-ERROR_INVALID_HANDLE for NULL or INVALID_HANDLE_VALUE).
 */
PAL_API int pal_handle_array_append_take(PalHandleArray *array, HANDLE handle);

/** pal_handle_array_len: Returns: the number of entries (stolen ones included). */
PAL_API size_t pal_handle_array_len(const PalHandleArray *array);

/**
 * pal_handle_array_get:
 * @array: an array
 * @index: an index below the length
 *
 * Returns: (transfer none): the handle at @index (still owned by @array),
 * NULL if it was stolen or @index is out of range.
 */
PAL_API HANDLE pal_handle_array_get(const PalHandleArray *array, size_t index);

/**
 * pal_handle_array_peek_data:
 * @array: an array
 *
 * Returns: (transfer none): the handles as a contiguous array of
 * pal_handle_array_len() entries (NULL for stolen ones), valid until @array
 * next changes.
 */
PAL_API const HANDLE *pal_handle_array_peek_data(const PalHandleArray *array);

/**
 * pal_handle_array_steal:
 * @array: an array
 * @index: an index below the length
 *
 * Moves the handle at @index to the caller; the slot becomes NULL.
 *
 * Returns: (transfer full): the handle, or NULL if already stolen or
 * @index is out of range.
 */
PAL_API HANDLE pal_handle_array_steal(PalHandleArray *array, size_t index);

/**
 * pal_handle_array_clear:
 * @array: an array
 *
 * Closes every handle in @array and empties it.
 */
PAL_API void pal_handle_array_clear(PalHandleArray *array);

PAL_END_DECLS
