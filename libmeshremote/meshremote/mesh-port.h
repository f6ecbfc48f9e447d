/* SPDX-License-Identifier: MIT */
/**
 * MeshPort: one end of a bidirectional, unbounded, ordered message pipe.
 *
 * Applications use ports through channels (mesh-channel.h); this header
 * covers what is done with a port as a value: creating pairs, carrying them
 * inside messages (mesh_message_add_port_take(), or a `mesh_payload.Port`
 * field whose handle is the MeshPort), bridging and closing.
 *
 * A MeshPort begins with a MeshPayloadObject, so libmeshpayload carries it as
 * a port resource; releasing that resource closes the port.
 */
#pragma once

#if !defined(__MESHREMOTE_H_INSIDE__) && !defined(MESHREMOTE_COMPILATION)
#error "Only <meshremote/meshremote.h> can be included directly."
#endif

#include <glib.h>

G_BEGIN_DECLS

/**
 * mesh_port_new_pair:
 * @ret_a: (out) (transfer full): one end
 * @ret_b: (out) (transfer full): the other
 */
MESH_REMOTE_API void mesh_port_new_pair(MeshPort **ret_a, MeshPort **ret_b);

/**
 * mesh_port_close:
 * @port: (nullable) (transfer full): a port
 *
 * Closes this end: the peer receives every earlier message, then "closed".
 */
MESH_REMOTE_API void mesh_port_close(MeshPort *port);

/**
 * mesh_port_bridge:
 * @a: (transfer full): a port
 * @b: (transfer full): another port
 *
 * Consumes @a, also on failure. Consumes @b, also on failure.
 *
 * Joins @a's peer and @b's peer directly; messages queued at @a and @b are
 * forwarded first, in order. If @a's peer already closed, @b's peer gets
 * what was queued at @a, then "closed" (and the other way round).
 * Bridging a port with its own peer fails both; bridging with a failed
 * port fails the other side's peer. Both are taken in all cases: if one is
 * NULL, the other is closed.
 */
MESH_REMOTE_API void mesh_port_bridge(MeshPort *a, MeshPort *b);

/**
 * mesh_port_as_object:
 * @port: a port
 *
 * Returns: (transfer none): the port as a payload object, for
 * mesh_payload_port_new_take() (which then owns the port).
 */
MESH_REMOTE_API MeshPayloadObject *mesh_port_as_object(MeshPort *port);

/**
 * mesh_port_from_object:
 * @object: (nullable) (transfer full): an object from a decoded
 *     `mesh_payload.Port` field
 *
 * Consumes @object, also on failure.
 *
 * Returns: (transfer full) (nullable): the port, or NULL (and @object is
 * released) if it is not a MeshPort; NULL for a NULL @object.
 */
MESH_REMOTE_API MeshPort *mesh_port_from_object(MeshPayloadObject *object);

/**
 * mesh_port_into_field:
 * @port: (transfer full): a port
 *
 * Consumes @port, also on failure.
 *
 * Returns: (transfer full): a heap `mesh_payload.Port` field holding @port,
 * to put in a typed message (which then owns the port).
 */
MESH_REMOTE_API MeshPayload__Port *mesh_port_into_field(MeshPort *port);

/**
 * mesh_port_steal_from_field:
 * @field: (nullable): a `mesh_payload.Port` field of a received message
 *
 * Moves the port out of @field to the caller (a `_steal`, like
 * mesh_payload_port_steal()).
 *
 * Returns: (transfer full) (nullable): the port the field held (the field is
 * left empty), or NULL if it held none or no MeshPort.
 */
MESH_REMOTE_API MeshPort *mesh_port_steal_from_field(MeshPayload__Port *field);

G_END_DECLS
