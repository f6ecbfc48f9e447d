/* SPDX-License-Identifier: MIT */
/* MeshProcessConfig, on both platforms (config-private.h). */
#include "config-private.h"

MeshProcessConfig *mesh_process_config_new(const char *name)
{
	g_return_val_if_fail(name, NULL);
	MeshProcessConfig *c = g_new0(MeshProcessConfig, 1);
	c->name = g_strdup(name);
	c->args = g_ptr_array_new_with_free_func(g_free);
	c->env = g_ptr_array_new_with_free_func(g_free);
	return c;
}

void mesh_process_config_free(MeshProcessConfig *c)
{
	if (!c)
		return;
	g_free(c->name);
	g_free(c->program);
	g_ptr_array_free(c->args, TRUE);
	g_ptr_array_free(c->env, TRUE);
	g_free(c->stderr_path);
#ifndef G_OS_WIN32
	pal_sandbox_unref(c->sandbox);
#endif
	exit_handler_unref(c->on_exit);
	g_strfreev(c->remote);
	g_free(c);
}

void mesh_process_config_set_program(MeshProcessConfig *c, const char *path)
{
	g_return_if_fail(c);
	g_free(c->program);
	c->program = g_strdup(path);
}

void mesh_process_config_add_arg(MeshProcessConfig *c, const char *arg)
{
	g_return_if_fail(c && arg);
	g_ptr_array_add(c->args, g_strdup(arg));
}

void mesh_process_config_set_skip_worker_arg(MeshProcessConfig *c, gboolean skip)
{
	g_return_if_fail(c);
	c->skip_worker_arg = skip;
}

void mesh_process_config_set_env(MeshProcessConfig *c, const char *key, const char *value)
{
	g_return_if_fail(c && key && value);
	g_ptr_array_add(c->env, g_strdup(key));
	g_ptr_array_add(c->env, g_strdup(value));
}

void mesh_process_config_set_stderr_path(MeshProcessConfig *c, const char *path)
{
	g_return_if_fail(c);
	g_free(c->stderr_path);
	c->stderr_path = g_strdup(path);
}

void mesh_process_config_set_sandbox(MeshProcessConfig *c, PalSandbox *profile)
{
	g_return_if_fail(c);
#ifdef G_OS_WIN32
	c->sandbox = profile != NULL;
#else
	if (profile)
		pal_sandbox_ref(profile);
	pal_sandbox_unref(c->sandbox);
	c->sandbox = profile;
#endif
}

void mesh_process_config_set_spawn_hook(MeshProcessConfig *c, MeshSpawnHookFunc func,
					gpointer user_data)
{
	g_return_if_fail(c);
	c->spawn_hook = func;
	c->spawn_hook_data = user_data;
}

void mesh_process_config_set_exit_callback(MeshProcessConfig *c, GMainContext *context,
					   MeshHostExitFunc func, gpointer user_data,
					   GDestroyNotify notify)
{
	if (!c) {
		if (notify)
			notify(user_data); /* taken in all cases */
		g_return_if_fail(c);
	}
	exit_handler_unref(c->on_exit);
	c->on_exit = NULL;
	if (!func) {
		if (notify)
			notify(user_data);
		return;
	}
	ExitHandler *e = g_new0(ExitHandler, 1);
	e->ref = 1;
	e->context = g_main_context_ref(context ? context : g_main_context_default());
	e->func = func;
	e->data = user_data;
	e->notify = notify;
	c->on_exit = e;
}

void mesh_process_config_set_remote_command(MeshProcessConfig *c, const char *const *argv)
{
	g_return_if_fail(c != NULL && (!argv || argv[0]));
	g_strfreev(c->remote);
	c->remote = g_strdupv((char **)argv);
}
