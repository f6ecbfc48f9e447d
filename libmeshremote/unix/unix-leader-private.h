/* SPDX-License-Identifier: MIT */
/*
 * The Unix transport's upper layer: the leader and follower protocol
 * (unix-leader.c) and the listener (unix-listener.c), on top of the
 * transport (unix-node-private.h).
 */
#pragma once

#include "unix-node-private.h"

/* unix-leader.c */
ProtobufCMessage *unix_invitation_to_message(MeshInvitation *inv);
MeshInvitation *unix_invitation_from_message(ProtobufCMessage *msg, GError **error);
void unix_leader_start(MeshUnixNode *u);
/* Installs the node's connector; call before the node can receive anything. */
void unix_connector_install(MeshUnixNode *u);
/* The connector unix_connector_install() sets (@data: the MeshUnixNode), for tests that wrap it. */
void unix_connector_cb(MeshNode *node, MeshRemoteNode *remote, void *data);
/* Starts following: takes the two channel ends from an InitialMessage. */
void unix_follower_start(MeshUnixNode *u, MeshSender *to_leader, MeshReceiver *from_leader);
void unix_leader_stop(MeshUnixNode *u);
/* The pairs of followers the leader introduced (tests): only live ones are kept. */
guint unix_leader_count_pairs(MeshUnixNode *u);
/* Whether this node leads now (any thread). */
gboolean unix_leader_is_active(MeshUnixNode *u);
