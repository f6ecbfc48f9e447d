/* SPDX-License-Identifier: MIT */
#pragma once

#if !defined(__PAL_H_INSIDE__) && !defined(PAL_COMPILATION)
#error "Only <pal/pal.h> can be included directly."
#endif

#include <errno.h>
#include <unistd.h>

/**
 * PAL_API:
 *
 * Marks a libpal symbol as exported. The library is built with hidden
 * visibility; only declarations carrying this macro are part of the ABI.
 * On Windows it is `__declspec(dllexport)` while libpal itself is compiled
 * and `__declspec(dllimport)` for its users (define PAL_STATIC when linking
 * a static libpal).
 */
#if defined(_WIN32) && defined(PAL_COMPILATION)
#define PAL_API __declspec(dllexport)
#elif defined(_WIN32) && !defined(PAL_STATIC)
#define PAL_API __declspec(dllimport)
#elif defined(_WIN32)
#define PAL_API
#else
#define PAL_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
#define PAL_BEGIN_DECLS extern "C" {
#define PAL_END_DECLS }
#else
#define PAL_BEGIN_DECLS
#define PAL_END_DECLS
#endif

/**
 * PAL_DEFINE_CLEANUP_FUNC:
 * @type: an object type
 * @func: its NULL-safe destructor
 *
 * Defines `func##p(type **)` for `__attribute__((cleanup))`, which calls
 * @func on a non-NULL pointer and preserves errno.
 */
#define PAL_DEFINE_CLEANUP_FUNC(type, func)                                   \
	static inline void func##p(type **p)                                  \
	{                                                                     \
		if (*p) {                                                     \
			int _saved_errno = errno;                             \
			func(*p);                                             \
			errno = _saved_errno;                                 \
		}                                                             \
	}

/**
 * pal_close_fd:
 * @fd: an fd or a negative value
 *
 * Closes @fd if it is >= 0, preserving errno. EINTR from close() is not
 * retried (Linux releases the fd regardless).
 *
 * Returns: -1, so that `fd = pal_close_fd(fd);` resets the variable.
 */
static inline int pal_close_fd(int fd)
{
	if (fd >= 0) {
		int saved = errno;
		close(fd);
		errno = saved;
	}
	return -1;
}

/**
 * pal_close_fdp:
 * @fd: pointer to an fd variable
 *
 * Cleanup helper for `__attribute__((cleanup(pal_close_fdp))) int fd = -1;`.
 */
static inline void pal_close_fdp(int *fd)
{
	*fd = pal_close_fd(*fd);
}

/**
 * pal_steal_fd:
 * @fd: pointer to an fd variable
 *
 * Returns: the fd, transferring ownership to the caller; *@fd becomes -1.
 */
static inline int pal_steal_fd(int *fd)
{
	int r = *fd;
	*fd = -1;
	return r;
}

#define _pal_cleanup_(f) __attribute__((cleanup(f)))
/** pal_autoclose: declares an fd variable closed when it leaves scope. */
#define pal_autoclose _pal_cleanup_(pal_close_fdp)
