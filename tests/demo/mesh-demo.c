/* SPDX-License-Identifier: MIT */
/*
 * mesh-demo: libpal and libmeshpayload together, across two real processes.
 *
 * The parent spawns itself as a child with one end of a SOCK_SEQPACKET pair
 * on fd 3 (and nothing else), sends it a Request carrying a sealed memfd,
 * and prints the Reply, which carries a pipe back. Until libmeshprocess
 * lands, this is the project's demo (README).
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <meshpayload/meshpayload.h>
#include <pal/pal.h>

#include "demo.pb-c.h"

#define CHILD_FD 3
#define MAX_PACKET 4096

static _Noreturn void die(const char *what, int err)
{
	fprintf(stderr, "mesh-demo: %s: %s\n", what, strerror(err < 0 ? -err : err));
	exit(1);
}

/* Encodes @msg and sends it with its fds as one packet. */
static void send_message(int sock, ProtobufCMessage *msg)
{
	MeshPayloadResources *res = mesh_payload_resources_new();
	MeshPayloadError err;
	uint8_t *bytes;
	size_t size;
	int fds[8];
	size_t n_fds = mesh_payload_count_resources(msg);

	if (n_fds > 8)
		die("too many fds", E2BIG);
	int r = mesh_payload_encode_alloc(msg, &bytes, &size, res, &err);
	if (r < 0) {
		fprintf(stderr, "mesh-demo: %s\n", err.message);
		exit(1);
	}
	for (size_t i = 0; i < n_fds; i++)
		fds[i] = mesh_payload_resources_peek_fd(res, i);
	struct iovec iov = {bytes, size};
	ssize_t k = pal_send_with_fds(sock, &iov, 1, fds, n_fds, 0);
	if (k < 0)
		die("send", (int)k);
	mesh_payload_resources_free(res); /* the kernel holds its own references */
	free(bytes);
}

/* Receives one packet and decodes it as @desc. */
static ProtobufCMessage *receive_message(int sock, const ProtobufCMessageDescriptor *desc)
{
	uint8_t buf[MAX_PACKET];
	struct iovec iov = {buf, sizeof(buf)};
	PalFdArray *fds = pal_fd_array_new();
	MeshPayloadResources *res = mesh_payload_resources_new();
	MeshPayloadError err;
	ProtobufCMessage *msg;

	ssize_t n = pal_recv_with_fds(sock, &iov, 1, fds, 8, 0);
	if (n < 0)
		die("receive", (int)n);
	if (n == 0)
		die("receive", ECONNRESET);
	for (size_t i = 0; i < pal_fd_array_len(fds); i++)
		if (mesh_payload_resources_append_fd_take(res, pal_fd_array_get(fds, i)) >= 0)
			pal_fd_array_steal(fds, i);
	if (mesh_payload_decode(desc, buf, (size_t)n, res, NULL, &msg, &err) < 0) {
		fprintf(stderr, "mesh-demo: %s\n", err.message);
		exit(1);
	}
	pal_fd_array_free(fds);
	mesh_payload_resources_free(res);
	return msg;
}

static int count_fds(void)
{
	char path[64];
	int n = 0;
	for (int fd = 0; fd < 1024; fd++) {
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		n += access(path, F_OK) == 0;
	}
	return n;
}

static int run_child(void)
{
	Demo__Request *req = (Demo__Request *)receive_message(CHILD_FD, &demo__request__descriptor);
	int open_fds = count_fds();
	size_t size;
	void *map;
	int r;

	if (!req->document)
		die("request without a document", EPROTO);
	r = pal_memfd_verify_seals(req->document->fd, &size);
	if (r < 0)
		die("document is not a sealed memfd", r);
	if (size == 0 || (r = pal_memfd_map(req->document->fd, size, false, &map)) < 0)
		die("map document", r ? r : EINVAL);

	char *upper = strdup(req->text);
	for (char *p = upper; *p; p++)
		*p = (char)toupper((unsigned char)*p);

	int pipefd[2];
	if (pipe2(pipefd, O_CLOEXEC) < 0)
		die("pipe", errno);
	dprintf(pipefd[1],
		"child %d: %d fds open (stdio, the socket, the memfd); "
		"document of %zu bytes starts \"%.20s\"",
		(int)getpid(), open_fds, size, (const char *)map);
	close(pipefd[1]);
	pal_memfd_unmap(map, size);

	Demo__Reply reply = DEMO__REPLY__INIT;
	reply.text = upper;
	reply.child_pid = (uint32_t)getpid();
	reply.document_size = size;
	reply.report = mesh_payload_fd_new_take(pipefd[0]);
	send_message(CHILD_FD, &reply.base);
	free(reply.report);
	free(upper);
	mesh_payload_message_free(&req->base);
	return 0;
}

static int run_parent(const char *self)
{
	static const char document[] =
		"Ports are capabilities: 128-bit ids from the OS random source.";
	const char *text = "hello from the parent";
	PalSpawn *spawn;
	PalChild *child;
	int sv[2], r;

	r = pal_socketpair(SOCK_SEQPACKET, sv);
	if (r < 0)
		die("socketpair", r);
	spawn = pal_spawn_new(self);
	if (!spawn)
		die("spawn builder", errno);
	pal_spawn_set_arg0(spawn, "mesh-demo-child");
	pal_spawn_add_arg(spawn, "--child");
	pal_spawn_dup_fd(spawn, sv[1], CHILD_FD);
	pal_spawn_set_stdin(spawn, PAL_STDIO_NULL, -1);
	pal_spawn_set_parent_death_signal(spawn, SIGKILL);
	r = pal_spawn_run(spawn, &child);
	if (r < 0)
		die(pal_spawn_get_failed_step(spawn) ? pal_spawn_get_failed_step(spawn) : "spawn",
		    r);
	close(sv[1]);
	printf("parent %d spawned child %d (argv[0] mesh-demo-child, socket on fd %d)\n",
	       (int)getpid(), (int)pal_child_get_pid(child), CHILD_FD);

	int memfd = pal_memfd_create("demo-document", sizeof(document) - 1);
	if (memfd < 0)
		die("memfd", memfd);
	if (write(memfd, document, sizeof(document) - 1) != (ssize_t)sizeof(document) - 1)
		die("write memfd", errno);
	r = pal_memfd_seal(memfd);
	if (r < 0)
		die("seal", r);

	Demo__Request req = DEMO__REQUEST__INIT;
	req.text = (char *)text;
	req.document = mesh_payload_fd_new_take(memfd);
	send_message(sv[0], &req.base);
	free(req.document);
	printf("parent -> child: \"%s\" + a sealed memfd of %zu bytes\n", text,
	       sizeof(document) - 1);

	Demo__Reply *reply = (Demo__Reply *)receive_message(sv[0], &demo__reply__descriptor);
	char report[512] = "";
	if (reply->report) {
		ssize_t n = read(reply->report->fd, report, sizeof(report) - 1);
		report[n > 0 ? n : 0] = '\0';
	}
	printf("child -> parent: \"%s\" (pid %u read %llu bytes) + a pipe\n", reply->text,
	       reply->child_pid, (unsigned long long)reply->document_size);
	printf("report from the pipe: %s\n", report);
	mesh_payload_message_free(&reply->base);

	int status;
	r = pal_child_wait(child, &status);
	if (r < 0)
		die("wait", r);
	if (WIFEXITED(status))
		printf("child exited with status %d\n", WEXITSTATUS(status));
	else
		printf("child killed by signal %d\n", WTERMSIG(status));
	pal_child_free(child);
	pal_spawn_free(spawn);
	close(sv[0]);
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "--child") == 0)
		return run_child();
	return run_parent("/proc/self/exe");
}
