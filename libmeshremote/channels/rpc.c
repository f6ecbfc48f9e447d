/* SPDX-License-Identifier: MIT */
/*
 * RPC on channels (upstream mesh_channel rpc.rs, reference 4.3 and 3.9).
 *
 * A request is an mpsc message whose payload (field 1 of the channel
 * framing) is upstream's Rpc<I, R>: {1: I, 2: OneshotSender port}. The reply
 * travels on that oneshot as upstream's FailableRpc result,
 * Result<R, RemoteError> = oneof {1: R, 2: RemoteError}, where RemoteError
 * = {1: {1: repeated string}} (the error's message, then each cause).
 *
 * The bytes are composed and parsed here by hand around messages encoded by
 * libmeshpayload, so the input and the reply may carry resources (wire type
 * 6). See doc/libmeshremote-channels.md for the exact bytes.
 */
#include <stdlib.h>

#include "channel-private.h"
#include "os-private.h"
#include "wire-private.h"

struct MeshRpc {
	ProtobufCMessage *input;
	MeshOneshotSender *reply;
};

/* Wire helpers: libmeshpayload's reader (wire-private.h), plus the resources. */

/* Appends a message field: key, [resource count,] length, then @data. */
static void put_message_field(GByteArray *out, guint field, const uint8_t *data, size_t size,
			      size_t n_res)
{
	uint8_t head[32];
	size_t k = 0;

	k += wire_put_key(head + k, field, n_res ? WIRE_MESH_MESSAGE : WIRE_LEN);
	if (n_res)
		k += wire_put_varint(head + k, n_res);
	k += wire_put_varint(head + k, size);
	g_byte_array_append(out, head, (guint)k);
	if (size)
		g_byte_array_append(out, data, (guint)size);
}

/* The fields of a message being parsed; each takes its share of the resources. */
typedef struct {
	WireReader r;
	size_t next_res, n_res;
} Reader;

typedef struct {
	WireField wire;
	size_t res_first; /* the first of wire.n_res resources */
} Field;

/* Returns 1 with a field, 0 at the end, -1 for malformed input. */
static int reader_next(Reader *rd, Field *f)
{
	if (rd->r.p == rd->r.end)
		return 0;
	if (wire_read_field(&rd->r, &f->wire) != WIRE_OK ||
	    f->wire.n_res > rd->n_res - rd->next_res)
		return -1;
	f->res_first = rd->next_res;
	rd->next_res += (size_t)f->wire.n_res;
	return 1;
}

/* Moves entries [first, first + count) of @src into a new list; NULL if one is missing. */
static MeshPayloadResources *resources_take_range(MeshPayloadResources *src, size_t first,
						  size_t count)
{
	MeshPayloadResources *res = mesh_payload_resources_new();

	if (!res)
		return NULL;
	for (size_t i = first; i < first + count; i++) {
		int r = -EINVAL;
		switch (src ? mesh_payload_resources_get_kind(src, i) : MESH_PAYLOAD_RESOURCE_NONE) {
		case MESH_PAYLOAD_RESOURCE_PORT: {
			r = mesh_payload_resources_append_port_take(
				res, mesh_payload_resources_steal_port(src, i));
			break;
		}
		default:
			if (src)
				r = os_resource_move(res, src, i); /* an fd (Windows: or a HANDLE) */
			break;
		}
		if (r < 0) {
			mesh_payload_resources_free(res);
			return NULL;
		}
	}
	return res;
}

/* Decodes @desc from a field's bytes and resources (taken from @src). */
static ProtobufCMessage *decode_field(const ProtobufCMessageDescriptor *desc, const Field *f,
				      MeshPayloadResources *src, GError **error)
{
	MeshPayloadError perr;
	ProtobufCMessage *msg = NULL;
	MeshPayloadResources *res = resources_take_range(src, f->res_first, (size_t)f->wire.n_res);

	if (!res) {
		g_set_error(error, MESH_ERROR, MESH_ERROR_CORRUPTION, "missing resource");
		return NULL;
	}
	if (mesh_payload_decode(desc, f->wire.data, f->wire.size, res, NULL, &msg, &perr) < 0) {
		g_set_error(error, MESH_ERROR, MESH_ERROR_CORRUPTION, "%s", perr.message);
		msg = NULL;
	}
	mesh_payload_resources_free(res);
	return msg;
}

/* Encodes @msg (taken) as field @field of @out, its resources into @res. */
static gboolean encode_field(GByteArray *out, guint field, ProtobufCMessage *msg,
			     MeshPayloadResources *res, gboolean always, GError **error)
{
	MeshPayloadError perr;
	uint8_t *data = NULL;
	size_t size = 0;
	size_t before = mesh_payload_resources_len(res);

	if (mesh_payload_encode_alloc(msg, &data, &size, res, &perr) < 0) {
		g_set_error(error, MESH_ERROR, MESH_ERROR_CORRUPTION, "%s", perr.message);
		mesh_payload_message_free(msg);
		return FALSE;
	}
	mesh_payload_message_free(msg); /* its resources moved to @res */
	size_t n_res = mesh_payload_resources_len(res) - before;
	/* An empty nested message is omitted, except where a value must be written. */
	if (always || size || n_res)
		put_message_field(out, field, data, size, n_res);
	free(data);
	return TRUE;
}

static MeshMessage *message_from_bytes(GByteArray *bytes, MeshPayloadResources *res)
{
	size_t size = bytes->len;
	uint8_t *data = NULL;

	if (size)
		data = g_byte_array_free(bytes, FALSE);
	else
		g_byte_array_free(bytes, TRUE);
	return message_new_bytes_take(data, size, res, MESH_WRAP_NONE);
}

/* RemoteError = {1: {1: repeated string}}, parsed into "a: b: c". */
static char *remote_error_parse(const uint8_t *data, size_t size)
{
	Reader outer = {{data, data + size}, 0, 0};
	GString *chain = g_string_new(NULL);
	gboolean any = FALSE;
	Field f, g;
	int r;

	while ((r = reader_next(&outer, &f)) > 0) {
		if (f.wire.number != 1 || f.wire.wire_type != WIRE_LEN)
			continue;
		Reader inner = {{f.wire.data, f.wire.data + f.wire.size}, 0, 0};
		while (reader_next(&inner, &g) > 0) {
			if (g.wire.number != 1 || g.wire.wire_type != WIRE_LEN)
				continue;
			if (any)
				g_string_append(chain, ": ");
			g_string_append_len(chain, (const char *)g.wire.data, (gssize)g.wire.size);
			any = TRUE;
		}
	}
	if (!any)
		g_string_assign(chain, "no error information");
	return g_string_free(chain, FALSE);
}

/* Client. */

/*
 * Sends {1: input, 2: reply port}, the input already in @bytes and @res
 * (both taken); returns the receiver of the reply.
 */
static MeshOneshotReceiver *rpc_send_request(MeshSender *sender, GByteArray *bytes,
					     MeshPayloadResources *res)
{
	MeshOneshotSender *os;
	MeshOneshotReceiver *orx;

	mesh_oneshot_new(NULL, &os, &orx);
	uint8_t key = WIRE_KEY1(2, WIRE_RESOURCE);
	g_byte_array_append(bytes, &key, 1);
	mesh_payload_resources_append_port_take(res,
						mesh_port_as_object(mesh_oneshot_sender_into_port(os)));
	mesh_sender_send_message(sender, message_from_bytes(bytes, res));
	return orx;
}

/* Encodes a typed input (taken) as field 1 and sends the request. */
static MeshOneshotReceiver *rpc_send_typed(MeshSender *sender, ProtobufCMessage *input,
					   GError **error)
{
	GByteArray *bytes = g_byte_array_new();
	MeshPayloadResources *res = mesh_payload_resources_new();
	if (!encode_field(bytes, 1, input, res, FALSE, error)) {
		g_byte_array_free(bytes, TRUE);
		mesh_payload_resources_free(res);
		return NULL;
	}
	return rpc_send_request(sender, bytes, res);
}

/* Puts an untyped input's bytes (taken) as field 1 and sends the request. */
static MeshOneshotReceiver *rpc_send_message(MeshSender *sender, MeshMessage *input,
					     GError **error)
{
	if (message_ensure_bytes(input, error) < 0) {
		mesh_message_free(input);
		return NULL;
	}
	/* Its resources move to the request, which the call may keep: owned fds. */
	int own = message_own_fds(input);
	if (own < 0) {
		g_propagate_error(error, message_own_fds_error(own));
		mesh_message_free(input);
		return NULL;
	}
	size_t size, n_res = mesh_message_get_n_resources(input);
	const uint8_t *data = mesh_message_get_data(input, &size);
	MeshPayloadResources *res = resources_take_range(input->res, 0, n_res);
	if (!res) {
		g_set_error(error, MESH_ERROR, MESH_ERROR_CORRUPTION, "missing resource");
		mesh_message_free(input);
		return NULL;
	}
	GByteArray *bytes = g_byte_array_new();
	if (size || n_res)
		put_message_field(bytes, 1, data, size, n_res);
	mesh_message_free(input);
	return rpc_send_request(sender, bytes, res);
}

gboolean mesh_rpc_call(MeshSender *sender, ProtobufCMessage *input,
		       const ProtobufCMessageDescriptor *reply_desc, gint64 timeout_us,
		       ProtobufCMessage **ret_reply, GError **error)
{
	MeshOneshotReceiver *orx;
	MeshMessage *reply;
	GError *err = NULL;

	if (!sender || !reply_desc || !ret_reply || (error && *error)) {
		mesh_payload_message_free(input); /* taken in all cases; nothing is sent */
		g_return_val_if_fail(sender && reply_desc && ret_reply, FALSE);
		g_return_val_if_fail(error == NULL || *error == NULL, FALSE);
	}
	g_return_val_if_fail(input, FALSE);
	if (!timeout_check(timeout_us, G_STRFUNC, error)) {
		mesh_payload_message_free(input); /* taken in all cases; nothing is sent */
		return FALSE;
	}

	orx = rpc_send_typed(sender, input, error);
	if (!orx)
		return FALSE;
	if (!mesh_oneshot_recv_message(orx, timeout_us, &reply, &err)) {
		if (g_error_matches(err, MESH_ERROR, MESH_ERROR_EMPTY) ||
		    g_error_matches(err, MESH_ERROR, MESH_ERROR_TIMED_OUT))
			mesh_oneshot_receiver_free(orx); /* not consumed; a late reply is dropped */
		g_propagate_error(error, err);
		return FALSE;
	}

	return rpc_parse_reply(reply, reply_desc, ret_reply, error);
}

/* Pending calls: sent now, the reply waited for later (upstream PendingRpc). */

struct MeshRpcPending {
	MeshOneshotReceiver *orx; /* NULL once the outcome was returned */
	const ProtobufCMessageDescriptor *reply_desc;
	gboolean failable; /* the reply is Result<R, RemoteError>, else R */
};

static MeshRpcPending *pending_send(MeshSender *sender, ProtobufCMessage *input,
				    const ProtobufCMessageDescriptor *reply_desc, gboolean failable,
				    GError **error)
{
	if (!sender || !reply_desc || (error && *error)) {
		mesh_payload_message_free(input); /* taken in all cases; nothing is sent */
		g_return_val_if_fail(sender && reply_desc, NULL);
		g_return_val_if_fail(error == NULL || *error == NULL, NULL);
	}
	g_return_val_if_fail(input, NULL);
	MeshOneshotReceiver *orx = rpc_send_typed(sender, input, error);
	if (!orx)
		return NULL;
	MeshRpcPending *p = g_new0(MeshRpcPending, 1);
	p->orx = orx;
	p->reply_desc = reply_desc;
	p->failable = failable;
	return p;
}

MeshRpcPending *mesh_rpc_send(MeshSender *sender, ProtobufCMessage *input,
			      const ProtobufCMessageDescriptor *reply_desc, GError **error)
{
	return pending_send(sender, input, reply_desc, TRUE, error);
}

MeshRpcPending *mesh_rpc_send_infallible(MeshSender *sender, ProtobufCMessage *input,
					 const ProtobufCMessageDescriptor *reply_desc,
					 GError **error)
{
	return pending_send(sender, input, reply_desc, FALSE, error);
}

gboolean mesh_rpc_pending_wait(MeshRpcPending *pending, gint64 timeout_us,
			       ProtobufCMessage **ret_reply, GError **error)
{
	MeshMessage *reply;
	GError *err = NULL;

	g_return_val_if_fail(pending && ret_reply, FALSE);
	g_return_val_if_fail(error == NULL || *error == NULL, FALSE);
	if (!timeout_check(timeout_us, G_STRFUNC, error))
		return FALSE;
	if (!pending->orx) {
		g_set_error(error, MESH_ERROR, MESH_ERROR_INVALID_ARGUMENT,
			    "mesh_rpc_pending_wait(): the outcome was already returned");
		return FALSE;
	}
	if (!mesh_oneshot_recv_message(pending->orx, timeout_us, &reply, &err)) {
		/* Consumed unless it is only not there yet. */
		if (!g_error_matches(err, MESH_ERROR, MESH_ERROR_EMPTY) &&
		    !g_error_matches(err, MESH_ERROR, MESH_ERROR_TIMED_OUT))
			pending->orx = NULL;
		g_propagate_error(error, err);
		return FALSE;
	}
	pending->orx = NULL;
	if (pending->failable)
		return rpc_parse_reply(reply, pending->reply_desc, ret_reply, error);
	*ret_reply = mesh_message_into_typed(reply, pending->reply_desc, error);
	return *ret_reply != NULL;
}

void mesh_rpc_pending_free(MeshRpcPending *pending)
{
	if (!pending)
		return;
	mesh_oneshot_receiver_free(pending->orx); /* a late reply is dropped */
	g_free(pending);
}

gboolean mesh_rpc_call_infallible(MeshSender *sender, ProtobufCMessage *input,
				  const ProtobufCMessageDescriptor *reply_desc, gint64 timeout_us,
				  ProtobufCMessage **ret_reply, GError **error)
{
	if (!ret_reply || (error && *error)) {
		mesh_payload_message_free(input); /* taken in all cases; nothing is sent */
		g_return_val_if_fail(ret_reply && (error == NULL || *error == NULL), FALSE);
	}
	if (!timeout_check(timeout_us, G_STRFUNC, error)) {
		mesh_payload_message_free(input);
		return FALSE;
	}
	MeshRpcPending *p = pending_send(sender, input, reply_desc, FALSE, error);
	if (!p)
		return FALSE;
	gboolean ok = mesh_rpc_pending_wait(p, timeout_us, ret_reply, error);
	mesh_rpc_pending_free(p);
	return ok;
}

/* Asynchronous calls: the reply oneshot's callback, a deadline, a cancel. */

struct MeshRpcCall {
	gint ref; /* the caller's, and one per source that may finish the call */
	GMutex lock;
	GMainContext *context; /* strong */
	/* Under lock: */
	gboolean finished;  /* the outcome is decided: the callback runs or ran */
	gboolean cancelled; /* mesh_rpc_call_cancel() came first */
	MeshOneshotReceiver *orx; /* the reply's, until finished */
	GSource *deadline;        /* strong, until finished */
	MeshCancelContext *cancel_ctx; /* a clone of the caller's, until finished */
	/* Set at the start; then used on the context only: */
	const ProtobufCMessageDescriptor *reply_desc; /* NULL: untyped */
	MeshRpcCallback callback;
	MeshRpcMessageCallback message_callback;
	gpointer user_data;
	GDestroyNotify notify;
};

MeshRpcCall *mesh_rpc_call_ref(MeshRpcCall *call)
{
	g_return_val_if_fail(call, NULL);
	g_atomic_int_inc(&call->ref);
	return call;
}

void mesh_rpc_call_unref(MeshRpcCall *call)
{
	if (!call || !g_atomic_int_dec_and_test(&call->ref))
		return;
	/* Every source that could finish it held a reference: it finished. */
	g_main_context_unref(call->context);
	g_mutex_clear(&call->lock);
	g_free(call);
}

static void call_unref_notify(gpointer data)
{
	mesh_rpc_call_unref(data);
}

/*
 * Decides the outcome, on the call's context: the reply (@why NULL, the
 * oneshot is ready) or @why (taken); a cancel that came first wins. Then
 * runs the callback, once.
 */
static void call_finish(MeshRpcCall *c, GError *why)
{
	g_mutex_lock(&c->lock);
	if (c->finished) {
		g_mutex_unlock(&c->lock);
		g_clear_error(&why);
		return;
	}
	c->finished = TRUE;
	if (c->cancelled) {
		g_clear_error(&why);
		why = g_error_new(MESH_ERROR, MESH_ERROR_CANCELLED, "the rpc call was cancelled");
	}
	MeshOneshotReceiver *orx = c->orx;
	GSource *deadline = c->deadline;
	MeshCancelContext *cancel_ctx = c->cancel_ctx;
	c->orx = NULL;
	c->deadline = NULL;
	c->cancel_ctx = NULL;
	g_mutex_unlock(&c->lock);

	/* Its callback goes with it (this may be that callback: it may free its context). */
	mesh_cancel_context_free(cancel_ctx);

	if (deadline) {
		g_source_destroy(deadline);
		g_source_unref(deadline);
	}
	MeshMessage *reply = NULL;
	ProtobufCMessage *typed = NULL;
	if (why) {
		/* Closes the reply port: a late reply is dropped. */
		mesh_oneshot_receiver_free(orx);
	} else if (mesh_oneshot_recv_message(orx, 0, &reply, &why)) {
		MeshMessage *value = reply;
		reply = NULL;
		if (c->reply_desc ? !rpc_parse_reply(value, c->reply_desc, &typed, &why)
				  : !rpc_parse_reply_message(value, &reply, &why)) {
			typed = NULL;
			reply = NULL;
		}
	} else if (g_error_matches(why, MESH_ERROR, MESH_ERROR_EMPTY)) {
		mesh_oneshot_receiver_free(orx); /* not consumed (not reached: it was ready) */
	}
	if (c->reply_desc)
		c->callback(typed, why, c->user_data);
	else
		c->message_callback(reply, why, c->user_data);
	if (c->notify)
		c->notify(c->user_data);
	c->user_data = NULL;
	g_clear_error(&why);
}

static void call_on_reply(MeshOneshotReceiver *orx, gpointer data)
{
	call_finish(data, NULL);
}

static gboolean call_on_deadline(gpointer data)
{
	call_finish(data, g_error_new(MESH_ERROR, MESH_ERROR_TIMED_OUT,
				      "no rpc reply within the timeout"));
	return G_SOURCE_REMOVE;
}

typedef struct {
	MeshRpcCall *call;
	GError *error; /* NULL: cancelled */
} CallFail;

static gboolean call_on_fail(gpointer data)
{
	CallFail *f = data;
	call_finish(f->call, f->error ? f->error
				      : g_error_new(MESH_ERROR, MESH_ERROR_CANCELLED,
						    "the rpc call was cancelled"));
	f->error = NULL;
	return G_SOURCE_REMOVE;
}

static void call_fail_free(gpointer data)
{
	CallFail *f = data;
	mesh_rpc_call_unref(f->call);
	g_clear_error(&f->error);
	g_free(f);
}

/* call_finish(@error) from an idle source on the context: never inside the caller's call. */
static void call_fail_later(MeshRpcCall *c, GError *error)
{
	CallFail *f = g_new(CallFail, 1);
	f->call = mesh_rpc_call_ref(c);
	f->error = error;
	GSource *source = g_idle_source_new();
	g_source_set_name(source, "MeshRpcCall fail");
	g_source_set_priority(source, G_PRIORITY_DEFAULT);
	g_source_set_callback(source, call_on_fail, f, call_fail_free);
	g_source_attach(source, c->context);
	g_source_unref(source);
}

static gboolean deadline_dispatch(GSource *source, GSourceFunc callback, gpointer user_data)
{
	return callback ? callback(user_data) : G_SOURCE_REMOVE;
}

/* A ready time and a callback: nothing else. */
static GSourceFuncs deadline_funcs = {
	.dispatch = deadline_dispatch,
};

/* The caller's cancel context was cancelled, or its deadline passed (upstream's mapping). */
static void call_on_cancel(MeshCancelContext *ctx, MeshCancelReason reason, gpointer data)
{
	if (reason == MESH_CANCEL_REASON_DEADLINE_EXCEEDED)
		call_finish(data, g_error_new(MESH_ERROR, MESH_ERROR_TIMED_OUT,
					      "deadline exceeded"));
	else
		call_finish(data, g_error_new(MESH_ERROR, MESH_ERROR_CANCELLED,
					      "the rpc call's cancel context was cancelled"));
}

/*
 * The call around a request sent (@orx) or not (@error); @cancel_ctx
 * (borrowed, nullable) is cloned and watched on the call's context.
 */
static MeshRpcCall *call_start(MeshOneshotReceiver *orx, GError *error, gint64 timeout_us,
			       MeshCancelContext *cancel_ctx, GMainContext *context,
			       const ProtobufCMessageDescriptor *reply_desc,
			       MeshRpcCallback callback, MeshRpcMessageCallback message_callback,
			       gpointer user_data, GDestroyNotify notify)
{
	MeshRpcCall *c = g_new0(MeshRpcCall, 1);

	c->ref = 1;
	g_mutex_init(&c->lock);
	c->context = g_main_context_ref(context ? context : g_main_context_default());
	c->reply_desc = reply_desc;
	c->callback = callback;
	c->message_callback = message_callback;
	c->user_data = user_data;
	c->notify = notify;
	c->orx = orx;
	if (!orx) {
		call_fail_later(c, error);
		return c;
	}
	/* The context may finish the call as soon as a source is attached: not before both are. */
	g_mutex_lock(&c->lock);
	if (timeout_us >= 0) {
		/* A ready time in us (a GLib timeout has ms resolution). */
		c->deadline = g_source_new(&deadline_funcs, sizeof(GSource));
		g_source_set_name(c->deadline, "MeshRpcCall deadline");
		g_source_set_ready_time(c->deadline, g_get_monotonic_time() + timeout_us);
		g_source_set_callback(c->deadline, call_on_deadline, mesh_rpc_call_ref(c),
				      call_unref_notify);
		g_source_attach(c->deadline, c->context);
	}
	if (cancel_ctx) {
		c->cancel_ctx = mesh_cancel_context_clone(cancel_ctx);
		mesh_cancel_context_set_callback(c->cancel_ctx, c->context, call_on_cancel,
						 mesh_rpc_call_ref(c), call_unref_notify);
	}
	mesh_oneshot_receiver_set_callback(orx, c->context, call_on_reply, mesh_rpc_call_ref(c),
					   call_unref_notify);
	g_mutex_unlock(&c->lock);
	return c;
}

MeshRpcCall *mesh_rpc_call_async(MeshSender *sender, ProtobufCMessage *input,
				 const ProtobufCMessageDescriptor *reply_desc, gint64 timeout_us,
				 GMainContext *context, MeshRpcCallback callback,
				 gpointer user_data, GDestroyNotify notify)
{
	GError *error = NULL;
	MeshOneshotReceiver *orx = NULL;

	if (!sender || !input || !reply_desc || !callback) {
		/* Taken in all cases; nothing is sent and nothing is called back. */
		mesh_payload_message_free(input);
		if (notify)
			notify(user_data);
		g_return_val_if_fail(sender && input && reply_desc && callback, NULL);
	}
	if (!timeout_check(timeout_us, G_STRFUNC, &error))
		mesh_payload_message_free(input);
	else
		orx = rpc_send_typed(sender, input, &error);
	return call_start(orx, error, timeout_us, NULL, context, reply_desc, callback, NULL,
			  user_data, notify);
}

MeshRpcCall *mesh_rpc_call_message_async(MeshSender *sender, MeshMessage *input,
					 gint64 timeout_us, GMainContext *context,
					 MeshRpcMessageCallback callback, gpointer user_data,
					 GDestroyNotify notify)
{
	GError *error = NULL;
	MeshOneshotReceiver *orx = NULL;

	if (!sender || !input || !callback) {
		mesh_message_free(input);
		if (notify)
			notify(user_data);
		g_return_val_if_fail(sender && input && callback, NULL);
	}
	if (!timeout_check(timeout_us, G_STRFUNC, &error))
		mesh_message_free(input);
	else
		orx = rpc_send_message(sender, input, &error);
	return call_start(orx, error, timeout_us, NULL, context, NULL, NULL, callback, user_data,
			  notify);
}

MeshRpcCall *mesh_rpc_call_async_with_cancel(MeshSender *sender, ProtobufCMessage *input,
					     const ProtobufCMessageDescriptor *reply_desc,
					     MeshCancelContext *cancel_ctx, GMainContext *context,
					     MeshRpcCallback callback, gpointer user_data,
					     GDestroyNotify notify)
{
	GError *error = NULL;

	if (!sender || !input || !reply_desc || !cancel_ctx || !callback) {
		mesh_payload_message_free(input);
		if (notify)
			notify(user_data);
		g_return_val_if_fail(sender && input && reply_desc && cancel_ctx && callback, NULL);
	}
	MeshOneshotReceiver *orx = rpc_send_typed(sender, input, &error);
	return call_start(orx, error, -1, cancel_ctx, context, reply_desc, callback, NULL,
			  user_data, notify);
}

MeshRpcCall *mesh_rpc_call_message_async_with_cancel(MeshSender *sender, MeshMessage *input,
						     MeshCancelContext *cancel_ctx,
						     GMainContext *context,
						     MeshRpcMessageCallback callback,
						     gpointer user_data, GDestroyNotify notify)
{
	GError *error = NULL;

	if (!sender || !input || !cancel_ctx || !callback) {
		mesh_message_free(input);
		if (notify)
			notify(user_data);
		g_return_val_if_fail(sender && input && cancel_ctx && callback, NULL);
	}
	MeshOneshotReceiver *orx = rpc_send_message(sender, input, &error);
	return call_start(orx, error, -1, cancel_ctx, context, NULL, NULL, callback, user_data,
			  notify);
}

void mesh_rpc_call_cancel(MeshRpcCall *call)
{
	g_return_if_fail(call);
	g_mutex_lock(&call->lock);
	gboolean now = !call->finished && !call->cancelled;
	call->cancelled = TRUE;
	g_mutex_unlock(&call->lock);
	if (now)
		call_fail_later(call, NULL);
}

/*
 * Reads Result<R, RemoteError> (@reply taken): the Ok variant decoded as
 * @reply_desc into *@ret_typed, or (@reply_desc NULL) its bytes and
 * resources as *@ret_msg.
 */
static gboolean parse_reply(MeshMessage *reply, const ProtobufCMessageDescriptor *reply_desc,
			    ProtobufCMessage **ret_typed, MeshMessage **ret_msg, GError **error)
{
	/* Result<R, RemoteError>: the last variant present wins. */
	size_t size;
	const uint8_t *data = mesh_message_get_data(reply, &size);
	Reader rd = {{data, data + size}, 0, mesh_message_get_n_resources(reply)};
	Field f, variant = {0};
	int r;
	while ((r = reader_next(&rd, &f)) > 0)
		if ((f.wire.number == 1 &&
		     (f.wire.wire_type == WIRE_LEN || f.wire.wire_type == WIRE_MESH_MESSAGE)) ||
		    (f.wire.number == 2 && f.wire.wire_type == WIRE_LEN))
			variant = f;
	gboolean ok = FALSE;
	if (r < 0) {
		g_set_error(error, MESH_ERROR, MESH_ERROR_CORRUPTION, "malformed rpc reply");
	} else if (variant.wire.number == 1 && reply_desc) {
		*ret_typed = decode_field(reply_desc, &variant, reply->res, error);
		ok = *ret_typed != NULL;
	} else if (variant.wire.number == 1) {
		MeshPayloadResources *res = resources_take_range(reply->res, variant.res_first,
								 (size_t)variant.wire.n_res);
		if (res) {
			*ret_msg = message_new_bytes_take(g_memdup2(variant.wire.data,
								    variant.wire.size),
							  variant.wire.size, res, MESH_WRAP_NONE);
			ok = TRUE;
		} else {
			g_set_error(error, MESH_ERROR, MESH_ERROR_CORRUPTION, "missing resource");
		}
	} else if (variant.wire.number == 2) {
		char *chain = remote_error_parse(variant.wire.data, variant.wire.size);
		g_set_error(error, MESH_ERROR, MESH_ERROR_REMOTE, "%s", chain);
		g_free(chain);
	} else {
		g_set_error(error, MESH_ERROR, MESH_ERROR_CORRUPTION,
			    "rpc reply without a result (missing enum variant)");
	}
	mesh_message_free(reply);
	return ok;
}

gboolean rpc_parse_reply(MeshMessage *reply, const ProtobufCMessageDescriptor *reply_desc,
			 ProtobufCMessage **ret_reply, GError **error)
{
	return parse_reply(reply, reply_desc, ret_reply, NULL, error);
}

gboolean rpc_parse_reply_message(MeshMessage *reply, MeshMessage **ret_reply, GError **error)
{
	return parse_reply(reply, NULL, NULL, ret_reply, error);
}

/* Server. */

gboolean rpc_parse_request(MeshMessage *msg, const ProtobufCMessageDescriptor *input_desc,
				  ProtobufCMessage **ret_input, MeshPort **ret_port, GError **error)
{
	size_t size;
	const uint8_t *data = mesh_message_get_data(msg, &size);
	Reader rd = {{data, data + size}, 0, mesh_message_get_n_resources(msg)};
	Field f, in = {.wire = {.number = 1, .wire_type = WIRE_LEN}};
	gboolean have_port = FALSE;
	size_t port_index = 0;
	int r;
	while ((r = reader_next(&rd, &f)) > 0) {
		if (f.wire.number == 1 &&
		    (f.wire.wire_type == WIRE_LEN || f.wire.wire_type == WIRE_MESH_MESSAGE)) {
			in = f;
		} else if (f.wire.number == 2 && f.wire.wire_type == WIRE_RESOURCE) {
			have_port = TRUE;
			port_index = f.res_first;
		}
	}
	MeshPort *port = r == 0 && have_port ? mesh_message_steal_port(msg, (guint)port_index) : NULL;
	if (!port) {
		g_set_error(error, MESH_ERROR, MESH_ERROR_CORRUPTION,
			    r < 0 ? "malformed rpc request" : "rpc request without a reply port");
		mesh_message_free(msg);
		return FALSE;
	}
	ProtobufCMessage *input = decode_field(input_desc, &in, msg->res, error);
	mesh_message_free(msg);
	if (!input) {
		mesh_port_close(port); /* the caller sees MESH_ERROR_CLOSED */
		return FALSE;
	}
	*ret_input = input;
	*ret_port = port;
	return TRUE;
}

gboolean mesh_receiver_recv_rpc(MeshReceiver *receiver, const ProtobufCMessageDescriptor *input_desc,
				gint64 timeout_us, MeshRpc **ret_rpc, GError **error)
{
	gint64 start_us = timeout_us > 0 ? g_get_monotonic_time() : 0;
	MeshMessage *msg;
	ProtobufCMessage *input;
	MeshPort *port;

	g_return_val_if_fail(receiver && input_desc && ret_rpc, FALSE);
	g_return_val_if_fail(error == NULL || *error == NULL, FALSE);
	if (!timeout_check(timeout_us, G_STRFUNC, error))
		return FALSE;
	for (;;) {
		gint64 left = timeout_us;
		if (timeout_us > 0) {
			left = timeout_us - (g_get_monotonic_time() - start_us);
			left = left > 0 ? left : 1;
		}
		if (!mesh_receiver_recv_message(receiver, left, &msg, error))
			return FALSE;
		GError *err = NULL;
		if (rpc_parse_request(msg, input_desc, &input, &port, &err))
			break;
		/* One bad request does not end the server's loop (upstream drops it). */
		receiver_drop_message(receiver, "a malformed rpc request", err);
		g_error_free(err);
	}
	MeshRpc *rpc = g_new(MeshRpc, 1);
	rpc->input = input;
	rpc->reply = mesh_oneshot_sender_from_port(port, NULL);
	*ret_rpc = rpc;
	return TRUE;
}

ProtobufCMessage *mesh_rpc_get_input(MeshRpc *rpc)
{
	g_return_val_if_fail(rpc, NULL);
	return rpc->input;
}

static void rpc_reply(MeshRpc *rpc, GByteArray *bytes, MeshPayloadResources *res)
{
	mesh_oneshot_send_message(rpc->reply, message_from_bytes(bytes, res));
	rpc->reply = NULL;
	mesh_rpc_free(rpc);
}

void mesh_rpc_complete(MeshRpc *rpc, ProtobufCMessage *reply)
{
	GError *error = NULL;

	if (!rpc || !reply) {
		/* Both are taken, as always: a request without a reply is dropped. */
		mesh_rpc_free(rpc);
		mesh_payload_message_free(reply);
		g_return_if_fail(rpc && reply);
	}
	/* Ok(R): field 1, written even when empty. */
	GByteArray *bytes = g_byte_array_new();
	MeshPayloadResources *res = mesh_payload_resources_new();
	if (!encode_field(bytes, 1, reply, res, TRUE, &error)) {
		g_byte_array_free(bytes, TRUE);
		mesh_payload_resources_free(res);
		g_prefix_error(&error, "the reply could not be encoded: ");
		g_warning("%s", error->message);
		mesh_rpc_fail(rpc, error);
		g_error_free(error);
		return;
	}
	rpc_reply(rpc, bytes, res);
}

void mesh_rpc_complete_infallible(MeshRpc *rpc, ProtobufCMessage *reply)
{
	if (!rpc || !reply) {
		/* Both are taken, as always: a request without a reply is dropped. */
		mesh_rpc_free(rpc);
		mesh_payload_message_free(reply);
		g_return_if_fail(rpc && reply);
	}
	/* Rpc<I, R>: the oneshot's value is R itself. */
	mesh_oneshot_send(rpc->reply, reply);
	rpc->reply = NULL;
	mesh_rpc_free(rpc);
}

void mesh_rpc_fail(MeshRpc *rpc, const GError *error)
{
	g_return_if_fail(rpc);
	/* Err(RemoteError): {2: {1: {1: repeated string}}} */
	char **chain = g_strsplit(error ? error->message : "", ": ", -1);
	GByteArray *list = g_byte_array_new();
	for (char **s = chain; *s; s++)
		put_message_field(list, 1, (const uint8_t *)*s, strlen(*s), 0);
	g_strfreev(chain);
	GByteArray *remote = g_byte_array_new();
	if (list->len)
		put_message_field(remote, 1, list->data, list->len, 0);
	GByteArray *bytes = g_byte_array_new();
	put_message_field(bytes, 2, remote->data, remote->len, 0);
	g_byte_array_free(list, TRUE);
	g_byte_array_free(remote, TRUE);
	rpc_reply(rpc, bytes, NULL);
}

void mesh_rpc_free(MeshRpc *rpc)
{
	if (!rpc)
		return;
	mesh_payload_message_free(rpc->input);
	mesh_oneshot_sender_free(rpc->reply);
	g_free(rpc);
}
