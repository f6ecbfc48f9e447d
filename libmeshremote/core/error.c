/* SPDX-License-Identifier: MIT */
/* The MESH_ERROR domain, and the error that names a failed node. */
#include "remote-private.h"

G_DEFINE_QUARK(mesh-error-quark, mesh_error)

GError *error_node_failure(const MeshNodeId *node, const char *reason)
{
	char id[33];

	if (!node || mesh_uuid_is_zero(node))
		return g_error_new(MESH_ERROR, MESH_ERROR_NODE_FAILURE, "local mesh failure: %s",
				   reason);
	return g_error_new(MESH_ERROR, MESH_ERROR_NODE_FAILURE,
			   "communication with node %s failed: %s", mesh_uuid_to_string(node, id),
			   reason);
}
