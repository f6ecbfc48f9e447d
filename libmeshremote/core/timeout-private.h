/* SPDX-License-Identifier: MIT */
/*
 * The timeout rule shared by libmeshremote's core, its transports and
 * libmeshprocess (a header of static inlines: nothing is exported).
 */
#pragma once

#include <glib.h>

#include "meshremote/meshremote.h"

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

