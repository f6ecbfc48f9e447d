/* SPDX-License-Identifier: MIT */
/*
 * Test builds only: the steps of a remote node's sink release, so that a
 * test can stop a thread at each and force every interleaving of a send
 * ending (remote_send_done()) with the node's failure (node_fail_remote()).
 *
 * node.c marks each step with SINK_STEP(). In the library it is nothing.
 * tests/test-sink-release.c compiles node.c again with
 * MESH_REMOTE_SINK_STEPS, and then it calls sink_step(), which the test
 * defines; the library's own copy of node.c is not linked into that test.
 */
#pragma once

#include "remote-private.h"

typedef enum {
	/* remote_send_done(), no lock: before the count of sends drops */
	SINK_STEP_SEND_DECREMENT,
	/* it dropped to 0: before release_pending is read */
	SINK_STEP_SEND_READ_FLAG,
	/* release_pending was set: before the lock and the exchange */
	SINK_STEP_SEND_LOCK,
	/* node_fail_remote(), remote->lock held: before release_pending is set */
	SINK_STEP_FAIL_SET_FLAG,
	/* remote->lock held, release_pending set: before the count is read */
	SINK_STEP_FAIL_READ_COUNT,
} SinkStep;

#ifdef MESH_REMOTE_SINK_STEPS
/* Defined by the test: called by the thread that reaches @step on @remote. */
void sink_step(MeshRemoteNode *remote, SinkStep step);
#define SINK_STEP(remote, step) sink_step(remote, step)
#else
#define SINK_STEP(remote, step) ((void)0)
#endif
