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
#include "timeout-private.h" /* libmeshremote's: the same timeout rule */

/*
 * A GPid as a number (JSON, logs): Linux's is the pid; on Windows, where
 * GLib's GPid is a HANDLE type, libmeshprocess's GPids carry the process
 * id (GUINT_TO_POINTER(), mesh-win32.c).
 */
#ifdef G_OS_WIN32
#define PROCESS_PID_VALUE(pid) ((long)GPOINTER_TO_UINT(pid))
#else
#define PROCESS_PID_VALUE(pid) ((long)(pid))
#endif

MeshProcess__NodeId *process_node_id_new(const MeshUuid *id);
gboolean process_node_id_read(const MeshProcess__NodeId *n, MeshUuid *ret);
MeshProcess__Address *process_address_new(const MeshNodeId *node, const MeshPortId *port);
gboolean process_address_read(const MeshProcess__Address *a, MeshNodeId *ret_node,
			      MeshPortId *ret_port);
/* A JSON string literal for @s, appended to @out. */
void process_json_string(GString *out, const char *s);
/*
 * RSS in KiB and thread count of the calling process, from @status_fd (an
 * open /proc/self/status: a sandboxed host opens it before Landlock shuts
 * the file system) or, with -1, from /proc/self/status opened now.
 */
void process_self_stats(int status_fd, guint64 *ret_rss_kib, guint *ret_threads);
/* worker.c: a JSON array of this process's running workers (the host's inspect). */
char *worker_inspect_all(void);
