/* SPDX-License-Identifier: MIT */
#pragma once

#include <meshprocess/meshprocess.h>

#include "process.pb-c.h"

MeshProcess__NodeId *process_node_id_new(const MeshUuid *id);
gboolean process_node_id_read(const MeshProcess__NodeId *n, MeshUuid *ret);
MeshProcess__Address *process_address_new(const MeshNodeId *node, const MeshPortId *port);
gboolean process_address_read(const MeshProcess__Address *a, MeshNodeId *ret_node,
			      MeshPortId *ret_port);
/* A heap typed message into a MeshMessage, or out of one. */
MeshMessage *process_message_take(ProtobufCMessage *msg);
ProtobufCMessage *process_message_into(MeshMessage *msg, const ProtobufCMessageDescriptor *desc,
				       GError **error);
MeshPayload__Port *process_port_field(MeshPort *port);
MeshPort *process_take_port_field(MeshPayload__Port *field);
/* A JSON string literal for @s, appended to @out. */
void process_json_string(GString *out, const char *s);
/* RSS in KiB and thread count of the calling process. */
void process_self_stats(guint64 *ret_rss_kib, guint *ret_threads);
