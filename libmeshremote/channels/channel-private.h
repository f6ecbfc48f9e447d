/* SPDX-License-Identifier: MIT */
/* Helpers shared by the channel files (channel.c, oneshot.c, rpc.c). */
#pragma once

#include "remote-private.h"

/* port_fail() from a port handler: after @d runs, when the port lock is free. */
void channel_fail_port_later(Deferred *d, MeshPort *port, const char *reason);

/*
 * Turns a message as a port handler got it into channel form: a raw message
 * (MESH_WRAP_NONE) or one from another node (MESH_WRAP_WIRE) has its framing
 * parsed into MESH_WRAP_FIELD1 or MESH_WRAP_PORT. Returns 0 or -EBADMSG.
 */
int channel_unwrap(MeshMessage *msg, GError **error);

/* g_main_context_wakeup(@context) after @d runs, when the locks are free. */
void channel_wake_context_later(Deferred *d, GMainContext *context);

/*
 * Receiver callbacks (mpsc and oneshot): names @source, sets its callback
 * and attaches it; then puts it (or NULL to remove) in *@slot with a
 * reference on @context in *@slot_context, under @lock, and destroys the
 * source it replaces (outside the lock: its notify may run there).
 */
void channel_source_attach(GSource *source, const char *name, GMainContext *context,
			   GSourceFunc func, gpointer user_data, GDestroyNotify notify);
void channel_swap_source(GMutex *lock, GSource **slot, GMainContext **slot_context,
			 GSource *source, GMainContext *context);


/* Waits on @cond until @deadline (monotonic us), or forever if @deadline < 0. */
gboolean channel_cond_wait(GCond *cond, GMutex *lock, gint64 deadline);

/* The deadline for a timeout in us (-1 forever, 0 none). */
gint64 channel_deadline(gint64 timeout_us);

/*
 * The threads of one receiver (mpsc or oneshot) that wait by running the
 * transport's I/O (its MeshIoHook) instead of sleeping on a GCond.
 * Under the receiver's lock.
 */
typedef struct {
	guint n;          /* threads inside io_waiters_run() */
	GThread *last;    /* the last of them to come */
	MeshIoHook *hook; /* the hook they run, while n > 0 (borrowed) */
} IoWaiters;

/*
 * The receiver became ready (called under its lock). Returns a reference
 * to the hook to wake once the locks are released, or NULL: nobody waits
 * by running the I/O, or only the calling thread, which looks at its queue
 * again when its iteration returns (the hot path: a borrower delivering to
 * itself). Any other waiter must be woken, or it could start to poll after
 * the message was queued. Also tells the transport when the caller
 * delivered to someone else (io_note_foreign_delivery()).
 */
MeshIoHook *io_waiters_wake_locked(IoWaiters *w);

/*
 * One step of a wait, @lock held (released around it): runs @hook's I/O
 * once on this thread. FALSE if @hook refused (another thread polls): wait
 * on the GCond instead. Sets *@expired when it returned at @deadline.
 */
gboolean io_waiters_run(IoWaiters *w, GMutex *lock, MeshIoHook *hook, gint64 deadline,
			gboolean *expired);

/*
 * Counts a message dropped by @r as corrupt (mesh_receiver_get_n_dropped())
 * and logs it (debug, rate-limited).
 */
void receiver_drop_message(MeshReceiver *r, const char *what, const GError *error);

/*
 * The rpc envelope's parsers (rpc.c), each taking @msg / @reply. A request:
 * TRUE with the input and the reply port, FALSE with @error
 * (MESH_ERROR_CORRUPTION). A reply (Result<R, RemoteError>): TRUE with the
 * decoded R, FALSE with MESH_ERROR_REMOTE (the remote error's chain) or
 * MESH_ERROR_CORRUPTION.
 */
gboolean rpc_parse_request(MeshMessage *msg, const ProtobufCMessageDescriptor *input_desc,
			   ProtobufCMessage **ret_input, MeshPort **ret_port, GError **error);
gboolean rpc_parse_reply(MeshMessage *reply, const ProtobufCMessageDescriptor *reply_desc,
			 ProtobufCMessage **ret_reply, GError **error);
/* rpc_parse_reply() for untyped calls: R's bytes and resources as a message. */
gboolean rpc_parse_reply_message(MeshMessage *reply, MeshMessage **ret_reply, GError **error);

/* cancel.c, for tests: how many ports @cancel watches (ended ones are collected). */
guint cancel_count_ports(MeshCancel *cancel);
