/* SPDX-License-Identifier: MIT */
/* Internals shared by the Unix transport (unix-node.c) and its leader (unix-leader.c). */
#pragma once

#include "remote-private.h"
#include "unix-protocol.pb-c.h"

typedef struct Leader Leader;
typedef struct UnixIo UnixIo;
typedef struct UnixRx UnixRx;

struct MeshUnixNode {
	MeshNode *node;
	GMainContext *context;
	UnixIo *io; /* own-thread mode: the I/O thread; NULL on a caller's context */
	GMutex lock;
	GCond cond;
	GPtrArray *conns; /* UnixConn * (strong) */
	UnixRx *rx;       /* receive buffers, made by the first dispatch */

	/* Every node is a follower of a leader (the leader too, of itself). */
	MeshSender *to_leader;     /* LeaderRequest; NULL once shut down */
	MeshReceiver *from_leader; /* FollowerRequest */
	GHashTable *pending;       /* MeshNodeId * -> MeshRemoteNode * awaiting a socket */
	gboolean leader_stopped;   /* shut down: no more introductions */
	Leader *leader;            /* non-NULL on the leader */
	MeshPeerDescribeFunc describe;
	gpointer describe_data;
};

/* unix-io.c: the own I/O thread, which lends its context to blocked receivers. */
UnixIo *unix_io_start(GMainContext *context);
/* Returns: (transfer none): the hook to set on the node. */
NodeIoHook *unix_io_get_hook(UnixIo *io);
/* If the context is lent and nobody polls it, has the I/O thread take it back now. */
void unix_io_reclaim(UnixIo *io);
/* Ends lending; returns once the I/O thread owns its context again. */
void unix_io_disable_lending(UnixIo *io);
/* Ends the thread and drops the transport's reference. */
void unix_io_stop(UnixIo *io);

/* Runs @func(@data) on the I/O context and waits for it (or at once, there). */
void unix_run_sync(MeshUnixNode *u, GSourceFunc func, gpointer data);

void unix_rx_free(UnixRx *rx);
/* FALSE when MESH_UNIX_BATCH=0: no batch hello, no PACKET_BATCH either way. */
gboolean unix_batching_enabled(void);

/* unix-node.c: a transport that does not lead (it will follow a leader). */
MeshUnixNode *unix_node_new_follower(MeshNode *node, GMainContext *context);

/* unix-leader.c */
ProtobufCMessage *mesh_invitation_to_message(MeshInvitation *inv);
MeshInvitation *mesh_invitation_from_message(ProtobufCMessage *msg, GError **error);
void unix_leader_start(MeshUnixNode *u);
/* Installs the node's connector; call before the node can receive anything. */
void unix_connector_install(MeshUnixNode *u);
/* Starts following: takes the two channel ends from an InitialMessage. */
void unix_follower_start(MeshUnixNode *u, MeshSender *to_leader, MeshReceiver *from_leader);
void unix_leader_stop(MeshUnixNode *u);

/* Heap NodeId / PortId messages for the protocol (system allocator). */
MeshUnix__NodeId *unix_node_id_new(const MeshUuid *id);
MeshUnix__PortId *unix_port_id_new(const MeshUuid *id);
gboolean unix_uuid_read(const MeshUnix__Uuid *u, MeshUuid *ret);
