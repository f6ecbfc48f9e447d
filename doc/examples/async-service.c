/* SPDX-License-Identifier: MIT */
/*
 * A GMainLoop service with no thread of its own: it launches two workers,
 * makes concurrent asynchronous RPCs to them, relaunches a worker that
 * crashes (from its exit callback), inspects the mesh and shuts it down, and
 * its loop never blocks on any of it.
 *
 * A worker squares numbers; asked for a negative one it crashes (abort()),
 * as a buggy worker would.
 *
 *   protoc-c -I. -I"$(pkg-config --variable=protodir libmeshpayload)" --c_out=. async-service.proto
 *   cc async-service.c async-service.pb-c.c $(pkg-config --cflags --libs libmeshprocess) -o async-service
 *   ./async-service
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <meshprocess/meshprocess.h>

#include "async-service.pb-c.h"

#define N_CALLS 20

/* The worker: serves squares until the parent closes its channel. */
static gboolean worker(MeshMessage *initial, gpointer data, GError **error)
{
	g_autoptr(MeshReceiver) requests =
		mesh_receiver_from_port(mesh_message_steal_port(initial, 0), NULL);
	MeshRpc *rpc;

	mesh_message_free(initial);
	while (mesh_receiver_recv_rpc(requests, &square__request__descriptor, -1, &rpc, NULL)) {
		Square__Request *request = (Square__Request *)mesh_rpc_get_input(rpc);
		if (request->n < 0)
			abort(); /* the bug */
		Square__Reply *reply =
			(Square__Reply *)mesh_payload_message_new(&square__reply__descriptor);
		reply->square = (gint64)request->n * request->n;
		mesh_rpc_complete(rpc, &reply->base); /* takes reply, frees rpc */
	}
	return TRUE;
}

typedef struct {
	GMainLoop *loop;
	Mesh *mesh;
	MeshProcessConfig *config;
	MeshSender *workers[2]; /* the rpc senders; NULL while relaunching */
	guint pending; /* calls in flight */
	guint relaunched;
	/* Per worker slot and round (0: before the crash, 1: after): */
	guint answered[2][2], failed[2][2];
	gint64 sum[2][2];
} Service;

typedef struct {
	Service *s;
	guint worker, round;
} Call;

static void call_done(ProtobufCMessage *reply, const GError *error, gpointer data)
{
	Call *c = data;
	Service *s = c->s;

	if (reply) {
		s->sum[c->worker][c->round] += ((Square__Reply *)reply)->square;
		s->answered[c->worker][c->round]++;
		mesh_payload_message_free(reply);
	} else {
		/* The crashed worker's calls: each fails once, naming the host. */
		s->failed[c->worker][c->round]++;
	}
	if (--s->pending == 0 && s->relaunched)
		g_main_loop_quit(s->loop);
}

static void call(Service *s, guint worker, int n)
{
	Square__Request *request =
		(Square__Request *)mesh_payload_message_new(&square__request__descriptor);
	Call *c = g_new(Call, 1);

	request->n = n;
	*c = (Call){s, worker, s->relaunched ? 1 : 0};
	s->pending++;
	MeshRpcCall *handle = mesh_rpc_call_async(s->workers[worker], &request->base,
						  &square__reply__descriptor, 10 * G_USEC_PER_SEC,
						  NULL, call_done, c, g_free);
	mesh_rpc_call_unref(handle); /* not cancelled: the callback still runs */
}

/* Launches worker @i on a new channel. */
static gboolean launch(Service *s, guint i, GError **error)
{
	MeshSender *sender;
	MeshReceiver *requests;

	mesh_channel_new(NULL, &sender, &requests);
	MeshMessage *initial = mesh_message_new(NULL, 0);
	mesh_message_add_port_take(initial, mesh_receiver_into_port(requests));
	if (!mesh_launch_host(s->mesh, s->config, initial, error)) { /* takes initial */
		mesh_sender_free(sender);
		return FALSE;
	}
	s->workers[i] = sender;
	return TRUE;
}

/* A worker exited: a crash is relaunched, on the same config. */
static void worker_exited(Mesh *mesh, const char *name, GPid pid, const MeshHostExit *how,
			  gpointer data)
{
	Service *s = data;

	if (how->expected)
		return; /* stopped by the shutdown */
	printf("%s crashed (%s): relaunching\n", name, how->description);
	g_autoptr(GError) error = NULL;
	mesh_sender_free(s->workers[0]);
	s->workers[0] = NULL;
	if (!launch(s, 0, &error)) {
		fprintf(stderr, "relaunch: %s\n", error->message);
		exit(1);
	}
	s->relaunched++;
	/* The new worker serves. */
	for (int n = 1; n <= N_CALLS; n++)
		call(s, 0, n);
}

static void inspected(char *json, gpointer data)
{
	Service *s = data;

	/* Count the running hosts in the report. */
	guint running = 0;
	for (const char *p = json; (p = strstr(p, "\"state\":\"running\"")); p++)
		running++;
	g_free(json);
	printf("inspect: %u workers running\n", running);
	g_main_loop_quit(s->loop);
}

static void shut_down(Mesh *mesh, gboolean clean, const GError *error, gpointer data)
{
	Service *s = data;

	printf("shutdown: %s\n", clean ? "every host exited" : error->message);
	g_main_loop_quit(s->loop);
}

/* Ticks while everything else happens: the loop never blocks. */
static gboolean tick(gpointer data)
{
	(*(guint *)data)++;
	return G_SOURCE_CONTINUE;
}

int main(int argc, char **argv)
{
	g_autoptr(GError) error = NULL;

	if (!mesh_try_run_host("worker", worker, NULL, &error)) {
		fprintf(stderr, "worker: %s\n", error->message);
		return 1;
	}

	Service s = {.loop = g_main_loop_new(NULL, FALSE)};
	guint ticks = 0;
	guint ticker = g_timeout_add(1, tick, &ticks);
	/* The coordinator runs on this program's loop: no thread of ours. */
	s.mesh = mesh_new("async-service", g_main_context_default(), &error);
	if (!s.mesh) {
		fprintf(stderr, "mesh: %s\n", error->message);
		return 1;
	}
	s.config = mesh_process_config_new("worker");
	/* This program is the worker; by its path, so that it also runs under valgrind. */
	char *self = realpath(argv[0], NULL);
	mesh_process_config_set_program(s.config, self);
	free(self);
	mesh_process_config_set_exit_callback(s.config, NULL, worker_exited, &s, NULL);
	for (guint i = 0; i < 2; i++) {
		if (!launch(&s, i, &error)) {
			fprintf(stderr, "launch: %s\n", error->message);
			return 1;
		}
	}

	/* Round one: concurrent calls to both workers; worker 0 gets a bad one. */
	for (int n = 1; n <= N_CALLS; n++)
		call(&s, n % 2, n);
	call(&s, 0, -1);
	g_main_loop_run(s.loop); /* until the relaunched worker answered too */
	printf("worker 1 answered %u calls, sum of squares %" G_GINT64_FORMAT "\n",
	       s.answered[1][0], s.sum[1][0]);
	printf("worker 0's calls before its crash: %s\n",
	       s.failed[0][0] > 0 ? "some failed with it" : "none failed");
	printf("the relaunched worker answered %u calls, sum of squares %" G_GINT64_FORMAT "\n",
	       s.answered[0][1], s.sum[0][1]);

	mesh_inspect_async(s.mesh, 10 * G_USEC_PER_SEC, NULL, inspected, &s, NULL);
	g_main_loop_run(s.loop);

	for (guint i = 0; i < 2; i++)
		mesh_sender_free(s.workers[i]); /* ends each worker's loop */
	mesh_shutdown_async(s.mesh, 10 * G_USEC_PER_SEC, NULL, shut_down, &s, NULL);
	g_main_loop_run(s.loop);
	printf("the loop kept running: %s\n", ticks > 0 ? "yes" : "no");

	g_source_remove(ticker);
	mesh_free(s.mesh);
	mesh_process_config_free(s.config);
	g_main_loop_unref(s.loop);
	return 0;
}
