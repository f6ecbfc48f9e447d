/* SPDX-License-Identifier: MIT */
/*
 * An in-memory transport for tests: several MeshNodes in one process, every
 * pair connected through queues of real encoded events (bytes + duplicated
 * fds). The test decides when packets move (test_net_pump), may reorder
 * them, hold one node's traffic, or drop a node's handle to simulate a lost
 * connection.
 */
#pragma once

#include <check.h>
#ifdef _WIN32
#include <windows.h>
#else
#include <fcntl.h>
#include <unistd.h>
#endif

#include "os-private.h"
#include "remote-private.h"

#define TEST_NET_MAX 4

typedef struct TestNet TestNet;

typedef struct {
	TestNet *net;
	guint from, to;
} TestLink;

typedef struct {
	guint from, to;
	uint8_t *data;
	size_t size;
	MeshOsHandle *fds;
	size_t n_fds;
} TestPacket;

struct TestNet {
	guint n;
	MeshNode *nodes[TEST_NET_MAX];
	MeshRemoteNode *handles[TEST_NET_MAX][TEST_NET_MAX];
	TestLink links[TEST_NET_MAX][TEST_NET_MAX];
	GMutex lock;
	GPtrArray *packets;
	GRand *rand; /* non-NULL: deliver in random order */
	guint64 delivered; /* under lock */
	gboolean upstream; /* the nodes speak no C extension */
};

/* A duplicate the packet owns, as a transport keeps what it sends. */
static inline MeshOsHandle test_os_dup(MeshOsHandle h)
{
#ifdef G_OS_WIN32
	HANDLE dup = NULL;
	ck_assert(DuplicateHandle(GetCurrentProcess(), h, GetCurrentProcess(), &dup, 0, FALSE,
				  DUPLICATE_SAME_ACCESS));
	return dup;
#else
	int dup = fcntl(h, F_DUPFD_CLOEXEC, 3);
	ck_assert_int_ge(dup, 0);
	return dup;
#endif
}

static void test_link_send(void *user_data, const struct iovec *iov, size_t n_iov,
			   const MeshOsHandle *fds, size_t n_fds)
{
	TestLink *link = user_data;
	TestPacket *pk = g_new0(TestPacket, 1);

	pk->from = link->from;
	pk->to = link->to;
	for (size_t i = 0; i < n_iov; i++)
		pk->size += iov[i].iov_len;
	pk->data = g_malloc(pk->size ? pk->size : 1);
	for (size_t i = 0, off = 0; i < n_iov; i++) {
		memcpy(pk->data + off, iov[i].iov_base, iov[i].iov_len);
		off += iov[i].iov_len;
	}
	pk->fds = g_new(MeshOsHandle, n_fds ? n_fds : 1);
	for (size_t i = 0; i < n_fds; i++)
		pk->fds[i] = test_os_dup(fds[i]);
	pk->n_fds = n_fds;
	g_mutex_lock(&link->net->lock);
	g_ptr_array_add(link->net->packets, pk);
	g_mutex_unlock(&link->net->lock);
}

static const MeshEventSink test_link_sink = {
	.version = 0,
	.send = test_link_send,
};

static void test_packet_free(TestPacket *pk)
{
	for (size_t i = 0; i < pk->n_fds; i++)
		os_handle_close(pk->fds[i]);
	g_free(pk->fds);
	g_free(pk->data);
	g_free(pk);
}

static inline TestNet *test_net_new_full(guint n, guint32 seed, gboolean upstream)
{
	TestNet *net = g_new0(TestNet, 1);

	net->upstream = upstream;
	ck_assert_uint_le(n, TEST_NET_MAX);
	net->n = n;
	g_mutex_init(&net->lock);
	net->packets = g_ptr_array_new();
	if (seed)
		net->rand = g_rand_new_with_seed(seed);
	for (guint i = 0; i < n; i++)
		net->nodes[i] = mesh_node_new();
	for (guint i = 0; i < n; i++) {
		for (guint j = 0; j < n; j++) {
			if (i == j)
				continue;
			net->links[i][j] = (TestLink){net, i, j};
			net->handles[i][j] =
				mesh_node_add_remote(net->nodes[i], mesh_node_get_id(net->nodes[j]));
			ck_assert(mesh_remote_node_connect(net->handles[i][j], &test_link_sink,
							   &net->links[i][j]));
			/* C nodes, as the Unix transport's hello says (unless told otherwise). */
			mesh_remote_node_set_features(net->handles[i][j],
						      net->upstream ? 0 : MESH_REMOTE_FEATURE_PROXY_DONE);
		}
	}
	return net;
}

static inline TestNet *test_net_new(guint n, guint32 seed)
{
	return test_net_new_full(n, seed, FALSE);
}

/* Delivers one pending packet (random when reordering). FALSE when none. */
static inline gboolean test_net_step(TestNet *net)
{
	g_mutex_lock(&net->lock);
	if (net->packets->len == 0) {
		g_mutex_unlock(&net->lock);
		return FALSE;
	}
	guint index = net->rand ? g_rand_int_range(net->rand, 0, (gint32)net->packets->len) : 0;
	TestPacket *pk = g_ptr_array_steal_index(net->packets, index);
	net->delivered++; /* under the lock: two threads may step */
	g_mutex_unlock(&net->lock);

	mesh_node_receive_event(net->nodes[pk->to], mesh_node_get_id(net->nodes[pk->from]),
				pk->data, pk->size, pk->fds, pk->n_fds);
	pk->n_fds = 0; /* consumed */
	test_packet_free(pk);
	return TRUE;
}

/* Delivers packets until none is left (bounded). */
static inline void test_net_pump(TestNet *net)
{
	for (int i = 0; i < 1000000 && test_net_step(net); i++)
		;
}

/* Node @i loses its connection to node @j (and j to i). */
static inline void test_net_disconnect(TestNet *net, guint i, guint j)
{
	mesh_remote_node_unref(net->handles[i][j]);
	net->handles[i][j] = NULL;
	mesh_remote_node_unref(net->handles[j][i]);
	net->handles[j][i] = NULL;
}

/* Node @k crashes: its packets are thrown away and its connections lost. */
static inline void test_net_crash_node(TestNet *net, guint k);

/* Packets to or from node @k are thrown away (k "crashed"). */
static inline void test_net_discard_node(TestNet *net, guint k)
{
	g_mutex_lock(&net->lock);
	for (guint i = 0; i < net->packets->len;) {
		TestPacket *pk = net->packets->pdata[i];
		if (pk->to == k || pk->from == k) {
			g_ptr_array_remove_index(net->packets, i);
			test_packet_free(pk);
		} else {
			i++;
		}
	}
	g_mutex_unlock(&net->lock);
}

static inline void test_net_crash_node(TestNet *net, guint k)
{
	test_net_discard_node(net, k);
	for (guint j = 0; j < net->n; j++)
		if (j != k && net->handles[k][j])
			test_net_disconnect(net, k, j);
	test_net_discard_node(net, k);
}

static inline void test_net_free(TestNet *net)
{
	test_net_pump(net);
	for (guint i = 0; i < net->n; i++)
		for (guint j = 0; j < net->n; j++)
			if (net->handles[i][j])
				mesh_remote_node_unref(net->handles[i][j]);
	test_net_pump(net);
	for (guint i = 0; i < net->n; i++)
		mesh_node_unref(net->nodes[i]);
	for (guint i = 0; i < net->packets->len; i++)
		test_packet_free(net->packets->pdata[i]);
	g_ptr_array_free(net->packets, TRUE);
	if (net->rand)
		g_rand_free(net->rand);
	g_mutex_clear(&net->lock);
	g_free(net);
}

/* A port on node @i peered with a port on node @j. */
static inline void test_net_port_pair(TestNet *net, guint i, guint j, MeshPort **ret_i,
				      MeshPort **ret_j)
{
	MeshPortId a, b;
	mesh_uuid_generate(&a);
	mesh_uuid_generate(&b);
	*ret_i = mesh_node_add_port(net->nodes[i], &a, mesh_node_get_id(net->nodes[j]), &b);
	*ret_j = mesh_node_add_port(net->nodes[j], &b, mesh_node_get_id(net->nodes[i]), &a);
	ck_assert_ptr_nonnull(*ret_i);
	ck_assert_ptr_nonnull(*ret_j);
}
