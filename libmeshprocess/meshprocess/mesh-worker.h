/* SPDX-License-Identifier: MIT */
/**
 * Workers: named units of work that run on threads of a host process.
 * Upstream's mesh_worker (reference 5.6): launch, stop, restart (hot
 * upgrade, possibly into another host), inspect, and local workers.
 *
 * The host registers worker functions by name in a MeshWorkerRegistry and
 * serves launch requests with mesh_worker_host_run(); the parent keeps the
 * MeshWorkerHost (mesh_worker_host_new()) and sends the runner's port to the
 * host, typically in the host's initial message. mesh_worker_host_launch()
 * starts a worker by name with parameters and returns a MeshWorkerHandle
 * once the worker has started; the handle stops the worker and reports its
 * events (Started, Stopped, Failed, then the end of the stream).
 *
 * Either half may also live in the same process (a runner on a thread of
 * the parent); nothing needs a Mesh except getting the port to the host.
 *
 * Errors: GError, domain MESH_PROCESS_ERROR (a worker's own failure, an
 * unknown name) or MESH_ERROR (the channels: MESH_ERROR_EMPTY,
 * MESH_ERROR_TIMED_OUT, MESH_ERROR_CLOSED, MESH_ERROR_NODE_FAILURE).
 */
#pragma once

#if !defined(__MESHPROCESS_H_INSIDE__) && !defined(MESHPROCESS_COMPILATION)
#error "Only <meshprocess/meshprocess.h> can be included directly."
#endif

#include <glib.h>
#include <meshprocess/mesh-process.h>
#include <meshremote/meshremote.h>

G_BEGIN_DECLS

/** MeshWorkerRegistry: the workers a runner can start, by name. */
typedef struct MeshWorkerRegistry MeshWorkerRegistry;
/** MeshWorkerContext: what a running worker is given: its name and its stop requests (borrowed). */
typedef struct MeshWorkerContext MeshWorkerContext;
/** MeshWorkerHost: the parent's side of a worker runner: launches workers in it. */
typedef struct MeshWorkerHost MeshWorkerHost;
/** MeshWorkerHandle: the parent's handle on one worker: its events, stop and join. */
typedef struct MeshWorkerHandle MeshWorkerHandle;

/**
 * MeshWorkerEvent:
 * @MESH_WORKER_EVENT_STARTED: the worker's function is about to run
 * @MESH_WORKER_EVENT_STOPPED: the function returned TRUE
 * @MESH_WORKER_EVENT_FAILED: the function failed, the worker could not
 *     start, or the event channel failed (its message says which)
 * @MESH_WORKER_EVENT_END: the end of the stream: the event channel closed
 *     (after STOPPED or FAILED, or because the host dropped the worker)
 * @MESH_WORKER_EVENT_RESTART_FAILED: a mesh_worker_handle_restart() did not
 *     happen (its message says why); the old instance still runs and the
 *     handle talks to it
 *
 * What mesh_worker_handle_next_event() reports. After a restart the next
 * event is STARTED (the new instance runs) or RESTART_FAILED.
 */
typedef enum {
	MESH_WORKER_EVENT_STARTED,
	MESH_WORKER_EVENT_STOPPED,
	MESH_WORKER_EVENT_FAILED,
	MESH_WORKER_EVENT_END,
	MESH_WORKER_EVENT_RESTART_FAILED,
} MeshWorkerEvent;

/**
 * MeshWorkerRunFunc:
 * @parameters: (transfer full): the parameters given to
 *     mesh_worker_host_launch() (an empty message if there were none), with
 *     their fds and ports
 * @ctx: (transfer none): the worker's context, valid until the function
 *     returns; use it only from this thread (one thread at a time)
 * @user_data: the data given to mesh_worker_registry_add(), shared by every
 *     worker of this name (several may run at once)
 * @error: why the worker failed
 *
 * A worker's body. It runs on a thread of its own, named "worker-NAME"
 * (truncated by the kernel to 15 characters), in the process that runs
 * mesh_worker_host_run(). It should return when
 * mesh_worker_context_wait_stop() or mesh_worker_context_should_stop() says
 * a stop was requested; it may also return on its own at any time.
 *
 * A worker registered with mesh_worker_registry_add_restartable() may be
 * asked for its state (mesh_worker_context_restart_requested()); a new
 * instance that begins from such a state gets it as @parameters, and
 * mesh_worker_context_is_restart() says so.
 *
 * Returns: TRUE when done (the handle gets STOPPED), FALSE with @error set
 * (the handle gets FAILED with @error's message).
 */
typedef gboolean (*MeshWorkerRunFunc)(MeshMessage *parameters, MeshWorkerContext *ctx,
				      gpointer user_data, GError **error);

/**
 * MeshWorkerLocalFunc:
 * @parameters: what was given to mesh_worker_launch_local(), never encoded
 *     (owned by the launch: freed with its notify after the function returns)
 * @ctx: (transfer none): as for #MeshWorkerRunFunc
 * @error: why the worker failed
 *
 * A local worker's body (mesh_worker_launch_local()).
 *
 * Returns: TRUE when done (STOPPED), FALSE with @error set (FAILED).
 */
typedef gboolean (*MeshWorkerLocalFunc)(gpointer parameters, MeshWorkerContext *ctx,
					GError **error);

/**
 * MeshWorkerInspectFunc:
 * @ctx: (transfer none): the worker's context
 * @user_data: given to mesh_worker_context_set_inspect()
 *
 * Called on the worker's thread, inside mesh_worker_context_wait_stop(),
 * when the worker is inspected.
 *
 * Returns: (transfer full) (nullable): a JSON value describing the worker
 * (g_free()), put in the inspect answer as "worker"; NULL for null.
 */
typedef char *(*MeshWorkerInspectFunc)(MeshWorkerContext *ctx, gpointer user_data);

/* The registry: which workers a runner can start. */

/**
 * mesh_worker_registry_new:
 *
 * Fill the registry before handing it to mesh_worker_host_run(); it is not
 * locked, and the runner only reads it.
 *
 * Returns: (transfer full): an empty registry.
 */
MESH_PROCESS_API MeshWorkerRegistry *mesh_worker_registry_new(void);

/**
 * mesh_worker_registry_add:
 * @reg: a registry
 * @name: the worker's name (copied)
 * @func: the worker's body
 * @user_data: passed to @func
 * @notify: (nullable): frees @user_data with the registry (or when @name is
 *     registered again, which replaces the entry)
 */
MESH_PROCESS_API void mesh_worker_registry_add(MeshWorkerRegistry *reg, const char *name,
					       MeshWorkerRunFunc func, gpointer user_data,
					       GDestroyNotify notify);

/**
 * mesh_worker_registry_add_restartable:
 * @reg: a registry
 * @name: the worker's name (copied)
 * @func: the worker's body; it hands its state over on a restart request
 *     (mesh_worker_context_send_state()) and begins from one when
 *     mesh_worker_context_is_restart() says so
 * @user_data: passed to @func
 * @notify: (nullable): as for mesh_worker_registry_add()
 *
 * As mesh_worker_registry_add(), for a worker that supports restart
 * (upstream's Worker::restart()). A worker added with
 * mesh_worker_registry_add() answers a restart request with the error
 * "worker NAME does not support restart" and keeps running, and a restart
 * into a runner where its name is not restartable fails likewise.
 */
MESH_PROCESS_API void mesh_worker_registry_add_restartable(MeshWorkerRegistry *reg,
							   const char *name,
							   MeshWorkerRunFunc func,
							   gpointer user_data,
							   GDestroyNotify notify);

/**
 * mesh_worker_registry_check:
 * @reg: a registry
 * @name: a worker name
 * @error: MESH_PROCESS_ERROR_FAILED "unsupported worker NAME"
 *
 * What the runner does with each launch request's name.
 *
 * Returns: TRUE if @name is registered.
 */
MESH_PROCESS_API gboolean mesh_worker_registry_check(MeshWorkerRegistry *reg, const char *name,
						     GError **error);

/**
 * mesh_worker_registry_free:
 * @reg: (nullable) (transfer full): a registry, not in use by a runner
 *
 * Frees the registry, calling each entry's notify. NULL-safe.
 */
MESH_PROCESS_API void mesh_worker_registry_free(MeshWorkerRegistry *reg);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(MeshWorkerRegistry, mesh_worker_registry_free)

/* The worker's side. */

/**
 * mesh_worker_context_wait_stop:
 * @ctx: the worker's context (NULL is a programming error: a critical, and
 *     TRUE, so that a worker stops)
 * @timeout_us: microseconds to wait: 0 does not wait, -1 waits forever
 *     (another negative value is a programmer error: a critical, FALSE)
 *
 * Waits until a stop is requested: mesh_worker_handle_stop() was called, or
 * the rpc channel closed (every handle of this worker was freed) or failed
 * (the parent's node went away), or, for a restartable worker, a restart
 * asks for its state (mesh_worker_context_restart_requested()). Once TRUE,
 * it stays TRUE (unless the worker refuses the restart). Inspect requests
 * are answered here, on the worker's thread (mesh_worker_context_set_inspect());
 * a restart request to a worker that does not support it is answered with
 * an error here too, and the worker goes on.
 *
 * Returns: TRUE if a stop was requested, FALSE on timeout.
 */
MESH_PROCESS_API gboolean mesh_worker_context_wait_stop(MeshWorkerContext *ctx,
							gint64 timeout_us);

/** mesh_worker_context_should_stop: Returns: mesh_worker_context_wait_stop(@ctx, 0). */
MESH_PROCESS_API gboolean mesh_worker_context_should_stop(MeshWorkerContext *ctx);

#ifndef G_OS_WIN32
/**
 * mesh_worker_context_get_fd:
 * @ctx: the worker's context
 *
 * For a worker running its own event loop: poll this fd, and call
 * mesh_worker_context_should_stop() when it is readable.
 *
 * Returns: (transfer none): an fd readable while a request is queued or the
 * rpc channel has ended; valid until the worker's function returns.
 */
MESH_PROCESS_API int mesh_worker_context_get_fd(MeshWorkerContext *ctx);
#else
/**
 * mesh_worker_context_get_handle:
 * @ctx: the worker's context
 *
 * Windows only: the counterpart of mesh_worker_context_get_fd() (a
 * manual-reset event, mesh_receiver_get_handle()'s): wait on it and call
 * mesh_worker_context_should_stop() when it is signalled.
 *
 * Returns: (transfer none): the event; valid until the worker's function
 * returns. NULL if it cannot be made.
 */
MESH_PROCESS_API MeshOsHandle mesh_worker_context_get_handle(MeshWorkerContext *ctx);
#endif

/** mesh_worker_context_get_name: Returns: (transfer none): the worker's name. */
MESH_PROCESS_API const char *mesh_worker_context_get_name(MeshWorkerContext *ctx);

/**
 * mesh_worker_context_is_restart:
 * @ctx: the worker's context
 *
 * Returns: TRUE if this instance began from a previous instance's state
 * (the function's parameters are that state), FALSE if from parameters.
 */
MESH_PROCESS_API gboolean mesh_worker_context_is_restart(MeshWorkerContext *ctx);

/**
 * mesh_worker_context_restart_requested:
 * @ctx: the worker's context
 *
 * After mesh_worker_context_wait_stop() returned TRUE: whether the stop is
 * a restart (upstream's WorkerRpc::Restart). The worker then calls
 * mesh_worker_context_send_state() and returns TRUE (its new instance
 * runs on), or mesh_worker_context_refuse_restart() and goes on. A worker
 * that returns without either fails the restart ("worker NAME stopped
 * without handing over its state"); its handle then reads RESTART_FAILED,
 * then this instance's STOPPED.
 *
 * Returns: TRUE while a restart waits for the worker's answer.
 */
MESH_PROCESS_API gboolean mesh_worker_context_restart_requested(MeshWorkerContext *ctx);

/**
 * mesh_worker_context_send_state:
 * @ctx: the worker's context, with a restart requested
 * @state: (nullable) (transfer full): the state for the new instance, any
 *     message with fds and ports (NULL: an empty one)
 *
 * Consumes @state, also on failure. Answers the restart: the new instance
 * is built with @state. The worker should return soon after: its handle
 * now talks to the new instance, and its own last events go nowhere.
 *
 * Returns: TRUE; FALSE (a critical) if no restart was requested.
 */
MESH_PROCESS_API gboolean mesh_worker_context_send_state(MeshWorkerContext *ctx,
							 MeshMessage *state);

/**
 * mesh_worker_context_refuse_restart:
 * @ctx: the worker's context, with a restart requested
 * @reason: the error the handle reads with RESTART_FAILED
 *
 * Answers the restart with an error: the handle gets RESTART_FAILED and
 * talks to this instance again, which goes on running
 * (mesh_worker_context_wait_stop() waits again).
 */
MESH_PROCESS_API void mesh_worker_context_refuse_restart(MeshWorkerContext *ctx,
							 const char *reason);

/**
 * mesh_worker_context_set_inspect:
 * @ctx: the worker's context
 * @func: (nullable): what the worker says of itself when inspected
 * @user_data: passed to @func (the worker owns it; it must live until the
 *     worker returns or sets another)
 *
 * Without it an inspect answer still names the worker, its pid and whether
 * it was restarted, with "worker": null.
 */
MESH_PROCESS_API void mesh_worker_context_set_inspect(MeshWorkerContext *ctx,
						      MeshWorkerInspectFunc func,
						      gpointer user_data);

/* The runner: the host's side. */

/**
 * mesh_worker_host_run:
 * @port: (transfer full): the runner port from mesh_worker_host_new(),
 *     typically taken from the host's initial message; taken in all cases
 *     (closed on a bad argument)
 * @reg: (transfer none): the workers it can start; it must outlive the call
 * @error: MESH_ERROR_NODE_FAILURE when the last WorkerHost's node failed
 *
 * Consumes @port, also on failure. Upstream's WorkerHostRunner::run():
 * serves launch requests on the calling
 * thread. A request for an unregistered name gets a FAILED event
 * ("unsupported worker NAME"); otherwise a thread "worker-NAME" receives the
 * parameters, sends STARTED, runs the worker's function and sends STOPPED
 * or FAILED. Returns once every MeshWorkerHost of this runner is freed (or
 * its process gone) **and** every worker thread has finished; joins them
 * all. Blocks meanwhile: call it from the host's MeshHostFunc, or a thread.
 *
 * Returns: TRUE when the launch channel closed; FALSE with @error set if it
 * failed (the workers are still waited for).
 */
MESH_PROCESS_API gboolean mesh_worker_host_run(MeshPort *port, MeshWorkerRegistry *reg,
					       GError **error);

/* The parent's side. */

/**
 * mesh_worker_host_new:
 * @ret_runner_port: (out) (transfer full): the port to give
 *     mesh_worker_host_run(), on this node or another (put it in a message
 *     with mesh_message_add_port_take())
 *
 * Returns: (transfer full): a worker host: the sending half of the launch
 * channel. Thread-safe: launch from any thread.
 */
MESH_PROCESS_API MeshWorkerHost *mesh_worker_host_new(MeshPort **ret_runner_port);

/** mesh_worker_host_clone: Returns: (transfer full): another host for the same runner. */
MESH_PROCESS_API MeshWorkerHost *mesh_worker_host_clone(MeshWorkerHost *host);

/**
 * mesh_worker_host_start:
 * @host: a worker host
 * @name: the registered name of the worker
 * @parameters: (nullable) (transfer full): as for mesh_worker_host_launch()
 *     (freed on a bad argument)
 *
 * Consumes @parameters, also on failure. Upstream's
 * WorkerHost::start_worker(): sends the launch request and
 * returns at once; the worker's first event (STARTED, or FAILED for an
 * unknown name) comes from mesh_worker_handle_next_event(). Never blocks.
 *
 * Returns: (transfer full): the worker's handle.
 */
MESH_PROCESS_API MeshWorkerHandle *mesh_worker_host_start(MeshWorkerHost *host,
							  const char *name,
							  MeshMessage *parameters);

/**
 * mesh_worker_host_launch:
 * @host: a worker host
 * @name: the registered name of the worker
 * @parameters: (nullable) (transfer full): the worker's parameters, any
 *     untyped or typed message with fds and ports; NULL for none. Taken in
 *     all cases: freed on every failure, a bad argument included.
 * @timeout_us: how long to wait for the worker's first event, -1 forever
 *     (another negative value: MESH_ERROR_INVALID_ARGUMENT)
 * @error: MESH_PROCESS_ERROR_FAILED with the worker's (or the runner's)
 *     failure, for instance "unsupported worker NAME"; MESH_ERROR_TIMED_OUT;
 *     MESH_PROCESS_ERROR_FAILED "... dropped ..." if the runner is gone
 *
 * Consumes @parameters, also on failure. Upstream's
 * WorkerHost::launch_worker(): sends the launch request and waits for the
 * first event. After a timeout the worker, if it ever starts,
 * finds its rpc channel closed, that is, a stop requested.
 *
 * Returns: (transfer full): the handle of the started worker (its STARTED
 * event consumed), or NULL with @error set.
 */
MESH_PROCESS_API MeshWorkerHandle *mesh_worker_host_launch(MeshWorkerHost *host,
							   const char *name,
							   MeshMessage *parameters,
							   gint64 timeout_us, GError **error);

/**
 * mesh_worker_host_free:
 * @host: (nullable) (transfer full): a worker host
 *
 * Drops this sender of the launch channel: once every one is gone the
 * runner stops taking requests and returns when its workers have finished.
 * Running workers and their handles are unaffected. NULL-safe.
 */
MESH_PROCESS_API void mesh_worker_host_free(MeshWorkerHost *host);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(MeshWorkerHost, mesh_worker_host_free)

/* The handle. Stop from any thread; read events from one thread at a time. */

/** mesh_worker_handle_get_name: Returns: (transfer none): the worker's name. */
MESH_PROCESS_API const char *mesh_worker_handle_get_name(MeshWorkerHandle *handle);

/**
 * mesh_worker_handle_stop:
 * @handle: a worker's handle
 *
 * Asks the worker to stop (mesh_worker_context_wait_stop() returns TRUE);
 * never blocks. Its STOPPED (or FAILED) event follows when its function
 * returns. Harmless after the worker ended.
 */
MESH_PROCESS_API void mesh_worker_handle_stop(MeshWorkerHandle *handle);

/**
 * mesh_worker_handle_next_event:
 * @handle: a worker's handle
 * @timeout_us: 0 does not wait, -1 waits forever (another negative value:
 *     MESH_ERROR_INVALID_ARGUMENT)
 * @ret_event: (out): the event
 * @ret_error_message: (out) (optional) (transfer full): for FAILED, what
 *     failed (the worker's error chain joined by ": ", or the channel's
 *     error); NULL otherwise
 * @error: MESH_ERROR_EMPTY or MESH_ERROR_TIMED_OUT
 *
 * The handle's event stream. A channel error (the host's node died) is
 * reported as FAILED with that error's message; the stream ends (END) when
 * the event channel closes or after such an error, and END is then
 * returned again on every call.
 *
 * Returns: TRUE with an event; FALSE with @error set if none came in time.
 */
MESH_PROCESS_API gboolean mesh_worker_handle_next_event(MeshWorkerHandle *handle,
							gint64 timeout_us,
							MeshWorkerEvent *ret_event,
							char **ret_error_message, GError **error);

/**
 * mesh_worker_handle_join:
 * @handle: a worker's handle
 * @timeout_us: bound on the whole wait, -1 forever (another negative value:
 *     MESH_ERROR_INVALID_ARGUMENT)
 * @error: MESH_PROCESS_ERROR_FAILED with the worker's failure, or "worker
 *     NAME disconnected" if the stream ended without STOPPED;
 *     MESH_ERROR_TIMED_OUT
 *
 * Reads events until STOPPED, FAILED or END (without stopping the worker).
 *
 * Returns: TRUE if the worker stopped cleanly.
 */
MESH_PROCESS_API gboolean mesh_worker_handle_join(MeshWorkerHandle *handle, gint64 timeout_us,
						  GError **error);

/**
 * mesh_worker_handle_restart:
 * @handle: a worker's handle
 * @host: (transfer none): the runner to start the new instance in: the same
 *     one, or one in another host process (a hot upgrade)
 *
 * Upstream's WorkerHandle::restart(): the handle takes fresh channels and
 * asks @host to start the worker's name from the running instance's state
 * (mesh_worker_context_send_state()). Returns at once; the handle's next
 * event is STARTED (the new instance runs; the old one's last events are
 * not seen) or RESTART_FAILED (the old instance runs on, and the handle
 * talks to it again). It replaces the handle's channels: call it from the
 * thread that reads the handle's events, while no other thread uses the
 * handle.
 */
MESH_PROCESS_API void mesh_worker_handle_restart(MeshWorkerHandle *handle, MeshWorkerHost *host);

/**
 * mesh_worker_handle_inspect:
 * @handle: a worker's handle
 * @timeout_us: how long to wait for the answer, -1 forever (another negative
 *     value: MESH_ERROR_INVALID_ARGUMENT)
 * @error: MESH_ERROR_TIMED_OUT (the worker did not call
 *     mesh_worker_context_wait_stop() in time), MESH_ERROR_CLOSED (it ended)
 *     or MESH_ERROR_NODE_FAILURE, prefixed "inspecting worker NAME: "
 *
 * Upstream's WorkerRpc::Inspect: the worker answers on its thread.
 *
 * Returns: (transfer full): a JSON object: {"name", "pid", "restarted",
 * "worker": what its #MeshWorkerInspectFunc said, or null}; NULL with
 * @error set.
 */
MESH_PROCESS_API char *mesh_worker_handle_inspect(MeshWorkerHandle *handle, gint64 timeout_us,
						  GError **error);

/**
 * mesh_worker_launch_local:
 * @name: the worker's name (for its thread, "worker-NAME", and inspect)
 * @func: the worker's body
 * @parameters: (nullable): passed to @func as they are: any pointer, never
 *     encoded (upstream: a local worker's parameters need not be
 *     MeshPayload)
 * @parameters_free: (nullable): frees @parameters once @func returned,
 *     before the last event is sent (or at once on failure)
 * @error: MESH_PROCESS_ERROR... when the thread cannot start
 *
 * Upstream's launch_local_worker(): runs the worker on a new thread of
 * this process, with no runner, no host and no mesh. Consumes @parameters
 * (through @parameters_free), also on failure. As upstream, no STARTED
 * event comes: the handle's events are STOPPED or FAILED, then END; stop,
 * join and inspect work as for any handle; a restart request is refused.
 *
 * Returns: (transfer full): the handle, or NULL with @error set.
 */
MESH_PROCESS_API MeshWorkerHandle *mesh_worker_launch_local(const char *name,
							    MeshWorkerLocalFunc func,
							    gpointer parameters,
							    GDestroyNotify parameters_free,
							    GError **error);

/**
 * mesh_worker_handle_free:
 * @handle: (nullable) (transfer full): a handle
 *
 * Drops the handle: the worker's rpc channel closes, which its context
 * reports as a stop request. NULL-safe.
 */
MESH_PROCESS_API void mesh_worker_handle_free(MeshWorkerHandle *handle);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(MeshWorkerHandle, mesh_worker_handle_free)

G_END_DECLS
