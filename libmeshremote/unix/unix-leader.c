/* SPDX-License-Identifier: MIT */
/*
 * The leader and its followers (upstream unix_node.rs, reference 2.6):
 * invitations, joining, and introductions of nodes with no direct socket.
 *
 * Every node follows a leader through two channels: LeaderRequest up,
 * FollowerRequest down. The node made with mesh_unix_node_new() leads (and
 * follows itself); a node made by joining follows the inviter's leader.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <pal/pal.h>

#include "unix-leader-private.h"

typedef struct {
	MeshUnixNode *owner;
	MeshNodeId id;
	MeshReceiver *requests;   /* LeaderRequest from the follower */
	MeshSender *to_follower;  /* FollowerRequest */
} Follower;

struct Leader {
	GMutex lock;
	GHashTable *followers;  /* MeshNodeId * -> Follower * */
	GHashTable *introduced; /* "a:b" (a < b): pairs already given a socket */
	/*
	 * Handoff. Active: this node leads now. Not active: it accepted an
	 * offer and waits for the followers, or it resigned. An invitation
	 * made here holds @invite_lock throughout, and the handoff takes it, so
	 * a new follower is never left behind (lock order: invite_lock, lock).
	 */
	GMutex invite_lock;
	gboolean active;
	GSList *offers;         /* MeshReceiver * of LeadershipAccept: our offers */
	MeshReceiver *incoming; /* Followers, once this node accepted an offer */
};


struct MeshInvitation {
	MeshNodeId local_node;
	MeshPortId local_port;
	MeshNodeId remote_node;
	MeshPortId remote_port;
	int fd;
	guint extensions; /* the inviting C leader's hello flags; 0: none, or upstream */
};

/* Protocol helpers. */

static MeshUnix__Uuid *uuid_msg_new(const MeshUuid *id)
{
	MeshUnix__Uuid *u = g_malloc(sizeof(*u));
	mesh_unix__uuid__init(u);
	u->value.data = g_malloc(16);
	memcpy(u->value.data, id->bytes, 16);
	u->value.len = 16;
	return u;
}

MeshUnix__NodeId *unix_node_id_new(const MeshUuid *id)
{
	MeshUnix__NodeId *n = g_malloc(sizeof(*n));
	mesh_unix__node_id__init(n);
	n->id = uuid_msg_new(id);
	return n;
}

MeshUnix__PortId *unix_port_id_new(const MeshUuid *id)
{
	MeshUnix__PortId *p = g_malloc(sizeof(*p));
	mesh_unix__port_id__init(p);
	p->id = uuid_msg_new(id);
	return p;
}

gboolean unix_uuid_read(const MeshUnix__Uuid *u, MeshUuid *ret)
{
	if (!u || u->value.len != 16)
		return FALSE;
	memcpy(ret->bytes, u->value.data, 16);
	return TRUE;
}

static gboolean node_id_read(const MeshUnix__NodeId *n, MeshUuid *ret)
{
	return n && unix_uuid_read(n->id, ret);
}

static gboolean port_id_read(const MeshUnix__PortId *p, MeshUuid *ret)
{
	return p && unix_uuid_read(p->id, ret);
}

static MeshUnix__Address *address_new(const MeshNodeId *node, const MeshPortId *port)
{
	MeshUnix__Address *a = g_malloc(sizeof(*a));
	mesh_unix__address__init(a);
	a->node = unix_node_id_new(node);
	a->port = unix_port_id_new(port);
	return a;
}

/* Invitations. */

MeshInvitation *mesh_invitation_new_take(const MeshNodeId *local_node,
					 const MeshPortId *local_port,
					 const MeshNodeId *remote_node,
					 const MeshPortId *remote_port, int fd)
{
	if (!local_node || !local_port || !remote_node || !remote_port) {
		if (fd >= 0)
			close(fd); /* taken in all cases */
		g_return_val_if_fail(local_node && local_port && remote_node && remote_port,
				     NULL);
	}
	MeshInvitation *inv = g_new0(MeshInvitation, 1);
	inv->local_node = *local_node;
	inv->local_port = *local_port;
	inv->remote_node = *remote_node;
	inv->remote_port = *remote_port;
	inv->fd = fd;
	return inv;
}

void mesh_invitation_free(MeshInvitation *inv)
{
	if (!inv)
		return;
	if (inv->fd >= 0)
		close(inv->fd);
	g_free(inv);
}

guint mesh_invitation_get_extensions(const MeshInvitation *inv)
{
	g_return_val_if_fail(inv, 0);
	return inv->extensions;
}

void mesh_invitation_set_extensions(MeshInvitation *inv, guint extensions)
{
	g_return_if_fail(inv);
	inv->extensions = extensions;
}

int mesh_invitation_get_fd(const MeshInvitation *inv)
{
	g_return_val_if_fail(inv, -1);
	return inv->fd;
}

int mesh_invitation_steal_fd(MeshInvitation *inv)
{
	g_return_val_if_fail(inv, -1);
	int fd = inv->fd;
	inv->fd = -1;
	return fd;
}

void mesh_invitation_get_address(const MeshInvitation *inv, MeshNodeId *ret_local_node,
				 MeshPortId *ret_local_port, MeshNodeId *ret_remote_node,
				 MeshPortId *ret_remote_port)
{
	g_return_if_fail(inv);
	if (ret_local_node)
		*ret_local_node = inv->local_node;
	if (ret_local_port)
		*ret_local_port = inv->local_port;
	if (ret_remote_node)
		*ret_remote_node = inv->remote_node;
	if (ret_remote_port)
		*ret_remote_port = inv->remote_port;
}

ProtobufCMessage *unix_invitation_to_message(MeshInvitation *inv)
{
	MeshUnix__Invitation *m = g_malloc(sizeof(*m));
	mesh_unix__invitation__init(m);
	m->address = g_malloc(sizeof(*m->address));
	mesh_unix__invitation_address__init(m->address);
	m->address->local_addr = address_new(&inv->local_node, &inv->local_port);
	m->address->remote_addr = address_new(&inv->remote_node, &inv->remote_port);
	if (inv->fd >= 0)
		m->fd = mesh_payload_fd_new_take(mesh_invitation_steal_fd(inv));
	m->c_features = inv->extensions;
	mesh_invitation_free(inv);
	return &m->base;
}

MeshInvitation *unix_invitation_from_message(ProtobufCMessage *msg, GError **error)
{
	MeshUnix__Invitation *m = (MeshUnix__Invitation *)msg;
	MeshInvitation *inv = NULL;
	MeshNodeId ln, rn;
	MeshPortId lp, rp;

	if (msg->descriptor != &mesh_unix__invitation__descriptor || !m->address ||
	    !m->address->local_addr || !m->address->remote_addr || !m->fd ||
	    !node_id_read(m->address->local_addr->node, &ln) ||
	    !port_id_read(m->address->local_addr->port, &lp) ||
	    !node_id_read(m->address->remote_addr->node, &rn) ||
	    !port_id_read(m->address->remote_addr->port, &rp)) {
		g_set_error(error, MESH_ERROR, MESH_ERROR_CORRUPTION, "malformed invitation");
	} else {
		inv = mesh_invitation_new_take(&ln, &lp, &rn, &rp, mesh_payload_fd_steal(m->fd));
		inv->extensions = m->c_features;
	}
	mesh_payload_message_free(msg);
	return inv;
}

/* The follower side. */

/*
 * Fails @remote (a pending request's), unless a socket connected it
 * meanwhile: when both nodes of a pair ask for each other, the other's
 * introduction can connect ours between the making of the remote node and
 * the connector's call, whose request the leader then answers with no
 * socket (the pair has one). Consumes @remote.
 */
static void pending_fail(MeshUnixNode *u, MeshRemoteNode *remote, const char *reason)
{
	const MeshNodeId *id = mesh_remote_node_get_id(remote);

	if (unix_node_is_connected(u, id)) {
		debug_log(LOG_FIELDS("MESH_NODE", LOG_ID(mesh_node_get_id(u->node)), "MESH_PEER", LOG_ID(id)),
			  "mesh: node %s is connected already (%s)", LOG_ID(id), reason);
	} else {
		debug_log(LOG_FIELDS("MESH_NODE", LOG_ID(mesh_node_get_id(u->node)), "MESH_PEER", LOG_ID(id)),
			  "mesh: no connection to node %s: %s", LOG_ID(id), reason);
		mesh_remote_node_fail(remote, reason);
	}
	mesh_remote_node_unref(remote);
}

static void follower_handle(MeshUnixNode *u, MeshUnix__FollowerRequest *req)
{
	MeshNodeId id;
	MeshUnix__FollowerConnect *c = req->connect;

	if (req->request_case != MESH_UNIX__FOLLOWER_REQUEST__REQUEST_CONNECT ||
	    !node_id_read(c->node, &id)) {
		debug_log(LOG_FIELDS("MESH_NODE", LOG_ID(mesh_node_get_id(u->node))),
			  "mesh: malformed request from the leader ignored");
		return;
	}
	g_mutex_lock(&u->lock);
	MeshRemoteNode *pending = NULL;
	g_hash_table_steal_extended(u->pending, &id, NULL, (gpointer *)&pending);
	g_cond_broadcast(&u->cond); /* a shutdown waits for introductions */
	g_mutex_unlock(&u->lock);

	int fd = c->fd ? mesh_payload_fd_steal(c->fd) : -1;
	if (fd >= 0) {
		GError *error = NULL;
		/* Hellos only between C nodes, as the leader says. */
		if (!unix_node_connect_take(u, &id, fd, c->c_nodes, -1, &error)) {
			debug_log(LOG_FIELDS("MESH_NODE", LOG_ID(mesh_node_get_id(u->node)), "MESH_PEER", LOG_ID(&id)),
				  "mesh: introduction: %s", error->message);
			g_error_free(error);
		}
	} else if (pending) {
		pending_fail(u, pending,
			     "the leader gives no connection to it (unknown, gone or failed)");
		return;
	}
	mesh_remote_node_unref(pending);
}

static void from_leader_cb(MeshReceiver *r, gpointer data)
{
	MeshUnixNode *u = data;
	ProtobufCMessage *msg;
	GError *error = NULL;

	while (mesh_receiver_recv(r, 0, &msg, &error)) {
		follower_handle(u, (MeshUnix__FollowerRequest *)msg);
		mesh_payload_message_free(msg);
	}
	if (!g_error_matches(error, MESH_ERROR, MESH_ERROR_EMPTY)) {
		/* The leader is gone: nobody will answer the pending requests. */
		debug_log(LOG_FIELDS("MESH_NODE", LOG_ID(mesh_node_get_id(u->node))),
			  "mesh: the leader channel ended: %s", error->message);
		mesh_receiver_set_callback(r, NULL, NULL, NULL, NULL);
		g_mutex_lock(&u->lock);
		GHashTable *pending = u->pending;
		u->pending = g_hash_table_new(mesh_uuid_hash, mesh_uuid_equal);
		g_cond_broadcast(&u->cond);
		g_mutex_unlock(&u->lock);
		GHashTableIter it;
		gpointer value;
		g_hash_table_iter_init(&it, pending);
		while (g_hash_table_iter_next(&it, NULL, &value))
			pending_fail(u, value, "the leader is gone");
		g_hash_table_destroy(pending);
	}
	g_clear_error(&error);
}

static void send_leader_request(MeshUnixNode *u, MeshUnix__LeaderRequest *req)
{
	g_mutex_lock(&u->lock);
	MeshSender *s = u->to_leader ? mesh_sender_clone(u->to_leader) : NULL;
	g_mutex_unlock(&u->lock);
	if (s) {
		mesh_sender_send(s, &req->base);
		mesh_sender_free(s);
	} else {
		mesh_payload_message_free(&req->base);
	}
}

static MeshUnix__LeaderRequest *leader_connect_new(const MeshNodeId *id)
{
	MeshUnix__LeaderRequest *req = g_malloc(sizeof(*req));
	mesh_unix__leader_request__init(req);
	req->request_case = MESH_UNIX__LEADER_REQUEST__REQUEST_CONNECT;
	req->connect = g_malloc(sizeof(*req->connect));
	mesh_unix__leader_connect__init(req->connect);
	req->connect->node = unix_node_id_new(id);
	return req;
}

/*
 * The node's connector: ask the leader for a socket to a node we do not
 * know. It is installed before the node can receive anything; requests made
 * before the node follows a leader are sent when it starts following.
 */
void unix_connector_cb(MeshNode *node, MeshRemoteNode *remote, void *data)
{
	MeshUnixNode *u = data;
	const MeshNodeId *id = mesh_remote_node_get_id(remote);

	g_mutex_lock(&u->lock);
	gboolean known = g_hash_table_contains(u->pending, id);
	gboolean stopped = u->leader_stopped;
	gboolean up = u->to_leader != NULL;
	if (!known && !stopped)
		g_hash_table_insert(u->pending, (gpointer)id, remote);
	g_mutex_unlock(&u->lock);
	if (known || stopped) {
		if (stopped)
			mesh_remote_node_fail(remote, "mesh is shutting down");
		mesh_remote_node_unref(remote);
		return;
	}
	if (up)
		send_leader_request(u, leader_connect_new(id));
}

void unix_connector_install(MeshUnixNode *u)
{
	u->stop_roles = unix_leader_stop;
	mesh_node_set_connector(u->node, unix_connector_cb, u);
}

void unix_follower_start(MeshUnixNode *u, MeshSender *to_leader, MeshReceiver *from_leader)
{
	g_mutex_lock(&u->lock);
	u->to_leader = to_leader;
	u->from_leader = from_leader;
	/* Ask for what was needed before we followed anyone. */
	GPtrArray *early = g_ptr_array_new_with_free_func(g_free);
	GHashTableIter it;
	gpointer key;
	g_hash_table_iter_init(&it, u->pending);
	while (g_hash_table_iter_next(&it, &key, NULL))
		g_ptr_array_add(early, g_memdup2(key, sizeof(MeshNodeId)));
	g_mutex_unlock(&u->lock);
	for (guint i = 0; i < early->len; i++)
		send_leader_request(u, leader_connect_new(early->pdata[i]));
	g_ptr_array_free(early, TRUE);
	mesh_receiver_set_callback(from_leader, u->context, from_leader_cb, u, NULL);
}

/* The leader side. */

static void follower_free(Follower *f)
{
	mesh_receiver_set_callback(f->requests, NULL, NULL, NULL, NULL);
	mesh_receiver_free(f->requests);
	mesh_sender_free(f->to_follower);
	g_free(f);
}

static MeshUnix__FollowerRequest *follower_connect_new(const MeshNodeId *node, int fd,
							gboolean c_nodes)
{
	MeshUnix__FollowerRequest *req = g_malloc(sizeof(*req));
	mesh_unix__follower_request__init(req);
	req->request_case = MESH_UNIX__FOLLOWER_REQUEST__REQUEST_CONNECT;
	req->connect = g_malloc(sizeof(*req->connect));
	mesh_unix__follower_connect__init(req->connect);
	req->connect->node = unix_node_id_new(node);
	if (fd >= 0)
		req->connect->fd = mesh_payload_fd_new_take(fd);
	req->connect->c_nodes = c_nodes;
	return req;
}

static char *pair_key(const MeshNodeId *a, const MeshNodeId *b)
{
	char x[33], y[33];
	if (memcmp(a, b, sizeof(*a)) > 0) {
		const MeshNodeId *t = a;
		a = b;
		b = t;
	}
	return g_strdup_printf("%s:%s", mesh_uuid_to_string(a, x), mesh_uuid_to_string(b, y));
}

/*
 * Follower @from asks for a socket to @target. Runs on the I/O context, as
 * every leader callback does, so sends on the followers' channels are
 * serialized. Both sides of a pair often ask at once: each pair gets one
 * socketpair, the first time; later requests are answered by that one.
 */
static void leader_connect(Leader *l, Follower *from, const MeshNodeId *target)
{
	g_mutex_lock(&l->lock);
	Follower *to = g_hash_table_lookup(l->followers, target);
	char *key = pair_key(&from->id, target);
	gboolean done = to && g_hash_table_contains(l->introduced, key);
	if (to && !done)
		g_hash_table_add(l->introduced, key);
	else
		g_free(key);
	g_mutex_unlock(&l->lock);
	if (to == from)
		return;
	if (done) {
		/*
		 * The pair has its socket. A node that asks again lost it (its
		 * end failed, and it forgot that): no second one, the answer
		 * fails its request. When both asked at once, the one asking
		 * second got its socket first, in order, and this is moot.
		 */
		mesh_sender_send(from->to_follower, &follower_connect_new(target, -1, FALSE)->base);
		return;
	}

	int sv[2] = {-1, -1};
	if (to && pal_socketpair(SOCK_SEQPACKET, sv) < 0) {
		debug_log(LOG_FIELDS("MESH_PEER", LOG_ID(&from->id)),
			  "mesh: cannot make a socketpair for an introduction: %s", g_strerror(errno));
		to = NULL;
	}
	/*
	 * Both ends C nodes (each sent us its hello, or is us): they may say
	 * hello on their socket. Otherwise the upstream wire.
	 */
	gboolean c_nodes = to && unix_node_peer_is_c(from->owner, &from->id) &&
			   unix_node_peer_is_c(from->owner, target);
	if (to)
		mesh_sender_send(to->to_follower,
				 &follower_connect_new(&from->id, sv[0], c_nodes)->base);
	mesh_sender_send(from->to_follower, &follower_connect_new(target, sv[1], c_nodes)->base);
}

/*
 * Called with @l locked when follower @id left: its pairs go too, so the
 * table holds pairs of live followers only (a later request naming @id is
 * answered "unknown").
 */
static void leader_forget_pairs_locked(Leader *l, const MeshNodeId *id)
{
	char s[33];
	size_t len = strlen(mesh_uuid_to_string(id, s));
	GHashTableIter it;
	gpointer key;

	g_hash_table_iter_init(&it, l->introduced);
	while (g_hash_table_iter_next(&it, &key, NULL)) {
		const char *k = key, *colon = strchr(k, ':');
		if (((size_t)(colon - k) == len && memcmp(k, s, len) == 0) || strcmp(colon + 1, s) == 0)
			g_hash_table_iter_remove(&it);
	}
}

guint unix_leader_count_pairs(MeshUnixNode *u)
{
	if (!u->leader)
		return 0;
	g_mutex_lock(&u->leader->lock);
	guint n = g_hash_table_size(u->leader->introduced);
	g_mutex_unlock(&u->leader->lock);
	return n;
}

static gboolean leader_invite(MeshUnixNode *u, MeshPort *user_port, MeshInvitation **ret,
			      GError **error);

static void leader_handle(Follower *f, MeshUnix__LeaderRequest *req)
{
	MeshUnixNode *u = f->owner;
	MeshNodeId target;

	switch (req->request_case) {
	case MESH_UNIX__LEADER_REQUEST__REQUEST_CONNECT:
		if (node_id_read(req->connect->node, &target))
			leader_connect(u->leader, f, &target);
		break;
	case MESH_UNIX__LEADER_REQUEST__REQUEST_INVITE: {
		MeshPort *port = mesh_port_steal_from_field(req->invite->port);
		MeshPort *reply_port = mesh_port_steal_from_field(req->invite->reply);
		MeshInvitation *inv = NULL;
		g_mutex_lock(&u->leader->invite_lock);
		gboolean invited = FALSE;
		if (port && reply_port) {
			invited = leader_invite(u, port, &inv, NULL);
			port = NULL; /* taken in all cases */
		}
		g_mutex_unlock(&u->leader->invite_lock);
		if (invited) {
			MeshSender *reply =
				mesh_sender_from_port(reply_port, &mesh_unix__invitation__descriptor);
			reply_port = NULL;
			mesh_sender_send(reply, unix_invitation_to_message(inv));
			mesh_sender_free(reply);
		}
		mesh_port_close(port);
		mesh_port_close(reply_port);
		break;
	}
	default:
		debug_log(LOG_FIELDS("MESH_PEER", LOG_ID(&f->id)), "mesh: malformed leader request ignored");
		break;
	}
}

static void leader_requests_cb(MeshReceiver *r, gpointer data)
{
	Follower *f = data;
	ProtobufCMessage *msg;
	GError *error = NULL;

	while (mesh_receiver_recv(r, 0, &msg, &error)) {
		leader_handle(f, (MeshUnix__LeaderRequest *)msg);
		mesh_payload_message_free(msg);
	}
	if (!g_error_matches(error, MESH_ERROR, MESH_ERROR_EMPTY)) {
		/* The follower is gone. */
		Leader *l = f->owner->leader;
		g_mutex_lock(&l->lock);
		gboolean ours = g_hash_table_lookup(l->followers, &f->id) == f;
		if (ours) {
			g_hash_table_steal(l->followers, &f->id);
			leader_forget_pairs_locked(l, &f->id);
		}
		g_mutex_unlock(&l->lock);
		if (ours)
			follower_free(f);
	}
	g_clear_error(&error);
}

static void leader_add_follower(MeshUnixNode *u, const MeshNodeId *id, MeshReceiver *requests,
				MeshSender *to_follower)
{
	Follower *f = g_new0(Follower, 1);
	f->owner = u;
	f->id = *id;
	f->requests = requests;
	f->to_follower = to_follower;
	g_mutex_lock(&u->leader->lock);
	Follower *old = g_hash_table_lookup(u->leader->followers, id);
	g_hash_table_replace(u->leader->followers, &f->id, f);
	g_mutex_unlock(&u->leader->lock);
	if (old)
		follower_free(old);
	mesh_receiver_set_callback(requests, u->context, leader_requests_cb, f, NULL);
}

MeshUnixNode *mesh_unix_node_new(MeshNode *node, GMainContext *context)
{
	g_return_val_if_fail(node != NULL, NULL);
	MeshUnixNode *u = unix_node_new(node, context, FALSE);

	unix_connector_install(u);
	unix_leader_start(u);
	return u;
}

void unix_leader_start(MeshUnixNode *u)
{
	MeshSender *ls, *fs;
	MeshReceiver *lr, *fr;

	u->leader = g_new0(Leader, 1);
	g_mutex_init(&u->leader->lock);
	u->leader->followers = g_hash_table_new(mesh_uuid_hash, mesh_uuid_equal);
	u->leader->introduced = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	g_mutex_init(&u->leader->invite_lock);
	u->leader->active = TRUE;
	mesh_channel_new(&mesh_unix__leader_request__descriptor, &ls, &lr);
	mesh_channel_new(&mesh_unix__follower_request__descriptor, &fs, &fr);
	leader_add_follower(u, mesh_node_get_id(u->node), lr, fs);
	unix_follower_start(u, ls, fr);
}

static void leader_stop_handoff(Leader *l);

void unix_leader_stop(MeshUnixNode *u)
{
	mesh_node_set_connector(u->node, NULL, NULL);
	g_mutex_lock(&u->lock);
	u->leader_stopped = TRUE;
	MeshSender *to_leader = u->to_leader;
	MeshReceiver *from_leader = u->from_leader;
	u->to_leader = NULL;
	u->from_leader = NULL;
	GHashTable *pending = u->pending;
	u->pending = g_hash_table_new(mesh_uuid_hash, mesh_uuid_equal);
	g_mutex_unlock(&u->lock);

	if (from_leader) {
		mesh_receiver_set_callback(from_leader, NULL, NULL, NULL, NULL);
		/* Whether a leader still answers (for a clean shutdown's verdict). */
		ProtobufCMessage *msg = NULL;
		GError *error = NULL;
		u->leader_channel_up = mesh_receiver_recv(from_leader, 0, &msg, &error) ||
				       g_error_matches(error, MESH_ERROR, MESH_ERROR_EMPTY);
		mesh_payload_message_free(msg);
		g_clear_error(&error);
		mesh_receiver_free(from_leader);
	}
	mesh_sender_free(to_leader);
	GHashTableIter it;
	gpointer value;
	g_hash_table_iter_init(&it, pending);
	while (g_hash_table_iter_next(&it, NULL, &value))
		pending_fail(u, value, "mesh is shutting down");
	g_hash_table_destroy(pending);

	if (u->leader) {
		g_mutex_lock(&u->leader->lock);
		GList *followers = g_hash_table_get_values(u->leader->followers);
		g_hash_table_steal_all(u->leader->followers);
		g_mutex_unlock(&u->leader->lock);
		g_list_free_full(followers, (GDestroyNotify)follower_free);
		leader_stop_handoff(u->leader);
		g_hash_table_destroy(u->leader->followers);
		g_hash_table_destroy(u->leader->introduced);
		g_mutex_clear(&u->leader->lock);
		g_mutex_clear(&u->leader->invite_lock);
		g_free(u->leader);
		u->leader = NULL;
	}
}

static gboolean leader_invite(MeshUnixNode *u, MeshPort *user_port, MeshInvitation **ret,
			      GError **error)
{
	MeshNodeId joiner;
	MeshPortId joiner_port, our_port;
	int sv[2];

	if (pal_socketpair(SOCK_SEQPACKET, sv) < 0) {
		g_set_error(error, MESH_ERROR, MESH_ERROR_INVALID_ARGUMENT,
			    "cannot create a socketpair: %s", g_strerror(errno));
		mesh_port_close(user_port);
		return FALSE;
	}
	mesh_uuid_generate(&joiner);
	mesh_uuid_generate(&joiner_port);
	mesh_uuid_generate(&our_port);
	/* No hello: the joiner says its own first if it is a C node (it has ours). */
	if (!unix_node_connect_take(u, &joiner, sv[0], FALSE, -1, error)) {
		close(sv[1]);
		mesh_port_close(user_port);
		return FALSE;
	}

	MeshSender *ls, *fs;
	MeshReceiver *lr, *fr;
	mesh_channel_new(&mesh_unix__leader_request__descriptor, &ls, &lr);
	mesh_channel_new(&mesh_unix__follower_request__descriptor, &fs, &fr);

	/* The initial message waits in the socket until the joiner reads it. */
	MeshPort *q = mesh_node_add_port(u->node, &our_port, &joiner, &joiner_port);
	MeshOneshotSender *init =
		mesh_oneshot_sender_from_port(q, &mesh_unix__initial_message__descriptor);
	MeshUnix__InitialMessage *im = g_malloc(sizeof(*im));
	mesh_unix__initial_message__init(im);
	im->leader_send = mesh_port_into_field(mesh_sender_into_port(ls));
	im->follower_recv = mesh_port_into_field(mesh_receiver_into_port(fr));
	im->user_port = mesh_port_into_field(user_port);
	mesh_oneshot_send(init, &im->base);

	leader_add_follower(u, &joiner, lr, fs);
	*ret = mesh_invitation_new_take(&joiner, &joiner_port, mesh_node_get_id(u->node),
					&our_port, sv[1]);
	(*ret)->extensions = unix_hello_flags();
	return TRUE;
}

gboolean mesh_unix_node_invite(MeshUnixNode *u, MeshPort *port, gint64 timeout_us,
			       MeshInvitation **ret_invitation, GError **error)
{
	if (!u || !ret_invitation || (error && *error)) {
		mesh_port_close(port); /* taken in all cases */
		g_return_val_if_fail(u && ret_invitation, FALSE);
		g_return_val_if_fail(error == NULL || *error == NULL, FALSE);
	}
	g_return_val_if_fail(port, FALSE);
	if (!timeout_check(timeout_us, G_STRFUNC, error)) {
		mesh_port_close(port); /* taken in all cases */
		return FALSE;
	}
	g_mutex_lock(&u->lock);
	Leader *l = u->leader_stopped ? NULL : u->leader;
	g_mutex_unlock(&u->lock);
	if (l) {
		/* Held until the new follower is in the table: a handoff takes it along. */
		g_mutex_lock(&l->invite_lock);
		if (unix_leader_is_active(u)) {
			gboolean ok = leader_invite(u, port, ret_invitation, error);
			g_mutex_unlock(&l->invite_lock);
			return ok;
		}
		g_mutex_unlock(&l->invite_lock);
	}

	/* Ask the leader, over the mesh. */
	MeshSender *rs;
	MeshReceiver *rr;
	mesh_channel_new(&mesh_unix__invitation__descriptor, &rs, &rr);
	MeshUnix__LeaderRequest *req = g_malloc(sizeof(*req));
	mesh_unix__leader_request__init(req);
	req->request_case = MESH_UNIX__LEADER_REQUEST__REQUEST_INVITE;
	req->invite = g_malloc(sizeof(*req->invite));
	mesh_unix__leader_invite__init(req->invite);
	req->invite->port = mesh_port_into_field(port);
	req->invite->reply = mesh_port_into_field(mesh_sender_into_port(rs));
	send_leader_request(u, req);

	ProtobufCMessage *msg = NULL;
	gboolean ok = mesh_receiver_recv(rr, timeout_us, &msg, error);
	mesh_receiver_free(rr);
	if (!ok)
		return FALSE;
	*ret_invitation = unix_invitation_from_message(msg, error);
	return *ret_invitation != NULL;
}

/* FALSE with why if @fd is not an open SOCK_SEQPACKET socket. */
static gboolean check_seqpacket(int fd, GError **error)
{
	int type = 0;
	socklen_t len = sizeof(type);

	if (fd < 0 || getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0) {
		g_set_error(error, MESH_ERROR, MESH_ERROR_INVALID_ARGUMENT,
			    "the invitation's fd %d is not a SOCK_SEQPACKET socket: %s", fd,
			    g_strerror(fd < 0 ? EBADF : errno));
		return FALSE;
	}
	if (type != SOCK_SEQPACKET) {
		g_set_error(error, MESH_ERROR, MESH_ERROR_INVALID_ARGUMENT,
			    "the invitation's fd %d is not a SOCK_SEQPACKET socket", fd);
		return FALSE;
	}
	return TRUE;
}

MeshUnixNode *mesh_unix_node_join(MeshInvitation *inv, GMainContext *context, gint64 timeout_us,
				  MeshPort **ret_port, GError **error)
{
	if (!ret_port || (error && *error)) {
		mesh_invitation_free(inv); /* taken in all cases */
		g_return_val_if_fail(ret_port, NULL);
		g_return_val_if_fail(error == NULL || *error == NULL, NULL);
	}
	g_return_val_if_fail(inv, NULL);
	if (!timeout_check(timeout_us, G_STRFUNC, error)) {
		mesh_invitation_free(inv); /* taken in all cases */
		return NULL;
	}
	/*
	 * Before making any fd: a missing socket (an inherited fd 3 that was
	 * closed) must not be mistaken for the first fd we make ourselves.
	 */
	if (!check_seqpacket(inv->fd, error)) {
		g_prefix_error(error, "joining the mesh: ");
		if (fcntl(inv->fd, F_GETFD) < 0)
			inv->fd = -1; /* not ours to close: it is not open */
		mesh_invitation_free(inv);
		return NULL;
	}
	MeshNode *node = mesh_node_new_with_id(&inv->local_node);
	/* Lent from the start: the join receives on this thread right away. */
	MeshUnixNode *u = unix_node_new(node, context, TRUE);
	unix_connector_install(u);
	mesh_node_unref(node);

	/*
	 * The leader as a known remote node (no connector call), then the port
	 * (the leader's initial message may arrive at once), then the socket.
	 */
	MeshRemoteNode *leader = mesh_node_add_remote(u->node, &inv->remote_node);
	MeshPort *p = mesh_node_add_port(u->node, &inv->local_port, &inv->remote_node,
					 &inv->remote_port);
	u->joined = TRUE;
	u->leader_node = inv->remote_node;
	/* A C leader named its extensions: say our hello first, and use them. */
	gboolean connected = unix_node_connect_take(
		u, &inv->remote_node, mesh_invitation_steal_fd(inv), inv->extensions != 0,
		inv->extensions ? (int)inv->extensions : -1, error);
	mesh_remote_node_unref(leader);
	mesh_invitation_free(inv);
	if (!connected) {
		g_prefix_error(error, "joining the mesh: ");
		mesh_port_close(p);
		mesh_unix_node_free(u);
		return NULL;
	}
	MeshOneshotReceiver *init =
		mesh_oneshot_receiver_from_port(p, &mesh_unix__initial_message__descriptor);
	ProtobufCMessage *msg = NULL;
	GError *err = NULL;
	if (!mesh_oneshot_recv(init, timeout_us, &msg, &err)) {
		/* A final error consumed the receiver; a timeout did not. */
		if (g_error_matches(err, MESH_ERROR, MESH_ERROR_TIMED_OUT) ||
		    g_error_matches(err, MESH_ERROR, MESH_ERROR_EMPTY))
			mesh_oneshot_receiver_free(init);
		g_propagate_prefixed_error(error, err, "joining the mesh: ");
		mesh_unix_node_free(u);
		return NULL;
	}
	MeshUnix__InitialMessage *im = (MeshUnix__InitialMessage *)msg;
	MeshPort *ls = mesh_port_steal_from_field(im->leader_send);
	MeshPort *fr = mesh_port_steal_from_field(im->follower_recv);
	MeshPort *user = mesh_port_steal_from_field(im->user_port);
	mesh_payload_message_free(msg);
	if (!ls || !fr || !user) {
		mesh_port_close(ls);
		mesh_port_close(fr);
		mesh_port_close(user);
		g_set_error(error, MESH_ERROR, MESH_ERROR_CORRUPTION,
			    "joining the mesh: malformed initial message");
		mesh_unix_node_free(u);
		return NULL;
	}
	unix_follower_start(u, mesh_sender_from_port(ls, &mesh_unix__leader_request__descriptor),
			    mesh_receiver_from_port(fr, &mesh_unix__follower_request__descriptor));
	*ret_port = user;
	return u;
}

/*
 * Leadership handoff (upstream offer_leadership / accept_leadership). The
 * leader answers an acceptance on one of its offers by connecting every
 * follower to the new leader (one socketpair each, unless the pair is known
 * to be connected already), then sending it every follower's two channel
 * ends in one Followers message. The ports move; the followers keep their
 * own ends and never learn that their leader changed.
 */

gboolean unix_leader_is_active(MeshUnixNode *u)
{
	g_mutex_lock(&u->lock);
	Leader *l = u->leader;
	g_mutex_unlock(&u->lock);
	if (!l)
		return FALSE;
	g_mutex_lock(&l->lock);
	gboolean active = l->active;
	g_mutex_unlock(&l->lock);
	return active;
}

static MeshUnix__FollowerEntry *follower_entry_take(Follower *f)
{
	MeshUnix__FollowerEntry *e = g_malloc(sizeof(*e));
	mesh_unix__follower_entry__init(e);
	e->node = unix_node_id_new(&f->id);
	mesh_receiver_set_callback(f->requests, NULL, NULL, NULL, NULL);
	e->requests = mesh_port_into_field(mesh_receiver_into_port(f->requests));
	e->to_follower = mesh_port_into_field(mesh_sender_into_port(f->to_follower));
	g_free(f);
	return e;
}

static void followers_send(MeshSender *sink, GPtrArray *entries)
{
	MeshUnix__Followers *m = g_malloc(sizeof(*m));
	mesh_unix__followers__init(m);
	m->n_list = entries->len;
	m->list = (MeshUnix__FollowerEntry **)g_ptr_array_free(entries, FALSE);
	mesh_sender_send(sink, &m->base);
}

/* Sends @a and @b each a socket to the other (FollowerRequest::Connect). */
static gboolean leader_pair(Follower *a, Follower *b)
{
	int sv[2];
	if (pal_socketpair(SOCK_SEQPACKET, sv) < 0) {
		debug_log(LOG_FIELDS("MESH_PEER", LOG_ID(&a->id)),
			  "mesh: cannot connect a follower to the new leader: %s", g_strerror(errno));
		return FALSE;
	}
	/* As in leader_connect(): hello only when both ends are known C nodes. */
	gboolean c_nodes = unix_node_peer_is_c(a->owner, &a->id) &&
			   unix_node_peer_is_c(a->owner, &b->id);
	mesh_sender_send(a->to_follower, &follower_connect_new(&b->id, sv[0], c_nodes)->base);
	mesh_sender_send(b->to_follower, &follower_connect_new(&a->id, sv[1], c_nodes)->base);
	return TRUE;
}

static void leader_resign(MeshUnixNode *u, const MeshNodeId *new_id, MeshSender *sink)
{
	Leader *l = u->leader;
	char id[33];

	g_mutex_lock(&l->invite_lock);
	g_mutex_lock(&l->lock);
	Follower *nl = l->active ? g_hash_table_lookup(l->followers, new_id) : NULL;
	if (!nl) {
		g_mutex_unlock(&l->lock);
		g_mutex_unlock(&l->invite_lock);
		debug_log(LOG_FIELDS("MESH_PEER", LOG_ID(new_id)),
			  "mesh: leadership accepted by %s, not a follower (or we do not lead): "
			  "we keep leading", mesh_uuid_to_string(new_id, id));
		mesh_sender_free(sink);
		return;
	}
	l->active = FALSE;
	GList *followers = g_hash_table_get_values(l->followers);
	g_hash_table_steal_all(l->followers);
	GPtrArray *connect = g_ptr_array_new();
	for (GList *i = followers; i; i = i->next) {
		Follower *f = i->data;
		char *key = pair_key(&f->id, new_id);
		/* We are connected to every follower; the new leader to those we introduced. */
		if (f != nl && !mesh_uuid_equal(&f->id, mesh_node_get_id(u->node)) &&
		    !g_hash_table_contains(l->introduced, key))
			g_ptr_array_add(connect, f);
		g_free(key);
	}
	g_hash_table_remove_all(l->introduced);
	g_mutex_unlock(&l->lock);
	g_mutex_unlock(&l->invite_lock);

	debug_log(LOG_FIELDS("MESH_PEER", LOG_ID(new_id)), "mesh: handing the leadership to %s",
		  mesh_uuid_to_string(new_id, id));
	for (guint i = 0; i < connect->len; i++)
		leader_pair(connect->pdata[i], nl);
	g_ptr_array_free(connect, TRUE);
	GPtrArray *entries = g_ptr_array_new();
	for (GList *i = followers; i; i = i->next)
		g_ptr_array_add(entries, follower_entry_take(i->data));
	g_list_free(followers);
	followers_send(sink, entries);
	mesh_sender_free(sink);
}

static void offer_drop(MeshUnixNode *u, MeshReceiver *r)
{
	Leader *l = u->leader;
	mesh_receiver_set_callback(r, NULL, NULL, NULL, NULL);
	g_mutex_lock(&l->lock);
	l->offers = g_slist_remove(l->offers, r);
	g_mutex_unlock(&l->lock);
	mesh_receiver_free(r);
}

/* An acceptance on one of our offers (the I/O context, as every leader callback). */
static void offer_cb(MeshReceiver *r, gpointer data)
{
	MeshUnixNode *u = data;
	ProtobufCMessage *msg = NULL;
	GError *error = NULL;

	if (!mesh_receiver_recv(r, 0, &msg, &error)) {
		if (!g_error_matches(error, MESH_ERROR, MESH_ERROR_EMPTY))
			offer_drop(u, r); /* the offer was dropped unaccepted */
		g_error_free(error);
		return;
	}
	/* One offer, one acceptance: later ones find the channel closed. */
	offer_drop(u, r);
	MeshUnix__LeadershipAccept *a = (MeshUnix__LeadershipAccept *)msg;
	MeshNodeId id;
	MeshPort *sink = mesh_port_steal_from_field(a->followers);
	if (sink && node_id_read(a->node, &id))
		leader_resign(u, &id, mesh_sender_from_port(sink, &mesh_unix__followers__descriptor));
	else
		mesh_port_close(sink);
	mesh_payload_message_free(msg);
}

MeshPort *mesh_unix_node_offer_leadership(MeshUnixNode *u)
{
	MeshSender *s;
	MeshReceiver *r;

	g_return_val_if_fail(u, NULL);
	mesh_channel_new(&mesh_unix__leadership_accept__descriptor, &s, &r);
	g_mutex_lock(&u->lock);
	Leader *l = u->leader_stopped ? NULL : u->leader;
	g_mutex_unlock(&u->lock);
	gboolean kept = FALSE;
	if (l) {
		g_mutex_lock(&l->lock);
		if (l->active) {
			l->offers = g_slist_prepend(l->offers, r);
			kept = TRUE;
		}
		g_mutex_unlock(&l->lock);
	}
	if (kept)
		mesh_receiver_set_callback(r, u->context, offer_cb, u, NULL);
	else
		mesh_receiver_free(r); /* not the leader: an offer nobody honours */
	return mesh_sender_into_port(s);
}

/* The followers an accepted offer brings (the I/O context). */
static void incoming_cb(MeshReceiver *r, gpointer data)
{
	MeshUnixNode *u = data;
	Leader *l = u->leader;
	ProtobufCMessage *msg;
	GError *error = NULL;

	while (mesh_receiver_recv(r, 0, &msg, &error)) {
		MeshUnix__Followers *m = (MeshUnix__Followers *)msg;
		for (size_t i = 0; i < m->n_list; i++) {
			MeshUnix__FollowerEntry *e = m->list[i];
			MeshNodeId id;
			MeshPort *rp = mesh_port_steal_from_field(e->requests);
			MeshPort *sp = mesh_port_steal_from_field(e->to_follower);
			if (!rp || !sp || !node_id_read(e->node, &id)) {
				mesh_port_close(rp);
				mesh_port_close(sp);
				continue;
			}
			leader_add_follower(
				u, &id, mesh_receiver_from_port(rp, &mesh_unix__leader_request__descriptor),
				mesh_sender_from_port(sp, &mesh_unix__follower_request__descriptor));
		}
		g_mutex_lock(&l->lock);
		if (!l->active)
			debug_log(LOG_FIELDS("MESH_NODE", LOG_ID(mesh_node_get_id(u->node))),
				  "mesh: leadership accepted: %u followers",
				  g_hash_table_size(l->followers));
		l->active = TRUE;
		g_mutex_unlock(&l->lock);
		mesh_payload_message_free(msg);
	}
	if (!g_error_matches(error, MESH_ERROR, MESH_ERROR_EMPTY)) {
		/* The old leader is done with us (or withdrew: then we never lead). */
		debug_log(LOG_FIELDS("MESH_NODE", LOG_ID(mesh_node_get_id(u->node))),
			  "mesh: leadership offer channel ended: %s", error->message);
		mesh_receiver_set_callback(r, NULL, NULL, NULL, NULL);
		g_mutex_lock(&l->lock);
		l->incoming = NULL;
		g_mutex_unlock(&l->lock);
		mesh_receiver_free(r);
	}
	g_clear_error(&error);
}

gboolean mesh_unix_node_accept_leadership(MeshUnixNode *u, MeshPort *offer, GError **error)
{
	if (!u || (error && *error)) {
		mesh_port_close(offer); /* taken in all cases */
		g_return_val_if_fail(u, FALSE);
		g_return_val_if_fail(error == NULL || *error == NULL, FALSE);
	}
	g_return_val_if_fail(offer, FALSE);

	g_mutex_lock(&u->lock);
	if (u->leader_stopped) {
		g_mutex_unlock(&u->lock);
		mesh_port_close(offer);
		g_set_error(error, MESH_ERROR, MESH_ERROR_CLOSED, "the node is shutting down");
		return FALSE;
	}
	if (!u->leader) {
		Leader *l = g_new0(Leader, 1);
		g_mutex_init(&l->lock);
		g_mutex_init(&l->invite_lock);
		l->followers = g_hash_table_new(mesh_uuid_hash, mesh_uuid_equal);
		l->introduced = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
		u->leader = l;
	}
	Leader *l = u->leader;
	g_mutex_unlock(&u->lock);

	MeshSender *fs;
	MeshReceiver *fr;
	g_mutex_lock(&l->lock);
	gboolean busy = l->active || l->incoming;
	if (!busy) {
		mesh_channel_new(&mesh_unix__followers__descriptor, &fs, &fr);
		l->incoming = fr;
	}
	g_mutex_unlock(&l->lock);
	if (busy) {
		mesh_port_close(offer);
		g_set_error(error, MESH_ERROR, MESH_ERROR_INVALID_ARGUMENT,
			    "this node leads already (or has accepted an offer)");
		return FALSE;
	}
	mesh_receiver_set_callback(fr, u->context, incoming_cb, u, NULL);

	MeshSender *to_offer = mesh_sender_from_port(offer, &mesh_unix__leadership_accept__descriptor);
	MeshUnix__LeadershipAccept *a = g_malloc(sizeof(*a));
	mesh_unix__leadership_accept__init(a);
	a->node = unix_node_id_new(mesh_node_get_id(u->node));
	a->followers = mesh_port_into_field(mesh_sender_into_port(fs));
	mesh_sender_send(to_offer, &a->base);
	mesh_sender_free(to_offer);
	return TRUE;
}

gboolean mesh_unix_node_is_leader(MeshUnixNode *u)
{
	g_return_val_if_fail(u, FALSE);
	return unix_leader_is_active(u);
}

/* unix_leader_stop(), the I/O context: the handoff's channels go too. */
static void leader_stop_handoff(Leader *l)
{
	g_mutex_lock(&l->lock);
	GSList *offers = l->offers;
	MeshReceiver *incoming = l->incoming;
	l->offers = NULL;
	l->incoming = NULL;
	l->active = FALSE;
	g_mutex_unlock(&l->lock);
	for (GSList *i = offers; i; i = i->next) {
		mesh_receiver_set_callback(i->data, NULL, NULL, NULL, NULL);
		mesh_receiver_free(i->data);
	}
	g_slist_free(offers);
	if (incoming) {
		mesh_receiver_set_callback(incoming, NULL, NULL, NULL, NULL);
		mesh_receiver_free(incoming);
	}
}
