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
 * to mesh_receiver_set_callback(), never under a library lock.
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

typedef struct MeshSender MeshSender;
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

/**
 * mesh_receiver_get_fd:
 * @receiver: a receiver
 *
 * Returns: (transfer none): an fd that polls readable while something can be
 * received, for event loops other than GLib's.
 */
MESH_REMOTE_API int mesh_receiver_get_fd(MeshReceiver *receiver);

/** mesh_receiver_free: drops the receiver; senders see it closed. NULL-safe. */
MESH_REMOTE_API void mesh_receiver_free(MeshReceiver *receiver);

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

typedef struct MeshOneshotSender MeshOneshotSender;
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

/** mesh_rpc_free: drops the request unanswered. NULL-safe. */
MESH_REMOTE_API void mesh_rpc_free(MeshRpc *rpc);

G_END_DECLS
