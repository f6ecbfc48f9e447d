/* SPDX-License-Identifier: MIT */
/*
 * MeshProcessConfig (config.c), shared by the coordinators of both
 * platforms (mesh.c on Linux, mesh-win32.c on Windows), and the exit
 * callback a config shares with its hosts. The platform part: a sandbox
 * profile is a PalSandbox reference on Linux and only "one was set" on
 * Windows, where a launch with it fails.
 */
#pragma once

#include "process-private.h"

/*
 * A config's exit callback, shared by the config and every host launched
 * with it (and each exit on its way to the callback): @notify runs when the
 * last of them lets go.
 */
typedef struct {
	gint ref;
	GMainContext *context;
	MeshHostExitFunc func;
	gpointer data;
	GDestroyNotify notify;
} ExitHandler;

static inline ExitHandler *exit_handler_ref(ExitHandler *e)
{
	if (e)
		g_atomic_int_inc(&e->ref);
	return e;
}

static inline void exit_handler_unref(ExitHandler *e)
{
	if (!e || !g_atomic_int_dec_and_test(&e->ref))
		return;
	if (e->notify)
		e->notify(e->data);
	g_main_context_unref(e->context);
	g_free(e);
}

struct MeshProcessConfig {
	char *name;
	char *program;
	GPtrArray *args;
	gboolean skip_worker_arg;
	GPtrArray *env; /* key, value, key, value ... */
	char *stderr_path;
#ifdef G_OS_WIN32
	gboolean sandbox; /* a profile was set: refused at launch (none on Windows) */
#else
	PalSandbox *sandbox;
#endif
	MeshSpawnHookFunc spawn_hook;
	gpointer spawn_hook_data;
	ExitHandler *on_exit;
	char **remote; /* the remote command, or NULL (refused at launch on Windows) */
};
