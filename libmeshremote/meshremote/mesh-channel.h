/* SPDX-License-Identifier: MIT */
/**
 * Channels: what applications use to talk over ports.
 *
 * - mpsc: MeshSender (cloneable, thread-safe) -> MeshReceiver. FIFO per
 *   sender, no order across senders. Unbounded: sending never blocks or
 *   fails; a message to a receiver that is gone is dropped (its fds and
 *   ports released).
 * - oneshot: one value, either end movable before or after the send.
 * - rpc: a request carrying a oneshot for the reply; failable rpc replies
 *   carry an error as a chain of strings.
 *
 * Typed channels carry messages of one protobuf-c type (@desc); untyped ones
 * (desc NULL) carry MeshMessage (bytes + resources). In process, a message is
 * passed as the object itself; it is encoded only when it crosses to another
 * node. Every endpoint can travel inside a message as a port
 * (`*_into_port()`, `*_from_port()`), and keeps working at the other end.
 *
 * Receive results: a message; MESH_ERROR_CLOSED when every sender is gone
 * and everything was received (the last sender closed its end);
 * MESH_ERROR_NODE_FAILURE, after what was queued, when the last sender
 * failed (its node died or went away); MESH_ERROR_CORRUPTION for a message that does not
 * decode from the last sender; MESH_ERROR_EMPTY (try) or
 * MESH_ERROR_TIMED_OUT (blocking). A message that does not decode cuts its
 * sender off (its port fails); while other senders remain or messages are
 * queued, it is dropped (logged at debug level, counted by
 * mesh_receiver_get_n_dropped()) and the receive goes on, as upstream.
 *
 * Threads: senders may be used from any thread concurrently. A receiver is
 * used from one thread at a time; its callback runs on the GMainContext given
 * to mesh_receiver_set_callback() (or mesh_oneshot_receiver_set_callback()),
 * never under a library lock. mesh_rpc_call_async() never blocks: it calls
 * back on a chosen GMainContext.
 *
 * Blocking receives (mesh_receiver_recv(), mesh_oneshot_recv(),
 * mesh_rpc_call()) may be made on any thread. When the transport runs on a
 * caller's GMainContext (mesh_unix_node_new() with a context), a blocking
 * receive made on the context's own thread (the one that runs it, also inside
 * one of its dispatches; or, while nobody runs it, the one it belongs to: the
 * thread that made the transport, the one that pushed it as its thread
 * default, the main thread for the global default context) iterates the
 * context until the receive completes or times out: other sources of that
 * context may then run inside the call, as in a nested main loop. Made on
 * another thread, it waits for the thread that runs the context.
 */
#pragma once

#if !defined(__MESHREMOTE_H_INSIDE__) && !defined(MESHREMOTE_COMPILATION)
#error "Only <meshremote/meshremote.h> can be included directly."
#endif

#include <glib.h>
#include <meshpayload/meshpayload.h>

G_BEGIN_DECLS

/** MeshSender: the sending end of an mpsc channel (a port); senders may be cloned. */
typedef struct MeshSender MeshSender;
/** MeshReceiver: the receiving end of an mpsc channel. */
typedef struct MeshReceiver MeshReceiver;

/**
 * mesh_channel_new:
 * @desc: (nullable): the message type, NULL for untyped (MeshMessage)
 * @ret_sender: (out) (transfer full): the first sender
 * @ret_receiver: (out) (transfer full): the receiver
 */
MESH_REMOTE_API void mesh_channel_new(const ProtobufCMessageDescriptor *desc,
				      MeshSender **ret_sender, MeshReceiver **ret_receiver);

/** mesh_sender_clone: Returns: (transfer full): another sender into the same receiver. */
MESH_REMOTE_API MeshSender *mesh_sender_clone(MeshSender *sender);

/** mesh_sender_free: drops this sender; the receiver is closed once all are gone. NULL-safe. */
MESH_REMOTE_API void mesh_sender_free(MeshSender *sender);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(MeshSender, mesh_sender_free)

/**
 * mesh_sender_send:
 * @sender: a typed sender
 * @msg: (transfer full): a heap message of the channel's type, taken in all
 *     cases (freed if @sender is NULL)
 *
 * Consumes @msg, also on failure.
 */
MESH_REMOTE_API void mesh_sender_send(MeshSender *sender, ProtobufCMessage *msg);

/**
 * mesh_sender_send_message:
 * @sender: a sender (untyped, or typed: the bytes must decode as its type)
 * @msg: (transfer full): the message, taken in all cases (freed if @sender is
 *     NULL)
 *
 * Consumes @msg, also on failure.
 */
MESH_REMOTE_API void mesh_sender_send_message(MeshSender *sender, MeshMessage *msg);

/** mesh_sender_is_closed: Returns: whether the receiver is known to be gone. */
MESH_REMOTE_API gboolean mesh_sender_is_closed(MeshSender *sender);

/**
 * mesh_sender_into_port:
 * @sender: (transfer full): a sender
 *
 * Consumes @sender, also on failure.
 *
 * Returns: (transfer full): a port to send inside a message; the other side
 * makes a sender of it with mesh_sender_from_port().
 */
MESH_REMOTE_API MeshPort *mesh_sender_into_port(MeshSender *sender);

/**
 * mesh_sender_from_port:
 * @port: (transfer full): a port from mesh_sender_into_port()
 * @desc: (nullable): the message type, NULL for untyped
 *
 * Consumes @port, also on failure.
 *
 * Returns: (transfer full): a sender.
 */
MESH_REMOTE_API MeshSender *mesh_sender_from_port(MeshPort *port,
						  const ProtobufCMessageDescriptor *desc);

/**
 * mesh_receiver_recv:
 * @receiver: a typed receiver
 * @timeout_us: microseconds to wait: 0 does not wait, -1 waits forever; any
 *     other negative value fails at once with MESH_ERROR_INVALID_ARGUMENT
 * @ret_msg: (out) (transfer full): the message (mesh_payload_message_free())
 * @error: why nothing was received; MESH_ERROR_INVALID_ARGUMENT on an untyped
 *     receiver (use mesh_receiver_recv_message())
 *
 * Returns: TRUE with a message, FALSE with @error set.
 */
MESH_REMOTE_API gboolean mesh_receiver_recv(MeshReceiver *receiver, gint64 timeout_us,
					    ProtobufCMessage **ret_msg, GError **error);

/** mesh_receiver_recv_message: as mesh_receiver_recv(), for untyped receivers. */
MESH_REMOTE_API gboolean mesh_receiver_recv_message(MeshReceiver *receiver, gint64 timeout_us,
						    MeshMessage **ret_msg, GError **error);

/**
 * mesh_receiver_get_n_dropped:
 * @receiver: a receiver
 *
 * Returns: how many messages the receiver dropped as corrupt: messages that
 * did not decode (each cut its sender off), what such a sender had queued or
 * sent after it, and malformed requests skipped by mesh_receiver_recv_rpc().
 * Any thread.
 */
MESH_REMOTE_API guint64 mesh_receiver_get_n_dropped(MeshReceiver *receiver);

/**
 * mesh_receiver_count_senders:
 * @receiver: a receiver
 *
 * Returns: how many sender ports the receiver holds: one per sender (or
 * clone) that may still send, plus, once every sender has gone, the last
 * one if it failed (it carries the failure). A sender that closes or fails
 * while others remain is let go as soon as its end is seen (on the thread
 * that saw it), whether or not anyone receives; a message it queued keeps
 * what it needs until it is received. For tests and diagnostics: a
 * receiver that many short-lived senders (for instance listener clients)
 * came and went through returns to its count of live senders. Any thread.
 */
MESH_REMOTE_API guint mesh_receiver_count_senders(MeshReceiver *receiver);

/**
 * MeshReceiverFunc:
 * @receiver: the receiver
 * @user_data: the callback's data
 *
 * Called on the chosen GMainContext when something can be received (a
 * message, the close, or an error); receive with a timeout of 0 until
 * MESH_ERROR_EMPTY.
 */
typedef void (*MeshReceiverFunc)(MeshReceiver *receiver, gpointer user_data);

/**
 * mesh_receiver_set_callback:
 * @receiver: a receiver
 * @context: (nullable): where the callback runs, NULL for the global default
 * @func: (nullable): the callback; NULL removes it
 * @user_data: passed to @func
 * @notify: (nullable): frees @user_data when the callback is replaced or the
 *     receiver freed
 */
MESH_REMOTE_API void mesh_receiver_set_callback(MeshReceiver *receiver, GMainContext *context,
						MeshReceiverFunc func, gpointer user_data,
						GDestroyNotify notify);

#ifndef G_OS_WIN32
/**
 * mesh_receiver_get_fd:
 * @receiver: a receiver
 *
 * Returns: (transfer none): an fd that polls readable while something can be
 * received, for event loops other than GLib's.
 */
MESH_REMOTE_API int mesh_receiver_get_fd(MeshReceiver *receiver);
#else
/**
 * mesh_receiver_get_handle:
 * @receiver: a receiver
 *
 * Windows only: the counterpart of mesh_receiver_get_fd(), which
 * Windows does not have.
 *
 * Returns: (transfer none): a manual-reset event HANDLE (not inheritable,
 * made on the first call) that is signalled when the fd would poll
 * readable, for WaitForMultipleObjects() and loops other than GLib's; it
 * lives as long as the fd would. NULL if it cannot be made.
 */
MESH_REMOTE_API MeshOsHandle mesh_receiver_get_handle(MeshReceiver *receiver);
#endif

/** mesh_receiver_free: drops the receiver; senders see it closed. NULL-safe. */
MESH_REMOTE_API void mesh_receiver_free(MeshReceiver *receiver);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(MeshReceiver, mesh_receiver_free)

/**
 * mesh_receiver_new:
 * @desc: (nullable): the message type, NULL for untyped (MeshMessage)
 *
 * A receiver without senders (upstream Receiver::new()): it reads
 * MESH_ERROR_CLOSED until mesh_receiver_new_sender() makes one.
 *
 * Returns: (transfer full): the receiver.
 */
MESH_REMOTE_API MeshReceiver *mesh_receiver_new(const ProtobufCMessageDescriptor *desc);

/**
 * mesh_receiver_new_sender:
 * @receiver: a receiver
 *
 * Makes a sender into @receiver (upstream Receiver::sender()). A receiver
 * that had ended (every sender gone, its end reported or not) reopens: it
 * waits for this sender's messages again, and a failure of the last sender
 * before is forgotten. Used from the receiver's thread.
 *
 * Returns: (transfer full): the sender.
 */
MESH_REMOTE_API MeshSender *mesh_receiver_new_sender(MeshReceiver *receiver);

/**
 * mesh_receiver_is_terminated:
 * @receiver: a receiver
 *
 * Returns: whether the receiver reported its end (MESH_ERROR_CLOSED, the
 * last sender's failure, or the MESH_ERROR_CORRUPTION that cut off the
 * last sender; from a receive, or to its callback) and nothing can come any
 * more (upstream FusedStream::is_terminated()). Any thread.
 */
MESH_REMOTE_API gboolean mesh_receiver_is_terminated(MeshReceiver *receiver);

/**
 * mesh_receiver_into_port:
 * @receiver: (transfer full): a receiver
 *
 * Consumes @receiver, also on failure.
 *
 * Returns: (transfer full): a port standing for the receiver. It holds
 * every message the receiver held, in order, and every sender (local ones
 * keep sending into it); once they are all gone it reads "closed". Make a
 * receiver of it with mesh_receiver_from_port(), send it, or bridge it.
 */
MESH_REMOTE_API MeshPort *mesh_receiver_into_port(MeshReceiver *receiver);

/**
 * mesh_receiver_from_port:
 * @port: (transfer full): a port from mesh_receiver_into_port()
 * @desc: (nullable): the message type, NULL for untyped
 *
 * Consumes @port, also on failure.
 *
 * Returns: (transfer full): a receiver.
 */
MESH_REMOTE_API MeshReceiver *mesh_receiver_from_port(MeshPort *port,
						      const ProtobufCMessageDescriptor *desc);

/**
 * mesh_sender_bridge:
 * @sender: (transfer full): a sender of one channel
 * @receiver: (transfer full): the receiver of another channel of the same type
 *
 * Consumes @sender, also on failure. Consumes @receiver, also on failure.
 *
 * Joins the two channels (upstream Sender::bridge): what @receiver holds,
 * and everything its senders send from now on, goes to @sender's receiver;
 * each sender's messages stay in order. @receiver's senders keep working
 * (wherever they are); @sender's receiver sees "closed" once they are all
 * gone. The same as mesh_port_bridge(mesh_sender_into_port(@sender),
 * mesh_receiver_into_port(@receiver)). Any thread. Both are taken in all
 * cases: if one is NULL, the other is freed.
 */
MESH_REMOTE_API void mesh_sender_bridge(MeshSender *sender, MeshReceiver *receiver);

/**
 * mesh_receiver_bridge:
 * @receiver: (transfer full): the receiver of one channel
 * @sender: (transfer full): a sender of another channel of the same type
 *
 * Consumes @receiver, also on failure. Consumes @sender, also on failure.
 *
 * Upstream Receiver::bridge: mesh_sender_bridge(@sender, @receiver) (both
 * taken in all cases).
 */
MESH_REMOTE_API void mesh_receiver_bridge(MeshReceiver *receiver, MeshSender *sender);

/* Oneshot. */

/** MeshOneshotSender: the sending end of a one-value channel. */
typedef struct MeshOneshotSender MeshOneshotSender;
/** MeshOneshotReceiver: the receiving end of a one-value channel. */
typedef struct MeshOneshotReceiver MeshOneshotReceiver;

/** mesh_oneshot_new: a one-value channel; @desc NULL for untyped. */
MESH_REMOTE_API void mesh_oneshot_new(const ProtobufCMessageDescriptor *desc,
				      MeshOneshotSender **ret_sender,
				      MeshOneshotReceiver **ret_receiver);

/**
 * mesh_oneshot_send:
 * @sender: (transfer full): a typed oneshot sender
 * @msg: (transfer full): a heap message of the channel's type
 *
 * Sends the value. Consumes @sender, also on failure. Consumes @msg, also
 * on failure. If one is NULL, the other is freed (a sender freed unsent:
 * its receiver gets MESH_ERROR_CLOSED).
 */
MESH_REMOTE_API void mesh_oneshot_send(MeshOneshotSender *sender, ProtobufCMessage *msg);

/**
 * mesh_oneshot_send_message:
 * @sender: (transfer full): a oneshot sender
 * @msg: (transfer full): the message
 *
 * Untyped mesh_oneshot_send(). Consumes @sender, also on failure. Consumes
 * @msg, also on failure.
 */
MESH_REMOTE_API void mesh_oneshot_send_message(MeshOneshotSender *sender, MeshMessage *msg);

/** mesh_oneshot_sender_free: drops the sender unsent; the receiver gets MESH_ERROR_CLOSED. */
MESH_REMOTE_API void mesh_oneshot_sender_free(MeshOneshotSender *sender);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(MeshOneshotSender, mesh_oneshot_sender_free)

/**
 * mesh_oneshot_sender_is_closed:
 * @sender: a oneshot sender
 *
 * Returns: whether the receiver is known to be gone (freed, or its node
 * failed): a value sent now would be dropped (upstream
 * OneshotSender::is_closed()). Any thread.
 */
MESH_REMOTE_API gboolean mesh_oneshot_sender_is_closed(MeshOneshotSender *sender);

/**
 * mesh_oneshot_recv:
 * @receiver: a receiver. Exception to the ownership rule: @receiver is
 *     consumed when a value or a final error was returned; not on
 *     MESH_ERROR_EMPTY / MESH_ERROR_TIMED_OUT /
 *     MESH_ERROR_INVALID_ARGUMENT, after which the caller still owns it (and
 *     frees it if it does not try again); nor on a bad argument (a NULL
 *     @ret_msg, an error already set).
 *     A caller that may stop waiting must pass @error to tell which.
 * @timeout_us: 0 does not wait, -1 waits forever; any other negative value
 *     fails at once with MESH_ERROR_INVALID_ARGUMENT
 * @ret_msg: (out) (transfer full): the value
 * @error: MESH_ERROR_CLOSED (sender dropped), MESH_ERROR_NODE_FAILURE,
 *     MESH_ERROR_CORRUPTION (undecodable, or a second message), EMPTY, TIMED_OUT,
 *     MESH_ERROR_INVALID_ARGUMENT on an untyped receiver (use
 *     mesh_oneshot_recv_message())
 *
 * Returns: TRUE with a value.
 */
MESH_REMOTE_API gboolean mesh_oneshot_recv(MeshOneshotReceiver *receiver, gint64 timeout_us,
					   ProtobufCMessage **ret_msg, GError **error);

/**
 * mesh_oneshot_recv_message:
 *
 * Untyped mesh_oneshot_recv(). Exception to the ownership rule: as
 * mesh_oneshot_recv(), @receiver is consumed only when a value or a final
 * error was returned.
 */
MESH_REMOTE_API gboolean mesh_oneshot_recv_message(MeshOneshotReceiver *receiver,
						   gint64 timeout_us, MeshMessage **ret_msg,
						   GError **error);

/** mesh_oneshot_receiver_free: NULL-safe. */
MESH_REMOTE_API void mesh_oneshot_receiver_free(MeshOneshotReceiver *receiver);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(MeshOneshotReceiver, mesh_oneshot_receiver_free)

/**
 * MeshOneshotReceiverFunc:
 * @receiver: the receiver
 * @user_data: the callback's data
 *
 * Called on the chosen GMainContext once the outcome is there (the value,
 * or an end: closed, failed, corrupt); receive it with
 * mesh_oneshot_recv() or mesh_oneshot_recv_message() with a timeout of 0,
 * which consumes @receiver (its callback source goes with it). Called
 * again at every iteration of the context while it is not received.
 */
typedef void (*MeshOneshotReceiverFunc)(MeshOneshotReceiver *receiver, gpointer user_data);

/**
 * mesh_oneshot_receiver_set_callback:
 * @receiver: a receiver
 * @context: (nullable): where the callback runs, NULL for the global default
 * @func: (nullable): the callback; NULL removes it
 * @user_data: passed to @func
 * @notify: (nullable): frees @user_data when the callback is replaced or
 *     removed, or the receiver consumed, freed or converted to a port (after
 *     a running dispatch returns)
 *
 * As mesh_receiver_set_callback(). The callback never runs under a library
 * lock; the receiver holds a reference on @context while a callback is set.
 * May be called from any thread, while the receiver is used from one.
 */
MESH_REMOTE_API void mesh_oneshot_receiver_set_callback(MeshOneshotReceiver *receiver,
							GMainContext *context,
							MeshOneshotReceiverFunc func,
							gpointer user_data, GDestroyNotify notify);

#ifndef G_OS_WIN32
/**
 * mesh_oneshot_receiver_get_fd:
 * @receiver: a receiver
 *
 * Returns: (transfer none): an eventfd (close-on-exec, nonblocking, made on
 * the first call) that polls readable once the outcome is there, until the
 * receiver is consumed or freed, which closes it; or a negative errno.
 */
MESH_REMOTE_API int mesh_oneshot_receiver_get_fd(MeshOneshotReceiver *receiver);
#else
/**
 * mesh_oneshot_receiver_get_handle:
 * @receiver: a receiver
 *
 * Windows only: the counterpart of mesh_oneshot_receiver_get_fd(), which
 * Windows does not have.
 *
 * Returns: (transfer none): a manual-reset event HANDLE (not inheritable,
 * made on the first call) that is signalled when the fd would poll
 * readable, for WaitForMultipleObjects() and loops other than GLib's; it
 * lives as long as the fd would. NULL if it cannot be made.
 */
MESH_REMOTE_API MeshOsHandle mesh_oneshot_receiver_get_handle(MeshOneshotReceiver *receiver);
#endif

/**
 * mesh_oneshot_sender_into_port:
 * @sender: (transfer full): a oneshot sender
 *
 * Consumes @sender, also on failure.
 *
 * Returns: (transfer full): a port to send inside a message.
 */
MESH_REMOTE_API MeshPort *mesh_oneshot_sender_into_port(MeshOneshotSender *sender);

/**
 * mesh_oneshot_sender_from_port:
 * @port: (transfer full): a port from mesh_oneshot_sender_into_port()
 * @desc: (nullable): the value's type, NULL for untyped
 *
 * Consumes @port, also on failure.
 *
 * Returns: (transfer full): a oneshot sender.
 */
MESH_REMOTE_API MeshOneshotSender *mesh_oneshot_sender_from_port(
	MeshPort *port, const ProtobufCMessageDescriptor *desc);

/**
 * mesh_oneshot_receiver_into_port:
 * @receiver: (transfer full): a oneshot receiver
 *
 * Consumes @receiver, also on failure.
 *
 * Returns: (transfer full): a port to send inside a message.
 */
MESH_REMOTE_API MeshPort *mesh_oneshot_receiver_into_port(MeshOneshotReceiver *receiver);

/**
 * mesh_oneshot_receiver_from_port:
 * @port: (transfer full): a port from mesh_oneshot_receiver_into_port()
 * @desc: (nullable): the value's type, NULL for untyped
 *
 * Consumes @port, also on failure.
 *
 * Returns: (transfer full): a oneshot receiver.
 */
MESH_REMOTE_API MeshOneshotReceiver *mesh_oneshot_receiver_from_port(
	MeshPort *port, const ProtobufCMessageDescriptor *desc);

/* RPC: a request message whose wire form is {1: input, 2: reply oneshot port}. */

/**
 * MeshRpc:
 *
 * A received request, to answer once (mesh_rpc_complete(), mesh_rpc_fail())
 * or drop (mesh_rpc_free()).
 */
typedef struct MeshRpc MeshRpc;

/**
 * mesh_rpc_call:
 * @sender: an rpc sender (created with mesh_channel_new(NULL, ...))
 * @input: (transfer full): the request, taken in all cases (freed on any
 *     failure, a bad argument included)
 * @reply_desc: the reply's type
 * @timeout_us: as for mesh_receiver_recv(); a bad one fails before anything
 *     is sent
 * @ret_reply: (out) (transfer full): the reply
 * @error: MESH_ERROR_CLOSED if the server dropped the request (or the
 *     channel's receiver was already gone when the call was made),
 *     MESH_ERROR_NODE_FAILURE if its node failed while the call was waiting,
 *     MESH_ERROR_REMOTE with the
 *     server's error chain (joined by ": ") for a failed failable call
 *
 * Consumes @input, also on failure.
 *
 * Returns: TRUE with a reply.
 */
MESH_REMOTE_API gboolean mesh_rpc_call(MeshSender *sender, ProtobufCMessage *input,
				       const ProtobufCMessageDescriptor *reply_desc,
				       gint64 timeout_us, ProtobufCMessage **ret_reply,
				       GError **error);

/* Asynchronous rpc calls. */

/**
 * MeshRpcCall: an asynchronous rpc call in flight (mesh_rpc_call_async()),
 * reference-counted; cancel it with mesh_rpc_call_cancel().
 */
typedef struct MeshRpcCall MeshRpcCall;

/**
 * MeshRpcCallback:
 * @reply: (transfer full) (nullable): the reply (free it with
 *     mesh_payload_message_free()), NULL on error
 * @error: (transfer none) (nullable): why there is no reply (as for
 *     mesh_rpc_call(), plus MESH_ERROR_TIMED_OUT and MESH_ERROR_CANCELLED);
 *     valid during the callback (g_error_copy() it to keep it)
 * @user_data: the call's data
 *
 * The outcome of mesh_rpc_call_async(): exactly one of @reply and @error
 * is set.
 */
typedef void (*MeshRpcCallback)(ProtobufCMessage *reply, const GError *error,
				gpointer user_data);

/**
 * MeshRpcMessageCallback:
 * @reply: (transfer full) (nullable): the reply's encoded bytes and
 *     resources (as mesh_receiver_recv_message() gives a message), NULL on
 *     error
 * @error: (transfer none) (nullable): as for #MeshRpcCallback
 * @user_data: the call's data
 *
 * The outcome of mesh_rpc_call_message_async().
 */
typedef void (*MeshRpcMessageCallback)(MeshMessage *reply, const GError *error,
				       gpointer user_data);

/**
 * mesh_rpc_call_async:
 * @sender: an rpc sender (created with mesh_channel_new(NULL, ...))
 * @input: (transfer full): the request, taken in all cases
 * @reply_desc: the reply's type
 * @timeout_us: the deadline, from now: -1 none; 0 or more: the call fails
 *     with MESH_ERROR_TIMED_OUT unless the reply came within it (a late
 *     reply is dropped); any other negative value fails the call with
 *     MESH_ERROR_INVALID_ARGUMENT (nothing is sent)
 * @context: (nullable): where @callback runs, NULL for the global default
 *     context
 * @callback: called once with the reply or the error
 * @user_data: passed to @callback
 * @notify: (nullable): frees @user_data right after @callback returned
 *
 * Consumes @input, also on failure.
 *
 * Sends the request (at once, on the calling thread: the call never
 * blocks) and returns. @callback then runs exactly once, on @context, with
 * the reply or the error: MESH_ERROR_CLOSED (the server dropped the request,
 * or the channel's receiver was already gone), MESH_ERROR_NODE_FAILURE (its
 * node failed: the message names it), MESH_ERROR_REMOTE (the server's error
 * chain), MESH_ERROR_CORRUPTION, MESH_ERROR_TIMED_OUT or
 * MESH_ERROR_CANCELLED. It never runs inside mesh_rpc_call_async() or
 * mesh_rpc_call_cancel(), even for an error known at once; it may free
 * @sender, make other calls, and cancel or unref any call. The call keeps a
 * reference on @context until @callback has run and the handle is dropped.
 * Any thread.
 *
 * Returns: (transfer full): the call, to cancel it; drop it with
 * mesh_rpc_call_unref() whenever it is no longer wanted (at once for a
 * call that will not be cancelled): that does not cancel the call. NULL for
 * a bad argument (a critical; @input and @user_data, with @notify, are
 * freed and @callback never runs).
 */
MESH_REMOTE_API MeshRpcCall *mesh_rpc_call_async(MeshSender *sender, ProtobufCMessage *input,
						 const ProtobufCMessageDescriptor *reply_desc,
						 gint64 timeout_us, GMainContext *context,
						 MeshRpcCallback callback, gpointer user_data,
						 GDestroyNotify notify);

/**
 * mesh_rpc_call_message_async:
 * @sender: an rpc sender
 * @input: (transfer full): the request's encoded bytes and resources (what
 *     libmeshpayload encodes for the server's input type), taken in all
 *     cases
 * @timeout_us: as for mesh_rpc_call_async()
 * @context: (nullable): as for mesh_rpc_call_async()
 * @callback: called once with the reply's bytes and resources, or the error
 * @user_data: passed to @callback
 * @notify: (nullable): frees @user_data right after @callback returned
 *
 * Consumes @input, also on failure.
 *
 * The untyped mesh_rpc_call_async(): the same request and reply on the wire.
 *
 * Returns: (transfer full): as mesh_rpc_call_async().
 */
MESH_REMOTE_API MeshRpcCall *mesh_rpc_call_message_async(MeshSender *sender, MeshMessage *input,
							 gint64 timeout_us,
							 GMainContext *context,
							 MeshRpcMessageCallback callback,
							 gpointer user_data,
							 GDestroyNotify notify);

/**
 * mesh_rpc_call_cancel:
 * @call: a call
 *
 * Cancels @call if its outcome is not decided yet: the callback then runs
 * (once, on its context, never inside this function) with
 * MESH_ERROR_CANCELLED, even if the reply is there but not dispatched (it
 * is dropped; the server may still handle the request). The outcome is
 * decided on the context when the callback is about to run: a cancel made
 * on the context's thread before the callback always wins; one from
 * another thread wins unless the callback is on its way. After that, or a
 * second time, it does nothing. Any thread.
 */
MESH_REMOTE_API void mesh_rpc_call_cancel(MeshRpcCall *call);

/** mesh_rpc_call_ref: Returns: (transfer full): @call, with one more reference. */
MESH_REMOTE_API MeshRpcCall *mesh_rpc_call_ref(MeshRpcCall *call);

/**
 * mesh_rpc_call_unref: drops a reference; the call goes on (it is not
 * cancelled). NULL-safe. Any thread.
 */
MESH_REMOTE_API void mesh_rpc_call_unref(MeshRpcCall *call);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(MeshRpcCall, mesh_rpc_call_unref)

/**
 * mesh_receiver_recv_rpc:
 * @receiver: an untyped receiver of rpc requests
 * @input_desc: the request's type
 * @timeout_us: as for mesh_receiver_recv()
 * @ret_rpc: (out) (transfer full): the request; answer it with
 *     mesh_rpc_complete() or mesh_rpc_fail(), or free it (the caller then
 *     gets MESH_ERROR_CLOSED)
 * @error: as for mesh_receiver_recv()
 *
 * A malformed request (or an input that does not decode as @input_desc) is
 * dropped, counted by mesh_receiver_get_n_dropped(), and the receive goes
 * on; its caller, if it gave a reply port, gets MESH_ERROR_CLOSED.
 */
MESH_REMOTE_API gboolean mesh_receiver_recv_rpc(MeshReceiver *receiver,
						const ProtobufCMessageDescriptor *input_desc,
						gint64 timeout_us, MeshRpc **ret_rpc,
						GError **error);

/** mesh_rpc_get_input: Returns: (transfer none): the request. */
MESH_REMOTE_API ProtobufCMessage *mesh_rpc_get_input(MeshRpc *rpc);

/**
 * mesh_rpc_complete:
 * @rpc: (transfer full): a request
 * @reply: (transfer full): the reply, of the caller's reply type
 *
 * Replies with @reply. Consumes @rpc, also on failure. Consumes @reply, also
 * on failure. If one is NULL, the other is freed (a request freed
 * unanswered: its caller gets MESH_ERROR_CLOSED).
 */
MESH_REMOTE_API void mesh_rpc_complete(MeshRpc *rpc, ProtobufCMessage *reply);

/**
 * mesh_rpc_fail:
 * @rpc: (transfer full): a request
 * @error: (nullable): the error; its message, split at ": ", becomes the
 *     remote error chain (NULL: an empty chain)
 *
 * Consumes @rpc, also on failure.
 */
MESH_REMOTE_API void mesh_rpc_fail(MeshRpc *rpc, const GError *error);

/**
 * mesh_rpc_complete_infallible:
 * @rpc: (transfer full): a request from a caller that expects a plain reply
 *     (mesh_rpc_call_infallible(), mesh_rpc_send_infallible(); upstream
 *     `Rpc<I, R>`, not `FailableRpc`)
 * @reply: (transfer full): the reply, of the caller's reply type
 *
 * Replies with @reply itself, not wrapped in a result (upstream
 * Rpc::complete()). Consumes @rpc, also on failure. Consumes @reply, also
 * on failure. If one is NULL, the other is freed.
 */
MESH_REMOTE_API void mesh_rpc_complete_infallible(MeshRpc *rpc, ProtobufCMessage *reply);

/** mesh_rpc_free: drops the request unanswered. NULL-safe. */
MESH_REMOTE_API void mesh_rpc_free(MeshRpc *rpc);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(MeshRpc, mesh_rpc_free)

/* Rpc calls whose reply is waited for later, and the non-failable form. */

/**
 * MeshRpcPending: an rpc request sent, whose reply is waited for later
 * (upstream PendingRpc / PendingFailableRpc). Used by one thread at a time.
 */
typedef struct MeshRpcPending MeshRpcPending;

/**
 * mesh_rpc_send:
 * @sender: an rpc sender (created with mesh_channel_new(NULL, ...))
 * @input: (transfer full): the request, taken in all cases
 * @reply_desc: the reply's type
 * @error: why nothing was sent
 *
 * Consumes @input, also on failure. Sends a failable request (as
 * mesh_rpc_call(): the server answers with mesh_rpc_complete() or
 * mesh_rpc_fail()) and returns at once; wait for the reply with
 * mesh_rpc_pending_wait().
 *
 * Returns: (transfer full): the pending call, or NULL.
 */
MESH_REMOTE_API MeshRpcPending *mesh_rpc_send(MeshSender *sender, ProtobufCMessage *input,
					      const ProtobufCMessageDescriptor *reply_desc,
					      GError **error);

/**
 * mesh_rpc_send_infallible:
 * @sender: an rpc sender
 * @input: (transfer full): the request, taken in all cases
 * @reply_desc: the reply's type
 * @error: why nothing was sent
 *
 * Consumes @input, also on failure. mesh_rpc_send() for upstream's
 * non-failable `Rpc<I, R>`: the reply is R itself, which the server sends
 * with mesh_rpc_complete_infallible().
 *
 * Returns: (transfer full): the pending call, or NULL.
 */
MESH_REMOTE_API MeshRpcPending *mesh_rpc_send_infallible(MeshSender *sender,
							 ProtobufCMessage *input,
							 const ProtobufCMessageDescriptor *reply_desc,
							 GError **error);

/**
 * mesh_rpc_pending_wait:
 * @pending: a pending call
 * @timeout_us: 0 does not wait, -1 waits forever; any other negative value
 *     fails at once with MESH_ERROR_INVALID_ARGUMENT
 * @ret_reply: (out) (transfer full): the reply
 * @error: as for mesh_rpc_call() (MESH_ERROR_REMOTE only for a failable
 *     call), MESH_ERROR_EMPTY or MESH_ERROR_TIMED_OUT while the reply is
 *     not there (wait again later), MESH_ERROR_INVALID_ARGUMENT once the
 *     outcome was returned
 *
 * Waits for the reply; any thread, but one at a time. The outcome (a reply
 * or a final error) is returned once; @pending is not consumed.
 *
 * Returns: TRUE with a reply.
 */
MESH_REMOTE_API gboolean mesh_rpc_pending_wait(MeshRpcPending *pending, gint64 timeout_us,
					       ProtobufCMessage **ret_reply, GError **error);

/** mesh_rpc_pending_free: drops the call; a reply that comes later is dropped. NULL-safe. */
MESH_REMOTE_API void mesh_rpc_pending_free(MeshRpcPending *pending);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(MeshRpcPending, mesh_rpc_pending_free)

/**
 * mesh_rpc_call_infallible:
 * @sender: an rpc sender
 * @input: (transfer full): the request, taken in all cases
 * @reply_desc: the reply's type
 * @timeout_us: as for mesh_rpc_call()
 * @ret_reply: (out) (transfer full): the reply
 * @error: as for mesh_rpc_call(), without MESH_ERROR_REMOTE
 *
 * Consumes @input, also on failure. mesh_rpc_call() for upstream's
 * non-failable `Rpc<I, R>` (mesh_rpc_send_infallible() and
 * mesh_rpc_pending_wait()).
 *
 * Returns: TRUE with a reply.
 */
MESH_REMOTE_API gboolean mesh_rpc_call_infallible(MeshSender *sender, ProtobufCMessage *input,
						  const ProtobufCMessageDescriptor *reply_desc,
						  gint64 timeout_us, ProtobufCMessage **ret_reply,
						  GError **error);

G_END_DECLS
