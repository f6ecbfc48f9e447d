/* SPDX-License-Identifier: MIT */
/*
 * Every public function of libmeshprocess called with each bad argument (a
 * NULL that is not allowed, an invalid timeout, an error already set), each
 * call in a child process of its own (libmeshremote/tests/test-args.h): it
 * must return its failure value with a critical, and release what it
 * consumes, as on any failure. Free functions take NULL quietly.
 */
#include <stdlib.h>

#include <meshprocess/meshprocess.h>

#include "../../libmeshremote/tests/test-args.h"

static Mesh *mesh_new_ok(void)
{
	GError *e = NULL;
	Mesh *m = mesh_new("args", NULL, &e);
	ARGS_EXPECT(m && !e);
	return m;
}

static MeshProcessConfig *config_new(void)
{
	return mesh_process_config_new("host");
}

static char *sock_path(void)
{
	char *dir = g_dir_make_tmp("test-args-XXXXXX", NULL);
	ARGS_EXPECT(dir);
	return g_build_filename(dir, "sock", NULL);
}

/* Configuration. */

ARGS_CASE(config_new_null) { ARGS_EXPECT(!mesh_process_config_new(NULL)); }

/* The case: once a config without a name launched and crashed. */
ARGS_CASE(config_new_null_then_launch)
{
	int r;
	MeshProcessConfig *c = mesh_process_config_new(NULL);
	ARGS_EXPECT(!c);
	ARGS_EXPECT(mesh_launch_host(mesh_new_ok(), c, message_with_fd(&r), NULL) == 0);
	ARGS_EXPECT(args_pipe_closed(r));
}

ARGS_CASE(config_free_null) { mesh_process_config_free(NULL); }
ARGS_CASE(config_set_program_null) { mesh_process_config_set_program(NULL, "/bin/true"); }
ARGS_CASE(config_set_program_default) { mesh_process_config_set_program(config_new(), NULL); }
ARGS_CASE(config_add_arg_null_config) { mesh_process_config_add_arg(NULL, "arg"); }
ARGS_CASE(config_add_arg_null_arg) { mesh_process_config_add_arg(config_new(), NULL); }
ARGS_CASE(config_set_skip_worker_arg_null) { mesh_process_config_set_skip_worker_arg(NULL, TRUE); }
ARGS_CASE(config_set_env_null_config) { mesh_process_config_set_env(NULL, "K", "v"); }
ARGS_CASE(config_set_env_null_key) { mesh_process_config_set_env(config_new(), NULL, "v"); }
ARGS_CASE(config_set_env_null_value) { mesh_process_config_set_env(config_new(), "K", NULL); }
ARGS_CASE(config_set_stderr_path_null) { mesh_process_config_set_stderr_path(NULL, "/dev/null"); }
ARGS_CASE(config_set_stderr_path_default)
{
	mesh_process_config_set_stderr_path(config_new(), NULL);
}

static gboolean spawn_hook(PalSpawn *spawn, gpointer data, GError **error)
{
	return TRUE;
}

ARGS_CASE(config_set_spawn_hook_null) { mesh_process_config_set_spawn_hook(NULL, spawn_hook, NULL); }
ARGS_CASE(config_set_spawn_hook_none) { mesh_process_config_set_spawn_hook(config_new(), NULL, NULL); }
ARGS_CASE(config_set_sandbox_null) { mesh_process_config_set_sandbox(NULL, NULL); }
ARGS_CASE(config_set_sandbox_none) { mesh_process_config_set_sandbox(config_new(), NULL); }

static void exit_func(Mesh *mesh, const char *name, GPid pid, const MeshHostExit *exit,
		      gpointer data)
{
}

/* A GDestroyNotify that closes the write end of a pipe (the user data). */
static void close_fd_notify(gpointer data)
{
	close(GPOINTER_TO_INT(data));
}

/* The user data is released as on any failure: taken in all cases. */
ARGS_CASE(config_set_exit_callback_null)
{
	int w, r = args_pipe(&w);
	mesh_process_config_set_exit_callback(NULL, NULL, exit_func, GINT_TO_POINTER(w),
					      close_fd_notify);
	ARGS_EXPECT(args_pipe_closed(r));
}

ARGS_CASE(config_set_exit_callback_none)
{
	int w, r = args_pipe(&w);
	mesh_process_config_set_exit_callback(config_new(), NULL, NULL, GINT_TO_POINTER(w),
					      close_fd_notify);
	ARGS_EXPECT(args_pipe_closed(r));
}

ARGS_CASE(host_state_to_string_out_of_range)
{
	ARGS_EXPECT(strcmp(mesh_host_state_to_string((MeshHostState)99), "unknown") == 0);
}

/* The mesh. */

ARGS_CASE(mesh_new_null_name) { ARGS_EXPECT(!mesh_new(NULL, NULL, NULL)); }

ARGS_CASE(mesh_new_error_set)
{
	GError *e = args_error_set();
	ARGS_EXPECT(!mesh_new("args", NULL, &e));
}

ARGS_CASE(get_node_null) { ARGS_EXPECT(!mesh_get_node(NULL)); }

/* mesh_launch_host() with a bad argument: @initial is freed (its fd closed). */
static void launch_bad(gboolean null_mesh, gboolean null_config, gboolean error_set)
{
	int r;
	GError *e = error_set ? args_error_set() : NULL;
	ARGS_EXPECT(mesh_launch_host(null_mesh ? NULL : mesh_new_ok(),
				     null_config ? NULL : config_new(), message_with_fd(&r),
				     &e) == 0);
	ARGS_EXPECT(args_pipe_closed(r));
}

ARGS_CASE(launch_host_null_mesh) { launch_bad(TRUE, FALSE, FALSE); }
ARGS_CASE(launch_host_null_config) { launch_bad(FALSE, TRUE, FALSE); }
ARGS_CASE(launch_host_error_set) { launch_bad(FALSE, FALSE, TRUE); }

ARGS_CASE(launch_host_null_initial)
{
	ARGS_EXPECT(mesh_launch_host(mesh_new_ok(), config_new(), NULL, NULL) == 0);
}

ARGS_CASE(prestart_hosts_null_mesh) { ARGS_EXPECT(!mesh_prestart_hosts(NULL, config_new(), 1, NULL)); }
ARGS_CASE(prestart_hosts_null_config) { ARGS_EXPECT(!mesh_prestart_hosts(mesh_new_ok(), NULL, 1, NULL)); }

ARGS_CASE(prestart_hosts_error_set)
{
	GError *e = args_error_set();
	ARGS_EXPECT(!mesh_prestart_hosts(mesh_new_ok(), config_new(), 1, &e));
}

ARGS_CASE(get_spare_count_null) { ARGS_EXPECT(mesh_get_spare_count(NULL, FALSE) == 0); }

ARGS_CASE(crash_null) { ARGS_EXPECT(!mesh_crash(NULL, 1, NULL)); }

ARGS_CASE(crash_error_set)
{
	GError *e = args_error_set();
	ARGS_EXPECT(!mesh_crash(mesh_new_ok(), 1, &e));
}

ARGS_CASE(inspect_null) { ARGS_EXPECT(!mesh_inspect(NULL, -1)); }
ARGS_CASE(inspect_bad_timeout) { ARGS_EXPECT(!mesh_inspect(mesh_new_ok(), -5)); }
static void inspect_never_cb(char *json, gpointer data)
{
	ARGS_EXPECT(!"a callback after a bad argument");
}

static void inspect_count_notify(gpointer data)
{
	(*(int *)data)++;
}

ARGS_CASE(inspect_async_null)
{
	int notified = 0;
	mesh_inspect_async(NULL, -1, NULL, inspect_never_cb, &notified, inspect_count_notify);
	ARGS_EXPECT(notified == 1);
}

ARGS_CASE(inspect_async_bad_timeout)
{
	int notified = 0;
	mesh_inspect_async(mesh_new_ok(), -5, NULL, inspect_never_cb, &notified,
			   inspect_count_notify);
	ARGS_EXPECT(notified == 1);
	while (g_main_context_iteration(NULL, FALSE))
		;
}

ARGS_CASE(inspect_async_null_callback)
{
	mesh_inspect_async(mesh_new_ok(), -1, NULL, NULL, NULL, NULL);
}
ARGS_CASE(get_host_count_null) { ARGS_EXPECT(mesh_get_host_count(NULL) == 0); }

ARGS_CASE(get_host_state_null)
{
	ARGS_EXPECT(mesh_get_host_state(NULL, 1) == MESH_HOST_STATE_UNKNOWN);
}

static void shutdown_func(Mesh *mesh, gboolean clean, const GError *error, gpointer data)
{
}

ARGS_CASE(shutdown_async_null)
{
	int w, r = args_pipe(&w);
	mesh_shutdown_async(NULL, -1, NULL, shutdown_func, GINT_TO_POINTER(w), close_fd_notify);
	ARGS_EXPECT(args_pipe_closed(r));
}

ARGS_CASE(shutdown_async_bad_deadline)
{
	int w, r = args_pipe(&w);
	Mesh *m = mesh_new_ok();
	mesh_shutdown_async(m, -5, NULL, shutdown_func, GINT_TO_POINTER(w), close_fd_notify);
	ARGS_EXPECT(args_pipe_closed(r));
	/* Nothing was done: the mesh still launches. */
	MeshProcessConfig *c = mesh_process_config_new("args");
	mesh_process_config_set_program(c, "/bin/true");
	GPid pid = mesh_launch_host(m, c, mesh_message_new("x", 1), NULL);
	ARGS_EXPECT(pid > 0);
}
ARGS_CASE(shutdown_null) { ARGS_EXPECT(!mesh_shutdown(NULL, -1, NULL)); }

ARGS_CASE(shutdown_error_set)
{
	GError *e = args_error_set();
	ARGS_EXPECT(!mesh_shutdown(mesh_new_ok(), -1, &e));
}

ARGS_CASE(mesh_free_null) { mesh_free(NULL); }

/* Listening and connecting. */

ARGS_CASE(listen_null_mesh)
{
	MeshReceiver *r = NULL;
	ARGS_EXPECT(!mesh_listen(NULL, sock_path(), FALSE, &r, NULL) && !r);
}

ARGS_CASE(listen_null_path)
{
	MeshReceiver *r = NULL;
	ARGS_EXPECT(!mesh_listen(mesh_new_ok(), NULL, FALSE, &r, NULL) && !r);
}

ARGS_CASE(listen_null_ret) { ARGS_EXPECT(!mesh_listen(mesh_new_ok(), sock_path(), FALSE, NULL, NULL)); }

ARGS_CASE(listen_error_set)
{
	MeshReceiver *r = NULL;
	GError *e = args_error_set();
	ARGS_EXPECT(!mesh_listen(mesh_new_ok(), sock_path(), FALSE, &r, &e) && !r);
}

ARGS_CASE(unlisten_null_mesh) { mesh_unlisten(NULL, "/nonexistent/sock"); }
ARGS_CASE(unlisten_null_path) { mesh_unlisten(mesh_new_ok(), NULL); }

ARGS_CASE(connect_null_path)
{
	MeshSender *s = NULL;
	ARGS_EXPECT(!mesh_connect(NULL, -1, &s, NULL) && !s);
}

ARGS_CASE(connect_null_ret) { ARGS_EXPECT(!mesh_connect("/nonexistent/sock", -1, NULL, NULL)); }

ARGS_CASE(connect_error_set)
{
	MeshSender *s = NULL;
	GError *e = args_error_set();
	ARGS_EXPECT(!mesh_connect("/nonexistent/sock", -1, &s, &e) && !s);
}

/* Allowed: it frees the connection, and takes NULL as a free function does. */
ARGS_CASE(connection_shutdown_null) { ARGS_EXPECT(mesh_connection_shutdown(NULL, -1)); }

ARGS_CASE(connection_shutdown_bad_timeout)
{
	MeshReceiver *r;
	MeshSender *s;
	char *path = sock_path();
	ARGS_EXPECT(mesh_listen(mesh_new_ok(), path, FALSE, &r, NULL));
	MeshConnection *conn = mesh_connect(path, -1, &s, NULL);
	ARGS_EXPECT(conn);
	ARGS_EXPECT(!mesh_connection_shutdown(conn, -5));
}

/* The host side. */

static gboolean host_func(MeshMessage *initial, gpointer data, GError **error)
{
	mesh_message_free(initial);
	return TRUE;
}

ARGS_CASE(try_run_host_null_name) { ARGS_EXPECT(!mesh_try_run_host(NULL, host_func, NULL, NULL)); }
ARGS_CASE(try_run_host_null_func) { ARGS_EXPECT(!mesh_try_run_host("args", NULL, NULL, NULL)); }

ARGS_CASE(try_run_host_error_set)
{
	GError *e = args_error_set();
	ARGS_EXPECT(!mesh_try_run_host("args", host_func, NULL, &e));
}

/* Workers. */

static gboolean worker_func(MeshMessage *parameters, MeshWorkerContext *ctx, gpointer data,
			    GError **error)
{
	mesh_message_free(parameters);
	return TRUE;
}

ARGS_CASE(registry_add_null_reg) { mesh_worker_registry_add(NULL, "w", worker_func, NULL, NULL); }

ARGS_CASE(registry_add_null_name)
{
	mesh_worker_registry_add(mesh_worker_registry_new(), NULL, worker_func, NULL, NULL);
}

ARGS_CASE(registry_add_null_func)
{
	mesh_worker_registry_add(mesh_worker_registry_new(), "w", NULL, NULL, NULL);
}

ARGS_CASE(registry_check_null_reg) { ARGS_EXPECT(!mesh_worker_registry_check(NULL, "w", NULL)); }

ARGS_CASE(registry_check_null_name)
{
	ARGS_EXPECT(!mesh_worker_registry_check(mesh_worker_registry_new(), NULL, NULL));
}

ARGS_CASE(registry_check_error_set)
{
	GError *e = args_error_set();
	ARGS_EXPECT(!mesh_worker_registry_check(mesh_worker_registry_new(), "w", &e));
}

ARGS_CASE(registry_free_null) { mesh_worker_registry_free(NULL); }

/* A NULL context reads as a stop: a worker given none stops. */
ARGS_CASE(context_wait_stop_null) { ARGS_EXPECT(mesh_worker_context_wait_stop(NULL, 0)); }
ARGS_CASE(context_should_stop_null) { ARGS_EXPECT(mesh_worker_context_should_stop(NULL)); }
ARGS_CASE(context_get_fd_null) { ARGS_EXPECT(mesh_worker_context_get_fd(NULL) < 0); }
ARGS_CASE(context_get_name_null) { ARGS_EXPECT(!mesh_worker_context_get_name(NULL)); }

ARGS_CASE(host_run_null_port)
{
	ARGS_EXPECT(!mesh_worker_host_run(NULL, mesh_worker_registry_new(), NULL));
}

/* mesh_worker_host_run() with a bad argument: @port is closed. */
static void host_run_bad(gboolean null_reg, gboolean error_set)
{
	MeshSender *s;
	GError *e = error_set ? args_error_set() : NULL;
	ARGS_EXPECT(!mesh_worker_host_run(port_watched(&s),
					  null_reg ? NULL : mesh_worker_registry_new(), &e));
	ARGS_EXPECT(mesh_sender_is_closed(s));
}

ARGS_CASE(host_run_null_reg) { host_run_bad(TRUE, FALSE); }
ARGS_CASE(host_run_error_set) { host_run_bad(FALSE, TRUE); }
ARGS_CASE(host_new_null) { ARGS_EXPECT(!mesh_worker_host_new(NULL)); }
ARGS_CASE(host_clone_null) { ARGS_EXPECT(!mesh_worker_host_clone(NULL)); }

static MeshWorkerHost *host_new(void)
{
	MeshPort *port;
	MeshWorkerHost *host = mesh_worker_host_new(&port);
	ARGS_EXPECT(host);
	return host;
}

/* mesh_worker_host_start() with a bad argument: @parameters is freed. */
static void host_start_bad(gboolean null_host)
{
	int r;
	ARGS_EXPECT(!mesh_worker_host_start(null_host ? NULL : host_new(), null_host ? "w" : NULL,
					    message_with_fd(&r)));
	ARGS_EXPECT(args_pipe_closed(r));
}

ARGS_CASE(host_start_null_host) { host_start_bad(TRUE); }
ARGS_CASE(host_start_null_name) { host_start_bad(FALSE); }

/* mesh_worker_host_launch() with a bad argument: @parameters is freed. */
static void host_launch_bad(gboolean null_host, gboolean null_name, gboolean error_set)
{
	int r;
	GError *e = error_set ? args_error_set() : NULL;
	ARGS_EXPECT(!mesh_worker_host_launch(null_host ? NULL : host_new(), null_name ? NULL : "w",
					     message_with_fd(&r), 0, &e));
	ARGS_EXPECT(args_pipe_closed(r));
}

ARGS_CASE(host_launch_null_host) { host_launch_bad(TRUE, FALSE, FALSE); }
ARGS_CASE(host_launch_null_name) { host_launch_bad(FALSE, TRUE, FALSE); }
ARGS_CASE(host_launch_error_set) { host_launch_bad(FALSE, FALSE, TRUE); }
ARGS_CASE(host_free_null) { mesh_worker_host_free(NULL); }
ARGS_CASE(handle_get_name_null) { ARGS_EXPECT(!mesh_worker_handle_get_name(NULL)); }
ARGS_CASE(handle_stop_null) { mesh_worker_handle_stop(NULL); }
ARGS_CASE(handle_restart_null_handle) { mesh_worker_handle_restart(NULL, host_new()); }
ARGS_CASE(handle_inspect_null) { ARGS_EXPECT(!mesh_worker_handle_inspect(NULL, 0, NULL)); }
ARGS_CASE(registry_add_restartable_null) { mesh_worker_registry_add_restartable(NULL, "w", NULL, NULL, NULL); }
ARGS_CASE(context_is_restart_null) { ARGS_EXPECT(!mesh_worker_context_is_restart(NULL)); }
ARGS_CASE(context_restart_requested_null) { ARGS_EXPECT(!mesh_worker_context_restart_requested(NULL)); }
ARGS_CASE(context_refuse_restart_null) { mesh_worker_context_refuse_restart(NULL, "no"); }
ARGS_CASE(context_set_inspect_null) { mesh_worker_context_set_inspect(NULL, NULL, NULL); }

/* mesh_worker_context_send_state() with no context: @state is freed. */
ARGS_CASE(context_send_state_null)
{
	int r;
	ARGS_EXPECT(!mesh_worker_context_send_state(NULL, message_with_fd(&r)));
	ARGS_EXPECT(args_pipe_closed(r));
}

static gboolean local_nothing(gpointer p, MeshWorkerContext *ctx, GError **error)
{
	return TRUE;
}

static void close_fd(gpointer p)
{
	close(GPOINTER_TO_INT(p));
}

/* mesh_worker_launch_local() with a bad argument: @parameters are freed. */
static void launch_local_bad(gboolean null_name, gboolean null_func, gboolean error_set)
{
	int w;
	int r = args_pipe(&w);
	GError *e = error_set ? args_error_set() : NULL;
	ARGS_EXPECT(!mesh_worker_launch_local(null_name ? NULL : "w", null_func ? NULL : local_nothing,
					      GINT_TO_POINTER(w), close_fd, &e));
	ARGS_EXPECT(args_pipe_closed(r));
}

ARGS_CASE(launch_local_null_name) { launch_local_bad(TRUE, FALSE, FALSE); }
ARGS_CASE(launch_local_null_func) { launch_local_bad(FALSE, TRUE, FALSE); }
ARGS_CASE(launch_local_error_set) { launch_local_bad(FALSE, FALSE, TRUE); }

ARGS_CASE(handle_next_event_null_handle)
{
	MeshWorkerEvent ev;
	ARGS_EXPECT(!mesh_worker_handle_next_event(NULL, 0, &ev, NULL, NULL));
}

static MeshWorkerHandle *handle_new(void)
{
	MeshWorkerHandle *h = mesh_worker_host_start(host_new(), "w", NULL);
	ARGS_EXPECT(h);
	return h;
}

ARGS_CASE(handle_next_event_null_ret)
{
	ARGS_EXPECT(!mesh_worker_handle_next_event(handle_new(), 0, NULL, NULL, NULL));
}

ARGS_CASE(handle_next_event_error_set)
{
	MeshWorkerEvent ev;
	GError *e = args_error_set();
	ARGS_EXPECT(!mesh_worker_handle_next_event(handle_new(), 0, &ev, NULL, &e));
}

ARGS_CASE(handle_join_null) { ARGS_EXPECT(!mesh_worker_handle_join(NULL, 0, NULL)); }

ARGS_CASE(handle_join_error_set)
{
	GError *e = args_error_set();
	ARGS_EXPECT(!mesh_worker_handle_join(handle_new(), 0, &e));
}

ARGS_CASE(handle_free_null) { mesh_worker_handle_free(NULL); }

static const ArgsCase cases[] = {
	ARGS_ENTRY(config_new_null),
	ARGS_ENTRY(config_new_null_then_launch),
	ARGS_ENTRY_QUIET(config_free_null),
	ARGS_ENTRY(config_set_program_null),
	ARGS_ENTRY_QUIET(config_set_program_default),
	ARGS_ENTRY(config_add_arg_null_config),
	ARGS_ENTRY(config_add_arg_null_arg),
	ARGS_ENTRY(config_set_skip_worker_arg_null),
	ARGS_ENTRY(config_set_env_null_config),
	ARGS_ENTRY(config_set_env_null_key),
	ARGS_ENTRY(config_set_env_null_value),
	ARGS_ENTRY(config_set_stderr_path_null),
	ARGS_ENTRY_QUIET(config_set_stderr_path_default),
	ARGS_ENTRY(config_set_spawn_hook_null),
	ARGS_ENTRY_QUIET(config_set_spawn_hook_none),
	ARGS_ENTRY(config_set_sandbox_null),
	ARGS_ENTRY_QUIET(config_set_sandbox_none),
	ARGS_ENTRY(config_set_exit_callback_null),
	ARGS_ENTRY_QUIET(config_set_exit_callback_none),
	ARGS_ENTRY_QUIET(host_state_to_string_out_of_range),
	ARGS_ENTRY(mesh_new_null_name),
	ARGS_ENTRY(mesh_new_error_set),
	ARGS_ENTRY(get_node_null),
	ARGS_ENTRY(launch_host_null_mesh),
	ARGS_ENTRY(launch_host_null_config),
	ARGS_ENTRY(launch_host_error_set),
	ARGS_ENTRY(launch_host_null_initial),
	ARGS_ENTRY(prestart_hosts_null_mesh),
	ARGS_ENTRY(prestart_hosts_null_config),
	ARGS_ENTRY(prestart_hosts_error_set),
	ARGS_ENTRY(get_spare_count_null),
	ARGS_ENTRY(crash_null),
	ARGS_ENTRY(crash_error_set),
	ARGS_ENTRY(inspect_null),
	ARGS_ENTRY(inspect_bad_timeout),
	ARGS_ENTRY(inspect_async_null),
	ARGS_ENTRY(inspect_async_bad_timeout),
	ARGS_ENTRY(inspect_async_null_callback),
	ARGS_ENTRY(get_host_count_null),
	ARGS_ENTRY(get_host_state_null),
	ARGS_ENTRY(shutdown_async_null),
	ARGS_ENTRY(shutdown_async_bad_deadline),
	ARGS_ENTRY(shutdown_null),
	ARGS_ENTRY(shutdown_error_set),
	ARGS_ENTRY_QUIET(mesh_free_null),
	ARGS_ENTRY(listen_null_mesh),
	ARGS_ENTRY(listen_null_path),
	ARGS_ENTRY(listen_null_ret),
	ARGS_ENTRY(listen_error_set),
	ARGS_ENTRY(unlisten_null_mesh),
	ARGS_ENTRY(unlisten_null_path),
	ARGS_ENTRY(connect_null_path),
	ARGS_ENTRY(connect_null_ret),
	ARGS_ENTRY(connect_error_set),
	ARGS_ENTRY_QUIET(connection_shutdown_null),
	ARGS_ENTRY(connection_shutdown_bad_timeout),
	ARGS_ENTRY(try_run_host_null_name),
	ARGS_ENTRY(try_run_host_null_func),
	ARGS_ENTRY(try_run_host_error_set),
	ARGS_ENTRY(registry_add_null_reg),
	ARGS_ENTRY(registry_add_null_name),
	ARGS_ENTRY(registry_add_null_func),
	ARGS_ENTRY(registry_check_null_reg),
	ARGS_ENTRY(registry_check_null_name),
	ARGS_ENTRY(registry_check_error_set),
	ARGS_ENTRY_QUIET(registry_free_null),
	ARGS_ENTRY(context_wait_stop_null),
	ARGS_ENTRY(context_should_stop_null),
	ARGS_ENTRY(context_get_fd_null),
	ARGS_ENTRY(context_get_name_null),
	ARGS_ENTRY(host_run_null_port),
	ARGS_ENTRY(host_run_null_reg),
	ARGS_ENTRY(host_run_error_set),
	ARGS_ENTRY(host_new_null),
	ARGS_ENTRY(host_clone_null),
	ARGS_ENTRY(host_start_null_host),
	ARGS_ENTRY(host_start_null_name),
	ARGS_ENTRY(host_launch_null_host),
	ARGS_ENTRY(host_launch_null_name),
	ARGS_ENTRY(host_launch_error_set),
	ARGS_ENTRY_QUIET(host_free_null),
	ARGS_ENTRY(handle_get_name_null),
	ARGS_ENTRY(handle_stop_null),
	ARGS_ENTRY(handle_restart_null_handle),
	ARGS_ENTRY(handle_inspect_null),
	ARGS_ENTRY(registry_add_restartable_null),
	ARGS_ENTRY(context_is_restart_null),
	ARGS_ENTRY(context_restart_requested_null),
	ARGS_ENTRY(context_refuse_restart_null),
	ARGS_ENTRY(context_set_inspect_null),
	ARGS_ENTRY(context_send_state_null),
	ARGS_ENTRY(launch_local_null_name),
	ARGS_ENTRY(launch_local_null_func),
	ARGS_ENTRY(launch_local_error_set),
	ARGS_ENTRY(handle_next_event_null_handle),
	ARGS_ENTRY(handle_next_event_null_ret),
	ARGS_ENTRY(handle_next_event_error_set),
	ARGS_ENTRY(handle_join_null),
	ARGS_ENTRY(handle_join_error_set),
	ARGS_ENTRY_QUIET(handle_free_null),
};

int main(void)
{
	return args_run("libmeshprocess-args", cases, G_N_ELEMENTS(cases));
}
