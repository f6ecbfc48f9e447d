/* SPDX-License-Identifier: MIT */
/*
 * Spare hosts (mesh_prestart_hosts()) across real processes: a handed-out
 * spare is the pre-started process (its pid), runs the host function with
 * its name and initial message, and is replaced; a dead spare is never
 * handed out; a config that changed (its sandbox profile object included)
 * spawns fresh; spares that cannot join, or keep dying while they wait, stop
 * the pool after 3; the hello's request channel is served; shutdown and
 * mesh_free() end the spares, reap them and leave no fd behind; a spare's
 * exit calls no exit callback. This program is also the host (test-host.h's scenarios).
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <meshprocess/meshprocess.h>

#include "test-host.h"
#include "test-sandbox-env.h"

#define WAIT_US (20 * G_USEC_PER_SEC)

/* Host side. */

static gboolean host_main(MeshMessage *initial, gpointer data, GError **error)
{
	char *scenario = message_text(initial);
	MeshReceiver *requests = mesh_receiver_from_port(mesh_message_steal_port(initial, 0), NULL);
	MeshSender *results = mesh_sender_from_port(mesh_message_steal_port(initial, 1), NULL);

	if (strcmp(scenario, "whoami") == 0) {
		/* "COMM PID": the process name (from the node name) and mesh_host_get_pid(). */
		char comm[17] = "";
		prctl(PR_GET_NAME, comm);
		char *text = g_strdup_printf("%s %d", comm, (int)mesh_host_get_pid());
		send_text(results, text);
		g_free(text);
		MeshMessage *msg;
		while (mesh_receiver_recv_message(requests, -1, &msg, NULL))
			mesh_message_free(msg); /* until the parent closes us down */
	}
	mesh_receiver_free(requests);
	mesh_sender_free(results);
	mesh_message_free(initial);
	g_free(scenario);
	return TRUE;
}

/* Parent side. */

/* Open fds, once GLib's and the libraries' own lazily made ones exist (a mesh made and freed). */
static guint count_fds(void)
{
	static gboolean warm;
	if (!warm) {
		mesh_free(mesh_new("warm-up", NULL, NULL));
		warm = TRUE;
	}
	guint n = 0;
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	while ((e = readdir(d))) {
		char path[300], target[300] = "";
		snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name);
		if (readlink(path, target, sizeof(target) - 1) > 0 && getenv("SPARE_FDS"))
			fprintf(stderr, "fd %s %s\n", e->d_name, target);
		n++;
	}
	closedir(d);
	return n;
}

static gboolean process_gone(GPid pid)
{
	return kill(pid, 0) < 0 && errno == ESRCH;
}

static GPid spare_pid(Mesh *mesh);

/*
 * Waits for @n ready spares (mesh_get_spare_count()), iterating @ctx (a
 * mesh on the caller's context: nobody else runs it) if not NULL. With
 * @not_pid, also until the one spare is another process than @not_pid.
 */
static void wait_spares_on(Mesh *mesh, GMainContext *ctx, guint n, GPid not_pid)
{
	gint64 end = g_get_monotonic_time() + WAIT_US;
	while (mesh_get_spare_count(mesh, TRUE) != n || (not_pid && spare_pid(mesh) == not_pid)) {
		ck_assert_msg(g_get_monotonic_time() < end, "%u ready spares, not %u",
			      mesh_get_spare_count(mesh, TRUE), n);
		if (ctx)
			g_main_context_iteration(ctx, FALSE);
		g_usleep(1000);
	}
}

static void wait_spares(Mesh *mesh, guint n)
{
	wait_spares_on(mesh, NULL, n, 0);
}

/* Waits until @pid is gone (reaped by the mesh). */
static void wait_gone(GPid pid)
{
	gint64 end = g_get_monotonic_time() + WAIT_US;
	while (!process_gone(pid)) {
		ck_assert_msg(g_get_monotonic_time() < end, "pid %d still there", (int)pid);
		g_usleep(2000);
	}
}

/* The pid of the one spare inspect lists. */
static GPid spare_pid(Mesh *mesh)
{
	char *json = mesh_inspect(mesh, WAIT_US);
	GRegex *re = g_regex_new("\"pid\":(\\d+),\"name\":\"[^\"]*\",\"state\":\"spare\",", 0, 0,
				 NULL);
	GMatchInfo *mi = NULL;
	ck_assert_msg(g_regex_match(re, json, 0, &mi), "no spare in %s", json);
	char *pid = g_match_info_fetch(mi, 1);
	GPid ret = (GPid)atoi(pid);
	ck_assert_msg(strstr(json, "\"spare\":true,"), "%s", json);
	g_match_info_next(mi, NULL);
	ck_assert_msg(!g_match_info_matches(mi), "more than one spare: %s", json);
	g_free(pid);
	g_match_info_free(mi);
	g_regex_unref(re);
	g_free(json);
	return ret;
}

/*
 * A config of this test. Sandboxed (MESH_TEST_SANDBOX=default), each gets
 * a profile of its own, all equal: spares match equal profiles.
 */
static MeshProcessConfig *config_new(const char *name)
{
	MeshProcessConfig *c = test_config_new(name);
	mesh_process_config_set_env(c, "SPARE_TEST", "1");
	return c;
}

/* A "whoami" host: its answer names @name and says its pid is @pid. */
static Host launch_whoami(Mesh *mesh, const MeshProcessConfig *c, const char *comm)
{
	Host h = host_launch(mesh, c, "whoami");
	char *expected = g_strdup_printf("%s %d", comm, (int)h.pid);
	assert_text(h.results, WAIT_US, expected);
	g_free(expected);
	return h;
}

static void count_exit(Mesh *mesh, const char *name, GPid pid, const MeshHostExit *exit,
		       gpointer data)
{
	g_atomic_int_inc((gint *)data);
}

/*
 * The spare is handed out: the same pid, its name, the host function with
 * the initial message; another spare takes its place; hosts and spares are
 * counted apart; shutdown ends and reaps them all, no fd left.
 */
START_TEST(test_spare_handed_out)
{
	GError *error = NULL;
	guint fds = count_fds();
	Mesh *mesh = mesh_new("spares", NULL, &error);
	ck_assert_ptr_nonnull(mesh);
	MeshProcessConfig *c = config_new("w1");
	gint exits = 0;
	mesh_process_config_set_exit_callback(c, NULL, count_exit, &exits, NULL);

	ck_assert_msg(mesh_prestart_hosts(mesh, c, 1, &error), "%s",
		      error ? error->message : "");
	wait_spares(mesh, 1);
	ck_assert_uint_eq(mesh_get_host_count(mesh), 0);
	GPid pre = spare_pid(mesh);

	Host h = launch_whoami(mesh, c, "spt-w1");
	ck_assert_int_eq(h.pid, pre);
	ck_assert_uint_eq(mesh_get_host_count(mesh), 1);
	/* Replaced in the background. */
	wait_spares(mesh, 1);
	GPid next = spare_pid(mesh);
	ck_assert_int_ne(next, pre);
	ck_assert(!process_gone(next));
	char *json = mesh_inspect(mesh, WAIT_US);
	char *entry = g_strdup_printf("\"pid\":%d,\"name\":\"w1\",\"state\":\"running\"", (int)pre);
	ck_assert_msg(strstr(json, entry), "%s", json);
	/* Sandboxed as a fresh host would be: it finalized the profile before it joined. */
	if (test_sandboxed())
		ck_assert_msg(strstr(json, "\"finalized\":true"), "%s", json);
	g_free(entry);
	g_free(json);

	/* A second launch takes the new spare. */
	Host h2 = launch_whoami(mesh, c, "spt-w1");
	ck_assert_int_eq(h2.pid, next);

	ck_assert_msg(mesh_shutdown(mesh, WAIT_US, &error), "%s", error ? error->message : "");
	ck_assert_uint_eq(mesh_get_spare_count(mesh, FALSE), 0);
	ck_assert(process_gone(pre));
	ck_assert(process_gone(next));
	host_close(&h);
	host_close(&h2);
	/* The exit callbacks wait on the default context: two hosts, the spare none. */
	while (g_main_context_iteration(NULL, FALSE))
		;
	ck_assert_int_eq(exits, 2);
	mesh_free(mesh);
	mesh_process_config_free(c);
	ck_assert_uint_eq(count_fds(), fds);
}
END_TEST

/*
 * A spare that died while it waited is not handed out, and is replaced. The
 * mesh is on this thread's context, not iterated between the kill and the
 * launch: the exit is not handled yet, the dead spare is still in the mesh.
 */
START_TEST(test_dead_spare_not_handed_out)
{
	GError *error = NULL;
	GMainContext *ctx = g_main_context_default();
	Mesh *mesh = mesh_new("dead", ctx, &error);
	MeshProcessConfig *c = config_new("w2");

	ck_assert(mesh_prestart_hosts(mesh, c, 1, &error));
	wait_spares_on(mesh, ctx, 1, 0);
	GPid dead = spare_pid(mesh);
	struct pollfd pfd = {.fd = (int)syscall(SYS_pidfd_open, dead, 0), .events = POLLIN};
	ck_assert_int_ge(pfd.fd, 0);
	ck_assert_int_eq(kill(dead, SIGKILL), 0);
	/* Dead (every thread gone), not reaped: nobody iterated the mesh's context. */
	ck_assert_int_eq(poll(&pfd, 1, 20000), 1);
	close(pfd.fd);
	ck_assert_uint_eq(mesh_get_spare_count(mesh, TRUE), 1);
	Host h = launch_whoami(mesh, c, "spt-w2");
	ck_assert_int_ne(h.pid, dead);
	/* Its replacement comes once the exit is handled. */
	wait_spares_on(mesh, ctx, 1, dead);
	host_close(&h);
	ck_assert(mesh_shutdown(mesh, WAIT_US, NULL));
	mesh_free(mesh);
	mesh_process_config_free(c);
}
END_TEST

/*
 * A spare is handed out to an equal config (another object), never to one
 * that changed since mesh_prestart_hosts(); 0 ends the spares.
 */
START_TEST(test_config_mismatch_spawns_fresh)
{
	GError *error = NULL;
	Mesh *mesh = mesh_new("mismatch", NULL, &error);
	MeshProcessConfig *c = config_new("w3");

	ck_assert(mesh_prestart_hosts(mesh, c, 1, &error));
	wait_spares(mesh, 1);
	GPid pre = spare_pid(mesh);

	mesh_process_config_set_env(c, "SPARE_TEST_CHANGED", "1");
	Host fresh = launch_whoami(mesh, c, "spt-w3");
	ck_assert_int_ne(fresh.pid, pre);
	ck_assert_uint_eq(mesh_get_spare_count(mesh, TRUE), 1);
	MeshProcessConfig *other = mesh_process_config_new("w3x");
	mesh_process_config_set_env(other, "SPARE_TEST", "1");
	Host fresh2 = launch_whoami(mesh, other, "spt-w3x");
	ck_assert_int_ne(fresh2.pid, pre);

	MeshProcessConfig *same = config_new("w3");
	Host spare = launch_whoami(mesh, same, "spt-w3");
	ck_assert_int_eq(spare.pid, pre);
	wait_spares(mesh, 1);
	GPid next = spare_pid(mesh);

	/* 0: the pool goes, its spare ends by itself (status 0), nothing replaces it. */
	ck_assert(mesh_prestart_hosts(mesh, same, 0, &error));
	ck_assert_uint_eq(mesh_get_spare_count(mesh, FALSE), 0);
	wait_gone(next);
	ck_assert_uint_eq(mesh_get_host_count(mesh), 3);

	host_close(&fresh);
	host_close(&fresh2);
	host_close(&spare);
	ck_assert(mesh_shutdown(mesh, WAIT_US, NULL));
	mesh_free(mesh);
	mesh_process_config_free(c);
	mesh_process_config_free(other);
	mesh_process_config_free(same);
}
END_TEST

/* The part of mesh_inspect()'s JSON about host @pid (up to the next host's "state"). */
static char *inspect_host(Mesh *mesh, GPid pid)
{
	char *json = mesh_inspect(mesh, WAIT_US);
	char *key = g_strdup_printf("{\"pid\":%d,\"name\":", (int)pid);
	const char *start = strstr(json, key);
	ck_assert_msg(start, "no host %d in %s", (int)pid, json);
	const char *end = strstr(strstr(start, "\"state\":") + 1, "\"state\":");
	char *part = end ? g_strndup(start, end - start) : g_strdup(start);
	g_free(key);
	g_free(json);
	return part;
}

/*
 * The sandbox profile is matched by what it asks for, as it was at
 * mesh_prestart_hosts(): a profile object changed afterwards spawns a
 * fresh host isolated as it now asks (never the spare started with the
 * weaker profile); another object with the first profile's steps takes
 * the spare.
 */
START_TEST(test_profile_changed_spawns_fresh)
{
	GError *error = NULL;
	Mesh *mesh = mesh_new("profile", NULL, &error);
	MeshProcessConfig *c = config_new("w6");
	PalSandbox *profile = pal_sandbox_new_empty();
	mesh_process_config_set_sandbox(c, profile);

	ck_assert(mesh_prestart_hosts(mesh, c, 1, &error));
	wait_spares(mesh, 1);
	GPid pre = spare_pid(mesh);

	/* Stricter now: the spare, spawned without it, must not be handed out. */
	ck_assert_int_eq(pal_sandbox_set_no_new_privs(profile, TRUE), 0);
	Host fresh = launch_whoami(mesh, c, "spt-w6");
	ck_assert_int_ne(fresh.pid, pre);
	char *part = inspect_host(mesh, fresh.pid);
	ck_assert_msg(strstr(part, "\"no_new_privs\":true"), "%s", part);
	g_free(part);

	/* An equal profile, another object: the spare. */
	MeshProcessConfig *same = config_new("w6");
	PalSandbox *equal = pal_sandbox_new_empty();
	mesh_process_config_set_sandbox(same, equal);
	Host spare = launch_whoami(mesh, same, "spt-w6");
	ck_assert_int_eq(spare.pid, pre);
	part = inspect_host(mesh, spare.pid);
	ck_assert_msg(strstr(part, "\"no_new_privs\":false"), "%s", part);
	g_free(part);

	host_close(&fresh);
	host_close(&spare);
	ck_assert(mesh_shutdown(mesh, WAIT_US, NULL));
	mesh_free(mesh);
	mesh_process_config_free(c);
	mesh_process_config_free(same);
	pal_sandbox_unref(profile);
	pal_sandbox_unref(equal);
}
END_TEST

static gboolean count_spawn(PalSpawn *spawn, gpointer data, GError **error)
{
	g_atomic_int_inc((gint *)data);
	return TRUE;
}

static void note_signaled(Mesh *mesh, const char *name, GPid pid, const MeshHostExit *exit,
			  gpointer data)
{
	g_atomic_int_set((gint *)data, exit->signaled ? 1 : 2);
}

/*
 * A spare serves the requests of the channel that came in its hello once
 * it is handed out, also when it is handed out before the parent saw it
 * ready (a mesh on this thread's context, not iterated between the
 * prestart and the launch): inspect gets its report, mesh_crash() ends it
 * by a signal. A spare not handed out takes no request.
 */
START_TEST(test_spare_serves_requests)
{
	GError *error = NULL;
	GMainContext *ctx = g_main_context_default();
	Mesh *mesh = mesh_new("requests", ctx, &error);
	MeshProcessConfig *c = config_new("w8");
	gint ended = 0, spawns = 0;
	mesh_process_config_set_exit_callback(c, NULL, note_signaled, &ended, NULL);
	mesh_process_config_set_spawn_hook(c, count_spawn, &spawns);

	/* Nothing iterated the context: its answer to the hello is not handled. */
	ck_assert(mesh_prestart_hosts(mesh, c, 1, &error));
	ck_assert_uint_eq(mesh_get_spare_count(mesh, TRUE), 0);
	Host h = host_launch(mesh, c, "whoami");
	ck_assert_int_eq(g_atomic_int_get(&spawns), 1); /* the spare's: handed out */
	char *expected = g_strdup_printf("spt-w8 %d", (int)h.pid);
	assert_text(h.results, WAIT_US, expected);
	g_free(expected);
	GPid pre = h.pid;
	gint64 end = g_get_monotonic_time() + WAIT_US;
	while (mesh_get_host_state(mesh, h.pid) != MESH_HOST_STATE_RUNNING) {
		ck_assert(g_get_monotonic_time() < end);
		g_main_context_iteration(ctx, FALSE);
		g_usleep(1000);
	}
	char *part = inspect_host(mesh, h.pid);
	ck_assert_msg(strstr(part, "\"threads\":"), "no report: %s", part);
	g_free(part);

	wait_spares_on(mesh, ctx, 1, pre);
	GPid next = spare_pid(mesh);
	ck_assert(!mesh_crash(mesh, next, &error));
	ck_assert(g_error_matches(error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_NO_SUCH_HOST));
	g_clear_error(&error);

	ck_assert_msg(mesh_crash(mesh, h.pid, &error), "%s", error ? error->message : "");
	while (g_atomic_int_get(&ended) == 0) {
		ck_assert(g_get_monotonic_time() < end);
		g_main_context_iteration(ctx, FALSE);
		g_usleep(1000);
	}
	ck_assert_int_eq(g_atomic_int_get(&ended), 1);
	ck_assert(!process_gone(next));
	host_close(&h);
	ck_assert(mesh_shutdown(mesh, WAIT_US, NULL));
	mesh_free(mesh);
	mesh_process_config_free(c);
}
END_TEST

/*
 * Spares that cannot join (a profile no kernel can finalize) die before
 * they are ready: after 3 the pool stops spawning; a launch then spawns a
 * fresh host that fails the same way and calls the exit callback; nothing
 * is left behind: no process, no fd.
 */
START_TEST(test_spare_join_fails)
{
	GError *error = NULL;
	guint fds = count_fds();
	/* On this thread's context: no spare is spawned while the test looks. */
	GMainContext *ctx = g_main_context_default();
	Mesh *mesh = mesh_new("nojoin", ctx, &error);
	MeshProcessConfig *c = config_new("w7");
	PalSandbox *sb = pal_sandbox_new_empty();
	ck_assert_int_eq(pal_sandbox_require_landlock_abi(sb, 1000), 0);
	mesh_process_config_set_sandbox(c, sb);
	pal_sandbox_unref(sb);
	mesh_process_config_set_stderr_path(c, "/dev/null");
	gint spawns = 0, exits = 0;
	mesh_process_config_set_spawn_hook(c, count_spawn, &spawns);

	ck_assert(mesh_prestart_hosts(mesh, c, 1, &error));
	gint64 end = g_get_monotonic_time() + WAIT_US;
	while (g_atomic_int_get(&spawns) < 3 || mesh_get_spare_count(mesh, FALSE) > 0) {
		ck_assert_msg(g_get_monotonic_time() < end, "%d spawns, %u spares",
			      g_atomic_int_get(&spawns), mesh_get_spare_count(mesh, FALSE));
		g_main_context_iteration(ctx, FALSE);
		g_usleep(1000);
	}
	ck_assert_int_eq(g_atomic_int_get(&spawns), 3);

	/* No spare: a fresh host, whose failure the caller hears of. */
	mesh_process_config_set_exit_callback(c, NULL, count_exit, &exits, NULL);
	Host h = host_launch(mesh, c, "whoami");
	ck_assert_int_eq(g_atomic_int_get(&spawns), 4);
	while (g_atomic_int_get(&exits) == 0) {
		ck_assert(g_get_monotonic_time() < end);
		g_main_context_iteration(ctx, FALSE);
		g_usleep(1000);
	}
	ck_assert(process_gone(h.pid));
	ck_assert_uint_eq(mesh_get_host_count(mesh), 0);
	ck_assert(mesh_shutdown(mesh, WAIT_US, NULL));
	ck_assert_int_eq(g_atomic_int_get(&spawns), 4);
	host_close(&h);
	mesh_free(mesh);
	mesh_process_config_free(c);
	ck_assert_uint_eq(count_fds(), fds);
}
END_TEST

static void count_gave_up(const gchar *domain, GLogLevelFlags level, const gchar *message,
			  gpointer data)
{
	if (strstr(message, "in a row"))
		g_atomic_int_inc((gint *)data);
	else
		g_log_default_handler(domain, level, message, NULL);
}

/*
 * Spares that keep dying while they wait, ready or not, stop their pool
 * after 3 in a row (else each death costs a spawn 20 ms later, for ever).
 * The mesh is on this thread's context: each death is handled when the
 * test iterates it.
 */
START_TEST(test_spare_deaths_stop_pool)
{
	GError *error = NULL;
	GMainContext *ctx = g_main_context_default();
	Mesh *mesh = mesh_new("deaths", ctx, &error);
	MeshProcessConfig *c = config_new("w9");
	gint gave_up = 0;
	guint handler = g_log_set_handler("MeshProcess", G_LOG_LEVEL_MESSAGE, count_gave_up,
					  &gave_up);

	ck_assert(mesh_prestart_hosts(mesh, c, 1, &error));
	GPid dead = 0;
	for (int i = 0; i < 3; i++) {
		wait_spares_on(mesh, ctx, 1, dead);
		dead = spare_pid(mesh);
		ck_assert_int_eq(g_atomic_int_get(&gave_up), 0);
		ck_assert_int_eq(kill(dead, SIGKILL), 0);
		gint64 end = g_get_monotonic_time() + WAIT_US;
		while (mesh_get_host_state(mesh, dead) != MESH_HOST_STATE_CRASHED) {
			ck_assert(g_get_monotonic_time() < end);
			g_main_context_iteration(ctx, FALSE);
			g_usleep(1000);
		}
	}
	ck_assert_int_eq(g_atomic_int_get(&gave_up), 1);
	ck_assert_uint_eq(mesh_get_spare_count(mesh, FALSE), 0);

	/* A new call starts again. */
	ck_assert(mesh_prestart_hosts(mesh, c, 1, &error));
	wait_spares_on(mesh, ctx, 1, dead);
	g_log_remove_handler("MeshProcess", handler);
	ck_assert(mesh_shutdown(mesh, WAIT_US, NULL));
	mesh_free(mesh);
	mesh_process_config_free(c);
}
END_TEST

/* mesh_free() without a shutdown ends the spares too; a remote config has none. */
START_TEST(test_free_reaps_spares)
{
	GError *error = NULL;
	guint fds = count_fds();
	Mesh *mesh = mesh_new("free", NULL, &error);
	MeshProcessConfig *c = config_new("w4");

	ck_assert(mesh_prestart_hosts(mesh, c, 2, &error));
	ck_assert_uint_eq(mesh_get_spare_count(mesh, FALSE), 2);
	wait_spares(mesh, 2);
	char *json = mesh_inspect(mesh, WAIT_US);
	GPid pids[2];
	const char *p = json;
	for (int i = 0; i < 2; i++) {
		p = strstr(p, "\"pid\":");
		ck_assert_ptr_nonnull(p);
		p = strstr(p + 1, "\"pid\":"); /* the first is the parent's */
		ck_assert_ptr_nonnull(p);
		pids[i] = atoi(p + 6);
	}
	g_free(json);

	MeshProcessConfig *remote = config_new("w4r");
	const char *argv[] = {"/bin/true", NULL};
	mesh_process_config_set_remote_command(remote, argv);
	ck_assert(!mesh_prestart_hosts(mesh, remote, 1, &error));
	ck_assert(g_error_matches(error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_FAILED));
	g_clear_error(&error);
	mesh_process_config_free(remote);

	mesh_free(mesh);
	for (int i = 0; i < 2; i++)
		ck_assert_msg(process_gone(pids[i]), "pid %d", (int)pids[i]);
	mesh_process_config_free(c);
	ck_assert_uint_eq(count_fds(), fds);
}
END_TEST

/*
 * A mesh on the caller's context (the default one, this thread): the
 * spare's readiness and its replacement run when this thread iterates it;
 * spawns happen on the mesh's spawner thread.
 */
START_TEST(test_spare_on_caller_context)
{
	GError *error = NULL;
	GMainContext *ctx = g_main_context_default();
	Mesh *mesh = mesh_new("ctx", ctx, &error);
	MeshProcessConfig *c = config_new("w5");

	ck_assert(mesh_prestart_hosts(mesh, c, 1, &error));
	wait_spares_on(mesh, ctx, 1, 0);
	GPid pre = spare_pid(mesh);
	Host h = launch_whoami(mesh, c, "spt-w5");
	ck_assert_int_eq(h.pid, pre);
	wait_spares_on(mesh, ctx, 1, pre);
	host_close(&h);
	ck_assert(mesh_shutdown(mesh, WAIT_US, NULL));
	ck_assert_uint_eq(mesh_get_spare_count(mesh, FALSE), 0);
	mesh_free(mesh);
	mesh_process_config_free(c);
}
END_TEST

int main(int argc, char **argv)
{
	GError *error = NULL;

	if (!mesh_try_run_host("spt", host_main, NULL, &error)) {
		fprintf(stderr, "host: %s\n", error->message);
		return 3;
	}

	Suite *s = suite_create("libmeshprocess-spare");
	TCase *tc = tcase_create("spare");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_spare_handed_out);
	tcase_add_test(tc, test_dead_spare_not_handed_out);
	tcase_add_test(tc, test_config_mismatch_spawns_fresh);
	tcase_add_test(tc, test_profile_changed_spawns_fresh);
	tcase_add_test(tc, test_spare_join_fails);
	tcase_add_test(tc, test_spare_serves_requests);
	tcase_add_test(tc, test_spare_deaths_stop_pool);
	tcase_add_test(tc, test_free_reaps_spares);
	tcase_add_test(tc, test_spare_on_caller_context);
	suite_add_tcase(s, tc);

	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_ENV);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
