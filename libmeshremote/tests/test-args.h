/* SPDX-License-Identifier: MIT */
/*
 * Bad arguments to public functions: each case makes one call with one bad
 * argument in a child process of its own and checks that the call returns
 * its failure value with a critical logged (g_return_val_if_fail()), instead
 * of crashing. A crash, a hang (alarm) or a missing critical fails the case.
 *
 * A test program defines its cases with ARGS_CASE() and lists them in an
 * ArgsCase table, then runs them with args_add_tests().
 */
#pragma once

#include <check.h>
#include <fcntl.h>
#include <glib.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <meshremote/meshremote.h>

typedef struct {
	const char *name;
	void (*call)(void);
	gboolean quiet; /* a NULL-safe call: no critical expected */
} ArgsCase;

#define ARGS_CASE(name) static void name(void)
#define ARGS_ENTRY(name) {#name, name, FALSE}
#define ARGS_ENTRY_QUIET(name) {#name, name, TRUE}

/* In a case: a check whose failure ends the child with a message. */
#define ARGS_EXPECT(expr)                                                                   \
	do {                                                                                \
		if (!(expr)) {                                                              \
			fprintf(stderr, "%s:%d: expected %s\n", __FILE__, __LINE__, #expr); \
			_exit(3);                                                           \
		}                                                                           \
	} while (0)

static const ArgsCase *args_cases;
static int args_criticals;

static void args_log_handler(const char *domain, GLogLevelFlags level, const char *message,
			     gpointer data)
{
	if (level & G_LOG_LEVEL_CRITICAL)
		args_criticals++;
	fprintf(stderr, "%s: %s\n", domain ? domain : "", message);
}

/* The read end of a pipe whose only write end is @ret_w (non-blocking: EOF once it is closed). */
static G_GNUC_UNUSED int args_pipe(int *ret_w)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0)
		_exit(5);
	*ret_w = p[1];
	return p[0];
}

/* Whether the write end of the pipe read by @r was closed (nothing was written). */
static G_GNUC_UNUSED gboolean args_pipe_closed(int r)
{
	char c;
	return read(r, &c, 1) == 0;
}

/* An error already set: passing it as the GError ** is a programming error. */
static G_GNUC_UNUSED GError *args_error_set(void)
{
	return g_error_new_literal(g_quark_from_static_string("args-test"), 1, "already set");
}

/* An untyped message holding the write end of a pipe whose read end is returned. */
static G_GNUC_UNUSED MeshMessage *message_with_fd(int *ret_r)
{
	int w;
	*ret_r = args_pipe(&w);
	MeshMessage *m = mesh_message_new("x", 1);
	ARGS_EXPECT(mesh_message_add_fd_take(m, w) == 0);
	return m;
}

/* A port whose peer is the sender @ret_s: it sees the port closed. */
static G_GNUC_UNUSED MeshPort *port_watched(MeshSender **ret_s)
{
	MeshReceiver *r;
	mesh_channel_new(NULL, ret_s, &r);
	return mesh_receiver_into_port(r);
}

START_TEST(args_test_case)
{
	const ArgsCase *c = &args_cases[_i];
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		/* Criticals are counted, not fatal (even under G_DEBUG=fatal-criticals). */
		g_log_set_always_fatal(G_LOG_FATAL_MASK);
		g_log_set_default_handler(args_log_handler, NULL);
		/* A call that hangs fails the case too (not Check's SIGALRM handler: ours). */
		signal(SIGALRM, SIG_DFL);
		alarm(30);
		c->call();
		if (c->quiet ? args_criticals != 0 : args_criticals < 1) {
			fprintf(stderr, "%s: %d criticals logged\n", c->name, args_criticals);
			_exit(4);
		}
		_exit(0);
	}
	int status;
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	if (WIFSIGNALED(status))
		ck_abort_msg("%s: killed by signal %d (%s)", c->name, WTERMSIG(status),
			     strsignal(WTERMSIG(status)));
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s: exit status %d", c->name,
		      WEXITSTATUS(status));
}
END_TEST

/* Adds one test per case of @cases (@n of them) to @tc. */
static G_GNUC_UNUSED void args_add_tests(TCase *tc, const ArgsCase *cases, int n)
{
	args_cases = cases;
	tcase_add_loop_test(tc, args_test_case, 0, n);
}

/* Runs @cases as the suite @name; the program's exit status. */
static G_GNUC_UNUSED int args_run(const char *name, const ArgsCase *cases, int n)
{
	if (g_getenv("MESH_TEST_VALGRIND")) {
		/* Each child leaves what it made behind (it ends with _exit()). */
		printf("skipped under valgrind: the children do not free what they make\n");
		return 77;
	}
	Suite *s = suite_create(name);
	TCase *tc = tcase_create("args");
	tcase_set_timeout(tc, 60);
	args_add_tests(tc, cases, n);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_ENV);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
