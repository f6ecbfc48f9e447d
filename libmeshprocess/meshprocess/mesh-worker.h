/* SPDX-License-Identifier: MIT */
/**
 * Workers: named units of work that run on threads of a host process.
 * Upstream's mesh_worker (reference 5.6), without restart.
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

typedef struct MeshWorkerRegistry MeshWorkerRegistry;
typedef struct MeshWorkerContext MeshWorkerContext;
typedef struct MeshWorkerHost MeshWorkerHost;
typedef struct MeshWorkerHandle MeshWorkerHandle;

/**
 * MeshWorkerEvent:
 * @MESH_WORKER_EVENT_STARTED: the worker's function is about to run
 * @MESH_WORKER_EVENT_STOPPED: the function returned TRUE
 * @MESH_WORKER_EVENT_FAILED: the function failed, the worker could not
 *     start, or the event channel failed (its message says which)
 * @MESH_WORKER_EVENT_END: the end of the stream: the event channel closed
 *     (after STOPPED or FAILED, or because the host dropped the worker)
 *
 * What mesh_worker_handle_next_event() reports.
 */
typedef enum {
	MESH_WORKER_EVENT_STARTED,
	MESH_WORKER_EVENT_STOPPED,
	MESH_WORKER_EVENT_FAILED,
	MESH_WORKER_EVENT_END,
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
 * Returns: TRUE when done (the handle gets STOPPED), FALSE with @error set
 * (the handle gets FAILED with @error's message).
 */
typedef gboolean (*MeshWorkerRunFunc)(MeshMessage *parameters, MeshWorkerContext *ctx,
				      gpointer user_data, GError **error);

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
 * (the parent's node went away). Once TRUE, it stays TRUE. Requests other
 * than stop (from an upstream parent: restart, inspect) are dropped.
 *
 * Returns: TRUE if a stop was requested, FALSE on timeout.
 */
MESH_PROCESS_API gboolean mesh_worker_context_wait_stop(MeshWorkerContext *ctx,
							gint64 timeout_us);

/** mesh_worker_context_should_stop: Returns: mesh_worker_context_wait_stop(@ctx, 0). */
MESH_PROCESS_API gboolean mesh_worker_context_should_stop(MeshWorkerContext *ctx);

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

/** mesh_worker_context_get_name: Returns: (transfer none): the worker's name. */
MESH_PROCESS_API const char *mesh_worker_context_get_name(MeshWorkerContext *ctx);

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
 * mesh_worker_handle_free:
 * @handle: (nullable) (transfer full): a handle
 *
 * Drops the handle: the worker's rpc channel closes, which its context
 * reports as a stop request. NULL-safe.
 */
MESH_PROCESS_API void mesh_worker_handle_free(MeshWorkerHandle *handle);

G_END_DECLS
