/* SPDX-License-Identifier: MIT */
/**
 * Process spawning: a builder (PalSpawn) and a child handle (PalChild).
 *
 * How a spawn runs: pal_spawn_run() prepares argv, envp and every fd
 * operation in the parent, then starts the child with clone() (by default
 * CLONE_VM | CLONE_VFORK, like posix_spawn; fork-like when
 * pal_spawn_set_vfork() turns that off). The child does only
 * async-signal-safe work, in this order: reset signal dispositions and mask,
 * setsid, fd remapping (stdio included), close every other fd, the spawn-time
 * part of a sandbox profile (pal_sandbox_apply(): user namespace maps, private
 * /tmp, rlimits, bounding set; its namespaces are clone() flags), hooks of
 * %PAL_SPAWN_STAGE_BEFORE_CREDENTIALS, setgroups/setresgid, setresuid,
 * parent-death signal, hooks of %PAL_SPAWN_STAGE_BEFORE_EXEC (then the
 * parent-death signal again if one of them cleared it), execve (execvpe when
 * the program has no slash). If any step fails, the child reports the errno and
 * the step through a close-on-exec status pipe and exits with 127; the parent
 * reaps it and pal_spawn_run() returns that errno.
 *
 * Fd remapping: each pal_spawn_dup_fd() makes the child's fd @target a copy of
 * the parent's fd @src. Sources are first moved above every target, so chains
 * and swaps (3->4, 4->3) work, and src == target just clears FD_CLOEXEC. Every
 * fd >= 3 that is not a target is closed in the child (close_range) unless
 * pal_spawn_set_close_other_fds() says otherwise.
 *
 * Parent-death signal: Linux sends it when the *thread* that spawned the
 * child exits, not only the process. Spawn from a long-lived thread. The
 * kernel clears it when the child's credentials change, so the child arms it
 * after the last credential change, and checks then that its parent is still
 * the process that spawned it (in a new PID namespace, where getppid() is 0,
 * through the status pipe: see doc/libpal.md).
 *
 * Threads: a PalSpawn or PalChild is used from one thread at a time.
 * pal_spawn_run() blocks every signal in the calling thread while the child
 * starts, and is safe to call from several threads with distinct builders.
 */
#pragma once

#if !defined(__PAL_H_INSIDE__) && !defined(PAL_COMPILATION)
#error "Only <pal/pal.h> can be included directly."
#endif

#include <stdbool.h>
#include <sys/types.h>

PAL_BEGIN_DECLS

/** PalSpawn: a builder for one child process (pal_spawn_new()). */
typedef struct PalSpawn PalSpawn;
/** PalChild: a started child: its pid and pidfd (pal_spawn_run()). */
typedef struct PalChild PalChild;

/**
 * PalStdio:
 * @PAL_STDIO_INHERIT: the child shares the parent's stream
 * @PAL_STDIO_NULL: /dev/null
 * @PAL_STDIO_FD: a given fd (borrowed, must stay open until spawn)
 */
typedef enum {
	PAL_STDIO_INHERIT,
	PAL_STDIO_NULL,
	PAL_STDIO_FD,
} PalStdio;

/**
 * PalSpawnStage:
 * @PAL_SPAWN_STAGE_BEFORE_CREDENTIALS: after fd setup, before setresgid/uid
 *     (landlock, namespaces; credential changes of your own)
 * @PAL_SPAWN_STAGE_BEFORE_EXEC: last thing before exec (seccomp), after the
 *     parent-death signal is armed (see pal_spawn_set_parent_death_signal())
 */
typedef enum {
	PAL_SPAWN_STAGE_BEFORE_CREDENTIALS,
	PAL_SPAWN_STAGE_BEFORE_EXEC,
} PalSpawnStage;

/**
 * PalSpawnHookFunc:
 * @user_data: the pointer given to pal_spawn_add_hook()
 *
 * A sandbox step run in the child before exec. It must be async-signal-safe
 * (no malloc, no locks, no stdio); in vfork mode it shares the parent's
 * memory and must not modify it. Hooks that need their own address space
 * (unshare(CLONE_NEWUSER), for example) require pal_spawn_set_vfork(false).
 *
 * Returns: 0, or a negative errno that fails the spawn.
 */
typedef int (*PalSpawnHookFunc)(void *user_data);

/**
 * pal_spawn_new:
 * @program: path of the program; without a slash it is searched in PATH
 *
 * argv[0] defaults to @program.
 *
 * Returns: (transfer full): a builder, or NULL with errno set.
 */
PAL_API PalSpawn *pal_spawn_new(const char *program);

/**
 * pal_spawn_free:
 * @spawn: (nullable): a builder
 *
 * Returns: NULL.
 */
PAL_API PalSpawn *pal_spawn_free(PalSpawn *spawn);
PAL_DEFINE_CLEANUP_FUNC(PalSpawn, pal_spawn_free)

/** pal_spawn_set_arg0: overrides argv[0]. Returns: 0 or a negative errno. */
PAL_API int pal_spawn_set_arg0(PalSpawn *spawn, const char *arg0);

/** pal_spawn_add_arg: appends one argument (copied). Returns: 0 or a negative errno. */
PAL_API int pal_spawn_add_arg(PalSpawn *spawn, const char *arg);

/**
 * pal_spawn_add_args:
 * @spawn: a builder
 * @args: a NULL-terminated array of arguments, copied
 *
 * Returns: 0 or a negative errno.
 */
PAL_API int pal_spawn_add_args(PalSpawn *spawn, const char *const *args);

/**
 * pal_spawn_env_set:
 * @spawn: a builder
 * @key: a variable name, non-empty and without '='
 * @value: its value
 *
 * The child's environment is the parent's (read at spawn time) unless
 * pal_spawn_env_clear() was called, with the set/unset operations applied in
 * the order they were made.
 *
 * Returns: 0 or a negative errno (-EINVAL for a bad name).
 */
PAL_API int pal_spawn_env_set(PalSpawn *spawn, const char *key, const char *value);

/** pal_spawn_env_unset: removes @key from the child's environment. Returns: 0 or a negative errno. */
PAL_API int pal_spawn_env_unset(PalSpawn *spawn, const char *key);

/** pal_spawn_env_clear: starts the child's environment empty (earlier sets are dropped). Returns: 0. */
PAL_API int pal_spawn_env_clear(PalSpawn *spawn);

/**
 * pal_spawn_set_stdin:
 * @spawn: a builder
 * @mode: how to set up the stream
 * @fd: the fd for %PAL_STDIO_FD (borrowed), otherwise ignored
 *
 * The same holds for pal_spawn_set_stdout() and pal_spawn_set_stderr().
 * The default for all three is %PAL_STDIO_INHERIT.
 *
 * Returns: 0 or a negative errno.
 */
PAL_API int pal_spawn_set_stdin(PalSpawn *spawn, PalStdio mode, int fd);
/** pal_spawn_set_stdout: the child's stdout, as pal_spawn_set_stdin(). */
PAL_API int pal_spawn_set_stdout(PalSpawn *spawn, PalStdio mode, int fd);
/** pal_spawn_set_stderr: the child's stderr, as pal_spawn_set_stdin(). */
PAL_API int pal_spawn_set_stderr(PalSpawn *spawn, PalStdio mode, int fd);

/**
 * pal_spawn_dup_fd:
 * @spawn: a builder
 * @src: an fd of the parent, borrowed: it must stay open until spawn
 * @target: the fd number it gets in the child, >= 0
 *
 * Any number of mappings may be added; a later mapping to the same target
 * replaces the earlier one.
 *
 * Returns: 0 or a negative errno.
 */
PAL_API int pal_spawn_dup_fd(PalSpawn *spawn, int src, int target);

/** pal_spawn_set_close_other_fds: default true. Returns: 0. */
PAL_API int pal_spawn_set_close_other_fds(PalSpawn *spawn, bool close_others);

/** pal_spawn_set_setsid: run the child in a new session. Returns: 0. */
PAL_API int pal_spawn_set_setsid(PalSpawn *spawn, bool setsid);

/**
 * pal_spawn_set_parent_death_signal:
 * @spawn: a builder
 * @signal: the signal the child gets when the spawning thread dies, 0 for none
 *
 * The child arms it after setresuid() (the kernel clears it on a credential
 * change), and again after the %PAL_SPAWN_STAGE_BEFORE_EXEC hooks if one of
 * them changed credentials and so cleared it: it reads it back with
 * prctl(PR_GET_PDEATHSIG) when that stage has hooks, so a seccomp filter
 * installed there must allow prctl() or fail it with an errno (then the
 * signal stays as it was), not kill. If the parent is already gone when the
 * child arms it, the child fails the spawn at "parent_death_signal" with
 * -ESRCH (and does not exec). A set-user-ID or set-group-ID program also
 * clears it when exec'd.
 *
 * Returns: 0 or -EINVAL.
 */
PAL_API int pal_spawn_set_parent_death_signal(PalSpawn *spawn, int signal);

/** pal_spawn_set_uid: setresuid() in the child. Returns: 0. */
PAL_API int pal_spawn_set_uid(PalSpawn *spawn, uid_t uid);

/** pal_spawn_set_gid: setgroups({gid}) (when privileged) and setresgid() in the child. Returns: 0. */
PAL_API int pal_spawn_set_gid(PalSpawn *spawn, gid_t gid);

/**
 * pal_spawn_set_vfork: default true (CLONE_VM | CLONE_VFORK). A build of
 * libpal with ThreadSanitizer ignores it and always starts the child
 * fork-like: the sanitizer cannot follow a child that shares its memory.
 * Returns: 0.
 */
PAL_API int pal_spawn_set_vfork(PalSpawn *spawn, bool vfork);

/**
 * pal_spawn_add_hook:
 * @spawn: a builder
 * @stage: when the hook runs
 * @func: the hook
 * @user_data: passed to @func; must stay valid until spawn
 *
 * Hooks of one stage run in the order they were added.
 *
 * Returns: 0 or a negative errno.
 */
PAL_API int pal_spawn_add_hook(PalSpawn *spawn, PalSpawnStage stage, PalSpawnHookFunc func,
			       void *user_data);

/**
 * pal_spawn_run:
 * @spawn: a builder; it may be run again
 * @ret_child: (out) (transfer full): the child
 *
 * Returns: 0, or a negative errno: from the parent's preparation, or from
 * the child's failed step (exec of a missing program gives -ENOENT). See
 * pal_spawn_get_failed_step().
 */
PAL_API int pal_spawn_run(PalSpawn *spawn, PalChild **ret_child);

/**
 * pal_spawn_get_failed_step:
 * @spawn: a builder
 *
 * Returns: (transfer none): after a failed pal_spawn_run(), the name of the
 * step that failed ("exec", "dup_fd", "hook", "setresuid", ...), or NULL.
 */
PAL_API const char *pal_spawn_get_failed_step(const PalSpawn *spawn);

/** pal_child_get_pid: Returns: the child's pid. */
PAL_API pid_t pal_child_get_pid(const PalChild *child);

/**
 * pal_child_get_pidfd:
 * @child: a child
 *
 * Returns: (transfer none): a pidfd that polls readable once the child has
 * exited, or -1 after the child was reaped.
 */
PAL_API int pal_child_get_pidfd(const PalChild *child);

/**
 * pal_child_wait:
 * @child: a child
 * @ret_status: (out) (optional): the waitpid() status
 *
 * Blocks until the child exits and reaps it (EINTR is retried). Once reaped,
 * further calls return the same status at once.
 *
 * Returns: 0 or a negative errno.
 */
PAL_API int pal_child_wait(PalChild *child, int *ret_status);

/**
 * pal_child_try_wait:
 * @child: a child
 * @ret_status: (out) (optional): the waitpid() status
 *
 * Returns: 0 if the child has exited (and is now reaped), -EAGAIN if it is
 * still running, or another negative errno.
 */
PAL_API int pal_child_try_wait(PalChild *child, int *ret_status);

/**
 * pal_child_kill:
 * @child: a child
 * @signal: a signal number
 *
 * Sends @signal through the pidfd, so a recycled pid is never hit.
 *
 * Returns: 0, -ESRCH if the child was already reaped, or a negative errno.
 */
PAL_API int pal_child_kill(PalChild *child, int signal);

/**
 * pal_child_free:
 * @child: (nullable): a child
 *
 * Closes the pidfd. It neither kills nor reaps a running child.
 *
 * Returns: NULL.
 */
PAL_API PalChild *pal_child_free(PalChild *child);
PAL_DEFINE_CLEANUP_FUNC(PalChild, pal_child_free)

PAL_END_DECLS
