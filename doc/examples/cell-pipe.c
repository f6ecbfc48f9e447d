/* SPDX-License-Identifier: MIT */
/*
 * A cell and a pipe across processes. The parent owns a settings value
 * (a MeshCellUpdater) and gives a host process a cell that follows it, and
 * the reading end of a pipe. It streams bytes through the pipe (the writer
 * never gets more than 64 KiB ahead of the host) and changes the settings
 * meanwhile; the host sees each new value, reads the stream to its end and
 * reports.
 *
 *   protoc-c -I. --c_out=. cell-pipe.proto
 *   cc cell-pipe.c cell-pipe.pb-c.c $(pkg-config --cflags --libs libmeshprocess) -o cell-pipe
 *   ./cell-pipe
 */
#include <stdio.h>
#include <string.h>

#include <meshprocess/meshprocess.h>

#include "cell-pipe.pb-c.h"

#define STREAM_BYTES (200 * 1024)

static ProtobufCMessage *settings_new(const char *mode, guint level)
{
	Cellpipe__Settings *s =
		(Cellpipe__Settings *)mesh_payload_message_new(&cellpipe__settings__descriptor);
	mesh_payload_message_set_string(&s->base, "mode", mode);
	s->level = level;
	return &s->base;
}

/* The host: ports 0, the cell and the pipe arrive on it; 1, the report goes there. */
static gboolean host(MeshMessage *initial, gpointer data, GError **error)
{
	g_autoptr(MeshReceiver) in = mesh_receiver_from_port(mesh_message_steal_port(initial, 0), NULL);
	g_autoptr(MeshSender) out = mesh_sender_from_port(mesh_message_steal_port(initial, 1), NULL);
	MeshMessage *msg;

	mesh_message_free(initial);
	if (!mesh_receiver_recv_message(in, -1, &msg, error))
		return FALSE;
	g_autoptr(MeshCell) settings = mesh_cell_from_message(msg, &cellpipe__settings__descriptor,
							      error);
	if (!settings || !mesh_receiver_recv_message(in, -1, &msg, error))
		return FALSE;
	g_autoptr(MeshReadPipe) stream = mesh_read_pipe_from_message(msg, error);
	if (!stream)
		return FALSE;

	/* Read to the end of the stream, looking at the settings as they change. */
	guint64 total = 0, sum = 0;
	guint changes = 0;
	uint8_t buf[4096];
	gssize n;
	while ((n = mesh_read_pipe_read(stream, buf, sizeof(buf), -1, error)) > 0) {
		for (gssize i = 0; i < n; i++)
			sum += buf[i];
		total += (guint64)n;
		if (mesh_cell_wait_next(settings, 0, NULL))
			changes++; /* a newer value came since we last looked */
	}
	if (n < 0)
		return FALSE;
	/* The writer is gone; the last settings may still be on their way. */
	Cellpipe__Settings *s = (Cellpipe__Settings *)mesh_cell_get(settings);
	while (s->level < 3 && mesh_cell_wait_next(settings, 10 * G_USEC_PER_SEC, NULL)) {
		mesh_payload_message_free(&s->base);
		s = (Cellpipe__Settings *)mesh_cell_get(settings);
	}
	char *report = g_strdup_printf("read %" G_GUINT64_FORMAT " bytes (sum %" G_GUINT64_FORMAT
				       "); settings now level %u, mode \"%s\"%s",
				       total, sum, s->level, s->mode,
				       changes ? "; saw them change while reading" : "");
	mesh_sender_send_message(out, mesh_message_new(report, strlen(report)));
	g_free(report);
	mesh_payload_message_free(&s->base);
	return TRUE;
}

int main(void)
{
	g_autoptr(GError) error = NULL;

	if (!mesh_try_run_host("cell-pipe", host, NULL, &error)) {
		fprintf(stderr, "host: %s\n", error->message);
		return 1;
	}
	g_autoptr(Mesh) mesh = mesh_new("cell-pipe", NULL, &error);
	if (!mesh) {
		fprintf(stderr, "mesh: %s\n", error->message);
		return 1;
	}
	MeshSender *to_host, *reports_in;
	MeshReceiver *to_host_out, *reports_out;
	mesh_channel_new(NULL, &to_host, &to_host_out);
	mesh_channel_new(NULL, &reports_in, &reports_out);
	g_autoptr(MeshSender) sender = to_host;
	g_autoptr(MeshReceiver) reports = reports_out;
	MeshMessage *initial = mesh_message_new(NULL, 0);
	mesh_message_add_port_take(initial, mesh_receiver_into_port(to_host_out));
	mesh_message_add_port_take(initial, mesh_sender_into_port(reports_in));
	g_autoptr(MeshProcessConfig) config = mesh_process_config_new("reader");
	if (!mesh_launch_host(mesh, config, initial, &error)) {
		fprintf(stderr, "launch: %s\n", error->message);
		return 1;
	}

	/* The settings: the host gets a cell that follows them. */
	MeshCellUpdater *updater_p;
	MeshCell *cell;
	mesh_cell_new(settings_new("slow", 1), &updater_p, &cell);
	g_autoptr(MeshCellUpdater) updater = updater_p;
	mesh_sender_send_message(sender, mesh_cell_into_message(cell));

	/* The stream: the host gets the reading end. */
	MeshReadPipe *reader;
	MeshWritePipe *writer;
	mesh_pipe_new(&reader, &writer);
	mesh_sender_send_message(sender, mesh_read_pipe_into_message(reader));

	static uint8_t chunk[STREAM_BYTES / 4];
	guint64 sum = 0;
	for (gsize i = 0; i < sizeof(chunk); i++) {
		chunk[i] = (uint8_t)(i * 31);
		sum += chunk[i];
	}
	for (guint level = 1; level <= 4; level++) {
		/* Blocks while the host is 64 KiB behind: the pipe's backpressure. */
		if (!mesh_write_pipe_write_all(writer, chunk, sizeof(chunk), 10 * G_USEC_PER_SEC,
					       &error)) {
			fprintf(stderr, "write: %s\n", error->message);
			return 1;
		}
		if (level < 3 &&
		    !mesh_cell_updater_set(updater, settings_new(level == 2 ? "fast" : "medium",
								 level + 1),
					   10 * G_USEC_PER_SEC, &error)) {
			fprintf(stderr, "set: %s\n", error->message);
			return 1;
		}
	}
	mesh_write_pipe_free(writer); /* the end of the stream */
	printf("sent %d bytes (sum %" G_GUINT64_FORMAT ")\n", STREAM_BYTES, sum * 4);

	MeshMessage *report;
	if (!mesh_receiver_recv_message(reports, 20 * G_USEC_PER_SEC, &report, &error)) {
		fprintf(stderr, "report: %s\n", error->message);
		return 1;
	}
	size_t size;
	const uint8_t *text = mesh_message_get_data(report, &size);
	printf("the host %.*s\n", (int)size, (const char *)text);
	mesh_message_free(report);

	g_clear_pointer(&sender, mesh_sender_free);
	if (!mesh_shutdown(mesh, 10 * G_USEC_PER_SEC, &error)) {
		fprintf(stderr, "shutdown: %s\n", error->message);
		return 1;
	}
	printf("shutdown: every host exited\n");
	return 0;
}
