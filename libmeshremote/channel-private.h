/* SPDX-License-Identifier: MIT */
/* Helpers shared by the channel files (channel.c, oneshot.c, rpc.c). */
#pragma once

#include "remote-private.h"

/* port_fail() from a port handler: after @d runs, when the port lock is free. */
void channel_fail_port_later(Deferred *d, MeshPort *port, const char *reason);

/*
 * Turns a message as a port handler got it into channel form: a raw message
 * (MESH_WRAP_NONE) or one from another node (MESH_WRAP_WIRE) has its framing
 * parsed into MESH_WRAP_FIELD1 or MESH_WRAP_PORT. Returns 0 or -EBADMSG.
 */
int channel_unwrap(MeshMessage *msg, GError **error);

/* Waits on @cond until @deadline (monotonic us), or forever if @deadline < 0. */
gboolean channel_cond_wait(GCond *cond, GMutex *lock, gint64 deadline);

/* The deadline for a timeout in us (-1 forever, 0 none). */
gint64 channel_deadline(gint64 timeout_us);
