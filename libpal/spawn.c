/* SPDX-License-Identifier: MIT */
/*
 * Process spawning: the PalSpawn builder and the PalChild handle.
 *
 * pal_spawn_run() prepares everything in the parent: argv, envp, the list of
 * fd operations (stdio included), the sorted list of fds the child keeps and
 * a stack. It then clone()s the child onto that stack. The child runs
 * spawn_child_main(), which must be async-signal-safe: in vfork mode it
 * shares the parent's memory (and the parent thread's TLS, errno included)
 * while the parent thread is suspended, and in either mode other threads of
 * the parent may have held locks (malloc, stdio) at the time of the clone.
 * So the child allocates nothing, takes no lock, and writes only to its own
 * stack and to the scratch fields the parent set aside for it.
 *
 * Errors in the child travel back through a close-on-exec pipe: the child
 * writes a struct spawn_status and exits with 127; a successful exec closes
 * the pipe, and the parent reads end-of-file.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <pal/pal.h>

#include "sandbox-private.h"
#include "spawn-private.h"

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif

/* The 32-bit uid/gid calls where the plain ones are the old 16-bit ABI. */
#ifdef SYS_setresuid32
#define PAL_SYS_setresuid SYS_setresuid32
#define PAL_SYS_setresgid SYS_setresgid32
#define PAL_SYS_setgroups SYS_setgroups32
#else
#define PAL_SYS_setresuid SYS_setresuid
#define PAL_SYS_setresgid SYS_setresgid
#define PAL_SYS_setgroups SYS_setgroups
#endif

/*
 * Marks code that runs in the child. Sanitizer instrumentation would run on
 * a stack the sanitizer runtime does not know and, in vfork mode, poison
 * shadow memory shared with the parent; keep it out.
 */
#define CHILD_CODE __attribute__((no_sanitize("address", "undefined")))

/*
 * ThreadSanitizer cannot follow a child that shares the parent's memory: the
 * child would run on the suspended parent thread's runtime state (its shadow
 * stack, its clocks) and race with the parent's other threads on it. A build
 * with -fsanitize=thread therefore starts every child fork-like.
 */
#if defined(__SANITIZE_THREAD__)
#define PAL_SPAWN_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define PAL_SPAWN_TSAN 1
#endif
#endif
#ifndef PAL_SPAWN_TSAN
#define PAL_SPAWN_TSAN 0
#endif

/* Least stack the child gets; execvpe() needs up to PATH_MAX + NAME_MAX. */
#define SPAWN_STACK_MIN (64 * 1024)

extern char **environ;

enum spawn_step {
	STEP_SIGNALS,
	STEP_SETSID,
	STEP_DUP_FD,
	STEP_CLOSE_FDS,
	STEP_HOOK,
	STEP_NAMESPACES,
	STEP_USERNS_MAP,
	STEP_PRIVATE_TMP,
	STEP_RLIMIT,
	STEP_BOUNDING_SET,
	STEP_SETGROUPS,
	STEP_SETRESGID,
	STEP_SETRESUID,
	STEP_PDEATHSIG,
	STEP_EXEC,
	STEP_DUMPABLE,
	_STEP_MAX,
};

static const char *const step_names[_STEP_MAX] = {
	[STEP_SIGNALS] = "signals",
	[STEP_SETSID] = "setsid",
	[STEP_PDEATHSIG] = "parent_death_signal",
	[STEP_DUP_FD] = "dup_fd",
	[STEP_CLOSE_FDS] = "close_fds",
	[STEP_HOOK] = "hook",
	[STEP_NAMESPACES] = "namespaces",
	[STEP_USERNS_MAP] = "userns_map",
	[STEP_PRIVATE_TMP] = "private_tmp",
	[STEP_RLIMIT] = "rlimit",
	[STEP_BOUNDING_SET] = "bounding_set",
	[STEP_SETGROUPS] = "setgroups",
	[STEP_SETRESGID] = "setresgid",
	[STEP_SETRESUID] = "setresuid",
	[STEP_EXEC] = "exec",
	[STEP_DUMPABLE] = "dumpable",
};

/* What a failing child writes to the status pipe. */
struct spawn_status {
	int err;
	int step;
};

struct spawn_env_op {
	char *key;
	char *value; /* NULL to unset */
};

struct spawn_fd_map {
	int src;
	int target;
};

struct spawn_hook {
	PalSpawnStage stage;
	PalSpawnHookFunc func;
	void *user_data;
};

struct PalSpawn {
	char *program;
	char *arg0;
	char **args;
	size_t n_args;

	struct spawn_env_op *env_ops;
	size_t n_env_ops;
	bool env_clear;

	PalStdio stdio_mode[3];
	int stdio_fd[3];

	struct spawn_fd_map *fd_maps;
	size_t n_fd_maps;

	struct spawn_hook *hooks;
	size_t n_hooks;

	bool close_other_fds;
	bool setsid;
	bool vfork;
	int pdeathsig;
	bool has_uid;
	bool has_gid;
	uid_t uid;
	gid_t gid;

	PalSandbox *sandbox;
	struct spawn_sandbox sandbox_spec;

	const char *failed_step;
};

struct PalChild {
	pid_t pid;
	int pidfd;
	bool reaped;
	int status;
};

/* One fd operation as the child performs it. */
struct spawn_op {
	int src;
	int target;
	int child_src; /* scratch: the child's copy of src after pass 1 */
};

/* Everything the child reads; prepared by the parent. */
struct spawn_ctx {
	const char *program;
	char **argv;
	char **envp;
	bool search_path;

	struct spawn_op *ops;
	size_t n_ops;
	int max_target; /* -1 without ops */
	const int *keep; /* sorted targets >= 3 */
	size_t n_keep;
	bool close_other_fds;

	bool setsid;
	int pdeathsig;
	pid_t parent_pid;
	bool has_uid;
	bool has_gid;
	uid_t uid;
	gid_t gid;

	const struct spawn_hook *hooks;
	size_t n_hooks;

	/* The sandbox's spawn-time part, or NULL. */
	const struct spawn_sandbox *sandbox;
	int granted_ns; /* CLONE_NEW* flags of this attempt */
	uid_t map_uid; /* the spawner's euid and egid, for the user ns maps */
	gid_t map_gid;

	int status_fd;
	int status_read_fd; /* the parent's end, closed first thing */
};

/* Parent-side allocations of one pal_spawn_run(). */
struct spawn_prep {
	char **argv;
	char **envp;
	char **env_strings;
	size_t n_env_strings;
	struct spawn_op *ops;
	int *keep;
	int null_fd;
	void *stack;
	size_t stack_size;
	char *report_slot; /* 8 hex digits in envp: the granted clone flags */
};

/* Grows *@array to hold @n + 1 elements of @size bytes. */
static int grow(void *array, size_t n, size_t size)
{
	void **p = array;
	void *q;

	if (n >= SIZE_MAX / size - 1)
		return -ENOMEM;
	q = realloc(*p, (n + 1) * size);
	if (!q)
		return -ENOMEM;
	*p = q;
	return 0;
}

static bool env_key_valid(const char *key)
{
	return key && key[0] != '\0' && !strchr(key, '=');
}

static void env_ops_clear(PalSpawn *spawn)
{
	for (size_t i = 0; i < spawn->n_env_ops; i++) {
		free(spawn->env_ops[i].key);
		free(spawn->env_ops[i].value);
	}
	free(spawn->env_ops);
	spawn->env_ops = NULL;
	spawn->n_env_ops = 0;
}

PAL_API PalSpawn *pal_spawn_new(const char *program)
{
	PalSpawn *spawn;

	if (!program || program[0] == '\0') {
		errno = EINVAL;
		return NULL;
	}

	spawn = calloc(1, sizeof(*spawn));
	if (!spawn)
		return NULL;
	spawn->program = strdup(program);
	if (!spawn->program) {
		free(spawn);
		errno = ENOMEM;
		return NULL;
	}
	for (int i = 0; i < 3; i++) {
		spawn->stdio_mode[i] = PAL_STDIO_INHERIT;
		spawn->stdio_fd[i] = -1;
	}
	spawn->close_other_fds = true;
	spawn->vfork = true;
	return spawn;
}

PAL_API PalSpawn *pal_spawn_free(PalSpawn *spawn)
{
	if (!spawn)
		return NULL;
	free(spawn->program);
	free(spawn->arg0);
	for (size_t i = 0; i < spawn->n_args; i++)
		free(spawn->args[i]);
	free(spawn->args);
	env_ops_clear(spawn);
	free(spawn->fd_maps);
	free(spawn->hooks);
	pal_sandbox_unref(spawn->sandbox);
	free(spawn);
	return NULL;
}

PAL_API int pal_spawn_set_arg0(PalSpawn *spawn, const char *arg0)
{
	char *copy;

	if (!spawn || !arg0)
		return -EINVAL;
	copy = strdup(arg0);
	if (!copy)
		return -ENOMEM;
	free(spawn->arg0);
	spawn->arg0 = copy;
	return 0;
}

PAL_API int pal_spawn_add_arg(PalSpawn *spawn, const char *arg)
{
	const char *args[] = { arg, NULL };

	if (!arg)
		return -EINVAL;
	return pal_spawn_add_args(spawn, args);
}

PAL_API int pal_spawn_add_args(PalSpawn *spawn, const char *const *args)
{
	size_t n = 0;
	char **p;

	if (!spawn || !args)
		return -EINVAL;
	while (args[n])
		n++;
	if (n == 0)
		return 0;
	if (n > SIZE_MAX / sizeof(char *) - spawn->n_args - 1)
		return -ENOMEM;

	p = realloc(spawn->args, (spawn->n_args + n) * sizeof(char *));
	if (!p)
		return -ENOMEM;
	spawn->args = p;

	/* All or nothing: copy everything before committing. */
	for (size_t i = 0; i < n; i++) {
		p[spawn->n_args + i] = strdup(args[i]);
		if (!p[spawn->n_args + i]) {
			while (i-- > 0)
				free(p[spawn->n_args + i]);
			return -ENOMEM;
		}
	}
	spawn->n_args += n;
	return 0;
}

static int env_op_add(PalSpawn *spawn, const char *key, const char *value)
{
	struct spawn_env_op op = { 0 };
	int r;

	if (!spawn || !env_key_valid(key))
		return -EINVAL;

	op.key = strdup(key);
	if (!op.key)
		return -ENOMEM;
	if (value) {
		op.value = strdup(value);
		if (!op.value) {
			free(op.key);
			return -ENOMEM;
		}
	}

	r = grow(&spawn->env_ops, spawn->n_env_ops, sizeof(op));
	if (r < 0) {
		free(op.key);
		free(op.value);
		return r;
	}
	spawn->env_ops[spawn->n_env_ops++] = op;
	return 0;
}

PAL_API int pal_spawn_env_set(PalSpawn *spawn, const char *key, const char *value)
{
	if (!value)
		return -EINVAL;
	return env_op_add(spawn, key, value);
}

PAL_API int pal_spawn_env_unset(PalSpawn *spawn, const char *key)
{
	return env_op_add(spawn, key, NULL);
}

PAL_API int pal_spawn_env_clear(PalSpawn *spawn)
{
	if (!spawn)
		return -EINVAL;
	env_ops_clear(spawn);
	spawn->env_clear = true;
	return 0;
}

static int set_stdio(PalSpawn *spawn, int target, PalStdio mode, int fd)
{
	if (!spawn)
		return -EINVAL;
	switch (mode) {
	case PAL_STDIO_INHERIT:
	case PAL_STDIO_NULL:
		fd = -1;
		break;
	case PAL_STDIO_FD:
		if (fd < 0)
			return -EBADF;
		break;
	default:
		return -EINVAL;
	}
	spawn->stdio_mode[target] = mode;
	spawn->stdio_fd[target] = fd;
	return 0;
}

PAL_API int pal_spawn_set_stdin(PalSpawn *spawn, PalStdio mode, int fd)
{
	return set_stdio(spawn, STDIN_FILENO, mode, fd);
}

PAL_API int pal_spawn_set_stdout(PalSpawn *spawn, PalStdio mode, int fd)
{
	return set_stdio(spawn, STDOUT_FILENO, mode, fd);
}

PAL_API int pal_spawn_set_stderr(PalSpawn *spawn, PalStdio mode, int fd)
{
	return set_stdio(spawn, STDERR_FILENO, mode, fd);
}

PAL_API int pal_spawn_dup_fd(PalSpawn *spawn, int src, int target)
{
	int r;

	if (!spawn || target < 0 || target == INT_MAX)
		return -EINVAL;
	if (src < 0)
		return -EBADF;

	for (size_t i = 0; i < spawn->n_fd_maps; i++) {
		if (spawn->fd_maps[i].target == target) {
			spawn->fd_maps[i].src = src;
			return 0;
		}
	}

	r = grow(&spawn->fd_maps, spawn->n_fd_maps, sizeof(struct spawn_fd_map));
	if (r < 0)
		return r;
	spawn->fd_maps[spawn->n_fd_maps++] = (struct spawn_fd_map){ .src = src, .target = target };
	return 0;
}

PAL_API int pal_spawn_set_close_other_fds(PalSpawn *spawn, bool close_others)
{
	if (!spawn)
		return -EINVAL;
	spawn->close_other_fds = close_others;
	return 0;
}

PAL_API int pal_spawn_set_setsid(PalSpawn *spawn, bool setsid)
{
	if (!spawn)
		return -EINVAL;
	spawn->setsid = setsid;
	return 0;
}

PAL_API int pal_spawn_set_parent_death_signal(PalSpawn *spawn, int signal)
{
	if (!spawn || signal < 0 || signal >= _NSIG)
		return -EINVAL;
	spawn->pdeathsig = signal;
	return 0;
}

PAL_API int pal_spawn_set_uid(PalSpawn *spawn, uid_t uid)
{
	if (!spawn)
		return -EINVAL;
	spawn->has_uid = true;
	spawn->uid = uid;
	return 0;
}

PAL_API int pal_spawn_set_gid(PalSpawn *spawn, gid_t gid)
{
	if (!spawn)
		return -EINVAL;
	spawn->has_gid = true;
	spawn->gid = gid;
	return 0;
}

PAL_API int pal_spawn_set_vfork(PalSpawn *spawn, bool vfork)
{
	if (!spawn)
		return -EINVAL;
	spawn->vfork = vfork;
	return 0;
}

PAL_API int pal_spawn_add_hook(PalSpawn *spawn, PalSpawnStage stage, PalSpawnHookFunc func,
			       void *user_data)
{
	int r;

	if (!spawn || !func)
		return -EINVAL;
	if (stage != PAL_SPAWN_STAGE_BEFORE_CREDENTIALS && stage != PAL_SPAWN_STAGE_BEFORE_EXEC)
		return -EINVAL;

	r = grow(&spawn->hooks, spawn->n_hooks, sizeof(struct spawn_hook));
	if (r < 0)
		return r;
	spawn->hooks[spawn->n_hooks++] = (struct spawn_hook){
		.stage = stage,
		.func = func,
		.user_data = user_data,
	};
	return 0;
}

/* Whether @path, made absolute and with symlinks resolved where it exists, is /tmp or below. */
static bool path_under_tmp(const char *path)
{
	char *real = realpath(path, NULL);
	const char *p = real ? real : path;
	bool under = strncmp(p, "/tmp", 4) == 0 && (p[4] == '\0' || p[4] == '/');

	free(real);
	return under;
}

bool spawn_loads_from_tmp(const PalSpawn *spawn)
{
	const char *lib_path = NULL;
	bool found = false;

	if (strchr(spawn->program, '/')) {
		if (path_under_tmp(spawn->program))
			return true;
	} else {
		/* execvpe's search, with the parent's PATH (the child's default). */
		const char *path = getenv("PATH");

		for (const char *dir = path ? path : "/bin:/usr/bin"; *dir && !found;) {
			size_t len = strcspn(dir, ":");
			char *cand = malloc(len + strlen(spawn->program) + 2);

			if (!cand)
				return false;
			memcpy(cand, dir, len);
			cand[len] = '/';
			strcpy(cand + len + 1, spawn->program);
			if (len > 0 && access(cand, X_OK) == 0) {
				found = true;
				if (path_under_tmp(cand)) {
					free(cand);
					return true;
				}
			}
			free(cand);
			dir += len + (dir[len] == ':');
		}
	}

	/* The child's LD_LIBRARY_PATH: the last set or unset wins, else the parent's. */
	if (!spawn->env_clear)
		lib_path = getenv("LD_LIBRARY_PATH");
	for (size_t i = 0; i < spawn->n_env_ops; i++)
		if (strcmp(spawn->env_ops[i].key, "LD_LIBRARY_PATH") == 0)
			lib_path = spawn->env_ops[i].value;
	for (const char *dir = lib_path; dir && *dir;) {
		size_t len = strcspn(dir, ":");
		char *one = strndup(dir, len);

		if (!one)
			return false;
		found = len > 0 && path_under_tmp(one);
		free(one);
		if (found)
			return true;
		dir += len + (dir[len] == ':');
	}
	return false;
}

int spawn_set_sandbox(PalSpawn *spawn, PalSandbox *sandbox, const struct spawn_sandbox *spec)
{
	pal_sandbox_unref(spawn->sandbox);
	spawn->sandbox = pal_sandbox_ref(sandbox);
	if (sandbox)
		spawn->sandbox_spec = *spec;
	return 0;
}

PAL_API const char *pal_spawn_get_failed_step(const PalSpawn *spawn)
{
	return spawn ? spawn->failed_step : NULL;
}

/* ---- the child --------------------------------------------------------- */

/* Reports @err at @step to the parent and exits; never returns. */
CHILD_CODE static _Noreturn void child_fail(int status_fd, int step, int err)
{
	struct spawn_status st = {
		.err = err > 0 ? err : EIO,
		.step = step,
	};
	long n;

	do {
		n = syscall(SYS_write, status_fd, &st, sizeof(st));
	} while (n < 0 && errno == EINTR);

	for (;;)
		syscall(SYS_exit_group, 127);
}

/*
 * Resets every caught signal to SIG_DFL, like posix_spawn(): in vfork mode
 * a parent's handler would otherwise run on the parent's memory. Ignored
 * signals stay ignored (exec keeps them so). Then the mask, which the parent
 * blocked entirely around clone(), is cleared.
 */
CHILD_CODE static int child_reset_signals(void)
{
	struct sigaction sa;
	sigset_t empty;

	for (int sig = 1; sig < _NSIG; sig++) {
		/* Fails for SIGKILL, SIGSTOP and glibc's internal signals. */
		if (sigaction(sig, NULL, &sa) < 0)
			continue;
		if (sa.sa_handler == SIG_DFL || sa.sa_handler == SIG_IGN)
			continue;
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = SIG_DFL;
		if (sigaction(sig, &sa, NULL) < 0)
			return -errno;
	}

	sigemptyset(&empty);
	if (sigprocmask(SIG_SETMASK, &empty, NULL) < 0)
		return -errno;
	return 0;
}

/*
 * Applies the fd operations in two passes. Pass 1 copies every source that
 * a later dup2() could clobber (any source numbered at or below the highest
 * target) above all targets, as does the status pipe; pass 2 dup2()s each
 * source onto its target, or only clears FD_CLOEXEC when src == target.
 */
CHILD_CODE static int child_remap_fds(struct spawn_ctx *ctx, int *status_fd)
{
	if (ctx->n_ops == 0)
		return 0;

	if (*status_fd <= ctx->max_target) {
		int fd = fcntl(*status_fd, F_DUPFD_CLOEXEC, ctx->max_target + 1);

		if (fd < 0)
			return -errno;
		*status_fd = fd;
	}

	for (size_t i = 0; i < ctx->n_ops; i++) {
		struct spawn_op *op = &ctx->ops[i];

		op->child_src = op->src;
		if (op->src != op->target && op->src <= ctx->max_target) {
			int fd = fcntl(op->src, F_DUPFD_CLOEXEC, ctx->max_target + 1);

			if (fd < 0)
				return -errno;
			op->child_src = fd;
		}
	}

	for (size_t i = 0; i < ctx->n_ops; i++) {
		struct spawn_op *op = &ctx->ops[i];

		if (op->child_src == op->target) {
			int flags = fcntl(op->target, F_GETFD);

			if (flags < 0)
				return -errno;
			if ((flags & FD_CLOEXEC) && fcntl(op->target, F_SETFD, flags & ~FD_CLOEXEC) < 0)
				return -errno;
		} else if (dup2(op->child_src, op->target) < 0) {
			return -errno;
		}
	}
	return 0;
}

/* Closes the fds in [@first, @last] except @skip. */
CHILD_CODE static int child_close_range(unsigned int first, unsigned int last, int skip)
{
	struct rlimit rl;
	unsigned int end;

	if (first > last)
		return 0;
	if (skip >= 0 && (unsigned int)skip >= first && (unsigned int)skip <= last) {
		int r = 0;

		if ((unsigned int)skip > first)
			r = child_close_range(first, (unsigned int)skip - 1, -1);
		if (r == 0 && (unsigned int)skip < last)
			r = child_close_range((unsigned int)skip + 1, last, -1);
		return r;
	}

	if (syscall(SYS_close_range, first, last, 0) == 0)
		return 0;
	if (errno != ENOSYS && errno != EPERM)
		return -errno;

	/* No close_range() (before Linux 5.9, or filtered): close one by one. */
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return -errno;
	end = rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > INT_MAX ? INT_MAX : (unsigned int)rl.rlim_cur;
	for (unsigned int fd = first; fd <= last && fd < end; fd++)
		syscall(SYS_close, fd);
	return 0;
}

/* Closes every fd >= 3 that is neither a target nor @status_fd. */
CHILD_CODE static int child_close_other_fds(const struct spawn_ctx *ctx, int status_fd)
{
	unsigned int next = 3;
	int r;

	for (size_t i = 0; i < ctx->n_keep; i++) {
		unsigned int keep = (unsigned int)ctx->keep[i];

		if (keep > next) {
			r = child_close_range(next, keep - 1, status_fd);
			if (r < 0)
				return r;
		}
		next = keep + 1;
	}
	return child_close_range(next, ~0U, status_fd);
}

CHILD_CODE static void child_run_hooks(const struct spawn_ctx *ctx, PalSpawnStage stage,
				       int status_fd)
{
	for (size_t i = 0; i < ctx->n_hooks; i++) {
		int r;

		if (ctx->hooks[i].stage != stage)
			continue;
		r = ctx->hooks[i].func(ctx->hooks[i].user_data);
		if (r < 0)
			child_fail(status_fd, STEP_HOOK, -r);
	}
}

CHILD_CODE static bool child_has_hooks(const struct spawn_ctx *ctx, PalSpawnStage stage)
{
	for (size_t i = 0; i < ctx->n_hooks; i++)
		if (ctx->hooks[i].stage == stage)
			return true;
	return false;
}

/*
 * Arms the parent-death signal, then checks that the parent is still the
 * one that spawned us: if it died before the signal was armed, nobody will
 * send it, so the spawn fails here instead. In a new PID namespace
 * getppid() is 0 (the parent is outside it); there the parent is alive as
 * long as the read end of the status pipe, which only it holds, is open:
 * the write end polls POLLERR once it is closed.
 */
CHILD_CODE static void child_arm_pdeathsig(const struct spawn_ctx *ctx, int status_fd)
{
	if (syscall(SYS_prctl, PR_SET_PDEATHSIG, (unsigned long)ctx->pdeathsig, 0UL, 0UL, 0UL) < 0)
		child_fail(status_fd, STEP_PDEATHSIG, errno);
	if (ctx->granted_ns & CLONE_NEWPID) {
		struct pollfd pfd = { .fd = status_fd, .events = POLLOUT };

		if (syscall(SYS_ppoll, &pfd, 1UL, &(struct timespec){ 0 }, NULL, 0UL) < 0)
			child_fail(status_fd, STEP_PDEATHSIG, errno);
		if (pfd.revents & POLLERR)
			child_fail(status_fd, STEP_PDEATHSIG, ESRCH);
	} else if (syscall(SYS_getppid) != ctx->parent_pid) {
		child_fail(status_fd, STEP_PDEATHSIG, ESRCH);
	}
}

/* Writes @v in decimal at @p; returns the end. */
CHILD_CODE static char *child_fmt_uint(char *p, unsigned long v)
{
	char tmp[24];
	size_t n = 0;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n > 0)
		*p++ = tmp[--n];
	return p;
}

CHILD_CODE static int child_write_file(const char *path, const char *data, size_t len)
{
	long fd = syscall(SYS_openat, AT_FDCWD, path, O_WRONLY | O_CLOEXEC);
	long n;
	int err;

	if (fd < 0)
		return -errno;
	do {
		n = syscall(SYS_write, (int)fd, data, len);
	} while (n < 0 && errno == EINTR);
	err = n < 0 ? errno : (size_t)n != len ? EIO : 0;
	syscall(SYS_close, (int)fd);
	return -err;
}

/* "ID ID 1": the only mapping an unprivileged writer may set up. */
CHILD_CODE static int child_write_id_map(const char *path, unsigned long id)
{
	char buf[64], *p = buf;

	p = child_fmt_uint(p, id);
	*p++ = ' ';
	p = child_fmt_uint(p, id);
	*p++ = ' ';
	*p++ = '1';
	*p++ = '\n';
	return child_write_file(path, buf, (size_t)(p - buf));
}

/*
 * The sandbox's spawn-time part, after fd setup and before the
 * credentials: in a new user namespace the child has every capability
 * there but is mapped to nothing, so the maps come first (setgroups denied:
 * required for an unprivileged gid_map); then the mounts, the rlimits and
 * the bounding set (while CAP_SETPCAP is still there).
 */
CHILD_CODE static void child_sandbox(const struct spawn_ctx *ctx, int status_fd)
{
	const struct spawn_sandbox *sb = ctx->sandbox;
	int r;

	if (ctx->granted_ns & CLONE_NEWUSER) {
		r = child_write_file("/proc/self/setgroups", "deny", 4);
		if (r == -ENOENT) /* before Linux 3.19 */
			r = 0;
		if (r == 0)
			r = child_write_id_map("/proc/self/uid_map", ctx->map_uid);
		if (r == 0)
			r = child_write_id_map("/proc/self/gid_map", ctx->map_gid);
		if (r < 0)
			child_fail(status_fd, STEP_USERNS_MAP, -r);
	}

	if (ctx->granted_ns & CLONE_NEWNS) {
		/* Nothing mounted here propagates back to the parent's namespace. */
		if (syscall(SYS_mount, NULL, "/", NULL, (unsigned long)(MS_REC | MS_SLAVE), NULL) < 0)
			child_fail(status_fd, STEP_PRIVATE_TMP, errno);
		if (sb->private_tmp &&
		    syscall(SYS_mount, "tmpfs", "/tmp", "tmpfs", (unsigned long)(MS_NOSUID | MS_NODEV),
			    "mode=1777") < 0)
			child_fail(status_fd, STEP_PRIVATE_TMP, errno);
		/*
		 * A /proc of the new PID namespace, so that pids in it match
		 * getpid() (LeakSanitizer, for one, ptrace()s the tids it
		 * lists). Best effort: the kernel refuses it in a user
		 * namespace when parts of /proc are hidden by overmounts (in
		 * containers); the parent's /proc then stays.
		 */
		if (ctx->granted_ns & CLONE_NEWPID)
			syscall(SYS_mount, "proc", "/proc", "proc",
				(unsigned long)(MS_NOSUID | MS_NODEV | MS_NOEXEC), NULL);
	}

	for (size_t i = 0; i < sb->n_rlimits; i++)
		if (syscall(SYS_prlimit64, 0, sb->rlimits[i].resource, &sb->rlimits[i].limit, NULL) < 0)
			child_fail(status_fd, STEP_RLIMIT, errno);

	if (sb->drop_bounding_set) {
		for (unsigned long cap = 0; cap < 64; cap++) {
			long has = syscall(SYS_prctl, PR_CAPBSET_READ, cap, 0UL, 0UL, 0UL);

			if (has < 0)
				break; /* past the last capability */
			if (has == 0 || syscall(SYS_prctl, PR_CAPBSET_DROP, cap, 0UL, 0UL, 0UL) == 0)
				continue;
			/* No CAP_SETPCAP: finalize checks what is left. */
			if (errno == EPERM)
				break;
			child_fail(status_fd, STEP_BOUNDING_SET, errno);
		}
	}
}

CHILD_CODE static int spawn_child_main(void *data)
{
	struct spawn_ctx *ctx = data;
	int status_fd = ctx->status_fd;
	int r;

	if (ctx->status_read_fd >= 0)
		syscall(SYS_close, ctx->status_read_fd);

	r = child_reset_signals();
	if (r < 0)
		child_fail(status_fd, STEP_SIGNALS, -r);

	if (ctx->setsid && syscall(SYS_setsid) < 0)
		child_fail(status_fd, STEP_SETSID, errno);

	r = child_remap_fds(ctx, &status_fd);
	if (r < 0)
		child_fail(status_fd, STEP_DUP_FD, -r);

	if (ctx->close_other_fds) {
		r = child_close_other_fds(ctx, status_fd);
		if (r < 0)
			child_fail(status_fd, STEP_CLOSE_FDS, -r);
	}

	if (ctx->sandbox)
		child_sandbox(ctx, status_fd);

	child_run_hooks(ctx, PAL_SPAWN_STAGE_BEFORE_CREDENTIALS, status_fd);

	/* Raw syscalls: glibc's wrappers would signal the parent's threads. */
	if (ctx->has_gid) {
		gid_t gid = ctx->gid;

		/* In a new user namespace setgroups() is denied (and not needed). */
		if (!(ctx->granted_ns & CLONE_NEWUSER) && syscall(SYS_geteuid) == 0 &&
		    syscall(PAL_SYS_setgroups, 1, &gid) < 0)
			child_fail(status_fd, STEP_SETGROUPS, errno);
		if (syscall(PAL_SYS_setresgid, gid, gid, gid) < 0)
			child_fail(status_fd, STEP_SETRESGID, errno);
	}
	if (ctx->has_uid && syscall(PAL_SYS_setresuid, ctx->uid, ctx->uid, ctx->uid) < 0)
		child_fail(status_fd, STEP_SETRESUID, errno);

	/* After the last credential change: the kernel clears it on one. */
	if (ctx->pdeathsig > 0)
		child_arm_pdeathsig(ctx, status_fd);

	child_run_hooks(ctx, PAL_SPAWN_STAGE_BEFORE_EXEC, status_fd);

	/*
	 * A hook of this stage may have changed credentials too. Read the
	 * signal back and arm it again if that cleared it. A hook that also
	 * filtered prctl() leaves it as it is: unchanged unless cleared.
	 */
	if (ctx->pdeathsig > 0 && child_has_hooks(ctx, PAL_SPAWN_STAGE_BEFORE_EXEC)) {
		int sig = 0;

		if (syscall(SYS_prctl, PR_GET_PDEATHSIG, (unsigned long)&sig, 0UL, 0UL, 0UL) == 0 &&
		    sig != ctx->pdeathsig)
			child_arm_pdeathsig(ctx, status_fd);
	}

	if (ctx->search_path)
		execvpe(ctx->program, ctx->argv, ctx->envp);
	else
		execve(ctx->program, ctx->argv, ctx->envp);
	child_fail(status_fd, STEP_EXEC, errno);
}

/* ---- the parent -------------------------------------------------------- */

static void spawn_prep_free(struct spawn_prep *prep)
{
	free(prep->argv);
	free(prep->envp);
	for (size_t i = 0; i < prep->n_env_strings; i++)
		free(prep->env_strings[i]);
	free(prep->env_strings);
	free(prep->ops);
	free(prep->keep);
	prep->null_fd = pal_close_fd(prep->null_fd);
	if (prep->stack)
		munmap(prep->stack, prep->stack_size);
}

static int build_argv(const PalSpawn *spawn, struct spawn_prep *prep)
{
	size_t n = 0;

	prep->argv = calloc(spawn->n_args + 2, sizeof(char *));
	if (!prep->argv)
		return -ENOMEM;
	prep->argv[n++] = spawn->arg0 ? spawn->arg0 : spawn->program;
	for (size_t i = 0; i < spawn->n_args; i++)
		prep->argv[n++] = spawn->args[i];
	prep->argv[n] = NULL;
	return 0;
}

/* Drops every entry of @envp that sets @key. */
static void envp_remove(char **envp, size_t *n, const char *key)
{
	size_t len = strlen(key), j = 0;

	for (size_t i = 0; i < *n; i++)
		if (strncmp(envp[i], key, len) != 0 || envp[i][len] != '=')
			envp[j++] = envp[i];
	*n = j;
}

static int build_envp(const PalSpawn *spawn, struct spawn_prep *prep)
{
	size_t n_environ = 0, n = 0;

	if (!spawn->env_clear && environ)
		while (environ[n_environ])
			n_environ++;

	prep->envp = calloc(n_environ + spawn->n_env_ops + 1, sizeof(char *));
	prep->env_strings = calloc(spawn->n_env_ops + 1, sizeof(char *));
	if (!prep->envp || !prep->env_strings)
		return -ENOMEM;

	for (size_t i = 0; i < n_environ; i++)
		prep->envp[n++] = environ[i];

	for (size_t i = 0; i < spawn->n_env_ops; i++) {
		const struct spawn_env_op *op = &spawn->env_ops[i];
		size_t klen, vlen;
		char *s;

		envp_remove(prep->envp, &n, op->key);
		if (!op->value)
			continue;

		klen = strlen(op->key);
		vlen = strlen(op->value);
		s = malloc(klen + vlen + 2);
		if (!s)
			return -ENOMEM;
		memcpy(s, op->key, klen);
		s[klen] = '=';
		memcpy(s + klen + 1, op->value, vlen + 1);
		prep->env_strings[prep->n_env_strings++] = s;
		prep->envp[n++] = s;
	}
	prep->envp[n] = NULL;
	return 0;
}

static int cmp_int(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;

	return (x > y) - (x < y);
}

/*
 * Merges the user's fd mappings and the stdio modes into one list of
 * operations (a stdio mode other than INHERIT wins over a mapping to the
 * same target) and collects the targets >= 3 for closing the rest.
 */
static int build_fd_ops(const PalSpawn *spawn, struct spawn_prep *prep, struct spawn_ctx *ctx)
{
	size_t n = 0, n_keep = 0;

	prep->ops = calloc(spawn->n_fd_maps + 3, sizeof(struct spawn_op));
	prep->keep = calloc(spawn->n_fd_maps + 1, sizeof(int));
	if (!prep->ops || !prep->keep)
		return -ENOMEM;

	for (size_t i = 0; i < spawn->n_fd_maps; i++) {
		const struct spawn_fd_map *map = &spawn->fd_maps[i];

		if (map->target < 3 && spawn->stdio_mode[map->target] != PAL_STDIO_INHERIT)
			continue;
		prep->ops[n++] = (struct spawn_op){ .src = map->src, .target = map->target };
		if (map->target >= 3)
			prep->keep[n_keep++] = map->target;
	}

	for (int i = 0; i < 3; i++) {
		int src;

		switch (spawn->stdio_mode[i]) {
		case PAL_STDIO_NULL:
			if (prep->null_fd < 0) {
				prep->null_fd = open("/dev/null", O_RDWR | O_CLOEXEC | O_NOCTTY);
				if (prep->null_fd < 0)
					return -errno;
			}
			src = prep->null_fd;
			break;
		case PAL_STDIO_FD:
			src = spawn->stdio_fd[i];
			break;
		default:
			continue;
		}
		prep->ops[n++] = (struct spawn_op){ .src = src, .target = i };
	}

	ctx->ops = prep->ops;
	ctx->n_ops = n;
	ctx->max_target = -1;
	for (size_t i = 0; i < n; i++)
		if (prep->ops[i].target > ctx->max_target)
			ctx->max_target = prep->ops[i].target;

	qsort(prep->keep, n_keep, sizeof(int), cmp_int);
	ctx->keep = prep->keep;
	ctx->n_keep = n_keep;
	return 0;
}

/* A private stack with a guard page below it; returns its top. */
static int alloc_stack(const PalSpawn *spawn, struct spawn_prep *prep, void **ret_top)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t size;

	/* execvpe()'s script fallback puts a copy of argv on the stack. */
	size = SPAWN_STACK_MIN + (spawn->n_args + 3) * sizeof(char *);
	size = (size + page - 1) / page * page;
	prep->stack_size = size + page;

	prep->stack = mmap(NULL, prep->stack_size, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
	if (prep->stack == MAP_FAILED) {
		prep->stack = NULL;
		return -errno;
	}
	if (mprotect(prep->stack, page, PROT_NONE) < 0)
		return -errno;

	*ret_top = (char *)prep->stack + prep->stack_size;
	return 0;
}

static int pidfd_open_fallback(pid_t pid)
{
	long fd = syscall(SYS_pidfd_open, pid, 0);

	return fd < 0 ? -1 : (int)fd;
}

int spawn_refused_clone_flags;
int spawn_refused_ns_flags;

static pid_t do_clone(struct spawn_ctx *ctx, void *stack_top, int flags, int *pidfd)
{
	if (flags & spawn_refused_ns_flags) {
		errno = EPERM;
		return -1;
	}
	if (flags & spawn_refused_clone_flags) {
		errno = EINVAL;
		return -1;
	}
	return clone(spawn_child_main, stack_top, flags, ctx, pidfd);
}

/*
 * clone()s the child. CLONE_PIDFD is dropped when refused with EINVAL
 * (old kernels, seccomp filters) and the pidfd opened afterwards; CLONE_VM |
 * CLONE_VFORK is dropped when refused, falling back to a fork-like child,
 * and never asked for under ThreadSanitizer.
 */
static pid_t spawn_clone(struct spawn_ctx *ctx, void *stack_top, bool vfork, int ns_flags,
			 int *ret_pidfd)
{
	int flags = SIGCHLD | ns_flags | (vfork && !PAL_SPAWN_TSAN ? CLONE_VM | CLONE_VFORK : 0);
	int pidfd = -1;
	pid_t pid;

	for (;;) {
		pid = do_clone(ctx, stack_top, flags | CLONE_PIDFD, &pidfd);
		if (pid >= 0)
			break;
		if (errno == EINVAL) {
			pid = do_clone(ctx, stack_top, flags, NULL);
			if (pid >= 0) {
				/* The child is ours and unreaped: its pid is stable. */
				pidfd = pidfd_open_fallback(pid);
				break;
			}
		}
		if ((flags & CLONE_VM) && (errno == EINVAL || errno == EPERM || errno == ENOSYS)) {
			flags &= ~(CLONE_VM | CLONE_VFORK);
			continue;
		}
		return -errno;
	}

	*ret_pidfd = pidfd;
	return pid;
}

/*
 * Whether a child in a new user namespace can write its maps. A process
 * that is not dumpable (after a uid change, or PR_SET_DUMPABLE 0) passes
 * that on to the child, whose /proc/self files then belong to root: only a
 * root child opens its uid_map. The child cannot make itself dumpable for
 * the open: it shares the spawner's memory (vfork mode: the flag is the
 * memory's, the spawner would be dumpable too) or holds a copy of it and
 * of every fd of the spawner, and any process of the same uid could attach
 * to it in that window and keep it (ptrace checks dumpability at attach):
 * what the kernel's flag protects. So libpal leaves the user namespace out.
 */
static bool userns_maps_writable(void)
{
	return geteuid() == 0 || prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 1;
}

static bool ns_refusal(int err)
{
	return err == EPERM || err == EINVAL || err == ENOSPC || err == EUSERS;
}

/* Writes @flags as 8 hex digits at @slot, the child's record of them. */
static void report_ns(char *slot, int flags)
{
	static const char hex[] = "0123456789abcdef";

	if (!slot)
		return;
	for (int i = 7; i >= 0; i--) {
		slot[i] = hex[flags & 0xf];
		flags = (int)((unsigned)flags >> 4);
	}
}

/*
 * clone()s the child in the sandbox's namespaces: first all of them, then
 * without one best-effort namespace at a time (in the order below, least
 * useful first), then with the required ones only. A refusal (EPERM,
 * EINVAL, ENOSPC, EUSERS) moves on to the next set; the granted set is
 * written to the child's environment before each attempt.
 */
static pid_t spawn_clone_ns(struct spawn_ctx *ctx, void *stack_top, bool vfork,
			    const struct spawn_prep *prep, int *ret_pidfd, bool *ret_ns_refused)
{
	static const int drop_order[] = { CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWPID,
					  CLONE_NEWNET, CLONE_NEWNS, CLONE_NEWUSER };
	int required = ctx->sandbox ? ctx->sandbox->ns_required : 0;
	int optional = ctx->sandbox ? ctx->sandbox->ns_optional & ~required : 0;
	int candidates[2 + sizeof(drop_order) / sizeof(drop_order[0])];
	size_t n = 0;
	pid_t pid = -EINVAL;

	/* Refused as the kernel would refuse it (pal_spawn_run() fails a required one). */
	if ((optional & CLONE_NEWUSER) && !userns_maps_writable())
		optional &= ~CLONE_NEWUSER;
	candidates[n++] = required | optional;
	if (optional) {
		for (size_t i = 0; i < sizeof(drop_order) / sizeof(drop_order[0]); i++)
			if ((optional & drop_order[i]) && optional != drop_order[i])
				candidates[n++] = (required | optional) & ~drop_order[i];
		candidates[n++] = required;
	}

	*ret_ns_refused = false;
	for (size_t i = 0; i < n; i++) {
		ctx->granted_ns = candidates[i];
		report_ns(prep->report_slot, candidates[i]);
		pid = spawn_clone(ctx, stack_top, vfork, candidates[i], ret_pidfd);
		if (pid >= 0 || candidates[i] == 0 || !ns_refusal((int)-pid))
			return pid;
	}
	*ret_ns_refused = true;
	return pid;
}

/*
 * Appends ";g=00000000" to the sandbox's variable in envp and keeps where
 * the digits are; the variable may be gone (unset after the sandbox was
 * applied): then nothing is reported.
 */
static int add_report_slot(const PalSpawn *spawn, struct spawn_prep *prep)
{
	static const char suffix[] = ";g=00000000";
	const char *key = spawn->sandbox_spec.report_env;
	size_t klen;

	if (!spawn->sandbox || !key)
		return 0;
	klen = strlen(key);
	for (char **e = prep->envp; *e; e++) {
		size_t len;
		char *s;

		if (strncmp(*e, key, klen) != 0 || (*e)[klen] != '=')
			continue;
		len = strlen(*e);
		s = malloc(len + sizeof(suffix));
		if (!s)
			return -ENOMEM;
		memcpy(s, *e, len);
		memcpy(s + len, suffix, sizeof(suffix));
		/* build_envp() left one slot free in env_strings. */
		prep->env_strings[prep->n_env_strings++] = s;
		*e = s;
		prep->report_slot = s + len + 3;
		return 0;
	}
	return 0;
}

static void reap(pid_t pid)
{
	int status;

	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
}

PAL_API int pal_spawn_run(PalSpawn *spawn, PalChild **ret_child)
{
	struct spawn_prep prep = { .null_fd = -1 };
	struct spawn_ctx ctx = { 0 };
	struct spawn_status st;
	PalChild *child = NULL;
	int pipe_fds[2] = { -1, -1 };
	sigset_t all, old;
	void *stack_top = NULL;
	int pidfd = -1, r;
	bool ns_refused;
	ssize_t n;
	pid_t pid;

	if (!spawn || !ret_child)
		return -EINVAL;
	spawn->failed_step = NULL;

	child = calloc(1, sizeof(*child));
	if (!child)
		return -ENOMEM;

	r = build_argv(spawn, &prep);
	if (r >= 0)
		r = build_envp(spawn, &prep);
	if (r >= 0)
		r = add_report_slot(spawn, &prep);
	if (r >= 0)
		r = build_fd_ops(spawn, &prep, &ctx);
	if (r >= 0)
		r = alloc_stack(spawn, &prep, &stack_top);
	if (r < 0)
		goto out;

	if (pipe2(pipe_fds, O_CLOEXEC) < 0) {
		r = -errno;
		goto out;
	}

	ctx.program = spawn->program;
	ctx.argv = prep.argv;
	ctx.envp = prep.envp;
	ctx.search_path = !strchr(spawn->program, '/');
	ctx.close_other_fds = spawn->close_other_fds;
	ctx.setsid = spawn->setsid;
	ctx.pdeathsig = spawn->pdeathsig;
	ctx.parent_pid = getpid();
	ctx.has_uid = spawn->has_uid;
	ctx.has_gid = spawn->has_gid;
	ctx.uid = spawn->uid;
	ctx.gid = spawn->gid;
	ctx.hooks = spawn->hooks;
	ctx.n_hooks = spawn->n_hooks;
	ctx.sandbox = spawn->sandbox ? &spawn->sandbox_spec : NULL;
	ctx.map_uid = geteuid();
	ctx.map_gid = getegid();
	ctx.status_fd = pipe_fds[1];
	ctx.status_read_fd = pipe_fds[0];

	if (ctx.sandbox && (ctx.sandbox->ns_required & CLONE_NEWUSER) && !userns_maps_writable()) {
		r = -EPERM;
		spawn->failed_step = step_names[STEP_DUMPABLE];
		goto out;
	}

	/* No handler may run in the child before it has reset them. */
	sigfillset(&all);
	r = -pthread_sigmask(SIG_SETMASK, &all, &old);
	if (r < 0)
		goto out;
	pid = spawn_clone_ns(&ctx, stack_top, spawn->vfork, &prep, &pidfd, &ns_refused);
	pthread_sigmask(SIG_SETMASK, &old, NULL);

	pipe_fds[1] = pal_close_fd(pipe_fds[1]);
	if (pid < 0) {
		r = pid;
		if (ns_refused)
			spawn->failed_step = step_names[STEP_NAMESPACES];
		goto out;
	}

	/*
	 * End-of-file: the exec succeeded and closed the write end (or a
	 * signal killed the child first; its wait status will say so).
	 */
	do {
		n = read(pipe_fds[0], &st, sizeof(st));
	} while (n < 0 && errno == EINTR);

	if (n != 0) {
		if (n == (ssize_t)sizeof(st)) {
			r = st.err > 0 ? -st.err : -EIO;
			spawn->failed_step = st.step >= 0 && st.step < _STEP_MAX ? step_names[st.step] : "unknown";
		} else {
			/* Cannot tell what the child did: do not leave it running. */
			r = n < 0 ? -errno : -EIO;
			kill(pid, SIGKILL);
		}
		reap(pid);
		pal_close_fd(pidfd);
		goto out;
	}

	child->pid = pid;
	child->pidfd = pidfd;
	*ret_child = child;
	child = NULL;
	r = 0;

out:
	pal_close_fd(pipe_fds[0]);
	pal_close_fd(pipe_fds[1]);
	spawn_prep_free(&prep);
	free(child);
	return r;
}

/* ---- PalChild ---------------------------------------------------------- */

static void child_set_reaped(PalChild *child, int status)
{
	child->reaped = true;
	child->status = status;
	child->pidfd = pal_close_fd(child->pidfd);
}

PAL_API pid_t pal_child_get_pid(const PalChild *child)
{
	return child ? child->pid : -1;
}

PAL_API int pal_child_get_pidfd(const PalChild *child)
{
	return child ? child->pidfd : -1;
}

/* waitpid() with @options (0 or WNOHANG) unless reaped already; -EAGAIN: still running. */
static int child_waitpid(PalChild *child, int options, int *ret_status)
{
	if (!child)
		return -EINVAL;

	if (!child->reaped) {
		int status;
		pid_t p;

		do {
			p = waitpid(child->pid, &status, options);
		} while (p < 0 && errno == EINTR);
		if (p < 0)
			return -errno;
		if (p == 0)
			return -EAGAIN;
		child_set_reaped(child, status);
	}

	if (ret_status)
		*ret_status = child->status;
	return 0;
}

PAL_API int pal_child_wait(PalChild *child, int *ret_status)
{
	return child_waitpid(child, 0, ret_status);
}

PAL_API int pal_child_try_wait(PalChild *child, int *ret_status)
{
	return child_waitpid(child, WNOHANG, ret_status);
}

/* Set once pidfd_send_signal() turned out to be missing. */
static atomic_bool no_pidfd_send_signal;

PAL_API int pal_child_kill(PalChild *child, int signal)
{
	if (!child)
		return -EINVAL;
	if (child->reaped)
		return -ESRCH;

	if (child->pidfd >= 0 && !atomic_load_explicit(&no_pidfd_send_signal, memory_order_relaxed)) {
		if (syscall(SYS_pidfd_send_signal, child->pidfd, signal, NULL, 0) == 0)
			return 0;
		if (errno != ENOSYS)
			return -errno;
		atomic_store_explicit(&no_pidfd_send_signal, true, memory_order_relaxed);
	}

	/*
	 * No pidfd, or no pidfd_send_signal() (Linux < 5.1, valgrind < 3.20):
	 * the pid cannot be recycled while the child is unreaped.
	 */
	if (kill(child->pid, signal) < 0)
		return -errno;
	return 0;
}

PAL_API PalChild *pal_child_free(PalChild *child)
{
	if (!child)
		return NULL;
	pal_close_fd(child->pidfd);
	free(child);
	return NULL;
}
