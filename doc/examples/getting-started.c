/* SPDX-License-Identifier: MIT */
/*
 * Getting started with mesh: the parent launches a host process, sends it
 * work over a channel, reads the answers from another channel, and shuts
 * down. The same program is the host: mesh_try_run_host() comes first.
 *
 *   cc getting-started.c $(pkg-config --cflags --libs libmeshprocess) -o hello
 *   ./hello
 */
#include <stdio.h>
#include <string.h>

#include <meshprocess/meshprocess.h>

/* The host: upper-cases every line it gets until the parent closes. */
static gboolean host(MeshMessage *initial, gpointer data, GError **error)
{
	MeshReceiver *work = mesh_receiver_from_port(mesh_message_steal_port(initial, 0), NULL);
	MeshSender *answers = mesh_sender_from_port(mesh_message_steal_port(initial, 1), NULL);
	MeshMessage *msg;

	mesh_message_free(initial);
	while (mesh_receiver_recv_message(work, -1, &msg, NULL)) {
		size_t size;
		const uint8_t *text = mesh_message_get_data(msg, &size);
		char *upper = g_ascii_strup((const char *)text, (gssize)size);
		mesh_sender_send_message(answers, mesh_message_new(upper, strlen(upper)));
		g_free(upper);
		mesh_message_free(msg);
	}
	mesh_receiver_free(work);
	mesh_sender_free(answers);
	return TRUE; /* the host process exits 0 */
}

int main(void)
{
	GError *error = NULL;

	if (!mesh_try_run_host("hello", host, NULL, &error)) {
		fprintf(stderr, "host: %s\n", error->message);
		return 1;
	}

	/* The parent. Two untyped channels: work goes out, answers come back. */
	Mesh *mesh = mesh_new("hello", NULL, &error);
	MeshSender *work, *answers_in;
	MeshReceiver *work_out, *answers;
	mesh_channel_new(NULL, &work, &work_out);
	mesh_channel_new(NULL, &answers_in, &answers);

	/* The initial message carries the host's ends of both channels. */
	MeshMessage *initial = mesh_message_new(NULL, 0);
	mesh_message_add_port_take(initial, mesh_receiver_into_port(work_out));
	mesh_message_add_port_take(initial, mesh_sender_into_port(answers_in));
	MeshProcessConfig *config = mesh_process_config_new("upper");
	GPid pid = mesh_launch_host(mesh, config, initial, &error);
	mesh_process_config_free(config);
	if (!pid) {
		fprintf(stderr, "launch: %s\n", error->message);
		return 1;
	}
	printf("launched host \"upper\" as pid %d\n", (int)pid);

	const char *lines[] = {"hello", "mesh of processes"};
	for (int i = 0; i < 2; i++)
		mesh_sender_send_message(work, mesh_message_new(lines[i], strlen(lines[i])));
	for (int i = 0; i < 2; i++) {
		MeshMessage *msg;
		if (!mesh_receiver_recv_message(answers, 10 * G_USEC_PER_SEC, &msg, &error)) {
			fprintf(stderr, "answer: %s\n", error->message);
			return 1;
		}
		size_t size;
		const uint8_t *text = mesh_message_get_data(msg, &size);
		printf("%s -> %.*s\n", lines[i], (int)size, (const char *)text);
		mesh_message_free(msg);
	}

	/* Closing the work channel ends the host's loop; shutdown waits for it. */
	mesh_sender_free(work);
	mesh_receiver_free(answers);
	gboolean clean = mesh_shutdown(mesh, 10 * G_USEC_PER_SEC, &error);
	printf("shutdown: %s\n", clean ? "every host exited" : error->message);
	mesh_free(mesh);
	return clean ? 0 : 1;
}
