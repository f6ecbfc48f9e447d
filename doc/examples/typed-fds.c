/* SPDX-License-Identifier: MIT */
/*
 * Typed messages that carry fds. The parent sends a host process files (as
 * fds, in typed.File messages); the host counts their lines and answers
 * with a typed.Count message that carries the read end of a pipe it wrote a
 * summary into. Messages are built with mesh_payload_message_new() and the
 * copying setters: a sent message owns its strings and fds.
 *
 *   protoc-c -I. -I"$(pkg-config --variable=protodir libmeshpayload)" --c_out=. typed-fds.proto
 *   cc typed-fds.c typed-fds.pb-c.c $(pkg-config --cflags --libs libmeshprocess) -o typed-fds
 *   ./typed-fds
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memfd_create(), pipe2() */
#endif
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <meshprocess/meshprocess.h>

#include "typed-fds.pb-c.h"

/* The host: answers each File with a Count until the parent closes. */
static gboolean host(MeshMessage *initial, gpointer data, GError **error)
{
	g_autoptr(MeshReceiver) files =
		mesh_receiver_from_port(mesh_message_steal_port(initial, 0), &typed__file__descriptor);
	g_autoptr(MeshSender) counts =
		mesh_sender_from_port(mesh_message_steal_port(initial, 1), &typed__count__descriptor);
	ProtobufCMessage *msg;

	mesh_message_free(initial);
	while (mesh_receiver_recv(files, -1, &msg, NULL)) {
		Typed__File *file = (Typed__File *)msg;
		char buf[4096];
		ssize_t n;
		off_t offset = 0;
		guint lines = 0;
		while ((n = pread(file->fd->fd, buf, sizeof(buf), offset)) > 0) {
			for (ssize_t i = 0; i < n; i++)
				lines += buf[i] == '\n';
			offset += n;
		}

		int pipefd[2];
		if (pipe2(pipefd, O_CLOEXEC) < 0) {
			g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(errno), "pipe: %s",
				    g_strerror(errno));
			mesh_payload_message_free(msg);
			return FALSE;
		}
		char *summary = g_strdup_printf("%s has %u lines\n", file->name, lines);
		if (write(pipefd[1], summary, strlen(summary)) < 0)
			perror("write");
		close(pipefd[1]);
		g_free(summary);

		Typed__Count *count =
			(Typed__Count *)mesh_payload_message_new(&typed__count__descriptor);
		mesh_payload_message_set_string(&count->base, "name", file->name);
		count->lines = lines;
		count->summary = mesh_payload_fd_new_take(pipefd[0]); /* the message owns it */
		mesh_sender_send(counts, &count->base);               /* and counts owns that */
		mesh_payload_message_free(msg); /* closes the file's fd */
	}
	return TRUE;
}

/* A memory file holding @text (it stands in for any file). */
static int text_file(const char *name, const char *text)
{
	int fd = memfd_create(name, MFD_CLOEXEC);
	if (fd >= 0 && write(fd, text, strlen(text)) != (ssize_t)strlen(text)) {
		close(fd);
		return -1;
	}
	return fd;
}

int main(void)
{
	g_autoptr(GError) error = NULL;

	if (!mesh_try_run_host("typed", host, NULL, &error)) {
		fprintf(stderr, "host: %s\n", error->message);
		return 1;
	}

	g_autoptr(Mesh) mesh = mesh_new("typed-fds", NULL, &error);
	if (!mesh) {
		fprintf(stderr, "mesh: %s\n", error->message);
		return 1;
	}
	MeshSender *files, *counts_in;
	MeshReceiver *files_out, *counts_out;
	mesh_channel_new(&typed__file__descriptor, &files, &files_out);
	mesh_channel_new(&typed__count__descriptor, &counts_in, &counts_out);
	g_autoptr(MeshSender) files_sender = files;
	g_autoptr(MeshReceiver) counts = counts_out;

	MeshMessage *initial = mesh_message_new(NULL, 0);
	mesh_message_add_port_take(initial, mesh_receiver_into_port(files_out));
	mesh_message_add_port_take(initial, mesh_sender_into_port(counts_in));
	g_autoptr(MeshProcessConfig) config = mesh_process_config_new("counter");
	if (!mesh_launch_host(mesh, config, initial, &error)) {
		fprintf(stderr, "launch: %s\n", error->message);
		return 1;
	}

	const char *names[] = {"poem.txt", "empty.txt"};
	const char *texts[] = {"one\ntwo\nthree\n", ""};
	for (int i = 0; i < 2; i++) {
		int fd = text_file(names[i], texts[i]);
		if (fd < 0) {
			perror("memfd");
			return 1;
		}
		Typed__File *file = (Typed__File *)mesh_payload_message_new(&typed__file__descriptor);
		mesh_payload_message_set_string(&file->base, "name", names[i]);
		file->fd = mesh_payload_fd_new_take(fd);
		mesh_sender_send(files_sender, &file->base);
	}

	for (int i = 0; i < 2; i++) {
		ProtobufCMessage *msg;
		if (!mesh_receiver_recv(counts, 10 * G_USEC_PER_SEC, &msg, &error)) {
			fprintf(stderr, "count: %s\n", error->message);
			return 1;
		}
		Typed__Count *count = (Typed__Count *)msg;
		char summary[256] = "";
		ssize_t n = read(count->summary->fd, summary, sizeof(summary) - 1);
		summary[n > 0 ? n : 0] = '\0';
		printf("%s: %u lines; the host wrote: %s", count->name, count->lines, summary);
		mesh_payload_message_free(msg); /* closes the pipe */
	}

	/* Closing the files channel ends the host's loop. */
	g_clear_pointer(&files_sender, mesh_sender_free);
	if (!mesh_shutdown(mesh, 10 * G_USEC_PER_SEC, &error)) {
		fprintf(stderr, "shutdown: %s\n", error->message);
		return 1;
	}
	printf("shutdown: every host exited\n");
	return 0;
}
