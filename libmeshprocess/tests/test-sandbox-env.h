/* SPDX-License-Identifier: MIT */
/*
 * The whole libmeshprocess suite once with sandboxed hosts: every test that
 * launches hosts includes this after <meshprocess/meshprocess.h>. With
 * MESH_TEST_SANDBOX=default in the environment (the "-sandboxed"
 * registrations in meson.build, suite libmeshprocess-sandboxed), every
 * config a test makes with mesh_process_config_new() gets the default
 * profile (pal_sandbox_new()). A test whose hosts need what the sandbox
 * forbids takes it off with test_config_unsandboxed() and says why.
 */
#pragma once

#include <meshprocess/meshprocess.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

/* TRUE when the hosts of this run are sandboxed. */
static G_GNUC_UNUSED gboolean test_sandboxed(void)
{
	const char *v = getenv("MESH_TEST_SANDBOX");
	return v && strcmp(v, "default") == 0;
}

static G_GNUC_UNUSED MeshProcessConfig *test_config_new(const char *name)
{
	MeshProcessConfig *c = (mesh_process_config_new)(name);
	if (c && test_sandboxed()) {
		PalSandbox *sb = pal_sandbox_new();
		/*
		 * The hosts of several tests wait in pause(2), which libpal's
		 * default allow-list lacks (a SIGSYS): allowed here.
		 */
		pal_sandbox_allow_syscall(sb, "pause");
		mesh_process_config_set_sandbox(c, sb);
		pal_sandbox_unref(sb);
	}
	return c;
}

/* Every config of the test file goes through test_config_new(). */
#define mesh_process_config_new(name) test_config_new(name)

/*
 * Takes the sandbox off @c: the test says why its hosts need what the
 * default profile forbids. Returns @c.
 */
static G_GNUC_UNUSED MeshProcessConfig *test_config_unsandboxed(MeshProcessConfig *c)
{
	mesh_process_config_set_sandbox(c, NULL);
	return c;
}

/*
 * The signal mesh_crash() ends a host with: SIGABRT, or SIGILL for a host
 * that is pid 1 of its PID namespace (the default profile's), where the
 * kernel ignores abort()'s SIGABRT and libmeshprocess traps instead.
 */
static G_GNUC_UNUSED int test_crash_signal(void)
{
	return test_sandboxed() ? SIGILL : SIGABRT;
}
