/* SPDX-License-Identifier: MIT */
/*
 * Sandbox profiles: the PalSandbox object, pal_sandbox_apply() (the
 * spawn-time part, run by spawn.c in the child) and the process-wide status.
 * The finalize part is in sandbox-finalize.c, the env encoding in
 * sandbox-env.c.
 */
#include <errno.h>
#include <limits.h>
#include <linux/capability.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <pal/pal.h>

#include "sandbox-private.h"

#define NS_ALL (PAL_SANDBOX_NS_USER | PAL_SANDBOX_NS_MOUNT | PAL_SANDBOX_NS_NET | \
		PAL_SANDBOX_NS_PID | PAL_SANDBOX_NS_IPC | PAL_SANDBOX_NS_UTS)

static const struct {
	unsigned ns;
	int clone_flag;
} ns_table[] = {
	{ PAL_SANDBOX_NS_USER, CLONE_NEWUSER },
	{ PAL_SANDBOX_NS_MOUNT, CLONE_NEWNS },
	{ PAL_SANDBOX_NS_NET, CLONE_NEWNET },
	{ PAL_SANDBOX_NS_PID, CLONE_NEWPID },
	{ PAL_SANDBOX_NS_IPC, CLONE_NEWIPC },
	{ PAL_SANDBOX_NS_UTS, CLONE_NEWUTS },
};

int sandbox_ns_to_clone(unsigned namespaces)
{
	int flags = 0;

	for (size_t i = 0; i < sizeof(ns_table) / sizeof(ns_table[0]); i++)
		if (namespaces & ns_table[i].ns)
			flags |= ns_table[i].clone_flag;
	return flags;
}

unsigned sandbox_ns_from_clone(int flags)
{
	unsigned ns = 0;

	for (size_t i = 0; i < sizeof(ns_table) / sizeof(ns_table[0]); i++)
		if (flags & ns_table[i].clone_flag)
			ns |= ns_table[i].ns;
	return ns;
}

PalSandbox *sandbox_alloc(void)
{
	PalSandbox *sandbox = calloc(1, sizeof(*sandbox));

	if (!sandbox)
		return NULL;
	sandbox->refcount = 1;
	sandbox->seccomp = PAL_SANDBOX_SECCOMP_OFF;
	return sandbox;
}

PAL_API PalSandbox *pal_sandbox_new_empty(void)
{
	return sandbox_alloc();
}

PAL_API PalSandbox *pal_sandbox_new(void)
{
	PalSandbox *sandbox = sandbox_alloc();

	if (!sandbox)
		return NULL;
	sandbox->ns_optional = PAL_SANDBOX_NS_MOUNT | PAL_SANDBOX_NS_NET | PAL_SANDBOX_NS_IPC |
			       PAL_SANDBOX_NS_PID;
	sandbox->private_tmp = true;
	sandbox->no_new_privs = true;
	sandbox->drop_capabilities = true;
	sandbox->landlock = true;
	sandbox->seccomp = PAL_SANDBOX_SECCOMP_KILL;
	return sandbox;
}

PAL_API PalSandbox *pal_sandbox_ref(PalSandbox *sandbox)
{
	if (sandbox)
		__atomic_add_fetch(&sandbox->refcount, 1, __ATOMIC_RELAXED);
	return sandbox;
}

PAL_API PalSandbox *pal_sandbox_unref(PalSandbox *sandbox)
{
	if (!sandbox || __atomic_sub_fetch(&sandbox->refcount, 1, __ATOMIC_ACQ_REL) > 0)
		return NULL;
	for (size_t i = 0; i < sandbox->n_paths; i++)
		free(sandbox->paths[i].path);
	free(sandbox->paths);
	for (size_t i = 0; i < sandbox->n_syscalls; i++)
		free(sandbox->syscalls[i]);
	free(sandbox->syscalls);
	free(sandbox);
	return NULL;
}

PAL_API PalSandbox *pal_sandbox_copy(const PalSandbox *sandbox)
{
	PalSandbox *copy;

	if (!sandbox) {
		errno = EINVAL;
		return NULL;
	}
	copy = sandbox_alloc();
	if (!copy)
		return NULL;
	copy->ns_required = sandbox->ns_required;
	copy->ns_optional = sandbox->ns_optional;
	copy->private_tmp = sandbox->private_tmp;
	copy->n_rlimits = sandbox->n_rlimits;
	memcpy(copy->rlimits, sandbox->rlimits, sizeof(copy->rlimits));
	copy->has_uid = sandbox->has_uid;
	copy->has_gid = sandbox->has_gid;
	copy->uid = sandbox->uid;
	copy->gid = sandbox->gid;
	copy->no_new_privs = sandbox->no_new_privs;
	copy->drop_capabilities = sandbox->drop_capabilities;
	copy->landlock = sandbox->landlock;
	copy->landlock_min_abi = sandbox->landlock_min_abi;
	copy->seccomp = sandbox->seccomp;
	for (size_t i = 0; i < sandbox->n_paths; i++) {
		const struct sandbox_path *p = &sandbox->paths[i];
		int r = sandbox_add_path(copy, p->path, strlen(p->path), p->access);
		if (r < 0) {
			pal_sandbox_unref(copy);
			errno = -r;
			return NULL;
		}
	}
	for (size_t i = 0; i < sandbox->n_syscalls; i++) {
		int r = sandbox_add_syscall(copy, sandbox->syscalls[i], strlen(sandbox->syscalls[i]));
		if (r < 0) {
			pal_sandbox_unref(copy);
			errno = -r;
			return NULL;
		}
	}
	return copy;
}

PAL_API bool pal_sandbox_equal(const PalSandbox *a, const PalSandbox *b)
{
	if (a == b)
		return true;
	if (!a || !b)
		return false;
	if (a->ns_required != b->ns_required || a->ns_optional != b->ns_optional ||
	    a->private_tmp != b->private_tmp || a->n_rlimits != b->n_rlimits ||
	    a->has_uid != b->has_uid || a->has_gid != b->has_gid ||
	    (a->has_uid && a->uid != b->uid) || (a->has_gid && a->gid != b->gid) ||
	    a->no_new_privs != b->no_new_privs || a->drop_capabilities != b->drop_capabilities ||
	    a->landlock != b->landlock || a->landlock_min_abi != b->landlock_min_abi ||
	    a->seccomp != b->seccomp || a->n_paths != b->n_paths ||
	    a->n_syscalls != b->n_syscalls)
		return false;
	for (size_t i = 0; i < a->n_rlimits; i++)
		if (a->rlimits[i].resource != b->rlimits[i].resource ||
		    a->rlimits[i].limit.rlim_cur != b->rlimits[i].limit.rlim_cur ||
		    a->rlimits[i].limit.rlim_max != b->rlimits[i].limit.rlim_max)
			return false;
	for (size_t i = 0; i < a->n_paths; i++)
		if (a->paths[i].access != b->paths[i].access ||
		    strcmp(a->paths[i].path, b->paths[i].path) != 0)
			return false;
	for (size_t i = 0; i < a->n_syscalls; i++)
		if (strcmp(a->syscalls[i], b->syscalls[i]) != 0)
			return false;
	return true;
}

PAL_API int pal_sandbox_set_namespaces(PalSandbox *sandbox, unsigned namespaces, bool required)
{
	if (!sandbox || (namespaces & ~(unsigned)NS_ALL))
		return -EINVAL;
	if (required) {
		sandbox->ns_required |= namespaces;
		sandbox->ns_optional &= ~namespaces;
	} else {
		sandbox->ns_optional |= namespaces & ~sandbox->ns_required;
	}
	return 0;
}

PAL_API int pal_sandbox_set_private_tmp(PalSandbox *sandbox, bool private_tmp)
{
	if (!sandbox)
		return -EINVAL;
	sandbox->private_tmp = private_tmp;
	return 0;
}

PAL_API int pal_sandbox_set_rlimit(PalSandbox *sandbox, int resource, rlim_t soft, rlim_t hard)
{
	size_t i;

	if (!sandbox || resource < 0 || resource >= RLIMIT_NLIMITS || soft > hard)
		return -EINVAL;
	for (i = 0; i < sandbox->n_rlimits; i++)
		if (sandbox->rlimits[i].resource == resource)
			break;
	if (i == SANDBOX_MAX_RLIMITS)
		return -E2BIG;
	sandbox->rlimits[i].resource = resource;
	sandbox->rlimits[i].limit.rlim_cur = soft;
	sandbox->rlimits[i].limit.rlim_max = hard;
	if (i == sandbox->n_rlimits)
		sandbox->n_rlimits++;
	return 0;
}

PAL_API int pal_sandbox_set_uid(PalSandbox *sandbox, uid_t uid)
{
	if (!sandbox)
		return -EINVAL;
	sandbox->has_uid = true;
	sandbox->uid = uid;
	return 0;
}

PAL_API int pal_sandbox_set_gid(PalSandbox *sandbox, gid_t gid)
{
	if (!sandbox)
		return -EINVAL;
	sandbox->has_gid = true;
	sandbox->gid = gid;
	return 0;
}

PAL_API int pal_sandbox_set_no_new_privs(PalSandbox *sandbox, bool no_new_privs)
{
	if (!sandbox)
		return -EINVAL;
	sandbox->no_new_privs = no_new_privs;
	return 0;
}

PAL_API int pal_sandbox_set_drop_capabilities(PalSandbox *sandbox, bool drop)
{
	if (!sandbox)
		return -EINVAL;
	sandbox->drop_capabilities = drop;
	return 0;
}

PAL_API int pal_sandbox_set_landlock(PalSandbox *sandbox, bool enabled)
{
	if (!sandbox)
		return -EINVAL;
	sandbox->landlock = enabled;
	if (!enabled)
		sandbox->landlock_min_abi = 0;
	return 0;
}

PAL_API int pal_sandbox_require_landlock_abi(PalSandbox *sandbox, int min_abi)
{
	if (!sandbox || min_abi < 0 || min_abi > 65535)
		return -EINVAL;
	sandbox->landlock_min_abi = min_abi;
	if (min_abi > 0)
		sandbox->landlock = true;
	return 0;
}

int sandbox_add_path(PalSandbox *sandbox, const char *path, size_t len, unsigned access)
{
	struct sandbox_path *p;
	char *copy;

	if (len == 0 || path[0] != '/' || memchr(path, '\0', len) ||
	    access == 0 || (access & ~(unsigned)(PAL_SANDBOX_FS_READ | PAL_SANDBOX_FS_WRITE |
						  PAL_SANDBOX_FS_EXECUTE)))
		return -EINVAL;
	if (len >= PATH_MAX)
		return -ENAMETOOLONG;
	if (sandbox->n_paths >= SANDBOX_MAX_PATHS)
		return -E2BIG;

	copy = strndup(path, len);
	if (!copy)
		return -ENOMEM;
	p = realloc(sandbox->paths, (sandbox->n_paths + 1) * sizeof(*p));
	if (!p) {
		free(copy);
		return -ENOMEM;
	}
	sandbox->paths = p;
	p[sandbox->n_paths++] = (struct sandbox_path){ .path = copy, .access = access };
	return 0;
}

PAL_API int pal_sandbox_allow_path(PalSandbox *sandbox, const char *path, unsigned access)
{
	if (!sandbox || !path)
		return -EINVAL;
	return sandbox_add_path(sandbox, path, strlen(path), access);
}

bool sandbox_syscall_name_valid(const char *name, size_t len)
{
	if (len == 0 || len > SANDBOX_MAX_SYSCALL_NAME)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
			return false;
	}
	return true;
}

int sandbox_add_syscall(PalSandbox *sandbox, const char *name, size_t len)
{
	char **p;
	char *copy;

	if (!sandbox_syscall_name_valid(name, len))
		return -EINVAL;
	for (size_t i = 0; i < sandbox->n_syscalls; i++)
		if (strlen(sandbox->syscalls[i]) == len && memcmp(sandbox->syscalls[i], name, len) == 0)
			return 0;
	if (sandbox->n_syscalls >= SANDBOX_MAX_SYSCALLS)
		return -E2BIG;

	copy = strndup(name, len);
	if (!copy)
		return -ENOMEM;
	p = realloc(sandbox->syscalls, (sandbox->n_syscalls + 1) * sizeof(*p));
	if (!p) {
		free(copy);
		return -ENOMEM;
	}
	sandbox->syscalls = p;
	p[sandbox->n_syscalls++] = copy;
	return 0;
}

PAL_API int pal_sandbox_allow_syscall(PalSandbox *sandbox, const char *name)
{
	if (!sandbox || !name)
		return -EINVAL;
	return sandbox_add_syscall(sandbox, name, strlen(name));
}

PAL_API int pal_sandbox_set_seccomp(PalSandbox *sandbox, PalSandboxSeccomp mode)
{
	if (!sandbox || (mode != PAL_SANDBOX_SECCOMP_OFF && mode != PAL_SANDBOX_SECCOMP_KILL &&
			 mode != PAL_SANDBOX_SECCOMP_LOG))
		return -EINVAL;
	sandbox->seccomp = mode;
	return 0;
}

PAL_API const char *pal_sandbox_get_failed_step(const PalSandbox *sandbox)
{
	return sandbox ? sandbox->failed_step : NULL;
}

/* Whether the calling thread has @cap in its effective set. */
static bool has_effective_cap(int cap)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = { 0 };

	if (syscall(SYS_capget, &hdr, data) < 0)
		return false;
	return data[cap / 32].effective & (1U << (cap % 32));
}

PAL_API int pal_sandbox_apply(PalSandbox *sandbox, PalSpawn *spawn)
{
	struct spawn_sandbox spec = { .report_env = PAL_SANDBOX_ENV };
	unsigned required, optional;
	char *encoded;
	int r;

	if (!sandbox || !spawn)
		return -EINVAL;

	required = sandbox->ns_required;
	optional = sandbox->ns_optional & ~required;
	if (((required | optional) & ~(unsigned)PAL_SANDBOX_NS_USER) &&
	    !((required | optional) & PAL_SANDBOX_NS_USER) && !has_effective_cap(CAP_SYS_ADMIN)) {
		if (required & ~(unsigned)PAL_SANDBOX_NS_USER)
			required |= PAL_SANDBOX_NS_USER;
		else
			optional |= PAL_SANDBOX_NS_USER;
	}

	/* The single-id maps keep the spawner's ids: nothing else is mapped. */
	if ((required | optional) & PAL_SANDBOX_NS_USER) {
		if (sandbox->has_uid && sandbox->uid != geteuid())
			return -EINVAL;
		if (sandbox->has_gid && sandbox->gid != getegid())
			return -EINVAL;
	}

	spec.ns_required = sandbox_ns_to_clone(required);
	spec.ns_optional = sandbox_ns_to_clone(optional);
	/*
	 * Best effort, like the namespaces: a program that lives under /tmp
	 * (or loads its libraries from there) cannot be exec'd once a fresh
	 * /tmp covers it, so it gets none, and its status says so.
	 */
	spec.private_tmp = sandbox->private_tmp && !spawn_loads_from_tmp(spawn);
	/*
	 * Dropping the bounding set needs CAP_SETPCAP, which a child that
	 * leaves root (or gets its capabilities only inside a new user
	 * namespace, lost at exec) has only before its exec.
	 */
	spec.drop_bounding_set = sandbox->drop_capabilities &&
				 (((required | optional) & PAL_SANDBOX_NS_USER) ||
				  (sandbox->has_uid && sandbox->uid != 0));
	spec.n_rlimits = sandbox->n_rlimits;
	memcpy(spec.rlimits, sandbox->rlimits, sizeof(spec.rlimits));

	encoded = sandbox_encode(sandbox, spec.private_tmp);
	if (!encoded)
		return -errno;
	r = pal_spawn_env_set(spawn, PAL_SANDBOX_ENV, encoded);
	free(encoded);
	if (r < 0)
		return r;

	if (sandbox->has_uid)
		pal_spawn_set_uid(spawn, sandbox->uid);
	if (sandbox->has_gid)
		pal_spawn_set_gid(spawn, sandbox->gid);
	pal_spawn_set_close_other_fds(spawn, true);
	return spawn_set_sandbox(spawn, sandbox, &spec);
}

PAL_API int pal_sandbox_to_env(const PalSandbox *sandbox, char **ret_value)
{
	if (ret_value)
		*ret_value = NULL;
	if (!sandbox || !ret_value)
		return -EINVAL;
	/* No spawn part here, so no private /tmp: the status says so. */
	*ret_value = sandbox_encode(sandbox, false);
	return *ret_value ? 0 : -errno;
}

/* ---- status ------------------------------------------------------------ */

static pthread_mutex_t status_lock = PTHREAD_MUTEX_INITIALIZER;
static PalSandboxStatus status;

void sandbox_status_set_spawned(unsigned namespaces, bool private_tmp)
{
	pthread_mutex_lock(&status_lock);
	status.namespaces = namespaces;
	status.private_tmp = private_tmp;
	pthread_mutex_unlock(&status_lock);
}

void sandbox_status_update(const PalSandboxStatus *finalize_part)
{
	pthread_mutex_lock(&status_lock);
	status.no_new_privs = finalize_part->no_new_privs;
	status.capabilities_dropped = finalize_part->capabilities_dropped;
	status.landlock_abi = finalize_part->landlock_abi;
	status.seccomp = finalize_part->seccomp;
	status.finalized = finalize_part->finalized;
	pthread_mutex_unlock(&status_lock);
}

PAL_API void pal_sandbox_get_status(PalSandboxStatus *ret_status)
{
	if (!ret_status)
		return;
	pthread_mutex_lock(&status_lock);
	*ret_status = status;
	pthread_mutex_unlock(&status_lock);
}

PAL_API int pal_sandbox_new_from_env(PalSandbox **ret_sandbox)
{
	PalSandbox *sandbox = NULL;
	const char *value;
	char *copy;
	int granted = 0, r;

	if (!ret_sandbox)
		return -EINVAL;
	value = getenv(PAL_SANDBOX_ENV);
	if (!value) {
		*ret_sandbox = NULL;
		return 0;
	}
	copy = strndup(value, SANDBOX_MAX_ENV + 1);
	unsetenv(PAL_SANDBOX_ENV);
	if (!copy)
		return -ENOMEM;
	r = sandbox_decode(copy, &sandbox, &granted);
	free(copy);
	if (r < 0)
		return r;

	sandbox_status_set_spawned(sandbox_ns_from_clone(granted),
				   sandbox->private_tmp && (granted & CLONE_NEWNS));
	*ret_sandbox = sandbox;
	return 0;
}
