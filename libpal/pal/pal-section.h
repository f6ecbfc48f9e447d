/* SPDX-License-Identifier: MIT */
/**
 * Sections (Windows only): the way large events travel between processes
 * on Windows, the counterpart of pal-memfd.h. A section is pagefile-backed
 * shared memory (CreateFileMapping(INVALID_HANDLE_VALUE)); the sender
 * creates and fills it, then gives the receiver a read-only duplicate
 * (pal_section_dup_read_only()).
 *
 * A section is NOT a sealed memfd. Nothing stops the creator, or anyone
 * holding a writable handle, from changing the contents while the receiver
 * reads them; and a read-only handle does not pin the receiver's access
 * either: DuplicateHandle() to itself with more access succeeds when the
 * section's security descriptor allows it (an unnamed section's default one
 * lets the same user do so, and under Wine 8 every holder can). A receiver
 * must treat the view as shared memory that may change under it: copy out
 * what it decodes, and check sizes against pal_section_get_size().
 *
 * Errors: negative Win32 error codes. All functions are thread-safe.
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
 * pal_section_create:
 * @size: the size in bytes, > 0
 * @ret_section: (out) (transfer full): an unnamed, non-inheritable section
 *     handle with SECTION_ALL_ACCESS, zero-filled
 *
 * Returns: 0 or a negative Win32 error code (-ERROR_INVALID_PARAMETER for a
 * zero size).
 */
PAL_API int pal_section_create(size_t size, HANDLE *ret_section);

/**
 * pal_section_get_size:
 * @section: a section handle with SECTION_QUERY access, borrowed
 * @ret_size: (out): its size in bytes as the kernel reports it: at least
 *     the size it was created with, possibly rounded up to whole pages
 *     (Wine 8 reports 12288 for a section of 10000 bytes)
 *
 * Asks the kernel (NtQuerySection()), so a receiver learns how much it may
 * map rather than trusting a peer's word; the size of the payload inside is
 * the sender's to say, and to check against this.
 *
 * Returns: 0 or a negative Win32 error code.
 */
PAL_API int pal_section_get_size(HANDLE section, size_t *ret_size);

/**
 * pal_section_dup_read_only:
 * @section: a section handle, borrowed
 * @process: the target process (PROCESS_DUP_HANDLE access), or NULL for
 *     this process
 * @ret_handle: (out): the new handle's value in @process (which owns it),
 *     with FILE_MAP_READ | SECTION_QUERY access only
 *
 * See the header comment: read-only access of a handle is not a seal.
 *
 * Returns: 0 or a negative Win32 error code.
 */
PAL_API int pal_section_dup_read_only(HANDLE section, HANDLE process, HANDLE *ret_handle);

/**
 * pal_section_map:
 * @section: a section handle, borrowed (the view stays valid after it is
 *     closed)
 * @size: bytes to map from offset 0, > 0 and at most the section's size
 * @writable: FILE_MAP_WRITE (the handle must allow it) or FILE_MAP_READ
 * @ret_addr: (out): the view
 *
 * Returns: 0 or a negative Win32 error code (-ERROR_ACCESS_DENIED for a
 * writable view of a read-only handle). Release with pal_section_unmap().
 */
PAL_API int pal_section_map(HANDLE section, size_t size, bool writable, void **ret_addr);

/**
 * pal_section_unmap:
 * @addr: (nullable): a view from pal_section_map()
 *
 * Returns: 0 or a negative Win32 error code.
 */
PAL_API int pal_section_unmap(void *addr);

PAL_END_DECLS
