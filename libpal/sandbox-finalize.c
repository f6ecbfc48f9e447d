/* SPDX-License-Identifier: MIT */
/*
 * pal_sandbox_finalize(): no_new_privs, capabilities, Landlock, seccomp, in
 * that order. Landlock goes through its raw syscalls, with the constants
 * defined here (Debian 12's linux-libc-dev stops at ABI 3); seccomp through
 * libseccomp when libpal is built with it.
 */
#include <dirent.h>
#include <link.h>
#include <limits.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <termios.h>
#include <unistd.h>

#ifdef PAL_HAVE_SECCOMP
#include <seccomp.h>
#endif

#include <pal/pal.h>

#include "sandbox-private.h"

/* Sanitizer runtimes need more at exit (LeakSanitizer: a ptrace()ing clone). */
#if defined(__SANITIZE_ADDRESS__)
#define PAL_SANDBOX_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PAL_SANDBOX_ASAN 1
#endif
#endif
#ifndef PAL_SANDBOX_ASAN
#define PAL_SANDBOX_ASAN 0
#endif
/* ThreadSanitizer symbolizes its reports in process: /proc/self/maps, the loaded files. */
#if defined(__SANITIZE_THREAD__)
#define PAL_SANDBOX_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define PAL_SANDBOX_TSAN 1
#endif
#endif
#ifndef PAL_SANDBOX_TSAN
#define PAL_SANDBOX_TSAN 0
#endif

/* ---- Landlock ---------------------------------------------------------- */

#ifndef __NR_landlock_create_ruleset
#define __NR_landlock_create_ruleset 444
#define __NR_landlock_add_rule 445
#define __NR_landlock_restrict_self 446
#endif

#define LL_CREATE_RULESET_VERSION (1U << 0)
#define LL_RULE_PATH_BENEATH 1

#define LL_FS_EXECUTE (1ULL << 0)
#define LL_FS_WRITE_FILE (1ULL << 1)
#define LL_FS_READ_FILE (1ULL << 2)
#define LL_FS_READ_DIR (1ULL << 3)
#define LL_FS_REMOVE_DIR (1ULL << 4)
#define LL_FS_REMOVE_FILE (1ULL << 5)
#define LL_FS_MAKE_CHAR (1ULL << 6)
#define LL_FS_MAKE_DIR (1ULL << 7)
#define LL_FS_MAKE_REG (1ULL << 8)
#define LL_FS_MAKE_SOCK (1ULL << 9)
#define LL_FS_MAKE_FIFO (1ULL << 10)
#define LL_FS_MAKE_BLOCK (1ULL << 11)
#define LL_FS_MAKE_SYM (1ULL << 12)
#define LL_FS_REFER (1ULL << 13)	/* ABI 2 */
#define LL_FS_TRUNCATE (1ULL << 14)	/* ABI 3 */
#define LL_FS_IOCTL_DEV (1ULL << 15)	/* ABI 5 */
#define LL_NET_BIND_TCP (1ULL << 0)	/* ABI 4 */
#define LL_NET_CONNECT_TCP (1ULL << 1)
#define LL_SCOPE_ABSTRACT_UNIX_SOCKET (1ULL << 0) /* ABI 6 */
#define LL_SCOPE_SIGNAL (1ULL << 1)

/* The newest ABI whose access rights this file knows (7 added only logging). */
#define LL_KNOWN_ABI 7

#define LL_FS_FILE (LL_FS_EXECUTE | LL_FS_WRITE_FILE | LL_FS_READ_FILE | LL_FS_TRUNCATE | \
		    LL_FS_IOCTL_DEV)

struct ll_ruleset_attr {
	uint64_t handled_access_fs;
	uint64_t handled_access_net; /* ABI 4 */
	uint64_t scoped;	     /* ABI 6 */
};

struct ll_path_beneath_attr {
	uint64_t allowed_access;
	int32_t parent_fd;
} __attribute__((packed));

/* The Landlock ABI of the running kernel, 0 when missing or disabled. */
static int landlock_abi(void)
{
	long abi = syscall(__NR_landlock_create_ruleset, NULL, 0UL, LL_CREATE_RULESET_VERSION);

	return abi < 0 ? 0 : (int)abi;
}

static uint64_t landlock_fs_rights(int abi)
{
	uint64_t rights = (LL_FS_MAKE_SYM << 1) - 1;

	if (abi >= 2)
		rights |= LL_FS_REFER;
	if (abi >= 3)
		rights |= LL_FS_TRUNCATE;
	if (abi >= 5)
		rights |= LL_FS_IOCTL_DEV;
	return rights;
}

static uint64_t landlock_access(unsigned access)
{
	uint64_t rights = 0;

	if (access & PAL_SANDBOX_FS_READ)
		rights |= LL_FS_READ_FILE | LL_FS_READ_DIR;
	if (access & PAL_SANDBOX_FS_WRITE)
		rights |= LL_FS_WRITE_FILE | LL_FS_TRUNCATE | LL_FS_REMOVE_DIR | LL_FS_REMOVE_FILE |
			  LL_FS_MAKE_CHAR | LL_FS_MAKE_DIR | LL_FS_MAKE_REG | LL_FS_MAKE_SOCK |
			  LL_FS_MAKE_FIFO | LL_FS_MAKE_BLOCK | LL_FS_MAKE_SYM | LL_FS_REFER |
			  LL_FS_IOCTL_DEV;
	if (access & PAL_SANDBOX_FS_EXECUTE)
		rights |= LL_FS_EXECUTE;
	return rights;
}

static int landlock_add_path(int ruleset, const struct sandbox_path *p, uint64_t handled)
{
	struct ll_path_beneath_attr attr;
	struct stat st;
	int fd, r = 0;

	fd = open(p->path, O_PATH | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		r = -errno;
		goto out;
	}
	attr.allowed_access = landlock_access(p->access) & handled;
	if (!S_ISDIR(st.st_mode))
		attr.allowed_access &= LL_FS_FILE;
	attr.parent_fd = fd;
	if (attr.allowed_access &&
	    syscall(__NR_landlock_add_rule, ruleset, LL_RULE_PATH_BENEATH, &attr, 0U) < 0)
		r = -errno;
out:
	close(fd);
	return r;
}

#if PAL_SANDBOX_TSAN
struct tsan_paths {
	int ruleset;
	uint64_t handled;
	int r;
};

/* Read access to one loaded object's file (the program's has no name here). */
static int tsan_add_object(struct dl_phdr_info *info, size_t size, void *data)
{
	struct tsan_paths *t = data;
	char exe[PATH_MAX];
	const char *path = info->dlpi_name;

	(void)size;
	if (!path || !path[0]) {
		ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

		if (n <= 0)
			return 0;
		exe[n] = '\0';
		path = exe;
	}
	if (path[0] != '/' || t->r < 0)
		return 0;
	/* A vanished file (ENOENT) is not worth failing the sandbox for. */
	int r = landlock_add_path(t->ruleset,
				  &(struct sandbox_path){ .path = (char *)path,
							  .access = PAL_SANDBOX_FS_READ },
				  t->handled);
	if (r < 0 && r != -ENOENT)
		t->r = r;
	return 0;
}
#endif

/* Returns the ABI enforced (0: none) or a negative errno. */
static int step_landlock(const PalSandbox *sandbox)
{
	struct ll_ruleset_attr attr = { 0 };
	size_t attr_size = sizeof(attr.handled_access_fs);
	int abi = landlock_abi(), ruleset, r = 0;

	if (abi > LL_KNOWN_ABI)
		abi = LL_KNOWN_ABI;
	if (abi < sandbox->landlock_min_abi || (abi == 0 && sandbox->landlock_min_abi > 0))
		return -EOPNOTSUPP;
	if (abi == 0)
		return 0; /* best effort: reported as landlock_abi 0 */

	attr.handled_access_fs = landlock_fs_rights(abi);
	if (abi >= 4) {
		/* Only AF_UNIX is for the sandbox; seccomp refuses the rest too. */
		attr.handled_access_net = LL_NET_BIND_TCP | LL_NET_CONNECT_TCP;
		attr_size = offsetof(struct ll_ruleset_attr, scoped);
	}
	if (abi >= 6) {
		/*
		 * No abstract unix sockets or signals outside the sandbox: a
		 * mesh host talks through the socket it inherited and
		 * receives fds over it.
		 */
		attr.scoped = LL_SCOPE_ABSTRACT_UNIX_SOCKET | LL_SCOPE_SIGNAL;
		attr_size = sizeof(attr);
	}

	ruleset = (int)syscall(__NR_landlock_create_ruleset, &attr, attr_size, 0U);
	if (ruleset < 0)
		return -errno;
	for (size_t i = 0; r == 0 && i < sandbox->n_paths; i++)
		r = landlock_add_path(ruleset, &sandbox->paths[i], attr.handled_access_fs);
#if PAL_SANDBOX_ASAN || PAL_SANDBOX_TSAN
	/*
	 * LeakSanitizer reads /proc/self/maps and the task list at exit;
	 * ThreadSanitizer reads /proc/self/maps to symbolize a report.
	 */
	if (r == 0)
		r = landlock_add_path(ruleset, &(struct sandbox_path){ .path = "/proc",
								 .access = PAL_SANDBOX_FS_READ },
				      attr.handled_access_fs);
#endif
#if PAL_SANDBOX_TSAN
	if (r == 0) {
		struct tsan_paths t = { ruleset, attr.handled_access_fs, 0 };

		dl_iterate_phdr(tsan_add_object, &t);
		r = t.r;
	}
#endif
	if (r == 0 && syscall(__NR_landlock_restrict_self, ruleset, 0U) < 0)
		r = -errno;
	close(ruleset);
	return r < 0 ? r : abi;
}

/* ---- capabilities ------------------------------------------------------ */

static int step_capabilities(void)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = { 0 };
	bool bounding_left = false;

	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0L, 0L, 0L) < 0 && errno != EINVAL)
		return -errno;

	for (unsigned long cap = 0; cap < 64; cap++) {
		int has = prctl(PR_CAPBSET_READ, cap, 0L, 0L, 0L);

		if (has < 0)
			break; /* past the last capability the kernel knows */
		if (has == 0 || prctl(PR_CAPBSET_DROP, cap, 0L, 0L, 0L) == 0)
			continue;
		if (errno != EPERM)
			return -errno;
		bounding_left = true; /* no CAP_SETPCAP */
		break;
	}

	if (syscall(SYS_capset, &hdr, data) < 0)
		return -errno;

	/* Without no_new_privs an exec could regain what the bounding set allows. */
	if (bounding_left && prctl(PR_GET_NO_NEW_PRIVS, 0L, 0L, 0L, 0L) != 1)
		return -EPERM;

	/* Check: nothing left. */
	if (syscall(SYS_capget, &hdr, data) < 0)
		return -errno;
	for (int i = 0; i < _LINUX_CAPABILITY_U32S_3; i++)
		if (data[i].effective || data[i].permitted || data[i].inheritable)
			return -EPERM;
	return 0;
}

/* ---- threads ----------------------------------------------------------- */

/* 0 when the calling process has a single thread, -EBUSY otherwise. */
static int step_threads(void)
{
	struct dirent *de;
	int n = 0;
	DIR *dir;

	dir = opendir("/proc/self/task");
	if (!dir)
		return -errno;
	while ((de = readdir(dir)))
		if (de->d_name[0] != '.')
			n++;
	closedir(dir);
	return n == 1 ? 0 : -EBUSY;
}

/* ---- seccomp ----------------------------------------------------------- */

#ifdef PAL_HAVE_SECCOMP

/* Allowed with any arguments (names this architecture lacks are skipped). */
static const char *const default_syscalls[] = {
	/* I/O on fds, the mesh socket included (SCM_RIGHTS) */
	"read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev",
	"preadv2", "pwritev2", "recvmsg", "sendmsg", "recvmmsg", "sendmmsg", "recvfrom",
	"sendto", "shutdown", "getsockopt", "setsockopt", "getsockname", "getpeername",
	"connect", "bind", "listen", "accept", "accept4", "close", "close_range", "dup", "dup2",
	"dup3", "fcntl", "fcntl64", "lseek", "_llseek", "fsync", "fdatasync", "pipe", "pipe2",
	"splice", "sendfile", "sendfile64",
	/* files (Landlock decides which) */
	"open", "openat", "openat2", "stat", "lstat", "fstat", "newfstatat", "fstatat64",
	"stat64", "lstat64", "fstat64", "statx", "statfs", "fstatfs", "statfs64", "fstatfs64",
	"access", "faccessat", "faccessat2", "readlink", "readlinkat", "getdents", "getdents64",
	"getcwd", "chdir", "fchdir", "mkdir", "mkdirat", "unlink", "unlinkat", "rename",
	"renameat", "renameat2", "rmdir", "truncate", "ftruncate", "ftruncate64", "fallocate",
	"umask", "utimensat",
	/* memory, memfds */
	"memfd_create", "mmap", "mmap2", "munmap", "mremap", "mprotect", "madvise", "brk",
	"msync", "mincore", "membarrier",
	/* waiting */
	"eventfd", "eventfd2", "poll", "ppoll", "select", "_newselect", "pselect6",
	"epoll_create", "epoll_create1", "epoll_ctl", "epoll_wait", "epoll_pwait",
	"epoll_pwait2", "futex", "futex_waitv", "set_robust_list", "get_robust_list",
	"timerfd_create", "timerfd_settime", "timerfd_gettime", "nanosleep", "clock_nanosleep",
	"pause", "ppoll_time64", "pselect6_time64", "futex_time64", "timerfd_settime64",
	"timerfd_gettime64", "clock_nanosleep_time64", "recvmmsg_time64",
	/* timers and time (alarm(), interval and POSIX timers of this process only) */
	"clock_gettime", "clock_getres", "gettimeofday", "time", "clock_gettime64",
	"clock_getres_time64", "alarm", "setitimer", "getitimer", "times", "timer_create",
	"timer_settime", "timer_gettime", "timer_getoverrun", "timer_delete",
	"timer_settime64", "timer_gettime64",
	/* threads (clone is below) */
	"rseq", "set_tid_address", "sched_yield", "sched_getaffinity", "sched_getattr",
	"sched_getparam", "sched_getscheduler", "sched_get_priority_min",
	"sched_get_priority_max", "getcpu", "gettid", "exit",
	/* GLib's thread pool copies scheduler settings to new threads by tid */
	"sched_setattr",
	/* signals */
	"rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sigreturn", "sigaltstack",
	"rt_sigtimedwait", "rt_sigtimedwait_time64", "rt_sigpending", "rt_sigsuspend",
	"sigsuspend", "sigpending", "sigprocmask", "sigaction", "signalfd", "signalfd4",
	"restart_syscall",
	/* process */
	"exit_group", "getpid", "getppid", "getuid", "geteuid", "getgid", "getegid", "getresuid",
	"getresgid", "getgroups", "getuid32", "geteuid32", "getgid32", "getegid32",
	"getresuid32", "getresgid32", "getgroups32", "getrlimit", "ugetrlimit", "getrusage",
	"uname", "sysinfo", "getrandom", "wait4", "waitid", "getpgrp", "getpgid", "getsid",
	"capget",
};

/* Allowed prctl() options; others kill. */
static const int default_prctls[] = {
	PR_SET_NAME, PR_GET_NAME, PR_GET_PDEATHSIG, PR_GET_DUMPABLE, PR_GET_NO_NEW_PRIVS,
	PR_CAPBSET_READ, PR_GET_SECCOMP, 0x53564d41 /* PR_SET_VMA */,
};

/* Allowed ioctl() requests; others kill. */
static const unsigned long default_ioctls[] = {
	TCGETS, TIOCGWINSZ, FIONREAD, FIONBIO, FIOCLEX, FIONCLEX,
};

static bool user_allowed(const PalSandbox *sandbox, const char *name)
{
	for (size_t i = 0; i < sandbox->n_syscalls; i++)
		if (strcmp(sandbox->syscalls[i], name) == 0)
			return true;
	return false;
}

/* Adds a rule unless the profile allows @name outright. */
static int add_rule(scmp_filter_ctx ctx, const PalSandbox *sandbox, const char *name,
		    uint32_t action, unsigned n_args, const struct scmp_arg_cmp *args)
{
	int nr = seccomp_syscall_resolve_name(name);

	if (user_allowed(sandbox, name))
		return 0;
	if (nr == __NR_SCMP_ERROR)
		return 0; /* not on this architecture */
	return seccomp_rule_add_array(ctx, action, nr, n_args, args);
}

static int build_filter(scmp_filter_ctx ctx, const PalSandbox *sandbox)
{
	const struct scmp_arg_cmp unix_only = SCMP_A0(SCMP_CMP_EQ, AF_UNIX);
	const struct scmp_arg_cmp not_unix = SCMP_A0(SCMP_CMP_NE, AF_UNIX);
	const struct scmp_arg_cmp thread = SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD);
	const struct scmp_arg_cmp self = SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)getpid());
	const struct scmp_arg_cmp sched_self = SCMP_A0(SCMP_CMP_EQ, 0);
	int r;

	for (size_t i = 0; i < sizeof(default_syscalls) / sizeof(default_syscalls[0]); i++) {
		int nr = seccomp_syscall_resolve_name(default_syscalls[i]);

		if (nr == __NR_SCMP_ERROR)
			continue;
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
		/* -EDOM/-EINVAL: a pseudo syscall this architecture does not have. */
		if (r < 0 && nr >= 0)
			return r;
	}

	/* Observable refusals rather than kills: tests and callers see them. */
	r = add_rule(ctx, sandbox, "execve", SCMP_ACT_ERRNO(EPERM), 0, NULL);
	if (r == 0)
		r = add_rule(ctx, sandbox, "execveat", SCMP_ACT_ERRNO(EPERM), 0, NULL);
	if (r == 0)
		r = add_rule(ctx, sandbox, "socket", SCMP_ACT_ALLOW, 1, &unix_only);
	if (r == 0)
		r = add_rule(ctx, sandbox, "socket", SCMP_ACT_ERRNO(EAFNOSUPPORT), 1, &not_unix);
	if (r == 0)
		r = add_rule(ctx, sandbox, "socketpair", SCMP_ACT_ALLOW, 1, &unix_only);
	if (r == 0)
		r = add_rule(ctx, sandbox, "socketpair", SCMP_ACT_ERRNO(EAFNOSUPPORT), 1, &not_unix);
	/* glibc falls back to clone() when clone3() says ENOSYS. */
	if (r == 0)
		r = add_rule(ctx, sandbox, "clone3", SCMP_ACT_ERRNO(ENOSYS), 0, NULL);
	if (r == 0 && !PAL_SANDBOX_ASAN)
		r = add_rule(ctx, sandbox, "clone", SCMP_ACT_ALLOW, 1, &thread);
	/* Signals to this process only (raise(), abort(), pthread_kill()). */
	if (r == 0)
		r = add_rule(ctx, sandbox, "kill", SCMP_ACT_ALLOW, 1, &self);
	if (r == 0)
		r = add_rule(ctx, sandbox, "tgkill", SCMP_ACT_ALLOW, 1, &self);
	/* Its own limits only (pid 0). */
	if (r == 0)
		r = add_rule(ctx, sandbox, "prlimit64", SCMP_ACT_ALLOW, 1, &sched_self);
	for (size_t i = 0; r == 0 && !PAL_SANDBOX_ASAN &&
			   i < sizeof(default_prctls) / sizeof(default_prctls[0]); i++) {
		const struct scmp_arg_cmp opt = SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)default_prctls[i]);

		r = add_rule(ctx, sandbox, "prctl", SCMP_ACT_ALLOW, 1, &opt);
	}
	/* Reading the ambient set: nothing can be raised into it with no capabilities. */
	if (r == 0 && !PAL_SANDBOX_ASAN) {
		const struct scmp_arg_cmp ambient[] = { SCMP_A0(SCMP_CMP_EQ, PR_CAP_AMBIENT),
							SCMP_A1(SCMP_CMP_EQ, PR_CAP_AMBIENT_IS_SET) };

		r = add_rule(ctx, sandbox, "prctl", SCMP_ACT_ALLOW, 2, ambient);
	}
	for (size_t i = 0; r == 0 && i < sizeof(default_ioctls) / sizeof(default_ioctls[0]); i++) {
		const struct scmp_arg_cmp req =
			SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffU, (scmp_datum_t)default_ioctls[i]);

		r = add_rule(ctx, sandbox, "ioctl", SCMP_ACT_ALLOW, 1, &req);
	}
#if PAL_SANDBOX_ASAN
	/* LeakSanitizer stops the world at exit: a clone() that ptrace()s. */
	static const char *const asan_syscalls[] = { "clone", "ptrace", "prctl", "sched_yield",
						     "process_vm_readv" };

	for (size_t i = 0; r == 0 && i < sizeof(asan_syscalls) / sizeof(asan_syscalls[0]); i++)
		r = add_rule(ctx, sandbox, asan_syscalls[i], SCMP_ACT_ALLOW, 0, NULL);
#endif
	if (r < 0)
		return r;

	/* What the profile adds, with any arguments. */
	for (size_t i = 0; i < sandbox->n_syscalls; i++) {
		int nr = seccomp_syscall_resolve_name(sandbox->syscalls[i]);

		if (nr == __NR_SCMP_ERROR)
			return -EINVAL;
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
		if (r < 0)
			return r;
	}
	return 0;
}

static int step_seccomp(const PalSandbox *sandbox)
{
	scmp_filter_ctx ctx;
	int r;

	ctx = seccomp_init(sandbox->seccomp == PAL_SANDBOX_SECCOMP_LOG ? SCMP_ACT_LOG
								      : SCMP_ACT_KILL_PROCESS);
	if (!ctx)
		return -ENOMEM;
	/* no_new_privs is the profile's decision, made in its own step. */
	r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0);
	if (r == 0)
		r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1);
	if (r == 0)
		r = build_filter(ctx, sandbox);
	if (r == 0)
		r = seccomp_load(ctx);
	seccomp_release(ctx);
	return r;
}

#else

static int step_seccomp(const PalSandbox *sandbox)
{
	(void)sandbox;
	return -EOPNOTSUPP;
}

#endif

/* ---- finalize ---------------------------------------------------------- */

static int fail(PalSandbox *sandbox, PalSandboxStatus *st, const char *step, int r)
{
	sandbox->failed_step = step;
	sandbox_status_update(st);
	return r;
}

/* Set once pal_sandbox_finalize_early() has run the per-thread steps. */
static bool per_thread_done;

/* The per-thread steps; the caller checked that there is one thread. */
static int finalize_per_thread(PalSandbox *sandbox, PalSandboxStatus *st)
{
	int r;

	if (sandbox->no_new_privs) {
		if (prctl(PR_SET_NO_NEW_PRIVS, 1L, 0L, 0L, 0L) < 0)
			return fail(sandbox, st, "no_new_privs", -errno);
		st->no_new_privs = true;
	}

	if (sandbox->drop_capabilities) {
		r = step_capabilities();
		if (r < 0)
			return fail(sandbox, st, "capabilities", r);
		st->capabilities_dropped = true;
	}

	if (sandbox->landlock) {
		r = step_landlock(sandbox);
		if (r < 0)
			return fail(sandbox, st, "landlock", r);
		st->landlock_abi = r;
	}

	__atomic_store_n(&per_thread_done, true, __ATOMIC_RELEASE);
	sandbox_status_update(st);
	return 0;
}

PAL_API int pal_sandbox_finalize_early(PalSandbox *sandbox)
{
	PalSandboxStatus st;
	int r;

	if (!sandbox)
		return -EINVAL;
	sandbox->failed_step = NULL;
	pal_sandbox_get_status(&st);
	if (st.finalized || __atomic_load_n(&per_thread_done, __ATOMIC_ACQUIRE))
		return fail(sandbox, &st, "finalize", -EALREADY);

	r = step_threads();
	if (r < 0)
		return fail(sandbox, &st, "threads", r);
	return finalize_per_thread(sandbox, &st);
}

PAL_API int pal_sandbox_finalize(PalSandbox *sandbox)
{
	PalSandboxStatus st;
	int r;

	if (!sandbox)
		return -EINVAL;
	sandbox->failed_step = NULL;
	pal_sandbox_get_status(&st);
	if (st.finalized)
		return fail(sandbox, &st, "finalize", -EALREADY);

	/*
	 * After pal_sandbox_finalize_early() every thread descends from one
	 * that ran the per-thread steps, and inherited them.
	 */
	if (!__atomic_load_n(&per_thread_done, __ATOMIC_ACQUIRE)) {
		r = step_threads();
		if (r < 0)
			return fail(sandbox, &st, "threads", r);
		r = finalize_per_thread(sandbox, &st);
		if (r < 0)
			return r;
	}

	/* TSYNC: one filter for every thread, or none. */
	if (sandbox->seccomp != PAL_SANDBOX_SECCOMP_OFF) {
		r = step_seccomp(sandbox);
		if (r < 0)
			return fail(sandbox, &st, "seccomp", r);
		st.seccomp = sandbox->seccomp;
	}

	st.finalized = true;
	sandbox_status_update(&st);
	return 0;
}
