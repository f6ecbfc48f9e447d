/* SPDX-License-Identifier: MIT */
/*
 * A sandboxed worker (doc/sandbox.md). The parent launches two workers in
 * libpal's default sandbox profile, with one read-only directory allowed:
 *
 *  - worker-1 counts the words of documents the parent sends it as fds
 *    (it cannot open them itself), reads a stop-word list from the allowed
 *    directory, and reports what its sandbox refuses: a file outside the
 *    rules, a network socket, running a program;
 *  - worker-2 tries a system call no mesh host needs: seccomp kills it, and
 *    the parent's exit callback and its failed channel name SIGSYS.
 *
 *   cc sandboxed-worker.c $(pkg-config --cflags --libs libmeshprocess) -o sandboxed-worker
 *   ./sandboxed-worker
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memfd_create() */
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <meshprocess/meshprocess.h>

static void send_text(MeshSender *s, const char *text)
{
	mesh_sender_send_message(s, mesh_message_new(text, strlen(text)));
}

/* The words of the fd's file that are not in @stop (a space-separated list). */
static guint count_words(int fd, const char *stop)
{
	GString *text = g_string_new(NULL);
	char buf[4096];
	ssize_t n;
	off_t at = 0;
	while ((n = pread(fd, buf, sizeof(buf), at)) > 0) {
		g_string_append_len(text, buf, n);
		at += n;
	}
	guint words = 0;
	char **tokens = g_strsplit_set(text->str, " \n\t", -1);
	for (char **t = tokens; *t; t++) {
		if (!**t)
			continue;
		char *padded = g_strdup_printf(" %s ", *t);
		if (!strstr(stop, padded))
			words++;
		g_free(padded);
	}
	g_strfreev(tokens);
	g_string_free(text, TRUE);
	return words;
}

/* The worker, in its sandbox since before it joined the mesh. */
static gboolean worker(MeshMessage *initial, gpointer data, GError **error)
{
	size_t size;
	const char *role = (const char *)mesh_message_get_data(initial, &size);
	g_autoptr(MeshReceiver) docs =
		mesh_receiver_from_port(mesh_message_steal_port(initial, 0), NULL);
	g_autoptr(MeshSender) out = mesh_sender_from_port(mesh_message_steal_port(initial, 1), NULL);

	if (size == 9 && memcmp(role, "misbehave", 9) == 0) {
		mesh_message_free(initial);
		send_text(out, "worker-2: calling swapoff(2)");
		/* The parent's go: it has our message before we die. */
		MeshMessage *go = NULL;
		mesh_receiver_recv_message(docs, -1, &go, NULL);
		mesh_message_free(go);
		syscall(SYS_swapoff, "/"); /* seccomp: SIGSYS */
		return TRUE;               /* not reached */
	}
	mesh_message_free(initial);

	/* The allowed directory (a Landlock rule) is readable. */
	char *path = g_build_filename(g_getenv("WORDS_DIR"), "stop-words.txt", NULL);
	char *stop_words = NULL;
	if (!g_file_get_contents(path, &stop_words, NULL, error))
		return FALSE;
	g_free(path);
	char *stop = g_strdup_printf(" %s ", g_strstrip(stop_words));

	/* What the sandbox refuses. */
	char *line;
	int fd = open("/etc/passwd", O_RDONLY | O_CLOEXEC);
	line = g_strdup_printf("worker-1: open /etc/passwd: %s", fd < 0 ? g_strerror(errno) : "ok");
	send_text(out, line);
	g_free(line);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	line = g_strdup_printf("worker-1: socket(AF_INET): %s", fd < 0 ? g_strerror(errno) : "ok");
	send_text(out, line);
	g_free(line);
	char *argv[] = {(char *)"/bin/true", NULL};
	execv(argv[0], argv);
	line = g_strdup_printf("worker-1: execv /bin/true: %s", g_strerror(errno));
	send_text(out, line);
	g_free(line);

	/* The work: documents arrive as fds. */
	MeshMessage *msg;
	while (mesh_receiver_recv_message(docs, -1, &msg, NULL)) {
		int doc = mesh_message_steal_fd(msg, 0);
		size_t name_len;
		const char *name = (const char *)mesh_message_get_data(msg, &name_len);
		line = g_strdup_printf("worker-1: %.*s: %u words", (int)name_len, name,
				       count_words(doc, stop));
		send_text(out, line);
		g_free(line);
		close(doc);
		mesh_message_free(msg);
	}
	g_free(stop);
	g_free(stop_words);
	return TRUE;
}

/* A memory file holding @text: a document the worker could not open by path. */
static int document(const char *text)
{
	int fd = memfd_create("doc", MFD_CLOEXEC);
	if (fd >= 0 && write(fd, text, strlen(text)) != (ssize_t)strlen(text)) {
		close(fd);
		return -1;
	}
	return fd;
}

static void print_exit(Mesh *mesh, const char *name, GPid pid, const MeshHostExit *exit,
		       gpointer data)
{
	if (exit->signaled)
		printf("%s exited: %s, %s\n", name, exit->signal_name ? exit->signal_name : "?",
		       exit->description);
	*(int *)data += 1;
}

static gboolean launch(Mesh *mesh, const char *name, const char *role, PalSandbox *sb,
		       const char *words_dir, int *exits, MeshSender **ret_docs,
		       MeshReceiver **ret_out, GError **error)
{
	MeshSender *docs, *out;
	MeshReceiver *docs_r, *out_r;
	mesh_channel_new(NULL, &docs, &docs_r);
	mesh_channel_new(NULL, &out, &out_r);
	MeshMessage *initial = mesh_message_new(role, strlen(role));
	mesh_message_add_port_take(initial, mesh_receiver_into_port(docs_r));
	mesh_message_add_port_take(initial, mesh_sender_into_port(out));

	g_autoptr(MeshProcessConfig) config = mesh_process_config_new(name);
	mesh_process_config_set_sandbox(config, sb); /* takes a ref */
	mesh_process_config_set_env(config, "WORDS_DIR", words_dir);
	mesh_process_config_set_exit_callback(config, NULL, print_exit, exits, NULL);
	if (!mesh_launch_host(mesh, config, initial, error)) {
		mesh_sender_free(docs);
		mesh_receiver_free(out_r);
		return FALSE;
	}
	*ret_docs = docs;
	*ret_out = out_r;
	return TRUE;
}

static void print_messages(MeshReceiver *r, guint n)
{
	for (guint i = 0; i < n; i++) {
		MeshMessage *msg = NULL;
		g_autoptr(GError) error = NULL;
		if (!mesh_receiver_recv_message(r, 10 * G_USEC_PER_SEC, &msg, &error)) {
			printf("channel failed: %s\n", error->message);
			return;
		}
		size_t size;
		const char *text = (const char *)mesh_message_get_data(msg, &size);
		printf("%.*s\n", (int)size, text);
		mesh_message_free(msg);
	}
}

int main(int argc, char **argv)
{
	g_autoptr(GError) error = NULL;

	/* A host: this returns only on error (it enters the sandbox, then works). */
	if (!mesh_try_run_host("sbx", worker, NULL, &error)) {
		fprintf(stderr, "worker: %s\n", error->message);
		return 1;
	}

	/*
	 * The allowed directory. Not under /tmp: the default profile gives
	 * each host a private, empty /tmp.
	 */
	g_autofree char *cwd = g_get_current_dir();
	char *words_dir = g_build_filename(cwd, "sandboxed-worker.XXXXXX", NULL);
	char *stop_path = NULL;
	if (!g_mkdtemp(words_dir)) {
		perror("mkdtemp");
		return 1;
	}
	stop_path = g_build_filename(words_dir, "stop-words.txt", NULL);
	g_file_set_contents(stop_path, "a the of and\n", -1, NULL);

	/* The profile: the default one, plus one read-only directory. */
	PalSandbox *sb = pal_sandbox_new();
	pal_sandbox_allow_path(sb, words_dir, PAL_SANDBOX_FS_READ);

	Mesh *mesh = mesh_new("sandboxed", NULL, &error);
	MeshSender *docs1 = NULL, *docs2 = NULL;
	MeshReceiver *out1 = NULL, *out2 = NULL;
	int exits = 0;
	int status = 1;
	if (!mesh || !launch(mesh, "worker-1", "count", sb, words_dir, &exits, &docs1, &out1,
			     &error) ||
	    !launch(mesh, "worker-2", "misbehave", sb, words_dir, &exits, &docs2, &out2, &error)) {
		fprintf(stderr, "sandboxed-worker: %s\n", error->message);
		goto out;
	}

	print_messages(out1, 3); /* what worker-1's sandbox refused */
	const char *texts[][2] = {
		{"poem.txt", "the owl and the pussy-cat went to sea\n"},
		{"list.txt", "a b c d\n"},
	};
	for (guint i = 0; i < G_N_ELEMENTS(texts); i++) {
		MeshMessage *msg = mesh_message_new(texts[i][0], strlen(texts[i][0]));
		mesh_message_add_fd_take(msg, document(texts[i][1]));
		mesh_sender_send_message(docs1, msg);
	}
	print_messages(out1, 2);

	/* worker-2: its one message, then its channel fails naming the signal. */
	print_messages(out2, 1);
	mesh_sender_send_message(docs2, mesh_message_new("go", 2));
	print_messages(out2, 1);
	while (exits < 1)
		g_main_context_iteration(NULL, TRUE); /* worker-2's exit callback */

	g_clear_pointer(&docs1, mesh_sender_free);
	if (mesh_shutdown(mesh, 10 * G_USEC_PER_SEC, &error)) {
		printf("shutdown: every host exited\n");
		status = 0;
	} else {
		fprintf(stderr, "shutdown: %s\n", error->message);
	}
out:
	mesh_sender_free(docs1);
	mesh_sender_free(docs2);
	mesh_receiver_free(out1);
	mesh_receiver_free(out2);
	mesh_free(mesh);
	pal_sandbox_unref(sb);
	unlink(stop_path);
	rmdir(words_dir);
	g_free(stop_path);
	g_free(words_dir);
	return status;
}
