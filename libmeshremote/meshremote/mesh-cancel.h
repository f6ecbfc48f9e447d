/* SPDX-License-Identifier: MIT */
/**
 * Cancellation and deadlines (upstream mesh CancelContext, Cancel, Deadline).
 *
 * A MeshCancelContext tells an operation that it should stop: because its
 * owner cancelled it (a MeshCancel, whose cancel or free cancels every
 * context made from it), or because its deadline passed. Contexts chain: a
 * child made with mesh_cancel_context_with_cancel(),
 * mesh_cancel_context_with_deadline() or mesh_cancel_context_with_timeout()
 * is cancelled with its parent, and its deadline is the earlier of the two.
 *
 * A context travels inside messages to another process, where it still
 * cancels: it is a set of ports whose peers the MeshCancel objects hold (a
 * close is the cancel), plus the wall-clock deadline. The wire form is
 * upstream's (<meshremote/cancel.proto>, a `mesh_remote.CancelContext`
 * field), so a context goes to and comes from a Rust mesh process too.
 *
 * Waiting: mesh_cancel_context_wait() (blocking, with a timeout),
 * mesh_cancel_context_get_fd() (an fd that polls readable once cancelled)
 * and mesh_cancel_context_set_callback() (once, on a GMainContext).
 *
 * Threads: a context is used from one thread at a time (like a receiver; its
 * callback runs on the chosen GMainContext); a MeshCancel from any thread.
 * Ownership: the usual (meshremote.h); a context is not refcounted: clone it
 * (mesh_cancel_context_clone()) to hand one to another owner.
 */
#pragma once

#if !defined(__MESHREMOTE_H_INSIDE__) && !defined(MESHREMOTE_COMPILATION)
#error "Only <meshremote/meshremote.h> can be included directly."
#endif

#include <glib.h>
#include <meshpayload/meshpayload.h>
#include <meshremote/cancel.pb-c.h>

G_BEGIN_DECLS

/**
 * MeshCancelReason:
 * @MESH_CANCEL_REASON_NONE: not cancelled
 * @MESH_CANCEL_REASON_CANCELLED: the owner cancelled (upstream CancelReason::Cancelled)
 * @MESH_CANCEL_REASON_DEADLINE_EXCEEDED: the deadline passed
 *
 * Why a context is cancelled. Where a call reports it as an error (an
 * asynchronous rpc call), CANCELLED is MESH_ERROR_CANCELLED and
 * DEADLINE_EXCEEDED is MESH_ERROR_TIMED_OUT ("deadline exceeded").
 */
typedef enum {
	MESH_CANCEL_REASON_NONE,
	MESH_CANCEL_REASON_CANCELLED,
	MESH_CANCEL_REASON_DEADLINE_EXCEEDED,
} MeshCancelReason;

/** mesh_cancel_reason_to_string: Returns: (transfer none): "cancelled", "deadline exceeded" or "not cancelled". */
MESH_REMOTE_API const char *mesh_cancel_reason_to_string(MeshCancelReason reason);

/**
 * MeshDeadline:
 * @wall_sec: wall-clock (CLOCK_REALTIME) seconds since the Unix epoch
 * @wall_nsec: and nanoseconds, in [0, 1e9)
 * @has_monotonic: whether @monotonic_ns is set
 * @monotonic_ns: CLOCK_MONOTONIC nanoseconds, meaningful in this process only
 *
 * A point in time (upstream Deadline): wall-clock time and, when made in
 * this process, monotonic time. Two deadlines compare by monotonic time if
 * both have it, else by wall-clock time. Only the wall-clock time travels
 * (as a Timestamp). A plain value: copy it freely.
 */
typedef struct {
	gint64 wall_sec;
	gint32 wall_nsec;
	gboolean has_monotonic;
	gint64 monotonic_ns;
} MeshDeadline;

/** mesh_deadline_now: @ret: (out caller-allocates): now, with both clocks. */
MESH_REMOTE_API void mesh_deadline_now(MeshDeadline *ret);

/**
 * mesh_deadline_add:
 * @deadline: a deadline
 * @ns: nanoseconds to add
 * @ret: (out caller-allocates): @deadline + @ns (may be @deadline)
 *
 * Returns: FALSE on overflow of the wall-clock time (@ret unchanged); a
 * monotonic time that would overflow is dropped, as upstream.
 */
MESH_REMOTE_API gboolean mesh_deadline_add(const MeshDeadline *deadline, guint64 ns,
					   MeshDeadline *ret);

/**
 * mesh_deadline_sub:
 * @deadline: a deadline
 * @ns: nanoseconds to subtract
 * @ret: (out caller-allocates): @deadline - @ns (may be @deadline); before
 *     the epoch is fine, a wall-clock time that would overflow becomes the
 *     epoch (upstream); a monotonic time below zero is dropped
 */
MESH_REMOTE_API void mesh_deadline_sub(const MeshDeadline *deadline, guint64 ns,
				       MeshDeadline *ret);

/**
 * mesh_deadline_compare:
 * @a: a deadline
 * @b: another
 *
 * Returns: <0, 0 or >0 as @a is before, at or after @b (monotonic time if
 * both have it, else wall-clock time).
 */
MESH_REMOTE_API int mesh_deadline_compare(const MeshDeadline *a, const MeshDeadline *b);

/**
 * mesh_deadline_to_timestamp:
 * @deadline: a deadline
 * @ret: (out caller-allocates): its wall-clock time (initialized here)
 */
MESH_REMOTE_API void mesh_deadline_to_timestamp(const MeshDeadline *deadline,
						MeshPayload__Timestamp *ret);

/**
 * mesh_deadline_from_timestamp:
 * @timestamp: a wall-clock time
 * @ret: (out caller-allocates): a deadline without monotonic time; the
 *     epoch if @timestamp is out of range (upstream's rule)
 */
MESH_REMOTE_API void mesh_deadline_from_timestamp(const MeshPayload__Timestamp *timestamp,
						  MeshDeadline *ret);

/**
 * mesh_deadline_remaining_us:
 * @deadline: a deadline
 *
 * Returns: microseconds until @deadline (rounded up), 0 once it passed.
 */
MESH_REMOTE_API gint64 mesh_deadline_remaining_us(const MeshDeadline *deadline);

/** MeshCancelContext: a cancellation context (upstream CancelContext). */
typedef struct MeshCancelContext MeshCancelContext;
/** MeshCancel: cancels the contexts made with it (upstream Cancel). */
typedef struct MeshCancel MeshCancel;

/** mesh_cancel_context_new: Returns: (transfer full): a context that is never cancelled. */
MESH_REMOTE_API MeshCancelContext *mesh_cancel_context_new(void);

/**
 * mesh_cancel_context_clone:
 * @ctx: a context
 *
 * Returns: (transfer full): a context cancelled when @ctx is, with its
 * deadline. Each of @ctx's ports gets a new port pair whose far end goes
 * through it to the MeshCancel holding its peer (upstream's clone).
 */
MESH_REMOTE_API MeshCancelContext *mesh_cancel_context_clone(MeshCancelContext *ctx);

/**
 * mesh_cancel_context_with_cancel:
 * @ctx: the parent
 * @ret_cancel: (out) (transfer full): cancels the new context (and its
 *     clones and children, wherever they are) when cancelled or freed
 *
 * Returns: (transfer full): a child of @ctx, also cancelled by @ret_cancel.
 */
MESH_REMOTE_API MeshCancelContext *mesh_cancel_context_with_cancel(MeshCancelContext *ctx,
								   MeshCancel **ret_cancel);

/**
 * mesh_cancel_context_with_deadline:
 * @ctx: the parent
 * @deadline: the deadline
 *
 * Returns: (transfer full): a child of @ctx whose deadline is the earlier
 * of @deadline and @ctx's.
 */
MESH_REMOTE_API MeshCancelContext *mesh_cancel_context_with_deadline(MeshCancelContext *ctx,
								     const MeshDeadline *deadline);

/**
 * mesh_cancel_context_with_timeout:
 * @ctx: the parent
 * @timeout_us: microseconds from now, >= 0
 *
 * Returns: (transfer full): mesh_cancel_context_with_deadline() with now +
 * @timeout_us (a clone of @ctx if that overflows); NULL for a negative
 * @timeout_us (a critical).
 */
MESH_REMOTE_API MeshCancelContext *mesh_cancel_context_with_timeout(MeshCancelContext *ctx,
								    gint64 timeout_us);

/**
 * mesh_cancel_context_get_deadline:
 * @ctx: a context
 * @ret_deadline: (out caller-allocates) (optional): its deadline
 *
 * Returns: whether @ctx has a deadline.
 */
MESH_REMOTE_API gboolean mesh_cancel_context_get_deadline(MeshCancelContext *ctx,
							  MeshDeadline *ret_deadline);

/**
 * mesh_cancel_context_is_cancelled:
 * @ctx: a context
 * @ret_reason: (out) (optional): why, or MESH_CANCEL_REASON_NONE
 *
 * Looks without waiting. Once cancelled, a context stays cancelled with the
 * same reason; a close of its ports seen first is CANCELLED even if the
 * deadline has passed too (upstream's order).
 *
 * Returns: whether @ctx is cancelled.
 */
MESH_REMOTE_API gboolean mesh_cancel_context_is_cancelled(MeshCancelContext *ctx,
							  MeshCancelReason *ret_reason);

/**
 * mesh_cancel_context_wait:
 * @ctx: a context
 * @timeout_us: 0 does not wait, -1 waits forever; any other negative
 *     value fails at once with MESH_ERROR_INVALID_ARGUMENT
 * @ret_reason: (out) (optional): why it is cancelled
 * @error: MESH_ERROR_TIMED_OUT (or MESH_ERROR_EMPTY for 0) if it was not
 *     cancelled within @timeout_us
 *
 * Waits until @ctx is cancelled (upstream `cancelled().await`). A wait on
 * the thread of a caller's GMainContext that runs the transport iterates
 * it, as a blocking receive does (mesh-channel.h).
 *
 * Returns: TRUE once cancelled, FALSE with @error.
 */
MESH_REMOTE_API gboolean mesh_cancel_context_wait(MeshCancelContext *ctx, gint64 timeout_us,
						  MeshCancelReason *ret_reason, GError **error);

#ifndef G_OS_WIN32
/**
 * mesh_cancel_context_get_fd:
 * @ctx: a context
 *
 * Returns: (transfer none): an fd (a timerfd, close-on-exec, nonblocking,
 * made on the first call) that polls readable once @ctx is cancelled or
 * its deadline passed, until @ctx is freed, which closes it; or a negative
 * errno. A deadline that came without monotonic time (from another
 * process) is armed on CLOCK_REALTIME. Call mesh_cancel_context_is_cancelled()
 * for the reason.
 */
MESH_REMOTE_API int mesh_cancel_context_get_fd(MeshCancelContext *ctx);
#else
/**
 * mesh_cancel_context_get_handle:
 * @ctx: a context
 *
 * Windows only: the counterpart of mesh_cancel_context_get_fd(), which
 * Windows does not have.
 *
 * Returns: (transfer none): a manual-reset waitable timer HANDLE (not
 * inheritable, made on the first call) that is signalled once @ctx is
 * cancelled or its deadline passed, until @ctx is freed, which closes it;
 * NULL if it cannot be made. A deadline with monotonic time is armed
 * relative to now (Windows has no absolute monotonic due time), one
 * without at its wall-clock time.
 */
MESH_REMOTE_API MeshOsHandle mesh_cancel_context_get_handle(MeshCancelContext *ctx);
#endif

/**
 * MeshCancelFunc:
 * @ctx: the context
 * @reason: why it is cancelled
 * @user_data: the callback's data
 *
 * Called once, on the chosen GMainContext, when @ctx is cancelled. It may
 * free @ctx.
 */
typedef void (*MeshCancelFunc)(MeshCancelContext *ctx, MeshCancelReason reason,
			       gpointer user_data);

/**
 * mesh_cancel_context_set_callback:
 * @ctx: a context
 * @context: (nullable): where @func runs, NULL for the global default
 * @func: (nullable): called once when @ctx is cancelled (at the next
 *     iteration if it already is); NULL removes the callback
 * @user_data: passed to @func
 * @notify: (nullable): frees @user_data after @func ran, or when the
 *     callback is replaced or removed, or @ctx freed or sent
 *
 * The context holds a reference on @context while a callback is set.
 */
MESH_REMOTE_API void mesh_cancel_context_set_callback(MeshCancelContext *ctx,
						      GMainContext *context, MeshCancelFunc func,
						      gpointer user_data, GDestroyNotify notify);

/** mesh_cancel_context_free: drops the context (its callback goes, its fd is closed). NULL-safe. */
MESH_REMOTE_API void mesh_cancel_context_free(MeshCancelContext *ctx);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(MeshCancelContext, mesh_cancel_context_free)

/**
 * mesh_cancel_context_into_field:
 * @ctx: (transfer full): a context
 *
 * Consumes @ctx, also on failure.
 *
 * Returns: (transfer full): a heap `mesh_remote.CancelContext` holding
 * @ctx's ports and deadline (wall-clock), to put in a typed message (which
 * then owns it) or to mesh_payload_message_free(). A context already seen
 * cancelled travels as Cancelled with its reason.
 */
MESH_REMOTE_API MeshRemote__CancelContext *mesh_cancel_context_into_field(MeshCancelContext *ctx);

/**
 * mesh_cancel_context_from_field:
 * @field: (nullable): a `mesh_remote.CancelContext` of a received message
 * @error: MESH_ERROR_CORRUPTION if it has no state (upstream: "missing enum
 *     variant") or holds something other than ports
 *
 * Moves the ports out of @field (a `_steal`: @field stays the caller's,
 * left without them). A NULL @field is an absent one: upstream's decoder
 * refuses it too (MESH_ERROR_CORRUPTION).
 *
 * Returns: (transfer full): the context, or NULL with @error.
 */
MESH_REMOTE_API MeshCancelContext *mesh_cancel_context_from_field(
	MeshRemote__CancelContext *field, GError **error);

/**
 * mesh_cancel_cancel:
 * @cancel: a cancel
 *
 * Cancels every context made with @cancel, and their clones and children,
 * in this process and others (their ports close). Idempotent. Any thread.
 */
MESH_REMOTE_API void mesh_cancel_cancel(MeshCancel *cancel);

/** mesh_cancel_free: cancels (upstream: dropping a Cancel cancels) and frees. NULL-safe. */
MESH_REMOTE_API void mesh_cancel_free(MeshCancel *cancel);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(MeshCancel, mesh_cancel_free)

/* Asynchronous rpc calls that a cancel context ends. */

/**
 * mesh_rpc_call_async_with_cancel:
 * @sender: an rpc sender (created with mesh_channel_new(NULL, ...))
 * @input: (transfer full): the request, taken in all cases
 * @reply_desc: the reply's type
 * @cancel_ctx: (transfer none): the call's context, cloned (the caller
 *     keeps @cancel_ctx)
 * @context: (nullable): where @callback runs, NULL for the global default
 * @callback: called once with the reply or the error
 * @user_data: passed to @callback
 * @notify: (nullable): frees @user_data right after @callback returned
 *
 * Consumes @input, also on failure.
 *
 * mesh_rpc_call_async() without a timeout, ended by @cancel_ctx instead: when
 * it is cancelled (here or in another process) the call completes with
 * MESH_ERROR_CANCELLED, when its deadline passes with MESH_ERROR_TIMED_OUT
 * ("deadline exceeded"), unless the reply came first; a late reply is
 * dropped. An already cancelled context completes the call at the next
 * iteration of @context (the request is sent all the same: the server may
 * still handle it). mesh_rpc_call_cancel() works as for any call. Any
 * thread; @cancel_ctx is only read (cloned) here.
 *
 * Returns: (transfer full): the call, as mesh_rpc_call_async(); NULL for a
 * bad argument (a critical; @input and @user_data, with @notify, are
 * freed and @callback never runs).
 */
MESH_REMOTE_API MeshRpcCall *mesh_rpc_call_async_with_cancel(
	MeshSender *sender, ProtobufCMessage *input, const ProtobufCMessageDescriptor *reply_desc,
	MeshCancelContext *cancel_ctx, GMainContext *context, MeshRpcCallback callback,
	gpointer user_data, GDestroyNotify notify);

/**
 * mesh_rpc_call_message_async_with_cancel:
 * @sender: an rpc sender
 * @input: (transfer full): the request's encoded bytes and resources, taken
 *     in all cases
 * @cancel_ctx: (transfer none): the call's context, cloned
 * @context: (nullable): as for mesh_rpc_call_async_with_cancel()
 * @callback: called once with the reply's bytes and resources, or the error
 * @user_data: passed to @callback
 * @notify: (nullable): frees @user_data right after @callback returned
 *
 * Consumes @input, also on failure.
 *
 * The untyped mesh_rpc_call_async_with_cancel().
 *
 * Returns: (transfer full): as mesh_rpc_call_async_with_cancel().
 */
MESH_REMOTE_API MeshRpcCall *mesh_rpc_call_message_async_with_cancel(
	MeshSender *sender, MeshMessage *input, MeshCancelContext *cancel_ctx,
	GMainContext *context, MeshRpcMessageCallback callback, gpointer user_data,
	GDestroyNotify notify);

G_END_DECLS
