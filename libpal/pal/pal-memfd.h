/* SPDX-License-Identifier: MIT */
/**
 * Sealed memfds: the way large messages travel between processes. The sender
 * creates, fills and seals; the receiver verifies every seal before mapping,
 * so the sender can no longer change or shrink what the receiver reads.
 *
 * All functions are thread-safe.
 */
#pragma once

#if !defined(__PAL_H_INSIDE__) && !defined(PAL_COMPILATION)
#error "Only <pal/pal.h> can be included directly."
#endif

#include <stdbool.h>
#include <stddef.h>

PAL_BEGIN_DECLS

/**
 * PAL_MEMFD_SEALS:
 *
 * The seals pal_memfd_seal() applies and pal_memfd_verify_seals() requires:
 * F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE.
 */
#define PAL_MEMFD_SEALS 0x000f

/**
 * pal_memfd_create:
 * @name: a name for /proc (debugging only)
 * @size: the initial size in bytes
 *
 * Creates a close-on-exec memfd that allows sealing, of @size bytes.
 *
 * Returns: (transfer full): the fd, or a negative errno.
 */
PAL_API int pal_memfd_create(const char *name, size_t size);

/**
 * pal_memfd_seal:
 * @fd: a memfd created with sealing allowed, borrowed
 *
 * Applies %PAL_MEMFD_SEALS. Fails with -EBUSY while a writable shared
 * mapping of @fd exists: unmap first.
 *
 * Returns: 0 or a negative errno.
 */
PAL_API int pal_memfd_seal(int fd);

/**
 * pal_memfd_verify_seals:
 * @fd: an fd received from a peer, borrowed
 * @ret_size: (out) (optional): its size in bytes
 *
 * Checks that @fd is a memfd carrying every seal of %PAL_MEMFD_SEALS.
 *
 * Returns: 0; -EPERM if a seal is missing; -EINVAL if @fd is not a sealable
 * file; another negative errno on failure.
 */
PAL_API int pal_memfd_verify_seals(int fd, size_t *ret_size);

/**
 * pal_memfd_map:
 * @fd: a memfd, borrowed (the mapping stays valid after it is closed)
 * @size: bytes to map, > 0
 * @writable: map read-write (only possible before sealing) or read-only
 * @ret_addr: (out): the mapping, MAP_SHARED
 *
 * Returns: 0 or a negative errno. Release with pal_memfd_unmap().
 */
PAL_API int pal_memfd_map(int fd, size_t size, bool writable, void **ret_addr);

/**
 * pal_memfd_unmap:
 * @addr: (nullable): a mapping from pal_memfd_map()
 * @size: its size
 *
 * Returns: 0 or a negative errno.
 */
PAL_API int pal_memfd_unmap(void *addr, size_t size);

PAL_END_DECLS
