/* SPDX-License-Identifier: MIT */
/* libmeshprocess on Windows: the coordinator (mesh-win32.c) and the host (host-win32.c). */
#pragma once

#include <windows.h>

#include <meshremote/mesh-alpc-node.h>

#include "invitation-private.h"

/*
 * How the mesh and its hosts make their ALPC node: a new mesh (@directory
 * NULL; @id and @secret NULL too) or a join (@directory consumed, also on
 * failure). The library's is mesh_alpc_node_new() / mesh_alpc_node_join().
 */
typedef MeshAlpcNode *(*ProcessAlpcNodeFunc)(HANDLE directory, const MeshNodeId *id,
					     const guint8 *secret, GError **error);

/*
 * TEST-ONLY HOOK: NULL in the library, always. A test program that links
 * libmeshprocess's objects itself (libmeshprocess/tests/win32) sets it,
 * first thing in main() in the parent and in its hosts, to make nodes on
 * the NtAlpc stand-in, because Wine has no ALPC. Not exported from the DLL.
 */
extern ProcessAlpcNodeFunc process_alpc_node_hook;

/* process_alpc_node_hook if set, else the real node. */
MeshAlpcNode *process_alpc_node_make(HANDLE directory, const MeshNodeId *id,
				     const guint8 *secret, GError **error);

/*
 * The host's join (host-win32.c): decodes @text, checks that the directory
 * handle it names is an open object directory of this process, joins with
 * process_alpc_node_make() and makes the host's end of the bootstrap pair.
 * Errors: MESH_PROCESS_ERROR_INVITATION for a bad invitation or handle,
 * the node's own ("joining the mesh: ...") for a failed join.
 */
gboolean process_win_host_join(const char *text, MeshAlpcNode **ret_alpc, MeshPort **ret_port,
			       char **ret_name, GError **error);
