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
