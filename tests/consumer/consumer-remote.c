/* SPDX-License-Identifier: MIT */
/*
 * A downstream program built only from libmeshremote's installed headers
 * and .pc file: a channel in one process, a message with an fd through it.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <meshremote/meshremote.h>

int main(void)
{
	g_autoptr(MeshSender) sender = NULL;
	g_autoptr(MeshReceiver) receiver = NULL;
	g_autoptr(GError) error = NULL;
	int pipefd[2];

	mesh_channel_new(NULL, &sender, &receiver);
	if (pipe(pipefd) < 0)
		return 1;
	MeshMessage *msg = mesh_message_new("ping", 4);
	mesh_message_add_fd_take(msg, pipefd[1]);
	mesh_sender_send_message(sender, msg);

	g_autoptr(MeshMessage) got = NULL;
	if (!mesh_receiver_recv_message(receiver, 0, &got, &error)) {
		fprintf(stderr, "consumer-remote: %s\n", error->message);
		return 1;
	}
	int fd = mesh_message_steal_fd(got, 0);
	if (fd < 0 || write(fd, "x", 1) != 1)
		return 1;
	close(fd);
	size_t size;
	const uint8_t *data = mesh_message_get_data(got, &size);
	printf("consumer-remote: got \"%.*s\" with an fd\n", (int)size, (const char *)data);
	close(pipefd[0]);
	return 0;
}
