/* SPDX-License-Identifier: MIT */
/*
 * Listening on a socket path and joining by path (upstream unix_listener.rs,
 * reference 2.7). The server accepts a SOCK_STREAM connection, invites a new
 * port, writes one frame {data_len u32, fd_count u32} + the encoded
 * Invitation with its socket attached, and closes the stream. It never reads
 * from a client and never blocks on one. The client reads one bounded frame
 * (4 KiB, 4 fds) and joins.
 */
#include <fcntl.h>
#include <glib-unix.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <pal/pal.h>

#include "unix-private.h"

#define FRAME_HEADER_SIZE 8
#define FRAME_MAX_DATA 4096
#define FRAME_MAX_FDS 4

struct MeshUnixListener {
	MeshUnixNode *owner;
	int fd;
	char *path;
	GSource *source;
	MeshUnixListenerFunc func;
	uid_t allowed_uid; /* (uid_t)-1: anyone */
	gpointer user_data;
	GDestroyNotify notify;
};

static void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Sends one invitation frame without blocking; FALSE if the client cannot take it. */
static gboolean send_invitation(int client, MeshInvitation *inv)
{
	ProtobufCMessage *msg = mesh_invitation_to_message(inv);
	MeshPayloadResources *res = mesh_payload_resources_new();
	uint8_t *data = NULL;
	size_t size = 0;
	gboolean ok = FALSE;

	if (mesh_payload_encode_alloc(msg, &data, &size, res, NULL) == 0 &&
	    size <= FRAME_MAX_DATA) {
		uint8_t header[FRAME_HEADER_SIZE];
		size_t n_fds = mesh_payload_resources_len(res);
		int fds[FRAME_MAX_FDS];
		for (size_t i = 0; i < n_fds && i < FRAME_MAX_FDS; i++)
			fds[i] = mesh_payload_resources_peek_fd(res, i);
		put_le32(header, (uint32_t)size);
		put_le32(header + 4, (uint32_t)n_fds);
		struct iovec iov[2] = {{header, sizeof(header)}, {data, size}};
		ssize_t r = pal_send_with_fds(client, iov, 2, fds, n_fds, MSG_DONTWAIT);
		ok = r == (ssize_t)(sizeof(header) + size);
	}
	g_free(data);
	mesh_payload_resources_free(res);
	mesh_payload_message_free(msg);
	return ok;
}

static gboolean listener_accept_cb(gint fd, GIOCondition cond, gpointer data)
{
	MeshUnixListener *l = data;

	for (int i = 0; i < 16; i++) {
		int client = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (client < 0) {
			if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
				g_warning("mesh: accept on %s: %s", l->path, g_strerror(errno));
			break;
		}
		if (l->allowed_uid != (uid_t)-1) {
			struct ucred cred;
			socklen_t len = sizeof(cred);
			if (getsockopt(client, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 ||
			    cred.uid != l->allowed_uid) {
				g_message("mesh: a client of %s with another uid was refused",
					  l->path);
				close(client);
				continue;
			}
		}
		MeshPort *ours, *theirs;
		MeshInvitation *inv = NULL;
		GError *error = NULL;
		mesh_port_new_pair(&ours, &theirs);
		if (!mesh_unix_node_invite(l->owner, theirs, 0, &inv, &error)) {
			g_warning("mesh: cannot invite a client of %s: %s", l->path, error->message);
			g_error_free(error);
			mesh_port_close(ours);
		} else if (!send_invitation(client, inv)) {
			g_message("mesh: a client of %s could not take its invitation", l->path);
			mesh_port_close(ours);
		} else {
			l->func(ours, l->user_data);
		}
		close(client);
	}
	return G_SOURCE_CONTINUE;
}

static gboolean listener_attach_cb(gpointer data)
{
	MeshUnixListener *l = data;
	g_source_attach(l->source, l->owner->context);
	return G_SOURCE_REMOVE;
}

MeshUnixListener *mesh_unix_node_listen(MeshUnixNode *u, const char *path,
					MeshUnixListenerFunc func, gpointer user_data,
					GDestroyNotify notify, GError **error)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};

	if (!u->leader) {
		g_set_error(error, MESH_ERROR, MESH_ERROR_INVALID_ARGUMENT,
			    "only the leader node can listen");
		return NULL;
	}
	if (strlen(path) >= sizeof(addr.sun_path)) {
		g_set_error(error, MESH_ERROR, MESH_ERROR_INVALID_ARGUMENT,
			    "socket path too long: %s", path);
		return NULL;
	}
	strcpy(addr.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(fd, 128) < 0) {
		g_set_error(error, MESH_ERROR, MESH_ERROR_INVALID_ARGUMENT, "cannot listen on %s: %s",
			    path, g_strerror(errno));
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	MeshUnixListener *l = g_new0(MeshUnixListener, 1);
	l->owner = u;
	l->fd = fd;
	l->path = g_strdup(path);
	l->func = func;
	l->user_data = user_data;
	l->notify = notify;
	l->allowed_uid = (uid_t)-1;
	l->source = g_unix_fd_source_new(fd, G_IO_IN);
	g_source_set_callback(l->source, G_SOURCE_FUNC(listener_accept_cb), l, NULL);
	g_main_context_invoke(u->context, listener_attach_cb, l);
	return l;
}

static gboolean listener_detach_cb(gpointer data)
{
	g_source_destroy(((MeshUnixListener *)data)->source);
	return G_SOURCE_REMOVE;
}

void mesh_unix_listener_free(MeshUnixListener *l)
{
	if (!l)
		return;
	/* On the I/O context: no callback can be running once this returns. */
	unix_run_sync(l->owner, listener_detach_cb, l);
	g_source_unref(l->source);
	close(l->fd);
	unlink(l->path);
	if (l->notify)
		l->notify(l->user_data);
	g_free(l->path);
	g_free(l);
}

/* Reads one frame: its data and exactly fd_count fds. */
static gboolean read_frame(int sock, uint8_t **ret_data, size_t *ret_size, PalFdArray *fds,
			   GError **error)
{
	uint8_t header[FRAME_HEADER_SIZE];
	size_t got = 0, need = FRAME_HEADER_SIZE, data_len = 0, fd_count = 0;
	uint8_t *data = NULL;

	while (got < need) {
		struct iovec iov;
		if (got < FRAME_HEADER_SIZE) {
			iov = (struct iovec){header + got, FRAME_HEADER_SIZE - got};
		} else {
			iov = (struct iovec){data + (got - FRAME_HEADER_SIZE), need - got};
		}
		ssize_t r = pal_recv_with_fds(sock, &iov, 1, fds, FRAME_MAX_FDS, 0);
		if (r == 0) {
			g_set_error(error, MESH_ERROR, MESH_ERROR_CORRUPTION,
				    "the listener closed the connection early");
			goto fail;
		}
		if (r < 0) {
			if (r == -EAGAIN || r == -EWOULDBLOCK)
				g_set_error(error, MESH_ERROR, MESH_ERROR_TIMED_OUT,
					    "timed out waiting for the invitation");
			else if (r == -EPROTO)
				g_set_error(error, MESH_ERROR, MESH_ERROR_CORRUPTION,
					    "the listener sent too many fds");
			else
				g_set_error(error, MESH_ERROR, MESH_ERROR_CORRUPTION,
					    "cannot read the invitation: %s", g_strerror((int)-r));
			goto fail;
		}
		if (pal_fd_array_len(fds) > FRAME_MAX_FDS) {
			g_set_error(error, MESH_ERROR, MESH_ERROR_CORRUPTION,
				    "the listener sent too many fds");
			goto fail;
		}
		got += (size_t)r;
		if (got == FRAME_HEADER_SIZE && need == FRAME_HEADER_SIZE) {
			data_len = get_le32(header);
			fd_count = get_le32(header + 4);
			if (data_len > FRAME_MAX_DATA) {
				g_set_error(error, MESH_ERROR, MESH_ERROR_CORRUPTION,
					    "invitation of %zu bytes is too large", data_len);
				goto fail;
			}
			if (fd_count > FRAME_MAX_FDS) {
				g_set_error(error, MESH_ERROR, MESH_ERROR_CORRUPTION,
					    "invitation with %zu fds has too many", fd_count);
				goto fail;
			}
			need += data_len;
			data = g_malloc(data_len ? data_len : 1);
		}
	}
	if (pal_fd_array_len(fds) != fd_count) {
		g_set_error(error, MESH_ERROR, MESH_ERROR_CORRUPTION,
			    "invitation announces %zu fds but %zu came", fd_count,
			    pal_fd_array_len(fds));
		goto fail;
	}
	*ret_data = data;
	*ret_size = data_len;
	return TRUE;
fail:
	g_free(data);
	pal_fd_array_clear(fds);
	return FALSE;
}

MeshUnixNode *mesh_unix_node_join_by_path(const char *path, GMainContext *context,
					  gint64 timeout_us, MeshPort **ret_port, GError **error)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	MeshUnixNode *u = NULL;

	if (strlen(path) >= sizeof(addr.sun_path)) {
		g_set_error(error, MESH_ERROR, MESH_ERROR_INVALID_ARGUMENT,
			    "socket path too long: %s", path);
		return NULL;
	}
	strcpy(addr.sun_path, path);
	int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (sock < 0 || connect(sock, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		g_set_error(error, MESH_ERROR, MESH_ERROR_INVALID_ARGUMENT,
			    "cannot connect to %s: %s", path, g_strerror(errno));
		if (sock >= 0)
			close(sock);
		return NULL;
	}
	if (timeout_us >= 0) {
		struct timeval tv = {.tv_sec = timeout_us / G_USEC_PER_SEC,
				     .tv_usec = timeout_us % G_USEC_PER_SEC};
		setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	}

	PalFdArray *fds = pal_fd_array_new();
	uint8_t *data = NULL;
	size_t size = 0;
	gboolean ok = read_frame(sock, &data, &size, fds, error);
	close(sock);
	if (ok) {
		MeshPayloadResources *res = mesh_payload_resources_new();
		for (size_t i = 0; i < pal_fd_array_len(fds); i++)
			mesh_payload_resources_append_fd_take(res, pal_fd_array_steal(fds, i));
		ProtobufCMessage *msg = NULL;
		MeshPayloadError perr;
		if (mesh_payload_decode(&mesh_unix__invitation__descriptor, data, size, res, NULL,
					&msg, &perr) < 0) {
			g_set_error(error, MESH_ERROR, MESH_ERROR_CORRUPTION,
				    "cannot decode the invitation: %s", perr.message);
		} else {
			MeshInvitation *inv = mesh_invitation_from_message(msg, error);
			if (inv)
				u = mesh_unix_node_join(inv, context, timeout_us, ret_port, error);
		}
		mesh_payload_resources_free(res);
	}
	g_free(data);
	pal_fd_array_free(fds);
	return u;
}

void mesh_unix_listener_set_allowed_uid(MeshUnixListener *l, uid_t uid)
{
	l->allowed_uid = uid;
}
