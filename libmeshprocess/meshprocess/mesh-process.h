/* SPDX-License-Identifier: MIT */
#pragma once

#if !defined(__MESHPROCESS_H_INSIDE__) && !defined(MESHPROCESS_COMPILATION)
#error "Only <meshprocess/meshprocess.h> can be included directly."
#endif

#include <glib.h>
#include <meshremote/meshremote.h>
#include <pal/pal.h>

G_BEGIN_DECLS

#define MESH_PROCESS_API __attribute__((visibility("default")))

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
 * MeshSandboxApplyFunc:
 * @spawn: the builder of the host's process, before it starts
 * @user_data: the profile's data
 * @error: why the profile cannot be applied
 *
 * A sandbox profile's apply step: runs in the parent, just before spawning,
 * and may set uid/gid, add child-side hooks (seccomp, landlock, namespaces),
 * or switch vfork off. The child may finish its sandbox itself later (the
 * "finalize" step is the host program's own code).
 *
 * Returns: FALSE with @error set to refuse the launch.
 */
typedef gboolean (*MeshSandboxApplyFunc)(PalSpawn *spawn, gpointer user_data, GError **error);

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
/** mesh_process_config_set_sandbox: a sandbox profile's apply step (NULL: none) and its data. */
MESH_PROCESS_API void mesh_process_config_set_sandbox(MeshProcessConfig *config,
						       MeshSandboxApplyFunc apply,
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
 * and its sandbox apply step; its pid is the host's pid for every function
 * of the mesh. Trust comes from the command: ssh authenticates and
 * encrypts; nothing in the link does.
 */
MESH_PROCESS_API void mesh_process_config_set_remote_command(MeshProcessConfig *config,
							      const char *const *argv);

/* The mesh. */

/** Mesh: the coordinator of a mesh of processes, in the parent (mesh_new()). */
typedef struct Mesh Mesh;

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
 * never outlives this process. It is spawned (and the config's sandbox apply
 * step runs) on a thread that lives as long as the mesh, so the calling
 * thread may exit afterwards. Returns without waiting for the host to join.
 *
 * With a remote command (mesh_process_config_set_remote_command()) that
 * command is spawned instead, with a socket as its stdin and stdout, and the
 * host joins over it: @initial and every message to the host must carry no
 * fds (the sending port fails at once), and ports whose peers are on other
 * hosts fail at the remote host (a remote host talks to the parent only).
 *
 * Returns: the host's pid (the local command's, for a remote host), or 0
 * with @error set.
 */
MESH_PROCESS_API GPid mesh_launch_host(Mesh *mesh, const MeshProcessConfig *config,
				       MeshMessage *initial, GError **error);

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
 * Call first thing in main(). Without MESH_WORKER_INVITATION or
 * MESH_STDIO_INVITATION in the environment it returns TRUE at once: this is
 * not a host. Otherwise it removes the variable, takes fd 3 (making it
 * close-on-exec), joins the mesh, receives the initial message and runs
 * @func; when @func returns TRUE or the parent goes away, it shuts the node
 * down and exits the process with 0. It returns only on error (FALSE).
 *
 * With MESH_STDIO_INVITATION (a remote host) it takes fds 0 and 1 as its
 * link to the parent instead, then points fd 0 at /dev/null and fd 1 at
 * stderr: @func must not write to the stdout it had (a stray printf() goes
 * to stderr).
 *
 * Returns: TRUE if not a host; FALSE with @error set.
 */
MESH_PROCESS_API gboolean mesh_try_run_host(const char *base_name, MeshHostFunc func,
					    gpointer user_data, GError **error);

G_END_DECLS
