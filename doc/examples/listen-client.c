/* SPDX-License-Identifier: MIT */
/*
 * An unrelated client of listen-service.c: it joins the service's mesh by
 * its socket path, sends a text with a sender for the answer, prints the
 * answer and disconnects.
 *
 *   cc listen-client.c $(pkg-config --cflags --libs libmeshprocess) -o listen-client
 *   ./listen-client /run/user/$UID/upper.sock "hello"
 */
#include <stdio.h>
#include <string.h>

#include <meshprocess/meshprocess.h>

int main(int argc, char **argv)
{
	g_autoptr(GError) error = NULL;

	if (argc != 3) {
		fprintf(stderr, "usage: %s SOCKET TEXT\n", argv[0]);
		return 2;
	}
	g_autoptr(MeshSender) service = NULL;
	MeshConnection *conn = mesh_connect(argv[1], 10 * G_USEC_PER_SEC, &service, &error);
	if (!conn) {
		fprintf(stderr, "connect: %s\n", error->message);
		return 1;
	}

	/* The request carries the sending end of a channel for the answer. */
	MeshSender *reply;
	g_autoptr(MeshReceiver) answers = NULL;
	mesh_channel_new(NULL, &reply, &answers);
	MeshMessage *request = mesh_message_new(argv[2], strlen(argv[2]));
	mesh_message_add_port_take(request, mesh_sender_into_port(reply));
	mesh_sender_send_message(service, request);

	g_autoptr(MeshMessage) answer = NULL;
	gboolean ok = mesh_receiver_recv_message(answers, 10 * G_USEC_PER_SEC, &answer, &error);
	if (ok) {
		size_t size;
		const uint8_t *text = mesh_message_get_data(answer, &size);
		printf("answer: %.*s\n", (int)size, (const char *)text);
	} else {
		fprintf(stderr, "answer: %s\n", error->message);
	}

	/* Release the channels, then deliver what is left and disconnect. */
	g_clear_pointer(&service, mesh_sender_free);
	g_clear_pointer(&answers, mesh_receiver_free);
	mesh_connection_shutdown(conn, 10 * G_USEC_PER_SEC);
	return ok ? 0 : 1;
}
