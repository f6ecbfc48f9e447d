/* SPDX-License-Identifier: MIT */
/*
 * A listener service: a mesh that unrelated processes join through a socket
 * path (see listen-client.c). Each client sends a text with a reply sender
 * in it; the service answers in upper case on that sender. It serves COUNT
 * clients, then stops listening and shuts down.
 *
 *   cc listen-service.c $(pkg-config --cflags --libs libmeshprocess) -o listen-service
 *   ./listen-service /run/user/$UID/upper.sock 2
 */
#include <stdio.h>
#include <stdlib.h>

#include <meshprocess/meshprocess.h>

int main(int argc, char **argv)
{
	g_autoptr(GError) error = NULL;

	if (argc != 3) {
		fprintf(stderr, "usage: %s SOCKET COUNT\n", argv[0]);
		return 2;
	}
	const char *path = argv[1];
	int count = atoi(argv[2]);

	g_autoptr(Mesh) mesh = mesh_new("upper-service", NULL, &error);
	g_autoptr(MeshReceiver) requests = NULL;
	if (!mesh || !mesh_listen(mesh, path, FALSE, &requests, &error)) {
		fprintf(stderr, "listen: %s\n", error->message);
		return 1;
	}
	printf("listening on %s\n", path);
	fflush(stdout);

	for (int served = 0; served < count;) {
		g_autoptr(MeshMessage) request = NULL;
		if (!mesh_receiver_recv_message(requests, -1, &request, &error)) {
			fprintf(stderr, "receive: %s\n", error->message);
			return 1;
		}
		MeshPort *port = mesh_message_steal_port(request, 0);
		if (!port)
			continue; /* not a request of ours */
		g_autoptr(MeshSender) reply = mesh_sender_from_port(port, NULL);
		size_t size;
		const char *text = (const char *)mesh_message_get_data(request, &size);
		char *upper = g_ascii_strup(text, (gssize)size);
		mesh_sender_send_message(reply, mesh_message_new(upper, strlen(upper)));
		printf("served \"%.*s\"\n", (int)size, text);
		fflush(stdout);
		g_free(upper);
		served++;
	}

	mesh_unlisten(mesh, path);
	if (!mesh_shutdown(mesh, 10 * G_USEC_PER_SEC, &error)) {
		fprintf(stderr, "shutdown: %s\n", error->message);
		return 1;
	}
	printf("served %d clients\n", count);
	return 0;
}
