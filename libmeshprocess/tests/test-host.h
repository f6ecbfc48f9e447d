/* SPDX-License-Identifier: MIT */
/*
 * Helpers shared by the tests whose program is also the host and whose
 * hosts take an initial message of a scenario name (its bytes) and two
 * ports: 0 the requests receiver, 1 the results sender (test-context.c,
 * test-lifecycle.c; messages of test-channel.proto).
 */
#pragma once

#include <check.h>
#include <string.h>

#include <meshprocess/meshprocess.h>

#include "test-channel.pb-c.h"

static G_GNUC_UNUSED void send_text(MeshSender *s, const char *text)
{
	mesh_sender_send_message(s, mesh_message_new(text, strlen(text)));
}

static G_GNUC_UNUSED char *message_text(MeshMessage *msg)
{
	size_t size;
	const uint8_t *data = mesh_message_get_data(msg, &size);
	return g_strndup((const char *)data, size);
}

static G_GNUC_UNUSED ProtobufCMessage *sum_new(guint32 v)
{
	Chantest__Sum *m = malloc(sizeof(*m));
	chantest__sum__init(m);
	m->v = v;
	return &m->base;
}

static G_GNUC_UNUSED ProtobufCMessage *add_new(guint32 a, guint32 b)
{
	Chantest__Add *m = malloc(sizeof(*m));
	chantest__add__init(m);
	m->a = a;
	m->b = b;
	return &m->base;
}

/* The parent's ends of a host's two channels. */
typedef struct {
	MeshSender *requests;
	MeshReceiver *results;
	GPid pid;
} Host;

/* Launches a host with @config running @scenario. */
static G_GNUC_UNUSED Host host_launch(Mesh *mesh, const MeshProcessConfig *config,
				      const char *scenario)
{
	MeshSender *qs, *rs;
	MeshReceiver *qr, *rr;
	GError *error = NULL;
	Host h = {0};

	mesh_channel_new(NULL, &qs, &qr);
	mesh_channel_new(NULL, &rs, &rr);
	MeshMessage *initial = mesh_message_new(scenario, strlen(scenario));
	mesh_message_add_port_take(initial, mesh_receiver_into_port(qr));
	mesh_message_add_port_take(initial, mesh_sender_into_port(rs));
	h.pid = mesh_launch_host(mesh, config, initial, &error);
	ck_assert_msg(h.pid > 0, "%s", error ? error->message : "");
	h.requests = qs;
	h.results = rr;
	return h;
}

static G_GNUC_UNUSED void host_close(Host *h)
{
	mesh_sender_free(h->requests);
	mesh_receiver_free(h->results);
	h->requests = NULL;
	h->results = NULL;
}

static G_GNUC_UNUSED void assert_text(MeshReceiver *r, gint64 timeout_us, const char *expected)
{
	MeshMessage *msg = NULL;
	GError *error = NULL;

	ck_assert_msg(mesh_receiver_recv_message(r, timeout_us, &msg, &error), "no message: %s",
		      error ? error->message : "");
	char *text = message_text(msg);
	ck_assert_str_eq(text, expected);
	g_free(text);
	mesh_message_free(msg);
}

/* An Add rpc to a "serve" host: a + b comes back. */
static G_GNUC_UNUSED void assert_rpc(Host *h, guint32 a, guint32 b, gint64 timeout_us)
{
	ProtobufCMessage *reply = NULL;
	GError *error = NULL;

	ck_assert_msg(mesh_rpc_call(h->requests, add_new(a, b), &chantest__sum__descriptor,
				    timeout_us, &reply, &error),
		      "rpc: %s", error ? error->message : "");
	ck_assert_uint_eq(((Chantest__Sum *)reply)->v, a + b);
	protobuf_c_message_free_unpacked(reply, NULL);
}
