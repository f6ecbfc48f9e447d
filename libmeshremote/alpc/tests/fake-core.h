/* SPDX-License-Identifier: MIT */
/* TEST DOUBLE of the core's side of the transport interface (fake-core.c). */
#pragma once

#include "../alpc-node-private.h"

typedef struct {
	MeshNodeId from;
	GBytes *data;
	MeshOsHandle *handles; /* owned: closed by fake_event_free() */
	gsize n_handles;
	gboolean zero_copy; /* came with a data_free (a large event's view) */
} FakeEvent;

/* The core sending an event: connects through the connector first. */
void fake_node_send(MeshNode *node, const MeshNodeId *to, const void *data, gsize size,
		    const MeshOsHandle *handles, gsize n_handles);
FakeEvent *fake_node_next_event(MeshNode *node, gint64 timeout_us);
/* "<32 hex id>: reason" of each failed remote, in order. */
char *fake_node_next_failure(MeshNode *node, gint64 timeout_us);
void fake_event_free(FakeEvent *e);
/*
 * Test hook: called by mesh_remote_node_connect() on the transport's
 * thread once the sink is set, before the events queued so far are sent
 * through it (so a test can send exactly then). One per node; NULL clears.
 */
typedef void (*FakeConnectHook)(MeshNode *node, const MeshNodeId *remote, void *data);
void fake_node_set_connect_hook(MeshNode *node, FakeConnectHook hook, void *data);
