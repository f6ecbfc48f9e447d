/* SPDX-License-Identifier: MIT */
/*
 * Listening on a socket path and joining by path (upstream unix_listener.rs,
 * reference 2.7). The server accepts a SOCK_STREAM connection, invites a new
 * port, writes one frame {data_len u32, fd_count u32} + the encoded
 * Invitation with its socket attached, and hands the port to the listener's
 * function. It never reads a client's data and never blocks on one. The
 * client reads one bounded frame (4 KiB, 4 fds), closes the stream and
 * joins. A client the server refuses (its uid) gets a refusal frame
 * instead: fd_count FRAME_REFUSED, and data_len bytes of text saying why.
 *
 * Until the client closes its stream, the handshake is pending: the server
 * holds the stream and the connection made for the invited node. Pending
 * handshakes are bounded in number (the oldest is dropped for a new one)
 * and in time; one dropped or timed out has its stream closed and its
 * invited node's connection cut, so its port fails. A client that never
 * takes its invitation cannot pin the server's fds.
 */
#include <fcntl.h>
#include <glib-unix.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <pal/pal.h>

#include "unix-leader-private.h"

#define FRAME_HEADER_SIZE 8
#define FRAME_MAX_DATA 4096
#define FRAME_MAX_FDS 4
/* fd_count of a refusal frame: its data is the reason, text, no fds. */
#define FRAME_REFUSED 0xffffffffu
#define DEFAULT_HANDSHAKE_TIMEOUT_US (5 * G_USEC_PER_SEC)
#define DEFAULT_MAX_PENDING 64
#define LOG_INTERVAL_US G_USEC_PER_SEC

typedef struct Handshake Handshake;

struct MeshUnixListener {
	MeshUnixNode *owner;
	int fd;
	char *path;
	dev_t dev; /* the socket file this listener made, */
	ino_t ino; /* the only one it may unlink */
	GSource *source;
	MeshUnixListenerFunc func;
	uid_t allowed_uid; /* (uid_t)-1: anyone */
	gpointer user_data;
	GDestroyNotify notify;

	/* On the I/O context only. */
	GQueue pending;    /* Handshake *, oldest first */
	gint64 timeout_us; /* -1: none */
	guint max_pending;
	int reserve_fd;  /* given up to shed a client when out of fds */
	gint64 last_log; /* rate-limited reports of dropped clients */
	guint dropped;
};

struct Handshake {
	MeshUnixListener *l;
	int client;
	MeshNodeId joiner;
	GSource *watch;
	GSource *timer;
	GList link; /* in l->pending */
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
	ProtobufCMessage *msg = unix_invitation_to_message(inv);
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

/* Tells a refused client why, without blocking (a fresh stream has room), and closes it. */
static void send_refusal(int client, const char *why)
{
	uint8_t header[FRAME_HEADER_SIZE];
	size_t len = MIN(strlen(why), FRAME_MAX_DATA);
	put_le32(header, (uint32_t)len);
	put_le32(header + 4, FRAME_REFUSED);
	struct iovec iov[2] = {{header, sizeof(header)}, {(void *)why, len}};
	(void)pal_send_with_fds(client, iov, 2, NULL, 0, MSG_DONTWAIT);
	close(client);
}

/* Counts a dropped client (a peer fault); says so at most once a second, at debug level. */
static void report_dropped(MeshUnixListener *l, const char *why)
{
	gint64 now = g_get_monotonic_time();
	l->dropped++;
	if (l->last_log && now - l->last_log < LOG_INTERVAL_US)
		return;
	debug_log(NULL, "mesh: %s: %u client(s) dropped (last: %s)", l->path, l->dropped, why);
	l->dropped = 0;
	l->last_log = now;
}

/*
 * Ends a handshake. @why NULL: the client closed its stream, it is done.
 * Otherwise it failed, and its invited node's connection is cut if @cut.
 */
static void handshake_end_full(Handshake *h, const char *why, gboolean cut)
{
	MeshUnixListener *l = h->l;

	g_queue_unlink(&l->pending, &h->link);
	g_source_destroy(h->watch);
	g_source_unref(h->watch);
	if (h->timer) {
		g_source_destroy(h->timer);
		g_source_unref(h->timer);
	}
	unix_io_close_fd(l->owner->io, h->client);
	if (why && cut) {
		/* Its invitation may still sit unread in the client's socket: void it. */
		unix_node_cut(l->owner, &h->joiner, why);
		report_dropped(l, why);
	}
	g_free(h);
}

static void handshake_end(Handshake *h, const char *why)
{
	handshake_end_full(h, why, TRUE);
}

static gboolean handshake_client_cb(gint fd, GIOCondition cond, gpointer data)
{
	Handshake *h = data;
	char byte;

	ssize_t r = recv(fd, &byte, 1, MSG_DONTWAIT);
	if (r < 0 && (errno == EAGAIN || errno == EINTR))
		return G_SOURCE_CONTINUE;
	/* A client sends nothing: data is a protocol error; an error is its end. */
	handshake_end(h, r > 0 ? "the client wrote to the listener" : NULL);
	return G_SOURCE_REMOVE;
}

static gboolean handshake_timeout_cb(gpointer data)
{
	Handshake *h = data;
	handshake_end(h, "the client did not take its invitation in time");
	return G_SOURCE_REMOVE;
}

static void handshake_start(MeshUnixListener *l, int client, const MeshNodeId *joiner)
{
	Handshake *h = g_new0(Handshake, 1);
	h->l = l;
	h->client = client;
	h->joiner = *joiner;
	h->link.data = h;
	h->watch = g_unix_fd_source_new(client, G_IO_IN | G_IO_HUP | G_IO_ERR);
	g_source_set_callback(h->watch, G_SOURCE_FUNC(handshake_client_cb), h, NULL);
	unix_io_fd_attached(l->owner->io, client);
	g_source_attach(h->watch, l->owner->context);
	if (l->timeout_us >= 0) {
		h->timer = g_timeout_source_new((guint)MIN(l->timeout_us / 1000, G_MAXUINT));
		g_source_set_callback(h->timer, handshake_timeout_cb, h, NULL);
		g_source_attach(h->timer, l->owner->context);
	}
	g_queue_push_tail_link(&l->pending, &h->link);
}

/* Out of fds with nothing pending to drop: take the client and close it at once. */
static void shed_one(MeshUnixListener *l)
{
	if (l->reserve_fd >= 0) {
		close(l->reserve_fd);
		int client = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
		if (client >= 0)
			close(client);
		l->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	}
	report_dropped(l, "out of fds");
}

static gboolean listener_accept_cb(gint fd, GIOCondition cond, gpointer data)
{
	MeshUnixListener *l = data;

	for (int i = 0; i < 16; i++) {
		int client = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (client < 0) {
			if (errno == EMFILE || errno == ENFILE) {
				if (l->pending.head) {
					handshake_end(l->pending.head->data,
						      "out of fds: the oldest pending client dropped");
				} else {
					shed_one(l);
					if (l->reserve_fd < 0)
						break; /* no fd to shed with: later */
				}
				continue;
			}
			if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
				debug_log(NULL, "mesh: accept on %s: %s", l->path,
					  g_strerror(errno));
			break;
		}
		if (l->allowed_uid != (uid_t)-1) {
			struct ucred cred;
			socklen_t len = sizeof(cred);
			if (getsockopt(client, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 ||
			    cred.uid != l->allowed_uid) {
				report_dropped(l, "a client with another uid was refused");
				send_refusal(client, "its uid is not allowed");
				continue;
			}
		}
		/* Room for this one: the oldest pending handshake goes. */
		while (l->max_pending && l->pending.length >= l->max_pending)
			handshake_end(l->pending.head->data,
				      "too many pending clients: the oldest dropped");
		MeshPort *ours, *theirs;
		MeshInvitation *inv = NULL;
		MeshNodeId joiner;
		GError *error = NULL;
		mesh_port_new_pair(&ours, &theirs);
		if (!mesh_unix_node_invite(l->owner, theirs, 0, &inv, &error)) {
			/* Likely out of fds: the oldest pending client makes room for the next. */
			report_dropped(l, error->message);
			g_error_free(error);
			mesh_port_close(ours);
			close(client);
			if (l->pending.head)
				handshake_end(l->pending.head->data,
					      "out of fds: the oldest pending client dropped");
			continue;
		}
		mesh_invitation_get_address(inv, &joiner, NULL, NULL, NULL);
		if (!send_invitation(client, inv)) {
			unix_node_cut(l->owner, &joiner, "the client could not take its invitation");
			report_dropped(l, "the client could not take its invitation");
			mesh_port_close(ours);
			close(client);
			continue;
		}
		handshake_start(l, client, &joiner);
		l->func(ours, l->user_data);
	}
	return G_SOURCE_CONTINUE;
}

static gboolean listener_attach_cb(gpointer data)
{
	MeshUnixListener *l = data;
	unix_io_fd_attached(l->owner->io, l->fd);
	g_source_attach(l->source, l->owner->context);
	return G_SOURCE_REMOVE;
}

MeshUnixListener *mesh_unix_node_listen(MeshUnixNode *u, const char *path,
					MeshUnixListenerFunc func, gpointer user_data,
					GDestroyNotify notify, GError **error)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	struct stat st;

	g_return_val_if_fail(u && path && func, NULL);
	g_return_val_if_fail(error == NULL || *error == NULL, NULL);
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
	if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 ||
	    lstat(path, &st) < 0 || listen(fd, 128) < 0) {
		int e = errno;
		g_set_error(error, MESH_ERROR,
			    e == EADDRINUSE ? MESH_ERROR_ADDRESS_IN_USE : MESH_ERROR_INVALID_ARGUMENT,
			    "cannot listen on %s: %s", path, g_strerror(e));
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	MeshUnixListener *l = g_new0(MeshUnixListener, 1);
	l->owner = u;
	l->fd = fd;
	l->path = g_strdup(path);
	l->dev = st.st_dev;
	l->ino = st.st_ino;
	l->func = func;
	l->user_data = user_data;
	l->notify = notify;
	l->allowed_uid = (uid_t)-1;
	g_queue_init(&l->pending);
	l->timeout_us = DEFAULT_HANDSHAKE_TIMEOUT_US;
	l->max_pending = DEFAULT_MAX_PENDING;
	l->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	l->source = g_unix_fd_source_new(fd, G_IO_IN);
	g_source_set_callback(l->source, G_SOURCE_FUNC(listener_accept_cb), l, NULL);
	g_main_context_invoke(u->context, listener_attach_cb, l);
	return l;
}

static gboolean listener_detach_cb(gpointer data)
{
	MeshUnixListener *l = data;
	g_source_destroy(l->source);
	/* Their streams only: the node outlives us, and they may have joined. */
	while (l->pending.head)
		handshake_end_full(l->pending.head->data, "the listener was freed", FALSE);
	return G_SOURCE_REMOVE;
}

void mesh_unix_listener_free(MeshUnixListener *l)
{
	struct stat st;

	if (!l)
		return;
	/* On the I/O context: no callback can be running once this returns. */
	unix_run_sync(l->owner, listener_detach_cb, l);
	g_source_unref(l->source);
	unix_io_close_fd(l->owner->io, l->fd);
	if (l->reserve_fd >= 0)
		close(l->reserve_fd);
	/* Only our own socket file: another server may have taken the path since. */
	if (lstat(l->path, &st) == 0 && st.st_dev == l->dev && st.st_ino == l->ino)
		unlink(l->path);
	if (l->notify)
		l->notify(l->user_data);
	g_free(l->path);
	g_free(l);
}

typedef struct {
	MeshUnixListener *l;
	gint64 timeout_us;
	guint max_pending;
} LimitsReq;

static gboolean set_limits_cb(gpointer data)
{
	LimitsReq *r = data;
	r->l->timeout_us = r->timeout_us;
	r->l->max_pending = r->max_pending;
	/* Already pending: the new number applies at the next client. */
	return G_SOURCE_REMOVE;
}

void mesh_unix_listener_set_handshake_limits(MeshUnixListener *l, gint64 timeout_us,
					     guint max_pending)
{
	g_return_if_fail(l && max_pending > 0 && timeout_us >= -1);
	LimitsReq r = {l, timeout_us, max_pending};
	unix_run_sync(l->owner, set_limits_cb, &r);
}

/* Reads one frame: its data and exactly fd_count fds. */
static gboolean read_frame(int sock, uint8_t **ret_data, size_t *ret_size, PalFdArray *fds,
			   GError **error)
{
	uint8_t header[FRAME_HEADER_SIZE];
	size_t got = 0, need = FRAME_HEADER_SIZE, data_len = 0, fd_count = 0;
	uint8_t *data = NULL;
	gboolean refused = FALSE;

	while (got < need) {
		struct iovec iov;
		if (got < FRAME_HEADER_SIZE) {
			iov = (struct iovec){header + got, FRAME_HEADER_SIZE - got};
		} else {
			iov = (struct iovec){data + (got - FRAME_HEADER_SIZE), need - got};
		}
		ssize_t r = pal_recv_with_fds(sock, &iov, 1, fds, FRAME_MAX_FDS, 0);
		if (r == 0 && refused) {
			break; /* its reason is cut short: say what came */
		}
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
			if (fd_count == FRAME_REFUSED && data_len <= FRAME_MAX_DATA) {
				refused = TRUE;
				fd_count = 0;
			}
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
	if (refused) {
		size_t len = got > FRAME_HEADER_SIZE ? got - FRAME_HEADER_SIZE : 0;
		char *why = g_utf8_make_valid((const char *)(data ? data : (uint8_t *)""),
					      (gssize)len);
		g_set_error(error, MESH_ERROR, MESH_ERROR_PERMISSION_DENIED,
			    "the listener refused this client: %s", why);
		g_free(why);
		goto fail;
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

	g_return_val_if_fail(path && ret_port, NULL);
	g_return_val_if_fail(error == NULL || *error == NULL, NULL);
	if (!timeout_check(timeout_us, G_STRFUNC, error))
		return NULL;
	if (strlen(path) >= sizeof(addr.sun_path)) {
		g_set_error(error, MESH_ERROR, MESH_ERROR_INVALID_ARGUMENT,
			    "socket path too long: %s", path);
		return NULL;
	}
	strcpy(addr.sun_path, path);
	int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (sock < 0 || connect(sock, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		int e = errno;
		if (e == ENOENT || e == ECONNREFUSED)
			/* Not up (yet): no socket file, or nobody accepts behind it. */
			g_set_error(error, MESH_ERROR, MESH_ERROR_UNAVAILABLE,
				    "cannot connect to %s: nothing listens there yet (%s)", path,
				    g_strerror(e));
		else if (e == EACCES || e == EPERM)
			g_set_error(error, MESH_ERROR, MESH_ERROR_PERMISSION_DENIED,
				    "the listener on %s refused this client: %s", path,
				    g_strerror(e));
		else
			g_set_error(error, MESH_ERROR, MESH_ERROR_INVALID_ARGUMENT,
				    "cannot connect to %s: %s", path, g_strerror(e));
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
			MeshInvitation *inv = unix_invitation_from_message(msg, error);
			if (inv)
				u = mesh_unix_node_join(inv, context, timeout_us, ret_port, error);
		}
		mesh_payload_resources_free(res);
	}
	g_free(data);
	pal_fd_array_free(fds);
	return u;
}

typedef struct {
	MeshUnixListener *l;
	uid_t uid;
} UidReq;

static gboolean set_uid_cb(gpointer data)
{
	UidReq *r = data;
	r->l->allowed_uid = r->uid;
	return G_SOURCE_REMOVE;
}

void mesh_unix_listener_set_allowed_uid(MeshUnixListener *l, uid_t uid)
{
	g_return_if_fail(l);
	UidReq r = {l, uid};
	unix_run_sync(l->owner, set_uid_cb, &r); /* read by the accept callback */
}
