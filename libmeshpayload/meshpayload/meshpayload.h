/* SPDX-License-Identifier: MIT */
/**
 * libmeshpayload: the mesh wire encoding for protobuf-c messages that carry
 * resources (fds and ports).
 *
 * The encoding is protobuf plus two wire types: 6, a nested message that
 * carries resources (resource count, length, bytes), and 7, a resource
 * reference with no payload. Resources travel out of band, in a
 * MeshPayloadResources list in depth-first field order. A message without
 * resources encodes exactly as standard protobuf.
 *
 * Declare resource fields in your .proto with the types of
 * <meshpayload/resource.proto> (mesh_payload.Fd, mesh_payload.Port).
 *
 * Error model: negative errno, with an optional MeshPayloadError for detail.
 * Ownership: `_take` moves a resource in, also on failure (it is then
 * released), `_steal` moves it out; `_free` accepts NULL and returns NULL.
 * Threads: no global state; objects are used from one thread at a time.
 */
#pragma once

#define __MESHPAYLOAD_H_INSIDE__

#include <meshpayload/meshpayload-macros.h>
#include <meshpayload/meshpayload-resources.h>
#include <meshpayload/meshpayload-codec.h>
#include <meshpayload/meshpayload-wellknown.h>

#undef __MESHPAYLOAD_H_INSIDE__
