/* SPDX-License-Identifier: MIT */
/**
 * Process spawning on Windows (Windows only): the same builder (PalSpawn)
 * and child (PalChild) as pal-spawn.h on Linux, with Windows names where
 * they differ (handles instead of fds, exit codes instead of wait statuses,
 * a job object instead of a parent-death signal).
 *
 * How a spawn runs: pal_spawn_run() converts everything to UTF-16, quotes
 * the command line by the MSVCRT rules (so the child's argv is exactly the
 * arguments given), builds a sorted environment block, and calls
 * CreateProcessW() with STARTUPINFOEXW and bInheritHandles = TRUE but a
 * PROC_THREAD_ATTRIBUTE_HANDLE_LIST: the child inherits the stdio handles
 * and those of pal_spawn_inherit_handle(), and nothing else, whatever else
 * in the process is inheritable. Listed handles that are not inheritable are
 * made so for the call and restored after it (under a process-wide lock, so
 * concurrent pal_spawn_run() calls do not undo each other's).
 *
 * With pal_spawn_set_job() the child starts inside a new job object with
 * JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE, through PROC_THREAD_ATTRIBUTE_JOB_LIST
 * (Windows 10+), or, where that attribute is refused, CREATE_SUSPENDED,
 * AssignProcessToJobObject() and ResumeThread(). Its descendants are in the
 * job too. PalChild owns the only handle of the job: when it is freed, or
 * the parent process dies, the system kills the child and every descendant.
 *
 * Errors: 0 on success, a negative Win32 error code (-(int)GetLastError())
 * on failure. After a failed pal_spawn_run(), pal_spawn_get_failed_step()
 * names the failing call ("CreateProcessW", "SearchPathW", ...), as the
 * Linux builder names its failing step.
 *
 * Threads: a PalSpawn or PalChild is used from one thread at a time;
 * pal_spawn_run() is safe to call from several threads with distinct
 * builders.
 */
#pragma once

#if !defined(__PAL_H_INSIDE__) && !defined(PAL_COMPILATION)
#error "Only <pal/pal.h> can be included directly."
#endif

#include <stdbool.h>
#include <windows.h>

PAL_BEGIN_DECLS

/** PalSpawn: a builder for one child process (pal_spawn_new()). */
typedef struct PalSpawn PalSpawn;
/** PalChild: a started child: its process handle, pid and job (pal_spawn_run()). */
typedef struct PalChild PalChild;

/**
 * PalStdio:
 * @PAL_STDIO_INHERIT: the child shares the parent's GetStdHandle() stream
 * @PAL_STDIO_NULL: the NUL device
 * @PAL_STDIO_HANDLE: a given handle (borrowed, must stay open until spawn)
 */
typedef enum {
	PAL_STDIO_INHERIT,
	PAL_STDIO_NULL,
	PAL_STDIO_HANDLE,
} PalStdio;

/**
 * pal_spawn_new:
 * @program: the program, UTF-8; without a path separator ('/' or '\\') it
 *     is searched with SearchPathW() (".exe" appended when it has no
 *     extension) at spawn time
 *
 * argv[0] defaults to @program.
 *
 * Returns: (transfer full): a builder, or NULL (out of memory, or a NULL
 * or empty @program).
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

/**
 * pal_spawn_set_arg0:
 * @spawn: a builder
 * @arg0: argv[0], UTF-8, copied
 *
 * The MSVCRT rules read argv[0] without backslash escapes, so it cannot
 * contain a double quote.
 *
 * Returns: 0, or -ERROR_INVALID_PARAMETER for an @arg0 with a '"'.
 */
PAL_API int pal_spawn_set_arg0(PalSpawn *spawn, const char *arg0);

/** pal_spawn_add_arg: appends one UTF-8 argument (copied). Returns: 0 or a negative Win32 error code. */
PAL_API int pal_spawn_add_arg(PalSpawn *spawn, const char *arg);

/**
 * pal_spawn_add_args:
 * @spawn: a builder
 * @args: a NULL-terminated array of UTF-8 arguments, copied
 *
 * Returns: 0 or a negative Win32 error code.
 */
PAL_API int pal_spawn_add_args(PalSpawn *spawn, const char *const *args);

/**
 * pal_spawn_env_set:
 * @spawn: a builder
 * @key: a variable name, non-empty and without '=', UTF-8
 * @value: its value, UTF-8
 *
 * The child's environment is the parent's (read at spawn time) unless
 * pal_spawn_env_clear() was called, with the set/unset operations applied in
 * the order they were made. Names compare case-insensitively, as Windows
 * does; the block is sorted as CreateProcessW() expects.
 *
 * Returns: 0 or a negative Win32 error code (-ERROR_INVALID_PARAMETER for a
 * bad name).
 */
PAL_API int pal_spawn_env_set(PalSpawn *spawn, const char *key, const char *value);

/** pal_spawn_env_unset: removes @key from the child's environment. Returns: 0 or a negative Win32 error code. */
PAL_API int pal_spawn_env_unset(PalSpawn *spawn, const char *key);

/** pal_spawn_env_clear: starts the child's environment empty (earlier sets are dropped). Returns: 0. */
PAL_API int pal_spawn_env_clear(PalSpawn *spawn);

/**
 * pal_spawn_set_stdin:
 * @spawn: a builder
 * @mode: how to set up the stream
 * @handle: the handle for %PAL_STDIO_HANDLE (borrowed), otherwise ignored
 *
 * The same holds for pal_spawn_set_stdout() and pal_spawn_set_stderr().
 * The default for all three is %PAL_STDIO_INHERIT. Stdio handles are
 * inherited through the handle list like those of
 * pal_spawn_inherit_handle().
 *
 * Returns: 0 or -ERROR_INVALID_PARAMETER.
 */
PAL_API int pal_spawn_set_stdin(PalSpawn *spawn, PalStdio mode, HANDLE handle);
/** pal_spawn_set_stdout: the child's stdout, as pal_spawn_set_stdin(). */
PAL_API int pal_spawn_set_stdout(PalSpawn *spawn, PalStdio mode, HANDLE handle);
/** pal_spawn_set_stderr: the child's stderr, as pal_spawn_set_stdin(). */
PAL_API int pal_spawn_set_stderr(PalSpawn *spawn, PalStdio mode, HANDLE handle);

/**
 * pal_spawn_inherit_handle:
 * @spawn: a builder
 * @handle: a handle of this process, borrowed: it must stay open until spawn
 *
 * Adds @handle to the child's handle list: the child gets the same object
 * under the same handle value (pass the value to it, in argv for example).
 * The Windows counterpart of pal_spawn_dup_fd(), without renumbering.
 * Adding a handle twice lists it once.
 *
 * Returns: 0 or a negative Win32 error code (-ERROR_INVALID_HANDLE for
 * NULL or INVALID_HANDLE_VALUE).
 */
PAL_API int pal_spawn_inherit_handle(PalSpawn *spawn, HANDLE handle);

/**
 * pal_spawn_set_cwd:
 * @spawn: a builder
 * @dir: (nullable): the child's working directory, UTF-8, or NULL for the
 *     parent's
 *
 * Returns: 0 or a negative Win32 error code.
 */
PAL_API int pal_spawn_set_cwd(PalSpawn *spawn, const char *dir);

/**
 * pal_spawn_set_job:
 * @spawn: a builder
 * @job: start the child in a new kill-on-close job (default false)
 *
 * See the header comment. pal_child_kill() then ends the whole job.
 *
 * Returns: 0.
 */
PAL_API int pal_spawn_set_job(PalSpawn *spawn, bool job);

/**
 * pal_spawn_run:
 * @spawn: a builder; it may be run again
 * @ret_child: (out) (transfer full): the child
 *
 * Returns: 0, or a negative Win32 error code from the failing step; see
 * pal_spawn_get_failed_step(). A missing program gives
 * -ERROR_FILE_NOT_FOUND (or -ERROR_PATH_NOT_FOUND for a missing directory).
 */
PAL_API int pal_spawn_run(PalSpawn *spawn, PalChild **ret_child);

/**
 * pal_spawn_get_failed_step:
 * @spawn: a builder
 *
 * Returns: (transfer none): after a failed pal_spawn_run(), the name of the
 * Windows call or step that failed ("CreateProcessW", "SearchPathW",
 * "utf8", "CreateJobObjectW", "UpdateProcThreadAttribute", ...), or NULL.
 */
PAL_API const char *pal_spawn_get_failed_step(const PalSpawn *spawn);

/** pal_child_get_pid: Returns: the child's process id. */
PAL_API DWORD pal_child_get_pid(const PalChild *child);

/**
 * pal_child_get_process_handle:
 * @child: a child
 *
 * Returns: (transfer none): the child's process handle (all access), which
 * is signaled once the child has exited: the counterpart of the pidfd.
 */
PAL_API HANDLE pal_child_get_process_handle(const PalChild *child);

/**
 * pal_child_get_job:
 * @child: a child
 *
 * Returns: (transfer none): the child's kill-on-close job, or NULL when
 * pal_spawn_set_job() was not used. Do not close it: pal_child_free() does.
 */
PAL_API HANDLE pal_child_get_job(const PalChild *child);

/**
 * pal_child_wait:
 * @child: a child
 * @ret_exit_code: (out) (optional): the child's exit code
 *
 * Blocks until the child exits.
 *
 * Returns: 0 or a negative Win32 error code.
 */
PAL_API int pal_child_wait(PalChild *child, DWORD *ret_exit_code);

/**
 * pal_child_try_wait:
 * @child: a child
 * @ret_exit_code: (out) (optional): the child's exit code
 *
 * Returns: 0 if the child has exited, -WAIT_TIMEOUT if it is still
 * running, or another negative Win32 error code.
 */
PAL_API int pal_child_try_wait(PalChild *child, DWORD *ret_exit_code);

/**
 * pal_child_kill:
 * @child: a child
 * @exit_code: the exit code the child (and, with a job, every process of
 *     the job) gets
 *
 * TerminateJobObject() when the child has a job, TerminateProcess()
 * otherwise. Killing a child that already exited succeeds and changes
 * nothing.
 *
 * Returns: 0 or a negative Win32 error code.
 */
PAL_API int pal_child_kill(PalChild *child, UINT exit_code);

/**
 * pal_child_free:
 * @child: (nullable): a child
 *
 * Closes the process handle, and the job if there is one, which kills every
 * process still in it (JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE). Without a job
 * it neither kills nor waits for the child.
 *
 * Returns: NULL.
 */
PAL_API PalChild *pal_child_free(PalChild *child);
PAL_DEFINE_CLEANUP_FUNC(PalChild, pal_child_free)

PAL_END_DECLS
