/* SPDX-License-Identifier: MIT */
/*
 * The ALPC node: a transport on the public transport interface
 * (<meshremote/mesh-transport.h>) over Windows ALPC, after upstream's
 * mesh_remote::alpc_node. The NtAlpc calls go through a MeshAlpcNtApi
 * table (ntdll's in the library, a test stand-in in the tests).
 *
 * The wire:
 *
 * - Names. A mesh shares one object directory (anonymous; its handle is
 *   passed to every node). Each node creates one waitable server port in
 *   it named by its node id as upstream's node_path() does: "N-" and the
 *   id as a big-endian u128 in lowercase hex, leading zeros dropped
 *   (alpc_port_name()).
 * - Connection. To send to node B, node A connects to B's port (one client
 *   connection per direction: B sends to A over its own connection to A's
 *   port). The connection message's data is exactly 48 bytes:
 *       u8 node_id[16]   A's node id
 *       u8 secret[32]    the mesh secret
 *   B rejects anything else, a wrong secret (compared in constant time),
 *   a zero id or its own id; otherwise it accepts with a port context that
 *   names the connection.
 * - Events. Every datagram A -> B starts with an 8-byte packet header:
 *       u8 type; u8 reserved[7] (zero)
 *   type 1 (EVENT): the event follows in the message (at most
 *   ALPC_MAX_SMALL_EVENT = 4088 bytes); type 3 (LARGE_EVENT): nothing
 *   follows, the event is in a secure (read-only for B) section view sent
 *   as the message's view attribute; its size is what its header says
 *   (mesh_event_get_size()), within the view. The event's OS handles are in
 *   the message's handle attribute (one, or up to ALPC_MAX_HANDLES
 *   indirect), duplicated into B by the kernel with the same access. B
 *   drops (and closes the handles of) anything over these bounds, of an
 *   unknown type, or too short.
 * - Failure. When a connection's port closes at either end, the node at
 *   its other end fails (mesh_remote_node_fail(), naming it): B sees
 *   PORT_CLOSED on its server port, A on its client port; a send that
 *   fails fails the node too. A node's server port closes at its shutdown
 *   (once no received view needs it): a connect to it is then refused,
 *   failing the node connected to; a connect that gets no answer within
 *   ALPC_CONNECT_TIMEOUT_US fails it too.
 * - Flush. At shutdown A sends a request (an empty message that needs a
 *   reply) on each client connection; B replies (empty) when it receives
 *   it, after everything sent before it; A then closes the connection.
 *
 * Threads: a receive thread waits on the server port; a connect thread
 * makes connections (NtAlpcConnectPortEx blocks until the server answers,
 * at most ALPC_CONNECT_TIMEOUT_US) and waits on the client ports for
 * PORT_CLOSED and flush replies. Sends run on the caller's thread (a
 * datagram does not block).
 */
#include "alpc-node-private.h"

#include <string.h>

#define PACKET_EVENT 1
#define PACKET_LARGE_EVENT 3
#define CONNECTION_DATA_SIZE (16 + MESH_ALPC_SECRET_SIZE)
#define DIRECTORY_ALL_ACCESS_ (STANDARD_RIGHTS_REQUIRED | 0xF)

/* A port whose handle outlives its owner while received views point into
 * it (the view is released on the port it arrived on). */
typedef struct {
	gint ref;
	const MeshAlpcNtApi *api;
	HANDLE handle;
} PortRef;

typedef struct {
	PortRef *port;
	void *base;
} ViewHold;

/* Incoming: one per accepted connection, by port context. */
typedef struct {
	HANDLE comm;
	MeshRemoteNode *remote;
} ServerConn;

/* Outgoing: the sink of one remote node. */
typedef struct {
	gint ref;
	MeshAlpcNode *owner;
	MeshNodeId peer;
	MeshRemoteNode *remote;
	GMutex lock;
	HANDLE port; /* NULL once closed */
	gboolean flushing;
	gboolean flushed;
} Client;

typedef enum { ITEM_CONNECT, ITEM_FAIL } ItemKind;

typedef struct {
	ItemKind kind;
	MeshRemoteNode *remote;
	char *reason;
} Item;

struct MeshAlpcNode {
	const MeshAlpcNtApi *api;
	MeshNode *node;
	HANDLE directory;
	guint8 secret[MESH_ALPC_SECRET_SIZE];
	PortRef *server;
	HANDLE stop;	/* manual reset: both threads end */
	HANDLE wake;	/* auto reset: the connect thread looks at its queue */
	GThread *recv_thread;
	GThread *connect_thread;
	GMutex lock;
	GQueue items;		 /* Item*, for the connect thread */
	GPtrArray *clients;	 /* Client*, owned by the connect thread's list */
	GHashTable *server_conns; /* context -> ServerConn*, recv thread only */
	/*
	 * Invited nodes that have not connected to us yet (under @lock):
	 * MeshNodeId* (owned) -> the remote node whose connect waits for them
	 * (parked by the connector), or NULL.
	 */
	GHashTable *invited;
	uintptr_t next_context;
	gboolean flush;	   /* the connect thread flushes, then ends */
	gint64 flush_deadline;
	gboolean flush_ok;
	gboolean shut_down;
	gint64 connect_timeout_us; /* a connect's wait for the server's answer */
};

/* How long a connect waits for the server to answer (then the peer fails). */
#define ALPC_CONNECT_TIMEOUT_US (30 * G_USEC_PER_SEC)

static char *status_message(const char *call, NTSTATUS status)
{
	return g_strdup_printf("%s failed: NTSTATUS 0x%08lx", call, (unsigned long)status);
}

gboolean alpc_secret_equal(const guint8 *a, const guint8 *b)
{
	volatile guint8 diff = 0;

	for (gsize i = 0; i < MESH_ALPC_SECRET_SIZE; i++)
		diff |= a[i] ^ b[i];
	return diff == 0;
}

static PortRef *port_ref_new(const MeshAlpcNtApi *api, HANDLE h)
{
	PortRef *p = g_new0(PortRef, 1);

	p->ref = 1;
	p->api = api;
	p->handle = h;
	return p;
}

static void port_ref_unref(PortRef *p)
{
	if (p && g_atomic_int_dec_and_test(&p->ref)) {
		p->api->close(p->handle);
		g_free(p);
	}
}

static void view_hold_free(gpointer data)
{
	ViewHold *v = data;

	v->port->api->delete_section_view(v->port->handle, 0, v->base);
	port_ref_unref(v->port);
	g_free(v);
}

gsize alpc_port_name(const MeshNodeId *id, wchar_t name[ALPC_PORT_NAME_MAX])
{
	static const char hex[] = "0123456789abcdef";
	gsize k = 0;
	gboolean lead = TRUE;

	name[k++] = L'N';
	name[k++] = L'-';
	for (int i = 0; i < 32; i++) {
		guint8 b = id->bytes[i / 2];
		guint8 digit = (i % 2) ? (b & 0xf) : (b >> 4);

		if (lead && digit == 0 && i < 31)
			continue;
		lead = FALSE;
		name[k++] = (wchar_t)hex[digit];
	}
	name[k] = 0;
	return k;
}

void alpc_port_attributes(OBJECT_ATTRIBUTES *oa, UNICODE_STRING *us,
			  wchar_t name[ALPC_PORT_NAME_MAX], HANDLE directory, const MeshNodeId *id)
{
	gsize len = alpc_port_name(id, name);

	us->Buffer = name;
	us->Length = (USHORT)(len * sizeof(wchar_t));
	us->MaximumLength = (USHORT)((len + 1) * sizeof(wchar_t));
	memset(oa, 0, sizeof(*oa));
	oa->Length = sizeof(*oa);
	oa->RootDirectory = directory;
	oa->ObjectName = us;
}

static void port_config(MeshAlpcPortAttributes *a)
{
	memset(a, 0, sizeof(*a));
	a->Flags = MESH_ALPC_PORFLG_ACCEPT_DUP_HANDLES | MESH_ALPC_PORFLG_ACCEPT_INDIRECT_HANDLES |
		   MESH_ALPC_PORFLG_ACCEPT_REQUESTS | MESH_ALPC_PORFLG_WAITABLE_PORT;
	a->DupObjectTypes = MESH_OB_ALL_OBJECT_TYPE_CODES;
	a->MaxMessageLength = ALPC_MAX_MESSAGE + sizeof(MeshPortMessage);
	a->MaxPoolUsage = G_MAXSIZE;
	a->MaxSectionSize = G_MAXSIZE;
	a->MaxViewSize = G_MAXSIZE;
	a->MaxTotalSectionSize = G_MAXSIZE;
}

/* An attribute buffer for @flags, 8-byte aligned. */
static MeshAlpcMessageAttributes *attributes_new(const MeshAlpcNtApi *api, ULONG flags)
{
	ULONG need = 0;
	MeshAlpcMessageAttributes *a;

	api->initialize_message_attribute(flags, NULL, 0, &need);
	a = g_malloc0(MAX(need, sizeof(*a)) + 64);
	if (!NT_SUCCESS(api->initialize_message_attribute(flags, a, need + 64, &need)))
		g_error("AlpcInitializeMessageAttribute failed");
	return a;
}

/* ---- outgoing ---------------------------------------------------------- */

static Client *client_ref(Client *c)
{
	g_atomic_int_inc(&c->ref);
	return c;
}

static void client_unref(Client *c)
{
	if (c && g_atomic_int_dec_and_test(&c->ref)) {
		g_mutex_clear(&c->lock);
		g_free(c);
	}
}

static void queue_item(MeshAlpcNode *a, ItemKind kind, MeshRemoteNode *remote, char *reason)
{
	Item *it = g_new0(Item, 1);

	it->kind = kind;
	it->remote = remote;
	it->reason = reason;
	g_mutex_lock(&a->lock);
	g_queue_push_tail(&a->items, it);
	g_mutex_unlock(&a->lock);
	SetEvent(a->wake);
}

static gsize alpc_max_handles(gsize event_size)
{
	(void)event_size;
	return ALPC_MAX_HANDLES;
}

static const MeshTransportCaps alpc_caps = {
	.version = 0,
	.max_handles = alpc_max_handles,
};

static void gather(guint8 *dst, const struct iovec *iov, size_t n_iov)
{
	for (size_t i = 0; i < n_iov; i++) {
		memcpy(dst, iov[i].iov_base, iov[i].iov_len);
		dst += iov[i].iov_len;
	}
}

/* Sends one event on @port; returns the failing status. */
NTSTATUS alpc_send_event(const MeshAlpcNtApi *api, HANDLE port, const struct iovec *iov,
			   size_t n_iov, const MeshOsHandle *handles, size_t n_handles)
{
	gsize size = 0;
	gsize msg_len;
	MeshPortMessage *msg;
	g_autofree MeshAlpcMessageAttributes *attr = NULL;
	g_autofree MeshAlpcHandleAttr32 *list = NULL;
	HANDLE section = NULL;
	NTSTATUS status;

	for (size_t i = 0; i < n_iov; i++)
		size += iov[i].iov_len;
	msg_len = sizeof(*msg) + ALPC_PACKET_HEADER_SIZE +
		  (size <= ALPC_MAX_SMALL_EVENT ? size : 0);
	msg = g_malloc0(msg_len);
	msg->u1.s1.DataLength = (int16_t)(msg_len - sizeof(*msg));
	msg->u1.s1.TotalLength = (int16_t)msg_len;
	((guint8 *)(msg + 1))[0] = size <= ALPC_MAX_SMALL_EVENT ? PACKET_EVENT : PACKET_LARGE_EVENT;
	if (size <= ALPC_MAX_SMALL_EVENT)
		gather((guint8 *)(msg + 1) + ALPC_PACKET_HEADER_SIZE, iov, n_iov);
	attr = attributes_new(api, MESH_ALPC_MESSAGE_HANDLE_ATTRIBUTE |
					   MESH_ALPC_MESSAGE_VIEW_ATTRIBUTE);
	if (n_handles) {
		MeshAlpcHandleAttr *ha =
			api->get_message_attribute(attr, MESH_ALPC_MESSAGE_HANDLE_ATTRIBUTE);

		memset(ha, 0, sizeof(*ha));
		if (n_handles == 1) {
			ha->Flags = MESH_ALPC_HANDLEFLG_DUPLICATE_SAME_ACCESS;
			ha->u2.Handle = handles[0];
		} else {
			list = g_new0(MeshAlpcHandleAttr32, n_handles);
			for (size_t i = 0; i < n_handles; i++) {
				list[i].Flags = MESH_ALPC_HANDLEFLG_DUPLICATE_SAME_ACCESS;
				list[i].Handle = (ULONG)(uintptr_t)handles[i];
			}
			ha->Flags = MESH_ALPC_HANDLEFLG_INDIRECT;
			ha->u2.HandleAttrArray = list;
			ha->u3.HandleCount = (ULONG)n_handles;
		}
		attr->ValidAttributes |= MESH_ALPC_MESSAGE_HANDLE_ATTRIBUTE;
	}
	if (size > ALPC_MAX_SMALL_EVENT) {
		MeshAlpcDataViewAttr view = { 0 };
		MeshAlpcDataViewAttr *va;
		SIZE_T actual = 0;

		status = api->create_port_section(port, MESH_ALPC_VIEWFLG_SECURED_ACCESS, NULL, size,
						  &section, &actual);
		if (!NT_SUCCESS(status))
			goto out;
		view.SectionHandle = section;
		view.ViewSize = size;
		status = api->create_section_view(port, 0, &view);
		if (!NT_SUCCESS(status))
			goto out;
		gather(view.ViewBase, iov, n_iov);
		va = api->get_message_attribute(attr, MESH_ALPC_MESSAGE_VIEW_ATTRIBUTE);
		*va = view;
		va->Flags |= MESH_ALPC_VIEWFLG_AUTO_RELEASE | MESH_ALPC_VIEWFLG_SECURED_ACCESS;
		attr->ValidAttributes |= MESH_ALPC_MESSAGE_VIEW_ATTRIBUTE;
	}
	status = api->send_wait_receive_port(port, MESH_ALPC_MSGFLG_RELEASE_MESSAGE, msg,
					     attr->ValidAttributes ? attr : NULL, NULL, NULL, NULL,
					     NULL);
out:
	/* The receiver has its own view; the sender's goes with the section. */
	if (section)
		api->delete_port_section(port, 0, section);
	g_free(msg);
	return status;
}

static void sink_send(void *user_data, const struct iovec *iov, size_t n_iov,
		      const MeshOsHandle *handles, size_t n_handles)
{
	Client *c = user_data;
	NTSTATUS status;

	g_mutex_lock(&c->lock);
	if (!c->port) {
		g_mutex_unlock(&c->lock);
		return;
	}
	status = alpc_send_event(c->owner->api, c->port, iov, n_iov, handles, n_handles);
	g_mutex_unlock(&c->lock);
	if (!NT_SUCCESS(status))
		queue_item(c->owner, ITEM_FAIL, mesh_remote_node_ref(c->remote),
			   status_message("sending on the ALPC connection", status));
}

static void sink_destroy(void *user_data)
{
	client_unref(user_data);
}

static const MeshEventSink alpc_sink = {
	.version = MESH_EVENT_SINK_VERSION,
	.send = sink_send,
	.destroy = sink_destroy,
	.caps = &alpc_caps,
};

static void client_close(Client *c)
{
	HANDLE port;

	g_mutex_lock(&c->lock);
	port = c->port;
	c->port = NULL;
	g_mutex_unlock(&c->lock);
	if (port)
		c->owner->api->close(port);
}

/* Connect thread: connects to @remote's server port. */
static void do_connect(MeshAlpcNode *a, MeshRemoteNode *remote)
{
	const MeshNodeId *peer = mesh_remote_node_get_id(remote);
	OBJECT_ATTRIBUTES oa;
	UNICODE_STRING us;
	wchar_t name[ALPC_PORT_NAME_MAX];
	MeshAlpcPortAttributes pa;
	struct {
		MeshPortMessage h;
		guint8 data[CONNECTION_DATA_SIZE];
	} cm;
	HANDLE port = NULL;
	LARGE_INTEGER timeout;
	NTSTATUS status;
	Client *c;

	if (a->clients->len >= ALPC_MAX_CLIENTS) {
		mesh_remote_node_fail(remote, "too many outgoing ALPC connections");
		mesh_remote_node_unref(remote);
		return;
	}
	alpc_port_attributes(&oa, &us, name, a->directory, peer);
	port_config(&pa);
	memset(&cm, 0, sizeof(cm));
	cm.h.u1.s1.DataLength = CONNECTION_DATA_SIZE;
	cm.h.u1.s1.TotalLength = sizeof(cm);
	memcpy(cm.data, mesh_node_get_id(a->node)->bytes, 16);
	memcpy(cm.data + 16, a->secret, MESH_ALPC_SECRET_SIZE);
	/*
	 * Bounded: a server port that exists but is not served (its node hung,
	 * or shut down while a received view keeps its port open) never
	 * answers, and this thread must end for the node's shutdown to return.
	 * MESH_STATUS_TIMEOUT is a success code: checked apart.
	 */
	timeout.QuadPart = -(a->connect_timeout_us * 10);
	status = a->api->connect_port_ex(&port, &oa, NULL, &pa, 0, NULL, &cm.h, NULL, NULL, NULL,
					 &timeout);
	SecureZeroMemory(cm.data, sizeof(cm.data));
	if (status == MESH_STATUS_TIMEOUT || !NT_SUCCESS(status)) {
		if (status == MESH_STATUS_TIMEOUT && port)
			a->api->close(port);
		g_autofree char *why = status_message("NtAlpcConnectPortEx", status);

		mesh_remote_node_fail(remote, why);
		mesh_remote_node_unref(remote);
		return;
	}
	/* As upstream: nothing is sent before the server's answer arrived (a
	 * rejected connection fails this receive; CANCELED: the server went
	 * after accepting, which PORT_CLOSED reports next). */
	{
		struct {
			MeshPortMessage h;
			guint8 data[ALPC_MAX_MESSAGE];
		} m;
		SIZE_T len = sizeof(m);
		LARGE_INTEGER t = { .QuadPart = -30LL * 1000 * 10000 }; /* 30 s */
		int type;

		memset(&m.h, 0, sizeof(m.h));
		status = a->api->send_wait_receive_port(port, 0, NULL, NULL, &m.h, &len, NULL, &t);
		type = m.h.u2.s2.Type & 0xff;
		if (status == MESH_STATUS_TIMEOUT || !NT_SUCCESS(status) ||
		    (type != MESH_LPC_CONNECTION_REPLY && type != MESH_LPC_CANCELED)) {
			g_autofree char *why =
				NT_SUCCESS(status) && status != MESH_STATUS_TIMEOUT
					? g_strdup_printf("unexpected ALPC message type %d", type)
					: status_message("the ALPC connection reply", status);

			a->api->close(port);
			mesh_remote_node_fail(remote, why);
			mesh_remote_node_unref(remote);
			return;
		}
		if (m.h.u2.s2.Type & MESH_LPC_CONTINUATION_REQUIRED) {
			MeshPortMessage reply = { 0 };

			reply.u1.s1.TotalLength = sizeof(reply);
			reply.MessageId = m.h.MessageId;
			reply.u4.CallbackId = m.h.u4.CallbackId;
			a->api->send_wait_receive_port(port, MESH_ALPC_MSGFLG_RELEASE_MESSAGE, &reply,
						       NULL, NULL, NULL, NULL, NULL);
		}
	}
	c = g_new0(Client, 1);
	c->ref = 1;
	c->owner = a;
	c->peer = *peer;
	c->remote = remote;
	c->port = port;
	g_mutex_init(&c->lock);
	if (!mesh_remote_node_connect(remote, &alpc_sink, client_ref(c))) {
		/* Failed meanwhile (its sink is destroyed already): not kept. */
		client_close(c);
		mesh_remote_node_unref(c->remote);
		client_unref(c);
		return;
	}
	g_ptr_array_add(a->clients, c);
}

/* Connect thread: something arrived on a client port. FALSE: it is done. */
static gboolean client_receive(MeshAlpcNode *a, Client *c)
{
	struct {
		MeshPortMessage h;
		guint8 data[ALPC_MAX_MESSAGE];
	} m;
	SIZE_T len = sizeof(m);
	LARGE_INTEGER zero = { .QuadPart = 0 };
	HANDLE port;
	NTSTATUS status;

	g_mutex_lock(&c->lock);
	port = c->port;
	g_mutex_unlock(&c->lock);
	if (!port)
		return FALSE;
	status = a->api->send_wait_receive_port(port, 0, NULL, NULL, &m.h, &len, NULL, &zero);
	if (status == MESH_STATUS_TIMEOUT)
		return TRUE;
	if (!NT_SUCCESS(status)) {
		g_autofree char *why = status_message("receiving on an ALPC client port", status);

		mesh_remote_node_fail(c->remote, why);
		return FALSE;
	}
	switch (m.h.u2.s2.Type & 0xff) {
	case MESH_LPC_CONNECTION_REPLY:
	case MESH_LPC_CANCELED:
		return TRUE;
	case MESH_LPC_REPLY:
		c->flushed = TRUE;
		return !a->flush;
	case MESH_LPC_PORT_CLOSED:
	case MESH_LPC_CLIENT_DIED:
		mesh_remote_node_fail(c->remote, "ALPC connection closed by the node");
		return FALSE;
	default:
		return TRUE;
	}
}

static void client_drop(MeshAlpcNode *a, guint i)
{
	Client *c = g_ptr_array_steal_index(a->clients, i);

	client_close(c);
	mesh_remote_node_unref(c->remote);
	client_unref(c);
}

static void flush_clients(MeshAlpcNode *a)
{
	for (guint i = 0; i < a->clients->len; i++) {
		Client *c = a->clients->pdata[i];
		MeshPortMessage req = { 0 };
		NTSTATUS status;

		req.u1.s1.TotalLength = sizeof(req);
		g_mutex_lock(&c->lock);
		status = c->port ? a->api->send_wait_receive_port(c->port, 0, &req, NULL, NULL,
								    NULL, NULL, NULL)
				 : MESH_STATUS_INVALID_HANDLE;
		g_mutex_unlock(&c->lock);
		c->flushing = NT_SUCCESS(status);
		c->flushed = !c->flushing;
	}
}

static gpointer connect_main(gpointer data)
{
	MeshAlpcNode *a = data;
	gboolean flushing = FALSE;

	for (;;) {
		HANDLE waits[2 + ALPC_MAX_CLIENTS];
		DWORD n = 0, r, ms = INFINITE;
		Item *it;

		g_mutex_lock(&a->lock);
		it = g_queue_pop_head(&a->items);
		if (!it && a->flush && !flushing) {
			flushing = TRUE;
			g_mutex_unlock(&a->lock);
			flush_clients(a);
			continue;
		}
		g_mutex_unlock(&a->lock);
		if (it) {
			if (it->kind == ITEM_CONNECT && !flushing) {
				do_connect(a, it->remote);
			} else {
				if (it->kind == ITEM_FAIL)
					mesh_remote_node_fail(it->remote, it->reason);
				else
					mesh_remote_node_fail(it->remote, "node shutting down");
				mesh_remote_node_unref(it->remote);
			}
			g_free(it->reason);
			g_free(it);
			continue;
		}
		if (flushing) {
			gboolean all = TRUE;

			for (guint i = 0; i < a->clients->len; i++)
				all = all && ((Client *)a->clients->pdata[i])->flushed;
			if (all)
				break;
			if (a->flush_deadline >= 0) {
				gint64 left = a->flush_deadline - g_get_monotonic_time();

				if (left <= 0) {
					a->flush_ok = FALSE;
					break;
				}
				ms = (DWORD)MIN(left / 1000 + 1, 60000);
			}
		}
		waits[n++] = a->stop;
		waits[n++] = a->wake;
		for (guint i = 0; i < a->clients->len; i++) {
			Client *c = a->clients->pdata[i];

			waits[n++] = c->port;
		}
		r = WaitForMultipleObjects(n, waits, FALSE, ms);
		if (r == WAIT_OBJECT_0)
			break;
		if (r == WAIT_FAILED) {
			g_warning("ALPC: waiting on the client ports failed: %lu", GetLastError());
			break;
		}
		if (r >= WAIT_OBJECT_0 + 2 && r < WAIT_OBJECT_0 + n) {
			guint i = r - WAIT_OBJECT_0 - 2;

			if (!client_receive(a, a->clients->pdata[i])) {
				if (flushing)
					((Client *)a->clients->pdata[i])->flushed = TRUE;
				else
					client_drop(a, i);
			}
		}
	}
	while (a->clients->len)
		client_drop(a, a->clients->len - 1);
	return NULL;
}

static void connector(MeshNode *node, MeshRemoteNode *remote, void *user_data)
{
	MeshAlpcNode *a = user_data;
	MeshRemoteNode *old = NULL;
	gpointer key, value;

	(void)node;
	g_mutex_lock(&a->lock);
	if (g_hash_table_lookup_extended(a->invited, mesh_remote_node_get_id(remote), &key,
					 &value)) {
		/* Its port may not exist yet: connect once it has connected to us. */
		old = value;
		g_hash_table_steal(a->invited, key);
		g_hash_table_insert(a->invited, key, remote);
		remote = NULL;
	}
	g_mutex_unlock(&a->lock);
	if (old)
		queue_item(a, ITEM_FAIL, old, g_strdup("replaced while waiting for an invited node"));
	if (remote)
		queue_item(a, ITEM_CONNECT, remote, NULL);
}

/* The invited node @id connected to us: its port exists, so connect to it. */
static void invite_taken(MeshAlpcNode *a, const MeshNodeId *id)
{
	gpointer key, value = NULL;
	gboolean found;

	g_mutex_lock(&a->lock);
	found = g_hash_table_lookup_extended(a->invited, id, &key, &value);
	if (found)
		g_hash_table_steal(a->invited, key);
	g_mutex_unlock(&a->lock);
	if (!found)
		return;
	g_free(key);
	if (value)
		queue_item(a, ITEM_CONNECT, value, NULL);
}

/* ---- incoming ---------------------------------------------------------- */

static void server_conn_free(gpointer data)
{
	ServerConn *s = data;

	if (s->comm)
		g_error("server connection freed open");
	g_free(s);
}

/* Takes the message's handles; NULL and *n 0 if there are none or too many
 * (then they are closed). */
static MeshOsHandle *take_handles(MeshAlpcNode *a, MeshPortMessage *msg,
				  MeshAlpcMessageAttributes *attr, size_t *n, gboolean *bad)
{
	MeshAlpcHandleAttr *ha;
	MeshOsHandle *out;
	ULONG count;

	*n = 0;
	*bad = FALSE;
	if (!(attr->ValidAttributes & MESH_ALPC_MESSAGE_HANDLE_ATTRIBUTE))
		return NULL;
	ha = a->api->get_message_attribute(attr, MESH_ALPC_MESSAGE_HANDLE_ATTRIBUTE);
	count = ha->u3.HandleCount ? ha->u3.HandleCount : 1;
	out = g_new0(MeshOsHandle, count);
	for (ULONG i = 0; i < count; i++) {
		MeshAlpcMessageHandleInformation info = { .Index = i };

		if (NT_SUCCESS(a->api->query_information_message(
			    a->server->handle, msg, MESH_ALPC_MESSAGE_HANDLE_INFORMATION, &info,
			    sizeof(info), NULL)))
			out[(*n)++] = (HANDLE)(uintptr_t)info.Handle;
		else
			*bad = TRUE;
	}
	if (count > ALPC_MAX_HANDLES)
		*bad = TRUE;
	return out;
}

static void close_handles(MeshOsHandle *h, size_t n)
{
	for (size_t i = 0; i < n; i++)
		CloseHandle(h[i]);
}

static void on_datagram(MeshAlpcNode *a, ServerConn *s, MeshPortMessage *msg,
			MeshAlpcMessageAttributes *attr)
{
	const guint8 *data = (const guint8 *)(msg + 1);
	gsize len = (gsize)MAX(msg->u1.s1.DataLength, 0);
	const MeshNodeId *from = mesh_remote_node_get_id(s->remote);
	gboolean bad;
	size_t n;
	g_autofree MeshOsHandle *handles = take_handles(a, msg, attr, &n, &bad);
	MeshAlpcDataViewAttr *va = NULL;

	if (attr->ValidAttributes & MESH_ALPC_MESSAGE_VIEW_ATTRIBUTE)
		va = a->api->get_message_attribute(attr, MESH_ALPC_MESSAGE_VIEW_ATTRIBUTE);
	if (bad || len < ALPC_PACKET_HEADER_SIZE) {
		g_debug("ALPC: dropped a malformed message");
		goto drop;
	}
	if (data[0] == PACKET_EVENT && !va) {
		mesh_node_receive_event(a->node, from, data + ALPC_PACKET_HEADER_SIZE,
					len - ALPC_PACKET_HEADER_SIZE, handles, n);
		return;
	}
	if (data[0] == PACKET_LARGE_EVENT && len == ALPC_PACKET_HEADER_SIZE && va &&
	    (va->Flags & MESH_ALPC_VIEWFLG_SECURED_ACCESS) && va->ViewBase) {
		gsize size = mesh_event_get_size(va->ViewBase, va->ViewSize);
		ViewHold *v;

		if (size == 0 || size > va->ViewSize) {
			g_debug("ALPC: dropped a large event of a bad size");
			goto drop;
		}
		v = g_new0(ViewHold, 1);
		v->port = a->server;
		g_atomic_int_inc(&a->server->ref);
		v->base = va->ViewBase;
		mesh_node_receive_event_full(a->node, from, va->ViewBase, size, handles, n,
					     view_hold_free, v);
		return;
	}
	g_debug("ALPC: dropped a message of type %u", data[0]);
drop:
	close_handles(handles, n);
	if (va && va->ViewBase)
		a->api->delete_section_view(a->server->handle, 0, va->ViewBase);
}

static void on_connection_request(MeshAlpcNode *a, MeshPortMessage *msg)
{
	const guint8 *data = (const guint8 *)(msg + 1);
	MeshNodeId id;
	MeshAlpcPortAttributes pa;
	HANDLE comm = NULL;
	gboolean ok;
	NTSTATUS status;

	ok = msg->u1.s1.DataLength == CONNECTION_DATA_SIZE;
	if (ok) {
		memcpy(id.bytes, data, 16);
		/* Every check runs, so the time does not tell which failed. */
		ok = alpc_secret_equal(data + 16, a->secret) & !mesh_uuid_is_zero(&id) &
		     !mesh_uuid_equal(&id, mesh_node_get_id(a->node));
	}
	if (!ok) {
		g_debug("ALPC: rejected a connection (bad connection data or secret)");
		a->api->accept_connect_port(&comm, a->server->handle, 0, NULL, NULL, NULL, msg,
					    NULL, FALSE);
		return;
	}
	port_config(&pa);
	a->next_context++;
	status = a->api->accept_connect_port(&comm, a->server->handle, 0, NULL, &pa,
					     (void *)a->next_context, msg, NULL, TRUE);
	if (!NT_SUCCESS(status)) {
		g_debug("ALPC: NtAlpcAcceptConnectPort failed: 0x%08lx", (unsigned long)status);
		return;
	}
	ServerConn *s = g_new0(ServerConn, 1);

	s->comm = comm;
	/* A handle on the node, so that the connection's end fails it. */
	s->remote = mesh_node_add_remote(a->node, &id);
	g_hash_table_insert(a->server_conns, (gpointer)a->next_context, s);
	invite_taken(a, &id);
}

static void server_conn_close(MeshAlpcNode *a, uintptr_t context, const char *why)
{
	ServerConn *s = g_hash_table_lookup(a->server_conns, (gpointer)context);

	if (!s)
		return;
	g_hash_table_steal(a->server_conns, (gpointer)context);
	if (why)
		mesh_remote_node_fail(s->remote, why);
	mesh_remote_node_unref(s->remote);
	a->api->close(s->comm);
	s->comm = NULL;
	server_conn_free(s);
}

static gpointer recv_main(gpointer data)
{
	MeshAlpcNode *a = data;
	const MeshAlpcNtApi *api = a->api;
	g_autofree MeshPortMessage *msg = g_malloc0(sizeof(MeshPortMessage) + ALPC_MAX_MESSAGE);
	g_autofree MeshAlpcMessageAttributes *attr = attributes_new(
		api, MESH_ALPC_MESSAGE_CONTEXT_ATTRIBUTE | MESH_ALPC_MESSAGE_HANDLE_ATTRIBUTE |
			     MESH_ALPC_MESSAGE_VIEW_ATTRIBUTE);
	HANDLE waits[2] = { a->stop, a->server->handle };

	while (WaitForMultipleObjects(2, waits, FALSE, INFINITE) == WAIT_OBJECT_0 + 1) {
		for (;;) {
			SIZE_T len = sizeof(MeshPortMessage) + ALPC_MAX_MESSAGE;
			LARGE_INTEGER zero = { .QuadPart = 0 };
			MeshAlpcContextAttr *ca;
			uintptr_t context = 0;
			NTSTATUS status;

			status = api->send_wait_receive_port(a->server->handle, 0, NULL, NULL, msg,
							     &len, attr, &zero);
			if (status == MESH_STATUS_TIMEOUT)
				break;
			if (!NT_SUCCESS(status)) {
				g_warning("ALPC: receive failed: 0x%08lx", (unsigned long)status);
				WaitForSingleObject(a->stop, 100);
				break;
			}
			if (attr->ValidAttributes & MESH_ALPC_MESSAGE_CONTEXT_ATTRIBUTE) {
				ca = api->get_message_attribute(attr,
								MESH_ALPC_MESSAGE_CONTEXT_ATTRIBUTE);
				context = (uintptr_t)ca->PortContext;
			}
			switch (msg->u2.s2.Type & 0xff) {
			case MESH_LPC_CONNECTION_REQUEST:
				on_connection_request(a, msg);
				break;
			case MESH_LPC_DATAGRAM: {
				ServerConn *s = g_hash_table_lookup(a->server_conns,
								    (gpointer)context);
				if (s) {
					on_datagram(a, s, msg, attr);
				} else {
					gboolean bad;
					size_t n;
					g_autofree MeshOsHandle *h =
						take_handles(a, msg, attr, &n, &bad);

					close_handles(h, n);
				}
				break;
			}
			case MESH_LPC_REQUEST: {
				/* The flush: everything sent before it is in. */
				ServerConn *s = g_hash_table_lookup(a->server_conns,
								    (gpointer)context);
				MeshPortMessage reply = { 0 };

				reply.u1.s1.TotalLength = sizeof(reply);
				reply.MessageId = msg->MessageId;
				reply.u4.CallbackId = msg->u4.CallbackId;
				if (s)
					api->send_wait_receive_port(s->comm,
								    MESH_ALPC_MSGFLG_RELEASE_MESSAGE,
								    &reply, NULL, NULL, NULL, NULL,
								    NULL);
				break;
			}
			case MESH_LPC_PORT_CLOSED:
			case MESH_LPC_CLIENT_DIED:
				server_conn_close(a, context, "ALPC connection closed by the node");
				break;
			default:
				break;
			}
		}
	}
	return NULL;
}

/* ---- life -------------------------------------------------------------- */

MeshAlpcNode *alpc_node_new_full(const MeshAlpcNtApi *api, HANDLE directory,
				      const MeshNodeId *id, const guint8 *secret,
				      GError **error)
{
	MeshAlpcNode *a;
	MeshNodeId new_id;
	OBJECT_ATTRIBUTES oa;
	UNICODE_STRING us;
	wchar_t name[ALPC_PORT_NAME_MAX];
	MeshAlpcPortAttributes pa;
	HANDLE server = NULL;
	NTSTATUS status;

	if (!directory) {
		OBJECT_ATTRIBUTES doa = { .Length = sizeof(doa) };

		status = api->create_directory_object(&directory, DIRECTORY_ALL_ACCESS_, &doa);
		if (!NT_SUCCESS(status)) {
			g_autofree char *why = status_message("NtCreateDirectoryObject", status);

			g_set_error_literal(error, MESH_ERROR, MESH_ERROR_UNAVAILABLE, why);
			return NULL;
		}
	}
	if (!id) {
		mesh_uuid_generate(&new_id);
		id = &new_id;
	}
	alpc_port_attributes(&oa, &us, name, directory, id);
	port_config(&pa);
	status = api->create_port(&server, &oa, &pa);
	if (!NT_SUCCESS(status)) {
		g_autofree char *why = status_message("NtAlpcCreatePort", status);

		g_set_error_literal(error, MESH_ERROR,
				    status == MESH_STATUS_OBJECT_NAME_COLLISION
					    ? MESH_ERROR_DUPLICATE
					    : MESH_ERROR_UNAVAILABLE,
				    why);
		CloseHandle(directory);
		return NULL;
	}
	a = g_new0(MeshAlpcNode, 1);
	a->api = api;
	a->node = mesh_node_new_with_id(id);
	a->directory = directory;
	if (secret) {
		memcpy(a->secret, secret, MESH_ALPC_SECRET_SIZE);
	} else {
		/* 256 bits from the OS random source, as node and port ids. */
		MeshUuid r[2];

		mesh_uuid_generate(&r[0]);
		mesh_uuid_generate(&r[1]);
		memcpy(a->secret, r, MESH_ALPC_SECRET_SIZE);
		SecureZeroMemory(r, sizeof(r));
	}
	a->server = port_ref_new(api, server);
	a->stop = CreateEventW(NULL, TRUE, FALSE, NULL);
	a->wake = CreateEventW(NULL, FALSE, FALSE, NULL);
	g_mutex_init(&a->lock);
	g_queue_init(&a->items);
	a->clients = g_ptr_array_new();
	a->server_conns = g_hash_table_new(NULL, NULL);
	a->invited = g_hash_table_new_full(mesh_uuid_hash, mesh_uuid_equal, g_free, NULL);
	a->flush_ok = TRUE;
	a->connect_timeout_us = ALPC_CONNECT_TIMEOUT_US;
	mesh_node_set_connector_caps(a->node, &alpc_caps);
	mesh_node_set_connector(a->node, connector, a);
	a->recv_thread = g_thread_new("mesh-alpc-recv", recv_main, a);
	a->connect_thread = g_thread_new("mesh-alpc-connect", connect_main, a);
	return a;
}

void alpc_node_set_connect_timeout(MeshAlpcNode *a, gint64 timeout_us)
{
	g_return_if_fail(a && timeout_us > 0);
	a->connect_timeout_us = timeout_us;
}

MeshAlpcNode *mesh_alpc_node_new(GError **error)
{
	const char *missing = NULL;
	const MeshAlpcNtApi *api = alpc_nt_api_ntdll(&missing);

	g_return_val_if_fail(error == NULL || *error == NULL, NULL);
	if (!api) {
		g_set_error(error, MESH_ERROR, MESH_ERROR_UNAVAILABLE,
			    "ntdll has no %s (no ALPC here: Wine has none)", missing);
		return NULL;
	}
	return alpc_node_new_full(api, NULL, NULL, NULL, error);
}

MeshAlpcNode *mesh_alpc_node_join(MeshOsHandle directory, const MeshNodeId *id,
				  const guint8 *secret, GError **error)
{
	const char *missing = NULL;
	const MeshAlpcNtApi *api;

	if (!directory || !id || !secret) {
		if (directory)
			CloseHandle(directory);
		g_return_val_if_fail(directory && id && secret, NULL);
	}
	api = alpc_nt_api_ntdll(&missing);
	if (!api) {
		CloseHandle(directory);
		g_set_error(error, MESH_ERROR, MESH_ERROR_UNAVAILABLE,
			    "ntdll has no %s (no ALPC here: Wine has none)", missing);
		return NULL;
	}
	return alpc_node_new_full(api, directory, id, secret, error);
}

void mesh_alpc_node_invite(MeshAlpcNode *alpc, const MeshNodeId *id)
{
	g_return_if_fail(alpc && id);
	g_mutex_lock(&alpc->lock);
	if (!alpc->shut_down && !g_hash_table_contains(alpc->invited, id))
		g_hash_table_insert(alpc->invited, g_memdup2(id, sizeof(*id)), NULL);
	g_mutex_unlock(&alpc->lock);
}

void mesh_alpc_node_cancel_invite(MeshAlpcNode *alpc, const MeshNodeId *id, const char *reason)
{
	gpointer key, value = NULL;
	gboolean found;

	g_return_if_fail(alpc && id && reason);
	g_mutex_lock(&alpc->lock);
	found = g_hash_table_lookup_extended(alpc->invited, id, &key, &value);
	if (found)
		g_hash_table_steal(alpc->invited, key);
	g_mutex_unlock(&alpc->lock);
	if (!found)
		return;
	g_free(key);
	if (value)
		queue_item(alpc, ITEM_FAIL, value, g_strdup(reason));
}

MeshNode *mesh_alpc_node_get_node(MeshAlpcNode *alpc)
{
	g_return_val_if_fail(alpc, NULL);
	return alpc->node;
}

MeshOsHandle mesh_alpc_node_get_directory(MeshAlpcNode *alpc)
{
	g_return_val_if_fail(alpc, NULL);
	return alpc->directory;
}

void mesh_alpc_node_get_secret(MeshAlpcNode *alpc, guint8 *secret)
{
	g_return_if_fail(alpc && secret);
	memcpy(secret, alpc->secret, MESH_ALPC_SECRET_SIZE);
}

gboolean mesh_alpc_node_shutdown(MeshAlpcNode *alpc, gint64 timeout_us)
{
	gint64 deadline;
	gboolean ok;

	g_return_val_if_fail(alpc, FALSE);
	if (alpc->shut_down)
		return alpc->flush_ok;
	alpc->shut_down = TRUE;
	deadline = timeout_us < 0 ? -1 : g_get_monotonic_time() + timeout_us;
	ok = mesh_node_wait_idle(alpc->node, G_MAXUINT, timeout_us);
	mesh_node_set_connector(alpc->node, NULL, NULL);
	g_mutex_lock(&alpc->lock);
	alpc->flush = TRUE;
	alpc->flush_deadline = deadline;
	g_mutex_unlock(&alpc->lock);
	SetEvent(alpc->wake);
	g_thread_join(alpc->connect_thread);
	alpc->connect_thread = NULL;
	SetEvent(alpc->stop);
	g_thread_join(alpc->recv_thread);
	alpc->recv_thread = NULL;
	{
		GHashTableIter it;
		gpointer key;
		g_autoptr(GPtrArray) keys = g_ptr_array_new();

		g_hash_table_iter_init(&it, alpc->server_conns);
		while (g_hash_table_iter_next(&it, &key, NULL))
			g_ptr_array_add(keys, key);
		for (guint i = 0; i < keys->len; i++)
			server_conn_close(alpc, (uintptr_t)keys->pdata[i], NULL);
	}
	/*
	 * Nobody serves the server port any more: close it (once no received
	 * view needs it), so that a connect to this node is refused instead of
	 * waiting for an answer that never comes (which would hang the
	 * connecting node's shutdown, joining its connect thread).
	 */
	port_ref_unref(alpc->server);
	alpc->server = NULL;
	/* Connects that waited for an invited node that never came. */
	{
		GHashTableIter it;
		gpointer value;

		g_mutex_lock(&alpc->lock);
		g_hash_table_iter_init(&it, alpc->invited);
		while (g_hash_table_iter_next(&it, NULL, &value)) {
			if (value) {
				Item *item = g_new0(Item, 1);

				item->kind = ITEM_FAIL;
				item->remote = value;
				item->reason = g_strdup("node shut down before the invited node joined");
				g_queue_push_tail(&alpc->items, item);
			}
			g_hash_table_iter_remove(&it);
		}
		g_mutex_unlock(&alpc->lock);
	}
	/* Connects queued after the connect thread ended. */
	for (Item *it; (it = g_queue_pop_head(&alpc->items));) {
		mesh_remote_node_fail(it->remote, it->reason ? it->reason : "node shut down");
		mesh_remote_node_unref(it->remote);
		g_free(it->reason);
		g_free(it);
	}
	alpc->flush_ok = alpc->flush_ok && ok;
	return alpc->flush_ok;
}

void mesh_alpc_node_free(MeshAlpcNode *alpc)
{
	if (!alpc)
		return;
	if (!alpc->shut_down)
		mesh_alpc_node_shutdown(alpc, 0);
	port_ref_unref(alpc->server);
	CloseHandle(alpc->stop);
	CloseHandle(alpc->wake);
	CloseHandle(alpc->directory);
	g_ptr_array_unref(alpc->clients);
	g_hash_table_unref(alpc->server_conns);
	g_hash_table_unref(alpc->invited);
	g_mutex_clear(&alpc->lock);
	mesh_node_unref(alpc->node);
	SecureZeroMemory(alpc->secret, sizeof(alpc->secret));
	g_free(alpc);
}
