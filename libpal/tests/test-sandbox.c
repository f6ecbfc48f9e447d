/* SPDX-License-Identifier: MIT */
/*
 * Tests of pal-sandbox.h with real processes: pal-sandbox-child reads its
 * profile from the environment, finalizes it and tries what the sandbox
 * should allow or refuse, printing one line per command.
 *
 * The suite "sandbox" runs as whoever runs the test. Run as root, the test
 * "unprivileged" re-runs that suite in a copy of this program started as
 * uid/gid 65534 (nobody), so every test also runs unprivileged (with a user
 * namespace); and the suite "sandbox-root" has what needs root (a
 * set-user-ID binary, children started as another uid). Under valgrind
 * the whole program is skipped (exit 77): seccomp filters would apply to
 * valgrind itself.
 *
 * Linked against libpal's objects, not the library, to reach the env
 * decoder and spawn_refused_ns_flags.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <sched.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <pal/pal.h>

#include "sandbox-private.h"
#include "spawn-private.h"

#ifndef PAL_SANDBOX_CHILD
#error "PAL_SANDBOX_CHILD must name the helper program"
#endif
#ifndef PAL_TEST_EUID
#error "PAL_TEST_EUID must name the euid helper"
#endif

#define NOBODY 65534

#define _cleanup_(f) __attribute__((cleanup(f)))

/* Output of one child run. */
struct run {
	char out[8192];
	int status;
};

struct run_opts {
	bool has_uid;
	uid_t uid;
	int pdeathsig;
	bool fork_mode;
	int dup_src; /* mapped to fd 5 when >= 0 */
	bool stderr_too;     /* the child's stderr into the output too */
	const char *env_key; /* set in the child's environment */
	const char *env_value;
	const char *program; /* NULL: PAL_SANDBOX_CHILD */
};

/* Runs pal-sandbox-child with @sandbox (may be NULL) and NULL-terminated args. */
static int run_child_opts(PalSandbox *sandbox, const struct run_opts *opts, struct run *run, ...)
{
	PalSpawn *spawn = pal_spawn_new(opts && opts->program ? opts->program : PAL_SANDBOX_CHILD);
	PalChild *child = NULL;
	int pipe_fds[2];
	size_t len = 0;
	const char *arg;
	va_list ap;
	ssize_t n;
	int r;

	ck_assert_ptr_nonnull(spawn);
	va_start(ap, run);
	while ((arg = va_arg(ap, const char *)))
		ck_assert_int_eq(pal_spawn_add_arg(spawn, arg), 0);
	va_end(ap);

	ck_assert_int_eq(pipe2(pipe_fds, O_CLOEXEC), 0);
	ck_assert_int_eq(pal_spawn_set_stdout(spawn, PAL_STDIO_FD, pipe_fds[1]), 0);
	if (opts && opts->stderr_too)
		ck_assert_int_eq(pal_spawn_set_stderr(spawn, PAL_STDIO_FD, pipe_fds[1]), 0);
	if (opts && opts->env_key)
		ck_assert_int_eq(pal_spawn_env_set(spawn, opts->env_key, opts->env_value), 0);
	if (sandbox)
		ck_assert_int_eq(pal_sandbox_apply(sandbox, spawn), 0);
	if (opts && opts->has_uid) {
		ck_assert_int_eq(pal_spawn_set_uid(spawn, opts->uid), 0);
		ck_assert_int_eq(pal_spawn_set_gid(spawn, opts->uid), 0);
	}
	if (opts && opts->pdeathsig)
		ck_assert_int_eq(pal_spawn_set_parent_death_signal(spawn, opts->pdeathsig), 0);
	if (opts && opts->fork_mode)
		ck_assert_int_eq(pal_spawn_set_vfork(spawn, false), 0);
	if (opts && opts->dup_src >= 0)
		ck_assert_int_eq(pal_spawn_dup_fd(spawn, opts->dup_src, 5), 0);

	r = pal_spawn_run(spawn, &child);
	close(pipe_fds[1]);
	if (r < 0) {
		fprintf(stderr, "spawn failed at %s: %s\n", pal_spawn_get_failed_step(spawn),
			strerror(-r));
		close(pipe_fds[0]);
		pal_spawn_free(spawn);
		return r;
	}
	while ((n = read(pipe_fds[0], run->out + len, sizeof(run->out) - 1 - len)) > 0)
		len += (size_t)n;
	run->out[len] = '\0';
	close(pipe_fds[0]);
	ck_assert_int_eq(pal_child_wait(child, &run->status), 0);
	pal_child_free(child);
	pal_spawn_free(spawn);
	return 0;
}

#define run_child(sandbox, run, ...) run_child_opts(sandbox, NULL, run, __VA_ARGS__, NULL)

/* Asserts that @run's output contains @line as a whole line. */
#define assert_line(run, line)                                                          \
	do {                                                                            \
		char _needle[512];                                                      \
		snprintf(_needle, sizeof(_needle), "\n%s\n", (line));                   \
		char _hay[sizeof((run)->out) + 2];                                      \
		snprintf(_hay, sizeof(_hay), "\n%s", (run)->out);                       \
		ck_assert_msg(strstr(_hay, _needle), "expected line '%s' in:\n%s", (line), \
			      (run)->out);                                              \
	} while (0)

#define assert_no_line(run, line)                                                       \
	do {                                                                            \
		char _needle[512];                                                      \
		snprintf(_needle, sizeof(_needle), "\n%s\n", (line));                   \
		char _hay[sizeof((run)->out) + 2];                                      \
		snprintf(_hay, sizeof(_hay), "\n%s", (run)->out);                       \
		ck_assert_msg(!strstr(_hay, _needle), "unexpected line '%s' in:\n%s", (line), \
			      (run)->out);                                              \
	} while (0)

#define assert_exited(run, code)                                                        \
	ck_assert_msg(WIFEXITED((run)->status) && WEXITSTATUS((run)->status) == (code),   \
		      "status %#x, output:\n%s", (run)->status, (run)->out)

static int kernel_landlock_abi(void)
{
	long abi = syscall(444 /* landlock_create_ruleset */, NULL, 0UL, 1U);

	if (abi < 0)
		return 0;
	return abi > 7 ? 7 : (int)abi;
}

static bool have_seccomp(void)
{
#ifdef PAL_HAVE_SECCOMP
	return true;
#else
	return false;
#endif
}

/*
 * The default profile; without libseccomp, with seccomp off (finalize would
 * fail at "seccomp": test_seccomp_exec_socket checks that).
 */
static PalSandbox *default_profile(void)
{
	PalSandbox *sb = pal_sandbox_new();

	ck_assert_ptr_nonnull(sb);
	if (!have_seccomp())
		ck_assert_int_eq(pal_sandbox_set_seccomp(sb, PAL_SANDBOX_SECCOMP_OFF), 0);
	return sb;
}

/* Whether @path (symlinks resolved) is /tmp or below. */
static bool under_tmp(const char *path)
{
	char *real = realpath(path, NULL);
	const char *p = real ? real : path;
	bool under = strncmp(p, "/tmp", 4) == 0 && (p[4] == '\0' || p[4] == '/');

	free(real);
	return under;
}

/*
 * Whether the child program or a directory of LD_LIBRARY_PATH is under
 * /tmp (a build tree there): libpal then gives the child no private /tmp.
 */
static bool child_loads_from_tmp(void)
{
	const char *lib = getenv("LD_LIBRARY_PATH");

	if (under_tmp(PAL_SANDBOX_CHILD))
		return true;
	while (lib && *lib) {
		size_t len = strcspn(lib, ":");
		char *one = strndup(lib, len);
		bool under = len > 0 && under_tmp(one);

		free(one);
		if (under)
			return true;
		lib += len + (lib[len] == ':');
	}
	return false;
}

/* A fresh directory under /tmp with a file "f" in it. */
static void make_dir(char *buf, size_t size)
{
	char file[PATH_MAX];
	int fd;

	snprintf(buf, size, "/tmp/pal-sandbox-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(buf));
	snprintf(file, sizeof(file), "%s/f", buf);
	fd = open(file, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	ck_assert_int_ge(fd, 0);
	close(fd);
}

static void remove_dir(const char *dir)
{
	char cmd[PATH_MAX + 16];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	ck_assert_int_eq(system(cmd), 0);
}

/* ---- suite "sandbox": as whoever runs it -------------------------------- */

START_TEST(test_landlock_paths)
{
	_cleanup_(pal_sandbox_unrefp) PalSandbox *sb = pal_sandbox_new_empty();
	char ro[64], rw[64], ro_f[80], ro_new[80], rw_new[80], line[256];
	struct run run;

	if (kernel_landlock_abi() == 0)
		return; /* covered by test_landlock_best_effort */
	make_dir(ro, sizeof(ro));
	make_dir(rw, sizeof(rw));
	snprintf(ro_f, sizeof(ro_f), "%s/f", ro);
	snprintf(ro_new, sizeof(ro_new), "%s/new", ro);
	snprintf(rw_new, sizeof(rw_new), "%s/new", rw);

	ck_assert_int_eq(pal_sandbox_set_no_new_privs(sb, true), 0);
	ck_assert_int_eq(pal_sandbox_set_landlock(sb, true), 0);
	ck_assert_int_eq(pal_sandbox_allow_path(sb, ro, PAL_SANDBOX_FS_READ), 0);
	ck_assert_int_eq(pal_sandbox_allow_path(sb, rw, PAL_SANDBOX_FS_READ | PAL_SANDBOX_FS_WRITE), 0);

	ck_assert_int_eq(run_child(sb, &run, "from-env", "open", "/etc/passwd", "r", "finalize",
				   "open", ro_f, "r", "open", ro_new, "w", "open", rw_new, "w",
				   "open", "/etc/passwd", "r", "ls", rw, "ls", "/", "status"), 0);
	assert_exited(&run, 0);
	/* Before finalize everything is open to the child... */
	assert_line(&run, "open /etc/passwd ok");
	assert_line(&run, "finalize ok");
	/* ...after it, only the allowed paths, read-only vs read-write. */
	snprintf(line, sizeof(line), "open %s ok", ro_f);
	assert_line(&run, line);
	snprintf(line, sizeof(line), "open %s EACCES", ro_new);
	assert_line(&run, line);
	snprintf(line, sizeof(line), "open %s ok", rw_new);
	assert_line(&run, line);
	assert_line(&run, "open /etc/passwd EACCES");
	snprintf(line, sizeof(line), "ls %s 2", rw);
	assert_line(&run, line);
	assert_line(&run, "ls / EACCES");
	snprintf(line, sizeof(line), "status ns=0 tmp=0 nnp=1 caps=0 ll=%d sc=0 fin=1",
		 kernel_landlock_abi());
	assert_line(&run, line);
	remove_dir(ro);
	remove_dir(rw);
}
END_TEST

/*
 * pal_sandbox_to_env(): the value, put into a child's environment by hand
 * (no pal_sandbox_apply()), finalizes there as the profile says and claims
 * no namespaces; a profile too long to decode is refused on both paths.
 */
/* A copy asks for what its original did, and stays so when either changes. */
START_TEST(test_copy_equal)
{
	_cleanup_(pal_sandbox_unrefp) PalSandbox *sb = pal_sandbox_new();
	ck_assert_int_eq(pal_sandbox_allow_path(sb, "/usr", PAL_SANDBOX_FS_READ), 0);
	ck_assert_int_eq(pal_sandbox_allow_syscall(sb, "pause"), 0);
	ck_assert_int_eq(pal_sandbox_set_rlimit(sb, RLIMIT_NOFILE, 64, 64), 0);
	_cleanup_(pal_sandbox_unrefp) PalSandbox *copy = pal_sandbox_copy(sb);
	ck_assert_ptr_nonnull(copy);
	ck_assert(copy != sb);
	ck_assert(pal_sandbox_equal(sb, copy));
	ck_assert(pal_sandbox_equal(NULL, NULL));
	ck_assert(!pal_sandbox_equal(sb, NULL));

	/* Each step changed on one side makes them differ; the copy is unchanged. */
	_cleanup_(pal_sandbox_unrefp) PalSandbox *a = pal_sandbox_copy(copy);
	ck_assert_int_eq(pal_sandbox_allow_path(a, "/etc", PAL_SANDBOX_FS_READ), 0);
	ck_assert(!pal_sandbox_equal(a, copy));
	_cleanup_(pal_sandbox_unrefp) PalSandbox *b = pal_sandbox_copy(copy);
	ck_assert_int_eq(pal_sandbox_set_rlimit(b, RLIMIT_NOFILE, 64, 128), 0);
	ck_assert(!pal_sandbox_equal(b, copy));
	_cleanup_(pal_sandbox_unrefp) PalSandbox *c = pal_sandbox_copy(copy);
	ck_assert_int_eq(pal_sandbox_set_seccomp(c, PAL_SANDBOX_SECCOMP_LOG), 0);
	ck_assert(!pal_sandbox_equal(c, copy));
	_cleanup_(pal_sandbox_unrefp) PalSandbox *d = pal_sandbox_copy(copy);
	ck_assert_int_eq(pal_sandbox_set_namespaces(d, PAL_SANDBOX_NS_UTS, false), 0);
	ck_assert(!pal_sandbox_equal(d, copy));
	_cleanup_(pal_sandbox_unrefp) PalSandbox *e = pal_sandbox_copy(copy);
	ck_assert_int_eq(pal_sandbox_allow_syscall(e, "getpid"), 0);
	ck_assert(!pal_sandbox_equal(e, copy));
	ck_assert(pal_sandbox_equal(sb, copy));
	ck_assert_int_eq(pal_sandbox_set_no_new_privs(sb, false), 0);
	ck_assert(!pal_sandbox_equal(sb, copy));
	ck_assert_ptr_null(pal_sandbox_copy(NULL));
	ck_assert_int_eq(errno, EINVAL);
}
END_TEST

START_TEST(test_to_env)
{
	_cleanup_(pal_sandbox_unrefp) PalSandbox *sb = default_profile();
	_cleanup_(pal_sandbox_unrefp) PalSandbox *big = pal_sandbox_new_empty();
	char ro[64], ro_f[80], line[256], *value = (char *)"unset", *bad = (char *)"unset";
	struct run_opts opts = { .dup_src = -1, .env_key = PAL_SANDBOX_ENV };
	struct run run;

	make_dir(ro, sizeof(ro));
	snprintf(ro_f, sizeof(ro_f), "%s/f", ro);
	ck_assert_int_eq(pal_sandbox_allow_path(sb, ro, PAL_SANDBOX_FS_READ), 0);
	ck_assert_int_eq(pal_sandbox_to_env(sb, &value), 0);
	ck_assert_msg(!strstr(value, ";g="), "%s", value);
	opts.env_value = value;
	ck_assert_int_eq(run_child_opts(NULL, &opts, &run, "from-env", "finalize", "open", ro_f,
					"r", "open", "/etc/passwd", "r", "socket", "inet", "nnp",
					"status", NULL),
			 0);
	assert_exited(&run, 0);
	assert_line(&run, "from-env ok");
	assert_line(&run, "finalize ok");
	snprintf(line, sizeof(line), "open %s ok", ro_f);
	assert_line(&run, line);
	if (kernel_landlock_abi())
		assert_line(&run, "open /etc/passwd EACCES");
	if (have_seccomp())
		assert_line(&run, "socket inet EAFNOSUPPORT");
	assert_line(&run, "nnp 1");
	ck_assert_msg(strstr(run.out, "\nstatus ns=0 tmp=0 nnp=1 caps=1 "), "%s", run.out);
	free(value);
	remove_dir(ro);

	/* 80 paths of 4000 bytes: 640 KB encoded, the decoder takes 256 KiB. */
	char path[4001];
	memset(path, 'a', sizeof(path) - 1);
	path[0] = '/';
	path[sizeof(path) - 1] = '\0';
	for (int i = 0; i < 80; i++) {
		path[1] = (char)('A' + i % 26);
		path[2] = (char)('A' + i / 26);
		ck_assert_int_eq(pal_sandbox_allow_path(big, path, PAL_SANDBOX_FS_READ), 0);
	}
	ck_assert_int_eq(pal_sandbox_to_env(big, &bad), -E2BIG);
	ck_assert_ptr_null(bad);
	PalSpawn *spawn = pal_spawn_new(PAL_SANDBOX_CHILD);
	ck_assert_int_eq(pal_sandbox_apply(big, spawn), -E2BIG);
	pal_spawn_free(spawn);
	ck_assert_int_eq(pal_sandbox_to_env(NULL, &bad), -EINVAL);
	ck_assert_int_eq(pal_sandbox_to_env(sb, NULL), -EINVAL);
}
END_TEST

/*
 * ThreadSanitizer builds: a race in a sandboxed child is reported with its
 * source lines (the runtime reads /proc/self/maps and the loaded files),
 * and nothing on the way kills it. Other builds: nothing to check.
 */
START_TEST(test_tsan_report)
{
#if defined(__SANITIZE_THREAD__)
	_cleanup_(pal_sandbox_unrefp) PalSandbox *sb = default_profile();
	struct run_opts opts = { .dup_src = -1, .stderr_too = true };
	struct run run;

	ck_assert_int_eq(run_child_opts(sb, &opts, &run, "from-env", "finalize", "race", NULL), 0);
	assert_line(&run, "finalize ok");
	ck_assert_msg(strstr(run.out, "WARNING: ThreadSanitizer: data race"), "%s", run.out);
	ck_assert_msg(strstr(run.out, "pal-sandbox-child.c:"), "unsymbolized: %s", run.out);
	/* An exit (66 with halt_on_error=1), not SIGSYS. */
	ck_assert_msg(WIFEXITED(run.status), "%s", run.out);
#endif
}
END_TEST

START_TEST(test_landlock_required_abi)
{
	_cleanup_(pal_sandbox_unrefp) PalSandbox *sb = pal_sandbox_new_empty();
	struct run run;

	ck_assert_int_eq(pal_sandbox_set_no_new_privs(sb, true), 0);
	ck_assert_int_eq(pal_sandbox_require_landlock_abi(sb, 999), 0);
	ck_assert_int_eq(run_child(sb, &run, "from-env", "finalize", "status", "open", "/etc/passwd", "r"), 0);
	assert_exited(&run, 0);
	assert_line(&run, "finalize EOPNOTSUPP landlock");
	/* The steps before stay in place, nothing else is claimed. */
	assert_line(&run, "status ns=0 tmp=0 nnp=1 caps=0 ll=0 sc=0 fin=0");
	assert_line(&run, "open /etc/passwd ok");
}
END_TEST

START_TEST(test_seccomp_exec_socket)
{
	_cleanup_(pal_sandbox_unrefp) PalSandbox *sb = pal_sandbox_new_empty();
	struct run run;

	ck_assert_int_eq(pal_sandbox_set_no_new_privs(sb, true), 0);
	ck_assert_int_eq(pal_sandbox_set_seccomp(sb, PAL_SANDBOX_SECCOMP_KILL), 0);
	ck_assert_int_eq(run_child(sb, &run, "from-env", "socket", "inet", "finalize", "socket",
				   "inet", "socket", "unix", "thread", "status", "exec", "/bin/true"), 0);
	if (!have_seccomp()) {
		assert_line(&run, "finalize EOPNOTSUPP seccomp");
		return;
	}
	assert_exited(&run, 0);
	assert_line(&run, "socket inet ok");
	assert_line(&run, "finalize ok");
	assert_line(&run, "socket inet EAFNOSUPPORT");
	assert_line(&run, "socket unix ok");
	/* Threads: clone3() gets ENOSYS, glibc falls back to clone(CLONE_THREAD). */
	assert_line(&run, "thread ok");
	assert_line(&run, "status ns=0 tmp=0 nnp=1 caps=0 ll=0 sc=1 fin=1");
	assert_line(&run, "exec EPERM");
}
END_TEST

START_TEST(test_seccomp_kill)
{
	_cleanup_(pal_sandbox_unrefp) PalSandbox *sb = pal_sandbox_new_empty();
	struct run run;

	if (!have_seccomp())
		return;
	ck_assert_int_eq(pal_sandbox_set_no_new_privs(sb, true), 0);
	ck_assert_int_eq(pal_sandbox_set_seccomp(sb, PAL_SANDBOX_SECCOMP_KILL), 0);
	ck_assert_int_eq(run_child(sb, &run, "from-env", "forbidden", "finalize", "forbidden"), 0);
	ck_assert_msg(WIFSIGNALED(run.status) && WTERMSIG(run.status) == SIGSYS,
		      "status %#x, output:\n%s", run.status, run.out);
	ck_assert_str_eq(run.out, "from-env ok\nforbidden returned\nfinalize ok\n");
}
END_TEST

START_TEST(test_seccomp_log)
{
	_cleanup_(pal_sandbox_unrefp) PalSandbox *sb = pal_sandbox_new_empty();
	struct run run;

	if (!have_seccomp())
		return;
	ck_assert_int_eq(pal_sandbox_set_no_new_privs(sb, true), 0);
	ck_assert_int_eq(pal_sandbox_set_seccomp(sb, PAL_SANDBOX_SECCOMP_LOG), 0);
	ck_assert_int_eq(run_child(sb, &run, "from-env", "finalize", "forbidden", "status"), 0);
	assert_exited(&run, 0);
	assert_line(&run, "forbidden returned");
	assert_line(&run, "status ns=0 tmp=0 nnp=1 caps=0 ll=0 sc=2 fin=1");
}
END_TEST

START_TEST(test_seccomp_allow_syscall)
{
	_cleanup_(pal_sandbox_unrefp) PalSandbox *sb = pal_sandbox_new_empty();
	struct run run;

	if (!have_seccomp())
		return;
	ck_assert_int_eq(pal_sandbox_set_no_new_privs(sb, true), 0);
	ck_assert_int_eq(pal_sandbox_set_seccomp(sb, PAL_SANDBOX_SECCOMP_KILL), 0);
	ck_assert_int_eq(pal_sandbox_allow_syscall(sb, "personality"), 0);
	ck_assert_int_eq(pal_sandbox_allow_syscall(sb, "Personality"), -EINVAL);
	ck_assert_int_eq(run_child(sb, &run, "from-env", "finalize", "forbidden"), 0);
	assert_exited(&run, 0);
	assert_line(&run, "forbidden returned");

	/* A name libseccomp does not know fails finalize, not the parent. */
	ck_assert_int_eq(pal_sandbox_allow_syscall(sb, "no_such_syscall"), 0);
	ck_assert_int_eq(run_child(sb, &run, "from-env", "finalize"), 0);
	assert_line(&run, "finalize EINVAL seccomp");
}
END_TEST

/*
 * A program that lives under /tmp gets no private /tmp (it could not be
 * exec'd through it), and its status says so; the rest of the profile holds.
 */
START_TEST(test_program_under_tmp)
{
	_cleanup_(pal_sandbox_unrefp) PalSandbox *sb = default_profile();
	struct run run;
	char dir[64], copy[PATH_MAX], cmd[2 * PATH_MAX + 16], want[128];

	make_dir(dir, sizeof(dir));
	snprintf(copy, sizeof(copy), "%s/pal-sandbox-child", dir);
	snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", PAL_SANDBOX_CHILD, copy);
	ck_assert_int_eq(system(cmd), 0);
	/* The copy finds libpal through LD_LIBRARY_PATH: the build's libpal/. */
	char libdir[PATH_MAX];
	snprintf(libdir, sizeof(libdir), "%s", PAL_SANDBOX_CHILD);
	*strrchr(libdir, '/') = '\0';
	*strrchr(libdir, '/') = '\0';
	ck_assert_int_eq(run_child_opts(sb, &(struct run_opts){ .dup_src = -1, .program = copy,
								.env_key = "LD_LIBRARY_PATH",
								.env_value = libdir },
					&run, "from-env", "ls", dir, "finalize", "status", NULL),
			 0);
	assert_exited(&run, 0);
	assert_line(&run, "finalize ok");
	ck_assert_msg(strstr(run.out, " tmp=0 nnp=1 caps=1 "), "%s", run.out);
	/* Its /tmp is the parent's: the directory it was started from is there. */
	snprintf(want, sizeof(want), "ls %s 2", dir);
	assert_line(&run, want);
	remove_dir(dir);
}
END_TEST

START_TEST(test_default_profile)
{
	_cleanup_(pal_sandbox_unrefp) PalSandbox *sb = default_profile();
	struct run before, run;
	char line[256], dir[64];
	unsigned ns;


	/* The parent's /tmp is not empty; the child's private one is. */
	make_dir(dir, sizeof(dir));
	ck_assert_int_eq(run_child(NULL, &before, "ns", "caps"), 0);
	/* Default profile as it comes, with a parent-death signal (pid 1: getppid() is 0). */
	ck_assert_int_eq(run_child_opts(sb, &(struct run_opts){ .pdeathsig = SIGKILL, .dup_src = -1 },
					&run, "from-env", "ns", "pid", "ls", "/tmp", "finalize",
					"status", "caps", "nnp", "open", "/etc/passwd", "r",
					"socket", "inet", "thread", "exec", "/bin/true", NULL), 0);
	assert_exited(&run, 0);
	assert_line(&run, "pid 1");
	if (!child_loads_from_tmp())
		assert_line(&run, "ls /tmp 0");
	assert_line(&run, "finalize ok");
	assert_line(&run, "caps eff=0 prm=0 inh=0 bnd=0 amb=0");
	assert_line(&run, "nnp 1");
	assert_line(&run, "thread ok");
	if (have_seccomp()) {
		assert_line(&run, "socket inet EAFNOSUPPORT");
		assert_line(&run, "exec EPERM");
	}
	if (kernel_landlock_abi() > 0)
		assert_line(&run, "open /etc/passwd EACCES");

	ns = PAL_SANDBOX_NS_MOUNT | PAL_SANDBOX_NS_NET | PAL_SANDBOX_NS_IPC | PAL_SANDBOX_NS_PID;
	if (geteuid() != 0)
		ns |= PAL_SANDBOX_NS_USER;
	snprintf(line, sizeof(line), "status ns=%u tmp=%d nnp=1 caps=1 ll=%d sc=%d fin=1", ns,
		 !child_loads_from_tmp(), kernel_landlock_abi(), have_seccomp());
	assert_line(&run, line);

	/* Every namespace asked for differs from the parent's, the others do not. */
	{
		unsigned long long a[6], b[6];
		const char *ns_line_a = strstr(before.out, "ns "), *ns_line_b = strstr(run.out, "ns ");
		const unsigned bits[6] = { PAL_SANDBOX_NS_USER, PAL_SANDBOX_NS_MOUNT, PAL_SANDBOX_NS_NET,
					   PAL_SANDBOX_NS_PID, PAL_SANDBOX_NS_IPC, PAL_SANDBOX_NS_UTS };

		ck_assert_ptr_nonnull(ns_line_a);
		ck_assert_ptr_nonnull(ns_line_b);
		ck_assert_int_eq(sscanf(ns_line_a, "ns user=%llu mnt=%llu net=%llu pid=%llu ipc=%llu uts=%llu",
					&a[0], &a[1], &a[2], &a[3], &a[4], &a[5]), 6);
		ck_assert_int_eq(sscanf(ns_line_b, "ns user=%llu mnt=%llu net=%llu pid=%llu ipc=%llu uts=%llu",
					&b[0], &b[1], &b[2], &b[3], &b[4], &b[5]), 6);
		for (int i = 0; i < 6; i++)
			ck_assert_msg((a[i] != b[i]) == !!(ns & bits[i]), "namespace %d: %llu vs %llu", i,
				      a[i], b[i]);
	}
	remove_dir(dir);
}
END_TEST

/*
 * In the child: has the spawning process killed (its thread reads fd 10's
 * other end) and waits until it is gone (fd 11 is a pipe whose write end
 * only the spawner held).
 */
static int kill_spawner_hook(void *user_data)
{
	struct pollfd pfd = { .fd = 11, .events = POLLIN };

	(void)user_data;
	if (syscall(SYS_write, 10, "x", 1) != 1)
		return -EIO;
	while (syscall(SYS_poll, &pfd, 1, -1) < 0 && errno == EINTR)
		;
	return 0;
}

static void *killer_thread(void *arg)
{
	char c;

	if (read(*(int *)arg, &c, 1) == 1)
		kill(getpid(), SIGKILL);
	return NULL;
}

/*
 * In a new PID namespace getppid() is 0, so the parent-death check cannot
 * compare it: a spawner that dies before the signal is armed must still
 * stop the child before exec.
 */
START_TEST(test_pid_ns_parent_dies)
{
	char dir[64], marker[96];
	pid_t mid, pid;
	int status;

	make_dir(dir, sizeof(dir));
	snprintf(marker, sizeof(marker), "%s/marker", dir);
	ck_assert_int_eq(prctl(PR_SET_CHILD_SUBREAPER, 1L, 0L, 0L, 0L), 0);

	mid = fork();
	ck_assert_int_ge(mid, 0);
	if (mid == 0) {
		PalSandbox *sb = pal_sandbox_new_empty();
		PalSpawn *spawn = pal_spawn_new(PAL_SANDBOX_CHILD);
		PalChild *child = NULL;
		int kill_pipe[2], alive_pipe[2];
		pthread_t thread;

		if (pipe2(kill_pipe, O_CLOEXEC) < 0 || pipe2(alive_pipe, O_CLOEXEC) < 0 ||
		    pthread_create(&thread, NULL, killer_thread, &kill_pipe[0]) != 0)
			_exit(2);
		if (!sb || !spawn ||
		    pal_sandbox_set_namespaces(sb, PAL_SANDBOX_NS_PID, true) < 0 ||
		    pal_sandbox_apply(sb, spawn) < 0 || pal_spawn_add_arg(spawn, "open") < 0 ||
		    pal_spawn_add_arg(spawn, marker) < 0 || pal_spawn_add_arg(spawn, "w") < 0 ||
		    pal_spawn_dup_fd(spawn, kill_pipe[1], 10) < 0 ||
		    pal_spawn_dup_fd(spawn, alive_pipe[0], 11) < 0 ||
		    pal_spawn_set_parent_death_signal(spawn, SIGKILL) < 0 ||
		    pal_spawn_add_hook(spawn, PAL_SPAWN_STAGE_BEFORE_CREDENTIALS, kill_spawner_hook,
				       NULL) < 0)
			_exit(2);
		pal_spawn_run(spawn, &child);
		_exit(3); /* not reached: the hook killed us */
	}

	/* The middle process, then the orphaned child (reparented to us). */
	for (int i = 0; i < 2; i++) {
		pid = waitpid(-1, &status, 0);
		ck_assert_int_gt(pid, 0);
		if (pid == mid)
			ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
				      "middle process: status %#x", status);
		else
			ck_assert_msg(!WIFEXITED(status) || WEXITSTATUS(status) == 127,
				      "orphan: status %#x", status);
	}
	ck_assert_msg(access(marker, F_OK) < 0, "the orphan exec'd its program");
	prctl(PR_SET_CHILD_SUBREAPER, 0L, 0L, 0L, 0L);
	remove_dir(dir);
}
END_TEST

/* The same in fork mode (no CLONE_VM): the granted namespaces reach the child too. */
START_TEST(test_fork_mode)
{
	_cleanup_(pal_sandbox_unrefp) PalSandbox *sb = default_profile();
	struct run run;
	char line[256];
	unsigned ns;

	ck_assert_int_eq(run_child_opts(sb, &(struct run_opts){ .fork_mode = true, .dup_src = -1,
								.pdeathsig = SIGKILL },
					&run, "from-env", "pid", "finalize", "status", "finalize",
					NULL), 0);
	assert_exited(&run, 0);
	assert_line(&run, "pid 1");
	ns = PAL_SANDBOX_NS_MOUNT | PAL_SANDBOX_NS_NET | PAL_SANDBOX_NS_IPC | PAL_SANDBOX_NS_PID |
	     (geteuid() != 0 ? PAL_SANDBOX_NS_USER : 0);
	snprintf(line, sizeof(line), "status ns=%u tmp=%d nnp=1 caps=1 ll=%d sc=%d fin=1", ns,
		 !child_loads_from_tmp(), kernel_landlock_abi(), have_seccomp());
	assert_line(&run, line);
	/* Once is enough; a second finalize says so. */
	assert_line(&run, "finalize EALREADY finalize");
}
END_TEST

START_TEST(test_namespaces_best_effort_refused)
{
	_cleanup_(pal_sandbox_unrefp) PalSandbox *sb = pal_sandbox_new_empty();
	struct run run;
	unsigned ns;
	char line[128];

	/* As an unprivileged process without user namespaces sees it. */
	spawn_refused_ns_flags = CLONE_NEWNET;
	ck_assert_int_eq(pal_sandbox_set_namespaces(sb, PAL_SANDBOX_NS_NET | PAL_SANDBOX_NS_IPC, false), 0);
	ck_assert_int_eq(run_child(sb, &run, "from-env", "status"), 0);
	assert_exited(&run, 0);
	ns = PAL_SANDBOX_NS_IPC | (geteuid() != 0 ? PAL_SANDBOX_NS_USER : 0);
	snprintf(line, sizeof(line), "status ns=%u tmp=0 nnp=0 caps=0 ll=0 sc=0 fin=0", ns);
	assert_line(&run, line);

	/* Required: the spawn fails, and says where. */
	ck_assert_int_eq(pal_sandbox_set_namespaces(sb, PAL_SANDBOX_NS_NET, true), 0);
	{
		PalSpawn *spawn = pal_spawn_new(PAL_SANDBOX_CHILD);
		PalChild *child = NULL;

		ck_assert_int_eq(pal_sandbox_apply(sb, spawn), 0);
		ck_assert_int_eq(pal_spawn_run(spawn, &child), -EPERM);
		ck_assert_str_eq(pal_spawn_get_failed_step(spawn), "namespaces");
		pal_spawn_free(spawn);
	}
	spawn_refused_ns_flags = 0;
}
END_TEST

START_TEST(test_rlimits_fds)
{
	_cleanup_(pal_sandbox_unrefp) PalSandbox *sb = pal_sandbox_new_empty();
	struct run run;
	int leak, passed;

	ck_assert_int_eq(pal_sandbox_set_rlimit(sb, RLIMIT_NOFILE, 64, 128), 0);
	ck_assert_int_eq(pal_sandbox_set_rlimit(sb, RLIMIT_CORE, 0, 0), 0);
	ck_assert_int_eq(pal_sandbox_set_rlimit(sb, RLIMIT_CORE, 2, 1), -EINVAL);
	/* An inheritable fd the child must not get, and one passed on purpose. */
	leak = open("/dev/null", O_RDONLY);
	passed = open("/dev/null", O_RDONLY | O_CLOEXEC);
	ck_assert_int_ge(leak, 0);
	ck_assert_int_ge(passed, 0);
	ck_assert_int_eq(run_child_opts(sb, &(struct run_opts){ .dup_src = passed }, &run,
					"from-env", "rlimit", "nofile", "rlimit", "core", "list-fds",
					"env", PAL_SANDBOX_ENV, NULL), 0);
	assert_exited(&run, 0);
	assert_line(&run, "rlimit nofile 64 128");
	assert_line(&run, "rlimit core 0 0");
	assert_line(&run, "fds 0 1 2 5");
	assert_line(&run, "env PAL_SANDBOX unset");
	close(leak);
	close(passed);
}
END_TEST

START_TEST(test_threads_refused)
{
	_cleanup_(pal_sandbox_unrefp) PalSandbox *sb = default_profile();
	struct run run;

	ck_assert_int_eq(run_child(sb, &run, "from-env", "thread-live", "finalize", "status", "nnp"), 0);
	assert_exited(&run, 0);
	assert_line(&run, "finalize EBUSY threads");
	assert_line(&run, "nnp 0");
}
END_TEST

/*
 * finalize_early before the threads, finalize after: the thread started in
 * between inherited the per-thread steps, and the seccomp filter covers it.
 */
START_TEST(test_finalize_early)
{
	_cleanup_(pal_sandbox_unrefp) PalSandbox *sb = default_profile();
	struct run run;

	ck_assert_int_eq(run_child(sb, &run, "from-env", "worker", "finalize-early", "finalize",
				   "status"), 0);
	assert_line(&run, "finalize-early EBUSY threads");
	assert_line(&run, "finalize EBUSY threads");
	ck_assert_msg(strstr(run.out, " nnp=0 caps=0 ll=0 sc=0 fin=0\n"), "%s", run.out);

	ck_assert_int_eq(run_child(sb, &run, "from-env", "finalize-early", "worker", "finalize",
				   "worker-caps", "worker-open", "/etc/passwd", "finalize-early",
				   "worker-forbidden"), 0);
	assert_line(&run, "finalize-early ok");
	assert_line(&run, "finalize ok");
	assert_line(&run, "worker-caps eff=0 prm=0");
	if (kernel_landlock_abi() > 0)
		assert_line(&run, "worker-open /etc/passwd EACCES");
	assert_line(&run, "finalize-early EALREADY finalize");
	if (have_seccomp()) {
		ck_assert_msg(WIFSIGNALED(run.status) && WTERMSIG(run.status) == SIGSYS,
			      "status %#x, output:\n%s", run.status, run.out);
		assert_no_line(&run, "worker-forbidden returned");
	}
}
END_TEST

START_TEST(test_malformed_env)
{
	struct run run;

	ck_assert_int_eq(run_child_opts(NULL, &(struct run_opts){ .dup_src = -1, .env_key = PAL_SANDBOX_ENV,
								  .env_value = "v=1;nnp=1;garbage" },
					&run, "from-env", "env", PAL_SANDBOX_ENV, "status", NULL), 0);
	assert_exited(&run, 0);
	ck_assert_str_eq(run.out, "from-env EINVAL\nenv PAL_SANDBOX unset\n"
				  "status ns=0 tmp=0 nnp=0 caps=0 ll=0 sc=0 fin=0\n");

	ck_assert_int_eq(run_child(NULL, &run, "from-env", "finalize"), 0);
	ck_assert_str_eq(run.out, "from-env none\nfinalize EINVAL -\n");
}
END_TEST

/* A table of malformed values: every one is rejected. */
START_TEST(test_decoder_table)
{
	static const char *const bad[] = {
		"",
		";",
		"v=1",
		"v=2;nnp=1;caps=1;tmp=1;ll=1;llmin=0;sc=1",
		"nnp=1;v=1;caps=1;tmp=1;ll=1;llmin=0;sc=1",
		"p=1:2f;v=1;nnp=1;caps=1;tmp=1;ll=1;llmin=0;sc=1",
		"s=read;v=1;nnp=1;caps=1;tmp=1;ll=1;llmin=0;sc=1",
		"v=1;nnp=1;caps=1;tmp=1;ll=1;llmin=0;sc=1;",
		"v=1;nnp=1;caps=1;tmp=1;ll=1;llmin=0;sc=1;;",
		"v=1;nnp=1;nnp=1;caps=1;tmp=1;ll=1;llmin=0;sc=1",
		"v=1;nnp=2;caps=1;tmp=1;ll=1;llmin=0;sc=1",
		"v=1;nnp=01;caps=1;tmp=1;ll=1;llmin=0;sc=1",
		"v=1;nnp=-1;caps=1;tmp=1;ll=1;llmin=0;sc=1",
		"v=1;nnp=;caps=1;tmp=1;ll=1;llmin=0;sc=1",
		"v=1;nnp=1;caps=1;tmp=1;ll=1;llmin=99999999999;sc=1",
		"v=1;nnp=1;caps=1;tmp=1;ll=1;llmin=65536;sc=1",
		"v=1;nnp=1;caps=1;tmp=1;ll=0;llmin=3;sc=1",
		"v=1;nnp=1;caps=1;tmp=1;ll=1;llmin=0;sc=3",
		"v=1;nnp=1;caps=1;tmp=1;ll=1;llmin=0;sc=1;x=1",
		"v=1;nnp=1;caps=1;tmp=1;ll=1;llmin=0;sc=1;=1",
		"v=1;nnp=1;caps=1;tmp=1;ll=1;llmin=0;sc=1;nnp",
		"v=1;nnp=1;caps=1;tmp=1;ll=1;llmin=0;sc=1;p=1:",
		"v=1;nnp=1;caps=1;tmp=1;ll=1;llmin=0;sc=1;p=0:2f",
		"v=1;nnp=1;caps=1;tmp=1;ll=1;llmin=0;sc=1;p=8:2f",
		"v=1;nnp=1;caps=1;tmp=1;ll=1;llmin=0;sc=1;p=1:2",
		"v=1;nnp=1;caps=1;tmp=1;ll=1;llmin=0;sc=1;p=1:2F",
		"v=1;nnp=1;caps=1;tmp=1;ll=1;llmin=0;sc=1;p=1:74",	/* relative */
		"v=1;nnp=1;caps=1;tmp=1;ll=1;llmin=0;sc=1;p=1:2f00",	/* NUL */
		"v=1;nnp=1;caps=1;tmp=1;ll=1;llmin=0;sc=1;p=12f",
		"v=1;nnp=1;caps=1;tmp=1;ll=1;llmin=0;sc=1;s=",
		"v=1;nnp=1;caps=1;tmp=1;ll=1;llmin=0;sc=1;s=Read",
		"v=1;nnp=1;caps=1;tmp=1;ll=1;llmin=0;sc=1;s=re ad",
		"v=1;nnp=1;caps=1;tmp=1;ll=1;llmin=0;sc=1;g=1",
		"v=1;nnp=1;caps=1;tmp=1;ll=1;llmin=0;sc=1;g=0000000g",
		"v=1;nnp=1;caps=1;tmp=1;ll=1;llmin=0;sc=1;g=00000001",	/* not a namespace */
		"v=1;nnp=1;caps=1;tmp=1;ll=1;llmin=0;sc=1;g=00020000;g=00020000",
	};
	PalSandbox *sb = NULL;
	char *big;
	int granted;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(sandbox_decode(bad[i], &sb, &granted) == -EINVAL, "accepted: %s", bad[i]);

	/* Too many syscalls, too long a value. */
	big = malloc(SANDBOX_MAX_ENV + 64);
	ck_assert_ptr_nonnull(big);
	strcpy(big, "v=1;nnp=1;caps=1;tmp=1;ll=1;llmin=0;sc=1");
	for (int i = 0; i <= SANDBOX_MAX_SYSCALLS; i++)
		sprintf(big + strlen(big), ";s=x%d", i);
	ck_assert_int_eq(sandbox_decode(big, &sb, &granted), -EINVAL);
	memset(big, 'a', SANDBOX_MAX_ENV + 1);
	big[SANDBOX_MAX_ENV + 1] = '\0';
	ck_assert_int_eq(sandbox_decode(big, &sb, &granted), -EINVAL);
	free(big);

	/* And a good one round-trips. */
	ck_assert_int_eq(sandbox_decode("v=1;nnp=1;caps=0;tmp=1;ll=1;llmin=3;sc=2;p=3:2f746d70;"
					"s=inotify_init1;g=10020000", &sb, &granted), 0);
	ck_assert(sb->no_new_privs && !sb->drop_capabilities && sb->private_tmp && sb->landlock);
	ck_assert_int_eq(sb->landlock_min_abi, 3);
	ck_assert_int_eq(sb->seccomp, PAL_SANDBOX_SECCOMP_LOG);
	ck_assert_uint_eq(sb->n_paths, 1);
	ck_assert_str_eq(sb->paths[0].path, "/tmp");
	ck_assert_uint_eq(sb->paths[0].access, 3);
	ck_assert_uint_eq(sb->n_syscalls, 1);
	ck_assert_int_eq(granted, CLONE_NEWUSER | CLONE_NEWNS);
	{
		char *enc = sandbox_encode(sb, sb->private_tmp);

		ck_assert_str_eq(enc, "v=1;nnp=1;caps=0;tmp=1;ll=1;llmin=3;sc=2;p=3:2f746d70;s=inotify_init1");
		free(enc);
	}
	pal_sandbox_unref(sb);
}
END_TEST

/* Random mutations of a valid value: the decoder never crashes or overreads. */
START_TEST(test_decoder_mutations)
{
	static const char good[] = "v=1;nnp=1;caps=1;tmp=1;ll=1;llmin=0;sc=1;p=7:2f;s=read;g=10000000";
	static const char alphabet[] = "v=;:0123456789abcdefgps_/\xff";
	unsigned seed = 12345;

	for (int iter = 0; iter < 20000; iter++) {
		char buf[sizeof(good)];
		PalSandbox *sb = NULL;
		int granted;

		memcpy(buf, good, sizeof(good));
		for (int k = 0; k < 1 + iter % 4; k++) {
			seed = seed * 1103515245 + 12345;
			size_t pos = (seed >> 8) % (sizeof(good) - 1);
			seed = seed * 1103515245 + 12345;
			buf[pos] = alphabet[(seed >> 8) % (sizeof(alphabet) - 1)];
		}
		if (sandbox_decode(buf, &sb, &granted) == 0)
			pal_sandbox_unref(sb);
	}
}
END_TEST

START_TEST(test_api_errors)
{
	_cleanup_(pal_sandbox_unrefp) PalSandbox *sb = pal_sandbox_new();

	ck_assert_ptr_null(pal_sandbox_unref(NULL));
	ck_assert_int_eq(pal_sandbox_set_namespaces(sb, 1U << 10, false), -EINVAL);
	ck_assert_int_eq(pal_sandbox_allow_path(sb, "relative", PAL_SANDBOX_FS_READ), -EINVAL);
	ck_assert_int_eq(pal_sandbox_allow_path(sb, "/", 0), -EINVAL);
	ck_assert_int_eq(pal_sandbox_allow_path(sb, "/", 8), -EINVAL);
	ck_assert_int_eq(pal_sandbox_set_seccomp(sb, 7), -EINVAL);
	ck_assert_int_eq(pal_sandbox_require_landlock_abi(sb, -1), -EINVAL);
	ck_assert_int_eq(pal_sandbox_finalize(NULL), -EINVAL);
	ck_assert_int_eq(pal_sandbox_apply(sb, NULL), -EINVAL);
	ck_assert_ptr_null(pal_sandbox_get_failed_step(sb));
	for (int i = 0; i < SANDBOX_MAX_RLIMITS; i++)
		ck_assert_int_eq(pal_sandbox_set_rlimit(sb, i, 1, 1), 0);
	ck_assert_int_eq(pal_sandbox_set_rlimit(sb, RLIMIT_NOFILE, 1, 1), 0); /* replaces */
	ck_assert_int_eq(pal_sandbox_set_rlimit(sb, -1, 1, 1), -EINVAL);
}
END_TEST

/* ---- suite "sandbox-root" ------------------------------------------------ */

/* no_new_privs: a set-user-ID root binary does not make a sandboxed child root. */
START_TEST(test_no_new_privs_setuid)
{
	_cleanup_(pal_sandbox_unrefp) PalSandbox *with = pal_sandbox_new_empty();
	_cleanup_(pal_sandbox_unrefp) PalSandbox *without = pal_sandbox_new_empty();
	char dir[64], copy[128], cmd[512];
	struct run run;

	make_dir(dir, sizeof(dir));
	ck_assert_int_eq(chmod(dir, 0755), 0);
	snprintf(copy, sizeof(copy), "%s/euid", dir);
	snprintf(cmd, sizeof(cmd), "cp '%s' '%s' && chown 0:0 '%s' && chmod 4755 '%s'", PAL_TEST_EUID,
		 copy, copy, copy);
	ck_assert_int_eq(system(cmd), 0);

	ck_assert_int_eq(pal_sandbox_set_no_new_privs(with, true), 0);
	ck_assert_int_eq(pal_sandbox_set_uid(with, NOBODY), 0);
	ck_assert_int_eq(pal_sandbox_set_gid(with, NOBODY), 0);
	ck_assert_int_eq(pal_sandbox_set_uid(without, NOBODY), 0);
	ck_assert_int_eq(pal_sandbox_set_gid(without, NOBODY), 0);

	/* The control: without no_new_privs the binary does make it root. */
	ck_assert_int_eq(run_child(without, &run, "from-env", "finalize", "exec", copy), 0);
	assert_line(&run, "euid 0");
	ck_assert_int_eq(run_child(with, &run, "from-env", "finalize", "exec", copy), 0);
	assert_line(&run, "finalize ok");
	assert_line(&run, "euid 65534");
	remove_dir(dir);
}
END_TEST

/* A root parent's child that becomes nobody: no user namespace, bounding set dropped at spawn. */
START_TEST(test_root_to_nobody)
{
	_cleanup_(pal_sandbox_unrefp) PalSandbox *sb = default_profile();
	struct run run;
	char line[128];

	ck_assert_int_eq(pal_sandbox_set_uid(sb, NOBODY), 0);
	ck_assert_int_eq(pal_sandbox_set_gid(sb, NOBODY), 0);
	ck_assert_int_eq(run_child(sb, &run, "from-env", "ids", "caps", "finalize", "status", "caps"), 0);
	assert_exited(&run, 0);
	assert_line(&run, "ids 65534 65534 65534 65534");
	assert_line(&run, "finalize ok");
	assert_line(&run, "caps eff=0 prm=0 inh=0 bnd=0 amb=0");
	snprintf(line, sizeof(line), "status ns=%u tmp=%d nnp=1 caps=1 ll=%d sc=%d fin=1",
		 PAL_SANDBOX_NS_MOUNT | PAL_SANDBOX_NS_NET | PAL_SANDBOX_NS_IPC | PAL_SANDBOX_NS_PID,
		 !child_loads_from_tmp(), kernel_landlock_abi(), have_seccomp() ? 1 : 0);
	assert_line(&run, line);

	/* A user namespace keeps the spawner's ids: asking for another uid is refused. */
	ck_assert_int_eq(pal_sandbox_set_namespaces(sb, PAL_SANDBOX_NS_USER, false), 0);
	{
		PalSpawn *spawn = pal_spawn_new(PAL_SANDBOX_CHILD);

		ck_assert_int_eq(pal_sandbox_apply(sb, spawn), -EINVAL);
		pal_spawn_free(spawn);
	}
}
END_TEST

/*
 * A spawner that left root is not dumpable: the user namespace (and, so
 * unprivileged, every namespace) is left out when best effort; required,
 * the spawn fails at "dumpable" before any clone().
 */
START_TEST(test_non_dumpable_spawner)
{
	_cleanup_(pal_sandbox_unrefp) PalSandbox *sb = default_profile();
	struct run run;
	char line[128];

	if (getenv("CK_FORK") && strcmp(getenv("CK_FORK"), "no") == 0)
		return; /* the uid change would outlive the test */
	ck_assert_int_eq(setgroups(0, NULL), 0);
	ck_assert_int_eq(setresgid(NOBODY, NOBODY, NOBODY), 0);
	ck_assert_int_eq(setresuid(NOBODY, NOBODY, NOBODY), 0);
	ck_assert_int_eq(prctl(PR_GET_DUMPABLE, 0, 0, 0, 0), 0);
	ck_assert_int_eq(run_child(sb, &run, "from-env", "finalize", "status"), 0);
	assert_exited(&run, 0);
	snprintf(line, sizeof(line), "status ns=0 tmp=0 nnp=1 caps=1 ll=%d sc=%d fin=1",
		 kernel_landlock_abi(), have_seccomp() ? 1 : 0);
	assert_line(&run, line);

	ck_assert_int_eq(pal_sandbox_set_namespaces(sb, PAL_SANDBOX_NS_USER, true), 0);
	PalSpawn *spawn = pal_spawn_new(PAL_SANDBOX_CHILD);
	PalChild *child = NULL;
	ck_assert_int_eq(pal_sandbox_apply(sb, spawn), 0);
	ck_assert_int_eq(pal_spawn_run(spawn, &child), -EPERM);
	ck_assert_str_eq(pal_spawn_get_failed_step(spawn), "dumpable");
	pal_spawn_free(spawn);
}
END_TEST

/* Capabilities of a root child: there before finalize, gone after. */
START_TEST(test_root_capabilities)
{
	_cleanup_(pal_sandbox_unrefp) PalSandbox *sb = pal_sandbox_new_empty();
	struct run run;

	ck_assert_int_eq(pal_sandbox_set_drop_capabilities(sb, true), 0);
	ck_assert_int_eq(run_child(sb, &run, "from-env", "caps", "finalize", "caps", "status"), 0);
	assert_exited(&run, 0);
	ck_assert_msg(strstr(run.out, "caps eff=1ff"), "root child without capabilities:\n%s", run.out);
	assert_line(&run, "caps eff=0 prm=0 inh=0 bnd=0 amb=0");
	assert_line(&run, "status ns=0 tmp=0 nnp=0 caps=1 ll=0 sc=0 fin=1");
}
END_TEST

/* Re-runs the suite "sandbox" as nobody. */
START_TEST(test_unprivileged)
{
	char exe[PATH_MAX];
	PalSpawn *spawn;
	PalChild *child = NULL;
	ssize_t n;
	int r, status;

	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	ck_assert_int_gt(n, 0);
	exe[n] = '\0';
	if (access(exe, X_OK) < 0)
		return;
	spawn = pal_spawn_new(exe);
	ck_assert_int_eq(pal_spawn_env_set(spawn, "CK_RUN_SUITE", "sandbox"), 0);
	ck_assert_int_eq(pal_spawn_env_set(spawn, "PAL_TEST_SANDBOX_NESTED", "1"), 0);
	ck_assert_int_eq(pal_spawn_set_uid(spawn, NOBODY), 0);
	ck_assert_int_eq(pal_spawn_set_gid(spawn, NOBODY), 0);
	r = pal_spawn_run(spawn, &child);
	if (r == -EACCES) {
		fprintf(stderr, "test-sandbox: the build tree is not reachable by uid %d: "
				"unprivileged variant skipped\n", NOBODY);
		pal_spawn_free(spawn);
		return;
	}
	ck_assert_int_eq(r, 0);
	ck_assert_int_eq(pal_child_wait(child, &status), 0);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		      "the suite failed as uid %d (status %#x)", NOBODY, status);
	pal_child_free(child);
	pal_spawn_free(spawn);
}
END_TEST

static Suite *sandbox_suite(void)
{
	Suite *s = suite_create("sandbox");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_landlock_paths);
	tcase_add_test(tc, test_landlock_required_abi);
	tcase_add_test(tc, test_copy_equal);
	tcase_add_test(tc, test_to_env);
	tcase_add_test(tc, test_tsan_report);
	tcase_add_test(tc, test_seccomp_exec_socket);
	tcase_add_test(tc, test_seccomp_kill);
	tcase_add_test(tc, test_seccomp_log);
	tcase_add_test(tc, test_seccomp_allow_syscall);
	tcase_add_test(tc, test_default_profile);
	tcase_add_test(tc, test_program_under_tmp);
	tcase_add_test(tc, test_fork_mode);
	tcase_add_test(tc, test_namespaces_best_effort_refused);
	tcase_add_test(tc, test_pid_ns_parent_dies);
	tcase_add_test(tc, test_rlimits_fds);
	tcase_add_test(tc, test_threads_refused);
	tcase_add_test(tc, test_finalize_early);
	tcase_add_test(tc, test_malformed_env);
	tcase_add_test(tc, test_decoder_table);
	tcase_add_test(tc, test_decoder_mutations);
	tcase_add_test(tc, test_api_errors);
	suite_add_tcase(s, tc);
	return s;
}

static Suite *root_suite(void)
{
	Suite *s = suite_create("sandbox-root");
	TCase *tc = tcase_create("root");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_no_new_privs_setuid);
	tcase_add_test(tc, test_root_to_nobody);
	tcase_add_test(tc, test_non_dumpable_spawner);
	tcase_add_test(tc, test_root_capabilities);
	tcase_add_test(tc, test_unprivileged);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	const char *preload = getenv("LD_PRELOAD");
	SRunner *sr;
	int failed;

	if (preload && strstr(preload, "vgpreload")) {
		fprintf(stderr, "test-sandbox: skipped under valgrind (seccomp filters would apply to it)\n");
		return 77;
	}
	sr = srunner_create(sandbox_suite());
	if (geteuid() == 0 && !getenv("PAL_TEST_SANDBOX_NESTED"))
		srunner_add_suite(sr, root_suite());
	else if (geteuid() != 0)
		fprintf(stderr, "test-sandbox: not root: the suite sandbox-root is skipped\n");
	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
