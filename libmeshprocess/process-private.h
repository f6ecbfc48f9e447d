/* SPDX-License-Identifier: MIT */
#pragma once

#include <meshprocess/meshprocess.h>

#include "log-private.h" /* libmeshremote's, built here under this domain */

/*
 * Protobuf-c messages are built with g_malloc() and g_strdup() and freed by
 * protobuf-c with free(): libmeshremote/remote-private.h says why that is
 * sound.
 */

#include "process.pb-c.h"

MeshProcess__NodeId *process_node_id_new(const MeshUuid *id);
gboolean process_node_id_read(const MeshProcess__NodeId *n, MeshUuid *ret);
MeshProcess__Address *process_address_new(const MeshNodeId *node, const MeshPortId *port);
gboolean process_address_read(const MeshProcess__Address *a, MeshNodeId *ret_node,
			      MeshPortId *ret_port);
/* A JSON string literal for @s, appended to @out. */
void process_json_string(GString *out, const char *s);
/* RSS in KiB and thread count of the calling process. */
void process_self_stats(guint64 *ret_rss_kib, guint *ret_threads);

/*
 * A timeout argument, in microseconds: -1 waits without limit, 0 does not
 * wait, more waits that long. Any other negative value is the caller's
 * mistake: a public call that takes a GError fails at once with
 * MESH_ERROR_INVALID_ARGUMENT (this returns FALSE, @error set); one without
 * a GError checks it with g_return_val_if_fail() (a critical, and the call
 * returns its failure value at once). No call waits forever for it.
 */
static inline gboolean timeout_check(gint64 timeout_us, const char *func, GError **error)
{
	if (G_LIKELY(timeout_us >= -1))
		return TRUE;
	g_set_error(error, MESH_ERROR, MESH_ERROR_INVALID_ARGUMENT,
		    "%s: a timeout of %" G_GINT64_FORMAT " us: -1 (no limit) or >= 0 expected",
		    func, timeout_us);
	return FALSE;
}
