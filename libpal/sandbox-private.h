/* SPDX-License-Identifier: MIT */
/*
 * Internals shared by sandbox*.c and spawn.c. Not installed, not exported.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>

#include <pal/pal.h>

/* Bounds of a profile, also enforced by the env decoder. */
#define SANDBOX_MAX_RLIMITS 16
#define SANDBOX_MAX_PATHS 256
#define SANDBOX_MAX_SYSCALLS 256
#define SANDBOX_MAX_SYSCALL_NAME 63
/* The longest encoded value pal_sandbox_new_from_env() accepts. */
#define SANDBOX_MAX_ENV (256 * 1024)

/* The limit as prlimit64() takes it, whatever the libc's rlim_t. */
struct sandbox_rlimit {
	int resource;
	struct {
		uint64_t rlim_cur;
		uint64_t rlim_max;
	} limit;
};

/*
 * The spawn-time part, as spawn.c runs it. The child reads it (possibly
 * sharing the parent's memory): it is filled in by the parent only.
 */
struct spawn_sandbox {
	int ns_required; /* CLONE_NEW* flags */
	int ns_optional;
	bool private_tmp;
	bool drop_bounding_set;
	size_t n_rlimits;
	struct sandbox_rlimit rlimits[SANDBOX_MAX_RLIMITS];
	/*
	 * The environment variable whose value gets ";g=XXXXXXXX" appended:
	 * the clone flags the kernel granted, patched in before each attempt.
	 */
	const char *report_env;
};

/*
 * spawn_set_sandbox:
 * Makes @spawn run @spec (copied) and hold a reference to @sandbox
 * (dropping the one it held). NULL @sandbox removes both.
 */
int spawn_set_sandbox(PalSpawn *spawn, PalSandbox *sandbox, const struct spawn_sandbox *spec);

/*
 * spawn_loads_from_tmp:
 * Whether @spawn's program (resolved through PATH when it has no slash,
 * symlinks followed), or a directory of the LD_LIBRARY_PATH the child will
 * get, lies under /tmp: a private /tmp mounted before the exec would hide
 * them from the exec and the dynamic loader.
 */
bool spawn_loads_from_tmp(const PalSpawn *spawn);

/*
 * Encoding of the finalize part (sandbox-env.c): a malloc()ed string, or
 * NULL with errno ENOMEM or E2BIG (longer than SANDBOX_MAX_ENV).
 * @private_tmp: what the child gets (the profile's, or false when it
 * cannot have it).
 */
char *sandbox_encode(const PalSandbox *sandbox, bool private_tmp);
/* Decodes @value (NUL-terminated); -EINVAL when malformed. */
int sandbox_decode(const char *value, PalSandbox **ret_sandbox, int *ret_granted_clone_flags);

struct sandbox_path {
	char *path;
	unsigned access; /* PalSandboxAccess */
};

struct PalSandbox {
	int refcount;

	/* spawn-time part */
	unsigned ns_required; /* PalSandboxNamespaces */
	unsigned ns_optional;
	bool private_tmp;
	size_t n_rlimits;
	struct sandbox_rlimit rlimits[SANDBOX_MAX_RLIMITS];
	bool has_uid;
	bool has_gid;
	uid_t uid;
	gid_t gid;

	/* finalize part */
	bool no_new_privs;
	bool drop_capabilities;
	bool landlock;
	int landlock_min_abi;
	struct sandbox_path *paths;
	size_t n_paths;
	PalSandboxSeccomp seccomp;
	char **syscalls;
	size_t n_syscalls;

	const char *failed_step;
};

PalSandbox *sandbox_alloc(void);
int sandbox_add_path(PalSandbox *sandbox, const char *path, size_t len, unsigned access);
int sandbox_add_syscall(PalSandbox *sandbox, const char *name, size_t len);
bool sandbox_syscall_name_valid(const char *name, size_t len);
/* Translations between PalSandboxNamespaces and CLONE_NEW* flags. */
int sandbox_ns_to_clone(unsigned namespaces);
unsigned sandbox_ns_from_clone(int flags);
/* Records what the spawn granted this process (pal_sandbox_new_from_env()). */
void sandbox_status_set_spawned(unsigned namespaces, bool private_tmp);
void sandbox_status_update(const PalSandboxStatus *finalize_part);
