/* SPDX-License-Identifier: MIT */
/*
 * Every public function of libmeshremote called with each bad argument (a
 * NULL that is not allowed, an invalid timeout, an error already set), each
 * call in a child process of its own (test-args.h): it must return its
 * failure value with a critical, and release what it consumes, as on any
 * failure. Free and unref functions take NULL quietly.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>

#include <meshremote/meshremote.h>

#include "test-args.h"
#include "test-channel.pb-c.h"

static const ProtobufCMessageDescriptor *desc = &chantest__with_fd__descriptor;
static const MeshUuid some_id = {{1, 2, 3}};

/* A typed message holding the write end of a pipe whose read end is returned. */
static ProtobufCMessage *typed_with_fd(int *ret_r)
{
	int w;
	*ret_r = args_pipe(&w);
	Chantest__WithFd *m = malloc(sizeof(*m));
	chantest__with_fd__init(m);
	m->fd = mesh_payload_fd_new_take(w);
	return &m->base;
}

/* Whether @r reports that its senders are gone. */
static gboolean receiver_closed(MeshReceiver *r)
{
	GError *e = NULL;
	MeshMessage *m = NULL;
	gboolean closed = !mesh_receiver_recv_message(r, 0, &m, &e) &&
			  g_error_matches(e, MESH_ERROR, MESH_ERROR_CLOSED);
	g_clear_error(&e);
	mesh_message_free(m);
	return closed;
}

/* Whether the oneshot @r reports its sender gone. */
static gboolean oneshot_closed(MeshOneshotReceiver *r)
{
	GError *e = NULL;
	MeshMessage *m = NULL;
	gboolean closed = !mesh_oneshot_recv_message(r, 0, &m, &e) &&
			  g_error_matches(e, MESH_ERROR, MESH_ERROR_CLOSED);
	g_clear_error(&e);
	return closed;
}

/* A send (into a oneshot or a channel, typed or not) with a NULL sender or message. */
static void send_bad(gboolean oneshot, gboolean typed, gboolean null_sender)
{
	MeshSender *s = NULL;
	MeshReceiver *r = NULL;
	MeshOneshotSender *os = NULL;
	MeshOneshotReceiver *or = NULL;
	ProtobufCMessage *tm = NULL;
	MeshMessage *m = NULL;
	int pr = -1;

	if (null_sender && typed)
		tm = typed_with_fd(&pr);
	else if (null_sender)
		m = message_with_fd(&pr);
	else if (oneshot)
		mesh_oneshot_new(typed ? desc : NULL, &os, &or);
	else
		mesh_channel_new(typed ? desc : NULL, &s, &r);
	if (oneshot && typed)
		mesh_oneshot_send(os, tm);
	else if (oneshot)
		mesh_oneshot_send_message(os, m);
	else if (typed)
		mesh_sender_send(s, tm);
	else
		mesh_sender_send_message(s, m);
	/* The message given was freed; a oneshot sender given was dropped. */
	ARGS_EXPECT(null_sender ? args_pipe_closed(pr) : !oneshot || oneshot_closed(or));
}

static MeshRpc *rpc_new(void)
{
	MeshSender *s;
	MeshReceiver *r;
	MeshRpc *rpc = NULL;
	mesh_channel_new(NULL, &s, &r);
	Chantest__WithFd *in = malloc(sizeof(*in));
	chantest__with_fd__init(in);
	ARGS_EXPECT(!mesh_rpc_call(s, &in->base, desc, 0, &(ProtobufCMessage *){NULL}, NULL));
	ARGS_EXPECT(mesh_receiver_recv_rpc(r, desc, 0, &rpc, NULL));
	return rpc;
}

static MeshUnixNode *unode_new(void)
{
	MeshNode *node = mesh_node_new();
	MeshUnixNode *u = mesh_unix_node_new(node, NULL);
	mesh_node_unref(node);
	return u;
}

static MeshInvitation *invitation_new(int *ret_r)
{
	int w;
	*ret_r = args_pipe(&w);
	return mesh_invitation_new_take(&some_id, &some_id, &some_id, &some_id, w);
}

static void listener_func(MeshPort *port, gpointer data)
{
	mesh_port_close(port);
}

static MeshUnixListener *listener_new(void)
{
	char *dir = g_dir_make_tmp("test-args-XXXXXX", NULL);
	char *path = g_build_filename(dir, "sock", NULL);
	MeshUnixListener *l = mesh_unix_node_listen(unode_new(), path, listener_func, NULL, NULL,
						    NULL);
	ARGS_EXPECT(l);
	return l;
}

/* Channels. */

ARGS_CASE(channel_new_no_sender)
{
	MeshReceiver *r = NULL;
	mesh_channel_new(NULL, NULL, &r);
	ARGS_EXPECT(!r);
}

ARGS_CASE(channel_new_no_receiver)
{
	MeshSender *s = NULL;
	mesh_channel_new(NULL, &s, NULL);
	ARGS_EXPECT(!s);
}

ARGS_CASE(sender_clone_null) { ARGS_EXPECT(!mesh_sender_clone(NULL)); }
ARGS_CASE(sender_free_null) { mesh_sender_free(NULL); }

ARGS_CASE(sender_send_null_sender) { send_bad(FALSE, TRUE, TRUE); }
ARGS_CASE(sender_send_null_msg) { send_bad(FALSE, TRUE, FALSE); }
ARGS_CASE(sender_send_message_null_sender) { send_bad(FALSE, FALSE, TRUE); }
ARGS_CASE(sender_send_message_null_msg) { send_bad(FALSE, FALSE, FALSE); }
ARGS_CASE(sender_is_closed_null) { ARGS_EXPECT(mesh_sender_is_closed(NULL)); }
ARGS_CASE(sender_into_port_null) { ARGS_EXPECT(!mesh_sender_into_port(NULL)); }
ARGS_CASE(sender_from_port_null) { ARGS_EXPECT(!mesh_sender_from_port(NULL, NULL)); }

enum { BAD_RECEIVER, BAD_RET, BAD_ERROR };

/* A receive (from a oneshot or a channel, typed or not) with the argument @bad bad. */
static void recv_bad(gboolean oneshot, gboolean typed, int bad)
{
	MeshSender *s;
	MeshReceiver *r;
	MeshOneshotSender *os;
	MeshOneshotReceiver *or;
	ProtobufCMessage *tm = NULL;
	MeshMessage *m = NULL;
	GError *e = bad == BAD_ERROR ? args_error_set() : NULL;
	gboolean ok;

	if (oneshot)
		mesh_oneshot_new(typed ? desc : NULL, &os, &or);
	else
		mesh_channel_new(typed ? desc : NULL, &s, &r);
	if (bad == BAD_RECEIVER)
		r = NULL, or = NULL;
	ProtobufCMessage **ret_tm = bad == BAD_RET ? NULL : &tm;
	MeshMessage **ret_m = bad == BAD_RET ? NULL : &m;
	if (oneshot)
		ok = typed ? mesh_oneshot_recv(or, 0, ret_tm, &e)
			   : mesh_oneshot_recv_message(or, 0, ret_m, &e);
	else
		ok = typed ? mesh_receiver_recv(r, 0, ret_tm, &e)
			   : mesh_receiver_recv_message(r, 0, ret_m, &e);
	ARGS_EXPECT(!ok && !tm && !m);
}

ARGS_CASE(receiver_recv_null_receiver) { recv_bad(FALSE, TRUE, BAD_RECEIVER); }
ARGS_CASE(receiver_recv_null_ret) { recv_bad(FALSE, TRUE, BAD_RET); }
ARGS_CASE(receiver_recv_error_set) { recv_bad(FALSE, TRUE, BAD_ERROR); }
ARGS_CASE(receiver_recv_message_null_receiver) { recv_bad(FALSE, FALSE, BAD_RECEIVER); }
ARGS_CASE(receiver_recv_message_null_ret) { recv_bad(FALSE, FALSE, BAD_RET); }
ARGS_CASE(receiver_recv_message_error_set) { recv_bad(FALSE, FALSE, BAD_ERROR); }

ARGS_CASE(receiver_get_n_dropped_null) { ARGS_EXPECT(mesh_receiver_get_n_dropped(NULL) == 0); }
ARGS_CASE(receiver_count_senders_null) { ARGS_EXPECT(mesh_receiver_count_senders(NULL) == 0); }

static void receiver_func(MeshReceiver *r, gpointer data) {}

ARGS_CASE(receiver_set_callback_null)
{
	mesh_receiver_set_callback(NULL, NULL, receiver_func, NULL, NULL);
}

ARGS_CASE(receiver_get_fd_null) { ARGS_EXPECT(mesh_receiver_get_fd(NULL) < 0); }
ARGS_CASE(receiver_free_null) { mesh_receiver_free(NULL); }
ARGS_CASE(receiver_into_port_null) { ARGS_EXPECT(!mesh_receiver_into_port(NULL)); }
ARGS_CASE(receiver_from_port_null) { ARGS_EXPECT(!mesh_receiver_from_port(NULL, NULL)); }

/* A bridge (mesh_receiver_bridge() if @receiver_first) with a NULL sender or receiver. */
static void bridge_bad(gboolean receiver_first, gboolean null_sender)
{
	MeshSender *s;
	MeshReceiver *r;
	mesh_channel_new(NULL, &s, &r);
	MeshSender *bs = null_sender ? NULL : s;
	MeshReceiver *br = null_sender ? r : NULL;
	if (receiver_first)
		mesh_receiver_bridge(br, bs);
	else
		mesh_sender_bridge(bs, br);
	/* The other one was dropped. */
	ARGS_EXPECT(null_sender ? mesh_sender_is_closed(s) : receiver_closed(r));
}

ARGS_CASE(sender_bridge_null_sender) { bridge_bad(FALSE, TRUE); }
ARGS_CASE(sender_bridge_null_receiver) { bridge_bad(FALSE, FALSE); }
ARGS_CASE(receiver_bridge_null_receiver) { bridge_bad(TRUE, FALSE); }
ARGS_CASE(receiver_bridge_null_sender) { bridge_bad(TRUE, TRUE); }

/* Oneshot. */

ARGS_CASE(oneshot_new_no_sender)
{
	MeshOneshotReceiver *r = NULL;
	mesh_oneshot_new(NULL, NULL, &r);
	ARGS_EXPECT(!r);
}

ARGS_CASE(oneshot_new_no_receiver)
{
	MeshOneshotSender *s = NULL;
	mesh_oneshot_new(NULL, &s, NULL);
	ARGS_EXPECT(!s);
}


ARGS_CASE(oneshot_send_null_sender) { send_bad(TRUE, TRUE, TRUE); }
ARGS_CASE(oneshot_send_null_msg) { send_bad(TRUE, TRUE, FALSE); }
ARGS_CASE(oneshot_send_message_null_sender) { send_bad(TRUE, FALSE, TRUE); }
ARGS_CASE(oneshot_send_message_null_msg) { send_bad(TRUE, FALSE, FALSE); }
ARGS_CASE(oneshot_sender_free_null) { mesh_oneshot_sender_free(NULL); }

ARGS_CASE(oneshot_recv_null_receiver) { recv_bad(TRUE, TRUE, BAD_RECEIVER); }
ARGS_CASE(oneshot_recv_null_ret) { recv_bad(TRUE, TRUE, BAD_RET); }
ARGS_CASE(oneshot_recv_error_set) { recv_bad(TRUE, TRUE, BAD_ERROR); }
ARGS_CASE(oneshot_recv_message_null_receiver) { recv_bad(TRUE, FALSE, BAD_RECEIVER); }
ARGS_CASE(oneshot_recv_message_null_ret) { recv_bad(TRUE, FALSE, BAD_RET); }
ARGS_CASE(oneshot_recv_message_error_set) { recv_bad(TRUE, FALSE, BAD_ERROR); }

ARGS_CASE(oneshot_receiver_free_null) { mesh_oneshot_receiver_free(NULL); }
ARGS_CASE(oneshot_sender_into_port_null) { ARGS_EXPECT(!mesh_oneshot_sender_into_port(NULL)); }
ARGS_CASE(oneshot_sender_from_port_null)
{
	ARGS_EXPECT(!mesh_oneshot_sender_from_port(NULL, NULL));
}
ARGS_CASE(oneshot_receiver_into_port_null)
{
	ARGS_EXPECT(!mesh_oneshot_receiver_into_port(NULL));
}
ARGS_CASE(oneshot_receiver_from_port_null)
{
	ARGS_EXPECT(!mesh_oneshot_receiver_from_port(NULL, NULL));
}

/* RPC. */

enum { BAD_SENDER, BAD_INPUT, BAD_DESC, BAD_REPLY, BAD_CALL_ERROR };

/* mesh_rpc_call() with the argument @bad bad: the input is freed. */
static void rpc_call_bad(int bad)
{
	MeshSender *s;
	MeshReceiver *rr;
	ProtobufCMessage *reply = NULL;
	GError *e = bad == BAD_CALL_ERROR ? args_error_set() : NULL;
	int r = -1;
	mesh_channel_new(NULL, &s, &rr);
	ARGS_EXPECT(!mesh_rpc_call(bad == BAD_SENDER ? NULL : s,
				   bad == BAD_INPUT ? NULL : typed_with_fd(&r),
				   bad == BAD_DESC ? NULL : desc, 0, bad == BAD_REPLY ? NULL : &reply,
				   &e));
	ARGS_EXPECT(!reply);
	ARGS_EXPECT(r < 0 || args_pipe_closed(r));
}

ARGS_CASE(rpc_call_null_sender) { rpc_call_bad(BAD_SENDER); }
ARGS_CASE(rpc_call_null_input) { rpc_call_bad(BAD_INPUT); }
ARGS_CASE(rpc_call_null_desc) { rpc_call_bad(BAD_DESC); }
ARGS_CASE(rpc_call_null_ret) { rpc_call_bad(BAD_REPLY); }
ARGS_CASE(rpc_call_error_set) { rpc_call_bad(BAD_CALL_ERROR); }

static void never_cb(ProtobufCMessage *reply, const GError *error, gpointer data)
{
	ARGS_EXPECT(!"a callback after a bad argument");
}

static void never_message_cb(MeshMessage *reply, const GError *error, gpointer data)
{
	ARGS_EXPECT(!"a callback after a bad argument");
}

static void count_notify(gpointer data)
{
	(*(int *)data)++;
}

/* mesh_rpc_call_async() with the argument @bad bad: input and user data freed, no callback. */
static void rpc_call_async_bad(int bad)
{
	MeshSender *s;
	MeshReceiver *rr;
	int r = -1, notified = 0;
	mesh_channel_new(NULL, &s, &rr);
	ARGS_EXPECT(!mesh_rpc_call_async(bad == BAD_SENDER ? NULL : s,
					 bad == BAD_INPUT ? NULL : typed_with_fd(&r),
					 bad == BAD_DESC ? NULL : desc, -1, NULL,
					 bad == BAD_REPLY ? NULL : never_cb, &notified, count_notify));
	ARGS_EXPECT(notified == 1);
	ARGS_EXPECT(r < 0 || args_pipe_closed(r));
	while (g_main_context_iteration(NULL, FALSE))
		;
}

ARGS_CASE(rpc_call_async_null_sender) { rpc_call_async_bad(BAD_SENDER); }
ARGS_CASE(rpc_call_async_null_input) { rpc_call_async_bad(BAD_INPUT); }
ARGS_CASE(rpc_call_async_null_desc) { rpc_call_async_bad(BAD_DESC); }
ARGS_CASE(rpc_call_async_null_callback) { rpc_call_async_bad(BAD_REPLY); }

ARGS_CASE(rpc_call_message_async_null_sender)
{
	int notified = 0;
	ARGS_EXPECT(!mesh_rpc_call_message_async(NULL, mesh_message_new("x", 1), -1, NULL,
						 never_message_cb, &notified, count_notify));
	ARGS_EXPECT(notified == 1);
}

ARGS_CASE(rpc_call_message_async_null_callback)
{
	MeshSender *s;
	MeshReceiver *rr;
	mesh_channel_new(NULL, &s, &rr);
	ARGS_EXPECT(!mesh_rpc_call_message_async(s, mesh_message_new("x", 1), -1, NULL, NULL,
						 NULL, NULL));
}

ARGS_CASE(rpc_call_cancel_null) { mesh_rpc_call_cancel(NULL); }
ARGS_CASE(rpc_call_ref_null) { ARGS_EXPECT(!mesh_rpc_call_ref(NULL)); }
ARGS_CASE(rpc_call_unref_null) { mesh_rpc_call_unref(NULL); }
ARGS_CASE(oneshot_receiver_set_callback_null)
{
	mesh_oneshot_receiver_set_callback(NULL, NULL, NULL, NULL, NULL);
}
ARGS_CASE(oneshot_receiver_get_fd_null) { ARGS_EXPECT(mesh_oneshot_receiver_get_fd(NULL) < 0); }

ARGS_CASE(receiver_recv_rpc_null_receiver)
{
	MeshRpc *rpc = NULL;
	ARGS_EXPECT(!mesh_receiver_recv_rpc(NULL, desc, 0, &rpc, NULL) && !rpc);
}

ARGS_CASE(receiver_recv_rpc_null_desc)
{
	MeshSender *s;
	MeshReceiver *r;
	MeshRpc *rpc = NULL;
	mesh_channel_new(NULL, &s, &r);
	ARGS_EXPECT(!mesh_receiver_recv_rpc(r, NULL, 0, &rpc, NULL) && !rpc);
}

ARGS_CASE(receiver_recv_rpc_null_ret)
{
	MeshSender *s;
	MeshReceiver *r;
	mesh_channel_new(NULL, &s, &r);
	ARGS_EXPECT(!mesh_receiver_recv_rpc(r, desc, 0, NULL, NULL));
}

ARGS_CASE(receiver_recv_rpc_error_set)
{
	MeshSender *s;
	MeshReceiver *r;
	MeshRpc *rpc = NULL;
	GError *e = args_error_set();
	mesh_channel_new(NULL, &s, &r);
	ARGS_EXPECT(!mesh_receiver_recv_rpc(r, desc, 0, &rpc, &e) && !rpc);
}

ARGS_CASE(rpc_get_input_null) { ARGS_EXPECT(!mesh_rpc_get_input(NULL)); }

ARGS_CASE(rpc_complete_null_rpc)
{
	int r;
	mesh_rpc_complete(NULL, typed_with_fd(&r));
	ARGS_EXPECT(args_pipe_closed(r));
}

ARGS_CASE(rpc_complete_null_reply) { mesh_rpc_complete(rpc_new(), NULL); }

ARGS_CASE(rpc_fail_null_rpc)
{
	GError *e = args_error_set();
	mesh_rpc_fail(NULL, e);
}

/* Allowed: an empty error chain. */
ARGS_CASE(rpc_fail_null_error) { mesh_rpc_fail(rpc_new(), NULL); }
ARGS_CASE(rpc_free_null) { mesh_rpc_free(NULL); }

/* Receivers that mint senders, pending and non-failable rpc. */

ARGS_CASE(receiver_new_sender_null) { ARGS_EXPECT(!mesh_receiver_new_sender(NULL)); }
ARGS_CASE(receiver_is_terminated_null) { ARGS_EXPECT(mesh_receiver_is_terminated(NULL)); }
ARGS_CASE(oneshot_sender_is_closed_null) { ARGS_EXPECT(mesh_oneshot_sender_is_closed(NULL)); }

ARGS_CASE(rpc_complete_infallible_null_rpc)
{
	int r;
	mesh_rpc_complete_infallible(NULL, typed_with_fd(&r));
	ARGS_EXPECT(args_pipe_closed(r));
}

ARGS_CASE(rpc_complete_infallible_null_reply) { mesh_rpc_complete_infallible(rpc_new(), NULL); }

static void rpc_send_bad(gboolean infallible, int bad)
{
	int r;
	MeshSender *s;
	MeshReceiver *rx;
	GError *e = bad == BAD_CALL_ERROR ? args_error_set() : NULL;
	mesh_channel_new(NULL, &s, &rx);
	MeshSender *use = bad == BAD_SENDER ? NULL : s;
	const ProtobufCMessageDescriptor *d = bad == BAD_DESC ? NULL : desc;
	ProtobufCMessage *in = bad == BAD_INPUT ? NULL : typed_with_fd(&r);
	MeshRpcPending *p = infallible ? mesh_rpc_send_infallible(use, in, d, &e)
				       : mesh_rpc_send(use, in, d, &e);
	ARGS_EXPECT(p == NULL);
	if (bad != BAD_INPUT)
		ARGS_EXPECT(args_pipe_closed(r)); /* taken, and nothing sent */
	MeshMessage *m = NULL;
	ARGS_EXPECT(!mesh_receiver_recv_message(rx, 0, &m, NULL)); /* nothing was sent */
	g_clear_error(&e);
	mesh_sender_free(s);
	mesh_receiver_free(rx);
}

ARGS_CASE(rpc_send_null_sender) { rpc_send_bad(FALSE, BAD_SENDER); }
ARGS_CASE(rpc_send_null_input) { rpc_send_bad(FALSE, BAD_INPUT); }
ARGS_CASE(rpc_send_null_desc) { rpc_send_bad(FALSE, BAD_DESC); }
ARGS_CASE(rpc_send_error_set) { rpc_send_bad(FALSE, BAD_CALL_ERROR); }
ARGS_CASE(rpc_send_infallible_null_sender) { rpc_send_bad(TRUE, BAD_SENDER); }
ARGS_CASE(rpc_send_infallible_null_desc) { rpc_send_bad(TRUE, BAD_DESC); }

ARGS_CASE(rpc_call_infallible_null_sender)
{
	int r;
	ProtobufCMessage *reply = NULL;
	ARGS_EXPECT(!mesh_rpc_call_infallible(NULL, typed_with_fd(&r), desc, 0, &reply, NULL));
	ARGS_EXPECT(args_pipe_closed(r));
}

ARGS_CASE(rpc_call_infallible_null_ret)
{
	int r;
	MeshSender *s;
	MeshReceiver *rx;
	mesh_channel_new(NULL, &s, &rx);
	ARGS_EXPECT(!mesh_rpc_call_infallible(s, typed_with_fd(&r), desc, 0, NULL, NULL));
	ARGS_EXPECT(args_pipe_closed(r));
	mesh_sender_free(s);
	mesh_receiver_free(rx);
}

ARGS_CASE(rpc_pending_wait_null)
{
	ProtobufCMessage *reply = NULL;
	ARGS_EXPECT(!mesh_rpc_pending_wait(NULL, 0, &reply, NULL));
}

ARGS_CASE(rpc_pending_free_null) { mesh_rpc_pending_free(NULL); }

/* Pipes and cells. */

ARGS_CASE(pipe_new_no_read)
{
	MeshWritePipe *w = NULL;
	mesh_pipe_new(NULL, &w);
	ARGS_EXPECT(w == NULL);
}

ARGS_CASE(read_pipe_read_null)
{
	char buf[4];
	ARGS_EXPECT(mesh_read_pipe_read(NULL, buf, sizeof(buf), 0, NULL) == -1);
}

ARGS_CASE(read_pipe_read_error_set)
{
	MeshReadPipe *r;
	MeshWritePipe *w;
	char buf[4];
	GError *e = args_error_set();
	mesh_pipe_new(&r, &w);
	ARGS_EXPECT(mesh_read_pipe_read(r, buf, sizeof(buf), 0, &e) == -1);
	g_clear_error(&e);
	mesh_read_pipe_free(r);
	mesh_write_pipe_free(w);
}

ARGS_CASE(read_pipe_get_fd_null) { ARGS_EXPECT(mesh_read_pipe_get_fd(NULL) < 0); }
ARGS_CASE(read_pipe_set_callback_null) { mesh_read_pipe_set_callback(NULL, NULL, NULL, NULL, NULL); }
ARGS_CASE(read_pipe_free_null) { mesh_read_pipe_free(NULL); }
ARGS_CASE(read_pipe_into_message_null) { ARGS_EXPECT(!mesh_read_pipe_into_message(NULL)); }

ARGS_CASE(read_pipe_from_message_error_set)
{
	int r;
	GError *e = args_error_set();
	ARGS_EXPECT(!mesh_read_pipe_from_message(message_with_fd(&r), &e));
	ARGS_EXPECT(args_pipe_closed(r));
	g_clear_error(&e);
}

ARGS_CASE(write_pipe_write_null) { ARGS_EXPECT(mesh_write_pipe_write(NULL, "x", 1, 0, NULL) == -1); }
ARGS_CASE(write_pipe_write_all_null) { ARGS_EXPECT(!mesh_write_pipe_write_all(NULL, "x", 1, 0, NULL)); }

ARGS_CASE(write_pipe_write_bad_timeout)
{
	MeshReadPipe *r;
	MeshWritePipe *w;
	GError *e = NULL;
	mesh_pipe_new(&r, &w);
	ARGS_EXPECT(mesh_write_pipe_write(w, "x", 1, -5, &e) == -1);
	ARGS_EXPECT(g_error_matches(e, MESH_ERROR, MESH_ERROR_INVALID_ARGUMENT));
	g_clear_error(&e);
	mesh_read_pipe_free(r);
	mesh_write_pipe_free(w);
}

ARGS_CASE(write_pipe_get_fd_null) { ARGS_EXPECT(mesh_write_pipe_get_fd(NULL) < 0); }
ARGS_CASE(write_pipe_set_callback_null) { mesh_write_pipe_set_callback(NULL, NULL, NULL, NULL, NULL); }
ARGS_CASE(write_pipe_free_null) { mesh_write_pipe_free(NULL); }
ARGS_CASE(write_pipe_into_message_null) { ARGS_EXPECT(!mesh_write_pipe_into_message(NULL)); }

ARGS_CASE(write_pipe_from_message_null) { ARGS_EXPECT(!mesh_write_pipe_from_message(NULL, NULL)); }

ARGS_CASE(cell_updater_new_null) { ARGS_EXPECT(!mesh_cell_updater_new(NULL)); }

/* A value holding resources is refused, and released. */
ARGS_CASE(cell_updater_new_resources)
{
	int r;
	ARGS_EXPECT(!mesh_cell_updater_new(typed_with_fd(&r)));
	ARGS_EXPECT(args_pipe_closed(r));
}

ARGS_CASE(cell_new_no_updater)
{
	int r;
	MeshCell *c = NULL;
	mesh_cell_new(typed_with_fd(&r), NULL, &c);
	ARGS_EXPECT(c == NULL && args_pipe_closed(r));
}

ARGS_CASE(cell_updater_new_cell_null) { ARGS_EXPECT(!mesh_cell_updater_new_cell(NULL)); }
ARGS_CASE(cell_updater_get_null) { ARGS_EXPECT(!mesh_cell_updater_get(NULL)); }

ARGS_CASE(cell_updater_set_null)
{
	int r;
	ARGS_EXPECT(!mesh_cell_updater_set(NULL, typed_with_fd(&r), 0, NULL));
	ARGS_EXPECT(args_pipe_closed(r));
}

/* A value of another type than the updater's: refused, and released. */
ARGS_CASE(cell_updater_set_other_type)
{
	int r;
	Chantest__Sum *v = malloc(sizeof(*v));
	chantest__sum__init(v);
	MeshCellUpdater *u = mesh_cell_updater_new(&v->base);
	ARGS_EXPECT(!mesh_cell_updater_set(u, typed_with_fd(&r), 0, NULL));
	ARGS_EXPECT(args_pipe_closed(r));
	mesh_cell_updater_free(u);
}

ARGS_CASE(cell_updater_count_cells_null) { ARGS_EXPECT(mesh_cell_updater_count_cells(NULL) == 0); }
ARGS_CASE(cell_updater_free_null) { mesh_cell_updater_free(NULL); }
ARGS_CASE(cell_get_null) { ARGS_EXPECT(!mesh_cell_get(NULL)); }
ARGS_CASE(cell_wait_next_null) { ARGS_EXPECT(!mesh_cell_wait_next(NULL, 0, NULL)); }
ARGS_CASE(cell_set_callback_null) { mesh_cell_set_callback(NULL, NULL, NULL, NULL, NULL); }
ARGS_CASE(cell_get_fd_null) { ARGS_EXPECT(mesh_cell_get_fd(NULL) < 0); }
ARGS_CASE(cell_clone_null) { ARGS_EXPECT(!mesh_cell_clone(NULL)); }
ARGS_CASE(cell_free_null) { mesh_cell_free(NULL); }
ARGS_CASE(cell_into_message_null) { ARGS_EXPECT(!mesh_cell_into_message(NULL)); }

ARGS_CASE(cell_from_message_null_desc)
{
	int r;
	ARGS_EXPECT(!mesh_cell_from_message(message_with_fd(&r), NULL, NULL));
	ARGS_EXPECT(args_pipe_closed(r));
}

/* Messages. */

ARGS_CASE(message_new_null_data) { ARGS_EXPECT(!mesh_message_new(NULL, 5)); }
ARGS_CASE(message_new_null_data_empty)
{
	MeshMessage *m = mesh_message_new(NULL, 0);
	ARGS_EXPECT(m);
	mesh_message_free(m);
}
ARGS_CASE(message_new_typed_take_null) { ARGS_EXPECT(!mesh_message_new_typed_take(NULL)); }
ARGS_CASE(message_free_null) { mesh_message_free(NULL); }
ARGS_CASE(message_add_fd_null) { ARGS_EXPECT(mesh_message_add_fd(NULL, 0) < 0); }

ARGS_CASE(message_add_fd_take_null)
{
	int w;
	int r = args_pipe(&w);
	ARGS_EXPECT(mesh_message_add_fd_take(NULL, w) < 0);
	ARGS_EXPECT(fcntl(w, F_GETFD) >= 0); /* taken only on success */
	close(r);
}

ARGS_CASE(message_add_port_take_null_msg)
{
	MeshPort *a, *b;
	mesh_port_new_pair(&a, &b);
	ARGS_EXPECT(mesh_message_add_port_take(NULL, a) < 0);
}

ARGS_CASE(message_add_port_take_null_port)
{
	ARGS_EXPECT(mesh_message_add_port_take(mesh_message_new(NULL, 0), NULL) < 0);
}

ARGS_CASE(message_get_data_null_msg)
{
	size_t size = 7;
	ARGS_EXPECT(!mesh_message_get_data(NULL, &size));
}

ARGS_CASE(message_get_data_null_size)
{
	ARGS_EXPECT(!mesh_message_get_data(mesh_message_new("x", 1), NULL));
}

ARGS_CASE(message_get_n_resources_null) { ARGS_EXPECT(mesh_message_get_n_resources(NULL) == 0); }
ARGS_CASE(message_steal_fd_null) { ARGS_EXPECT(mesh_message_steal_fd(NULL, 0) < 0); }
ARGS_CASE(message_steal_port_null) { ARGS_EXPECT(!mesh_message_steal_port(NULL, 0)); }

ARGS_CASE(message_into_typed_null_msg) { ARGS_EXPECT(!mesh_message_into_typed(NULL, desc, NULL)); }

ARGS_CASE(message_into_typed_null_desc)
{
	int r;
	ARGS_EXPECT(!mesh_message_into_typed(message_with_fd(&r), NULL, NULL));
	ARGS_EXPECT(args_pipe_closed(r));
}

ARGS_CASE(message_into_typed_error_set)
{
	int r;
	GError *e = args_error_set();
	ARGS_EXPECT(!mesh_message_into_typed(message_with_fd(&r), desc, &e));
	ARGS_EXPECT(args_pipe_closed(r));
}

/* Nodes and ids. */

ARGS_CASE(uuid_generate_null) { mesh_uuid_generate(NULL); }
ARGS_CASE(uuid_is_zero_null) { ARGS_EXPECT(!mesh_uuid_is_zero(NULL)); }

ARGS_CASE(uuid_to_string_null_id)
{
	char buf[33];
	ARGS_EXPECT(!mesh_uuid_to_string(NULL, buf));
}

ARGS_CASE(uuid_to_string_null_buf) { ARGS_EXPECT(!mesh_uuid_to_string(&some_id, NULL)); }
ARGS_CASE(node_new_with_id_null) { ARGS_EXPECT(!mesh_node_new_with_id(NULL)); }
ARGS_CASE(node_ref_null) { ARGS_EXPECT(!mesh_node_ref(NULL)); }
ARGS_CASE(node_unref_null) { mesh_node_unref(NULL); }
ARGS_CASE(node_get_id_null) { ARGS_EXPECT(!mesh_node_get_id(NULL)); }
ARGS_CASE(node_count_ports_null) { ARGS_EXPECT(mesh_node_count_ports(NULL) == 0); }
ARGS_CASE(node_count_remotes_null) { ARGS_EXPECT(mesh_node_count_remotes(NULL) == 0); }

static void connector(MeshNode *node, MeshRemoteNode *remote, void *data) {}

ARGS_CASE(node_set_connector_null) { mesh_node_set_connector(NULL, connector, NULL); }
ARGS_CASE(node_add_remote_null_node) { ARGS_EXPECT(!mesh_node_add_remote(NULL, &some_id)); }
ARGS_CASE(node_add_remote_null_id)
{
	ARGS_EXPECT(!mesh_node_add_remote(mesh_node_new(), NULL));
}

static void sink_send(void *data, const struct iovec *iov, size_t n_iov, const int *fds,
		      size_t n_fds)
{
}

static void sink_destroy(void *data)
{
	(*(int *)data)++;
}

static const MeshEventSink sink = {0, sink_send, sink_destroy};

ARGS_CASE(remote_node_connect_null_remote)
{
	int destroyed = 0;
	ARGS_EXPECT(!mesh_remote_node_connect(NULL, &sink, &destroyed));
	ARGS_EXPECT(destroyed == 1);
}

ARGS_CASE(remote_node_connect_null_sink)
{
	MeshRemoteNode *remote = mesh_node_add_remote(mesh_node_new(), &some_id);
	ARGS_EXPECT(!mesh_remote_node_connect(remote, NULL, NULL));
}

ARGS_CASE(remote_node_connect_null_send)
{
	int destroyed = 0;
	MeshEventSink no_send = {0, NULL, sink_destroy};
	MeshRemoteNode *remote = mesh_node_add_remote(mesh_node_new(), &some_id);
	ARGS_EXPECT(!mesh_remote_node_connect(remote, &no_send, &destroyed));
	ARGS_EXPECT(destroyed == 1);
}

ARGS_CASE(remote_node_fail_null_remote) { mesh_remote_node_fail(NULL, "reason"); }

ARGS_CASE(remote_node_fail_null_reason)
{
	mesh_remote_node_fail(mesh_node_add_remote(mesh_node_new(), &some_id), NULL);
}

ARGS_CASE(node_set_connector_caps_null) { mesh_node_set_connector_caps(NULL, NULL); }
ARGS_CASE(remote_node_set_features_null)
{
	mesh_remote_node_set_features(NULL, MESH_REMOTE_FEATURE_PROXY_DONE);
}
ARGS_CASE(event_get_size_null) { ARGS_EXPECT(mesh_event_get_size(NULL, 40) == 0); }
ARGS_CASE(node_wait_idle_null) { ARGS_EXPECT(!mesh_node_wait_idle(NULL, 0, 0)); }
ARGS_CASE(node_wait_idle_bad_timeout)
{
	ARGS_EXPECT(!mesh_node_wait_idle(mesh_node_new(), 0, -5));
}

static gboolean hook_run_once(void *data, gint64 deadline, gboolean *ret_expired)
{
	return FALSE;
}

static void hook_wakeup(void *data) {}

ARGS_CASE(io_hook_new_null) { ARGS_EXPECT(!mesh_io_hook_new(NULL, NULL)); }
ARGS_CASE(io_hook_new_no_run_once)
{
	MeshIoHookFuncs funcs = {.wakeup = hook_wakeup};
	ARGS_EXPECT(!mesh_io_hook_new(&funcs, NULL));
}
ARGS_CASE(io_hook_new_for_context_null) { ARGS_EXPECT(!mesh_io_hook_new_for_context(NULL)); }
ARGS_CASE(io_hook_acquire_context_null) { ARGS_EXPECT(!mesh_io_hook_acquire_context(NULL)); }
ARGS_CASE(io_hook_acquire_context_not_context)
{
	MeshIoHookFuncs funcs = {.run_once = hook_run_once, .wakeup = hook_wakeup};
	ARGS_EXPECT(!mesh_io_hook_acquire_context(mesh_io_hook_new(&funcs, NULL)));
}
ARGS_CASE(main_context_iterate_until_null) { ARGS_EXPECT(!mesh_main_context_iterate_until(NULL, 0)); }
ARGS_CASE(io_hook_detach_null) { mesh_io_hook_detach(NULL); }
ARGS_CASE(io_hook_ref_null) { ARGS_EXPECT(!mesh_io_hook_ref(NULL)); }
ARGS_CASE(io_hook_unref_null) { mesh_io_hook_unref(NULL); }
ARGS_CASE(node_set_io_hook_null) { mesh_node_set_io_hook(NULL, NULL); }

ARGS_CASE(p2p_link_get_node_null) { ARGS_EXPECT(!mesh_p2p_link_get_node(NULL)); }
ARGS_CASE(p2p_link_get_peer_id_null)
{
	MeshNodeId id;
	ARGS_EXPECT(!mesh_p2p_link_get_peer_id(NULL, &id));
}
ARGS_CASE(p2p_link_get_state_null)
{
	ARGS_EXPECT(mesh_p2p_link_get_state(NULL, NULL) == MESH_P2P_LINK_FAILED);
}
ARGS_CASE(p2p_link_set_ended_func_null) { mesh_p2p_link_set_ended_func(NULL, NULL, NULL, NULL); }
ARGS_CASE(p2p_link_set_send_limit_null) { mesh_p2p_link_set_send_limit(NULL, 1, 0); }
ARGS_CASE(p2p_link_shutdown_null) { ARGS_EXPECT(!mesh_p2p_link_shutdown(NULL, 0)); }
ARGS_CASE(p2p_link_free_null) { mesh_p2p_link_free(NULL); }
/* A bad fd or no port is a runtime error: the fds and the port are taken. */
ARGS_CASE(p2p_link_new_take_bad_fd)
{
	GError *error = NULL;
	MeshPort *a, *b;
	mesh_port_new_pair(&a, &b);
	ARGS_EXPECT(!mesh_p2p_link_new_take(NULL, -1, -1, a, NULL, &error));
	ARGS_EXPECT(g_error_matches(error, MESH_ERROR, MESH_ERROR_INVALID_ARGUMENT));
}

ARGS_CASE(remote_node_ref_null) { ARGS_EXPECT(!mesh_remote_node_ref(NULL)); }
ARGS_CASE(remote_node_unref_null) { mesh_remote_node_unref(NULL); }
ARGS_CASE(remote_node_get_id_null) { ARGS_EXPECT(!mesh_remote_node_get_id(NULL)); }

static const MeshUuid other_id = {{4, 5, 6}};

ARGS_CASE(node_add_port_null_node)
{
	ARGS_EXPECT(!mesh_node_add_port(NULL, &some_id, &other_id, &some_id));
}
ARGS_CASE(node_add_port_null_id)
{
	ARGS_EXPECT(!mesh_node_add_port(mesh_node_new(), NULL, &other_id, &some_id));
}
ARGS_CASE(node_add_port_null_peer_node)
{
	ARGS_EXPECT(!mesh_node_add_port(mesh_node_new(), &some_id, NULL, &some_id));
}
ARGS_CASE(node_add_port_null_peer_port)
{
	ARGS_EXPECT(!mesh_node_add_port(mesh_node_new(), &some_id, &other_id, NULL));
}

/* Calls mesh_node_receive_event() with a bad argument: the fds it got are closed. */
static void receive_event_bad(gboolean null_node, gboolean null_from, gboolean null_data,
			      gboolean full)
{
	int fds[2], r[2];
	static const uint8_t data[4];
	int freed = 0;
	r[0] = args_pipe(&fds[0]);
	r[1] = args_pipe(&fds[1]);
	MeshNode *node = null_node ? NULL : mesh_node_new();
	if (full)
		mesh_node_receive_event_full(node, null_from ? NULL : &other_id,
					     null_data ? NULL : data, sizeof(data), fds, 2,
					     sink_destroy, &freed);
	else
		mesh_node_receive_event(node, null_from ? NULL : &other_id,
					null_data ? NULL : data, sizeof(data), fds, 2);
	ARGS_EXPECT(args_pipe_closed(r[0]) && args_pipe_closed(r[1]));
	ARGS_EXPECT(freed == (full ? 1 : 0));
}

ARGS_CASE(node_receive_event_null_node) { receive_event_bad(TRUE, FALSE, FALSE, FALSE); }
ARGS_CASE(node_receive_event_null_from) { receive_event_bad(FALSE, TRUE, FALSE, FALSE); }
ARGS_CASE(node_receive_event_null_data) { receive_event_bad(FALSE, FALSE, TRUE, FALSE); }

ARGS_CASE(node_receive_event_null_fds)
{
	static const uint8_t data[4];
	mesh_node_receive_event(mesh_node_new(), &other_id, data, sizeof(data), NULL, 2);
}

ARGS_CASE(node_receive_event_full_null_node) { receive_event_bad(TRUE, FALSE, FALSE, TRUE); }
ARGS_CASE(node_receive_event_full_null_from) { receive_event_bad(FALSE, TRUE, FALSE, TRUE); }
ARGS_CASE(node_receive_event_full_null_data) { receive_event_bad(FALSE, FALSE, TRUE, TRUE); }

/* Ports. */

ARGS_CASE(port_new_pair_null_a)
{
	MeshPort *b = NULL;
	mesh_port_new_pair(NULL, &b);
	ARGS_EXPECT(!b);
}

ARGS_CASE(port_new_pair_null_b)
{
	MeshPort *a = NULL;
	mesh_port_new_pair(&a, NULL);
	ARGS_EXPECT(!a);
}

ARGS_CASE(port_close_null) { mesh_port_close(NULL); }

ARGS_CASE(port_bridge_null_a)
{
	MeshSender *s;
	mesh_port_bridge(NULL, port_watched(&s));
	ARGS_EXPECT(mesh_sender_is_closed(s));
}

ARGS_CASE(port_bridge_null_b)
{
	MeshSender *s;
	mesh_port_bridge(port_watched(&s), NULL);
	ARGS_EXPECT(mesh_sender_is_closed(s));
}

ARGS_CASE(port_as_object_null) { ARGS_EXPECT(!mesh_port_as_object(NULL)); }
/* Allowed: what a field that holds no port gives. */
ARGS_CASE(port_from_object_null) { ARGS_EXPECT(!mesh_port_from_object(NULL)); }
ARGS_CASE(port_into_field_null) { ARGS_EXPECT(!mesh_port_into_field(NULL)); }
ARGS_CASE(port_steal_from_field_null) { ARGS_EXPECT(!mesh_port_steal_from_field(NULL)); }

/* The Unix node. */

ARGS_CASE(unix_node_new_null) { ARGS_EXPECT(!mesh_unix_node_new(NULL, NULL)); }
ARGS_CASE(unix_node_get_node_null) { ARGS_EXPECT(!mesh_unix_node_get_node(NULL)); }

/* mesh_unix_node_connect_take() with a bad argument: @fd is closed. */
static void connect_take_bad(gboolean null_unode, gboolean null_peer, gboolean error_set)
{
	int sv[2];
	GError *e = error_set ? args_error_set() : NULL;
	ARGS_EXPECT(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
	ARGS_EXPECT(!mesh_unix_node_connect_take(null_unode ? NULL : unode_new(),
						 null_peer ? NULL : &other_id, sv[0], &e));
	ARGS_EXPECT(fcntl(sv[0], F_GETFD) < 0);
}

ARGS_CASE(unix_node_connect_take_null_unode) { connect_take_bad(TRUE, FALSE, FALSE); }
ARGS_CASE(unix_node_connect_take_null_peer) { connect_take_bad(FALSE, TRUE, FALSE); }
ARGS_CASE(unix_node_connect_take_error_set) { connect_take_bad(FALSE, FALSE, TRUE); }

/* mesh_invitation_new_take() with id number @null_arg NULL: the fd is closed. */
static void invitation_new_take_bad(int null_arg)
{
	int w;
	int r = args_pipe(&w);
	const MeshUuid *ids[4] = {&some_id, &some_id, &other_id, &other_id};
	ids[null_arg] = NULL;
	ARGS_EXPECT(!mesh_invitation_new_take(ids[0], ids[1], ids[2], ids[3], w));
	ARGS_EXPECT(args_pipe_closed(r));
}

ARGS_CASE(invitation_new_take_null_local_node) { invitation_new_take_bad(0); }
ARGS_CASE(invitation_new_take_null_local_port) { invitation_new_take_bad(1); }
ARGS_CASE(invitation_new_take_null_remote_node) { invitation_new_take_bad(2); }
ARGS_CASE(invitation_new_take_null_remote_port) { invitation_new_take_bad(3); }

ARGS_CASE(invitation_get_address_null)
{
	MeshNodeId id;
	mesh_invitation_get_address(NULL, &id, NULL, NULL, NULL);
}

ARGS_CASE(invitation_get_fd_null) { ARGS_EXPECT(mesh_invitation_get_fd(NULL) == -1); }
ARGS_CASE(invitation_get_extensions_null) { ARGS_EXPECT(mesh_invitation_get_extensions(NULL) == 0); }
ARGS_CASE(invitation_set_extensions_null) { mesh_invitation_set_extensions(NULL, 1); }
ARGS_CASE(invitation_steal_fd_null) { ARGS_EXPECT(mesh_invitation_steal_fd(NULL) == -1); }
ARGS_CASE(invitation_free_null) { mesh_invitation_free(NULL); }

/* mesh_unix_node_invite() with a bad argument: @port is closed. */
static void invite_bad(gboolean null_unode, gboolean null_ret, gboolean error_set)
{
	MeshSender *s;
	MeshInvitation *inv = NULL;
	GError *e = error_set ? args_error_set() : NULL;
	ARGS_EXPECT(!mesh_unix_node_invite(null_unode ? NULL : unode_new(), port_watched(&s), -1,
					   null_ret ? NULL : &inv, &e));
	ARGS_EXPECT(!inv);
	ARGS_EXPECT(mesh_sender_is_closed(s));
}

ARGS_CASE(unix_node_invite_null_unode) { invite_bad(TRUE, FALSE, FALSE); }
ARGS_CASE(unix_node_invite_null_ret) { invite_bad(FALSE, TRUE, FALSE); }
ARGS_CASE(unix_node_invite_error_set) { invite_bad(FALSE, FALSE, TRUE); }

ARGS_CASE(unix_node_invite_null_port)
{
	MeshInvitation *inv = NULL;
	ARGS_EXPECT(!mesh_unix_node_invite(unode_new(), NULL, -1, &inv, NULL) && !inv);
}

ARGS_CASE(unix_node_offer_leadership_null) { ARGS_EXPECT(!mesh_unix_node_offer_leadership(NULL)); }
ARGS_CASE(unix_node_is_leader_null) { ARGS_EXPECT(!mesh_unix_node_is_leader(NULL)); }

/* mesh_unix_node_accept_leadership() with a bad argument: @offer is closed. */
static void accept_bad(gboolean null_unode, gboolean error_set)
{
	MeshSender *s;
	GError *e = error_set ? args_error_set() : NULL;
	ARGS_EXPECT(!mesh_unix_node_accept_leadership(null_unode ? NULL : unode_new(),
						      port_watched(&s), &e));
	ARGS_EXPECT(mesh_sender_is_closed(s));
}

ARGS_CASE(unix_node_accept_leadership_null_unode) { accept_bad(TRUE, FALSE); }
ARGS_CASE(unix_node_accept_leadership_error_set) { accept_bad(FALSE, TRUE); }
ARGS_CASE(unix_node_accept_leadership_null_offer)
{
	ARGS_EXPECT(!mesh_unix_node_accept_leadership(unode_new(), NULL, NULL));
}

ARGS_CASE(unix_node_join_null_invitation)
{
	MeshPort *port = NULL;
	ARGS_EXPECT(!mesh_unix_node_join(NULL, NULL, -1, &port, NULL) && !port);
}

ARGS_CASE(unix_node_join_null_ret)
{
	int r;
	ARGS_EXPECT(!mesh_unix_node_join(invitation_new(&r), NULL, -1, NULL, NULL));
	ARGS_EXPECT(args_pipe_closed(r));
}

ARGS_CASE(unix_node_join_error_set)
{
	int r;
	MeshPort *port = NULL;
	GError *e = args_error_set();
	ARGS_EXPECT(!mesh_unix_node_join(invitation_new(&r), NULL, -1, &port, &e) && !port);
	ARGS_EXPECT(args_pipe_closed(r));
}

ARGS_CASE(unix_node_listen_null_unode)
{
	ARGS_EXPECT(!mesh_unix_node_listen(NULL, "/nonexistent/sock", listener_func, NULL, NULL,
					   NULL));
}

ARGS_CASE(unix_node_listen_null_path)
{
	ARGS_EXPECT(!mesh_unix_node_listen(unode_new(), NULL, listener_func, NULL, NULL, NULL));
}

ARGS_CASE(unix_node_listen_null_func)
{
	ARGS_EXPECT(
		!mesh_unix_node_listen(unode_new(), "/nonexistent/sock", NULL, NULL, NULL, NULL));
}

ARGS_CASE(unix_node_listen_error_set)
{
	GError *e = args_error_set();
	ARGS_EXPECT(!mesh_unix_node_listen(unode_new(), "/nonexistent/sock", listener_func, NULL,
					   NULL, &e));
}

ARGS_CASE(unix_listener_set_allowed_uid_null) { mesh_unix_listener_set_allowed_uid(NULL, 0); }
ARGS_CASE(unix_listener_set_handshake_limits_null)
{
	mesh_unix_listener_set_handshake_limits(NULL, -1, 1);
}
ARGS_CASE(unix_listener_set_handshake_limits_bad_timeout)
{
	mesh_unix_listener_set_handshake_limits(listener_new(), -5, 1);
}
ARGS_CASE(unix_listener_set_handshake_limits_no_pending)
{
	mesh_unix_listener_set_handshake_limits(listener_new(), -1, 0);
}
ARGS_CASE(unix_listener_free_null) { mesh_unix_listener_free(NULL); }

ARGS_CASE(unix_node_join_by_path_null_path)
{
	MeshPort *port = NULL;
	ARGS_EXPECT(!mesh_unix_node_join_by_path(NULL, NULL, -1, &port, NULL) && !port);
}

ARGS_CASE(unix_node_join_by_path_null_ret)
{
	ARGS_EXPECT(!mesh_unix_node_join_by_path("/nonexistent/sock", NULL, -1, NULL, NULL));
}

ARGS_CASE(unix_node_join_by_path_error_set)
{
	MeshPort *port = NULL;
	GError *e = args_error_set();
	ARGS_EXPECT(!mesh_unix_node_join_by_path("/nonexistent/sock", NULL, -1, &port, &e) &&
		    !port);
}

ARGS_CASE(unix_node_set_peer_describer_null)
{
	mesh_unix_node_set_peer_describer(NULL, NULL, NULL);
}
ARGS_CASE(unix_node_shutdown_null) { ARGS_EXPECT(!mesh_unix_node_shutdown(NULL, -1)); }
ARGS_CASE(unix_node_shutdown_bad_timeout)
{
	ARGS_EXPECT(!mesh_unix_node_shutdown(unode_new(), -5));
}
ARGS_CASE(unix_node_free_null) { mesh_unix_node_free(NULL); }

/* Cancel contexts (mesh-cancel.h). */

ARGS_CASE(cancel_context_clone_null) { ARGS_EXPECT(!mesh_cancel_context_clone(NULL)); }
ARGS_CASE(cancel_context_with_cancel_null)
{
	MeshCancel *c = NULL;
	ARGS_EXPECT(!mesh_cancel_context_with_cancel(NULL, &c) && !c);
}
ARGS_CASE(cancel_context_with_cancel_no_ret)
{
	MeshCancelContext *ctx = mesh_cancel_context_new();
	ARGS_EXPECT(!mesh_cancel_context_with_cancel(ctx, NULL));
	mesh_cancel_context_free(ctx);
}
ARGS_CASE(cancel_context_with_deadline_null)
{
	MeshCancelContext *ctx = mesh_cancel_context_new();
	ARGS_EXPECT(!mesh_cancel_context_with_deadline(ctx, NULL));
	mesh_cancel_context_free(ctx);
}
ARGS_CASE(cancel_context_with_timeout_bad)
{
	MeshCancelContext *ctx = mesh_cancel_context_new();
	ARGS_EXPECT(!mesh_cancel_context_with_timeout(ctx, -2));
	mesh_cancel_context_free(ctx);
}
ARGS_CASE(cancel_context_wait_bad_timeout)
{
	MeshCancelContext *ctx = mesh_cancel_context_new();
	GError *e = NULL;
	ARGS_EXPECT(!mesh_cancel_context_wait(ctx, -2, NULL, &e));
	ARGS_EXPECT(g_error_matches(e, MESH_ERROR, MESH_ERROR_INVALID_ARGUMENT));
	g_clear_error(&e);
	mesh_cancel_context_free(ctx);
}
ARGS_CASE(cancel_context_wait_null) { ARGS_EXPECT(!mesh_cancel_context_wait(NULL, 0, NULL, NULL)); }
ARGS_CASE(cancel_context_wait_error_set)
{
	MeshCancelContext *ctx = mesh_cancel_context_new();
	GError *e = args_error_set();
	ARGS_EXPECT(!mesh_cancel_context_wait(ctx, 0, NULL, &e));
	g_clear_error(&e);
	mesh_cancel_context_free(ctx);
}
ARGS_CASE(cancel_context_is_cancelled_null) { ARGS_EXPECT(!mesh_cancel_context_is_cancelled(NULL, NULL)); }
ARGS_CASE(cancel_context_get_fd_null) { ARGS_EXPECT(mesh_cancel_context_get_fd(NULL) < 0); }
ARGS_CASE(cancel_context_set_callback_null)
{

	mesh_cancel_context_set_callback(NULL, NULL, NULL, NULL, NULL);
}
ARGS_CASE(cancel_context_into_field_null) { ARGS_EXPECT(!mesh_cancel_context_into_field(NULL)); }
ARGS_CASE(cancel_cancel_null) { mesh_cancel_cancel(NULL); }
ARGS_CASE(cancel_context_free_null) { mesh_cancel_context_free(NULL); }
ARGS_CASE(cancel_free_null) { mesh_cancel_free(NULL); }
ARGS_CASE(deadline_now_null) { mesh_deadline_now(NULL); }

/* mesh_rpc_call_async_with_cancel() with the argument @bad bad (BAD_REPLY: no context). */
static void rpc_call_async_with_cancel_bad(int bad)
{
	MeshSender *s;
	MeshReceiver *rr;
	int r = -1, notified = 0;
	MeshCancelContext *ctx = mesh_cancel_context_new();
	mesh_channel_new(NULL, &s, &rr);
	ARGS_EXPECT(!mesh_rpc_call_async_with_cancel(bad == BAD_SENDER ? NULL : s,
						     bad == BAD_INPUT ? NULL : typed_with_fd(&r),
						     bad == BAD_DESC ? NULL : desc,
						     bad == BAD_REPLY ? NULL : ctx, NULL, never_cb,
						     &notified, count_notify));
	ARGS_EXPECT(notified == 1);
	ARGS_EXPECT(r < 0 || args_pipe_closed(r));
	mesh_cancel_context_free(ctx);
	while (g_main_context_iteration(NULL, FALSE))
		;
}

ARGS_CASE(rpc_call_async_with_cancel_null_sender) { rpc_call_async_with_cancel_bad(BAD_SENDER); }
ARGS_CASE(rpc_call_async_with_cancel_null_input) { rpc_call_async_with_cancel_bad(BAD_INPUT); }
ARGS_CASE(rpc_call_async_with_cancel_null_desc) { rpc_call_async_with_cancel_bad(BAD_DESC); }
ARGS_CASE(rpc_call_async_with_cancel_null_ctx) { rpc_call_async_with_cancel_bad(BAD_REPLY); }
ARGS_CASE(rpc_call_message_async_with_cancel_null_ctx)
{
	MeshSender *s;
	MeshReceiver *rr;
	int notified = 0;
	mesh_channel_new(NULL, &s, &rr);
	ARGS_EXPECT(!mesh_rpc_call_message_async_with_cancel(s, mesh_message_new("x", 1), NULL, NULL,
							     never_message_cb, &notified,
							     count_notify));
	ARGS_EXPECT(notified == 1);
}

static const ArgsCase cases[] = {
	ARGS_ENTRY(channel_new_no_sender),
	ARGS_ENTRY(channel_new_no_receiver),
	ARGS_ENTRY(sender_clone_null),
	ARGS_ENTRY_QUIET(sender_free_null),
	ARGS_ENTRY(sender_send_null_sender),
	ARGS_ENTRY(sender_send_null_msg),
	ARGS_ENTRY(sender_send_message_null_sender),
	ARGS_ENTRY(sender_send_message_null_msg),
	ARGS_ENTRY(sender_is_closed_null),
	ARGS_ENTRY(sender_into_port_null),
	ARGS_ENTRY(sender_from_port_null),
	ARGS_ENTRY(receiver_recv_null_receiver),
	ARGS_ENTRY(receiver_recv_null_ret),
	ARGS_ENTRY(receiver_recv_error_set),
	ARGS_ENTRY(receiver_recv_message_null_receiver),
	ARGS_ENTRY(receiver_recv_message_null_ret),
	ARGS_ENTRY(receiver_recv_message_error_set),
	ARGS_ENTRY(receiver_get_n_dropped_null),
	ARGS_ENTRY(receiver_count_senders_null),
	ARGS_ENTRY(receiver_set_callback_null),
	ARGS_ENTRY(receiver_get_fd_null),
	ARGS_ENTRY_QUIET(receiver_free_null),
	ARGS_ENTRY(receiver_into_port_null),
	ARGS_ENTRY(receiver_from_port_null),
	ARGS_ENTRY(sender_bridge_null_sender),
	ARGS_ENTRY(sender_bridge_null_receiver),
	ARGS_ENTRY(receiver_bridge_null_receiver),
	ARGS_ENTRY(receiver_bridge_null_sender),
	ARGS_ENTRY(oneshot_new_no_sender),
	ARGS_ENTRY(oneshot_new_no_receiver),
	ARGS_ENTRY(oneshot_send_null_sender),
	ARGS_ENTRY(oneshot_send_null_msg),
	ARGS_ENTRY(oneshot_send_message_null_sender),
	ARGS_ENTRY(oneshot_send_message_null_msg),
	ARGS_ENTRY_QUIET(oneshot_sender_free_null),
	ARGS_ENTRY(oneshot_recv_null_receiver),
	ARGS_ENTRY(oneshot_recv_null_ret),
	ARGS_ENTRY(oneshot_recv_error_set),
	ARGS_ENTRY(oneshot_recv_message_null_receiver),
	ARGS_ENTRY(oneshot_recv_message_null_ret),
	ARGS_ENTRY(oneshot_recv_message_error_set),
	ARGS_ENTRY_QUIET(oneshot_receiver_free_null),
	ARGS_ENTRY(oneshot_sender_into_port_null),
	ARGS_ENTRY(oneshot_sender_from_port_null),
	ARGS_ENTRY(oneshot_receiver_into_port_null),
	ARGS_ENTRY(oneshot_receiver_from_port_null),
	ARGS_ENTRY(rpc_call_null_sender),
	ARGS_ENTRY(rpc_call_null_input),
	ARGS_ENTRY(rpc_call_null_desc),
	ARGS_ENTRY(rpc_call_null_ret),
	ARGS_ENTRY(rpc_call_error_set),
	ARGS_ENTRY(rpc_call_async_null_sender),
	ARGS_ENTRY(rpc_call_async_null_input),
	ARGS_ENTRY(rpc_call_async_null_desc),
	ARGS_ENTRY(rpc_call_async_null_callback),
	ARGS_ENTRY(rpc_call_message_async_null_sender),
	ARGS_ENTRY(rpc_call_message_async_null_callback),
	ARGS_ENTRY(rpc_call_cancel_null),
	ARGS_ENTRY(rpc_call_ref_null),
	ARGS_ENTRY_QUIET(rpc_call_unref_null),
	ARGS_ENTRY(oneshot_receiver_set_callback_null),
	ARGS_ENTRY(oneshot_receiver_get_fd_null),
	ARGS_ENTRY(receiver_recv_rpc_null_receiver),
	ARGS_ENTRY(receiver_recv_rpc_null_desc),
	ARGS_ENTRY(receiver_recv_rpc_null_ret),
	ARGS_ENTRY(receiver_recv_rpc_error_set),
	ARGS_ENTRY(rpc_get_input_null),
	ARGS_ENTRY(receiver_new_sender_null),
	ARGS_ENTRY(receiver_is_terminated_null),
	ARGS_ENTRY(oneshot_sender_is_closed_null),
	ARGS_ENTRY(rpc_complete_infallible_null_rpc),
	ARGS_ENTRY(rpc_complete_infallible_null_reply),
	ARGS_ENTRY(rpc_send_null_sender),
	ARGS_ENTRY(rpc_send_null_input),
	ARGS_ENTRY(rpc_send_null_desc),
	ARGS_ENTRY(rpc_send_error_set),
	ARGS_ENTRY(rpc_send_infallible_null_sender),
	ARGS_ENTRY(rpc_send_infallible_null_desc),
	ARGS_ENTRY(rpc_call_infallible_null_sender),
	ARGS_ENTRY(rpc_call_infallible_null_ret),
	ARGS_ENTRY(rpc_pending_wait_null),
	ARGS_ENTRY_QUIET(rpc_pending_free_null),
	ARGS_ENTRY(pipe_new_no_read),
	ARGS_ENTRY(read_pipe_read_null),
	ARGS_ENTRY(read_pipe_read_error_set),
	ARGS_ENTRY(read_pipe_get_fd_null),
	ARGS_ENTRY(read_pipe_set_callback_null),
	ARGS_ENTRY_QUIET(read_pipe_free_null),
	ARGS_ENTRY(read_pipe_into_message_null),
	ARGS_ENTRY(read_pipe_from_message_error_set),
	ARGS_ENTRY(write_pipe_write_null),
	ARGS_ENTRY(write_pipe_write_all_null),
	ARGS_ENTRY_QUIET(write_pipe_write_bad_timeout),
	ARGS_ENTRY(write_pipe_get_fd_null),
	ARGS_ENTRY(write_pipe_set_callback_null),
	ARGS_ENTRY_QUIET(write_pipe_free_null),
	ARGS_ENTRY(write_pipe_into_message_null),
	ARGS_ENTRY(write_pipe_from_message_null),
	ARGS_ENTRY(cell_updater_new_null),
	ARGS_ENTRY(cell_updater_new_resources),
	ARGS_ENTRY(cell_new_no_updater),
	ARGS_ENTRY(cell_updater_new_cell_null),
	ARGS_ENTRY(cell_updater_get_null),
	ARGS_ENTRY(cell_updater_set_null),
	ARGS_ENTRY(cell_updater_set_other_type),
	ARGS_ENTRY(cell_updater_count_cells_null),
	ARGS_ENTRY_QUIET(cell_updater_free_null),
	ARGS_ENTRY(cell_get_null),
	ARGS_ENTRY(cell_wait_next_null),
	ARGS_ENTRY(cell_set_callback_null),
	ARGS_ENTRY(cell_get_fd_null),
	ARGS_ENTRY(cell_clone_null),
	ARGS_ENTRY_QUIET(cell_free_null),
	ARGS_ENTRY(cell_into_message_null),
	ARGS_ENTRY(cell_from_message_null_desc),
	ARGS_ENTRY(rpc_complete_null_rpc),
	ARGS_ENTRY(rpc_complete_null_reply),
	ARGS_ENTRY(rpc_fail_null_rpc),
	ARGS_ENTRY_QUIET(rpc_fail_null_error),
	ARGS_ENTRY_QUIET(rpc_free_null),
	ARGS_ENTRY(message_new_null_data),
	ARGS_ENTRY_QUIET(message_new_null_data_empty),
	ARGS_ENTRY(message_new_typed_take_null),
	ARGS_ENTRY_QUIET(message_free_null),
	ARGS_ENTRY(message_add_fd_null),
	ARGS_ENTRY(message_add_fd_take_null),
	ARGS_ENTRY(message_add_port_take_null_msg),
	ARGS_ENTRY(message_add_port_take_null_port),
	ARGS_ENTRY(message_get_data_null_msg),
	ARGS_ENTRY(message_get_data_null_size),
	ARGS_ENTRY(message_get_n_resources_null),
	ARGS_ENTRY(message_steal_fd_null),
	ARGS_ENTRY(message_steal_port_null),
	ARGS_ENTRY(message_into_typed_null_msg),
	ARGS_ENTRY(message_into_typed_null_desc),
	ARGS_ENTRY(message_into_typed_error_set),
	ARGS_ENTRY(uuid_generate_null),
	ARGS_ENTRY(uuid_is_zero_null),
	ARGS_ENTRY(uuid_to_string_null_id),
	ARGS_ENTRY(uuid_to_string_null_buf),
	ARGS_ENTRY(node_new_with_id_null),
	ARGS_ENTRY(node_ref_null),
	ARGS_ENTRY_QUIET(node_unref_null),
	ARGS_ENTRY(node_get_id_null),
	ARGS_ENTRY(node_count_ports_null),
	ARGS_ENTRY(node_count_remotes_null),
	ARGS_ENTRY(node_set_connector_null),
	ARGS_ENTRY(node_set_connector_caps_null),
	ARGS_ENTRY(p2p_link_get_node_null),
	ARGS_ENTRY(p2p_link_get_peer_id_null),
	ARGS_ENTRY(p2p_link_get_state_null),
	ARGS_ENTRY(p2p_link_set_ended_func_null),
	ARGS_ENTRY(p2p_link_set_send_limit_null),
	ARGS_ENTRY(p2p_link_shutdown_null),
	ARGS_ENTRY_QUIET(p2p_link_free_null),
	ARGS_ENTRY_QUIET(p2p_link_new_take_bad_fd),
	ARGS_ENTRY(remote_node_set_features_null),
	ARGS_ENTRY(event_get_size_null),
	ARGS_ENTRY(node_wait_idle_null),
	ARGS_ENTRY(node_wait_idle_bad_timeout),
	ARGS_ENTRY(io_hook_new_null),
	ARGS_ENTRY(io_hook_new_no_run_once),
	ARGS_ENTRY(io_hook_new_for_context_null),
	ARGS_ENTRY(io_hook_acquire_context_null),
	ARGS_ENTRY(io_hook_acquire_context_not_context),
	ARGS_ENTRY(main_context_iterate_until_null),
	ARGS_ENTRY_QUIET(io_hook_detach_null),
	ARGS_ENTRY(io_hook_ref_null),
	ARGS_ENTRY_QUIET(io_hook_unref_null),
	ARGS_ENTRY(node_set_io_hook_null),
	ARGS_ENTRY(node_add_remote_null_node),
	ARGS_ENTRY(node_add_remote_null_id),
	ARGS_ENTRY(remote_node_connect_null_remote),
	ARGS_ENTRY(remote_node_connect_null_sink),
	ARGS_ENTRY(remote_node_connect_null_send),
	ARGS_ENTRY(remote_node_fail_null_remote),
	ARGS_ENTRY(remote_node_fail_null_reason),
	ARGS_ENTRY(remote_node_ref_null),
	ARGS_ENTRY_QUIET(remote_node_unref_null),
	ARGS_ENTRY(remote_node_get_id_null),
	ARGS_ENTRY(node_add_port_null_node),
	ARGS_ENTRY(node_add_port_null_id),
	ARGS_ENTRY(node_add_port_null_peer_node),
	ARGS_ENTRY(node_add_port_null_peer_port),
	ARGS_ENTRY(node_receive_event_null_node),
	ARGS_ENTRY(node_receive_event_null_from),
	ARGS_ENTRY(node_receive_event_null_data),
	ARGS_ENTRY(node_receive_event_null_fds),
	ARGS_ENTRY(node_receive_event_full_null_node),
	ARGS_ENTRY(node_receive_event_full_null_from),
	ARGS_ENTRY(node_receive_event_full_null_data),
	ARGS_ENTRY(port_new_pair_null_a),
	ARGS_ENTRY(port_new_pair_null_b),
	ARGS_ENTRY_QUIET(port_close_null),
	ARGS_ENTRY(port_bridge_null_a),
	ARGS_ENTRY(port_bridge_null_b),
	ARGS_ENTRY(port_as_object_null),
	ARGS_ENTRY_QUIET(port_from_object_null),
	ARGS_ENTRY(port_into_field_null),
	ARGS_ENTRY_QUIET(port_steal_from_field_null),
	ARGS_ENTRY(unix_node_new_null),
	ARGS_ENTRY(unix_node_get_node_null),
	ARGS_ENTRY(unix_node_connect_take_null_unode),
	ARGS_ENTRY(unix_node_connect_take_null_peer),
	ARGS_ENTRY(unix_node_connect_take_error_set),
	ARGS_ENTRY(invitation_new_take_null_local_node),
	ARGS_ENTRY(invitation_new_take_null_local_port),
	ARGS_ENTRY(invitation_new_take_null_remote_node),
	ARGS_ENTRY(invitation_new_take_null_remote_port),
	ARGS_ENTRY(invitation_get_address_null),
	ARGS_ENTRY(invitation_get_fd_null),
	ARGS_ENTRY(invitation_get_extensions_null),
	ARGS_ENTRY(invitation_set_extensions_null),
	ARGS_ENTRY(invitation_steal_fd_null),
	ARGS_ENTRY_QUIET(invitation_free_null),
	ARGS_ENTRY(unix_node_invite_null_unode),
	ARGS_ENTRY(unix_node_invite_null_port),
	ARGS_ENTRY(unix_node_offer_leadership_null),
	ARGS_ENTRY(unix_node_is_leader_null),
	ARGS_ENTRY(unix_node_accept_leadership_null_unode),
	ARGS_ENTRY(unix_node_accept_leadership_error_set),
	ARGS_ENTRY(unix_node_accept_leadership_null_offer),
	ARGS_ENTRY(unix_node_invite_null_ret),
	ARGS_ENTRY(unix_node_invite_error_set),
	ARGS_ENTRY(unix_node_join_null_invitation),
	ARGS_ENTRY(unix_node_join_null_ret),
	ARGS_ENTRY(unix_node_join_error_set),
	ARGS_ENTRY(unix_node_listen_null_unode),
	ARGS_ENTRY(unix_node_listen_null_path),
	ARGS_ENTRY(unix_node_listen_null_func),
	ARGS_ENTRY(unix_node_listen_error_set),
	ARGS_ENTRY(unix_listener_set_allowed_uid_null),
	ARGS_ENTRY(unix_listener_set_handshake_limits_null),
	ARGS_ENTRY(unix_listener_set_handshake_limits_bad_timeout),
	ARGS_ENTRY(unix_listener_set_handshake_limits_no_pending),
	ARGS_ENTRY_QUIET(unix_listener_free_null),
	ARGS_ENTRY(unix_node_join_by_path_null_path),
	ARGS_ENTRY(unix_node_join_by_path_null_ret),
	ARGS_ENTRY(unix_node_join_by_path_error_set),
	ARGS_ENTRY(unix_node_set_peer_describer_null),
	ARGS_ENTRY(unix_node_shutdown_null),
	ARGS_ENTRY(unix_node_shutdown_bad_timeout),
	ARGS_ENTRY_QUIET(unix_node_free_null),
	ARGS_ENTRY(cancel_context_clone_null),
	ARGS_ENTRY(cancel_context_with_cancel_null),
	ARGS_ENTRY(cancel_context_with_cancel_no_ret),
	ARGS_ENTRY(cancel_context_with_deadline_null),
	ARGS_ENTRY(cancel_context_with_timeout_bad),
	ARGS_ENTRY_QUIET(cancel_context_wait_bad_timeout),
	ARGS_ENTRY(cancel_context_wait_null),
	ARGS_ENTRY(cancel_context_wait_error_set),
	ARGS_ENTRY(cancel_context_is_cancelled_null),
	ARGS_ENTRY(cancel_context_get_fd_null),
	ARGS_ENTRY(cancel_context_set_callback_null),
	ARGS_ENTRY(cancel_context_into_field_null),
	ARGS_ENTRY(cancel_cancel_null),
	ARGS_ENTRY_QUIET(cancel_context_free_null),
	ARGS_ENTRY_QUIET(cancel_free_null),
	ARGS_ENTRY(deadline_now_null),
	ARGS_ENTRY(rpc_call_async_with_cancel_null_sender),
	ARGS_ENTRY(rpc_call_async_with_cancel_null_input),
	ARGS_ENTRY(rpc_call_async_with_cancel_null_desc),
	ARGS_ENTRY(rpc_call_async_with_cancel_null_ctx),
	ARGS_ENTRY(rpc_call_message_async_with_cancel_null_ctx),
};

int main(void)
{
	return args_run("libmeshremote-args", cases, G_N_ELEMENTS(cases));
}
