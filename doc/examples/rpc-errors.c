/* SPDX-License-Identifier: MIT */
/*
 * A failable RPC with an error chain. A host process serves lookups; a key
 * it does not know fails the call with an error built in layers
 * (g_prefix_error()), and the caller receives that chain as one
 * MESH_ERROR_REMOTE error, its parts joined by ": ".
 *
 *   protoc-c -I. -I"$(pkg-config --variable=protodir libmeshpayload)" --c_out=. rpc-errors.proto
 *   cc rpc-errors.c rpc-errors.pb-c.c $(pkg-config --cflags --libs libmeshprocess) -o rpc-errors
 *   ./rpc-errors
 */
#include <stdio.h>

#include <meshprocess/meshprocess.h>

#include "rpc-errors.pb-c.h"

/* The innermost layer: a table. */
static const char *table_get(const char *key, GError **error)
{
	if (g_str_equal(key, "color"))
		return "blue";
	g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_NOENT, "no such key \"%s\"", key);
	return NULL;
}

/* The middle layer adds its context to the error. */
static const char *store_lookup(const char *key, GError **error)
{
	const char *value = table_get(key, error);
	if (!value)
		g_prefix_error(error, "store lookup: ");
	return value;
}

/* The host: serves lookups until the parent closes the channel. */
static gboolean host(MeshMessage *initial, gpointer data, GError **error)
{
	g_autoptr(MeshReceiver) requests =
		mesh_receiver_from_port(mesh_message_steal_port(initial, 0), NULL);
	MeshRpc *rpc;

	mesh_message_free(initial);
	while (mesh_receiver_recv_rpc(requests, &lookup__request__descriptor, -1, &rpc, NULL)) {
		Lookup__Request *request = (Lookup__Request *)mesh_rpc_get_input(rpc);
		g_autoptr(GError) lookup_error = NULL;
		const char *value = store_lookup(request->key, &lookup_error);
		if (!value) {
			g_prefix_error(&lookup_error, "config service: ");
			mesh_rpc_fail(rpc, lookup_error); /* frees rpc */
			continue;
		}
		Lookup__Reply *reply = (Lookup__Reply *)mesh_payload_message_new(&lookup__reply__descriptor);
		mesh_payload_message_set_string(&reply->base, "value", value);
		mesh_rpc_complete(rpc, &reply->base); /* takes reply, frees rpc */
	}
	return TRUE;
}

/* One call: prints the value or the error chain. */
static void lookup(MeshSender *service, const char *key)
{
	Lookup__Request *request =
		(Lookup__Request *)mesh_payload_message_new(&lookup__request__descriptor);
	mesh_payload_message_set_string(&request->base, "key", key);
	ProtobufCMessage *reply;
	g_autoptr(GError) error = NULL;

	if (mesh_rpc_call(service, &request->base, &lookup__reply__descriptor, 10 * G_USEC_PER_SEC,
			  &reply, &error)) {
		printf("%s = %s\n", key, ((Lookup__Reply *)reply)->value);
		mesh_payload_message_free(reply);
	} else if (g_error_matches(error, MESH_ERROR, MESH_ERROR_REMOTE)) {
		printf("%s: remote error: %s\n", key, error->message);
	} else {
		printf("%s: call failed: %s\n", key, error->message);
	}
}

int main(void)
{
	g_autoptr(GError) error = NULL;

	if (!mesh_try_run_host("lookup", host, NULL, &error)) {
		fprintf(stderr, "host: %s\n", error->message);
		return 1;
	}

	g_autoptr(Mesh) mesh = mesh_new("rpc-errors", NULL, &error);
	if (!mesh) {
		fprintf(stderr, "mesh: %s\n", error->message);
		return 1;
	}
	/* An rpc channel is an untyped channel. */
	MeshSender *service;
	MeshReceiver *requests;
	mesh_channel_new(NULL, &service, &requests);
	MeshMessage *initial = mesh_message_new(NULL, 0);
	mesh_message_add_port_take(initial, mesh_receiver_into_port(requests));
	g_autoptr(MeshProcessConfig) config = mesh_process_config_new("lookup");
	if (!mesh_launch_host(mesh, config, initial, &error)) {
		fprintf(stderr, "launch: %s\n", error->message);
		mesh_sender_free(service);
		return 1;
	}

	lookup(service, "color");
	lookup(service, "size");

	mesh_sender_free(service); /* ends the host's loop */
	if (!mesh_shutdown(mesh, 10 * G_USEC_PER_SEC, &error)) {
		fprintf(stderr, "shutdown: %s\n", error->message);
		return 1;
	}
	printf("shutdown: every host exited\n");
	return 0;
}
