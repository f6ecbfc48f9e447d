/* SPDX-License-Identifier: MIT */
/* Helpers shared by the Unix transport tests and their child program. */
#pragma once

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>

#include "remote-private.h"

/*
 * The "chan" scenario: the ports of the first message, in this order. The
 * child receives commands on the first and sends on the three others.
 */
enum {
	UNIX_TEST_CHAN_COMMANDS, /* a receiver */
	UNIX_TEST_CHAN_REPLIES,  /* a sender: "p" replies */
	UNIX_TEST_CHAN_SIDE,     /* a sender: "c" side messages */
	UNIX_TEST_CHAN_OTHER,    /* a sender: "q" replies */
	UNIX_TEST_CHAN_PORTS,
};

/* The "rpc" scenario: what the child does with an Add request, by its a. */
enum {
	UNIX_TEST_RPC_FAIL = 1000000,
	UNIX_TEST_RPC_DROP,
	UNIX_TEST_RPC_HOLD,
	UNIX_TEST_RPC_DIE,
	UNIX_TEST_RPC_RELEASE,
};

/* A blocking receive on a raw port, for tests: a handler feeds a queue. */
typedef struct {
	GAsyncQueue *queue; /* MeshMessage *, or a RecvEnd sentinel */
	MeshPort *port;
} TestRecv;

typedef enum { RECV_END_CLOSED = 1, RECV_END_FAILED = 2 } RecvEnd;

static void test_recv_message(MeshPort *port, void *data, MeshMessage *msg, Deferred *d)
{
	g_async_queue_push(((TestRecv *)data)->queue, msg);
}

static void test_recv_close(MeshPort *port, void *data, Deferred *d)
{
	g_async_queue_push(((TestRecv *)data)->queue, GINT_TO_POINTER(RECV_END_CLOSED));
}

static void test_recv_fail(MeshPort *port, void *data, const GError *error, Deferred *d)
{
	g_message("test port failed: %s", error->message);
	g_async_queue_push(((TestRecv *)data)->queue, GINT_TO_POINTER(RECV_END_FAILED));
}

static const PortHandler test_recv_handler = {
	.message = test_recv_message,
	.close = test_recv_close,
	.fail = test_recv_fail,
};

static inline TestRecv *test_recv_new(MeshPort *port)
{
	TestRecv *r = g_new0(TestRecv, 1);
	r->queue = g_async_queue_new();
	r->port = port;
	port_set_handler(port, &test_recv_handler, r);
	return r;
}

/* Waits up to @timeout_ms; returns a message, or a RecvEnd cast to a pointer, or NULL. */
static inline MeshMessage *test_recv_wait(TestRecv *r, guint timeout_ms)
{
	return g_async_queue_timeout_pop(r->queue, (guint64)timeout_ms * 1000);
}

static inline gboolean test_recv_is_end(MeshMessage *msg, RecvEnd end)
{
	return msg == GINT_TO_POINTER(end);
}

static inline gboolean test_recv_is_message(gpointer item)
{
	return item && item != GINT_TO_POINTER(RECV_END_CLOSED) &&
	       item != GINT_TO_POINTER(RECV_END_FAILED);
}

static inline void test_recv_free(TestRecv *r)
{
	port_set_handler(r->port, NULL, NULL);
	gpointer item;
	while ((item = g_async_queue_try_pop(r->queue)))
		if (test_recv_is_message(item))
			mesh_message_free(item);
	g_async_queue_unref(r->queue);
	g_free(r);
}

static inline void uuid_to_hex(const MeshUuid *id, char out[33])
{
	for (int i = 0; i < 16; i++)
		snprintf(out + 2 * i, 3, "%02x", id->bytes[i]);
}

static inline gboolean uuid_from_hex(const char *hex, MeshUuid *id)
{
	if (strlen(hex) != 32)
		return FALSE;
	for (int i = 0; i < 16; i++) {
		unsigned v;
		if (sscanf(hex + 2 * i, "%2x", &v) != 1)
			return FALSE;
		id->bytes[i] = (uint8_t)v;
	}
	return TRUE;
}

/* The fds this process has open now (not counting the one that lists them). */
static inline int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n - 1;
}
