/* SPDX-License-Identifier: MIT */
/*
 * Tests of pal-spawn.h with real processes: the helper pal-test-child
 * prints what it sees (fds, environment, argv, signal state...) and the
 * tests compare that with what they asked for. Most tests run twice, in
 * vfork mode (_i == 0) and in fork mode (_i == 1).
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <pal/pal.h>

#include "pal-test-util.h"

#ifdef PAL_TEST_FALLBACK
#include <sched.h>

#include "spawn-private.h"
#endif

#ifndef PAL_TEST_CHILD
#error "PAL_TEST_CHILD must name the helper program"
#endif

/* Fds the tests create are moved here, out of the way of the targets. */
#define HIGH_FD 300

/* Bound for waiting on something that should happen promptly. */
#define PROMPT_MS 10000

#define VFORK_MODE (_i == 0)

extern char **environ;

/* Moves @fd to the first free number >= HIGH_FD, keeping its CLOEXEC state. */
static int move_high(int fd)
{
	int flags = fcntl(fd, F_GETFD);
	int high;

	ck_assert_int_ge(flags, 0);
	high = fcntl(fd, (flags & FD_CLOEXEC) ? F_DUPFD_CLOEXEC : F_DUPFD, HIGH_FD);
	ck_assert_int_ge(high, HIGH_FD);
	close(fd);
	return high;
}

/* A pipe at high numbers; both ends close-on-exec unless @inheritable. */
static void high_pipe(int fds[2], bool inheritable)
{
	ck_assert_int_eq(pipe2(fds, inheritable ? 0 : O_CLOEXEC), 0);
	fds[0] = move_high(fds[0]);
	fds[1] = move_high(fds[1]);
}

/* A file with an inode of its own, at a high number, not close-on-exec. */
static int new_file(void)
{
	int fd = memfd_create("pal-test", 0);

	ck_assert_int_ge(fd, 0);
	return move_high(fd);
}

/* The line pal-test-child prints for "fdinfo @num" when @num is @file. */
static void fdinfo_line(char *buf, size_t size, int num, int file)
{
	struct stat st;

	ck_assert_int_eq(fstat(file, &st), 0);
	snprintf(buf, size, "fdinfo %d %ju %ju\n", num, (uintmax_t)st.st_dev, (uintmax_t)st.st_ino);
}

static void devnull_line(char *buf, size_t size, int num)
{
	struct stat st;

	ck_assert_int_eq(stat("/dev/null", &st), 0);
	snprintf(buf, size, "fdinfo %d %ju %ju\n", num, (uintmax_t)st.st_dev, (uintmax_t)st.st_ino);
}

/* Reads @fd to end of file into a NUL-terminated string. */
static char *read_all(int fd)
{
	size_t len = 0, cap = 256;
	char *buf = malloc(cap);

	ck_assert_ptr_nonnull(buf);
	for (;;) {
		ssize_t n;

		if (cap - len < 128) {
			cap *= 2;
			buf = realloc(buf, cap);
			ck_assert_ptr_nonnull(buf);
		}
		n = read(fd, buf + len, cap - len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		ck_assert_int_ge(n, 0);
		if (n == 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	return buf;
}

/*
 * A builder for the helper with the given commands (NULL-terminated).
 * @vfork is an int: va_start() after a parameter that undergoes default
 * argument promotion (bool) is undefined behaviour.
 */
static PalSpawn *helper_new(int vfork, ...)
{
	PalSpawn *spawn = pal_spawn_new(PAL_TEST_CHILD);
	const char *arg;
	va_list ap;

	ck_assert_ptr_nonnull(spawn);
	ck_assert_int_eq(pal_spawn_set_vfork(spawn, vfork), 0);
	/* Known stdio: stdin /dev/null, stderr the test's (for diagnostics). */
	ck_assert_int_eq(pal_spawn_set_stdin(spawn, PAL_STDIO_NULL, -1), 0);
	ck_assert(fd_is_open(STDERR_FILENO));
	ck_assert_int_eq(pal_spawn_set_stderr(spawn, PAL_STDIO_FD, STDERR_FILENO), 0);

	va_start(ap, vfork);
	while ((arg = va_arg(ap, const char *)))
		ck_assert_int_eq(pal_spawn_add_arg(spawn, arg), 0);
	va_end(ap);
	return spawn;
}

static void assert_run_ok(PalSpawn *spawn, int r)
{
	ck_assert_msg(r == 0, "pal_spawn_run: %s (step %s)", strerror(-r),
		      pal_spawn_get_failed_step(spawn) ? pal_spawn_get_failed_step(spawn) : "none");
	ck_assert_ptr_null(pal_spawn_get_failed_step(spawn));
}

/* Waits for @child, which must exit with status 0, and frees it. */
static void wait_success(PalChild *child)
{
	int status = -1;

	ck_assert_int_eq(pal_child_wait(child, &status), 0);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status 0x%x", status);
	pal_child_free(child);
}

/*
 * Runs @spawn with stdout to a pipe; returns everything the child printed
 * after checking that it exited with status 0.
 */
static char *run_output(PalSpawn *spawn)
{
	PalChild *child = NULL;
	int out[2];
	char *text;

	high_pipe(out, false);
	ck_assert_int_eq(pal_spawn_set_stdout(spawn, PAL_STDIO_FD, out[1]), 0);
	assert_run_ok(spawn, pal_spawn_run(spawn, &child));
	ck_assert_ptr_nonnull(child);
	close(out[1]);
	text = read_all(out[0]);
	close(out[0]);
	wait_success(child);
	return text;
}

/* Runs @spawn, which must fail with @err at @step. */
static void assert_run_fails(PalSpawn *spawn, int err, const char *step)
{
	PalChild *child = NULL;
	int r;

	r = pal_spawn_run(spawn, &child);
	ck_assert_msg(r == err, "pal_spawn_run: got %d (%s), expected %d (%s)", r, strerror(-r), err,
		      strerror(-err));
	ck_assert_ptr_null(child);
	ck_assert_ptr_nonnull(pal_spawn_get_failed_step(spawn));
	ck_assert_str_eq(pal_spawn_get_failed_step(spawn), step);
	/* the failed child was reaped */
	ck_assert_int_eq(waitpid(-1, NULL, WNOHANG), -1);
	ck_assert_int_eq(errno, ECHILD);
}

/*
 * Places @files[i] at fd number @nums[i] (close-on-exec as @cloexec says),
 * runs @spawn, and puts back whatever was at those numbers before (the Check
 * runner keeps a file at 3). Nothing may assert while the fds are moved.
 */
static int run_placed(PalSpawn *spawn, const int *files, const int *nums, const bool *cloexec,
		      size_t n, PalChild **ret_child)
{
	int saved[8], saved_flags[8], placed = 0, r;

	ck_assert_uint_le(n, 8);
	for (size_t i = 0; i < n; i++) {
		saved_flags[i] = fcntl(nums[i], F_GETFD);
		saved[i] = saved_flags[i] >= 0 ? fcntl(nums[i], F_DUPFD_CLOEXEC, HIGH_FD) : -1;
	}
	for (size_t i = 0; i < n; i++)
		if (dup3(files[i], nums[i], cloexec[i] ? O_CLOEXEC : 0) == nums[i])
			placed++;

	r = placed == (int)n ? pal_spawn_run(spawn, ret_child) : -EBADFD;

	for (size_t i = 0; i < n; i++) {
		if (saved[i] >= 0) {
			dup2(saved[i], nums[i]);
			fcntl(nums[i], F_SETFD, saved_flags[i]);
			close(saved[i]);
		} else {
			close(nums[i]);
		}
	}
	ck_assert_int_eq(placed, (int)n);
	return r;
}

/* ---- fd remapping ------------------------------------------------------ */

START_TEST(test_remap_no_leak)
{
	char expect[1024], line[128];
	PalSpawn *spawn;
	int a, b, c, stray, stray_pipe[2], stray_cloexec;
	char *out;

	a = new_file();
	b = new_file();
	c = new_file();
	/* fds the child must not see: inheritable ones included */
	stray = new_file();
	high_pipe(stray_pipe, true);
	stray_cloexec = move_high(open("/dev/null", O_RDONLY | O_CLOEXEC));

	spawn = helper_new(VFORK_MODE, "list-fds", "fdinfo", "3", "fdinfo", "4", "fdinfo", "100", NULL);
	ck_assert_int_eq(pal_spawn_dup_fd(spawn, a, 3), 0);
	ck_assert_int_eq(pal_spawn_dup_fd(spawn, b, 4), 0);
	ck_assert_int_eq(pal_spawn_dup_fd(spawn, c, 100), 0);
	out = run_output(spawn);

	snprintf(expect, sizeof(expect), "fds 0 1 2 3 4 100\n");
	fdinfo_line(line, sizeof(line), 3, a);
	strcat(expect, line);
	fdinfo_line(line, sizeof(line), 4, b);
	strcat(expect, line);
	fdinfo_line(line, sizeof(line), 100, c);
	strcat(expect, line);
	ck_assert_str_eq(out, expect);

	/* the parent's fds are untouched */
	ck_assert(fd_is_open(a) && fd_is_open(stray) && fd_is_open(stray_pipe[0]));
	ck_assert_int_eq(fcntl(a, F_GETFD) & FD_CLOEXEC, 0);

	free(out);
	pal_spawn_free(spawn);
	close(a);
	close(b);
	close(c);
	close(stray);
	close(stray_pipe[0]);
	close(stray_pipe[1]);
	close(stray_cloexec);
}
END_TEST

START_TEST(test_remap_swap)
{
	static const int nums[] = { 3, 4 };
	static const bool cloexec[] = { true, true };
	char expect[1024], line[128];
	PalChild *child = NULL;
	PalSpawn *spawn;
	int files[2], out[2], r;
	char *text;

	files[0] = new_file();
	files[1] = new_file();
	high_pipe(out, false);

	spawn = helper_new(VFORK_MODE, "list-fds", "fdinfo", "3", "fdinfo", "4", NULL);
	ck_assert_int_eq(pal_spawn_set_stdout(spawn, PAL_STDIO_FD, out[1]), 0);
	ck_assert_int_eq(pal_spawn_dup_fd(spawn, 3, 4), 0);
	ck_assert_int_eq(pal_spawn_dup_fd(spawn, 4, 3), 0);
	r = run_placed(spawn, files, nums, cloexec, 2, &child);
	assert_run_ok(spawn, r);
	close(out[1]);
	text = read_all(out[0]);
	wait_success(child);

	snprintf(expect, sizeof(expect), "fds 0 1 2 3 4\n");
	fdinfo_line(line, sizeof(line), 3, files[1]);
	strcat(expect, line);
	fdinfo_line(line, sizeof(line), 4, files[0]);
	strcat(expect, line);
	ck_assert_str_eq(text, expect);

	free(text);
	pal_spawn_free(spawn);
	close(out[0]);
	close(files[0]);
	close(files[1]);
}
END_TEST

/*
 * 3 -> 3 (src == target) and 3 -> 4 share a source; 4 -> 5 reads a number
 * that is itself a target; 5 -> 100 likewise, to a high target; 6 -> 6 is
 * close-on-exec in the parent and must arrive all the same.
 */
START_TEST(test_remap_chain)
{
	static const int nums[] = { 3, 4, 5, 6 };
	static const bool cloexec[] = { false, true, false, true };
	char expect[1024], line[128];
	PalChild *child = NULL;
	PalSpawn *spawn;
	int files[4], out[2], r;
	char *text;

	for (int i = 0; i < 4; i++)
		files[i] = new_file();
	high_pipe(out, false);

	spawn = helper_new(VFORK_MODE, "list-fds", "fdinfo", "3", "fdinfo", "4", "fdinfo", "5",
			   "fdinfo", "6", "fdinfo", "100", NULL);
	ck_assert_int_eq(pal_spawn_set_stdout(spawn, PAL_STDIO_FD, out[1]), 0);
	ck_assert_int_eq(pal_spawn_dup_fd(spawn, 3, 3), 0);
	ck_assert_int_eq(pal_spawn_dup_fd(spawn, 3, 4), 0);
	ck_assert_int_eq(pal_spawn_dup_fd(spawn, 4, 5), 0);
	ck_assert_int_eq(pal_spawn_dup_fd(spawn, 5, 100), 0);
	ck_assert_int_eq(pal_spawn_dup_fd(spawn, 6, 6), 0);
	r = run_placed(spawn, files, nums, cloexec, 4, &child);
	assert_run_ok(spawn, r);
	close(out[1]);
	text = read_all(out[0]);
	wait_success(child);

	snprintf(expect, sizeof(expect), "fds 0 1 2 3 4 5 6 100\n");
	fdinfo_line(line, sizeof(line), 3, files[0]);
	strcat(expect, line);
	fdinfo_line(line, sizeof(line), 4, files[0]);
	strcat(expect, line);
	fdinfo_line(line, sizeof(line), 5, files[1]);
	strcat(expect, line);
	fdinfo_line(line, sizeof(line), 6, files[3]);
	strcat(expect, line);
	fdinfo_line(line, sizeof(line), 100, files[2]);
	strcat(expect, line);
	ck_assert_str_eq(text, expect);

	free(text);
	pal_spawn_free(spawn);
	close(out[0]);
	for (int i = 0; i < 4; i++)
		close(files[i]);
}
END_TEST

/* A later mapping replaces an earlier one; a stdio mode wins over a mapping. */
START_TEST(test_remap_replace)
{
	char expect[1024], line[128];
	PalSpawn *spawn;
	int a, b;
	char *out;

	a = new_file();
	b = new_file();
	spawn = helper_new(VFORK_MODE, "list-fds", "fdinfo", "3", NULL);
	ck_assert_int_eq(pal_spawn_dup_fd(spawn, a, 3), 0);
	ck_assert_int_eq(pal_spawn_dup_fd(spawn, b, 3), 0);
	/* stdout goes to run_output()'s pipe, not to a */
	ck_assert_int_eq(pal_spawn_dup_fd(spawn, a, 1), 0);
	out = run_output(spawn);

	snprintf(expect, sizeof(expect), "fds 0 1 2 3\n");
	fdinfo_line(line, sizeof(line), 3, b);
	strcat(expect, line);
	ck_assert_str_eq(out, expect);

	free(out);
	pal_spawn_free(spawn);
	close(a);
	close(b);
}
END_TEST

/* With closing turned off, exactly the inheritable fds arrive. */
START_TEST(test_close_other_fds_off)
{
	char expect[8192], snapshot[8192], *tok, *save = NULL;
	PalSpawn *spawn;
	int stray, stray_cloexec, target, fds[1024];
	size_t n;
	char *out;

	stray = new_file();
	stray_cloexec = move_high(open("/dev/null", O_RDONLY | O_CLOEXEC));
	target = new_file();

	spawn = helper_new(VFORK_MODE, "list-fds", NULL);
	ck_assert_int_eq(pal_spawn_set_close_other_fds(spawn, false), 0);
	ck_assert_int_eq(pal_spawn_dup_fd(spawn, target, 7), 0);
	out = run_output(spawn);

	/*
	 * Expected: 0 1 2, 7, and every fd of ours >= 3 without FD_CLOEXEC
	 * (run_output's pipe is close-on-exec), in order.
	 */
	fd_snapshot(snapshot, sizeof(snapshot));
	n = 0;
	fds[n++] = 7;
	for (tok = strtok_r(snapshot, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
		int fd = atoi(tok);

		if (fd >= 3 && fd != 7 && !(fcntl(fd, F_GETFD) & FD_CLOEXEC))
			fds[n++] = fd;
	}
	ck_assert_int_ge(n, 2); /* 7 and the stray */
	for (size_t i = 1; i < n; i++)
		for (size_t j = i; j > 0 && fds[j - 1] > fds[j]; j--) {
			int t = fds[j];

			fds[j] = fds[j - 1];
			fds[j - 1] = t;
		}
	strcpy(expect, "fds 0 1 2");
	for (size_t i = 0; i < n; i++)
		snprintf(expect + strlen(expect), sizeof(expect) - strlen(expect), " %d", fds[i]);
	strcat(expect, "\n");
	ck_assert_str_eq(out, expect);
	ck_assert_ptr_nonnull(strstr(out, " 7"));
	snprintf(expect, sizeof(expect), " %d", stray);
	ck_assert_ptr_nonnull(strstr(out, expect));

	free(out);
	pal_spawn_free(spawn);
	close(stray);
	close(stray_cloexec);
	close(target);
}
END_TEST

START_TEST(test_bad_fd)
{
	PalSpawn *spawn;
	int closed = 900, a;

	while (fd_is_open(closed))
		closed++;
	spawn = helper_new(VFORK_MODE, NULL);
	ck_assert_int_eq(pal_spawn_dup_fd(spawn, closed, 3), 0);
	assert_run_fails(spawn, -EBADF, "dup_fd");
	pal_spawn_free(spawn);

	/* src == target, but not open */
	spawn = helper_new(VFORK_MODE, NULL);
	ck_assert_int_eq(pal_spawn_dup_fd(spawn, closed, closed), 0);
	assert_run_fails(spawn, -EBADF, "dup_fd");
	pal_spawn_free(spawn);

	/* a target beyond RLIMIT_NOFILE */
	a = new_file();
	spawn = helper_new(VFORK_MODE, NULL);
	ck_assert_int_eq(pal_spawn_dup_fd(spawn, a, INT_MAX - 1), 0);
	ck_assert_int_lt(pal_spawn_run(spawn, &(PalChild *){ NULL }), 0);
	ck_assert_str_eq(pal_spawn_get_failed_step(spawn), "dup_fd");
	pal_spawn_free(spawn);
	close(a);
}
END_TEST

/*
 * The spawn's own fds (the status pipe, /dev/null) take the lowest free
 * numbers; make those numbers targets. A clobbered status pipe would turn
 * the failed exec below into a success.
 */
START_TEST(test_status_pipe_not_clobbered)
{
	char expect[1024], line[128];
	PalSpawn *spawn;
	int files[4], nums[4], n = 0;
	char *out;

	for (int i = 0; i < 4; i++)
		files[i] = new_file();
	for (int fd = 3; n < 4; fd++)
		if (!fd_is_open(fd))
			nums[n++] = fd;

	spawn = pal_spawn_new("/nonexistent/pal-test-program");
	ck_assert_int_eq(pal_spawn_set_vfork(spawn, VFORK_MODE), 0);
	ck_assert_int_eq(pal_spawn_set_stdin(spawn, PAL_STDIO_NULL, -1), 0);
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(pal_spawn_dup_fd(spawn, files[i], nums[i]), 0);
	assert_run_fails(spawn, -ENOENT, "exec");
	pal_spawn_free(spawn);

	/* and with a successful exec, the targets are what they should be */
	spawn = helper_new(VFORK_MODE, NULL);
	expect[0] = '\0';
	for (int i = 0; i < 4; i++) {
		char num[16];

		snprintf(num, sizeof(num), "%d", nums[i]);
		ck_assert_int_eq(pal_spawn_add_arg(spawn, "fdinfo"), 0);
		ck_assert_int_eq(pal_spawn_add_arg(spawn, num), 0);
		ck_assert_int_eq(pal_spawn_dup_fd(spawn, files[i], nums[i]), 0);
		fdinfo_line(line, sizeof(line), nums[i], files[i]);
		strcat(expect, line);
	}
	out = run_output(spawn);
	ck_assert_str_eq(out, expect);

	free(out);
	pal_spawn_free(spawn);
	for (int i = 0; i < 4; i++)
		close(files[i]);
}
END_TEST

/* ---- stdio --------------------------------------------------------------- */

START_TEST(test_stdio_pipes)
{
	char expect[256];
	PalChild *child = NULL;
	PalSpawn *spawn;
	int out[2], err[2];
	char *out_text, *err_text;

	high_pipe(out, false);
	high_pipe(err, false);
	spawn = helper_new(VFORK_MODE, "echo", "hello", "stderr", "world", "fdinfo", "0", NULL);
	ck_assert_int_eq(pal_spawn_set_stdout(spawn, PAL_STDIO_FD, out[1]), 0);
	ck_assert_int_eq(pal_spawn_set_stderr(spawn, PAL_STDIO_FD, err[1]), 0);
	assert_run_ok(spawn, pal_spawn_run(spawn, &child));
	close(out[1]);
	close(err[1]);
	out_text = read_all(out[0]);
	err_text = read_all(err[0]);
	wait_success(child);

	strcpy(expect, "hello\n");
	devnull_line(expect + strlen(expect), sizeof(expect) - strlen(expect), 0);
	ck_assert_str_eq(out_text, expect);
	ck_assert_str_eq(err_text, "world\n");

	free(out_text);
	free(err_text);
	close(out[0]);
	close(err[0]);
	pal_spawn_free(spawn);
}
END_TEST

START_TEST(test_stdout_file)
{
	PalSpawn *spawn;
	PalChild *child = NULL;
	char buf[64] = { 0 };
	int fd;

	fd = open("/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	ck_assert_int_ge(fd, 0);
	fd = move_high(fd);

	spawn = helper_new(VFORK_MODE, "echo", "to-a-file", NULL);
	ck_assert_int_eq(pal_spawn_set_stdout(spawn, PAL_STDIO_FD, fd), 0);
	assert_run_ok(spawn, pal_spawn_run(spawn, &child));
	wait_success(child);

	ck_assert_int_eq(pread(fd, buf, sizeof(buf) - 1, 0), 10);
	ck_assert_str_eq(buf, "to-a-file\n");
	/* the parent's fd keeps its close-on-exec flag */
	ck_assert(fcntl(fd, F_GETFD) & FD_CLOEXEC);

	close(fd);
	pal_spawn_free(spawn);
}
END_TEST

START_TEST(test_stdin_fd)
{
	PalSpawn *spawn;
	int in[2];
	char *out;

	high_pipe(in, false);
	ck_assert_int_eq(write(in[1], "abcdef", 6), 6);
	close(in[1]);

	spawn = helper_new(VFORK_MODE, "read-stdin", NULL);
	ck_assert_int_eq(pal_spawn_set_stdin(spawn, PAL_STDIO_FD, in[0]), 0);
	out = run_output(spawn);
	ck_assert_str_eq(out, "stdin 6\n");

	free(out);
	close(in[0]);
	pal_spawn_free(spawn);
}
END_TEST

START_TEST(test_stdio_null)
{
	char expect[512];
	PalChild *child = NULL;
	PalSpawn *spawn;
	int out[2];
	char *text;

	high_pipe(out, false);
	spawn = helper_new(VFORK_MODE, "out", "7", "read-stdin", "fdinfo", "0", "fdinfo", "1",
			   "fdinfo", "2", "list-fds", NULL);
	ck_assert_int_eq(pal_spawn_set_stdin(spawn, PAL_STDIO_NULL, -1), 0);
	ck_assert_int_eq(pal_spawn_set_stdout(spawn, PAL_STDIO_NULL, -1), 0);
	ck_assert_int_eq(pal_spawn_set_stderr(spawn, PAL_STDIO_NULL, -1), 0);
	ck_assert_int_eq(pal_spawn_dup_fd(spawn, out[1], 7), 0);
	assert_run_ok(spawn, pal_spawn_run(spawn, &child));
	close(out[1]);
	text = read_all(out[0]);
	wait_success(child);

	strcpy(expect, "stdin 0\n");
	for (int i = 0; i < 3; i++)
		devnull_line(expect + strlen(expect), sizeof(expect) - strlen(expect), i);
	strcat(expect, "fds 0 1 2 7\n");
	ck_assert_str_eq(text, expect);

	free(text);
	close(out[0]);
	pal_spawn_free(spawn);
}
END_TEST

/* ---- environment and argv ---------------------------------------------- */

static size_t environ_count(void)
{
	size_t n = 0;

	while (environ[n])
		n++;
	return n;
}

START_TEST(test_env)
{
	char expect[512];
	PalSpawn *spawn;
	size_t n_env;
	char *out;

	ck_assert_int_eq(setenv("PAL_TEST_INHERITED", "yes", 1), 0);
	ck_assert_int_eq(setenv("PAL_TEST_KEPT", "kept", 1), 0);
	ck_assert_int_eq(setenv("PAL_TEST_OVERRIDDEN", "old", 1), 0);
	unsetenv("PAL_TEST_NEW");
	n_env = environ_count();

	spawn = helper_new(VFORK_MODE, "env", "PAL_TEST_NEW", "env", "PAL_TEST_OVERRIDDEN", "env",
			   "PAL_TEST_INHERITED", "env", "PAL_TEST_KEPT", "env", "PAL_TEST_GONE", "env",
			   "PAL_TEST_BACK", "env-count", NULL);
	ck_assert_int_eq(pal_spawn_env_set(spawn, "PAL_TEST_NEW", "x"), 0);
	ck_assert_int_eq(pal_spawn_env_set(spawn, "PAL_TEST_NEW", "a=b c"), 0);
	ck_assert_int_eq(pal_spawn_env_set(spawn, "PAL_TEST_OVERRIDDEN", "new"), 0);
	ck_assert_int_eq(pal_spawn_env_unset(spawn, "PAL_TEST_INHERITED"), 0);
	ck_assert_int_eq(pal_spawn_env_set(spawn, "PAL_TEST_GONE", "1"), 0);
	ck_assert_int_eq(pal_spawn_env_unset(spawn, "PAL_TEST_GONE"), 0);
	ck_assert_int_eq(pal_spawn_env_unset(spawn, "PAL_TEST_BACK"), 0);
	ck_assert_int_eq(pal_spawn_env_set(spawn, "PAL_TEST_BACK", ""), 0);
	out = run_output(spawn);

	/* +NEW +BACK -INHERITED; OVERRIDDEN replaced, not duplicated */
	snprintf(expect, sizeof(expect),
		 "env PAL_TEST_NEW=a=b c\nenv PAL_TEST_OVERRIDDEN=new\nenv PAL_TEST_INHERITED unset\n"
		 "env PAL_TEST_KEPT=kept\nenv PAL_TEST_GONE unset\nenv PAL_TEST_BACK=\n"
		 "env-count %zu\n",
		 n_env + 1);
	ck_assert_str_eq(out, expect);

	/* the parent's environment is untouched */
	ck_assert_str_eq(getenv("PAL_TEST_INHERITED"), "yes");
	ck_assert_str_eq(getenv("PAL_TEST_OVERRIDDEN"), "old");
	ck_assert_ptr_null(getenv("PAL_TEST_NEW"));

	free(out);
	pal_spawn_free(spawn);
	unsetenv("PAL_TEST_INHERITED");
	unsetenv("PAL_TEST_KEPT");
	unsetenv("PAL_TEST_OVERRIDDEN");
}
END_TEST

START_TEST(test_env_clear)
{
	PalSpawn *spawn;
	char *out;

	spawn = helper_new(VFORK_MODE, "env", "PATH", "env", "BEFORE", "env", "AFTER", "env-count",
			   NULL);
	ck_assert_int_eq(pal_spawn_env_set(spawn, "BEFORE", "1"), 0);
	ck_assert_int_eq(pal_spawn_env_clear(spawn), 0);
	ck_assert_int_eq(pal_spawn_env_set(spawn, "AFTER", "2"), 0);
	out = run_output(spawn);
	ck_assert_str_eq(out, "env PATH unset\nenv BEFORE unset\nenv AFTER=2\nenv-count 1\n");
	free(out);
	pal_spawn_free(spawn);
}
END_TEST

START_TEST(test_env_invalid)
{
	PalSpawn *spawn = pal_spawn_new(PAL_TEST_CHILD);

	ck_assert_int_eq(pal_spawn_env_set(spawn, "", "x"), -EINVAL);
	ck_assert_int_eq(pal_spawn_env_set(spawn, "A=B", "x"), -EINVAL);
	ck_assert_int_eq(pal_spawn_env_set(spawn, NULL, "x"), -EINVAL);
	ck_assert_int_eq(pal_spawn_env_set(spawn, "A", NULL), -EINVAL);
	ck_assert_int_eq(pal_spawn_env_unset(spawn, ""), -EINVAL);
	ck_assert_int_eq(pal_spawn_env_unset(spawn, "A=B"), -EINVAL);
	ck_assert_int_eq(pal_spawn_env_set(spawn, "A", "=x="), 0);
	pal_spawn_free(spawn);
}
END_TEST

START_TEST(test_argv)
{
	static const char *const more[] = { "echo", "two words", "argc", NULL };
	PalSpawn *spawn;
	char *out;

	spawn = helper_new(VFORK_MODE, "argv0", NULL);
	ck_assert_int_eq(pal_spawn_set_arg0(spawn, "custom-name"), 0);
	ck_assert_int_eq(pal_spawn_add_args(spawn, more), 0);
	ck_assert_int_eq(pal_spawn_add_arg(spawn, "echo"), 0);
	ck_assert_int_eq(pal_spawn_add_arg(spawn, ""), 0);
	out = run_output(spawn);
	ck_assert_str_eq(out, "argv0 custom-name\ntwo words\nargc 7\n\n");
	free(out);

	/* argv[0] defaults to the program */
	pal_spawn_free(spawn);
	spawn = helper_new(VFORK_MODE, "argv0", NULL);
	out = run_output(spawn);
	ck_assert_str_eq(out, "argv0 " PAL_TEST_CHILD "\n");
	free(out);
	pal_spawn_free(spawn);
}
END_TEST

/* ---- exec and failures --------------------------------------------------- */

START_TEST(test_exec_missing)
{
	PalSpawn *spawn;

	spawn = pal_spawn_new("/nonexistent/pal-test-program");
	ck_assert_int_eq(pal_spawn_set_vfork(spawn, VFORK_MODE), 0);
	assert_run_fails(spawn, -ENOENT, "exec");
	/* the builder may be run again, with the same result */
	assert_run_fails(spawn, -ENOENT, "exec");
	pal_spawn_free(spawn);

	/* searched in PATH */
	spawn = pal_spawn_new("pal-test-program-that-does-not-exist");
	ck_assert_int_eq(pal_spawn_set_vfork(spawn, VFORK_MODE), 0);
	assert_run_fails(spawn, -ENOENT, "exec");
	pal_spawn_free(spawn);
}
END_TEST

START_TEST(test_exec_not_executable)
{
	char path[] = "/tmp/pal-test-XXXXXX";
	PalSpawn *spawn;
	int fd;

	fd = mkostemp(path, O_CLOEXEC);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, "#!/bin/sh\n", 10), 10);
	close(fd);

	spawn = pal_spawn_new(path);
	ck_assert_int_eq(pal_spawn_set_vfork(spawn, VFORK_MODE), 0);
	assert_run_fails(spawn, -EACCES, "exec");
	pal_spawn_free(spawn);
	unlink(path);
}
END_TEST

START_TEST(test_exec_path_search)
{
	char dir[4096], *old_path, *slash;
	PalSpawn *spawn;
	char *out;

	snprintf(dir, sizeof(dir), "%s", PAL_TEST_CHILD);
	slash = strrchr(dir, '/');
	ck_assert_ptr_nonnull(slash);
	*slash = '\0';

	old_path = getenv("PATH") ? strdup(getenv("PATH")) : NULL;
	ck_assert_int_eq(setenv("PATH", dir, 1), 0);

	spawn = pal_spawn_new("pal-test-child");
	ck_assert_int_eq(pal_spawn_set_vfork(spawn, VFORK_MODE), 0);
	ck_assert_int_eq(pal_spawn_add_arg(spawn, "argv0"), 0);
	out = run_output(spawn);

	if (old_path)
		setenv("PATH", old_path, 1);
	else
		unsetenv("PATH");
	free(old_path);

	ck_assert_str_eq(out, "argv0 pal-test-child\n");
	free(out);
	pal_spawn_free(spawn);
}
END_TEST

/* ---- hooks --------------------------------------------------------------- */

static int hook_fail(void *user_data)
{
	return -*(const int *)user_data;
}

static int hook_must_not_run(void *user_data)
{
	/* Writes into the fd given; the test checks that nothing arrives. */
	const int *fd = user_data;

	return write(*fd, "!", 1) == 1 ? 0 : -EIO;
}

START_TEST(test_hook_error)
{
	static const int err_cred = ENOTRECOVERABLE, err_exec = EXDEV;
	static const int marker_fd = 5;
	PalSpawn *spawn;
	int marker[2];
	char *text;

	high_pipe(marker, false);

	spawn = helper_new(VFORK_MODE, NULL);
	ck_assert_int_eq(pal_spawn_dup_fd(spawn, marker[1], marker_fd), 0);
	ck_assert_int_eq(pal_spawn_add_hook(spawn, PAL_SPAWN_STAGE_BEFORE_CREDENTIALS, hook_fail,
					    (void *)&err_cred),
			 0);
	ck_assert_int_eq(pal_spawn_add_hook(spawn, PAL_SPAWN_STAGE_BEFORE_EXEC, hook_must_not_run,
					    (void *)&marker_fd),
			 0);
	assert_run_fails(spawn, -ENOTRECOVERABLE, "hook");
	pal_spawn_free(spawn);

	spawn = helper_new(VFORK_MODE, NULL);
	ck_assert_int_eq(pal_spawn_add_hook(spawn, PAL_SPAWN_STAGE_BEFORE_EXEC, hook_fail,
					    (void *)&err_exec),
			 0);
	assert_run_fails(spawn, -EXDEV, "hook");
	pal_spawn_free(spawn);

	close(marker[1]);
	text = read_all(marker[0]);
	ck_assert_str_eq(text, "");
	free(text);
	close(marker[0]);
}
END_TEST

struct hook_check {
	char mark;
	int out_fd; /* a target in the child */
	int stray_fd; /* a parent fd that must be closed by then */
};

/*
 * Checks, in the child, what must hold when hooks run: other fds closed,
 * caught signals reset, the mask empty; then writes its mark.
 */
static int hook_check(void *user_data)
{
	const struct hook_check *check = user_data;
	struct sigaction sa;
	sigset_t mask;

	if (fcntl(check->stray_fd, F_GETFD) >= 0 || errno != EBADF)
		return -EEXIST;
	if (sigaction(SIGUSR2, NULL, &sa) < 0 || sa.sa_handler != SIG_DFL)
		return -ENOTSUP;
	if (sigprocmask(SIG_SETMASK, NULL, &mask) < 0 || sigismember(&mask, SIGUSR1) ||
	    sigismember(&mask, SIGTERM))
		return -EBUSY;
	if (write(check->out_fd, &check->mark, 1) != 1)
		return -EIO;
	return 0;
}

static void handler_noop(int sig)
{
	(void)sig;
}

START_TEST(test_hook_order_and_state)
{
	struct hook_check a = { 'a', 5, -1 }, b = { 'b', 5, -1 }, c = { 'c', 5, -1 };
	struct sigaction sa = { .sa_handler = handler_noop }, old_sa;
	sigset_t block, old_mask, mask_after;
	PalSpawn *spawn;
	int marks[2], stray;
	char *text;

	high_pipe(marks, false);
	stray = new_file();
	a.stray_fd = b.stray_fd = c.stray_fd = stray;

	ck_assert_int_eq(sigaction(SIGUSR2, &sa, &old_sa), 0);
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	sigaddset(&block, SIGTERM);
	ck_assert_int_eq(pthread_sigmask(SIG_BLOCK, &block, &old_mask), 0);

	spawn = helper_new(VFORK_MODE, NULL);
	ck_assert_int_eq(pal_spawn_dup_fd(spawn, marks[1], 5), 0);
	ck_assert_int_eq(pal_spawn_add_hook(spawn, PAL_SPAWN_STAGE_BEFORE_EXEC, hook_check, &c), 0);
	ck_assert_int_eq(pal_spawn_add_hook(spawn, PAL_SPAWN_STAGE_BEFORE_CREDENTIALS, hook_check, &a),
			 0);
	ck_assert_int_eq(pal_spawn_add_hook(spawn, PAL_SPAWN_STAGE_BEFORE_CREDENTIALS, hook_check, &b),
			 0);
	free(run_output(spawn));

	/* the parent's mask and handler are as they were */
	ck_assert_int_eq(pthread_sigmask(SIG_SETMASK, NULL, &mask_after), 0);
	ck_assert(sigismember(&mask_after, SIGUSR1) && sigismember(&mask_after, SIGTERM));
	ck_assert(!sigismember(&mask_after, SIGUSR2) && !sigismember(&mask_after, SIGHUP));
	ck_assert_int_eq(sigaction(SIGUSR2, NULL, &sa), 0);
	ck_assert_ptr_eq((void *)sa.sa_handler, (void *)handler_noop);

	close(marks[1]);
	text = read_all(marks[0]);
	ck_assert_str_eq(text, "abc");

	free(text);
	close(marks[0]);
	close(stray);
	pal_spawn_free(spawn);
	pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
	sigaction(SIGUSR2, &old_sa, NULL);
}
END_TEST

/* ---- signals, session, credentials -------------------------------------- */

/* The value of @key in /proc/self/status, as pal-test-child prints it. */
static void own_status_line(const char *key, char *buf, size_t size)
{
	char line[256];
	size_t len = strlen(key);
	FILE *f = fopen("/proc/self/status", "re");

	ck_assert_ptr_nonnull(f);
	buf[0] = '\0';
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, key, len) == 0 && line[len] == ':')
			snprintf(buf, size, "%s", line + len + 2);
	fclose(f);
	ck_assert_str_ne(buf, "");
}

START_TEST(test_signals_reset)
{
	struct sigaction sa = { .sa_handler = handler_noop }, old_hup, old_usr2;
	char expect[512], ign[256];
	sigset_t block, old_mask;
	PalSpawn *spawn;
	char *out;

	ck_assert_int_eq(sigaction(SIGHUP, &sa, &old_hup), 0);
	sa.sa_handler = SIG_IGN;
	ck_assert_int_eq(sigaction(SIGUSR2, &sa, &old_usr2), 0);
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	sigaddset(&block, SIGCHLD);
	ck_assert_int_eq(pthread_sigmask(SIG_BLOCK, &block, &old_mask), 0);

	spawn = helper_new(VFORK_MODE, "sigmask", NULL);
	out = run_output(spawn);

	/* ignored signals stay ignored (SIGUSR2 among them), the mask is empty */
	own_status_line("SigIgn", ign, sizeof(ign));
	ck_assert_uint_ne(strtoull(ign, NULL, 16) & (1ULL << (SIGUSR2 - 1)), 0);
	ck_assert_uint_eq(strtoull(ign, NULL, 16) & (1ULL << (SIGHUP - 1)), 0);
	snprintf(expect, sizeof(expect), "sigblk 0000000000000000\nsigign %s", ign);
	ck_assert_str_eq(out, expect);

	free(out);
	pal_spawn_free(spawn);
	pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
	sigaction(SIGHUP, &old_hup, NULL);
	sigaction(SIGUSR2, &old_usr2, NULL);
}
END_TEST

START_TEST(test_setsid)
{
	PalSpawn *spawn;
	char *out;

	spawn = helper_new(VFORK_MODE, "sid", NULL);
	out = run_output(spawn);
	ck_assert_str_eq(out, "sid inherited\n");
	free(out);

	ck_assert_int_eq(pal_spawn_set_setsid(spawn, true), 0);
	out = run_output(spawn);
	ck_assert_str_eq(out, "sid leader\n");
	free(out);
	pal_spawn_free(spawn);
}
END_TEST

START_TEST(test_pdeathsig_value)
{
	PalSpawn *spawn;
	char *out;

	spawn = helper_new(VFORK_MODE, "pdeathsig", NULL);
	out = run_output(spawn);
	ck_assert_str_eq(out, "pdeathsig 0\n");
	free(out);

	ck_assert_int_eq(pal_spawn_set_parent_death_signal(spawn, SIGKILL), 0);
	out = run_output(spawn);
	ck_assert_str_eq(out, "pdeathsig 9\n");
	free(out);
	pal_spawn_free(spawn);
}
END_TEST

/*
 * Waits up to PROMPT_MS for @pid, a child of ours, to end; SIGCHLD must be
 * blocked. (Not a pidfd: valgrind 3.19 lacks pidfd_open().)
 */
static pid_t wait_child_bounded(pid_t pid, int *status)
{
	const struct timespec step = { .tv_sec = 0, .tv_nsec = 100 * 1000 * 1000 };
	sigset_t chld;
	pid_t r;

	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	for (int i = 0; i < PROMPT_MS / 100; i++) {
		r = waitpid(pid, status, WNOHANG);
		if (r != 0)
			return r;
		/* returns early as soon as any child changes state */
		sigtimedwait(&chld, NULL, &step);
	}
	return waitpid(pid, status, WNOHANG);
}

/* Drops to 65534 with raw syscalls, as a sandbox hook could. */
static int hook_drop_credentials(void *user_data)
{
	(void)user_data;
	if (syscall(SYS_setresgid, 65534, 65534, 65534) < 0 ||
	    syscall(SYS_setresuid, 65534, 65534, 65534) < 0)
		return -errno;
	return 0;
}

/* Kills the spawning process and waits until the child is reparented. */
static int hook_kill_parent(void *user_data)
{
	const struct timespec step = { .tv_sec = 0, .tv_nsec = 1000 * 1000 };
	pid_t parent = (pid_t)syscall(SYS_getppid);

	(void)user_data;
	syscall(SYS_kill, parent, SIGKILL);
	for (int i = 0; i < PROMPT_MS && syscall(SYS_getppid) == parent; i++)
		nanosleep(&step, NULL);
	return 0;
}

/* How test_pdeathsig_orphan's grandchild is spawned. */
enum orphan_variant {
	ORPHAN_PLAIN,
	ORPHAN_CREDENTIALS,      /* pal_spawn_set_uid/gid */
	ORPHAN_HOOK_CREDENTIALS, /* a BEFORE_EXEC hook changes them */
	ORPHAN_HOOK_CREDENTIALS_EARLY, /* a BEFORE_CREDENTIALS hook does */
	ORPHAN_PARENT_GONE,      /* the parent dies before the signal is armed */
	_ORPHAN_MAX,
};

/*
 * An intermediate process spawns a blocked child with PDEATHSIG = SIGKILL,
 * reports its pid and exits without waiting. This process is a subreaper,
 * so the orphan becomes its child: it must die of SIGKILL, also when its
 * credentials changed on the way (the kernel clears the signal then), and
 * it must not run at all if its parent died before the signal was armed.
 * _i: the mode in bit 0, the variant above it.
 */
START_TEST(test_pdeathsig_orphan)
{
	enum orphan_variant variant = (enum orphan_variant)(_i / 2);
	int report[2], hold[2], status = 0;
	sigset_t chld, old_mask;
	pid_t mid, orphan = 0, r;

	if (variant >= ORPHAN_CREDENTIALS && variant <= ORPHAN_HOOK_CREDENTIALS_EARLY &&
	    geteuid() != 0)
		return; /* needs root to change credentials */

	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	ck_assert_int_eq(pthread_sigmask(SIG_BLOCK, &chld, &old_mask), 0);
	ck_assert_int_eq(prctl(PR_SET_CHILD_SUBREAPER, 1UL, 0UL, 0UL, 0UL), 0);
	high_pipe(report, false);
	/* the orphan reads this until end of file: it ends with this test */
	high_pipe(hold, false);

	mid = fork();
	ck_assert_int_ge(mid, 0);
	if (mid == 0) {
		PalSpawn *spawn = pal_spawn_new(PAL_TEST_CHILD);
		PalChild *child = NULL;
		pid_t pid = -1;

		close(report[0]);
		close(hold[1]);
		pal_spawn_set_vfork(spawn, (_i % 2) == 0);
		pal_spawn_add_arg(spawn, "read-stdin");
		pal_spawn_set_stdin(spawn, PAL_STDIO_FD, hold[0]);
		pal_spawn_set_parent_death_signal(spawn, SIGKILL);
		switch (variant) {
		case ORPHAN_CREDENTIALS:
			pal_spawn_set_uid(spawn, 65534);
			pal_spawn_set_gid(spawn, 65534);
			break;
		case ORPHAN_HOOK_CREDENTIALS:
			pal_spawn_add_hook(spawn, PAL_SPAWN_STAGE_BEFORE_EXEC, hook_drop_credentials,
					   NULL);
			break;
		case ORPHAN_HOOK_CREDENTIALS_EARLY:
			pal_spawn_add_hook(spawn, PAL_SPAWN_STAGE_BEFORE_CREDENTIALS,
					   hook_drop_credentials, NULL);
			break;
		case ORPHAN_PARENT_GONE:
			/* this process dies in the hook: report the pid first */
			pal_spawn_add_hook(spawn, PAL_SPAWN_STAGE_BEFORE_CREDENTIALS, hook_kill_parent,
					   NULL);
			break;
		default:
			break;
		}
		if (pal_spawn_run(spawn, &child) == 0)
			pid = pal_child_get_pid(child);
		if (write(report[1], &pid, sizeof(pid)) != sizeof(pid))
			pid = -1;
		pal_child_free(child);
		pal_spawn_free(spawn);
		_exit(pid > 0 ? 0 : 1);
	}

	close(report[1]);
	close(hold[0]);
	if (variant == ORPHAN_PARENT_GONE) {
		/* nothing reported: the hook killed the reporter */
		ck_assert_int_eq(read(report[0], &orphan, sizeof(orphan)), 0);
		close(report[0]);
		ck_assert_int_eq(waitpid(mid, &status, 0), mid);
		ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
		/* the orphan is the only other child: it failed instead of running */
		r = wait_child_bounded(-1, &status);
		/* an orphan that ran reads stdin to its end: this ends it */
		close(hold[1]);
		if (r == 0)
			r = wait_child_bounded(-1, &status);
		prctl(PR_SET_CHILD_SUBREAPER, 0UL, 0UL, 0UL, 0UL);
		pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
		ck_assert_int_gt(r, 0);
		ck_assert_msg((WIFEXITED(status) && WEXITSTATUS(status) == 127) ||
			      (WIFSIGNALED(status) && WTERMSIG(status) == SIGPIPE),
			      "orphan status 0x%x", status);
		return;
	}

	ck_assert_int_eq(read(report[0], &orphan, sizeof(orphan)), sizeof(orphan));
	close(report[0]);
	ck_assert_int_gt(orphan, 0);
	ck_assert_int_eq(waitpid(mid, &status, 0), mid);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);

	r = wait_child_bounded(orphan, &status);
	if (r != orphan) {
		kill(orphan, SIGKILL);
		waitpid(orphan, NULL, 0);
	}
	close(hold[1]);
	prctl(PR_SET_CHILD_SUBREAPER, 0UL, 0UL, 0UL, 0UL);
	pthread_sigmask(SIG_SETMASK, &old_mask, NULL);

	ck_assert_msg(r == orphan, "the orphan outlived its parent");
	ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "orphan status 0x%x", status);
}
END_TEST

struct ids {
	uid_t uid[3];
	gid_t gid[3];
	int n_groups;
	gid_t groups[4];
};

/* Reports the credentials in force to fd 5, then stops the spawn. */
static int hook_report_ids(void *user_data)
{
	struct ids ids = { 0 };

	if (getresuid(&ids.uid[0], &ids.uid[1], &ids.uid[2]) < 0 ||
	    getresgid(&ids.gid[0], &ids.gid[1], &ids.gid[2]) < 0)
		return -errno;
	ids.n_groups = getgroups(4, ids.groups);
	if (write(5, &ids, sizeof(ids)) != sizeof(ids))
		return -EIO;
	return -ECANCELED;
}

START_TEST(test_credentials)
{
	struct ids ids;
	PalSpawn *spawn;
	int report[2];

	high_pipe(report, false);
	spawn = helper_new(VFORK_MODE, NULL);
	ck_assert_int_eq(pal_spawn_dup_fd(spawn, report[1], 5), 0);
	ck_assert_int_eq(pal_spawn_add_hook(spawn, PAL_SPAWN_STAGE_BEFORE_EXEC, hook_report_ids, NULL),
			 0);

	if (geteuid() == 0) {
		ck_assert_int_eq(pal_spawn_set_uid(spawn, 65534), 0);
		ck_assert_int_eq(pal_spawn_set_gid(spawn, 65533), 0);
		assert_run_fails(spawn, -ECANCELED, "hook");
		ck_assert_int_eq(read(report[0], &ids, sizeof(ids)), sizeof(ids));
		for (int i = 0; i < 3; i++) {
			ck_assert_uint_eq(ids.uid[i], 65534);
			ck_assert_uint_eq(ids.gid[i], 65533);
		}
		ck_assert_int_eq(ids.n_groups, 1);
		ck_assert_uint_eq(ids.groups[0], 65533);
	} else {
		/* unprivileged: the credential steps fail with EPERM */
		ck_assert_int_eq(pal_spawn_set_gid(spawn, 0), 0);
		assert_run_fails(spawn, -EPERM, "setresgid");
		pal_spawn_free(spawn);
		spawn = helper_new(VFORK_MODE, NULL);
		ck_assert_int_eq(pal_spawn_set_uid(spawn, 0), 0);
		assert_run_fails(spawn, -EPERM, "setresuid");
	}

	pal_spawn_free(spawn);
	close(report[0]);
	close(report[1]);
}
END_TEST

/* ---- the child handle ---------------------------------------------------- */

#ifdef PAL_TEST_FALLBACK
/* Whether this system (or valgrind) has pidfd_open(). */
static bool have_pidfd_open(void)
{
	int fd = (int)syscall(SYS_pidfd_open, getpid(), 0);

	if (fd < 0)
		return errno != ENOSYS;
	close(fd);
	return true;
}
#endif

START_TEST(test_wait_and_pidfd)
{
	struct pollfd pfd;
	PalChild *child = NULL;
	PalSpawn *spawn;
	int in[2], status = -1, status2 = -1, pidfd;

	high_pipe(in, false);
	spawn = helper_new(VFORK_MODE, "read-stdin", NULL);
	ck_assert_int_eq(pal_spawn_set_stdin(spawn, PAL_STDIO_FD, in[0]), 0);
	ck_assert_int_eq(pal_spawn_set_stdout(spawn, PAL_STDIO_NULL, -1), 0);
	assert_run_ok(spawn, pal_spawn_run(spawn, &child));
	close(in[0]);

	ck_assert_int_gt(pal_child_get_pid(child), 0);
	pidfd = pal_child_get_pidfd(child);
#ifdef PAL_TEST_FALLBACK
	/* without CLONE_PIDFD the pidfd comes from pidfd_open(), if there */
	if (!have_pidfd_open())
		ck_assert_int_eq(pidfd, -1);
	else
#endif
		ck_assert_int_ge(pidfd, 0);

	/* still running: the child waits for end of file on stdin */
	ck_assert_int_eq(pal_child_try_wait(child, &status), -EAGAIN);
	ck_assert_int_eq(status, -1);
	ck_assert_int_eq(pal_child_kill(child, 0), 0);

	if (pidfd >= 0) {
		ck_assert(fcntl(pidfd, F_GETFD) & FD_CLOEXEC);
		pfd = (struct pollfd){ .fd = pidfd, .events = POLLIN };
		ck_assert_int_eq(poll(&pfd, 1, 0), 0);
		close(in[1]);
		ck_assert_int_eq(poll(&pfd, 1, PROMPT_MS), 1);
		ck_assert(pfd.revents & POLLIN);
		ck_assert_int_eq(pal_child_try_wait(child, &status), 0);
	} else {
		close(in[1]);
		ck_assert_int_eq(pal_child_wait(child, &status), 0);
	}
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	ck_assert_int_eq(pal_child_get_pidfd(child), -1);

	/* reaped: the same status again, and no signal */
	ck_assert_int_eq(pal_child_wait(child, &status2), 0);
	ck_assert_int_eq(status2, status);
	ck_assert_int_eq(pal_child_try_wait(child, NULL), 0);
	ck_assert_int_eq(pal_child_wait(child, NULL), 0);
	ck_assert_int_eq(pal_child_kill(child, SIGTERM), -ESRCH);

	pal_child_free(child);
	pal_spawn_free(spawn);
}
END_TEST

START_TEST(test_exit_status)
{
	PalChild *child = NULL;
	PalSpawn *spawn;
	int status = -1;

	spawn = helper_new(VFORK_MODE, "exit", "7", NULL);
	assert_run_ok(spawn, pal_spawn_run(spawn, &child));
	ck_assert_int_eq(pal_child_wait(child, &status), 0);
	ck_assert(WIFEXITED(status));
	ck_assert_int_eq(WEXITSTATUS(status), 7);
	pal_child_free(child);
	pal_spawn_free(spawn);
}
END_TEST

START_TEST(test_kill)
{
	PalChild *child = NULL;
	PalSpawn *spawn;
	int in[2], status = -1;

	high_pipe(in, false);
	spawn = helper_new(VFORK_MODE, "read-stdin", NULL);
	ck_assert_int_eq(pal_spawn_set_stdin(spawn, PAL_STDIO_FD, in[0]), 0);
	assert_run_ok(spawn, pal_spawn_run(spawn, &child));

	ck_assert_int_eq(pal_child_kill(child, SIGTERM), 0);
	ck_assert_int_eq(pal_child_wait(child, &status), 0);
	ck_assert(WIFSIGNALED(status));
	ck_assert_int_eq(WTERMSIG(status), SIGTERM);
	ck_assert_int_eq(pal_child_kill(child, SIGTERM), -ESRCH);
	ck_assert_int_eq(pal_child_kill(child, 0), -ESRCH);

	pal_child_free(child);
	pal_spawn_free(spawn);
	close(in[0]);
	close(in[1]);
}
END_TEST

/* ---- misc ------------------------------------------------------------ */

START_TEST(test_builder_args)
{
	PalSpawn *spawn;

	errno = 0;
	ck_assert_ptr_null(pal_spawn_new(NULL));
	ck_assert_int_eq(errno, EINVAL);
	errno = 0;
	ck_assert_ptr_null(pal_spawn_new(""));
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_ptr_null(pal_spawn_free(NULL));
	ck_assert_ptr_null(pal_child_free(NULL));

	spawn = pal_spawn_new("/bin/true");
	ck_assert_ptr_nonnull(spawn);
	ck_assert_ptr_null(pal_spawn_get_failed_step(spawn));
	ck_assert_int_eq(pal_spawn_dup_fd(spawn, -1, 3), -EBADF);
	ck_assert_int_eq(pal_spawn_dup_fd(spawn, 0, -1), -EINVAL);
	ck_assert_int_eq(pal_spawn_set_stdin(spawn, PAL_STDIO_FD, -1), -EBADF);
	ck_assert_int_eq(pal_spawn_set_stdout(spawn, (PalStdio)42, 1), -EINVAL);
	ck_assert_int_eq(pal_spawn_set_parent_death_signal(spawn, -1), -EINVAL);
	ck_assert_int_eq(pal_spawn_set_parent_death_signal(spawn, _NSIG), -EINVAL);
	ck_assert_int_eq(pal_spawn_add_hook(spawn, PAL_SPAWN_STAGE_BEFORE_EXEC, NULL, NULL), -EINVAL);
	ck_assert_int_eq(pal_spawn_add_hook(spawn, (PalSpawnStage)7, hook_fail, NULL), -EINVAL);
	ck_assert_int_eq(pal_spawn_set_arg0(spawn, NULL), -EINVAL);
	ck_assert_int_eq(pal_spawn_add_arg(spawn, NULL), -EINVAL);
	ck_assert_int_eq(pal_spawn_add_args(spawn, NULL), -EINVAL);
	ck_assert_int_eq(pal_spawn_run(spawn, NULL), -EINVAL);
	ck_assert_int_eq(pal_spawn_run(NULL, &(PalChild *){ NULL }), -EINVAL);
	pal_spawn_free(spawn);
}
END_TEST

/* Spawning, succeeding or failing, leaves no fd behind in the parent. */
START_TEST(test_parent_fds_not_leaked)
{
	char before[8192], after[8192];
	PalChild *child = NULL;
	PalSpawn *spawn;

	fd_snapshot(before, sizeof(before));

	spawn = helper_new(VFORK_MODE, NULL);
	ck_assert_int_eq(pal_spawn_set_stdout(spawn, PAL_STDIO_NULL, -1), 0);
	assert_run_ok(spawn, pal_spawn_run(spawn, &child));
	wait_success(child);
	pal_spawn_free(spawn);

	spawn = pal_spawn_new("/nonexistent/pal-test-program");
	ck_assert_int_eq(pal_spawn_set_vfork(spawn, VFORK_MODE), 0);
	ck_assert_int_eq(pal_spawn_set_stdin(spawn, PAL_STDIO_NULL, -1), 0);
	assert_run_fails(spawn, -ENOENT, "exec");
	pal_spawn_free(spawn);

	/* a child freed before it is reaped: the pidfd goes, the zombie stays */
	spawn = helper_new(VFORK_MODE, NULL);
	assert_run_ok(spawn, pal_spawn_run(spawn, &child));
	{
		pid_t pid = pal_child_get_pid(child);
		int status;

		pal_child_free(child);
		ck_assert_int_eq(waitpid(pid, &status, 0), pid);
		ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	pal_spawn_free(spawn);

	fd_snapshot(after, sizeof(after));
	ck_assert_str_eq(before, after);
}
END_TEST

#define THREADS 4
#define SPAWNS_PER_THREAD 5

static void *spawn_thread(void *data)
{
	intptr_t id = (intptr_t)data;
	intptr_t failures = 0;

	for (int i = 0; i < SPAWNS_PER_THREAD; i++) {
		char word[32], expect[40], buf[64];
		PalSpawn *spawn = pal_spawn_new(PAL_TEST_CHILD);
		PalChild *child = NULL;
		int out[2], status = -1;
		ssize_t n;

		snprintf(word, sizeof(word), "t%d-%d", (int)id, i);
		snprintf(expect, sizeof(expect), "%s\n", word);
		if (!spawn || pipe2(out, O_CLOEXEC) < 0) {
			failures++;
			pal_spawn_free(spawn);
			continue;
		}
		pal_spawn_set_vfork(spawn, (id + i) % 2 == 0);
		pal_spawn_add_arg(spawn, "echo");
		pal_spawn_add_arg(spawn, word);
		pal_spawn_set_stdout(spawn, PAL_STDIO_FD, out[1]);
		if (pal_spawn_run(spawn, &child) < 0) {
			failures++;
		} else {
			close(out[1]);
			out[1] = -1;
			n = read(out[0], buf, sizeof(buf) - 1);
			buf[n > 0 ? n : 0] = '\0';
			if (pal_child_wait(child, &status) < 0 || status != 0 || strcmp(buf, expect) != 0)
				failures++;
		}
		pal_child_free(child);
		pal_spawn_free(spawn);
		close(out[0]);
		if (out[1] >= 0)
			close(out[1]);
	}
	return (void *)failures;
}

/* Distinct builders may run from several threads at once. */
START_TEST(test_threads)
{
	pthread_t threads[THREADS];

	for (intptr_t i = 0; i < THREADS; i++)
		ck_assert_int_eq(pthread_create(&threads[i], NULL, spawn_thread, (void *)i), 0);
	for (int i = 0; i < THREADS; i++) {
		void *failures = NULL;

		ck_assert_int_eq(pthread_join(threads[i], &failures), 0);
		ck_assert_ptr_null(failures);
	}
}
END_TEST

static Suite *spawn_suite(void)
{
	Suite *s = suite_create("pal-spawn");
	TCase *tc;

	tc = tcase_create("fds");
	tcase_add_loop_test(tc, test_remap_no_leak, 0, 2);
	tcase_add_loop_test(tc, test_remap_swap, 0, 2);
	tcase_add_loop_test(tc, test_remap_chain, 0, 2);
	tcase_add_loop_test(tc, test_remap_replace, 0, 2);
	tcase_add_loop_test(tc, test_close_other_fds_off, 0, 2);
	tcase_add_loop_test(tc, test_bad_fd, 0, 2);
	tcase_add_loop_test(tc, test_status_pipe_not_clobbered, 0, 2);
	suite_add_tcase(s, tc);

	tc = tcase_create("stdio");
	tcase_add_loop_test(tc, test_stdio_pipes, 0, 2);
	tcase_add_loop_test(tc, test_stdout_file, 0, 2);
	tcase_add_loop_test(tc, test_stdin_fd, 0, 2);
	tcase_add_loop_test(tc, test_stdio_null, 0, 2);
	suite_add_tcase(s, tc);

	tc = tcase_create("env-argv");
	tcase_add_loop_test(tc, test_env, 0, 2);
	tcase_add_loop_test(tc, test_env_clear, 0, 2);
	tcase_add_test(tc, test_env_invalid);
	tcase_add_loop_test(tc, test_argv, 0, 2);
	suite_add_tcase(s, tc);

	tc = tcase_create("exec");
	tcase_add_loop_test(tc, test_exec_missing, 0, 2);
	tcase_add_loop_test(tc, test_exec_not_executable, 0, 2);
	tcase_add_loop_test(tc, test_exec_path_search, 0, 2);
	suite_add_tcase(s, tc);

	tc = tcase_create("hooks");
	tcase_add_loop_test(tc, test_hook_error, 0, 2);
	tcase_add_loop_test(tc, test_hook_order_and_state, 0, 2);
	suite_add_tcase(s, tc);

	tc = tcase_create("process");
	tcase_add_loop_test(tc, test_signals_reset, 0, 2);
	tcase_add_loop_test(tc, test_setsid, 0, 2);
	tcase_add_loop_test(tc, test_pdeathsig_value, 0, 2);
	tcase_add_loop_test(tc, test_pdeathsig_orphan, 0, 2 * _ORPHAN_MAX);
	tcase_add_loop_test(tc, test_credentials, 0, 2);
	suite_add_tcase(s, tc);

	tc = tcase_create("child");
	tcase_add_loop_test(tc, test_wait_and_pidfd, 0, 2);
	tcase_add_loop_test(tc, test_exit_status, 0, 2);
	tcase_add_loop_test(tc, test_kill, 0, 2);
	suite_add_tcase(s, tc);

	tc = tcase_create("misc");
	tcase_add_test(tc, test_builder_args);
	tcase_add_loop_test(tc, test_parent_fds_not_leaked, 0, 2);
	tcase_add_test(tc, test_threads);
	suite_add_tcase(s, tc);

	return s;
}

int main(void)
{
	SRunner *sr;

#ifdef PAL_TEST_FALLBACK
	/* Everything again, as on a system that refuses both flags. */
	spawn_refused_clone_flags = CLONE_PIDFD | CLONE_VM;
#endif
	sr = srunner_create(spawn_suite());
	int failed;

	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
