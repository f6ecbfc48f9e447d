/* SPDX-License-Identifier: MIT */
/* The ALPC node's internals for its white-box tests. */
#pragma once

#include <meshremote/mesh-alpc-node.h>

#include "alpc-nt-private.h"

/* The largest ALPC message (data, after PORT_MESSAGE), as upstream's. */
#define ALPC_MAX_MESSAGE 0x1000u
/* The packet header ahead of every event (upstream's PacketHeader). */
#define ALPC_PACKET_HEADER_SIZE 8u
#define ALPC_MAX_SMALL_EVENT (ALPC_MAX_MESSAGE - ALPC_PACKET_HEADER_SIZE)
/* Handles one event carries (the stand-in's bound too). */
#define ALPC_MAX_HANDLES 64u
/* Outgoing connections a node waits on (WaitForMultipleObjects). */
#define ALPC_MAX_CLIENTS 60u

/*
 * alpc_node_new_full: mesh_alpc_node_new() (@directory NULL: a new
 * anonymous directory, @secret NULL: a new secret, @id NULL: a new id) or
 * mesh_alpc_node_join(), with the calls of @api instead of ntdll's.
 * Consumes @directory, also on failure.
 */
MeshAlpcNode *alpc_node_new_full(const MeshAlpcNtApi *api, HANDLE directory,
				      const MeshNodeId *id, const guint8 *secret,
				      GError **error);

/*
 * How long @a's connects wait for the server's answer (NtAlpcConnectPortEx's
 * timeout; 30 s unless set): then the remote node fails. For tests; call it
 * before anything makes @a connect.
 */
void alpc_node_set_connect_timeout(MeshAlpcNode *a, gint64 timeout_us);

/*
 * The name of @id's server port in the mesh's directory, as upstream's
 * node_path() makes it (format!("{:?}", NodeId)): "N-" and the id as a
 * big-endian 128-bit number in lowercase hex without leading zeros ("N-0"
 * for the zero id). Writes it NUL-terminated to @name; returns its length
 * in characters (3 to 34).
 */
#define ALPC_PORT_NAME_MAX 35
gsize alpc_port_name(const MeshNodeId *id, wchar_t name[ALPC_PORT_NAME_MAX]);
/* Fills @oa (with @us and @name, which it points to) to name @id's server port in @directory. */
void alpc_port_attributes(OBJECT_ATTRIBUTES *oa, UNICODE_STRING *us,
			  wchar_t name[ALPC_PORT_NAME_MAX], HANDLE directory, const MeshNodeId *id);

/* Constant-time equality of two secrets. */
gboolean alpc_secret_equal(const guint8 *a, const guint8 *b);

/* Sends one event (the concatenation of @iov) with @handles (borrowed) on
 * the client port @port, framed as the wire says (alpc-node.c). */
NTSTATUS alpc_send_event(const MeshAlpcNtApi *api, HANDLE port, const struct iovec *iov,
			 size_t n_iov, const MeshOsHandle *handles, size_t n_handles);
