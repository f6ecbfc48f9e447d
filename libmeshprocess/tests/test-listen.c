/* SPDX-License-Identifier: MIT */
/*
 * Hosts and listeners under faults, across real processes. This program is
 * also the host (mesh_try_run_host() at the top of main()), the listening
 * server and the client: main() runs the mode named by argv[1].
 */
#include <check.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <meshprocess/meshprocess.h>

#define WAIT_S 20

static char *self_exe;

static gboolean host_main(MeshMessage *initial, gpointer data, GError **error)
{
	size_t size;
	const uint8_t *text = mesh_message_get_data(initial, &size);
	gboolean wait = size == 4 && memcmp(text, "wait", 4) == 0;
	mesh_message_free(initial);
	while (wait)
		pause(); /* until the parent closes us down or kills us */
	return TRUE;
}

/* A child of this program in @mode; its stdin and stdout are pipes, stderr captured. */
typedef struct {
	pid_t pid;
	int in, out, err;
} Proc;

static Proc proc_start(const char *const *args, uid_t uid)
{
	int in[2], out[2], err[2];
	ck_assert_int_eq(pipe2(in, O_CLOEXEC), 0);
	ck_assert_int_eq(pipe2(out, O_CLOEXEC), 0);
	ck_assert_int_eq(pipe2(err, O_CLOEXEC), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		dup2(in[0], 0);
		dup2(out[1], 1);
		dup2(err[1], 2);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (uid != (uid_t)-1 && (setresgid(uid, uid, uid) < 0 || setresuid(uid, uid, uid) < 0))
			_exit(126);
		char *argv[8] = {self_exe};
		for (int i = 0; args[i] && i < 6; i++)
			argv[i + 1] = (char *)args[i];
		execv(self_exe, argv);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	close(err[1]);
	return (Proc){pid, in[1], out[0], err[0]};
}

/* Reads one line from the child's stdout (bounded by its exit or WAIT_S). */
static char *proc_read_line(Proc *p)
{
	GString *s = g_string_new(NULL);
	char c;
	alarm(WAIT_S);
	while (read(p->out, &c, 1) == 1 && c != '\n')
		g_string_append_c(s, c);
	alarm(0);
	return g_string_free(s, FALSE);
}

/* Closes its stdin, waits (bounded) for its exit; its status, its stderr in @ret_err. */
static int proc_finish(Proc *p, char **ret_err)
{
	int status = -1;
	close(p->in);
	for (int i = 0; i < WAIT_S * 100; i++) {
		if (waitpid(p->pid, &status, WNOHANG) == p->pid)
			break;
		g_usleep(10000);
		status = -1;
	}
	if (status == -1) {
		kill(p->pid, SIGKILL);
		waitpid(p->pid, NULL, 0);
	}
	GString *s = g_string_new(NULL);
	char buf[512];
	ssize_t n;
	fcntl(p->err, F_SETFL, O_NONBLOCK);
	while ((n = read(p->err, buf, sizeof(buf))) > 0)
		g_string_append_len(s, buf, n);
	close(p->err);
	close(p->out);
	if (ret_err)
		*ret_err = g_string_free(s, FALSE);
	else
		g_string_free(s, TRUE);
	return status;
}

/* A host whose socket (fd 3) is missing exits at once, saying why. */
START_TEST(test_host_without_fd3)
{
	GError *error = NULL;
	Mesh *mesh = mesh_new("fd3", NULL, &error);
	ck_assert_ptr_nonnull(mesh);
	char *dir = g_dir_make_tmp("mesh-fd3-XXXXXX", NULL);
	char *err_path = g_build_filename(dir, "stderr.log", NULL);
	MeshProcessConfig *c = mesh_process_config_new("nofd3");
	mesh_process_config_set_env(c, "MESH_TEST_CLOSE_FD3", "1");
	mesh_process_config_set_stderr_path(c, err_path);
	GPid pid = mesh_launch_host(mesh, c, mesh_message_new("x", 1), &error);
	ck_assert_msg(pid > 0, "%s", error ? error->message : "");
	mesh_process_config_free(c);
	for (int i = 0; i < WAIT_S * 100 && mesh_get_host_count(mesh) > 0; i++)
		g_usleep(10000);
	ck_assert_uint_eq(mesh_get_host_count(mesh), 0);
	char *log = NULL;
	ck_assert(g_file_get_contents(err_path, &log, NULL, NULL));
	ck_assert_msg(strstr(log, "fd 3, the socket to the parent, is not open"), "%s", log);
	g_free(log);
	mesh_free(mesh);
	unlink(err_path);
	rmdir(dir);
	g_free(err_path);
	g_free(dir);
}
END_TEST

static gpointer kill_later(gpointer data)
{
	g_usleep(300000);
	kill(GPOINTER_TO_INT(data), SIGKILL);
	return NULL;
}

/* A host killed while an inspect waits for its answer: an error in the report, no crash. */
START_TEST(test_inspect_host_killed)
{
	GError *error = NULL;
	Mesh *mesh = mesh_new("inspect", NULL, &error);
	ck_assert_ptr_nonnull(mesh);
	MeshProcessConfig *c = mesh_process_config_new("victim");
	GPid pid = mesh_launch_host(mesh, c, mesh_message_new("wait", 4), &error);
	ck_assert_msg(pid > 0, "%s", error ? error->message : "");
	mesh_process_config_free(c);
	char *json = mesh_inspect(mesh, 10 * G_USEC_PER_SEC); /* the host is up */
	ck_assert_msg(strstr(json, "rss_kib"), "%s", json);
	g_free(json);
	kill(pid, SIGSTOP); /* it cannot answer the next one */
	GThread *t = g_thread_new("killer", kill_later, GINT_TO_POINTER(pid));
	json = mesh_inspect(mesh, 10 * G_USEC_PER_SEC);
	g_thread_join(t);
	ck_assert_msg(strstr(json, "\"error\""), "%s", json);
	g_free(json);
	mesh_free(mesh);
}
END_TEST

int main(int argc, char **argv)
{
	GError *error = NULL;

	if (g_getenv("MESH_TEST_CLOSE_FD3"))
		close(3);
	if (!mesh_try_run_host("ltest", host_main, NULL, &error)) {
		fprintf(stderr, "host: %s\n", error->message);
		return 3;
	}
	self_exe = g_file_read_link("/proc/self/exe", NULL);

	Suite *s = suite_create("libmeshprocess-listen");
	TCase *tc = tcase_create("host");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_host_without_fd3);
	tcase_add_test(tc, test_inspect_host_killed);
	suite_add_tcase(s, tc);

	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_ENV);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	g_free(self_exe);
	return failed ? 1 : 0;
}
