/* SPDX-License-Identifier: MIT */
#pragma once

#if !defined(__MESHPROCESS_H_INSIDE__) && !defined(MESHPROCESS_COMPILATION)
#error "Only <meshprocess/meshprocess.h> can be included directly."
#endif

#include <glib.h>
#include <meshremote/meshremote.h>
#include <pal/pal.h>

G_BEGIN_DECLS

/*
 * MESH_PROCESS_API: marks an exported symbol. On Windows,
 * __declspec(dllexport) while libmeshprocess is built and dllimport for
 * its users (hidden visibility means nothing to a DLL).
 */
#if defined(G_OS_WIN32) && defined(MESHPROCESS_COMPILATION)
#define MESH_PROCESS_API __declspec(dllexport)
#elif defined(G_OS_WIN32)
#define MESH_PROCESS_API __declspec(dllimport)
#else
#define MESH_PROCESS_API __attribute__((visibility("default")))
#endif

#ifdef G_OS_WIN32
/*
 * No sandbox on Windows (libpal has none there): the type exists for
 * mesh_process_config_set_sandbox(), whose profile makes a launch fail
 * with MESH_PROCESS_ERROR_UNSUPPORTED.
 */
typedef struct PalSandbox PalSandbox;
#endif

/**
 * MeshProcessError:
 * @MESH_PROCESS_ERROR_FAILED: a generic failure (the message says what)
 * @MESH_PROCESS_ERROR_SPAWN: the host process could not be started
 * @MESH_PROCESS_ERROR_NO_SUCH_HOST: no host with that pid
 * @MESH_PROCESS_ERROR_INVITATION: the invitation in the environment is corrupt
 * @MESH_PROCESS_ERROR_INSECURE: a listener path or peer failed a security check
 * @MESH_PROCESS_ERROR_TIMED_OUT: a deadline passed
 * @MESH_PROCESS_ERROR_ADDRESS_IN_USE: a server (maybe this mesh) listens on
 *     the path already
 * @MESH_PROCESS_ERROR_SHUT_DOWN: the mesh is shut down (mesh_shutdown() was
 *     called): no more launches or listeners
 * @MESH_PROCESS_ERROR_UNSUPPORTED: not available on this platform (on
 *     Windows: sandboxes, spare, remote hosts, listen/connect; doc/windows.md)
 *
 * This enum may be extended.
 */
typedef enum {
	MESH_PROCESS_ERROR_FAILED,
	MESH_PROCESS_ERROR_SPAWN,
	MESH_PROCESS_ERROR_NO_SUCH_HOST,
	MESH_PROCESS_ERROR_INVITATION,
	MESH_PROCESS_ERROR_INSECURE,
	MESH_PROCESS_ERROR_TIMED_OUT,
	MESH_PROCESS_ERROR_ADDRESS_IN_USE,
	MESH_PROCESS_ERROR_SHUT_DOWN,
	MESH_PROCESS_ERROR_UNSUPPORTED,
} MeshProcessError;

/** MESH_PROCESS_ERROR: the error domain of libmeshprocess; codes are MeshProcessError. */
#define MESH_PROCESS_ERROR (mesh_process_error_quark())
/** mesh_process_error_quark: Returns: the MESH_PROCESS_ERROR domain. */
MESH_PROCESS_API GQuark mesh_process_error_quark(void);

/** MESH_WORKER_INVITATION: the environment variable a host's invitation travels in. */
#define MESH_WORKER_INVITATION "MESH_WORKER_INVITATION"

/**
 * MESH_STDIO_INVITATION: the environment variable that tells a host started
 * through a remote command (mesh_process_config_set_remote_command()) that
 * its stdin and stdout are its link to the parent.
 */
#define MESH_STDIO_INVITATION "MESH_STDIO_INVITATION"

/* Process configuration. */

/** MeshProcessConfig: how to launch one host (mesh_launch_host()). */
typedef struct MeshProcessConfig MeshProcessConfig;

/**
 * MeshSpawnHookFunc:
 * @spawn: the builder of the host's process, before it starts
 * @user_data: the data given to mesh_process_config_set_spawn_hook()
 * @error: why the host cannot be started
 *
 * A custom spawn step: runs in the parent, on the mesh's spawning thread,
 * just before the host is spawned and after the config's sandbox profile
 * (mesh_process_config_set_sandbox()) was applied to @spawn. It may set
 * uid/gid, add child-side hooks (pal_spawn_add_hook()), set environment
 * variables or switch vfork off.
 *
 * Returns: FALSE with @error set to refuse the launch.
 */
typedef gboolean (*MeshSpawnHookFunc)(PalSpawn *spawn, gpointer user_data, GError **error);

/**
 * MESH_HOST_EXIT_SANDBOX:
 *
 * The exit status of a host whose sandbox could not be finalized
 * (mesh_try_run_host(), doc/sandbox.md): it says why on its stderr first,
 * and the parent's description of its exit names the sandbox. A host
 * program should not use this status for its own failures.
 */
#define MESH_HOST_EXIT_SANDBOX 121

/** mesh_process_config_new: Returns: (transfer full): a config for a host named @name. */
MESH_PROCESS_API MeshProcessConfig *mesh_process_config_new(const char *name);
/** mesh_process_config_free: NULL-safe. */
MESH_PROCESS_API void mesh_process_config_free(MeshProcessConfig *config);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(MeshProcessConfig, mesh_process_config_free)
/**
 * mesh_process_config_set_program: the executable (default: this program,
 * with the parent's argv[0]); a NULL @path restores the default.
 */
MESH_PROCESS_API void mesh_process_config_set_program(MeshProcessConfig *config, const char *path);
/** mesh_process_config_add_arg: an extra argument, before the node name. */
MESH_PROCESS_API void mesh_process_config_add_arg(MeshProcessConfig *config, const char *arg);
/** mesh_process_config_set_skip_worker_arg: do not append the node name as the last argument. */
MESH_PROCESS_API void mesh_process_config_set_skip_worker_arg(MeshProcessConfig *config,
							       gboolean skip);
/** mesh_process_config_set_env: an extra environment variable. */
MESH_PROCESS_API void mesh_process_config_set_env(MeshProcessConfig *config, const char *key,
						   const char *value);
/**
 * mesh_process_config_set_stderr_path: the host's stderr goes to this file
 * (appended), not ours; a NULL @path restores ours.
 */
MESH_PROCESS_API void mesh_process_config_set_stderr_path(MeshProcessConfig *config,
							   const char *path);
/**
 * mesh_process_config_set_sandbox:
 * @config: a config
 * @profile: (nullable): a sandbox profile (a ref is taken); NULL: the host
 *     runs unsandboxed (the default)
 *
 * Every host launched with @config runs in @profile (doc/sandbox.md): its
 * spawn part (namespaces, uid/gid, rlimits, a private /tmp) is applied to
 * the host's spawn with pal_sandbox_apply() on the mesh's spawning thread
 * (a failure fails mesh_launch_host() with MESH_PROCESS_ERROR_SPAWN and a
 * message "sandbox: STEP: ..."), and its finalize part (no_new_privs,
 * capabilities, Landlock, seccomp) travels to the host in its environment,
 * where mesh_try_run_host() finalizes it before the host joins the mesh. A
 * host that cannot finalize it exits with #MESH_HOST_EXIT_SANDBOX. The
 * profile is not copied: changing it later changes later launches.
 *
 * Windows has no sandbox: there a non-NULL @profile makes
 * mesh_launch_host() fail with MESH_PROCESS_ERROR_UNSUPPORTED.
 *
 * With a remote command (mesh_process_config_set_remote_command()) only the
 * finalize part is used: it travels among the remote command's environment
 * words; the spawn part is not applied to the local command (new
 * namespaces would cut ssh off its network).
 */
MESH_PROCESS_API void mesh_process_config_set_sandbox(MeshProcessConfig *config,
						       PalSandbox *profile);

/**
 * mesh_process_config_set_spawn_hook:
 * @config: a config
 * @func: (nullable): a custom spawn step (#MeshSpawnHookFunc), run after
 *     the sandbox profile's spawn part; NULL: none
 * @user_data: passed to @func; must stay valid while hosts may be launched
 *     with @config (copies of it included)
 *
 * A hook for what a sandbox profile does not cover. For a remote host it
 * runs on the local command's spawn. On Windows @func gets libpal's
 * Windows builder (pal-spawn-win32.h).
 */
MESH_PROCESS_API void mesh_process_config_set_spawn_hook(MeshProcessConfig *config,
							  MeshSpawnHookFunc func,
							  gpointer user_data);

/**
 * mesh_process_config_set_remote_command:
 * @config: a config
 * @argv: (nullable) (array zero-terminated=1): a command (copied) run here
 *     whose stdin and stdout carry the host's link, e.g. {"ssh", "-p",
 *     "2222", "user@otherhost", NULL}; NULL: the host runs here (the default)
 *
 * A remote host (doc/libmeshprocess.md, "Remote hosts"): mesh_launch_host()
 * runs @argv with the host's command line appended as words quoted for a
 * POSIX shell (g_shell_quote()), as ssh wants its remote command: ssh joins
 * them with spaces and the remote user's shell runs them. That command line
 * is `env MESH_STDIO_INVITATION=... [KEY=VALUE ...] PROGRAM [ARGS ...]
 * [NAME]`: the config's environment variables travel in it (ssh passes no
 * environment), and PROGRAM is the config's program, or else the absolute
 * path of this program, which must then exist at the same path on the
 * other machine. The host's mesh_try_run_host() finds the invitation and
 * joins over its stdin and stdout (a MeshP2pLink: no fds cross).
 *
 * The local command gets the parent-death signal, the config's stderr file
 * and its spawn hook; a sandbox profile's finalize part travels among the
 * environment words (mesh_process_config_set_sandbox()); its pid is the host's pid for every function
 * of the mesh. Trust comes from the command: ssh authenticates and
 * encrypts; nothing in the link does.
 *
 * Linux only: on Windows a launch with a remote command fails with
 * MESH_PROCESS_ERROR_UNSUPPORTED.
 */
MESH_PROCESS_API void mesh_process_config_set_remote_command(MeshProcessConfig *config,
							      const char *const *argv);

/* The mesh. */

/** Mesh: the coordinator of a mesh of processes, in the parent (mesh_new()). */
typedef struct Mesh Mesh;

/* Host lifecycle. */

/**
 * MeshHostState:
 * @MESH_HOST_STATE_UNKNOWN: not a host of this mesh: never launched by it, or
 *     it exited longer ago than the mesh remembers (the last 16 exits)
 * @MESH_HOST_STATE_STARTING: spawned; it has not joined the mesh yet
 * @MESH_HOST_STATE_RUNNING: it joined the mesh and received its initial
 *     message: its work runs
 * @MESH_HOST_STATE_STOPPING: the mesh asked it to exit (mesh_shutdown(),
 *     mesh_free()) or killed it at the shutdown deadline; not gone yet
 * @MESH_HOST_STATE_EXITED: gone as the mesh expected (see
 *     MeshHostExit.expected)
 * @MESH_HOST_STATE_CRASHED: gone unexpectedly: a non-zero exit status, or a
 *     signal the mesh did not send (mesh_crash() included)
 *
 * A host's state as the coordinator sees it. The change to RUNNING is
 * processed on the mesh's context, the change to EXITED or CRASHED when the
 * host is gone (on that context too): a local host when the coordinator
 * reaps it, a remote one (mesh_process_config_set_remote_command()) once its
 * local command was reaped and its link drained (at most 5 s later). A host
 * may be running (or gone) a moment before its state says so. This enum may
 * be extended.
 */
typedef enum {
	MESH_HOST_STATE_UNKNOWN,
	MESH_HOST_STATE_STARTING,
	MESH_HOST_STATE_RUNNING,
	MESH_HOST_STATE_STOPPING,
	MESH_HOST_STATE_EXITED,
	MESH_HOST_STATE_CRASHED,
} MeshHostState;

/**
 * mesh_host_state_to_string:
 * @state: a state
 *
 * Returns: (transfer none): its name as inspect reports it: "unknown",
 * "starting", "running", "stopping", "exited" or "crashed"; "unknown" for a
 * value out of range.
 */
MESH_PROCESS_API const char *mesh_host_state_to_string(MeshHostState state);

/**
 * MeshHostExit:
 * @signaled: TRUE if a signal ended the host (@signal, @signal_name); FALSE
 *     if it exited (@status)
 * @status: the exit status (0-255) when !@signaled, else 0
 * @signal: the signal's number when @signaled, else 0
 * @signal_name: (nullable): "SIGKILL", "SIGABRT", ... when @signaled (NULL
 *     for a signal without a standard name, or when !@signaled)
 * @expected: TRUE if the mesh expected the exit: the host exited with status
 *     0 (its work returned TRUE, or mesh_shutdown() closed it down), or the
 *     mesh killed it (at a shutdown deadline, or in mesh_free()). FALSE for a
 *     crash: a non-zero status, or a signal the mesh did not send, the abort
 *     of mesh_crash() included. A service relaunches when FALSE.
 * @description: "exited with status 3", "killed by signal 9 (Killed)", ...
 *     (the words of the errors that name a gone host)
 *
 * How a host ended. Passed to a #MeshHostExitFunc and valid during the call
 * only. The library fills it; it may gain fields at the end. For a remote
 * host it is how its local command (ssh) ended.
 */
typedef struct {
	gboolean signaled;
	int status;
	int signal;
	const char *signal_name;
	gboolean expected;
	const char *description;
} MeshHostExit;

/**
 * MeshHostExitFunc:
 * @mesh: the mesh the host belonged to
 * @name: the host's name (its config's)
 * @pid: the host's pid (reaped: it may name another process already; a
 *     remote host's is its local command's)
 * @exit: how it ended
 * @user_data: the data given to mesh_process_config_set_exit_callback()
 *
 * Called once per host launched with the config, on the chosen context,
 * after the host is gone (mesh_get_host_state() says EXITED or CRASHED;
 * a remote host after its link drained, see #MeshHostState),
 * with no library lock held: it may call any function of @mesh, also
 * mesh_launch_host() to relaunch the host (a new host, a new pid, the same
 * name if the same config) and mesh_free() on @mesh.
 */
typedef void (*MeshHostExitFunc)(Mesh *mesh, const char *name, GPid pid,
				 const MeshHostExit *exit, gpointer user_data);

/**
 * mesh_process_config_set_exit_callback:
 * @config: a config
 * @context: (nullable): where @func runs, NULL for the global default context
 *     (which somebody must run)
 * @func: (nullable): called when a host launched with @config exits; NULL
 *     removes the callback
 * @user_data: passed to @func
 * @notify: (nullable): frees @user_data once nothing can call @func any
 *     more: @config was freed or given another callback, and every host
 *     launched with it ran its callback (or its mesh was freed); on any
 *     thread
 *
 * Every host mesh_launch_host() launches with @config (later relaunches
 * included) calls @func once when it exits. Hosts launched before this call
 * keep the callback they were launched with. The callback of an exit that
 * has not run yet when mesh_free() is called never runs; mesh_free() waits
 * for no callback, so one running on another thread must not race it. With
 * the callback on the context of mesh_shutdown()'s caller, the exits of the
 * hosts it stops run before mesh_shutdown_async()'s callback (and, on the
 * thread that runs that context, inside the blocking mesh_shutdown()).
 */
MESH_PROCESS_API void mesh_process_config_set_exit_callback(MeshProcessConfig *config,
							     GMainContext *context,
							     MeshHostExitFunc func,
							     gpointer user_data,
							     GDestroyNotify notify);

/**
 * mesh_new:
 * @name: the mesh's name (for logs and inspect)
 * @context: (nullable): where the coordinator runs; NULL starts its own thread
 * @error: why not
 *
 * Every function of the mesh may be called from any thread. With a @context,
 * the caller runs it (a GMainLoop, for example); the blocking calls
 * (mesh_inspect(), mesh_shutdown(), mesh_free(), and the receives and rpc
 * calls on channels to hosts) made on @context's own thread (the one that
 * runs it, also inside one of its dispatches; or, while nobody runs it, the
 * one it belongs to: the thread that made the mesh, the one that pushed it as
 * its thread default, the main thread for the global default context) iterate
 * @context themselves until they complete, so other sources of @context may
 * be dispatched inside them, as in a nested main loop; made on another
 * thread, they wait for the thread that runs @context (they never take it
 * from that thread). Hosts are spawned from a thread that lives as long as
 * the mesh (the coordinator's, or with a @context a spawner thread made by
 * the first launch), never from the calling thread: the parent-death signal
 * follows the spawning thread.
 *
 * Returns: (transfer full): a mesh whose node is the leader, or NULL.
 */
MESH_PROCESS_API Mesh *mesh_new(const char *name, GMainContext *context, GError **error);

/** mesh_get_node: Returns: (transfer none): the parent's node. */
MESH_PROCESS_API MeshNode *mesh_get_node(Mesh *mesh);

/**
 * mesh_launch_host:
 * @mesh: a mesh
 * @config: the process configuration (copied)
 * @initial: (transfer full): the first message the host gets; it may carry
 *     ports (channel ends) and fds. Taken in all cases: freed on every
 *     failure, a bad argument (a NULL @mesh or @config) included.
 * @error: why not: MESH_PROCESS_ERROR_SHUT_DOWN after mesh_shutdown(),
 *     MESH_PROCESS_ERROR_SPAWN, ...
 *
 * Consumes @initial, also on failure. Starts a host process. The invitation
 * travels in the environment variable MESH_WORKER_INVITATION (never in
 * argv) with the socket on fd 3; stdin and stdout are /dev/null; the host gets a parent-death signal (SIGKILL) so it
 * never outlives this process. It is spawned (and the config's sandbox
 * profile and spawn hook are applied) on a thread that lives as long as the mesh, so the calling
 * thread may exit afterwards. Returns without waiting for the host to join:
 * the host is MESH_HOST_STATE_STARTING until it has (mesh_get_host_state()),
 * and @config's exit callback, if any, is called when it exits. May be
 * called from that callback (a relaunch).
 *
 * With a remote command (mesh_process_config_set_remote_command()) that
 * command is spawned instead, with a socket as its stdin and stdout, and the
 * host joins over it: @initial and every message to the host must carry no
 * fds (the sending port fails at once), and ports whose peers are on other
 * hosts fail at the remote host (a remote host talks to the parent only).
 *
 * On Windows (doc/windows.md) the host is started in a job with
 * kill-on-close, inheriting only its stdio and a duplicate of the mesh's
 * ALPC directory handle, and the GPid returned carries its process id
 * (GUINT_TO_POINTER()), not a process handle, as every GPid of
 * libmeshprocess there.
 *
 * Returns: the host's pid (the local command's, for a remote host), or 0
 * with @error set.
 */
MESH_PROCESS_API GPid mesh_launch_host(Mesh *mesh, const MeshProcessConfig *config,
				       MeshMessage *initial, GError **error);

/**
 * mesh_prestart_hosts:
 * @mesh: a mesh
 * @config: the process configuration (copied: a snapshot of it now)
 * @n: how many spare hosts of @config to keep; 0 ends them
 * @error: MESH_PROCESS_ERROR_SHUT_DOWN after mesh_shutdown(),
 *     MESH_PROCESS_ERROR_SPAWN when a spare cannot be started,
 *     MESH_PROCESS_ERROR_FAILED for a config with a remote command,
 *     MESH_PROCESS_ERROR_UNSUPPORTED on Windows (with @n > 0)
 *
 * Keeps @n spare hosts of @config started and joined before they are asked
 * for: mesh_launch_host() with a config that spawns the same process (the
 * same name, program, arguments, environment, stderr path, an equal sandbox
 * profile (pal_sandbox_equal() with a copy taken here: a profile object
 * changed afterwards no longer matches) and spawn hook; the exit callback
 * may differ, and is the launching config's) hands one out instead of spawning, and the host then receives
 * its pid and the initial message as a fresh one would. A spare is spawned
 * exactly as mesh_launch_host() spawns (same sandbox, environment and fds)
 * and joins in its sandbox; it waits for its hand-out without a timeout. A
 * config changed after this call spawns fresh hosts (its snapshot no longer
 * matches). Each hand-out, and each spare that dies while it waits (never
 * handed out), starts a replacement in the background on the mesh's
 * context; after 3 spares in a row died before a hand-out (ready or not:
 * a spare that cannot join, or crashes or is killed while it waits), the
 * pool stops refilling until the next call. Calling again for an equal config
 * changes @n (extra spares end).
 *
 * Spares are hosts of the mesh that mesh_get_host_count() does not count:
 * mesh_inspect() lists them with "state": "spare", mesh_shutdown() ends them
 * (they exit 0 when their bootstrap channel closes) and waits for them, and
 * they get the parent-death signal as every host does. A spare's exit calls
 * no exit callback. Not with a remote command. Starts the missing spares
 * before it returns, without waiting for them to join
 * (mesh_get_spare_count()). Any thread.
 *
 * Returns: TRUE if the missing spares were started.
 */
MESH_PROCESS_API gboolean mesh_prestart_hosts(Mesh *mesh, const MeshProcessConfig *config, guint n,
					      GError **error);

/**
 * mesh_get_spare_count:
 * @mesh: a mesh
 * @ready: count only the spares that joined and wait for their hand-out
 *
 * Any thread.
 *
 * Returns: the spare hosts of every config (mesh_prestart_hosts()) not
 * handed out yet, those ended by a smaller count or at shutdown excepted.
 */
MESH_PROCESS_API guint mesh_get_spare_count(Mesh *mesh, gboolean ready);

/**
 * mesh_crash:
 * @mesh: a mesh
 * @pid: a host's pid, or this process's own pid (which aborts this process)
 * @error: MESH_PROCESS_ERROR_NO_SUCH_HOST
 *
 * Asks the host to crash (it aborts); ports that depend on it then fail with
 * an error naming it.
 *
 * Returns: TRUE if the request was sent.
 */
MESH_PROCESS_API gboolean mesh_crash(Mesh *mesh, GPid pid, GError **error);

/**
 * mesh_inspect:
 * @mesh: a mesh
 * @timeout_us: how long to wait for the hosts' own reports, -1 forever
 *     (another negative value is a programmer error: a critical, and NULL)
 *
 * Returns: (transfer full): the tree as JSON: the mesh name, this process,
 * and each host by pid (name, node id, state, what the host reports of
 * itself; a remote host's entry also has "transport": "p2p" and "command",
 * its remote command).
 */
MESH_PROCESS_API char *mesh_inspect(Mesh *mesh, gint64 timeout_us);

/**
 * MeshInspectFunc:
 * @json: (transfer full): the tree, as mesh_inspect() returns it (g_free())
 * @user_data: the data given to mesh_inspect_async()
 *
 * The outcome of mesh_inspect_async().
 */
typedef void (*MeshInspectFunc)(char *json, gpointer user_data);

/**
 * mesh_inspect_async:
 * @mesh: a mesh
 * @timeout_us: how long to wait for the hosts' own reports, -1 forever
 *     (another negative value is a programmer error: a critical, and
 *     @callback never runs)
 * @context: (nullable): where @callback runs, NULL for the global default
 *     context
 * @callback: called once with the tree
 * @user_data: passed to @callback
 * @notify: (nullable): frees @user_data right after @callback returned (or
 *     at once on a bad argument)
 *
 * mesh_inspect() without blocking: asks every host at once and returns;
 * @callback runs on @context (never inside this call) once every host
 * answered or failed, or when @timeout_us passed (a host that did not
 * answer reports "no value within the timeout", as with mesh_inspect()).
 * The inspect needs no more of @mesh once this returns: the mesh may be
 * freed meanwhile, and the callback still runs, each host with its report
 * or the failure that ended the wait (with a timeout of -1, a host that
 * neither answers nor fails keeps it waiting).
 * Any thread.
 */
MESH_PROCESS_API void mesh_inspect_async(Mesh *mesh, gint64 timeout_us, GMainContext *context,
					 MeshInspectFunc callback, gpointer user_data,
					 GDestroyNotify notify);

/**
 * mesh_get_host_count: Returns: hosts still running.
 */
MESH_PROCESS_API guint mesh_get_host_count(Mesh *mesh);

/**
 * mesh_get_host_state:
 * @mesh: a mesh
 * @pid: a pid mesh_launch_host() returned
 *
 * Any thread. A host that exited is remembered among the last 16 exits (a
 * pid reused by a later host of this mesh names the later one).
 *
 * Returns: the host's state; MESH_HOST_STATE_UNKNOWN for a pid this mesh does
 * not know (or no longer remembers).
 */
MESH_PROCESS_API MeshHostState mesh_get_host_state(Mesh *mesh, GPid pid);

/**
 * mesh_shutdown:
 * @mesh: a mesh
 * @deadline_us: how long to wait for the hosts to exit, -1 forever; after it,
 *     the remaining hosts are killed
 * @error: MESH_PROCESS_ERROR_TIMED_OUT if hosts had to be killed;
 *     MESH_ERROR_INVALID_ARGUMENT for a negative @deadline_us other than -1
 *     (nothing is done)
 *
 * Closes every host's request channel (each host then shuts its node down
 * and exits), waits for every host, and shuts the parent's node down.
 *
 * Returns: TRUE if every host exited by itself in time.
 */
MESH_PROCESS_API gboolean mesh_shutdown(Mesh *mesh, gint64 deadline_us, GError **error);

/**
 * MeshShutdownFunc:
 * @mesh: the mesh
 * @clean: TRUE if every host exited by itself in time (mesh_shutdown()'s
 *     result)
 * @error: (nullable): why not: MESH_PROCESS_ERROR_TIMED_OUT when hosts had to
 *     be killed at the deadline; NULL when @clean
 * @user_data: the data given to mesh_shutdown_async()
 *
 * The end of mesh_shutdown_async(), with no library lock held. It may call
 * mesh_free() on @mesh.
 */
typedef void (*MeshShutdownFunc)(Mesh *mesh, gboolean clean, const GError *error,
				 gpointer user_data);

/**
 * mesh_shutdown_async:
 * @mesh: a mesh
 * @deadline_us: as for mesh_shutdown(): -1 forever (another negative value
 *     is a programmer error: a critical, @notify runs, and nothing is done)
 * @context: (nullable): where @func runs, NULL for the global default context
 * @func: (nullable): called once when every host is gone (after the
 *     deadline, killed) and the node shut down
 * @user_data: passed to @func
 * @notify: (nullable): frees @user_data after @func ran, or when @func will
 *     never run (mesh_free() before it ran, or a bad argument)
 *
 * mesh_shutdown() without blocking: before it returns, every host's request
 * channel is closed (each host is then MESH_HOST_STATE_STOPPING and
 * mesh_launch_host() fails with MESH_PROCESS_ERROR_SHUT_DOWN); the wait for
 * the hosts, the kill at the deadline and the node's shutdown run on a thread
 * of the library, which on a caller's context needs that context to run (its
 * I/O and the hosts' exits are processed there, as always). A second call,
 * or one after mesh_shutdown(), calls @func with @clean TRUE at once (from
 * @context). mesh_free() during the shutdown kills the remaining hosts at
 * once, waits for the shutdown to end, and drops @func.
 */
MESH_PROCESS_API void mesh_shutdown_async(Mesh *mesh, gint64 deadline_us, GMainContext *context,
					  MeshShutdownFunc func, gpointer user_data,
					  GDestroyNotify notify);

/** mesh_free: shuts down (killing hosts at once) if needed and frees. NULL-safe. */
MESH_PROCESS_API void mesh_free(Mesh *mesh);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(Mesh, mesh_free)

/* Listening and connecting. */

/**
 * mesh_listen:
 * @mesh: a mesh
 * @path: the socket path; its directory must belong to us and not be
 *     writable by other users (MESH_PROCESS_ERROR_INSECURE, the message
 *     says which). A stale socket there (connecting is refused) is
 *     replaced; a live one is MESH_PROCESS_ERROR_ADDRESS_IN_USE, and so is
 *     a path this mesh listens on already; any other file is an error.
 * @allow_other_users: FALSE: the socket is owner-only (0600) and a client of
 *     another uid is refused (SO_PEERCRED); TRUE: the socket is 0666 and
 *     any uid is accepted (others also need search permission on the
 *     directory, the caller's business)
 * @ret_receiver: (out) (transfer full): an untyped receiver of every message
 *     every client sends (FIFO per client)
 * @error: why not (MESH_PROCESS_ERROR_SHUT_DOWN after mesh_shutdown())
 *
 * Freeing the receiver does not stop listening: mesh_unlisten() does.
 * Checking for a live server connects to it once, as a client that leaves
 * at once.
 *
 * Returns: TRUE if listening.
 */
MESH_PROCESS_API gboolean mesh_listen(Mesh *mesh, const char *path, gboolean allow_other_users,
				      MeshReceiver **ret_receiver, GError **error);

/**
 * mesh_unlisten: stops accepting on @path and removes the socket file, if it
 * is still the one this mesh made (a server that took the path over keeps
 * its socket).
 */
MESH_PROCESS_API void mesh_unlisten(Mesh *mesh, const char *path);

/**
 * MeshConnection:
 *
 * A client's connection to a listening mesh (mesh_connect()); ended by
 * mesh_connection_shutdown().
 */
typedef struct MeshConnection MeshConnection;

/**
 * mesh_connect:
 * @path: a listening mesh's socket path
 * @timeout_us: bound on joining (-1: none; another negative value:
 *     MESH_ERROR_INVALID_ARGUMENT)
 * @ret_sender: (out) (transfer full): an untyped sender into the listener
 * @error: why not, in domain MESH_ERROR: MESH_ERROR_UNAVAILABLE when
 *     nothing listens on @path yet (no socket file, or nobody accepts behind
 *     it: retry later); MESH_ERROR_PERMISSION_DENIED when the server refused
 *     this client (its uid is not allowed, or the socket file's mode keeps it
 *     out); MESH_ERROR_INVALID_ARGUMENT for a path too long for a socket
 *     address (or another connect error); MESH_ERROR_TIMED_OUT,
 *     MESH_ERROR_CORRUPTION for a server that breaks the handshake
 *
 * For a process outside the mesh.
 *
 * Returns: (transfer full): the connection (it keeps the client's node
 * alive), or NULL.
 */
MESH_PROCESS_API MeshConnection *mesh_connect(const char *path, gint64 timeout_us,
					      MeshSender **ret_sender, GError **error);

/**
 * mesh_connection_shutdown:
 * @conn: (nullable) (transfer full): a connection; NULL returns TRUE, as a
 *     free function takes NULL
 * @timeout_us: how long to wait for delivery, -1 forever (another negative
 *     value is a programmer error: a critical, FALSE, and @conn is left alone)
 *
 * Consumes @conn, also on failure. Delivers everything sent before, then
 * disconnects and frees @conn.
 *
 * Returns: TRUE if the server confirmed in time: the connection was still up
 * when the call began, and after our flush and end of stream came the
 * server's end of stream (see mesh_unix_node_shutdown()). FALSE if the
 * server went away before (killed, or shut down first), the connection was
 * reset, or @timeout_us passed.
 */
MESH_PROCESS_API gboolean mesh_connection_shutdown(MeshConnection *conn, gint64 timeout_us);

/* The host side. */

/**
 * MeshHostFunc:
 * @initial: (transfer full): the initial message from mesh_launch_host()
 * @user_data: the data given to mesh_try_run_host()
 * @error: why the host failed
 *
 * The host's work. Runs on the main thread while the node serves the parent's
 * inspect and crash requests.
 *
 * Returns: TRUE when done (the process then exits 0), FALSE with @error set.
 */
typedef gboolean (*MeshHostFunc)(MeshMessage *initial, gpointer user_data, GError **error);

/**
 * mesh_try_run_host:
 * @base_name: the process name prefix: the process is renamed
 *     "@base_name-NODE", NODE being the node name (as much as fits in 15
 *     characters)
 * @func: the host's work
 * @user_data: passed to @func
 * @error: a corrupt invitation, a failed join, or @func's error
 *
 * Call first thing in main(), before the program starts a thread. Without
 * MESH_WORKER_INVITATION or MESH_STDIO_INVITATION in the environment it
 * returns TRUE at once: this is not a host. Otherwise it removes the
 * variable, takes fd 3 (making it close-on-exec), enters the host's sandbox
 * if its config had one, joins the mesh, receives the initial message and
 * runs @func; when @func returns TRUE or the parent goes away, it shuts the
 * node down and exits the process with 0. It returns only on error (FALSE).
 *
 * The sandbox (mesh_process_config_set_sandbox()): the profile's finalize
 * part, from the environment (pal_sandbox_new_from_env()), is finalized
 * (pal_sandbox_finalize()) while the process has one thread and before a
 * byte from the mesh is read, so the join already runs sandboxed. A
 * program that needs files or privileges for its own setup first does that
 * setup, finalizes the profile itself, and then calls mesh_try_run_host(),
 * which sees it finalized (doc/sandbox.md, "Finalizing later"). When the
 * sandbox cannot be finalized, or the parent asked for one and the
 * environment has none, the host says why on stderr and exits with
 * #MESH_HOST_EXIT_SANDBOX without joining.
 *
 * With MESH_STDIO_INVITATION (a remote host) it takes fds 0 and 1 as its
 * link to the parent instead, then points fd 0 at an empty pipe (it reads
 * as /dev/null does) and fd 1 at stderr: @func must not write to the
 * stdout it had (a stray printf() goes to stderr).
 *
 * Returns: TRUE if not a host; FALSE with @error set.
 */
MESH_PROCESS_API gboolean mesh_try_run_host(const char *base_name, MeshHostFunc func,
					    gpointer user_data, GError **error);

/**
 * mesh_host_get_pid:
 *
 * The calling host's pid as its parent sees it: the pid mesh_launch_host()
 * returned, which inspect and the errors naming the host use (the parent
 * sends it with the host's first message). In a sandbox with a PID
 * namespace (the default profile's) getpid() is 1 and this is the pid
 * outside; for a remote host (its own pid, on its machine), a process that
 * is not a host, or before the host function runs, it is getpid(). Any
 * thread.
 *
 * Returns: a pid.
 */
MESH_PROCESS_API GPid mesh_host_get_pid(void);

G_END_DECLS
