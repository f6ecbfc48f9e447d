/* SPDX-License-Identifier: MIT */
#include <stdio.h>
#include <stdlib.h>

#include "process-private.h"

G_DEFINE_QUARK(mesh-process-error-quark, mesh_process_error)

static MeshProcess__Uuid *uuid_new(const MeshUuid *id)
{
	MeshProcess__Uuid *u = g_malloc(sizeof(*u));
	mesh_process__uuid__init(u);
	u->value.data = g_malloc(16);
	memcpy(u->value.data, id->bytes, 16);
	u->value.len = 16;
	return u;
}

static gboolean uuid_read(const MeshProcess__Uuid *u, MeshUuid *ret)
{
	if (!u || u->value.len != 16)
		return FALSE;
	memcpy(ret->bytes, u->value.data, 16);
	return TRUE;
}

MeshProcess__NodeId *process_node_id_new(const MeshUuid *id)
{
	MeshProcess__NodeId *n = g_malloc(sizeof(*n));
	mesh_process__node_id__init(n);
	n->id = uuid_new(id);
	return n;
}

gboolean process_node_id_read(const MeshProcess__NodeId *n, MeshUuid *ret)
{
	return n && uuid_read(n->id, ret);
}

MeshProcess__Address *process_address_new(const MeshNodeId *node, const MeshPortId *port)
{
	MeshProcess__Address *a = g_malloc(sizeof(*a));
	mesh_process__address__init(a);
	a->node = process_node_id_new(node);
	a->port = g_malloc(sizeof(*a->port));
	mesh_process__port_id__init(a->port);
	a->port->id = uuid_new(port);
	return a;
}

gboolean process_address_read(const MeshProcess__Address *a, MeshNodeId *ret_node,
			      MeshPortId *ret_port)
{
	return a && process_node_id_read(a->node, ret_node) && a->port &&
	       uuid_read(a->port->id, ret_port);
}

void process_json_string(GString *out, const char *s)
{
	g_string_append_c(out, '"');
	for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
		switch (*p) {
		case '"':
			g_string_append(out, "\\\"");
			break;
		case '\\':
			g_string_append(out, "\\\\");
			break;
		case '\n':
			g_string_append(out, "\\n");
			break;
		default:
			if (*p < 0x20)
				g_string_append_printf(out, "\\u%04x", *p);
			else
				g_string_append_c(out, (char)*p);
		}
	}
	g_string_append_c(out, '"');
}
