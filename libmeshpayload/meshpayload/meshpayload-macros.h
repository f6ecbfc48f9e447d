/* SPDX-License-Identifier: MIT */
#pragma once

#if !defined(__MESHPAYLOAD_H_INSIDE__) && !defined(MESHPAYLOAD_COMPILATION)
#error "Only <meshpayload/meshpayload.h> can be included directly."
#endif

#include <errno.h>

/**
 * MESH_PAYLOAD_API:
 *
 * Marks an exported libmeshpayload symbol; everything else is hidden. On
 * Windows it is `__declspec(dllexport)` while the DLL is built and
 * `__declspec(dllimport)` for its users: a DLL with no dllexport at all
 * would export every global symbol, the static protobuf-c runtime's too.
 */
#if defined(_WIN32) || defined(__CYGWIN__)
#ifdef MESHPAYLOAD_COMPILATION
#define MESH_PAYLOAD_API __declspec(dllexport)
#else
#define MESH_PAYLOAD_API __declspec(dllimport)
#endif
#else
#define MESH_PAYLOAD_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
#define MESH_PAYLOAD_BEGIN_DECLS extern "C" {
#define MESH_PAYLOAD_END_DECLS }
#else
#define MESH_PAYLOAD_BEGIN_DECLS
#define MESH_PAYLOAD_END_DECLS
#endif

/**
 * MESH_PAYLOAD_DEFINE_CLEANUP_FUNC:
 * @type: an object type
 * @func: its NULL-safe destructor
 *
 * Defines `func##p(type **)` for `__attribute__((cleanup))`; errno is kept.
 */
#define MESH_PAYLOAD_DEFINE_CLEANUP_FUNC(type, func)                          \
	static inline void func##p(type **p)                                  \
	{                                                                     \
		if (*p) {                                                     \
			int _saved_errno = errno;                             \
			func(*p);                                             \
			errno = _saved_errno;                                 \
		}                                                             \
	}
