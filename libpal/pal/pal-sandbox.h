/* SPDX-License-Identifier: MIT */
/**
 * Sandbox profiles: a PalSandbox is configured in the parent and applied in
 * two steps.
 *
 * 1. pal_sandbox_apply() adds the spawn-time part to a PalSpawn builder:
 *    new namespaces (passed to the child's clone()), the user namespace's
 *    single-id uid/gid maps, a private /tmp, rlimits, uid/gid, closing
 *    inherited fds; and it puts the finalize part, encoded, into the child's
 *    environment as %PAL_SANDBOX_ENV.
 * 2. The child, once its own initialisation is done (it has joined the
 *    mesh, opened what it needs), calls pal_sandbox_new_from_env() and then
 *    pal_sandbox_finalize(): no_new_privs, capabilities, Landlock, seccomp,
 *    in that order.
 *
 * Never silently weaker than asked: a step the profile requires and the
 * kernel or the privileges refuse fails (the spawn, or finalize, with the
 * step named); best-effort steps that were skipped are visible in
 * pal_sandbox_get_status().
 *
 * Threads: a PalSandbox is used from one thread at a time; once applied it
 * must not be modified while a spawn using it runs. pal_sandbox_finalize()
 * must run while the process has a single thread.
 */
#pragma once

#if !defined(__PAL_H_INSIDE__) && !defined(PAL_COMPILATION)
#error "Only <pal/pal.h> can be included directly."
#endif

#include <stdbool.h>
#include <sys/resource.h>
#include <sys/types.h>

PAL_BEGIN_DECLS

/**
 * PAL_SANDBOX_ENV:
 *
 * The environment variable through which pal_sandbox_apply() hands the
 * finalize part to the child.
 */
#define PAL_SANDBOX_ENV "PAL_SANDBOX"

/** PalSandbox: a refcounted sandbox profile (pal_sandbox_new()). */
typedef struct PalSandbox PalSandbox;

/**
 * PalSandboxNamespaces:
 * @PAL_SANDBOX_NS_USER: a user namespace (CLONE_NEWUSER)
 * @PAL_SANDBOX_NS_MOUNT: a mount namespace (CLONE_NEWNS)
 * @PAL_SANDBOX_NS_NET: a network namespace with only a loopback, down (CLONE_NEWNET)
 * @PAL_SANDBOX_NS_PID: a PID namespace; the child is its pid 1 (CLONE_NEWPID)
 * @PAL_SANDBOX_NS_IPC: an IPC namespace (CLONE_NEWIPC)
 * @PAL_SANDBOX_NS_UTS: a UTS namespace (CLONE_NEWUTS)
 */
typedef enum {
	PAL_SANDBOX_NS_USER = 1 << 0,
	PAL_SANDBOX_NS_MOUNT = 1 << 1,
	PAL_SANDBOX_NS_NET = 1 << 2,
	PAL_SANDBOX_NS_PID = 1 << 3,
	PAL_SANDBOX_NS_IPC = 1 << 4,
	PAL_SANDBOX_NS_UTS = 1 << 5,
} PalSandboxNamespaces;

/**
 * PalSandboxAccess:
 * @PAL_SANDBOX_FS_READ: read files, list directories
 * @PAL_SANDBOX_FS_WRITE: write and truncate files, create, remove, rename
 *     and link entries, ioctl on devices
 * @PAL_SANDBOX_FS_EXECUTE: execute files (seccomp still refuses execve())
 */
typedef enum {
	PAL_SANDBOX_FS_READ = 1 << 0,
	PAL_SANDBOX_FS_WRITE = 1 << 1,
	PAL_SANDBOX_FS_EXECUTE = 1 << 2,
} PalSandboxAccess;

/**
 * PalSandboxSeccomp:
 * @PAL_SANDBOX_SECCOMP_OFF: no seccomp filter
 * @PAL_SANDBOX_SECCOMP_KILL: a syscall outside the allow-list kills the
 *     process with SIGSYS
 * @PAL_SANDBOX_SECCOMP_LOG: it is allowed and logged by the kernel (audit
 *     log / dmesg), for building an allow-list
 */
typedef enum {
	PAL_SANDBOX_SECCOMP_OFF,
	PAL_SANDBOX_SECCOMP_KILL,
	PAL_SANDBOX_SECCOMP_LOG,
} PalSandboxSeccomp;

/**
 * PalSandboxStatus:
 * @namespaces: the #PalSandboxNamespaces the process was started in (as
 *     granted by the kernel, recorded by the spawn)
 * @private_tmp: /tmp is a private tmpfs
 * @no_new_privs: PR_SET_NO_NEW_PRIVS is set
 * @capabilities_dropped: no capabilities are left (effective, permitted,
 *     inheritable, ambient; the bounding set as far as the process could
 *     drop it, see pal_sandbox_set_drop_capabilities())
 * @landlock_abi: the Landlock ABI version enforced, 0 for none
 * @seccomp: the seccomp mode installed
 * @finalized: pal_sandbox_finalize() succeeded
 *
 * What the calling process got (pal_sandbox_get_status()).
 */
typedef struct {
	unsigned namespaces;
	bool private_tmp;
	bool no_new_privs;
	bool capabilities_dropped;
	int landlock_abi;
	PalSandboxSeccomp seccomp;
	bool finalized;
} PalSandboxStatus;

/**
 * pal_sandbox_new:
 *
 * The default profile: namespaces MOUNT, NET, IPC and PID best effort (USER
 * added when the spawning process lacks CAP_SYS_ADMIN), a private /tmp,
 * no_new_privs, every capability dropped, Landlock with no paths allowed,
 * seccomp %PAL_SANDBOX_SECCOMP_KILL with the default allow-list (see
 * doc/libpal.md).
 *
 * Returns: (transfer full): a profile, or NULL with errno set.
 */
PAL_API PalSandbox *pal_sandbox_new(void);

/**
 * pal_sandbox_new_empty:
 *
 * A profile that does nothing: no namespaces, no no_new_privs, capabilities
 * kept, Landlock and seccomp off. Callers add the steps they want.
 *
 * Returns: (transfer full): a profile, or NULL with errno set.
 */
PAL_API PalSandbox *pal_sandbox_new_empty(void);

/** pal_sandbox_ref: Returns: (transfer full): @sandbox, with one more reference. */
PAL_API PalSandbox *pal_sandbox_ref(PalSandbox *sandbox);

/**
 * pal_sandbox_unref:
 * @sandbox: (nullable): a profile
 *
 * Drops one reference; the last one frees the profile.
 *
 * Returns: NULL.
 */
PAL_API PalSandbox *pal_sandbox_unref(PalSandbox *sandbox);
PAL_DEFINE_CLEANUP_FUNC(PalSandbox, pal_sandbox_unref)

/**
 * pal_sandbox_copy:
 * @sandbox: a profile
 *
 * A new profile with the same steps as @sandbox (both parts), independent
 * of it: later changes to either leave the other as it is. Not the failed
 * step. Thread-safe with respect to other readers of @sandbox.
 *
 * Returns: (transfer full): the copy, or NULL with errno set (EINVAL for a
 * NULL @sandbox, ENOMEM).
 */
PAL_API PalSandbox *pal_sandbox_copy(const PalSandbox *sandbox);

/**
 * pal_sandbox_equal:
 * @a: (nullable): a profile
 * @b: (nullable): a profile
 *
 * Whether @a and @b ask for the same steps, in both parts: a child spawned
 * with one is isolated exactly as with the other. Paths and system calls
 * compare in the order they were added. Two NULLs are equal. Thread-safe
 * with respect to other readers.
 *
 * Returns: true if equal.
 */
PAL_API bool pal_sandbox_equal(const PalSandbox *a, const PalSandbox *b);

/**
 * pal_sandbox_set_namespaces:
 * @sandbox: a profile
 * @namespaces: a mask of #PalSandboxNamespaces
 * @required: whether the spawn fails if the kernel or the privileges refuse
 *
 * Adds @namespaces to those the child is started in. Best-effort ones
 * (@required false) that the kernel refuses (EPERM, EINVAL, ENOSPC, EUSERS)
 * are dropped and the spawn retries with fewer; what was granted is recorded
 * for the child's pal_sandbox_get_status(). A required one refused fails
 * pal_spawn_run() at the step "namespaces". A namespace asked for twice is
 * required if either call said so.
 *
 * %PAL_SANDBOX_NS_USER is added (required if any other namespace is) when
 * the spawning process lacks CAP_SYS_ADMIN. In a new user namespace the
 * child keeps the spawner's uid and gid through single-id maps, with
 * setgroups denied: pal_sandbox_set_uid() to another uid fails the spawn.
 *
 * In a new PID namespace the child is pid 1: signals from the parent's
 * namespace reach it only if it installed a handler for them, except SIGKILL
 * and SIGSTOP. A parent-death signal other than SIGKILL is therefore ignored
 * unless the child handles it; the child also reaps the orphans in its
 * namespace, and when it exits every process in the namespace is killed.
 * With %PAL_SANDBOX_NS_MOUNT too, /proc is remounted for the new PID
 * namespace where the kernel allows it (see doc/libpal.md).
 *
 * Returns: 0 or -EINVAL.
 */
PAL_API int pal_sandbox_set_namespaces(PalSandbox *sandbox, unsigned namespaces, bool required);

/**
 * pal_sandbox_set_private_tmp:
 * @sandbox: a profile
 * @private_tmp: mount a fresh tmpfs on /tmp in the child
 *
 * Needs %PAL_SANDBOX_NS_MOUNT: without it (not asked for, or refused as a
 * best-effort namespace) /tmp stays shared and pal_sandbox_get_status()
 * says so. The child's mounts become slaves of the parent's first, so
 * nothing it mounts propagates back.
 *
 * Returns: 0 or -EINVAL.
 */
PAL_API int pal_sandbox_set_private_tmp(PalSandbox *sandbox, bool private_tmp);

/**
 * pal_sandbox_set_rlimit:
 * @sandbox: a profile
 * @resource: an RLIMIT_* resource
 * @soft: the soft limit
 * @hard: the hard limit, >= @soft
 *
 * Set in the child before its credentials change; raising a hard limit
 * needs CAP_SYS_RESOURCE and otherwise fails the spawn at "rlimit". A later
 * call for the same resource replaces the earlier one.
 *
 * Returns: 0, -EINVAL, or -E2BIG when more than 16 resources are set.
 */
PAL_API int pal_sandbox_set_rlimit(PalSandbox *sandbox, int resource, rlim_t soft, rlim_t hard);

/** pal_sandbox_set_uid: the child's uid, as pal_spawn_set_uid(). Returns: 0 or -EINVAL. */
PAL_API int pal_sandbox_set_uid(PalSandbox *sandbox, uid_t uid);

/** pal_sandbox_set_gid: the child's gid, as pal_spawn_set_gid(). Returns: 0 or -EINVAL. */
PAL_API int pal_sandbox_set_gid(PalSandbox *sandbox, gid_t gid);

/** pal_sandbox_set_no_new_privs: PR_SET_NO_NEW_PRIVS at finalize (default profile: true). Returns: 0 or -EINVAL. */
PAL_API int pal_sandbox_set_no_new_privs(PalSandbox *sandbox, bool no_new_privs);

/**
 * pal_sandbox_set_drop_capabilities:
 * @sandbox: a profile
 * @drop: drop every capability at finalize (default profile: true)
 *
 * Finalize clears the ambient set, drops the bounding set and sets the
 * effective, permitted and inheritable sets to empty. A child that changes
 * its uid away from root, or runs in a new user namespace, loses its
 * capabilities before it could drop the bounding set itself: the spawn
 * drops it in the child first. A process without CAP_SETPCAP that still has
 * a bounding set can only be left with it: with no_new_privs set it cannot
 * regain anything through exec, and finalize accepts that; without
 * no_new_privs finalize fails with -EPERM at "capabilities".
 *
 * Returns: 0 or -EINVAL.
 */
PAL_API int pal_sandbox_set_drop_capabilities(PalSandbox *sandbox, bool drop);

/**
 * pal_sandbox_set_landlock:
 * @sandbox: a profile
 * @enabled: restrict the filesystem (and TCP, and abstract unix sockets and
 *     signals outside the sandbox, where the kernel's Landlock ABI knows
 *     them) to the paths given with pal_sandbox_allow_path()
 *
 * Default profile: enabled, no paths. A kernel without Landlock leaves the
 * step out (landlock_abi 0 in the status) unless
 * pal_sandbox_require_landlock_abi() asks for it.
 *
 * Returns: 0 or -EINVAL.
 */
PAL_API int pal_sandbox_set_landlock(PalSandbox *sandbox, bool enabled);

/**
 * pal_sandbox_allow_path:
 * @sandbox: a profile
 * @path: an absolute path, opened at finalize (a missing path fails it)
 * @access: a mask of #PalSandboxAccess for @path and everything beneath
 *
 * Returns: 0, -EINVAL (relative path, empty mask), -ENAMETOOLONG, -E2BIG
 * (more than 256 paths) or -ENOMEM.
 */
PAL_API int pal_sandbox_allow_path(PalSandbox *sandbox, const char *path, unsigned access);

/**
 * pal_sandbox_require_landlock_abi:
 * @sandbox: a profile
 * @min_abi: the lowest Landlock ABI version finalize accepts, 0 for any
 *
 * Finalize fails with -EOPNOTSUPP at "landlock" when the kernel's ABI is
 * lower (or Landlock is missing or disabled). Implies
 * pal_sandbox_set_landlock(@sandbox, true) when @min_abi > 0.
 *
 * Returns: 0 or -EINVAL.
 */
PAL_API int pal_sandbox_require_landlock_abi(PalSandbox *sandbox, int min_abi);

/**
 * pal_sandbox_set_seccomp:
 * @sandbox: a profile
 * @mode: the filter's mode (default profile: %PAL_SANDBOX_SECCOMP_KILL)
 *
 * A libpal built without libseccomp fails finalize with -EOPNOTSUPP at
 * "seccomp" for any mode but %PAL_SANDBOX_SECCOMP_OFF.
 *
 * Returns: 0 or -EINVAL.
 */
PAL_API int pal_sandbox_set_seccomp(PalSandbox *sandbox, PalSandboxSeccomp mode);

/**
 * pal_sandbox_allow_syscall:
 * @sandbox: a profile
 * @name: a syscall name as libseccomp knows it ("inotify_init1")
 *
 * Adds @name, with any arguments, to the default allow-list. The name is
 * checked at finalize (an unknown name fails it with -EINVAL at "seccomp"),
 * so a parent built without libseccomp can still configure it.
 *
 * Returns: 0, -EINVAL (empty, longer than 63 or not [a-z0-9_]), -E2BIG
 * (more than 256) or -ENOMEM.
 */
PAL_API int pal_sandbox_allow_syscall(PalSandbox *sandbox, const char *name);

/**
 * pal_sandbox_apply:
 * @sandbox: a profile
 * @spawn: a builder
 *
 * Adds the spawn-time part to @spawn (namespaces, uid/gid, rlimits, a
 * private /tmp, closing inherited fds) and sets %PAL_SANDBOX_ENV in the
 * child's environment to the encoded finalize part. @spawn keeps a
 * reference to @sandbox. Applying a second profile to the same builder
 * replaces the first.
 *
 * Returns: 0, -EINVAL (a uid change together with a user namespace),
 * -E2BIG (the encoded finalize part is longer than 256 KiB), or -ENOMEM.
 */
PAL_API int pal_sandbox_apply(PalSandbox *sandbox, PalSpawn *spawn);

/**
 * pal_sandbox_to_env:
 * @sandbox: a profile
 * @ret_value: (out) (transfer full): the encoded finalize part, free() it
 *
 * Encodes the finalize part of @sandbox as the value of %PAL_SANDBOX_ENV,
 * for a child that gets its environment some other way than
 * pal_sandbox_apply() (a remote command's `env NAME=VALUE` words, a
 * service manager's unit). The value carries no namespaces: the child's
 * pal_sandbox_get_status() then reports none, which is true of a child
 * not spawned with pal_sandbox_apply(). The spawn part (namespaces,
 * uid/gid, rlimits, private /tmp) is not in it. Thread-safe with respect
 * to other readers of @sandbox.
 *
 * Returns: 0, -EINVAL (@sandbox or @ret_value NULL), -E2BIG (longer than
 * the decoder accepts, 256 KiB) or -ENOMEM. *@ret_value is NULL on failure.
 */
PAL_API int pal_sandbox_to_env(const PalSandbox *sandbox, char **ret_value);

/**
 * pal_sandbox_get_failed_step:
 * @sandbox: a profile
 *
 * Returns: (transfer none): after a failed pal_sandbox_finalize(), the step
 * that failed ("finalize" for -EALREADY, "threads", "no_new_privs",
 * "capabilities", "landlock", "seccomp"), otherwise NULL. Spawn-time failures are named by
 * pal_spawn_get_failed_step() ("namespaces", "dumpable", "userns_map",
 * "private_tmp", "rlimit", "bounding_set").
 */
PAL_API const char *pal_sandbox_get_failed_step(const PalSandbox *sandbox);

/**
 * pal_sandbox_new_from_env:
 * @ret_sandbox: (out) (transfer full): the profile, or NULL
 *
 * Reads %PAL_SANDBOX_ENV from the environment and unsets it (also when it
 * is malformed), and records the namespaces the spawn granted for
 * pal_sandbox_get_status(). Not thread-safe (it changes the environment):
 * call it before starting threads.
 *
 * Returns: 0 (with *@ret_sandbox NULL when the variable is not set),
 * -EINVAL for a malformed value, or -ENOMEM.
 */
PAL_API int pal_sandbox_new_from_env(PalSandbox **ret_sandbox);

/**
 * pal_sandbox_finalize:
 * @sandbox: a profile, usually from pal_sandbox_new_from_env()
 *
 * Enters the finalize part in the calling process: no_new_privs,
 * capabilities, Landlock, seccomp, in that order. Irreversible. Must run
 * while the process has a single thread (capabilities and Landlock apply per
 * thread): otherwise -EBUSY at "threads", unless pal_sandbox_finalize_early()
 * ran those steps before any other thread was started (then only seccomp
 * is left, for every thread). A step that fails leaves the earlier ones in
 * place.
 *
 * Returns: 0, -EALREADY when this process already finalized a profile, or
 * a negative errno; see pal_sandbox_get_failed_step().
 */
PAL_API int pal_sandbox_finalize(PalSandbox *sandbox);

/**
 * pal_sandbox_finalize_early:
 * @sandbox: a profile
 *
 * Runs the per-thread steps of pal_sandbox_finalize() now: no_new_privs,
 * capabilities, Landlock. Like it, it must run while the process has a
 * single thread (-EBUSY at "threads"). Threads started afterwards inherit
 * these steps, so a later pal_sandbox_finalize() may run with several
 * threads: it adds only the seccomp filter, which covers every thread
 * (SECCOMP_FILTER_FLAG_TSYNC). For programs that start threads during
 * their setup (an I/O thread, GLib's workers) and finalize after it.
 *
 * Returns: 0, -EALREADY when this process already ran it or finalized, or
 * a negative errno; see pal_sandbox_get_failed_step().
 */
PAL_API int pal_sandbox_finalize_early(PalSandbox *sandbox);

/**
 * pal_sandbox_get_status:
 * @ret_status: (out): what the calling process got
 *
 * Thread-safe.
 */
PAL_API void pal_sandbox_get_status(PalSandboxStatus *ret_status);

PAL_END_DECLS
