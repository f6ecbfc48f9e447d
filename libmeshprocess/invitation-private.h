/* SPDX-License-Identifier: MIT */
/*
 * The Windows host invitation (MESH_WORKER_INVITATION there): what a host
 * needs to join its parent's ALPC mesh. Encoding and decoding are plain C
 * and build on every platform, so their tests run on Linux as well as
 * under Wine; only Windows launches with them (mesh-win32.c, host-win32.c).
 *
 * Encoding: the standard base64 (with padding) of the protobuf message
 * mesh_process.WinInvitation (process.proto), which is upstream's
 * mesh_process Invitation under cfg(windows) byte for byte:
 *   1 node_name, 2 credentials { 1 address (InvitationAddress),
 *   2 mesh_secret (32 bytes) }, 3 directory_handle (varint).
 * Decoding refuses, with
 * MESH_PROCESS_ERROR_INVITATION and a message naming the field:
 * - a value longer than PROCESS_WIN_INVITATION_MAX characters, empty, or
 *   with a character outside the base64 alphabet or a bad length/padding;
 * - bytes that are not a WinInvitation;
 * - a node name that is empty, longer than PROCESS_WIN_NAME_MAX bytes,
 *   not UTF-8, or holding a control character;
 * - missing credentials, a missing address, an id that is not 16 bytes or is all zero, the
 *   host's node id equal to the parent's;
 * - a directory handle of 0, not a multiple of 4, or not below 2^32
 *   (kernel handle values are 32-bit significant and their two low bits
 *   are tag bits: a pseudo-handle such as -1 or a tagged value is not one
 *   a parent could have passed);
 * - a secret that is not exactly 32 bytes, or is all zero.
 */
#pragma once

#include "process-private.h"

/* The mesh secret's size (MESH_ALPC_SECRET_SIZE on Windows). */
#define PROCESS_WIN_SECRET_SIZE 32
/* Bounds on what is read from the environment. */
#define PROCESS_WIN_INVITATION_MAX 1024
#define PROCESS_WIN_NAME_MAX 256

typedef struct {
	char *node_name;
	MeshNodeId host_node;
	MeshPortId host_port;
	MeshNodeId parent_node;
	MeshPortId parent_port;
	guint64 directory; /* a HANDLE's value */
	guint8 secret[PROCESS_WIN_SECRET_SIZE];
} ProcessWinInvitation;

/* Returns: (transfer full): the environment value for @inv. */
char *process_win_invitation_encode(const ProcessWinInvitation *inv);

/*
 * Decodes @text into @ret (its node_name is then owned by @ret:
 * process_win_invitation_clear()). On failure @ret is untouched.
 */
gboolean process_win_invitation_decode(const char *text, ProcessWinInvitation *ret,
				       GError **error);

/* Frees what @inv owns and wipes the secret. NULL-safe. */
void process_win_invitation_clear(ProcessWinInvitation *inv);
